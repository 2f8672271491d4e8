//! Cooperative rebalancing (KIP-429).

use super::*;

/// `range` first, `cooperative-sticky` second: the first step of the KIP-429 upgrade.
fn mixed_config() -> GroupConfig {
    let mut c = config();
    c.assignors.push(super::assignor::assignor_by_name(COOP).expect("cooperative-sticky is built in"));
    c
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

/// A partition the cooperative assignment releases keeps its commit floor through the revoke
/// window: a lease behind what its streak already committed cannot move the offset back there.
#[test]
fn cooperative_revoke_window_keeps_the_commit_floor_of_released_partitions() {
    let mut h = Harness::coop_stable();
    let behind = h.lease(0, 10);
    let ahead = h.commit(vec![h.lease(0, 20)]);
    let (id, _, _) = h.take_commit();
    h.respond(id, commit_response(&[(0, NONE)]));
    assert_eq!(h.completed(ahead), Some(vec![result(0, 20, committed(1, None))]));
    h.heartbeat_answered(REBALANCE_IN_PROGRESS);
    h.join_and_sync_with(COOP, 2, &[1]);
    assert_eq!(h.m.state(), StateKind::Revoking);
    let late = h.commit(vec![behind]);
    assert_eq!(
        h.completed(late),
        Some(vec![result(0, 10, failed(CommitFailure::WouldMoveBackwards { committed: 20 }))])
    );
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
        .map(|a| {
            (a.member_id.to_string(), crate::protocol::consumer_protocol::decode_assignment(&a.assignment).unwrap())
        })
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
