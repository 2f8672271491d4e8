//! The consumer's choreography without IO: [`ConsumerSession`].
//!
//! It owns what the application has been told it owns, the records fetched and not yet handed
//! out, every lease handed out and not yet settled (committed, stored or given back), the revoke
//! window and the assignment that waits for it, stored offsets, auto-commit and the
//! `max.poll.interval.ms` keepalive. It takes group events, fetched records and the
//! application's calls, mints every lease in one place, and emits [`SessionAction`]s. Time is
//! passed in. The tokio task behind [`super::GroupConsumer`] pumps it, and the simulator
//! drives the same session, with record ranges instead of records.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

pub use crate::driver::fetcher::StartPosition;
use crate::error::Error;
use crate::group::{Generation, GenerationId, GroupEvent, Lease, LeaveReason, OffsetLookupFailure, TopicPartition};

mod offset_log;
pub use offset_log::OffsetLog;

/// Consecutive records of one partition, as the session buffers and hands them out. The
/// consumer uses the fetched records themselves; the simulator uses offset ranges.
pub trait RecordRun: Sized {
    /// How many records.
    fn len(&self) -> usize;
    /// Whether there are none.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The offset of the first record.
    fn first_offset(&self) -> Option<i64>;
    /// The offset after the last record: what a commit of these records stores.
    fn end_offset(&self) -> Option<i64>;
    /// Takes the first `n` records (all when there are fewer).
    fn split_front(&mut self, n: usize) -> Self;
    /// Adds records fetched after these.
    fn append(&mut self, later: Self);
    /// Puts records back in front of these.
    fn prepend(&mut self, earlier: Self);
}

/// Records fetched and ready, taken without waiting: lets a batch hold everything fetched for
/// its partition, up to the caller's limit, instead of one fetch response's worth.
pub trait RecordSource<R> {
    /// The next records buffered for `partition`, if any: about `max_records` (a source that
    /// decodes whole batches may give a few more, or fewer).
    fn try_next_records(&mut self, partition: &TopicPartition, max_records: usize) -> Option<R>;
}

/// What the session needs to know of the consumer's configuration.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// `max.poll.interval.ms`: while the application waits for a batch it is polling, and the
    /// member is told so every half interval.
    pub max_poll_interval: Duration,
    /// How long a revoke window waits for the leases on revoked partitions, listener included.
    pub rebalance_callback_timeout: Duration,
    /// `auto.commit.interval.ms` when `enable.auto.commit` is on.
    pub auto_commit_interval: Option<Duration>,
    /// `enable.auto.offset.store`: asking for the next batch stores the previous one.
    pub auto_offset_store: bool,
    /// The application has a rebalance listener to call.
    pub listener: bool,
    /// A static member (KIP-345) keeps its partitions when it closes: no `revoked` call.
    pub static_member: bool,
    /// A partition new to the consumer starts from its committed offset (looked up), else from
    /// `auto.offset.reset`. Off for a consumer without `group.id`: it has no committed offsets.
    pub committed_offsets: bool,
}

/// A rebalance listener call the pump runs (one at a time, in order) and reports back with
/// [`ConsumerSession::listener_done`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenerCall {
    /// `RebalanceListener::assigned` with the partitions added.
    Assigned(Vec<TopicPartition>),
    /// `RebalanceListener::revoked` with the partitions given up.
    Revoked(Vec<TopicPartition>),
    /// `RebalanceListener::lost` with the partitions lost.
    Lost(Vec<TopicPartition>),
}

/// A lookup's answer: the committed offsets (`None`: nothing committed), or why they are unknown.
pub type LookupAnswer = Result<Vec<(TopicPartition, Option<i64>)>, OffsetLookupFailure>;

/// Identifies one committed-offset lookup the session asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct LookupId(pub u64);

/// What the session asks its pump to do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionAction {
    /// Fetch these partitions from these positions.
    Fetch(Vec<(TopicPartition, StartPosition)>),
    /// Stop fetching these partitions; what is buffered stays.
    Pause(Vec<TopicPartition>),
    /// Fetch these paused partitions again.
    Resume(Vec<TopicPartition>),
    /// Move a partition's fetch position, dropping what is buffered.
    Seek(TopicPartition, StartPosition),
    /// Stop fetching these partitions and drop what is buffered.
    Forget(Vec<TopicPartition>),
    /// Look up committed offsets; answer with [`ConsumerSession::handle_lookup`].
    LookUp {
        /// Names the lookup in the answer.
        id: LookupId,
        /// The partitions to look up.
        partitions: Vec<TopicPartition>,
    },
    /// Run a listener callback, at most until `deadline`.
    Listener {
        /// The callback and its partitions.
        call: ListenerCall,
        /// When the pump stops waiting for it.
        deadline: Instant,
    },
    /// Commit these stored offsets (auto-commit, or the revoke window's commit).
    Commit(Vec<Lease>),
    /// The revoke window is done: the member may rejoin. Sent after the window's commits.
    RevokeDone,
    /// The application is polling (`max.poll.interval.ms`).
    RecordPoll,
}

/// Records of one partition handed out together, with the lease to commit them by.
#[derive(Debug, Clone)]
pub struct SessionBatch<R> {
    /// The partition.
    pub partition: TopicPartition,
    /// The records, in offset order.
    pub records: R,
    /// What a commit of these records is judged by.
    pub lease: Lease,
    /// The partition's incarnation when the batch was made: a batch given back after a seek or
    /// a reassignment is not put in front of records that are no longer after it.
    pub incarnation: u64,
}

/// The ownership streak a partition's records were fetched in: the lease of those records
/// carries it, whatever happened to the partition since.
#[derive(Debug, Clone, PartialEq)]
struct Streak {
    generation: Generation,
    owned_since: GenerationId,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// Waiting for the committed offset: a partition is fetched only from a known committed
    /// offset (or `auto.offset.reset` when none is committed), never on a failed lookup.
    LookingUp(LookupId),
    Fetching,
    /// The lookup was refused (an authorization error): not fetched until sought.
    Refused,
}

/// One partition the application owns, within one ownership streak.
#[derive(Debug)]
struct Part<R> {
    streak: Streak,
    start: Start,
    /// Paused by the application.
    paused: bool,
    /// In a revoke window: nothing of it is handed out until the assignment says it is kept.
    revoking: bool,
    /// Fetched and not handed out, with the streak they were fetched in.
    pending: Option<(Streak, R)>,
    incarnation: u64,
    /// The first offset handed out in this streak, and the end of the latest batch.
    first_handed_out: Option<i64>,
    handed_out: Option<i64>,
    /// The highest offset committed (as issued) or stored in this streak.
    settled: Option<i64>,
}

impl<R> Part<R> {
    /// A lease handed out on this partition is neither committed nor stored.
    fn has_outstanding_lease(&self) -> bool {
        self.handed_out.is_some() && self.handed_out > self.settled
    }

    fn settle(&mut self, lease: &Lease) {
        if lease.owned_since == self.streak.owned_since {
            self.settled = self.settled.max(Some(lease.next_offset));
        }
    }

    fn fetchable(&self) -> bool {
        self.start == Start::Fetching && !self.paused && !self.revoking
    }
}

/// The revoke window: opened by `RevokeRequested`, run once no lease on a revoked partition is
/// outstanding (or its deadline passed).
#[derive(Debug)]
struct RevokeWindow {
    partitions: Vec<TopicPartition>,
    deadline: Instant,
    /// The application asked for a batch since the window opened: the listener's `revoked`
    /// runs then at the latest (Java calls it inside `poll`).
    polled: bool,
    /// The listener's `revoked` runs; the window ends when it returns.
    listening: bool,
}

/// A `GroupEvent::Assigned`, applied once the revoke window before it has run.
#[derive(Debug)]
struct Assignment {
    generation: Generation,
    partitions: Vec<(TopicPartition, GenerationId)>,
    revoked: Vec<TopicPartition>,
}

/// See the module documentation.
#[derive(Debug)]
pub struct ConsumerSession<R> {
    config: SessionConfig,
    parts: BTreeMap<TopicPartition, Part<R>>,
    window: Option<RevokeWindow>,
    /// A cooperative SyncGroup (KIP-429) announces the revocation and the new assignment
    /// together; the window runs first, as in Java.
    assignment_after_window: Option<Assignment>,
    stored: BTreeMap<TopicPartition, Lease>,
    /// The last batch handed out: with `enable.auto.offset.store`, asking for the next one
    /// stores it (Java's `poll()` rule).
    holding: Option<Lease>,
    /// The application waits for a batch.
    waiting: bool,
    poll_keepalive: Option<Instant>,
    next_auto_commit: Option<Instant>,
    errors: VecDeque<Error>,
    actions: VecDeque<SessionAction>,
    next_lookup: u64,
    next_incarnation: u64,
    /// Where the round-robin over partitions goes on.
    cursor: Option<TopicPartition>,
    /// Listener calls asked for and not yet done: no batch is handed out meanwhile (Java calls
    /// them inside `poll()`, before it returns records; `assigned` may seek).
    listener_calls_due: usize,
    /// Partitions the listener was told were revoked since the last assignment. An eager
    /// rebalance revokes everything, so those the member keeps are announced again in
    /// `assigned`; a cooperative one revokes only what moves, and `assigned` gets only what is
    /// added (Java's and librdkafka's contract).
    told_revoked: BTreeSet<TopicPartition>,
}

impl<R: RecordRun> ConsumerSession<R> {
    /// A session that owns nothing yet; `now` starts the auto-commit clock.
    pub fn new(config: SessionConfig, now: Instant) -> Self {
        ConsumerSession {
            next_auto_commit: config.auto_commit_interval.map(|interval| now + interval),
            config,
            parts: BTreeMap::new(),
            window: None,
            assignment_after_window: None,
            stored: BTreeMap::new(),
            holding: None,
            waiting: false,
            poll_keepalive: None,
            errors: VecDeque::new(),
            actions: VecDeque::new(),
            next_lookup: 0,
            next_incarnation: 0,
            cursor: None,
            listener_calls_due: 0,
            told_revoked: BTreeSet::new(),
        }
    }

    /// The next thing for the pump to do, in order.
    pub fn poll_action(&mut self) -> Option<SessionAction> {
        self.actions.pop_front()
    }

    /// The next instant [`handle_timeout`](Self::handle_timeout) has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let window = self.window.as_ref().filter(|w| !w.listening).map(|w| w.deadline);
        let keepalive = self.poll_keepalive.filter(|_| self.waiting);
        [window, keepalive, self.next_auto_commit].into_iter().flatten().min()
    }

    /// Runs what is due at `now`: the polling keepalive, auto-commit, the revoke window's
    /// deadline.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.waiting && self.poll_keepalive.is_some_and(|at| at <= now) {
            self.actions.push_back(SessionAction::RecordPoll);
            self.poll_keepalive = Some(now + self.config.max_poll_interval / 2);
        }
        if let (Some(at), Some(interval)) = (self.next_auto_commit, self.config.auto_commit_interval) {
            if at <= now {
                self.next_auto_commit = Some(now + interval);
                self.commit_stored(now);
            }
        }
        self.try_run_window(now);
    }

    /// The partitions owned now, as the application has seen them assigned.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.parts.keys().cloned().collect()
    }

    /// The offset of the next record buffered here for `partition`.
    pub fn pending_position(&self, partition: &TopicPartition) -> Option<i64> {
        self.parts.get(partition)?.pending.as_ref()?.1.first_offset()
    }

    /// A revoke window is open (its listener call included).
    pub fn revoke_window_open(&self) -> bool {
        self.window.is_some()
    }

    /// Whether the partition's lease on handed-out records is neither committed nor stored.
    pub fn has_outstanding_lease(&self, partition: &TopicPartition) -> bool {
        self.parts.get(partition).is_some_and(Part::has_outstanding_lease)
    }

    /// Takes in what the group member reports: a revoke window opens, an assignment or a loss
    /// applies, a fatal error or a max.poll leave becomes the application's error.
    pub fn handle_group_event(&mut self, event: GroupEvent, now: Instant) {
        match event {
            GroupEvent::RevokeRequested { partitions, .. } => self.open_window(partitions, now),
            GroupEvent::Assigned { generation, partitions, revoked, .. } => {
                let partitions = partitions.into_iter().map(|p| (p.partition, p.owned_since)).collect();
                let assignment = Assignment { generation, partitions, revoked };
                if self.window.is_some() {
                    // The member went on without the window (its deadline passed): apply the
                    // earlier assignment first, so each one's revoked partitions apply in turn.
                    if let Some(earlier) = self.assignment_after_window.replace(assignment) {
                        self.assign(earlier, now);
                    }
                } else {
                    self.assign(assignment, now);
                }
            }
            GroupEvent::Lost { partitions, reason } => {
                tracing::warn!(%reason, partitions = partitions.len(), "partitions lost");
                // The member is no longer in the generation the window belonged to.
                self.window = None;
                if let Some(assignment) = self.assignment_after_window.take() {
                    self.forget(&assignment.revoked);
                }
                self.forget(&partitions);
                self.call_listener(ListenerCall::Lost(partitions), now);
            }
            GroupEvent::Left { reason } => {
                self.window = None;
                self.assignment_after_window = None;
                let owned = self.assignment();
                self.forget(&owned);
                // The group moved on without this member and no revoke window ran: lost.
                self.call_listener(ListenerCall::Lost(owned), now);
                if reason == LeaveReason::MaxPollIntervalExceeded {
                    self.errors.push_back(Error::MaxPollIntervalExceeded { interval: self.config.max_poll_interval });
                }
            }
            GroupEvent::Fatal(error) => self.errors.push_back(Error::Group(error)),
            _ => {}
        }
    }

    /// The application assigns these partitions itself (Java's `assign`), replacing what it
    /// owned: a partition kept keeps its position and buffered records, one no longer named is
    /// forgotten, a new one starts from its committed offset (else `auto.offset.reset`). There
    /// is no generation: leases carry [`Generation::none`].
    pub fn assign_manually(&mut self, partitions: Vec<TopicPartition>, now: Instant) {
        let partitions: BTreeSet<TopicPartition> = partitions.into_iter().collect();
        let partitions = partitions.into_iter().map(|tp| (tp, GenerationId::NONE)).collect();
        self.assign(Assignment { generation: Generation::none(), partitions, revoked: Vec::new() }, now);
    }

    /// Records fetched for `partition`; dropped unless it is owned and fetched.
    pub fn handle_records(&mut self, partition: &TopicPartition, records: R) {
        if let Some(part) = self.parts.get_mut(partition).filter(|p| p.start == Start::Fetching) {
            push_pending(part, records);
        }
    }

    /// An error for the application's next request (a partition the fetcher stopped, or an
    /// error the application was not there to receive).
    pub fn report(&mut self, error: Error) {
        self.errors.push_back(error);
    }

    /// A lookup's answer, for the partitions it still starts (not reassigned or sought since).
    /// A failed lookup is never "nothing committed": a retriable failure asks again for as long
    /// as the partitions stay assigned (as Java does), and a refusal reaches the application.
    pub fn handle_lookup(&mut self, id: LookupId, answer: LookupAnswer) {
        let starting: Vec<TopicPartition> =
            self.parts.iter().filter(|(_, p)| p.start == Start::LookingUp(id)).map(|(tp, _)| tp.clone()).collect();
        if starting.is_empty() {
            return;
        }
        match answer {
            Ok(committed) => {
                let starts = committed
                    .into_iter()
                    .filter(|(tp, _)| starting.contains(tp))
                    .map(|(tp, offset)| (tp, offset.map_or(StartPosition::Reset, StartPosition::Offset)))
                    .collect();
                self.start_fetching(starts);
            }
            Err(failure) if failure.is_retriable() => {
                tracing::warn!(%failure, partitions = starting.len(), "committed offsets still unknown; asking again");
                self.look_up(starting);
            }
            Err(failure @ OffsetLookupFailure::Rejected { .. }) => {
                tracing::error!(%failure, partitions = ?starting, "committed offsets cannot be looked up; not fetching");
                for tp in &starting {
                    if let Some(part) = self.parts.get_mut(tp) {
                        part.start = Start::Refused;
                    }
                }
                self.errors.push_back(Error::OffsetLookup(failure));
            }
            // The member stopped: its fatal error reaches the application.
            Err(failure) => tracing::debug!(%failure, "offset lookup ended with the member"),
        }
    }

    /// A listener call the session asked for returned (or ran out of time).
    pub fn listener_done(&mut self, call: &ListenerCall, now: Instant) {
        self.listener_calls_due = self.listener_calls_due.saturating_sub(1);
        if matches!(call, ListenerCall::Revoked(_)) && self.window.as_ref().is_some_and(|w| w.listening) {
            self.finish_window(now);
        }
    }

    /// The application asks for a batch. With `enable.auto.offset.store` the batch handed out
    /// before counts as processed and is stored (Java's `poll()`).
    pub fn request_batch(&mut self, now: Instant) {
        if let Some(lease) = self.holding.take() {
            if self.config.auto_offset_store {
                self.store(lease, now);
            }
        }
        self.waiting = true;
        self.actions.push_back(SessionAction::RecordPoll);
        self.poll_keepalive = Some(now + self.config.max_poll_interval / 2);
        if let Some(window) = self.window.as_mut() {
            window.polled = true;
            self.try_run_window(now);
        }
    }

    /// The application stopped waiting (its batch was handed over, or it gave up).
    pub fn wait_ended(&mut self) {
        self.waiting = false;
    }

    /// An error for the application, if one is waiting for it.
    pub fn take_error(&mut self) -> Option<Error> {
        self.errors.pop_front()
    }

    /// Up to `limit` records of one partition the application may have now, with their lease,
    /// going round the partitions. None of a paused, revoked or still starting partition.
    pub fn take_batch(&mut self, limit: usize, source: &mut impl RecordSource<R>) -> Option<SessionBatch<R>> {
        if self.listener_calls_due > 0 {
            return None;
        }
        let limit = limit.max(1);
        let order: Vec<TopicPartition> = {
            let after = self.cursor.as_ref();
            let (later, first): (Vec<_>, Vec<_>) = self
                .parts
                .iter()
                .filter(|(_, p)| p.fetchable())
                .map(|(tp, _)| tp)
                .partition(|tp| after.is_some_and(|c| *tp > c));
            later.into_iter().chain(first).cloned().collect()
        };
        let buffered = order.iter().find(|tp| self.parts[*tp].pending.is_some()).cloned();
        let tp = buffered.or_else(|| {
            order.into_iter().find(|tp| match source.try_next_records(tp, limit) {
                Some(records) => self.parts.get_mut(tp).map(|part| push_pending(part, records)).is_some(),
                None => false,
            })
        })?;
        let part = self.parts.get_mut(&tp)?;
        while let Some(wanted) = part.pending.as_ref().map(|(_, r)| limit.saturating_sub(r.len())).filter(|&n| n > 0) {
            let Some(more) = source.try_next_records(&tp, wanted) else { break };
            push_pending(part, more);
        }
        let (streak, pending) = part.pending.as_mut()?;
        let records = pending.split_front(limit);
        let streak = streak.clone();
        if pending.is_empty() {
            part.pending = None;
        }
        let next_offset = records.end_offset()?;
        let lease = Lease {
            partition: tp.clone(),
            next_offset,
            generation: streak.generation,
            owned_since: streak.owned_since,
        };
        part.first_handed_out = part.first_handed_out.or(records.first_offset());
        part.handed_out = part.handed_out.max(Some(next_offset));
        self.holding = Some(lease.clone());
        self.cursor = Some(tp.clone());
        Some(SessionBatch { partition: tp, records, lease, incarnation: part.incarnation })
    }

    /// A batch that never reached the application: its records go back in front, unless the
    /// partition was sought or reassigned since (then they are not next).
    pub fn give_back(&mut self, batch: SessionBatch<R>, now: Instant) {
        if self.holding.as_ref() == Some(&batch.lease) {
            self.holding = None;
        }
        let Some(part) = self.parts.get_mut(&batch.partition).filter(|p| p.incarnation == batch.incarnation) else {
            return;
        };
        if part.handed_out == Some(batch.lease.next_offset) {
            // Handed out up to the batch's first record (nothing, if it was the first batch).
            part.handed_out = batch.records.first_offset().filter(|first| Some(*first) != part.first_handed_out);
            if part.handed_out.is_none() {
                part.first_handed_out = None;
            }
        }
        let streak = Streak { generation: batch.lease.generation, owned_since: batch.lease.owned_since };
        match part.pending.as_mut() {
            Some((_, pending)) => pending.prepend(batch.records),
            None => part.pending = Some((streak, batch.records)),
        }
        self.try_run_window(now);
    }

    /// The application committed these leases (the commit is with the member, ahead of any
    /// later `RevokeDone`): they are no longer outstanding.
    pub fn committing(&mut self, leases: &[Lease], now: Instant) {
        for lease in leases {
            if let Some(part) = self.parts.get_mut(&lease.partition) {
                part.settle(lease);
            }
        }
        self.try_run_window(now);
    }

    /// Stores a processed lease for the next auto-commit (or [`take_stored`](Self::take_stored));
    /// a lower offset does not replace a higher one. Under auto-commit a stored lease is
    /// settled (a revoke window commits it before the member rejoins); otherwise it stays
    /// outstanding until the application commits it or the stored offsets.
    pub fn store(&mut self, lease: Lease, now: Instant) {
        // A lease of another ownership streak would be fenced (OwnershipInterrupted): the
        // records after it may have been processed by the interim owner.
        let Some(part) = self.parts.get_mut(&lease.partition).filter(|p| p.streak.owned_since == lease.owned_since)
        else {
            tracing::debug!(partition = %lease.partition, "a lease of a partition not owned in its streak is not stored");
            return;
        };
        if self.config.auto_commit_interval.is_some() {
            part.settle(&lease);
        }
        let keep = self.stored.get(&lease.partition).is_some_and(|s| s.next_offset > lease.next_offset);
        if !keep {
            self.stored.insert(lease.partition.clone(), lease);
        }
        self.try_run_window(now);
    }

    /// The stored offsets, taken to be committed now (so they are settled).
    pub fn take_stored(&mut self, now: Instant) -> Vec<Lease> {
        let leases: Vec<Lease> = std::mem::take(&mut self.stored).into_values().collect();
        self.committing(&leases, now);
        leases
    }

    /// Moves the position of an owned partition (to an offset, or the log start or end, looked
    /// up when it is next fetched). Records buffered for it are dropped and leases on it are
    /// released: the application says where it goes on.
    pub fn seek(&mut self, partition: &TopicPartition, to: StartPosition, now: Instant) {
        let incarnation = self.new_incarnation();
        let Some(part) = self.parts.get_mut(partition) else { return };
        part.pending = None;
        part.incarnation = incarnation;
        part.handed_out = part.settled;
        match part.start {
            Start::Fetching => self.actions.push_back(SessionAction::Seek(partition.clone(), to)),
            // The application says where it starts: its lookup no longer matters.
            Start::LookingUp(_) | Start::Refused => self.start_fetching(vec![(partition.clone(), to)]),
        }
        self.try_run_window(now);
    }

    /// Pauses owned partitions: nothing of them is fetched or handed out until resumed.
    pub fn pause(&mut self, partitions: &[TopicPartition]) {
        let paused: Vec<TopicPartition> = partitions
            .iter()
            .filter(|tp| self.parts.get_mut(*tp).map(|part| part.paused = true).is_some())
            .cloned()
            .collect();
        if !paused.is_empty() {
            self.actions.push_back(SessionAction::Pause(paused));
        }
    }

    /// Resumes paused partitions; one in a revoke window stays paused until the assignment.
    pub fn resume(&mut self, partitions: &[TopicPartition]) {
        let resumed: Vec<TopicPartition> = partitions
            .iter()
            .filter(|tp| match self.parts.get_mut(*tp) {
                Some(part) => {
                    part.paused = false;
                    !part.revoking
                }
                None => false,
            })
            .cloned()
            .collect();
        if !resumed.is_empty() {
            self.actions.push_back(SessionAction::Resume(resumed));
        }
    }

    /// The consumer closes: the batch the application holds counts as processed under
    /// `enable.auto.offset.store`, and a dynamic member's partitions are revoked (the
    /// listener's `revoked` before the LeaveGroup, as Java's `onLeavePrepare`; a static member
    /// keeps them, KIP-345). Once the listener calls ran (they may commit the stored offsets),
    /// [`take_stored`](Self::take_stored) gives what is left to commit before leaving.
    pub fn close(&mut self, now: Instant) {
        if let Some(lease) = self.holding.take() {
            if self.config.auto_offset_store {
                self.store(lease, now);
            }
        }
        if !self.config.static_member {
            let owned = self.assignment();
            self.call_listener(ListenerCall::Revoked(owned), now);
        }
    }

    fn open_window(&mut self, partitions: Vec<TopicPartition>, now: Instant) {
        let deadline = now + self.config.rebalance_callback_timeout;
        let mut paused = Vec::new();
        for tp in &partitions {
            if let Some(part) = self.parts.get_mut(tp) {
                part.revoking = true;
                paused.push(tp.clone());
            }
        }
        if !paused.is_empty() {
            self.actions.push_back(SessionAction::Pause(paused));
        }
        self.window = Some(RevokeWindow { partitions, deadline, polled: false, listening: false });
        self.try_run_window(now);
    }

    /// Runs the window once no lease on a revoked partition is outstanding, so their commits go
    /// out stamped with the generation that still owns them (KIP-429 gives a cooperatively
    /// revoked partition to nobody in the next generation), or once its deadline passed. With a
    /// rebalance listener, `revoked` is where the application commits what it holds: it runs at
    /// the application's next `poll` at the latest, as in Java, and the member rejoins when it
    /// returns.
    fn try_run_window(&mut self, now: Instant) {
        let Some(window) = self.window.as_mut().filter(|w| !w.listening) else { return };
        let outstanding =
            window.partitions.iter().filter(|tp| self.parts.get(*tp).is_some_and(Part::has_outstanding_lease)).count();
        // Java does not call `onPartitionsRevoked` with nothing revoked (a cooperative rebalance).
        let listener = self.config.listener && !window.partitions.is_empty();
        let settled = outstanding == 0 || (listener && window.polled);
        if !settled {
            if now < window.deadline {
                return;
            }
            tracing::warn!(
                outstanding,
                "leases on revoked partitions outlasted the rebalance callback timeout; revoking anyway"
            );
        }
        if listener {
            window.listening = true;
            self.told_revoked.extend(window.partitions.iter().cloned());
            let call = ListenerCall::Revoked(window.partitions.clone());
            let deadline = window.deadline;
            self.listener_calls_due += 1;
            self.actions.push_back(SessionAction::Listener { call, deadline });
        } else {
            self.finish_window(now);
        }
    }

    /// Commits stored offsets when auto-commit is on (handed to the member before `RevokeDone`:
    /// its JoinGroup waits for them), lets the member rejoin, and applies the assignment that
    /// waited for the window.
    fn finish_window(&mut self, now: Instant) {
        self.window = None;
        if self.config.auto_commit_interval.is_some() {
            self.commit_stored(now);
        }
        self.actions.push_back(SessionAction::RevokeDone);
        if let Some(assignment) = self.assignment_after_window.take() {
            self.assign(assignment, now);
        }
    }

    fn assign(&mut self, Assignment { generation, partitions, revoked }: Assignment, now: Instant) {
        // A partition in neither list was revoked all the same (defensive: forget it).
        let dropped: Vec<TopicPartition> = self
            .parts
            .keys()
            .filter(|tp| revoked.contains(tp) || !partitions.iter().any(|(p, _)| p == *tp))
            .cloned()
            .collect();
        self.forget(&dropped);
        let mut resumed = Vec::new();
        let mut added = Vec::new();
        let mut announced = Vec::new();
        let told_revoked = std::mem::take(&mut self.told_revoked);
        for (tp, owned_since) in partitions {
            let streak = Streak { generation: generation.clone(), owned_since };
            match self.parts.get_mut(&tp) {
                // Kept: its position and buffered records stay, stamped with their fetch's streak.
                Some(part) if part.streak.owned_since == owned_since => {
                    part.streak = streak;
                    if told_revoked.contains(&tp) {
                        announced.push(tp.clone());
                    }
                    if std::mem::take(&mut part.revoking) && !part.paused && part.start == Start::Fetching {
                        resumed.push(tp);
                    }
                }
                // A new streak (an ownership gap): revoke + add, from the committed offset.
                _ => {
                    self.forget(std::slice::from_ref(&tp));
                    let incarnation = self.new_incarnation();
                    self.parts.insert(
                        tp.clone(),
                        Part {
                            streak,
                            start: Start::Fetching,
                            paused: false,
                            revoking: false,
                            pending: None,
                            incarnation,
                            first_handed_out: None,
                            handed_out: None,
                            settled: None,
                        },
                    );
                    announced.push(tp.clone());
                    added.push(tp);
                }
            }
        }
        if !resumed.is_empty() {
            self.actions.push_back(SessionAction::Resume(resumed));
        }
        if !added.is_empty() {
            if self.config.committed_offsets {
                self.look_up(added);
            } else {
                self.start_fetching(added.into_iter().map(|tp| (tp, StartPosition::Reset)).collect());
            }
        }
        announced.sort();
        self.call_listener(ListenerCall::Assigned(announced), now);
    }

    fn look_up(&mut self, partitions: Vec<TopicPartition>) {
        self.next_lookup += 1;
        let id = LookupId(self.next_lookup);
        for tp in &partitions {
            if let Some(part) = self.parts.get_mut(tp) {
                part.start = Start::LookingUp(id);
            }
        }
        self.actions.push_back(SessionAction::LookUp { id, partitions });
    }

    /// Starts fetching; partitions the application paused, or in a revoke window, stay paused.
    fn start_fetching(&mut self, starts: Vec<(TopicPartition, StartPosition)>) {
        let mut held = Vec::new();
        for (tp, _) in &starts {
            if let Some(part) = self.parts.get_mut(tp) {
                part.start = Start::Fetching;
                if part.paused || part.revoking {
                    held.push(tp.clone());
                }
            }
        }
        if !starts.is_empty() {
            self.actions.push_back(SessionAction::Fetch(starts));
        }
        if !held.is_empty() {
            self.actions.push_back(SessionAction::Pause(held));
        }
    }

    /// The application no longer owns these partitions: their records, position, stored
    /// offset and leases go.
    fn forget(&mut self, partitions: &[TopicPartition]) {
        let forgotten: Vec<TopicPartition> =
            partitions.iter().filter(|tp| self.parts.remove(*tp).is_some()).cloned().collect();
        for tp in &forgotten {
            self.stored.remove(tp);
        }
        if !forgotten.is_empty() {
            self.actions.push_back(SessionAction::Forget(forgotten));
        }
    }

    fn commit_stored(&mut self, now: Instant) {
        let leases = self.take_stored(now);
        if !leases.is_empty() {
            self.actions.push_back(SessionAction::Commit(leases));
        }
    }

    fn call_listener(&mut self, call: ListenerCall, now: Instant) {
        let empty = match &call {
            ListenerCall::Assigned(_) => false,
            ListenerCall::Revoked(p) | ListenerCall::Lost(p) => p.is_empty(),
        };
        if self.config.listener && !empty {
            let deadline = now + self.config.rebalance_callback_timeout;
            self.listener_calls_due += 1;
            self.actions.push_back(SessionAction::Listener { call, deadline });
        }
    }

    fn new_incarnation(&mut self) -> u64 {
        self.next_incarnation += 1;
        self.next_incarnation
    }
}

/// A run of offsets standing for the records at them: what the simulator and the unit tests hand
/// the session.
impl RecordRun for std::ops::Range<i64> {
    fn len(&self) -> usize {
        usize::try_from(self.end - self.start).unwrap_or(0)
    }

    fn first_offset(&self) -> Option<i64> {
        (self.start < self.end).then_some(self.start)
    }

    fn end_offset(&self) -> Option<i64> {
        (self.start < self.end).then_some(self.end)
    }

    fn split_front(&mut self, n: usize) -> Self {
        let split = self.end.min(self.start.saturating_add(i64::try_from(n).unwrap_or(i64::MAX)));
        let front = self.start..split;
        self.start = split;
        front
    }

    /// Ranges join only when contiguous; a later range that does not start at this one's end
    /// replaces it (the position moved).
    fn append(&mut self, later: Self) {
        if later.start == self.end {
            self.end = later.end;
        } else {
            *self = later;
        }
    }

    fn prepend(&mut self, earlier: Self) {
        if earlier.end == self.start || self.start >= self.end {
            self.start = earlier.start;
            self.end = self.end.max(earlier.end);
        }
    }
}

fn push_pending<R: RecordRun>(part: &mut Part<R>, records: R) {
    if records.is_empty() {
        return;
    }
    match part.pending.as_mut() {
        Some((_, pending)) => pending.append(records),
        None => part.pending = Some((part.streak.clone(), records)),
    }
}

#[cfg(test)]
mod tests;
