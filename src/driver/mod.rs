//! Tokio tasks: broker connections, the cluster view, the group driver and the fetcher.
//!
//! `connection` and `fetcher` are internal: `pub` only with the `test-support` feature (see
//! the crate docs); their public types are re-exported where the API uses them.

pub mod backoff;
pub mod cluster;
#[cfg(feature = "test-support")]
pub mod connection;
#[cfg(not(feature = "test-support"))]
#[allow(unreachable_pub)] // its items are `pub` for the test-support build
pub(crate) mod connection;
#[cfg(feature = "test-support")]
pub mod fetcher;
#[cfg(not(feature = "test-support"))]
#[allow(unreachable_pub)] // its items are `pub` for the test-support build
pub(crate) mod fetcher;
pub mod group;
mod sasl;
pub(crate) mod scram;
pub mod security;
