//! Tokio tasks: broker connections, the cluster view, and (later) the group and fetch drivers.

pub mod backoff;
pub mod cluster;
pub mod connection;
pub mod fetcher;
pub mod group;
mod sasl;
pub(crate) mod scram;
pub mod security;
