use std::net::{IpAddr, Ipv4Addr};

use dissect::L7;
use testkit::frames;

use super::*;

const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
const SERVER: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));

/// A TCP segment from the client, dissected: a frame whose payload is `payload`.
fn segment(seq: u32, flags: u8, payload: &[u8]) -> (Dissection, Vec<u8>) {
    segment_from(CLIENT, 51000, seq, flags, payload)
}

fn segment_from(client: IpAddr, port: u16, seq: u32, flags: u8, payload: &[u8]) -> (Dissection, Vec<u8>) {
    let IpAddr::V4(client) = client else { unreachable!() };
    let IpAddr::V4(server) = SERVER else { unreachable!() };
    let mut frame = frames::tcp_ports([2; 6], [4; 6], (client, port), (server, 443), flags, payload);
    // Sequence number at its place in the TCP header (Ethernet 14 + IPv4 20 + 4).
    frame[38..42].copy_from_slice(&seq.to_be_bytes());
    (dissect::summarize(&frame), frame)
}

fn hello(sni: &str, padding: usize) -> Vec<u8> {
    testkit::frames::tls_client_hello_padded(sni, padding)
}

fn sni_of(taken: &Taken) -> Vec<String> {
    match taken {
        Taken::Yes(_, messages) => messages
            .iter()
            .filter_map(|m| match &m.l7 {
                L7::Tls { sni, .. } => sni.clone(),
                _ => None,
            })
            .collect(),
        Taken::No => Vec::new(),
    }
}

#[test]
fn a_hello_split_across_transactions_is_one_message_with_its_name() {
    let hello = hello("split.example", 1700);
    let mut streams = Streams::default();
    let mut ended = Vec::new();
    let (syn, frame) = segment(99, SYN, &[]);
    assert!(matches!(
        streams.add(&syn, &frame, frame.len() as u32, 1, &mut ended),
        Taken::No
    ));
    let (first, frame) = segment(100, 0x18, &hello[..1448]);
    let taken = streams.add(&first, &frame, frame.len() as u32, 2, &mut ended);
    assert!(
        matches!(&taken, Taken::Yes(_, messages) if messages.is_empty()),
        "held, not read per packet"
    );
    // The next transaction.
    let (second, frame) = segment(100 + 1448, 0x18, &hello[1448..]);
    let taken = streams.add(&second, &frame, frame.len() as u32, 3, &mut ended);
    assert_eq!(sni_of(&taken), ["split.example"]);
    assert_eq!(streams.report.reassembled, 1);
    assert!(ended.is_empty());
}

#[test]
fn a_stream_that_ends_unfinished_gives_what_it_has() {
    let hello = hello("fin.example", 1700);
    let mut streams = Streams::default();
    let mut ended = Vec::new();
    let (first, frame) = segment(100, 0x18, &hello[..1448]);
    streams.add(&first, &frame, frame.len() as u32, 2, &mut ended);
    let (fin, frame) = segment(100 + 1448, FIN | 0x10, &[]);
    streams.add(&fin, &frame, frame.len() as u32, 3, &mut ended);
    assert_eq!(ended.len(), 1, "the hello as far as it went");
    assert!(matches!(ended[0].1.l7, L7::Tls { .. }));
    assert_eq!(streams.report.ended_unfinished, 1);
    assert_eq!(streams.size(), (0, 0));
}

#[test]
fn a_segment_cut_by_the_snaplen_ends_following() {
    let hello = hello("cut.example", 1700);
    let mut streams = Streams::default();
    let mut ended = Vec::new();
    let (first, frame) = segment(100, 0x18, &hello[..1000]);
    // Captured 1054 bytes of a longer frame.
    let taken = streams.add(&first, &frame, frame.len() as u32 + 448, 2, &mut ended);
    assert!(matches!(taken, Taken::No), "read per packet, as without reassembly");
    assert_eq!(streams.report.given_up, 1);
}

#[test]
fn idle_streams_end_and_the_table_stays_bounded() {
    let mut streams = Streams::default();
    let mut ended = Vec::new();
    let hello = hello("idle.example", 1700);
    let (first, frame) = segment(100, 0x18, &hello[..1448]);
    streams.add(&first, &frame, frame.len() as u32, 1_000, &mut ended);
    streams.end_idle(1_000 + IDLE_NS + 1, &mut ended);
    assert_eq!(ended.len(), 1);
    assert_eq!(streams.size().0, 0);

    for n in 0..(MAX_STREAMS + 10) {
        let client = IpAddr::V4(Ipv4Addr::from(0x0a01_0000 + (n as u32 >> 16)));
        let (syn, frame) = segment_from(client, n as u16, 1, SYN, &[]);
        streams.add(&syn, &frame, frame.len() as u32, n as u64, &mut ended);
    }
    assert!(streams.size().0 <= MAX_STREAMS);
    assert!(streams.report.evicted > 0);
}

#[test]
fn a_retransmission_or_a_segment_past_a_gap_is_read_on_its_own() {
    let hello = hello("again.example", 10);
    let mut streams = Streams::default();
    let mut ended = Vec::new();
    let (first, frame) = segment(100, 0x18, &hello);
    assert_eq!(
        sni_of(&streams.add(&first, &frame, frame.len() as u32, 1, &mut ended)),
        ["again.example"]
    );
    // The same bytes again: no new bytes in order, so read per packet (as without reassembly).
    assert!(matches!(
        streams.add(&first, &frame, frame.len() as u32, 2, &mut ended),
        Taken::No
    ));
    let (far, frame) = segment(100 + 50_000, 0x18, &hello);
    assert!(matches!(
        streams.add(&far, &frame, frame.len() as u32, 3, &mut ended),
        Taken::No
    ));
}
