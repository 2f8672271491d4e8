//! A Java consumer's properties file, copied as it is, drives a `GroupConsumer` end to end on a
//! real broker (nisshi by default, `KGROUP_BOOTSTRAP` for any cluster); one with the Java
//! client's `sasl.jaas.config` authenticates with SCRAM on a nisshi that requires it.

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use kgroup::producer::{Producer, ProducerConfig, ProducerRecord};
use kgroup::{Cluster, ClusterConfig, ConsumerConfig, GroupConsumer, SaslMechanism};
use kgroup_integration::{init_tracing, unique_name, TestBroker};
use tokio::time::{timeout, Instant};

const RECORDS: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_java_properties_file_configures_a_consumer_that_consumes() {
    init_tracing();
    let broker = TestBroker::start().await;
    let topic = produce(&broker.cluster().await).await;

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
    consume_all(config, &topic).await;
    std::fs::remove_dir_all(&dir).expect("remove temp dir");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_java_sasl_jaas_config_authenticates_with_scram() {
    init_tracing();
    let (user, password) = ("billing", "jaas-scram-secret");
    let broker = TestBroker::start_scram_512(None, user, password).await;
    let dir = std::env::temp_dir().join(unique_name("kgroup-config-migration"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("consumer.properties");
    // As the Kafka documentation configures a SCRAM client.
    std::fs::write(
        &file,
        format!(
            "bootstrap.servers={bootstrap}\n\
             group.id={group}\n\
             auto.offset.reset=earliest\n\
             enable.auto.commit=false\n\
             security.protocol=SASL_PLAINTEXT\n\
             sasl.mechanism=SCRAM-SHA-512\n\
             sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required \\\n    \
                 username=\"{user}\" \\\n    \
                 password=\"{password}\";\n",
            bootstrap = broker.bootstrap(),
            group = unique_name("jaas"),
        ),
    )
    .expect("write properties");

    // The same file configures the producer's cluster: its consumer keys are not used there.
    let properties = kgroup::properties::read_file(&file).expect("read properties");
    let (cluster_config, not_used) = ClusterConfig::from_properties_with_warnings(properties).expect("cluster config");
    let not_used: Vec<&str> = not_used.iter().map(|w| w.key.as_str()).collect();
    assert_eq!(not_used, ["group.id", "auto.offset.reset", "enable.auto.commit"]);
    let cluster = Cluster::connect(cluster_config).await.expect("authenticated with the JAAS credentials");
    let topic = produce(&cluster).await;

    let config = ConsumerConfig::from_properties_file(&file).expect("the Java file loads");
    let sasl = config.security.sasl.as_ref().expect("SASL from the JAAS entry");
    assert_eq!((sasl.mechanism, sasl.username.as_str()), (SaslMechanism::ScramSha512, user));
    assert!(!format!("{config:?}").contains(password), "the password stays out of Debug");
    consume_all(config, &topic).await;
    std::fs::remove_dir_all(&dir).expect("remove temp dir");
}

/// Creates a topic of two partitions and writes `RECORDS` records to it.
async fn produce(cluster: &Cluster) -> String {
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
    topic
}

/// Consumes and commits every record of `topic`, checking each value arrives.
async fn consume_all(config: ConsumerConfig, topic: &str) {
    let mut consumer = GroupConsumer::subscribe(config, &[topic]).await.expect("subscribe");
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.len() < RECORDS {
        let left = deadline.saturating_duration_since(Instant::now());
        let batch = timeout(left, consumer.poll(100, Duration::from_millis(500)))
            .await
            .unwrap_or_else(|_| panic!("only {} of {RECORDS} records within 60 s", seen.len()))
            .expect("poll");
        for record in batch.iter().flat_map(|b| &b.records) {
            let value = record.value().map(|v| String::from_utf8_lossy(v).into_owned());
            seen.insert(value.expect("a value"));
        }
        if let Some(batch) = batch {
            consumer.commit(&batch).await.expect("commit");
        }
    }
    let expected: BTreeSet<String> = (0..RECORDS).map(|i| format!("value-{i}")).collect();
    assert_eq!(seen, expected);
    consumer.close().await.expect("close");
}
