//! What TCP stream reassembly costs (issue #19): time per packet with and without it, and memory
//! per open flow. Run by `bench/streams.sh`, which writes the figures into docs/benchmarks.md.
//!
//! `FLOWS` connections each send a SYN, a ClientHello of ~1.9 KB in two segments (as browsers'
//! post-quantum hellos go), and three ACKs. All connections are opened and given their first
//! segment before any gets its second, so that `FLOWS` streams hold an unfinished hello at once.
//! The table is a std HashMap keyed by both endpoints, as the parser's (parser/src/streams/mod.rs).
//!
//! Usage: cargo run --release -p dissect --example stream_cost [flows, default 10000] [rounds, default 5]

use std::collections::HashMap;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use dissect::stream::Stream;
use testkit::frames;

type Key = (IpAddr, u16, IpAddr, u16);

fn main() {
    let mut args = std::env::args().skip(1);
    let flows: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let rounds: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let (opening, closing) = traffic(flows);
    let packets = (opening.len() + closing.len()) as f64;

    // Memory: the process's resident size before the streams and with every stream holding its
    // first segment; measured first, before timing rounds free memory the allocator would reuse.
    // Once a hello completed, its stream holds no bytes: what stays until FIN or idle is the
    // table entry.
    let before = resident_bytes();
    let mut table: HashMap<Key, Stream> = HashMap::new();
    for frame in &opening {
        feed(&mut table, frame);
    }
    let holding = resident_bytes();
    let held: usize = table.values().map(Stream::held).sum();
    drop(table);

    let mut without = f64::MAX;
    let mut with = f64::MAX;
    let mut reassembled = 0;
    for _ in 0..rounds {
        let started = Instant::now();
        for frame in opening.iter().chain(&closing) {
            black_box(dissect::summarize(frame));
        }
        without = without.min(started.elapsed().as_secs_f64());

        let mut table: HashMap<Key, Stream> = HashMap::new();
        let started = Instant::now();
        reassembled = 0;
        for frame in opening.iter().chain(&closing) {
            reassembled += feed(&mut table, frame);
        }
        with = with.min(started.elapsed().as_secs_f64());
    }
    assert_eq!(reassembled, flows as usize, "every hello read whole");

    println!("flows={flows}");
    println!("packets={}", packets as u64);
    println!("ns_per_packet_without={:.0}", without / packets * 1e9);
    println!("ns_per_packet_with={:.0}", with / packets * 1e9);
    println!("held_bytes_per_flow={:.0}", held as f64 / f64::from(flows));
    println!(
        "resident_bytes_per_flow_holding={:.0}",
        holding.saturating_sub(before) as f64 / f64::from(flows)
    );
    println!("entry_bytes={}", std::mem::size_of::<(Key, Stream)>());
}

/// Dissects a frame and feeds its TCP payload to its stream, as the parser does; returns the
/// messages it completed that spanned segments.
fn feed(table: &mut HashMap<Key, Stream>, frame: &[u8]) -> usize {
    let d = dissect::summarize(frame);
    let (Some(src), Some(dst), Some(sport), Some(dport), Some(seq), Some(flags)) =
        (d.src, d.dst, d.src_port, d.dst_port, d.tcp_seq, d.tcp_flags)
    else {
        return 0;
    };
    let key = (src, sport, dst, dport);
    if flags & 0x02 != 0 {
        table.insert(key, Stream::new(seq.wrapping_add(1), sport, dport));
        return 0;
    }
    let payload = &frame[d.payload.clone()];
    if payload.is_empty() {
        return 0;
    }
    let stream = table.entry(key).or_insert_with(|| Stream::new(seq, sport, dport));
    let pushed = stream.push(seq, payload, 0);
    pushed.messages.iter().filter(|m| m.segments > 1).count()
}

/// SYNs and first hello segments of every flow; then second segments and ACKs.
fn traffic(flows: u32) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let hello = big_hello("www.example.org");
    let (first, second) = hello.split_at(1448);
    let server = Ipv4Addr::new(10, 9, 0, 1);
    let (mut opening, mut closing) = (Vec::new(), Vec::new());
    for n in 0..flows {
        let client = Ipv4Addr::from(0x0a0a_0000 + n / 50_000);
        let port = 10_000 + (n % 50_000) as u16;
        let isn = n.wrapping_mul(2_654_435_761);
        let segment = |seq: u32, flags: u8, payload: &[u8]| {
            let mut frame = frames::tcp_ports([2; 6], [4; 6], (client, port), (server, 443), flags, payload);
            frame[38..42].copy_from_slice(&seq.to_be_bytes());
            frame
        };
        opening.push(segment(isn, 0x02, &[]));
        opening.push(segment(isn.wrapping_add(1), 0x18, first));
        closing.push(segment(isn.wrapping_add(1 + first.len() as u32), 0x18, second));
        for _ in 0..3 {
            closing.push(segment(isn.wrapping_add(1 + hello.len() as u32), 0x10, &[]));
        }
    }
    (opening, closing)
}

/// testkit's ClientHello with a 1 700-byte padding extension before the server name.
fn big_hello(sni: &str) -> Vec<u8> {
    frames::tls_client_hello_padded(sni, 1700)
}

fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}
