//! Dissection of one captured frame, L2 to L7, with pnet's packet types: the link layer
//! (`link`: Ethernet, VLAN tags, ARP), the network layer (`network`: IPv4, IPv6 and its
//! extension headers), the transport layer (`transport`: TCP, UDP, ICMP), and the application
//! protocols, one module each (`protocols/`), which TCP stream reassembly (`stream`) calls back
//! into for recognition and framing.
//!
//! A malformed or truncated packet keeps every layer that did parse and records what went wrong
//! (`Malformed`); nothing here panics on input, which the fuzz target checks.

mod info;
mod link;
mod names;
mod network;
pub mod protocols;
pub mod stream;
pub mod text;
mod transport;
mod tunnel;

use std::net::IpAddr;

use serde::Serialize;

pub use info::info;
pub use protocols::{Http2Message, L7};
pub use tunnel::Tunnel;

/// What a frame turned out to be.
#[derive(Debug, Default, Clone, PartialEq, Serialize)]
pub struct Dissection {
    /// Every layer that parsed, outermost first, with its fields (the API's detail view).
    pub layers: Vec<Layer>,
    pub vlan: Option<u16>,
    pub src: Option<IpAddr>,
    pub dst: Option<IpAddr>,
    /// IP protocol number of the transport (after IPv6 extension headers).
    pub ip_protocol: Option<u8>,
    pub src_port: Option<u16>,
    pub dst_port: Option<u16>,
    /// TCP flags byte (FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10, ...).
    pub tcp_flags: Option<u8>,
    /// TCP sequence number, for stream reassembly ([`stream`]).
    pub tcp_seq: Option<u32>,
    /// TCP payload bytes as sent (from the IP length, so a frame cut short by the snaplen still
    /// tells how far the segment reached): retransmissions are segments ending at or before what
    /// was already sent.
    #[serde(skip)]
    pub tcp_len: Option<u32>,
    /// The advertised TCP window (unscaled: zero is zero at any scale).
    #[serde(skip)]
    pub tcp_window: Option<u16>,
    /// Where the TCP payload sits in the frame (empty when there is none).
    #[serde(skip)]
    pub payload: std::ops::Range<usize>,
    /// The IP packet is a fragment (later fragments carry no transport header).
    pub fragment: bool,
    /// L4 name: `tcp`, `udp`, `icmp`, `icmpv6`, `arp`, or another IP protocol number as `ip-N`.
    pub transport: Option<String>,
    pub l7: Option<L7>,
    /// Bytes from the frame start to the end of the transport header: what is kept when payload is not.
    pub headers_len: usize,
    /// What could not be parsed, if anything.
    pub malformed: Option<Malformed>,
    /// The outermost tunnel the packet came through; everything above describes what it carried.
    pub tunnel: Option<Tunnel>,
    /// A tunnel the transport layer found, waiting to be opened by [`walk`].
    #[serde(skip)]
    carried: Option<tunnel::Carried>,
    /// Whether `layers` is filled ([`dissect`]) or left empty ([`summarize`]).
    #[serde(skip)]
    with_layers: bool,
}

impl Dissection {
    pub(crate) fn layer(&mut self, build: impl FnOnce() -> Layer) {
        if self.with_layers {
            self.layers.push(build());
        }
    }
}

/// Why a frame could not be dissected completely. Counted by kind in `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Malformed {
    TruncatedEthernet,
    TruncatedVlan,
    TruncatedArp,
    TruncatedIpv4,
    BadIpv4Header,
    TruncatedIpv6,
    TruncatedIpv6Extension,
    TruncatedTcp,
    BadTcpHeader,
    TruncatedUdp,
    TruncatedIcmp,
    BadL7,
    PartialL7,
}

impl Malformed {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TruncatedEthernet => "truncated_ethernet",
            Self::TruncatedVlan => "truncated_vlan",
            Self::TruncatedArp => "truncated_arp",
            Self::TruncatedIpv4 => "truncated_ipv4",
            Self::BadIpv4Header => "bad_ipv4_header",
            Self::TruncatedIpv6 => "truncated_ipv6",
            Self::TruncatedIpv6Extension => "truncated_ipv6_extension",
            Self::TruncatedTcp => "truncated_tcp",
            Self::BadTcpHeader => "bad_tcp_header",
            Self::TruncatedUdp => "truncated_udp",
            Self::TruncatedIcmp => "truncated_icmp",
            Self::BadL7 => "bad_l7",
            Self::PartialL7 => "partial_l7",
        }
    }
}

/// One protocol layer and its fields, for display as a tree.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "layer", rename_all = "snake_case")]
pub enum Layer {
    Ethernet {
        src: String,
        dst: String,
        #[serde(serialize_with = "names::ethertype")]
        ethertype: u16,
    },
    Vlan {
        id: u16,
        priority: u8,
        #[serde(serialize_with = "names::ethertype")]
        ethertype: u16,
    },
    Arp {
        #[serde(serialize_with = "names::arp_operation")]
        operation: u16,
        sender_ip: String,
        target_ip: String,
        sender_mac: String,
    },
    Ipv4 {
        src: String,
        dst: String,
        ttl: u8,
        #[serde(serialize_with = "names::ip_protocol")]
        protocol: u8,
        id: u16,
        more_fragments: bool,
        fragment_offset: u16,
    },
    Ipv6 {
        src: String,
        dst: String,
        hop_limit: u8,
        #[serde(serialize_with = "names::ip_protocol")]
        next_header: u8,
        #[serde(serialize_with = "names::ip_protocols")]
        extensions: Vec<u8>,
        fragment: bool,
    },
    Tcp {
        src_port: u16,
        dst_port: u16,
        seq: u32,
        ack: u32,
        flags: String,
        window: u16,
        /// Payload bytes captured.
        len: usize,
    },
    Udp {
        src_port: u16,
        dst_port: u16,
        length: u16,
    },
    Icmp {
        #[serde(serialize_with = "names::icmp_type")]
        icmp_type: u8,
        code: u8,
    },
    Icmpv6 {
        #[serde(serialize_with = "names::icmpv6_type")]
        icmp_type: u8,
        code: u8,
    },
    /// A tunnel's header: what follows is what it carried.
    Tunnel {
        kind: &'static str,
        id: Option<u32>,
    },
    Application(L7),
}

/// Every layer with its fields, for a person to read (the API's detail view).
pub fn dissect(frame: &[u8]) -> Dissection {
    walk(
        frame,
        Dissection {
            with_layers: true,
            ..Dissection::default()
        },
    )
}

/// What the index needs (addresses, ports, protocols, names, lengths) without building the layer
/// tree: the parser's path at ingest, where the layers are not stored.
pub fn summarize(frame: &[u8]) -> Dissection {
    walk(frame, Dissection::default())
}

/// The layers from Ethernet down, then what each tunnel carried ([`tunnel`]), to
/// [`tunnel::MAX_DEPTH`] deep: the innermost packet is the packet's, the outermost tunnel kept.
fn walk(frame: &[u8], mut d: Dissection) -> Dissection {
    link::ethernet(&mut d, frame, 0);
    let mut depth = 0;
    while let Some(carried) = d.carried.take() {
        let (Some(outer_src), Some(outer_dst)) = (d.src, d.dst) else {
            break;
        };
        let Some(bytes) = frame.get(carried.bytes.clone()).filter(|b| !b.is_empty()) else {
            break;
        };
        if depth == tunnel::MAX_DEPTH {
            break;
        }
        depth += 1;
        d.tunnel.get_or_insert(Tunnel {
            kind: carried.kind,
            id: carried.id,
            outer_src,
            outer_dst,
        });
        d.layer(|| Layer::Tunnel {
            kind: carried.kind,
            id: carried.id,
        });
        // What the outer packet said about its transport is not the packet's: the inner one's is.
        d.ip_protocol = None;
        d.src_port = None;
        d.dst_port = None;
        d.tcp_flags = None;
        d.transport = None;
        d.l7 = None;
        d.fragment = false;
        d.headers_len = carried.bytes.start;
        let offset = carried.bytes.start;
        match carried.inner {
            tunnel::Inner::Ethernet => link::ethernet(&mut d, bytes, offset),
            tunnel::Inner::Ipv4 => network::ipv4(&mut d, bytes, offset),
            tunnel::Inner::Ipv6 => network::ipv6(&mut d, bytes, offset),
        }
    }
    d
}

#[cfg(test)]
mod tests;
