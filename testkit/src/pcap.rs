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

/// The frames of a classic little-endian pcap file (as tcpdump writes it), as (timestamp in ns,
/// captured bytes). Microsecond and nanosecond files are both read.
pub fn read(path: &std::path::Path) -> std::io::Result<Vec<(u64, Vec<u8>)>> {
    let bytes = std::fs::read(path)?;
    let invalid = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let word = |at: usize| -> std::io::Result<u32> {
        let four = bytes.get(at..at + 4).ok_or_else(|| invalid("cut short"))?;
        Ok(u32::from_le_bytes(four.try_into().expect("four bytes")))
    };
    let fraction_ns = match word(0)? {
        0xa1b2_c3d4 => 1_000,
        0xa1b2_3c4d => 1,
        _ => return Err(invalid("not a little-endian pcap file")),
    };
    let mut frames = Vec::new();
    let mut at = 24;
    while at < bytes.len() {
        let (seconds, fraction, captured) = (word(at)?, word(at + 4)?, word(at + 8)? as usize);
        let data = bytes
            .get(at + 16..at + 16 + captured)
            .ok_or_else(|| invalid("a record is cut short"))?;
        frames.push((
            u64::from(seconds) * 1_000_000_000 + u64::from(fraction) * fraction_ns,
            data.to_vec(),
        ));
        at += 16 + captured;
    }
    Ok(frames)
}
