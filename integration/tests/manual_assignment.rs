//! Manual assignment without a group (`AssignedConsumer`, Java's `KafkaConsumer.assign`), on
//! nisshi and on Kafka 3.6.2: two of three partitions are read exactly (nothing of the third),
//! a seek moves one, commits go out as a simple consumer's (generation -1, no member id) and
//! read back through `committed` and the admin; a new assignment keeps the positions of the
//! partitions it keeps and starts the others from their committed offset (else the reset
//! policy); while a real member owns the group id, a commit is a failed outcome with the
//! broker's code; without `group.id` commits are an error.
//!
//! Both brokers answer a generation -1 commit on a group with members UNKNOWN_MEMBER_ID
//! (Kafka's `validateOffsetCommit`; nisshi follows it).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use kgroup::admin::Admin;
use kgroup::consumer::OffsetReset;
use kgroup::embedded::kafka36::Kafka36Options;
use kgroup::group::{CommitFailure, CommitOutcome, StateKind, TopicPartition};
use kgroup::producer::{Producer, ProducerConfig, ProducerRecord};
use kgroup::protocol::error_code::KafkaCode;
use kgroup::{AssignedConsumer, Batch, Cluster, ConsumerConfig, Error, GroupConsumer};
use kgroup_integration::{init_tracing, unique_name, TestBroker};
use tokio::time::timeout;

/// Records written to each partition.
const PER_PARTITION: i64 = 30;
/// Bound on the scenario once the broker runs.
const SCENARIO: Duration = Duration::from_secs(240);
/// Bound on each wait for records or a group.
const WAIT: Duration = Duration::from_secs(60);
/// Kafka's UNKNOWN_MEMBER_ID: its answer to a commit without generation on a group with members.
const UNKNOWN_MEMBER_ID: i16 = 25;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_assignment_on_nisshi() {
    init_tracing();
    let broker = TestBroker::start().await;
    timeout(SCENARIO, scenario(broker.bootstrap())).await.expect("the scenario within its bound");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_assignment_on_kafka36() {
    init_tracing();
    let options = Kafka36Options { initial_rebalance_delay: Duration::ZERO, ..Default::default() };
    let broker = TestBroker::start_kafka36(options).await;
    timeout(SCENARIO, scenario(broker.bootstrap())).await.expect("the scenario within its bound");
}

fn tp(topic: &str, partition: i32) -> TopicPartition {
    TopicPartition::new(topic, partition)
}

fn config(bootstrap: &str, group: Option<&str>) -> ConsumerConfig {
    let mut properties = vec![
        ("bootstrap.servers", bootstrap),
        ("auto.offset.reset", "earliest"),
        ("enable.auto.commit", "false"),
        ("max.poll.records", "7"),
        ("fetch.max.wait.ms", "100"),
        ("session.timeout.ms", "10000"),
        ("heartbeat.interval.ms", "300"),
    ];
    if let Some(group) = group {
        properties.push(("group.id", group));
    }
    ConsumerConfig::from_properties(properties).expect("config")
}

async fn scenario(bootstrap: &str) {
    let cluster = Cluster::connect(kgroup::ClusterConfig::from_bootstrap_servers(bootstrap).expect("bootstrap"))
        .await
        .expect("connect");
    let topic = unique_name("manual");
    cluster.create_topic(&topic, 3, 1).await.expect("create topic");
    produce(&cluster, &topic).await;
    let group = unique_name("manual-group");
    let (p0, p1, p2) = (tp(&topic, 0), tp(&topic, 1), tp(&topic, 2));

    // Two of three partitions: exactly their records, none of the third.
    let mut consumer = AssignedConsumer::connect(config(bootstrap, Some(&group))).await.expect("connect");
    consumer.assign(vec![p1.clone(), p0.clone()]).expect("assign");
    assert_eq!(consumer.assignment().await.expect("assignment"), vec![p0.clone(), p1.clone()]);
    let read = read_until(&mut consumer, |read| read.values().map(Vec::len).sum::<usize>() == 60).await;
    let everything: Vec<i64> = (0..PER_PARTITION).collect();
    assert_eq!(read.keys().cloned().collect::<Vec<_>>(), vec![p0.clone(), p1.clone()], "nothing of {p2}");
    assert!(read.values().all(|offsets| *offsets == everything), "each record once, in order: {read:?}");
    assert_eq!(consumer.position(p0.clone()).await.expect("position"), Some(PER_PARTITION));
    assert_eq!(consumer.group_state().await.expect("snapshot").state, StateKind::Manual);

    // A seek moves a partition: its records come again from there.
    consumer.seek(p0.clone(), 20).expect("seek");
    let again = read_until(&mut consumer, |read| read.get(&p0).is_some_and(|o| o.len() == 10)).await;
    assert_eq!(again[&p0], (20..PER_PARTITION).collect::<Vec<_>>());
    let lease_p0 = again.last_lease.clone().expect("a batch of p0");

    // Commits go out as a simple consumer's, and read back through `committed` and the admin.
    let results = consumer.commit_leases(vec![lease_p0.at_offset(12), lease_p0.clone()]).await.expect("commit");
    assert_eq!(results.len(), 1, "the furthest lease of the partition: {results:?}");
    assert_eq!(results[0].offset, PER_PARTITION);
    assert!(results[0].outcome.is_committed(), "{results:?}");
    // A lower offset is committed too: the application decides where its partitions are. A
    // manual lease is a partition and an offset (no generation, no ownership streak).
    let p1_lease = kgroup::group::Lease { partition: p1.clone(), ..lease_p0.at_offset(17) };
    let results = consumer.commit_leases(vec![lease_p0.at_offset(12), p1_lease]).await.expect("commit");
    assert!(results.iter().all(|r| r.outcome.is_committed()), "{results:?}");
    let committed = consumer.committed(vec![p0.clone(), p1.clone(), p2.clone()]).await.expect("committed");
    assert_eq!(committed, vec![(p0.clone(), Some(12)), (p1.clone(), Some(17)), (p2.clone(), None)]);
    let admin = Admin::new(cluster.clone());
    let by_admin = admin.committed_offsets(&group).await.expect("admin committed offsets");
    assert_eq!(by_admin, BTreeMap::from([(p0.clone(), 12), (p1.clone(), 17)]));

    // A new assignment: p1 kept where it is, p0 dropped, p2 new (nothing committed: earliest).
    consumer.assign(vec![p1.clone(), p2.clone()]).expect("reassign");
    assert_eq!(consumer.assignment().await.expect("assignment"), vec![p1.clone(), p2.clone()]);
    assert_eq!(consumer.position(p0.clone()).await.expect("position"), None, "p0 no longer assigned");
    assert_eq!(consumer.position(p1.clone()).await.expect("position"), Some(PER_PARTITION), "p1 kept its position");
    let third = read_until(&mut consumer, |read| read.get(&p2).is_some_and(|o| o.len() == 30)).await;
    assert_eq!(third[&p2], everything, "p2 from the log start");
    assert!(!third.contains_key(&p1), "p1 had nothing left to read: {third:?}");
    assert!(!third.contains_key(&p0));
    // p0 again: from its committed offset, not where it was read to.
    consumer.assign(vec![p0.clone(), p1.clone(), p2.clone()]).expect("reassign");
    let back = read_until(&mut consumer, |read| read.get(&p0).is_some_and(|o| o.len() == 18)).await;
    assert_eq!(back[&p0], (12..PER_PARTITION).collect::<Vec<_>>(), "from the committed offset");

    // A real member owns the group id: the broker refuses the commit, reported with its code.
    let mut member = GroupConsumer::subscribe(config(bootstrap, Some(&group)), &[&topic]).await.expect("subscribe");
    wait_stable(&mut member).await;
    let results = consumer.commit_leases(vec![back.last_lease.clone().expect("a lease")]).await.expect("commit");
    let refused = CommitOutcome::Failed { reason: CommitFailure::Rejected(KafkaCode(UNKNOWN_MEMBER_ID)) };
    assert_eq!(results.iter().map(|r| &r.outcome).collect::<Vec<_>>(), vec![&refused], "{results:?}");
    // What the group holds is not touched.
    let by_admin = admin.committed_offsets(&group).await.expect("admin committed offsets");
    assert_eq!(by_admin.get(&p0), Some(&12));
    member.close().await.expect("member closes");
    consumer.close().await.expect("close");

    // Without a group: the reset policy, and commits are an error, not a silent success.
    let mut lone_config = ConsumerConfig::without_group(bootstrap);
    lone_config.auto_offset_reset = OffsetReset::Earliest;
    let mut lone = AssignedConsumer::connect(lone_config).await.expect("connect");
    lone.assign(vec![p2.clone()]).expect("assign");
    let read = read_until(&mut lone, |read| read.get(&p2).is_some_and(|o| o.len() == 30)).await;
    assert_eq!(read[&p2], everything);
    let lease = read.last_lease.clone().expect("a lease");
    assert!(matches!(lone.commit_leases(vec![lease]).await, Err(Error::NoGroup { call: "commit" })));
    assert!(matches!(lone.committed(vec![p2.clone()]).await, Err(Error::NoGroup { .. })));
    assert!(matches!(lone.commit_stored().await, Err(Error::NoGroup { .. })));
    lone.close().await.expect("close");
}

/// Writes `PER_PARTITION` records to each of the 3 partitions.
async fn produce(cluster: &Cluster, topic: &str) {
    let producer = Producer::new(cluster.clone(), ProducerConfig::default()).expect("producer");
    let deliveries: Vec<_> = (0..PER_PARTITION)
        .flat_map(|i| {
            (0..3).map(move |partition| {
                let mut record = ProducerRecord::new(topic, None::<String>, format!("{partition}-{i}"));
                record.partition = Some(partition);
                record
            })
        })
        .map(|record| producer.send(record))
        .collect();
    producer.flush().await;
    for delivery in deliveries {
        delivery.await.expect("delivered");
    }
    producer.close().await;
}

/// The offsets read per partition, in the order handed out, and the lease of the last batch.
#[derive(Debug, Default)]
struct Read {
    offsets: BTreeMap<TopicPartition, Vec<i64>>,
    last_lease: Option<kgroup::group::Lease>,
}

impl std::ops::Deref for Read {
    type Target = BTreeMap<TopicPartition, Vec<i64>>;

    fn deref(&self) -> &Self::Target {
        &self.offsets
    }
}

/// Polls until `done` says what was read is complete; then a short poll must bring nothing more.
async fn read_until(consumer: &mut AssignedConsumer, done: impl Fn(&Read) -> bool) -> Read {
    let mut read = Read::default();
    let keep = |read: &mut Read, batch: Batch| {
        let offsets = read.offsets.entry(batch.partition.clone()).or_default();
        offsets.extend(batch.records.iter().map(|r| r.offset()));
        read.last_lease = Some(batch.lease().clone());
    };
    let complete = async {
        while !done(&read) {
            if let Some(batch) = consumer.poll(7, Duration::from_millis(500)).await.expect("poll") {
                keep(&mut read, batch);
            }
        }
    };
    timeout(WAIT, complete).await.unwrap_or_else(|_| panic!("records in time; read so far: {:?}", read.offsets));
    if let Some(batch) = consumer.poll(7, Duration::from_millis(300)).await.expect("poll") {
        keep(&mut read, batch);
    }
    let seen: BTreeSet<&TopicPartition> = read.offsets.keys().collect();
    assert!(done(&read), "nothing more than asked for came: {seen:?} {:?}", read.offsets);
    read
}

/// Polls the member until it is Stable with every partition.
async fn wait_stable(member: &mut GroupConsumer) {
    let stable = async {
        loop {
            let _ = member.poll(100, Duration::from_millis(200)).await.expect("member poll");
            let snapshot = member.group_state().await.expect("snapshot");
            if snapshot.state == StateKind::Stable && snapshot.assignment.len() == 3 {
                return;
            }
        }
    };
    timeout(WAIT, stable).await.expect("the member is Stable with the three partitions");
}
