//! PostgreSQL's binary COPY format, for the `packets` table's rows.
//!
//! Hand-written: sqlx streams raw COPY data but has no encoder for it, and the format is small
//! (a header, then per row a field count and length-prefixed fields in each type's binary form).

use std::net::IpAddr;

/// Microseconds between the Unix epoch and PostgreSQL's (2000-01-01).
const POSTGRES_EPOCH_MICROS: i64 = 946_684_800_000_000;

pub struct CopyWriter {
    buffer: Vec<u8>,
    fields: i16,
    in_row: i16,
}

impl CopyWriter {
    pub fn new(fields: i16) -> Self {
        let mut buffer = Vec::with_capacity(1 << 20);
        buffer.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
        buffer.extend_from_slice(&0i32.to_be_bytes()); // flags
        buffer.extend_from_slice(&0i32.to_be_bytes()); // header extension length
        Self {
            buffer,
            fields,
            in_row: 0,
        }
    }

    pub fn row(&mut self) {
        debug_assert_eq!(self.in_row, 0, "previous row incomplete");
        self.buffer.extend_from_slice(&self.fields.to_be_bytes());
        self.in_row = self.fields;
    }

    fn field(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
        self.buffer.extend_from_slice(bytes);
        self.in_row -= 1;
    }

    pub fn null(&mut self) {
        self.buffer.extend_from_slice(&(-1i32).to_be_bytes());
        self.in_row -= 1;
    }

    pub fn text(&mut self, value: &str) {
        self.field(value.as_bytes());
    }

    pub fn opt_text(&mut self, value: Option<&str>) {
        match value {
            Some(value) => self.text(value),
            None => self.null(),
        }
    }

    pub fn bool(&mut self, value: bool) {
        self.field(&[u8::from(value)]);
    }

    pub fn int2(&mut self, value: Option<i16>) {
        match value {
            Some(value) => self.field(&value.to_be_bytes()),
            None => self.null(),
        }
    }

    pub fn int4(&mut self, value: Option<i32>) {
        match value {
            Some(value) => self.field(&value.to_be_bytes()),
            None => self.null(),
        }
    }

    pub fn int8(&mut self, value: i64) {
        self.field(&value.to_be_bytes());
    }

    pub fn timestamptz_from_unix_nanos(&mut self, nanos: u64) {
        let micros = (nanos / 1_000) as i64 - POSTGRES_EPOCH_MICROS;
        self.field(&micros.to_be_bytes());
    }

    pub fn inet(&mut self, value: Option<IpAddr>) {
        // family, bits, is_cidr, address length, address (PGSQL_AF_INET = 2, PGSQL_AF_INET6 = 3).
        match value {
            Some(IpAddr::V4(v4)) => {
                let mut bytes = vec![2, 32, 0, 4];
                bytes.extend_from_slice(&v4.octets());
                self.field(&bytes);
            }
            Some(IpAddr::V6(v6)) => {
                let mut bytes = vec![3, 128, 0, 16];
                bytes.extend_from_slice(&v6.octets());
                self.field(&bytes);
            }
            None => self.null(),
        }
    }

    /// The complete COPY data, with its trailer.
    pub fn finish(mut self) -> Vec<u8> {
        self.buffer.extend_from_slice(&(-1i16).to_be_bytes());
        self.buffer
    }
}
