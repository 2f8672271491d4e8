//! Graceful shutdown: on SIGTERM or ctrl-c, finish the batch in hand, commit it and leave the
//! group, all within a deadline.
//!
//! Orchestrators send SIGTERM and kill the process after a grace period (Kubernetes: 30 s by
//! default). A batch abandoned half-way is read again by the next owner, and a member that
//! vanishes without a LeaveGroup keeps its partitions idle until its session times out. So the
//! signal only stops polling: the batch being processed is finished and committed, and `close`
//! leaves the group so it rebalances at once. When that takes longer than the deadline the
//! consumer gives up before it is killed (an uncommitted batch is then read again: at least
//! once, never lost).
//!
//! ```sh
//! KGROUP_BOOTSTRAP=127.0.0.1:9092 cargo run --example graceful_shutdown -- orders shutdown-demo
//! kill -TERM <pid>    # or ctrl-c
//! ```

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use kgroup::group::{CommitOutcome, TopicPartition};
use kgroup::{Batch, ConfigError, ConsumerConfig, GroupConsumer};
use tokio::time::{timeout_at, Instant};

/// Below Kubernetes' default grace period of 30 s, so the consumer finishes before it is killed.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(20);

#[tokio::main]
pub async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bootstrap = std::env::var("KGROUP_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let mut args = std::env::args().skip(1);
    let topic = args.next().unwrap_or_else(|| "orders".into());
    let group = args.next().unwrap_or_else(|| "graceful-shutdown".into());
    let stop = shutdown_signal()?;
    let report = run(config(&bootstrap, &group)?, &topic, SHUTDOWN_DEADLINE, process, stop).await?;
    println!("{report:#?}");
    Ok(())
}

/// Completes on ctrl-c, or on SIGTERM (what `docker stop`, systemd and Kubernetes send).
fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    #[cfg(unix)]
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    Ok(async move {
        #[cfg(unix)]
        let terminated = terminate.recv();
        #[cfg(not(unix))]
        let terminated = std::future::pending::<()>();
        tokio::select! {
            interrupted = tokio::signal::ctrl_c() => {
                if let Err(e) = interrupted {
                    eprintln!("cannot wait for ctrl-c ({e}); stopping");
                }
            }
            _ = terminated => {}
        }
    })
}

/// Stands in for work that takes a while (writes to a database, calls to a service).
async fn process(batch: Batch) {
    tokio::time::sleep(Duration::from_millis(5) * batch.records.len() as u32).await;
}

/// Why the consumer stopped before it was asked to, or did not stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The consumer failed (subscribing, polling, committing, closing).
    #[error(transparent)]
    Consumer(#[from] kgroup::Error),
    /// Finishing the batch in hand, its commit and leaving the group took longer than this.
    /// The batch, if not committed, is read again by the partition's next owner.
    #[error("shutdown did not finish within {0:?}")]
    DeadlinePassed(Duration),
}

/// What the consumer did until it stopped.
#[derive(Debug, Default)]
pub struct Report {
    /// Records processed, per partition.
    pub processed: BTreeMap<TopicPartition, u64>,
    /// The last offset committed per partition (the next record to read).
    pub committed: BTreeMap<TopicPartition, i64>,
    /// Whether the signal came while a batch was processed or committed (then finished).
    pub finished_batch_after_signal: bool,
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

/// Consumes `topic`, handing each batch to `process` and committing it once processed, until
/// `stop` completes; then finishes the batch in hand and leaves the group within `deadline`.
///
/// Not cancel-safe: dropped, it stops where it is (the batch in hand uncommitted, the group
/// waiting out the session timeout); completing `stop` is how to end it.
pub async fn run<P, Done>(
    config: ConsumerConfig,
    topic: &str,
    deadline: Duration,
    mut process: P,
    stop: impl Future<Output = ()>,
) -> Result<Report, RunError>
where
    P: FnMut(Batch) -> Done,
    Done: Future<Output = ()>,
{
    let mut consumer = GroupConsumer::subscribe(config, &[topic]).await?;
    let mut report = Report::default();
    tokio::pin!(stop);
    let give_up_at = loop {
        // `poll` is cancel-safe: a batch it had in hand when the signal won is not lost.
        let batch = tokio::select! {
            () = &mut stop => break Instant::now() + deadline,
            polled = consumer.poll(consumer.max_poll_records(), Duration::from_secs(1)) => polled?,
        };
        let Some(batch) = batch else { continue };
        let (partition, records, lease) = (batch.partition.clone(), batch.records.len() as u64, batch.lease().clone());
        let work = async {
            process(batch).await;
            consumer.commit_leases(vec![lease]).await
        };
        tokio::pin!(work);
        // The signal does not interrupt the batch: it is finished and committed first.
        let (committed, signalled) = tokio::select! {
            committed = &mut work => (committed, None),
            () = &mut stop => {
                let give_up_at = Instant::now() + deadline;
                let committed = timeout_at(give_up_at, work).await.map_err(|_| RunError::DeadlinePassed(deadline))?;
                (committed, Some(give_up_at))
            }
        };
        *report.processed.entry(partition).or_default() += records;
        for result in committed? {
            match result.outcome {
                CommitOutcome::Committed { .. } => {
                    report.committed.insert(result.partition, result.offset);
                }
                // Its new owner reads the batch again; nothing to do here.
                CommitOutcome::Fenced { .. } => {}
                // Not stored: the records are read again by whoever owns the partition next.
                outcome => eprintln!("commit of {} at {} failed: {outcome:?}", result.partition, result.offset),
            }
        }
        if let Some(give_up_at) = signalled {
            report.finished_batch_after_signal = true;
            break give_up_at;
        }
    };
    // LeaveGroup, so the partitions move now rather than after the session timeout (a static
    // member, with `group.instance.id`, sends none and keeps them until then: KIP-345).
    timeout_at(give_up_at, consumer.close()).await.map_err(|_| RunError::DeadlinePassed(deadline))??;
    Ok(report)
}
