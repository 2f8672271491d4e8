//! JoinGroup, SyncGroup, Heartbeat, LeaveGroup and the rebalance machinery (spec §4.3, §6.2-6.5,
//! §8, §9), transcribed from Kafka 3.6's `GroupCoordinator`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, LeaveGroupRequest, LeaveGroupResponse, ResponseKind,
    SyncGroupRequest,
};
use kafka_protocol::protocol::StrBytes;

use super::errors::*;
use super::group::{Group, GroupState, JoinTimer, Member, StoredGroup, SyncTimer};
use super::offsets::decode_assignment;
use super::responses::{join_response, sync_response, JoinResult, SyncResult};
use super::{millis, Assignment, GroupApi, ReplyTo, ScriptedCoordinator};

/// `clientHost` as Kafka records it for members.
const CLIENT_HOST: &str = "/127.0.0.1";

/// The decoded parts of a JoinGroup that the coordinator logic uses.
struct JoinArgs {
    member_id: String,
    instance_id: Option<String>,
    client_id: String,
    rebalance_timeout_ms: i32,
    session_timeout_ms: i32,
    protocol_type: String,
    protocols: Vec<(String, Bytes)>,
    /// `apiVersion >= 4 && groupInstanceId == null` (GCA 98-100).
    require_known_member_id: bool,
    /// `apiVersion >= 9` (GCA 106).
    support_skipping_assignment: bool,
}

impl ScriptedCoordinator {
    // ----------------------------------------------------------------------------------
    // JoinGroup (§6.2)

    pub(crate) fn handle_join_group(&mut self, now: Instant, reply: ReplyTo, client_id: &str, r: JoinGroupRequest) {
        let version = reply.version();
        let group_id = r.group_id.to_string();
        let member_id = r.member_id.to_string();
        let instance_id = r.group_instance_id.as_ref().map(|s| s.to_string());
        let args = JoinArgs {
            member_id: member_id.clone(),
            instance_id: instance_id.clone(),
            client_id: client_id.to_string(),
            // v0 has no RebalanceTimeoutMs: the session timeout is used
            // (JoinGroupRequest.maybeOverrideRebalanceTimeout).
            rebalance_timeout_ms: if version == 0 { r.session_timeout_ms } else { r.rebalance_timeout_ms },
            session_timeout_ms: r.session_timeout_ms,
            protocol_type: r.protocol_type.to_string(),
            protocols: r.protocols.iter().map(|p| (p.name.to_string(), p.metadata.clone())).collect(),
            require_known_member_id: version >= 4 && instance_id.is_none(),
            support_skipping_assignment: version >= 9,
        };

        if let Some(error) = self.validate_group_status(&group_id, GroupApi::Join) {
            return self.reply_join(now, reply, JoinResult::error(member_id, error));
        }
        // Only the session timeout is validated, not the rebalance timeout (GC 176-178).
        let session = millis(r.session_timeout_ms);
        if r.session_timeout_ms < 0
            || session < self.config.min_session_timeout
            || session > self.config.max_session_timeout
        {
            return self.reply_join(now, reply, JoinResult::error(member_id, INVALID_SESSION_TIMEOUT));
        }
        let is_unknown_member = member_id.is_empty();
        if !self.groups.contains_key(&group_id) {
            // Created only for memberId "" (GC 180-185).
            if !is_unknown_member {
                return self.reply_join(now, reply, JoinResult::error(member_id, UNKNOWN_MEMBER_ID));
            }
            self.groups.insert(group_id.clone(), Group::new(group_id.clone()));
        }
        self.with_group(&group_id, |c, g| {
            if !c.accept_joining_member(g, &args.member_id) {
                // An existing member that is refused is evicted (GC 189-191, §11 item 10).
                g.remove(&args.member_id);
                c.reply_join(now, reply, JoinResult::error(String::new(), GROUP_MAX_SIZE_REACHED));
            } else if is_unknown_member {
                c.do_new_member_join(now, g, reply, args);
            } else {
                c.do_current_member_join(now, g, reply, args);
            }
            if g.is(GroupState::PreparingRebalance) {
                c.check_join(now, g);
            }
        });
    }

    /// `acceptJoiningMember` (GC 132-155).
    fn accept_joining_member(&self, g: &Group, member_id: &str) -> bool {
        let max = self.config.max_group_size;
        match g.state {
            GroupState::Empty | GroupState::Dead => true,
            GroupState::PreparingRebalance => {
                g.get(member_id).map(|m| m.is_awaiting_join()).unwrap_or(false) || g.num_awaiting() < max
            }
            GroupState::CompletingRebalance | GroupState::Stable => g.has(member_id) || g.members.len() < max,
        }
    }

    /// `doNewMemberJoinGroup` (GC 233-293).
    fn do_new_member_join(&mut self, now: Instant, g: &mut Group, reply: ReplyTo, a: JoinArgs) {
        if g.is(GroupState::Dead) {
            return self.reply_join(now, reply, JoinResult::error(String::new(), COORDINATOR_NOT_AVAILABLE));
        }
        if !g.supports_protocols(&a.protocol_type, &a.protocols) {
            return self.reply_join(now, reply, JoinResult::error(String::new(), INCONSISTENT_GROUP_PROTOCOL));
        }
        let prefix = a.instance_id.clone().unwrap_or_else(|| a.client_id.clone());
        let new_id = format!("{prefix}-{}", self.next_uuid());
        match a.instance_id.clone() {
            // Static members never get MEMBER_ID_REQUIRED (§6.2.1).
            Some(instance) => match g.static_members.get(&instance).cloned() {
                Some(old_id) => self.update_static_member_and_rebalance(now, g, reply, &old_id, &new_id, &instance, a),
                None => self.add_member_and_rebalance(now, g, reply, new_id, a),
            },
            None if a.require_known_member_id => {
                // A pending member: no rebalance and no state change; it expires after the
                // first step's session timeout (GC 351-359).
                g.pending_members.insert(new_id.clone(), now + millis(a.session_timeout_ms));
                self.reply_join(now, reply, JoinResult::error(new_id, MEMBER_ID_REQUIRED));
            }
            None => self.add_member_and_rebalance(now, g, reply, new_id, a),
        }
    }

    /// `doCurrentMemberJoinGroup` (GC 398-503).
    fn do_current_member_join(&mut self, now: Instant, g: &mut Group, reply: ReplyTo, a: JoinArgs) {
        let member_id = a.member_id.clone();
        if g.is(GroupState::Dead) {
            return self.reply_join(now, reply, JoinResult::error(member_id, COORDINATOR_NOT_AVAILABLE));
        }
        if !g.supports_protocols(&a.protocol_type, &a.protocols) {
            return self.reply_join(now, reply, JoinResult::error(member_id, INCONSISTENT_GROUP_PROTOCOL));
        }
        if g.is_pending_member(&member_id) {
            if a.instance_id.is_some() {
                // The server throws IllegalStateException; KafkaApis answers with the generic
                // error response (GC 420-425, §11 item 15).
                return self.reply_join(now, reply, JoinResult::error(String::new(), UNKNOWN_SERVER_ERROR));
            }
            return self.add_member_and_rebalance(now, g, reply, member_id, a);
        }
        if let Some(error) = g.validate_current_member(&member_id, a.instance_id.as_deref()) {
            return self.reply_join(now, reply, JoinResult::error(member_id, error));
        }
        let Some(member) = g.get(&member_id) else {
            return self.reply_join(now, reply, JoinResult::error(member_id, UNKNOWN_MEMBER_ID));
        };
        let same_metadata = member.matches(&a.protocols);
        match g.state {
            GroupState::PreparingRebalance => self.update_member_and_rebalance(now, g, reply, a),
            GroupState::CompletingRebalance => {
                if same_metadata {
                    // A lost JoinGroup response: answer again with the current generation.
                    let result = self.current_join_result(g, &member_id, g.is_leader(&member_id));
                    self.reply_join(now, reply, result);
                } else {
                    self.update_member_and_rebalance(now, g, reply, a);
                }
            }
            GroupState::Stable => {
                // The leader always rebalances; a follower only with changed metadata
                // (GC 473-477, §11 item 12).
                if g.is_leader(&member_id) || !same_metadata {
                    self.update_member_and_rebalance(now, g, reply, a);
                } else {
                    let result = self.current_join_result(g, &member_id, false);
                    self.reply_join(now, reply, result);
                }
            }
            GroupState::Empty | GroupState::Dead => {
                self.reply_join(now, reply, JoinResult::error(member_id, UNKNOWN_MEMBER_ID));
            }
        }
    }

    fn current_join_result(&self, g: &Group, member_id: &str, with_members: bool) -> JoinResult {
        JoinResult {
            members: if with_members { g.current_member_metadata() } else { Vec::new() },
            member_id: member_id.to_string(),
            generation: g.generation,
            protocol_type: g.protocol_type.clone(),
            protocol_name: g.protocol_name.clone(),
            leader: g.leader.clone().unwrap_or_default(),
            skip_assignment: false,
            error: NONE,
        }
    }

    /// `addMemberAndRebalance` (GC 1264-1295).
    fn add_member_and_rebalance(
        &mut self,
        now: Instant,
        g: &mut Group,
        reply: ReplyTo,
        member_id: String,
        a: JoinArgs,
    ) {
        let member = Member {
            id: member_id.clone(),
            instance_id: a.instance_id,
            client_id: a.client_id,
            client_host: CLIENT_HOST.to_string(),
            rebalance_timeout_ms: a.rebalance_timeout_ms,
            session_timeout_ms: a.session_timeout_ms,
            protocol_type: a.protocol_type,
            protocols: a.protocols,
            assignment: Bytes::new(),
            awaiting_join: Some(reply),
            awaiting_sync: None,
            is_new: true,
            heartbeat_deadline: None,
        };
        // Only a brand-new group extends its initial delay (GC 1281-1282).
        if g.is(GroupState::PreparingRebalance) && g.generation == 0 {
            g.new_member_added = true;
        }
        g.add(member);
        // New members are armed with the 5-minute NewMemberJoinTimeoutMs (GC 1286-1292).
        let timeout = self.config.new_member_join_timeout;
        self.arm(now, g, &member_id, timeout);
        self.maybe_prepare_rebalance(now, g);
    }

    /// `updateStaticMemberAndRebalance` (GC 1297-1409, §6.2.1).
    #[allow(clippy::too_many_arguments)]
    fn update_static_member_and_rebalance(
        &mut self,
        now: Instant,
        g: &mut Group,
        reply: ReplyTo,
        old_id: &str,
        new_id: &str,
        instance: &str,
        a: JoinArgs,
    ) {
        let current_leader = g.leader.clone().unwrap_or_default();
        let (old_join, old_sync) = g.replace_static_member(instance, old_id, new_id);
        if let Some(r) = old_join {
            self.reply_join(now, r, JoinResult::error(old_id.to_string(), FENCED_INSTANCE_ID));
        }
        if let Some(r) = old_sync {
            self.reply_sync(now, r, SyncResult::error(FENCED_INSTANCE_ID));
        }
        // Re-armed with the member's previous session timeout, before the update (GC 1314).
        self.arm_session(now, g, new_id);
        g.update_member(new_id, a.protocols, a.rebalance_timeout_ms, a.session_timeout_ms, Some(reply));
        match g.state {
            GroupState::Stable => {
                if g.protocol_name == g.select_protocol() {
                    // No rebalance, same generation; the group record is stored again.
                    self.store_group(g);
                    self.rename_in_history(g, old_id, new_id);
                    let Some(reply) = g.get_mut(new_id).and_then(|m| m.awaiting_join.take()) else {
                        return;
                    };
                    let result = if a.support_skipping_assignment {
                        let is_leader = g.is_leader(new_id);
                        let mut result = self.current_join_result(g, new_id, is_leader);
                        result.skip_assignment = is_leader;
                        result
                    } else {
                        // Below v9 the old leader id is returned so that a returning leader
                        // does not assign (§11 item 7).
                        let mut result = self.current_join_result(g, new_id, false);
                        result.leader = current_leader;
                        result
                    };
                    self.reply_join(now, reply, result);
                } else {
                    self.maybe_prepare_rebalance(now, g);
                }
            }
            GroupState::CompletingRebalance => self.prepare_rebalance(now, g),
            GroupState::PreparingRebalance => {}
            GroupState::Empty | GroupState::Dead => {
                // IllegalStateException in Kafka: answered with the generic error response.
                if let Some(reply) = g.get_mut(new_id).and_then(|m| m.awaiting_join.take()) {
                    self.reply_join(now, reply, JoinResult::error(String::new(), UNKNOWN_SERVER_ERROR));
                }
            }
        }
    }

    /// `updateMemberAndRebalance`.
    fn update_member_and_rebalance(&mut self, now: Instant, g: &mut Group, reply: ReplyTo, a: JoinArgs) {
        g.update_member(&a.member_id, a.protocols, a.rebalance_timeout_ms, a.session_timeout_ms, Some(reply));
        self.maybe_prepare_rebalance(now, g);
    }

    pub(crate) fn reply_join(&mut self, now: Instant, reply: ReplyTo, result: JoinResult) {
        let response = join_response(reply.version(), result);
        self.emit(now, reply, ResponseKind::JoinGroup(response), None);
    }

    pub(crate) fn reply_sync(&mut self, now: Instant, reply: ReplyTo, result: SyncResult) {
        let response = sync_response(reply.version(), result);
        self.emit(now, reply, ResponseKind::SyncGroup(response), None);
    }

    // ----------------------------------------------------------------------------------
    // Rebalance machinery (§4.3, §8)

    fn maybe_prepare_rebalance(&mut self, now: Instant, g: &mut Group) {
        if g.state.can_rebalance() {
            self.prepare_rebalance(now, g);
        }
    }

    /// `prepareRebalance` (GC 1430-1455).
    pub(crate) fn prepare_rebalance(&mut self, now: Instant, g: &mut Group) {
        // Parked SyncGroups are answered REBALANCE_IN_PROGRESS (GC 1432-1433).
        if g.is(GroupState::CompletingRebalance) {
            self.reset_and_propagate_assignment_error(now, g, REBALANCE_IN_PROGRESS);
        }
        g.pending_sync.clear();
        g.sync_timer = None;
        let rebalance_timeout = millis(g.rebalance_timeout_ms());
        let timer = if g.is(GroupState::Empty) {
            // InitialDelayedJoin: only from Empty (GC 1438-1444).
            let delay = self.config.initial_rebalance_delay;
            JoinTimer::Initial {
                deadline: now + delay,
                configured: delay,
                delay,
                remaining: rebalance_timeout.saturating_sub(delay),
            }
        } else {
            JoinTimer::Normal { deadline: now + rebalance_timeout }
        };
        g.transition_to(GroupState::PreparingRebalance);
        g.join_timer = Some(timer);
        // tryCompleteElseWatch: a DelayedJoin may complete at once.
        self.check_join(now, g);
    }

    /// `checkAndComplete(GroupJoinKey)`: a DelayedJoin completes once every member rejoined
    /// and there is no pending member (GM 389, GC 1479-1485). The initial delay never does.
    pub(crate) fn check_join(&mut self, now: Instant, g: &mut Group) {
        if matches!(g.join_timer, Some(JoinTimer::Normal { .. })) && g.has_all_members_joined() {
            g.join_timer = None;
            self.on_complete_join(now, g);
        }
    }

    /// A join-phase timer expired (DJ 34-94).
    pub(crate) fn on_join_timer(&mut self, at: Instant, g: &mut Group, timer: JoinTimer) {
        match timer {
            JoinTimer::Initial { configured, delay, remaining, .. } if g.new_member_added && !remaining.is_zero() => {
                // Extend by min(delay, remaining) while new members keep arriving (§4.3).
                g.new_member_added = false;
                let next_delay = configured.min(remaining);
                g.join_timer = Some(JoinTimer::Initial {
                    deadline: at + next_delay,
                    configured,
                    delay: next_delay,
                    remaining: remaining.saturating_sub(delay),
                });
            }
            _ => self.on_complete_join(at, g),
        }
    }

    /// `onCompleteJoin` (GC 1487-1555).
    fn on_complete_join(&mut self, now: Instant, g: &mut Group) {
        // Dynamic members that did not rejoin are removed; static ones stay (§8).
        let not_rejoined: Vec<String> = g
            .members
            .iter()
            .filter(|m| !m.is_awaiting_join() && m.instance_id.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in not_rejoined {
            g.remove(&id);
        }
        if g.is(GroupState::Dead) {
            return;
        }
        if !g.maybe_elect_new_joined_leader() && !g.members.is_empty() {
            // Only non-rejoined static members remain: wait another rebalance timeout
            // (GC 1502-1509). At least 1 ms, like the purgatory's tick.
            let wait = millis(g.rebalance_timeout_ms()).max(Duration::from_millis(1));
            g.join_timer = Some(JoinTimer::Normal { deadline: now + wait });
            return;
        }
        g.init_next_generation();
        if g.is(GroupState::Empty) {
            self.store_group(g);
            return;
        }
        let leader = g.leader.clone().unwrap_or_default();
        let ids: Vec<String> = g.members.iter().map(|m| m.id.clone()).collect();
        for id in ids {
            let result = self.current_join_result(g, &id, id == leader);
            if let Some(reply) = g.get_mut(&id).and_then(|m| m.awaiting_join.take()) {
                self.reply_join(now, reply, result);
            }
            self.arm_session(now, g, &id);
            if let Some(m) = g.get_mut(&id) {
                m.is_new = false;
            }
            g.pending_sync.insert(id);
        }
        // DelayedSync: members that do not SyncGroup within the rebalance timeout are removed.
        g.sync_timer = Some(SyncTimer { deadline: now + millis(g.rebalance_timeout_ms()), generation: g.generation });
    }

    fn reset_and_propagate_assignment_error(&mut self, now: Instant, g: &mut Group, error: i16) {
        for m in &mut g.members {
            m.assignment = Bytes::new();
        }
        self.propagate_assignment(now, g, error);
    }

    /// `propagateAssignment` (GC 1213-1228): parked SyncGroups are answered and re-armed.
    fn propagate_assignment(&mut self, now: Instant, g: &mut Group, error: i16) {
        let (protocol_type, protocol_name) =
            if error == NONE { (g.protocol_type.clone(), g.protocol_name.clone()) } else { (None, None) };
        let ids: Vec<String> = g.members.iter().map(|m| m.id.clone()).collect();
        for id in ids {
            let Some(m) = g.get_mut(&id) else { continue };
            let Some(reply) = m.awaiting_sync.take() else {
                continue;
            };
            let result = SyncResult {
                protocol_type: protocol_type.clone(),
                protocol_name: protocol_name.clone(),
                assignment: m.assignment.clone(),
                error,
            };
            self.reply_sync(now, reply, result);
            self.arm_session(now, g, &id);
        }
    }

    /// `completeAndScheduleNextExpiration`. A member blocked in JoinGroup or SyncGroup (and
    /// not new) satisfies the new DelayedHeartbeat at once, so no timer is left (MM 93-104).
    fn arm(&mut self, now: Instant, g: &mut Group, member_id: &str, timeout: Duration) {
        if let Some(m) = g.get_mut(member_id) {
            m.heartbeat_deadline =
                if !m.is_new && (m.is_awaiting_join() || m.is_awaiting_sync()) { None } else { Some(now + timeout) };
        }
    }

    /// `completeAndScheduleNextHeartbeatExpiration`: re-armed for the session timeout.
    pub(crate) fn arm_session(&mut self, now: Instant, g: &mut Group, member_id: &str) {
        let Some(session) = g.get(member_id).map(|m| millis(m.session_timeout_ms)) else {
            return;
        };
        self.arm(now, g, member_id, session);
    }

    /// `onExpireHeartbeat` (GC 1655-1676).
    pub(crate) fn on_expire_heartbeat(&mut self, now: Instant, g: &mut Group, member_id: &str) {
        if g.is(GroupState::Dead) {
            return;
        }
        let Some(m) = g.get(member_id) else { return };
        let satisfied = !m.is_new && (m.is_awaiting_join() || m.is_awaiting_sync());
        if !satisfied {
            self.remove_member_and_update_group(now, g, member_id);
        }
    }

    /// A MEMBER_ID_REQUIRED id expired: dropped, join completion re-checked (GC 1674-1676).
    pub(crate) fn on_expire_pending(&mut self, now: Instant, g: &mut Group, member_id: &str) {
        if g.pending_members.remove(member_id).is_none() || g.is(GroupState::Dead) {
            return;
        }
        self.remove_pending_member_and_update_group(now, g, member_id);
    }

    /// `removeMemberAndUpdateGroup` (GC 1457-1469).
    pub(crate) fn remove_member_and_update_group(&mut self, now: Instant, g: &mut Group, member_id: &str) {
        if let Some(reply) = g.get_mut(member_id).and_then(|m| m.awaiting_join.take()) {
            self.reply_join(now, reply, JoinResult::error(String::new(), UNKNOWN_MEMBER_ID));
        }
        g.remove(member_id);
        match g.state {
            GroupState::Stable | GroupState::CompletingRebalance => self.maybe_prepare_rebalance(now, g),
            GroupState::PreparingRebalance => self.check_join(now, g),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    fn remove_pending_member_and_update_group(&mut self, now: Instant, g: &mut Group, member_id: &str) {
        g.remove(member_id);
        if g.is(GroupState::PreparingRebalance) {
            self.check_join(now, g);
        }
    }

    /// `removePendingSyncMember` + `maybeCompleteSyncExpiration`.
    fn remove_pending_sync_member(&mut self, g: &mut Group, member_id: &str) {
        g.pending_sync.remove(member_id);
        if let Some(t) = g.sync_timer {
            let done = t.generation != g.generation
                || matches!(g.state, GroupState::Dead | GroupState::Empty | GroupState::PreparingRebalance)
                || g.pending_sync.is_empty();
            if done {
                g.sync_timer = None;
            }
        }
    }

    /// `onExpirePendingSync` (GC 1608-1639): members that never synced are removed, even in
    /// Stable, and a rebalance starts (§11 item 8).
    pub(crate) fn on_expire_pending_sync(&mut self, now: Instant, g: &mut Group, generation: i32) {
        if generation != g.generation {
            return;
        }
        if matches!(g.state, GroupState::CompletingRebalance | GroupState::Stable) && !g.pending_sync.is_empty() {
            let pending: Vec<String> = g.pending_sync.iter().cloned().collect();
            for id in pending {
                g.remove(&id);
            }
            self.prepare_rebalance(now, g);
        }
    }

    fn store_group(&mut self, g: &Group) {
        self.log.insert(g.id.clone(), StoredGroup::of(g));
    }

    fn rename_in_history(&mut self, g: &Group, old_id: &str, new_id: &str) {
        let generation = g.generation;
        let history = self.history_mut(&g.id);
        let Some((_, latest)) = history.iter().rev().find(|(gen, _)| *gen == generation) else {
            return;
        };
        let mut renamed = latest.clone();
        if let Some(partitions) = renamed.remove(old_id) {
            renamed.insert(new_id.to_string(), partitions);
        }
        history.push((generation, renamed));
    }

    // ----------------------------------------------------------------------------------
    // SyncGroup (§6.3)

    pub(crate) fn handle_sync_group(&mut self, now: Instant, reply: ReplyTo, r: SyncGroupRequest) {
        // v5+: ProtocolType and ProtocolName are mandatory, checked first (KA 1748-1751).
        if reply.version() >= 5 && (r.protocol_type.is_none() || r.protocol_name.is_none()) {
            return self.reply_sync(now, reply, SyncResult::error(INCONSISTENT_GROUP_PROTOCOL));
        }
        let group_id = r.group_id.to_string();
        match self.validate_group_status(&group_id, GroupApi::Sync) {
            // A loading coordinator lost the rebalance: rejoin (GC 515-520).
            Some(COORDINATOR_LOAD_IN_PROGRESS) => {
                return self.reply_sync(now, reply, SyncResult::error(REBALANCE_IN_PROGRESS))
            }
            Some(error) => return self.reply_sync(now, reply, SyncResult::error(error)),
            None => {}
        }
        if !self.groups.contains_key(&group_id) {
            return self.reply_sync(now, reply, SyncResult::error(UNKNOWN_MEMBER_ID));
        }
        self.with_group(&group_id, |c, g| c.do_sync_group(now, g, reply, r));
    }

    fn do_sync_group(&mut self, now: Instant, g: &mut Group, reply: ReplyTo, r: SyncGroupRequest) {
        let member_id = r.member_id.to_string();
        let instance_id = r.group_instance_id.as_ref().map(|s| s.to_string());
        let error = if g.is(GroupState::Dead) {
            Some(COORDINATOR_NOT_AVAILABLE)
        } else {
            g.validate_current_member(&member_id, instance_id.as_deref())
                .or_else(|| (r.generation_id != g.generation).then_some(ILLEGAL_GENERATION))
                .or_else(|| {
                    let type_differs =
                        r.protocol_type.as_ref().is_some_and(|t| g.protocol_type.as_deref() != Some(t.as_str()));
                    let name_differs =
                        r.protocol_name.as_ref().is_some_and(|n| g.protocol_name.as_deref() != Some(n.as_str()));
                    (type_differs || name_differs).then_some(INCONSISTENT_GROUP_PROTOCOL)
                })
        };
        if let Some(error) = error {
            return self.reply_sync(now, reply, SyncResult::error(error));
        }
        match g.state {
            GroupState::Empty => self.reply_sync(now, reply, SyncResult::error(UNKNOWN_MEMBER_ID)),
            GroupState::PreparingRebalance => self.reply_sync(now, reply, SyncResult::error(REBALANCE_IN_PROGRESS)),
            GroupState::CompletingRebalance => {
                if let Some(m) = g.get_mut(&member_id) {
                    m.awaiting_sync = Some(reply);
                }
                self.remove_pending_sync_member(g, &member_id);
                if g.is_leader(&member_id) {
                    // Later entries win, like the Scala map builder; members left out get an
                    // empty assignment; unknown ids are ignored (§6.3).
                    let assignments: BTreeMap<String, Bytes> =
                        r.assignments.iter().map(|a| (a.member_id.to_string(), a.assignment.clone())).collect();
                    for m in &mut g.members {
                        m.assignment = assignments.get(&m.id).cloned().unwrap_or_default();
                    }
                    // The store always succeeds here; the record carries the assignment.
                    self.store_group(g);
                    let decoded: Assignment =
                        g.members.iter().map(|m| (m.id.clone(), decode_assignment(&m.assignment))).collect();
                    let generation = g.generation;
                    self.history_mut(&g.id).push((generation, decoded));
                    self.propagate_assignment(now, g, NONE);
                    g.transition_to(GroupState::Stable);
                }
            }
            GroupState::Stable => {
                self.remove_pending_sync_member(g, &member_id);
                let assignment = g.get(&member_id).map(|m| m.assignment.clone()).unwrap_or_default();
                let result = SyncResult {
                    protocol_type: g.protocol_type.clone(),
                    protocol_name: g.protocol_name.clone(),
                    assignment,
                    error: NONE,
                };
                self.reply_sync(now, reply, result);
                self.arm_session(now, g, &member_id);
            }
            GroupState::Dead => self.reply_sync(now, reply, SyncResult::error(COORDINATOR_NOT_AVAILABLE)),
        }
    }

    // ----------------------------------------------------------------------------------
    // Heartbeat (§6.4)

    pub(crate) fn handle_heartbeat(&mut self, now: Instant, reply: ReplyTo, r: HeartbeatRequest) {
        let group_id = r.group_id.to_string();
        let code = match self.validate_group_status(&group_id, GroupApi::Heartbeat) {
            // "respond blindly" while loading (GC 842-846).
            Some(COORDINATOR_LOAD_IN_PROGRESS) => NONE,
            Some(error) => error,
            None => self.with_group(&group_id, |c, g| c.do_heartbeat(now, g, &r)).unwrap_or(UNKNOWN_MEMBER_ID),
        };
        let response = HeartbeatResponse::default().with_error_code(code);
        self.emit(now, reply, ResponseKind::Heartbeat(response), None);
    }

    fn do_heartbeat(&mut self, now: Instant, g: &mut Group, r: &HeartbeatRequest) -> i16 {
        if g.is(GroupState::Dead) {
            return COORDINATOR_NOT_AVAILABLE;
        }
        let member_id = r.member_id.to_string();
        let instance_id = r.group_instance_id.as_ref().map(|s| s.to_string());
        if let Some(error) = g.validate_current_member(&member_id, instance_id.as_deref()) {
            return error;
        }
        if r.generation_id != g.generation {
            return ILLEGAL_GENERATION;
        }
        match g.state {
            GroupState::Empty => UNKNOWN_MEMBER_ID,
            // The GM 60 doc comment says REBALANCE_IN_PROGRESS; the code says NONE (§11 item 2).
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.arm_session(now, g, &member_id);
                NONE
            }
            GroupState::PreparingRebalance => {
                self.arm_session(now, g, &member_id);
                REBALANCE_IN_PROGRESS
            }
            GroupState::Dead => COORDINATOR_NOT_AVAILABLE,
        }
    }

    // ----------------------------------------------------------------------------------
    // LeaveGroup (§6.5)

    pub(crate) fn handle_leave_group(&mut self, now: Instant, reply: ReplyTo, r: LeaveGroupRequest) {
        let version = reply.version();
        let group_id = r.group_id.to_string();
        // v0-2 carry one member id (LeaveGroupRequest.normalizedData).
        let identities: Vec<(String, Option<String>)> = if version < 3 {
            vec![(r.member_id.to_string(), None)]
        } else {
            r.members
                .iter()
                .map(|m| (m.member_id.to_string(), m.group_instance_id.as_ref().map(|s| s.to_string())))
                .collect()
        };
        let (top, results): (i16, Vec<i16>) =
            if let Some(error) = self.validate_group_status(&group_id, GroupApi::Leave) {
                (error, Vec::new())
            } else {
                match self.with_group(&group_id, |c, g| c.do_leave_group(now, g, &identities)) {
                    Some(result) => result,
                    // Unknown group: top-level NONE, every member UNKNOWN_MEMBER_ID.
                    None => (NONE, vec![UNKNOWN_MEMBER_ID; identities.len()]),
                }
            };
        let response = if version >= 3 {
            LeaveGroupResponse::default().with_error_code(top).with_members(
                identities
                    .iter()
                    .zip(&results)
                    .map(|((member_id, instance_id), code)| {
                        MemberResponse::default()
                            .with_member_id(StrBytes::from_string(member_id.clone()))
                            .with_group_instance_id(instance_id.clone().map(StrBytes::from_string))
                            .with_error_code(*code)
                    })
                    .collect(),
            )
        } else {
            // Modelled on 3.6.1+ (KAFKA-15755): a top-level error is kept, otherwise the
            // single member's error is folded in (§6.5, §11 item 9).
            let code = if top != NONE { top } else { results.first().copied().unwrap_or(NONE) };
            LeaveGroupResponse::default().with_error_code(code)
        };
        self.emit(now, reply, ResponseKind::LeaveGroup(response), None);
    }

    fn do_leave_group(
        &mut self,
        now: Instant,
        g: &mut Group,
        identities: &[(String, Option<String>)],
    ) -> (i16, Vec<i16>) {
        if g.is(GroupState::Dead) {
            return (COORDINATOR_NOT_AVAILABLE, Vec::new());
        }
        let mut results = Vec::with_capacity(identities.len());
        for (member_id, instance_id) in identities {
            let code = if member_id.is_empty() {
                // Admin removal of a static member by instance id (GCT 3221-3279).
                match instance_id.as_ref().and_then(|i| g.static_members.get(i).cloned()) {
                    Some(current) => {
                        self.remove_member_and_update_group(now, g, &current);
                        NONE
                    }
                    None => UNKNOWN_MEMBER_ID,
                }
            } else if g.is_pending_member(member_id) {
                self.remove_pending_member_and_update_group(now, g, member_id);
                NONE
            } else {
                match g.validate_current_member(member_id, instance_id.as_deref()) {
                    Some(error) => error,
                    None => {
                        // No generation check (§6.5).
                        self.remove_member_and_update_group(now, g, member_id);
                        NONE
                    }
                }
            };
            results.push(code);
        }
        (NONE, results)
    }

    // ----------------------------------------------------------------------------------
    // Coordinator moves (§9)

    /// `onGroupUnloaded` (GC 1139-1163).
    pub(crate) fn on_group_unloaded(&mut self, now: Instant, g: &mut Group) {
        let previous = g.state;
        g.transition_to(GroupState::Dead);
        let ids: Vec<String> = g.members.iter().map(|m| m.id.clone()).collect();
        for id in ids {
            let Some(m) = g.get_mut(&id) else { continue };
            match previous {
                GroupState::PreparingRebalance => {
                    if let Some(reply) = m.awaiting_join.take() {
                        self.reply_join(now, reply, JoinResult::error(id.clone(), NOT_COORDINATOR));
                    }
                }
                GroupState::Stable | GroupState::CompletingRebalance => {
                    if let Some(reply) = m.awaiting_sync.take() {
                        self.reply_sync(now, reply, SyncResult::error(NOT_COORDINATOR));
                    }
                }
                GroupState::Empty | GroupState::Dead => {}
            }
        }
        for m in &mut g.members {
            m.heartbeat_deadline = None;
        }
        g.pending_members.clear();
        g.join_timer = None;
        g.sync_timer = None;
        g.pending_sync.clear();
    }

    /// `onGroupLoaded` (GC 1165-1176).
    pub(crate) fn on_group_loaded(&mut self, now: Instant, g: &mut Group) {
        if g.members.len() > self.config.max_group_size {
            self.prepare_rebalance(now, g);
        }
        let ids: Vec<String> = g.members.iter().map(|m| m.id.clone()).collect();
        for id in ids {
            self.arm_session(now, g, &id);
        }
    }
}
