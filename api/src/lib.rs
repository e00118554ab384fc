//! `trawl-api` as a library: `main.rs` serves [`router::router`]; tests drive it in-process.
//!
//! [`state`] holds what handlers share; [`routes`] the handlers, each annotated with its OpenAPI
//! operation; [`filter`] turns query parameters and the `q` expression into SQL; [`auth`] the
//! bearer tokens and the audit log; [`segments`] reads packets' kept bytes back; [`pool`] the
//! read-only connections the routes query through.

pub mod aggregated;
pub mod auth;
pub mod config;
pub mod cursor;
pub mod docs;
pub mod endpoints;
pub mod error;
pub mod filter;
pub mod follow;
pub mod input;
pub mod limits;
pub mod metrics;
pub mod pool;
pub mod router;
pub mod routes;
pub mod segments;
pub mod state;
