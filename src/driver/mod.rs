//! Tokio tasks: broker connections, the cluster view, the group driver and the fetcher.
//!
//! `connection` and `fetcher` are internal: `pub` only with the `test-support` feature (see
//! the crate docs); their public types are re-exported where the API uses them.

pub mod backoff;
pub mod cluster;
internal_modules!(connection, fetcher);
pub mod group;
mod jaas;
pub mod member_span;
mod sasl;
pub(crate) mod scram;
pub mod security;
