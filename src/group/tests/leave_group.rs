//! LeaveGroup.

use super::*;

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
    h.revoke_and_rejoin();
    let (_, _, _) = h.take_join();
    let commit = h.commit(vec![lease]);
    assert_eq!(h.completed(commit), None);
    h.m.leave("closing", h.now);
    h.pump();
    assert_eq!(h.completed(commit), Some(vec![result(0, 10, failed(CommitFailure::MemberGone))]));
    h.found();
    assert_eq!(h.count("LeaveGroup"), 1);
}
