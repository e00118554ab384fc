//! HTTP/2 and gRPC exchanges: a stream's request paired with its response, put together from the
//! messages both directions carry (request headers, the request's end, response headers,
//! trailers, a reset), which may arrive in different transactions. A request opens a row; what
//! later messages add is merged into it while the group is open, and afterwards written as an
//! update by row id ([`Pending`]), touching only the columns it knows.

use std::collections::HashMap;

use dissect::Http2Message;

use super::{Endpoints, Events, Late, PENDING_MAX, Pending, milliseconds};

/// One exchange on one HTTP/2 stream, stored beside HTTP/1.x's in `http_events`.
#[derive(Debug, Clone, PartialEq)]
pub struct Http2Event {
    pub ts_ns: u64,
    pub endpoints: Endpoints,
    pub stream: u32,
    pub method: Option<String>,
    pub scheme: Option<String>,
    pub authority: Option<String>,
    pub path: Option<String>,
    pub user_agent: Option<String>,
    pub parts: Http2Parts,
}

/// What the request's end and the response add to an exchange; absent what no message said yet.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Http2Parts {
    /// gRPC when either side's content type says so.
    pub grpc: bool,
    pub content_type: Option<String>,
    pub status: Option<u16>,
    /// From the request's headers to the response's.
    pub latency_ms: Option<f64>,
    pub request_bytes: Option<u64>,
    pub request_messages: Option<u32>,
    pub response_bytes: Option<u64>,
    pub response_messages: Option<u32>,
    pub grpc_status: Option<u32>,
    pub grpc_message: Option<String>,
    /// RST_STREAM's error code.
    pub reset: Option<String>,
    /// Header fields that pointed at table entries the capture did not see.
    pub unresolved: u32,
    /// Both sides ended (or the stream was reset): nothing more will come.
    pub done: bool,
}

impl Http2Parts {
    pub fn protocol(&self) -> &'static str {
        if self.grpc { "grpc" } else { "http2" }
    }

    /// Takes in what `other` knows.
    fn merge(&mut self, other: Self) {
        self.grpc |= other.grpc;
        self.unresolved = self.unresolved.saturating_add(other.unresolved);
        self.done |= other.done;
        macro_rules! take {
            ($($field:ident),*) => { $( if other.$field.is_some() { self.$field = other.$field; } )* };
        }
        take!(
            content_type,
            status,
            latency_ms,
            request_bytes,
            request_messages,
            response_bytes,
            response_messages,
            grpc_status,
            grpc_message,
            reset
        );
    }
}

type Key = (Endpoints, u32);
/// A request stored by an earlier transaction: row id, request time, method.
type Stored = (i64, u64, Option<String>);

/// HTTP/2 requests stored by earlier transactions and not finished: row id, request time, method.
#[derive(Debug, Default)]
pub struct PendingHttp2 {
    open: HashMap<Key, Stored>,
}

/// The group's HTTP/2 exchanges.
#[derive(Debug, Default)]
pub struct GroupHttp2 {
    pub events: Vec<Http2Event>,
    /// Updates to rows stored before, one per exchange.
    pub late: Vec<Late<Http2Parts>>,
    open: HashMap<Key, usize>,
    late_index: HashMap<Key, usize>,
}

impl Events {
    /// Adds one HTTP/2 message sent by `from` to `to`.
    pub(super) fn add_http2(&mut self, forward: Endpoints, message: &Http2Message, ts_ns: u64, pending: &Pending) {
        let backward = Endpoints {
            client: forward.server,
            client_port: forward.server_port,
            server: forward.client,
            server_port: forward.client_port,
        };
        let stream = message.stream;
        if let (Some(last), Some(error)) = (message.last_stream, &message.error) {
            self.goaway(forward, last, error, pending);
            return;
        }
        if stream == 0 {
            return;
        }
        let group = &mut self.http2;
        if message.method.is_some() {
            group.open.insert((forward, stream), group.events.len());
            group.events.push(Http2Event {
                ts_ns,
                endpoints: forward,
                stream,
                method: message.method.clone(),
                scheme: message.scheme.clone(),
                authority: message.authority.clone(),
                path: message.path.clone(),
                user_agent: message.user_agent.clone(),
                parts: Http2Parts {
                    grpc: message.content_type.as_deref().is_some_and(is_grpc),
                    content_type: message.content_type.clone(),
                    request_bytes: message.end_stream.then_some(message.body_bytes),
                    request_messages: message.end_stream.then_some(message.messages),
                    unresolved: message.unresolved,
                    ..Default::default()
                },
            });
            return;
        }
        // Which side sent it: the request's sender (its end, or a reset), or the server.
        let from_client =
            self.http2.open.contains_key(&(forward, stream)) || pending.http2.open.contains_key(&(forward, stream));
        let (endpoints, key) = if from_client {
            (forward, (forward, stream))
        } else {
            (backward, (backward, stream))
        };
        let mut parts = Http2Parts {
            unresolved: message.unresolved,
            reset: message.error.clone().filter(|_| message.frame == "rst_stream"),
            done: message.frame == "rst_stream",
            ..Default::default()
        };
        let ended = message.end_stream || message.frame == "rst_stream";
        if from_client {
            if ended {
                parts.request_bytes = Some(message.body_bytes);
                parts.request_messages = Some(message.messages);
            }
        } else {
            parts.grpc = message.content_type.as_deref().is_some_and(is_grpc);
            parts.content_type.clone_from(&message.content_type);
            parts.status = message.status;
            parts.grpc_status = message.grpc_status;
            parts.grpc_message.clone_from(&message.grpc_message);
            if ended {
                parts.response_bytes = Some(message.body_bytes);
                parts.response_messages = Some(message.messages);
                parts.done = true;
            }
        }
        let group = &mut self.http2;
        if let Some(&index) = group.open.get(&key) {
            let event = &mut group.events[index];
            if parts.status.is_some() {
                parts.latency_ms = milliseconds(event.ts_ns, ts_ns);
            }
            event.parts.merge(parts);
            if event.parts.done {
                group.open.remove(&key);
            }
        } else if let Some((id, request_ns, method)) = pending.http2.open.get(&key) {
            if parts.status.is_some() {
                parts.latency_ms = milliseconds(*request_ns, ts_ns);
            }
            match group.late_index.get(&key) {
                Some(&index) => group.late[index].answer.merge(parts),
                None => {
                    group.late_index.insert(key, group.late.len());
                    group.late.push(Late {
                        id: *id,
                        request_ns: *request_ns,
                        answer: parts,
                        endpoints,
                        asked: method.clone(),
                    });
                }
            }
        } else if let (false, Some(status), Some(index)) = (
            from_client,
            parts.status.filter(|_| stream == 1),
            self.open_http.get_mut(&endpoints).and_then(|open| open.pop_front()),
        ) {
            // After `Upgrade: h2c` the HTTP/1.1 request is stream 1 and its response comes as
            // HTTP/2 (RFC 7540 3.2): the request's row gets it.
            let request = &mut self.http[index];
            request.answer = Some(super::HttpAnswer {
                status,
                latency_ms: milliseconds(request.ts_ns, ts_ns),
            });
        } else if !from_client && (parts.status.is_some() || parts.done) {
            // A response whose request was not seen: a row of its own with what it says.
            let done = parts.done;
            if !done {
                group.open.insert(key, group.events.len());
            }
            group.events.push(Http2Event {
                ts_ns,
                endpoints,
                stream,
                method: None,
                scheme: None,
                authority: None,
                path: None,
                user_agent: None,
                parts,
            });
        }
    }
}

impl Events {
    /// GOAWAY from either end: the connection's streams above `last` were not processed; those
    /// still open end with it as their reset.
    fn goaway(&mut self, sent: Endpoints, last: u32, error: &str, pending: &Pending) {
        let reversed = Endpoints {
            client: sent.server,
            client_port: sent.server_port,
            server: sent.client,
            server_port: sent.client_port,
        };
        let on_connection = |key: &Key| (key.0 == sent || key.0 == reversed) && key.1 > last;
        let reason = format!("GOAWAY {error}");
        let group = &mut self.http2;
        let open: Vec<(Key, usize)> = group
            .open
            .iter()
            .filter(|(key, _)| on_connection(key))
            .map(|(key, index)| (*key, *index))
            .collect();
        for (key, index) in open {
            let parts = &mut group.events[index].parts;
            parts.reset.get_or_insert_with(|| reason.clone());
            parts.done = true;
            group.open.remove(&key);
        }
        let stored: Vec<(Key, Stored)> = pending
            .http2
            .open
            .iter()
            .filter(|(key, _)| on_connection(key))
            .map(|(key, value)| (*key, value.clone()))
            .collect();
        for (key, (id, request_ns, method)) in stored {
            let parts = Http2Parts {
                reset: Some(reason.clone()),
                done: true,
                ..Default::default()
            };
            match group.late_index.get(&key) {
                Some(&index) => group.late[index].answer.merge(parts),
                None => {
                    group.late_index.insert(key, group.late.len());
                    group.late.push(Late {
                        id,
                        request_ns,
                        answer: parts,
                        endpoints: key.0,
                        asked: method,
                    });
                }
            }
        }
    }
}

fn is_grpc(content_type: &str) -> bool {
    content_type.starts_with("application/grpc")
}

impl PendingHttp2 {
    /// After the group's transaction committed (see [`Pending::apply`]): `ids` are the row ids of
    /// `group.events` in order.
    pub(super) fn apply(&mut self, group: &GroupHttp2, ids: &[i64]) -> u64 {
        for (key, &index) in &group.late_index {
            if group.late[index].answer.done {
                self.open.remove(key);
            }
        }
        let mut newest = 0;
        for (key, &index) in &group.open {
            let event = &group.events[index];
            newest = newest.max(event.ts_ns);
            if let Some(&id) = ids.get(index) {
                self.open.insert(*key, (id, event.ts_ns, event.method.clone()));
            }
        }
        newest
    }

    pub(super) fn expire(&mut self, oldest: u64) {
        self.open.retain(|_, (_, at, _)| *at >= oldest);
        if self.open.len() > PENDING_MAX {
            self.open.clear();
        }
    }
}
