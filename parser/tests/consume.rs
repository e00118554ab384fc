//! The real `trawl-parser` against a real RabbitMQ and PostgreSQL: batches in the sniffer's format
//! are stored exactly once, redeliveries are skipped, foreign messages are dead-lettered, and a
//! parser killed mid-stream loses and duplicates nothing after a restart.
//!
//! Run (after `bash hack/services.sh`): `cargo test -p parser --test consume`

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Duration;

use lapin::options::{BasicGetOptions, BasicPublishOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection};
use testkit::postgres::TestDatabase;
use testkit::process::{Service, free_port};
use testkit::rabbitmq::TestVhost;
use testkit::wait_until;
use testkit::{batches, frames};
use wire::{Counters, FLAG_FINAL, Origin};

const DEADLINE: Duration = Duration::from_secs(60);
const QUEUE: &str = "session-under-test";
const DEAD: &str = "session-under-test.dead";

struct Rig {
    parser: Option<Service>,
    channel: Channel,
    _connection: Connection,
    vhost: TestVhost,
    database: TestDatabase,
    metrics_port: u16,
}

impl Rig {
    async fn new() -> Self {
        let database = TestDatabase::create().await;
        let vhost = TestVhost::create();
        let connection = Connection::connect(&vhost.amqp_url, Default::default()).await.unwrap();
        let channel = connection.create_channel().await.unwrap();
        let durable = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        channel
            .queue_declare(DEAD.into(), durable, FieldTable::default())
            .await
            .unwrap();
        // As the operator declares a session queue: rejected messages go to its dead-letter queue.
        let mut arguments = FieldTable::default();
        arguments.insert("x-dead-letter-exchange".into(), AMQPValue::LongString("".into()));
        arguments.insert("x-dead-letter-routing-key".into(), AMQPValue::LongString(DEAD.into()));
        channel.queue_declare(QUEUE.into(), durable, arguments).await.unwrap();
        Self::around(database, vhost, connection, channel)
    }

    fn around(database: TestDatabase, vhost: TestVhost, connection: Connection, channel: Channel) -> Self {
        Self {
            parser: None,
            channel,
            _connection: connection,
            vhost,
            database,
            metrics_port: free_port(),
        }
    }

    /// A session queue exactly as the operator declares a quorum one (with the delivery limit).
    async fn new_quorum() -> Self {
        let database = TestDatabase::create().await;
        let vhost = TestVhost::create();
        let connection = Connection::connect(&vhost.amqp_url, Default::default()).await.unwrap();
        let channel = connection.create_channel().await.unwrap();
        queues::declare_session_queue(&channel, QUEUE, 1, 64 << 20, queues::QueueType::Quorum)
            .await
            .unwrap();
        Self::around(database, vhost, connection, channel)
    }

    fn start_parser(&mut self) {
        self.start_parser_with(&[]);
    }

    fn start_parser_with(&mut self, extra: &[&str]) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_trawl-parser"));
        command
            .args([
                "--session",
                "test/consume",
                "--queue",
                QUEUE,
                "--amqp-url",
                &self.vhost.amqp_url,
            ])
            .args(["--database-url", &self.database.url, "--prefetch", "4"])
            .args(["--listen", &format!("127.0.0.1:{}", self.metrics_port)])
            .args(extra);
        self.parser = Some(Service::start("trawl-parser", command));
    }

    async fn publish(&self, body: &[u8], properties: BasicProperties) {
        self.channel
            .basic_publish(
                "".into(),
                QUEUE.into(),
                BasicPublishOptions::default(),
                body,
                properties,
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }

    async fn publish_batch(&self, id: &str, body: &[u8]) {
        batches::publish(&self.channel, "", QUEUE, id, body).await;
    }

    fn metric(&self, name: &str) -> Option<u64> {
        testkit::metrics::value(&testkit::metrics::scrape(self.metrics_port)?, name)
    }

    async fn wait_metric(&self, name: &str, at_least: u64) {
        wait_until(&format!("{name} >= {at_least}"), DEADLINE, || async {
            (self.metric(name)? >= at_least).then_some(())
        })
        .await;
    }

    async fn count(&self, sql: &str) -> i64 {
        let pool = self.database.pool().await;
        let n = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        n
    }
}

fn origin() -> Origin {
    batches::origin("test/consume", "node-a")
}

/// Batch `batch_seq` of `origin`, packets numbered from `first_seq`: DNS, HTTP and TLS in turn.
fn l7_batch(origin: &Origin, batch_seq: u64, first_seq: u64, packets: u64, flags: u16) -> Vec<u8> {
    batches::l7_batch_at(batches::now_nanos(), origin, batch_seq, first_seq, packets, flags)
}

/// Packets stored under distinct (sniffer process, packet sequence) pairs: a duplicate would count once.
const DISTINCT_PACKETS: &str =
    "SELECT count(DISTINCT (b.boot_id, p.seq)) FROM packets p JOIN batches b ON b.segment = p.id >> 20";

#[tokio::test]
async fn batches_are_stored_once_and_foreign_messages_dead_lettered() {
    let mut rig = Rig::new().await;
    let origin = origin();
    let batches = [
        l7_batch(&origin, 0, 0, 12, 0),
        l7_batch(&origin, 1, 12, 12, 0),
        l7_batch(&origin, 2, 24, 6, FLAG_FINAL),
    ];
    for (seq, body) in batches.iter().enumerate() {
        rig.publish_batch(&origin.batch_id(seq as u64), body).await;
    }
    // A redelivery of batch 1, and two messages this parser must not guess at.
    rig.publish_batch(&origin.batch_id(1), &batches[1]).await;
    rig.publish(
        b"{\"not\": \"a batch\"}",
        BasicProperties::default().with_content_type("application/json".into()),
    )
    .await;
    let future_version = FieldTable::from(BTreeMap::from([(
        wire::SCHEMA_HEADER.into(),
        AMQPValue::LongLongInt(99),
    )]));
    rig.publish(
        &batches[0],
        BasicProperties::default()
            .with_content_type(wire::CONTENT_TYPE.into())
            .with_headers(future_version),
    )
    .await;

    rig.start_parser();
    rig.wait_metric("trawl_parser_batches_consumed_total", 4).await;
    rig.wait_metric("trawl_parser_redeliveries_skipped_total", 1).await;

    assert_eq!(rig.count("SELECT count(*) FROM packets").await, 30);
    assert_eq!(rig.count(DISTINCT_PACKETS).await, 30);
    assert_eq!(rig.count("SELECT count(*) FROM batches").await, 3);
    assert_eq!(
        rig.count("SELECT count(*) FROM packets WHERE l7 = 'dns' AND l7_name LIKE 'q%.example.org'")
            .await,
        10
    );
    assert_eq!(
        rig.count("SELECT count(*) FROM packets WHERE l7 = 'http' AND l7_name = 'web.example.org'")
            .await,
        10
    );
    assert_eq!(
        rig.count("SELECT count(*) FROM packets WHERE l7 = 'tls' AND l7_name = 'secure.example.org'")
            .await,
        10
    );
    // Headers only (storePayload is off): nothing past the transport header is kept, and one
    // segment per batch holds the records (26-byte record headers plus at most 54 bytes each).
    assert_eq!(
        rig.count("SELECT count(*) FROM segments WHERE NOT payload_kept AND octet_length(records) <= packets * (26 + 14 + 20 + 20)")
            .await,
        3
    );
    // One L7 event per DNS query, HTTP request and ClientHello, the redelivery counted once.
    assert_eq!(
        rig.count("SELECT count(*) FROM dns_events WHERE query LIKE 'q%.example.org' AND query_type = 'A'")
            .await,
        10
    );
    assert_eq!(
        rig.count("SELECT count(*) FROM http_events WHERE method = 'GET' AND host = 'web.example.org'")
            .await,
        10
    );
    assert_eq!(
        rig.count("SELECT count(*) FROM tls_events WHERE sni = 'secure.example.org' AND ja4 LIKE 't13d%'")
            .await,
        10
    );
    // The per-minute rollups count each packet once too.
    assert_eq!(
        rig.count("SELECT sum(packets)::bigint FROM traffic_minutes WHERE dimension = 'total'")
            .await,
        30
    );
    assert_eq!(
        rig.count(
            "SELECT sum(packets)::bigint FROM traffic_minutes WHERE dimension = 'tls' AND key = 'secure.example.org'"
        )
        .await,
        10
    );
    // Three flows (DNS, HTTP, TLS), each with every one of its packets counted once.
    assert_eq!(rig.count("SELECT count(*) FROM flows").await, 3);
    assert_eq!(
        rig.count("SELECT sum(packets_ab + packets_ba)::bigint FROM flows")
            .await,
        30
    );
    assert_eq!(
        rig.count("SELECT count(*) FROM flows WHERE l7_name = 'secure.example.org' AND l7 = 'tls'")
            .await,
        1
    );
    assert_eq!(rig.count("SELECT captured FROM sniffer_counters WHERE final").await, 30);

    let dead = wait_until("two dead-lettered messages", DEADLINE, || async {
        let queue = rig.vhost.get(&format!("/api/queues/{}/{DEAD}", rig.vhost.name)).ok()?;
        (queue["messages"].as_u64()? >= 2).then_some(queue["messages"].as_u64()?)
    })
    .await;
    assert_eq!(dead, 2);
    assert!(
        rig.channel
            .basic_get(QUEUE.into(), BasicGetOptions::default())
            .await
            .unwrap()
            .is_none()
    );

    let parser = rig.parser.as_mut().unwrap();
    parser.signal("TERM");
    let status = parser
        .wait_for_exit(DEADLINE)
        .expect("the parser did not stop after SIGTERM");
    assert!(status.success(), "the parser exited with {status}");
}

#[tokio::test]
async fn a_parser_killed_mid_stream_loses_and_duplicates_nothing() {
    let mut rig = Rig::new().await;
    let origin = origin();
    let (batches, per_batch) = (120u64, 50u64);
    for seq in 0..batches {
        let flags = if seq == batches - 1 { FLAG_FINAL } else { 0 };
        rig.publish_batch(
            &origin.batch_id(seq),
            &l7_batch(&origin, seq, seq * per_batch, per_batch, flags),
        )
        .await;
    }
    rig.start_parser();
    rig.wait_metric("trawl_parser_rows_written_total", 1).await;
    rig.parser.as_mut().unwrap().signal("KILL");
    rig.parser.as_mut().unwrap().wait_for_exit(DEADLINE).expect("killed");

    rig.start_parser();
    wait_until("every batch to be stored", DEADLINE, || async {
        (rig.count("SELECT count(*) FROM batches").await == batches as i64).then_some(())
    })
    .await;
    assert_eq!(
        rig.count("SELECT count(*) FROM packets").await,
        (batches * per_batch) as i64
    );
    assert_eq!(rig.count(DISTINCT_PACKETS).await, (batches * per_batch) as i64);
}

#[tokio::test]
async fn data_past_retention_is_removed_with_its_partition() {
    let mut rig = Rig::new().await;
    let origin = origin();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let three_days_ago = now - 3 * 86_400 * 1_000_000_000;
    rig.publish_batch(
        &origin.batch_id(0),
        &batches::l7_batch_at(three_days_ago, &origin, 0, 0, 9, 0),
    )
    .await;
    rig.publish_batch(&origin.batch_id(1), &l7_batch(&origin, 1, 9, 6, FLAG_FINAL))
        .await;
    let old_day = day_name(three_days_ago);
    rig.start_parser_with(&["--retention", "1h", "--retention-interval", "1s"]);

    rig.wait_metric("trawl_parser_rows_written_total", 15).await;
    wait_until("the old partitions to be dropped", DEADLINE, || async {
        let gone = rig
            .count(&format!(
                "SELECT count(*) FROM pg_class WHERE relname IN ('packets_{old_day}', 'segments_{old_day}')"
            ))
            .await
            == 0;
        gone.then_some(())
    })
    .await;
    assert_eq!(
        rig.count("SELECT count(*) FROM packets").await,
        6,
        "recent packets must stay"
    );
    assert_eq!(
        rig.count("SELECT count(*) FROM segments").await,
        1,
        "the recent batch's segment must stay"
    );
}

/// `YYYYMMDD` of a Unix timestamp in nanoseconds (UTC).
fn day_name(ns: u64) -> String {
    let days = (ns / 86_400_000_000_000) as i64;
    // Civil-from-days (Howard Hinnant's algorithm), to avoid a date crate for one test.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}{month:02}{day:02}")
}

#[tokio::test]
async fn a_response_stored_after_its_request_completes_the_request_s_event() {
    let mut rig = Rig::new().await;
    let origin = origin();
    let (client, server) = (Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 53));
    let query = frames::udp_ports(
        [2; 6],
        [4; 6],
        (client, 40000),
        (server, 53),
        &frames::dns_query(77, "later.example.org"),
    );
    let response = frames::udp_ports(
        [4; 6],
        [2; 6],
        (server, 53),
        (client, 40000),
        &frames::dns_response(77, "later.example.org", Some([192, 0, 2, 9])),
    );
    let now = batches::now_nanos();
    let counters = Counters::default();
    rig.start_parser();
    rig.publish_batch(
        &origin.batch_id(0),
        &batches::batch_of(&origin, 0, 0, &counters, [(0, now, query)]),
    )
    .await;
    rig.wait_metric("trawl_parser_rows_written_total", 1).await;
    rig.publish_batch(
        &origin.batch_id(1),
        &batches::batch_of(&origin, 1, FLAG_FINAL, &counters, [(1, now + 3_000_000, response)]),
    )
    .await;
    rig.wait_metric("trawl_parser_rows_written_total", 2).await;
    assert_eq!(
        rig.count(
            "SELECT count(*) FROM dns_events WHERE query = 'later.example.org' AND rcode = 'NOERROR' \
             AND answers = ARRAY['A 192.0.2.9'] AND rtt_ms = 3"
        )
        .await,
        1,
        "one row, the query's, completed by the response"
    );
    assert_eq!(rig.count("SELECT count(*) FROM dns_events").await, 1);
}

/// Packets of `batch_seq` (`first_seq..first_seq + packets` of the L7 mix) captured on `interface`.
fn batch_on(origin: &Origin, interface: &str, batch_seq: u64, first_seq: u64, packets: u64, flags: u16) -> Vec<u8> {
    let now = batches::now_nanos();
    let mut builder = wire::BatchBuilder::default();
    let index = builder.interface_index(interface);
    for seq in first_seq..first_seq + packets {
        let frame = batches::l7_frame(seq);
        builder.push(seq, now + seq, index, frame.len() as u32, &frame);
    }
    let counters = wire::Counters {
        captured: first_seq + packets,
        kernel_drops: 0,
        drops: vec![],
    };
    builder.seal(origin, batch_seq, flags, &counters)
}

#[tokio::test]
async fn a_batch_the_database_refuses_is_set_aside_and_the_rest_stored() {
    let mut rig = Rig::new().await;
    let origin = origin();
    // The middle batch names its interface with a NUL byte, which PostgreSQL refuses in text: it
    // fails in the group and alone. Another session's batch on this queue is refused too.
    let bodies = [
        batch_on(&origin, "eth0", 0, 0, 6, 0),
        batch_on(&origin, "eth\0evil", 1, 6, 4, 0),
        batch_on(&origin, "eth0", 2, 10, 5, FLAG_FINAL),
    ];
    for (seq, body) in bodies.iter().enumerate() {
        rig.publish_batch(&origin.batch_id(seq as u64), body).await;
    }
    let intruder = batches::origin("other/session", "node-a");
    rig.publish_batch(&intruder.batch_id(0), &batch_on(&intruder, "eth0", 0, 0, 3, FLAG_FINAL))
        .await;

    rig.start_parser();
    rig.wait_metric("trawl_parser_batches_consumed_total", 3).await;
    wait_until(
        "the good batches stored and the bad one set aside",
        DEADLINE,
        || async { (rig.count("SELECT count(*) FROM batches").await == 3).then_some(()) },
    )
    .await;
    assert_eq!(rig.count("SELECT count(*) FROM packets").await, 11);
    assert_eq!(rig.count(DISTINCT_PACKETS).await, 11);
    assert_eq!(
        rig.count("SELECT count(*) FROM packets WHERE session <> 'test/consume'")
            .await,
        0,
        "nothing stored for the other session"
    );
    let pool = rig.database.pool().await;
    let counts = database::packet_counts(&pool, "test/consume", None).await.unwrap();
    pool.close().await;
    assert_eq!((counts.captured, counts.stored, counts.dropped), (15, 11, 4));
    assert_eq!(counts.dropped_by_reason.get("unstorable"), Some(&4));
    let error: String = {
        let pool = rig.database.pool().await;
        let error = sqlx::query_scalar("SELECT error FROM set_aside_batches WHERE batch_id = $1")
            .bind(origin.batch_id(1))
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        error
    };
    assert!(error.contains("0x00"), "the database's own reason is kept: {error}");

    let dead = wait_until("two dead-lettered batches", DEADLINE, || async {
        let queue = rig.vhost.get(&format!("/api/queues/{}/{DEAD}", rig.vhost.name)).ok()?;
        (queue["messages"].as_u64()? >= 2).then_some(queue["messages"].as_u64()?)
    })
    .await;
    assert_eq!(dead, 2);
    let metrics = testkit::metrics::scrape(rig.metrics_port).unwrap();
    assert_eq!(
        testkit::metrics::value(&metrics, "trawl_parser_dead_lettered_total{reason=\"unstorable\"}"),
        Some(1)
    );
    assert_eq!(
        testkit::metrics::value(&metrics, "trawl_parser_dead_lettered_total{reason=\"other_session\"}"),
        Some(1)
    );
    // A redelivery of the set-aside batch is a no-op.
    rig.publish_batch(&origin.batch_id(1), &bodies[1]).await;
    rig.wait_metric("trawl_parser_redeliveries_skipped_total", 1).await;
    assert_eq!(rig.count("SELECT count(*) FROM set_aside_batches").await, 1);
}

/// Issue #35: on a quorum queue (with its delivery limit), a batch delivered again and again
/// without being stored (what a batch that kills its parser looks like) is set aside on its last
/// delivery: dead-lettered and counted as dropped, reason `redelivered`, and the rest is stored.
#[tokio::test]
async fn a_batch_delivered_too_often_is_set_aside_on_a_quorum_queue() {
    let mut rig = Rig::new_quorum().await;
    let origin = origin();
    let poison = batch_on(&origin, "eth0", 0, 0, 4, 0);
    rig.publish_batch(&origin.batch_id(0), &poison).await;
    // Four deliveries that end without an ack, as four parsers dying on it would end them.
    let mut seen = Vec::new();
    for _ in 0..queues::LAST_DELIVERY {
        // A quorum queue takes a message in (and back) through its log: not at once.
        let message = wait_until("the batch in the queue", DEADLINE, || async {
            rig.channel
                .basic_get(QUEUE.into(), BasicGetOptions::default())
                .await
                .unwrap()
        })
        .await;
        seen.push(delivery_count(&message.delivery.properties));
        message
            .delivery
            .reject(lapin::options::BasicRejectOptions { requeue: true })
            .await
            .unwrap();
    }
    assert_eq!(
        seen,
        [Some(0), Some(1), Some(2), Some(3)],
        "the broker counts the deliveries"
    );
    rig.publish_batch(&origin.batch_id(1), &batch_on(&origin, "eth0", 1, 4, 5, FLAG_FINAL))
        .await;

    rig.start_parser();
    rig.wait_metric("trawl_parser_batches_consumed_total", 2).await;
    wait_until("the healthy batch stored and the other set aside", DEADLINE, || async {
        (rig.count("SELECT count(*) FROM batches").await == 2).then_some(())
    })
    .await;
    let pool = rig.database.pool().await;
    let counts = database::packet_counts(&pool, "test/consume", None).await.unwrap();
    pool.close().await;
    assert_eq!((counts.captured, counts.stored, counts.dropped), (9, 5, 4));
    assert_eq!(counts.dropped_by_reason.get("redelivered"), Some(&4));
    let dead = wait_until("the batch in the dead-letter queue", DEADLINE, || async {
        let queue = rig.vhost.get(&format!("/api/queues/{}/{DEAD}", rig.vhost.name)).ok()?;
        (queue["messages"].as_u64()? >= 1).then_some(queue["messages"].as_u64()?)
    })
    .await;
    assert_eq!(dead, 1);
    let queue = rig
        .vhost
        .get(&format!("/api/queues/{}/{QUEUE}", rig.vhost.name))
        .unwrap();
    assert_eq!(queue["type"], "quorum", "{queue}");
    assert_eq!(
        queue["arguments"]["x-delivery-limit"],
        queues::DELIVERY_LIMIT,
        "{queue}"
    );
}

fn delivery_count(properties: &BasicProperties) -> Option<i64> {
    match properties
        .headers()
        .as_ref()?
        .inner()
        .get(queues::DELIVERY_COUNT_HEADER)?
    {
        AMQPValue::LongLongInt(n) => Some(*n),
        AMQPValue::LongInt(n) => Some(i64::from(*n)),
        other => panic!("x-delivery-count is {other:?}"),
    }
}
