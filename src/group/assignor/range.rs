//! Kafka's `range` assignor.

use std::collections::BTreeMap;

use super::{java_member_order, sorted_members, Assignor, GroupMember};
use crate::group::types::TopicPartition;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::assignor::tests::member;

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
