//! The host port each session's sniffers take, and who holds one until the cluster shows it.
//!
//! Sniffers share the node's network namespace and the scheduler treats a host-network container
//! port as a host port, so two sessions on one port would leave one Pending. A port is free when
//! no sniffer DaemonSet in the cluster uses it and no other reconcile holds it: a reservation
//! belongs to one session's reconcile, from the decision that needs it until its DaemonSet is
//! applied (then the cluster shows the port) or the reconcile ends without one.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;

/// Sniffers' metrics and health ports come from this range.
pub const SNIFFER_PORTS: std::ops::Range<i32> = 20_000..30_000;

/// Where a session's port search starts: derived from its uid (FNV-1a), so that sessions spread
/// over the range and one session asks for the same port every time.
pub fn preferred(uid: &str) -> i32 {
    let hash = uid.bytes().fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    SNIFFER_PORTS.start + (hash % SNIFFER_PORTS.len() as u64) as i32
}

/// The first port from `preferred` on (wrapping around the range) not in `taken`.
pub fn first_free(preferred: i32, taken: &BTreeSet<i32>) -> Option<i32> {
    let width = SNIFFER_PORTS.len() as i32;
    (0..width)
        .map(|step| SNIFFER_PORTS.start + (preferred - SNIFFER_PORTS.start + step).rem_euclid(width))
        .find(|port| !taken.contains(port))
}

/// Ports held by reconciles in flight, by session uid.
#[derive(Default)]
pub struct SnifferPorts {
    held: tokio::sync::Mutex<BTreeMap<String, i32>>,
}

impl SnifferPorts {
    /// A port for session `uid`: the one it holds, or the first free one given the ports
    /// `in_use` reads from the cluster. The read happens under the lock, so two new sessions
    /// never get the same port. `None` when every port is taken.
    pub async fn reserve<F, Fut, E>(&self, uid: &str, in_use: F) -> Result<Option<i32>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<BTreeSet<i32>, E>>,
    {
        let mut held = self.held.lock().await;
        if let Some(port) = held.get(uid) {
            return Ok(Some(*port));
        }
        let mut taken = in_use().await?;
        taken.extend(held.values().copied());
        let port = first_free(preferred(uid), &taken);
        if let Some(port) = port {
            held.insert(uid.to_owned(), port);
        }
        Ok(port)
    }

    /// Ends session `uid`'s reservation: its DaemonSet now shows the port, or it has none.
    pub async fn release(&self, uid: &str) {
        self.held.lock().await.remove(uid);
    }

    #[cfg(test)]
    async fn held(&self) -> BTreeMap<String, i32> {
        self.held.lock().await.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "2f1c6c4e-6d43-4c3b-9a4f-0d5d3c7c1a01";
    const B: &str = "8a7b1f0e-2c9d-4e5f-8a1b-3c4d5e6f7a02";

    fn cluster(ports: &[i32]) -> impl Future<Output = Result<BTreeSet<i32>, ()>> + use<> {
        let ports: BTreeSet<i32> = ports.iter().copied().collect();
        async move { Ok(ports) }
    }

    #[test]
    fn sessions_start_their_search_at_different_ports() {
        assert_ne!(preferred(A), preferred(B));
        assert!(SNIFFER_PORTS.contains(&preferred(A)));
        assert_eq!(preferred(A), preferred(A));
    }

    #[test]
    fn the_first_free_port_wraps_around_the_range() {
        assert_eq!(first_free(24_205, &BTreeSet::new()), Some(24_205));
        assert_eq!(first_free(24_205, &[24_205, 24_206].into()), Some(24_207));
        assert_eq!(first_free(29_999, &[29_999].into()), Some(20_000));
        assert_eq!(first_free(25_000, &SNIFFER_PORTS.collect()), None);
    }

    #[tokio::test]
    async fn a_held_port_is_not_given_to_another_session() {
        let ports = SnifferPorts::default();
        let a = ports.reserve(A, || cluster(&[])).await.unwrap().unwrap();
        assert_eq!(a, preferred(A));
        // The cluster shows every port in use but A's (not applied yet) and one other.
        let other = if a == SNIFFER_PORTS.start {
            a + 1
        } else {
            SNIFFER_PORTS.start
        };
        let in_use: Vec<i32> = SNIFFER_PORTS.filter(|p| *p != a && *p != other).collect();
        assert_eq!(ports.reserve(B, || cluster(&in_use)).await.unwrap(), Some(other));
        // Asking again is the same reservation, whatever the cluster shows meanwhile.
        assert_eq!(ports.reserve(A, || cluster(&[a])).await.unwrap(), Some(a));
    }

    #[tokio::test]
    async fn a_released_port_is_free_unless_the_cluster_shows_it() {
        let ports = SnifferPorts::default();
        let a = ports.reserve(A, || cluster(&[])).await.unwrap().unwrap();
        ports.release(A).await;
        assert!(
            ports.held().await.is_empty(),
            "a stalled or deleted session holds nothing"
        );
        // The DaemonSet was applied: the cluster shows A's port, so A keeps it ...
        assert_eq!(
            ports.reserve(A, || cluster(&[])).await.unwrap(),
            Some(a),
            "the same uid asks for the same port"
        );
        ports.release(A).await;
        // ... and another session that starts its search there skips it.
        let taken: BTreeSet<i32> = [a].into();
        assert_ne!(first_free(a, &taken), Some(a));
    }

    #[tokio::test]
    async fn no_port_when_every_port_is_taken() {
        let ports = SnifferPorts::default();
        let every: Vec<i32> = SNIFFER_PORTS.collect();
        assert_eq!(ports.reserve(A, || cluster(&every)).await.unwrap(), None);
        assert!(ports.held().await.is_empty());
    }

    #[tokio::test]
    async fn a_failed_read_reserves_nothing() {
        let ports = SnifferPorts::default();
        let failed = ports
            .reserve(A, || async { Err::<BTreeSet<i32>, _>("forbidden") })
            .await;
        assert_eq!(failed, Err("forbidden"));
        assert!(ports.held().await.is_empty());
    }
}
