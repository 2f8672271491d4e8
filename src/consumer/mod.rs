//! The public consumer: [`GroupConsumer`], a `Stream` of per-partition record batches, each
//! carrying the lease its commit is judged by.
//!
//! Group events are handled by a background task, the way the Java client handles them inside
//! `poll()`: a revoke window opens when the application asks for its next batch (so the batch
//! it was processing has been committed), runs the rebalance listener under a deadline, commits
//! stored offsets when auto-commit is on, and then lets the member rejoin. Partitions kept
//! across a rebalance keep their position and their buffered records.

pub mod config;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;

pub use self::config::{ConsumerConfig, IsolationLevel, OffsetReset};
use crate::driver::cluster::{Cluster, ClusterConfig};
use crate::driver::fetcher::{ConsumerRecord, FetchEvent, Fetcher, FetcherConfig, StartPosition};
use crate::driver::group::{ControlEvents, GroupEventRecord, GroupHandle, RevokeMode};
use crate::error::{Error, Result};
use crate::group::{
    Generation, GenerationId, GroupEvent, GroupSnapshot, Lease, LeaveReason, OffsetLookupFailure, PartitionCommit,
    TopicPartition,
};

/// Records of one partition, handed out together, with the lease to commit them by.
#[derive(Debug, Clone)]
pub struct Batch {
    pub partition: TopicPartition,
    pub records: Vec<ConsumerRecord>,
    /// The partition's high watermark when the records were fetched.
    pub high_watermark: i64,
    lease: Lease,
    /// The partition's seek count when the batch was made (see [`ConsumerTask::unread`]).
    moves: u64,
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

/// Rebalance callbacks. Each runs under the consumer's rebalance callback timeout; the member
/// rejoins when `revoked` returns (or the timeout passes), so commit there what must not be
/// redelivered.
pub trait RebalanceListener: Send + Sync {
    fn assigned<'a>(&'a self, _partitions: &'a [TopicPartition]) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async {})
    }
    fn revoked<'a>(&'a self, _partitions: &'a [TopicPartition]) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async {})
    }
    /// Partitions lost without a revoke window (the group moved on without this member).
    fn lost<'a>(&'a self, _partitions: &'a [TopicPartition]) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async {})
    }
}

type NextReply = oneshot::Sender<Option<Result<Batch>>>;

/// Committed offsets as a lookup answers them (`None`: nothing committed).
type Committed = Vec<(TopicPartition, Option<i64>)>;
type NextAnswer = oneshot::Receiver<Option<Result<Batch>>>;

enum Request {
    Next {
        limit: usize,
        reply: NextReply,
    },
    Position(TopicPartition, oneshot::Sender<Option<i64>>),
    Seek(TopicPartition, i64),
    Pause(Vec<TopicPartition>),
    Resume(Vec<TopicPartition>),
    Assignment(oneshot::Sender<Vec<TopicPartition>>),
    /// A batch handed out but not returned to the application: its records go back in front.
    Unread(Batch),
    Close(oneshot::Sender<()>),
}

/// A consumer-group member that fetches, hands out batches with leases, and commits them
/// through the generation gate.
pub struct GroupConsumer {
    config: ConsumerConfig,
    group: GroupHandle,
    requests: mpsc::UnboundedSender<Request>,
    stored: Arc<Mutex<BTreeMap<TopicPartition, Lease>>>,
    /// The stream's request for its next batch, outstanding across `poll_next` calls.
    next: Option<NextAnswer>,
    /// What the task handed over for a request nobody waits on any more (a `poll` future
    /// dropped, or timed out, just after the answer came): the next `poll`, the stream or
    /// `close` takes it.
    undelivered: Option<Result<Batch>>,
    /// Subscribed before the member's task ran, for the first [`group_events`](Self::group_events).
    first_events: Mutex<Option<broadcast::Receiver<GroupEventRecord>>>,
}

impl std::fmt::Debug for GroupConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupConsumer").field("group_id", &self.config.group_id).finish_non_exhaustive()
    }
}

impl GroupConsumer {
    /// Connects, subscribes to `topics` and starts joining the group.
    pub async fn subscribe(config: ConsumerConfig, topics: &[&str]) -> Result<GroupConsumer> {
        Self::subscribe_with_listener(config, topics, None).await
    }

    /// As [`subscribe`](Self::subscribe), with rebalance callbacks.
    pub async fn subscribe_with_listener(
        config: ConsumerConfig,
        topics: &[&str],
        listener: Option<Arc<dyn RebalanceListener>>,
    ) -> Result<GroupConsumer> {
        config.validate()?;
        let mut cluster_config = ClusterConfig::new(config.bootstrap_servers.clone());
        cluster_config.connection.client_id = config.client_id.clone();
        cluster_config.connection.request_timeout = config.request_timeout;
        cluster_config.connection.security = config.security.clone();
        let cluster = Cluster::connect(cluster_config).await?;
        let topics: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
        let (group, control, [first_events]) =
            GroupHandle::start_with_control(cluster.clone(), config.group_config(), topics, RevokeMode::Manual).await?;
        let fetcher = Fetcher::start(
            cluster,
            FetcherConfig {
                max_wait: config.fetch_max_wait,
                min_bytes: config.fetch_min_bytes,
                max_bytes: config.fetch_max_bytes,
                max_partition_bytes: config.max_partition_fetch_bytes,
                isolation: config.isolation_level,
                buffer_bytes: config.prefetch_bytes,
                auto_offset_reset: config.auto_offset_reset,
            },
        );
        let stored = Arc::new(Mutex::new(BTreeMap::new()));
        let (requests, rx) = mpsc::unbounded_channel();
        let task = ConsumerTask {
            config: config.clone(),
            group: group.clone(),
            control,
            fetcher,
            owned: BTreeMap::new(),
            pending: BTreeMap::new(),
            waiting: None,
            errors: VecDeque::new(),
            holding: None,
            revoke: None,
            assignment_after_revoke: None,
            paused: BTreeSet::new(),
            revoking: BTreeSet::new(),
            poll_keepalive: Instant::now() + config.max_poll_interval / 2,
            moves: BTreeMap::new(),
            stored: stored.clone(),
            listener,
            next_auto_commit: Instant::now() + config.auto_commit_interval,
            starting: BTreeMap::new(),
            lookups: JoinSet::new(),
            next_lookup: 0,
        };
        tokio::spawn(task.run(rx));
        group.record_poll();
        Ok(GroupConsumer {
            config,
            group,
            requests,
            stored,
            next: None,
            undelivered: None,
            first_events: Mutex::new(Some(first_events)),
        })
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
            Ok(Ok(None)) | Ok(Err(_)) => Err(Error::Closed("consumer")),
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
        self.group.commit(vec![batch.lease.clone()]).await
    }

    /// Commits leases (several batches, or leases moved to the offsets you choose). Cancel
    /// safety as [`commit`](Self::commit).
    pub async fn commit_leases(&self, leases: Vec<Lease>) -> Result<Vec<PartitionCommit>> {
        self.group.commit(leases).await
    }

    /// Stores a processed batch's offset for the next auto-commit (or [`commit_stored`](Self::commit_stored)).
    pub fn store_offsets(&self, batch: &Batch) {
        store(&self.stored, batch.lease.clone());
    }

    /// Commits the stored offsets now. Cancel safety as [`commit`](Self::commit): once polled,
    /// the stored offsets are taken and committed whether or not the future is kept.
    pub async fn commit_stored(&self) -> Result<Vec<PartitionCommit>> {
        commit_stored(&self.group, &self.stored).await
    }

    /// The next offset this consumer will hand out for `partition`: `None` unless it is owned
    /// and its start is known (a new partition's committed offset may still be looked up).
    pub async fn position(&self, partition: TopicPartition) -> Result<Option<i64>> {
        let (reply, rx) = oneshot::channel();
        self.send(Request::Position(partition, reply))?;
        rx.await.map_err(|_| Error::Closed("consumer"))
    }

    /// Moves the position of an owned partition.
    pub fn seek(&self, partition: TopicPartition, offset: i64) -> Result<()> {
        self.send(Request::Seek(partition, offset))
    }

    pub fn pause(&self, partitions: Vec<TopicPartition>) -> Result<()> {
        self.send(Request::Pause(partitions))
    }

    pub fn resume(&self, partitions: Vec<TopicPartition>) -> Result<()> {
        self.send(Request::Resume(partitions))
    }

    /// The partitions owned now, as the application has seen them assigned.
    pub async fn assignment(&self) -> Result<Vec<TopicPartition>> {
        let (reply, rx) = oneshot::channel();
        self.send(Request::Assignment(reply))?;
        rx.await.map_err(|_| Error::Closed("consumer"))
    }

    /// Committed offsets (`None`: nothing committed).
    pub async fn committed(&self, partitions: Vec<TopicPartition>) -> Result<Vec<(TopicPartition, Option<i64>)>> {
        self.group.committed(partitions).await
    }

    /// The debug snapshot of the membership (DESIGN section 5).
    pub async fn group_state(&self) -> Result<GroupSnapshot> {
        self.group.group_state().await
    }

    /// The membership handle, for the debug API and raw lease commits.
    pub fn group_handle(&self) -> GroupHandle {
        self.group.clone()
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
    /// and stops every task.
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
        if self.send(Request::Close(reply)).is_ok() {
            let _ = rx.await;
        }
        if self.config.enable_auto_commit {
            let _ = commit_stored(&self.group, &self.stored).await;
        }
        self.group.leave("consumer closed").await
    }

    fn send(&self, request: Request) -> Result<()> {
        self.requests.send(request).map_err(|_| Error::Closed("consumer"))
    }
}

impl futures_core::Stream for GroupConsumer {
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

fn store(stored: &Mutex<BTreeMap<TopicPartition, Lease>>, lease: Lease) {
    let mut stored = stored.lock().unwrap_or_else(PoisonError::into_inner);
    let keep = stored
        .get(&lease.partition)
        .is_some_and(|s| s.owned_since == lease.owned_since && s.next_offset > lease.next_offset);
    if !keep {
        stored.insert(lease.partition.clone(), lease);
    }
}

async fn commit_stored(
    group: &GroupHandle,
    stored: &Mutex<BTreeMap<TopicPartition, Lease>>,
) -> Result<Vec<PartitionCommit>> {
    let leases: Vec<Lease> =
        std::mem::take(&mut *stored.lock().unwrap_or_else(PoisonError::into_inner)).into_values().collect();
    if leases.is_empty() {
        return Ok(Vec::new());
    }
    group.commit(leases).await
}

/// The revoke window the task is in: opened by the coordinator, run once the application has
/// released its batch.
struct RevokeWindow {
    partitions: Vec<TopicPartition>,
    deadline: Instant,
}

/// A `GroupEvent::Assigned`, applied once the revoke window that precedes it has run.
struct Assignment {
    generation: Generation,
    partitions: Vec<crate::group::OwnedPartition>,
    added: Vec<TopicPartition>,
    revoked: Vec<TopicPartition>,
}

struct ConsumerTask {
    config: ConsumerConfig,
    group: GroupHandle,
    /// The member's assignments, revocations, losses, leaving and fatal errors, none ever
    /// dropped (the observers' stream may drop events behind a burst of commit outcomes).
    control: ControlEvents,
    fetcher: Fetcher,
    /// What the application has been told it owns, with the lease stamp for new batches.
    owned: BTreeMap<TopicPartition, (Generation, GenerationId)>,
    /// Fetched records not yet handed out (a fetch larger than the caller's limit).
    pending: BTreeMap<TopicPartition, VecDeque<(ConsumerRecord, i64)>>,
    waiting: Option<(usize, NextReply)>,
    /// Errors for the next request (nobody was waiting when they happened).
    errors: VecDeque<Error>,
    /// The batch the application is processing (handed out, next batch not yet asked for).
    holding: Option<Lease>,
    revoke: Option<RevokeWindow>,
    /// An assignment that arrived while a revoke window waited for the application's batch: a
    /// cooperative SyncGroup (KIP-429) announces the revocation and the new assignment together,
    /// and the revoke handler runs first, as in Java.
    assignment_after_revoke: Option<Assignment>,
    /// Partitions the application paused: none of their records is handed out.
    paused: BTreeSet<TopicPartition>,
    /// Partitions whose revoke window ran, held back until the assignment says which are kept.
    revoking: BTreeSet<TopicPartition>,
    /// While the application waits in `poll` (or on the stream), it is polling: the
    /// `max.poll.interval.ms` timer is renewed at this instant.
    poll_keepalive: Instant,
    /// Per partition, how often its position was moved from outside (seek, reassignment).
    moves: BTreeMap<TopicPartition, u64>,
    stored: Arc<Mutex<BTreeMap<TopicPartition, Lease>>>,
    listener: Option<Arc<dyn RebalanceListener>>,
    next_auto_commit: Instant,
    /// Newly assigned partitions waiting for their committed offsets, with the lookup that
    /// starts them: a partition is fetched only from a known committed offset (or
    /// `auto.offset.reset` when none is committed), never on a failed lookup.
    starting: BTreeMap<TopicPartition, u64>,
    lookups: JoinSet<(u64, Result<Committed>)>,
    next_lookup: u64,
}

impl ConsumerTask {
    async fn run(mut self, mut requests: mpsc::UnboundedReceiver<Request>) {
        loop {
            if self.waiting.as_ref().is_some_and(|(_, reply)| reply.is_closed()) {
                // The caller gave up (poll timeout): nobody is waiting any more.
                self.waiting = None;
            }
            if self.waiting.is_some() {
                if let Some(error) = self.errors.pop_front() {
                    self.deliver(Err(error));
                    continue;
                }
            }
            if self.waiting.is_some() && self.revoke.is_none() {
                if let Some(batch) = self.take_pending() {
                    self.deliver(Ok(batch));
                    continue;
                }
            }
            let can_fetch = self.waiting.is_some() && self.revoke.is_none();
            let revoke_deadline = self.revoke.as_ref().map(|w| w.deadline);
            let auto_commit = self.config.enable_auto_commit;
            tokio::select! {
                request = requests.recv() => match request {
                    None => return,
                    Some(Request::Close(reply)) => {
                        if let Some(lease) = self.holding.take() {
                            if self.config.enable_auto_offset_store {
                                store(&self.stored, lease);
                            }
                        }
                        self.revoke_on_close().await;
                        let _ = reply.send(());
                        return;
                    }
                    Some(request) => self.request(request).await,
                },
                // None once the member stopped, after its last event (a fatal error) was
                // handled: the task goes on serving the application, which gets that error.
                Some(record) = self.control.recv() => self.group_event(record.event).await,
                fetched = self.fetcher.next(), if can_fetch => match fetched {
                    Some(event) => self.fetched(event),
                    None => return,
                },
                Some(Ok((lookup, result))) = self.lookups.join_next(), if !self.lookups.is_empty() => {
                    self.looked_up(lookup, result);
                }
                _ = sleep_until(revoke_deadline) => {
                    tracing::warn!("the application kept its batch past the rebalance callback timeout; revoking anyway");
                    self.run_revoke().await;
                }
                _ = tokio::time::sleep_until(self.poll_keepalive), if self.waiting.is_some() => {
                    if self.waiting.as_ref().is_some_and(|(_, reply)| !reply.is_closed()) {
                        self.group.record_poll();
                    }
                    self.poll_keepalive = Instant::now() + self.config.max_poll_interval / 2;
                }
                _ = tokio::time::sleep_until(self.next_auto_commit), if auto_commit => {
                    self.next_auto_commit = Instant::now() + self.config.auto_commit_interval;
                    let (group, stored) = (self.group.clone(), self.stored.clone());
                    tokio::spawn(async move {
                        if let Err(e) = commit_stored(&group, &stored).await {
                            tracing::warn!(error = %e, "auto-commit failed");
                        }
                    });
                }
            }
        }
    }

    async fn request(&mut self, request: Request) {
        match request {
            Request::Next { limit, reply } => {
                // Asking for more means the previous batch is processed (Java's poll()).
                if let Some(lease) = self.holding.take() {
                    if self.config.enable_auto_offset_store {
                        store(&self.stored, lease);
                    }
                }
                self.group.record_poll();
                self.poll_keepalive = Instant::now() + self.config.max_poll_interval / 2;
                self.waiting = Some((limit, reply));
                if self.revoke.is_some() {
                    self.run_revoke().await;
                }
            }
            Request::Position(tp, reply) => {
                let position = match self.pending.get(&tp).and_then(|q| q.front()) {
                    Some((record, _)) => Some(record.offset),
                    None => self.fetcher.position(tp).await,
                };
                let _ = reply.send(position);
            }
            Request::Seek(tp, offset) => {
                self.moved(&tp);
                self.pending.remove(&tp);
                if self.starting.remove(&tp).is_some() {
                    // The application says where it starts: its lookup no longer matters.
                    self.start(vec![(tp, StartPosition::Offset(offset))]);
                } else {
                    self.fetcher.seek(tp, offset);
                }
            }
            Request::Pause(partitions) => {
                let partitions: Vec<TopicPartition> =
                    partitions.into_iter().filter(|tp| self.owned.contains_key(tp)).collect();
                self.paused.extend(partitions.iter().cloned());
                self.fetcher.pause(partitions);
            }
            Request::Resume(partitions) => {
                for tp in &partitions {
                    self.paused.remove(tp);
                }
                // A partition in a revoke window stays paused until the assignment comes.
                self.fetcher.resume(partitions.into_iter().filter(|tp| !self.revoking.contains(tp)).collect());
            }
            Request::Unread(batch) => {
                if self.holding.as_ref() == Some(&batch.lease) {
                    self.holding = None;
                }
                self.unread(batch);
            }
            Request::Assignment(reply) => {
                let _ = reply.send(self.owned.keys().cloned().collect());
            }
            Request::Close(_) => {}
        }
    }

    async fn group_event(&mut self, event: GroupEvent) {
        match event {
            GroupEvent::RevokeRequested { partitions, .. } => {
                let deadline = Instant::now() + self.config.rebalance_callback_timeout;
                self.revoke = Some(RevokeWindow { partitions, deadline });
                if self.holding.is_none() {
                    self.run_revoke().await;
                }
            }
            GroupEvent::Assigned { generation, partitions, added, revoked } => {
                let assignment = Assignment { generation, partitions, added, revoked };
                if self.revoke.is_some() {
                    // The member went on without the window (its deadline passed): apply the
                    // assignment before, so each one's added and revoked partitions apply in turn.
                    if let Some(earlier) = self.assignment_after_revoke.replace(assignment) {
                        self.assigned(earlier).await;
                    }
                } else {
                    self.assigned(assignment).await;
                }
            }
            GroupEvent::Lost { partitions, reason } => {
                tracing::warn!(%reason, partitions = partitions.len(), "partitions lost");
                // The member is no longer in the generation a revoke window belonged to.
                self.revoke = None;
                if let Some(assignment) = self.assignment_after_revoke.take() {
                    self.forget(&assignment.revoked);
                }
                self.forget(&partitions);
                if let Some(listener) = &self.listener {
                    let _ =
                        tokio::time::timeout(self.config.rebalance_callback_timeout, listener.lost(&partitions)).await;
                }
            }
            GroupEvent::Left { reason } => {
                self.revoke = None;
                self.assignment_after_revoke = None;
                let owned: Vec<TopicPartition> = self.owned.keys().cloned().collect();
                self.forget(&owned);
                // The group moved on without this member and no revoke window ran: lost.
                if let (Some(listener), false) = (&self.listener, owned.is_empty()) {
                    let _ = tokio::time::timeout(self.config.rebalance_callback_timeout, listener.lost(&owned)).await;
                }
                if reason == LeaveReason::MaxPollIntervalExceeded {
                    self.deliver(Err(Error::MaxPollIntervalExceeded { interval: self.config.max_poll_interval }));
                }
            }
            GroupEvent::Fatal(error) => self.deliver(Err(Error::Group(error))),
            _ => {}
        }
    }

    /// A dynamic member leaving gives its partitions up: the listener's `revoked` runs before
    /// the LeaveGroup, as in Java (`onLeavePrepare`). A static member keeps them (KIP-345: no
    /// LeaveGroup), so nothing is revoked.
    async fn revoke_on_close(&mut self) {
        if self.config.group_instance_id.is_some() {
            return;
        }
        let owned: Vec<TopicPartition> = self.owned.keys().cloned().collect();
        if let (Some(listener), false) = (&self.listener, owned.is_empty()) {
            let budget = self.config.rebalance_callback_timeout;
            if tokio::time::timeout(budget, listener.revoked(&owned)).await.is_err() {
                tracing::warn!("rebalance listener `revoked` ran past its deadline on close");
            }
        }
    }

    /// The revoke window: pause fetching, run the listener, commit stored offsets when
    /// auto-commit is on, then let the member rejoin.
    async fn run_revoke(&mut self) {
        let Some(window) = self.revoke.take() else { return };
        self.fetcher.pause(window.partitions.clone());
        // Nothing of these partitions is handed out until the assignment says they are kept.
        self.revoking.extend(window.partitions.iter().cloned());
        let budget = window.deadline.saturating_duration_since(Instant::now());
        // Java does not call `onPartitionsRevoked` with nothing revoked (a cooperative rebalance).
        if let (Some(listener), false) = (&self.listener, window.partitions.is_empty()) {
            if tokio::time::timeout(budget, listener.revoked(&window.partitions)).await.is_err() {
                tracing::warn!("rebalance listener `revoked` ran past its deadline");
            }
        }
        if self.config.enable_auto_commit {
            // Handed to the member before `revoke_done`: the member's JoinGroup waits for it.
            let leases: Vec<Lease> = std::mem::take(&mut *self.stored.lock().unwrap_or_else(PoisonError::into_inner))
                .into_values()
                .collect();
            if !leases.is_empty() {
                let pending = self.group.start_commit(leases);
                tokio::spawn(async move {
                    if let Err(e) = pending.await {
                        tracing::warn!(error = %e, "commit in the revoke window failed");
                    }
                });
            }
        }
        self.group.revoke_done();
        if let Some(assignment) = self.assignment_after_revoke.take() {
            self.assigned(assignment).await;
        }
    }

    async fn assigned(&mut self, Assignment { generation, partitions, added, revoked }: Assignment) {
        self.forget(&revoked);
        self.revoking.clear();
        self.owned = partitions.iter().map(|p| (p.partition.clone(), (generation.clone(), p.owned_since))).collect();
        // Kept partitions resume, unless the application paused them.
        let kept: Vec<TopicPartition> =
            self.owned.keys().filter(|tp| !added.contains(tp) && !self.paused.contains(*tp)).cloned().collect();
        self.fetcher.resume(kept);
        if !added.is_empty() {
            // New partitions start from the committed offset; kept ones keep their position.
            self.look_up_starts(added);
        }
        if let Some(listener) = &self.listener {
            let all: Vec<TopicPartition> = self.owned.keys().cloned().collect();
            let _ = tokio::time::timeout(self.config.rebalance_callback_timeout, listener.assigned(&all)).await;
        }
    }

    /// Looks up where `partitions` start; each is fetched once the answer comes
    /// ([`looked_up`](Self::looked_up)), the task carrying on meanwhile.
    fn look_up_starts(&mut self, partitions: Vec<TopicPartition>) {
        self.next_lookup += 1;
        let lookup = self.next_lookup;
        for tp in &partitions {
            self.starting.insert(tp.clone(), lookup);
        }
        let group = self.group.clone();
        self.lookups.spawn(async move { (lookup, group.committed(partitions).await) });
    }

    /// A lookup answered, for the partitions it still starts (not reassigned or sought since).
    /// A failed lookup is never "nothing committed": after a retriable failure the partitions
    /// are looked up again for as long as they stay assigned (as Java does; the member reports
    /// every failed attempt in its snapshot and events), and a refusal (an authorization error)
    /// reaches the application.
    fn looked_up(&mut self, lookup: u64, result: Result<Committed>) {
        let partitions: Vec<TopicPartition> =
            self.starting.iter().filter(|(_, l)| **l == lookup).map(|(tp, _)| tp.clone()).collect();
        if partitions.is_empty() {
            return;
        }
        match result {
            Ok(committed) => {
                let starts: Vec<(TopicPartition, StartPosition)> = committed
                    .into_iter()
                    .filter(|(tp, _)| partitions.contains(tp))
                    .map(|(tp, offset)| (tp, offset.map_or(StartPosition::Reset, StartPosition::Offset)))
                    .collect();
                for (tp, _) in &starts {
                    self.starting.remove(tp);
                }
                self.start(starts);
            }
            Err(Error::OffsetLookup(failure)) if failure.is_retriable() => {
                tracing::warn!(%failure, partitions = partitions.len(), "committed offsets still unknown; asking again");
                self.look_up_starts(partitions);
            }
            Err(Error::OffsetLookup(failure @ OffsetLookupFailure::Rejected { .. })) => {
                for tp in &partitions {
                    self.starting.remove(tp);
                }
                tracing::error!(%failure, ?partitions, "committed offsets cannot be looked up; not fetching");
                self.deliver(Err(Error::OffsetLookup(failure)));
            }
            // The member stopped: its fatal error reaches the application.
            Err(error) => tracing::debug!(%error, "offset lookup ended with the member"),
        }
    }

    /// Starts fetching partitions; those the application paused, or in a revoke window, stay
    /// paused.
    fn start(&mut self, starts: Vec<(TopicPartition, StartPosition)>) {
        let held: Vec<TopicPartition> = starts
            .iter()
            .map(|(tp, _)| tp)
            .filter(|tp| self.paused.contains(*tp) || self.revoking.contains(*tp))
            .cloned()
            .collect();
        self.fetcher.assign(starts);
        if !held.is_empty() {
            self.fetcher.pause(held);
        }
    }

    fn moved(&mut self, partition: &TopicPartition) {
        *self.moves.entry(partition.clone()).or_default() += 1;
    }

    fn forget(&mut self, partitions: &[TopicPartition]) {
        if partitions.is_empty() {
            return;
        }
        self.fetcher.revoke(partitions.to_vec());
        let mut stored = self.stored.lock().unwrap_or_else(PoisonError::into_inner);
        for tp in partitions {
            *self.moves.entry(tp.clone()).or_default() += 1;
            self.owned.remove(tp);
            self.pending.remove(tp);
            self.paused.remove(tp);
            self.revoking.remove(tp);
            self.starting.remove(tp);
            stored.remove(tp);
        }
    }

    fn fetched(&mut self, event: FetchEvent) {
        match event {
            FetchEvent::Records(batch) => {
                if !self.owned.contains_key(&batch.partition) {
                    return;
                }
                let queue = self.pending.entry(batch.partition.clone()).or_default();
                queue.extend(batch.records.into_iter().map(|r| (r, batch.high_watermark)));
            }
            FetchEvent::PartitionError { partition, error } => {
                tracing::warn!(%partition, %error, "partition fetch failed; other partitions go on");
                self.deliver(Err(Error::PartitionFetch {
                    partition: partition.to_string(),
                    reason: error.to_string(),
                }));
            }
        }
    }

    /// Up to `limit` pending records of one owned partition, as a batch with its lease.
    fn take_pending(&mut self) -> Option<Batch> {
        let limit = self.waiting.as_ref().map(|(l, _)| *l)?;
        let tp = self
            .pending
            .iter()
            .find(|(tp, q)| {
                !q.is_empty()
                    && self.owned.contains_key(*tp)
                    && !self.paused.contains(*tp)
                    && !self.revoking.contains(*tp)
            })
            .map(|(tp, _)| tp.clone())?;
        let (generation, owned_since) = self.owned.get(&tp)?.clone();
        let queue = self.pending.get_mut(&tp)?;
        while queue.len() < limit {
            let Some(batch) = self.fetcher.try_next_records(&tp) else { break };
            queue.extend(batch.records.into_iter().map(|r| (r, batch.high_watermark)));
        }
        let take = limit.min(queue.len());
        let taken: Vec<(ConsumerRecord, i64)> = queue.drain(..take).collect();
        let high_watermark = taken.last().map(|(_, hw)| *hw).unwrap_or(-1);
        let records: Vec<ConsumerRecord> = taken.into_iter().map(|(r, _)| r).collect();
        let next_offset = records.last().map(|r| r.offset + 1)?;
        let lease = Lease { partition: tp.clone(), next_offset, generation, owned_since };
        let moves = self.moves.get(&tp).copied().unwrap_or(0);
        Some(Batch { partition: tp, records, high_watermark, lease, moves })
    }

    /// Hands `item` to the waiting caller. Nobody waiting (or the caller gave up): records go
    /// back in front of the pending ones, errors wait for the next request.
    fn deliver(&mut self, item: Result<Batch>) {
        let Some((_, reply)) = self.waiting.take() else {
            match item {
                Ok(batch) => self.unread(batch),
                Err(e) => self.errors.push_back(e),
            }
            return;
        };
        if let Ok(batch) = &item {
            self.holding = Some(batch.lease.clone());
        }
        match reply.send(Some(item)) {
            Ok(()) => {}
            Err(Some(Ok(batch))) => {
                self.holding = None;
                self.unread(batch);
            }
            Err(Some(Err(e))) => self.errors.push_back(e),
            Err(None) => {}
        }
    }

    /// Puts a batch the application never received back in front of the pending records,
    /// unless the partition was sought (or reassigned) since: then its records are not next.
    fn unread(&mut self, batch: Batch) {
        let moves = self.moves.get(&batch.partition).copied().unwrap_or(0);
        if !self.owned.contains_key(&batch.partition) || batch.moves != moves {
            return;
        }
        let queue = self.pending.entry(batch.partition.clone()).or_default();
        for record in batch.records.into_iter().rev() {
            queue.push_front((record, batch.high_watermark));
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
