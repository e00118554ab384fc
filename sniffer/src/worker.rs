//! One capture thread per interface: reads the kernel's packets, appends each to the open batch of
//! its flow's shard, and seals a batch when it holds `batch_packets` packets or its first packet is
//! `batch_timeout` old.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wire::{BatchBuilder, Origin};

use crate::accounting::Accounting;
use crate::capture::{CaptureError, CaptureSource, KernelFilter};
use crate::dedup::{Capture, Deduplicator};
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
    let mut batches = Batches {
        open: (0..shards)
            .map(|shard| OpenBatch {
                builder: BatchBuilder::with_capacity(capacity),
                interface: interface.clone(),
                shard,
                opened_at: None,
            })
            .collect(),
        interface_key,
        limits,
    };
    let mut held = Held::default();
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
        // Translated copies are looked for only where the pods' ends are known.
        let capture = match role {
            Role::PodEnd if !pods.is_empty() => Capture::PodEnd,
            Role::Node if !pods.is_empty() => Capture::Node,
            _ => Capture::Plain,
        };
        let oldest = batches.open.iter().filter_map(|batch| batch.opened_at).min();
        let wait = match oldest {
            Some(opened) => limits
                .timeout
                .saturating_sub(opened.elapsed())
                .max(Duration::from_millis(1)),
            None => Duration::from_millis(100),
        }
        .min(held.wait())
        .min(Duration::from_millis(100));
        let polled = source.poll(wait, &mut |frame| {
            shared.accounting.captured_packets.inc();
            shared.accounting.captured_bytes.inc_by(u64::from(frame.original_len));
            // Another capture point keeps this packet (here or on another node).
            if !points::keeps(role, frame.outgoing, frame.data, &pods) {
                shared.accounting.deduplicated.inc();
                return;
            }
            if capture == Capture::Node {
                held.push(frame.ts_ns, frame.original_len, frame.data);
                return;
            }
            batches.keep(&shared, &outbox, capture, frame.ts_ns, frame.original_len, frame.data);
        });
        for (ts_ns, original_len, data) in held.release(false) {
            batches.keep(&shared, &outbox, Capture::Node, ts_ns, original_len, &data);
        }
        if let Err(error) = polled {
            break Err(error);
        }
        for batch in &mut batches.open {
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
    for (ts_ns, original_len, data) in held.release(true) {
        batches.keep(&shared, &outbox, Capture::Node, ts_ns, original_len, &data);
    }
    for batch in &mut batches.open {
        batch.seal(&shared, &outbox);
    }
    result
}

/// How long a packet of the node's own interfaces waits before it is deduplicated: long enough
/// for the pod ends' threads to have handed over the untranslated copy (a ring block is handed
/// over at the latest 50 ms after its first packet), so that the pod's copy is the one kept.
pub const HOLD: Duration = Duration::from_millis(200);
/// Bytes held at most; past it the oldest go on early (at worst a translated copy is kept too).
const HOLD_BYTES: usize = 32 << 20;

/// The node's own interfaces' packets waiting for [`HOLD`].
#[derive(Default)]
struct Held {
    frames: std::collections::VecDeque<(u64, u32, Vec<u8>)>,
    bytes: usize,
}

impl Held {
    fn push(&mut self, ts_ns: u64, original_len: u32, data: &[u8]) {
        self.bytes += data.len();
        self.frames.push_back((ts_ns, original_len, data.to_vec()));
    }

    /// How long until the oldest may go.
    fn wait(&self) -> Duration {
        match self.frames.front() {
            Some(&(ts_ns, _, _)) => Duration::from_nanos((ts_ns + HOLD.as_nanos() as u64).saturating_sub(now_ns()))
                .max(Duration::from_millis(1)),
            None => Duration::MAX,
        }
    }

    /// The frames whose time has come (all of them when `everything`), oldest first.
    fn release(&mut self, everything: bool) -> Vec<(u64, u32, Vec<u8>)> {
        let due = now_ns().saturating_sub(HOLD.as_nanos() as u64);
        let mut released = Vec::new();
        while let Some(&(ts_ns, _, ref data)) = self.frames.front() {
            if !everything && ts_ns > due && self.bytes <= HOLD_BYTES {
                break;
            }
            self.bytes -= data.len();
            released.extend(self.frames.pop_front());
        }
        released
    }
}

/// Wall-clock time, the clock of the kernel's packet timestamps.
fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos() as u64)
}

/// The open batches of one capture thread, one per shard.
struct Batches {
    open: Vec<OpenBatch>,
    interface_key: u64,
    limits: BatchLimits,
}

impl Batches {
    /// Deduplicates a packet the capture point keeps, and appends it to its shard's batch.
    fn keep(&mut self, shared: &Shared, outbox: &Outbox, capture: Capture, ts_ns: u64, original_len: u32, data: &[u8]) {
        // With one interface captured nothing can be a copy, and nothing is hashed.
        if shared.accounting.interfaces.get() > 1
            && shared
                .dedup
                .is_copy(data, original_len, ts_ns, self.interface_key, capture)
        {
            shared.accounting.deduplicated.inc();
            return;
        }
        // Numbered after deduplication: the stored packets' sequence has no gaps of copies.
        let seq = shared.next_packet_seq.fetch_add(1, Ordering::Relaxed);
        let shards = self.limits.shards.max(1);
        let batch = &mut self.open[usize::from(shard::of(data, shards))];
        batch.push(seq, ts_ns, original_len, data);
        if batch.builder.len() >= self.limits.packets {
            batch.seal(shared, outbox);
        }
    }
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
