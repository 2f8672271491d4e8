//! The group requests, one function per API, built for the negotiated version from plain
//! inputs: what the machine sends, and what the golden-bytes tests pin.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    GroupId, HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest, OffsetCommitRequest, OffsetFetchRequest,
    SyncGroupRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::config::GroupConfig;
use super::types::{Generation, TopicPartition};

/// The protocol type of every group this client joins.
pub const PROTOCOL_TYPE: &str = "consumer";

pub(super) fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

fn millis(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}

fn group_id(config: &GroupConfig) -> GroupId {
    GroupId(str_bytes(&config.group_id))
}

fn instance_id(config: &GroupConfig) -> Option<StrBytes> {
    config.group_instance_id.as_deref().map(str_bytes)
}

/// A JoinGroup offering every configured assignor with the same subscription `metadata`;
/// `reason` says why (KIP-800, v8+).
pub fn join_group(
    config: &GroupConfig,
    member_id: &str,
    metadata: &Bytes,
    reason: &str,
    version: i16,
) -> JoinGroupRequest {
    let protocols = config
        .assignors
        .iter()
        .map(|a| JoinGroupRequestProtocol::default().with_name(str_bytes(a.name())).with_metadata(metadata.clone()))
        .collect();
    let mut request = JoinGroupRequest::default()
        .with_group_id(group_id(config))
        .with_session_timeout_ms(millis(config.session_timeout))
        .with_member_id(str_bytes(member_id))
        .with_protocol_type(str_bytes(PROTOCOL_TYPE))
        .with_protocols(protocols);
    if version >= 1 {
        request = request.with_rebalance_timeout_ms(millis(config.rebalance_timeout));
    }
    if version >= 5 {
        request = request.with_group_instance_id(instance_id(config));
    }
    if version >= 8 {
        request = request.with_reason(Some(str_bytes(reason)));
    }
    request
}

/// A SyncGroup for `generation` of the group's `protocol`; a leader hands out `assignments`
/// (member id and its encoded assignment), a follower none.
pub fn sync_group(
    config: &GroupConfig,
    generation: &Generation,
    protocol: &str,
    assignments: Vec<(String, Bytes)>,
    version: i16,
) -> SyncGroupRequest {
    let assignments = assignments
        .into_iter()
        .map(|(member, assignment)| {
            SyncGroupRequestAssignment::default().with_member_id(str_bytes(&member)).with_assignment(assignment)
        })
        .collect();
    let mut request = SyncGroupRequest::default()
        .with_group_id(group_id(config))
        .with_generation_id(generation.id.0)
        .with_member_id(str_bytes(generation.member_id.as_str()))
        .with_assignments(assignments);
    if version >= 3 {
        request = request.with_group_instance_id(instance_id(config));
    }
    if version >= 5 {
        // Mandatory on v5 (T23).
        request =
            request.with_protocol_type(Some(str_bytes(PROTOCOL_TYPE))).with_protocol_name(Some(str_bytes(protocol)));
    }
    request
}

/// Heartbeat for `generation`.
pub fn heartbeat(config: &GroupConfig, generation: &Generation, version: i16) -> HeartbeatRequest {
    let request = HeartbeatRequest::default()
        .with_group_id(group_id(config))
        .with_generation_id(generation.id.0)
        .with_member_id(str_bytes(generation.member_id.as_str()));
    if version >= 3 {
        request.with_group_instance_id(instance_id(config))
    } else {
        request
    }
}

/// A LeaveGroup of one dynamic member; `reason` says why (KIP-800, v5+).
pub fn leave_group(config: &GroupConfig, member_id: &str, reason: &str, version: i16) -> LeaveGroupRequest {
    let request = LeaveGroupRequest::default().with_group_id(group_id(config));
    if version >= 3 {
        let mut identity = MemberIdentity::default().with_member_id(str_bytes(member_id));
        if version >= 5 {
            identity = identity.with_reason(Some(str_bytes(reason)));
        }
        request.with_members(vec![identity])
    } else {
        request.with_member_id(str_bytes(member_id))
    }
}

/// An OffsetCommit of `offsets` (the next offset to read per partition) stamped with
/// `generation`, grouped by topic in name order.
pub fn offset_commit<'a>(
    config: &GroupConfig,
    generation: &Generation,
    offsets: impl IntoIterator<Item = (&'a TopicPartition, i64)>,
    version: i16,
) -> OffsetCommitRequest {
    let mut topics: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
    for (partition, offset) in offsets {
        topics.entry(&partition.topic).or_default().push(
            OffsetCommitRequestPartition::default()
                .with_partition_index(partition.partition)
                .with_committed_offset(offset)
                .with_committed_leader_epoch(-1)
                .with_committed_metadata(Some(StrBytes::default())),
        );
    }
    let topics = topics
        .into_iter()
        .map(|(name, partitions)| {
            OffsetCommitRequestTopic::default().with_name(TopicName(str_bytes(name))).with_partitions(partitions)
        })
        .collect();
    let mut request = OffsetCommitRequest::default()
        .with_group_id(group_id(config))
        .with_generation_id_or_member_epoch(generation.id.0)
        .with_member_id(str_bytes(generation.member_id.as_str()))
        .with_topics(topics);
    if (2..=4).contains(&version) {
        request = request.with_retention_time_ms(-1);
    }
    if version >= 7 {
        request = request.with_group_instance_id(instance_id(config));
    }
    request
}

/// An OffsetFetch of `partitions`, grouped by topic in name order; from v7 on it asks for stable
/// offsets only (offsets of open transactions make the coordinator answer UNSTABLE_OFFSET_COMMIT).
pub fn offset_fetch(config: &GroupConfig, partitions: &[TopicPartition], version: i16) -> OffsetFetchRequest {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for tp in partitions {
        by_topic.entry(&tp.topic).or_default().push(tp.partition);
    }
    if version >= 8 {
        let topics = by_topic
            .into_iter()
            .map(|(t, p)| {
                OffsetFetchRequestTopics::default().with_name(TopicName(str_bytes(t))).with_partition_indexes(p)
            })
            .collect();
        let group = OffsetFetchRequestGroup::default().with_group_id(group_id(config)).with_topics(Some(topics));
        return OffsetFetchRequest::default().with_groups(vec![group]).with_require_stable(true);
    }
    let topics = by_topic
        .into_iter()
        .map(|(t, p)| OffsetFetchRequestTopic::default().with_name(TopicName(str_bytes(t))).with_partition_indexes(p))
        .collect();
    let request = OffsetFetchRequest::default().with_group_id(group_id(config)).with_topics(Some(topics));
    if version >= 7 {
        request.with_require_stable(true)
    } else {
        request
    }
}
