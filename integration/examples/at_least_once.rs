//! At-least-once processing: poll a batch, process it, commit it synchronously, repeat.
//!
//! A batch is committed only after it is processed, so a crash in between re-delivers it (at
//! least once, never lost). The commit answers per partition:
//!
//! - `Committed`: stored, in the generation that owns the partition.
//! - `Fenced`: a rebalance gave the partition to another member before the commit. It was not
//!   sent (or the broker refused it as stale) and the new owner reads the batch again from the
//!   last committed offset, so there is nothing to do here: skip it.
//! - `Failed`: not stored. A timeout is worth another try (the lease is judged again, so a
//!   partition that moved meanwhile comes back `Fenced`); anything else stops the consumer.
//!
//! ```sh
//! KGROUP_BOOTSTRAP=127.0.0.1:9092 cargo run --example at_least_once -- orders order-processors
//! ```

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use kgroup::consumer::ConsumerRecord;
use kgroup::group::{CommitFailure, CommitOutcome, Lease, TopicPartition};
use kgroup::{ConfigError, ConsumerConfig, GroupConsumer};

/// Attempts at committing one batch before the consumer stops.
const COMMIT_ATTEMPTS: u32 = 3;

#[tokio::main]
pub async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bootstrap = std::env::var("KGROUP_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let mut args = std::env::args().skip(1);
    let topic = args.next().unwrap_or_else(|| "orders".into());
    let group = args.next().unwrap_or_else(|| "at-least-once".into());
    let stop = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            eprintln!("cannot wait for ctrl-c ({e}); stopping");
        }
    };
    let report = run(config(&bootstrap, &group)?, &topic, stop).await?;
    println!("{report:#?}");
    Ok(())
}

/// Why the consumer stopped before it was asked to.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The consumer failed (subscribing, polling, closing).
    #[error(transparent)]
    Consumer(#[from] kgroup::Error),
    /// A processed batch could not be committed; stopping re-delivers it to the next owner.
    #[error("commit of {partition} at offset {offset} failed: {outcome:?}")]
    Commit {
        /// The partition.
        partition: TopicPartition,
        /// The offset that was not stored.
        offset: i64,
        /// Why.
        outcome: CommitOutcome,
    },
}

/// What the consumer did until it stopped.
#[derive(Debug, Default)]
pub struct Report {
    /// Records processed, per partition.
    pub processed: BTreeMap<TopicPartition, u64>,
    /// Bytes of record values processed.
    pub bytes: u64,
    /// The last offset committed per partition (the next record to read).
    pub committed: BTreeMap<TopicPartition, i64>,
    /// Batches whose partition moved before their commit: their new owner reads them again.
    pub fenced: u64,
    /// Commits tried again after a timeout.
    pub retried: u64,
}

/// Manual commits, and a new group starts at the beginning of the topic.
pub fn config(bootstrap: &str, group: &str) -> Result<ConsumerConfig, ConfigError> {
    ConsumerConfig::from_properties([
        ("bootstrap.servers", bootstrap),
        ("group.id", group),
        ("enable.auto.commit", "false"),
        ("auto.offset.reset", "earliest"),
    ])
}

/// Consumes `topic` until `stop` completes, then leaves the group.
///
/// Not cancel-safe: dropped, it stops without `close`, so the group waits out the session
/// timeout before its partitions move. Complete `stop` instead.
pub async fn run(config: ConsumerConfig, topic: &str, stop: impl Future<Output = ()>) -> Result<Report, RunError> {
    let mut consumer = GroupConsumer::subscribe(config, &[topic]).await?;
    let mut report = Report::default();
    let consumed = consume(&mut consumer, &mut report, stop).await;
    // Leave on errors too: the partitions move now instead of after the session timeout.
    let closed = consumer.close().await;
    consumed?;
    closed?;
    Ok(report)
}

async fn consume(
    consumer: &mut GroupConsumer,
    report: &mut Report,
    stop: impl Future<Output = ()>,
) -> Result<(), RunError> {
    tokio::pin!(stop);
    loop {
        // `poll` is cancel-safe: a batch it had in hand when `stop` won is not lost.
        let batch = tokio::select! {
            () = &mut stop => return Ok(()),
            polled = consumer.poll(consumer.max_poll_records(), Duration::from_secs(1)) => polled?,
        };
        // `None`: nothing arrived within the second (a new group's first join takes a few).
        let Some(batch) = batch else { continue };
        for record in &batch.records {
            report.bytes += process(record);
        }
        *report.processed.entry(batch.partition.clone()).or_default() += batch.records.len() as u64;
        commit(consumer, batch.lease().clone(), report).await?;
    }
}

/// Stands in for the application's work: here, the size of the record's value.
fn process(record: &ConsumerRecord) -> u64 {
    record.value().map_or(0, |value| value.len() as u64)
}

/// Commits one processed batch by its lease, trying again after a timeout.
async fn commit(consumer: &GroupConsumer, lease: Lease, report: &mut Report) -> Result<(), RunError> {
    for attempt in 1..=COMMIT_ATTEMPTS {
        // One batch is one partition, so one result comes back.
        for result in consumer.commit_leases(vec![lease.clone()]).await? {
            match result.outcome {
                CommitOutcome::Committed { .. } => {
                    report.committed.insert(result.partition, result.offset);
                    return Ok(());
                }
                CommitOutcome::Fenced { .. } => {
                    report.fenced += 1;
                    return Ok(());
                }
                CommitOutcome::Failed { reason: CommitFailure::TimedOut | CommitFailure::AttemptsExhausted { .. } }
                    if attempt < COMMIT_ATTEMPTS =>
                {
                    report.retried += 1;
                }
                // A later commit of the partition already landed: it covers this batch.
                CommitOutcome::Failed { reason: CommitFailure::WouldMoveBackwards { .. } } => return Ok(()),
                // Refused by the broker, the member gone or failed, or an outcome this code does
                // not know (`CommitOutcome` may grow): not stored, so stop.
                outcome => {
                    return Err(RunError::Commit { partition: result.partition, offset: result.offset, outcome })
                }
            }
        }
    }
    Ok(())
}
