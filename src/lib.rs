//! kgroup: a pure-Rust Kafka consumer-group client.

pub mod protocol;
