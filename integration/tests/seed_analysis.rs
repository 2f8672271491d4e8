//! The seed scenario's analysis (`benches/shared/seed_analysis.rs`) on small hand-made event
//! logs: ownership per generation from assignment callbacks, not-owner commits, revoke-window
//! commits, generations resolved from the broker's log, duplicates and losses.

#[allow(dead_code)]
#[path = "../../benches/shared/seed_analysis.rs"]
mod analysis;

use std::collections::BTreeMap;

use analysis::{
    analyze, broker_timeline, ranges, CommitError, Event, Outcome, PartitionCommit, Protocol, Stabilized, Stamp, What,
};

fn assigned(at_ms: u64, member: u32, generation: i32, partitions: &[i32]) -> Event {
    Event { at_ms, member, what: What::Assigned { generation, partitions: partitions.to_vec(), incremental: false } }
}

fn added(at_ms: u64, member: u32, generation: i32, partitions: &[i32]) -> Event {
    Event { at_ms, member, what: What::Assigned { generation, partitions: partitions.to_vec(), incremental: true } }
}

fn revoked(at_ms: u64, member: u32, generation: i32, partitions: &[i32]) -> Event {
    Event { at_ms, member, what: What::Revoked { generation, partitions: partitions.to_vec() } }
}

fn batch(at_ms: u64, member: u32, id: u64, partition: i32, first: i64, last: i64) -> Event {
    Event { at_ms, member, what: What::Batch { id, generation: 0, ranges: vec![(partition, first, last)] } }
}

fn commit(at_ms: u64, member: u32, batch: u64, partition: i32, offset: i64, stamp: Stamp, outcome: Outcome) -> Event {
    Event {
        at_ms,
        member,
        what: What::Commit {
            batch,
            sent_ms: at_ms - 1,
            partitions: vec![PartitionCommit { partition, offset, stamp, outcome }],
        },
    }
}

fn ends(pairs: &[(i32, i64)]) -> BTreeMap<i32, i64> {
    pairs.iter().copied().collect()
}

#[test]
fn a_commit_of_a_partition_another_member_owns_in_that_generation_is_found() {
    let events = vec![
        assigned(10, 0, 1, &[0, 1]),
        batch(20, 0, 1, 1, 0, 9),
        // Generation 2 gives partition 1 to member 1; member 0 commits it stamped 2.
        assigned(30, 0, 2, &[0]),
        assigned(30, 1, 2, &[1]),
        commit(40, 0, 1, 1, 10, Stamp::Exact(2), Outcome::Committed),
        batch(50, 1, 2, 1, 0, 9),
        commit(60, 1, 2, 1, 10, Stamp::Exact(2), Outcome::Committed),
    ];
    let a = analyze(&events, &ends(&[(1, 10)]), &[], Protocol::Eager, 100);
    assert_eq!(a.partitions_committed, 2);
    assert_eq!(a.owner_commits, 1);
    assert_eq!(a.not_owner.len(), 1);
    let found = &a.not_owner[0];
    assert_eq!((found.member, found.partition, found.generation, found.owners.clone()), (0, 1, 2, vec![1]));
    // Member 1 processed offsets 0..=9 again although member 0's commit of them succeeded.
    assert_eq!((a.duplicates, a.duplicates_of_committed, a.lost), (10, 10, 0));
}

#[test]
fn an_eager_revoke_callback_keeps_the_old_generation_s_ownership() {
    // Java's eager protocol: REVOKED in generation 1 before rejoining, then the full new
    // assignment. A commit stamped 1 after the revoke callback is the owner's.
    let events = vec![
        assigned(10, 0, 1, &[0, 1]),
        batch(20, 0, 1, 0, 0, 4),
        revoked(25, 0, 1, &[0, 1]),
        commit(30, 0, 1, 0, 5, Stamp::Exact(1), Outcome::Committed),
        assigned(40, 0, 2, &[1]),
        assigned(40, 1, 2, &[0]),
        batch(50, 1, 2, 0, 5, 9),
        commit(60, 1, 2, 0, 10, Stamp::Exact(2), Outcome::Committed),
    ];
    let a = analyze(&events, &ends(&[(0, 10)]), &[], Protocol::Eager, 100);
    assert_eq!((a.owner_commits, a.not_owner.len(), a.unattributed_commits), (2, 0, 0));
    assert_eq!((a.duplicates, a.lost), (0, 0));
}

#[test]
fn a_cooperative_revoke_window_commit_is_counted_apart_and_a_later_one_is_not() {
    // KIP-429: generation 2 takes partition 1 from member 0 and gives it to nobody; member 1
    // gets it in generation 3. Java's callbacks name only what is added and revoked.
    let events = vec![
        added(10, 0, 1, &[0, 1]),
        batch(20, 0, 1, 1, 0, 4),
        batch(21, 0, 2, 1, 5, 9),
        revoked(30, 0, 2, &[1]),
        added(30, 0, 2, &[]),
        added(30, 1, 2, &[]),
        commit(31, 0, 1, 1, 5, Stamp::Exact(2), Outcome::Committed),
        added(40, 0, 3, &[]),
        added(40, 1, 3, &[1]),
        commit(41, 0, 2, 1, 10, Stamp::Exact(3), Outcome::Committed),
    ];
    let a = analyze(&events, &ends(&[(1, 10)]), &[], Protocol::Cooperative, 100);
    assert_eq!(a.revoke_window_commits, 1, "stamped 2: nobody owns partition 1 in generation 2");
    assert_eq!(a.not_owner.len(), 1, "stamped 3: member 1 owns it");
    assert_eq!(a.not_owner[0].generation, 3);
    assert!(a.ownership_conflicts.is_empty());
    // The same commit under an eager protocol cannot be a revoke window: the data is missing.
    let eager = analyze(&events, &ends(&[(1, 10)]), &[], Protocol::Eager, 100);
    assert_eq!((eager.revoke_window_commits, eager.unattributed_commits), (0, 1));
}

#[test]
fn the_broker_log_decides_between_the_client_s_generations_and_checks_exact_stamps() {
    let timeline =
        [Stabilized { at_ms: 100, generation: 1, members: 1 }, Stabilized { at_ms: 200, generation: 2, members: 2 }];
    let events = vec![
        assigned(101, 0, 1, &[0, 1]),
        assigned(201, 0, 2, &[0]),
        assigned(201, 1, 2, &[1]),
        batch(150, 0, 1, 1, 0, 4),
        // Sent at 249 and answered at 250, entirely in generation 2: the client saw 1 then 2.
        commit(250, 0, 1, 1, 5, Stamp::Between(1, 2), Outcome::Committed),
        batch(150, 0, 2, 0, 0, 4),
        // Sent at 179, answered at 180: generation 1 although the client saw 1 and 2.
        commit(180, 0, 2, 0, 5, Stamp::Between(1, 2), Outcome::Committed),
        batch(150, 0, 3, 0, 5, 9),
        // Spans the line at 200: neither the client nor the broker pins it down.
        Event {
            at_ms: 230,
            member: 0,
            what: What::Commit {
                batch: 3,
                sent_ms: 190,
                partitions: vec![PartitionCommit {
                    partition: 0,
                    offset: 10,
                    stamp: Stamp::Between(1, 2),
                    outcome: Outcome::Committed,
                }],
            },
        },
        batch(300, 1, 4, 1, 5, 9),
        // An exact stamp the log contradicts (generation 1 was over at 200).
        commit(310, 1, 4, 1, 10, Stamp::Exact(1), Outcome::Committed),
    ];
    let a = analyze(&events, &ends(&[(0, 10), (1, 10)]), &timeline, Protocol::Eager, 1000);
    assert_eq!(a.not_owner.len(), 2, "{:?}", a.not_owner);
    assert_eq!((a.not_owner[0].partition, a.not_owner[0].generation), (1, 2));
    assert_eq!((a.not_owner[1].member, a.not_owner[1].generation), (1, 1));
    assert_eq!(a.owner_commits, 1);
    assert_eq!(a.unresolved_commits, 1);
    assert_eq!((a.stamps_checked, a.stamps_contradicted), (1, 1));
    assert_eq!(a.final_generation, Some(timeline[1]));
    assert!(a.incomplete_generations.is_empty());
}

#[test]
fn failed_commits_count_by_error_and_their_records_may_be_processed_again() {
    let events = vec![
        assigned(10, 0, 1, &[0]),
        batch(20, 0, 1, 0, 0, 9),
        commit(30, 0, 1, 0, 10, Stamp::Between(1, 1), Outcome::Failed(CommitError::IllegalGeneration)),
        batch(40, 0, 2, 0, 0, 9),
        commit(50, 0, 2, 0, 10, Stamp::Between(1, 1), Outcome::Failed(CommitError::from_name("REBALANCE_IN_PROGRESS"))),
        batch(60, 0, 3, 0, 10, 14),
        commit(70, 0, 3, 0, 15, Stamp::Exact(1), Outcome::NotSent("kgroup gate: not owned".into())),
        batch(80, 0, 4, 0, 10, 12),
        commit(90, 0, 4, 0, 13, Stamp::Exact(1), Outcome::Failed(CommitError::Other("REQUEST_TIMED_OUT".into()))),
    ];
    // Offsets 15..=19 were produced and never processed.
    let a = analyze(&events, &ends(&[(0, 20)]), &[], Protocol::Eager, 100);
    assert_eq!(a.commit_calls, 4);
    assert_eq!(a.failed(&CommitError::IllegalGeneration), 1);
    assert_eq!(a.failed(&CommitError::RebalanceInProgress), 1);
    assert_eq!((a.failed_by_generation(), a.failed_other(), a.not_sent()), (2, 1, 1));
    assert_eq!(a.partitions_committed, 0);
    assert_eq!((a.processed, a.duplicates, a.duplicates_of_committed, a.lost), (28, 13, 0, 5));
}

#[test]
fn a_generation_the_broker_formed_with_a_silent_member_is_incomplete() {
    let timeline = [Stabilized { at_ms: 100, generation: 4, members: 3 }];
    let events = vec![assigned(101, 0, 4, &[0]), assigned(101, 1, 4, &[1])];
    let a = analyze(&events, &BTreeMap::new(), &timeline, Protocol::Eager, 1000);
    assert_eq!(a.incomplete_generations, vec![(4, 3, 2)]);
    // Lines after the end of processing (members closing) are not the run's.
    let a = analyze(&events, &BTreeMap::new(), &timeline, Protocol::Eager, 99);
    assert!(a.incomplete_generations.is_empty());
    assert_eq!(a.final_generation, None);
}

#[test]
fn two_members_claiming_a_partition_in_one_generation_is_a_conflict() {
    let events = vec![assigned(10, 0, 1, &[0, 1]), assigned(10, 1, 1, &[1])];
    let a = analyze(&events, &BTreeMap::new(), &[], Protocol::Eager, 100);
    assert_eq!(a.ownership_conflicts, vec![(1, 1, vec![0, 1])]);
}

#[test]
fn the_broker_timeline_is_read_in_utc_whatever_the_broker_s_time_zone() {
    // 2026-12-04 17:24:05.738 UTC, logged by a broker two hours ahead of UTC.
    let created_ms = 1_796_405_045_738 - 40;
    let log = "\
[2026-12-04 19:24:05,738] INFO [QuorumController id=1] CreateTopics result(s): CreatableTopic(name='t1', numPartitions=72, replicationFactor=1, assignments=[], configs=[]): SUCCESS (org.apache.kafka.controller.ReplicationControlManager)
[2026-12-04 19:24:09,092] INFO [GroupCoordinator 1]: Stabilized group g1 generation 1 (__consumer_offsets-0) with 2 members (kafka.coordinator.group.GroupCoordinator)
[2026-12-04 19:24:09,100] INFO [GroupCoordinator 1]: Stabilized group g10 generation 7 (__consumer_offsets-0) with 1 members (kafka.coordinator.group.GroupCoordinator)
[2026-12-04 19:24:12,593] INFO [GroupCoordinator 1]: Preparing to rebalance group g1 in state PreparingRebalance with old generation 1 (__consumer_offsets-0) (reason: Adding new member m3; client reason: need to re-join with the given member-id: m3) (kafka.coordinator.group.GroupCoordinator)
[2026-12-04 19:24:13,001] INFO [GroupCoordinator 1]: Stabilized group g1 generation 2 (__consumer_offsets-0) with 3 members (kafka.coordinator.group.GroupCoordinator)
";
    let timeline = broker_timeline(log, "g1", "t1", created_ms).expect("the CreateTopics line");
    assert_eq!(
        timeline,
        vec![
            Stabilized { at_ms: 1_796_405_049_092, generation: 1, members: 2 },
            Stabilized { at_ms: 1_796_405_053_001, generation: 2, members: 3 },
        ]
    );
    assert_eq!(broker_timeline(log, "g1", "t2", created_ms), None, "no line for that topic");
}

#[test]
fn records_become_ranges_of_consecutive_offsets_per_partition() {
    let records = [(3, 10), (3, 11), (5, 0), (3, 12), (5, 1), (3, 20)];
    assert_eq!(ranges(records), vec![(3, 10, 12), (5, 0, 1), (3, 20, 20)]);
}

#[test]
fn under_the_consumer_protocol_a_commit_is_judged_by_who_held_the_partition_when_it_was_sent() {
    let events = vec![
        added(10, 0, 1, &[0, 1]),
        batch(20, 0, 1, 1, 0, 9),
        // Epoch 2 moves partition 1 to member 1, which gets it once member 0 revoked it; no
        // callback marks member 0's epoch change for partition 0.
        revoked(30, 0, 1, &[1]),
        added(35, 1, 2, &[1]),
        // Member 0 commits partition 1 after revoking it (member 1 holds it), and partition 0,
        // which it still holds, stamped with an epoch no callback named.
        commit(40, 0, 1, 1, 10, Stamp::Between(2, 2), Outcome::Committed),
        commit(41, 0, 1, 0, 5, Stamp::Between(2, 2), Outcome::Committed),
        batch(50, 1, 2, 1, 0, 9),
        commit(60, 1, 2, 1, 10, Stamp::Between(2, 2), Outcome::Committed),
        // Between the revocation and the new owner's assignment nobody holds partition 1.
        commit(33, 0, 1, 1, 10, Stamp::Between(2, 2), Outcome::Committed),
    ];
    let a = analyze(&events, &ends(&[(1, 10)]), &[], Protocol::Consumer, 100);
    assert_eq!(a.partitions_committed, 4);
    assert_eq!(a.owner_commits, 2, "{a:?}");
    assert_eq!(a.unattributed_commits, 1, "{a:?}");
    assert_eq!(a.not_owner.len(), 1, "{a:?}");
    let n = &a.not_owner[0];
    assert_eq!((n.member, n.partition, n.owners.as_slice()), (0, 1, &[1][..]));
    // Under the generation-based judgement the same log has no owner in epoch 2 for member 0's
    // partition 0: it would be unattributed, not an owner commit.
    let by_generation = analyze(&events, &ends(&[(1, 10)]), &[], Protocol::Cooperative, 100);
    assert!(by_generation.owner_commits < a.owner_commits, "{by_generation:?}");
}
