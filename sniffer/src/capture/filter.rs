//! Compiles tcpdump expressions with libpcap's compiler; the program is then attached to the
//! capture socket so that unwanted packets never leave the kernel.

/// A compiled classic BPF program: (code, jt, jf, k) per instruction. Empty: accept everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelFilter {
    pub expression: String,
    pub instructions: Vec<(u16, u8, u8, u32)>,
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
        })
    }

    pub fn is_empty(&self) -> bool {
        self.instructions.is_empty()
    }
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
