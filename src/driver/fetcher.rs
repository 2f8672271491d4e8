//! The consumer's fetch path: one tokio task that keeps a bounded buffer of records for the
//! assigned partitions, which [`Fetcher::next`] hands out in order per partition.
//!
//! Per broker fetched from (a leader, or a read replica) the task keeps a connection of its own
//! (a long poll must not hold up the cluster's other traffic), at most one Fetch in flight, and
//! an incremental fetch session (KIP-227) where the broker keeps one ([`session`]). Each
//! response's batch headers are read by the job that received it, off the main task, and each
//! partition's complete batches are buffered as they came on the wire; records are made of them
//! when they are handed out ([`decode`]). A partition whose data does not decode gets a
//! [`FetchEvent::PartitionError`] after its good records and stops until it is sought or
//! assigned again, the others go on. Leadership errors and lost connections refresh metadata
//! and follow the new leader; OFFSET_OUT_OF_RANGE and [`StartPosition::Reset`] apply
//! `auto.offset.reset` through ListOffsets (always at the leader).
//!
//! With `client.rack` set, a leader may answer a fetch with a preferred read replica (KIP-392):
//! the partition is then fetched from that replica, in that broker's session (the leader's
//! session forgets it with the next request there), until `metadata.max.age.ms` passes (then the
//! leader is asked again), the replica answers the partition with an error or its connection
//! fails, or metadata no longer knows it; each of these sends the partition back to its leader,
//! as the Java client does.
//!
//! Every partition has an epoch, renewed by `assign`, `seek`, `revoke` and resets; data that
//! arrives for an older epoch (a fetch that was in flight when the application moved the
//! partition) is dropped, so nothing from before a seek is ever delivered after it.

pub mod decode;
mod decompress;
mod record;
pub mod session;
mod task;

pub use self::record::{ConsumerRecord, Headers};

/// ListOffsets for [`crate::admin`] and the consumer's offset queries, which ask the log ends
/// and offsets by time the same way.
pub(crate) use self::task::{look_up_offsets, ListedOffset};

#[cfg(test)]
mod fixtures;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use kafka_protocol::messages::ApiKey;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub use self::session::SessionMode;
use super::cluster::Cluster;
use self::decode::{DecompressionBudget, WireRecords};
use crate::error::{Error, FetchFailure};
use crate::group::TopicPartition;
use super::member_span::{MemberSpan, TaskRole};
use crate::telemetry::{MemberMetrics, Metric};

/// `isolation.level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IsolationLevel {
    /// Every record up to the high watermark, aborted transactions included (the default).
    #[default]
    ReadUncommitted,
    /// Skip records of aborted transactions and stop at the last stable offset.
    ReadCommitted,
}

impl IsolationLevel {
    fn wire(self) -> i8 {
        match self {
            IsolationLevel::ReadUncommitted => 0,
            IsolationLevel::ReadCommitted => 1,
        }
    }
}

/// `auto.offset.reset`: where to start when there is no valid position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OffsetReset {
    /// The log start offset: the oldest record kept.
    Earliest,
    /// The log end offset: only records written from now on (the default).
    #[default]
    Latest,
    /// No reset: the partition stops with an error (the consumer's
    /// [`Error::PartitionFetch`]); other partitions go on.
    None,
}

/// Fetch settings, named after the Java consumer's properties.
#[derive(Debug, Clone)]
pub struct FetcherConfig {
    /// `fetch.max.wait.ms` (default 500 ms).
    pub max_wait: Duration,
    /// `fetch.min.bytes` (default 1).
    pub min_bytes: i32,
    /// `fetch.max.bytes` (default 50 MiB). Also what the compressed batches decoded for one
    /// hand-out may decompress to, together; a batch that alone decompresses to more is a
    /// partition error.
    pub max_bytes: i32,
    /// `max.partition.fetch.bytes` (default 1 MiB).
    pub max_partition_bytes: i32,
    /// `isolation.level` (default read uncommitted).
    pub isolation: IsolationLevel,
    /// Bound on the buffered bytes of partitions that are not paused, default 64 MiB. The
    /// buffer holds record batches as they came on the wire (compressed ones compressed), each
    /// partition's in an allocation of its own, and records are made only when handed out, so
    /// this bounds the buffer's memory. Once it is reached nothing is fetched until half of it
    /// has been handed out, and a fetch asks for no more than the room left (and a sixteenth of
    /// the bound: a response takes twice its size while it is copied out), so the buffer passes
    /// the bound by at most one batch.
    pub buffer_bytes: usize,
    /// `auto.offset.reset` (default latest).
    pub auto_offset_reset: OffsetReset,
    /// `client.rack` (default none), sent with every fetch (v11+): a leader whose brokers set
    /// `replica.selector.class` may name a replica in this rack to fetch from (KIP-392).
    pub rack: Option<String>,
    /// How long a partition is fetched from the replica its leader named before the leader is
    /// asked again (default 5 min: `metadata.max.age.ms`, as in the Java client).
    pub replica_max_age: Duration,
}

impl Default for FetcherConfig {
    fn default() -> Self {
        FetcherConfig {
            max_wait: Duration::from_millis(500),
            min_bytes: 1,
            max_bytes: 52_428_800,
            max_partition_bytes: 1_048_576,
            isolation: IsolationLevel::ReadUncommitted,
            buffer_bytes: 64 * 1024 * 1024,
            auto_offset_reset: OffsetReset::Latest,
            rack: None,
            replica_max_age: Duration::from_secs(300),
        }
    }
}

/// Where a partition starts, when assigned or sought.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartPosition {
    /// At this offset (a committed offset). A negative offset means "none" and resets.
    Offset(i64),
    /// Where `auto.offset.reset` says, looked up with ListOffsets.
    Reset,
    /// The log start offset, looked up with ListOffsets whatever `auto.offset.reset` says.
    Earliest,
    /// The log end offset, looked up with ListOffsets whatever `auto.offset.reset` says.
    Latest,
}

/// Where a record's timestamp comes from: the topic's `message.timestamp.type`, carried by
/// each batch (attribute bit 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum TimestampType {
    /// The producer's time, as it set it.
    #[default]
    CreateTime,
    /// The broker's time when it appended the batch; every record of the batch has it.
    LogAppendTime,
}

/// Consecutive records of one partition, decoded as they are handed out.
#[derive(Debug, Clone)]
pub struct FetchedBatch {
    /// The partition.
    pub partition: TopicPartition,
    /// The records, in offset order.
    pub records: Vec<ConsumerRecord>,
    /// The partition's high watermark when the records were fetched.
    pub high_watermark: i64,
}

/// What [`Fetcher::next`] returns.
#[derive(Debug, Clone)]
pub enum FetchEvent {
    /// Records of one partition.
    Records(FetchedBatch),
    /// The partition cannot go on (undecodable data, OFFSET_OUT_OF_RANGE under
    /// `auto.offset.reset=none`, an authorization error...). It is not fetched again until it is
    /// sought or assigned again; other partitions are not affected.
    PartitionError {
        /// The partition stopped.
        partition: TopicPartition,
        /// Why.
        error: Error,
    },
}

/// One broker's fetch session as last seen, for diagnostics and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct BrokerSession {
    /// The broker.
    pub node_id: i32,
    /// Full fetches without a session, or the incremental session in use (KIP-227).
    pub mode: SessionMode,
    /// Fetch version negotiated on the fetcher's connection.
    pub version: i16,
    /// Fetches that listed every partition.
    pub full_fetches: u64,
    /// Fetches that listed only what changed in the session.
    pub incremental_fetches: u64,
}

/// Handle on the fetch task; dropping it stops the task and closes its connections.
pub struct Fetcher {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.shared.lock();
        f.debug_struct("Fetcher")
            .field("partitions", &state.partitions.len())
            .field("buffered_bytes", &state.buffered)
            .finish_non_exhaustive()
    }
}

impl Fetcher {
    /// Starts the task (on the current tokio runtime). Nothing is fetched until [`assign`].
    ///
    /// [`assign`]: Fetcher::assign
    #[cfg(any(test, feature = "test-support"))]
    pub fn start(cluster: Cluster, config: FetcherConfig) -> Fetcher {
        let metrics = MemberMetrics::new("", &cluster.config().connection.client_id);
        Self::start_observed(cluster, config, metrics, MemberSpan::fixed(tracing::Span::current()))
    }

    /// Starts the task, recording fetched bytes and records, lag per partition and the prefetch
    /// buffer's use into a member's metrics, and logging in the member's span.
    pub fn start_observed(cluster: Cluster, config: FetcherConfig, metrics: MemberMetrics, span: MemberSpan) -> Fetcher {
        let shared = Arc::new(Shared {
            metrics,
            state: Mutex::new(State::default()),
            data: Notify::new(),
            wake: Notify::new(),
            auto_offset_reset: config.auto_offset_reset,
            buffer_bytes: config.buffer_bytes,
            max_decompressed: usize::try_from(config.max_bytes).unwrap_or(0),
        });
        let task = tokio::spawn(span.follow(TaskRole::Fetcher, task::run(shared.clone(), cluster, config)));
        Fetcher { shared, task }
    }

    /// Adds partitions (a partition already assigned restarts from the given position).
    pub fn assign(&self, partitions: Vec<(TopicPartition, StartPosition)>) {
        let mut state = self.shared.lock();
        for (tp, start) in partitions {
            state.assign(tp, start, self.shared.auto_offset_reset);
        }
        self.shared.changed(state);
    }

    /// Stops fetching these partitions and drops their buffered and in-flight data.
    pub fn revoke(&self, partitions: Vec<TopicPartition>) {
        let mut state = self.shared.lock();
        for tp in &partitions {
            state.revoke(tp);
            let labels = [&*tp.topic, &tp.partition.to_string()];
            self.shared.metrics.remove(Metric::PartitionLag, &labels);
            self.shared.metrics.remove(Metric::PartitionReadReplica, &labels);
        }
        self.shared.record_buffer(&state);
        self.shared.changed(state);
    }

    /// Stops fetching and delivering these partitions; their buffered data is kept.
    pub fn pause(&self, partitions: Vec<TopicPartition>) {
        let mut state = self.shared.lock();
        for tp in &partitions {
            if let Some(part) = state.partitions.get_mut(tp) {
                part.paused = true;
            }
        }
        self.shared.changed(state);
    }

    /// Fetches and delivers these partitions again.
    pub fn resume(&self, partitions: Vec<TopicPartition>) {
        let mut state = self.shared.lock();
        for tp in &partitions {
            if let Some(part) = state.partitions.get_mut(tp) {
                part.paused = false;
            }
        }
        self.shared.changed(state);
    }

    /// Moves the partition's position to `offset`, dropping its buffered data (a negative
    /// offset applies `auto.offset.reset`). Restarts a partition stopped by an error.
    #[cfg(feature = "test-support")]
    pub fn seek(&self, partition: TopicPartition, offset: i64) {
        self.seek_to(partition, StartPosition::Offset(offset));
    }

    /// As [`seek`](Self::seek), to any start: the log start or end is looked up with
    /// ListOffsets before the next fetch, as `auto.offset.reset` is.
    pub fn seek_to(&self, partition: TopicPartition, to: StartPosition) {
        let mut state = self.shared.lock();
        if state.partitions.contains_key(&partition) {
            state.seek(&partition, to, self.shared.auto_offset_reset);
        } else {
            tracing::debug!(%partition, ?to, "seek on a partition that is not assigned, ignored");
        }
        self.shared.changed(state);
    }

    /// The next batch (or partition error), waiting for one: the records of whole batches,
    /// decoded now, about `max_records` of them (the batch that reaches it is finished). `None`
    /// once the fetcher is closed. Cancel-safe: a call abandoned before it returns loses nothing.
    pub async fn next(&self, max_records: usize) -> Option<FetchEvent> {
        loop {
            let notified = self.shared.data.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(event) = self.take(|state, budget| state.pop(max_records, budget)) {
                return event;
            }
            notified.await;
        }
    }

    /// The next buffered records of `partition`, about `max_records` of them, if its next
    /// buffered event is records. Lets a slow application take everything fetched for one
    /// partition in one batch, instead of one fetch response's worth per batch while the rest
    /// waits behind other partitions.
    pub fn try_next_records(&self, partition: &TopicPartition, max_records: usize) -> Option<FetchedBatch> {
        self.take(|state, budget| state.pop_records_of(partition, max_records, budget)).flatten()
    }

    /// `Some(None)` when closed, `None` when `pop` finds nothing deliverable. Records are
    /// decoded under the lock: the fetch task takes it only to plan fetches and buffer answers.
    fn take<T>(&self, pop: impl FnOnce(&mut State, &DecompressionBudget) -> Option<T>) -> Option<Option<T>> {
        let mut state = self.shared.lock();
        if state.closed {
            return Some(None);
        }
        let event = pop(&mut state, &DecompressionBudget::new(self.shared.max_decompressed))?;
        self.shared.record_buffer(&state);
        // Only a buffer that filled holds partitions back: wake the task once it drained enough
        // to fetch again (not on every record handed out).
        let refill = state.holding && state.deliverable_bytes() <= self.shared.buffer_bytes / 2;
        drop(state);
        if refill {
            self.shared.wake.notify_one();
        }
        Some(Some(event))
    }

    /// The next offset the application will receive for the partition: `None` when it is not
    /// assigned or its position is being looked up (a reset in progress).
    pub async fn position(&self, partition: TopicPartition) -> Option<i64> {
        self.shared.lock().partitions.get(&partition).and_then(Part::position)
    }

    /// The partition's high watermark in the latest fetch response that carried it: `None`
    /// when it is not assigned or nothing was fetched since.
    pub fn high_watermark(&self, partition: &TopicPartition) -> Option<i64> {
        self.shared.lock().partitions.get(partition).and_then(|p| p.high_watermark)
    }

    /// The assigned partitions, sorted.
    #[cfg(feature = "test-support")]
    pub async fn assigned(&self) -> Vec<TopicPartition> {
        let mut partitions: Vec<TopicPartition> = self.shared.lock().partitions.keys().cloned().collect();
        partitions.sort();
        partitions
    }

    /// Bytes buffered (record batches as fetched) and not yet handed out.
    #[cfg(feature = "test-support")]
    pub fn buffered_bytes(&self) -> usize {
        self.shared.lock().buffered
    }

    /// The fetch session with each broker fetched from so far.
    #[cfg(any(test, feature = "test-support"))]
    pub fn sessions(&self) -> Vec<BrokerSession> {
        self.shared.lock().sessions.values().cloned().collect()
    }

    /// Stops the task and drops everything buffered; `next` returns `None` from now on.
    pub fn close(&self) {
        let mut state = self.shared.lock();
        state.closed = true;
        state.queue.clear();
        state.buffered = 0;
        drop(state);
        self.task.abort();
        self.shared.data.notify_waiters();
    }
}

impl Drop for Fetcher {
    fn drop(&mut self) {
        self.close();
    }
}

/// What the handle and the task share.
struct Shared {
    metrics: MemberMetrics,
    state: Mutex<State>,
    /// Wakes `next()`: data buffered, a partition resumed, or the fetcher closed.
    data: Notify,
    /// Wakes the task: the assignment changed or buffer room was freed.
    wake: Notify,
    auto_offset_reset: OffsetReset,
    buffer_bytes: usize,
    /// `fetch.max.bytes`: what one hand-out's compressed batches may decompress to.
    max_decompressed: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// After a change by the application: wake the task, and readers (a resumed partition, or
    /// an error queued by an assignment, may have made data deliverable).
    /// Counts what a fetch brought a partition, and its lag after it.
    fn record_fetched(&self, tp: &TopicPartition, fetched: &Fetched) {
        self.metrics.increment(Metric::FetchRecords, &[], fetched.records as u64);
        self.metrics.increment(Metric::FetchBytes, &[], fetched.bytes as u64);
        self.metrics.set(Metric::PartitionLag, &[&*tp.topic, &tp.partition.to_string()], fetched.lag as f64);
    }

    fn record_buffer(&self, state: &State) {
        self.metrics.set(Metric::PrefetchBufferBytes, &[], state.buffered as f64);
    }

    fn changed(&self, state: MutexGuard<'_, State>) {
        drop(state);
        self.wake.notify_one();
        self.data.notify_waiters();
    }
}

/// Where a partition stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Fetching from `fetch_offset`.
    Fetch,
    /// Waiting for ListOffsets (`timestamp` -2 earliest, -1 latest).
    Reset { timestamp: i64 },
    /// Stopped by a partition error until sought or assigned again.
    Failed,
}

#[derive(Debug, Clone)]
struct Part {
    /// Renewed whenever the position is set from outside the fetch flow; results of requests
    /// sent under another epoch are dropped.
    epoch: u64,
    phase: Phase,
    /// Next offset to deliver (`None` until known).
    position: Option<i64>,
    /// Next offset to fetch: past everything buffered.
    fetch_offset: i64,
    paused: bool,
    /// The job (fetch or ListOffsets) that has this partition in flight.
    job: Option<u64>,
    /// Metadata must be refreshed before this partition is fetched again.
    stale: bool,
    retry_at: Option<Instant>,
    /// Bytes and entries of this partition in the queue.
    buffered: usize,
    queued: usize,
    /// From the latest fetch response that carried the partition.
    high_watermark: Option<i64>,
    /// The replica its leader named to fetch it from (KIP-392), while it holds.
    read_replica: Option<ReadReplica>,
    /// The node its latest fetch went to, as the metric shows it.
    fetched_from: Option<i32>,
}

/// A replica a partition's leader named in a fetch answer (`preferred_read_replica`, KIP-392).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ReadReplica {
    node: i32,
    /// Then the leader is asked again, so that a better replica (or the leader itself, once the
    /// replica falls behind) is found.
    until: Instant,
}

impl Part {
    fn position(&self) -> Option<i64> {
        match self.phase {
            Phase::Reset { .. } => None,
            Phase::Fetch | Phase::Failed => self.position,
        }
    }

    /// The node to fetch from now: the replica the leader named while it holds, else `leader`.
    /// `None` when metadata does not know the replica's broker: the replica is forgotten and
    /// metadata refreshed first (the broker may be new), so that a leader naming it again does
    /// not make a loop of instant answers.
    fn fetch_node(&mut self, leader: i32, known: impl Fn(i32) -> bool, now: Instant) -> Option<i32> {
        let Some(replica) = self.read_replica else { return Some(leader) };
        if !known(replica.node) {
            tracing::debug!(node = replica.node, leader, "read replica unknown to metadata, back to the leader");
            self.read_replica = None;
            self.stale = true;
            return None;
        }
        if replica.until <= now {
            tracing::debug!(node = replica.node, leader, "read replica expired, asking the leader again");
            self.read_replica = None;
            return Some(leader);
        }
        Some(replica.node)
    }
}

struct Entry {
    partition: TopicPartition,
    /// What `item` holds: its batches' wire bytes not yet decoded.
    bytes: usize,
    item: Buffered,
}

/// What the buffer holds for a partition, in order.
enum Buffered {
    /// Batches of one response, decoded when handed out.
    Records { wire: WireRecords, high_watermark: i64 },
    /// The partition stopped ([`FetchEvent::PartitionError`]).
    Error(Error),
}

#[derive(Default)]
struct State {
    partitions: HashMap<TopicPartition, Part>,
    /// Buffered events, in arrival order (so in offset order per partition).
    queue: VecDeque<Entry>,
    /// Bytes in `queue`.
    buffered: usize,
    last_epoch: u64,
    closed: bool,
    sessions: BTreeMap<i32, BrokerSession>,
    /// The buffer reached its bound and has not drained to half of it since: nothing is
    /// fetched meanwhile. Refilling from half, not whenever a poll frees a little room, keeps a
    /// slow application from drawing a fetch per poll (each one a round trip beside its
    /// commits).
    holding: bool,
}

/// What a fetch returned for one partition, its batch headers read.
#[derive(Debug, Clone)]
enum PartitionResult {
    /// `scan_error`: broken framing after the complete batches in `wire`.
    /// `preferred_replica`: the replica the leader names to fetch from instead (KIP-392).
    Data { wire: WireRecords, scan_error: Option<String>, high_watermark: i64, preferred_replica: Option<i32> },
    Error { code: i16 },
}

/// What applying a fetch result reacts with, besides the result.
#[derive(Debug, Clone, Copy)]
struct Reactions {
    /// `auto.offset.reset`, for OFFSET_OUT_OF_RANGE from the leader.
    reset: OffsetReset,
    /// When a partition with a transient error is fetched again.
    retry_at: Instant,
    /// How long a replica the leader names is fetched from.
    replica_until: Instant,
}

/// What the task must do after applying a result.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Applied {
    /// Records or an error were queued: wake readers.
    queued: bool,
    /// What a fetch that was applied brought, for the metrics.
    fetched: Option<Fetched>,
}

/// A partition's fetch result as the metrics count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fetched {
    /// As the batch headers count them.
    records: usize,
    /// As the prefetch buffer counts them.
    bytes: usize,
    /// The high watermark minus the new fetch position.
    lag: i64,
}

impl State {
    fn new_epoch(&mut self) -> u64 {
        self.last_epoch += 1;
        self.last_epoch
    }

    fn assign(&mut self, tp: TopicPartition, start: StartPosition, reset: OffsetReset) {
        self.drop_queued(&tp);
        let epoch = self.new_epoch();
        let job = self.partitions.get(&tp).and_then(|p| p.job);
        let part = Part {
            epoch,
            phase: Phase::Fetch,
            position: None,
            fetch_offset: 0,
            paused: false,
            job,
            stale: false,
            retry_at: None,
            buffered: 0,
            queued: 0,
            high_watermark: None,
            read_replica: None,
            fetched_from: None,
        };
        self.partitions.insert(tp.clone(), part);
        self.start_at(&tp, start, reset);
    }

    fn revoke(&mut self, tp: &TopicPartition) {
        self.drop_queued(tp);
        self.partitions.remove(tp);
    }

    fn seek(&mut self, tp: &TopicPartition, to: StartPosition, reset: OffsetReset) {
        self.drop_queued(tp);
        let epoch = self.new_epoch();
        if let Some(part) = self.partitions.get_mut(tp) {
            part.epoch = epoch;
            part.retry_at = None;
        }
        self.start_at(tp, to, reset);
    }

    fn start_at(&mut self, tp: &TopicPartition, start: StartPosition, reset: OffsetReset) {
        match start {
            StartPosition::Offset(offset) if offset >= 0 => self.set_position(tp, offset),
            StartPosition::Offset(_) | StartPosition::Reset => self.start_reset(tp, reset, None),
            StartPosition::Earliest => self.look_up_position(tp, -2),
            StartPosition::Latest => self.look_up_position(tp, -1),
        }
    }

    fn set_position(&mut self, tp: &TopicPartition, offset: i64) {
        if let Some(part) = self.partitions.get_mut(tp) {
            part.phase = Phase::Fetch;
            part.position = Some(offset);
            part.fetch_offset = offset;
        }
    }

    /// Starts `auto.offset.reset` for the partition (or fails it under `none`). `cause` is the
    /// broker error that made it necessary, for the error report.
    fn start_reset(&mut self, tp: &TopicPartition, reset: OffsetReset, cause: Option<FetchFailure>) {
        let timestamp = match reset {
            OffsetReset::Earliest => -2,
            OffsetReset::Latest => -1,
            OffsetReset::None => {
                self.fail(tp, cause.unwrap_or(FetchFailure::NoResetPolicy));
                return;
            }
        };
        self.look_up_position(tp, timestamp);
    }

    /// Drops the partition's buffered data and looks its position up with ListOffsets at
    /// `timestamp` (-2 the log start, -1 the log end) before it is fetched again.
    fn look_up_position(&mut self, tp: &TopicPartition, timestamp: i64) {
        self.drop_queued(tp);
        let epoch = self.new_epoch();
        if let Some(part) = self.partitions.get_mut(tp) {
            part.epoch = epoch;
            part.phase = Phase::Reset { timestamp };
            part.position = None;
            part.retry_at = None;
        }
    }

    /// Queues a partition error and stops the partition.
    fn fail(&mut self, tp: &TopicPartition, cause: FetchFailure) {
        self.fail_at(self.queue.len(), tp, cause);
    }

    /// Stops the partition with an error queued at `index` (where its records were).
    fn fail_at(&mut self, index: usize, tp: &TopicPartition, cause: FetchFailure) {
        let Some(part) = self.partitions.get_mut(tp) else { return };
        let error = Error::PartitionFetch { partition: tp.clone(), cause };
        tracing::warn!(partition = %tp, %error, "partition stopped");
        part.phase = Phase::Failed;
        part.queued += 1;
        let entry = Entry { partition: tp.clone(), bytes: 0, item: Buffered::Error(error) };
        self.queue.insert(index.min(self.queue.len()), entry);
    }

    fn drop_queued(&mut self, tp: &TopicPartition) {
        let Some(part) = self.partitions.get_mut(tp) else { return };
        if part.queued > 0 {
            self.queue.retain(|e| &e.partition != tp);
            self.buffered -= part.buffered;
            part.buffered = 0;
            part.queued = 0;
        }
    }

    /// Takes the first deliverable event (of a partition that is not paused), decoding about
    /// `max_records` records.
    fn pop(&mut self, max_records: usize, budget: &DecompressionBudget) -> Option<FetchEvent> {
        loop {
            let partitions = &self.partitions;
            let index = self.queue.iter().position(|e| partitions.get(&e.partition).is_some_and(|p| !p.paused))?;
            if matches!(self.queue[index].item, Buffered::Error(_)) {
                let entry = self.remove_at(index)?;
                let Buffered::Error(error) = entry.item else { return None };
                return Some(FetchEvent::PartitionError { partition: entry.partition, error });
            }
            if let Some(batch) = self.decode_at(index, max_records, budget) {
                return Some(FetchEvent::Records(batch));
            }
        }
    }

    /// About `max_records` of the first queued records of `tp`, if `tp` is not paused and its
    /// next event is records.
    fn pop_records_of(
        &mut self,
        tp: &TopicPartition,
        max_records: usize,
        budget: &DecompressionBudget,
    ) -> Option<FetchedBatch> {
        if self.partitions.get(tp).is_none_or(|p| p.paused) {
            return None;
        }
        loop {
            let index = self.queue.iter().position(|e| &e.partition == tp)?;
            if matches!(self.queue[index].item, Buffered::Error(_)) {
                return None;
            }
            if let Some(batch) = self.decode_at(index, max_records, budget) {
                return Some(batch);
            }
        }
    }

    fn remove_at(&mut self, index: usize) -> Option<Entry> {
        let entry = self.queue.remove(index)?;
        self.buffered -= entry.bytes;
        if let Some(part) = self.partitions.get_mut(&entry.partition) {
            part.buffered -= entry.bytes;
            part.queued -= 1;
        }
        Some(entry)
    }

    /// Decodes whole batches of the records entry at `index`, about `max_records` records, and
    /// moves the partition's position past them; the entry goes once it is all decoded. `None`
    /// when they were control records or aborted transactions only (the entry gave up at least
    /// one batch). A batch that does not decode stops the partition after the records before
    /// it: nothing buffered after it is delivered.
    fn decode_at(&mut self, index: usize, max_records: usize, budget: &DecompressionBudget) -> Option<FetchedBatch> {
        let entry = self.queue.get_mut(index)?;
        let Buffered::Records { wire, high_watermark } = &mut entry.item else { return None };
        let high_watermark = *high_watermark;
        let before = wire.wire_len();
        let decoded = wire.decode(max_records.max(1), budget);
        let consumed = before - wire.wire_len();
        let finished = wire.is_empty();
        entry.bytes -= consumed;
        let tp = entry.partition.clone();
        self.buffered -= consumed;
        if let Some(part) = self.partitions.get_mut(&tp) {
            part.buffered -= consumed;
            part.position = Some(decoded.next_offset);
        }
        if finished {
            self.remove_at(index);
        }
        if let Some(reason) = decoded.error {
            self.drop_queued(&tp);
            self.fail_at(index, &tp, FetchFailure::Undecodable(reason));
        }
        let records = decoded.records;
        (!records.is_empty()).then_some(FetchedBatch { partition: tp, records, high_watermark })
    }

    /// How many bytes a fetch may bring now, of `bound`: none from when the deliverable bytes
    /// reach it until they drain to half of it ([`State::holding`]).
    fn room(&mut self, bound: usize) -> usize {
        let deliverable = self.deliverable_bytes();
        if deliverable >= bound {
            self.holding = true;
        } else if deliverable <= bound / 2 {
            self.holding = false;
        }
        if self.holding {
            0
        } else {
            bound - deliverable
        }
    }

    /// Buffered bytes of partitions that are not paused: what the bound applies to (a paused
    /// partition's data must not stop the others).
    fn deliverable_bytes(&self) -> usize {
        let paused: usize = self.partitions.values().filter(|p| p.paused).map(|p| p.buffered).sum();
        self.buffered.saturating_sub(paused)
    }

    /// Applies one partition's fetch result, if the fetch (sent under `epoch` from
    /// `fetch_offset`) still matches the partition.
    fn apply_fetch(
        &mut self,
        tp: &TopicPartition,
        epoch: u64,
        fetch_offset: i64,
        result: PartitionResult,
        reactions: Reactions,
    ) -> Applied {
        let Some(part) = self.partitions.get_mut(tp) else { return Applied::default() };
        if part.epoch != epoch || part.phase != Phase::Fetch || part.fetch_offset != fetch_offset {
            tracing::trace!(partition = %tp, "dropping data of a superseded fetch");
            return Applied::default();
        }
        match result {
            PartitionResult::Data { wire, scan_error, high_watermark, preferred_replica } => {
                part.high_watermark = Some(high_watermark);
                if let Some(node) = preferred_replica {
                    if part.read_replica.is_none_or(|r| r.node != node) {
                        tracing::debug!(partition = %tp, node, "the leader names a replica to fetch from");
                    }
                    part.read_replica = Some(ReadReplica { node, until: reactions.replica_until });
                }
                let next_offset = wire.end().max(fetch_offset);
                let (records, bytes) = (wire.record_count(), wire.wire_len());
                let mut queued = false;
                if !wire.is_empty() {
                    part.buffered += bytes;
                    part.queued += 1;
                    part.fetch_offset = next_offset;
                    self.buffered += bytes;
                    let item = Buffered::Records { wire, high_watermark };
                    self.queue.push_back(Entry { partition: tp.clone(), bytes, item });
                    queued = true;
                }
                if let Some(reason) = scan_error {
                    self.fail(tp, FetchFailure::Undecodable(reason));
                    queued = true;
                }
                let lag = (high_watermark - next_offset).max(0);
                Applied { queued, fetched: Some(Fetched { records, bytes, lag }) }
            }
            PartitionResult::Error { code } => self.apply_error(tp, code, fetch_offset, reactions),
        }
    }

    /// An error for the partition. From a read replica, any error sends the partition back to
    /// its leader, which names a replica again if it still prefers one: a follower answers
    /// NOT_LEADER_OR_FOLLOWER, REPLICA_NOT_AVAILABLE or OFFSET_NOT_AVAILABLE when it cannot serve
    /// the partition (yet), and OFFSET_OUT_OF_RANGE when it lags behind the position, which is
    /// not a reason to reset it (KIP-392).
    fn apply_error(&mut self, tp: &TopicPartition, code: i16, fetch_offset: i64, reactions: Reactions) -> Applied {
        use crate::protocol::error_code::codes::{OFFSET_OUT_OF_RANGE, UNKNOWN_SERVER_ERROR};
        use crate::protocol::error_code::{ErrorAction, KafkaCode};
        let Reactions { reset, retry_at, .. } = reactions;
        let error = || FetchFailure::Broker { api: ApiKey::Fetch, code: KafkaCode(code), offset: Some(fetch_offset) };
        let Some(part) = self.partitions.get_mut(tp) else { return Applied::default() };
        if let Some(replica) = part.read_replica.take() {
            tracing::debug!(partition = %tp, node = replica.node, code = %KafkaCode(code), "read replica failed, back to the leader");
            if code == OFFSET_OUT_OF_RANGE {
                // Backing off bounds a loop of a leader naming a replica that keeps refusing.
                part.retry_at = Some(retry_at);
                return Applied::default();
            }
        }
        if code == OFFSET_OUT_OF_RANGE {
            tracing::info!(partition = %tp, fetch_offset, policy = ?reset, "offset out of range, resetting");
            self.start_reset(tp, reset, Some(error()));
            return Applied { queued: reset == OffsetReset::None, fetched: None };
        }
        match KafkaCode(code).action() {
            Some(ErrorAction::RefreshMetadata) => {
                tracing::debug!(partition = %tp, code = %KafkaCode(code), "refreshing metadata");
                part.stale = true;
            }
            Some(ErrorAction::Retry) => part.retry_at = Some(retry_at),
            _ if code == UNKNOWN_SERVER_ERROR => part.retry_at = Some(retry_at),
            _ => {
                self.fail(tp, error());
                return Applied { queued: true, fetched: None };
            }
        }
        Applied::default()
    }

    /// Applies a ListOffsets answer for a partition reset under `epoch`.
    fn apply_reset(&mut self, tp: &TopicPartition, epoch: u64, code: i16, offset: i64, retry_at: Instant) -> Applied {
        use crate::protocol::error_code::{ErrorAction, KafkaCode};
        let Some(part) = self.partitions.get_mut(tp) else { return Applied::default() };
        if part.epoch != epoch || !matches!(part.phase, Phase::Reset { .. }) {
            return Applied::default();
        }
        if code == 0 && offset >= 0 {
            tracing::debug!(partition = %tp, offset, "position reset");
            self.set_position(tp, offset);
            return Applied::default();
        }
        match KafkaCode(code).action() {
            Some(ErrorAction::RefreshMetadata) => part.stale = true,
            None | Some(ErrorAction::Retry) => part.retry_at = Some(retry_at),
            _ if code == -1 => part.retry_at = Some(retry_at),
            _ => {
                self.fail(tp, FetchFailure::Broker { api: ApiKey::ListOffsets, code: KafkaCode(code), offset: None });
                return Applied { queued: true, fetched: None };
            }
        }
        Applied::default()
    }

    /// The fetch of these partitions failed as a whole (connection lost, timeout): those fetched
    /// from a read replica go back to their leader.
    fn forget_read_replicas<'a>(&mut self, partitions: impl IntoIterator<Item = &'a TopicPartition>) {
        for tp in partitions {
            if let Some(part) = self.partitions.get_mut(tp) {
                part.read_replica = None;
            }
        }
    }

    /// A job that had these partitions in flight is over.
    fn finish_job(&mut self, job: u64, partitions: impl IntoIterator<Item = TopicPartition>) {
        for tp in partitions {
            if let Some(part) = self.partitions.get_mut(&tp) {
                if part.job == Some(job) {
                    part.job = None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_sessions;
