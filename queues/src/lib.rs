//! The RabbitMQ topology shared by the operator (which declares it), the sniffer (which publishes
//! to it), the local run and the tests: one direct exchange, and per session a durable queue
//! bounded in bytes with `reject-publish` (so a sniffer sees a full queue as a nack and counts it
//! as a `queue_full` drop instead of the broker silently discarding old batches), dead-lettering
//! into `<queue>.dead`.
//!
//! A session's traffic is split by flow into shards (issue #19: a flow's packets must reach one
//! parser for TCP reassembly): the sniffers route each batch to its shard's queue, and each parser
//! consumes the shards it holds a lease on. Shard 0 keeps the session's queue name, so a session
//! of one shard looks as it always did; every shard dead-letters into the same `<queue>.dead`.
//!
//! A session's queues are classic (one broker node holds them) or quorum queues (replicated over
//! a RabbitMQ cluster by Raft, surviving the loss of a minority of nodes, issue #35) with a
//! delivery limit, so that a batch a parser dies on is not redelivered forever. Every component
//! takes a comma-separated list of AMQP URLs, the cluster's nodes, and connects to the first that
//! answers ([`connect`]).

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ConnectionProperties};

pub const EXCHANGE: &str = "trawl.packets";

/// How a session's queues are kept (the CaptureSession's `spec.queue.type`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum QueueType {
    /// On one broker node: lost with it.
    #[default]
    Classic,
    /// Replicated over the cluster's nodes, with [`DELIVERY_LIMIT`].
    Quorum,
}

/// Deliveries of one batch a quorum queue makes before it dead-letters the batch itself
/// (`x-delivery-limit`). Parsers set a batch aside on its delivery number [`LAST_DELIVERY`], so
/// that it is counted as dropped, not dead-lettered uncounted.
pub const DELIVERY_LIMIT: i64 = 5;
/// The header a quorum queue counts earlier deliveries in (0 on a first delivery).
pub const DELIVERY_COUNT_HEADER: &str = "x-delivery-count";
/// The delivery count at which a parser sets a batch aside instead of trying again: one before
/// the broker would (the count's meaning moved between RabbitMQ releases; one early is safe).
pub const LAST_DELIVERY: i64 = DELIVERY_LIMIT - 1;

/// Connects to the first of `urls` (comma-separated; a cluster's nodes) that accepts, trying them
/// in order; the error is the last node's.
pub async fn connect(urls: &str, properties: ConnectionProperties) -> Result<Connection, lapin::Error> {
    let mut last = None;
    for url in urls.split(',').map(str::trim).filter(|url| !url.is_empty()) {
        match Connection::connect(url, properties.clone()).await {
            Ok(connection) => return Ok(connection),
            Err(error) => last = Some(error),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "no AMQP URL given").into()))
}

pub fn dead_letter_queue(queue: &str) -> String {
    format!("{queue}.dead")
}

/// The queue (and routing key) of `shard` of the session whose queue is `queue`.
pub fn shard_queue(queue: &str, shard: u16) -> String {
    match shard {
        0 => queue.to_owned(),
        _ => format!("{queue}.shard-{shard}"),
    }
}

/// Every queue of a session of `shards` shards, dead-letter queue last.
pub fn session_queues(queue: &str, shards: u16) -> Vec<String> {
    let mut all: Vec<String> = (0..shards.max(1)).map(|shard| shard_queue(queue, shard)).collect();
    all.push(dead_letter_queue(queue));
    all
}

/// Declares (idempotently) the exchange, the dead-letter queue and the session's shard queues,
/// each bound to the exchange under its own name as routing key. `max_bytes` bounds the session:
/// each shard holds an equal part.
pub async fn declare_session_queue(
    channel: &Channel,
    queue: &str,
    shards: u16,
    max_bytes: i64,
    kind: QueueType,
) -> Result<(), lapin::Error> {
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel
        .exchange_declare(
            EXCHANGE.into(),
            lapin::ExchangeKind::Direct,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    let dead = dead_letter_queue(queue);
    channel
        .queue_declare(dead.as_str().into(), durable, type_arguments(kind))
        .await?;
    let shards = shards.max(1);
    for shard in 0..shards {
        declare_shard(
            channel,
            &shard_queue(queue, shard),
            &dead,
            max_bytes / i64::from(shards),
            kind,
        )
        .await?;
    }
    Ok(())
}

/// The arguments a queue of `kind` is declared with (a queue's type cannot change once declared).
fn type_arguments(kind: QueueType) -> FieldTable {
    let mut arguments = FieldTable::default();
    if kind == QueueType::Quorum {
        arguments.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
    }
    arguments
}

async fn declare_shard(
    channel: &Channel,
    queue: &str,
    dead: &str,
    max_bytes: i64,
    kind: QueueType,
) -> Result<(), lapin::Error> {
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    let mut arguments = type_arguments(kind);
    if kind == QueueType::Quorum {
        arguments.insert("x-delivery-limit".into(), AMQPValue::LongLongInt(DELIVERY_LIMIT));
    }
    arguments.insert("x-max-length-bytes".into(), AMQPValue::LongLongInt(max_bytes));
    arguments.insert("x-overflow".into(), AMQPValue::LongString("reject-publish".into()));
    arguments.insert("x-dead-letter-exchange".into(), AMQPValue::LongString("".into()));
    arguments.insert("x-dead-letter-routing-key".into(), AMQPValue::LongString(dead.into()));
    channel.queue_declare(queue.into(), durable, arguments).await?;
    channel
        .queue_bind(
            queue.into(),
            EXCHANGE.into(),
            queue.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok(())
}
