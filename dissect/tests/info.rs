//! The Info column against tshark's (`_ws.col.Info` in Debian 12's tshark 4.0, `_ws.col.info` from 4.2) on
//! the same frames. Where Trawl's line differs, the case says how and why; every other line must be identical.

use std::net::Ipv4Addr;
use std::process::Command;

use testkit::frames;

const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

enum Expect {
    /// Trawl's line is tshark's.
    Same,
    /// Trawl's line is `trawl`; tshark's starts with `tshark`, for the reason given.
    Differs {
        trawl: &'static str,
        tshark: &'static str,
        #[allow(dead_code)] // read by people: the reason is the point of the entry
        why: &'static str,
    },
}

fn icmp_echo_request() -> Vec<u8> {
    let mut icmp = vec![8, 0, 0, 0, 0, 1, 0, 1];
    let sum = !icmp
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], pair[1]])))
        .sum::<u32>() as u16;
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    frames::frame_between(
        [2; 6],
        [4; 6],
        CLIENT,
        SERVER,
        pnet::packet::ip::IpNextHeaderProtocols::Icmp,
        &icmp,
    )
}

fn arp_request() -> Vec<u8> {
    let mut frame = vec![0xff; 6];
    frame.extend_from_slice(&[2; 6]);
    frame.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    frame.extend_from_slice(&[2; 6]);
    frame.extend_from_slice(&CLIENT.octets());
    frame.extend_from_slice(&[0; 6]);
    frame.extend_from_slice(&SERVER.octets());
    frame
}

#[test]
fn info_lines_agree_with_tshark() {
    let dns = |from, to, payload: &[u8]| frames::udp_ports([2; 6], [4; 6], from, to, payload);
    let cases: Vec<(&str, Vec<u8>, Expect)> = vec![
        (
            "DNS query",
            dns(
                (CLIENT, 40000),
                (SERVER, 53),
                &frames::dns_query(0x1a2b, "a.example.org"),
            ),
            Expect::Same,
        ),
        (
            "DNS answer",
            dns(
                (SERVER, 53),
                (CLIENT, 40000),
                &frames::dns_response(0x1a2b, "a.example.org", Some([10, 9, 8, 7])),
            ),
            Expect::Same,
        ),
        (
            "DNS NXDOMAIN",
            dns(
                (SERVER, 53),
                (CLIENT, 40000),
                &frames::dns_response(7, "b.example.org", None),
            ),
            Expect::Same,
        ),
        (
            "HTTP request",
            frames::tcp_ports(
                [2; 6],
                [4; 6],
                (CLIENT, 40001),
                (SERVER, 80),
                0x18,
                &frames::http_get("web.example.org", "/index.html"),
            ),
            Expect::Same,
        ),
        (
            "HTTP response",
            frames::tcp_ports(
                [4; 6],
                [2; 6],
                (SERVER, 80),
                (CLIENT, 40001),
                0x18,
                &frames::http_response(200),
            ),
            Expect::Same,
        ),
        (
            "TLS ClientHello",
            frames::tcp_ports(
                [2; 6],
                [4; 6],
                (CLIENT, 40002),
                (SERVER, 443),
                0x18,
                &frames::tls_client_hello("secure.example.org"),
            ),
            Expect::Differs {
                trawl: "Client Hello (SNI=secure.example.org)",
                tshark: "Client Hello",
                why: "Wireshark 4.2 and later add the SNI as Trawl does; Debian 12's tshark 4.0 does not",
            },
        ),
        (
            "TCP SYN",
            frames::tcp_syn([2; 6], [4; 6], 443, 1000),
            Expect::Differs {
                trawl: "40001 → 443 [SYN] Seq=1000 Win=64240 Len=0",
                tshark: "40001 → 443 [SYN] Seq=0 Win=64240 Len=0",
                why: "tshark shows sequence numbers relative to the flow's first; Trawl's line is computed from \
                      one stored packet, so it shows the number on the wire",
            },
        ),
        (
            "UDP",
            frames::udp_ports([2; 6], [4; 6], (CLIENT, 40000), (SERVER, 9999), b"hello"),
            Expect::Same,
        ),
        (
            "ICMP echo request",
            icmp_echo_request(),
            Expect::Differs {
                trawl: "Echo (ping) request",
                tshark: "Echo (ping) request  id=0x0001, seq=1/256, ttl=64",
                why: "the identifier, sequence and TTL are not in Trawl's ICMP layer (and the pairing note needs the reply)",
            },
        ),
        ("ARP request", arp_request(), Expect::Same),
    ];

    let file = std::env::temp_dir().join(format!("trawl-info-{}.pcap", testkit::unique_suffix()));
    let mut out = Vec::new();
    testkit::pcap::write_header(&mut out).unwrap();
    for (_, frame, _) in &cases {
        testkit::pcap::write_record(&mut out, 0, frame).unwrap();
    }
    std::fs::write(&file, out).unwrap();
    let output = Command::new("tshark")
        .arg("-r")
        .arg(&file)
        .args(["-T", "fields", "-e", "_ws.col.Info"])
        .output()
        .expect("tshark (apt install tshark)");
    std::fs::remove_file(&file).unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let lines: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| l.trim().to_owned())
        .collect();
    assert_eq!(lines.len(), cases.len(), "{lines:?}");

    for ((name, frame, expect), tshark) in cases.iter().zip(&lines) {
        let trawl = dissect::info(&dissect::dissect(frame));
        match expect {
            Expect::Same => assert_eq!(&trawl, tshark, "{name}; tshark said {lines:#?}"),
            Expect::Differs {
                trawl: ours,
                tshark: theirs,
                ..
            } => {
                assert_eq!(&trawl, ours, "{name}");
                assert!(tshark.starts_with(theirs), "{name}: tshark says {tshark:?}");
            }
        }
    }
}
