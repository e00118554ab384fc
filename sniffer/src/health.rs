//! What the sniffer's `/readyz` and `/metrics` report (the routes are `service::admin`'s).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::accounting::Accounting;

/// `/metrics` from the accounting; ready once connected to the broker and capturing on at least
/// one interface.
pub fn routes(accounting: Arc<Accounting>, connected: Arc<AtomicBool>) -> axum::Router {
    let metrics = accounting.clone();
    service::admin::routes(
        move || metrics.encode(),
        move || -> service::admin::Readiness {
            let ready = if !connected.load(Ordering::Acquire) {
                Err("not connected to the broker".to_owned())
            } else if accounting.interfaces.get() == 0 {
                Err("not capturing on any interface".to_owned())
            } else {
                Ok(())
            };
            Box::pin(std::future::ready(ready))
        },
    )
}
