//! Test support for Trawl's integration tests: each test gets real services of its own.
//!
//! - [`postgres::TestDatabase`]: a fresh database on the PostgreSQL that `hack/services.sh` starts.
//! - [`rabbitmq::TestVhost`]: a fresh vhost on the RabbitMQ that `hack/services.sh` starts.
//! - [`control_plane::ControlPlane`]: a real kube-apiserver with kwok nodes (`hack/control-plane/up.sh`),
//!   shared by the tests of one test binary; [`control_plane::TestNamespace`] gives each test a namespace.
//!
//! - [`forward::Forward`]: a TCP forwarder that lets pods on the real node reach those services.
//! - [`netns::TestNetwork`]: a network namespace and veth pair, with [`frames`] to send through it.
//! - [`batches`]: batches in the sniffer's wire format, published as a sniffer would.
//! - [`metrics`]: a process's `/metrics`, and one series or a sum out of it.
//! - [`process::Service`]: a service binary under test, killed when the test ends.
//!
//! Everything is removed when the handle drops, also when the test panics.

pub mod batches;
pub mod certificates;
pub mod control_plane;
pub mod forward;
pub mod frames;
pub mod metrics;
pub mod netns;
pub mod pcap;
pub mod pods;
pub mod postgres;
pub mod process;
pub mod rabbitmq;
mod wait;

pub use wait::wait_until;

use std::path::PathBuf;

/// The repository's root folder.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit lives one folder below the repository root")
        .to_path_buf()
}

/// A short random suffix for names that must not collide between tests running in parallel.
pub fn unique_suffix() -> String {
    use rand::Rng;
    let n: u64 = rand::rng().random();
    format!("{:010x}", n & 0xff_ffff_ffff)
}
