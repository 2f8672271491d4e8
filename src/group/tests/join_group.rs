//! JoinGroup.

use super::*;

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

#[test]
fn the_subscription_carries_the_rack_for_rack_aware_assignors() {
    // KIP-881: version 3 of the subscription, which Java 3.5+ members decode (older ones read
    // the fields they know and skip the rest).
    let mut racked = config();
    racked.rack = Some("eu-1a".into());
    for (config, rack) in [(racked, Some("eu-1a")), (config(), None)] {
        let mut h = Harness::with_config(config);
        h.found();
        let (_, _, join) = h.take_join();
        let metadata = &join.protocols[0].metadata;
        assert_eq!(&metadata[..2], &3i16.to_be_bytes(), "subscription version 3");
        assert_eq!(join_subscription(&join).rack.as_deref(), rack);
    }
}
