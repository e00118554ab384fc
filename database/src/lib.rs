//! Trawl's PostgreSQL schema and the session queries shared by the operator (which mirrors
//! CaptureSessions into the `sessions` table) and the API (which reads them back).
//!
//! Every process that touches the database runs [`MIGRATOR`] at start; sqlx holds an advisory
//! lock while it migrates, so parsers, the operator and the API may start together.

use std::collections::BTreeMap;

use crds::{CaptureSession, PacketCounts, condition};
use sqlx::PgPool;

/// How the sniffers' counters name the copies they skipped (see the sniffer's `dedup`).
pub const DEDUPLICATED: &str = "deduplicated";

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Runs [`MIGRATOR`] in the background until it succeeds, for processes that must start (and
/// say why they are not ready) while the database is down. The flag turns true once it has run.
pub fn migrate_in_background(pool: &PgPool) -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    let migrated = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (pool, done) = (pool.clone(), migrated.clone());
    tokio::spawn(async move {
        while let Err(error) = MIGRATOR.run(&pool).await {
            tracing::warn!(%error, "cannot migrate the database; retrying in 5 s");
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        }
        done.store(true, std::sync::atomic::Ordering::Release);
    });
    migrated
}

/// How packets, batches and counters name their session: `namespace/name`.
pub fn session_key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// Captured, dropped (by reason) and stored packets of a session, from what its sniffers'
/// batches carried (`sniffer_counters`) and what its parsers committed (`batches`).
///
/// Kernel drops count as the reason `kernel`. Drops of a lost batch still show, because every
/// batch carries its sniffer's cumulative counters. Batches a parser set aside (`unstorable`,
/// `failed_repeatedly`, `over_time_budget`) count as drops with that reason.
///
/// `created`: the CaptureSession's creation time (RFC 3339). Sniffers first seen before it
/// captured for an earlier session of the same name and do not count (else a re-created session
/// would start with the old totals, and reach its `maxPackets` at once). Kubernetes stamps creation
/// to the second: a session re-created within the second its predecessor's sniffer was first seen
/// (seconds after that sniffer started, in practice never) would count that sniffer too.
pub async fn packet_counts(pool: &PgPool, session: &str, created: Option<&str>) -> Result<PacketCounts, sqlx::Error> {
    let (captured, kernel, by_reason, stored): (i64, i64, sqlx::types::Json<BTreeMap<String, i64>>, i64) =
        sqlx::query_as(
            "WITH sniffers AS ( \
                 SELECT boot_id, captured, kernel_drops, drops FROM sniffer_counters \
                 WHERE session = $1 AND ($2::timestamptz IS NULL OR first_seen >= $2::timestamptz)), \
             counters AS ( \
                 SELECT coalesce(sum(captured), 0)::bigint AS captured, \
                        coalesce(sum(kernel_drops), 0)::bigint AS kernel \
                 FROM sniffers), \
             reasons AS ( \
                 SELECT coalesce(jsonb_object_agg(reason, n), '{}'::jsonb) AS by_reason FROM ( \
                     SELECT reason, sum(n)::bigint AS n FROM ( \
                         SELECT key AS reason, value::bigint AS n FROM sniffers, jsonb_each_text(drops) \
                         UNION ALL \
                         SELECT reason, packets FROM set_aside_batches \
                         WHERE session = $1 AND boot_id IN (SELECT boot_id FROM sniffers)) drops \
                     GROUP BY reason) per_reason), \
             stored AS ( \
                 SELECT coalesce(sum(packets), 0)::bigint AS stored FROM batches \
                 WHERE session = $1 AND boot_id IN (SELECT boot_id FROM sniffers)) \
             SELECT counters.captured, counters.kernel, reasons.by_reason, stored.stored \
             FROM counters, reasons, stored",
        )
        .bind(session)
        .bind(created)
        .fetch_one(pool)
        .await?;
    let mut dropped_by_reason: BTreeMap<String, i64> = by_reason.0.into_iter().filter(|(_, n)| *n > 0).collect();
    // The sniffers' counters carry copies they skipped beside the drops; they are not a loss.
    let deduplicated = dropped_by_reason.remove(DEDUPLICATED).unwrap_or(0);
    if kernel > 0 {
        dropped_by_reason.insert("kernel".into(), kernel);
    }
    Ok(PacketCounts {
        captured,
        dropped: dropped_by_reason.values().sum(),
        dropped_by_reason,
        stored,
        deduplicated,
    })
}

/// What one node's sniffers last reported for a session (summed over their processes).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeCounters {
    pub node: String,
    pub captured: i64,
    /// Kernel drops and drops by reason (copies skipped are not among them).
    pub dropped: i64,
    /// When the newest counters arrived, RFC 3339.
    pub reported_at: String,
    /// The node's newest sniffer process said it stopped (its final batch).
    pub stopped: bool,
}

/// Per node, the sniffers' last counters for `session` (`created`: see [`packet_counts`]).
pub async fn node_counters(
    pool: &PgPool,
    session: &str,
    created: Option<&str>,
) -> Result<Vec<NodeCounters>, sqlx::Error> {
    let rows: Vec<(String, i64, i64, String, bool)> = sqlx::query_as(
        "WITH sniffers AS ( \
             SELECT * FROM sniffer_counters \
             WHERE session = $1 AND ($2::timestamptz IS NULL OR first_seen >= $2::timestamptz)), \
         dropped AS ( \
             SELECT boot_id, coalesce(sum(value::bigint) FILTER (WHERE key <> $3), 0)::bigint AS n \
             FROM sniffers LEFT JOIN LATERAL jsonb_each_text(drops) ON true GROUP BY boot_id), \
         latest AS (SELECT node, max(updated_at) AS newest FROM sniffers GROUP BY node) \
         SELECT node, sum(captured)::bigint, sum(kernel_drops + dropped.n)::bigint, \
                to_char(max(updated_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), \
                bool_or(final AND updated_at = newest) \
         FROM sniffers JOIN dropped USING (boot_id) JOIN latest USING (node) \
         GROUP BY node ORDER BY node",
    )
    .bind(session)
    .bind(created)
    .bind(DEDUPLICATED)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(node, captured, dropped, reported_at, stopped)| NodeCounters {
            node,
            captured,
            dropped,
            reported_at,
            stopped,
        })
        .collect())
}

/// Seconds since the session last stored a batch (or since `created`, RFC 3339, when it never
/// did), by the database's clock.
pub async fn seconds_since_stored(pool: &PgPool, session: &str, created: Option<&str>) -> Result<f64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT coalesce(extract(epoch FROM now() - coalesce(max(stored_at), $2::timestamptz))::float8, 0) \
         FROM batches WHERE session = $1",
    )
    .bind(session)
    .bind(created)
    .fetch_one(pool)
    .await
}

#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error("the session has no namespace, name or uid")]
    Incomplete,
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("cannot encode the session: {0}")]
    Encode(#[from] serde_json::Error),
}

/// Writes the session as it is now (spec and status) into `sessions`. Returns whether the row
/// changed: an unchanged session leaves the row (and its `updated_at`) alone.
pub async fn mirror_session(pool: &PgPool, session: &CaptureSession) -> Result<bool, MirrorError> {
    let meta = &session.metadata;
    let (Some(namespace), Some(name), Some(uid)) = (&meta.namespace, &meta.name, &meta.uid) else {
        return Err(MirrorError::Incomplete);
    };
    let status = session.status.clone().unwrap_or_default();
    let ready = status.conditions.iter().find(|c| c.type_ == condition::READY);
    let phase = status
        .phase
        .as_ref()
        .map(|p| serde_json::to_value(p).map(|v| v.as_str().map(str::to_owned)));
    let phase = phase.transpose()?.flatten();
    let created = meta
        .creation_timestamp
        .as_ref()
        .map(|t| t.0.to_string())
        .unwrap_or_default();
    let result = sqlx::query(
        "INSERT INTO sessions (namespace, name, uid, phase, ready, message, spec, status, created_at, deleted_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, coalesce(nullif($9, '')::timestamptz, now()), NULL) \
         ON CONFLICT (namespace, name) DO UPDATE SET \
             uid = EXCLUDED.uid, phase = EXCLUDED.phase, ready = EXCLUDED.ready, message = EXCLUDED.message, \
             spec = EXCLUDED.spec, status = EXCLUDED.status, created_at = EXCLUDED.created_at, \
             deleted_at = NULL, updated_at = now() \
         WHERE (sessions.uid, sessions.phase, sessions.ready, sessions.message, sessions.spec, sessions.status, \
                sessions.deleted_at) \
               IS DISTINCT FROM \
               (EXCLUDED.uid, EXCLUDED.phase, EXCLUDED.ready, EXCLUDED.message, EXCLUDED.spec, EXCLUDED.status, \
                NULL::timestamptz)",
    )
    .bind(namespace)
    .bind(name)
    .bind(uid)
    .bind(phase)
    .bind(ready.is_some_and(|c| c.status == "True"))
    .bind(ready.map(|c| c.message.clone()))
    .bind(serde_json::to_value(&session.spec)?)
    .bind(serde_json::to_value(&status)?)
    .bind(created)
    .execute(pool)
    .await?;
    Ok(result.rows_affected() > 0)
}

/// Marks a deleted CaptureSession; its row and data stay until the retention passes.
pub async fn mark_deleted(pool: &PgPool, namespace: &str, name: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE sessions SET deleted_at = now(), updated_at = now() WHERE namespace = $1 AND name = $2")
        .bind(namespace)
        .bind(name)
        .execute(pool)
        .await?;
    Ok(())
}
