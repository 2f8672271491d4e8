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

/// A client-side partition assignor, run by the group leader.
pub trait Assignor: Send + Sync + std::fmt::Debug {
    /// The protocol name members advertise (`range`, `roundrobin`, ...).
    fn name(&self) -> &str;

    /// Assigns every partition of the subscribed topics to exactly one subscribed member.
    /// `partition_counts` covers the topics metadata knows; unknown topics are skipped.
    fn assign(
        &self,
        members: &[GroupMember],
        partition_counts: &BTreeMap<String, i32>,
    ) -> BTreeMap<String, Vec<TopicPartition>>;
}

/// The built-in assignor with this protocol name (`partition.assignment.strategy` values).
pub fn assignor_by_name(name: &str) -> Option<std::sync::Arc<dyn Assignor>> {
    match name {
        "range" => Some(std::sync::Arc::new(RangeAssignor)),
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
}
