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

/// Replaces the socket's classic BPF filter (`SO_ATTACH_FILTER` swaps programs atomically), or
/// removes it for an empty program.
pub fn set_filter(fd: RawFd, instructions: &[(u16, u8, u8, u32)]) -> io::Result<()> {
    if instructions.is_empty() {
        // SAFETY: SO_DETACH_FILTER reads no option value; the null pointer with length 0 says so.
        let rc = unsafe { libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_DETACH_FILTER, std::ptr::null(), 0) };
        // ENOENT: there was no filter to remove, which is what was wanted.
        if rc == -1 && io::Error::last_os_error().raw_os_error() != Some(libc::ENOENT) {
            return Err(io::Error::last_os_error());
        }
        return Ok(());
    }
    let mut program: Vec<libc::sock_filter> = instructions
        .iter()
        .map(|&(code, jt, jf, k)| libc::sock_filter { code, jt, jf, k })
        .collect();
    let fprog = libc::sock_fprog {
        len: u16::try_from(program.len()).map_err(|_| io::Error::other("filter longer than 65535 instructions"))?,
        filter: program.as_mut_ptr(),
    };
    // SAFETY: `fprog` points at `program`, which outlives the call; the kernel copies the program.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&fprog as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
