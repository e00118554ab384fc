//! Wire to Wireshark: how long a packet takes from the wire to a live pcapng reader, for
//! `bench/live.sh`. The pipeline of the end-to-end tests (trawl-sniffer on a veth, RabbitMQ, one
//! trawl-parser, PostgreSQL) and a trawl-api over its database; a reader follows the session's
//! live export (`/pcap?format=pcapng&follow=true`, what `kubectl trawl tap -w -` and the extcap
//! read) while the generator offers RATE packets/s for SECONDS. Each packet's latency runs from
//! its kernel timestamp (in its Enhanced Packet Block) to the moment the reader has its block.
//! Prints one line: `live: offered received p50_ms p99_ms max_ms`.
//!
//! Run (root): `cargo run --release -p e2e --example live_export -- [RATE] [SECONDS]`

use std::io::Read;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use e2e::{Pipeline, PipelineOptions, TrawlApi};

/// Reads pcapng blocks as they arrive; sends each Enhanced Packet Block's latency in µs.
fn read_blocks(mut reader: impl Read, latencies: std::sync::mpsc::Sender<u64>) {
    let mut head = [0u8; 8];
    while reader.read_exact(&mut head).is_ok() {
        let block_type = u32::from_le_bytes(head[..4].try_into().unwrap());
        let total = u32::from_le_bytes(head[4..].try_into().unwrap()) as usize;
        let mut rest = vec![0u8; total.saturating_sub(8)];
        if reader.read_exact(&mut rest).is_err() {
            return;
        }
        if block_type == 6 && rest.len() >= 12 {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros() as u64;
            let high = u64::from(u32::from_le_bytes(rest[4..8].try_into().unwrap()));
            let low = u64::from(u32::from_le_bytes(rest[8..12].try_into().unwrap()));
            if latencies.send(now.saturating_sub(high << 32 | low)).is_err() {
                return;
            }
        }
    }
}

fn percentile(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let at = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[at] as f64 / 1000.0
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rate: u32 = args.get(1).map_or(10_000, |a| a.parse().expect("RATE"));
    let seconds: u32 = args.get(2).map_or(30, |a| a.parse().expect("SECONDS"));
    let mut pipeline = Pipeline::start(PipelineOptions {
        parsers: 1,
        shards: 1,
        ..Default::default()
    })
    .await;
    let api = TrawlApi::start(&pipeline.database.url(), &pipeline.session).await;
    // The export answers for a session the database knows: warm up with a few packets first.
    pipeline.offer(100, 1_000);
    testkit::wait_until("the warm-up packets stored", Duration::from_secs(60), || async {
        (pipeline.stored().await >= 100).then_some(())
    })
    .await;
    let (namespace, name) = pipeline.session.split_once('/').unwrap();
    let url = format!(
        "http://127.0.0.1:{}/api/v1/sessions/{namespace}/{name}/pcap?format=pcapng&follow=true",
        api.port
    );
    let response = ureq::get(&url)
        .config()
        .timeout_global(None)
        .build()
        .call()
        .expect("the live export");
    assert_eq!(response.status().as_u16(), 200, "the live export");
    let (sender, latencies) = std::sync::mpsc::channel();
    let reader = response.into_body().into_reader();
    std::thread::spawn(move || read_blocks(reader, sender));

    let offered = u64::from(rate * seconds);
    let mut generator = pipeline.offer_in_background(rate * seconds, rate);
    let status = generator.wait().expect("wait for the generator");
    assert!(status.success(), "the generator failed: {status}");
    let mut received = Vec::with_capacity(offered as usize);
    let deadline = Instant::now() + Duration::from_secs(60);
    while (received.len() as u64) < offered && Instant::now() < deadline {
        if let Ok(latency) = latencies.recv_timeout(Duration::from_millis(200)) {
            received.push(latency);
        }
    }
    received.sort_unstable();
    // The services write their logs to standard output as well: the result has a prefix.
    println!(
        "live: {offered} {} {:.0} {:.0} {:.0}",
        received.len(),
        percentile(&received, 0.5),
        percentile(&received, 0.99),
        percentile(&received, 1.0)
    );
    pipeline.stop_sniffer();
}
