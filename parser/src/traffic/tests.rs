use std::net::{IpAddr, Ipv4Addr};

use testkit::batches::{CLIENT, SERVER, batch_of, origin};
use testkit::frames;

use super::config::EdgeContext;
use super::directory::Holder;
use super::*;
use crate::events::Pending;
use crate::streams::Streams;

const WEB: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 10);
const API: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 20);
const DNS: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);

fn pod(namespace: &str, name: &str, workload: &str) -> Holder {
    Holder {
        kind: "pod".into(),
        namespace: Some(namespace.into()),
        name: name.into(),
        workload: Some(workload.into()),
    }
}

fn traffic(config: TrafficConfig) -> Traffic {
    let traffic = Traffic::new("shop/capture", config, Families::default());
    traffic.directory.insert(IpAddr::V4(WEB), pod("shop", "web-1", "web"));
    traffic.directory.insert(IpAddr::V4(API), pod("shop", "api-1", "api"));
    traffic
}

/// Frames stored as one committed group: dissected, their flows and events made as the store does.
fn observe(traffic: &Traffic, frames: Vec<Vec<u8>>) {
    let wire = batch_of(
        &origin("shop/capture", "node-1"),
        0,
        0,
        &wire::Counters::default(),
        frames
            .into_iter()
            .enumerate()
            .map(|(i, frame)| (i as u64, 1_000_000 * (i as u64 + 1), frame)),
    );
    let batch = wire::Batch::decode(&wire).unwrap();
    let mut rows = PacketRows::new(&batch, false);
    for packet in batch.packets() {
        rows.push(&packet, dissect::summarize(packet.data));
    }
    let (mut events, pending, mut streams) = (Events::default(), Pending::default(), Streams::default());
    let mut flows = crate::flows::FlowTable::default();
    rows.add_events(&mut events, &pending, &mut streams, &mut flows);
    traffic.observe([&rows], &events);
    // As a scrape would: new series count from here.
    traffic.families.apply_deferred();
}

fn edge(source: &str, destination: &str) -> Edge {
    Edge {
        session: "shop/capture".into(),
        source_namespace: if source == "external" || source == OTHER {
            ""
        } else {
            "shop"
        }
        .into(),
        source: source.into(),
        destination_namespace: if destination == "external" || destination == OTHER {
            ""
        } else {
            "shop"
        }
        .into(),
        destination: destination.into(),
    }
}

fn tcp(from: (Ipv4Addr, u16), to: (Ipv4Addr, u16), flags: u8, seq: u32, payload: &[u8]) -> Vec<u8> {
    frames::tcp_segment(CLIENT, SERVER, from, to, flags, seq, payload)
}

#[test]
fn an_http_exchange_counts_packets_bytes_a_connection_and_a_request_per_edge() {
    let traffic = traffic(TrafficConfig::default());
    let (client, server) = ((WEB, 40000), (API, 8080));
    let request = frames::http_get("api", "/orders");
    let response = frames::http_response(503);
    let packets = vec![
        tcp(client, server, 0x02, 100, b""),
        tcp(server, client, 0x12, 900, b""),
        tcp(client, server, 0x10, 101, b""),
        tcp(client, server, 0x18, 101, &request),
        tcp(server, client, 0x18, 901, &response),
        tcp(client, server, 0x11, 101 + request.len() as u32, b""),
        tcp(server, client, 0x11, 901 + response.len() as u32, b""),
    ];
    let client_bytes: u64 = [0, 2, 3, 5].iter().map(|&i| packets[i].len() as u64).sum();
    observe(&traffic, packets);
    let f = &traffic.families;
    let forward = edge("web", "api");
    assert_eq!(f.packets.get_or_create(&forward).get(), 4);
    assert_eq!(f.bytes.get_or_create(&forward).get(), client_bytes);
    assert_eq!(f.packets.get_or_create(&edge("api", "web")).get(), 3);
    assert_eq!(f.connections_opened.get_or_create(&forward).get(), 1);
    let closed = |outcome| {
        f.connections_closed
            .get_or_create(&EdgeOutcome {
                edge: forward.clone(),
                outcome,
            })
            .get()
    };
    assert_eq!(closed("established"), 1);
    let requests = f
        .requests
        .get_or_create(&Request {
            edge: forward.clone(),
            protocol: "http",
            method: "GET",
            status_class: "5xx",
        })
        .get();
    assert_eq!(requests, 1);
    assert_eq!(f.retransmissions.get_or_create(&forward).get(), 0);
}

#[test]
fn dns_answers_count_by_response_code_and_unknown_addresses_are_external() {
    let traffic = traffic(TrafficConfig::default());
    let query = frames::udp_ports(
        CLIENT,
        SERVER,
        (WEB, 5353),
        (DNS, 53),
        &frames::dns_query(7, "db.example"),
    );
    let answer = frames::udp_ports(
        CLIENT,
        SERVER,
        (DNS, 53),
        (WEB, 5353),
        &frames::dns_response(7, "db.example", None),
    );
    observe(&traffic, vec![query, answer]);
    let f = &traffic.families;
    let to_dns = edge("web", "external");
    assert_eq!(
        f.dns_queries
            .get_or_create(&DnsQuery {
                edge: to_dns.clone(),
                query_type: "A"
            })
            .get(),
        1
    );
    assert_eq!(
        f.dns_responses
            .get_or_create(&DnsResponse {
                edge: to_dns,
                query_type: "A",
                rcode: "NXDOMAIN"
            })
            .get(),
        1
    );
}

#[test]
fn edges_past_the_bound_fold_into_other_and_are_counted_once() {
    let traffic = traffic(TrafficConfig {
        max_edges: 1,
        ..TrafficConfig::default()
    });
    let udp = |from, to| frames::udp_ports(CLIENT, SERVER, (from, 4000), (to, 9), b"x");
    observe(
        &traffic,
        vec![udp(WEB, API), udp(API, WEB), udp(API, WEB), udp(DNS, WEB)],
    );
    let f = &traffic.families;
    assert_eq!(f.packets.get_or_create(&edge("web", "api")).get(), 1);
    assert_eq!(f.packets.get_or_create(&edge(OTHER, OTHER)).get(), 3);
    let session = SessionLabel {
        session: "shop/capture".into(),
    };
    assert_eq!(f.edges_folded.get_or_create(&session).get(), 2);
    assert_eq!(f.edges.get_or_create(&session).get(), 1);
}

#[test]
fn a_new_series_is_scraped_at_zero_before_it_counts() {
    let families = Families::default();
    let edge = edge("web", "api");
    families.add(&families.packets, edge.clone(), 5);
    families.add(&families.packets, edge.clone(), 2);
    assert_eq!(families.packets.get_or_create(&edge).get(), 0, "scraped at zero first");
    families.apply_deferred();
    assert_eq!(families.packets.get_or_create(&edge).get(), 7);
    families.add(&families.packets, edge.clone(), 1);
    assert_eq!(families.packets.get_or_create(&edge).get(), 8, "then counted at once");
}

#[test]
fn the_namespace_context_names_ends_by_namespace_only() {
    let traffic = traffic(TrafficConfig {
        source: EdgeContext::Namespace,
        destination: EdgeContext::None,
        ..TrafficConfig::default()
    });
    observe(
        &traffic,
        vec![frames::udp_ports(CLIENT, SERVER, (WEB, 4000), (API, 9), b"x")],
    );
    let by_namespace = Edge {
        session: "shop/capture".into(),
        source_namespace: "shop".into(),
        source: String::new(),
        destination_namespace: String::new(),
        destination: String::new(),
    };
    assert_eq!(traffic.families.packets.get_or_create(&by_namespace).get(), 1);
}

#[test]
fn a_grpc_call_counts_once_by_its_grpc_status_not_its_http_status() {
    for (grpc_status, class) in [(0, "2xx"), (5, "4xx"), (14, "5xx")] {
        let traffic = traffic(TrafficConfig::default());
        let (client, server) = ((WEB, 40000), (API, 50051));
        let (request, response) = frames::grpc_call("/shop.Orders/Get", grpc_status);
        observe(
            &traffic,
            vec![
                tcp(client, server, 0x02, 100, b""),
                tcp(server, client, 0x12, 900, b""),
                tcp(client, server, 0x18, 101, &request),
                tcp(server, client, 0x18, 901, &response),
            ],
        );
        let f = &traffic.families;
        let count = |status_class| {
            f.requests
                .get_or_create(&Request {
                    edge: edge("web", "api"),
                    protocol: "grpc",
                    method: "POST",
                    status_class,
                })
                .get()
        };
        let counts: Vec<u64> = ["2xx", "4xx", "5xx"].map(count).to_vec();
        let expected: Vec<u64> = ["2xx", "4xx", "5xx"].map(|c| u64::from(c == class)).to_vec();
        assert_eq!(counts, expected, "grpc-status {grpc_status} counts once as {class}");
    }
}
