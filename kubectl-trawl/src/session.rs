//! One CaptureSession as the plugin handles it: the label of the ones `tap` made, their counts
//! in words, their removal.

use std::time::Duration;

use anyhow::anyhow;
use crds::{CaptureSession, PacketCounts};
use kube::Api;
use kube::api::DeleteParams;

use crate::errors;

/// The label that marks a session `tap` made, so that `sessions` can tell them apart.
pub const TAPPED_BY: &str = "trawl.dev/tapped-by";

/// `12 captured, 12 stored, 0 dropped` (a session whose sniffers reported nothing has none).
/// Copies of a packet seen at another capture point are not counted as captured twice.
pub fn describe(counts: Option<&PacketCounts>) -> String {
    let c = counts.cloned().unwrap_or_default();
    let captured = c.captured.saturating_sub(c.deduplicated);
    format!("{captured} captured, {} stored, {} dropped", c.stored, c.dropped)
}

/// Deletes a session and waits until it is gone (its finalizer removes its queue and data);
/// returns its last counts.
pub async fn remove(api: &Api<CaptureSession>, name: &str) -> anyhow::Result<Option<PacketCounts>> {
    let namespace = api.namespace().unwrap_or_default().to_owned();
    let session = api
        .get_opt(name)
        .await
        .map_err(|error| errors::sessions(error, &namespace))?
        .ok_or_else(|| anyhow!("no capture session {name} in namespace {namespace}"))?;
    let counts = session.status.and_then(|status| status.packets);
    api.delete(name, &DeleteParams::default())
        .await
        .map_err(|error| errors::sessions(error, &namespace))?;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while api.get_opt(name).await?.is_some() {
        if std::time::Instant::now() > deadline {
            eprintln!("{namespace}/{name} is being removed (its finalizer has not finished after a minute)");
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Ok(counts)
}
