//! The default backend: a TPACKET_V3 memory-mapped ring (netring). The kernel fills blocks of
//! packets with its own timestamps; we read a whole block per wake-up.

use std::time::Duration;

use netring::{BpfFilter, BpfInsn, Capture};

use super::{CaptureError, CaptureSettings, CaptureSource, Frame, KernelFilter, KernelStats};

pub struct RingCapture {
    interface: String,
    capture: Capture,
    snaplen: usize,
    drops: u64,
}

impl RingCapture {
    pub fn open(interface: &str, settings: &CaptureSettings) -> Result<Self, CaptureError> {
        let open_error = |e: netring::Error| CaptureError::Open {
            interface: interface.to_owned(),
            source: std::io::Error::other(format!("{e}: {}", source_chain(&e))),
        };
        let builder = Capture::builder()
            .interface(interface)
            .snap_len(settings.snaplen)
            .block_size(settings.ring_block_bytes)
            .block_count(settings.ring_blocks)
            // A block is handed over when full or after this long, bounding capture-to-batch latency.
            .block_timeout_ms(50)
            .fill_rxhash(false)
            .promiscuous(true)
            // Both directions: a node's own traffic is as interesting as what it receives.
            .ignore_outgoing(false);
        // netring opens the socket for every interface and binds it to ours only afterwards, so the
        // ring can start with other interfaces' packets. Open it rejecting everything, discard what
        // got in before that, and only then let the session's packets through.
        let reject_all = BpfFilter::new(vec![BpfInsn {
            code: 0x06,
            jt: 0,
            jf: 0,
            k: 0,
        }])
        .expect("one instruction");
        let mut capture = builder.bpf_filter(reject_all).build().map_err(open_error)?;
        while capture
            .next_batch_blocking(Duration::from_millis(150))
            .map_err(open_error)?
            .is_some()
        {}
        let _ = capture.stats();
        let mut ring = Self {
            interface: interface.to_owned(),
            capture,
            snaplen: settings.snaplen as usize,
            drops: 0,
        };
        ring.set_filter(&settings.filter).map_err(|error| match error {
            CaptureError::Read { interface, source } | CaptureError::Open { interface, source } => {
                CaptureError::Open { interface, source }
            }
        })?;
        Ok(ring)
    }
}

fn source_chain(error: &dyn std::error::Error) -> String {
    let mut text = String::new();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl CaptureSource for RingCapture {
    fn poll(&mut self, timeout: Duration, sink: &mut dyn FnMut(Frame<'_>)) -> Result<usize, CaptureError> {
        let snaplen = self.snaplen;
        let batch = self
            .capture
            .next_batch_blocking(timeout)
            .map_err(|e| CaptureError::Read {
                interface: self.interface.clone(),
                source: std::io::Error::other(format!("{e}: {}", source_chain(&e))),
            })?;
        let Some(batch) = batch else { return Ok(0) };
        let mut count = 0;
        for packet in batch.iter() {
            let timestamp = packet.timestamp();
            let mut data = packet.data();
            let mut original_len = packet.original_len() as u32;
            let status = packet.status();
            let tagged = super::stripped_tag(
                status.vlan_valid,
                packet.vlan_tci(),
                status.vlan_tpid_valid,
                packet.vlan_tpid(),
            )
            .and_then(|(tpid, tci)| super::restore_vlan_tag(data, tpid, tci));
            if let Some(tagged) = &tagged {
                data = tagged;
                original_len += 4;
            }
            sink(Frame {
                ts_ns: u64::from(timestamp.sec) * 1_000_000_000 + u64::from(timestamp.nsec),
                outgoing: packet.direction() == netring::PacketDirection::Outgoing,
                original_len,
                data: &data[..data.len().min(snaplen)],
            });
            count += 1;
        }
        Ok(count)
    }

    fn set_filter(&mut self, filter: &KernelFilter) -> Result<(), CaptureError> {
        let error = |source: String| CaptureError::Read {
            interface: self.interface.clone(),
            source: std::io::Error::other(source),
        };
        if filter.is_empty() {
            return self.capture.detach_filter().map_err(|e| error(e.to_string()));
        }
        let program = filter
            .instructions
            .iter()
            .map(|&(code, jt, jf, k)| BpfInsn { code, jt, jf, k })
            .collect();
        let program = BpfFilter::new(program).map_err(|e| error(e.to_string()))?;
        self.capture.set_filter(&program).map_err(|e| error(e.to_string()))
    }

    fn kernel_stats(&mut self) -> Result<KernelStats, CaptureError> {
        // netring's counters are the kernel's u32 deltas (reading resets them); sum them in u64.
        let delta = self.capture.stats().map_err(|e| CaptureError::Read {
            interface: self.interface.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
        self.drops += u64::from(delta.drops);
        Ok(KernelStats { drops: self.drops })
    }
}
