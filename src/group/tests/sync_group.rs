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
