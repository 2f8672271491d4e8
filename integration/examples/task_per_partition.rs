//! One task per partition: each assigned partition gets a tokio task of its own that processes
//! its batches in offset order and commits them, so a slow partition does not hold up the rest.
//!
//! - The rebalance listener starts a partition's task when the partition is assigned and stops
//!   it when the partition is revoked or lost. `revoked` waits until the task has finished and
//!   committed the batch it holds: the member rejoins only when `revoked` returns, so that commit
//!   goes out while the member still owns the partition and the next owner starts after it.
//! - Every batch holds the records of one partition: the poll loop only routes it.
//! - A partition is paused while its task holds a batch and resumed once that batch is
//!   committed, so at most one batch per partition is in flight and nothing piles up.
//! - `poll` takes `&mut self`, so the consumer is not shared: a task commits by sending its
//!   lease to the poll loop, which commits the leases of every waiting task in one request and
//!   answers each.
//!
//! ```sh
//! KGROUP_BOOTSTRAP=127.0.0.1:9092 cargo run --example task_per_partition -- orders per-partition
//! ```

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use kgroup::group::{CommitOutcome, Lease, TopicPartition};
use kgroup::{Batch, ConfigError, ConsumerConfig, GroupConsumer, RebalanceContext, RebalanceListener};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

#[tokio::main]
pub async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bootstrap = std::env::var("KGROUP_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let mut args = std::env::args().skip(1);
    let topic = args.next().unwrap_or_else(|| "orders".into());
    let group = args.next().unwrap_or_else(|| "task-per-partition".into());
    let stop = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            eprintln!("cannot wait for ctrl-c ({e}); stopping");
        }
    };
    let report = run(config(&bootstrap, &group)?, &topic, stop).await?;
    println!("{report:#?}");
    Ok(())
}

/// What the consumer did until it stopped.
#[derive(Debug, Default)]
pub struct Report {
    /// Records processed, per partition.
    pub processed: BTreeMap<TopicPartition, u64>,
    /// Partition tasks started (a partition gets a new task after each rebalance that assigns it).
    pub tasks_started: u64,
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

/// A task's request to commit its processed batch, and where the outcome goes.
struct CommitRequest {
    lease: Lease,
    reply: oneshot::Sender<CommitOutcome>,
}

/// A running partition task: its queue of batches, and its end (how many records it processed).
struct PartitionTask {
    batches: mpsc::UnboundedSender<Batch>,
    done: JoinHandle<u64>,
}

/// The partition tasks, started and stopped by the rebalance listener.
struct Tasks {
    running: Mutex<HashMap<TopicPartition, PartitionTask>>,
    commits: mpsc::UnboundedSender<CommitRequest>,
    report: Mutex<Report>,
}

impl Tasks {
    /// Hands a batch to its partition's task, starting one if the partition has none.
    fn dispatch(&self, batch: Batch) {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        let task = running.entry(batch.partition.clone()).or_insert_with(|| self.spawn());
        if let Err(unsent) = task.batches.send(batch) {
            // Only a task that panicked drops its queue: the next owner reads the records again.
            eprintln!("the task of {} is gone", unsent.0.partition);
        }
    }

    fn start(&self, partitions: &[TopicPartition]) {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        for partition in partitions {
            running.entry(partition.clone()).or_insert_with(|| self.spawn());
        }
    }

    fn spawn(&self) -> PartitionTask {
        self.report.lock().unwrap_or_else(PoisonError::into_inner).tasks_started += 1;
        let (batches, queue) = mpsc::unbounded_channel();
        PartitionTask { batches, done: tokio::spawn(process_partition(queue, self.commits.clone())) }
    }

    /// Stops the tasks of `partitions` once they have processed and committed what they hold.
    /// Their commits go through the poll loop, which must keep serving them meanwhile.
    async fn stop(&self, partitions: &[TopicPartition]) {
        let stopping: Vec<(TopicPartition, PartitionTask)> = {
            let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
            partitions.iter().filter_map(|partition| running.remove_entry(partition)).collect()
        };
        for (partition, task) in stopping {
            // A closed queue ends the task after the batches already in it.
            drop(task.batches);
            match task.done.await {
                Ok(records) => {
                    let mut report = self.report.lock().unwrap_or_else(PoisonError::into_inner);
                    *report.processed.entry(partition).or_default() += records;
                }
                Err(e) => eprintln!("the task of {partition} failed: {e}"),
            }
        }
    }

    async fn stop_all(&self) {
        let all: Vec<TopicPartition> =
            self.running.lock().unwrap_or_else(PoisonError::into_inner).keys().cloned().collect();
        self.stop(&all).await;
    }
}

impl RebalanceListener for Tasks {
    fn assigned<'a>(
        &'a self,
        _context: &'a RebalanceContext,
        partitions: &'a [TopicPartition],
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async move { self.start(partitions) })
    }

    fn revoked<'a>(
        &'a self,
        _context: &'a RebalanceContext,
        partitions: &'a [TopicPartition],
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(self.stop(partitions))
    }

    /// The partitions may already be someone else's: their commits come back `Fenced` and the
    /// new owner reads those records again.
    fn lost<'a>(
        &'a self,
        _context: &'a RebalanceContext,
        partitions: &'a [TopicPartition],
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(self.stop(partitions))
    }
}

/// A partition's task: processes its batches in order, committing each before the next.
async fn process_partition(
    mut batches: mpsc::UnboundedReceiver<Batch>,
    commits: mpsc::UnboundedSender<CommitRequest>,
) -> u64 {
    let mut processed = 0;
    while let Some(batch) = batches.recv().await {
        // Processing would go here: this task is the only one that sees this partition.
        processed += batch.records.len() as u64;
        let (reply, outcome) = oneshot::channel();
        if commits.send(CommitRequest { lease: batch.lease().clone(), reply }).is_err() {
            break; // the poll loop is gone
        }
        match outcome.await {
            // Fenced: the partition moved on, and its new owner reads the batch again.
            Ok(CommitOutcome::Committed { .. } | CommitOutcome::Fenced { .. }) => {}
            Ok(outcome) => eprintln!("commit of {} failed: {outcome:?}", batch.partition),
            Err(_) => eprintln!("commit of {} was not answered", batch.partition),
        }
    }
    processed
}

/// Commits the leases of every waiting task in one request, answers each task, and resumes
/// its partition.
async fn commit_waiting(
    consumer: &GroupConsumer,
    commits: &mut mpsc::UnboundedReceiver<CommitRequest>,
    first: CommitRequest,
) -> Result<(), kgroup::Error> {
    let mut waiting = vec![first];
    while let Ok(next) = commits.try_recv() {
        waiting.push(next);
    }
    let results = consumer.commit_leases(waiting.iter().map(|r| r.lease.clone()).collect()).await?;
    consumer.resume(waiting.iter().map(|r| r.lease.partition.clone()).collect())?;
    for request in waiting {
        // One batch per partition is in flight, so the partition names the result.
        if let Some(result) = results.iter().find(|r| r.partition == request.lease.partition) {
            let _ = request.reply.send(result.outcome.clone());
        }
    }
    Ok(())
}

/// Consumes `topic` with one task per assigned partition until `stop` completes, then stops
/// the tasks (committing what they hold) and leaves the group.
///
/// Not cancel-safe: dropped, it stops without `close`, so the group waits out the session
/// timeout before its partitions move. Complete `stop` instead.
pub async fn run(config: ConsumerConfig, topic: &str, stop: impl Future<Output = ()>) -> Result<Report, kgroup::Error> {
    let (commit_requests, mut commits) = mpsc::unbounded_channel();
    let tasks = Arc::new(Tasks { running: Mutex::default(), commits: commit_requests, report: Mutex::default() });
    let listener: Arc<dyn RebalanceListener> = tasks.clone();
    let mut consumer = GroupConsumer::subscribe_with_listener(config, &[topic], Some(listener)).await?;
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            Some(first) = commits.recv() => commit_waiting(&consumer, &mut commits, first).await?,
            // Cancel-safe: a batch it had in hand when another branch won is not lost.
            polled = consumer.poll(consumer.max_poll_records(), Duration::from_secs(1)) => {
                let Some(batch) = polled? else { continue };
                consumer.pause(vec![batch.partition.clone()])?;
                tasks.dispatch(batch);
            }
        }
    }
    // The tasks commit what they hold through this loop; then `close` has nothing left to wait for.
    let stopping = tasks.stop_all();
    tokio::pin!(stopping);
    loop {
        tokio::select! {
            () = &mut stopping => break,
            Some(first) = commits.recv() => commit_waiting(&consumer, &mut commits, first).await?,
        }
    }
    consumer.close().await?;
    let report = std::mem::take(&mut *tasks.report.lock().unwrap_or_else(PoisonError::into_inner));
    Ok(report)
}
