use super::*;

/// A ClientHello whose server name comes after `padding` bytes of a padding extension.
fn big_client_hello(sni: &str, padding: usize) -> Vec<u8> {
    testkit::frames::tls_client_hello_padded(sni, padding)
}

fn sni(message: &Message) -> Option<&str> {
    match &message.l7 {
        L7::Tls { sni, .. } => sni.as_deref(),
        _ => None,
    }
}

const START: u32 = 1_000;

#[test]
fn a_client_hello_in_two_segments_is_read_whole() {
    let hello = big_client_hello("split.example", 1700);
    let (first, second) = hello.split_at(1448);
    let mut stream = Stream::new(START, 51000, 443);
    assert!(stream.push(START, first, 10).messages.is_empty());
    assert!(stream.has_partial());
    let pushed = stream.push(START + first.len() as u32, second, 20);
    assert_eq!(pushed.messages.len(), 1);
    assert_eq!(sni(&pushed.messages[0]), Some("split.example"));
    assert_eq!(pushed.messages[0].segments, 2);
    assert_eq!(pushed.messages[0].ts_ns, 10, "the time of the message's first segment");
    assert!(!stream.has_partial());
}

#[test]
fn segments_out_of_order_wait_for_the_gap() {
    let hello = big_client_hello("late.example", 3000);
    let (a, rest) = hello.split_at(1000);
    let (b, c) = rest.split_at(1000);
    let mut stream = Stream::new(START, 51000, 443);
    assert!(stream.push(START + 2000, c, 3).messages.is_empty());
    assert!(stream.push(START, a, 1).messages.is_empty());
    assert_eq!(stream.held(), a.len() + c.len());
    let pushed = stream.push(START + 1000, b, 2);
    assert_eq!(pushed.messages.len(), 1);
    assert_eq!(sni(&pushed.messages[0]), Some("late.example"));
}

#[test]
fn retransmitted_bytes_count_once_and_the_first_copy_wins() {
    let hello = big_client_hello("once.example", 1700);
    let (first, second) = hello.split_at(1448);
    let mut stream = Stream::new(START, 51000, 443);
    stream.push(START, first, 1);
    stream.push(START, first, 2);
    // An overlapping retransmission with other bytes where the first copy already was.
    let mut overlap = first[1000..].to_vec();
    overlap.iter_mut().for_each(|b| *b = 0xff);
    stream.push(START + 1000, &overlap, 3);
    let pushed = stream.push(START + first.len() as u32, second, 4);
    assert_eq!(pushed.messages.len(), 1);
    assert_eq!(sni(&pushed.messages[0]), Some("once.example"));
    assert!(stream.push(START + first.len() as u32, second, 5).messages.is_empty());
}

#[test]
fn sequence_numbers_wrap() {
    let hello = big_client_hello("wrap.example", 1700);
    let (first, second) = hello.split_at(1448);
    let start = u32::MAX - 100;
    let mut stream = Stream::new(start, 51000, 443);
    stream.push(start, first, 1);
    let pushed = stream.push(start.wrapping_add(first.len() as u32), second, 2);
    assert_eq!(sni(&pushed.messages[0]), Some("wrap.example"));
}

#[test]
fn pipelined_http_requests_are_each_a_message() {
    let two = b"GET /a HTTP/1.1\r\nHost: one.example\r\n\r\nPOST /b HTTP/1.1\r\nHost: two.example\r\nContent-Length: 5\r\n\r\nhelloGET /c HTTP/1.1\r\nHost: three.example\r\n\r\n";
    let mut stream = Stream::new(START, 51000, 8081);
    let (first, second) = two.split_at(60);
    let mut hosts = Vec::new();
    for (seq, part) in [(START, first), (START + 60, second)] {
        for message in stream.push(seq, part, 1).messages {
            if let L7::Http { host, .. } = message.l7 {
                hosts.push(host.unwrap_or_default());
            }
        }
    }
    assert_eq!(hosts, ["one.example", "two.example", "three.example"]);
}

#[test]
fn a_response_without_a_length_ends_the_stream_after_its_head() {
    let response = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nbody until close";
    let mut stream = Stream::new(START, 80, 51000);
    let pushed = stream.push(START, response, 1);
    assert!(matches!(pushed.messages[0].l7, L7::Http { status: Some(200), .. }));
    assert!(stream.is_done());
}

#[test]
fn dns_over_tcp_with_its_length_prefix_split() {
    let query = [
        0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, b'a', b'b', b'c', 7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 0,
        0, 1, 0, 1,
    ];
    let mut message = (query.len() as u16).to_be_bytes().to_vec();
    message.extend_from_slice(&query);
    let mut stream = Stream::new(START, 51000, 53);
    assert!(stream.push(START, &message[..1], 1).messages.is_empty());
    let pushed = stream.push(START + 1, &message[1..], 2);
    match &pushed.messages[0].l7 {
        L7::Dns { queries, .. } => assert_eq!(queries, &["abc.example"]),
        other => panic!("not DNS: {other:?}"),
    }
}

#[test]
fn a_stream_is_followed_for_its_first_bytes_only() {
    let mut stream = Stream::new(START, 51000, 443);
    let record = |len: usize| {
        let mut r = vec![23, 3, 3];
        r.extend_from_slice(&(len as u16).to_be_bytes());
        r.extend(std::iter::repeat_n(0xab, len));
        r
    };
    let mut seq = START;
    let mut gave_up = false;
    for _ in 0..20 {
        let segment = record(1400);
        let pushed = stream.push(seq, &segment, 1);
        gave_up |= pushed.gave_up;
        seq += segment.len() as u32;
        assert!(stream.held() <= STREAM_LIMIT);
    }
    assert!(gave_up && stream.is_done());
    assert_eq!(stream.held(), 0, "a finished stream holds nothing");
}

#[test]
fn bytes_of_an_unknown_protocol_are_not_followed() {
    let mut stream = Stream::new(START, 51000, 22);
    let pushed = stream.push(START, b"SSH-2.0-OpenSSH_9.2\r\n", 1);
    assert!(pushed.gave_up && pushed.messages.is_empty());
    assert!(stream.is_done());
}

#[test]
fn an_unfinished_message_is_read_as_far_as_it_goes_when_the_stream_ends() {
    let hello = big_client_hello("cut.example", 10);
    let mut stream = Stream::new(START, 51000, 443);
    // The whole hello but its record claims more: the rest never comes.
    let mut claimed = hello.clone();
    claimed[3..5].copy_from_slice(&((hello.len() - 5 + 500) as u16).to_be_bytes());
    assert!(stream.push(START, &claimed, 1).messages.is_empty());
    let mut pushed = Pushed::default();
    stream.flush(&mut pushed);
    assert_eq!(sni(&pushed.messages[0]), Some("cut.example"));
}

#[test]
fn a_content_length_that_wraps_ends_the_stream_after_the_head() {
    // head_end + 18446744073709551560 wraps to a small number on 64 bits.
    let request = b"POST /x HTTP/1.1\r\nHost: wrap.example\r\nContent-Length: 18446744073709551560\r\n\r\nbody";
    let mut stream = Stream::new(START, 51000, 8080);
    let pushed = stream.push(START, request, 1);
    match &pushed.messages[0].l7 {
        L7::Http { host, .. } => assert_eq!(host.as_deref(), Some("wrap.example")),
        other => panic!("not HTTP: {other:?}"),
    }
    assert!(stream.is_done(), "a body too long to follow ends the stream");
    assert!(
        stream
            .push(START + request.len() as u32, b"GET / HTTP/1.1\r\n\r\n", 2)
            .messages
            .is_empty()
    );
}

#[test]
fn segments_past_a_gap_count_toward_the_bound() {
    let mut stream = Stream::new(START, 51000, 443);
    stream.push(START, &[22, 3, 1, 0x40, 0], 1);
    // One byte missing at offset 5, then a flood of distinct offsets past it, each up to the limit.
    let big = vec![0xab; STREAM_LIMIT];
    for offset in 6..2000u32 {
        let pushed = stream.push(START + offset, &big, 2);
        assert!(!pushed.took);
        assert!(
            stream.held() <= STREAM_LIMIT,
            "held {} at offset {offset}",
            stream.held()
        );
    }
    let mut pushed = Pushed::default();
    stream.flush(&mut pushed);
    assert_eq!(stream.held(), 0);
}
