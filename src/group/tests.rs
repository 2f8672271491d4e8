//! Unit tests of the membership state machine: one test per (API, error code) reaction.
//!
//! The machine is driven directly with hand-built `kafka-protocol` responses in virtual time
//! (a base instant plus offsets): no coordinator model and no IO. Expected reactions follow
//! kafka36-group-semantics.md section 10 (Java 3.6) and DESIGN section 4, with our documented
//! deviations (OffsetFetch COORDINATOR_NOT_AVAILABLE is retried, T53a; SyncGroup
//! UNKNOWN_SERVER_ERROR backs off and rejoins, T25b).

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

use super::assignor::{encode_assignment, Subscription};
use super::events::{LeaveReason, OffsetFetchId, StateKind};
use super::machine::subscription_metadata;
use super::*;
use crate::protocol::error_code::KafkaCode;
use crate::protocol::versions::NegotiatedVersions;

// Error codes (kafka36-group-semantics.md section 2.2).
const NONE: i16 = 0;
const UNKNOWN_SERVER_ERROR: i16 = -1;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const REQUEST_TIMED_OUT: i16 = 7;
const OFFSET_METADATA_TOO_LARGE: i16 = 12;
const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
const COORDINATOR_NOT_AVAILABLE: i16 = 15;
const NOT_COORDINATOR: i16 = 16;
const ILLEGAL_GENERATION: i16 = 22;
const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
const INVALID_GROUP_ID: i16 = 24;
const UNKNOWN_MEMBER_ID: i16 = 25;
const INVALID_SESSION_TIMEOUT: i16 = 26;
const REBALANCE_IN_PROGRESS: i16 = 27;
const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
const GROUP_AUTHORIZATION_FAILED: i16 = 30;
const UNSUPPORTED_VERSION: i16 = 35;
const MEMBER_ID_REQUIRED: i16 = 79;
const GROUP_MAX_SIZE_REACHED: i16 = 81;
const FENCED_INSTANCE_ID: i16 = 82;
const UNSTABLE_OFFSET_COMMIT: i16 = 88;

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

// ---- FindCoordinator ----

#[test]
fn find_coordinator_is_the_first_request_and_found_leads_to_join() {
    let mut h = Harness::new();
    assert_eq!(h.apis(), vec!["FindCoordinator"]);
    let r = h.take("FindCoordinator");
    assert_eq!(r.body, GroupRequest::FindCoordinator { group_id: "g".into() });
    h.m.handle_coordinator_found(h.now, r.id, CoordinatorFound { node_id: 1, versions: kafka36_versions() });
    h.pump();
    assert_eq!(h.coordinator_events(), vec![Some(1)]);
    let (_, version, join) = h.take_join();
    assert_eq!(version, 9);
    assert_eq!(join.group_id.0.as_str(), "g");
    assert_eq!(join.member_id.as_str(), "");
    assert_eq!(join.protocol_type.as_str(), "consumer");
    assert_eq!(join.session_timeout_ms, 45_000);
    assert_eq!(join.rebalance_timeout_ms, 300_000);
    assert_eq!(join.group_instance_id, None);
    assert_eq!(join_subscription(&join).topics, vec!["t".to_string()]);
    assert_eq!(join_subscription(&join).generation, GenerationId::NONE);
    assert_eq!(h.m.snapshot(h.now).coordinator, Some(1));
}

#[test]
fn find_coordinator_not_available_is_retried_after_backoff() {
    // T02: a brand-new cluster answers COORDINATOR_NOT_AVAILABLE until __consumer_offsets exists.
    let mut h = Harness::new();
    h.find_failed(RequestFailure::Broker(KafkaCode(COORDINATOR_NOT_AVAILABLE)));
    assert_eq!(h.m.state(), StateKind::AwaitingJoin);
    assert_eq!(h.fatal(), None);
    assert!(h.outbox.is_empty());
    h.advance(BACKOFF - MS);
    assert!(h.outbox.is_empty(), "no FindCoordinator before the backoff");
    let at = h.m.poll_timeout().expect("backoff timer");
    h.advance(at - h.now);
    assert!(h.elapsed() >= BACKOFF);
    assert_eq!(h.apis(), vec!["FindCoordinator"]);
    h.find_failed(RequestFailure::Broker(KafkaCode(COORDINATOR_NOT_AVAILABLE)));
    h.run_until(h.elapsed() + Duration::from_secs(2));
    h.found();
    assert_eq!(h.take_join().2.member_id.as_str(), "");
    assert_eq!(h.counters().coordinator_lookups, 3);
}

#[test]
fn find_coordinator_group_authorization_failed_is_fatal() {
    let mut h = Harness::new();
    h.find_failed(RequestFailure::Broker(KafkaCode(GROUP_AUTHORIZATION_FAILED)));
    assert_eq!(h.m.state(), StateKind::Failed);
    assert_eq!(h.fatal(), Some(&rejected("FindCoordinator", GROUP_AUTHORIZATION_FAILED)));
    h.advance(Duration::from_secs(10));
    assert!(h.outbox.is_empty(), "a failed member sends nothing");
}

// ---- JoinGroup ----

#[test]
fn join_member_id_required_rejoins_at_once_with_the_returned_id() {
    // T04 / T14: the second step goes at once, and the empty-id join is never repeated.
    let mut h = Harness::new();
    h.found();
    let (id, _, first) = h.take_join();
    assert_eq!(first.member_id.as_str(), "");
    assert_eq!(first.reason.as_deref(), Some("initial join"));
    h.respond_join(id, join_error(MEMBER_ID_REQUIRED, "m-1"));
    assert_eq!(h.count("JoinGroup"), 1, "exactly one second-step join");
    let (_, _, second) = h.take_join();
    assert_eq!(second.member_id.as_str(), "m-1");
    assert_eq!(second.reason.as_deref(), Some("member id required (KIP-394 second step)"));
    assert_eq!(h.m.snapshot(h.now).member_id, MemberId::new("m-1"));
    assert_eq!(h.counters().joins_sent, 2);
    h.advance(Duration::from_secs(60));
    assert_eq!(h.count("JoinGroup"), 0, "no join repeated while the second step is parked");
}

#[test]
fn join_none_follower_sends_empty_assignments() {
    let mut h = Harness::new();
    h.found();
    h.two_step_join("m-1");
    let (id, _, _) = h.take_join();
    let members =
        vec![JoinGroupResponseMember::default().with_member_id(s("m-1")).with_metadata(subscription_metadata(&["t"]))];
    h.respond_join(id, join_response(NONE, 1, "m-1", "m-0").with_members(members));
    assert_eq!(h.m.state(), StateKind::AwaitingSync);
    let (_, version, sync) = h.take_sync();
    assert_eq!(version, 5);
    assert_eq!(sync.generation_id, 1);
    assert_eq!(sync.member_id.as_str(), "m-1");
    assert!(sync.assignments.is_empty());
    let snapshot = h.m.snapshot(h.now);
    assert!(!snapshot.is_leader);
    assert_eq!(snapshot.protocol.as_deref(), Some("range"));
}

#[test]
fn join_none_leader_runs_the_assignor() {
    let mut h = Harness::new();
    h.found();
    h.two_step_join("m-1");
    let (id, _, _) = h.take_join();
    let members = ["m-1", "m-2"]
        .iter()
        .map(|m| JoinGroupResponseMember::default().with_member_id(s(m)).with_metadata(subscription_metadata(&["t"])))
        .collect();
    h.respond_join(id, join_response(NONE, 1, "m-1", "m-1").with_members(members));
    let (_, _, sync) = h.take_sync();
    let plan: Vec<(String, bytes::Bytes)> =
        sync.assignments.iter().map(|a| (a.member_id.to_string(), a.assignment.clone())).collect();
    assert_eq!(
        plan,
        vec![
            ("m-1".to_string(), encode_assignment(&tps(&[0, 1]), None)),
            ("m-2".to_string(), encode_assignment(&tps(&[2, 3]), None)),
        ]
    );
    assert!(h.m.snapshot(h.now).is_leader);
}

#[test]
fn join_none_leader_with_skip_assignment_does_not_assign() {
    // T55a: a restarted static leader on v9 gets skipAssignment and must not run the assignor.
    let mut h = Harness::with_config(static_config());
    h.found();
    let (id, _, join) = h.take_join();
    assert_eq!(join.group_instance_id.as_deref(), Some("i1"));
    let members = vec![JoinGroupResponseMember::default()
        .with_member_id(s("i1-x"))
        .with_group_instance_id(Some(s("i1")))
        .with_metadata(subscription_metadata(&["t"]))];
    h.respond_join(id, join_response(NONE, 4, "i1-x", "i1-x").with_members(members).with_skip_assignment(true));
    let (_, _, sync) = h.take_sync();
    assert!(sync.assignments.is_empty());
    assert_eq!(sync.group_instance_id.as_deref(), Some("i1"));
}

#[test]
fn join_none_with_connect_protocol_type_is_fatal() {
    // T15c.
    let mut h = Harness::new();
    h.found();
    h.two_step_join("m-1");
    let (id, _, _) = h.take_join();
    h.respond_join(id, join_response(NONE, 1, "m-1", "m-0").with_protocol_type(Some(s("connect"))));
    assert_eq!(h.m.state(), StateKind::Failed);
    assert_eq!(
        h.fatal(),
        Some(&GroupError::InconsistentProtocol { expected: "consumer".into(), got: "connect".into() })
    );
    assert_eq!(h.count("SyncGroup"), 0);
}

#[test]
fn join_unknown_member_id_resets_the_id_and_rejoins_at_once() {
    // T09.
    let mut h = Harness::new();
    h.found();
    h.two_step_join("stale-id");
    let (id, _, join) = h.take_join();
    assert_eq!(join.member_id.as_str(), "stale-id");
    h.respond_join(id, join_error(UNKNOWN_MEMBER_ID, "stale-id"));
    assert_eq!(h.m.snapshot(h.now).member_id, MemberId::unknown());
    let (_, _, join) = h.take_join();
    assert_eq!(join.member_id.as_str(), "");
    assert_eq!(join.reason.as_deref(), Some("member id unknown to the coordinator"));
    assert_eq!(h.fatal(), None);
}

#[test]
fn join_rebalance_in_progress_rejoins_at_once_keeping_the_id() {
    // T15b.
    let mut h = Harness::new();
    h.found();
    h.two_step_join("m-1");
    let (id, _, _) = h.take_join();
    h.respond_join(id, join_error(REBALANCE_IN_PROGRESS, "m-1"));
    let (_, _, join) = h.take_join();
    assert_eq!(join.member_id.as_str(), "m-1");
    assert_eq!(h.count("FindCoordinator"), 0);
    assert_eq!(h.m.state(), StateKind::AwaitingJoin);
}

#[test]
fn join_rebalance_in_progress_keeps_the_generation_in_the_subscription() {
    // T15b: "keep member id and generation".
    let mut h = Harness::stable();
    h.heartbeat_answered(REBALANCE_IN_PROGRESS);
    h.m.revoke_done(h.now);
    h.pump();
    let (id, _, join) = h.take_join();
    assert_eq!(join_subscription(&join).generation, GenerationId(1));
    h.respond_join(id, join_error(REBALANCE_IN_PROGRESS, "m-1"));
    let (_, _, join) = h.take_join();
    assert_eq!(join.member_id.as_str(), "m-1");
    assert_eq!(join_subscription(&join).generation, GenerationId(1));
    assert!(h.lost().is_empty());
}

#[test]
fn join_coordinator_load_in_progress_backs_off_on_the_same_coordinator() {
    // T15a / T58.
    let mut h = Harness::new();
    h.found();
    h.two_step_join("m-1");
    let (id, _, _) = h.take_join();
    h.respond_join(id, join_error(COORDINATOR_LOAD_IN_PROGRESS, "m-1"));
    assert!(h.outbox.is_empty(), "no join before the backoff");
    h.advance(BACKOFF - MS);
    assert!(h.outbox.is_empty(), "no join before the backoff");
    let at = h.m.poll_timeout().expect("backoff timer");
    assert!(at - h.base <= Duration::from_secs(10));
    h.advance(at - h.now);
    assert_eq!(h.apis(), vec!["JoinGroup"], "same coordinator: no FindCoordinator");
    let (_, _, join) = h.take_join();
    assert_eq!(join.member_id.as_str(), "m-1");
    assert_eq!(h.coordinator_events(), vec![Some(1)]);
    assert_eq!(h.counters().coordinator_lookups, 1);
}

fn join_coordinator_moved(code: i16) {
    // T57 / T03: rediscover, then rejoin with the same member id.
    let mut h = Harness::new();
    h.found();
    h.two_step_join("m-1");
    let (id, _, _) = h.take_join();
    h.events.clear();
    h.respond_join(id, join_error(code, "m-1"));
    assert_eq!(h.coordinator_events(), vec![None]);
    assert_eq!(h.m.snapshot(h.now).coordinator, None);
    assert!(h.outbox.is_empty(), "FindCoordinator waits for the backoff");
    h.advance(BACKOFF);
    assert_eq!(h.apis(), vec!["FindCoordinator"]);
    h.found();
    let (_, _, join) = h.take_join();
    assert_eq!(join.member_id.as_str(), "m-1");
    assert_eq!(h.m.state(), StateKind::AwaitingJoin);
    assert_eq!(h.fatal(), None);
}

#[test]
fn join_coordinator_not_available_rediscovers_and_rejoins_with_the_same_id() {
    join_coordinator_moved(COORDINATOR_NOT_AVAILABLE);
}

#[test]
fn join_not_coordinator_rediscovers_and_rejoins_with_the_same_id() {
    join_coordinator_moved(NOT_COORDINATOR);
}

/// The join answered `code` stops the member with `expected`.
fn join_fatal(code: i16, config: GroupConfig, expected: GroupError) {
    let mut h = Harness::with_config(config);
    h.found();
    let (id, _, _) = h.take_join();
    h.respond_join(id, join_error(code, ""));
    assert_eq!(h.m.state(), StateKind::Failed);
    assert_eq!(h.fatal(), Some(&expected));
    h.advance(Duration::from_secs(30));
    assert!(h.outbox.is_empty(), "nothing sent after a fatal error");
}

#[test]
fn join_fenced_instance_id_is_fatal() {
    join_fatal(FENCED_INSTANCE_ID, static_config(), fenced_instance());
}

#[test]
fn join_inconsistent_group_protocol_is_fatal() {
    join_fatal(INCONSISTENT_GROUP_PROTOCOL, config(), rejected("JoinGroup", INCONSISTENT_GROUP_PROTOCOL));
}

#[test]
fn join_invalid_session_timeout_is_fatal() {
    join_fatal(INVALID_SESSION_TIMEOUT, config(), rejected("JoinGroup", INVALID_SESSION_TIMEOUT));
}

#[test]
fn join_invalid_group_id_is_fatal() {
    join_fatal(INVALID_GROUP_ID, config(), rejected("JoinGroup", INVALID_GROUP_ID));
}

#[test]
fn join_group_authorization_failed_is_fatal() {
    join_fatal(GROUP_AUTHORIZATION_FAILED, config(), rejected("JoinGroup", GROUP_AUTHORIZATION_FAILED));
}

#[test]
fn join_group_max_size_reached_is_fatal() {
    // T12.
    join_fatal(GROUP_MAX_SIZE_REACHED, config(), rejected("JoinGroup", GROUP_MAX_SIZE_REACHED));
}

#[test]
fn join_unsupported_version_is_fatal() {
    join_fatal(UNSUPPORTED_VERSION, config(), rejected("JoinGroup", UNSUPPORTED_VERSION));
}

#[test]
fn join_unknown_server_error_is_fatal() {
    join_fatal(UNKNOWN_SERVER_ERROR, config(), rejected("JoinGroup", UNKNOWN_SERVER_ERROR));
}

#[test]
fn join_reason_is_sent_on_v8_and_later_only() {
    let mut h = Harness::new();
    let mut versions = kafka36_versions();
    versions.cap(ApiKey::JoinGroup, 7);
    h.found_with(versions);
    let (id, version, join) = h.take_join();
    assert_eq!(version, 7);
    assert_eq!(join.reason, None);
    h.respond_join(id, join_error(MEMBER_ID_REQUIRED, "m-1"));
    let (_, _, join) = h.take_join();
    assert_eq!(join.reason, None);

    let mut h = Harness::new();
    h.found();
    let (id, version, join) = h.take_join();
    assert_eq!(version, 9);
    assert_eq!(join.reason.as_deref(), Some("initial join"));
    h.respond_join(id, join_error(MEMBER_ID_REQUIRED, "m-1"));
    let (id, _, _) = h.take_join();
    h.respond_join(id, join_error(UNKNOWN_MEMBER_ID, "m-1"));
    let (_, _, join) = h.take_join();
    assert_eq!(join.reason.as_deref(), Some("member id unknown to the coordinator"));
}

#[test]
fn join_failure_without_answer_rediscovers_and_rejoins_with_the_same_id() {
    let mut h = Harness::new();
    h.found();
    h.two_step_join("m-1");
    let (id, _, _) = h.take_join();
    h.m.handle_request_failed(h.now, id, RequestFailure::Network("reset".into()));
    h.pump();
    h.advance(BACKOFF);
    h.found();
    assert_eq!(h.take_join().2.member_id.as_str(), "m-1");
}

// ---- SyncGroup ----

#[test]
fn sync_none_installs_the_assignment() {
    let mut h = Harness::new();
    h.found();
    h.two_step_join("m-1");
    let (id, _, _) = h.take_join();
    h.respond_join(id, join_response(NONE, 1, "m-1", "m-0"));
    h.events.clear();
    let (id, _, _) = h.take_sync();
    h.respond_sync(id, sync_ok(&[0, 1]));
    assert_eq!(h.m.state(), StateKind::Stable);
    let owned = |p| OwnedPartition { partition: tp(p), owned_since: GenerationId(1) };
    assert_eq!(
        h.events[0],
        GroupEvent::Assigned {
            generation: gen(1, "m-1"),
            partitions: vec![owned(0), owned(1)],
            added: tps(&[0, 1]),
            revoked: vec![],
        }
    );
    assert_eq!(h.m.assignment(), vec![owned(0), owned(1)]);
    assert_eq!(h.m.lease(&tp(0), 5).map(|l| (l.generation, l.owned_since)), Some((gen(1, "m-1"), GenerationId(1))));
    assert_eq!(h.m.lease(&tp(2), 5), None);
    assert_eq!(h.counters().last_rebalance_ms, Some(0));
}

#[test]
fn sync_none_keeps_owned_since_across_a_continuous_rebalance() {
    let mut h = Harness::stable();
    h.heartbeat_answered(REBALANCE_IN_PROGRESS);
    h.m.revoke_done(h.now);
    h.pump();
    h.events.clear();
    h.join_and_sync(2, &[1, 2]);
    let assigned = h.events.iter().find_map(|e| match e {
        GroupEvent::Assigned { partitions, added, revoked, .. } => {
            Some((partitions.clone(), added.clone(), revoked.clone()))
        }
        _ => None,
    });
    assert_eq!(
        assigned,
        Some((
            vec![
                OwnedPartition { partition: tp(1), owned_since: GenerationId(1) },
                OwnedPartition { partition: tp(2), owned_since: GenerationId(2) },
            ],
            tps(&[2]),
            tps(&[0]),
        ))
    );
}

#[test]
fn sync_v5_sends_protocol_type_and_name() {
    // T23.
    let mut h = Harness::new();
    h.found();
    h.two_step_join("m-1");
    let (id, _, _) = h.take_join();
    h.respond_join(id, join_response(NONE, 1, "m-1", "m-0"));
    let (_, version, sync) = h.take_sync();
    assert_eq!(version, 5);
    assert_eq!(sync.protocol_type.as_deref(), Some("consumer"));
    assert_eq!(sync.protocol_name.as_deref(), Some("range"));
    assert_eq!(sync.group_id.0.as_str(), "g");
}

#[test]
fn sync_none_with_another_protocol_name_is_fatal() {
    let mut h = Harness::new();
    h.found();
    h.two_step_join("m-1");
    let (id, _, _) = h.take_join();
    h.respond_join(id, join_response(NONE, 1, "m-1", "m-0"));
    let (id, _, _) = h.take_sync();
    h.respond_sync(id, sync_ok(&[0]).with_protocol_name(Some(s("roundrobin"))));
    assert_eq!(
        h.fatal(),
        Some(&GroupError::InconsistentProtocol { expected: "range".into(), got: "roundrobin".into() })
    );
}

/// Stable in generation 1 with t-0 and t-1; a rebalance to generation 2 is at SyncGroup.
fn at_second_sync() -> (Harness, RequestId) {
    let mut h = Harness::stable();
    h.heartbeat_answered(REBALANCE_IN_PROGRESS);
    h.m.revoke_done(h.now);
    h.pump();
    let (id, _, _) = h.take_join();
    h.respond_join(id, join_response(NONE, 2, "m-1", "m-0"));
    let (id, _, _) = h.take_sync();
    h.events.clear();
    (h, id)
}

#[test]
fn sync_rebalance_in_progress_rejoins_without_reset() {
    // T19 / T25a.
    let (mut h, id) = at_second_sync();
    h.respond_sync(id, sync_error(REBALANCE_IN_PROGRESS));
    assert_eq!(h.m.state(), StateKind::AwaitingJoin);
    let (id, _, join) = h.take_join();
    assert_eq!(join.member_id.as_str(), "m-1");
    assert_eq!(join_subscription(&join).generation, GenerationId(1), "generation not reset");
    assert!(h.lost().is_empty());
    h.respond_join(id, join_response(NONE, 3, "m-1", "m-0"));
    let (id, _, _) = h.take_sync();
    h.respond_sync(id, sync_ok(&[0, 1]));
    assert_eq!(
        h.m.assignment(),
        vec![
            OwnedPartition { partition: tp(0), owned_since: GenerationId(3) },
            OwnedPartition { partition: tp(1), owned_since: GenerationId(3) },
        ],
        "generation 2 lies between 1 and 3: the streak is broken"
    );
}

#[test]
fn sync_unknown_member_id_resets_the_member_id() {
    // T24.
    let (mut h, id) = at_second_sync();
    h.respond_sync(id, sync_error(UNKNOWN_MEMBER_ID));
    assert_eq!(h.lost(), vec![tps(&[0, 1])]);
    assert_eq!(h.m.snapshot(h.now).member_id, MemberId::unknown());
    let (_, _, join) = h.take_join();
    assert_eq!(join.member_id.as_str(), "");
    assert_eq!(join_subscription(&join).generation, GenerationId::NONE);
}

#[test]
fn sync_illegal_generation_resets_the_generation_and_keeps_the_member_id() {
    // T18.
    let (mut h, id) = at_second_sync();
    h.respond_sync(id, sync_error(ILLEGAL_GENERATION));
    assert_eq!(h.lost(), vec![tps(&[0, 1])]);
    assert_eq!(h.m.snapshot(h.now).member_id, MemberId::new("m-1"));
    let (_, _, join) = h.take_join();
    assert_eq!(join.member_id.as_str(), "m-1");
    assert_eq!(join_subscription(&join).generation, GenerationId::NONE, "generation reset");
    assert_eq!(join.reason.as_deref(), Some("generation is stale"));
}

fn sync_coordinator_moved(code: i16) {
    // T25c: rediscover, rejoin keeping the member id.
    let (mut h, id) = at_second_sync();
    h.respond_sync(id, sync_error(code));
    assert_eq!(h.coordinator_events(), vec![None]);
    assert_eq!(h.m.state(), StateKind::AwaitingJoin);
    assert!(h.outbox.is_empty());
    h.advance(BACKOFF);
    h.found();
    let (_, _, join) = h.take_join();
    assert_eq!(join.member_id.as_str(), "m-1");
    assert!(h.lost().is_empty());
    assert_eq!(h.fatal(), None);
}

#[test]
fn sync_coordinator_not_available_rediscovers_and_rejoins_keeping_the_id() {
    sync_coordinator_moved(COORDINATOR_NOT_AVAILABLE);
}

#[test]
fn sync_not_coordinator_rediscovers_and_rejoins_keeping_the_id() {
    sync_coordinator_moved(NOT_COORDINATOR);
}

#[test]
fn sync_unknown_server_error_backs_off_and_rejoins() {
    // T25b, our deliberate deviation: Java 3.6 stops here.
    let (mut h, id) = at_second_sync();
    h.respond_sync(id, sync_error(UNKNOWN_SERVER_ERROR));
    assert_eq!(h.fatal(), None);
    assert_eq!(h.m.state(), StateKind::AwaitingJoin);
    assert!(h.outbox.is_empty(), "backs off first");
    h.advance(BACKOFF);
    assert!(h.outbox.is_empty(), "backs off first");
    let at = h.m.poll_timeout().expect("backoff timer");
    h.advance(at - h.now);
    assert_eq!(h.apis(), vec!["JoinGroup"], "same coordinator");
    assert_eq!(h.take_join().2.member_id.as_str(), "m-1");
    assert!(h.lost().is_empty());
}

#[test]
fn sync_fenced_instance_id_is_fatal() {
    let mut h = Harness::with_config(static_config());
    h.found();
    let (id, _, _) = h.take_join();
    h.respond_join(id, join_response(NONE, 1, "i1-a", "i1-a"));
    let (id, _, _) = h.take_sync();
    h.respond_sync(id, sync_error(FENCED_INSTANCE_ID));
    assert_eq!(h.m.state(), StateKind::Failed);
    assert_eq!(h.fatal(), Some(&fenced_instance()));
}

#[test]
fn sync_group_authorization_failed_is_fatal() {
    let (mut h, id) = at_second_sync();
    h.respond_sync(id, sync_error(GROUP_AUTHORIZATION_FAILED));
    assert_eq!(h.m.state(), StateKind::Failed);
    assert_eq!(h.fatal(), Some(&rejected("SyncGroup", GROUP_AUTHORIZATION_FAILED)));
}

// ---- Heartbeat ----

#[test]
fn heartbeat_none_keeps_the_member_stable() {
    // T26.
    let mut h = Harness::stable();
    assert_eq!(h.m.poll_timeout(), Some(h.now + HEARTBEAT));
    h.advance(HEARTBEAT - MS);
    assert_eq!(h.count("Heartbeat"), 0);
    h.advance(MS);
    let r = h.take("Heartbeat");
    assert_eq!(r.version, 4);
    let GroupRequest::Heartbeat(body) = r.body else { unreachable!() };
    assert_eq!((body.generation_id, body.member_id.as_str(), body.group_id.0.as_str()), (1, "m-1", "g"));
    h.respond(r.id, heartbeat(NONE));
    assert_eq!(h.m.state(), StateKind::Stable);
    assert_eq!(h.m.poll_timeout(), Some(h.now + HEARTBEAT));
    h.run_until(Duration::from_secs(120));
    assert_eq!(h.m.state(), StateKind::Stable);
    assert_eq!(h.coordinator_events(), Vec::<Option<i32>>::new());
    assert_eq!(h.counters().heartbeats_sent, 40);
}

#[test]
fn heartbeat_rebalance_in_progress_opens_the_revoke_window() {
    // T27.
    let mut h = Harness::stable();
    h.heartbeat_answered(REBALANCE_IN_PROGRESS);
    assert_eq!(h.m.state(), StateKind::Revoking);
    assert!(h.events.contains(&GroupEvent::RevokeRequested {
        generation: GenerationId(1),
        partitions: tps(&[0, 1]),
        reason: RejoinReason::RebalanceInProgress,
    }));
    assert_eq!(h.count("JoinGroup"), 0, "JoinGroup waits for the revoke handler");
    assert_eq!(h.m.current_generation(), Some(&gen(1, "m-1")));
    h.advance(Duration::from_secs(10));
    assert_eq!(h.count("JoinGroup"), 0, "JoinGroup waits for the revoke handler");
    h.m.revoke_done(h.now);
    h.pump();
    let (_, _, join) = h.take_join();
    assert_eq!(join.member_id.as_str(), "m-1");
    assert_eq!(join.reason.as_deref(), Some("group is rebalancing"));
}

#[test]
fn heartbeat_rebalance_in_progress_join_waits_for_in_flight_commits() {
    let mut h = Harness::stable();
    h.heartbeat_answered(REBALANCE_IN_PROGRESS);
    let lease = h.lease(0, 10);
    let commit = h.commit(vec![lease]);
    let (id, _, request) = h.take_commit();
    assert_eq!(request.generation_id_or_member_epoch, 1);
    h.m.revoke_done(h.now);
    h.pump();
    assert_eq!(h.count("JoinGroup"), 0, "JoinGroup waits for the in-flight commit");
    h.respond(id, commit_response(&[(0, NONE)]));
    assert_eq!(h.completed(commit), Some(vec![result(0, 10, committed(1, None))]));
    assert_eq!(h.count("JoinGroup"), 1, "JoinGroup goes as soon as the last commit is answered");
}

#[test]
fn heartbeat_revoke_deadline_sends_the_join_without_the_handler() {
    let mut h = Harness::stable();
    h.heartbeat_answered(REBALANCE_IN_PROGRESS);
    h.run_until(h.elapsed() + Duration::from_secs(150) - MS);
    assert_eq!(h.count("JoinGroup"), 0);
    h.run_until(h.elapsed() + MS);
    assert_eq!(h.count("JoinGroup"), 1);
}

#[test]
fn heartbeat_rebalance_in_progress_counts_as_a_successful_heartbeat() {
    let mut c = config();
    c.session_timeout = Duration::from_secs(10);
    let mut h = Harness::stable_with(c);
    // For 30 s (three sessions) every heartbeat is answered REBALANCE_IN_PROGRESS.
    while h.elapsed() < Duration::from_secs(30) {
        h.heartbeat_answered(REBALANCE_IN_PROGRESS);
    }
    assert_eq!(h.m.state(), StateKind::Revoking);
    assert_eq!(h.coordinator_events(), Vec::<Option<i32>>::new(), "the session never expired");
    assert_eq!(h.m.snapshot(h.now).coordinator, Some(1));
}

#[test]
fn heartbeat_illegal_generation_loses_partitions_and_keeps_the_member_id() {
    // T29.
    let mut h = Harness::stable();
    h.heartbeat_answered(ILLEGAL_GENERATION);
    assert_eq!(h.lost(), vec![tps(&[0, 1])]);
    assert_eq!(h.m.current_generation(), None);
    assert_eq!(h.m.lease(&tp(0), 1), None);
    let (_, _, join) = h.take_join();
    assert_eq!(join.member_id.as_str(), "m-1");
    assert_eq!(join_subscription(&join).generation, GenerationId::NONE);
}

#[test]
fn heartbeat_unknown_member_id_loses_partitions_and_resets_the_id() {
    // T30.
    let mut h = Harness::stable();
    h.heartbeat_answered(UNKNOWN_MEMBER_ID);
    assert_eq!(h.lost(), vec![tps(&[0, 1])]);
    assert_eq!(h.take_join().2.member_id.as_str(), "");
}

#[test]
fn heartbeat_fenced_instance_id_is_fatal() {
    // T33b.
    let mut h = Harness::stable_with(static_config());
    let body = h.heartbeat_answered(FENCED_INSTANCE_ID);
    assert_eq!(body.group_instance_id.as_deref(), Some("i1"));
    assert_eq!(h.m.state(), StateKind::Failed);
    assert_eq!(h.fatal(), Some(&fenced_instance()));
}

/// Found by the `group_machine` fuzz target: a commit made after the member failed was queued
/// and never answered, and its deadline stayed behind as a timer in the past.
#[test]
fn a_commit_after_a_fatal_error_fails_at_once() {
    let mut h = Harness::stable_with(static_config());
    let lease = h.lease(0, 10);
    h.heartbeat_answered(FENCED_INSTANCE_ID);
    assert_eq!(h.m.state(), StateKind::Failed);
    let id = h.commit(vec![lease]);
    let failure = failed(CommitFailure::Fatal(fenced_instance().to_string()));
    assert_eq!(h.completed(id), Some(vec![result(0, 10, failure)]));
    h.advance(Duration::from_secs(120));
    assert_eq!(h.m.poll_timeout(), None);
}

#[test]
fn heartbeat_group_authorization_failed_is_fatal() {
    let mut h = Harness::stable();
    h.heartbeat_answered(GROUP_AUTHORIZATION_FAILED);
    assert_eq!(h.fatal(), Some(&rejected("Heartbeat", GROUP_AUTHORIZATION_FAILED)));
}

fn heartbeat_coordinator_moved(code: i16) {
    // T33a: rediscover, no rejoin, generation kept.
    let mut h = Harness::stable();
    h.heartbeat_answered(code);
    assert_eq!(h.coordinator_events(), vec![None]);
    assert_eq!(h.m.state(), StateKind::Stable);
    assert_eq!(h.m.current_generation(), Some(&gen(1, "m-1")));
    h.advance(BACKOFF);
    h.found();
    let (_, body) = h.take_heartbeat();
    assert_eq!((body.generation_id, body.member_id.as_str()), (1, "m-1"), "heartbeats at once with gen 1");
    assert_eq!(h.count("JoinGroup"), 0);
    assert!(h.lost().is_empty());
    assert_eq!(h.m.assignment().len(), 2);
}

#[test]
fn heartbeat_not_coordinator_rediscovers_without_rejoining() {
    heartbeat_coordinator_moved(NOT_COORDINATOR);
}

#[test]
fn heartbeat_coordinator_not_available_rediscovers_without_rejoining() {
    heartbeat_coordinator_moved(COORDINATOR_NOT_AVAILABLE);
}

#[test]
fn heartbeat_late_answer_for_an_older_generation_is_ignored() {
    // T32: the gen-1 heartbeat's ILLEGAL_GENERATION arrives after the member reached gen 2.
    let mut h = Harness::stable();
    h.advance(HEARTBEAT);
    let (old, body) = h.take_heartbeat();
    assert_eq!(body.generation_id, 1);
    h.m.subscribe(["t", "u"], h.now);
    h.pump();
    h.m.revoke_done(h.now);
    h.pump();
    h.join_and_sync(2, &[0, 1]);
    h.events.clear();
    h.respond(old, heartbeat(ILLEGAL_GENERATION));
    assert_eq!(
        h.events,
        vec![GroupEvent::StaleResponse { api: "Heartbeat", sent: gen(1, "m-1"), current: Some(gen(2, "m-1")) }]
    );
    assert_eq!(h.counters().stale_responses, 1);
    assert_eq!(h.m.state(), StateKind::Stable);
    assert_eq!(h.m.current_generation(), Some(&gen(2, "m-1")));
    assert_eq!(h.m.assignment().len(), 2);
    assert_eq!(h.count("JoinGroup"), 0);
}

#[test]
fn heartbeats_are_not_sent_while_join_or_sync_is_in_flight() {
    let mut h = Harness::stable();
    h.heartbeat_answered(REBALANCE_IN_PROGRESS);
    h.m.revoke_done(h.now);
    h.pump();
    let (id, _, _) = h.take_join();
    let sent = h.counters().heartbeats_sent;
    h.advance(Duration::from_secs(20));
    assert_eq!(h.count("Heartbeat"), 0, "no heartbeat while JoinGroup is in flight");
    h.respond_join(id, join_response(NONE, 2, "m-1", "m-0"));
    let (id, _, _) = h.take_sync();
    h.advance(Duration::from_secs(20));
    assert_eq!(h.count("Heartbeat"), 0, "no heartbeat while SyncGroup is in flight");
    assert_eq!(h.counters().heartbeats_sent, sent);
    h.respond_sync(id, sync_ok(&[0]));
    h.advance(HEARTBEAT);
    assert_eq!(h.take_heartbeat().1.generation_id, 2);
}

#[test]
fn session_expiry_without_a_successful_heartbeat_marks_the_coordinator_unknown() {
    let mut c = config();
    c.session_timeout = Duration::from_secs(10);
    let mut h = Harness::stable_with(c);
    // Assigned at 0 s: the session runs to 10 s. The heartbeat at 3 s is never answered.
    h.advance(HEARTBEAT);
    let (_, _) = h.take_heartbeat();
    h.advance(Duration::from_secs(7) - MS);
    assert_eq!(h.coordinator_events(), Vec::<Option<i32>>::new());
    assert_eq!(h.count("Heartbeat"), 0, "one heartbeat at a time");
    h.advance(MS);
    assert_eq!(h.coordinator_events(), vec![None]);
    assert_eq!(h.m.state(), StateKind::Stable, "member id and generation are kept");
    assert_eq!(h.m.current_generation(), Some(&gen(1, "m-1")));
    h.advance(BACKOFF);
    assert_eq!(h.count("FindCoordinator"), 1);
}

#[test]
fn heartbeat_other_errors_are_retried_and_do_not_count_as_success() {
    let mut c = config();
    c.session_timeout = Duration::from_secs(10);
    let mut h = Harness::stable_with(c);
    h.heartbeat_answered(UNKNOWN_SERVER_ERROR);
    assert_eq!(h.m.poll_timeout(), Some(h.now + BACKOFF));
    while h.coordinator_events().is_empty() {
        match h.try_take("Heartbeat") {
            Some(r) => h.respond(r.id, heartbeat(UNKNOWN_SERVER_ERROR)),
            None => {
                let at = h.m.poll_timeout().expect("a timer");
                h.advance(at - h.now);
            }
        }
    }
    assert_eq!(h.elapsed(), Duration::from_secs(10));
    assert_eq!(h.m.state(), StateKind::Stable);
}

// ---- OffsetCommit ----

#[test]
fn commit_none_commits_with_the_current_generation() {
    // T39.
    let mut h = Harness::stable();
    let leases = vec![h.lease(0, 10), h.lease(1, 20)];
    let commit = h.commit(leases);
    let (id, version, request) = h.take_commit();
    assert_eq!(version, 8);
    assert_eq!(request.group_id.0.as_str(), "g");
    assert_eq!((request.generation_id_or_member_epoch, request.member_id.as_str()), (1, "m-1"));
    assert_eq!(request.group_instance_id, None);
    assert_eq!(commit_offsets(&request), vec![(0, 10), (1, 20)]);
    h.respond(id, commit_response(&[(0, NONE), (1, NONE)]));
    assert_eq!(h.completed(commit), Some(vec![result(0, 10, committed(1, None)), result(1, 20, committed(1, None))]));
    let counters = h.counters();
    assert_eq!((counters.commits_sent, counters.partitions_committed, counters.partitions_restamped), (1, 2, 0));
}

#[test]
fn commit_none_restamps_a_lease_of_an_earlier_generation_of_the_same_streak() {
    let mut h = Harness::stable();
    let lease = h.lease(0, 10);
    h.rebalance(2, &[0, 1]);
    let commit = h.commit(vec![lease]);
    let (id, _, request) = h.take_commit();
    assert_eq!(request.generation_id_or_member_epoch, 2);
    h.respond(id, commit_response(&[(0, NONE)]));
    assert_eq!(h.completed(commit), Some(vec![result(0, 10, committed(2, Some(1)))]));
    assert_eq!(h.counters().partitions_restamped, 1);
}

fn commit_retried_on_the_same_coordinator(code: i16) {
    // T49a / T58.
    let mut h = Harness::stable();
    let lease = h.lease(0, 10);
    let commit = h.commit(vec![lease]);
    let (id, _, _) = h.take_commit();
    h.respond(id, commit_response(&[(0, code)]));
    assert_eq!(h.completed(commit), None);
    assert!(h.outbox.is_empty());
    h.advance(BACKOFF - MS);
    assert!(h.outbox.is_empty(), "backs off first");
    let at = h.m.poll_timeout().expect("commit backoff");
    assert!(at < h.base + HEARTBEAT);
    h.advance(at - h.now);
    assert_eq!(h.apis(), vec!["OffsetCommit"], "same coordinator");
    let (id, _, request) = h.take_commit();
    assert_eq!((request.generation_id_or_member_epoch, commit_offsets(&request)), (1, vec![(0, 10)]));
    h.respond(id, commit_response(&[(0, NONE)]));
    assert_eq!(h.completed(commit), Some(vec![result(0, 10, committed(1, None))]));
    assert_eq!(h.coordinator_events(), Vec::<Option<i32>>::new());
}

#[test]
fn commit_coordinator_load_in_progress_is_retried_after_backoff() {
    commit_retried_on_the_same_coordinator(COORDINATOR_LOAD_IN_PROGRESS);
}

#[test]
fn commit_unknown_topic_or_partition_is_retried_after_backoff() {
    commit_retried_on_the_same_coordinator(UNKNOWN_TOPIC_OR_PARTITION);
}

fn commit_rediscovers_and_retries(code: i16) {
    // T49b.
    let mut h = Harness::stable();
    let lease = h.lease(0, 10);
    let commit = h.commit(vec![lease]);
    let (id, _, _) = h.take_commit();
    h.respond(id, commit_response(&[(0, code)]));
    assert_eq!(h.coordinator_events(), vec![None]);
    assert!(h.outbox.is_empty());
    h.advance(BACKOFF);
    h.found();
    h.run_until(h.elapsed() + Duration::from_secs(1));
    assert_eq!(h.count("OffsetCommit"), 1);
    let (id, _, request) = h.take_commit();
    assert_eq!((request.generation_id_or_member_epoch, commit_offsets(&request)), (1, vec![(0, 10)]));
    h.respond(id, commit_response(&[(0, NONE)]));
    assert_eq!(h.completed(commit), Some(vec![result(0, 10, committed(1, None))]));
    assert_eq!(h.m.state(), StateKind::Stable);
}

#[test]
fn commit_not_coordinator_rediscovers_and_retries() {
    commit_rediscovers_and_retries(NOT_COORDINATOR);
}

#[test]
fn commit_coordinator_not_available_rediscovers_and_retries() {
    commit_rediscovers_and_retries(COORDINATOR_NOT_AVAILABLE);
}

#[test]
fn commit_request_timed_out_rediscovers_and_retries() {
    commit_rediscovers_and_retries(REQUEST_TIMED_OUT);
}

#[test]
fn commit_rebalance_in_progress_is_deferred_and_judged_after_the_next_sync() {
    // T41.
    let mut h = Harness::stable();
    let lease = h.lease(0, 10);
    let commit = h.commit(vec![lease]);
    let (id, _, _) = h.take_commit();
    h.respond(id, commit_response(&[(0, REBALANCE_IN_PROGRESS)]));
    assert_eq!(h.completed(commit), None);
    assert_eq!(h.m.state(), StateKind::Revoking);
    assert!(h.events.contains(&GroupEvent::RevokeRequested {
        generation: GenerationId(1),
        partitions: tps(&[0, 1]),
        reason: RejoinReason::RebalanceInProgress,
    }));
    assert!(h.lost().is_empty(), "no reset");
    h.advance(Duration::from_secs(1));
    assert_eq!(h.count("OffsetCommit"), 0, "not retried in generation 1");
    h.m.revoke_done(h.now);
    h.pump();
    let (id, _, join) = h.take_join();
    assert_eq!(join.member_id.as_str(), "m-1");
    h.respond_join(id, join_response(NONE, 2, "m-1", "m-0"));
    assert_eq!(h.count("OffsetCommit"), 0, "not behind the SyncGroup");
    let (id, _, _) = h.take_sync();
    h.respond_sync(id, sync_ok(&[0, 1]));
    let (id, _, request) = h.take_commit();
    assert_eq!((request.generation_id_or_member_epoch, commit_offsets(&request)), (2, vec![(0, 10)]));
    h.respond(id, commit_response(&[(0, NONE)]));
    assert_eq!(h.completed(commit), Some(vec![result(0, 10, committed(2, Some(1)))]));
}

fn commit_rejected_by_broker(code: i16, member_after: &str) {
    let mut h = Harness::stable();
    let lease = h.lease(0, 10);
    let commit = h.commit(vec![lease]);
    let (id, _, _) = h.take_commit();
    h.respond(id, commit_response(&[(0, code)]));
    assert_eq!(
        h.completed(commit),
        Some(vec![result(
            0,
            10,
            CommitOutcome::Fenced {
                lease_generation: GenerationId(1),
                current_generation: Some(GenerationId(1)),
                reason: FenceReason::RejectedByBroker(KafkaCode(code)),
            }
        )])
    );
    assert_eq!(h.lost(), vec![tps(&[0, 1])]);
    assert_eq!(h.counters().partitions_rejected_by_broker.get(&code), Some(&1));
    let (_, _, join) = h.take_join();
    assert_eq!(join.member_id.as_str(), member_after);
    assert_eq!(join_subscription(&join).generation, GenerationId::NONE);
}

#[test]
fn commit_illegal_generation_fences_and_rejoins_keeping_the_member_id() {
    // T42 / T45.
    commit_rejected_by_broker(ILLEGAL_GENERATION, "m-1");
}

#[test]
fn commit_unknown_member_id_fences_and_resets_the_member_id() {
    // T44.
    commit_rejected_by_broker(UNKNOWN_MEMBER_ID, "");
}

#[test]
fn commit_offset_metadata_too_large_fails_that_partition_only() {
    // T47.
    let mut h = Harness::stable();
    let leases = vec![h.lease(0, 10), h.lease(1, 20)];
    let commit = h.commit(leases);
    let (id, _, _) = h.take_commit();
    h.respond(id, commit_response(&[(0, OFFSET_METADATA_TOO_LARGE), (1, NONE)]));
    assert_eq!(
        h.completed(commit),
        Some(vec![
            result(0, 10, failed(CommitFailure::Rejected(KafkaCode(OFFSET_METADATA_TOO_LARGE)))),
            result(1, 20, committed(1, None)),
        ])
    );
    h.advance(Duration::from_secs(1));
    assert_eq!(h.count("OffsetCommit"), 0, "not retried");
    assert_eq!(h.m.state(), StateKind::Stable);
}

#[test]
fn commit_fenced_instance_id_is_fatal() {
    // T46.
    let mut h = Harness::stable_with(static_config());
    let lease = h.lease(0, 10);
    let commit = h.commit(vec![lease]);
    let (id, _, request) = h.take_commit();
    assert_eq!(request.group_instance_id.as_deref(), Some("i1"));
    h.respond(id, commit_response(&[(0, FENCED_INSTANCE_ID)]));
    assert_eq!(h.m.state(), StateKind::Failed);
    assert_eq!(h.fatal(), Some(&fenced_instance()));
    assert_eq!(
        h.completed(commit),
        Some(vec![result(0, 10, failed(CommitFailure::Fatal(fenced_instance().to_string())))])
    );
}

#[test]
fn commit_group_authorization_failed_is_fatal() {
    let mut h = Harness::stable();
    let lease = h.lease(0, 10);
    let commit = h.commit(vec![lease]);
    let (id, _, _) = h.take_commit();
    h.respond(id, commit_response(&[(0, GROUP_AUTHORIZATION_FAILED)]));
    let error = rejected("OffsetCommit", GROUP_AUTHORIZATION_FAILED);
    assert_eq!(h.fatal(), Some(&error));
    assert_eq!(h.completed(commit), Some(vec![result(0, 10, failed(CommitFailure::Fatal(error.to_string())))]));
}

#[test]
fn commit_retries_are_bounded() {
    let mut c = config();
    c.commit_attempts = 3;
    let mut h = Harness::stable_with(c);
    let lease = h.lease(0, 10);
    let commit = h.commit(vec![lease]);
    for attempt in 1..=3 {
        let (id, _, _) = h.take_commit();
        h.respond(id, commit_response(&[(0, COORDINATOR_LOAD_IN_PROGRESS)]));
        if attempt < 3 {
            assert_eq!(h.completed(commit), None);
            let at = h.m.poll_timeout().expect("commit backoff");
            h.advance(at - h.now);
        }
    }
    assert_eq!(
        h.completed(commit),
        Some(vec![result(
            0,
            10,
            failed(CommitFailure::AttemptsExhausted {
                attempts: 3,
                last: KafkaCode(COORDINATOR_LOAD_IN_PROGRESS).to_string()
            })
        )])
    );
    assert_eq!(h.counters().commits_sent, 3);
    h.run_until(h.elapsed() + Duration::from_secs(5));
    assert_eq!(h.count("OffsetCommit"), 0);
}

#[test]
fn commit_times_out_when_deferred_too_long() {
    let mut h = Harness::stable();
    let lease = h.lease(0, 10);
    h.heartbeat_answered(REBALANCE_IN_PROGRESS);
    h.m.revoke_done(h.now);
    h.pump();
    let (_, _, _) = h.take_join();
    let commit = h.commit(vec![lease]);
    assert_eq!(h.counters().commits_deferred, 1);
    h.advance(Duration::from_secs(60) - MS);
    assert_eq!(h.completed(commit), None);
    assert_eq!(h.m.poll_timeout(), Some(h.now + MS));
    h.advance(MS);
    assert_eq!(h.completed(commit), Some(vec![result(0, 10, failed(CommitFailure::TimedOut))]));
    assert_eq!(h.count("OffsetCommit"), 0);
}

#[test]
fn commit_of_a_partition_not_owned_is_fenced_and_never_sent() {
    let mut h = Harness::stable();
    let lease = h.lease(1, 5);
    h.rebalance(2, &[0]);
    let never_owned =
        Lease { partition: tp(3), next_offset: 7, generation: gen(2, "m-1"), owned_since: GenerationId(2) };
    let commit = h.commit(vec![lease, never_owned]);
    let fenced = |lease_generation| CommitOutcome::Fenced {
        lease_generation: GenerationId(lease_generation),
        current_generation: Some(GenerationId(2)),
        reason: FenceReason::NotOwned,
    };
    assert_eq!(h.completed(commit), Some(vec![result(1, 5, fenced(1)), result(3, 7, fenced(2))]));
    assert_eq!(h.count("OffsetCommit"), 0);
    assert_eq!(h.counters().partitions_fenced_locally, 2);
}

#[test]
fn commit_after_interrupted_ownership_is_fenced() {
    let mut h = Harness::stable();
    let lease = h.lease(0, 5);
    h.rebalance(2, &[1]);
    h.rebalance(3, &[0, 1]);
    let commit = h.commit(vec![lease]);
    assert_eq!(
        h.completed(commit),
        Some(vec![result(
            0,
            5,
            CommitOutcome::Fenced {
                lease_generation: GenerationId(1),
                current_generation: Some(GenerationId(3)),
                reason: FenceReason::OwnershipInterrupted { owned_since: GenerationId(3) },
            }
        )])
    );
    assert_eq!(h.count("OffsetCommit"), 0);
}

#[test]
fn commit_of_another_member_id_is_fenced() {
    let mut h = Harness::stable();
    let lease = h.lease(0, 5);
    h.heartbeat_answered(UNKNOWN_MEMBER_ID);
    h.two_step_join("m-2");
    h.join_and_sync(2, &[0]);
    let commit = h.commit(vec![lease]);
    assert_eq!(
        h.completed(commit),
        Some(vec![result(
            0,
            5,
            CommitOutcome::Fenced {
                lease_generation: GenerationId(1),
                current_generation: Some(GenerationId(2)),
                reason: FenceReason::OtherMember,
            }
        )])
    );
    assert_eq!(h.count("OffsetCommit"), 0);
}

#[test]
fn commit_behind_a_lower_offset_of_the_same_streak_would_move_backwards() {
    let mut h = Harness::stable();
    let ahead = h.lease(0, 20);
    let behind = h.lease(0, 10);
    let first = h.commit(vec![ahead]);
    let (id, _, _) = h.take_commit();
    h.respond(id, commit_response(&[(0, NONE)]));
    assert_eq!(h.completed(first), Some(vec![result(0, 20, committed(1, None))]));
    h.rebalance(2, &[0]);
    let second = h.commit(vec![behind]);
    assert_eq!(
        h.completed(second),
        Some(vec![result(0, 10, failed(CommitFailure::WouldMoveBackwards { committed: 20 }))])
    );
    assert_eq!(h.count("OffsetCommit"), 0);
    // The same offset again is not a move backwards.
    let same = h.lease(0, 20);
    h.commit(vec![same]);
    assert_eq!(h.count("OffsetCommit"), 1);
}

#[test]
fn commit_is_never_sent_while_join_or_sync_is_in_flight() {
    let mut h = Harness::stable();
    let lease = h.lease(0, 10);
    h.heartbeat_answered(REBALANCE_IN_PROGRESS);
    h.m.revoke_done(h.now);
    h.pump();
    let (id, _, _) = h.take_join();
    let commit = h.commit(vec![lease]);
    h.advance(Duration::from_secs(5));
    assert_eq!(h.count("OffsetCommit"), 0, "not behind the JoinGroup");
    assert_eq!(h.m.snapshot(h.now).deferred_commits.len(), 1);
    h.respond_join(id, join_response(NONE, 2, "m-1", "m-0"));
    let (id, _, _) = h.take_sync();
    h.advance(Duration::from_secs(5));
    assert_eq!(h.count("OffsetCommit"), 0, "not behind the SyncGroup");
    h.respond_sync(id, sync_ok(&[0, 1]));
    let (id, _, request) = h.take_commit();
    assert_eq!(request.generation_id_or_member_epoch, 2);
    h.respond(id, commit_response(&[(0, NONE)]));
    assert_eq!(h.completed(commit), Some(vec![result(0, 10, committed(2, Some(1)))]));
}

#[test]
fn commit_holds_back_the_join_while_in_flight() {
    let mut h = Harness::stable();
    let lease = h.lease(0, 10);
    let commit = h.commit(vec![lease]);
    let (id, _, _) = h.take_commit();
    h.heartbeat_answered(ILLEGAL_GENERATION);
    assert_eq!(h.m.state(), StateKind::AwaitingJoin);
    assert_eq!(h.count("JoinGroup"), 0, "JoinGroup is not sent behind an OffsetCommit");
    h.respond(id, commit_response(&[(0, ILLEGAL_GENERATION)]));
    // The member already moved on: the partition is judged against the next generation.
    assert_eq!(h.completed(commit), None);
    h.join_and_sync(2, &[0]);
    assert_eq!(
        h.completed(commit),
        Some(vec![result(
            0,
            10,
            CommitOutcome::Fenced {
                lease_generation: GenerationId(1),
                current_generation: Some(GenerationId(2)),
                reason: FenceReason::OwnershipInterrupted { owned_since: GenerationId(2) },
            }
        )])
    );
}

#[test]
fn commits_are_sent_one_request_at_a_time_in_order() {
    let mut h = Harness::stable();
    let (a, b, c) = (h.lease(0, 10), h.lease(0, 20), h.lease(1, 5));
    let first = h.commit(vec![a]);
    let second = h.commit(vec![b, c]);
    assert_eq!(h.count("OffsetCommit"), 1);
    let (id, _, request) = h.take_commit();
    assert_eq!(commit_offsets(&request), vec![(0, 10)]);
    h.respond(id, commit_response(&[(0, NONE)]));
    assert_eq!(h.completed(first), Some(vec![result(0, 10, committed(1, None))]));
    assert_eq!(h.completed(second), None);
    let (id, _, request) = h.take_commit();
    assert_eq!(commit_offsets(&request), vec![(0, 20), (1, 5)]);
    h.respond(id, commit_response(&[(0, NONE), (1, NONE)]));
    assert_eq!(h.completed(second), Some(vec![result(0, 20, committed(1, None)), result(1, 5, committed(1, None))]));
}

#[test]
fn commit_in_the_revoke_window_goes_out_with_the_old_generation() {
    // T40: the broker is in PreparingRebalance and accepts the old generation.
    let mut h = Harness::stable();
    h.heartbeat_answered(REBALANCE_IN_PROGRESS);
    assert_eq!(h.m.state(), StateKind::Revoking);
    let lease = h.lease(1, 30);
    assert_eq!(lease.generation, gen(1, "m-1"));
    let commit = h.commit(vec![lease]);
    let (id, _, request) = h.take_commit();
    assert_eq!((request.generation_id_or_member_epoch, request.member_id.as_str()), (1, "m-1"));
    h.respond(id, commit_response(&[(1, NONE)]));
    assert_eq!(h.completed(commit), Some(vec![result(1, 30, committed(1, None))]));
    assert_eq!(h.m.state(), StateKind::Revoking);
}

// ---- OffsetFetch ----

#[test]
fn fetch_none_reports_offsets_and_minus_one_as_none() {
    // T50.
    let mut h = Harness::stable();
    let fetch = h.fetch(&[0, 1]);
    let (id, version, request) = h.take_fetch();
    assert_eq!(version, 8);
    assert!(request.require_stable);
    assert_eq!(request.groups.len(), 1);
    assert_eq!(request.groups[0].group_id.0.as_str(), "g");
    let topics = request.groups[0].topics.clone().expect("topics listed");
    assert_eq!(topics.len(), 1);
    assert_eq!((topics[0].name.0.as_str(), topics[0].partition_indexes.clone()), ("t", vec![0, 1]));
    h.respond(id, fetch_response(NONE, &[(0, 42, NONE), (1, -1, NONE)]));
    assert!(h
        .events
        .contains(&GroupEvent::CommittedOffsets { id: fetch, offsets: vec![(tp(0), Some(42)), (tp(1), None)] }));
}

fn fetch_retried(group_code: i16, partition_code: i16, rediscovers: bool) {
    let mut h = Harness::stable();
    let fetch = h.fetch(&[0]);
    let (id, _, _) = h.take_fetch();
    h.respond(id, fetch_response(group_code, &[(0, -1, partition_code)]));
    assert!(h.outbox.is_empty());
    assert_eq!(h.coordinator_events(), if rediscovers { vec![None] } else { vec![] });
    h.advance(BACKOFF - MS);
    assert!(h.outbox.is_empty(), "backs off first");
    h.advance(MS);
    if rediscovers {
        h.found();
    } else {
        assert_eq!(h.count("FindCoordinator"), 0);
    }
    let (id, _, _) = h.take_fetch();
    h.respond(id, fetch_response(NONE, &[(0, 7, NONE)]));
    assert!(h.events.contains(&GroupEvent::CommittedOffsets { id: fetch, offsets: vec![(tp(0), Some(7))] }));
    assert_eq!(h.fatal(), None);
}

#[test]
fn fetch_coordinator_load_in_progress_is_retried() {
    // T53b.
    fetch_retried(COORDINATOR_LOAD_IN_PROGRESS, NONE, false);
}

#[test]
fn fetch_not_coordinator_rediscovers_and_retries() {
    // T53c.
    fetch_retried(NOT_COORDINATOR, NONE, true);
}

#[test]
fn fetch_coordinator_not_available_rediscovers_and_retries() {
    // T53a: our deliberate deviation (Java 3.6 fails fatally, KAFKA-17279).
    fetch_retried(COORDINATOR_NOT_AVAILABLE, NONE, true);
}

#[test]
fn fetch_unstable_offset_commit_is_retried() {
    // T51.
    fetch_retried(NONE, UNSTABLE_OFFSET_COMMIT, false);
}

/// Fires timers (answering heartbeats) until the next OffsetFetch goes out; returns its id and
/// how long after `from` it went.
fn next_fetch(h: &mut Harness, from: Instant) -> (RequestId, Duration) {
    for _ in 0..1000 {
        if let Some(r) = h.try_take("OffsetFetch") {
            return (r.id, h.now - from);
        }
        if let Some(r) = h.try_take("Heartbeat") {
            h.respond(r.id, heartbeat(NONE));
            continue;
        }
        let Some(at) = h.m.poll_timeout() else { break };
        h.advance(at - h.now);
    }
    panic!("no OffsetFetch after {:?}; events: {:?}", h.elapsed(), h.events);
}

#[test]
fn fetch_retriable_failures_are_retried_with_growing_backoff_for_as_long_as_the_lookup_may_wait() {
    // Issue 13, item 1: a failed lookup is never "nothing committed". A coordinator that loads
    // its offsets for longer than five quick attempts must not end the lookup.
    let mut h = Harness::stable();
    let fetch = h.fetch(&[0]);
    let mut gaps = Vec::new();
    let start = h.now;
    let (mut id, _) = next_fetch(&mut h, start);
    for _ in 0..12 {
        h.respond(id, fetch_response(COORDINATOR_LOAD_IN_PROGRESS, &[]));
        let failed_at = h.now;
        let (next, gap) = next_fetch(&mut h, failed_at);
        gaps.push(gap);
        id = next;
    }
    // The delay shows, in the snapshot and in the events.
    let lookups = h.m.snapshot(h.now).offset_lookups;
    assert_eq!(lookups.len(), 1);
    assert_eq!((lookups[0].id, lookups[0].failed_attempts), (fetch, 12));
    let last = format!("OffsetFetch: {}", KafkaCode(COORDINATOR_LOAD_IN_PROGRESS));
    assert_eq!(lookups[0].last_error.as_deref(), Some(last.as_str()));
    assert_eq!(h.counters().offset_lookups_retried, 12);
    let delays: Vec<(u32, u64)> = h
        .events
        .iter()
        .filter_map(|e| match e {
            GroupEvent::CommittedOffsetsDelayed { id, partitions, attempts, retry_in_ms, .. } if *id == fetch => {
                assert_eq!(partitions, &tps(&[0]));
                Some((*attempts, *retry_in_ms))
            }
            _ => None,
        })
        .collect();
    let expected: Vec<(u32, u64)> = (1..=12).zip(gaps.iter().map(|g| g.as_millis() as u64)).collect();
    assert_eq!(delays, expected, "each failure says when the lookup goes again");
    h.respond(id, fetch_response(NONE, &[(0, 42, NONE)]));
    assert!(h.events.contains(&GroupEvent::CommittedOffsets { id: fetch, offsets: vec![(tp(0), Some(42))] }));
    assert!(h.m.snapshot(h.now).offset_lookups.is_empty());
    assert!(gaps[0] >= BACKOFF, "{gaps:?}");
    assert!(gaps.windows(2).all(|w| w[0] <= w[1]), "the backoff grows: {gaps:?}");
    assert_eq!(gaps.last(), Some(&Duration::from_secs(1)), "capped at retry.backoff.max.ms: {gaps:?}");
    assert_eq!(h.fatal(), None);
}

#[test]
fn fetch_group_authorization_failed_is_fatal() {
    let mut h = Harness::stable();
    let fetch = h.fetch(&[0]);
    let (id, _, _) = h.take_fetch();
    h.respond(id, fetch_response(GROUP_AUTHORIZATION_FAILED, &[]));
    let failure = OffsetLookupFailure::Rejected { code: KafkaCode(GROUP_AUTHORIZATION_FAILED), topic: None };
    assert!(h.events.contains(&GroupEvent::CommittedOffsetsFailed { id: fetch, failure }));
    assert_eq!(h.fatal(), Some(&rejected("OffsetFetch", GROUP_AUTHORIZATION_FAILED)));
}

#[test]
fn fetch_topic_authorization_failed_ends_the_lookup_and_not_the_member() {
    let mut h = Harness::stable();
    let fetch = h.fetch(&[0]);
    let (id, _, _) = h.take_fetch();
    h.respond(id, fetch_response(NONE, &[(0, -1, TOPIC_AUTHORIZATION_FAILED)]));
    let failure =
        OffsetLookupFailure::Rejected { code: KafkaCode(TOPIC_AUTHORIZATION_FAILED), topic: Some("t".into()) };
    assert!(h.events.contains(&GroupEvent::CommittedOffsetsFailed { id: fetch, failure }));
    assert_eq!(h.fatal(), None);
    assert_eq!(h.m.state(), StateKind::Stable);
}

#[test]
fn fetch_failing_past_its_deadline_times_out_and_is_not_read_as_nothing_committed() {
    let mut c = config();
    c.commit_timeout = Duration::from_secs(5);
    let mut h = Harness::stable_with(c);
    let fetch = h.fetch(&[0]);
    let start = h.now;
    let mut attempts = 0;
    while h.elapsed() < Duration::from_secs(6) {
        match h.try_take("OffsetFetch") {
            Some(r) => {
                attempts += 1;
                h.respond(r.id, fetch_response(NONE, &[(0, -1, UNSTABLE_OFFSET_COMMIT)]));
            }
            None => h.run_until(h.m.poll_timeout().expect("a timer") - h.base),
        }
    }
    assert!(h.now - start >= Duration::from_secs(5));
    let last = format!("OffsetFetch for t-0: {}", KafkaCode(UNSTABLE_OFFSET_COMMIT));
    let failure = OffsetLookupFailure::TimedOut { attempts, last };
    assert!(h.events.contains(&GroupEvent::CommittedOffsetsFailed { id: fetch, failure }), "{:?}", h.events);
    assert!(!h.events.iter().any(|e| matches!(e, GroupEvent::CommittedOffsets { .. })));
    assert!(h.m.snapshot(h.now).offset_lookups.is_empty());
}

// ---- LeaveGroup ----

#[test]
fn leave_dynamic_member_sends_its_member_id_and_reason() {
    let mut h = Harness::stable();
    h.m.leave("shutting down", h.now);
    h.pump();
    let (id, version, request) = h.take_leave();
    assert_eq!(version, 5);
    assert_eq!(request.member_id.as_str(), "", "v3+ names members in the batch");
    assert_eq!(request.members.len(), 1);
    assert_eq!(request.members[0].member_id.as_str(), "m-1");
    assert_eq!(request.members[0].group_instance_id, None);
    assert_eq!(request.members[0].reason.as_deref(), Some("shutting down"));
    h.respond(id, GroupResponse::LeaveGroup(LeaveGroupResponse::default()));
    assert_eq!(h.m.state(), StateKind::Left);
    assert!(h.events.contains(&GroupEvent::Left { reason: "shutting down".into() }));
    assert_eq!(h.m.snapshot(h.now).member_id, MemberId::unknown());
    assert_eq!(h.m.lease(&tp(0), 1), None);
    h.advance(Duration::from_secs(60));
    assert!(h.outbox.is_empty(), "nothing after leaving");
}

#[test]
fn leave_on_v4_sends_no_reason() {
    let mut h = Harness::with_config(config());
    let mut versions = kafka36_versions();
    versions.cap(ApiKey::LeaveGroup, 4);
    h.found_with(versions);
    h.two_step_join("m-1");
    h.join_and_sync(1, &[0]);
    h.m.leave("bye", h.now);
    h.pump();
    let (_, version, request) = h.take_leave();
    assert_eq!(version, 4);
    assert_eq!(request.members[0].member_id.as_str(), "m-1");
    assert_eq!(request.members[0].reason, None);
}

#[test]
fn leave_static_member_sends_nothing() {
    // T37: a static member's restart within the session causes no rebalance.
    let mut h = Harness::stable_with(static_config());
    h.m.leave("restart", h.now);
    h.pump();
    assert_eq!(h.count("LeaveGroup"), 0);
    assert_eq!(h.m.state(), StateKind::Left);
    assert!(h.events.contains(&GroupEvent::Left { reason: "restart".into() }));
    assert_eq!(h.m.snapshot(h.now).member_id, MemberId::new("m-1"), "the static member keeps its id");
}

#[test]
fn leave_fails_deferred_commits_with_member_gone() {
    let mut h = Harness::stable();
    let lease = h.lease(0, 10);
    h.heartbeat_answered(REBALANCE_IN_PROGRESS);
    h.m.revoke_done(h.now);
    h.pump();
    let (_, _, _) = h.take_join();
    let commit = h.commit(vec![lease]);
    assert_eq!(h.completed(commit), None);
    h.m.leave("closing", h.now);
    h.pump();
    assert_eq!(h.completed(commit), Some(vec![result(0, 10, failed(CommitFailure::MemberGone))]));
    h.found();
    assert_eq!(h.count("LeaveGroup"), 1);
}

// ---- the coordinator connection ----

/// From Stable: a rebalance is announced, the revoke handler finishes, and the member's
/// JoinGroup goes out (and stays unanswered).
fn joining() -> (Harness, RequestId) {
    let mut h = Harness::stable();
    h.heartbeat_answered(REBALANCE_IN_PROGRESS);
    h.m.revoke_done(h.now);
    h.pump();
    let (join, _, _) = h.take_join();
    (h, join)
}

#[test]
fn fetch_is_never_sent_while_join_or_sync_is_in_flight() {
    // Issue 13, item 2: the broker parks a JoinGroup until the rebalance completes and serves a
    // connection's requests one at a time, so an OffsetFetch behind it would time out.
    let (mut h, join) = joining();
    let fetch = h.fetch(&[0]);
    h.advance(Duration::from_secs(5));
    assert_eq!(h.count("OffsetFetch"), 0, "not behind the JoinGroup");
    h.respond_join(join, join_response(NONE, 2, "m-1", "m-0"));
    let (sync, _, _) = h.take_sync();
    h.advance(Duration::from_secs(5));
    assert_eq!(h.count("OffsetFetch"), 0, "not behind the SyncGroup");
    h.respond_sync(sync, sync_ok(&[0, 1]));
    let (id, _, _) = h.take_fetch();
    h.respond(id, fetch_response(NONE, &[(0, 7, NONE)]));
    assert!(h.events.contains(&GroupEvent::CommittedOffsets { id: fetch, offsets: vec![(tp(0), Some(7))] }));
}

#[test]
fn leave_while_join_is_in_flight_sends_leave_group_on_a_new_connection() {
    // Issue 13, item 2: a LeaveGroup behind the parked JoinGroup would reach the broker only
    // when the rebalance completes (with this member in it). It goes on a connection of its own.
    let (mut h, join) = joining();
    h.m.leave("closing", h.now);
    h.pump();
    assert_eq!(h.count("LeaveGroup"), 0, "not behind the JoinGroup");
    assert_eq!(h.coordinator_events(), vec![None], "the connection holding the join is given up");
    h.found();
    let (leave, _, request) = h.take_leave();
    assert_eq!(request.members[0].member_id.as_str(), "m-1");
    // The abandoned join's answer changes nothing.
    h.respond_join(join, join_response(NONE, 2, "m-1", "m-0"));
    assert_eq!(h.count("SyncGroup"), 0);
    h.respond(leave, GroupResponse::LeaveGroup(LeaveGroupResponse::default()));
    assert_eq!(h.m.state(), StateKind::Left);
    assert!(h.events.contains(&GroupEvent::Left { reason: "closing".into() }));
}

#[test]
fn leave_while_sync_is_in_flight_sends_leave_group_on_a_new_connection() {
    let (mut h, join) = joining();
    h.respond_join(join, join_response(NONE, 2, "m-1", "m-0"));
    let (sync, _, _) = h.take_sync();
    h.m.leave("closing", h.now);
    h.pump();
    assert_eq!(h.count("LeaveGroup"), 0, "not behind the SyncGroup");
    h.found();
    let (leave, _, _) = h.take_leave();
    h.respond_sync(sync, sync_ok(&[0, 1]));
    assert_eq!(h.m.state(), StateKind::Leaving, "the abandoned sync's answer changes nothing");
    h.respond(leave, GroupResponse::LeaveGroup(LeaveGroupResponse::default()));
    assert_eq!(h.m.state(), StateKind::Left);
}

#[test]
fn leave_that_cannot_reach_a_coordinator_gives_up_at_once() {
    // LeaveGroup is best effort (Java sends it once): the session timeout removes the member.
    let (mut h, _) = joining();
    h.m.leave("closing", h.now);
    h.pump();
    h.find_failed(RequestFailure::Network("refused".into()));
    assert_eq!(h.m.state(), StateKind::Left);
    h.advance(Duration::from_secs(10));
    assert!(h.outbox.is_empty(), "nothing after leaving");
}

#[test]
fn join_in_flight_when_the_coordinator_is_lost_goes_again_to_the_new_one() {
    // Issue 13, item 3: the join left on the abandoned connection is not waited for (it would
    // be, until the join timeout: rebalance timeout + 5 s).
    let mut h = Harness::stable();
    h.fetch(&[0]);
    let (fetch, _, _) = h.take_fetch();
    h.heartbeat_answered(REBALANCE_IN_PROGRESS);
    h.m.revoke_done(h.now);
    h.pump();
    let (join, _, _) = h.take_join();
    h.respond(fetch, fetch_response(NOT_COORDINATOR, &[]));
    assert_eq!(h.coordinator_events(), vec![None]);
    h.advance(BACKOFF);
    h.found();
    let (again, _, request) = h.take_join();
    assert_eq!(request.member_id.as_str(), "m-1", "the same member id replaces the parked join");
    // The old join's failure, when its connection closes, is not this member's concern.
    h.m.handle_request_failed(h.now, join, RequestFailure::Network("closed".into()));
    h.pump();
    assert_eq!(h.coordinator_events(), vec![None, Some(1)]);
    h.respond_join(again, join_response(NONE, 2, "m-1", "m-0"));
    let (sync, _, _) = h.take_sync();
    h.respond_sync(sync, sync_ok(&[0, 1]));
    assert_eq!(h.m.state(), StateKind::Stable);
}

#[test]
fn commit_in_flight_when_the_coordinator_is_lost_goes_again_to_the_new_one() {
    // Issue 13, item 3: the commit left on the abandoned connection is not waited for until its
    // request timeout, and that timeout, when it comes, does not tear down the new connection.
    let mut h = Harness::stable();
    let commit = h.commit(vec![h.lease(0, 10)]);
    let (old, _, _) = h.take_commit();
    h.heartbeat_answered(NOT_COORDINATOR);
    h.advance(BACKOFF);
    h.found();
    let (id, _, request) = h.take_commit();
    assert_eq!(commit_offsets(&request), vec![(0, 10)]);
    h.m.handle_request_failed(h.now, old, RequestFailure::TimedOut);
    h.pump();
    assert_eq!(h.coordinator_events(), vec![None, Some(1)], "the new coordinator is kept: {:?}", h.events);
    assert_eq!(h.count("FindCoordinator"), 0);
    h.respond(id, commit_response(&[(0, NONE)]));
    assert_eq!(h.completed(commit), Some(vec![result(0, 10, committed(1, None))]));
}

// ---- max.poll.interval.ms ----

#[test]
fn max_poll_interval_without_a_poll_leaves_and_says_why() {
    let mut c = config();
    c.session_timeout = Duration::from_secs(10);
    c.rebalance_timeout = Duration::from_secs(20);
    c.revoke_timeout = Duration::from_secs(10);
    let mut h = Harness::stable_with(c);
    h.m.record_poll(h.now);
    h.pump();
    h.run_until(Duration::from_secs(20) - MS);
    assert_eq!(h.count("LeaveGroup"), 0);
    assert_eq!(h.m.state(), StateKind::Stable);
    h.run_until(Duration::from_secs(20));
    let reason = "max.poll.interval.ms exceeded: the application stopped polling";
    let (id, _, request) = h.take_leave();
    assert_eq!(request.members[0].reason.as_deref(), Some(reason));
    h.respond(id, GroupResponse::LeaveGroup(LeaveGroupResponse::default()));
    assert!(h.events.contains(&GroupEvent::Left { reason: LeaveReason::MaxPollIntervalExceeded }));
    assert_eq!(h.m.state(), StateKind::Left);
    // Polling again rejoins as a new member.
    h.m.record_poll(h.now);
    h.pump();
    assert_eq!(h.take_join().2.member_id.as_str(), "");
}

// ---- timers ----

#[test]
fn a_heartbeat_answered_late_leaves_no_timer_in_the_past() {
    let mut h = Harness::stable();
    h.advance(HEARTBEAT);
    let (id, _) = h.take_heartbeat();
    // The answer takes longer than the heartbeat interval: no second heartbeat meanwhile.
    h.advance(HEARTBEAT + Duration::from_secs(1));
    assert_eq!(h.count("Heartbeat"), 0);
    h.respond(id, heartbeat(NONE));
    assert_eq!(h.count("Heartbeat"), 1, "the overdue heartbeat goes at once");
}

#[test]
fn a_lost_coordinator_leaves_no_heartbeat_timer_in_the_past() {
    let mut h = Harness::stable();
    h.heartbeat_answered(NOT_COORDINATOR);
    // FindCoordinator keeps failing for longer than the heartbeat interval.
    for _ in 0..6 {
        let at = h.m.poll_timeout().expect("backoff");
        h.advance(at - h.now);
        h.find_failed(RequestFailure::Broker(KafkaCode(COORDINATOR_NOT_AVAILABLE)));
    }
    assert!(h.elapsed() > Duration::from_secs(6));
    assert_eq!(h.count("Heartbeat"), 0);
    let at = h.m.poll_timeout().expect("backoff");
    h.advance(at - h.now);
    h.found();
    assert_eq!(h.take_heartbeat().1.generation_id, 1);
}

#[test]
fn a_commit_deadline_passing_while_in_flight_leaves_no_timer_in_the_past() {
    let mut c = config();
    c.commit_timeout = Duration::from_secs(5);
    let mut h = Harness::stable_with(c);
    let lease = h.lease(0, 10);
    let commit = h.commit(vec![lease]);
    let (id, _, _) = h.take_commit();
    h.run_until(Duration::from_secs(8));
    assert_eq!(h.completed(commit), None, "judged when the answer comes");
    h.respond(id, commit_response(&[(0, COORDINATOR_LOAD_IN_PROGRESS)]));
    assert_eq!(h.completed(commit), Some(vec![result(0, 10, failed(CommitFailure::TimedOut))]));
    assert_eq!(h.count("OffsetCommit"), 0);
}

#[test]
fn a_fetch_deadline_passing_without_a_coordinator_leaves_no_timer_in_the_past() {
    let mut c = config();
    c.commit_timeout = Duration::from_secs(1);
    let mut h = Harness::stable_with(c);
    let fetch = h.fetch(&[0]);
    let (id, _, _) = h.take_fetch();
    h.respond(id, fetch_response(NOT_COORDINATOR, &[]));
    while h.elapsed() < Duration::from_secs(2) {
        let at = h.m.poll_timeout().expect("backoff");
        h.advance(at - h.now);
        if h.count("FindCoordinator") == 1 {
            h.find_failed(RequestFailure::Network("refused".into()));
        }
    }
    assert_eq!(h.count("OffsetFetch"), 0);
    let at = h.m.poll_timeout().expect("backoff");
    h.advance(at - h.now);
    h.found();
    let failure =
        OffsetLookupFailure::TimedOut { attempts: 1, last: format!("OffsetFetch: {}", KafkaCode(NOT_COORDINATOR)) };
    assert!(h.events.contains(&GroupEvent::CommittedOffsetsFailed { id: fetch, failure }), "{:?}", h.events);
    assert_eq!(h.count("OffsetFetch"), 0);
}

// ---- cooperative rebalancing (KIP-429) ----

const COOP: &str = "cooperative-sticky";

fn coop_config() -> GroupConfig {
    let mut c = config();
    c.assignors = vec![super::assignor::assignor_by_name(COOP).expect("cooperative-sticky is built in")];
    c
}

/// `range` first, `cooperative-sticky` second: the first step of the KIP-429 upgrade.
fn mixed_config() -> GroupConfig {
    let mut c = config();
    c.assignors.push(super::assignor::assignor_by_name(COOP).expect("cooperative-sticky is built in"));
    c
}

fn with_protocol(r: JoinGroupResponse, protocol: &str) -> JoinGroupResponse {
    r.with_protocol_name(Some(s(protocol)))
}

fn sync_ok_with(protocol: &str, partitions: &[i32]) -> SyncGroupResponse {
    sync_ok(partitions).with_protocol_name(Some(s(protocol)))
}

fn assigned_event(events: &[GroupEvent]) -> Option<(Vec<OwnedPartition>, Vec<TopicPartition>, Vec<TopicPartition>)> {
    events.iter().rev().find_map(|e| match e {
        GroupEvent::Assigned { partitions, added, revoked, .. } => {
            Some((partitions.clone(), added.clone(), revoked.clone()))
        }
        _ => None,
    })
}

/// The subscription a JoinGroup carries for `protocol`.
fn join_subscription_for(join: &JoinGroupRequest, protocol: &str) -> Subscription {
    let p = join.protocols.iter().find(|p| p.name.as_str() == protocol).expect("protocol offered");
    Subscription::decode(&p.metadata).expect("decodable subscription")
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

#[test]
fn cooperative_join_metadata_carries_owned_partitions_and_generation() {
    let mut h = Harness::coop_stable();
    h.heartbeat_answered(REBALANCE_IN_PROGRESS);
    let (_, _, join) = h.take_join();
    assert_eq!(join.protocols.iter().map(|p| p.name.to_string()).collect::<Vec<_>>(), vec![COOP.to_string()]);
    let sub = join_subscription_for(&join, COOP);
    assert_eq!(sub.owned_partitions, tps(&[0, 1]));
    assert_eq!(sub.generation, GenerationId(1));
    assert_eq!(sub.topics, vec!["t".to_string()]);
}

#[test]
fn cooperative_rebalance_in_progress_opens_no_revoke_window_and_keeps_the_partitions() {
    let mut h = Harness::coop_stable();
    h.heartbeat_answered(REBALANCE_IN_PROGRESS);
    assert!(h.events.contains(&GroupEvent::RevokeRequested {
        generation: GenerationId(1),
        partitions: vec![],
        reason: RejoinReason::RebalanceInProgress,
    }));
    assert_eq!(h.m.state(), StateKind::AwaitingJoin, "no revoke window: no revoke_done needed");
    assert_eq!(h.count("JoinGroup"), 1, "rejoins at once");
    let owned = |p| OwnedPartition { partition: tp(p), owned_since: GenerationId(1) };
    assert_eq!(h.m.assignment(), vec![owned(0), owned(1)], "still owned during the rebalance");
    let lease = h.m.lease(&tp(0), 7).expect("leases go on during the rebalance");
    assert_eq!((lease.generation, lease.owned_since), (gen(1, "m-1"), GenerationId(1)));
    assert_eq!(h.m.lease(&tp(2), 7), None);
    assert!(h.lost().is_empty());
    // Still owned while the SyncGroup is in flight.
    let (id, _, _) = h.take_join();
    h.respond_join(id, with_protocol(join_response(NONE, 2, "m-1", "m-0"), COOP));
    assert_eq!(h.m.state(), StateKind::AwaitingSync);
    assert_eq!(h.m.assignment().len(), 2);
}

#[test]
fn cooperative_sync_that_revokes_partitions_opens_a_revoke_window_then_a_second_round() {
    let mut h = Harness::coop_stable();
    h.heartbeat_answered(REBALANCE_IN_PROGRESS);
    h.events.clear();
    h.join_and_sync_with(COOP, 2, &[1]);
    let (partitions, added, revoked) = assigned_event(&h.events).expect("assigned");
    assert_eq!(partitions, vec![OwnedPartition { partition: tp(1), owned_since: GenerationId(1) }]);
    assert_eq!((added, revoked), (vec![], tps(&[0])));
    assert!(h.lost().is_empty(), "revoked, not lost");
    let revoke = GroupEvent::RevokeRequested {
        generation: GenerationId(2),
        partitions: tps(&[0]),
        reason: RejoinReason::PartitionsRevoked,
    };
    let revoke_at = h.events.iter().position(|e| e == &revoke).expect("revoke window for t-0");
    let assigned_at = h.events.iter().position(|e| matches!(e, GroupEvent::Assigned { .. })).expect("assigned");
    assert!(revoke_at < assigned_at, "revoke handlers run before the assignment is announced");
    assert_eq!(h.m.state(), StateKind::Revoking);
    assert_eq!(h.m.current_generation(), Some(&gen(2, "m-1")), "generation 2 is ours until the second round");
    assert_eq!(h.count("JoinGroup"), 0, "the second round waits for the revoke handler");
    h.m.revoke_done(h.now);
    h.pump();
    assert_eq!(h.m.state(), StateKind::AwaitingJoin);
    let (id, _, join) = h.take_join();
    assert_eq!(join.member_id.as_str(), "m-1");
    assert_eq!(join.reason.as_deref(), Some(RejoinReason::PartitionsRevoked.to_string().as_str()));
    let sub = join_subscription_for(&join, COOP);
    assert_eq!((sub.owned_partitions, sub.generation), (tps(&[1]), GenerationId(2)));
    // The second round assigns the freed partition elsewhere; nothing revoked: no third round.
    h.respond_join(id, with_protocol(join_response(NONE, 3, "m-1", "m-0"), COOP));
    let (id, _, _) = h.take_sync();
    h.respond_sync(id, sync_ok_with(COOP, &[1, 3]));
    assert_eq!(h.m.state(), StateKind::Stable);
    assert_eq!(h.count("JoinGroup"), 0);
    assert_eq!(
        h.m.assignment(),
        vec![
            OwnedPartition { partition: tp(1), owned_since: GenerationId(1) },
            OwnedPartition { partition: tp(3), owned_since: GenerationId(3) },
        ]
    );
}

#[test]
fn cooperative_sync_without_revocation_stays_stable() {
    let mut h = Harness::coop_stable();
    h.heartbeat_answered(REBALANCE_IN_PROGRESS);
    h.join_and_sync_with(COOP, 2, &[0, 1, 2]);
    assert_eq!(h.m.state(), StateKind::Stable);
    assert_eq!(h.count("JoinGroup"), 0);
}

#[test]
fn cooperative_kept_partitions_keep_owned_since_and_their_leases_restamp() {
    let mut h = Harness::coop_stable();
    let before = h.lease(1, 10);
    h.heartbeat_answered(REBALANCE_IN_PROGRESS);
    let during = h.lease(1, 20);
    let early = h.commit(vec![before]);
    let late = h.commit(vec![during]);
    assert_eq!(h.count("OffsetCommit"), 0, "deferred during the join");
    h.join_and_sync_with(COOP, 2, &[0, 1, 3]);
    let (partitions, _, _) = assigned_event(&h.events).expect("assigned");
    assert!(partitions.contains(&OwnedPartition { partition: tp(1), owned_since: GenerationId(1) }));
    let (id, _, request) = h.take_commit();
    assert_eq!((request.generation_id_or_member_epoch, commit_offsets(&request)), (2, vec![(1, 10)]));
    h.respond(id, commit_response(&[(1, NONE)]));
    assert_eq!(h.completed(early), Some(vec![result(1, 10, committed(2, Some(1)))]));
    let (id, _, request) = h.take_commit();
    assert_eq!((request.generation_id_or_member_epoch, commit_offsets(&request)), (2, vec![(1, 20)]));
    h.respond(id, commit_response(&[(1, NONE)]));
    assert_eq!(h.completed(late), Some(vec![result(1, 20, committed(2, Some(1)))]));
}

/// KIP-429 gives a revoked partition to nobody in the generation that revoked it, so work done
/// on it commits with that generation until the second-round JoinGroup; after that it is fenced.
#[test]
fn cooperative_revoked_partitions_commit_in_the_revoke_window_and_are_fenced_after_it() {
    let mut h = Harness::coop_stable();
    let before = h.lease(0, 10);
    h.heartbeat_answered(REBALANCE_IN_PROGRESS);
    let during = h.lease(0, 20);
    let deferred = h.commit(vec![before.clone()]);
    let kept = h.commit(vec![h.lease(1, 30)]);
    h.join_and_sync_with(COOP, 2, &[1]);
    // Deferred through the first round, judged against generation 2: both go out re-stamped.
    for (job, partition, offset) in [(deferred, 0, 10), (kept, 1, 30)] {
        let (id, _, request) = h.take_commit();
        assert_eq!((request.generation_id_or_member_epoch, commit_offsets(&request)), (2, vec![(partition, offset)]));
        assert_eq!(h.count("JoinGroup"), 0, "never pipelined behind a commit");
        h.respond(id, commit_response(&[(partition, NONE)]));
        assert_eq!(h.completed(job), Some(vec![result(partition, offset, committed(2, Some(1)))]));
    }
    assert_eq!(h.m.lease(&tp(0), 25), None, "no new work on a revoked partition");
    // The batch that was in progress when the SyncGroup came commits inside the window.
    let in_progress = h.commit(vec![during]);
    let (id, _, request) = h.take_commit();
    assert_eq!((request.generation_id_or_member_epoch, commit_offsets(&request)), (2, vec![(0, 20)]));
    h.m.revoke_done(h.now);
    h.pump();
    assert_eq!(h.count("JoinGroup"), 0, "the join waits for the commit in flight");
    h.respond(id, commit_response(&[(0, NONE)]));
    assert_eq!(h.completed(in_progress), Some(vec![result(0, 20, committed(2, Some(1)))]));
    // The window closed with the second-round JoinGroup: t-0 is fenced from now on.
    let (id, _, _) = h.take_join();
    let late = h.commit(vec![before.clone()]);
    assert_eq!(h.count("OffsetCommit"), 0, "deferred behind the join");
    h.respond_join(id, with_protocol(join_response(NONE, 3, "m-1", "m-0"), COOP));
    let (id, _, _) = h.take_sync();
    h.respond_sync(id, sync_ok_with(COOP, &[1]));
    let fenced = |offset| {
        result(
            0,
            offset,
            CommitOutcome::Fenced {
                lease_generation: GenerationId(1),
                current_generation: Some(GenerationId(3)),
                reason: FenceReason::NotOwned,
            },
        )
    };
    assert_eq!(h.completed(late), Some(vec![fenced(10)]));
    assert_eq!(h.count("OffsetCommit"), 0);
}

/// A lease of a revoked partition from an earlier, interrupted ownership streak stays fenced
/// in the window: only the streak the generation revoked may finish its work.
#[test]
fn cooperative_revoke_window_fences_leases_of_an_older_streak() {
    let mut h = Harness::coop_stable();
    let mut stale = h.lease(0, 10);
    stale.owned_since = GenerationId(0);
    h.heartbeat_answered(REBALANCE_IN_PROGRESS);
    h.join_and_sync_with(COOP, 2, &[1]);
    assert_eq!(h.m.state(), StateKind::Revoking);
    let job = h.commit(vec![stale]);
    assert_eq!(h.count("OffsetCommit"), 0);
    assert!(matches!(
        h.completed(job).as_deref(),
        Some([PartitionCommit {
            outcome: CommitOutcome::Fenced { reason: FenceReason::OwnershipInterrupted { .. }, .. },
            ..
        }])
    ));
}

#[test]
fn cooperative_leader_adjusts_the_assignment_before_sync() {
    let mut h = Harness::coop_stable();
    h.heartbeat_answered(REBALANCE_IN_PROGRESS);
    let (id, _, _) = h.take_join();
    // m-1 (the leader) says it owns all four partitions; m-2 is new.
    let own = Subscription {
        topics: vec!["t".into()],
        owned_partitions: tps(&[0, 1, 2, 3]),
        generation: GenerationId(1),
        ..Default::default()
    }
    .encode();
    let newcomer = subscription_metadata(&["t"]);
    let members = vec![
        JoinGroupResponseMember::default().with_member_id(s("m-1")).with_metadata(own),
        JoinGroupResponseMember::default().with_member_id(s("m-2")).with_metadata(newcomer),
    ];
    h.m.set_partition_counts([("t".to_string(), 4)]);
    h.respond_join(id, with_protocol(join_response(NONE, 2, "m-1", "m-1"), COOP).with_members(members));
    let (_, _, sync) = h.take_sync();
    let plan: std::collections::BTreeMap<String, Vec<TopicPartition>> = sync
        .assignments
        .iter()
        .map(|a| (a.member_id.to_string(), super::assignor::decode_assignment(&a.assignment).unwrap()))
        .collect();
    // Everything is owned by m-1: what moves to m-2 is left out of this generation (m-2 gets it
    // in the second round), and m-1 keeps the rest.
    assert_eq!(plan.get("m-2").cloned().unwrap_or_default(), vec![], "{plan:?}");
    assert_eq!(plan.get("m-1").map(Vec::len), Some(2), "{plan:?}");
}

#[test]
fn mixed_assignors_are_eager_until_the_group_selects_a_cooperative_one() {
    let mut h = Harness::with_config(mixed_config());
    h.found();
    h.two_step_join("m-1");
    h.join_and_sync_with("range", 1, &[0, 1]);
    h.events.clear();
    h.heartbeat_answered(REBALANCE_IN_PROGRESS);
    assert_eq!(h.m.state(), StateKind::Revoking, "range selected: eager revoke window");
    assert!(h
        .events
        .iter()
        .any(|e| matches!(e, GroupEvent::RevokeRequested { partitions, .. } if partitions.len() == 2)));
    h.m.revoke_done(h.now);
    h.pump();
    let join = h.join_and_sync_with(COOP, 2, &[0, 1]);
    assert!(join_subscription_for(&join, COOP).owned_partitions.is_empty(), "eager join revoked everything");
    h.heartbeat_answered(REBALANCE_IN_PROGRESS);
    assert_eq!(h.m.state(), StateKind::AwaitingJoin, "cooperative-sticky selected: no revoke window");
    let (_, _, join) = h.take_join();
    assert_eq!(join_subscription_for(&join, COOP).owned_partitions, tps(&[0, 1]));
    assert_eq!(join_subscription_for(&join, "range").owned_partitions, tps(&[0, 1]));
}

// ---- partition counts the leader assigns with (issue 13, item 5) ----

/// Answers the pending JoinGroup of `generation` with `m-1` leading `m-1` (subscribed to t) and
/// `m-2` (subscribed to `other`).
fn lead(h: &mut Harness, generation: i32, other: &[&str]) {
    let (id, _, _) = h.take_join();
    let members = vec![
        JoinGroupResponseMember::default().with_member_id(s("m-1")).with_metadata(subscription_metadata(&["t"])),
        JoinGroupResponseMember::default().with_member_id(s("m-2")).with_metadata(subscription_metadata(other)),
    ];
    h.respond_join(id, join_response(NONE, generation, "m-1", "m-1").with_members(members));
}

fn take_metadata(h: &mut Harness) -> (RequestId, Vec<String>) {
    let r = h.take("Metadata");
    match r.body {
        GroupRequest::Metadata { topics } => (r.id, topics),
        _ => unreachable!(),
    }
}

fn answer_metadata(h: &mut Harness, id: RequestId, counts: &[(&str, i32)]) {
    h.m.handle_metadata(h.now, id, counts.iter().map(|(t, n)| (t.to_string(), *n)).collect());
    h.pump();
}

/// The partitions of `topic` the leader's SyncGroup gives `member`.
fn assigned_of(sync: &SyncGroupRequest, member: &str, topic: &str) -> Vec<i32> {
    let assignment = sync.assignments.iter().find(|a| a.member_id.as_str() == member).expect("member in the plan");
    let partitions = super::assignor::decode_assignment(&assignment.assignment).expect("assignment decodes");
    partitions.iter().filter(|tp| &*tp.topic == topic).map(|tp| tp.partition).collect()
}

fn rejoin_reasons(h: &Harness) -> Vec<RejoinReason> {
    h.events
        .iter()
        .filter_map(|e| match e {
            GroupEvent::RevokeRequested { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn leader_asks_for_the_partition_counts_of_topics_only_other_members_subscribe_to() {
    let mut h = Harness::new();
    h.found();
    h.two_step_join("m-1");
    lead(&mut h, 1, &["t", "u"]);
    assert_eq!(h.count("SyncGroup"), 0, "nothing is assigned before u's partition count is known");
    let (id, topics) = take_metadata(&mut h);
    assert_eq!(topics, vec!["u".to_string()], "only what the leader does not know");
    answer_metadata(&mut h, id, &[("u", 2)]);
    let (_, _, sync) = h.take_sync();
    assert_eq!(assigned_of(&sync, "m-2", "u"), vec![0, 1], "u goes to its only subscriber");
    assert_eq!(assigned_of(&sync, "m-1", "t"), vec![0, 1]);
    assert_eq!(assigned_of(&sync, "m-2", "t"), vec![2, 3]);
}

#[test]
fn leader_that_cannot_learn_a_topic_assigns_what_it_knows_and_rejoins_once_metadata_shows_it() {
    let mut h = Harness::new();
    h.found();
    h.two_step_join("m-1");
    lead(&mut h, 1, &["t", "u"]);
    let (id, _) = take_metadata(&mut h);
    h.m.handle_request_failed(h.now, id, RequestFailure::TimedOut);
    h.pump();
    let (sync_id, _, sync) = h.take_sync();
    assert_eq!(assigned_of(&sync, "m-2", "u"), Vec::<i32>::new());
    h.respond_sync(sync_id, sync_ok(&[0, 1]));
    assert_eq!(h.m.state(), StateKind::Stable);
    h.events.clear();

    // Retried after retry.backoff.max.ms (1 s), for every member's topics.
    h.run_until(h.elapsed() + Duration::from_secs(1));
    let (id, topics) = take_metadata(&mut h);
    assert_eq!(topics, vec!["t".to_string(), "u".to_string()]);
    answer_metadata(&mut h, id, &[("t", 4), ("u", 2)]);
    assert_eq!(h.m.state(), StateKind::Revoking);
    assert_eq!(rejoin_reasons(&h), vec![RejoinReason::PartitionCountsChanged]);
}

#[test]
fn leader_rejoins_when_a_refresh_shows_other_partition_counts() {
    let mut h = Harness::new();
    h.found();
    h.two_step_join("m-1");
    lead(&mut h, 1, &["t"]);
    assert_eq!(h.count("Metadata"), 0, "every topic's count is known");
    let (sync_id, _, _) = h.take_sync();
    h.respond_sync(sync_id, sync_ok(&[0, 1]));
    h.events.clear();

    // metadata.max.age.ms (5 min) later: the same counts change nothing.
    let start = h.elapsed();
    h.run_until(start + Duration::from_secs(299));
    assert_eq!(h.count("Metadata"), 0, "not before metadata.max.age.ms");
    h.run_until(start + Duration::from_secs(300));
    let (id, topics) = take_metadata(&mut h);
    assert_eq!(topics, vec!["t".to_string()]);
    answer_metadata(&mut h, id, &[("t", 4)]);
    assert_eq!(h.m.state(), StateKind::Stable);

    // Partitions added: the leader rejoins so that they are assigned.
    h.run_until(start + Duration::from_secs(600));
    let (id, _) = take_metadata(&mut h);
    answer_metadata(&mut h, id, &[("t", 6)]);
    assert_eq!(h.m.state(), StateKind::Revoking);
    assert_eq!(rejoin_reasons(&h), vec![RejoinReason::PartitionCountsChanged]);
    h.m.revoke_done(h.now);
    h.pump();
    lead(&mut h, 2, &["t"]);
    let (_, _, sync) = h.take_sync();
    assert_eq!(assigned_of(&sync, "m-1", "t"), vec![0, 1, 2]);
    assert_eq!(assigned_of(&sync, "m-2", "t"), vec![3, 4, 5]);
}

#[test]
fn follower_refreshes_its_own_partition_counts_and_leaves_rejoining_to_the_leader() {
    let mut h = Harness::stable();
    h.run_until(h.elapsed() + Duration::from_secs(300));
    let (id, topics) = take_metadata(&mut h);
    assert_eq!(topics, vec!["t".to_string()]);
    answer_metadata(&mut h, id, &[("t", 6)]);
    assert_eq!(h.m.state(), StateKind::Stable, "Java's followers do not check the metadata snapshot either");
}

/// The Assigned event after an ownership gap: every partition of the new assignment is added
/// (it starts from the committed offset) and every one owned before is revoked, also when the
/// two lists name the same partitions.
fn assert_gap_restarts_everything(h: &Harness, generation: i32) {
    let (partitions, added, revoked) = assigned_event(&h.events).expect("assigned");
    let since = |p| OwnedPartition { partition: tp(p), owned_since: GenerationId(generation) };
    assert_eq!(partitions, vec![since(0), since(1)], "a new streak starts");
    assert_eq!((added, revoked), (tps(&[0, 1]), tps(&[0, 1])), "revoke + add, not kept");
    assert_eq!(h.lease(0, 5).owned_since, GenerationId(generation));
}

#[test]
fn eager_join_answered_unknown_member_id_restarts_the_partitions_it_gets_back() {
    let mut h = Harness::stable();
    h.heartbeat_answered(REBALANCE_IN_PROGRESS);
    h.m.revoke_done(h.now);
    h.pump();
    let (id, _, _) = h.take_join();
    h.respond_join(id, join_error(UNKNOWN_MEMBER_ID, ""));
    h.two_step_join("m-2");
    h.events.clear();
    h.join_and_sync(2, &[0, 1]);
    assert_gap_restarts_everything(&h, 2);
}

#[test]
fn a_missed_generation_restarts_the_partitions_the_member_gets_back() {
    let mut h = Harness::stable();
    h.heartbeat_answered(REBALANCE_IN_PROGRESS);
    h.m.revoke_done(h.now);
    h.pump();
    // Generation 2 completes without this member's SyncGroup: t-0 and t-1 may have had
    // another owner in it.
    let (id, _, join) = h.take_join();
    h.respond_join(id, join_response(NONE, 2, join.member_id.as_str(), "m-0"));
    let (id, _, _) = h.take_sync();
    h.respond_sync(id, sync_error(REBALANCE_IN_PROGRESS));
    h.events.clear();
    h.join_and_sync(3, &[0, 1]);
    assert_gap_restarts_everything(&h, 3);
}

#[test]
fn consecutive_generations_keep_the_partitions_and_their_streak() {
    let mut h = Harness::stable();
    h.rebalance(2, &[0, 1]);
    h.heartbeat_answered(REBALANCE_IN_PROGRESS);
    h.m.revoke_done(h.now);
    h.pump();
    h.events.clear();
    h.join_and_sync(3, &[1, 2]);
    let (partitions, added, revoked) = assigned_event(&h.events).expect("assigned");
    let owned = |p, since| OwnedPartition { partition: tp(p), owned_since: GenerationId(since) };
    assert_eq!(partitions, vec![owned(1, 1), owned(2, 3)]);
    assert_eq!((added, revoked), (tps(&[2]), tps(&[0])));
}

#[test]
fn an_undecodable_sync_answer_that_says_none_is_no_assignment() {
    let mut h = Harness::coop_stable();
    h.heartbeat_answered(REBALANCE_IN_PROGRESS);
    let (id, _, _) = h.take_join();
    h.respond_join(id, with_protocol(join_response(NONE, 2, "m-1", "m-0"), COOP));
    let (id, _, _) = h.take_sync();
    h.events.clear();
    h.m.handle_request_failed(h.now, id, RequestFailure::Broker(KafkaCode(NONE)));
    h.pump();
    assert_eq!(assigned_event(&h.events), None, "nothing assigned, nothing revoked");
    assert_eq!(h.m.state(), StateKind::AwaitingJoin);
    let owned = |p| OwnedPartition { partition: tp(p), owned_since: GenerationId(1) };
    assert_eq!(h.m.assignment(), vec![owned(0), owned(1)], "generation 1's partitions are still held");
}

#[test]
fn cooperative_assignment_after_a_gap_still_hands_on_what_it_takes_away() {
    let mut h = Harness::coop_stable();
    h.heartbeat_answered(REBALANCE_IN_PROGRESS);
    // Generation 2 completes without this member's SyncGroup.
    let (id, _, _) = h.take_join();
    h.respond_join(id, with_protocol(join_response(NONE, 2, "m-1", "m-0"), COOP));
    let (id, _, _) = h.take_sync();
    h.respond_sync(id, sync_error(REBALANCE_IN_PROGRESS));
    h.events.clear();
    h.join_and_sync_with(COOP, 3, &[1]);
    let (partitions, added, revoked) = assigned_event(&h.events).expect("assigned");
    assert_eq!(partitions, vec![OwnedPartition { partition: tp(1), owned_since: GenerationId(3) }]);
    assert_eq!((added, revoked), (tps(&[1]), tps(&[0, 1])), "t-1 restarts after the gap");
    // The leader gave t-0 to nobody in generation 3: only this member's rejoin hands it on.
    assert!(h.events.contains(&GroupEvent::RevokeRequested {
        generation: GenerationId(3),
        partitions: tps(&[0]),
        reason: RejoinReason::PartitionsRevoked,
    }));
    assert_eq!(h.m.state(), StateKind::Revoking, "KIP-429's second round");
}
