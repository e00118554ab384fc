//! One copy of each packet per node (issue #30 item 2). A sniffer bound to several interfaces sees
//! a pod's packet on the sender's veth, on a bridge in promiscuous mode and on the receiver's veth;
//! the copies are the same IP packet except for what forwarding changes. The same packet seen on
//! another interface within [`WINDOW_NS`] of the first copy (kernel timestamps, in either order:
//! each interface has its own capture thread) is counted as deduplicated instead of stored, as
//! Wireshark's `editcap -D` and SiLK's `rwpdedupe` do it. Seen again on the same interface, it is
//! the sender's own repetition (an application may send one datagram twice), and kept.
//!
//! What identifies a copy: the IP packet's captured bytes and its length on the wire, except the
//! TTL or hop limit (a routed hop lowers it) and the checksums (the IPv4 header's and the TCP or
//! UDP one, which checksum offload leaves unfinished on the sending side). For frames that are not
//! IP, the whole frame, L2 header included.
//!
//! Translated copies: the node's SNAT rewrites a pod's packet to the outside on its way to the
//! uplink (source address and port), and the reply on its way back (destination). The copy kept is
//! the pod end's, with the pod's address ([`Capture::PodEnd`]): each such copy also leaves its
//! TCP or UDP packet's hashes without the source end and without the destination end, and a copy
//! on the node's own interfaces ([`Capture::Node`], which the capture threads hand over only
//! after the pod ends' threads have had time to hand over theirs: `crate::worker`'s hold) is a copy
//! when one of them matches its own: everything else equal (the other end, the IPv4 id, the TCP
//! sequence numbers, the payload), within the window.
//!
//! Bounded: two generations of at most [`MAX_ENTRIES`] hashes each. A generation spans
//! [`RETAIN_NS`] of capture time, far more than the window: each interface's thread hands over its
//! packets a ring block at a time (up to 50 ms late), so one thread may be well ahead of another,
//! and a hash must outlive that lag for the late thread's copy to be found.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::Mutex;

/// Copies of one packet on one node arrive microseconds apart (veth, bridge, veth; uplink). A TCP
/// retransmission is a new IP packet (a new IPv4 id) and comes after a retransmission timeout,
/// 200 ms at least on Linux; 10 ms leaves room for a loaded node's scheduling.
pub const WINDOW_NS: u64 = 10_000_000;
/// Capture time one generation of hashes spans.
pub const RETAIN_NS: u64 = 1_000_000_000;
/// Hashes one generation holds at most (about 8 MiB each): past it the generation turns early
/// (at 260 000 packets/s and more), which at worst lets a copy through (stored twice), never drops
/// a packet that is not a copy.
pub const MAX_ENTRIES: usize = 1 << 18;

/// Where a copy was captured, for translated copies (see the module's documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Capture {
    /// A pod end: kept before any translated copy.
    PodEnd,
    /// The node's own interfaces: a translated copy of a pod end's packet is deduplicated.
    Node,
    /// Anything else (a user's interface list): copies with the same bytes only.
    Plain,
}

/// Which end of a packet a hash leaves out.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Without {
    Nothing,
    Source,
    Destination,
}

pub struct Deduplicator {
    seen: Mutex<Generations>,
    /// Pod ends' packets without their source or destination end.
    translatable: Mutex<Generations>,
    hasher: foldhash::fast::RandomState,
}

#[derive(Default)]
struct Generations {
    /// Packet hash -> the last copy kept: its kernel timestamp and interface.
    current: HashMap<u64, (u64, u64), foldhash::fast::FixedState>,
    previous: HashMap<u64, (u64, u64), foldhash::fast::FixedState>,
    /// The newest timestamp when `current` began.
    current_since: u64,
    newest: u64,
}

impl Default for Deduplicator {
    fn default() -> Self {
        Self {
            seen: Mutex::new(Generations::default()),
            translatable: Mutex::new(Generations::default()),
            // A seed per process: hashes an attacker cannot precompute collisions for.
            hasher: foldhash::fast::RandomState::default(),
        }
    }
}

impl Deduplicator {
    /// Whether `frame` (captured on `interface` at `ts_ns`, `original_len` bytes on the wire) is
    /// a copy of a packet kept within the window on another interface; if not, it is remembered.
    pub fn is_copy(&self, frame: &[u8], original_len: u32, ts_ns: u64, interface: u64, capture: Capture) -> bool {
        let hash = self.identity(frame, original_len, Without::Nothing);
        if self.seen.lock().expect("not poisoned").check(hash, ts_ns, interface) {
            return true;
        }
        let ends = [Without::Source, Without::Destination];
        match capture {
            Capture::Plain => false,
            Capture::PodEnd => {
                if translatable(frame) {
                    let hashes = ends.map(|without| self.identity(frame, original_len, without));
                    let mut translatable = self.translatable.lock().expect("not poisoned");
                    for hash in hashes {
                        translatable.remember(hash, ts_ns, interface);
                    }
                }
                false
            }
            Capture::Node => {
                translatable(frame) && {
                    let hashes = ends.map(|without| self.identity(frame, original_len, without));
                    let translatable = self.translatable.lock().expect("not poisoned");
                    hashes.iter().any(|&hash| translatable.holds(hash, ts_ns, interface))
                }
            }
        }
    }

    fn identity(&self, frame: &[u8], original_len: u32, without: Without) -> u64 {
        let mut hasher = self.hasher.build_hasher();
        hasher.write_u32(original_len);
        // A hash without the source never matches one without the destination.
        hasher.write_u8(without as u8);
        match ip_packet(frame) {
            Some((version, ip)) => hash_ip(&mut hasher, version, ip, without),
            None => hasher.write(frame),
        }
        hasher.finish()
    }
}

/// TCP and UDP packets (first fragments) are what NAT translates by address and port.
fn translatable(frame: &[u8]) -> bool {
    match ip_packet(frame) {
        Some((4, ip)) => matches!(ip[9], 6 | 17) && u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff == 0,
        Some((_, ip)) => matches!(ip[6], 6 | 17),
        None => false,
    }
}

impl Generations {
    /// Whether a copy of `hash` was kept on another interface within the window; if not, it is
    /// remembered as kept here.
    fn check(&mut self, hash: u64, ts_ns: u64, interface: u64) -> bool {
        if self.holds(hash, ts_ns, interface) {
            return true;
        }
        self.remember(hash, ts_ns, interface);
        false
    }

    fn holds(&self, hash: u64, ts_ns: u64, interface: u64) -> bool {
        let copy = |&(kept_ns, kept_on): &(u64, u64)| kept_on != interface && kept_ns.abs_diff(ts_ns) <= WINDOW_NS;
        self.current.get(&hash).is_some_and(copy) || self.previous.get(&hash).is_some_and(copy)
    }

    fn remember(&mut self, hash: u64, ts_ns: u64, interface: u64) {
        self.newest = self.newest.max(ts_ns);
        if self.newest.saturating_sub(self.current_since) > RETAIN_NS || self.current.len() >= MAX_ENTRIES {
            self.previous = std::mem::take(&mut self.current);
            self.current_since = self.newest;
        }
        self.current.insert(hash, (ts_ns, interface));
    }
}

/// The IP version and packet of an Ethernet frame (past any VLAN tags), if it carries one.
fn ip_packet(frame: &[u8]) -> Option<(u8, &[u8])> {
    match crate::shard::network_layer(frame)? {
        (0x0800, ip) if ip.len() >= 20 => Some((4, ip)),
        (0x86dd, ip) if ip.len() >= 40 => Some((6, ip)),
        _ => None,
    }
}

/// Hashes the packet's bytes without the fields forwarding changes, and without one end's
/// address and port when `without` says so (what NAT changes).
fn hash_ip(hasher: &mut impl Hasher, version: u8, ip: &[u8], without: Without) {
    let (mutable, header_len, protocol, first_fragment, source, destination) = if version == 4 {
        let header_len = usize::from(ip[0] & 0x0f) * 4;
        let fragment_offset = u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff;
        // TTL (8) and header checksum (10, 11); addresses at 12 and 16.
        (
            &[8usize, 10, 11][..],
            header_len,
            ip[9],
            fragment_offset == 0,
            12..16,
            16..20,
        )
    } else {
        // Hop limit (7); addresses at 8 and 24.
        (&[7usize][..], 40, ip[6], true, 8..24, 24..40)
    };
    let transport_checksum = match protocol {
        6 if first_fragment => header_len.checked_add(16),
        17 if first_fragment => header_len.checked_add(6),
        _ => None,
    };
    // Byte ranges left out, each [from, to).
    let mut skip: Vec<(usize, usize)> = mutable.iter().map(|&at| (at, at + 1)).collect();
    if let Some(at) = transport_checksum {
        skip.push((at, at + 2));
    }
    let port = |offset: usize| (header_len + offset, header_len + offset + 2);
    match without {
        Without::Nothing => {}
        Without::Source => skip.extend([(source.start, source.end), port(0)]),
        Without::Destination => skip.extend([(destination.start, destination.end), port(2)]),
    }
    skip.sort_unstable();
    let mut from = 0;
    for (start, end) in skip {
        // A header length that points inside the fixed header (malformed) can overlap ranges.
        let start = start.clamp(from, ip.len());
        hasher.write(&ip[from..start]);
        from = end.clamp(from, ip.len()).max(start);
    }
    hasher.write(&ip[from.min(ip.len())..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use testkit::batches::{CLIENT, SERVER};
    use testkit::frames;

    const VETH: u64 = 1;
    const BRIDGE: u64 = 2;
    const UPLINK: u64 = 3;

    #[test]
    fn the_senders_own_repetition_on_one_interface_is_kept() {
        let dedup = Deduplicator::default();
        let frame = frames::udp(CLIENT, SERVER, 9, b"twice");
        assert!(!dedup.is_copy(&frame, frame.len() as u32, 100, VETH, Capture::Plain));
        assert!(dedup.is_copy(&frame, frame.len() as u32, 110, BRIDGE, Capture::Plain));
        assert!(
            !dedup.is_copy(&frame, frame.len() as u32, 200, VETH, Capture::Plain),
            "sent again"
        );
        assert!(
            dedup.is_copy(&frame, frame.len() as u32, 210, BRIDGE, Capture::Plain),
            "its copy"
        );
    }

    fn routed(frame: &[u8]) -> Vec<u8> {
        let mut copy = frame.to_vec();
        // One hop: TTL down, header checksum changed; and an unfinished TCP/UDP checksum.
        copy[14 + 8] -= 1;
        copy[14 + 10] ^= 0x55;
        copy
    }

    #[test]
    fn copies_within_the_window_are_found_in_either_order() {
        let dedup = Deduplicator::default();
        let frame = frames::udp(CLIENT, SERVER, 9, b"one packet");
        assert!(!dedup.is_copy(&frame, frame.len() as u32, 1_000_000_000, VETH, Capture::Plain));
        assert!(dedup.is_copy(&frame, frame.len() as u32, 1_000_000_500, BRIDGE, Capture::Plain));
        assert!(
            dedup.is_copy(&routed(&frame), frame.len() as u32, 999_999_000, UPLINK, Capture::Plain),
            "an earlier copy on another interface, one hop on"
        );
        let mut tagged = frames::with_vlan_tags(&frame, &[(0x8100, 7)]);
        assert!(
            dedup.is_copy(&tagged, frame.len() as u32, 1_000_001_000, BRIDGE, Capture::Plain),
            "a VLAN tag is L2"
        );
        let last = tagged.len() - 1;
        tagged[last] ^= 1;
        assert!(
            !dedup.is_copy(&tagged, frame.len() as u32, 1_000_001_000, BRIDGE, Capture::Plain),
            "other payload"
        );
    }

    #[test]
    fn the_same_bytes_after_the_window_are_a_new_packet() {
        let dedup = Deduplicator::default();
        let frame = frames::tcp(CLIENT, SERVER, 80, 0x18, b"GET / HTTP/1.1\r\n\r\n");
        assert!(!dedup.is_copy(&frame, frame.len() as u32, 0, VETH, Capture::Plain));
        assert!(!dedup.is_copy(&frame, frame.len() as u32, WINDOW_NS + 1, BRIDGE, Capture::Plain));
        // Another thread, 200 ms ahead, turned over other packets meanwhile: a copy from the
        // thread behind is still found.
        for n in 0..10_000u32 {
            let other = frames::udp(CLIENT, SERVER, 9, &n.to_be_bytes());
            dedup.is_copy(
                &other,
                other.len() as u32,
                200_000_000 + u64::from(n) * 10_000,
                VETH,
                Capture::Plain,
            );
        }
        assert!(dedup.is_copy(&frame, frame.len() as u32, WINDOW_NS + 20_000, UPLINK, Capture::Plain));
        // Past two generations it is forgotten, and memory with it.
        for n in 0..3u64 {
            let other = frames::udp(CLIENT, SERVER, 9, &n.to_be_bytes());
            dedup.is_copy(&other, other.len() as u32, (n + 2) * RETAIN_NS, VETH, Capture::Plain);
        }
        assert!(!dedup.is_copy(&frame, frame.len() as u32, WINDOW_NS + 30_000, UPLINK, Capture::Plain));
    }

    #[test]
    fn different_addresses_or_lengths_are_different_packets() {
        let dedup = Deduplicator::default();
        let frame = frames::udp(CLIENT, SERVER, 9, b"natted");
        let mut natted = frame.clone();
        natted[14 + 16] = 10;
        assert!(!dedup.is_copy(&frame, frame.len() as u32, 5, VETH, Capture::Plain));
        assert!(!dedup.is_copy(&natted, frame.len() as u32, 6, BRIDGE, Capture::Plain));
        assert!(
            !dedup.is_copy(&frame, 1500, 7, BRIDGE, Capture::Plain),
            "the same snapped bytes of a longer packet"
        );
        let arp = [&SERVER[..], &CLIENT[..], &[0x08, 0x06], &[0u8; 28][..]].concat();
        assert!(!dedup.is_copy(&arp, 42, 8, VETH, Capture::Plain));
        assert!(dedup.is_copy(&arp, 42, 9, BRIDGE, Capture::Plain));
    }

    fn translated(frame: &[u8], source: Option<([u8; 4], u16)>, destination: Option<([u8; 4], u16)>) -> Vec<u8> {
        let mut copy = routed(frame);
        let (ip, transport) = (14, 14 + 20);
        if let Some((address, port)) = source {
            copy[ip + 12..ip + 16].copy_from_slice(&address);
            copy[transport..transport + 2].copy_from_slice(&port.to_be_bytes());
        }
        if let Some((address, port)) = destination {
            copy[ip + 16..ip + 20].copy_from_slice(&address);
            copy[transport + 2..transport + 4].copy_from_slice(&port.to_be_bytes());
        }
        copy
    }

    #[test]
    fn a_pod_ends_packet_translated_by_the_nodes_snat_is_a_copy_on_the_uplink() {
        let dedup = Deduplicator::default();
        let out = frames::tcp(CLIENT, SERVER, 443, 0x18, b"to the outside");
        let len = out.len() as u32;
        assert!(!dedup.is_copy(&out, len, 1_000, VETH, Capture::PodEnd));
        let snatted = translated(&out, Some(([10, 245, 1, 2], 61_000)), None);
        assert!(dedup.is_copy(&snatted, len, 9_000, UPLINK, Capture::Node), "after SNAT");
        // The reply arrives on the uplink to the node's address, then enters the pod un-NATed.
        let reply = frames::tcp(SERVER, CLIENT, 80, 0x18, b"from the outside");
        assert!(!dedup.is_copy(&reply, len, 2_000_000, VETH, Capture::PodEnd));
        let to_node = translated(&reply, None, Some(([10, 245, 1, 2], 61_000)));
        assert!(
            dedup.is_copy(&to_node, len, 1_999_000, UPLINK, Capture::Node),
            "before un-SNAT"
        );
    }

    #[test]
    fn translated_copies_are_matched_only_against_pod_ends_and_only_one_end_changed() {
        let dedup = Deduplicator::default();
        let packet = frames::udp(CLIENT, SERVER, 53, b"query");
        let len = packet.len() as u32;
        assert!(!dedup.is_copy(&packet, len, 1_000, UPLINK, Capture::Node));
        let snatted = translated(&packet, Some(([10, 245, 1, 2], 61_000)), None);
        assert!(
            !dedup.is_copy(&snatted, len, 2_000, BRIDGE, Capture::Node),
            "no pod end kept it"
        );
        assert!(!dedup.is_copy(&packet, len, 50_000_000, VETH, Capture::PodEnd));
        let both = translated(&packet, Some(([10, 245, 1, 2], 61_000)), Some(([10, 96, 0, 10], 53)));
        assert!(
            !dedup.is_copy(&both, len, 50_001_000, UPLINK, Capture::Node),
            "both ends rewritten"
        );
        let other = frames::udp(CLIENT, SERVER, 53, b"other");
        let other = translated(&other, Some(([10, 245, 1, 2], 61_000)), None);
        assert!(
            !dedup.is_copy(&other, len, 50_002_000, UPLINK, Capture::Node),
            "other payload"
        );
        let later = translated(&packet, Some(([10, 245, 1, 3], 61_001)), None);
        assert!(
            !dedup.is_copy(&later, len, 50_000_000 + WINDOW_NS + 1, UPLINK, Capture::Node),
            "past the window"
        );
    }
}
