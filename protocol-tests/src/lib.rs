//! Conformance suite support.

pub mod coordinator;
