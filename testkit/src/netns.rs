use std::io::Write;
use std::process::{Command, Stdio};

/// A network namespace with a veth pair into it, made for one test and removed when dropped.
///
/// The host end (`host_interface`) lives in the test's own namespace and has no address, so
/// nothing is routed anywhere: frames written into the inner end arrive on the host end, where a
/// capture sees them, and the host then discards them. IPv6 is off on both ends so that the kernel
/// sends nothing of its own (router solicitations, DAD) and packet counts stay exact.
pub struct TestNetwork {
    pub namespace: String,
    pub host_interface: String,
    pub inner_interface: String,
    pub host_mac: [u8; 6],
    pub inner_mac: [u8; 6],
}

fn ip(args: &[&str]) {
    let output = Command::new("ip").args(args).output().expect("run ip (apt: iproute2)");
    assert!(
        output.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn run(command: &mut Command) {
    let output = command.output().expect("run command");
    assert!(
        output.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn mac_text(mac: &[u8; 6]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

impl TestNetwork {
    pub fn create() -> Self {
        let suffix = crate::unique_suffix();
        let id = &suffix[..8];
        let bytes: Vec<u8> = (0..4)
            .map(|i| u8::from_str_radix(&id[i * 2..i * 2 + 2], 16).unwrap())
            .collect();
        let network = Self {
            namespace: format!("trawl-test-{suffix}"),
            host_interface: format!("tw{id}h"),
            inner_interface: format!("tw{id}n"),
            // Locally administered unicast addresses.
            host_mac: [0x02, bytes[0], bytes[1], bytes[2], bytes[3], 0x01],
            inner_mac: [0x02, bytes[0], bytes[1], bytes[2], bytes[3], 0x02],
        };
        ip(&["netns", "add", &network.namespace]);
        ip(&[
            "link",
            "add",
            &network.host_interface,
            "address",
            &mac_text(&network.host_mac),
            "type",
            "veth",
            "peer",
            "name",
            &network.inner_interface,
            "address",
            &mac_text(&network.inner_mac),
            "netns",
            &network.namespace,
        ]);
        let disable_ipv6 = |interface: &str| format!("net.ipv6.conf.{interface}.disable_ipv6=1");
        run(Command::new("sysctl").args(["-qw", &disable_ipv6(&network.host_interface)]));
        run(Command::new("ip")
            .args(["netns", "exec", &network.namespace, "sysctl", "-qw"])
            .arg(disable_ipv6(&network.inner_interface)));
        ip(&["link", "set", &network.host_interface, "up"]);
        ip(&["-n", &network.namespace, "link", "set", &network.inner_interface, "up"]);
        ip(&["-n", &network.namespace, "link", "set", "lo", "up"]);
        network
    }

    /// Writes `frames` (complete Ethernet frames) into the inner end, in order, from inside the
    /// namespace; returns when all were handed to the kernel. At most `per_second` frames a
    /// second, so that the host's receive backlog never overflows.
    pub fn send_frames(&self, frames: &[Vec<u8>], per_second: u32) {
        let mut child = self.sender(per_second, Stdio::piped());
        let mut stdin = child.stdin.take().unwrap();
        write_pcap_stream(&mut stdin, frames.iter()).unwrap();
        drop(stdin);
        let output = child.wait_with_output().unwrap();
        let report = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "tcpreplay failed: {report}");
        // tcpreplay retries when the kernel is busy (ENOBUFS) but skips a frame it could not send.
        let failed = report
            .lines()
            .find_map(|line| line.trim().strip_prefix("Failed packets:"))
            .and_then(|count| count.trim().parse::<u64>().ok());
        assert_eq!(failed, Some(0), "tcpreplay could not send every frame: {report}");
    }

    /// Like `send_frames`, but returns at once; the caller waits on the child.
    pub fn send_frames_in_background(&self, frames: Vec<Vec<u8>>, per_second: u32) -> std::process::Child {
        let mut child = self.sender(per_second, Stdio::null());
        let mut stdin = child.stdin.take().unwrap();
        std::thread::spawn(move || write_pcap_stream(&mut stdin, frames.iter()));
        child
    }

    /// tcpreplay (a C generator that paces by packets per second) reading a pcap stream from
    /// stdin: it reaches 100 000 frames/s on a veth here, where a Python AF_PACKET loop topped out
    /// near 31 000, below what the pipeline sustains. Its default timer spins on the clock and
    /// takes a whole core from what it measures; sleeping and sending a millisecond's worth of
    /// frames at a time keeps the rate and leaves the cores to the pipeline.
    fn sender(&self, per_second: u32, stdout: Stdio) -> std::process::Child {
        Command::new("ip")
            .args(["netns", "exec", &self.namespace, "tcpreplay", "--quiet", "--intf1"])
            .arg(&self.inner_interface)
            .arg(format!("--pps={per_second}"))
            .arg(format!("--pps-multi={}", (per_second / 1_000).max(1)))
            .arg("--timer=nano")
            .arg("-")
            .stdin(Stdio::piped())
            .stdout(stdout)
            .spawn()
            .expect("start tcpreplay (apt: tcpreplay)")
    }

    /// The host end's kernel receive counter: the ground truth of what arrived.
    pub fn host_rx_packets(&self) -> u64 {
        std::fs::read_to_string(format!("/sys/class/net/{}/statistics/rx_packets", self.host_interface))
            .expect("read rx_packets")
            .trim()
            .parse()
            .expect("a number")
    }
}

impl Drop for TestNetwork {
    fn drop(&mut self) {
        // Deleting the namespace deletes the inner end, and with it the host end.
        let _ = Command::new("ip").args(["netns", "del", &self.namespace]).status();
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_interface])
            .stderr(Stdio::null())
            .status();
    }
}

/// A classic pcap stream of Ethernet frames; timestamps are zero because tcpreplay paces by rate.
fn write_pcap_stream<'a>(out: &mut impl Write, frames: impl Iterator<Item = &'a Vec<u8>>) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::with_capacity(1 << 20, out);
    crate::pcap::write_header(&mut out)?;
    for frame in frames {
        crate::pcap::write_record(&mut out, 0, frame)?;
    }
    out.flush()
}
