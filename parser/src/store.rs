//! Writes dissected batches to PostgreSQL in one transaction: the batch ids, each batch's frames
//! as one segment, a narrow index row per packet (binary COPY), the flows and L7 events they make
//! and their sniffers' counters. The batch id row makes a redelivered batch a no-op, so each batch takes
//! effect exactly once.

use std::collections::HashSet;
use std::sync::Mutex;

use sqlx::PgPool;
use std::str::FromStr;

use sqlx::postgres::PgPoolOptions;

use crate::copy::CopyWriter;
use crate::counters;
use crate::events::{self, Events, Pending};
use crate::flows::FlowTable;
use crate::packet_rows::{self, PacketRows};
use crate::rollups::Rollups;
use crate::segments;
use crate::streams::{StreamMetrics, Streams};
use crate::traffic::Traffic;
use crate::turn::{Turn, WaitError};

pub use database::MIGRATOR;

/// The most packets one segment (one batch) may hold: a packet id is `segment << 20 | position`.
pub const MAX_SEGMENT_PACKETS: u32 = 1 << packet_rows::POSITION_BITS;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Turn(#[from] WaitError),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("storing took longer than {0:?}")]
    OverBudget(std::time::Duration),
}

/// What a failed attempt says about the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The database or the order between groups is not there yet: waited out, however long.
    Outage,
    /// The data itself is refused (SQLSTATE classes 22 data exception and 54 program limit):
    /// the same rows fail again.
    Data,
    /// The attempt ran past its time budget.
    OverBudget,
    /// Anything else (a lock timeout, a partition dropped meanwhile): worth a few more attempts.
    Other,
}

impl StoreError {
    pub fn failure(&self) -> Failure {
        match self {
            Self::Database(sqlx::Error::Database(error)) => match error.code().as_deref().map(|c| c.get(..2)) {
                Some(Some("22" | "54")) => Failure::Data,
                // Connection, operator intervention (a restart), resources, privileges: an outage or
                // a configuration a person fixes; dropping batches meanwhile would lose them.
                Some(Some("08" | "57" | "53" | "42")) => Failure::Outage,
                _ => Failure::Other,
            },
            Self::Database(
                sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed
                | sqlx::Error::Protocol(_),
            ) => Failure::Outage,
            Self::Database(_) | Self::Migrate(_) => Failure::Other,
            Self::Turn(_) => Failure::Outage,
            Self::OverBudget(_) => Failure::OverBudget,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// The batch's rows were written.
    Written { packets: usize },
    /// The batch id was already stored: a redelivery, skipped.
    Duplicate,
}

/// What dissection found in a batch, for metrics.
#[derive(Debug, Default)]
pub struct BatchReport {
    pub malformed: Vec<&'static str>,
}

pub struct Store {
    pub pool: PgPool,
    /// Day partitions known to exist (as days since the Unix epoch).
    partitions: Mutex<HashSet<i64>>,
    /// Requests stored without their response yet.
    pending: Mutex<Pending>,
    /// TCP streams followed for L7 across segments.
    streams: Mutex<Streams>,
    /// The session's traffic metrics, when it asks for them.
    traffic: Option<std::sync::Arc<Traffic>>,
}

const NANOS_PER_DAY: u64 = 86_400_000_000_000;

impl Store {
    /// Unfinished TCP messages held in memory (lost if the parser stops now).
    pub fn unfinished_messages(&self) -> usize {
        self.streams.lock().expect("not poisoned").pending()
    }

    /// Forgets the followed TCP streams: after an attempt cut short, its retry feeds them again.
    pub fn forget_streams(&self) {
        self.streams.lock().expect("not poisoned").reset();
    }

    /// Records a batch that cannot be stored (see [`Failure`]): its id (so a redelivery is a no-op),
    /// its packets as dropped with `reason`, and its sniffer's counters, which travel with it.
    /// Returns whether it was recorded now (false: it had been stored or set aside before).
    pub async fn set_aside(&self, batch: &wire::Batch<'_>, reason: &str, error: &str) -> Result<bool, StoreError> {
        let boot_id = hex(&batch.boot_id);
        let mut tx = self.pool.begin().await?;
        let claimed = sqlx::query(
            "INSERT INTO batches (batch_id, session, node, boot_id, batch_seq, packets, final) \
             VALUES ($1, $2, $3, $4, $5, 0, $6) ON CONFLICT (batch_id) DO NOTHING",
        )
        .bind(batch.id())
        .bind(batch.session)
        .bind(batch.node)
        .bind(&boot_id)
        .bind(batch.batch_seq as i64)
        .bind(batch.is_final())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if claimed == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO set_aside_batches (batch_id, session, boot_id, packets, reason, error) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(batch.id())
        .bind(batch.session)
        .bind(&boot_id)
        .bind(batch.packet_count as i32)
        .bind(reason)
        .bind(dissect::text::storable(error.to_owned()))
        .execute(&mut *tx)
        .await?;
        counters::upsert(&mut tx, batch, &boot_id).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Connects and applies the migrations (sqlx holds an advisory lock while it does, so parsers
    /// and the API may start together).
    ///
    /// The server is told to probe the connection (TCP keepalives after 10 s idle, 3 probes 5 s
    /// apart) and to end a transaction idle for 60 s: a parser cut off from PostgreSQL mid-
    /// transaction (its node partitioned) otherwise holds its flow rows' locks until the kernel's
    /// two-hour keepalive, and every other parser of the session waits on them.
    pub async fn connect(url: &str, stream_metrics: StreamMetrics) -> Result<Self, StoreError> {
        let options = sqlx::postgres::PgConnectOptions::from_str(url)?.options([
            ("tcp_keepalives_idle", "10"),
            ("tcp_keepalives_interval", "5"),
            ("tcp_keepalives_count", "3"),
            ("idle_in_transaction_session_timeout", "60s"),
        ]);
        let pool = PgPoolOptions::new().max_connections(4).connect_with(options).await?;
        MIGRATOR.run(&pool).await?;
        Ok(Self {
            pool,
            partitions: Mutex::new(HashSet::new()),
            pending: Mutex::new(Pending::default()),
            streams: Mutex::new(Streams::with_metrics(stream_metrics)),
            traffic: None,
        })
    }

    /// Counts what this store commits as traffic metrics.
    pub fn with_traffic(self, traffic: std::sync::Arc<Traffic>) -> Self {
        Self {
            traffic: Some(traffic),
            ..self
        }
    }

    /// Makes sure the day partitions for `days` exist (creating missing ones outside the batch's transaction).
    pub async fn ensure_partitions(&self, days: impl IntoIterator<Item = i64>) -> Result<(), StoreError> {
        let missing: Vec<i64> = {
            let known = self.partitions.lock().expect("not poisoned");
            days.into_iter()
                .filter(|day| !known.contains(day))
                .collect::<HashSet<_>>()
                .into_iter()
                .collect()
        };
        for day in missing {
            // Bounded like the batches' transactions (see `write`), so a lock cycle through a group
            // waiting for this one ends in a retry.
            let mut tx = self.pool.begin().await?;
            sqlx::query("SET LOCAL lock_timeout = '30s'").execute(&mut *tx).await?;
            sqlx::query("SELECT trawl_ensure_partitions(DATE '1970-01-01' + $1::integer)")
                .bind(day as i32)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            self.partitions.lock().expect("not poisoned").insert(day);
        }
        Ok(())
    }

    /// Removes this session's packets, flows and batch records older than `retention`, then drops
    /// the day partitions no session keeps any more. Returns the packet rows deleted.
    pub async fn expire(&self, session: &str, retention: std::time::Duration) -> Result<u64, StoreError> {
        let seconds = retention.as_secs_f64();
        sqlx::query(
            "INSERT INTO session_retention (session, retention) VALUES ($1, make_interval(secs => $2)) \
             ON CONFLICT (session) DO UPDATE SET retention = EXCLUDED.retention, updated_at = now()",
        )
        .bind(session)
        .bind(seconds)
        .execute(&self.pool)
        .await?;
        let deleted = sqlx::query("DELETE FROM packets WHERE session = $1 AND ts < now() - make_interval(secs => $2)")
            .bind(session)
            .bind(seconds)
            .execute(&self.pool)
            .await?
            .rows_affected();
        for statement in [
            "DELETE FROM segments WHERE session = $1 AND last_ts < now() - make_interval(secs => $2)",
            "DELETE FROM dns_events WHERE session = $1 AND ts < now() - make_interval(secs => $2)",
            "DELETE FROM http_events WHERE session = $1 AND ts < now() - make_interval(secs => $2)",
            "DELETE FROM tls_events WHERE session = $1 AND ts < now() - make_interval(secs => $2)",
            "DELETE FROM traffic_minutes WHERE session = $1 AND minute < now() - make_interval(secs => $2)",
            "DELETE FROM flows WHERE session = $1 AND last_seen < now() - make_interval(secs => $2)",
            "DELETE FROM batches WHERE session = $1 AND stored_at < now() - make_interval(secs => $2)",
            "DELETE FROM set_aside_batches WHERE session = $1 AND set_aside_at < now() - make_interval(secs => $2)",
        ] {
            sqlx::query(statement)
                .bind(session)
                .bind(seconds)
                .execute(&self.pool)
                .await?;
        }
        let dropped: Vec<String> = sqlx::query_scalar("SELECT trawl_drop_expired_partitions()")
            .fetch_all(&self.pool)
            .await?;
        if !dropped.is_empty() {
            tracing::info!(?dropped, "dropped expired partitions");
            let mut known = self.partitions.lock().expect("not poisoned");
            known.clear();
        }
        Ok(deleted)
    }

    /// Stores a group of batches of one session in one transaction: what the broker had ready, so that a
    /// backlog is drained with few, large transactions while a trickle still commits each batch
    /// as it comes. Returns one outcome per batch, in order.
    ///
    /// `turn` orders this group after the one stored before it (see [`crate::turn`]).
    pub async fn store_batches(
        &self,
        batches: &[wire::Batch<'_>],
        store_payload: bool,
        turn: &Turn,
    ) -> Result<(Vec<Stored>, BatchReport), StoreError> {
        let mut report = BatchReport::default();
        let mut days = HashSet::new();
        let mut prepared = Vec::with_capacity(batches.len());
        for batch in batches {
            let mut rows = PacketRows::new(batch, store_payload);
            for packet in batch.packets() {
                let dissection = dissect::summarize(packet.data);
                if let Some(kind) = dissection.malformed {
                    report.malformed.push(kind.as_str());
                }
                days.insert((packet.ts_ns / NANOS_PER_DAY) as i64);
                rows.push(&packet, dissection);
            }
            prepared.push(rows);
        }
        self.ensure_partitions(days).await?;
        let written = self.write(batches, prepared, turn).await;
        if written.is_err() {
            // Another parser's retention run may have dropped a partition this one believes in.
            self.partitions.lock().expect("not poisoned").clear();
        }
        Ok((written?, report))
    }

    async fn write(
        &self,
        batches: &[wire::Batch<'_>],
        mut prepared: Vec<PacketRows<'_, '_>>,
        turn: &Turn,
    ) -> Result<Vec<Stored>, StoreError> {
        turn.begin_attempt();
        let mut tx = self.pool.begin().await?;
        // Waits between groups are invisible to PostgreSQL's deadlock detector; a lock held past
        // this means such a cycle (or a stuck peer), and the retry starts over instead of hanging.
        sqlx::query("SET LOCAL lock_timeout = '30s'").execute(&mut *tx).await?;
        // The batch ids that are new get a segment id; the others were stored before (redeliveries).
        let mut group = Group {
            batches,
            ids: batches.iter().map(wire::Batch::id).collect(),
            boot_ids: batches.iter().map(|b| hex(&b.boot_id)).collect(),
            claimed: Vec::new(),
        };
        turn.previous_claimed().await?;
        group.claimed = sqlx::query_as(
            "INSERT INTO batches (batch_id, session, node, boot_id, batch_seq, packets, final) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::integer[], $7::boolean[]) \
             ON CONFLICT (batch_id) DO NOTHING RETURNING batch_id, segment",
        )
        .bind(&group.ids)
        .bind(batches.iter().map(|b| b.session).collect::<Vec<_>>())
        .bind(batches.iter().map(|b| b.node).collect::<Vec<_>>())
        .bind(&group.boot_ids)
        .bind(batches.iter().map(|b| b.batch_seq as i64).collect::<Vec<_>>())
        .bind(batches.iter().map(|b| b.packet_count as i32).collect::<Vec<_>>())
        .bind(batches.iter().map(wire::Batch::is_final).collect::<Vec<_>>())
        .fetch_all(&mut *tx)
        .await?;
        turn.claimed();
        if group.claimed.is_empty() {
            tx.rollback().await?;
            turn.previous_finished().await?;
            return Ok(vec![Stored::Duplicate; batches.len()]);
        }

        // The packets and segments: nothing another group touches, so written while the previous
        // group may still be writing.
        let mut copy = CopyWriter::new(packet_rows::FIELDS);
        let mut flows = FlowTable::default();
        let mut rollups = Rollups::default();
        let mut kept = Vec::new();
        let mut written = Vec::new();
        let mut outcomes = Vec::with_capacity(batches.len());
        let mut first_of_id = HashSet::new();
        for ((batch, rows), id) in batches.iter().zip(&mut prepared).zip(&group.ids) {
            // A batch id seen twice in one group (a redelivery arriving with the original) counts once.
            let (Some(segment), true) = (group.segment_of(id), first_of_id.insert(id)) else {
                outcomes.push(Stored::Duplicate);
                continue;
            };
            outcomes.push(Stored::Written {
                packets: batch.packet_count as usize,
            });
            rows.add_flows(&mut flows, &mut rollups);
            if batch.packet_count > 0 {
                kept.push((batch, segment, rows.write(&mut copy, segment)));
            }
            written.push(rows);
        }
        if !kept.is_empty() {
            let mut sink = tx.copy_in_raw(packet_rows::COPY).await?;
            sink.send(copy.finish()).await?;
            sink.finish().await?;
        }
        for (batch, segment, kept) in kept {
            segments::insert(&mut tx, batch, segment, kept).await?;
        }

        // From here on in delivery order.
        turn.previous_finished().await?;
        let mut events = Events::default();
        {
            let pending = self.pending.lock().expect("not poisoned");
            let mut streams = self.streams.lock().expect("not poisoned");
            if let Some(first) = written.iter().find_map(|rows| rows.first_ns()) {
                let mut ended = Vec::new();
                streams.end_idle(first, &mut ended);
                for (sent, message) in ended {
                    events.add_message(sent, &message.l7, message.ts_ns, &pending);
                }
            }
            for rows in &written {
                rows.add_events(&mut events, &pending, &mut streams, &mut flows);
            }
            streams.measure();
        }
        // The streams have taken this group's segments: if it is not stored, its retry feeds them again.
        let finished = self.finish(tx, &group, &flows, &rollups, &events).await;
        let event_ids = match finished {
            Ok(event_ids) => event_ids,
            Err(error) => {
                self.streams.lock().expect("not poisoned").reset();
                return Err(error);
            }
        };
        self.pending
            .lock()
            .expect("not poisoned")
            .apply(&events, &event_ids.dns, &event_ids.http, &event_ids.http2);
        if let Some(traffic) = &self.traffic {
            traffic.observe(written.iter().map(|rows| &**rows), &events);
        }
        Ok(outcomes)
    }

    /// The rest of a group's transaction, in delivery order: flows, rollups, events, the sniffers'
    /// counters, and the commit.
    async fn finish(
        &self,
        mut tx: sqlx::Transaction<'_, sqlx::Postgres>,
        group: &Group<'_, '_>,
        flows: &FlowTable,
        rollups: &Rollups,
        events: &Events,
    ) -> Result<events::store::EventIds, StoreError> {
        let session = group.batches[0].session;
        flows.upsert(&mut tx, session).await?;
        rollups.upsert(&mut tx, session).await?;
        let event_ids = events::store::write(&mut tx, session, events).await?;

        // Counters are cumulative: keep the newest (highest batch sequence) per sniffer process.
        let mut newest: Vec<(&wire::Batch<'_>, &String)> = Vec::new();
        for ((batch, boot_id), id) in group.batches.iter().zip(&group.boot_ids).zip(&group.ids) {
            if group.segment_of(id).is_none() {
                continue;
            }
            match newest.iter_mut().find(|(_, known)| *known == boot_id) {
                Some(entry) if entry.0.batch_seq < batch.batch_seq => entry.0 = batch,
                Some(_) => {}
                None => newest.push((batch, boot_id)),
            }
        }
        for (batch, boot_id) in newest {
            counters::upsert(&mut tx, batch, boot_id).await?;
        }
        tx.commit().await?;
        Ok(event_ids)
    }
}

/// The batches of one transaction: their ids, their sniffers' boot ids, and the segments the ids
/// this transaction claimed were given (the others were stored before: redeliveries).
struct Group<'g, 'b> {
    batches: &'g [wire::Batch<'b>],
    ids: Vec<String>,
    boot_ids: Vec<String>,
    claimed: Vec<(String, i64)>,
}

impl Group<'_, '_> {
    fn segment_of(&self, id: &str) -> Option<i64> {
        self.claimed
            .iter()
            .find(|(stored, _)| stored == id)
            .map(|(_, segment)| *segment)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
