//! Commit on revoke: store each batch's offset once it is processed, commit the stored offsets
//! every few seconds, and commit them in the rebalance listener's `revoked` before the
//! partitions move.
//!
//! Committing every few seconds instead of after every batch saves a round trip per batch, but
//! leaves processed records uncommitted when a rebalance takes their partition away: the new
//! owner would read them again. `revoked` runs while this member still owns the partitions, and
//! the member rejoins only when it returns, so a commit made there goes out in the generation
//! that owns them and the new owner starts right after the last processed record (the contract
//! of Java's `ConsumerRebalanceListener.onPartitionsRevoked`). `close` runs `revoked` too.
//!
//! ```sh
//! KGROUP_BOOTSTRAP=127.0.0.1:9092 cargo run --example commit_on_revoke -- orders revoke-demo
//! ```

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kgroup::group::{CommitOutcome, PartitionCommit, TopicPartition};
use kgroup::{Batch, ConfigError, ConsumerConfig, GroupConsumer, RebalanceContext, RebalanceListener};
use tokio::time::Instant;

#[tokio::main]
pub async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bootstrap = std::env::var("KGROUP_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let mut args = std::env::args().skip(1);
    let topic = args.next().unwrap_or_else(|| "orders".into());
    let group = args.next().unwrap_or_else(|| "commit-on-revoke".into());
    let stop = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            eprintln!("cannot wait for ctrl-c ({e}); stopping");
        }
    };
    let report = run(config(&bootstrap, &group)?, &topic, Duration::from_secs(5), process, stop).await?;
    println!("{report:#?}");
    Ok(())
}

/// Stands in for the application's work.
fn process(batch: &Batch) {
    println!("{}: {} records up to offset {}", batch.partition, batch.records.len(), batch.next_offset());
}

/// What the consumer did until it stopped.
#[derive(Debug, Default)]
pub struct Report {
    /// Records processed, per partition.
    pub processed: BTreeMap<TopicPartition, u64>,
    /// Partition offsets committed by the periodic commit.
    pub committed_periodically: u64,
    /// Partition offsets committed in `revoked`.
    pub committed_on_revoke: u64,
}

/// Offsets are stored by the application (`store_offsets`) and committed by it: no auto-commit.
pub fn config(bootstrap: &str, group: &str) -> Result<ConsumerConfig, ConfigError> {
    ConsumerConfig::from_properties([
        ("bootstrap.servers", bootstrap),
        ("group.id", group),
        ("enable.auto.commit", "false"),
        ("enable.auto.offset.store", "false"),
        ("auto.offset.reset", "earliest"),
    ])
}

/// Commits the stored offsets of partitions about to be taken away.
#[derive(Default)]
struct CommitOnRevoke {
    committed: AtomicU64,
}

impl RebalanceListener for CommitOnRevoke {
    fn revoked<'a>(
        &'a self,
        context: &'a RebalanceContext,
        _partitions: &'a [TopicPartition],
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            // A listener cannot return an error: say what was not committed; those records are
            // read again by the next owner (at least once).
            match context.commit_stored().await {
                Ok(results) => {
                    self.committed.fetch_add(count_committed(&results), Ordering::Relaxed);
                }
                Err(e) => eprintln!("commit on revoke failed: {e}"),
            }
        })
    }
}

/// Counts the partitions stored; reports the others (their records are read again).
fn count_committed(results: &[PartitionCommit]) -> u64 {
    let mut committed = 0;
    for result in results {
        match &result.outcome {
            CommitOutcome::Committed { .. } => committed += 1,
            outcome => eprintln!("{} at {} not committed: {outcome:?}", result.partition, result.offset),
        }
    }
    committed
}

/// Consumes `topic`, handing each batch to `process`, until `stop` completes; commits the stored
/// offsets every `commit_interval` and on every revoke, then leaves the group (which commits
/// what is stored, through `revoked`).
///
/// Not cancel-safe: dropped, it stops without `close`, so the group waits out the session
/// timeout before its partitions move. Complete `stop` instead.
pub async fn run(
    config: ConsumerConfig,
    topic: &str,
    commit_interval: Duration,
    mut process: impl FnMut(&Batch),
    stop: impl Future<Output = ()>,
) -> Result<Report, kgroup::Error> {
    let listener = Arc::new(CommitOnRevoke::default());
    let callbacks: Arc<dyn RebalanceListener> = listener.clone();
    let mut consumer = GroupConsumer::subscribe_with_listener(config, &[topic], Some(callbacks)).await?;
    let mut report = Report::default();
    // The first commit after one interval: at the start nothing is stored.
    let mut commit_timer = tokio::time::interval_at(Instant::now() + commit_interval, commit_interval);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            _ = commit_timer.tick() => {
                report.committed_periodically += count_committed(&consumer.commit_stored().await?);
            }
            // Cancel-safe: a batch it had in hand when another branch won is not lost.
            polled = consumer.poll(consumer.max_poll_records(), Duration::from_secs(1)) => {
                let Some(batch) = polled? else { continue };
                process(&batch);
                // Done with the batch: its offset goes out with the next commit of stored offsets.
                *report.processed.entry(batch.partition.clone()).or_default() += batch.records.len() as u64;
                consumer.store_offsets(&batch);
            }
        }
    }
    consumer.close().await?;
    report.committed_on_revoke = listener.committed.load(Ordering::Relaxed);
    Ok(report)
}
