//! The public consumer: [`GroupConsumer`], a `Stream` of per-partition record batches, each
//! carrying the lease its commit is judged by.
//!
//! What the consumer does with group events, fetched records and the application's calls is
//! decided by a sans-IO [`session::ConsumerSession`]; a background task pumps it. A revoke
//! window stops handing out records of the revoked partitions and waits until every lease the
//! application holds on them is committed or stored (up to the rebalance callback timeout), so
//! those commits go out in the generation that still owns the partitions; then it runs the
//! rebalance listener, commits stored offsets when auto-commit is on, and lets the member
//! rejoin. Partitions kept across a rebalance keep their position and their buffered records;
//! a partition owned again after a gap starts again from its committed offset.
//!
//! [`AssignedConsumer`] is the same consumer without membership (Java's `assign`): the
//! application's [`assign`](AssignedConsumer::assign) replaces what the group would assign,
//! and its commits go out without a generation.

pub mod config;
pub mod session;

use std::collections::VecDeque;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use kafka_protocol::messages::ApiKey;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;

pub use self::config::{ConfigWarning, ConfigWarningKind, ConsumerConfig, IsolationLevel, OffsetReset};
use crate::driver::cluster::{Cluster, ClusterConfig};
use crate::driver::fetcher::{look_up_offsets, FetchEvent, Fetcher, FetcherConfig, ListedOffset, StartPosition};
pub use crate::driver::fetcher::{ConsumerRecord, Headers, TimestampType};
use crate::driver::group::GroupObserver;
use crate::driver::group::{ControlEvents, GroupEventRecord, GroupHandle, RevokeMode};
use crate::driver::member_span::TaskRole;
use crate::error::{ClosedCause, Error, Result};
use crate::group::{
    GroupEvent, GroupSnapshot, Lease, OffsetLookupFailure, PartitionCommit, TopicPartition, TopicPattern,
    TopicSubscription,
};
use crate::telemetry::MemberMetrics;
use session::{
    ConsumerSession, ListenerCall, LookupAnswer, LookupId, RecordRun, RecordSource, SessionAction, SessionBatch,
    SessionConfig,
};

/// Records of one partition, handed out together, with the lease to commit them by.
#[derive(Debug, Clone)]
pub struct Batch {
    /// The partition.
    pub partition: TopicPartition,
    /// The records, in offset order.
    pub records: Vec<ConsumerRecord>,
    /// The partition's high watermark when the records were fetched.
    pub high_watermark: i64,
    lease: Lease,
    /// The partition's incarnation in the session when the batch was made.
    incarnation: u64,
}

impl Batch {
    /// The lease: commit it (or [`GroupConsumer::commit`] the batch) once processed.
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// The offset after the last record: what a commit of this batch stores.
    pub fn next_offset(&self) -> i64 {
        self.lease.next_offset
    }
}

/// Rebalance callbacks, as Java's `ConsumerRebalanceListener`. Each runs under the consumer's
/// rebalance callback timeout, one at a time, while the consumer goes on serving the application;
/// no batch is handed out until it returns. The [`RebalanceContext`] reaches the consumer from
/// inside a callback (commits, seeks, positions, the whole assignment).
///
/// The partitions passed are what changed. Under a cooperative assignor (KIP-429) `revoked` gets
/// only the partitions taken away (and is not called when none are) and `assigned` only those
/// added; under an eager one `revoked` gets every owned partition and `assigned` the whole new
/// assignment. `assigned` is called after every rebalance, even with nothing added.
pub trait RebalanceListener: Send + Sync {
    /// Partitions added to this member, before any of their records is handed out: a
    /// [`seek`](RebalanceContext::seek) here decides where they start.
    fn assigned<'a>(
        &'a self,
        _context: &'a RebalanceContext,
        _partitions: &'a [TopicPartition],
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async {})
    }
    /// Partitions taken away, while this member still owns them: the member rejoins only when
    /// this returns (or the timeout passes), so a commit made here goes out in the generation
    /// that owns them and is not fenced.
    fn revoked<'a>(
        &'a self,
        _context: &'a RebalanceContext,
        _partitions: &'a [TopicPartition],
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async {})
    }
    /// Partitions lost without a revoke window (the group moved on without this member):
    /// they may already be someone else's, so commits of them are fenced.
    fn lost<'a>(
        &'a self,
        _context: &'a RebalanceContext,
        _partitions: &'a [TopicPartition],
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async {})
    }
}

/// The consumer as a rebalance callback reaches it. Its calls go through the consumer exactly
/// as [`GroupConsumer`]'s do, so the revoke window counts a commit made here.
pub struct RebalanceContext {
    group: GroupHandle,
    requests: mpsc::UnboundedSender<Request>,
}

impl std::fmt::Debug for RebalanceContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RebalanceContext").finish_non_exhaustive()
    }
}

impl RebalanceContext {
    /// Commits leases, as [`GroupConsumer::commit_leases`]. Inside `revoked` the commit goes out
    /// in the generation that still owns the partitions. Cancel safety: handed to the member at
    /// the first poll; dropping the future after that does not withdraw it.
    pub async fn commit_leases(&self, leases: Vec<Lease>) -> Result<Vec<PartitionCommit>> {
        self.reach().commit_leases(leases).await
    }

    /// Commits the stored offsets, as [`GroupConsumer::commit_stored`]. Cancel safety: once
    /// polled, the stored offsets are taken and committed whether or not the future is kept.
    pub async fn commit_stored(&self) -> Result<Vec<PartitionCommit>> {
        self.reach().commit_stored().await
    }

    /// Moves an owned partition's position, as [`GroupConsumer::seek`]; in `assigned`, where a
    /// new partition starts.
    pub fn seek(&self, partition: TopicPartition, offset: i64) -> Result<()> {
        self.reach().seek(partition, offset)
    }

    /// The next offset the consumer hands out for `partition`, as [`GroupConsumer::position`].
    /// Cancel-safe.
    pub async fn position(&self, partition: TopicPartition) -> Result<Option<i64>> {
        self.reach().position(partition).await
    }

    /// Every partition owned now, not only those of the call: during `revoked` it still holds
    /// the revoked ones. Cancel-safe.
    pub async fn assignment(&self) -> Result<Vec<TopicPartition>> {
        self.reach().assignment().await
    }

    /// The membership snapshot (generation, assignment, commits in flight). Cancel-safe.
    pub async fn group_state(&self) -> Result<GroupSnapshot> {
        self.group.group_state().await
    }

    fn reach(&self) -> Reach<'_> {
        Reach { group: &self.group, requests: &self.requests }
    }
}

/// The consumer's task and member, as [`GroupConsumer`] and [`RebalanceContext`] both reach them.
struct Reach<'a> {
    group: &'a GroupHandle,
    requests: &'a mpsc::UnboundedSender<Request>,
}

impl Reach<'_> {
    async fn commit_leases(&self, leases: Vec<Lease>) -> Result<Vec<PartitionCommit>> {
        // The member has the commit before the task hears of it, so the window it may close
        // (`revoke_done`) reaches the member after the commit.
        let outcome = self.group.start_commit(leases.clone());
        let _ = self.send(Request::Committing(leases));
        outcome.await
    }

    async fn commit_stored(&self) -> Result<Vec<PartitionCommit>> {
        let (reply, rx) = oneshot::channel();
        self.send(Request::CommitStored(reply))?;
        rx.await.map_err(|_| consumer_closed())?.await
    }

    async fn position(&self, partition: TopicPartition) -> Result<Option<i64>> {
        let (reply, rx) = oneshot::channel();
        self.send(Request::Position(partition, reply))?;
        rx.await.map_err(|_| consumer_closed())
    }

    fn seek(&self, partition: TopicPartition, offset: i64) -> Result<()> {
        self.send(Request::Seek(vec![partition], StartPosition::Offset(offset)))
    }

    async fn assignment(&self) -> Result<Vec<TopicPartition>> {
        let (reply, rx) = oneshot::channel();
        self.send(Request::Assignment(reply))?;
        rx.await.map_err(|_| consumer_closed())
    }

    fn send(&self, request: Request) -> Result<()> {
        self.requests.send(request).map_err(|_| consumer_closed())
    }
}

/// The cluster view a consumer of `config` works through.
async fn connect(config: &ConsumerConfig) -> Result<Cluster> {
    let mut cluster_config = ClusterConfig::new(config.bootstrap_servers.clone());
    cluster_config.connection.client_id = config.client_id.clone();
    cluster_config.connection.request_timeout = config.request_timeout;
    cluster_config.connection.security = config.security.clone();
    Cluster::connect(cluster_config).await
}

/// The consumer's task is gone while a handle on it is not: the task ended (the consumer's own
/// `close` consumes it, so nobody can call it after that).
fn consumer_closed() -> Error {
    Error::Closed { what: "consumer", cause: ClosedCause::TaskEnded }
}

type NextReply = oneshot::Sender<Option<Result<Batch>>>;

type NextAnswer = oneshot::Receiver<Option<Result<Batch>>>;

enum Request {
    Next {
        limit: usize,
        reply: NextReply,
    },
    Position(TopicPartition, oneshot::Sender<Option<i64>>),
    /// The lag by the high watermark of the latest fetch response.
    CachedLag(TopicPartition, oneshot::Sender<Option<i64>>),
    Seek(Vec<TopicPartition>, StartPosition),
    Pause(Vec<TopicPartition>),
    Resume(Vec<TopicPartition>),
    /// Replace the assignment (manual assignment only).
    Assign(Vec<TopicPartition>),
    Assignment(oneshot::Sender<Vec<TopicPartition>>),
    /// A batch handed out but not returned to the application: its records go back in front.
    Unread(Batch),
    /// Leases the application committed: already with the member, so no longer outstanding.
    Committing(Vec<Lease>),
    Store(Lease),
    /// Commit the stored offsets: the task hands them to the member and returns the outcome.
    CommitStored(oneshot::Sender<PendingCommit>),
    /// Stop, returning the stored offsets.
    Close(oneshot::Sender<Vec<Lease>>),
    /// Hand the member a new subscription; answered once the revocation it starts is applied.
    Subscribe(TopicSubscription, oneshot::Sender<Result<()>>),
}

type PendingCommit = Pin<Box<dyn Future<Output = Result<Vec<PartitionCommit>>> + Send>>;

/// The first offset whose record's timestamp is at or after a time
/// ([`GroupConsumer::offsets_for_times`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetAndTimestamp {
    /// The record's offset.
    pub offset: i64,
    /// The record's timestamp (milliseconds since the epoch).
    pub timestamp: i64,
}

/// A partition's log start and end, as its leader answers ([`GroupConsumer::watermarks`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watermarks {
    /// The log start offset: the oldest record kept.
    pub low: i64,
    /// The high watermark: the offset after the last record every in-sync replica has.
    pub high: i64,
}

/// A consumer that fetches, hands out batches with leases, and commits them: a
/// [`GroupConsumer`] as a member of a consumer group, an [`AssignedConsumer`] on the partitions
/// the application names. `M` says which; every call below is the same for both.
pub struct Consumer<M> {
    config: ConsumerConfig,
    /// For the offset queries, which go to partition leaders.
    cluster: Cluster,
    group: GroupHandle,
    requests: mpsc::UnboundedSender<Request>,
    /// The stream's request for its next batch, outstanding across `poll_next` calls.
    next: Option<NextAnswer>,
    /// What the task handed over for a request nobody waits on any more (a `poll` future
    /// dropped, or timed out, just after the answer came): the next `poll`, the stream or
    /// `close` takes it.
    undelivered: Option<Result<Batch>>,
    /// Subscribed before the member's task ran, for the first [`group_events`](Self::group_events).
    first_events: Mutex<Option<broadcast::Receiver<GroupEventRecord>>>,
    mode: PhantomData<fn() -> M>,
}

/// [`Consumer`]'s mode of a consumer-group member: the group's coordinator assigns its
/// partitions, and its commits go through the generation gate.
#[derive(Debug)]
pub enum Subscribed {}

/// [`Consumer`]'s mode of manual assignment (Java's `assign`): no group membership.
#[derive(Debug)]
pub enum ManuallyAssigned {}

/// A consumer-group member that fetches, hands out batches with leases, and commits them
/// through the generation gate.
pub type GroupConsumer = Consumer<Subscribed>;

/// A consumer of the partitions the application names (Java's `KafkaConsumer.assign`), with
/// no group membership: no JoinGroup, SyncGroup, Heartbeat or LeaveGroup, and no rebalances.
///
/// `group.id` is optional. With one, a partition new to the consumer starts from the group's
/// committed offset (else `auto.offset.reset`), and commits go out as Java's do for a manually
/// assigned consumer: with generation -1 and no member id, which Kafka accepts only while no
/// member has joined the group (a "simple" consumer group); a group with members refuses them
/// (UNKNOWN_MEMBER_ID from Kafka), reported as a `Failed` outcome with the code. Without one,
/// partitions start at `auto.offset.reset`, and commits and [`committed`](Self::committed) are
/// [`Error::NoGroup`] (build the config with [`ConsumerConfig::without_group`]).
///
/// ```no_run
/// use std::time::Duration;
/// use kgroup::group::TopicPartition;
/// use kgroup::{AssignedConsumer, ConsumerConfig};
///
/// # async fn run() -> Result<(), kgroup::Error> {
/// let mut consumer = AssignedConsumer::connect(ConsumerConfig::without_group("127.0.0.1:9092")).await?;
/// consumer.assign(vec![TopicPartition::new("orders", 0), TopicPartition::new("orders", 1)])?;
/// if let Some(batch) = consumer.poll(500, Duration::from_secs(1)).await? {
///     println!("{} records of {}", batch.records.len(), batch.partition);
/// }
/// consumer.close().await
/// # }
/// ```
pub type AssignedConsumer = Consumer<ManuallyAssigned>;

impl<M> std::fmt::Debug for Consumer<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("mode", &std::any::type_name::<M>())
            .field("group_id", &self.config.group_id)
            .finish_non_exhaustive()
    }
}

impl Consumer<Subscribed> {
    /// Connects, subscribes to `topics` and starts joining the group. Cancel-safe: dropped
    /// before it returns, it has started no member.
    pub async fn subscribe(config: ConsumerConfig, topics: &[&str]) -> Result<GroupConsumer> {
        Self::subscribe_with_listener(config, topics, None).await
    }

    /// As [`subscribe`](Self::subscribe), with rebalance callbacks. Cancel-safe as `subscribe`.
    pub async fn subscribe_with_listener(
        config: ConsumerConfig,
        topics: &[&str],
        listener: Option<Arc<dyn RebalanceListener>>,
    ) -> Result<GroupConsumer> {
        Self::start(config, TopicSubscription::Topics(topics.iter().map(|t| t.to_string()).collect()), listener).await
    }

    /// Connects, subscribes to every topic whose whole name matches the regular expression
    /// `pattern` (Java's `subscribe(Pattern)`; internal topics left out under
    /// `exclude.internal.topics`) and starts joining the group. The cluster's topics are listed
    /// before the first join and every `metadata.max.age.ms` after; when the topics matched
    /// change, the member rejoins with them. A pattern that matches nothing yet joins with no
    /// topics and picks them up as they are created. Cancel-safe as `subscribe`.
    pub async fn subscribe_pattern(config: ConsumerConfig, pattern: &str) -> Result<GroupConsumer> {
        Self::subscribe_pattern_with_listener(config, pattern, None).await
    }

    /// As [`subscribe_pattern`](Self::subscribe_pattern), with rebalance callbacks. Cancel-safe
    /// as `subscribe`.
    pub async fn subscribe_pattern_with_listener(
        config: ConsumerConfig,
        pattern: &str,
        listener: Option<Arc<dyn RebalanceListener>>,
    ) -> Result<GroupConsumer> {
        let pattern = TopicPattern::new(pattern)?;
        Self::start(config, TopicSubscription::Pattern(pattern), listener).await
    }

    async fn start(
        config: ConsumerConfig,
        subscription: TopicSubscription,
        listener: Option<Arc<dyn RebalanceListener>>,
    ) -> Result<GroupConsumer> {
        config.validate()?;
        let cluster = connect(&config).await?;
        let member =
            GroupHandle::start_with_control(cluster.clone(), config.group_config(), subscription, RevokeMode::Manual)
                .await?;
        Ok(Self::run(config, cluster, member, listener))
    }

    /// Changes the subscription to `topics` (Java: `subscribe` called again), names checked as
    /// at start. The member rejoins; under an eager assignor it revokes all its partitions
    /// first, under a cooperative one (KIP-429) those of the topics dropped. Once this returns
    /// no batch of a revoked partition is handed out any more (a batch a cancelled `poll` left
    /// behind goes back first): the revoke window runs as in any rebalance (the listener's
    /// `revoked`, commits of the leases held on them still go out in the generation that owns
    /// them), and a commit of their leases after it is fenced locally. The new topics'
    /// partitions arrive with the next assignment. The same topics again change nothing. A
    /// cooperative member called while a rebalance is already under way keeps the dropped
    /// topics' partitions until the assignment that follows takes them away.
    ///
    /// Cancel safety: once polled, the change is handed over and is not withdrawn by dropping
    /// the future.
    pub async fn change_subscription(&mut self, topics: &[&str]) -> Result<()> {
        let topics = TopicSubscription::Topics(topics.iter().map(|t| t.to_string()).collect());
        match self.take_undelivered(usize::MAX)? {
            Some(Ok(batch)) => self.send(Request::Unread(batch))?,
            error @ Some(Err(_)) => self.undelivered = error,
            None => {}
        }
        let (reply, rx) = oneshot::channel();
        self.send(Request::Subscribe(topics, reply))?;
        rx.await.map_err(|_| consumer_closed())?
    }
}

impl Consumer<ManuallyAssigned> {
    /// Connects; nothing is read until [`assign`](Self::assign) names partitions. Cancel-safe:
    /// dropped before it returns, it has started nothing.
    pub async fn connect(config: ConsumerConfig) -> Result<AssignedConsumer> {
        config.validate_assigned()?;
        let cluster = connect(&config).await?;
        let member = GroupHandle::start_manual(cluster.clone(), config.group_config());
        Ok(Self::run(config, cluster, member, None))
    }

    /// Replaces the assignment with `partitions`, as Java's `assign`: a partition kept keeps
    /// its position and the records fetched for it; one no longer named is dropped, with its
    /// stored offset; a new one starts from the group's committed offset, else (none committed,
    /// or no `group.id`) from `auto.offset.reset`. A committed offset that cannot be looked up
    /// is asked again (an authorization error reaches `poll`), never taken as "none
    /// committed". An empty list stops reading everything. Not async: it takes effect in order
    /// with the calls before and after it (a [`seek`](Self::seek) right after it applies to the
    /// new partitions).
    pub fn assign(&self, partitions: Vec<TopicPartition>) -> Result<()> {
        self.send(Request::Assign(partitions))
    }
}

impl<M> Consumer<M> {
    /// Starts the consumer's task on a running member.
    fn run(
        config: ConsumerConfig,
        cluster: Cluster,
        (group, control, [first_events]): (GroupHandle, ControlEvents, [broadcast::Receiver<GroupEventRecord>; 1]),
        listener: Option<Arc<dyn RebalanceListener>>,
    ) -> Self {
        let fetcher = Fetcher::start_observed(
            cluster.clone(),
            FetcherConfig {
                max_wait: config.fetch_max_wait,
                min_bytes: config.fetch_min_bytes,
                max_bytes: config.fetch_max_bytes,
                max_partition_bytes: config.max_partition_fetch_bytes,
                isolation: config.isolation_level,
                buffer_bytes: config.prefetch_bytes,
                auto_offset_reset: config.auto_offset_reset,
                rack: config.client_rack.clone(),
                replica_max_age: config.metadata_max_age,
            },
            group.metrics().clone(),
            group.span().clone(),
        );
        let (requests, rx) = mpsc::unbounded_channel();
        let session_config = SessionConfig {
            max_poll_interval: config.max_poll_interval,
            rebalance_callback_timeout: config.rebalance_callback_timeout,
            auto_commit_interval: config.enable_auto_commit.then_some(config.auto_commit_interval),
            auto_offset_store: config.enable_auto_offset_store,
            listener: listener.is_some(),
            static_member: config.group_instance_id.is_some(),
            committed_offsets: config.has_group(),
        };
        let task = ConsumerTask {
            session: ConsumerSession::new(session_config, Instant::now().into_std()),
            requests: requests.downgrade(),
            closing: None,
            group: group.clone(),
            control,
            fetcher,
            waiting: None,
            listener,
            listener_calls: VecDeque::new(),
            running_listener: None,
            lookups: JoinSet::new(),
        };
        tokio::spawn(group.span().follow(TaskRole::Consumer, task.run(rx)));
        group.record_poll();
        Consumer {
            config,
            cluster,
            group,
            requests,
            next: None,
            undelivered: None,
            first_events: Mutex::new(Some(first_events)),
            mode: PhantomData,
        }
    }

    /// Commits and committed offsets need a group: a consumer without `group.id` (an
    /// [`AssignedConsumer`] may have none) has nowhere to keep them.
    fn require_group(&self, call: &'static str) -> Result<()> {
        if self.config.has_group() {
            Ok(())
        } else {
            Err(Error::NoGroup { call })
        }
    }

    /// The member's metrics (see [`crate::telemetry`]): [`MemberMetrics::render_prometheus`]
    /// writes them as Prometheus text.
    pub fn metrics(&self) -> &MemberMetrics {
        self.group.metrics()
    }

    /// The next batch, waiting at most `timeout`; at most `limit` records.
    ///
    /// Cancel-safe: when the future is dropped before it completes (a `tokio::select!` branch
    /// that lost, an outer timeout), no record is lost and none counts as processed. A batch
    /// the consumer had already handed over is returned by the next `poll` (or the stream);
    /// anything later stays buffered for it.
    pub async fn poll(&mut self, limit: usize, timeout: Duration) -> Result<Option<Batch>> {
        let limit = limit.max(1);
        if let Some(item) = self.take_undelivered(limit)? {
            return item.map(Some);
        }
        let (reply, rx) = oneshot::channel();
        self.send(Request::Next { limit, reply })?;
        let mut answer = AnswerOrKeep { rx, undelivered: &mut self.undelivered };
        match tokio::time::timeout(timeout, &mut answer.rx).await {
            Ok(Ok(Some(result))) => result.map(Some),
            Ok(Ok(None)) | Ok(Err(_)) => Err(consumer_closed()),
            Err(_) => {
                // Nothing arrived in time: an answer sent just before the request was
                // withdrawn is taken here, anything later stays with the task.
                drop(answer);
                self.undelivered.take().transpose()
            }
        }
    }

    /// An answer no caller received (`undelivered`), or else that of the stream's outstanding
    /// request, withdrawn. A batch larger than `limit` goes back to the task, in front of the
    /// records buffered there.
    fn take_undelivered(&mut self, limit: usize) -> Result<Option<Result<Batch>>> {
        if self.undelivered.is_none() {
            if let Some(mut rx) = self.next.take() {
                self.undelivered = withdraw(&mut rx);
            }
        }
        match self.undelivered.take() {
            Some(Ok(batch)) if batch.records.len() > limit => {
                self.send(Request::Unread(batch))?;
                Ok(None)
            }
            item => Ok(item),
        }
    }

    /// Commits a processed batch; one outcome per partition.
    ///
    /// Cancel safety: the commit is handed to the member when the future is first polled;
    /// dropping the future after that does not withdraw it (it goes out, and its outcome is
    /// reported only as a `CommitCompleted` group event).
    pub async fn commit(&self, batch: &Batch) -> Result<Vec<PartitionCommit>> {
        self.commit_leases(vec![batch.lease.clone()]).await
    }

    /// Commits leases (several batches, or leases moved to the offsets you choose). Cancel
    /// safety as [`commit`](Self::commit).
    ///
    /// A revoke window waits for the leases the application holds on revoked partitions: commit
    /// them within the rebalance callback timeout and they go out in the generation that owns
    /// them.
    pub async fn commit_leases(&self, leases: Vec<Lease>) -> Result<Vec<PartitionCommit>> {
        self.require_group("commit")?;
        self.reach().commit_leases(leases).await
    }

    /// Stores a processed batch's offset for the next auto-commit (or [`commit_stored`](Self::commit_stored)).
    pub fn store_offsets(&self, batch: &Batch) {
        let _ = self.send(Request::Store(batch.lease.clone()));
    }

    /// Commits the stored offsets now. Cancel safety as [`commit`](Self::commit): once polled,
    /// the stored offsets are taken and committed whether or not the future is kept.
    pub async fn commit_stored(&self) -> Result<Vec<PartitionCommit>> {
        self.require_group("commit_stored")?;
        self.reach().commit_stored().await
    }

    /// The next offset this consumer will hand out for `partition`: `None` unless it is owned
    /// and its start is known (a new partition's committed offset may still be looked up).
    /// Cancel-safe: it changes nothing.
    pub async fn position(&self, partition: TopicPartition) -> Result<Option<i64>> {
        self.reach().position(partition).await
    }

    /// Moves the position of an owned partition.
    pub fn seek(&self, partition: TopicPartition, offset: i64) -> Result<()> {
        self.reach().seek(partition, offset)
    }

    /// Moves owned partitions to their log start offset, as Java's `seekToBeginning`: the
    /// offset is looked up (ListOffsets, earliest) when the partition is next fetched, as an
    /// `auto.offset.reset` is, whatever that setting says; [`position`](Self::position) is
    /// `None` until then. Unlike Java, an empty list moves nothing (pass
    /// [`assignment`](Self::assignment) for every partition).
    ///
    /// As [`seek`](Self::seek): records fetched and not yet handed out are dropped, and leases
    /// already handed out on these partitions are released (a revoke window no longer waits
    /// for them). Committing one of them afterwards still commits its offset: the seek moves
    /// the position, not the committed offset. Partitions not owned are ignored. Not async:
    /// it takes effect in order with the calls before and after it.
    pub fn seek_to_beginning(&self, partitions: Vec<TopicPartition>) -> Result<()> {
        self.send(Request::Seek(partitions, StartPosition::Earliest))
    }

    /// Moves owned partitions to their log end offset, as Java's `seekToEnd`: from there only
    /// records written afterwards are handed out. Looked up (ListOffsets, latest; the last
    /// stable offset under `read_committed`) when the partition is next fetched; otherwise as
    /// [`seek_to_beginning`](Self::seek_to_beginning).
    pub fn seek_to_end(&self, partitions: Vec<TopicPartition>) -> Result<()> {
        self.send(Request::Seek(partitions, StartPosition::Latest))
    }

    /// For each `(partition, time)`, the first offset whose record's timestamp is at or after
    /// `time` (milliseconds since the epoch), as Java's `offsetsForTimes`; `None` when no
    /// record is that late. Any partition may be asked, owned or not.
    ///
    /// Each partition's leader answers (ListOffsets by time, under this consumer's
    /// `isolation.level`); one attempt, on fresh metadata. When a leader cannot answer the
    /// call is an error, never a `None`: [`Error::UnknownPartition`] for a partition without
    /// a leader, [`Error::Broker`] with the leader's error code, [`Error::Network`] when it
    /// cannot be reached; the error's [`action`](Error::action) says whether trying again
    /// can help. A negative time is [`Error::NegativeTimestamp`].
    ///
    /// Cancel-safe: it reads and changes nothing of the consumer's positions, leases or commits.
    pub async fn offsets_for_times(
        &self,
        times: &[(TopicPartition, i64)],
    ) -> Result<Vec<(TopicPartition, Option<OffsetAndTimestamp>)>> {
        if let Some((tp, timestamp)) = times.iter().find(|(_, timestamp)| *timestamp < 0) {
            return Err(Error::NegativeTimestamp { partition: tp.to_string(), timestamp: *timestamp });
        }
        let listed = self.list_offsets(times, self.config.isolation_level).await?;
        Ok(times
            .iter()
            .zip(listed)
            .map(|((tp, _), answer)| {
                let found = (answer.offset >= 0)
                    .then_some(OffsetAndTimestamp { offset: answer.offset, timestamp: answer.timestamp });
                (tp.clone(), found)
            })
            .collect())
    }

    /// The partition's log start offset and high watermark, asked of its leader now
    /// (ListOffsets earliest and latest, as librdkafka's `query_watermark_offsets`). Any
    /// partition may be asked, owned or not. Errors and cancel safety as
    /// [`offsets_for_times`](Self::offsets_for_times).
    pub async fn watermarks(&self, partition: TopicPartition) -> Result<Watermarks> {
        let queries = [(partition.clone(), -2), (partition.clone(), -1)];
        let mut listed = self.list_offsets(&queries, IsolationLevel::ReadUncommitted).await?.into_iter();
        match (listed.next(), listed.next()) {
            (Some(low), Some(high)) => Ok(Watermarks { low: low.offset, high: high.offset }),
            _ => Err(Error::broker(ApiKey::ListOffsets, -1, format!("no watermarks for {partition}"))),
        }
    }

    /// How far the application is behind: the high watermark, asked of the leader now (see
    /// [`watermarks`](Self::watermarks)), minus this consumer's [`position`](Self::position).
    /// `None` when the position is unknown (the partition is not owned, or its start is still
    /// looked up); no request is sent then. Under `read_committed` records of open
    /// transactions count until they end. Errors and cancel safety as
    /// [`offsets_for_times`](Self::offsets_for_times).
    pub async fn lag(&self, partition: TopicPartition) -> Result<Option<i64>> {
        let Some(position) = self.position(partition.clone()).await? else { return Ok(None) };
        let high = self.watermarks(partition).await?.high;
        Ok(Some((high - position).max(0)))
    }

    /// As [`lag`](Self::lag) without a request: by the high watermark of the latest fetch
    /// response that carried the partition (each [`Batch`] carries the same number). `None`
    /// also when nothing was fetched since the partition was assigned; stale while the
    /// partition is paused or the prefetch buffer is full (nothing is fetched then).
    /// Cancel-safe: it changes nothing.
    pub async fn cached_lag(&self, partition: TopicPartition) -> Result<Option<i64>> {
        let (reply, rx) = oneshot::channel();
        self.send(Request::CachedLag(partition, reply))?;
        rx.await.map_err(|_| consumer_closed())
    }

    async fn list_offsets(
        &self,
        queries: &[(TopicPartition, i64)],
        isolation: IsolationLevel,
    ) -> Result<Vec<ListedOffset>> {
        let mut topics: Vec<&str> = queries.iter().map(|(tp, _)| &*tp.topic).collect();
        topics.sort_unstable();
        topics.dedup();
        let metadata = self.cluster.refresh_metadata(Some(&topics)).await?;
        look_up_offsets(&self.cluster, &metadata, queries, isolation).await
    }

    /// Stops fetching and handing out records of owned partitions until they are resumed.
    pub fn pause(&self, partitions: Vec<TopicPartition>) -> Result<()> {
        self.send(Request::Pause(partitions))
    }

    /// Fetches and hands out records of paused partitions again.
    pub fn resume(&self, partitions: Vec<TopicPartition>) -> Result<()> {
        self.send(Request::Resume(partitions))
    }

    /// The partitions owned now, as the application has seen them assigned (for an
    /// [`AssignedConsumer`], as its last [`assign`](AssignedConsumer::assign) named them).
    /// Cancel-safe: it changes nothing.
    pub async fn assignment(&self) -> Result<Vec<TopicPartition>> {
        self.reach().assignment().await
    }

    /// Committed offsets of the group (`None`: nothing committed). Failed lookups are retried
    /// until `default.api.timeout.ms`; then it is [`Error::OffsetLookup`], never "nothing
    /// committed". Without `group.id` it is [`Error::NoGroup`]. Cancel-safe: a dropped call's
    /// lookup runs on and its answer is discarded.
    pub async fn committed(&self, partitions: Vec<TopicPartition>) -> Result<Vec<(TopicPartition, Option<i64>)>> {
        self.require_group("committed")?;
        self.group.committed(partitions).await
    }

    /// The debug snapshot of the membership: state, generation, assignment with ownership
    /// streaks, commits and counters. An [`AssignedConsumer`]'s shows the state `Manual`, no
    /// generation and no assignment (it has no membership; see [`assignment`](Self::assignment)),
    /// and its commits and lookups. Cancel-safe: it changes nothing.
    pub async fn group_state(&self) -> Result<GroupSnapshot> {
        self.group.group_state().await
    }

    /// A read-only view of the membership (snapshots, events, metrics, committed offsets) for
    /// dashboards and the debug API: it cannot commit or leave behind the consumer's back, and
    /// does not keep the member running after the consumer closes.
    pub fn observer(&self) -> GroupObserver {
        self.group.observer()
    }

    /// Serves this member on a [`DebugServer`](crate::debug_http::DebugServer) at `addr` (see
    /// [`crate::debug_http`]), labelled with its `client.id`. Cancel-safe.
    #[cfg(feature = "debug-http")]
    pub async fn serve_debug(
        &self,
        addr: impl tokio::net::ToSocketAddrs,
    ) -> std::io::Result<crate::debug_http::DebugServer> {
        crate::debug_http::DebugServer::serve(addr, &self.config.client_id, &self.group.observer()).await
    }

    /// `max.poll.records` of this consumer: the batch size of its stream.
    pub fn max_poll_records(&self) -> usize {
        self.config.max_poll_records
    }

    /// Timestamped group events (transitions, assignments, commit outcomes, ...). The first
    /// call's receiver sees every event from the member's first one, however quick the member
    /// was; a later call's sees the events from that call on.
    pub fn group_events(&self) -> broadcast::Receiver<GroupEventRecord> {
        let first = self.first_events.lock().unwrap_or_else(PoisonError::into_inner).take();
        first.unwrap_or_else(|| self.group.events())
    }

    /// Runs the listener's `revoked` for a dynamic member's partitions, commits stored offsets
    /// if auto-commit is on, leaves the group (static members do not send LeaveGroup, KIP-345),
    /// and stops every task. An [`AssignedConsumer`] has no membership: it commits stored
    /// offsets (auto-commit, with a `group.id`) and stops, sending no LeaveGroup.
    ///
    /// With `enable.auto.offset.store`, the last batch handed out counts as processed (as
    /// the Java client commits the position of everything `poll` returned); a batch handed
    /// over for a `poll` future that was dropped never reached the application and does not.
    ///
    /// Not cancel-safe: dropping the future part-way stops the consumer where it is, without
    /// the rest of these steps (stored offsets may stay uncommitted, and a dynamic member's
    /// partitions move only after its session times out).
    pub async fn close(mut self) -> Result<()> {
        if let Some(Ok(batch)) = self.take_undelivered(usize::MAX).ok().flatten() {
            // Back to the task before it stops, so it is not stored as processed.
            let _ = self.send(Request::Unread(batch));
        }
        // The task stops first, storing the batch the application holds.
        let (reply, rx) = oneshot::channel();
        let stored = match self.send(Request::Close(reply)) {
            Ok(()) => rx.await.unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        if self.config.enable_auto_commit && !stored.is_empty() {
            let _ = self.group.commit(stored).await;
        }
        self.group.leave("consumer closed").await
    }

    fn send(&self, request: Request) -> Result<()> {
        self.reach().send(request)
    }

    fn reach(&self) -> Reach<'_> {
        Reach { group: &self.group, requests: &self.requests }
    }
}

impl<M> futures_core::Stream for Consumer<M> {
    type Item = Result<Batch>;

    /// Cancel-safe: the request for the next batch stays with the consumer between calls, so
    /// dropping a `next()` future loses nothing; the next call (or `poll`) gets its batch.
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.next.is_none() {
            let limit = self.config.max_poll_records;
            match self.take_undelivered(limit) {
                Ok(Some(item)) => return Poll::Ready(Some(item)),
                Ok(None) => {}
                Err(_) => return Poll::Ready(None),
            }
            let (reply, rx) = oneshot::channel();
            if self.send(Request::Next { limit, reply }).is_err() {
                return Poll::Ready(None);
            }
            self.next = Some(rx);
        }
        let Some(rx) = self.next.as_mut() else { return Poll::Ready(None) };
        match Pin::new(rx).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(result) => {
                self.next = None;
                Poll::Ready(result.ok().flatten())
            }
        }
    }
}

/// A batch request `poll` waits on. Dropped before its answer was taken (the future was
/// cancelled, or its timeout passed), it withdraws the request and keeps an answer the task
/// already sent, so that batch reaches the next caller instead of being lost.
struct AnswerOrKeep<'a> {
    rx: NextAnswer,
    undelivered: &'a mut Option<Result<Batch>>,
}

impl Drop for AnswerOrKeep<'_> {
    fn drop(&mut self) {
        if let Some(item) = withdraw(&mut self.rx) {
            *self.undelivered = Some(item);
        }
    }
}

/// Withdraws a batch request: after the close the task can no longer answer it (it keeps its
/// records and errors for the next request), and an answer sent before is returned.
fn withdraw(rx: &mut NextAnswer) -> Option<Result<Batch>> {
    rx.close();
    rx.try_recv().ok().flatten()
}

/// Fetched records of one partition as the session holds them.
#[derive(Debug, Default)]
struct FetchedRun {
    records: VecDeque<ConsumerRecord>,
    /// The partition's high watermark when the latest of them were fetched.
    high_watermark: i64,
}

impl RecordRun for FetchedRun {
    fn len(&self) -> usize {
        self.records.len()
    }

    fn first_offset(&self) -> Option<i64> {
        self.records.front().map(ConsumerRecord::offset)
    }

    fn end_offset(&self) -> Option<i64> {
        self.records.back().map(|r| r.offset() + 1)
    }

    fn split_front(&mut self, n: usize) -> Self {
        let rest = self.records.split_off(n.min(self.records.len()));
        FetchedRun { records: std::mem::replace(&mut self.records, rest), high_watermark: self.high_watermark }
    }

    fn append(&mut self, mut later: Self) {
        self.records.append(&mut later.records);
        self.high_watermark = later.high_watermark;
    }

    fn prepend(&mut self, mut earlier: Self) {
        earlier.records.append(&mut self.records);
        self.records = earlier.records;
    }
}

struct FetcherSource<'a>(&'a Fetcher);

impl RecordSource<FetchedRun> for FetcherSource<'_> {
    fn try_next_records(&mut self, partition: &TopicPartition, max_records: usize) -> Option<FetchedRun> {
        let batch = self.0.try_next_records(partition, max_records)?;
        Some(FetchedRun { records: batch.records.into(), high_watermark: batch.high_watermark })
    }
}

impl From<SessionBatch<FetchedRun>> for Batch {
    fn from(batch: SessionBatch<FetchedRun>) -> Batch {
        Batch {
            partition: batch.partition,
            high_watermark: batch.records.high_watermark,
            records: batch.records.records.into(),
            lease: batch.lease,
            incarnation: batch.incarnation,
        }
    }
}

impl From<Batch> for SessionBatch<FetchedRun> {
    fn from(batch: Batch) -> SessionBatch<FetchedRun> {
        SessionBatch {
            partition: batch.partition,
            records: FetchedRun { records: batch.records.into(), high_watermark: batch.high_watermark },
            lease: batch.lease,
            incarnation: batch.incarnation,
        }
    }
}

type ListenerRun = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The pump around the [`ConsumerSession`]: carries out its actions with the member, the
/// fetcher and the listener, and feeds it what they answer.
struct ConsumerTask {
    session: ConsumerSession<FetchedRun>,
    /// The task's own request channel, for the listener's [`RebalanceContext`]; weak, so the
    /// task still ends when the consumer is dropped.
    requests: mpsc::WeakUnboundedSender<Request>,
    /// `close` was asked: the task stops once the listener calls still due have run.
    closing: Option<oneshot::Sender<Vec<Lease>>>,
    group: GroupHandle,
    /// The member's assignments, revocations, losses, leaving and fatal errors, none ever
    /// dropped (the observers' stream may drop events behind a burst of commit outcomes).
    control: ControlEvents,
    fetcher: Fetcher,
    waiting: Option<(usize, NextReply)>,
    listener: Option<Arc<dyn RebalanceListener>>,
    /// Listener calls run one at a time, in order, while the task goes on serving requests.
    listener_calls: VecDeque<(ListenerCall, Instant)>,
    running_listener: Option<(ListenerCall, ListenerRun)>,
    lookups: JoinSet<(LookupId, LookupAnswer)>,
}

impl ConsumerTask {
    async fn run(mut self, mut requests: mpsc::UnboundedReceiver<Request>) {
        loop {
            self.carry_out_actions();
            if self.waiting.as_ref().is_some_and(|(_, reply)| reply.is_closed()) {
                // The caller gave up (poll timeout): nobody is waiting any more.
                self.waiting = None;
                self.session.wait_ended();
            }
            if let Some((limit, _)) = self.waiting {
                if let Some(error) = self.session.take_error() {
                    self.deliver(Err(error));
                    continue;
                }
                if let Some(batch) = self.session.take_batch(limit, &mut FetcherSource(&self.fetcher)) {
                    self.deliver(Ok(batch.into()));
                    continue;
                }
            }
            if self.running_listener.is_none() {
                self.running_listener = self.listener_calls.pop_front().map(|(call, deadline)| {
                    let run = self.listener_run(call.clone(), deadline);
                    (call, run)
                });
            }
            if self.running_listener.is_none() && self.closing.is_some() {
                // The listener's last calls ran (and could commit the stored offsets); what is
                // still stored goes to `close`.
                let stored = self.session.take_stored(now());
                if let Some(reply) = self.closing.take() {
                    let _ = reply.send(stored);
                }
                return;
            }
            let timeout = self.session.poll_timeout().map(Instant::from_std);
            tokio::select! {
                request = requests.recv() => match request {
                    None => return,
                    Some(Request::Close(reply)) => {
                        // The listener's `revoked` runs while the task goes on serving its
                        // context's requests.
                        self.session.close(now());
                        self.closing = Some(reply);
                    }
                    Some(request) => self.request(request).await,
                },
                // None once the member stopped, after its last event (a fatal error) was
                // handled: the task goes on serving the application, which gets that error.
                Some(record) = self.control.recv() => self.group_event(record.event),
                fetched = self.fetcher.next(self.waiting.as_ref().map_or(1, |(limit, _)| *limit)), if self.waiting.is_some() => match fetched {
                    Some(FetchEvent::Records(batch)) => {
                        let run = FetchedRun { records: batch.records.into(), high_watermark: batch.high_watermark };
                        self.session.handle_records(&batch.partition, run);
                    }
                    Some(FetchEvent::PartitionError { partition, error }) => {
                        tracing::warn!(%partition, %error, "partition fetch failed; other partitions go on");
                        self.session.report(error);
                    }
                    None => return,
                },
                Some(Ok((id, answer))) = self.lookups.join_next(), if !self.lookups.is_empty() => {
                    self.session.handle_lookup(id, answer);
                }
                () = run_listener(&mut self.running_listener) => {
                    if let Some((call, _)) = self.running_listener.take() {
                        self.session.listener_done(&call, now());
                    }
                }
                () = sleep_until(timeout) => self.session.handle_timeout(now()),
            }
        }
    }

    async fn request(&mut self, request: Request) {
        match request {
            Request::Next { limit, reply } => {
                self.session.request_batch(now());
                self.waiting = Some((limit, reply));
            }
            Request::Position(tp, reply) => {
                let _ = reply.send(self.position(tp).await);
            }
            Request::CachedLag(tp, reply) => {
                let high_watermark = self.fetcher.high_watermark(&tp);
                let position = self.position(tp).await;
                let _ = reply.send(high_watermark.zip(position).map(|(high, at)| (high - at).max(0)));
            }
            Request::Seek(partitions, to) => {
                for tp in &partitions {
                    self.session.seek(tp, to, now());
                }
            }
            Request::Pause(partitions) => self.session.pause(&partitions),
            Request::Resume(partitions) => self.session.resume(&partitions),
            Request::Assign(partitions) => self.session.assign_manually(partitions, now()),
            Request::Unread(batch) => self.session.give_back(batch.into(), now()),
            Request::Assignment(reply) => {
                let _ = reply.send(self.session.assignment());
            }
            Request::Committing(leases) => self.session.committing(&leases, now()),
            Request::Store(lease) => self.session.store(lease, now()),
            Request::CommitStored(reply) => {
                let leases = self.session.take_stored(now());
                let pending: PendingCommit = if leases.is_empty() {
                    Box::pin(async { Ok(Vec::new()) })
                } else {
                    Box::pin(self.group.start_commit(leases))
                };
                let _ = reply.send(pending);
            }
            Request::Subscribe(subscription, reply) => {
                let changed = self.group.change_subscription(subscription).await;
                // The member published what the change started (a revoke window) before it
                // answered: apply it before serving another batch request.
                while let Some(record) = self.control.try_recv() {
                    self.group_event(record.event);
                }
                let _ = reply.send(changed);
            }
            Request::Close(_) => {}
        }
    }

    fn group_event(&mut self, event: GroupEvent) {
        if let GroupEvent::Assigned { generation, partitions, added, revoked } = &event {
            // As the Java consumer logs its assignments: once per generation, at info.
            tracing::info!(
                generation = generation.id.0,
                owned = partitions.len(),
                added = added.len(),
                revoked = revoked.len(),
                "assignment received"
            );
        }
        self.session.handle_group_event(event, now())
    }

    /// The next offset the application gets: of the records buffered here, else the fetcher's.
    async fn position(&mut self, tp: TopicPartition) -> Option<i64> {
        match self.session.pending_position(&tp) {
            Some(offset) => Some(offset),
            None => self.fetcher.position(tp).await,
        }
    }

    fn carry_out_actions(&mut self) {
        while let Some(action) = self.session.poll_action() {
            match action {
                SessionAction::Fetch(starts) => self.fetcher.assign(starts),
                SessionAction::Pause(partitions) => self.fetcher.pause(partitions),
                SessionAction::Resume(partitions) => self.fetcher.resume(partitions),
                SessionAction::Seek(partition, to) => self.fetcher.seek_to(partition, to),
                SessionAction::Forget(partitions) => self.fetcher.revoke(partitions),
                SessionAction::LookUp { id, partitions } => {
                    let group = self.group.clone();
                    self.lookups.spawn(async move {
                        let answer = group.committed(partitions).await.map_err(|error| match error {
                            Error::OffsetLookup(failure) => failure,
                            other => OffsetLookupFailure::MemberStopped { reason: other.to_string() },
                        });
                        (id, answer)
                    });
                }
                SessionAction::Listener { call, deadline } => {
                    self.listener_calls.push_back((call, Instant::from_std(deadline)));
                }
                SessionAction::Commit(leases) => {
                    let pending = self.group.start_commit(leases);
                    let commit = async move {
                        if let Err(e) = pending.await {
                            tracing::warn!(error = %e, "commit of stored offsets failed");
                        }
                    };
                    tokio::spawn(tracing::Instrument::instrument(commit, tracing::Span::current()));
                }
                SessionAction::RevokeDone => self.group.revoke_done(),
                SessionAction::RecordPoll => self.group.record_poll(),
            }
        }
    }

    fn listener_run(&self, call: ListenerCall, deadline: Instant) -> ListenerRun {
        let Some(listener) = self.listener.clone() else { return Box::pin(async {}) };
        // The consumer was dropped: nobody is left to call back for.
        let Some(requests) = self.requests.upgrade() else { return Box::pin(async {}) };
        let context = RebalanceContext { group: self.group.clone(), requests };
        Box::pin(async move {
            let run = async {
                match &call {
                    ListenerCall::Assigned(partitions) => listener.assigned(&context, partitions).await,
                    ListenerCall::Revoked(partitions) => listener.revoked(&context, partitions).await,
                    ListenerCall::Lost(partitions) => listener.lost(&context, partitions).await,
                }
            };
            if tokio::time::timeout_at(deadline, run).await.is_err() {
                tracing::warn!(?call, "rebalance listener ran past the rebalance callback timeout");
            }
        })
    }

    /// Hands `item` to the waiting caller. A caller that gave up: records go back in front of
    /// the pending ones, errors wait for the next request.
    fn deliver(&mut self, item: Result<Batch>) {
        let Some((_, reply)) = self.waiting.take() else { return };
        self.session.wait_ended();
        match reply.send(Some(item)) {
            Ok(()) | Err(None) => {}
            Err(Some(Ok(batch))) => self.session.give_back(batch.into(), now()),
            Err(Some(Err(e))) => self.session.report(e),
        }
    }
}

fn now() -> std::time::Instant {
    Instant::now().into_std()
}

async fn run_listener(running: &mut Option<(ListenerCall, ListenerRun)>) {
    match running {
        Some((_, run)) => run.await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
