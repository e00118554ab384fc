//! A flow's packets reach one parser (issue #19): with the traffic split into shards and two
//! parsers, ClientHellos split across two TCP segments in different batches are reassembled,
//! every one of them, and nothing is lost or stored twice.
//!
//! Run (as root, after `bash hack/services.sh`): `cargo test -p e2e --test shards`

use std::net::Ipv4Addr;
use std::time::Duration;

use e2e::{Pipeline, PipelineOptions};
use testkit::batches::{CLIENT, SERVER};
use testkit::{frames, wait_until};

const DEADLINE: Duration = Duration::from_secs(120);
const CONNECTIONS: u16 = 64;

/// A data segment of connection `port` with sequence number `seq` (data only: the parser starts a
/// stream whose handshake it did not see at its first data segment).
fn segment(port: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
    let client = (Ipv4Addr::new(192, 0, 2, 2), port);
    let server = (Ipv4Addr::new(192, 0, 2, 1), 443);
    let mut frame = frames::tcp_ports(CLIENT, SERVER, client, server, 0x18, payload);
    // The sequence number's place: Ethernet 14 + IPv4 20 + 4.
    frame[38..42].copy_from_slice(&seq.to_be_bytes());
    frame
}

#[tokio::test]
async fn hellos_split_across_batches_are_reassembled_by_two_parsers() {
    let mut pipeline = Pipeline::start(PipelineOptions {
        parsers: 2,
        shards: 4,
        filter: "tcp port 443".into(),
        // Small batches: a hello's two segments are far apart in the stream of batches.
        sniffer_args: vec!["--batch-packets".into(), "8".into()],
        ..Default::default()
    })
    .await;
    wait_until("both parsers to hold two shards", DEADLINE, || async {
        (pipeline.parser_shards() == [2, 2]).then_some(())
    })
    .await;

    let hellos: Vec<(u16, Vec<u8>)> = (0..CONNECTIONS)
        .map(|i| {
            (
                41000 + i,
                frames::tls_client_hello_padded(&format!("host-{i}.example"), 1700),
            )
        })
        .collect();
    // Every connection's first 900 bytes (a frame within the default snaplen of 1024), then
    // every connection's rest.
    let first: Vec<Vec<u8>> = hellos
        .iter()
        .map(|(port, hello)| segment(*port, 1, &hello[..900]))
        .collect();
    let rest: Vec<Vec<u8>> = hellos
        .iter()
        .map(|(port, hello)| segment(*port, 901, &hello[900..]))
        .collect();
    pipeline.offer_frames(&first, 2_000);
    pipeline.offer_frames(&rest, 2_000);
    pipeline.stop_sniffer();
    let accounting = pipeline.settle().await;
    accounting.assert_balanced();
    assert_eq!(accounting.stored, u64::from(CONNECTIONS) * 2, "{accounting:?}");

    // The server name sits in each hello's second part: only a parser that saw both parts finds
    // it. Events are written as each stream completes, so they are all in once the rows are.
    let mut expected: Vec<String> = (0..CONNECTIONS).map(|i| format!("host-{i}.example")).collect();
    expected.sort();
    assert_eq!(pipeline.tls_server_names().await, expected);
}
