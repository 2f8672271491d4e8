//! Fault injection: per-API errors, delays, lost responses and connection cuts.

use std::time::Duration;

use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::list_groups_response::ListGroupsResponse;
use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::offset_fetch_response::OffsetFetchResponseGroup;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, BrokerId, DescribeGroupsResponse, FindCoordinatorResponse, GroupId, HeartbeatResponse,
    LeaveGroupResponse, OffsetCommitResponse, OffsetFetchResponse, RequestKind, ResponseKind, SyncGroupResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::responses::{join_response, JoinResult};

/// Which requests of the fault's API a fault applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Match {
    /// Every request of the API.
    Any,
    /// Only the n-th request of the API (1-based) received after the fault was injected.
    Nth(u32),
    /// Requests carrying this member id (JoinGroup, SyncGroup, Heartbeat, OffsetCommit, or any
    /// member identity of a LeaveGroup).
    Member(String),
    /// Requests for this group id.
    Group(String),
}

/// What happens to a matched request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FaultAction {
    /// Answer with this error code instead of processing the request. OffsetCommit puts it on
    /// every partition, OffsetFetch at group level, LeaveGroup at top level.
    Error(i16),
    /// Process normally, but emit the response this long after it is produced. The
    /// connection stays muted meanwhile. A delayed OffsetCommit stays pending (OffsetFetch with
    /// RequireStable sees UNSTABLE_OFFSET_COMMIT) until the response goes out, like a slow append.
    Delay(Duration),
    /// Process normally and never answer; the connection stays muted (the client must time out).
    Drop,
    /// Close the connection when the request arrives, without processing it.
    Cut,
    /// Process the request, then close the connection instead of answering. A parked
    /// JoinGroup stays parked (the member still counts as rejoining), as in Kafka.
    ProcessThenCut,
    /// Answer with this error code only when the connection's next request arrives (the
    /// connection stays muted until then): the client reads the answer after it sent that
    /// request, so the answer is late for the state the client is in by then (T32).
    ErrorWhenNext(i16),
    /// Process normally, but a successful JoinGroup answer names this protocol type (T15c).
    ProtocolType(&'static str),
}

/// One injected fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub api: ApiKey,
    pub matcher: Match,
    pub action: FaultAction,
    /// How many more times it applies; `None` means forever.
    pub remaining: Option<u32>,
}

impl Fault {
    /// A fault on every request of `api`, forever.
    pub fn new(api: ApiKey, action: FaultAction) -> Self {
        Fault { api, matcher: Match::Any, action, remaining: None }
    }

    pub fn matching(mut self, matcher: Match) -> Self {
        self.matcher = matcher;
        self
    }

    pub fn times(mut self, n: u32) -> Self {
        self.remaining = Some(n);
        self
    }

    pub fn once(self) -> Self {
        self.times(1)
    }
}

#[derive(Debug)]
pub(crate) struct ActiveFault {
    pub fault: Fault,
    pub seen: u32,
}

/// Group id and member ids a request carries, for [`Match`].
pub(crate) fn request_identity(request: &RequestKind) -> (Option<String>, Vec<String>) {
    match request {
        RequestKind::JoinGroup(r) => (Some(r.group_id.to_string()), vec![r.member_id.to_string()]),
        RequestKind::SyncGroup(r) => (Some(r.group_id.to_string()), vec![r.member_id.to_string()]),
        RequestKind::Heartbeat(r) => (Some(r.group_id.to_string()), vec![r.member_id.to_string()]),
        RequestKind::OffsetCommit(r) => (Some(r.group_id.to_string()), vec![r.member_id.to_string()]),
        RequestKind::ConsumerGroupHeartbeat(r) => (Some(r.group_id.to_string()), vec![r.member_id.to_string()]),
        RequestKind::LeaveGroup(r) => {
            let mut ids = vec![r.member_id.to_string()];
            ids.extend(r.members.iter().map(|m| m.member_id.to_string()));
            (Some(r.group_id.to_string()), ids)
        }
        RequestKind::OffsetFetch(r) => {
            let group = match r.groups.first() {
                Some(g) if r.group_id.is_empty() => g.group_id.to_string(),
                _ => r.group_id.to_string(),
            };
            (Some(group), Vec::new())
        }
        RequestKind::FindCoordinator(r) => {
            // v4+ batches its keys in `coordinator_keys`.
            let key = r.coordinator_keys.first().filter(|_| r.key.is_empty()).unwrap_or(&r.key);
            (Some(key.to_string()), Vec::new())
        }
        _ => (None, Vec::new()),
    }
}

pub(crate) fn matches(matcher: &Match, seen: u32, group: Option<&str>, members: &[String]) -> bool {
    match matcher {
        Match::Any => true,
        Match::Nth(n) => seen == *n,
        Match::Member(id) => members.iter().any(|m| m == id),
        Match::Group(g) => group == Some(g.as_str()),
    }
}

/// The response Kafka would send if the coordinator logic had returned `code`. `None` for APIs
/// without an error field we can use (the connection is cut instead).
pub(crate) fn error_response(request: &RequestKind, api_version: i16, code: i16) -> Option<ResponseKind> {
    let response = match request {
        RequestKind::JoinGroup(r) => {
            ResponseKind::JoinGroup(join_response(api_version, JoinResult::error(r.member_id.to_string(), code)))
        }
        RequestKind::SyncGroup(_) => ResponseKind::SyncGroup(SyncGroupResponse::default().with_error_code(code)),
        RequestKind::Heartbeat(_) => ResponseKind::Heartbeat(HeartbeatResponse::default().with_error_code(code)),
        RequestKind::LeaveGroup(_) => ResponseKind::LeaveGroup(LeaveGroupResponse::default().with_error_code(code)),
        RequestKind::ConsumerGroupHeartbeat(_) => ResponseKind::ConsumerGroupHeartbeat(
            kafka_protocol::messages::ConsumerGroupHeartbeatResponse::default()
                .with_error_code(code)
                .with_member_epoch(-1),
        ),
        RequestKind::OffsetCommit(r) => ResponseKind::OffsetCommit(
            OffsetCommitResponse::default().with_topics(
                r.topics
                    .iter()
                    .map(|t| {
                        OffsetCommitResponseTopic::default().with_name(t.name.clone()).with_partitions(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    OffsetCommitResponsePartition::default()
                                        .with_partition_index(p.partition_index)
                                        .with_error_code(code)
                                })
                                .collect(),
                        )
                    })
                    .collect(),
            ),
        ),
        RequestKind::OffsetFetch(r) => {
            if api_version >= 8 {
                ResponseKind::OffsetFetch(
                    OffsetFetchResponse::default().with_groups(
                        r.groups
                            .iter()
                            .map(|g| {
                                OffsetFetchResponseGroup::default()
                                    .with_group_id(g.group_id.clone())
                                    .with_error_code(code)
                            })
                            .collect(),
                    ),
                )
            } else {
                ResponseKind::OffsetFetch(OffsetFetchResponse::default().with_error_code(code))
            }
        }
        RequestKind::FindCoordinator(r) => {
            if api_version >= 4 {
                ResponseKind::FindCoordinator(
                    FindCoordinatorResponse::default().with_coordinators(
                        r.coordinator_keys
                            .iter()
                            .map(|k| {
                                Coordinator::default()
                                    .with_key(k.clone())
                                    .with_node_id(BrokerId(-1))
                                    .with_host(StrBytes::from_static_str(""))
                                    .with_port(-1)
                                    .with_error_code(code)
                            })
                            .collect(),
                    ),
                )
            } else {
                ResponseKind::FindCoordinator(
                    FindCoordinatorResponse::default()
                        .with_error_code(code)
                        .with_node_id(BrokerId(-1))
                        .with_host(StrBytes::from_static_str(""))
                        .with_port(-1),
                )
            }
        }
        RequestKind::DescribeGroups(r) => ResponseKind::DescribeGroups(
            DescribeGroupsResponse::default().with_groups(
                r.groups
                    .iter()
                    .map(|g: &GroupId| DescribedGroup::default().with_group_id(g.clone()).with_error_code(code))
                    .collect(),
            ),
        ),
        RequestKind::ListGroups(_) => ResponseKind::ListGroups(ListGroupsResponse::default().with_error_code(code)),
        RequestKind::ApiVersions(_) => ResponseKind::ApiVersions(ApiVersionsResponse::default().with_error_code(code)),
        _ => return None,
    };
    Some(response)
}
