//! Compiles tcpdump expressions with libpcap's compiler; the program is then attached to the
//! capture socket so that unwanted packets never leave the kernel.

use std::net::IpAddr;

/// A compiled classic BPF program: (code, jt, jf, k) per instruction. Empty: accept everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelFilter {
    pub expression: String,
    pub instructions: Vec<(u16, u8, u8, u32)>,
    /// How many addresses it is narrowed to, when it targets pods.
    pub targets: Option<usize>,
}

#[derive(Debug, thiserror::Error)]
#[error("the capture filter {expression:?} does not compile: {message}")]
pub struct FilterError {
    pub expression: String,
    pub message: String,
}

impl KernelFilter {
    /// Compiles `expression` for Ethernet links. An empty expression yields an empty program.
    pub fn compile(expression: &str) -> Result<Self, FilterError> {
        let expression = expression.trim().to_owned();
        if expression.is_empty() {
            return Ok(Self::default());
        }
        let error = |message: String| FilterError {
            expression: expression.clone(),
            message,
        };
        let dead = pcap::Capture::dead(pcap::Linktype::ETHERNET).map_err(|e| error(e.to_string()))?;
        let program = dead.compile(&expression, true).map_err(|e| error(e.to_string()))?;
        // pcap exposes instructions only through Display ("code jt jf k"), which keeps this free of unsafe.
        let instructions = program
            .get_instructions()
            .iter()
            .map(|instruction| {
                let text = instruction.to_string();
                let mut fields = text.split_whitespace();
                let mut next = || {
                    fields
                        .next()
                        .ok_or_else(|| error(format!("unexpected instruction {text:?}")))
                };
                let parse = |field: &str| {
                    field
                        .parse::<u64>()
                        .map_err(|e| error(format!("instruction {text:?}: {e}")))
                };
                let code = parse(next()?)?;
                let jt = parse(next()?)?;
                let jf = parse(next()?)?;
                let k = parse(next()?)?;
                Ok((code as u16, jt as u8, jf as u8, k as u32))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            expression,
            instructions,
            targets: None,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.instructions.is_empty()
    }

    /// The user's `expression` narrowed to packets from or to one of `targets` (the selected
    /// pods' addresses). An address list compiles to about 3.5 instructions per IPv4 address
    /// after libpcap's optimiser, so 500 pods on a node fit well within the kernel's 4096
    /// (see the tests). No targets: a program that rejects everything, so the ring keeps running
    /// and captures again as soon as a pod is selected.
    pub fn targeting(expression: &str, targets: &[IpAddr]) -> Result<Self, FilterError> {
        let mut sides = Vec::new();
        for (family, host) in [("ip", "ip host"), ("ip6", "ip6 host")] {
            let hosts: Vec<String> = targets
                .iter()
                .filter(|address| address.is_ipv4() == (family == "ip"))
                .map(|address| format!("{host} {address}"))
                .collect();
            if !hosts.is_empty() {
                sides.push(format!("({family} and ({}))", hosts.join(" or ")));
            }
        }
        if sides.is_empty() {
            return Ok(Self {
                expression: "(no targeted pod)".into(),
                instructions: vec![(0x06, 0, 0, 0)],
                targets: Some(0),
            });
        }
        let narrowing = sides.join(" or ");
        let filter = match expression.trim() {
            "" => Self::compile(&narrowing)?,
            user => Self::compile(&format!("({user}) and ({narrowing})"))?,
        };
        Ok(Self {
            targets: Some(targets.len()),
            ..filter
        })
    }
}

/// Reads a targets file: one address per line; blank lines and `#` comments are skipped. A line
/// that is not an address is an error naming it (the whole file is then ignored, not half of it).
pub fn parse_targets(text: &str) -> Result<Vec<IpAddr>, String> {
    let mut targets = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let address = line
            .parse()
            .map_err(|_| format!("line {}: {line:?} is not an IP address", number + 1))?;
        targets.push(address);
    }
    targets.sort_unstable();
    targets.dedup();
    Ok(targets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiles_tcpdump_syntax() {
        let filter = KernelFilter::compile("udp port 53 or tcp port 443").unwrap();
        assert!(filter.instructions.len() > 4);
        // Every classic BPF program ends in a return.
        assert_eq!(filter.instructions.last().unwrap().0 & 0x07, 0x06);
    }

    fn addresses(count: usize) -> Vec<IpAddr> {
        (0..count)
            .map(|i| IpAddr::from([10, 244, (i / 250) as u8, (i % 250 + 1) as u8]))
            .collect()
    }

    #[test]
    fn five_hundred_targeted_pods_fit_the_kernels_instruction_limit() {
        // BPF_MAXINSNS: the kernel refuses longer classic programs.
        const KERNEL_LIMIT: usize = 4096;
        let mut sizes = Vec::new();
        for count in [1, 10, 100, 500, 1000] {
            let filter = KernelFilter::targeting("tcp port 443", &addresses(count)).unwrap();
            sizes.push((count, filter.instructions.len()));
        }
        // Measured: 18, 36, 216, 1765 and about 3500 instructions.
        let at_500 = sizes.iter().find(|(count, _)| *count == 500).unwrap().1;
        assert!(at_500 < KERNEL_LIMIT / 2, "{sizes:?}");
        assert!(sizes.iter().all(|(_, size)| *size < KERNEL_LIMIT), "{sizes:?}");
        let v6: Vec<IpAddr> = (1..=100u16)
            .map(|i| IpAddr::from([0xfd00, 0, 0, 0, 0, 0, 0, i]))
            .collect();
        assert!(KernelFilter::targeting("", &v6).unwrap().instructions.len() < KERNEL_LIMIT);
    }

    #[test]
    fn no_target_rejects_everything_and_targets_narrow_the_users_filter() {
        let none = KernelFilter::targeting("tcp", &[]).unwrap();
        assert_eq!(none.instructions, [(0x06, 0, 0, 0)]);
        let some = KernelFilter::targeting("udp port 53", &addresses(2)).unwrap();
        assert_eq!(
            some.expression,
            "(udp port 53) and ((ip and (ip host 10.244.0.1 or ip host 10.244.0.2)))"
        );
    }

    #[test]
    fn targets_files_hold_one_address_per_line() {
        let text = "# pods of app=checkout\n10.244.0.7\n\nfd00::7  # and its IPv6\n10.244.0.7\n";
        let targets = parse_targets(text).unwrap();
        assert_eq!(targets.len(), 2);
        assert!(
            parse_targets("10.244.0.7\nnot-an-address\n")
                .unwrap_err()
                .contains("line 2")
        );
    }

    #[test]
    fn empty_expression_accepts_everything() {
        assert!(KernelFilter::compile("  ").unwrap().is_empty());
    }

    #[test]
    fn bad_expression_names_itself() {
        let error = KernelFilter::compile("tcp port eleventy").unwrap_err();
        assert_eq!(error.expression, "tcp port eleventy");
        assert!(
            error.to_string().contains("\"tcp port eleventy\" does not compile"),
            "{error}"
        );
    }
}
