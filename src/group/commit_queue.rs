//! The commit queue: commits in order, each lease judged by the generation gate before anything
//! is sent (a lease commits only within its ownership streak), one OffsetCommit in flight at a time, and the answer turned into
//! per-partition outcomes and what the machine must do about it.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use kafka_protocol::messages::{ApiKey, OffsetCommitResponse};

use super::config::GroupConfig;
use super::events::{CommitFailure, CommitId, CommitOutcome, FenceReason, GroupEvent, PartitionCommit, RejoinReason};
use super::reactions::{self, Reaction, Standing};
use super::requests::RequestId;
use super::snapshot::{CommitView, GroupCounters};
use super::timers::{TimerKind, Timers};
use super::types::{Generation, GenerationId, Lease, TopicPartition};
use crate::protocol::error_code::codes::UNKNOWN_SERVER_ERROR;
use crate::protocol::error_code::KafkaCode;

/// The member as the commit gate sees it: joining, in a generation, revoking, or out of the
/// group.
pub(super) enum Gate<'a> {
    /// Joining or syncing: commits wait until the next generation is known.
    Closed,
    /// Gone or failed: nothing can be committed any more.
    Shut(CommitFailure),
    /// A member of `generation` (Stable or Revoking). `owned` is its ownership of that generation
    /// (partition to the first generation of its streak), if it has one; `released` is what a
    /// cooperative assignment took away while the revoke window is open.
    Open {
        generation: &'a Generation,
        owned: Option<&'a BTreeMap<TopicPartition, GenerationId>>,
        released: Option<&'a BTreeMap<TopicPartition, GenerationId>>,
    },
    /// No membership (manual assignment): every lease goes out stamped with `generation`
    /// ([`Generation::none`]); there is no ownership streak to fence it by, and the application
    /// may commit any offset, lower ones too (it seeks where it likes).
    Unmanaged { generation: &'a Generation },
}

impl Gate<'_> {
    fn generation(&self) -> Option<&Generation> {
        match self {
            Gate::Open { generation, .. } | Gate::Unmanaged { generation } => Some(generation),
            Gate::Closed | Gate::Shut(_) => None,
        }
    }
}

#[derive(Debug)]
enum Judgement {
    Send(Generation),
    Defer,
    Fence(FenceReason, GenerationId),
    Fail(CommitFailure),
}

/// An OffsetCommit as sent: the generation it is stamped with, and each lease with the
/// generation it was re-stamped from (KIP-1251's rule, applied client side).
#[derive(Debug, Clone)]
pub(super) struct SentCommit {
    pub(super) generation: Generation,
    pub(super) leases: Vec<(Lease, Option<GenerationId>)>,
}

/// What an OffsetCommit answer demands of the machine, applied in the order returned.
#[derive(Debug)]
pub(super) enum CommitReaction {
    /// Stop the member: the coordinator answered this fatal code.
    Fail(i16),
    /// Find the coordinator again.
    CoordinatorLost,
    /// The group moved on without us: lose the partitions and rejoin (UNKNOWN_MEMBER_ID also
    /// forgets the member id).
    Reset(RejoinReason),
    /// A rebalance is running: rejoin through the revoke window.
    Rejoin(RejoinReason),
}

#[derive(Debug)]
struct CommitJob {
    id: CommitId,
    deadline: Instant,
    attempts: u32,
    pending: Vec<Lease>,
    results: Vec<PartitionCommit>,
    last_error: Option<String>,
    deferred_counted: bool,
    /// Set when the coordinator answered REBALANCE_IN_PROGRESS to this commit stamped with
    /// that generation: it waits for a newer generation before it is judged again.
    wait_past: Option<GenerationId>,
}

/// The commits handed to the machine, oldest first; only the oldest is ever sent.
#[derive(Debug, Default)]
pub(super) struct CommitQueue {
    jobs: VecDeque<CommitJob>,
    /// The oldest job's OffsetCommit, until it is answered or given up.
    in_flight: Option<RequestId>,
    /// The backoff before the oldest job's next attempt.
    retry_at: Option<Instant>,
    /// Per partition, the ownership streak (its first generation) and the highest offset
    /// committed in it: the floor a commit of that streak may not go below.
    committed_streak: BTreeMap<TopicPartition, (GenerationId, i64)>,
}

impl CommitQueue {
    pub(super) fn push(&mut self, id: CommitId, leases: Vec<Lease>, deadline: Instant) {
        let mut furthest: BTreeMap<TopicPartition, Lease> = BTreeMap::new();
        for lease in leases {
            match furthest.get(&lease.partition) {
                Some(kept)
                    if (kept.owned_since, kept.next_offset, kept.generation.id)
                        >= (lease.owned_since, lease.next_offset, lease.generation.id) => {}
                _ => {
                    furthest.insert(lease.partition.clone(), lease);
                }
            }
        }
        self.jobs.push_back(CommitJob {
            id,
            deadline,
            attempts: 0,
            pending: furthest.into_values().collect(),
            results: Vec::new(),
            last_error: None,
            deferred_counted: false,
            wait_past: None,
        });
    }

    pub(super) fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    pub(super) fn in_flight(&self) -> Option<RequestId> {
        self.in_flight
    }

    /// The partitions of the leases queued (not yet sent, or deferred).
    pub(super) fn queued_partitions(&self) -> impl Iterator<Item = &TopicPartition> {
        self.jobs.iter().flat_map(|job| &job.pending).map(|lease| &lease.partition)
    }

    /// Whether JoinGroup must still wait for a commit: one in flight, or one queued that the
    /// coordinator did not tell to wait for the next generation.
    pub(super) fn holds_join(&self) -> bool {
        self.in_flight.is_some() || self.jobs.front().is_some_and(|job| job.wait_past.is_none())
    }

    /// Adds the backoff and the oldest job's deadline to `timers`.
    pub(super) fn add_timers(&self, timers: &mut Timers) {
        if let Some(at) = self.retry_at {
            timers.set(TimerKind::CommitRetry, at);
        }
        // Deadlines are checked when nothing is in flight (the answer re-checks them).
        if let (None, Some(job)) = (self.in_flight, self.jobs.front()) {
            timers.set(TimerKind::CommitDeadline, job.deadline);
        }
    }

    /// A backoff that ran out is no timer any more (poll_timeout must not stay in the past).
    pub(super) fn end_expired_backoff(&mut self, now: Instant) {
        self.retry_at = self.retry_at.filter(|&at| at > now);
    }

    /// Ends the commit floors of `partitions` (their streaks broke).
    pub(super) fn end_streaks<'a>(&mut self, partitions: impl IntoIterator<Item = &'a TopicPartition>) {
        for tp in partitions {
            self.committed_streak.remove(tp);
        }
    }

    /// Keeps the commit floors of streaks that go on in `owned` (partition to its first
    /// generation) and drops the others.
    pub(super) fn keep_streaks(&mut self, owned: &BTreeMap<TopicPartition, GenerationId>) {
        self.committed_streak.retain(|tp, (since, _)| owned.get(tp) == Some(since));
    }

    pub(super) fn clear_streaks(&mut self) {
        self.committed_streak.clear();
    }

    /// Judges one lease against the member: send it (in which generation), wait for the next
    /// generation, or fence it.
    fn judge(&self, gate: &Gate, lease: &Lease) -> Judgement {
        let (generation, owned, released) = match gate {
            Gate::Closed => return Judgement::Defer,
            Gate::Shut(failure) => return Judgement::Fail(failure.clone()),
            Gate::Unmanaged { generation } => return Judgement::Send((*generation).clone()),
            Gate::Open { generation, owned, released } => (*generation, owned, released),
        };
        let fence = |reason| Judgement::Fence(reason, generation.id);
        if lease.generation.member_id != generation.member_id {
            return fence(FenceReason::OtherMember);
        }
        let Some(owned) = owned else {
            return fence(FenceReason::NotOwned);
        };
        match owned.get(&lease.partition).or_else(|| released.and_then(|r| r.get(&lease.partition))) {
            None => fence(FenceReason::NotOwned),
            Some(&since) if since != lease.owned_since || lease.generation.id < since => {
                fence(FenceReason::OwnershipInterrupted { owned_since: since })
            }
            Some(&since) => match self.committed_streak.get(&lease.partition) {
                Some(&(streak, committed)) if streak == since && committed > lease.next_offset => {
                    Judgement::Fail(CommitFailure::WouldMoveBackwards { committed })
                }
                _ => Judgement::Send(generation.clone()),
            },
        }
    }

    /// Judges the queued commits, oldest first, unless one is in flight. Returns the events of
    /// the commits that finished, and the OffsetCommit to send when the coordinator is `ready`
    /// and no backoff runs (then call [`sent`](Self::sent) with its request id).
    pub(super) fn drive(
        &mut self,
        now: Instant,
        gate: &Gate,
        ready: bool,
        config: &GroupConfig,
        counters: &mut GroupCounters,
    ) -> (Vec<GroupEvent>, Option<SentCommit>) {
        let mut completed = Vec::new();
        if self.in_flight.is_some() {
            return (completed, None);
        }
        while let Some(mut job) = self.jobs.pop_front() {
            if now >= job.deadline {
                completed.push(self.complete_with(job, CommitFailure::TimedOut, counters));
                continue;
            }
            if job.attempts >= config.commit_attempts && !job.pending.is_empty() {
                let last = job.last_error.clone().unwrap_or_default();
                let failure = CommitFailure::AttemptsExhausted { attempts: config.commit_attempts, last };
                completed.push(self.complete_with(job, failure, counters));
                continue;
            }
            if let Some(waited) = job.wait_past {
                if gate.generation().is_none_or(|g| g.id <= waited) {
                    self.jobs.push_front(job);
                    break;
                }
                job.wait_past = None;
            }
            let mut send: Vec<(Lease, Option<GenerationId>)> = Vec::new();
            let mut deferred = Vec::new();
            let mut stamp = None;
            for lease in std::mem::take(&mut job.pending) {
                match self.judge(gate, &lease) {
                    Judgement::Send(generation) => {
                        let restamped = (lease.generation.id != generation.id).then_some(lease.generation.id);
                        stamp = Some(generation);
                        send.push((lease, restamped));
                    }
                    Judgement::Defer => deferred.push(lease),
                    Judgement::Fence(reason, current) => {
                        counters.partitions_fenced_locally += 1;
                        tracing::debug!(partition = %lease.partition, ?reason, lease_generation = lease.generation.id.0, "commit fenced locally");
                        job.results.push(PartitionCommit {
                            partition: lease.partition.clone(),
                            offset: lease.next_offset,
                            outcome: CommitOutcome::Fenced {
                                lease_generation: lease.generation.id,
                                current_generation: Some(current),
                                reason,
                            },
                        });
                    }
                    Judgement::Fail(reason) => {
                        counters.partitions_failed += 1;
                        job.results.push(PartitionCommit {
                            partition: lease.partition.clone(),
                            offset: lease.next_offset,
                            outcome: CommitOutcome::Failed { reason },
                        });
                    }
                }
            }
            if send.is_empty() && deferred.is_empty() {
                completed.push(self.complete(job));
                continue;
            }
            if !deferred.is_empty() && !job.deferred_counted {
                job.deferred_counted = true;
                counters.commits_deferred += 1;
            }
            let backing_off = self.retry_at.is_some_and(|at| at > now);
            let (Some(generation), true) = (stamp, ready && !backing_off) else {
                job.pending = send.into_iter().map(|(l, _)| l).chain(deferred).collect();
                self.jobs.push_front(job);
                break;
            };
            job.pending = deferred;
            self.jobs.push_front(job);
            return (completed, Some(SentCommit { generation, leases: send }));
        }
        (completed, None)
    }

    /// The OffsetCommit [`drive`](Self::drive) returned went out as request `id`.
    pub(super) fn sent(&mut self, id: RequestId) {
        self.in_flight = Some(id);
    }

    /// Applies the coordinator's answer to `commit`: outcomes go to the oldest job, partitions
    /// to retry go back to it. `standing`: whether the member still holds the generation the
    /// commit was stamped with.
    pub(super) fn on_response(
        &mut self,
        now: Instant,
        commit: SentCommit,
        r: &OffsetCommitResponse,
        standing: Standing,
        config: &GroupConfig,
        counters: &mut GroupCounters,
    ) -> Vec<CommitReaction> {
        self.in_flight = None;
        let sent = commit.generation;
        let codes: BTreeMap<(&str, i32), i16> = r
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(move |p| ((t.name.as_str(), p.partition_index), p.error_code)))
            .collect();
        let mut retry = Vec::new();
        let mut results = Vec::new();
        let mut rejoin = None;
        let mut coordinator_moved = false;
        // Some partition is to be sent again after a backoff, as another attempt (not one that
        // waits for the next generation or is judged again at once).
        let mut retry_counts_as_attempt = false;
        let mut wait_for_next_generation = false;
        let mut fatal = None;
        let mut last_error = None;
        for (lease, restamped_from) in commit.leases {
            let code = codes
                .get(&(&*lease.partition.topic, lease.partition.partition))
                .copied()
                .unwrap_or(UNKNOWN_SERVER_ERROR);
            let reaction = reactions::reaction_if(ApiKey::OffsetCommit, code, standing);
            let outcome = match reaction {
                Reaction::Apply => {
                    counters.partitions_committed += 1;
                    if restamped_from.is_some() {
                        counters.partitions_restamped += 1;
                    }
                    let floor = self
                        .committed_streak
                        .entry(lease.partition.clone())
                        .or_insert((lease.owned_since, lease.next_offset));
                    if floor.0 == lease.owned_since {
                        floor.1 = floor.1.max(lease.next_offset);
                    } else {
                        *floor = (lease.owned_since, lease.next_offset);
                    }
                    Some(CommitOutcome::Committed { generation: sent.id, restamped_from })
                }
                Reaction::Backoff => {
                    retry_counts_as_attempt = true;
                    None
                }
                Reaction::Rediscover => {
                    retry_counts_as_attempt = true;
                    coordinator_moved = true;
                    None
                }
                Reaction::Rejoin => {
                    // Deferred and judged again once the new generation is known (T41).
                    wait_for_next_generation = true;
                    rejoin = Some(CommitReaction::Rejoin(RejoinReason::RebalanceInProgress));
                    None
                }
                // Judged again at once, against the generation the member holds now.
                Reaction::Ignore => None,
                Reaction::ResetGeneration | Reaction::ResetMemberId => {
                    let reason = match reaction {
                        Reaction::ResetMemberId => RejoinReason::UnknownMember,
                        _ => RejoinReason::IllegalGeneration,
                    };
                    rejoin = Some(CommitReaction::Reset(reason));
                    *counters.partitions_rejected_by_broker.entry(code).or_default() += 1;
                    Some(CommitOutcome::Fenced {
                        lease_generation: lease.generation.id,
                        current_generation: Some(sent.id),
                        reason: FenceReason::RejectedByBroker(KafkaCode(code)),
                    })
                }
                Reaction::Fatal => {
                    retry_counts_as_attempt = true;
                    fatal = Some(code);
                    None
                }
                // No row gives OffsetCommit AdoptMemberId (a test drives every row).
                Reaction::Report | Reaction::AdoptMemberId => {
                    *counters.partitions_rejected_by_broker.entry(code).or_default() += 1;
                    counters.partitions_failed += 1;
                    Some(CommitOutcome::Failed { reason: CommitFailure::Rejected(KafkaCode(code)) })
                }
            };
            match outcome {
                Some(outcome) => results.push(PartitionCommit {
                    partition: lease.partition.clone(),
                    offset: lease.next_offset,
                    outcome,
                }),
                None => {
                    if code != 0 {
                        last_error = Some(KafkaCode(code).to_string());
                    }
                    retry.push(lease);
                }
            }
        }
        if let Some(job) = self.jobs.front_mut() {
            if wait_for_next_generation {
                job.wait_past = Some(sent.id);
            }
            job.results.extend(results);
            if retry_counts_as_attempt {
                job.attempts += 1;
                job.last_error = last_error;
            }
            job.pending.extend(retry);
        }
        if retry_counts_as_attempt {
            self.retry_at = Some(now + config.backoff(self.jobs.front().map_or(1, |j| j.attempts)));
        }
        if let Some(code) = fatal {
            return vec![CommitReaction::Fail(code)];
        }
        let mut reactions = Vec::new();
        if coordinator_moved {
            reactions.push(CommitReaction::CoordinatorLost);
        }
        reactions.extend(rejoin);
        reactions
    }

    /// `commit` will get no answer: its leases go back to the oldest job, tried again after
    /// `retry.backoff.ms`.
    pub(super) fn on_lost(&mut self, now: Instant, commit: SentCommit, why: &str, config: &GroupConfig) {
        self.in_flight = None;
        if let Some(job) = self.jobs.front_mut() {
            job.attempts += 1;
            job.last_error = Some(why.to_owned());
            job.pending.extend(commit.leases.into_iter().map(|(lease, _)| lease));
        }
        self.retry_at = Some(now + config.retry_backoff);
    }

    /// Ends every job but the one in flight with `failure`; returns their events.
    pub(super) fn fail_waiting(&mut self, failure: CommitFailure, counters: &mut GroupCounters) -> Vec<GroupEvent> {
        let in_flight_job = self.in_flight.and_then(|_| self.jobs.pop_front());
        let completed = std::mem::take(&mut self.jobs)
            .into_iter()
            .map(|job| self.complete_with(job, failure.clone(), counters))
            .collect();
        self.jobs.extend(in_flight_job);
        completed
    }

    /// Ends every job with `failure` and forgets the one in flight; returns their events.
    pub(super) fn fail_all(&mut self, failure: CommitFailure, counters: &mut GroupCounters) -> Vec<GroupEvent> {
        let completed = std::mem::take(&mut self.jobs)
            .into_iter()
            .map(|job| self.complete_with(job, failure.clone(), counters))
            .collect();
        self.in_flight = None;
        completed
    }

    fn complete_with(
        &mut self,
        mut job: CommitJob,
        failure: CommitFailure,
        counters: &mut GroupCounters,
    ) -> GroupEvent {
        for lease in std::mem::take(&mut job.pending) {
            counters.partitions_failed += 1;
            job.results.push(PartitionCommit {
                partition: lease.partition.clone(),
                offset: lease.next_offset,
                outcome: CommitOutcome::Failed { reason: failure.clone() },
            });
        }
        self.complete(job)
    }

    fn complete(&mut self, job: CommitJob) -> GroupEvent {
        tracing::debug!(commit = job.id.0, partitions = job.results.len(), "commit completed");
        // The backoff belonged to this job's retries; the next commit starts fresh.
        self.retry_at = None;
        GroupEvent::CommitCompleted { id: job.id, results: job.results }
    }

    /// The snapshot's view of `commit`, the oldest job's OffsetCommit in flight.
    pub(super) fn in_flight_view(&self, commit: &SentCommit) -> CommitView {
        CommitView {
            id: self.jobs.front().map(|j| j.id).unwrap_or(CommitId(0)),
            stamped_with: Some(commit.generation.id),
            partitions: commit.leases.iter().map(|(l, _)| (l.partition.clone(), l.next_offset)).collect(),
        }
    }

    /// The snapshot's view of the leases waiting to be sent.
    pub(super) fn deferred_views(&self) -> Vec<CommitView> {
        self.jobs
            .iter()
            .filter(|j| !j.pending.is_empty())
            .map(|j| CommitView {
                id: j.id,
                stamped_with: None,
                partitions: j.pending.iter().map(|l| (l.partition.clone(), l.next_offset)).collect(),
            })
            .collect()
    }
}
