//! Changing the subscription of a running consumer, and pattern subscriptions, on nisshi and on
//! Kafka 3.6.2.
//!
//! Change: two members of a group read topic A; one of them, holding an uncommitted batch of A,
//! switches to topic B. From then on it is handed batches of B only, B's records all reach it,
//! the batch of A it held is fenced locally when committed after its new assignment, and the
//! other member takes over A, reading the held batch's records again from the committed offset
//! (at-least-once). Run with an eager assignor (`range`: everything is revoked) and a
//! cooperative one (`cooperative-sticky`: only A's partitions are).
//!
//! Pattern: a member subscribed to `<prefix>-in-[0-9]+|__consumer_offsets` reads the matching
//! topic (internal topics are left out, and a topic whose name only contains a match is not
//! taken), then a topic created after it started, found by the refresh every
//! `metadata.max.age.ms` (500 ms here); a member of another group whose pattern matches nothing
//! at its start joins with no topics and reads that topic once it exists. Every batch is
//! committed.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use kgroup::embedded::kafka36::Kafka36Options;
use kgroup::group::{CommitOutcome, FenceReason, StateKind, TopicPartition};
use kgroup::producer::{Producer, ProducerConfig, ProducerRecord};
use kgroup::{Batch, Cluster, ConfigError, ConsumerConfig, Error, GroupConsumer};
use kgroup_integration::{init_tracing, unique_name, TestBroker};
use tokio::time::{timeout, Instant};

/// Records produced per topic.
const RECORDS: usize = 40;
/// Bound on each scenario once the broker runs.
const SCENARIO: Duration = Duration::from_secs(240);
/// Bound on each wait for the group to settle or records to arrive.
const SETTLE: Duration = Duration::from_secs(90);
/// How long a poll waits for a batch while the test alternates between members.
const POLL: Duration = Duration::from_millis(100);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_changes_its_topics_on_nisshi() {
    init_tracing();
    let broker = TestBroker::start().await;
    for assignor in ["range", "cooperative-sticky"] {
        timeout(SCENARIO, change(broker.bootstrap(), assignor)).await.expect("the scenario within its bound");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_changes_its_topics_on_kafka36() {
    init_tracing();
    let broker = TestBroker::start_kafka36(kafka36()).await;
    for assignor in ["range", "cooperative-sticky"] {
        timeout(SCENARIO, change(broker.bootstrap(), assignor)).await.expect("the scenario within its bound");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pattern_picks_up_topics_created_later_on_nisshi() {
    init_tracing();
    let broker = TestBroker::start().await;
    timeout(SCENARIO, pattern(broker.bootstrap())).await.expect("the scenario within its bound");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pattern_picks_up_topics_created_later_on_kafka36() {
    init_tracing();
    let broker = TestBroker::start_kafka36(kafka36()).await;
    timeout(SCENARIO, pattern(broker.bootstrap())).await.expect("the scenario within its bound");
}

fn kafka36() -> Kafka36Options {
    Kafka36Options { initial_rebalance_delay: Duration::ZERO, ..Default::default() }
}

async fn connect(bootstrap: &str) -> Cluster {
    Cluster::connect(kgroup::ClusterConfig::from_bootstrap_servers(bootstrap).expect("bootstrap"))
        .await
        .expect("connect")
}

fn config(bootstrap: &str, group: &str, assignor: &str) -> ConsumerConfig {
    ConsumerConfig::from_properties([
        ("bootstrap.servers", bootstrap),
        ("group.id", group),
        ("auto.offset.reset", "earliest"),
        ("enable.auto.commit", "false"),
        ("partition.assignment.strategy", assignor),
        ("max.poll.records", "5"),
        ("session.timeout.ms", "10000"),
        ("heartbeat.interval.ms", "300"),
        ("max.poll.interval.ms", "300000"),
        ("fetch.max.wait.ms", "100"),
        ("metadata.max.age.ms", "500"),
    ])
    .expect("config")
    // A revoke window waits this long for a lease the application holds.
    .rebalance_callback_timeout(Duration::from_secs(2))
}

async fn produce(cluster: &Cluster, topic: &str) {
    let producer = Producer::new(cluster.clone(), ProducerConfig::default()).expect("producer");
    let deliveries: Vec<_> = (0..RECORDS)
        .map(|i| producer.send(ProducerRecord::new(topic, Some(format!("k{i}")), format!("v{i}"))))
        .collect();
    producer.flush().await;
    for delivery in deliveries {
        delivery.await.expect("delivered");
    }
    producer.close().await;
}

async fn commit(consumer: &GroupConsumer, batch: &Batch) {
    let results = consumer.commit(batch).await.expect("commit");
    assert!(results.iter().all(|r| matches!(r.outcome, CommitOutcome::Committed { .. })), "{results:?}");
}

/// The (partition, offset) pairs of a batch.
fn offsets(batch: &Batch) -> impl Iterator<Item = (i32, i64)> + '_ {
    batch.records.iter().map(|r| (batch.partition.partition, r.offset()))
}

/// Polls both members (topics still empty) until both are Stable in one generation, each with
/// one of A's two partitions.
async fn settle(a: &mut GroupConsumer, b: &mut GroupConsumer) {
    let settled = async {
        loop {
            for consumer in [&mut *a, &mut *b] {
                assert!(consumer.poll(1, POLL).await.expect("poll").is_none(), "no records yet");
            }
            let (sa, sb) = (a.group_state().await.expect("a"), b.group_state().await.expect("b"));
            let stable = sa.state == StateKind::Stable && sb.state == StateKind::Stable;
            let generation = sa.generation.as_ref().map(|g| g.id) == sb.generation.as_ref().map(|g| g.id);
            if stable && generation && sa.assignment.len() == 1 && sb.assignment.len() == 1 {
                return;
            }
        }
    };
    timeout(SETTLE, settled).await.expect("two members with a partition each");
}

async fn change(bootstrap: &str, assignor: &str) {
    let cluster = connect(bootstrap).await;
    let (topic_a, topic_b) = (unique_name("subs-a"), unique_name("subs-b"));
    for topic in [&topic_a, &topic_b] {
        cluster.create_topic(topic, 2, 1).await.expect("create topic");
    }
    let group = unique_name("subs-group");
    let mut a = GroupConsumer::subscribe(config(bootstrap, &group, assignor), &[&topic_a]).await.expect("a");
    let mut b = GroupConsumer::subscribe(config(bootstrap, &group, assignor), &[&topic_a]).await.expect("b");
    settle(&mut a, &mut b).await;
    produce(&cluster, &topic_a).await;
    produce(&cluster, &topic_b).await;

    // a holds a batch of A (its records buffered and prefetched behind it), uncommitted.
    let held = timeout(SETTLE, async {
        loop {
            if let Some(batch) = a.poll(5, POLL).await.expect("poll a") {
                return batch;
            }
        }
    })
    .await
    .expect("a batch of A");
    assert_eq!(&*held.partition.topic, topic_a.as_str());

    let refused = a.change_subscription(&["not a topic"]).await.expect_err("an invalid name is refused");
    assert!(matches!(&refused, Error::Config(ConfigError::InvalidTopic { name, .. }) if name == "not a topic"));
    a.change_subscription(&[&topic_b]).await.expect("change a's subscription");

    let mut a_read: BTreeSet<(i32, i64)> = BTreeSet::new();
    let mut b_read: BTreeSet<(i32, i64)> = BTreeSet::new();
    let mut held_outcome = None;
    let mut last_round = Instant::now();
    let done = async {
        loop {
            if let Some(batch) = a.poll(5, POLL).await.expect("poll a") {
                assert_eq!(&*batch.partition.topic, topic_b.as_str(), "no batch of A after the change");
                a_read.extend(offsets(&batch));
                commit(&a, &batch).await;
            }
            if let Some(batch) = b.poll(5, POLL).await.expect("poll b") {
                assert_eq!(&*batch.partition.topic, topic_a.as_str());
                b_read.extend(offsets(&batch));
                commit(&b, &batch).await;
            }
            let snapshot = a.group_state().await.expect("a's snapshot");
            let moved = snapshot.state == StateKind::Stable
                && !snapshot.assignment.is_empty()
                && snapshot.assignment.iter().all(|p| *p.partition.topic == *topic_b);
            if held_outcome.is_none() && moved {
                // In a generation that gave A away: the held lease is refused before any send.
                let fenced_before = snapshot.counters.partitions_fenced_locally;
                let sent_before = snapshot.counters.commits_sent;
                let results = a.commit(&held).await.expect("commit of the held batch");
                let after = a.group_state().await.expect("a's snapshot").counters;
                assert_eq!(after.partitions_fenced_locally, fenced_before + 1);
                assert_eq!(after.commits_sent, sent_before, "never sent");
                held_outcome = Some(results[0].outcome.clone());
            }
            let redelivered = offsets(&held).all(|record| b_read.contains(&record));
            if held_outcome.is_some() && a_read.len() == RECORDS && b_read.len() == RECORDS && redelivered {
                return;
            }
            if last_round.elapsed() > Duration::from_secs(20) {
                tracing::warn!(a = a_read.len(), b = b_read.len(), ?held_outcome, "still waiting");
                last_round = Instant::now();
            }
        }
    };
    timeout(SETTLE, done).await.unwrap_or_else(|_| {
        panic!("{assignor}: a read {} of B, b {} of A, held batch: {held_outcome:?}", a_read.len(), b_read.len())
    });
    assert!(
        matches!(held_outcome, Some(CommitOutcome::Fenced { reason: FenceReason::NotOwned, .. })),
        "{assignor}: {held_outcome:?}"
    );
    let snapshot = a.group_state().await.expect("a's snapshot");
    assert_eq!(snapshot.subscription, vec![topic_b.clone()]);
    assert_eq!(snapshot.pattern, None);
    let b_owned: BTreeSet<TopicPartition> = b.assignment().await.expect("b's assignment").into_iter().collect();
    let all_of_a: BTreeSet<TopicPartition> = (0..2).map(|p| TopicPartition::new(topic_a.as_str(), p)).collect();
    assert_eq!(b_owned, all_of_a, "{assignor}: b took A over");
    a.close().await.expect("close a");
    b.close().await.expect("close b");
}

async fn pattern(bootstrap: &str) {
    let cluster = connect(bootstrap).await;
    let prefix = unique_name("pat");
    let (first, later, outside) = (format!("{prefix}-in-1"), format!("{prefix}-in-2"), format!("{prefix}-in-1x"));
    cluster.create_topic(&first, 2, 1).await.expect("create topic");
    cluster.create_topic(&outside, 1, 1).await.expect("create topic");
    produce(&cluster, &first).await;
    produce(&cluster, &outside).await;
    let regex = format!("{prefix}-in-[0-9]+|__consumer_offsets");
    let mut c = GroupConsumer::subscribe_pattern(config(bootstrap, &unique_name("pat-group"), "range"), &regex)
        .await
        .expect("c");
    // Matches nothing when it starts.
    let mut d = GroupConsumer::subscribe_pattern(config(bootstrap, &unique_name("pat-late"), "range"), &later)
        .await
        .expect("d");

    let mut c_read: BTreeMap<String, BTreeSet<(i32, i64)>> = BTreeMap::new();
    let mut d_read: BTreeSet<(i32, i64)> = BTreeSet::new();
    let mut d_joined_empty = false;
    let mut created = false;
    let done = async {
        loop {
            if let Some(batch) = c.poll(5, POLL).await.expect("poll c") {
                let topic = batch.partition.topic.to_string();
                assert!(topic == first || topic == later, "only whole matches: {topic}");
                c_read.entry(topic).or_default().extend(offsets(&batch));
                commit(&c, &batch).await;
            }
            if let Some(batch) = d.poll(5, POLL).await.expect("poll d") {
                assert_eq!(*batch.partition.topic, *later);
                d_read.extend(offsets(&batch));
                commit(&d, &batch).await;
            }
            if !created {
                let snapshot = d.group_state().await.expect("d's snapshot");
                d_joined_empty |= snapshot.state == StateKind::Stable && snapshot.subscription.is_empty();
                let first_read = c_read.get(&first).map_or(0, BTreeSet::len) == RECORDS;
                if d_joined_empty && first_read {
                    cluster.create_topic(&later, 1, 1).await.expect("create topic");
                    produce(&cluster, &later).await;
                    created = true;
                }
            } else if c_read.get(&later).map_or(0, BTreeSet::len) == RECORDS && d_read.len() == RECORDS {
                return;
            }
        }
    };
    timeout(SETTLE, done).await.unwrap_or_else(|_| {
        let counts: Vec<(&String, usize)> = c_read.iter().map(|(t, r)| (t, r.len())).collect();
        panic!("c read {counts:?}, d read {}, d joined with nothing: {d_joined_empty}", d_read.len())
    });
    let snapshot = c.group_state().await.expect("c's snapshot");
    assert_eq!(snapshot.pattern.as_deref(), Some(regex.as_str()));
    assert_eq!(snapshot.subscription, vec![first.clone(), later.clone()], "internal topics left out");
    let committed = c.committed(vec![TopicPartition::new(later.as_str(), 0)]).await.expect("committed offsets");
    assert_eq!(committed[0].1, Some(RECORDS as i64), "the later topic's records were committed");
    let snapshot = d.group_state().await.expect("d's snapshot");
    assert_eq!(snapshot.subscription, vec![later.clone()]);
    c.close().await.expect("close c");
    d.close().await.expect("close d");
}
