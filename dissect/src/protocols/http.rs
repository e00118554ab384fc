//! HTTP/1.x (and SSDP/GENA over UDP): one recogniser for packets and streams, framed by its head
//! and `Content-Length`, dissected with httparse, summarised as Wireshark does.

use super::{Found, Framing, L7, Protocol, Recognition, Transport};
use crate::text;

pub(crate) struct Http;

impl Protocol for Http {
    fn name(&self) -> &'static str {
        "http"
    }

    fn recognises_stream(&self, first: &[u8], _src_port: u16, _dst_port: u16) -> Recognition {
        recognises(first).into()
    }

    fn frame(&self, bytes: &[u8], room: usize) -> Framing {
        message_len(bytes, room)
    }

    fn dissect(&self, _transport: Transport, _src_port: u16, _dst_port: u16, payload: &[u8]) -> Found {
        http(payload).map_or(Found::Nothing, Found::Dissected)
    }
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
    if !recognises(payload) {
        return None;
    }
    let mut request = httparse::Request::new(&mut headers);
    request.parse(payload).ok()?;
    let method = request.method?.to_owned();
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

/// Whether bytes start an HTTP/1.x message: a status line, or a request line whose method is
/// one HTTP and SSDP clients really send (any port: "ping 5" or "hello 0" is not HTTP), or another
/// uppercase token once the line's `HTTP/1.x` version is in sight (WebDAV's `PROPFIND`). The one
/// test of what HTTP looks like, for packets and streams alike.
fn recognises(bytes: &[u8]) -> bool {
    if bytes.starts_with(b"HTTP/1.") {
        return true;
    }
    let word = bytes
        .iter()
        .take(16)
        .take_while(|b| b.is_ascii_uppercase() || **b == b'-')
        .count();
    if word == 0 || bytes.get(word) != Some(&b' ') {
        return false;
    }
    if KNOWN_METHODS.iter().any(|method| method.as_bytes() == &bytes[..word]) {
        return true;
    }
    let line_end = bytes
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(bytes.len());
    bytes[..line_end].windows(8).any(|w| w == b" HTTP/1.")
}

/// One HTTP/1.x request or response: its head, and a body of `Content-Length` bytes when it
/// fits in `room` (the rest of the followed bytes).
fn message_len(bytes: &[u8], room: usize) -> Framing {
    if !recognises(bytes) {
        return Framing::Unframed;
    }
    let Some(head_end) = bytes.windows(4).position(|w| w == b"\r\n\r\n").map(|at| at + 4) else {
        return Framing::NeedMore;
    };
    let head = String::from_utf8_lossy(&bytes[..head_end]);
    let mut content_length = None;
    let mut chunked = false;
    for line in head.split("\r\n").skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            content_length = value.parse::<usize>().ok();
        } else if name.eq_ignore_ascii_case("transfer-encoding") && value.to_ascii_lowercase().contains("chunked") {
            chunked = true;
        }
    }
    let is_response = bytes.starts_with(b"HTTP/1.");
    // Informational (101 Switching Protocols among them), 204 and 304 responses have no body
    // whatever their headers say; after a 101 the bytes are another protocol's.
    let status = bytes.get(9..12).filter(|_| is_response);
    if status.is_some_and(|s| s[0] == b'1' || s == b"204" || s == b"304") {
        return Framing::Complete {
            len: head_end,
            then_stop: false,
        };
    }
    // Content-Length is the sender's word: a length that does not fit counts as too long to follow.
    let message_len = content_length.map(|body| head_end.checked_add(body));
    match (message_len, chunked) {
        (Some(Some(len)), false) if bytes.len() >= len => Framing::Complete { len, then_stop: false },
        // The body is waited for only to find the next message behind it; one too long to follow
        // ends the stream after the head (which is what L7 dissection reads).
        (Some(Some(len)), false) if len <= room => Framing::NeedMore,
        // A request without a length has no body; a response without one runs to the connection's end.
        (None, false) if !is_response => Framing::Complete {
            len: head_end,
            then_stop: false,
        },
        _ => Framing::Complete {
            len: head_end,
            then_stop: true,
        },
    }
}

/// `GET /index.html HTTP/1.1`, `HTTP/1.1 404 Not Found`.
pub(crate) fn info(l7: &L7) -> Option<String> {
    match l7 {
        L7::Http {
            method: Some(method),
            path,
            version,
            ..
        } => Some(format!(
            "{method} {} {}",
            path.as_deref().unwrap_or(""),
            version.as_deref().unwrap_or("HTTP/1.1")
        )),
        L7::Http {
            status: Some(status),
            version,
            reason,
            ..
        } => Some(format!(
            "{} {status} {}",
            version.as_deref().unwrap_or("HTTP/1.1"),
            reason.as_deref().unwrap_or("")
        )),
        L7::Http { .. } => None,
        _ => None,
    }
}
