//! Writes classic pcap files (Ethernet link type), for feeding the same packets to tshark and to Trawl.

use std::io::Write;

/// `frames` as (timestamp in ns since the Unix epoch, bytes).
pub fn write(path: &std::path::Path, frames: &[(u64, Vec<u8>)]) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    write_header(&mut out)?;
    for (ts_ns, frame) in frames {
        write_record(&mut out, *ts_ns, frame)?;
    }
    out.flush()
}

pub fn write_header(out: &mut impl Write) -> std::io::Result<()> {
    out.write_all(&0xa1b2_c3d4u32.to_le_bytes())?; // microsecond timestamps
    out.write_all(&2u16.to_le_bytes())?;
    out.write_all(&4u16.to_le_bytes())?;
    out.write_all(&0i32.to_le_bytes())?;
    out.write_all(&0u32.to_le_bytes())?;
    out.write_all(&65_535u32.to_le_bytes())?;
    out.write_all(&1u32.to_le_bytes()) // LINKTYPE_ETHERNET
}

pub fn write_record(out: &mut impl Write, ts_ns: u64, frame: &[u8]) -> std::io::Result<()> {
    out.write_all(&((ts_ns / 1_000_000_000) as u32).to_le_bytes())?;
    out.write_all(&((ts_ns % 1_000_000_000 / 1_000) as u32).to_le_bytes())?;
    out.write_all(&(frame.len() as u32).to_le_bytes())?;
    out.write_all(&(frame.len() as u32).to_le_bytes())?;
    out.write_all(frame)
}
