//! KIP-848's consumer group protocol as Kafka 4 serves it (`GroupMetadataManager`'s
//! `consumerGroupHeartbeat`, `CurrentAssignmentBuilder`, `OffsetMetadataManager`'s commit
//! validation), checked against Kafka 4.0.2 and 4.4.0 by the K cases
//! (`protocol-tests/tests/kafka4_consumer_protocol.rs` runs them on both brokers and on this
//! model).
//!
//! * A heartbeat with epoch 0 joins (the member chose its id, KIP-1082), -1 leaves, -2 leaves a
//!   static member's place open: a member joining with its instance id takes over its epoch and
//!   assignment, and one joining while the instance is active is UNRELEASED_INSTANCE_ID. Any other epoch must
//!   be the member's (or its previous one, with nothing owned beyond its assignment: a lost
//!   answer), else FENCED_MEMBER_EPOCH; an unknown member is UNKNOWN_MEMBER_ID.
//! * Every change of membership or subscription bumps the group epoch; the target assignment is
//!   recomputed at once (a sticky uniform assignor over the sorted member ids: 4.0 assigns on the
//!   request path; 4.4's assignment interval is not modelled).
//! * Reconciliation per member: partitions leaving its target are revoked first (the member
//!   keeps its epoch until a heartbeat reports them no longer owned); then it takes the target
//!   epoch and the partitions of its target no other member still holds, the rest when released.
//! * A member silent for the session timeout, or revoking for longer than its rebalance
//!   timeout, is removed.
//! * OffsetCommit v9: the member epoch must equal the member's (4.0); with
//!   [`Kip848::assignment_epochs`] (4.4, KIP-1251) an older epoch is accepted for a partition
//!   the member holds when its assignment epoch is not later.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use kafka_protocol::messages::consumer_group_heartbeat_response::{Assignment, TopicPartitions};
use kafka_protocol::messages::{
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, OffsetCommitRequest, ResponseKind,
};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::errors::*;
use super::offsets::{CommitRecord, PendingCommit};
use super::{millis, GroupApi, ReplyTo, ScriptedCoordinator};

/// The consumer protocol's broker settings; `None` in [`super::CoordinatorConfig`] leaves it
/// out (Kafka 3.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kip848 {
    /// `group.consumer.heartbeat.interval.ms` (5 s).
    pub heartbeat_interval: Duration,
    /// `group.consumer.session.timeout.ms` (45 s).
    pub session_timeout: Duration,
    /// KIP-1251 (Kafka 4.4): an OffsetCommit may carry an older member epoch for a partition
    /// whose assignment epoch is not later.
    pub assignment_epochs: bool,
}

impl Kip848 {
    /// Kafka 4.0.2's defaults: commits fenced on the member epoch alone.
    pub fn kafka40() -> Self {
        Kip848 {
            heartbeat_interval: Duration::from_secs(5),
            session_timeout: Duration::from_secs(45),
            assignment_epochs: false,
        }
    }

    /// Kafka 4.4.0's defaults: commits fenced by assignment epochs (KIP-1251).
    pub fn kafka44() -> Self {
        Kip848 { assignment_epochs: true, ..Self::kafka40() }
    }
}

/// A topic's id, the same on every run (the model has no topic creation).
pub fn topic_id(topic: &str) -> Uuid {
    // FNV-1a, twice with different offsets: stable across runs and platforms.
    let hash = |seed: u64| topic.bytes().fold(seed, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    Uuid::from_u64_pair(hash(0xcbf2_9ce4_8422_2325), hash(0x8422_2325_cbf2_9ce4))
}

type Partition = (String, i32);

#[derive(Debug, Clone)]
pub(crate) struct ConsumerMember {
    instance_id: Option<String>,
    /// A static member that left with epoch -2: its place waits for its instance id.
    away: bool,
    epoch: i32,
    previous_epoch: i32,
    subscription: Subscription,
    rebalance_timeout: Duration,
    /// Partitions assigned, with the member epoch each was assigned in (its assignment epoch).
    assigned: BTreeMap<Partition, i32>,
    /// Partitions to give up, still the member's until a heartbeat no longer reports them.
    revoking: BTreeMap<Partition, i32>,
    session_deadline: Instant,
    revocation_deadline: Option<Instant>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Subscription {
    Topics(BTreeSet<String>),
    /// Matched as a whole against the topic names (RE2J's `matches`); the model takes a literal
    /// alternation of names or a name with a trailing `.*`.
    Regex(String),
}

/// One consumer-protocol group.
#[derive(Debug, Clone, Default)]
pub(crate) struct ConsumerGroup {
    epoch: i32,
    target_epoch: i32,
    members: BTreeMap<String, ConsumerMember>,
    target: BTreeMap<String, BTreeSet<Partition>>,
}

/// What the simulator sees of a consumer-protocol member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerMemberView {
    pub member_id: String,
    pub epoch: i32,
    /// Assigned, each with its assignment epoch.
    pub assigned: BTreeMap<(String, i32), i32>,
    pub revoking: BTreeSet<(String, i32)>,
    /// What the target assignment gives it.
    pub target: BTreeSet<(String, i32)>,
}

/// What the simulator sees of a consumer-protocol group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerGroupView {
    pub epoch: i32,
    pub target_epoch: i32,
    pub members: Vec<ConsumerMemberView>,
}

impl ConsumerGroupView {
    /// Every member at the target epoch, holding its whole target and nothing else.
    pub fn is_reconciled(&self) -> bool {
        self.members.iter().all(|m| {
            m.epoch == self.target_epoch
                && m.revoking.is_empty()
                && m.assigned.keys().cloned().collect::<BTreeSet<_>>() == m.target
        })
    }
}

impl ConsumerGroup {
    fn holder(&self, partition: &Partition) -> Option<&str> {
        self.members
            .iter()
            .find(|(_, m)| m.assigned.contains_key(partition) || m.revoking.contains_key(partition))
            .map(|(id, _)| id.as_str())
    }

    /// The sticky uniform assignment of the subscribed topics' partitions over the members.
    fn compute_target(&mut self, topics: &BTreeMap<String, i32>) {
        let ids: Vec<String> = self.members.keys().cloned().collect();
        let mut target: BTreeMap<String, BTreeSet<Partition>> =
            ids.iter().map(|id| (id.clone(), BTreeSet::new())).collect();
        let subscribed = |id: &str, topic: &str| self.members[id].subscription.matches(topic);
        let partitions: Vec<Partition> = topics
            .iter()
            .filter(|(t, _)| ids.iter().any(|id| subscribed(id, t)))
            .flat_map(|(t, n)| (0..*n).map(move |p| (t.clone(), p)))
            .collect();
        let eligible = |p: &Partition| -> Vec<&String> { ids.iter().filter(|id| subscribed(id, &p.0)).collect() };
        // Quotas over the members subscribed to anything; kept partitions first (sticky).
        let count = ids.len().max(1);
        let quota = |i: usize| partitions.len() / count + usize::from(i < partitions.len() % count);
        let mut free = Vec::new();
        for p in &partitions {
            let previous = self.target.iter().find(|(_, ps)| ps.contains(p)).map(|(id, _)| id.clone());
            match previous.filter(|id| target.contains_key(id) && subscribed(id, &p.0)) {
                Some(id) if target[&id].len() < quota(ids.iter().position(|i| *i == id).unwrap_or(0)) => {
                    target.get_mut(&id).map(|ps| ps.insert(p.clone()));
                }
                _ => free.push(p.clone()),
            }
        }
        for p in free {
            let under = eligible(&p).into_iter().enumerate().find(|(_, id)| {
                let i = ids.iter().position(|x| x == *id).unwrap_or(0);
                target[*id].len() < quota(i)
            });
            let chosen = under.map(|(_, id)| id.clone()).or_else(|| eligible(&p).first().map(|id| (*id).clone()));
            if let Some(id) = chosen {
                target.get_mut(&id).map(|ps| ps.insert(p));
            }
        }
        self.target = target;
        self.target_epoch = self.epoch;
    }

    /// `CurrentAssignmentBuilder`: moves `member` towards its target; `owned` is what its
    /// heartbeat reported (`None`: unchanged).
    fn reconcile(&mut self, member_id: &str, owned: Option<&BTreeSet<Partition>>, now: Instant) {
        let target = self.target.get(member_id).cloned().unwrap_or_default();
        let target_epoch = self.target_epoch;
        let held_by_others: BTreeSet<Partition> = self
            .members
            .iter()
            .filter(|(id, _)| id.as_str() != member_id)
            .flat_map(|(_, m)| m.assigned.keys().chain(m.revoking.keys()).cloned())
            .collect();
        let Some(m) = self.members.get_mut(member_id) else { return };
        if !m.revoking.is_empty() {
            match owned {
                Some(owned) if m.revoking.keys().all(|p| !owned.contains(p)) => {
                    m.revoking.clear();
                    m.revocation_deadline = None;
                }
                _ => return,
            }
        }
        let to_revoke: BTreeMap<Partition, i32> =
            m.assigned.iter().filter(|(p, _)| !target.contains(*p)).map(|(p, e)| (p.clone(), *e)).collect();
        if !to_revoke.is_empty() {
            m.assigned.retain(|p, _| target.contains(p));
            m.revoking = to_revoke;
            m.revocation_deadline = Some(now + m.rebalance_timeout);
            return;
        }
        if m.epoch < target_epoch {
            m.previous_epoch = m.epoch;
            m.epoch = target_epoch;
        }
        for p in target {
            if !m.assigned.contains_key(&p) && !held_by_others.contains(&p) {
                m.assigned.insert(p, m.epoch);
            }
        }
    }
}

impl Subscription {
    fn matches(&self, topic: &str) -> bool {
        match self {
            Subscription::Topics(topics) => topics.contains(topic),
            Subscription::Regex(regex) => regex.split('|').any(|alt| match alt.strip_suffix(".*") {
                Some(prefix) => topic.starts_with(prefix.trim_start_matches('^')),
                None => alt.trim_start_matches('^').trim_end_matches('$') == topic,
            }),
        }
    }
}

impl ScriptedCoordinator {
    pub(crate) fn handle_consumer_heartbeat(&mut self, now: Instant, reply: ReplyTo, r: ConsumerGroupHeartbeatRequest) {
        let response = self.consumer_heartbeat(now, &r).unwrap_or_else(|code| {
            ConsumerGroupHeartbeatResponse::default().with_error_code(code).with_member_epoch(-1)
        });
        self.emit(now, reply, ResponseKind::ConsumerGroupHeartbeat(response), None);
    }

    fn consumer_heartbeat(
        &mut self,
        now: Instant,
        r: &ConsumerGroupHeartbeatRequest,
    ) -> Result<ConsumerGroupHeartbeatResponse, i16> {
        let Some(kip848) = self.config.consumer_protocol.clone() else {
            return Err(UNSUPPORTED_VERSION);
        };
        let group_id = r.group_id.to_string();
        if let Some(error) = self.validate_group_status(&group_id, GroupApi::Heartbeat) {
            return Err(error);
        }
        let member_id = r.member_id.to_string();
        let epoch = r.member_epoch;
        if member_id.is_empty() || (epoch == 0 && (r.topic_partitions.is_none() || r.rebalance_timeout_ms < 0)) {
            return Err(INVALID_REQUEST);
        }
        if self.groups.get(&group_id).is_some_and(|g| !g.members.is_empty()) {
            // A classic group with members: the model does not convert it (Kafka's migration).
            return Err(INCONSISTENT_GROUP_PROTOCOL);
        }
        let names: BTreeMap<Uuid, String> = self.config.topics.keys().map(|t| (topic_id(t), t.clone())).collect();
        let owned: Option<BTreeSet<Partition>> = r.topic_partitions.as_ref().map(|topics| {
            topics
                .iter()
                .filter_map(|t| names.get(&t.topic_id).map(|name| (name, &t.partitions)))
                .flat_map(|(name, ps)| ps.iter().map(move |p| (name.clone(), *p)))
                .collect()
        });
        let subscription = match (&r.subscribed_topic_names, &r.subscribed_topic_regex) {
            (_, Some(regex)) => Some(Subscription::Regex(regex.to_string())),
            (Some(topics), None) => Some(Subscription::Topics(topics.iter().map(|t| t.to_string()).collect())),
            (None, None) => None,
        };
        let topics = self.config.topics.clone();
        let g = self.consumer_groups.entry(group_id.clone()).or_default();
        let instance_id = r.instance_id.as_ref().map(|i| i.to_string());
        let left = || ConsumerGroupHeartbeatResponse::default().with_member_id(Some(text(&member_id)));
        if epoch == -2 && instance_id.is_some() {
            // A static member steps away and keeps its place for its instance id.
            let m = g.members.get_mut(&member_id).ok_or(UNKNOWN_MEMBER_ID)?;
            m.away = true;
            return Ok(left().with_member_epoch(epoch));
        }
        if epoch < 0 {
            if g.members.remove(&member_id).is_none() {
                return Err(UNKNOWN_MEMBER_ID);
            }
            g.epoch += 1;
            g.compute_target(&topics);
            return Ok(left().with_member_epoch(epoch));
        }
        let joining = epoch == 0;
        if let (true, Some(instance)) = (joining, &instance_id) {
            let holder = g.members.iter().find(|(_, m)| m.instance_id.as_ref() == Some(instance));
            match holder.map(|(id, m)| (id.clone(), m.away)) {
                Some((previous, true)) => {
                    // The instance comes back under a new member id: epoch and assignment carry over.
                    let mut m = g.members.remove(&previous).ok_or(UNKNOWN_MEMBER_ID)?;
                    m.away = false;
                    m.session_deadline = now + kip848.session_timeout;
                    if let Some(target) = g.target.remove(&previous) {
                        g.target.insert(member_id.clone(), target);
                    }
                    let response = assigned_response(&member_id, &m, &kip848);
                    g.members.insert(member_id.clone(), m);
                    return Ok(response);
                }
                Some((previous, false)) if previous != member_id => return Err(UNRELEASED_INSTANCE_ID),
                _ => {}
            }
        }
        match g.members.get(&member_id) {
            None if !joining => return Err(UNKNOWN_MEMBER_ID),
            Some(m) if !joining && epoch != m.epoch => {
                let lost_answer = epoch == m.previous_epoch
                    && owned.as_ref().is_none_or(|o| o.iter().all(|p| m.assigned.contains_key(p)));
                if !lost_answer {
                    return Err(FENCED_MEMBER_EPOCH);
                }
            }
            _ => {}
        }
        let mut changed = false;
        if joining {
            // A rejoin replaces what the member had.
            let subscription = subscription.clone().ok_or(INVALID_REQUEST)?;
            g.members.insert(
                member_id.clone(),
                ConsumerMember {
                    instance_id,
                    away: false,
                    epoch: 0,
                    previous_epoch: -1,
                    subscription,
                    rebalance_timeout: millis(r.rebalance_timeout_ms),
                    assigned: BTreeMap::new(),
                    revoking: BTreeMap::new(),
                    session_deadline: now + kip848.session_timeout,
                    revocation_deadline: None,
                },
            );
            changed = true;
        }
        let m = g.members.get_mut(&member_id).ok_or(UNKNOWN_MEMBER_ID)?;
        m.session_deadline = now + kip848.session_timeout;
        if let Some(subscription) = subscription.filter(|s| *s != m.subscription) {
            m.subscription = subscription;
            changed = true;
        }
        if r.rebalance_timeout_ms > 0 {
            m.rebalance_timeout = millis(r.rebalance_timeout_ms);
        }
        if changed {
            g.epoch += 1;
            g.compute_target(&topics);
        }
        let before = g.members.get(&member_id).map(|m| (m.epoch, m.assigned.clone()));
        g.reconcile(&member_id, owned.as_ref(), now);
        let m = &g.members[&member_id];
        let assignment_changed = before.is_some_and(|(_, assigned)| assigned != m.assigned);
        if joining || owned.is_some() || assignment_changed {
            return Ok(assigned_response(&member_id, m, &kip848));
        }
        Ok(ConsumerGroupHeartbeatResponse::default()
            .with_member_id(Some(text(&member_id)))
            .with_member_epoch(m.epoch)
            .with_heartbeat_interval_ms(interval_ms(&kip848)))
    }

    /// OffsetCommit v9 to a consumer-protocol group, for the partitions that passed the topic
    /// check: one code per partition, and the commit if its append waits for the answer.
    pub(crate) fn consumer_commit(
        &mut self,
        now: Instant,
        reply: &ReplyTo,
        r: &OffsetCommitRequest,
        topics: &super::offsets::CommitTopics,
        valid: &[(usize, usize)],
    ) -> (Vec<i16>, Option<PendingCommit>) {
        let group_id = r.group_id.to_string();
        let member_id = r.member_id.to_string();
        let epoch = r.generation_id_or_member_epoch;
        let assignment_epochs = self.config.consumer_protocol.as_ref().is_some_and(|k| k.assignment_epochs);
        let Some(g) = self.consumer_groups.get(&group_id) else {
            return (vec![ILLEGAL_GENERATION; valid.len()], None);
        };
        if reply.version() < 9 {
            return (vec![UNSUPPORTED_VERSION; valid.len()], None);
        }
        if epoch < 0 && member_id.is_empty() && g.members.is_empty() {
            // A commit without a member (a "simple" consumer) while the group is empty.
        } else {
            let Some(m) = g.members.get(&member_id) else {
                return (vec![UNKNOWN_MEMBER_ID; valid.len()], None);
            };
            let per_partition = |p: &Partition| -> i16 {
                if epoch == m.epoch {
                    return NONE;
                }
                let assigned_at = m.assigned.get(p).or_else(|| m.revoking.get(p));
                match assigned_at {
                    Some(at) if assignment_epochs && *at <= epoch && epoch < m.epoch => NONE,
                    _ => STALE_MEMBER_EPOCH,
                }
            };
            let codes: Vec<i16> = valid
                .iter()
                .map(|(t, p)| {
                    let (name, partitions) = &topics[*t];
                    per_partition(&(name.clone(), partitions[*p].0))
                })
                .collect();
            if codes.iter().any(|c| *c != NONE) {
                // The coordinator refuses the whole request (`validateOffsetCommit` throws).
                let code = codes.iter().copied().find(|c| *c != NONE).unwrap_or(NONE);
                return (vec![code; valid.len()], None);
            }
        }
        let (outcome, entries) = self.sized_entries(topics, valid);
        for ((topic, partition), e) in &entries {
            let holder = self.consumer_groups.get(&group_id).and_then(|g| g.holder(&(topic.clone(), *partition)));
            self.commits.push(CommitRecord {
                group: group_id.clone(),
                member_id: member_id.clone(),
                generation: epoch,
                topic: topic.clone(),
                partition: *partition,
                offset: e.offset,
                owner_at_generation: holder.map(str::to_owned),
                owner_before: None,
                at: now,
            });
        }
        (outcome, self.append_commit(reply, group_id, entries))
    }

    /// The earliest session or revocation deadline of a consumer-protocol member.
    pub(crate) fn next_consumer_deadline(&self) -> Option<(Instant, String, String)> {
        self.consumer_groups
            .iter()
            .flat_map(|(gid, g)| {
                g.members.iter().map(move |(mid, m)| {
                    let at = m.revocation_deadline.map_or(m.session_deadline, |r| r.min(m.session_deadline));
                    (at, gid.clone(), mid.clone())
                })
            })
            .min()
    }

    /// A member's session or revocation deadline passed: it is removed.
    pub(crate) fn expire_consumer_member(&mut self, group: &str, member: &str) {
        let topics = self.config.topics.clone();
        if let Some(g) = self.consumer_groups.get_mut(group) {
            if g.members.remove(member).is_some() {
                g.epoch += 1;
                g.compute_target(&topics);
            }
        }
    }

    /// The consumer-protocol group `group`, if it exists.
    pub fn describe_consumer_group(&self, group: &str) -> Option<ConsumerGroupView> {
        let g = self.consumer_groups.get(group)?;
        Some(ConsumerGroupView {
            epoch: g.epoch,
            target_epoch: g.target_epoch,
            members: g
                .members
                .iter()
                .map(|(id, m)| ConsumerMemberView {
                    member_id: id.clone(),
                    epoch: m.epoch,
                    assigned: m.assigned.clone(),
                    revoking: m.revoking.keys().cloned().collect(),
                    target: g.target.get(id).cloned().unwrap_or_default(),
                })
                .collect(),
        })
    }

    /// After a failover the groups come back from the log with every session armed anew.
    pub(crate) fn rearm_consumer_sessions(&mut self, now: Instant) {
        let Some(timeout) = self.config.consumer_protocol.as_ref().map(|k| k.session_timeout) else { return };
        for m in self.consumer_groups.values_mut().flat_map(|g| g.members.values_mut()) {
            m.session_deadline = now + timeout;
        }
    }

    pub(crate) fn is_consumer_group(&self, group: &str) -> bool {
        self.consumer_groups.contains_key(group)
    }
}

fn interval_ms(kip848: &Kip848) -> i32 {
    i32::try_from(kip848.heartbeat_interval.as_millis()).unwrap_or(i32::MAX)
}

/// A heartbeat answer with the member's epoch and its whole assignment.
fn assigned_response(member_id: &str, m: &ConsumerMember, kip848: &Kip848) -> ConsumerGroupHeartbeatResponse {
    let mut by_topic: BTreeMap<Uuid, Vec<i32>> = BTreeMap::new();
    for (topic, p) in m.assigned.keys() {
        by_topic.entry(topic_id(topic)).or_default().push(*p);
    }
    let topics = by_topic
        .into_iter()
        .map(|(id, partitions)| TopicPartitions::default().with_topic_id(id).with_partitions(partitions))
        .collect();
    ConsumerGroupHeartbeatResponse::default()
        .with_member_id(Some(text(member_id)))
        .with_member_epoch(m.epoch)
        .with_heartbeat_interval_ms(interval_ms(kip848))
        .with_assignment(Some(Assignment::default().with_topic_partitions(topics)))
}

fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}
