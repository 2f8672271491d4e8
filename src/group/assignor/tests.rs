//! Tests of the consumer protocol encodings and the assignors.

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
