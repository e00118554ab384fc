//! Redis's RESP (RESP2 and RESP3): recognised on its port (6379, as Wireshark's resp dissector
//! is) when the payload starts with a RESP value or an inline command; the side on 6379 serves.
//! Each packet's whole values are read: a request's command, a reply's kind and error. The Info
//! line is Wireshark's: `Request: get k`, `Response: OK`, `Response: Error: ERR ...`, a command's
//! words spelled out and a reply's array counted (`Response: Array(2)`; empty: nothing).
//!
//! Not yet: pairing each command with its reply and latency (the requests table of issue #32),
//! and values split over segments (Wireshark reassembles them).

use super::{Found, Framing, L7, Protocol, Recognition, Transport};
use crate::text;

pub(crate) const PORT: u16 = 6379;

/// Nesting deeper than this is not read (Wireshark stops at the same kind of bound).
const MAX_DEPTH: usize = 8;
/// Info spells out at most this many characters.
const MAX_SUMMARY: usize = 512;

/// What one packet of a Redis connection says.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RedisMessages {
    /// Sent to the server (commands) rather than by it (replies).
    pub frontend: bool,
    /// The first command's name, as sent (`set`, `HGETALL`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Each whole value's kind, in order: `array`, `bulk`, `simple`, `error`, `integer`, `nil`,
    /// `inline`, or a RESP3 kind (`map`, `set`, `push`, `double`, `boolean`, `verbatim`, ...).
    pub kinds: Vec<&'static str>,
    /// The first error reply's text (`ERR value is not an integer or out of range`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What Wireshark's Info line says after `Request:` or `Response:`.
    #[serde(skip)]
    pub summary: String,
}

pub(crate) struct Redis;

impl Protocol for Redis {
    fn name(&self) -> &'static str {
        "redis"
    }

    // Streams are not followed yet: each packet is read by itself (see the module's note).
    fn recognises_stream(&self, _first: &[u8], _src_port: u16, _dst_port: u16) -> Recognition {
        Recognition::No
    }

    fn frame(&self, _bytes: &[u8], _room: usize) -> Framing {
        Framing::Unframed
    }

    fn dissect(&self, transport: Transport, src_port: u16, dst_port: u16, payload: &[u8]) -> Found {
        if transport != Transport::Tcp || (src_port != PORT && dst_port != PORT) {
            return Found::Nothing;
        }
        // A packet that does not start with a value may continue a long one: the port's guess.
        values(payload, dst_port == PORT).map_or(Found::Nothing, |messages| {
            Found::Dissected(L7::Redis(Box::new(messages)))
        })
    }
}

/// One RESP value, as far as the Info line and the fields need it.
enum Value {
    Scalar { kind: &'static str, text: Option<String> },
    Error(String),
    Aggregate { kind: &'static str, items: Vec<Value> },
}

impl Value {
    fn kind(&self) -> &'static str {
        match self {
            Self::Scalar { kind, .. } | Self::Aggregate { kind, .. } => kind,
            Self::Error(_) => "error",
        }
    }
}

fn values(payload: &[u8], frontend: bool) -> Option<RedisMessages> {
    let mut found = RedisMessages {
        frontend,
        command: None,
        kinds: Vec::new(),
        error: None,
        summary: String::new(),
    };
    let mut rest = payload;
    while !rest.is_empty() {
        let (value, used) = match rest[0] {
            b'*' | b'$' | b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'!' | b'=' | b'(' | b'%' | b'~' | b'>' | b'|' => {
                match value(rest, 0) {
                    Some(parsed) => parsed,
                    None => break,
                }
            }
            // An inline command (`PING\r\n`), as telnet users and redis-cli's pipes send it.
            _ if frontend && found.kinds.is_empty() => match inline(rest) {
                Some(parsed) => parsed,
                None => break,
            },
            _ => break,
        };
        summarise(&value, &mut found);
        rest = &rest[used..];
    }
    (!found.kinds.is_empty()).then_some(found)
}

fn summarise(value: &Value, found: &mut RedisMessages) {
    found.kinds.push(value.kind());
    let mut words: Vec<String> = Vec::new();
    match value {
        Value::Scalar { text, .. } => words.extend(text.clone()),
        Value::Error(message) => {
            words.push(format!("Error: {message}"));
            found.error.get_or_insert_with(|| message.clone());
        }
        // A command's words are spelled out; a reply's aggregate only counted (empty: nothing).
        Value::Aggregate { kind, items }
            if !found.frontend || items.iter().any(|item| matches!(item, Value::Aggregate { .. })) =>
        {
            let (name, count) = match *kind {
                "map" => ("Map", items.len() / 2),
                "attribute" => ("Attribute", items.len() / 2),
                "set" => ("Set", items.len()),
                "push" => ("Push", items.len()),
                _ => ("Array", items.len()),
            };
            if count > 0 {
                words.push(format!("{name}({count})"));
            }
        }
        Value::Aggregate { items, .. } => {
            for item in items {
                match item {
                    Value::Scalar { text, .. } => words.extend(text.clone()),
                    Value::Error(message) => words.push(format!("Error: {message}")),
                    Value::Aggregate { .. } => {}
                }
            }
        }
    }
    if found.frontend && found.command.is_none() {
        let first = match value {
            Value::Aggregate { items, .. } => items.first().and_then(|item| match item {
                Value::Scalar { text, .. } => text.clone(),
                _ => None,
            }),
            Value::Scalar { kind: "inline", text } => {
                text.as_deref().and_then(|t| t.split(' ').next()).map(str::to_owned)
            }
            _ => None,
        };
        found.command = first;
    }
    for word in words {
        if found.summary.len() >= MAX_SUMMARY {
            break;
        }
        found.summary.push(' ');
        found.summary.push_str(&word);
    }
    if found.summary.len() > MAX_SUMMARY {
        let cut = (0..=MAX_SUMMARY)
            .rev()
            .find(|i| found.summary.is_char_boundary(*i))
            .unwrap_or(0);
        found.summary.truncate(cut);
    }
}

/// The line at the start of `bytes` (without its CRLF) and the bytes it took.
fn line(bytes: &[u8]) -> Option<(&[u8], usize)> {
    let end = bytes.windows(2).position(|pair| pair == b"\r\n")?;
    Some((&bytes[..end], end + 2))
}

fn number(bytes: &[u8]) -> Option<i64> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

/// One value at the start of `bytes`, and the bytes it took; `None` when it is cut short or is
/// not RESP.
fn value(bytes: &[u8], depth: usize) -> Option<(Value, usize)> {
    if depth > MAX_DEPTH {
        return None;
    }
    let (&kind, _) = bytes.split_first()?;
    let (head, mut used) = line(&bytes[1..])?;
    used += 1;
    let scalar = |kind, text: &[u8]| Value::Scalar {
        kind,
        text: Some(text::from_wire(text)),
    };
    let value = match kind {
        b'+' => scalar("simple", head),
        b'-' => Value::Error(text::from_wire(head)),
        b':' => scalar("integer", head),
        b',' => scalar("double", head),
        b'#' => scalar("boolean", head),
        b'(' => scalar("bignum", head),
        b'_' => Value::Scalar {
            kind: "nil",
            text: None,
        },
        b'$' | b'!' | b'=' => {
            let len = number(head)?;
            if len < 0 {
                Value::Scalar {
                    kind: "nil",
                    text: None,
                }
            } else {
                let len = usize::try_from(len).ok()?;
                let body = bytes.get(used..used.checked_add(len)?)?;
                if bytes.get(used + len..used + len + 2)? != b"\r\n" {
                    return None;
                }
                used += len + 2;
                match kind {
                    b'$' => scalar("bulk", body),
                    b'!' => Value::Error(text::from_wire(body)),
                    _ => scalar("verbatim", body),
                }
            }
        }
        b'*' | b'%' | b'~' | b'>' | b'|' => {
            let count = number(head)?;
            if count < 0 {
                Value::Scalar {
                    kind: "nil",
                    text: None,
                }
            } else {
                // A map's entries are two values each.
                let values = usize::try_from(count)
                    .ok()?
                    .checked_mul(if kind == b'%' || kind == b'|' { 2 } else { 1 })?;
                // Each value takes at least three bytes: a bound before anything is allocated.
                if values > bytes.len() / 3 {
                    return None;
                }
                let mut items = Vec::with_capacity(values);
                for _ in 0..values {
                    let (item, took) = value(&bytes[used..], depth + 1)?;
                    items.push(item);
                    used += took;
                }
                let kind = match kind {
                    b'*' => "array",
                    b'%' => "map",
                    b'~' => "set",
                    b'>' => "push",
                    _ => "attribute",
                };
                Value::Aggregate { kind, items }
            }
        }
        _ => return None,
    };
    Some((value, used))
}

/// An inline command: printable words up to a CRLF.
fn inline(bytes: &[u8]) -> Option<(Value, usize)> {
    let (head, used) = line(bytes)?;
    if head.is_empty() || !head.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        return None;
    }
    Some((
        Value::Scalar {
            kind: "inline",
            text: Some(text::from_wire(head)),
        },
        used,
    ))
}

/// Wireshark's Info: `Request:` or `Response:`, then what the values say.
pub(crate) fn info(messages: &RedisMessages) -> Option<String> {
    let side = if messages.frontend { "Request:" } else { "Response:" };
    Some(format!("{side}{}", messages.summary))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(payload: &[u8], to_server: bool) -> RedisMessages {
        let (src, dst) = if to_server { (40000, PORT) } else { (PORT, 40000) };
        match Redis.dissect(Transport::Tcp, src, dst, payload) {
            Found::Dissected(L7::Redis(messages)) => *messages,
            other => panic!("not Redis: {other:?}"),
        }
    }

    fn info_of(payload: &[u8], to_server: bool) -> String {
        info(&read(payload, to_server)).unwrap()
    }

    #[test]
    fn commands_and_replies_read_as_wireshark_shows_them() {
        let set = read(b"*3\r\n$3\r\nset\r\n$1\r\nk\r\n$1\r\nv\r\n", true);
        assert_eq!(set.command.as_deref(), Some("set"));
        assert_eq!(info(&set).as_deref(), Some("Request: set k v"));
        assert_eq!(info_of(b"+OK\r\n", false), "Response: OK");
        assert_eq!(info_of(b"$1\r\nv\r\n", false), "Response: v");
        assert_eq!(info_of(b":-5\r\n", false), "Response: -5");
        assert_eq!(info_of(b"$-1\r\n", false), "Response:");
        assert_eq!(info_of(b"*0\r\n", false), "Response:");
        assert_eq!(info_of(b"*2\r\n$1\r\n0\r\n*0\r\n", false), "Response: Array(2)");
        assert_eq!(info_of(b"PING\r\n", true), "Request: PING");
    }

    #[test]
    fn an_error_reply_carries_its_text() {
        let reply = read(b"-ERR value is not an integer or out of range\r\n", false);
        assert_eq!(
            reply.error.as_deref(),
            Some("ERR value is not an integer or out of range")
        );
        assert_eq!(
            info(&reply).as_deref(),
            Some("Response: Error: ERR value is not an integer or out of range")
        );
        assert_eq!(reply.kinds, ["error"]);
    }

    #[test]
    fn resp3_maps_sets_and_pushes_are_read() {
        let map = read(b"%1\r\n$1\r\nf\r\n:1\r\n", false);
        assert_eq!(map.kinds, ["map"]);
        assert_eq!(info(&map).as_deref(), Some("Response: Map(1)"));
        assert_eq!(read(b"~1\r\n+a\r\n_\r\n#t\r\n", false).kinds, ["set", "nil", "boolean"]);
    }

    #[test]
    fn pipelined_values_are_all_read_and_a_cut_one_ends_the_packet() {
        let two = read(b"*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", true);
        assert_eq!(two.kinds, ["array", "array"]);
        assert_eq!(info(&two).as_deref(), Some("Request: PING GET k"));
        assert_eq!(read(b"+OK\r\n$10\r\nabc", false).kinds, ["simple"]);
    }

    #[test]
    fn hostile_lengths_and_depths_are_refused_without_allocating() {
        for payload in [
            &b"*99999999999\r\n"[..],
            b"$99999999999999999999\r\n",
            b"*-1\r\n",
            b"$3\r\nabcXY",
            b"%4611686018427387904\r\n",
        ] {
            let found = Redis.dissect(Transport::Tcp, PORT, 40000, payload);
            assert!(
                matches!(found, Found::Nothing | Found::Dissected(_)),
                "{payload:?}: {found:?}"
            );
        }
        let deep = "*1\r\n".repeat(MAX_DEPTH + 2) + "+x\r\n";
        assert_eq!(
            Redis.dissect(Transport::Tcp, PORT, 40000, deep.as_bytes()),
            Found::Nothing
        );
        assert_eq!(
            Redis.dissect(Transport::Tcp, PORT, 40000, b"\x00\x01binary"),
            Found::Nothing
        );
        assert_eq!(Redis.dissect(Transport::Tcp, 40001, 40000, b"+OK\r\n"), Found::Nothing);
    }
}
