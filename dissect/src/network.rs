//! The network layer: IPv4 (fragments, and a total length that bounds the transport against
//! Ethernet padding) and IPv6 with its extension headers.

use std::net::IpAddr;

use pnet::packet::ip::IpNextHeaderProtocols;
use pnet::packet::ipv4::Ipv4Packet;
use pnet::packet::ipv6::{ExtensionPacket, FragmentPacket, Ipv6Packet};

use crate::transport::transport;
use crate::{Dissection, Layer, Malformed};

pub(crate) fn ipv4(d: &mut Dissection, bytes: &[u8], offset: usize) {
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

pub(crate) fn ipv6(d: &mut Dissection, bytes: &[u8], offset: usize) {
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
