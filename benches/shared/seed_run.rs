//! One run of the seed scenario on Kafka 3.6 for any client: a fresh 72-partition topic and
//! group, a producer writing throughout, members started on a schedule, every member processing
//! batches of up to 1000 messages and committing each synchronously, and every member's
//! assignments, batches and commits recorded for `analysis`. Shared by `benches/seed.rs` (kgroup,
//! librdkafka and the Java client) and `integration/tests/seed_kafka36.rs` (kgroup at CI size);
//! the kgroup client lives here, the others in the bench.

#[allow(dead_code)]
#[path = "../../src/bin/demo/scenario.rs"]
mod scenario;

#[path = "seed_analysis.rs"]
pub mod analysis;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use kgroup::driver::group::GroupEventRecord;
use kgroup::group::{CommitFailure, CommitOutcome, FenceReason, GroupEvent, Lease};
use kgroup::producer::{Acks, Compression, Producer, ProducerConfig};
use kgroup::{Batch, Cluster, ClusterConfig, ConsumerConfig, GroupConsumer};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use self::analysis::{
    ranges, CommitError, Event, Member, OffsetRange, Outcome, Partition, PartitionCommit, Stamp, What,
};
pub use self::scenario::BoxError;
use self::scenario::{produce, LogEnd};

/// The consumer settings of every client, in Kafka's property names. librdkafka has no
/// `max.poll.records`: its member loop stops a batch at that many messages. The assignor is
/// added per client (`range` / `range` / `RangeAssignor`).
pub const CONSUMER_SETTINGS: &[(&str, &str)] = &[
    ("session.timeout.ms", "10000"),
    ("heartbeat.interval.ms", "500"),
    ("max.poll.interval.ms", "300000"),
    ("max.poll.records", "1000"),
    ("auto.offset.reset", "earliest"),
    ("enable.auto.commit", "false"),
];

/// Records per batch (`max.poll.records` above).
pub const BATCH_SIZE: usize = 1000;

/// How members join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// (a) One member at a time, each once the group is stable again (the demo's schedule).
    OneAtATime,
    /// (b) The autoscaler: two members, then two more every `every`, never waiting for the group.
    Autoscaler { every: Duration },
    /// (c) Two members, then all the others at once when those two are stable.
    Burst,
}

impl Schedule {
    pub fn label(&self) -> String {
        match self {
            Schedule::OneAtATime => "(a) one at a time when stable".into(),
            Schedule::Autoscaler { every } => format!("(b) +2 every {} s", every.as_secs_f64()),
            Schedule::Burst => "(c) 2, then the rest at once".into(),
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub bootstrap: String,
    pub topic: String,
    pub group: String,
    pub partitions: i32,
    pub members: usize,
    pub schedule: Schedule,
    /// Messages produced before the first member starts.
    pub initial_messages: usize,
    /// Messages per second while the members run.
    pub produce_rate: usize,
    /// Processing after a stable step of schedules (a) and (c).
    pub steady: Duration,
    /// Processing once every member is started and the group is stable, producer still writing.
    pub tail: Duration,
    /// Bound on each wait for a stable group.
    pub stable_timeout: Duration,
    /// Bound on processing what was produced, once the producer stops.
    pub drain_timeout: Duration,
    /// KIP-848: members move through member epochs on their own, so a stable group is one
    /// whose members each hold some partitions, every partition once, whatever their epochs.
    pub member_epochs: bool,
}

/// A client whose members the run starts and stops.
pub trait Client {
    /// Starts member `member` (numbered from 0 in start order), reporting to the recorder.
    async fn add_member(&mut self, member: Member) -> Result<(), BoxError>;
    /// An error if a member stopped on its own.
    fn check(&mut self) -> Result<(), BoxError>;
    /// Stops every member (each leaves the group), bounded.
    async fn stop(&mut self) -> Result<(), BoxError>;
}

/// What the run recorded, for `analysis::analyze`.
#[derive(Debug, Clone, Default)]
pub struct RunRecord {
    pub events: Vec<Event>,
    /// Things that went wrong without stopping the run (missed events, unreadable lines).
    pub problems: Vec<String>,
    pub log_end: BTreeMap<Partition, i64>,
    pub produced: u64,
    pub topic_created_ms: u64,
    pub first_member_ms: u64,
    pub last_member_ms: u64,
    /// When processing ended (the drain finished), before the members closed.
    pub end_ms: u64,
    /// Whether every member reported one generation covering the partitions before the tail.
    pub converged: bool,
    /// Whether every produced message was processed within the drain bound.
    pub drained: bool,
}

pub fn now_ms() -> u64 {
    epoch_ms(SystemTime::now())
}

pub fn epoch_ms(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Every member's reports, and what the run needs to know live: who holds what, which batches
/// await their commit, which offsets were processed.
#[derive(Default)]
pub struct Recorder {
    state: Mutex<RecorderState>,
    next_batch: AtomicU64,
}

#[derive(Default)]
struct RecorderState {
    events: Vec<Event>,
    problems: Vec<String>,
    /// Each member's latest assigned generation and what it holds now.
    holding: BTreeMap<Member, (i32, BTreeSet<Partition>)>,
    open_batches: BTreeSet<u64>,
    processed: BTreeMap<Partition, Vec<bool>>,
}

impl Recorder {
    fn lock(&self) -> MutexGuard<'_, RecorderState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn record(&self, member: Member, at_ms: u64, what: What) {
        let mut state = self.lock();
        match &what {
            What::Assigned { generation, partitions, incremental } => {
                let held = state.holding.entry(member).or_default();
                held.0 = *generation;
                if !incremental {
                    held.1.clear();
                }
                held.1.extend(partitions.iter().copied());
            }
            What::Revoked { partitions, .. } | What::Lost { partitions } => {
                if let Some((_, held)) = state.holding.get_mut(&member) {
                    for p in partitions {
                        held.remove(p);
                    }
                }
            }
            What::Batch { id, ranges, .. } => {
                state.open_batches.insert(*id);
                for &(partition, first, last) in ranges {
                    let seen = state.processed.entry(partition).or_default();
                    if seen.len() <= last as usize {
                        seen.resize(last as usize + 1, false);
                    }
                    seen[first as usize..=last as usize].fill(true);
                }
            }
            What::Commit { batch, .. } => {
                state.open_batches.remove(batch);
            }
        }
        state.events.push(Event { at_ms, member, what });
    }

    /// Records a batch handed to `member` at `at_ms`; returns its id for the commit.
    pub fn batch(&self, member: Member, at_ms: u64, generation: i32, ranges: Vec<OffsetRange>) -> u64 {
        let id = self.next_batch.fetch_add(1, Ordering::Relaxed);
        self.record(member, at_ms, What::Batch { id, generation, ranges });
        id
    }

    pub fn problem(&self, text: String) {
        self.lock().problems.push(text);
    }

    /// What `member` holds now.
    pub fn holding(&self, member: Member) -> Vec<Partition> {
        self.lock().holding.get(&member).map(|(_, held)| held.iter().copied().collect()).unwrap_or_default()
    }

    /// The generation members `0..members` were all last assigned, if their holdings cover the
    /// partitions exactly once. With `member_epochs` (KIP-848) the members' epochs may differ
    /// (the highest is returned) but each must hold some partition.
    pub fn stable_generation(&self, members: usize, partitions: i32, member_epochs: bool) -> Option<i32> {
        let state = self.lock();
        let mut generations = BTreeSet::new();
        let mut owned = Vec::new();
        for member in 0..members as Member {
            let (generation, held) = state.holding.get(&member)?;
            if member_epochs && held.is_empty() {
                return None;
            }
            generations.insert(*generation);
            owned.extend(held.iter().copied());
        }
        owned.sort_unstable();
        let agreed = generations.len() == 1 || member_epochs;
        if agreed && owned == (0..partitions).collect::<Vec<_>>() {
            generations.pop_last()
        } else {
            None
        }
    }

    fn drained(&self, log_end: &BTreeMap<Partition, i64>) -> bool {
        let state = self.lock();
        state.open_batches.is_empty()
            && log_end.iter().all(|(p, end)| {
                let end = *end as usize;
                state.processed.get(p).is_some_and(|seen| seen.len() >= end && seen[..end].iter().all(|s| *s))
            })
    }

    fn take(&self) -> (Vec<Event>, Vec<String>) {
        let mut state = self.lock();
        (std::mem::take(&mut state.events), std::mem::take(&mut state.problems))
    }
}

/// Runs the schedule on `client`, which reports to `recorder`, then stops its members (also
/// when the run fails).
pub async fn run<C: Client>(
    spec: &RunSpec,
    client: &mut C,
    recorder: &Recorder,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<RunRecord, BoxError> {
    let mut record = RunRecord::default();
    let cluster = Cluster::connect(ClusterConfig::from_bootstrap_servers(&spec.bootstrap)?).await?;
    record.topic_created_ms = now_ms();
    cluster.create_topic(&spec.topic, spec.partitions, 1).await?;
    cluster.wait_for_topic(&spec.topic).await?;
    let producer = Arc::new(Producer::new(
        cluster,
        ProducerConfig { acks: Acks::All, compression: Compression::Lz4, ..Default::default() },
    )?);
    let log_end: LogEnd = Arc::default();
    let mut next_key = 0;
    produce_retrying(&producer, &spec.topic, &mut next_key, spec.initial_messages, &log_end).await?;
    let (stop_producing, producing) = watch::channel(false);
    let writer = tokio::spawn(keep_producing(
        producer,
        spec.topic.clone(),
        spec.produce_rate,
        next_key,
        log_end.clone(),
        producing,
    ));

    let scaled = scale(spec, client, recorder, &mut record, progress).await;
    stop_producing.send_replace(true);
    let produced = writer.await.map_err(BoxError::from).and_then(|r| r);
    if scaled.is_ok() {
        if let Ok(produced) = &produced {
            record.produced = *produced;
            record.log_end = log_end.lock().map_err(|_| "log end poisoned")?.clone();
            progress("draining");
            let deadline = Instant::now() + spec.drain_timeout;
            while !recorder.drained(&record.log_end) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            record.drained = recorder.drained(&record.log_end);
        }
    }
    record.end_ms = now_ms();
    progress("stopping the members");
    let stopped = client.stop().await;
    scaled?;
    produced?;
    stopped?;
    (record.events, record.problems) = recorder.take();
    Ok(record)
}

async fn scale<C: Client>(
    spec: &RunSpec,
    client: &mut C,
    recorder: &Recorder,
    record: &mut RunRecord,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<(), BoxError> {
    let mut started = 0;
    let first = more(&mut started, 2, spec.members);
    record.first_member_ms = now_ms();
    for member in first {
        client.add_member(member as Member).await?;
    }
    match spec.schedule {
        Schedule::OneAtATime => loop {
            let size = started;
            progress(&format!("{size} members: waiting for a stable group"));
            if wait_stable(spec, client, recorder, size).await?.is_none() {
                return Err(format!("{size} members not stable within {:?}", spec.stable_timeout).into());
            }
            tokio::time::sleep(spec.steady).await;
            let next = more(&mut started, 1, spec.members);
            if next.is_empty() {
                break;
            }
            record.last_member_ms = now_ms();
            for member in next {
                client.add_member(member as Member).await?;
            }
        },
        Schedule::Autoscaler { every } => {
            let begun = tokio::time::Instant::now();
            let mut tick = 1;
            loop {
                let next = more(&mut started, 2, spec.members);
                if next.is_empty() {
                    break;
                }
                while tokio::time::Instant::now() < begun + every * tick {
                    client.check()?;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                tick += 1;
                record.last_member_ms = now_ms();
                progress(&format!("{} members", next.end));
                for member in next {
                    client.add_member(member as Member).await?;
                }
            }
        }
        Schedule::Burst => {
            progress("2 members: waiting for a stable group");
            if wait_stable(spec, client, recorder, started).await?.is_none() {
                return Err(format!("2 members not stable within {:?}", spec.stable_timeout).into());
            }
            tokio::time::sleep(spec.steady).await;
            record.last_member_ms = now_ms();
            for member in more(&mut started, spec.members, spec.members) {
                client.add_member(member as Member).await?;
            }
        }
    }
    if record.last_member_ms == 0 {
        record.last_member_ms = record.first_member_ms;
    }
    progress(&format!("{started} members: waiting for a stable group"));
    record.converged = wait_stable(spec, client, recorder, started).await?.is_some();
    progress("tail");
    let tail_ends = tokio::time::Instant::now() + spec.tail;
    while tokio::time::Instant::now() < tail_ends {
        client.check()?;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// The next `count` member numbers, at most up to `members`.
fn more(started: &mut usize, count: usize, members: usize) -> std::ops::Range<usize> {
    let from = *started;
    *started = (from + count).min(members);
    from..*started
}

/// Until members `0..members` report one generation covering the partitions (`None`: not
/// within the bound).
async fn wait_stable<C: Client>(
    spec: &RunSpec,
    client: &mut C,
    recorder: &Recorder,
    members: usize,
) -> Result<Option<i32>, BoxError> {
    let deadline = Instant::now() + spec.stable_timeout;
    loop {
        if let Some(generation) = recorder.stable_generation(members, spec.partitions, spec.member_epochs) {
            return Ok(Some(generation));
        }
        client.check()?;
        if Instant::now() > deadline {
            return Ok(None);
        }
        tokio::time::sleep(scenario::CONVERGE_POLL).await;
    }
}

/// `produce`, again when it fails, at most 10 times: a new topic's partitions answer
/// NOT_LEADER_OR_FOLLOWER until the broker has taken their leadership, and kgroup's producer (for
/// loading data) does not retry. A retry may write some messages twice: more offsets to process,
/// nothing else.
async fn produce_retrying(
    producer: &Producer,
    topic: &str,
    next_key: &mut usize,
    count: usize,
    log_end: &LogEnd,
) -> Result<(), BoxError> {
    let mut attempts = 1;
    loop {
        match produce(producer, topic, next_key, count, log_end).await {
            Err(e) if attempts < 10 => {
                tracing::debug!(error = %e, attempts, "producing again");
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            done => return done,
        }
    }
}

/// Writes `rate` messages a second, in ten slices, until told to stop; returns the total.
async fn keep_producing(
    producer: Arc<Producer>,
    topic: String,
    rate: usize,
    mut next_key: usize,
    log_end: LogEnd,
    stop: watch::Receiver<bool>,
) -> Result<u64, BoxError> {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !*stop.borrow() {
        tick.tick().await;
        produce_retrying(&producer, &topic, &mut next_key, (rate / 10).max(1), &log_end).await?;
    }
    Ok(next_key as u64)
}

// ---------------------------------------------------------------------------------------------
// kgroup: `GroupConsumer` members as tasks of this process.

/// kgroup members: batches of up to 1000 messages read over several `poll`s (as the librdkafka
/// members gather theirs), then one `commit_leases` of them all; assignments from the member's
/// group events, each commit's generation from its outcome.
pub struct KgroupClient {
    bootstrap: String,
    group: String,
    topic: String,
    processing: Duration,
    /// After a batch's first read, how long to keep reading for up to 1000 messages.
    batch_wait: Duration,
    /// KIP-848's consumer protocol (the spec's `member_epochs`), else the classic one.
    consumer_protocol: bool,
    recorder: Arc<Recorder>,
    stop: watch::Sender<bool>,
    members: Vec<KgroupMember>,
}

struct KgroupMember {
    work: JoinHandle<Result<GroupConsumer, BoxError>>,
    events: JoinHandle<()>,
}

impl KgroupClient {
    pub fn new(spec: &RunSpec, processing: Duration, batch_wait: Duration, recorder: Arc<Recorder>) -> KgroupClient {
        KgroupClient {
            bootstrap: spec.bootstrap.clone(),
            group: spec.group.clone(),
            topic: spec.topic.clone(),
            processing,
            batch_wait,
            consumer_protocol: spec.member_epochs,
            recorder,
            stop: watch::channel(false).0,
            members: Vec::new(),
        }
    }
}

impl Client for KgroupClient {
    async fn add_member(&mut self, member: Member) -> Result<(), BoxError> {
        // Under KIP-848 the broker assigns and sets the session timeout and heartbeat interval.
        let assignment = match self.consumer_protocol {
            true => ("group.protocol", "consumer"),
            false => ("partition.assignment.strategy", "range"),
        };
        let properties =
            [("bootstrap.servers", self.bootstrap.as_str()), ("group.id", self.group.as_str()), assignment];
        let broker_side = |(key, _): &&(&str, &str)| {
            self.consumer_protocol && matches!(*key, "session.timeout.ms" | "heartbeat.interval.ms")
        };
        let settings = CONSUMER_SETTINGS.iter().filter(|s| !broker_side(s)).copied();
        let config = ConsumerConfig::from_properties(properties.into_iter().chain(settings))?;
        let consumer = GroupConsumer::subscribe(config, &[&self.topic]).await?;
        let recorder = self.recorder.clone();
        let events =
            tokio::spawn(record_group_events(member, consumer.group_events(), recorder, self.consumer_protocol));
        let pace = KgroupPace { processing: self.processing, batch_wait: self.batch_wait };
        let work = tokio::spawn(kgroup_member(member, consumer, self.recorder.clone(), pace, self.stop.subscribe()));
        self.members.push(KgroupMember { work, events });
        Ok(())
    }

    fn check(&mut self) -> Result<(), BoxError> {
        match self.members.iter().position(|m| m.work.is_finished()) {
            Some(member) => Err(format!("kgroup member {member} stopped on its own").into()),
            None => Ok(()),
        }
    }

    async fn stop(&mut self) -> Result<(), BoxError> {
        const BOUND: Duration = Duration::from_secs(60);
        self.stop.send_replace(true);
        let mut errors = Vec::new();
        let mut closes = Vec::new();
        for (member, m) in self.members.drain(..).enumerate() {
            match tokio::time::timeout(BOUND, m.work).await {
                Ok(Ok(Ok(consumer))) => closes.push((member, m.events, tokio::spawn(consumer.close()))),
                Ok(Ok(Err(e))) => errors.push(format!("member {member}: {e}")),
                Ok(Err(e)) => errors.push(format!("member {member}: {e}")),
                Err(_) => errors.push(format!("member {member} did not stop within {BOUND:?}")),
            }
        }
        // Closed together: one after another, each LeaveGroup would start a rebalance.
        for (member, events, close) in closes {
            match tokio::time::timeout(BOUND, close).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => errors.push(format!("member {member} close: {e}")),
                Ok(Err(e)) => errors.push(format!("member {member} close: {e}")),
                Err(_) => errors.push(format!("member {member} did not close within {BOUND:?}")),
            }
            events.abort();
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(format!("stopping kgroup members: {}", errors.join("; ")).into())
        }
    }
}

impl Drop for KgroupClient {
    fn drop(&mut self) {
        for m in &self.members {
            m.work.abort();
            m.events.abort();
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct KgroupPace {
    processing: Duration,
    batch_wait: Duration,
}

/// A batch: up to 1000 messages over several `poll`s (the first waits 200 ms, the rest until
/// `batch_wait` after the first read); then the processing time, then one synchronous
/// `commit_leases` of every read's lease.
async fn kgroup_member(
    member: Member,
    mut consumer: GroupConsumer,
    recorder: Arc<Recorder>,
    pace: KgroupPace,
    stop: watch::Receiver<bool>,
) -> Result<GroupConsumer, BoxError> {
    while !*stop.borrow() {
        let mut batches: Vec<Batch> = Vec::new();
        let mut read = 0;
        let mut gather_until: Option<Instant> = None;
        while read < BATCH_SIZE {
            let wait = match gather_until {
                None => Duration::from_millis(200),
                Some(until) => until.saturating_duration_since(Instant::now()),
            };
            match consumer.poll(BATCH_SIZE - read, wait).await {
                Ok(Some(batch)) => {
                    read += batch.records.len();
                    batches.push(batch);
                    gather_until.get_or_insert_with(|| Instant::now() + pace.batch_wait);
                }
                Ok(None) => break,
                Err(e) => {
                    recorder.problem(format!("kgroup member {member}: poll: {e}"));
                    break;
                }
            }
        }
        let Some(first) = batches.first() else { continue };
        let lease_generation = first.lease().generation.id.0;
        let id = recorder.batch(
            member,
            now_ms(),
            lease_generation,
            ranges(batches.iter().flat_map(|b| b.records.iter().map(|r| (r.partition(), r.offset())))),
        );
        if !pace.processing.is_zero() {
            tokio::time::sleep(pace.processing).await;
        }
        let sent_ms = now_ms();
        let leases: Vec<Lease> = batches.iter().map(|b| b.lease().clone()).collect();
        let partitions = match consumer.commit_leases(leases.clone()).await {
            Ok(results) => results
                .into_iter()
                .map(|r| {
                    let (outcome, stamp) = kgroup_outcome(&r.outcome);
                    PartitionCommit {
                        partition: r.partition.partition,
                        offset: r.offset,
                        stamp: Stamp::Exact(stamp.unwrap_or(lease_generation)),
                        outcome,
                    }
                })
                .collect(),
            Err(e) => leases
                .iter()
                .map(|lease| PartitionCommit {
                    partition: lease.partition.partition,
                    offset: lease.next_offset,
                    stamp: Stamp::Exact(lease.generation.id.0),
                    outcome: Outcome::Failed(CommitError::Other(e.to_string())),
                })
                .collect(),
        };
        recorder.record(member, now_ms(), What::Commit { batch: id, sent_ms, partitions });
    }
    Ok(consumer)
}

/// A kgroup outcome in the analysis' terms, with the generation a committed partition carried.
fn kgroup_outcome(outcome: &CommitOutcome) -> (Outcome, Option<i32>) {
    let rejected = |code: i16| {
        Outcome::Failed(CommitError::from_code(code, || kgroup::protocol::error_code::KafkaCode(code).to_string()))
    };
    match outcome {
        CommitOutcome::Committed { generation, .. } => (Outcome::Committed, Some(generation.0)),
        CommitOutcome::Fenced { reason: FenceReason::RejectedByBroker(code), .. } => (rejected(code.0), None),
        CommitOutcome::Fenced { reason, .. } => {
            let why = match reason {
                FenceReason::NotOwned => "kgroup gate: not owned",
                FenceReason::OwnershipInterrupted { .. } => "kgroup gate: ownership interrupted",
                FenceReason::OtherMember => "kgroup gate: another member id",
                _ => "kgroup gate",
            };
            (Outcome::NotSent(why.into()), None)
        }
        CommitOutcome::Failed { reason: CommitFailure::Rejected(code) } => (rejected(code.0), None),
        CommitOutcome::Failed { reason } => (Outcome::Failed(CommitError::Other(format!("{reason:?}"))), None),
        other => (Outcome::Failed(CommitError::Other(format!("{other:?}"))), None),
    }
}

/// The member's assignments, revoke windows and losses, from its group events.
/// Under KIP-848 (`consumer_protocol`) a partition the broker takes away stays the member's
/// until it reports it released, after its revoke window: the `Assigned` event that ends the
/// window says so, so `RevokeRequested` ends no holding.
async fn record_group_events(
    member: Member,
    mut events: broadcast::Receiver<GroupEventRecord>,
    recorder: Arc<Recorder>,
    consumer_protocol: bool,
) {
    loop {
        let record = match events.recv().await {
            Ok(record) => record,
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                recorder.problem(format!("kgroup member {member}: {missed} group events missed"));
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let at = epoch_ms(record.at);
        let numbers = |partitions: &[kgroup::group::TopicPartition]| partitions.iter().map(|p| p.partition).collect();
        let what = match record.event {
            GroupEvent::Assigned { generation, partitions, .. } => What::Assigned {
                generation: generation.id.0,
                partitions: partitions.iter().map(|p| p.partition.partition).collect(),
                incremental: false,
            },
            GroupEvent::RevokeRequested { generation, partitions, .. } if !consumer_protocol => {
                What::Revoked { generation: generation.0, partitions: numbers(&partitions) }
            }
            GroupEvent::Lost { partitions, .. } => What::Lost { partitions: numbers(&partitions) },
            GroupEvent::Left { .. } => What::Lost { partitions: recorder.holding(member) },
            _ => continue,
        };
        recorder.record(member, at, what);
    }
}
