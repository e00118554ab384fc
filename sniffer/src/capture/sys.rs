//! The raw socket calls capture needs that no safe wrapper offers. The only unsafe code of the sniffer.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::RawFd;

/// `getsockopt(PACKET_STATISTICS)`: packets and drops since the last call (the kernel resets them).
pub fn packet_statistics(fd: RawFd) -> io::Result<(u32, u32)> {
    let mut stats = libc::tpacket_stats {
        tp_packets: 0,
        tp_drops: 0,
    };
    let mut len = std::mem::size_of::<libc::tpacket_stats>() as libc::socklen_t;
    // SAFETY: `stats` and `len` are valid for writes of the sizes given, and the kernel writes at most `len` bytes.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            (&mut stats as *mut libc::tpacket_stats).cast(),
            &mut len,
        )
    };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok((stats.tp_packets, stats.tp_drops))
}
