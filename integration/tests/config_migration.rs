//! A Java consumer's properties file, copied as it is, drives a `GroupConsumer` end to end on a
//! real broker (nisshi by default, `KGROUP_BOOTSTRAP` for any cluster).

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use kgroup::producer::{Producer, ProducerConfig, ProducerRecord};
use kgroup::{ConsumerConfig, GroupConsumer};
use kgroup_integration::{init_tracing, unique_name, TestBroker};
use tokio::time::{timeout, Instant};

const RECORDS: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_java_properties_file_configures_a_consumer_that_consumes() {
    init_tracing();
    let broker = TestBroker::start().await;
    let cluster = broker.cluster().await;
    let topic = unique_name("config-migration");
    cluster.create_topic(&topic, 2, 1).await.expect("create topic");
    let producer = Producer::new(cluster.clone(), ProducerConfig::default()).expect("producer");
    let deliveries: Vec<_> = (0..RECORDS)
        .map(|i| {
            producer.send(ProducerRecord::new(&topic, Some(format!("key-{i}")), Bytes::from(format!("value-{i}"))))
        })
        .collect();
    producer.flush().await;
    for delivery in deliveries {
        delivery.await.expect("delivered");
    }
    producer.close().await;

    let dir = std::env::temp_dir().join(unique_name("kgroup-config-migration"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("consumer.properties");
    let group = unique_name("java-migrated");
    std::fs::write(
        &file,
        format!(
            "# consumer.properties of a Java service\n\
             bootstrap.servers={bootstrap}\n\
             group.id={group}\n\
             client.id=billing-consumer\n\
             key.deserializer=org.apache.kafka.common.serialization.StringDeserializer\n\
             value.deserializer=org.apache.kafka.common.serialization.StringDeserializer\n\
             auto.offset.reset=earliest\n\
             enable.auto.commit=false\n\
             ! the Java default, continued over two lines\n\
             partition.assignment.strategy=org.apache.kafka.clients.consumer.RangeAssignor,\\\n    \
                 org.apache.kafka.clients.consumer.CooperativeStickyAssignor\n\
             session.timeout.ms: 10000\n\
             heartbeat.interval.ms: 500\n\
             fetch.max.wait.ms=100\n\
             client.dns.lookup=use_all_dns_ips\n\
             metric.reporters=\n",
            bootstrap = broker.bootstrap(),
        ),
    )
    .expect("write properties");

    let config = ConsumerConfig::from_properties_file(&file).expect("the Java file loads");
    assert_eq!(config.assignment_strategy, ["range", "cooperative-sticky"]);
    assert_eq!(config.client_id, "billing-consumer");
    let mut consumer = GroupConsumer::subscribe(config, &[topic.as_str()]).await.expect("subscribe");
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.len() < RECORDS {
        let left = deadline.saturating_duration_since(Instant::now());
        let batch = timeout(left, consumer.poll(100, Duration::from_millis(500)))
            .await
            .unwrap_or_else(|_| panic!("only {} of {RECORDS} records within 60 s", seen.len()))
            .expect("poll");
        for record in batch.iter().flat_map(|b| &b.records) {
            let value = record.value.as_deref().map(|v| String::from_utf8_lossy(v).into_owned());
            seen.insert(value.expect("a value"));
        }
        if let Some(batch) = batch {
            consumer.commit(&batch).await.expect("commit");
        }
    }
    let expected: BTreeSet<String> = (0..RECORDS).map(|i| format!("value-{i}")).collect();
    assert_eq!(seen, expected);
    consumer.close().await.expect("close");
    std::fs::remove_dir_all(&dir).expect("remove temp dir");
}
