//! Which copy of a packet this node keeps (issue #30): one copy per packet in the whole session,
//! with the pods' own addresses (before a Service's DNAT and the node's SNAT), and both directions
//! of an exchange with the same addresses.
//!
//! A packet is kept where it leaves a pod; where it enters a pod only when its sender is not a
//! captured pod (whose own end kept it, on this node or another); on the node's own interfaces
//! only when neither end is a captured pod (host-network pods and the node itself). The captured
//! pods are the addresses the operator lists for the session on every node (its pods ConfigMap),
//! so that a packet between pods on two nodes is kept on the sender's node only.
//!
//! Exchanges with a Service whose every backend is captured are kept at the backend's end, in
//! both directions: the client's end sees the request go to the Service's address and the reply
//! come back from it, the backend's end sees both with the two pods' addresses (the client's
//! node translated them on the way). So a request to a backend's served port (through the
//! Service or straight) is kept where it enters the backend, not where it leaves its client, and
//! the reply, whose un-translated copy arrives at the client from the Service's address, was
//! kept where it left the backend. Without ports (a fragmented datagram) the first rule holds.
//!
//! What this cannot tell apart is left to `crate::dedup` (the same packet on two interfaces of
//! one node): a pod the list does not hold yet (its first second), and a user's own interface list.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::interfaces::Role;

/// What the session captures on every node, as the operator lists it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Captured {
    /// The captured pods' addresses.
    pub pods: HashSet<IpAddr>,
    /// The Services whose every backend is a captured pod: ClusterIP and port.
    pub services: HashSet<SocketAddr>,
    /// Those Services' ClusterIPs.
    pub service_addresses: HashSet<IpAddr>,
    /// Those Services' backends: a captured pod's address and a port it serves them on.
    pub backends: HashSet<SocketAddr>,
}

impl Captured {
    pub fn is_empty(&self) -> bool {
        self.pods.is_empty()
    }

    /// The lists as the operator writes them (one address, or `address:port` for backends, per
    /// line; `#` starts a comment).
    pub fn parse(pods: &str, services: &str, backends: &str) -> Result<Self, String> {
        let services = socket_addresses(services)?;
        Ok(Self {
            pods: crate::capture::parse_targets(pods)?.into_iter().collect(),
            service_addresses: services.iter().map(SocketAddr::ip).collect(),
            services,
            backends: socket_addresses(backends)?,
        })
    }

    fn captured_end(&self, address: &IpAddr) -> bool {
        self.pods.contains(address) || self.service_addresses.contains(address)
    }
}

fn socket_addresses(text: &str) -> Result<HashSet<SocketAddr>, String> {
    text.lines()
        .enumerate()
        .map(|(index, line)| (index + 1, line.split('#').next().unwrap_or("").trim()))
        .filter(|(_, line)| !line.is_empty())
        .map(|(number, line)| {
            line.parse()
                .map_err(|_| format!("line {number}: {line:?} is not address:port"))
        })
        .collect()
}

/// The session's [`Captured`] lists, swapped whole when the operator's change, read by the
/// capture threads at their next wake-up.
#[derive(Default)]
pub struct CapturedPods {
    generation: AtomicU64,
    captured: Mutex<Arc<Captured>>,
}

impl CapturedPods {
    pub fn publish(&self, captured: Captured) {
        *self.captured.lock().expect("not poisoned") = Arc::new(captured);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn current(&self) -> (u64, Arc<Captured>) {
        let captured = self.captured.lock().expect("not poisoned");
        (self.generation(), captured.clone())
    }
}

/// Whether the interface's copy of `frame` is the one the session keeps. `outgoing`: the kernel
/// sent the frame out of this interface (for a pod end: into the pod).
pub fn keeps(role: Role, outgoing: bool, frame: &[u8], captured: &Captured) -> bool {
    if role == Role::Whole || captured.is_empty() {
        return true;
    }
    let Some((source, destination, ports)) = ends(frame) else {
        // ARP and other link-local frames belong to the link they were seen on.
        return true;
    };
    let to =
        |set: &HashSet<SocketAddr>| ports.is_some_and(|(_, port)| set.contains(&SocketAddr::new(destination, port)));
    match role {
        Role::PodEnd if outgoing => to(&captured.backends) || !captured.captured_end(&source),
        Role::PodEnd => !to(&captured.backends) && !to(&captured.services),
        Role::Node => !captured.captured_end(&source) && !captured.captured_end(&destination),
        Role::Whole => true,
    }
}

/// Source, destination, and their ports where the transport has them.
type Ends = (IpAddr, IpAddr, Option<(u16, u16)>);

fn ends(frame: &[u8]) -> Option<Ends> {
    let ends = crate::shard::ends(frame)?;
    let address = |bytes: &[u8]| -> Option<IpAddr> {
        match bytes.len() {
            4 => Some(Ipv4Addr::from(<[u8; 4]>::try_from(bytes).ok()?).into()),
            16 => Some(Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?).into()),
            _ => None,
        }
    };
    Some((address(ends.source)?, address(ends.destination)?, ends.ports))
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
    /// A Service on port 80 whose one backend is B serving on 8080.
    const SERVICE: [u8; 4] = [10, 96, 0, 10];

    fn packet(from: [u8; 4], to: [u8; 4]) -> Vec<u8> {
        frames::udp_between(CLIENT, SERVER, from.into(), to.into(), 53, b"x")
    }

    fn tcp(from: ([u8; 4], u16), to: ([u8; 4], u16)) -> Vec<u8> {
        frames::tcp_ports(CLIENT, SERVER, (from.0.into(), from.1), (to.0.into(), to.1), 0x18, b"x")
    }

    fn pods() -> Captured {
        Captured::parse("10.244.0.5\n10.244.1.7\n", "", "").unwrap()
    }

    fn with_service() -> Captured {
        Captured::parse("10.244.0.5\n10.244.1.7\n", "10.96.0.10:80\n", "10.244.1.7:8080 # B\n").unwrap()
    }

    /// Where the session keeps `frame` on its way from one pod end to another: (leaving its
    /// sender, entering its receiver).
    fn kept_at(frame: &[u8], captured: &Captured) -> (bool, bool) {
        (
            keeps(Role::PodEnd, false, frame, captured),
            keeps(Role::PodEnd, true, frame, captured),
        )
    }

    #[test]
    fn a_packet_between_pods_is_kept_where_it_leaves_its_sender() {
        let frame = packet(POD_A, POD_B);
        assert_eq!(kept_at(&frame, &pods()), (true, false));
        assert!(!keeps(Role::Node, true, &frame, &pods()), "on an uplink");
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
    fn both_directions_through_a_service_are_kept_at_its_backend_with_the_pods_addresses() {
        let captured = with_service();
        // A's request leaves A for the Service's address; A's node sends it on to B:8080.
        let request = tcp((POD_A, 40000), (SERVICE, 80));
        let translated_request = tcp((POD_A, 40000), (POD_B, 8080));
        assert!(!kept_at(&request, &captured).0, "leaving A for the Service");
        assert!(kept_at(&translated_request, &captured).1, "entering B");
        assert!(
            !keeps(Role::Node, false, &translated_request, &captured),
            "on an uplink"
        );
        // B's reply leaves B for A; A's node gives it the Service's address back.
        let reply = tcp((POD_B, 8080), (POD_A, 40000));
        let translated_reply = tcp((SERVICE, 80), (POD_A, 40000));
        assert!(kept_at(&reply, &captured).0, "leaving B");
        assert!(!kept_at(&translated_reply, &captured).1, "entering A from the Service");
    }

    #[test]
    fn a_request_straight_to_a_backends_port_is_kept_where_it_enters_the_backend() {
        let captured = with_service();
        assert_eq!(kept_at(&tcp((POD_A, 40000), (POD_B, 8080)), &captured), (false, true));
        assert_eq!(kept_at(&tcp((POD_B, 8080), (POD_A, 40000)), &captured), (true, false));
        // Another port of B's is an exchange like any other.
        assert_eq!(kept_at(&tcp((POD_A, 40000), (POD_B, 9090)), &captured), (true, false));
        // A port the Service does not expose reaches no backend: A's end keeps it.
        assert!(kept_at(&tcp((POD_A, 40000), (SERVICE, 443)), &captured).0);
    }

    #[test]
    fn a_fragmented_request_to_a_service_is_kept_where_it_leaves_its_client() {
        let mut fragment = tcp((POD_A, 40000), (SERVICE, 80));
        fragment[14 + 6] = 0x20; // more fragments
        assert!(kept_at(&fragment, &with_service()).0);
    }

    #[test]
    fn without_a_list_or_with_named_interfaces_every_copy_goes_on_to_deduplication() {
        let frame = packet(POD_A, POD_B);
        let none = Captured::default();
        assert!(keeps(Role::PodEnd, true, &frame, &none));
        assert!(keeps(Role::Node, true, &frame, &none));
        assert!(keeps(Role::Whole, true, &frame, &pods()));
        let arp = [&[0xffu8; 6][..], &[2u8; 6], &[0x08, 0x06], &[0u8; 28]].concat();
        assert!(keeps(Role::Node, true, &arp, &pods()));
        assert!(keeps(Role::PodEnd, true, &arp[..16], &pods()), "truncated");
    }

    #[test]
    fn lists_that_do_not_parse_say_which_line() {
        let error = Captured::parse("10.244.0.5\n", "10.96.0.10\n", "").unwrap_err();
        assert!(error.contains("line 1"), "{error}");
        assert!(Captured::parse("10.244.0.5\n", "", "[fd00::7]:8080\n").is_ok());
    }
}
