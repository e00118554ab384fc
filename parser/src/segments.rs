//! Segments: one row per stored batch, holding its packets' records in the wire format's layout
//! (headers only unless payload is kept), which the API reads packets' bytes back from.

use crate::packet_rows::Kept;

/// The batch's segment, in the group's transaction.
pub async fn insert(
    tx: &mut sqlx::PgConnection,
    batch: &wire::Batch<'_>,
    segment: i64,
    kept: Kept,
) -> Result<(), sqlx::Error> {
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
    .execute(tx)
    .await?;
    Ok(())
}
