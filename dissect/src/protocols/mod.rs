//! The application protocols, one module each, as Wireshark's `packet-*.c` files are: each owns
//! its recognition by content, its framing on a reassembled TCP stream (`crate::stream` calls
//! back into it), its dissection into fields, and its Info line. A protocol is added by its
//! module, a line in [`PROTOCOLS`], its variant of [`L7`], and its event table and UI columns.
//!
//! Content first, ports only as a labelled guess ([`guess`]).

mod amqp;
mod dns;
mod http;
mod http2;
mod postgres;
mod quic;
mod redis;
mod tls;

pub use amqp::AmqpFrames;
pub use http2::Http2Message;
pub use postgres::PostgresMessages;
pub use redis::RedisMessages;

use serde::Serialize;

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
        /// Carried in a QUIC Initial packet rather than over TCP.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        quic: bool,
    },
    /// One HTTP/2 header block, stream end, reset or GOAWAY (gRPC is HTTP/2 with its content type).
    Http2(Box<Http2Message>),
    /// The PostgreSQL messages one packet holds whole.
    #[serde(rename = "postgresql")]
    Postgres(Box<PostgresMessages>),
    /// The Redis (RESP) values one packet holds whole.
    Redis(Box<RedisMessages>),
    /// The AMQP 0-9-1 frames one packet holds whole.
    Amqp(Box<AmqpFrames>),
    /// Recognised only by its well-known port; the payload was not dissected.
    Guess { name: String },
}

impl L7 {
    /// Short protocol name: `dns`, `http`, `tls`, or the guessed name.
    pub fn name(&self) -> &str {
        match self {
            Self::Dns { .. } => "dns",
            Self::Http { .. } => "http",
            Self::Tls { quic: true, .. } => "quic",
            Self::Tls { .. } => "tls",
            Self::Http2(message) if message.content_type.as_deref().is_some_and(http2::is_grpc) => "grpc",
            Self::Http2(_) => "http2",
            Self::Postgres(_) => "postgresql",
            Self::Redis(_) => "redis",
            Self::Amqp(_) => "amqp",
            Self::Guess { name } => name,
        }
    }

    /// The protocol's main name: the DNS query name, the HTTP host, the TLS SNI, the PostgreSQL
    /// database a connection opens, the AMQP routing key or queue a method names.
    pub fn main_name(&self) -> Option<&str> {
        match self {
            Self::Dns { queries, .. } => queries.first().map(String::as_str),
            Self::Http { host, .. } => host.as_deref(),
            Self::Tls { sni, .. } => sni.as_deref(),
            Self::Http2(message) => message.authority.as_deref(),
            Self::Postgres(messages) => messages.database.as_deref(),
            Self::Redis(_) => None,
            Self::Amqp(frames) => frames.routing_key.as_deref().or(frames.queue.as_deref()),
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

/// What each protocol module provides.
pub(crate) trait Protocol: Sync {
    /// Its short name, as [`L7::name`] says it.
    fn name(&self) -> &'static str;
    /// Whether a TCP stream carries this protocol, from its first bytes (two at least) and ports.
    fn recognises_stream(&self, first: &[u8], src_port: u16, dst_port: u16) -> Recognition;
    /// Where the next message ends on a reassembled stream; `room`: the bytes the stream may still
    /// follow.
    fn frame(&self, bytes: &[u8], room: usize) -> Framing;
    /// What one payload (a packet's, or a message cut from a stream) says; `Found::Nothing` when
    /// it is not this protocol.
    fn dissect(&self, transport: Transport, src_port: u16, dst_port: u16, payload: &[u8]) -> Found;
    /// A protocol whose messages depend on what came before on the connection reads a stream
    /// through a follower of its own instead of [`Protocol::frame`].
    fn follower(&self) -> Option<Box<dyn Follower>> {
        None
    }
}

/// Whether a stream's first bytes are a protocol's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recognition {
    Yes,
    No,
    /// Not enough bytes yet to tell.
    NeedMore,
}

impl From<bool> for Recognition {
    fn from(yes: bool) -> Self {
        if yes { Self::Yes } else { Self::No }
    }
}

/// A follower met bytes that are not its protocol (an HTTP/2 frame shorter than its padding).
#[derive(Debug)]
pub(crate) struct NotThisProtocol;

/// Reads one direction of a connection for its whole life, keeping what the protocol carries
/// from message to message (HTTP/2's header tables), with bounded memory: it takes the stream's
/// bytes as they come and keeps only what it must.
pub(crate) trait Follower: Send + std::fmt::Debug {
    /// Reads from the start of `bytes` (the stream's in-order bytes it has not taken yet);
    /// returns how many it took, adding the messages completed in them with the offset (in
    /// `bytes`) of each one's last byte. An error when the bytes are not this protocol.
    fn read(&mut self, bytes: &[u8], messages: &mut Vec<(usize, L7)>) -> Result<usize, NotThisProtocol>;
    /// Bytes of state it holds, for the memory bound.
    fn held(&self) -> usize;
}

impl std::fmt::Debug for dyn Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The protocols in the order their recognition by content is tried.
pub(crate) static PROTOCOLS: &[&dyn Protocol] = &[
    &dns::Dns,
    &http::Http,
    &tls::Tls,
    &http2::Http2,
    &quic::Quic,
    &postgres::Postgres,
    &redis::Redis,
    &amqp::Amqp,
];

/// How a protocol cuts a reassembled stream into messages.
pub(crate) enum Framing {
    NeedMore,
    /// Not a message of the stream's protocol (or one this crate cannot frame).
    Unframed,
    /// The first `len` bytes are one message; `then_stop` when what follows cannot be framed (a
    /// chunked or unbounded HTTP body).
    Complete {
        len: usize,
        then_stop: bool,
    },
}

/// Recognises the payload by its content (DNS on its ports; HTTP/1.x request and status lines on
/// any TCP or UDP port, SSDP among them; TLS handshake records on any TCP port), and only then
/// guesses by well-known port, marked as a guess. A well-known port whose payload is not its
/// protocol (nor another's) is reported as such.
pub fn dissect(transport: Transport, src_port: u16, dst_port: u16, payload: &[u8]) -> Found {
    if payload.is_empty() {
        return Found::Nothing;
    }
    let mut promised = None;
    for protocol in PROTOCOLS {
        match protocol.dissect(transport, src_port, dst_port, payload) {
            Found::Nothing => {}
            Found::NotAsPromised(guess) => {
                promised.get_or_insert(guess);
            }
            found => return found,
        }
    }
    if let Some(guess) = promised {
        return Found::NotAsPromised(guess);
    }
    guess(transport, src_port.min(dst_port))
        .or_else(|| guess(transport, src_port.max(dst_port)))
        .map_or(Found::Nothing, Found::Dissected)
}

/// The Info line of an application message, in the manner of Wireshark's Info column.
pub(crate) fn info(l7: &L7) -> Option<String> {
    match l7 {
        L7::Dns { .. } => dns::info(l7),
        L7::Http { .. } => http::info(l7),
        L7::Tls { .. } => tls::info(l7),
        L7::Http2(message) => http2::info(message),
        L7::Postgres(messages) => postgres::info(messages),
        L7::Redis(messages) => redis::info(messages),
        L7::Amqp(frames) => amqp::info(frames),
        L7::Guess { .. } => None,
    }
}

pub(crate) struct Cursor<'a>(pub(crate) &'a [u8]);

impl<'a> Cursor<'a> {
    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    pub(crate) fn skip(&mut self, n: usize) -> Option<()> {
        self.take(n).map(|_| ())
    }
    pub(crate) fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    pub(crate) fn u16(&mut self) -> Option<u16> {
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
        (Transport::Tcp, amqp::PORT) => "amqp",
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
