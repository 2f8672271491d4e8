//! The coordinator connection.

use super::*;

/// From Stable: a rebalance is announced, the revoke handler finishes, and the member's
/// JoinGroup goes out (and stays unanswered).
fn joining() -> (Harness, RequestId) {
    let mut h = Harness::stable();
    h.revoke_and_rejoin();
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
    h.revoke_and_rejoin();
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
