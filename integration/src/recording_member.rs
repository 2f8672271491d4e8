//! A kgroup member for real-broker scenarios that keeps a journal of what it did: a
//! `GroupConsumer` polled on a task that processes every batch and commits it synchronously,
//! recording every record it processed, every commit outcome (each names the generation it was
//! committed in), every error that reached it, and its group events (assignments, revocations
//! and losses, with their generations). Tests judge the journals once the members are closed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use kgroup::driver::group::{GroupEventRecord, GroupObserver};
use kgroup::group::StateKind;
use kgroup::group::{CommitOutcome, GroupEvent, PartitionCommit};
use kgroup::{ConsumerConfig, GroupConsumer};
use tokio::sync::{broadcast, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// What one member did, in order.
#[derive(Debug, Default)]
pub struct Journal {
    /// Every record handed to the application: partition, offset, value.
    pub processed: Vec<(i32, i64, Option<Bytes>)>,
    /// Every commit outcome, one per partition per commit.
    pub commits: Vec<PartitionCommit>,
    /// What reached the application as an error (`poll` or `commit` returning `Err`, `close`
    /// failing), and group events the journal missed.
    pub errors: Vec<String>,
    /// The member's group events, from its first one.
    pub events: Vec<GroupEvent>,
}

impl Journal {
    /// Per generation, the partitions the member was assigned in it (its `Assigned` events).
    pub fn assignments(&self) -> BTreeMap<i32, BTreeSet<i32>> {
        self.events
            .iter()
            .filter_map(|event| match event {
                GroupEvent::Assigned { generation, partitions, .. } => {
                    Some((generation.id.0, partitions.iter().map(|p| p.partition.partition).collect()))
                }
                _ => None,
            })
            .collect()
    }

    /// Committed outcomes: partition, offset, and the generation the commit was stamped with.
    pub fn committed(&self) -> impl Iterator<Item = (i32, i64, i32)> + '_ {
        self.commits.iter().filter_map(|c| match c.outcome {
            CommitOutcome::Committed { generation, .. } => Some((c.partition.partition, c.offset, generation.0)),
            _ => None,
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running member; stopped (without LeaveGroup) when dropped, so a failing test leaves no task.
pub struct RecordingMember {
    pub name: String,
    observer: GroupObserver,
    journal: Arc<Mutex<Journal>>,
    stop: Arc<AtomicBool>,
    consumer_task: Option<JoinHandle<GroupConsumer>>,
    events_task: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
}

impl RecordingMember {
    /// Subscribes to `topic` and starts polling batches of at most `config.max_poll_records`.
    pub async fn start(name: &str, config: ConsumerConfig, topic: &str) -> RecordingMember {
        let limit = config.max_poll_records;
        let mut consumer =
            GroupConsumer::subscribe(config, &[topic]).await.unwrap_or_else(|e| panic!("{name}: subscribe: {e}"));
        // The first receiver sees every event from the member's first one (the journal checks).
        let events = consumer.group_events();
        let journal = Arc::new(Mutex::new(Journal::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let observer = consumer.observer();
        let (journal_in, stop_in) = (journal.clone(), stop.clone());
        let consumer_task = tokio::spawn(async move {
            while !stop_in.load(Ordering::Relaxed) {
                match consumer.poll(limit, Duration::from_millis(200)).await {
                    Ok(Some(batch)) => {
                        lock(&journal_in)
                            .processed
                            .extend(batch.records.iter().map(|r| (r.partition(), r.offset(), r.value_bytes())));
                        match consumer.commit(&batch).await {
                            Ok(results) => lock(&journal_in).commits.extend(results),
                            Err(e) => lock(&journal_in).errors.push(format!("commit of {}: {e}", batch.partition)),
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        lock(&journal_in).errors.push(format!("poll: {e}"));
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
            consumer
        });
        let (stop_events, stopped) = oneshot::channel();
        let events_task = tokio::spawn(record_events(events, stopped, journal.clone()));
        RecordingMember {
            name: name.to_owned(),
            observer,
            journal,
            stop,
            consumer_task: Some(consumer_task),
            events_task: Some((stop_events, events_task)),
        }
    }

    pub fn observer(&self) -> &GroupObserver {
        &self.observer
    }

    pub fn journal(&self) -> MutexGuard<'_, Journal> {
        lock(&self.journal)
    }

    /// Stops polling, closes the consumer (LeaveGroup) and completes the journal.
    pub async fn close(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(task) = self.consumer_task.take() {
            match task.await {
                Ok(consumer) => {
                    if let Err(e) = consumer.close().await {
                        self.journal().errors.push(format!("close: {e}"));
                    }
                }
                Err(e) => self.journal().errors.push(format!("consumer task: {e}")),
            }
        }
        if let Some((stop, task)) = self.events_task.take() {
            let _ = stop.send(());
            let _ = task.await;
        }
    }
}

impl Drop for RecordingMember {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(task) = &self.consumer_task {
            task.abort();
        }
        if let Some((_, task)) = &self.events_task {
            task.abort();
        }
    }
}

/// Journals events until told to stop; events already sent when the stop comes are kept.
async fn record_events(
    mut events: broadcast::Receiver<GroupEventRecord>,
    mut stop: oneshot::Receiver<()>,
    journal: Arc<Mutex<Journal>>,
) {
    loop {
        tokio::select! {
            biased;
            received = events.recv() => match received {
                Ok(record) => {
                    let mut journal = lock(&journal);
                    if journal.events.is_empty()
                        && !matches!(record.event, GroupEvent::Coordinator { node_id: Some(_), .. })
                    {
                        journal.errors.push(format!("the first event seen was not the first one: {:?}", record.event));
                    }
                    journal.events.push(record.event);
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    lock(&journal).errors.push(format!("missed {n} group events"));
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = &mut stop => return,
        }
    }
}

/// Who was assigned what in each generation, from the members' own reports, and what broke the
/// rules: a partition assigned to two members in one generation, or a commit stamped with a
/// generation in which its member did not own the partition.
#[derive(Debug, Default)]
pub struct OwnershipAudit {
    owners: BTreeMap<(i32, i32), String>,
    by_member: BTreeMap<String, BTreeMap<i32, BTreeSet<i32>>>,
    pub violations: Vec<String>,
}

impl OwnershipAudit {
    /// A member's assignments: per generation, its partitions in that generation.
    pub fn assigned(&mut self, member: &str, assignments: &BTreeMap<i32, BTreeSet<i32>>) {
        self.by_member.entry(member.to_owned()).or_default().extend(assignments.clone());
        for (&generation, partitions) in assignments {
            for &partition in partitions {
                if let Some(other) = self.owners.insert((generation, partition), member.to_owned()) {
                    if other != member {
                        self.violations
                            .push(format!("partition {partition} assigned to {other} and {member} in {generation}"));
                    }
                }
            }
        }
    }

    /// A kgroup member's commits; call once every member's assignments are in.
    pub fn committed(&mut self, member: &str, journal: &Journal) {
        for (partition, offset, generation) in journal.committed() {
            match self.owners.get(&(generation, partition)) {
                Some(owner) if owner == member => {}
                None if self.released(member, generation, partition) => {}
                owner => self.violations.push(format!(
                    "{member} committed {partition}@{offset} in generation {generation}, assigned to {owner:?}"
                )),
            }
        }
    }

    /// KIP-429: a cooperative generation that takes a partition from its member gives it to
    /// nobody, so the work done on it may still be committed in that generation.
    fn released(&self, member: &str, generation: i32, partition: i32) -> bool {
        let Some(assignments) = self.by_member.get(member) else { return false };
        let owned_in = |g: i32| assignments.get(&g).is_some_and(|p| p.contains(&partition));
        assignments.contains_key(&generation) && !owned_in(generation) && owned_in(generation - 1)
    }
}

/// One member's part of a [`GroupView`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberView {
    /// The generation the member is in (`None`: none yet, or not Stable).
    pub generation: Option<i32>,
    pub partitions: BTreeSet<i32>,
}

/// The group as its members see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupView {
    pub members: BTreeMap<String, MemberView>,
    /// The kgroup member that leads, if one does.
    pub kgroup_leader: Option<String>,
    /// The coordinator each kgroup member is connected to.
    pub coordinators: BTreeSet<Option<i32>>,
}

impl GroupView {
    /// Every member in one generation, every partition of `0..partitions` owned by exactly one
    /// of them, and every kgroup member connected to the same coordinator.
    pub fn converged(&self, partitions: i32) -> bool {
        let generations: BTreeSet<Option<i32>> = self.members.values().map(|m| m.generation).collect();
        let owned: usize = self.members.values().map(|m| m.partitions.len()).sum();
        let union: BTreeSet<i32> = self.members.values().flat_map(|m| m.partitions.iter().copied()).collect();
        generations.len() == 1
            && !generations.contains(&None)
            && self.coordinators.len() <= 1
            && !self.coordinators.contains(&None)
            && owned == partitions as usize
            && union == (0..partitions).collect()
    }

    /// The one generation of a converged group.
    pub fn generation(&self) -> Option<i32> {
        self.members.values().find_map(|m| m.generation)
    }
}

/// A look at the group: the kgroup members' snapshots (a member that is not Stable counts as
/// being in no generation) and what `others` report for the members of other clients.
pub async fn look(kgroup: &[&RecordingMember], others: Vec<(String, MemberView)>) -> GroupView {
    let mut view = GroupView { members: BTreeMap::new(), kgroup_leader: None, coordinators: BTreeSet::new() };
    for member in kgroup {
        let snapshot = member.observer.group_state().await.unwrap_or_else(|e| panic!("{}: snapshot: {e}", member.name));
        let stable = snapshot.state == StateKind::Stable;
        let generation = snapshot.generation.as_ref().map(|g| g.id.0).filter(|_| stable);
        if snapshot.is_leader {
            view.kgroup_leader = Some(member.name.clone());
        }
        view.coordinators.insert(snapshot.coordinator);
        let partitions = snapshot.assignment.iter().map(|o| o.partition.partition).collect();
        view.members.insert(member.name.clone(), MemberView { generation, partitions });
    }
    view.members.extend(others);
    view
}

/// Waits (at most `limit`) until the group has converged and three looks in a row, 300 ms
/// apart, see the same picture; returns it. `others` reports the members of other clients.
pub async fn wait_for_convergence(
    kgroup: &[&RecordingMember],
    others: impl Fn() -> Vec<(String, MemberView)>,
    partitions: i32,
    limit: Duration,
) -> GroupView {
    let deadline = Instant::now() + limit;
    let mut last: Option<GroupView> = None;
    let mut same = 0;
    loop {
        let view = look(kgroup, others()).await;
        if view.converged(partitions) && last.as_ref() == Some(&view) {
            same += 1;
            if same == 2 {
                return view;
            }
        } else {
            same = 0;
        }
        assert!(Instant::now() < deadline, "the group did not converge within {limit:?}: {view:#?}");
        last = Some(view);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[cfg(test)]
mod tests {
    use kgroup::group::{GenerationId, TopicPartition};

    use super::*;

    fn committed(partition: i32, generation: i32) -> PartitionCommit {
        PartitionCommit {
            partition: TopicPartition::new("t", partition),
            offset: 10,
            outcome: CommitOutcome::Committed { generation: GenerationId(generation), restamped_from: None },
        }
    }

    fn assignments(entries: &[(i32, &[i32])]) -> BTreeMap<i32, BTreeSet<i32>> {
        entries.iter().map(|(g, p)| (*g, p.iter().copied().collect())).collect()
    }

    #[test]
    fn the_audit_flags_double_assignments_and_commits_outside_ownership() {
        let mut audit = OwnershipAudit::default();
        audit.assigned("a", &assignments(&[(1, &[0, 1]), (2, &[0])]));
        audit.assigned("b", &assignments(&[(2, &[1]), (3, &[0, 1])]));
        audit.assigned("c", &assignments(&[(3, &[1])]));
        assert_eq!(audit.violations, vec!["partition 1 assigned to b and c in 3"]);

        let journal = Journal {
            commits: vec![
                committed(0, 1),
                committed(0, 2),
                // Taken from `a` by generation 2 and given to `b`: not a's to commit.
                committed(1, 2),
                // Generation 3 exists only for b: 0 was not a's in it.
                committed(0, 3),
            ],
            ..Default::default()
        };
        audit.violations.clear();
        audit.committed("a", &journal);
        assert_eq!(audit.violations.len(), 2, "{:?}", audit.violations);
        assert!(audit.violations[0].starts_with("a committed 1@10 in generation 2, assigned to Some(\"b\")"));
        assert!(audit.violations[1].starts_with("a committed 0@10 in generation 3"));
    }

    #[test]
    fn a_partition_a_cooperative_generation_gives_to_nobody_may_be_committed_by_its_last_owner() {
        let mut audit = OwnershipAudit::default();
        audit.assigned("a", &assignments(&[(1, &[0, 1]), (2, &[0]), (3, &[0])]));
        audit.assigned("b", &assignments(&[(2, &[]), (3, &[1])]));
        audit.committed("a", &Journal { commits: vec![committed(1, 2)], ..Default::default() });
        assert!(audit.violations.is_empty(), "{:?}", audit.violations);
        audit.committed("a", &Journal { commits: vec![committed(1, 3)], ..Default::default() });
        assert_eq!(audit.violations.len(), 1, "generation 3 gave it to b");
    }
}
