//! Partition counts the leader assigns with (issue 13, item 5).

use super::*;

/// Answers the pending JoinGroup of `generation` with `m-1` leading `m-1` (subscribed to t) and
/// `m-2` (subscribed to `other`).
fn lead(h: &mut Harness, generation: i32, other: &[&str]) {
    let (id, _, _) = h.take_join();
    let members = vec![
        JoinGroupResponseMember::default().with_member_id(s("m-1")).with_metadata(subscription_metadata(&["t"])),
        JoinGroupResponseMember::default().with_member_id(s("m-2")).with_metadata(subscription_metadata(other)),
    ];
    h.respond_join(id, join_response(NONE, generation, "m-1", "m-1").with_members(members));
}

fn take_metadata(h: &mut Harness) -> (RequestId, Vec<String>) {
    let r = h.take("Metadata");
    match r.body {
        GroupRequest::Metadata { topics } => (r.id, topics),
        _ => unreachable!(),
    }
}

fn answer_metadata(h: &mut Harness, id: RequestId, counts: &[(&str, i32)]) {
    h.m.handle_metadata(h.now, id, counts.iter().map(|(t, n)| (t.to_string(), *n)).collect());
    h.pump();
}

/// The partitions of `topic` the leader's SyncGroup gives `member`.
fn assigned_of(sync: &SyncGroupRequest, member: &str, topic: &str) -> Vec<i32> {
    let assignment = sync.assignments.iter().find(|a| a.member_id.as_str() == member).expect("member in the plan");
    let partitions =
        crate::protocol::consumer_protocol::decode_assignment(&assignment.assignment).expect("assignment decodes");
    partitions.iter().filter(|tp| &*tp.topic == topic).map(|tp| tp.partition).collect()
}

fn rejoin_reasons(h: &Harness) -> Vec<RejoinReason> {
    h.events
        .iter()
        .filter_map(|e| match e {
            GroupEvent::RevokeRequested { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn leader_asks_for_the_partition_counts_of_topics_only_other_members_subscribe_to() {
    let mut h = Harness::new();
    h.found();
    h.two_step_join("m-1");
    lead(&mut h, 1, &["t", "u"]);
    assert_eq!(h.count("SyncGroup"), 0, "nothing is assigned before u's partition count is known");
    let (id, topics) = take_metadata(&mut h);
    assert_eq!(topics, vec!["u".to_string()], "only what the leader does not know");
    answer_metadata(&mut h, id, &[("u", 2)]);
    let (_, _, sync) = h.take_sync();
    assert_eq!(assigned_of(&sync, "m-2", "u"), vec![0, 1], "u goes to its only subscriber");
    assert_eq!(assigned_of(&sync, "m-1", "t"), vec![0, 1]);
    assert_eq!(assigned_of(&sync, "m-2", "t"), vec![2, 3]);
}

#[test]
fn leader_that_cannot_learn_a_topic_assigns_what_it_knows_and_rejoins_once_metadata_shows_it() {
    let mut h = Harness::new();
    h.found();
    h.two_step_join("m-1");
    lead(&mut h, 1, &["t", "u"]);
    let (id, _) = take_metadata(&mut h);
    h.m.handle_request_failed(h.now, id, RequestFailure::TimedOut);
    h.pump();
    let (sync_id, _, sync) = h.take_sync();
    assert_eq!(assigned_of(&sync, "m-2", "u"), Vec::<i32>::new());
    h.respond_sync(sync_id, sync_ok(&[0, 1]));
    assert_eq!(h.m.state(), StateKind::Stable);
    h.events.clear();

    // Retried after retry.backoff.max.ms (1 s), for every member's topics.
    h.run_until(h.elapsed() + Duration::from_secs(1));
    let (id, topics) = take_metadata(&mut h);
    assert_eq!(topics, vec!["t".to_string(), "u".to_string()]);
    answer_metadata(&mut h, id, &[("t", 4), ("u", 2)]);
    assert_eq!(h.m.state(), StateKind::Revoking);
    assert_eq!(rejoin_reasons(&h), vec![RejoinReason::PartitionCountsChanged]);
}

#[test]
fn leader_rejoins_when_a_refresh_shows_other_partition_counts() {
    let mut h = Harness::new();
    h.found();
    h.two_step_join("m-1");
    lead(&mut h, 1, &["t"]);
    assert_eq!(h.count("Metadata"), 0, "every topic's count is known");
    let (sync_id, _, _) = h.take_sync();
    h.respond_sync(sync_id, sync_ok(&[0, 1]));
    h.events.clear();

    // metadata.max.age.ms (5 min) later: the same counts change nothing.
    let start = h.elapsed();
    h.run_until(start + Duration::from_secs(299));
    assert_eq!(h.count("Metadata"), 0, "not before metadata.max.age.ms");
    h.run_until(start + Duration::from_secs(300));
    let (id, topics) = take_metadata(&mut h);
    assert_eq!(topics, vec!["t".to_string()]);
    answer_metadata(&mut h, id, &[("t", 4)]);
    assert_eq!(h.m.state(), StateKind::Stable);

    // Partitions added: the leader rejoins so that they are assigned.
    h.run_until(start + Duration::from_secs(600));
    let (id, _) = take_metadata(&mut h);
    answer_metadata(&mut h, id, &[("t", 6)]);
    assert_eq!(h.m.state(), StateKind::Revoking);
    assert_eq!(rejoin_reasons(&h), vec![RejoinReason::PartitionCountsChanged]);
    h.m.revoke_done(h.now);
    h.pump();
    lead(&mut h, 2, &["t"]);
    let (_, _, sync) = h.take_sync();
    assert_eq!(assigned_of(&sync, "m-1", "t"), vec![0, 1, 2]);
    assert_eq!(assigned_of(&sync, "m-2", "t"), vec![3, 4, 5]);
}

#[test]
fn follower_refreshes_its_own_partition_counts_and_leaves_rejoining_to_the_leader() {
    let mut h = Harness::stable();
    h.run_until(h.elapsed() + Duration::from_secs(300));
    let (id, topics) = take_metadata(&mut h);
    assert_eq!(topics, vec!["t".to_string()]);
    answer_metadata(&mut h, id, &[("t", 6)]);
    assert_eq!(h.m.state(), StateKind::Stable, "Java's followers do not check the metadata snapshot either");
}
