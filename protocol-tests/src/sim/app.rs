//! The application on top of each simulated member: kgroup's own [`ConsumerSession`] (the code
//! `GroupConsumer` runs) over the member's machine, fed offset ranges by a log that always has
//! more, and an application that reads batches, processes them and commits them synchronously
//! (one batch at a time, or several accumulated across reads as in the seed report), or stores
//! them for auto-commit.

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::{Duration, Instant};

use kgroup::consumer::session::{ConsumerSession, LookupId, OffsetLog, SessionAction, SessionBatch, SessionConfig};
use kgroup::group::events::OffsetFetchId;
use kgroup::group::{
    CommitFailure, CommitId, CommitOutcome, FenceReason, GroupEvent, Lease, PartitionCommit, StateKind, TopicPartition,
};

use super::{Ev, RevokeStyle, Sim, SimConfig, Status};

/// Why the application committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitKind {
    /// After processing batches, synchronously.
    Batch,
    /// Stored offsets the session committed (auto-commit, or in a revoke window).
    Stored,
    /// Stored offsets committed before leaving.
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

#[derive(Debug, Clone)]
struct Outstanding {
    id: CommitId,
    kind: CommitKind,
    leases: Vec<Lease>,
    issued_in: StateKind,
    in_revoke_window: bool,
}

/// A batch read and being processed, with what was known committed of its partition when it
/// was read.
#[derive(Debug, Clone)]
struct Read {
    batch: SessionBatch<Range<i64>>,
    landed_when_read: i64,
}

#[derive(Debug)]
pub(super) struct App {
    session: ConsumerSession<Range<i64>>,
    log: OffsetLog,
    read: Vec<Read>,
    /// When the batches read are processed.
    done_at: Option<Instant>,
    /// The application asked for a batch and waits (a `poll` in progress).
    asking: bool,
    outstanding: Vec<Outstanding>,
    lookups: BTreeMap<OffsetFetchId, LookupId>,
    /// Leases of batches read again although the commit of their earlier reading had landed:
    /// legitimate only for a member out of the group that does not know it yet, whose commit
    /// of them is then refused.
    read_behind_a_landed_commit: Vec<Lease>,
    pub(super) leaving: bool,
    closed: bool,
    pub(super) token: u64,
    wake_at: Option<Instant>,
}

impl App {
    pub(super) fn new(cfg: &SimConfig, now: Instant) -> Self {
        let config = SessionConfig {
            // The machine's `max.poll.interval.ms` is its rebalance timeout.
            max_poll_interval: cfg.rebalance_timeout,
            rebalance_callback_timeout: match cfg.revoke_style {
                RevokeStyle::AfterBatch => cfg.revoke_timeout * 2 / 3,
                RevokeStyle::Immediate => Duration::ZERO,
            },
            auto_commit_interval: cfg.auto_commit,
            auto_offset_store: cfg.auto_commit.is_some(),
            listener: false,
            static_member: false,
            committed_offsets: true,
        };
        App {
            session: ConsumerSession::new(config, now),
            log: OffsetLog::new(cfg.batch_size),
            read: Vec::new(),
            done_at: None,
            asking: false,
            outstanding: Vec::new(),
            lookups: BTreeMap::new(),
            read_behind_a_landed_commit: Vec::new(),
            leaving: false,
            closed: false,
            token: 0,
            wake_at: None,
        }
    }

    /// The lease of an outstanding commit of `tp` at `offset`.
    pub(super) fn lease_for(&self, tp: &TopicPartition, offset: i64) -> Option<&Lease> {
        self.outstanding.iter().flat_map(|o| o.leases.iter()).find(|l| &l.partition == tp && l.next_offset == offset)
    }

    pub(super) fn summary(&self) -> String {
        format!(
            "assigned={} read={} processing={} asking={} outstanding={} window={} leaving={}",
            self.session.assignment().len(),
            self.read.len(),
            self.done_at.is_some(),
            self.asking,
            self.outstanding.len(),
            self.session.revoke_window_open(),
            self.leaving
        )
    }

    fn batch_commit_outstanding(&self) -> bool {
        self.outstanding.iter().any(|o| o.kind == CommitKind::Batch)
    }
}

impl Sim {
    pub(super) fn app_on_event(&mut self, i: usize, event: GroupEvent) {
        match event {
            GroupEvent::CommitCompleted { id, results } => self.app_commit_done(i, id, results),
            GroupEvent::CommittedOffsets { id, offsets } => {
                if let Some(lookup) = self.members[i].app.lookups.remove(&id) {
                    self.members[i].app.session.handle_lookup(lookup, Ok(offsets));
                }
            }
            GroupEvent::CommittedOffsetsFailed { id, failure } => {
                if let Some(lookup) = self.members[i].app.lookups.remove(&id) {
                    self.members[i].app.session.handle_lookup(lookup, Err(failure));
                }
            }
            GroupEvent::StaleResponse { .. } => {
                self.stats.stale_responses += 1;
                self.members[i].saw_stale = true;
            }
            GroupEvent::Fatal(error) => {
                let name = self.members[i].name.clone();
                self.violation(format!("{name} failed fatally: {error}"));
            }
            event => {
                match &event {
                    GroupEvent::RevokeRequested { .. } => self.stats.revokes += 1,
                    GroupEvent::Assigned { added, revoked, .. } => {
                        self.stats.assignments += 1;
                        // Kept by the machine's view, yet a new streak: an ownership gap.
                        self.stats.ownership_gaps += added.iter().filter(|tp| revoked.contains(tp)).count() as u64;
                    }
                    GroupEvent::Lost { .. } => self.stats.lost_events += 1,
                    GroupEvent::Left { .. } => self.stats.left_events += 1,
                    _ => {}
                }
                let left = matches!(event, GroupEvent::Left { .. });
                self.members[i].app.session.handle_group_event(event, self.now);
                if left && self.members[i].app.leaving {
                    self.members[i].status = Status::Left;
                    self.close_member_conn(i);
                }
            }
        }
        self.app_continue(i);
    }

    /// Carries out what the session asks of the member and the log.
    fn app_carry_out(&mut self, i: usize) {
        while let Some(action) = self.members[i].app.session.poll_action() {
            let name = self.members[i].name.clone();
            self.log(|| format!("{name} session {action:?}"));
            let m = &mut self.members[i];
            m.app.log.apply(&action);
            match action {
                SessionAction::LookUp { id, partitions } => {
                    let fetch = m.machine.fetch_committed(partitions, self.now);
                    m.app.lookups.insert(fetch, id);
                }
                SessionAction::Listener { call, .. } => m.app.session.listener_done(&call, self.now),
                SessionAction::Commit(leases) => {
                    let kind = if m.app.leaving { CommitKind::Leave } else { CommitKind::Stored };
                    self.app_commit(i, kind, leases);
                }
                SessionAction::RevokeDone => m.machine.revoke_done(self.now),
                SessionAction::RecordPoll => m.machine.record_poll(self.now),
                SessionAction::Fetch(_)
                | SessionAction::Pause(_)
                | SessionAction::Resume(_)
                | SessionAction::Seek(..)
                | SessionAction::Forget(_) => {}
            }
        }
    }

    fn app_commit_done(&mut self, i: usize, id: CommitId, results: Vec<PartitionCommit>) {
        let Some(idx) = self.members[i].app.outstanding.iter().position(|o| o.id == id) else {
            return;
        };
        let o = self.members[i].app.outstanding.remove(idx);
        for r in results {
            if let CommitOutcome::Failed { reason: CommitFailure::Rejected(code) } = &r.outcome {
                if matches!(code.0, 22 | 27 | 110 | 113) {
                    let name = self.members[i].name.clone();
                    self.violation(format!(
                        "{name}: commit of {}@{} reached the application as Failed({code}): ILLEGAL_GENERATION, \
                         REBALANCE_IN_PROGRESS, FENCED_MEMBER_EPOCH and STALE_MEMBER_EPOCH must be classified \
                         (fenced or retried)",
                        r.partition, r.offset
                    ));
                }
            }
            let committed = r.outcome.is_committed();
            match &r.outcome {
                CommitOutcome::Committed { restamped_from, .. } => {
                    self.check_not_committed_twice(i, &r, &o.leases);
                    self.stats.committed += 1;
                    if restamped_from.is_some() {
                        self.stats.restamped += 1;
                    }
                    let landed = self.landed.entry(r.partition.partition).or_insert(0);
                    *landed = (*landed).max(r.offset);
                }
                CommitOutcome::Fenced { reason, .. } => {
                    self.stats.fenced += 1;
                    if matches!(reason, FenceReason::RejectedByBroker(_)) {
                        self.stats.fenced_by_broker += 1;
                    }
                }
                CommitOutcome::Failed { reason: CommitFailure::WouldMoveBackwards { .. } }
                    if self.generation_contradicted =>
                {
                    self.stats.moved_back_after_contradiction += 1
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
            if self.cfg.trace {
                let lease = o.leases.iter().find(|l| l.partition == r.partition && l.next_offset == r.offset).cloned();
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
    }

    /// (g): records are read again only when the commit of their first reading did not land
    /// (fenced, failed, or never sent) before they were read again, or when the second reading
    /// is never committed (a member out of the group that does not know it yet).
    fn check_not_committed_twice(&mut self, i: usize, r: &PartitionCommit, leases: &[Lease]) {
        if self.generation_contradicted {
            return;
        }
        let Some(lease) = leases.iter().find(|l| l.partition == r.partition && l.next_offset == r.offset) else {
            return;
        };
        let twice = self.members[i].app.read_behind_a_landed_commit.iter().find(|again| {
            again.partition == lease.partition
                && again.owned_since == lease.owned_since
                && again.next_offset <= r.offset
        });
        if let Some(again) = twice {
            self.violation(format!(
                "{} committed {}@{} over records it read again (up to {}) although a commit of them had landed",
                self.members[i].name, r.partition, r.offset, again.next_offset
            ));
        }
    }

    /// Commits through the machine and tells the session, in the order `GroupConsumer` does.
    fn app_commit(&mut self, i: usize, kind: CommitKind, leases: Vec<Lease>) {
        self.stats.commits += 1;
        let m = &mut self.members[i];
        let issued_in = m.machine.state();
        let in_revoke_window = m.app.session.revoke_window_open() || issued_in == StateKind::Revoking;
        let id = m.machine.commit(leases.clone(), self.now);
        m.app.outstanding.push(Outstanding { id, kind, leases: leases.clone(), issued_in, in_revoke_window });
        if kind == CommitKind::Batch {
            m.app.session.committing(&leases, self.now);
        }
    }

    /// Does whatever the application can do now.
    pub(super) fn app_continue(&mut self, i: usize) {
        if self.members[i].status != Status::Live {
            return;
        }
        self.app_carry_out(i);
        if self.members[i].app.leaving {
            self.app_leave(i);
        } else {
            self.app_read(i);
        }
        self.app_carry_out(i);
        self.app_schedule_wake(i);
    }

    /// Once its batches are processed and committed, the application closes its session
    /// (committing stored offsets) and the member leaves.
    fn app_leave(&mut self, i: usize) {
        let app = &self.members[i].app;
        if app.done_at.is_some() || !app.read.is_empty() || app.batch_commit_outstanding() {
            return;
        }
        if !app.closed {
            self.members[i].app.session.close(self.now);
            let stored = self.members[i].app.session.take_stored(self.now);
            self.members[i].app.closed = true;
            if !stored.is_empty() && self.members[i].machine.current_generation().is_some() {
                self.app_commit(i, CommitKind::Leave, stored);
            }
        }
        let m = &mut self.members[i];
        if m.app.outstanding.is_empty() && !matches!(m.machine.state(), StateKind::Leaving | StateKind::Left) {
            m.machine.leave("simulated member leaves", self.now);
        }
    }

    /// Reads up to `reads_per_commit` batches (across partitions) and starts processing them.
    fn app_read(&mut self, i: usize) {
        let batch_size = usize::try_from(self.cfg.batch_size).expect("batch size fits");
        let batch_time = self.cfg.batch_time * self.members[i].slow_factor;
        let reads = self.cfg.reads_per_commit.max(1);
        let m = &mut self.members[i];
        if m.app.done_at.is_some() || m.app.batch_commit_outstanding() {
            return;
        }
        while m.app.read.len() < reads {
            if !m.app.asking {
                m.app.session.request_batch(self.now);
                m.app.asking = true;
            }
            let app = &mut m.app;
            let Some(batch) = app.session.take_batch(batch_size, &mut app.log) else { break };
            app.asking = false;
            app.session.wait_ended();
            let landed_when_read = self.landed.get(&batch.partition.partition).copied().unwrap_or(0);
            app.read.push(Read { batch, landed_when_read });
        }
        if !m.app.read.is_empty() {
            m.app.done_at = Some(self.now + batch_time * m.app.read.len() as u32);
        }
    }

    fn app_schedule_wake(&mut self, i: usize) {
        let app = &self.members[i].app;
        let Some(at) = [app.done_at, app.session.poll_timeout()].into_iter().flatten().min() else {
            return;
        };
        if app.wake_at == Some(at) {
            return;
        }
        let at = at.max(self.now);
        let app = &mut self.members[i].app;
        app.token += 1;
        app.wake_at = Some(at);
        let token = app.token;
        self.schedule(at, Ev::App { member: i, token });
    }

    pub(super) fn app_wake(&mut self, i: usize) {
        self.members[i].app.wake_at = None;
        self.members[i].app.session.handle_timeout(self.now);
        if self.members[i].app.done_at.is_some_and(|at| at <= self.now) {
            self.app_finish_batches(i);
        }
        self.app_continue(i);
    }

    /// The batches read are processed: into the ledger, then committed (or stored, under
    /// auto-commit, by the next read).
    fn app_finish_batches(&mut self, i: usize) {
        self.members[i].app.done_at = None;
        let read = std::mem::take(&mut self.members[i].app.read);
        let mut leases = Vec::new();
        for Read { batch, landed_when_read } in read {
            let partition = batch.partition.partition;
            let Range { start, end } = batch.records;
            self.stats.batches += 1;
            match self.ledger.record(partition, start, end) {
                Some(0) => {}
                Some(duplicates) => {
                    self.stats.duplicates += duplicates;
                    if end <= landed_when_read {
                        self.members[i].app.read_behind_a_landed_commit.push(batch.lease.clone());
                    }
                }
                None => self.violation(format!("batch {} [{start}, {end}) is not one aligned batch", batch.partition)),
            }
            leases.push(batch.lease);
        }
        if self.cfg.auto_commit.is_none() && !leases.is_empty() {
            self.app_commit(i, CommitKind::Batch, leases);
        }
    }
}
