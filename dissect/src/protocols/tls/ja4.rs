//! JA4 fingerprints of TLS ClientHellos (FoxIO's JA4, the TLS-over-TCP part of the JA4+ suite):
//! `t13d1516h2_8daaf6152771_e5627efa2ab1` = protocol, version, SNI present, cipher and extension
//! counts, ALPN's first and last characters; then a truncated SHA-256 of the sorted cipher suites;
//! then one of the sorted extensions (without SNI and ALPN) and the signature algorithms in order.

use sha2::{Digest, Sha256};

/// What of a ClientHello the fingerprint reads, in the order the hello lists it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Hello {
    pub legacy_version: u16,
    pub ciphers: Vec<u16>,
    pub extensions: Vec<u16>,
    pub supported_versions: Vec<u16>,
    pub signature_algorithms: Vec<u16>,
    pub sni: bool,
    pub first_alpn: Option<Vec<u8>>,
    /// Carried by QUIC (`q`) rather than TCP (`t`).
    pub quic: bool,
}

/// GREASE values (RFC 8701) are ignored everywhere: clients add random ones.
fn grease(value: u16) -> bool {
    value & 0x0f0f == 0x0a0a && value >> 8 == value & 0xff
}

pub fn fingerprint(hello: &Hello) -> String {
    let ciphers: Vec<u16> = hello.ciphers.iter().copied().filter(|&c| !grease(c)).collect();
    let extensions: Vec<u16> = hello.extensions.iter().copied().filter(|&e| !grease(e)).collect();
    let version = hello
        .supported_versions
        .iter()
        .copied()
        .filter(|&v| !grease(v))
        .max()
        .unwrap_or(hello.legacy_version);
    let version = match version {
        0x0304 => "13",
        0x0303 => "12",
        0x0302 => "11",
        0x0301 => "10",
        0x0300 => "s3",
        0x0002 => "s2",
        0xfeff => "d1",
        0xfefd => "d2",
        0xfefc => "d3",
        _ => "00",
    };
    let a = format!(
        "{}{version}{}{:02}{:02}{}",
        if hello.quic { 'q' } else { 't' },
        if hello.sni { 'd' } else { 'i' },
        ciphers.len().min(99),
        extensions.len().min(99),
        alpn_mark(hello.first_alpn.as_deref()),
    );
    let mut sorted_ciphers = ciphers.clone();
    sorted_ciphers.sort_unstable();
    let mut sorted_extensions: Vec<u16> = extensions.into_iter().filter(|&e| e != 0x0000 && e != 0x0010).collect();
    sorted_extensions.sort_unstable();
    let b = truncated_hash(&hex_list(&sorted_ciphers));
    let signatures: Vec<u16> = hello
        .signature_algorithms
        .iter()
        .copied()
        .filter(|&s| !grease(s))
        .collect();
    let c = if sorted_extensions.is_empty() {
        truncated_hash("")
    } else if signatures.is_empty() {
        truncated_hash(&hex_list(&sorted_extensions))
    } else {
        truncated_hash(&format!("{}_{}", hex_list(&sorted_extensions), hex_list(&signatures)))
    };
    format!("{a}_{b}_{c}")
}

/// The first and last characters of the first ALPN value; `00` without one; hex digits when
/// those characters are not alphanumeric.
fn alpn_mark(alpn: Option<&[u8]>) -> String {
    match alpn {
        Some([first, .., last]) | Some([first @ last]) => {
            if first.is_ascii_alphanumeric() && last.is_ascii_alphanumeric() {
                format!("{}{}", *first as char, *last as char)
            } else {
                let (first, last) = (format!("{first:02x}"), format!("{last:02x}"));
                format!("{}{}", &first[..1], &last[1..])
            }
        }
        _ => "00".into(),
    }
}

fn hex_list(values: &[u16]) -> String {
    values.iter().map(|v| format!("{v:04x}")).collect::<Vec<_>>().join(",")
}

/// The first 12 hex digits of the SHA-256 of `text`; twelve zeros for an empty list.
fn truncated_hash(text: &str) -> String {
    if text.is_empty() {
        return "000000000000".into();
    }
    let digest = Sha256::digest(text.as_bytes());
    digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// FoxIO's published example (Chrome): JA4 `t13d1516h2_8daaf6152771_e5627efa2ab1` from the raw
    /// lists in its JA4_r form; the hello below lists them unsorted and with GREASE, as Chrome does.
    #[test]
    fn matches_the_published_example() {
        let hello = Hello {
            legacy_version: 0x0303,
            ciphers: vec![
                0x1a1a, 0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013, 0xc014, 0x009c,
                0x009d, 0x002f, 0x0035,
            ],
            extensions: vec![
                0x2a2a, 0x0000, 0x0017, 0xff01, 0x000a, 0x000b, 0x0023, 0x0010, 0x0005, 0x000d, 0x0012, 0x0033, 0x002d,
                0x002b, 0x001b, 0x4469, 0x0015, 0x3a3a,
            ],
            supported_versions: vec![0x5a5a, 0x0304, 0x0303],
            signature_algorithms: vec![0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601],
            sni: true,
            first_alpn: Some(b"h2".to_vec()),
            quic: false,
        };
        assert_eq!(fingerprint(&hello), "t13d1516h2_8daaf6152771_e5627efa2ab1");
    }

    #[test]
    fn without_sni_alpn_or_extensions() {
        let hello = Hello {
            legacy_version: 0x0303,
            ciphers: vec![0x002f],
            ..Hello::default()
        };
        let fingerprint = fingerprint(&hello);
        assert!(fingerprint.starts_with("t12i010000_"), "{fingerprint}");
        assert!(fingerprint.ends_with("_000000000000"), "{fingerprint}");
        assert_eq!(alpn_mark(Some(b"http/1.1")), "h1");
        assert_eq!(alpn_mark(Some(b"x")), "xx");
        assert_eq!(alpn_mark(Some(&[0x00, 0xff])), "0f");
    }
}
