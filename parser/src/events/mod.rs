//! L7 events from dissected packets: one per DNS transaction, HTTP request (with its response; an
//! HTTP/2 or gRPC stream is one, see [`http2`]) and TLS ClientHello, as Zeek's dns.log, http.log and ssl.log.
//!
//! Responses are paired with requests in packet order: within the batches stored together
//! directly, and with requests stored by earlier transactions through [`Pending`], which keeps
//! unanswered requests' row ids for [`PENDING_FOR_NS`]. Pending state changes only once the
//! transaction committed ([`Pending::apply`]), so a retried transaction pairs the same way.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;

use dissect::{Dissection, L7};

/// How long an unanswered request waits for its response across transactions.
pub const PENDING_FOR_NS: u64 = 30_000_000_000;

mod http2;
pub use http2::{Http2Event, Http2Parts};
/// The most unanswered requests remembered per protocol; the oldest go first.
const PENDING_MAX: usize = 65_536;

/// Client and server endpoints of an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Endpoints {
    pub client: IpAddr,
    pub client_port: u16,
    pub server: IpAddr,
    pub server_port: u16,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DnsEvent {
    pub ts_ns: u64,
    pub transport: &'static str,
    pub endpoints: Endpoints,
    pub transaction: u16,
    pub query: Option<String>,
    pub query_type: Option<String>,
    pub answer: Option<DnsAnswer>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DnsAnswer {
    pub rcode: String,
    pub answers: Vec<String>,
    pub rtt_ms: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HttpEvent {
    pub ts_ns: u64,
    pub transport: &'static str,
    pub endpoints: Endpoints,
    pub method: Option<String>,
    pub host: Option<String>,
    pub path: Option<String>,
    pub user_agent: Option<String>,
    pub answer: Option<HttpAnswer>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HttpAnswer {
    pub status: u16,
    pub latency_ms: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TlsEvent {
    pub ts_ns: u64,
    /// `tcp`, or `quic` for a ClientHello read from a QUIC Initial.
    pub transport: &'static str,
    pub endpoints: Endpoints,
    pub sni: Option<String>,
    pub alpn: Vec<String>,
    pub version: Option<String>,
    pub ja4: Option<String>,
}

/// A response to a request stored by an earlier transaction: its row gets the answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Late<A> {
    pub id: i64,
    pub request_ns: u64,
    pub answer: A,
    /// The exchange's ends, and what was asked: the DNS query type or the HTTP method (for the
    /// traffic metrics, which count the exchange when it is answered).
    pub endpoints: Endpoints,
    pub asked: Option<String>,
}

type DnsKey = (Endpoints, u16);

/// Requests stored by earlier transactions and not answered yet: row id and time.
#[derive(Debug, Default)]
pub struct Pending {
    dns: HashMap<DnsKey, (i64, u64)>,
    /// Row id, time and method of each unanswered request, oldest first.
    http: HashMap<Endpoints, VecDeque<(i64, u64, Option<String>)>>,
    http_count: usize,
    http2: http2::PendingHttp2,
}

/// The events of a group of batches, ready to be written.
#[derive(Debug, Default)]
pub struct Events {
    pub dns: Vec<DnsEvent>,
    pub http: Vec<HttpEvent>,
    pub tls: Vec<TlsEvent>,
    pub late_dns: Vec<Late<DnsAnswer>>,
    pub late_http: Vec<Late<HttpAnswer>>,
    pub http2: http2::GroupHttp2,
    /// Requests of this group still open, by index into `dns` / `http`.
    open_dns: HashMap<DnsKey, usize>,
    open_http: HashMap<Endpoints, VecDeque<usize>>,
    /// Pending entries this group answered (DNS keys; HTTP answers per flow, oldest first).
    used_dns: HashSet<DnsKey>,
    used_http: HashMap<Endpoints, usize>,
}

fn milliseconds(from_ns: u64, to_ns: u64) -> Option<f64> {
    (to_ns >= from_ns).then(|| (to_ns - from_ns) as f64 / 1e6)
}

/// Who sent a message to whom, and over which transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sent {
    pub from: (IpAddr, u16),
    pub to: (IpAddr, u16),
    pub tcp: bool,
}

impl Sent {
    pub fn of(d: &Dissection) -> Option<Self> {
        Some(Self {
            from: (d.src?, d.src_port?),
            to: (d.dst?, d.dst_port?),
            tcp: d.ip_protocol == Some(6),
        })
    }
}

impl Events {
    /// Adds one packet's L7 message, in capture order.
    pub fn add(&mut self, d: &Dissection, ts_ns: u64, pending: &Pending) {
        if let (Some(sent), Some(l7)) = (Sent::of(d), d.l7.as_ref()) {
            self.add_message(sent, l7, ts_ns, pending);
        }
    }

    /// Adds one L7 message (of a packet, or reassembled from a TCP stream), in capture order.
    pub fn add_message(&mut self, sent: Sent, l7: &L7, ts_ns: u64, pending: &Pending) {
        let ((src, src_port), (dst, dst_port)) = (sent.from, sent.to);
        let transport = if sent.tcp { "tcp" } else { "udp" };
        let forward = Endpoints {
            client: src,
            client_port: src_port,
            server: dst,
            server_port: dst_port,
        };
        let backward = Endpoints {
            client: dst,
            client_port: dst_port,
            server: src,
            server_port: src_port,
        };
        match l7 {
            L7::Dns {
                id,
                response: false,
                queries,
                query_types,
                ..
            } => {
                self.open_dns.insert((forward, *id), self.dns.len());
                self.dns.push(DnsEvent {
                    ts_ns,
                    transport,
                    endpoints: forward,
                    transaction: *id,
                    query: queries.first().cloned(),
                    query_type: query_types.first().cloned(),
                    answer: None,
                });
            }
            L7::Dns {
                id,
                response: true,
                rcode,
                queries,
                query_types,
                answers,
            } => {
                let key = (backward, *id);
                let answer = |request_ns: Option<u64>| DnsAnswer {
                    rcode: rcode.clone(),
                    answers: answers.clone(),
                    rtt_ms: request_ns.and_then(|at| milliseconds(at, ts_ns)),
                };
                if let Some(index) = self.open_dns.remove(&key) {
                    let request_ns = self.dns[index].ts_ns;
                    self.dns[index].answer = Some(answer(Some(request_ns)));
                } else if let Some(&(id, request_ns)) = pending.dns.get(&key).filter(|_| !self.used_dns.contains(&key))
                {
                    self.used_dns.insert(key);
                    self.late_dns.push(Late {
                        id,
                        request_ns,
                        answer: answer(Some(request_ns)),
                        endpoints: backward,
                        asked: query_types.first().cloned(),
                    });
                } else {
                    self.dns.push(DnsEvent {
                        ts_ns,
                        transport,
                        endpoints: backward,
                        transaction: *id,
                        query: queries.first().cloned(),
                        query_type: query_types.first().cloned(),
                        answer: Some(answer(None)),
                    });
                }
            }
            L7::Http {
                method: Some(method),
                host,
                path,
                user_agent,
                ..
            } => {
                self.open_http.entry(forward).or_default().push_back(self.http.len());
                self.http.push(HttpEvent {
                    ts_ns,
                    transport,
                    endpoints: forward,
                    method: Some(method.clone()),
                    host: host.clone(),
                    path: path.clone(),
                    user_agent: user_agent.clone(),
                    answer: None,
                });
            }
            L7::Http {
                method: None,
                status: Some(status),
                ..
            } => {
                let answer = |request_ns: Option<u64>| HttpAnswer {
                    status: *status,
                    latency_ms: request_ns.and_then(|at| milliseconds(at, ts_ns)),
                };
                // HTTP/1.x answers in order: the oldest open request of the connection, stored
                // earlier ones first.
                let used = self.used_http.get(&backward).copied().unwrap_or(0);
                if let Some((id, request_ns, method)) = pending.http.get(&backward).and_then(|queue| queue.get(used)) {
                    *self.used_http.entry(backward).or_default() += 1;
                    self.late_http.push(Late {
                        id: *id,
                        request_ns: *request_ns,
                        answer: answer(Some(*request_ns)),
                        endpoints: backward,
                        asked: method.clone(),
                    });
                } else if let Some(index) = self.open_http.get_mut(&backward).and_then(VecDeque::pop_front) {
                    let request_ns = self.http[index].ts_ns;
                    self.http[index].answer = Some(answer(Some(request_ns)));
                } else {
                    self.http.push(HttpEvent {
                        ts_ns,
                        transport,
                        endpoints: backward,
                        method: None,
                        host: None,
                        path: None,
                        user_agent: None,
                        answer: Some(answer(None)),
                    });
                }
            }
            L7::Http2(message) => self.add_http2(forward, message, ts_ns, pending),
            L7::Tls {
                handshake,
                version,
                sni,
                alpn,
                ja4,
                quic,
            } if handshake == "client_hello" => self.tls.push(TlsEvent {
                ts_ns,
                transport: if *quic { "quic" } else { "tcp" },
                endpoints: forward,
                sni: sni.clone(),
                alpn: alpn.clone(),
                version: version.clone(),
                ja4: ja4.clone(),
            }),
            _ => {}
        }
    }
}

impl Pending {
    /// After the group's transaction committed: forgets the requests it answered, remembers its
    /// unanswered ones under the row ids they got (`dns_ids`, `http_ids`: the ids of `events.dns`
    /// and `events.http` in order), and drops what waited longer than [`PENDING_FOR_NS`].
    pub fn apply(&mut self, events: &Events, dns_ids: &[i64], http_ids: &[i64], http2_ids: &[i64]) {
        for key in &events.used_dns {
            self.dns.remove(key);
        }
        for (flow, answered) in &events.used_http {
            if let Some(queue) = self.http.get_mut(flow) {
                let answered = (*answered).min(queue.len());
                queue.drain(..answered);
                self.http_count -= answered;
            }
        }
        let mut newest = self.http2.apply(&events.http2, http2_ids);
        for (key, &index) in &events.open_dns {
            let event = &events.dns[index];
            newest = newest.max(event.ts_ns);
            if let Some(&id) = dns_ids.get(index) {
                self.dns.insert(*key, (id, event.ts_ns));
            }
        }
        for (flow, indexes) in &events.open_http {
            for &index in indexes {
                let event = &events.http[index];
                newest = newest.max(event.ts_ns);
                if let Some(&id) = http_ids.get(index) {
                    self.http
                        .entry(*flow)
                        .or_default()
                        .push_back((id, event.ts_ns, event.method.clone()));
                    self.http_count += 1;
                }
            }
        }
        let oldest = newest.saturating_sub(PENDING_FOR_NS);
        self.dns.retain(|_, (_, at)| *at >= oldest);
        self.http2.expire(oldest);
        if self.dns.len() > PENDING_MAX {
            let mut times: Vec<u64> = self.dns.values().map(|(_, at)| *at).collect();
            times.sort_unstable();
            let cut = times[self.dns.len() - PENDING_MAX];
            self.dns.retain(|_, (_, at)| *at >= cut);
        }
        let mut count = 0;
        self.http.retain(|_, queue| {
            queue.retain(|(_, at, _)| *at >= oldest);
            count += queue.len();
            !queue.is_empty()
        });
        self.http_count = count;
        if self.http_count > PENDING_MAX {
            self.http.clear();
            self.http_count = 0;
        }
    }
}

pub mod store;

#[cfg(test)]
mod tests;
