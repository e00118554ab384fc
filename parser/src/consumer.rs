//! Consumes the session's queue with manual acks: a batch is acked only after its rows are
//! committed. lapin does not reconnect by itself, so this loop does, and it re-subscribes when the
//! broker cancels the consumer. A message that is not a batch this build understands is rejected
//! without requeue, which the queue's dead-letter exchange routes to the dead-letter queue.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions, BasicRejectOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Connection, ConnectionProperties};
use tokio::sync::watch;

use crate::metrics::{KindLabel, Metrics, ReasonLabel};
use crate::store::{Store, Stored};

pub struct Consumer {
    pub amqp_url: String,
    pub queue: String,
    pub prefetch: u16,
    pub store_payload: bool,
    pub store: Arc<Store>,
    pub metrics: Arc<Metrics>,
    pub connected: Arc<AtomicBool>,
}

impl Consumer {
    /// Runs until `stop` turns true; the batch in hand is finished (stored and acked) first.
    pub async fn run(&self, mut stop: watch::Receiver<bool>) {
        let mut backoff = Duration::from_millis(100);
        while !*stop.borrow() {
            match self.consume(&mut stop).await {
                Ok(()) => backoff = Duration::from_millis(100),
                Err(error) => {
                    self.connected.store(false, Ordering::Release);
                    tracing::warn!(%error, retry_in = ?backoff, "broker unavailable");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stop.changed() => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// One connection's worth of consuming; returns Ok when stopping or when the broker cancelled us.
    async fn consume(&self, stop: &mut watch::Receiver<bool>) -> Result<(), lapin::Error> {
        let connection = Connection::connect(&self.amqp_url, ConnectionProperties::default()).await?;
        let channel = connection.create_channel().await?;
        channel.basic_qos(self.prefetch, BasicQosOptions::default()).await?;
        let mut deliveries = channel
            .basic_consume(
                self.queue.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        self.connected.store(true, Ordering::Release);
        tracing::info!(queue = %self.queue, "consuming");
        let outcome = loop {
            tokio::select! {
                delivery = deliveries.next() => match delivery {
                    Some(Ok(delivery)) => self.handle(delivery, stop).await?,
                    Some(Err(error)) => break Err(error),
                    None => {
                        tracing::warn!("the broker cancelled the consumer; subscribing again");
                        break Ok(());
                    }
                },
                _ = stop.changed() => break Ok(()),
            }
        };
        self.connected.store(false, Ordering::Release);
        let _ = connection.close(200, "".into()).await;
        outcome
    }

    async fn handle(&self, delivery: Delivery, stop: &watch::Receiver<bool>) -> Result<(), lapin::Error> {
        if let Some(reason) = unsupported(&delivery) {
            tracing::warn!(reason, "message is not a batch this parser reads; dead-lettering it");
            self.metrics.dead_lettered.get_or_create(&ReasonLabel { reason }).inc();
            return delivery.reject(BasicRejectOptions { requeue: false }).await.map(|_| ());
        }
        let batch = match wire::Batch::decode(&delivery.data) {
            Ok(batch) => batch,
            Err(error) => {
                tracing::warn!(%error, "undecodable batch; dead-lettering it");
                self.metrics
                    .dead_lettered
                    .get_or_create(&ReasonLabel { reason: "undecodable" })
                    .inc();
                return delivery.reject(BasicRejectOptions { requeue: false }).await.map(|_| ());
            }
        };
        if batch.packet_count > crate::store::MAX_SEGMENT_PACKETS {
            tracing::warn!(
                packets = batch.packet_count,
                "batch holds more packets than a segment can; dead-lettering it"
            );
            self.metrics
                .dead_lettered
                .get_or_create(&ReasonLabel {
                    reason: "too_many_packets",
                })
                .inc();
            return delivery.reject(BasicRejectOptions { requeue: false }).await.map(|_| ());
        }
        self.metrics.batches_consumed.inc();
        self.metrics.packets_consumed.inc_by(u64::from(batch.packet_count));
        // A database outage is waited out, not dropped: the batch stays unacked until it is stored.
        let mut backoff = Duration::from_millis(100);
        loop {
            let started = Instant::now();
            match self.store.store_batch(&batch, self.store_payload).await {
                Ok((stored, report)) => {
                    self.metrics.write_latency.observe(started.elapsed().as_secs_f64());
                    for kind in report.malformed {
                        self.metrics.parse_errors.get_or_create(&KindLabel { kind }).inc();
                    }
                    match stored {
                        Stored::Written { packets } => {
                            self.metrics.rows_written.inc_by(packets as u64);
                            let now = std::time::SystemTime::now()
                                .duration_since(std::time::UNIX_EPOCH)
                                .unwrap_or_default()
                                .as_nanos() as u64;
                            for packet in batch.packets() {
                                let age = now.saturating_sub(packet.ts_ns) as f64 / 1e9;
                                self.metrics.wire_to_stored.observe(age);
                            }
                        }
                        Stored::Duplicate => {
                            tracing::info!(batch = %batch.id(), "already stored; acknowledging the redelivery");
                            self.metrics.redeliveries_skipped.inc();
                        }
                    }
                    return delivery.ack(BasicAckOptions::default()).await.map(|_| ());
                }
                Err(error) => {
                    if *stop.borrow() {
                        // Leave it unacked: the broker redelivers it to another parser.
                        tracing::warn!(%error, "stopping with an unstored batch; the broker will redeliver it");
                        return Ok(());
                    }
                    tracing::warn!(%error, retry_in = ?backoff, "cannot store the batch; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

/// Why a message must not be parsed as a batch, if so.
fn unsupported(delivery: &Delivery) -> Option<&'static str> {
    let properties = &delivery.properties;
    if properties.content_type().as_ref().map(|c| c.as_str()) != Some(wire::CONTENT_TYPE) {
        return Some("content_type");
    }
    let version = properties
        .headers()
        .as_ref()
        .and_then(|headers| headers.inner().get(wire::SCHEMA_HEADER).cloned());
    match version {
        Some(AMQPValue::LongLongInt(v)) if v == i64::from(wire::VERSION) => None,
        Some(AMQPValue::LongInt(v)) if i64::from(v) == i64::from(wire::VERSION) => None,
        _ => Some("schema_version"),
    }
}
