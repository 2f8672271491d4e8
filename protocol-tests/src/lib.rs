//! Conformance suite support.

pub mod coordinator;
pub mod server;
pub mod sim;
