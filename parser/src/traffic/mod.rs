//! Traffic as Prometheus metrics (issue #33): per session and edge, the packets, bytes, TCP
//! connections by outcome, retransmissions, zero windows, DNS exchanges and answered requests of
//! what this parser stored. Counted after a group's transaction commits, from its packets and
//! events, so a retried transaction counts once and a redelivered batch not at all; sharded
//! parsers each count their flows, so sums over replicas are the session's.

pub mod classes;
pub mod config;
pub mod connections;
pub mod directory;
pub mod families;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Mutex;

use config::TrafficConfig;
use connections::{Connections, Segment};
use directory::{Directory, End};
use families::{DnsQuery, DnsResponse, Edge, EdgeOutcome, EdgeProtocol, Families, Request, SessionLabel};

use crate::events::Events;
use crate::packet_rows::PacketRows;

/// What names the edge that edges past the bound fold into.
pub const OTHER: &str = "other";
/// Folded edges remembered (to count each once); past it further ones are not counted.
const MAX_FOLDED_REMEMBERED: usize = 1 << 16;

pub struct Traffic {
    session: String,
    config: TrafficConfig,
    directory: Directory,
    families: Families,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    connections: Connections,
    kept: HashSet<(End, End)>,
    folded: HashSet<(End, End)>,
}

/// One group's sums per address pair (source, destination), before naming.
#[derive(Default)]
struct Tally {
    /// The pair's place in the group, so that edges claim the bound in the order they appear.
    first: usize,
    packets: u64,
    bytes: u64,
    retransmissions: u64,
    zero_windows: u64,
    opened: u64,
}

impl Traffic {
    pub fn new(session: &str, config: TrafficConfig, families: Families) -> Self {
        Self {
            session: session.to_owned(),
            config,
            directory: Directory::default(),
            families,
            state: Mutex::new(State::default()),
        }
    }

    /// Counts a committed group: its new batches' packets and the events they made.
    pub fn observe<'r, 'b: 'r, 'a: 'b>(&self, rows: impl IntoIterator<Item = &'r PacketRows<'b, 'a>>, events: &Events) {
        let mut state = self.state.lock().expect("not poisoned");
        let mut tallies: HashMap<(IpAddr, IpAddr), Tally> = HashMap::new();
        let mut ended = Vec::new();
        for (packet, d) in rows.into_iter().flat_map(PacketRows::packets) {
            let (Some(src), Some(dst)) = (d.src, d.dst) else {
                continue;
            };
            let mut observed = None;
            if let (Some(6), Some(src_port), Some(dst_port), Some(flags), Some(seq)) =
                (d.ip_protocol, d.src_port, d.dst_port, d.tcp_flags, d.tcp_seq)
            {
                observed = Some(state.connections.add(
                    Segment {
                        from: (src, src_port),
                        to: (dst, dst_port),
                        flags,
                        seq,
                        len: d.tcp_len.unwrap_or(0),
                        window: d.tcp_window.unwrap_or(1),
                        ts_ns: packet.ts_ns,
                    },
                    &mut ended,
                ));
            }
            let next = tallies.len();
            let tally = tallies.entry((src, dst)).or_insert_with(|| Tally {
                first: next,
                ..Tally::default()
            });
            tally.packets += 1;
            tally.bytes += u64::from(packet.original_len);
            if let Some(observed) = observed {
                tally.retransmissions += u64::from(observed.retransmission);
                tally.zero_windows += u64::from(observed.zero_window);
                tally.opened += u64::from(observed.opened.is_some());
            }
        }
        let mut names = Names {
            traffic: self,
            state: &mut state,
            cache: HashMap::new(),
        };
        let mut tallies: Vec<_> = tallies.into_iter().collect();
        tallies.sort_unstable_by_key(|(_, tally)| tally.first);
        for ((src, dst), tally) in tallies {
            let edge = names.edge(src, dst);
            let f = &self.families;
            f.add(&f.packets, edge.clone(), tally.packets);
            f.add(&f.bytes, edge.clone(), tally.bytes);
            if tally.retransmissions > 0 {
                f.add(&f.retransmissions, edge.clone(), tally.retransmissions);
            }
            if tally.zero_windows > 0 {
                f.add(&f.zero_windows, edge.clone(), tally.zero_windows);
            }
            if tally.opened > 0 {
                f.add(&f.connections_opened, edge, tally.opened);
            }
        }
        for (client, server, outcome) in ended {
            let edge = names.edge(client.0, server.0);
            let f = &self.families;
            f.add(
                &f.connections_closed,
                EdgeOutcome {
                    edge,
                    outcome: outcome.as_str(),
                },
                1,
            );
        }
        names.events(events);
        let kept = names.state.kept.len() as i64;
        self.families.edges.get_or_create(&self.session_label()).set(kept);
    }

    /// Reads the endpoint history again (see [`Directory::refresh`]).
    pub async fn refresh_names(&self, pool: &sqlx::PgPool) -> Result<(), sqlx::Error> {
        let named = self.directory.refresh(pool).await?;
        self.families
            .addresses_named
            .get_or_create(&self.session_label())
            .set(named as i64);
        Ok(())
    }

    fn session_label(&self) -> SessionLabel {
        SessionLabel {
            session: self.session.clone(),
        }
    }
}

/// Names address pairs as edges for one group, each pair once.
struct Names<'t, 's> {
    traffic: &'t Traffic,
    state: &'s mut State,
    cache: HashMap<(IpAddr, IpAddr), Edge>,
}

impl Names<'_, '_> {
    fn edge(&mut self, src: IpAddr, dst: IpAddr) -> Edge {
        if let Some(edge) = self.cache.get(&(src, dst)) {
            return edge.clone();
        }
        let traffic = self.traffic;
        let directory = &traffic.directory;
        let source = End::of(directory.holder(src).as_ref(), traffic.config.source);
        let destination = End::of(directory.holder(dst).as_ref(), traffic.config.destination);
        let pair = (source, destination);
        let (source, destination) = if self.state.kept.contains(&pair) {
            pair
        } else if self.state.kept.len() < traffic.config.max_edges {
            self.state.kept.insert(pair.clone());
            pair
        } else {
            if self.state.folded.len() < MAX_FOLDED_REMEMBERED && self.state.folded.insert(pair) {
                let f = &traffic.families;
                f.add(&f.edges_folded, traffic.session_label(), 1);
            }
            let other = || End {
                namespace: String::new(),
                name: OTHER.to_owned(),
            };
            (other(), other())
        };
        let edge = Edge {
            session: traffic.session.clone(),
            source_namespace: source.namespace,
            source: source.name,
            destination_namespace: destination.namespace,
            destination: destination.name,
        };
        self.cache.insert((src, dst), edge.clone());
        edge
    }

    /// DNS exchanges and answered requests, each edge from the client to the server.
    fn events(&mut self, events: &Events) {
        let f = self.traffic.families.clone();
        for event in &events.dns {
            let edge = self.edge(event.endpoints.client, event.endpoints.server);
            let query_type = classes::query_type(event.query_type.as_deref());
            let asked = event.answer.as_ref().is_none_or(|answer| answer.rtt_ms.is_some());
            if asked {
                let query = DnsQuery {
                    edge: edge.clone(),
                    query_type,
                };
                f.add(&f.dns_queries, query, 1);
            }
            if let Some(answer) = &event.answer {
                Self::dns_answer(&f, edge, query_type, &answer.rcode, answer.rtt_ms);
            }
        }
        for late in &events.late_dns {
            let edge = self.edge(late.endpoints.client, late.endpoints.server);
            let query_type = classes::query_type(late.asked.as_deref());
            Self::dns_answer(&f, edge, query_type, &late.answer.rcode, late.answer.rtt_ms);
        }
        for event in &events.http {
            if let Some(answer) = &event.answer {
                let edge = self.edge(event.endpoints.client, event.endpoints.server);
                Self::request(
                    &f,
                    edge,
                    "http",
                    event.method.as_deref(),
                    answer.status,
                    answer.latency_ms,
                );
            }
        }
        for event in &events.http2.events {
            let edge = self.edge(event.endpoints.client, event.endpoints.server);
            Self::http2_exchange(&f, edge, event.method.as_deref(), &event.parts);
        }
        for late in &events.http2.late {
            let edge = self.edge(late.endpoints.client, late.endpoints.server);
            Self::http2_exchange(&f, edge, late.asked.as_deref(), &late.answer);
        }
        for late in &events.late_http {
            let edge = self.edge(late.endpoints.client, late.endpoints.server);
            Self::request(
                &f,
                edge,
                "http",
                late.asked.as_deref(),
                late.answer.status,
                late.answer.latency_ms,
            );
        }
    }

    fn dns_answer(f: &Families, edge: Edge, query_type: &'static str, rcode: &str, rtt_ms: Option<f64>) {
        if let Some(rtt_ms) = rtt_ms {
            f.observe(&f.dns_response_time, edge.clone(), rtt_ms / 1e3);
        }
        let response = DnsResponse {
            edge,
            query_type,
            rcode: classes::response_code(rcode),
        };
        f.add(&f.dns_responses, response, 1);
    }

    /// An HTTP/2 exchange counts once: when its response's status is seen, or for a gRPC call
    /// when its `grpc-status` is (the trailers; its HTTP status is 200 whatever the call's
    /// outcome), classed as the service map classes it. Its latency is the response headers'.
    fn http2_exchange(f: &Families, edge: Edge, method: Option<&str>, parts: &crate::events::Http2Parts) {
        let grpc = parts.grpc || parts.grpc_status.is_some();
        let protocol = if grpc { "grpc" } else { "http2" };
        if let Some(latency_ms) = parts.latency_ms {
            let labels = EdgeProtocol {
                edge: edge.clone(),
                protocol,
            };
            f.observe(&f.request_duration, labels, latency_ms / 1e3);
        }
        let status_class = match (parts.grpc_status, parts.status) {
            (Some(code), _) => classes::grpc_status(code),
            (None, Some(status)) if !grpc => classes::status(status),
            _ => return,
        };
        let request = Request {
            edge,
            protocol,
            method: classes::method(method),
            status_class,
        };
        f.add(&f.requests, request, 1);
    }

    fn request(
        f: &Families,
        edge: Edge,
        protocol: &'static str,
        method: Option<&str>,
        status: u16,
        latency_ms: Option<f64>,
    ) {
        if let Some(latency_ms) = latency_ms {
            let labels = EdgeProtocol {
                edge: edge.clone(),
                protocol,
            };
            f.observe(&f.request_duration, labels, latency_ms / 1e3);
        }
        let request = Request {
            edge,
            protocol,
            method: classes::method(method),
            status_class: classes::status(status),
        };
        f.add(&f.requests, request, 1);
    }
}

#[cfg(test)]
mod tests;
