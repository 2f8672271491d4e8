//! The `consumer` protocol's subscription and assignment bytes (KIP-62/429/341 versions 0 to 3)
//! and client-side assignors.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{consumer_protocol_assignment, consumer_protocol_subscription};
use kafka_protocol::messages::{ApiKey, ConsumerProtocolAssignment, ConsumerProtocolSubscription, TopicName};
use kafka_protocol::protocol::{Encodable, StrBytes};

use super::types::{GenerationId, TopicPartition};
use crate::protocol::ProtocolError;

/// The version of the subscription and assignment encodings we write (Kafka 3.x writes 3).
pub const CONSUMER_PROTOCOL_VERSION: i16 = 3;

/// What a member asks for, as carried in its JoinGroup metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subscription {
    pub topics: Vec<String>,
    /// Partitions the member owns now (KIP-429; empty under eager protocols).
    pub owned_partitions: Vec<TopicPartition>,
    /// The member's generation when it sent this (v2+, `-1` when unknown).
    pub generation: GenerationId,
    pub rack: Option<String>,
    pub user_data: Option<Bytes>,
}

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

fn group_by_topic(partitions: &[TopicPartition]) -> BTreeMap<&str, Vec<i32>> {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for tp in partitions {
        by_topic.entry(&tp.topic).or_default().push(tp.partition);
    }
    by_topic
}

/// Decodes the version prefix and clamps future versions to the newest we know: newer
/// versions only append fields (the protocol's forward-compatibility rule).
fn split_version(bytes: &Bytes, what: &'static str) -> Result<(i16, Bytes), ProtocolError> {
    let version = bytes
        .get(..2)
        .map(|b| i16::from_be_bytes([b[0], b[1]]))
        .ok_or_else(|| ProtocolError::decode(ApiKey::JoinGroup, 0, what, "missing version"))?;
    if version < 0 {
        return Err(ProtocolError::decode(ApiKey::JoinGroup, 0, what, format!("negative version {version}")));
    }
    Ok((version.min(CONSUMER_PROTOCOL_VERSION), bytes.slice(2..)))
}

/// The consumer protocol's classic (never flexible) encoding, read from a member's bytes: every
/// length and count is checked against the bytes left before anything is reserved for it.
struct Reader {
    rest: Bytes,
    api: ApiKey,
    version: i16,
    what: &'static str,
}

impl Reader {
    fn error(&self, field: &str, problem: impl std::fmt::Display) -> ProtocolError {
        ProtocolError::decode(self.api, self.version, self.what, format!("{field}: {problem}"))
    }

    fn take(&mut self, field: &str, n: usize) -> Result<Bytes, ProtocolError> {
        if n > self.rest.len() {
            return Err(self.error(field, format!("needs {n} bytes, {} left", self.rest.len())));
        }
        Ok(self.rest.split_to(n))
    }

    fn i16(&mut self, field: &str) -> Result<i16, ProtocolError> {
        self.take(field, 2).map(|b| i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self, field: &str) -> Result<i32, ProtocolError> {
        self.take(field, 4).map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A length that may be `-1` (null).
    fn length(&mut self, field: &str, length: i32) -> Result<Option<usize>, ProtocolError> {
        match length {
            -1 => Ok(None),
            n => usize::try_from(n).map(Some).map_err(|_| self.error(field, format!("negative length {n}"))),
        }
    }

    fn nullable_string(&mut self, field: &str) -> Result<Option<String>, ProtocolError> {
        let length = self.i16(field)?;
        let Some(length) = self.length(field, length.into())? else { return Ok(None) };
        let bytes = self.take(field, length)?;
        String::from_utf8(bytes.to_vec()).map(Some).map_err(|_| self.error(field, "not UTF-8"))
    }

    fn string(&mut self, field: &str) -> Result<String, ProtocolError> {
        self.nullable_string(field)?.ok_or_else(|| self.error(field, "null"))
    }

    fn nullable_bytes(&mut self, field: &str) -> Result<Option<Bytes>, ProtocolError> {
        let length = self.i32(field)?;
        match self.length(field, length)? {
            Some(length) => self.take(field, length).map(Some),
            None => Ok(None),
        }
    }

    /// An array whose elements take at least `min_size` bytes each.
    fn array<T>(
        &mut self,
        field: &str,
        min_size: usize,
        mut element: impl FnMut(&mut Self) -> Result<T, ProtocolError>,
    ) -> Result<Vec<T>, ProtocolError> {
        let count = self.i32(field)?;
        let count = self.length(field, count)?.ok_or_else(|| self.error(field, "null array"))?;
        if count > self.rest.len() / min_size {
            let left = self.rest.len();
            return Err(self.error(field, format!("{count} elements cannot fit in the {left} bytes left")));
        }
        let mut elements = Vec::with_capacity(count);
        for _ in 0..count {
            elements.push(element(self)?);
        }
        Ok(elements)
    }

    /// `[{topic: string, partitions: [int32]}]`, flattened.
    fn topic_partitions(&mut self, field: &str) -> Result<Vec<TopicPartition>, ProtocolError> {
        let topics = self.array(field, 6, |r| {
            let topic = r.string(field)?;
            let partitions = r.array(field, 4, |r| r.i32(field))?;
            Ok((topic, partitions))
        })?;
        Ok(topics
            .iter()
            .flat_map(|(topic, partitions)| partitions.iter().map(move |&p| TopicPartition::new(topic, p)))
            .collect())
    }
}

impl Subscription {
    pub fn encode(&self) -> Bytes {
        let message = ConsumerProtocolSubscription::default()
            .with_topics(self.topics.iter().map(|t| str_bytes(t)).collect())
            .with_user_data(self.user_data.clone())
            .with_owned_partitions(
                group_by_topic(&self.owned_partitions)
                    .into_iter()
                    .map(|(topic, partitions)| {
                        consumer_protocol_subscription::TopicPartition::default()
                            .with_topic(TopicName(str_bytes(topic)))
                            .with_partitions(partitions)
                    })
                    .collect(),
            )
            .with_generation_id(self.generation.0)
            .with_rack_id(self.rack.as_deref().map(str_bytes));
        let mut buf = BytesMut::new();
        buf.put_i16(CONSUMER_PROTOCOL_VERSION);
        // Every field is valid at our version, so encoding cannot fail.
        let _ = message.encode(&mut buf, CONSUMER_PROTOCOL_VERSION);
        buf.freeze()
    }

    /// Reads what another member wrote (the leader reads every member's), with every length and
    /// count checked against the bytes before anything is reserved for it.
    pub fn decode(bytes: &Bytes) -> Result<Subscription, ProtocolError> {
        let (version, body) = split_version(bytes, "consumer subscription")?;
        let mut r = Reader { rest: body, api: ApiKey::JoinGroup, version, what: "consumer subscription" };
        let topics = r.array("topics", 2, |r| r.string("topics"))?;
        let user_data = r.nullable_bytes("user_data")?;
        let owned_partitions = if version >= 1 { r.topic_partitions("owned_partitions")? } else { Vec::new() };
        let generation = if version >= 2 { GenerationId(r.i32("generation_id")?) } else { GenerationId::NONE };
        let rack = if version >= 3 { r.nullable_string("rack_id")? } else { None };
        Ok(Subscription { topics, owned_partitions, generation, rack, user_data })
    }
}

/// Encodes an assignment; an empty byte string (what Kafka stores for a member the leader left
/// out) decodes as no partitions.
pub fn encode_assignment(partitions: &[TopicPartition], user_data: Option<Bytes>) -> Bytes {
    let message = ConsumerProtocolAssignment::default()
        .with_assigned_partitions(
            group_by_topic(partitions)
                .into_iter()
                .map(|(topic, partitions)| {
                    consumer_protocol_assignment::TopicPartition::default()
                        .with_topic(TopicName(str_bytes(topic)))
                        .with_partitions(partitions)
                })
                .collect(),
        )
        .with_user_data(user_data);
    let mut buf = BytesMut::new();
    buf.put_i16(CONSUMER_PROTOCOL_VERSION);
    let _ = message.encode(&mut buf, CONSUMER_PROTOCOL_VERSION);
    buf.freeze()
}

pub fn decode_assignment(bytes: &Bytes) -> Result<Vec<TopicPartition>, ProtocolError> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let (version, body) = split_version(bytes, "consumer assignment")?;
    let mut r = Reader { rest: body, api: ApiKey::SyncGroup, version, what: "consumer assignment" };
    let mut partitions = r.topic_partitions("assigned_partitions")?;
    r.nullable_bytes("user_data")?;
    partitions.sort();
    partitions.dedup();
    Ok(partitions)
}

/// One member as the leader sees it in the JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
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

/// Kafka's `range` assignor: per topic, consumers in sorted order each take a contiguous range;
/// the first `partitions % consumers` take one extra.
#[derive(Debug, Clone, Copy, Default)]
pub struct RangeAssignor;

impl Assignor for RangeAssignor {
    fn name(&self) -> &str {
        "range"
    }

    fn assign(
        &self,
        members: &[GroupMember],
        partition_counts: &BTreeMap<String, i32>,
    ) -> BTreeMap<String, Vec<TopicPartition>> {
        let (sorted, mut result) = sorted_members(members, java_member_order);
        let mut topics: BTreeMap<&str, Vec<&GroupMember>> = BTreeMap::new();
        for member in &sorted {
            for topic in &member.subscription.topics {
                let consumers = topics.entry(topic).or_default();
                if consumers.last().is_none_or(|last| last.member_id != member.member_id) {
                    consumers.push(member);
                }
            }
        }
        for (topic, consumers) in topics {
            let Some(&count) = partition_counts.get(topic) else {
                continue;
            };
            let n = consumers.len() as i32;
            let (per, extra) = (count / n, count % n);
            let mut next = 0;
            for (i, consumer) in consumers.iter().enumerate() {
                let take = per + i32::from((i as i32) < extra);
                let owned = result.entry(consumer.member_id.clone()).or_default();
                owned.extend((next..next + take).map(|p| TopicPartition::new(topic, p)));
                next += take;
            }
        }
        result
    }
}

/// Kafka's `roundrobin` assignor: every subscribed partition, sorted by topic and partition,
/// dealt in turn around the circle of sorted members, skipping members not subscribed to its
/// topic (Java's `RoundRobinAssignor`).
#[derive(Debug, Clone, Copy, Default)]
pub struct RoundRobinAssignor;

impl Assignor for RoundRobinAssignor {
    fn name(&self) -> &str {
        "roundrobin"
    }

    fn assign(
        &self,
        members: &[GroupMember],
        partition_counts: &BTreeMap<String, i32>,
    ) -> BTreeMap<String, Vec<TopicPartition>> {
        let (sorted, mut result) = sorted_members(members, java_member_order);
        let mut next = 0usize;
        for tp in all_partitions(members, partition_counts) {
            // The next member in the circle that subscribes to this topic (one always does).
            for step in 0..sorted.len() {
                let member = sorted[(next + step) % sorted.len()];
                if subscribes(member, &tp.topic) {
                    result.entry(member.member_id.clone()).or_default().push(tp);
                    next = (next + step + 1) % sorted.len();
                    break;
                }
            }
        }
        result
    }
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

/// Kafka's `sticky` and `cooperative-sticky` assignors (KIP-54, KIP-429): as balanced as
/// `roundrobin`, while moving as few partitions as possible.
///
/// Ownership comes from each subscription's owned partitions (v1+; an eager member's
/// `user_data` is not read). A partition claimed by several members stays with the claim of the
/// highest generation; claims tied at the highest generation are all dropped (Java's rule).
///
/// When every member subscribes to the same topics, each member keeps what it owns up to its
/// share (the members owning most get the `partitions % members` larger shares), and only the
/// surplus and unowned partitions move: the minimum any balanced plan needs. Otherwise members
/// keep what they own, unowned partitions go to the least loaded subscriber, and partitions move
/// from a member to a subscriber holding at least two fewer until none can.
///
/// `assign` returns the target plan for both; the cooperative variant is handed out in
/// KIP-429's two rounds through [`cooperative_adjust`].
#[derive(Debug, Clone, Copy)]
pub struct StickyAssignor {
    pub cooperative: bool,
}

impl Assignor for StickyAssignor {
    fn name(&self) -> &str {
        if self.cooperative {
            "cooperative-sticky"
        } else {
            "sticky"
        }
    }

    fn rebalance_protocol(&self) -> RebalanceProtocol {
        if self.cooperative {
            RebalanceProtocol::Cooperative
        } else {
            RebalanceProtocol::Eager
        }
    }

    fn assign(
        &self,
        members: &[GroupMember],
        partition_counts: &BTreeMap<String, i32>,
    ) -> BTreeMap<String, Vec<TopicPartition>> {
        let (sorted, mut result) = sorted_members(members, |a, b| a.member_id.cmp(&b.member_id));
        let partitions = all_partitions(members, partition_counts);
        let owner = current_owners(&sorted, &partitions);
        fn topic_set(m: &GroupMember) -> BTreeSet<&str> {
            m.subscription.topics.iter().map(String::as_str).collect()
        }
        let uniform = sorted.windows(2).all(|w| topic_set(w[0]) == topic_set(w[1]));
        if uniform {
            sticky_uniform(&sorted, &partitions, &owner, &mut result);
        } else {
            sticky_general(&sorted, &partitions, &owner, &mut result);
        }
        for owned in result.values_mut() {
            owned.sort();
        }
        result
    }
}

/// Who owns each partition now: valid claims (an existing partition of a topic the claimant
/// subscribes to), the highest generation winning; a tie at the highest generation is dropped.
fn current_owners<'a>(sorted: &[&'a GroupMember], partitions: &[TopicPartition]) -> BTreeMap<TopicPartition, &'a str> {
    let mut claims: BTreeMap<&TopicPartition, (GenerationId, BTreeSet<&'a str>)> = BTreeMap::new();
    for m in sorted {
        let generation = m.subscription.generation;
        for tp in &m.subscription.owned_partitions {
            if partitions.binary_search(tp).is_err() || !subscribes(m, &tp.topic) {
                continue;
            }
            let claim = claims.entry(tp).or_insert_with(|| (generation, BTreeSet::new()));
            if generation > claim.0 {
                *claim = (generation, BTreeSet::new());
            }
            if generation == claim.0 {
                claim.1.insert(m.member_id.as_str());
            }
        }
    }
    claims
        .into_iter()
        .filter_map(|(tp, (_, ids))| match ids.len() {
            1 => ids.first().map(|id| (tp.clone(), *id)),
            _ => None,
        })
        .collect()
}

/// Equal subscriptions: quotas of `share` or `share + 1`, the larger ones to the members owning
/// the most; each keeps its owned partitions up to its quota, the rest fill the gaps.
fn sticky_uniform(
    sorted: &[&GroupMember],
    partitions: &[TopicPartition],
    owner: &BTreeMap<TopicPartition, &str>,
    result: &mut Plan,
) {
    let n = sorted.len().max(1);
    let (share, extra) = (partitions.len() / n, partitions.len() % n);
    let mut owned_count: BTreeMap<&str, usize> = BTreeMap::new();
    for id in owner.values() {
        *owned_count.entry(id).or_default() += 1;
    }
    let mut by_owned: Vec<(&str, usize)> = sorted
        .iter()
        .map(|m| (m.member_id.as_str(), owned_count.get(m.member_id.as_str()).copied().unwrap_or(0)))
        .collect();
    by_owned.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let quota: BTreeMap<&str, usize> =
        by_owned.iter().enumerate().map(|(i, (id, _))| (*id, share + usize::from(i < extra))).collect();
    let mut unassigned = Vec::new();
    for tp in partitions {
        match owner.get(tp) {
            Some(id) if result[*id].len() < quota[id] => result.entry((*id).to_owned()).or_default().push(tp.clone()),
            _ => unassigned.push(tp.clone()),
        }
    }
    // Hand the rest to the members below their quota, in member order.
    let mut unassigned = unassigned.into_iter();
    for m in sorted {
        let gap = quota[m.member_id.as_str()].saturating_sub(result[&m.member_id].len());
        result.entry(m.member_id.clone()).or_default().extend(unassigned.by_ref().take(gap));
    }
    debug_assert!(unassigned.next().is_none(), "quotas add up to the partition count");
}

/// Different subscriptions: keep what is owned, give unowned partitions (fewest candidates
/// first) to the least loaded subscriber, then move partitions to subscribers holding at least
/// two fewer until no such move is left (Java's balance criterion). Partitions that were not
/// owned move before owned ones, so stickiness costs nothing extra.
fn sticky_general(
    sorted: &[&GroupMember],
    partitions: &[TopicPartition],
    owner: &BTreeMap<TopicPartition, &str>,
    result: &mut Plan,
) {
    let index: BTreeMap<&str, usize> = sorted.iter().enumerate().map(|(i, m)| (m.member_id.as_str(), i)).collect();
    let candidates: Vec<Vec<usize>> =
        partitions.iter().map(|tp| (0..sorted.len()).filter(|&i| subscribes(sorted[i], &tp.topic)).collect()).collect();
    let mut holder: Vec<usize> = vec![usize::MAX; partitions.len()];
    let mut load = vec![0usize; sorted.len()];
    for (p, tp) in partitions.iter().enumerate() {
        if let Some(&i) = owner.get(tp).and_then(|id| index.get(id)) {
            holder[p] = i;
            load[i] += 1;
        }
    }
    let mut unowned: Vec<usize> = (0..partitions.len()).filter(|&p| holder[p] == usize::MAX).collect();
    unowned.sort_by_key(|&p| (candidates[p].len(), p));
    for &p in &unowned {
        if let Some(&i) = candidates[p].iter().min_by_key(|&&i| (load[i], i)) {
            holder[p] = i;
            load[i] += 1;
        }
    }
    // Each move lowers the sum of squared loads, so this ends.
    let mut order: Vec<usize> = (0..partitions.len()).collect();
    order.sort_by_key(|&p| (owner.contains_key(&partitions[p]), p));
    loop {
        let mut moved = false;
        for &p in &order {
            let from = holder[p];
            if from == usize::MAX {
                continue;
            }
            let Some(&to) = candidates[p].iter().min_by_key(|&&i| (load[i], i)) else {
                continue;
            };
            if load[to] + 1 < load[from] {
                holder[p] = to;
                load[from] -= 1;
                load[to] += 1;
                moved = true;
            }
        }
        if !moved {
            break;
        }
    }
    for (p, tp) in partitions.iter().enumerate() {
        if let Some(m) = sorted.get(holder[p]) {
            result.entry(m.member_id.clone()).or_default().push(tp.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, topics: &[&str]) -> GroupMember {
        GroupMember {
            member_id: id.into(),
            group_instance_id: None,
            subscription: Subscription { topics: topics.iter().map(|t| t.to_string()).collect(), ..Default::default() },
        }
    }

    #[test]
    fn subscription_round_trips_and_reads_older_versions() {
        let sub = Subscription {
            topics: vec!["a".into(), "b".into()],
            owned_partitions: vec![TopicPartition::new("a", 1), TopicPartition::new("a", 3)],
            generation: GenerationId(7),
            rack: Some("r1".into()),
            user_data: Some(Bytes::from_static(b"u")),
        };
        assert_eq!(Subscription::decode(&sub.encode()).unwrap(), sub);
        // Version 0 as written by an old Java client: version, topics ["t"], null user data.
        let v0 = Bytes::from_static(&[0, 0, 0, 0, 0, 1, 0, 1, b't', 0xff, 0xff, 0xff, 0xff]);
        let decoded = Subscription::decode(&v0).unwrap();
        assert_eq!(decoded.topics, vec!["t".to_string()]);
        assert_eq!(decoded.generation, GenerationId::NONE);
        assert!(Subscription::decode(&Bytes::from_static(&[0])).is_err());
    }

    /// Item 9 of issue 13: a member's subscription or assignment with a count of two billion
    /// in any of its arrays is an error; `kafka-protocol`'s decoder reserved room for the count
    /// and the failed allocation aborted the process (the leader reads every member's bytes).
    #[test]
    fn huge_counts_in_consumer_protocol_bytes_are_errors_not_aborts() {
        let test = concat!(module_path!(), "::huge_counts_in_consumer_protocol_bytes_are_errors_not_aborts");
        crate::protocol::bounds::in_a_child_process(test, || {
            let sub = Subscription {
                topics: vec!["a".into()],
                owned_partitions: vec![TopicPartition::new("a", 1)],
                ..Default::default()
            };
            let encoded = sub.encode();
            // version, topics count, "a", null user data, owned count, "a", partitions count, 1, ...
            for count_at in [2, 13, 20] {
                let mut bytes = encoded.to_vec();
                bytes[count_at..count_at + 4].copy_from_slice(&i32::MAX.to_be_bytes());
                let error = Subscription::decode(&Bytes::from(bytes)).unwrap_err();
                assert!(error.to_string().contains("cannot fit"), "count at {count_at}: {error}");
            }
            let encoded = encode_assignment(&[TopicPartition::new("a", 1)], None);
            // version, topics count, "a", partitions count, 1, null user data
            for count_at in [2, 9] {
                let mut bytes = encoded.to_vec();
                bytes[count_at..count_at + 4].copy_from_slice(&i32::MAX.to_be_bytes());
                let error = decode_assignment(&Bytes::from(bytes)).unwrap_err();
                assert!(error.to_string().contains("cannot fit"), "count at {count_at}: {error}");
            }
        });
    }

    /// Every prefix of valid bytes, and every byte of them changed, gives a value or an error.
    #[test]
    fn consumer_protocol_decoders_survive_truncation_and_corruption() {
        let sub = Subscription {
            topics: vec!["a".into(), "bb".into()],
            owned_partitions: vec![TopicPartition::new("a", 1), TopicPartition::new("bb", 3)],
            generation: GenerationId(4),
            rack: Some("r".into()),
            user_data: Some(Bytes::from_static(b"u")),
        }
        .encode();
        let assignment = encode_assignment(&[TopicPartition::new("a", 1)], Some(Bytes::from_static(b"x")));
        for bytes in [&sub, &assignment] {
            for cut in 0..bytes.len() {
                let _ = Subscription::decode(&bytes.slice(..cut));
                let _ = decode_assignment(&bytes.slice(..cut));
            }
            for at in 0..bytes.len() {
                for value in [0x00, 0x7f, 0x80, 0xff] {
                    let mut b = bytes.to_vec();
                    b[at] = value;
                    let _ = Subscription::decode(&Bytes::from(b.clone()));
                    let _ = decode_assignment(&Bytes::from(b));
                }
            }
        }
    }

    #[test]
    fn assignment_round_trips_and_empty_means_none() {
        let parts = vec![TopicPartition::new("a", 0), TopicPartition::new("b", 2)];
        assert_eq!(decode_assignment(&encode_assignment(&parts, None)).unwrap(), parts);
        assert_eq!(decode_assignment(&Bytes::new()).unwrap(), vec![]);
        assert!(decode_assignment(&Bytes::from_static(&[0, 3, 0, 0, 0, 9])).is_err());
    }

    #[test]
    fn range_matches_kafka_for_72_partitions() {
        let members: Vec<_> = (0..5).map(|i| member(&format!("m{i}"), &["t"])).collect();
        let counts = BTreeMap::from([("t".to_string(), 72)]);
        let a = RangeAssignor.assign(&members, &counts);
        let sizes: Vec<usize> = (0..5).map(|i| a[&format!("m{i}")].len()).collect();
        assert_eq!(sizes, vec![15, 15, 14, 14, 14]);
        assert_eq!(a["m0"].first(), Some(&TopicPartition::new("t", 0)));
        assert_eq!(a["m1"].first(), Some(&TopicPartition::new("t", 15)));
        let mut all: Vec<_> = a.values().flatten().cloned().collect();
        all.sort();
        assert_eq!(all, (0..72).map(|p| TopicPartition::new("t", p)).collect::<Vec<_>>());
    }

    #[test]
    fn range_leaves_unsubscribed_members_empty() {
        let members = vec![member("a", &["x"]), member("b", &["y"])];
        let counts = BTreeMap::from([("x".to_string(), 2), ("y".to_string(), 1)]);
        let a = RangeAssignor.assign(&members, &counts);
        assert_eq!(a["a"].len(), 2);
        assert_eq!(a["b"], vec![TopicPartition::new("y", 0)]);
    }

    const ALL: [&str; 4] = ["range", "roundrobin", "sticky", "cooperative-sticky"];
    const STICKY: [&str; 2] = ["sticky", "cooperative-sticky"];

    fn id(i: usize) -> String {
        format!("m{i:02}")
    }

    /// Members with these ids, all subscribed to `topics`, owning what `owned` gives them.
    fn group(ids: &[String], topics: &[&str], owned: &Plan, generation: i32) -> Vec<GroupMember> {
        ids.iter()
            .map(|id| GroupMember {
                member_id: id.clone(),
                group_instance_id: None,
                subscription: Subscription {
                    topics: topics.iter().map(|t| t.to_string()).collect(),
                    owned_partitions: owned.get(id).cloned().unwrap_or_default(),
                    generation: GenerationId(generation),
                    ..Default::default()
                },
            })
            .collect()
    }

    fn uniform(n: usize, topics: &[&str], owned: &Plan, generation: i32) -> Vec<GroupMember> {
        group(&(0..n).map(id).collect::<Vec<_>>(), topics, owned, generation)
    }

    fn single() -> BTreeMap<String, i32> {
        BTreeMap::from([("t".to_string(), 72)])
    }

    /// Three topics of mixed sizes, 72 partitions in all.
    fn mixed() -> BTreeMap<String, i32> {
        BTreeMap::from([("a".to_string(), 5), ("b".to_string(), 19), ("c".to_string(), 48)])
    }

    fn topics(counts: &BTreeMap<String, i32>) -> Vec<&str> {
        counts.keys().map(String::as_str).collect()
    }

    /// Every partition of a subscribed, known topic assigned exactly once, to a subscriber; every
    /// member has an entry.
    fn assert_cover(plan: &Plan, members: &[GroupMember], counts: &BTreeMap<String, i32>) {
        let mut all: Vec<TopicPartition> = plan.values().flatten().cloned().collect();
        all.sort();
        assert_eq!(all, all_partitions(members, counts), "not an exact cover: {plan:?}");
        for (m, partitions) in plan {
            let member = members.iter().find(|x| x.member_id == *m).expect("plan names a member");
            assert!(partitions.iter().all(|tp| subscribes(member, &tp.topic)), "{m} not subscribed: {partitions:?}");
        }
        assert!(members.iter().all(|m| plan.contains_key(&m.member_id)));
    }

    fn spread(sizes: impl Iterator<Item = usize>) -> usize {
        let sizes: Vec<usize> = sizes.collect();
        sizes.iter().max().unwrap_or(&0) - sizes.iter().min().unwrap_or(&0)
    }

    fn assert_balanced(plan: &Plan) {
        assert!(
            spread(plan.values().map(Vec::len)) <= 1,
            "unbalanced: {:?}",
            plan.values().map(Vec::len).collect::<Vec<_>>()
        );
    }

    /// Partitions a member gets that it did not have before.
    fn moved(before: &Plan, after: &Plan) -> usize {
        after.iter().map(|(m, ps)| ps.iter().filter(|tp| !before.get(m).is_some_and(|b| b.contains(tp))).count()).sum()
    }

    fn assert_order_independent(
        assignor: &dyn Assignor,
        members: &[GroupMember],
        counts: &BTreeMap<String, i32>,
        plan: &Plan,
    ) {
        let mut reversed = members.to_vec();
        reversed.reverse();
        assert_eq!(&assignor.assign(&reversed, counts), plan, "{} depends on member order", assignor.name());
        let mut rotated = members.to_vec();
        rotated.rotate_left(members.len() / 2);
        assert_eq!(&assignor.assign(&rotated, counts), plan, "{} depends on member order", assignor.name());
    }

    #[test]
    fn every_assignor_covers_exactly_once_balanced_and_deterministic() {
        for counts in [single(), mixed()] {
            for name in ALL {
                let assignor = assignor_by_name(name).unwrap();
                for n in 1..=30 {
                    let members = uniform(n, &topics(&counts), &BTreeMap::new(), -1);
                    let plan = assignor.assign(&members, &counts);
                    assert_cover(&plan, &members, &counts);
                    if name == "range" {
                        // Kafka's range balances each topic, not the total.
                        for topic in counts.keys() {
                            let per_topic = plan.values().map(|ps| ps.iter().filter(|tp| *tp.topic == **topic).count());
                            assert!(spread(per_topic) <= 1, "range, {n} members, topic {topic}");
                        }
                    } else {
                        assert_balanced(&plan);
                    }
                    assert_order_independent(&*assignor, &members, &counts, &plan);
                }
            }
        }
    }

    fn non_uniform() -> (Vec<GroupMember>, BTreeMap<String, i32>) {
        let members = vec![
            member("a", &["x"]),
            member("b", &["x", "y"]),
            member("c", &["y", "z"]),
            member("d", &["z", "unknown"]),
            member("e", &["x", "y", "z"]),
            member("f", &["nothing-known"]),
        ];
        let counts = BTreeMap::from([
            ("x".to_string(), 10),
            ("y".to_string(), 7),
            ("z".to_string(), 3),
            ("unsubscribed".to_string(), 4),
        ]);
        (members, counts)
    }

    /// Java's balance criterion: no partition can move to a subscriber holding two fewer.
    fn assert_no_improving_move(plan: &Plan, members: &[GroupMember]) {
        for (from, partitions) in plan {
            for tp in partitions {
                for to in members.iter().filter(|m| subscribes(m, &tp.topic)) {
                    assert!(
                        plan[&to.member_id].len() + 1 >= partitions.len(),
                        "{tp} could move from {from} to {}",
                        to.member_id
                    );
                }
            }
        }
    }

    #[test]
    fn non_uniform_subscriptions_are_covered_deterministic_and_sticky_balances_them() {
        let (members, counts) = non_uniform();
        for name in ALL {
            let assignor = assignor_by_name(name).unwrap();
            let plan = assignor.assign(&members, &counts);
            assert_cover(&plan, &members, &counts);
            assert!(plan["f"].is_empty());
            assert_order_independent(&*assignor, &members, &counts, &plan);
        }
        for name in STICKY {
            let sticky = assignor_by_name(name).unwrap();
            let plan = sticky.assign(&members, &counts);
            assert_no_improving_move(&plan, &members);
            // A member leaves: the others keep what they own as far as balance allows.
            let mut rest: Vec<GroupMember> = members.iter().filter(|m| m.member_id != "e").cloned().collect();
            for m in &mut rest {
                m.subscription.owned_partitions = plan[&m.member_id].clone();
                m.subscription.generation = GenerationId(1);
            }
            let after = sticky.assign(&rest, &counts);
            assert_cover(&after, &rest, &counts);
            assert_no_improving_move(&after, &rest);
            assert_order_independent(&*sticky, &rest, &counts, &after);
            // The simple uneven case: a 10-partition topic shared, a 2-partition one not.
            let two = vec![member("a", &["t1"]), member("b", &["t1", "t2"])];
            let counts = BTreeMap::from([("t1".to_string(), 10), ("t2".to_string(), 2)]);
            let plan = sticky.assign(&two, &counts);
            assert_eq!((plan["a"].len(), plan["b"].len()), (6, 6));
        }
    }

    #[test]
    fn roundrobin_deals_like_java() {
        // Static members first, by instance id; a member skips topics it does not subscribe to.
        let mut z = member("z", &["t1", "t2"]);
        z.group_instance_id = Some("i1".into());
        let members = vec![member("a", &["t1"]), z];
        let counts = BTreeMap::from([("t1".to_string(), 3), ("t2".to_string(), 2)]);
        let plan = RoundRobinAssignor.assign(&members, &counts);
        let tp = TopicPartition::new;
        assert_eq!(plan["z"], vec![tp("t1", 0), tp("t1", 2), tp("t2", 0), tp("t2", 1)]);
        assert_eq!(plan["a"], vec![tp("t1", 1)]);
    }

    #[test]
    fn sticky_join_and_leave_move_the_minimum() {
        for counts in [single(), mixed()] {
            let topics = topics(&counts);
            for name in STICKY {
                let sticky = assignor_by_name(name).unwrap();
                for n in 1..=29 {
                    let before = sticky.assign(&uniform(n, &topics, &BTreeMap::new(), -1), &counts);
                    // Join: only what the newcomer must receive moves.
                    let members = uniform(n + 1, &topics, &before, 1);
                    let joined = sticky.assign(&members, &counts);
                    assert_cover(&joined, &members, &counts);
                    assert_balanced(&joined);
                    assert_eq!(joined[&id(n)].len(), 72 / (n + 1), "{name}: the newcomer takes the smaller share");
                    assert_eq!(moved(&before, &joined), 72 / (n + 1), "{name}: join {n} -> {}", n + 1);
                    assert_order_independent(&*sticky, &members, &counts, &joined);
                    // Leave: only the leaver's partitions move.
                    for gone in [0, n / 2, n - 1].into_iter().filter(|_| n >= 2) {
                        let ids: Vec<String> = (0..n).filter(|&i| i != gone).map(id).collect();
                        let members = group(&ids, &topics, &before, 1);
                        let left = sticky.assign(&members, &counts);
                        assert_cover(&left, &members, &counts);
                        assert_balanced(&left);
                        assert_eq!(moved(&before, &left), before[&id(gone)].len(), "{name}: m{gone} leaves {n}");
                    }
                }
            }
        }
    }

    #[test]
    fn sticky_prefers_the_highest_generation_claim() {
        let counts = BTreeMap::from([("t".to_string(), 4)]);
        let tp = |p| TopicPartition::new("t", p);
        let claims = |ga: i32, gb: i32| {
            let owned = BTreeMap::from([("a".to_string(), vec![tp(0), tp(1)]), ("b".to_string(), vec![tp(1), tp(2)])]);
            let mut members = group(&["a".into(), "b".into()], &["t"], &owned, ga);
            members[1].subscription.generation = GenerationId(gb);
            members
        };
        let sticky = StickyAssignor { cooperative: false };
        let plan = sticky.assign(&claims(3, 5), &counts);
        assert_eq!((plan["a"].clone(), plan["b"].clone()), (vec![tp(0), tp(3)], vec![tp(1), tp(2)]));
        let plan = sticky.assign(&claims(5, 3), &counts);
        assert_eq!((plan["a"].clone(), plan["b"].clone()), (vec![tp(0), tp(1)], vec![tp(2), tp(3)]));
        // A tie at the same generation: neither claim counts, and the cooperative round gives the
        // partition to nobody while both still claim it.
        let members = claims(4, 4);
        let plan = sticky.assign(&members, &counts);
        assert_cover(&plan, &members, &counts);
        assert_balanced(&plan);
        let adjusted = cooperative_adjust(&plan, &members);
        assert!(adjusted.values().flatten().all(|p| *p != tp(1)), "{adjusted:?}");
    }

    /// No member is given a partition another member still claims.
    fn assert_no_double_owner(adjusted: &Plan, members: &[GroupMember]) {
        for (member, partitions) in adjusted {
            for tp in partitions {
                let others: Vec<&str> = members
                    .iter()
                    .filter(|m| m.member_id != *member && m.subscription.owned_partitions.contains(tp))
                    .map(|m| m.member_id.as_str())
                    .collect();
                assert!(others.is_empty(), "{tp} given to {member}, still owned by {others:?}");
            }
        }
    }

    #[test]
    fn cooperative_adjust_never_hands_over_a_partition_still_owned_elsewhere() {
        let coop = StickyAssignor { cooperative: true };
        assert_eq!(coop.rebalance_protocol(), RebalanceProtocol::Cooperative);
        assert_eq!(StickyAssignor { cooperative: false }.rebalance_protocol(), RebalanceProtocol::Eager);
        assert_eq!(RoundRobinAssignor.rebalance_protocol(), RebalanceProtocol::Eager);
        for counts in [single(), mixed()] {
            let topics = topics(&counts);
            for n in 1..=29 {
                let before = coop.assign(&uniform(n, &topics, &BTreeMap::new(), -1), &counts);
                let mut scenarios = vec![uniform(n + 1, &topics, &before, 1)];
                if n >= 2 {
                    let ids: Vec<String> = (1..n).map(id).collect();
                    scenarios.push(group(&ids, &topics, &before, 1));
                }
                for members in scenarios {
                    let target = coop.assign(&members, &counts);
                    let adjusted = cooperative_adjust(&target, &members);
                    assert_no_double_owner(&adjusted, &members);
                    // Exactly the partitions taken from a present member are withheld (a
                    // leaver's partitions are free at once).
                    let withheld: usize =
                        target.values().map(Vec::len).sum::<usize>() - adjusted.values().map(Vec::len).sum::<usize>();
                    let changing: usize = target
                        .iter()
                        .flat_map(|(m, ps)| ps.iter().map(move |tp| (m, tp)))
                        .filter(|(m, tp)| {
                            members.iter().any(|o| o.member_id != **m && o.subscription.owned_partitions.contains(tp))
                        })
                        .count();
                    assert_eq!(withheld, changing);
                    // Second round: the owners revoked, the same target is handed out in full.
                    let ids: Vec<String> = members.iter().map(|m| m.member_id.clone()).collect();
                    let second_members = group(&ids, &topics, &adjusted, 2);
                    let second = coop.assign(&second_members, &counts);
                    assert_eq!(second, target);
                    assert_eq!(cooperative_adjust(second.clone(), &second_members), second);
                }
            }
        }
        // A stale double claim (a zombie of an older generation) also blocks the hand-over.
        let counts = BTreeMap::from([("t".to_string(), 2)]);
        let owned = BTreeMap::from([("a".to_string(), vec![TopicPartition::new("t", 0)])]);
        let mut members = group(&["a".into(), "b".into()], &["t"], &owned, 5);
        members[1].subscription.owned_partitions = vec![TopicPartition::new("t", 0)];
        members[1].subscription.generation = GenerationId(2);
        let target = coop.assign(&members, &counts);
        assert_eq!(target["a"], vec![TopicPartition::new("t", 0)]);
        assert_no_double_owner(&cooperative_adjust(&target, &members), &members);
    }

    /// The 2 -> 30 scale-out on 72 partitions, one member joining per step, each member owning
    /// what the previous step gave it: partitions moved per step, per assignor. Sticky moves
    /// exactly the minimum, what the newcomer must receive (72 / n, rounded down).
    #[test]
    fn scale_out_2_to_30_moves() {
        let counts = single();
        let names = ["range", "roundrobin", "sticky", "cooperative-sticky"];
        let assignors: Vec<_> = names.iter().map(|n| assignor_by_name(n).unwrap()).collect();
        let mut plans: Vec<Plan> =
            assignors.iter().map(|a| a.assign(&uniform(2, &["t"], &BTreeMap::new(), -1), &counts)).collect();
        let mut totals = [0usize; 4];
        let mut minimum_total = 0;
        println!("members  range  roundrobin  cooperative-sticky  minimum");
        for n in 3..=30 {
            let minimum = 72 / n;
            let mut moves = [0usize; 4];
            for (i, assignor) in assignors.iter().enumerate() {
                let members = uniform(n, &["t"], &plans[i], n as i32 - 2);
                let next = assignor.assign(&members, &counts);
                assert_cover(&next, &members, &counts);
                assert_balanced(&next);
                moves[i] = moved(&plans[i], &next);
                totals[i] += moves[i];
                plans[i] = next;
            }
            assert_eq!(plans[2], plans[3], "sticky and cooperative-sticky share the target");
            assert_eq!(moves[3], minimum, "step {n}: sticky moves the minimum");
            minimum_total += minimum;
            println!("{n:>7}  {:>5}  {:>10}  {:>18}  {minimum:>7}", moves[0], moves[1], moves[3]);
        }
        println!("total    {:>5}  {:>10}  {:>18}  {minimum_total:>7}", totals[0], totals[1], totals[3]);
        assert_eq!(totals[3], minimum_total);
        assert!(totals[3] <= totals[0] && totals[3] <= totals[1]);
    }
}
