//! Agreement with tshark on traffic that real clients made: dig over UDP and TCP, an mDNS-port
//! query, curl to HTTP on an odd port, two pipelined HTTP/1.1 requests in one segment, openssl
//! s_client to TLS on an odd port, a ClientHello large enough to span two TCP segments, and
//! VLAN-tagged frames. The traffic runs between a network
//! namespace and addresses this test puts on its veth (10.213.0.0/24); tcpdump captures it at
//! snaplen 1024; tshark reads that pcap, and the same frames go through the real parser.
//!
//! Per packet, addresses, ports and VLAN must agree (for ARP, tshark's sender and target addresses;
//! for QinQ, the outer 802.1ad tag). Per name (DNS query, HTTP host, TLS SNI), the names each side
//! finds must be the same, but for what `ONLY_TRAWL` and `ONLY_TSHARK` list and explain: tshark's
//! every occurrence, Trawl's per-packet names and its L7 events (read from reassembled streams).
//! tshark is told the odd ports' protocols (`-d`), as a user would; Trawl finds them by content.
//!
//! Needs root, dig (apt: bind9-dnsutils), curl, openssl, tcpdump and tshark.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use testkit::{frames, wait_until};

const SERVER: &str = "10.213.0.1";
const CLIENT: &str = "10.213.0.2";

/// Names Trawl finds that tshark does not, each with the reason.
const ONLY_TRAWL: [(&str, &str); 1] = [(
    "big.example",
    "the 2.2 kB ClientHello spans two TCP segments and the snaplen (1024) cuts both: tshark cannot \
     reassemble a cut record and reports nothing; Trawl's hello walker reads the SNI, which comes \
     first, from the first segment's 1024 bytes",
)];

/// Names tshark finds that Trawl does not. None on this traffic: the second of two pipelined
/// requests in one segment is not in the packets table (a packet's row names its first message)
/// but is an HTTP event of its own, from the reassembled stream.
const ONLY_TSHARK: [(&str, &str); 0] = [];

#[tokio::test]
async fn names_from_real_clients_agree_with_tshark() {
    let network = common::addressed_network(SERVER, CLIENT);
    let dir = std::env::temp_dir().join(format!("trawl-real-clients-{}", testkit::unique_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    common::run(
        Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=trawl-test",
            ])
            .arg("-keyout")
            .arg(dir.join("key.pem"))
            .arg("-out")
            .arg(dir.join("cert.pem")),
    );

    let peers = testkit::repo_root().join("parser/tests/fixtures/real_peers.py");
    let mut servers = Command::new("python3")
        .arg(&peers)
        .args(["serve", SERVER])
        .arg(dir.join("cert.pem"))
        .arg(dir.join("key.pem"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the servers");
    let mut ready = String::new();
    BufReader::new(servers.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert_eq!(ready.trim(), "ready", "the servers did not start");

    let pcap = dir.join("clients.pcap");
    let tcpdump = common::Tcpdump::start(&network.host_interface, 1024, &pcap, &[]);

    let dig = |args: &[&str]| {
        common::run(
            common::in_namespace(&network, "dig")
                .args(["+tries=1", "+time=3", "+short"])
                .args(args),
        )
    };
    assert!(dig(&[&format!("@{SERVER}"), "udp.example.test"]).contains("10.213.0.9"));
    assert!(dig(&["+tcp", &format!("@{SERVER}"), "tcp.example.test"]).contains("10.213.0.9"));
    assert!(dig(&["-p", "5353", &format!("@{SERVER}"), "printer.local"]).contains("10.213.0.9"));
    let page = common::run(
        common::in_namespace(&network, "curl")
            .args(["-sS", "-m", "5", "-H", "Host: odd.example"])
            .arg(format!("http://{SERVER}:8081/")),
    );
    assert_eq!(page, "hello\n");
    common::run(common::in_namespace(&network, "python3").arg(&peers).args([
        "pipelined",
        SERVER,
        "pipe1.example",
        "pipe2.example",
    ]));
    common::run(
        common::in_namespace(&network, "openssl")
            .args([
                "s_client",
                "-brief",
                "-connect",
                &format!("{SERVER}:8443"),
                "-servername",
                "small.example",
            ])
            .stdin(Stdio::null()),
    );
    common::run(
        common::in_namespace(&network, "python3")
            .arg(&peers)
            .args(["big-hello", SERVER, "big.example"]),
    );
    let (from, to) = (network.inner_mac, network.host_mac);
    let vlan_query = frames::udp_between(
        from,
        to,
        CLIENT.parse().unwrap(),
        SERVER.parse().unwrap(),
        53,
        &frames::dns_query(7, "vlan.example"),
    );
    network.send_frames(
        &[
            frames::with_vlan_tags(&vlan_query, &[(0x8100, 100)]),
            frames::with_vlan_tags(&vlan_query, &[(0x88a8, 200), (0x8100, 300)]),
        ],
        100,
    );

    // Every exchange above completed before its command returned, and the two tagged queries were
    // sent last: tcpdump (immediate mode, -U) has written every packet once both are in the file.
    let vlan_name = b"\x04vlan\x07example";
    wait_until("tcpdump to have written every packet", Duration::from_secs(20), || {
        let written = std::fs::read(&pcap).unwrap_or_default();
        let tagged = written.windows(vlan_name.len()).filter(|w| w == vlan_name).count();
        async move { (tagged >= 2).then_some(()) }
    })
    .await;
    tcpdump.stop();
    servers.kill().unwrap();
    servers.wait().unwrap();

    let stamped = testkit::pcap::read(&pcap).unwrap();
    let decode_as = ["tcp.port==8081,http", "tcp.port==8443,tls"];
    let theirs = common::tshark(&pcap, &decode_as);
    let names_tshark = common::tshark_names(&pcap, &decode_as);
    let (ours, event_names) = common::through_the_parser_with_events(&stamped, "test/real-clients").await;
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(ours.len(), theirs.len(), "packet count");
    let mut names_trawl = event_names;
    for (i, (row, theirs)) in ours.iter().zip(&theirs).enumerate() {
        assert_eq!(
            row[..5],
            theirs[..5],
            "packet {i}: addresses, ports or VLAN differ (Trawl left, tshark right)"
        );
        names_trawl.extend((!row[5].is_empty()).then(|| row[5].clone()));
    }
    for expected in [
        "udp.example.test",
        "tcp.example.test",
        "printer.local",
        "odd.example",
        "pipe1.example",
        "pipe2.example",
        "small.example",
        "vlan.example",
    ] {
        assert!(
            names_trawl.contains(expected),
            "Trawl missed {expected}: {names_trawl:?}"
        );
    }
    let only_trawl: BTreeSet<&str> = names_trawl.difference(&names_tshark).map(String::as_str).collect();
    let explained: BTreeSet<&str> = ONLY_TRAWL.iter().map(|(name, _)| *name).collect();
    assert_eq!(
        only_trawl, explained,
        "names only Trawl found; explained: {ONLY_TRAWL:?}"
    );
    let only_tshark: BTreeSet<&str> = names_tshark.difference(&names_trawl).map(String::as_str).collect();
    let explained: BTreeSet<&str> = ONLY_TSHARK.iter().map(|(name, _)| *name).collect();
    assert_eq!(
        only_tshark, explained,
        "names only tshark found; explained: {ONLY_TSHARK:?}"
    );
}
