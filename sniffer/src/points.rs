//! Which copy of a packet this node keeps (issue #30): one copy per packet in the whole session,
//! with the pods' own addresses (before a Service's DNAT and the node's SNAT).
//!
//! A packet is kept where it leaves a pod; where it enters a pod only when its sender is not a
//! captured pod (whose own end kept it, on this node or another); on the node's own interfaces
//! only when neither end is a captured pod (host-network pods and the node itself). The captured
//! pods are the addresses the operator lists for the session on every node (its pods ConfigMap),
//! so that a packet between pods on two nodes is kept on the sender's node only.
//!
//! What this cannot tell apart is left to `crate::dedup` (the same packet on two interfaces of
//! one node): a pod the list does not hold yet (its first second), and a user's own interface list.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::interfaces::Role;

/// The addresses of the pods the session captures, on every node; swapped whole when the
/// operator's list changes, read by the capture threads at their next wake-up.
#[derive(Default)]
pub struct CapturedPods {
    generation: AtomicU64,
    addresses: Mutex<Arc<HashSet<IpAddr>>>,
}

impl CapturedPods {
    pub fn publish(&self, addresses: HashSet<IpAddr>) {
        *self.addresses.lock().expect("not poisoned") = Arc::new(addresses);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn current(&self) -> (u64, Arc<HashSet<IpAddr>>) {
        let addresses = self.addresses.lock().expect("not poisoned");
        (self.generation(), addresses.clone())
    }
}

/// Whether the interface's copy of `frame` is the one the session keeps. `outgoing`: the kernel
/// sent the frame out of this interface (for a pod end: into the pod).
pub fn keeps(role: Role, outgoing: bool, frame: &[u8], pods: &HashSet<IpAddr>) -> bool {
    if role == Role::Whole || pods.is_empty() {
        return true;
    }
    let Some((source, destination)) = addresses(frame) else {
        // ARP and other link-local frames belong to the link they were seen on.
        return true;
    };
    match role {
        Role::PodEnd if outgoing => !pods.contains(&source),
        Role::PodEnd => true,
        Role::Node => !pods.contains(&source) && !pods.contains(&destination),
        Role::Whole => true,
    }
}

fn addresses(frame: &[u8]) -> Option<(IpAddr, IpAddr)> {
    match crate::shard::network_layer(frame)? {
        (0x0800, ip) => {
            let at = |from: usize| -> Option<IpAddr> {
                let octets: [u8; 4] = ip.get(from..from + 4)?.try_into().ok()?;
                Some(Ipv4Addr::from(octets).into())
            };
            Some((at(12)?, at(16)?))
        }
        (0x86dd, ip) => {
            let at = |from: usize| -> Option<IpAddr> {
                let octets: [u8; 16] = ip.get(from..from + 16)?.try_into().ok()?;
                Some(Ipv6Addr::from(octets).into())
            };
            Some((at(8)?, at(24)?))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use testkit::batches::{CLIENT, SERVER};
    use testkit::frames;

    const POD_A: [u8; 4] = [10, 244, 0, 5];
    const POD_B: [u8; 4] = [10, 244, 1, 7];
    const OUTSIDE: [u8; 4] = [192, 0, 2, 1];
    const NODE: [u8; 4] = [10, 245, 0, 2];

    fn packet(from: [u8; 4], to: [u8; 4]) -> Vec<u8> {
        frames::udp_between(CLIENT, SERVER, from.into(), to.into(), 53, b"x")
    }

    fn pods() -> HashSet<IpAddr> {
        HashSet::from([IpAddr::from(POD_A), IpAddr::from(POD_B)])
    }

    #[test]
    fn a_packet_between_pods_is_kept_where_it_leaves_its_sender() {
        let frame = packet(POD_A, POD_B);
        assert!(keeps(Role::PodEnd, false, &frame, &pods()), "leaving A");
        assert!(!keeps(Role::Node, true, &frame, &pods()), "on an uplink");
        assert!(!keeps(Role::PodEnd, true, &frame, &pods()), "entering B");
    }

    #[test]
    fn a_packet_from_outside_the_captured_pods_is_kept_where_it_enters_one() {
        for sender in [OUTSIDE, NODE] {
            let frame = packet(sender, POD_A);
            assert!(!keeps(Role::Node, false, &frame, &pods()), "on the uplink");
            assert!(keeps(Role::PodEnd, true, &frame, &pods()), "entering A");
        }
    }

    #[test]
    fn the_nodes_own_traffic_is_kept_on_the_nodes_interfaces() {
        assert!(keeps(Role::Node, true, &packet(NODE, OUTSIDE), &pods()));
        assert!(keeps(Role::Node, false, &packet(OUTSIDE, NODE), &pods()));
    }

    #[test]
    fn without_a_list_or_with_named_interfaces_every_copy_goes_on_to_deduplication() {
        let frame = packet(POD_A, POD_B);
        assert!(keeps(Role::PodEnd, true, &frame, &HashSet::new()));
        assert!(keeps(Role::Node, true, &frame, &HashSet::new()));
        assert!(keeps(Role::Whole, true, &frame, &pods()));
        let arp = [&[0xffu8; 6][..], &[2u8; 6], &[0x08, 0x06], &[0u8; 28]].concat();
        assert!(keeps(Role::Node, true, &arp, &pods()));
        assert!(keeps(Role::PodEnd, true, &arp[..16], &pods()), "truncated");
    }
}
