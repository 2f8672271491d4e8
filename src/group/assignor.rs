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
mod tests;
