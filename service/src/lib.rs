//! What every Trawl binary needs besides its job, in one place so that the four behave alike:
//! [`logging::init`], the [`admin`] routes (`/metrics` as OpenMetrics, `/healthz`, `/readyz`)
//! and [`shutdown::signal`]. Database migrations in the background live beside the migrator, in
//! the `database` crate, since the sniffer has no database.

pub mod admin;
pub mod logging;
pub mod shutdown;
