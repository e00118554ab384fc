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

/// Has the kernel report each packet's metadata beside its bytes (`PACKET_AUXDATA`), among it the
/// VLAN tag it took off the frame.
pub fn enable_auxdata(fd: RawFd) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: `on` is valid for reads of the size given.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_PACKET,
            libc::PACKET_AUXDATA,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A packet's metadata as `PACKET_AUXDATA` reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Auxdata {
    pub status: u32,
    pub vlan_tci: u16,
    pub vlan_tpid: u16,
    /// The kernel sent the packet out of the interface (`sll_pkttype` is `PACKET_OUTGOING`).
    pub outgoing: bool,
}

/// The metadata of the packet at the head of the socket's queue, read without taking the packet
/// (`MSG_PEEK`, no bytes copied); None when nothing is queued. Needs [`enable_auxdata`].
pub fn peek_auxdata(fd: RawFd) -> io::Result<Option<Auxdata>> {
    // u64s, for the alignment control message headers need.
    let mut control = [0u64; 8];
    // SAFETY: an all-zero sockaddr_ll and msghdr are valid (no iovec, no control buffer yet).
    let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
    message.msg_name = (&raw mut address).cast();
    message.msg_namelen = std::mem::size_of_val(&address) as _;
    message.msg_control = control.as_mut_ptr().cast();
    message.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: `message` points at `address` and `control`, valid for writes of `msg_namelen` and
    // `msg_controllen` bytes; with no iovec the kernel copies none of the packet's bytes.
    let rc = unsafe { libc::recvmsg(fd, &mut message, libc::MSG_PEEK | libc::MSG_DONTWAIT | libc::MSG_TRUNC) };
    if rc == -1 {
        let error = io::Error::last_os_error();
        return match error.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(None),
            _ => Err(error),
        };
    }
    let mut auxdata = Auxdata {
        outgoing: address.sll_pkttype == libc::PACKET_OUTGOING,
        ..Auxdata::default()
    };
    // SAFETY: the kernel wrote control messages into `control` and set `msg_controllen` to their
    // length; CMSG_FIRSTHDR/CMSG_NXTHDR stay within it and return null past the last one, and the
    // auxdata payload is read unaligned from inside it.
    unsafe {
        let mut header = libc::CMSG_FIRSTHDR(&message);
        while !header.is_null() {
            if (*header).cmsg_level == libc::SOL_PACKET && (*header).cmsg_type == libc::PACKET_AUXDATA {
                let data: libc::tpacket_auxdata = std::ptr::read_unaligned(libc::CMSG_DATA(header).cast());
                auxdata = Auxdata {
                    status: data.tp_status,
                    vlan_tci: data.tp_vlan_tci,
                    vlan_tpid: data.tp_vlan_tpid,
                    ..auxdata
                };
            }
            header = libc::CMSG_NXTHDR(&message, header);
        }
    }
    Ok(Some(auxdata))
}

/// Waits until a packet is queued on `fd` or `timeout` passes (false then).
pub fn wait_readable(fd: RawFd, timeout: std::time::Duration) -> io::Result<bool> {
    let mut pollfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let millis = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: one pollfd, valid for reads and writes.
    let rc = unsafe { libc::poll(&mut pollfd, 1, millis) };
    if rc == -1 {
        let error = io::Error::last_os_error();
        return if error.kind() == io::ErrorKind::Interrupted {
            Ok(false)
        } else {
            Err(error)
        };
    }
    Ok(rc > 0)
}
