//! A one-line summary of a packet in the manner of Wireshark's Info column: what the innermost
//! layer that parsed says (`Standard query 0x1a2b A example.org`, `GET /index.html HTTP/1.1`,
//! `Client Hello (SNI=example.org)`, `40000 → 443 [SYN, ACK] Seq=... Win=64240 Len=0`).
//! `dissect/tests/info.rs` compares it with tshark's `_ws.col.info` and lists where it differs.

use crate::{Dissection, Layer};

/// The summary of a packet dissected with [`crate::dissect`] (its layers are needed).
pub fn info(d: &Dissection) -> String {
    for layer in d.layers.iter().rev() {
        let line = match layer {
            Layer::Application(l7) => crate::protocols::info(l7),
            // What a tunnel carried speaks for the packet; its own header says nothing more.
            Layer::Tunnel { .. } => None,
            Layer::Tcp {
                src_port,
                dst_port,
                seq,
                ack,
                window,
                len,
                ..
            } => Some(tcp(
                *src_port,
                *dst_port,
                *seq,
                *ack,
                d.tcp_flags.unwrap_or(0),
                *window,
                *len,
            )),
            Layer::Udp {
                src_port,
                dst_port,
                length,
            } => Some(format!("{src_port} → {dst_port} Len={}", length.saturating_sub(8))),
            Layer::Icmp { icmp_type, code } => Some(icmp(*icmp_type, *code)),
            Layer::Icmpv6 { icmp_type, code } => Some(icmpv6(*icmp_type, *code)),
            Layer::Arp {
                operation,
                sender_ip,
                target_ip,
                sender_mac,
            } => Some(match operation {
                1 => format!("Who has {target_ip}? Tell {sender_ip}"),
                2 => format!("{sender_ip} is at {sender_mac}"),
                other => format!("ARP operation {other}"),
            }),
            Layer::Ipv4 { protocol, .. } => Some(format!("IPv4, protocol {protocol}")),
            Layer::Ipv6 { next_header, .. } => Some(format!("IPv6, next header {next_header}")),
            Layer::Vlan { ethertype, .. } | Layer::Ethernet { ethertype, .. } => {
                Some(format!("Ethernet II, type 0x{ethertype:04x}"))
            }
        };
        if let Some(line) = line {
            return line;
        }
    }
    String::new()
}

fn tcp(src_port: u16, dst_port: u16, seq: u32, ack: u32, flags: u8, window: u16, len: usize) -> String {
    // Wireshark's order: lowest bit first.
    const NAMES: [(u8, &str); 8] = [
        (0x01, "FIN"),
        (0x02, "SYN"),
        (0x04, "RST"),
        (0x08, "PSH"),
        (0x10, "ACK"),
        (0x20, "URG"),
        (0x40, "ECE"),
        (0x80, "CWR"),
    ];
    let names: Vec<&str> = NAMES
        .iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, name)| *name)
        .collect();
    let mut line = format!("{src_port} → {dst_port} [{}] Seq={seq}", names.join(", "));
    if flags & 0x10 != 0 {
        line.push_str(&format!(" Ack={ack}"));
    }
    line.push_str(&format!(" Win={window} Len={len}"));
    line
}

fn icmp(kind: u8, code: u8) -> String {
    match (kind, code) {
        (0, _) => "Echo (ping) reply".into(),
        (8, _) => "Echo (ping) request".into(),
        (3, 3) => "Destination unreachable (Port unreachable)".into(),
        (3, 1) => "Destination unreachable (Host unreachable)".into(),
        (3, _) => format!("Destination unreachable (code {code})"),
        (11, 0) => "Time-to-live exceeded (Time to live exceeded in transit)".into(),
        _ => format!("ICMP type {kind}, code {code}"),
    }
}

fn icmpv6(kind: u8, code: u8) -> String {
    match kind {
        128 => "Echo (ping) request".into(),
        129 => "Echo (ping) reply".into(),
        133 => "Router Solicitation".into(),
        134 => "Router Advertisement".into(),
        135 => "Neighbor Solicitation".into(),
        136 => "Neighbor Advertisement".into(),
        _ => format!("ICMPv6 type {kind}, code {code}"),
    }
}
