use std::collections::BTreeMap;
use std::process::{Child, Command};
use std::time::Duration;

use testkit::netns::TestNetwork;
use testkit::postgres::{PrivatePostgres, TestDatabase};
use testkit::process::{Service, free_port, workspace_binary};
use testkit::rabbitmq::{PrivateBroker, TestVhost};
use testkit::{frames, unique_suffix, wait_until};

/// Long enough for a loaded 2-core machine to drain a backlog.
pub const DEADLINE: Duration = Duration::from_secs(180);
/// The offered traffic's UDP port; the sniffer's filter selects it and nothing else.
const PORT: u16 = 9;

pub struct PipelineOptions {
    /// Parsers to start with.
    pub parsers: usize,
    /// Which RabbitMQ the pipeline uses.
    pub broker: BrokerChoice,
    /// How the session's queues are kept.
    pub queue_type: queues::QueueType,
    /// A PostgreSQL server of the test's own, likewise.
    pub private_database: bool,
    /// The queue's byte bound (`x-max-length-bytes`, overflow `reject-publish`).
    pub queue_max_bytes: i64,
    /// Extra `trawl-sniffer` flags.
    pub sniffer_args: Vec<String>,
    /// Shards the traffic is split into (`--shards` of the sniffer and the parsers).
    pub shards: u16,
    /// The sniffer's capture filter.
    pub filter: String,
    /// The node the sniffer says it runs on (a targeted sniffer reads this node's targets).
    pub node: String,
    /// Extra environment of the sniffer (`KUBECONFIG` for one that watches its targets).
    pub sniffer_env: Vec<(String, String)>,
    /// Where the sniffer captures, instead of the test network's host end.
    pub interfaces: Option<String>,
    /// Extra `trawl-parser` flags.
    pub parser_args: Vec<String>,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        Self {
            parsers: 1,
            broker: BrokerChoice::Shared,
            queue_type: queues::QueueType::Classic,
            private_database: false,
            queue_max_bytes: 512 << 20,
            sniffer_args: Vec::new(),
            shards: 1,
            filter: format!("udp port {PORT}"),
            node: "e2e-node".into(),
            sniffer_env: Vec::new(),
            interfaces: None,
            parser_args: Vec::new(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BrokerChoice {
    /// A vhost of the shared broker.
    Shared,
    /// A RabbitMQ node of the test's own, so that it can be stopped and restarted.
    Private,
    /// A cluster of this many nodes of the test's own.
    Cluster(usize),
}

pub enum Broker {
    Shared(TestVhost),
    Private(PrivateBroker),
    Cluster(Vec<PrivateBroker>),
}

impl Broker {
    /// The URL the components connect with: every node's, comma-separated, for a cluster.
    pub fn amqp_url(&self) -> String {
        match self {
            Self::Shared(vhost) => vhost.amqp_url.clone(),
            Self::Private(broker) => broker.amqp_url(),
            Self::Cluster(nodes) => nodes.iter().map(PrivateBroker::amqp_url).collect::<Vec<_>>().join(","),
        }
    }
}

pub enum Database {
    Shared(TestDatabase),
    Private(PrivatePostgres),
}

impl Database {
    pub fn url(&self) -> String {
        match self {
            Self::Shared(database) => database.url.clone(),
            Self::Private(server) => server.url.clone(),
        }
    }
}

/// Where every offered packet went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accounting {
    /// Frames the generator handed to the kernel.
    pub offered: u64,
    /// The host end's rx counter over the run (must equal `offered`).
    pub received: u64,
    /// What the sniffers' last counters say they captured.
    pub captured: u64,
    pub kernel_drops: u64,
    /// Drops after capture, by reason (`queue_full`, `buffer_full`, `shutdown`, ...).
    pub drops: BTreeMap<String, u64>,
    /// Rows in PostgreSQL.
    pub stored: u64,
    /// Rows stored more than once.
    pub duplicates: u64,
}

impl Accounting {
    pub fn dropped(&self) -> u64 {
        self.drops.values().sum()
    }

    /// Everything captured is stored exactly once or counted as dropped with a reason.
    pub fn assert_captured_balanced(&self) {
        assert_eq!(self.duplicates, 0, "duplicated rows: {self:?}");
        assert_eq!(
            self.captured,
            self.stored + self.dropped(),
            "captured != stored + dropped: {self:?}"
        );
    }

    /// Everything offered is stored exactly once or counted as dropped (kernel drops included).
    pub fn assert_balanced(&self) {
        self.assert_captured_balanced();
        assert_eq!(
            self.received, self.offered,
            "the veth lost frames before capture: {self:?}"
        );
        assert_eq!(
            self.offered,
            self.captured + self.kernel_drops,
            "offered != captured + kernel drops: {self:?}"
        );
    }
}

pub struct Pipeline {
    // Drop order: processes first, then the network, broker and database they use.
    sniffer: Option<Service>,
    parsers: Vec<(Service, u16)>,
    pub session: String,
    pub queue: String,
    pub network: TestNetwork,
    pub broker: Broker,
    pub database: Database,
    sniffer_port: u16,
    sniffer_args: Vec<String>,
    sniffer_env: Vec<(String, String)>,
    interfaces: Option<String>,
    parser_args: Vec<String>,
    node: String,
    shards: u16,
    filter: String,
    rx_before: u64,
    offered: u64,
    next_seq: u32,
}

impl Pipeline {
    pub async fn start(options: PipelineOptions) -> Self {
        let broker = match options.broker {
            BrokerChoice::Shared => Broker::Shared(TestVhost::create()),
            BrokerChoice::Private => Broker::Private(PrivateBroker::start()),
            BrokerChoice::Cluster(nodes) => Broker::Cluster(PrivateBroker::cluster(nodes)),
        };
        let database = if options.private_database {
            Database::Private(PrivatePostgres::start())
        } else {
            Database::Shared(TestDatabase::create().await)
        };
        let suffix = unique_suffix();
        let queue = format!("trawl.e2e.{suffix}");
        declare_queue(
            &broker.amqp_url(),
            &queue,
            options.shards,
            options.queue_max_bytes,
            options.queue_type,
        )
        .await;
        let network = TestNetwork::create();
        let rx_before = network.host_rx_packets();
        let mut pipeline = Self {
            sniffer: None,
            parsers: Vec::new(),
            session: format!("e2e/{suffix}"),
            queue,
            network,
            broker,
            database,
            sniffer_port: free_port(),
            sniffer_args: options.sniffer_args,
            sniffer_env: options.sniffer_env,
            interfaces: options.interfaces,
            parser_args: options.parser_args,
            node: options.node,
            shards: options.shards,
            filter: options.filter,
            rx_before,
            offered: 0,
            next_seq: 0,
        };
        for _ in 0..options.parsers {
            pipeline.add_parser();
        }
        pipeline.start_sniffer().await;
        pipeline
    }

    pub fn add_parser(&mut self) {
        let port = free_port();
        let mut command = Command::new(workspace_binary("parser", "trawl-parser"));
        command
            .args(["--session", &self.session, "--queue", &self.queue])
            .args(["--shards", &self.shards.to_string()])
            .args([
                "--amqp-url",
                &self.broker.amqp_url(),
                "--database-url",
                &self.database.url(),
            ])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(&self.parser_args);
        self.parsers.push((Service::start("trawl-parser", command), port));
    }

    /// Stops the newest parser: `TERM` (it finishes its batch) or `KILL` (mid-batch).
    pub fn stop_parser(&mut self, signal: &str) {
        let (mut parser, _) = self.parsers.pop().expect("a running parser");
        parser.signal(signal);
        parser.wait_for_exit(DEADLINE).expect("the parser exits");
    }

    pub fn parsers(&self) -> usize {
        self.parsers.len()
    }

    /// How many shards each running parser consumes (its `trawl_parser_shards_consumed`).
    pub fn parser_shards(&self) -> Vec<u64> {
        self.parsers
            .iter()
            .map(|(_, port)| {
                testkit::metrics::scrape(*port)
                    .and_then(|text| testkit::metrics::value(&text, "trawl_parser_shards_consumed"))
                    .unwrap_or(0)
            })
            .collect()
    }

    /// The running parsers' metrics ports.
    pub fn parser_ports(&self) -> Vec<u16> {
        self.parsers.iter().map(|(_, port)| *port).collect()
    }

    /// The running parsers' process ids (for their memory, in /proc).
    pub fn parser_pids(&self) -> Vec<u32> {
        self.parsers.iter().map(|(parser, _)| parser.pid()).collect()
    }

    /// The running parsers' `/metrics`, one after another.
    pub fn parser_metrics(&self) -> String {
        self.parsers
            .iter()
            .filter_map(|(_, port)| testkit::metrics::scrape(*port))
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub async fn start_sniffer(&mut self) {
        let mut command = Command::new(workspace_binary("sniffer", "trawl-sniffer"));
        command
            .args(["--session", &self.session, "--node", &self.node])
            .args([
                "--interfaces",
                self.interfaces.as_deref().unwrap_or(&self.network.host_interface),
            ])
            .args(["--filter", &self.filter])
            .args(["--amqp-url", &self.broker.amqp_url(), "--routing-key", &self.queue])
            .args(["--shards", &self.shards.to_string()])
            .args(["--listen", &format!("127.0.0.1:{}", self.sniffer_port)])
            .args(&self.sniffer_args)
            .envs(self.sniffer_env.iter().map(|(k, v)| (k, v)));
        self.sniffer = Some(Service::start("trawl-sniffer", command));
        let url = format!("http://127.0.0.1:{}/readyz", self.sniffer_port);
        wait_until("the sniffer to be ready", DEADLINE, || async {
            ureq::get(&url).call().ok().map(|_| ())
        })
        .await;
    }

    /// The sniffer's metrics port.
    pub fn sniffer_port(&self) -> u16 {
        self.sniffer_port
    }

    /// Stops the sniffer with SIGTERM: it flushes and sends its final counters.
    pub fn stop_sniffer(&mut self) {
        let mut sniffer = self.sniffer.take().expect("a running sniffer");
        sniffer.signal("TERM");
        let status = sniffer.wait_for_exit(DEADLINE).expect("the sniffer exits");
        assert!(status.success(), "the sniffer exited with {status}");
    }

    /// `count` frames of the known mix (UDP to port 9 from 16 source ports, so 16 flows, with a
    /// sequence number and 16 to 1000 bytes of payload), numbered on from the last offer.
    fn frames(&mut self, count: u32) -> Vec<Vec<u8>> {
        let frames = (self.next_seq..self.next_seq + count)
            .map(|seq| {
                let mut payload = seq.to_be_bytes().to_vec();
                payload.resize(16 + (seq as usize * 37) % 985, (seq % 251) as u8);
                frames::udp_ports(
                    testkit::batches::CLIENT,
                    testkit::batches::SERVER,
                    (frames::SOURCE, 40000 + (seq % 16) as u16),
                    (frames::DESTINATION, PORT),
                    &payload,
                )
            })
            .collect();
        self.next_seq += count;
        self.offered += u64::from(count);
        frames
    }

    /// Offers `count` frames at `per_second` and returns when all were sent.
    pub fn offer(&mut self, count: u32, per_second: u32) {
        let frames = self.frames(count);
        self.network.send_frames(&frames, per_second);
    }

    /// Offers frames of the caller's making at `per_second` (they count as offered).
    pub fn offer_frames(&mut self, frames: &[Vec<u8>], per_second: u32) {
        self.offered += frames.len() as u64;
        self.network.send_frames(frames, per_second);
    }

    /// The server names of the session's stored TLS ClientHello events.
    pub async fn tls_server_names(&self) -> Vec<String> {
        let pool = self.pool().await.expect("connect to the database");
        let names =
            sqlx::query_scalar("SELECT sni FROM tls_events WHERE session = $1 AND sni IS NOT NULL ORDER BY sni")
                .bind(&self.session)
                .fetch_all(&pool)
                .await
                .expect("read the TLS events");
        pool.close().await;
        names
    }

    /// Starts offering in the background; wait on the returned child.
    pub fn offer_in_background(&mut self, count: u32, per_second: u32) -> Child {
        let frames = self.frames(count);
        self.network.send_frames_in_background(frames, per_second)
    }

    /// Rows stored so far, from the batch records committed with them (one row per batch, so
    /// polling stays cheap at millions of packets; `settle` counts the rows themselves).
    pub async fn stored(&self) -> u64 {
        let Ok(pool) = self.pool().await else { return 0 };
        let stored: i64 =
            sqlx::query_scalar("SELECT coalesce(sum(packets), 0)::bigint FROM batches WHERE session = $1")
                .bind(&self.session)
                .fetch_one(&pool)
                .await
                .unwrap_or(0);
        pool.close().await;
        stored as u64
    }

    pub async fn pool(&self) -> Result<sqlx::PgPool, sqlx::Error> {
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(5))
            .connect(&self.database.url())
            .await
    }

    /// After the sniffer stopped: waits until its final batch is stored and the queue is empty,
    /// then reads where every packet went.
    pub async fn settle(&self) -> Accounting {
        assert!(self.sniffer.is_none(), "stop the sniffer before settling");
        wait_until(
            "the final batch to be stored and the rows to match",
            DEADLINE,
            || async {
                let accounting = self.read().await.ok()?;
                let finished = accounting.stored + accounting.dropped() >= accounting.captured;
                finished.then_some(())
            },
        )
        .await;
        self.read().await.expect("read the accounting")
    }

    /// Like [`Self::settle`], but gives up after `within` (None then): for a run that may not drain.
    pub async fn try_settle(&self, within: Duration) -> Option<Accounting> {
        assert!(self.sniffer.is_none(), "stop the sniffer before settling");
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Ok(accounting) = self.read().await
                && accounting.stored + accounting.dropped() >= accounting.captured
            {
                return Some(accounting);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn read(&self) -> Result<Accounting, sqlx::Error> {
        let pool = self.pool().await?;
        let counters: Vec<(bool, i64, i64, serde_json::Value)> =
            sqlx::query_as("SELECT final, captured, kernel_drops, drops FROM sniffer_counters WHERE session = $1")
                .bind(&self.session)
                .fetch_all(&pool)
                .await?;
        if counters.is_empty() || !counters.iter().all(|(last, ..)| *last) {
            pool.close().await;
            return Err(sqlx::Error::RowNotFound);
        }
        let mut drops = BTreeMap::new();
        for (_, _, _, by_reason) in &counters {
            for (reason, count) in by_reason.as_object().into_iter().flatten() {
                let count = count.as_u64().unwrap_or(0);
                if count > 0 {
                    *drops.entry(reason.clone()).or_insert(0) += count;
                }
            }
        }
        // Batches a parser set aside (the database refused them) count as drops with their reason.
        let set_aside: Vec<(String, i64)> = sqlx::query_as(
            "SELECT reason, sum(packets)::bigint FROM set_aside_batches WHERE session = $1 GROUP BY reason",
        )
        .bind(&self.session)
        .fetch_all(&pool)
        .await?;
        for (reason, count) in set_aside {
            *drops.entry(reason).or_insert(0) += count as u64;
        }
        let (stored, distinct): (i64, i64) = sqlx::query_as(
            "SELECT count(*), count(DISTINCT (b.boot_id, p.seq)) FROM packets p \
                 JOIN batches b ON b.segment = p.id >> 20 WHERE p.session = $1",
        )
        .bind(&self.session)
        .fetch_one(&pool)
        .await?;
        pool.close().await;
        Ok(Accounting {
            offered: self.offered,
            received: self.network.host_rx_packets() - self.rx_before,
            captured: counters.iter().map(|c| c.1 as u64).sum(),
            kernel_drops: counters.iter().map(|c| c.2 as u64).sum(),
            drops,
            stored: stored as u64,
            duplicates: (stored - distinct) as u64,
        })
    }
}

/// The session's queue exactly as the operator declares it.
async fn declare_queue(amqp_url: &str, queue: &str, shards: u16, max_bytes: i64, kind: queues::QueueType) {
    let connection = queues::connect(amqp_url, Default::default()).await.unwrap();
    let channel = connection.create_channel().await.unwrap();
    queues::declare_session_queue(&channel, queue, shards, max_bytes, kind)
        .await
        .expect("declare the session queue");
    let _ = connection.close(200, "".into()).await;
}
