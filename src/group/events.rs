//! What the state machine reports: transitions with reasons, assignments, and per-partition
//! commit outcomes.

use std::fmt;

use super::types::{Generation, GenerationId, TopicPartition};
use crate::protocol::error_code::KafkaCode;

/// The member's state, for snapshots and transition events (the machine's own state carries
/// each state's data; this is its name, compared as a value rather than as a string).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum StateKind {
    /// Needs a JoinGroup, or has one in flight.
    AwaitingJoin,
    /// JoinGroup answered; the SyncGroup is in flight.
    AwaitingSync,
    /// A member of the current generation, with its assignment.
    Stable,
    /// A rebalance was announced: commits still go out in the current generation until the
    /// revoke is done, then the member rejoins.
    Revoking,
    /// A LeaveGroup to send or in flight.
    Leaving,
    /// Out of the group; nothing more is sent.
    Left,
    /// Stopped by a fatal [`GroupError`].
    Failed,
    /// No membership: the application assigns the partitions (Java's `assign`). Nothing is
    /// sent but commits, stamped with no generation and no member id, and offset lookups.
    Manual,
}

impl fmt::Display for StateKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Why the member leaves the group; its text is LeaveGroup v5's `reason` (KIP-800).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub enum LeaveReason {
    /// The application asked (closing, unsubscribing), in its words.
    Requested(String),
    /// `max.poll.interval.ms` passed without a poll (KIP-62): the member leaves so that its
    /// partitions move on, and rejoins on the next poll.
    MaxPollIntervalExceeded,
}

impl fmt::Display for LeaveReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LeaveReason::Requested(text) => f.write_str(text),
            LeaveReason::MaxPollIntervalExceeded => {
                f.write_str("max.poll.interval.ms exceeded: the application stopped polling")
            }
        }
    }
}

impl From<&str> for LeaveReason {
    fn from(text: &str) -> Self {
        LeaveReason::Requested(text.to_owned())
    }
}

/// Why the member (re)joins; sent as JoinGroup `reason` on v8+ (KIP-800).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub enum RejoinReason {
    /// First join after start.
    Initial,
    /// The broker returned MEMBER_ID_REQUIRED with our member id (KIP-394).
    MemberIdRequired,
    /// A heartbeat or commit said REBALANCE_IN_PROGRESS.
    RebalanceInProgress,
    /// The broker no longer knows our generation.
    IllegalGeneration,
    /// The broker no longer knows our member id.
    UnknownMember,
    /// The subscription changed.
    SubscriptionChanged,
    /// A cooperative SyncGroup took partitions away: they can go to their new owner only in a
    /// later generation (KIP-429's second round).
    PartitionsRevoked,
    /// The partition counts of the group's topics changed since this member, the leader,
    /// assigned them (a topic or partitions were added, or a topic deleted).
    PartitionCountsChanged,
    /// A retriable failure during join or sync.
    Retry(String),
    /// The broker fenced the member's epoch (KIP-848's FENCED_MEMBER_EPOCH): it rejoins with
    /// epoch 0 and its partitions are lost.
    MemberEpochFenced,
}

impl fmt::Display for RejoinReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RejoinReason::Initial => write!(f, "initial join"),
            RejoinReason::MemberIdRequired => write!(f, "member id required (KIP-394 second step)"),
            RejoinReason::RebalanceInProgress => write!(f, "group is rebalancing"),
            RejoinReason::IllegalGeneration => write!(f, "generation is stale"),
            RejoinReason::UnknownMember => write!(f, "member id unknown to the coordinator"),
            RejoinReason::SubscriptionChanged => write!(f, "subscription changed"),
            RejoinReason::PartitionsRevoked => write!(f, "partitions revoked, second round (KIP-429)"),
            RejoinReason::PartitionCountsChanged => write!(f, "partition counts of the group's topics changed"),
            RejoinReason::Retry(why) => write!(f, "retry after {why}"),
            RejoinReason::MemberEpochFenced => write!(f, "member epoch fenced by the broker (KIP-848)"),
        }
    }
}

/// Why a lease's partition may not be committed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub enum FenceReason {
    /// This member does not own the partition in its current generation.
    NotOwned,
    /// It owns the partition again, but ownership was interrupted since the lease was taken.
    OwnershipInterrupted {
        /// The first generation of the current ownership streak, later than the lease's.
        owned_since: GenerationId,
    },
    /// The lease belongs to another member id of this process (before a reset).
    OtherMember,
    /// The coordinator rejected the commit with this code (ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID).
    RejectedByBroker(KafkaCode),
}

/// Why a commit failed for a partition that was not fenced.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub enum CommitFailure {
    /// The broker refused the commit itself (for example OFFSET_METADATA_TOO_LARGE).
    Rejected(KafkaCode),
    /// Retries ran out; the last error is given.
    AttemptsExhausted {
        /// Attempts made.
        attempts: u32,
        /// The last attempt's error.
        last: String,
    },
    /// The commit timeout passed before the commit could be sent or answered.
    TimedOut,
    /// A commit of a lower offset than one already committed in the same ownership streak.
    WouldMoveBackwards {
        /// The offset already committed.
        committed: i64,
    },
    /// The member left the group or stopped.
    MemberGone,
    /// The member failed fatally.
    Fatal(String),
}

/// The fate of one partition of one commit.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub enum CommitOutcome {
    /// Stored by the coordinator, stamped with `generation`; `restamped_from` is the lease's
    /// generation when ownership continued across a rebalance (KIP-1251's rule, client side).
    Committed {
        /// The generation the commit was sent in.
        generation: GenerationId,
        /// The lease's own generation, when the commit went out in a later one (the partition
        /// stayed owned across the rebalance).
        restamped_from: Option<GenerationId>,
    },
    /// Not ours to commit: never sent, or rejected by the broker as stale. The records will be
    /// delivered to the partition's new owner (at-least-once).
    Fenced {
        /// The generation the lease was taken in.
        lease_generation: GenerationId,
        /// The member's generation when the commit was judged (`None`: it had none).
        current_generation: Option<GenerationId>,
        /// Why the partition is not this lease's to commit.
        reason: FenceReason,
    },
    /// Could not be committed for another reason.
    Failed {
        /// What went wrong.
        reason: CommitFailure,
    },
}

impl CommitOutcome {
    /// Whether the coordinator stored the offset.
    pub fn is_committed(&self) -> bool {
        matches!(self, CommitOutcome::Committed { .. })
    }
}

/// One partition's result within a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct PartitionCommit {
    /// The partition committed.
    pub partition: TopicPartition,
    /// The offset to store: the next record to read.
    pub offset: i64,
    /// What became of it.
    pub outcome: CommitOutcome,
}

/// Identifies a commit handed to [`super::GroupMachine::commit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct CommitId(pub u64);

/// Identifies an offset lookup handed to [`super::GroupMachine::fetch_committed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct OffsetFetchId(pub u64);

/// Why an offset lookup ended without offsets. None of these means "nothing committed": the
/// committed offsets are unknown, and a partition must not start at `auto.offset.reset` on them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub enum OffsetLookupFailure {
    /// Retriable failures (a coordinator loading or moving, pending transactional offsets, no
    /// answer) lasted past `default.api.timeout.ms`: ask again.
    #[error("no answer within default.api.timeout.ms after {attempts} attempts (last: {last})")]
    TimedOut {
        /// Attempts made.
        attempts: u32,
        /// The last attempt's error.
        last: String,
    },
    /// The coordinator refused the lookup for good (an authorization error): asking again
    /// cannot help.
    #[error("OffsetFetch failed with {code}{}", .topic.as_deref().map(|t| format!(" for topic {t}")).unwrap_or_default())]
    Rejected {
        /// The error code.
        code: KafkaCode,
        /// The topic it was given for, when it came per topic.
        topic: Option<String>,
    },
    /// The member stopped before the lookup was answered.
    #[error("the group member stopped: {reason}")]
    MemberStopped {
        /// Why it stopped.
        reason: String,
    },
}

impl OffsetLookupFailure {
    /// Whether asking again can succeed.
    pub fn is_retriable(&self) -> bool {
        matches!(self, OffsetLookupFailure::TimedOut { .. })
    }

    /// What the application can do about it.
    pub fn what_to_do(&self) -> &'static str {
        match self {
            OffsetLookupFailure::TimedOut { .. } => "ask again once the coordinator answers",
            OffsetLookupFailure::Rejected { .. } => {
                "asking again cannot help (for an authorization error, grant the principal READ on the group and DESCRIBE on the topic)"
            }
            OffsetLookupFailure::MemberStopped { .. } => "the member is gone: start a new consumer",
        }
    }
}

/// An owned partition and the first generation of the current ownership streak.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct OwnedPartition {
    /// The partition.
    pub partition: TopicPartition,
    /// The first generation of the streak: leases from before it are fenced.
    pub owned_since: GenerationId,
}

/// A fatal condition: the member stops and the application must act.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub enum GroupError {
    /// Another member joined with this member's static `group.instance.id`.
    #[error("another process took over group.instance.id {instance_id} (FENCED_INSTANCE_ID, KIP-345)")]
    FencedInstanceId {
        /// The `group.instance.id` taken over.
        instance_id: String,
    },
    /// The coordinator answered a group API with a fatal error code (an authorization error,
    /// for example).
    #[error("{api} failed with {code}: {context}")]
    Rejected {
        /// The API refused.
        api: &'static str,
        /// The error code.
        code: KafkaCode,
        /// What the member was doing.
        context: String,
    },
    /// The group settled on a protocol (an assignor) this member did not offer.
    #[error("the coordinator answered with protocol {got:?} where {expected:?} was expected")]
    InconsistentProtocol {
        /// What this member offered or agreed on.
        expected: String,
        /// What the coordinator answered.
        got: String,
    },
    /// The coordinator speaks no version of a group API that this client speaks.
    #[error("the coordinator supports no version of {api} this client can use")]
    UnsupportedApi {
        /// The API.
        api: &'static str,
    },
}

/// Everything the machine reports, in order.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub enum GroupEvent {
    /// The state changed.
    Transition {
        /// The state left.
        from: StateKind,
        /// The state entered.
        to: StateKind,
        /// Why, in words.
        reason: String,
        /// The member's generation in the new state, if it has one.
        generation: Option<GenerationId>,
    },
    /// The coordinator was found (or lost: `node_id` is `None`).
    Coordinator {
        /// The coordinator's broker id.
        node_id: Option<i32>,
        /// Why it was looked up or dropped.
        reason: String,
    },
    /// A rebalance started while we owned partitions: commit what is processed, then call
    /// `revoke_done` (or let the deadline pass) before the member rejoins.
    RevokeRequested {
        /// The generation that still owns the partitions: commits go out in it.
        generation: GenerationId,
        /// The partitions to give up: every owned one (eager), the ones a cooperative assignment
        /// took away, or none while a cooperative member rejoins with its partitions.
        partitions: Vec<TopicPartition>,
        /// Why the member rejoins.
        reason: RejoinReason,
    },
    /// The member's assignment for a new generation.
    Assigned {
        /// The new generation.
        generation: Generation,
        /// Everything owned now, with the start of each ownership streak.
        partitions: Vec<OwnedPartition>,
        /// Owned now and not before.
        added: Vec<TopicPartition>,
        /// Owned before and not now.
        revoked: Vec<TopicPartition>,
    },
    /// Partitions lost without a revoke window (the group moved on without us).
    Lost {
        /// The partitions lost.
        partitions: Vec<TopicPartition>,
        /// Why.
        reason: String,
    },
    /// A commit finished: one outcome per partition.
    CommitCompleted {
        /// The commit, as [`super::GroupMachine::commit`] returned it.
        id: CommitId,
        /// One outcome per partition.
        results: Vec<PartitionCommit>,
    },
    /// Committed offsets looked up (`None`: nothing committed).
    CommittedOffsets {
        /// The lookup, as [`super::GroupMachine::fetch_committed`] returned it.
        id: OffsetFetchId,
        /// Each partition's committed offset.
        offsets: Vec<(TopicPartition, Option<i64>)>,
    },
    /// An attempt of the lookup failed; it goes again after `retry_in_ms` (a failed lookup is
    /// never read as nothing committed).
    CommittedOffsetsDelayed {
        /// The lookup.
        id: OffsetFetchId,
        /// Its partitions.
        partitions: Vec<TopicPartition>,
        /// Attempts made so far.
        attempts: u32,
        /// Why the last attempt failed.
        reason: String,
        /// Milliseconds until the next attempt.
        retry_in_ms: u64,
    },
    /// The lookup ended without offsets.
    CommittedOffsetsFailed {
        /// The lookup.
        id: OffsetFetchId,
        /// Why it ended.
        failure: OffsetLookupFailure,
    },
    /// A response for an older generation arrived and was not applied (what it says is about
    /// a group the member has left behind).
    StaleResponse {
        /// The API answered.
        api: &'static str,
        /// The generation the request was sent in.
        sent: Generation,
        /// The member's generation now.
        current: Option<Generation>,
    },
    /// The member left the group.
    Left {
        /// Why.
        reason: LeaveReason,
    },
    /// A fatal error: the member has stopped.
    Fatal(GroupError),
}

impl GroupEvent {
    /// Whether the event changes what the member owns or whether it runs: what a consumer acts
    /// on, so it must never be dropped (the driver hands these to its consumer on a lossless
    /// channel; the observers' stream may drop events).
    pub fn is_control(&self) -> bool {
        match self {
            GroupEvent::RevokeRequested { .. }
            | GroupEvent::Assigned { .. }
            | GroupEvent::Lost { .. }
            | GroupEvent::Left { .. }
            | GroupEvent::Fatal(_) => true,
            GroupEvent::Transition { .. }
            | GroupEvent::Coordinator { .. }
            | GroupEvent::CommitCompleted { .. }
            | GroupEvent::CommittedOffsets { .. }
            | GroupEvent::CommittedOffsetsDelayed { .. }
            | GroupEvent::CommittedOffsetsFailed { .. }
            | GroupEvent::StaleResponse { .. } => false,
        }
    }
}
