//! The packet batch format between `trawl-sniffer` and `trawl-parser`, version 1.
//! The layout is documented in `wire/FORMAT.md`; this crate is its only implementation.
//!
//! Hand-written rather than serde-based: the sniffer appends each packet straight from the
//! capture ring into the message buffer (one copy), and the parser borrows packet bytes from
//! the received message (no copy), which a generic serializer would not give us.

use thiserror::Error;

pub mod segment;

pub const MAGIC: &[u8; 4] = b"TRWL";
pub const VERSION: u16 = 1;
/// AMQP `content_type` of a batch message.
pub const CONTENT_TYPE: &str = "application/vnd.trawl.batch";
/// AMQP header holding the schema version.
pub const SCHEMA_HEADER: &str = "trawl-schema";
/// Set on the last batch a sniffer process sends.
pub const FLAG_FINAL: u16 = 1;

/// Per-packet overhead in the body: seq, ts_ns, interface, original_len, captured_len.
pub const PACKET_HEADER_LEN: usize = 8 + 8 + 2 + 4 + 4;

/// Cumulative counters of one sniffer process.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub captured: u64,
    pub kernel_drops: u64,
    /// Packets dropped after capture, by reason (`queue_full`, `buffer_full`, ...).
    pub drops: Vec<(String, u64)>,
}

impl Counters {
    pub fn dropped(&self) -> u64 {
        self.drops.iter().map(|(_, n)| n).sum()
    }
}

/// Who sent a batch and where it sits in that sender's sequence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub boot_id: [u8; 16],
    pub session: String,
    pub node: String,
}

impl Origin {
    /// The unique id of batch `batch_seq` of this origin, as used for AMQP `message_id`.
    pub fn batch_id(&self, batch_seq: u64) -> String {
        batch_id(&self.boot_id, batch_seq)
    }
}

/// `<boot id hex>-<batch_seq hex>`.
pub fn batch_id(boot_id: &[u8; 16], batch_seq: u64) -> String {
    let mut id = String::with_capacity(32 + 1 + 16);
    for byte in boot_id {
        id.push_str(&format!("{byte:02x}"));
    }
    id.push_str(&format!("-{batch_seq:x}"));
    id
}

/// Accumulates packets of one batch; `seal` turns them into a message body.
#[derive(Debug, Default)]
pub struct BatchBuilder {
    body: Vec<u8>,
    packets: u32,
    interfaces: Vec<String>,
}

impl BatchBuilder {
    pub fn with_capacity(bytes: usize) -> Self {
        Self {
            body: Vec::with_capacity(bytes),
            ..Self::default()
        }
    }

    pub fn len(&self) -> u32 {
        self.packets
    }

    pub fn is_empty(&self) -> bool {
        self.packets == 0
    }

    /// Bytes the packets take so far.
    pub fn body_len(&self) -> usize {
        self.body.len()
    }

    /// Index of `name` in the interface table, adding it if new.
    pub fn interface_index(&mut self, name: &str) -> u16 {
        match self.interfaces.iter().position(|known| known == name) {
            Some(index) => index as u16,
            None => {
                self.interfaces.push(name.to_owned());
                (self.interfaces.len() - 1) as u16
            }
        }
    }

    /// Appends one packet; `data` is already cut to the snaplen.
    pub fn push(&mut self, seq: u64, ts_ns: u64, interface: u16, original_len: u32, data: &[u8]) {
        push_record(&mut self.body, seq, ts_ns, interface, original_len, data);
        self.packets += 1;
    }

    /// The complete message body, with the counters as they are now. Leaves the builder empty.
    pub fn seal(&mut self, origin: &Origin, batch_seq: u64, flags: u16, counters: &Counters) -> Vec<u8> {
        let mut out = Vec::with_capacity(128 + self.body.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&flags.to_le_bytes());
        out.extend_from_slice(&origin.boot_id);
        out.extend_from_slice(&batch_seq.to_le_bytes());
        put_str(&mut out, &origin.session);
        put_str(&mut out, &origin.node);
        out.extend_from_slice(&counters.captured.to_le_bytes());
        out.extend_from_slice(&counters.kernel_drops.to_le_bytes());
        out.push(counters.drops.len().min(u8::MAX as usize) as u8);
        for (reason, packets) in counters.drops.iter().take(u8::MAX as usize) {
            put_str(&mut out, reason);
            out.extend_from_slice(&packets.to_le_bytes());
        }
        out.extend_from_slice(&(self.interfaces.len() as u16).to_le_bytes());
        for name in &self.interfaces {
            put_str(&mut out, name);
        }
        out.extend_from_slice(&self.packets.to_le_bytes());
        out.extend_from_slice(&self.body);
        self.body.clear();
        self.packets = 0;
        self.interfaces.clear();
        out
    }
}

/// Appends one packet record (the layout of a batch's packets and of a stored segment).
fn push_record(out: &mut Vec<u8>, seq: u64, ts_ns: u64, interface: u16, original_len: u32, data: &[u8]) {
    out.reserve(PACKET_HEADER_LEN + data.len());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&ts_ns.to_le_bytes());
    out.extend_from_slice(&interface.to_le_bytes());
    out.extend_from_slice(&original_len.to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(data);
}

fn put_str(out: &mut Vec<u8>, value: &str) {
    let bytes = &value.as_bytes()[..value.len().min(u16::MAX as usize)];
    out.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// Why a message is not a batch this version understands.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("not a Trawl batch (bad magic)")]
    BadMagic,
    #[error("unsupported batch version {0} (this build reads version {VERSION})")]
    UnsupportedVersion(u16),
    #[error("batch truncated while reading {0}")]
    Truncated(&'static str),
    #[error("{0} is not valid UTF-8")]
    InvalidUtf8(&'static str),
    #[error("packet {seq} refers to interface {index}, but the batch lists {count}")]
    UnknownInterface { seq: u64, index: u16, count: usize },
    #[error("{0} bytes after the last packet")]
    TrailingBytes(usize),
}

/// A decoded, fully validated batch borrowing its packet bytes from the message.
#[derive(Debug, Clone)]
pub struct Batch<'a> {
    pub flags: u16,
    pub boot_id: [u8; 16],
    pub batch_seq: u64,
    pub session: &'a str,
    pub node: &'a str,
    pub counters: Counters,
    pub interfaces: Vec<&'a str>,
    pub packet_count: u32,
    packets: &'a [u8],
}

/// One captured packet of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketRecord<'a> {
    pub seq: u64,
    pub ts_ns: u64,
    pub interface: u16,
    pub original_len: u32,
    pub data: &'a [u8],
}

impl<'a> Batch<'a> {
    /// Decodes and validates a whole message: after this, iterating packets cannot fail.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader(bytes);
        if r.take(4, "magic")? != MAGIC {
            return Err(DecodeError::BadMagic);
        }
        let version = r.u16("version")?;
        if version != VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        let flags = r.u16("flags")?;
        let boot_id: [u8; 16] = r.take(16, "boot_id")?.try_into().expect("16 bytes");
        let batch_seq = r.u64("batch_seq")?;
        let session = r.str("session")?;
        let node = r.str("node")?;
        let captured = r.u64("captured")?;
        let kernel_drops = r.u64("kernel_drops")?;
        let reasons = r.take(1, "drop_reasons")?[0];
        let mut drops = Vec::with_capacity(reasons as usize);
        for _ in 0..reasons {
            let reason = r.str("drop reason")?.to_owned();
            drops.push((reason, r.u64("drop count")?));
        }
        let interface_count = r.u16("interfaces")?;
        let interfaces = (0..interface_count)
            .map(|_| r.str("interface"))
            .collect::<Result<Vec<_>, _>>()?;
        let packet_count = r.u32("packets")?;
        let packets = r.0;

        let mut walk = Reader(packets);
        for _ in 0..packet_count {
            let record = walk.packet()?;
            if usize::from(record.interface) >= interfaces.len() {
                return Err(DecodeError::UnknownInterface {
                    seq: record.seq,
                    index: record.interface,
                    count: interfaces.len(),
                });
            }
        }
        if !walk.0.is_empty() {
            return Err(DecodeError::TrailingBytes(walk.0.len()));
        }
        Ok(Self {
            flags,
            boot_id,
            batch_seq,
            session,
            node,
            counters: Counters {
                captured,
                kernel_drops,
                drops,
            },
            interfaces,
            packet_count,
            packets,
        })
    }

    pub fn is_final(&self) -> bool {
        self.flags & FLAG_FINAL != 0
    }

    pub fn id(&self) -> String {
        batch_id(&self.boot_id, self.batch_seq)
    }

    pub fn packets(&self) -> impl Iterator<Item = PacketRecord<'a>> + 'a {
        let mut r = Reader(self.packets);
        (0..self.packet_count).map(move |_| r.packet().expect("validated by decode"))
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError::Truncated(what));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.take(2, what)?.try_into().expect("2 bytes")))
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.take(4, what)?.try_into().expect("4 bytes")))
    }
    fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.take(8, what)?.try_into().expect("8 bytes")))
    }
    fn str(&mut self, what: &'static str) -> Result<&'a str, DecodeError> {
        let len = self.u16(what)?;
        std::str::from_utf8(self.take(len.into(), what)?).map_err(|_| DecodeError::InvalidUtf8(what))
    }
    fn packet(&mut self) -> Result<PacketRecord<'a>, DecodeError> {
        let seq = self.u64("packet seq")?;
        let ts_ns = self.u64("packet timestamp")?;
        let interface = self.u16("packet interface")?;
        let original_len = self.u32("packet original_len")?;
        let captured_len = self.u32("packet captured_len")?;
        let data = self.take(captured_len as usize, "packet data")?;
        Ok(PacketRecord {
            seq,
            ts_ns,
            interface,
            original_len,
            data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Origin {
        Origin {
            boot_id: [7; 16],
            session: "default/web".into(),
            node: "node-a".into(),
        }
    }

    fn counters() -> Counters {
        Counters {
            captured: 10,
            kernel_drops: 2,
            drops: vec![("queue_full".into(), 3)],
        }
    }

    #[test]
    fn round_trips_packets_counters_and_interfaces() {
        let mut builder = BatchBuilder::default();
        let eth0 = builder.interface_index("eth0");
        let veth = builder.interface_index("veth1");
        assert_eq!(builder.interface_index("eth0"), eth0);
        builder.push(1, 1_000, eth0, 1500, &[1, 2, 3]);
        builder.push(2, 2_000, veth, 60, &[4; 60]);
        let bytes = builder.seal(&origin(), 9, FLAG_FINAL, &counters());
        assert!(builder.is_empty());

        let batch = Batch::decode(&bytes).unwrap();
        assert_eq!(
            (batch.session, batch.node, batch.batch_seq),
            ("default/web", "node-a", 9)
        );
        assert!(batch.is_final());
        assert_eq!(batch.counters, counters());
        assert_eq!(batch.interfaces, ["eth0", "veth1"]);
        let packets: Vec<_> = batch.packets().collect();
        assert_eq!(packets.len(), 2);
        assert_eq!(
            packets[0],
            PacketRecord {
                seq: 1,
                ts_ns: 1_000,
                interface: 0,
                original_len: 1500,
                data: &[1, 2, 3]
            }
        );
        assert_eq!(packets[1].data.len(), 60);
        assert_eq!(batch.id(), format!("{}-9", "07".repeat(16)));
    }

    #[test]
    fn rejects_other_formats_and_versions() {
        assert_eq!(Batch::decode(b"{\"json\":true}").unwrap_err(), DecodeError::BadMagic);
        let mut bytes = BatchBuilder::default().seal(&origin(), 0, 0, &Counters::default());
        bytes[4] = 2;
        assert_eq!(Batch::decode(&bytes).unwrap_err(), DecodeError::UnsupportedVersion(2));
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let mut builder = BatchBuilder::default();
        let eth0 = builder.interface_index("eth0");
        builder.push(1, 1, eth0, 100, &[9; 40]);
        let bytes = builder.seal(&origin(), 0, 0, &counters());
        for cut in 0..bytes.len() {
            assert!(
                Batch::decode(&bytes[..cut]).is_err(),
                "a batch cut at {cut} bytes decoded"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(Batch::decode(&longer).unwrap_err(), DecodeError::TrailingBytes(1));
    }

    #[test]
    fn packet_with_unknown_interface_is_rejected() {
        let mut builder = BatchBuilder::default();
        builder.push(5, 1, 3, 10, &[0; 10]);
        let bytes = builder.seal(&origin(), 0, 0, &Counters::default());
        assert_eq!(
            Batch::decode(&bytes).unwrap_err(),
            DecodeError::UnknownInterface {
                seq: 5,
                index: 3,
                count: 0
            }
        );
    }
}
