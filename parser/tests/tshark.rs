//! Agreement with tshark: the same varied traffic is written to a pcap for tshark and pushed
//! through sniffer-format batches into the real parser; what lands in PostgreSQL must match what
//! `tshark -T fields` reads: packet count, addresses, ports, DNS names, HTTP hosts and TLS SNI.
//!
//! Run (after `bash hack/services.sh`; needs tshark from apt): `cargo test -p parser --test tshark`

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use lapin::options::{BasicPublishOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection};
use testkit::frames;
use testkit::postgres::TestDatabase;
use testkit::process::{Service, free_port};
use testkit::rabbitmq::TestVhost;
use testkit::wait_until;
use wire::{BatchBuilder, Counters, FLAG_FINAL, Origin};

const QUEUE: &str = "tshark-agreement";

/// Rewrites the IPv4 addresses of a frame built by `testkit::frames` (tshark does not check the checksum).
fn between(mut frame: Vec<u8>, src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
    frame[26..30].copy_from_slice(&src);
    frame[30..34].copy_from_slice(&dst);
    frame
}

fn traffic() -> Vec<Vec<u8>> {
    let (a, b) = ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    let mut out = Vec::new();
    for i in 0..60u8 {
        let client = [10, 1, i / 10, 10 + i % 10];
        let server = [10, 2, 0, 1 + i % 4];
        let frame = match i % 6 {
            0 => frames::udp(
                a,
                b,
                53,
                &frames::dns_query(u16::from(i), &format!("host{i}.svc.example")),
            ),
            1 => frames::tcp(
                a,
                b,
                80,
                0x18,
                &frames::http_get(&format!("site{}.example.net", i % 5), "/a/b?c=1"),
            ),
            2 => frames::tcp(
                a,
                b,
                443,
                0x18,
                &frames::tls_client_hello(&format!("tls{}.example.com", i % 7)),
            ),
            3 => frames::udp(a, b, 9999, b"plain udp"),
            4 => frames::tcp_syn(a, b, 8443, u32::from(i)),
            _ => frames::tcp(a, b, 5432, 0x18, b"\x00\x00\x00\x08\x04\xd2\x16\x2f"),
        };
        out.push(between(frame, client, server));
    }
    out
}

#[tokio::test]
async fn stored_packets_agree_with_tshark() {
    let frames = traffic();
    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let stamped: Vec<(u64, Vec<u8>)> = frames
        .iter()
        .enumerate()
        .map(|(i, f)| (start + i as u64 * 1_000_000, f.clone()))
        .collect();

    // tshark's view.
    let dir = std::env::temp_dir().join(format!("trawl-tshark-{}", testkit::unique_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let pcap = dir.join("traffic.pcap");
    testkit::pcap::write(&pcap, &stamped).unwrap();
    let output = Command::new("tshark")
        .arg("-r")
        .arg(&pcap)
        .args(["-T", "fields", "-E", "separator=|", "-E", "occurrence=f"])
        .args([
            "-e",
            "ip.src",
            "-e",
            "ip.dst",
            "-e",
            "tcp.srcport",
            "-e",
            "udp.srcport",
            "-e",
            "tcp.dstport",
        ])
        .args([
            "-e",
            "udp.dstport",
            "-e",
            "dns.qry.name",
            "-e",
            "http.host",
            "-e",
            "tls.handshake.extensions_server_name",
        ])
        .output()
        .expect("run tshark (apt: tshark)");
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        output.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let expected: Vec<Vec<String>> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split('|').collect();
            let either = |x: &str, y: &str| if x.is_empty() { y.to_owned() } else { x.to_owned() };
            let name = [f[6], f[7], f[8]]
                .into_iter()
                .find(|n| !n.is_empty())
                .unwrap_or("")
                .to_owned();
            vec![
                f[0].to_owned(),
                f[1].to_owned(),
                either(f[2], f[3]),
                either(f[4], f[5]),
                name,
            ]
        })
        .collect();
    assert_eq!(expected.len(), frames.len());

    // Trawl's view: the same frames as sniffer batches, through the real parser into PostgreSQL.
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
        session: "test/tshark".into(),
        node: "n".into(),
    };
    let mut builder = BatchBuilder::default();
    let interface = builder.interface_index("eth0");
    for (seq, (ts, frame)) in stamped.iter().enumerate() {
        builder.push(seq as u64, *ts, interface, frame.len() as u32, frame);
    }
    let counters = Counters {
        captured: frames.len() as u64,
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
        .args([
            "--session",
            "test/tshark",
            "--queue",
            QUEUE,
            "--amqp-url",
            &vhost.amqp_url,
        ])
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
    let rows: Vec<(String, String, String, String, String)> = sqlx::query_as(
        "SELECT coalesce(host(src), ''), coalesce(host(dst), ''), coalesce(src_port::text, ''), \
           coalesce(dst_port::text, ''), coalesce(CASE WHEN l7_guessed THEN NULL ELSE l7_name END, '') \
         FROM packets ORDER BY seq",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let stored: Vec<Vec<String>> = rows.into_iter().map(|(a, b, c, d, e)| vec![a, b, c, d, e]).collect();
    assert_eq!(stored.len(), expected.len(), "packet count");
    for (i, (ours, theirs)) in stored.iter().zip(&expected).enumerate() {
        assert_eq!(ours, theirs, "packet {i}: Trawl (left) and tshark (right) disagree");
    }
}
