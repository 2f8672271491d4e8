//! `client.rack` on a three-node Kafka 3.6.2 cluster whose nodes sit in racks `rack-1`..`rack-3`
//! and pick read replicas with `RackAwareReplicaSelector` (KIP-392). One partition, replicated
//! on all three nodes:
//!
//! - a consumer whose `client.rack` names a follower's rack reads every record, and its
//!   `kgroup_partition_read_replica` gauge shows the partition fetched from that follower while
//!   records keep coming;
//! - a consumer without `client.rack` reads the same records from the leader;
//! - the rack is in the first consumer's subscription as the coordinator keeps it (KIP-881);
//! - killing the follower mid-consumption sends the partition back to the leader, and every
//!   acknowledged record is still read, with its value.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use kgroup::admin::Admin;
use kgroup::embedded::kafka36::Kafka36Options;
use kgroup::producer::{Producer, ProducerConfig, ProducerRecord};
use kgroup::telemetry::MemberMetrics;
use kgroup::{Cluster, ClusterConfig, ConsumerConfig, GroupConsumer};
use kgroup_integration::{init_tracing, unique_name, TestBroker};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Bound on each wait for records or for the gauge.
const WAIT: Duration = Duration::from_secs(90);
/// Bound on the scenario once the cluster runs (the launcher bounds the cluster's start).
const SCENARIO: Duration = Duration::from_secs(300);
/// Records per production round.
const ROUND: usize = 150;

fn cluster_options() -> Kafka36Options {
    let mut options = Kafka36Options::three_nodes();
    options.properties.extend([
        ("replica.selector.class".to_owned(), "org.apache.kafka.common.replica.RackAwareReplicaSelector".to_owned()),
        // Leadership stays where it is: the test names the leader and the follower once.
        ("auto.leader.rebalance.enable".to_owned(), "false".to_owned()),
    ]);
    for node in 1..=3 {
        options.node_properties.insert(node, vec![("broker.rack".to_owned(), format!("rack-{node}"))]);
    }
    options
}

fn consumer_config(bootstrap: &str, group: &str, rack: Option<&str>) -> ConsumerConfig {
    let mut properties = vec![
        ("bootstrap.servers", bootstrap),
        ("group.id", group),
        ("client.id", group),
        ("auto.offset.reset", "earliest"),
        ("enable.auto.commit", "false"),
        ("session.timeout.ms", "10000"),
        ("heartbeat.interval.ms", "500"),
        ("fetch.max.wait.ms", "100"),
    ];
    if let Some(rack) = rack {
        properties.push(("client.rack", rack));
    }
    ConsumerConfig::from_properties(properties).expect("consumer configuration")
}

fn value(i: usize) -> Bytes {
    Bytes::from(format!("v{i}"))
}

/// Writes records `from..to` and waits for their acknowledgements; returns offset -> record.
async fn produce(producer: &Producer, topic: &str, from: usize, to: usize) -> BTreeMap<i64, usize> {
    let deliveries: Vec<_> =
        (from..to).map(|i| (i, producer.send(ProducerRecord::new(topic, None::<Bytes>, value(i))))).collect();
    producer.flush().await;
    let mut acked = BTreeMap::new();
    for (i, delivery) in deliveries {
        let written = delivery.await.unwrap_or_else(|e| panic!("record {i} not acknowledged: {e}"));
        assert_eq!(written.partition, 0);
        assert!(acked.insert(written.offset, i).is_none(), "offset {} acknowledged twice", written.offset);
    }
    acked
}

/// A consumer polled on a task, keeping every record it read by offset.
struct Reader {
    metrics: MemberMetrics,
    read: Arc<Mutex<BTreeMap<i64, Bytes>>>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Reader {
    async fn start(config: ConsumerConfig, topic: &str) -> Reader {
        let mut consumer = GroupConsumer::subscribe(config, &[topic]).await.expect("subscribe");
        let metrics = consumer.metrics().clone();
        let read = Arc::new(Mutex::new(BTreeMap::new()));
        let (stop, mut stopped) = watch::channel(false);
        let journal = read.clone();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stopped.changed() => break,
                    polled = consumer.poll(500, Duration::from_millis(200)) => match polled {
                        Ok(Some(batch)) => {
                            let mut read = journal.lock().unwrap();
                            for record in &batch.records {
                                let value = record.value_bytes().expect("every record has a value");
                                if let Some(earlier) = read.insert(record.offset(), value.clone()) {
                                    assert_eq!(earlier, value, "offset {} read with two values", record.offset());
                                }
                            }
                        }
                        Ok(None) => {}
                        Err(e) => panic!("poll: {e}"),
                    },
                }
            }
            consumer.close().await.expect("close");
        });
        Reader { metrics, read, stop, task }
    }

    /// The node the partition is fetched from, as the member's gauge shows it.
    fn read_replica(&self, topic: &str) -> Option<i32> {
        let labels = format!("topic=\"{topic}\",partition=\"0\"}} ");
        self.metrics.render_prometheus().lines().find_map(|line| {
            let rest = line.strip_prefix("kgroup_partition_read_replica{")?;
            let value = rest.split_once(labels.as_str())?.1;
            value.trim().parse::<f64>().ok().map(|v| v as i32)
        })
    }

    /// Waits (bounded) until every record of `acked` was read with its value.
    async fn wait_for(&self, acked: &BTreeMap<i64, usize>, what: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            let missing: Vec<i64> = {
                let read = self.read.lock().unwrap();
                for (offset, i) in acked {
                    if let Some(v) = read.get(offset) {
                        assert_eq!(v, &value(*i), "{what}: record {i} at offset {offset}");
                    }
                }
                acked.keys().filter(|o| !read.contains_key(o)).copied().collect()
            };
            if missing.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: {} acknowledged records never read, the first: {:?}",
                missing.len(),
                &missing[..missing.len().min(10)]
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits (bounded) until the gauge shows `node`.
    async fn wait_for_replica(&self, topic: &str, node: i32, what: &str) {
        let deadline = Instant::now() + WAIT;
        while self.read_replica(topic) != Some(node) {
            assert!(Instant::now() < deadline, "{what}: fetched from {:?}, not node {node}", self.read_replica(topic));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn close(self) {
        let _ = self.stop.send(true);
        self.task.await.expect("reader task");
    }
}

async fn leader_of(cluster: &Cluster, topic: &str) -> i32 {
    let metadata = cluster.refresh_metadata(Some(&[topic])).await.expect("metadata");
    metadata.leader(topic, 0).expect("a leader")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_fetches_from_the_replica_in_its_rack_and_falls_back_to_the_leader() {
    init_tracing();
    let mut broker = TestBroker::start_kafka36(cluster_options()).await;
    tokio::time::timeout(SCENARIO, scenario(&mut broker)).await.expect("the scenario within its bound");
}

async fn scenario(broker: &mut TestBroker) {
    let started = Instant::now();
    let bootstrap = broker.bootstrap().to_owned();
    let cluster = broker.cluster().await;
    let (topic, rack_group, plain_group) = (unique_name("rack"), unique_name("rack-group"), unique_name("plain-group"));
    cluster.create_topic(&topic, 1, 3).await.expect("topic replicated on all three nodes");
    let leader = leader_of(&cluster, &topic).await;
    // A follower that does not coordinate the rack consumer's group, so that killing it tests
    // the fetch path alone.
    let coordinator = cluster.find_coordinator(&rack_group).await.expect("FindCoordinator").node_id;
    let follower = (1..=3).find(|&n| n != leader && n != coordinator).expect("a follower besides the coordinator");
    println!("leader {leader}, follower {follower} (rack-{follower}), coordinator {coordinator}");

    let producer =
        Producer::new(cluster.clone(), ProducerConfig { max_attempts: 60, ..Default::default() }).expect("producer");
    let mut acked = produce(&producer, &topic, 0, ROUND).await;
    let rack = format!("rack-{follower}");
    let in_rack = Reader::start(consumer_config(&bootstrap, &rack_group, Some(&rack)), &topic).await;
    let plain = Reader::start(consumer_config(&bootstrap, &plain_group, None), &topic).await;
    in_rack.wait_for(&acked, "client.rack consumer").await;
    plain.wait_for(&acked, "consumer without client.rack").await;
    in_rack.wait_for_replica(&topic, follower, "client.rack consumer").await;
    plain.wait_for_replica(&topic, leader, "consumer without client.rack").await;

    // Records written from now on reach the rack consumer through the follower.
    let second = produce(&producer, &topic, ROUND, 2 * ROUND).await;
    acked.extend(&second);
    in_rack.wait_for(&acked, "client.rack consumer, from the follower").await;
    plain.wait_for(&acked, "consumer without client.rack").await;
    assert_eq!(in_rack.read_replica(&topic), Some(follower), "still the follower");
    assert_eq!(plain.read_replica(&topic), Some(leader), "still the leader");

    // The subscription carries the rack to the group's leader (KIP-881).
    let admin =
        Admin::connect(ClusterConfig::from_bootstrap_servers(&bootstrap).expect("bootstrap")).await.expect("admin");
    for (group, expected) in [(&rack_group, Some(rack.clone())), (&plain_group, None)] {
        let description = admin.describe_group(group).await.expect("DescribeGroups");
        let subscription = description.members[0].subscription.clone().expect("decodable").expect("sent while Stable");
        assert_eq!(subscription.rack, expected, "{group}");
    }

    // Kill the follower while records are written and read.
    let third = produce(&producer, &topic, 2 * ROUND, 2 * ROUND + ROUND / 2).await;
    acked.extend(&third);
    let kafka = broker.kafka36().expect("Kafka 3.6");
    kafka.kill(follower).expect("kill the follower");
    let killed_at = Instant::now();
    let fourth = produce(&producer, &topic, 2 * ROUND + ROUND / 2, 3 * ROUND).await;
    acked.extend(&fourth);
    in_rack.wait_for(&acked, "client.rack consumer, across the follower's death").await;
    in_rack.wait_for_replica(&topic, leader, "client.rack consumer once its replica died").await;
    let recovered_after = killed_at.elapsed();
    let fifth = produce(&producer, &topic, 3 * ROUND, 4 * ROUND).await;
    acked.extend(&fifth);
    in_rack.wait_for(&acked, "client.rack consumer, from the leader").await;
    plain.wait_for(&acked, "consumer without client.rack").await;
    assert_eq!(in_rack.read_replica(&topic), Some(leader), "the leader serves the partition now");
    assert_eq!(leader_of(&cluster, &topic).await, leader, "leadership did not move");

    producer.close().await;
    in_rack.close().await;
    plain.close().await;
    println!(
        "{} records read by both consumers; back on the leader {recovered_after:?} after the kill; {:?} in all",
        acked.len(),
        started.elapsed()
    );
}
