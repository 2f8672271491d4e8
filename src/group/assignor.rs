//! The `consumer` protocol's subscription and assignment bytes (KIP-62/429/341 versions 0 to 3)
//! and client-side assignors.

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{consumer_protocol_assignment, consumer_protocol_subscription};
use kafka_protocol::messages::{ApiKey, ConsumerProtocolAssignment, ConsumerProtocolSubscription, TopicName};
use kafka_protocol::protocol::{Encodable, StrBytes};

use super::types::{GenerationId, TopicPartition};
use crate::protocol::codec::guarded_decode;
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

    pub fn decode(bytes: &Bytes) -> Result<Subscription, ProtocolError> {
        let (version, mut body) = split_version(bytes, "consumer subscription")?;
        let message: ConsumerProtocolSubscription =
            guarded_decode(ApiKey::JoinGroup, version, "consumer subscription", &mut body, version)?;
        Ok(Subscription {
            topics: message.topics.iter().map(|t| t.to_string()).collect(),
            owned_partitions: message
                .owned_partitions
                .iter()
                .flat_map(|t| t.partitions.iter().map(move |&p| TopicPartition::new(&t.topic, p)))
                .collect(),
            generation: if version >= 2 { GenerationId(message.generation_id) } else { GenerationId::NONE },
            rack: message.rack_id.map(|r| r.to_string()),
            user_data: message.user_data,
        })
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
    let (version, mut body) = split_version(bytes, "consumer assignment")?;
    let message: ConsumerProtocolAssignment =
        guarded_decode(ApiKey::SyncGroup, version, "consumer assignment", &mut body, version)?;
    let mut partitions: Vec<TopicPartition> = message
        .assigned_partitions
        .iter()
        .flat_map(|t| t.partitions.iter().map(move |&p| TopicPartition::new(&t.topic, p)))
        .collect();
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

/// A client-side partition assignor, run by the group leader.
pub trait Assignor: Send + Sync + std::fmt::Debug {
    /// The protocol name members advertise (`range`, `roundrobin`, ...).
    fn name(&self) -> &str;

    /// Eager unless the assignor supports KIP-429's incremental rebalancing.
    fn rebalance_protocol(&self) -> RebalanceProtocol {
        RebalanceProtocol::Eager
    }

    /// Assigns every partition of the subscribed topics to exactly one subscribed member.
    /// `partition_counts` covers the topics metadata knows; unknown topics are skipped.
    fn assign(
        &self,
        members: &[GroupMember],
        partition_counts: &BTreeMap<String, i32>,
    ) -> BTreeMap<String, Vec<TopicPartition>>;
}

/// KIP-429's first round: a partition that moves from one member to another is assigned to
/// nobody, so its owner revokes it before the next round hands it over.
pub fn cooperative_adjust(
    target: BTreeMap<String, Vec<TopicPartition>>,
    members: &[GroupMember],
) -> BTreeMap<String, Vec<TopicPartition>> {
    let mut owner: BTreeMap<&TopicPartition, &str> = BTreeMap::new();
    for member in members {
        for tp in &member.subscription.owned_partitions {
            owner.insert(tp, &member.member_id);
        }
    }
    target
        .into_iter()
        .map(|(member, partitions)| {
            let kept = partitions.into_iter().filter(|tp| owner.get(tp).is_none_or(|o| *o == member)).collect();
            (member, kept)
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
        let mut result: BTreeMap<String, Vec<TopicPartition>> =
            members.iter().map(|m| (m.member_id.clone(), Vec::new())).collect();
        let mut topics: BTreeMap<&str, Vec<&GroupMember>> = BTreeMap::new();
        for member in members {
            for topic in &member.subscription.topics {
                topics.entry(topic).or_default().push(member);
            }
        }
        for (topic, mut consumers) in topics {
            let Some(&count) = partition_counts.get(topic) else {
                continue;
            };
            // Static members sort by instance id so their ranges survive restarts (KIP-345).
            consumers.sort_by(|a, b| {
                (a.group_instance_id.as_deref().unwrap_or(&a.member_id))
                    .cmp(b.group_instance_id.as_deref().unwrap_or(&b.member_id))
            });
            consumers.dedup_by(|a, b| a.member_id == b.member_id);
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
/// dealt in turn to the sorted members subscribed to its topic.
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
        let mut sorted: Vec<&GroupMember> = members.iter().collect();
        sorted.sort_by(|a, b| a.member_id.cmp(&b.member_id));
        let mut result: BTreeMap<String, Vec<TopicPartition>> =
            sorted.iter().map(|m| (m.member_id.clone(), Vec::new())).collect();
        let mut next = 0usize;
        for tp in all_partitions(members, partition_counts) {
            // The next member in the circle that subscribes to this topic.
            for step in 0..sorted.len() {
                let member = sorted[(next + step) % sorted.len()];
                if member.subscription.topics.iter().any(|t| *t == *tp.topic) {
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
    let topics: std::collections::BTreeSet<&str> =
        members.iter().flat_map(|m| m.subscription.topics.iter().map(String::as_str)).collect();
    topics
        .into_iter()
        .flat_map(|t| (0..partition_counts.get(t).copied().unwrap_or(0)).map(move |p| TopicPartition::new(t, p)))
        .collect()
}

/// Kafka's `sticky` and `cooperative-sticky` assignors (KIP-54, KIP-429): as balanced as
/// `roundrobin`, while moving as few partitions as possible. Each member keeps the partitions it
/// owns (from its subscription's owned partitions, the highest generation winning a double
/// claim) up to its share; only the surplus and unowned partitions move, to the members below
/// their share. The cooperative variant is the same plan, handed out in KIP-429's two rounds.
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
        let mut sorted: Vec<&GroupMember> = members.iter().collect();
        sorted.sort_by(|a, b| a.member_id.cmp(&b.member_id));
        sorted.dedup_by(|a, b| a.member_id == b.member_id);
        let partitions = all_partitions(members, partition_counts);
        let subscribes = |m: &GroupMember, tp: &TopicPartition| m.subscription.topics.iter().any(|t| *t == *tp.topic);
        // Current owners: the claim of the highest generation wins.
        let mut owner: BTreeMap<TopicPartition, (GenerationId, &str)> = BTreeMap::new();
        for m in &sorted {
            for tp in &m.subscription.owned_partitions {
                if partitions.binary_search(tp).is_ok() && subscribes(m, tp) {
                    let claim = (m.subscription.generation, m.member_id.as_str());
                    if owner.get(tp).is_none_or(|current| current.0 < claim.0) {
                        owner.insert(tp.clone(), claim);
                    }
                }
            }
        }
        let n = sorted.len().max(1);
        let (share, extra) = (partitions.len() / n, partitions.len() % n);
        // The members that own the most get the larger shares, so the fewest partitions move.
        let mut by_owned: Vec<(&str, usize)> = sorted
            .iter()
            .map(|m| (m.member_id.as_str(), owner.values().filter(|(_, o)| *o == m.member_id).count()))
            .collect();
        by_owned.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let quota: BTreeMap<&str, usize> =
            by_owned.iter().enumerate().map(|(i, (id, _))| (*id, share + usize::from(i < extra))).collect();
        let mut result: BTreeMap<String, Vec<TopicPartition>> =
            sorted.iter().map(|m| (m.member_id.clone(), Vec::new())).collect();
        let mut unassigned = Vec::new();
        for tp in &partitions {
            match owner.get(tp) {
                Some((_, id)) if result[*id].len() < quota[id] => {
                    result.entry((*id).to_owned()).or_default().push(tp.clone())
                }
                _ => unassigned.push(tp.clone()),
            }
        }
        for tp in unassigned {
            // The eligible member furthest below its quota (ties: member id order).
            let target = sorted
                .iter()
                .filter(|m| subscribes(m, &tp))
                .min_by_key(|m| {
                    (result[&m.member_id].len() as isize - quota[m.member_id.as_str()] as isize, &m.member_id)
                })
                .map(|m| m.member_id.clone());
            if let Some(id) = target {
                result.entry(id).or_default().push(tp);
            }
        }
        for owned in result.values_mut() {
            owned.sort();
        }
        result
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

    fn uniform(n: usize, owned: &BTreeMap<String, Vec<TopicPartition>>, generation: i32) -> Vec<GroupMember> {
        (0..n)
            .map(|i| {
                let id = format!("m{i:02}");
                GroupMember {
                    member_id: id.clone(),
                    group_instance_id: None,
                    subscription: Subscription {
                        topics: vec!["t".into()],
                        owned_partitions: owned.get(&id).cloned().unwrap_or_default(),
                        generation: GenerationId(generation),
                        ..Default::default()
                    },
                }
            })
            .collect()
    }

    fn exact_cover(plan: &BTreeMap<String, Vec<TopicPartition>>, partitions: i32) {
        let mut all: Vec<_> = plan.values().flatten().cloned().collect();
        all.sort();
        assert_eq!(all, (0..partitions).map(|p| TopicPartition::new("t", p)).collect::<Vec<_>>());
    }

    fn moved(before: &BTreeMap<String, Vec<TopicPartition>>, after: &BTreeMap<String, Vec<TopicPartition>>) -> usize {
        after.iter().map(|(m, ps)| ps.iter().filter(|tp| !before.get(m).is_some_and(|b| b.contains(tp))).count()).sum()
    }

    #[test]
    fn every_assignor_covers_exactly_once_balanced_and_deterministic() {
        let counts = BTreeMap::from([("t".to_string(), 72)]);
        for name in ["range", "roundrobin", "sticky", "cooperative-sticky"] {
            let assignor = assignor_by_name(name).unwrap();
            for n in 1..=30 {
                let members = uniform(n, &BTreeMap::new(), -1);
                let plan = assignor.assign(&members, &counts);
                exact_cover(&plan, 72);
                let sizes: Vec<usize> = plan.values().map(Vec::len).collect();
                let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
                assert!(max - min <= 1, "{name} with {n} members: {sizes:?}");
                let mut reversed = members.clone();
                reversed.reverse();
                assert_eq!(assignor.assign(&reversed, &counts), plan, "{name} depends on member order");
            }
        }
    }

    /// The 2 -> 30 scale-out on 72 partitions: partitions moved per step, per assignor. Sticky
    /// moves exactly what the new member must receive.
    #[test]
    fn scale_out_2_to_30_moves() {
        let counts = BTreeMap::from([("t".to_string(), 72)]);
        let mut totals = BTreeMap::new();
        for name in ["range", "roundrobin", "cooperative-sticky"] {
            let assignor = assignor_by_name(name).unwrap();
            let mut plan = assignor.assign(&uniform(2, &BTreeMap::new(), -1), &counts);
            let mut total = 0;
            for n in 3..=30 {
                let next = assignor.assign(&uniform(n, &plan, n as i32 - 1), &counts);
                exact_cover(&next, 72);
                let moves = moved(&plan, &next);
                if name == "cooperative-sticky" {
                    let newcomer = next[&format!("m{:02}", n - 1)].len();
                    assert_eq!(moves, newcomer, "step {n}: sticky moves only what the new member gets");
                }
                total += moves;
                plan = next;
            }
            totals.insert(name, total);
        }
        println!("partitions moved over the 2 -> 30 scale-out: {totals:?}");
        assert!(totals["cooperative-sticky"] < totals["range"]);
        assert!(totals["cooperative-sticky"] < totals["roundrobin"]);
    }

    #[test]
    fn cooperative_adjust_never_hands_over_a_partition_still_owned_elsewhere() {
        let counts = BTreeMap::from([("t".to_string(), 6)]);
        let sticky = StickyAssignor { cooperative: true };
        let before = sticky.assign(&uniform(2, &BTreeMap::new(), -1), &counts);
        let members = uniform(3, &before, 1);
        let target = sticky.assign(&members, &counts);
        let adjusted = cooperative_adjust(target.clone(), &members);
        assert!(adjusted["m02"].is_empty(), "the newcomer waits for the second round: {adjusted:?}");
        for (member, partitions) in &adjusted {
            for tp in partitions {
                let owners: Vec<_> = members
                    .iter()
                    .filter(|m| m.subscription.owned_partitions.contains(tp))
                    .map(|m| &m.member_id)
                    .collect();
                assert!(owners.is_empty() || owners == vec![member], "{tp} given to {member}, owned by {owners:?}");
            }
        }
        // Second round: the revoked partitions are free and go to the newcomer.
        let second = cooperative_adjust(sticky.assign(&uniform(3, &adjusted, 2), &counts), &uniform(3, &adjusted, 2));
        exact_cover(&second, 6);
        assert_eq!(second["m02"].len(), 2);
    }
}
