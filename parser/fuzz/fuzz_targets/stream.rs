//! Any sequence of TCP segments (offsets, lengths and bytes an attacker chose) is something TCP
//! reassembly must survive in bounded memory: no panic, no overflow (built with overflow checks),
//! no loop without progress, and never more than the stream bound held.
#![no_main]

use dissect::stream::{MAX_HELD, Stream};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&ports, mut rest)) = data.split_first() else {
        return;
    };
    // The first byte picks the ports, so DNS's framing is reached too (HTTP, TLS and HTTP/2 are
    // recognised by content).
    let (src, dst) = match ports % 4 {
        0 => (51000, 53),
        1 => (51000, 80),
        2 => (443, 51000),
        _ => (51000, 8080),
    };
    let start = 1000u32;
    let mut stream = Stream::new(start, src, dst);
    let mut ts = 0;
    // Each segment: a 2-byte offset from the start, a 1-byte length, then that many bytes.
    while let [a, b, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (payload, after) = tail.split_at(len);
        let offset = u32::from(u16::from_be_bytes([*a, *b]));
        ts += 1;
        stream.push(start.wrapping_add(offset), payload, ts);
        assert!(stream.held() <= MAX_HELD);
        rest = after;
    }
    let mut pushed = dissect::stream::Pushed::default();
    stream.flush(&mut pushed);
    assert_eq!(stream.held(), 0);
});
