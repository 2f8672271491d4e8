//! The membership state machine, without IO or clock: the classic group protocol drawn below,
//! and KIP-848's consumer protocol (consumer.rs) on the same states, commit gate and queues.
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
//! What the code of an answer makes the member do is looked up in one table (reactions.rs);
//! the handlers carry it out and read the rest of the answer.
//! The coordinator is tracked beside the state: losing it (NOT_COORDINATOR, connection loss)
//! keeps the member id and generation, and the member carries on once it is found again.
//! Every request captures the generation it was built with; an answer for an older generation
//! is never applied. Commits are judged per partition against the lease's ownership streak
//! before anything is sent and never pipelined behind a JoinGroup or
//! SyncGroup.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::{
    ApiKey, ConsumerGroupHeartbeatResponse, JoinGroupResponse, LeaveGroupResponse, OffsetCommitResponse,
    OffsetFetchResponse, SyncGroupResponse,
};

use super::assignor::{Assignor, GroupMember, RebalanceProtocol};
use super::build::{self, str_bytes, PROTOCOL_TYPE};
use super::commit_queue::{CommitQueue, CommitReaction, Gate, SentCommit};
use super::config::GroupConfig;
use super::events::*;
use super::lookup_queue::{LookupQueue, LookupReaction};
use super::ownership::Ownership;
use super::partition_counts::PartitionCounts;
use super::reactions::{self, Reaction, Standing};
use super::requests::*;
use super::snapshot::{GroupCounters, GroupSnapshot, TransitionView};
use super::subscription::{Subscribed, TopicSubscription};
use super::timers::{TimerKind, Timers};
use super::types::*;
use crate::protocol::consumer_protocol::{decode_assignment, Subscription};
use crate::protocol::error_code::codes::*;
use crate::protocol::error_code::KafkaCode;
use crate::protocol::versions::NegotiatedVersions;

mod consumer;
mod join;
mod progress;
mod transitions;

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
        /// Cooperative partitions of topics no longer subscribed, announced revoked: given up
        /// when the window closes, so the JoinGroup no longer claims them (Java's
        /// `onJoinPrepare` under the cooperative protocol).
        unsubscribed: Vec<TopicPartition>,
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
    /// No membership (the application assigns partitions): commits go out stamped with
    /// `generation`, which is [`Generation::none`].
    Manual {
        generation: Generation,
    },
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
            State::Manual { .. } => StateKind::Manual,
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
            State::Manual { generation } => Gate::Unmanaged { generation },
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
    ConsumerHeartbeat(consumer::SentHeartbeat),
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
            InFlight::ConsumerHeartbeat(_) => "ConsumerGroupHeartbeat",
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
    subscription: Subscribed,
    /// The topics the last JoinGroup named: a generation joined with others than the
    /// subscription names now rejoins (Java's `joinedSubscription` check).
    joined_with: Vec<String>,
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
    /// KIP-848's consumer protocol: what its member keeps (`None`: the classic protocol).
    consumer: Option<consumer::ConsumerMembership>,
}

impl GroupMachine {
    /// A member of `config.group_id` subscribed to `topics`. Call [`validate`](GroupConfig::validate)
    /// first; the machine trusts its configuration.
    pub fn new(config: GroupConfig, topics: impl IntoIterator<Item = impl Into<String>>, now: Instant) -> Self {
        Self::with_subscription(config, TopicSubscription::Topics(topics.into_iter().map(Into::into).collect()), now)
    }

    /// A member of `config.group_id` with `subscription`. A pattern subscription lists the
    /// cluster's topics ([`GroupRequest::ListTopics`]) before it joins.
    pub fn with_subscription(config: GroupConfig, subscription: TopicSubscription, now: Instant) -> Self {
        let joining = State::AwaitingJoin { reason: RejoinReason::Initial, join: None };
        let mut machine = Self::in_state(config, subscription, joining, Some(now));
        machine.progress(now);
        machine
    }

    fn in_state(
        config: GroupConfig,
        subscription: TopicSubscription,
        state: State,
        rebalance_started: Option<Instant>,
    ) -> Self {
        let consumer = consumer::ConsumerMembership::new(&config);
        let member_id = match &config.protocol {
            crate::group::config::GroupProtocol::Consumer { member_id: Some(id), .. } => MemberId::new(id),
            _ => MemberId::unknown(),
        };
        GroupMachine {
            config,
            subscription: Subscribed::new(subscription),
            joined_with: Vec::new(),
            partition_counts: PartitionCounts::default(),
            leader_join: None,
            state,
            coordinator: CoordinatorState::Unknown,
            coordinator_attempts: 0,
            member_id,
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
            rebalance_started,
            rejoin_after_poll: false,
            consumer,
        }
    }

    /// A consumer of partitions the application assigns, without membership (Java's
    /// `assign`): no JoinGroup, Heartbeat or LeaveGroup; the coordinator is looked up only for
    /// commits and offset lookups. Commits go out stamped with no generation and no member id,
    /// which Kafka accepts only while the group has no members; what it answers otherwise is
    /// reported per partition, never acted on. The leases committed are not judged against
    /// an assignment: the application owns the partitions it names.
    pub fn manual(mut config: GroupConfig) -> Self {
        // Java's simple consumer sends no instance id: with one, Kafka would look for a member.
        config.group_instance_id = None;
        let nothing = TopicSubscription::Topics(Vec::new());
        Self::in_state(config, nothing, State::Manual { generation: Generation::none() }, None)
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
            let heartbeat_in_flight = self.in_flight.values().any(|f| matches!(f, InFlight::Heartbeat { .. }))
                || self.consumer_heartbeat_in_flight();
            if !self.coordinator_ready() || heartbeat_in_flight {
                timers.clear(TimerKind::Heartbeat);
            }
        } else {
            timers.clear(TimerKind::Heartbeat);
            timers.clear(TimerKind::Session);
        }
        if !self.metadata_refresh_armed() {
            timers.clear(TimerKind::MetadataRefresh);
        }
        if let Some(at) = self.topic_id_lookup_timer() {
            timers.set(TimerKind::MetadataRefresh, at);
        }
        timers
    }

    // ---- queries ----

    /// The generation the member holds now (Stable or Revoking), if any.
    pub fn current_generation(&self) -> Option<&Generation> {
        self.state.member_generation()
    }

    /// `group.id` (empty for a manually assigned consumer without one).
    pub fn group_id(&self) -> &str {
        &self.config.group_id
    }

    /// The member id the coordinator gave (empty before the first join).
    pub fn member_id(&self) -> &MemberId {
        &self.member_id
    }

    /// Counters since the machine was created (also in [`GroupMachine::snapshot`]).
    pub fn counters(&self) -> &GroupCounters {
        &self.counters
    }

    /// The state's name.
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

    /// Changes the subscription to `topics`, as [`subscribe_to`](Self::subscribe_to).
    pub fn subscribe(&mut self, topics: impl IntoIterator<Item = impl Into<String>>, now: Instant) {
        self.subscribe_to(TopicSubscription::Topics(topics.into_iter().map(Into::into).collect()), now);
    }

    /// Changes the subscription (Java: `subscribe` called again). A member of a generation
    /// whose JoinGroup named other topics rejoins: under an eager assignor it revokes
    /// everything first, under a cooperative one (KIP-429) the partitions of topics it no
    /// longer subscribes to. A new pattern is matched against a fresh listing of the cluster's
    /// topics first. The same subscription again changes nothing.
    pub fn subscribe_to(&mut self, subscription: TopicSubscription, now: Instant) {
        let next = Subscribed::new(subscription);
        if self.subscription.differs(&next) && self.is_consumer_protocol() {
            // The broker matches a pattern itself (KIP-848); the next heartbeat carries it.
            self.subscription = next;
            self.request_rejoin(RejoinReason::SubscriptionChanged, now);
        } else if self.subscription.differs(&next) {
            self.subscription = next;
            if self.subscription.awaits_listing() {
                // Listed at once, not at the next refresh.
                self.timers.clear(TimerKind::MetadataRefresh);
            }
            self.rejoin_if_subscription_outdated(now);
        }
        self.progress(now);
    }

    /// Commits the leases' offsets. The outcome per partition arrives as
    /// [`GroupEvent::CommitCompleted`] with the returned id. Several leases of one partition
    /// (batches read one after another) count as its furthest one, of its newest ownership
    /// streak: a request names each partition once, as Kafka keeps the last entry of a
    /// partition, and a lower offset sent again after a higher one would move it back.
    pub fn commit(&mut self, leases: Vec<Lease>, now: Instant) -> CommitId {
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
        if matches!(self.state, State::Manual { .. }) {
            // No membership to give up: a slow application holds no one's partitions.
            return;
        }
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
        if matches!(self.state, State::Leaving { .. } | State::Left { .. } | State::Failed(_)) {
            return;
        }
        let reason = reason.into();
        let text = reason.to_string();
        // KIP-848 members leave with a heartbeat, static ones too (epoch -2 keeps their place).
        let sends_leave = match self.consumer {
            Some(_) => self.current_generation().is_some(),
            None => self.config.group_instance_id.is_none() && !self.member_id.is_unknown(),
        };
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
        if !self.partition_counts.answered(id, &counts) {
            return;
        }
        if self.subscription.awaits_listing() {
            // An answer for topics, asked before a pattern was set: the listing goes now.
            self.timers.clear(TimerKind::MetadataRefresh);
        } else {
            self.timers.set(TimerKind::MetadataRefresh, now + self.config.metadata_max_age);
        }
        self.resume_leader_join(now);
        if self.partition_counts.changed_since_led() {
            tracing::info!("partition counts of the group's topics changed since this member assigned them");
            self.request_rejoin(RejoinReason::PartitionCountsChanged, now);
        }
        self.progress(now);
    }

    /// The cluster's topics, answering the [`GroupRequest::ListTopics`] request `id`. A pattern
    /// subscription is matched against them (internal topics left out under
    /// `exclude.internal.topics`); a member whose matched topics changed rejoins with them. The
    /// counts are the partition counts of every topic, as [`handle_metadata`](Self::handle_metadata)'s.
    pub fn handle_topic_listing(&mut self, now: Instant, id: RequestId, listing: Vec<ListedTopic>) {
        if !self.partition_counts.listed(id, &listing) {
            return;
        }
        self.timers.set(TimerKind::MetadataRefresh, now + self.config.metadata_max_age);
        if self.subscription.match_listing(&listing, self.config.exclude_internal_topics) {
            tracing::info!(topics = ?self.subscription.topics(), "the topics the pattern matches changed");
        }
        self.rejoin_if_subscription_outdated(now);
        if self.partition_counts.changed_since_led() {
            tracing::info!("partition counts of the group's topics changed since this member assigned them");
            self.request_rejoin(RejoinReason::PartitionCountsChanged, now);
        }
        self.progress(now);
    }

    /// A request got no usable answer.
    pub fn handle_request_failed(&mut self, now: Instant, id: RequestId, failure: RequestFailure) {
        if self.topic_id_lookup_failed(now, id) {
            // Never "the topic does not exist": the partitions wait for their names.
            tracing::warn!(%failure, "topic id lookup failed; retrying");
            return self.progress(now);
        }
        if self.partition_counts.failed(id) {
            // Never "no topic matches": a pattern keeps the topics it matched.
            tracing::warn!(%failure, "metadata unavailable; the partition counts and topics known are used");
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
                let code = match failure {
                    RequestFailure::Broker(code) => Some(code.0),
                    _ => None,
                };
                match code.map(|code| (code, reactions::reaction(ApiKey::FindCoordinator, code))) {
                    Some((code, Reaction::Fatal)) => self.fail(self.rejected("FindCoordinator", code), now),
                    // Backoff, the table's other reaction, and no answer at all: a lookup can
                    // only go again or stop.
                    _ => self.timers.set(TimerKind::Retry, now + self.config.backoff(self.coordinator_attempts)),
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
            (InFlight::ConsumerHeartbeat(sent), RequestFailure::Broker(code)) if code.is_error() => {
                let answer =
                    kafka_protocol::messages::ConsumerGroupHeartbeatResponse::default().with_error_code(code.0);
                self.on_consumer_heartbeat(now, id, sent, answer);
            }
            (kind, failure) => {
                let why = format!("{} {failure}", kind.api_name());
                self.coordinator_lost(&why, now);
                self.request_lost(id, kind, &why, now);
            }
        }
        self.progress(now);
    }

    /// A response arrived for request `id`.
    pub fn handle_response(&mut self, now: Instant, id: RequestId, response: GroupResponse) {
        let Some(kind) = self.in_flight.remove(&id) else {
            tracing::debug!(request = id.0, "response for a request no longer tracked");
            return;
        };
        match (kind, response) {
            (InFlight::Join, GroupResponse::JoinGroup(r)) => self.on_join(now, id, r),
            (InFlight::Sync { sent }, GroupResponse::SyncGroup(r)) => self.on_sync(now, id, sent, r),
            (InFlight::Heartbeat { sent }, GroupResponse::Heartbeat(r)) => self.on_heartbeat(now, sent, r.error_code),
            (InFlight::ConsumerHeartbeat(sent), GroupResponse::ConsumerGroupHeartbeat(r)) => {
                self.on_consumer_heartbeat(now, id, sent, r)
            }
            (InFlight::Leave, GroupResponse::LeaveGroup(LeaveGroupResponse { error_code, .. }))
            | (
                InFlight::Leave,
                GroupResponse::ConsumerGroupHeartbeat(ConsumerGroupHeartbeatResponse { error_code, .. }),
            ) => {
                // Best effort: whatever the code, the leave is over (the table has Apply and
                // Ignore rows only).
                if reactions::reaction(ApiKey::LeaveGroup, error_code) != Reaction::Apply {
                    tracing::info!(code = %KafkaCode(error_code), "leave answered with an error (best effort)");
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

    /// The debug view: an owned picture of the member's state, generation, assignment,
    /// commits and counters.
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
            subscription: self.subscription.topics().to_vec(),
            pattern: self.subscription.pattern().map(|p| p.as_str().to_owned()),
            group_instance_id: self.config.group_instance_id.clone(),
            group_protocol: self.config.protocol.name(),
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

    // ---- internals ----

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
    /// judged with a stale generation, an OffsetFetch timing out and taking
    /// the join down with its connection, a LeaveGroup arriving once the group has moved on with
    /// this member in it. Every request but FindCoordinator waits for this gate.
    fn coordinator_ready(&self) -> bool {
        self.versions().is_some()
            && !self.in_flight.values().any(|f| matches!(f, InFlight::Join | InFlight::Sync { .. }))
    }

    fn is_heartbeating(&self) -> bool {
        matches!(self.state, State::Stable { .. } | State::Revoking { .. })
    }

    fn is_current(&self, sent: &Generation) -> bool {
        self.current_generation() == Some(sent)
            || matches!(&self.state, State::AwaitingSync { generation, .. } if generation == sent)
    }

    fn needs_coordinator(&self) -> bool {
        !matches!(self.state, State::Leaving { .. } | State::Left { .. } | State::Failed(_) | State::Manual { .. })
    }

    fn stale(&mut self, now: Instant, api: &'static str, sent: Generation) {
        let current = self.current_generation().cloned();
        tracing::debug!(api, %sent, current = ?current, "response of an older generation not applied");
        self.counters.stale_responses += 1;
        self.events.push_back((now, GroupEvent::StaleResponse { api, sent, current }));
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
