//! HTTP/2 in cleartext (prior knowledge, or after `Upgrade: h2c`), and gRPC on it: the connection
//! preface, frames, and HPACK with one table per direction, followed for the connection's whole
//! life. Header blocks (HEADERS, PUSH_PROMISE and their CONTINUATIONs) are collected and decoded;
//! DATA is skipped by length, never buffered, while its bytes and gRPC's length-prefixed messages
//! are counted per stream. What one direction says comes out as messages: a header block (a
//! request, a response or trailers), a stream's end, RST_STREAM and GOAWAY; pairing a stream's
//! request with its response is the events' job, which sees both directions.
//!
//! HTTP/2 inside TLS is TLS with ALPN `h2`: without the keys there is nothing more to read.

mod hpack;

use std::collections::HashMap;

use super::{Follower, Found, Framing, L7, NotThisProtocol, Protocol, Recognition, Transport};
use crate::text;

pub(crate) struct Http2;

/// What a client sends first on a connection with prior knowledge (RFC 9113 3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEAD: usize = 9;
/// The most of one header block (with its CONTINUATIONs) collected; a larger one is skipped and
/// the table counted as lost from there (its fields are then unresolved, not wrong).
const MAX_BLOCK: usize = 64 * 1024;
/// Streams whose DATA is being counted in one direction at once; the oldest go first past it.
const MAX_STREAMS: usize = 1024;

const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const PUSH_PROMISE: u8 = 5;
const GOAWAY: u8 = 7;
const CONTINUATION: u8 = 9;

const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

impl Protocol for Http2 {
    fn name(&self) -> &'static str {
        "http2"
    }

    fn recognises_stream(&self, first: &[u8], _src_port: u16, _dst_port: u16) -> Recognition {
        let preface = first.len().min(PREFACE.len());
        if first[..preface] == PREFACE[..preface] {
            return if preface == PREFACE.len() {
                Recognition::Yes
            } else {
                Recognition::NeedMore
            };
        }
        // A server's first frame is its SETTINGS (RFC 9113 3.4).
        let settings = [0, 0xff, 0xff, SETTINGS, 0, 0, 0, 0, 0];
        let mask = [0xff, 0, 0, 0xff, 0xfe, 0xff, 0xff, 0xff, 0xff];
        let head = first.len().min(FRAME_HEAD);
        let like_settings = (0..head).all(|i| first[i] & mask[i] == settings[i] & mask[i]);
        if like_settings && head < FRAME_HEAD {
            return Recognition::NeedMore;
        }
        if like_settings && frame_len(first).is_multiple_of(6) {
            return Recognition::Yes;
        }
        // A capture that joined mid-connection, at a segment that starts with whole frames.
        (first.len() >= FRAME_HEAD && tiles(first)).into()
    }

    fn frame(&self, _bytes: &[u8], _room: usize) -> Framing {
        // Read through `follower`, which keeps the connection's state.
        Framing::Unframed
    }

    fn follower(&self) -> Option<Box<dyn Follower>> {
        Some(Box::new(Direction::default()))
    }

    /// One packet on its own: what its whole frames say, with a table of its own (static entries
    /// and literals), when the payload is exactly a run of frames, as a segment that starts at a
    /// frame is.
    fn dissect(&self, transport: Transport, _src_port: u16, _dst_port: u16, payload: &[u8]) -> Found {
        if transport != Transport::Tcp || !tiles(payload) {
            return Found::Nothing;
        }
        let mut direction = Direction::default();
        let mut messages = Vec::new();
        if direction.read(payload, &mut messages).is_err() {
            return Found::Nothing;
        }
        let first_frame = payload.strip_prefix(PREFACE).unwrap_or(payload);
        let summary = messages.into_iter().next().map(|(_, l7)| l7).unwrap_or_else(|| {
            L7::Http2(Box::new(Http2Message {
                stream: first_frame.get(..FRAME_HEAD).map_or(0, frame_stream),
                frame: first_frame.get(3).map_or("preface", |t| frame_name(*t)).into(),
                ..Default::default()
            }))
        });
        Found::Dissected(summary)
    }
}

/// Whether bytes are the preface and/or whole frames of known types, exactly, so that a packet is
/// not taken for HTTP/2 because its first bytes happen to look like a frame header.
fn tiles(payload: &[u8]) -> bool {
    let mut rest = payload.strip_prefix(PREFACE).unwrap_or(payload);
    let mut frames = 0;
    while !rest.is_empty() {
        if rest.len() < FRAME_HEAD || rest[3] > CONTINUATION {
            return false;
        }
        let stream = frame_stream(rest);
        let connection_frame = matches!(rest[3], SETTINGS | 6 | GOAWAY);
        if connection_frame != (stream == 0) && rest[3] != 8 {
            return false;
        }
        let end = FRAME_HEAD + frame_len(rest);
        if end > rest.len() {
            // The last frame may run into the next segment.
            return frames > 0 || rest[3] == HEADERS;
        }
        rest = &rest[end..];
        frames += 1;
    }
    frames > 0 || payload == PREFACE
}

fn frame_len(head: &[u8]) -> usize {
    usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2])
}

fn frame_stream(head: &[u8]) -> u32 {
    u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff
}

fn frame_name(frame_type: u8) -> &'static str {
    match frame_type {
        DATA => "data",
        HEADERS => "headers",
        2 => "priority",
        RST_STREAM => "rst_stream",
        SETTINGS => "settings",
        PUSH_PROMISE => "push_promise",
        6 => "ping",
        GOAWAY => "goaway",
        8 => "window_update",
        CONTINUATION => "continuation",
        _ => "unknown",
    }
}

/// The error codes of RST_STREAM and GOAWAY (RFC 9113 7).
fn error_name(code: u32) -> String {
    let name = match code {
        0 => "NO_ERROR",
        1 => "PROTOCOL_ERROR",
        2 => "INTERNAL_ERROR",
        3 => "FLOW_CONTROL_ERROR",
        4 => "SETTINGS_TIMEOUT",
        5 => "STREAM_CLOSED",
        6 => "FRAME_SIZE_ERROR",
        7 => "REFUSED_STREAM",
        8 => "CANCEL",
        9 => "COMPRESSION_ERROR",
        10 => "CONNECT_ERROR",
        11 => "ENHANCE_YOUR_CALM",
        12 => "INADEQUATE_SECURITY",
        13 => "HTTP_1_1_REQUIRED",
        other => return format!("0x{other:x}"),
    };
    name.into()
}

/// The fields of an HTTP/2 message, and what one direction of a stream carried up to it.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Http2Message {
    pub stream: u32,
    /// `headers` (a request, response or trailers), `end` (the stream's last DATA), `rst_stream`,
    /// `goaway`; per packet, else the first frame's type.
    pub frame: String,
    pub method: Option<String>,
    pub scheme: Option<String>,
    pub authority: Option<String>,
    pub path: Option<String>,
    pub status: Option<u16>,
    pub content_type: Option<String>,
    pub user_agent: Option<String>,
    pub grpc_status: Option<u32>,
    pub grpc_message: Option<String>,
    /// The sender ended its side of the stream with this message.
    pub end_stream: bool,
    /// DATA payload bytes this direction of the stream carried so far (padding excluded).
    pub body_bytes: u64,
    /// gRPC messages this direction of the stream carried so far.
    pub messages: u32,
    /// Header fields that pointed at table entries this capture did not see.
    pub unresolved: u32,
    /// RST_STREAM's or GOAWAY's error code (`CANCEL`, `NO_ERROR`, ...).
    pub error: Option<String>,
    /// GOAWAY: the last stream its sender processed; streams above it were not.
    pub last_stream: Option<u32>,
}

/// One direction of an HTTP/2 connection, read frame by frame.
#[derive(Debug, Default)]
struct Direction {
    preface_checked: bool,
    /// The frame being read, once its 9 bytes are in.
    frame: Option<Frame>,
    /// A header block waiting for its CONTINUATIONs: its stream, whether it ends the stream, and
    /// its bytes; `None` bytes once it grew past [`MAX_BLOCK`].
    block: Option<(u32, bool, Option<Vec<u8>>, bool)>,
    table: hpack::Table,
    streams: HashMap<u32, Counted>,
    /// Streams in the order they were first counted, to drop the oldest past [`MAX_STREAMS`].
    order: std::collections::VecDeque<u32>,
}

#[derive(Debug)]
struct Frame {
    frame_type: u8,
    flags: u8,
    stream: u32,
    /// Payload bytes not read yet.
    left: usize,
    /// DATA's padding at the end of what is left; other frames' collected payload.
    padding: usize,
    payload: Vec<u8>,
    /// DATA with PADDED whose pad length byte has not been read yet.
    needs_pad_length: bool,
}

/// What one direction of a stream carried.
#[derive(Debug, Default)]
struct Counted {
    body_bytes: u64,
    grpc: bool,
    messages: u32,
    /// Bytes of the gRPC message being skipped; its 5-byte prefix as far as read.
    message_left: u64,
    prefix: [u8; 5],
    prefix_len: usize,
}

impl Counted {
    fn data(&mut self, mut bytes: &[u8]) {
        self.body_bytes += bytes.len() as u64;
        if !self.grpc {
            return;
        }
        while !bytes.is_empty() {
            if self.message_left > 0 {
                let skip = (self.message_left.min(bytes.len() as u64)) as usize;
                self.message_left -= skip as u64;
                bytes = &bytes[skip..];
                continue;
            }
            let take = (5 - self.prefix_len).min(bytes.len());
            self.prefix[self.prefix_len..self.prefix_len + take].copy_from_slice(&bytes[..take]);
            self.prefix_len += take;
            bytes = &bytes[take..];
            if self.prefix_len == 5 {
                self.messages += 1;
                self.prefix_len = 0;
                let p = self.prefix;
                self.message_left = u64::from(u32::from_be_bytes([p[1], p[2], p[3], p[4]]));
            }
        }
    }
}

impl Follower for Direction {
    fn read(&mut self, bytes: &[u8], messages: &mut Vec<(usize, L7)>) -> Result<usize, NotThisProtocol> {
        let mut at = 0;
        if !self.preface_checked {
            if bytes.len() < PREFACE.len() && PREFACE.starts_with(bytes) {
                return Ok(0);
            }
            if bytes.starts_with(PREFACE) {
                at = PREFACE.len();
            }
            self.preface_checked = true;
        }
        loop {
            let Some(frame) = &mut self.frame else {
                let Some(head) = bytes.get(at..at + FRAME_HEAD) else {
                    return Ok(at);
                };
                at += FRAME_HEAD;
                self.frame = Some(Frame {
                    frame_type: head[3],
                    flags: head[4],
                    stream: frame_stream(head),
                    left: frame_len(head),
                    padding: 0,
                    payload: Vec::new(),
                    needs_pad_length: head[3] == DATA && head[4] & PADDED != 0,
                });
                continue;
            };
            if frame.frame_type == DATA {
                if frame.needs_pad_length {
                    let Some(&pad) = bytes.get(at) else {
                        return Ok(at);
                    };
                    at += 1;
                    frame.left = frame.left.saturating_sub(1);
                    frame.padding = usize::from(pad).min(frame.left);
                    frame.needs_pad_length = false;
                }
                let take = frame.left.min(bytes.len() - at);
                let data_left = frame.left - frame.padding;
                let data = &bytes[at..at + take.min(data_left)];
                let stream = frame.stream;
                at += take;
                frame.left -= take;
                frame.padding = frame.padding.min(frame.left);
                let more = frame.left > 0;
                if !data.is_empty() {
                    self.counted(stream).data(data);
                }
                if more {
                    return Ok(at);
                }
            } else {
                let take = frame.left.min(bytes.len() - at);
                // Only header blocks and the short control frames are kept; anything else is skipped.
                if matches!(
                    frame.frame_type,
                    HEADERS | PUSH_PROMISE | CONTINUATION | RST_STREAM | GOAWAY
                ) && frame.payload.len() < MAX_BLOCK
                {
                    let keep = take.min(MAX_BLOCK - frame.payload.len());
                    frame.payload.extend_from_slice(&bytes[at..at + keep]);
                }
                at += take;
                frame.left -= take;
                if frame.left > 0 {
                    return Ok(at);
                }
            }
            let frame = self.frame.take().expect("a frame is being read");
            self.finish(frame, at.saturating_sub(1), messages)?;
        }
    }

    fn held(&self) -> usize {
        let block = self.block.as_ref().and_then(|b| b.2.as_ref()).map_or(0, Vec::len);
        let frame = self.frame.as_ref().map_or(0, |f| f.payload.capacity());
        self.table.size() + block + frame + self.streams.len() * std::mem::size_of::<Counted>()
    }
}

impl Direction {
    fn counted(&mut self, stream: u32) -> &mut Counted {
        if !self.streams.contains_key(&stream) {
            if self.streams.len() >= MAX_STREAMS
                && let Some(oldest) = self.order.pop_front()
            {
                self.streams.remove(&oldest);
            }
            self.order.push_back(stream);
        }
        self.streams.entry(stream).or_default()
    }

    fn ended(&mut self, stream: u32) -> Counted {
        self.order.retain(|s| *s != stream);
        self.streams.remove(&stream).unwrap_or_default()
    }

    /// A frame read to its end: what it means for the stream and the table.
    fn finish(&mut self, frame: Frame, at: usize, messages: &mut Vec<(usize, L7)>) -> Result<(), NotThisProtocol> {
        let complete = frame.payload.len() < MAX_BLOCK;
        match frame.frame_type {
            DATA if frame.flags & END_STREAM != 0 => {
                let counted = self.ended(frame.stream);
                messages.push((
                    at,
                    L7::Http2(Box::new(Http2Message {
                        stream: frame.stream,
                        frame: "end".into(),
                        end_stream: true,
                        body_bytes: counted.body_bytes,
                        messages: counted.messages,
                        ..Default::default()
                    })),
                ));
            }
            HEADERS | PUSH_PROMISE => {
                let mut fragment = &frame.payload[..];
                let mut padding = 0;
                if frame.flags & PADDED != 0 {
                    let (&pad, rest) = fragment.split_first().ok_or(NotThisProtocol)?;
                    padding = usize::from(pad);
                    fragment = rest;
                }
                let skip = match frame.frame_type {
                    PUSH_PROMISE => 4,
                    _ if frame.flags & PRIORITY != 0 => 5,
                    _ => 0,
                };
                if fragment.len() < skip + padding && complete {
                    return Err(NotThisProtocol);
                }
                let fragment = fragment
                    .get(skip..fragment.len().saturating_sub(padding))
                    .unwrap_or_default();
                let end_stream = frame.frame_type == HEADERS && frame.flags & END_STREAM != 0;
                let block = complete.then(|| fragment.to_vec());
                self.block = Some((frame.stream, end_stream, block, frame.frame_type == PUSH_PROMISE));
                if frame.flags & END_HEADERS != 0 {
                    self.header_block(at, messages);
                }
            }
            CONTINUATION => {
                if let Some((_, _, bytes, _)) = &mut self.block {
                    match bytes {
                        Some(block) if complete && block.len() + frame.payload.len() <= MAX_BLOCK => {
                            block.extend_from_slice(&frame.payload)
                        }
                        _ => *bytes = None,
                    }
                    if frame.flags & END_HEADERS != 0 {
                        self.header_block(at, messages);
                    }
                }
            }
            RST_STREAM | GOAWAY => {
                let code_at = if frame.frame_type == RST_STREAM { 0 } else { 4 };
                let code = frame
                    .payload
                    .get(code_at..code_at + 4)
                    .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
                let counted = if frame.frame_type == RST_STREAM {
                    self.ended(frame.stream)
                } else {
                    Counted::default()
                };
                let last_stream = (frame.frame_type == GOAWAY)
                    .then(|| frame.payload.get(..4))
                    .flatten()
                    .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]) & 0x7fff_ffff);
                messages.push((
                    at,
                    L7::Http2(Box::new(Http2Message {
                        stream: frame.stream,
                        frame: frame_name(frame.frame_type).into(),
                        error: code.map(error_name),
                        last_stream,
                        body_bytes: counted.body_bytes,
                        messages: counted.messages,
                        ..Default::default()
                    })),
                ));
            }
            _ => {}
        }
        Ok(())
    }

    fn header_block(&mut self, at: usize, messages: &mut Vec<(usize, L7)>) {
        let Some((stream, end_stream, bytes, promise)) = self.block.take() else {
            return;
        };
        let Some(bytes) = bytes else {
            // Too large to hold: the table may now differ from the sender's; later fields that
            // point into it are counted as unresolved rather than trusted.
            self.table.forget();
            return;
        };
        let block = self.table.decode(&bytes);
        if promise {
            return;
        }
        let mut message = Http2Message {
            stream,
            frame: "headers".into(),
            end_stream,
            unresolved: block.unresolved,
            ..Default::default()
        };
        for (name, value) in block.fields {
            let value = || text::from_wire(&value);
            match name.as_slice() {
                b":method" => message.method = Some(value()),
                b":scheme" => message.scheme = Some(value()),
                b":authority" => message.authority = Some(value()),
                b":path" => message.path = Some(value()),
                b":status" => message.status = value().parse().ok(),
                b"content-type" => message.content_type = Some(value()),
                b"user-agent" => message.user_agent = Some(value()),
                b"grpc-status" => message.grpc_status = value().parse().ok(),
                b"grpc-message" => message.grpc_message = Some(percent_decoded(&value())),
                // HTTP/1.1's Host, which an h2c upgrade's request carries.
                b"host" if message.authority.is_none() => message.authority = Some(value()),
                _ => {}
            }
        }
        let counted = self.counted(stream);
        if message.content_type.as_deref().is_some_and(is_grpc) {
            counted.grpc = true;
        }
        if end_stream {
            let counted = self.ended(stream);
            message.body_bytes = counted.body_bytes;
            message.messages = counted.messages;
        }
        messages.push((at, L7::Http2(Box::new(message))));
    }
}

/// `application/grpc`, `application/grpc+proto`, `application/grpc-web` are gRPC's.
pub(crate) fn is_grpc(content_type: &str) -> bool {
    content_type.starts_with("application/grpc")
}

/// grpc-message is percent-encoded (gRPC over HTTP/2, "Responses").
fn percent_decoded(value: &str) -> String {
    percent_encoding::percent_decode_str(value)
        .decode_utf8_lossy()
        .into_owned()
}

/// `HEADERS[1]: GET /helloworld.Greeter/SayHello`, `HEADERS[1]: 200`, `RST_STREAM[3]: CANCEL`,
/// after Wireshark's Info column for HTTP/2.
pub(crate) fn info(message: &Http2Message) -> Option<String> {
    let stream = message.stream;
    Some(match message.frame.as_str() {
        "headers" => match (&message.method, message.status, message.grpc_status) {
            (Some(method), _, _) => format!("HEADERS[{stream}]: {method} {}", message.path.as_deref().unwrap_or("")),
            (None, Some(status), _) => format!("HEADERS[{stream}]: {status}"),
            (None, None, Some(grpc)) => format!("HEADERS[{stream}]: grpc-status {grpc}"),
            _ => format!("HEADERS[{stream}]"),
        },
        "end" => format!("DATA[{stream}], END_STREAM"),
        "rst_stream" | "goaway" => format!(
            "{}[{stream}]: {}",
            message.frame.to_uppercase(),
            message.error.as_deref().unwrap_or("")
        ),
        other => format!("{}[{stream}]", other.to_uppercase()),
    })
}

#[cfg(test)]
mod tests;
