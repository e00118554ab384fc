//! An end-to-end harness: the real `trawl-sniffer` on a veth of a test-made network namespace,
//! a real RabbitMQ, one or more real `trawl-parser` processes and a real PostgreSQL, a known
//! traffic mix offered at a chosen rate, and the accounting of where every packet went.
//!
//! Ground truth is what was offered: the generator's own count, checked against the host end's
//! kernel rx counter. The sniffer captures only the offered traffic (a kernel filter on UDP port 9).
//! [`Accounting::assert_balanced`] demands `offered = stored + kernel drops + drops by reason` with
//! no duplicates. Used by `tests/accounting.rs` and by the sustained-rate benchmark.

mod api;
mod pipeline;

pub use api::TrawlApi;
pub use pipeline::{Accounting, Broker, BrokerChoice, Database, Pipeline, PipelineOptions};
