//! Packet sources: a TPACKET_V3 ring (default) or pnet's datalink, behind one trait.
//! Either way the session's filter runs in the kernel (see `filter`).

mod filter;
mod pnet_socket;
mod ring;
mod sys;

use std::time::Duration;

pub use filter::KernelFilter;

use crate::config::Backend;

/// One packet as the kernel handed it over.
pub struct Frame<'a> {
    /// Capture time, nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    /// Length on the wire.
    pub original_len: u32,
    /// Captured bytes, at most the snaplen.
    pub data: &'a [u8],
}

/// Cumulative kernel counters of one capture socket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelStats {
    /// Packets the kernel could not queue for us (ring or socket buffer full).
    pub drops: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("cannot open a capture on {interface}: {source}")]
    Open {
        interface: String,
        #[source]
        source: std::io::Error,
    },
    #[error("capture on {interface} failed: {source}")]
    Read {
        interface: String,
        #[source]
        source: std::io::Error,
    },
}

/// A capture on one interface.
pub trait CaptureSource: Send {
    /// Waits up to `timeout` for packets and hands each to `sink`. Returns how many it handed over.
    fn poll(&mut self, timeout: Duration, sink: &mut dyn FnMut(Frame<'_>)) -> Result<usize, CaptureError>;

    /// Kernel counters since the capture was opened.
    fn kernel_stats(&mut self) -> Result<KernelStats, CaptureError>;
}

/// Settings shared by every capture of this sniffer.
#[derive(Clone, Debug)]
pub struct CaptureSettings {
    pub backend: Backend,
    pub snaplen: u32,
    pub filter: KernelFilter,
    pub ring_block_bytes: usize,
    pub ring_blocks: usize,
}

pub fn open(interface: &str, settings: &CaptureSettings) -> Result<Box<dyn CaptureSource>, CaptureError> {
    match settings.backend {
        Backend::Ring => Ok(Box::new(ring::RingCapture::open(interface, settings)?)),
        Backend::Pnet => Ok(Box::new(pnet_socket::PnetCapture::open(interface, settings)?)),
    }
}
