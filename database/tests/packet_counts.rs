//! Packet counts on a real PostgreSQL: the sums per reason, and a session re-created under an old
//! name starting from zero while the earlier capture's rows stay.
//!
//! Run (after `bash hack/services.sh`): `cargo test -p database --test packet_counts`

use testkit::postgres::TestDatabase;

/// One sniffer process's counters and one stored batch of `stored` packets, first seen `ago`.
async fn sniffer(pool: &sqlx::PgPool, boot_id: &str, ago: &str, captured: i64, queue_full: i64, stored: i32) {
    sqlx::query(
        "INSERT INTO sniffer_counters (boot_id, session, node, batch_seq, captured, kernel_drops, drops, final, first_seen) \
         VALUES ($1, 'team-a/web', 'node-a', 0, $2, 1, jsonb_build_object('queue_full', $3::bigint, 'unroutable', 0), false, \
                 now() - $4::interval)",
    )
    .bind(boot_id)
    .bind(captured)
    .bind(queue_full)
    .bind(ago)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO batches (batch_id, session, node, boot_id, batch_seq, packets, final) \
         VALUES ($1 || '-0', 'team-a/web', 'node-a', $1, 0, $2, false)",
    )
    .bind(boot_id)
    .bind(stored)
    .execute(pool)
    .await
    .unwrap();
}

#[tokio::test]
async fn a_session_created_again_under_the_same_name_counts_only_its_own_sniffers() {
    let database = TestDatabase::create().await;
    let pool = database.pool().await;
    database::MIGRATOR.run(&pool).await.unwrap();
    // The first capture under this name: two sniffers an hour ago.
    sniffer(&pool, "first-a", "1 hour", 100, 10, 89).await;
    sniffer(&pool, "first-b", "59 minutes", 50, 0, 49).await;
    // Deleted, then created again ten minutes ago; its sniffer started after that.
    sniffer(&pool, "second-a", "5 minutes", 7, 2, 4).await;

    let everything = database::packet_counts(&pool, "team-a/web", None).await.unwrap();
    assert_eq!((everything.captured, everything.stored), (157, 142));
    assert_eq!(everything.dropped_by_reason["queue_full"], 12);
    assert_eq!(everything.dropped_by_reason["kernel"], 3);
    assert!(
        !everything.dropped_by_reason.contains_key("unroutable"),
        "zero reasons are left out"
    );

    let created: String = sqlx::query_scalar("SELECT (now() - interval '10 minutes')::text")
        .fetch_one(&pool)
        .await
        .unwrap();
    let second = database::packet_counts(&pool, "team-a/web", Some(&created))
        .await
        .unwrap();
    assert_eq!((second.captured, second.stored, second.dropped), (7, 4, 3));
    assert_eq!(second.captured, second.stored + second.dropped, "{second:?}");
    // The first capture's rows are still there for its retention to remove.
    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM batches WHERE boot_id LIKE 'first-%'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(kept, 2);
    pool.close().await;
}

#[tokio::test]
async fn copies_a_sniffer_skipped_are_deduplicated_not_dropped() {
    let database = TestDatabase::create().await;
    let pool = database.pool().await;
    database::MIGRATOR.run(&pool).await.unwrap();
    sqlx::query(
        "INSERT INTO sniffer_counters (boot_id, session, node, batch_seq, captured, kernel_drops, drops, final) \
         VALUES ('dedup-a', 'team-b/bridge', 'node-a', 0, 186, 0, '{\"deduplicated\": 124, \"queue_full\": 2}', true)",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO batches (batch_id, session, node, boot_id, batch_seq, packets, final) \
         VALUES ('dedup-a-0', 'team-b/bridge', 'node-a', 'dedup-a', 0, 60, true)",
    )
    .execute(&pool)
    .await
    .unwrap();
    let counts = database::packet_counts(&pool, "team-b/bridge", None).await.unwrap();
    assert_eq!(
        (counts.captured, counts.stored, counts.deduplicated, counts.dropped),
        (186, 60, 124, 2)
    );
    assert!(!counts.dropped_by_reason.contains_key("deduplicated"));
}

#[tokio::test]
async fn each_nodes_last_counters_sum_its_sniffer_processes_and_say_whether_the_newest_stopped() {
    let database = TestDatabase::create().await;
    let pool = database.pool().await;
    database::MIGRATOR.run(&pool).await.unwrap();
    // node-a: a process that stopped (final), then its successor, still running. node-b: one
    // process whose last batch was final.
    sqlx::query(
        "INSERT INTO sniffer_counters (boot_id, session, node, batch_seq, captured, kernel_drops, drops, final, updated_at) VALUES \
         ('a-1', 'team-c/web', 'node-a', 9, 100, 1, '{\"deduplicated\": 40, \"queue_full\": 2}', true, now() - interval '1 minute'), \
         ('a-2', 'team-c/web', 'node-a', 3, 50, 0, '{\"shutdown\": 1}', false, now()), \
         ('b-1', 'team-c/web', 'node-b', 4, 70, 0, '{}', true, now())",
    )
    .execute(&pool)
    .await
    .unwrap();
    let nodes = database::node_counters(&pool, "team-c/web", None).await.unwrap();
    let summary: Vec<(&str, i64, i64, bool)> = nodes
        .iter()
        .map(|n| (n.node.as_str(), n.captured, n.dropped, n.stopped))
        .collect();
    assert_eq!(summary, [("node-a", 150, 4, false), ("node-b", 70, 0, true)]);
    assert!(nodes[0].reported_at.ends_with('Z'), "{}", nodes[0].reported_at);
}
