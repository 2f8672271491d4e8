//! Max.poll.interval.ms.

use super::*;

#[test]
fn max_poll_interval_without_a_poll_leaves_and_says_why() {
    let mut c = config();
    c.session_timeout = Duration::from_secs(10);
    c.rebalance_timeout = Duration::from_secs(20);
    c.revoke_timeout = Duration::from_secs(10);
    let mut h = Harness::stable_with(c);
    h.m.record_poll(h.now);
    h.pump();
    h.run_until(Duration::from_secs(20) - MS);
    assert_eq!(h.count("LeaveGroup"), 0);
    assert_eq!(h.m.state(), StateKind::Stable);
    h.run_until(Duration::from_secs(20));
    let reason = "max.poll.interval.ms exceeded: the application stopped polling";
    let (id, _, request) = h.take_leave();
    assert_eq!(request.members[0].reason.as_deref(), Some(reason));
    h.respond(id, GroupResponse::LeaveGroup(LeaveGroupResponse::default()));
    assert!(h.events.contains(&GroupEvent::Left { reason: LeaveReason::MaxPollIntervalExceeded }));
    assert_eq!(h.m.state(), StateKind::Left);
    // Polling again rejoins as a new member.
    h.m.record_poll(h.now);
    h.pump();
    assert_eq!(h.take_join().2.member_id.as_str(), "");
}
