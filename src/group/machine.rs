//! The membership state machine for the classic group protocol, without IO or clock.
//!
//! ```text
//!                    coordinator known
//!   AwaitingJoin ───────────────────────► (JoinGroup in flight) ──NONE──► AwaitingSync
//!     ▲   ▲  MEMBER_ID_REQUIRED: resend at once with the id                   │ SyncGroup NONE
//!     │   │                                                                  ▼
//!     │   └──── revoke window over ◄── Revoking(G) ◄── heartbeat RIP ──── Stable(G)
//!     │            (commits with G,                                          │
//!     │             revoke handler)                                          │
//!     └──── ILLEGAL_GENERATION / UNKNOWN_MEMBER_ID (partitions lost) ◄───────┘
//!   any ──leave──► Leaving ──► Left          any ──fatal code──► Failed
//! ```
//!
//! The coordinator is tracked beside the state: losing it (NOT_COORDINATOR, connection loss)
//! keeps the member id and generation, and the member carries on once it is found again.
//! Every request captures the generation it was built with; an answer for an older generation
//! is never applied (T32). Commits are judged per partition against the lease's ownership
//! streak before anything is sent (DESIGN section 4) and never pipelined behind a JoinGroup or
//! SyncGroup.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::{
    ApiKey, JoinGroupResponse, OffsetCommitResponse, OffsetFetchResponse, SyncGroupResponse,
};

use super::assignor::{decode_assignment, Assignor, GroupMember, RebalanceProtocol, Subscription};
use super::build::{self, str_bytes, PROTOCOL_TYPE};
use super::commit_queue::{CommitQueue, CommitReaction, Gate, SentCommit};
use super::config::GroupConfig;
use super::events::*;
use super::lookup_queue::{LookupQueue, LookupReaction};
use super::ownership::Ownership;
use super::partition_counts::PartitionCounts;
use super::requests::*;
use super::snapshot::{GroupCounters, GroupSnapshot, TransitionView};
use super::timers::{TimerKind, Timers};
use super::types::*;
use crate::protocol::error_code::codes::*;
use crate::protocol::error_code::KafkaCode;
use crate::protocol::versions::NegotiatedVersions;

/// Where the member is in the protocol; each variant carries what it waits with.
#[derive(Debug, Clone)]
enum State {
    /// Needs a JoinGroup (`join` is the one in flight, if sent).
    AwaitingJoin {
        reason: RejoinReason,
        join: Option<RequestId>,
    },
    /// JoinGroup answered; our SyncGroup is in flight.
    AwaitingSync {
        generation: Generation,
        leader: bool,
        protocol: String,
        sync: RequestId,
    },
    /// Member of `generation` with the assignment in `ownership`.
    Stable {
        generation: Generation,
        leader: bool,
        protocol: String,
    },
    /// A rebalance was announced; commits still go out with `generation` until the revoke
    /// handler is done (or `deadline`), then JoinGroup.
    Revoking {
        generation: Generation,
        leader: bool,
        protocol: String,
        reason: RejoinReason,
        deadline: Instant,
        handler_done: bool,
    },
    /// LeaveGroup to send or in flight.
    Leaving {
        reason: LeaveReason,
        request: Option<RequestId>,
    },
    Left {
        reason: LeaveReason,
    },
    Failed(GroupError),
}

impl State {
    fn kind(&self) -> StateKind {
        match self {
            State::AwaitingJoin { .. } => StateKind::AwaitingJoin,
            State::AwaitingSync { .. } => StateKind::AwaitingSync,
            State::Stable { .. } => StateKind::Stable,
            State::Revoking { .. } => StateKind::Revoking,
            State::Leaving { .. } => StateKind::Leaving,
            State::Left { .. } => StateKind::Left,
            State::Failed(_) => StateKind::Failed,
        }
    }

    /// The generation commits are stamped with in this state, if any.
    fn member_generation(&self) -> Option<&Generation> {
        match self {
            State::Stable { generation, .. } | State::Revoking { generation, .. } => Some(generation),
            _ => None,
        }
    }

    /// How the commit gate sees a member in this state holding `ownership`.
    fn commit_gate<'a>(&'a self, ownership: Option<&'a Ownership>) -> Gate<'a> {
        match self {
            State::AwaitingJoin { .. } | State::AwaitingSync { .. } => Gate::Closed,
            State::Leaving { .. } | State::Left { .. } => Gate::Shut(CommitFailure::MemberGone),
            State::Failed(e) => Gate::Shut(CommitFailure::Fatal(e.to_string())),
            State::Stable { generation, .. } | State::Revoking { generation, .. } => {
                let ownership = ownership.filter(|o| &o.generation == generation);
                let revoking = matches!(self, State::Revoking { .. });
                Gate::Open {
                    generation,
                    owned: ownership.map(|o| &o.partitions),
                    released: ownership.filter(|_| revoking).map(|o| &o.released),
                }
            }
        }
    }
}

#[derive(Debug, Clone)]
enum CoordinatorState {
    Unknown,
    Finding(RequestId),
    Known { node_id: i32, versions: NegotiatedVersions },
}

#[derive(Debug, Clone)]
enum InFlight {
    FindCoordinator,
    Join,
    Sync { sent: Generation },
    Heartbeat { sent: Generation },
    Leave,
    Commit(SentCommit),
    Fetch,
}

impl InFlight {
    fn api_name(&self) -> &'static str {
        match self {
            InFlight::FindCoordinator => "FindCoordinator",
            InFlight::Join => "JoinGroup",
            InFlight::Sync { .. } => "SyncGroup",
            InFlight::Heartbeat { .. } => "Heartbeat",
            InFlight::Leave => "LeaveGroup",
            InFlight::Commit(_) => "OffsetCommit",
            InFlight::Fetch => "OffsetFetch",
        }
    }
}

#[derive(Debug, Clone)]
struct Transition {
    from: StateKind,
    to: StateKind,
    reason: String,
    at: Instant,
}

/// The sans-IO membership state machine of one group member.
///
/// Inputs are `handle_*` calls and commands (`commit`, `revoke_done`, `leave`, ...); outputs are
/// drained with [`poll_request`](Self::poll_request), [`poll_event`](Self::poll_event) and
/// [`poll_timeout`](Self::poll_timeout) after every input. Time is always passed in.
#[derive(Debug)]
pub struct GroupMachine {
    config: GroupConfig,
    subscription: Vec<String>,
    partition_counts: PartitionCounts,
    /// A JoinGroup answer that made this member leader, held until the partition counts of the
    /// subscribed topics it did not know are answered (or cannot be).
    leader_join: Option<(RequestId, JoinGroupResponse)>,
    state: State,
    coordinator: CoordinatorState,
    coordinator_attempts: u32,
    member_id: MemberId,
    ownership: Option<Ownership>,
    in_flight: BTreeMap<RequestId, InFlight>,
    outbox: VecDeque<OutgoingRequest>,
    events: VecDeque<(Instant, GroupEvent)>,
    next_id: u64,
    /// The machine's own deadlines; the queues and the revoke window hold theirs.
    timers: Timers,
    join_attempts: u32,
    commits: CommitQueue,
    lookups: LookupQueue,
    counters: GroupCounters,
    last_transition: Option<Transition>,
    rebalance_started: Option<Instant>,
    rejoin_after_poll: bool,
}

impl GroupMachine {
    /// A member of `config.group_id` subscribed to `topics`. Call [`validate`](GroupConfig::validate)
    /// first; the machine trusts its configuration.
    pub fn new(config: GroupConfig, topics: impl IntoIterator<Item = impl Into<String>>, now: Instant) -> Self {
        let mut subscription: Vec<String> = topics.into_iter().map(Into::into).collect();
        subscription.sort();
        subscription.dedup();
        let mut machine = GroupMachine {
            config,
            subscription,
            partition_counts: PartitionCounts::default(),
            leader_join: None,
            state: State::AwaitingJoin { reason: RejoinReason::Initial, join: None },
            coordinator: CoordinatorState::Unknown,
            coordinator_attempts: 0,
            member_id: MemberId::unknown(),
            ownership: None,
            in_flight: BTreeMap::new(),
            outbox: VecDeque::new(),
            events: VecDeque::new(),
            next_id: 0,
            timers: Timers::default(),
            join_attempts: 0,
            commits: CommitQueue::default(),
            lookups: LookupQueue::default(),
            counters: GroupCounters::default(),
            last_transition: None,
            rebalance_started: Some(now),
            rejoin_after_poll: false,
        };
        machine.progress(now);
        machine
    }

    fn span(&self) -> tracing::Span {
        let generation = self.current_generation().map(|g| g.id.0).unwrap_or(-1);
        tracing::debug_span!("group", group = %self.config.group_id, member_id = %self.member_id, generation)
    }

    // ---- outputs ----

    /// The next request to send.
    pub fn poll_request(&mut self) -> Option<OutgoingRequest> {
        self.outbox.pop_front()
    }

    /// The next event, with the time it happened.
    pub fn poll_event(&mut self) -> Option<(Instant, GroupEvent)> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.armed_timers().next_due().map(|(_, at)| at)
    }

    /// The timers that can fire now: the machine's own, less those its state holds back, and
    /// those of the queues and the revoke window.
    fn armed_timers(&self) -> Timers {
        let mut timers = self.timers;
        self.commits.add_timers(&mut timers);
        self.lookups.add_timers(&mut timers);
        if let State::Revoking { deadline, .. } = &self.state {
            timers.set(TimerKind::RevokeDeadline, *deadline);
        }
        if self.is_heartbeating() {
            // Only while one can be sent: a due heartbeat waiting for an answer or for the
            // coordinator would keep this timer in the past (the driver would spin).
            let heartbeat_in_flight = self.in_flight.values().any(|f| matches!(f, InFlight::Heartbeat { .. }));
            if !self.coordinator_ready() || heartbeat_in_flight {
                timers.clear(TimerKind::Heartbeat);
            }
        } else {
            timers.clear(TimerKind::Heartbeat);
            timers.clear(TimerKind::Session);
        }
        if self.partition_counts.is_asking() || !matches!(self.state, State::Stable { .. }) {
            timers.clear(TimerKind::MetadataRefresh);
        }
        timers
    }

    // ---- queries ----

    /// The generation the member holds now (Stable or Revoking), if any.
    pub fn current_generation(&self) -> Option<&Generation> {
        self.state.member_generation()
    }

    pub fn state(&self) -> StateKind {
        self.state.kind()
    }

    /// Partitions owned now with their `owned_since`: those of the current generation, and
    /// under the cooperative protocol also those of the last generation while a rebalance runs
    /// (KIP-429: nothing is revoked before the new assignment says so).
    pub fn assignment(&self) -> Vec<OwnedPartition> {
        self.held().map(Ownership::owned_partitions).unwrap_or_default()
    }

    /// A lease for records of `partition` fetched now, up to `next_offset`; `None` unless the
    /// partition is owned now (see [`assignment`](Self::assignment)). During a cooperative
    /// rebalance the lease carries the last generation; its commit is deferred until the new
    /// generation is known and then re-stamped (partition kept) or fenced (partition revoked).
    pub fn lease(&self, partition: &TopicPartition, next_offset: i64) -> Option<Lease> {
        self.held()?.lease(partition, next_offset)
    }

    /// The ownership the member holds now, if any.
    fn held(&self) -> Option<&Ownership> {
        let ownership = self.ownership.as_ref()?;
        match &self.state {
            State::Stable { generation, .. } | State::Revoking { generation, .. } => {
                (&ownership.generation == generation).then_some(ownership)
            }
            State::AwaitingJoin { .. } | State::AwaitingSync { .. } => {
                (ownership.cooperative && ownership.generation.member_id == self.member_id).then_some(ownership)
            }
            _ => None,
        }
    }

    /// Whether a generation that selected `selected` runs the cooperative protocol (KIP-429).
    ///
    /// Java negotiates one `RebalanceProtocol` all configured assignors support. Here: when
    /// every configured assignor is cooperative, always; when the configuration mixes eager and
    /// cooperative assignors (the first step of the KIP-429 upgrade), eager until the group
    /// selected a cooperative assignor, which every member then supports. Should a later
    /// generation select an eager one, partitions kept through that rebalance are revoked at its
    /// SyncGroup, and commits of them are fenced from then on: at-least-once holds.
    fn is_cooperative(&self, selected: Option<&str>) -> bool {
        let cooperative = |a: &std::sync::Arc<dyn Assignor>| a.rebalance_protocol() == RebalanceProtocol::Cooperative;
        self.config.assignors.iter().all(cooperative)
            || selected.is_some_and(|name| self.config.assignors.iter().any(|a| a.name() == name && cooperative(a)))
    }

    // ---- commands ----

    /// Partition counts per topic, used when this member leads the assignment.
    pub fn set_partition_counts(&mut self, counts: impl IntoIterator<Item = (String, i32)>) {
        self.partition_counts.extend(counts);
    }

    /// Changes the subscription; a member of a generation rejoins.
    pub fn subscribe(&mut self, topics: impl IntoIterator<Item = impl Into<String>>, now: Instant) {
        let mut topics: Vec<String> = topics.into_iter().map(Into::into).collect();
        topics.sort();
        topics.dedup();
        if topics != self.subscription {
            self.subscription = topics;
            self.request_rejoin(RejoinReason::SubscriptionChanged, now);
        }
        self.progress(now);
    }

    /// Commits the leases' offsets. The outcome per partition arrives as
    /// [`GroupEvent::CommitCompleted`] with the returned id.
    pub fn commit(&mut self, leases: Vec<Lease>, now: Instant) -> CommitId {
        let _span = self.span().entered();
        self.next_id += 1;
        let id = CommitId(self.next_id);
        self.commits.push(id, leases, now + self.config.commit_timeout);
        self.progress(now);
        id
    }

    /// Looks up committed offsets; the answer arrives as [`GroupEvent::CommittedOffsets`].
    ///
    /// Every failed attempt is retried with a growing backoff (reported as
    /// [`GroupEvent::CommittedOffsetsDelayed`]) until the answer comes or the commit timeout
    /// (`default.api.timeout.ms`) passes; only an authorization error ends it sooner. A lookup
    /// that ends without offsets is [`GroupEvent::CommittedOffsetsFailed`], never "nothing
    /// committed".
    pub fn fetch_committed(&mut self, partitions: Vec<TopicPartition>, now: Instant) -> OffsetFetchId {
        self.next_id += 1;
        let id = OffsetFetchId(self.next_id);
        let deadline = now + self.config.commit_timeout;
        self.lookups.push(id, partitions, now, deadline);
        self.progress(now);
        id
    }

    /// The application finished its revoke handler: JoinGroup may go once commits are done.
    pub fn revoke_done(&mut self, now: Instant) {
        if let State::Revoking { handler_done, .. } = &mut self.state {
            *handler_done = true;
        }
        self.progress(now);
    }

    /// The application polled: resets the `max.poll.interval.ms` timer, and rejoins if that
    /// timer had made the member leave.
    pub fn record_poll(&mut self, now: Instant) {
        self.timers.set(TimerKind::MaxPollInterval, now + self.config.rebalance_timeout);
        if self.rejoin_after_poll {
            if let State::Left { .. } = self.state {
                self.rejoin_after_poll = false;
                self.set_state(
                    State::AwaitingJoin { reason: RejoinReason::Initial, join: None },
                    "polled again after leaving",
                    now,
                );
            }
        }
        self.progress(now);
    }

    /// Leaves the group. Dynamic members send LeaveGroup; static members (KIP-345) do not, so a
    /// restart within the session timeout causes no rebalance.
    pub fn leave(&mut self, reason: impl Into<LeaveReason>, now: Instant) {
        let _span = self.span().entered();
        if matches!(self.state, State::Leaving { .. } | State::Left { .. } | State::Failed(_)) {
            return;
        }
        let reason = reason.into();
        let text = reason.to_string();
        let sends_leave = self.config.group_instance_id.is_none() && !self.member_id.is_unknown();
        let next = if sends_leave { State::Leaving { reason, request: None } } else { State::Left { reason } };
        self.set_state(next, &text, now);
        let completed = self.commits.fail_waiting(CommitFailure::MemberGone, &mut self.counters);
        self.report(completed, now);
        if matches!(self.state, State::Left { .. }) {
            self.finish_leaving(now);
        } else if self.versions().is_some() && !self.coordinator_ready() {
            // The connection holds our parked JoinGroup or SyncGroup: the LeaveGroup goes on a
            // new one, at once.
            self.coordinator_lost("LeaveGroup must not wait behind the parked JoinGroup or SyncGroup", now);
            self.timers.clear(TimerKind::Retry);
        }
        self.progress(now);
    }

    // ---- inputs ----

    /// The coordinator was found and connected to.
    pub fn handle_coordinator_found(&mut self, now: Instant, id: RequestId, found: CoordinatorFound) {
        let _span = self.span().entered();
        let awaited = matches!(self.coordinator, CoordinatorState::Finding(finding) if finding == id);
        if self.in_flight.remove(&id).is_none() || !awaited {
            return;
        }
        tracing::info!(node = found.node_id, "coordinator found");
        self.coordinator = CoordinatorState::Known { node_id: found.node_id, versions: found.versions };
        self.coordinator_attempts = 0;
        self.timers.clear(TimerKind::Retry);
        self.events.push_back((now, GroupEvent::Coordinator { node_id: Some(found.node_id), reason: "found".into() }));
        if self.is_heartbeating() {
            // A fresh connection: give the session a fresh start too.
            self.timers.set(TimerKind::Session, now + self.config.session_timeout);
            self.timers.set(TimerKind::Heartbeat, now);
        }
        self.progress(now);
    }

    /// Partition counts arrived for the Metadata request `id`; a topic it asked for that is not
    /// in `counts` does not exist. A leader that waited for them assigns now, and one whose
    /// last assignment used other counts rejoins, so partitions and topics added later are
    /// assigned (Java's metadata snapshot check).
    pub fn handle_metadata(&mut self, now: Instant, id: RequestId, counts: BTreeMap<String, i32>) {
        let _span = self.span().entered();
        if !self.partition_counts.answered(id, &counts) {
            return;
        }
        self.timers.set(TimerKind::MetadataRefresh, now + self.config.metadata_max_age);
        self.resume_leader_join(now);
        if self.partition_counts.changed_since_led() {
            tracing::info!("partition counts of the group's topics changed since this member assigned them");
            self.request_rejoin(RejoinReason::PartitionCountsChanged, now);
        }
        self.progress(now);
    }

    /// A request got no usable answer.
    pub fn handle_request_failed(&mut self, now: Instant, id: RequestId, failure: RequestFailure) {
        let _span = self.span().entered();
        if self.partition_counts.failed(id) {
            tracing::warn!(%failure, "partition counts unavailable; the counts known are used");
            self.timers.set(TimerKind::MetadataRefresh, now + self.config.retry_backoff_max);
            self.resume_leader_join(now);
            return self.progress(now);
        }
        let Some(kind) = self.in_flight.remove(&id) else {
            // Given up with its connection already (see `coordinator_lost`).
            return;
        };
        tracing::debug!(request = id.0, %failure, "request failed");
        match (kind, failure) {
            (InFlight::FindCoordinator, failure) => {
                self.coordinator = CoordinatorState::Unknown;
                self.coordinator_attempts += 1;
                if failure == RequestFailure::Broker(KafkaCode(GROUP_AUTHORIZATION_FAILED)) {
                    self.fail(self.rejected("FindCoordinator", GROUP_AUTHORIZATION_FAILED), now);
                } else {
                    self.timers.set(TimerKind::Retry, now + self.config.backoff(self.coordinator_attempts));
                }
            }
            // An error answer that did not decode still carries its code: react to the code
            // exactly as to a well-formed answer (librdkafka's mock sends such answers). One
            // that says NONE is no answer: a SyncGroup read as success would install an empty
            // assignment.
            (InFlight::Join, RequestFailure::Broker(code)) if code.is_error() => {
                let answer = JoinGroupResponse::default()
                    .with_error_code(code.0)
                    .with_member_id(str_bytes(self.member_id.as_str()));
                self.on_join(now, id, answer);
            }
            (InFlight::Sync { sent }, RequestFailure::Broker(code)) if code.is_error() => {
                self.on_sync(now, id, sent, SyncGroupResponse::default().with_error_code(code.0));
            }
            (InFlight::Heartbeat { sent }, RequestFailure::Broker(code)) if code.is_error() => {
                self.on_heartbeat(now, sent, code.0)
            }
            (kind, failure) => {
                let why = format!("{} {failure}", kind.api_name());
                self.coordinator_lost(&why, now);
                self.request_lost(id, kind, &why, now);
            }
        }
        self.progress(now);
    }

    /// What a coordinator request that will get no answer leaves to do.
    fn request_lost(&mut self, id: RequestId, kind: InFlight, why: &str, now: Instant) {
        match kind {
            // Answered by `handle_coordinator_found` or failed, never given up.
            InFlight::FindCoordinator => {}
            InFlight::Join => {
                // The broker may still hold the join; a second one from the same member id
                // replaces it (GM 527-544), so joining again with the same id is safe.
                if let State::AwaitingJoin { join, .. } = &mut self.state {
                    if *join == Some(id) {
                        *join = None;
                    }
                }
            }
            InFlight::Sync { sent } => {
                if self.is_current(&sent) || matches!(self.state, State::AwaitingSync { sync, .. } if sync == id) {
                    self.rejoin(RejoinReason::Retry(why.to_owned()), now);
                }
            }
            InFlight::Heartbeat { .. } => {}
            InFlight::Leave => self.finish_leaving(now),
            InFlight::Commit(commit) => self.commits.on_lost(now, commit, why, &self.config),
            InFlight::Fetch => {
                let delayed = self.lookups.on_lost(now, why, &self.config, &mut self.counters);
                self.report(delayed, now);
            }
        }
    }

    /// A response arrived for request `id`.
    pub fn handle_response(&mut self, now: Instant, id: RequestId, response: GroupResponse) {
        let _span = self.span().entered();
        let Some(kind) = self.in_flight.remove(&id) else {
            tracing::debug!(request = id.0, "response for a request no longer tracked");
            return;
        };
        match (kind, response) {
            (InFlight::Join, GroupResponse::JoinGroup(r)) => self.on_join(now, id, r),
            (InFlight::Sync { sent }, GroupResponse::SyncGroup(r)) => self.on_sync(now, id, sent, r),
            (InFlight::Heartbeat { sent }, GroupResponse::Heartbeat(r)) => self.on_heartbeat(now, sent, r.error_code),
            (InFlight::Leave, GroupResponse::LeaveGroup(r)) => {
                if r.error_code != 0 {
                    tracing::info!(code = %KafkaCode(r.error_code), "LeaveGroup answered with an error (best effort)");
                }
                self.finish_leaving(now);
            }
            (InFlight::Commit(commit), GroupResponse::OffsetCommit(r)) => self.on_commit(now, commit, r),
            (InFlight::Fetch, GroupResponse::OffsetFetch(r)) => self.on_lookup(now, r),
            (kind, other) => {
                tracing::warn!(?kind, response = ?std::mem::discriminant(&other), "response does not match its request");
            }
        }
        self.progress(now);
    }

    /// Time passed: heartbeats, session expiry, backoffs, deadlines.
    pub fn handle_timeout(&mut self, now: Instant) {
        let _span = self.span().entered();
        if self.timers.get(TimerKind::MaxPollInterval).is_some_and(|d| d <= now) {
            self.timers.clear(TimerKind::MaxPollInterval);
            tracing::warn!(
                "max.poll.interval.ms ({:?}) passed without a poll: leaving the group so its partitions move on",
                self.config.rebalance_timeout
            );
            self.leave(LeaveReason::MaxPollIntervalExceeded, now);
            self.rejoin_after_poll = true;
        }
        if self.is_heartbeating() && self.timers.get(TimerKind::Session).is_some_and(|d| d <= now) {
            // No successful heartbeat for a whole session: assume the coordinator is gone
            // (Java marks it unknown); member id and generation are kept.
            self.timers.set(TimerKind::Session, now + self.config.session_timeout);
            self.coordinator_lost("no successful heartbeat within session.timeout.ms", now);
        }
        if let State::Revoking { deadline, .. } = &self.state {
            if *deadline <= now {
                tracing::warn!("revoke window closed before the revoke handler and commits finished");
                self.leave_revoking(now);
            }
        }
        self.progress(now);
    }

    // ---- snapshot ----

    /// The debug view (DESIGN section 5).
    pub fn snapshot(&self, now: Instant) -> GroupSnapshot {
        let (protocol, leader) = match &self.state {
            State::Stable { protocol, leader, .. }
            | State::Revoking { protocol, leader, .. }
            | State::AwaitingSync { protocol, leader, .. } => (Some(protocol.clone()), *leader),
            _ => (None, false),
        };
        let in_flight_commits = self
            .commits
            .in_flight()
            .and_then(|id| self.in_flight.get(&id))
            .and_then(|f| match f {
                InFlight::Commit(commit) => Some(self.commits.in_flight_view(commit)),
                _ => None,
            })
            .into_iter()
            .collect();
        let offset_lookups = self.lookups.views(now);
        let deferred_commits = self.commits.deferred_views();
        let pending_rejoin = match &self.state {
            State::AwaitingJoin { reason, .. } | State::Revoking { reason, .. } => Some(reason.clone()),
            _ => None,
        };
        GroupSnapshot {
            group_id: self.config.group_id.clone(),
            group_instance_id: self.config.group_instance_id.clone(),
            state: self.state.kind(),
            generation: self.current_generation().cloned(),
            member_id: self.member_id.clone(),
            is_leader: leader,
            protocol,
            coordinator: match &self.coordinator {
                CoordinatorState::Known { node_id, .. } => Some(*node_id),
                _ => None,
            },
            assignment: self.assignment(),
            in_flight_commits,
            deferred_commits,
            offset_lookups,
            last_transition: self.last_transition.as_ref().map(|t| TransitionView {
                from: t.from,
                to: t.to,
                reason: t.reason.clone(),
                ms_ago: now.saturating_duration_since(t.at).as_millis() as u64,
            }),
            pending_rejoin,
            next_timer: self
                .armed_timers()
                .next_due()
                .map(|(kind, at)| (kind.name(), at.saturating_duration_since(now).as_millis() as u64)),
            counters: self.counters.clone(),
        }
    }

    // ---- internals: driving ----

    fn next_request_id(&mut self) -> RequestId {
        self.next_id += 1;
        RequestId(self.next_id)
    }

    fn send(&mut self, body: GroupRequest, version: i16, timeout: Duration, kind: InFlight) -> RequestId {
        debug_assert!(
            matches!(kind, InFlight::FindCoordinator) || self.coordinator_ready(),
            "{} behind the member's own JoinGroup or SyncGroup",
            body.api_name()
        );
        let id = self.next_request_id();
        tracing::trace!(request = id.0, api = body.api_name(), version, "send");
        self.in_flight.insert(id, kind);
        self.outbox.push_back(OutgoingRequest { id, version, timeout, body });
        id
    }

    fn versions(&self) -> Option<&NegotiatedVersions> {
        match &self.coordinator {
            CoordinatorState::Known { versions, .. } => Some(versions),
            _ => None,
        }
    }

    /// The one gate of the coordinator connection: a coordinator is known, and the member's
    /// own JoinGroup or SyncGroup is not in flight on its connection. Kafka serves a
    /// connection's requests one at a time and parks a JoinGroup or SyncGroup until the
    /// rebalance completes, so whatever queued behind it would be served only then: a commit
    /// judged with a stale generation (DESIGN section 4), an OffsetFetch timing out and taking
    /// the join down with its connection, a LeaveGroup arriving once the group has moved on with
    /// this member in it. Every request but FindCoordinator waits for this gate.
    fn coordinator_ready(&self) -> bool {
        self.versions().is_some()
            && !self.in_flight.values().any(|f| matches!(f, InFlight::Join | InFlight::Sync { .. }))
    }

    fn version(&mut self, api: ApiKey, now: Instant) -> Option<i16> {
        let versions = self.versions()?;
        match versions.get(api) {
            Ok(v) => Some(v),
            Err(_) => {
                let name = match api {
                    ApiKey::JoinGroup => "JoinGroup",
                    ApiKey::SyncGroup => "SyncGroup",
                    ApiKey::Heartbeat => "Heartbeat",
                    ApiKey::LeaveGroup => "LeaveGroup",
                    ApiKey::OffsetCommit => "OffsetCommit",
                    _ => "OffsetFetch",
                };
                self.fail(GroupError::UnsupportedApi { api: name }, now);
                None
            }
        }
    }

    fn is_heartbeating(&self) -> bool {
        matches!(self.state, State::Stable { .. } | State::Revoking { .. })
    }

    fn is_current(&self, sent: &Generation) -> bool {
        self.current_generation() == Some(sent)
            || matches!(&self.state, State::AwaitingSync { generation, .. } if generation == sent)
    }

    fn needs_coordinator(&self) -> bool {
        !matches!(self.state, State::Leaving { .. } | State::Left { .. } | State::Failed(_))
    }

    /// Runs everything that can go now. Called after every input.
    fn progress(&mut self, now: Instant) {
        // A backoff that ran out is no timer any more (poll_timeout must not stay in the past).
        if !self.timers.is_running(TimerKind::Retry, now) {
            self.timers.clear(TimerKind::Retry);
        }
        self.commits.end_expired_backoff(now);
        self.lookups.end_expired_backoff(now);
        if let State::Failed(error) = &self.state {
            // Commands given after the failure get its answer at once, and leave no timer.
            let error = error.clone();
            self.fail_queued(&error, now);
            return;
        }
        let leave_unsent = matches!(self.state, State::Leaving { request: None, .. });
        if matches!(self.coordinator, CoordinatorState::Unknown)
            && (self.needs_coordinator() || leave_unsent || !self.commits.is_empty() || !self.lookups.is_empty())
            && !self.timers.is_running(TimerKind::Retry, now)
        {
            let id = self.send(
                GroupRequest::FindCoordinator { group_id: self.config.group_id.clone() },
                0,
                self.config.request_timeout,
                InFlight::FindCoordinator,
            );
            self.counters.coordinator_lookups += 1;
            self.coordinator = CoordinatorState::Finding(id);
        }
        if let State::Revoking { handler_done: true, .. } = self.state {
            // Report answered commits (and send queued ones) first, so the join is judged on
            // what is really still outstanding.
            self.drive_commits(now);
            // Commits the broker told to wait for the next generation cannot hold the join.
            if !self.commits.holds_join() {
                self.leave_revoking(now);
            }
        }
        if let State::AwaitingJoin { join: None, .. } = self.state {
            if self.coordinator_ready()
                && !self.timers.is_running(TimerKind::Retry, now)
                && self.commits.in_flight().is_none()
            {
                self.send_join(now);
            }
        }
        if let State::Leaving { request: None, .. } = self.state {
            match self.coordinator {
                // LeaveGroup is best effort (Java sends it once): without a coordinator to tell,
                // the session timeout removes the member.
                CoordinatorState::Unknown => self.finish_leaving(now),
                CoordinatorState::Finding(_) => {}
                CoordinatorState::Known { .. } => {
                    if self.coordinator_ready() && self.commits.in_flight().is_none() {
                        self.send_leave(now);
                    }
                }
            }
        }
        self.drive_heartbeat(now);
        self.drive_metadata_refresh(now);
        self.drive_commits(now);
        self.drive_lookups(now);
    }

    fn set_state(&mut self, next: State, reason: &str, now: Instant) {
        let from = self.state.kind();
        let to = next.kind();
        self.state = next;
        if from != to {
            tracing::info!(%from, %to, reason, "group state changed");
        } else {
            tracing::debug!(state = %to, reason, "group state refreshed");
        }
        let generation = self.current_generation().map(|g| g.id);
        self.last_transition = Some(Transition { from, to, reason: reason.to_owned(), at: now });
        self.events.push_back((now, GroupEvent::Transition { from, to, reason: reason.to_owned(), generation }));
    }

    fn fail(&mut self, error: GroupError, now: Instant) {
        tracing::error!(%error, "group member stopped");
        self.set_state(State::Failed(error.clone()), &error.to_string(), now);
        self.fail_queued(&error, now);
        self.events.push_back((now, GroupEvent::Fatal(error)));
    }

    /// Answers every queued commit and offset lookup with the fatal `error`.
    fn fail_queued(&mut self, error: &GroupError, now: Instant) {
        let completed = self.commits.fail_all(CommitFailure::Fatal(error.to_string()), &mut self.counters);
        self.report(completed, now);
        let ended = self.lookups.fail_all(&error.to_string());
        self.report(ended, now);
    }

    /// Gives up the coordinator and its connection (the driver closes it when it looks the
    /// coordinator up again, as Java's `markCoordinatorUnknown` disconnects). Every request
    /// still in flight went out on that connection: none of them is waited for (a parked
    /// JoinGroup would be, until the join timeout), each is handled as lost now, and their
    /// answers or failures, should any still come, are no longer tracked, so nothing of the old
    /// connection can touch the next one.
    fn coordinator_lost(&mut self, reason: &str, now: Instant) {
        if let CoordinatorState::Known { node_id, .. } = self.coordinator {
            tracing::info!(node = node_id, reason, "coordinator lost; member id and generation kept");
            self.events.push_back((now, GroupEvent::Coordinator { node_id: None, reason: reason.to_owned() }));
            self.coordinator = CoordinatorState::Unknown;
            self.timers.set(TimerKind::Retry, now + self.config.retry_backoff);
            let why = format!("given up with the coordinator connection ({reason})");
            for (id, kind) in std::mem::take(&mut self.in_flight) {
                self.request_lost(id, kind, &why, now);
            }
        }
    }

    /// From Stable: open the revoke window. Elsewhere: rejoin when possible.
    fn request_rejoin(&mut self, reason: RejoinReason, now: Instant) {
        match self.state.clone() {
            State::Stable { generation, leader, protocol } => {
                // Cooperative (KIP-429): nothing is revoked up front; the member keeps its
                // partitions, rejoins at once, and gives up only what the new assignment leaves
                // out. The event still tells the application a rebalance started.
                let cooperative = self.ownership.as_ref().is_some_and(|o| o.cooperative);
                let partitions: Vec<TopicPartition> = match &self.ownership {
                    Some(o) if !cooperative => o.partitions.keys().cloned().collect(),
                    _ => Vec::new(),
                };
                let handler_done = partitions.is_empty();
                self.events.push_back((
                    now,
                    GroupEvent::RevokeRequested { generation: generation.id, partitions, reason: reason.clone() },
                ));
                let text = reason.to_string();
                self.open_revoke_window((generation, leader, protocol), reason, handler_done, &text, now);
            }
            State::AwaitingSync { .. } => self.rejoin(reason, now),
            _ => {}
        }
    }

    /// A rebalance starts for the member of `stable`'s generation: commits still go out with it
    /// until the revoke handler is done (or the revoke timeout passes), then JoinGroup.
    fn open_revoke_window(
        &mut self,
        (generation, leader, protocol): (Generation, bool, String),
        reason: RejoinReason,
        handler_done: bool,
        why: &str,
        now: Instant,
    ) {
        self.counters.rebalances += 1;
        self.rebalance_started = Some(now);
        let deadline = now + self.config.revoke_timeout;
        self.set_state(State::Revoking { generation, leader, protocol, reason, deadline, handler_done }, why, now);
    }

    fn leave_revoking(&mut self, now: Instant) {
        if let State::Revoking { reason, .. } = self.state.clone() {
            if let Some(ownership) = &mut self.ownership {
                // From the second-round JoinGroup on, the new owner may take them over.
                ownership.released.clear();
            }
            self.set_state(State::AwaitingJoin { reason, join: None }, "revoke window done", now);
        }
    }

    /// Back to AwaitingJoin keeping member id and ownership (used for continuity).
    fn rejoin(&mut self, reason: RejoinReason, now: Instant) {
        if matches!(self.state, State::Leaving { .. } | State::Left { .. } | State::Failed(_)) {
            return;
        }
        if self.rebalance_started.is_none() {
            self.counters.rebalances += 1;
            self.rebalance_started = Some(now);
        }
        let text = reason.to_string();
        self.set_state(State::AwaitingJoin { reason, join: None }, &text, now);
    }

    /// The group moved on without us: partitions are lost, the generation forgotten, and (for
    /// UNKNOWN_MEMBER_ID) the member id too.
    fn reset(&mut self, reason: RejoinReason, now: Instant) {
        self.lose_ownership(&reason, now);
        if reason == RejoinReason::UnknownMember {
            self.member_id = MemberId::unknown();
        }
        self.rejoin(reason, now);
    }

    /// Drops the ownership, reporting its partitions lost.
    fn lose_ownership(&mut self, reason: &RejoinReason, now: Instant) {
        if let Some(ownership) = self.ownership.take() {
            if !ownership.partitions.is_empty() {
                self.commits.end_streaks(ownership.partitions.keys());
                self.events.push_back((
                    now,
                    GroupEvent::Lost {
                        partitions: ownership.partitions.into_keys().collect(),
                        reason: reason.to_string(),
                    },
                ));
            }
        }
    }

    fn send_join(&mut self, now: Instant) {
        let Some(version) = self.version(ApiKey::JoinGroup, now) else {
            return;
        };
        let State::AwaitingJoin { reason, .. } = self.state.clone() else {
            return;
        };
        // Eager protocols revoked everything before joining; cooperative ones (KIP-429) tell the
        // leader what the member still owns, so its assignor can keep it in place.
        let owned_partitions = self.held().map(|o| o.partitions.keys().cloned().collect()).unwrap_or_default();
        let subscription = Subscription {
            topics: self.subscription.clone(),
            owned_partitions,
            generation: self.ownership.as_ref().map(|o| o.generation.id).unwrap_or(GenerationId::NONE),
            rack: None,
            user_data: None,
        }
        .encode();
        let request =
            build::join_group(&self.config, self.member_id.as_str(), &subscription, &reason.to_string(), version);
        self.counters.joins_sent += 1;
        self.join_attempts += 1;
        let id = self.send(GroupRequest::JoinGroup(request), version, self.config.join_timeout(), InFlight::Join);
        if let State::AwaitingJoin { join, .. } = &mut self.state {
            *join = Some(id);
        }
    }

    fn on_join(&mut self, now: Instant, id: RequestId, r: JoinGroupResponse) {
        if !matches!(self.state, State::AwaitingJoin { join: Some(j), .. } if j == id) {
            tracing::debug!("JoinGroup answer for a join we no longer wait for");
            return;
        }
        let reason_of = |state: &State| match state {
            State::AwaitingJoin { reason, .. } => reason.clone(),
            _ => RejoinReason::Initial,
        };
        let code = r.error_code;
        match code {
            0 => self.joined(now, r, false),
            MEMBER_ID_REQUIRED => {
                // KIP-394: keep the id and send the second join at once; never repeat an
                // empty-id join (it would leave an orphan pending member, T14).
                self.member_id = MemberId::new(r.member_id.as_str());
                self.set_state(
                    State::AwaitingJoin { reason: RejoinReason::MemberIdRequired, join: None },
                    "member id assigned",
                    now,
                );
            }
            UNKNOWN_MEMBER_ID => {
                // Partitions still held through a cooperative rebalance belong to no member
                // id any more.
                if self.held().is_some() {
                    self.lose_ownership(&RejoinReason::UnknownMember, now);
                }
                self.member_id = MemberId::unknown();
                self.set_state(
                    State::AwaitingJoin { reason: RejoinReason::UnknownMember, join: None },
                    "member id unknown",
                    now,
                );
            }
            REBALANCE_IN_PROGRESS | ILLEGAL_GENERATION => {
                let reason = reason_of(&self.state);
                self.set_state(State::AwaitingJoin { reason, join: None }, "JoinGroup asked to rejoin", now);
            }
            COORDINATOR_LOAD_IN_PROGRESS => {
                self.timers.set(TimerKind::Retry, now + self.config.backoff(self.join_attempts));
                let reason = RejoinReason::Retry("coordinator loading".into());
                self.set_state(State::AwaitingJoin { reason, join: None }, "coordinator loading", now);
            }
            COORDINATOR_NOT_AVAILABLE | NOT_COORDINATOR => {
                self.coordinator_lost(&format!("JoinGroup: {}", KafkaCode(code)), now);
                let reason = reason_of(&self.state);
                self.set_state(State::AwaitingJoin { reason, join: None }, "coordinator moved", now);
            }
            _ => self.fail(self.rejected("JoinGroup", code), now),
        }
    }

    /// The fatal error of `api` answered with `code`; FENCED_INSTANCE_ID names the instance id
    /// another process took over (KIP-345).
    fn rejected(&self, api: &'static str, code: i16) -> GroupError {
        match code {
            FENCED_INSTANCE_ID => {
                GroupError::FencedInstanceId { instance_id: self.config.group_instance_id.clone().unwrap_or_default() }
            }
            _ => GroupError::Rejected { api, code: KafkaCode(code), context: self.config.group_id.clone() },
        }
    }

    /// `counts_asked`: the partition counts this join's leader lacked were asked for already.
    fn joined(&mut self, now: Instant, r: JoinGroupResponse, counts_asked: bool) {
        if let Some(protocol_type) = &r.protocol_type {
            if protocol_type.as_str() != PROTOCOL_TYPE {
                return self.fail(
                    GroupError::InconsistentProtocol { expected: PROTOCOL_TYPE.into(), got: protocol_type.to_string() },
                    now,
                );
            }
        }
        let protocol = r.protocol_name.as_deref().unwrap_or_default().to_owned();
        let Some(assignor) = self.config.assignors.iter().find(|a| a.name() == protocol).cloned() else {
            let expected = self.config.assignors.iter().map(|a| a.name().to_owned()).collect::<Vec<_>>().join(",");
            return self.fail(GroupError::InconsistentProtocol { expected, got: protocol }, now);
        };
        let generation =
            Generation { id: GenerationId(r.generation_id), member_id: MemberId::new(r.member_id.as_str()) };
        self.member_id = generation.member_id.clone();
        self.join_attempts = 0;
        let leader = r.leader.as_str() == r.member_id.as_str();
        let assignments = if leader && !r.skip_assignment {
            let members: Vec<GroupMember> = r
                .members
                .iter()
                .map(|m| GroupMember {
                    member_id: m.member_id.to_string(),
                    group_instance_id: m.group_instance_id.as_ref().map(|s| s.to_string()),
                    subscription: Subscription::decode(&m.metadata).unwrap_or_else(|e| {
                        tracing::warn!(member = %m.member_id, error = %e, "undecodable subscription; assigning nothing");
                        Subscription::default()
                    }),
                })
                .collect();
            let topics: BTreeSet<String> = members.iter().flat_map(|m| m.subscription.topics.iter().cloned()).collect();
            let unknown = self.partition_counts.unknown(&topics);
            if let (false, false, State::AwaitingJoin { join: Some(join), .. }) =
                (unknown.is_empty(), counts_asked, &self.state)
            {
                tracing::info!(topics = ?unknown, "leading the assignment: asking for partition counts first");
                self.leader_join = Some((*join, r));
                // The broker drops a member that neither syncs nor heartbeats within its session
                // timeout of the join: half of it is left for the SyncGroup.
                let timeout = self.config.request_timeout.min(self.config.session_timeout / 2);
                self.request_metadata(unknown, timeout);
                return;
            }
            tracing::info!(members = members.len(), protocol = %protocol, "leading the assignment");
            self.partition_counts.lead(assignor.as_ref(), &members, &topics)
        } else {
            self.partition_counts.follow();
            Vec::new()
        };
        let Some(version) = self.version(ApiKey::SyncGroup, now) else {
            // The coordinator was lost while this join was answered: join again (same member
            // id) once it is found, rather than wait for a join that is no longer in flight.
            if let State::AwaitingJoin { join, .. } = &mut self.state {
                *join = None;
            }
            return;
        };
        let request = build::sync_group(&self.config, &generation, &protocol, assignments, version);
        self.counters.syncs_sent += 1;
        let sync = self.send(
            GroupRequest::SyncGroup(request),
            version,
            self.config.join_timeout(),
            InFlight::Sync { sent: generation.clone() },
        );
        let reason = format!("joined generation {} as {}", generation.id, if leader { "leader" } else { "follower" });
        self.set_state(State::AwaitingSync { generation, leader, protocol, sync }, &reason, now);
    }

    fn on_sync(&mut self, now: Instant, id: RequestId, sent: Generation, r: SyncGroupResponse) {
        let State::AwaitingSync { generation, leader, protocol, sync } = self.state.clone() else {
            self.stale(now, "SyncGroup", sent);
            return;
        };
        if generation != sent || sync != id {
            self.stale(now, "SyncGroup", sent);
            return;
        }
        match r.error_code {
            0 => {}
            REBALANCE_IN_PROGRESS => return self.rejoin(RejoinReason::RebalanceInProgress, now),
            UNKNOWN_MEMBER_ID => return self.reset(RejoinReason::UnknownMember, now),
            ILLEGAL_GENERATION => return self.reset(RejoinReason::IllegalGeneration, now),
            COORDINATOR_NOT_AVAILABLE | NOT_COORDINATOR => {
                self.coordinator_lost("SyncGroup: coordinator moved", now);
                return self.rejoin(RejoinReason::Retry("coordinator moved during SyncGroup".into()), now);
            }
            UNKNOWN_SERVER_ERROR => {
                // Deliberate deviation (T25b): Java stops; a failed store is transient, so back
                // off and rejoin.
                self.timers.set(TimerKind::Retry, now + self.config.backoff(1));
                return self.rejoin(RejoinReason::Retry("SyncGroup UNKNOWN_SERVER_ERROR".into()), now);
            }
            COORDINATOR_LOAD_IN_PROGRESS => {
                // Retriable by definition (Kafka 3.6 maps loading to REBALANCE_IN_PROGRESS for
                // SyncGroup, but other coordinators may not): back off and rejoin, never stop.
                self.timers.set(TimerKind::Retry, now + self.config.backoff(1));
                return self.rejoin(RejoinReason::Retry("SyncGroup COORDINATOR_LOAD_IN_PROGRESS".into()), now);
            }
            code => return self.fail(self.rejected("SyncGroup", code), now),
        }
        for (field, got) in [(PROTOCOL_TYPE, &r.protocol_type), (protocol.as_str(), &r.protocol_name)] {
            if let Some(got) = got {
                if got.as_str() != field {
                    return self
                        .fail(GroupError::InconsistentProtocol { expected: field.into(), got: got.to_string() }, now);
                }
            }
        }
        let partitions = match decode_assignment(&r.assignment) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "undecodable assignment; rejoining");
                self.timers.set(TimerKind::Retry, now + self.config.backoff(1));
                return self.rejoin(RejoinReason::Retry("undecodable assignment".into()), now);
            }
        };
        self.install_assignment(now, generation, leader, protocol, partitions);
    }

    fn install_assignment(
        &mut self,
        now: Instant,
        generation: Generation,
        leader: bool,
        protocol: String,
        partitions: Vec<TopicPartition>,
    ) {
        let cooperative = self.is_cooperative(Some(&protocol));
        let (ownership, change) =
            Ownership::assign(self.ownership.take(), generation.clone(), &partitions, cooperative);
        self.commits.end_streaks(&change.revoked);
        // A streak that broke drops its commit floor too.
        self.commits.keep_streaks(&ownership.partitions);
        let second_round = cooperative && !change.given_up.is_empty();
        let owned = ownership.owned_partitions();
        let assigned = format!("assigned {} partitions in generation {}", owned.len(), generation.id);
        self.ownership = Some(ownership);
        if let Some(started) = self.rebalance_started.take() {
            let ms = now.saturating_duration_since(started).as_millis() as u64;
            self.counters.last_rebalance_ms = Some(ms);
            self.counters.max_rebalance_ms = self.counters.max_rebalance_ms.max(ms);
            self.counters.total_rebalance_ms += ms;
        }
        if second_round {
            // Revoke handlers run before the new assignment is announced (Java's order).
            self.events.push_back((
                now,
                GroupEvent::RevokeRequested {
                    generation: generation.id,
                    partitions: change.given_up,
                    reason: RejoinReason::PartitionsRevoked,
                },
            ));
        }
        self.events.push_back((
            now,
            GroupEvent::Assigned {
                generation: generation.clone(),
                partitions: owned,
                added: change.added,
                revoked: change.revoked,
            },
        ));
        self.timers.set(TimerKind::Session, now + self.config.session_timeout);
        self.timers.set(TimerKind::Heartbeat, now + self.config.heartbeat_interval);
        if second_round {
            // KIP-429's second round: what we gave up can go to its new owner only in a later
            // generation. Until we rejoin, this generation is still ours and the revoked
            // partitions belong to nobody in it, so a revoke window lets the work done on them
            // commit (the batch in progress, the revoke handler's commit) instead of being fenced.
            let reason = RejoinReason::PartitionsRevoked;
            let text = format!("{assigned}; {reason}");
            self.open_revoke_window((generation, leader, protocol), reason, false, &text, now);
        } else {
            self.set_state(State::Stable { generation, leader, protocol }, &assigned, now);
        }
    }

    fn stale(&mut self, now: Instant, api: &'static str, sent: Generation) {
        let current = self.current_generation().cloned();
        tracing::debug!(api, %sent, current = ?current, "response of an older generation not applied");
        self.counters.stale_responses += 1;
        self.events.push_back((now, GroupEvent::StaleResponse { api, sent, current }));
    }

    /// A member of a generation refreshes, every `metadata.max.age.ms`, the partition counts it
    /// assigns or would assign as leader: of every member's subscription when it led the last
    /// assignment, else of its own.
    fn drive_metadata_refresh(&mut self, now: Instant) {
        if self.partition_counts.is_asking() || !matches!(self.state, State::Stable { .. }) {
            return;
        }
        let Some(at) = self.timers.get(TimerKind::MetadataRefresh) else {
            self.timers.set(TimerKind::MetadataRefresh, now + self.config.metadata_max_age);
            return;
        };
        if at <= now {
            let topics = self.partition_counts.refresh_topics(&self.subscription);
            self.request_metadata(topics, self.config.request_timeout);
        }
    }

    fn request_metadata(&mut self, topics: Vec<String>, timeout: Duration) {
        let id = self.next_request_id();
        self.partition_counts.ask(id, topics.clone());
        self.outbox.push_back(OutgoingRequest { id, version: 0, timeout, body: GroupRequest::Metadata { topics } });
    }

    /// Assigns with the JoinGroup answer held for partition counts, unless the member has
    /// moved on since (a rejoin, leaving).
    fn resume_leader_join(&mut self, now: Instant) {
        if let Some((join, r)) = self.leader_join.take() {
            if matches!(self.state, State::AwaitingJoin { join: Some(j), .. } if j == join) {
                self.joined(now, r, true);
            }
        }
    }

    fn drive_heartbeat(&mut self, now: Instant) {
        if !self.is_heartbeating() || self.timers.is_running(TimerKind::Heartbeat, now) {
            return;
        }
        if self.in_flight.values().any(|f| matches!(f, InFlight::Heartbeat { .. })) {
            return;
        }
        let Some(generation) = self.current_generation().cloned() else {
            return;
        };
        if !self.coordinator_ready() {
            return;
        }
        let Some(version) = self.version(ApiKey::Heartbeat, now) else {
            return;
        };
        let request = build::heartbeat(&self.config, &generation, version);
        self.counters.heartbeats_sent += 1;
        self.timers.set(TimerKind::Heartbeat, now + self.config.heartbeat_interval);
        self.send(
            GroupRequest::Heartbeat(request),
            version,
            self.config.request_timeout,
            InFlight::Heartbeat { sent: generation },
        );
    }

    fn on_heartbeat(&mut self, now: Instant, sent: Generation, code: i16) {
        if !self.is_current(&sent) {
            // T32: an answer about a generation we already left behind changes nothing.
            self.stale(now, "Heartbeat", sent);
            return;
        }
        match code {
            0 => self.timers.set(TimerKind::Session, now + self.config.session_timeout),
            REBALANCE_IN_PROGRESS => {
                // Counts as a successful heartbeat: the broker re-armed our session.
                self.timers.set(TimerKind::Session, now + self.config.session_timeout);
                if matches!(self.state, State::Stable { .. }) {
                    self.request_rejoin(RejoinReason::RebalanceInProgress, now);
                }
            }
            ILLEGAL_GENERATION => self.reset(RejoinReason::IllegalGeneration, now),
            UNKNOWN_MEMBER_ID => self.reset(RejoinReason::UnknownMember, now),
            COORDINATOR_NOT_AVAILABLE | NOT_COORDINATOR => self.coordinator_lost("Heartbeat: coordinator moved", now),
            FENCED_INSTANCE_ID | GROUP_AUTHORIZATION_FAILED => self.fail(self.rejected("Heartbeat", code), now),
            other => {
                tracing::warn!(code = %KafkaCode(other), "heartbeat error; retrying");
                self.timers.set(TimerKind::Heartbeat, now + self.config.retry_backoff);
            }
        }
    }

    fn send_leave(&mut self, now: Instant) {
        let Some(version) = self.version(ApiKey::LeaveGroup, now) else {
            return;
        };
        let State::Leaving { reason, .. } = self.state.clone() else {
            return;
        };
        let request = build::leave_group(&self.config, self.member_id.as_str(), &reason.to_string(), version);
        let id = self.send(GroupRequest::LeaveGroup(request), version, self.config.request_timeout, InFlight::Leave);
        if let State::Leaving { request, .. } = &mut self.state {
            *request = Some(id);
        }
    }

    fn finish_leaving(&mut self, now: Instant) {
        let reason = match &self.state {
            State::Leaving { reason, .. } | State::Left { reason } => reason.clone(),
            _ => return,
        };
        self.ownership = None;
        self.commits.clear_streaks();
        self.member_id =
            if self.config.group_instance_id.is_some() { self.member_id.clone() } else { MemberId::unknown() };
        if !matches!(self.state, State::Left { .. }) {
            self.set_state(State::Left { reason: reason.clone() }, "left the group", now);
        }
        self.events.push_back((now, GroupEvent::Left { reason }));
    }

    // ---- commits ----

    fn drive_commits(&mut self, now: Instant) {
        let ready = self.coordinator_ready();
        let gate = self.state.commit_gate(self.ownership.as_ref());
        let (completed, send) = self.commits.drive(now, &gate, ready, &self.config, &mut self.counters);
        self.report(completed, now);
        if let Some(commit) = send {
            self.send_commit(now, commit);
        }
    }

    fn send_commit(&mut self, now: Instant, commit: SentCommit) {
        let Some(version) = self.version(ApiKey::OffsetCommit, now) else {
            return;
        };
        let offsets = commit.leases.iter().map(|(lease, _)| (&lease.partition, lease.next_offset));
        let request = build::offset_commit(&self.config, &commit.generation, offsets, version);
        self.counters.commits_sent += 1;
        tracing::debug!(partitions = commit.leases.len(), generation = commit.generation.id.0, "sending OffsetCommit");
        let id = self.send(
            GroupRequest::OffsetCommit(request),
            version,
            self.config.request_timeout,
            InFlight::Commit(commit),
        );
        self.commits.sent(id);
    }

    fn on_commit(&mut self, now: Instant, commit: SentCommit, r: OffsetCommitResponse) {
        let still_current = self.is_current(&commit.generation);
        let reactions = self.commits.on_response(now, commit, &r, still_current, &self.config, &mut self.counters);
        for reaction in reactions {
            match reaction {
                CommitReaction::Fail(code) => return self.fail(self.rejected("OffsetCommit", code), now),
                CommitReaction::CoordinatorLost => self.coordinator_lost("OffsetCommit: coordinator moved", now),
                CommitReaction::Reset(reason) => self.reset(reason, now),
                CommitReaction::Rejoin(reason) => self.request_rejoin(reason, now),
            }
        }
    }

    /// Reports what the queues finished.
    fn report(&mut self, events: impl IntoIterator<Item = GroupEvent>, now: Instant) {
        self.events.extend(events.into_iter().map(|event| (now, event)));
    }

    // ---- committed offsets ----

    fn drive_lookups(&mut self, now: Instant) {
        let (ended, ask) = self.lookups.drive(now, self.coordinator_ready());
        self.report(ended, now);
        let Some(partitions) = ask else {
            return;
        };
        let Some(version) = self.version(ApiKey::OffsetFetch, now) else {
            return;
        };
        let request = build::offset_fetch(&self.config, &partitions, version);
        let id = self.send(GroupRequest::OffsetFetch(request), version, self.config.request_timeout, InFlight::Fetch);
        self.lookups.sent(id);
    }

    fn on_lookup(&mut self, now: Instant, r: OffsetFetchResponse) {
        for reaction in self.lookups.on_response(now, &r, &self.config, &mut self.counters) {
            match reaction {
                LookupReaction::Report(event) => self.events.push_back((now, event)),
                LookupReaction::CoordinatorLost(reason) => self.coordinator_lost(&reason, now),
                LookupReaction::Fail(code) => self.fail(self.rejected("OffsetFetch", code), now),
            }
        }
    }
}

/// Lets tests and the simulator build subscription metadata the way the machine does.
pub fn subscription_metadata(topics: &[&str]) -> Bytes {
    Subscription {
        topics: topics.iter().map(|t| t.to_string()).collect(),
        generation: GenerationId::NONE,
        ..Default::default()
    }
    .encode()
}
