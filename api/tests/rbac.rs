//! Who may see which packets (issue #21): the real `trawl-api` with `--auth kubernetes` against
//! the test control plane. Two sessions in two namespaces with packets stored by real parsers,
//! the chart's viewer and analyst ClusterRoles, and ServiceAccounts bound to the viewer role in
//! one namespace, the analyst role in the other, to nothing, and to the viewer role everywhere.
//! Every data route is asked as each of them: what a caller may see is there, what it may not is
//! absent (from lists and sums, not only refused when named), payload and pcap only for the
//! analyst; a token the cluster rejects is a 401, an unreachable API server a 503, and the audit
//! line carries the Kubernetes user and groups.
//!
//! Run (after `bash hack/services.sh`): `cargo test -p api --test rbac`

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::Duration;

use lapin::options::QueueDeclareOptions;
use serde_json::Value;
use testkit::control_plane::{ControlPlane, TestNamespace};
use testkit::postgres::TestDatabase;
use testkit::process::{Service, free_port, workspace_binary};
use testkit::rabbitmq::TestVhost;
use testkit::{batches, repo_root, unique_suffix, wait_until};

const DEADLINE: Duration = Duration::from_secs(60);
/// Packets stored per session.
const PACKETS: usize = 30;

fn run(command: &mut Command, stdin: Option<&str>) -> String {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(text) = stdin {
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), text.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn capture_session(namespace: &str, name: &str, store_payload: bool) -> crds::CaptureSession {
    let yaml = std::fs::read_to_string(repo_root().join("examples/capture.yaml")).unwrap();
    let mut session: crds::CaptureSession = serde_yaml::from_str(&yaml).unwrap();
    session.metadata.namespace = Some(namespace.into());
    session.metadata.name = Some(name.into());
    session.metadata.uid = Some(format!("{namespace}-{name}-uid"));
    session.spec.store_payload = store_payload;
    session
}

/// A session's packets, stored by a real parser from one batch of DNS, HTTP and TLS frames.
async fn store(database: &TestDatabase, vhost: &TestVhost, session: &str, store_payload: bool) -> Service {
    let queue = format!("q-{}", session.replace('/', "-"));
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
        .queue_declare(queue.as_str().into(), durable, Default::default())
        .await
        .unwrap();
    let mut parser = Command::new(workspace_binary("parser", "trawl-parser"));
    parser
        .args(["--session", session, "--queue", &queue, "--amqp-url", &vhost.amqp_url])
        .args(["--database-url", &database.url])
        .args(["--listen", &format!("127.0.0.1:{}", free_port())]);
    if store_payload {
        parser.arg("--store-payload");
    }
    let parser = Service::start("trawl-parser", parser);
    let origin = batches::origin(session, "node-a");
    let now = batches::now_nanos();
    let packets: Vec<(u64, u64, Vec<u8>)> = (0..PACKETS as u64)
        .map(|i| (i, now + i * 1000, batches::l7_frame(i)))
        .collect();
    let counters = wire::Counters {
        captured: PACKETS as u64,
        kernel_drops: 0,
        drops: vec![],
    };
    let body = batches::batch_of(&origin, 0, 0, &counters, packets);
    batches::publish(&channel, "", &queue, &origin.batch_id(0), &body).await;
    let pool = database.pool().await;
    wait_until(&format!("{session}'s batch stored"), DEADLINE, || async {
        let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM packets WHERE session = $1")
            .bind(session)
            .fetch_one(&pool)
            .await
            .ok()?;
        (stored == PACKETS as i64).then_some(())
    })
    .await;
    pool.close().await;
    parser
}

struct Api {
    base: String,
    log: std::path::PathBuf,
    _process: Service,
}

impl Api {
    fn start(database: &TestDatabase, kubeconfig: &std::path::Path) -> Self {
        let port = free_port();
        let log = std::env::temp_dir().join(format!("trawl-rbac-api-{}.log", unique_suffix()));
        let mut api = Command::new(env!("CARGO_BIN_EXE_trawl-api"));
        api.env("KUBECONFIG", kubeconfig)
            .args([
                "--database-url",
                &database.url,
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .args(["--auth", "kubernetes", "--token-audiences", "trawl"])
            .stdout(std::fs::File::create(&log).unwrap());
        Self {
            base: format!("http://127.0.0.1:{port}"),
            log,
            _process: Service::start("trawl-api", api),
        }
    }

    fn get(&self, token: &str, path: &str) -> (u16, Value) {
        let mut response = ureq::get(format!("{}{path}", self.base))
            .header("authorization", format!("Bearer {token}"))
            .config()
            .http_status_as_error(false)
            .build()
            .call()
            .unwrap();
        let status = response.status().as_u16();
        let bytes = response.body_mut().with_config().limit(64 << 20).read_to_vec().unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    /// The status of a GET, reading no body (the live stream has no end).
    fn status(&self, token: &str, path: &str) -> u16 {
        ureq::get(format!("{}{path}", self.base))
            .header("authorization", format!("Bearer {token}"))
            .config()
            .http_status_as_error(false)
            .build()
            .call()
            .unwrap()
            .status()
            .as_u16()
    }

    /// The `session` of every item of a list route.
    fn sessions_in(&self, token: &str, path: &str) -> BTreeSet<String> {
        let (status, body) = self.get(token, path);
        assert_eq!(status, 200, "{path}: {body}");
        body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| item["session"].as_str().unwrap().to_owned())
            .collect()
    }
}

fn token(namespace: &TestNamespace, account: &str) -> String {
    run(
        namespace
            .kubectl()
            .args(["create", "token", account, "--audience", "trawl", "--duration=1h"]),
        None,
    )
    .trim()
    .to_owned()
}

#[tokio::test]
async fn each_caller_sees_exactly_the_namespaces_its_roles_allow() {
    let control_plane = ControlPlane::shared();
    let (a, b) = (control_plane.namespace().await, control_plane.namespace().await);
    let (session_a, session_b) = (format!("{}/web", a.name), format!("{}/db", b.name));

    // The chart's roles, under a release name of this test's own.
    let release = format!("trawl-{}", &unique_suffix()[..6]);
    let mut template = control_plane.helm();
    template.args(["template", &release, repo_root().join("charts/trawl").to_str().unwrap()]);
    template.args(["--show-only", "templates/roles.yaml"]);
    let roles = run(&mut template, None);
    run(control_plane.kubectl().args(["apply", "-f", "-"]), Some(&roles));
    let (viewer, analyst) = (format!("{release}-viewer"), format!("{release}-analyst"));
    for account in ["viewer-a", "analyst-b", "nobody", "everywhere"] {
        run(a.kubectl().args(["create", "serviceaccount", account]), None);
    }
    let subject = |account: &str| format!("--serviceaccount={}:{account}", a.name);
    run(
        a.kubectl().args([
            "create",
            "rolebinding",
            "viewer-a",
            "--clusterrole",
            &viewer,
            &subject("viewer-a"),
        ]),
        None,
    );
    run(
        b.kubectl().args([
            "create",
            "rolebinding",
            "analyst-b",
            "--clusterrole",
            &analyst,
            &subject("analyst-b"),
        ]),
        None,
    );
    let everywhere = format!("{release}-everywhere");
    run(
        control_plane.kubectl().args([
            "create",
            "clusterrolebinding",
            &everywhere,
            "--clusterrole",
            &viewer,
            &subject("everywhere"),
        ]),
        None,
    );

    let database = TestDatabase::create().await;
    let vhost = TestVhost::create();
    let pool = database.pool().await;
    // The API migrates the database; the sessions mirror is written as the operator writes it.
    let api = Api::start(&database, &control_plane.kubeconfig);
    wait_until("the API to be ready", DEADLINE, || async {
        ureq::get(format!("{}/readyz", api.base)).call().ok().map(|_| ())
    })
    .await;
    database::mirror_session(&pool, &capture_session(&a.name, "web", false))
        .await
        .unwrap();
    database::mirror_session(&pool, &capture_session(&b.name, "db", true))
        .await
        .unwrap();
    let _parser_a = store(&database, &vhost, &session_a, false).await;
    let _parser_b = store(&database, &vhost, &session_b, true).await;
    let mut first_ids = Vec::new();
    for session in [&session_a, &session_b] {
        let id: i64 = sqlx::query_scalar("SELECT min(id) FROM packets WHERE session = $1")
            .bind(session)
            .fetch_one(&pool)
            .await
            .unwrap();
        first_ids.push(id);
    }
    let (packet_a, packet_b) = (first_ids[0], first_ids[1]);

    let viewer_a = token(&a, "viewer-a");
    let analyst_b = token(&a, "analyst-b");
    let nobody = token(&a, "nobody");
    let everywhere_token = token(&a, "everywhere");
    let both: BTreeSet<String> = [session_a.clone(), session_b.clone()].into();
    let only = |session: &str| BTreeSet::from([session.to_owned()]);
    let cases = [
        ("viewer-a", &viewer_a, only(&session_a)),
        ("analyst-b", &analyst_b, only(&session_b)),
        ("nobody", &nobody, BTreeSet::new()),
        ("everywhere", &everywhere_token, both.clone()),
    ];
    for (who, token, visible) in &cases {
        let (status, me) = api.get(token, "/api/v1/whoami");
        assert_eq!(status, 200);
        assert_eq!(me["name"], format!("system:serviceaccount:{}:{who}", a.name));
        assert!(
            me["groups"]
                .as_array()
                .unwrap()
                .iter()
                .any(|g| g == "system:serviceaccounts")
        );

        let (status, sessions) = api.get(token, "/api/v1/sessions");
        assert_eq!(status, 200, "{who}");
        let listed: BTreeSet<String> = sessions["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| format!("{}/{}", s["namespace"].as_str().unwrap(), s["name"].as_str().unwrap()))
            .collect();
        assert_eq!(&listed, visible, "{who}: sessions");
        for route in [
            "/api/v1/packets?limit=1000",
            "/api/v1/flows?limit=1000",
            "/api/v1/events/dns",
            "/api/v1/events/http",
            "/api/v1/events/tls",
        ] {
            assert_eq!(&api.sessions_in(token, route), visible, "{who}: {route}");
        }
        let (status, stats) = api.get(token, "/api/v1/stats?since=1h");
        assert_eq!(status, 200, "{who}: {stats}");
        assert_eq!(
            stats["packets"],
            (PACKETS * visible.len()) as i64,
            "{who}: stats add up visible sessions only"
        );
        let talkers = stats["top_talkers"].as_array().unwrap().len();
        assert_eq!(talkers > 0, !visible.is_empty(), "{who}: talkers");
        let (status, map) = api.get(token, "/api/v1/service-map?since=1h");
        assert_eq!(status, 200);
        assert_eq!(
            map["edges"].as_array().unwrap().is_empty(),
            visible.is_empty(),
            "{who}: service map"
        );

        for (session, packet) in [(&session_a, packet_a), (&session_b, packet_b)] {
            let allowed = visible.contains(session.as_str());
            let expected = if allowed { 200 } else { 403 };
            let (status, _) = api.get(token, &format!("/api/v1/packets?session={session}"));
            assert_eq!(status, expected, "{who}: packets of {session}");
            let (status, _) = api.get(token, &format!("/api/v1/stats?session={session}"));
            assert_eq!(status, expected, "{who}: stats of {session}");
            let (namespace, name) = session.split_once('/').unwrap();
            let (status, _) = api.get(token, &format!("/api/v1/sessions/{namespace}/{name}"));
            assert_eq!(status, expected, "{who}: session {session}");
            assert_eq!(
                api.status(token, &format!("/api/v1/stream?session={session}")),
                expected,
                "{who}: stream of {session}"
            );
            // Session b kept payload: its packets' bytes need the analyst's payload permission,
            // and every pcap export the pcap permission.
            let analyst_here = *who == "analyst-b" && session == &session_b;
            let detail = if session == &session_b { analyst_here } else { allowed };
            let (status, _) = api.get(token, &format!("/api/v1/packets/{packet}"));
            // A packet of a namespace the caller may not read is answered as absent (404), never
            // as forbidden, which would tell that it exists; a readable one without the payload
            // permission is forbidden (403).
            let expected_detail = match (allowed, detail) {
                (false, _) => 404,
                (true, true) => 200,
                (true, false) => 403,
            };
            assert_eq!(status, expected_detail, "{who}: packet {packet} of {session}");
            let (status, _) = api.get(token, &format!("/api/v1/sessions/{namespace}/{name}/pcap"));
            assert_eq!(status, if analyst_here { 200 } else { 403 }, "{who}: pcap of {session}");
        }
    }

    // The payload rule: Info lines of a payload-keeping session are dissected from the kept bytes
    // only for callers with the payload permission; a reader gets the headers' view.
    let infos = |token: &str| -> Vec<String> {
        let (status, page) = api.get(token, &format!("/api/v1/packets?session={session_b}&limit=1000"));
        assert_eq!(status, 200, "{page}");
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["info"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    assert!(
        infos(&analyst_b).iter().any(|info| info.contains("GET /")),
        "the analyst sees the requests: {:?}",
        infos(&analyst_b)
    );
    let read_only = infos(&everywhere_token);
    assert!(
        !read_only.is_empty() && !read_only.iter().any(|info| info.contains("GET /")),
        "{read_only:?}"
    );

    // Every data route in the OpenAPI document narrows: asked by namespace a's viewer for session
    // b by name it refuses (403) or knows nothing (404), and asked without a session it shows
    // nothing of b. A route added without narrowing, or without being listed here, fails.
    let (status, document) = api.get(&viewer_a, "/api/openapi.json");
    assert_eq!(status, 200);
    let routes: BTreeSet<String> = document["paths"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, operations)| operations.get("get").is_some())
        .map(|(path, _)| path.clone())
        .collect();
    let not_data = BTreeSet::from(["/api/v1/whoami".to_owned()]);
    let (namespace_b, name_b) = session_b.split_once('/').unwrap();
    let checked: BTreeSet<String> = [
        "/api/v1/sessions",
        "/api/v1/sessions/{namespace}/{name}",
        "/api/v1/sessions/{namespace}/{name}/pcap",
        "/api/v1/packets",
        "/api/v1/packets/{id}",
        "/api/v1/flows",
        "/api/v1/events/dns",
        "/api/v1/events/http",
        "/api/v1/events/tls",
        "/api/v1/stats",
        "/api/v1/service-map",
        "/api/v1/stream",
    ]
    .map(str::to_owned)
    .into();
    assert_eq!(
        routes.difference(&not_data).cloned().collect::<BTreeSet<_>>(),
        checked,
        "the OpenAPI document's GET routes: list a new one here once this test proves it narrows"
    );
    for route in &checked {
        let concrete = route
            .replace("{namespace}", namespace_b)
            .replace("{name}", name_b)
            .replace("{id}", &packet_b.to_string());
        let takes_session = document["paths"][route]["get"]["parameters"]
            .as_array()
            .is_some_and(|parameters| parameters.iter().any(|p| p["name"] == "session"));
        let named = if concrete != *route {
            Some(concrete.clone())
        } else {
            takes_session.then(|| format!("{concrete}?session={session_b}&since=1h"))
        };
        if let Some(named) = named {
            let status = api.status(&viewer_a, &named);
            assert!(
                status == 403 || status == 404,
                "{route}: viewer-a asked for session b by name and got {status}"
            );
        }
        if concrete == *route && route != "/api/v1/stream" {
            let (status, body) = api.get(&viewer_a, &format!("{route}?since=1h"));
            assert_eq!(status, 200, "{route}: {body}");
            let text = body.to_string();
            assert!(
                !text.contains(&session_b) && !text.contains(namespace_b),
                "{route}: viewer-a sees session b without naming it: {text}"
            );
        }
    }

    // A live stream asks again whether its caller may still read the session: once the binding
    // that allowed it is deleted, the stream ends with an `end` event saying why.
    run(a.kubectl().args(["create", "serviceaccount", "revoked"]), None);
    run(
        a.kubectl().args([
            "create",
            "rolebinding",
            "revoked",
            "--clusterrole",
            &viewer,
            &subject("revoked"),
        ]),
        None,
    );
    let revoked = token(&a, "revoked");
    wait_until("the new binding to be in force", DEADLINE, || async {
        (api.status(&revoked, &format!("/api/v1/packets?session={session_a}")) == 200).then_some(())
    })
    .await;
    let stream = ureq::get(format!("{}/api/v1/stream?session={session_a}", api.base))
        .header("Authorization", format!("Bearer {revoked}"))
        .call()
        .unwrap();
    assert_eq!(stream.status(), 200);
    let (lines, heard) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stream.into_body().into_reader()).lines() {
            let Ok(line) = line else { return };
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    run(a.kubectl().args(["delete", "rolebinding", "revoked"]), None);
    // The cache (15 s) and one more check interval (15 s), with room for a loaded machine.
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let ended = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match heard.recv_timeout(left) {
            Ok(line) if line == "event: end" => break true,
            Ok(_) => continue,
            Err(_) => break false,
        }
    };
    assert!(ended, "the stream went on after its caller lost access");

    // The analyst's export is in the audit log with its Kubernetes user and groups.
    let log = std::fs::read_to_string(&api.log).unwrap();
    let audit = log
        .lines()
        .find(|line| line.contains("export-pcap"))
        .expect("an audit line for the export");
    assert!(
        audit.contains(&format!("system:serviceaccount:{}:analyst-b", a.name)),
        "{audit}"
    );
    assert!(audit.contains("system:serviceaccounts"), "{audit}");

    // A token the cluster does not accept: 401, and asked again at once, answered from memory.
    let (status, body) = api.get("not-a-token", "/api/v1/sessions");
    assert_eq!(status, 401, "{body}");
    for _ in 0..5 {
        assert_eq!(api.get("not-a-token", "/api/v1/sessions").0, 401);
    }
    let metrics = ureq::get(format!("{}/metrics", api.base))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    assert_eq!(
        testkit::metrics::value(&metrics, "trawl_api_token_reviews_total{outcome=\"rejected\"}"),
        Some(1),
        "one TokenReview for six requests with the same rejected token"
    );

    // An API server that cannot be reached: refused, never let through.
    let unreachable = std::env::temp_dir().join(format!("trawl-unreachable-{}.kubeconfig", unique_suffix()));
    let config = std::fs::read_to_string(&control_plane.kubeconfig).unwrap();
    let server = config
        .lines()
        .find_map(|line| line.trim().strip_prefix("server: "))
        .unwrap()
        .to_owned();
    std::fs::write(
        &unreachable,
        config.replace(&server, &format!("https://127.0.0.1:{}", free_port())),
    )
    .unwrap();
    let cut_off = Api::start(&database, &unreachable);
    wait_until("the second API to be ready", DEADLINE, || async {
        ureq::get(format!("{}/readyz", cut_off.base)).call().ok().map(|_| ())
    })
    .await;
    let (status, body) = cut_off.get(&everywhere_token, "/api/v1/packets");
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("Kubernetes API"),
        "{body}"
    );
    let _ = std::fs::remove_file(&unreachable);
    let _ = std::fs::remove_file(&api.log);
    run(
        control_plane
            .kubectl()
            .args(["delete", "clusterrolebinding", &everywhere]),
        None,
    );
    run(
        control_plane
            .kubectl()
            .args(["delete", "clusterrole", &viewer, &analyst]),
        None,
    );
}
