//! KIP-848's consumer group protocol: one request, ConsumerGroupHeartbeat, joins (member epoch
//! 0), heartbeats, acknowledges assignments and leaves (-1, or -2 for a static member). The
//! broker assigns by topic id and moves each member through member epochs at its own pace.
//!
//! The member epoch is the [`Generation`] the shared parts see: leases carry it, the commit gate
//! stamps commits with it (OffsetCommit v9), and an ownership streak goes on through epochs as
//! long as the partition stays assigned. Partitions the broker takes away go through the revoke
//! window: the broker keeps the member's epoch until it reports them released (KIP-848's
//! UNREVOKED_PARTITIONS), so commits of their finished batches still go out with it; then the
//! member reports what it owns and the broker moves it on.
//!
//! An OffsetCommit never goes out while a heartbeat is in flight: the broker serves one
//! connection's requests in order, and the heartbeat may move the member's epoch, so a commit
//! sent behind it with the epoch of before would be refused (STALE_MEMBER_EPOCH on Kafka 4.0).

use uuid::Uuid;

use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions as OwnedTopic;
use kafka_protocol::messages::{ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse};
use kafka_protocol::protocol::StrBytes;

use super::*;
use crate::group::config::GroupProtocol;

/// The member epoch a member leaves with (KIP-848).
const LEAVE_EPOCH: i32 = -1;
/// The member epoch a static member leaves with: it keeps its place for a restart.
const STATIC_LEAVE_EPOCH: i32 = -2;

/// What the member subscribes to, as the broker reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum BrokerSubscription {
    Topics(Vec<String>),
    /// KIP-848's server-side regex (RE2J): the broker matches topic names.
    Regex(String),
}

/// The fields of a heartbeat beyond member and epoch; `None` is sent as null, "unchanged since
/// the last request the broker answered" (an incremental heartbeat).
#[derive(Debug, Clone, Default)]
pub(super) struct HeartbeatFields {
    /// Rack, rebalance timeout and server assignor go too.
    full: bool,
    subscription: Option<BrokerSubscription>,
    owned: Option<BTreeSet<TopicPartition>>,
}

/// A heartbeat in flight.
#[derive(Debug, Clone)]
pub(super) struct SentHeartbeat {
    /// The member epoch it carries (0: a join).
    pub(super) epoch: i32,
    fields: HeartbeatFields,
}

/// What the broker last asked the member to own.
#[derive(Debug, Clone)]
struct Target {
    epoch: GenerationId,
    partitions: BTreeMap<Uuid, BTreeSet<i32>>,
}

/// The lookup of topic names for the ids of an assignment.
#[derive(Debug, Clone, Copy)]
enum NameLookup {
    Idle,
    Asking(RequestId),
    BackingOff(Instant),
}

/// What a member of the consumer protocol keeps beside the shared state.
#[derive(Debug)]
pub(super) struct ConsumerMembership {
    remote_assignor: Option<String>,
    /// The broker's heartbeat interval (`group.consumer.heartbeat.interval.ms`) from its last
    /// answer; the configured one until then.
    heartbeat_interval: Duration,
    target: Option<Target>,
    topic_names: BTreeMap<Uuid, String>,
    lookup: NameLookup,
    name_lookups: u32,
    /// What the broker knows of the member from the requests it answered; `None`: the next
    /// heartbeat is a full one (after joining, an error, a new coordinator).
    acknowledged: Option<(BrokerSubscription, BTreeSet<TopicPartition>)>,
}

impl ConsumerMembership {
    pub(super) fn new(config: &GroupConfig) -> Option<Self> {
        let GroupProtocol::Consumer { remote_assignor, .. } = &config.protocol else {
            return None;
        };
        Some(ConsumerMembership {
            remote_assignor: remote_assignor.clone(),
            heartbeat_interval: config.heartbeat_interval,
            target: None,
            topic_names: BTreeMap::new(),
            lookup: NameLookup::Idle,
            name_lookups: 0,
            acknowledged: None,
        })
    }

    /// The name the snapshot shows as the member's protocol.
    pub(super) fn assignor_name(&self) -> String {
        match &self.remote_assignor {
            Some(name) => format!("consumer ({name})"),
            None => "consumer".into(),
        }
    }

    fn topic_id(&self, topic: &str) -> Option<Uuid> {
        self.topic_names.iter().find(|(_, name)| name.as_str() == topic).map(|(id, _)| *id)
    }
}

impl GroupMachine {
    /// Whether the member speaks KIP-848's consumer protocol.
    pub(super) fn is_consumer_protocol(&self) -> bool {
        self.consumer.is_some()
    }

    /// A ConsumerGroupHeartbeat is in flight: its answer may move the member epoch.
    pub(super) fn consumer_heartbeat_in_flight(&self) -> bool {
        self.in_flight.values().any(|f| matches!(f, InFlight::ConsumerHeartbeat(_)))
    }

    fn broker_subscription(&self) -> BrokerSubscription {
        match self.subscription.pattern() {
            Some(pattern) => BrokerSubscription::Regex(pattern.as_str().to_owned()),
            None => BrokerSubscription::Topics(self.subscription.topics().to_vec()),
        }
    }

    fn owned_now(&self) -> BTreeSet<TopicPartition> {
        self.ownership.as_ref().map(|o| o.partitions.keys().cloned().collect()).unwrap_or_default()
    }

    /// Joins (epoch 0) with a full request.
    pub(super) fn send_consumer_join(&mut self, now: Instant) {
        let Some(consumer) = &mut self.consumer else { return };
        consumer.acknowledged = None;
        consumer.target = None;
        let fields = HeartbeatFields {
            full: true,
            subscription: Some(self.broker_subscription()),
            owned: Some(BTreeSet::new()),
        };
        self.counters.joins_sent += 1;
        self.join_attempts += 1;
        if let Some(id) = self.send_consumer_heartbeat(0, fields, now) {
            if let State::AwaitingJoin { join, .. } = &mut self.state {
                *join = Some(id);
            }
        }
    }

    /// A heartbeat of the member's epoch when one is due: at the broker's interval, or at once
    /// after the member reconciled an assignment or changed its subscription.
    pub(super) fn drive_consumer_heartbeat(&mut self, now: Instant) {
        if !self.is_heartbeating()
            || self.timers.is_running(TimerKind::Heartbeat, now)
            || self.consumer_heartbeat_in_flight()
            || !self.coordinator_ready()
        {
            return;
        }
        let (Some(consumer), Some(generation)) = (&self.consumer, self.current_generation()) else {
            return;
        };
        let epoch = generation.id.0;
        let subscription = self.broker_subscription();
        let owned = self.owned_now();
        let fields = match &consumer.acknowledged {
            None => HeartbeatFields { full: true, subscription: Some(subscription), owned: Some(owned) },
            Some((known_subscription, known_owned)) => HeartbeatFields {
                full: false,
                subscription: (*known_subscription != subscription).then_some(subscription),
                owned: (*known_owned != owned).then_some(owned),
            },
        };
        self.counters.heartbeats_sent += 1;
        self.timers.set(TimerKind::Heartbeat, now + consumer.heartbeat_interval);
        self.send_consumer_heartbeat(epoch, fields, now);
    }

    /// Leaves with epoch -1 (a static member with -2: KIP-848 keeps its place for a restart
    /// within the session timeout).
    pub(super) fn send_consumer_leave(&mut self, now: Instant) {
        let epoch = if self.config.group_instance_id.is_some() { STATIC_LEAVE_EPOCH } else { LEAVE_EPOCH };
        let Some(version) = self.version(ApiKey::ConsumerGroupHeartbeat, now) else {
            return;
        };
        let request = self.consumer_heartbeat_request(epoch, &HeartbeatFields::default());
        let timeout = self.config.request_timeout;
        let id = self.send(GroupRequest::ConsumerGroupHeartbeat(request), version, timeout, InFlight::Leave);
        if let State::Leaving { request, .. } = &mut self.state {
            *request = Some(id);
        }
    }

    fn send_consumer_heartbeat(&mut self, epoch: i32, fields: HeartbeatFields, now: Instant) -> Option<RequestId> {
        let version = self.version(ApiKey::ConsumerGroupHeartbeat, now)?;
        let request = self.consumer_heartbeat_request(epoch, &fields);
        let timeout = self.config.request_timeout;
        let sent = InFlight::ConsumerHeartbeat(SentHeartbeat { epoch, fields });
        Some(self.send(GroupRequest::ConsumerGroupHeartbeat(request), version, timeout, sent))
    }

    fn consumer_heartbeat_request(&self, epoch: i32, fields: &HeartbeatFields) -> ConsumerGroupHeartbeatRequest {
        let text = |s: &str| StrBytes::from_string(s.to_owned());
        let mut request = ConsumerGroupHeartbeatRequest::default()
            .with_group_id(kafka_protocol::messages::GroupId(text(&self.config.group_id)))
            .with_member_id(text(self.member_id.as_str()))
            .with_member_epoch(epoch)
            .with_rebalance_timeout_ms(-1)
            // Every request: the broker finds a static member by it (as Java sends it).
            .with_instance_id(self.config.group_instance_id.as_deref().map(text));
        if fields.full {
            let consumer = self.consumer.as_ref();
            request = request
                .with_rack_id(self.config.rack.as_deref().map(text))
                .with_rebalance_timeout_ms(i32::try_from(self.config.rebalance_timeout.as_millis()).unwrap_or(i32::MAX))
                .with_server_assignor(consumer.and_then(|c| c.remote_assignor.as_deref()).map(text));
        }
        match &fields.subscription {
            Some(BrokerSubscription::Topics(topics)) => {
                let names = topics.iter().map(|t| kafka_protocol::messages::TopicName(text(t))).collect();
                request = request.with_subscribed_topic_names(Some(names));
            }
            Some(BrokerSubscription::Regex(regex)) => request = request.with_subscribed_topic_regex(Some(text(regex))),
            None => {}
        }
        if let (Some(owned), Some(consumer)) = (&fields.owned, &self.consumer) {
            let mut by_topic: BTreeMap<Uuid, Vec<i32>> = BTreeMap::new();
            for tp in owned {
                // Every partition owned came from an assignment by topic id.
                if let Some(id) = consumer.topic_id(&tp.topic) {
                    by_topic.entry(id).or_default().push(tp.partition);
                }
            }
            let topics = by_topic
                .into_iter()
                .map(|(id, partitions)| OwnedTopic::default().with_topic_id(id).with_partitions(partitions))
                .collect();
            request = request.with_topic_partitions(Some(topics));
        }
        request
    }

    /// The answer to the heartbeat `sent` (request `id`).
    pub(super) fn on_consumer_heartbeat(
        &mut self,
        now: Instant,
        id: RequestId,
        sent: SentHeartbeat,
        r: ConsumerGroupHeartbeatResponse,
    ) {
        let joining = matches!(self.state, State::AwaitingJoin { join: Some(j), .. } if j == id);
        let current = self.current_generation().map(|g| g.id.0);
        if !joining && current != Some(sent.epoch) {
            tracing::debug!(epoch = sent.epoch, ?current, "heartbeat answer for an epoch the member left behind");
            self.counters.stale_responses += 1;
            return;
        }
        if joining {
            // Answered: whatever it says, this join is no longer in flight.
            if let State::AwaitingJoin { join, .. } = &mut self.state {
                *join = None;
            }
        }
        let code = r.error_code;
        let reaction = reactions::reaction(ApiKey::ConsumerGroupHeartbeat, code);
        if reaction != Reaction::Apply {
            if let Some(consumer) = &mut self.consumer {
                consumer.acknowledged = None;
            }
            if let Some(message) = r.error_message.as_deref().filter(|m| !m.is_empty()) {
                tracing::info!(code = %KafkaCode(code), message, "ConsumerGroupHeartbeat refused");
            }
        }
        match reaction {
            Reaction::Apply => self.apply_heartbeat(now, joining, sent, r),
            Reaction::ResetGeneration | Reaction::ResetMemberId => {
                let reason = match code {
                    UNKNOWN_MEMBER_ID => RejoinReason::UnknownMember,
                    _ => RejoinReason::MemberEpochFenced,
                };
                self.reset(reason, now);
            }
            Reaction::Rediscover => {
                self.coordinator_lost(&format!("ConsumerGroupHeartbeat: {}", KafkaCode(code)), now);
            }
            Reaction::Fatal => self.fail(self.rejected("ConsumerGroupHeartbeat", code), now),
            // No row gives ConsumerGroupHeartbeat the last four (a test drives every row): the
            // next attempt will tell.
            Reaction::Backoff | Reaction::Rejoin | Reaction::AdoptMemberId | Reaction::Report | Reaction::Ignore => {
                tracing::warn!(code = %KafkaCode(code), "ConsumerGroupHeartbeat error; retrying");
                if joining {
                    self.timers.set(TimerKind::Retry, now + self.config.backoff(self.join_attempts));
                } else {
                    self.timers.set(TimerKind::Heartbeat, now + self.config.retry_backoff);
                }
            }
        }
    }

    fn apply_heartbeat(&mut self, now: Instant, joining: bool, sent: SentHeartbeat, r: ConsumerGroupHeartbeatResponse) {
        // Counts as a heartbeat: the broker's session runs again.
        self.timers.set(TimerKind::Session, now + self.config.session_timeout);
        if let Some(id) = r.member_id.as_deref().filter(|id| !id.is_empty()) {
            // v0: the broker chose the id; v1 echoes ours.
            self.member_id = MemberId::new(id);
        }
        let Some(consumer) = &mut self.consumer else { return };
        if r.heartbeat_interval_ms > 0 {
            consumer.heartbeat_interval = Duration::from_millis(r.heartbeat_interval_ms as u64);
        }
        // A heartbeat made due while this one was out (a new subscription) stays due.
        if self.timers.get(TimerKind::Heartbeat).is_none_or(|at| at > now) {
            self.timers.set(TimerKind::Heartbeat, now + consumer.heartbeat_interval);
        }
        let (known_subscription, known_owned) =
            consumer.acknowledged.take().unwrap_or_else(|| (BrokerSubscription::Topics(Vec::new()), BTreeSet::new()));
        consumer.acknowledged =
            Some((sent.fields.subscription.unwrap_or(known_subscription), sent.fields.owned.unwrap_or(known_owned)));
        let epoch = GenerationId(r.member_epoch);
        match r.assignment {
            Some(assignment) => {
                let mut partitions: BTreeMap<Uuid, BTreeSet<i32>> = BTreeMap::new();
                for topic in assignment.topic_partitions {
                    partitions.entry(topic.topic_id).or_default().extend(topic.partitions);
                }
                consumer.target = Some(Target { epoch, partitions });
            }
            // The assignment is unchanged; the epoch may have moved on with it.
            None => {
                consumer.target.get_or_insert_with(|| Target { epoch, partitions: BTreeMap::new() }).epoch = epoch;
            }
        }
        if joining {
            self.join_attempts = 0;
            let generation = Generation { id: epoch, member_id: self.member_id.clone() };
            let protocol = consumer.assignor_name();
            let text = format!("joined with member epoch {epoch}");
            self.set_state(State::Stable { generation, leader: false, protocol }, &text, now);
        }
        self.reconcile(now);
    }

    /// Brings what the member owns towards the broker's target: partitions taken away go through
    /// the revoke window first (the epoch stays), then the member takes the new epoch and the
    /// partitions added, and reports what it owns at once.
    pub(super) fn reconcile(&mut self, now: Instant) {
        let State::Stable { generation, leader, protocol } = self.state.clone() else {
            // In the revoke window: reconciled again when it closes.
            return;
        };
        let Some(consumer) = &mut self.consumer else { return };
        let Some(target) = consumer.target.clone() else { return };
        let mut wanted = BTreeSet::new();
        let mut unnamed = Vec::new();
        for (id, partitions) in &target.partitions {
            match consumer.topic_names.get(id) {
                Some(name) => wanted.extend(partitions.iter().map(|p| TopicPartition::new(name, *p))),
                None => unnamed.push(*id),
            }
        }
        let naming = !unnamed.is_empty();
        if naming && matches!(consumer.lookup, NameLookup::Idle) {
            let topics = match &self.subscription {
                Subscribed::Topics(topics) => Some(topics.clone()),
                Subscribed::Pattern { .. } => None,
            };
            let id = self.next_request_id();
            tracing::debug!(ids = ?unnamed, "assignment names topics by unknown ids; looking them up");
            if let Some(consumer) = &mut self.consumer {
                consumer.lookup = NameLookup::Asking(id);
            }
            let timeout = self.config.request_timeout;
            self.outbox.push_back(OutgoingRequest { id, version: 0, timeout, body: GroupRequest::TopicIds { topics } });
        }
        let owned = self.owned_now();
        let revoked: Vec<TopicPartition> = owned.difference(&wanted).cloned().collect();
        if !revoked.is_empty() {
            // KIP-848: the broker keeps the member's epoch until it reports these released, and
            // gives them to nobody meanwhile; commits of their finished batches still go out.
            self.events.push_back((
                now,
                GroupEvent::RevokeRequested {
                    generation: generation.id,
                    partitions: revoked.clone(),
                    reason: RejoinReason::PartitionsRevoked,
                },
            ));
            let text = format!("the broker takes {} partitions away", revoked.len());
            let reason = RejoinReason::PartitionsRevoked;
            self.open_revoke_window((generation, leader, protocol), reason, (false, revoked), &text, now);
            return;
        }
        if target.epoch == generation.id && wanted == owned && self.ownership.is_some() {
            return;
        }
        let next = Generation { id: target.epoch.max(generation.id), member_id: self.member_id.clone() };
        let wanted: Vec<TopicPartition> = wanted.into_iter().collect();
        self.install_epoch(now, next, protocol, wanted, naming);
    }

    /// Takes `partitions` at member epoch `generation`: streaks of partitions kept go on (their
    /// leases are re-stamped with the new epoch, which KIP-1251 brokers and older ones accept).
    /// `naming`: topics of the target wait for their names (the first assignment is announced
    /// once they have them).
    fn install_epoch(
        &mut self,
        now: Instant,
        generation: Generation,
        protocol: String,
        partitions: Vec<TopicPartition>,
        naming: bool,
    ) {
        let first = self.ownership.is_none();
        let (ownership, change) = Ownership::assign_epoch(self.ownership.take(), generation.clone(), &partitions);
        self.commits.keep_streaks(&ownership.partitions);
        let owned = ownership.owned_partitions();
        let changed = !change.added.is_empty() || !change.revoked.is_empty();
        self.ownership = Some(ownership);
        if changed {
            // Report what the member owns now, so the broker can move on.
            self.timers.set(TimerKind::Heartbeat, now);
        }
        if changed || (first && !naming) {
            self.finish_rebalance(now);
            self.events.push_back((
                now,
                GroupEvent::Assigned {
                    generation: generation.clone(),
                    partitions: owned.clone(),
                    added: change.added,
                    revoked: change.revoked,
                },
            ));
        }
        let text = format!("member epoch {} with {} partitions", generation.id, owned.len());
        self.set_state(State::Stable { generation, leader: false, protocol }, &text, now);
    }

    /// The revoke window closed: the partitions taken away are released, and the member
    /// reports so at once.
    pub(super) fn close_consumer_revoke_window(&mut self, now: Instant) {
        let State::Revoking { generation, protocol, unsubscribed: released, .. } = self.state.clone() else {
            return;
        };
        let mut owned = Vec::new();
        if let Some(ownership) = &mut self.ownership {
            for tp in &released {
                ownership.partitions.remove(tp);
            }
            owned = ownership.owned_partitions();
            self.commits.keep_streaks(&ownership.partitions);
        }
        self.events.push_back((
            now,
            GroupEvent::Assigned {
                generation: generation.clone(),
                partitions: owned,
                added: Vec::new(),
                revoked: released,
            },
        ));
        self.timers.set(TimerKind::Heartbeat, now);
        self.set_state(State::Stable { generation, leader: false, protocol }, "revoke window done", now);
        self.reconcile(now);
    }

    /// Topic ids arrived for the lookup `id`.
    pub fn handle_topic_ids(&mut self, now: Instant, id: RequestId, ids: BTreeMap<Uuid, String>) {
        let Some(consumer) = &mut self.consumer else { return };
        if !matches!(consumer.lookup, NameLookup::Asking(asked) if asked == id) {
            return;
        }
        consumer.topic_names.extend(ids);
        let unnamed = consumer
            .target
            .as_ref()
            .is_some_and(|t| t.partitions.keys().any(|id| !consumer.topic_names.contains_key(id)));
        if unnamed {
            // A topic just created may not be in this broker's metadata yet.
            consumer.name_lookups += 1;
            let at = now + self.config.backoff(consumer.name_lookups);
            consumer.lookup = NameLookup::BackingOff(at);
        } else {
            consumer.name_lookups = 0;
            consumer.lookup = NameLookup::Idle;
        }
        self.reconcile(now);
        self.progress(now);
    }

    /// The topic id lookup `id` failed; returns whether it was one.
    pub(super) fn topic_id_lookup_failed(&mut self, now: Instant, id: RequestId) -> bool {
        let Some(consumer) = &mut self.consumer else { return false };
        if !matches!(consumer.lookup, NameLookup::Asking(asked) if asked == id) {
            return false;
        }
        consumer.name_lookups += 1;
        consumer.lookup = NameLookup::BackingOff(now + self.config.backoff(consumer.name_lookups));
        true
    }

    /// Ends a lookup backoff that ran out and reconciles again (which asks again).
    pub(super) fn drive_topic_id_lookup(&mut self, now: Instant) {
        let Some(consumer) = &mut self.consumer else { return };
        if let NameLookup::BackingOff(at) = consumer.lookup {
            if at <= now {
                consumer.lookup = NameLookup::Idle;
                self.reconcile(now);
            }
        }
    }

    /// The lookup backoff, as a timer.
    pub(super) fn topic_id_lookup_timer(&self) -> Option<Instant> {
        match self.consumer.as_ref()?.lookup {
            NameLookup::BackingOff(at) => Some(at),
            _ => None,
        }
    }

    /// After a fence or a new coordinator the next heartbeat is a full one.
    pub(super) fn forget_acknowledged(&mut self) {
        if let Some(consumer) = &mut self.consumer {
            consumer.acknowledged = None;
        }
    }
}
