//! The real `trawl-api` over a real PostgreSQL, with data written by the real `trawl-parser` from
//! sniffer-format batches on a real RabbitMQ: every route and filter, paging while rows arrive,
//! bad input, auth, the pcap export read back by tshark, and the live stream with resume.
//!
//! Run (after `bash hack/services.sh`): `cargo test -p api --test api`

use std::io::BufRead;
use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use lapin::options::QueueDeclareOptions;
use serde_json::Value;
use testkit::postgres::TestDatabase;
use testkit::process::{Service, free_port, workspace_binary};
use testkit::rabbitmq::TestVhost;
use testkit::{batches, frames, repo_root, wait_until};

const DEADLINE: Duration = Duration::from_secs(60);
const NAMESPACE: &str = "team-a";
const NAME: &str = "web";
const SESSION: &str = "team-a/web";
const OTHER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);

const TOKENS: &str = r#"
tokens:
  - name: reader
    token: reader-token-0123456789
    scopes: [read]
  - name: analyst
    token: analyst-token-0123456789
    scopes: [read, payload, pcap]
"#;

struct Rig {
    database: TestDatabase,
    channel: lapin::Channel,
    _connection: lapin::Connection,
    origin: wire::Origin,
    next_batch: u64,
    next_seq: u64,
    _parser: Service,
    api: Service,
    base: String,
    token: Option<&'static str>,
    work: std::path::PathBuf,
    _vhost: TestVhost,
}

impl Rig {
    async fn start() -> Self {
        Self::start_with(None).await
    }

    async fn start_with(tokens: Option<&str>) -> Self {
        let database = TestDatabase::create().await;
        let vhost = TestVhost::create();
        let queue = "session-queue";
        let connection = lapin::Connection::connect(&vhost.amqp_url, Default::default())
            .await
            .unwrap();
        let channel = connection.create_channel().await.unwrap();
        channel.confirm_select(Default::default()).await.unwrap();
        let durable = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        channel
            .queue_declare(queue.into(), durable, Default::default())
            .await
            .unwrap();
        let mut parser = Command::new(workspace_binary("parser", "trawl-parser"));
        parser
            .args(["--session", SESSION, "--queue", queue, "--amqp-url", &vhost.amqp_url])
            .args(["--database-url", &database.url])
            .args(["--listen", &format!("127.0.0.1:{}", free_port())]);
        let parser = Service::start("trawl-parser", parser);

        let work = std::env::temp_dir().join(format!("trawl-api-test-{}", testkit::unique_suffix()));
        std::fs::create_dir_all(work.join("ui/assets")).unwrap();
        std::fs::write(work.join("ui/index.html"), "<!doctype html><title>Trawl UI</title>").unwrap();
        std::fs::write(work.join("ui/assets/app-1a2b3c.js"), "console.log('trawl')").unwrap();
        let port = free_port();
        let mut api = Command::new(env!("CARGO_BIN_EXE_trawl-api"));
        api.args(["--database-url", &database.url])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--static-dir")
            .arg(work.join("ui"))
            .stdout(std::fs::File::create(work.join("api.log")).unwrap());
        if let Some(tokens) = tokens {
            std::fs::write(work.join("tokens.yaml"), tokens).unwrap();
            api.arg("--tokens-file").arg(work.join("tokens.yaml"));
        }
        let api = Service::start("trawl-api", api);
        let base = format!("http://127.0.0.1:{port}");
        wait_until("the API to be ready", DEADLINE, || async {
            ureq::get(format!("{base}/readyz")).call().ok().map(|_| ())
        })
        .await;
        // The operator's mirror of the session, written the way the operator writes it.
        let pool = database.pool().await;
        database::mirror_session(&pool, &capture_session()).await.unwrap();
        pool.close().await;
        Self {
            database,
            channel,
            _connection: connection,
            origin: batches::origin(SESSION, "node-a"),
            next_batch: 0,
            next_seq: 0,
            _parser: parser,
            api,
            base,
            token: None,
            work,
            _vhost: vhost,
        }
    }

    /// Publishes one batch of the given frames and waits until the parser has stored it.
    async fn store(&mut self, frames: Vec<Vec<u8>>) {
        let now = batches::now_nanos();
        let first = self.next_seq;
        let packets: Vec<(u64, u64, Vec<u8>)> = frames
            .into_iter()
            .enumerate()
            .map(|(i, frame)| (first + i as u64, now + i as u64 * 1000, frame))
            .collect();
        self.next_seq += packets.len() as u64;
        let counters = wire::Counters {
            captured: self.next_seq,
            kernel_drops: 0,
            drops: vec![],
        };
        let body = batches::batch_of(&self.origin, self.next_batch, 0, &counters, packets);
        let id = self.origin.batch_id(self.next_batch);
        self.next_batch += 1;
        batches::publish(&self.channel, "", "session-queue", &id, &body).await;
        let expected = self.next_batch as i64;
        let pool = self.database.pool().await;
        wait_until("the parser to store the batch", DEADLINE, || async {
            let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM batches")
                .fetch_one(&pool)
                .await
                .ok()?;
            (stored >= expected).then_some(())
        })
        .await;
        pool.close().await;
    }

    /// 10 DNS, 10 HTTP and 10 TLS packets from 192.0.2.2, and 6 UDP packets from 198.51.100.7.
    async fn store_mix(&mut self) {
        let mut mix: Vec<Vec<u8>> = (0..30).map(batches::l7_frame).collect();
        mix.extend((0..6).map(|i| {
            frames::udp_between(
                batches::CLIENT,
                batches::SERVER,
                OTHER,
                frames::DESTINATION,
                9999,
                &[i as u8; 32],
            )
        }));
        self.store(mix).await;
    }

    fn request(&self, path: &str) -> ureq::RequestBuilder<ureq::typestate::WithoutBody> {
        let mut request = ureq::get(format!("{}{path}", self.base));
        if let Some(token) = self.token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        request.config().http_status_as_error(false).build()
    }

    /// Status and JSON body of a GET.
    fn get(&self, path: &str) -> (u16, Value) {
        let mut response = self.request(path).call().unwrap();
        let status = response.status().as_u16();
        let bytes = response.body_mut().read_to_vec().unwrap();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    fn ok(&self, path: &str) -> Value {
        let (status, body) = self.get(path);
        if status == 500 {
            // The reason is in the API's log, not in what it answers.
            let log = std::fs::read_to_string(self.work.join("api.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(5).collect();
            panic!("GET {path}: {body}; the API's log ends with {tail:#?}");
        }
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    /// Every packet the filter selects, through all pages of `limit`.
    fn all_packets(&self, query: &str, limit: usize) -> Vec<Value> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page_query = match &cursor {
                Some(c) => format!("/api/v1/packets?{query}&limit={limit}&cursor={c}"),
                None => format!("/api/v1/packets?{query}&limit={limit}"),
            };
            let page = self.ok(&page_query);
            items.extend(page["items"].as_array().unwrap().iter().cloned());
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return items,
            }
        }
    }

    fn count(&self, query: &str) -> usize {
        self.all_packets(&format!("session={SESSION}&{query}"), 1000).len()
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.work);
    }
}

fn capture_session() -> crds::CaptureSession {
    let yaml = std::fs::read_to_string(repo_root().join("examples/capture.yaml")).unwrap();
    let mut session: crds::CaptureSession = serde_yaml::from_str(&yaml).unwrap();
    session.metadata.namespace = Some(NAMESPACE.into());
    session.metadata.name = Some(NAME.into());
    session.metadata.uid = Some("0b7c1d2e-0000-4000-8000-000000000001".into());
    session.status = Some(
        serde_json::from_value(serde_json::json!({
            "phase": "Capturing",
            "conditions": [{"type": "Ready", "status": "True", "reason": "Ready", "message": "2 sniffers ready",
                            "lastTransitionTime": "2026-11-27T10:00:00Z"}],
            "sniffers": {"desired": 2, "ready": 2},
        }))
        .unwrap(),
    );
    session
}

fn ids(items: &[Value]) -> Vec<i64> {
    items.iter().map(|p| p["id"].as_i64().unwrap()).collect()
}

#[tokio::test]
async fn packets_are_filtered_paged_and_detailed() {
    let mut rig = Rig::start().await;
    rig.store_mix().await;

    let all = rig.all_packets(&format!("session={SESSION}"), 7);
    let all_ids = ids(&all);
    assert_eq!(all_ids.len(), 36, "every stored packet, once");
    assert!(all_ids.windows(2).all(|w| w[0] > w[1]), "newest first: {all_ids:?}");

    for (query, expected) in [
        ("protocol=dns", 10),
        ("protocol=udp", 16),
        ("q=tcp%20and%20port%20443", 10),
        ("host=198.51.100.7", 6),
        ("src=198.51.100.0/24", 6),
        ("dst=198.51.100.7", 0),
        ("port=53", 10),
        ("q=not%20udp", 20),
        ("q=(dns%20or%20http)%20and%20src%20192.0.2.2", 20),
        ("since=2000-01-01T00:00:00Z&until=2001-01-01T00:00:00Z", 0),
        ("since=1h", 36),
    ] {
        assert_eq!(rig.count(query), expected, "{query}");
    }

    let dns = rig.ok(&format!("/api/v1/packets?session={SESSION}&protocol=dns&limit=1"));
    let packet = &dns["items"][0];
    assert_eq!(packet["l7"], "dns");
    assert!(packet["l7_name"].as_str().unwrap().ends_with(".example.org"));
    // The Info line comes from the kept bytes: headers only here, so it describes the UDP header.
    assert!(
        packet["info"].as_str().unwrap().starts_with("40000 → 53 Len="),
        "{packet}"
    );
    let detail = rig.ok(&format!("/api/v1/packets/{}", packet["id"]));
    let layers: Vec<&str> = detail["layers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["name"].as_str().or(l["layer"].as_str()))
        .collect();
    // Layers are dissected on read from the kept bytes: this session keeps headers only, so the
    // tree ends at UDP while the row still says what the payload was at capture.
    assert_eq!(layers[..3], ["ethernet", "ipv4", "udp"], "{detail}");
    assert_eq!(detail["l7"], "dns");
    assert_eq!(
        detail["data_hex"].as_str().unwrap().len(),
        2 * (14 + 20 + 8),
        "headers as hex"
    );
    let (status, body) = rig.get(&format!("/api/v1/packets/{}", (1i64 << 40) + 3));
    assert_eq!(status, 404, "an id whose segment does not exist: {body}");
}

#[tokio::test]
async fn paging_neither_skips_nor_repeats_while_rows_arrive() {
    let mut rig = Rig::start().await;
    rig.store_mix().await;
    let first = rig.ok(&format!("/api/v1/packets?session={SESSION}&limit=10"));
    let mut seen = ids(first["items"].as_array().unwrap());
    // New packets arrive between pages.
    rig.store((0..12).map(batches::l7_frame).collect()).await;
    let mut cursor = first["next_cursor"].as_str().map(str::to_owned);
    while let Some(c) = cursor {
        let page = rig.ok(&format!("/api/v1/packets?session={SESSION}&limit=10&cursor={c}"));
        seen.extend(ids(page["items"].as_array().unwrap()));
        cursor = page["next_cursor"].as_str().map(str::to_owned);
        if cursor.is_some() {
            rig.store((0..3).map(batches::l7_frame).collect()).await;
        }
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), seen.len(), "a row was repeated: {seen:?}");
    assert_eq!(seen.len(), 36, "the original 36 rows, none skipped");
    assert!(seen.windows(2).all(|w| w[0] > w[1]));
}

#[tokio::test]
async fn flows_and_stats_summarise_the_traffic() {
    let mut rig = Rig::start().await;
    rig.store_mix().await;

    for sort in ["last_seen", "bytes", "packets"] {
        let mut keys = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let query = match &cursor {
                Some(c) => format!("/api/v1/flows?session={SESSION}&sort={sort}&limit=1&cursor={c}"),
                None => format!("/api/v1/flows?session={SESSION}&sort={sort}&limit=1"),
            };
            let page = rig.ok(&query);
            keys.extend(
                page["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|f| f["flow_key"].as_str().unwrap().to_owned()),
            );
            cursor = page["next_cursor"].as_str().map(str::to_owned);
            if cursor.is_none() {
                break;
            }
        }
        let mut unique = keys.clone();
        unique.sort();
        unique.dedup();
        assert_eq!((keys.len(), unique.len()), (4, 4), "sort={sort}: {keys:?}");
    }
    let by_bytes = rig.ok(&format!("/api/v1/flows?session={SESSION}&sort=bytes"));
    let flows = by_bytes["items"].as_array().unwrap();
    let bytes: Vec<i64> = flows.iter().map(|f| f["bytes"].as_i64().unwrap()).collect();
    assert!(bytes.windows(2).all(|w| w[0] >= w[1]), "{bytes:?}");
    let other = rig.ok(&format!("/api/v1/flows?session={SESSION}&src=198.51.100.7"));
    let other = &other["items"][0];
    assert_eq!(
        (other["packets"].as_i64(), other["dst_port"].as_i64()),
        (Some(6), Some(9999))
    );
    // A flow links to its packets.
    let filter = other["packets_filter"].as_str().unwrap();
    let linked = rig.count(&format!("q={}", filter.replace(' ', "%20")));
    assert_eq!(linked, 6, "{filter}");

    let stats = rig.ok(&format!("/api/v1/stats?session={SESSION}&since=1h"));
    assert_eq!(stats["packets"], 36);
    let timeline_packets: i64 = stats["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["packets"].as_i64().unwrap())
        .sum();
    assert_eq!(timeline_packets, 36);
    let named = |list: &str, name: &str| {
        stats[list]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .map(|c| c["packets"].as_i64().unwrap())
    };
    assert_eq!(named("protocols", "dns"), Some(10));
    assert_eq!(named("protocols", "udp"), Some(6));
    assert_eq!(named("top_http_hosts", "web.example.org"), Some(10));
    assert_eq!(named("top_tls_server_names", "secure.example.org"), Some(10));
    assert_eq!(named("top_talkers", "192.0.2.2"), Some(30));
    assert_eq!(stats["top_dns_names"].as_array().unwrap().len(), 10);

    // Up to a minute boundary after the data, its whole minutes come from the per-minute rollups;
    // any other filter reads the packets. Both must give the same numbers.
    let until = (chrono::Utc::now() + chrono::Duration::minutes(2)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let range = format!("session={SESSION}&since=2h&until={until}");
    let rolled_up = rig.ok(&format!("/api/v1/stats?{range}"));
    let raw = rig.ok(&format!("/api/v1/stats?{range}&q=not%20port%201"));
    assert_eq!(rolled_up["packets"], 36);
    for field in [
        "packets",
        "bytes",
        "bucket_seconds",
        "timeline",
        "protocols",
        "top_talkers",
        "top_dns_names",
    ] {
        assert_eq!(rolled_up[field], raw[field], "{field}");
    }
    assert_eq!(rolled_up["top_http_hosts"], raw["top_http_hosts"]);
    assert_eq!(rolled_up["top_tls_server_names"], raw["top_tls_server_names"]);
}

#[tokio::test]
async fn bad_input_is_a_400_naming_the_parameter_and_unknown_things_are_404() {
    let rig = Rig::start().await;
    for (path, parameter) in [
        ("/api/v1/packets?limit=0", "limit"),
        ("/api/v1/packets?limit=many", "limit"),
        ("/api/v1/packets?limit=100000", "limit"),
        ("/api/v1/packets?since=yesterday", "since"),
        (
            "/api/v1/packets?since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z",
            "until",
        ),
        ("/api/v1/packets?src=10.0.0.300", "src"),
        ("/api/v1/packets?host=10.0.0.0/33", "host"),
        ("/api/v1/packets?port=70000", "port"),
        ("/api/v1/packets?protocol=t%27cp", "protocol"),
        ("/api/v1/packets?q=tcp%20and", "q"),
        ("/api/v1/packets?q=port%20443%27%3B%20drop%20table%20packets", "q"),
        ("/api/v1/packets?cursor=bm90LWEtY3Vyc29y", "cursor"),
        ("/api/v1/packets?session=no-slash", "session"),
        ("/api/v1/packets/abc", "id"),
        ("/api/v1/flows?sort=size", "sort"),
        ("/api/v1/stats?bucket=fortnightly", "bucket"),
        ("/api/v1/stream", "session"),
    ] {
        let (status, body) = rig.get(path);
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["error"]["parameter"], parameter, "{path}: {body}");
        assert!(!body["error"]["message"].as_str().unwrap().is_empty());
    }
    for path in [
        "/api/v1/sessions/team-a/missing",
        "/api/v1/sessions/team-a/missing/pcap",
        "/api/v1/packets?session=team-a/missing",
        "/api/v1/packets/987654321",
    ] {
        let (status, body) = rig.get(path);
        assert_eq!(status, 404, "{path}: {body}");
        assert!(body["error"]["message"].is_string(), "{path}: {body}");
    }
    let sessions = rig.ok("/api/v1/sessions");
    let session = &sessions["items"][0];
    assert_eq!(
        (
            session["key"].as_str(),
            session["phase"].as_str(),
            session["ready"].as_bool()
        ),
        (Some(SESSION), Some("Capturing"), Some(true))
    );
    assert_eq!(rig.ok(&format!("/api/v1/sessions/{SESSION}"))["sniffers"]["ready"], 2);
}

#[tokio::test]
async fn the_pcap_export_reads_back_in_tshark() {
    let mut rig = Rig::start().await;
    rig.store_mix().await;
    let mut response = rig
        .request(&format!("/api/v1/sessions/{SESSION}/pcap?protocol=dns"))
        .call()
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers().get("content-type").unwrap(),
        "application/vnd.tcpdump.pcap"
    );
    let bytes = response.body_mut().read_to_vec().unwrap();
    let file = rig.work.join("dns.pcap");
    std::fs::write(&file, bytes).unwrap();
    let tshark = Command::new("tshark")
        .arg("-r")
        .arg(&file)
        .args(["-T", "fields", "-e", "ip.src", "-e", "udp.dstport"])
        .output()
        .expect("tshark (apt install tshark)");
    assert!(tshark.status.success(), "{}", String::from_utf8_lossy(&tshark.stderr));
    // The session keeps headers only (storePayload: false), so tshark sees the DNS packets'
    // addresses and ports but not their questions.
    let packets: Vec<String> = String::from_utf8_lossy(&tshark.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(packets.len(), 10, "{packets:?}");
    assert!(packets.iter().all(|p| p == "192.0.2.2\t53"), "{packets:?}");
}

/// A live pcapng export piped into `tshark -r -` as it arrives (as `wireshark -k -i -` reads
/// it): tshark's lines come back on the receiver, one per packet (interface name, source, id).
fn tshark_live(rig: &Rig, query: &str) -> (mpsc::Receiver<String>, std::thread::JoinHandle<bool>) {
    let response = rig
        .request(&format!(
            "/api/v1/sessions/{SESSION}/pcap?format=pcapng&follow=true{query}"
        ))
        .call()
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut tshark = Command::new("tshark")
        .args([
            "-l",
            "-r",
            "-",
            "-T",
            "fields",
            "-e",
            "frame.interface_name",
            "-e",
            "ip.src",
        ])
        .args(["-e", "frame.packet_id"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("tshark (apt install tshark)");
    let mut stdin = tshark.stdin.take().unwrap();
    let stdout = tshark.stdout.take().unwrap();
    // Bytes as they come, into tshark; the export ends when the session is over.
    let feeding = std::thread::spawn(move || {
        let copied = std::io::copy(&mut response.into_body().into_reader(), &mut stdin).is_ok();
        drop(stdin);
        let _ = tshark.wait();
        copied
    });
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                return;
            }
        }
    });
    (receiver, feeding)
}

#[tokio::test]
async fn a_live_pcapng_export_reaches_tshark_while_packets_are_stored_and_ends_with_the_session() {
    let mut rig = Rig::start().await;
    rig.store_mix().await;
    let (lines, feeding) = tshark_live(&rig, "&protocol=dns");
    // Only what is stored from now on: 4 DNS packets among 12.
    rig.store((0..12).map(batches::l7_frame).collect()).await;
    let live: Vec<String> = (0..4)
        .map(|i| {
            lines
                .recv_timeout(DEADLINE)
                .unwrap_or_else(|_| panic!("live packet {} of 4 did not reach tshark", i + 1))
        })
        .collect();
    let fields: Vec<Vec<&str>> = live.iter().map(|line| line.split('\t').collect()).collect();
    assert!(
        fields.iter().all(|f| f[0] == "node-a/eth0" && f[1] == "192.0.2.2"),
        "one interface per node and interface, named: {live:?}"
    );
    let ids: Vec<i64> = fields.iter().map(|f| f[2].parse().unwrap()).collect();

    // The session completes: the export ends by itself, cleanly.
    let pool = rig.database.pool().await;
    sqlx::query("UPDATE sessions SET phase = 'Completed'")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    assert!(feeding.join().unwrap(), "the export ended with an error");
    assert!(
        lines.recv_timeout(Duration::from_secs(5)).is_err(),
        "nothing after the end"
    );

    // Resumed after the second packet's id: the other two, then the end (the session is over).
    let (lines, feeding) = tshark_live(&rig, &format!("&protocol=dns&after={}", ids[1]));
    assert!(feeding.join().unwrap());
    let resumed: Vec<i64> = lines
        .try_iter()
        .map(|line| line.rsplit('\t').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(resumed, ids[2..], "resumed after {}", ids[1]);
    let (status, body) = rig.get(&format!("/api/v1/sessions/{SESSION}/pcap?after=3"));
    assert_eq!((status, body["error"]["parameter"].as_str()), (400, Some("after")));
}

/// Reads `packet` events of an SSE response on a thread; returns their ids as they come.
fn follow(rig: &Rig, query: &str, last_event_id: Option<i64>) -> mpsc::Receiver<i64> {
    let mut request = rig.request(&format!("/api/v1/stream?{query}"));
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id.to_string());
    }
    let response = request.call().unwrap();
    assert_eq!(response.status(), 200);
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let reader = std::io::BufReader::new(response.into_body().into_reader());
        for line in reader.lines() {
            let Ok(line) = line else { return };
            if let Some(id) = line.strip_prefix("id:")
                && sender.send(id.trim().parse().unwrap()).is_err()
            {
                return;
            }
        }
    });
    receiver
}

fn receive(events: &mpsc::Receiver<i64>, count: usize) -> Vec<i64> {
    (0..count)
        .map(|i| {
            events
                .recv_timeout(DEADLINE)
                .unwrap_or_else(|_| panic!("event {} of {count} did not come", i + 1))
        })
        .collect()
}

#[tokio::test]
async fn the_stream_delivers_new_packets_and_resumes_after_a_reconnect() {
    let mut rig = Rig::start().await;
    rig.store_mix().await;
    let events = follow(&rig, &format!("session={SESSION}&protocol=dns"), None);
    // Only packets stored after connecting: 4 DNS among the 12 new ones.
    rig.store((0..12).map(batches::l7_frame).collect()).await;
    let first = receive(&events, 4);
    let newest_before: i64 = rig.all_packets(&format!("session={SESSION}&protocol=dns"), 1000).len() as i64;
    assert_eq!(newest_before, 14);
    drop(events);

    rig.store((0..6).map(batches::l7_frame).collect()).await;
    let resumed = follow(&rig, &format!("session={SESSION}&protocol=dns"), first.last().copied());
    let second = receive(&resumed, 2);
    assert!(
        second.iter().all(|id| id > first.last().unwrap()),
        "{first:?} then {second:?}"
    );
    let mut all = first.clone();
    all.extend(&second);
    let mut unique = all.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 6, "no packet twice: {all:?}");
    assert!(
        resumed.recv_timeout(Duration::from_secs(2)).is_err(),
        "only the 2 new DNS packets after the resume point"
    );
}

#[tokio::test]
async fn tokens_are_required_scopes_are_enforced_and_exports_are_audited() {
    let mut rig = Rig::start_with(Some(TOKENS)).await;
    rig.store_mix().await;
    assert_eq!(rig.get("/api/v1/sessions").0, 401, "no token");
    assert_eq!(rig.get("/healthz").0, 200, "probes need no token");
    rig.token = Some("wrong-token-0123456789");
    assert_eq!(rig.get("/api/v1/sessions").0, 401, "unknown token");

    rig.token = Some("reader-token-0123456789");
    assert_eq!(rig.get("/api/v1/sessions").0, 200);
    let (status, body) = rig.get(&format!("/api/v1/sessions/{SESSION}/pcap"));
    assert_eq!(status, 403, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("pcap"));

    rig.token = Some("analyst-token-0123456789");
    assert_eq!(rig.get(&format!("/api/v1/sessions/{SESSION}/pcap")).0, 200);

    // EventSource cannot send headers: the token may come in the query string.
    rig.token = None;
    let response = rig
        .request(&format!(
            "/api/v1/stream?session={SESSION}&access_token=reader-token-0123456789"
        ))
        .call()
        .unwrap();
    assert_eq!(response.status(), 200);
    drop(response);

    let log = std::fs::read_to_string(rig.work.join("api.log")).unwrap();
    let audit: Vec<&str> = log.lines().filter(|l| l.contains("audit")).collect();
    assert!(
        audit
            .iter()
            .any(|l| l.contains("analyst") && l.contains("export-pcap") && l.contains(SESSION)),
        "{audit:?}"
    );
    assert!(
        !audit.iter().any(|l| l.contains("reader") && l.contains("export-pcap")),
        "{audit:?}"
    );
    assert!(!log.contains("reader-token-0123456789"), "a token reached the log");
    let _ = &rig.api;
}

#[tokio::test]
async fn openapi_docs_metrics_and_the_spa_are_served() {
    let rig = Rig::start().await;
    let document = rig.ok("/api/openapi.json");
    for path in [
        "/api/v1/sessions",
        "/api/v1/sessions/{namespace}/{name}",
        "/api/v1/sessions/{namespace}/{name}/pcap",
        "/api/v1/packets",
        "/api/v1/packets/{id}",
        "/api/v1/flows",
        "/api/v1/stats",
        "/api/v1/stream",
    ] {
        assert!(document["paths"][path]["get"].is_object(), "{path} undocumented");
    }
    let params: Vec<&str> = document["paths"]["/api/v1/packets"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    for name in [
        "session", "since", "until", "src", "dst", "host", "port", "protocol", "q", "cursor", "limit",
    ] {
        assert!(params.contains(&name), "{name} missing from {params:?}");
    }
    let (status, docs) = rig.get("/docs");
    let docs = docs.as_str().unwrap().to_owned();
    assert_eq!(status, 200);
    assert!(docs.contains("/api/v1/packets") && docs.contains("PacketPage"));
    assert!(
        !docs.contains("src=\"http") && !docs.contains("href=\"http"),
        "the docs page must not load anything from elsewhere"
    );

    let (_, metrics) = rig.get("/metrics");
    let metrics = metrics.as_str().unwrap().to_owned();
    assert!(
        metrics.contains("trawl_api_http_requests_total{route=\"/api/openapi.json\",method=\"GET\",status=\"200\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("trawl_api_http_request_duration_seconds_bucket"));

    let (status, index) = rig.get("/flows/some-client-route");
    assert_eq!(status, 200);
    assert!(
        index.as_str().unwrap().contains("Trawl UI"),
        "client routes get index.html"
    );
    let asset = rig.request("/assets/app-1a2b3c.js").call().unwrap();
    assert_eq!(
        asset.headers().get("cache-control").unwrap(),
        "public, max-age=31536000, immutable"
    );
    let index = rig.request("/").call().unwrap();
    assert_eq!(index.headers().get("cache-control").unwrap(), "no-cache");
    assert_eq!(rig.get("/readyz").0, 200);
}

#[tokio::test]
async fn l7_events_are_listed_filtered_and_paged() {
    let mut rig = Rig::start().await;
    rig.store_mix().await;

    let dns = rig.ok(&format!("/api/v1/events/dns?session={SESSION}"));
    let items = dns["items"].as_array().unwrap();
    assert_eq!(items.len(), 10, "{dns}");
    assert!(
        items
            .iter()
            .all(|e| e["query"].as_str().unwrap().ends_with(".example.org") && e["query_type"] == "A")
    );
    assert!(items.iter().all(|e| e["server_port"] == 53 && e["transport"] == "udp"));

    // Paged three at a time: every HTTP request once, newest first.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/events/http?session={SESSION}&limit=3&cursor={c}"),
            None => format!("/api/v1/events/http?session={SESSION}&limit=3"),
        };
        let page = rig.ok(&path);
        for event in page["items"].as_array().unwrap() {
            assert_eq!(event["method"], "GET");
            assert_eq!(event["host"], "web.example.org");
            seen.push(event["id"].as_i64().unwrap());
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 10);
    assert!(seen.windows(2).all(|w| w[0] > w[1]), "{seen:?}");

    let tls = rig.ok(&format!(
        "/api/v1/events/tls?session={SESSION}&q=tcp%20and%20port%20443"
    ));
    let items = tls["items"].as_array().unwrap();
    assert_eq!(items.len(), 10, "{tls}");
    assert!(
        items
            .iter()
            .all(|e| e["sni"] == "secure.example.org" && e["alpn"][0] == "h2")
    );
    assert!(items.iter().all(|e| e["ja4"].as_str().unwrap().starts_with("t13d")));
    let none = rig.ok(&format!("/api/v1/events/tls?session={SESSION}&q=dns"));
    assert_eq!(none["items"].as_array().unwrap().len(), 0);

    let (status, body) = rig.get(&format!("/api/v1/events/dns?session={SESSION}&q=port%20x"));
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["parameter"], "q", "{body}");
}

#[tokio::test]
async fn live_streams_are_bounded_per_caller_and_given_back_when_closed() {
    let mut rig = Rig::start_with(Some(TOKENS)).await;
    rig.store_mix().await;
    let open = |rig: &Rig| {
        rig.request(&format!("/api/v1/stream?session={SESSION}"))
            .call()
            .unwrap()
    };
    rig.token = Some("reader-token-0123456789");
    let mine: Vec<_> = (0..8).map(|_| open(&rig)).collect();
    assert!(mine.iter().all(|response| response.status() == 200));
    let mut refused = open(&rig);
    assert_eq!(refused.status(), 429, "a ninth stream of one caller");
    let body = refused.body_mut().read_to_string().unwrap();
    assert!(body.contains("at most 8 per caller"), "{body}");
    // Another caller is not held up by the first one's streams.
    rig.token = Some("analyst-token-0123456789");
    assert_eq!(open(&rig).status(), 200);
    // A closed stream gives its place back (the server notices at its next poll).
    drop(mine);
    rig.token = Some("reader-token-0123456789");
    wait_until("a closed stream's place to be free", DEADLINE, || async {
        let response = open(&rig);
        (response.status() == 200).then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_payload_rule_hides_query_strings_and_header_values_from_readers() {
    let mut rig = Rig::start_with(Some(TOKENS)).await;
    let request = frames::http_get("shop.example", "/cart?card=4111111111111111");
    rig.store(vec![frames::tcp(batches::CLIENT, batches::SERVER, 80, 0x18, &request)])
        .await;
    let event = |rig: &Rig| {
        let (status, body) = rig.get(&format!("/api/v1/events/http?session={SESSION}"));
        assert_eq!(status, 200, "{body}");
        body["items"][0].clone()
    };
    rig.token = Some("analyst-token-0123456789");
    let full = event(&rig);
    assert_eq!(full["path"], "/cart?card=4111111111111111");
    assert_eq!(full["user_agent"], "trawl-test");
    // `read` alone: method, host and path, but neither the query string nor header values.
    rig.token = Some("reader-token-0123456789");
    let read = event(&rig);
    assert_eq!(
        (&read["method"], &read["host"], &read["path"], &read["user_agent"]),
        (&full["method"], &full["host"], &Value::from("/cart"), &Value::Null)
    );
}

#[tokio::test]
async fn grpc_calls_are_http_events_with_their_service_method_and_status() {
    let mut rig = Rig::start().await;
    let (client, server) = frames::grpc_call("/helloworld.Greeter/SayHello", 9);
    let (client_end, server_end) = ((frames::SOURCE, 40001), (frames::DESTINATION, 50051));
    rig.store(vec![
        frames::tcp_ports(batches::CLIENT, batches::SERVER, client_end, server_end, 0x18, &client),
        frames::tcp_ports(batches::SERVER, batches::CLIENT, server_end, client_end, 0x18, &server),
    ])
    .await;
    for query in ["protocol=grpc", "q=grpc", "q=grpc%20and%20port%2050051"] {
        let page = rig.ok(&format!("/api/v1/events/http?session={SESSION}&{query}"));
        let [call] = &page["items"].as_array().unwrap()[..] else {
            panic!("one call for {query}: {page}");
        };
        assert_eq!(call["protocol"], "grpc");
        assert_eq!(
            (&call["grpc_service"], &call["grpc_method"]),
            (&"helloworld.Greeter".into(), &"SayHello".into())
        );
        assert_eq!(
            (&call["method"], &call["scheme"], &call["host"], &call["status"]),
            (
                &"POST".into(),
                &"http".into(),
                &"greeter.test:50051".into(),
                &200.into()
            )
        );
        assert_eq!(
            (&call["grpc_status"], &call["grpc_message"]),
            (&9.into(), &"card declined".into())
        );
        assert_eq!(
            (&call["request_messages"], &call["response_messages"]),
            (&1.into(), &1.into())
        );
        assert_eq!(
            (&call["request_bytes"], &call["response_bytes"]),
            (&10.into(), &16.into())
        );
        assert_eq!(call["stream_id"], 1);
    }
    let http1 = rig.ok(&format!("/api/v1/events/http?session={SESSION}&protocol=http"));
    assert_eq!(http1["items"].as_array().unwrap().len(), 0, "{http1}");
    // The packets name the protocol too.
    let packets = rig.ok(&format!("/api/v1/packets?session={SESSION}&q=grpc"));
    let names: Vec<&Value> = packets["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["l7_name"])
        .collect();
    assert_eq!(
        names,
        [&Value::Null, &"greeter.test:50051".into()],
        "the response's and the request's: {packets}"
    );
}

#[tokio::test]
async fn tunnelled_packets_are_found_by_their_tunnel_and_its_addresses() {
    let mut rig = Rig::start().await;
    let pod_request = frames::tcp(
        batches::CLIENT,
        batches::SERVER,
        80,
        0x18,
        &frames::http_get("web.example", "/"),
    );
    let vxlan = [&[0x08, 0, 0, 0, 0, 0, 42, 0][..], &pod_request].concat();
    let (node_a, node_b) = ("172.18.0.2".parse().unwrap(), "172.18.0.3".parse().unwrap());
    rig.store(vec![
        frames::udp_between(batches::CLIENT, batches::SERVER, node_a, node_b, 4789, &vxlan),
        pod_request.clone(),
    ])
    .await;
    for q in ["vxlan", "host%20172.18.0.2", "src%20172.18.0.2%20and%20http"] {
        let page = rig.ok(&format!("/api/v1/packets?session={SESSION}&q={q}"));
        let [packet] = &page["items"].as_array().unwrap()[..] else {
            panic!("the tunnelled packet alone for {q}: {page}");
        };
        assert_eq!((&packet["tunnel"], &packet["tunnel_id"]), (&"vxlan".into(), &42.into()));
        assert_eq!(
            (&packet["outer_src"], &packet["outer_dst"]),
            (&"172.18.0.2".into(), &"172.18.0.3".into())
        );
        assert_eq!(
            (&packet["l7"], &packet["l7_name"]),
            (&"http".into(), &"web.example".into())
        );
        assert_eq!(packet["dst_port"], 80);
    }
    // Both packets carry the same request, as the pod sent it.
    let page = rig.ok(&format!("/api/v1/packets?session={SESSION}&q=http"));
    assert_eq!(page["items"].as_array().unwrap().len(), 2, "{page}");
}

#[tokio::test]
async fn a_quic_initial_is_a_tls_event_over_quic() {
    let mut rig = Rig::start().await;
    let fixture = testkit::repo_root().join("dissect/tests/fixtures/quic-initial.pcap");
    let frames: Vec<Vec<u8>> = testkit::pcap::read(&fixture)
        .unwrap()
        .into_iter()
        .map(|(_, f)| f)
        .collect();
    rig.store(frames[..1].to_vec()).await;
    let page = rig.ok(&format!("/api/v1/events/tls?session={SESSION}&q=quic"));
    let [hello] = &page["items"].as_array().unwrap()[..] else {
        panic!("one hello: {page}");
    };
    assert_eq!(
        (&hello["transport"], &hello["sni"]),
        (&"quic".into(), &"quic.example".into())
    );
    assert!(hello["ja4"].as_str().unwrap().starts_with("q13d"), "{hello}");
    let tcp_only = rig.ok(&format!("/api/v1/events/tls?session={SESSION}&q=tcp"));
    assert_eq!(tcp_only["items"].as_array().unwrap().len(), 0, "{tcp_only}");
}
