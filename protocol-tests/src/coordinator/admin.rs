//! ApiVersions, Metadata, FindCoordinator (§6.1), DescribeGroups and ListGroups.

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    ApiVersionsResponse, BrokerId, DescribeGroupsRequest, DescribeGroupsResponse, FindCoordinatorRequest,
    FindCoordinatorResponse, GroupId, ListGroupsRequest, ListGroupsResponse, MetadataRequest, MetadataResponse,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::errors::*;
use super::group::GroupState;
use super::{advertised, CoordinatorConfig, GroupApi, Node, ScriptedCoordinator};

pub(crate) fn api_versions(config: &CoordinatorConfig, error: i16) -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_error_code(error).with_api_keys(
        advertised(config)
            .iter()
            .map(|(key, min, max)| {
                ApiVersion::default().with_api_key(*key as i16).with_min_version(*min).with_max_version(*max)
            })
            .collect(),
    )
}

/// This broker leads every partition of the configured topics; the coordinating broker of
/// [`CoordinatorConfig::coordinator`], if any, is listed too.
pub(crate) fn metadata(config: &CoordinatorConfig, version: i16, r: &MetadataRequest) -> MetadataResponse {
    let requested: Vec<Option<String>> = match &r.topics {
        // v0: an empty list means all topics; v1+: null means all.
        Some(topics) if !(version == 0 && topics.is_empty()) => {
            topics.iter().map(|t| t.name.as_ref().map(|n| n.to_string())).collect()
        }
        _ => config.topics.keys().cloned().map(Some).collect(),
    };
    let node = BrokerId(config.node_id);
    let topics = requested
        .into_iter()
        .map(|name| {
            let topic =
                MetadataResponseTopic::default().with_name(name.clone().map(|n| TopicName(StrBytes::from_string(n))));
            let topic = match (&name, version >= 10) {
                (Some(n), true) if config.topics.contains_key(n) => topic.with_topic_id(super::topic_id(n)),
                _ => topic,
            };
            match name.as_ref().and_then(|n| config.topics.get(n)) {
                Some(count) => topic.with_partitions(
                    (0..*count)
                        .map(|p| {
                            let partition = MetadataResponsePartition::default()
                                .with_partition_index(p)
                                .with_leader_id(node)
                                .with_replica_nodes(vec![node])
                                .with_isr_nodes(vec![node]);
                            if version >= 7 {
                                partition.with_leader_epoch(0)
                            } else {
                                partition
                            }
                        })
                        .collect(),
                ),
                None => topic.with_error_code(UNKNOWN_TOPIC_OR_PARTITION),
            }
        })
        .collect();
    let this = Node { id: config.node_id, host: config.host.clone(), port: config.port };
    let brokers = std::iter::once(&this)
        .chain(&config.coordinator)
        .map(|n| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(n.id))
                .with_host(StrBytes::from_string(n.host.clone()))
                .with_port(n.port)
        })
        .collect();
    let response = MetadataResponse::default().with_brokers(brokers).with_topics(topics);
    let response = if version >= 1 { response.with_controller_id(node) } else { response };
    if version >= 2 {
        response.with_cluster_id(Some(StrBytes::from_static_str("kgroup-scripted")))
    } else {
        response
    }
}

/// FindCoordinator: `coordinator` coordinates every group and transactional id (§6.1).
pub(crate) fn find_coordinator(coordinator: Node, version: i16, r: &FindCoordinatorRequest) -> FindCoordinatorResponse {
    // CoordinatorType.forId throws for unknown types: INVALID_REQUEST.
    let error = if (0..=1).contains(&r.key_type) { NONE } else { INVALID_REQUEST };
    let (node, host, port) =
        if error == NONE { (coordinator.id, coordinator.host, coordinator.port) } else { (-1, String::new(), -1) };
    if version >= 4 {
        FindCoordinatorResponse::default().with_coordinators(
            r.coordinator_keys
                .iter()
                .map(|key| {
                    Coordinator::default()
                        .with_key(key.clone())
                        .with_node_id(BrokerId(node))
                        .with_host(StrBytes::from_string(host.clone()))
                        .with_port(port)
                        .with_error_code(error)
                })
                .collect(),
        )
    } else {
        FindCoordinatorResponse::default()
            .with_error_code(error)
            .with_node_id(BrokerId(node))
            .with_host(StrBytes::from_string(host))
            .with_port(port)
    }
}

impl ScriptedCoordinator {
    /// DescribeGroups (GC 1091-1103): members carry metadata and assignment only when Stable;
    /// an unknown group is reported `Dead` with NONE.
    pub(crate) fn describe_groups(&self, version: i16, r: &DescribeGroupsRequest) -> DescribeGroupsResponse {
        let groups = r
            .groups
            .iter()
            .map(|group_id| {
                let described = DescribedGroup::default().with_group_id(group_id.clone());
                if let Some(error) = self.validate_group_status(group_id.as_str(), GroupApi::Describe) {
                    return described.with_error_code(error);
                }
                let Some(g) = self.groups.get(group_id.as_str()) else {
                    return described.with_group_state(StrBytes::from_static_str("Dead"));
                };
                let stable = g.is(GroupState::Stable);
                let protocol = g.protocol_name.clone().unwrap_or_default();
                described
                    .with_group_state(StrBytes::from_static_str(g.state.name()))
                    .with_protocol_type(StrBytes::from_string(g.protocol_type.clone().unwrap_or_default()))
                    .with_protocol_data(StrBytes::from_string(if stable { protocol.clone() } else { String::new() }))
                    .with_members(
                        g.members
                            .iter()
                            .map(|m| {
                                let member = DescribedGroupMember::default()
                                    .with_member_id(StrBytes::from_string(m.id.clone()))
                                    .with_client_id(StrBytes::from_string(m.client_id.clone()))
                                    .with_client_host(StrBytes::from_string(m.client_host.clone()));
                                let member = if version >= 4 {
                                    member.with_group_instance_id(m.instance_id.clone().map(StrBytes::from_string))
                                } else {
                                    member
                                };
                                if stable {
                                    member
                                        .with_member_metadata(m.metadata(&protocol))
                                        .with_member_assignment(m.assignment.clone())
                                } else {
                                    member
                                }
                            })
                            .collect(),
                    )
            })
            .collect();
        DescribeGroupsResponse::default().with_groups(groups)
    }

    /// ListGroups (GC 1077-1089): LOAD_IN_PROGRESS while loading; groups this broker does not
    /// coordinate (unloaded, Dead) are not listed.
    pub(crate) fn list_groups(&self, version: i16, r: &ListGroupsRequest) -> ListGroupsResponse {
        let error = if self.is_loading() { COORDINATOR_LOAD_IN_PROGRESS } else { NONE };
        let states: Vec<String> =
            if version >= 4 { r.states_filter.iter().map(|s| s.to_string()).collect() } else { Vec::new() };
        let groups = self
            .groups
            .values()
            .filter(|g| !g.is(GroupState::Dead))
            .filter(|g| states.is_empty() || states.iter().any(|s| s == g.state.name()))
            .map(|g| {
                let listed = ListedGroup::default()
                    .with_group_id(GroupId(StrBytes::from_string(g.id.clone())))
                    .with_protocol_type(StrBytes::from_string(g.protocol_type.clone().unwrap_or_default()));
                if version >= 4 {
                    listed.with_group_state(StrBytes::from_static_str(g.state.name()))
                } else {
                    listed
                }
            })
            .collect();
        ListGroupsResponse::default().with_error_code(error).with_groups(groups)
    }
}
