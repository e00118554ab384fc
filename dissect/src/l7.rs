//! Application layer: DNS (simple-dns), HTTP/1.x (httparse), TLS hellos, and a port-based guess
//! for everything else.
//!
//! TLS hellos are walked by hand rather than with a TLS parsing library: the capture cuts packets
//! at the snaplen and TCP splits large ClientHellos (post-quantum key shares make them ~1.8 kB),
//! so the walker must return whatever fields precede the cut, which complete-record parsers refuse.

use serde::Serialize;

use crate::{ja4, text};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Udp,
}

/// The application protocol of a packet and what it says.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "protocol", rename_all = "snake_case")]
pub enum L7 {
    Dns {
        id: u16,
        response: bool,
        rcode: String,
        queries: Vec<String>,
        query_types: Vec<String>,
        answers: Vec<String>,
    },
    Http {
        method: Option<String>,
        host: Option<String>,
        path: Option<String>,
        status: Option<u16>,
        /// The response's reason phrase (`OK`).
        reason: Option<String>,
        /// `HTTP/1.0` or `HTTP/1.1`, when the start line got that far.
        version: Option<String>,
        user_agent: Option<String>,
    },
    Tls {
        handshake: String,
        version: Option<String>,
        sni: Option<String>,
        alpn: Vec<String>,
        /// JA4 fingerprint of a ClientHello whose extensions were all captured.
        ja4: Option<String>,
    },
    /// Recognised only by its well-known port; the payload was not dissected.
    Guess { name: String },
}

impl L7 {
    /// Short protocol name: `dns`, `http`, `tls`, or the guessed name.
    pub fn name(&self) -> &str {
        match self {
            Self::Dns { .. } => "dns",
            Self::Http { .. } => "http",
            Self::Tls { .. } => "tls",
            Self::Guess { name } => name,
        }
    }

    /// The protocol's main name: the DNS query name, the HTTP host, the TLS SNI.
    pub fn main_name(&self) -> Option<&str> {
        match self {
            Self::Dns { queries, .. } => queries.first().map(String::as_str),
            Self::Http { host, .. } => host.as_deref(),
            Self::Tls { sni, .. } => sni.as_deref(),
            Self::Guess { .. } => None,
        }
    }

    pub fn is_guess(&self) -> bool {
        matches!(self, Self::Guess { .. })
    }
}

/// What the application layer of one packet turned out to be.
#[derive(Debug, Clone, PartialEq)]
pub enum Found {
    /// Nothing to say: no payload, or nothing recognised by content or port.
    Nothing,
    Dissected(L7),
    /// Dissected as far as the bytes allowed; a later part did not parse (a DNS answer the
    /// library rejects after a readable question).
    Partial(L7),
    /// A well-known port promised a protocol the payload does not parse as: the port's guess.
    NotAsPromised(L7),
}

/// DNS, mDNS and LLMNR share the message format.
pub(crate) const DNS_PORTS: [u16; 3] = [53, 5353, 5355];

/// Recognises the payload by its content first (DNS on its ports; HTTP/1.x request and status
/// lines on any TCP or UDP port, SSDP among them; TLS handshake records on any TCP port), and
/// only then guesses by well-known port, marked as a guess.
pub fn dissect(transport: Transport, src_port: u16, dst_port: u16, payload: &[u8]) -> Found {
    if payload.is_empty() {
        return Found::Nothing;
    }
    if DNS_PORTS.iter().any(|&port| src_port == port || dst_port == port) {
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
        if http(payload).is_none() {
            return Found::NotAsPromised(L7::Guess { name: "dns".into() });
        }
    }
    if let Some(http) = http(payload) {
        return Found::Dissected(http);
    }
    if transport == Transport::Tcp
        && let Some(tls) = tls(payload)
    {
        return Found::Dissected(tls);
    }
    guess(transport, src_port.min(dst_port))
        .or_else(|| guess(transport, src_port.max(dst_port)))
        .map_or(Found::Nothing, Found::Dissected)
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

/// Request methods of HTTP/1.x (RFC 9110, PATCH) and of SSDP/GENA over UDP.
const KNOWN_METHODS: [&str; 13] = [
    "GET",
    "HEAD",
    "POST",
    "PUT",
    "DELETE",
    "CONNECT",
    "OPTIONS",
    "TRACE",
    "PATCH",
    "M-SEARCH",
    "NOTIFY",
    "SUBSCRIBE",
    "UNSUBSCRIBE",
];

fn http(payload: &[u8]) -> Option<L7> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let header = |headers: &[httparse::Header<'_>], name: &str| {
        headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| text::from_wire(h.value))
    };
    if payload.starts_with(b"HTTP/1.") {
        let mut response = httparse::Response::new(&mut headers);
        // Partial is fine: the status line is what a cut response still has.
        response.parse(payload).ok()?;
        return Some(L7::Http {
            method: None,
            host: None,
            path: None,
            status: response.code,
            reason: response
                .reason
                .filter(|r| !r.is_empty())
                .map(|r| text::storable(r.to_owned())),
            version: response.version.map(http_version),
            user_agent: None,
        });
    }
    let mut request = httparse::Request::new(&mut headers);
    let status = request.parse(payload).ok()?;
    let method = request.method?.to_owned();
    // A request line cut short ("ping 5", "hello 0": any word, a space, any word) parses as a
    // partial request; recognised by content on any port, it counts only with a method HTTP and
    // SSDP clients really send, or once its `HTTP/1.x` version has been seen.
    if status.is_partial() && request.version.is_none() && !KNOWN_METHODS.contains(&method.as_str()) {
        return None;
    }
    Some(L7::Http {
        method: Some(text::storable(method)),
        host: header(request.headers, "host"),
        path: request.path.map(|path| text::storable(path.to_owned())),
        status: None,
        reason: None,
        version: request.version.map(http_version),
        user_agent: header(request.headers, "user-agent"),
    })
}

fn http_version(minor: u8) -> String {
    format!("HTTP/1.{minor}")
}

/// ClientHello / ServerHello, as far as the bytes go.
fn tls(payload: &[u8]) -> Option<L7> {
    // Record header: type 22 (handshake), version 3.x, length.
    if payload.len() < 9 || payload[0] != 22 || payload[1] != 3 {
        return None;
    }
    let handshake = match payload[5] {
        1 => "client_hello",
        2 => "server_hello",
        _ => return None,
    };
    let mut r = Cursor(&payload[9..]);
    let legacy_version = r.u16()?;
    let mut found = L7::Tls {
        handshake: handshake.into(),
        version: Some(version_name(legacy_version)),
        sni: None,
        alpn: vec![],
        ja4: None,
    };
    let mut hello = ja4::Hello {
        legacy_version,
        ..ja4::Hello::default()
    };
    let walked = (|| {
        r.skip(32)?; // random
        let session_id = r.u8()?;
        r.skip(usize::from(session_id))?;
        if handshake == "client_hello" {
            let suites = r.u16()?;
            hello.ciphers = u16_list(r.take(usize::from(suites))?);
            let compression = r.u8()?;
            r.skip(usize::from(compression))?;
        } else {
            r.skip(3)?; // cipher suite, compression method
        }
        // The snaplen or a TCP segment boundary may cut the extensions: read what is there.
        let extensions_len = usize::from(r.u16()?);
        let available = extensions_len.min(r.0.len());
        let mut extensions = Cursor(r.take(available)?);
        let L7::Tls { version, sni, alpn, .. } = &mut found else {
            unreachable!()
        };
        while !extensions.0.is_empty() {
            let (kind, len) = (extensions.u16()?, extensions.u16()?);
            let data = extensions.take(usize::from(len))?;
            hello.extensions.push(kind);
            match kind {
                0 => {
                    *sni = server_name(data);
                    hello.sni = true;
                }
                16 => {
                    *alpn = protocol_names(data);
                    hello.first_alpn = alpn.first().map(|name| name.as_bytes().to_vec());
                }
                13 => hello.signature_algorithms = data.get(2..).map(u16_list).unwrap_or_default(),
                43 => {
                    // supported_versions: a list in a ClientHello, the chosen one in a ServerHello.
                    let chosen = if handshake == "client_hello" {
                        hello.supported_versions = data.get(1..).map(u16_list).unwrap_or_default();
                        data.get(1..3)
                    } else {
                        data.get(0..2)
                    };
                    if let Some(v) = chosen {
                        *version = Some(version_name(u16::from_be_bytes([v[0], v[1]])));
                    }
                }
                _ => {}
            }
        }
        (available == extensions_len).then_some(())
    })();
    // A hello cut short still yields the fields before the cut; its fingerprint would be wrong.
    if walked.is_some()
        && handshake == "client_hello"
        && let L7::Tls { ja4, .. } = &mut found
    {
        *ja4 = Some(ja4::fingerprint(&hello));
    }
    Some(found)
}

fn u16_list(bytes: &[u8]) -> Vec<u16> {
    bytes
        .chunks_exact(2)
        .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
        .collect()
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

fn server_name(data: &[u8]) -> Option<String> {
    let mut r = Cursor(data);
    let _list_len = r.u16()?;
    while let Some(kind) = r.u8() {
        let len = r.u16()?;
        let name = r.take(usize::from(len))?;
        if kind == 0 {
            return Some(text::from_wire(name));
        }
    }
    None
}

fn protocol_names(data: &[u8]) -> Vec<String> {
    let mut r = Cursor(data);
    let mut names = Vec::new();
    if r.u16().is_none() {
        return names;
    }
    while let Some(len) = r.u8() {
        let Some(name) = r.take(usize::from(len)) else { break };
        names.push(text::from_wire(name));
    }
    names
}

fn version_name(version: u16) -> String {
    match version {
        0x0300 => "SSL 3.0".into(),
        0x0301 => "TLS 1.0".into(),
        0x0302 => "TLS 1.1".into(),
        0x0303 => "TLS 1.2".into(),
        0x0304 => "TLS 1.3".into(),
        other => format!("0x{other:04x}"),
    }
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn skip(&mut self, n: usize) -> Option<()> {
        self.take(n).map(|_| ())
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
}

/// Well-known ports, as a labelled guess (IANA service names).
fn guess(transport: Transport, port: u16) -> Option<L7> {
    let name = match (transport, port) {
        (_, 22) => "ssh",
        (Transport::Tcp, 25 | 587) => "smtp",
        (Transport::Udp, 67 | 68) => "dhcp",
        (Transport::Udp, 123) => "ntp",
        (Transport::Tcp, 80 | 8080) => "http",
        (Transport::Tcp, 443 | 8443) => "tls",
        (Transport::Udp, 443) => "quic",
        (Transport::Tcp, 5432) => "postgresql",
        (Transport::Tcp, 5672) => "amqp",
        (Transport::Tcp, 6379) => "redis",
        (Transport::Tcp, 3306) => "mysql",
        (Transport::Tcp, 2379 | 2380) => "etcd",
        (Transport::Tcp, 6443) => "kubernetes-api",
        (Transport::Udp, 4789) => "vxlan",
        (Transport::Udp, 514) => "syslog",
        (Transport::Udp, 161 | 162) => "snmp",
        _ => return None,
    };
    Some(L7::Guess { name: name.into() })
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
