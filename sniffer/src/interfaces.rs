//! Which interfaces to capture on: the configured list, or every interface that is up and not
//! loopback, re-read periodically so that new ones (pod veths) are picked up.

use pnet::datalink;

pub enum Selection {
    Named(Vec<String>),
    AllUp,
}

impl Selection {
    pub fn from_config(names: &[String]) -> Self {
        let names: Vec<String> = names
            .iter()
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty())
            .collect();
        if names.is_empty() {
            Self::AllUp
        } else {
            Self::Named(names)
        }
    }

    /// The interfaces to capture on now.
    pub fn current(&self) -> Vec<String> {
        match self {
            Self::Named(names) => names.clone(),
            Self::AllUp => datalink::interfaces()
                .into_iter()
                .filter(|interface| interface.is_up() && !interface.is_loopback())
                .map(|interface| interface.name)
                .collect(),
        }
    }
}
