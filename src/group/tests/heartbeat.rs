//! Heartbeat.

use super::*;

#[test]
fn heartbeat_none_keeps_the_member_stable() {
    // T26.
    let mut h = Harness::stable();
    assert_eq!(h.m.poll_timeout(), Some(h.now + HEARTBEAT));
    h.advance(HEARTBEAT - MS);
    assert_eq!(h.count("Heartbeat"), 0);
    h.advance(MS);
    let r = h.take("Heartbeat");
    assert_eq!(r.version, 4);
    let GroupRequest::Heartbeat(body) = r.body else { unreachable!() };
    assert_eq!((body.generation_id, body.member_id.as_str(), body.group_id.0.as_str()), (1, "m-1", "g"));
    h.respond(r.id, heartbeat(NONE));
    assert_eq!(h.m.state(), StateKind::Stable);
    assert_eq!(h.m.poll_timeout(), Some(h.now + HEARTBEAT));
    h.run_until(Duration::from_secs(120));
    assert_eq!(h.m.state(), StateKind::Stable);
    assert_eq!(h.coordinator_events(), Vec::<Option<i32>>::new());
    assert_eq!(h.counters().heartbeats_sent, 40);
}

#[test]
fn heartbeat_rebalance_in_progress_join_waits_for_in_flight_commits() {
    let mut h = Harness::stable();
    h.heartbeat_answered(REBALANCE_IN_PROGRESS);
    let lease = h.lease(0, 10);
    let commit = h.commit(vec![lease]);
    let (id, _, request) = h.take_commit();
    assert_eq!(request.generation_id_or_member_epoch, 1);
    h.m.revoke_done(h.now);
    h.pump();
    assert_eq!(h.count("JoinGroup"), 0, "JoinGroup waits for the in-flight commit");
    h.respond(id, commit_response(&[(0, NONE)]));
    assert_eq!(h.completed(commit), Some(vec![result(0, 10, committed(1, None))]));
    assert_eq!(h.count("JoinGroup"), 1, "JoinGroup goes as soon as the last commit is answered");
}

#[test]
fn heartbeat_revoke_deadline_sends_the_join_without_the_handler() {
    let mut h = Harness::stable();
    h.heartbeat_answered(REBALANCE_IN_PROGRESS);
    h.run_until(h.elapsed() + Duration::from_secs(150) - MS);
    assert_eq!(h.count("JoinGroup"), 0);
    h.run_until(h.elapsed() + MS);
    assert_eq!(h.count("JoinGroup"), 1);
}

#[test]
fn heartbeat_rebalance_in_progress_counts_as_a_successful_heartbeat() {
    let mut c = config();
    c.session_timeout = Duration::from_secs(10);
    let mut h = Harness::stable_with(c);
    // For 30 s (three sessions) every heartbeat is answered REBALANCE_IN_PROGRESS.
    while h.elapsed() < Duration::from_secs(30) {
        h.heartbeat_answered(REBALANCE_IN_PROGRESS);
    }
    assert_eq!(h.m.state(), StateKind::Revoking);
    assert_eq!(h.coordinator_events(), Vec::<Option<i32>>::new(), "the session never expired");
    assert_eq!(h.m.snapshot(h.now).coordinator, Some(1));
}

/// Found by the `group_machine` fuzz target: a commit made after the member failed was queued
/// and never answered, and its deadline stayed behind as a timer in the past.
#[test]
fn a_commit_after_a_fatal_error_fails_at_once() {
    let mut h = Harness::stable_with(static_config());
    let lease = h.lease(0, 10);
    h.heartbeat_answered(FENCED_INSTANCE_ID);
    assert_eq!(h.m.state(), StateKind::Failed);
    let id = h.commit(vec![lease]);
    let failure = failed(CommitFailure::Fatal(fenced_instance().to_string()));
    assert_eq!(h.completed(id), Some(vec![result(0, 10, failure)]));
    h.advance(Duration::from_secs(120));
    assert_eq!(h.m.poll_timeout(), None);
}

#[test]
fn heartbeat_late_answer_for_an_older_generation_is_ignored() {
    // T32: the gen-1 heartbeat's ILLEGAL_GENERATION arrives after the member reached gen 2.
    let mut h = Harness::stable();
    h.advance(HEARTBEAT);
    let (old, body) = h.take_heartbeat();
    assert_eq!(body.generation_id, 1);
    h.m.subscribe(["t", "u"], h.now);
    h.pump();
    h.m.revoke_done(h.now);
    h.pump();
    h.join_and_sync(2, &[0, 1]);
    h.events.clear();
    h.respond(old, heartbeat(ILLEGAL_GENERATION));
    assert_eq!(
        h.events,
        vec![GroupEvent::StaleResponse { api: "Heartbeat", sent: gen(1, "m-1"), current: Some(gen(2, "m-1")) }]
    );
    assert_eq!(h.counters().stale_responses, 1);
    assert_eq!(h.m.state(), StateKind::Stable);
    assert_eq!(h.m.current_generation(), Some(&gen(2, "m-1")));
    assert_eq!(h.m.assignment().len(), 2);
    assert_eq!(h.count("JoinGroup"), 0);
}

#[test]
fn heartbeats_are_not_sent_while_join_or_sync_is_in_flight() {
    let mut h = Harness::stable();
    h.revoke_and_rejoin();
    let (id, _, _) = h.take_join();
    let sent = h.counters().heartbeats_sent;
    h.advance(Duration::from_secs(20));
    assert_eq!(h.count("Heartbeat"), 0, "no heartbeat while JoinGroup is in flight");
    h.respond_join(id, join_response(NONE, 2, "m-1", "m-0"));
    let (id, _, _) = h.take_sync();
    h.advance(Duration::from_secs(20));
    assert_eq!(h.count("Heartbeat"), 0, "no heartbeat while SyncGroup is in flight");
    assert_eq!(h.counters().heartbeats_sent, sent);
    h.respond_sync(id, sync_ok(&[0]));
    h.advance(HEARTBEAT);
    assert_eq!(h.take_heartbeat().1.generation_id, 2);
}

#[test]
fn session_expiry_without_a_successful_heartbeat_marks_the_coordinator_unknown() {
    let mut c = config();
    c.session_timeout = Duration::from_secs(10);
    let mut h = Harness::stable_with(c);
    // Assigned at 0 s: the session runs to 10 s. The heartbeat at 3 s is never answered.
    h.advance(HEARTBEAT);
    let (_, _) = h.take_heartbeat();
    h.advance(Duration::from_secs(7) - MS);
    assert_eq!(h.coordinator_events(), Vec::<Option<i32>>::new());
    assert_eq!(h.count("Heartbeat"), 0, "one heartbeat at a time");
    h.advance(MS);
    assert_eq!(h.coordinator_events(), vec![None]);
    assert_eq!(h.m.state(), StateKind::Stable, "member id and generation are kept");
    assert_eq!(h.m.current_generation(), Some(&gen(1, "m-1")));
    h.advance(BACKOFF);
    assert_eq!(h.count("FindCoordinator"), 1);
}

#[test]
fn heartbeat_other_errors_are_retried_and_do_not_count_as_success() {
    let mut c = config();
    c.session_timeout = Duration::from_secs(10);
    let mut h = Harness::stable_with(c);
    h.heartbeat_answered(UNKNOWN_SERVER_ERROR);
    assert_eq!(h.m.poll_timeout(), Some(h.now + BACKOFF));
    while h.coordinator_events().is_empty() {
        match h.try_take("Heartbeat") {
            Some(r) => h.respond(r.id, heartbeat(UNKNOWN_SERVER_ERROR)),
            None => {
                let at = h.m.poll_timeout().expect("a timer");
                h.advance(at - h.now);
            }
        }
    }
    assert_eq!(h.elapsed(), Duration::from_secs(10));
    assert_eq!(h.m.state(), StateKind::Stable);
}
