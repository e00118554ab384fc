//! Logs to stderr, filtered by `TRAWL_LOG` (tracing's env-filter syntax, e.g. `debug` or
//! `info,trawl_parser=debug`).

/// The filter when `TRAWL_LOG` is unset. lapin logs every message the broker returns (a full
/// queue's rejections among them) at warn; the binaries count those themselves.
const DEFAULT: &str = "info,lapin::returned_messages=error";

/// Installs the global subscriber; call once, first thing in `main`.
pub fn init() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("TRAWL_LOG").unwrap_or_else(|_| DEFAULT.into()))
        .init();
}
