//! Agreement with tshark: the same varied traffic is written to a pcap for tshark and pushed
//! through sniffer-format batches into the real parser; what lands in PostgreSQL must match what
//! `tshark -T fields` reads: packet count, addresses, ports, DNS names, HTTP hosts and TLS SNI.
//!
//! Run (after `bash hack/services.sh`; needs tshark from apt): `cargo test -p parser --test tshark`

mod common;

use testkit::frames;

/// Rewrites the IPv4 addresses of a frame built by `testkit::frames` (tshark does not check the checksum).
fn between(mut frame: Vec<u8>, src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
    frame[26..30].copy_from_slice(&src);
    frame[30..34].copy_from_slice(&dst);
    frame
}

fn traffic() -> Vec<Vec<u8>> {
    let (a, b) = ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    let mut out = Vec::new();
    for i in 0..60u8 {
        let client = [10, 1, i / 10, 10 + i % 10];
        let server = [10, 2, 0, 1 + i % 4];
        let frame = match i % 6 {
            0 => frames::udp(
                a,
                b,
                53,
                &frames::dns_query(u16::from(i), &format!("host{i}.svc.example")),
            ),
            1 => frames::tcp(
                a,
                b,
                80,
                0x18,
                &frames::http_get(&format!("site{}.example.net", i % 5), "/a/b?c=1"),
            ),
            2 => frames::tcp(
                a,
                b,
                443,
                0x18,
                &frames::tls_client_hello(&format!("tls{}.example.com", i % 7)),
            ),
            3 => frames::udp(a, b, 9999, b"plain udp"),
            4 => frames::tcp_syn(a, b, 8443, u32::from(i)),
            _ => frames::tcp(a, b, 5432, 0x18, b"\x00\x00\x00\x08\x04\xd2\x16\x2f"),
        };
        out.push(between(frame, client, server));
    }
    out
}

#[tokio::test]
async fn stored_packets_agree_with_tshark() {
    let frames = traffic();
    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let stamped: Vec<(u64, Vec<u8>)> = frames
        .iter()
        .enumerate()
        .map(|(i, f)| (start + i as u64 * 1_000_000, f.clone()))
        .collect();

    // tshark's view.
    let dir = std::env::temp_dir().join(format!("trawl-tshark-{}", testkit::unique_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let pcap = dir.join("traffic.pcap");
    testkit::pcap::write(&pcap, &stamped).unwrap();
    let expected = common::tshark(&pcap, &[]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(expected.len(), frames.len());

    // Trawl's view: the same frames as sniffer batches, through the real parser into PostgreSQL.
    let stored = common::through_the_parser(&stamped, "test/tshark").await;
    assert_eq!(stored.len(), expected.len(), "packet count");
    for (i, (ours, theirs)) in stored.iter().zip(&expected).enumerate() {
        assert_eq!(ours, theirs, "packet {i}: Trawl (left) and tshark (right) disagree");
    }
}
