//! The values a filter condition takes (an object name, an address or network, a port, a
//! protocol), each checked the same way whether it comes as a query parameter or inside `q`.

use std::net::IpAddr;

/// Which kind of Kubernetes name a condition names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    Namespace,
    Pod,
    Workload,
    Service,
}

impl NameKind {
    pub const ALL: [Self; 4] = [Self::Namespace, Self::Pod, Self::Workload, Self::Service];

    pub fn word(self) -> &'static str {
        match self {
            Self::Namespace => "namespace",
            Self::Pod => "pod",
            Self::Workload => "workload",
            Self::Service => "service",
        }
    }

    pub(crate) fn from_word(word: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.word() == word)
    }
}

/// A Kubernetes object's name, optionally with its namespace (`shop/checkout`), checked against
/// the API server's own rules (DNS labels and subdomains) so that a typo is a 400, not an empty page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectName {
    pub namespace: Option<String>,
    /// None for a namespace filter (its name is the namespace).
    pub name: Option<String>,
}

impl ObjectName {
    pub(crate) fn parse(kind: NameKind, text: &str) -> Result<Self, String> {
        let (namespace, name) = match (kind, text.split_once('/')) {
            (NameKind::Namespace, _) => (Some(text), None),
            (_, Some((namespace, name))) => (Some(namespace), Some(name)),
            (_, None) => (None, Some(text)),
        };
        if let Some(namespace) = namespace
            && !is_dns_label(namespace)
        {
            return Err(format!(
                "{namespace:?} is not a namespace name (a DNS label: a-z, 0-9, -)"
            ));
        }
        if let Some(name) = name
            && !is_dns_subdomain(name)
        {
            return Err(format!(
                "{name:?} is not a {} name (lowercase letters, digits, - and .)",
                kind.word()
            ));
        }
        Ok(Self {
            namespace: namespace.map(str::to_owned),
            name: name.map(str::to_owned),
        })
    }
}

impl std::fmt::Display for ObjectName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.namespace, &self.name) {
            (Some(namespace), Some(name)) => write!(f, "{namespace}/{name}"),
            (Some(namespace), None) => f.write_str(namespace),
            (None, Some(name)) => f.write_str(name),
            (None, None) => Ok(()),
        }
    }
}

fn is_dns_label(text: &str) -> bool {
    (1..=63).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !text.starts_with('-')
        && !text.ends_with('-')
}

fn is_dns_subdomain(text: &str) -> bool {
    (1..=253).contains(&text.len()) && text.split('.').all(is_dns_label)
}

/// An address or a network in CIDR notation, kept as checked text for an `inet` parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network(pub(crate) String);

impl Network {
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let (address, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let address: IpAddr = address
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or network (10.0.0.5, 10.0.0.0/24, fd00::/64)"))?;
        if let Some(prefix) = prefix {
            let max = if address.is_ipv4() { 32 } else { 128 };
            match prefix.parse::<u8>() {
                Ok(bits) if bits <= max => {}
                _ => return Err(format!("{text:?}: the prefix length must be 0 to {max}")),
            }
        }
        Ok(Self(text.to_owned()))
    }
}

pub(crate) fn parse_port(text: &str) -> Result<u16, String> {
    // Digits only: Rust's parse would also take a leading `+`, which the schema's integer does not.
    text.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| text.parse::<u16>().ok())
        .flatten()
        .ok_or_else(|| format!("{text:?} is not a port number (0-65535)"))
}

pub(crate) fn check_protocol(text: &str) -> Result<String, String> {
    let valid = !text.is_empty() && text.len() <= 16 && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if valid {
        Ok(text.to_ascii_lowercase())
    } else {
        Err(format!(
            "{text:?} is not a protocol name (tcp, udp, icmp, dns, http, tls, ...)"
        ))
    }
}
