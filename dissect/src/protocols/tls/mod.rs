//! TLS: recognised by a handshake record's first bytes, framed by records, its hellos walked by
//! hand (SNI, ALPN, versions, the JA4 fingerprint), summarised as Wireshark does.
//!
//! The hellos are walked by hand rather than with a TLS parsing library: the capture cuts packets
//! at the snaplen and TCP splits large ClientHellos (post-quantum key shares make them ~1.8 kB),
//! so the walker must return whatever fields precede the cut, which complete-record parsers refuse.

mod ja4;

use super::{Cursor, Found, Framing, L7, Protocol, Recognition, Transport};
use crate::text;

pub(crate) struct Tls;

impl Protocol for Tls {
    fn name(&self) -> &'static str {
        "tls"
    }

    fn recognises_stream(&self, first: &[u8], _src_port: u16, _dst_port: u16) -> Recognition {
        (first.len() >= 2 && first[0] == 22 && first[1] == 3).into()
    }

    fn frame(&self, bytes: &[u8], _room: usize) -> Framing {
        record_len(bytes)
    }

    fn dissect(&self, transport: Transport, _src_port: u16, _dst_port: u16, payload: &[u8]) -> Found {
        match transport {
            Transport::Tcp => tls(payload).map_or(Found::Nothing, Found::Dissected),
            Transport::Udp => Found::Nothing,
        }
    }
}

fn record_len(bytes: &[u8]) -> Framing {
    if bytes.len() < 5 {
        return Framing::NeedMore;
    }
    // Content types 20-23 (change_cipher_spec, alert, handshake, application_data), version 3.x.
    if !(20..=23).contains(&bytes[0]) || bytes[1] != 3 {
        return Framing::Unframed;
    }
    let len = 5 + usize::from(u16::from_be_bytes([bytes[3], bytes[4]]));
    if bytes.len() < len {
        Framing::NeedMore
    } else {
        Framing::Complete { len, then_stop: false }
    }
}

/// ClientHello / ServerHello in a TLS record, as far as the bytes go.
fn tls(payload: &[u8]) -> Option<L7> {
    // Record header: type 22 (handshake), version 3.x, length.
    if payload.len() < 9 || payload[0] != 22 || payload[1] != 3 {
        return None;
    }
    hello(&payload[5..], false)
}

/// A ClientHello carried in QUIC's CRYPTO frames (`crate::protocols::quic`).
pub(super) fn client_hello(handshake: &[u8], quic: bool) -> Option<L7> {
    (handshake.first() == Some(&1))
        .then(|| hello(handshake, quic))
        .flatten()
}

/// A hello handshake message (type, 3-byte length, body), as far as the bytes go.
fn hello(message: &[u8], quic: bool) -> Option<L7> {
    let handshake = match message.first()? {
        1 => "client_hello",
        2 => "server_hello",
        _ => return None,
    };
    let mut r = Cursor(message.get(4..)?);
    let legacy_version = r.u16()?;
    let mut found = L7::Tls {
        handshake: handshake.into(),
        version: Some(version_name(legacy_version)),
        sni: None,
        alpn: vec![],
        ja4: None,
        quic,
    };
    let mut hello = ja4::Hello {
        legacy_version,
        quic,
        ..ja4::Hello::default()
    };
    let walked = (|| {
        r.skip(32)?; // random
        let session_id = r.u8()?;
        r.skip(usize::from(session_id))?;
        if handshake == "client_hello" {
            let suites = r.u16()?;
            hello.ciphers = u16_list(r.take(usize::from(suites))?);
            let compression = r.u8()?;
            r.skip(usize::from(compression))?;
        } else {
            r.skip(3)?; // cipher suite, compression method
        }
        // The snaplen or a TCP segment boundary may cut the extensions: read what is there.
        let extensions_len = usize::from(r.u16()?);
        let available = extensions_len.min(r.0.len());
        let mut extensions = Cursor(r.take(available)?);
        let L7::Tls { version, sni, alpn, .. } = &mut found else {
            unreachable!()
        };
        while !extensions.0.is_empty() {
            let (kind, len) = (extensions.u16()?, extensions.u16()?);
            let data = extensions.take(usize::from(len))?;
            hello.extensions.push(kind);
            match kind {
                0 => {
                    *sni = server_name(data);
                    hello.sni = true;
                }
                16 => {
                    *alpn = protocol_names(data);
                    hello.first_alpn = alpn.first().map(|name| name.as_bytes().to_vec());
                }
                13 => hello.signature_algorithms = data.get(2..).map(u16_list).unwrap_or_default(),
                43 => {
                    // supported_versions: a list in a ClientHello, the chosen one in a ServerHello.
                    let chosen = if handshake == "client_hello" {
                        hello.supported_versions = data.get(1..).map(u16_list).unwrap_or_default();
                        data.get(1..3)
                    } else {
                        data.get(0..2)
                    };
                    if let Some(v) = chosen {
                        *version = Some(version_name(u16::from_be_bytes([v[0], v[1]])));
                    }
                }
                _ => {}
            }
        }
        (available == extensions_len).then_some(())
    })();
    // A hello cut short still yields the fields before the cut; its fingerprint would be wrong.
    if walked.is_some()
        && handshake == "client_hello"
        && let L7::Tls { ja4, .. } = &mut found
    {
        *ja4 = Some(ja4::fingerprint(&hello));
    }
    Some(found)
}

fn u16_list(bytes: &[u8]) -> Vec<u16> {
    bytes
        .chunks_exact(2)
        .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
        .collect()
}

fn server_name(data: &[u8]) -> Option<String> {
    let mut r = Cursor(data);
    let _list_len = r.u16()?;
    while let Some(kind) = r.u8() {
        let len = r.u16()?;
        let name = r.take(usize::from(len))?;
        if kind == 0 {
            return Some(text::from_wire(name));
        }
    }
    None
}

fn protocol_names(data: &[u8]) -> Vec<String> {
    let mut r = Cursor(data);
    let mut names = Vec::new();
    if r.u16().is_none() {
        return names;
    }
    while let Some(len) = r.u8() {
        let Some(name) = r.take(usize::from(len)) else { break };
        names.push(text::from_wire(name));
    }
    names
}

fn version_name(version: u16) -> String {
    match version {
        0x0300 => "SSL 3.0".into(),
        0x0301 => "TLS 1.0".into(),
        0x0302 => "TLS 1.1".into(),
        0x0303 => "TLS 1.2".into(),
        0x0304 => "TLS 1.3".into(),
        other => format!("0x{other:04x}"),
    }
}

/// `Client Hello (SNI=example.org)`, `Server Hello`; `Initial, Client Hello (SNI=...)` in QUIC.
pub(crate) fn info(l7: &L7) -> Option<String> {
    match l7 {
        L7::Tls {
            handshake,
            sni,
            quic: true,
            ..
        } if handshake == "client_hello" => Some(match sni {
            Some(sni) => format!("Initial, Client Hello (SNI={sni})"),
            None => "Initial, Client Hello".into(),
        }),
        L7::Tls { handshake, sni, .. } => Some(match (handshake.as_str(), sni) {
            ("client_hello", Some(sni)) => format!("Client Hello (SNI={sni})"),
            ("client_hello", None) => "Client Hello".into(),
            ("server_hello", _) => "Server Hello".into(),
            (other, _) => other.to_owned(),
        }),
        _ => None,
    }
}
