//! TCP stream reassembly for L7: the opening bytes of one direction of a connection put back in
//! sequence order and cut into the messages L7 dissection reads (TLS records, HTTP/1.x messages,
//! DNS-over-TCP messages), so that a message spanning segments (a ~1.8 KB ClientHello with a
//! post-quantum key share, a request with large headers) is dissected whole.
//!
//! Bounded: only the first [`STREAM_LIMIT`] bytes of a direction are followed; past that, or once
//! the bytes stop looking like a protocol this crate frames, the stream is [`Stream::is_done`] and
//! its packets are dissected one by one again. A protocol whose messages depend on the
//! connection's past (HTTP/2's header tables) is read by its follower for the connection's whole
//! life instead, holding at most [`STREAM_LIMIT`] bytes past a gap and what its follower keeps.
//! Bytes that stop being one protocol at a message's end may start another (`Upgrade: h2c`). Retransmitted bytes are taken once (the first copy
//! wins); segments ahead of a gap wait until it is filled.

use std::collections::BTreeMap;

use crate::L7;
use crate::protocols::{self, Follower, Framing, PROTOCOLS, Protocol, Recognition, Transport};

/// Bytes of each direction followed from the start of the stream.
pub const STREAM_LIMIT: usize = 16 * 1024;
/// The most one direction holds: [`STREAM_LIMIT`] of bytes, and what a follower keeps (HTTP/2:
/// a header table, a header block and a frame of at most 64 KiB each, and per-stream counts).
pub const MAX_HELD: usize = STREAM_LIMIT + 256 * 1024;

/// One direction of a TCP connection.
#[derive(Debug)]
pub struct Stream {
    src_port: u16,
    dst_port: u16,
    /// Sequence number of stream offset 0 (the first payload byte).
    start: u32,
    /// What the stream carries, once its first bytes (and ports) told.
    protocol: Option<&'static dyn Protocol>,
    /// The protocol's reader, for one that follows the whole connection.
    follower: Option<Box<dyn Follower>>,
    /// In-order bytes from stream offset `consumed` not yet cut into messages.
    bytes: Vec<u8>,
    consumed: usize,
    /// Segments past a gap, by stream offset, with their capture time.
    ahead: BTreeMap<usize, (Vec<u8>, u64)>,
    /// Bytes held in `ahead`: they count toward [`STREAM_LIMIT`] like the in-order bytes, so
    /// segments at many distinct offsets past a gap cannot grow a stream beyond it.
    ahead_bytes: usize,
    /// Where the bytes in `bytes` came from, one entry per segment.
    parts: Vec<Part>,
    done: bool,
}

/// A message cut from the stream and dissected.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub l7: L7,
    /// Time of the segment that carried the message's first byte.
    pub ts_ns: u64,
    /// Segments it came from: more than one means reassembly found what per-packet dissection could not.
    pub segments: usize,
}

/// The bytes one segment added to the in-order bytes.
#[derive(Debug, Clone, Copy)]
struct Part {
    start: usize,
    end: usize,
    ts_ns: u64,
    /// It arrived past a gap, so it was dissected on its own when it came.
    ahead: bool,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Pushed {
    /// The segment added bytes in order: its L7 is what the messages say. Otherwise (a
    /// retransmission, a segment past a gap, a stream given up) it is read on its own, as without
    /// reassembly.
    pub took: bool,
    /// Messages completed by this segment, in stream order.
    pub messages: Vec<Message>,
    /// The stream was given up at this segment (past the limit, unframed bytes); the caller goes back to per-packet
    /// dissection.
    pub gave_up: bool,
}

impl Stream {
    /// A stream whose first payload byte has sequence number `start` (the SYN's sequence + 1, or
    /// the first data segment's when the handshake was not seen).
    pub fn new(start: u32, src_port: u16, dst_port: u16) -> Self {
        Self {
            src_port,
            dst_port,
            start,
            protocol: None,
            follower: None,
            bytes: Vec::new(),
            consumed: 0,
            ahead: BTreeMap::new(),
            ahead_bytes: 0,
            parts: Vec::new(),
            done: false,
        }
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Whether a follower reads it for the connection's whole life (HTTP/2).
    pub fn follows_connection(&self) -> bool {
        self.follower.is_some()
    }

    /// Bytes held (in order and ahead of a gap), for the memory bound.
    pub fn held(&self) -> usize {
        self.bytes.len() + self.ahead_bytes + self.follower.as_ref().map_or(0, |f| f.held())
    }

    /// Where following stops, in stream offsets: the first [`STREAM_LIMIT`] bytes, or for a
    /// followed connection [`STREAM_LIMIT`] past what its follower took.
    fn limit(&self) -> usize {
        if self.follower.is_some() {
            self.consumed.saturating_add(STREAM_LIMIT)
        } else {
            STREAM_LIMIT
        }
    }

    /// Whether an unfinished message is waiting for more segments.
    pub fn has_partial(&self) -> bool {
        !self.done && !self.bytes.is_empty()
    }

    /// Adds a segment's payload (sequence number `seq`, captured at `ts_ns`).
    pub fn push(&mut self, seq: u32, payload: &[u8], ts_ns: u64) -> Pushed {
        let mut pushed = Pushed::default();
        if self.done || payload.is_empty() {
            return pushed;
        }
        let offset = seq.wrapping_sub(self.start) as usize;
        // Before the start (a retransmission of bytes before the first one seen): ignored.
        if offset >= 1 << 31 {
            return pushed;
        }
        let end = self.consumed + self.bytes.len();
        if offset > end {
            self.hold_ahead(offset, payload, ts_ns);
            return pushed;
        }
        pushed.took = self.append(offset, payload, ts_ns, false);
        if !pushed.took {
            return pushed;
        }
        // Segments that were waiting for this one.
        while let Some(entry) = self.ahead.first_entry() {
            let end = self.consumed + self.bytes.len();
            if *entry.key() > end {
                break;
            }
            let (at, (bytes, ts_ns)) = entry.remove_entry();
            self.ahead_bytes -= bytes.len();
            self.append(at, &bytes, ts_ns, true);
        }
        self.cut(&mut pushed);
        if self.consumed + self.bytes.len() >= self.limit() && !self.done {
            self.give_up(&mut pushed);
        }
        pushed
    }

    /// Keeps a segment that came past a gap until the gap is filled, as far as it lies within the
    /// followed bytes and the stream's bound has room; otherwise it is only read on its own.
    fn hold_ahead(&mut self, offset: usize, payload: &[u8], ts_ns: u64) {
        let within = self.limit().saturating_sub(offset).min(payload.len());
        let held = self.bytes.len() + self.ahead_bytes;
        if within == 0 || self.ahead.contains_key(&offset) || held + within > STREAM_LIMIT {
            return;
        }
        self.ahead_bytes += within;
        self.ahead.insert(offset, (payload[..within].to_vec(), ts_ns));
    }

    /// Appends the part of `payload` (at stream `offset`) past what is held: the first copy of a
    /// byte wins. Whether anything was added.
    fn append(&mut self, offset: usize, payload: &[u8], ts_ns: u64, ahead: bool) -> bool {
        let end = self.consumed + self.bytes.len();
        let skip = end.saturating_sub(offset);
        if skip >= payload.len() {
            return false;
        }
        let room = self.limit().saturating_sub(end);
        let new = &payload[skip..][..(payload.len() - skip).min(room)];
        if new.is_empty() {
            return false;
        }
        self.bytes.extend_from_slice(new);
        self.parts.push(Part {
            start: offset,
            end: end + new.len(),
            ts_ns,
            ahead,
        });
        true
    }

    /// Cuts complete messages off the front of the in-order bytes.
    fn cut(&mut self, pushed: &mut Pushed) {
        while !self.done && !self.bytes.is_empty() {
            let protocol = match self.protocol {
                Some(protocol) => protocol,
                None if self.bytes.len() < 2 => return,
                None => match self.recognise() {
                    Recognition::NeedMore => return,
                    Recognition::No => {
                        self.give_up(pushed);
                        return;
                    }
                    Recognition::Yes => match self.protocol {
                        Some(protocol) => protocol,
                        None => return,
                    },
                },
            };
            if self.follower.is_some() {
                self.follow(pushed);
                return;
            }
            let framed = protocol.frame(&self.bytes, STREAM_LIMIT.saturating_sub(self.consumed));
            match framed {
                Framing::NeedMore => return,
                // At a message's end the bytes may go on as another protocol (h2c's upgrade).
                Framing::Unframed if self.switches_from(protocol) => {}
                Framing::Unframed => {
                    self.give_up(pushed);
                    return;
                }
                // A message must consume bytes it holds, or this loop would never end.
                Framing::Complete { len, .. } if len == 0 || len > self.bytes.len() => {
                    self.give_up(pushed);
                    return;
                }
                Framing::Complete { len, then_stop } => {
                    self.emit(len, pushed);
                    if then_stop {
                        self.done = true;
                        self.release();
                    }
                }
            }
        }
    }

    /// What the stream carries from here, as its bytes tell: sets `protocol` (and its follower)
    /// on `Yes`.
    fn recognise(&mut self) -> Recognition {
        let mut unsure = false;
        for protocol in PROTOCOLS.iter().copied() {
            match protocol.recognises_stream(&self.bytes, self.src_port, self.dst_port) {
                Recognition::Yes => {
                    self.protocol = Some(protocol);
                    self.follower = protocol.follower();
                    return Recognition::Yes;
                }
                Recognition::NeedMore => unsure = true,
                Recognition::No => {}
            }
        }
        if unsure { Recognition::NeedMore } else { Recognition::No }
    }

    /// Whether the bytes after a message of `protocol` are another protocol's, which then
    /// carries the stream.
    fn switches_from(&mut self, protocol: &'static dyn Protocol) -> bool {
        let before = self.protocol;
        let switched =
            self.recognise() == Recognition::Yes && self.protocol.is_some_and(|p| p.name() != protocol.name());
        if !switched {
            self.protocol = before;
            self.follower = None;
        }
        switched
    }

    /// Lets the follower take what it can of the in-order bytes.
    fn follow(&mut self, pushed: &mut Pushed) {
        let Some(follower) = self.follower.as_mut() else {
            return;
        };
        let mut found = Vec::new();
        let Ok(took) = follower.read(&self.bytes, &mut found) else {
            self.give_up(pushed);
            return;
        };
        for (at, l7) in found {
            let offset = self.consumed + at;
            let ts_ns = self
                .parts
                .iter()
                .find(|p| p.end > offset)
                .or(self.parts.last())
                .map_or(0, |p| p.ts_ns);
            pushed.messages.push(Message { l7, ts_ns, segments: 1 });
        }
        let took = took.min(self.bytes.len());
        self.bytes.drain(..took);
        self.consumed += took;
        let consumed = self.consumed;
        self.parts.retain(|p| p.end > consumed);
        if self.bytes.is_empty() {
            self.bytes = Vec::new();
            self.parts = Vec::new();
        }
    }

    /// Dissects the first `len` held bytes as one message and drops them.
    fn emit(&mut self, len: usize, pushed: &mut Pushed) {
        let message_end = self.consumed + len;
        let first = self.parts.iter().position(|p| p.end > self.consumed).unwrap_or(0);
        let last = self
            .parts
            .iter()
            .position(|p| p.end >= message_end)
            .unwrap_or(self.parts.len().saturating_sub(1));
        let ts_ns = self.parts.get(first).map_or(0, |p| p.ts_ns);
        // A message that opened a segment which came past a gap was read with that segment.
        let read_before = first == last
            && self
                .parts
                .get(first)
                .is_some_and(|p| p.ahead && p.start == self.consumed);
        let found = protocols::dissect(Transport::Tcp, self.src_port, self.dst_port, &self.bytes[..len]);
        // A port's guess (an encrypted TLS record on 443) says nothing per-packet dissection does not.
        let l7 = match found {
            protocols::Found::Dissected(l7) | protocols::Found::Partial(l7) if !l7.is_guess() => Some(l7),
            _ => None,
        };
        if let Some(l7) = l7.filter(|_| !read_before) {
            pushed.messages.push(Message {
                l7,
                ts_ns,
                segments: last + 1 - first,
            });
        }
        self.bytes.drain(..len);
        self.consumed = message_end;
        self.parts.retain(|p| p.end > message_end);
        if self.bytes.is_empty() {
            // Between messages a stream holds no memory but its own struct.
            self.bytes = Vec::new();
            self.parts = Vec::new();
        }
    }

    /// Stops following the stream; an unfinished message is dissected as far as it goes.
    fn give_up(&mut self, pushed: &mut Pushed) {
        pushed.gave_up = true;
        self.flush(pushed);
    }

    /// Ends the stream (FIN, RST, idle, evicted): an unfinished message is dissected as far as
    /// its bytes go, as per-packet dissection would have.
    pub fn flush(&mut self, pushed: &mut Pushed) {
        if !self.done && !self.bytes.is_empty() && self.protocol.is_some() && self.follower.is_none() {
            let len = self.bytes.len();
            self.emit(len, pushed);
        }
        self.done = true;
        self.release();
    }

    fn release(&mut self) {
        self.follower = None;
        self.bytes = Vec::new();
        self.ahead = BTreeMap::new();
        self.ahead_bytes = 0;
        self.parts = Vec::new();
    }
}

#[cfg(test)]
mod tests;
