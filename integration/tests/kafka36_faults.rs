//! Coordinator failover on a three-node Kafka 3.6.2 cluster: ten kgroup members consume a topic
//! replicated on all three nodes while a producer writes throughout (`acks=all`, retrying across
//! the failover), each member committing every batch synchronously. In the middle of the
//! scale-out, while the group rebalances, the node coordinating the group is killed (SIGKILL),
//! or, in the second test, stopped gracefully (controlled shutdown) and started again. Then:
//!
//! - the group converges on the new coordinator: every member Stable in one generation, every
//!   partition owned by exactly one member, every member's snapshot naming the new coordinator,
//!   whose log stabilized that generation;
//! - no acknowledged record is lost: each one is processed at least once and ends up below the
//!   group's committed offset;
//! - no commit lands for a partition its member did not own: a `Committed` outcome stamped with
//!   generation G for partition p comes from the member whose `Assigned` event for G holds p, and
//!   no two members are assigned p in the same generation;
//! - what reaches the application is a per-partition outcome (Committed, Fenced, Failed), never
//!   an error.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kgroup::embedded::kafka36::{Kafka36Cluster, Kafka36Options};
use kgroup::group::StateKind;
use kgroup::group::{CommitOutcome, TopicPartition};
use kgroup::producer::{Producer, ProducerConfig, ProducerRecord};
use kgroup::{Cluster, ConsumerConfig};
use kgroup_integration::recording_member::{wait_for_convergence, GroupView, Journal, OwnershipAudit, RecordingMember};
use kgroup_integration::{init_tracing, unique_name, TestBroker};
use tokio::task::JoinHandle;
use tokio::time::Instant;

const PARTITIONS: i32 = 24;
/// Members before the scale-out.
const FIRST_MEMBERS: usize = 4;
const MEMBERS: usize = 10;
/// The member whose join the fault interrupts.
const FAULT_AT: usize = 7;
/// Bound on each wait for the group, for the records and for the commits.
const CONVERGE: Duration = Duration::from_secs(90);
/// Bound on a scenario once the cluster runs (the launcher bounds the cluster's start).
const SCENARIO: Duration = Duration::from_secs(180);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// SIGKILL: no controlled shutdown; clients see their connections reset.
    Kill,
    /// SIGTERM (controlled shutdown: leadership moves first), then the node starts again.
    StopAndRestart,
}

/// `min.insync.replicas=2` on a replication factor of 3: an acknowledged record (and a group's
/// stored generation) is on two nodes, so losing one loses neither. Leadership stays where the
/// failover put it (no preferred-leader election moving the coordinator back).
fn cluster_options() -> Kafka36Options {
    let mut options = Kafka36Options::three_nodes();
    options.properties.extend([
        ("min.insync.replicas".to_owned(), "2".to_owned()),
        ("auto.leader.rebalance.enable".to_owned(), "false".to_owned()),
    ]);
    options
}

fn member_config(bootstrap: &str, group: &str, name: &str) -> ConsumerConfig {
    ConsumerConfig::from_properties([
        ("bootstrap.servers", bootstrap),
        ("group.id", group),
        ("client.id", name),
        ("auto.offset.reset", "earliest"),
        ("enable.auto.commit", "false"),
        ("session.timeout.ms", "10000"),
        ("heartbeat.interval.ms", "500"),
        ("max.poll.interval.ms", "30000"),
        ("max.poll.records", "200"),
        ("fetch.max.wait.ms", "100"),
    ])
    .expect("member configuration")
}

/// What the producer wrote: every acknowledged record at its partition and offset (record `i`
/// has value `v{i}`), and how many sends failed for good (not counted as produced).
#[derive(Debug, Default)]
struct Produced {
    acked: BTreeMap<(i32, i64), usize>,
    failed: usize,
    /// Acknowledgements that named an offset already acknowledged for another record.
    reused: Vec<(i32, i64)>,
}

impl Produced {
    /// Per partition, the offset after the last acknowledged record.
    fn ends(&self) -> BTreeMap<i32, i64> {
        let mut ends = BTreeMap::new();
        for &(partition, offset) in self.acked.keys() {
            let end = ends.entry(partition).or_insert(0);
            *end = (offset + 1).max(*end);
        }
        ends
    }
}

fn value(i: usize) -> Bytes {
    Bytes::from(format!("v{i}"))
}

/// Writes chunks of keyed records until `stop`, each chunk acknowledged (or failed) before the
/// next; a send is retried for about a minute, across any failover.
fn spawn_producer(cluster: Cluster, topic: String, stop: Arc<AtomicBool>) -> JoinHandle<Produced> {
    tokio::spawn(async move {
        let config = ProducerConfig { max_attempts: 60, ..Default::default() };
        let producer = Producer::new(cluster, config).expect("producer");
        let mut produced = Produced::default();
        let mut next = 0;
        while !stop.load(Ordering::Relaxed) {
            let deliveries: Vec<_> = (next..next + 20)
                .map(|i| (i, producer.send(ProducerRecord::new(topic.as_str(), Some(format!("k{i}")), value(i)))))
                .collect();
            next += deliveries.len();
            producer.flush().await;
            for (i, delivery) in deliveries {
                match delivery.await {
                    Ok(written) => {
                        if produced.acked.insert((written.partition, written.offset), i).is_some() {
                            produced.reused.push((written.partition, written.offset));
                        }
                    }
                    Err(e) => {
                        tracing::info!(record = i, error = %e, "send failed for good");
                        produced.failed += 1;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        producer.close().await;
        produced
    })
}

async fn start_member(bootstrap: &str, group: &str, topic: &str, n: usize) -> RecordingMember {
    let name = format!("kg-{n}");
    RecordingMember::start(&name, member_config(bootstrap, group, &name), topic).await
}

async fn converge(members: &[RecordingMember]) -> GroupView {
    let members: Vec<&RecordingMember> = members.iter().collect();
    wait_for_convergence(&members, Vec::new, PARTITIONS, CONVERGE).await
}

/// Waits (bounded) until one of `members` has left Stable: the coordinator is rebalancing.
async fn wait_until_rebalancing(members: &[RecordingMember]) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        for member in members {
            if member.observer().group_state().await.is_ok_and(|s| s.state != StateKind::Stable) {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

/// The node coordinating `group`, as FindCoordinator names it and the launcher knows it.
async fn coordinator_node(cluster: &Cluster, kafka: &Kafka36Cluster, group: &str) -> i32 {
    let coordinator = cluster.find_coordinator(group).await.expect("FindCoordinator");
    let port = u16::try_from(coordinator.port).expect("a TCP port");
    let node = kafka.node_with_port(port).expect("the coordinator is a node of this cluster");
    assert_eq!(node, coordinator.node_id, "node ids follow the launcher's");
    node
}

/// Waits (bounded) until every acknowledged record was processed by some member; returns the
/// number of records processed more than once.
async fn wait_until_processed(members: &[RecordingMember], produced: &Produced) -> usize {
    let deadline = Instant::now() + CONVERGE;
    loop {
        let mut processed: BTreeMap<(i32, i64), Option<Bytes>> = BTreeMap::new();
        let mut again = 0;
        for member in members {
            for (partition, offset, value) in &member.journal().processed {
                if let Some(earlier) = processed.insert((*partition, *offset), value.clone()) {
                    assert_eq!(&earlier, value, "{partition}@{offset} read with two values");
                    again += 1;
                }
            }
        }
        let missing: Vec<_> = produced.acked.keys().filter(|key| !processed.contains_key(key)).collect();
        for (key, i) in &produced.acked {
            if let Some(read) = processed.get(key) {
                assert_eq!(read.as_ref(), Some(&value(*i)), "record {i} acknowledged at {key:?}");
            }
        }
        if missing.is_empty() {
            return again;
        }
        assert!(
            Instant::now() < deadline,
            "{} acknowledged records never processed, the first: {:?}",
            missing.len(),
            &missing[..missing.len().min(10)]
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits (bounded) until the group's committed offset of every partition is past its last
/// acknowledged record.
async fn wait_until_committed(member: &RecordingMember, topic: &str, ends: &BTreeMap<i32, i64>) {
    let partitions: Vec<TopicPartition> = (0..PARTITIONS).map(|p| TopicPartition::new(topic, p)).collect();
    let deadline = Instant::now() + CONVERGE;
    loop {
        let committed = member.observer().committed(partitions.clone()).await.expect("committed offsets");
        let behind: Vec<_> = committed
            .iter()
            .filter(|(tp, offset)| offset.unwrap_or(0) < ends.get(&tp.partition).copied().unwrap_or(0))
            .map(|(tp, offset)| (tp.partition, *offset, ends.get(&tp.partition)))
            .collect();
        if behind.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "committed offsets behind the acknowledged records: {behind:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn coordinator_failover(fault: Fault) {
    init_tracing();
    let mut broker = TestBroker::start_kafka36(cluster_options()).await;
    tokio::time::timeout(SCENARIO, scale_out_through(fault, &mut broker)).await.expect("the scenario within its bound");
}

async fn scale_out_through(fault: Fault, broker: &mut TestBroker) {
    let started = Instant::now();
    let bootstrap = broker.bootstrap().to_owned();
    let cluster = broker.cluster().await;
    let kafka = broker.kafka36().expect("Kafka 3.6");
    let (topic, group) = (unique_name("failover"), unique_name("failover-group"));
    cluster.create_topic(&topic, PARTITIONS, 3).await.expect("topic replicated on all three nodes");
    let old = coordinator_node(&cluster, kafka, &group).await;
    let stop_producing = Arc::new(AtomicBool::new(false));
    let producer = spawn_producer(cluster.clone(), topic.clone(), stop_producing.clone());

    let mut members = Vec::new();
    for n in 1..=FIRST_MEMBERS {
        members.push(start_member(&bootstrap, &group, &topic, n).await);
    }
    let first = converge(&members).await;
    assert_eq!(first.coordinators.first(), Some(&Some(old)), "the members found the coordinator");
    let mut fault_at = None;
    for n in FIRST_MEMBERS + 1..=MEMBERS {
        members.push(start_member(&bootstrap, &group, &topic, n).await);
        if n < FAULT_AT {
            converge(&members).await;
        } else if n == FAULT_AT {
            let rebalancing = wait_until_rebalancing(&members[..n - 1]).await;
            println!("{fault:?} of coordinator node {old} as kg-{n} joins (group rebalancing: {rebalancing})");
            fault_at = Some(Instant::now());
            match fault {
                Fault::Kill => kafka.kill(old).expect("kill"),
                Fault::StopAndRestart => kafka.stop(old, Duration::from_secs(60)).await.expect("graceful stop"),
            }
        }
    }
    if fault == Fault::StopAndRestart {
        kafka.restart(old).await.expect("restart");
    }
    let last = converge(&members).await;
    let converged_after = fault_at.map(|at| at.elapsed());
    let new = coordinator_node(&cluster, kafka, &group).await;
    assert_ne!(new, old, "the group moved to another coordinator");
    assert_eq!(last.coordinators.first(), Some(&Some(new)), "every snapshot names the new coordinator: {last:#?}");
    let generation = last.generation().expect("one generation");
    let stabilized = format!("Stabilized group {group} generation {generation} ");
    assert!(kafka.log(new).expect("log").contains(&stabilized), "node {new} logged `{stabilized}`");

    stop_producing.store(true, Ordering::Relaxed);
    let produced = producer.await.expect("producer task");
    assert!(produced.reused.is_empty(), "offsets acknowledged twice (a truncated log): {:?}", produced.reused);
    assert!(!produced.acked.is_empty(), "nothing was produced");
    let processed_again = wait_until_processed(&members, &produced).await;
    wait_until_committed(&members[0], &topic, &produced.ends()).await;

    let closing: Vec<JoinHandle<RecordingMember>> = members
        .into_iter()
        .map(|mut member| {
            tokio::spawn(async move {
                member.close().await;
                member
            })
        })
        .collect();
    let mut members = Vec::new();
    for close in closing {
        members.push(close.await.expect("close task"));
    }
    let journals: Vec<_> = members.iter().map(|m| (m.name.clone(), m.journal())).collect();
    let journal_refs: Vec<(&str, &Journal)> = journals.iter().map(|(name, j)| (name.as_str(), &**j)).collect();
    for (name, journal) in &journal_refs {
        assert!(journal.errors.is_empty(), "{name}: errors reached the application: {:#?}", journal.errors);
    }
    let mut audit = OwnershipAudit::default();
    for (name, journal) in &journal_refs {
        audit.assigned(name, &journal.assignments());
    }
    for (name, journal) in &journal_refs {
        audit.committed(name, journal);
    }
    assert!(audit.violations.is_empty(), "commits outside ownership: {:#?}", audit.violations);

    let outcomes = journal_refs.iter().flat_map(|(_, j)| &j.commits);
    let (mut committed, mut fenced, mut failed) = (0, 0, Vec::new());
    for commit in outcomes {
        match &commit.outcome {
            CommitOutcome::Committed { .. } => committed += 1,
            CommitOutcome::Fenced { .. } => fenced += 1,
            other => failed.push(format!("{} {other:?}", commit.partition)),
        }
    }
    println!(
        "{fault:?}: coordinator {old} -> {new}; converged in generation {generation} {converged_after:?} after the \
         fault; {} records acknowledged ({} sends failed), {processed_again} processed twice; partition commits: \
         {committed} committed, {fenced} fenced, {} failed {failed:?}; {:?} in all",
        produced.acked.len(),
        produced.failed,
        failed.len(),
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_group_survives_a_killed_coordinator_mid_scale_out() {
    coordinator_failover(Fault::Kill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_group_survives_a_graceful_coordinator_restart_mid_scale_out() {
    coordinator_failover(Fault::StopAndRestart).await;
}
