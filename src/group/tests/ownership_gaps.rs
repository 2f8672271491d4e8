//! Ownership gaps and answers that are no answer.

use super::*;

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
    h.revoke_and_rejoin();
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
    h.revoke_and_rejoin();
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
    h.revoke_and_rejoin();
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
