//! The link layer: Ethernet II, 802.1Q and 802.1ad (QinQ) tags, ARP.

use std::net::IpAddr;

use pnet::packet::Packet;
use pnet::packet::arp::ArpPacket;
use pnet::packet::ethernet::{EtherType, EtherTypes, EthernetPacket};
use pnet::packet::vlan::VlanPacket;

use crate::{Dissection, Layer, Malformed, network};

/// An Ethernet frame starting at `offset` in the captured frame (a tunnel's inner one, or the
/// frame itself).
pub(crate) fn ethernet(d: &mut Dissection, frame: &[u8], offset: usize) {
    let Some(ethernet) = EthernetPacket::new(frame) else {
        d.malformed = Some(Malformed::TruncatedEthernet);
        return;
    };
    d.layer(|| Layer::Ethernet {
        src: ethernet.get_source().to_string(),
        dst: ethernet.get_destination().to_string(),
        ethertype: ethernet.get_ethertype().0,
    });
    let mut offset = offset + 14;
    let mut ethertype = ethernet.get_ethertype();
    let mut payload = ethernet.payload();
    // 802.1Q, and QinQ (0x88a8) outer tags.
    while ethertype == EtherTypes::Vlan || ethertype == EtherType(0x88a8) {
        let Some(vlan) = VlanPacket::new(payload) else {
            d.malformed = Some(Malformed::TruncatedVlan);
            return;
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
        EtherTypes::Ipv4 => network::ipv4(d, payload, offset),
        EtherTypes::Ipv6 => network::ipv6(d, payload, offset),
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
}
