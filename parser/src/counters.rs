//! The sniffers' cumulative counters, stored as their batches carry them (the newest per sniffer
//! process wins), so the accounting can tell drops of batches that never arrived.

/// The sniffer process's cumulative counters as `batch` carried them, unless a later batch's are stored.
pub async fn upsert(tx: &mut sqlx::PgConnection, batch: &wire::Batch<'_>, boot_id: &str) -> Result<(), sqlx::Error> {
    let drops: serde_json::Map<String, serde_json::Value> = batch
        .counters
        .drops
        .iter()
        .map(|(reason, n)| (reason.clone(), (*n).into()))
        .collect();
    sqlx::query(
        "INSERT INTO sniffer_counters (boot_id, session, node, batch_seq, captured, kernel_drops, drops, final) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (boot_id) DO UPDATE SET batch_seq = EXCLUDED.batch_seq, captured = EXCLUDED.captured, \
           kernel_drops = EXCLUDED.kernel_drops, drops = EXCLUDED.drops, final = EXCLUDED.final, updated_at = now() \
         WHERE sniffer_counters.batch_seq < EXCLUDED.batch_seq",
    )
    .bind(boot_id)
    .bind(batch.session)
    .bind(batch.node)
    .bind(batch.batch_seq as i64)
    .bind(batch.counters.captured as i64)
    .bind(batch.counters.kernel_drops as i64)
    .bind(serde_json::Value::Object(drops))
    .bind(batch.is_final())
    .execute(tx)
    .await?;
    Ok(())
}
