//! The pipeline's sustained rate: for 1 and for 2 parsers, offers traffic for 60 s at rising
//! rates and reports the highest rate the pipeline keeps up with: no packet lost, and every row
//! stored within 5 s of the end of the offer (a growing queue backlog would hide behind "no loss"
//! for a while). Also the wire-to-row latency (p50/p99, from the parsers' histogram) at that rate,
//! and the highest rate whose p99 stays under 1 s.
//! Run as root by `bash bench/pipeline.sh`, which writes the result into docs/benchmarks.md.
//!
//! `cargo run --release -p e2e --example sustained -- [seconds, default 60]`

use std::time::{Duration, Instant};

use e2e::{Pipeline, PipelineOptions};

/// Offered rates in packets per second, up past what tcpreplay offers on a veth here (about
/// 100 000/s in earlier runs; a step it cannot offer ends the series and says so).
const RATES: [u32; 12] = [
    8_000, 16_000, 32_000, 48_000, 64_000, 80_000, 96_000, 112_000, 128_000, 144_000, 160_000, 192_000,
];
/// Keeping up: every row stored this soon after the offer ends.
const DRAIN: Duration = Duration::from_secs(5);
/// A step that has not stored everything by then has failed; its backlog is not drained (two
/// parsers beyond their rate took over five minutes to drain one step in an earlier run).
const GIVE_UP: Duration = Duration::from_secs(30);
/// The latency goal the second row of the table reports against (issue #18).
const LATENCY_GOAL: f64 = 1.0;

/// p-quantile of a Prometheus histogram summed over every parser's exposition (a bucket bound).
fn quantile(metrics: &str, name: &str, q: f64) -> Option<f64> {
    let mut buckets: std::collections::BTreeMap<u64, (f64, u64)> = Default::default();
    for line in metrics.lines().filter(|l| l.starts_with(&format!("{name}_bucket{{"))) {
        let le = line.split("le=\"").nth(1)?.split('"').next()?;
        let bound: f64 = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
        let count: u64 = line.rsplit(' ').next()?.parse().ok()?;
        buckets.entry(bound.to_bits()).or_insert((bound, 0)).1 += count;
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

#[derive(Clone, Copy)]
struct Step {
    achieved: f64,
    /// None when rows were still missing at [`GIVE_UP`].
    drained_in: Option<Duration>,
    /// Known only for a drained step (its accounting settled).
    lost: Option<u64>,
    stored: u64,
    p50: f64,
    p99: f64,
}

async fn step(parsers: usize, rate: u32, seconds: u32) -> Step {
    // A shard per parser: each consumes its own (as a session of `shards: parsers` would).
    let mut pipeline = Pipeline::start(PipelineOptions {
        parsers,
        shards: parsers as u16,
        ..Default::default()
    })
    .await;
    let target = u64::from(rate * seconds);
    // Frames are built before the clock starts; the generator may fall short of the asked rate,
    // so report what it achieved.
    let mut sender = pipeline.offer_in_background(rate * seconds, rate);
    let started = Instant::now();
    let status = sender.wait().expect("wait for the generator");
    assert!(status.success(), "the generator failed: {status}");
    let offered_at = Instant::now();
    let achieved = target as f64 / started.elapsed().as_secs_f64();
    let deadline = offered_at + GIVE_UP;
    let mut stored = pipeline.stored().await;
    while stored < target && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        stored = pipeline.stored().await;
    }
    let drained_in = (stored >= target).then(|| offered_at.elapsed());
    let metrics = pipeline.parser_metrics();
    pipeline.stop_sniffer();
    // A step that fell behind gets a little longer to settle, so that its drops (a full queue)
    // are told from late rows; then dropping the pipeline removes any backlog with its vhost.
    let accounting = match drained_in {
        Some(_) => Some(pipeline.settle().await),
        None => pipeline.try_settle(GIVE_UP).await,
    };
    if let Some(accounting) = &accounting {
        accounting.assert_captured_balanced();
    }
    let result = Step {
        achieved,
        drained_in,
        lost: accounting.as_ref().map(|a| a.offered - a.stored),
        stored,
        p50: quantile(&metrics, "trawl_parser_wire_to_stored_seconds", 0.5).unwrap_or(f64::NAN),
        p99: quantile(&metrics, "trawl_parser_wire_to_stored_seconds", 0.99).unwrap_or(f64::NAN),
    };
    // Each step as it ends, so that a stopped run still leaves its figures.
    let ending = match (drained_in, &accounting) {
        (Some(drained_in), Some(accounting)) => format!(
            "last row {:.1} s after the offer, wire-to-row p50 <= {:.0} ms, p99 <= {:.0} ms: {accounting:?}",
            drained_in.as_secs_f64(),
            result.p50 * 1000.0,
            result.p99 * 1000.0
        ),
        (None, Some(accounting)) => format!(
            "fell behind: {stored} of {target} rows stored {} s after the offer, wire-to-row p99 so far <= {:.0} ms; \
             settled later: {accounting:?}",
            GIVE_UP.as_secs(),
            result.p99 * 1000.0
        ),
        _ => format!(
            "fell behind: {stored} of {target} rows stored {} s after the offer, wire-to-row p99 so far <= {:.0} ms; \
             not settled {} s later",
            GIVE_UP.as_secs(),
            result.p99 * 1000.0,
            GIVE_UP.as_secs()
        ),
    };
    eprintln!("step: {parsers} parser(s), asked {rate}/s, achieved {achieved:.0}/s, {ending}");
    result
}

fn row(label: &str, step: &Step, next: &str) -> String {
    format!(
        "| {label} | {:.0} | <= {:.0} ms | <= {:.0} ms | {next} |",
        step.achieved,
        step.p50 * 1000.0,
        step.p99 * 1000.0
    )
}

#[tokio::main]
async fn main() {
    let seconds: u32 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(60);
    println!("| parsers | highest rate kept up with ({seconds} s, packets/s) | wire-to-row p50 | p99 | next step |");
    println!("|---|---|---|---|---|");
    // Two parsers sustain at least what one does within the latency goal: start them at that
    // rate (the generator achieves a little under the asked rate, hence the 5 %).
    let mut floor = 0.0;
    for parsers in [1, 2] {
        let mut best: Option<Step> = None;
        let mut within_goal: Option<Step> = None;
        let mut latency_next: Option<String> = None;
        let mut next = "none: the benchmark's highest rate".to_owned();
        let start = RATES
            .iter()
            .rposition(|&rate| f64::from(rate) * 0.95 <= floor)
            .unwrap_or(0);
        for rate in RATES[start..].iter().copied() {
            let result = step(parsers, rate, seconds).await;
            if result.achieved < f64::from(rate) * 0.95 {
                next = format!(
                    "the generator reached only {:.0}/s when asked for {rate}/s",
                    result.achieved
                );
                break;
            }
            match (result.lost, result.drained_in) {
                (Some(0), Some(drained_in)) if drained_in <= DRAIN => {}
                // A drained step has settled, so its loss is known.
                (lost, Some(drained_in)) => {
                    next = format!(
                        "{rate}/s: {} lost, last row stored {:.1} s after the offer ended",
                        lost.unwrap_or_default(),
                        drained_in.as_secs_f64()
                    );
                    break;
                }
                (lost, None) => {
                    let lost = lost.map_or_else(|| "loss unknown".to_owned(), |lost| format!("{lost} lost"));
                    next = format!(
                        "{rate}/s: fell behind, {} rows of {} stored {} s after the offer ended ({lost})",
                        result.stored,
                        u64::from(rate * seconds),
                        GIVE_UP.as_secs()
                    );
                    break;
                }
            }
            // The latency row keeps the last rate within the goal before the first one past it.
            if within_goal.is_none() || latency_next.is_none() {
                if result.p99 <= LATENCY_GOAL {
                    within_goal = Some(result);
                } else if within_goal.is_some() {
                    latency_next = Some(format!("{rate}/s: p99 <= {:.1} s", result.p99));
                }
            }
            best = Some(result);
        }
        match &best {
            Some(best) => println!("{}", row(&parsers.to_string(), best, &next)),
            None => println!("| {parsers} | below {} | | | {next} |", RATES[start]),
        }
        if let Some(step) = &within_goal {
            let label = format!("{parsers}, with wire-to-row p99 under {LATENCY_GOAL} s");
            println!("{}", row(&label, step, latency_next.as_deref().unwrap_or(&next)));
        }
        floor = within_goal.map_or(0.0, |step| step.achieved);
    }
}
