//! One capture thread per interface: reads the kernel's packets, appends each to the open batch of
//! its flow's shard, and seals a batch when it holds `batch_packets` packets or its first packet is
//! `batch_timeout` old.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wire::{BatchBuilder, Origin};

use crate::accounting::Accounting;
use crate::capture::{CaptureError, CaptureSource, KernelFilter};
use crate::dedup::Deduplicator;
use crate::interfaces::Role;
use crate::outbox::{Outbox, OutgoingBatch};
use crate::points::{self, CapturedPods};
use crate::shard;

/// The kernel filter the capture threads should run; the generation changes with it, so each
/// thread swaps it on its socket once.
#[derive(Default)]
pub struct FilterBoard {
    generation: AtomicU64,
    filter: Mutex<KernelFilter>,
}

impl FilterBoard {
    pub fn new(filter: KernelFilter) -> Self {
        Self {
            generation: AtomicU64::new(0),
            filter: Mutex::new(filter),
        }
    }

    pub fn publish(&self, filter: KernelFilter) {
        *self.filter.lock().expect("not poisoned") = filter;
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The filter and its generation.
    pub fn current(&self) -> (u64, KernelFilter) {
        let filter = self.filter.lock().expect("not poisoned");
        (self.generation(), filter.clone())
    }
}

/// What all capture threads of this process share.
pub struct Shared {
    pub origin: Origin,
    pub filter: FilterBoard,
    pub accounting: Arc<Accounting>,
    pub dedup: Deduplicator,
    pub pods: CapturedPods,
    pub next_packet_seq: AtomicU64,
    pub next_batch_seq: AtomicU64,
    pub stop: AtomicBool,
}

#[derive(Clone, Copy)]
pub struct BatchLimits {
    pub packets: u32,
    pub timeout: Duration,
    /// The session's shards (see `crate::shard`).
    pub shards: u16,
}

/// An interface's role, which the supervisor may change while the capture runs (a CNI attaches a
/// pod's veth to its bridge after bringing it up).
#[derive(Default)]
pub struct SharedRole(AtomicU8);

impl SharedRole {
    pub fn new(role: Role) -> Self {
        let shared = Self::default();
        shared.set(role);
        shared
    }

    pub fn set(&self, role: Role) {
        let code = match role {
            Role::PodEnd => 0,
            Role::Node => 1,
            Role::Whole => 2,
        };
        self.0.store(code, Ordering::Release);
    }

    pub fn get(&self) -> Role {
        match self.0.load(Ordering::Acquire) {
            0 => Role::PodEnd,
            1 => Role::Node,
            _ => Role::Whole,
        }
    }
}

/// Captures until `shared.stop` is set (then flushes its partial batch) or the capture fails.
/// `applied` is the generation of the filter the source was opened with.
pub fn run(
    interface: String,
    role: Arc<SharedRole>,
    mut source: Box<dyn CaptureSource>,
    mut applied: u64,
    shared: Arc<Shared>,
    outbox: Outbox,
    limits: BatchLimits,
) -> Result<(), CaptureError> {
    let interface_name = interface.clone();
    let interface_key = {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        interface.hash(&mut hasher);
        hasher.finish()
    };
    let shards = limits.shards.max(1);
    // The whole batch size up front for one shard; with several, each grows as it fills.
    let capacity = if shards == 1 { 1 << 20 } else { 1 << 16 };
    let mut batches: Vec<OpenBatch> = (0..shards)
        .map(|shard| OpenBatch {
            builder: BatchBuilder::with_capacity(capacity),
            interface: interface.clone(),
            shard,
            opened_at: None,
        })
        .collect();
    let mut kernel_drops = 0;
    let mut stats_read_at = Instant::now();
    let (mut pods_generation, mut pods) = shared.pods.current();
    let result = loop {
        if shared.stop.load(Ordering::Acquire) {
            break Ok(());
        }
        if shared.pods.generation() != pods_generation {
            (pods_generation, pods) = shared.pods.current();
        }
        let role = role.get();
        let oldest = batches.iter().filter_map(|batch| batch.opened_at).min();
        let wait = match oldest {
            Some(opened) => limits
                .timeout
                .saturating_sub(opened.elapsed())
                .max(Duration::from_millis(1)),
            None => Duration::from_millis(100),
        }
        .min(Duration::from_millis(100));
        let polled = source.poll(wait, &mut |frame| {
            shared.accounting.captured_packets.inc();
            shared.accounting.captured_bytes.inc_by(u64::from(frame.original_len));
            // Another capture point keeps this packet (here or on another node); with one
            // interface captured nothing can be a copy, and nothing is hashed.
            if !points::keeps(role, frame.outgoing, frame.data, &pods)
                || shared.accounting.interfaces.get() > 1
                    && shared
                        .dedup
                        .is_copy(frame.data, frame.original_len, frame.ts_ns, interface_key)
            {
                shared.accounting.deduplicated.inc();
                return;
            }
            // Numbered after deduplication: the stored packets' sequence has no gaps of copies.
            let seq = shared.next_packet_seq.fetch_add(1, Ordering::Relaxed);
            let batch = &mut batches[usize::from(shard::of(frame.data, shards))];
            batch.push(seq, frame.ts_ns, frame.original_len, frame.data);
            if batch.builder.len() >= limits.packets {
                batch.seal(&shared, &outbox);
            }
        });
        if let Err(error) = polled {
            break Err(error);
        }
        for batch in &mut batches {
            if batch.opened_at.is_some_and(|opened| opened.elapsed() >= limits.timeout) {
                batch.seal(&shared, &outbox);
            }
        }
        if shared.filter.generation() != applied {
            let (generation, filter) = shared.filter.current();
            match source.set_filter(&filter) {
                Ok(()) => {
                    shared.accounting.filter_swaps.inc();
                    if let Some(targets) = filter.targets {
                        shared.accounting.targets.set(targets as i64);
                    }
                    tracing::info!(%interface_name, instructions = filter.instructions.len(), "kernel filter swapped");
                }
                // The old filter stays; the next change tries again.
                Err(error) => tracing::warn!(%error, "cannot swap the kernel filter"),
            }
            applied = generation;
        }
        if stats_read_at.elapsed() >= Duration::from_secs(1) {
            stats_read_at = Instant::now();
            kernel_drops = add_kernel_drops(&mut *source, &shared, kernel_drops);
        }
    };
    add_kernel_drops(&mut *source, &shared, kernel_drops);
    for batch in &mut batches {
        batch.seal(&shared, &outbox);
    }
    result
}

fn add_kernel_drops(source: &mut dyn CaptureSource, shared: &Shared, counted: u64) -> u64 {
    match source.kernel_stats() {
        Ok(stats) => {
            shared
                .accounting
                .kernel_drops
                .inc_by(stats.drops.saturating_sub(counted));
            stats.drops.max(counted)
        }
        Err(error) => {
            tracing::warn!(%error, "cannot read kernel drop counters");
            counted
        }
    }
}

struct OpenBatch {
    builder: BatchBuilder,
    interface: String,
    shard: u16,
    opened_at: Option<Instant>,
}

impl OpenBatch {
    fn push(&mut self, seq: u64, ts_ns: u64, original_len: u32, data: &[u8]) {
        if self.builder.is_empty() {
            self.opened_at = Some(Instant::now());
        }
        let interface = self.builder.interface_index(&self.interface);
        self.builder.push(seq, ts_ns, interface, original_len, data);
    }

    fn seal(&mut self, shared: &Shared, outbox: &Outbox) {
        if self.builder.is_empty() {
            return;
        }
        let packets = u64::from(self.builder.len());
        let seq = shared.next_batch_seq.fetch_add(1, Ordering::AcqRel);
        let body = self.builder.seal(&shared.origin, seq, 0, &shared.accounting.snapshot());
        self.opened_at = None;
        outbox.submit(OutgoingBatch {
            seq,
            shard: self.shard,
            id: shared.origin.batch_id(seq),
            packets,
            body,
        });
    }
}
