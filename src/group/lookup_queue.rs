//! The offset-lookup queue: committed-offset lookups in order, one OffsetFetch in flight at a
//! time, every failed attempt retried with a growing backoff until `default.api.timeout.ms`.
//! A lookup never ends as "nothing committed" unless the coordinator said so.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use kafka_protocol::messages::{ApiKey, OffsetFetchResponse};

use super::config::GroupConfig;
use super::events::{GroupEvent, OffsetFetchId, OffsetLookupFailure};
use super::reactions::{self, Reaction};
use super::requests::{offset_fetch_rows, RequestId};
use super::snapshot::{GroupCounters, OffsetLookupView};
use super::timers::{TimerKind, Timers};
use super::types::TopicPartition;
use crate::protocol::error_code::KafkaCode;

/// What an OffsetFetch answer demands of the machine, applied in the order returned.
#[derive(Debug)]
pub(super) enum LookupReaction {
    /// Report this event.
    Report(GroupEvent),
    /// Find the coordinator again, for this reason.
    CoordinatorLost(String),
    /// Stop the member: the coordinator answered this fatal code.
    Fail(i16),
}

#[derive(Debug)]
struct LookupJob {
    id: OffsetFetchId,
    partitions: Vec<TopicPartition>,
    started: Instant,
    deadline: Instant,
    /// Attempts that failed so far (no cap: only the deadline ends a lookup).
    attempts: u32,
    last_error: Option<String>,
}

/// The lookups handed to the machine, oldest first; only the oldest is ever asked.
#[derive(Debug, Default)]
pub(super) struct LookupQueue {
    jobs: VecDeque<LookupJob>,
    /// The oldest lookup's OffsetFetch, until it is answered or given up.
    in_flight: Option<RequestId>,
    /// The backoff before the oldest lookup's next attempt.
    retry_at: Option<Instant>,
}

impl LookupQueue {
    pub(super) fn push(&mut self, id: OffsetFetchId, partitions: Vec<TopicPartition>, now: Instant, deadline: Instant) {
        self.jobs.push_back(LookupJob { id, partitions, started: now, deadline, attempts: 0, last_error: None });
    }

    pub(super) fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// Adds the backoff and the oldest lookup's deadline to `timers`.
    pub(super) fn add_timers(&self, timers: &mut Timers) {
        if let Some(at) = self.retry_at {
            timers.set(TimerKind::LookupRetry, at);
        }
        // Deadlines are checked when nothing is in flight (the answer re-checks them).
        if let (None, Some(job)) = (self.in_flight, self.jobs.front()) {
            timers.set(TimerKind::LookupDeadline, job.deadline);
        }
    }

    /// A backoff that ran out is no timer any more (poll_timeout must not stay in the past).
    pub(super) fn end_expired_backoff(&mut self, now: Instant) {
        self.retry_at = self.retry_at.filter(|&at| at > now);
    }

    /// Ends the lookups whose deadline passed, unless one is in flight. Returns their events,
    /// and the partitions to ask for when the coordinator is `ready` and no backoff runs (then
    /// call [`sent`](Self::sent) with the request id).
    pub(super) fn drive(
        &mut self,
        now: Instant,
        ready: bool,
        commit_pending: impl Fn(&TopicPartition) -> bool,
    ) -> (Vec<GroupEvent>, Option<Vec<TopicPartition>>) {
        let mut ended = Vec::new();
        if self.in_flight.is_some() {
            return (ended, None);
        }
        while let Some(job) = self.jobs.pop_front() {
            if now < job.deadline {
                self.jobs.push_front(job);
                break;
            }
            let last = job.last_error.unwrap_or_else(|| "no coordinator to ask".into());
            let failure = OffsetLookupFailure::TimedOut { attempts: job.attempts, last };
            ended.push(GroupEvent::CommittedOffsetsFailed { id: job.id, failure });
        }
        let backing_off = self.retry_at.is_some_and(|at| at > now);
        let ask = self
            .jobs
            .front()
            .filter(|job| ready && !backing_off && !job.partitions.iter().any(&commit_pending))
            .map(|job| job.partitions.clone());
        (ended, ask)
    }

    /// The OffsetFetch [`drive`](Self::drive) asked for went out as request `id`.
    pub(super) fn sent(&mut self, id: RequestId) {
        self.in_flight = Some(id);
    }

    /// Reads the coordinator's answer for the oldest lookup.
    pub(super) fn on_response(
        &mut self,
        now: Instant,
        r: &OffsetFetchResponse,
        config: &GroupConfig,
        counters: &mut GroupCounters,
    ) -> Vec<LookupReaction> {
        self.in_flight = None;
        let (group_code, partitions) = offset_fetch_rows(r);
        // The group's error, then each partition's: a rejection ends the lookup, anything else
        // is retried (on a rediscovered coordinator if any code says it moved).
        let errors = std::iter::once((None, group_code))
            .chain(partitions.iter().map(|p| (Some(format!("{}-{}", p.0, p.1)), p.3)))
            .map(|(partition, code)| (partition, code, reactions::reaction(ApiKey::OffsetFetch, code)))
            .filter(|(_, _, reaction)| *reaction != Reaction::Apply);
        let mut retry: Option<(bool, String)> = None;
        for (partition, code, reaction) in errors {
            let reason = match &partition {
                Some(tp) => format!("OffsetFetch for {tp}: {}", KafkaCode(code)),
                None => format!("OffsetFetch: {}", KafkaCode(code)),
            };
            match reaction {
                Reaction::Report | Reaction::Fatal => {
                    let topic = partition.and_then(|_| partitions.iter().find(|p| p.3 == code).map(|p| p.0.clone()));
                    return self.reject(code, topic, reaction == Reaction::Fatal);
                }
                Reaction::Rediscover => retry = Some((true, reason)),
                // Backoff, and what no row gives OffsetFetch (a test drives every row): the
                // committed offset is unknown, never "nothing committed", so the lookup goes again.
                Reaction::Backoff
                | Reaction::Apply
                | Reaction::AdoptMemberId
                | Reaction::Rejoin
                | Reaction::ResetGeneration
                | Reaction::ResetMemberId
                | Reaction::Ignore => {
                    retry.get_or_insert((false, reason));
                }
            }
        }
        // A requested partition missing from the answer was not looked up, which is not "nothing
        // committed": v0-1 answer a group-level error (a loading coordinator) with no partitions
        // at all (spec §6.7), and reading that as -1 would rewind the partition.
        let answered = |tp: &TopicPartition| partitions.iter().any(|p| p.0 == *tp.topic && p.1 == tp.partition);
        if retry.is_none() && self.jobs.front().is_some_and(|job| !job.partitions.iter().all(answered)) {
            retry = Some((false, "OffsetFetch answered without every partition asked for".into()));
        }
        if let Some((rediscover, reason)) = retry {
            let lost = rediscover.then(|| LookupReaction::CoordinatorLost(reason.clone()));
            let delayed = self.attempt_failed(reason, now, config, counters).map(LookupReaction::Report);
            return lost.into_iter().chain(delayed).collect();
        }
        let Some(job) = self.jobs.pop_front() else {
            return Vec::new();
        };
        let found: BTreeMap<(String, i32), i64> = partitions.into_iter().map(|(t, p, o, _)| ((t, p), o)).collect();
        let offsets = job
            .partitions
            .iter()
            .map(|tp| {
                let offset = found.get(&(tp.topic.to_string(), tp.partition)).copied().filter(|&o| o >= 0);
                (tp.clone(), offset)
            })
            .collect();
        vec![LookupReaction::Report(GroupEvent::CommittedOffsets { id: job.id, offsets })]
    }

    /// The OffsetFetch in flight will get no answer, for reason `why`; returns the event of the
    /// retry, if a lookup is waiting.
    pub(super) fn on_lost(
        &mut self,
        now: Instant,
        why: &str,
        config: &GroupConfig,
        counters: &mut GroupCounters,
    ) -> Option<GroupEvent> {
        self.in_flight = None;
        self.attempt_failed(why.to_owned(), now, config, counters)
    }

    /// The lookup's attempt failed: it goes again after a backoff that grows with its failures
    /// (KIP-580's cap), reported so that the delay shows.
    fn attempt_failed(
        &mut self,
        reason: String,
        now: Instant,
        config: &GroupConfig,
        counters: &mut GroupCounters,
    ) -> Option<GroupEvent> {
        let job = self.jobs.front_mut()?;
        job.attempts += 1;
        job.last_error = Some(reason.clone());
        let (id, partitions, attempts) = (job.id, job.partitions.clone(), job.attempts);
        let backoff = config.backoff(attempts - 1);
        counters.offset_lookups_retried += 1;
        self.retry_at = Some(now + backoff);
        tracing::info!(lookup = id.0, attempts, %reason, ?backoff, "offset lookup failed; retrying");
        let retry_in_ms = backoff.as_millis() as u64;
        Some(GroupEvent::CommittedOffsetsDelayed { id, partitions, attempts, reason, retry_in_ms })
    }

    /// The lookup cannot succeed; with `fatal` (a group authorization error) the member stops
    /// too (Java throws it from `poll`).
    fn reject(&mut self, code: i16, topic: Option<String>, fatal: bool) -> Vec<LookupReaction> {
        let mut reactions = Vec::new();
        if let Some(job) = self.jobs.pop_front() {
            let failure = OffsetLookupFailure::Rejected { code: KafkaCode(code), topic };
            reactions.push(LookupReaction::Report(GroupEvent::CommittedOffsetsFailed { id: job.id, failure }));
        }
        if fatal {
            reactions.push(LookupReaction::Fail(code));
        }
        reactions
    }

    /// Ends every lookup: the member stopped for `reason`. Returns their events.
    pub(super) fn fail_all(&mut self, reason: &str) -> Vec<GroupEvent> {
        std::mem::take(&mut self.jobs)
            .into_iter()
            .map(|job| {
                let failure = OffsetLookupFailure::MemberStopped { reason: reason.to_owned() };
                GroupEvent::CommittedOffsetsFailed { id: job.id, failure }
            })
            .collect()
    }

    /// The snapshot's view of the lookups not answered yet.
    pub(super) fn views(&self, now: Instant) -> Vec<OffsetLookupView> {
        self.jobs
            .iter()
            .map(|job| OffsetLookupView {
                id: job.id,
                partitions: job.partitions.clone(),
                failed_attempts: job.attempts,
                last_error: job.last_error.clone(),
                waiting_ms: now.saturating_duration_since(job.started).as_millis() as u64,
            })
            .collect()
    }
}
