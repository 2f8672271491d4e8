//! Foundation against a real broker: version negotiation, topic admin, metadata, producing
//! under every codec and reading back with a raw Fetch, and connection loss.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::{ApiKey, BrokerId, FetchRequest, JoinGroupRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::RecordBatchDecoder;
use kgroup::driver::connection::{BrokerLink, Connection, ConnectionConfig};
use kgroup::embedded::BrokerOptions;
use kgroup::error::NetworkError;
use kgroup::producer::partitioner::partition_for_key;
use kgroup::producer::{Acks, Compression, Producer, ProducerConfig, ProducerRecord};
use kgroup::{Cluster, ClusterConfig, Error};
use kgroup_integration::{init_tracing, unique_name, CapturedLog, TestBroker};

#[tokio::test]
async fn api_versions_are_negotiated_and_logged_at_debug() {
    let broker = TestBroker::start().await;
    let captured = CapturedLog::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let conn = {
        let _guard = tracing::subscriber::set_default(subscriber);
        Connection::open(broker.bootstrap(), Arc::new(ConnectionConfig::default())).await.expect("connect")
    };
    let versions = conn.versions();
    for (api, floor) in [
        (ApiKey::FindCoordinator, 0),
        (ApiKey::JoinGroup, 4),
        (ApiKey::SyncGroup, 0),
        (ApiKey::Heartbeat, 0),
        (ApiKey::OffsetCommit, 2),
        (ApiKey::OffsetFetch, 1),
        (ApiKey::Metadata, 1),
        (ApiKey::Produce, 3),
        (ApiKey::Fetch, 4),
    ] {
        let v = versions.get(api).unwrap_or_else(|_| panic!("{api:?} not negotiated"));
        assert!(v >= floor, "{api:?} v{v}");
    }
    // At most OffsetCommit v9 (KIP-848's member epochs; classic members send v8 at most).
    assert!(versions.get(ApiKey::OffsetCommit).unwrap() <= 9);
    let log = captured.text();
    for (api, v) in versions.iter() {
        let line = log
            .lines()
            .find(|l| l.contains("negotiated API version") && l.contains(&format!("api={api:?} ")))
            .unwrap_or_else(|| panic!("no debug line for {api:?} in:\n{log}"));
        assert!(line.contains(&format!("version={v}")), "{line}");
    }
}

#[tokio::test]
async fn a_72_partition_topic_is_created_and_seen_in_metadata() {
    init_tracing();
    let broker = TestBroker::start().await;
    let cluster = broker.cluster().await;
    let topic = unique_name("meta");
    cluster.create_topic(&topic, 72, 1).await.expect("create topic");
    let metadata = cluster.refresh_metadata(Some(&[&topic])).await.expect("metadata");
    let info = &metadata.topics[&topic];
    assert!(!info.error.is_error(), "{:?}", info.error);
    assert_eq!(info.partitions.len(), 72);
    let ids: Vec<i32> = info.partitions.iter().map(|p| p.partition).collect();
    assert_eq!(ids, (0..72).collect::<Vec<_>>());
    for p in &info.partitions {
        assert!(
            metadata.brokers.contains_key(&p.leader),
            "partition {} led by unknown broker {}",
            p.partition,
            p.leader
        );
    }
    // Creating it again with the same count is accepted; a different count is not.
    cluster.create_topic(&topic, 72, 1).await.expect("idempotent create");
    assert!(cluster.create_topic(&topic, 10, 1).await.is_err());
    // Bad names never reach the broker.
    assert!(matches!(cluster.create_topic("no spaces", 1, 1).await, Err(Error::Config(_))));
}

const MESSAGES_PER_CODEC: usize = 100_000;

fn value_for(i: usize) -> Bytes {
    // Varying sizes and content so a decoding mix-up cannot go unnoticed.
    let mut v = format!("value-{i}-").into_bytes();
    v.extend(std::iter::repeat_n(b'a' + (i % 26) as u8, i % 97));
    Bytes::from(v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_messages_under_every_codec_are_read_back_intact() {
    init_tracing();
    let broker = TestBroker::start().await;
    let cluster = broker.cluster().await;
    for compression in [Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd] {
        let topic = unique_name(&format!("codec-{compression:?}").to_lowercase());
        cluster.create_topic(&topic, 72, 1).await.expect("create topic");
        let producer = Producer::new(
            cluster.clone(),
            ProducerConfig {
                acks: Acks::All,
                compression,
                linger: Duration::from_millis(10),
                batch_size: 256 * 1024,
                ..Default::default()
            },
        )
        .expect("producer");
        let deliveries: Vec<_> = (0..MESSAGES_PER_CODEC)
            .map(|i| producer.send(ProducerRecord::new(&topic, Some(format!("key-{i}")), value_for(i))))
            .collect();
        producer.flush().await;
        let mut acked: HashMap<(i32, i64), usize> = HashMap::new();
        for (i, delivery) in deliveries.into_iter().enumerate() {
            let meta = delivery.await.unwrap_or_else(|e| panic!("{compression:?} message {i}: {e}"));
            assert_eq!(meta.partition, partition_for_key(format!("key-{i}").as_bytes(), 72));
            assert!(acked.insert((meta.partition, meta.offset), i).is_none(), "offset reused");
        }
        producer.close().await;

        let (fetched, codecs_seen) = fetch_all(&cluster, &topic, 72).await;
        assert_eq!(codecs_seen, vec![compression], "batches on the log carry the codec");
        assert_eq!(fetched.len(), MESSAGES_PER_CODEC, "{compression:?}: record count");
        for ((partition, offset), (key, value)) in fetched {
            let i = acked[&(partition, offset)];
            assert_eq!(key, Bytes::from(format!("key-{i}")), "{compression:?} key at {partition}/{offset}");
            assert_eq!(value, value_for(i), "{compression:?} value at {partition}/{offset}");
        }
    }
}

/// Reads every partition from offset 0 to its high watermark with raw Fetch requests; also
/// returns the distinct codecs of the batches read.
async fn fetch_all(
    cluster: &Cluster,
    topic: &str,
    partitions: i32,
) -> (BTreeMap<(i32, i64), (Bytes, Bytes)>, Vec<Compression>) {
    let mut codecs = Vec::new();
    let metadata = cluster.wait_for_topic(topic).await.expect("metadata");
    let mut records = BTreeMap::new();
    let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for p in 0..partitions {
        by_leader.entry(metadata.leader(topic, p).expect("leader")).or_default().push(p);
    }
    for (leader, parts) in by_leader {
        let conn = cluster.broker_connection(leader).await.expect("leader connection");
        let version = conn.version(ApiKey::Fetch).unwrap();
        let mut next: BTreeMap<i32, i64> = parts.iter().map(|&p| (p, 0)).collect();
        let mut done: BTreeMap<i32, bool> = BTreeMap::new();
        for _round in 0..10_000 {
            if done.len() == parts.len() {
                break;
            }
            let request = FetchRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_max_wait_ms(100)
                .with_min_bytes(1)
                .with_max_bytes(16 * 1024 * 1024)
                .with_session_epoch(-1)
                .with_topics(vec![FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(topic.to_owned())))
                    .with_partitions(
                        next.iter()
                            .filter(|(p, _)| !done.contains_key(p))
                            .map(|(&p, &offset)| {
                                FetchPartition::default()
                                    .with_partition(p)
                                    .with_fetch_offset(offset)
                                    .with_current_leader_epoch(-1)
                                    .with_log_start_offset(-1)
                                    .with_partition_max_bytes(1024 * 1024)
                            })
                            .collect(),
                    )]);
            let response = conn.send_at(&request, version, Duration::from_secs(30)).await.expect("fetch");
            assert_eq!(response.error_code, 0);
            for t in &response.responses {
                for p in &t.partitions {
                    assert_eq!(p.error_code, 0, "partition {}", p.partition_index);
                    let mut data = p.records.clone().unwrap_or_default();
                    if !data.is_empty() {
                        for set in RecordBatchDecoder::decode_all(&mut data).expect("decode record batches") {
                            if !codecs.contains(&set.compression) {
                                codecs.push(set.compression);
                            }
                            for r in set.records {
                                let position = next.get_mut(&p.partition_index).unwrap();
                                if r.offset < *position {
                                    continue;
                                }
                                *position = r.offset + 1;
                                let kv = (r.key.unwrap_or_default(), r.value.unwrap_or_default());
                                records.insert((p.partition_index, r.offset), kv);
                            }
                        }
                    }
                    if next[&p.partition_index] >= p.high_watermark {
                        done.insert(p.partition_index, true);
                    }
                }
            }
        }
        assert_eq!(done.len(), parts.len(), "fetch did not reach the high watermark");
    }
    (records, codecs)
}

fn join_request(group: &str) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(StrBytes::from_string(group.to_owned()).into())
        .with_session_timeout_ms(30_000)
        .with_rebalance_timeout_ms(60_000)
        .with_protocol_type(StrBytes::from_static_str("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(StrBytes::from_static_str("range"))
            .with_metadata(Bytes::from_static(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0]))])
}

/// Ten JoinGroups wait in the broker's initial rebalance delay (60 s); killing the broker fails
/// every one of them with the same cause, and the link reconnects once the broker is back.
#[tokio::test]
async fn broker_death_fails_every_in_flight_request_with_one_cause_then_reconnects() {
    init_tracing();
    let mut broker = TestBroker::start_embedded(BrokerOptions {
        initial_rebalance_delay: Duration::from_secs(60),
        ..Default::default()
    })
    .await;
    let link = BrokerLink::new(broker.bootstrap(), Arc::new(ConnectionConfig::default()));
    let conn = link.connection().await.expect("connect");
    // v3: no MEMBER_ID_REQUIRED step, so each join is parked by the broker at once.
    let in_flight: Vec<_> = (0..10)
        .map(|i| {
            let conn = conn.clone();
            let request = join_request(&unique_name(&format!("parked-{i}")));
            tokio::spawn(async move { conn.send_at(&request, 3, Duration::from_secs(120)).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(in_flight.iter().all(|h| !h.is_finished()), "joins should be parked by the broker");
    broker.embedded().expect("embedded broker").kill();

    let mut causes = Vec::new();
    for handle in in_flight {
        let result =
            tokio::time::timeout(Duration::from_secs(10), handle).await.expect("failed promptly").expect("task");
        match result {
            Err(Error::Network(NetworkError::Disconnected { cause, .. })) => causes.push(cause),
            other => panic!("expected a disconnect, got {other:?}"),
        }
    }
    assert_eq!(causes.len(), 10);
    assert!(causes.iter().all(|c| Arc::ptr_eq(c, &causes[0])), "one shared cause");
    assert!(conn.is_broken());
    assert!(matches!(
        conn.send_at(&join_request("late"), 3, Duration::from_secs(1)).await,
        Err(Error::Network(NetworkError::Disconnected { .. }))
    ));

    // While the broker is down the link keeps failing fast (connection refused).
    assert!(link.connection().await.is_err());
    broker.embedded().expect("embedded broker").restart().await.expect("restart");
    let mut reconnected = None;
    for _ in 0..50 {
        if let Ok(c) = link.connection().await {
            reconnected = Some(c);
            break;
        }
    }
    let conn = reconnected.expect("the link reconnects without a restart of the process");
    assert!(!conn.is_broken());
    conn.version(ApiKey::Metadata).expect("negotiated again");
}

/// One unreachable broker does not stall the client (issue 13, item 6). The first entry of
/// `bootstrap.servers` accepts connections and never answers, and connection and request
/// timeouts are an hour: a lookup that waited for that broker would not finish within the
/// test's bound. Lookups run concurrently too, while an attempt on the silent broker may still
/// be under way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_accepts_and_never_answers_does_not_stall_lookups() {
    init_tracing();
    let broker = TestBroker::start().await;
    // Never accepted by the test: the kernel completes each connection, nobody ever answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let silent_addr = silent.local_addr().expect("address");
    let bootstrap = format!("{silent_addr},{}", broker.bootstrap());
    let mut config = ClusterConfig::from_bootstrap_servers(&bootstrap).expect("bootstrap list");
    config.connection.connect_timeout = Duration::from_secs(3600);
    config.connection.request_timeout = Duration::from_secs(3600);
    let topic = unique_name("silent-peer");
    let lookups = async {
        let cluster = Cluster::connect(config).await.expect("connect through the broker that answers");
        cluster.create_topic(&topic, 2, 1).await.expect("create topic");
        let topics = [topic.as_str()];
        let (coordinator, metadata, again) = tokio::join!(
            cluster.find_coordinator_once("silent-peer-group"),
            cluster.refresh_metadata(Some(&topics)),
            cluster.any_connection(),
        );
        coordinator.expect("coordinator lookup");
        assert_eq!(metadata.expect("metadata").partition_count(&topic), Some(2));
        assert_ne!(again.expect("a connection").addr(), silent_addr.to_string());
    };
    tokio::time::timeout(Duration::from_secs(60), lookups)
        .await
        .expect("lookups finish although one bootstrap broker never answers");
}
