//! Packet sources: a TPACKET_V3 ring (default) or pnet's datalink, behind one trait.
//! Either way the session's filter runs in the kernel (see `filter`).

mod filter;
mod pnet_socket;
mod ring;
mod sys;

use std::time::Duration;

pub use filter::{KernelFilter, parse_targets};

use crate::config::Backend;

/// One packet as the kernel handed it over.
pub struct Frame<'a> {
    /// Capture time, nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    /// The kernel sent it out of the interface (rather than received it there).
    pub outgoing: bool,
    /// Length on the wire.
    pub original_len: u32,
    /// Captured bytes, at most the snaplen.
    pub data: &'a [u8],
}

/// The 802.1Q TPID, which the kernel reports for a tag it stripped without naming the TPID.
const ETH_P_8021Q: u16 = 0x8100;

/// The outer VLAN tag the kernel took off a frame, from the frame's metadata: libpcap's test (a
/// non-zero TCI, or the kernel's flag for a zero one), with the TPID when the kernel names it.
pub fn stripped_tag(vlan_valid: bool, tci: u16, tpid_valid: bool, tpid: u16) -> Option<(Option<u16>, u16)> {
    (vlan_valid || tci != 0).then_some(((tpid_valid || tpid != 0).then_some(tpid), tci))
}

/// `data` with the outer VLAN tag put back after the two MAC addresses, as libpcap does: on
/// receive the kernel moves the outer 802.1Q/802.1ad tag of a frame into the ring's metadata,
/// so the bytes it hands over are not the bytes on the wire. `tpid` is `None` when the kernel
/// did not say (older kernels): then it was 802.1Q.
pub fn restore_vlan_tag(data: &[u8], tpid: Option<u16>, tci: u16) -> Option<Vec<u8>> {
    const MACS: usize = 12;
    if data.len() < MACS {
        return None;
    }
    let mut frame = Vec::with_capacity(data.len() + 4);
    frame.extend_from_slice(&data[..MACS]);
    frame.extend_from_slice(&tpid.unwrap_or(ETH_P_8021Q).to_be_bytes());
    frame.extend_from_slice(&tci.to_be_bytes());
    frame.extend_from_slice(&data[MACS..]);
    Some(frame)
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

    /// Replaces the kernel filter on the open socket: the kernel swaps programs atomically, so
    /// the ring keeps running and no packet the old and the new filter both accept is lost.
    fn set_filter(&mut self, filter: &KernelFilter) -> Result<(), CaptureError>;
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

#[cfg(test)]
mod tests {
    use super::restore_vlan_tag;

    #[test]
    fn the_outer_tag_goes_back_after_the_mac_addresses() {
        let untagged = [[0xaa; 6], [0xbb; 6]]
            .concat()
            .into_iter()
            .chain([0x08, 0x00, 0x45])
            .collect::<Vec<_>>();
        let tagged = restore_vlan_tag(&untagged, Some(0x88a8), 0x00c8).unwrap();
        assert_eq!(&tagged[..12], &untagged[..12]);
        assert_eq!(&tagged[12..16], &[0x88, 0xa8, 0x00, 0xc8]);
        assert_eq!(&tagged[16..], &[0x08, 0x00, 0x45]);
        assert_eq!(
            &restore_vlan_tag(&untagged, None, 100).unwrap()[12..16],
            &[0x81, 0x00, 0x00, 0x64]
        );
        assert_eq!(
            restore_vlan_tag(&[0; 11], None, 1),
            None,
            "too short to hold MAC addresses"
        );
    }
}
