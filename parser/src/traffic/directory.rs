//! Who holds an address now, from the endpoint history the operator records
//! (`0011_endpoint_history.sql`), refreshed in the background so that naming an edge never waits
//! on the database.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use super::config::EdgeContext;

/// One holder of an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// `pod`, `service` or `node`.
    pub kind: String,
    pub namespace: Option<String>,
    /// The pod's, Service's or node's name.
    pub name: String,
    /// The pod's owning workload, if any.
    pub workload: Option<String>,
}

/// An end of an edge as its labels show it: namespace and name in the chosen context.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct End {
    pub namespace: String,
    pub name: String,
}

/// Addresses outside every pod, Service and node the operator knows.
pub const EXTERNAL: &str = "external";

impl End {
    pub fn of(holder: Option<&Holder>, context: EdgeContext) -> Self {
        let (namespace, name) = match (holder, context) {
            (_, EdgeContext::None) => (String::new(), String::new()),
            (None, _) => (String::new(), EXTERNAL.to_owned()),
            (Some(holder), EdgeContext::Namespace) if holder.kind == "node" => (String::new(), "node".to_owned()),
            (Some(holder), EdgeContext::Namespace) => (holder.namespace.clone().unwrap_or_default(), String::new()),
            (Some(holder), EdgeContext::Pod) => (holder.namespace.clone().unwrap_or_default(), holder.name.clone()),
            (Some(holder), EdgeContext::Workload) => (
                holder.namespace.clone().unwrap_or_default(),
                holder.workload.clone().unwrap_or_else(|| holder.name.clone()),
            ),
        };
        Self { namespace, name }
    }
}

/// How often the holders are read again: a new pod's first edge may be named `external` for
/// this long.
pub const REFRESH: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(sqlx::FromRow)]
struct HolderRow {
    address: String,
    kind: String,
    namespace: Option<String>,
    name: String,
    workload: Option<String>,
}

#[derive(Debug, Default, Clone)]
pub struct Directory {
    holders: Arc<RwLock<HashMap<IpAddr, Holder>>>,
}

impl Directory {
    pub fn holder(&self, address: IpAddr) -> Option<Holder> {
        self.holders.read().expect("not poisoned").get(&address).cloned()
    }

    /// Replaces the known holders with the current ones: open rows, and rows closed in the last
    /// five minutes (a pod's last packets arrive after it is gone). A pod before a Service before
    /// a node for an address several hold, the open row before a closed one.
    pub async fn refresh(&self, pool: &sqlx::PgPool) -> Result<usize, sqlx::Error> {
        let rows: Vec<HolderRow> = sqlx::query_as(
            "SELECT DISTINCT ON (address) host(address) AS address, kind, namespace, name, workload FROM endpoint_history \
             WHERE until IS NULL OR until > now() - interval '5 minutes' \
             ORDER BY address, until IS NULL DESC, kind = 'node', kind = 'service', since DESC",
        )
        .fetch_all(pool)
        .await?;
        let holders: HashMap<IpAddr, Holder> = rows
            .into_iter()
            .filter_map(|row| {
                let HolderRow {
                    address,
                    kind,
                    namespace,
                    name,
                    workload,
                } = row;
                Some((
                    address.parse().ok()?,
                    Holder {
                        kind,
                        namespace,
                        name,
                        workload,
                    },
                ))
            })
            .collect();
        let count = holders.len();
        *self.holders.write().expect("not poisoned") = holders;
        Ok(count)
    }

    #[cfg(test)]
    pub fn insert(&self, address: IpAddr, holder: Holder) {
        self.holders.write().expect("not poisoned").insert(address, holder);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Holder {
        Holder {
            kind: "pod".into(),
            namespace: Some("shop".into()),
            name: "web-7d9-x2".into(),
            workload: Some("web".into()),
        }
    }

    #[test]
    fn names_an_end_in_each_context() {
        let end = |holder: Option<&Holder>, context| {
            let End { namespace, name } = End::of(holder, context);
            (namespace, name)
        };
        assert_eq!(end(Some(&pod()), EdgeContext::Workload), ("shop".into(), "web".into()));
        assert_eq!(
            end(Some(&pod()), EdgeContext::Pod),
            ("shop".into(), "web-7d9-x2".into())
        );
        assert_eq!(
            end(Some(&pod()), EdgeContext::Namespace),
            ("shop".into(), String::new())
        );
        assert_eq!(end(Some(&pod()), EdgeContext::None), (String::new(), String::new()));
        assert_eq!(end(None, EdgeContext::Workload), (String::new(), EXTERNAL.into()));
        let bare = Holder {
            workload: None,
            ..pod()
        };
        assert_eq!(
            end(Some(&bare), EdgeContext::Workload),
            ("shop".into(), "web-7d9-x2".into())
        );
    }
}
