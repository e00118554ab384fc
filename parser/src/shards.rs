//! Which of the session's shards this parser consumes (issue #19: a flow's packets reach one
//! parser, so its TCP streams can be reassembled). The parsers agree through PostgreSQL, which they
//! all reach anyway (table comments in `0010_parser_shards.sql`):
//!
//! - every parser registers as a member each second; members not seen for [`LEASE`] are gone;
//! - the live members sorted by name split the shards: the member of rank r wants `shard % n == r`;
//! - a shard is consumed only under a lease row naming this parser, renewed each second, so two
//!   parsers never consume one shard at once (a lease not renewed for [`LEASE`] may be taken);
//! - a shard this parser no longer wants is first dropped from its subscriptions, and its lease
//!   is released only when the consumer says so, so its next owner starts after it stopped.
//!
//! When parsers come or go, a moved shard's TCP streams stay behind in the parser that had them
//! and end there as `idle` after its stream timeout (counted in
//! `trawl_parser_tcp_stream_outcomes_total`); its new owner meets those flows mid-stream and
//! reassembles only what begins after the move. Storage is unaffected: a batch's id keeps it
//! exactly once whichever parser stores it.

use std::collections::BTreeSet;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::watch;

/// How long a member or a lease lives without being renewed.
pub const LEASE: Duration = Duration::from_secs(10);
const ROUND: Duration = Duration::from_secs(1);

pub type ShardSet = BTreeSet<u16>;

pub struct ShardLeases {
    pool: PgPool,
    /// The session's queue (shard 0's name), which names the session's shards.
    queue: String,
    shards: u16,
    holder: String,
}

impl ShardLeases {
    pub fn new(pool: PgPool, queue: String, shards: u16, holder: String) -> Self {
        Self {
            pool,
            queue,
            shards: shards.max(1),
            holder,
        }
    }

    /// One round: says this parser is alive, releases the leases of shards it neither wants nor
    /// still consumes, renews and takes leases, and returns the shards it may consume now.
    pub async fn round(&self, consuming: &ShardSet) -> Result<ShardSet, sqlx::Error> {
        let lease = LEASE.as_secs_f64();
        sqlx::query(
            "INSERT INTO parser_members (queue, holder, seen_at) VALUES ($1, $2, now()) \
             ON CONFLICT (queue, holder) DO UPDATE SET seen_at = now()",
        )
        .bind(&self.queue)
        .bind(&self.holder)
        .execute(&self.pool)
        .await?;
        let members: Vec<String> = sqlx::query_scalar(
            "SELECT holder FROM parser_members WHERE queue = $1 \
             AND seen_at > now() - make_interval(secs => $2) ORDER BY holder",
        )
        .bind(&self.queue)
        .bind(lease)
        .fetch_all(&self.pool)
        .await?;
        let wanted = wanted(&members, &self.holder, self.shards);
        let keep: Vec<i32> = wanted.union(consuming).map(|&shard| i32::from(shard)).collect();
        sqlx::query("DELETE FROM parser_shards WHERE queue = $1 AND holder = $2 AND shard <> ALL($3)")
            .bind(&self.queue)
            .bind(&self.holder)
            .bind(&keep)
            .execute(&self.pool)
            .await?;
        let held: Vec<i32> = sqlx::query_scalar(
            "INSERT INTO parser_shards (queue, shard, holder, renewed_at) \
             SELECT $1, shard, $2, now() FROM unnest($3::integer[]) AS shard \
             ON CONFLICT (queue, shard) DO UPDATE SET holder = excluded.holder, renewed_at = now() \
             WHERE parser_shards.holder = excluded.holder \
                OR parser_shards.renewed_at < now() - make_interval(secs => $4) \
             RETURNING shard",
        )
        .bind(&self.queue)
        .bind(&self.holder)
        .bind(&keep)
        .bind(lease)
        .fetch_all(&self.pool)
        .await?;
        Ok(held
            .into_iter()
            .filter_map(|shard| u16::try_from(shard).ok())
            .filter(|shard| wanted.contains(shard))
            .collect())
    }

    /// Gives every lease up at once (after the consumer stopped), so the others need not wait for
    /// them to expire.
    pub async fn leave(&self) -> Result<(), sqlx::Error> {
        for statement in [
            "DELETE FROM parser_shards WHERE queue = $1 AND holder = $2",
            "DELETE FROM parser_members WHERE queue = $1 AND holder = $2",
        ] {
            sqlx::query(statement)
                .bind(&self.queue)
                .bind(&self.holder)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// Runs rounds until `stop`, publishing the shards this parser may consume to `allowed` and
    /// reading what the consumer consumes from `consuming`. A database outage keeps the last
    /// answer until the leases would have expired, then consumes nothing.
    pub async fn keep(
        &self,
        allowed: watch::Sender<ShardSet>,
        consuming: watch::Receiver<ShardSet>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut last_success = tokio::time::Instant::now();
        while !*stop.borrow() {
            let current = consuming.borrow().clone();
            match self.round(&current).await {
                Ok(shards) => {
                    last_success = tokio::time::Instant::now();
                    allowed.send_if_modified(|old| {
                        let changed = *old != shards;
                        if changed {
                            tracing::info!(?shards, "consuming shards");
                            *old = shards;
                        }
                        changed
                    });
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot renew the shard leases");
                    // Someone else may take them after LEASE: stop consuming a little before.
                    if last_success.elapsed() > LEASE / 2 {
                        allowed.send_if_modified(|old| !std::mem::take(old).is_empty());
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(ROUND) => {}
                _ = stop.changed() => {}
            }
        }
    }
}

/// The shards the member `holder` wants among `members` (sorted): every `members.len()`-th,
/// starting at its rank. None while it is not among them yet.
fn wanted(members: &[String], holder: &str, shards: u16) -> ShardSet {
    let Some(rank) = members.iter().position(|member| member == holder) else {
        return ShardSet::new();
    };
    (0..shards)
        .filter(|shard| usize::from(*shard) % members.len() == rank)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| name.to_string()).collect()
    }

    #[test]
    fn members_split_the_shards_by_rank() {
        let two = members(&["a", "b"]);
        assert_eq!(wanted(&two, "a", 4), ShardSet::from([0, 2]));
        assert_eq!(wanted(&two, "b", 4), ShardSet::from([1, 3]));
        let three = members(&["a", "b", "c"]);
        let all: Vec<ShardSet> = ["a", "b", "c"].iter().map(|m| wanted(&three, m, 4)).collect();
        assert_eq!(all, [ShardSet::from([0, 3]), ShardSet::from([1]), ShardSet::from([2])]);
        assert_eq!(wanted(&members(&["a"]), "a", 3), ShardSet::from([0, 1, 2]));
    }

    #[test]
    fn more_members_than_shards_leaves_some_idle_and_strangers_want_nothing() {
        let three = members(&["a", "b", "c"]);
        assert_eq!(wanted(&three, "c", 2), ShardSet::new());
        assert_eq!(wanted(&three, "z", 2), ShardSet::new());
    }
}
