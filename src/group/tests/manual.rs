//! A manually assigned consumer (Java's `assign`): no membership, commits as a simple
//! consumer group's (generation -1, no member id).

use super::*;

/// Starts a manual machine with the same virtual clock as the harness.
fn manual() -> Harness {
    let base = Instant::now();
    let mut c = config();
    c.group_instance_id = Some("ignored".into());
    let mut h = Harness { m: GroupMachine::manual(c), base, now: base, outbox: Vec::new(), events: Vec::new() };
    h.pump();
    h
}

fn manual_lease(partition: i32, next_offset: i64) -> Lease {
    Lease { partition: tp(partition), next_offset, generation: Generation::none(), owned_since: GenerationId::NONE }
}

#[test]
fn nothing_is_sent_until_a_commit_and_no_poll_deadline_makes_it_leave() {
    let mut h = manual();
    assert_eq!(h.m.state(), StateKind::Manual);
    assert!(h.apis().is_empty(), "no FindCoordinator, no JoinGroup: {:?}", h.apis());
    h.m.record_poll(h.now);
    h.pump();
    h.advance(Duration::from_secs(600));
    assert!(h.apis().is_empty(), "{:?}", h.apis());
    assert_eq!(h.m.state(), StateKind::Manual, "max.poll.interval.ms does not apply");
}

#[test]
fn a_commit_goes_out_without_generation_member_or_instance_id() {
    let mut h = manual();
    let commit = h.commit(vec![manual_lease(0, 10), manual_lease(2, 5)]);
    h.found();
    let (id, _, request) = h.take_commit();
    assert_eq!((request.generation_id_or_member_epoch, request.member_id.as_str()), (-1, ""));
    assert_eq!(request.group_instance_id, None, "Java's simple consumer sends none");
    assert_eq!(commit_offsets(&request), vec![(0, 10), (2, 5)]);
    h.respond(id, commit_response(&[(0, NONE), (2, NONE)]));
    assert_eq!(h.completed(commit), Some(vec![result(0, 10, committed(-1, None)), result(2, 5, committed(-1, None))]));
    // The application seeks where it likes: a lower offset is committed too.
    let lower = h.commit(vec![manual_lease(0, 3)]);
    let (id, _, _) = h.take_commit();
    h.respond(id, commit_response(&[(0, NONE)]));
    assert_eq!(h.completed(lower), Some(vec![result(0, 3, committed(-1, None))]));
}

/// Kafka refuses a simple consumer's commit while the group has members (UNKNOWN_MEMBER_ID,
/// T44a): a failed outcome with the code; nothing is joined or reset.
#[test]
fn membership_answers_are_failed_outcomes_with_their_code() {
    for code in [UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION, REBALANCE_IN_PROGRESS, FENCED_INSTANCE_ID] {
        let mut h = manual();
        let commit = h.commit(vec![manual_lease(0, 10)]);
        h.found();
        let (id, _, _) = h.take_commit();
        h.respond(id, commit_response(&[(0, code)]));
        let outcome = failed(CommitFailure::Rejected(KafkaCode(code)));
        assert_eq!(h.completed(commit), Some(vec![result(0, 10, outcome)]), "{}", KafkaCode(code));
        assert_eq!(h.m.state(), StateKind::Manual);
        h.advance(Duration::from_secs(1));
        assert!(h.apis().is_empty(), "no retry, no join: {:?}", h.apis());
        assert_eq!(h.counters().partitions_rejected_by_broker.get(&code), Some(&1));
    }
}

#[test]
fn closing_sends_no_leave_group() {
    let mut h = manual();
    let commit = h.commit(vec![manual_lease(0, 10)]);
    h.found();
    let (id, _, _) = h.take_commit();
    h.respond(id, commit_response(&[(0, NONE)]));
    assert!(h.completed(commit).is_some());
    h.m.leave("closing", h.now);
    h.pump();
    assert_eq!(h.m.state(), StateKind::Left);
    assert!(h.apis().is_empty(), "{:?}", h.apis());
}
