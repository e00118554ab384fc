//! "Pods" wired to a bridge exactly as a bridge CNI wires them: a network namespace each, a veth
//! pair each with its host end on the bridge, addresses from a test subnet. Real clients and
//! servers run inside them (`command`); a capture on the bridge sees every packet once. Removed
//! on drop.

use std::process::Command;

pub struct BridgedPods {
    pub bridge: String,
    /// The subnet's first three octets (`10.251.X`).
    pub subnet: String,
    pub host_ends: Vec<String>,
    pub namespaces: Vec<String>,
    pub addresses: Vec<String>,
    forward_rule: Vec<String>,
}

fn sh(args: &[&str]) {
    let output = Command::new(args[0]).args(&args[1..]).output().expect("run a command");
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

impl BridgedPods {
    /// `count` pods (at most 9), at `10.251.X.2`, `.3`, ... of a subnet chosen per test.
    pub fn create(count: usize) -> Self {
        assert!((1..=9).contains(&count), "one to nine pods");
        let id = &crate::unique_suffix()[..6];
        let octet = u8::from_str_radix(&id[..2], 16).unwrap();
        let letters = "abcdefghi";
        let pods = Self {
            bridge: format!("tb{id}"),
            subnet: format!("10.251.{octet}"),
            host_ends: (0..count).map(|i| format!("tb{id}{}", &letters[i..=i])).collect(),
            namespaces: (0..count)
                .map(|i| format!("trawl-pod-{}-{id}", &letters[i..=i]))
                .collect(),
            addresses: (0..count).map(|i| format!("10.251.{octet}.{}", i + 2)).collect(),
            // A Docker engine sets FORWARD to DROP, and bridged frames pass it (br_netfilter).
            forward_rule: [
                "FORWARD",
                "-i",
                &format!("tb{id}"),
                "-o",
                &format!("tb{id}"),
                "-j",
                "ACCEPT",
            ]
            .map(str::to_owned)
            .to_vec(),
        };
        sh(&["ip", "link", "add", &pods.bridge, "type", "bridge"]);
        sh(&["ip", "link", "set", &pods.bridge, "up"]);
        let mut insert = vec!["iptables", "-I"];
        insert.extend(pods.forward_rule.iter().map(String::as_str));
        sh(&insert);
        for i in 0..count {
            let (namespace, host_end) = (&pods.namespaces[i], &pods.host_ends[i]);
            sh(&["ip", "netns", "add", namespace]);
            sh(&[
                "ip", "link", "add", host_end, "type", "veth", "peer", "name", "eth0", "netns", namespace,
            ]);
            sh(&["ip", "link", "set", host_end, "master", &pods.bridge, "up"]);
            sh(&["sysctl", "-qw", &format!("net.ipv6.conf.{host_end}.disable_ipv6=1")]);
            let inside = |args: &[&str]| {
                let mut command = vec!["ip", "netns", "exec", namespace.as_str()];
                command.extend_from_slice(args);
                sh(&command);
            };
            inside(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
            inside(&["ip", "addr", "add", &format!("{}/24", pods.addresses[i]), "dev", "eth0"]);
            inside(&["ip", "link", "set", "eth0", "up"]);
            inside(&["ip", "link", "set", "lo", "up"]);
        }
        pods
    }

    /// `program` run inside pod `pod`'s network namespace.
    pub fn command(&self, pod: usize, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.namespaces[pod], program]);
        command
    }
}

impl Drop for BridgedPods {
    fn drop(&mut self) {
        for namespace in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", namespace]).status();
        }
        let _ = Command::new("ip").args(["link", "del", &self.bridge]).status();
        let _ = Command::new("iptables").arg("-D").args(&self.forward_rule).status();
    }
}

/// "The internet" for [`BridgedPods`], as a node gives its pods a way out: the bridge becomes
/// their gateway (`10.251.X.1`), and a namespace of its own (`10.252.X.2`, reached through a
/// veth from the host, `10.252.X.1`) stands for an address outside the cluster, behind the host's
/// masquerade (the node's SNAT). Removed on drop.
pub struct Outside {
    pub namespace: String,
    pub host_end: String,
    pub address: String,
    pods_subnet: String,
    bridge: String,
}

impl Outside {
    pub fn create(pods: &BridgedPods) -> Self {
        sh(&[
            "ip",
            "addr",
            "add",
            &format!("{}.1/24", pods.subnet),
            "dev",
            &pods.bridge,
        ]);
        for namespace in &pods.namespaces {
            sh(&[
                "ip",
                "-n",
                namespace,
                "route",
                "add",
                "default",
                "via",
                &format!("{}.1", pods.subnet),
            ]);
        }
        let suffix = &pods.bridge[2..];
        Self::behind(
            &pods.bridge,
            &format!("{}.0/24", pods.subnet),
            &pods.subnet.replace("10.251.", "10.252."),
            &format!("tb{suffix}o"),
        )
    }

    /// An outside namespace at `subnet.2` (the host's end `host_end`, at `subnet.1`) that the
    /// pods of `pods_cidr` behind `bridge` reach through the host's masquerade.
    pub fn behind(bridge: &str, pods_cidr: &str, subnet: &str, host_end: &str) -> Self {
        let outside = Self {
            namespace: format!("trawl-outside-{host_end}"),
            host_end: host_end.to_owned(),
            address: format!("{subnet}.2"),
            pods_subnet: pods_cidr.to_owned(),
            bridge: bridge.to_owned(),
        };
        let (namespace, host_end) = (outside.namespace.as_str(), outside.host_end.as_str());
        sh(&["ip", "netns", "add", namespace]);
        sh(&[
            "ip", "link", "add", host_end, "type", "veth", "peer", "name", "eth0", "netns", namespace,
        ]);
        sh(&["sysctl", "-qw", &format!("net.ipv6.conf.{host_end}.disable_ipv6=1")]);
        sh(&["ip", "addr", "add", &format!("{subnet}.1/24"), "dev", host_end]);
        sh(&["ip", "link", "set", host_end, "up"]);
        sh(&[
            "ip",
            "-n",
            namespace,
            "addr",
            "add",
            &format!("{}/24", outside.address),
            "dev",
            "eth0",
        ]);
        sh(&["ip", "-n", namespace, "link", "set", "eth0", "up"]);
        sh(&["ip", "-n", namespace, "link", "set", "lo", "up"]);
        sh(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        for rule in outside.rules() {
            sh(&[
                ["iptables"].as_slice(),
                &rule.iter().map(String::as_str).collect::<Vec<_>>(),
            ]
            .concat());
        }
        outside
    }

    /// The masquerade and, past Docker's FORWARD policy of DROP, the way out and back; each as
    /// iptables arguments after the table and `-I`/`-D`.
    fn rules(&self) -> Vec<Vec<String>> {
        let args = |text: String| text.split(' ').map(str::to_owned).collect::<Vec<_>>();
        vec![
            args(format!(
                "-t nat -I POSTROUTING -s {} -o {} -j MASQUERADE",
                self.pods_subnet, self.host_end
            )),
            args(format!("-I FORWARD -i {} -o {} -j ACCEPT", self.bridge, self.host_end)),
            args(format!("-I FORWARD -i {} -o {} -j ACCEPT", self.host_end, self.bridge)),
        ]
    }

    /// `program` run inside the outside namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.namespace, program]);
        command
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.namespace]).status();
        for mut rule in self.rules() {
            for arg in &mut rule {
                if arg == "-I" {
                    *arg = "-D".into();
                }
            }
            let _ = Command::new("iptables").args(&rule).status();
        }
    }
}
