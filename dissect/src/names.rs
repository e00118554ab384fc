//! Numbers in the layer tree as a person reads them, in Wireshark's manner: `IPv4 (0x0800)`,
//! `TCP (6)`, `request (1)`, `Echo (ping) request (8)`. The layers keep the numbers (the Info
//! line and filters use them); only their serialized form, which the API's detail view shows, is
//! the name with the number.

use serde::Serializer;

fn ethertype_name(value: u16) -> Option<&'static str> {
    Some(match value {
        0x0800 => "IPv4",
        0x0806 => "ARP",
        0x86dd => "IPv6",
        0x8100 => "802.1Q Virtual LAN",
        0x88a8 => "802.1ad Provider Bridge (Q-in-Q)",
        0x8847 => "MPLS label switched packet",
        0x88cc => "802.1 Link Layer Discovery Protocol (LLDP)",
        0x8035 => "Reverse ARP",
        0x88e5 => "802.1AE (MACsec)",
        _ => return None,
    })
}

fn ip_protocol_name(value: u8) -> Option<&'static str> {
    Some(match value {
        0 => "IPv6 Hop-by-Hop Option",
        1 => "ICMP",
        2 => "IGMP",
        4 => "IPIP",
        6 => "TCP",
        17 => "UDP",
        41 => "IPv6",
        43 => "Routing Header for IPv6",
        44 => "Fragment Header for IPv6",
        47 => "Generic Routing Encapsulation",
        50 => "Encapsulating Security Payload",
        51 => "Authentication Header",
        58 => "ICMPv6",
        59 => "No Next Header for IPv6",
        60 => "Destination Options for IPv6",
        89 => "OSPF IGP",
        103 => "PIM",
        112 => "Virtual Router Redundancy Protocol",
        132 => "SCTP",
        _ => return None,
    })
}

fn icmp_type_name(value: u8) -> Option<&'static str> {
    Some(match value {
        0 => "Echo (ping) reply",
        3 => "Destination unreachable",
        5 => "Redirect",
        8 => "Echo (ping) request",
        9 => "Router advertisement",
        10 => "Router solicitation",
        11 => "Time-to-live exceeded",
        12 => "Parameter problem",
        13 => "Timestamp request",
        14 => "Timestamp reply",
        _ => return None,
    })
}

fn icmpv6_type_name(value: u8) -> Option<&'static str> {
    Some(match value {
        1 => "Destination Unreachable",
        2 => "Packet Too Big",
        3 => "Time Exceeded",
        4 => "Parameter Problem",
        128 => "Echo (ping) request",
        129 => "Echo (ping) reply",
        130 => "Multicast Listener Query",
        131 => "Multicast Listener Report",
        133 => "Router Solicitation",
        134 => "Router Advertisement",
        135 => "Neighbor Solicitation",
        136 => "Neighbor Advertisement",
        137 => "Redirect",
        143 => "Multicast Listener Report Message v2",
        _ => return None,
    })
}

fn named<S: Serializer>(name: Option<&str>, number: String, s: S) -> Result<S::Ok, S::Error> {
    match name {
        Some(name) => s.serialize_str(&format!("{name} ({number})")),
        None => s.serialize_str(&number),
    }
}

pub(crate) fn ethertype<S: Serializer>(value: &u16, s: S) -> Result<S::Ok, S::Error> {
    named(ethertype_name(*value), format!("0x{value:04x}"), s)
}

pub(crate) fn ip_protocol<S: Serializer>(value: &u8, s: S) -> Result<S::Ok, S::Error> {
    named(ip_protocol_name(*value), value.to_string(), s)
}

pub(crate) fn ip_protocols<S: Serializer>(values: &[u8], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = s.serialize_seq(Some(values.len()))?;
    for value in values {
        let text = match ip_protocol_name(*value) {
            Some(name) => format!("{name} ({value})"),
            None => value.to_string(),
        };
        seq.serialize_element(&text)?;
    }
    seq.end()
}

pub(crate) fn arp_operation<S: Serializer>(value: &u16, s: S) -> Result<S::Ok, S::Error> {
    let name = match value {
        1 => Some("request"),
        2 => Some("reply"),
        3 => Some("reverse request"),
        4 => Some("reverse reply"),
        _ => None,
    };
    named(name, value.to_string(), s)
}

pub(crate) fn icmp_type<S: Serializer>(value: &u8, s: S) -> Result<S::Ok, S::Error> {
    named(icmp_type_name(*value), value.to_string(), s)
}

pub(crate) fn icmpv6_type<S: Serializer>(value: &u8, s: S) -> Result<S::Ok, S::Error> {
    named(icmpv6_type_name(*value), value.to_string(), s)
}

#[cfg(test)]
mod tests {
    use crate::Layer;

    #[test]
    fn numbers_read_as_wireshark_shows_them() {
        let layers = [
            Layer::Ethernet {
                src: "a".into(),
                dst: "b".into(),
                ethertype: 0x0800,
            },
            Layer::Arp {
                operation: 2,
                sender_ip: "1".into(),
                target_ip: "2".into(),
                sender_mac: "m".into(),
            },
            Layer::Icmp { icmp_type: 8, code: 0 },
            Layer::Icmpv6 {
                icmp_type: 135,
                code: 0,
            },
            Layer::Ipv6 {
                src: "s".into(),
                dst: "d".into(),
                hop_limit: 64,
                next_header: 6,
                extensions: vec![0, 44],
                fragment: false,
            },
        ];
        let json = serde_json::to_value(layers).unwrap();
        assert_eq!(json[0]["ethertype"], "IPv4 (0x0800)");
        assert_eq!(json[1]["operation"], "reply (2)");
        assert_eq!(json[2]["icmp_type"], "Echo (ping) request (8)");
        assert_eq!(json[3]["icmp_type"], "Neighbor Solicitation (135)");
        assert_eq!(json[4]["next_header"], "TCP (6)");
        assert_eq!(
            json[4]["extensions"],
            serde_json::json!(["IPv6 Hop-by-Hop Option (0)", "Fragment Header for IPv6 (44)"])
        );
        let unknown = serde_json::to_value(Layer::Ethernet {
            src: "a".into(),
            dst: "b".into(),
            ethertype: 0x1234,
        })
        .unwrap();
        assert_eq!(unknown["ethertype"], "0x1234");
    }
}
