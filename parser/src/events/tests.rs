use std::net::Ipv4Addr;

use testkit::frames;

use super::*;

const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 53);
const MS: u64 = 1_000_000;

fn query(id: u16, name: &str) -> Dissection {
    dissect::summarize(&frames::udp_ports(
        [2; 6],
        [4; 6],
        (CLIENT, 40000),
        (SERVER, 53),
        &frames::dns_query(id, name),
    ))
}

fn response(id: u16, name: &str, address: Option<[u8; 4]>) -> Dissection {
    dissect::summarize(&frames::udp_ports(
        [4; 6],
        [2; 6],
        (SERVER, 53),
        (CLIENT, 40000),
        &frames::dns_response(id, name, address),
    ))
}

fn http(payload: &[u8], to_server: bool) -> Dissection {
    let (from, to) = if to_server {
        ((CLIENT, 40001), (SERVER, 8080))
    } else {
        ((SERVER, 8080), (CLIENT, 40001))
    };
    dissect::summarize(&frames::udp_ports([2; 6], [4; 6], from, to, payload))
}

#[test]
fn a_dns_query_and_its_response_make_one_transaction() {
    let pending = Pending::default();
    let mut events = Events::default();
    events.add(&query(7, "a.example.org"), 1_000 * MS, &pending);
    events.add(&response(7, "a.example.org", Some([10, 9, 8, 7])), 1_004 * MS, &pending);
    events.add(&response(8, "b.example.org", None), 1_005 * MS, &pending);
    assert_eq!(events.dns.len(), 2, "{:?}", events.dns);
    let answered = &events.dns[0];
    assert_eq!(answered.query.as_deref(), Some("a.example.org"));
    assert_eq!(answered.query_type.as_deref(), Some("A"));
    assert_eq!(answered.endpoints.client, CLIENT);
    let answer = answered.answer.as_ref().unwrap();
    assert_eq!(answer.rcode, "NOERROR");
    assert_eq!(answer.answers, ["A 10.9.8.7"]);
    assert_eq!(answer.rtt_ms, Some(4.0));
    // A response without its query still names what was asked, but has no round-trip time.
    let alone = &events.dns[1];
    assert_eq!(alone.query.as_deref(), Some("b.example.org"));
    assert_eq!(
        alone.endpoints.client, CLIENT,
        "the client is the response's destination"
    );
    assert_eq!(alone.answer.as_ref().unwrap().rcode, "NXDOMAIN");
    assert_eq!(alone.answer.as_ref().unwrap().rtt_ms, None);
}

#[test]
fn a_response_in_a_later_transaction_answers_the_stored_request() {
    let mut pending = Pending::default();
    let mut first = Events::default();
    first.add(&query(9, "late.example.org"), 2_000 * MS, &pending);
    first.add(
        &http(&frames::http_get("web.example.org", "/a"), true),
        2_001 * MS,
        &pending,
    );
    first.add(
        &http(&frames::http_get("web.example.org", "/b"), true),
        2_002 * MS,
        &pending,
    );
    first.add(&http(&frames::http_response(200), false), 2_010 * MS, &pending);
    assert_eq!(
        first.http[0].answer.as_ref().unwrap().status,
        200,
        "pipelined: the first request is answered first"
    );
    assert!(first.http[1].answer.is_none());
    pending.apply(&first, &[101], &[201, 202], &[]);

    let mut second = Events::default();
    second.add(
        &response(9, "late.example.org", Some([1, 2, 3, 4])),
        2_050 * MS,
        &pending,
    );
    second.add(&http(&frames::http_response(404), false), 2_060 * MS, &pending);
    second.add(&http(&frames::http_response(500), false), 2_061 * MS, &pending);
    assert!(second.dns.is_empty(), "{:?}", second.dns);
    assert_eq!(second.late_dns.len(), 1);
    assert_eq!(second.late_dns[0].id, 101);
    assert_eq!(second.late_dns[0].answer.rtt_ms, Some(50.0));
    assert_eq!(second.late_http.len(), 1);
    assert_eq!((second.late_http[0].id, second.late_http[0].answer.status), (202, 404));
    assert_eq!(second.late_http[0].answer.latency_ms, Some(58.0));
    // A response no request is left for gets a row of its own.
    assert_eq!(second.http.len(), 1);
    assert_eq!(second.http[0].answer.as_ref().unwrap().status, 500);
    assert!(second.http[0].method.is_none());

    pending.apply(&second, &[], &[301], &[]);
    let mut third = Events::default();
    third.add(
        &response(9, "late.example.org", Some([1, 2, 3, 4])),
        2_070 * MS,
        &pending,
    );
    assert!(third.late_dns.is_empty(), "an answered request is forgotten");
    assert_eq!(third.dns.len(), 1);
}

#[test]
fn unanswered_requests_are_forgotten_after_a_while() {
    let mut pending = Pending::default();
    let mut first = Events::default();
    first.add(&query(1, "old.example.org"), 1_000 * MS, &pending);
    pending.apply(&first, &[11], &[], &[]);
    let mut later = Events::default();
    later.add(&query(2, "new.example.org"), 1_000 * MS + PENDING_FOR_NS + MS, &pending);
    pending.apply(&later, &[12], &[], &[]);
    let mut events = Events::default();
    events.add(
        &response(1, "old.example.org", None),
        1_000 * MS + PENDING_FOR_NS + 2 * MS,
        &pending,
    );
    assert!(events.late_dns.is_empty());
    events.add(
        &response(2, "new.example.org", None),
        1_000 * MS + PENDING_FOR_NS + 3 * MS,
        &pending,
    );
    assert_eq!(events.late_dns.len(), 1);
}

#[test]
fn client_hellos_are_tls_events() {
    let hello = dissect::summarize(&frames::tcp(
        [2; 6],
        [4; 6],
        443,
        0x18,
        &frames::tls_client_hello("secure.example.org"),
    ));
    let mut events = Events::default();
    events.add(&hello, MS, &Pending::default());
    assert_eq!(events.tls.len(), 1);
    assert_eq!(events.tls[0].sni.as_deref(), Some("secure.example.org"));
    assert_eq!(events.tls[0].alpn, ["h2"]);
    assert!(events.tls[0].ja4.as_deref().is_some_and(|ja4| ja4.starts_with("t13d")));
}

fn h2(stream: u32, fill: impl FnOnce(&mut dissect::Http2Message)) -> L7 {
    let mut message = dissect::Http2Message {
        stream,
        frame: "headers".into(),
        ..Default::default()
    };
    fill(&mut message);
    L7::Http2(Box::new(message))
}

const TO_SERVER: Sent = Sent {
    from: (IpAddr::V4(CLIENT), 40002),
    to: (IpAddr::V4(SERVER), 50051),
    tcp: true,
};
const TO_CLIENT: Sent = Sent {
    from: TO_SERVER.to,
    to: TO_SERVER.from,
    tcp: true,
};

#[test]
fn a_grpc_call_is_one_exchange_across_transactions() {
    let mut pending = Pending::default();
    let mut first = Events::default();
    let request = h2(1, |m| {
        m.method = Some("POST".into());
        m.path = Some("/helloworld.Greeter/SayHello".into());
        m.content_type = Some("application/grpc".into());
    });
    first.add_message(TO_SERVER, &request, 1_000 * MS, &pending);
    // Stream 3 answered in the same group: complete at once.
    first.add_message(
        TO_SERVER,
        &h2(3, |m| m.method = Some("GET".into())),
        1_001 * MS,
        &pending,
    );
    first.add_message(
        TO_CLIENT,
        &h2(3, |m| {
            m.status = Some(404);
            m.end_stream = true;
        }),
        1_003 * MS,
        &pending,
    );
    let [call, get] = &first.http2.events[..] else {
        panic!("{:?}", first.http2.events);
    };
    assert_eq!(call.parts.protocol(), "grpc");
    assert_eq!(
        (get.parts.status, get.parts.latency_ms, get.parts.done),
        (Some(404), Some(2.0), true)
    );
    pending.apply(&first, &[], &[], &[501, 502]);

    let mut second = Events::default();
    second.add_message(
        TO_SERVER,
        &h2(1, |m| {
            m.frame = "end".into();
            m.end_stream = true;
            m.body_bytes = 17;
            m.messages = 1;
        }),
        1_004 * MS,
        &pending,
    );
    second.add_message(TO_CLIENT, &h2(1, |m| m.status = Some(200)), 1_010 * MS, &pending);
    second.add_message(
        TO_CLIENT,
        &h2(1, |m| {
            m.grpc_status = Some(5);
            m.grpc_message = Some("not found".into());
            m.end_stream = true;
            m.body_bytes = 0;
        }),
        1_011 * MS,
        &pending,
    );
    assert!(second.http2.events.is_empty(), "{:?}", second.http2.events);
    let [late] = &second.http2.late[..] else {
        panic!("one update: {:?}", second.http2.late);
    };
    assert_eq!(late.id, 501);
    let parts = &late.answer;
    assert_eq!((parts.request_bytes, parts.request_messages), (Some(17), Some(1)));
    assert_eq!((parts.status, parts.latency_ms), (Some(200), Some(10.0)));
    assert_eq!(
        (parts.grpc_status, parts.grpc_message.as_deref()),
        (Some(5), Some("not found"))
    );
    assert!(parts.done);
    pending.apply(&second, &[], &[], &[]);
    // GOAWAY with last stream 5: stream 7, still open, was not processed.
    let mut goaway = Events::default();
    goaway.add_message(
        TO_SERVER,
        &h2(7, |m| m.method = Some("GET".into())),
        1_015 * MS,
        &pending,
    );
    goaway.add_message(
        TO_CLIENT,
        &h2(0, |m| {
            m.frame = "goaway".into();
            m.error = Some("NO_ERROR".into());
            m.last_stream = Some(5);
        }),
        1_016 * MS,
        &pending,
    );
    assert_eq!(goaway.http2.events[0].parts.reset.as_deref(), Some("GOAWAY NO_ERROR"));
    assert!(goaway.http2.events[0].parts.done);
    // Finished: a stray frame on stream 1 later is not paired again.
    let mut third = Events::default();
    third.add_message(TO_CLIENT, &h2(1, |m| m.status = Some(200)), 1_020 * MS, &pending);
    assert!(third.http2.late.is_empty());
}
