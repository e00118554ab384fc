//! The endpoint history in PostgreSQL (`0011_endpoint_history.sql`): an address's row opens when
//! an identity starts holding it and closes when it stops, so a lookup by address and time finds
//! who held it then.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::identity::{Held, Identity};

/// Records that `held.identity` holds `held.address` (a no-op when the open row already says so).
/// The pod or Service that held the address before stops holding it where this one began (or
/// now, if earlier); nodes may share an address, so a node ends only its own earlier row.
pub async fn hold(pool: &PgPool, held: &Held) -> Result<(), sqlx::Error> {
    let identity = &held.identity;
    let address = held.address.to_string();
    let (workload_kind, workload) = match &identity.workload {
        Some(w) => (Some(w.kind.as_str()), Some(w.name.as_str())),
        None => (None, None),
    };
    let mut tx = pool.begin().await?;
    let unchanged: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT FROM endpoint_history WHERE address = $1::inet AND kind = $2 AND until IS NULL \
         AND namespace IS NOT DISTINCT FROM $3 AND name = $4 AND workload_kind IS NOT DISTINCT FROM $5 \
         AND workload IS NOT DISTINCT FROM $6 AND node IS NOT DISTINCT FROM $7)",
    )
    .bind(&address)
    .bind(identity.kind)
    .bind(&identity.namespace)
    .bind(&identity.name)
    .bind(workload_kind)
    .bind(workload)
    .bind(&identity.node)
    .fetch_one(&mut *tx)
    .await?;
    if unchanged {
        return tx.commit().await;
    }
    sqlx::query(
        "UPDATE endpoint_history SET until = greatest(since, least(now(), $3)) \
         WHERE address = $1::inet AND kind = $2 AND until IS NULL \
           AND (kind <> 'node' OR name = $4)",
    )
    .bind(&address)
    .bind(identity.kind)
    .bind(held.since)
    .bind(&identity.name)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO endpoint_history (address, kind, namespace, name, workload_kind, workload, node, since) \
         VALUES ($1::inet, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&address)
    .bind(identity.kind)
    .bind(&identity.namespace)
    .bind(&identity.name)
    .bind(workload_kind)
    .bind(workload)
    .bind(&identity.node)
    .bind(held.since)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// Ends every open row of the object `identity` names whose address is not in `still_held`
/// (all of them when it is gone).
pub async fn release(
    pool: &PgPool,
    identity: &Identity,
    still_held: &[Held],
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let kept: Vec<String> = still_held.iter().map(|h| h.address.to_string()).collect();
    sqlx::query(
        "UPDATE endpoint_history SET until = greatest(since, $5) \
         WHERE kind = $1 AND namespace IS NOT DISTINCT FROM $2 AND name = $3 AND until IS NULL \
         AND NOT (address = ANY($4::inet[]))",
    )
    .bind(identity.kind)
    .bind(&identity.namespace)
    .bind(&identity.name)
    .bind(&kept)
    .bind(at)
    .execute(pool)
    .await?;
    Ok(())
}

/// After a full list of `kind`: ends the open rows of objects the list no longer has (they went
/// while nobody watched).
pub async fn resync(pool: &PgPool, kind: &str, listed: &[(Option<String>, String)]) -> Result<u64, sqlx::Error> {
    let namespaces: Vec<Option<String>> = listed.iter().map(|(namespace, _)| namespace.clone()).collect();
    let names: Vec<String> = listed.iter().map(|(_, name)| name.clone()).collect();
    let ended = sqlx::query(
        "UPDATE endpoint_history SET until = greatest(since, now()) \
         WHERE kind = $1 AND until IS NULL AND NOT EXISTS ( \
             SELECT FROM unnest($2::text[], $3::text[]) AS listed(namespace, name) \
             WHERE listed.namespace IS NOT DISTINCT FROM endpoint_history.namespace \
               AND listed.name = endpoint_history.name)",
    )
    .bind(kind)
    .bind(&namespaces)
    .bind(&names)
    .execute(pool)
    .await?;
    Ok(ended.rows_affected())
}
