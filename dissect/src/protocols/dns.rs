//! DNS (also mDNS and LLMNR, which share its message format): recognised on its ports, framed by
//! the two-byte length over TCP, dissected with simple-dns (and by hand as far as the question
//! when a later section does not parse), summarised as Wireshark does.

use super::{Cursor, Found, Framing, L7, Protocol, Recognition, Transport};
use crate::text;

/// DNS, mDNS and LLMNR share the message format.
pub(crate) const DNS_PORTS: [u16; 3] = [53, 5353, 5355];

pub(crate) struct Dns;

impl Protocol for Dns {
    fn name(&self) -> &'static str {
        "dns"
    }

    fn recognises_stream(&self, _first: &[u8], src_port: u16, dst_port: u16) -> Recognition {
        on_its_ports(src_port, dst_port).into()
    }

    fn frame(&self, bytes: &[u8], _room: usize) -> Framing {
        message_len(bytes)
    }

    fn dissect(&self, transport: Transport, src_port: u16, dst_port: u16, payload: &[u8]) -> Found {
        if !on_its_ports(src_port, dst_port) {
            return Found::Nothing;
        }
        let message = match transport {
            // DNS over TCP prefixes each message with its length.
            Transport::Tcp if payload.len() > 2 => &payload[2..],
            Transport::Tcp => return Found::Nothing,
            Transport::Udp => payload,
        };
        if let Some(found) = dns(message) {
            return Found::Dissected(found);
        }
        if let Some(question) = dns_question(message) {
            return Found::Partial(question);
        }
        Found::NotAsPromised(L7::Guess { name: "dns".into() })
    }
}

fn on_its_ports(src_port: u16, dst_port: u16) -> bool {
    DNS_PORTS.iter().any(|&port| src_port == port || dst_port == port)
}

fn message_len(bytes: &[u8]) -> Framing {
    if bytes.len() < 2 {
        return Framing::NeedMore;
    }
    let len = 2 + usize::from(u16::from_be_bytes([bytes[0], bytes[1]]));
    if bytes.len() < len {
        Framing::NeedMore
    } else {
        Framing::Complete { len, then_stop: false }
    }
}

fn dns(message: &[u8]) -> Option<L7> {
    let packet = simple_dns::Packet::parse(message).ok()?;
    let response = packet.has_flags(simple_dns::PacketFlag::RESPONSE);
    Some(L7::Dns {
        id: packet.id(),
        response,
        rcode: rcode_name(&format!("{:?}", packet.rcode())),
        queries: packet.questions.iter().map(|q| name_text(&q.qname)).collect(),
        query_types: packet.questions.iter().map(|q| qtype_name(q.qtype)).collect(),
        answers: packet
            .answers
            .iter()
            .map(|answer| answer_text(&answer.rdata))
            .take(16)
            .collect(),
    })
}

/// A query type as `dig` names it (`A`, `AAAA`, `ANY`), not as the library's Debug does.
fn qtype_name(qtype: simple_dns::QTYPE) -> String {
    match qtype {
        simple_dns::QTYPE::TYPE(kind) => format!("{kind:?}"),
        other => format!("{other:?}"),
    }
}

/// The header and questions of a DNS message whose later sections do not parse: the name the
/// client asked for is what matters most, and it comes first.
fn dns_question(message: &[u8]) -> Option<L7> {
    let mut r = Cursor(message);
    let id = r.u16()?;
    let flags = r.u16()?;
    let questions = r.u16()?;
    r.skip(6)?; // answer, authority and additional counts
    if questions == 0 {
        return None;
    }
    let (mut queries, mut query_types) = (Vec::new(), Vec::new());
    let mut at = 12;
    for _ in 0..questions.min(16) {
        let (name, next) = dns_name(message, at)?;
        let kind = u16::from_be_bytes([*message.get(next)?, *message.get(next + 1)?]);
        message.get(next + 3)?; // the class
        queries.push(name);
        query_types.push(simple_dns::QTYPE::try_from(kind).map_or_else(|_| format!("TYPE{kind}"), qtype_name));
        at = next + 4;
    }
    Some(L7::Dns {
        id,
        response: flags & 0x8000 != 0,
        rcode: format!("{:?}", simple_dns::RCODE::from(flags & 0x000f)),
        queries,
        query_types,
        answers: Vec::new(),
    })
}

/// A (possibly compressed) name at `at`: the dotted name and the offset after it. Pointers may
/// only go backwards, so a loop of pointers ends.
fn dns_name(message: &[u8], mut at: usize) -> Option<(String, usize)> {
    let mut labels: Vec<String> = Vec::new();
    let mut after = None;
    loop {
        let len = *message.get(at)?;
        match len {
            0 => break,
            1..=63 => {
                let label = message.get(at + 1..at + 1 + usize::from(len))?;
                labels.push(text::from_wire(label));
                at += 1 + usize::from(len);
            }
            0xc0..=0xff => {
                let target = usize::from(u16::from_be_bytes([len, *message.get(at + 1)?]) & 0x3fff);
                after.get_or_insert(at + 2);
                if target >= at {
                    return None;
                }
                at = target;
            }
            _ => return None,
        }
        if labels.len() > 127 {
            return None;
        }
    }
    Some((labels.join("."), after.unwrap_or(at + 1)))
}

/// An answer as `dig` shows it (`A 10.0.0.1`, `CNAME web.example.org`); rarer types fall back to
/// the DNS library's own rendering.
fn answer_text(rdata: &simple_dns::rdata::RData<'_>) -> String {
    use simple_dns::rdata::RData;
    match rdata {
        RData::A(a) => format!("A {}", std::net::Ipv4Addr::from(a.address)),
        RData::AAAA(a) => format!("AAAA {}", std::net::Ipv6Addr::from(a.address)),
        RData::CNAME(name) => format!("CNAME {}", name_text(&name.0)),
        RData::NS(name) => format!("NS {}", name_text(&name.0)),
        RData::PTR(name) => format!("PTR {}", name_text(&name.0)),
        RData::MX(mx) => format!("MX {} {}", mx.preference, name_text(&mx.exchange)),
        other => text::storable(format!("{other:?}")),
    }
}

/// A name's labels from their bytes (the library's own rendering keeps NUL bytes).
fn name_text(name: &simple_dns::Name<'_>) -> String {
    let labels: Vec<String> = name
        .get_labels()
        .iter()
        .map(|label| text::from_wire(label.as_ref()))
        .collect();
    labels.join(".")
}

/// The response code as dig and the RFCs name it (`NOERROR`, `NXDOMAIN`, ...), from simple-dns's
/// variant name.
fn rcode_name(variant: &str) -> String {
    match variant {
        "NoError" => "NOERROR",
        "FormatError" => "FORMERR",
        "ServerFailure" => "SERVFAIL",
        "NameError" => "NXDOMAIN",
        "NotImplemented" => "NOTIMP",
        "Refused" => "REFUSED",
        other => return other.to_ascii_uppercase(),
    }
    .into()
}

/// `Standard query 0x1a2b A example.org`, `Standard query response 0x1a2b No such name A x.example`.
pub(crate) fn info(l7: &L7) -> Option<String> {
    match l7 {
        L7::Dns {
            id,
            response,
            rcode,
            queries,
            query_types,
            answers,
        } => {
            let question: Vec<String> = queries
                .iter()
                .zip(query_types)
                .map(|(name, kind)| format!("{kind} {name}"))
                .collect();
            let mut line = if *response {
                let outcome = match rcode.as_str() {
                    "NOERROR" => String::new(),
                    "NXDOMAIN" => "No such name ".into(),
                    "SERVFAIL" => "Server failure ".into(),
                    "REFUSED" => "Refused ".into(),
                    "FORMERR" => "Format error ".into(),
                    "NOTIMP" => "Not implemented ".into(),
                    other => format!("{other} "),
                };
                format!("Standard query response 0x{id:04x} {outcome}{}", question.join(" "))
            } else {
                format!("Standard query 0x{id:04x} {}", question.join(" "))
            };
            for answer in answers {
                line.push(' ');
                line.push_str(answer);
            }
            Some(line)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use simple_dns::rdata::{A, CNAME, RData};
    use simple_dns::{CLASS, Name, Packet, ResourceRecord};

    #[test]
    fn dns_answers_read_like_dig() {
        let mut reply = Packet::new_reply(7);
        let name = Name::new_unchecked("web.example.org");
        reply.answers.push(ResourceRecord::new(
            name.clone(),
            CLASS::IN,
            30,
            RData::CNAME(CNAME(Name::new_unchecked("edge.example.org"))),
        ));
        reply.answers.push(ResourceRecord::new(
            name,
            CLASS::IN,
            30,
            RData::A(A {
                address: u32::from(std::net::Ipv4Addr::new(10, 203, 0, 2)),
            }),
        ));
        let bytes = reply.build_bytes_vec().unwrap();
        let Some(super::L7::Dns { answers, response, .. }) = super::dns(&bytes) else {
            panic!("not DNS")
        };
        assert!(response);
        assert_eq!(answers, ["CNAME edge.example.org", "A 10.203.0.2"]);
    }
}
