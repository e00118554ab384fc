//! Fills a queue with sniffer-format batches of mixed DNS, HTTP and TLS packets, for the ingest
//! benchmark (`bench/parser.sh`); with `FILL_MIX=grpc`, of gRPC calls over HTTP/2 instead.
//!
//! Run: `cargo run --release -p parser --example fill_queue -- AMQP_URL QUEUE BATCHES PACKETS_PER_BATCH [SOURCES]`

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection};
use testkit::frames;
use wire::{BatchBuilder, Counters, Origin};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(
        args.len() == 5 || args.len() == 6,
        "usage: fill_queue AMQP_URL QUEUE BATCHES PACKETS_PER_BATCH [SOURCES]"
    );
    let (url, queue) = (&args[1], args[2].as_str());
    let (batches, per_batch): (u64, u64) = (args[3].parse()?, args[4].parse()?);
    let connection = Connection::connect(url, Default::default()).await?;
    let channel = connection.create_channel().await?;
    channel.confirm_select(ConfirmSelectOptions::default()).await?;
    let origin = Origin {
        boot_id: rand::random(),
        session: "bench/parser".into(),
        node: "bench".into(),
    };
    let sources: u64 = match args.get(5) {
        Some(count) => count.parse()?,
        None => 1,
    };
    anyhow::ensure!((1..=65_536).contains(&sources), "SOURCES is 1 to 65536");
    let headers = FieldTable::from(BTreeMap::from([(
        wire::SCHEMA_HEADER.into(),
        AMQPValue::LongLongInt(i64::from(wire::VERSION)),
    )]));
    let mut grpc = (std::env::var("FILL_MIX").as_deref() == Ok("grpc")).then(GrpcMix::default);
    let mut confirms = Vec::new();
    for seq in 0..batches {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos() as u64;
        let mut builder = BatchBuilder::default();
        let interface = builder.interface_index("eth0");
        for i in 0..per_batch {
            let number = seq * per_batch + i;
            let frame = match &mut grpc {
                Some(mix) => mix.packet(number),
                None => packet(i, source(number % sources, sources)),
            };
            builder.push(number, now + i, interface, frame.len() as u32, &frame);
        }
        let counters = Counters {
            captured: (seq + 1) * per_batch,
            ..Counters::default()
        };
        let body = builder.seal(&origin, seq, 0, &counters);
        let properties = BasicProperties::default()
            .with_content_type(wire::CONTENT_TYPE.into())
            .with_message_id(origin.batch_id(seq).as_str().into())
            .with_delivery_mode(2)
            .with_headers(headers.clone());
        confirms.push(
            channel
                .basic_publish(
                    "".into(),
                    queue.into(),
                    BasicPublishOptions::default(),
                    &body,
                    properties,
                )
                .await?,
        );
    }
    for confirm in confirms {
        confirm.await?;
    }
    println!("published {batches} batches of {per_batch} packets");
    Ok(())
}

/// Source `index` of `count`: the test address alone, or one of `10.200.0.0/16` (what the
/// traffic metrics' benchmark names as that many pods).
fn source(index: u64, count: u64) -> Ipv4Addr {
    if count == 1 {
        return frames::SOURCE;
    }
    Ipv4Addr::new(10, 200, (index >> 8) as u8, index as u8)
}

/// Packet `i` of a batch: a DNS query, an HTTP request, a ClientHello or an ACK, from `source`.
fn packet(i: u64, source: Ipv4Addr) -> Vec<u8> {
    let (client, server) = ([2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 1]);
    let to = |port| (frames::DESTINATION, port);
    match i % 4 {
        0 => frames::udp_ports(
            client,
            server,
            (source, 40000),
            to(53),
            &frames::dns_query(i as u16, &format!("q{}.bench.example", i % 50)),
        ),
        1 => frames::tcp_ports(
            client,
            server,
            (source, 40001),
            to(80),
            0x18,
            &frames::http_get("bench.example", "/index.html"),
        ),
        2 => frames::tcp_ports(
            client,
            server,
            (source, 40001),
            to(443),
            0x18,
            &frames::tls_client_hello("tls.bench.example"),
        ),
        _ => frames::tcp_ports(client, server, (source, 40001), to(443), 0x10, &[]),
    }
}

/// Connections the gRPC mix spreads its calls over, each followed for its whole life.
const GRPC_CONNECTIONS: u64 = 200;

/// Unary gRPC calls over long-lived HTTP/2 connections, four packets a call: the request (headers
/// and one message), the server's ACK, the response (headers, one message, trailers), the
/// client's ACK. Sequence numbers advance per connection and direction, as on the wire, so the
/// parser follows each connection; the first call on one carries the preface and SETTINGS.
#[derive(Default)]
struct GrpcMix {
    /// Per connection: the client's and the server's next sequence number, the next stream id.
    connections: std::collections::HashMap<u64, (u32, u32, u32)>,
}

impl GrpcMix {
    fn packet(&mut self, number: u64) -> Vec<u8> {
        const HEADERS: u8 = 1;
        let call = number / 4;
        let connection = call % GRPC_CONNECTIONS;
        let (client_mac, server_mac) = ([2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 1]);
        let client = (frames::SOURCE, 20_000 + connection as u16);
        let server = (frames::DESTINATION, 50051);
        let fresh = !self.connections.contains_key(&connection);
        let (client_seq, server_seq, stream) = self.connections.entry(connection).or_insert((1, 1, 1));
        let (request, response) = frames::grpc_call(&format!("/bench.Orders/Get{}", call % 20), (call % 3) as u32);
        let (request, response) = if fresh {
            (request, response)
        } else {
            // Later calls: the request's and response's frames only, on the next stream.
            let preface_and_settings = 24 + 9;
            let settings = 9;
            (request[preface_and_settings..].to_vec(), response[settings..].to_vec())
        };
        let renumber = |mut bytes: Vec<u8>, stream: u32| {
            // Every frame of the call is on stream 1 in `grpc_call`: put it on `stream`.
            let mut at = 0;
            while at + 9 <= bytes.len() {
                let len = usize::from(bytes[at]) << 16 | usize::from(bytes[at + 1]) << 8 | usize::from(bytes[at + 2]);
                if bytes[at + 3] == HEADERS || bytes[at + 3] == 0 {
                    bytes[at + 5..at + 9].copy_from_slice(&stream.to_be_bytes());
                }
                at += 9 + len;
            }
            bytes
        };
        let skip_preface = |bytes: &[u8]| if bytes.starts_with(b"PRI") { 24 } else { 0 };
        match number % 4 {
            0 => {
                let at = skip_preface(&request);
                let mut bytes = request[..at].to_vec();
                bytes.extend(renumber(request[at..].to_vec(), *stream));
                let frame = frames::tcp_segment(client_mac, server_mac, client, server, 0x18, *client_seq, &bytes);
                *client_seq = client_seq.wrapping_add(bytes.len() as u32);
                frame
            }
            2 => {
                let bytes = renumber(response, *stream);
                let frame = frames::tcp_segment(server_mac, client_mac, server, client, 0x18, *server_seq, &bytes);
                *server_seq = server_seq.wrapping_add(bytes.len() as u32);
                *stream += 2;
                frame
            }
            1 => frames::tcp_segment(server_mac, client_mac, server, client, 0x10, *server_seq, &[]),
            _ => frames::tcp_segment(client_mac, server_mac, client, server, 0x10, *client_seq, &[]),
        }
    }
}
