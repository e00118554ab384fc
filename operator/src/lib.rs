//! `trawl-operator` as a library: `main.rs` wires these to a cluster; tests use them directly.
//!
//! A reconcile is a pipeline: [`observe`] (every read) -> [`decide`] (pure, from what was
//! observed) -> [`apply`] (server-side apply, Events, the status once). [`build`] makes the
//! desired children as typed objects, [`conditions`] the conditions, [`status`] the status they make, [`scaling`] the builtin
//! autoscaler's arithmetic; [`error`] names the action that failed.

pub mod apply;
pub mod build;
pub mod conditions;
pub mod config;
pub mod context;
pub mod decide;
pub mod endpoints;
pub mod error;
pub mod lease;
pub mod metrics;
pub mod names;
pub mod observe;
pub mod ports;
pub mod queue;
pub mod reconcile;
pub mod scaling;
pub mod status;
pub mod targets;
