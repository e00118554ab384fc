//! Consumes the queues of the session's shards this parser holds (see [`crate::shards`]) with
//! manual acks: a batch is acked only after its rows are committed. lapin does not reconnect by
//! itself, so this loop does, and it re-subscribes when the broker cancels a consumer or the
//! shards it may consume change. A message that is not a batch this build understands is rejected
//! without requeue, which the queue's dead-letter exchange routes to the dead-letter queue.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use lapin::ConnectionProperties;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions, BasicRejectOptions};
use lapin::types::{AMQPValue, FieldTable};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::metrics::{KindLabel, Metrics, ReasonLabel};
use crate::shards::ShardSet;
use crate::store::{BatchReport, Failure, Store, StoreError, Stored};
use crate::turn::{Turn, WaitError};

/// The most deliveries stored in one transaction.
const MAX_GROUP: usize = 16;
/// Groups being stored at once (see [`crate::turn`]). Measured with `bench/parser.sh` on 2 cores:
/// one at a time 86k packets/s, two 142k, three 150-170k (while one group finishes in order, the
/// next two write their packets).
const IN_FLIGHT: usize = 3;

pub struct Consumer {
    pub amqp_url: String,
    /// The session this parser stores (`namespace/name`): a batch naming another is refused, so
    /// that whoever can publish to this queue cannot write into another namespace's session.
    pub session: String,
    /// The session's queue; its shards' queues are named from it.
    pub queue: String,
    /// The shards this parser may consume, from its leases.
    pub allowed: watch::Receiver<ShardSet>,
    /// The shards it consumes, for the leases (a shard's lease is released once it is not here).
    pub consuming: watch::Sender<ShardSet>,
    pub prefetch: u16,
    pub store_payload: bool,
    pub store: Arc<Store>,
    pub metrics: Arc<Metrics>,
    pub connected: Arc<AtomicBool>,
}

/// What a group's task needs to store and acknowledge it.
#[derive(Clone)]
struct Writer {
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    store_payload: bool,
    stop: watch::Receiver<bool>,
}

impl Consumer {
    /// Runs until `stop` turns true; the batches in hand are finished (stored and acked) first.
    pub async fn run(&self, mut stop: watch::Receiver<bool>) {
        let mut backoff = Duration::from_millis(100);
        let mut allowed = self.allowed.clone();
        while !*stop.borrow() {
            match self.consume(&mut stop, &mut allowed).await {
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

    /// One connection's worth of consuming; returns Ok when stopping, when the broker cancelled
    /// a consumer, or when the allowed shards changed.
    async fn consume(
        &self,
        stop: &mut watch::Receiver<bool>,
        allowed: &mut watch::Receiver<ShardSet>,
    ) -> Result<(), lapin::Error> {
        let shards = allowed.borrow_and_update().clone();
        let connection = queues::connect(&self.amqp_url, ConnectionProperties::default()).await?;
        let channel = connection.create_channel().await?;
        // The window is split among the shards' consumers rather than set once for the channel
        // (`global`): RabbitMQ then counts per consumer, without coordinating the channel's
        // queues on every delivery (one parser on one shard: 152k packets/s global, see the commit).
        let per_shard = self
            .prefetch
            .div_ceil(u16::try_from(shards.len()).unwrap_or(u16::MAX).max(1));
        channel.basic_qos(per_shard.max(1), BasicQosOptions::default()).await?;
        let mut subscriptions = Vec::with_capacity(shards.len());
        for &shard in &shards {
            let queue = queues::shard_queue(&self.queue, shard);
            let consumer = channel
                .basic_consume(
                    queue.as_str().into(),
                    "".into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            subscriptions.push(consumer);
        }
        let subscribed = !subscriptions.is_empty();
        let mut deliveries = futures::stream::select_all(subscriptions);
        self.connected.store(true, Ordering::Release);
        self.consuming.send_replace(shards.clone());
        tracing::info!(queue = %self.queue, ?shards, "consuming");
        let writer = Writer {
            store: self.store.clone(),
            metrics: self.metrics.clone(),
            store_payload: self.store_payload,
            stop: stop.clone(),
        };
        // Each group leaves room in the prefetch window for the next one to arrive meanwhile.
        let group_size = (usize::from(self.prefetch) / IN_FLIGHT).clamp(1, MAX_GROUP);
        let mut in_flight: VecDeque<JoinHandle<Result<(), lapin::Error>>> = VecDeque::new();
        let mut turn = Turn::first();
        let outcome = loop {
            tokio::select! {
                delivery = deliveries.next(), if subscribed => match delivery {
                    Some(Ok(delivery)) => {
                        // Whatever else the broker has already sent joins this group.
                        let mut group = vec![delivery];
                        while group.len() < group_size {
                            match deliveries.next().now_or_never() {
                                Some(Some(Ok(delivery))) => group.push(delivery),
                                Some(Some(Err(error))) => break_with_error(&mut in_flight, error).await?,
                                _ => break,
                            }
                        }
                        if in_flight.len() == IN_FLIGHT
                            && let Some(oldest) = in_flight.pop_front()
                        {
                            joined(oldest).await?;
                        }
                        for readable in self.dead_letter_unreadable(group).await? {
                            let next = turn.next();
                            let writer = writer.clone();
                            in_flight.push_back(tokio::spawn(async move { writer.store(readable, turn).await }));
                            turn = next;
                        }
                    }
                    Some(Err(error)) => break Err(error),
                    None => {
                        tracing::warn!("the broker cancelled the consumer; subscribing again");
                        break Ok(());
                    }
                },
                _ = stop.changed() => break Ok(()),
                // An Err (the lease keeper is gone) disables this branch instead of spinning.
                Ok(()) = allowed.changed() => {
                    tracing::info!(shards = ?*allowed.borrow(), "the shards to consume changed; subscribing again");
                    break Ok(());
                }
            }
        };
        // Groups in flight finish (or give up when stopping) before the channel goes: their acks need it,
        // and their redelivered copies must not be stored alongside them.
        let mut finished = Ok(());
        for task in in_flight {
            if let Err(error) = joined(task).await {
                finished = Err(error);
            }
        }
        self.connected.store(false, Ordering::Release);
        // Closing the channel returns what was prefetched and not stored to the queues; only then
        // may another parser take the shards this one gives up.
        let _ = connection.close(200, "".into()).await;
        self.consuming.send_replace(ShardSet::new());
        outcome.and(finished)
    }

    /// Dead-letters the messages that are not batches this build reads, one by one, and returns the
    /// others in runs of one session each (a transaction holds one session's batches; a queue
    /// normally carries only one).
    async fn dead_letter_unreadable(&self, group: Vec<Delivery>) -> Result<Vec<Vec<Delivery>>, lapin::Error> {
        let mut runs: Vec<Vec<Delivery>> = Vec::new();
        let mut run_session: Option<String> = None;
        for delivery in group {
            match self.check(&delivery) {
                // A batch a quorum queue delivered twice before goes alone: if a batch of its group
                // killed the parsers, it is stored on its own before its deliveries run out (see
                // `Writer::store`). Once is what a parser's ordinary stop (scaled down, rolled)
                // returns, and storing those one by one would slow the drain after every stop.
                Ok(_) if earlier_deliveries(&delivery) >= 2 => {
                    runs.push(vec![delivery]);
                    run_session = None;
                }
                Ok(session) => {
                    if run_session.as_deref() != Some(session.as_str()) || runs.is_empty() {
                        runs.push(Vec::new());
                        run_session = Some(session);
                    }
                    runs.last_mut().expect("pushed").push(delivery);
                }
                Err(reason) => {
                    self.metrics.dead_lettered.get_or_create(&ReasonLabel { reason }).inc();
                    delivery.reject(BasicRejectOptions { requeue: false }).await?;
                }
            }
        }
        Ok(runs)
    }

    /// The batch's session, or why a delivery cannot be stored (logged here, counted and rejected by
    /// the caller).
    fn check(&self, delivery: &Delivery) -> Result<String, &'static str> {
        if let Some(reason) = unsupported(delivery) {
            tracing::warn!(reason, "message is not a batch this parser reads; dead-lettering it");
            return Err(reason);
        }
        match wire::Batch::decode(&delivery.data) {
            Err(error) => {
                tracing::warn!(%error, "undecodable batch; dead-lettering it");
                Err("undecodable")
            }
            Ok(batch) if batch.packet_count > crate::store::MAX_SEGMENT_PACKETS => {
                tracing::warn!(
                    packets = batch.packet_count,
                    "batch holds more packets than a segment can; dead-lettering it"
                );
                Err("too_many_packets")
            }
            Ok(batch) if batch.session != self.session => {
                tracing::warn!(
                    batch_session = batch.session,
                    "batch of another session on this session's queue; dead-lettering it"
                );
                Err("other_session")
            }
            Ok(batch) => Ok(batch.session.to_owned()),
        }
    }
}

/// Waits for the groups in flight, then returns `error` (the channel is gone).
async fn break_with_error(
    in_flight: &mut VecDeque<JoinHandle<Result<(), lapin::Error>>>,
    error: lapin::Error,
) -> Result<(), lapin::Error> {
    for task in in_flight.drain(..) {
        let _ = joined(task).await;
    }
    Err(error)
}

async fn joined(task: JoinHandle<Result<(), lapin::Error>>) -> Result<(), lapin::Error> {
    match task.await {
        Ok(outcome) => outcome,
        Err(error) => std::panic::resume_unwind(error.into_panic()),
    }
}

/// Attempts that may fail (each rolled back) before a group's batches are stored one by one, and
/// before a batch alone is set aside. Outages (see [`Failure::Outage`]) do not count: they are
/// waited out however long they last.
const MAX_FAILED_ATTEMPTS: u32 = 3;
/// Time one attempt may take. A group commits in well under a second here; what takes a minute is
/// stuck (a lock cycle the lock timeout missed, a statement that will not end), and counts as a
/// failed attempt.
const ATTEMPT_BUDGET: Duration = Duration::from_secs(60);

/// How attempts to store some batches ended.
enum Attempted {
    Stored(Vec<Stored>, BatchReport),
    /// The parser is stopping: the batches stay unacked and the broker redelivers them.
    Stopping,
    /// Retrying cannot store them: why, for the batches to be set aside.
    GaveUp {
        reason: &'static str,
        error: String,
    },
}

impl Writer {
    /// Stores one session's run of deliveries in one transaction (retrying until stored or
    /// stopping) and acks each once committed. A run that cannot be stored is stored batch by
    /// batch, and a batch that cannot be stored alone is set aside: dead-lettered and counted as
    /// dropped, so that one bad batch never stops the session.
    async fn store(self, deliveries: Vec<Delivery>, turn: Turn) -> Result<(), lapin::Error> {
        let batches: Vec<wire::Batch<'_>> = deliveries
            .iter()
            .map(|d| wire::Batch::decode(&d.data).expect("checked"))
            .collect();
        for batch in &batches {
            self.metrics.batches_consumed.inc();
            self.metrics.packets_consumed.inc_by(u64::from(batch.packet_count));
        }
        // Delivered this often without being stored, a batch is what kills its parsers (a quorum
        // queue would dead-letter it uncounted on the next return): counted as dropped instead.
        if let ([batch], [delivery]) = (batches.as_slice(), deliveries.as_slice())
            && let earlier = earlier_deliveries(delivery)
            && earlier >= queues::LAST_DELIVERY
        {
            turn.finish(true);
            let error = format!("delivered {} times without being stored", earlier + 1);
            return self.set_aside(batch, delivery, "redelivered", &error).await;
        }
        let gave_up = match self.attempt(&batches, &turn).await {
            Attempted::Stored(outcomes, report) => {
                turn.finish(true);
                return self.acknowledge(&batches, &deliveries, outcomes, report).await;
            }
            Attempted::Stopping => {
                turn.finish(false);
                return Ok(());
            }
            Attempted::GaveUp { reason, error } => (reason, error),
        };
        if batches.len() > 1 {
            tracing::warn!(batches = batches.len(), error = %gave_up.1, "cannot store the group; storing its batches one by one");
        }
        for (batch, delivery) in batches.iter().zip(&deliveries) {
            let alone = std::slice::from_ref(batch);
            let attempted = if batches.len() == 1 {
                Attempted::GaveUp {
                    reason: gave_up.0,
                    error: gave_up.1.clone(),
                }
            } else {
                self.attempt(alone, &turn).await
            };
            match attempted {
                Attempted::Stored(outcomes, report) => {
                    self.acknowledge(alone, std::slice::from_ref(delivery), outcomes, report)
                        .await?;
                }
                Attempted::Stopping => {
                    turn.finish(false);
                    return Ok(());
                }
                Attempted::GaveUp { reason, error } => self.set_aside(batch, delivery, reason, &error).await?,
            }
        }
        turn.finish(true);
        Ok(())
    }

    /// Attempts to store `batches` in one transaction until stored, stopping, or hopeless.
    async fn attempt(&self, batches: &[wire::Batch<'_>], turn: &Turn) -> Attempted {
        let mut backoff = Duration::from_millis(100);
        let mut failed = 0;
        loop {
            let started = Instant::now();
            let stored = tokio::time::timeout(
                ATTEMPT_BUDGET,
                self.store.store_batches(batches, self.store_payload, turn),
            )
            .await;
            let error = match stored {
                Ok(Ok((outcomes, report))) => {
                    self.metrics.write_latency.observe(started.elapsed().as_secs_f64());
                    return Attempted::Stored(outcomes, report);
                }
                Ok(Err(error)) => error,
                Err(_) => {
                    // Cut short wherever it was: the streams may hold this attempt's segments.
                    self.store.forget_streams();
                    StoreError::OverBudget(ATTEMPT_BUDGET)
                }
            };
            turn.failed_attempt();
            if let StoreError::Turn(WaitError::PreviousRetrying) = error {
                turn.previous_done().await;
                continue;
            }
            if *self.stop.borrow() {
                tracing::warn!(%error, "stopping with unstored batches; the broker will redeliver them");
                return Attempted::Stopping;
            }
            let failure = error.failure();
            if failure != Failure::Outage {
                failed += 1;
            }
            let reason = match failure {
                Failure::Data => Some("unstorable"),
                Failure::OverBudget if failed >= MAX_FAILED_ATTEMPTS => Some("over_time_budget"),
                Failure::Other if failed >= MAX_FAILED_ATTEMPTS => Some("failed_repeatedly"),
                _ => None,
            };
            if let Some(reason) = reason {
                return Attempted::GaveUp {
                    reason,
                    error: error.to_string(),
                };
            }
            tracing::warn!(%error, retry_in = ?backoff, "cannot store the batches; retrying");
            let mut stop = self.stop.clone();
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.changed() => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    /// Counts what was stored and acks each delivery (its batch is committed).
    async fn acknowledge(
        &self,
        batches: &[wire::Batch<'_>],
        deliveries: &[Delivery],
        outcomes: Vec<Stored>,
        report: BatchReport,
    ) -> Result<(), lapin::Error> {
        for kind in report.malformed {
            self.metrics.parse_errors.get_or_create(&KindLabel { kind }).inc();
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as u64;
        for ((batch, outcome), delivery) in batches.iter().zip(outcomes).zip(deliveries) {
            match outcome {
                Stored::Written { packets } => {
                    self.metrics.rows_written.inc_by(packets as u64);
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
            delivery.ack(BasicAckOptions::default()).await?;
        }
        Ok(())
    }

    /// Records the batch as set aside (its packets dropped with `reason`), then dead-letters it,
    /// where its bytes stay for a person to look at.
    async fn set_aside(
        &self,
        batch: &wire::Batch<'_>,
        delivery: &Delivery,
        reason: &'static str,
        error: &str,
    ) -> Result<(), lapin::Error> {
        tracing::error!(batch = %batch.id(), packets = batch.packet_count, reason, error,
            "cannot store the batch; dead-lettering it and counting its packets as dropped");
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.store.set_aside(batch, reason, error).await {
                Ok(_) => break,
                Err(recording) if recording.failure() == Failure::Outage && !*self.stop.borrow() => {
                    tracing::warn!(error = %recording, retry_in = ?backoff, "cannot record the set-aside batch; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Err(_) if *self.stop.borrow() => return Ok(()),
                Err(recording) => {
                    // Its own fields are what the database refuses (a session name with a NUL):
                    // only the metric and the dead-letter queue tell of it.
                    tracing::error!(error = %recording, "cannot record the set-aside batch either");
                    break;
                }
            }
        }
        self.metrics.dead_lettered.get_or_create(&ReasonLabel { reason }).inc();
        delivery.reject(BasicRejectOptions { requeue: false }).await.map(|_| ())
    }
}

/// How often a quorum queue delivered the message before (its `x-delivery-count`, 0 on a first
/// delivery; classic queues do not count).
fn earlier_deliveries(delivery: &Delivery) -> i64 {
    let count = delivery
        .properties
        .headers()
        .as_ref()
        .and_then(|headers| headers.inner().get(queues::DELIVERY_COUNT_HEADER).cloned());
    match count {
        Some(AMQPValue::LongLongInt(n)) => n,
        Some(AMQPValue::LongInt(n)) => i64::from(n),
        Some(AMQPValue::ShortInt(n)) => i64::from(n),
        Some(AMQPValue::LongUInt(n)) => i64::from(n),
        _ => 0,
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
