//! Conformance suite support.

pub mod conformance;
pub mod coordinator;
pub mod server;
pub mod sim;
