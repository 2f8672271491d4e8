//! OffsetCommit.

use super::*;

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
    h.revoke_and_rejoin();
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
    h.revoke_and_rejoin();
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

#[test]
fn leases_of_one_partition_go_out_once_at_the_furthest_offset() {
    // Batches read one after another and committed together: Kafka keeps a partition's last
    // entry, and a retry of [2000, 3000] after the first attempt was stored would move it back.
    let mut h = Harness::stable();
    let (first, second, other) = (h.lease(0, 2000), h.lease(0, 3000), h.lease(1, 10));
    let id = h.commit(vec![second, first, other]);
    let (request_id, _, request) = h.take_commit();
    let sent: Vec<(i32, i64)> =
        request.topics[0].partitions.iter().map(|p| (p.partition_index, p.committed_offset)).collect();
    assert_eq!(sent, vec![(0, 3000), (1, 10)]);
    h.respond(request_id, commit_response(&[(0, NONE), (1, NONE)]));
    let offsets: Vec<(i32, i64)> =
        h.completed(id).expect("completed").iter().map(|r| (r.partition.partition, r.offset)).collect();
    assert_eq!(offsets, vec![(0, 3000), (1, 10)], "one outcome per partition");
}

#[test]
fn a_loss_keeps_the_commit_floor_for_a_streak_handed_out_again() {
    // A coordinator that refuses generation 1 (ILLEGAL_GENERATION) and then hands generation 1
    // out again: the streak after the loss looks like the one before it, and a lease from
    // before the loss must still not move the offset back.
    let mut h = Harness::stable();
    let ahead = h.lease(0, 20);
    let first = h.commit(vec![ahead]);
    let (id, _, _) = h.take_commit();
    h.respond(id, commit_response(&[(0, NONE)]));
    assert_eq!(h.completed(first), Some(vec![result(0, 20, committed(1, None))]));
    h.heartbeat_answered(ILLEGAL_GENERATION);
    assert_eq!(h.lost(), vec![tps(&[0, 1])]);
    h.join_and_sync(1, &[0, 1]);
    let behind = h.lease(0, 10);
    let second = h.commit(vec![behind]);
    assert_eq!(
        h.completed(second),
        Some(vec![result(0, 10, failed(CommitFailure::WouldMoveBackwards { committed: 20 }))])
    );
    assert_eq!(h.count("OffsetCommit"), 0);
}
