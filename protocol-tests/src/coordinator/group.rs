//! The in-memory group model: a transcription of Kafka 3.6's `GroupMetadata` and
//! `MemberMetadata` (spec §4), without any timers or I/O of its own.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::protocol::StrBytes;

use super::ReplyTo;

/// Group states (spec §4.1). `Dead` is only reached through [`super::ScriptedCoordinator::unload`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    /// The names DescribeGroups reports.
    pub(crate) fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }

    /// `canRebalance`: PreparingRebalance may only be entered from these (GM 36-124).
    pub(crate) fn can_rebalance(self) -> bool {
        matches!(self, GroupState::Stable | GroupState::CompletingRebalance | GroupState::Empty)
    }

    fn valid_previous(self, from: GroupState) -> bool {
        match self {
            GroupState::Empty => from == GroupState::PreparingRebalance,
            GroupState::PreparingRebalance => from.can_rebalance(),
            GroupState::CompletingRebalance => from == GroupState::PreparingRebalance,
            GroupState::Stable => from == GroupState::CompletingRebalance,
            GroupState::Dead => true,
        }
    }
}

/// One group member (`MemberMetadata`).
#[derive(Debug)]
pub(crate) struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub protocol_type: String,
    /// Ordered by preference, as sent in JoinGroup.
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    /// The parked JoinGroup (`awaitingJoinCallback`).
    pub awaiting_join: Option<ReplyTo>,
    /// The parked SyncGroup (`awaitingSyncCallback`).
    pub awaiting_sync: Option<ReplyTo>,
    /// Added by a JoinGroup and still waiting for its first JoinGroup response (MM 93-104).
    pub is_new: bool,
    /// The DelayedHeartbeat of this member, if one is watched.
    pub heartbeat_deadline: Option<Instant>,
}

impl Member {
    pub(crate) fn is_awaiting_join(&self) -> bool {
        self.awaiting_join.is_some()
    }

    pub(crate) fn is_awaiting_sync(&self) -> bool {
        self.awaiting_sync.is_some()
    }

    /// `matches`: same ordered protocol names and bytes (MM 121-133).
    pub(crate) fn matches(&self, protocols: &[(String, Bytes)]) -> bool {
        self.protocols.len() == protocols.len()
            && self.protocols.iter().zip(protocols).all(|(a, b)| a.0 == b.0 && a.1 == b.1)
    }

    pub(crate) fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols.iter().find(|(name, _)| name == protocol).map(|(_, m)| m.clone()).unwrap_or_default()
    }

    fn vote(&self, candidates: &BTreeSet<String>) -> Option<&str> {
        self.protocols.iter().map(|(name, _)| name.as_str()).find(|name| candidates.contains(*name))
    }
}

/// The rebalance purgatory entry for the join phase (DJ 34-94).
#[derive(Debug, Clone, Copy)]
pub(crate) enum JoinTimer {
    /// `InitialDelayedJoin`: never completes early.
    Initial { deadline: Instant, configured: Duration, delay: Duration, remaining: Duration },
    /// `DelayedJoin`: completes early once every member rejoined and nobody is pending.
    Normal { deadline: Instant },
}

impl JoinTimer {
    pub(crate) fn deadline(&self) -> Instant {
        match self {
            JoinTimer::Initial { deadline, .. } | JoinTimer::Normal { deadline } => *deadline,
        }
    }
}

/// The `DelayedSync` purgatory entry (DS 30-48).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SyncTimer {
    pub deadline: Instant,
    pub generation: i32,
}

/// `GroupMetadata`.
#[derive(Debug)]
pub(crate) struct Group {
    pub id: String,
    pub state: GroupState,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub generation: i32,
    pub leader: Option<String>,
    /// Kept in insertion order; Kafka's HashMap order is arbitrary, ours is the join order.
    pub members: Vec<Member>,
    /// group.instance.id -> member id.
    pub static_members: BTreeMap<String, String>,
    /// MEMBER_ID_REQUIRED ids and the expiry of each (the first-step session timeout).
    pub pending_members: BTreeMap<String, Instant>,
    pub pending_sync: BTreeSet<String>,
    pub new_member_added: bool,
    pub join_timer: Option<JoinTimer>,
    pub sync_timer: Option<SyncTimer>,
}

impl Group {
    pub(crate) fn new(id: String) -> Self {
        Group {
            id,
            state: GroupState::Empty,
            protocol_type: None,
            protocol_name: None,
            generation: 0,
            leader: None,
            members: Vec::new(),
            static_members: BTreeMap::new(),
            pending_members: BTreeMap::new(),
            pending_sync: BTreeSet::new(),
            new_member_added: false,
            join_timer: None,
            sync_timer: None,
        }
    }

    pub(crate) fn is(&self, state: GroupState) -> bool {
        self.state == state
    }

    pub(crate) fn transition_to(&mut self, state: GroupState) {
        debug_assert!(
            state.valid_previous(self.state),
            "group {} cannot move from {:?} to {:?}",
            self.id,
            self.state,
            state
        );
        self.state = state;
    }

    pub(crate) fn has(&self, member_id: &str) -> bool {
        self.members.iter().any(|m| m.id == member_id)
    }

    pub(crate) fn get(&self, member_id: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.id == member_id)
    }

    pub(crate) fn get_mut(&mut self, member_id: &str) -> Option<&mut Member> {
        self.members.iter_mut().find(|m| m.id == member_id)
    }

    pub(crate) fn is_leader(&self, member_id: &str) -> bool {
        self.leader.as_deref() == Some(member_id)
    }

    pub(crate) fn is_pending_member(&self, member_id: &str) -> bool {
        self.pending_members.contains_key(member_id)
    }

    pub(crate) fn num_awaiting(&self) -> usize {
        self.members.iter().filter(|m| m.is_awaiting_join()).count()
    }

    /// `hasAllMembersJoined`: every member rejoined **and** no pending member (GM 389).
    pub(crate) fn has_all_members_joined(&self) -> bool {
        self.members.len() == self.num_awaiting() && self.pending_members.is_empty()
    }

    /// `group.rebalanceTimeoutMs`: the max over current members (GM 409-411).
    pub(crate) fn rebalance_timeout_ms(&self) -> i32 {
        self.members.iter().fold(0, |acc, m| acc.max(m.rebalance_timeout_ms))
    }

    /// `add` (GM 238-263).
    pub(crate) fn add(&mut self, member: Member) {
        if let Some(instance) = &member.instance_id {
            self.static_members.insert(instance.clone(), member.id.clone());
        }
        if self.members.is_empty() {
            self.protocol_type = Some(member.protocol_type.clone());
        }
        if self.leader.is_none() {
            self.leader = Some(member.id.clone());
        }
        self.pending_members.remove(&member.id);
        self.members.push(member);
    }

    /// `remove` (GM 265-278): no callback is invoked here.
    pub(crate) fn remove(&mut self, member_id: &str) -> Option<Member> {
        let removed = self.members.iter().position(|m| m.id == member_id).map(|idx| self.members.remove(idx));
        if let Some(instance) = removed.as_ref().and_then(|m| m.instance_id.as_ref()) {
            self.static_members.remove(instance);
        }
        if self.is_leader(member_id) {
            self.leader = self.members.first().map(|m| m.id.clone());
        }
        self.pending_members.remove(member_id);
        self.pending_sync.remove(member_id);
        removed
    }

    /// `maybeElectNewJoinedLeader` (GM 287-310).
    pub(crate) fn maybe_elect_new_joined_leader(&mut self) -> bool {
        let Some(leader) = self.leader.clone() else {
            return false;
        };
        let leader_joined = self.get(&leader).map(Member::is_awaiting_join).unwrap_or(false);
        if leader_joined {
            return true;
        }
        match self.members.iter().find(|m| m.is_awaiting_join()) {
            Some(m) => {
                self.leader = Some(m.id.clone());
                true
            }
            None => false,
        }
    }

    /// `replaceStaticMember` (GM 316-337). Returns the old id's parked Join and Sync, which the
    /// caller must answer with FENCED_INSTANCE_ID.
    pub(crate) fn replace_static_member(
        &mut self,
        instance_id: &str,
        old_id: &str,
        new_id: &str,
    ) -> (Option<ReplyTo>, Option<ReplyTo>) {
        let mut fenced = (None, None);
        if let Some(member) = self.get_mut(old_id) {
            fenced = (member.awaiting_join.take(), member.awaiting_sync.take());
            member.id = new_id.to_string();
        }
        if self.is_leader(old_id) {
            self.leader = Some(new_id.to_string());
        }
        self.static_members.insert(instance_id.to_string(), new_id.to_string());
        fenced
    }

    /// How many current members support `protocol`.
    fn support_count(&self, protocol: &str) -> usize {
        self.members.iter().filter(|m| m.protocols.iter().any(|(name, _)| name == protocol)).count()
    }

    fn candidate_protocols(&self) -> BTreeSet<String> {
        let n = self.members.len();
        self.members
            .iter()
            .flat_map(|m| m.protocols.iter().map(|(name, _)| name.clone()))
            .filter(|name| self.support_count(name) == n)
            .collect()
    }

    /// `selectProtocol`: each member votes for its first candidate; most votes wins
    /// (GM 443-470). Ties go to the protocol that reached the count first, in member order.
    pub(crate) fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidate_protocols();
        let mut votes: Vec<(String, usize)> = Vec::new();
        for member in &self.members {
            if let Some(vote) = member.vote(&candidates) {
                match votes.iter_mut().find(|(name, _)| name == vote) {
                    Some(entry) => entry.1 += 1,
                    None => votes.push((vote.to_string(), 1)),
                }
            }
        }
        let mut best: Option<(String, usize)> = None;
        for (name, count) in votes {
            if best.as_ref().map(|(_, c)| count > *c).unwrap_or(true) {
                best = Some((name, count));
            }
        }
        best.map(|(name, _)| name)
    }

    /// `supportsProtocols` (GM 473-478).
    pub(crate) fn supports_protocols(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.is(GroupState::Empty) {
            !protocol_type.is_empty() && !protocols.is_empty()
        } else {
            self.protocol_type.as_deref() == Some(protocol_type)
                && protocols.iter().any(|(name, _)| self.support_count(name) == self.members.len())
        }
    }

    /// `updateMember` (GM 546-566): the new callback replaces any earlier one, which is then
    /// never answered (spec §6.2, last paragraph).
    pub(crate) fn update_member(
        &mut self,
        member_id: &str,
        protocols: Vec<(String, Bytes)>,
        rebalance_timeout_ms: i32,
        session_timeout_ms: i32,
        callback: Option<ReplyTo>,
    ) {
        if let Some(member) = self.get_mut(member_id) {
            member.protocols = protocols;
            member.rebalance_timeout_ms = rebalance_timeout_ms;
            member.session_timeout_ms = session_timeout_ms;
            member.awaiting_join = callback;
        }
    }

    /// `initNextGeneration` (GM 583-598): +1 even when the group ends up Empty.
    pub(crate) fn init_next_generation(&mut self) {
        self.generation += 1;
        if self.members.is_empty() {
            self.protocol_name = None;
            self.transition_to(GroupState::Empty);
        } else {
            self.protocol_name = self.select_protocol();
            self.transition_to(GroupState::CompletingRebalance);
        }
        self.pending_sync.clear();
    }

    /// `currentMemberMetadata`: the leader's `members[]`.
    pub(crate) fn current_member_metadata(&self) -> Vec<JoinGroupResponseMember> {
        let protocol = self.protocol_name.clone().unwrap_or_default();
        self.members
            .iter()
            .map(|m| {
                JoinGroupResponseMember::default()
                    .with_member_id(StrBytes::from_string(m.id.clone()))
                    .with_group_instance_id(m.instance_id.clone().map(StrBytes::from_string))
                    .with_metadata(m.metadata(&protocol))
            })
            .collect()
    }

    /// `validateCurrentMember` (GC 369-396): FENCED_INSTANCE_ID or UNKNOWN_MEMBER_ID.
    pub(crate) fn validate_current_member(&self, member_id: &str, instance_id: Option<&str>) -> Option<i16> {
        if let Some(instance) = instance_id {
            match self.static_members.get(instance) {
                Some(current) if current != member_id => return Some(super::errors::FENCED_INSTANCE_ID),
                Some(_) => {}
                None => return Some(super::errors::UNKNOWN_MEMBER_ID),
            }
        }
        if self.has(member_id) {
            None
        } else {
            Some(super::errors::UNKNOWN_MEMBER_ID)
        }
    }
}

/// A group record as written to `__consumer_offsets` (spec §4.1): only the selected protocol's
/// metadata is kept per member.
#[derive(Debug, Clone)]
pub(crate) struct StoredGroup {
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub generation: i32,
    pub leader: Option<String>,
    pub members: Vec<StoredMember>,
}

#[derive(Debug, Clone)]
pub(crate) struct StoredMember {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

impl StoredGroup {
    pub(crate) fn of(group: &Group) -> Self {
        let protocol = group.protocol_name.clone().unwrap_or_default();
        StoredGroup {
            protocol_type: group.protocol_type.clone(),
            protocol_name: group.protocol_name.clone(),
            generation: group.generation,
            leader: group.leader.clone(),
            members: group
                .members
                .iter()
                .map(|m| StoredMember {
                    id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    metadata: m.metadata(&protocol),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    /// Rebuilds the cached group after a load (GMM 1215-1220): Stable with members, else Empty.
    pub(crate) fn load(&self, id: String) -> Group {
        let mut group = Group::new(id);
        group.generation = self.generation;
        group.protocol_type = self.protocol_type.clone();
        group.protocol_name = self.protocol_name.clone();
        group.leader = self.leader.clone();
        let protocol = self.protocol_name.clone().unwrap_or_default();
        for m in &self.members {
            if let Some(instance) = &m.instance_id {
                group.static_members.insert(instance.clone(), m.id.clone());
            }
            group.members.push(Member {
                id: m.id.clone(),
                instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                session_timeout_ms: m.session_timeout_ms,
                protocol_type: self.protocol_type.clone().unwrap_or_default(),
                protocols: vec![(protocol.clone(), m.metadata.clone())],
                assignment: m.assignment.clone(),
                awaiting_join: None,
                awaiting_sync: None,
                is_new: false,
                heartbeat_deadline: None,
            });
        }
        group.state = if group.members.is_empty() {
            group.leader = None;
            GroupState::Empty
        } else {
            GroupState::Stable
        };
        group
    }
}
