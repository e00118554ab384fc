//! What the tshark agreement tests share: tshark's reading of a pcap, and the same frames pushed
//! through the real parser into PostgreSQL, each as one row per packet with the same columns:
//! source, destination, source port, destination port, VLAN, and the L7 name (DNS query, HTTP
//! host, TLS SNI; never a port guess).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use lapin::options::{BasicPublishOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection};
use testkit::postgres::TestDatabase;
use testkit::process::{Service, free_port};
use testkit::rabbitmq::TestVhost;
use testkit::wait_until;
use wire::{BatchBuilder, Counters, FLAG_FINAL, Origin};

/// Runs a command that must succeed; its standard output.
#[allow(dead_code)]
pub fn run(command: &mut Command) -> String {
    let output = command.output().unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `program` run inside the test network's namespace.
#[allow(dead_code)]
pub fn in_namespace(network: &testkit::netns::TestNetwork, program: &str) -> Command {
    let mut command = Command::new("ip");
    command.args(["netns", "exec", &network.namespace, program]);
    command
}

/// The test's veth pair, `host_address` (a /24) on the host's end and `inner_address` on the
/// namespace's.
#[allow(dead_code)]
pub fn addressed_network(host_address: &str, inner_address: &str) -> testkit::netns::TestNetwork {
    let network = testkit::netns::TestNetwork::create();
    run(Command::new("ip").args([
        "addr",
        "add",
        &format!("{host_address}/24"),
        "dev",
        &network.host_interface,
    ]));
    run(in_namespace(&network, "ip").args([
        "addr",
        "add",
        &format!("{inner_address}/24"),
        "dev",
        &network.inner_interface,
    ]));
    network
}

/// tcpdump writing an interface's packets to a pcap as they come (`-U`), started once it
/// listens; `stop` ends it with SIGINT, as Ctrl-C would, so the file is complete.
#[allow(dead_code)]
pub struct Tcpdump(std::process::Child);

#[allow(dead_code)]
impl Tcpdump {
    pub fn start(interface: &str, snaplen: u32, pcap: &Path, filter: &[&str]) -> Self {
        use std::io::{BufRead, BufReader};
        let mut child = Command::new("tcpdump")
            .args([
                "-i",
                interface,
                "-s",
                &snaplen.to_string(),
                "-U",
                "-n",
                "-Z",
                "root",
                "-w",
            ])
            .arg(pcap)
            .args(filter)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start tcpdump (apt: tcpdump)");
        let mut listening = String::new();
        BufReader::new(child.stderr.take().unwrap())
            .read_line(&mut listening)
            .unwrap();
        assert!(listening.contains("listening on"), "tcpdump: {listening}");
        Self(child)
    }

    pub fn stop(mut self) {
        run(Command::new("kill").args(["-INT", &self.0.id().to_string()]));
        self.0.wait().unwrap();
    }
}

/// One packet as both sides describe it (for ARP, the sender and target protocol addresses).
pub type Row = [String; 6];

/// tshark's rows for `pcap`; `decode_as` are tshark `-d` rules (`tcp.port==8081,http`).
#[allow(dead_code)]
pub fn tshark(pcap: &Path, decode_as: &[&str]) -> Vec<Row> {
    let fields = [
        "ip.src",
        "ip.dst",
        "tcp.srcport",
        "udp.srcport",
        "tcp.dstport",
        "udp.dstport",
        "vlan.id",
        "dns.qry.name",
        "http.host",
        "tls.handshake.extensions_server_name",
        "arp.src.proto_ipv4",
        "arp.dst.proto_ipv4",
        "ieee8021ad.id",
    ];
    let mut command = Command::new("tshark");
    command.arg("-r").arg(pcap);
    for rule in decode_as {
        command.args(["-d", rule]);
    }
    command.args(["-T", "fields", "-E", "separator=|", "-E", "occurrence=f"]);
    for field in fields {
        command.args(["-e", field]);
    }
    let output = command.output().expect("run tshark (apt: tshark)");
    assert!(
        output.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split('|').collect();
            let either = |x: &str, y: &str| if x.is_empty() { y.to_owned() } else { x.to_owned() };
            let name = [f[7], f[8], f[9]].into_iter().find(|n| !n.is_empty()).unwrap_or("");
            // Trawl stores an ARP packet's sender and target addresses as its source and destination.
            [
                either(f[0], f[10]),
                either(f[1], f[11]),
                either(f[2], f[3]),
                either(f[4], f[5]),
                // The outer tag: tshark names an 802.1ad (QinQ) tag's id apart from 802.1Q's.
                either(f[12], f[6]),
                name.to_owned(),
            ]
        })
        .collect()
}

/// The frames as one sniffer batch, through the real trawl-parser into PostgreSQL; the stored
/// rows in capture order.
#[allow(dead_code)] // each test binary compiles this module; not every one uses everything
pub async fn through_the_parser(stamped: &[(u64, Vec<u8>)], session: &str) -> Vec<Row> {
    through_the_parser_with_events(stamped, session).await.0
}

/// The names tshark finds in `pcap`, every occurrence (a frame with two pipelined requests has two
/// hosts): DNS query names, HTTP hosts, TLS server names.
#[allow(dead_code)] // each test binary compiles this module; not every one uses everything
pub fn tshark_names(pcap: &Path, decode_as: &[&str]) -> std::collections::BTreeSet<String> {
    let mut command = Command::new("tshark");
    command.arg("-r").arg(pcap);
    for rule in decode_as {
        command.args(["-d", rule]);
    }
    command.args([
        "-T",
        "fields",
        "-E",
        "separator=,",
        "-E",
        "occurrence=a",
        "-E",
        "aggregator=,",
    ]);
    for field in ["dns.qry.name", "http.host", "tls.handshake.extensions_server_name"] {
        command.args(["-e", field]);
    }
    let output = command.output().expect("run tshark (apt: tshark)");
    assert!(
        output.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .split([',', '\n'])
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
        .collect()
}

/// As [`through_the_parser`], with the names of the L7 events the parser stored (DNS queries,
/// HTTP hosts, TLS server names), which come from reassembled TCP streams.
#[allow(dead_code)]
pub async fn through_the_parser_with_events(
    stamped: &[(u64, Vec<u8>)],
    session: &str,
) -> (Vec<Row>, std::collections::BTreeSet<String>) {
    let database = through_the_parser_database(stamped, session).await;
    let pool = database.pool().await;
    let rows: Vec<(String, String, String, String, String, String)> = sqlx::query_as(
        "SELECT coalesce(host(src), ''), coalesce(host(dst), ''), coalesce(src_port::text, ''), \
           coalesce(dst_port::text, ''), coalesce(vlan::text, ''), \
           coalesce(CASE WHEN l7_guessed THEN NULL ELSE l7_name END, '') \
         FROM packets ORDER BY seq",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT query FROM dns_events WHERE query IS NOT NULL UNION SELECT host FROM http_events WHERE host IS NOT NULL \
         UNION SELECT sni FROM tls_events WHERE sni IS NOT NULL",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    (
        rows.into_iter().map(|(a, b, c, d, e, f)| [a, b, c, d, e, f]).collect(),
        names.into_iter().collect(),
    )
}

/// The frames pushed as one batch through the real parser into a database of their own, which is
/// returned once the batch is stored.
#[allow(dead_code)]
pub async fn through_the_parser_database(stamped: &[(u64, Vec<u8>)], session: &str) -> TestDatabase {
    const QUEUE: &str = "tshark-agreement";
    let database = TestDatabase::create().await;
    let vhost = TestVhost::create();
    let connection = Connection::connect(&vhost.amqp_url, Default::default()).await.unwrap();
    let channel = connection.create_channel().await.unwrap();
    channel
        .queue_declare(QUEUE.into(), QueueDeclareOptions::default(), FieldTable::default())
        .await
        .unwrap();
    let origin = Origin {
        boot_id: rand::random(),
        session: session.into(),
        node: "n".into(),
    };
    let mut builder = BatchBuilder::default();
    let interface = builder.interface_index("eth0");
    for (seq, (ts, frame)) in stamped.iter().enumerate() {
        builder.push(seq as u64, *ts, interface, frame.len() as u32, frame);
    }
    let counters = Counters {
        captured: stamped.len() as u64,
        ..Counters::default()
    };
    let body = builder.seal(&origin, 0, FLAG_FINAL, &counters);
    let headers = FieldTable::from(BTreeMap::from([(
        wire::SCHEMA_HEADER.into(),
        AMQPValue::LongLongInt(i64::from(wire::VERSION)),
    )]));
    let properties = BasicProperties::default()
        .with_content_type(wire::CONTENT_TYPE.into())
        .with_headers(headers);
    channel
        .basic_publish(
            "".into(),
            QUEUE.into(),
            BasicPublishOptions::default(),
            &body,
            properties,
        )
        .await
        .unwrap();

    let mut command = Command::new(env!("CARGO_BIN_EXE_trawl-parser"));
    command
        .args(["--session", session, "--queue", QUEUE, "--amqp-url", &vhost.amqp_url])
        .args([
            "--database-url",
            &database.url,
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
        ]);
    let _parser = Service::start("trawl-parser", command);
    let pool = database.pool().await;
    wait_until("the batch to be stored", Duration::from_secs(60), || async {
        let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM batches")
            .fetch_one(&pool)
            .await
            .ok()?;
        (stored == 1).then_some(())
    })
    .await;
    pool.close().await;
    database
}
