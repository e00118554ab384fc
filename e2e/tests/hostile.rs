//! Traffic written by an attacker through a real capture (issue #29): a DNS query whose name holds
//! a NUL byte, an HTTP request whose Content-Length wraps a 64-bit sum, and a flood of TCP segments
//! past a gap, among ordinary packets. The parser stores every one of them, names the odd ones as
//! tshark would, and holds bounded memory.
//!
//! Run (as root, after `bash hack/services.sh`): `cargo test -p e2e --test hostile`

use std::net::Ipv4Addr;

use e2e::{Pipeline, PipelineOptions};
use testkit::batches::{CLIENT, SERVER};
use testkit::frames::{self, DESTINATION, SOURCE};

/// Flows flooded past a gap, and segments per flow (each 1400 bytes at its own offset).
const FLOODED_FLOWS: u16 = 48;
const SEGMENTS_PER_FLOW: u32 = 250;
/// What one followed direction may hold (dissect's `STREAM_LIMIT`).
const STREAM_LIMIT: u64 = 16 * 1024;

/// A DNS query for `nul\0byte.example`: RFC 2181 lets a label carry any octet.
fn dns_query_with_nul() -> Vec<u8> {
    let mut message = vec![0x4e, 0x55, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in [&b"nul\0byte"[..], b"example"] {
        message.push(label.len() as u8);
        message.extend_from_slice(label);
    }
    message.extend_from_slice(&[0, 0, 1, 0, 1]);
    frames::udp_ports(CLIENT, SERVER, (SOURCE, 40053), (DESTINATION, 53), &message)
}

/// One segment: a request whose head plus Content-Length wraps to a few bytes on 64 bits.
fn wrapping_request() -> Vec<u8> {
    let request = b"POST /upload HTTP/1.1\r\nHost: wrap.example\r\nContent-Length: 18446744073709551560\r\n\r\nx";
    frames::tcp_ports(CLIENT, SERVER, (SOURCE, 40080), (DESTINATION, 8080), 0x18, request)
}

/// Per flow: the first five bytes of a TLS record (so the stream is followed and waits for the
/// rest), then segments past a one-byte gap at offsets 6, 7, 8, ...: each one distinct, together
/// 14 times the stream bound.
fn flood() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    // Within the sniffer's default snaplen (1024): a segment cut short would end its stream instead.
    let padding = vec![0xab; 900];
    for flow in 0..FLOODED_FLOWS {
        let source = (Ipv4Addr::new(192, 0, 2, 100), 41000 + flow);
        let destination = (DESTINATION, 443);
        let start = 1_000_000;
        out.push(frames::tcp_segment(
            CLIENT,
            SERVER,
            source,
            destination,
            0x18,
            start,
            &[22, 3, 1, 0x3f, 0xff],
        ));
        for k in 0..SEGMENTS_PER_FLOW {
            out.push(frames::tcp_segment(
                CLIENT,
                SERVER,
                source,
                destination,
                0x18,
                start + 6 + k,
                &padding,
            ));
        }
    }
    out
}

/// The process's peak resident memory (VmHWM), in bytes.
fn peak_memory(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read the parser's status");
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status");
    kib * 1024
}

#[tokio::test]
async fn hostile_packets_are_stored_with_everything_else_in_bounded_memory() {
    let mut pipeline = Pipeline::start(PipelineOptions {
        filter: "udp or tcp".into(),
        ..Default::default()
    })
    .await;
    pipeline.offer(500, 5_000);
    pipeline.offer_frames(&[dns_query_with_nul(), wrapping_request()], 100);
    let flood = flood();
    pipeline.offer_frames(&flood, 5_000);
    pipeline.offer(500, 5_000);

    pipeline.stop_sniffer();
    let accounting = pipeline.settle().await;
    accounting.assert_balanced();
    assert_eq!(
        accounting.stored, accounting.offered,
        "every packet stored, none set aside: {accounting:?}"
    );

    // The held bytes of the flooded streams stay within one stream bound each (before the
    // bound counted bytes past a gap, this flood held every segment: 10.8 MB).
    let metrics = pipeline.parser_metrics();
    let held = testkit::metrics::value(&metrics, "trawl_parser_tcp_stream_bytes").expect("the held-bytes gauge");
    // The flooded streams are still followed (idle for less than 5 s of capture time): the bound is
    // what holds them, not their end.
    assert!(
        held > 0,
        "the flooded streams were no longer held when measured: {}",
        metrics
            .lines()
            .filter(|l| l.contains("tcp_stream"))
            .collect::<Vec<_>>()
            .join("; ")
    );
    assert!(
        held <= u64::from(FLOODED_FLOWS) * STREAM_LIMIT,
        "streams hold {held} bytes for {FLOODED_FLOWS} flows"
    );
    for pid in pipeline.parser_pids() {
        let peak = peak_memory(pid);
        assert!(peak < 256 << 20, "the parser peaked at {peak} bytes");
    }

    let pool = sqlx::PgPool::connect(&pipeline.database.url()).await.unwrap();
    let (query,): (String,) = sqlx::query_as("SELECT query FROM dns_events WHERE session = $1 AND transaction = $2")
        .bind(&pipeline.session)
        .bind(0x4e55_i32)
        .fetch_one(&pool)
        .await
        .expect("the NUL-labelled query's event");
    // As tshark shows the name (dns.qry.name): the byte in octal.
    assert_eq!(query, "nul\\000byte.example");
    let (host, method): (Option<String>, Option<String>) =
        sqlx::query_as("SELECT host, method FROM http_events WHERE session = $1 AND path = '/upload'")
            .bind(&pipeline.session)
            .fetch_one(&pool)
            .await
            .expect("the wrapping request's event");
    assert_eq!(
        (host.as_deref(), method.as_deref()),
        (Some("wrap.example"), Some("POST"))
    );
    pool.close().await;
}
