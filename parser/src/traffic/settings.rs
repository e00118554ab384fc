//! What a session asks of its traffic metrics (`spec.metrics`), as the operator passes it:
//! `--traffic-metrics source=workload,destination=workload,max-edges=1000`.

use std::str::FromStr;

/// What names one end of an edge (the CaptureSession's `EdgeContext`; the parser does not link
/// the Kubernetes types for four words).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Context {
    #[default]
    Workload,
    Namespace,
    Pod,
    None,
}

impl FromStr for Context {
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
pub struct Settings {
    pub source: Context,
    pub destination: Context,
    /// Edges with series of their own; the rest fold into `other`.
    pub max_edges: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            source: Context::Workload,
            destination: Context::Workload,
            max_edges: 1000,
        }
    }
}

impl FromStr for Settings {
    type Err = String;
    /// `key=value` pairs separated by commas; keys left out keep their defaults.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut settings = Self::default();
        for pair in text.split(',').map(str::trim).filter(|pair| !pair.is_empty()) {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| format!("{pair:?} is not key=value"))?;
            match key {
                "source" => settings.source = value.parse()?,
                "destination" => settings.destination = value.parse()?,
                "max-edges" => {
                    settings.max_edges = value
                        .parse()
                        .ok()
                        .filter(|edges| (1..=100_000).contains(edges))
                        .ok_or_else(|| format!("max-edges {value:?} is not a number from 1 to 100000"))?;
                }
                other => return Err(format!("unknown key {other:?}: source, destination or max-edges")),
            }
        }
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_the_operator_writes() {
        let settings: Settings = "source=pod,destination=namespace,max-edges=10".parse().unwrap();
        assert_eq!(
            settings,
            Settings {
                source: Context::Pod,
                destination: Context::Namespace,
                max_edges: 10
            }
        );
        assert_eq!("".parse::<Settings>().unwrap(), Settings::default());
    }

    #[test]
    fn names_what_is_wrong() {
        assert!("source=team".parse::<Settings>().unwrap_err().contains("team"));
        assert!("max-edges=0".parse::<Settings>().unwrap_err().contains("max-edges"));
        assert!("colour=red".parse::<Settings>().unwrap_err().contains("colour"));
    }
}
