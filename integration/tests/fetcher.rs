//! The fetcher on a real broker (nisshi by default, `KGROUP_BOOTSTRAP` for any cluster): every
//! record exactly once and in order, resets through ListOffsets, out-of-range offsets, pause,
//! seek, revoke, and a prefetch buffer of a few KiB.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::delete_records_request::{DeleteRecordsPartition, DeleteRecordsTopic};
use kafka_protocol::messages::{DeleteRecordsRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kgroup::driver::fetcher::{
    FetchEvent, FetchedBatch, Fetcher, FetcherConfig, OffsetReset, SessionMode, StartPosition,
};
use kgroup::group::TopicPartition;
use kgroup::producer::{Acks, Compression, Producer, ProducerConfig, ProducerRecord};
use kgroup::Cluster;
use kgroup_integration::{external_bootstrap, init_tracing, unique_name, TestBroker};
use tokio::time::{timeout, Instant};

fn value_for(i: usize) -> Bytes {
    let mut v = format!("value-{i}-").into_bytes();
    v.extend(std::iter::repeat_n(b'a' + (i % 26) as u8, i % 97));
    Bytes::from(v)
}

fn fast_config() -> FetcherConfig {
    FetcherConfig { max_wait: Duration::from_millis(100), ..Default::default() }
}

/// Produces `count` keyed messages (`key-{i}`, [`value_for`]) and returns, per partition, the
/// message index at each offset.
async fn produce(
    cluster: &Cluster,
    topic: &str,
    count: usize,
    compression: Compression,
    batch_size: usize,
) -> BTreeMap<i32, BTreeMap<i64, usize>> {
    let producer = Producer::new(
        cluster.clone(),
        ProducerConfig {
            acks: Acks::All,
            compression,
            linger: Duration::from_millis(5),
            batch_size,
            ..Default::default()
        },
    )
    .expect("producer");
    let deliveries: Vec<_> =
        (0..count).map(|i| producer.send(ProducerRecord::new(topic, Some(format!("key-{i}")), value_for(i)))).collect();
    producer.flush().await;
    let mut written: BTreeMap<i32, BTreeMap<i64, usize>> = BTreeMap::new();
    for (i, delivery) in deliveries.into_iter().enumerate() {
        let meta = delivery.await.unwrap_or_else(|e| panic!("message {i}: {e}"));
        assert!(written.entry(meta.partition).or_default().insert(meta.offset, i).is_none(), "offset reused");
    }
    producer.close().await;
    written
}

/// Produces `count` messages to one partition.
async fn produce_to(cluster: &Cluster, topic: &str, partition: i32, count: usize) {
    let producer = Producer::new(cluster.clone(), ProducerConfig::default()).expect("producer");
    let deliveries: Vec<_> = (0..count)
        .map(|i| {
            let mut record = ProducerRecord::new(topic, Some(format!("key-{i}")), value_for(i));
            record.partition = Some(partition);
            producer.send(record)
        })
        .collect();
    producer.flush().await;
    for d in deliveries {
        d.await.expect("delivered");
    }
    producer.close().await;
}

async fn setup(partitions: i32) -> (TestBroker, Cluster, String) {
    init_tracing();
    let broker = TestBroker::start().await;
    let cluster = broker.cluster().await;
    let topic = unique_name("fetch");
    cluster.create_topic(&topic, partitions, 1).await.expect("create topic");
    (broker, cluster, topic)
}

fn records(event: FetchEvent) -> FetchedBatch {
    match event {
        FetchEvent::Records(batch) => batch,
        FetchEvent::PartitionError { partition, error } => panic!("{partition}: {error}"),
    }
}

/// The next event within 10 s.
async fn next(fetcher: &Fetcher) -> FetchEvent {
    timeout(Duration::from_secs(10), fetcher.next(usize::MAX)).await.expect("an event in time").expect("fetcher open")
}

/// Asserts nothing arrives for `quiet`.
async fn nothing_for(fetcher: &Fetcher, quiet: Duration) {
    if let Ok(event) = timeout(quiet, fetcher.next(usize::MAX)).await {
        panic!("expected nothing, got {event:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_is_fetched_exactly_once_in_order() {
    const PARTITIONS: i32 = 12;
    const MESSAGES: usize = 50_000;
    let (_broker, cluster, topic) = setup(PARTITIONS).await;
    let written = produce(&cluster, &topic, MESSAGES, Compression::Zstd, 64 * 1024).await;
    assert_eq!(written.len(), PARTITIONS as usize, "keys spread over every partition");

    let fetcher = Fetcher::start(cluster.clone(), fast_config());
    fetcher.assign((0..PARTITIONS).map(|p| (TopicPartition::new(&topic, p), StartPosition::Offset(0))).collect());
    assert_eq!(fetcher.assigned().await.len(), PARTITIONS as usize);
    let ends: BTreeMap<i32, i64> =
        written.iter().map(|(&p, offsets)| (p, offsets.keys().last().unwrap() + 1)).collect();
    let mut next_expected: BTreeMap<i32, i64> = (0..PARTITIONS).map(|p| (p, 0)).collect();
    let mut received = 0usize;
    timeout(Duration::from_secs(120), async {
        while next_expected.iter().any(|(p, &o)| o < ends[p]) {
            let batch = records(next(&fetcher).await);
            let p = batch.partition.partition;
            assert_eq!(&*batch.partition.topic, topic.as_str());
            assert!(!batch.records.is_empty());
            for r in &batch.records {
                let expected = next_expected.get_mut(&p).unwrap();
                assert_eq!(r.offset(), *expected, "partition {p}: in order, no gap, no repeat");
                *expected += 1;
                let i = written[&p][&r.offset()];
                assert_eq!(r.key(), Some(format!("key-{i}").as_bytes()), "{p}/{}", r.offset());
                assert_eq!(r.value(), Some(&value_for(i)[..]), "{p}/{}", r.offset());
                assert_eq!((r.topic(), r.partition()), (topic.as_str(), p));
                assert!(r.timestamp() > 0);
                received += 1;
            }
            let position = fetcher.position(batch.partition.clone()).await;
            assert_eq!(position, Some(next_expected[&p]), "the position moves as records are handed out");
            assert!(batch.high_watermark >= next_expected[&p]);
        }
    })
    .await
    .expect("everything fetched in time");
    assert_eq!(received, MESSAGES);
    for p in 0..PARTITIONS {
        assert_eq!(fetcher.position(TopicPartition::new(&topic, p)).await, Some(ends[&p]));
    }
    nothing_for(&fetcher, Duration::from_millis(500)).await;
    assert_eq!(fetcher.buffered_bytes(), 0);

    let sessions = fetcher.sessions();
    assert_eq!(sessions.len(), 1, "one broker");
    let session = &sessions[0];
    assert!(session.version >= 4 && session.version <= 12, "{session:?}");
    if external_bootstrap().is_none() {
        // nisshi answers every fetch with session id 0: after the opening request (epoch 0),
        // the fetcher stays sessionless (epoch -1, full fetches).
        assert_eq!(session.mode, SessionMode::Sessionless, "{session:?}");
        assert_eq!(session.incremental_fetches, 0);
        assert!(session.full_fetches > 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_positions_come_from_list_offsets() {
    let (_broker, cluster, topic) = setup(2).await;
    produce_to(&cluster, &topic, 0, 100).await;
    produce_to(&cluster, &topic, 1, 100).await;
    let p0 = TopicPartition::new(&topic, 0);
    let p1 = TopicPartition::new(&topic, 1);

    let earliest =
        Fetcher::start(cluster.clone(), FetcherConfig { auto_offset_reset: OffsetReset::Earliest, ..fast_config() });
    earliest.assign(vec![(p0.clone(), StartPosition::Reset)]);
    let batch = records(next(&earliest).await);
    assert_eq!((batch.partition.clone(), batch.records[0].offset()), (p0.clone(), 0));

    let latest =
        Fetcher::start(cluster.clone(), FetcherConfig { auto_offset_reset: OffsetReset::Latest, ..fast_config() });
    // A negative committed offset means "none" and resets as well.
    latest.assign(vec![(p0.clone(), StartPosition::Reset), (p1.clone(), StartPosition::Offset(-1))]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while latest.position(p0.clone()).await.is_none() || latest.position(p1.clone()).await.is_none() {
        assert!(Instant::now() < deadline, "reset did not complete");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(latest.position(p0.clone()).await, Some(100));
    assert_eq!(latest.position(p1.clone()).await, Some(100));
    nothing_for(&latest, Duration::from_millis(500)).await;
    produce_to(&cluster, &topic, 0, 5).await;
    let batch = records(next(&latest).await);
    assert_eq!(batch.partition, p0);
    assert_eq!(batch.records.iter().map(|r| r.offset()).collect::<Vec<_>>(), (100..105).collect::<Vec<_>>());

    // Under auto.offset.reset=none a reset is an error for that partition.
    let none = Fetcher::start(cluster.clone(), FetcherConfig { auto_offset_reset: OffsetReset::None, ..fast_config() });
    none.assign(vec![(p1.clone(), StartPosition::Reset)]);
    match next(&none).await {
        FetchEvent::PartitionError { partition, .. } => assert_eq!(partition, p1),
        other => panic!("{other:?}"),
    }
}

/// Deletes records below `offset` (DeleteRecords v0), moving the log start offset.
async fn delete_records(cluster: &Cluster, topic: &str, partition: i32, offset: i64) {
    let leader = cluster.metadata().leader(topic, partition).expect("leader");
    let conn = cluster.broker_connection(leader).await.expect("connection");
    let request =
        DeleteRecordsRequest::default().with_timeout_ms(10_000).with_topics(vec![DeleteRecordsTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
            .with_partitions(vec![DeleteRecordsPartition::default()
                .with_partition_index(partition)
                .with_offset(offset)])]);
    let response = conn.send_at(&request, 0, Duration::from_secs(15)).await.expect("DeleteRecords");
    let result = &response.topics[0].partitions[0];
    assert_eq!(result.error_code, 0, "DeleteRecords error");
    assert_eq!(result.low_watermark, offset);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_out_of_range_offset_resets() {
    let (_broker, cluster, topic) = setup(1).await;
    produce_to(&cluster, &topic, 0, 100).await;
    delete_records(&cluster, &topic, 0, 50).await;
    let tp = TopicPartition::new(&topic, 0);

    let fetcher =
        Fetcher::start(cluster.clone(), FetcherConfig { auto_offset_reset: OffsetReset::Earliest, ..fast_config() });
    fetcher.assign(vec![(tp.clone(), StartPosition::Offset(10))]);
    let batch = records(next(&fetcher).await);
    assert_eq!(batch.records[0].offset(), 50, "reset to the log start");

    let fetcher =
        Fetcher::start(cluster.clone(), FetcherConfig { auto_offset_reset: OffsetReset::Latest, ..fast_config() });
    fetcher.assign(vec![(tp.clone(), StartPosition::Offset(10))]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while fetcher.position(tp.clone()).await != Some(100) {
        assert!(Instant::now() < deadline, "reset to the end did not happen");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let fetcher =
        Fetcher::start(cluster.clone(), FetcherConfig { auto_offset_reset: OffsetReset::None, ..fast_config() });
    fetcher.assign(vec![(tp.clone(), StartPosition::Offset(10))]);
    match next(&fetcher).await {
        FetchEvent::PartitionError { partition, error } => {
            assert_eq!(partition, tp);
            assert!(error.to_string().contains("OffsetOutOfRange"), "{error}");
        }
        other => panic!("{other:?}"),
    }
    // The partition stays stopped until the application seeks.
    nothing_for(&fetcher, Duration::from_millis(500)).await;
    fetcher.seek(tp.clone(), 60);
    let batch = records(next(&fetcher).await);
    assert_eq!(batch.records[0].offset(), 60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_resume_seek_and_revoke() {
    let (_broker, cluster, topic) = setup(2).await;
    produce_to(&cluster, &topic, 0, 200).await;
    produce_to(&cluster, &topic, 1, 200).await;
    let p0 = TopicPartition::new(&topic, 0);
    let p1 = TopicPartition::new(&topic, 1);
    let fetcher = Fetcher::start(cluster.clone(), fast_config());

    // Pause before anything is fetched: only the other partition delivers.
    fetcher.assign(vec![(p0.clone(), StartPosition::Offset(0)), (p1.clone(), StartPosition::Offset(0))]);
    fetcher.pause(vec![p0.clone()]);
    let mut next_of: HashMap<i32, i64> = HashMap::new();
    while next_of.get(&1).copied().unwrap_or(0) < 200 {
        let batch = records(next(&fetcher).await);
        assert_eq!(batch.partition, p1, "nothing of the paused partition");
        next_of.insert(1, batch.records.last().expect("records").offset() + 1);
    }
    nothing_for(&fetcher, Duration::from_millis(500)).await;
    assert_eq!(fetcher.position(p0.clone()).await, Some(0));

    // Resume: it delivers from where it was.
    fetcher.resume(vec![p0.clone()]);
    let batch = records(next(&fetcher).await);
    assert_eq!((batch.partition.clone(), batch.records[0].offset()), (p0.clone(), 0));

    // Seek back: the next batch starts there, nothing buffered before the seek comes out.
    fetcher.seek(p0.clone(), 7);
    assert_eq!(fetcher.position(p0.clone()).await, Some(7));
    let batch = records(next(&fetcher).await);
    assert_eq!((batch.partition.clone(), batch.records[0].offset()), (p0.clone(), 7));
    // Seek forward.
    fetcher.seek(p0.clone(), 150);
    let batch = records(next(&fetcher).await);
    assert_eq!(batch.records[0].offset(), 150);

    // Pause while data is buffered: it is kept, not delivered, and comes after resume.
    fetcher.seek(p0.clone(), 0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    fetcher.pause(vec![p0.clone()]);
    nothing_for(&fetcher, Duration::from_millis(300)).await;
    fetcher.resume(vec![p0.clone()]);
    let batch = records(next(&fetcher).await);
    assert_eq!(batch.records[0].offset(), 0);

    // Revoke: nothing more of it, and it is forgotten.
    fetcher.revoke(vec![p0.clone()]);
    assert_eq!(fetcher.assigned().await, vec![p1.clone()]);
    assert_eq!(fetcher.position(p0.clone()).await, None);
    produce_to(&cluster, &topic, 0, 10).await;
    produce_to(&cluster, &topic, 1, 10).await;
    let batch = records(next(&fetcher).await);
    assert_eq!(batch.partition, p1);
    assert_eq!(batch.records[0].offset(), 200);
    nothing_for(&fetcher, Duration::from_millis(500)).await;

    // Pausing a partition that is not fetched does nothing: assigned afterwards, it delivers
    // (the session's model of the fetcher, `OffsetLog`, follows the same rule).
    fetcher.pause(vec![p0.clone()]);
    fetcher.assign(vec![(p0.clone(), StartPosition::Offset(205))]);
    let batch = records(next(&fetcher).await);
    assert_eq!((batch.partition.clone(), batch.records[0].offset()), (p0.clone(), 205));
    fetcher.close();
    assert!(fetcher.next(1).await.is_none(), "closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buffer_of_a_few_kib_still_delivers_everything() {
    const PARTITIONS: i32 = 4;
    const MESSAGES: usize = 5_000;
    const BOUND: usize = 4 * 1024;
    let (_broker, cluster, topic) = setup(PARTITIONS).await;
    let written = produce(&cluster, &topic, MESSAGES, Compression::Zstd, 2 * 1024).await;
    let ends: BTreeMap<i32, i64> =
        written.iter().map(|(&p, offsets)| (p, offsets.keys().last().unwrap() + 1)).collect();
    let config = FetcherConfig { buffer_bytes: BOUND, max_partition_bytes: 16 * 1024, ..fast_config() };
    let fetcher = Fetcher::start(cluster.clone(), config);
    fetcher.assign((0..PARTITIONS).map(|p| (TopicPartition::new(&topic, p), StartPosition::Offset(0))).collect());

    // Without consumption the fetcher fills the buffer, then stops fetching.
    let deadline = Instant::now() + Duration::from_secs(10);
    while fetcher.buffered_bytes() < BOUND {
        assert!(Instant::now() < deadline, "the buffer never filled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let fetches = |f: &Fetcher| f.sessions().iter().map(|s| s.full_fetches + s.incremental_fetches).sum::<u64>();
    let (buffered, sent) = (fetcher.buffered_bytes(), fetches(&fetcher));
    // One response passes the bound by at most about one (decompressed) batch.
    assert!(buffered < BOUND + 64 * 1024, "buffered {buffered} bytes with a bound of {BOUND}");
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(fetches(&fetcher), sent, "no fetch while the buffer is full");
    assert_eq!(fetcher.buffered_bytes(), buffered);

    // Consuming frees room; everything arrives, in order.
    let mut next_expected: BTreeMap<i32, i64> = (0..PARTITIONS).map(|p| (p, 0)).collect();
    let mut max_buffered = 0;
    timeout(Duration::from_secs(120), async {
        while next_expected.iter().any(|(p, &o)| o < ends[p]) {
            max_buffered = max_buffered.max(fetcher.buffered_bytes());
            let batch = records(next(&fetcher).await);
            for r in &batch.records {
                let expected = next_expected.get_mut(&batch.partition.partition).unwrap();
                assert_eq!(r.offset(), *expected);
                *expected += 1;
            }
        }
    })
    .await
    .expect("everything delivered in time");
    assert!(max_buffered < BOUND + 64 * 1024, "buffer peaked at {max_buffered} bytes");
    assert!(fetches(&fetcher) > sent, "fetching went on as records were consumed");
}

/// The broker dies under a long poll and comes back (empty, as the embedded broker keeps data in
/// memory): the fetcher reconnects, refreshes metadata until the topic is back, and goes on
/// from its position (nisshi answers offsets above the high watermark with no records rather
/// than OFFSET_OUT_OF_RANGE, so the position survives the empty log).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_is_survived() {
    init_tracing();
    let mut broker = TestBroker::start_embedded(kgroup::embedded::BrokerOptions {
        initial_rebalance_delay: Duration::from_millis(0),
        ..Default::default()
    })
    .await;
    let cluster = broker.cluster().await;
    let topic = unique_name("restart");
    cluster.create_topic(&topic, 1, 1).await.expect("create topic");
    produce_to(&cluster, &topic, 0, 100).await;
    let tp = TopicPartition::new(&topic, 0);
    let fetcher = Fetcher::start(cluster.clone(), fast_config());
    fetcher.assign(vec![(tp.clone(), StartPosition::Offset(0))]);
    let mut next_offset = 0;
    while next_offset < 100 {
        let batch = records(next(&fetcher).await);
        assert_eq!(batch.records[0].offset(), next_offset);
        next_offset = batch.records.last().expect("records").offset() + 1;
    }

    broker.embedded().expect("embedded").kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    broker.embedded().expect("embedded").restart().await.expect("restart");
    // The restarted broker is empty and metadata lookups never create topics: recreate it.
    cluster.create_topic(&topic, 1, 1).await.expect("topic back");
    produce_to(&cluster, &topic, 0, 150).await;
    let batch = records(next(&fetcher).await);
    assert_eq!(batch.records[0].offset(), 100, "on from the position it had");
    assert_eq!(fetcher.sessions()[0].mode, SessionMode::Sessionless);
}
