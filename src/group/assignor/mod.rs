//! Client-side assignors, run by the group leader. The subscription and assignment bytes they
//! read and write are the protocol layer's ([`crate::protocol::consumer_protocol`]).

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use super::types::TopicPartition;
// The consumer protocol's codec at the paths it had before it moved to the protocol layer;
// `Subscription` is also what `GroupMember` carries.
pub use crate::protocol::consumer_protocol::{decode_assignment, encode_assignment, Subscription};

mod range;
mod round_robin;
mod sticky;
#[cfg(test)]
mod tests;

pub use range::RangeAssignor;
pub use round_robin::RoundRobinAssignor;
pub use sticky::StickyAssignor;

/// One member as the leader sees it in the JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    /// The member id.
    pub member_id: String,
    /// Its `group.instance.id`, for a static member.
    pub group_instance_id: Option<String>,
    /// What it asked for.
    pub subscription: Subscription,
}

/// How partitions move in a rebalance (KIP-429).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RebalanceProtocol {
    /// Every member gives up everything before rejoining.
    Eager,
    /// Members keep their partitions; only the ones that move are revoked, in a second round.
    Cooperative,
}

/// The plan an assignor returns: member id to the partitions it gets.
type Plan = BTreeMap<String, Vec<TopicPartition>>;

/// A client-side partition assignor, run by the group leader; the extension point for custom
/// strategies. Put it in [`GroupConfig::assignors`](crate::group::GroupConfig) (first preferred);
/// the group picks a name every member advertises, and the leader runs that assignor.
///
/// ```
/// use std::collections::BTreeMap;
/// use std::sync::Arc;
/// use kgroup::group::assignor::{Assignor, GroupMember, Subscription};
/// use kgroup::group::{GroupConfig, TopicPartition};
///
/// /// Every partition goes to the member with the smallest id (a hot-standby layout).
/// #[derive(Debug)]
/// struct FirstTakesAll;
///
/// impl Assignor for FirstTakesAll {
///     fn name(&self) -> &str {
///         "first-takes-all"
///     }
///
///     fn assign(
///         &self,
///         members: &[GroupMember],
///         partition_counts: &BTreeMap<String, i32>,
///     ) -> BTreeMap<String, Vec<TopicPartition>> {
///         let mut plan: BTreeMap<String, Vec<TopicPartition>> =
///             members.iter().map(|m| (m.member_id.clone(), Vec::new())).collect();
///         if let Some(first) = members.iter().min_by(|a, b| a.member_id.cmp(&b.member_id)) {
///             for topic in &first.subscription.topics {
///                 let count = partition_counts.get(topic).copied().unwrap_or(0);
///                 let owned = plan.get_mut(&first.member_id).expect("every member has an entry");
///                 owned.extend((0..count).map(|p| TopicPartition::new(topic, p)));
///             }
///         }
///         plan
///     }
/// }
///
/// let member = |id: &str| GroupMember {
///     member_id: id.into(),
///     group_instance_id: None,
///     subscription: Subscription { topics: vec!["orders".into()], ..Default::default() },
/// };
/// let counts = BTreeMap::from([("orders".to_string(), 3)]);
/// let plan = FirstTakesAll.assign(&[member("b"), member("a")], &counts);
/// assert_eq!(plan["a"].len(), 3);
/// assert!(plan["b"].is_empty());
///
/// let mut config = GroupConfig::new("my-group");
/// config.assignors.insert(0, Arc::new(FirstTakesAll));
/// ```
pub trait Assignor: Send + Sync + std::fmt::Debug {
    /// The protocol name members advertise (`range`, `roundrobin`, ...).
    fn name(&self) -> &str;

    /// Eager unless the assignor supports KIP-429's incremental rebalancing; the leader then
    /// passes the plan through [`cooperative_adjust`] before sending it.
    fn rebalance_protocol(&self) -> RebalanceProtocol {
        RebalanceProtocol::Eager
    }

    /// Assigns every partition of the subscribed topics to exactly one subscribed member; every
    /// member gets an entry, possibly empty. `partition_counts` covers the topics metadata knows;
    /// unknown topics are skipped. Pure: the same members (in any order) give the same plan.
    fn assign(
        &self,
        members: &[GroupMember],
        partition_counts: &BTreeMap<String, i32>,
    ) -> BTreeMap<String, Vec<TopicPartition>>;
}

/// KIP-429's first round: a partition that moves from one member to another is assigned to
/// nobody, so its owner revokes it before the next round hands it over. A partition is kept in a
/// member's assignment only when no other member claims it in its subscription's owned
/// partitions (stale or double claims included), so no partition ever has two owners.
///
/// Takes the target plan by reference or by value.
pub fn cooperative_adjust(
    target: impl std::borrow::Borrow<BTreeMap<String, Vec<TopicPartition>>>,
    members: &[GroupMember],
) -> BTreeMap<String, Vec<TopicPartition>> {
    let mut claimants: BTreeMap<&TopicPartition, BTreeSet<&str>> = BTreeMap::new();
    for member in members {
        for tp in &member.subscription.owned_partitions {
            claimants.entry(tp).or_default().insert(&member.member_id);
        }
    }
    target
        .borrow()
        .iter()
        .map(|(member, partitions)| {
            let kept = partitions
                .iter()
                .filter(|tp| claimants.get(tp).is_none_or(|c| c.iter().all(|o| *o == member)))
                .cloned()
                .collect();
            (member.clone(), kept)
        })
        .collect()
}

/// The built-in assignor with this protocol name (`partition.assignment.strategy` values).
pub fn assignor_by_name(name: &str) -> Option<std::sync::Arc<dyn Assignor>> {
    match name {
        "range" => Some(std::sync::Arc::new(RangeAssignor)),
        "roundrobin" => Some(std::sync::Arc::new(RoundRobinAssignor)),
        "sticky" => Some(std::sync::Arc::new(StickyAssignor { cooperative: false })),
        "cooperative-sticky" => Some(std::sync::Arc::new(StickyAssignor { cooperative: true })),
        _ => None,
    }
}

/// Java's member order (`AbstractPartitionAssignor.MemberInfo`): static members first, by
/// instance id (KIP-345, so their place survives restarts), then dynamic ones by member id.
fn java_member_order(a: &GroupMember, b: &GroupMember) -> Ordering {
    match (&a.group_instance_id, &b.group_instance_id) {
        (Some(x), Some(y)) => x.cmp(y),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
    .then_with(|| a.member_id.cmp(&b.member_id))
}

/// The members sorted by `order`, each member id once, and an empty plan entry for each.
fn sorted_members(
    members: &[GroupMember],
    order: fn(&GroupMember, &GroupMember) -> Ordering,
) -> (Vec<&GroupMember>, Plan) {
    let mut sorted: Vec<&GroupMember> = members.iter().collect();
    sorted.sort_by(|a, b| order(a, b));
    let mut seen = BTreeSet::new();
    sorted.retain(|m| seen.insert(m.member_id.as_str()));
    let plan = sorted.iter().map(|m| (m.member_id.clone(), Vec::new())).collect();
    (sorted, plan)
}

fn subscribes(member: &GroupMember, topic: &str) -> bool {
    member.subscription.topics.iter().any(|t| t == topic)
}

/// The partitions of every topic some member subscribes to, sorted.
fn all_partitions(members: &[GroupMember], partition_counts: &BTreeMap<String, i32>) -> Vec<TopicPartition> {
    let topics: BTreeSet<&str> =
        members.iter().flat_map(|m| m.subscription.topics.iter().map(String::as_str)).collect();
    topics
        .into_iter()
        .flat_map(|t| (0..partition_counts.get(t).copied().unwrap_or(0)).map(move |p| TopicPartition::new(t, p)))
        .collect()
}
