//! The real `trawl-sniffer` on a veth of a test-made network namespace, publishing to a real
//! RabbitMQ: exact counts, the kernel filter, snaplen, batch boundaries, shutdown and broker loss.
//!
//! Run (as root, after `bash hack/services.sh`): `cargo test -p sniffer --test capture`

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;

use lapin::options::{BasicAckOptions, BasicGetOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ExchangeKind};
use pnet::packet::Packet;
use pnet::packet::ethernet::EthernetPacket;
use pnet::packet::ip::IpNextHeaderProtocols;
use pnet::packet::ipv4::Ipv4Packet;
use pnet::packet::udp::UdpPacket;
use testkit::frames;
use testkit::netns::TestNetwork;
use testkit::pods::{BridgedPods, Outside};
use testkit::process::{Service, free_port};
use testkit::rabbitmq::{PrivateBroker, TestVhost};
use testkit::wait_until;

const DEADLINE: Duration = Duration::from_secs(30);
const QUEUE: &str = "session-under-test";

/// A sniffer with its network, vhost and queue.
struct Rig {
    // Fields drop in order: the sniffer goes before the broker vhost and the network it uses.
    sniffer: Service,
    channel: Channel,
    _connection: Connection,
    vhost: TestVhost,
    network: TestNetwork,
    metrics_port: u16,
}

impl Rig {
    async fn start(extra_args: &[&str]) -> Self {
        let vhost = TestVhost::create();
        let amqp_url = vhost.amqp_url.clone();
        Self::start_on(vhost, &amqp_url, extra_args).await
    }

    /// With the broker at `amqp_url` (the vhost is kept only for its lifetime and management API).
    async fn start_on(vhost: TestVhost, amqp_url: &str, extra_args: &[&str]) -> Self {
        let network = TestNetwork::create();
        let interface = network.host_interface.clone();
        let args = [&["--interfaces", interface.as_str()][..], extra_args].concat();
        Self::start_with(network, vhost, amqp_url, &args, FieldTable::default()).await
    }

    /// `queue_arguments`: as the operator would give them (bounds, overflow behaviour).
    async fn start_with(
        network: TestNetwork,
        vhost: TestVhost,
        amqp_url: &str,
        args: &[&str],
        queue_arguments: FieldTable,
    ) -> Self {
        let connection = Connection::connect(amqp_url, Default::default()).await.unwrap();
        let channel = connection.create_channel().await.unwrap();
        // What the operator declares for a session: the exchange, and the session's queue bound to it.
        channel
            .exchange_declare(
                "trawl.packets".into(),
                ExchangeKind::Direct,
                ExchangeDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        channel
            .queue_declare(
                QUEUE.into(),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                queue_arguments,
            )
            .await
            .unwrap();
        channel
            .queue_bind(
                QUEUE.into(),
                "trawl.packets".into(),
                QUEUE.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();

        let metrics_port = free_port();
        let mut command = Command::new(env!("CARGO_BIN_EXE_trawl-sniffer"));
        command
            .args([
                "--session",
                "test/capture",
                "--node",
                "test-node",
                "--routing-key",
                QUEUE,
            ])
            .args(["--amqp-url", amqp_url])
            .args(["--listen", &format!("127.0.0.1:{metrics_port}"), "--ring-blocks", "4"])
            .args(args)
            .env("TRAWL_LOG", "info");
        let sniffer = Service::start("trawl-sniffer", command);
        let rig = Self {
            network,
            vhost,
            channel,
            _connection: connection,
            sniffer,
            metrics_port,
        };
        wait_until("the sniffer to be ready", DEADLINE, || async {
            let url = format!("http://127.0.0.1:{}/readyz", rig.metrics_port);
            ureq::get(&url).call().ok().map(|_| ())
        })
        .await;
        rig
    }

    fn metric(&self, name: &str) -> u64 {
        let text = testkit::metrics::scrape(self.metrics_port).expect("the sniffer serves /metrics");
        testkit::metrics::value(&text, name).unwrap_or_else(|| panic!("metric {name} missing"))
    }

    async fn wait_captured(&self, packets: u64) {
        wait_until(&format!("{packets} captured packets"), DEADLINE, || async {
            (self.metric("trawl_sniffer_packets_captured_total") >= packets).then_some(())
        })
        .await;
    }

    /// Until the kernel filter was swapped `swaps` times on the running capture.
    async fn wait_filter_swaps(&self, swaps: u64) {
        wait_until(&format!("{swaps} filter swaps"), DEADLINE, || async {
            (self.metric("trawl_sniffer_filter_swaps_total") >= swaps).then_some(())
        })
        .await;
    }

    /// SIGTERM, then the exit status must be success.
    fn stop(&mut self) {
        self.sniffer.signal("TERM");
        let status = self
            .sniffer
            .wait_for_exit(DEADLINE)
            .expect("the sniffer did not stop after SIGTERM");
        assert!(status.success(), "the sniffer exited with {status}");
    }

    /// Every batch in the queue up to and including the final one.
    async fn drain(&self) -> Vec<ReceivedBatch> {
        self.drain_from(&self.channel).await
    }

    async fn drain_from(&self, channel: &Channel) -> Vec<ReceivedBatch> {
        let mut batches: Vec<ReceivedBatch> = Vec::new();
        let deadline = std::time::Instant::now() + DEADLINE;
        while !batches.last().is_some_and(|batch| batch.is_final) {
            assert!(
                std::time::Instant::now() < deadline,
                "no final batch within {DEADLINE:?}"
            );
            let Some(message) = channel
                .basic_get(QUEUE.into(), BasicGetOptions::default())
                .await
                .unwrap()
            else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let properties = &message.delivery.properties;
            assert_eq!(
                properties.content_type().as_ref().map(|c| c.as_str()),
                Some(wire::CONTENT_TYPE)
            );
            let batch = wire::Batch::decode(&message.delivery.data).expect("a valid batch");
            assert_eq!(
                properties.message_id().as_ref().map(|m| m.to_string()),
                Some(batch.id())
            );
            batches.push(ReceivedBatch::from(&batch));
            message.delivery.ack(BasicAckOptions::default()).await.unwrap();
        }
        batches
    }
}

/// An owned copy of what a batch carried.
struct ReceivedBatch {
    id: String,
    is_final: bool,
    counters: wire::Counters,
    packets: Vec<(u64, u32, Vec<u8>)>,
    /// The interface each packet was captured on.
    interfaces: Vec<String>,
}

impl From<&wire::Batch<'_>> for ReceivedBatch {
    fn from(batch: &wire::Batch<'_>) -> Self {
        assert_eq!((batch.session, batch.node), ("test/capture", "test-node"));
        Self {
            id: batch.id(),
            is_final: batch.is_final(),
            counters: batch.counters.clone(),
            packets: batch
                .packets()
                .map(|p| (p.seq, p.original_len, p.data.to_vec()))
                .collect(),
            interfaces: batch
                .packets()
                .map(|p| batch.interfaces[usize::from(p.interface)].to_owned())
                .collect(),
        }
    }
}

/// Packets of all batches, each batch id once (a batch published again after a connection loss
/// may arrive twice; the parser skips the second copy the same way).
fn unique_packets(batches: &[ReceivedBatch]) -> Vec<(u64, u32, Vec<u8>)> {
    let mut seen = BTreeSet::new();
    batches
        .iter()
        .filter(|batch| seen.insert(batch.id.clone()))
        .flat_map(|batch| batch.packets.clone())
        .collect()
}

/// (UDP destination port, payload) of a captured frame.
fn udp_of(data: &[u8]) -> Option<(u16, Vec<u8>)> {
    let ethernet = EthernetPacket::new(data)?;
    let ip = Ipv4Packet::new(ethernet.payload())?;
    (ip.get_next_level_protocol() == IpNextHeaderProtocols::Udp).then_some(())?;
    let udp = UdpPacket::new(ip.payload())?;
    Some((udp.get_destination(), udp.payload().to_vec()))
}

fn mix(network: &TestNetwork, udp: usize, udp_port: u16, tcp: usize) -> Vec<Vec<u8>> {
    let (from, to) = (network.inner_mac, network.host_mac);
    let mut frames: Vec<Vec<u8>> = (0..udp)
        .map(|i| frames::udp(from, to, udp_port, format!("seq:{i}").as_bytes()))
        .collect();
    frames.extend((0..tcp).map(|i| frames::tcp_syn(from, to, 80, i as u32)));
    frames
}

async fn counts_every_packet_exactly(backend: &str) {
    let mut rig = Rig::start(&["--backend", backend]).await;
    let rx_before = rig.network.host_rx_packets();
    rig.network.send_frames(&mix(&rig.network, 400, 5555, 40), 20_000);
    rig.wait_captured(440).await;
    rig.stop();
    let batches = rig.drain().await;

    let packets = unique_packets(&batches);
    assert_eq!(
        rig.network.host_rx_packets() - rx_before,
        440,
        "the veth itself saw another count"
    );
    let strangers: Vec<String> = packets
        .iter()
        .filter(|(_, _, data)| data.len() < 26 || data[26..30] != [192, 0, 2, 2])
        .map(|(seq, len, data)| format!("seq {seq} len {len}: {:02x?}", &data[..data.len().min(48)]))
        .collect();
    assert_eq!(packets.len(), 440, "packets not sent by the test: {strangers:#?}");
    let seqs: BTreeSet<u64> = packets.iter().map(|(seq, _, _)| *seq).collect();
    assert_eq!(seqs.len(), 440, "packet sequence numbers repeat");
    let payloads: BTreeSet<Vec<u8>> = packets
        .iter()
        .filter_map(|(_, _, data)| udp_of(data))
        .map(|(_, p)| p)
        .collect();
    let expected: BTreeSet<Vec<u8>> = (0..400).map(|i| format!("seq:{i}").into_bytes()).collect();
    assert_eq!(payloads, expected);

    let last = &batches.last().unwrap().counters;
    assert_eq!((last.captured, last.dropped(), last.kernel_drops), (440, 0, 0));
}

#[tokio::test]
async fn ring_backend_counts_every_packet_exactly() {
    counts_every_packet_exactly("ring").await;
}

#[tokio::test]
async fn pnet_backend_counts_every_packet_exactly() {
    counts_every_packet_exactly("pnet").await;
}

#[tokio::test]
async fn kernel_filter_lets_only_matching_packets_through() {
    for backend in ["ring", "pnet"] {
        let mut rig = Rig::start(&["--backend", backend, "--filter", "udp port 5555"]).await;
        let mut frames = mix(&rig.network, 100, 5555, 20);
        frames.extend(mix(&rig.network, 100, 6666, 0));
        rig.network.send_frames(&frames, 20_000);
        rig.wait_captured(100).await;
        rig.stop();
        let batches = rig.drain().await;
        let packets = unique_packets(&batches);
        assert_eq!(packets.len(), 100, "{backend}: the filter let other packets through");
        assert!(
            packets
                .iter()
                .all(|(_, _, data)| udp_of(data).is_some_and(|(port, _)| port == 5555))
        );
        assert_eq!(batches.last().unwrap().counters.captured, 100);
    }
}

/// `count` UDP frames from `source` to port 5555, with payloads `<tag>:<i>`.
fn from_address(network: &TestNetwork, source: std::net::Ipv4Addr, tag: &str, count: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| {
            let payload = format!("{tag}:{i}");
            frames::udp_between(
                network.inner_mac,
                network.host_mac,
                source,
                frames::DESTINATION,
                5555,
                payload.as_bytes(),
            )
        })
        .collect()
}

/// Writes and renames, as a ConfigMap volume or an orchestrator would: a plain write truncates
/// first, and a poll between truncate and write would see no targets at all.
fn replace(path: &std::path::Path, text: &str) {
    let next = path.with_extension("next");
    std::fs::write(&next, text).unwrap();
    std::fs::rename(&next, path).unwrap();
}

#[tokio::test]
async fn targets_narrow_the_capture_and_swap_on_the_running_ring_losing_nothing_kept() {
    let (a, b) = (frames::SOURCE, std::net::Ipv4Addr::new(192, 0, 2, 3));
    for backend in ["ring", "pnet"] {
        let targets = std::env::temp_dir().join(format!("trawl-targets-{}", testkit::unique_suffix()));
        std::fs::write(&targets, format!("{a}\n")).unwrap();
        let path = targets.to_str().unwrap();
        let mut rig = Rig::start(&["--backend", backend, "--filter", "udp", "--targets-file", path]).await;
        assert_eq!(rig.metric("trawl_sniffer_targets"), 1);
        let send = |rig: &Rig, tag: &str| {
            let mut frames = from_address(&rig.network, a, &format!("a{tag}"), 100);
            frames.extend(from_address(&rig.network, b, &format!("b{tag}"), 100));
            rig.network.send_frames(&frames, 20_000);
        };
        send(&rig, "1");
        rig.wait_captured(100).await;
        // b joins: a stays targeted through the swap.
        replace(&targets, &format!("{a}\n{b}\n"));
        rig.wait_filter_swaps(1).await;
        assert_eq!(
            rig.metric("trawl_sniffer_targets"),
            2,
            "{backend}: the gauge follows the swap"
        );
        send(&rig, "2");
        rig.wait_captured(300).await;
        // a leaves.
        replace(&targets, &format!("{b}\n"));
        rig.wait_filter_swaps(2).await;
        assert_eq!(
            rig.metric("trawl_sniffer_targets"),
            1,
            "{backend}: the gauge follows the swap"
        );
        send(&rig, "3");
        rig.wait_captured(400).await;
        rig.stop();
        let packets = unique_packets(&rig.drain().await);
        let mut tags: std::collections::BTreeMap<String, usize> = Default::default();
        for (_, _, data) in &packets {
            let (_, payload) = udp_of(data).expect("UDP");
            let text = String::from_utf8(payload).unwrap();
            *tags.entry(text.split(':').next().unwrap().to_owned()).or_default() += 1;
        }
        let expected: std::collections::BTreeMap<String, usize> = [("a1", 100), ("a2", 100), ("b2", 100), ("b3", 100)]
            .map(|(t, n)| (t.to_owned(), n))
            .into();
        assert_eq!(tags, expected, "{backend}: packets by phase and source");
        let _ = std::fs::remove_file(&targets);
    }
}

#[tokio::test]
async fn snaplen_truncates_and_batches_split_at_the_packet_limit() {
    let mut rig = Rig::start(&["--snaplen", "64", "--batch-packets", "50", "--batch-timeout", "1h"]).await;
    let payload = vec![0xab; 558];
    let frames: Vec<Vec<u8>> = (0..120)
        .map(|_| frames::udp(rig.network.inner_mac, rig.network.host_mac, 5555, &payload))
        .collect();
    rig.network.send_frames(&frames, 20_000);
    rig.wait_captured(120).await;
    rig.stop();
    let batches = rig.drain().await;

    let sizes: Vec<usize> = batches.iter().map(|batch| batch.packets.len()).collect();
    assert_eq!(
        sizes,
        [50, 50, 20, 0],
        "batch sizes (the last is the final, empty batch)"
    );
    for (_, original_len, data) in batches.iter().flat_map(|batch| &batch.packets) {
        assert_eq!((*original_len, data.len()), (14 + 20 + 8 + 558, 64));
    }
}

#[tokio::test]
async fn a_partial_batch_is_sealed_after_the_timeout() {
    let rig = Rig::start(&["--batch-packets", "1000", "--batch-timeout", "200ms"]).await;
    rig.network.send_frames(&mix(&rig.network, 10, 5555, 0), 20_000);
    // No SIGTERM: the timeout alone must publish the ten packets, in batches far below the size limit.
    let mut received = Vec::new();
    let deadline = std::time::Instant::now() + DEADLINE;
    while received
        .iter()
        .map(|batch: &ReceivedBatch| batch.packets.len())
        .sum::<usize>()
        < 10
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the partial batch was not published within {DEADLINE:?}"
        );
        match rig
            .channel
            .basic_get(QUEUE.into(), BasicGetOptions::default())
            .await
            .unwrap()
        {
            Some(message) => received.push(ReceivedBatch::from(
                &wire::Batch::decode(&message.delivery.data).unwrap(),
            )),
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    assert!(
        received
            .iter()
            .all(|batch| !batch.is_final && batch.packets.len() < 1000)
    );
    assert_eq!(received.iter().map(|batch| batch.packets.len()).sum::<usize>(), 10);
}

#[tokio::test]
async fn sigterm_while_traffic_flows_loses_nothing_captured() {
    let mut rig = Rig::start(&[]).await;
    let mut sender = rig
        .network
        .send_frames_in_background(mix(&rig.network, 30_000, 5555, 0), 20_000);
    rig.wait_captured(2_000).await;
    rig.stop();
    let _ = sender.kill();
    let _ = sender.wait();
    let batches = rig.drain().await;

    let last = &batches.last().unwrap().counters;
    let stored = unique_packets(&batches).len() as u64;
    assert!(last.captured >= 2_000);
    assert_eq!(last.dropped(), 0, "drops: {:?}", last.drops);
    assert_eq!(stored, last.captured, "captured packets missing from the queue");
}

#[tokio::test]
async fn a_lost_broker_connection_is_survived_with_exact_accounting() {
    let mut rig = Rig::start(&["--batch-packets", "100", "--batch-timeout", "50ms"]).await;
    rig.network.send_frames(&mix(&rig.network, 3_000, 5555, 0), 10_000);
    rig.wait_captured(3_000).await;

    // The broker closes the sniffer's connection, as on a broker restart or a network cut.
    // The management API lists connections once its statistics include them (every few seconds).
    let names: Vec<String> = wait_until("the sniffer's broker connection", DEADLINE, || async {
        let connections = rig
            .vhost
            .get(&format!("/api/vhosts/{}/connections", rig.vhost.name))
            .ok()?;
        let names: Vec<String> = connections
            .as_array()?
            .iter()
            .filter(|c| {
                c["client_properties"]["connection_name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("trawl-sniffer"))
            })
            .filter_map(|c| c["name"].as_str().map(str::to_owned))
            .collect();
        (!names.is_empty()).then_some(names)
    })
    .await;
    let mut sender = rig
        .network
        .send_frames_in_background(mix(&rig.network, 3_000, 5555, 0), 10_000);
    for name in &names {
        rig.vhost
            .delete(&format!("/api/connections/{}", urlencode(name)))
            .unwrap();
    }
    assert!(sender.wait().unwrap().success());
    rig.wait_captured(6_000).await;
    wait_until("the sniffer to reconnect", DEADLINE, || async {
        (rig.metric("trawl_sniffer_broker_connections_total") >= 2).then_some(())
    })
    .await;
    rig.stop();
    let batches = rig.drain().await;

    let last = &batches.last().unwrap().counters;
    let packets = unique_packets(&batches);
    let by_seq: BTreeMap<u64, usize> = packets.iter().fold(BTreeMap::new(), |mut counts, (seq, _, _)| {
        *counts.entry(*seq).or_default() += 1;
        counts
    });
    assert_eq!(last.captured, 6_000);
    assert_eq!(last.dropped(), 0, "drops: {:?}", last.drops);
    assert_eq!(by_seq.len(), 6_000, "captured packets missing after the reconnect");
    assert!(
        by_seq.values().all(|&n| n == 1),
        "a packet appears in two different batches"
    );
}

#[test]
fn an_invalid_filter_is_a_clear_startup_error() {
    let output = Command::new(env!("CARGO_BIN_EXE_trawl-sniffer"))
        .args([
            "--session",
            "t/t",
            "--node",
            "n",
            "--routing-key",
            "q",
            "--filter",
            "tcp port eleventy",
        ])
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("\"tcp port eleventy\" does not compile"), "{stderr}");
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn a_broker_restart_mid_stream_is_survived_with_exact_accounting() {
    let mut broker = PrivateBroker::start();
    let mut rig = Rig::start_on(TestVhost::create(), &broker.amqp_url(), &["--batch-packets", "100"]).await;
    rig.network.send_frames(&mix(&rig.network, 2_000, 5555, 0), 10_000);
    rig.wait_captured(2_000).await;

    // Packets captured while the broker is down wait in the sniffer's buffer.
    broker.stop();
    rig.network.send_frames(&mix(&rig.network, 2_000, 6666, 0), 10_000);
    rig.wait_captured(4_000).await;
    broker.resume();
    wait_until("the sniffer to reconnect", DEADLINE, || async {
        (rig.metric("trawl_sniffer_broker_connections_total") >= 2).then_some(())
    })
    .await;
    rig.network.send_frames(&mix(&rig.network, 1_000, 7777, 0), 10_000);
    rig.wait_captured(5_000).await;
    rig.stop();

    // The test's own connection died with the broker; read the queue through a new one.
    let connection = Connection::connect(&broker.amqp_url(), Default::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let batches = rig.drain_from(&channel).await;
    let last = &batches.last().unwrap().counters;
    let seqs: BTreeSet<u64> = unique_packets(&batches).iter().map(|(seq, _, _)| *seq).collect();
    assert_eq!(last.captured, 5_000);
    assert_eq!(last.dropped(), 0, "drops: {:?}", last.drops);
    assert_eq!(seqs.len(), 5_000, "captured packets missing after the broker restart");
}

#[tokio::test]
async fn interfaces_that_appear_later_are_captured_on() {
    // No --interfaces: every interface that is up and not loopback, rescanned while running. The
    // filter keeps other traffic of this machine (and of other tests) out of the count.
    let placeholder = TestNetwork::create();
    let vhost = TestVhost::create();
    let amqp_url = vhost.amqp_url.clone();
    let mut rig = Rig::start_with(
        placeholder,
        vhost,
        &amqp_url,
        &["--filter", "udp dst port 47123"],
        FieldTable::default(),
    )
    .await;

    let late = TestNetwork::create();
    let probe = frames::udp(late.inner_mac, late.host_mac, 47123, b"probe");
    wait_until("the new interface to be captured on", DEADLINE, || async {
        late.send_frames(std::slice::from_ref(&probe), 1_000);
        (rig.metric("trawl_sniffer_packets_captured_total") > 0).then_some(())
    })
    .await;
    rig.stop();
    let batches = rig.drain().await;
    let packets = unique_packets(&batches);
    assert!(!packets.is_empty());
    assert!(
        packets
            .iter()
            .all(|(_, _, data)| udp_of(data) == Some((47123, b"probe".to_vec())))
    );
}

#[tokio::test]
async fn a_full_queue_is_counted_as_queue_full_drops() {
    // A small queue that rejects publishes once full, as the operator declares session queues.
    let vhost = TestVhost::create();
    let amqp_url = vhost.amqp_url.clone();
    let mut bounded = FieldTable::default();
    bounded.insert("x-max-length".into(), lapin::types::AMQPValue::LongInt(3));
    bounded.insert(
        "x-overflow".into(),
        lapin::types::AMQPValue::LongString("reject-publish".into()),
    );
    let network = TestNetwork::create();
    let interface = network.host_interface.clone();
    let args = ["--interfaces", interface.as_str(), "--batch-packets", "10"];
    let mut rig = Rig::start_with(network, vhost, &amqp_url, &args, bounded).await;
    rig.network.send_frames(&mix(&rig.network, 200, 5555, 0), 20_000);
    rig.wait_captured(200).await;
    wait_until("every batch to be confirmed or dropped", DEADLINE, || async {
        (rig.metric("trawl_sniffer_packets_pending") == 0).then_some(())
    })
    .await;
    let confirmed = rig.metric("trawl_sniffer_packets_confirmed_total");
    let queue_full = rig.metric("trawl_sniffer_packets_dropped_total{reason=\"queue_full\"}");
    // The queue takes three batches of ten; every other packet is counted, none is silent.
    assert_eq!(confirmed, 30);
    assert_eq!(queue_full, 170);
    rig.stop();
}

#[tokio::test]
async fn vlan_tagged_frames_are_stored_as_they_were_on_the_wire() {
    // The receiving kernel moves a frame's outer tag into the packet's metadata; both backends
    // put it back, as libpcap does. 802.1Q, 802.1ad over 802.1Q (QinQ), priority bits, VLAN 0.
    for backend in ["ring", "pnet"] {
        let mut rig = Rig::start(&["--backend", backend]).await;
        let (from, to) = (rig.network.inner_mac, rig.network.host_mac);
        let plain = |i: usize| frames::udp(from, to, 5555, format!("vlan:{i}").as_bytes());
        let sent = vec![
            frames::with_vlan_tags(&plain(0), &[(0x8100, 100)]),
            frames::with_vlan_tags(&plain(1), &[(0x88a8, 200), (0x8100, 300)]),
            frames::with_vlan_tags(&plain(2), &[(0x8100, (5 << 13) | 42)]),
            frames::with_vlan_tags(&plain(3), &[(0x8100, 0)]),
            plain(4),
        ];
        rig.network.send_frames(&sent, 1_000);
        rig.wait_captured(sent.len() as u64).await;
        rig.stop();
        let stored: Vec<(u32, Vec<u8>)> = unique_packets(&rig.drain().await)
            .into_iter()
            .map(|(_, original_len, data)| (original_len, data))
            .collect();
        let expected: Vec<(u32, Vec<u8>)> = sent.iter().map(|f| (f.len() as u32, f.clone())).collect();
        assert_eq!(
            stored, expected,
            "{backend}: stored bytes and lengths differ from what was sent"
        );
    }
}

/// (IPv4 id, TCP sequence, TCP flags, payload length) of each TCP packet: what tells packets apart,
/// without the checksums (offload leaves them unfinished where the sender captures).
fn tcp_packets(frames: impl IntoIterator<Item = Vec<u8>>) -> Vec<(u16, u32, u8, usize)> {
    let mut packets: Vec<_> = frames
        .into_iter()
        .filter_map(|data| {
            let ethernet = EthernetPacket::new(&data)?;
            let ip = Ipv4Packet::new(ethernet.payload())?;
            let tcp = pnet::packet::tcp::TcpPacket::new(ip.payload())?;
            Some((
                ip.get_identification(),
                tcp.get_sequence(),
                tcp.get_flags(),
                tcp.payload().len(),
            ))
        })
        .collect();
    packets.sort_unstable();
    packets
}

/// Five HTTP requests from pod 0 to pod 1's server; returns the TCP packets pod 0 itself saw
/// (tcpdump inside its namespace), once the sniffer has captured `copies` of each.
async fn five_requests_between_pods(pods: &BridgedPods, rig: &Rig, copies: u64) -> Vec<(u16, u32, u8, usize)> {
    five_requests(
        pods,
        rig,
        copies,
        |program| pods.command(1, program),
        &pods.addresses[1],
    )
    .await
}

/// Five HTTP requests from pod 0 to a server run with `server_side` at `address`.
async fn five_requests(
    pods: &BridgedPods,
    rig: &Rig,
    copies: u64,
    server_side: impl Fn(&str) -> Command,
    address: &str,
) -> Vec<(u16, u32, u8, usize)> {
    let mut serve = server_side("python3");
    serve
        .args(["-m", "http.server", "8000", "--bind", address])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let server = Service::start("http.server", serve);
    wait_until("the HTTP server to listen", DEADLINE, || async {
        let output = server_side("ss").args(["-Hltn", "sport = :8000"]).output().ok()?;
        (!output.stdout.is_empty()).then_some(())
    })
    .await;
    // The reference: what the client pod itself saw, from inside its namespace.
    let pcap = std::env::temp_dir().join(format!("trawl-{}.pcap", pods.bridge));
    let mut tcpdump = pods
        .command(0, "tcpdump")
        .args(["-i", "eth0", "--immediate-mode", "-U", "-n", "-w"])
        .arg(&pcap)
        .args(["tcp", "port", "8000"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run tcpdump (apt: tcpdump)");
    let stderr = tcpdump.stderr.take().unwrap();
    let (listening, heard) = std::sync::mpsc::channel();
    // Read to the end in a thread: tcpdump writes its summary there when it stops.
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("listening on") {
                let _ = listening.send(());
            }
        }
    });
    heard.recv_timeout(DEADLINE).expect("tcpdump to listen");
    for request in 0..5 {
        let status = pods
            .command(0, "curl")
            .args(["-sf", "-o", "/dev/null", &format!("http://{address}:8000/?r={request}")])
            .status()
            .unwrap();
        assert!(status.success(), "curl from pod a to {address}");
    }
    let seen = || {
        tcp_packets(
            testkit::pcap::read(&pcap)
                .unwrap_or_default()
                .into_iter()
                .map(|(_, frame)| frame),
        )
    };
    // Both ends closed each of the five connections, and the sniffer has every copy of it.
    wait_until(
        "the client pod's capture to hold the five connections' ends",
        DEADLINE,
        || async {
            let packets = seen();
            let fins = packets.iter().filter(|(_, _, flags, _)| flags & 1 != 0).count();
            (fins >= 10 && rig.metric("trawl_sniffer_packets_captured_total") >= copies * packets.len() as u64)
                .then_some(())
        },
    )
    .await;
    let stopped = Command::new("kill").args(["-INT", &tcpdump.id().to_string()]).status();
    assert!(stopped.is_ok_and(|status| status.success()), "stop tcpdump");
    tcpdump.wait().unwrap();
    server.signal("TERM");
    let reference = seen();
    let _ = std::fs::remove_file(&pcap);
    assert!(
        reference.len() >= 5 * 6,
        "five HTTP exchanges: {} packets",
        reference.len()
    );
    reference
}

fn deduplicated(counters: &wire::Counters) -> u64 {
    counters
        .drops
        .iter()
        .find(|(reason, _)| reason == "deduplicated")
        .map_or(0, |(_, n)| *n)
}

#[tokio::test]
async fn a_packet_seen_on_veth_bridge_and_veth_is_kept_once() {
    let pods = BridgedPods::create(2);
    let interfaces = format!("{},{},{}", pods.host_ends[0], pods.bridge, pods.host_ends[1]);
    let vhost = TestVhost::create();
    let amqp_url = vhost.amqp_url.clone();
    let mut rig = Rig::start_with(
        TestNetwork::create(),
        vhost,
        &amqp_url,
        &["--interfaces", &interfaces, "--filter", "tcp port 8000"],
        FieldTable::default(),
    )
    .await;
    let reference = five_requests_between_pods(&pods, &rig, 3).await;
    let wire = reference.len() as u64;

    rig.wait_captured(3 * wire).await;
    wait_until("the copies counted on /metrics", DEADLINE, || async {
        (rig.metric("trawl_sniffer_packets_deduplicated_total") == 2 * wire).then_some(())
    })
    .await;
    rig.stop();
    let batches = rig.drain().await;
    let counters = &batches.last().unwrap().counters;
    let kept = unique_packets(&batches);
    assert_eq!(
        counters.captured,
        3 * wire,
        "each packet on the sender's veth, the bridge and the receiver's veth"
    );
    assert_eq!(deduplicated(counters), 2 * wire, "two copies of each set aside");
    assert_eq!(
        tcp_packets(kept.into_iter().map(|(_, _, frame)| frame)),
        reference,
        "what the client pod saw, each packet once"
    );
}

/// A sniffer without `--interfaces` (the node's capture points) that knows `pods` as the captured
/// pods (`--pods-file`, returned for removal).
async fn capturing_points_of(pods: &BridgedPods, filter: &str) -> (Rig, std::path::PathBuf) {
    let pods_file = std::env::temp_dir().join(format!("trawl-pods-{}", pods.bridge));
    replace(&pods_file, &pods.addresses.join("\n"));
    let vhost = TestVhost::create();
    let amqp_url = vhost.amqp_url.clone();
    let rig = Rig::start_with(
        TestNetwork::create(),
        vhost,
        &amqp_url,
        &["--filter", filter, "--pods-file", pods_file.to_str().unwrap()],
        FieldTable::default(),
    )
    .await;
    (rig, pods_file)
}

#[tokio::test]
async fn without_interfaces_each_packet_is_kept_where_it_leaves_its_pod() {
    // No --interfaces: the sniffer finds the pods' veths from the kernel (enslaved to a bridge,
    // peer in another namespace), leaves the bridge alone, and with the captured pods' addresses
    // keeps a packet only where it leaves its sender.
    let pods = BridgedPods::create(2);
    let filter = format!("tcp port 8000 and net {}.0/24", pods.subnet);
    let (mut rig, pods_file) = capturing_points_of(&pods, &filter).await;
    let reference = five_requests_between_pods(&pods, &rig, 2).await;
    let wire = reference.len() as u64;
    rig.wait_captured(2 * wire).await;
    rig.stop();
    let _ = std::fs::remove_file(&pods_file);
    let batches = rig.drain().await;
    let counters = &batches.last().unwrap().counters;
    assert_eq!(counters.captured, 2 * wire, "on the two veths, not on the bridge");
    assert_eq!(deduplicated(counters), wire, "the copies entering the receiving pod");
    let mut seen = BTreeSet::new();
    let kept: Vec<(String, Vec<u8>)> = batches
        .iter()
        .filter(|batch| seen.insert(batch.id.clone()))
        .flat_map(|batch| {
            batch
                .interfaces
                .iter()
                .cloned()
                .zip(batch.packets.iter().map(|p| p.2.clone()))
        })
        .collect();
    for (interface, frame) in &kept {
        let ip = Ipv4Packet::new(&frame[14..]).unwrap();
        let sender = pods
            .addresses
            .iter()
            .position(|address| *address == ip.get_source().to_string())
            .expect("a pod sent it");
        assert_eq!(*interface, pods.host_ends[sender], "kept where it left pod {sender}");
    }
    assert_eq!(
        tcp_packets(kept.into_iter().map(|(_, frame)| frame)),
        reference,
        "what the client pod saw, each packet once"
    );
}

#[tokio::test]
async fn a_pods_traffic_through_the_nodes_snat_is_kept_as_the_pod_sent_it() {
    // A pod talks to an address outside the "cluster" through the host's masquerade: its packets
    // are seen on its veth with its own address and on the uplink with the host's. The pod's
    // copy is kept; the uplink's, held until the veth's thread has handed its copy over, is
    // deduplicated as a translated copy.
    let pods = BridgedPods::create(1);
    let outside = Outside::create(&pods);
    let filter = format!(
        "tcp port 8000 and (net {}.0/24 or host {})",
        pods.subnet, outside.address
    );
    let (mut rig, pods_file) = capturing_points_of(&pods, &filter).await;
    let reference = five_requests(&pods, &rig, 2, |program| outside.command(program), &outside.address).await;
    let wire = reference.len() as u64;
    rig.wait_captured(2 * wire).await;
    rig.stop();
    let _ = std::fs::remove_file(&pods_file);
    let batches = rig.drain().await;
    let counters = &batches.last().unwrap().counters;
    assert_eq!(counters.captured, 2 * wire, "on the pod's veth and on the uplink");
    assert_eq!(deduplicated(counters), wire, "the uplink's translated copies");
    let kept = unique_packets(&batches);
    for (_, _, frame) in &kept {
        let ip = Ipv4Packet::new(&frame[14..]).unwrap();
        assert!(
            [ip.get_source(), ip.get_destination()].contains(&pods.addresses[0].parse().unwrap()),
            "kept with the pod's address, not the host's: {} -> {}",
            ip.get_source(),
            ip.get_destination()
        );
    }
    assert_eq!(
        tcp_packets(kept.into_iter().map(|(_, _, frame)| frame)),
        reference,
        "what the pod saw, each packet once"
    );
}
