//! Which interfaces to capture on, and what each one is (issue #30): the configured list, or the
//! node's capture points read from the kernel, re-read each second so that new pod veths are
//! picked up.
//!
//! A capture point is the host end of a pod's interface (a veth whose peer lives in another
//! network namespace, enslaved to a bridge as bridge CNIs do or reached by a host route as routed
//! CNIs such as ptp and Calico do) or one of the node's own interfaces (uplinks, tunnels). Bridges
//! are not captured: everything on them also crosses a pod end or an uplink, and a bridge in
//! promiscuous mode is where the copies of kubernetes/kubernetes#25793 come from. Names are not
//! looked at: CNIs name their veths as they like (`veth*`, `cali*`, `lxc*`).

use std::collections::{BTreeMap, HashSet};
use std::io;

use netlink_packet_core::{NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use netlink_packet_route::route::{RouteAttribute, RouteHeader, RouteMessage, RouteType};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

/// What a captured interface is to the pods, which decides the copy of a packet it keeps
/// (see `crate::points`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The host end of a pod's interface: a packet the kernel receives here leaves the pod, one it
    /// sends here enters the pod.
    PodEnd,
    /// Any other interface: the node's uplink, a tunnel.
    Node,
    /// An interface the user named: every packet on it is kept (copies on several of them are
    /// still deduplicated).
    Whole,
}

pub enum Selection {
    /// The user's list, each captured whole.
    Named(Vec<String>),
    /// Pod ends and the node's own interfaces, from the kernel.
    CapturePoints,
}

impl Selection {
    pub fn from_config(names: &[String]) -> Self {
        let names: Vec<String> = names
            .iter()
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty())
            .collect();
        if names.is_empty() {
            Self::CapturePoints
        } else {
            Self::Named(names)
        }
    }

    /// The interfaces to capture on now, with their roles.
    pub fn current(&self) -> io::Result<BTreeMap<String, Role>> {
        match self {
            Self::Named(names) => Ok(names.iter().map(|name| (name.clone(), Role::Whole)).collect()),
            Self::CapturePoints => Ok(capture_points(&links()?, &routes()?)),
        }
    }
}

/// What the kernel says about one interface, as far as the roles need it.
#[derive(Clone, Debug, Default)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub up: bool,
    pub loopback: bool,
    pub kind: Option<InfoKind>,
    /// The bridge (or bond) it is enslaved to.
    pub controller: Option<u32>,
    /// Set when the interface's peer lives in another network namespace.
    pub peer_namespace: Option<i32>,
}

/// The kernel's routes as the roles need them: per interface, whether it carries a route to a
/// single address (a routed CNI's route to its pod) or the default route.
#[derive(Clone, Debug, Default)]
pub struct Routes {
    pub host_routes: HashSet<u32>,
    pub default_routes: HashSet<u32>,
}

/// The roles of the node's interfaces: pure, so that every CNI shape is a unit test.
pub fn capture_points(links: &[Link], routes: &Routes) -> BTreeMap<String, Role> {
    let bridges: HashSet<u32> = links
        .iter()
        .filter(|link| link.kind == Some(InfoKind::Bridge))
        .map(|link| link.index)
        .collect();
    links
        .iter()
        .filter(|link| link.up && !link.loopback && link.kind != Some(InfoKind::Bridge))
        .map(|link| {
            let to_a_pod = link.controller.is_some_and(|controller| bridges.contains(&controller))
                || routes.host_routes.contains(&link.index);
            // A node in its own namespace can have a veth uplink; it carries the default route.
            let pod_end = link.peer_namespace.is_some() && to_a_pod && !routes.default_routes.contains(&link.index);
            let role = if pod_end { Role::PodEnd } else { Role::Node };
            (link.name.clone(), role)
        })
        .collect()
}

fn links() -> io::Result<Vec<Link>> {
    let messages = dump(RouteNetlinkMessage::GetLink(LinkMessage::default()))?;
    Ok(messages
        .into_iter()
        .filter_map(|message| match message {
            RouteNetlinkMessage::NewLink(link) => Some(link),
            _ => None,
        })
        .map(|message| {
            let mut link = Link {
                index: message.header.index,
                up: message.header.flags.contains(LinkFlags::Up),
                loopback: message.header.flags.contains(LinkFlags::Loopback),
                ..Link::default()
            };
            for attribute in message.attributes {
                match attribute {
                    LinkAttribute::IfName(name) => link.name = name,
                    LinkAttribute::Controller(index) => link.controller = Some(index),
                    LinkAttribute::LinkNetNsId(id) => link.peer_namespace = Some(id),
                    LinkAttribute::LinkInfo(infos) => {
                        link.kind = infos.into_iter().find_map(|info| match info {
                            LinkInfo::Kind(kind) => Some(kind),
                            _ => None,
                        });
                    }
                    _ => {}
                }
            }
            link
        })
        .collect())
}

fn routes() -> io::Result<Routes> {
    let mut routes = Routes::default();
    for message in dump(RouteNetlinkMessage::GetRoute(RouteMessage::default()))? {
        let RouteNetlinkMessage::NewRoute(route) = message else {
            continue;
        };
        if route.header.table != RouteHeader::RT_TABLE_MAIN || route.header.kind != RouteType::Unicast {
            continue;
        }
        let Some(interface) = route.attributes.iter().find_map(|attribute| match attribute {
            RouteAttribute::Oif(index) => Some(*index),
            _ => None,
        }) else {
            continue;
        };
        let single = match route.header.address_family {
            netlink_packet_route::AddressFamily::Inet => 32,
            _ => 128,
        };
        match route.header.destination_prefix_length {
            0 => routes.default_routes.insert(interface),
            length if length == single => routes.host_routes.insert(interface),
            _ => false,
        };
    }
    Ok(routes)
}

/// One rtnetlink dump request and every message of its answer.
fn dump(request: RouteNetlinkMessage) -> io::Result<Vec<RouteNetlinkMessage>> {
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    header.sequence_number = 1;
    let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(request));
    packet.finalize();
    let mut buffer = vec![0; packet.buffer_len()];
    packet.serialize(&mut buffer);
    socket.send(&buffer, 0)?;
    let mut messages = Vec::new();
    let mut received = Vec::with_capacity(1 << 16);
    loop {
        received.clear();
        let size = socket.recv(&mut received, 0)?;
        let mut offset = 0;
        while offset < size {
            let message = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&received[offset..size])
                .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error.to_string()))?;
            let length = message.header.length as usize;
            match message.payload {
                NetlinkPayload::Done(_) => return Ok(messages),
                NetlinkPayload::Error(error) => {
                    return Err(io::Error::other(format!("rtnetlink: {error:?}")));
                }
                NetlinkPayload::InnerMessage(inner) => messages.push(inner),
                _ => {}
            }
            if length == 0 {
                break;
            }
            offset += length;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(index: u32, name: &str, kind: Option<InfoKind>) -> Link {
        Link {
            index,
            name: name.into(),
            up: true,
            kind,
            ..Link::default()
        }
    }

    fn veth_to_pod(index: u32, name: &str) -> Link {
        Link {
            peer_namespace: Some(index as i32),
            ..link(index, name, Some(InfoKind::Veth))
        }
    }

    #[test]
    fn a_bridge_cnis_veths_are_pod_ends_and_the_bridge_is_not_captured() {
        let links = [
            Link {
                loopback: true,
                ..link(1, "lo", None)
            },
            link(2, "eth0", None),
            link(3, "cni0", Some(InfoKind::Bridge)),
            Link {
                controller: Some(3),
                ..veth_to_pod(4, "veth1a2b")
            },
            Link {
                controller: Some(3),
                ..veth_to_pod(5, "veth3c4d")
            },
            Link {
                up: false,
                ..veth_to_pod(6, "veth-down")
            },
        ];
        let routes = Routes {
            default_routes: HashSet::from([2]),
            ..Routes::default()
        };
        let points = capture_points(&links, &routes);
        assert_eq!(
            points.into_iter().collect::<Vec<_>>(),
            [
                ("eth0".to_owned(), Role::Node),
                ("veth1a2b".to_owned(), Role::PodEnd),
                ("veth3c4d".to_owned(), Role::PodEnd),
            ]
        );
    }

    #[test]
    fn a_routed_cnis_veths_are_pod_ends_whatever_their_names() {
        let links = [
            link(2, "ens5", None),
            veth_to_pod(7, "cali12ab"),
            link(8, "vxlan.calico", Some(InfoKind::Vxlan)),
            // A veth to another namespace that reaches no single pod (a tool's, not a CNI's).
            veth_to_pod(9, "odd"),
        ];
        let routes = Routes {
            host_routes: HashSet::from([7]),
            default_routes: HashSet::from([2]),
        };
        let points = capture_points(&links, &routes);
        assert_eq!(points["cali12ab"], Role::PodEnd);
        assert_eq!(points["vxlan.calico"], Role::Node);
        assert_eq!(points["odd"], Role::Node);
    }

    #[test]
    fn a_veth_uplink_of_a_node_in_its_own_namespace_is_the_node() {
        let links = [Link {
            controller: None,
            ..veth_to_pod(2, "uplink")
        }];
        let routes = Routes {
            host_routes: HashSet::from([2]),
            default_routes: HashSet::from([2]),
        };
        assert_eq!(capture_points(&links, &routes)["uplink"], Role::Node);
    }

    #[test]
    fn this_machines_interfaces_are_read_from_the_kernel() {
        let links = links().expect("rtnetlink answers without privileges");
        assert!(links.iter().any(|link| link.loopback && link.name == "lo"));
        routes().expect("routes too");
    }
}
