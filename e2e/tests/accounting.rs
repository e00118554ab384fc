//! Every packet accounted for: what the wire carried is in PostgreSQL exactly once or counted as
//! dropped with a reason, under steady traffic, bursts, and the failure of each part.
//!
//! Run (as root, after `bash hack/services.sh`): `cargo test -p e2e --test accounting`

use std::time::Duration;

use e2e::{Broker, BrokerChoice, Database, Pipeline, PipelineOptions};
use testkit::wait_until;

const DEADLINE: Duration = Duration::from_secs(180);

/// Waits until at least `rows` packets are stored (so that a fault lands mid-run).
async fn stored_at_least(pipeline: &Pipeline, rows: u64) {
    wait_until(&format!("{rows} stored rows"), DEADLINE, || async {
        (pipeline.stored().await >= rows).then_some(())
    })
    .await;
}

fn finish(sender: &mut std::process::Child) {
    let status = sender.wait().unwrap();
    assert!(status.success(), "the traffic generator failed");
}

#[tokio::test]
async fn steady_traffic_is_stored_exactly_once() {
    let mut pipeline = Pipeline::start(PipelineOptions::default()).await;
    pipeline.offer(20_000, 4_000);
    pipeline.stop_sniffer();
    let accounting = pipeline.settle().await;
    accounting.assert_balanced();
    assert_eq!(
        accounting.stored, 20_000,
        "no drops expected at this rate: {accounting:?}"
    );
}

#[tokio::test]
async fn a_parser_killed_mid_batch_and_restarted_loses_and_duplicates_nothing() {
    let mut pipeline = Pipeline::start(PipelineOptions::default()).await;
    let mut sender = pipeline.offer_in_background(24_000, 3_000);
    stored_at_least(&pipeline, 3_000).await;
    pipeline.stop_parser("KILL");
    pipeline.add_parser();
    finish(&mut sender);
    pipeline.stop_sniffer();
    let accounting = pipeline.settle().await;
    accounting.assert_balanced();
    assert_eq!(accounting.stored, 24_000, "{accounting:?}");
}

#[tokio::test]
async fn a_rabbitmq_restart_during_the_run_is_buffered_and_counted() {
    let mut pipeline = Pipeline::start(PipelineOptions {
        broker: BrokerChoice::Private,
        ..Default::default()
    })
    .await;
    let mut sender = pipeline.offer_in_background(24_000, 3_000);
    stored_at_least(&pipeline, 3_000).await;
    let Broker::Private(broker) = &mut pipeline.broker else {
        unreachable!()
    };
    broker.restart();
    finish(&mut sender);
    pipeline.stop_sniffer();
    let accounting = pipeline.settle().await;
    accounting.assert_balanced();
    assert!(accounting.stored > 0);
}

/// Issue #35: on a three-node RabbitMQ cluster with quorum queues, the node that leads the
/// session's queue stops while traffic flows; the sniffer and the parser connect to another node
/// of the list and the queue's other replicas carry on: nothing is dropped.
#[tokio::test]
async fn a_quorum_queues_leader_stopped_during_the_run_loses_nothing() {
    let mut pipeline = Pipeline::start(PipelineOptions {
        broker: BrokerChoice::Cluster(3),
        queue_type: queues::QueueType::Quorum,
        ..Default::default()
    })
    .await;
    let mut sender = pipeline.offer_in_background(24_000, 3_000);
    stored_at_least(&pipeline, 3_000).await;
    let Broker::Cluster(nodes) = &mut pipeline.broker else {
        unreachable!()
    };
    let leader = nodes[0]
        .quorum_leader(&pipeline.queue)
        .expect("the session's queue is a quorum queue with a leader");
    let leading = nodes
        .iter_mut()
        .find(|node| node.node == leader)
        .unwrap_or_else(|| panic!("{leader} is one of the cluster's nodes"));
    leading.stop();
    finish(&mut sender);
    pipeline.stop_sniffer();
    let accounting = pipeline.settle().await;
    accounting.assert_balanced();
    assert_eq!(accounting.stored, 24_000, "nothing dropped: {accounting:?}");
    let Broker::Cluster(nodes) = &pipeline.broker else {
        unreachable!()
    };
    let survivor = nodes.iter().find(|node| node.running()).expect("two nodes run");
    assert_ne!(
        survivor.quorum_leader(&pipeline.queue).as_deref(),
        Some(leader.as_str()),
        "another node leads the queue now"
    );
}

#[tokio::test]
async fn a_postgresql_restart_during_the_run_is_waited_out() {
    let mut pipeline = Pipeline::start(PipelineOptions {
        private_database: true,
        ..Default::default()
    })
    .await;
    let mut sender = pipeline.offer_in_background(24_000, 3_000);
    stored_at_least(&pipeline, 3_000).await;
    let Database::Private(server) = &mut pipeline.database else {
        unreachable!()
    };
    server.stop();
    // Traffic goes on while the database is away: batches wait in the queue, unacked.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let Database::Private(server) = &mut pipeline.database else {
        unreachable!()
    };
    server.resume();
    finish(&mut sender);
    pipeline.stop_sniffer();
    let accounting = pipeline.settle().await;
    accounting.assert_balanced();
    assert_eq!(
        accounting.stored, 24_000,
        "a database outage must not drop anything: {accounting:?}"
    );
}

#[tokio::test]
async fn a_sniffer_stopped_while_traffic_flows_stores_everything_it_captured() {
    let mut pipeline = Pipeline::start(PipelineOptions::default()).await;
    let mut sender = pipeline.offer_in_background(30_000, 3_000);
    stored_at_least(&pipeline, 3_000).await;
    pipeline.stop_sniffer();
    finish(&mut sender);
    let accounting = pipeline.settle().await;
    // Frames sent after the sniffer stopped were never captured; the rest must all be there.
    accounting.assert_captured_balanced();
    assert!(
        accounting.captured >= 3_000 && accounting.captured < accounting.offered,
        "{accounting:?}"
    );
    assert_eq!(accounting.dropped(), 0, "a clean stop drops nothing: {accounting:?}");
}

/// Waits until the running parsers consume `expected` shards each (in start order).
async fn shards_consumed(pipeline: &Pipeline, expected: &[u64]) {
    wait_until(&format!("parsers consuming {expected:?} shards"), DEADLINE, || async {
        let mut consumed = pipeline.parser_shards();
        consumed.sort_unstable();
        let mut wanted = expected.to_vec();
        wanted.sort_unstable();
        (consumed == wanted).then_some(())
    })
    .await;
}

#[tokio::test]
async fn parsers_scaled_up_and_down_during_the_run_lose_and_duplicate_nothing() {
    // Four shards: each parser consumes whole shards (a flow stays with one parser), and the
    // shards move when parsers come and go.
    let mut pipeline = Pipeline::start(PipelineOptions {
        shards: 4,
        ..Default::default()
    })
    .await;
    shards_consumed(&pipeline, &[4]).await;
    let mut sender = pipeline.offer_in_background(30_000, 3_000);
    stored_at_least(&pipeline, 2_000).await;
    pipeline.add_parser();
    pipeline.add_parser();
    assert_eq!(pipeline.parsers(), 3);
    shards_consumed(&pipeline, &[2, 1, 1]).await;
    stored_at_least(&pipeline, 12_000).await;
    pipeline.stop_parser("TERM");
    pipeline.stop_parser("TERM");
    assert_eq!(pipeline.parsers(), 1);
    // The stopped parsers gave their leases up: the last one takes every shard without waiting
    // for them to expire.
    shards_consumed(&pipeline, &[4]).await;
    finish(&mut sender);
    pipeline.stop_sniffer();
    let accounting = pipeline.settle().await;
    accounting.assert_balanced();
    assert_eq!(accounting.stored, 30_000, "{accounting:?}");
}

#[tokio::test]
async fn a_burst_against_a_small_queue_is_counted_as_queue_full_and_drains() {
    // No parser while the burst lands, and a queue that holds a few batches of 256 packets
    // (about 130 KiB each): the broker must reject most of the burst's 78 batches.
    let mut pipeline = Pipeline::start(PipelineOptions {
        parsers: 0,
        queue_max_bytes: 1 << 20,
        sniffer_args: vec!["--batch-packets".into(), "256".into()],
        ..Default::default()
    })
    .await;
    pipeline.offer(20_000, 8_000);
    pipeline.add_parser();
    // The backlog drains, then the sniffer's final counters can be stored too.
    stored_at_least(&pipeline, 1).await;
    pipeline.stop_sniffer();
    let accounting = pipeline.settle().await;
    accounting.assert_balanced();
    let queue_full = accounting.drops.get("queue_full").copied().unwrap_or(0);
    assert!(queue_full > 0, "the burst should overflow the queue: {accounting:?}");
    assert!(accounting.stored > 0 && accounting.stored < 20_000, "{accounting:?}");
}
