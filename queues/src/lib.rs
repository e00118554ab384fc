//! The RabbitMQ topology shared by the operator (which declares it), the sniffer (which publishes
//! to it), the local run and the tests: one direct exchange, and per session a durable queue
//! bounded in bytes with `reject-publish` (so a sniffer sees a full queue as a nack and counts it
//! as a `queue_full` drop instead of the broker silently discarding old batches), dead-lettering
//! into `<queue>.dead`.

use lapin::Channel;
use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};

pub const EXCHANGE: &str = "trawl.packets";

pub fn dead_letter_queue(queue: &str) -> String {
    format!("{queue}.dead")
}

/// Declares (idempotently) the exchange, the dead-letter queue and the session queue, bound to
/// the exchange under its own name as routing key.
pub async fn declare_session_queue(channel: &Channel, queue: &str, max_bytes: i64) -> Result<(), lapin::Error> {
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
    let mut arguments = FieldTable::default();
    arguments.insert("x-max-length-bytes".into(), AMQPValue::LongLongInt(max_bytes));
    arguments.insert("x-overflow".into(), AMQPValue::LongString("reject-publish".into()));
    arguments.insert("x-dead-letter-exchange".into(), AMQPValue::LongString("".into()));
    arguments.insert(
        "x-dead-letter-routing-key".into(),
        AMQPValue::LongString(dead.as_str().into()),
    );
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
