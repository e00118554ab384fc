//! Tunnels opened as tshark opens them. A real VXLAN tunnel (the kernel's, VNI 42, UDP 4789) runs
//! between the host and a test namespace over the test's veth; curl in the namespace fetches a
//! page through it from a server on the host's tunnel address, and tcpdump captures the veth,
//! where every packet is encapsulated. The same inner packets are then put into Geneve (with an
//! option), GRE with a key, GRE carrying Ethernet, and IP in IP by this test: this machine's
//! kernel has VXLAN built in but not the geneve, ip_gre or ipip modules. tshark and the real
//! parser read each capture; per packet the inner addresses and ports, the HTTP host, the tunnel's
//! id and its outer addresses must agree.
//!
//! Needs root, curl, python3, tcpdump and tshark.

mod common;

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::time::Duration;

use testkit::frames;
use testkit::process::Service;
use testkit::wait_until;

const HOST_UNDERLAY: &str = "10.215.0.1";
const POD_UNDERLAY: &str = "10.215.0.2";
const HOST_OVERLAY: &str = "10.216.0.1";
const POD_OVERLAY: &str = "10.216.0.2";

/// Inner source, destination, ports, HTTP host; the tunnel's id and outer addresses.
type Row = [String; 8];

/// The host's end of the tunnel, removed with the test.
struct HostDevice(String);

impl Drop for HostDevice {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.0]).status();
    }
}

fn tshark(pcap: &std::path::Path) -> Vec<Row> {
    let fields = [
        "ip.src",
        "ip.dst",
        "tcp.srcport",
        "tcp.dstport",
        "http.host",
        "vxlan.vni",
        "geneve.vni",
        "gre.key",
        "ipv6.src",
        "ipv6.dst",
        "arp.src.proto_ipv4",
        "arp.dst.proto_ipv4",
    ];
    let mut command = Command::new("tshark");
    command.arg("-r").arg(pcap).args([
        "-T",
        "fields",
        "-E",
        "separator=|",
        "-E",
        "occurrence=a",
        "-E",
        "aggregator=,",
    ]);
    for field in fields {
        command.args(["-e", field]);
    }
    let output = command.output().expect("run tshark (apt: tshark)");
    assert!(
        output.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split('|').collect();
            // Addresses outermost first: the first pair is the tunnel's, the last the packet's
            // (an inner IPv6 packet's or ARP's when the overlay carried those; Trawl stores ARP's
            // sender and target as a packet's source and destination).
            let src: Vec<&str> = f[0].split(',').collect();
            let dst: Vec<&str> = f[1].split(',').collect();
            let inner = |v6: &str, arp: &str, v4: &[&str]| {
                [arp, v6.split(',').next_back().unwrap_or("")]
                    .into_iter()
                    .find(|a| !a.is_empty())
                    .unwrap_or(v4.last().unwrap())
                    .to_owned()
            };
            let id = [f[5], f[6], f[7]].into_iter().find(|id| !id.is_empty()).unwrap_or("");
            // tshark writes a GRE key in hex.
            let id = match id.strip_prefix("0x") {
                Some(hex) => u32::from_str_radix(hex, 16).unwrap().to_string(),
                None => id.to_owned(),
            };
            [
                inner(f[8], f[10], &src),
                inner(f[9], f[11], &dst),
                f[2].to_owned(),
                f[3].to_owned(),
                f[4].to_owned(),
                id,
                src[0].to_owned(),
                dst[0].to_owned(),
            ]
        })
        .collect()
}

async fn trawl(stamped: &[(u64, Vec<u8>)], session: &str) -> Vec<(Row, String)> {
    let database = common::through_the_parser_database(stamped, session).await;
    let pool = database.pool().await;
    type Stored = (String, String, String, String, String, String, String, String, String);
    let rows: Vec<Stored> = sqlx::query_as(
        "SELECT coalesce(host(src), ''), coalesce(host(dst), ''), coalesce(src_port::text, ''), \
           coalesce(dst_port::text, ''), coalesce(l7_name, ''), coalesce(tunnel_id::text, ''), \
           coalesce(host(outer_src), ''), coalesce(host(outer_dst), ''), coalesce(tunnel, '') \
         FROM packets ORDER BY seq",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    rows.into_iter()
        .map(|(a, b, c, d, e, f, g, h, kind)| ([a, b, c, d, e, f, g, h], kind))
        .collect()
}

/// The inner Ethernet frame of each VXLAN packet, put into another tunnel (when it can carry it:
/// IP in IP and GRE over IP carry IP packets, not ARP).
fn rewrap(captured: &[(u64, Vec<u8>)], wrap: impl Fn(&[u8]) -> Option<Vec<u8>>) -> Vec<(u64, Vec<u8>)> {
    captured
        .iter()
        .filter_map(|(ts, frame)| Some((*ts, wrap(&frame[14 + 20 + 8 + 8..])?)))
        .collect()
}

/// The ethertype of an Ethernet frame, when it is IPv4 or IPv6.
fn ip_ethertype(inner: &[u8]) -> Option<[u8; 2]> {
    let ethertype = [inner[12], inner[13]];
    matches!(ethertype, [0x08, 0x00] | [0x86, 0xdd]).then_some(ethertype)
}

fn over_ip(protocol: u8, transport: &[u8]) -> Vec<u8> {
    let (src, dst): (Ipv4Addr, Ipv4Addr) = (POD_UNDERLAY.parse().unwrap(), HOST_UNDERLAY.parse().unwrap());
    frames::ip_protocol_between([2; 6], [4; 6], src, dst, protocol, transport)
}

#[tokio::test]
async fn tunnelled_packets_agree_with_tshark() {
    let network = common::addressed_network(HOST_UNDERLAY, POD_UNDERLAY);
    let in_namespace = |program: &str| common::in_namespace(&network, program);
    let device = HostDevice(format!("tvx{}", &testkit::unique_suffix()[..8]));
    let vxlan = |local: &str, remote: &str, dev: &str| {
        [
            "vxlan", "id", "42", "dstport", "4789", "local", local, "remote", remote, "dev", dev,
        ]
        .map(str::to_owned)
    };
    common::run(Command::new("ip").args(["link", "add", &device.0, "type"]).args(vxlan(
        HOST_UNDERLAY,
        POD_UNDERLAY,
        &network.host_interface,
    )));
    common::run(in_namespace("ip").args(["link", "add", "vx0", "type"]).args(vxlan(
        POD_UNDERLAY,
        HOST_UNDERLAY,
        &network.inner_interface,
    )));
    common::run(Command::new("ip").args(["addr", "add", &format!("{HOST_OVERLAY}/24"), "dev", &device.0]));
    common::run(in_namespace("ip").args(["addr", "add", &format!("{POD_OVERLAY}/24"), "dev", "vx0"]));
    common::run(Command::new("ip").args(["link", "set", &device.0, "up"]));
    common::run(in_namespace("ip").args(["link", "set", "vx0", "up"]));

    let dir = std::env::temp_dir().join(format!("trawl-tunnels-{}", testkit::unique_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("index.html"), "through the tunnel\n").unwrap();
    let mut server = Command::new("python3");
    server
        .args(["-m", "http.server", "8083", "--bind", HOST_OVERLAY, "--directory"])
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let server = Service::start("python3 -m http.server", server);
    wait_until("the server to listen", Duration::from_secs(20), || async {
        std::net::TcpStream::connect((HOST_OVERLAY, 8083)).ok().map(|_| ())
    })
    .await;

    let pcap = dir.join("vxlan.pcap");
    let tcpdump = common::Tcpdump::start(&network.host_interface, 0, &pcap, &["udp", "port", "4789"]);
    let page = common::run(
        in_namespace("curl")
            .args(["-sS", "-m", "10", "-H", "Host: overlay.example"])
            .arg(format!("http://{HOST_OVERLAY}:8083/index.html")),
    );
    assert_eq!(page, "through the tunnel\n");
    wait_until("tcpdump to have written the page", Duration::from_secs(20), || {
        let written = std::fs::read(&pcap).unwrap_or_default();
        async move { written.windows(18).any(|w| w == b"through the tunnel").then_some(()) }
    })
    .await;
    tcpdump.stop();
    drop(server);

    let captured = testkit::pcap::read(&pcap).unwrap();
    assert!(
        captured.len() >= 6,
        "a TCP handshake, a request and a response: {}",
        captured.len()
    );
    let geneve = rewrap(&captured, |inner| {
        let header = [
            &[0x02, 0, 0x65, 0x58, 0, 0, 7, 0][..],
            &[0x01, 0x02, 0x80, 0x01, 0, 0, 0, 1],
        ]
        .concat();
        let (src, dst) = (POD_UNDERLAY.parse().unwrap(), HOST_UNDERLAY.parse().unwrap());
        Some(frames::udp_between(
            [2; 6],
            [4; 6],
            src,
            dst,
            6081,
            &[&header[..], inner].concat(),
        ))
    });
    let gre = rewrap(&captured, |inner| {
        let [p0, p1] = ip_ethertype(inner)?;
        Some(over_ip(
            47,
            &[&[0x20, 0, p0, p1, 0, 0, 0, 5][..], &inner[14..]].concat(),
        ))
    });
    let gretap = rewrap(&captured, |inner| {
        Some(over_ip(47, &[&[0, 0, 0x65, 0x58][..], inner].concat()))
    });
    let ipip = rewrap(&captured, |inner| {
        let protocol = if ip_ethertype(inner)? == [0x08, 0x00] { 4 } else { 41 };
        Some(over_ip(protocol, &inner[14..]))
    });

    let mut sessions = 0;
    for (kind, frames) in [
        ("vxlan", captured),
        ("geneve", geneve),
        ("gre", gre),
        ("gre", gretap),
        ("ipip", ipip),
    ] {
        sessions += 1;
        let file = dir.join(format!("{kind}-{sessions}.pcap"));
        testkit::pcap::write(&file, &frames).unwrap();
        let theirs = tshark(&file);
        let ours = trawl(&frames, &format!("test/tunnels-{sessions}")).await;
        assert_eq!(ours.len(), theirs.len(), "{kind}: packet count");
        for (i, ((row, tunnel), theirs)) in ours.iter().zip(&theirs).enumerate() {
            assert_eq!(tunnel, kind, "{kind}: packet {i}'s tunnel");
            assert_eq!(row, theirs, "{kind}: packet {i} (Trawl left, tshark right)");
        }
        assert!(
            ours.iter().any(|(row, _)| row[4] == "overlay.example"),
            "{kind}: the request's host"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
