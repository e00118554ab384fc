//! Sealed batches waiting for the publisher, bounded in bytes: capture never blocks on the
//! broker, and a batch that does not fit is dropped and counted (`buffer_full`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::mpsc;

use crate::accounting::{Accounting, DropReason};

/// A batch ready to publish.
#[derive(Debug)]
pub struct OutgoingBatch {
    pub seq: u64,
    /// The shard whose queue it goes to.
    pub shard: u16,
    pub id: String,
    pub packets: u64,
    pub body: Vec<u8>,
}

#[derive(Clone)]
pub struct Outbox {
    sender: mpsc::UnboundedSender<OutgoingBatch>,
    buffered: Arc<AtomicUsize>,
    limit: usize,
    accounting: Arc<Accounting>,
}

pub struct OutboxReceiver {
    receiver: mpsc::UnboundedReceiver<OutgoingBatch>,
    buffered: Arc<AtomicUsize>,
}

pub fn outbox(limit: usize, accounting: Arc<Accounting>) -> (Outbox, OutboxReceiver) {
    let (sender, receiver) = mpsc::unbounded_channel();
    let buffered = Arc::new(AtomicUsize::new(0));
    (
        Outbox {
            sender,
            buffered: buffered.clone(),
            limit,
            accounting,
        },
        OutboxReceiver { receiver, buffered },
    )
}

impl Outbox {
    pub fn submit(&self, batch: OutgoingBatch) {
        let size = batch.body.len();
        let fits = self
            .buffered
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used + size <= self.limit).then_some(used + size)
            })
            .is_ok();
        if !fits {
            tracing::warn!(batch = %batch.id, packets = batch.packets, "buffer full: batch dropped");
            self.accounting.drop_packets(DropReason::BufferFull, batch.packets);
            return;
        }
        if let Err(mpsc::error::SendError(batch)) = self.sender.send(batch) {
            // The publisher is gone (only after its shutdown deadline): the batch can no longer be sent.
            self.buffered.fetch_sub(size, Ordering::AcqRel);
            self.accounting.drop_packets(DropReason::Shutdown, batch.packets);
        }
    }
}

impl OutboxReceiver {
    pub async fn recv(&mut self) -> Option<OutgoingBatch> {
        self.receiver.recv().await
    }

    pub fn try_recv(&mut self) -> Result<OutgoingBatch, mpsc::error::TryRecvError> {
        self.receiver.try_recv()
    }

    /// A batch left the buffer (confirmed or dropped).
    pub fn release(&self, batch: &OutgoingBatch) {
        self.buffered.fetch_sub(batch.body.len(), Ordering::AcqRel);
    }
}
