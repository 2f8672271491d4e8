//! The debug API's owned view of a member: state, generation, assignment with ownership
//! streaks, commits in flight and deferred, lookups, and counters.

use std::collections::BTreeMap;

use super::events::{CommitId, OffsetFetchId, OwnedPartition, RejoinReason, StateKind};
use super::types::{Generation, GenerationId, MemberId, TopicPartition};

/// Counters since the machine was created.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct GroupCounters {
    /// JoinGroup requests sent.
    pub joins_sent: u64,
    /// SyncGroup requests sent.
    pub syncs_sent: u64,
    /// Heartbeat requests sent.
    pub heartbeats_sent: u64,
    /// Rebalances this member went through (a revoke window or a rejoin started one).
    pub rebalances: u64,
    /// Rebalances, the first join included, that ended with an assignment.
    pub rebalances_completed: u64,
    /// From the start of the last finished rebalance to its assignment, in milliseconds.
    pub last_rebalance_ms: Option<u64>,
    /// The longest rebalance so far, in milliseconds.
    pub max_rebalance_ms: u64,
    /// All finished rebalances together, in milliseconds.
    pub total_rebalance_ms: u64,
    /// FindCoordinator requests sent.
    pub coordinator_lookups: u64,
    /// OffsetCommit requests sent.
    pub commits_sent: u64,
    /// Partition offsets the coordinator stored.
    pub partitions_committed: u64,
    /// Of those, stamped with a newer generation than their lease's.
    pub partitions_restamped: u64,
    /// Partition offsets refused locally, never sent.
    pub partitions_fenced_locally: u64,
    /// Partition offsets the coordinator rejected, by error code.
    pub partitions_rejected_by_broker: BTreeMap<i16, u64>,
    /// Partition offsets that failed otherwise (see [`super::CommitFailure`]).
    pub partitions_failed: u64,
    /// Times a commit had to wait for a rebalance to finish.
    pub commits_deferred: u64,
    /// Responses of an older generation that were not applied.
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
    /// The commit.
    pub id: CommitId,
    /// `None` while deferred until the next generation is known.
    pub stamped_with: Option<GenerationId>,
    /// Each partition with the offset to store.
    pub partitions: Vec<(TopicPartition, i64)>,
}

/// An offset lookup the machine holds, retried until it is answered or its deadline passes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct OffsetLookupView {
    /// The lookup.
    pub id: OffsetFetchId,
    /// The partitions asked about.
    pub partitions: Vec<TopicPartition>,
    /// Attempts that failed so far.
    pub failed_attempts: u32,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// How long the lookup has waited for its answer.
    pub waiting_ms: u64,
}

/// The last state change.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct TransitionView {
    /// The state left.
    pub from: StateKind,
    /// The state entered.
    pub to: StateKind,
    /// Why, in words.
    pub reason: String,
    /// How long ago, in milliseconds.
    pub ms_ago: u64,
}

/// An owned, cloneable picture of one member of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct GroupSnapshot {
    /// `group.id`.
    pub group_id: String,
    /// `group.instance.id`, for a static member.
    pub group_instance_id: Option<String>,
    /// The topics subscribed to now: those named, or those the pattern matched in the latest
    /// listing of the cluster's topics (empty before the first one). After a change, the
    /// member's next JoinGroup names them.
    pub subscription: Vec<String>,
    /// The pattern of a pattern subscription.
    pub pattern: Option<String>,
    /// `group.protocol`: `classic`, or `consumer` (KIP-848).
    pub group_protocol: &'static str,
    /// The member's state.
    pub state: StateKind,
    /// The generation the member belongs to, if any; under the consumer protocol its member
    /// epoch.
    pub generation: Option<Generation>,
    /// The member id the coordinator gave (empty before the first join).
    pub member_id: MemberId,
    /// Whether this member computes the group's assignment.
    pub is_leader: bool,
    /// The assignor the group agreed on, while the member is in a generation.
    pub protocol: Option<String>,
    /// The coordinator's broker id, when known.
    pub coordinator: Option<i32>,
    /// The partitions owned, with the start of each ownership streak (under the consumer
    /// protocol the member epoch it was assigned in: its assignment epoch, KIP-1251).
    pub assignment: Vec<OwnedPartition>,
    /// The commit in flight, if any.
    pub in_flight_commits: Vec<CommitView>,
    /// Commits waiting for a rebalance to finish.
    pub deferred_commits: Vec<CommitView>,
    /// Committed-offset lookups not answered yet (a delay here holds partitions' first fetch).
    pub offset_lookups: Vec<OffsetLookupView>,
    /// The last state change.
    pub last_transition: Option<TransitionView>,
    /// Why the member is about to rejoin (awaiting a join, or in a revoke window).
    pub pending_rejoin: Option<RejoinReason>,
    /// The next timer: its kind and how far away it is.
    pub next_timer: Option<(&'static str, u64)>,
    /// Counters since the machine was created.
    pub counters: GroupCounters,
}
