//! Which shard of the session a frame belongs to: the same for both directions of a flow and on
//! every node (a fixed hash, not a seeded one), so that one parser sees all of a flow's packets
//! and can reassemble its TCP streams (issue #19).
//!
//! The flow is the protocol and both endpoints' addresses and ports. IP fragments are hashed by
//! addresses and protocol only (later fragments carry no ports), so all fragments of a datagram
//! share a shard; frames that are not IP go to shard 0.

/// The shard of `frame` among `shards`.
pub fn of(frame: &[u8], shards: u16) -> u16 {
    if shards <= 1 {
        return 0;
    }
    match flow(frame) {
        Some(flow) => (flow.hash() % u64::from(shards)) as u16,
        None => 0,
    }
}

#[derive(Debug, PartialEq, Eq)]
struct Flow<'a> {
    protocol: u8,
    /// The lower endpoint first, so that both directions hash alike.
    ends: [(&'a [u8], u16); 2],
}

impl Flow<'_> {
    /// FNV-1a: a few bytes per frame, no seed, identical on every sniffer.
    fn hash(&self) -> u64 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |bytes: &[u8]| {
            for byte in bytes {
                hash ^= u64::from(*byte);
                hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
            }
        };
        eat(&[self.protocol]);
        for (address, port) in self.ends {
            eat(address);
            eat(&port.to_be_bytes());
        }
        hash
    }
}

const VLAN_TAGS: [u16; 3] = [0x8100, 0x88a8, 0x9100];

/// The ethertype and payload of an Ethernet frame past its VLAN tags (the sniffer restores them).
pub fn network_layer(frame: &[u8]) -> Option<(u16, &[u8])> {
    let mut at = 12;
    let mut ethertype = u16::from_be_bytes(frame.get(at..at + 2)?.try_into().ok()?);
    while VLAN_TAGS.contains(&ethertype) {
        at += 4;
        ethertype = u16::from_be_bytes(frame.get(at..at + 2)?.try_into().ok()?);
    }
    Some((ethertype, frame.get(at + 2..)?))
}

/// What a frame says of its way: the IP protocol, both addresses (4 or 16 bytes) and, where the
/// transport has them, both ports.
#[derive(Debug, PartialEq, Eq)]
pub struct Ends<'a> {
    pub protocol: u8,
    pub source: &'a [u8],
    pub destination: &'a [u8],
    /// TCP's, UDP's and SCTP's source and destination ports; None for every fragment of a
    /// fragmented datagram (later ones carry no ports, and all must be treated alike) and behind
    /// an IPv6 extension header (a fragment's included).
    pub ports: Option<(u16, u16)>,
}

/// The ends of an IPv4 or IPv6 frame (None for anything else, and for a truncated header).
pub fn ends(frame: &[u8]) -> Option<Ends<'_>> {
    let (ethertype, ip) = network_layer(frame)?;
    let (protocol, source, destination, transport) = match ethertype {
        0x0800 => {
            let header_len = usize::from(ip.first()? & 0x0f) * 4;
            let fragmented = u16::from_be_bytes(ip.get(6..8)?.try_into().ok()?) & 0x3fff != 0;
            let transport = if fragmented { None } else { ip.get(header_len..) };
            (ip.get(9).copied()?, ip.get(12..16)?, ip.get(16..20)?, transport)
        }
        0x86dd => (ip.get(6).copied()?, ip.get(8..24)?, ip.get(24..40)?, ip.get(40..)),
        _ => return None,
    };
    let ports = transport.filter(|_| matches!(protocol, 6 | 17 | 132)).and_then(|t| {
        Some((
            u16::from_be_bytes(t.get(0..2)?.try_into().ok()?),
            u16::from_be_bytes(t.get(2..4)?.try_into().ok()?),
        ))
    });
    Some(Ends {
        protocol,
        source,
        destination,
        ports,
    })
}

fn flow(frame: &[u8]) -> Option<Flow<'_>> {
    let ends = ends(frame)?;
    // Without ports (not TCP, UDP or SCTP; a later fragment) a flow is its address pair.
    let ports = ends.ports.unwrap_or((0, 0));
    let (a, b) = ((ends.source, ports.0), (ends.destination, ports.1));
    Some(Flow {
        protocol: ends.protocol,
        ends: if a <= b { [a, b] } else { [b, a] },
    })
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use testkit::frames;

    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    fn udp(port: u16) -> Vec<u8> {
        frames::udp_ports(MAC, MAC, (A, port), (B, 53), b"x")
    }

    #[test]
    fn both_directions_of_a_flow_share_a_shard() {
        for port in 1000..1100 {
            let there = frames::tcp_ports(MAC, MAC, (A, port), (B, 443), 0x02, b"");
            let back = frames::tcp_ports(MAC, MAC, (B, 443), (A, port), 0x12, b"");
            assert_eq!(flow(&there), flow(&back));
            assert_eq!(of(&there, 7), of(&back, 7));
        }
    }

    #[test]
    fn flows_spread_over_the_shards() {
        let mut seen = [0u32; 4];
        for port in 0..4000 {
            seen[usize::from(of(&udp(40000 + port), 4))] += 1;
        }
        // 1000 each if perfectly even; FNV over ports is close enough for load sharing.
        assert!(seen.iter().all(|&n| (800..1200).contains(&n)), "{seen:?}");
    }

    #[test]
    fn vlan_tags_do_not_change_the_shard() {
        let plain = udp(5353);
        let tagged = frames::with_vlan_tags(&plain, &[(0x88a8, 100), (0x8100, 10)]);
        assert_eq!(flow(&plain), flow(&tagged));
    }

    #[test]
    fn fragments_and_other_frames_have_a_shard_without_ports() {
        let mut fragment = udp(5353);
        fragment[14 + 6] = 0x20; // more fragments
        let ends = flow(&fragment).expect("an IPv4 flow").ends;
        assert_eq!(ends, [(&A.octets()[..], 0), (&B.octets()[..], 0)]);
        assert_eq!(of(&[0u8; 10], 4), 0);
        let mut arp = udp(1);
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(of(&arp, 4), 0);
        assert_eq!(of(&udp(1), 1), 0);
    }
}
