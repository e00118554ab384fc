//! QUIC's client Initial packets: the ClientHello inside them, read with the keys anyone derives
//! from the packet's destination connection id (RFC 9001 5.2: they protect against tampering on
//! the path, not against reading). It yields what a TLS ClientHello over TCP does (SNI, ALPN, the
//! offered version, JA4 with `q` for QUIC), as a TLS hello with transport QUIC. QUIC version 1
//! only; every other packet is left to the port's guess.
//!
//! A ClientHello larger than one Initial (post-quantum key shares) continues in the next one: the
//! first packet's CRYPTO data is read as far as it goes, as a hello cut by the snaplen is.

use aes::Aes128;
use aes::cipher::{BlockEncrypt, KeyInit};
use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes128Gcm, Nonce};
use hkdf::Hkdf;
use sha2::Sha256;

use super::{Found, Framing, Protocol, Recognition, Transport, tls};

pub(crate) struct Quic;

/// RFC 9001 5.2: the salt of version 1's initial secrets.
const INITIAL_SALT_V1: [u8; 20] = [
    0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17, 0x9a, 0xe6, 0xa4, 0xc8, 0x0c, 0xad, 0xcc, 0xbb, 0x7f,
    0x0a,
];
const VERSION_1: u32 = 1;
/// The most CRYPTO bytes collected from one packet (a UDP datagram holds less).
const MAX_CRYPTO: usize = 64 * 1024;

impl Protocol for Quic {
    fn name(&self) -> &'static str {
        "quic"
    }

    fn recognises_stream(&self, _first: &[u8], _src_port: u16, _dst_port: u16) -> Recognition {
        Recognition::No
    }

    fn frame(&self, _bytes: &[u8], _room: usize) -> Framing {
        Framing::Unframed
    }

    fn dissect(&self, transport: Transport, _src_port: u16, _dst_port: u16, payload: &[u8]) -> Found {
        if transport != Transport::Udp {
            return Found::Nothing;
        }
        client_initial(payload)
            .and_then(|crypto| tls::client_hello(&crypto, true))
            .map_or(Found::Nothing, Found::Dissected)
    }
}

/// The CRYPTO data at offset 0 of a version 1 client Initial, decrypted; `None` for anything else.
fn client_initial(packet: &[u8]) -> Option<Vec<u8>> {
    // Long header, fixed bit, type Initial (RFC 9000 17.2).
    let first = *packet.first()?;
    if first & 0xf0 != 0xc0 {
        return None;
    }
    let mut r = Reader(packet, 1);
    if u32::from_be_bytes(r.take(4)?.try_into().ok()?) != VERSION_1 {
        return None;
    }
    let dcid_len = usize::from(r.byte()?);
    let dcid = r.take(dcid_len)?.to_vec();
    let scid_len = usize::from(r.byte()?);
    if dcid_len > 20 || scid_len > 20 {
        return None;
    }
    r.take(scid_len)?;
    let token_len = usize::try_from(r.varint()?).ok()?;
    r.take(token_len)?;
    let length = usize::try_from(r.varint()?).ok()?;
    let pn_offset = r.1;
    let end = pn_offset.checked_add(length)?;
    if end > packet.len() || length < 20 {
        return None;
    }
    let keys = Keys::client(&dcid)?;
    // Header protection (RFC 9001 5.4): a sample of the ciphertext, 4 bytes past the packet number's start.
    let sample: [u8; 16] = packet.get(pn_offset + 4..pn_offset + 20)?.try_into().ok()?;
    let mut mask = aes::Block::from(sample);
    keys.hp.encrypt_block(&mut mask);
    let mut header = packet[..pn_offset].to_vec();
    header[0] ^= mask[0] & 0x0f;
    let pn_len = usize::from(header[0] & 0x03) + 1;
    let mut pn: u64 = 0;
    for i in 0..pn_len {
        let byte = packet[pn_offset + i] ^ mask[1 + i];
        header.push(byte);
        pn = pn << 8 | u64::from(byte);
    }
    let mut nonce = keys.iv;
    for (i, byte) in pn.to_be_bytes().iter().enumerate() {
        nonce[4 + i] ^= byte;
    }
    let mut payload = packet[pn_offset + pn_len..end].to_vec();
    keys.aead
        .decrypt_in_place(&Nonce::from(nonce), &header, &mut payload)
        .ok()?;
    crypto_at_start(&payload)
}

/// The contiguous CRYPTO data from offset 0 among a packet's frames.
fn crypto_at_start(mut frames: &[u8]) -> Option<Vec<u8>> {
    let mut pieces: Vec<(u64, &[u8])> = Vec::new();
    while !frames.is_empty() {
        let mut r = Reader(frames, 0);
        match r.varint()? {
            // PADDING, PING.
            0x00 | 0x01 => {}
            // ACK (with ECN counts for 0x03).
            kind @ (0x02 | 0x03) => {
                r.varint()?;
                r.varint()?;
                let ranges = r.varint()?;
                r.varint()?;
                for _ in 0..ranges.min(1024) {
                    r.varint()?;
                    r.varint()?;
                }
                if kind == 0x03 {
                    for _ in 0..3 {
                        r.varint()?;
                    }
                }
            }
            0x06 => {
                let offset = r.varint()?;
                let len = usize::try_from(r.varint()?).ok()?;
                pieces.push((offset, r.take(len)?));
            }
            // CONNECTION_CLOSE: nothing more to read.
            0x1c => break,
            _ => return None,
        }
        frames = &frames[r.1..];
    }
    // Clients may send CRYPTO frames out of order (Chrome shuffles them).
    pieces.sort_by_key(|(offset, _)| *offset);
    let mut crypto = Vec::new();
    for (offset, data) in pieces {
        let at = crypto.len() as u64;
        if offset > at || crypto.len() + data.len() > MAX_CRYPTO {
            break;
        }
        let skip = usize::try_from(at - offset).ok()?;
        crypto.extend_from_slice(data.get(skip..).unwrap_or_default());
    }
    (!crypto.is_empty()).then_some(crypto)
}

struct Keys {
    aead: Aes128Gcm,
    iv: [u8; 12],
    hp: Aes128,
}

impl Keys {
    /// The client's Initial keys for a destination connection id (RFC 9001 5.2).
    fn client(dcid: &[u8]) -> Option<Self> {
        let (initial, _) = Hkdf::<Sha256>::extract(Some(&INITIAL_SALT_V1), dcid);
        let initial = Hkdf::<Sha256>::from_prk(&initial).ok()?;
        let client: [u8; 32] = expand_label(&initial, b"client in")?;
        let client = Hkdf::<Sha256>::from_prk(&client).ok()?;
        let key: [u8; 16] = expand_label(&client, b"quic key")?;
        let iv: [u8; 12] = expand_label(&client, b"quic iv")?;
        let hp: [u8; 16] = expand_label(&client, b"quic hp")?;
        Some(Self {
            aead: Aes128Gcm::new_from_slice(&key).ok()?,
            iv,
            hp: Aes128::new_from_slice(&hp).ok()?,
        })
    }
}

/// TLS 1.3's HKDF-Expand-Label with an empty context (RFC 8446 7.1).
fn expand_label<const N: usize>(secret: &Hkdf<Sha256>, label: &[u8]) -> Option<[u8; N]> {
    let mut info = Vec::with_capacity(4 + 6 + label.len());
    info.extend((N as u16).to_be_bytes());
    info.push(u8::try_from(6 + label.len()).ok()?);
    info.extend(b"tls13 ");
    info.extend(label);
    info.push(0);
    let mut out = [0; N];
    secret.expand(&info, &mut out).ok()?;
    Some(out)
}

/// A cursor over a packet: the bytes and the position.
struct Reader<'a>(&'a [u8], usize);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let bytes = self.0.get(self.1..self.1.checked_add(n)?)?;
        self.1 += n;
        Some(bytes)
    }

    fn byte(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    /// A variable-length integer (RFC 9000 16).
    fn varint(&mut self) -> Option<u64> {
        let first = self.byte()?;
        let len = 1usize << (first >> 6);
        let mut value = u64::from(first & 0x3f);
        for &byte in self.take(len - 1)? {
            value = value << 8 | u64::from(byte);
        }
        Some(value)
    }
}

#[cfg(test)]
mod tests;
