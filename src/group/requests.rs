//! What the machine asks the driver to send, and what the driver hands back.

use std::time::Duration;

use kafka_protocol::messages::{
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, HeartbeatRequest, HeartbeatResponse,
    JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, OffsetCommitRequest,
    OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse, SyncGroupRequest, SyncGroupResponse,
};

use crate::protocol::error_code::KafkaCode;
use crate::protocol::versions::NegotiatedVersions;

/// Identifies one request the machine emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u64);

/// A request body, already built for the version in [`OutgoingRequest::version`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum GroupRequest {
    /// Find the group's coordinator (on any broker) and connect to it; answer with
    /// [`super::GroupMachine::handle_coordinator_found`].
    FindCoordinator {
        /// `group.id`.
        group_id: String,
    },
    /// Partition counts of `topics`, from any broker's metadata; answer with
    /// [`super::GroupMachine::handle_metadata`]. The leader needs them for every topic some
    /// member subscribes to, and a member of a generation refreshes them every
    /// `metadata.max.age.ms`.
    Metadata {
        /// The topics to count partitions of.
        topics: Vec<String>,
    },
    /// Every topic of the cluster, from any broker's metadata, for a pattern subscription;
    /// answer with [`super::GroupMachine::handle_topic_listing`]. Sent before the first join and
    /// every `metadata.max.age.ms` after.
    ListTopics,
    /// The ids of `topics` (every topic's when `None`), from any broker's metadata, to name the
    /// topics of a consumer-protocol assignment (KIP-848 assigns by topic id); answer with
    /// [`super::GroupMachine::handle_topic_ids`].
    TopicIds {
        /// The topics to look up; `None`: all (a pattern subscription).
        topics: Option<Vec<String>>,
    },
    /// KIP-848's one membership request: join (member epoch 0), heartbeat and acknowledge an
    /// assignment (the partitions owned), leave (epoch -1, or -2 for a static member).
    ConsumerGroupHeartbeat(ConsumerGroupHeartbeatRequest),
    /// Join (or rejoin) the group.
    JoinGroup(JoinGroupRequest),
    /// Hand in the leader's assignment, or fetch this member's.
    SyncGroup(SyncGroupRequest),
    /// Keep the membership alive; the answer says when a rebalance started.
    Heartbeat(HeartbeatRequest),
    /// Leave the group.
    LeaveGroup(LeaveGroupRequest),
    /// Commit offsets of leases this member may commit.
    OffsetCommit(OffsetCommitRequest),
    /// Look up committed offsets.
    OffsetFetch(OffsetFetchRequest),
}

impl GroupRequest {
    /// The API's name, for logs and events.
    pub fn api_name(&self) -> &'static str {
        match self {
            GroupRequest::FindCoordinator { .. } => "FindCoordinator",
            GroupRequest::Metadata { .. } | GroupRequest::ListTopics | GroupRequest::TopicIds { .. } => "Metadata",
            GroupRequest::ConsumerGroupHeartbeat(_) => "ConsumerGroupHeartbeat",
            GroupRequest::JoinGroup(_) => "JoinGroup",
            GroupRequest::SyncGroup(_) => "SyncGroup",
            GroupRequest::Heartbeat(_) => "Heartbeat",
            GroupRequest::LeaveGroup(_) => "LeaveGroup",
            GroupRequest::OffsetCommit(_) => "OffsetCommit",
            GroupRequest::OffsetFetch(_) => "OffsetFetch",
        }
    }
}

/// One topic of a [`GroupRequest::ListTopics`] answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedTopic {
    /// Its name.
    pub name: String,
    /// Its partition count; `None` while the broker answers a transient error for it (a topic
    /// being created): it exists, and the count known before is kept.
    pub partitions: Option<i32>,
    /// An internal topic (`__consumer_offsets`, `__transaction_state`).
    pub internal: bool,
}

/// One request to send. All but FindCoordinator and the metadata requests go to the current coordinator, in
/// the order they are polled, on one connection.
#[derive(Debug, Clone, PartialEq)]
pub struct OutgoingRequest {
    /// Names the request in the answer the driver hands back.
    pub id: RequestId,
    /// The version `body` was built for (negotiated with the coordinator).
    pub version: i16,
    /// How long to wait for the answer before reporting [`RequestFailure::TimedOut`].
    pub timeout: Duration,
    /// What to send.
    pub body: GroupRequest,
}

/// A response, decoded at the version it was sent with.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum GroupResponse {
    /// Answers [`GroupRequest::JoinGroup`].
    JoinGroup(JoinGroupResponse),
    /// Answers [`GroupRequest::SyncGroup`].
    SyncGroup(SyncGroupResponse),
    /// Answers [`GroupRequest::Heartbeat`].
    Heartbeat(HeartbeatResponse),
    /// Answers [`GroupRequest::LeaveGroup`].
    LeaveGroup(LeaveGroupResponse),
    /// Answers [`GroupRequest::OffsetCommit`].
    OffsetCommit(OffsetCommitResponse),
    /// Answers [`GroupRequest::OffsetFetch`].
    OffsetFetch(OffsetFetchResponse),
    /// Answers [`GroupRequest::ConsumerGroupHeartbeat`].
    ConsumerGroupHeartbeat(ConsumerGroupHeartbeatResponse),
}

impl GroupResponse {
    /// The answer's error code: the top-level one, or for OffsetCommit the first partition's
    /// that is an error (for logs and metrics; the machine reads each partition's own).
    pub fn error_code(&self) -> KafkaCode {
        let code = match self {
            GroupResponse::JoinGroup(r) => r.error_code,
            GroupResponse::SyncGroup(r) => r.error_code,
            GroupResponse::Heartbeat(r) => r.error_code,
            GroupResponse::LeaveGroup(r) => r.error_code,
            GroupResponse::ConsumerGroupHeartbeat(r) => r.error_code,
            GroupResponse::OffsetCommit(r) => {
                r.topics.iter().flat_map(|t| &t.partitions).map(|p| p.error_code).find(|c| *c != 0).unwrap_or(0)
            }
            GroupResponse::OffsetFetch(r) => {
                if r.error_code != 0 {
                    r.error_code
                } else {
                    r.groups.iter().map(|g| g.error_code).find(|c| *c != 0).unwrap_or(0)
                }
            }
        };
        KafkaCode(code)
    }
}

/// The coordinator a FindCoordinator request led to, with the versions negotiated with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoordinatorFound {
    /// The coordinator's broker id.
    pub node_id: i32,
    /// The API versions negotiated on the connection to it: the group requests are built for
    /// them.
    pub versions: NegotiatedVersions,
}

/// Why a request got no usable response.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestFailure {
    /// The connection broke or could not be opened.
    Network(String),
    /// No response within the request's timeout.
    TimedOut,
    /// FindCoordinator answered with an error code.
    Broker(KafkaCode),
    /// The response could not be decoded.
    Malformed(String),
}

impl std::fmt::Display for RequestFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestFailure::Network(e) => write!(f, "network: {e}"),
            RequestFailure::TimedOut => write!(f, "timed out"),
            RequestFailure::Broker(code) => write!(f, "broker error {code}"),
            RequestFailure::Malformed(e) => write!(f, "malformed response: {e}"),
        }
    }
}

/// An OffsetFetch answer as `(group error code, rows)`, one row `(topic, partition, committed
/// offset, error code)` per partition: v8+ answers per group, v0-7 at the top level, in types of
/// the same shape.
pub(crate) fn offset_fetch_rows(r: &OffsetFetchResponse) -> (i16, Vec<(String, i32, i64, i16)>) {
    macro_rules! rows {
        ($topics:expr) => {
            $topics
                .iter()
                .flat_map(|t| {
                    t.partitions
                        .iter()
                        .map(move |p| (t.name.to_string(), p.partition_index, p.committed_offset, p.error_code))
                })
                .collect()
        };
    }
    match r.groups.first() {
        Some(g) => (g.error_code, rows!(g.topics)),
        None => (r.error_code, rows!(r.topics)),
    }
}
