//! The session on its own: offset ranges for records, actions read back.

use std::ops::Range;
use std::time::{Duration, Instant};

use super::*;
use crate::group::{MemberId, OwnedPartition, RejoinReason};

const BATCH: i64 = 100;

fn tp(partition: i32) -> TopicPartition {
    TopicPartition::new("t", partition)
}

fn generation(id: i32) -> Generation {
    Generation { id: GenerationId(id), member_id: MemberId::new("m") }
}

struct Harness {
    session: ConsumerSession<Range<i64>>,
    log: OffsetLog,
    now: Instant,
    /// Everything the session asked for, in order, not yet checked.
    actions: Vec<SessionAction>,
    last_lookup: Option<LookupId>,
}

impl Harness {
    fn new(configure: impl FnOnce(&mut SessionConfig)) -> Self {
        let mut config = SessionConfig {
            max_poll_interval: Duration::from_secs(300),
            rebalance_callback_timeout: Duration::from_secs(30),
            auto_commit_interval: None,
            auto_offset_store: false,
            listener: false,
            static_member: false,
            committed_offsets: true,
        };
        configure(&mut config);
        let now = Instant::now();
        Harness {
            session: ConsumerSession::new(config, now),
            log: OffsetLog::new(BATCH),
            now,
            actions: Vec::new(),
            last_lookup: None,
        }
    }

    /// Applies the fetch actions to the log and keeps every action for the test to look at.
    fn pump(&mut self) {
        while let Some(action) = self.session.poll_action() {
            self.log.apply(&action);
            if let SessionAction::LookUp { id, .. } = &action {
                self.last_lookup = Some(*id);
            }
            self.actions.push(action);
        }
    }

    fn event(&mut self, event: GroupEvent) {
        self.session.handle_group_event(event, self.now);
        self.pump();
    }

    fn assigned(&mut self, generation_id: i32, partitions: &[(i32, i32)], revoked: &[i32]) {
        let partitions: Vec<OwnedPartition> = partitions
            .iter()
            .map(|&(p, since)| OwnedPartition { partition: tp(p), owned_since: GenerationId(since) })
            .collect();
        let added = partitions.iter().map(|p| p.partition.clone()).collect();
        self.event(GroupEvent::Assigned {
            generation: generation(generation_id),
            partitions,
            added,
            revoked: revoked.iter().map(|&p| tp(p)).collect(),
        });
    }

    fn revoke_requested(&mut self, generation_id: i32, partitions: &[i32]) {
        self.event(GroupEvent::RevokeRequested {
            generation: GenerationId(generation_id),
            partitions: partitions.iter().map(|&p| tp(p)).collect(),
            reason: RejoinReason::PartitionsRevoked,
        });
    }

    /// Answers the last lookup with these committed offsets.
    fn answer_lookup(&mut self, committed: &[(i32, Option<i64>)]) {
        let id = self.last_lookup();
        let answer = committed.iter().map(|&(p, o)| (tp(p), o)).collect();
        self.session.handle_lookup(id, Ok(answer));
        self.pump();
    }

    fn last_lookup(&self) -> LookupId {
        self.last_lookup.expect("a lookup was asked for")
    }

    fn next_batch(&mut self) -> Option<SessionBatch<Range<i64>>> {
        self.session.request_batch(self.now);
        let batch = self.session.take_batch(BATCH as usize, &mut self.log);
        self.pump();
        batch
    }

    fn commit(&mut self, leases: &[Lease]) {
        self.session.committing(leases, self.now);
        self.pump();
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.session.handle_timeout(self.now);
        self.pump();
    }

    fn take_actions(&mut self) -> Vec<SessionAction> {
        std::mem::take(&mut self.actions)
    }

    fn revoke_done_sent(&mut self) -> bool {
        self.take_actions().contains(&SessionAction::RevokeDone)
    }
}

/// Owns partitions 0 and 1 since generation 1, both fetched from offset 0.
fn started(configure: impl FnOnce(&mut SessionConfig)) -> Harness {
    let mut h = Harness::new(configure);
    h.assigned(1, &[(0, 1), (1, 1)], &[]);
    h.answer_lookup(&[(0, None), (1, None)]);
    h.take_actions();
    h
}

#[test]
fn a_partition_starts_only_from_an_answered_lookup() {
    let mut h = Harness::new(|_| {});
    h.assigned(1, &[(0, 1)], &[]);
    assert!(h.next_batch().is_none(), "nothing before the committed offset is known");
    let id = h.last_lookup();
    h.session.handle_lookup(id, Err(OffsetLookupFailure::TimedOut { attempts: 3, last: "loading".into() }));
    h.pump();
    assert!(h.next_batch().is_none(), "a failed lookup is not \"nothing committed\"");
    assert_ne!(h.last_lookup(), id, "asked again");
    h.answer_lookup(&[(0, Some(500))]);
    let batch = h.next_batch().expect("a batch");
    assert_eq!(batch.records, 500..600);
    assert_eq!(batch.lease.owned_since, GenerationId(1));
}

#[test]
fn a_partition_kept_through_a_revoke_window_its_lookup_outlasted_starts_unpaused() {
    // Eager rebalance while the committed offsets are still being looked up (the coordinator
    // moved): the window pauses partitions nothing fetches yet, and they come back in the same
    // streak. The lookup's answer must start them as any other.
    let mut h = Harness::new(|_| {});
    h.assigned(2, &[(0, 2), (1, 2)], &[]);
    let lookup = h.last_lookup();
    h.revoke_requested(2, &[0, 1]);
    assert!(h.revoke_done_sent(), "no lease is held: the window closes at once");
    h.assigned(3, &[(0, 2), (1, 2)], &[]);
    assert_eq!(h.last_lookup(), lookup, "same streak: the lookup in flight still counts");
    assert!(h.next_batch().is_none(), "nothing before the committed offset is known");
    h.answer_lookup(&[(0, Some(300)), (1, None)]);
    let first = h.next_batch().expect("a batch after the answer");
    let second = h.next_batch().expect("the other partition");
    let mut got = vec![(first.partition, first.records), (second.partition, second.records)];
    got.sort_by_key(|(tp, _)| tp.partition);
    assert_eq!(got, vec![(tp(0), 300..400), (tp(1), 0..100)]);
}

#[test]
fn an_ownership_gap_drops_buffered_records_and_starts_again_from_the_committed_offset() {
    let mut h = started(|_| {});
    let first = h.next_batch().expect("a batch");
    assert_eq!((first.partition.clone(), first.records.clone()), (tp(0), 0..100));
    // Partition 0 is buffered further (records 100..200) when the member misses generation 2
    // and gets it back in generation 3: a new streak.
    h.session.handle_records(&tp(0), 100..200);
    h.assigned(3, &[(0, 3), (1, 1)], &[0]);
    let actions = h.take_actions();
    assert!(actions.contains(&SessionAction::Forget(vec![tp(0)])), "{actions:?}");
    assert!(actions
        .iter()
        .any(|a| matches!(a, SessionAction::LookUp { partitions, .. } if *partitions == vec![tp(0)])));
    // Until the lookup answers, partition 0 hands out nothing; the other one goes on.
    let other = h.next_batch().expect("partition 1");
    assert_eq!(other.partition, tp(1));
    assert_eq!(other.lease.owned_since, GenerationId(1));
    // The interim owner committed 700: the new streak starts there, leased in it.
    h.answer_lookup(&[(0, Some(700))]);
    let batch = h.next_batch().expect("partition 0 again");
    assert_eq!((batch.partition.clone(), batch.records.clone()), (tp(0), 700..800));
    assert_eq!(batch.lease.owned_since, GenerationId(3));
    assert_eq!(batch.lease.generation.id, GenerationId(3));
    // The old streak's lease no longer counts for the window or the stored offsets.
    h.session.store(first.lease.clone(), h.now);
    assert!(h.session.take_stored(h.now).is_empty(), "a lease of the old streak is not stored");
}

#[test]
fn a_lease_carries_the_generation_its_records_were_fetched_in() {
    let mut h = started(|_| {});
    h.session.handle_records(&tp(0), 0..50);
    // Kept across generation 2 (same streak): the buffered records keep generation 1's stamp.
    h.assigned(2, &[(0, 1), (1, 1)], &[]);
    let batch = h.next_batch().expect("a batch");
    assert_eq!(batch.records, 0..100);
    assert_eq!(batch.lease.generation.id, GenerationId(1));
    assert_eq!(batch.lease.owned_since, GenerationId(1));
}

#[test]
fn the_revoke_window_waits_for_every_lease_held_on_revoked_partitions() {
    let mut h = started(|_| {});
    // The application reads two batches (one per partition) and has committed neither.
    let a = h.next_batch().expect("a");
    let b = h.next_batch().expect("b");
    assert_ne!(a.partition, b.partition);
    h.revoke_requested(1, &[0, 1]);
    assert!(!h.revoke_done_sent(), "leases are outstanding");
    assert!(h.next_batch().is_none(), "nothing of a revoked partition is handed out");
    h.commit(std::slice::from_ref(&a.lease));
    assert!(!h.revoke_done_sent(), "one lease is still outstanding");
    h.commit(std::slice::from_ref(&b.lease));
    assert!(h.revoke_done_sent(), "both committed: the member may rejoin");
}

#[test]
fn a_cooperative_window_keeps_serving_the_partitions_that_stay() {
    let mut h = started(|_| {});
    let a = h.next_batch().expect("a");
    let revoked = a.partition.partition;
    let kept = 1 - revoked;
    h.revoke_requested(2, &[revoked]);
    let batch = h.next_batch().expect("the kept partition goes on");
    assert_eq!(batch.partition, tp(kept));
    assert!(h.next_batch().is_some_and(|b| b.partition == tp(kept)), "and only it");
    assert!(!h.revoke_done_sent());
    h.commit(std::slice::from_ref(&a.lease));
    assert!(h.revoke_done_sent());
    // The assignment of generation 2 without the revoked partition: it is forgotten.
    h.assigned(2, &[(kept, 1)], &[revoked]);
    assert!(h.take_actions().contains(&SessionAction::Forget(vec![tp(revoked)])));
    assert_eq!(h.session.assignment(), vec![tp(kept)]);
}

#[test]
fn leases_that_outlast_the_callback_timeout_are_left_to_the_fence() {
    let mut h = started(|c| c.rebalance_callback_timeout = Duration::from_secs(5));
    let _held = h.next_batch().expect("a batch");
    h.revoke_requested(1, &[0, 1]);
    h.advance(Duration::from_secs(4));
    assert!(!h.revoke_done_sent());
    h.advance(Duration::from_secs(1));
    assert!(h.revoke_done_sent(), "the deadline ends the window");
}

#[test]
fn with_auto_store_asking_for_the_next_batch_settles_the_last_one_and_the_window_commits_it() {
    let mut h = started(|c| {
        c.auto_offset_store = true;
        c.auto_commit_interval = Some(Duration::from_secs(5));
    });
    let held = h.next_batch().expect("a batch");
    h.revoke_requested(1, &[0, 1]);
    assert!(!h.revoke_done_sent(), "the batch handed out is being processed");
    // The next poll: the batch counts as processed, is stored and committed before RevokeDone.
    assert!(h.next_batch().is_none());
    let actions = h.take_actions();
    let commit = actions.iter().position(|a| *a == SessionAction::Commit(vec![held.lease.clone()]));
    let done = actions.iter().position(|a| *a == SessionAction::RevokeDone);
    assert!(commit.is_some() && commit < done, "{actions:?}");
}

#[test]
fn auto_commit_commits_the_stored_offsets_every_interval() {
    let mut h = started(|c| {
        c.auto_offset_store = true;
        c.auto_commit_interval = Some(Duration::from_secs(5));
    });
    let first = h.next_batch().expect("a batch");
    h.next_batch().expect("a second batch");
    h.advance(Duration::from_secs(5));
    assert!(h.take_actions().contains(&SessionAction::Commit(vec![first.lease.clone()])));
    h.advance(Duration::from_secs(5));
    assert!(!h.take_actions().iter().any(|a| matches!(a, SessionAction::Commit(_))), "nothing new stored");
}

#[test]
fn a_batch_given_back_is_handed_out_again_and_is_not_outstanding() {
    let mut h = started(|_| {});
    let batch = h.next_batch().expect("a batch");
    assert!(h.session.has_outstanding_lease(&batch.partition));
    let (partition, records) = (batch.partition.clone(), batch.records.clone());
    h.session.give_back(batch, h.now);
    assert!(!h.session.has_outstanding_lease(&partition));
    h.revoke_requested(1, &[0, 1]);
    assert!(h.revoke_done_sent(), "nothing outstanding: the window runs at once");
    h.assigned(2, &[(0, 1), (1, 1)], &[]);
    let again = std::iter::from_fn(|| h.next_batch()).find(|b| b.partition == partition).expect("handed out again");
    assert_eq!(again.records, records);
}

#[test]
fn a_batch_given_back_after_a_seek_is_dropped() {
    let mut h = started(|_| {});
    let batch = h.next_batch().expect("a batch");
    let partition = batch.partition.clone();
    h.session.seek(&partition, StartPosition::Offset(5000), h.now);
    h.pump();
    h.session.give_back(batch, h.now);
    let next = std::iter::from_fn(|| h.next_batch()).find(|b| b.partition == partition).expect("a batch");
    assert_eq!(next.records.start, 5000);
}

#[test]
fn the_listener_runs_before_the_member_rejoins_and_no_batch_comes_meanwhile() {
    let mut h = started(|c| c.listener = true);
    h.take_actions();
    h.revoke_requested(1, &[0, 1]);
    let actions = h.take_actions();
    let call = ListenerCall::Revoked(vec![tp(0), tp(1)]);
    assert!(actions.iter().any(|a| matches!(a, SessionAction::Listener { call: c, .. } if *c == call)));
    assert!(!actions.contains(&SessionAction::RevokeDone));
    assert!(h.next_batch().is_none());
    h.session.listener_done(&call, h.now);
    h.pump();
    assert!(h.revoke_done_sent());
}

#[test]
fn leaving_for_max_poll_interval_reaches_the_application_and_loses_the_partitions() {
    let mut h = started(|c| c.listener = true);
    h.event(GroupEvent::Left { reason: LeaveReason::MaxPollIntervalExceeded });
    assert!(matches!(h.session.take_error(), Some(Error::MaxPollIntervalExceeded { .. })));
    assert!(h.session.assignment().is_empty());
    let actions = h.take_actions();
    assert!(actions
        .iter()
        .any(|a| matches!(a, SessionAction::Listener { call: ListenerCall::Lost(p), .. } if p.len() == 2)));
}

#[test]
fn waiting_in_poll_keeps_the_member_polling() {
    let mut h = Harness::new(|c| c.max_poll_interval = Duration::from_secs(10));
    h.session.request_batch(h.now);
    h.pump();
    h.take_actions();
    h.advance(Duration::from_secs(5));
    assert_eq!(h.take_actions(), vec![SessionAction::RecordPoll]);
    h.session.wait_ended();
    h.advance(Duration::from_secs(5));
    assert!(h.take_actions().is_empty(), "not waiting: not polling");
}

#[test]
fn without_auto_commit_a_stored_lease_holds_the_window_until_the_stored_offsets_are_committed() {
    let mut h = started(|c| c.auto_offset_store = true);
    let held = h.next_batch().expect("a batch");
    h.revoke_requested(1, &[0, 1]);
    // The next poll stores it, but nothing will commit stored offsets on its own.
    assert!(h.next_batch().is_none());
    assert!(!h.revoke_done_sent(), "a stored lease without auto-commit is still outstanding");
    assert_eq!(h.session.take_stored(h.now), vec![held.lease.clone()], "commit_stored takes it");
    h.pump();
    assert!(h.revoke_done_sent(), "taken to be committed: the window runs");
}

#[test]
fn with_a_listener_revoked_runs_at_the_next_poll_to_commit_what_the_application_holds() {
    let mut h = started(|c| c.listener = true);
    h.session.listener_done(&ListenerCall::Assigned(vec![tp(0), tp(1)]), h.now);
    let _held = h.next_batch().expect("a batch");
    h.take_actions();
    h.revoke_requested(1, &[0, 1]);
    let is_revoked_call =
        |a: &SessionAction| matches!(a, SessionAction::Listener { call: ListenerCall::Revoked(_), .. });
    assert!(!h.take_actions().iter().any(is_revoked_call), "the application is processing what it holds");
    // The next poll: the listener is where it commits (through any handle); the member rejoins
    // when it returns.
    assert!(h.next_batch().is_none());
    assert!(h.take_actions().iter().any(is_revoked_call));
    h.session.listener_done(&ListenerCall::Revoked(vec![tp(0), tp(1)]), h.now);
    h.pump();
    assert!(h.revoke_done_sent());
}

/// `seek_to_beginning` / `seek_to_end` go through `seek`: buffered records go, the lease is
/// released (a revoke window does not wait for it), and the fetcher is told where to look up.
#[test]
fn a_seek_to_the_log_start_releases_the_lease_and_drops_what_is_buffered() {
    let mut h = started(|_| {});
    let batch = h.next_batch().expect("a batch");
    let partition = batch.partition.clone();
    assert!(h.session.has_outstanding_lease(&partition));
    h.session.seek(&partition, StartPosition::Earliest, h.now);
    h.pump();
    assert!(!h.session.has_outstanding_lease(&partition));
    assert_eq!(h.session.pending_position(&partition), None);
    assert!(h.take_actions().contains(&SessionAction::Seek(partition.clone(), StartPosition::Earliest)));
    h.revoke_requested(1, &[partition.partition]);
    assert!(h.revoke_done_sent(), "nothing outstanding: the window runs at once");
}

/// A seek while the committed offset is still looked up starts the partition there.
#[test]
fn a_seek_to_the_log_end_before_the_lookup_answers_starts_there() {
    let mut h = Harness::new(|_| {});
    h.assigned(1, &[(0, 1)], &[]);
    h.take_actions();
    h.session.seek(&tp(0), StartPosition::Latest, h.now);
    h.pump();
    assert!(h.take_actions().contains(&SessionAction::Fetch(vec![(tp(0), StartPosition::Latest)])));
    h.answer_lookup(&[(0, Some(7))]);
    assert!(h.take_actions().is_empty(), "the lookup no longer starts the partition");
}

/// The listener calls in `actions`, in order.
fn listener_calls(actions: &[SessionAction]) -> Vec<ListenerCall> {
    actions
        .iter()
        .filter_map(|a| match a {
            SessionAction::Listener { call, .. } => Some(call.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn eager_rebalance_revokes_everything_and_assigns_the_whole_new_assignment() {
    let mut h = started(|c| c.listener = true);
    h.session.listener_done(&ListenerCall::Assigned(vec![tp(0), tp(1)]), h.now);
    h.revoke_requested(1, &[0, 1]);
    h.session.listener_done(&ListenerCall::Revoked(vec![tp(0), tp(1)]), h.now);
    // Partition 0 kept (its streak goes on), 1 gone, 2 new.
    h.assigned(2, &[(0, 1), (2, 2)], &[1]);
    assert_eq!(
        listener_calls(&h.take_actions()),
        vec![ListenerCall::Revoked(vec![tp(0), tp(1)]), ListenerCall::Assigned(vec![tp(0), tp(2)])]
    );
}

#[test]
fn cooperative_rebalance_revokes_and_assigns_only_what_moves() {
    let mut h = started(|c| c.listener = true);
    h.session.listener_done(&ListenerCall::Assigned(vec![tp(0), tp(1)]), h.now);
    // First round: nothing revoked up front; the assignment takes 1 away and adds 2.
    h.revoke_requested(1, &[]);
    h.revoke_requested(2, &[1]);
    h.assigned(2, &[(0, 1), (2, 2)], &[1]);
    assert_eq!(listener_calls(&h.take_actions()), vec![ListenerCall::Revoked(vec![tp(1)])]);
    h.session.listener_done(&ListenerCall::Revoked(vec![tp(1)]), h.now);
    h.pump();
    assert_eq!(listener_calls(&h.take_actions()), vec![ListenerCall::Assigned(vec![tp(2)])]);
    assert_eq!(h.session.assignment(), vec![tp(0), tp(2)], "the whole assignment");
    // A rebalance that changes nothing still calls `assigned`, with nothing.
    h.revoke_requested(2, &[]);
    h.assigned(3, &[(0, 1), (2, 2)], &[]);
    assert_eq!(listener_calls(&h.take_actions()), vec![ListenerCall::Assigned(vec![])]);
}

/// Java's `assign`: a partition kept keeps its position (and buffered records), one dropped is
/// forgotten, one added starts from its committed offset; leases carry no generation.
#[test]
fn a_manual_assignment_keeps_the_positions_of_the_partitions_it_keeps() {
    let mut h = Harness::new(|_| {});
    h.session.assign_manually(vec![tp(1), tp(0), tp(0)], h.now);
    h.pump();
    assert_eq!(h.session.assignment(), vec![tp(0), tp(1)]);
    assert!(h.next_batch().is_none(), "nothing before the committed offsets are known");
    h.answer_lookup(&[(0, Some(300)), (1, None)]);
    let first = h.next_batch().expect("a batch");
    let second = h.next_batch().expect("a batch");
    let mut read = [(first.partition.clone(), first.records.clone()), (second.partition.clone(), second.records)];
    read.sort_by_key(|(tp, _)| tp.partition);
    assert_eq!(read, [(tp(0), 300..400), (tp(1), 0..100)], "committed offset, else auto.offset.reset");
    assert_eq!((first.lease.generation, first.lease.owned_since), (Generation::none(), GenerationId::NONE));
    h.session.handle_records(&tp(0), 400..450);
    h.take_actions();

    h.session.assign_manually(vec![tp(0), tp(2)], h.now);
    h.pump();
    let actions = h.take_actions();
    assert!(actions.contains(&SessionAction::Forget(vec![tp(1)])), "{actions:?}");
    let looked_up: Vec<_> = actions
        .iter()
        .filter_map(|a| match a {
            SessionAction::LookUp { partitions, .. } => Some(partitions.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(looked_up, vec![vec![tp(2)]], "only the new partition is looked up");
    assert_eq!(h.session.pending_position(&tp(0)), Some(400), "partition 0 goes on where it was");
    assert!(h.session.has_outstanding_lease(&tp(0)), "its lease still counts");
}

/// Without `group.id` there is nothing committed to look up: new partitions start at
/// `auto.offset.reset` at once.
#[test]
fn without_committed_offsets_a_manual_assignment_starts_at_the_reset_policy() {
    let mut h = Harness::new(|c| c.committed_offsets = false);
    h.session.assign_manually(vec![tp(0)], h.now);
    h.pump();
    let actions = h.take_actions();
    assert_eq!(actions, vec![SessionAction::Fetch(vec![(tp(0), StartPosition::Reset)])]);
    assert_eq!(h.next_batch().expect("a batch").records, 0..100);
}
