//! Redis from a real client, read as tshark reads it: redis-cli commands (strings, a hash, a
//! missing key, an empty list, an error reply, a cursor's nested array, an inline-free PING)
//! against a real redis-server listening on this test's veth (10.218.0.1:6379, the port the
//! dissector reads), from the test's namespace. tcpdump captures the veth; per frame, the Info
//! line and the error text must equal tshark's resp dissection, and the same frames through the
//! real parser are stored as Redis.
//!
//! Differences from tshark, by design: none on this RESP2 traffic. Wireshark 4.0 does not read
//! RESP3's types (`%` maps, `~` sets, `>` pushes show as fragments); Trawl does (unit tests in
//! dissect/src/protocols/redis.rs). Wireshark reassembles values split over segments.
//!
//! Needs root, redis-server and redis-cli (hack/deps.sh installs them), tcpdump and tshark.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use dissect::L7;
use testkit::process::Service;
use testkit::wait_until;

const SERVER: &str = "10.218.0.1";
const CLIENT: &str = "10.218.0.2";

/// The commands, one redis-cli connection each.
const COMMANDS: &[&[&str]] = &[
    &["set", "k", "v"],
    &["get", "k"],
    &["get", "nothing"],
    &["hset", "h", "f", "1"],
    &["hgetall", "h"],
    &["lrange", "nope", "0", "-1"],
    &["incr", "k"],
    &["scan", "0"],
    &["decrby", "n", "5"],
    &["ping"],
];

/// Info line and error text of each frame either side reads as Redis.
fn tshark_said(pcap: &std::path::Path) -> BTreeMap<usize, (String, String)> {
    let output = common::run(Command::new("tshark").arg("-r").arg(pcap).args([
        "-Y",
        "resp",
        "-T",
        "fields",
        "-E",
        "separator=\t",
        "-E",
        "occurrence=f",
        "-e",
        "frame.number",
        "-e",
        "_ws.col.Info",
        "-e",
        "resp.error",
    ]));
    output
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            (f[0].parse().unwrap(), (f[1].to_owned(), f[2].to_owned()))
        })
        .collect()
}

fn trawl_said(frames: &[(u64, Vec<u8>)]) -> BTreeMap<usize, (String, String)> {
    frames
        .iter()
        .enumerate()
        .filter_map(|(index, (_, frame))| {
            let dissection = dissect::dissect(frame);
            let Some(L7::Redis(messages)) = &dissection.l7 else {
                return None;
            };
            Some((
                index + 1,
                (dissect::info(&dissection), messages.error.clone().unwrap_or_default()),
            ))
        })
        .collect()
}

#[tokio::test]
async fn redis_from_a_real_client_agrees_with_tshark() {
    let network = common::addressed_network(SERVER, CLIENT);
    let mut server = Command::new("redis-server");
    server.args(["--bind", SERVER, "--port", "6379", "--save", "", "--appendonly", "no"]);
    server
        .args(["--protected-mode", "no"])
        .stdout(std::process::Stdio::null());
    let _server = Service::start("redis-server", server);
    wait_until("redis-server to listen", Duration::from_secs(20), || async {
        std::net::TcpStream::connect((SERVER, 6379)).ok().map(|_| ())
    })
    .await;
    let dir = std::env::temp_dir().join(format!("trawl-redis-clients-{}", testkit::unique_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let pcap = dir.join("redis.pcap");
    let tcpdump = common::Tcpdump::start(&network.host_interface, 0, &pcap, &["tcp", "port", "6379"]);

    for command in COMMANDS {
        common::run(
            common::in_namespace(&network, "redis-cli")
                .args(["-h", SERVER, "-p", "6379"])
                .args(*command),
        );
    }
    wait_until(
        "tcpdump to have written every reply",
        Duration::from_secs(20),
        || async {
            let frames = testkit::pcap::read(&pcap).ok()?;
            let replies = trawl_said(&frames)
                .values()
                .filter(|(info, _)| info.starts_with("Response:"))
                .count();
            (replies == COMMANDS.len()).then_some(())
        },
    )
    .await;
    tcpdump.stop();

    let frames = testkit::pcap::read(&pcap).unwrap();
    let theirs = tshark_said(&pcap);
    let ours = trawl_said(&frames);
    assert_eq!(
        theirs.len(),
        2 * COMMANDS.len(),
        "tshark read each command and reply: {theirs:#?}"
    );
    assert_eq!(ours, theirs, "per frame: Info line and error text");
    let infos: Vec<&str> = ours.values().map(|(info, _)| info.as_str()).collect();
    for expected in [
        "Request: set k v",
        "Response: OK",
        "Response: v",
        "Response: Array(2)",
        "Response: -5",
        "Response: PONG",
        "Response: Error: ERR value is not an integer or out of range",
    ] {
        assert!(infos.contains(&expected), "{expected:?} in {infos:#?}");
    }

    // Through the real parser: every frame tshark reads as Redis is stored as Redis.
    let database = common::through_the_parser_database(&frames, "test/redis-clients").await;
    let pool = database.pool().await;
    let stored: Vec<i64> =
        sqlx::query_scalar("SELECT seq FROM packets WHERE l7 = 'redis' AND NOT l7_guessed ORDER BY seq")
            .fetch_all(&pool)
            .await
            .unwrap();
    let stored_frames: Vec<usize> = stored.iter().map(|seq| *seq as usize + 1).collect();
    assert_eq!(stored_frames, theirs.keys().copied().collect::<Vec<_>>());
    pool.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}
