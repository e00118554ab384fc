//! HTTP/2 and gRPC from real clients and servers, read by Trawl and by tshark from one capture:
//! curl with prior knowledge against nghttpd (Debian's nghttp2-server, which speaks HTTP/2 from the
//! first byte, so `Upgrade: h2c` is covered by the dissector's own tests instead),
//! and a gRPC channel of Debian's python3-grpcio (unary, a call that fails with NOT_FOUND, a
//! bidirectional stream) against its server. The traffic runs between a network namespace and an
//! address this test puts on its veth (10.214.0.0/24); tcpdump captures it whole; tshark reads
//! that pcap (told the two ports are HTTP/2, as a user would); the same frames go through the
//! real parser into PostgreSQL.
//!
//! Per request (client port and stream): method, path, authority, status and grpc-status must be
//! the same on both sides, but for what `DIFFERENCES` lists and explains.
//!
//! Needs root, curl, nghttpd, /usr/bin/python3 with grpc, tcpdump and tshark.

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use testkit::process::Service;
use testkit::wait_until;

const SERVER: &str = "10.214.0.1";
const CLIENT: &str = "10.214.0.2";
const H2C_PORT: u16 = 8082;
const GRPC_PORT: u16 = 50051;

/// What a request and its response said: method, path, authority, status, grpc-status.
type Exchange = [String; 5];

/// How Trawl's rows differ from tshark's on this traffic, and why: none. (Trawl's rows carry more
/// than this compares: sizes, message counts and latency, checked on their own below.)
const DIFFERENCES: [&str; 0] = [];

/// A JSON value that tshark writes as an object when there is one and an array when more.
fn each(value: Option<&Value>) -> Vec<&Value> {
    match value {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(other) => vec![other],
        None => Vec::new(),
    }
}

/// tshark's exchanges, from every HEADERS frame: keyed by client port and stream.
fn tshark_exchanges(pcap: &std::path::Path) -> BTreeMap<(u16, u32), Exchange> {
    let output = Command::new("tshark")
        .arg("-r")
        .arg(pcap)
        .args([
            "-d",
            &format!("tcp.port=={H2C_PORT},http2"),
            "-d",
            &format!("tcp.port=={GRPC_PORT},http2"),
        ])
        .args([
            "-Y",
            "http2.type == 1",
            "-T",
            "json",
            "--no-duplicate-keys",
            "-J",
            "tcp http2",
        ])
        .output()
        .expect("run tshark (apt: tshark)");
    assert!(
        output.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let frames: Value = serde_json::from_slice(&output.stdout).unwrap();
    let mut exchanges: BTreeMap<(u16, u32), Exchange> = BTreeMap::new();
    for frame in frames.as_array().unwrap() {
        let layers = &frame["_source"]["layers"];
        let port = |name: &str| layers["tcp"][name].as_str().unwrap().parse::<u16>().unwrap();
        let (src, dst) = (port("tcp.srcport"), port("tcp.dstport"));
        let client_port = if src == H2C_PORT || src == GRPC_PORT { dst } else { src };
        for http2 in each(layers.get("http2")) {
            for stream in each(http2.get("http2.stream")) {
                if stream["http2.type"] != "1" {
                    continue;
                }
                let id: u32 = stream["http2.streamid"].as_str().unwrap().parse().unwrap();
                let exchange = exchanges.entry((client_port, id)).or_default();
                for header in each(stream.get("http2.header")) {
                    let value = header["http2.header.value"].as_str().unwrap_or("").to_owned();
                    let slot = match header["http2.header.name"].as_str().unwrap_or("") {
                        ":method" => 0,
                        ":path" => 1,
                        ":authority" => 2,
                        ":status" => 3,
                        "grpc-status" => 4,
                        _ => continue,
                    };
                    exchange[slot] = value;
                }
            }
        }
    }
    exchanges
}

#[tokio::test]
async fn http2_and_grpc_from_real_clients_agree_with_tshark() {
    let network = common::addressed_network(SERVER, CLIENT);
    let dir = std::env::temp_dir().join(format!("trawl-http2-clients-{}", testkit::unique_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("index.html"), "<p>hello over h2c</p>\n").unwrap();

    let mut nghttpd = Command::new("nghttpd");
    nghttpd
        .args(["--no-tls", "-a", SERVER, "-d"])
        .arg(&dir)
        .arg(H2C_PORT.to_string())
        .stdout(Stdio::null());
    let nghttpd = Service::start("nghttpd (apt: nghttp2-server)", nghttpd);
    let peers = testkit::repo_root().join("parser/tests/fixtures/grpc_peers.py");
    let mut grpc_server = Command::new("/usr/bin/python3");
    grpc_server
        .arg(&peers)
        .args(["serve", SERVER, &GRPC_PORT.to_string()])
        .stdout(Stdio::null());
    let grpc_server = Service::start("gRPC server (apt: python3-grpcio)", grpc_server);
    for port in [H2C_PORT, GRPC_PORT] {
        wait_until(
            &format!("a server to listen on {port}"),
            Duration::from_secs(20),
            || async move { std::net::TcpStream::connect((SERVER, port)).ok().map(|_| ()) },
        )
        .await;
    }

    let pcap = dir.join("http2.pcap");
    let tcpdump = common::Tcpdump::start(&network.host_interface, 0, &pcap, &["tcp"]);

    let curl = |args: &[&str]| {
        let mut command = common::in_namespace(&network, "curl");
        command
            .args([
                "-sS",
                "-m",
                "10",
                "-o",
                "/dev/null",
                "-w",
                "%{http_version} %{http_code}",
            ])
            .args(args);
        common::run(&mut command)
    };
    let base = format!("http://{SERVER}:{H2C_PORT}");
    assert_eq!(
        curl(&["--http2-prior-knowledge", &format!("{base}/index.html")]),
        "2 200"
    );
    assert_eq!(curl(&["--http2-prior-knowledge", &format!("{base}/missing")]), "2 404");
    let replies = common::run(common::in_namespace(&network, "/usr/bin/python3").arg(&peers).args([
        "call",
        SERVER,
        &GRPC_PORT.to_string(),
    ]));
    assert!(replies.contains("NOT_FOUND no greeting for nobody"), "{replies}");
    assert!(replies.ends_with("re: three\n"), "{replies}");

    // The last reply's bytes are in the capture once tcpdump (immediate mode) wrote it.
    wait_until(
        "tcpdump to have written the last reply",
        Duration::from_secs(20),
        || {
            let written = std::fs::read(&pcap).unwrap_or_default();
            async move { written.windows(9).any(|w| w == b"re: three").then_some(()) }
        },
    )
    .await;
    tcpdump.stop();
    drop((nghttpd, grpc_server));

    let theirs = tshark_exchanges(&pcap);
    assert_eq!(theirs.len(), 5, "two curl requests and three calls: {theirs:?}");
    let stamped = testkit::pcap::read(&pcap).unwrap();
    let database = common::through_the_parser_database(&stamped, "test/http2-clients").await;
    let pool = database.pool().await;
    type Stored = (
        i32,
        Option<i64>,
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<i32>,
        Option<i32>,
    );
    let rows: Vec<Stored> = sqlx::query_as(
        "SELECT client_port, stream_id, protocol, method, path, host, status, grpc_status FROM http_events ORDER BY id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let text = |value: Option<String>| value.unwrap_or_default();
    let number = |value: Option<i32>| value.map(|v| v.to_string()).unwrap_or_default();
    let mut ours: BTreeMap<(u16, u32), Exchange> = BTreeMap::new();
    for (port, stream, protocol, method, path, host, status, grpc_status) in rows.clone() {
        let stream = stream.expect("an HTTP/2 stream") as u32;
        let exchange = [
            text(method),
            text(path),
            text(host),
            number(status),
            number(grpc_status),
        ];
        assert!(
            ours.insert((port as u16, stream), exchange).is_none(),
            "one row per stream: {protocol} {port} {stream}"
        );
    }
    assert_eq!(
        ours, theirs,
        "Trawl (left) and tshark (right) per request; differences: {DIFFERENCES:?}"
    );

    // What tshark does not compare: the calls' sizes, messages, protocol and latency.
    let grpc: Vec<(String, i64, i64, i32, i32, f64)> = sqlx::query_as(
        "SELECT path, request_bytes, response_bytes, request_messages, response_messages, latency_ms \
         FROM http_events WHERE protocol = 'grpc' ORDER BY id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let calls: Vec<(&str, i32, i32)> = grpc.iter().map(|c| (c.0.as_str(), c.3, c.4)).collect();
    assert_eq!(
        calls,
        [
            ("/helloworld.Greeter/SayHello", 1, 1),
            ("/helloworld.Greeter/SayHello", 1, 0),
            ("/helloworld.Greeter/Chat", 3, 3)
        ]
    );
    assert_eq!(
        (grpc[0].1, grpc[0].2),
        (5 + 5, 5 + 11),
        "\"world\" and \"hello world\" with gRPC's prefix"
    );
    assert!(grpc.iter().all(|c| c.5 >= 0.0));
    pool.close().await;
    std::fs::remove_dir_all(&dir).unwrap();
}
