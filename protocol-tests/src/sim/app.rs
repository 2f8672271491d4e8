//! The application on top of each simulated member: a consumer that processes batches of one
//! partition at a time and commits each synchronously, as in the seed report.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kgroup::group::events::OffsetFetchId;
use kgroup::group::{
    CommitFailure, CommitId, CommitOutcome, FenceReason, GenerationId, GroupEvent, Lease, OwnedPartition,
    PartitionCommit, TopicPartition,
};

use super::{Ev, RevokeStyle, Sim, Status};
use kgroup::group::StateKind;

/// Why the application committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitKind {
    /// After a processed batch.
    Batch,
    /// Progress committed by the revoke handler.
    Revoke,
    /// Progress committed before leaving.
    Leave,
}

/// One partition's commit outcome as the application saw it (kept when tracing).
#[derive(Debug, Clone, PartialEq)]
pub struct OutcomeRecord {
    pub at: Duration,
    pub member: usize,
    pub kind: CommitKind,
    /// The machine's state when the application called `commit`.
    pub issued_in: StateKind,
    /// A revoke window was open when it was issued.
    pub in_revoke_window: bool,
    pub lease: Lease,
    pub outcome: PartitionCommit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pos {
    NeedFetch,
    Fetching(OffsetFetchId),
    At(i64),
}

/// One partition the application owns, within one ownership streak (`since`).
#[derive(Debug, Clone)]
struct Part {
    pos: Pos,
    since: GenerationId,
    /// The highest offset known committed in this streak.
    committed: i64,
    /// The lease of the last batch processed in this streak.
    last_lease: Option<Lease>,
}

#[derive(Debug, Clone)]
struct Batch {
    lease: Lease,
    start: i64,
    done_at: Instant,
}

#[derive(Debug, Clone)]
struct Outstanding {
    id: CommitId,
    kind: CommitKind,
    leases: Vec<Lease>,
    issued_in: StateKind,
    in_revoke_window: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Revoke {
    Idle,
    /// RevokeRequested for this generation arrived; the handler runs once no batch or commit is
    /// in progress.
    Pending(GenerationId),
    /// The handler's commit is in flight.
    Committing(CommitId, GenerationId),
}

impl Revoke {
    fn generation(self) -> Option<GenerationId> {
        match self {
            Revoke::Idle => None,
            Revoke::Pending(generation) | Revoke::Committing(_, generation) => Some(generation),
        }
    }
}

#[derive(Debug, Clone)]
pub(super) struct App {
    parts: BTreeMap<TopicPartition, Part>,
    batch: Option<Batch>,
    outstanding: Vec<Outstanding>,
    revoke: Revoke,
    /// The generation of the latest assignment.
    assigned_in: Option<GenerationId>,
    /// No new batches until the next assignment (or, for a revoke window that follows its
    /// assignment, until the window is done).
    pub(super) paused: bool,
    pub(super) leaving: bool,
    cursor: usize,
    pub(super) token: u64,
    wake_at: Option<Instant>,
}

impl Default for App {
    fn default() -> Self {
        App {
            parts: BTreeMap::new(),
            batch: None,
            outstanding: Vec::new(),
            revoke: Revoke::Idle,
            assigned_in: None,
            paused: true,
            leaving: false,
            cursor: 0,
            token: 0,
            wake_at: None,
        }
    }
}

impl App {
    /// The lease of an outstanding commit of `tp` at `offset`.
    pub(super) fn lease_for(&self, tp: &TopicPartition, offset: i64) -> Option<&Lease> {
        self.outstanding.iter().flat_map(|o| o.leases.iter()).find(|l| &l.partition == tp && l.next_offset == offset)
    }

    pub(super) fn summary(&self) -> String {
        let positions = self.parts.values().filter(|p| matches!(p.pos, Pos::At(_))).count();
        format!(
            "parts={} positioned={positions} batch={} outstanding={} revoke={:?} paused={} leaving={}",
            self.parts.len(),
            self.batch.is_some(),
            self.outstanding.len(),
            self.revoke,
            self.paused,
            self.leaving
        )
    }

    /// Processed progress that no successful or outstanding commit covers, as leases.
    fn uncommitted(&self) -> Vec<Lease> {
        self.parts
            .iter()
            .filter_map(|(tp, p)| {
                let Pos::At(pos) = p.pos else {
                    return None;
                };
                let lease = p.last_lease.as_ref()?;
                let covered = self
                    .outstanding
                    .iter()
                    .flat_map(|o| o.leases.iter())
                    .filter(|l| &l.partition == tp)
                    .map(|l| l.next_offset)
                    .fold(p.committed, i64::max);
                (pos > covered).then(|| lease.at_offset(pos))
            })
            .collect()
    }

    fn batch_commit_outstanding(&self) -> bool {
        self.outstanding.iter().any(|o| o.kind == CommitKind::Batch)
    }
}

impl Sim {
    pub(super) fn app_on_event(&mut self, i: usize, event: GroupEvent) {
        match event {
            // Cooperative (KIP-429): nothing to revoke, the member keeps processing through the
            // rebalance and gives partitions up when `Assigned` leaves them out.
            GroupEvent::RevokeRequested { partitions, .. } if partitions.is_empty() => {
                self.stats.revokes += 1;
            }
            GroupEvent::RevokeRequested { generation, .. } => {
                self.stats.revokes += 1;
                let app = &mut self.members[i].app;
                app.paused = true;
                app.revoke = Revoke::Pending(generation);
            }
            GroupEvent::Assigned { generation, partitions, .. } => {
                self.stats.assignments += 1;
                self.app_assigned(i, generation.id, partitions);
            }
            GroupEvent::Lost { partitions, .. } => {
                self.stats.lost_events += 1;
                let app = &mut self.members[i].app;
                for tp in &partitions {
                    app.parts.remove(tp);
                }
                app.paused = true;
                app.revoke = Revoke::Idle;
            }
            GroupEvent::CommitCompleted { id, results } => self.app_commit_done(i, id, results),
            GroupEvent::CommittedOffsets { id, offsets } => {
                let app = &mut self.members[i].app;
                for (tp, offset) in offsets {
                    if let Some(p) = app.parts.get_mut(&tp).filter(|p| p.pos == Pos::Fetching(id)) {
                        let at = offset.unwrap_or(0);
                        p.pos = Pos::At(at);
                        p.committed = at;
                    }
                }
            }
            GroupEvent::CommittedOffsetsFailed { id, .. } => {
                for p in self.members[i].app.parts.values_mut() {
                    if p.pos == Pos::Fetching(id) {
                        p.pos = Pos::NeedFetch;
                    }
                }
            }
            GroupEvent::StaleResponse { .. } => {
                self.stats.stale_responses += 1;
                self.members[i].saw_stale = true;
            }
            GroupEvent::Left { .. } => {
                let m = &mut self.members[i];
                m.app.parts.clear();
                m.app.paused = true;
                m.app.revoke = Revoke::Idle;
                if m.app.leaving {
                    m.status = Status::Left;
                    self.close_member_conn(i);
                }
            }
            GroupEvent::Fatal(error) => {
                let name = self.members[i].name.clone();
                self.violation(format!("{name} failed fatally: {error}"));
            }
            _ => {}
        }
        self.app_continue(i);
    }

    fn app_assigned(&mut self, i: usize, generation: GenerationId, partitions: Vec<OwnedPartition>) {
        let app = &mut self.members[i].app;
        app.assigned_in = Some(generation);
        let new: BTreeMap<TopicPartition, GenerationId> =
            partitions.into_iter().map(|o| (o.partition, o.owned_since)).collect();
        // Positions survive only within one ownership streak; a new streak reads the
        // committed offset again.
        app.parts.retain(|tp, p| new.get(tp) == Some(&p.since));
        for (tp, since) in new {
            app.parts.entry(tp).or_insert(Part { pos: Pos::NeedFetch, since, committed: -1, last_lease: None });
        }
        // A cooperative SyncGroup (KIP-429) opens the revoke window of its own generation just
        // before the assignment: the window stays and the member resumes when it is done.
        if app.revoke.generation() != Some(generation) {
            app.revoke = Revoke::Idle;
        }
        app.paused = app.revoke != Revoke::Idle;
    }

    /// The revoke handler is done: the member may rejoin, and resumes at once when the window
    /// followed its assignment.
    fn app_revoke_done(&mut self, i: usize, generation: GenerationId) {
        let m = &mut self.members[i];
        m.app.revoke = Revoke::Idle;
        if m.app.assigned_in == Some(generation) {
            m.app.paused = false;
        }
        m.machine.revoke_done(self.now);
    }

    fn app_commit_done(&mut self, i: usize, id: CommitId, results: Vec<PartitionCommit>) {
        let Some(idx) = self.members[i].app.outstanding.iter().position(|o| o.id == id) else {
            return;
        };
        let o = self.members[i].app.outstanding.remove(idx);
        for r in results {
            if let CommitOutcome::Failed { reason: CommitFailure::Rejected(code) } = &r.outcome {
                if code.0 == 22 || code.0 == 27 {
                    let name = self.members[i].name.clone();
                    self.violation(format!(
                        "{name}: commit of {}@{} reached the application as Failed({code}): ILLEGAL_GENERATION and \
                         REBALANCE_IN_PROGRESS must be classified (fenced or retried)",
                        r.partition, r.offset
                    ));
                }
            }
            let committed = r.outcome.is_committed();
            match &r.outcome {
                CommitOutcome::Committed { restamped_from, .. } => {
                    self.stats.committed += 1;
                    if restamped_from.is_some() {
                        self.stats.restamped += 1;
                    }
                }
                CommitOutcome::Fenced { reason, .. } => {
                    self.stats.fenced += 1;
                    if matches!(reason, FenceReason::RejectedByBroker(_)) {
                        self.stats.fenced_by_broker += 1;
                    }
                }
                _ => self.stats.failed += 1,
            }
            if o.in_revoke_window {
                self.stats.revoke_window += 1;
                self.stats.revoke_window_committed += u64::from(committed);
            }
            if matches!(o.issued_in, StateKind::AwaitingJoin | StateKind::AwaitingSync) {
                self.stats.issued_while_joining += 1;
                self.stats.issued_while_joining_committed += u64::from(committed);
            }
            let lease = o.leases.iter().find(|l| l.partition == r.partition && l.next_offset == r.offset).cloned();
            if committed {
                if let (Some(p), Some(lease)) = (self.members[i].app.parts.get_mut(&r.partition), lease.as_ref()) {
                    if p.since == lease.owned_since {
                        p.committed = p.committed.max(r.offset);
                    }
                }
            }
            if self.cfg.trace {
                if let Some(lease) = lease {
                    self.outcomes.push(OutcomeRecord {
                        at: self.elapsed(),
                        member: i,
                        kind: o.kind,
                        issued_in: o.issued_in,
                        in_revoke_window: o.in_revoke_window,
                        lease,
                        outcome: r,
                    });
                }
            }
        }
        let app = &mut self.members[i].app;
        if let Revoke::Committing(committing, generation) = app.revoke {
            if o.kind == CommitKind::Revoke && committing == id {
                self.app_revoke_done(i, generation);
            }
        }
    }

    fn app_commit(&mut self, i: usize, kind: CommitKind, leases: Vec<Lease>) -> CommitId {
        self.stats.commits += 1;
        let m = &mut self.members[i];
        let issued_in = m.machine.state();
        let in_revoke_window = m.app.revoke != Revoke::Idle || m.machine.state() == StateKind::Revoking;
        let id = m.machine.commit(leases.clone(), self.now);
        m.app.outstanding.push(Outstanding { id, kind, leases, issued_in, in_revoke_window });
        id
    }

    /// Does whatever the application can do now.
    pub(super) fn app_continue(&mut self, i: usize) {
        if self.members[i].status != Status::Live {
            return;
        }
        let app = &self.members[i].app;
        let busy = app.batch.is_some() || !app.outstanding.is_empty();
        if app.leaving {
            if !busy && !matches!(self.members[i].machine.state(), StateKind::Leaving | StateKind::Left) {
                let leases = if self.members[i].machine.current_generation().is_some() {
                    self.members[i].app.uncommitted()
                } else {
                    Vec::new()
                };
                if leases.is_empty() {
                    self.members[i].machine.leave("simulated member leaves", self.now);
                } else {
                    self.app_commit(i, CommitKind::Leave, leases);
                }
            }
            return;
        }
        let style = self.cfg.revoke_style;
        if let (Revoke::Pending(generation), true) = (app.revoke, style == RevokeStyle::Immediate || !busy) {
            let leases = if style == RevokeStyle::Immediate { Vec::new() } else { app.uncommitted() };
            if leases.is_empty() {
                self.app_revoke_done(i, generation);
            } else {
                let id = self.app_commit(i, CommitKind::Revoke, leases);
                self.members[i].app.revoke = Revoke::Committing(id, generation);
            }
        }
        let m = &mut self.members[i];
        if !matches!(m.machine.state(), StateKind::Failed | StateKind::Left | StateKind::Leaving) {
            let need: Vec<TopicPartition> =
                m.app.parts.iter().filter(|(_, p)| p.pos == Pos::NeedFetch).map(|(tp, _)| tp.clone()).collect();
            if !need.is_empty() {
                let id = m.machine.fetch_committed(need.clone(), self.now);
                for tp in need {
                    if let Some(p) = m.app.parts.get_mut(&tp) {
                        p.pos = Pos::Fetching(id);
                    }
                }
            }
        }
        self.app_try_start(i);
        self.app_ensure_wake(i);
    }

    fn app_try_start(&mut self, i: usize) {
        let batch_size = self.cfg.batch_size;
        let batch_time = self.cfg.batch_time * self.members[i].slow_factor;
        let m = &mut self.members[i];
        let app = &mut m.app;
        if app.batch.is_some() || app.paused || app.leaving || app.batch_commit_outstanding() {
            return;
        }
        let candidates: Vec<(TopicPartition, i64)> = app
            .parts
            .iter()
            .filter_map(|(tp, p)| match p.pos {
                Pos::At(pos) => Some((tp.clone(), pos)),
                _ => None,
            })
            .collect();
        if candidates.is_empty() {
            return;
        }
        let (tp, pos) = candidates[app.cursor % candidates.len()].clone();
        app.cursor = app.cursor.wrapping_add(1);
        // The lease is taken when the batch is fetched: its generation is the one the records
        // were read under, whatever happens while they are processed.
        let Some(lease) = m.machine.lease(&tp, pos + batch_size) else {
            return;
        };
        m.machine.record_poll(self.now);
        let done_at = self.now + batch_time;
        m.app.batch = Some(Batch { lease, start: pos, done_at });
        self.app_schedule_wake(i, done_at);
    }

    fn app_schedule_wake(&mut self, i: usize, at: Instant) {
        let app = &mut self.members[i].app;
        app.token += 1;
        app.wake_at = Some(at);
        let token = app.token;
        self.schedule(at, Ev::App { member: i, token });
    }

    /// An application without a batch in progress still polls now and then.
    fn app_ensure_wake(&mut self, i: usize) {
        let app = &self.members[i].app;
        if app.batch.is_none() && app.wake_at.is_none_or(|at| at <= self.now) {
            let at = self.now + self.cfg.idle_poll;
            self.app_schedule_wake(i, at);
        }
    }

    pub(super) fn app_wake(&mut self, i: usize) {
        self.members[i].app.wake_at = None;
        let done = self.members[i].app.batch.as_ref().is_some_and(|b| b.done_at <= self.now);
        if done {
            self.app_finish_batch(i);
        } else {
            self.members[i].machine.record_poll(self.now);
        }
        self.app_continue(i);
    }

    fn app_finish_batch(&mut self, i: usize) {
        let Some(batch) = self.members[i].app.batch.take() else {
            return;
        };
        let tp = batch.lease.partition.clone();
        let end = batch.lease.next_offset;
        self.stats.batches += 1;
        match self.ledger.record(tp.partition, batch.start, end) {
            Some(duplicates) => self.stats.duplicates += duplicates,
            None => self.violation(format!("batch {tp} [{}, {end}) is not one aligned batch", batch.start)),
        }
        if let Some(p) = self.members[i].app.parts.get_mut(&tp) {
            if p.pos == Pos::At(batch.start) && p.since == batch.lease.owned_since {
                p.pos = Pos::At(end);
                p.last_lease = Some(batch.lease.clone());
            }
        }
        self.app_commit(i, CommitKind::Batch, vec![batch.lease]);
    }
}
