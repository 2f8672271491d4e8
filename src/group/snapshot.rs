//! The debug API's owned view of a member (DESIGN section 5).

use std::collections::BTreeMap;

use super::events::{CommitId, OffsetFetchId, OwnedPartition, RejoinReason, StateKind};
use super::types::{Generation, GenerationId, MemberId, TopicPartition};

/// Counters since the machine was created.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct GroupCounters {
    pub joins_sent: u64,
    pub syncs_sent: u64,
    pub heartbeats_sent: u64,
    pub rebalances: u64,
    pub last_rebalance_ms: Option<u64>,
    pub max_rebalance_ms: u64,
    pub total_rebalance_ms: u64,
    pub coordinator_lookups: u64,
    pub commits_sent: u64,
    /// Partition offsets the coordinator stored.
    pub partitions_committed: u64,
    /// Of those, stamped with a newer generation than their lease's.
    pub partitions_restamped: u64,
    /// Partition offsets refused locally, never sent.
    pub partitions_fenced_locally: u64,
    /// Partition offsets the coordinator rejected, by error code.
    pub partitions_rejected_by_broker: BTreeMap<i16, u64>,
    pub partitions_failed: u64,
    /// Times a commit had to wait for a rebalance to finish.
    pub commits_deferred: u64,
    /// Responses of an older generation that were not applied (T32).
    pub stale_responses: u64,
    /// Offset lookup attempts that failed and were retried.
    pub offset_lookups_retried: u64,
    /// Events the observers' stream (`GroupHandle::events`) dropped before every receiver saw
    /// them (a receiver lagged by more than the stream holds); counted by the driver. The
    /// consumer's own control events travel losslessly.
    pub observer_events_dropped: u64,
}

/// A commit the machine holds, with the generation it is (or will be) stamped with.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct CommitView {
    pub id: CommitId,
    /// `None` while deferred until the next generation is known.
    pub stamped_with: Option<GenerationId>,
    pub partitions: Vec<(TopicPartition, i64)>,
}

/// An offset lookup the machine holds, retried until it is answered or its deadline passes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct OffsetLookupView {
    pub id: OffsetFetchId,
    pub partitions: Vec<TopicPartition>,
    /// Attempts that failed so far.
    pub failed_attempts: u32,
    pub last_error: Option<String>,
    /// How long the lookup has waited for its answer.
    pub waiting_ms: u64,
}

/// The last state change.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct TransitionView {
    pub from: StateKind,
    pub to: StateKind,
    pub reason: String,
    pub ms_ago: u64,
}

/// An owned, cloneable picture of one member of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct GroupSnapshot {
    pub group_id: String,
    pub group_instance_id: Option<String>,
    pub state: StateKind,
    pub generation: Option<Generation>,
    pub member_id: MemberId,
    pub is_leader: bool,
    pub protocol: Option<String>,
    pub coordinator: Option<i32>,
    pub assignment: Vec<OwnedPartition>,
    pub in_flight_commits: Vec<CommitView>,
    pub deferred_commits: Vec<CommitView>,
    /// Committed-offset lookups not answered yet (a delay here holds partitions' first fetch).
    pub offset_lookups: Vec<OffsetLookupView>,
    pub last_transition: Option<TransitionView>,
    pub pending_rejoin: Option<RejoinReason>,
    /// The next timer: its kind and how far away it is.
    pub next_timer: Option<(&'static str, u64)>,
    pub counters: GroupCounters,
}
