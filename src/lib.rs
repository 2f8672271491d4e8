//! kgroup: a pure-Rust Kafka consumer-group client.

mod config_error;
pub mod consumer;
pub mod driver;
#[cfg(feature = "embedded-broker")]
pub mod embedded;
pub mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod group;
pub mod producer;
pub mod protocol;

pub use consumer::{Batch, ConsumerConfig, GroupConsumer, RebalanceListener};
pub use driver::cluster::{Cluster, ClusterConfig};
pub use driver::security::{SaslMechanism, Secret, SecurityConfig};
pub use error::{ConfigError, Error, NetworkError, Result, SecurityError};

/// The README's examples, compiled as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
