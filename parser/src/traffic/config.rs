//! What a session asks of its traffic metrics (`spec.metrics`), as the operator passes it:
//! `--traffic-metrics source=workload,destination=workload,max-edges=1000`.

use std::str::FromStr;

/// What names one end of an edge (the CaptureSession's `EdgeContext`; the parser does not link
/// the Kubernetes types for four words).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EdgeContext {
    #[default]
    Workload,
    Namespace,
    Pod,
    None,
}

impl FromStr for EdgeContext {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "workload" => Ok(Self::Workload),
            "namespace" => Ok(Self::Namespace),
            "pod" => Ok(Self::Pod),
            "none" => Ok(Self::None),
            other => Err(format!("{other:?} is not a context: workload, namespace, pod or none")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrafficConfig {
    pub source: EdgeContext,
    pub destination: EdgeContext,
    /// Edges with series of their own; the rest fold into `other`.
    pub max_edges: usize,
}

impl Default for TrafficConfig {
    fn default() -> Self {
        Self {
            source: EdgeContext::Workload,
            destination: EdgeContext::Workload,
            max_edges: 1000,
        }
    }
}

impl FromStr for TrafficConfig {
    type Err = String;
    /// `key=value` pairs separated by commas; keys left out keep their defaults.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut config = Self::default();
        for pair in text.split(',').map(str::trim).filter(|pair| !pair.is_empty()) {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| format!("{pair:?} is not key=value"))?;
            match key {
                "source" => config.source = value.parse()?,
                "destination" => config.destination = value.parse()?,
                "max-edges" => {
                    config.max_edges = value
                        .parse()
                        .ok()
                        .filter(|edges| (1..=100_000).contains(edges))
                        .ok_or_else(|| format!("max-edges {value:?} is not a number from 1 to 100000"))?;
                }
                other => return Err(format!("unknown key {other:?}: source, destination or max-edges")),
            }
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_the_operator_writes() {
        let config: TrafficConfig = "source=pod,destination=namespace,max-edges=10".parse().unwrap();
        assert_eq!(
            config,
            TrafficConfig {
                source: EdgeContext::Pod,
                destination: EdgeContext::Namespace,
                max_edges: 10
            }
        );
        assert_eq!("".parse::<TrafficConfig>().unwrap(), TrafficConfig::default());
    }

    #[test]
    fn names_what_is_wrong() {
        assert!("source=team".parse::<TrafficConfig>().unwrap_err().contains("team"));
        assert!(
            "max-edges=0"
                .parse::<TrafficConfig>()
                .unwrap_err()
                .contains("max-edges")
        );
        assert!("colour=red".parse::<TrafficConfig>().unwrap_err().contains("colour"));
    }
}
