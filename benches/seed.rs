//! The seed scenario on Apache Kafka 3.6.2 with its real group defaults (issue 12): kgroup,
//! librdkafka (the `rdkafka` crate, the seed's failing client) and the Java reference client
//! (`kafka-clients` 3.6.2) side by side in one run, on one broker, each on every schedule and
//! processing time; writes `benches/SEED-KAFKA36.md` and prints its summary table.
//!
//! `KGROUP_SEED_BROKER=kafka40|kafka44` runs it on Kafka 4.0.2 or 4.4.0 instead, the Java
//! members then on that release's own `kafka-clients` (`integration/kafka4/java/GroupMember.java`),
//! and `KGROUP_SEED_GROUP_PROTOCOL=consumer` makes every client's members use KIP-848's consumer
//! protocol (`group.protocol=consumer`); the results go to `benches/SEED-KAFKA44-CONSUMER.md` and
//! the like.
//!
//! ```sh
//! cargo bench --bench seed --features embedded-broker
//! ```
//!
//! Per run: a fresh 72-partition topic and group, messages produced up front and throughout,
//! members started on the schedule, each processing batches of up to 1000 messages and
//! committing each synchronously (`benches/shared/seed_run.rs`); then what the members reported
//! is judged against each other and the broker's log (`benches/shared/seed_analysis.rs`).
//! kgroup members are tasks of this process, librdkafka members `BaseConsumer` threads, Java
//! members one JVM each (`integration/kafka36/java/GroupMember.java`, or on Kafka 4
//! `integration/kafka4/java/GroupMember.java`, compiled with `javac`).
//!
//! Sizes (defaults are the issue's): `KGROUP_SEED_MEMBERS` (30), `KGROUP_SEED_SCHEDULES` (`a,b,c`),
//! `KGROUP_SEED_CLIENTS` (`kgroup,librdkafka,java`), `KGROUP_SEED_PROCESSING_MS` (`0,200`),
//! `KGROUP_SEED_TAIL_S` (10: processing once the group is stable with every member),
//! `KGROUP_SEED_EVERY_S` (8: schedule (b)'s interval), `KGROUP_SEED_INITIAL` (72000 messages up
//! front), `KGROUP_SEED_RATE` (10000 messages/s while the members run),
//! `KGROUP_SEED_BATCH_WAIT_MS` (1000: how long a kgroup or librdkafka batch keeps reading after
//! its first read, see `RdPace`), `KGROUP_SEED_BROKER` (`kafka36`), `KGROUP_SEED_GROUP_PROTOCOL`
//! (`classic`), `KGROUP_SEED_OUT` (the results file). This measures; it asserts nothing (`integration/tests/seed_kafka36.rs` does,
//! for kgroup at CI size).

#[path = "shared/java.rs"]
mod java;
#[path = "shared/machine.rs"]
mod machine;
#[path = "shared/seed_run.rs"]
mod seed_run;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use java::{java_binary, java_version};
use kgroup::embedded::die_with_parent;
use kgroup::embedded::kafka36::{java_peer_classpath_of, Kafka36Cluster, Kafka36Options, KafkaRelease};
use machine::{loadavg, machine};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, RebalanceProtocol};
use rdkafka::error::KafkaResult;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use seed_run::analysis::{
    analyze, broker_timeline, ranges, Analysis, CommitError, Member, Outcome, Partition, PartitionCommit, Protocol,
    Stabilized, Stamp, What,
};
use seed_run::{
    now_ms, run, BoxError, Client, KgroupClient, Recorder, RunRecord, RunSpec, Schedule, BATCH_SIZE, CONSUMER_SETTINGS,
};
use tokio::io::{AsyncBufReadExt, BufReader};

const PARTITIONS: i32 = 72;
/// Processing after each stable step of schedules (a) and (c), as the demo does.
const STEADY: Duration = Duration::from_millis(500);
const STABLE_TIMEOUT: Duration = Duration::from_secs(180);
const DRAIN_TIMEOUT: Duration = Duration::from_secs(180);
/// Bound on one whole run; its members are stopped when it passes.
const RUN_TIMEOUT: Duration = Duration::from_secs(1200);
/// A client JVM that fits 30 of them on 2 cores: small heap, serial collector, C1 only.
const JVM_FLAGS: &[&str] =
    &["-Xms32m", "-Xmx96m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Xss512k", "-Djava.awt.headless=true"];
/// A Java member stops on its own after this long should the harness not stop it.
const JAVA_MAX_SECONDS: &str = "1800";
const JAVA_RANGE: &str = "org.apache.kafka.clients.consumer.RangeAssignor";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientKind {
    Kgroup,
    Librdkafka,
    Java,
}

impl ClientKind {
    const ALL: [ClientKind; 3] = [ClientKind::Kgroup, ClientKind::Librdkafka, ClientKind::Java];

    fn name(self) -> &'static str {
        match self {
            ClientKind::Kgroup => "kgroup",
            ClientKind::Librdkafka => "librdkafka",
            ClientKind::Java => "java",
        }
    }
}

/// The group protocol librdkafka's and the Java client's members use (`group.protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GroupProtocol {
    Classic,
    /// KIP-848's consumer protocol.
    Consumer,
}

/// The run's sizes, from the environment.
#[derive(Debug, Clone)]
struct Sizes {
    release: KafkaRelease,
    group_protocol: GroupProtocol,
    members: usize,
    schedules: Vec<Schedule>,
    clients: Vec<ClientKind>,
    processing: Vec<Duration>,
    tail: Duration,
    initial: usize,
    rate: usize,
    /// kgroup and librdkafka: how long a batch keeps polling for more after its first read.
    batch_wait: Duration,
    out: PathBuf,
    /// The command that reproduces these sizes.
    command: String,
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn number(name: &str, default: &str) -> Result<usize, BoxError> {
    let value = env_or(name, default);
    value.trim().parse().map_err(|_| format!("{name}={value}: not a whole number").into())
}

fn sizes() -> Result<Sizes, BoxError> {
    let members = number("KGROUP_SEED_MEMBERS", "30")?;
    if !(2..=PARTITIONS as usize).contains(&members) {
        return Err(format!("KGROUP_SEED_MEMBERS={members}: 2 to {PARTITIONS}").into());
    }
    let every = Duration::from_secs(number("KGROUP_SEED_EVERY_S", "8")? as u64);
    let list = |name: &str, default: &str| -> Vec<String> {
        env_or(name, default).split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect()
    };
    let schedules = list("KGROUP_SEED_SCHEDULES", "a,b,c")
        .iter()
        .map(|s| match s.as_str() {
            "a" => Ok(Schedule::OneAtATime),
            "b" => Ok(Schedule::Autoscaler { every }),
            "c" => Ok(Schedule::Burst),
            other => Err(format!("KGROUP_SEED_SCHEDULES: unknown schedule {other:?} (a, b, c)")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let clients = list("KGROUP_SEED_CLIENTS", "kgroup,librdkafka,java")
        .iter()
        .map(|c| {
            ClientKind::ALL
                .into_iter()
                .find(|k| k.name() == c)
                .ok_or_else(|| format!("KGROUP_SEED_CLIENTS: unknown client {c:?} (kgroup, librdkafka, java)"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let processing = list("KGROUP_SEED_PROCESSING_MS", "0,200")
        .iter()
        .map(|p| p.parse().map(Duration::from_millis).map_err(|_| format!("KGROUP_SEED_PROCESSING_MS: {p:?}")))
        .collect::<Result<Vec<_>, _>>()?;
    if schedules.is_empty() || clients.is_empty() || processing.is_empty() {
        return Err("nothing to run: KGROUP_SEED_SCHEDULES, _CLIENTS and _PROCESSING_MS need a value each".into());
    }
    let release = match env_or("KGROUP_SEED_BROKER", "kafka36").as_str() {
        "kafka36" => KafkaRelease::Kafka36,
        "kafka40" => KafkaRelease::Kafka40,
        "kafka44" => KafkaRelease::Kafka44,
        other => return Err(format!("KGROUP_SEED_BROKER: unknown broker {other:?} (kafka36, kafka40, kafka44)").into()),
    };
    let group_protocol = match env_or("KGROUP_SEED_GROUP_PROTOCOL", "classic").as_str() {
        "classic" => GroupProtocol::Classic,
        "consumer" if release == KafkaRelease::Kafka36 => {
            return Err("KGROUP_SEED_GROUP_PROTOCOL=consumer needs a Kafka 4 broker (KGROUP_SEED_BROKER)".into())
        }
        "consumer" => GroupProtocol::Consumer,
        other => return Err(format!("KGROUP_SEED_GROUP_PROTOCOL: {other:?} (classic, consumer)").into()),
    };
    let file = match (release, group_protocol) {
        (KafkaRelease::Kafka36, _) => "SEED-KAFKA36.md".to_owned(),
        (release, protocol) => format!(
            "SEED-KAFKA{}-{}.md",
            release.version().split('.').take(2).collect::<String>(),
            if protocol == GroupProtocol::Consumer { "CONSUMER" } else { "CLASSIC" }
        ),
    };
    let out = std::env::var_os("KGROUP_SEED_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("benches").join(file));
    let knobs = [
        "KGROUP_SEED_MEMBERS",
        "KGROUP_SEED_SCHEDULES",
        "KGROUP_SEED_CLIENTS",
        "KGROUP_SEED_PROCESSING_MS",
        "KGROUP_SEED_TAIL_S",
        "KGROUP_SEED_EVERY_S",
        "KGROUP_SEED_INITIAL",
        "KGROUP_SEED_RATE",
        "KGROUP_SEED_BATCH_WAIT_MS",
        "KGROUP_SEED_BROKER",
        "KGROUP_SEED_GROUP_PROTOCOL",
    ];
    let set: Vec<String> = knobs.iter().filter_map(|k| std::env::var(k).ok().map(|v| format!("{k}={v}"))).collect();
    let command = format!(
        "{}cargo bench --bench seed --features embedded-broker",
        set.iter().map(|s| format!("{s} ")).collect::<String>()
    );
    Ok(Sizes {
        release,
        group_protocol,
        members,
        schedules,
        clients,
        processing,
        tail: Duration::from_secs(number("KGROUP_SEED_TAIL_S", "10")? as u64),
        initial: number("KGROUP_SEED_INITIAL", "72000")?,
        rate: number("KGROUP_SEED_RATE", "10000")?,
        batch_wait: Duration::from_millis(number("KGROUP_SEED_BATCH_WAIT_MS", "1000")? as u64),
        out,
        command,
    })
}

fn main() -> Result<(), BoxError> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(seed())
}

/// One client on one schedule with one processing time.
struct RunResult {
    client: ClientKind,
    schedule: Schedule,
    processing: Duration,
    wall: Duration,
    load: (String, String),
    outcome: Result<(RunRecord, Analysis), String>,
}

async fn seed() -> Result<(), BoxError> {
    let sizes = sizes()?;
    let version = sizes.release.version();
    eprintln!("seed on Kafka {version}: {sizes:?}");
    let java = if sizes.clients.contains(&ClientKind::Java) { Some(JavaSetup::new(sizes.release)?) } else { None };
    let kafka = Kafka36Cluster::start(Kafka36Options { release: sizes.release, ..Default::default() }).await?;
    let consumer_groups = match sizes.release {
        KafkaRelease::Kafka36 => "",
        _ => ", group.consumer.heartbeat.interval.ms = 5000, group.consumer.session.timeout.ms = 45000",
    };
    let broker = format!(
        "Apache Kafka {version} (KRaft, one node, 127.0.0.1, from Maven Central), \
         group.initial.rebalance.delay.ms = 3000, group.min.session.timeout.ms = 6000{consumer_groups} \
         (Kafka's defaults)"
    );
    let facts = machine(vec![("broker", broker), ("Java", java_version())]);
    let started = Instant::now();
    let load_at_start = loadavg();
    let mut results = Vec::new();
    for &schedule in &sizes.schedules {
        for &processing in &sizes.processing {
            for &client in &sizes.clients {
                let result = one_run(&kafka, &sizes, client, schedule, processing, java.as_ref(), results.len()).await;
                eprintln!("{}", summary_row(&result));
                results.push(result);
            }
        }
    }
    let total = started.elapsed();
    let markdown = results_markdown(&sizes, &facts, &results, total, (&load_at_start, &loadavg()));
    std::fs::write(&sizes.out, &markdown)?;
    println!("{}", summary_table(&results));
    println!("written to {} ({:.0} s)", sizes.out.display(), total.as_secs_f64());
    if let Some(java) = java {
        java.remove_logs_unless(results.iter().any(|r| r.outcome.is_err()));
    }
    Ok(())
}

async fn one_run(
    kafka: &Kafka36Cluster,
    sizes: &Sizes,
    client: ClientKind,
    schedule: Schedule,
    processing: Duration,
    java: Option<&JavaSetup>,
    n: usize,
) -> RunResult {
    let letter = match schedule {
        Schedule::OneAtATime => "a",
        Schedule::Autoscaler { .. } => "b",
        Schedule::Burst => "c",
    };
    let id = format!("{letter}-{}-{}ms-{}-{n}", client.name(), processing.as_millis(), std::process::id());
    let spec = RunSpec {
        bootstrap: kafka.bootstrap(),
        topic: format!("seed-{id}"),
        group: format!("seed-group-{id}"),
        partitions: PARTITIONS,
        members: sizes.members,
        schedule,
        initial_messages: sizes.initial,
        produce_rate: sizes.rate,
        steady: STEADY,
        tail: sizes.tail,
        stable_timeout: STABLE_TIMEOUT,
        drain_timeout: DRAIN_TIMEOUT,
        member_epochs: sizes.group_protocol == GroupProtocol::Consumer,
    };
    let began = Instant::now();
    let progress = |what: &str| eprintln!("[{id} +{:.1}s] {what}", began.elapsed().as_secs_f64());
    let load_before = loadavg();
    let recorder = Arc::new(Recorder::default());
    let record = tokio::time::timeout(RUN_TIMEOUT, async {
        match client {
            ClientKind::Kgroup => {
                let mut client = KgroupClient::new(&spec, processing, sizes.batch_wait, recorder.clone());
                run(&spec, &mut client, &recorder, &progress).await
            }
            ClientKind::Librdkafka => {
                let mut client =
                    RdClient::new(&spec, sizes.group_protocol, processing, sizes.batch_wait, recorder.clone());
                run(&spec, &mut client, &recorder, &progress).await
            }
            ClientKind::Java => match java {
                Some(setup) => {
                    let mut client = JavaClient::new(setup, &spec, sizes.group_protocol, processing, recorder.clone());
                    run(&spec, &mut client, &recorder, &progress).await
                }
                None => Err("the Java client is not set up".into()),
            },
        }
    })
    .await;
    let wall = began.elapsed();
    let load = (load_before, loadavg());
    let outcome = match record {
        Err(_) => Err(format!("did not finish within {RUN_TIMEOUT:?}")),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(record)) => judge(kafka, &spec, sizes.group_protocol, record),
    };
    RunResult { client, schedule, processing, wall, load, outcome }
}

fn judge(
    kafka: &Kafka36Cluster,
    spec: &RunSpec,
    group_protocol: GroupProtocol,
    record: RunRecord,
) -> Result<(RunRecord, Analysis), String> {
    let log = kafka.log(1).map_err(|e| e.to_string())?;
    let timeline = broker_timeline(&log, &spec.group, &spec.topic, record.topic_created_ms)
        .ok_or("the broker's log has no CreateTopics line for the topic")?;
    // KIP-848 groups log no `Stabilized` lines: their commits are judged by time.
    let protocol = match group_protocol {
        GroupProtocol::Classic => Protocol::Eager,
        GroupProtocol::Consumer => Protocol::Consumer,
    };
    let mut analysis = analyze(&record.events, &record.log_end, &timeline, protocol, record.end_ms);
    if group_protocol == GroupProtocol::Consumer {
        analysis.final_generation = stable_by_callbacks(&record, spec.members, spec.partitions);
    }
    Ok((record, analysis))
}

/// KIP-848 groups log no `Stabilized` line: when the group last became stable by the members'
/// own callbacks before processing ended (every member holding some partitions, every partition
/// held once), with the highest member epoch then and the member count.
fn stable_by_callbacks(record: &RunRecord, members: usize, partitions: i32) -> Option<Stabilized> {
    let mut holding: BTreeMap<Member, (i32, BTreeSet<Partition>)> = BTreeMap::new();
    let mut stable = None;
    for event in record.events.iter().filter(|e| e.at_ms <= record.end_ms) {
        match &event.what {
            What::Assigned { generation, partitions, incremental } => {
                let (epoch, held) = holding.entry(event.member).or_default();
                *epoch = *generation;
                if !incremental {
                    held.clear();
                }
                held.extend(partitions.iter().copied());
            }
            What::Revoked { partitions, .. } | What::Lost { partitions } => {
                let (_, held) = holding.entry(event.member).or_default();
                for p in partitions {
                    held.remove(p);
                }
            }
            What::Batch { .. } | What::Commit { .. } => continue,
        }
        let held = holding.values().map(|(_, held)| held.len()).sum::<usize>();
        let covered: BTreeSet<Partition> = holding.values().flat_map(|(_, held)| held.iter().copied()).collect();
        let every_member = holding.len() == members && holding.values().all(|(_, held)| !held.is_empty());
        if every_member && held == partitions as usize && covered.len() == held {
            let generation = holding.values().map(|(epoch, _)| *epoch).max().unwrap_or(-1);
            stable.get_or_insert(Stabilized { at_ms: event.at_ms, generation, members });
        } else {
            stable = None;
        }
    }
    stable
}

// ---------------------------------------------------------------------------------------------
// librdkafka: `BaseConsumer` members, one thread each.

/// The member's generation as librdkafka's group thread holds it now (`-1`: none).
///
/// `rd_kafka_consumer_group_metadata` is answered by the group thread from its op queue, the
/// queue commits go through too (`rd_kafka_commit` enqueues on `rkcg_ops`), and that thread
/// stamps each OffsetCommit with its generation when it serves the commit. Read just before and
/// just after a synchronous commit, the two values bracket the generation the commit carried; a
/// generation never comes back once left (a reset is -1, a rejoin a higher one).
fn rd_generation<C: ConsumerContext>(consumer: &BaseConsumer<C>) -> i32 {
    // SAFETY: the handle is valid while `consumer` lives; the metadata object is ours, read
    // through librdkafka's accessor and destroyed here.
    unsafe {
        let metadata = rdkafka::bindings::rd_kafka_consumer_group_metadata(consumer.client().native_ptr());
        if metadata.is_null() {
            return -1;
        }
        let generation = rdkafka::bindings::rd_kafka_consumer_group_metadata_generation_id(metadata);
        rdkafka::bindings::rd_kafka_consumer_group_metadata_destroy(metadata);
        generation
    }
}

/// Reports the rebalance callbacks. Read before `assign`/`unassign` is called, the generation is
/// the assignment's: librdkafka's group state machine waits for that call before it rejoins.
/// Nothing is read once the member stops: a terminating group thread drops metadata requests
/// unanswered.
struct RdContext {
    member: Member,
    recorder: Arc<Recorder>,
    stop: Arc<AtomicBool>,
}

impl ClientContext for RdContext {}

impl ConsumerContext for RdContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if self.stop.load(Ordering::SeqCst) {
            return;
        }
        let partitions = |tpl: &TopicPartitionList| tpl.elements().iter().map(|e| e.partition()).collect();
        let generation = rd_generation(consumer);
        // KIP-848 (and cooperative assignors) name only the partitions added.
        let incremental = matches!(consumer.rebalance_protocol(), RebalanceProtocol::Cooperative);
        let what = match rebalance {
            Rebalance::Assign(tpl) => What::Assigned { generation, partitions: partitions(tpl), incremental },
            Rebalance::Revoke(tpl) if consumer.assignment_lost() => What::Lost { partitions: partitions(tpl) },
            Rebalance::Revoke(tpl) => What::Revoked { generation, partitions: partitions(tpl) },
            Rebalance::Error(e) => {
                self.recorder.problem(format!("librdkafka member {}: rebalance error {e}", self.member));
                return;
            }
        };
        self.recorder.record(self.member, now_ms(), what);
    }
}

struct RdClient {
    bootstrap: String,
    group: String,
    protocol: GroupProtocol,
    topic: String,
    processing: Duration,
    batch_wait: Duration,
    recorder: Arc<Recorder>,
    stop: Arc<AtomicBool>,
    members: Vec<JoinHandle<Result<(), String>>>,
}

impl RdClient {
    fn new(
        spec: &RunSpec,
        protocol: GroupProtocol,
        processing: Duration,
        batch_wait: Duration,
        recorder: Arc<Recorder>,
    ) -> RdClient {
        RdClient {
            bootstrap: spec.bootstrap.clone(),
            group: spec.group.clone(),
            protocol,
            topic: spec.topic.clone(),
            processing,
            batch_wait,
            recorder,
            stop: Arc::default(),
            members: Vec::new(),
        }
    }
}

/// Settings the broker owns under KIP-848: librdkafka and the Java client refuse them with
/// `group.protocol=consumer` (so does Java `partition.assignment.strategy`: the broker assigns).
const BROKER_SIDE_UNDER_KIP848: &[&str] = &["session.timeout.ms", "heartbeat.interval.ms"];

/// librdkafka's properties: the common ones it has (not `max.poll.records`), the range assignor;
/// under KIP-848 the broker's assignor and session instead.
fn rd_config(bootstrap: &str, group: &str, member: Member, protocol: GroupProtocol) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .set("group.id", group)
        .set("client.id", format!("seed-librdkafka-{member}"));
    match protocol {
        GroupProtocol::Classic => config.set("partition.assignment.strategy", "range"),
        GroupProtocol::Consumer => config.set("group.protocol", "consumer"),
    };
    let skipped = |key: &str| {
        key == "max.poll.records" || (protocol == GroupProtocol::Consumer && BROKER_SIDE_UNDER_KIP848.contains(&key))
    };
    for (key, value) in CONSUMER_SETTINGS.iter().filter(|(k, _)| !skipped(k)) {
        config.set(*key, *value);
    }
    config
}

impl Client for RdClient {
    async fn add_member(&mut self, member: Member) -> Result<(), BoxError> {
        let consumer: BaseConsumer<RdContext> = rd_config(&self.bootstrap, &self.group, member, self.protocol)
            .create_with_context(RdContext { member, recorder: self.recorder.clone(), stop: self.stop.clone() })?;
        consumer.subscribe(&[&self.topic])?;
        let pace = RdPace { processing: self.processing, batch_wait: self.batch_wait };
        let (topic, recorder, stop) = (self.topic.clone(), self.recorder.clone(), self.stop.clone());
        self.members.push(std::thread::spawn(move || rd_member(member, &consumer, &topic, pace, &recorder, &stop)));
        Ok(())
    }

    fn check(&mut self) -> Result<(), BoxError> {
        match self.members.iter().position(JoinHandle::is_finished) {
            Some(member) => Err(format!("librdkafka member {member} stopped on its own").into()),
            None => Ok(()),
        }
    }

    async fn stop(&mut self) -> Result<(), BoxError> {
        self.stop.store(true, Ordering::SeqCst);
        let threads = std::mem::take(&mut self.members);
        let joined = tokio::task::spawn_blocking(move || {
            threads.into_iter().map(|t| t.join().unwrap_or_else(|_| Err("panicked".into()))).collect::<Vec<_>>()
        });
        let results = tokio::time::timeout(Duration::from_secs(120), joined)
            .await
            .map_err(|_| "librdkafka members did not close within 120 s")??;
        let errors: Vec<String> = results.into_iter().filter_map(Result::err).collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(format!("librdkafka members failed: {errors:?}").into())
        }
    }
}

impl Drop for RdClient {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// How a librdkafka member takes and processes its batches.
#[derive(Debug, Clone, Copy)]
struct RdPace {
    processing: Duration,
    /// After a batch's first message, how long to keep polling for up to 1000: librdkafka's
    /// batch calls wait for the batch to fill or a timeout (`rd_kafka_consume_batch_queue`,
    /// confluent-kafka's `consume(num_messages=1000, timeout=1.0)`), the shape of the seed's
    /// batches of 1000. 0 takes what the local queue holds (`scaleout`'s loop).
    batch_wait: Duration,
}

/// A batch: up to 1000 messages (the first poll waits 200 ms, the rest at most `batch_wait`
/// after the first message); then the processing time, then a synchronous commit of each
/// partition's last offset + 1.
fn rd_member(
    member: Member,
    consumer: &BaseConsumer<RdContext>,
    topic: &str,
    pace: RdPace,
    recorder: &Recorder,
    stop: &AtomicBool,
) -> Result<(), String> {
    let mut polled: Vec<(i32, i64)> = Vec::with_capacity(BATCH_SIZE);
    while !stop.load(Ordering::SeqCst) {
        polled.clear();
        let mut gather_until: Option<Instant> = None;
        while polled.len() < BATCH_SIZE {
            let timeout = match gather_until {
                None => Duration::from_millis(200),
                Some(until) => until.saturating_duration_since(Instant::now()),
            };
            match consumer.poll(timeout) {
                Some(Ok(message)) => {
                    polled.push((message.partition(), message.offset()));
                    gather_until.get_or_insert_with(|| Instant::now() + pace.batch_wait);
                }
                Some(Err(e)) => {
                    recorder.problem(format!("librdkafka member {member}: {e}"));
                    break;
                }
                None => break,
            }
        }
        if polled.is_empty() {
            continue;
        }
        let batch = recorder.batch(member, now_ms(), rd_generation(consumer), ranges(polled.iter().copied()));
        if !pace.processing.is_zero() {
            std::thread::sleep(pace.processing);
        }
        let mut next: BTreeMap<i32, i64> = BTreeMap::new();
        for &(partition, offset) in &polled {
            let n = next.entry(partition).or_default();
            *n = (*n).max(offset + 1);
        }
        let mut tpl = TopicPartitionList::new();
        for (&partition, &offset) in &next {
            tpl.add_partition_offset(topic, partition, Offset::Offset(offset)).map_err(|e| e.to_string())?;
        }
        let before = rd_generation(consumer);
        let sent_ms = now_ms();
        let result = consumer.commit(&tpl, CommitMode::Sync);
        let stamp = Stamp::Between(before, rd_generation(consumer));
        let outcome = rd_outcome(&result);
        let partitions = next
            .into_iter()
            .map(|(partition, offset)| PartitionCommit { partition, offset, stamp, outcome: outcome.clone() })
            .collect();
        recorder.record(member, now_ms(), What::Commit { batch, sent_ms, partitions });
    }
    Ok(())
}

fn rd_outcome(result: &KafkaResult<()>) -> Outcome {
    let Err(e) = result else { return Outcome::Committed };
    Outcome::Failed(match e.rdkafka_error_code() {
        Some(RDKafkaErrorCode::IllegalGeneration) => CommitError::IllegalGeneration,
        Some(RDKafkaErrorCode::RebalanceInProgress) => CommitError::RebalanceInProgress,
        Some(RDKafkaErrorCode::UnknownMemberId) => CommitError::UnknownMemberId,
        Some(code) => CommitError::Other(format!("{code:?}")),
        None => CommitError::Other(e.to_string()),
    })
}

// ---------------------------------------------------------------------------------------------
// Java: `GroupMember` processes, one JVM each.

/// The compiled Java member and where its JVMs log.
struct JavaSetup {
    java: PathBuf,
    classpath: String,
    dir: PathBuf,
    /// The JVM option that points the client's logging at its file (warnings to stderr).
    logging: String,
}

impl JavaSetup {
    /// The member for `release`'s own `kafka-clients`: 3.6.2 logs with log4j 1 (reload4j),
    /// Kafka 4's with log4j 2, whose default would print errors to stdout, the member's lines.
    fn new(release: KafkaRelease) -> Result<JavaSetup, BoxError> {
        let classpath = java_peer_classpath_of(release)?;
        let dir = std::env::temp_dir().join(format!("kgroup-seed-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let (file, text, option) = match release {
            KafkaRelease::Kafka36 => (
                "log4j.properties",
                "log4j.rootLogger=WARN, stderr\n\
                 log4j.appender.stderr=org.apache.log4j.ConsoleAppender\n\
                 log4j.appender.stderr.layout=org.apache.log4j.PatternLayout\n\
                 log4j.appender.stderr.layout.ConversionPattern=[%d] %p %m (%c)%n\n\
                 log4j.appender.stderr.Target=System.err\n",
                "-Dlog4j.configuration=file:",
            ),
            _ => (
                "log4j2.properties",
                "appender.stderr.type=Console\n\
                 appender.stderr.name=STDERR\n\
                 appender.stderr.target=SYSTEM_ERR\n\
                 appender.stderr.layout.type=PatternLayout\n\
                 appender.stderr.layout.pattern=[%d] %p %m (%c)%n\n\
                 rootLogger.level=WARN\n\
                 rootLogger.appenderRef.stderr.ref=STDERR\n",
                "-Dlog4j2.configurationFile=",
            ),
        };
        let path = dir.join(file);
        std::fs::write(&path, text)?;
        Ok(JavaSetup { java: java_binary(), classpath, dir, logging: format!("{option}{}", path.display()) })
    }

    fn remove_logs_unless(self, keep: bool) {
        if keep {
            eprintln!("Java members' logs kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

struct JavaClient<'a> {
    setup: &'a JavaSetup,
    spec: RunSpec,
    protocol: GroupProtocol,
    processing: Duration,
    recorder: Arc<Recorder>,
    members: Vec<JavaProcess>,
}

struct JavaProcess {
    child: tokio::process::Child,
    stdin: Option<tokio::process::ChildStdin>,
    reader: tokio::task::JoinHandle<()>,
    log: PathBuf,
}

impl<'a> JavaClient<'a> {
    fn new(
        setup: &'a JavaSetup,
        spec: &RunSpec,
        protocol: GroupProtocol,
        processing: Duration,
        recorder: Arc<Recorder>,
    ) -> JavaClient<'a> {
        JavaClient { setup, spec: spec.clone(), protocol, processing, recorder, members: Vec::new() }
    }

    /// `GroupMember`'s properties: the common ones and the range assignor; under KIP-848 the
    /// group protocol instead, and the broker's assignor and session.
    fn properties(&self, member: Member) -> Vec<String> {
        let mut properties = vec![format!("client.id=seed-java-{member}")];
        properties.push(match self.protocol {
            GroupProtocol::Classic => format!("partition.assignment.strategy={JAVA_RANGE}"),
            GroupProtocol::Consumer => "group.protocol=consumer".to_owned(),
        });
        let skipped = |key: &str| self.protocol == GroupProtocol::Consumer && BROKER_SIDE_UNDER_KIP848.contains(&key);
        properties.extend(CONSUMER_SETTINGS.iter().filter(|(k, _)| !skipped(k)).map(|(k, v)| format!("{k}={v}")));
        properties
    }
}

impl Client for JavaClient<'_> {
    async fn add_member(&mut self, member: Member) -> Result<(), BoxError> {
        let log = self.setup.dir.join(format!("{}-{member}.log", self.spec.group));
        let mut command = std::process::Command::new(&self.setup.java);
        command
            .args(JVM_FLAGS)
            .arg(&self.setup.logging)
            .arg("-cp")
            .arg(&self.setup.classpath)
            .arg("GroupMember")
            .args([&self.spec.bootstrap, &self.spec.group, &self.spec.topic])
            .arg(self.processing.as_millis().to_string())
            .arg(JAVA_MAX_SECONDS)
            .args(self.properties(member))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log)?);
        die_with_parent(&mut command);
        let mut command = tokio::process::Command::from(command);
        command.kill_on_drop(true);
        let mut child = command.spawn()?;
        let stdout = child.stdout.take().ok_or("the Java member has no stdout")?;
        let stdin = child.stdin.take();
        // Under KIP-848 `onPartitionsAssigned` names only the partitions added.
        let incremental = self.protocol == GroupProtocol::Consumer;
        let reader = tokio::spawn(read_java_member(member, incremental, stdout, self.recorder.clone()));
        self.members.push(JavaProcess { child, stdin, reader, log });
        Ok(())
    }

    fn check(&mut self) -> Result<(), BoxError> {
        for (member, process) in self.members.iter_mut().enumerate() {
            if let Some(status) = process.child.try_wait()? {
                return Err(format!("Java member {member} exited ({status}); see {}", process.log.display()).into());
            }
        }
        Ok(())
    }

    async fn stop(&mut self) -> Result<(), BoxError> {
        // A closed standard input makes each member close its consumer (LeaveGroup) and exit.
        for process in &mut self.members {
            process.stdin.take();
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        let mut killed = Vec::new();
        for (member, mut process) in self.members.drain(..).enumerate() {
            match tokio::time::timeout_at(deadline, process.child.wait()).await {
                Ok(Ok(status)) if status.success() => {}
                Ok(Ok(status)) => killed.push(format!("member {member} exited with {status}")),
                Ok(Err(e)) => killed.push(format!("member {member}: {e}")),
                Err(_) => {
                    let _ = process.child.kill().await;
                    killed.push(format!("member {member} killed after 120 s"));
                }
            }
            let _ = tokio::time::timeout(Duration::from_secs(5), process.reader).await;
        }
        if killed.is_empty() {
            Ok(())
        } else {
            Err(format!("Java members did not close cleanly: {killed:?}").into())
        }
    }
}

async fn read_java_member(
    member: Member,
    incremental: bool,
    stdout: tokio::process::ChildStdout,
    recorder: Arc<Recorder>,
) {
    let mut lines = BufReader::new(stdout).lines();
    let mut reader = JavaLines { member, incremental, batch: None, sent_ms: 0 };
    while let Ok(Some(line)) = lines.next_line().await {
        if let Err(why) = reader.line(&line, &recorder) {
            recorder.problem(format!("Java member {member}: {why}: {line}"));
        }
    }
}

/// Reads `GroupMember`'s lines into the recorder (their format is in `GroupMember.java`).
struct JavaLines {
    member: Member,
    /// Whether `ASSIGNED` names the partitions added (KIP-848) rather than all of them.
    incremental: bool,
    /// The batch handed out last, which the next commit line is about.
    batch: Option<u64>,
    /// When the last `COMMIT_SENT` was printed.
    sent_ms: u64,
}

impl JavaLines {
    fn line(&mut self, line: &str, recorder: &Recorder) -> Result<(), &'static str> {
        let mut words = line.split_whitespace();
        let at_ms: u64 = words.next().and_then(|w| w.parse().ok()).ok_or("no time")?;
        let kind = words.next().ok_or("no kind")?;
        let mut generation =
            || -> Result<i32, &'static str> { words.next().and_then(|w| w.parse().ok()).ok_or("no generation") };
        match kind {
            "STARTED" | "CLOSED" => {}
            "ASSIGNED" | "REVOKED" | "LOST" => {
                let generation = generation()?;
                let _member_id = words.next().ok_or("no member id")?;
                let list = words.next().ok_or("no partitions")?;
                let partitions = if list == "-" {
                    Vec::new()
                } else {
                    list.split(',').map(|p| p.parse().map_err(|_| "bad partition")).collect::<Result<_, _>>()?
                };
                let what = match kind {
                    "ASSIGNED" => What::Assigned { generation, partitions, incremental: self.incremental },
                    "REVOKED" => What::Revoked { generation, partitions },
                    _ => What::Lost { partitions },
                };
                recorder.record(self.member, at_ms, what);
            }
            "BATCH" => {
                let generation = generation()?;
                let ranges = words
                    .map(|w| {
                        let (p, range) = w.split_once(':')?;
                        let (first, last) = range.split_once('-')?;
                        Some((p.parse().ok()?, first.parse().ok()?, last.parse().ok()?))
                    })
                    .collect::<Option<Vec<_>>>()
                    .ok_or("bad range")?;
                self.batch = Some(recorder.batch(self.member, at_ms, generation, ranges));
            }
            "COMMIT_SENT" => self.sent_ms = at_ms,
            "COMMIT_OK" | "COMMIT_FAIL" => {
                let generation = generation()?;
                let outcome = match (kind, words.next()) {
                    ("COMMIT_OK", _) => Outcome::Committed,
                    (_, Some("NOT_SENT")) => Outcome::NotSent("Java: not part of an active group".into()),
                    (_, Some(cause)) => Outcome::Failed(CommitError::from_name(cause)),
                    (_, None) => return Err("no cause"),
                };
                let offsets = words
                    .map(|w| {
                        let (p, o) = w.split_once(':')?;
                        Some((p.parse().ok()?, o.parse().ok()?))
                    })
                    .collect::<Option<Vec<(i32, i64)>>>()
                    .ok_or("bad offset")?;
                let batch = self.batch.take().ok_or("a commit without a batch")?;
                // The request carries the generation read before commitSync (classic; under KIP-848 the
                // epoch then, not checked: see GroupMember.java).
                let partitions = offsets
                    .into_iter()
                    .map(|(partition, offset)| PartitionCommit {
                        partition,
                        offset,
                        stamp: Stamp::Exact(generation),
                        outcome: outcome.clone(),
                    })
                    .collect();
                recorder.record(self.member, at_ms, What::Commit { batch, sent_ms: self.sent_ms, partitions });
            }
            _ => return Err("unknown line"),
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// The results.

/// Seconds from the last member's start to the group's last `Stabilized` line of the run (KIP-848:
/// to when the members' callbacks last made it stable, `stable_by_callbacks`).
fn time_to_final_stable(record: &RunRecord, analysis: &Analysis) -> Option<f64> {
    analysis.final_generation.map(|g| (g.at_ms as f64 - record.last_member_ms as f64) / 1000.0)
}

const SUMMARY_HEADER: &str = "| client | schedule | processing | commit calls | failed: ILLEGAL_GENERATION \
    | REBALANCE_IN_PROGRESS | UNKNOWN_MEMBER_ID | other | refused before sending | partition offsets committed \
    | not-owner commits | revoke-window commits (safe) | processed twice (of committed batches) | lost \
    | time to final stable (s) | final generation (members) |\n\
    |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";

fn summary_row(r: &RunResult) -> String {
    let head = format!("| {} | {} | {} ms", r.client.name(), r.schedule.label(), r.processing.as_millis());
    match &r.outcome {
        Err(e) => format!("{head} | run failed: {} |||||||||||||", e.replace('|', "/").replace('\n', " ")),
        Ok((record, a)) => {
            let stable = time_to_final_stable(record, a).map_or("—".into(), |s| format!("{s:.1}"));
            let generation = a.final_generation.map_or("—".into(), |g| format!("{} ({})", g.generation, g.members));
            let drained = if record.drained { "" } else { " (not drained)" };
            format!(
                "{head} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} ({}) | {}{drained} | {stable} | {generation} |",
                a.commit_calls,
                a.failed(&CommitError::IllegalGeneration),
                a.failed(&CommitError::RebalanceInProgress),
                a.failed(&CommitError::UnknownMemberId),
                a.failed_other(),
                a.not_sent(),
                a.partitions_committed,
                a.not_owner.len(),
                a.revoke_window_commits,
                a.duplicates,
                a.duplicates_of_committed,
                a.lost,
            )
        }
    }
}

fn summary_table(results: &[RunResult]) -> String {
    let mut out = SUMMARY_HEADER.to_owned();
    for r in results {
        out.push_str(&summary_row(r));
        out.push('\n');
    }
    out
}

fn details(r: &RunResult, protocol: GroupProtocol) -> String {
    let mut out = format!(
        "### {}, {}, {} ms per batch\n\nWall time {:.1} s, load average {} -> {}.\n\n",
        r.client.name(),
        r.schedule.label(),
        r.processing.as_millis(),
        r.wall.as_secs_f64(),
        r.load.0,
        r.load.1
    );
    let (record, a) = match &r.outcome {
        Ok(done) => done,
        Err(e) => {
            let _ = writeln!(out, "The run failed: {e}\n");
            return out;
        }
    };
    let yes = |b: bool| if b { "yes" } else { "no" };
    let since_first = |ms: u64| (ms as f64 - record.first_member_ms as f64) / 1000.0;
    let _ = writeln!(
        out,
        "- produced {} messages, processed {} times ({} of them a second time: {} whose first processing was \
         in a batch whose commit of that partition succeeded), lost {}; every produced message processed: {}",
        record.produced,
        a.processed,
        a.duplicates,
        a.duplicates_of_committed,
        a.lost,
        yes(record.drained)
    );
    let _ = writeln!(
        out,
        "- last member started {:.1} s after the first; group stable with every member (clients' callbacks) \
         before the tail: {}; final generation {}",
        since_first(record.last_member_ms),
        yes(record.converged),
        a.final_generation.map_or("—".into(), |g| format!(
            "{} with {} members, stabilized {:.1} s after the last member started",
            g.generation,
            g.members,
            (g.at_ms as f64 - record.last_member_ms as f64) / 1000.0
        ))
    );
    let _ = writeln!(
        out,
        "- {} commit calls, {} failed by generation (ILLEGAL_GENERATION, REBALANCE_IN_PROGRESS, \
         UNKNOWN_MEMBER_ID); failed by error: {}; refused before sending: {}",
        a.commit_calls,
        a.failed_by_generation(),
        if a.failed_calls.is_empty() {
            "none".to_owned()
        } else {
            a.failed_calls.iter().map(|(e, n)| format!("{e:?} {n}")).collect::<Vec<_>>().join(", ")
        },
        if a.not_sent_calls.is_empty() {
            "none".to_owned()
        } else {
            a.not_sent_calls.iter().map(|(why, n)| format!("{why} {n}")).collect::<Vec<_>>().join(", ")
        }
    );
    match protocol {
        GroupProtocol::Classic => {
            let _ = writeln!(
                out,
                "- {} partition offsets committed: {} by the partition's owner in the commit's generation, {} by \
                 another member than the owner, {} in a revoke window, {} in a generation without a known owner, {} \
                 whose generation neither the client nor the broker's log pins down",
                a.partitions_committed,
                a.owner_commits,
                a.not_owner.len(),
                a.revoke_window_commits,
                a.unattributed_commits,
                a.unresolved_commits
            );
        }
        GroupProtocol::Consumer => {
            let _ = writeln!(
                out,
                "- {} partition offsets committed: {} by a member that held the partition when it sent the commit, \
                 {} while another member held it, {} after the committing member had given it up and before \
                 another was given it",
                a.partitions_committed,
                a.owner_commits,
                a.not_owner.len(),
                a.unattributed_commits
            );
        }
    }
    let _ = writeln!(
        out,
        "- generations the client reported, checked against the broker's log: {} (contradicted: {})",
        a.stamps_checked, a.stamps_contradicted
    );
    if !a.not_owner.is_empty() {
        let examples: Vec<String> = a
            .not_owner
            .iter()
            .take(10)
            .map(|n| {
                format!(
                    "member {} committed partition {} at {} in generation {} (owner {:?}, {:.1} s after the first member)",
                    n.member,
                    n.partition,
                    n.offset,
                    n.generation,
                    n.owners,
                    since_first(n.at_ms)
                )
            })
            .collect();
        let _ = writeln!(out, "- not-owner commits (first {}): {}", examples.len(), examples.join("; "));
    }
    if !a.incomplete_generations.is_empty() {
        let list: Vec<String> = a
            .incomplete_generations
            .iter()
            .map(|(g, formed, reported)| format!("{g} ({reported} of {formed})"))
            .collect();
        let _ = writeln!(
            out,
            "- generations formed by the broker with members that reported no assignment for them (a rebalance \
             overtook their SyncGroup): {}",
            list.join(", ")
        );
    }
    if !a.ownership_conflicts.is_empty() {
        let _ = writeln!(out, "- partitions two members claimed in one generation: {:?}", a.ownership_conflicts);
    }
    if !record.problems.is_empty() {
        let _ = writeln!(
            out,
            "- problems ({}; first 10): {}",
            record.problems.len(),
            record.problems.iter().take(10).cloned().collect::<Vec<_>>().join("; ")
        );
    }
    out.push('\n');
    out
}

fn results_markdown(
    sizes: &Sizes,
    facts: &[(&'static str, String)],
    results: &[RunResult],
    total: Duration,
    load: (&str, &str),
) -> String {
    let mut out = match sizes.group_protocol {
        GroupProtocol::Classic => format!(
            "# The seed scenario on Kafka {}: kgroup, librdkafka and the Java client\n\n",
            sizes.release.version()
        ),
        GroupProtocol::Consumer => format!(
            "# The seed scenario on Kafka {}: {} on KIP-848's consumer protocol\n\n\
             The members use `group.protocol=consumer` (the broker assigns, `uniform`; session and heartbeat \
             interval are the broker's). Member epochs take the place of generations (the generation columns \
             show the member epoch the client reports), and the broker logs no `Stabilized` line for such a \
             group: a commit counts as the owner's when the committing member's own callbacks say it held the \
             partition when the commit was sent, and as a not-owner commit when another member's did; the time \
             to final stable is when the members' callbacks last made the group stable (every member holding \
             some partitions, every partition held once), with the highest member epoch then.\n\n",
            sizes.release.version(),
            sizes
                .clients
                .iter()
                .map(|c| if *c == ClientKind::Java { "the Java client" } else { c.name() })
                .collect::<Vec<_>>()
                .join(" and ")
        ),
    };
    let _ = writeln!(
        out,
        "Written by `{}` (see `benches/seed.rs`), {:.0} s in all; load average {} at the start, {} at the end. \
         Sizes: 72 partitions, 2 -> {} members, {} messages up front and {} messages/s while the members run, \
         batches of up to {BATCH_SIZE} messages each committed synchronously, {} s of processing once the group \
         is stable with every member, then the producer stops and the members process what is left.\n",
        sizes.command,
        total.as_secs_f64(),
        load.0,
        load.1,
        sizes.members,
        sizes.initial,
        sizes.rate,
        sizes.tail.as_secs()
    );
    out.push_str("| machine | |\n|---|---|\n");
    for (k, v) in facts {
        let _ = writeln!(out, "| {k} | {v} |");
    }
    out.push_str("\n## Summary\n\n");
    out.push_str(&summary_table(results));
    out.push_str(
        "\n- **commit calls**: synchronous commit calls (kgroup: one per batch, a batch is one partition's \
         records; librdkafka and Java: one per batch of up to 1000 messages over several partitions). \
         **failed**: calls the broker (or the client after sending) failed, by error; **refused before \
         sending**: kgroup's generation gate (`Fenced` without a broker answer), Java while it is not part \
         of an active group.\n\
         - **not-owner commits**: partition offsets the broker stored for a member that was not the \
         partition's owner in the generation the commit carried, by every client's own assignment \
         callbacks. Each can move the owner's committed offset. **revoke-window commits**: a cooperative \
         member committing a partition nobody owns until the next generation (safe; none under the range \
         assignor used here).\n\
         - **processed twice**: processings beyond the first, in brackets those whose first processing was in \
         a batch whose commit of that partition succeeded (the commit did not protect them). **lost**: \
         produced offsets nobody processed.\n\
         - **time to final stable**: from starting the last member to the group's last `Stabilized group G \
         generation N` line in the broker's log before processing ended (client-neutral; includes a JVM's \
         start for Java); the final generation and its member count from the same line. Under KIP-848 \
         (no such line) to the members' callback that last made the group stable, and the highest member \
         epoch then.\n",
    );
    out.push_str("\n## Settings\n\n");
    out.push_str("| property | kgroup | librdkafka | Java |\n|---|---|---|---|\n");
    let consumer = sizes.group_protocol == GroupProtocol::Consumer;
    for (key, value) in CONSUMER_SETTINGS {
        let (kgroup, librdkafka, java) = match *key {
            "max.poll.records" => (*value, "— (the member loop stops a batch at 1000 messages)", *value),
            key if consumer && BROKER_SIDE_UNDER_KIP848.contains(&key) => {
                ("— (the broker's)", "— (the broker's)", "— (the broker's)")
            }
            _ => (*value, *value, *value),
        };
        let _ = writeln!(out, "| `{key}` | {kgroup} | {librdkafka} | {java} |");
    }
    if consumer {
        out.push_str("| `group.protocol` | consumer | consumer | consumer |\n");
        out.push_str(
            "| `partition.assignment.strategy` | — (the broker's, `uniform`) | — (the broker's, `uniform`) | — \
             (the broker's, `uniform`) |\n",
        );
    } else {
        let _ = writeln!(out, "| `partition.assignment.strategy` | range | range | {JAVA_RANGE} (eager) |");
    }
    let _ = writeln!(
        out,
        "| a batch | up to 1000 messages over several `poll`s, until {0} ms after the first \
         (`KGROUP_SEED_BATCH_WAIT_MS`), committed together with `commit_leases` | up to 1000 messages, polled \
         until {0} ms after the first | `poll(200 ms)`: what is there, up to 1000 |",
        sizes.batch_wait.as_millis()
    );
    let _ = writeln!(
        out,
        "\nJava members run `java {} -cp <kafka-clients {} and its dependencies> GroupMember`, one JVM each. \
         Each run has a fresh topic and group on the same broker; the clients run one after the other. kgroup \
         members are tasks of this process (several `poll`s gathered into one batch, then \
         `commit_leases` of them all), librdkafka members `BaseConsumer` threads (`commit(&tpl, \
         CommitMode::Sync)`), Java members `poll(200 ms)` then `commitSync(offsets)`. kgroup and librdkafka \
         fill a batch the way librdkafka's batch calls do (`rd_kafka_consume_batch_queue`, confluent-kafka's \
         `consume(num_messages, timeout)`): up to 1000 messages or a timeout after the first, the shape of \
         the seed's batches of 1000, held across reads until they are committed; Java's `poll` hands out \
         what is there.\n",
        JVM_FLAGS.join(" "),
        sizes.release.version()
    );
    out.push_str(
        "## How generations and ownership are measured\n\n\
         - Ownership: each member's assignment callbacks, with the generation the client reports in them \
         (kgroup's `Assigned` event; Java's `groupMetadata().generationId()` in `onPartitionsAssigned`; \
         librdkafka's `rd_kafka_consumer_group_metadata` read in the rebalance callback before \
         `assign`/`unassign`, while its group state machine waits for that call).\n\
         - A commit's generation: kgroup reports it per partition (`Committed { generation }`); Java's \
         `groupMetadata().generationId()` just before `commitSync` (only `poll()` joins a new generation); \
         librdkafka's `rd_kafka_consumer_group_metadata` just before and just after `commit(Sync)`: the \
         metadata request and the commit are served in order by the same group thread, which stamps the \
         commit when it serves it, and a generation never returns once left, so equal values are the stamp. \
         When they differ, the broker's log decides: Kafka 3.6 accepts an OffsetCommit only with the group's \
         current generation (Stable or PreparingRebalance), and generation N begins with its `Stabilized` \
         line, so a successful commit sent and answered between two such lines carried the first one's \
         generation (the log's local time is set against the topic's `CreateTopics` line). The details \
         count the client-reported generations the log contradicts (a check of the method) and the commits \
         nothing pins down.\n",
    );
    if consumer {
        out.push_str(
            "- Under KIP-848 the generation is the member epoch (Java 4.x's `groupMetadata().generationId()`, \
             librdkafka's group metadata), and a commit is judged by when it was sent, against every \
             member's callbacks (which name only the partitions added and revoked); its reported epoch is \
             not checked (Java's background thread stamps the request with the epoch it holds when it \
             builds it). A failed commit's error is the broker's: Java's `commitSync` throws a \
             `CommitFailedException` ending in the error's message for STALE_MEMBER_EPOCH and \
             UNKNOWN_MEMBER_ID.\n",
        );
    }
    out.push('\n');
    out.push_str("## Per run\n\n");
    for r in results {
        out.push_str(&details(r, sizes.group_protocol));
    }
    out
}
