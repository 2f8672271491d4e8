//! kgroup: a pure-Rust Kafka consumer-group client that speaks the wire protocol itself and
//! gates every offset commit on the group generation it knows.
//!
//! # The model: leases and outcomes
//!
//! A consumer group hands each partition to one member per *generation*. A member that commits
//! with a generation the coordinator has moved past gets ILLEGAL_GENERATION; one that commits a
//! partition it no longer owns would overwrite its new owner's progress. kgroup makes both
//! visible and safe:
//!
//! - every [`Batch`] the consumer hands out carries a [`Lease`](group::Lease): the partition,
//!   the offset to commit, the generation it was read in, and the first generation of the
//!   member's uninterrupted ownership of the partition (its *ownership streak*);
//! - a commit is judged per partition before anything is sent: within the same streak it goes
//!   out stamped with the member's current generation (also across a rebalance that kept the
//!   partition), otherwise it is fenced and never sent; while the member joins, commits wait
//!   for the next generation instead of racing it;
//! - the answer is one [`PartitionCommit`](group::PartitionCommit) per partition, whose
//!   [`CommitOutcome`](group::CommitOutcome) is `Committed` (with the generation it went out
//!   in), `Fenced` (the partition moved: its records will be read again by their new owner,
//!   at-least-once) or `Failed` (with the reason), never a bare error code;
//! - when a rebalance starts, the member keeps its generation until the batches the
//!   application holds are committed (or a timeout passes), so work in hand is not lost.
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//! use kgroup::group::CommitOutcome;
//! use kgroup::{ConsumerConfig, GroupConsumer};
//!
//! # async fn run() -> Result<(), kgroup::Error> {
//! let mut config = ConsumerConfig::new("127.0.0.1:9092", "order-processors");
//! config.enable_auto_commit = false;
//! let mut consumer = GroupConsumer::subscribe(config, &["orders"]).await?;
//! loop {
//!     // `None`: nothing arrived within the second.
//!     let Some(batch) = consumer.poll(1000, Duration::from_secs(1)).await? else { continue };
//!     for record in &batch.records {
//!         println!("{}-{}@{}", record.topic(), record.partition(), record.offset());
//!     }
//!     for result in consumer.commit(&batch).await? {
//!         if let CommitOutcome::Fenced { .. } = result.outcome {
//!             println!("{} moved to another member before its commit", result.partition);
//!         }
//!     }
//! }
//! # }
//! ```
//!
//! A member's state can be read from inside ([`GroupConsumer::group_state`], its event stream)
//! and from outside: [`telemetry`] renders its metrics as Prometheus text, the feature
//! `debug-http` serves its snapshot, events and a live page, and the feature `cli` builds the
//! `kgroup` command line.
//!
//! # Layout
//!
//! | module | owns |
//! |---|---|
//! | [`protocol`] | the wire layer over `kafka-protocol`: framing, headers, the bounds check of response bodies, version negotiation, the error-code table, the `consumer` protocol's bytes; no IO |
//! | [`group`] | the sans-IO membership machine ([`group::GroupMachine`]): states, generations, leases and commit gating, assignors, request builders ([`group::build`]), events and snapshots |
//! | [`driver`] | tokio tasks: broker connections, the cluster view ([`Cluster`]), the group driver ([`driver::group::GroupHandle`]), the fetcher, TLS and SASL |
//! | [`consumer`] | [`GroupConsumer`] (a group member) and [`AssignedConsumer`] (partitions the application names, no membership): streams of per-partition batches, with their sans-IO choreography ([`consumer::session`]) and configuration |
//! | [`producer`] | a small producer for loading data and demos |
//! | [`admin`] | groups seen from outside: listing, members, committed offsets, lag |
//! | `cli` | feature `cli`: the `kgroup` command line's logic, run in-process by its tests |
//! | [`error`] | the error types, each classified by the action it demands |
//! | [`telemetry`] | each member's metrics, as Prometheus text and (feature `metrics`) through the `metrics` facade |
//! | `debug_http` | feature `debug-http`: a read-only HTTP server of snapshots, events and a live page |
//! | `embedded` | feature `embedded-broker`: starts nisshi or Apache Kafka 3.6 locally for demos and tests |
//! | `fuzzing` | feature `fuzzing`: entry points for the targets in `fuzz/` |
//!
//! Layers depend downwards only: `protocol` ← `group` ← `driver` ← `consumer` (and `producer`).
//! `group` and `consumer::session` take no clock and do no IO: every input carries `now`, and
//! outputs are polled, so the simulator drives the same code in virtual time; `driver` and
//! `consumer` run them on tokio.
//!
//! # Internals and the `test-support` feature
//!
//! The wire-level internals (`protocol::{codec, frame, versions}`, `driver::{connection,
//! fetcher}` and the connection methods of [`Cluster`]) are `pub(crate)`. The feature
//! `test-support` makes them `pub` for the workspace's test crates, benches and fuzz targets;
//! it is not part of the API. A module is declared by `internal_modules!`: `pub` with the
//! feature, `pub(crate)` with `#[allow(unreachable_pub)]` without it (its items are `pub` for
//! the feature's sake); [`Cluster`]'s raw connections get `pub` wrappers under the feature.
//! Public types defined in an internal module are re-exported where the API uses them
//! ([`consumer::ConsumerRecord`], [`consumer::TimestampType`], [`consumer::session::StartPosition`],
//! [`driver::cluster::ConnectionConfig`], [`protocol::NegotiatedVersions`]).

#![warn(missing_docs, unreachable_pub)]

/// Declares internal modules: `pub` for the test crates under `test-support`, `pub(crate)`
/// otherwise (their items are `pub` for that build, hence the allowed `unreachable_pub`).
macro_rules! internal_modules {
    ($($name:ident),+ $(,)?) => {$(
        #[cfg(feature = "test-support")]
        pub mod $name;
        #[cfg(not(feature = "test-support"))]
        #[allow(unreachable_pub)]
        pub(crate) mod $name;
    )+};
}

pub mod admin;
#[cfg(feature = "cli")]
pub mod cli;
mod config_error;
pub mod consumer;
#[cfg(feature = "debug-http")]
pub mod debug_http;
pub mod driver;
#[cfg(feature = "embedded-broker")]
pub mod embedded;
pub mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod group;
pub mod producer;
pub mod properties;
pub mod protocol;
pub mod telemetry;

pub use consumer::{
    AssignedConsumer, Batch, ConfigWarning, Consumer, ConsumerConfig, GroupConsumer, RebalanceContext,
    RebalanceListener,
};
pub use driver::cluster::{Cluster, ClusterConfig};
pub use driver::security::{SaslMechanism, Secret, SecurityConfig};
pub use error::{ClosedCause, ConfigError, Error, FetchFailure, NetworkError, Result, SecurityError};

/// The README's examples, compiled as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
