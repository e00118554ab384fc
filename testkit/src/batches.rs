//! Batches in the sniffer's wire format, published as a sniffer would: for tests of whatever
//! reads the queue or the database downstream.

use std::collections::BTreeMap;

use lapin::options::BasicPublishOptions;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel};
use wire::{BatchBuilder, Counters, Origin};

use crate::frames;

pub const CLIENT: [u8; 6] = [2, 0, 0, 0, 0, 2];
pub const SERVER: [u8; 6] = [2, 0, 0, 0, 0, 1];

/// A sniffer of `session` on `node`, with a fresh boot id.
pub fn origin(session: &str, node: &str) -> Origin {
    Origin {
        boot_id: rand::random(),
        session: session.into(),
        node: node.into(),
    }
}

/// Nanoseconds since the Unix epoch, now.
pub fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// The frame of packet `seq` in the L7 mix: DNS, HTTP and TLS in turn.
pub fn l7_frame(seq: u64) -> Vec<u8> {
    match seq % 3 {
        0 => frames::udp(
            CLIENT,
            SERVER,
            53,
            &frames::dns_query(seq as u16, &format!("q{seq}.example.org")),
        ),
        1 => frames::tcp(CLIENT, SERVER, 80, 0x18, &frames::http_get("web.example.org", "/")),
        _ => frames::tcp(
            CLIENT,
            SERVER,
            443,
            0x18,
            &frames::tls_client_hello("secure.example.org"),
        ),
    }
}

/// Batch `batch_seq` of `origin` with packets `first_seq..first_seq + packets` of the L7 mix,
/// timestamped from `now` (ns) on, carrying counters that say every packet so far was captured.
pub fn l7_batch_at(now: u64, origin: &Origin, batch_seq: u64, first_seq: u64, packets: u64, flags: u16) -> Vec<u8> {
    let counters = Counters {
        captured: first_seq + packets,
        kernel_drops: 0,
        drops: vec![],
    };
    batch_of(
        origin,
        batch_seq,
        flags,
        &counters,
        (first_seq..first_seq + packets).map(|seq| (seq, now + seq, l7_frame(seq))),
    )
}

/// A batch of the given `(seq, timestamp ns, frame)` packets, captured on `eth0`.
pub fn batch_of(
    origin: &Origin,
    batch_seq: u64,
    flags: u16,
    counters: &Counters,
    packets: impl IntoIterator<Item = (u64, u64, Vec<u8>)>,
) -> Vec<u8> {
    let mut builder = BatchBuilder::default();
    let interface = builder.interface_index("eth0");
    for (seq, ts, frame) in packets {
        builder.push(seq, ts, interface, frame.len() as u32, &frame);
    }
    builder.seal(origin, batch_seq, flags, counters)
}

/// Publishes a batch as the sniffer does (content type, schema header, persistent, message id),
/// and waits for the broker's confirm when the channel is in confirm mode.
pub async fn publish(channel: &Channel, exchange: &str, routing_key: &str, id: &str, body: &[u8]) {
    let headers = FieldTable::from(BTreeMap::from([(
        wire::SCHEMA_HEADER.into(),
        AMQPValue::LongLongInt(i64::from(wire::VERSION)),
    )]));
    let properties = BasicProperties::default()
        .with_content_type(wire::CONTENT_TYPE.into())
        .with_message_id(id.into())
        .with_delivery_mode(2)
        .with_headers(headers);
    channel
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            BasicPublishOptions::default(),
            body,
            properties,
        )
        .await
        .unwrap()
        .await
        .unwrap();
}
