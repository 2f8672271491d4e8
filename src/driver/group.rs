//! The tokio driver of the group state machine: one task owns the [`GroupMachine`], feeds it
//! responses, timer expiries and commands, and drains every output after every input.
//!
//! The coordinator gets a connection of its own (as the Java client does), so that fetches
//! long-polling on the same broker never delay a heartbeat or a commit, and requests leave in
//! the order the machine emits them.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use kafka_protocol::ResponseError;
use tokio::sync::{broadcast, mpsc, oneshot};
use tracing::Instrument;

use super::cluster::{Cluster, TopicInfo};
use super::connection::{BrokerLink, Connection};
use super::member_span::{MemberSpan, MemberSpanWriter, TaskRole};
use crate::error::{ClosedCause, ConfigError, Error, Result};
use crate::group::events::{
    CommitFailure, CommitId, CommitOutcome, FenceReason, GroupError, GroupEvent, OffsetFetchId, OffsetLookupFailure,
    PartitionCommit,
};
use crate::group::requests::{
    CoordinatorFound, GroupRequest, GroupResponse, ListedTopic, OutgoingRequest, RequestFailure, RequestId,
};
use crate::group::{
    GroupConfig, GroupMachine, GroupProtocol, GroupSnapshot, Lease, StateKind, TopicPartition, TopicSubscription,
};
use crate::protocol::error_code::{ErrorAction, KafkaCode};
use crate::telemetry::{MemberMetrics, Metric};

/// A group event with the wall-clock time it happened.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct GroupEventRecord {
    /// When the machine reported it.
    pub at: SystemTime,
    /// The event.
    pub event: GroupEvent,
}

/// Who closes the revoke window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokeMode {
    /// The driver closes it as soon as in-flight commits are answered.
    Automatic,
    /// The application calls [`GroupHandle::revoke_done`] after its own commits (or the
    /// revoke timeout passes).
    Manual,
}

enum Command {
    Commit(Vec<Lease>, oneshot::Sender<Vec<PartitionCommit>>),
    Lease(TopicPartition, i64, oneshot::Sender<Option<Lease>>),
    FetchCommitted(Vec<TopicPartition>, FetchReply),
    RevokeDone,
    Poll,
    Snapshot(oneshot::Sender<GroupSnapshot>),
    Leave(String, oneshot::Sender<()>),
    Subscribe(TopicSubscription, oneshot::Sender<()>),
}

/// A request's outcome, with the coordinator connection it went out on (none for
/// FindCoordinator).
struct Answer {
    id: RequestId,
    on: Option<Connection>,
    result: std::result::Result<Answered, RequestFailure>,
}

enum Answered {
    Response(GroupResponse),
    Coordinator(CoordinatorFound, Connection),
    PartitionCounts(BTreeMap<String, i32>),
    Listing(Vec<ListedTopic>),
    TopicIds(BTreeMap<uuid::Uuid, String>),
}

/// How many events the observers' stream holds for a receiver that lags; older ones are dropped
/// for it (and counted in the snapshot's `observer_events_dropped`).
const OBSERVER_EVENTS: usize = 4096;

/// The member's control events ([`GroupEvent::is_control`]: assignments, revocations, losses,
/// leaving, fatal errors), every one of them, in order: what a consumer drives its partitions
/// by. Unlike the observers' stream, nothing is ever dropped (they are a few per rebalance).
#[derive(Debug)]
pub struct ControlEvents(mpsc::UnboundedReceiver<GroupEventRecord>);

impl ControlEvents {
    /// The next control event; `None` once the member's task has stopped. Cancel-safe: a
    /// dropped call loses no event.
    pub async fn recv(&mut self) -> Option<GroupEventRecord> {
        self.0.recv().await
    }

    /// The next control event already sent, without waiting.
    pub fn try_recv(&mut self) -> Option<GroupEventRecord> {
        self.0.try_recv().ok()
    }
}

/// A handle on a running group member. Dropping every handle stops the member without a
/// LeaveGroup; call [`leave`](Self::leave) to leave properly. [`observer`](Self::observer)
/// gives a read-only view that does not keep the member running.
#[derive(Clone)]
pub struct GroupHandle {
    commands: mpsc::UnboundedSender<Command>,
    events: broadcast::Sender<GroupEventRecord>,
    metrics: MemberMetrics,
    span: MemberSpan,
    /// Set by the member's task as it stops: what a closed member's callers are told.
    stopped: Arc<OnceLock<ClosedCause>>,
}

/// A read-only view of a group member: its snapshot, events, metrics, log span and committed
/// offsets. It can neither commit nor leave, so it can be handed to dashboards and the debug
/// server without letting them break the consumer's invariants; and it does not keep the member
/// running (once every [`GroupHandle`] is dropped, or the member left or failed, its calls
/// return [`Error::Closed`] with the reason).
#[derive(Clone)]
pub struct GroupObserver {
    commands: mpsc::WeakUnboundedSender<Command>,
    events: broadcast::WeakSender<GroupEventRecord>,
    metrics: MemberMetrics,
    span: MemberSpan,
    stopped: Arc<OnceLock<ClosedCause>>,
}

impl std::fmt::Debug for GroupObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupObserver").finish_non_exhaustive()
    }
}

impl GroupObserver {
    /// The debug snapshot: state, generation, assignment with ownership streaks, commits and
    /// counters. Cancel-safe.
    pub async fn group_state(&self) -> Result<GroupSnapshot> {
        self.member()?.group_state().await
    }

    /// The committed offsets of `partitions`, as [`GroupHandle::committed`]. Cancel-safe.
    pub async fn committed(&self, partitions: Vec<TopicPartition>) -> Result<Vec<(TopicPartition, Option<i64>)>> {
        self.member()?.committed(partitions).await
    }

    /// Subscribes to the member's events, as [`GroupHandle::events`]; once the member stopped,
    /// the receiver reports `Closed` at once.
    pub fn events(&self) -> broadcast::Receiver<GroupEventRecord> {
        match self.events.upgrade() {
            Some(events) => events.subscribe(),
            None => broadcast::channel(1).1,
        }
    }

    /// The member's metrics: render them with [`MemberMetrics::render_prometheus`].
    pub fn metrics(&self) -> &MemberMetrics {
        &self.metrics
    }

    /// The member's log span (`group`, `client_id`, `member_id`, `generation`).
    pub fn span(&self) -> &MemberSpan {
        &self.span
    }

    /// Why the member stopped, once it has.
    pub fn stopped(&self) -> Option<ClosedCause> {
        self.stopped.get().cloned()
    }

    /// A handle for the length of one request (the member stays up until it is answered).
    fn member(&self) -> Result<GroupHandle> {
        let commands = self.commands.upgrade().ok_or_else(|| closed(&self.stopped))?;
        let events = self.events.upgrade().ok_or_else(|| closed(&self.stopped))?;
        let (metrics, span, stopped) = (self.metrics.clone(), self.span.clone(), self.stopped.clone());
        Ok(GroupHandle { commands, events, metrics, span, stopped })
    }
}

impl From<&GroupHandle> for GroupObserver {
    fn from(handle: &GroupHandle) -> GroupObserver {
        handle.observer()
    }
}

/// The error of a call on a member that stopped.
fn closed(stopped: &OnceLock<ClosedCause>) -> Error {
    Error::Closed { what: "group member", cause: stopped.get().cloned().unwrap_or(ClosedCause::TaskEnded) }
}

impl std::fmt::Debug for GroupHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupHandle").finish_non_exhaustive()
    }
}

impl GroupHandle {
    /// Validates the configuration, starts the member's task and begins joining.
    pub async fn start(cluster: Cluster, config: GroupConfig, topics: Vec<String>, revoke: RevokeMode) -> Result<Self> {
        Ok(Self::start_with_events(cluster, config, topics, revoke).await?.0)
    }

    /// [`start`](Self::start), with a receiver subscribed before the member's task runs: it
    /// sees every event from the first one (a receiver from [`events`](Self::events) may miss
    /// the first assignment when the task is quicker than the caller).
    pub async fn start_with_events(
        cluster: Cluster,
        config: GroupConfig,
        topics: Vec<String>,
        revoke: RevokeMode,
    ) -> Result<(Self, broadcast::Receiver<GroupEventRecord>)> {
        let (handle, [events]) = Self::start_with_receivers(cluster, config, topics, revoke).await?;
        Ok((handle, events))
    }

    /// [`start`](Self::start), with `N` receivers subscribed before the member's task runs,
    /// each seeing every event from the first one.
    pub async fn start_with_receivers<const N: usize>(
        cluster: Cluster,
        config: GroupConfig,
        topics: Vec<String>,
        revoke: RevokeMode,
    ) -> Result<(Self, [broadcast::Receiver<GroupEventRecord>; N])> {
        let subscription = TopicSubscription::Topics(topics);
        let (handle, _, receivers) = Self::start_with_control(cluster, config, subscription, revoke).await?;
        Ok((handle, receivers))
    }

    /// [`start_with_receivers`](Self::start_with_receivers) with any subscription (a pattern
    /// too), and with the member's [`ControlEvents`]: a consumer acts on those, and must not
    /// miss one because an observer's stream overflowed. Cancel-safe: dropped before it returns, it has started no
    /// member.
    pub async fn start_with_control<const N: usize>(
        cluster: Cluster,
        config: GroupConfig,
        subscription: TopicSubscription,
        revoke: RevokeMode,
    ) -> Result<(Self, ControlEvents, [broadcast::Receiver<GroupEventRecord>; N])> {
        let mut config = config;
        if let GroupProtocol::Consumer { member_id: member_id @ None, .. } = &mut config.protocol {
            *member_id = Some(random_member_id());
        }
        config.validate()?;
        validate_subscription(&subscription)?;
        let counts = match &subscription {
            TopicSubscription::Topics(topics) => initial_counts(&cluster, topics).await?,
            // The machine lists every topic before it joins.
            _ => Vec::new(),
        };
        let mut machine = GroupMachine::with_subscription(config, subscription, Instant::now());
        machine.set_partition_counts(counts);
        Ok(Self::spawn(cluster, machine, revoke))
    }

    /// A consumer's handle on partitions the application assigns, without membership
    /// ([`GroupMachine::manual`]): nothing is sent until it commits or looks offsets up, which
    /// need `config.group_id`. Its control events are its leaving and fatal errors.
    pub(crate) fn start_manual<const N: usize>(
        cluster: Cluster,
        config: GroupConfig,
    ) -> (Self, ControlEvents, [broadcast::Receiver<GroupEventRecord>; N]) {
        Self::spawn(cluster, GroupMachine::manual(config), RevokeMode::Automatic)
    }

    fn spawn<const N: usize>(
        cluster: Cluster,
        machine: GroupMachine,
        revoke: RevokeMode,
    ) -> (Self, ControlEvents, [broadcast::Receiver<GroupEventRecord>; N]) {
        let (commands, rx) = mpsc::unbounded_channel();
        let (events, _) = broadcast::channel(OBSERVER_EVENTS);
        let receivers = std::array::from_fn(|_| events.subscribe());
        let (control, control_rx) = mpsc::unbounded_channel();
        let client_id = cluster.config().connection.client_id.clone();
        let group_id = machine.group_id().to_owned();
        let metrics = MemberMetrics::new(&group_id, &client_id);
        // The state the member starts in (later ones are set as it moves).
        metrics.set(Metric::State, &[state_label(machine.state())], 1.0);
        let stopped = Arc::new(OnceLock::new());
        let (span_writer, span) = MemberSpanWriter::new(&group_id, &client_id);
        let now = Instant::now();
        let task = Driver {
            state_since: (machine.state(), now),
            machine,
            cluster,
            coordinator: None,
            answers: Answers::default(),
            commits: HashMap::new(),
            fetches: HashMap::new(),
            events: events.clone(),
            observer_events_dropped: 0,
            control,
            revoke,
            leaving: None,
            metrics: metrics.clone(),
            sent: HashMap::new(),
            rebalances_seen: 0,
            completed_seen: 0,
            deferred_seen: 0,
            span_writer,
            fatal: None,
            stopped: stopped.clone(),
        };
        tokio::spawn(span.follow(TaskRole::Driver, task.run(rx)));
        (GroupHandle { commands, events, metrics, span, stopped }, ControlEvents(control_rx), receivers)
    }

    /// A read-only view of the member (see [`GroupObserver`]).
    pub fn observer(&self) -> GroupObserver {
        GroupObserver {
            commands: self.commands.downgrade(),
            events: self.events.downgrade(),
            metrics: self.metrics.clone(),
            span: self.span.clone(),
            stopped: self.stopped.clone(),
        }
    }

    /// Subscribes to the member's events. Events before the call are not replayed, and a
    /// receiver that lags by more than 4096 events misses the oldest (`RecvError::Lagged`;
    /// counted in the snapshot's `observer_events_dropped`).
    pub fn events(&self) -> broadcast::Receiver<GroupEventRecord> {
        self.events.subscribe()
    }

    /// The member's metrics: render them with [`MemberMetrics::render_prometheus`].
    pub fn metrics(&self) -> &MemberMetrics {
        &self.metrics
    }

    /// The member's log span (`group`, `client_id`, `member_id`, `generation`): tasks working
    /// for the member (the consumer's, the fetcher) log inside a child of it.
    pub fn span(&self) -> &MemberSpan {
        &self.span
    }

    /// A lease for `partition` up to `next_offset`, if this member owns it now.
    pub async fn lease(&self, partition: TopicPartition, next_offset: i64) -> Result<Option<Lease>> {
        self.ask(|reply| Command::Lease(partition, next_offset, reply)).await
    }

    /// Commits leases and waits for every partition's outcome.
    pub async fn commit(&self, leases: Vec<Lease>) -> Result<Vec<PartitionCommit>> {
        self.start_commit(leases).await
    }

    /// Hands the commit to the member now (ahead of any later command, such as
    /// [`revoke_done`](Self::revoke_done)) and returns the future of its outcomes.
    pub fn start_commit(&self, leases: Vec<Lease>) -> impl Future<Output = Result<Vec<PartitionCommit>>> + use<> {
        let (tx, rx) = oneshot::channel();
        let sent = self.commands.send(Command::Commit(leases, tx));
        let stopped = self.stopped.clone();
        async move {
            sent.map_err(|_| closed(&stopped))?;
            rx.await.map_err(|_| closed(&stopped))
        }
    }

    /// The committed offsets of `partitions` (`None`: nothing committed). Failed attempts are
    /// retried until `default.api.timeout.ms` passes; then (or on an authorization error) it is
    /// [`Error::OffsetLookup`], which never means "nothing committed". Cancel-safe: a dropped
    /// call's lookup runs on in the member and its answer is discarded.
    pub async fn committed(&self, partitions: Vec<TopicPartition>) -> Result<Vec<(TopicPartition, Option<i64>)>> {
        Ok(self.ask(|reply| Command::FetchCommitted(partitions, reply)).await??)
    }

    /// Closes the revoke window under [`RevokeMode::Manual`].
    pub fn revoke_done(&self) {
        let _ = self.commands.send(Command::RevokeDone);
    }

    /// Tells the member the application polled (`max.poll.interval.ms`).
    pub fn record_poll(&self) {
        let _ = self.commands.send(Command::Poll);
    }

    /// The debug snapshot: state, generation, assignment with ownership streaks, commits and
    /// counters.
    pub async fn group_state(&self) -> Result<GroupSnapshot> {
        self.ask(Command::Snapshot).await
    }

    /// Changes the subscription (Java: `subscribe` called again): the member rejoins, revoking
    /// first what it no longer subscribes to (everything under an eager assignor); the same
    /// subscription again changes nothing. Topic names are checked as at start. Returns once
    /// the member has taken the change and published the events it caused. Cancel safety: once
    /// polled, the change is handed over and is not withdrawn by dropping the future.
    pub async fn change_subscription(&self, subscription: TopicSubscription) -> Result<()> {
        validate_subscription(&subscription)?;
        self.ask(|reply| Command::Subscribe(subscription, reply)).await
    }

    /// Leaves the group (dynamic members send LeaveGroup) and stops the task.
    pub async fn leave(&self, reason: &str) -> Result<()> {
        self.ask(|reply| Command::Leave(reason.to_owned(), reply)).await
    }

    async fn ask<T>(&self, command: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(command(tx)).map_err(|_| closed(&self.stopped))?;
        rx.await.map_err(|_| closed(&self.stopped))
    }
}

struct Driver {
    machine: GroupMachine,
    cluster: Cluster,
    coordinator: Option<Connection>,
    answers: Answers,
    /// Each commit's reply, and when the application handed it over (commit latency).
    commits: HashMap<CommitId, (oneshot::Sender<Vec<PartitionCommit>>, Instant)>,
    fetches: HashMap<OffsetFetchId, FetchReply>,
    events: broadcast::Sender<GroupEventRecord>,
    observer_events_dropped: u64,
    control: mpsc::UnboundedSender<GroupEventRecord>,
    revoke: RevokeMode,
    leaving: Option<oneshot::Sender<()>>,
    metrics: MemberMetrics,
    /// Requests on the wire: their API and when they left (heartbeat latency).
    sent: HashMap<RequestId, (&'static str, Instant)>,
    /// The state the member is in and since when (time in each state).
    state_since: (StateKind, Instant),
    /// The machine's rebalance and deferred-commit counters as last turned into metrics.
    rebalances_seen: u64,
    completed_seen: u64,
    deferred_seen: u64,
    span_writer: MemberSpanWriter,
    /// The fatal error the member stopped on, if any.
    fatal: Option<GroupError>,
    stopped: Arc<OnceLock<ClosedCause>>,
}

/// The requests in flight, polled inside the member's task: an answer reaches the machine
/// without first waking a task of its own (one thread hand-off less on every commit's way back).
#[derive(Default)]
struct Answers(Vec<Pin<Box<dyn Future<Output = Answer> + Send>>>);

impl Answers {
    fn push(&mut self, answer: impl Future<Output = Answer> + Send + 'static) {
        self.0.push(Box::pin(answer));
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The next answer to arrive. Cancel-safe: requests not answered stay in flight.
    fn next(&mut self) -> impl Future<Output = Answer> + '_ {
        std::future::poll_fn(move |cx| {
            let ready = self.0.iter_mut().enumerate().find_map(|(i, answer)| match answer.as_mut().poll(cx) {
                std::task::Poll::Ready(answer) => Some((i, answer)),
                std::task::Poll::Pending => None,
            });
            match ready {
                Some((i, answer)) => {
                    drop(self.0.swap_remove(i));
                    std::task::Poll::Ready(answer)
                }
                None => std::task::Poll::Pending,
            }
        })
    }
}

type FetchReply = oneshot::Sender<Result<Vec<(TopicPartition, Option<i64>)>, OffsetLookupFailure>>;

impl Driver {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        loop {
            self.drain();
            if self.is_finished() {
                let cause = match self.fatal.take() {
                    Some(error) => ClosedCause::Fatal(error),
                    None => ClosedCause::Application,
                };
                let _ = self.stopped.set(cause);
                if let Some(reply) = self.leaving.take() {
                    let _ = reply.send(());
                }
                return;
            }
            let deadline = self.machine.poll_timeout().map(tokio::time::Instant::from_std);
            tokio::select! {
                command = commands.recv() => match command {
                    Some(command) => self.command(command),
                    // Every handle dropped: stop without LeaveGroup (the session expires).
                    None => {
                        let _ = self.stopped.set(ClosedCause::Dropped);
                        return;
                    }
                },
                answer = self.answers.next(), if !self.answers.is_empty() => self.answer(answer),
                _ = sleep_until(deadline) => self.machine.handle_timeout(Instant::now()),
            }
        }
    }

    /// Failed stops the member; Left stops it only after `leave()`: a member that left because
    /// `max.poll.interval.ms` passed rejoins on the next poll.
    fn is_finished(&self) -> bool {
        let stopped = match self.machine.state() {
            StateKind::Failed => true,
            StateKind::Left => self.leaving.is_some(),
            _ => false,
        };
        stopped && self.commits.is_empty()
    }

    fn command(&mut self, command: Command) {
        let now = Instant::now();
        match command {
            Command::Commit(leases, reply) => {
                let id = self.machine.commit(leases, now);
                self.commits.insert(id, (reply, now));
            }
            Command::Lease(tp, offset, reply) => {
                let _ = reply.send(self.machine.lease(&tp, offset));
            }
            Command::FetchCommitted(partitions, reply) => {
                let id = self.machine.fetch_committed(partitions, now);
                self.fetches.insert(id, reply);
            }
            Command::RevokeDone => self.machine.revoke_done(now),
            Command::Poll => self.machine.record_poll(now),
            Command::Snapshot(reply) => {
                let mut snapshot = self.machine.snapshot(now);
                snapshot.counters.observer_events_dropped = self.observer_events_dropped;
                let _ = reply.send(snapshot);
            }
            Command::Leave(reason, reply) => {
                self.leaving = Some(reply);
                self.machine.leave(reason.as_str(), now);
            }
            Command::Subscribe(subscription, reply) => {
                self.machine.subscribe_to(subscription, now);
                // The revocation it starts reaches the control channel before the caller
                // hears back, so a consumer drains it before it hands out another batch.
                self.drain();
                let _ = reply.send(());
            }
        }
    }

    fn answer(&mut self, Answer { id, on, result }: Answer) {
        let now = Instant::now();
        match &result {
            Ok(_) => tracing::debug!(request = id.0, "group request answered"),
            Err(failure) => tracing::debug!(request = id.0, %failure, "group request failed"),
        }
        if let Some((api, sent_at)) = self.sent.remove(&id) {
            let outcome = outcome_label(&result);
            self.metrics.increment(Metric::GroupRequests, &[api, &outcome], 1);
            if api == "Heartbeat" && result.is_ok() {
                self.metrics.observe(Metric::HeartbeatLatency, &[], now.saturating_duration_since(sent_at));
            }
        }
        match result {
            Ok(Answered::Response(response)) => self.machine.handle_response(now, id, response),
            Ok(Answered::Coordinator(found, conn)) => {
                self.coordinator = Some(conn);
                self.machine.handle_coordinator_found(now, id, found);
            }
            Ok(Answered::PartitionCounts(counts)) => self.machine.handle_metadata(now, id, counts),
            Ok(Answered::Listing(listing)) => self.machine.handle_topic_listing(now, id, listing),
            Ok(Answered::TopicIds(ids)) => self.machine.handle_topic_ids(now, id, ids),
            Err(failure) => {
                if let (RequestFailure::Network(_) | RequestFailure::TimedOut, Some(conn)) = (&failure, on) {
                    // As the Java client does: a request that timed out poisons its connection,
                    // so nothing stays queued behind an answer that will not come. Only that
                    // connection: one given up since must not take the current one down.
                    conn.close();
                }
                self.machine.handle_request_failed(now, id, failure);
            }
        }
    }

    /// Sends every request and publishes every event the machine has.
    fn drain(&mut self) {
        loop {
            let mut progressed = false;
            while let Some(request) = self.machine.poll_request() {
                progressed = true;
                self.dispatch(request);
            }
            while let Some((at, event)) = self.machine.poll_event() {
                progressed = true;
                self.publish(at, event);
            }
            if !progressed {
                self.count_machine_counters();
                self.record_identity();
                return;
            }
        }
    }

    fn publish(&mut self, at: Instant, event: GroupEvent) {
        match &event {
            GroupEvent::CommitCompleted { id, results } => {
                if let Some((reply, started)) = self.commits.remove(id) {
                    self.metrics.observe(Metric::CommitLatency, &[], at.saturating_duration_since(started));
                    let _ = reply.send(results.clone());
                }
                for result in results {
                    let (outcome, reason) = commit_labels(&result.outcome);
                    self.metrics.increment(Metric::PartitionCommits, &[outcome, &reason], 1);
                }
            }
            GroupEvent::Transition { from, to, .. } => {
                let (_, since) = self.state_since;
                self.metrics.observe(Metric::StateDuration, &[state_label(*from)], at.saturating_duration_since(since));
                self.metrics.set(Metric::State, &[state_label(*from)], 0.0);
                self.metrics.set(Metric::State, &[state_label(*to)], 1.0);
                self.state_since = (*to, at);
            }
            GroupEvent::CommittedOffsets { id, offsets } => {
                if let Some(reply) = self.fetches.remove(id) {
                    let _ = reply.send(Ok(offsets.clone()));
                }
            }
            GroupEvent::CommittedOffsetsFailed { id, failure } => {
                if let Some(reply) = self.fetches.remove(id) {
                    let _ = reply.send(Err(failure.clone()));
                }
            }
            GroupEvent::Fatal(error) => self.fatal = Some(error.clone()),
            GroupEvent::RevokeRequested { .. } if self.revoke == RevokeMode::Automatic => {
                self.machine.revoke_done(Instant::now());
            }
            _ => {}
        }
        let wall = SystemTime::now() - Instant::now().saturating_duration_since(at);
        let record = GroupEventRecord { at: wall, event };
        if record.event.is_control() {
            // The consumer may be gone (a member driven without one): nothing to hand over.
            let _ = self.control.send(record.clone());
        }
        if self.events.receiver_count() > 0 && self.events.len() >= OBSERVER_EVENTS {
            // The oldest event is still unseen by a receiver that lags: this send drops it.
            self.observer_events_dropped += 1;
        }
        let _ = self.events.send(record);
    }

    /// Turns the machine's counters into metrics: rebalances (with the duration of each one
    /// that finished, the first join included) and deferred commits.
    fn count_machine_counters(&mut self) {
        let counters = self.machine.counters();
        if counters.rebalances > self.rebalances_seen {
            self.metrics.increment(Metric::Rebalances, &[], counters.rebalances - self.rebalances_seen);
            self.rebalances_seen = counters.rebalances;
        }
        if counters.rebalances_completed > self.completed_seen {
            // Between two drains at most one rebalance can end: the last one's duration is it.
            let took = Duration::from_millis(counters.last_rebalance_ms.unwrap_or(0));
            self.metrics.observe(Metric::RebalanceDuration, &[], took);
            self.completed_seen = counters.rebalances_completed;
        }
        if counters.commits_deferred > self.deferred_seen {
            self.metrics.increment(Metric::DeferredCommits, &[], counters.commits_deferred - self.deferred_seen);
            self.deferred_seen = counters.commits_deferred;
        }
    }

    /// Renews the member's log span when its member id or generation changed.
    fn record_identity(&mut self) {
        let generation = self.machine.current_generation().map(|g| g.id.0);
        self.span_writer.update(self.machine.member_id().as_str(), generation);
    }

    /// Runs a request's future in the member's span of the moment (the generation it was sent in).
    fn spawn_answer(&mut self, answer: impl Future<Output = Answer> + Send + 'static) {
        self.answers.push(answer.instrument(tracing::Span::current()));
    }

    fn dispatch(&mut self, request: OutgoingRequest) {
        let OutgoingRequest { id, version, timeout, body } = request;
        tracing::debug!(api = body.api_name(), version, request = id.0, "group request sent");
        self.sent.insert(id, (body.api_name(), Instant::now()));
        if let GroupRequest::FindCoordinator { group_id } = body {
            // The machine gave the coordinator up with every request on its connection
            // (`GroupMachine::coordinator_lost`): close it, so the broker drops what it still
            // holds of them (Java's `markCoordinatorUnknown` disconnects too).
            if let Some(old) = self.coordinator.take() {
                old.close();
            }
            let cluster = self.cluster.clone();
            self.spawn_answer(async move {
                Answer { id, on: None, result: find_coordinator(cluster, group_id, timeout).await }
            });
            return;
        }
        if let GroupRequest::Metadata { topics } = body {
            let cluster = self.cluster.clone();
            self.spawn_answer(async move {
                Answer { id, on: None, result: partition_counts(cluster, topics, timeout).await }
            });
            return;
        }
        if let GroupRequest::TopicIds { topics } = body {
            let cluster = self.cluster.clone();
            self.spawn_answer(
                async move { Answer { id, on: None, result: topic_ids(cluster, topics, timeout).await } },
            );
            return;
        }
        if let GroupRequest::ListTopics = body {
            let cluster = self.cluster.clone();
            self.spawn_answer(async move { Answer { id, on: None, result: list_topics(cluster, timeout).await } });
            return;
        }
        let Some(conn) = self.coordinator.clone() else {
            let result = Err(RequestFailure::Network("no coordinator connection".into()));
            self.spawn_answer(async move { Answer { id, on: None, result } });
            return;
        };
        match start(&conn, version, timeout, body) {
            Ok(pending) => self.spawn_answer(async move { Answer { id, result: pending.await, on: Some(conn) } }),
            Err(failure) => self.spawn_answer(async move { Answer { id, on: Some(conn), result: Err(failure) } }),
        };
    }
}

/// Puts a coordinator request on the wire now and returns the future of its answer.
fn start(
    conn: &Connection,
    version: i16,
    timeout: Duration,
    body: GroupRequest,
) -> std::result::Result<PendingAnswer, RequestFailure> {
    match body {
        GroupRequest::JoinGroup(r) => wrap(conn.start_request(&r, version, timeout), GroupResponse::JoinGroup),
        GroupRequest::SyncGroup(r) => wrap(conn.start_request(&r, version, timeout), GroupResponse::SyncGroup),
        GroupRequest::Heartbeat(r) => wrap(conn.start_request(&r, version, timeout), GroupResponse::Heartbeat),
        GroupRequest::LeaveGroup(r) => wrap(conn.start_request(&r, version, timeout), GroupResponse::LeaveGroup),
        GroupRequest::OffsetCommit(r) => wrap(conn.start_request(&r, version, timeout), GroupResponse::OffsetCommit),
        GroupRequest::OffsetFetch(r) => wrap(conn.start_request(&r, version, timeout), GroupResponse::OffsetFetch),
        GroupRequest::ConsumerGroupHeartbeat(r) => {
            wrap(conn.start_request(&r, version, timeout), GroupResponse::ConsumerGroupHeartbeat)
        }
        GroupRequest::FindCoordinator { .. }
        | GroupRequest::Metadata { .. }
        | GroupRequest::ListTopics
        | GroupRequest::TopicIds { .. } => {
            Err(RequestFailure::Malformed(format!("{} goes to any broker, not the coordinator", body.api_name())))
        }
    }
}

type PendingAnswer = Pin<Box<dyn Future<Output = std::result::Result<Answered, RequestFailure>> + Send>>;

fn wrap<T: Send + 'static>(
    started: Result<impl Future<Output = Result<T>> + Send + 'static>,
    into: fn(T) -> GroupResponse,
) -> std::result::Result<PendingAnswer, RequestFailure> {
    let pending = started.map_err(|e| failure_of(&e))?;
    Ok(Box::pin(async move { pending.await.map(|r| Answered::Response(into(r))).map_err(|e| failure_of(&e)) }))
}

fn failure_of(error: &Error) -> RequestFailure {
    match error {
        Error::Network(crate::error::NetworkError::RequestTimeout { .. }) => RequestFailure::TimedOut,
        Error::Network(e) => RequestFailure::Network(e.to_string()),
        Error::Broker { code, .. } => RequestFailure::Broker(*code),
        other => RequestFailure::Malformed(other.to_string()),
    }
}

/// One FindCoordinator attempt, then a dedicated connection to the coordinator, all within
/// `timeout` (the request's): reaching a broker, the lookup, and connecting to the coordinator
/// (which may accept and never answer) together, so the machine retries after its backoff.
async fn find_coordinator(
    cluster: Cluster,
    group_id: String,
    timeout: Duration,
) -> std::result::Result<Answered, RequestFailure> {
    let lookup = async {
        let info = cluster.find_coordinator_once(&group_id).await.map_err(|e| failure_of(&e))?;
        let link = BrokerLink::new(info.addr(), Arc::new(cluster.config().connection.clone()));
        let conn = link.connection().await.map_err(|e| failure_of(&e))?;
        let versions = conn.versions().clone();
        Ok(Answered::Coordinator(CoordinatorFound { node_id: info.node_id, versions }, conn))
    };
    tokio::time::timeout(timeout, lookup).await.unwrap_or(Err(RequestFailure::TimedOut))
}

/// A KIP-848 member id: a random UUID, drawn once per member (KIP-1082), as Java's. Unique,
/// not secret: the bits come from std's per-process random hash keys.
fn random_member_id() -> String {
    use std::hash::{BuildHasher, RandomState};
    let (high, low) = (RandomState::new().hash_one(SystemTime::now()), RandomState::new().hash_one(std::process::id()));
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&high.to_be_bytes());
    bytes[8..].copy_from_slice(&low.to_be_bytes());
    uuid::Builder::from_random_bytes(bytes).into_uuid().to_string()
}

/// Checks a subscription before the member takes it: every topic name as Kafka would accept it,
/// and at least one topic (a pattern may match none yet).
fn validate_subscription(subscription: &TopicSubscription) -> std::result::Result<(), ConfigError> {
    match subscription {
        TopicSubscription::Topics(topics) if topics.is_empty() => {
            Err(ConfigError::Missing { key: "subscription (topics)" })
        }
        TopicSubscription::Topics(topics) => {
            topics.iter().try_for_each(|topic| crate::driver::cluster::validate_topic_name(topic))
        }
        TopicSubscription::Pattern(_) => Ok(()),
    }
}

/// The partition counts of `topics` known before the first join (a missing topic has none).
async fn initial_counts(cluster: &Cluster, topics: &[String]) -> Result<Vec<(String, i32)>> {
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let metadata = cluster.refresh_metadata(Some(&names)).await?;
    Ok(topics.iter().filter_map(|t| Some((t.clone(), i32::try_from(metadata.partition_count(t)?).ok()?))).collect())
}

/// Every topic of the cluster, from any broker, within `timeout`. A topic the broker reports
/// with a transient error (being created) is listed without a count; one it may not describe
/// is left out.
async fn list_topics(cluster: Cluster, timeout: Duration) -> std::result::Result<Answered, RequestFailure> {
    let metadata = tokio::time::timeout(timeout, cluster.refresh_metadata(None))
        .await
        .map_err(|_| RequestFailure::TimedOut)?
        .map_err(|e| failure_of(&e))?;
    let listing = metadata
        .topics
        .values()
        .filter_map(|info| {
            let partitions = match standing(info) {
                TopicStanding::Absent => return None,
                TopicStanding::Transient => None,
                TopicStanding::Readable(count) => Some(count),
            };
            Some(ListedTopic { name: info.name.clone(), partitions, internal: info.internal })
        })
        .collect();
    Ok(Answered::Listing(listing))
}

/// The ids of `topics` (every topic's when `None`) that have one, from any broker, within
/// `timeout`.
async fn topic_ids(
    cluster: Cluster,
    topics: Option<Vec<String>>,
    timeout: Duration,
) -> std::result::Result<Answered, RequestFailure> {
    let names: Option<Vec<&str>> = topics.as_ref().map(|t| t.iter().map(String::as_str).collect());
    let metadata = tokio::time::timeout(timeout, cluster.refresh_metadata(names.as_deref()))
        .await
        .map_err(|_| RequestFailure::TimedOut)?
        .map_err(|e| failure_of(&e))?;
    let ids = metadata.topics.values().filter_map(|t| Some((t.id?, t.name.clone()))).collect();
    Ok(Answered::TopicIds(ids))
}

/// What a topic's metadata says of it.
enum TopicStanding {
    /// Unknown to the broker, or not to be described (authorization): no partitions to assign.
    Absent,
    /// A transient error (LEADER_NOT_AVAILABLE while it is being created, ...).
    Transient,
    /// This many partitions.
    Readable(i32),
}

fn standing(info: &TopicInfo) -> TopicStanding {
    let transient = matches!(info.error.action(), Some(ErrorAction::Retry | ErrorAction::RefreshMetadata));
    let unknown = info.error.as_response_error() == Some(ResponseError::UnknownTopicOrPartition);
    match i32::try_from(info.partitions.len()) {
        _ if unknown || (info.error.is_error() && !transient) => TopicStanding::Absent,
        _ if info.error.is_error() => TopicStanding::Transient,
        Ok(count) => TopicStanding::Readable(count),
        Err(_) => TopicStanding::Absent,
    }
}

/// The partition counts of those of `topics` that exist, from any broker, within `timeout`.
/// A topic the broker reports with a transient error (LEADER_NOT_AVAILABLE while it is being
/// created, ...) fails the request, so the machine keeps the counts it knows and asks again;
/// one it does not know or may not describe is left out: it has no partitions to assign.
async fn partition_counts(
    cluster: Cluster,
    topics: Vec<String>,
    timeout: Duration,
) -> std::result::Result<Answered, RequestFailure> {
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let metadata = tokio::time::timeout(timeout, cluster.refresh_metadata(Some(&names)))
        .await
        .map_err(|_| RequestFailure::TimedOut)?
        .map_err(|e| failure_of(&e))?;
    let mut counts = BTreeMap::new();
    for topic in &topics {
        let Some(info) = metadata.topics.get(topic) else { continue };
        match standing(info) {
            TopicStanding::Absent => {}
            TopicStanding::Transient => return Err(RequestFailure::Broker(info.error)),
            TopicStanding::Readable(count) => {
                counts.insert(topic.clone(), count);
            }
        }
    }
    Ok(Answered::PartitionCounts(counts))
}

/// A group request's outcome as a metric label: `ok`, the error code's name, `network`,
/// `timeout` or `malformed`.
fn outcome_label(result: &std::result::Result<Answered, RequestFailure>) -> String {
    let code = match result {
        Ok(Answered::Response(response)) => response.error_code(),
        Ok(Answered::Coordinator(..) | Answered::PartitionCounts(_) | Answered::Listing(_) | Answered::TopicIds(_)) => {
            KafkaCode::NONE
        }
        Err(RequestFailure::Broker(code)) => *code,
        Err(RequestFailure::Network(_)) => return "network".into(),
        Err(RequestFailure::TimedOut) => return "timeout".into(),
        Err(RequestFailure::Malformed(_)) => return "malformed".into(),
    };
    code_label(code)
}

fn code_label(code: KafkaCode) -> String {
    match code.name() {
        _ if !code.is_error() => "ok".into(),
        Some(name) => name.into(),
        None => format!("code_{}", code.0),
    }
}

/// A partition commit's outcome and reason as metric labels.
fn commit_labels(outcome: &CommitOutcome) -> (&'static str, String) {
    match outcome {
        CommitOutcome::Committed { restamped_from: None, .. } => ("committed", "none".into()),
        CommitOutcome::Committed { restamped_from: Some(_), .. } => ("restamped", "none".into()),
        CommitOutcome::Fenced { reason, .. } => match reason {
            FenceReason::NotOwned => ("fenced", "not_owned".into()),
            FenceReason::OwnershipInterrupted { .. } => ("fenced", "ownership_interrupted".into()),
            FenceReason::OtherMember => ("fenced", "other_member".into()),
            FenceReason::RejectedByBroker(code) => ("fenced", code_label(*code)),
        },
        CommitOutcome::Failed { reason } => match reason {
            CommitFailure::Rejected(code) => ("failed", code_label(*code)),
            CommitFailure::AttemptsExhausted { .. } => ("failed", "attempts_exhausted".into()),
            CommitFailure::TimedOut => ("failed", "timed_out".into()),
            CommitFailure::WouldMoveBackwards { .. } => ("failed", "would_move_backwards".into()),
            CommitFailure::MemberGone => ("failed", "member_gone".into()),
            CommitFailure::Fatal(_) => ("failed", "fatal".into()),
        },
    }
}

fn state_label(state: StateKind) -> &'static str {
    match state {
        StateKind::AwaitingJoin => "awaiting_join",
        StateKind::AwaitingSync => "awaiting_sync",
        StateKind::Stable => "stable",
        StateKind::Revoking => "revoking",
        StateKind::Leaving => "leaving",
        StateKind::Left => "left",
        StateKind::Failed => "failed",
        StateKind::Manual => "manual",
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
