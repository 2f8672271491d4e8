//! The public consumer (`GroupConsumer`, `ConsumerConfig`) end to end on a real broker (nisshi by
//! default, `KGROUP_BOOTSTRAP` for any cluster): the stream and `poll`, explicit commits,
//! stored offsets and auto-commit, pause / resume / seek / position, two members splitting a
//! topic, the rebalance listener (its cases on Apache Kafka 3.6.2 too), `max.poll.interval.ms`,
//! `close` of dynamic and static members, and configuration errors.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::ops::Range;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_core::Stream;
use kgroup::driver::fetcher::ConsumerRecord;
use kgroup::driver::group::{GroupHandle, RevokeMode};
use kgroup::embedded::kafka36::Kafka36Options;
use kgroup::error::ClosedCause;
use kgroup::group::StateKind;
use kgroup::group::{
    CommitOutcome, GenerationId, GroupConfig, GroupError, GroupEvent, Lease, PartitionCommit, TopicPartition,
};
use kgroup::producer::{Producer, ProducerConfig, ProducerRecord};
use kgroup::{Batch, Cluster, ConfigError, ConsumerConfig, Error, GroupConsumer, RebalanceContext, RebalanceListener};
use kgroup_integration::{init_tracing, unique_name, TestBroker};
use tokio::time::{timeout, Instant};

/// Per partition, the message index written at each offset.
type Written = BTreeMap<i32, BTreeMap<i64, usize>>;

fn key_for(i: usize) -> String {
    format!("key-{i}")
}

fn value_for(i: usize) -> Bytes {
    Bytes::from(format!("value-{i}"))
}

/// Small producer batches, so that a small `max.partition.fetch.bytes` returns few records.
fn producer(cluster: &Cluster) -> Producer {
    Producer::new(cluster.clone(), ProducerConfig { batch_size: 1024, ..Default::default() }).expect("producer")
}

/// Produces keyed messages `indices` (spread by key) and returns where each landed.
async fn produce(cluster: &Cluster, topic: &str, indices: Range<usize>) -> Written {
    produce_records(cluster, indices.map(|i| (i, ProducerRecord::new(topic, Some(key_for(i)), value_for(i))))).await
}

/// Produces messages `indices` to one partition.
async fn produce_to(cluster: &Cluster, topic: &str, partition: i32, indices: Range<usize>) -> Written {
    produce_records(
        cluster,
        indices.map(|i| {
            let mut record = ProducerRecord::new(topic, Some(key_for(i)), value_for(i));
            record.partition = Some(partition);
            (i, record)
        }),
    )
    .await
}

async fn produce_records(cluster: &Cluster, records: impl Iterator<Item = (usize, ProducerRecord)>) -> Written {
    let producer = producer(cluster);
    let deliveries: Vec<_> = records.map(|(i, record)| (i, producer.send(record))).collect();
    producer.flush().await;
    let mut written = Written::new();
    for (i, delivery) in deliveries {
        let meta = delivery.await.unwrap_or_else(|e| panic!("message {i}: {e}"));
        assert!(written.entry(meta.partition).or_default().insert(meta.offset, i).is_none(), "offset reused");
    }
    producer.close().await;
    written
}

fn merge(into: &mut Written, more: Written) {
    for (p, offsets) in more {
        into.entry(p).or_default().extend(offsets);
    }
}

/// The log end of every partition (0 for an empty one).
fn ends(written: &Written, partitions: i32) -> BTreeMap<i32, i64> {
    (0..partitions).map(|p| (p, written.get(&p).and_then(|o| o.keys().last()).map_or(0, |last| last + 1))).collect()
}

fn tp(topic: &str, partition: i32) -> TopicPartition {
    TopicPartition::new(topic, partition)
}

fn all(topic: &str, partitions: i32) -> Vec<TopicPartition> {
    (0..partitions).map(|p| tp(topic, p)).collect()
}

fn ids(partitions: &[TopicPartition]) -> Vec<i32> {
    let mut ids: Vec<i32> = partitions.iter().map(|tp| tp.partition).collect();
    ids.sort();
    ids
}

async fn setup(partitions: i32) -> (TestBroker, Cluster, String) {
    init_tracing();
    let broker = TestBroker::start().await;
    let (cluster, topic) = topic_on(&broker, partitions).await;
    (broker, cluster, topic)
}

async fn topic_on(broker: &TestBroker, partitions: i32) -> (Cluster, String) {
    let cluster = broker.cluster().await;
    let topic = unique_name("consumer");
    cluster.create_topic(&topic, partitions, 1).await.expect("create topic");
    (cluster, topic)
}

/// Test defaults (earliest, explicit commits, short fetch waits and heartbeats); `extra`
/// overrides them.
fn config(bootstrap: &str, group: &str, extra: &[(&str, &str)]) -> ConsumerConfig {
    let mut properties = vec![
        ("bootstrap.servers", bootstrap),
        ("group.id", group),
        ("auto.offset.reset", "earliest"),
        ("enable.auto.commit", "false"),
        ("session.timeout.ms", "10000"),
        ("heartbeat.interval.ms", "300"),
        ("max.poll.interval.ms", "30000"),
        ("fetch.max.wait.ms", "100"),
    ];
    properties.extend_from_slice(extra);
    ConsumerConfig::from_properties(properties).expect("valid configuration")
}

async fn subscribe(broker: &TestBroker, group: &str, topic: &str, extra: &[(&str, &str)]) -> GroupConsumer {
    GroupConsumer::subscribe(config(broker.bootstrap(), group, extra), &[topic]).await.expect("subscribe")
}

/// The stream's next item, through `futures_core::Stream::poll_next`.
async fn stream_next(consumer: &mut GroupConsumer) -> Option<kgroup::Result<Batch>> {
    std::future::poll_fn(|cx| Pin::new(&mut *consumer).poll_next(cx)).await
}

/// `poll` that must not fail.
async fn poll_ok(consumer: &mut GroupConsumer, limit: usize, wait: Duration) -> Option<Batch> {
    consumer.poll(limit, wait).await.unwrap_or_else(|e| panic!("poll failed: {e}"))
}

async fn owned(consumer: &GroupConsumer) -> Vec<i32> {
    ids(&consumer.assignment().await.expect("assignment"))
}

async fn committed(consumer: &GroupConsumer, topic: &str, partitions: i32) -> BTreeMap<i32, Option<i64>> {
    let committed = consumer.committed(all(topic, partitions)).await.expect("committed offsets");
    committed.into_iter().map(|(tp, offset)| (tp.partition, offset)).collect()
}

/// The group's committed offsets, looked up by a fresh member (for after `close`).
async fn committed_in_group(
    cluster: &Cluster,
    group: &str,
    topic: &str,
    partitions: i32,
) -> BTreeMap<i32, Option<i64>> {
    let handle =
        GroupHandle::start(cluster.clone(), GroupConfig::new(group), vec![topic.to_owned()], RevokeMode::Automatic)
            .await
            .expect("member for lookups");
    let committed = handle.committed(all(topic, partitions)).await.expect("committed offsets");
    handle.leave("lookup done").await.expect("leave");
    committed.into_iter().map(|(tp, offset)| (tp.partition, offset)).collect()
}

fn at_ends(ends: &BTreeMap<i32, i64>) -> BTreeMap<i32, Option<i64>> {
    ends.iter().map(|(&p, &end)| (p, Some(end))).collect()
}

/// Asserts a commit of `batch` came back `Committed`, stamped with the batch's generation.
fn assert_committed(results: &[PartitionCommit], batch: &Batch) {
    assert_eq!(results.len(), 1, "one outcome per partition: {results:?}");
    let result = &results[0];
    assert_eq!(result.partition, batch.partition);
    assert_eq!(result.offset, batch.next_offset());
    match &result.outcome {
        CommitOutcome::Committed { generation, restamped_from: None } => {
            assert_eq!(*generation, batch.lease().generation.id)
        }
        other => panic!("{}: expected Committed, got {other:?}", batch.partition),
    }
}

/// Waits (bounded) until `$cond` holds, sleeping 50 ms between checks.
macro_rules! eventually {
    ($limit:expr, $what:expr, $cond:expr) => {{
        let deadline = Instant::now() + $limit;
        loop {
            if $cond {
                break;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {}", $what);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }};
}

/// Every record delivered to one or more consumers, per partition, in delivery order.
#[derive(Default)]
struct Ledger {
    records: BTreeMap<i32, Vec<ConsumerRecord>>,
}

impl Ledger {
    /// Records a batch after checking its shape: one partition, consecutive offsets, and
    /// `next_offset` past the last record.
    fn add(&mut self, batch: &Batch, topic: &str, limit: usize) {
        let p = batch.partition.partition;
        assert_eq!(&*batch.partition.topic, topic);
        assert!(!batch.records.is_empty(), "no empty batches");
        assert!(batch.records.len() <= limit, "{} records in a batch limited to {limit}", batch.records.len());
        let first = batch.records[0].offset();
        for (k, record) in batch.records.iter().enumerate() {
            assert_eq!((record.topic(), record.partition()), (topic, p));
            assert_eq!(record.offset(), first + k as i64, "consecutive offsets within a batch");
        }
        assert_eq!(batch.next_offset(), first + batch.records.len() as i64);
        assert_eq!(batch.lease().partition, batch.partition);
        self.records.entry(p).or_default().extend(batch.records.iter().cloned());
    }

    /// The offset after the last delivered record of `p` (0 when none).
    fn next(&self, p: i32) -> i64 {
        self.records.get(&p).and_then(|r| r.last()).map_or(0, |r| r.offset() + 1)
    }

    fn offsets(&self, p: i32) -> Vec<i64> {
        self.records.get(&p).map(|r| r.iter().map(|r| r.offset()).collect()).unwrap_or_default()
    }

    fn total(&self) -> usize {
        self.records.values().map(Vec::len).sum()
    }

    /// Every written record exactly once, in offset order per partition, with its key and value.
    fn assert_exactly_once(&self, written: &Written) {
        let partitions: BTreeSet<i32> = self.records.keys().copied().collect();
        let expected: BTreeSet<i32> = written.keys().copied().collect();
        assert_eq!(partitions, expected, "partitions delivered");
        for (p, offsets) in written {
            let want: Vec<i64> = offsets.keys().copied().collect();
            assert_eq!(self.offsets(*p), want, "partition {p}: every record once, in order");
            for record in &self.records[p] {
                let i = offsets[&record.offset()];
                assert_eq!(record.key(), Some(key_for(i).as_bytes()), "{p}@{}", record.offset());
                assert_eq!(record.value(), Some(&value_for(i)[..]), "{p}@{}", record.offset());
            }
        }
    }
}

// ---- 1. the stream ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_delivers_every_record_once_in_order_and_commits_reach_the_log_end() {
    const PARTITIONS: i32 = 6;
    let (broker, cluster, topic) = setup(PARTITIONS).await;
    let written = produce(&cluster, &topic, 0..20_000).await;
    assert_eq!(written.len(), PARTITIONS as usize, "keys spread over every partition");
    let ends = ends(&written, PARTITIONS);
    let group = unique_name("stream");
    let mut consumer = subscribe(&broker, &group, &topic, &[]).await;
    assert_eq!(consumer.max_poll_records(), 500);

    let mut ledger = Ledger::default();
    let mut batches = 0;
    timeout(Duration::from_secs(120), async {
        while (0..PARTITIONS).any(|p| ledger.next(p) < ends[&p]) {
            let batch = stream_next(&mut consumer).await.expect("the stream goes on").expect("a batch");
            ledger.add(&batch, &topic, 500);
            assert_eq!(batch.high_watermark, ends[&batch.partition.partition], "everything was written before");
            let results = consumer.commit(&batch).await.expect("commit");
            assert_committed(&results, &batch);
            batches += 1;
        }
    })
    .await
    .expect("every record in time");
    ledger.assert_exactly_once(&written);
    assert!(batches >= 20_000 / 500, "batches hold at most max.poll.records: {batches}");
    assert_eq!(ledger.total(), 20_000);

    // Nothing more: the stream waits (its pending request survives the abandoned call).
    assert!(timeout(Duration::from_millis(500), stream_next(&mut consumer)).await.is_err(), "no record after the end");
    assert_eq!(committed(&consumer, &topic, PARTITIONS).await, at_ends(&ends));
    for p in 0..PARTITIONS {
        assert_eq!(consumer.position(tp(&topic, p)).await.expect("position"), Some(ends[&p]));
    }

    // Records written now, while the stream's request is outstanding: `poll` with a smaller
    // limit takes that request over and hands out the first record, the stream the others.
    let more = produce_to(&cluster, &topic, 3, 20_000..20_003).await;
    tokio::time::sleep(Duration::from_millis(500)).await; // let the outstanding request fill
    let first = poll_ok(&mut consumer, 1, Duration::from_secs(10)).await.expect("the first new record");
    let rest = timeout(Duration::from_secs(10), stream_next(&mut consumer))
        .await
        .expect("the other new records in time")
        .expect("the stream goes on")
        .expect("a batch");
    let delivered: Vec<(i32, i64)> =
        first.records.iter().chain(&rest.records).map(|r| (r.partition(), r.offset())).collect();
    let expected: Vec<(i32, i64)> = more[&3].keys().map(|o| (3, *o)).collect();
    assert_eq!(delivered, expected, "each new record once, in order");
    assert_eq!(first.records[0].key(), Some(&b"key-20000"[..]));
    consumer.close().await.expect("close");
}

// ---- 2. poll(limit, timeout) ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_respects_its_limit_and_an_empty_poll_loses_nothing() {
    const PARTITIONS: i32 = 3;
    let (broker, cluster, topic) = setup(PARTITIONS).await;
    let mut written = produce(&cluster, &topic, 0..1500).await;
    let group = unique_name("poll");
    let mut consumer = subscribe(&broker, &group, &topic, &[]).await;

    let mut ledger = Ledger::default();
    let mut full = 0;
    timeout(Duration::from_secs(60), async {
        while ledger.total() < 1500 {
            let batch = poll_ok(&mut consumer, 37, Duration::from_secs(10)).await.expect("a batch within 10 s");
            ledger.add(&batch, &topic, 37);
            full += usize::from(batch.records.len() == 37);
        }
    })
    .await
    .expect("every record in time");
    ledger.assert_exactly_once(&written);
    assert!(full >= 1500 / 37 - 2 * PARTITIONS as usize, "batches fill up to the limit: {full} full batches");

    // A limit of 1 (and 0, taken as 1) hands out single records.
    let more = produce_to(&cluster, &topic, 1, 1500..1503).await;
    merge(&mut written, more);
    for limit in [1, 0, 1] {
        let batch = poll_ok(&mut consumer, limit, Duration::from_secs(10)).await.expect("a record");
        ledger.add(&batch, &topic, 1);
    }

    // Nothing to read: `Ok(None)` once the timeout passed.
    let started = Instant::now();
    assert!(poll_ok(&mut consumer, 37, Duration::from_millis(300)).await.is_none());
    assert!(started.elapsed() >= Duration::from_millis(300), "the empty poll waited its timeout");
    for _ in 0..5 {
        assert!(poll_ok(&mut consumer, 37, Duration::from_millis(1)).await.is_none());
    }

    // Records arriving while polls keep timing out (1-3 ms) are each handed out once.
    let producing = {
        let (cluster, topic) = (cluster.clone(), topic.clone());
        tokio::spawn(async move {
            let mut written = Written::new();
            for chunk in 0..6 {
                let start = 2000 + chunk * 500;
                merge(&mut written, produce(&cluster, &topic, start..start + 500).await);
            }
            written
        })
    };
    let mut empty_polls = 0;
    let mut expected_total = None;
    timeout(Duration::from_secs(60), async {
        while expected_total != Some(ledger.total()) {
            match poll_ok(&mut consumer, 37, Duration::from_millis(1 + (ledger.total() % 3) as u64)).await {
                Some(batch) => ledger.add(&batch, &topic, 37),
                None => empty_polls += 1,
            }
            if expected_total.is_none() && producing.is_finished() {
                expected_total = Some(1503 + 3000);
            }
        }
    })
    .await
    .expect("the late records in time");
    merge(&mut written, producing.await.expect("producer task"));
    assert!(empty_polls > 0, "some polls timed out");
    ledger.assert_exactly_once(&written);
    assert!(poll_ok(&mut consumer, 37, Duration::from_millis(300)).await.is_none(), "nothing delivered twice");
    consumer.close().await.expect("close");
}

/// `poll` is cancel-safe: a future dropped while pending (as a `select!` whose other branch wins
/// drops it) loses no batch, so automatic offset storing never commits records the application
/// did not receive. Batches of a partition must arrive back to back, and no committed offset may
/// pass the end of what was handed out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_dropped_by_select_loses_no_batch_and_commits_only_what_was_handed_out() {
    const PARTITIONS: i32 = 3;
    const RECORDS: usize = 3000;
    let (broker, cluster, topic) = setup(PARTITIONS).await;
    let written = produce(&cluster, &topic, 0..RECORDS).await;
    let ends = ends(&written, PARTITIONS);
    let group = unique_name("cancelled-poll");
    let extra = [("enable.auto.commit", "true"), ("auto.commit.interval.ms", "20")];
    let mut consumer = subscribe(&broker, &group, &topic, &extra).await;

    let mut ledger = Ledger::default();
    let (mut rounds, mut dropped) = (0u64, 0u64);
    let check_commits = |ledger: &Ledger, committed: BTreeMap<i32, Option<i64>>| {
        for (p, offset) in committed {
            let handed_out = ledger.next(p);
            assert!(
                offset.unwrap_or(0) <= handed_out,
                "partition {p} committed at {offset:?}, handed out to {handed_out}"
            );
        }
    };
    timeout(Duration::from_secs(120), async {
        while ledger.total() < RECORDS {
            rounds += 1;
            let polled = {
                let mut poll = std::pin::pin!(consumer.poll(10, Duration::from_secs(10)));
                // Started (its request is on its way to the consumer's task), then dropped every
                // third round while still pending: whatever load makes the task answer early or
                // late, some polls are cancelled mid-flight.
                let first = std::future::poll_fn(|cx| std::task::Poll::Ready(poll.as_mut().poll(cx))).await;
                match first {
                    std::task::Poll::Ready(polled) => Some(polled),
                    std::task::Poll::Pending if rounds % 3 == 0 => None,
                    std::task::Poll::Pending => Some(poll.await),
                }
            };
            match polled {
                Some(polled) => {
                    let batch = polled.unwrap_or_else(|e| panic!("poll failed: {e}")).expect("a batch within 10 s");
                    let p = batch.partition.partition;
                    assert_eq!(batch.records[0].offset(), ledger.next(p), "partition {p}: a batch went missing");
                    ledger.add(&batch, &topic, 10);
                }
                None => dropped += 1,
            }
            if rounds % 50 == 0 {
                check_commits(&ledger, committed(&consumer, &topic, PARTITIONS).await);
            }
        }
    })
    .await
    .expect("every record in time");
    ledger.assert_exactly_once(&written);
    check_commits(&ledger, committed(&consumer, &topic, PARTITIONS).await);
    assert!(dropped > 0, "some polls were dropped while pending ({rounds} rounds)");
    consumer.close().await.expect("close");
    assert_eq!(committed_in_group(&cluster, &group, &topic, PARTITIONS).await, at_ends(&ends));
}

/// A `poll` future dropped after its request went out: whether or not the consumer had
/// answered it, `close` (with automatic offset storing) commits only the batch the
/// application received, and the next member of the group starts right after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_commits_no_batch_that_a_dropped_poll_never_returned() {
    let (broker, cluster, topic) = setup(1).await;
    produce(&cluster, &topic, 0..100).await;
    let group = unique_name("dropped-poll-close");
    let extra = [("enable.auto.commit", "true"), ("auto.commit.interval.ms", "60000")];
    let mut consumer = subscribe(&broker, &group, &topic, &extra).await;
    let mut received = poll_ok(&mut consumer, 10, Duration::from_secs(10)).await.expect("a first batch");
    loop {
        let mut dropped = Box::pin(consumer.poll(10, Duration::from_secs(10)));
        match std::future::poll_fn(|cx| std::task::Poll::Ready(dropped.as_mut().poll(cx))).await {
            // Answered within its first poll: received like any other batch.
            std::task::Poll::Ready(polled) => received = polled.expect("poll").expect("a batch"),
            std::task::Poll::Pending => {
                tokio::time::sleep(Duration::from_millis(300)).await; // the consumer answers meanwhile
                break;
            }
        }
    }
    consumer.close().await.expect("close");

    let mut next = subscribe(&broker, &group, &topic, &[]).await;
    assert_eq!(
        committed(&next, &topic, 1).await,
        BTreeMap::from([(0, Some(received.next_offset()))]),
        "only the received batch counts as processed"
    );
    let batch = timeout(Duration::from_secs(60), async {
        loop {
            if let Some(batch) = poll_ok(&mut next, 10, Duration::from_secs(1)).await {
                break batch;
            }
        }
    })
    .await
    .expect("a batch for the next member");
    assert_eq!(batch.records[0].offset(), received.next_offset(), "the next member resumes after the received batch");
    next.close().await.expect("close");
}

// ---- 3. stored offsets and auto-commit ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_commit_commits_offsets_stored_with_store_offsets() {
    const PARTITIONS: i32 = 3;
    let (broker, cluster, topic) = setup(PARTITIONS).await;
    let written = produce(&cluster, &topic, 0..600).await;
    let ends = ends(&written, PARTITIONS);
    let group = unique_name("store");
    let extra =
        [("enable.auto.commit", "true"), ("auto.commit.interval.ms", "200"), ("enable.auto.offset.store", "false")];
    let mut consumer = subscribe(&broker, &group, &topic, &extra).await;

    let mut ledger = Ledger::default();
    let mut batches = Vec::new();
    timeout(Duration::from_secs(60), async {
        while ledger.total() < 600 {
            let batch = poll_ok(&mut consumer, 100, Duration::from_secs(10)).await.expect("a batch");
            ledger.add(&batch, &topic, 100);
            batches.push(batch);
        }
    })
    .await
    .expect("every record in time");
    ledger.assert_exactly_once(&written);

    // Nothing stored (enable.auto.offset.store=false): auto-commit has nothing to commit.
    assert!(poll_ok(&mut consumer, 100, Duration::from_secs(1)).await.is_none());
    assert_eq!(committed(&consumer, &topic, PARTITIONS).await, (0..PARTITIONS).map(|p| (p, None)).collect());

    // Stored offsets are committed by the next auto-commit, without an explicit commit.
    for batch in &batches {
        consumer.store_offsets(batch);
    }
    eventually!(Duration::from_secs(10), "auto-commit of the stored offsets", {
        committed(&consumer, &topic, PARTITIONS).await == at_ends(&ends)
    });
    consumer.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_offset_store_stores_a_delivered_batch_on_the_next_poll() {
    let (broker, cluster, topic) = setup(1).await;
    let written = produce(&cluster, &topic, 0..250).await;
    let group = unique_name("autostore");
    let extra = [("enable.auto.commit", "true"), ("auto.commit.interval.ms", "200")];
    let mut consumer = subscribe(&broker, &group, &topic, &extra).await;

    let mut ledger = Ledger::default();
    let mut last_first = 0;
    timeout(Duration::from_secs(60), async {
        while ledger.total() < 250 {
            let batch = poll_ok(&mut consumer, 100, Duration::from_secs(10)).await.expect("a batch");
            ledger.add(&batch, &topic, 100);
            last_first = batch.records[0].offset();
        }
    })
    .await
    .expect("every record in time");
    ledger.assert_exactly_once(&written);
    assert!(last_first >= 150, "at least three batches of at most 100");

    // Every batch but the one being processed is stored and auto-committed.
    eventually!(Duration::from_secs(10), "auto-commit up to the held batch", {
        committed(&consumer, &topic, 1).await == BTreeMap::from([(0, Some(last_first))])
    });
    tokio::time::sleep(Duration::from_millis(800)).await; // four auto-commit intervals pass
    assert_eq!(
        committed(&consumer, &topic, 1).await,
        BTreeMap::from([(0, Some(last_first))]),
        "the held batch is not stored before the next poll"
    );

    // The next poll stores it; the next auto-commit commits it.
    assert!(poll_ok(&mut consumer, 100, Duration::from_millis(200)).await.is_none());
    eventually!(Duration::from_secs(10), "auto-commit of the last batch", {
        committed(&consumer, &topic, 1).await == BTreeMap::from([(0, Some(250))])
    });
    consumer.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_commits_stored_offsets() {
    const PARTITIONS: i32 = 2;
    let (broker, cluster, topic) = setup(PARTITIONS).await;
    let written = produce(&cluster, &topic, 0..400).await;
    let ends = ends(&written, PARTITIONS);

    // Offsets stored by hand; the auto-commit timer (60 s) never fires: close commits them.
    let group = unique_name("close-store");
    let extra =
        [("enable.auto.commit", "true"), ("auto.commit.interval.ms", "60000"), ("enable.auto.offset.store", "false")];
    let mut consumer = subscribe(&broker, &group, &topic, &extra).await;
    let mut ledger = Ledger::default();
    timeout(Duration::from_secs(60), async {
        while ledger.total() < 400 {
            let batch = poll_ok(&mut consumer, 50, Duration::from_secs(10)).await.expect("a batch");
            ledger.add(&batch, &topic, 50);
            consumer.store_offsets(&batch);
        }
    })
    .await
    .expect("every record in time");
    assert_eq!(committed(&consumer, &topic, PARTITIONS).await, (0..PARTITIONS).map(|p| (p, None)).collect());
    consumer.close().await.expect("close");
    assert_eq!(committed_in_group(&cluster, &group, &topic, PARTITIONS).await, at_ends(&ends));

    // enable.auto.offset.store=true: close commits every delivered batch, the last one too
    // (the Java client commits the position of everything `poll` returned).
    let group = unique_name("close-autostore");
    let extra = [("enable.auto.commit", "true"), ("auto.commit.interval.ms", "60000")];
    let mut consumer = subscribe(&broker, &group, &topic, &extra).await;
    let mut ledger = Ledger::default();
    timeout(Duration::from_secs(60), async {
        while ledger.total() < 400 {
            let batch = poll_ok(&mut consumer, 50, Duration::from_secs(10)).await.expect("a batch");
            ledger.add(&batch, &topic, 50);
        }
    })
    .await
    .expect("every record in time");
    consumer.close().await.expect("close");
    assert_eq!(committed_in_group(&cluster, &group, &topic, PARTITIONS).await, at_ends(&ends));
}

// ---- 4. pause / resume / seek / position / assignment ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_resume_seek_and_position() {
    const PARTITIONS: i32 = 3;
    let (broker, cluster, topic) = setup(PARTITIONS).await;
    let mut written = Written::new();
    for p in 0..PARTITIONS {
        let start = p as usize * 1000;
        merge(&mut written, produce_to(&cluster, &topic, p, start..start + 200).await);
    }
    let group = unique_name("pause");
    let mut consumer = subscribe(&broker, &group, &topic, &[]).await;
    let limit = 10;

    eventually!(Duration::from_secs(20), "the assignment", owned(&consumer).await == vec![0, 1, 2]);
    eventually!(Duration::from_secs(20), "positions at the log start", {
        let mut at_start = true;
        for p in 0..PARTITIONS {
            at_start &= consumer.position(tp(&topic, p)).await.expect("position") == Some(0);
        }
        at_start
    });
    assert_eq!(consumer.position(tp(&topic, 7)).await.expect("position"), None, "not assigned");

    let mut ledger = Ledger::default();
    let first = poll_ok(&mut consumer, limit, Duration::from_secs(10)).await.expect("a batch");
    ledger.add(&first, &topic, limit);
    let paused = first.partition.clone();
    let p = paused.partition;
    let paused_at = first.next_offset();
    assert_eq!(paused_at, limit as i64, "a fetch holds more than the limit");
    consumer.pause(vec![paused.clone()]).expect("pause");

    // The others are read to their end; nothing of the paused partition, although more of it
    // was fetched already.
    timeout(Duration::from_secs(30), async {
        while (0..PARTITIONS).filter(|q| *q != p).any(|q| ledger.next(q) < 200) {
            let batch = poll_ok(&mut consumer, limit, Duration::from_secs(10)).await.expect("a batch");
            assert_ne!(batch.partition, paused, "a batch of a paused partition");
            ledger.add(&batch, &topic, limit);
        }
    })
    .await
    .expect("the other partitions in time");
    assert!(poll_ok(&mut consumer, limit, Duration::from_millis(500)).await.is_none(), "paused: nothing to read");
    assert_eq!(consumer.position(paused.clone()).await.expect("position"), Some(paused_at));
    for q in (0..PARTITIONS).filter(|q| *q != p) {
        assert_eq!(consumer.position(tp(&topic, q)).await.expect("position"), Some(200));
    }
    assert_eq!(owned(&consumer).await, vec![0, 1, 2], "pausing keeps the assignment");

    // Resumed: it goes on where it was.
    consumer.resume(vec![paused.clone()]).expect("resume");
    timeout(Duration::from_secs(30), async {
        while ledger.next(p) < 200 {
            let batch = poll_ok(&mut consumer, limit, Duration::from_secs(10)).await.expect("a batch");
            assert_eq!(batch.partition, paused, "only the resumed partition has records");
            ledger.add(&batch, &topic, limit);
        }
    })
    .await
    .expect("the resumed partition in time");
    ledger.assert_exactly_once(&written);

    // Seek back: re-delivered from the sought offset, to the end, once.
    let q = (p + 1) % PARTITIONS;
    consumer.seek(tp(&topic, q), 50).expect("seek");
    assert_eq!(consumer.position(tp(&topic, q)).await.expect("position"), Some(50));
    let mut again = Ledger::default();
    timeout(Duration::from_secs(30), async {
        while again.next(q) < 200 {
            let batch = poll_ok(&mut consumer, limit, Duration::from_secs(10)).await.expect("a batch");
            again.add(&batch, &topic, limit);
        }
    })
    .await
    .expect("the re-read in time");
    assert_eq!(again.offsets(q), (50..200).collect::<Vec<i64>>());
    assert_eq!(again.total(), 150, "only the sought partition");

    // Seek while records of the partition are fetched and not yet handed out.
    consumer.seek(tp(&topic, q), 0).expect("seek");
    let batch = poll_ok(&mut consumer, limit, Duration::from_secs(10)).await.expect("a batch");
    assert_eq!((batch.partition.partition, batch.records[0].offset()), (q, 0));
    consumer.seek(tp(&topic, q), 195).expect("seek");
    assert_eq!(consumer.position(tp(&topic, q)).await.expect("position"), Some(195));
    let batch = poll_ok(&mut consumer, limit, Duration::from_secs(10)).await.expect("a batch");
    let offsets: Vec<i64> = batch.records.iter().map(|r| r.offset()).collect();
    assert_eq!((batch.partition.partition, offsets), (q, (195..200).collect()));
    assert!(poll_ok(&mut consumer, limit, Duration::from_millis(300)).await.is_none());
    consumer.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_partitions_stay_paused_across_a_rebalance() {
    const PARTITIONS: i32 = 4;
    let (broker, cluster, topic) = setup(PARTITIONS).await;
    let mut written = Written::new();
    for p in 0..PARTITIONS {
        let start = p as usize * 1000;
        merge(&mut written, produce_to(&cluster, &topic, p, start..start + 100).await);
    }
    let group = unique_name("pause-rebalance");
    let mut a = subscribe(&broker, &group, &topic, &[]).await;
    let limit = 10;
    let mut ledger = Ledger::default();
    // A reads a little of every partition, then pauses them all.
    timeout(Duration::from_secs(30), async {
        while (0..PARTITIONS).any(|p| ledger.next(p) == 0) {
            let batch = poll_ok(&mut a, limit, Duration::from_secs(10)).await.expect("a batch");
            ledger.add(&batch, &topic, limit);
        }
    })
    .await
    .expect("some of every partition");
    a.pause(all(&topic, PARTITIONS)).expect("pause");
    let positions: BTreeMap<i32, i64> = (0..PARTITIONS).map(|p| (p, ledger.next(p))).collect();

    // B joins; A keeps two partitions, still paused: no batch from A while B reads its two.
    let mut b = subscribe(&broker, &group, &topic, &[]).await;
    let mut b_ledger = Ledger::default();
    timeout(Duration::from_secs(60), async {
        loop {
            if let Some(batch) = poll_ok(&mut a, limit, Duration::from_millis(100)).await {
                panic!("A delivered {} records of {} while paused", batch.records.len(), batch.partition);
            }
            if let Some(batch) = poll_ok(&mut b, limit, Duration::from_millis(100)).await {
                b_ledger.add(&batch, &topic, limit);
            }
            let (a_owned, b_owned) = (owned(&a).await, owned(&b).await);
            if a_owned.len() == 2 && b_owned.len() == 2 && b_owned.iter().all(|p| b_ledger.next(*p) == 100) {
                break;
            }
        }
    })
    .await
    .expect("the rebalance and B's partitions in time");
    let a_owned = owned(&a).await;
    let b_owned = owned(&b).await;
    let union: BTreeSet<i32> = a_owned.iter().chain(&b_owned).copied().collect();
    assert_eq!(union, (0..PARTITIONS).collect(), "A {a_owned:?}, B {b_owned:?}");
    for p in &b_owned {
        assert_eq!(b_ledger.offsets(*p), (0..100).collect::<Vec<i64>>(), "B starts moved partitions at the start");
    }
    for p in &a_owned {
        assert_eq!(a.position(tp(&topic, *p)).await.expect("position"), Some(positions[p]), "A kept its position");
    }

    // Resumed, A goes on where it paused.
    a.resume(all(&topic, PARTITIONS)).expect("resume");
    timeout(Duration::from_secs(30), async {
        while a_owned.iter().any(|p| ledger.next(*p) < 100) {
            let batch = poll_ok(&mut a, limit, Duration::from_secs(10)).await.expect("a batch");
            assert!(a_owned.contains(&batch.partition.partition));
            ledger.add(&batch, &topic, limit);
        }
    })
    .await
    .expect("A's partitions in time");
    for p in &a_owned {
        assert_eq!(ledger.offsets(*p), (0..100).collect::<Vec<i64>>(), "partition {p} exactly once on A");
    }
    a.close().await.expect("close A");
    b.close().await.expect("close B");
}

// ---- 5. two members ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_member_takes_half_and_kept_partitions_keep_their_position() {
    const PARTITIONS: i32 = 6;
    let (broker, cluster, topic) = setup(PARTITIONS).await;
    let mut written = produce(&cluster, &topic, 0..600).await;
    let group = unique_name("split");
    let limit = 50;
    let rec_a = Arc::new(Recorder::default());
    let mut a = GroupConsumer::subscribe_with_listener(
        config(broker.bootstrap(), &group, &[]),
        &[&topic],
        Some(rec_a.clone() as Arc<dyn RebalanceListener>),
    )
    .await
    .expect("subscribe A");

    // A alone reads and commits everything there is.
    let mut a_ledger = Ledger::default();
    let mut committed_at_join: BTreeMap<i32, i64> = BTreeMap::new();
    timeout(Duration::from_secs(60), async {
        while a_ledger.total() < 600 {
            let batch = poll_ok(&mut a, limit, Duration::from_secs(10)).await.expect("a batch");
            a_ledger.add(&batch, &topic, limit);
            let results = a.commit(&batch).await.expect("commit");
            assert_committed(&results, &batch);
            committed_at_join.insert(batch.partition.partition, batch.next_offset());
        }
    })
    .await
    .expect("A's first records in time");
    assert_eq!(committed_at_join, ends(&written, PARTITIONS));

    // More arrives; A reads one more batch of every partition (one partition resumed at a
    // time) and does not commit it.
    merge(&mut written, produce(&cluster, &topic, 600..6600).await);
    let ends = ends(&written, PARTITIONS);
    a.pause(all(&topic, PARTITIONS)).expect("pause");
    for p in 0..PARTITIONS {
        a.resume(vec![tp(&topic, p)]).expect("resume");
        let batch = poll_ok(&mut a, limit, Duration::from_secs(10)).await.expect("a batch");
        assert_eq!(batch.partition.partition, p, "only the resumed partition");
        assert_eq!(batch.records[0].offset(), committed_at_join[&p]);
        a_ledger.add(&batch, &topic, limit);
        a.pause(vec![tp(&topic, p)]).expect("pause");
    }
    a.resume(all(&topic, PARTITIONS)).expect("resume");
    assert_eq!(committed(&a, &topic, PARTITIONS).await, at_ends(&committed_at_join));
    for p in 0..PARTITIONS {
        assert!(a_ledger.next(p) > committed_at_join[&p] && a_ledger.next(p) < ends[&p], "partition {p}");
    }

    // B joins. A goes on reading (without committing) until the rebalance, then its kept
    // partitions to their end; B commits all it reads.
    let mut b = subscribe(&broker, &group, &topic, &[]).await;
    let mut b_ledger = Ledger::default();
    let mut a_last: BTreeMap<i32, Lease> = BTreeMap::new();
    timeout(Duration::from_secs(90), async {
        loop {
            if let Some(batch) = poll_ok(&mut a, limit, Duration::from_millis(100)).await {
                // Between `revoked` and `assigned`, A hands out nothing (records it had
                // fetched wait for the assignment to say whether they are still A's).
                let last_call = rec_a.calls().last().map(|(call, _)| *call);
                assert_eq!(last_call, Some("assigned"), "{} delivered inside the revoke window", batch.partition);
                a_ledger.add(&batch, &topic, limit);
                a_last.insert(batch.partition.partition, batch.lease().clone());
            }
            if let Some(batch) = poll_ok(&mut b, limit, Duration::from_millis(100)).await {
                b_ledger.add(&batch, &topic, limit);
                let results = b.commit(&batch).await.expect("commit");
                assert_committed(&results, &batch);
            }
            let (a_owned, b_owned) = (owned(&a).await, owned(&b).await);
            if a_owned.len() == 3
                && b_owned.len() == 3
                && a_owned.iter().all(|p| a_ledger.next(*p) == ends[p])
                && b_owned.iter().all(|p| b_ledger.next(*p) == ends[p])
            {
                break;
            }
        }
    })
    .await
    .expect("the rebalance and every record in time");

    let a_owned = owned(&a).await;
    let b_owned = owned(&b).await;
    let union: BTreeSet<i32> = a_owned.iter().chain(&b_owned).copied().collect();
    assert_eq!(union, (0..PARTITIONS).collect(), "A {a_owned:?}, B {b_owned:?}");
    assert_eq!(
        rec_a.calls(),
        vec![
            ("assigned", (0..PARTITIONS).collect()),
            ("revoked", (0..PARTITIONS).collect()),
            ("assigned", a_owned.clone())
        ]
    );
    for p in &a_owned {
        // Kept: never re-read from the committed offset, although A's position was past it.
        assert_eq!(a_ledger.offsets(*p), (0..ends[p]).collect::<Vec<i64>>(), "kept partition {p}: each record once");
        assert!(b_ledger.offsets(*p).is_empty(), "B read none of A's partition {p}");
    }
    for p in &b_owned {
        // Moved: the new owner starts at the committed offset; only A's uncommitted records
        // are read twice, and nothing is lost.
        assert_eq!(b_ledger.offsets(*p), (committed_at_join[p]..ends[p]).collect::<Vec<i64>>(), "moved partition {p}");
        let a_read = a_ledger.offsets(*p);
        assert_eq!(a_read, (0..a_read.len() as i64).collect::<Vec<i64>>(), "A read {p} in order, once");
        assert!(a_read.len() as i64 > committed_at_join[p], "A had read {p} past the committed offset");
    }

    // A commits its kept partitions; everything is committed at the log end.
    let leases: Vec<Lease> = a_owned.iter().map(|p| a_last[p].clone()).collect();
    let results = a.commit_leases(leases).await.expect("commit");
    assert_eq!(results.len(), 3);
    for result in &results {
        assert!(result.outcome.is_committed(), "{result:?}");
        assert_eq!(result.offset, ends[&result.partition.partition]);
    }
    assert_eq!(committed(&b, &topic, PARTITIONS).await, at_ends(&ends));
    a.close().await.expect("close A");
    b.close().await.expect("close B");
}

// ---- 6. the rebalance listener ----

/// Records the listener calls and the whole assignment its context shows in each; commits the
/// processed leases in `revoked` and seeks new partitions in `assigned`, through the context.
#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<(&'static str, Vec<i32>)>>,
    assignments: Mutex<Vec<Vec<i32>>>,
    processed: Mutex<BTreeMap<TopicPartition, Lease>>,
    revoke_commits: Mutex<Vec<PartitionCommit>>,
    /// `assigned` seeks each new partition to this offset, and records its position after.
    seek_to: Option<i64>,
    positions: Mutex<Vec<(i32, Option<i64>)>>,
}

impl Recorder {
    fn calls(&self) -> Vec<(&'static str, Vec<i32>)> {
        self.calls.lock().unwrap().clone()
    }

    fn assignments(&self) -> Vec<Vec<i32>> {
        self.assignments.lock().unwrap().clone()
    }

    async fn record(&self, call: &'static str, context: &RebalanceContext, partitions: &[TopicPartition]) {
        self.calls.lock().unwrap().push((call, ids(partitions)));
        let assignment = context.assignment().await.expect("the assignment from the context");
        self.assignments.lock().unwrap().push(ids(&assignment));
    }
}

impl RebalanceListener for Recorder {
    fn assigned<'a>(
        &'a self,
        context: &'a RebalanceContext,
        partitions: &'a [TopicPartition],
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            self.record("assigned", context, partitions).await;
            let Some(offset) = self.seek_to else { return };
            for tp in partitions {
                context.seek(tp.clone(), offset).expect("seek from the context");
                let position = context.position(tp.clone()).await.expect("position from the context");
                self.positions.lock().unwrap().push((tp.partition, position));
            }
        })
    }

    fn revoked<'a>(
        &'a self,
        context: &'a RebalanceContext,
        partitions: &'a [TopicPartition],
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            self.record("revoked", context, partitions).await;
            let leases: Vec<Lease> = std::mem::take(&mut *self.processed.lock().unwrap())
                .into_values()
                .filter(|lease| partitions.contains(&lease.partition))
                .collect();
            if !leases.is_empty() {
                let results = context.commit_leases(leases).await.expect("commit in revoked");
                self.revoke_commits.lock().unwrap().extend(results);
            }
        })
    }

    fn lost<'a>(
        &'a self,
        context: &'a RebalanceContext,
        partitions: &'a [TopicPartition],
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async move { self.record("lost", context, partitions).await })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebalance_listener_sees_the_partitions_and_commits_in_revoked_with_the_old_generation() {
    init_tracing();
    listener_commits_in_revoked(&TestBroker::start().await).await;
}

async fn listener_commits_in_revoked(broker: &TestBroker) {
    const PARTITIONS: i32 = 4;
    let (cluster, topic) = topic_on(broker, PARTITIONS).await;
    let mut written = produce(&cluster, &topic, 0..400).await;
    let ends = ends(&written, PARTITIONS);
    let group = unique_name("listener");
    let limit = 50;
    let rec_a = Arc::new(Recorder::default());
    let mut a = GroupConsumer::subscribe_with_listener(
        config(broker.bootstrap(), &group, &[]),
        &[&topic],
        Some(rec_a.clone() as Arc<dyn RebalanceListener>),
    )
    .await
    .expect("subscribe A");

    // A alone reads everything and only records what it processed (no commits).
    let mut ledger = Ledger::default();
    let mut first_generation = BTreeSet::new();
    timeout(Duration::from_secs(60), async {
        while ledger.total() < 400 {
            let batch = poll_ok(&mut a, limit, Duration::from_secs(10)).await.expect("a batch");
            ledger.add(&batch, &topic, limit);
            first_generation.insert(batch.lease().generation.id);
            rec_a.processed.lock().unwrap().insert(batch.partition.clone(), batch.lease().clone());
        }
    })
    .await
    .expect("every record in time");
    assert!(poll_ok(&mut a, limit, Duration::from_millis(200)).await.is_none());
    assert_eq!(first_generation.len(), 1, "one generation: {first_generation:?}");
    let generation = *first_generation.iter().next().unwrap();
    assert_eq!(rec_a.calls(), vec![("assigned", vec![0, 1, 2, 3])]);
    assert_eq!(committed(&a, &topic, PARTITIONS).await, (0..PARTITIONS).map(|p| (p, None)).collect());

    // B joins: A's `revoked` commits what it processed, in the old generation, before it rejoins.
    let rec_b = Arc::new(Recorder::default());
    let mut b = GroupConsumer::subscribe_with_listener(
        config(broker.bootstrap(), &group, &[]),
        &[&topic],
        Some(rec_b.clone() as Arc<dyn RebalanceListener>),
    )
    .await
    .expect("subscribe B");
    timeout(Duration::from_secs(60), async {
        loop {
            for consumer in [&mut a, &mut b] {
                if let Some(batch) = poll_ok(consumer, limit, Duration::from_millis(100)).await {
                    panic!("{} records of {} delivered again", batch.records.len(), batch.partition);
                }
            }
            if owned(&a).await.len() == 2 && owned(&b).await.len() == 2 {
                break;
            }
        }
    })
    .await
    .expect("the rebalance in time");
    let (a_owned, b_owned) = (owned(&a).await, owned(&b).await);
    let union: BTreeSet<i32> = a_owned.iter().chain(&b_owned).copied().collect();
    assert_eq!(union, (0..PARTITIONS).collect(), "A {a_owned:?}, B {b_owned:?}");
    // Eager: `revoked` gets everything owned, `assigned` the whole new assignment; the context
    // shows what is owned at each call (still everything while revoking).
    assert_eq!(
        rec_a.calls(),
        vec![("assigned", vec![0, 1, 2, 3]), ("revoked", vec![0, 1, 2, 3]), ("assigned", a_owned.clone())]
    );
    assert_eq!(rec_a.assignments(), vec![vec![0, 1, 2, 3], vec![0, 1, 2, 3], a_owned.clone()]);
    assert_eq!(rec_b.calls(), vec![("assigned", b_owned.clone())]);

    let mut revoke_commits = rec_a.revoke_commits.lock().unwrap().clone();
    revoke_commits.sort_by_key(|c| c.partition.partition);
    assert_eq!(revoke_commits.len(), PARTITIONS as usize, "{revoke_commits:?}");
    for (p, commit) in revoke_commits.iter().enumerate() {
        assert_eq!((commit.partition.partition, commit.offset), (p as i32, ends[&(p as i32)]));
        assert_eq!(commit.outcome, CommitOutcome::Committed { generation, restamped_from: None });
    }
    let state = a.group_state().await.expect("snapshot");
    let new_generation = state.generation.expect("a generation").id;
    assert!(new_generation > generation, "{new_generation} after {generation}");
    assert_eq!(committed(&b, &topic, PARTITIONS).await, at_ends(&ends));

    // New records go to their partition's owner, from the committed offset on.
    merge(&mut written, produce(&cluster, &topic, 400..440).await);
    let new_ends = self::ends(&written, PARTITIONS);
    let mut a_new = Ledger::default();
    let mut b_new = Ledger::default();
    timeout(Duration::from_secs(30), async {
        while a_new.total() + b_new.total() < 40 {
            if let Some(batch) = poll_ok(&mut a, limit, Duration::from_millis(100)).await {
                assert_eq!(batch.lease().generation.id, new_generation);
                a_new.add(&batch, &topic, limit);
            }
            if let Some(batch) = poll_ok(&mut b, limit, Duration::from_millis(100)).await {
                b_new.add(&batch, &topic, limit);
            }
        }
    })
    .await
    .expect("the new records in time");
    for (owner, ledger, partitions) in [("A", &a_new, &a_owned), ("B", &b_new, &b_owned)] {
        for p in 0..PARTITIONS {
            let expected: Vec<i64> =
                if partitions.contains(&p) { (ends[&p]..new_ends[&p]).collect() } else { Vec::new() };
            assert_eq!(ledger.offsets(p), expected, "{owner}, partition {p}");
        }
    }
    // Closing a dynamic member revokes what it owns (Java's onLeavePrepare).
    a.close().await.expect("close A");
    assert_eq!(rec_a.calls().last(), Some(&("revoked", a_owned.clone())), "{:?}", rec_a.calls());
    b.close().await.expect("close B");
}

async fn subscribe_listening(
    broker: &TestBroker,
    group: &str,
    topic: &str,
    extra: &[(&str, &str)],
    listener: &Arc<Recorder>,
) -> GroupConsumer {
    let listener = listener.clone() as Arc<dyn RebalanceListener>;
    GroupConsumer::subscribe_with_listener(config(broker.bootstrap(), group, extra), &[topic], Some(listener))
        .await
        .expect("subscribe")
}

/// Polls both consumers (committing what they read) until A owns `a` partitions and B `b`.
async fn poll_until_split(a: &mut GroupConsumer, b: &mut GroupConsumer, (in_a, in_b): (usize, usize)) {
    timeout(Duration::from_secs(60), async {
        loop {
            for consumer in [&mut *a, &mut *b] {
                if let Some(batch) = poll_ok(consumer, 50, Duration::from_millis(100)).await {
                    consumer.commit(&batch).await.expect("commit");
                }
            }
            if owned(a).await.len() == in_a && owned(b).await.len() == in_b {
                break;
            }
        }
    })
    .await
    .expect("the split in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cooperative_listener_gets_only_what_moves_while_its_context_shows_the_whole_assignment() {
    init_tracing();
    cooperative_listener_gets_what_moves(&TestBroker::start().await).await;
}

async fn cooperative_listener_gets_what_moves(broker: &TestBroker) {
    const PARTITIONS: i32 = 4;
    let (cluster, topic) = topic_on(broker, PARTITIONS).await;
    produce(&cluster, &topic, 0..40).await;
    let group = unique_name("coop-listener");
    let cooperative = [("partition.assignment.strategy", "cooperative-sticky")];
    let (rec_a, rec_b) = (Arc::new(Recorder::default()), Arc::new(Recorder::default()));
    let mut a = subscribe_listening(broker, &group, &topic, &cooperative, &rec_a).await;
    eventually!(Duration::from_secs(30), "A owns everything", {
        let _ = poll_ok(&mut a, 50, Duration::from_millis(100)).await;
        owned(&a).await.len() == PARTITIONS as usize
    });
    let mut b = subscribe_listening(broker, &group, &topic, &cooperative, &rec_b).await;
    poll_until_split(&mut a, &mut b, (2, 2)).await;
    let (a_owned, b_owned) = (owned(&a).await, owned(&b).await);

    // A: `revoked` only with what moved to B (not called for the first round, where nothing
    // moves), then `assigned` with nothing added (Java calls it after every rebalance).
    let a_calls = rec_a.calls();
    let changes: Vec<_> = a_calls.iter().filter(|(_, p)| !p.is_empty()).cloned().collect();
    assert_eq!(changes, vec![("assigned", vec![0, 1, 2, 3]), ("revoked", b_owned.clone())], "{a_calls:?}");
    let revoked_at = a_calls.iter().position(|(call, _)| *call == "revoked").expect("revoked");
    assert!(a_calls[revoked_at + 1..].iter().any(|(call, _)| *call == "assigned"), "{a_calls:?}");
    // The context shows every partition owned: all four while revoking, A's two afterwards.
    let assignments = rec_a.assignments();
    assert_eq!(assignments[revoked_at], vec![0, 1, 2, 3]);
    assert_eq!(assignments.last(), Some(&a_owned), "{assignments:?}");
    // B: each of its partitions added once, nothing revoked.
    let b_calls = rec_b.calls();
    assert!(b_calls.iter().all(|(call, _)| *call == "assigned"), "{b_calls:?}");
    let added: Vec<i32> = b_calls.iter().flat_map(|(_, p)| p.clone()).collect();
    assert_eq!(added, b_owned, "{b_calls:?}");

    // The observer handed out shows the consumer's own snapshot, and says why it stopped once
    // the consumer closed.
    let observer = a.observer();
    let (seen, own) = (observer.group_state().await.expect("observer"), a.group_state().await.expect("consumer"));
    assert_eq!((&seen.member_id, &seen.generation), (&own.member_id, &own.generation));
    a.close().await.expect("close A");
    match observer.group_state().await {
        Err(Error::Closed { what: "group member", cause: ClosedCause::Application }) => {}
        other => panic!("expected Closed by the application, got {other:?}"),
    }
    assert_eq!(observer.stopped(), Some(ClosedCause::Application));
    b.close().await.expect("close B");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seek_in_assigned_through_the_context_decides_where_records_start() {
    init_tracing();
    seek_in_assigned(&TestBroker::start().await).await;
}

async fn seek_in_assigned(broker: &TestBroker) {
    const PARTITIONS: i32 = 2;
    let (cluster, topic) = topic_on(broker, PARTITIONS).await;
    produce_to(&cluster, &topic, 0, 0..30).await;
    produce_to(&cluster, &topic, 1, 30..60).await;
    let group = unique_name("seek-listener");
    let rec = Arc::new(Recorder { seek_to: Some(10), ..Default::default() });
    let mut a = subscribe_listening(broker, &group, &topic, &[], &rec).await;
    let mut ledger = Ledger::default();
    timeout(Duration::from_secs(30), async {
        while ledger.total() < 40 {
            if let Some(batch) = poll_ok(&mut a, 50, Duration::from_millis(200)).await {
                ledger.add(&batch, &topic, 50);
            }
        }
    })
    .await
    .expect("the records after the seek in time");
    for p in 0..PARTITIONS {
        assert_eq!(ledger.offsets(p), (10..30).collect::<Vec<i64>>(), "partition {p} starts at the seek");
    }
    assert_eq!(rec.positions.lock().unwrap().clone(), vec![(0, Some(10)), (1, Some(10))]);
    a.close().await.expect("close");
}

/// The three listener cases on Apache Kafka 3.6.2 (one cluster for them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_cases_on_kafka36() {
    init_tracing();
    let options = Kafka36Options { initial_rebalance_delay: Duration::ZERO, ..Default::default() };
    let broker = TestBroker::start_kafka36(options).await;
    listener_commits_in_revoked(&broker).await;
    cooperative_listener_gets_what_moves(&broker).await;
    seek_in_assigned(&broker).await;
}

// ---- 7. max.poll.interval.ms ----

fn short_intervals() -> [(&'static str, &'static str); 3] {
    [("max.poll.interval.ms", "2000"), ("session.timeout.ms", "3000"), ("heartbeat.interval.ms", "200")]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exceeding_max_poll_interval_leaves_the_group_reports_once_and_rejoins() {
    const PARTITIONS: i32 = 4;
    let (broker, cluster, topic) = setup(PARTITIONS).await;
    let mut written = produce(&cluster, &topic, 0..80).await;
    let group = unique_name("maxpoll");
    let limit = 50;
    let rec_a = Arc::new(Recorder::default());
    let mut a = GroupConsumer::subscribe_with_listener(
        config(broker.bootstrap(), &group, &short_intervals()),
        &[&topic],
        Some(rec_a.clone() as Arc<dyn RebalanceListener>),
    )
    .await
    .expect("subscribe A");
    let mut b = subscribe(&broker, &group, &topic, &short_intervals()).await;

    // Both members poll (and commit) until they split the partitions and read everything.
    let mut ledger = Ledger::default();
    timeout(Duration::from_secs(60), async {
        loop {
            for consumer in [&mut a, &mut b] {
                if let Some(batch) = poll_ok(consumer, limit, Duration::from_millis(100)).await {
                    ledger.add(&batch, &topic, limit);
                    assert!(consumer.commit(&batch).await.expect("commit")[0].outcome.is_committed());
                }
            }
            if owned(&a).await.len() == 2 && owned(&b).await.len() == 2 && ledger.total() == 80 {
                break;
            }
        }
    })
    .await
    .expect("two members and every record in time");
    let a_owned = owned(&a).await;

    // A stops polling: past max.poll.interval.ms it leaves, and B takes every partition.
    timeout(Duration::from_secs(30), async {
        while owned(&b).await.len() < PARTITIONS as usize {
            if let Some(batch) = poll_ok(&mut b, limit, Duration::from_millis(100)).await {
                panic!("B re-read {} records of {}", batch.records.len(), batch.partition);
            }
        }
    })
    .await
    .expect("B takes A's partitions in time");
    eventually!(Duration::from_secs(5), "A's partitions dropped", owned(&a).await.is_empty());
    assert_eq!(rec_a.calls().last(), Some(&("lost", a_owned.clone())), "{:?}", rec_a.calls());

    // A's next poll reports it, once; polling again rejoins and A gets partitions again.
    match a.poll(limit, Duration::from_secs(5)).await {
        Err(Error::MaxPollIntervalExceeded { interval }) => assert_eq!(interval, Duration::from_secs(2)),
        other => panic!("expected MaxPollIntervalExceeded, got {other:?}"),
    }
    let state = a.group_state().await.expect("the member outlives a max.poll.interval.ms leave, to rejoin");
    assert_ne!(state.state, StateKind::Left, "the poll that reported it rejoins");
    merge(&mut written, produce(&cluster, &topic, 80..160).await);
    timeout(Duration::from_secs(20), async {
        loop {
            for consumer in [&mut a, &mut b] {
                if let Some(batch) = poll_ok(consumer, limit, Duration::from_millis(100)).await {
                    ledger.add(&batch, &topic, limit);
                    assert!(consumer.commit(&batch).await.expect("commit")[0].outcome.is_committed());
                }
            }
            if owned(&a).await.len() == 2 && owned(&b).await.len() == 2 && ledger.total() == 160 {
                break;
            }
        }
    })
    .await
    .expect("A rejoins and every record is read in time");
    ledger.assert_exactly_once(&written);
    a.close().await.expect("close A");
    b.close().await.expect("close B");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_inside_poll_counts_as_polling() {
    const PARTITIONS: i32 = 2;
    let (broker, cluster, topic) = setup(PARTITIONS).await;
    let group = unique_name("longpoll");
    let mut consumer = subscribe(&broker, &group, &topic, &short_intervals()).await;
    eventually!(Duration::from_secs(20), "the assignment", {
        assert!(poll_ok(&mut consumer, 10, Duration::from_millis(10)).await.is_none());
        owned(&consumer).await == vec![0, 1]
    });
    let generation = consumer.group_state().await.expect("snapshot").generation.expect("generation");

    // The application waits in poll for 2.5 max.poll.interval.ms with nothing to read: it is
    // polling all along, so the member stays.
    assert!(poll_ok(&mut consumer, 10, Duration::from_secs(5)).await.is_none());
    let state = consumer.group_state().await.expect("snapshot");
    assert_eq!((state.state, state.generation), (StateKind::Stable, Some(generation)));
    assert_eq!(owned(&consumer).await, vec![0, 1]);

    let written = produce(&cluster, &topic, 0..10).await;
    let mut ledger = Ledger::default();
    timeout(Duration::from_secs(20), async {
        while ledger.total() < 10 {
            if let Some(batch) = poll_ok(&mut consumer, 10, Duration::from_secs(1)).await {
                ledger.add(&batch, &topic, 10);
            }
        }
    })
    .await
    .expect("the records in time");
    ledger.assert_exactly_once(&written);
    consumer.close().await.expect("close");
}

// ---- 8. close: dynamic members leave, static members stay until the session times out ----

/// Polls both consumers until each owns `each` partitions; returns B's generation.
async fn split_between(a: &mut GroupConsumer, b: &mut GroupConsumer, each: usize) -> GenerationId {
    timeout(Duration::from_secs(60), async {
        loop {
            for consumer in [&mut *a, &mut *b] {
                if let Some(batch) = poll_ok(consumer, 10, Duration::from_millis(100)).await {
                    panic!("unexpected records of {}", batch.partition);
                }
            }
            if owned(a).await.len() == each && owned(b).await.len() == each {
                let (sa, sb) = (a.group_state().await.expect("A"), b.group_state().await.expect("B"));
                if sa.state == StateKind::Stable
                    && sb.state == StateKind::Stable
                    && sa.generation.as_ref().map(|g| g.id) == sb.generation.as_ref().map(|g| g.id)
                {
                    return sb.generation.expect("generation").id;
                }
            }
        }
    })
    .await
    .expect("the members split the partitions in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_a_dynamic_member_hands_its_partitions_over_at_once() {
    let (broker, _cluster, topic) = setup(4).await;
    let group = unique_name("close-dynamic");
    let extra = [("session.timeout.ms", "30000")];
    let mut a = subscribe(&broker, &group, &topic, &extra).await;
    let mut b = subscribe(&broker, &group, &topic, &extra).await;
    let generation = split_between(&mut a, &mut b, 2).await;

    a.close().await.expect("close A");
    // LeaveGroup: B owns everything long before the 30 s session timeout could have expired.
    timeout(Duration::from_secs(10), async {
        while owned(&b).await.len() < 4 {
            assert!(poll_ok(&mut b, 10, Duration::from_millis(100)).await.is_none());
        }
    })
    .await
    .expect("B takes A's partitions well within the session timeout");
    let state = b.group_state().await.expect("snapshot");
    assert!(state.generation.expect("generation").id > generation);
    b.close().await.expect("close B");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_a_static_member_keeps_its_partitions_until_the_session_times_out() {
    let (broker, _cluster, topic) = setup(4).await;
    let group = unique_name("close-static");
    let instance = unique_name("instance");
    let mut a =
        subscribe(&broker, &group, &topic, &[("session.timeout.ms", "8000"), ("group.instance.id", &instance)]).await;
    let mut b = subscribe(&broker, &group, &topic, &[("session.timeout.ms", "8000")]).await;
    let generation = split_between(&mut a, &mut b, 2).await;
    assert_eq!(a.group_state().await.expect("snapshot").group_instance_id.as_deref(), Some(instance.as_str()));
    let b_owned = owned(&b).await;

    a.close().await.expect("close A");
    let closed = Instant::now();
    // No LeaveGroup: for half the session timeout, nothing moves.
    while closed.elapsed() < Duration::from_secs(4) {
        assert!(poll_ok(&mut b, 10, Duration::from_millis(100)).await.is_none());
    }
    let state = b.group_state().await.expect("snapshot");
    assert_eq!((state.state, state.generation.map(|g| g.id)), (StateKind::Stable, Some(generation)));
    assert_eq!(owned(&b).await, b_owned, "A's partitions stay A's");

    // Then the session expires and B takes them.
    timeout(Duration::from_secs(30), async {
        while owned(&b).await.len() < 4 {
            assert!(poll_ok(&mut b, 10, Duration::from_millis(100)).await.is_none());
        }
    })
    .await
    .expect("B takes A's partitions once the session expired");
    assert!(b.group_state().await.expect("snapshot").generation.expect("generation").id > generation);
    b.close().await.expect("close B");
}

/// KIP-345: a restarted static member (a new process, member id "") rejoins the generation it
/// left and gets its partitions back at once; nobody else notices.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_static_member_gets_its_partitions_back_without_a_rebalance() {
    let (broker, _cluster, topic) = setup(4).await;
    let group = unique_name("restart-static");
    let instance = unique_name("instance");
    let static_member = [("session.timeout.ms", "10000"), ("group.instance.id", instance.as_str())];
    let mut a = subscribe(&broker, &group, &topic, &static_member).await;
    let mut b = subscribe(&broker, &group, &topic, &[("session.timeout.ms", "10000")]).await;
    let generation = split_between(&mut a, &mut b, 2).await;
    let (a_owned, b_owned) = (owned(&a).await, owned(&b).await);
    let b_joins = b.group_state().await.expect("snapshot").counters.joins_sent;
    a.close().await.expect("close A");

    let mut restarted = subscribe(&broker, &group, &topic, &static_member).await;
    timeout(Duration::from_secs(8), async {
        while owned(&restarted).await != a_owned {
            assert!(poll_ok(&mut restarted, 10, Duration::from_millis(100)).await.is_none());
        }
    })
    .await
    .expect("the restarted member gets A's partitions within the session timeout");
    let state = restarted.group_state().await.expect("snapshot");
    assert_eq!((state.state, state.generation.map(|g| g.id)), (StateKind::Stable, Some(generation)), "same generation");
    let b_state = b.group_state().await.expect("snapshot");
    assert_eq!((b_state.state, b_state.generation.map(|g| g.id)), (StateKind::Stable, Some(generation)));
    assert_eq!(owned(&b).await, b_owned);
    assert_eq!(b_state.counters.joins_sent, b_joins, "B never rejoined");
    restarted.close().await.expect("close");
    b.close().await.expect("close B");
}

/// KIP-345: a second process with the same `group.instance.id` takes the member over; the first
/// one's next heartbeat is FENCED_INSTANCE_ID and its poll reports the fatal error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_with_the_same_instance_id_fences_the_first() {
    let (broker, _cluster, topic) = setup(2).await;
    let group = unique_name("fence-static");
    let instance = unique_name("instance");
    let static_member = [("session.timeout.ms", "10000"), ("group.instance.id", instance.as_str())];
    let mut first = subscribe(&broker, &group, &topic, &static_member).await;
    timeout(Duration::from_secs(30), async {
        while owned(&first).await.len() < 2 {
            assert!(poll_ok(&mut first, 10, Duration::from_millis(100)).await.is_none());
        }
    })
    .await
    .expect("the first process owns both partitions");
    let mut second = subscribe(&broker, &group, &topic, &static_member).await;
    let error = timeout(Duration::from_secs(30), async {
        loop {
            // The second process must poll too, or max.poll.interval would end it.
            let _ = second.poll(10, Duration::from_millis(50)).await;
            match first.poll(10, Duration::from_millis(100)).await {
                Err(error) => return error,
                Ok(batch) => assert!(batch.is_none()),
            }
        }
    })
    .await
    .expect("the first process is fenced");
    assert!(
        matches!(&error, Error::Group(GroupError::FencedInstanceId { instance_id }) if *instance_id == instance),
        "{error}"
    );
    timeout(Duration::from_secs(10), async {
        while owned(&second).await.len() < 2 {
            assert!(poll_ok(&mut second, 10, Duration::from_millis(100)).await.is_none());
        }
    })
    .await
    .expect("the second process owns both partitions");
    second.close().await.expect("close");
}

// ---- 9. configuration errors ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_errors_name_the_key_and_come_before_connecting() {
    init_tracing();
    // A listener nobody should connect to.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let bootstrap = listener.local_addr().expect("addr").to_string();
    let base = [("bootstrap.servers", bootstrap.as_str()), ("group.id", "g")];

    let unknown = ConsumerConfig::from_properties(base.iter().copied().chain([("enable.partition.eoff", "true")]))
        .expect_err("unknown key");
    assert_eq!(
        unknown,
        ConfigError::UnknownKey { key: "enable.partition.eoff".into(), suggestion: Some("enable.partition.eof") }
    );
    for (key, value) in [
        ("max.poll.records", "0"),
        ("enable.auto.commit", "yes"),
        ("session.timeout.ms", "-5"),
        ("max.poll.interval.ms", "soon"),
        ("auto.offset.reset", "middle"),
        ("isolation.level", "serializable"),
        ("partition.assignment.strategy", "sticky-ish"),
        ("fetch.min.bytes", "x"),
    ] {
        let err = ConsumerConfig::from_properties(base.iter().copied().chain([(key, value)])).expect_err(key);
        match &err {
            ConfigError::InvalidValue { key: named, value: v, .. } => assert_eq!((*named, v.as_str()), (key, value)),
            other => panic!("{key}={value}: {other}"),
        }
        assert!(err.to_string().contains(key), "{err}");
    }
    let missing = ConsumerConfig::from_properties([("bootstrap.servers", bootstrap.as_str())]).expect_err("no group");
    assert_eq!(missing, ConfigError::Missing { key: "group.id" });

    // A configuration built in code is checked by subscribe before anything connects.
    let mut config = ConsumerConfig::new(bootstrap.as_str(), "g");
    config.heartbeat_interval = config.session_timeout;
    match GroupConsumer::subscribe(config, &["t"]).await {
        Err(Error::Config(ConfigError::InvalidValue { key, .. })) => assert_eq!(key, "heartbeat.interval.ms"),
        other => panic!("expected a configuration error, got {other:?}"),
    }
    let mut config = ConsumerConfig::new(bootstrap.as_str(), "g");
    config.assignment_strategy = vec!["range".into(), "sticky-ish".into()];
    match GroupConsumer::subscribe(config, &["t"]).await {
        Err(Error::Config(ConfigError::InvalidValue { key, value, .. })) => {
            assert_eq!((key, value.as_str()), ("partition.assignment.strategy", "sticky-ish"))
        }
        other => panic!("expected a configuration error, got {other:?}"),
    }
    match listener.accept() {
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock, "{e}"),
        Ok((_, peer)) => panic!("{peer} connected although the configuration was invalid"),
    }
}

/// The first `group_events()` receiver was subscribed before the member's task ran: taken only
/// once the member is Stable, it still holds the member's events from its first one (the
/// coordinator found, the assignment), so an application can audit its member from the start.
/// A later receiver starts at its call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_group_events_receiver_sees_the_member_from_its_first_event() {
    let (broker, _cluster, topic) = setup(2).await;
    let consumer = subscribe(&broker, &unique_name("first-events"), &topic, &[]).await;
    eventually!(
        Duration::from_secs(30),
        "the member to be Stable",
        consumer.group_state().await.is_ok_and(|s| s.state == StateKind::Stable)
    );
    let mut first = consumer.group_events();
    let mut seen = Vec::new();
    while let Ok(record) = first.try_recv() {
        seen.push(record.event);
    }
    assert!(matches!(seen.first(), Some(GroupEvent::Coordinator { node_id: Some(_), .. })), "{seen:#?}");
    assert!(seen.iter().any(|e| matches!(e, GroupEvent::Assigned { .. })), "{seen:#?}");
    assert!(consumer.group_events().try_recv().is_err(), "a later receiver starts at its call");
    consumer.close().await.expect("close");
}
