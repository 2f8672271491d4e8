//! Moving to the log start and end, offsets by time, watermarks and lag, and each record's
//! timestamp type, on the embedded nisshi (or `KGROUP_BOOTSTRAP`) and on Apache Kafka 3.6.2,
//! the reference: every case runs on both (one Kafka cluster for all of them).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kgroup::consumer::{OffsetAndTimestamp, TimestampType, Watermarks};
use kgroup::embedded::kafka36::Kafka36Options;
use kgroup::group::TopicPartition;
use kgroup::producer::{Producer, ProducerConfig, ProducerRecord};
use kgroup::{Batch, Cluster, ConsumerConfig, Error, GroupConsumer};
use kgroup_integration::{init_tracing, unique_name, TestBroker};
use tokio::time::Instant;

const WAIT: Duration = Duration::from_secs(20);

async fn setup(broker: &TestBroker, topic_prefix: &str) -> (Cluster, String) {
    let cluster = broker.cluster().await;
    let topic = unique_name(topic_prefix);
    cluster.create_topic(&topic, 1, 1).await.expect("create topic");
    (cluster, topic)
}

async fn nisshi() -> TestBroker {
    init_tracing();
    TestBroker::start().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seek_to_beginning_reads_again_and_seek_to_end_reads_only_new_records() {
    seek_to_the_ends(&nisshi().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_for_times_before_between_and_after_the_records() {
    offsets_for_times(&nisshi().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watermarks_and_lag_after_consuming_part_of_a_partition() {
    watermarks_and_lag(&nisshi().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_carry_create_time_or_the_brokers_log_append_time() {
    timestamp_types(&nisshi().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_case_on_kafka36() {
    init_tracing();
    let options = Kafka36Options { initial_rebalance_delay: Duration::ZERO, ..Default::default() };
    let broker = TestBroker::start_kafka36(options).await;
    seek_to_the_ends(&broker).await;
    offsets_for_times(&broker).await;
    watermarks_and_lag(&broker).await;
    timestamp_types(&broker).await;
}

/// Produces one record per timestamp (`None`: the producer's clock) to partition 0, in one
/// flush; returns their offsets.
async fn produce(cluster: &Cluster, topic: &str, timestamps: &[Option<i64>]) -> Vec<i64> {
    let producer = Producer::new(cluster.clone(), ProducerConfig::default()).expect("producer");
    let deliveries: Vec<_> = timestamps
        .iter()
        .enumerate()
        .map(|(i, timestamp)| {
            let mut record = ProducerRecord::new(topic, None::<String>, format!("v{i}"));
            record.partition = Some(0);
            record.timestamp = *timestamp;
            producer.send(record)
        })
        .collect();
    producer.flush().await;
    let mut offsets = Vec::new();
    for delivery in deliveries {
        offsets.push(delivery.await.expect("delivered").offset);
    }
    producer.close().await;
    offsets
}

async fn produce_n(cluster: &Cluster, topic: &str, n: usize) -> Vec<i64> {
    produce(cluster, topic, &vec![None; n]).await
}

async fn subscribe(broker: &TestBroker, topics: &[&str]) -> GroupConsumer {
    let group = unique_name("positions");
    let config = ConsumerConfig::from_properties([
        ("bootstrap.servers", broker.bootstrap()),
        ("group.id", group.as_str()),
        ("auto.offset.reset", "earliest"),
        ("enable.auto.commit", "false"),
        ("session.timeout.ms", "10000"),
        ("heartbeat.interval.ms", "300"),
        ("fetch.max.wait.ms", "100"),
    ])
    .expect("config");
    GroupConsumer::subscribe(config, topics).await.expect("subscribe")
}

/// Polls (bounded) until the records handed out reach `end` (one partition is read).
async fn read_until(consumer: &mut GroupConsumer, end: i64) -> Vec<Batch> {
    let deadline = Instant::now() + WAIT;
    let mut batches: Vec<Batch> = Vec::new();
    while batches.last().is_none_or(|b| b.next_offset() < end) {
        assert!(Instant::now() < deadline, "records up to {end} in time");
        if let Some(batch) = consumer.poll(500, Duration::from_secs(1)).await.expect("poll") {
            batches.push(batch);
        }
    }
    batches
}

fn offsets(batches: &[Batch]) -> Vec<i64> {
    batches.iter().flat_map(|b| b.records.iter().map(|r| r.offset())).collect()
}

/// Waits (bounded) until the consumer's position of `partition` is `expected`.
async fn wait_for_position(consumer: &GroupConsumer, partition: &TopicPartition, expected: i64) {
    let deadline = Instant::now() + WAIT;
    while consumer.position(partition.clone()).await.expect("position") != Some(expected) {
        assert!(Instant::now() < deadline, "position {expected} in time");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_millis() as i64
}

async fn seek_to_the_ends(broker: &TestBroker) {
    let (cluster, topic) = setup(broker, "seek-ends").await;
    let tp = TopicPartition::new(&topic, 0);
    assert_eq!(produce_n(&cluster, &topic, 20).await, (0..20).collect::<Vec<_>>());
    let mut consumer = subscribe(broker, &[&topic]).await;
    let first = read_until(&mut consumer, 20).await;
    assert_eq!(offsets(&first), (0..20).collect::<Vec<_>>());

    consumer.seek_to_beginning(vec![tp.clone()]).expect("seek to beginning");
    let again = read_until(&mut consumer, 20).await;
    assert_eq!(offsets(&again), (0..20).collect::<Vec<_>>(), "read again from the log start, once");
    // The lease of a batch read before the seek still commits its own offset.
    let committed = consumer.commit(&first[0]).await.expect("commit");
    assert_eq!(committed[0].offset, first[0].next_offset());

    // Part of the log is buffered again when the consumer moves to its end.
    consumer.seek_to_beginning(vec![tp.clone()]).expect("seek to beginning");
    wait_for_position(&consumer, &tp, 0).await;
    consumer.seek_to_end(vec![tp.clone()]).expect("seek to end");
    wait_for_position(&consumer, &tp, 20).await;
    assert_eq!(produce_n(&cluster, &topic, 5).await, (20..25).collect::<Vec<_>>());
    let new = read_until(&mut consumer, 25).await;
    assert_eq!(offsets(&new), (20..25).collect::<Vec<_>>(), "only the records written after the seek");
    assert!(consumer.poll(500, Duration::from_millis(300)).await.expect("poll").is_none());
    consumer.close().await.expect("close");
}

async fn offsets_for_times(broker: &TestBroker) {
    let (cluster, topic) = setup(broker, "offsets-for-times").await;
    let tp = TopicPartition::new(&topic, 0);
    // Ten minutes ago, a second apart: inside every broker's accepted window.
    let base = now_ms() - 600_000;
    let times: Vec<i64> = (0..5).map(|i| base + i * 1_000).collect();
    let written = produce(&cluster, &topic, &times.iter().copied().map(Some).collect::<Vec<_>>()).await;
    assert_eq!(written, (0..5).collect::<Vec<_>>());
    let consumer = subscribe(broker, &[&topic]).await;

    let found = |offset: i64| Some(OffsetAndTimestamp { offset, timestamp: times[offset as usize] });
    let answers = consumer
        .offsets_for_times(&[
            (tp.clone(), base - 60_000),
            (tp.clone(), base + 1_000),
            (tp.clone(), base + 1_500),
            (tp.clone(), base + 60_000),
        ])
        .await
        .expect("offsets for times");
    let answers: Vec<Option<OffsetAndTimestamp>> =
        answers.into_iter().map(|(p, a)| (p == tp).then_some(a).flatten()).collect();
    assert_eq!(answers, vec![found(0), found(1), found(2), None], "before, exactly at, between, after");

    // A partition no leader answers for is an error, not "no offset".
    let missing = TopicPartition::new(&topic, 7);
    match consumer.offsets_for_times(&[(tp.clone(), base), (missing, base)]).await {
        Err(Error::UnknownPartition { partition: Some(7), .. }) => {}
        other => panic!("expected UnknownPartition, got {other:?}"),
    }
    match consumer.offsets_for_times(&[(tp.clone(), -1)]).await {
        Err(Error::NegativeTimestamp { timestamp: -1, .. }) => {}
        other => panic!("expected NegativeTimestamp, got {other:?}"),
    }
    consumer.close().await.expect("close");
}

async fn watermarks_and_lag(broker: &TestBroker) {
    let (cluster, topic) = setup(broker, "watermarks").await;
    let tp = TopicPartition::new(&topic, 0);
    produce_n(&cluster, &topic, 30).await;
    let mut consumer = subscribe(broker, &[&topic]).await;
    let deadline = Instant::now() + WAIT;
    let batch = loop {
        assert!(Instant::now() < deadline, "a batch in time");
        if let Some(batch) = consumer.poll(10, Duration::from_secs(1)).await.expect("poll") {
            break batch;
        }
    };
    assert_eq!((batch.records.len(), batch.next_offset(), batch.high_watermark), (10, 10, 30));

    assert_eq!(consumer.watermarks(tp.clone()).await.expect("watermarks"), Watermarks { low: 0, high: 30 });
    assert_eq!(consumer.position(tp.clone()).await.expect("position"), Some(10));
    assert_eq!(consumer.lag(tp.clone()).await.expect("lag"), Some(20));
    assert_eq!(consumer.cached_lag(tp.clone()).await.expect("cached lag"), Some(20), "by the fetch's high watermark");

    // Not owned: no position, so no lag; its watermarks are answered all the same.
    let other = unique_name("watermarks-other");
    cluster.create_topic(&other, 1, 1).await.expect("create topic");
    let not_owned = TopicPartition::new(&other, 0);
    assert_eq!(consumer.lag(not_owned.clone()).await.expect("lag"), None);
    assert_eq!(consumer.cached_lag(not_owned.clone()).await.expect("cached lag"), None);
    assert_eq!(consumer.watermarks(not_owned).await.expect("watermarks"), Watermarks { low: 0, high: 0 });

    read_until(&mut consumer, 30).await;
    assert_eq!(consumer.lag(tp.clone()).await.expect("lag"), Some(0));
    consumer.close().await.expect("close");
}

async fn timestamp_types(broker: &TestBroker) {
    let (cluster, create_time) = setup(broker, "create-time").await;
    let log_append_time = unique_name("log-append-time");
    cluster
        .create_topic_with_configs(&log_append_time, 1, 1, &[("message.timestamp.type", "LogAppendTime")])
        .await
        .expect("create topic");
    // Ten minutes ago: a time the broker replaces under LogAppendTime.
    let produced_at = now_ms() - 600_000;
    let stamps = [Some(produced_at), Some(produced_at + 1), Some(produced_at + 2)];
    for topic in [&create_time, &log_append_time] {
        produce(&cluster, topic, &stamps).await;
    }
    let mut consumer = subscribe(broker, &[&create_time, &log_append_time]).await;
    let mut records = Vec::new();
    let deadline = Instant::now() + WAIT;
    while records.len() < 6 {
        assert!(Instant::now() < deadline, "both topics' records in time");
        if let Some(batch) = consumer.poll(500, Duration::from_secs(1)).await.expect("poll") {
            records.extend(batch.records);
        }
    }
    let of = |topic: &str| -> Vec<(i64, TimestampType)> {
        records.iter().filter(|r| r.topic() == topic).map(|r| (r.timestamp(), r.timestamp_type())).collect()
    };
    let expected: Vec<(i64, TimestampType)> =
        stamps.iter().map(|t| (t.expect("set"), TimestampType::CreateTime)).collect();
    assert_eq!(of(&create_time), expected, "the producer's times");
    let appended = of(&log_append_time);
    assert_eq!(appended.len(), 3);
    assert!(appended.iter().all(|(_, kind)| *kind == TimestampType::LogAppendTime), "{appended:?}");
    assert!(appended.iter().all(|(t, _)| *t > produced_at + 2), "the broker's time, not the producer's: {appended:?}");
    consumer.close().await.expect("close");
}
