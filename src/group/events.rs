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
    AwaitingJoin,
    AwaitingSync,
    Stable,
    Revoking,
    Leaving,
    Left,
    Failed,
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
    OwnershipInterrupted { owned_since: GenerationId },
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
    AttemptsExhausted { attempts: u32, last: String },
    /// The commit timeout passed before the commit could be sent or answered.
    TimedOut,
    /// A commit of a lower offset than one already committed in the same ownership streak.
    WouldMoveBackwards { committed: i64 },
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
    Committed { generation: GenerationId, restamped_from: Option<GenerationId> },
    /// Not ours to commit: never sent, or rejected by the broker as stale. The records will be
    /// delivered to the partition's new owner (at-least-once).
    Fenced { lease_generation: GenerationId, current_generation: Option<GenerationId>, reason: FenceReason },
    /// Could not be committed for another reason.
    Failed { reason: CommitFailure },
}

impl CommitOutcome {
    pub fn is_committed(&self) -> bool {
        matches!(self, CommitOutcome::Committed { .. })
    }
}

/// One partition's result within a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct PartitionCommit {
    pub partition: TopicPartition,
    pub offset: i64,
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
    TimedOut { attempts: u32, last: String },
    /// The coordinator refused the lookup for good (an authorization error): asking again
    /// cannot help.
    #[error("OffsetFetch failed with {code}{}", .topic.as_deref().map(|t| format!(" for topic {t}")).unwrap_or_default())]
    Rejected { code: KafkaCode, topic: Option<String> },
    /// The member stopped before the lookup was answered.
    #[error("the group member stopped: {reason}")]
    MemberStopped { reason: String },
}

impl OffsetLookupFailure {
    /// Whether asking again can succeed.
    pub fn is_retriable(&self) -> bool {
        matches!(self, OffsetLookupFailure::TimedOut { .. })
    }
}

/// An owned partition and the first generation of the current ownership streak.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct OwnedPartition {
    pub partition: TopicPartition,
    pub owned_since: GenerationId,
}

/// A fatal condition: the member stops and the application must act.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub enum GroupError {
    #[error("another process took over group.instance.id {instance_id} (FENCED_INSTANCE_ID, KIP-345)")]
    FencedInstanceId { instance_id: String },
    #[error("{api} failed with {code}: {context}")]
    Rejected { api: &'static str, code: KafkaCode, context: String },
    #[error("the coordinator answered with protocol {got:?} where {expected:?} was expected")]
    InconsistentProtocol { expected: String, got: String },
    #[error("the coordinator supports no version of {api} this client can use")]
    UnsupportedApi { api: &'static str },
}

/// Everything the machine reports, in order.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub enum GroupEvent {
    /// The state changed.
    Transition { from: StateKind, to: StateKind, reason: String, generation: Option<GenerationId> },
    /// The coordinator was found (or lost: `node_id` is `None`).
    Coordinator { node_id: Option<i32>, reason: String },
    /// A rebalance started while we owned partitions: commit what is processed, then call
    /// `revoke_done` (or let the deadline pass) before the member rejoins.
    RevokeRequested { generation: GenerationId, partitions: Vec<TopicPartition>, reason: RejoinReason },
    /// The member's assignment for a new generation.
    Assigned {
        generation: Generation,
        partitions: Vec<OwnedPartition>,
        added: Vec<TopicPartition>,
        revoked: Vec<TopicPartition>,
    },
    /// Partitions lost without a revoke window (the group moved on without us).
    Lost { partitions: Vec<TopicPartition>, reason: String },
    /// A commit finished: one outcome per partition.
    CommitCompleted { id: CommitId, results: Vec<PartitionCommit> },
    /// Committed offsets looked up (`None`: nothing committed).
    CommittedOffsets { id: OffsetFetchId, offsets: Vec<(TopicPartition, Option<i64>)> },
    /// An attempt of the lookup failed; it goes again after `retry_in_ms` (a failed lookup is
    /// never read as nothing committed).
    CommittedOffsetsDelayed {
        id: OffsetFetchId,
        partitions: Vec<TopicPartition>,
        attempts: u32,
        reason: String,
        retry_in_ms: u64,
    },
    /// The lookup ended without offsets.
    CommittedOffsetsFailed { id: OffsetFetchId, failure: OffsetLookupFailure },
    /// A response for an older generation arrived and was not applied (T32).
    StaleResponse { api: &'static str, sent: Generation, current: Option<Generation> },
    /// The member left the group.
    Left { reason: LeaveReason },
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
