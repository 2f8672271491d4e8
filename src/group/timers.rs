//! The machine's deadlines as data: one entry per kind, and the next wake-up is the earliest.

use std::time::Instant;

/// Everything the machine waits for, in the order a tie is reported in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TimerKind {
    /// The next Heartbeat is due.
    Heartbeat,
    /// A whole `session.timeout.ms` without a successful heartbeat: the coordinator is presumed
    /// gone.
    Session,
    /// The backoff before the coordinator is looked up, or JoinGroup sent, again.
    Retry,
    /// The backoff before the oldest commit's next attempt.
    CommitRetry,
    /// The oldest commit's `default.api.timeout.ms`.
    CommitDeadline,
    /// The backoff before the oldest offset lookup's next attempt.
    LookupRetry,
    /// The oldest offset lookup's `default.api.timeout.ms`.
    LookupDeadline,
    /// `max.poll.interval.ms` without a poll (KIP-62).
    MaxPollInterval,
    /// `metadata.max.age.ms`: the partition counts are refreshed.
    MetadataRefresh,
    /// The revoke window closes: JoinGroup waits no longer.
    RevokeDeadline,
}

impl TimerKind {
    const ALL: [TimerKind; 10] = [
        TimerKind::Heartbeat,
        TimerKind::Session,
        TimerKind::Retry,
        TimerKind::CommitRetry,
        TimerKind::CommitDeadline,
        TimerKind::LookupRetry,
        TimerKind::LookupDeadline,
        TimerKind::MaxPollInterval,
        TimerKind::MetadataRefresh,
        TimerKind::RevokeDeadline,
    ];

    /// The name the snapshot's `next_timer` shows.
    pub(super) fn name(self) -> &'static str {
        match self {
            TimerKind::Heartbeat => "heartbeat",
            TimerKind::Session => "session",
            TimerKind::Retry => "backoff",
            TimerKind::CommitRetry => "commit-backoff",
            TimerKind::CommitDeadline => "commit-deadline",
            TimerKind::LookupRetry => "fetch-backoff",
            TimerKind::LookupDeadline => "fetch-deadline",
            TimerKind::MaxPollInterval => "max-poll-interval",
            TimerKind::MetadataRefresh => "metadata-refresh",
            TimerKind::RevokeDeadline => "revoke-deadline",
        }
    }
}

/// At most one deadline per kind.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Timers([Option<Instant>; TimerKind::ALL.len()]);

impl Timers {
    pub(super) fn set(&mut self, kind: TimerKind, at: Instant) {
        self.0[kind as usize] = Some(at);
    }

    pub(super) fn clear(&mut self, kind: TimerKind) {
        self.0[kind as usize] = None;
    }

    pub(super) fn get(&self, kind: TimerKind) -> Option<Instant> {
        self.0[kind as usize]
    }

    /// Whether `kind` is set to a moment after `now` (a backoff still running).
    pub(super) fn is_running(&self, kind: TimerKind, now: Instant) -> bool {
        self.get(kind).is_some_and(|at| at > now)
    }

    /// The earliest deadline; of several at the same moment, the first kind's.
    pub(super) fn next_due(&self) -> Option<(TimerKind, Instant)> {
        TimerKind::ALL.into_iter().filter_map(|kind| Some((kind, self.get(kind)?))).min_by_key(|&(_, at)| at)
    }
}
