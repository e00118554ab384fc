//! The portable fallback: pnet's datalink channel, on an AF_PACKET socket we open ourselves so
//! that the kernel filter, a large receive buffer and the drop counters apply to it too.
//! pnet reads one packet per poll + recvfrom and has no kernel timestamps: the time is taken on
//! receipt. recvfrom also drops the packet's metadata, where the kernel put the outer VLAN tag it
//! took off the frame, so each packet's metadata is first peeked at (`PACKET_AUXDATA`, one more
//! system call per packet) and the tag put back, as the ring backend does.

use std::os::fd::{AsRawFd, IntoRawFd, RawFd};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pnet::datalink::{self, Channel, DataLinkReceiver};
use socket2::{Domain, Protocol, SockFilter, Socket, Type};

use super::{CaptureError, CaptureSettings, CaptureSource, Frame, KernelFilter, KernelStats, sys};

/// Receive buffer requested for the socket; the kernel caps it at `net.core.rmem_max`.
const RECEIVE_BUFFER_BYTES: usize = 32 << 20;

pub struct PnetCapture {
    interface: String,
    receiver: Box<dyn DataLinkReceiver>,
    fd: RawFd,
    snaplen: usize,
    drops: u64,
}

impl PnetCapture {
    pub fn open(interface: &str, settings: &CaptureSettings) -> Result<Self, CaptureError> {
        let open_error = |source: std::io::Error| CaptureError::Open {
            interface: interface.to_owned(),
            source,
        };
        let network_interface = datalink::interfaces()
            .into_iter()
            .find(|candidate| candidate.name == interface)
            .ok_or_else(|| open_error(std::io::Error::new(std::io::ErrorKind::NotFound, "no such interface")))?;

        // Protocol 0: the socket receives nothing until pnet binds it to the interface (with ETH_P_ALL),
        // so no other interface's packets slip in before the bind.
        let socket = Socket::new(Domain::PACKET, Type::RAW, Some(Protocol::from(0))).map_err(open_error)?;
        socket.set_recv_buffer_size(RECEIVE_BUFFER_BYTES).map_err(open_error)?;
        sys::enable_auxdata(socket.as_raw_fd()).map_err(open_error)?;
        if !settings.filter.is_empty() {
            let program: Vec<SockFilter> = settings
                .filter
                .instructions
                .iter()
                .map(|&(code, jt, jf, k)| SockFilter::new(code, jt, jf, k))
                .collect();
            socket.attach_filter(&program).map_err(open_error)?;
        }
        let fd = socket.into_raw_fd();
        let config = datalink::Config {
            // Whole packets: the snaplen is applied here so that the original length stays known.
            read_buffer_size: 65_536,
            read_timeout: Some(Duration::from_millis(100)),
            promiscuous: true,
            socket_fd: Some(fd),
            ..Default::default()
        };
        // pnet binds the socket to the interface and owns (and closes) it from here on.
        let receiver = match datalink::channel(&network_interface, config).map_err(open_error)? {
            Channel::Ethernet(_, receiver) => receiver,
            _ => {
                return Err(open_error(std::io::Error::other(
                    "pnet returned a non-Ethernet channel",
                )));
            }
        };
        Ok(Self {
            interface: interface.to_owned(),
            receiver,
            fd,
            snaplen: settings.snaplen as usize,
            drops: 0,
        })
    }
}

impl CaptureSource for PnetCapture {
    fn poll(&mut self, timeout: Duration, sink: &mut dyn FnMut(Frame<'_>)) -> Result<usize, CaptureError> {
        let read_error = |source: std::io::Error| CaptureError::Read {
            interface: self.interface.clone(),
            source,
        };
        let deadline = Instant::now() + timeout;
        let mut count = 0;
        // Drain what is queued, up to a block's worth, so one wake-up serves many packets.
        while count < 4096 {
            // The metadata of the packet pnet reads next: this thread is the socket's only reader.
            let Some(auxdata) = sys::peek_auxdata(self.fd).map_err(read_error)? else {
                let remaining = deadline.saturating_duration_since(Instant::now());
                if count > 0 || remaining.is_zero() || !sys::wait_readable(self.fd, remaining).map_err(read_error)? {
                    break;
                }
                continue;
            };
            match self.receiver.next() {
                Ok(packet) => {
                    let ts_ns = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map(|d| d.as_nanos() as u64)
                        .unwrap_or(0);
                    let tagged = super::stripped_tag(
                        auxdata.status & libc::TP_STATUS_VLAN_VALID != 0,
                        auxdata.vlan_tci,
                        auxdata.status & libc::TP_STATUS_VLAN_TPID_VALID != 0,
                        auxdata.vlan_tpid,
                    )
                    .and_then(|(tpid, tci)| super::restore_vlan_tag(packet, tpid, tci));
                    let data = tagged.as_deref().unwrap_or(packet);
                    sink(Frame {
                        ts_ns,
                        outgoing: auxdata.outgoing,
                        original_len: data.len() as u32,
                        data: &data[..data.len().min(self.snaplen)],
                    });
                    count += 1;
                }
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => break,
                Err(source) => return Err(read_error(source)),
            }
        }
        Ok(count)
    }

    fn kernel_stats(&mut self) -> Result<KernelStats, CaptureError> {
        let (_, drops) = sys::packet_statistics(self.fd).map_err(|source| CaptureError::Read {
            interface: self.interface.clone(),
            source,
        })?;
        self.drops += u64::from(drops);
        Ok(KernelStats { drops: self.drops })
    }

    fn set_filter(&mut self, filter: &KernelFilter) -> Result<(), CaptureError> {
        sys::set_filter(self.fd, &filter.instructions).map_err(|source| CaptureError::Read {
            interface: self.interface.clone(),
            source,
        })
    }
}
