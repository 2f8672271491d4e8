//! The seed scenario: a consumer group on a 72-partition topic scaled out one member at a time
//! while a producer keeps writing; every member processes batches of up to 1000 messages and
//! commits each synchronously. Shared by the demo and the integration test.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use kgroup::driver::group::GroupObserver;
use kgroup::group::StateKind;
use kgroup::group::{CommitFailure, CommitOutcome, GenerationId, GroupSnapshot, MemberId, TopicPartition};
use kgroup::producer::{Acks, Compression, Producer, ProducerConfig, ProducerRecord};
use kgroup::{Cluster, ClusterConfig, ConsumerConfig, GroupConsumer};
use tokio::sync::watch;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What to run.
#[derive(Debug, Clone)]
pub struct Settings {
    pub bootstrap: String,
    pub topic: String,
    pub group: String,
    pub partitions: i32,
    /// Group sizes to step through, e.g. `2..=30`.
    pub members: Vec<usize>,
    /// Messages produced before the first member starts.
    pub initial_messages: usize,
    /// Messages per second the producer writes while the group scales out.
    pub produce_rate: usize,
    /// Records per batch (`max.poll.records`).
    pub batch_size: usize,
    /// Simulated work per batch, so members are busy (and commit) while the group rebalances.
    pub processing_time: Duration,
    /// How long a member's revoke window waits for the batch in progress (the consumer's
    /// `rebalance_callback_timeout`); a batch that outlasts it commits late and, if its partition
    /// moved, is fenced and processed again by the new owner.
    pub rebalance_callback_timeout: Duration,
    /// Processing after the group is stable again, before the next member joins: at least this
    /// long, and until a commit of the step has completed (a loaded machine may not finish a
    /// batch within it).
    pub steady: Duration,
    /// Upper bound for one step to converge, and for the final drain.
    pub converge_timeout: Duration,
    pub assignment_strategy: String,
}

/// One step of the scale-out.
#[derive(Debug, Clone, Default)]
pub struct StepReport {
    pub members: usize,
    pub generation: i32,
    pub time_to_stable: Duration,
    pub committed: u64,
    pub restamped: u64,
    pub fenced: u64,
    pub failed: u64,
    pub processed: u64,
    pub duplicates: u64,
    /// Partitions whose owner changed since the previous step (what the assignor moved).
    pub moved: u64,
}

/// The whole run.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub steps: Vec<StepReport>,
    pub produced: u64,
    pub processed_unique: u64,
    pub duplicates: u64,
    pub lost: u64,
    /// Duplicates of the worst partition within one ownership streak: the records its owner
    /// processed again after the rebalance that handed the partition over (what the previous
    /// owner had processed and not committed). A scale-out step can hold more than one such
    /// rebalance for a partition: a batch processed again late, after the step's rebalance,
    /// can be fenced by the next one and processed a third time.
    pub max_duplicates_per_partition_per_rebalance: u64,
    /// Partitions whose committed offset differs from the log end after the drain.
    pub commit_mismatches: Vec<(TopicPartition, Option<i64>, i64)>,
    /// Errors that reached the application unclassified (must stay empty).
    pub unclassified: Vec<String>,
    /// Offsets processed again although their first processing was committed (must stay empty:
    /// duplicates may only come from batches whose commit was fenced or failed).
    pub redelivered_after_commit: Vec<(i32, i64)>,
    pub final_snapshot: Option<GroupSnapshot>,
}

/// How the first processing of an offset ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FirstProcessing {
    Pending,
    Committed,
    NotCommitted,
}

#[derive(Default)]
struct StepCounters {
    committed: u64,
    restamped: u64,
    fenced: u64,
    failed: u64,
    processed: u64,
    duplicates: u64,
}

/// Every processed offset, how its first processing ended, and the duplicates.
#[derive(Default)]
struct Ledger {
    seen: BTreeMap<i32, BTreeMap<i64, FirstProcessing>>,
    step: StepCounters,
    /// Per partition and ownership streak (the `owned_since` of the leases it processed
    /// under), the records processed again.
    duplicates_per_streak: BTreeMap<(i32, GenerationId), u64>,
    worst_duplicates: u64,
    unclassified: Vec<String>,
    redelivered_after_commit: Vec<(i32, i64)>,
}

impl Ledger {
    fn processed(&mut self, partition: i32, offset: i64, streak: GenerationId) {
        self.step.processed += 1;
        let seen = self.seen.entry(partition).or_default();
        match seen.get(&offset) {
            None => {
                seen.insert(offset, FirstProcessing::Pending);
            }
            Some(first) => {
                if *first == FirstProcessing::Committed {
                    self.redelivered_after_commit.push((partition, offset));
                }
                self.step.duplicates += 1;
                let d = self.duplicates_per_streak.entry((partition, streak)).or_default();
                *d += 1;
                self.worst_duplicates = self.worst_duplicates.max(*d);
            }
        }
    }

    fn settled(&mut self, partition: i32, offsets: std::ops::Range<i64>, committed: bool) {
        let seen = self.seen.entry(partition).or_default();
        for offset in offsets {
            if let Some(first) = seen.get_mut(&offset) {
                if *first == FirstProcessing::Pending {
                    *first = if committed { FirstProcessing::Committed } else { FirstProcessing::NotCommitted };
                }
            }
        }
    }

    fn take_step(&mut self) -> StepCounters {
        std::mem::take(&mut self.step)
    }
}

fn lock(ledger: &Mutex<Ledger>) -> MutexGuard<'_, Ledger> {
    ledger.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The log end per partition, from the producer's acknowledgements.
pub type LogEnd = Arc<Mutex<BTreeMap<i32, i64>>>;

/// Runs the scenario; `progress` gets a one-line status now and then, `on_member` each member
/// as it starts, with its number (from 1), for observers such as the demo's debug page.
pub async fn run(
    settings: Settings,
    progress: &(dyn Fn(&str) + Sync),
    on_member: &(dyn Fn(usize, &GroupObserver) + Sync),
) -> Result<Report, BoxError> {
    let cluster = Cluster::connect(ClusterConfig::from_bootstrap_servers(&settings.bootstrap)?).await?;
    cluster.create_topic(&settings.topic, settings.partitions, 1).await?;
    let producer = Arc::new(Producer::new(
        cluster.clone(),
        ProducerConfig { acks: Acks::All, compression: Compression::Lz4, ..Default::default() },
    )?);
    let log_end: LogEnd = Arc::default();
    let mut next_key = 0usize;
    produce(&producer, &settings.topic, &mut next_key, settings.initial_messages, &log_end).await?;
    progress(&format!("produced {next_key} messages"));

    let (stop_producing, producing) = watch::channel(false);
    let writer = tokio::spawn(keep_producing(producer.clone(), settings.clone(), next_key, log_end.clone(), producing));

    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut members = Vec::new();
    let mut observers: Vec<GroupObserver> = Vec::new();
    let mut report = Report::default();
    let mut owners = BTreeMap::new();
    for &size in &settings.members {
        let step_started = Instant::now();
        while observers.len() < size {
            let consumer =
                GroupConsumer::subscribe(consumer_config(&settings, observers.len()), &[&settings.topic]).await?;
            let observer = consumer.observer();
            on_member(observers.len() + 1, &observer);
            observers.push(observer);
            members.push(tokio::spawn(member_loop(
                consumer,
                ledger.clone(),
                settings.processing_time,
                stop_rx.clone(),
            )));
        }
        let (generation, step_owners) =
            converge(&observers, settings.partitions, settings.converge_timeout, progress).await?;
        let moved = step_owners.iter().filter(|(p, owner)| owners.get(*p).is_some_and(|o| o != *owner)).count();
        owners = step_owners;
        let time_to_stable = step_started.elapsed();
        tokio::time::sleep(settings.steady).await;
        first_commit_of_step(&ledger, settings.converge_timeout).await?;
        let counters = lock(&ledger).take_step();
        progress(&format!(
            "{size:>2} members: generation {generation}, stable after {time_to_stable:.2?}, {} processed",
            counters.processed
        ));
        report.steps.push(StepReport {
            members: size,
            generation,
            time_to_stable,
            committed: counters.committed,
            restamped: counters.restamped,
            fenced: counters.fenced,
            failed: counters.failed,
            processed: counters.processed,
            duplicates: counters.duplicates,
            moved: moved as u64,
        });
    }
    stop_producing.send(true)?;
    report.produced = writer.await??;

    // Drain: every produced offset processed, every partition committed at its log end.
    let all: Vec<TopicPartition> = (0..settings.partitions).map(|p| TopicPartition::new(&settings.topic, p)).collect();
    let ends = log_end.lock().map_err(|_| "log end poisoned")?.clone();
    let deadline = Instant::now() + settings.converge_timeout;
    loop {
        progress("draining: waiting for the last commits");
        let processed_all = {
            let ledger = lock(&ledger);
            ends.iter().all(|(p, end)| ledger.seen.get(p).is_some_and(|s| s.len() as i64 >= *end))
        };
        let committed = observers[0].committed(all.clone()).await?;
        let mismatches: Vec<_> = committed
            .iter()
            .filter_map(|(tp, offset)| {
                let end = ends.get(&tp.partition).copied().unwrap_or(0);
                (*offset != Some(end) && end > 0).then(|| (tp.clone(), *offset, end))
            })
            .collect();
        if (processed_all && mismatches.is_empty()) || Instant::now() > deadline {
            report.commit_mismatches = mismatches;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    report.final_snapshot = Some(observers[0].group_state().await?);
    stop_tx.send(true)?;
    let mut consumers = Vec::new();
    for member in members {
        consumers.push(member.await??);
    }
    // Closed together: one after another, each LeaveGroup would start a rebalance that the
    // members no longer polling hold up until their revoke windows time out.
    let closes: Vec<_> = consumers.into_iter().map(|consumer| tokio::spawn(consumer.close())).collect();
    for close in closes {
        close.await??;
    }
    let mut ledger = lock(&ledger);
    let tail = ledger.take_step();
    if let Some(step) = report.steps.last_mut() {
        step.committed += tail.committed;
        step.restamped += tail.restamped;
        step.fenced += tail.fenced;
        step.failed += tail.failed;
        step.processed += tail.processed;
        step.duplicates += tail.duplicates;
    }
    report.processed_unique = ledger.seen.values().map(|s| s.len() as u64).sum();
    report.duplicates = report.steps.iter().map(|s| s.duplicates).sum();
    report.lost = ends
        .iter()
        .map(|(p, end)| {
            let seen = ledger.seen.get(p);
            (0..*end).filter(|o| !seen.is_some_and(|s| s.contains_key(o))).count() as u64
        })
        .sum();
    report.max_duplicates_per_partition_per_rebalance = ledger.worst_duplicates;
    report.unclassified = std::mem::take(&mut ledger.unclassified);
    report.redelivered_after_commit = std::mem::take(&mut ledger.redelivered_after_commit);
    Ok(report)
}

/// Member `index`'s configuration: its own `client.id`, so its metrics and log lines are its own.
fn consumer_config(settings: &Settings, index: usize) -> ConsumerConfig {
    let mut config = ConsumerConfig::new(settings.bootstrap.clone(), settings.group.clone());
    config.client_id = format!("kgroup-demo-{index}");
    config.session_timeout = Duration::from_secs(10);
    config.heartbeat_interval = Duration::from_millis(500);
    config.max_poll_interval = Duration::from_secs(60);
    config.rebalance_callback_timeout = settings.rebalance_callback_timeout;
    config.enable_auto_commit = false;
    config.auto_offset_reset = kgroup::consumer::OffsetReset::Earliest;
    config.max_poll_records = settings.batch_size;
    config.fetch_max_wait = Duration::from_millis(100);
    config.assignment_strategy = vec![settings.assignment_strategy.clone()];
    config
}

/// Produces `count` keyed messages and records the log end per partition.
pub async fn produce(
    producer: &Producer,
    topic: &str,
    next_key: &mut usize,
    count: usize,
    log_end: &LogEnd,
) -> Result<(), BoxError> {
    let deliveries: Vec<_> = (0..count)
        .map(|i| {
            let n = *next_key + i;
            producer.send(ProducerRecord::new(topic, Some(format!("key-{}", n % 10_000)), format!("message {n}")))
        })
        .collect();
    producer.flush().await;
    *next_key += count;
    for delivery in deliveries {
        let written = delivery.await?;
        let mut ends = log_end.lock().map_err(|_| "log end poisoned")?;
        let end = ends.entry(written.partition).or_default();
        *end = (*end).max(written.offset + 1);
    }
    Ok(())
}

/// Writes `produce_rate` messages a second, in ten slices, until told to stop; returns the
/// total produced.
async fn keep_producing(
    producer: Arc<Producer>,
    settings: Settings,
    mut next_key: usize,
    log_end: LogEnd,
    stop: watch::Receiver<bool>,
) -> Result<u64, BoxError> {
    let slice = (settings.produce_rate / 10).max(1);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    while !*stop.borrow() {
        tick.tick().await;
        produce(&producer, &settings.topic, &mut next_key, slice, &log_end).await?;
    }
    Ok(next_key as u64)
}

/// Waits until every member is Stable in one generation and the partitions are covered
/// exactly once; returns that generation and each partition's owner.
/// How often convergence is checked: the time to stable is measured in these steps, so they
/// must be small against a rebalance (about 500 ms with a 500 ms heartbeat interval).
pub const CONVERGE_POLL: Duration = Duration::from_millis(10);

async fn converge(
    members: &[GroupObserver],
    partitions: i32,
    timeout: Duration,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<(i32, BTreeMap<i32, MemberId>), BoxError> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut generations = BTreeSet::new();
        let mut owned = Vec::new();
        let mut owners = BTreeMap::new();
        let mut stable = 0;
        // All members at once: asked one after the other, 30 members' snapshots add tens of
        // milliseconds to the time to stable on a busy machine.
        let mut snapshots = tokio::task::JoinSet::new();
        for m in members {
            let m = m.clone();
            snapshots.spawn(async move { m.group_state().await });
        }
        while let Some(snapshot) = snapshots.join_next().await {
            let s = snapshot??;
            stable += usize::from(s.state == StateKind::Stable);
            generations.insert(s.generation.map(|g| g.id.0));
            owned.extend(s.assignment.iter().map(|p| p.partition.partition));
            owners.extend(s.assignment.iter().map(|p| (p.partition.partition, s.member_id.clone())));
        }
        owned.sort();
        if stable == members.len() && generations.len() == 1 && owned == (0..partitions).collect::<Vec<_>>() {
            return Ok((generations.into_iter().next().flatten().unwrap_or(-1), owners));
        }
        if Instant::now() > deadline {
            let n = members.len();
            return Err(format!(
                "{n} members did not converge within {timeout:?}: {stable} stable, generations {generations:?}"
            )
            .into());
        }
        progress(&format!("{} members: rebalancing ({stable} stable)", members.len()));
        tokio::time::sleep(CONVERGE_POLL).await;
    }
}

/// Waits until a commit of the current step has completed, at most `timeout`.
async fn first_commit_of_step(ledger: &Mutex<Ledger>, timeout: Duration) -> Result<(), BoxError> {
    let deadline = Instant::now() + timeout;
    while lock(ledger).step.committed == 0 {
        if Instant::now() > deadline {
            return Err(format!("no commit completed within {timeout:?} of the group becoming stable").into());
        }
        tokio::time::sleep(CONVERGE_POLL).await;
    }
    Ok(())
}

async fn member_loop(
    mut consumer: GroupConsumer,
    ledger: Arc<Mutex<Ledger>>,
    processing_time: Duration,
    stop: watch::Receiver<bool>,
) -> Result<GroupConsumer, BoxError> {
    let batch_size = consumer.max_poll_records();
    while !*stop.borrow() {
        let batch = match consumer.poll(batch_size, Duration::from_millis(200)).await {
            Ok(Some(batch)) => batch,
            Ok(None) => continue,
            Err(e) => {
                lock(&ledger).unclassified.push(e.to_string());
                continue;
            }
        };
        let first = batch.records.first().map_or(batch.next_offset(), |r| r.offset());
        {
            let mut ledger = lock(&ledger);
            for record in &batch.records {
                ledger.processed(record.partition(), record.offset(), batch.lease().owned_since);
            }
        }
        tokio::time::sleep(processing_time).await;
        let results = match consumer.commit(&batch).await {
            Ok(results) => results,
            Err(e) => {
                lock(&ledger).unclassified.push(format!("commit: {e}"));
                continue;
            }
        };
        let mut ledger = lock(&ledger);
        for result in results {
            let committed = result.outcome.is_committed();
            ledger.settled(result.partition.partition, first..result.offset, committed);
            match result.outcome {
                CommitOutcome::Committed { restamped_from, .. } => {
                    ledger.step.committed += 1;
                    ledger.step.restamped += u64::from(restamped_from.is_some());
                }
                CommitOutcome::Fenced { .. } => ledger.step.fenced += 1,
                CommitOutcome::Failed { reason } => {
                    ledger.step.failed += 1;
                    if let CommitFailure::Rejected(code) = reason {
                        if matches!(code.0, 22 | 25 | 27) {
                            ledger.unclassified.push(format!("{code} on {}", result.partition));
                        }
                    }
                }
                _ => ledger.step.failed += 1,
            }
        }
    }
    Ok(consumer)
}

/// The per-step table and the totals.
/// The report for scripts: the table's rows and the totals, and the first member's final
/// snapshot as the debug API gives it.
pub fn json_report(report: &Report) -> serde_json::Value {
    let steps: Vec<serde_json::Value> = report
        .steps
        .iter()
        .map(|s| {
            serde_json::json!({
                "members": s.members,
                "generation": s.generation,
                "time_to_stable_ms": s.time_to_stable.as_millis() as u64,
                "moved": s.moved,
                "committed": s.committed,
                "restamped": s.restamped,
                "fenced": s.fenced,
                "failed": s.failed,
                "processed": s.processed,
                "duplicates": s.duplicates,
            })
        })
        .collect();
    let mismatches: Vec<serde_json::Value> = report
        .commit_mismatches
        .iter()
        .map(|(tp, committed, end)| serde_json::json!({ "partition": tp, "committed": committed, "log_end": end }))
        .collect();
    serde_json::json!({
        "steps": steps,
        "produced": report.produced,
        "processed_unique": report.processed_unique,
        "duplicates": report.duplicates,
        "lost": report.lost,
        "max_duplicates_per_partition_per_rebalance": report.max_duplicates_per_partition_per_rebalance,
        "commit_mismatches": mismatches,
        "unclassified": report.unclassified,
        "redelivered_after_commit": report.redelivered_after_commit,
        "final_snapshot": report.final_snapshot,
    })
}

pub fn table(report: &Report) -> String {
    let mut out = String::new();
    out.push_str(
        "members  generation  stable after  moved  committed  re-stamped  fenced  failed  processed  duplicates\n",
    );
    for s in &report.steps {
        out.push_str(&format!(
            "{:>7}  {:>10}  {:>12}  {:>5}  {:>9}  {:>10}  {:>6}  {:>6}  {:>9}  {:>10}\n",
            s.members,
            s.generation,
            format!("{:.2?}", s.time_to_stable),
            s.moved,
            s.committed,
            s.restamped,
            s.fenced,
            s.failed,
            s.processed,
            s.duplicates
        ));
    }
    let committed_at_end = if report.commit_mismatches.is_empty() {
        "all partitions".to_string()
    } else {
        format!("{} partitions differ", report.commit_mismatches.len())
    };
    out.push_str(&format!(
        "\nproduced {}, processed {} distinct, duplicates {}, lost {}; committed offset = log end: {}\n",
        report.produced, report.processed_unique, report.duplicates, report.lost, committed_at_end
    ));
    out
}

/// A short account of one member's snapshot.
pub fn summary(s: &GroupSnapshot) -> String {
    let generation = s.generation.as_ref().map(|g| g.id.0).unwrap_or(-1);
    let mut by_since: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for p in &s.assignment {
        by_since.entry(p.owned_since.0).or_default().push(p.partition.partition);
    }
    let owned: Vec<String> =
        by_since.iter().map(|(since, parts)| format!("{parts:?} owned since generation {since}")).collect();
    let c = &s.counters;
    format!(
        "state {} | generation {generation} | member {} | {} | protocol {} | coordinator {:?}\n\
         assignment: {}\n\
         last transition: {}\n\
         counters: joins {} syncs {} heartbeats {} rebalances {} (last {:?} ms, max {} ms), commits sent {}, \
         partitions committed {} re-stamped {} fenced locally {} rejected by broker {:?} failed {}, deferred {}, \
         stale responses {}",
        s.state,
        s.member_id,
        if s.is_leader { "leader" } else { "follower" },
        s.protocol.as_deref().unwrap_or("-"),
        s.coordinator,
        owned.join("; "),
        s.last_transition.as_ref().map(|t| format!("{} -> {} ({})", t.from, t.to, t.reason)).unwrap_or_default(),
        c.joins_sent,
        c.syncs_sent,
        c.heartbeats_sent,
        c.rebalances,
        c.last_rebalance_ms,
        c.max_rebalance_ms,
        c.commits_sent,
        c.partitions_committed,
        c.partitions_restamped,
        c.partitions_fenced_locally,
        c.partitions_rejected_by_broker,
        c.partitions_failed,
        c.commits_deferred,
        c.stale_responses,
    )
}
