//! `trawl-sniffer`: captures packets on host interfaces and publishes batches to RabbitMQ.
//!
//! Run (as root, or with CAP_NET_RAW and CAP_NET_ADMIN):
//! `cargo run -p sniffer -- --session default/demo --node $(hostname) --routing-key demo --interfaces eth0`
//! Batches go to the `trawl.packets` exchange in the format of `wire/FORMAT.md`.
mod accounting;
mod capture;
mod config;
mod dedup;
mod health;
mod interfaces;
mod outbox;
mod points;
mod publisher;
mod shard;
mod targets;
mod worker;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use wire::{BatchBuilder, FLAG_FINAL, Origin};

use crate::accounting::{Accounting, DropReason};
use crate::capture::{CaptureError, CaptureSettings, KernelFilter};
use crate::interfaces::Selection;
use crate::outbox::{Outbox, OutgoingBatch};
use crate::publisher::{Publisher, PublisherSettings};
use crate::worker::{BatchLimits, Shared, SharedRole};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = config::Config::parse();
    service::logging::init();
    // Compiled first on its own, so that a bad filter stops the sniffer with a message even when
    // no pod is targeted yet.
    let mut filter = KernelFilter::compile(&config.filter)?;
    let targets = targets::Source::from_config(&config)?;
    let first_lists = match &targets {
        Some(source) => source.read().await,
        None => targets::Lists::default(),
    };
    if targets.as_ref().is_some_and(targets::Source::narrows) {
        // The first captures open already narrowed (an unreachable source: nothing yet).
        let addresses = capture::parse_targets(&first_lists.this_node).unwrap_or_default();
        filter = KernelFilter::targeting(&config.filter, &addresses)?;
    }
    let origin = Origin {
        boot_id: rand::random(),
        session: config.session.clone(),
        node: config.node.clone(),
    };
    tracing::info!(session = %origin.session, node = %origin.node, boot_id = %origin.batch_id(0), filter = %filter.expression, "starting");

    let accounting = Arc::new(Accounting::default());
    accounting.targets.set(filter.targets.unwrap_or(0) as i64);
    let shared = Arc::new(Shared {
        origin,
        filter: worker::FilterBoard::new(filter.clone()),
        accounting: accounting.clone(),
        dedup: dedup::Deduplicator::default(),
        pods: points::CapturedPods::default(),
        next_packet_seq: AtomicU64::new(0),
        next_batch_seq: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    if let Ok(captured) = points::Captured::parse(&first_lists.every_node, &first_lists.services, &first_lists.backends)
    {
        shared.pods.publish(captured);
    }
    let connected = Arc::new(AtomicBool::new(false));
    // Bound here, before anything else starts, so that a taken port is a clear startup error.
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    service::admin::spawn(listener, health::routes(accounting.clone(), connected.clone()));

    let (outbox, outbox_receiver) = outbox::outbox(config.buffer_bytes, accounting.clone());
    let (deadline_sender, deadline) = tokio::sync::watch::channel(None);
    let publisher = Publisher::new(
        PublisherSettings {
            amqp_url: config.amqp_url.clone(),
            exchange: config.exchange.clone(),
            routing_key: config.routing_key.clone(),
            max_in_flight: config.max_in_flight.max(1),
            connection_name: format!("trawl-sniffer {} {}", config.session, config.node),
        },
        accounting.clone(),
        outbox_receiver,
        connected,
    );
    let final_shared = shared.clone();
    let publishing = tokio::spawn(publisher.run(deadline, move || final_batch(&final_shared)));

    if let Some(source) = targets {
        source.follow(config.filter.clone(), shared.clone());
    }
    let settings = CaptureSettings {
        backend: config.backend,
        snaplen: config.snaplen,
        filter,
        ring_block_bytes: config.ring_block_bytes,
        ring_blocks: config.ring_blocks,
    };
    let limits = BatchLimits {
        packets: config.batch_packets.max(1) as u32,
        timeout: config.batch_timeout,
        shards: config.shards,
    };
    let selection = Selection::from_config(&config.interfaces);
    let supervisor_shared = shared.clone();
    let supervisor = std::thread::spawn(move || supervise(selection, settings, limits, supervisor_shared, outbox));

    let signal = service::shutdown::signal_received().await;
    tracing::info!("{signal}: stopping capture and flushing");
    shared.stop.store(true, Ordering::Release);
    let _ = deadline_sender.send(Some(Instant::now() + config.shutdown_timeout));
    tokio::task::spawn_blocking(move || supervisor.join())
        .await?
        .expect("the capture supervisor panicked");
    publishing.await?;

    let pending = accounting.pending();
    let dropped: Vec<String> = DropReason::ALL
        .iter()
        .map(|&reason| format!("{}={}", reason.as_str(), accounting.dropped(reason)))
        .collect();
    tracing::info!(
        captured = accounting.captured_packets.get(),
        confirmed = accounting.confirmed_packets.get(),
        dropped = %dropped.join(","),
        kernel_drops = accounting.kernel_drops.get(),
        pending,
        "stopped: captured = confirmed + dropped"
    );
    anyhow::ensure!(
        pending == 0,
        "{pending} captured packets were neither confirmed nor counted as dropped"
    );
    Ok(())
}

fn final_batch(shared: &Shared) -> OutgoingBatch {
    let seq = shared.next_batch_seq.fetch_add(1, Ordering::AcqRel);
    let body = BatchBuilder::default().seal(&shared.origin, seq, FLAG_FINAL, &shared.accounting.snapshot());
    OutgoingBatch {
        seq,
        shard: 0,
        id: shared.origin.batch_id(seq),
        packets: 0,
        body,
    }
}

type CaptureThread = JoinHandle<Result<(), CaptureError>>;

/// Starts a capture thread per selected interface, restarts captures whose interface comes back,
/// and on stop waits for every thread to flush.
fn supervise(
    selection: Selection,
    settings: CaptureSettings,
    limits: BatchLimits,
    shared: Arc<Shared>,
    outbox: Outbox,
) {
    let mut running: HashMap<String, (Arc<SharedRole>, CaptureThread)> = HashMap::new();
    let mut retry_at: HashMap<String, Instant> = HashMap::new();
    let mut points = Default::default();
    while !shared.stop.load(Ordering::Acquire) {
        running.retain(|interface, (_, thread)| {
            if !thread.is_finished() {
                return true;
            }
            if let Ok(Err(error)) = std::mem::replace(thread, std::thread::spawn(|| Ok(()))).join() {
                tracing::warn!(%interface, %error, "capture ended");
            }
            false
        });
        match selection.current() {
            Ok(current) => points = current,
            // The last list stays; the kernel answers the next time.
            Err(error) => tracing::warn!(%error, "cannot list the interfaces"),
        }
        for (interface, &role) in &points {
            if let Some((shared_role, _)) = running.get(interface) {
                if shared_role.get() != role {
                    tracing::info!(%interface, ?role, "capture point changed its role");
                    shared_role.set(role);
                }
                continue;
            }
            if retry_at.get(interface).is_some_and(|at| Instant::now() < *at) {
                continue;
            }
            // New captures start with the filter of now (the targets may have changed since start).
            let (generation, filter) = shared.filter.current();
            let settings = CaptureSettings {
                filter,
                ..settings.clone()
            };
            match capture::open(interface, &settings) {
                Ok(source) => {
                    tracing::info!(%interface, ?role, backend = ?settings.backend, "capturing");
                    retry_at.remove(interface);
                    let shared_role = Arc::new(SharedRole::new(role));
                    let (shared, outbox, name, thread_role) =
                        (shared.clone(), outbox.clone(), interface.clone(), shared_role.clone());
                    let thread = std::thread::Builder::new()
                        .name(format!("capture-{interface}"))
                        .spawn(move || worker::run(name, thread_role, source, generation, shared, outbox, limits))
                        .expect("spawn a capture thread");
                    running.insert(interface.clone(), (shared_role, thread));
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot capture; retrying in 10 s");
                    retry_at.insert(interface.clone(), Instant::now() + Duration::from_secs(10));
                }
            }
        }
        shared.accounting.interfaces.set(running.len() as i64);
        for _ in 0..10 {
            if shared.stop.load(Ordering::Acquire) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    for (interface, (_, thread)) in running {
        if let Ok(Err(error)) = thread.join() {
            tracing::warn!(%interface, %error, "capture ended with an error");
        }
    }
}
