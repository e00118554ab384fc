//! Any byte string is a frame the dissector must survive: it may report the frame malformed, never
//! panic, and every text it takes from the frame is storable (no NUL byte: PostgreSQL refuses it).
#![no_main]

libfuzzer_sys::fuzz_target!(|frame: &[u8]| {
    let dissection = dissect::dissect(frame);
    // The store keeps `frame[..headers_len]`: it must lie inside the frame.
    assert!(dissection.headers_len <= frame.len());
    if let Some(name) = dissection.l7.as_ref().and_then(|l7| l7.main_name()) {
        assert!(!name.contains('\0'), "a NUL in {name:?}");
    }
    assert!(!dissect::info(&dissection).contains('\0'));
});
