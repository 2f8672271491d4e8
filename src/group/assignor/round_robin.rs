//! Kafka's `roundrobin` assignor.

use std::collections::BTreeMap;

use super::{all_partitions, java_member_order, sorted_members, subscribes, Assignor, GroupMember};
use crate::group::types::TopicPartition;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::assignor::tests::member;

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
}
