//! HPACK (RFC 7541), the header compression of HTTP/2, as a passive reader needs it: one table
//! per direction of a connection, followed from wherever the capture joined it. A field that
//! points into the part of the dynamic table this capture never saw (entries added before it
//! started, or by a header block it could not read) is counted as unresolved rather than failing
//! the block, so a capture that starts mid-connection still reads every static and literal field.
//!
//! Huffman-coded strings are decoded by loona-hpack's decoder (the maintained fork of the `hpack`
//! crate); the field representations and the table are here because a decoder for endpoints
//! rejects the whole block on an unknown index, which is the common case for a capture.

use std::cell::RefCell;
use std::collections::VecDeque;

use loona_hpack::huffman::HuffmanDecoder;

/// The table size HTTP/2 starts with (SETTINGS_HEADER_TABLE_SIZE's default).
const DEFAULT_TABLE: usize = 4096;
/// The most a table may hold whatever the peers agreed: they chose the size, the capture pays for it.
pub(crate) const MAX_TABLE: usize = 64 * 1024;
/// What an entry costs beyond its bytes (RFC 7541 4.1).
const ENTRY_OVERHEAD: usize = 32;

/// RFC 7541 Appendix A: the static table, indexes 1 to 61.
const STATIC: [(&str, &str); 61] = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
];

thread_local! {
    // Building the decoder's code table costs far more than a header block; one per thread.
    static HUFFMAN: RefCell<HuffmanDecoder> = RefCell::new(HuffmanDecoder::new());
}

/// One direction's dynamic table.
#[derive(Debug)]
pub(crate) struct Table {
    /// Newest first, as indexes count (62 is the newest).
    entries: VecDeque<(Vec<u8>, Vec<u8>)>,
    size: usize,
    max: usize,
}

/// What a header block said.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Block {
    pub fields: Vec<(Vec<u8>, Vec<u8>)>,
    /// Fields (or names) that pointed at dynamic entries this capture does not know.
    pub unresolved: u32,
    /// The block did not decode to its end (what came before is in `fields`).
    pub malformed: bool,
}

impl Default for Table {
    fn default() -> Self {
        Self {
            entries: VecDeque::new(),
            size: 0,
            max: DEFAULT_TABLE,
        }
    }
}

impl Table {
    /// Bytes the table holds, as HPACK counts them.
    pub(crate) fn size(&self) -> usize {
        self.size
    }

    /// Forgets every entry (a header block was too large to read): from here only the entries
    /// added later resolve, as when a capture joins mid-connection.
    pub(crate) fn forget(&mut self) {
        self.entries.clear();
        self.size = 0;
    }

    /// Decodes one complete header block, updating the table as the sender's encoder did.
    pub(crate) fn decode(&mut self, mut bytes: &[u8]) -> Block {
        let mut block = Block::default();
        while let Some(&first) = bytes.first() {
            if self.field(first, &mut bytes, &mut block).is_none() {
                block.malformed = true;
                break;
            }
        }
        block
    }

    fn field(&mut self, first: u8, bytes: &mut &[u8], block: &mut Block) -> Option<()> {
        if first & 0x80 != 0 {
            let index = integer(bytes, 7)?;
            match self.entry(index)? {
                Some((name, value)) => block.fields.push((name, value)),
                None => block.unresolved += 1,
            }
            return Some(());
        }
        if first & 0xe0 == 0x20 {
            let max = integer(bytes, 5)?;
            self.max = max.min(MAX_TABLE);
            self.evict(0);
            return Some(());
        }
        // Literals: with incremental indexing (01), without (0000), never indexed (0001).
        let indexed = first & 0xc0 == 0x40;
        let name_index = integer(bytes, if indexed { 6 } else { 4 })?;
        let name = if name_index == 0 {
            Some(string(bytes)?)
        } else {
            self.entry(name_index)?.map(|(name, _)| name)
        };
        let value = string(bytes)?;
        match name {
            Some(name) => {
                if indexed {
                    self.insert(name.clone(), value.clone());
                }
                block.fields.push((name, value));
            }
            None => {
                block.unresolved += 1;
                if indexed {
                    // Its name is unknown, but it takes its place in the table all the same.
                    self.insert(Vec::new(), value);
                }
            }
        }
        Some(())
    }

    /// The entry at `index`: `Some(None)` for a dynamic index past what this capture knows,
    /// `None` for index 0, which no encoder sends.
    fn entry(&self, index: usize) -> Option<Option<(Vec<u8>, Vec<u8>)>> {
        match index {
            0 => None,
            1..=61 => {
                let (name, value) = STATIC[index - 1];
                Some(Some((name.as_bytes().to_vec(), value.as_bytes().to_vec())))
            }
            _ => Some(
                self.entries
                    .get(index - 62)
                    .filter(|(name, _)| !name.is_empty())
                    .cloned(),
            ),
        }
    }

    fn insert(&mut self, name: Vec<u8>, value: Vec<u8>) {
        let size = name.len() + value.len() + ENTRY_OVERHEAD;
        self.evict(size);
        // An entry larger than the table empties it and is not kept (RFC 7541 4.4).
        if size <= self.max {
            self.size += size;
            self.entries.push_front((name, value));
        }
    }

    /// Drops the oldest entries until `room` more bytes fit.
    fn evict(&mut self, room: usize) {
        while self.size + room > self.max {
            let Some((name, value)) = self.entries.pop_back() else {
                break;
            };
            self.size -= name.len() + value.len() + ENTRY_OVERHEAD;
        }
    }
}

/// An integer with an `n`-bit prefix (RFC 7541 5.1); at most 2^28, more than any field needs.
fn integer(bytes: &mut &[u8], n: u8) -> Option<usize> {
    let (&first, rest) = bytes.split_first()?;
    *bytes = rest;
    let mask = (1u16 << n) as usize - 1;
    let mut value = usize::from(first) & mask;
    if value < mask {
        return Some(value);
    }
    let mut shift = 0u32;
    loop {
        let (&byte, rest) = bytes.split_first()?;
        *bytes = rest;
        value = value.checked_add(usize::from(byte & 0x7f) << shift)?;
        if value > 1 << 28 {
            return None;
        }
        if byte & 0x80 == 0 {
            return Some(value);
        }
        shift += 7;
        if shift > 28 {
            return None;
        }
    }
}

/// A string literal (RFC 7541 5.2), Huffman-coded or not.
fn string(bytes: &mut &[u8]) -> Option<Vec<u8>> {
    let huffman = bytes.first()? & 0x80 != 0;
    let len = integer(bytes, 7)?;
    if len > bytes.len() {
        return None;
    }
    let (raw, rest) = bytes.split_at(len);
    *bytes = rest;
    if huffman {
        HUFFMAN.with(|decoder| decoder.borrow_mut().decode(raw).ok())
    } else {
        Some(raw.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(block: &Block) -> Vec<(String, String)> {
        block
            .fields
            .iter()
            .map(|(n, v)| {
                (
                    String::from_utf8_lossy(n).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect()
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// RFC 7541 C.4: three requests with Huffman coding, sharing one table.
    #[test]
    fn reads_the_rfcs_requests_with_huffman_and_one_table() {
        let mut table = Table::default();
        let first = table.decode(&hex("828684418cf1e3c2e5f23a6ba0ab90f4ff"));
        assert_eq!(
            text(&first),
            [
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "www.example.com")
            ]
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
        );
        assert_eq!(table.size(), 57);
        let second = table.decode(&hex("828684be5886a8eb10649cbf"));
        assert_eq!(
            second.fields.last().unwrap(),
            &(b"cache-control".to_vec(), b"no-cache".to_vec())
        );
        assert_eq!(second.fields[3].1, b"www.example.com");
        assert_eq!(second.unresolved, 0);
        let third = table.decode(&hex("828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf"));
        assert_eq!(
            third.fields.last().unwrap(),
            &(b"custom-key".to_vec(), b"custom-value".to_vec())
        );
        assert_eq!(table.size(), 164);
    }

    #[test]
    fn a_capture_joined_mid_connection_counts_what_it_cannot_resolve() {
        let mut table = Table::default();
        // The second request of C.4 without the first: `be` (62) was added before the capture.
        let block = table.decode(&hex("828684be5886a8eb10649cbf"));
        assert_eq!(block.unresolved, 1);
        assert!(!block.malformed);
        assert_eq!(block.fields.len(), 4, "the static and literal fields all read");
    }

    #[test]
    fn hostile_blocks_end_without_panic_or_growth() {
        let mut table = Table::default();
        // A size update far past the bound, an integer that never ends, a string past the block.
        table.decode(&[0x3f, 0xff, 0xff, 0xff, 0x7f]);
        assert!(table.max <= MAX_TABLE);
        table.decode(&[0x20]);
        assert!(table.decode(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).malformed);
        assert!(table.decode(&[0x40, 0x7f, 0x10, b'a']).malformed);
        assert!(table.decode(&[0x80]).malformed, "index 0 is not a field");
        // A new 255-byte name and value each time: the table keeps within its size.
        table.decode(&[0x3f, 0xe1, 0x1f]);
        let big = [
            &[0x40, 0x7f, 0x80, 0x01][..],
            &[b'x'; 255],
            &[0x7f, 0x80, 0x01],
            &[b'y'; 255],
        ]
        .concat();
        for _ in 0..1000 {
            table.decode(&big);
        }
        assert!(table.size() <= DEFAULT_TABLE);
    }
}
