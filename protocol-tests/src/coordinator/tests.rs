//! Conformance of the scripted coordinator with spec §12 (T-numbers), driven over decoded
//! requests in virtual time. Every request is round-tripped through the wire encoding of its
//! version and every response is encoded at its version, so shapes are checked too.

use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::describe_groups_request::DescribeGroupsRequest;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, DescribeGroupsResponse, FindCoordinatorRequest, FindCoordinatorResponse, GroupId,
    HeartbeatRequest, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, MetadataRequest,
    OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse, RequestKind, ResponseKind,
    SyncGroupRequest, SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::errors::*;
use super::*;

const G: &str = "g";
const SESSION: i32 = 10_000;
const RT: i32 = 10_000;

struct H {
    c: ScriptedCoordinator,
    base: Instant,
    now: Instant,
    corr: i32,
    out: Vec<Outgoing>,
}

fn config() -> CoordinatorConfig {
    let mut config = CoordinatorConfig::default();
    config.topics.insert("t".to_string(), 2);
    config.topics.insert("u".to_string(), 4);
    config
}

impl H {
    fn new() -> Self {
        Self::with(config())
    }

    fn with(config: CoordinatorConfig) -> Self {
        let base = Instant::now();
        H { c: ScriptedCoordinator::new(config, base), base, now: base, corr: 0, out: Vec::new() }
    }

    /// Moves virtual time to `ms` after the start and fires due timers.
    fn at(&mut self, ms: u64) {
        self.now = self.base + Duration::from_millis(ms);
        self.c.handle_timeout(self.now);
        self.drain();
    }

    fn send(&mut self, conn: u64, version: i16, request: impl Into<RequestKind>) -> i32 {
        let request: RequestKind = request.into();
        let api = api_key(&request).expect("known api");
        let mut buf = BytesMut::new();
        request.encode(&mut buf, version).expect("request encodable at its version");
        let mut bytes = buf.freeze();
        let decoded = RequestKind::decode(api, &mut bytes, version).expect("decodable");
        self.corr += 1;
        self.c.handle_request_with_client_id(self.now, ConnId(conn), "c", self.corr, version, decoded);
        self.drain();
        self.corr
    }

    fn drain(&mut self) {
        while let Some(out) = self.c.poll_response() {
            if let Outgoing::Response { response, api_version, .. } = &out {
                let mut buf = BytesMut::new();
                response.encode(&mut buf, *api_version).expect("response encodable at its version");
            }
            self.out.push(out);
        }
    }

    fn take(&mut self, conn: u64, corr: i32) -> Option<ResponseKind> {
        let idx = self.out.iter().position(|o| {
            matches!(o, Outgoing::Response { conn: c, correlation_id, .. }
                if *c == ConnId(conn) && *correlation_id == corr)
        })?;
        match self.out.remove(idx) {
            Outgoing::Response { response, .. } => Some(response),
            Outgoing::Cut { .. } => None,
        }
    }

    fn cut_seen(&mut self, conn: u64) -> bool {
        let idx = self.out.iter().position(|o| matches!(o, Outgoing::Cut { conn: c } if *c == ConnId(conn)));
        idx.map(|i| self.out.remove(i)).is_some()
    }

    fn join(&mut self, conn: u64, corr: i32) -> Option<JoinGroupResponse> {
        match self.take(conn, corr)? {
            ResponseKind::JoinGroup(r) => Some(r),
            other => panic!("expected JoinGroup, got {other:?}"),
        }
    }

    fn sync(&mut self, conn: u64, corr: i32) -> Option<SyncGroupResponse> {
        match self.take(conn, corr)? {
            ResponseKind::SyncGroup(r) => Some(r),
            other => panic!("expected SyncGroup, got {other:?}"),
        }
    }

    fn leave(&mut self, conn: u64, corr: i32) -> Option<LeaveGroupResponse> {
        match self.take(conn, corr)? {
            ResponseKind::LeaveGroup(r) => Some(r),
            other => panic!("expected LeaveGroup, got {other:?}"),
        }
    }

    fn commit_codes(&mut self, conn: u64, corr: i32) -> Option<Vec<(String, i32, i16)>> {
        match self.take(conn, corr)? {
            ResponseKind::OffsetCommit(r) => Some(commit_codes(&r)),
            other => panic!("expected OffsetCommit, got {other:?}"),
        }
    }

    fn fetch(&mut self, conn: u64, corr: i32) -> Option<OffsetFetchResponse> {
        match self.take(conn, corr)? {
            ResponseKind::OffsetFetch(r) => Some(r),
            other => panic!("expected OffsetFetch, got {other:?}"),
        }
    }

    /// Sends a Heartbeat v4 and returns its error code (it is always answered at once).
    fn heartbeat(&mut self, conn: u64, generation: i32, member: &str) -> i16 {
        let corr = self.send(conn, 4, hb(generation, member, None));
        self.hb_code(conn, corr).expect("heartbeat answered")
    }

    fn hb_code(&mut self, conn: u64, corr: i32) -> Option<i16> {
        match self.take(conn, corr)? {
            ResponseKind::Heartbeat(r) => Some(r.error_code),
            other => panic!("expected Heartbeat, got {other:?}"),
        }
    }

    fn state(&self) -> &'static str {
        self.c.describe(G).map(|v| v.state).unwrap_or("none")
    }

    fn generation(&self) -> i32 {
        self.c.describe(G).map(|v| v.generation).unwrap_or(-2)
    }

    fn member_ids(&self) -> Vec<String> {
        self.c.describe(G).map(|v| v.members.into_iter().map(|m| m.member_id).collect()).unwrap_or_default()
    }
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn gid(v: &str) -> GroupId {
    GroupId(s(v))
}

fn join_in(
    group: &str,
    member: &str,
    instance: Option<&str>,
    session: i32,
    rt: i32,
    protocols: &[(&str, &'static [u8])],
) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(gid(group))
        .with_session_timeout_ms(session)
        .with_rebalance_timeout_ms(rt)
        .with_member_id(s(member))
        .with_group_instance_id(instance.map(s))
        .with_protocol_type(s("consumer"))
        .with_protocols(
            protocols
                .iter()
                .map(|(name, meta)| {
                    JoinGroupRequestProtocol::default().with_name(s(name)).with_metadata(Bytes::from_static(meta))
                })
                .collect(),
        )
}

fn join(member: &str, meta: &'static [u8]) -> JoinGroupRequest {
    join_in(G, member, None, SESSION, RT, &[("range", meta)])
}

fn sync(generation: i32, member: &str, assignments: &[(&str, Bytes)]) -> SyncGroupRequest {
    SyncGroupRequest::default()
        .with_group_id(gid(G))
        .with_generation_id(generation)
        .with_member_id(s(member))
        .with_protocol_type(Some(s("consumer")))
        .with_protocol_name(Some(s("range")))
        .with_assignments(
            assignments
                .iter()
                .map(|(m, a)| SyncGroupRequestAssignment::default().with_member_id(s(m)).with_assignment(a.clone()))
                .collect(),
        )
}

fn hb(generation: i32, member: &str, instance: Option<&str>) -> HeartbeatRequest {
    HeartbeatRequest::default()
        .with_group_id(gid(G))
        .with_generation_id(generation)
        .with_member_id(s(member))
        .with_group_instance_id(instance.map(s))
}

fn leave(members: &[(&str, Option<&str>)]) -> LeaveGroupRequest {
    LeaveGroupRequest::default().with_group_id(gid(G)).with_members(
        members
            .iter()
            .map(|(m, i)| MemberIdentity::default().with_member_id(s(m)).with_group_instance_id(i.map(s)))
            .collect(),
    )
}

fn commit_in(group: &str, generation: i32, member: &str, parts: &[(&str, i32, i64)]) -> OffsetCommitRequest {
    let mut topics: Vec<OffsetCommitRequestTopic> = Vec::new();
    for (topic, partition, offset) in parts {
        let p = OffsetCommitRequestPartition::default().with_partition_index(*partition).with_committed_offset(*offset);
        match topics.iter_mut().find(|t| t.name.as_str() == *topic) {
            Some(t) => t.partitions.push(p),
            None => {
                topics.push(OffsetCommitRequestTopic::default().with_name(TopicName(s(topic))).with_partitions(vec![p]))
            }
        }
    }
    OffsetCommitRequest::default()
        .with_group_id(gid(group))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(s(member))
        .with_topics(topics)
}

fn commit(generation: i32, member: &str, parts: &[(&str, i32, i64)]) -> OffsetCommitRequest {
    commit_in(G, generation, member, parts)
}

fn commit_codes(r: &OffsetCommitResponse) -> Vec<(String, i32, i16)> {
    r.topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| (t.name.to_string(), p.partition_index, p.error_code)))
        .collect()
}

fn fetch_v8(group: &str, topics: Option<&[(&str, &[i32])]>, stable: bool) -> OffsetFetchRequest {
    OffsetFetchRequest::default().with_require_stable(stable).with_groups(vec![OffsetFetchRequestGroup::default()
        .with_group_id(gid(group))
        .with_topics(topics.map(|ts| {
            ts.iter()
                .map(|(name, ps)| {
                    OffsetFetchRequestTopics::default()
                        .with_name(TopicName(s(name)))
                        .with_partition_indexes(ps.to_vec())
                })
                .collect()
        }))])
}

/// (group error, [(topic, partition, offset, error)]) of a v8 OffsetFetch response.
fn fetched_v8(r: &OffsetFetchResponse) -> (i16, Vec<(String, i32, i64, i16)>) {
    let g = &r.groups[0];
    let parts = g
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| (t.name.to_string(), p.partition_index, p.committed_offset, p.error_code))
        })
        .collect();
    (g.error_code, parts)
}

/// ConsumerProtocol assignment v0 bytes.
fn assignment(parts: &[(&str, &[i32])]) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(0);
    b.put_i32(parts.len() as i32);
    for (topic, partitions) in parts {
        b.put_i16(topic.len() as i16);
        b.put_slice(topic.as_bytes());
        b.put_i32(partitions.len() as i32);
        for p in *partitions {
            b.put_i32(*p);
        }
    }
    b.put_i32(-1);
    b.freeze()
}

/// First step of the v4+ join; returns the assigned member id.
fn first_step(h: &mut H, conn: u64, req: JoinGroupRequest) -> String {
    let corr = h.send(conn, 9, req);
    let r = h.join(conn, corr).expect("first step answered at once");
    assert_eq!(r.error_code, MEMBER_ID_REQUIRED);
    r.member_id.to_string()
}

/// Both steps of a dynamic v9 join on `conn`; returns the member id and the parked request.
fn two_step(h: &mut H, conn: u64, session: i32, rt: i32, meta: &'static [u8]) -> (String, i32) {
    let id = first_step(h, conn, join_in(G, "", None, session, rt, &[("range", meta)]));
    let corr = h.send(conn, 9, join_in(G, &id, None, session, rt, &[("range", meta)]));
    (id, corr)
}

/// A (leader, conn 1) and B (conn 2) joined at t=0; at t=6 s (initial delay, extended once
/// for B) both have their generation-1 JoinGroup response.
fn joined_pair(h: &mut H, session: i32, rt: i32) -> (String, String) {
    let (a, ca) = two_step(h, 1, session, rt, b"m");
    let (b, cb) = two_step(h, 2, session, rt, b"m");
    h.at(6_000);
    let ja = h.join(1, ca).expect("A joined");
    let jb = h.join(2, cb).expect("B joined");
    assert_eq!((ja.error_code, ja.generation_id), (NONE, 1));
    assert_eq!((jb.error_code, jb.generation_id), (NONE, 1));
    assert_eq!(ja.leader.as_str(), a);
    assert_eq!(ja.members.len(), 2);
    assert!(jb.members.is_empty());
    (a, b)
}

/// [`joined_pair`] plus both SyncGroups at t=6 s: Stable gen 1, A owns t-0, B owns t-1.
fn stable_pair(h: &mut H, session: i32, rt: i32) -> (String, String) {
    let (a, b) = joined_pair(h, session, rt);
    let assignments = [(a.as_str(), assignment(&[("t", &[0])])), (b.as_str(), assignment(&[("t", &[1])]))];
    let sa = h.send(1, 5, sync(1, &a, &assignments));
    let sb = h.send(2, 5, sync(1, &b, &[]));
    assert_eq!(h.sync(1, sa).expect("A synced").error_code, NONE);
    let rb = h.sync(2, sb).expect("B synced");
    assert_eq!(rb.error_code, NONE);
    assert_eq!(rb.assignment, assignment(&[("t", &[1])]));
    assert_eq!(h.state(), "Stable");
    (a, b)
}

/// A alone on conn 1: joined at t=0, answered at t=3 s, synced: Stable gen 1, owns t-0, t-1.
fn stable_single(h: &mut H, session: i32, rt: i32) -> String {
    let (a, ca) = two_step(h, 1, session, rt, b"m");
    h.at(3_000);
    let r = h.join(1, ca).expect("joined");
    assert_eq!((r.error_code, r.generation_id), (NONE, 1));
    let sa = h.send(1, 5, sync(1, &a, &[(&a, assignment(&[("t", &[0, 1])]))]));
    assert_eq!(h.sync(1, sa).expect("synced").error_code, NONE);
    a
}

// ------------------------------------------------------------------------------------------
// JoinGroup

#[test]
fn t04_t05a_two_step_join_waits_out_the_initial_delay() {
    let mut h = H::new();
    let c1 = h.send(1, 9, join_in(G, "", None, SESSION, 300_000, &[("range", b"m")]));
    let r = h.join(1, c1).expect("first step answered at once");
    assert_eq!(r.error_code, MEMBER_ID_REQUIRED);
    assert!(r.member_id.starts_with("c-"), "{:?}", r.member_id);
    assert_eq!(r.member_id.len(), "c-".len() + 36);
    assert_eq!((r.generation_id, r.leader.as_str()), (-1, ""));
    assert_eq!(r.protocol_name, None);
    let id = r.member_id.to_string();
    let view = h.c.describe(G).expect("group created");
    assert_eq!((view.state, view.generation), ("Empty", 0));
    assert_eq!(view.pending_members, vec![id.clone()]);

    let c2 = h.send(1, 9, join_in(G, &id, None, SESSION, 300_000, &[("range", b"m")]));
    assert!(h.join(1, c2).is_none());
    assert_eq!(h.state(), "PreparingRebalance");
    assert!(h.c.is_muted(ConnId(1)));
    assert_eq!(h.c.poll_timeout(), Some(h.base + Duration::from_millis(3_000)));
    h.at(2_999);
    assert!(h.join(1, c2).is_none());
    h.at(3_000);
    let r = h.join(1, c2).expect("answered at 3 s");
    assert_eq!((r.error_code, r.generation_id), (NONE, 1));
    assert_eq!((r.member_id.as_str(), r.leader.as_str()), (id.as_str(), id.as_str()));
    assert_eq!(r.protocol_type.as_deref(), Some("consumer"));
    assert_eq!(r.protocol_name.as_deref(), Some("range"));
    assert!(!r.skip_assignment);
    assert_eq!(r.members.len(), 1);
    assert_eq!(r.members[0].metadata, Bytes::from_static(b"m"));
    assert_eq!(h.state(), "CompletingRebalance");
    assert!(!h.c.is_muted(ConnId(1)));
}

#[test]
fn t05b_initial_delay_is_extended_for_each_new_member() {
    let mut h = H::new();
    let (a, ca) = two_step(&mut h, 1, SESSION, 300_000, b"m");
    h.at(1_000);
    let (b, cb) = two_step(&mut h, 2, SESSION, 300_000, b"m");
    h.at(3_000);
    assert!(h.join(1, ca).is_none());
    h.at(5_999);
    assert!(h.join(1, ca).is_none() && h.join(2, cb).is_none());
    h.at(6_000);
    let ra = h.join(1, ca).expect("A");
    let rb = h.join(2, cb).expect("B");
    assert_eq!((ra.generation_id, rb.generation_id), (1, 1));
    assert_eq!((ra.leader.as_str(), rb.leader.as_str()), (a.as_str(), a.as_str()));
    assert_eq!((ra.members.len(), rb.members.len()), (2, 0));
    assert_eq!(rb.member_id.as_str(), b);
}

#[test]
fn t06_old_versions_and_static_members_join_directly() {
    let mut h = H::new();
    let c = h.send(1, 3, join("", b"m"));
    assert!(h.join(1, c).is_none(), "v3 parked without MEMBER_ID_REQUIRED");
    let c2 = h.send(2, 9, join_in(G, "", Some("i1"), SESSION, RT, &[("range", b"m")]));
    assert!(h.join(2, c2).is_none(), "static: parked, no MEMBER_ID_REQUIRED");
    h.at(6_000);
    let r1 = h.join(1, c).expect("v3 member");
    let r2 = h.join(2, c2).expect("static member");
    assert_eq!((r1.error_code, r1.generation_id), (NONE, 1));
    assert_eq!(r1.protocol_name.as_deref(), Some("range"));
    assert!(r2.member_id.starts_with("i1-"));
    assert_eq!(r2.generation_id, 1);
}

#[test]
fn t07_t09_join_validation_errors() {
    let mut h = H::new();
    let c = h.send(1, 9, join_in(G, "", None, 5_999, RT, &[("range", b"m")]));
    let r = h.join(1, c).expect("answered");
    assert_eq!((r.error_code, r.generation_id), (INVALID_SESSION_TIMEOUT, -1));
    let c = h.send(1, 9, join_in(G, "", None, 1_800_001, RT, &[("range", b"m")]));
    assert_eq!(h.join(1, c).expect("answered").error_code, INVALID_SESSION_TIMEOUT);
    let c = h.send(1, 9, join_in("", "", None, SESSION, RT, &[("range", b"m")]));
    assert_eq!(h.join(1, c).expect("answered").error_code, INVALID_GROUP_ID);
    // T09: a member id for a group that does not exist.
    let c = h.send(1, 9, join("stale-id", b"m"));
    let r = h.join(1, c).expect("answered");
    assert_eq!((r.error_code, r.member_id.as_str()), (UNKNOWN_MEMBER_ID, "stale-id"));
    assert!(h.c.describe(G).is_none());
    // Errors below v7 carry "" as protocol name (not null).
    let c = h.send(1, 6, join_in("", "", None, SESSION, RT, &[("range", b"m")]));
    assert_eq!(h.join(1, c).expect("answered").protocol_name.as_deref(), Some(""));
}

#[test]
fn t08_inconsistent_protocols_are_refused() {
    let mut h = H::new();
    stable_single(&mut h, SESSION, RT);
    let mut other = join_in(G, "", None, SESSION, RT, &[("range", b"m")]);
    other.protocol_type = s("connect");
    let c = h.send(2, 9, other);
    assert_eq!(h.join(2, c).expect("answered").error_code, INCONSISTENT_GROUP_PROTOCOL);
    let c = h.send(2, 9, join_in(G, "", None, SESSION, RT, &[("roundrobin", b"m")]));
    let r = h.join(2, c).expect("answered");
    assert_eq!((r.error_code, r.member_id.as_str()), (INCONSISTENT_GROUP_PROTOCOL, ""));
    assert_eq!(h.state(), "Stable");
}

#[test]
fn t10_follower_rejoin_with_same_metadata_is_answered_at_once() {
    let mut h = H::new();
    let (a, b) = stable_pair(&mut h, SESSION, RT);
    let c = h.send(2, 9, join(&b, b"m"));
    let r = h.join(2, c).expect("immediate");
    assert_eq!((r.error_code, r.generation_id), (NONE, 1));
    assert_eq!((r.leader.as_str(), r.members.len()), (a.as_str(), 0));
    assert_eq!(h.state(), "Stable");
    // The follower then gets its unchanged assignment.
    let c = h.send(2, 5, sync(1, &b, &[]));
    assert_eq!(h.sync(2, c).expect("sync").assignment, assignment(&[("t", &[1])]));
}

#[test]
fn t11_t27_t28_leader_rejoin_rebalances() {
    let mut h = H::new();
    let (a, b) = stable_pair(&mut h, SESSION, RT);
    h.at(7_000);
    let ca = h.send(1, 9, join(&a, b"m"));
    assert!(h.join(1, ca).is_none());
    assert_eq!((h.state(), h.generation()), ("PreparingRebalance", 1));
    // T27: the member that has not rejoined learns about it from its heartbeat.
    assert_eq!(h.heartbeat(2, 1, &b), REBALANCE_IN_PROGRESS);
    let cb = h.send(2, 9, join(&b, b"m"));
    let ra = h.join(1, ca).expect("completed when both rejoined");
    let rb = h.join(2, cb).expect("B");
    assert_eq!((ra.generation_id, rb.generation_id), (2, 2));
    assert_eq!(h.state(), "CompletingRebalance");
    // T28: heartbeats in CompletingRebalance get NONE.
    assert_eq!(h.heartbeat(2, 2, &b), NONE);
    assert_eq!(h.state(), "CompletingRebalance");
}

#[test]
fn t11b_follower_with_changed_metadata_rebalances() {
    let mut h = H::new();
    let (_a, b) = stable_pair(&mut h, SESSION, RT);
    let cb = h.send(2, 9, join(&b, b"changed"));
    assert!(h.join(2, cb).is_none());
    assert_eq!(h.state(), "PreparingRebalance");
}

#[test]
fn join_barrier_completes_as_soon_as_every_member_rejoined() {
    let mut h = H::new();
    let (a, b) = stable_pair(&mut h, SESSION, 60_000);
    h.at(7_000);
    let ca = h.send(1, 9, join(&a, b"m"));
    assert!(h.join(1, ca).is_none());
    let cb = h.send(2, 9, join(&b, b"m"));
    // No wait for the 60 s rebalance timeout.
    assert_eq!(h.join(1, ca).expect("A").generation_id, 2);
    assert_eq!(h.join(2, cb).expect("B").generation_id, 2);
}

#[test]
fn t12_group_max_size_refuses_the_first_step() {
    let mut config = config();
    config.max_group_size = 2;
    let mut h = H::with(config);
    stable_pair(&mut h, SESSION, RT);
    let c = h.send(3, 9, join("", b"m"));
    let r = h.join(3, c).expect("answered");
    assert_eq!((r.error_code, r.member_id.as_str()), (GROUP_MAX_SIZE_REACHED, ""));
    assert_eq!(h.member_ids().len(), 2);
}

#[test]
fn t13_first_step_alone_leaves_the_group_stable_and_expires() {
    let mut h = H::new();
    stable_single(&mut h, 30_000, RT);
    h.at(4_000);
    let id = first_step(&mut h, 2, join_in(G, "", None, 6_000, RT, &[("range", b"m")]));
    assert_eq!((h.state(), h.generation()), ("Stable", 1));
    h.at(9_999);
    assert_eq!(h.c.describe(G).expect("g").pending_members, vec![id.clone()]);
    h.at(10_000);
    assert!(h.c.describe(G).expect("g").pending_members.is_empty());
    let c = h.send(2, 9, join(&id, b"m"));
    assert_eq!(h.join(2, c).expect("answered").error_code, UNKNOWN_MEMBER_ID);
}

#[test]
fn t14a_pending_member_holds_the_join_until_its_session_expires() {
    let mut h = H::new();
    let (a, b) = stable_pair(&mut h, SESSION, 60_000);
    h.at(7_000);
    let ca = h.send(1, 9, join(&a, b"m"));
    let pending = first_step(&mut h, 3, join_in(G, "", None, 10_000, 60_000, &[("range", b"m")]));
    let cb = h.send(2, 9, join(&b, b"m"));
    h.at(16_999);
    assert!(h.join(1, ca).is_none() && h.join(2, cb).is_none());
    assert_eq!(h.c.describe(G).expect("g").pending_members, vec![pending]);
    h.at(17_000);
    let ra = h.join(1, ca).expect("completed at the pending expiry");
    assert_eq!((ra.generation_id, ra.members.len()), (2, 2));
    assert_eq!(h.join(2, cb).expect("B").generation_id, 2);
    assert!(h.c.describe(G).expect("g").pending_members.is_empty());
}

#[test]
fn t14b_leave_of_the_pending_member_completes_the_join_at_once() {
    let mut h = H::new();
    let (a, b) = stable_pair(&mut h, SESSION, 60_000);
    h.at(7_000);
    let ca = h.send(1, 9, join(&a, b"m"));
    let pending = first_step(&mut h, 3, join_in(G, "", None, 10_000, 60_000, &[("range", b"m")]));
    let cb = h.send(2, 9, join(&b, b"m"));
    h.at(8_000);
    let c = h.send(3, 5, leave(&[(&pending, None)]));
    let r = h.leave(3, c).expect("leave");
    assert_eq!((r.error_code, r.members[0].error_code), (NONE, NONE));
    assert_eq!(h.join(1, ca).expect("A").generation_id, 2);
    assert_eq!(h.join(2, cb).expect("B").generation_id, 2);
}

#[test]
fn new_member_join_is_cut_off_after_five_minutes() {
    let mut h = H::new();
    let a = stable_single(&mut h, SESSION, 600_000);
    h.at(4_000);
    let (_b, cb) = two_step(&mut h, 2, SESSION, 600_000, b"m");
    // A keeps heartbeating but never rejoins; the rebalance timeout is 10 minutes.
    let mut t = 4_000;
    while t < 303_999 {
        t += 5_000;
        h.at(t.min(303_999));
        assert_eq!(h.heartbeat(1, 1, &a), REBALANCE_IN_PROGRESS);
    }
    assert!(h.join(2, cb).is_none());
    h.at(304_000);
    let r = h.join(2, cb).expect("new-member timeout");
    assert_eq!((r.error_code, r.member_id.as_str()), (UNKNOWN_MEMBER_ID, ""));
    assert_eq!(h.member_ids(), vec![a]);
    assert_eq!(h.state(), "PreparingRebalance");
}

#[test]
fn protocol_is_selected_by_votes_among_common_protocols() {
    let mut h = H::new();
    let both: &[(&str, &'static [u8])] = &[("range", b"m"), ("roundrobin", b"m")];
    let rr_first: &[(&str, &'static [u8])] = &[("roundrobin", b"m"), ("range", b"m")];
    let c1 = h.send(1, 3, join_in(G, "", None, SESSION, RT, both));
    let c2 = h.send(2, 3, join_in(G, "", None, SESSION, RT, rr_first));
    let c3 = h.send(3, 3, join_in(G, "", None, SESSION, RT, both));
    h.at(9_000);
    for (conn, corr) in [(1, c1), (2, c2), (3, c3)] {
        let r = h.join(conn, corr).expect("joined");
        assert_eq!(r.protocol_name.as_deref(), Some("range"));
    }
    // A group whose members only have "roundrobin" in common.
    let only_rr: &[(&str, &'static [u8])] = &[("roundrobin", b"m")];
    let c1 = h.send(4, 3, join_in("g2", "", None, SESSION, RT, both));
    let c2 = h.send(5, 3, join_in("g2", "", None, SESSION, RT, only_rr));
    h.at(20_000);
    assert_eq!(h.join(4, c1).expect("1").protocol_name.as_deref(), Some("roundrobin"));
    assert_eq!(h.join(5, c2).expect("2").protocol_name.as_deref(), Some("roundrobin"));
}

#[test]
fn join_responses_encode_at_every_version() {
    let mut h = H::new();
    for version in 0..=9i16 {
        let group = format!("gv{version}");
        let conn = 100 + version as u64;
        let mut member = String::new();
        if version >= 4 {
            let c = h.send(conn, version, join_in(&group, "", None, SESSION, RT, &[("range", b"m")]));
            let r = h.join(conn, c).expect("first step");
            assert_eq!(r.error_code, MEMBER_ID_REQUIRED);
            member = r.member_id.to_string();
        }
        let c = h.send(conn, version, join_in(&group, &member, None, SESSION, RT, &[("range", b"m")]));
        h.at(3_000 * (version as u64 + 1));
        let r = h.join(conn, c).expect("joined");
        assert_eq!((r.error_code, r.generation_id), (NONE, 1), "v{version}");
        assert_eq!(r.protocol_name.as_deref(), Some("range"));
        assert_eq!(r.protocol_type.as_deref(), (version >= 7).then_some("consumer"));
    }
}

// ------------------------------------------------------------------------------------------
// SyncGroup

#[test]
fn t16_t17_followers_wait_for_the_leader_assignment() {
    let mut h = H::new();
    let (a, b) = joined_pair(&mut h, SESSION, RT);
    let cb = h.send(2, 5, sync(1, &b, &[]));
    assert!(h.sync(2, cb).is_none(), "parked until the leader syncs");
    // T17: the leader leaves B out.
    let ca = h.send(1, 5, sync(1, &a, &[(&a, assignment(&[("t", &[0, 1])]))]));
    let ra = h.sync(1, ca).expect("A");
    let rb = h.sync(2, cb).expect("B");
    assert_eq!((ra.error_code, rb.error_code), (NONE, NONE));
    assert_eq!(ra.assignment, assignment(&[("t", &[0, 1])]));
    assert_eq!(rb.assignment, Bytes::new());
    assert_eq!(rb.protocol_name.as_deref(), Some("range"));
    assert_eq!(h.state(), "Stable");
    let history = h.c.assignment_history(G);
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].0, 1);
    assert_eq!(history[0].1[&a], vec![("t".to_string(), 0), ("t".to_string(), 1)]);
    assert_eq!(history[0].1[&b], Vec::<(String, i32)>::new());
}

#[test]
fn t18_t23_t24_sync_validation() {
    let mut h = H::new();
    let (a, _b) = joined_pair(&mut h, SESSION, RT);
    let c = h.send(1, 5, sync(2, &a, &[]));
    assert_eq!(h.sync(1, c).expect("T18").error_code, ILLEGAL_GENERATION);
    let c = h.send(1, 5, sync(0, &a, &[]));
    assert_eq!(h.sync(1, c).expect("T18").error_code, ILLEGAL_GENERATION);
    let c = h.send(1, 5, sync(1, &a, &[]).with_protocol_name(None));
    assert_eq!(h.sync(1, c).expect("T23").error_code, INCONSISTENT_GROUP_PROTOCOL);
    let c = h.send(1, 5, sync(1, &a, &[]).with_protocol_name(Some(s("roundrobin"))));
    assert_eq!(h.sync(1, c).expect("T23").error_code, INCONSISTENT_GROUP_PROTOCOL);
    let c = h.send(1, 5, sync(1, "nobody", &[]));
    assert_eq!(h.sync(1, c).expect("T24").error_code, UNKNOWN_MEMBER_ID);
    // v4 has no protocol fields: no check.
    let c = h.send(1, 4, sync(1, &a, &[]).with_protocol_type(None).with_protocol_name(None));
    assert_eq!(h.sync(1, c).expect("v4").error_code, NONE);
}

#[test]
fn t19_t20_sync_during_a_new_rebalance() {
    let mut h = H::new();
    let (_a, b) = joined_pair(&mut h, SESSION, RT);
    let cb = h.send(2, 5, sync(1, &b, &[]));
    assert!(h.sync(2, cb).is_none());
    // T20: C's second step starts a rebalance; B's parked SyncGroup is released.
    let (_c, cc) = two_step(&mut h, 3, SESSION, RT, b"m");
    assert!(h.join(3, cc).is_none());
    assert_eq!(h.sync(2, cb).expect("released").error_code, REBALANCE_IN_PROGRESS);
    assert_eq!(h.state(), "PreparingRebalance");
    // T19: a SyncGroup with the old generation in PreparingRebalance.
    let c = h.send(2, 5, sync(1, &b, &[]));
    assert_eq!(h.sync(2, c).expect("T19").error_code, REBALANCE_IN_PROGRESS);
}

#[test]
fn t21_leader_that_never_syncs_is_removed() {
    let mut h = H::new();
    let (a, b) = joined_pair(&mut h, 30_000, RT);
    let cb = h.send(2, 5, sync(1, &b, &[]));
    h.at(10_000);
    assert_eq!(h.heartbeat(1, 1, &a), NONE);
    h.at(15_999);
    assert!(h.sync(2, cb).is_none());
    h.at(16_000);
    assert_eq!(h.sync(2, cb).expect("released").error_code, REBALANCE_IN_PROGRESS);
    assert_eq!(h.member_ids(), vec![b]);
    assert_eq!(h.heartbeat(1, 1, &a), UNKNOWN_MEMBER_ID);
}

#[test]
fn t22_follower_that_never_syncs_is_removed_from_a_stable_group() {
    let mut h = H::new();
    let (a, b) = joined_pair(&mut h, 30_000, RT);
    let ca = h.send(1, 5, sync(1, &a, &[]));
    assert_eq!(h.sync(1, ca).expect("A").error_code, NONE);
    h.at(10_000);
    assert_eq!(h.heartbeat(2, 1, &b), NONE);
    h.at(15_999);
    assert_eq!((h.state(), h.member_ids().len()), ("Stable", 2));
    h.at(16_000);
    assert_eq!(h.state(), "PreparingRebalance");
    assert_eq!(h.member_ids(), vec![a.clone()]);
    assert_eq!(h.heartbeat(1, 1, &a), REBALANCE_IN_PROGRESS);
    assert_eq!(h.heartbeat(2, 1, &b), UNKNOWN_MEMBER_ID);
}

// ------------------------------------------------------------------------------------------
// Heartbeat

#[test]
fn t26_t29_static_member_that_missed_the_join_gets_illegal_generation() {
    let mut h = H::new();
    let cs = h.send(1, 9, join_in(G, "", Some("s"), 60_000, RT, &[("range", b"m")]));
    h.at(3_000);
    let sid = h.join(1, cs).expect("static").member_id.to_string();
    let c = h.send(1, 5, sync(1, &sid, &[]));
    assert_eq!(h.sync(1, c).expect("sync").error_code, NONE);
    assert_eq!(h.heartbeat(1, 1, &sid), NONE); // T26
    h.at(4_000);
    let (d, cd) = two_step(&mut h, 2, SESSION, RT, b"m");
    h.at(13_999);
    assert!(h.join(2, cd).is_none());
    h.at(14_000);
    let rd = h.join(2, cd).expect("completed at the rebalance timeout");
    assert_eq!((rd.generation_id, rd.leader.as_str()), (2, d.as_str()));
    assert_eq!(rd.members.len(), 2, "the static member stays and gets an assignment");
    assert_eq!(h.heartbeat(1, 1, &sid), ILLEGAL_GENERATION);
    assert_eq!(h.heartbeat(1, 2, &sid), NONE);
}

#[test]
fn t30_dynamic_member_that_missed_the_join_is_removed() {
    let mut h = H::new();
    let x = stable_single(&mut h, SESSION, RT);
    h.at(4_000);
    let (_y, cy) = two_step(&mut h, 2, SESSION, RT, b"m");
    h.at(9_000);
    assert_eq!(h.heartbeat(1, 1, &x), REBALANCE_IN_PROGRESS);
    h.at(14_000);
    assert_eq!(h.join(2, cy).expect("Y").generation_id, 2);
    assert_eq!(h.heartbeat(1, 1, &x), UNKNOWN_MEMBER_ID);
}

#[test]
fn t31_session_expiry_removes_a_silent_member() {
    let mut h = H::new();
    let (a, _b) = stable_pair(&mut h, 6_000, RT);
    h.at(9_000);
    assert_eq!(h.heartbeat(1, 1, &a), NONE);
    h.at(11_999);
    assert_eq!((h.state(), h.member_ids().len()), ("Stable", 2));
    h.at(12_000);
    assert_eq!(h.member_ids(), vec![a.clone()]);
    assert_eq!(h.heartbeat(1, 1, &a), REBALANCE_IN_PROGRESS);
}

// ------------------------------------------------------------------------------------------
// LeaveGroup

#[test]
fn t34_t36_leave_group() {
    let mut h = H::new();
    let (a, b) = stable_pair(&mut h, SESSION, RT);
    let c = h.send(3, 5, leave(&[("nobody", None)]));
    let r = h.leave(3, c).expect("T36");
    assert_eq!((r.error_code, r.members[0].error_code), (NONE, UNKNOWN_MEMBER_ID));
    let c = h.send(1, 5, leave(&[(&a, None)]));
    let r = h.leave(1, c).expect("T34");
    assert_eq!((r.error_code, r.members.len(), r.members[0].error_code), (NONE, 1, NONE));
    assert_eq!(r.members[0].member_id.as_str(), a);
    assert_eq!(h.heartbeat(2, 1, &b), REBALANCE_IN_PROGRESS);
    let cb = h.send(2, 9, join(&b, b"m"));
    let rb = h.join(2, cb).expect("only member rejoined");
    assert_eq!((rb.generation_id, rb.leader.as_str()), (2, b.as_str()));
    // Unknown group: top-level NONE, member UNKNOWN_MEMBER_ID; v0-2 fold it in.
    let c = h.send(
        3,
        5,
        LeaveGroupRequest::default()
            .with_group_id(gid("nope"))
            .with_members(vec![MemberIdentity::default().with_member_id(s("x"))]),
    );
    assert_eq!(h.leave(3, c).expect("unknown group").members[0].error_code, UNKNOWN_MEMBER_ID);
    let c = h.send(3, 2, LeaveGroupRequest::default().with_group_id(gid("nope")).with_member_id(s("x")));
    assert_eq!(h.leave(3, c).expect("v2").error_code, UNKNOWN_MEMBER_ID);
}

#[test]
fn t35_last_member_leaving_bumps_the_generation() {
    let mut h = H::new();
    let a = stable_single(&mut h, SESSION, RT);
    let c = h.send(1, 5, leave(&[(&a, None)]));
    assert_eq!(h.leave(1, c).expect("leave").error_code, NONE);
    assert_eq!((h.state(), h.generation()), ("Empty", 2));
    h.at(5_000);
    let (_b, cb) = two_step(&mut h, 2, SESSION, RT, b"m");
    h.at(8_000);
    assert_eq!(h.join(2, cb).expect("rejoined").generation_id, 3);
}

#[test]
fn t37_static_member_removal_by_instance_id() {
    let mut h = H::new();
    let cs = h.send(1, 9, join_in(G, "", Some("i"), SESSION, RT, &[("range", b"m")]));
    h.at(3_000);
    let sid = h.join(1, cs).expect("static").member_id.to_string();
    let c = h.send(2, 5, leave(&[("wrong", Some("i"))]));
    assert_eq!(h.leave(2, c).expect("b").members[0].error_code, FENCED_INSTANCE_ID);
    let c = h.send(2, 5, leave(&[("", Some("i"))]));
    let r = h.leave(2, c).expect("a");
    assert_eq!(r.members[0].error_code, NONE);
    assert_eq!(r.members[0].group_instance_id.as_deref(), Some("i"));
    assert!(!h.member_ids().contains(&sid));
    assert_eq!((h.state(), h.generation()), ("Empty", 2));
}

// ------------------------------------------------------------------------------------------
// OffsetCommit

#[test]
fn t39_t40_commit_with_the_old_generation_during_preparing_rebalance() {
    let mut h = H::new();
    let (a, b) = stable_pair(&mut h, SESSION, RT);
    let c = h.send(1, 8, commit(1, &a, &[("t", 0, 10)]));
    assert_eq!(h.commit_codes(1, c).expect("T39"), vec![("t".into(), 0, NONE)]);
    h.at(7_000);
    let (_c, _cc) = two_step(&mut h, 3, SESSION, RT, b"m");
    assert_eq!(h.state(), "PreparingRebalance");
    h.at(15_000);
    let c = h.send(1, 8, commit(1, &a, &[("t", 0, 20)]));
    assert_eq!(h.commit_codes(1, c).expect("T40"), vec![("t".into(), 0, NONE)]);
    assert_eq!(h.c.committed(G, "t", 0), Some(20));
    // The commit re-armed A's session; B (armed at 6 s) expires at 16 s.
    h.at(16_000);
    assert_eq!(h.member_ids().len(), 2);
    assert!(h.member_ids().contains(&a));
    assert!(!h.member_ids().contains(&b));
}

#[test]
fn t41_t42_commits_during_completing_rebalance() {
    let mut h = H::new();
    let (a, b) = stable_pair(&mut h, SESSION, RT);
    let (_c, cc) = two_step(&mut h, 3, SESSION, RT, b"m");
    let ca = h.send(1, 9, join(&a, b"m"));
    let cb = h.send(2, 9, join(&b, b"m"));
    for (conn, corr) in [(1, ca), (2, cb), (3, cc)] {
        assert_eq!(h.join(conn, corr).expect("joined").generation_id, 2);
    }
    assert_eq!(h.state(), "CompletingRebalance");
    let c = h.send(1, 8, commit(2, &a, &[("t", 0, 5), ("t", 1, 6)]));
    assert_eq!(
        h.commit_codes(1, c).expect("T41"),
        vec![("t".into(), 0, REBALANCE_IN_PROGRESS), ("t".into(), 1, REBALANCE_IN_PROGRESS)]
    );
    let c = h.send(1, 8, commit(1, &a, &[("t", 0, 5)]));
    assert_eq!(h.commit_codes(1, c).expect("T42"), vec![("t".into(), 0, ILLEGAL_GENERATION)]);
    assert_eq!(h.c.committed(G, "t", 0), None);
}

#[test]
fn t43_generation_minus_one_commits_to_empty_groups() {
    let mut h = H::new();
    let c = h.send(1, 8, commit_in("manual", -1, "", &[("t", 0, 7)]));
    assert_eq!(h.commit_codes(1, c).expect("a"), vec![("t".into(), 0, NONE)]);
    let view = h.c.describe("manual").expect("created");
    assert_eq!((view.state, view.generation, view.protocol_type), ("Empty", 0, None));
    assert_eq!(h.c.committed("manual", "t", 0), Some(7));
    // (b) An Empty group accepts gen -1 with any member and instance id.
    let a = stable_single(&mut h, SESSION, RT);
    let c = h.send(1, 5, leave(&[(&a, None)]));
    assert_eq!(h.leave(1, c).expect("left").error_code, NONE);
    let req = commit(-1, "anything", &[("t", 1, 9)]).with_group_instance_id(Some(s("i")));
    let c = h.send(2, 8, req);
    assert_eq!(h.commit_codes(2, c).expect("b"), vec![("t".into(), 1, NONE)]);
    let record = h.c.accepted_commits().last().expect("recorded").clone();
    assert_eq!((record.generation, record.owner_at_generation), (-1, None));
}

#[test]
fn t44_t45_t46_generation_and_member_checks() {
    let mut h = H::new();
    let (a, _b) = stable_pair(&mut h, SESSION, RT);
    let c = h.send(3, 8, commit(-1, "", &[("t", 0, 1)]));
    assert_eq!(h.commit_codes(3, c).expect("T44a"), vec![("t".into(), 0, UNKNOWN_MEMBER_ID)]);
    let c = h.send(1, 8, commit(-1, &a, &[("t", 0, 1)]));
    assert_eq!(h.commit_codes(1, c).expect("T44b"), vec![("t".into(), 0, ILLEGAL_GENERATION)]);
    let c = h.send(3, 8, commit_in("never", 5, "x", &[("t", 0, 1)]));
    assert_eq!(h.commit_codes(3, c).expect("T45"), vec![("t".into(), 0, ILLEGAL_GENERATION)]);
    assert!(h.c.describe("never").is_none());
    // T46 on a static group.
    let cs = h.send(4, 9, join_in("gs", "", Some("i"), SESSION, RT, &[("range", b"m")]));
    h.at(9_000);
    let sid = h.join(4, cs).expect("static").member_id.to_string();
    let req = commit_in("gs", 1, "other", &[("t", 0, 1)]).with_group_instance_id(Some(s("i")));
    let c = h.send(4, 8, req);
    assert_eq!(h.commit_codes(4, c).expect("T46"), vec![("t".into(), 0, FENCED_INSTANCE_ID)]);
    let req = commit_in("gs", 1, &sid, &[("t", 0, 1)]).with_group_instance_id(Some(s("i")));
    let c = h.send(4, 8, req);
    assert_eq!(h.commit_codes(4, c).expect("member"), vec![("t".into(), 0, REBALANCE_IN_PROGRESS)]);
}

#[test]
fn t47_oversized_metadata_is_refused_per_partition() {
    let mut h = H::new();
    let (a, _b) = stable_pair(&mut h, SESSION, RT);
    let mut req = commit(1, &a, &[("t", 0, 100), ("t", 1, 200)]);
    req.topics[0].partitions[0].committed_metadata = Some(s(&"x".repeat(4097)));
    req.topics[0].partitions[1].committed_metadata = Some(s(&"y".repeat(4096)));
    let c = h.send(1, 8, req);
    assert_eq!(
        h.commit_codes(1, c).expect("T47"),
        vec![("t".into(), 0, OFFSET_METADATA_TOO_LARGE), ("t".into(), 1, NONE)]
    );
    assert_eq!((h.c.committed(G, "t", 0), h.c.committed(G, "t", 1)), (None, Some(200)));
}

#[test]
fn t48_unknown_topics_are_refused_before_any_group_check() {
    let mut h = H::new();
    let c = h.send(1, 8, commit_in("never", 7, "x", &[("nope", 0, 1), ("t", 2, 1)]));
    assert_eq!(
        h.commit_codes(1, c).expect("T48"),
        vec![("nope".into(), 0, UNKNOWN_TOPIC_OR_PARTITION), ("t".into(), 2, UNKNOWN_TOPIC_OR_PARTITION)]
    );
    assert!(h.c.describe("never").is_none());
    let c = h.send(1, 8, commit_in("never", 7, "x", &[("nope", 0, 1), ("t", 1, 1)]));
    assert_eq!(
        h.commit_codes(1, c).expect("mixed"),
        vec![("nope".into(), 0, UNKNOWN_TOPIC_OR_PARTITION), ("t".into(), 1, ILLEGAL_GENERATION)]
    );
}

#[test]
fn commit_queued_behind_its_own_join_is_judged_after_the_join() {
    let mut h = H::new();
    let (a, b) = stable_pair(&mut h, SESSION, 60_000);
    let (_c, cc) = two_step(&mut h, 3, SESSION, 60_000, b"m");
    // A rejoins and pipelines a commit of generation 1 on the same connection.
    let ca = h.send(1, 9, join(&a, b"m"));
    let queued = h.send(1, 8, commit(1, &a, &[("t", 0, 50)]));
    assert!(h.c.is_muted(ConnId(1)));
    assert_eq!(h.c.queued_requests(ConnId(1)), 1);
    assert!(h.commit_codes(1, queued).is_none());
    // The same commit on another connection is judged now: PreparingRebalance accepts it.
    let other = h.send(4, 8, commit(1, &a, &[("t", 0, 40)]));
    assert_eq!(h.commit_codes(4, other).expect("now"), vec![("t".into(), 0, NONE)]);
    // B's rejoin completes the join; only then is A's queued commit handled.
    let cb = h.send(2, 9, join(&b, b"m"));
    assert_eq!(h.join(1, ca).expect("A").generation_id, 2);
    assert_eq!(h.join(2, cb).expect("B").generation_id, 2);
    assert_eq!(h.join(3, cc).expect("C").generation_id, 2);
    assert_eq!(h.commit_codes(1, queued).expect("after the join"), vec![("t".into(), 0, ILLEGAL_GENERATION)]);
    assert!(!h.c.is_muted(ConnId(1)));
    assert_eq!(h.c.committed(G, "t", 0), Some(40));
    // The accepted commit came from the owner of t-0 in generation 1.
    let record = h.c.accepted_commits().last().expect("one record").clone();
    assert_eq!((record.member_id.as_str(), record.generation, record.offset), (a.as_str(), 1, 40));
    assert!(record.by_owner());
}

#[test]
fn oracle_flags_commits_of_partitions_the_member_did_not_own() {
    let mut h = H::new();
    let (a, b) = stable_pair(&mut h, SESSION, RT);
    let c = h.send(1, 8, commit(1, &a, &[("t", 0, 1), ("t", 1, 2)]));
    assert_eq!(h.commit_codes(1, c).expect("accepted").len(), 2);
    let records = h.c.accepted_commits();
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].owner_at_generation.as_deref(), Some(a.as_str()));
    assert!(records[0].by_owner());
    assert_eq!(records[1].owner_at_generation.as_deref(), Some(b.as_str()));
    assert!(!records[1].by_owner());
}

#[test]
fn decode_assignment_is_lenient() {
    let full = assignment(&[("t", &[0, 1]), ("u", &[3])]);
    let expected = vec![("t".to_string(), 0), ("t".to_string(), 1), ("u".to_string(), 3)];
    assert_eq!(decode_assignment(&full), expected);
    assert_eq!(decode_assignment(&full[..full.len() - 6]), expected[..2].to_vec());
    assert!(decode_assignment(&[]).is_empty());
    assert!(decode_assignment(&[0, 0, 0xff, 0xff, 0xff, 0xff]).is_empty());
}

// ------------------------------------------------------------------------------------------
// OffsetFetch

#[test]
fn t50_t52_offset_fetch() {
    let mut h = H::new();
    let c = h.send(1, 8, fetch_v8("never", Some(&[("t", &[0, 1])]), true));
    let (error, parts) = fetched_v8(&h.fetch(1, c).expect("T50"));
    assert_eq!(error, NONE);
    assert_eq!(parts, vec![("t".into(), 0, -1, NONE), ("t".into(), 1, -1, NONE)]);

    let (a, _b) = stable_pair(&mut h, SESSION, RT);
    let c = h.send(1, 8, commit(1, &a, &[("t", 1, 11)]));
    assert!(h.commit_codes(1, c).is_some());
    two_step(&mut h, 3, SESSION, RT, b"m");
    assert_eq!(h.state(), "PreparingRebalance");
    let c = h.send(4, 8, fetch_v8(G, None, true));
    let (_, parts) = fetched_v8(&h.fetch(4, c).expect("all"));
    assert_eq!(parts, vec![("t".into(), 1, 11, NONE)]);
    let c = h.send(4, 8, fetch_v8(G, Some(&[("t", &[0, 1]), ("nope", &[0])]), true));
    let (_, parts) = fetched_v8(&h.fetch(4, c).expect("explicit"));
    assert_eq!(parts, vec![("t".into(), 0, -1, NONE), ("t".into(), 1, 11, NONE), ("nope".into(), 0, -1, NONE)]);
    // v1-v7 carry one group at top level.
    let req =
        OffsetFetchRequest::default().with_group_id(gid(G)).with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(TopicName(s("t")))
            .with_partition_indexes(vec![1])]));
    let c = h.send(4, 7, req);
    let r = h.fetch(4, c).expect("v7");
    assert_eq!((r.error_code, r.topics[0].partitions[0].committed_offset), (NONE, 11));
}

// ------------------------------------------------------------------------------------------
// Static membership

/// Static L ("i-L", conn 1) and F ("i-F", conn 2), Stable gen 1, L owns t-0, F owns t-1.
fn static_pair(h: &mut H) -> (String, String) {
    let cl = h.send(1, 9, join_in(G, "", Some("i-L"), SESSION, RT, &[("range", b"m")]));
    let cf = h.send(2, 9, join_in(G, "", Some("i-F"), SESSION, RT, &[("range", b"m")]));
    h.at(6_000);
    let l = h.join(1, cl).expect("L").member_id.to_string();
    let f = h.join(2, cf).expect("F").member_id.to_string();
    let assignments = [(l.as_str(), assignment(&[("t", &[0])])), (f.as_str(), assignment(&[("t", &[1])]))];
    let c = h.send(1, 5, sync(1, &l, &assignments));
    assert_eq!(h.sync(1, c).expect("L").error_code, NONE);
    let c = h.send(2, 5, sync(1, &f, &[]));
    assert_eq!(h.sync(2, c).expect("F").error_code, NONE);
    (l, f)
}

#[test]
fn t54_restarted_static_follower_replaces_its_old_id_without_rebalance() {
    let mut h = H::new();
    let (l, f) = static_pair(&mut h);
    let c = h.send(3, 9, join_in(G, "", Some("i-F"), SESSION, RT, &[("range", b"m")]));
    let r = h.join(3, c).expect("immediate");
    assert_eq!((r.error_code, r.generation_id), (NONE, 1));
    assert!(r.member_id.starts_with("i-F-") && r.member_id.as_str() != f);
    assert_eq!((r.leader.as_str(), r.members.len(), r.skip_assignment), (l.as_str(), 0, false));
    let new_f = r.member_id.to_string();
    assert_eq!((h.state(), h.generation()), ("Stable", 1));
    // The old id is fenced on Heartbeat, Commit and Sync when it sends the instance id.
    let c = h.send(2, 4, hb(1, &f, Some("i-F")));
    assert_eq!(h.hb_code(2, c), Some(FENCED_INSTANCE_ID));
    let req = commit(1, &f, &[("t", 1, 3)]).with_group_instance_id(Some(s("i-F")));
    let c = h.send(2, 8, req);
    assert_eq!(h.commit_codes(2, c).expect("commit"), vec![("t".into(), 1, FENCED_INSTANCE_ID)]);
    let c = h.send(2, 5, sync(1, &f, &[]).with_group_instance_id(Some(s("i-F"))));
    assert_eq!(h.sync(2, c).expect("sync").error_code, FENCED_INSTANCE_ID);
    assert_eq!(h.heartbeat(2, 1, &f), UNKNOWN_MEMBER_ID);
    // The new process gets the stored assignment.
    let c = h.send(3, 5, sync(1, &new_f, &[]).with_group_instance_id(Some(s("i-F"))));
    assert_eq!(h.sync(3, c).expect("new F").assignment, assignment(&[("t", &[1])]));
    let history = h.c.assignment_history(G);
    assert_eq!(history.len(), 2);
    assert_eq!(history[1].0, 1);
    assert_eq!(history[1].1[&new_f], vec![("t".to_string(), 1)]);
    assert!(!history[1].1.contains_key(&f));
}

#[test]
fn t55_restarted_static_leader_skips_assignment_on_v9_only() {
    let mut h = H::new();
    let (l, _f) = static_pair(&mut h);
    let c = h.send(3, 9, join_in(G, "", Some("i-L"), SESSION, RT, &[("range", b"m")]));
    let r = h.join(3, c).expect("v9");
    let l2 = r.member_id.to_string();
    assert_eq!((r.error_code, r.generation_id), (NONE, 1));
    assert_eq!((r.leader.as_str(), r.members.len(), r.skip_assignment), (l2.as_str(), 2, true));
    assert_ne!(l2, l);
    let c = h.send(4, 8, join_in(G, "", Some("i-L"), SESSION, RT, &[("range", b"m")]));
    let r = h.join(4, c).expect("v8");
    assert_eq!((r.error_code, r.generation_id), (NONE, 1));
    assert_eq!((r.leader.as_str(), r.members.len(), r.skip_assignment), (l2.as_str(), 0, false));
    assert_ne!(r.member_id.as_str(), l2);
    assert_eq!(h.state(), "Stable");
}

#[test]
fn t56_static_join_with_a_wrong_instance() {
    let mut h = H::new();
    let (l, _f) = static_pair(&mut h);
    let c = h.send(1, 9, join_in(G, &l, Some("i-F"), SESSION, RT, &[("range", b"m")]));
    assert_eq!(h.join(1, c).expect("a").error_code, FENCED_INSTANCE_ID);
    let c = h.send(1, 9, join_in(G, &l, Some("i-X"), SESSION, RT, &[("range", b"m")]));
    assert_eq!(h.join(1, c).expect("b").error_code, UNKNOWN_MEMBER_ID);
}

#[test]
fn pending_member_sending_an_instance_id_gets_unknown_server_error() {
    let mut h = H::new();
    let id = first_step(&mut h, 1, join("", b"m"));
    let c = h.send(1, 9, join_in(G, &id, Some("i"), SESSION, RT, &[("range", b"m")]));
    let r = h.join(1, c).expect("answered");
    assert_eq!((r.error_code, r.member_id.as_str()), (UNKNOWN_SERVER_ERROR, ""));
}

// ------------------------------------------------------------------------------------------
// Connections, faults, failover

#[test]
fn disconnect_keeps_the_member_and_drops_its_answers() {
    let mut h = H::new();
    let (a, b) = stable_pair(&mut h, SESSION, 60_000);
    let (_c, cc) = two_step(&mut h, 3, SESSION, 60_000, b"m");
    let ca = h.send(1, 9, join(&a, b"m"));
    let queued = h.send(1, 4, hb(1, &a, None));
    h.c.handle_disconnect(h.now, ConnId(1));
    assert!(!h.c.is_muted(ConnId(1)));
    let cb = h.send(2, 9, join(&b, b"m"));
    // A's parked JoinGroup still counts as a rejoin.
    assert_eq!(h.join(2, cb).expect("B").generation_id, 2);
    assert_eq!(h.join(3, cc).expect("C").generation_id, 2);
    assert!(h.join(1, ca).is_none() && h.hb_code(1, queued).is_none());
    assert!(h.member_ids().contains(&a));
}

#[test]
fn fault_error_answers_without_processing() {
    let mut h = H::new();
    h.c.inject(Fault::new(ApiKey::JoinGroup, FaultAction::Error(NOT_COORDINATOR)).once());
    let c = h.send(1, 9, join("", b"m"));
    let r = h.join(1, c).expect("error");
    assert_eq!((r.error_code, r.generation_id, r.member_id.as_str()), (NOT_COORDINATOR, -1, ""));
    assert!(h.c.describe(G).is_none(), "not processed");
    let c = h.send(1, 9, join("", b"m"));
    assert_eq!(h.join(1, c).expect("next").error_code, MEMBER_ID_REQUIRED);

    let mut h = H::new();
    let a = stable_single(&mut h, SESSION, RT);
    h.c.inject(Fault::new(ApiKey::OffsetCommit, FaultAction::Error(COORDINATOR_LOAD_IN_PROGRESS)));
    let c = h.send(1, 8, commit(1, &a, &[("t", 0, 1), ("t", 1, 2)]));
    assert_eq!(
        h.commit_codes(1, c).expect("commit"),
        vec![("t".into(), 0, COORDINATOR_LOAD_IN_PROGRESS), ("t".into(), 1, COORDINATOR_LOAD_IN_PROGRESS)]
    );
    assert_eq!(h.c.committed(G, "t", 0), None);
    h.c.inject(Fault::new(ApiKey::OffsetFetch, FaultAction::Error(COORDINATOR_NOT_AVAILABLE)));
    let c = h.send(1, 8, fetch_v8(G, None, true));
    assert_eq!(fetched_v8(&h.fetch(1, c).expect("v8")).0, COORDINATOR_NOT_AVAILABLE);
    let c = h.send(1, 7, OffsetFetchRequest::default().with_group_id(gid(G)).with_topics(None));
    assert_eq!(h.fetch(1, c).expect("v7").error_code, COORDINATOR_NOT_AVAILABLE);
}

#[test]
fn fault_delay_keeps_the_connection_muted() {
    let mut h = H::new();
    let a = stable_single(&mut h, SESSION, RT);
    h.c.inject(Fault::new(ApiKey::Heartbeat, FaultAction::Delay(Duration::from_millis(500))).once());
    let first = h.send(1, 4, hb(1, &a, None));
    let second = h.send(1, 4, hb(1, &a, None));
    assert_eq!(h.c.queued_requests(ConnId(1)), 1);
    h.at(3_499);
    assert!(h.hb_code(1, first).is_none());
    h.at(3_500);
    let order: Vec<i32> = h
        .out
        .iter()
        .filter_map(|o| match o {
            Outgoing::Response { correlation_id, .. } => Some(*correlation_id),
            Outgoing::Cut { .. } => None,
        })
        .collect();
    assert_eq!(order, vec![first, second]);
    assert_eq!((h.hb_code(1, first), h.hb_code(1, second)), (Some(NONE), Some(NONE)));
}

#[test]
fn fault_delay_on_commit_keeps_the_offset_pending() {
    let mut h = H::new();
    let a = stable_single(&mut h, SESSION, RT);
    h.c.inject(Fault::new(ApiKey::OffsetCommit, FaultAction::Delay(Duration::from_secs(1))).once());
    let c = h.send(1, 8, commit(1, &a, &[("t", 0, 42)]));
    assert_eq!(h.c.committed(G, "t", 0), None);
    assert_eq!(h.c.accepted_commits().len(), 1, "accepted when validated");
    let f = h.send(2, 8, fetch_v8(G, Some(&[("t", &[0])]), true));
    assert_eq!(fetched_v8(&h.fetch(2, f).expect("stable")).1, vec![("t".into(), 0, -1, UNSTABLE_OFFSET_COMMIT)]);
    let f = h.send(2, 8, fetch_v8(G, Some(&[("t", &[0])]), false));
    assert_eq!(fetched_v8(&h.fetch(2, f).expect("unstable ok")).1, vec![("t".into(), 0, -1, NONE)]);
    h.at(4_000);
    assert_eq!(h.commit_codes(1, c).expect("delayed"), vec![("t".into(), 0, NONE)]);
    assert_eq!(h.c.committed(G, "t", 0), Some(42));
    let f = h.send(2, 8, fetch_v8(G, Some(&[("t", &[0])]), true));
    assert_eq!(fetched_v8(&h.fetch(2, f).expect("visible")).1, vec![("t".into(), 0, 42, NONE)]);
}

#[test]
fn a_slow_commit_completing_last_does_not_undo_a_later_commit() {
    // The cache keeps each partition's commit appended last (GroupMetadata.onOffsetCommitAppend's
    // olderThan check), even when an earlier append completes after it: a commit the client gave
    // up on (its connection closed) cannot move the offset back behind its retry.
    let mut h = H::new();
    let a = stable_single(&mut h, SESSION, RT);
    h.c.inject(Fault::new(ApiKey::OffsetCommit, FaultAction::Delay(Duration::from_secs(2))).once());
    h.send(1, 8, commit(1, &a, &[("t", 0, 1000)]));
    h.c.handle_disconnect(h.now, ConnId(1));
    let c = h.send(2, 8, commit(1, &a, &[("t", 0, 2000)]));
    assert_eq!(h.commit_codes(2, c).expect("answered at once"), vec![("t".into(), 0, NONE)]);
    assert_eq!(h.c.committed(G, "t", 0), Some(2000));
    h.at(5_000);
    assert_eq!(h.c.committed(G, "t", 0), Some(2000), "the earlier append completed last");
    // An earlier append that completes before a later one is simply overwritten.
    h.c.inject(Fault::new(ApiKey::OffsetCommit, FaultAction::Delay(Duration::from_secs(1))).once());
    let slow = h.send(2, 8, commit(1, &a, &[("t", 0, 3000)]));
    h.at(6_500);
    assert_eq!(h.commit_codes(2, slow).expect("delayed"), vec![("t".into(), 0, NONE)]);
    assert_eq!(h.c.committed(G, "t", 0), Some(3000));
}

#[test]
fn fault_error_when_next_answers_once_the_connection_sends_again() {
    let mut h = H::new();
    let a = stable_single(&mut h, SESSION, RT);
    h.c.log_requests();
    h.c.inject(Fault::new(ApiKey::Heartbeat, FaultAction::ErrorWhenNext(ILLEGAL_GENERATION)).once());
    let held = h.send(1, 4, hb(1, &a, None));
    h.at(5_000);
    assert!(h.hb_code(1, held).is_none() && h.c.is_muted(ConnId(1)));
    let next = h.send(1, 4, hb(1, &a, None));
    assert_eq!((h.hb_code(1, held), h.hb_code(1, next)), (Some(ILLEGAL_GENERATION), Some(NONE)));
    let logged: Vec<(ApiKey, Option<&str>, Option<i32>)> =
        h.c.requests().iter().map(|r| (r.api, r.member_id.as_deref(), r.generation)).collect();
    assert_eq!(logged, vec![(ApiKey::Heartbeat, Some(a.as_str()), Some(1)); 2]);
}

#[test]
fn fault_protocol_type_renames_a_successful_join() {
    let mut h = H::new();
    let a = stable_single(&mut h, SESSION, RT);
    h.c.inject(Fault::new(ApiKey::JoinGroup, FaultAction::ProtocolType("connect")).once());
    let c = h.send(1, 9, join_in(G, &a, None, SESSION, RT, &[("range", b"m")]));
    let r = h.join(1, c).expect("rejoin answered");
    assert_eq!((r.error_code, r.protocol_type.as_deref()), (NONE, Some("connect")));
}

#[test]
fn fault_drop_processes_but_never_answers() {
    let mut h = H::new();
    let a = stable_single(&mut h, SESSION, RT);
    h.c.inject(Fault::new(ApiKey::OffsetCommit, FaultAction::Drop).once());
    let c = h.send(1, 8, commit(1, &a, &[("t", 0, 8)]));
    let behind = h.send(1, 4, hb(1, &a, None));
    h.at(60_000);
    assert!(h.commit_codes(1, c).is_none() && h.hb_code(1, behind).is_none());
    assert_eq!(h.c.committed(G, "t", 0), Some(8));
    assert!(h.c.is_muted(ConnId(1)));
}

#[test]
fn fault_cut_closes_the_connection() {
    let mut h = H::new();
    let (a, b) = joined_pair(&mut h, SESSION, RT);
    h.c.inject(Fault::new(ApiKey::SyncGroup, FaultAction::Cut).matching(Match::Member(b.clone())));
    let cb = h.send(2, 5, sync(1, &b, &[]));
    assert!(h.cut_seen(2) && h.sync(2, cb).is_none());
    assert!(!h.c.describe(G).expect("g").members[1].awaiting_sync, "not processed");
    let ca = h.send(1, 5, sync(1, &a, &[]));
    assert_eq!(h.sync(1, ca).expect("A unaffected").error_code, NONE);
    // ProcessThenCut: the JoinGroup is parked, the connection closed.
    let mut h = H::new();
    h.c.inject(Fault::new(ApiKey::JoinGroup, FaultAction::ProcessThenCut).matching(Match::Nth(2)));
    let (x, cx) = two_step(&mut h, 1, SESSION, RT, b"m");
    assert!(h.cut_seen(1));
    let view = h.c.describe(G).expect("g");
    assert_eq!((view.state, view.members[0].member_id.as_str()), ("PreparingRebalance", x.as_str()));
    assert!(view.members[0].awaiting_join);
    h.at(3_000);
    assert!(h.join(1, cx).is_none());
    assert_eq!((h.state(), h.generation()), ("CompletingRebalance", 1));
}

#[test]
fn fault_matchers_and_counts() {
    let mut h = H::new();
    let (a, b) = stable_pair(&mut h, SESSION, RT);
    h.c.inject(Fault::new(ApiKey::Heartbeat, FaultAction::Error(REBALANCE_IN_PROGRESS)).matching(Match::Nth(2)));
    assert_eq!(h.heartbeat(1, 1, &a), NONE);
    assert_eq!(h.heartbeat(1, 1, &a), REBALANCE_IN_PROGRESS);
    assert_eq!(h.heartbeat(1, 1, &a), NONE);
    h.c.clear_faults();
    h.c.inject(
        Fault::new(ApiKey::Heartbeat, FaultAction::Error(NOT_COORDINATOR)).matching(Match::Member(b.clone())).times(2),
    );
    assert_eq!(h.heartbeat(1, 1, &a), NONE);
    assert_eq!(h.heartbeat(2, 1, &b), NOT_COORDINATOR);
    assert_eq!(h.heartbeat(2, 1, &b), NOT_COORDINATOR);
    assert_eq!(h.heartbeat(2, 1, &b), NONE);
}

#[test]
fn t57_t58_unload_and_loading_coordinator() {
    let mut h = H::new();
    let (a, b) = stable_pair(&mut h, SESSION, 60_000);
    let c = h.send(1, 8, commit(1, &a, &[("t", 0, 77)]));
    assert!(h.commit_codes(1, c).is_some());
    two_step(&mut h, 3, SESSION, 60_000, b"m");
    let ca = h.send(1, 9, join(&a, b"m"));
    h.c.unload(h.now);
    h.drain();
    let r = h.join(1, ca).expect("T57");
    assert_eq!((r.error_code, r.member_id.as_str()), (NOT_COORDINATOR, a.as_str()));
    assert_eq!(h.state(), "Dead");
    assert_eq!(h.heartbeat(2, 1, &b), NOT_COORDINATOR);

    h.c.set_loading(h.now, true);
    let c = h.send(2, 9, join(&b, b"m"));
    assert_eq!(h.join(2, c).expect("join").error_code, COORDINATOR_LOAD_IN_PROGRESS);
    let c = h.send(2, 5, sync(1, &b, &[]));
    assert_eq!(h.sync(2, c).expect("sync").error_code, REBALANCE_IN_PROGRESS);
    assert_eq!(h.heartbeat(2, 1, &b), NONE);
    let c = h.send(2, 8, commit(1, &b, &[("t", 1, 1)]));
    assert_eq!(h.commit_codes(2, c).expect("commit"), vec![("t".into(), 1, COORDINATOR_LOAD_IN_PROGRESS)]);
    let c = h.send(2, 8, fetch_v8(G, None, true));
    assert_eq!(fetched_v8(&h.fetch(2, c).expect("fetch")).0, COORDINATOR_LOAD_IN_PROGRESS);
    let c = h.send(2, 5, leave(&[(&b, None)]));
    let r = h.leave(2, c).expect("leave");
    assert_eq!((r.error_code, r.members.len()), (COORDINATOR_LOAD_IN_PROGRESS, 0));

    h.at(8_000);
    h.c.set_loading(h.now, false);
    // Back as stored at the last SyncGroup: Stable gen 1 with A and B; C was never stored.
    let view = h.c.describe(G).expect("loaded");
    assert_eq!((view.state, view.generation), ("Stable", 1));
    assert_eq!(h.member_ids(), vec![a.clone(), b.clone()]);
    assert_eq!(h.heartbeat(2, 1, &b), NONE);
    assert_eq!(h.c.committed(G, "t", 0), Some(77));
    // Sessions were re-armed at the load: A, silent, expires 10 s later.
    h.at(12_000);
    assert_eq!(h.heartbeat(2, 1, &b), NONE);
    h.at(17_999);
    assert_eq!(h.member_ids().len(), 2);
    h.at(18_000);
    assert_eq!(h.member_ids(), vec![b]);
}

#[test]
fn api_versions_and_discovery() {
    let mut h = H::new();
    let c = h.send(1, 3, ApiVersionsRequest::default());
    let Some(ResponseKind::ApiVersions(r)) = h.take(1, c) else { panic!("ApiVersions") };
    let ranges: Vec<(i16, i16, i16)> = r.api_keys.iter().map(|k| (k.api_key, k.min_version, k.max_version)).collect();
    assert_eq!(
        ranges,
        vec![
            (0, 3, 9),
            (1, 4, 12),
            (2, 1, 8),
            (3, 0, 12),
            (8, 0, 8),
            (9, 0, 8),
            (10, 0, 4),
            (11, 0, 9),
            (12, 0, 4),
            (13, 0, 5),
            (14, 0, 5),
            (15, 0, 5),
            (16, 0, 4),
            (18, 0, 3),
            (19, 2, 7),
            (22, 0, 4),
            (25, 0, 3),
            (26, 0, 3),
            (28, 0, 3),
        ]
    );
    // An unsupported ApiVersions version is answered with v0 and UNSUPPORTED_VERSION.
    let c = h.send(1, 4, ApiVersionsRequest::default());
    let found = h.out.iter().any(|o| {
        matches!(o, Outgoing::Response { correlation_id, api_version: 0, response: ResponseKind::ApiVersions(r), .. }
            if *correlation_id == c && r.error_code == UNSUPPORTED_VERSION)
    });
    assert!(found);
    // A version that is not advertised closes the connection.
    h.send(2, 9, fetch_v8(G, None, false));
    assert!(h.cut_seen(2));

    let c = h.send(1, 3, FindCoordinatorRequest::default().with_key(s(G)));
    let Some(ResponseKind::FindCoordinator(r)) = h.take(1, c) else { panic!("FindCoordinator v3") };
    assert_eq!((r.error_code, r.node_id.0, r.host.as_str(), r.port), (NONE, 0, "127.0.0.1", 9092));
    let c = h.send(1, 4, FindCoordinatorRequest::default().with_coordinator_keys(vec![s("a"), s("b")]));
    let Some(ResponseKind::FindCoordinator(FindCoordinatorResponse { coordinators, .. })) = h.take(1, c) else {
        panic!("FindCoordinator v4")
    };
    assert_eq!(coordinators.len(), 2);
    assert_eq!((coordinators[1].key.as_str(), coordinators[1].port), ("b", 9092));

    let c = h.send(1, 12, MetadataRequest::default().with_topics(None));
    let Some(ResponseKind::Metadata(r)) = h.take(1, c) else { panic!("Metadata") };
    let topics: Vec<(String, usize)> = r
        .topics
        .iter()
        .map(|t| (t.name.as_ref().map(|n| n.to_string()).unwrap_or_default(), t.partitions.len()))
        .collect();
    assert_eq!(topics, vec![("t".to_string(), 2), ("u".to_string(), 4)]);
}

#[test]
fn describe_groups_reports_state_and_members() {
    let mut h = H::new();
    let (a, _b) = stable_pair(&mut h, SESSION, RT);
    let describe = |h: &mut H, version: i16| -> DescribeGroupsResponse {
        let c = h.send(9, version, DescribeGroupsRequest::default().with_groups(vec![gid(G), gid("none")]));
        match h.take(9, c) {
            Some(ResponseKind::DescribeGroups(r)) => r,
            other => panic!("DescribeGroups: {other:?}"),
        }
    };
    let r = describe(&mut h, 5);
    assert_eq!((r.groups[0].group_state.as_str(), r.groups[0].protocol_data.as_str()), ("Stable", "range"));
    assert_eq!(r.groups[0].members[0].member_assignment, assignment(&[("t", &[0])]));
    assert_eq!((r.groups[1].error_code, r.groups[1].group_state.as_str()), (NONE, "Dead"));
    let _ = h.send(1, 9, join(&a, b"m"));
    let r = describe(&mut h, 0);
    assert_eq!((r.groups[0].group_state.as_str(), r.groups[0].protocol_data.as_str()), ("PreparingRebalance", ""));
    assert_eq!(r.groups[0].members[0].member_assignment, Bytes::new());
}

#[test]
fn group_max_size_evicts_a_member_that_rejoins_too_late() {
    let mut config = config();
    config.max_group_size = 2;
    let mut h = H::with(config);
    let (a, b) = stable_pair(&mut h, SESSION, 60_000);
    let ca = h.send(1, 9, join(&a, b"m"));
    let (c, cc) = two_step(&mut h, 3, SESSION, 60_000, b"m");
    assert_eq!(h.member_ids().len(), 3);
    let cb = h.send(2, 9, join(&b, b"m"));
    let rb = h.join(2, cb).expect("refused");
    assert_eq!((rb.error_code, rb.member_id.as_str()), (GROUP_MAX_SIZE_REACHED, ""));
    // The eviction lets the join complete with A and C.
    assert_eq!(h.join(1, ca).expect("A").generation_id, 2);
    assert_eq!(h.join(3, cc).expect("C").generation_id, 2);
    assert_eq!(h.member_ids(), vec![a, c]);
}

#[test]
fn delayed_join_waits_for_the_largest_rebalance_timeout() {
    let mut h = H::new();
    let (_a, ca) = two_step(&mut h, 1, 30_000, 20_000, b"m");
    let (_b, cb) = two_step(&mut h, 2, 30_000, 5_000, b"m");
    h.at(6_000);
    assert_eq!(h.join(1, ca).expect("A").generation_id, 1);
    assert_eq!(h.join(2, cb).expect("B").generation_id, 1);
    h.at(7_000);
    let (_c, cc) = two_step(&mut h, 3, 30_000, 5_000, b"m");
    h.at(26_999);
    assert!(h.join(3, cc).is_none());
    h.at(27_000);
    let r = h.join(3, cc).expect("C alone after 20 s");
    assert_eq!((r.generation_id, r.members.len()), (2, 1));
}

#[test]
fn zero_initial_delay_completes_within_the_same_call() {
    let mut config = config();
    config.initial_rebalance_delay = Duration::ZERO;
    let mut h = H::with(config);
    let (a, ca) = two_step(&mut h, 1, SESSION, RT, b"m");
    let r = h.join(1, ca).expect("answered at once");
    assert_eq!((r.generation_id, r.leader.as_str()), (1, a.as_str()));
}

#[test]
fn a_second_parked_join_replaces_the_first_which_is_never_answered() {
    let mut h = H::new();
    let (a, b) = stable_pair(&mut h, SESSION, 60_000);
    two_step(&mut h, 3, SESSION, 60_000, b"m");
    let first = h.send(1, 9, join(&a, b"m"));
    let second = h.send(4, 9, join(&a, b"m"));
    let cb = h.send(2, 9, join(&b, b"m"));
    assert_eq!(h.join(2, cb).expect("B").generation_id, 2);
    assert_eq!(h.join(4, second).expect("replacement").generation_id, 2);
    h.at(100_000);
    assert!(h.join(1, first).is_none());
    assert!(h.c.is_muted(ConnId(1)), "Kafka never answers the replaced request");
}

#[test]
fn list_groups_and_leave_v2_errors() {
    let mut h = H::new();
    stable_single(&mut h, SESSION, RT);
    let c = h.send(1, 8, commit_in("manual", -1, "", &[("t", 0, 1)]));
    assert!(h.commit_codes(1, c).is_some());
    let list = |h: &mut H, version: i16, states: &[&str]| {
        let req = kafka_protocol::messages::ListGroupsRequest::default()
            .with_states_filter(states.iter().map(|v| s(v)).collect());
        let c = h.send(5, version, req);
        match h.take(5, c) {
            Some(ResponseKind::ListGroups(r)) => r,
            other => panic!("ListGroups: {other:?}"),
        }
    };
    let r = list(&mut h, 4, &[]);
    let groups: Vec<(String, String, String)> = r
        .groups
        .iter()
        .map(|g| (g.group_id.to_string(), g.protocol_type.to_string(), g.group_state.to_string()))
        .collect();
    assert_eq!(
        groups,
        vec![
            (G.to_string(), "consumer".to_string(), "Stable".to_string()),
            ("manual".to_string(), String::new(), "Empty".to_string()),
        ]
    );
    assert_eq!(list(&mut h, 4, &["Empty"]).groups.len(), 1);
    h.c.set_loading(h.now, true);
    let r = list(&mut h, 3, &[]);
    assert_eq!((r.error_code, r.groups.len()), (COORDINATOR_LOAD_IN_PROGRESS, 0));
    // LeaveGroup v0-2: the top-level error is kept (3.6.1+ behaviour).
    let req = LeaveGroupRequest::default().with_group_id(gid(G)).with_member_id(s("x"));
    let c = h.send(1, 1, req);
    assert_eq!(h.leave(1, c).expect("v1").error_code, COORDINATOR_LOAD_IN_PROGRESS);
}

#[test]
fn delayed_join_response_keeps_the_member_blocked_and_alive() {
    let mut h = H::new();
    h.c.inject(Fault::new(ApiKey::JoinGroup, FaultAction::Delay(Duration::from_secs(2))).matching(Match::Nth(2)));
    let (a, ca) = two_step(&mut h, 1, SESSION, RT, b"m");
    h.at(3_000);
    assert!(h.join(1, ca).is_none(), "produced at 3 s, delayed to 5 s");
    assert!(h.c.is_muted(ConnId(1)));
    h.at(5_000);
    let r = h.join(1, ca).expect("delayed answer");
    assert_eq!((r.generation_id, r.leader.as_str()), (1, a.as_str()));
}

#[test]
fn metadata_and_find_coordinator_shapes_at_every_version() {
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    let mut h = H::new();
    for version in 0..=12i16 {
        let topics = vec![
            MetadataRequestTopic::default().with_name(Some(TopicName(s("t")))),
            MetadataRequestTopic::default().with_name(Some(TopicName(s("nope")))),
        ];
        let c = h.send(1, version, MetadataRequest::default().with_topics(Some(topics)));
        let Some(ResponseKind::Metadata(r)) = h.take(1, c) else { panic!("Metadata v{version}") };
        let summary: Vec<(i16, usize)> = r.topics.iter().map(|t| (t.error_code, t.partitions.len())).collect();
        assert_eq!(summary, vec![(NONE, 2), (UNKNOWN_TOPIC_OR_PARTITION, 0)], "v{version}");
        assert_eq!(r.brokers[0].port, 9092);
    }
    for version in 0..=4i16 {
        let req = FindCoordinatorRequest::default()
            .with_key(if version >= 4 { s("") } else { s(G) })
            .with_key_type(if version >= 1 { 5 } else { 0 })
            .with_coordinator_keys(if version >= 4 { vec![s(G)] } else { Vec::new() });
        let c = h.send(1, version, req);
        let Some(ResponseKind::FindCoordinator(r)) = h.take(1, c) else { panic!("FindCoordinator v{version}") };
        let code = if version >= 4 { r.coordinators[0].error_code } else { r.error_code };
        assert_eq!(code, if version >= 1 { INVALID_REQUEST } else { NONE }, "v{version}");
    }
}

#[test]
fn t03_t38_a_broker_that_coordinates_no_group() {
    let other = Node { id: 1, host: "127.0.0.1".into(), port: 9093 };
    let mut h = H::with(CoordinatorConfig { coordinator: Some(other), ..config() });
    let c = h.send(1, 9, join("", b"m"));
    assert_eq!(h.join(1, c).expect("answered").error_code, NOT_COORDINATOR);
    // Unknown topics are still refused before the coordinator check (KA 419-476).
    let c = h.send(1, 8, commit(-1, "", &[("t", 0, 5), ("nope", 0, 1)]));
    let codes = h.commit_codes(1, c).expect("answered");
    assert_eq!(codes.iter().map(|(_, _, e)| *e).collect::<Vec<_>>(), vec![NOT_COORDINATOR, UNKNOWN_TOPIC_OR_PARTITION]);
    // T38 as 3.6.1+ answers it: the v0-2 response keeps the top-level error.
    let c = h.send(1, 2, LeaveGroupRequest::default().with_group_id(gid(G)).with_member_id(s("x")));
    assert_eq!(h.leave(1, c).expect("answered").error_code, NOT_COORDINATOR);
    let c = h.send(1, 4, FindCoordinatorRequest::default().with_coordinator_keys(vec![s(G)]));
    let Some(ResponseKind::FindCoordinator(r)) = h.take(1, c) else { panic!("FindCoordinator") };
    assert_eq!((r.coordinators[0].node_id.0, r.coordinators[0].port), (1, 9093));
    let c = h.send(1, 12, MetadataRequest::default().with_topics(None));
    let Some(ResponseKind::Metadata(r)) = h.take(1, c) else { panic!("Metadata") };
    assert_eq!(r.brokers.iter().map(|b| (b.node_id.0, b.port)).collect::<Vec<_>>(), vec![(0, 9092), (1, 9093)]);
}

#[test]
fn t51_transactional_offsets_stay_pending_until_the_transaction_ends() {
    use kafka_protocol::messages::txn_offset_commit_request::{
        TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::{
        AddOffsetsToTxnRequest, EndTxnRequest, InitProducerIdRequest, ProducerId, TransactionalId,
        TxnOffsetCommitRequest,
    };
    let mut h = H::new();
    let id = TransactionalId(s("tx"));
    let init = |h: &mut H| {
        let c = h.send(1, 3, InitProducerIdRequest::default().with_transactional_id(Some(id.clone())));
        let Some(ResponseKind::InitProducerId(r)) = h.take(1, c) else { panic!("InitProducerId") };
        (r.producer_id, r.producer_epoch)
    };
    let add = |h: &mut H, (pid, epoch): (ProducerId, i16)| {
        let req = AddOffsetsToTxnRequest::default()
            .with_transactional_id(id.clone())
            .with_producer_id(pid)
            .with_producer_epoch(epoch)
            .with_group_id(gid(G));
        let c = h.send(1, 3, req);
        let Some(ResponseKind::AddOffsetsToTxn(r)) = h.take(1, c) else { panic!("AddOffsetsToTxn") };
        r.error_code
    };
    let txn_commit = |h: &mut H, group: &str, (pid, epoch): (ProducerId, i16), generation: i32, offset: i64| {
        let req = TxnOffsetCommitRequest::default()
            .with_transactional_id(id.clone())
            .with_group_id(gid(group))
            .with_producer_id(pid)
            .with_producer_epoch(epoch)
            .with_generation_id(generation)
            .with_member_id(s(if generation < 0 { "" } else { "x" }))
            .with_topics(vec![TxnOffsetCommitRequestTopic::default()
                .with_name(TopicName(s("t")))
                .with_partitions(vec![TxnOffsetCommitRequestPartition::default().with_committed_offset(offset)])]);
        let c = h.send(1, 3, req);
        let Some(ResponseKind::TxnOffsetCommit(r)) = h.take(1, c) else { panic!("TxnOffsetCommit") };
        r.topics[0].partitions[0].error_code
    };
    let end = |h: &mut H, (pid, epoch): (ProducerId, i16)| {
        let req = EndTxnRequest::default()
            .with_transactional_id(id.clone())
            .with_producer_id(pid)
            .with_producer_epoch(epoch)
            .with_committed(true);
        let c = h.send(1, 3, req);
        let Some(ResponseKind::EndTxn(r)) = h.take(1, c) else { panic!("EndTxn") };
        r.error_code
    };
    let fetched = |h: &mut H, stable: bool| {
        let c = h.send(1, 8, fetch_v8(G, Some(&[("t", &[0])]), stable));
        fetched_v8(&h.fetch(1, c).expect("answered")).1[0].clone()
    };

    let c = h.send(1, 8, commit(-1, "", &[("t", 0, 5)]));
    assert_eq!(h.commit_codes(1, c).expect("answered")[0].2, NONE);
    let first = init(&mut h);
    assert_eq!(add(&mut h, first), NONE);
    assert_eq!(txn_commit(&mut h, G, first, -1, 9), NONE);
    assert_eq!(fetched(&mut h, true), ("t".into(), 0, -1, UNSTABLE_OFFSET_COMMIT));
    assert_eq!(fetched(&mut h, false), ("t".into(), 0, 5, NONE));
    assert_eq!(end(&mut h, first), NONE);
    assert_eq!(fetched(&mut h, true), ("t".into(), 0, 9, NONE));
    assert_eq!(end(&mut h, first), INVALID_TXN_STATE, "no transaction is open");

    // A new InitProducerId bumps the epoch, fences the old one and aborts the open transaction.
    let second = init(&mut h);
    assert_eq!(second, (first.0, 1));
    assert_eq!(add(&mut h, first), PRODUCER_FENCED);
    assert_eq!(add(&mut h, second), NONE);
    assert_eq!(txn_commit(&mut h, G, second, -1, 11), NONE);
    let third = init(&mut h);
    assert_eq!(fetched(&mut h, true), ("t".into(), 0, 9, NONE));
    assert_eq!(end(&mut h, third), INVALID_TXN_STATE);

    // A missing group is created whatever the generation: gen >= 0 then fails membership.
    assert_eq!(txn_commit(&mut h, "fresh", third, 5, 1), UNKNOWN_MEMBER_ID);
    assert_eq!(h.c.describe("fresh").map(|v| v.state), Some("Empty"));
}
