//! A mixed consumer group on Kafka 3.6.2: kgroup members and members of the Java reference
//! client (kafka-clients 3.6.2 running `integration/kafka36/java/GroupMember.java`) share one
//! group, with `range` and with `cooperative-sticky`, and each client leads once per assignor
//! (the leader of a classic group is its first member). Whichever client leads, the other must
//! understand its assignment (ConsumerProtocol formats, KIP-429's owned partitions and second
//! round). After members of both kinds join, after a member of the other kind leaves and after
//! the leader leaves (every member sets `client.rack`, so each leader decodes the other
//! client's version 3 subscriptions with a rack in them, KIP-881):
//!
//! - every member is in one generation and every partition is owned by exactly one member, as
//!   each client reports it (kgroup's snapshot, the Java member's rebalance callbacks);
//! - no partition is assigned to two members in one generation, and every kgroup commit is
//!   stamped with a generation in which its member owned the partition;
//! - no kgroup commit fails and nothing else reaches the kgroup application as an error;
//! - every message ends up committed (OffsetFetch through a kgroup member).

use std::collections::BTreeMap;
use std::time::Duration;

use kgroup::embedded::kafka36::Kafka36Options;
use kgroup::group::{CommitOutcome, TopicPartition};
use kgroup::producer::{Producer, ProducerConfig, ProducerRecord};
use kgroup::ConsumerConfig;
use kgroup_integration::java_member::{JavaEvent, JavaMember};
use kgroup_integration::recording_member::{wait_for_convergence, GroupView, OwnershipAudit, RecordingMember};
use kgroup_integration::{init_tracing, unique_name, TestBroker};
use tokio::time::Instant;

const PARTITIONS: i32 = 12;
const MESSAGES: usize = 2_400;
/// Bound on each wait for the group and for the commits.
const CONVERGE: Duration = Duration::from_secs(90);
/// Bound on one group's scenario (the launcher bounds the broker's start).
const SCENARIO: Duration = Duration::from_secs(180);
/// A Java member leaving closes its consumer (LeaveGroup) within its own 10 s bound.
const JAVA_STOP: Duration = Duration::from_secs(30);
/// Every member's `client.rack` (the broker sets no `broker.rack`, so Java's assignors stay
/// rack-unaware and assign as without it).
const RACK: &str = "rack-a";

/// Which client leads: the first member to join, which stays leader while it stays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leader {
    Kgroup,
    Java,
}

/// The Java client's class for an assignor's protocol name.
fn java_assignor(strategy: &str) -> &'static str {
    match strategy {
        "range" => "org.apache.kafka.clients.consumer.RangeAssignor",
        "cooperative-sticky" => "org.apache.kafka.clients.consumer.CooperativeStickyAssignor",
        other => panic!("no Java assignor for {other}"),
    }
}

/// The members of one group, those that left included (their reports are audited too).
struct Group {
    bootstrap: String,
    group: String,
    topic: String,
    strategy: &'static str,
    kgroup: Vec<RecordingMember>,
    java: Vec<JavaMember>,
    left_kgroup: Vec<RecordingMember>,
    left_java: Vec<JavaMember>,
}

impl Group {
    async fn start_kgroup(&mut self, n: usize) {
        let name = format!("kg-{n}");
        let mut config = ConsumerConfig::from_properties([
            ("bootstrap.servers", self.bootstrap.as_str()),
            ("group.id", self.group.as_str()),
            ("client.id", name.as_str()),
            ("auto.offset.reset", "earliest"),
            ("enable.auto.commit", "false"),
            ("session.timeout.ms", "10000"),
            ("heartbeat.interval.ms", "500"),
            ("max.poll.interval.ms", "30000"),
            ("max.poll.records", "100"),
            ("fetch.max.wait.ms", "100"),
            ("client.rack", RACK),
        ])
        .expect("kgroup member configuration");
        config.assignment_strategy = vec![self.strategy.to_owned()];
        self.kgroup.push(RecordingMember::start(&name, config, &self.topic).await);
    }

    fn start_java(&mut self, n: usize) {
        let properties = [
            ("partition.assignment.strategy", java_assignor(self.strategy)),
            ("max.poll.interval.ms", "30000"),
            ("max.poll.records", "100"),
            ("client.rack", RACK),
        ];
        self.java.push(JavaMember::start(&format!("java-{n}"), &self.bootstrap, &self.group, &self.topic, &properties));
    }

    async fn start(&mut self, kind: Leader, n: usize) {
        match kind {
            Leader::Kgroup => self.start_kgroup(n).await,
            Leader::Java => self.start_java(n),
        }
    }

    /// The first member of `kind` still in the group leaves (LeaveGroup).
    async fn leave(&mut self, kind: Leader) {
        match kind {
            Leader::Kgroup => {
                let mut member = self.kgroup.remove(0);
                member.close().await;
                self.left_kgroup.push(member);
            }
            Leader::Java => {
                let mut member = self.java.remove(0);
                let status = member.stop(JAVA_STOP).await;
                assert!(status.is_some_and(|s| s.success()), "{} did not close cleanly: {status:?}", member.name);
                self.left_java.push(member);
            }
        }
    }

    async fn converge(&self) -> GroupView {
        let kgroup: Vec<&RecordingMember> = self.kgroup.iter().collect();
        wait_for_convergence(&kgroup, || self.java.iter().map(JavaMember::view).collect(), PARTITIONS, CONVERGE).await
    }
}

fn other(kind: Leader) -> Leader {
    match kind {
        Leader::Kgroup => Leader::Java,
        Leader::Java => Leader::Kgroup,
    }
}

/// Partitions each member owns, by name.
fn owners(view: &GroupView) -> BTreeMap<String, Vec<i32>> {
    view.members.iter().map(|(name, m)| (name.clone(), m.partitions.iter().copied().collect())).collect()
}

/// Under cooperative-sticky the members that stay keep what they had.
fn assert_sticky(strategy: &str, before: &GroupView, after: &GroupView) {
    if strategy != "cooperative-sticky" {
        return;
    }
    for (name, member) in &after.members {
        if let Some(earlier) = before.members.get(name) {
            assert!(member.partitions.is_superset(&earlier.partitions), "{name} kept its partitions: {after:#?}");
        }
    }
}

/// Writes `MESSAGES` keyed messages; returns each partition's log end.
async fn produce(broker: &TestBroker, topic: &str) -> BTreeMap<i32, i64> {
    let cluster = broker.cluster().await;
    cluster.create_topic(topic, PARTITIONS, 1).await.expect("topic");
    let producer = Producer::new(cluster, ProducerConfig::default()).expect("producer");
    let deliveries: Vec<_> = (0..MESSAGES)
        .map(|i| producer.send(ProducerRecord::new(topic, Some(format!("k{i}")), format!("m{i}"))))
        .collect();
    producer.flush().await;
    let mut log_end = BTreeMap::new();
    for delivery in deliveries {
        let written = delivery.await.expect("delivered");
        let end = log_end.entry(written.partition).or_insert(0);
        *end = (written.offset + 1).max(*end);
    }
    producer.close().await;
    log_end
}

async fn mixed_group(broker: &TestBroker, strategy: &'static str, leader: Leader) {
    let topic = unique_name("interop36");
    let log_end = produce(broker, &topic).await;
    let mut group = Group {
        bootstrap: broker.bootstrap().to_owned(),
        group: unique_name("interop36-group"),
        topic: topic.clone(),
        strategy,
        kgroup: Vec::new(),
        java: Vec::new(),
        left_kgroup: Vec::new(),
        left_java: Vec::new(),
    };
    let follower = other(leader);
    // The leader's kind joins alone first and gets everything.
    group.start(leader, 1).await;
    let alone = group.converge().await;
    assert_eq!(alone.members.len(), 1, "{alone:#?}");

    // Two of the other kind and a second of the leader's.
    group.start(follower, 1).await;
    group.start(leader, 2).await;
    group.start(follower, 2).await;
    let mixed = group.converge().await;
    println!("{strategy}, {leader:?} leads, 2 + 2 members: {:?}", owners(&mixed));
    assert_eq!(mixed.kgroup_leader.as_deref(), (leader == Leader::Kgroup).then_some("kg-1"), "the first member leads");
    assert!(mixed.members.values().all(|m| m.partitions.len() == 3), "12 partitions over 4 members: {mixed:#?}");

    // A member of the other kind leaves; the leader reassigns its partitions.
    group.leave(follower).await;
    let after_leave = group.converge().await;
    println!("{strategy}, {leader:?} leads, a follower left: {:?}", owners(&after_leave));
    assert_eq!(after_leave.members.len(), 3);
    assert_sticky(strategy, &mixed, &after_leave);

    // The leader leaves; a member of either kind takes over.
    group.leave(leader).await;
    let after_leader = group.converge().await;
    println!("{strategy}, {leader:?} led, the leader left: {:?}", owners(&after_leader));
    assert_eq!(after_leader.members.len(), 2);
    assert_sticky(strategy, &after_leave, &after_leader);

    // Every message consumed and committed by whichever member owned its partition.
    let partitions: Vec<TopicPartition> = (0..PARTITIONS).map(|p| TopicPartition::new(&topic, p)).collect();
    let deadline = Instant::now() + CONVERGE;
    loop {
        let committed = group.kgroup[0].observer().committed(partitions.clone()).await.expect("committed offsets");
        let behind: Vec<_> =
            committed.iter().filter(|(tp, offset)| *offset != log_end.get(&tp.partition).copied()).collect();
        if behind.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "committed offsets short of the log end: {behind:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    for _ in 0..group.kgroup.len() {
        group.leave(Leader::Kgroup).await;
    }
    for _ in 0..group.java.len() {
        group.leave(Leader::Java).await;
    }
    let mut audit = OwnershipAudit::default();
    let mut java_commit_failures = Vec::new();
    for member in &group.left_java {
        audit.assigned(&member.name, &member.ownership().by_generation);
        for event in member.events() {
            if let JavaEvent::CommitFail { generation, cause, .. } = event {
                java_commit_failures.push(format!("{} in {generation}: {cause}", member.name));
            }
        }
    }
    for member in &group.left_kgroup {
        audit.assigned(&member.name, &member.journal().assignments());
    }
    for member in &group.left_kgroup {
        let journal = member.journal();
        assert!(journal.errors.is_empty(), "{}: errors reached the application: {:#?}", member.name, journal.errors);
        let failed: Vec<_> =
            journal.commits.iter().filter(|c| matches!(c.outcome, CommitOutcome::Failed { .. })).collect();
        assert!(failed.is_empty(), "{}: failed commits: {failed:#?}", member.name);
        audit.committed(&member.name, &journal);
    }
    assert!(audit.violations.is_empty(), "ownership broken: {:#?}", audit.violations);
    println!("{strategy}, {leader:?} led: Java commit failures (rebalances): {java_commit_failures:?}");
}

/// Both leaders on one broker, one group after the other.
async fn both_leaders(strategy: &'static str) {
    init_tracing();
    let options = Kafka36Options { initial_rebalance_delay: Duration::ZERO, ..Default::default() };
    let broker = TestBroker::start_kafka36(options).await;
    for leader in [Leader::Kgroup, Leader::Java] {
        let scenario = mixed_group(&broker, strategy, leader);
        tokio::time::timeout(SCENARIO, scenario).await.expect("the scenario within its bound");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_groups_of_kgroup_and_java_members_led_by_either() {
    both_leaders("range").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cooperative_sticky_groups_of_kgroup_and_java_members_led_by_either() {
    both_leaders("cooperative-sticky").await;
}
