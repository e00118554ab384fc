//! The TCP streams a parser follows for L7 ([`dissect::stream`]): one per direction of a
//! connection, fed in capture order across batches and transactions, so that a message spanning
//! segments (a ClientHello with a post-quantum key share, a request with large headers, DNS over
//! TCP) yields one event with everything in it.
//!
//! What is followed is bounded: the first 16 KiB of each direction (HTTP/2: the whole connection,
//! its header tables and blocks bounded), [`MAX_STREAMS`] directions, and [`IDLE_NS`] without a
//! segment ([`CONNECTION_IDLE_NS`] for a whole connection followed: gRPC channels idle between calls,
//! and a table lost is fields unresolved until the peers replace them). A stream that ends unfinished (FIN or RST, idle, evicted, a
//! segment cut by the snaplen) has its pending message dissected as far as its bytes go, as
//! per-packet dissection would have. The state lives in this process: a parser that stops
//! loses its unfinished messages (counted by the stream outcome `pending_at_stop` in the log), and
//! a message whose segments went to different parsers is read per packet by each.

use foldhash::HashMap;

use dissect::Dissection;
use dissect::stream::{Message, Pushed, Stream};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use crate::events::Sent;

/// Directions followed at once at most; past it the least recently active are ended.
pub const MAX_STREAMS: usize = 65_536;
/// Bytes all followed directions may hold together (each holds at most `MAX_HELD`, in order or past a
/// gap); past it the least recently active are ended, as past [`MAX_STREAMS`].
pub const MAX_HELD_BYTES: usize = 64 << 20;
/// A direction without a segment for this long (capture time) is ended.
pub const IDLE_NS: u64 = 5_000_000_000;
/// The same for a direction whose whole connection is followed.
pub const CONNECTION_IDLE_NS: u64 = 300_000_000_000;

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;

#[derive(Default)]
pub struct Streams {
    open: HashMap<Sent, Open>,
    /// Bytes the open streams hold, kept as they change (the sum of their `held()`).
    held: usize,
    pub report: StreamReport,
    metrics: StreamMetrics,
}

/// A stream outcome, as a metric label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

/// The streams' metrics, registered by the parser's metrics.
#[derive(Clone, Default)]
pub struct StreamMetrics {
    pub outcomes: Family<OutcomeLabel, Counter>,
    pub open: Gauge,
    pub held_bytes: Gauge,
}

struct Open {
    stream: Stream,
    last_ns: u64,
}

/// What happened to streams, for metrics (cumulative).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StreamReport {
    /// Messages read from more than one segment.
    pub reassembled: u64,
    /// Streams ended with an unfinished message (read as far as it went).
    pub ended_unfinished: u64,
    /// Streams no longer followed: past 16 KiB, or bytes of a protocol not framed.
    pub given_up: u64,
    /// Streams ended to stay within [`MAX_STREAMS`].
    pub evicted: u64,
    /// All state dropped after a failed transaction (its segments are fed again on retry).
    pub reset: u64,
}

/// Whether a packet's payload went into a followed stream.
pub enum Taken {
    /// No: its L7 is what per-packet dissection found.
    No,
    /// Yes: these messages (possibly none yet) stand for its L7.
    Yes(Sent, Vec<Message>),
}

impl Streams {
    /// Feeds one packet, in capture order. Messages of other streams ended meanwhile (FIN, RST)
    /// are added to `ended`.
    pub fn add(
        &mut self,
        d: &Dissection,
        frame: &[u8],
        original_len: u32,
        ts_ns: u64,
        ended: &mut Vec<(Sent, Message)>,
    ) -> Taken {
        let (Some(sent), Some(seq), Some(flags)) = (Sent::of(d), d.tcp_seq, d.tcp_flags) else {
            return Taken::No;
        };
        if flags & SYN != 0 {
            if let Some(old) = self.open.remove(&sent) {
                self.end(sent, old, ended);
            }
            self.insert(
                sent,
                Stream::new(seq.wrapping_add(1), sent.from.1, sent.to.1),
                ts_ns,
                ended,
            );
        }
        let payload = frame.get(d.payload.clone()).unwrap_or_default();
        let taken = if payload.is_empty() || d.fragment {
            Taken::No
        } else {
            if !self.open.contains_key(&sent) {
                // Joined mid-connection: followed from here (a message cut at the start is not
                // recognised, and the stream is given up at once).
                self.insert(sent, Stream::new(seq, sent.from.1, sent.to.1), ts_ns, ended);
            }
            self.feed(sent, seq, payload, frame.len() as u32 == original_len, ts_ns, ended)
        };
        if flags & (FIN | RST) != 0 {
            let reverse = Sent {
                from: sent.to,
                to: sent.from,
                tcp: true,
            };
            let both = if flags & RST != 0 {
                vec![sent, reverse]
            } else {
                vec![sent]
            };
            for direction in both {
                if let Some(open) = self.open.remove(&direction) {
                    self.end(direction, open, ended);
                }
            }
        }
        taken
    }

    fn feed(
        &mut self,
        sent: Sent,
        seq: u32,
        payload: &[u8],
        whole: bool,
        ts_ns: u64,
        ended: &mut Vec<(Sent, Message)>,
    ) -> Taken {
        let Some(open) = self.open.get_mut(&sent) else {
            return Taken::No;
        };
        if open.stream.is_done() {
            return Taken::No;
        }
        open.last_ns = ts_ns;
        if !whole {
            // The snaplen cut this segment: what follows it cannot be put in order.
            let unfinished = open.stream.has_partial();
            self.held = self.held.saturating_sub(open.stream.held());
            let mut pushed = Pushed::default();
            open.stream.flush(&mut pushed);
            self.count(|r| &mut r.given_up, "given_up", 1);
            self.count(|r| &mut r.ended_unfinished, "ended_unfinished", u64::from(unfinished));
            ended.extend(pushed.messages.into_iter().map(|m| (sent, m)));
            return Taken::No;
        }
        let before = open.stream.held();
        let pushed = open.stream.push(seq, payload, ts_ns);
        self.held = (self.held + open.stream.held()).saturating_sub(before);
        if self.held > MAX_HELD_BYTES {
            self.evict_oldest(sent, ended);
        }
        self.count(|r| &mut r.given_up, "given_up", u64::from(pushed.gave_up));
        let reassembled = pushed.messages.iter().filter(|m| m.segments > 1).count() as u64;
        self.count(|r| &mut r.reassembled, "reassembled", reassembled);
        if (pushed.gave_up || !pushed.took) && pushed.messages.is_empty() {
            Taken::No
        } else {
            Taken::Yes(sent, pushed.messages)
        }
    }

    fn insert(&mut self, sent: Sent, stream: Stream, ts_ns: u64, ended: &mut Vec<(Sent, Message)>) {
        self.held += stream.held();
        if let Some(replaced) = self.open.insert(sent, Open { stream, last_ns: ts_ns }) {
            self.held = self.held.saturating_sub(replaced.stream.held());
        }
        if self.open.len() > MAX_STREAMS {
            self.evict_oldest(sent, ended);
        }
    }

    /// Ends the least recently active eighth of the streams but `keep`, so eviction is rare and
    /// cheap per stream.
    fn evict_oldest(&mut self, keep: Sent, ended: &mut Vec<(Sent, Message)>) {
        let mut times: Vec<u64> = self.open.values().map(|o| o.last_ns).collect();
        let cut = *times.select_nth_unstable(self.open.len() / 8).1;
        let old: Vec<Sent> = self
            .open
            .iter()
            .filter(|(_, o)| o.last_ns <= cut)
            .map(|(s, _)| *s)
            .collect();
        for direction in old {
            if direction != keep
                && let Some(open) = self.open.remove(&direction)
            {
                self.count(|r| &mut r.evicted, "evicted", 1);
                self.end(direction, open, ended);
            }
        }
    }

    /// Ends the streams idle since before `now_ns` - [`IDLE_NS`].
    pub fn end_idle(&mut self, now_ns: u64, ended: &mut Vec<(Sent, Message)>) {
        let oldest = now_ns.saturating_sub(IDLE_NS);
        let oldest_connection = now_ns.saturating_sub(CONNECTION_IDLE_NS);
        let idle: Vec<Sent> = self
            .open
            .iter()
            .filter(|(_, o)| {
                o.last_ns
                    < if o.stream.follows_connection() {
                        oldest_connection
                    } else {
                        oldest
                    }
            })
            .map(|(s, _)| *s)
            .collect();
        for direction in idle {
            if let Some(open) = self.open.remove(&direction) {
                self.end(direction, open, ended);
            }
        }
    }

    fn end(&mut self, sent: Sent, mut open: Open, ended: &mut Vec<(Sent, Message)>) {
        self.held = self.held.saturating_sub(open.stream.held());
        self.count(
            |r| &mut r.ended_unfinished,
            "ended_unfinished",
            u64::from(open.stream.has_partial()),
        );
        let mut pushed = Pushed::default();
        open.stream.flush(&mut pushed);
        ended.extend(pushed.messages.into_iter().map(|m| (sent, m)));
    }

    /// Drops every stream (after a failed transaction: its retry feeds the same segments again).
    pub fn reset(&mut self) {
        self.open.clear();
        self.held = 0;
        self.count(|r| &mut r.reset, "reset", 1);
    }

    pub fn with_metrics(metrics: StreamMetrics) -> Self {
        Self {
            metrics,
            ..Self::default()
        }
    }

    fn count(&mut self, field: impl Fn(&mut StreamReport) -> &mut u64, outcome: &'static str, n: u64) {
        if n > 0 {
            *field(&mut self.report) += n;
            self.metrics.outcomes.get_or_create(&OutcomeLabel { outcome }).inc_by(n);
        }
    }

    /// Updates the size gauges (once per transaction: it walks every stream).
    pub fn measure(&self) {
        let (open, held) = self.size();
        self.metrics.open.set(open as i64);
        self.metrics.held_bytes.set(held as i64);
    }

    /// Directions followed and the bytes they hold.
    pub fn size(&self) -> (usize, usize) {
        (self.open.len(), self.held)
    }

    /// Unfinished messages held (lost if the parser stops now).
    pub fn pending(&self) -> usize {
        self.open.values().filter(|o| o.stream.has_partial()).count()
    }
}

#[cfg(test)]
mod tests;
