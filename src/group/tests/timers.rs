//! Timers.

use super::*;

#[test]
fn a_heartbeat_answered_late_leaves_no_timer_in_the_past() {
    let mut h = Harness::stable();
    h.advance(HEARTBEAT);
    let (id, _) = h.take_heartbeat();
    // The answer takes longer than the heartbeat interval: no second heartbeat meanwhile.
    h.advance(HEARTBEAT + Duration::from_secs(1));
    assert_eq!(h.count("Heartbeat"), 0);
    h.respond(id, heartbeat(NONE));
    assert_eq!(h.count("Heartbeat"), 1, "the overdue heartbeat goes at once");
}

#[test]
fn a_lost_coordinator_leaves_no_heartbeat_timer_in_the_past() {
    let mut h = Harness::stable();
    h.heartbeat_answered(NOT_COORDINATOR);
    // FindCoordinator keeps failing for longer than the heartbeat interval.
    for _ in 0..6 {
        let at = h.m.poll_timeout().expect("backoff");
        h.advance(at - h.now);
        h.find_failed(RequestFailure::Broker(KafkaCode(COORDINATOR_NOT_AVAILABLE)));
    }
    assert!(h.elapsed() > Duration::from_secs(6));
    assert_eq!(h.count("Heartbeat"), 0);
    let at = h.m.poll_timeout().expect("backoff");
    h.advance(at - h.now);
    h.found();
    assert_eq!(h.take_heartbeat().1.generation_id, 1);
}

#[test]
fn a_commit_deadline_passing_while_in_flight_leaves_no_timer_in_the_past() {
    let mut c = config();
    c.commit_timeout = Duration::from_secs(5);
    let mut h = Harness::stable_with(c);
    let lease = h.lease(0, 10);
    let commit = h.commit(vec![lease]);
    let (id, _, _) = h.take_commit();
    h.run_until(Duration::from_secs(8));
    assert_eq!(h.completed(commit), None, "judged when the answer comes");
    h.respond(id, commit_response(&[(0, COORDINATOR_LOAD_IN_PROGRESS)]));
    assert_eq!(h.completed(commit), Some(vec![result(0, 10, failed(CommitFailure::TimedOut))]));
    assert_eq!(h.count("OffsetCommit"), 0);
}

#[test]
fn a_fetch_deadline_passing_without_a_coordinator_leaves_no_timer_in_the_past() {
    let mut c = config();
    c.commit_timeout = Duration::from_secs(1);
    let mut h = Harness::stable_with(c);
    let fetch = h.fetch(&[0]);
    let (id, _, _) = h.take_fetch();
    h.respond(id, fetch_response(NOT_COORDINATOR, &[]));
    while h.elapsed() < Duration::from_secs(2) {
        let at = h.m.poll_timeout().expect("backoff");
        h.advance(at - h.now);
        if h.count("FindCoordinator") == 1 {
            h.find_failed(RequestFailure::Network("refused".into()));
        }
    }
    assert_eq!(h.count("OffsetFetch"), 0);
    let at = h.m.poll_timeout().expect("backoff");
    h.advance(at - h.now);
    h.found();
    let failure =
        OffsetLookupFailure::TimedOut { attempts: 1, last: format!("OffsetFetch: {}", KafkaCode(NOT_COORDINATOR)) };
    assert!(h.events.contains(&GroupEvent::CommittedOffsetsFailed { id: fetch, failure }), "{:?}", h.events);
    assert_eq!(h.count("OffsetFetch"), 0);
}

#[test]
fn the_earliest_timer_is_next_and_a_tie_goes_to_the_first_kind() {
    use crate::group::timers::{TimerKind, Timers};
    let base = Harness::new().base;
    let at = |secs| base + Duration::from_secs(secs);
    let mut timers = Timers::default();
    assert_eq!(timers.next_due(), None);
    timers.set(TimerKind::RevokeDeadline, at(1));
    timers.set(TimerKind::Session, at(2));
    assert_eq!(timers.next_due(), Some((TimerKind::RevokeDeadline, at(1))));
    timers.set(TimerKind::Heartbeat, at(1));
    assert_eq!(timers.next_due(), Some((TimerKind::Heartbeat, at(1))));
    timers.clear(TimerKind::Heartbeat);
    timers.clear(TimerKind::RevokeDeadline);
    assert_eq!(timers.next_due(), Some((TimerKind::Session, at(2))));
    assert!(timers.is_running(TimerKind::Session, at(1)));
    assert!(!timers.is_running(TimerKind::Session, at(2)));
}
