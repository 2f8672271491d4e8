//! Issue 13, item 1, on Apache Kafka 3.6.2: a partition whose committed offset a transaction
//! holds (TxnOffsetCommit, not yet ended). Every lookup (OffsetFetch with RequireStable) gets
//! UNSTABLE_OFFSET_COMMIT until the transaction commits; the consumer must wait for it and start
//! at the transaction's offset, never at `auto.offset.reset` (latest, the default, would skip
//! every record after the committed offset).

use std::sync::Arc;
use std::time::Duration;

use kgroup::driver::connection::{Connection, ConnectionConfig};
use kgroup::embedded::kafka36::{Kafka36Cluster, Kafka36Options};
use kgroup::group::TopicPartition;
use kgroup::producer::{Producer, ProducerConfig, ProducerRecord};
use kgroup::{Cluster, ClusterConfig, ConsumerConfig, GroupConsumer};
use kgroup_integration::transaction::OffsetTransaction;
use kgroup_integration::{init_tracing, unique_name};
use tokio::time::timeout;

const RECORDS: i64 = 20;
/// The offset the transaction commits for the group.
const COMMITTED: i64 = 7;
/// Failed lookups to wait for: past the five quick attempts after which the consumer used to
/// start at `auto.offset.reset`.
const FAILED_LOOKUPS: u64 = 6;

async fn produce(bootstrap: &str, topic: &str) {
    let cluster = Cluster::connect(ClusterConfig::from_bootstrap_servers(bootstrap).expect("bootstrap")).await.unwrap();
    cluster.create_topic(topic, 1, 1).await.expect("create topic");
    let producer = Producer::new(cluster, ProducerConfig::default()).expect("producer");
    let deliveries: Vec<_> =
        (0..RECORDS).map(|i| producer.send(ProducerRecord::new(topic, None::<String>, format!("v{i}")))).collect();
    producer.flush().await;
    for delivery in deliveries {
        delivery.await.expect("delivered");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_whose_committed_offset_a_transaction_holds_starts_there_once_it_commits() {
    init_tracing();
    let options = Kafka36Options { initial_rebalance_delay: Duration::ZERO, ..Default::default() };
    let kafka = Kafka36Cluster::start(options).await.unwrap_or_else(|e| panic!("{e}"));
    let bootstrap = kafka.bootstrap();
    let scenario = async {
        let (topic, group) = (unique_name("k36-txn-topic"), unique_name("k36-txn-group"));
        produce(&bootstrap, &topic).await;
        let conn = Connection::open(&bootstrap, Arc::new(ConnectionConfig::default())).await.expect("connection");
        let transaction = OffsetTransaction::begin(&conn, &group).await.expect("transaction");
        let codes = transaction.commit_offset(&conn, &group, &topic, COMMITTED).await.expect("TxnOffsetCommit");
        assert_eq!(codes, vec![0], "TxnOffsetCommit");
        let config = ConsumerConfig::from_properties([
            ("bootstrap.servers", bootstrap.as_str()),
            ("group.id", group.as_str()),
            ("enable.auto.commit", "false"),
        ])
        .expect("config");
        let mut consumer = GroupConsumer::subscribe(config, &[&topic]).await.expect("subscribe");
        let snapshot = loop {
            let snapshot = consumer.group_state().await.expect("snapshot");
            if snapshot.counters.offset_lookups_retried >= FAILED_LOOKUPS {
                break snapshot;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let waiting = snapshot.offset_lookups.first().expect("the lookup waits, in the snapshot");
        let unstable = waiting.last_error.as_deref().is_some_and(|e| e.contains("(88)"));
        assert!(unstable, "UNSTABLE_OFFSET_COMMIT: {waiting:?}");
        let partition = TopicPartition::new(&topic, 0);
        assert_eq!(consumer.position(partition.clone()).await.expect("position"), None, "not started yet");
        assert_eq!(transaction.commit(&conn).await.expect("EndTxn"), 0, "EndTxn");
        let batch = loop {
            if let Some(batch) = consumer.poll(100, Duration::from_secs(1)).await.expect("poll") {
                break batch;
            }
        };
        assert_eq!(batch.partition, partition);
        assert_eq!(batch.records.first().map(|r| r.offset()), Some(COMMITTED), "starts at the committed offset");
        consumer.close().await.expect("close");
    };
    timeout(Duration::from_secs(180), scenario).await.expect("the scenario ends within 3 minutes");
}
