//! A mixed consumer group on nisshi: kgroup members and librdkafka members (through `rdkafka`)
//! share one group, with `range` and with `cooperative-sticky`. Whichever client leads, the
//! assignment it computes must be understood by the other (ConsumerProtocol subscription and
//! assignment formats, KIP-429's owned partitions and second round): the group converges with
//! every partition owned exactly once, after members of both kinds join and after the leader
//! leaves, and every message is consumed and committed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kgroup::driver::group::GroupObserver;
use kgroup::group::StateKind;
use kgroup::group::TopicPartition;
use kgroup::producer::{Producer, ProducerConfig, ProducerRecord};
use kgroup::{ConsumerConfig, GroupConsumer};
use kgroup_integration::{init_tracing, unique_name, TestBroker};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};

const PARTITIONS: i32 = 12;
const MESSAGES: usize = 2_400;
const CONVERGE: Duration = Duration::from_secs(60);
const SESSION: Duration = Duration::from_secs(10);
const HEARTBEAT: Duration = Duration::from_millis(500);

/// Partitions per member as each client reports them.
type Owned = Arc<Mutex<BTreeSet<i32>>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A librdkafka member: a `BaseConsumer` polled on its own thread, committing every message
/// synchronously; its assignment is read after each poll.
struct RdMember {
    name: String,
    owned: Owned,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl RdMember {
    fn start(name: &str, bootstrap: &str, group: &str, topic: &str, strategy: &str) -> RdMember {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", group)
            .set("client.id", name)
            .set("partition.assignment.strategy", strategy)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", SESSION.as_millis().to_string())
            .set("heartbeat.interval.ms", HEARTBEAT.as_millis().to_string())
            .create()
            .expect("librdkafka consumer");
        consumer.subscribe(&[topic]).expect("subscribe");
        let owned = Owned::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (owned_in, stop_in) = (owned.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !stop_in.load(Ordering::Relaxed) {
                if let Some(Ok(message)) = consumer.poll(Duration::from_millis(50)) {
                    // Commit failures during a rebalance are librdkafka's to handle; the
                    // partition's next owner then reads the message again.
                    let _ = consumer.commit_message(&message, CommitMode::Sync);
                }
                if let Ok(assignment) = consumer.assignment() {
                    *lock(&owned_in) = assignment.elements().iter().map(|e| e.partition()).collect();
                }
            }
            consumer.unsubscribe();
            // Dropping the consumer closes it: LeaveGroup.
        });
        RdMember { name: name.to_owned(), owned, stop, thread: Some(thread) }
    }

    fn close(mut self) {
        self.stop_thread();
    }

    fn stop_thread(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for RdMember {
    fn drop(&mut self) {
        self.stop_thread();
    }
}

/// A kgroup member: a `GroupConsumer` polled on a task, committing every batch.
struct KgMember {
    name: String,
    observer: GroupObserver,
    stop: Arc<AtomicBool>,
    task: Option<tokio::task::JoinHandle<GroupConsumer>>,
}

impl KgMember {
    async fn start(name: String, bootstrap: &str, group: &str, topic: &str, strategy: &str) -> KgMember {
        let mut config = ConsumerConfig::new(bootstrap.to_owned(), group.to_owned());
        config.client_id = name.clone();
        config.session_timeout = SESSION;
        config.heartbeat_interval = HEARTBEAT;
        config.enable_auto_commit = false;
        config.auto_offset_reset = kgroup::consumer::OffsetReset::Earliest;
        config.max_poll_records = 100;
        config.assignment_strategy = vec![strategy.to_owned()];
        let mut consumer = GroupConsumer::subscribe(config, &[topic]).await.expect("kgroup consumer");
        let observer = consumer.observer();
        let stop = Arc::new(AtomicBool::new(false));
        let stop_in = stop.clone();
        let task = tokio::spawn(async move {
            while !stop_in.load(Ordering::Relaxed) {
                if let Ok(Some(batch)) = consumer.poll(100, Duration::from_millis(100)).await {
                    let results = consumer.commit(&batch).await.expect("commit returns outcomes");
                    for result in results {
                        // The gate classifies every outcome: a rebalance fences, never fails.
                        assert!(!matches!(result.outcome, kgroup::group::CommitOutcome::Failed { .. }), "{result:?}");
                    }
                }
            }
            consumer
        });
        KgMember { name, observer, stop, task: Some(task) }
    }

    async fn close(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let task = self.task.take().expect("running");
        let consumer = task.await.expect("member task");
        consumer.close().await.expect("close");
    }
}

impl Drop for KgMember {
    fn drop(&mut self) {
        // A failing test stops the task; `close` has already taken it otherwise.
        self.stop.store(true, Ordering::Relaxed);
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// One converged view: who owns what, and which kgroup member leads.
#[derive(Debug, PartialEq, Eq)]
struct View {
    owners: BTreeMap<String, BTreeSet<i32>>,
    kgroup_leader: Option<String>,
}

/// Waits until every kgroup member is Stable in one generation, every partition is owned by
/// exactly one member, and that picture holds for three samples in a row.
async fn converge(kg: &[KgMember], rd: &[RdMember]) -> View {
    let deadline = Instant::now() + CONVERGE;
    let mut last: Option<View> = None;
    let mut same = 0;
    loop {
        let mut owners = BTreeMap::new();
        let mut generations = BTreeSet::new();
        let mut all_stable = true;
        let mut kgroup_leader = None;
        for m in kg {
            let s = m.observer.group_state().await.expect("snapshot");
            all_stable &= s.state == StateKind::Stable;
            generations.insert(s.generation.as_ref().map(|g| g.id.0));
            if s.is_leader {
                kgroup_leader = Some(m.name.clone());
            }
            owners.insert(m.name.clone(), s.assignment.iter().map(|o| o.partition.partition).collect());
        }
        for m in rd {
            owners.insert(m.name.clone(), lock(&m.owned).clone());
        }
        let total: usize = owners.values().map(BTreeSet::len).sum();
        let union: BTreeSet<i32> = owners.values().flatten().copied().collect();
        let exact = total == PARTITIONS as usize && union.len() == PARTITIONS as usize;
        let view = View { owners, kgroup_leader };
        if all_stable && generations.len() <= 1 && exact && last.as_ref() == Some(&view) {
            same += 1;
            if same == 2 {
                return view;
            }
        } else {
            same = 0;
        }
        assert!(Instant::now() < deadline, "no convergence within {CONVERGE:?}: {view:?}, generations {generations:?}");
        last = Some(view);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Which client leads: the first member to join, which stays leader while it stays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leader {
    Kgroup,
    Librdkafka,
}

async fn mixed_group_converges(strategy: &str, leader: Leader) {
    init_tracing();
    let broker = TestBroker::start().await;
    let bootstrap = broker.bootstrap().to_owned();
    let topic = unique_name("interop");
    let group = unique_name("interop-group");
    let cluster = broker.cluster().await;
    cluster.create_topic(&topic, PARTITIONS, 1).await.expect("topic");
    cluster.wait_for_topic(&topic).await.expect("topic metadata");
    let producer = Producer::new(cluster.clone(), ProducerConfig::default()).expect("producer");
    let deliveries: Vec<_> = (0..MESSAGES)
        .map(|i| producer.send(ProducerRecord::new(topic.as_str(), Some(format!("k{i}")), format!("m{i}"))))
        .collect();
    producer.flush().await;
    let mut log_end: BTreeMap<i32, i64> = BTreeMap::new();
    for d in deliveries {
        let written = d.await.expect("delivered");
        let end = log_end.entry(written.partition).or_default();
        *end = (*end).max(written.offset + 1);
    }

    let (mut kg, mut rd) = (Vec::new(), Vec::new());
    let start_kg = |n: usize| KgMember::start(format!("kg-{n}"), &bootstrap, &group, &topic, strategy);
    let start_rd = |n: usize| RdMember::start(&format!("rd-{n}"), &bootstrap, &group, &topic, strategy);
    // The leader's kind joins alone first and gets everything.
    match leader {
        Leader::Kgroup => kg.push(start_kg(1).await),
        Leader::Librdkafka => rd.push(start_rd(1)),
    }
    let alone = converge(&kg, &rd).await;
    assert_eq!(alone.owners.len(), 1);
    // Then two of the other kind and a second of the leader's.
    match leader {
        Leader::Kgroup => {
            rd.push(start_rd(1));
            kg.push(start_kg(2).await);
            rd.push(start_rd(2));
        }
        Leader::Librdkafka => {
            kg.push(start_kg(1).await);
            rd.push(start_rd(2));
            kg.push(start_kg(2).await);
        }
    }
    let mixed = converge(&kg, &rd).await;
    println!("{strategy}, {leader:?} leads, 2 + 2 members: {mixed:?}");
    assert_eq!(mixed.kgroup_leader.is_some(), leader == Leader::Kgroup, "the first member still leads");
    assert!(mixed.owners.values().all(|p| p.len() == 3), "12 partitions over 4 members: 3 each");

    // A member of the other kind leaves; the leader reassigns its partitions.
    match leader {
        Leader::Kgroup => rd.remove(0).close(),
        Leader::Librdkafka => kg.remove(0).close().await,
    }
    let after_leave = converge(&kg, &rd).await;
    println!("{strategy}, {leader:?} leads, one left: {after_leave:?}");
    assert_eq!(after_leave.owners.len(), 3);
    if strategy == "cooperative-sticky" {
        // Sticky: the members that stayed keep what they had.
        for (name, partitions) in &after_leave.owners {
            assert!(partitions.is_superset(&mixed.owners[name]), "{name} kept its partitions");
        }
    }

    // Every message consumed and committed by whichever member owned its partition, read
    // through a kgroup member of the group.
    let all: Vec<TopicPartition> = (0..PARTITIONS).map(|p| TopicPartition::new(&topic, p)).collect();
    let deadline = Instant::now() + CONVERGE;
    loop {
        let committed = kg[0].observer.committed(all.clone()).await.expect("committed offsets");
        let behind: Vec<_> =
            committed.iter().filter(|(tp, offset)| *offset != log_end.get(&tp.partition).copied()).collect();
        if behind.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "committed offsets short of the log end: {behind:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for m in kg {
        m.close().await;
    }
    for m in rd {
        m.close();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_group_led_by_kgroup_with_librdkafka_members() {
    mixed_group_converges("range", Leader::Kgroup).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_group_led_by_librdkafka_with_kgroup_members() {
    mixed_group_converges("range", Leader::Librdkafka).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cooperative_sticky_group_led_by_kgroup_with_librdkafka_members() {
    mixed_group_converges("cooperative-sticky", Leader::Kgroup).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cooperative_sticky_group_led_by_librdkafka_with_kgroup_members() {
    mixed_group_converges("cooperative-sticky", Leader::Librdkafka).await;
}
