//! Traffic as Prometheus metrics (issue #33), end to end: three "pods" on a bridge (web, api,
//! files) with real servers (a Python HTTP server answering chosen statuses, a DNS server
//! answering NOERROR, NXDOMAIN or SERVFAIL by name, a large download) and real clients (curl,
//! dig); the real sniffer on the bridge, two sharded parsers with `--traffic-metrics`, and a real
//! Prometheus (Debian's) scraping both parsers and evaluating the chart's alert rules.
//!
//! What must hold: PromQL sums over the two parsers equal what the API serves for the same run
//! (its flows' packets and bytes, its HTTP events by status class and DNS events by response
//! code); connections opened, closed and refused are the ones made; the alerts go pending on the faulty edges only (web's DNS failures,
//! web -> api's 5xx, files -> web's retransmissions, forced by dropping every 12th segment at
//! web); `promtool check rules` and `promtool test rules` pass on the chart's rules.
//!
//! Run (as root, after `bash hack/services.sh`): `cargo test -p e2e --test traffic_metrics`

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use e2e::{Pipeline, PipelineOptions, TrawlApi};
use serde_json::Value;
use testkit::pods::BridgedPods;
use testkit::process::{Service, free_port};
use testkit::{repo_root, wait_until};

const DEADLINE: Duration = Duration::from_secs(120);
const WEB: usize = 0;
const API: usize = 1;
const FILES: usize = 2;

/// HTTP on 8080 (`/status/N` answers N, `/big` 2 MB) and DNS on 53 (names starting `missing`
/// are NXDOMAIN, `fail` SERVFAIL, the rest an A record).
const SERVERS: &str = r#"
import http.server, socket, socketserver, sys, threading

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/big":
            status, body = 200, b"x" * 2_000_000
        else:
            status, body = int(self.path.rsplit("/", 1)[1]), b"answer\n"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass

def dns(address):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((address, 53))
    while True:
        query, peer = sock.recvfrom(512)
        end = 12
        labels = []
        while query[end]:
            labels.append(query[end + 1:end + 1 + query[end]].decode())
            end += 1 + query[end]
        question = query[12:end + 5]
        name = ".".join(labels)
        rcode = 3 if name.startswith("missing") else 2 if name.startswith("fail") else 0
        answers = 0 if rcode else 1
        header = query[:2] + bytes([0x81, 0x80 | rcode, 0, 1, 0, answers, 0, 0, 0, 0])
        record = b"" if rcode else b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04" + socket.inet_aton(address)
        sock.sendto(header + question + record, peer)

address = sys.argv[1]
threading.Thread(target=dns, args=(address,), daemon=True).start()
socketserver.TCPServer.allow_reuse_address = True
http.server.ThreadingHTTPServer((address, 8080), Handler).serve_forever()
"#;

fn run(mut command: Command) -> String {
    let output = command.output().expect("run a command");
    assert!(
        output.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A Prometheus server of the test's own, scraping `targets` every second and evaluating `rules`.
struct Prometheus {
    port: u16,
    _process: Service,
    directory: std::path::PathBuf,
}

impl Prometheus {
    async fn start(targets: &[u16], rules: &std::path::Path) -> Self {
        let directory = std::env::temp_dir().join(format!("trawl-prometheus-{}", testkit::unique_suffix()));
        std::fs::create_dir_all(&directory).unwrap();
        let targets: Vec<String> = targets.iter().map(|port| format!("\"127.0.0.1:{port}\"")).collect();
        let config = format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
             rule_files: [{rules:?}]\n\
             scrape_configs:\n  - job_name: parsers\n    static_configs: [{{targets: [{}]}}]\n",
            targets.join(", ")
        );
        std::fs::write(directory.join("prometheus.yml"), config).unwrap();
        let port = free_port();
        let mut command = Command::new("prometheus");
        command
            .arg(format!("--config.file={}", directory.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", directory.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null());
        let prometheus = Self {
            port,
            _process: Service::start("prometheus", command),
            directory,
        };
        let ready = format!("http://127.0.0.1:{port}/-/ready");
        wait_until("Prometheus to be ready", DEADLINE, || async {
            ureq::get(&ready).call().ok().map(|_| ())
        })
        .await;
        prometheus
    }

    /// An instant query's result: (labels, value) per series.
    fn query(&self, expression: &str) -> Vec<(BTreeMap<String, String>, f64)> {
        let answer: Value = ureq::get(&format!("http://127.0.0.1:{}/api/v1/query", self.port))
            .query("query", expression)
            .call()
            .and_then(|mut response| response.body_mut().read_json())
            .unwrap_or_else(|error| panic!("{expression}: {error}"));
        answer["data"]["result"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|series| {
                let labels = serde_json::from_value(series["metric"].clone()).unwrap_or_default();
                let value = series["value"][1]
                    .as_str()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(f64::NAN);
                (labels, value)
            })
            .collect()
    }

    /// One number: the query's single series, or 0 when it has none.
    fn number(&self, expression: &str) -> u64 {
        let result = self.query(expression);
        assert!(result.len() <= 1, "{expression}: {result:?}");
        result.first().map_or(0, |(_, value)| value.round() as u64)
    }

    /// When Prometheus last scraped every parser (seconds since the epoch).
    fn scraped_at(&self) -> f64 {
        let result = self.query("min(timestamp(up))");
        result.first().map_or(0.0, |(_, at)| *at)
    }

    /// The alerts pending or firing now: (name, the labels that say where).
    fn alerts(&self) -> Vec<(String, String)> {
        let answer: Value = ureq::get(&format!("http://127.0.0.1:{}/api/v1/alerts", self.port))
            .call()
            .and_then(|mut response| response.body_mut().read_json())
            .expect("read the alerts");
        let mut alerts: Vec<(String, String)> = answer["data"]["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|alert| {
                let labels = &alert["labels"];
                let text = |key: &str| labels[key].as_str().unwrap_or("").to_owned();
                (
                    text("alertname"),
                    format!("{} -> {}", text("source"), text("destination")),
                )
            })
            .collect();
        alerts.sort();
        alerts
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.directory);
    }
}

fn curl(pods: &BridgedPods, from: usize, url: &str) -> String {
    let mut command = pods.command(from, "curl");
    command.args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "30", url]);
    String::from_utf8_lossy(&command.output().expect("run curl").stdout).into_owned()
}

fn dig(pods: &BridgedPods, from: usize, name: &str) -> String {
    let mut command = pods.command(from, "dig");
    command.args([
        &format!("@{}", pods.addresses[API]),
        name,
        "A",
        "+time=2",
        "+tries=3",
        "+noedns",
    ]);
    run(command)
}

#[tokio::test]
async fn traffic_metrics_in_prometheus_match_what_was_stored_and_alert_on_faulty_edges_only() {
    let rules = repo_root().join("charts/trawl/files/alerts.yaml");
    let mut check = Command::new("promtool");
    check.arg("check").arg("rules").arg(&rules);
    run(check);
    let mut unit = Command::new("promtool");
    unit.arg("test")
        .arg("rules")
        .arg(repo_root().join("charts/trawl/files/alerts_test.yaml"));
    run(unit);

    let pods = BridgedPods::create(3);
    // Segments on the wire as a NIC without offload would send them, so that one dropped segment
    // is one retransmission (with offload the bridge carries 64 KB super-packets).
    let mut no_offload = pods.command(FILES, "ethtool");
    no_offload.args(["-K", "eth0", "tso", "off", "gso", "off"]);
    run(no_offload);
    let mut pipeline = Pipeline::start(PipelineOptions {
        parsers: 2,
        shards: 2,
        filter: "ip".into(),
        interfaces: Some(pods.bridge.clone()),
        parser_args: vec![
            "--traffic-metrics".into(),
            "source=workload,destination=workload,max-edges=50".into(),
        ],
        ..PipelineOptions::default()
    })
    .await;
    let pool = pipeline.pool().await.expect("connect to the database");
    for (pod, workload) in [(WEB, "web"), (API, "api"), (FILES, "files")] {
        sqlx::query(
            "INSERT INTO endpoint_history (address, kind, namespace, name, workload_kind, workload, node, since) \
             VALUES ($1::inet, 'pod', 'shop', $2, 'Deployment', $3, 'e2e-node', now() - interval '1 minute')",
        )
        .bind(&pods.addresses[pod])
        .bind(format!("{workload}-7d9f-x2"))
        .bind(workload)
        .execute(&pool)
        .await
        .unwrap();
    }
    let prometheus = Prometheus::start(&pipeline.parser_ports(), &rules).await;
    wait_until("both parsers to know the three pods", DEADLINE, || async {
        let named = prometheus.query("trawl_traffic_addresses_named");
        (named.len() == 2 && named.iter().all(|(_, count)| *count == 3.0)).then_some(())
    })
    .await;

    let script = std::env::temp_dir().join(format!("trawl-servers-{}.py", pods.bridge));
    std::fs::write(&script, SERVERS).unwrap();
    let mut servers = Vec::new();
    for pod in [API, FILES] {
        let mut command = pods.command(pod, "python3");
        command.arg(&script).arg(&pods.addresses[pod]);
        servers.push(Service::start("test servers", command));
        // Listening, seen from inside the pod: a request would be traffic the counts include.
        wait_until("the test servers to listen", DEADLINE, || async {
            let mut listening = pods.command(pod, "ss");
            listening.args(["-Hlntu", "( sport = :8080 or sport = :53 )"]);
            let lines = String::from_utf8(listening.output().ok()?.stdout).ok()?;
            (lines.lines().count() == 2).then_some(())
        })
        .await;
    }

    // web: 60 answered 200, 8 answered 404, 12 answered 503; 50 names found, 20 missing, 10 failing;
    // two connections refused. files: 40 answered 200 and 40 names found (a healthy neighbour).
    // Enough of each that the alerts' minimum rates (one every 10 s over 5 minutes) are met.
    let api = &pods.addresses[API];
    for (status, count) in [(200, 60), (404, 8), (503, 12)] {
        for _ in 0..count {
            assert_eq!(
                curl(&pods, WEB, &format!("http://{api}:8080/status/{status}")),
                status.to_string()
            );
        }
    }
    for _ in 0..40 {
        assert_eq!(curl(&pods, FILES, &format!("http://{api}:8080/status/200")), "200");
    }
    for (prefix, count, rcode) in [
        ("found", 50, "NOERROR"),
        ("missing", 20, "NXDOMAIN"),
        ("fail", 10, "SERVFAIL"),
    ] {
        for i in 0..count {
            assert!(dig(&pods, WEB, &format!("{prefix}{i}.shop.test")).contains(rcode));
        }
    }
    for i in 0..40 {
        assert!(dig(&pods, FILES, &format!("found{i}.shop.test")).contains("NOERROR"));
    }
    for _ in 0..2 {
        assert_eq!(curl(&pods, WEB, &format!("http://{api}:8081/")), "000");
    }
    // Loss after the capture point: web drops every 12th segment from files, so files sends those
    // bytes again and the bridge sees both copies.
    let loss = [
        "INPUT",
        "-p",
        "tcp",
        "-s",
        &pods.addresses[FILES],
        "--sport",
        "8080",
        "-m",
        "statistic",
        "--mode",
        "nth",
        "--every",
        "12",
        "--packet",
        "5",
        "-j",
        "DROP",
    ];
    let mut drop_segments = pods.command(WEB, "iptables");
    drop_segments.arg("-A").args(loss);
    run(drop_segments);
    for _ in 0..3 {
        assert_eq!(
            curl(&pods, WEB, &format!("http://{}:8080/big", pods.addresses[FILES])),
            "200"
        );
    }
    // Every connection closed both ways, as the pods themselves see it, before the capture stops:
    // a FIN sent again after a drop may still be on its way when curl returns.
    wait_until("the pods' HTTP connections to be closed", DEADLINE, || async {
        let open: usize = [WEB, API, FILES]
            .into_iter()
            .map(|pod| {
                let mut sockets = pods.command(pod, "ss");
                sockets.args(["-Htan"]);
                let listed = sockets.output().map(|o| o.stdout).unwrap_or_default();
                String::from_utf8_lossy(&listed)
                    .lines()
                    .filter(|line| {
                        line.contains(":8080") && !line.starts_with("LISTEN") && !line.starts_with("TIME-WAIT")
                    })
                    .count()
            })
            .sum();
        (open == 0).then_some(())
    })
    .await;
    let _ = std::fs::remove_file(&script);
    drop(servers);
    pipeline.stop_sniffer();
    let accounting = pipeline.settle().await;
    accounting.assert_captured_balanced();

    // What the API serves for the same session: its flows (every packet with an IP layer, once),
    // its HTTP and DNS events.
    let api = TrawlApi::start(&pipeline.database.url(), &pipeline.session).await;
    let flows = api.all("/api/v1/flows", &[]);
    let sum = |field: &str| flows.iter().map(|flow| flow[field].as_u64().unwrap()).sum::<u64>();
    let (flow_packets, flow_bytes) = (sum("packets"), sum("bytes"));
    wait_until("Prometheus to hold the parsers' final counts", DEADLINE, || async {
        (prometheus.number("sum(trawl_traffic_packets_total)") == flow_packets).then_some(())
    })
    .await;
    // Series born in the parsers' last groups are scraped at zero once, then with their counts:
    // two more scrapes of every parser and Prometheus holds everything.
    let matched_at = prometheus.scraped_at();
    wait_until("two more scrapes of both parsers", DEADLINE, || async {
        (prometheus.scraped_at() > matched_at + 2.0).then_some(())
    })
    .await;
    assert_eq!(prometheus.number("sum(trawl_traffic_bytes_total)"), flow_bytes);
    let shares = prometheus.query("sum by (instance) (trawl_traffic_packets_total)");
    assert!(
        shares.len() == 2 && shares.iter().all(|(_, packets)| *packets > 0.0),
        "each parser counts its shards' flows: {shares:?}"
    );

    // Requests by status class, as the API's HTTP events from web to api.
    let (web, api_address) = (pods.addresses[WEB].as_str(), pods.addresses[API].as_str());
    let mut by_class: BTreeMap<String, u64> = BTreeMap::new();
    for event in api.all("/api/v1/events/http", &[]) {
        if event["client"] == web && event["server"] == api_address && !event["status"].is_null() {
            *by_class
                .entry(format!("{}xx", event["status"].as_u64().unwrap() / 100))
                .or_default() += 1;
        }
    }
    assert_eq!(
        by_class,
        BTreeMap::from([("2xx".into(), 60), ("4xx".into(), 8), ("5xx".into(), 12)])
    );
    for (class, count) in &by_class {
        let series = format!(
            r#"sum(trawl_traffic_requests_total{{source="web",destination="api",protocol="http",method="GET",status_class="{class}"}})"#
        );
        assert_eq!(prometheus.number(&series), *count, "{class}");
    }
    assert_eq!(
        prometheus.number(r#"sum(trawl_traffic_request_duration_seconds_count{source="web",destination="api"})"#),
        80
    );

    // DNS responses by code, as the API's DNS events of web.
    let mut by_rcode: BTreeMap<String, u64> = BTreeMap::new();
    for event in api.all("/api/v1/events/dns", &[]) {
        if event["client"] == web
            && let Some(rcode) = event["rcode"].as_str()
        {
            *by_rcode.entry(rcode.to_owned()).or_default() += 1;
        }
    }
    assert_eq!(
        by_rcode,
        BTreeMap::from([("NOERROR".into(), 50), ("NXDOMAIN".into(), 20), ("SERVFAIL".into(), 10)])
    );
    for (rcode, count) in &by_rcode {
        let series =
            format!(r#"sum(trawl_traffic_dns_responses_total{{source="web",destination="api",rcode="{rcode}"}})"#);
        assert_eq!(prometheus.number(&series), *count, "{rcode}");
    }
    assert_eq!(
        prometheus.number(r#"sum(trawl_traffic_dns_queries_total{source="web"})"#),
        80
    );

    // Connections: 80 requests and 3 downloads established and closed, 2 refused.
    let closed = |outcome: &str, to: &str| {
        prometheus.number(&format!(
            r#"sum(trawl_traffic_tcp_connections_closed_total{{source="web",destination="{to}",outcome="{outcome}"}})"#
        ))
    };
    assert_eq!(closed("refused", "api"), 2);
    assert_eq!(closed("established", "api"), 80);
    assert_eq!(closed("established", "files"), 3);
    assert_eq!(
        prometheus.number(r#"sum(trawl_traffic_tcp_connections_opened_total{source="web",destination="api"})"#),
        82
    );
    assert!(prometheus.number(r#"sum(trawl_traffic_tcp_retransmissions_total{source="files",destination="web"})"#) > 0);
    assert_eq!(
        prometheus.number(r#"sum(trawl_traffic_tcp_retransmissions_total{source="api"})"#),
        0
    );

    // The chart's alerts, evaluated live: pending (their `for` has not passed) on the faulty
    // edges, and nowhere else.
    wait_until("the alerts on the faulty edges", DEADLINE, || async {
        let alerts = prometheus.alerts();
        // Shown when the wait times out.
        eprintln!("alerts now: {alerts:?}");
        (alerts
            == [
                ("TrawlDnsFailureRatioHigh".to_owned(), "web -> ".to_owned()),
                ("TrawlRequestErrorRatioHigh".to_owned(), "web -> api".to_owned()),
                ("TrawlTcpRetransmissionRatioHigh".to_owned(), "files -> web".to_owned()),
            ])
        .then_some(())
    })
    .await;
    pool.close().await;
}
