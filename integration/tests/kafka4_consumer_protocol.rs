//! kgroup's KIP-848 member (`group.protocol=consumer`) on real Kafka 4 brokers, beyond the seed
//! scenario (`seed_kafka4.rs`): the broker matches a regex subscription (KIP-848's server-side
//! regex), a static member restarts into its place (epoch -2), a classic group of kgroup
//! members is upgraded in place, member by member, to the consumer protocol (Kafka's online
//! migration) while a producer writes, without losing a record or a commit, and kgroup members
//! share a consumer-protocol group with members of the Java client (the release's own
//! kafka-clients).
//!
//! Every member polls batches and commits each synchronously; what every member processed is
//! gathered per partition and offset. Loops and waits are bounded; brokers are started here
//! from Maven Central's jars and stopped with the test.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kgroup::admin::Admin;
use kgroup::driver::group::GroupObserver;
use kgroup::embedded::kafka36::{Kafka36Cluster, Kafka36Options, KafkaRelease};
use kgroup::group::{CommitOutcome, StateKind, TopicPartition};
use kgroup::producer::{Producer, ProducerConfig, ProducerRecord};
use kgroup::{Cluster, ClusterConfig, ConsumerConfig, GroupConsumer};
use kgroup_integration::java_member::{JavaEvent, JavaMember};
use kgroup_integration::{init_tracing, unique_name};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout, Instant};

const PARTITIONS: i32 = 6;
/// The bound on every wait for the group to reach a state.
const WAIT: Duration = Duration::from_secs(60);

async fn start(release: KafkaRelease) -> Kafka36Cluster {
    let options = Kafka36Options { release, initial_rebalance_delay: Duration::ZERO, ..Default::default() };
    Kafka36Cluster::start(options).await.unwrap_or_else(|e| panic!("Kafka {}: {e}", release.version()))
}

async fn cluster(bootstrap: &str) -> Cluster {
    Cluster::connect(ClusterConfig::from_bootstrap_servers(bootstrap).expect("bootstrap")).await.expect("connect")
}

async fn produce(producer: &Producer, topic: &str, from: usize, count: usize) {
    let deliveries: Vec<_> = (from..from + count)
        .map(|i| producer.send(ProducerRecord::new(topic, Some(format!("k{i}")), format!("v{i}"))))
        .collect();
    producer.flush().await;
    for delivery in deliveries {
        delivery.await.expect("delivered");
    }
}

fn config(bootstrap: &str, group: &str, protocol: &str, extra: &[(&str, &str)]) -> ConsumerConfig {
    let mut properties = vec![
        ("bootstrap.servers", bootstrap),
        ("group.id", group),
        ("group.protocol", protocol),
        ("auto.offset.reset", "earliest"),
        ("enable.auto.commit", "false"),
    ];
    properties.extend_from_slice(extra);
    ConsumerConfig::from_properties(properties).expect("config")
}

/// What the members processed (per partition, the offsets), and what went wrong.
#[derive(Default)]
struct Seen {
    offsets: BTreeMap<TopicPartition, BTreeSet<i64>>,
    failures: Vec<String>,
}

/// Members that each poll, record and commit every batch until told to stop.
struct Members {
    seen: Arc<Mutex<Seen>>,
    running: Vec<(watch::Sender<bool>, JoinHandle<GroupConsumer>)>,
    observers: Vec<GroupObserver>,
}

impl Members {
    fn new() -> Self {
        Members { seen: Arc::new(Mutex::new(Seen::default())), running: Vec::new(), observers: Vec::new() }
    }

    fn add(&mut self, mut consumer: GroupConsumer) {
        self.observers.push(consumer.observer());
        let (stop, mut stopped) = watch::channel(false);
        let seen = self.seen.clone();
        let work = tokio::spawn(async move {
            while !*stopped.borrow_and_update() {
                let batch = match consumer.poll(500, Duration::from_millis(200)).await {
                    Ok(Some(batch)) => batch,
                    Ok(None) => continue,
                    Err(e) => {
                        seen.lock().unwrap().failures.push(format!("poll: {e}"));
                        break;
                    }
                };
                {
                    let mut seen = seen.lock().unwrap();
                    let offsets = seen.offsets.entry(batch.partition.clone()).or_default();
                    offsets.extend(batch.records.iter().map(|r| r.offset()));
                }
                match consumer.commit(&batch).await {
                    Ok(results) => {
                        for r in results {
                            // A fenced lease is the gate at work (its records go again to the
                            // partition's next holder); a failure is not.
                            if let CommitOutcome::Failed { reason } = &r.outcome {
                                seen.lock().unwrap().failures.push(format!("commit {}: {reason:?}", r.partition));
                            }
                        }
                    }
                    Err(e) => seen.lock().unwrap().failures.push(format!("commit: {e}")),
                }
            }
            consumer
        });
        self.running.push((stop, work));
    }

    /// Stops member `i` and closes it (it leaves the group).
    async fn close(&mut self, i: usize) {
        self.observers.remove(i);
        let (stop, work) = self.running.remove(i);
        stop.send_replace(true);
        let consumer = timeout(WAIT, work).await.expect("the member stops in time").expect("the member's task");
        timeout(WAIT, consumer.close()).await.expect("close in time").expect("close");
    }

    async fn close_all(&mut self) {
        while !self.running.is_empty() {
            self.close(0).await;
        }
    }

    /// What the running members hold now.
    async fn held(&self) -> Vec<TopicPartition> {
        let mut held = Vec::new();
        for observer in &self.observers {
            if let Ok(state) = observer.group_state().await {
                held.extend(state.assignment.iter().map(|p| p.partition.clone()));
            }
        }
        held
    }

    fn failures(&self) -> Vec<String> {
        self.seen.lock().unwrap().failures.clone()
    }

    /// Waits until every offset below `ends` was processed.
    async fn drained(&self, ends: &BTreeMap<TopicPartition, i64>) {
        let deadline = Instant::now() + WAIT;
        loop {
            let missing: i64 = {
                let seen = self.seen.lock().unwrap();
                ends.iter()
                    .map(|(tp, end)| {
                        let got = seen.offsets.get(tp).map_or(0, |o| o.range(..*end).count() as i64);
                        end - got
                    })
                    .sum()
            };
            if missing == 0 {
                return;
            }
            assert!(Instant::now() < deadline, "{missing} records never processed; failures {:?}", self.failures());
            sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Waits until `consumer`'s member is Stable holding some partition.
async fn holds_partitions(consumer: &GroupConsumer) -> Vec<TopicPartition> {
    let deadline = Instant::now() + WAIT;
    loop {
        let state = consumer.group_state().await.expect("group state");
        if state.state == StateKind::Stable && !state.assignment.is_empty() {
            return state.assignment.iter().map(|p| p.partition.clone()).collect();
        }
        assert!(Instant::now() < deadline, "no partitions within {WAIT:?}: {state:?}");
        sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_matches_a_regex_subscription_and_a_static_member_restarts_into_its_place() {
    init_tracing();
    let kafka = start(KafkaRelease::Kafka44).await;
    let cluster = cluster(&kafka.bootstrap()).await;
    let suffix = unique_name("rx");
    let (a, b, other) = (format!("{suffix}-a"), format!("{suffix}-b"), format!("{suffix}-other"));
    for topic in [&a, &b, &other] {
        cluster.create_topic(topic, 1, 1).await.expect("create topic");
    }
    let producer = Producer::new(cluster.clone(), ProducerConfig::default()).expect("producer");
    for topic in [&a, &b, &other] {
        produce(&producer, topic, 0, 50).await;
    }
    let group = unique_name("rx-group");
    let static_member = [("group.instance.id", "static-1")];
    let pattern = format!("{suffix}-(a|b)");
    let consumer =
        GroupConsumer::subscribe_pattern(config(&kafka.bootstrap(), &group, "consumer", &static_member), &pattern)
            .await
            .expect("subscribe");
    let held = holds_partitions(&consumer).await;
    let first = consumer.group_state().await.expect("state");
    assert_eq!(first.group_protocol, "consumer");
    let names: BTreeSet<String> = held.iter().map(|p| p.topic.to_string()).collect();
    assert_eq!(names, BTreeSet::from([a.clone(), b.clone()]), "the broker matched the regex, not {other}");
    // A static member leaves with epoch -2 and keeps its place: restarted within the session
    // timeout, it gets its epoch and partitions back.
    timeout(WAIT, consumer.close()).await.expect("close in time").expect("close");
    let again =
        GroupConsumer::subscribe_pattern(config(&kafka.bootstrap(), &group, "consumer", &static_member), &pattern)
            .await
            .expect("subscribe again");
    let held_again = holds_partitions(&again).await;
    let second = again.group_state().await.expect("state");
    assert_eq!(held_again, held);
    assert_eq!(
        second.generation.as_ref().map(|g| g.id),
        first.generation.as_ref().map(|g| g.id),
        "the same member epoch"
    );
    timeout(WAIT, again.close()).await.expect("close in time").expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_classic_group_is_upgraded_member_by_member_to_the_consumer_protocol_on_kafka_4_0() {
    upgrade_member_by_member(KafkaRelease::Kafka40).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_classic_group_is_upgraded_member_by_member_to_the_consumer_protocol_on_kafka_4_4() {
    upgrade_member_by_member(KafkaRelease::Kafka44).await;
}

/// Two classic members consume while a producer writes; each in turn is closed and replaced by
/// a consumer-protocol member (the broker converts the group online); no record is lost and
/// every partition ends committed at its end.
async fn upgrade_member_by_member(release: KafkaRelease) {
    init_tracing();
    let kafka = start(release).await;
    let cluster = cluster(&kafka.bootstrap()).await;
    let (topic, group) = (unique_name("migrate"), unique_name("migrate-group"));
    cluster.create_topic(&topic, PARTITIONS, 1).await.expect("create topic");
    let producer = Producer::new(cluster.clone(), ProducerConfig::default()).expect("producer");
    produce(&producer, &topic, 0, 600).await;
    let bootstrap = kafka.bootstrap();
    let member = |protocol| {
        let config = config(&bootstrap, &group, protocol, &[]);
        let topic = topic.clone();
        async move { GroupConsumer::subscribe(config, &[&topic]).await.expect("subscribe") }
    };
    let mut members = Members::new();
    for _ in 0..2 {
        let classic = member("classic").await;
        holds_partitions(&classic).await;
        members.add(classic);
    }
    let mut written = 600;
    // Each classic member in turn is replaced by a consumer-protocol one, records flowing.
    for step in 0..2 {
        produce(&producer, &topic, written, 300).await;
        written += 300;
        members.close(0).await;
        let upgraded = member("consumer").await;
        holds_partitions(&upgraded).await;
        let state = upgraded.group_state().await.expect("state");
        assert_eq!(state.group_protocol, "consumer", "step {step}");
        members.add(upgraded);
    }
    produce(&producer, &topic, written, 300).await;
    let admin = Admin::connect(ClusterConfig::from_bootstrap_servers(&bootstrap).expect("bootstrap")).await.unwrap();
    let partitions: Vec<TopicPartition> = (0..PARTITIONS).map(|p| TopicPartition::new(&topic, p)).collect();
    let ends = admin.log_end_offsets(&partitions).await.expect("log end offsets");
    assert_eq!(ends.values().sum::<i64>(), written as i64 + 300);
    members.drained(&ends).await;
    members.close_all().await;
    assert_eq!(members.failures(), Vec::<String>::new());
    assert_eq!(admin.committed_offsets(&group).await.expect("committed offsets"), ends, "committed to the end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kgroup_and_java_members_share_a_consumer_protocol_group() {
    init_tracing();
    let release = KafkaRelease::Kafka44;
    let kafka = start(release).await;
    let cluster = cluster(&kafka.bootstrap()).await;
    let (topic, group) = (unique_name("mixed4"), unique_name("mixed4-group"));
    cluster.create_topic(&topic, PARTITIONS, 1).await.expect("create topic");
    let producer = Producer::new(cluster.clone(), ProducerConfig::default()).expect("producer");
    produce(&producer, &topic, 0, 600).await;
    let bootstrap = kafka.bootstrap();
    let kgroup_member = || {
        let config = config(&bootstrap, &group, "consumer", &[]);
        let topic = topic.clone();
        async move { GroupConsumer::subscribe(config, &[&topic]).await }
    };
    let java_properties =
        [("group.protocol", "consumer"), ("auto.offset.reset", "earliest"), ("enable.auto.commit", "false")];
    let mut members = Members::new();
    let first = kgroup_member().await.expect("subscribe");
    holds_partitions(&first).await;
    members.add(first);
    let mut java = JavaMember::start_on(release, "java-1", &bootstrap, &group, &topic, &java_properties);
    let second = kgroup_member().await.expect("subscribe");
    holds_partitions(&second).await;
    members.add(second);
    // Every member holds some partitions, each partition held once: the broker assigned across
    // both clients.
    let deadline = Instant::now() + WAIT;
    loop {
        let java_held = java.ownership().current.partitions;
        let mut held: Vec<i32> = java_held.iter().copied().collect();
        let kgroup_held = members.held().await;
        held.extend(kgroup_held.iter().map(|p| p.partition));
        held.sort_unstable();
        if !java_held.is_empty()
            && kgroup_held.len() + java_held.len() == PARTITIONS as usize
            && held == (0..PARTITIONS).collect::<Vec<_>>()
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the group did not settle: java {java_held:?}, kgroup {kgroup_held:?}\n{}",
            java.output()
        );
        sleep(Duration::from_millis(200)).await;
    }
    produce(&producer, &topic, 600, 600).await;
    // The Java member leaves; kgroup's members take its partitions over.
    java.stop(Duration::from_secs(30)).await.expect("the Java member exits");
    produce(&producer, &topic, 1200, 300).await;
    let admin = Admin::connect(ClusterConfig::from_bootstrap_servers(&bootstrap).expect("bootstrap")).await.unwrap();
    let partitions: Vec<TopicPartition> = (0..PARTITIONS).map(|p| TopicPartition::new(&topic, p)).collect();
    let ends = admin.log_end_offsets(&partitions).await.expect("log end offsets");
    // What the Java member processed counts too.
    for event in java.events() {
        if let JavaEvent::Batch { ranges, .. } = event {
            let mut seen = members.seen.lock().unwrap();
            for (p, first, last) in ranges {
                seen.offsets.entry(TopicPartition::new(&topic, p)).or_default().extend(first..=last);
            }
        }
    }
    members.drained(&ends).await;
    members.close_all().await;
    assert_eq!(members.failures(), Vec::<String>::new());
    assert_eq!(admin.committed_offsets(&group).await.expect("committed offsets"), ends, "committed to the end");
}
