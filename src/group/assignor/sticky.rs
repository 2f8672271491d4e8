//! Kafka's `sticky` and `cooperative-sticky` assignors.

use std::collections::{BTreeMap, BTreeSet};

use super::{all_partitions, sorted_members, subscribes, Assignor, GroupMember, Plan, RebalanceProtocol};
use crate::group::types::{GenerationId, TopicPartition};

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
/// KIP-429's two rounds through [`cooperative_adjust`](super::cooperative_adjust).
#[derive(Debug, Clone, Copy)]
pub struct StickyAssignor {
    /// `cooperative-sticky` (KIP-429's two rounds) rather than `sticky` (eager).
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
    use crate::group::assignor::tests::{
        assert_balanced, assert_cover, assert_order_independent, group, id, mixed, moved, single, topics, uniform,
        STICKY,
    };
    use crate::group::assignor::{assignor_by_name, cooperative_adjust};

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
}
