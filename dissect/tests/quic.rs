//! QUIC Initial packets against tshark. `fixtures/quic-initial.pcap` is what a real client sent:
//! aioquic 1.x (PyPI) connecting to 127.0.0.1:4433 with SNI `quic.example` and ALPN `h3`, where
//! nothing listened, captured on loopback by tcpdump: its first Initial, three retransmissions and
//! the Initial that closes the connection (CONNECTION_CLOSE, no hello).
//! Both sides decrypt the client's Initials with the keys RFC 9001 derives from the destination
//! connection id.
//!
//! The difference, per packet: tshark reassembles CRYPTO data per connection and shows the hello
//! once, at the first Initial; Trawl reads each packet on its own, so every retransmitted Initial
//! carries the hello again (and is its own TLS event, transport `quic`).

use std::process::Command;

use dissect::{L7, dissect, info};

#[test]
fn client_initials_yield_the_hello_tshark_finds() {
    let pcap = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/quic-initial.pcap");
    let output = Command::new("tshark")
        .arg("-r")
        .arg(&pcap)
        .args(["-T", "fields", "-E", "separator=|"])
        .args([
            "-e",
            "quic.long.packet_type",
            "-e",
            "tls.handshake.extensions_server_name",
        ])
        .args(["-e", "tls.handshake.extensions_alpn_str", "-e", "quic.crypto.length"])
        .output()
        .expect("run tshark (apt: tshark)");
    assert!(
        output.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let theirs: Vec<Vec<String>> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| line.split('|').map(str::to_owned).collect())
        .collect();
    let frames = testkit::pcap::read(&pcap).unwrap();
    assert_eq!(frames.len(), theirs.len());
    assert!(frames.len() >= 2, "a first Initial and a retransmission");
    for (i, ((_, frame), theirs)) in frames.iter().zip(&theirs).enumerate() {
        assert_eq!(theirs[0], "0", "tshark: packet {i} is an Initial");
        let d = dissect(frame);
        if theirs[3].is_empty() {
            assert_eq!(d.l7, None, "packet {i} carries no CRYPTO data (tshark), so no hello");
            continue;
        }
        let Some(L7::Tls {
            sni,
            alpn,
            ja4: Some(ja4),
            quic: true,
            ..
        }) = &d.l7
        else {
            panic!("packet {i}: {:?}", d.l7);
        };
        assert_eq!(
            (sni.as_deref(), alpn.join(",")),
            (Some("quic.example"), "h3".to_owned())
        );
        assert!(ja4.starts_with("q13d"), "{ja4}");
        assert_eq!(info(&d), "Initial, Client Hello (SNI=quic.example)");
        assert_eq!(d.l7.as_ref().unwrap().name(), "quic");
        if i == 0 {
            assert_eq!(theirs[1..3], ["quic.example", "h3"], "tshark's first Initial");
        } else {
            assert_eq!(
                theirs[1..3],
                ["", ""],
                "tshark shows the hello once (see the module's note)"
            );
        }
    }
}

#[test]
fn what_is_not_a_client_initial_is_left_alone() {
    let mut frame =
        testkit::pcap::read(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/quic-initial.pcap"))
            .unwrap()[0]
            .1
            .clone();
    // One flipped bit in the ciphertext: authentication fails, nothing is made up.
    frame[100] ^= 1;
    let d = dissect(&frame);
    assert!(!matches!(d.l7, Some(L7::Tls { .. })), "{:?}", d.l7);
    // Cut anywhere: no panic, and no hello.
    for cut in (0..frame.len()).step_by(7) {
        let d = dissect(&frame[..cut]);
        assert!(!matches!(d.l7, Some(L7::Tls { quic: true, .. })));
    }
}
