//! Unit tests of the membership state machine.
//!
//! The machine is driven directly with hand-built `kafka-protocol` responses in virtual time
//! (a base instant plus offsets): no coordinator model and no IO. Expected reactions follow
//! kafka36-group-semantics.md section 10 (Java 3.6) and DESIGN section 4, with our documented
//! deviations (OffsetFetch COORDINATOR_NOT_AVAILABLE is retried, T53a; SyncGroup
//! UNKNOWN_SERVER_ERROR backs off and rejoins, T25b).
//!
//! This file holds the response builders and the harness. What every (API, error code) makes
//! the member do is driven row by row through the reaction table in `reactions.rs`; the files
//! per API or topic test what an answer carries besides its code, and sequences.

use std::time::{Duration, Instant};

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartitions, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, GroupId, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse,
    LeaveGroupRequest, LeaveGroupResponse, OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest,
    OffsetFetchResponse, SyncGroupRequest, SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::events::{LeaveReason, OffsetFetchId, StateKind};
use super::machine::subscription_metadata;
use super::*;
use crate::protocol::consumer_protocol::{encode_assignment, Subscription};
use crate::protocol::error_code::codes::*;
use crate::protocol::error_code::KafkaCode;
use crate::protocol::versions::NegotiatedVersions;

const MS: Duration = Duration::from_millis(1);
const BACKOFF: Duration = Duration::from_millis(100);
const HEARTBEAT: Duration = Duration::from_secs(3);

// ---- builders ----

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_owned())
}

fn tp(partition: i32) -> TopicPartition {
    TopicPartition::new("t", partition)
}

fn tps(partitions: &[i32]) -> Vec<TopicPartition> {
    partitions.iter().map(|&p| tp(p)).collect()
}

fn gen(id: i32, member: &str) -> Generation {
    Generation { id: GenerationId(id), member_id: MemberId::new(member) }
}

/// The ranges a Kafka 3.6 broker advertises (section 2.1).
fn kafka36_versions() -> NegotiatedVersions {
    let ranges = [
        (ApiKey::FindCoordinator, 0, 4),
        (ApiKey::JoinGroup, 0, 9),
        (ApiKey::SyncGroup, 0, 5),
        (ApiKey::Heartbeat, 0, 4),
        (ApiKey::LeaveGroup, 0, 5),
        (ApiKey::OffsetCommit, 0, 8),
        (ApiKey::OffsetFetch, 0, 8),
    ];
    negotiated(&ranges)
}

/// The versions negotiated with a broker advertising `ranges`.
fn negotiated(ranges: &[(ApiKey, i16, i16)]) -> NegotiatedVersions {
    NegotiatedVersions::negotiate(
        &ApiVersionsResponse::default().with_api_keys(
            ranges
                .iter()
                .map(|&(k, min, max)| {
                    ApiVersion::default().with_api_key(k as i16).with_min_version(min).with_max_version(max)
                })
                .collect(),
        ),
    )
}

fn join_response(code: i16, generation: i32, member: &str, leader: &str) -> JoinGroupResponse {
    JoinGroupResponse::default()
        .with_error_code(code)
        .with_generation_id(generation)
        .with_member_id(s(member))
        .with_leader(s(leader))
        .with_protocol_type(Some(s("consumer")))
        .with_protocol_name(Some(s("range")))
}

fn join_error(code: i16, member: &str) -> JoinGroupResponse {
    JoinGroupResponse::default()
        .with_error_code(code)
        .with_generation_id(-1)
        .with_member_id(s(member))
        .with_protocol_name(None)
}

fn sync_ok(partitions: &[i32]) -> SyncGroupResponse {
    SyncGroupResponse::default()
        .with_protocol_type(Some(s("consumer")))
        .with_protocol_name(Some(s("range")))
        .with_assignment(encode_assignment(&tps(partitions), None))
}

fn sync_error(code: i16) -> SyncGroupResponse {
    SyncGroupResponse::default().with_error_code(code)
}

fn heartbeat(code: i16) -> GroupResponse {
    GroupResponse::Heartbeat(HeartbeatResponse::default().with_error_code(code))
}

fn commit_response(codes: &[(i32, i16)]) -> GroupResponse {
    GroupResponse::OffsetCommit(OffsetCommitResponse::default().with_topics(vec![OffsetCommitResponseTopic::default()
            .with_name(TopicName(s("t")))
            .with_partitions(
                codes
                    .iter()
                    .map(|&(p, code)| {
                        OffsetCommitResponsePartition::default().with_partition_index(p).with_error_code(code)
                    })
                    .collect(),
            )]))
}

/// An OffsetFetch v8 answer: group-level code and `(partition, offset, code)` rows.
fn fetch_response(group_code: i16, rows: &[(i32, i64, i16)]) -> GroupResponse {
    let partitions = rows
        .iter()
        .map(|&(p, offset, code)| {
            OffsetFetchResponsePartitions::default()
                .with_partition_index(p)
                .with_committed_offset(offset)
                .with_committed_leader_epoch(-1)
                .with_metadata(Some(s("")))
                .with_error_code(code)
        })
        .collect();
    GroupResponse::OffsetFetch(OffsetFetchResponse::default().with_groups(vec![
        OffsetFetchResponseGroup::default().with_group_id(GroupId(s("g"))).with_error_code(group_code).with_topics(
            vec![OffsetFetchResponseTopics::default().with_name(TopicName(s("t"))).with_partitions(partitions)],
        ),
    ]))
}

fn config() -> GroupConfig {
    GroupConfig::new("g")
}

fn static_config() -> GroupConfig {
    let mut c = config();
    c.group_instance_id = Some("i1".into());
    c
}

fn rejected(api: &'static str, code: i16) -> GroupError {
    GroupError::Rejected { api, code: KafkaCode(code), context: "g".into() }
}

fn fenced_instance() -> GroupError {
    GroupError::FencedInstanceId { instance_id: "i1".into() }
}

fn committed(generation: i32, restamped_from: Option<i32>) -> CommitOutcome {
    CommitOutcome::Committed { generation: GenerationId(generation), restamped_from: restamped_from.map(GenerationId) }
}

fn failed(reason: CommitFailure) -> CommitOutcome {
    CommitOutcome::Failed { reason }
}

fn result(partition: i32, offset: i64, outcome: CommitOutcome) -> PartitionCommit {
    PartitionCommit { partition: tp(partition), offset, outcome }
}

/// `(partition, offset)` pairs of an OffsetCommit request.
fn commit_offsets(request: &OffsetCommitRequest) -> Vec<(i32, i64)> {
    request.topics.iter().flat_map(|t| t.partitions.iter().map(|p| (p.partition_index, p.committed_offset))).collect()
}

// ---- harness ----

/// Drives one machine in virtual time and collects what it emits.
struct Harness {
    m: GroupMachine,
    base: Instant,
    now: Instant,
    outbox: Vec<OutgoingRequest>,
    events: Vec<GroupEvent>,
}

impl Harness {
    fn new() -> Self {
        Self::with_config(config())
    }

    fn with_config(config: GroupConfig) -> Self {
        // The one clock read: the origin of virtual time. Everything after is base + offset.
        let base = Instant::now();
        let mut m = GroupMachine::new(config, ["t"], base);
        m.set_partition_counts([("t".to_string(), 4)]);
        let mut h = Harness { m, base, now: base, outbox: Vec::new(), events: Vec::new() };
        h.pump();
        h
    }

    /// A dynamic member, Stable in generation 1 as follower `m-1` owning t-0 and t-1; the
    /// requests and events of getting there are drained.
    fn stable() -> Self {
        Self::stable_with(config())
    }

    fn stable_with(config: GroupConfig) -> Self {
        let mut h = Self::with_config(config);
        h.found();
        h.two_step_join("m-1");
        h.join_and_sync(1, &[0, 1]);
        assert_eq!(h.m.state(), StateKind::Stable);
        h.outbox.clear();
        h.events.clear();
        h
    }

    /// Moves the machine's outputs into the harness; checks that no timer is left in the past
    /// (a driver sleeping until a past instant would spin).
    fn pump(&mut self) {
        while let Some(request) = self.m.poll_request() {
            self.outbox.push(request);
        }
        while let Some((at, event)) = self.m.poll_event() {
            assert_eq!(at, self.now, "events carry the time of the input that caused them");
            self.events.push(event);
        }
        if let Some(at) = self.m.poll_timeout() {
            assert!(
                at > self.now,
                "timer {:?} is {:?} in the past at {:?}",
                self.m.snapshot(self.now).next_timer,
                self.now - at,
                self.elapsed()
            );
        }
    }

    fn elapsed(&self) -> Duration {
        self.now - self.base
    }

    /// Lets `d` pass in one step.
    fn advance(&mut self, d: Duration) {
        self.now += d;
        self.m.handle_timeout(self.now);
        self.pump();
    }

    /// Lets time pass up to `until` (since base), firing every timer on the way; heartbeats
    /// are answered NONE at once.
    fn run_until(&mut self, until: Duration) {
        loop {
            if let Some(r) = self.try_take("Heartbeat") {
                self.respond(r.id, heartbeat(NONE));
                continue;
            }
            match self.m.poll_timeout() {
                Some(at) if at <= self.base + until => {
                    self.now = at;
                    self.m.handle_timeout(at);
                    self.pump();
                }
                _ => break,
            }
        }
        if self.base + until > self.now {
            self.advance(self.base + until - self.now);
        }
    }

    fn apis(&self) -> Vec<&'static str> {
        self.outbox.iter().map(|r| r.body.api_name()).collect()
    }

    fn count(&self, api: &str) -> usize {
        self.outbox.iter().filter(|r| r.body.api_name() == api).count()
    }

    fn try_take(&mut self, api: &str) -> Option<OutgoingRequest> {
        let at = self.outbox.iter().position(|r| r.body.api_name() == api)?;
        Some(self.outbox.remove(at))
    }

    fn take(&mut self, api: &str) -> OutgoingRequest {
        let pending = self.apis();
        self.try_take(api).unwrap_or_else(|| panic!("no {api} pending at {:?}; pending: {pending:?}", self.elapsed()))
    }

    fn take_join(&mut self) -> (RequestId, i16, JoinGroupRequest) {
        let r = self.take("JoinGroup");
        match r.body {
            GroupRequest::JoinGroup(b) => (r.id, r.version, b),
            _ => unreachable!(),
        }
    }

    fn take_sync(&mut self) -> (RequestId, i16, SyncGroupRequest) {
        let r = self.take("SyncGroup");
        match r.body {
            GroupRequest::SyncGroup(b) => (r.id, r.version, b),
            _ => unreachable!(),
        }
    }

    fn take_heartbeat(&mut self) -> (RequestId, HeartbeatRequest) {
        let r = self.take("Heartbeat");
        match r.body {
            GroupRequest::Heartbeat(b) => (r.id, b),
            _ => unreachable!(),
        }
    }

    fn take_commit(&mut self) -> (RequestId, i16, OffsetCommitRequest) {
        let r = self.take("OffsetCommit");
        match r.body {
            GroupRequest::OffsetCommit(b) => (r.id, r.version, b),
            _ => unreachable!(),
        }
    }

    fn take_fetch(&mut self) -> (RequestId, i16, OffsetFetchRequest) {
        let r = self.take("OffsetFetch");
        match r.body {
            GroupRequest::OffsetFetch(b) => (r.id, r.version, b),
            _ => unreachable!(),
        }
    }

    fn take_leave(&mut self) -> (RequestId, i16, LeaveGroupRequest) {
        let r = self.take("LeaveGroup");
        match r.body {
            GroupRequest::LeaveGroup(b) => (r.id, r.version, b),
            _ => unreachable!(),
        }
    }

    fn respond(&mut self, id: RequestId, response: GroupResponse) {
        self.m.handle_response(self.now, id, response);
        self.pump();
    }

    fn respond_join(&mut self, id: RequestId, response: JoinGroupResponse) {
        self.respond(id, GroupResponse::JoinGroup(response));
    }

    fn respond_sync(&mut self, id: RequestId, response: SyncGroupResponse) {
        self.respond(id, GroupResponse::SyncGroup(response));
    }

    /// Answers the pending FindCoordinator: node 1 with Kafka 3.6's versions.
    fn found(&mut self) {
        self.found_with(kafka36_versions());
    }

    fn found_with(&mut self, versions: NegotiatedVersions) {
        let r = self.take("FindCoordinator");
        self.m.handle_coordinator_found(self.now, r.id, CoordinatorFound { node_id: 1, versions });
        self.pump();
    }

    /// The KIP-394 first step: the empty-id join gets MEMBER_ID_REQUIRED with `member`.
    fn two_step_join(&mut self, member: &str) {
        let (id, _, join) = self.take_join();
        assert_eq!(join.member_id.as_str(), "");
        self.respond_join(id, join_error(MEMBER_ID_REQUIRED, member));
    }

    /// Answers the pending JoinGroup NONE (follower of `m-0`) and the SyncGroup with `partitions`.
    fn join_and_sync(&mut self, generation: i32, partitions: &[i32]) {
        let (id, _, join) = self.take_join();
        let member = join.member_id.to_string();
        assert!(!member.is_empty(), "joins after the first step carry the member id");
        self.respond_join(id, join_response(NONE, generation, &member, "m-0"));
        let (id, _, sync) = self.take_sync();
        assert_eq!(sync.generation_id, generation);
        self.respond_sync(id, sync_ok(partitions));
        assert_eq!(self.m.current_generation(), Some(&gen(generation, &member)));
    }

    /// Fires timers until a heartbeat is sent, then answers it with `code`.
    fn heartbeat_answered(&mut self, code: i16) -> HeartbeatRequest {
        for _ in 0..100 {
            if let Some(r) = self.try_take("Heartbeat") {
                let GroupRequest::Heartbeat(body) = r.body else { unreachable!() };
                self.respond(r.id, heartbeat(code));
                return body;
            }
            let at = self.m.poll_timeout().expect("a heartbeat timer");
            self.advance(at - self.now);
        }
        panic!("no heartbeat sent");
    }

    /// From Stable (eager): the coordinator announces a rebalance and the revoke handler
    /// finishes; the JoinGroup is in the outbox.
    fn revoke_and_rejoin(&mut self) {
        self.heartbeat_answered(REBALANCE_IN_PROGRESS);
        self.m.revoke_done(self.now);
        self.pump();
    }

    /// From Stable: the coordinator announces a rebalance, the revoke handler finishes, and
    /// the member joins `generation` and is assigned `partitions`.
    fn rebalance(&mut self, generation: i32, partitions: &[i32]) {
        self.heartbeat_answered(REBALANCE_IN_PROGRESS);
        assert_eq!(self.m.state(), StateKind::Revoking);
        self.m.revoke_done(self.now);
        self.pump();
        self.join_and_sync(generation, partitions);
        self.events.clear();
    }

    fn fatal(&self) -> Option<&GroupError> {
        self.events.iter().find_map(|e| match e {
            GroupEvent::Fatal(error) => Some(error),
            _ => None,
        })
    }

    fn commit(&mut self, leases: Vec<Lease>) -> CommitId {
        let id = self.m.commit(leases, self.now);
        self.pump();
        id
    }

    fn lease(&self, partition: i32, next_offset: i64) -> Lease {
        self.m.lease(&tp(partition), next_offset).expect("partition owned")
    }

    /// The CommitCompleted event of `id`, if reported.
    fn completed(&self, id: CommitId) -> Option<Vec<PartitionCommit>> {
        self.events.iter().find_map(|e| match e {
            GroupEvent::CommitCompleted { id: done, results } if *done == id => Some(results.clone()),
            _ => None,
        })
    }

    fn coordinator_events(&self) -> Vec<Option<i32>> {
        self.events
            .iter()
            .filter_map(|e| match e {
                GroupEvent::Coordinator { node_id, .. } => Some(*node_id),
                _ => None,
            })
            .collect()
    }

    fn lost(&self) -> Vec<Vec<TopicPartition>> {
        self.events
            .iter()
            .filter_map(|e| match e {
                GroupEvent::Lost { partitions, .. } => Some(partitions.clone()),
                _ => None,
            })
            .collect()
    }

    fn fetch(&mut self, partitions: &[i32]) -> OffsetFetchId {
        let id = self.m.fetch_committed(tps(partitions), self.now);
        self.pump();
        id
    }

    /// Fails the machine's FindCoordinator with `failure`.
    fn find_failed(&mut self, failure: RequestFailure) {
        let r = self.take("FindCoordinator");
        self.m.handle_request_failed(self.now, r.id, failure);
        self.pump();
    }

    fn counters(&self) -> GroupCounters {
        self.m.snapshot(self.now).counters
    }
}

/// The subscription a JoinGroup carries for its (single) protocol.
fn join_subscription(join: &JoinGroupRequest) -> Subscription {
    assert_eq!(join.protocols.len(), 1);
    assert_eq!(join.protocols[0].name.as_str(), "range");
    Subscription::decode(&join.protocols[0].metadata).expect("decodable subscription")
}

// ---- shared by several sections ----

fn coop_config() -> GroupConfig {
    let mut c = config();
    c.assignors = vec![super::assignor::assignor_by_name(COOP).expect("cooperative-sticky is built in")];
    c
}

fn sync_ok_with(protocol: &str, partitions: &[i32]) -> SyncGroupResponse {
    sync_ok(partitions).with_protocol_name(Some(s(protocol)))
}

/// The subscription a JoinGroup carries for `protocol`.
fn join_subscription_for(join: &JoinGroupRequest, protocol: &str) -> Subscription {
    let p = join.protocols.iter().find(|p| p.name.as_str() == protocol).expect("protocol offered");
    Subscription::decode(&p.metadata).expect("decodable subscription")
}

const COOP: &str = "cooperative-sticky";

fn with_protocol(r: JoinGroupResponse, protocol: &str) -> JoinGroupResponse {
    r.with_protocol_name(Some(s(protocol)))
}

fn assigned_event(events: &[GroupEvent]) -> Option<(Vec<OwnedPartition>, Vec<TopicPartition>, Vec<TopicPartition>)> {
    events.iter().rev().find_map(|e| match e {
        GroupEvent::Assigned { partitions, added, revoked, .. } => {
            Some((partitions.clone(), added.clone(), revoked.clone()))
        }
        _ => None,
    })
}

impl Harness {
    /// Answers the pending JoinGroup NONE (follower of `m-0`) selecting `protocol`, then the
    /// SyncGroup with `partitions`; returns the JoinGroup request.
    fn join_and_sync_with(&mut self, protocol: &str, generation: i32, partitions: &[i32]) -> JoinGroupRequest {
        let (id, _, join) = self.take_join();
        let member = join.member_id.to_string();
        self.respond_join(id, with_protocol(join_response(NONE, generation, &member, "m-0"), protocol));
        let (id, _, sync) = self.take_sync();
        assert_eq!(sync.generation_id, generation);
        self.respond_sync(id, sync_ok_with(protocol, partitions));
        join
    }

    /// A cooperative member, Stable in generation 1 as follower `m-1` owning t-0 and t-1.
    fn coop_stable() -> Self {
        let mut h = Self::with_config(coop_config());
        h.found();
        h.two_step_join("m-1");
        let join = h.join_and_sync_with(COOP, 1, &[0, 1]);
        let first = join_subscription_for(&join, COOP);
        assert!(first.owned_partitions.is_empty(), "nothing owned before the first generation");
        assert_eq!(h.m.state(), StateKind::Stable);
        h.outbox.clear();
        h.events.clear();
        h
    }
}

mod commit_queue;
mod consumer_protocol;
mod cooperative;
mod coordinator_connection;
mod find_coordinator;
mod heartbeat;
mod join_group;
mod leave_group;
mod manual;
mod max_poll_interval;
mod offset_commit;
mod offset_fetch;
mod ownership_gaps;
mod partition_counts;
mod reactions;
mod subscriptions;
mod sync_group;
mod timers;
