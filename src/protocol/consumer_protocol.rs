//! The `consumer` protocol's subscription and assignment bytes (KIP-62/429/341 versions 0 to 3).

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{consumer_protocol_assignment, consumer_protocol_subscription};
use kafka_protocol::messages::{ApiKey, ConsumerProtocolAssignment, ConsumerProtocolSubscription, TopicName};
use kafka_protocol::protocol::{Encodable, StrBytes};

use super::types::{GenerationId, TopicPartition};
use super::ProtocolError;

/// The version of the subscription and assignment encodings we write (Kafka 3.x writes 3).
pub const CONSUMER_PROTOCOL_VERSION: i16 = 3;

/// What a member asks for, as carried in its JoinGroup metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subscription {
    /// The topics subscribed to.
    pub topics: Vec<String>,
    /// Partitions the member owns now (KIP-429; empty under eager protocols).
    pub owned_partitions: Vec<TopicPartition>,
    /// The member's generation when it sent this (v2+, `-1` when unknown).
    pub generation: GenerationId,
    /// `client.rack` (v3+), for rack-aware assignors.
    pub rack: Option<String>,
    /// Assignor-specific bytes, passed through as they are.
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
    /// The JoinGroup metadata bytes, at [`CONSUMER_PROTOCOL_VERSION`].
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

/// The partitions of a member's assignment bytes (SyncGroup); empty bytes are no partitions.
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
