//! The pipeline's sustained rate: for 1 and for 2 parsers, offers traffic for 60 s at rising
//! rates (doubling from 2 000 packets/s) until one loses a packet, and reports the highest rate
//! with zero loss and the wire-to-row latency (p50/p99, from the parsers' histogram) at it.
//! Run as root by `bash bench/pipeline.sh`, which writes the result into docs/benchmarks.md.
//!
//! `cargo run --release -p e2e --example sustained -- [seconds, default 60]`

use e2e::{Pipeline, PipelineOptions};

/// p-quantile of a Prometheus histogram summed over every parser's exposition.
fn quantile(metrics: &str, name: &str, q: f64) -> Option<f64> {
    let mut buckets: std::collections::BTreeMap<u64, (f64, u64)> = Default::default();
    for line in metrics.lines().filter(|l| l.starts_with(&format!("{name}_bucket{{"))) {
        let le = line.split("le=\"").nth(1)?.split('"').next()?;
        let bound: f64 = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
        let count: u64 = line.rsplit(' ').next()?.parse().ok()?;
        let entry = buckets.entry(bound.to_bits()).or_insert((bound, 0));
        entry.1 += count;
    }
    let mut sorted: Vec<(f64, u64)> = buckets.into_values().collect();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = sorted.last()?.1;
    let target = (total as f64 * q).ceil() as u64;
    sorted
        .iter()
        .find(|(_, count)| *count >= target)
        .map(|(bound, _)| *bound)
}

#[tokio::main]
async fn main() {
    let seconds: u32 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(60);
    println!(
        "| parsers | highest zero-loss rate (packets/s, {seconds} s) | wire-to-row p50 | p99 | first lossy rate |"
    );
    println!("|---|---|---|---|---|");
    for parsers in [1, 2] {
        let mut best: Option<(u32, f64, f64)> = None;
        let mut lossy = None;
        let mut rate = 2_000;
        while rate <= 64_000 {
            let mut pipeline = Pipeline::start(PipelineOptions {
                parsers,
                ..Default::default()
            })
            .await;
            pipeline.offer(rate * seconds, rate);
            // The latency of what arrived while offering; a backlog would show here first.
            let metrics = pipeline.parser_metrics();
            pipeline.stop_sniffer();
            let accounting = pipeline.settle().await;
            accounting.assert_captured_balanced();
            let lost = accounting.offered - accounting.stored;
            eprintln!("{parsers} parser(s), {rate}/s: {accounting:?}");
            if lost > 0 {
                lossy = Some((rate, lost));
                break;
            }
            let p50 = quantile(&metrics, "trawl_parser_wire_to_stored_seconds", 0.5).unwrap_or(f64::NAN);
            let p99 = quantile(&metrics, "trawl_parser_wire_to_stored_seconds", 0.99).unwrap_or(f64::NAN);
            best = Some((rate, p50, p99));
            rate *= 2;
        }
        let (rate, p50, p99) = best.unwrap_or((0, f64::NAN, f64::NAN));
        let lossy = lossy.map_or("none up to 64 000".to_owned(), |(r, lost)| format!("{r} ({lost} lost)"));
        println!(
            "| {parsers} | {rate} | <= {:.0} ms | <= {:.0} ms | {lossy} |",
            p50 * 1000.0,
            p99 * 1000.0
        );
    }
}
