//! The transport layer: TCP and UDP (ports, flags, where the payload sits), ICMP and ICMPv6, and
//! the hand-over of a payload to the application protocols.

use pnet::packet::Packet;
use pnet::packet::icmp::IcmpPacket;
use pnet::packet::icmpv6::Icmpv6Packet;
use pnet::packet::ip::{IpNextHeaderProtocol, IpNextHeaderProtocols};
use pnet::packet::tcp::TcpPacket;
use pnet::packet::udp::UdpPacket;

use crate::protocols::{self, Transport};
use crate::{Dissection, Layer, Malformed, tunnel};

/// `bytes` is the transport as captured, with the length it had as sent (from the IP header).
pub(crate) fn transport(
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
                Transport::Tcp,
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
            if let Some(carried) = tunnel::udp(udp.get_destination(), udp.payload(), offset + 8) {
                d.carried = Some(carried);
                return;
            }
            application(
                d,
                Transport::Udp,
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
        IpNextHeaderProtocols::Ipv4 | IpNextHeaderProtocols::Ipv6 | IpNextHeaderProtocols::Gre => {
            d.transport = Some(name_of(protocol));
            d.carried = match protocol {
                IpNextHeaderProtocols::Gre => tunnel::gre(bytes, offset),
                _ => tunnel::ip_in_ip(protocol == IpNextHeaderProtocols::Ipv6, bytes, offset),
            };
        }
        other => d.transport = Some(name_of(other)),
    }
}

fn application(d: &mut Dissection, transport: Transport, src_port: u16, dst_port: u16, payload: &[u8]) {
    match protocols::dissect(transport, src_port, dst_port, payload) {
        protocols::Found::Dissected(found) => {
            d.layer(|| Layer::Application(found.clone()));
            d.l7 = Some(found);
        }
        protocols::Found::Nothing => {}
        protocols::Found::Partial(found) => {
            // What parsed is kept and shown; the rest is counted as malformed.
            d.layer(|| Layer::Application(found.clone()));
            d.l7 = Some(found);
            d.malformed = Some(Malformed::PartialL7);
        }
        protocols::Found::NotAsPromised(guess) => {
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
