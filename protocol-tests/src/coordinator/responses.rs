//! Version-shaped responses: Kafka's `JoinGroupResult` / `SyncGroupResult` and the fields each
//! API version may carry (the encoder refuses fields a version does not have).

use bytes::Bytes;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupResponse, SyncGroupResponse};
use kafka_protocol::protocol::StrBytes;

/// `JoinGroupResult` (GC 1786-1797).
#[derive(Debug, Clone)]
pub(crate) struct JoinResult {
    pub members: Vec<JoinGroupResponseMember>,
    pub member_id: String,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub skip_assignment: bool,
    pub error: i16,
}

impl JoinResult {
    /// An error result: generation -1, leader "", no protocol (GC 1786-1797).
    pub(crate) fn error(member_id: String, error: i16) -> Self {
        JoinResult {
            members: Vec::new(),
            member_id,
            generation: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            skip_assignment: false,
            error,
        }
    }
}

pub(crate) fn join_response(version: i16, r: JoinResult) -> JoinGroupResponse {
    // Below v7 the protocol name is not nullable: Kafka sends "" (JoinGroupResponse.java 33-38).
    let protocol_name = if version >= 7 {
        r.protocol_name.map(StrBytes::from_string)
    } else {
        Some(StrBytes::from_string(r.protocol_name.unwrap_or_default()))
    };
    let members =
        r.members.into_iter().map(|m| if version >= 5 { m } else { m.with_group_instance_id(None) }).collect();
    JoinGroupResponse::default()
        .with_error_code(r.error)
        .with_generation_id(r.generation)
        .with_protocol_type(if version >= 7 { r.protocol_type.map(StrBytes::from_string) } else { None })
        .with_protocol_name(protocol_name)
        .with_leader(StrBytes::from_string(r.leader))
        .with_skip_assignment(version >= 9 && r.skip_assignment)
        .with_member_id(StrBytes::from_string(r.member_id))
        .with_members(members)
}

/// `SyncGroupResult`.
#[derive(Debug, Clone)]
pub(crate) struct SyncResult {
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
    pub error: i16,
}

impl SyncResult {
    pub(crate) fn error(error: i16) -> Self {
        SyncResult { protocol_type: None, protocol_name: None, assignment: Bytes::new(), error }
    }
}

pub(crate) fn sync_response(version: i16, r: SyncResult) -> SyncGroupResponse {
    let (protocol_type, protocol_name) = if version >= 5 {
        (r.protocol_type.map(StrBytes::from_string), r.protocol_name.map(StrBytes::from_string))
    } else {
        (None, None)
    };
    SyncGroupResponse::default()
        .with_error_code(r.error)
        .with_protocol_type(protocol_type)
        .with_protocol_name(protocol_name)
        .with_assignment(r.assignment)
}
