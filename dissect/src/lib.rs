//! Dissection of one captured frame, L2 to L7, with pnet's packet types.
//!
//! A malformed or truncated packet keeps every layer that did parse and records what went wrong
//! (`Malformed`); nothing here panics on input, which the fuzz target checks.

mod info;
mod ja4;
mod l7;
mod names;
pub mod stream;
pub mod text;

use std::net::IpAddr;

use pnet::packet::Packet;
use pnet::packet::arp::ArpPacket;
use pnet::packet::ethernet::{EtherType, EtherTypes, EthernetPacket};
use pnet::packet::icmp::IcmpPacket;
use pnet::packet::icmpv6::Icmpv6Packet;
use pnet::packet::ip::{IpNextHeaderProtocol, IpNextHeaderProtocols};
use pnet::packet::ipv4::Ipv4Packet;
use pnet::packet::ipv6::{ExtensionPacket, FragmentPacket, Ipv6Packet};
use pnet::packet::tcp::TcpPacket;
use pnet::packet::udp::UdpPacket;
use pnet::packet::vlan::VlanPacket;
use serde::Serialize;

pub use info::info;
pub use l7::L7;

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
    /// Whether `layers` is filled ([`dissect`]) or left empty ([`summarize`]).
    #[serde(skip)]
    with_layers: bool,
}

impl Dissection {
    fn layer(&mut self, build: impl FnOnce() -> Layer) {
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

fn walk(frame: &[u8], mut d: Dissection) -> Dissection {
    let Some(ethernet) = EthernetPacket::new(frame) else {
        d.malformed = Some(Malformed::TruncatedEthernet);
        return d;
    };
    d.layer(|| Layer::Ethernet {
        src: ethernet.get_source().to_string(),
        dst: ethernet.get_destination().to_string(),
        ethertype: ethernet.get_ethertype().0,
    });
    let mut offset = 14;
    let mut ethertype = ethernet.get_ethertype();
    let mut payload = ethernet.payload();
    // 802.1Q, and QinQ (0x88a8) outer tags.
    while ethertype == EtherTypes::Vlan || ethertype == EtherType(0x88a8) {
        let Some(vlan) = VlanPacket::new(payload) else {
            d.malformed = Some(Malformed::TruncatedVlan);
            return d;
        };
        d.vlan.get_or_insert(vlan.get_vlan_identifier());
        d.layer(|| Layer::Vlan {
            id: vlan.get_vlan_identifier(),
            priority: vlan.get_priority_code_point().0,
            ethertype: vlan.get_ethertype().0,
        });
        ethertype = vlan.get_ethertype();
        payload = &payload[4..];
        offset += 4;
    }
    d.headers_len = offset;
    match ethertype {
        EtherTypes::Ipv4 => ipv4(&mut d, payload, offset),
        EtherTypes::Ipv6 => ipv6(&mut d, payload, offset),
        EtherTypes::Arp => match ArpPacket::new(payload) {
            Some(arp) => {
                d.transport = Some("arp".into());
                d.src = Some(IpAddr::V4(arp.get_sender_proto_addr()));
                d.dst = Some(IpAddr::V4(arp.get_target_proto_addr()));
                d.headers_len = offset + 28.min(payload.len());
                d.layer(|| Layer::Arp {
                    operation: arp.get_operation().0,
                    sender_ip: arp.get_sender_proto_addr().to_string(),
                    target_ip: arp.get_target_proto_addr().to_string(),
                    sender_mac: arp.get_sender_hw_addr().to_string(),
                });
            }
            None => d.malformed = Some(Malformed::TruncatedArp),
        },
        _ => {}
    }
    d
}

fn ipv4(d: &mut Dissection, bytes: &[u8], offset: usize) {
    let Some(ip) = Ipv4Packet::new(bytes) else {
        d.malformed = Some(Malformed::TruncatedIpv4);
        return;
    };
    let header_len = usize::from(ip.get_header_length()) * 4;
    if header_len < 20 || ip.get_version() != 4 {
        d.malformed = Some(Malformed::BadIpv4Header);
        return;
    }
    if bytes.len() < header_len {
        d.malformed = Some(Malformed::TruncatedIpv4);
        return;
    }
    let more_fragments = ip.get_flags() & 0x1 != 0;
    let fragment_offset = ip.get_fragment_offset();
    d.src = Some(IpAddr::V4(ip.get_source()));
    d.dst = Some(IpAddr::V4(ip.get_destination()));
    d.fragment = more_fragments || fragment_offset != 0;
    d.layer(|| Layer::Ipv4 {
        src: ip.get_source().to_string(),
        dst: ip.get_destination().to_string(),
        ttl: ip.get_ttl(),
        protocol: ip.get_next_level_protocol().0,
        id: ip.get_identification(),
        more_fragments,
        fragment_offset,
    });
    d.headers_len = offset + header_len;
    // The IP total length bounds the transport: Ethernet padding must not be read as payload.
    let total = usize::from(ip.get_total_length()).clamp(header_len, bytes.len().max(header_len));
    let transport_bytes = &bytes[header_len..total.min(bytes.len())];
    let first_fragment = fragment_offset == 0;
    let sent_len = usize::from(ip.get_total_length()).saturating_sub(header_len);
    transport(
        d,
        ip.get_next_level_protocol(),
        (transport_bytes, sent_len),
        offset + header_len,
        first_fragment,
    );
}

fn ipv6(d: &mut Dissection, bytes: &[u8], offset: usize) {
    let Some(ip) = Ipv6Packet::new(bytes) else {
        d.malformed = Some(Malformed::TruncatedIpv6);
        return;
    };
    d.src = Some(IpAddr::V6(ip.get_source()));
    d.dst = Some(IpAddr::V6(ip.get_destination()));
    let mut next = ip.get_next_header();
    let mut rest = &bytes[40..];
    let mut at = offset + 40;
    let mut extensions = Vec::new();
    let mut first_fragment = true;
    let mut fragment = false;
    // Walk extension headers: hop-by-hop, routing, fragment, destination options.
    loop {
        match next {
            IpNextHeaderProtocols::Hopopt | IpNextHeaderProtocols::Ipv6Route | IpNextHeaderProtocols::Ipv6Opts => {
                let Some(extension) = ExtensionPacket::new(rest) else {
                    d.malformed = Some(Malformed::TruncatedIpv6Extension);
                    break;
                };
                let len = (usize::from(extension.get_hdr_ext_len()) + 1) * 8;
                if rest.len() < len {
                    d.malformed = Some(Malformed::TruncatedIpv6Extension);
                    break;
                }
                extensions.push(next.0);
                next = extension.get_next_header();
                rest = &rest[len..];
                at += len;
            }
            IpNextHeaderProtocols::Ipv6Frag => {
                let Some(header) = FragmentPacket::new(rest) else {
                    d.malformed = Some(Malformed::TruncatedIpv6Extension);
                    break;
                };
                extensions.push(next.0);
                fragment = true;
                first_fragment = header.get_fragment_offset() == 0;
                next = header.get_next_header();
                rest = &rest[8.min(rest.len())..];
                at += 8;
            }
            _ => break,
        }
    }
    d.fragment = fragment;
    d.layer(|| Layer::Ipv6 {
        src: ip.get_source().to_string(),
        dst: ip.get_destination().to_string(),
        hop_limit: ip.get_hop_limit(),
        next_header: next.0,
        extensions,
        fragment,
    });
    d.headers_len = at;
    if d.malformed.is_none() {
        let payload_end = usize::from(ip.get_payload_length()).saturating_sub(at - offset - 40);
        transport(
            d,
            next,
            (&rest[..payload_end.min(rest.len())], payload_end),
            at,
            first_fragment,
        );
    }
}

/// `bytes` is the transport as captured, with the length it had as sent (from the IP header).
fn transport(
    d: &mut Dissection,
    protocol: IpNextHeaderProtocol,
    (bytes, sent_len): (&[u8], usize),
    offset: usize,
    first_fragment: bool,
) {
    d.ip_protocol = Some(protocol.0);
    if !first_fragment {
        // Only the first fragment carries the transport header.
        d.transport = Some(name_of(protocol));
        return;
    }
    match protocol {
        IpNextHeaderProtocols::Tcp => {
            let Some(tcp) = TcpPacket::new(bytes) else {
                d.transport = Some("tcp".into());
                d.malformed = Some(Malformed::TruncatedTcp);
                return;
            };
            let header_len = usize::from(tcp.get_data_offset()) * 4;
            d.transport = Some("tcp".into());
            d.src_port = Some(tcp.get_source());
            d.dst_port = Some(tcp.get_destination());
            let flags = tcp.get_flags();
            d.tcp_flags = Some(flags);
            d.layer(|| Layer::Tcp {
                src_port: tcp.get_source(),
                dst_port: tcp.get_destination(),
                seq: tcp.get_sequence(),
                ack: tcp.get_acknowledgement(),
                flags: tcp_flag_names(flags),
                window: tcp.get_window(),
                len: bytes.len().saturating_sub(header_len),
            });
            if header_len < 20 {
                d.malformed = Some(Malformed::BadTcpHeader);
                return;
            }
            if bytes.len() < header_len {
                d.malformed = Some(Malformed::TruncatedTcp);
                d.headers_len = offset + bytes.len();
                return;
            }
            d.headers_len = offset + header_len;
            d.tcp_seq = Some(tcp.get_sequence());
            d.tcp_len = u32::try_from(sent_len.saturating_sub(header_len)).ok();
            d.tcp_window = Some(tcp.get_window());
            d.payload = offset + header_len..offset + bytes.len();
            application(
                d,
                l7::Transport::Tcp,
                tcp.get_source(),
                tcp.get_destination(),
                &bytes[header_len..],
            );
        }
        IpNextHeaderProtocols::Udp => {
            d.transport = Some("udp".into());
            let Some(udp) = UdpPacket::new(bytes) else {
                d.malformed = Some(Malformed::TruncatedUdp);
                return;
            };
            d.src_port = Some(udp.get_source());
            d.dst_port = Some(udp.get_destination());
            d.layer(|| Layer::Udp {
                src_port: udp.get_source(),
                dst_port: udp.get_destination(),
                length: udp.get_length(),
            });
            d.headers_len = offset + 8;
            application(
                d,
                l7::Transport::Udp,
                udp.get_source(),
                udp.get_destination(),
                udp.payload(),
            );
        }
        IpNextHeaderProtocols::Icmp => {
            d.transport = Some("icmp".into());
            match IcmpPacket::new(bytes) {
                Some(icmp) => {
                    d.layer(|| Layer::Icmp {
                        icmp_type: icmp.get_icmp_type().0,
                        code: icmp.get_icmp_code().0,
                    });
                    d.headers_len = offset + 8.min(bytes.len());
                }
                None => d.malformed = Some(Malformed::TruncatedIcmp),
            }
        }
        IpNextHeaderProtocols::Icmpv6 => {
            d.transport = Some("icmpv6".into());
            match Icmpv6Packet::new(bytes) {
                Some(icmp) => {
                    d.layer(|| Layer::Icmpv6 {
                        icmp_type: icmp.get_icmpv6_type().0,
                        code: icmp.get_icmpv6_code().0,
                    });
                    d.headers_len = offset + 8.min(bytes.len());
                }
                None => d.malformed = Some(Malformed::TruncatedIcmp),
            }
        }
        other => d.transport = Some(name_of(other)),
    }
}

fn application(d: &mut Dissection, transport: l7::Transport, src_port: u16, dst_port: u16, payload: &[u8]) {
    match l7::dissect(transport, src_port, dst_port, payload) {
        l7::Found::Dissected(found) => {
            d.layer(|| Layer::Application(found.clone()));
            d.l7 = Some(found);
        }
        l7::Found::Nothing => {}
        l7::Found::Partial(found) => {
            // What parsed is kept and shown; the rest is counted as malformed.
            d.layer(|| Layer::Application(found.clone()));
            d.l7 = Some(found);
            d.malformed = Some(Malformed::PartialL7);
        }
        l7::Found::NotAsPromised(guess) => {
            // A well-known port whose payload did not parse as its protocol: keep the guess, flag it.
            d.malformed = Some(Malformed::BadL7);
            d.l7 = Some(guess);
        }
    }
}

fn name_of(protocol: IpNextHeaderProtocol) -> String {
    match protocol {
        IpNextHeaderProtocols::Tcp => "tcp".into(),
        IpNextHeaderProtocols::Udp => "udp".into(),
        IpNextHeaderProtocols::Icmp => "icmp".into(),
        IpNextHeaderProtocols::Icmpv6 => "icmpv6".into(),
        other => format!("ip-{}", other.0),
    }
}

fn tcp_flag_names(flags: u8) -> String {
    const NAMES: [(u8, &str); 8] = [
        (0x02, "SYN"),
        (0x10, "ACK"),
        (0x01, "FIN"),
        (0x04, "RST"),
        (0x08, "PSH"),
        (0x20, "URG"),
        (0x40, "ECE"),
        (0x80, "CWR"),
    ];
    NAMES
        .iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, name)| *name)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests;
