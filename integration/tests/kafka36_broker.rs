//! The Kafka 3.6 launcher itself (`kgroup::embedded::kafka36`): a single node serves a kgroup
//! group whose generations the broker's own log confirms, and a node stopped gracefully and
//! started again keeps the group's committed offsets. The same launcher starts Kafka 4, whose
//! group coordinator still serves kgroup's classic members.

use std::time::Duration;

use kgroup::embedded::kafka36::{Kafka36Cluster, Kafka36Options, KafkaRelease, KAFKA_VERSION};
use kgroup::group::{CommitOutcome, TopicPartition};
use kgroup::producer::{Producer, ProducerConfig, ProducerRecord};
use kgroup::{Cluster, ClusterConfig, ConsumerConfig, GroupConsumer};
use kgroup_integration::{init_tracing, unique_name};
use tokio::time::timeout;

const PARTITIONS: i32 = 4;
const MESSAGES: usize = 400;

fn options() -> Kafka36Options {
    Kafka36Options { initial_rebalance_delay: Duration::ZERO, ..Default::default() }
}

async fn produce(bootstrap: &str, topic: &str) {
    let cluster = Cluster::connect(ClusterConfig::from_bootstrap_servers(bootstrap).expect("bootstrap")).await.unwrap();
    cluster.create_topic(topic, PARTITIONS, 1).await.expect("create topic");
    let producer = Producer::new(cluster, ProducerConfig::default()).expect("producer");
    let deliveries: Vec<_> = (0..MESSAGES)
        .map(|i| producer.send(ProducerRecord::new(topic, Some(format!("k{i}")), format!("v{i}"))))
        .collect();
    producer.flush().await;
    for delivery in deliveries {
        delivery.await.expect("delivered");
    }
}

/// Consumes every message of `topic` in `group`, committing each batch; returns the generation
/// the commits were made in.
async fn consume_all(bootstrap: &str, group: &str, topic: &str) -> i32 {
    let config = ConsumerConfig::from_properties([
        ("bootstrap.servers", bootstrap),
        ("group.id", group),
        ("auto.offset.reset", "earliest"),
        ("enable.auto.commit", "false"),
    ])
    .expect("config");
    let mut consumer = GroupConsumer::subscribe(config, &[topic]).await.expect("subscribe");
    let (mut seen, mut generation) = (0, -1);
    while seen < MESSAGES {
        let batch = timeout(Duration::from_secs(60), consumer.poll(1000, Duration::from_secs(1)))
            .await
            .expect("messages within 60 s")
            .expect("poll");
        let Some(batch) = batch else { continue };
        seen += batch.records.len();
        for result in consumer.commit(&batch).await.expect("commit") {
            match result.outcome {
                CommitOutcome::Committed { generation: g, .. } => generation = g.0,
                other => panic!("{}: {other:?}", result.partition),
            }
        }
    }
    consumer.close().await.expect("close");
    generation
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_node_serves_a_group_and_its_log_records_the_generation() {
    init_tracing();
    let kafka = Kafka36Cluster::start(options()).await.unwrap_or_else(|e| panic!("{e}"));
    let (topic, group) = (unique_name("k36-topic"), unique_name("k36-group"));
    produce(&kafka.bootstrap(), &topic).await;
    let generation = consume_all(&kafka.bootstrap(), &group, &topic).await;
    let log = kafka.log(1).expect("broker log");
    assert!(log.contains(&format!("Kafka version: {KAFKA_VERSION}")), "the broker is Kafka {KAFKA_VERSION}");
    let stabilized = format!("Stabilized group {group} generation {generation} ");
    assert!(log.contains(&stabilized), "the broker logged `{stabilized}`");
    assert!(log.contains(&format!("has left group {group} through explicit `LeaveGroup`")), "close sent LeaveGroup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_4_serves_a_classic_group_of_kgroup_members() {
    init_tracing();
    let release = KafkaRelease::Kafka44;
    let kafka = Kafka36Cluster::start(Kafka36Options { release, ..options() }).await.unwrap_or_else(|e| panic!("{e}"));
    let (topic, group) = (unique_name("k4-topic"), unique_name("k4-group"));
    produce(&kafka.bootstrap(), &topic).await;
    let generation = consume_all(&kafka.bootstrap(), &group, &topic).await;
    let log = kafka.log(1).expect("broker log");
    assert!(
        log.contains(&format!("Kafka version: {}", release.version())),
        "the broker is Kafka {}",
        release.version()
    );
    let stabilized = format!("Stabilized group {group} generation {generation} ");
    assert!(log.contains(&stabilized), "the broker logged `{stabilized}`");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarted_after_a_graceful_stop_keeps_committed_offsets() {
    init_tracing();
    let mut kafka = Kafka36Cluster::start(options()).await.unwrap_or_else(|e| panic!("{e}"));
    let (topic, group) = (unique_name("k36-topic"), unique_name("k36-group"));
    produce(&kafka.bootstrap(), &topic).await;
    consume_all(&kafka.bootstrap(), &group, &topic).await;
    kafka.stop(1, Duration::from_secs(60)).await.expect("stop");
    assert!(!kafka.is_running(1));
    kafka.restart(1).await.expect("restart");
    assert!(kafka.log(1).expect("log").contains("shutting down"), "the stop was a controlled shutdown");
    let config = ConsumerConfig::from_properties([
        ("bootstrap.servers", kafka.bootstrap().as_str()),
        ("group.id", group.as_str()),
        ("auto.offset.reset", "earliest"),
    ])
    .expect("config");
    let consumer = GroupConsumer::subscribe(config, &[&topic]).await.expect("subscribe");
    let partitions: Vec<TopicPartition> = (0..PARTITIONS).map(|p| TopicPartition::new(&topic, p)).collect();
    let committed = timeout(Duration::from_secs(60), consumer.committed(partitions)).await.expect("in time").unwrap();
    let total: i64 = committed.iter().map(|(_, offset)| offset.expect("a committed offset")).sum();
    assert_eq!(total, MESSAGES as i64, "every partition committed at its end: {committed:?}");
    consumer.close().await.expect("close");
}

/// The three-node profile: one cluster (every node in the metadata), `__consumer_offsets`
/// replicated on all three, and groups coordinated by different nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_form_one_cluster_that_spreads_groups_over_coordinators() {
    init_tracing();
    let kafka = Kafka36Cluster::start(Kafka36Options::three_nodes()).await.unwrap_or_else(|e| panic!("{e}"));
    let cluster = Cluster::connect(ClusterConfig::from_bootstrap_servers(&kafka.bootstrap()).unwrap()).await.unwrap();
    let metadata = cluster.refresh_metadata(Some(&["__consumer_offsets"])).await.expect("metadata");
    assert_eq!(metadata.brokers.keys().copied().collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(metadata.partition_count("__consumer_offsets"), Some(6));
    let mut coordinators = std::collections::BTreeSet::new();
    for n in 0..24 {
        coordinators.insert(cluster.find_coordinator(&format!("spread-{n}")).await.expect("coordinator").node_id);
    }
    assert!(coordinators.len() > 1, "24 groups all on node {coordinators:?}");
}
