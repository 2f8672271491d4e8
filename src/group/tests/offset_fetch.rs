//! OffsetFetch.

use super::*;

#[test]
fn fetch_none_reports_offsets_and_minus_one_as_none() {
    // T50.
    let mut h = Harness::stable();
    let fetch = h.fetch(&[0, 1]);
    let (id, version, request) = h.take_fetch();
    assert_eq!(version, 8);
    assert!(request.require_stable);
    assert_eq!(request.groups.len(), 1);
    assert_eq!(request.groups[0].group_id.0.as_str(), "g");
    let topics = request.groups[0].topics.clone().expect("topics listed");
    assert_eq!(topics.len(), 1);
    assert_eq!((topics[0].name.0.as_str(), topics[0].partition_indexes.clone()), ("t", vec![0, 1]));
    h.respond(id, fetch_response(NONE, &[(0, 42, NONE), (1, -1, NONE)]));
    assert!(h
        .events
        .contains(&GroupEvent::CommittedOffsets { id: fetch, offsets: vec![(tp(0), Some(42)), (tp(1), None)] }));
}

/// Fires timers (answering heartbeats) until the next OffsetFetch goes out; returns its id and
/// how long after `from` it went.
fn next_fetch(h: &mut Harness, from: Instant) -> (RequestId, Duration) {
    for _ in 0..1000 {
        if let Some(r) = h.try_take("OffsetFetch") {
            return (r.id, h.now - from);
        }
        if let Some(r) = h.try_take("Heartbeat") {
            h.respond(r.id, heartbeat(NONE));
            continue;
        }
        let Some(at) = h.m.poll_timeout() else { break };
        h.advance(at - h.now);
    }
    panic!("no OffsetFetch after {:?}; events: {:?}", h.elapsed(), h.events);
}

#[test]
fn fetch_retriable_failures_are_retried_with_growing_backoff_for_as_long_as_the_lookup_may_wait() {
    // Issue 13, item 1: a failed lookup is never "nothing committed". A coordinator that loads
    // its offsets for longer than five quick attempts must not end the lookup.
    let mut h = Harness::stable();
    let fetch = h.fetch(&[0]);
    let mut gaps = Vec::new();
    let start = h.now;
    let (mut id, _) = next_fetch(&mut h, start);
    for _ in 0..12 {
        h.respond(id, fetch_response(COORDINATOR_LOAD_IN_PROGRESS, &[]));
        let failed_at = h.now;
        let (next, gap) = next_fetch(&mut h, failed_at);
        gaps.push(gap);
        id = next;
    }
    // The delay shows, in the snapshot and in the events.
    let lookups = h.m.snapshot(h.now).offset_lookups;
    assert_eq!(lookups.len(), 1);
    assert_eq!((lookups[0].id, lookups[0].failed_attempts), (fetch, 12));
    let last = format!("OffsetFetch: {}", KafkaCode(COORDINATOR_LOAD_IN_PROGRESS));
    assert_eq!(lookups[0].last_error.as_deref(), Some(last.as_str()));
    assert_eq!(h.counters().offset_lookups_retried, 12);
    let delays: Vec<(u32, u64)> = h
        .events
        .iter()
        .filter_map(|e| match e {
            GroupEvent::CommittedOffsetsDelayed { id, partitions, attempts, retry_in_ms, .. } if *id == fetch => {
                assert_eq!(partitions, &tps(&[0]));
                Some((*attempts, *retry_in_ms))
            }
            _ => None,
        })
        .collect();
    let expected: Vec<(u32, u64)> = (1..=12).zip(gaps.iter().map(|g| g.as_millis() as u64)).collect();
    assert_eq!(delays, expected, "each failure says when the lookup goes again");
    h.respond(id, fetch_response(NONE, &[(0, 42, NONE)]));
    assert!(h.events.contains(&GroupEvent::CommittedOffsets { id: fetch, offsets: vec![(tp(0), Some(42))] }));
    assert!(h.m.snapshot(h.now).offset_lookups.is_empty());
    assert!(gaps[0] >= BACKOFF, "{gaps:?}");
    assert!(gaps.windows(2).all(|w| w[0] <= w[1]), "the backoff grows: {gaps:?}");
    assert_eq!(gaps.last(), Some(&Duration::from_secs(1)), "capped at retry.backoff.max.ms: {gaps:?}");
    assert_eq!(h.fatal(), None);
}

#[test]
fn fetch_failing_past_its_deadline_times_out_and_is_not_read_as_nothing_committed() {
    let mut c = config();
    c.commit_timeout = Duration::from_secs(5);
    let mut h = Harness::stable_with(c);
    let fetch = h.fetch(&[0]);
    let start = h.now;
    let mut attempts = 0;
    while h.elapsed() < Duration::from_secs(6) {
        match h.try_take("OffsetFetch") {
            Some(r) => {
                attempts += 1;
                h.respond(r.id, fetch_response(NONE, &[(0, -1, UNSTABLE_OFFSET_COMMIT)]));
            }
            None => h.run_until(h.m.poll_timeout().expect("a timer") - h.base),
        }
    }
    assert!(h.now - start >= Duration::from_secs(5));
    let last = format!("OffsetFetch for t-0: {}", KafkaCode(UNSTABLE_OFFSET_COMMIT));
    let failure = OffsetLookupFailure::TimedOut { attempts, last };
    assert!(h.events.contains(&GroupEvent::CommittedOffsetsFailed { id: fetch, failure }), "{:?}", h.events);
    assert!(!h.events.iter().any(|e| matches!(e, GroupEvent::CommittedOffsets { .. })));
    assert!(h.m.snapshot(h.now).offset_lookups.is_empty());
}

#[test]
fn a_lookup_waits_for_the_members_own_commit_of_the_partition() {
    // Read your own writes: a partition the member gets back must not start behind the commit
    // it just sent.
    let mut h = Harness::stable();
    let lease = h.lease(0, 500);
    let commit = h.commit(vec![lease]);
    let (commit_id, _, _) = h.take_commit();
    let fetch = h.fetch(&[0, 1]);
    assert_eq!(h.count("OffsetFetch"), 0, "waits for the commit of t-0");
    h.respond(commit_id, commit_response(&[(0, NONE)]));
    assert!(h.completed(commit).is_some());
    let (id, _, _) = h.take_fetch();
    h.respond(id, fetch_response(NONE, &[(0, 500, NONE), (1, -1, NONE)]));
    assert!(h
        .events
        .contains(&GroupEvent::CommittedOffsets { id: fetch, offsets: vec![(tp(0), Some(500)), (tp(1), None)] }));
}

#[test]
fn a_lookup_of_other_partitions_does_not_wait_for_a_commit() {
    let mut h = Harness::stable();
    let lease = h.lease(0, 500);
    h.commit(vec![lease]);
    h.take_commit();
    h.fetch(&[1]);
    assert_eq!(h.count("OffsetFetch"), 1);
}
