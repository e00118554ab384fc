//! A stored segment: one batch's packet records, laid out as in the batch body, each possibly cut
//! to fewer captured bytes (a session that does not keep payload keeps the headers only). The
//! parser writes one per batch; the API reads them back for a packet's bytes and the pcap export.

use crate::{DecodeError, PacketRecord, Reader, push_record};

/// Builds a segment from a batch's records.
#[derive(Debug, Default)]
pub struct SegmentBuilder {
    bytes: Vec<u8>,
    packets: u32,
}

impl SegmentBuilder {
    pub fn with_capacity(bytes: usize) -> Self {
        Self {
            bytes: Vec::with_capacity(bytes),
            packets: 0,
        }
    }

    /// Appends `record` keeping its first `keep` captured bytes.
    pub fn push(&mut self, record: &PacketRecord<'_>, keep: usize) {
        let data = &record.data[..keep.min(record.data.len())];
        push_record(
            &mut self.bytes,
            record.seq,
            record.ts_ns,
            record.interface,
            record.original_len,
            data,
        );
        self.packets += 1;
    }

    pub fn len(&self) -> u32 {
        self.packets
    }

    pub fn is_empty(&self) -> bool {
        self.packets == 0
    }

    pub fn finish(self) -> Vec<u8> {
        self.bytes
    }
}

/// The records of a stored segment, in order. Stops at the first record that does not decode
/// (a segment is written by the parser, so that only happens to a damaged one).
pub fn records(bytes: &[u8]) -> impl Iterator<Item = Result<PacketRecord<'_>, DecodeError>> {
    let mut reader = Reader(bytes);
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed || reader.0.is_empty() {
            return None;
        }
        let record = reader.packet();
        failed = record.is_err();
        Some(record)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_cut_to_what_is_kept() {
        let frames: [&[u8]; 3] = [b"first frame", b"second", b""];
        let mut builder = SegmentBuilder::default();
        for (i, data) in frames.iter().enumerate() {
            let record = PacketRecord {
                seq: 10 + i as u64,
                ts_ns: 1_000 * i as u64,
                interface: i as u16,
                original_len: 1500,
                data,
            };
            builder.push(&record, 6);
        }
        assert_eq!(builder.len(), 3);
        let bytes = builder.finish();
        let read: Vec<PacketRecord<'_>> = records(&bytes).collect::<Result<_, _>>().unwrap();
        assert_eq!(read.len(), 3);
        assert_eq!(read[0].data, b"first ");
        assert_eq!(read[1].data, b"second");
        assert_eq!(read[2].data, b"");
        assert_eq!(
            (read[2].seq, read[2].ts_ns, read[2].interface, read[2].original_len),
            (12, 2_000, 2, 1500)
        );
        assert!(records(&bytes[..bytes.len() - 3]).any(|r| r.is_err()));
    }
}
