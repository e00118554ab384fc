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

/// Tunnels opened inside one another at most.
pub(crate) const MAX_DEPTH: u8 = 3;

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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Inner {
    Ethernet,
    Ipv4,
    Ipv6,
}

/// A tunnel found in a packet: what it carries and where, in the frame's offsets. The layers
/// below read it (`crate::walk`), so that this module needs none of them.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Carried {
    pub kind: &'static str,
    pub id: Option<u32>,
    pub inner: Inner,
    pub bytes: std::ops::Range<usize>,
}

/// A UDP datagram to `dst_port` (its payload at `offset` in the frame), when it is a tunnel.
pub(crate) fn udp(dst_port: u16, payload: &[u8], offset: usize) -> Option<Carried> {
    let end = offset + payload.len();
    match dst_port {
        4789 | 8472 => {
            // Flags with the I bit (a VNI is present) and nothing else; reserved bytes zero.
            let [0x08, 0, 0, 0, v0, v1, v2, 0, _, ..] = *payload else {
                return None;
            };
            let vni = u32::from_be_bytes([0, v0, v1, v2]);
            Some(Carried {
                kind: "vxlan",
                id: Some(vni),
                inner: Inner::Ethernet,
                bytes: offset + 8..end,
            })
        }
        6081 => {
            // Version 0; options of 4-byte words; protocol type Ethernet (or IP).
            let [first, _, p0, p1, v0, v1, v2, _, ..] = *payload else {
                return None;
            };
            let header = 8 + usize::from(first & 0x3f) * 4;
            if first >> 6 != 0 || header >= payload.len() {
                return None;
            }
            Some(Carried {
                kind: "geneve",
                id: Some(u32::from_be_bytes([0, v0, v1, v2])),
                inner: ethertype(u16::from_be_bytes([p0, p1]))?,
                bytes: offset + header..end,
            })
        }
        _ => None,
    }
}

/// GRE (RFC 2784, with RFC 2890's key and sequence number), at `offset` in the frame.
pub(crate) fn gre(bytes: &[u8], offset: usize) -> Option<Carried> {
    let [flags, version, p0, p1, ..] = *bytes else {
        return None;
    };
    // Version 0 only (1 is PPTP's enhanced GRE, which carries PPP).
    if version & 0x07 != 0 {
        return None;
    }
    let (checksum, key, sequence) = (flags & 0x80 != 0, flags & 0x20 != 0, flags & 0x10 != 0);
    let mut header = 4;
    if checksum {
        header += 4;
    }
    let id = if key {
        let k = bytes.get(header..header + 4)?;
        header += 4;
        Some(u32::from_be_bytes([k[0], k[1], k[2], k[3]]))
    } else {
        None
    };
    if sequence {
        header += 4;
    }
    if header >= bytes.len() {
        return None;
    }
    Some(Carried {
        kind: "gre",
        id,
        inner: ethertype(u16::from_be_bytes([p0, p1]))?,
        bytes: offset + header..offset + bytes.len(),
    })
}

/// IPv4 (protocol 4) or IPv6 (41) directly inside IP, at `offset` in the frame.
pub(crate) fn ip_in_ip(version6: bool, bytes: &[u8], offset: usize) -> Option<Carried> {
    (!bytes.is_empty()).then(|| Carried {
        kind: "ipip",
        id: None,
        inner: if version6 { Inner::Ipv6 } else { Inner::Ipv4 },
        bytes: offset..offset + bytes.len(),
    })
}

fn ethertype(value: u16) -> Option<Inner> {
    match value {
        0x6558 => Some(Inner::Ethernet),
        0x0800 => Some(Inner::Ipv4),
        0x86dd => Some(Inner::Ipv6),
        _ => None,
    }
}
