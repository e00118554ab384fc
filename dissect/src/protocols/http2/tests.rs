use loona_hpack::Encoder;

use super::*;
use crate::stream::{Message, Stream};

fn frame(frame_type: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut bytes = len.to_be_bytes()[1..].to_vec();
    bytes.extend([frame_type, flags]);
    bytes.extend(stream.to_be_bytes());
    bytes.extend(payload);
    bytes
}

fn grpc_message(len: usize) -> Vec<u8> {
    let mut bytes = vec![0];
    bytes.extend((len as u32).to_be_bytes());
    bytes.extend(vec![7; len]);
    bytes
}

/// A client's side of a gRPC call with a streamed request of two messages split over two DATA
/// frames, then a second call on stream 3 that reuses the table.
fn client() -> Vec<u8> {
    let mut encoder = Encoder::new();
    let mut bytes = PREFACE.to_vec();
    bytes.extend(frame(SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100]));
    let call = |path: &'static str| {
        vec![
            (&b":method"[..], &b"POST"[..]),
            (b":scheme", b"http"),
            (b":path", path.as_bytes()),
            (b":authority", b"greeter.test:50051"),
            (b"content-type", b"application/grpc"),
            (b"user-agent", b"grpc-python/1.51"),
            (b"te", b"trailers"),
        ]
    };
    let block = encoder.encode(call("/helloworld.Greeter/SayHello"));
    // The block split over HEADERS and a CONTINUATION.
    bytes.extend(frame(HEADERS, 0, 1, &block[..10]));
    bytes.extend(frame(CONTINUATION, END_HEADERS, 1, &block[10..]));
    let messages = [grpc_message(3), grpc_message(100)].concat();
    bytes.extend(frame(DATA, 0, 1, &messages[..20]));
    // A padded DATA frame: 2 bytes of padding after the data.
    let mut padded = vec![2];
    padded.extend(&messages[20..]);
    padded.extend([0, 0]);
    bytes.extend(frame(DATA, END_STREAM | PADDED, 1, &padded));
    let block = encoder.encode(call("/helloworld.Greeter/SayHelloAgain"));
    bytes.extend(frame(HEADERS, END_HEADERS | END_STREAM, 3, &block));
    bytes.extend(frame(RST_STREAM, 0, 3, &8u32.to_be_bytes()));
    bytes
}

fn server() -> Vec<u8> {
    let mut encoder = Encoder::new();
    let mut bytes = frame(SETTINGS, 0, 0, &[]);
    let block = encoder.encode(vec![
        (&b":status"[..], &b"200"[..]),
        (b"content-type", b"application/grpc"),
    ]);
    bytes.extend(frame(HEADERS, END_HEADERS, 1, &block));
    bytes.extend(frame(DATA, 0, 1, &grpc_message(12)));
    let block = encoder.encode(vec![
        (&b"grpc-status"[..], &b"5"[..]),
        (b"grpc-message", b"no such greeting: %E2%9C%93"),
    ]);
    bytes.extend(frame(HEADERS, END_HEADERS | END_STREAM, 1, &block));
    bytes.extend(frame(GOAWAY, 0, 0, &[0, 0, 0, 3, 0, 0, 0, 0]));
    bytes
}

/// Feeds `bytes` to a stream in segments of `size` bytes.
fn read(bytes: &[u8], size: usize) -> Vec<Http2Message> {
    let mut stream = Stream::new(1000, 40000, 50051);
    let mut messages: Vec<Message> = Vec::new();
    for (i, chunk) in bytes.chunks(size).enumerate() {
        let pushed = stream.push(1000 + (i * size) as u32, chunk, i as u64);
        assert!(!pushed.gave_up, "gave up at segment {i} of {size} bytes");
        messages.extend(pushed.messages);
    }
    assert!(stream.held() < 64 * 1024);
    messages
        .into_iter()
        .map(|m| match m.l7 {
            L7::Http2(message) => *message,
            other => panic!("not HTTP/2: {other:?}"),
        })
        .collect()
}

#[test]
fn a_grpc_call_reads_the_same_however_the_segments_cut_it() {
    let whole = read(&client(), 1460);
    for size in [1, 7, 9, 10, 33] {
        assert_eq!(read(&client(), size), whole, "segments of {size} bytes");
    }
    let [request, end, again, reset] = &whole[..] else {
        panic!("four messages: {whole:#?}");
    };
    assert_eq!(request.frame, "headers");
    assert_eq!(request.method.as_deref(), Some("POST"));
    assert_eq!(request.path.as_deref(), Some("/helloworld.Greeter/SayHello"));
    assert_eq!(request.authority.as_deref(), Some("greeter.test:50051"));
    assert_eq!(request.content_type.as_deref(), Some("application/grpc"));
    assert_eq!(request.unresolved, 0);
    assert_eq!((end.frame.as_str(), end.stream, end.end_stream), ("end", 1, true));
    assert_eq!(end.body_bytes, 5 + 3 + 5 + 100, "padding is not body");
    assert_eq!(end.messages, 2);
    assert_eq!(again.path.as_deref(), Some("/helloworld.Greeter/SayHelloAgain"));
    assert_eq!(again.authority.as_deref(), Some("greeter.test:50051"));
    assert_eq!(again.unresolved, 0, "`te: trailers` from the dynamic table");
    assert!(again.end_stream);
    assert_eq!(
        (reset.frame.as_str(), reset.error.as_deref()),
        ("rst_stream", Some("CANCEL"))
    );
}

#[test]
fn a_servers_side_has_status_trailers_and_goaway() {
    let messages = read(&server(), 5);
    let [response, trailers, goaway] = &messages[..] else {
        panic!("three messages: {messages:#?}");
    };
    assert_eq!(response.status, Some(200));
    assert_eq!(trailers.grpc_status, Some(5));
    assert_eq!(trailers.grpc_message.as_deref(), Some("no such greeting: ✓"));
    assert_eq!((trailers.body_bytes, trailers.messages), (17, 1));
    assert_eq!(
        (goaway.frame.as_str(), goaway.error.as_deref()),
        ("goaway", Some("NO_ERROR"))
    );
    assert_eq!(goaway.last_stream, Some(3));
    assert_eq!(info(response).as_deref(), Some("HEADERS[1]: 200"));
}

#[test]
fn a_capture_joined_mid_connection_reads_what_it_can() {
    // From the second call on: its authority was put in the table by the first one.
    let bytes = client();
    let second = bytes.len() - (FRAME_HEAD + 4);
    let start = bytes[..second]
        .windows(4)
        .rposition(|w| w == [HEADERS, END_HEADERS | END_STREAM, 0, 0])
        .unwrap()
        - 3;
    let messages = read(&bytes[start..], 100);
    // The encoder put `te: trailers` in its table with the first call and refers to it since.
    assert_eq!(messages[0].unresolved, 1, "the entry the capture did not see");
    assert_eq!(
        messages[0].path.as_deref(),
        Some("/helloworld.Greeter/SayHelloAgain"),
        "a literal"
    );
    assert_eq!(messages[0].method.as_deref(), Some("POST"), "static entries resolve");
}

#[test]
fn one_packet_on_its_own_is_dissected_with_a_table_of_its_own() {
    let bytes = client();
    let found = Http2.dissect(Transport::Tcp, 40000, 50051, &bytes[..PREFACE.len() + 15]);
    let Found::Dissected(L7::Http2(first)) = found else {
        panic!("the preface and SETTINGS are HTTP/2: {found:?}");
    };
    assert_eq!(first.frame, "settings");
    assert_eq!(
        Http2.dissect(Transport::Tcp, 1, 2, b"\x00\x00\x02\x01\x00\x00\x00\x00\x01abc"),
        Found::Nothing,
        "a frame that does not tile the payload is not taken for HTTP/2"
    );
    assert_eq!(
        Http2.dissect(Transport::Tcp, 1, 2, b"GET / HTTP/1.1\r\n\r\n"),
        Found::Nothing
    );
}

#[test]
fn an_h2c_upgrade_goes_on_as_http2() {
    let mut client_bytes = b"GET / HTTP/1.1\r\nHost: web.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n".to_vec();
    client_bytes.extend(client());
    let mut stream = Stream::new(0, 40000, 80);
    let pushed = stream.push(0, &client_bytes, 1);
    let names: Vec<&str> = pushed.messages.iter().map(|m| m.l7.name()).collect();
    assert_eq!(names, ["http", "grpc", "http2", "grpc", "http2"]);
    let mut server_bytes = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n".to_vec();
    server_bytes.extend(server());
    let mut stream = Stream::new(0, 80, 40000);
    let pushed = stream.push(0, &server_bytes, 1);
    assert_eq!(pushed.messages.len(), 4, "{:#?}", pushed.messages);
    assert!(!stream.is_done());
}

#[test]
fn hostile_frames_hold_bounded_memory() {
    // A header block that never ends, CONTINUATION after CONTINUATION.
    let mut bytes = PREFACE.to_vec();
    bytes.extend(frame(HEADERS, 0, 1, &[0x40; 1000]));
    for _ in 0..200 {
        bytes.extend(frame(CONTINUATION, 0, 1, &[0x40; 1000]));
    }
    // A DATA frame announcing 16 MiB.
    bytes.extend([0xff, 0xff, 0xff, DATA, 0, 0, 0, 0, 5]);
    bytes.extend(vec![0; 100_000]);
    let mut stream = Stream::new(0, 40000, 80);
    for (i, chunk) in bytes.chunks(1400).enumerate() {
        stream.push((i * 1400) as u32, chunk, 0);
        assert!(stream.held() <= crate::stream::MAX_HELD, "held {}", stream.held());
    }
    assert!(!stream.is_done(), "still following, skipping the DATA");
    // Many streams opened and never ended.
    let mut direction = Direction::default();
    let mut encoder = Encoder::new();
    let mut many = PREFACE.to_vec();
    for id in 0..5000u32 {
        let block = encoder.encode(vec![
            (&b":method"[..], &b"GET"[..]),
            (b"content-type", b"application/grpc"),
        ]);
        many.extend(frame(HEADERS, END_HEADERS, id * 2 + 1, &block));
    }
    direction.read(&many, &mut Vec::new()).unwrap();
    assert!(direction.streams.len() <= MAX_STREAMS);
}
