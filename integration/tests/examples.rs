//! The examples of `integration/examples/`, run against a broker: each file is included here as
//! a module and its `run` is called with a test broker and a stop future, exactly the code
//! `cargo run --example NAME` runs; the outcome is checked against the broker (committed
//! offsets through `kgroup::admin::Admin`, records processed against records produced).
//!
//! The modules are `pub`, and so is each example's `main`: the test crate calls `run`, not
//! `main`, and an unused `pub` item of a `pub` module is not dead code.
//!
//! On nisshi (embedded): all six, `commit_on_revoke` and `task_per_partition` with a second
//! member joining while records keep coming, so that a revoke really happens mid-stream. On
//! Kafka 3.6.2 (from its Maven jars): `at_least_once`.

#[path = "../examples/at_least_once.rs"]
pub mod at_least_once;
#[path = "../examples/commit_on_revoke.rs"]
pub mod commit_on_revoke;
#[path = "../examples/graceful_shutdown.rs"]
pub mod graceful_shutdown;
#[path = "../examples/snapshot_json.rs"]
pub mod snapshot_json;
#[path = "../examples/task_per_partition.rs"]
pub mod task_per_partition;
#[path = "../examples/tls_scram.rs"]
pub mod tls_scram;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use kgroup::admin::{Admin, GroupState};
use kgroup::embedded::kafka36::Kafka36Options;
use kgroup::group::TopicPartition;
use kgroup::producer::{Producer, ProducerConfig, ProducerRecord};
use kgroup::{Batch, Cluster, ClusterConfig, ConfigError, ConsumerConfig};
use kgroup_integration::pki::Pki;
use kgroup_integration::{init_tracing, unique_name, TestBroker};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::time::{sleep, timeout};

const PARTITIONS: i32 = 4;
/// Bound on a whole scenario once its broker runs.
const SCENARIO: Duration = Duration::from_secs(180);
/// Bound on each wait for the group's commits.
const SETTLE: Duration = Duration::from_secs(90);

/// A topic of [`PARTITIONS`] partitions and a group name, on one broker.
struct Scenario {
    bootstrap: String,
    cluster: Cluster,
    admin: Admin,
    topic: String,
    group: String,
}

impl Scenario {
    async fn new(bootstrap: &str, security: &[(&str, &str)]) -> Scenario {
        let properties = [("bootstrap.servers", bootstrap)].into_iter().chain(security.iter().copied());
        let config = ClusterConfig::from_properties(properties).expect("cluster config");
        let cluster = Cluster::connect(config).await.expect("connect");
        let topic = unique_name("example");
        cluster.create_topic(&topic, PARTITIONS, 1).await.expect("create topic");
        let admin = Admin::new(cluster.clone());
        Scenario { bootstrap: bootstrap.to_owned(), cluster, admin, topic, group: unique_name("example-group") }
    }

    fn partitions(&self) -> Vec<TopicPartition> {
        (0..PARTITIONS).map(|p| TopicPartition::new(&self.topic, p)).collect()
    }

    /// Produces `count` keyed records, spread over the partitions by key.
    async fn produce(&self, count: usize) {
        let producer = Producer::new(self.cluster.clone(), ProducerConfig::default()).expect("producer");
        let deliveries: Vec<_> = (0..count)
            .map(|i| {
                let key = unique_name("k");
                producer.send(ProducerRecord::new(&self.topic, Some(key), format!("value {i}")))
            })
            .collect();
        producer.flush().await;
        for delivery in deliveries {
            delivery.await.expect("delivered");
        }
        producer.close().await;
    }

    async fn log_ends(&self) -> BTreeMap<TopicPartition, i64> {
        self.admin.log_end_offsets(&self.partitions()).await.expect("log end offsets")
    }

    /// The group's committed offsets, by partition (none committed: absent).
    async fn committed(&self) -> BTreeMap<TopicPartition, i64> {
        self.admin.committed_offsets(&self.group).await.expect("committed offsets")
    }

    /// Waits until the group has committed every record up to `ends`.
    async fn wait_committed(&self, ends: &BTreeMap<TopicPartition, i64>) {
        let nonempty: BTreeMap<_, _> = ends.iter().filter(|(_, end)| **end > 0).map(|(p, e)| (p.clone(), *e)).collect();
        let reached = timeout(SETTLE, async {
            while self.committed().await != nonempty {
                sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
        let committed = self.committed().await;
        assert!(reached.is_ok(), "committed {committed:?}, log ends {ends:?}");
    }

    /// Waits until the group has committed something.
    async fn wait_first_commit(&self) {
        let reached = timeout(SETTLE, async {
            while self.committed().await.is_empty() {
                sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        assert!(reached.is_ok(), "no commit within {SETTLE:?}");
    }

    /// Waits until the group is Stable with `count` members.
    async fn wait_members(&self, count: usize) {
        let reached = timeout(SETTLE, async {
            loop {
                let group = self.admin.describe_group(&self.group).await.expect("describe group");
                if group.state == GroupState::Stable && group.members.len() == count {
                    return;
                }
                sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        assert!(reached.is_ok(), "no Stable group of {count} within {SETTLE:?}");
    }

    /// The member left: nobody is in the group any more.
    async fn assert_left(&self) {
        let group = self.admin.describe_group(&self.group).await.expect("describe group");
        assert_eq!(group.state, GroupState::Empty, "{group:?}");
        assert!(group.members.is_empty(), "{group:?}");
    }
}

/// Quick timings for a test broker, and batches of at most 50 records so there are many.
fn quick(config: ConsumerConfig) -> ConsumerConfig {
    config
        .session_timeout(Duration::from_secs(10))
        .heartbeat_interval(Duration::from_millis(300))
        .fetch_max_wait(Duration::from_millis(100))
        .max_poll_records(50)
}

/// The stop future handed to an example: completes when its sender fires (or is dropped).
struct Stop(oneshot::Receiver<()>);

impl Future for Stop {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx).map(|_| ())
    }
}

fn stop_signal() -> (oneshot::Sender<()>, Stop) {
    let (fire, fired) = oneshot::channel();
    (fire, Stop(fired))
}

/// Records per partition, as the log ends of a topic written from offset 0.
fn counts(ends: &BTreeMap<TopicPartition, i64>) -> BTreeMap<TopicPartition, u64> {
    ends.iter().filter(|(_, end)| **end > 0).map(|(p, end)| (p.clone(), *end as u64)).collect()
}

fn add(a: &BTreeMap<TopicPartition, u64>, b: &BTreeMap<TopicPartition, u64>) -> BTreeMap<TopicPartition, u64> {
    let mut sum = a.clone();
    for (partition, n) in b {
        *sum.entry(partition.clone()).or_default() += n;
    }
    sum.retain(|_, n| *n > 0);
    sum
}

// ---- at_least_once, on nisshi and on Kafka 3.6 ----

async fn at_least_once_scenario(bootstrap: &str) {
    let s = Scenario::new(bootstrap, &[]).await;
    s.produce(400).await;
    let ends = s.log_ends().await;
    let config = quick(at_least_once::config(&s.bootstrap, &s.group).expect("config"));
    let (stop, stopped) = stop_signal();
    let (report, ()) = tokio::join!(at_least_once::run(config, &s.topic, stopped), async {
        s.wait_committed(&ends).await;
        let _ = stop.send(());
    });
    let report = report.expect("the example ran");
    assert_eq!(report.processed, counts(&ends), "every record processed once");
    assert_eq!(report.bytes, (0..400).map(|i| format!("value {i}").len() as u64).sum::<u64>());
    assert_eq!(report.committed, s.committed().await, "its commits are the group's");
    assert_eq!((report.fenced, report.retried), (0, 0), "{report:?}");
    s.assert_left().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_least_once_on_nisshi() {
    init_tracing();
    let broker = TestBroker::start().await;
    timeout(SCENARIO, at_least_once_scenario(broker.bootstrap())).await.expect("within its bound");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_least_once_on_kafka36() {
    init_tracing();
    let options = Kafka36Options { initial_rebalance_delay: Duration::ZERO, ..Default::default() };
    let broker = TestBroker::start_kafka36(options).await;
    timeout(SCENARIO, at_least_once_scenario(broker.bootstrap())).await.expect("within its bound");
}

// ---- two members: a revoke while records keep coming ----

/// Runs member `a` on 200 records; once `b_may_start`, starts member `b` while 200 more
/// records come in 5 waves, and 200 more once both are in the group; once `all_done`, stops
/// both. Returns both results and the log ends.
async fn two_members<R, A, B>(
    s: &Scenario,
    run_a: impl FnOnce(Stop) -> A,
    run_b: impl FnOnce(Stop) -> B,
    b_may_start: impl Future<Output = ()>,
    all_done: impl Future<Output = ()>,
) -> (R, R, BTreeMap<TopicPartition, i64>)
where
    A: Future<Output = R>,
    B: Future<Output = R>,
{
    s.produce(200).await;
    let (stop_a, a_stopped) = stop_signal();
    let (stop_b, b_stopped) = stop_signal();
    let (start_b, b_starts) = oneshot::channel::<()>();
    let b = async {
        let _ = b_starts.await;
        run_b(b_stopped).await
    };
    let driver = async {
        timeout(SETTLE, b_may_start).await.expect("the first member made progress");
        let _ = start_b.send(());
        // Half while the second member joins, half once it owns its partitions, so it has
        // records to process whenever the rebalance ends.
        for _ in 0..5 {
            s.produce(40).await;
            sleep(Duration::from_millis(150)).await;
        }
        s.wait_members(2).await;
        for _ in 0..5 {
            s.produce(40).await;
        }
        timeout(SETTLE, all_done).await.expect("every record processed");
        let _ = stop_a.send(());
        let _ = stop_b.send(());
        s.log_ends().await
    };
    tokio::join!(run_a(a_stopped), b, driver)
}

/// Records processed by the test's processing function, per partition.
#[derive(Clone, Default)]
struct Processed(Arc<Mutex<BTreeMap<TopicPartition, u64>>>);

impl Processed {
    fn count(&self, batch: &Batch) {
        let mut counts = self.0.lock().unwrap();
        *counts.entry(batch.partition.clone()).or_default() += batch.records.len() as u64;
    }

    fn total(&self) -> u64 {
        self.0.lock().unwrap().values().sum()
    }

    async fn reaches(&self, total: u64) {
        while self.total() < total {
            sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_on_revoke_commits_what_the_revoked_member_processed() {
    init_tracing();
    let broker = TestBroker::start().await;
    timeout(SCENARIO, async {
        let s = Scenario::new(broker.bootstrap(), &[]).await;
        let config = || quick(commit_on_revoke::config(&s.bootstrap, &s.group).expect("config"));
        // No periodic commit within the test (the first would come after an hour): every
        // offset lands through `revoked`, when the second member joins and when each closes.
        let every = Duration::from_secs(3600);
        let processed = Processed::default();
        let (in_a, in_b) = (processed.clone(), processed.clone());
        let (a, b, ends) = two_members(
            &s,
            |stop| commit_on_revoke::run(config(), &s.topic, every, move |batch| in_a.count(batch), stop),
            |stop| commit_on_revoke::run(config(), &s.topic, every, move |batch| in_b.count(batch), stop),
            // The first member processed the first 200 records before the second one joins.
            processed.reaches(200),
            processed.reaches(600),
        )
        .await;
        let (a, b) = (a.expect("member a ran"), b.expect("member b ran"));
        let counted = processed.0.lock().unwrap().clone();
        assert_eq!(counted, counts(&ends), "nothing lost, nothing read twice: {a:?} {b:?}");
        assert_eq!(add(&a.processed, &b.processed), counted);
        assert!(b.processed.values().sum::<u64>() > 0, "the second member took partitions: {b:?}");
        // The first member's revoke, when the second joined, committed the first 200 records.
        assert!(a.committed_on_revoke >= 1, "{a:?}");
        assert_eq!(a.committed_periodically + b.committed_periodically, 0, "{a:?} {b:?}");
        assert_eq!(s.committed().await, ends.into_iter().filter(|(_, end)| *end > 0).collect());
        s.assert_left().await;
    })
    .await
    .expect("within its bound");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_per_partition_hands_partitions_over_without_losing_or_repeating_records() {
    init_tracing();
    let broker = TestBroker::start().await;
    timeout(SCENARIO, async {
        let s = Scenario::new(broker.bootstrap(), &[]).await;
        let config = || quick(task_per_partition::config(&s.bootstrap, &s.group).expect("config"));
        let (a, b, ends) = two_members(
            &s,
            |stop| task_per_partition::run(config(), &s.topic, stop),
            |stop| task_per_partition::run(config(), &s.topic, stop),
            s.wait_first_commit(),
            async { s.wait_committed(&s.log_ends().await).await },
        )
        .await;
        let (a, b) = (a.expect("member a ran"), b.expect("member b ran"));
        assert_eq!(add(&a.processed, &b.processed), counts(&ends), "nothing lost, nothing read twice: {a:?} {b:?}");
        assert!(b.processed.values().sum::<u64>() > 0, "the second member took partitions: {b:?}");
        // Eager (range): the first member's tasks all stopped when the second joined, and the
        // partitions it kept got new ones.
        assert!(a.tasks_started > PARTITIONS as u64, "{a:?}");
        assert_eq!(s.committed().await, ends.into_iter().filter(|(_, end)| *end > 0).collect());
        s.assert_left().await;
    })
    .await
    .expect("within its bound");
}

// ---- graceful_shutdown ----

/// Processing that tells when the first batch starts and takes `work` per batch.
fn slow_processing(work: Duration) -> (impl FnMut(Batch) -> tokio::time::Sleep, oneshot::Receiver<()>) {
    let (started, first_started) = oneshot::channel();
    let mut started = Some(started);
    let process = move |_batch: Batch| {
        if let Some(started) = started.take() {
            let _ = started.send(());
        }
        sleep(work)
    };
    (process, first_started)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_and_commits_the_batch_in_hand_then_leaves() {
    init_tracing();
    let broker = TestBroker::start().await;
    timeout(SCENARIO, async {
        let s = Scenario::new(broker.bootstrap(), &[]).await;
        s.produce(400).await;
        let config = quick(graceful_shutdown::config(&s.bootstrap, &s.group).expect("config"));
        // The signal comes while the first batch is processed.
        let (process, first_started) = slow_processing(Duration::from_millis(500));
        let signal = Stop(first_started);
        let report = graceful_shutdown::run(config, &s.topic, Duration::from_secs(30), process, signal)
            .await
            .expect("a clean shutdown");
        assert!(report.finished_batch_after_signal, "{report:?}");
        let processed: u64 = report.processed.values().sum();
        assert!((1..=50).contains(&processed), "exactly the batch in hand: {report:?}");
        let committed = s.committed().await;
        assert_eq!(committed, report.committed, "its commit landed");
        let expected: BTreeMap<_, _> = report.processed.iter().map(|(p, n)| (p.clone(), *n as i64)).collect();
        assert_eq!(committed, expected, "everything processed is committed");
        s.assert_left().await;
    })
    .await
    .expect("within its bound");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_gives_up_at_its_deadline_without_committing_unfinished_work() {
    init_tracing();
    let broker = TestBroker::start().await;
    timeout(SCENARIO, async {
        let s = Scenario::new(broker.bootstrap(), &[]).await;
        s.produce(100).await;
        let config = quick(graceful_shutdown::config(&s.bootstrap, &s.group).expect("config"));
        // A batch that needs far longer than the deadline allows.
        let (process, first_started) = slow_processing(Duration::from_secs(60));
        let deadline = Duration::from_millis(300);
        let outcome = graceful_shutdown::run(config, &s.topic, deadline, process, Stop(first_started)).await;
        match outcome {
            Err(graceful_shutdown::RunError::DeadlinePassed(d)) => assert_eq!(d, deadline),
            other => panic!("expected DeadlinePassed, got {other:?}"),
        }
        assert!(s.committed().await.is_empty(), "the unfinished batch is not committed");
    })
    .await
    .expect("within its bound");
}

// ---- snapshot_json ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_json_writes_the_members_view_as_json_lines() {
    init_tracing();
    let broker = TestBroker::start().await;
    timeout(SCENARIO, async {
        let s = Scenario::new(broker.bootstrap(), &[]).await;
        s.produce(200).await;
        let ends = s.log_ends().await;
        let config = quick(snapshot_json::config(&s.bootstrap, &s.group).expect("config"));
        let mut out = Vec::new();
        let (stop, stopped) = stop_signal();
        let (ran, ()) =
            tokio::join!(snapshot_json::run(config, &s.topic, Duration::from_millis(200), &mut out, stopped), async {
                s.wait_committed(&ends).await;
                let _ = stop.send(());
            });
        ran.expect("the example ran");
        let text = String::from_utf8(out).expect("UTF-8");
        let lines: Vec<Value> =
            text.lines().map(|line| serde_json::from_str(line).expect("each line is a JSON document")).collect();
        assert!(lines.len() >= 2, "{text}");
        // The last one, written at the stop, is of a member that owns the topic and committed it.
        let last = lines.last().expect("a snapshot");
        assert_eq!(last["group_id"], s.group.as_str(), "{last:#}");
        assert_eq!(last["state"], "Stable", "{last:#}");
        assert!(last["generation"]["id"].as_i64().is_some_and(|id| id >= 1), "{last:#}");
        assert_eq!(last["generation"]["member_id"], last["member_id"], "{last:#}");
        let owned = last["assignment"].as_array().expect("assignment");
        assert_eq!(owned.len(), PARTITIONS as usize, "{last:#}");
        assert!(
            owned.iter().all(|p| p["partition"]["topic"] == s.topic.as_str() && p["owned_since"].is_i64()),
            "{last:#}"
        );
        let committed = last["counters"]["partitions_committed"].as_u64().expect("counter");
        assert!(committed >= counts(&ends).len() as u64, "{last:#}");
        s.assert_left().await;
    })
    .await
    .expect("within its bound");
}

// ---- tls_scram ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_scram_consumes_over_sasl_ssl_configured_from_a_properties_file() {
    init_tracing();
    let pki = Pki::new();
    let (user, password) = ("orders-consumer", "orders-secret-512");
    let broker = TestBroker::start_scram_512(Some(pki.broker_tls("server")), user, password).await;
    timeout(SCENARIO, async {
        let ca = pki.path_str("ca.pem");
        let security = [
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.username", user),
            ("sasl.password", password),
            ("ssl.ca.location", ca.as_str()),
        ];
        let s = Scenario::new(broker.bootstrap(), &security).await;
        s.produce(200).await;
        let ends = s.log_ends().await;
        // As a Java client's file: its own keys beside kgroup's (logged and ignored).
        let mut file = format!(
            "# consumer.properties\nbootstrap.servers={}\ngroup.id={}\nenable.auto.commit=false\n\
             auto.offset.reset=earliest\nkey.deserializer=org.apache.kafka.common.serialization.StringDeserializer\n\
             heartbeat.interval.ms=300\nfetch.max.wait.ms=100\nsession.timeout.ms=10000\n",
            s.bootstrap, s.group
        );
        for (key, value) in security {
            file.push_str(&format!("{key}={value}\n"));
        }
        let path = pki.path("client.properties");
        std::fs::write(&path, &file).expect("write the properties file");
        let config = tls_scram::config(&path).expect("the file loads");
        let (stop, stopped) = stop_signal();
        let (report, ()) = tokio::join!(tls_scram::run(config, &s.topic, stopped), async {
            s.wait_committed(&ends).await;
            let _ = stop.send(());
        });
        let report = report.expect("the example ran");
        assert_eq!(report.processed, counts(&ends));
        assert_eq!(report.committed, s.committed().await);
        s.assert_left().await;

        // A file without security.protocol would connect without TLS: the example refuses it.
        let plain = pki.path("plain.properties");
        std::fs::write(&plain, format!("bootstrap.servers={}\ngroup.id={}\n", s.bootstrap, s.group)).unwrap();
        match tls_scram::config(&plain) {
            Err(ConfigError::InvalidValue { key: "security.protocol", value, .. }) => assert_eq!(value, "PLAINTEXT"),
            other => panic!("expected the protocol refused, got {other:?}"),
        }
    })
    .await
    .expect("within its bound");
}
