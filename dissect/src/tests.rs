//! Dissector tests on crafted frames: every protocol, plus malformed and truncated ones.

use super::*;

const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 2];

fn ethernet(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::new();
    frame.extend_from_slice(&MAC_B);
    frame.extend_from_slice(&MAC_A);
    frame.extend_from_slice(&ethertype.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

fn ipv4(protocol: u8, flags_fragment: u16, payload: &[u8]) -> Vec<u8> {
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
    ip.extend_from_slice(&[0, 7]);
    ip.extend_from_slice(&flags_fragment.to_be_bytes());
    ip.extend_from_slice(&[64, protocol, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
    ip.extend_from_slice(payload);
    ip
}

fn ipv6(next: u8, payload: &[u8]) -> Vec<u8> {
    let mut ip = vec![0x60, 0, 0, 0];
    ip.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    ip.extend_from_slice(&[next, 64]);
    ip.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    ip.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    ip.extend_from_slice(payload);
    ip
}

fn udp(src: u16, dst: u16, payload: &[u8]) -> Vec<u8> {
    let mut udp = Vec::new();
    udp.extend_from_slice(&src.to_be_bytes());
    udp.extend_from_slice(&dst.to_be_bytes());
    udp.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    udp
}

fn tcp(src: u16, dst: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut tcp = Vec::new();
    tcp.extend_from_slice(&src.to_be_bytes());
    tcp.extend_from_slice(&dst.to_be_bytes());
    tcp.extend_from_slice(&1000u32.to_be_bytes());
    tcp.extend_from_slice(&2000u32.to_be_bytes());
    tcp.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    tcp.extend_from_slice(payload);
    tcp
}

fn dns_query(name: &str) -> Vec<u8> {
    testkit::frames::dns_query(0x1234, name)
}

fn client_hello(sni: &str) -> Vec<u8> {
    testkit::frames::tls_client_hello(sni)
}

#[test]
fn dns_over_udp() {
    let d = dissect(&ethernet(
        0x0800,
        &ipv4(17, 0, &udp(40000, 53, &dns_query("example.org"))),
    ));
    assert_eq!(d.transport.as_deref(), Some("udp"));
    assert_eq!((d.src_port, d.dst_port), (Some(40000), Some(53)));
    assert_eq!(d.l7.as_ref().map(L7::name), Some("dns"));
    assert_eq!(d.l7.as_ref().and_then(L7::main_name), Some("example.org"));
    assert_eq!(d.headers_len, 14 + 20 + 8);
    assert_eq!(d.malformed, None);
}

#[test]
fn dns_over_tcp_has_a_length_prefix() {
    let message = dns_query("svc.cluster.local");
    let mut framed = (message.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&message);
    let d = dissect(&ethernet(0x0800, &ipv4(6, 0, &tcp(40000, 53, 0x18, &framed))));
    assert_eq!(d.l7.as_ref().and_then(L7::main_name), Some("svc.cluster.local"));
}

#[test]
fn http_request_and_response() {
    let request = b"GET /index.html HTTP/1.1\r\nHost: example.org\r\nUser-Agent: curl/8\r\n\r\n";
    let d = dissect(&ethernet(0x0800, &ipv4(6, 0, &tcp(40000, 8080, 0x18, request))));
    assert_eq!(
        d.l7,
        Some(L7::Http {
            method: Some("GET".into()),
            host: Some("example.org".into()),
            path: Some("/index.html".into()),
            status: None,
            reason: None,
            version: Some("HTTP/1.1".into()),
            user_agent: Some("curl/8".into()),
        })
    );
    assert_eq!(crate::info(&d), "GET /index.html HTTP/1.1");
    assert_eq!(d.tcp_flags, Some(0x18));
    let response = dissect(&ethernet(
        0x0800,
        &ipv4(6, 0, &tcp(80, 40000, 0x18, b"HTTP/1.1 404 Not Found\r\n")),
    ));
    assert!(matches!(response.l7, Some(L7::Http { status: Some(404), .. })));
    assert_eq!(crate::info(&response), "HTTP/1.1 404 Not Found");
}

#[test]
fn tls_client_hello_sni_alpn_and_version() {
    let d = dissect(&ethernet(
        0x0800,
        &ipv4(6, 0, &tcp(40000, 443, 0x18, &client_hello("api.example.com"))),
    ));
    let Some(L7::Tls { ja4: Some(ja4), .. }) = &d.l7 else {
        panic!("a complete ClientHello has a fingerprint: {:?}", d.l7)
    };
    let ja4 = ja4.clone();
    assert_eq!(
        d.l7,
        Some(L7::Tls {
            handshake: "client_hello".into(),
            version: Some("TLS 1.3".into()),
            sni: Some("api.example.com".into()),
            alpn: vec!["h2".into()],
            ja4: Some(ja4.clone()),
            quic: false,
        })
    );
    // TLS 1.3 over TCP, SNI present, then the test hello's cipher and extension counts, ALPN h2.
    assert!(ja4.starts_with("t13d") && ja4[8..].starts_with("h2_"), "{ja4}");
    assert_eq!(ja4.len(), 36, "{ja4}");
}

#[test]
fn tls_hello_cut_by_the_snaplen_keeps_the_sni() {
    let hello = client_hello("cut.example.com");
    // Cut inside the ALPN extension, after the server name.
    let cut = &hello[..hello.len() - 9];
    let d = dissect(&ethernet(0x0800, &ipv4(6, 0, &tcp(40000, 443, 0x18, cut))));
    assert_eq!(d.l7.as_ref().and_then(L7::main_name), Some("cut.example.com"));
}

#[test]
fn vlan_tagged_ipv4() {
    let mut tagged = vec![0x20, 0x64]; // priority 1, VLAN 100
    tagged.extend_from_slice(&0x0800u16.to_be_bytes());
    tagged.extend_from_slice(&ipv4(17, 0, &udp(1, 2, b"x")));
    let d = dissect(&ethernet(0x8100, &tagged));
    assert_eq!(d.vlan, Some(100));
    assert_eq!(d.src, Some("10.0.0.1".parse().unwrap()));
    assert_eq!(d.headers_len, 14 + 4 + 20 + 8);
}

#[test]
fn arp() {
    let mut arp = vec![0, 1, 8, 0, 6, 4, 0, 1];
    arp.extend_from_slice(&MAC_A);
    arp.extend_from_slice(&[10, 0, 0, 1]);
    arp.extend_from_slice(&[0; 6]);
    arp.extend_from_slice(&[10, 0, 0, 2]);
    let d = dissect(&ethernet(0x0806, &arp));
    assert_eq!(d.transport.as_deref(), Some("arp"));
    assert_eq!(d.dst, Some("10.0.0.2".parse().unwrap()));
}

#[test]
fn icmp_and_icmpv6() {
    let d = dissect(&ethernet(0x0800, &ipv4(1, 0, &[8, 0, 0, 0, 0, 1, 0, 1])));
    assert!(d.layers.contains(&Layer::Icmp { icmp_type: 8, code: 0 }));
    let d = dissect(&ethernet(0x86dd, &ipv6(58, &[128, 0, 0, 0, 0, 1, 0, 1])));
    assert!(d.layers.contains(&Layer::Icmpv6 {
        icmp_type: 128,
        code: 0
    }));
}

#[test]
fn ipv6_extension_headers_are_walked() {
    // Hop-by-hop (8 bytes) then a fragment header (first fragment), then UDP.
    let mut payload = vec![44, 0, 1, 4, 0, 0, 0, 0];
    payload.extend_from_slice(&[17, 0, 0, 1, 0, 0, 0, 9]);
    payload.extend_from_slice(&udp(5000, 53, &dns_query("v6.example")));
    let d = dissect(&ethernet(0x86dd, &ipv6(0, &payload)));
    assert!(d.fragment);
    assert_eq!(d.ip_protocol, Some(17));
    assert_eq!(d.l7.as_ref().and_then(L7::main_name), Some("v6.example"));
    assert!(matches!(&d.layers[1], Layer::Ipv6 { extensions, .. } if extensions == &vec![0, 44]));
}

#[test]
fn ipv4_fragments_are_flagged_and_later_ones_have_no_ports() {
    let first = dissect(&ethernet(0x0800, &ipv4(17, 0x2000, &udp(1, 2, b"abc"))));
    assert!(first.fragment);
    assert_eq!(first.dst_port, Some(2));
    let later = dissect(&ethernet(0x0800, &ipv4(17, 0x0010, b"continuation")));
    assert!(later.fragment);
    assert_eq!((later.transport.as_deref(), later.dst_port), (Some("udp"), None));
}

#[test]
fn other_traffic_is_guessed_by_port_and_marked() {
    let d = dissect(&ethernet(
        0x0800,
        &ipv4(6, 0, &tcp(40000, 5432, 0x18, b"\x00\x00\x00\x08")),
    ));
    assert_eq!(
        d.l7,
        Some(L7::Guess {
            name: "postgresql".into()
        })
    );
    assert!(d.l7.unwrap().is_guess());
}

#[test]
fn truncated_and_malformed_frames_keep_what_parsed() {
    assert_eq!(dissect(&[0; 10]).malformed, Some(Malformed::TruncatedEthernet));
    let d = dissect(&ethernet(0x0800, &[0x45, 0, 0]));
    assert_eq!((d.layers.len(), d.malformed), (1, Some(Malformed::TruncatedIpv4)));
    let d = dissect(&ethernet(0x0800, &[0x42; 20]));
    assert_eq!(d.malformed, Some(Malformed::BadIpv4Header));
    let d = dissect(&ethernet(0x0800, &ipv4(6, 0, &[0, 80, 0, 80, 0])));
    assert_eq!((d.src.is_some(), d.malformed), (true, Some(Malformed::TruncatedTcp)));
    let d = dissect(&ethernet(0x0800, &ipv4(17, 0, &udp(999, 53, b"\xff\xff not dns"))));
    assert_eq!(
        (d.malformed, d.l7),
        (Some(Malformed::BadL7), Some(L7::Guess { name: "dns".into() }))
    );
    let d = dissect(&ethernet(0x86dd, &ipv6(0, &[17, 9])));
    assert_eq!(d.malformed, Some(Malformed::TruncatedIpv6Extension));
}

#[test]
fn no_prefix_of_a_frame_panics_or_overruns() {
    let frames = [
        ethernet(0x0800, &ipv4(17, 0, &udp(40000, 53, &dns_query("example.org")))),
        ethernet(0x0800, &ipv4(6, 0, &tcp(40000, 443, 0x18, &client_hello("x.example")))),
        ethernet(0x86dd, &ipv6(0, &[44, 0, 1, 4, 0, 0, 0, 0, 17, 0, 0, 1, 0, 0, 0, 9])),
    ];
    for frame in &frames {
        for cut in 0..frame.len() {
            let d = dissect(&frame[..cut]);
            assert!(
                d.headers_len <= cut,
                "headers_len {} past the end of a {cut}-byte frame",
                d.headers_len
            );
        }
    }
}

#[test]
fn http_and_tls_are_recognised_by_content_on_any_port() {
    let d = dissect(&ethernet(
        0x0800,
        &ipv4(
            6,
            0,
            &tcp(40000, 8888, 0x18, b"GET /odd HTTP/1.1\r\nHost: odd.example\r\n\r\n"),
        ),
    ));
    assert_eq!(d.l7.as_ref().and_then(L7::main_name), Some("odd.example"));
    assert!(!d.l7.unwrap().is_guess());
    let d = dissect(&ethernet(
        0x0800,
        &ipv4(6, 0, &tcp(40000, 9443, 0x18, &client_hello("tls.example"))),
    ));
    assert_eq!(d.l7.as_ref().and_then(L7::main_name), Some("tls.example"));
    // SSDP: HTTP over UDP.
    let search = b"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\n\r\n";
    let d = dissect(&ethernet(0x0800, &ipv4(17, 0, &udp(40000, 1900, search))));
    assert_eq!(d.l7.as_ref().map(L7::name), Some("http"));
    assert_eq!(d.l7.as_ref().and_then(L7::main_name), Some("239.255.255.250:1900"));
}

#[test]
fn mdns_and_llmnr_are_dns() {
    for port in [5353, 5355] {
        let d = dissect(&ethernet(
            0x0800,
            &ipv4(17, 0, &udp(port, port, &dns_query("printer.local"))),
        ));
        assert_eq!(
            d.l7.as_ref().and_then(L7::main_name),
            Some("printer.local"),
            "port {port}"
        );
        let Some(L7::Dns { query_types, .. }) = &d.l7 else {
            panic!("{:?}", d.l7)
        };
        assert_eq!(query_types, &["A"], "types named as dig names them");
    }
}

#[test]
fn a_dns_question_survives_an_answer_that_does_not_parse() {
    // A response whose answer claims 200 bytes of data that are not there.
    let mut message = dns_query("cut.example");
    message[2] |= 0x80; // a response
    message[7] = 1; // one answer
    message.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 200, 1, 2]);
    let d = dissect(&ethernet(0x0800, &ipv4(17, 0, &udp(53, 40000, &message))));
    assert_eq!(d.l7.as_ref().and_then(L7::main_name), Some("cut.example"));
    assert_eq!(
        d.malformed,
        Some(Malformed::PartialL7),
        "the rest is counted as malformed"
    );
    let Some(L7::Dns { response, answers, .. }) = &d.l7 else {
        panic!("{:?}", d.l7)
    };
    assert!(*response && answers.is_empty());
}

#[test]
fn words_that_merely_look_like_a_request_line_are_not_http() {
    for (transport_payload, port) in [(&b"ping 5"[..], 7), (b"hello 0", 7), (b"ok go", 9999)] {
        let udp_frame = ethernet(0x0800, &ipv4(17, 0, &udp(40000, port, transport_payload)));
        assert_ne!(
            dissect(&udp_frame).l7.as_ref().map(L7::name),
            Some("http"),
            "{transport_payload:?}"
        );
        let tcp_frame = ethernet(0x0800, &ipv4(6, 0, &tcp(40000, port, 0x18, transport_payload)));
        assert_ne!(
            dissect(&tcp_frame).l7.as_ref().map(L7::name),
            Some("http"),
            "{transport_payload:?}"
        );
    }
    // A real method with its request line cut short by the snaplen is still HTTP.
    let cut = ethernet(0x0800, &ipv4(6, 0, &tcp(40000, 8081, 0x18, b"GET /a/very/long/path")));
    assert_eq!(dissect(&cut).l7.as_ref().map(L7::name), Some("http"));
    // Any method with its version is HTTP.
    let odd = ethernet(
        0x0800,
        &ipv4(6, 0, &tcp(40000, 8081, 0x18, b"BREW /pot HTTP/1.1\r\n\r\n")),
    );
    assert_eq!(dissect(&odd).l7.as_ref().map(L7::name), Some("http"));
}

#[test]
fn names_from_the_wire_are_storable_text() {
    // A label holding a NUL byte and one holding invalid UTF-8, as tshark shows them.
    let mut query = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in [&b"nul\0byte"[..], b"bad\xff", b"example"] {
        query.push(label.len() as u8);
        query.extend_from_slice(label);
    }
    query.extend_from_slice(&[0, 0, 1, 0, 1]);
    let d = dissect(&ethernet(0x0800, &ipv4(17, 0, &udp(40000, 53, &query))));
    match d.l7 {
        Some(L7::Dns { queries, .. }) => assert_eq!(queries, ["nul\\000byte.bad\\377.example"]),
        other => panic!("not DNS: {other:?}"),
    }
    let request = b"GET / HTTP/1.1\r\nHost: a\xffb\xc3\r\nUser-Agent: caf\xc3\xa9\r\n\r\n";
    let d = dissect(&ethernet(0x0800, &ipv4(6, 0, &tcp(40000, 80, 0x18, request))));
    match d.l7 {
        Some(L7::Http { host, user_agent, .. }) => {
            assert_eq!(host.as_deref(), Some("a\\377b\\303"));
            assert_eq!(user_agent.as_deref(), Some("café"));
        }
        other => panic!("not HTTP: {other:?}"),
    }
}

mod tunnels {
    use std::net::Ipv4Addr;

    use testkit::frames;

    use crate::{L7, Layer, dissect, info, summarize};

    const NODE_A: Ipv4Addr = Ipv4Addr::new(172, 18, 0, 2);
    const NODE_B: Ipv4Addr = Ipv4Addr::new(172, 18, 0, 3);

    /// A pod's HTTP request, as the pod sent it.
    fn inner() -> Vec<u8> {
        frames::tcp([2; 6], [4; 6], 80, 0x18, &frames::http_get("web.example", "/"))
    }

    fn over_ip(protocol: u8, transport: &[u8]) -> Vec<u8> {
        frames::ip_protocol_between([6; 6], [8; 6], NODE_A, NODE_B, protocol, transport)
    }

    fn check(frame: &[u8], kind: &str, id: Option<u32>) {
        for d in [dissect(frame), summarize(frame)] {
            let tunnel = d.tunnel.expect("a tunnel");
            assert_eq!((tunnel.kind, tunnel.id), (kind, id));
            assert_eq!((tunnel.outer_src, tunnel.outer_dst), (NODE_A.into(), NODE_B.into()));
            assert_eq!(
                (d.src, d.dst),
                (Some(frames::SOURCE.into()), Some(frames::DESTINATION.into()))
            );
            assert_eq!(
                (d.src_port, d.dst_port, d.transport.as_deref()),
                (Some(40001), Some(80), Some("tcp"))
            );
            assert!(matches!(&d.l7, Some(L7::Http { host: Some(host), .. }) if host == "web.example"));
            assert_eq!(&frame[d.payload.clone()][..4], b"GET ", "the payload is the inner one");
            assert!(d.malformed.is_none());
        }
        let d = dissect(frame);
        assert!(d.layers.iter().any(|l| matches!(l, Layer::Tunnel { .. })));
        assert_eq!(info(&d), "GET / HTTP/1.1");
    }

    #[test]
    fn vxlan_geneve_gre_and_ip_in_ip_are_opened_to_what_they_carry() {
        let vxlan = [&[0x08, 0, 0, 0, 0, 0, 42, 0][..], &inner()].concat();
        check(
            &frames::udp_between([6; 6], [8; 6], NODE_A, NODE_B, 4789, &vxlan),
            "vxlan",
            Some(42),
        );
        check(
            &frames::udp_between([6; 6], [8; 6], NODE_A, NODE_B, 8472, &vxlan),
            "vxlan",
            Some(42),
        );
        // Geneve with one 8-byte option (length 2 words), carrying Ethernet.
        let geneve = [&[0x02, 0, 0x65, 0x58, 0, 0x01, 0x00, 0][..], &[0; 8], &inner()].concat();
        check(
            &frames::udp_between([6; 6], [8; 6], NODE_A, NODE_B, 6081, &geneve),
            "geneve",
            Some(256),
        );
        // GRE with a key, carrying IPv4 (the inner frame without its Ethernet header).
        let gre = [&[0x20, 0, 0x08, 0x00, 0, 0, 0, 7][..], &inner()[14..]].concat();
        check(&over_ip(47, &gre), "gre", Some(7));
        // GRE carrying Ethernet (gretap).
        let gretap = [&[0, 0, 0x65, 0x58][..], &inner()].concat();
        check(&over_ip(47, &gretap), "gre", None);
        check(&over_ip(4, &inner()[14..]), "ipip", None);
    }

    #[test]
    fn what_is_not_a_tunnel_stays_what_it_was() {
        // VXLAN's port with other flags, GRE version 1 (PPTP), a bare GRE header.
        let frame = frames::udp_between([6; 6], [8; 6], NODE_A, NODE_B, 4789, &[0x0c, 0, 0, 0, 0, 0, 1, 0, 1]);
        let d = summarize(&frame);
        assert_eq!((d.tunnel, d.dst_port), (None, Some(4789)));
        for gre in [&[0x30, 0x01, 0x88, 0x0b][..], &[0, 0][..]] {
            let d = summarize(&over_ip(47, gre));
            assert_eq!(
                (d.tunnel, d.transport.as_deref(), d.src),
                (None, Some("ip-47"), Some(NODE_A.into()))
            );
        }
        // Tunnels nested past the bound end there, without a panic.
        let mut frame = inner()[14..].to_vec();
        for _ in 0..50 {
            frame = over_ip(4, &frame)[14..].to_vec();
        }
        let d = dissect(&[&inner()[..14], &frame].concat());
        assert_eq!(d.tunnel.map(|t| t.kind), Some("ipip"));
        assert_eq!(d.layers.iter().filter(|l| matches!(l, Layer::Tunnel { .. })).count(), 3);
    }
}
