//! Fills a queue with sniffer-format batches of mixed DNS, HTTP and TLS packets, for the ingest
//! benchmark (`bench/parser.sh`).
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
    let mut confirms = Vec::new();
    for seq in 0..batches {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos() as u64;
        let mut builder = BatchBuilder::default();
        let interface = builder.interface_index("eth0");
        for i in 0..per_batch {
            let number = seq * per_batch + i;
            let frame = packet(i, source(number % sources, sources));
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
