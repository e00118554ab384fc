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

use lapin::Channel;
use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};

pub const EXCHANGE: &str = "trawl.packets";

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
        .queue_declare(dead.as_str().into(), durable, FieldTable::default())
        .await?;
    let shards = shards.max(1);
    for shard in 0..shards {
        declare_shard(
            channel,
            &shard_queue(queue, shard),
            &dead,
            max_bytes / i64::from(shards),
        )
        .await?;
    }
    Ok(())
}

async fn declare_shard(channel: &Channel, queue: &str, dead: &str, max_bytes: i64) -> Result<(), lapin::Error> {
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    let mut arguments = FieldTable::default();
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
