//! PostgreSQL from real clients, read as tshark reads it: psql (simple queries: a result, an
//! error, DDL and an INSERT) and pgbench (the extended protocol: Parse, Bind, Execute, Sync)
//! against a real server listening on this test's veth (10.217.0.1:5432, the port the dissector
//! reads), from the test's namespace. tcpdump captures the veth; per frame, the Info line, the
//! statement, the command tag and the SQLSTATE must equal tshark's pgsql dissection, and the same
//! frames through the real parser are stored as PostgreSQL with the database as their name.
//!
//! Differences from tshark, by design: none on this traffic. Wireshark reassembles a message
//! split over segments and shows it on the last; Trawl shows the whole messages each packet holds
//! (these clients' messages all fit one segment).
//!
//! Needs root, psql and pgbench (Debian's postgresql packages, as hack/services.sh installs them),
//! tcpdump and tshark.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use dissect::L7;
use testkit::postgres::PrivatePostgres;
use testkit::wait_until;

const SERVER: &str = "10.217.0.1";
const CLIENT: &str = "10.217.0.2";

/// What one frame's PostgreSQL messages say, as both sides put it.
#[derive(Debug, PartialEq, Eq)]
struct Said {
    info: String,
    statement: String,
    tag: String,
    sqlstate: String,
}

fn tshark_said(pcap: &std::path::Path) -> BTreeMap<usize, Said> {
    let output = common::run(Command::new("tshark").arg("-r").arg(pcap).args([
        "-Y",
        "pgsql",
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
        "pgsql.query",
        "-e",
        "pgsql.tag",
        "-e",
        "pgsql.code",
    ]));
    output
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            (
                f[0].parse().unwrap(),
                Said {
                    info: f[1].to_owned(),
                    statement: f[2].to_owned(),
                    tag: f[3].to_owned(),
                    sqlstate: f[4].to_owned(),
                },
            )
        })
        .collect()
}

fn trawl_said(frames: &[(u64, Vec<u8>)]) -> BTreeMap<usize, Said> {
    frames
        .iter()
        .enumerate()
        .filter_map(|(index, (_, frame))| {
            let dissection = dissect::dissect(frame);
            let Some(L7::Postgres(messages)) = &dissection.l7 else {
                return None;
            };
            Some((
                index + 1,
                Said {
                    info: dissect::info(&dissection),
                    statement: messages.statement.clone().unwrap_or_default(),
                    tag: messages.command_tag.clone().unwrap_or_default(),
                    sqlstate: messages.sqlstate.clone().unwrap_or_default(),
                },
            ))
        })
        .collect()
}

#[tokio::test]
async fn postgresql_from_real_clients_agrees_with_tshark() {
    let network = common::addressed_network(SERVER, CLIENT);
    let _server = PrivatePostgres::start_on(SERVER, 5432);
    let dir = std::env::temp_dir().join(format!("trawl-postgres-clients-{}", testkit::unique_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let pcap = dir.join("postgres.pcap");
    let tcpdump = common::Tcpdump::start(&network.host_interface, 0, &pcap, &["tcp", "port", "5432"]);

    let client = |program: &str| {
        let mut command = common::in_namespace(&network, program);
        command
            .env("PGHOST", SERVER)
            .env("PGUSER", "trawl")
            .env("PGDATABASE", "postgres")
            .env("PGSSLMODE", "disable")
            .env("PGCONNECT_TIMEOUT", "10");
        command
    };
    // An error does not stop psql without ON_ERROR_STOP: every statement runs.
    common::run(client("psql").args([
        "-X",
        "-q",
        "-c",
        "select 1 as x, 'a' as y",
        "-c",
        "select nope",
        "-c",
        "create table items (id int, name text)",
        "-c",
        "insert into items values (1, 'one'), (2, 'two')",
    ]));
    let script = dir.join("extended.sql");
    std::fs::write(&script, "\\set id 2\nselect name from items where id = :id;\n").unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    common::run(
        client("pgbench")
            .args(["-n", "-t", "1", "-M", "extended", "-f"])
            .arg(&script),
    );

    // Each connection's last message is its Termination: psql's, and pgbench's two (it checks
    // the server first); once all three are in the file, so is the rest.
    wait_until(
        "tcpdump to have written every connection's goodbye",
        Duration::from_secs(20),
        || async {
            let frames = testkit::pcap::read(&pcap).ok()?;
            let goodbyes = trawl_said(&frames).values().filter(|said| said.info == ">X").count();
            (goodbyes == 3).then_some(())
        },
    )
    .await;
    tcpdump.stop();

    let frames = testkit::pcap::read(&pcap).unwrap();
    let theirs = tshark_said(&pcap);
    let ours = trawl_said(&frames);
    assert!(theirs.len() >= 12, "tshark read PostgreSQL in the capture: {theirs:?}");
    assert_eq!(ours, theirs, "per frame: Info, statement, command tag, SQLSTATE");
    let said: Vec<&Said> = ours.values().collect();
    for (what, found) in [
        ("the SELECT's tag", said.iter().any(|s| s.tag == "SELECT 1")),
        ("the INSERT's tag", said.iter().any(|s| s.tag == "INSERT 0 2")),
        (
            "the undefined column's SQLSTATE",
            said.iter().any(|s| s.sqlstate == "42703"),
        ),
        (
            "the extended protocol's Parse",
            said.iter()
                .any(|s| s.info.starts_with(">P/B/") && s.statement.starts_with("select name from items")),
        ),
    ] {
        assert!(found, "{what} in {said:#?}");
    }

    // Through the real parser: every frame tshark reads as PostgreSQL is stored as PostgreSQL,
    // named by the database the connection opened where it says so.
    let database = common::through_the_parser_database(&frames, "test/postgres-clients").await;
    let pool = database.pool().await;
    let stored: Vec<(i64, Option<String>)> =
        sqlx::query_as("SELECT seq, l7_name FROM packets WHERE l7 = 'postgresql' AND NOT l7_guessed ORDER BY seq")
            .fetch_all(&pool)
            .await
            .unwrap();
    let stored_frames: Vec<usize> = stored.iter().map(|(seq, _)| *seq as usize + 1).collect();
    assert_eq!(stored_frames, theirs.keys().copied().collect::<Vec<_>>());
    let named: Vec<&str> = stored.iter().filter_map(|(_, name)| name.as_deref()).collect();
    assert_eq!(
        named, ["postgres"; 3],
        "each connection's startup message names its database"
    );
    pool.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}
