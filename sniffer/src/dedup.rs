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
//! IP, the whole frame, L2 header included. A packet whose addresses NAT rewrote is not a copy.
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

pub struct Deduplicator {
    seen: Mutex<Generations>,
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
            // A seed per process: hashes an attacker cannot precompute collisions for.
            hasher: foldhash::fast::RandomState::default(),
        }
    }
}

impl Deduplicator {
    /// Whether `frame` (captured on `interface` at `ts_ns`, `original_len` bytes on the wire) is
    /// a copy of a packet kept within the window on another interface; if not, it is remembered.
    pub fn is_copy(&self, frame: &[u8], original_len: u32, ts_ns: u64, interface: u64) -> bool {
        let hash = self.identity(frame, original_len);
        let mut seen = self.seen.lock().expect("not poisoned");
        seen.check(hash, ts_ns, interface)
    }

    fn identity(&self, frame: &[u8], original_len: u32) -> u64 {
        let mut hasher = self.hasher.build_hasher();
        hasher.write_u32(original_len);
        match ip_packet(frame) {
            Some((version, ip)) => hash_ip(&mut hasher, version, ip),
            None => hasher.write(frame),
        }
        hasher.finish()
    }
}

impl Generations {
    fn check(&mut self, hash: u64, ts_ns: u64, interface: u64) -> bool {
        let copy = |&(kept_ns, kept_on): &(u64, u64)| kept_on != interface && kept_ns.abs_diff(ts_ns) <= WINDOW_NS;
        if self.current.get(&hash).is_some_and(copy) || self.previous.get(&hash).is_some_and(copy) {
            return true;
        }
        self.newest = self.newest.max(ts_ns);
        if self.newest.saturating_sub(self.current_since) > RETAIN_NS || self.current.len() >= MAX_ENTRIES {
            self.previous = std::mem::take(&mut self.current);
            self.current_since = self.newest;
        }
        self.current.insert(hash, (ts_ns, interface));
        false
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

/// Hashes the packet's bytes without the fields forwarding changes.
fn hash_ip(hasher: &mut impl Hasher, version: u8, ip: &[u8]) {
    let (mutable, header_len, protocol, first_fragment) = if version == 4 {
        let header_len = usize::from(ip[0] & 0x0f) * 4;
        let fragment_offset = u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff;
        // TTL (8) and header checksum (10, 11).
        (&[8usize, 10, 11][..], header_len, ip[9], fragment_offset == 0)
    } else {
        // Hop limit (7).
        (&[7usize][..], 40, ip[6], true)
    };
    let transport_checksum = match protocol {
        6 if first_fragment => header_len.checked_add(16),
        17 if first_fragment => header_len.checked_add(6),
        _ => None,
    };
    let mut skip = [usize::MAX; 5];
    skip[..mutable.len()].copy_from_slice(mutable);
    if let Some(at) = transport_checksum {
        skip[3] = at;
        skip[4] = at + 1;
    }
    // Runs of bytes between the skipped positions (sorted, all after the first byte).
    skip.sort_unstable();
    let mut from = 0;
    for &at in skip.iter().filter(|&&at| at < ip.len()) {
        // A header length that points inside the fixed header (malformed) can repeat a position.
        if at < from {
            continue;
        }
        hasher.write(&ip[from..at]);
        from = at + 1;
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
        assert!(!dedup.is_copy(&frame, frame.len() as u32, 100, VETH));
        assert!(dedup.is_copy(&frame, frame.len() as u32, 110, BRIDGE));
        assert!(!dedup.is_copy(&frame, frame.len() as u32, 200, VETH), "sent again");
        assert!(dedup.is_copy(&frame, frame.len() as u32, 210, BRIDGE), "its copy");
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
        assert!(!dedup.is_copy(&frame, frame.len() as u32, 1_000_000_000, VETH));
        assert!(dedup.is_copy(&frame, frame.len() as u32, 1_000_000_500, BRIDGE));
        assert!(
            dedup.is_copy(&routed(&frame), frame.len() as u32, 999_999_000, UPLINK),
            "an earlier copy on another interface, one hop on"
        );
        let mut tagged = frames::with_vlan_tags(&frame, &[(0x8100, 7)]);
        assert!(
            dedup.is_copy(&tagged, frame.len() as u32, 1_000_001_000, BRIDGE),
            "a VLAN tag is L2"
        );
        let last = tagged.len() - 1;
        tagged[last] ^= 1;
        assert!(
            !dedup.is_copy(&tagged, frame.len() as u32, 1_000_001_000, BRIDGE),
            "other payload"
        );
    }

    #[test]
    fn the_same_bytes_after_the_window_are_a_new_packet() {
        let dedup = Deduplicator::default();
        let frame = frames::tcp(CLIENT, SERVER, 80, 0x18, b"GET / HTTP/1.1\r\n\r\n");
        assert!(!dedup.is_copy(&frame, frame.len() as u32, 0, VETH));
        assert!(!dedup.is_copy(&frame, frame.len() as u32, WINDOW_NS + 1, BRIDGE));
        // Another thread, 200 ms ahead, turned over other packets meanwhile: a copy from the
        // thread behind is still found.
        for n in 0..10_000u32 {
            let other = frames::udp(CLIENT, SERVER, 9, &n.to_be_bytes());
            dedup.is_copy(&other, other.len() as u32, 200_000_000 + u64::from(n) * 10_000, VETH);
        }
        assert!(dedup.is_copy(&frame, frame.len() as u32, WINDOW_NS + 20_000, UPLINK));
        // Past two generations it is forgotten, and memory with it.
        for n in 0..3u64 {
            let other = frames::udp(CLIENT, SERVER, 9, &n.to_be_bytes());
            dedup.is_copy(&other, other.len() as u32, (n + 2) * RETAIN_NS, VETH);
        }
        assert!(!dedup.is_copy(&frame, frame.len() as u32, WINDOW_NS + 30_000, UPLINK));
    }

    #[test]
    fn different_addresses_or_lengths_are_different_packets() {
        let dedup = Deduplicator::default();
        let frame = frames::udp(CLIENT, SERVER, 9, b"natted");
        let mut natted = frame.clone();
        natted[14 + 16] = 10;
        assert!(!dedup.is_copy(&frame, frame.len() as u32, 5, VETH));
        assert!(!dedup.is_copy(&natted, frame.len() as u32, 6, BRIDGE));
        assert!(
            !dedup.is_copy(&frame, 1500, 7, BRIDGE),
            "the same snapped bytes of a longer packet"
        );
        let arp = [&SERVER[..], &CLIENT[..], &[0x08, 0x06], &[0u8; 28][..]].concat();
        assert!(!dedup.is_copy(&arp, 42, 8, VETH));
        assert!(dedup.is_copy(&arp, 42, 9, BRIDGE));
    }
}
