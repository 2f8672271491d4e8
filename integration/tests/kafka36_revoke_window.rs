//! The revoke window follows the leases the application holds (issue 14), on Kafka 3.6.2: an
//! application that reads several batches before it commits them all keeps those commits when a
//! rebalance takes the partitions (the window waits for them, and they go out in the generation
//! that still owns the partitions), and only batches held past the rebalance callback timeout
//! are fenced and read again by the next owner (those of partitions the member keeps are
//! re-stamped and committed).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use kgroup::embedded::kafka36::Kafka36Options;
use kgroup::group::{CommitOutcome, StateKind, TopicPartition};
use kgroup::producer::{Producer, ProducerConfig, ProducerRecord};
use kgroup::{Batch, ConsumerConfig, GroupConsumer};
use kgroup_integration::{init_tracing, unique_name, TestBroker};
use tokio::time::timeout;

const PARTITIONS: i32 = 4;
const MESSAGES: usize = 4000;
/// Batches the application reads (at least) before it commits them together.
const HELD_READS: usize = 4;

async fn start() -> (TestBroker, String) {
    init_tracing();
    let broker =
        TestBroker::start_kafka36(Kafka36Options { initial_rebalance_delay: Duration::ZERO, ..Default::default() })
            .await;
    let topic = unique_name("window");
    let cluster = broker.cluster().await;
    cluster.create_topic(&topic, PARTITIONS, 1).await.expect("create topic");
    let producer = Producer::new(cluster, ProducerConfig::default()).expect("producer");
    let deliveries: Vec<_> = (0..MESSAGES)
        .map(|i| producer.send(ProducerRecord::new(&topic, Some(format!("k{i}")), format!("v{i}"))))
        .collect();
    producer.flush().await;
    for delivery in deliveries {
        delivery.await.expect("delivered");
    }
    (broker, topic)
}

async fn subscribe(bootstrap: &str, group: &str, topic: &str, callback_timeout: Duration) -> GroupConsumer {
    let mut config = ConsumerConfig::from_properties([
        ("bootstrap.servers", bootstrap),
        ("group.id", group),
        ("auto.offset.reset", "earliest"),
        ("enable.auto.commit", "false"),
        ("partition.assignment.strategy", "range"),
        ("max.poll.records", "100"),
        ("session.timeout.ms", "10000"),
        ("heartbeat.interval.ms", "500"),
    ])
    .expect("config");
    config.rebalance_callback_timeout = callback_timeout;
    GroupConsumer::subscribe(config, &[topic]).await.expect("subscribe")
}

/// Every record read, by partition and offset, with how often it was read.
#[derive(Default)]
struct Reads(BTreeMap<(i32, i64), u32>);

impl Reads {
    fn add(&mut self, batch: &Batch) {
        for record in &batch.records {
            *self.0.entry((record.partition(), record.offset())).or_default() += 1;
        }
    }

    fn distinct(&self) -> usize {
        self.0.len()
    }

    fn read_twice(&self) -> Vec<(i32, i64)> {
        self.0.iter().filter(|(_, n)| **n > 1).map(|(k, _)| *k).collect()
    }
}

/// Reads batches until it holds at least `HELD_READS` and one of every partition (so a
/// rebalance always takes some of them), and keeps them, uncommitted.
async fn read_and_hold(consumer: &mut GroupConsumer, reads: &mut Reads) -> Vec<Batch> {
    let mut held: Vec<Batch> = Vec::new();
    timeout(Duration::from_secs(60), async {
        while held.len() < HELD_READS
            || held.iter().map(|b| b.partition.partition).collect::<BTreeSet<_>>().len() < PARTITIONS as usize
        {
            if let Some(batch) = consumer.poll(100, Duration::from_secs(1)).await.expect("poll") {
                reads.add(&batch);
                held.push(batch);
            }
        }
    })
    .await
    .expect("the first batches within 60 s");
    held
}

async fn wait_for_state(consumer: &GroupConsumer, wanted: impl Fn(StateKind) -> bool, what: &str) {
    timeout(Duration::from_secs(60), async {
        while !wanted(consumer.group_state().await.expect("snapshot").state) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what} within 60 s"));
}

/// Both members read and commit every batch until every record was read and every partition's
/// committed offset is its log end (so the new owners have read the moved partitions from their
/// committed offsets to the end).
async fn consume_rest(a: &mut GroupConsumer, b: &mut GroupConsumer, topic: &str, reads: &mut Reads) {
    let partitions: Vec<TopicPartition> = (0..PARTITIONS).map(|p| TopicPartition::new(topic, p)).collect();
    timeout(Duration::from_secs(90), async {
        loop {
            for consumer in [&mut *a, &mut *b] {
                if let Some(batch) = consumer.poll(100, Duration::from_millis(200)).await.expect("poll") {
                    reads.add(&batch);
                    for result in consumer.commit(&batch).await.expect("commit") {
                        assert!(result.outcome.is_committed(), "{}: {:?}", result.partition, result.outcome);
                    }
                }
            }
            let committed = a.committed(partitions.clone()).await.expect("committed offsets");
            let total: i64 = committed.iter().filter_map(|(_, offset)| *offset).sum();
            if reads.distinct() == MESSAGES && total == MESSAGES as i64 {
                return;
            }
        }
    })
    .await
    .expect("every record read and committed within 90 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_held_across_reads_are_committed_in_the_generation_that_owns_them() {
    let (broker, topic) = start().await;
    let group = unique_name("window-held");
    let mut reads = Reads::default();
    let mut a = subscribe(broker.bootstrap(), &group, &topic, Duration::from_secs(30)).await;
    let held = read_and_hold(&mut a, &mut reads).await;
    let first = a.group_state().await.expect("snapshot").generation.expect("a generation").id;

    // B joins: the rebalance takes every partition from A (range, eager), and A's window waits
    // for the leases it holds instead of letting the member rejoin.
    let mut b = subscribe(broker.bootstrap(), &group, &topic, Duration::from_secs(30)).await;
    wait_for_state(&a, |s| s == StateKind::Revoking, "A's revoke window").await;
    assert!(a.poll(100, Duration::from_millis(500)).await.expect("poll").is_none(), "nothing is handed out in it");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(a.group_state().await.expect("snapshot").state, StateKind::Revoking, "the window waits for the leases");

    // Committed all together, in the generation that still owns them: nothing fenced.
    let leases = held.iter().map(|b| b.lease().clone()).collect();
    for result in a.commit_leases(leases).await.expect("commit") {
        assert_eq!(
            result.outcome,
            CommitOutcome::Committed { generation: first, restamped_from: None },
            "{}",
            result.partition
        );
    }
    consume_rest(&mut a, &mut b, &topic, &mut reads).await;
    assert_eq!(reads.read_twice(), Vec::<(i32, i64)>::new(), "no record is read twice");
    assert!(a.group_state().await.expect("snapshot").generation.expect("a generation").id > first);
    a.close().await.expect("close A");
    b.close().await.expect("close B");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_held_past_the_callback_timeout_are_fenced_and_read_again() {
    let (broker, topic) = start().await;
    let group = unique_name("window-late");
    let mut reads = Reads::default();
    let mut a = subscribe(broker.bootstrap(), &group, &topic, Duration::from_secs(2)).await;
    let held = read_and_hold(&mut a, &mut reads).await;
    let first = a.group_state().await.expect("snapshot").generation.expect("a generation").id;

    let mut b = subscribe(broker.bootstrap(), &group, &topic, Duration::from_secs(2)).await;
    wait_for_state(&a, |s| s == StateKind::Revoking, "A's revoke window").await;
    // The callback timeout passes: the member rejoins without waiting any longer.
    let rejoined = timeout(Duration::from_secs(60), async {
        loop {
            let state = a.group_state().await.expect("snapshot");
            if state.generation.as_ref().is_some_and(|g| g.id != first) {
                return state;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("a new generation within 60 s");
    let kept: BTreeSet<i32> = rejoined.assignment.iter().map(|p| p.partition.partition).collect();

    // The late commit: fenced for the partitions that moved to B (never failed, never
    // accepted); re-stamped and committed for those A still owns in an unbroken streak.
    let leases = held.iter().map(|b| b.lease().clone()).collect();
    let mut moved = BTreeSet::new();
    for result in a.commit_leases(leases).await.expect("commit") {
        let partition = result.partition.partition;
        if kept.contains(&partition) {
            assert!(
                matches!(result.outcome, CommitOutcome::Committed { restamped_from: Some(g), .. } if g == first),
                "{}: {:?}",
                result.partition,
                result.outcome
            );
        } else {
            assert!(
                matches!(result.outcome, CommitOutcome::Fenced { lease_generation, .. } if lease_generation == first),
                "{}: {:?}",
                result.partition,
                result.outcome
            );
            moved.insert(partition);
        }
    }
    assert!(!moved.is_empty(), "A held batches of partitions that moved to B (kept {kept:?})");
    consume_rest(&mut a, &mut b, &topic, &mut reads).await;
    // Exactly the held batches of the partitions that moved are read again, by B.
    let mut expected: Vec<(i32, i64)> = held
        .iter()
        .filter(|b| moved.contains(&b.partition.partition))
        .flat_map(|b| b.records.iter().map(|r| (r.partition(), r.offset())))
        .collect();
    expected.sort();
    assert_eq!(reads.read_twice(), expected);
    a.close().await.expect("close A");
    b.close().await.expect("close B");
}
