//! Leader election on a Lease: only its holder reconciles, so that two replicas never write at
//! once. A standby takes over when the leader stops renewing (after `--lease-duration`).

use anyhow::Context as _;
use kube::Client;
use tokio::sync::watch;

use crate::config::Config;

/// Waits until this process holds the Lease; the receiver then says whether it still does.
pub async fn wait_to_lead(client: &Client, config: &Config) -> anyhow::Result<watch::Receiver<bool>> {
    let namespace = config.own_namespace();
    let identity = format!(
        "{}-{}",
        std::env::var("POD_NAME").unwrap_or_else(|_| "trawl-operator".to_owned()),
        std::process::id()
    );
    let lease_seconds = config.lease_duration.as_secs().max(2);
    let lease = kube_lease_manager::LeaseManagerBuilder::new(client.clone(), &config.lease_name)
        .with_namespace(&namespace)
        .with_identity(&identity)
        .with_duration(lease_seconds)
        .with_grace((lease_seconds / 3).max(1))
        .build()
        .await
        .context("cannot set up leader election")?;
    // The returned task renews the Lease; dropping its handle detaches it, and it runs for as
    // long as the receiver lives.
    let (mut leading, _renewing) = lease.watch().await;
    tracing::info!(lease = %config.lease_name, %namespace, %identity, "waiting to lead");
    while !*leading.borrow_and_update() {
        leading.changed().await.context("leader election stopped")?;
    }
    tracing::info!(%identity, "leading");
    Ok(leading)
}
