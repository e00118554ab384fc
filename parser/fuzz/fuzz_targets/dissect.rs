//! Any byte string is a frame the dissector must survive: it may report the frame malformed, never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|frame: &[u8]| {
    let dissection = dissect::dissect(frame);
    // The store keeps `frame[..headers_len]`: it must lie inside the frame.
    assert!(dissection.headers_len <= frame.len());
});
