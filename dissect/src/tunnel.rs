//! Tunnels, opened: the encapsulations a node's uplink carries pod traffic in. VXLAN (flannel's
//! and Calico's overlays, UDP 4789 and Linux's old default 8472), Geneve (OVN's, Antrea's, UDP
//! 6081), GRE (IP protocol 47, carrying IP or Ethernet) and IP in IP (4, 41: IPv4 or IPv6 inside
//! IPv4 or IPv6). The packet is dissected as what it carries: the inner addresses, ports and
//! application are the packet's, as a pod saw them; the outermost tunnel's kind, id (VNI or GRE
//! key) and outer addresses are kept beside them ([`Tunnel`]).
//!
//! Nested tunnels are opened to [`MAX_DEPTH`]; a packet that nests deeper is left at that depth.

use std::net::IpAddr;

use serde::Serialize;

use crate::{Dissection, Layer, link, network};

/// Tunnels opened inside one another at most.
const MAX_DEPTH: u8 = 3;

/// The outermost tunnel a packet came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Tunnel {
    /// `vxlan`, `geneve`, `gre` or `ipip` (any IP in IP).
    pub kind: &'static str,
    /// The VXLAN or Geneve network identifier, or the GRE key.
    pub id: Option<u32>,
    pub outer_src: IpAddr,
    pub outer_dst: IpAddr,
}

/// What a tunnel carries.
enum Inner {
    Ethernet,
    Ipv4,
    Ipv6,
}

/// Whether a UDP datagram to `dst_port` is a tunnel this module opens; opens it if so.
pub(crate) fn udp(d: &mut Dissection, dst_port: u16, payload: &[u8], offset: usize) -> bool {
    match dst_port {
        4789 | 8472 => {
            // Flags with the I bit (a VNI is present) and nothing else; reserved bytes zero.
            let [0x08, 0, 0, 0, v0, v1, v2, 0, ..] = *payload else {
                return false;
            };
            let vni = u32::from_be_bytes([0, v0, v1, v2]);
            enter(d, "vxlan", Some(vni), Inner::Ethernet, &payload[8..], offset + 8)
        }
        6081 => {
            // Version 0; options of 4-byte words; protocol type Ethernet (or IP).
            let [first, _, p0, p1, v0, v1, v2, _, ..] = *payload else {
                return false;
            };
            let header = 8 + usize::from(first & 0x3f) * 4;
            let (Some(inner), Some(rest)) = (ethertype(u16::from_be_bytes([p0, p1])), payload.get(header..)) else {
                return false;
            };
            if first >> 6 != 0 {
                return false;
            }
            let vni = u32::from_be_bytes([0, v0, v1, v2]);
            enter(d, "geneve", Some(vni), inner, rest, offset + header)
        }
        _ => false,
    }
}

/// GRE (RFC 2784, with RFC 2890's key and sequence number).
pub(crate) fn gre(d: &mut Dissection, bytes: &[u8], offset: usize) -> bool {
    let [flags, version, p0, p1, ..] = *bytes else {
        return false;
    };
    // Version 0 only (1 is PPTP's enhanced GRE, which carries PPP).
    if version & 0x07 != 0 {
        return false;
    }
    let (checksum, key, sequence) = (flags & 0x80 != 0, flags & 0x20 != 0, flags & 0x10 != 0);
    let mut header = 4;
    if checksum {
        header += 4;
    }
    let id = if key {
        let k = bytes.get(header..header + 4);
        header += 4;
        k.map(|k| u32::from_be_bytes([k[0], k[1], k[2], k[3]]))
    } else {
        None
    };
    if sequence {
        header += 4;
    }
    let (Some(inner), Some(rest)) = (ethertype(u16::from_be_bytes([p0, p1])), bytes.get(header..)) else {
        return false;
    };
    enter(d, "gre", id, inner, rest, offset + header)
}

/// IPv4 (protocol 4) or IPv6 (41) directly inside IP.
pub(crate) fn ip_in_ip(d: &mut Dissection, version6: bool, bytes: &[u8], offset: usize) -> bool {
    let inner = if version6 { Inner::Ipv6 } else { Inner::Ipv4 };
    enter(d, "ipip", None, inner, bytes, offset)
}

fn ethertype(value: u16) -> Option<Inner> {
    match value {
        0x6558 => Some(Inner::Ethernet),
        0x0800 => Some(Inner::Ipv4),
        0x86dd => Some(Inner::Ipv6),
        _ => None,
    }
}

/// Dissects the inner packet as the packet's own, keeping the outer addresses.
fn enter(d: &mut Dissection, kind: &'static str, id: Option<u32>, inner: Inner, bytes: &[u8], offset: usize) -> bool {
    let (Some(outer_src), Some(outer_dst)) = (d.src, d.dst) else {
        return false;
    };
    if d.depth >= MAX_DEPTH || bytes.is_empty() {
        return false;
    }
    d.depth += 1;
    d.tunnel.get_or_insert(Tunnel {
        kind,
        id,
        outer_src,
        outer_dst,
    });
    d.layer(|| Layer::Tunnel { kind, id });
    // What the outer packet said about its transport is not the packet's: the inner one's is.
    d.ip_protocol = None;
    d.src_port = None;
    d.dst_port = None;
    d.transport = None;
    d.l7 = None;
    d.fragment = false;
    d.headers_len = offset;
    match inner {
        Inner::Ethernet => link::ethernet(d, bytes, offset),
        Inner::Ipv4 => network::ipv4(d, bytes, offset),
        Inner::Ipv6 => network::ipv6(d, bytes, offset),
    }
    true
}
