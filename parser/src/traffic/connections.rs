//! TCP connections as they open and end, followed from the packets of the flows this parser
//! consumes (a flow's packets all reach one parser), with their retransmissions and zero windows.
//! State lives in the parser's memory and is bounded; a connection first seen mid-stream is
//! followed for retransmissions but its outcome is not counted (its start was not seen).

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::net::IpAddr;

const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const FIN: u8 = 0x01;
const ACK: u8 = 0x10;

/// An unanswered SYN is `timed_out` after this long without a packet.
pub const SYN_TIMEOUT_NS: u64 = 30_000_000_000;
/// An established connection without packets for this long is forgotten (counted as ended
/// `established`: it was, and nothing says otherwise).
pub const IDLE_NS: u64 = 300_000_000_000;
/// Connections followed at most; past it the longest idle go first.
pub const MAX_CONNECTIONS: usize = 1 << 18;

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Handshake completed; closed by FIN or idle.
    Established,
    /// Handshake completed, then a RST.
    Reset,
    /// The server answered the SYN with a RST.
    Refused,
    /// The SYN was never answered.
    TimedOut,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Established => "established",
            Self::Reset => "reset",
            Self::Refused => "refused",
            Self::TimedOut => "timed_out",
        }
    }
}

pub type Endpoint = (IpAddr, u16);

/// What one packet changed, for the metrics of its edge.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Observed {
    /// A SYN opened a connection from `client` to `server`.
    pub opened: Option<(Endpoint, Endpoint)>,
    /// This segment carried bytes (or a SYN or FIN) its sender had sent before.
    pub retransmission: bool,
    /// Its sender advertised a zero window.
    pub zero_window: bool,
}

/// A connection that ended: client, server and how.
pub type Ended = (Endpoint, Endpoint, Outcome);

#[derive(Debug)]
struct Connection {
    client: Endpoint,
    server: Endpoint,
    /// A SYN was seen: the outcome is counted at the end.
    counted: bool,
    /// The client's SYN sequence number: a SYN with it again is a resend, not a new connection.
    syn_seq: Option<u32>,
    established: bool,
    /// Per direction (0: client to server): the sequence number after the furthest byte sent.
    sent_up_to: [Option<u32>; 2],
    fin: [bool; 2],
    last_ns: u64,
}

#[derive(Debug, Default)]
pub struct Connections {
    open: HashMap<(Endpoint, Endpoint), Connection>,
    newest_ns: u64,
    swept_ns: u64,
}

/// `a` before `b` in sequence space (RFC 1982 serial arithmetic).
fn before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

fn key(a: Endpoint, b: Endpoint) -> (Endpoint, Endpoint) {
    if a <= b { (a, b) } else { (b, a) }
}

/// One TCP segment as the tracker needs it.
#[derive(Debug, Clone, Copy)]
pub struct Segment {
    pub from: Endpoint,
    pub to: Endpoint,
    pub flags: u8,
    pub seq: u32,
    /// Payload bytes as sent.
    pub len: u32,
    pub window: u16,
    pub ts_ns: u64,
}

impl Connections {
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.open.len()
    }

    /// Follows one segment; connections that ended go to `ended`.
    pub fn add(&mut self, segment: Segment, ended: &mut Vec<Ended>) -> Observed {
        let Segment {
            from,
            to,
            flags,
            seq,
            len,
            window,
            ts_ns,
        } = segment;
        self.newest_ns = self.newest_ns.max(ts_ns);
        let mut observed = Observed {
            zero_window: window == 0 && flags & RST == 0 && flags & SYN == 0,
            ..Observed::default()
        };
        let key = key(from, to);
        let opening = flags & SYN != 0 && flags & ACK == 0;
        if opening
            && let Some(old) = self.open.get(&key)
            && !(old.client == from && old.syn_seq == Some(seq))
        {
            // A new connection on the same ports (not the same SYN again): the old one is over.
            let old = self.open.remove(&key).expect("just seen");
            if old.counted {
                ended.push((old.client, old.server, Self::outcome_of_silent(&old)));
            }
        }
        let connection = match self.open.entry(key) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => {
                // A reset or a bare ACK of a connection not followed (the last ACK after both
                // FINs, mostly) says nothing worth remembering.
                if flags & RST != 0 || (len == 0 && flags & (SYN | FIN) == 0) {
                    return observed;
                }
                // A SYN-ACK first: the SYN went unseen, the client is the other end.
                let (client, server) = if flags & SYN != 0 && flags & ACK != 0 {
                    (to, from)
                } else {
                    (from, to)
                };
                if opening {
                    observed.opened = Some((from, to));
                }
                entry.insert(Connection {
                    client,
                    server,
                    counted: opening,
                    syn_seq: opening.then_some(seq),
                    established: !opening,
                    sent_up_to: [None, None],
                    fin: [false, false],
                    last_ns: ts_ns,
                })
            }
        };
        connection.last_ns = connection.last_ns.max(ts_ns);
        let direction = usize::from(from != connection.client);
        // SYN and FIN take a sequence number each.
        let end = seq
            .wrapping_add(len)
            .wrapping_add(u32::from(flags & SYN != 0))
            .wrapping_add(u32::from(flags & FIN != 0));
        if end != seq {
            match connection.sent_up_to[direction] {
                // Keep-alives (one byte, or none, just below what was sent) are not resends.
                Some(sent)
                    if before(seq, sent) && !(len <= 1 && seq.wrapping_add(1) == sent && flags & (SYN | FIN) == 0) =>
                {
                    observed.retransmission = true;
                    if before(sent, end) {
                        connection.sent_up_to[direction] = Some(end);
                    }
                }
                Some(sent) if !before(end, sent) => connection.sent_up_to[direction] = Some(end),
                Some(_) => {}
                None => connection.sent_up_to[direction] = Some(end),
            }
        }
        if flags & SYN != 0 && flags & ACK != 0 && direction == 1 {
            connection.established = true;
        }
        if flags & RST != 0 {
            let connection = self.open.remove(&key).expect("present");
            if connection.counted {
                let outcome = match (connection.established, direction) {
                    (false, 1) => Outcome::Refused,
                    _ => Outcome::Reset,
                };
                ended.push((connection.client, connection.server, outcome));
            }
            return observed;
        }
        if flags & FIN != 0 {
            connection.fin[direction] = true;
            if connection.fin == [true, true] {
                let connection = self.open.remove(&key).expect("present");
                if connection.counted {
                    ended.push((
                        connection.client,
                        connection.server,
                        Self::outcome_of_silent(&connection),
                    ));
                }
            }
        }
        self.sweep(ended);
        observed
    }

    fn outcome_of_silent(connection: &Connection) -> Outcome {
        if connection.established {
            Outcome::Established
        } else {
            Outcome::TimedOut
        }
    }

    /// Ends connections quiet for too long (in capture time), at most once a second of it, and
    /// the longest quiet ones past [`MAX_CONNECTIONS`].
    fn sweep(&mut self, ended: &mut Vec<Ended>) {
        let now = self.newest_ns;
        if now.saturating_sub(self.swept_ns) < 1_000_000_000 && self.open.len() <= MAX_CONNECTIONS {
            return;
        }
        self.swept_ns = now;
        let mut push = |connection: &Connection| {
            if connection.counted {
                ended.push((
                    connection.client,
                    connection.server,
                    Self::outcome_of_silent(connection),
                ));
            }
        };
        self.open.retain(|_, connection| {
            let quiet = now.saturating_sub(connection.last_ns);
            let over = if connection.established {
                quiet > IDLE_NS
            } else {
                quiet > SYN_TIMEOUT_NS
            };
            if over {
                push(connection);
            }
            !over
        });
        if self.open.len() > MAX_CONNECTIONS {
            let mut times: Vec<u64> = self.open.values().map(|c| c.last_ns).collect();
            times.sort_unstable();
            // A tenth at a time, so that a flood of new connections does not sort on every packet.
            let cut = times[self.open.len() - MAX_CONNECTIONS * 9 / 10];
            self.open.retain(|_, connection| {
                let keep = connection.last_ns >= cut;
                if !keep {
                    push(connection);
                }
                keep
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT: Endpoint = (IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1)), 40000);
    const SERVER: Endpoint = (IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2)), 80);

    fn segment(from: Endpoint, to: Endpoint, flags: u8, seq: u32, len: u32, ts_ns: u64) -> Segment {
        Segment {
            from,
            to,
            flags,
            seq,
            len,
            window: 64_000,
            ts_ns,
        }
    }

    fn run(segments: &[Segment]) -> (Vec<Observed>, Vec<Ended>, Connections) {
        let mut connections = Connections::default();
        let mut ended = Vec::new();
        let observed = segments.iter().map(|s| connections.add(*s, &mut ended)).collect();
        (observed, ended, connections)
    }

    #[test]
    fn a_handshake_data_and_close_is_one_established_connection() {
        let (observed, ended, connections) = run(&[
            segment(CLIENT, SERVER, SYN, 100, 0, 1),
            segment(SERVER, CLIENT, SYN | ACK, 900, 0, 2),
            segment(CLIENT, SERVER, ACK, 101, 0, 3),
            segment(CLIENT, SERVER, ACK, 101, 50, 4),
            segment(SERVER, CLIENT, ACK, 901, 500, 5),
            segment(CLIENT, SERVER, FIN | ACK, 151, 0, 6),
            segment(SERVER, CLIENT, FIN | ACK, 1401, 0, 7),
        ]);
        assert_eq!(observed[0].opened, Some((CLIENT, SERVER)));
        assert!(observed.iter().all(|o| !o.retransmission));
        assert_eq!(ended, vec![(CLIENT, SERVER, Outcome::Established)]);
        assert_eq!(connections.len(), 0);
    }

    #[test]
    fn a_refused_and_a_reset_connection() {
        let (_, ended, _) = run(&[
            segment(CLIENT, SERVER, SYN, 100, 0, 1),
            segment(SERVER, CLIENT, RST | ACK, 0, 0, 2),
        ]);
        assert_eq!(ended, vec![(CLIENT, SERVER, Outcome::Refused)]);
        let (_, ended, _) = run(&[
            segment(CLIENT, SERVER, SYN, 100, 0, 1),
            segment(SERVER, CLIENT, SYN | ACK, 900, 0, 2),
            segment(SERVER, CLIENT, RST, 901, 0, 3),
        ]);
        assert_eq!(ended, vec![(CLIENT, SERVER, Outcome::Reset)]);
    }

    #[test]
    fn resent_bytes_and_a_resent_syn_are_retransmissions_a_keepalive_is_not() {
        let (observed, _, _) = run(&[
            segment(CLIENT, SERVER, SYN, 100, 0, 1),
            segment(CLIENT, SERVER, SYN, 100, 0, 2),
            segment(SERVER, CLIENT, SYN | ACK, 900, 0, 3),
            segment(CLIENT, SERVER, ACK, 101, 100, 4),
            segment(CLIENT, SERVER, ACK, 301, 100, 5),
            // The lost segment between them, sent again.
            segment(CLIENT, SERVER, ACK, 201, 100, 6),
            segment(CLIENT, SERVER, ACK, 400, 1, 7),
        ]);
        let resent: Vec<bool> = observed.iter().map(|o| o.retransmission).collect();
        assert_eq!(resent, [false, true, false, false, false, true, false]);
    }

    #[test]
    fn a_syn_sent_again_after_the_answer_was_lost_is_the_same_connection() {
        let (observed, ended, connections) = run(&[
            segment(CLIENT, SERVER, SYN, 100, 0, 1),
            // Seen on the wire, lost before the client.
            segment(SERVER, CLIENT, SYN | ACK, 900, 0, 2),
            segment(CLIENT, SERVER, SYN, 100, 0, 3),
            segment(SERVER, CLIENT, SYN | ACK, 900, 0, 4),
        ]);
        assert!(observed[0].opened.is_some() && observed[2].opened.is_none());
        assert!(observed[2].retransmission && observed[3].retransmission);
        assert!(ended.is_empty());
        assert_eq!(connections.len(), 1);
    }

    #[test]
    fn an_unanswered_syn_times_out_in_capture_time() {
        let (_, ended, connections) = run(&[
            segment(CLIENT, SERVER, SYN, 100, 0, 1),
            segment((CLIENT.0, 40001), SERVER, SYN, 5, 0, SYN_TIMEOUT_NS + 2),
        ]);
        assert_eq!(ended, vec![(CLIENT, SERVER, Outcome::TimedOut)]);
        assert_eq!(connections.len(), 1);
    }

    #[test]
    fn a_connection_seen_mid_stream_is_followed_but_not_counted() {
        let (observed, ended, _) = run(&[
            segment(CLIENT, SERVER, ACK, 5000, 100, 1),
            segment(CLIENT, SERVER, ACK, 5000, 100, 2),
            segment(SERVER, CLIENT, RST, 1, 0, 3),
        ]);
        assert!(observed[1].retransmission);
        assert!(ended.is_empty());
    }

    #[test]
    fn sequence_numbers_wrap() {
        assert!(before(u32::MAX - 1, 3));
        assert!(!before(3, u32::MAX - 1));
    }
}
