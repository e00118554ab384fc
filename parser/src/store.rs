//! Writes a dissected batch to PostgreSQL in one transaction: the batch id, the batch's frames as
//! one segment, a narrow index row per packet (binary COPY), the flows it touches and its
//! sniffer's counters. The batch id row makes a redelivered batch a no-op, so each batch takes
//! effect exactly once.

use std::collections::HashSet;
use std::sync::Mutex;

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::flows::FlowTable;
use crate::packet_rows::{self, PacketRows};

pub use database::MIGRATOR;

/// The most packets one segment (one batch) may hold: a packet id is `segment << 20 | position`.
pub const MAX_SEGMENT_PACKETS: u32 = 1 << packet_rows::POSITION_BITS;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

#[derive(Debug, PartialEq, Eq)]
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
}

/// Tables partitioned by day.
const PARTITIONED: [&str; 2] = ["packets", "segments"];

const NANOS_PER_DAY: u64 = 86_400_000_000_000;

impl Store {
    /// Connects and applies the migrations (sqlx holds an advisory lock while it does, so parsers
    /// and the API may start together).
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new().max_connections(4).connect(url).await?;
        MIGRATOR.run(&pool).await?;
        Ok(Self {
            pool,
            partitions: Mutex::new(HashSet::new()),
        })
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
            for parent in PARTITIONED {
                sqlx::query("SELECT trawl_ensure_partition($1, DATE '1970-01-01' + $2::integer)")
                    .bind(parent)
                    .bind(day as i32)
                    .execute(&self.pool)
                    .await?;
            }
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
            "DELETE FROM flows WHERE session = $1 AND last_seen < now() - make_interval(secs => $2)",
            "DELETE FROM batches WHERE session = $1 AND stored_at < now() - make_interval(secs => $2)",
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

    pub async fn store_batch(
        &self,
        batch: &wire::Batch<'_>,
        store_payload: bool,
    ) -> Result<(Stored, BatchReport), StoreError> {
        let mut report = BatchReport::default();
        let mut flows = FlowTable::default();
        let mut rows = PacketRows::new(batch, store_payload);
        let mut days = HashSet::new();
        for packet in batch.packets() {
            let dissection = dissect::summarize(packet.data);
            if let Some(kind) = dissection.malformed {
                report.malformed.push(kind.as_str());
            }
            flows.add(&dissection, packet.ts_ns, packet.original_len);
            days.insert((packet.ts_ns / NANOS_PER_DAY) as i64);
            rows.push(&packet, dissection);
        }
        self.ensure_partitions(days).await?;
        let written = self.write(batch, rows, &flows).await;
        if written.is_err() {
            // Another parser's retention run may have dropped a partition this one believes in.
            self.partitions.lock().expect("not poisoned").clear();
        }
        Ok((written?, report))
    }

    async fn write(
        &self,
        batch: &wire::Batch<'_>,
        rows: PacketRows<'_, '_>,
        flows: &FlowTable,
    ) -> Result<Stored, StoreError> {
        let boot_id = hex(&batch.boot_id);
        let mut tx = self.pool.begin().await?;
        let segment: Option<i64> = sqlx::query_scalar(
            "INSERT INTO batches (batch_id, session, node, boot_id, batch_seq, packets, final) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (batch_id) DO NOTHING RETURNING segment",
        )
        .bind(batch.id())
        .bind(batch.session)
        .bind(batch.node)
        .bind(&boot_id)
        .bind(batch.batch_seq as i64)
        .bind(batch.packet_count as i32)
        .bind(batch.is_final())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(segment) = segment else {
            tx.rollback().await?;
            return Ok(Stored::Duplicate);
        };
        if batch.packet_count > 0 {
            let (copy, kept) = rows.finish(segment);
            let mut sink = tx.copy_in_raw(packet_rows::COPY).await?;
            sink.send(copy).await?;
            sink.finish().await?;
            sqlx::query(
                "INSERT INTO segments (id, session, node, interfaces, first_ts, last_ts, packets, payload_kept, records) \
                 VALUES ($1, $2, $3, $4, 'epoch'::timestamptz + $5 * interval '1 microsecond', \
                   'epoch'::timestamptz + $6 * interval '1 microsecond', $7, $8, $9)",
            )
            .bind(segment)
            .bind(batch.session)
            .bind(batch.node)
            .bind(&batch.interfaces)
            .bind((kept.first_ns / 1_000) as i64)
            .bind((kept.last_ns / 1_000) as i64)
            .bind(batch.packet_count as i32)
            .bind(kept.payload_kept)
            .bind(kept.records)
            .execute(&mut *tx)
            .await?;
        }
        upsert_flows(&mut tx, batch.session, flows).await?;
        let drops: serde_json::Map<String, serde_json::Value> = batch
            .counters
            .drops
            .iter()
            .map(|(reason, n)| (reason.clone(), (*n).into()))
            .collect();
        // Counters are cumulative: keep the newest (highest batch sequence) per sniffer process.
        sqlx::query(
            "INSERT INTO sniffer_counters (boot_id, session, node, batch_seq, captured, kernel_drops, drops, final) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (boot_id) DO UPDATE SET batch_seq = EXCLUDED.batch_seq, captured = EXCLUDED.captured, \
               kernel_drops = EXCLUDED.kernel_drops, drops = EXCLUDED.drops, final = EXCLUDED.final, updated_at = now() \
             WHERE sniffer_counters.batch_seq < EXCLUDED.batch_seq",
        )
        .bind(&boot_id)
        .bind(batch.session)
        .bind(batch.node)
        .bind(batch.batch_seq as i64)
        .bind(batch.counters.captured as i64)
        .bind(batch.counters.kernel_drops as i64)
        .bind(serde_json::Value::Object(drops))
        .bind(batch.is_final())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Stored::Written {
            packets: batch.packet_count as usize,
        })
    }
}

async fn upsert_flows(tx: &mut sqlx::PgConnection, session: &str, flows: &FlowTable) -> Result<(), sqlx::Error> {
    if flows.flows.is_empty() {
        return Ok(());
    }
    let mut keys = Vec::new();
    let (mut protocols, mut transports, mut a_addrs, mut a_ports, mut b_addrs, mut b_ports) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut initiators, mut firsts, mut lasts) = (Vec::new(), Vec::new(), Vec::new());
    let (mut packets_ab, mut bytes_ab, mut packets_ba, mut bytes_ba) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut flags, mut l7s, mut names) = (Vec::new(), Vec::new(), Vec::new());
    for (key, flow) in &flows.flows {
        keys.push(key.text());
        protocols.push(key.ip_protocol.map(i16::from));
        transports.push(flow.transport.clone());
        a_addrs.push(key.a.0.map(|a| a.to_string()));
        a_ports.push(key.a.1.map(i32::from));
        b_addrs.push(key.b.0.map(|a| a.to_string()));
        b_ports.push(key.b.1.map(i32::from));
        initiators.push(flow.initiator.to_string());
        firsts.push((flow.first_ns / 1_000) as i64);
        lasts.push((flow.last_ns / 1_000) as i64);
        packets_ab.push(flow.packets_ab);
        bytes_ab.push(flow.bytes_ab);
        packets_ba.push(flow.packets_ba);
        bytes_ba.push(flow.bytes_ba);
        flags.push(i16::from(flow.tcp_flags));
        l7s.push(flow.l7.clone());
        names.push(flow.l7_name.clone());
    }
    sqlx::query(
        "INSERT INTO flows (session, flow_key, ip_protocol, transport, a_addr, a_port, b_addr, b_port, initiator, \
           first_seen, last_seen, packets_ab, bytes_ab, packets_ba, bytes_ba, tcp_flags, l7, l7_name) \
         SELECT $1, k, p, t, aa::inet, ap, ba::inet, bp, i, to_timestamp(f / 1e6), to_timestamp(l / 1e6), pab, bab, pba, bba, fl, l7, n \
         FROM unnest($2::text[], $3::smallint[], $4::text[], $5::text[], $6::integer[], $7::text[], $8::integer[], \
           $9::text[], $10::bigint[], $11::bigint[], $12::bigint[], $13::bigint[], $14::bigint[], $15::bigint[], \
           $16::smallint[], $17::text[], $18::text[]) \
           AS u(k, p, t, aa, ap, ba, bp, i, f, l, pab, bab, pba, bba, fl, l7, n) \
         ON CONFLICT (session, flow_key) DO UPDATE SET \
           first_seen = least(flows.first_seen, EXCLUDED.first_seen), \
           last_seen = greatest(flows.last_seen, EXCLUDED.last_seen), \
           packets_ab = flows.packets_ab + EXCLUDED.packets_ab, bytes_ab = flows.bytes_ab + EXCLUDED.bytes_ab, \
           packets_ba = flows.packets_ba + EXCLUDED.packets_ba, bytes_ba = flows.bytes_ba + EXCLUDED.bytes_ba, \
           tcp_flags = flows.tcp_flags | EXCLUDED.tcp_flags, \
           initiator = CASE WHEN EXCLUDED.first_seen < flows.first_seen THEN EXCLUDED.initiator ELSE flows.initiator END, \
           l7 = CASE WHEN flows.l7 IS NULL THEN EXCLUDED.l7 ELSE flows.l7 END, \
           l7_name = coalesce(flows.l7_name, EXCLUDED.l7_name)",
    )
    .bind(session)
    .bind(keys)
    .bind(protocols)
    .bind(transports)
    .bind(a_addrs)
    .bind(a_ports)
    .bind(b_addrs)
    .bind(b_ports)
    .bind(initiators)
    .bind(firsts)
    .bind(lasts)
    .bind(packets_ab)
    .bind(bytes_ab)
    .bind(packets_ba)
    .bind(bytes_ba)
    .bind(flags)
    .bind(l7s)
    .bind(names)
    .execute(tx)
    .await?;
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
