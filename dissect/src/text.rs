//! Text taken from the wire, made storable and readable: every string this crate returns passes
//! through here, so a NUL byte in a DNS label (legal: RFC 2181 lets a label carry any octet) or
//! invalid UTF-8 in an HTTP header never reaches PostgreSQL, which refuses both in `text`.
//!
//! Bytes that are not printable text are shown as tshark shows them in names: a backslash and
//! three octal digits (`\000`). Valid UTF-8 beyond ASCII is kept as it is.

use std::fmt::Write;

/// The bytes as text: valid UTF-8 kept, control characters and bytes that are not UTF-8 escaped.
pub fn from_wire(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len());
    let mut rest = bytes;
    loop {
        match std::str::from_utf8(rest) {
            Ok(valid) => {
                push_escaped(&mut text, valid);
                return text;
            }
            Err(error) => {
                let (valid, after) = rest.split_at(error.valid_up_to());
                // Safe to unwrap: `valid_up_to` is where the valid prefix ends.
                push_escaped(&mut text, std::str::from_utf8(valid).unwrap_or_default());
                let invalid = error.error_len().unwrap_or(after.len());
                for byte in &after[..invalid] {
                    escape_byte(&mut text, *byte);
                }
                rest = &after[invalid..];
            }
        }
    }
}

/// Text that is already UTF-8 (a library's rendering) with its control characters escaped.
pub fn storable(text: String) -> String {
    if text.chars().any(needs_escape) {
        let mut escaped = String::with_capacity(text.len() + 8);
        push_escaped(&mut escaped, &text);
        escaped
    } else {
        text
    }
}

fn needs_escape(c: char) -> bool {
    c.is_ascii_control()
}

fn push_escaped(out: &mut String, text: &str) {
    for c in text.chars() {
        if needs_escape(c) {
            escape_byte(out, c as u8);
        } else {
            out.push(c);
        }
    }
}

fn escape_byte(out: &mut String, byte: u8) {
    let _ = write!(out, "\\{byte:03o}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_and_control_bytes_are_escaped_in_octal() {
        assert_eq!(from_wire(b"a\0b"), "a\\000b");
        assert_eq!(from_wire(b"\x1b[31m\x7f"), "\\033[31m\\177");
        assert_eq!(from_wire(b"plain.example"), "plain.example");
    }

    #[test]
    fn invalid_utf8_is_escaped_byte_by_byte_and_valid_utf8_kept() {
        assert_eq!(from_wire("münchen".as_bytes()), "münchen");
        assert_eq!(from_wire(b"a\xffb\xc3"), "a\\377b\\303");
        assert_eq!(from_wire(b"\xe2\x82"), "\\342\\202");
    }

    #[test]
    fn already_decoded_text_loses_only_its_control_characters() {
        assert_eq!(storable("tab\there".into()), "tab\\011here");
        assert_eq!(storable("ok".into()), "ok");
    }
}
