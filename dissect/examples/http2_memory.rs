//! Memory of open HTTP/2 connections while the dissector follows them: 10 000 connections (both
//! directions), each having carried one gRPC call whose headers a real client's encoder put in
//! its table (as grpc-python and Go's gRPC do: path, authority, content type, user agent and
//! the gRPC headers, indexed), and left open. Prints what the process's resident memory grew by,
//! and what the streams say they hold, per 10 000 connections, for `bench/parser.sh`.
//!
//! Run: `cargo run --release -p dissect --example http2_memory [CONNECTIONS]`

use dissect::stream::Stream;
use loona_hpack::Encoder;

fn resident_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches(" kB").parse().ok())
        .expect("VmRSS")
}

fn main() {
    let connections: usize = std::env::args()
        .nth(1)
        .map_or(10_000, |n| n.parse().expect("CONNECTIONS"));
    let frame = testkit::frames::http2_frame;
    let client_block = Encoder::new().encode(vec![
        (&b":method"[..], &b"POST"[..]),
        (b":scheme", b"http"),
        (b":path", b"/shop.v1.Orders/GetOrder"),
        (b":authority", b"orders.shop.svc.cluster.local:50051"),
        (b"content-type", b"application/grpc"),
        (b"user-agent", b"grpc-go/1.70.0"),
        (b"te", b"trailers"),
        (b"grpc-accept-encoding", b"identity, deflate, gzip"),
        (b"grpc-timeout", b"9998m"),
    ]);
    let server_block = Encoder::new().encode(vec![
        (&b":status"[..], &b"200"[..]),
        (b"content-type", b"application/grpc"),
        (b"grpc-accept-encoding", b"identity, deflate, gzip"),
    ]);
    let mut client = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    client.extend(frame(4, 0, 0, &[]));
    client.extend(frame(1, 0x4, 1, &client_block));
    client.extend(frame(0, 0x1, 1, &[0, 0, 0, 0, 3, 1, 2, 3]));
    let mut server = frame(4, 0, 0, &[]);
    server.extend(frame(1, 0x4, 1, &server_block));
    server.extend(frame(0, 0, 1, &[0, 0, 0, 0, 2, 1, 2]));

    let before = resident_kib();
    let mut open = Vec::with_capacity(connections * 2);
    let mut held = 0;
    for i in 0..connections {
        let port = 20_000 + (i % 40_000) as u16;
        let mut request = Stream::new(1, port, 50051);
        let mut response = Stream::new(1, 50051, port);
        assert_eq!(request.push(1, &client, 0).messages.len(), 2);
        assert_eq!(response.push(1, &server, 0).messages.len(), 1);
        held += request.held() + response.held();
        open.push((request, response));
    }
    let grown = resident_kib().saturating_sub(before);
    let per = |kib: u64| kib * 10_000 / connections as u64;
    println!(
        "{connections} connections: resident memory grew {grown} KiB ({} KiB per 10 000), streams hold {} KiB \
         ({} KiB per 10 000; HPACK tables and stream counts), {} bytes of stream struct each way",
        per(grown),
        held / 1024,
        per(held as u64 / 1024),
        std::mem::size_of::<Stream>()
    );
    drop(open);
}
