//! Publishes sealed batches to RabbitMQ with publisher confirms and a bounded in-flight window.
//!
//! lapin does not reconnect by itself, so this loop does: on any connection or channel error the
//! unconfirmed batches go back to the front of the queue and are published again after
//! reconnecting (the parser skips a batch id it has already stored, so a batch that did reach the
//! queue before the error is not stored twice). A nack or a return is final: the batch is dropped
//! and counted with its reason.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use lapin::Confirmation;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use tokio::sync::watch;

use crate::accounting::{Accounting, DropReason};
use crate::outbox::{OutboxReceiver, OutgoingBatch};

pub struct PublisherSettings {
    pub amqp_url: String,
    pub exchange: String,
    pub routing_key: String,
    pub max_in_flight: usize,
    /// Shown in the broker's connection list.
    pub connection_name: String,
}

pub struct Publisher {
    settings: PublisherSettings,
    accounting: Arc<Accounting>,
    input: OutboxReceiver,
    input_closed: bool,
    /// Batches taken from the outbox but not yet confirmed, oldest first.
    pending: VecDeque<OutgoingBatch>,
    connected: Arc<AtomicBool>,
}

#[derive(Debug, thiserror::Error)]
enum PublishError {
    #[error(transparent)]
    Amqp(#[from] lapin::Error),
    #[error("the connection to the broker was lost")]
    ConnectionLost,
    #[error("the shutdown deadline passed")]
    Deadline,
}

impl Publisher {
    pub fn new(
        settings: PublisherSettings,
        accounting: Arc<Accounting>,
        input: OutboxReceiver,
        connected: Arc<AtomicBool>,
    ) -> Self {
        Self {
            settings,
            accounting,
            input,
            input_closed: false,
            pending: VecDeque::new(),
            connected,
        }
    }

    /// Publishes until the outbox is closed and empty, then sends the final batch built by
    /// `final_batch`. `deadline` receives the time by which everything must be done once the
    /// sniffer is stopping; what is unconfirmed then is dropped as `shutdown`.
    pub async fn run(
        mut self,
        mut deadline: watch::Receiver<Option<Instant>>,
        final_batch: impl FnOnce() -> OutgoingBatch,
    ) {
        let mut backoff = Duration::from_millis(100);
        while !(self.input_closed && self.pending.is_empty()) {
            if deadline_passed(&deadline) {
                break;
            }
            let outcome = match self.connect().await {
                Ok((connection, channel)) => {
                    backoff = Duration::from_millis(100);
                    self.connected.store(true, Ordering::Release);
                    self.accounting.broker_connections.inc();
                    tracing::info!("connected to the broker");
                    let outcome = self.pump(&connection, &channel, &mut deadline).await;
                    self.connected.store(false, Ordering::Release);
                    let _ = connection.close(200, "".into()).await;
                    outcome
                }
                Err(error) => Err(error),
            };
            match outcome {
                Ok(()) => break,
                Err(PublishError::Deadline) => break,
                Err(error) => {
                    tracing::warn!(%error, retry_in = ?backoff, pending = self.pending.len(), "broker unavailable");
                    self.wait_or_buffer(backoff, &mut deadline).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        self.abandon_pending();
        self.publish_final(final_batch(), &deadline).await;
    }

    async fn connect(&self) -> Result<(Connection, Channel), PublishError> {
        let properties =
            ConnectionProperties::default().with_connection_name(self.settings.connection_name.as_str().into());
        let connection = queues::connect(&self.settings.amqp_url, properties).await?;
        let channel = connection.create_channel().await?;
        channel.confirm_select(ConfirmSelectOptions::default()).await?;
        // Idempotent; the operator declares it too, with the same arguments.
        channel
            .exchange_declare(
                self.settings.exchange.as_str().into(),
                ExchangeKind::Direct,
                ExchangeDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        Ok((connection, channel))
    }

    /// While disconnected, keeps taking batches from the outbox so that its byte bound, not
    /// this loop, decides what is dropped; returns after `pause` or when stopping.
    async fn wait_or_buffer(&mut self, pause: Duration, deadline: &mut watch::Receiver<Option<Instant>>) {
        let until = tokio::time::Instant::now() + pause;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => return,
                _ = deadline.changed() => return,
                batch = self.input.recv(), if !self.input_closed => match batch {
                    Some(batch) => self.pending.push_back(batch),
                    None => self.input_closed = true,
                },
            }
        }
    }

    async fn pump(
        &mut self,
        connection: &Connection,
        channel: &Channel,
        deadline: &mut watch::Receiver<Option<Instant>>,
    ) -> Result<(), PublishError> {
        let mut in_flight: BTreeMap<u64, (OutgoingBatch, Instant)> = BTreeMap::new();
        let mut confirms = FuturesUnordered::new();
        let mut health = tokio::time::interval(Duration::from_millis(250));
        let result = 'pump: loop {
            // Fill the window.
            while in_flight.len() < self.settings.max_in_flight {
                let batch = match self.pending.pop_front() {
                    Some(batch) => batch,
                    None if self.input_closed => break,
                    None => match self.input.try_recv() {
                        Ok(batch) => batch,
                        Err(tokio::sync::mpsc::error::TryRecvError::Empty) => break,
                        Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => {
                            self.input_closed = true;
                            break;
                        }
                    },
                };
                let published = self.publish(channel, &batch).await;
                match published {
                    Ok(confirm) => {
                        self.accounting.batches_published.inc();
                        let seq = batch.seq;
                        in_flight.insert(seq, (batch, Instant::now()));
                        confirms.push(async move { (seq, confirm.await) });
                    }
                    Err(error) => {
                        self.pending.push_front(batch);
                        break 'pump Err(error.into());
                    }
                }
            }
            if in_flight.is_empty() && self.pending.is_empty() && self.input_closed {
                break Ok(());
            }
            let stop_at = (*deadline.borrow()).map(tokio::time::Instant::from_std);
            tokio::select! {
                Some((seq, confirmation)) = confirms.next(), if !confirms.is_empty() => {
                    let Some((batch, published_at)) = in_flight.remove(&seq) else { continue };
                    match confirmation {
                        Ok(Confirmation::Ack(None)) => {
                            self.accounting.publish_latency.observe(published_at.elapsed().as_secs_f64());
                            self.accounting.batches_confirmed.inc();
                            self.accounting.confirmed_packets.inc_by(batch.packets);
                            self.input.release(&batch);
                        }
                        Ok(Confirmation::Ack(Some(_))) => self.drop_batch(batch, DropReason::Unroutable),
                        Ok(Confirmation::Nack(_)) => self.drop_batch(batch, DropReason::QueueFull),
                        Ok(Confirmation::NotRequested) => {
                            in_flight.insert(seq, (batch, published_at));
                            break Err(PublishError::ConnectionLost);
                        }
                        Err(error) => {
                            in_flight.insert(seq, (batch, published_at));
                            break Err(error.into());
                        }
                    }
                }
                batch = self.input.recv(), if !self.input_closed && in_flight.len() < self.settings.max_in_flight && self.pending.is_empty() => {
                    match batch {
                        Some(batch) => self.pending.push_back(batch),
                        None => self.input_closed = true,
                    }
                }
                _ = health.tick() => {
                    if !connection.status().connected() || !channel.status().connected() {
                        break Err(PublishError::ConnectionLost);
                    }
                }
                _ = async { tokio::time::sleep_until(stop_at.expect("guarded")).await }, if stop_at.is_some() => {
                    break Err(PublishError::Deadline);
                }
                _ = deadline.changed() => {}
            }
        };
        // Whatever is unconfirmed goes back to the front, in sequence order, for the next connection.
        for (_, (batch, _)) in in_flight.into_iter().rev() {
            self.pending.push_front(batch);
        }
        result
    }

    /// Publishes one batch, mandatory (an unroutable batch comes back and is counted), with its properties.
    async fn publish(&self, channel: &Channel, batch: &OutgoingBatch) -> Result<lapin::PublisherConfirm, lapin::Error> {
        let options = BasicPublishOptions {
            mandatory: true,
            ..Default::default()
        };
        let routing_key = queues::shard_queue(&self.settings.routing_key, batch.shard);
        channel
            .basic_publish(
                self.settings.exchange.as_str().into(),
                routing_key.as_str().into(),
                options,
                &batch.body,
                properties(batch),
            )
            .await
    }

    fn drop_batch(&mut self, batch: OutgoingBatch, reason: DropReason) {
        tracing::warn!(batch = %batch.id, packets = batch.packets, reason = reason.as_str(), "batch dropped");
        self.accounting.batches_nacked.inc();
        self.accounting.drop_packets(reason, batch.packets);
        self.input.release(&batch);
    }

    /// At the deadline: everything still unconfirmed is lost, and counted.
    fn abandon_pending(&mut self) {
        while let Ok(batch) = self.input.try_recv() {
            self.pending.push_back(batch);
        }
        for batch in std::mem::take(&mut self.pending) {
            self.drop_batch(batch, DropReason::Shutdown);
        }
    }

    /// The last batch: no packets, the final counters. Best effort within the deadline.
    async fn publish_final(&self, batch: OutgoingBatch, deadline: &watch::Receiver<Option<Instant>>) {
        let limit = (*deadline.borrow())
            .map(|at| at.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_secs(5))
            .max(Duration::from_secs(1));
        let attempt = async {
            let (connection, channel) = self.connect().await?;
            let confirmation = self.publish(&channel, &batch).await?.await?;
            let _ = connection.close(200, "".into()).await;
            Ok::<_, PublishError>(confirmation)
        };
        match tokio::time::timeout(limit, attempt).await {
            Ok(Ok(Confirmation::Ack(None))) => tracing::info!(batch = %batch.id, "final batch confirmed"),
            Ok(Ok(other)) => tracing::warn!(?other, "final batch not stored by the broker"),
            Ok(Err(error)) => tracing::warn!(%error, "final batch not sent"),
            Err(_) => tracing::warn!("final batch not confirmed before the deadline"),
        }
    }
}

/// Content type, schema version and batch id travel in the message properties (see wire/FORMAT.md).
fn properties(batch: &OutgoingBatch) -> BasicProperties {
    BasicProperties::default()
        .with_content_type(wire::CONTENT_TYPE.into())
        .with_message_id(batch.id.as_str().into())
        .with_delivery_mode(2)
        .with_headers(FieldTable::from(BTreeMap::from([(
            wire::SCHEMA_HEADER.into(),
            AMQPValue::LongLongInt(i64::from(wire::VERSION)),
        )])))
}

fn deadline_passed(deadline: &watch::Receiver<Option<Instant>>) -> bool {
    deadline.borrow().is_some_and(|at| Instant::now() >= at)
}
