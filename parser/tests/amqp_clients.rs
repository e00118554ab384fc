//! AMQP 0-9-1 from a real client, read as tshark reads it: lapin (the client Trawl's own sniffers
//! and parsers use) against a RabbitMQ node of this test's own on 127.0.0.1 (a port of its own, so
//! that the capture on loopback holds this conversation only): connection, a confirmed channel,
//! an exchange, a queue and its binding, two publishes, a consumer's delivery and ack, a get, a
//! channel closed by the broker for a missing queue, the queue's deletion. tcpdump captures
//! loopback; per frame, the Info line must equal tshark's amqp dissection (told the port with
//! `-d`), and the same frames through the real parser are stored as AMQP with the routing key as
//! their name.
//!
//! Differences from tshark, listed: a connection's first bytes (the protocol header) are AMQP to
//! Trawl (`Protocol-Header 0-9-1`), and not to Wireshark 4.0's `amqp` filter (it shows them as
//! `AMQP (unknown version)` before it has seen a frame); a frame split over TCP segments is
//! reassembled by Wireshark and not read by Trawl (none is here).
//!
//! Needs root (tcpdump), RabbitMQ, tcpdump and tshark.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use dissect::L7;
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ExchangeKind};
use testkit::rabbitmq::PrivateBroker;
use testkit::wait_until;

/// Info line of each frame tshark reads as AMQP.
fn tshark_said(pcap: &std::path::Path, port: u16) -> BTreeMap<usize, String> {
    let output = common::run(
        Command::new("tshark")
            .arg("-r")
            .arg(pcap)
            .args(["-d", &format!("tcp.port=={port},amqp"), "-Y", "amqp"])
            .args([
                "-T",
                "fields",
                "-E",
                "separator=\t",
                "-e",
                "frame.number",
                "-e",
                "_ws.col.Info",
            ]),
    );
    output
        .lines()
        .map(|line| {
            let (number, info) = line.split_once('\t').unwrap();
            (number.parse().unwrap(), info.to_owned())
        })
        .collect()
}

fn trawl_said(frames: &[(u64, Vec<u8>)]) -> BTreeMap<usize, String> {
    frames
        .iter()
        .enumerate()
        .filter_map(|(index, (_, frame))| {
            let dissection = dissect::dissect(frame);
            matches!(dissection.l7, Some(L7::Amqp(_))).then(|| (index + 1, dissect::info(&dissection)))
        })
        .collect()
}

/// What a client does in a pipeline's life, and one mistake.
async fn converse(url: &str) {
    let connection = Connection::connect(url, Default::default()).await.unwrap();
    let channel = connection.create_channel().await.unwrap();
    channel.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    channel
        .exchange_declare(
            "trawl.packets".into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    channel
        .queue_declare("shop.web".into(), QueueDeclareOptions::default(), FieldTable::default())
        .await
        .unwrap();
    channel
        .queue_bind(
            "shop.web".into(),
            "trawl.packets".into(),
            "shop.web".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    for body in [&b"first batch"[..], b"second batch"] {
        channel
            .basic_publish(
                "trawl.packets".into(),
                "shop.web".into(),
                BasicPublishOptions::default(),
                body,
                BasicProperties::default().with_content_type("application/vnd.trawl.batch".into()),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let got = channel
        .basic_get("shop.web".into(), BasicGetOptions::default())
        .await
        .unwrap()
        .expect("the first batch");
    got.delivery.ack(BasicAckOptions::default()).await.unwrap();
    let mut consumer = channel
        .basic_consume(
            "shop.web".into(),
            "parser".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let delivery = consumer.next().await.expect("the second batch").unwrap();
    delivery.ack(BasicAckOptions::default()).await.unwrap();
    channel
        .queue_delete("shop.web".into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    // The broker closes a channel that asks for a queue it does not have.
    let other = connection.create_channel().await.unwrap();
    let missing = other
        .queue_declare(
            "no.such.queue".into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await;
    assert!(missing.is_err());
    connection.close(200, "bye".into()).await.unwrap();
}

#[tokio::test]
async fn amqp_from_a_real_client_agrees_with_tshark() {
    let broker = PrivateBroker::start();
    let dir = std::env::temp_dir().join(format!("trawl-amqp-clients-{}", testkit::unique_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let pcap = dir.join("amqp.pcap");
    let port = broker.port.to_string();
    let tcpdump = common::Tcpdump::start("lo", 0, &pcap, &["tcp", "port", &port]);
    converse(&broker.amqp_url()).await;
    wait_until(
        "tcpdump to have written the connection's close",
        Duration::from_secs(20),
        || async {
            let frames = testkit::pcap::read(&pcap).ok()?;
            trawl_said(&frames)
                .values()
                .any(|info| info.contains("Connection.Close-Ok"))
                .then_some(())
        },
    )
    .await;
    tcpdump.stop();

    let frames = testkit::pcap::read(&pcap).unwrap();
    let theirs = tshark_said(&pcap, broker.port);
    let ours = trawl_said(&frames);
    // The one difference: the client's protocol header, the first frame with a payload.
    let (&header, _) = ours
        .iter()
        .find(|(_, info)| info.starts_with("Protocol-Header"))
        .expect("the client's protocol header");
    assert_eq!(ours[&header], "Protocol-Header 0-9-1 ");
    assert!(!theirs.contains_key(&header) && theirs.keys().all(|number| *number > header));
    let mut expected = theirs.clone();
    expected.insert(header, ours[&header].clone());
    assert_eq!(ours, expected, "per frame: the Info line");
    let all: String = ours.values().cloned().collect();
    for method in [
        "Connection.Open vhost=/",
        "Exchange.Declare x=trawl.packets",
        "Queue.Bind q=shop.web x=trawl.packets bk=shop.web",
        "Basic.Publish x=trawl.packets rk=shop.web Content-Header type=application/vnd.trawl.batch Content-Body",
        "Basic.Get-Ok x=trawl.packets rk=shop.web",
        "Basic.Deliver x=trawl.packets rk=shop.web",
        "Channel.Close reply=NOT_FOUND",
        "Connection.Close reply=bye",
    ] {
        assert!(all.contains(method), "{method:?} in {ours:#?}");
    }

    // Through the real parser: every frame tshark reads as AMQP is stored as AMQP, named by the
    // routing key (or queue) its method names.
    let database = common::through_the_parser_database(&frames, "test/amqp-clients").await;
    let pool = database.pool().await;
    let stored: Vec<(i64, Option<String>)> =
        sqlx::query_as("SELECT seq, l7_name FROM packets WHERE l7 = 'amqp' AND NOT l7_guessed ORDER BY seq")
            .fetch_all(&pool)
            .await
            .unwrap();
    let stored_frames: Vec<usize> = stored.iter().map(|(seq, _)| *seq as usize + 1).collect();
    assert_eq!(stored_frames, expected.keys().copied().collect::<Vec<_>>());
    assert!(
        stored.iter().any(|(_, name)| name.as_deref() == Some("shop.web")),
        "{stored:?}"
    );
    pool.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}
