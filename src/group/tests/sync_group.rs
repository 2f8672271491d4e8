//! SyncGroup.

use super::*;

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
    h.revoke_and_rejoin();
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
    h.revoke_and_rejoin();
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
