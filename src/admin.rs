//! Seeing a group from outside: its listing, members, committed offsets and lag, as
//! `kafka-consumer-groups.sh --describe` shows them, without joining it.
//!
//! Every answer goes through the connection layer, so its body passes the bounds check of every
//! response (`protocol::bounds`) before it is decoded, and members' subscription and assignment
//! bytes go through the consumer protocol's checked decoder: a broker's counts and lengths
//! never size an allocation, and bytes that do not decode are a value in the member's entry.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::Future;

use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use kafka_protocol::messages::{
    ApiKey, DescribeGroupsRequest, DescribeGroupsResponse, GroupId, ListGroupsRequest, OffsetFetchRequest,
};
use kafka_protocol::protocol::StrBytes;

use crate::driver::cluster::{Cluster, ClusterConfig, MetadataSnapshot};
use crate::driver::connection::{check_code, Connection};
use crate::driver::fetcher::{look_up_offsets, IsolationLevel};
use crate::error::{Error, Result};
use crate::group::requests::offset_fetch_rows;
use crate::group::TopicPartition;
use crate::protocol::consumer_protocol::{decode_assignment, Subscription};
use crate::protocol::error_code::{codes, ErrorAction};
use crate::protocol::ProtocolError;

/// A group's state as its coordinator names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum GroupState {
    /// No members; the group may still hold committed offsets.
    Empty,
    /// Members are (re)joining.
    PreparingRebalance,
    /// Every member joined; the leader's assignment is awaited.
    CompletingRebalance,
    /// Members hold their assignment.
    Stable,
    /// The group does not exist (any more).
    Dead,
    /// A state this client does not name (such as those of KIP-848 groups), as sent.
    Other(String),
}

impl GroupState {
    /// The state named by a ListGroups or DescribeGroups answer.
    pub fn parse(name: &str) -> GroupState {
        match name {
            "Empty" => GroupState::Empty,
            "PreparingRebalance" => GroupState::PreparingRebalance,
            "CompletingRebalance" => GroupState::CompletingRebalance,
            "Stable" => GroupState::Stable,
            "Dead" => GroupState::Dead,
            other => GroupState::Other(other.to_owned()),
        }
    }

    /// The name on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
            GroupState::Other(name) => name,
        }
    }
}

impl fmt::Display for GroupState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One group as ListGroups names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    /// The group id.
    pub group_id: String,
    /// Its state (from ListGroups v4+, else from DescribeGroups).
    pub state: GroupState,
    /// `consumer` for consumer groups, `connect` for Connect workers, ...
    pub protocol_type: String,
}

/// Why a member's subscription or assignment is not shown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MemberBytesError {
    /// The group does not use the consumer protocol, so its bytes are not ours to read.
    #[error("protocol type {0:?} is not the consumer protocol")]
    NotConsumerProtocol(String),
    /// The bytes do not decode as the consumer protocol.
    #[error(transparent)]
    Malformed(#[from] ProtocolError),
}

/// One member as DescribeGroups describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    /// The member id the coordinator gave.
    pub member_id: String,
    /// `group.instance.id`, for a static member.
    pub group_instance_id: Option<String>,
    /// The member's `client.id`.
    pub client_id: String,
    /// The host it connected from, as the coordinator saw it.
    pub host: String,
    /// Its subscription; `None` when the coordinator sent none (it sends them only while the
    /// group is Stable).
    pub subscription: Result<Option<Subscription>, MemberBytesError>,
    /// The partitions assigned to it (none outside Stable).
    pub assignment: Result<Vec<TopicPartition>, MemberBytesError>,
}

/// A group as its coordinator describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    /// The group id.
    pub group_id: String,
    /// The coordinator's broker id.
    pub coordinator: i32,
    /// The group's state.
    pub state: GroupState,
    /// `consumer` for consumer groups.
    pub protocol_type: String,
    /// The protocol the members agreed on (the assignor of a consumer group); empty outside a
    /// generation.
    pub protocol: String,
    /// The members.
    pub members: Vec<MemberDescription>,
}

impl GroupDescription {
    fn from_described(coordinator: i32, described: &DescribedGroup) -> GroupDescription {
        let protocol_type = described.protocol_type.to_string();
        let consumer = protocol_type == "consumer";
        let not_ours = || MemberBytesError::NotConsumerProtocol(protocol_type.clone());
        let members = described
            .members
            .iter()
            .map(|m| MemberDescription {
                member_id: m.member_id.to_string(),
                group_instance_id: m.group_instance_id.as_ref().map(|s| s.to_string()),
                client_id: m.client_id.to_string(),
                host: m.client_host.to_string(),
                subscription: match (consumer, m.member_metadata.is_empty()) {
                    (_, true) => Ok(None),
                    (true, false) => Subscription::decode(&m.member_metadata).map(Some).map_err(Into::into),
                    (false, false) => Err(not_ours()),
                },
                assignment: match (consumer, m.member_assignment.is_empty()) {
                    (_, true) => Ok(Vec::new()),
                    (true, false) => decode_assignment(&m.member_assignment).map_err(Into::into),
                    (false, false) => Err(not_ours()),
                },
            })
            .collect();
        GroupDescription {
            group_id: described.group_id.to_string(),
            coordinator,
            state: GroupState::parse(&described.group_state),
            protocol_type,
            protocol: described.protocol_data.to_string(),
            members,
        }
    }

    /// Whether the coordinator left out what a Stable group's description carries (the
    /// protocol, and members' client ids, hosts, subscriptions and assignments), as nisshi
    /// 0.8 does: owners are then unknown, not absent.
    pub fn lacks_member_details(&self) -> bool {
        self.state == GroupState::Stable && self.protocol.is_empty()
    }

    /// The member whose assignment holds `partition`.
    pub fn owner_of(&self, partition: &TopicPartition) -> Option<&MemberDescription> {
        self.members.iter().find(|m| m.assignment.as_ref().is_ok_and(|a| a.contains(partition)))
    }
}

/// One partition's progress in a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    /// The partition.
    pub partition: TopicPartition,
    /// The group's committed offset; `None` when nothing is committed.
    pub committed: Option<i64>,
    /// The log end offset (high watermark); `None` when the partition has no leader or its
    /// topic is gone (a group keeps offsets of deleted topics).
    pub log_end: Option<i64>,
    /// `log_end - committed`, when both are known.
    pub lag: Option<i64>,
    /// The member id of the member it is assigned to.
    pub owner: Option<String>,
}

/// A group's description with the progress of every partition it owns or committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupLag {
    /// The group.
    pub description: GroupDescription,
    /// Every partition assigned to a member or with a committed offset, sorted.
    pub partitions: Vec<PartitionLag>,
}

impl GroupLag {
    /// The sum of the known lags.
    pub fn total_lag(&self) -> i64 {
        self.partitions.iter().filter_map(|p| p.lag).sum()
    }
}

/// Reads groups without joining them. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Admin {
    cluster: Cluster,
}

impl Admin {
    /// An admin over an existing cluster view (its connections are shared).
    pub fn new(cluster: Cluster) -> Admin {
        Admin { cluster }
    }

    /// Connects to the cluster (see [`Cluster::connect`]).
    pub async fn connect(config: ClusterConfig) -> Result<Admin> {
        Ok(Admin::new(Cluster::connect(config).await?))
    }

    /// The cluster view it uses.
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// Every group of the cluster. Each broker lists only the groups it coordinates, so the
    /// request goes to every broker; one that fails makes the listing an error, not a part.
    pub async fn list_groups(&self) -> Result<Vec<GroupListing>> {
        self.list_groups_in(&[]).await
    }

    /// The groups in one of `states` (all groups when empty). The broker filters from
    /// ListGroups v4 on (KIP-518); below it, states come from DescribeGroups and are filtered
    /// here.
    pub async fn list_groups_in(&self, states: &[GroupState]) -> Result<Vec<GroupListing>> {
        let metadata = self.cluster.refresh_metadata(Some(&[])).await?;
        let mut listings = Vec::new();
        for &node in metadata.brokers.keys() {
            let conn = self.cluster.connect_broker(node).await?;
            listings.extend(self.list_on(&conn, states).await?);
        }
        listings.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        listings.dedup_by(|a, b| a.group_id == b.group_id);
        Ok(listings)
    }

    async fn list_on(&self, conn: &Connection, states: &[GroupState]) -> Result<Vec<GroupListing>> {
        let version = conn.version(ApiKey::ListGroups)?;
        let mut request = ListGroupsRequest::default();
        if version >= 4 {
            request.states_filter = states.iter().map(|s| StrBytes::from_string(s.as_str().to_owned())).collect();
        }
        let response = conn.send_at(&request, version, self.request_timeout()).await?;
        check_code(ApiKey::ListGroups, response.error_code, || format!("broker {}", conn.addr()))?;
        let mut listings: Vec<GroupListing> = response
            .groups
            .iter()
            .map(|g| GroupListing {
                group_id: g.group_id.to_string(),
                state: GroupState::parse(&g.group_state),
                protocol_type: g.protocol_type.to_string(),
            })
            .collect();
        if version < 4 && !listings.is_empty() {
            // The broker coordinates every group it lists, so it describes them too.
            let ids: Vec<&str> = listings.iter().map(|l| l.group_id.as_str()).collect();
            let described = describe_on(conn, &ids, self.request_timeout()).await?;
            for listing in &mut listings {
                let found = described.groups.iter().find(|g| g.group_id.as_str() == listing.group_id);
                listing.state = found.map_or(GroupState::Dead, |g| GroupState::parse(&g.group_state));
            }
            listings.retain(|l| states.is_empty() || states.contains(&l.state));
        }
        Ok(listings)
    }

    /// The group as its coordinator describes it. A group that does not exist is
    /// [`Error::UnknownGroup`].
    pub async fn describe_group(&self, group: &str) -> Result<GroupDescription> {
        let timeout = self.request_timeout();
        self.on_coordinator(group, |conn, coordinator| async move {
            let response = describe_on(&conn, &[group], timeout).await?;
            let described = response.groups.iter().find(|g| g.group_id.as_str() == group).ok_or_else(|| {
                Error::broker(ApiKey::DescribeGroups, -1, format!("the answer has no entry for group {group}"))
            })?;
            if described.error_code == codes::GROUP_ID_NOT_FOUND || described.group_state.as_str() == "Dead" {
                return Err(Error::UnknownGroup { group: group.to_owned(), coordinator });
            }
            check_code(ApiKey::DescribeGroups, described.error_code, || format!("group {group}"))?;
            Ok(GroupDescription::from_described(coordinator, described))
        })
        .await
    }

    /// The group's committed offsets, of every partition it committed (an OffsetFetch of all
    /// topics, as an admin: no member id, no generation). Any error code in the answer is an
    /// error: the offsets are then unknown, which is not "nothing committed".
    pub async fn committed_offsets(&self, group: &str) -> Result<BTreeMap<TopicPartition, i64>> {
        let timeout = self.request_timeout();
        self.on_coordinator(group, |conn, _| async move {
            let version = conn.version(ApiKey::OffsetFetch)?;
            // Null topics ("every partition") start at v2.
            if version < 2 {
                return Err(ProtocolError::UnsupportedApi { api: ApiKey::OffsetFetch }.into());
            }
            let group_id = GroupId(StrBytes::from_string(group.to_owned()));
            let request = if version >= 8 {
                let entry = OffsetFetchRequestGroup::default().with_group_id(group_id).with_topics(None);
                OffsetFetchRequest::default().with_groups(vec![entry])
            } else {
                OffsetFetchRequest::default().with_group_id(group_id).with_topics(None)
            };
            let response = conn.send_at(&request, version, timeout).await?;
            let (code, rows) = offset_fetch_rows(&response);
            check_code(ApiKey::OffsetFetch, code, || format!("group {group}"))?;
            let mut offsets = BTreeMap::new();
            for (topic, partition, offset, code) in rows {
                check_code(ApiKey::OffsetFetch, code, || format!("group {group}, partition {topic}-{partition}"))?;
                if offset >= 0 {
                    offsets.insert(TopicPartition::new(&topic, partition), offset);
                }
            }
            Ok(offsets)
        })
        .await
    }

    /// The log end offset (high watermark) of each partition: ListOffsets for the latest
    /// offset, one request per leader.
    pub async fn log_end_offsets(&self, partitions: &[TopicPartition]) -> Result<BTreeMap<TopicPartition, i64>> {
        // A partition without a leader is `Error::UnknownPartition`.
        let metadata = self.metadata_of(partitions).await?;
        self.log_ends(partitions, &metadata).await
    }

    /// The group's description with each partition's committed offset, log end, lag and owner.
    pub async fn describe_lag(&self, group: &str) -> Result<GroupLag> {
        let description = self.describe_group(group).await?;
        let committed = self.committed_offsets(group).await?;
        let mut partitions: BTreeSet<TopicPartition> = committed.keys().cloned().collect();
        for member in &description.members {
            partitions.extend(member.assignment.iter().flatten().cloned());
        }
        let partitions: Vec<TopicPartition> = partitions.into_iter().collect();
        let metadata = self.metadata_of(&partitions).await?;
        let led: Vec<TopicPartition> =
            partitions.iter().filter(|tp| metadata.leader(&tp.topic, tp.partition).is_some()).cloned().collect();
        let ends = self.log_ends(&led, &metadata).await?;
        let partitions = partitions
            .into_iter()
            .map(|tp| {
                let committed = committed.get(&tp).copied();
                let log_end = ends.get(&tp).copied();
                let lag = committed.zip(log_end).map(|(c, end)| (end - c).max(0));
                let owner = description.owner_of(&tp).map(|m| m.member_id.clone());
                PartitionLag { partition: tp, committed, log_end, lag, owner }
            })
            .collect();
        Ok(GroupLag { description, partitions })
    }

    fn request_timeout(&self) -> std::time::Duration {
        self.cluster.config().connection.request_timeout
    }

    /// Fresh metadata of the topics of `partitions`.
    async fn metadata_of(&self, partitions: &[TopicPartition]) -> Result<std::sync::Arc<MetadataSnapshot>> {
        let mut topics: Vec<&str> = partitions.iter().map(|tp| &*tp.topic).collect();
        topics.sort_unstable();
        topics.dedup();
        self.cluster.refresh_metadata(Some(&topics)).await
    }

    /// ListOffsets (latest) for `partitions`, every one of which has a leader in `metadata`.
    async fn log_ends(
        &self,
        partitions: &[TopicPartition],
        metadata: &MetadataSnapshot,
    ) -> Result<BTreeMap<TopicPartition, i64>> {
        let queries: Vec<(TopicPartition, i64)> = partitions.iter().map(|tp| (tp.clone(), -1)).collect();
        let listed = look_up_offsets(&self.cluster, metadata, &queries, IsolationLevel::ReadUncommitted).await?;
        Ok(queries.into_iter().zip(listed).map(|((tp, _), answer)| (tp, answer.offset)).collect())
    }

    /// Runs `call` on a connection to the group's coordinator (and its broker id), again with
    /// backoff while the coordinator moves or loads (within the cluster's retry timeout).
    async fn on_coordinator<T, F, Fut>(&self, group: &str, mut call: F) -> Result<T>
    where
        F: FnMut(Connection, i32) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let config = self.cluster.config();
        let deadline = tokio::time::Instant::now() + config.retry_timeout;
        let mut attempt = 0;
        loop {
            let result = match self.cluster.find_coordinator(group).await {
                Ok(coordinator) => match self.cluster.link(&coordinator.addr()).connection().await {
                    Ok(conn) => call(conn, coordinator.node_id).await,
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            };
            match result {
                Err(e)
                    if matches!(e.action(), ErrorAction::Retry | ErrorAction::RefreshCoordinator)
                        && tokio::time::Instant::now() < deadline =>
                {
                    tracing::debug!(group, error = %e, "coordinator request failed, retrying");
                    tokio::time::sleep(config.retry_backoff.delay(attempt)).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}

/// DescribeGroups of `groups` on `conn`.
async fn describe_on(
    conn: &Connection,
    groups: &[&str],
    timeout: std::time::Duration,
) -> Result<DescribeGroupsResponse> {
    let version = conn.version(ApiKey::DescribeGroups)?;
    let request = DescribeGroupsRequest::default()
        .with_groups(groups.iter().map(|g| GroupId(StrBytes::from_string((*g).to_owned()))).collect());
    conn.send_at(&request, version, timeout).await
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use kafka_protocol::messages::describe_groups_response::DescribedGroupMember;

    use super::*;
    use crate::protocol::consumer_protocol::encode_assignment;

    fn member(id: &str, metadata: Bytes, assignment: Bytes) -> DescribedGroupMember {
        DescribedGroupMember::default()
            .with_member_id(StrBytes::from_string(id.to_owned()))
            .with_member_metadata(metadata)
            .with_member_assignment(assignment)
    }

    /// A member's bad bytes are an error in its own entry; the other members are read.
    #[test]
    fn bad_member_bytes_are_a_value_not_a_panic() {
        let tp = TopicPartition::new("t", 0);
        let subscription = Subscription { topics: vec!["t".into()], ..Default::default() };
        let huge_count = Bytes::from_static(&[0, 3, 0x7f, 0xff, 0xff, 0xff]);
        let described = DescribedGroup::default()
            .with_group_state(StrBytes::from_static_str("Stable"))
            .with_protocol_type(StrBytes::from_static_str("consumer"))
            .with_members(vec![
                member("good", subscription.encode(), encode_assignment(std::slice::from_ref(&tp), None)),
                member("bad", huge_count.clone(), huge_count),
                member("rebalancing", Bytes::new(), Bytes::new()),
            ]);
        let description = GroupDescription::from_described(1, &described);
        let [good, bad, rebalancing] = &description.members[..] else { panic!("three members") };
        assert_eq!(good.subscription, Ok(Some(subscription)));
        assert_eq!(good.assignment, Ok(vec![tp.clone()]));
        assert!(matches!(bad.subscription, Err(MemberBytesError::Malformed(_))));
        assert!(matches!(bad.assignment, Err(MemberBytesError::Malformed(_))));
        assert_eq!((&rebalancing.subscription, &rebalancing.assignment), (&Ok(None), &Ok(Vec::new())));
        assert_eq!(description.owner_of(&tp).map(|m| m.member_id.as_str()), Some("good"));
    }

    #[test]
    fn other_protocols_bytes_are_not_decoded() {
        let described = DescribedGroup::default()
            .with_protocol_type(StrBytes::from_static_str("connect"))
            .with_members(vec![member("w", Bytes::from_static(b"xx"), Bytes::from_static(b"yy"))]);
        let description = GroupDescription::from_described(1, &described);
        let not_ours = Err(MemberBytesError::NotConsumerProtocol("connect".into()));
        assert_eq!(description.members[0].assignment, not_ours);
    }

    #[test]
    fn states_parse_and_print_as_on_the_wire() {
        for name in ["Empty", "PreparingRebalance", "CompletingRebalance", "Stable", "Dead", "Assigning"] {
            assert_eq!(GroupState::parse(name).as_str(), name);
        }
        assert_eq!(GroupState::parse("Assigning"), GroupState::Other("Assigning".into()));
    }
}
