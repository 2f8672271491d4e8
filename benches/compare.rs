//! The whole side-by-side comparison, kgroup against librdkafka (`rdkafka` 0.39) and the Java
//! reference client (kafka-clients 3.6.2), on an embedded nisshi broker and on Apache Kafka 3.6.2
//! (one KRaft node), with the same data, written to `benches/RESULTS.md`: `sh benches/compare.sh`
//! (which runs `benches/micro.rs` first, whose criterion estimates this harness reads back).
//!
//! On each broker:
//!
//! 1. Consume: `KGROUP_BENCH_MESSAGES` (default 1 000 000) keyed 100-byte messages on 72
//!    partitions, consumed in full by one group member of each client. Every client runs in a
//!    child process of its own (this binary re-executed with `role ...`, or a JVM running
//!    `integration/kafka36/java/BenchConsumer.java`), so its CPU time (`wait4` on its pid) and
//!    peak RSS (its own `VmHWM`) are that one process's, without the broker, the producer or the
//!    other clients.
//! 2. Synchronous commit latency: one member per client commits after every batch of up to 100
//!    messages, `KGROUP_BENCH_COMMITS` (default 1000) timed commits after 50 untimed ones.
//!
//! On nisshi only, but for 4:
//!
//! 3. Scale-out: `shared/scaleout.rs`, 2 to `KGROUP_BENCH_MEMBERS` (default 30) members, one run.
//! 4. How cost grows: `shared/scaling.rs`, kgroup groups of 1 to 100 members on topics of 72 to
//!    10 000 partitions, on both brokers (`KGROUP_BENCH_SCALING_BROKERS`, `nisshi,kafka36`).
//! 5. Micro: criterion's estimates of `benches/micro.rs`.
//!
//! The clients get the same properties where they have them (`COMMON`); the rest are listed per
//! client. The load average is recorded around every measured part, since a busy machine moves
//! every figure. This measures and reports the targets of issue 7; it asserts nothing.

#[path = "shared/child.rs"]
mod child;
#[path = "shared/criterion.rs"]
mod criterion;
#[path = "shared/java.rs"]
mod java;
#[path = "shared/machine.rs"]
mod machine;
#[path = "shared/scaleout.rs"]
mod scaleout;
#[path = "shared/scaling.rs"]
mod scaling;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use child::{process_cpu, role_command, run_as_child, run_child, ChildRun, Measured};
use criterion::{criterion_results, Micro};
use java::{java_binary, java_version};
use kafka_protocol::messages::ApiKey;
use kgroup::driver::connection::{Connection, ConnectionConfig};
use kgroup::embedded::kafka36::{java_peer_classpath, Kafka36Cluster, Kafka36Options, KAFKA_VERSION};
use kgroup::embedded::NISSHI_VERSION;
use kgroup::group::build::offset_commit;
use kgroup::group::{GroupConfig, GroupEvent, Lease};
use kgroup::producer::{Acks, Compression, Producer, ProducerConfig, ProducerRecord};
use kgroup::{Cluster, ClusterConfig, ConsumerConfig, GroupConsumer};
use machine::{loadavg, machine};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use scaleout::{env_usize, BoxError};

const PARTITIONS: i32 = 72;
const VALUE_SIZE: usize = 100;
/// Records a commit-latency batch holds at most.
const COMMIT_BATCH: usize = 100;
const COMMIT_WARMUP: usize = 50;
/// How long a consumer may see nothing before the child gives up.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Properties both clients are given, with the same values.
const COMMON: &[(&str, &str)] = &[
    ("enable.auto.commit", "false"),
    ("auto.offset.reset", "earliest"),
    ("partition.assignment.strategy", "range"),
    ("session.timeout.ms", "10000"),
    ("heartbeat.interval.ms", "500"),
    ("fetch.wait.max.ms", "500"),
    ("fetch.min.bytes", "1"),
    ("fetch.max.bytes", "52428800"),
    ("max.partition.fetch.bytes", "1048576"),
];

/// librdkafka only. Its consumer refills a partition's queue only below `queued.min.messages`
/// and then backs off `fetch.queue.backoff.ms` (1 s by default), which would throttle a consumer
/// that keeps up; 64 MiB of queue is kgroup's prefetch bound (`prefetch_bytes`).
const LIBRDKAFKA_ONLY: &[(&str, &str)] = &[
    ("broker.address.family", "v4"),
    ("queued.min.messages", "1000000"),
    ("queued.max.messages.kbytes", "65536"),
    ("fetch.queue.backoff.ms", "0"),
    ("enable.partition.eof", "false"),
];

/// kgroup only: defaults, stated because they match librdkafka's queue settings above.
const KGROUP_ONLY: &str = "`prefetch_bytes` 64 MiB (default; the bound on fetched, not yet \
    polled bytes, as `queued.max.messages.kbytes` = 65536), `poll(500, 1 s)` (`max.poll.records` default)";

/// The JVM of the Java client: a fixed heap bound, the JVM's other defaults.
const JVM_FLAGS: &[&str] = &["-Xmx512m"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Client {
    Kgroup,
    Librdkafka,
    Java,
}

impl Client {
    const ALL: [Client; 3] = [Client::Kgroup, Client::Librdkafka, Client::Java];

    fn name(self) -> &'static str {
        match self {
            Client::Kgroup => "kgroup",
            Client::Librdkafka => "librdkafka",
            Client::Java => "Java",
        }
    }

    fn parse(name: &str) -> Result<Client, BoxError> {
        Client::ALL.into_iter().find(|c| c.name() == name).ok_or_else(|| format!("unknown client {name}").into())
    }
}

/// `COMMON` in the Java client's names: it calls `fetch.wait.max.ms` `fetch.max.wait.ms` and
/// takes assignors by class name; `max.poll.records` is the batch bound of each role
/// (`BenchConsumer` itself sets byte-array deserializers: no parsing, as for the others).
fn java_properties(max_poll_records: usize) -> Vec<(String, String)> {
    COMMON
        .iter()
        .map(|&(k, v)| match k {
            "fetch.wait.max.ms" => ("fetch.max.wait.ms", v),
            "partition.assignment.strategy" => (k, "org.apache.kafka.clients.consumer.RangeAssignor"),
            _ => (k, v),
        })
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .chain([("max.poll.records".to_string(), max_poll_records.to_string())])
        .collect()
}

fn main() -> Result<(), BoxError> {
    if run_as_child(run_role)? {
        return Ok(());
    }
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(compare())
}

// ---------------------------------------------------------------------------------------------
// The parent: brokers, data, children, scale-out, scaling, the results file.

/// The sizes of one run.
#[derive(Debug, Clone)]
struct Sizes {
    messages: usize,
    commits: usize,
    members: usize,
    scaling: scaling::Sizes,
    /// The brokers the scaling part runs on.
    scaling_brokers: Vec<String>,
}

async fn compare() -> Result<(), BoxError> {
    let messages = env_usize("KGROUP_BENCH_MESSAGES", 1_000_000).max(PARTITIONS as usize);
    // Every timed commit needs a batch of its own: at most one per COMMIT_BATCH messages.
    let commits = env_usize("KGROUP_BENCH_COMMITS", 1000)
        .clamp(1, (messages / COMMIT_BATCH).saturating_sub(COMMIT_WARMUP).max(1));
    let members = env_usize("KGROUP_BENCH_MEMBERS", 30).clamp(2, 72);
    let scaling_brokers = std::env::var("KGROUP_BENCH_SCALING_BROKERS")
        .unwrap_or_else(|_| "nisshi,kafka36".into())
        .split(',')
        .map(|b| b.trim().to_string())
        .filter(|b| !b.is_empty())
        .collect();
    let sizes = Sizes { messages, commits, members, scaling: scaling::Sizes::from_env()?, scaling_brokers };
    // The Java client's classpath (compiled once); without a JDK its columns say why.
    let java = tokio::task::spawn_blocking(java_peer_classpath).await?.map_err(|e| e.to_string());
    let mut results = Results { brokers: Vec::new(), scaleout: None, scaling: Vec::new() };

    let mut nisshi = scaleout::start_broker().await?;
    let bootstrap = nisshi.bootstrap();
    eprintln!("nisshi {NISSHI_VERSION} at {bootstrap}: {sizes:?}");
    let measured = measure_nisshi(&bootstrap, &sizes, &java, &mut results).await;
    nisshi.kill();
    measured?;

    let options = Kafka36Options { initial_rebalance_delay: Duration::from_millis(500), ..Default::default() };
    let kafka = Kafka36Cluster::start(options).await?;
    let bootstrap = kafka.bootstrap();
    eprintln!("Kafka {KAFKA_VERSION} at {bootstrap}");
    results.brokers.push(measure_clients(&kafka_label(), &bootstrap, &sizes, &java).await?);
    if sizes.scaling_brokers.iter().any(|b| b == "kafka36") {
        let load = loadavg();
        let points = scaling::run(&bootstrap, &sizes.scaling).await?;
        results.scaling.push((kafka_label(), points, (load, loadavg())));
    }
    drop(kafka);

    let text = results_markdown(&results, &sizes);
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/RESULTS.md");
    std::fs::write(&path, &text)?;
    println!("{text}");
    eprintln!("written to {}", path.display());
    Ok(())
}

fn nisshi_label() -> String {
    format!("nisshi {NISSHI_VERSION}")
}

fn kafka_label() -> String {
    format!("Kafka {KAFKA_VERSION}")
}

/// What the clients measured on one broker.
struct BrokerRun {
    broker: String,
    produce: (Duration, (String, String)),
    consume: BTreeMap<Client, ChildRun>,
    commit: BTreeMap<Client, ChildRun>,
    /// Runs of the Java client that failed, with why (the Rust clients' failures end the run).
    java_failures: Vec<String>,
}

/// The scale-out run of kgroup and of librdkafka, and the load average around it.
type ScaleoutRun = (Vec<scaleout::Figures>, Vec<scaleout::Figures>, (String, String));

struct Results {
    brokers: Vec<BrokerRun>,
    scaleout: Option<ScaleoutRun>,
    /// Per broker: the points and the load average around them.
    scaling: Vec<(String, Vec<scaling::Point>, (String, String))>,
}

async fn measure_nisshi(
    bootstrap: &str,
    sizes: &Sizes,
    java: &Result<String, String>,
    results: &mut Results,
) -> Result<(), BoxError> {
    results.brokers.push(measure_clients(&nisshi_label(), bootstrap, sizes, java).await?);
    let load = loadavg();
    let (kgroup, librdkafka) = scaleout::run_all(bootstrap, sizes.members, 1).await?;
    results.scaleout = Some((kgroup, librdkafka, (load, loadavg())));
    if sizes.scaling_brokers.iter().any(|b| b == "nisshi") {
        let load = loadavg();
        let points = scaling::run(bootstrap, &sizes.scaling).await?;
        results.scaling.push((nisshi_label(), points, (load, loadavg())));
    }
    Ok(())
}

/// Produces the data, then runs every client's consume and commit children, one after another.
async fn measure_clients(
    broker: &str,
    bootstrap: &str,
    sizes: &Sizes,
    java: &Result<String, String>,
) -> Result<BrokerRun, BoxError> {
    let id = std::process::id();
    let topic = format!("compare-{id}");
    let load = loadavg();
    let started = Instant::now();
    produce(bootstrap, &topic, sizes.messages).await?;
    let produce = (started.elapsed(), (load, loadavg()));
    eprintln!("{broker}: produced {} in {:?}", sizes.messages, produce.0);
    let mut run = BrokerRun {
        broker: broker.to_string(),
        produce,
        consume: BTreeMap::new(),
        commit: BTreeMap::new(),
        java_failures: Vec::new(),
    };
    for (role, count, batch) in [("consume", sizes.messages, 500), ("commit", sizes.commits, COMMIT_BATCH)] {
        for client in Client::ALL {
            let group = format!("{role}-{}-{id}", client.name());
            let args = [role, client.name(), bootstrap, &topic, &group, &count.to_string()];
            let outcome = match client {
                Client::Java => match java {
                    Ok(classpath) => run_child(java_command(classpath, &args, batch)).await.map_err(|e| e.to_string()),
                    Err(e) => Err(e.clone()),
                },
                _ => Ok(run_child(role_command(&args)?).await?),
            };
            eprintln!("{broker}: {role} {}: {outcome:?}", client.name());
            match outcome {
                Ok(measured) => {
                    let runs = if role == "consume" { &mut run.consume } else { &mut run.commit };
                    runs.insert(client, measured);
                }
                Err(e) => run.java_failures.push(format!("{role}: {e}")),
            }
        }
    }
    Ok(run)
}

/// `java BenchConsumer ROLE BOOTSTRAP TOPIC GROUP COUNT properties...` (`args` as for a Rust
/// role, with the client's name second).
fn java_command(classpath: &str, args: &[&str; 6], max_poll_records: usize) -> Command {
    let [role, _, bootstrap, topic, group, count] = args;
    let mut command = Command::new(java_binary());
    command.args(JVM_FLAGS).args(["-cp", classpath, "BenchConsumer", role, bootstrap, topic, group, count]);
    command.args(java_properties(max_poll_records).into_iter().map(|(k, v)| format!("{k}={v}")));
    command
}

/// Writes `messages` keyed 100-byte records, uncompressed, acks=all, in slices that bound the
/// producer's memory.
async fn produce(bootstrap: &str, topic: &str, messages: usize) -> Result<(), BoxError> {
    let cluster = Cluster::connect(ClusterConfig::from_bootstrap_servers(bootstrap)?).await?;
    cluster.create_topic(topic, PARTITIONS, 1).await?;
    let producer = Producer::new(
        cluster,
        ProducerConfig { acks: Acks::All, compression: Compression::None, ..Default::default() },
    )?;
    let value = |n: usize| {
        let mut v = format!("message {n} ").into_bytes();
        v.resize(VALUE_SIZE, b'x');
        v
    };
    for start in (0..messages).step_by(50_000) {
        let deliveries: Vec<_> = (start..messages.min(start + 50_000))
            .map(|n| producer.send(ProducerRecord::new(topic, Some(format!("key-{}", n % 10_000)), value(n))))
            .collect();
        producer.flush().await;
        for delivery in deliveries {
            delivery.await?;
        }
    }
    producer.close().await;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The children.

fn run_role(args: &[String]) -> Result<Measured, BoxError> {
    if let Some(("scaling", args)) = args.split_first().map(|(role, rest)| (role.as_str(), rest)) {
        return scaling::role(args);
    }
    let [role, client, bootstrap, topic, group, count] = args else {
        return Err(
            format!("expected: role consume|commit|scaling CLIENT BOOTSTRAP TOPIC GROUP COUNT, got {args:?}").into()
        );
    };
    let client = Client::parse(client)?;
    let count: usize = count.parse()?;
    let properties: Vec<(&str, &str)> = [("bootstrap.servers", bootstrap.as_str()), ("group.id", group.as_str())]
        .into_iter()
        .chain(COMMON.iter().copied())
        .collect();
    match (role.as_str(), client) {
        ("consume", Client::Kgroup) => kgroup_runtime()?.block_on(consume_kgroup(&properties, topic, count)),
        ("consume", Client::Librdkafka) => consume_librdkafka(&properties, topic, count),
        ("commit", Client::Kgroup) => kgroup_runtime()?.block_on(commit_kgroup(&properties, topic, count)),
        ("commit", Client::Librdkafka) => commit_librdkafka(&properties, topic, count),
        _ => Err(format!("unknown role {role}").into()),
    }
}

/// Tokio's default multi-thread runtime, as an application embedding kgroup would run it.
fn kgroup_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build()
}

/// When the member got its partitions: librdkafka's rebalance callback, kgroup's `Assigned`
/// group event (both as the assignment arrives, before offsets are fetched), so the consume rate
/// covers fetching from the start and leaves out the join, whose length the broker sets; with
/// the process's CPU time then, so start-up (a JVM's above all) can be told apart.
type AssignedAt = Arc<Mutex<Option<(SystemTime, Duration)>>>;

struct AssignClock(AssignedAt);

impl ClientContext for AssignClock {}

impl ConsumerContext for AssignClock {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(_) = rebalance {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get_or_insert_with(|| (SystemTime::now(), process_cpu()));
        }
    }
}

fn rdkafka_consumer(
    properties: &[(&str, &str)],
    topic: &str,
) -> Result<(BaseConsumer<AssignClock>, AssignedAt), BoxError> {
    let mut config = ClientConfig::new();
    for (k, v) in properties.iter().chain(LIBRDKAFKA_ONLY) {
        config.set(*k, *v);
    }
    let assigned = AssignedAt::default();
    let consumer: BaseConsumer<AssignClock> = config.create_with_context(AssignClock(assigned.clone()))?;
    consumer.subscribe(&[topic])?;
    Ok((consumer, assigned))
}

/// A kgroup member and the time of its first assignment.
async fn kgroup_consumer(properties: &[(&str, &str)], topic: &str) -> Result<(GroupConsumer, AssignedAt), BoxError> {
    let consumer =
        GroupConsumer::subscribe(ConsumerConfig::from_properties(properties.iter().copied())?, &[topic]).await?;
    let assigned = AssignedAt::default();
    let mut events = consumer.group_events();
    let first = assigned.clone();
    tokio::spawn(async move {
        while let Ok(record) = events.recv().await {
            if let GroupEvent::Assigned { .. } = record.event {
                *first.lock().unwrap_or_else(PoisonError::into_inner) = Some((record.at, process_cpu()));
                break;
            }
        }
    });
    Ok((consumer, assigned))
}

/// Counts messages and the bytes of keys and values (so both clients touch every record).
struct Meter {
    count: usize,
    bytes: usize,
    last_progress: Instant,
    last_message: Option<SystemTime>,
}

impl Meter {
    fn new() -> Self {
        Meter { count: 0, bytes: 0, last_progress: Instant::now(), last_message: None }
    }

    fn add(&mut self, records: usize, bytes: usize) {
        self.count += records;
        self.bytes += bytes;
        self.last_progress = Instant::now();
        self.last_message = Some(SystemTime::now());
    }

    fn check_idle(&self) -> Result<(), BoxError> {
        if self.last_progress.elapsed() > IDLE_TIMEOUT {
            return Err(format!("no message for {IDLE_TIMEOUT:?} after {} messages", self.count).into());
        }
        Ok(())
    }

    /// Messages per second from the assignment to the last message.
    fn measured(&self, assigned: &AssignedAt) -> Result<Measured, BoxError> {
        let (assigned, cpu) = (*assigned.lock().unwrap_or_else(PoisonError::into_inner)).ok_or("no assignment seen")?;
        let seconds = self.last_message.and_then(|l| l.duration_since(assigned).ok()).unwrap_or_default().as_secs_f64();
        let rate = if seconds > 0.0 { self.count as f64 / seconds } else { 0.0 };
        Ok(Measured::from([
            ("messages".into(), self.count as f64),
            ("bytes".into(), self.bytes as f64),
            ("seconds".into(), seconds),
            ("rate".into(), rate),
            ("cpu_at_assign_s".into(), cpu.as_secs_f64()),
        ]))
    }
}

fn record_bytes(key: Option<&[u8]>, value: Option<&[u8]>) -> usize {
    key.map_or(0, <[u8]>::len) + value.map_or(0, <[u8]>::len)
}

async fn consume_kgroup(properties: &[(&str, &str)], topic: &str, count: usize) -> Result<Measured, BoxError> {
    let (mut consumer, assigned) = kgroup_consumer(properties, topic).await?;
    let mut meter = Meter::new();
    while meter.count < count {
        if let Some(batch) = consumer.poll(500, Duration::from_secs(1)).await? {
            let bytes = batch.records.iter().map(|r| record_bytes(r.key(), r.value())).sum();
            meter.add(batch.records.len(), bytes);
        }
        meter.check_idle()?;
    }
    let measured = meter.measured(&assigned)?;
    tokio::time::timeout(Duration::from_secs(30), consumer.close()).await??;
    Ok(measured)
}

fn consume_librdkafka(properties: &[(&str, &str)], topic: &str, count: usize) -> Result<Measured, BoxError> {
    let (consumer, assigned) = rdkafka_consumer(properties, topic)?;
    let mut meter = Meter::new();
    while meter.count < count {
        match consumer.poll(Duration::from_secs(1)) {
            Some(Ok(m)) => meter.add(1, record_bytes(m.key(), m.payload())),
            Some(Err(e)) => return Err(e.into()),
            None => {}
        }
        meter.check_idle()?;
    }
    let measured = meter.measured(&assigned)?;
    consumer.unsubscribe();
    Ok(measured)
}

/// Commit latencies after the first `COMMIT_WARMUP` commits (connections, the coordinator
/// lookup and the broker's first offsets write are not steady state).
struct CommitTimer {
    seen: usize,
    latencies: Vec<Duration>,
    partitions: usize,
}

impl CommitTimer {
    fn new(commits: usize) -> Self {
        CommitTimer { seen: 0, latencies: Vec::with_capacity(commits), partitions: 0 }
    }

    fn record(&mut self, latency: Duration, partitions: usize) {
        self.seen += 1;
        if self.seen > COMMIT_WARMUP {
            self.latencies.push(latency);
            self.partitions += partitions;
        }
    }

    /// p50, p99 and mean in milliseconds, and partitions per commit.
    fn measured(mut self) -> Measured {
        self.latencies.sort();
        let n = self.latencies.len().max(1);
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let at = |q: f64| self.latencies.get(((n as f64 * q) as usize).min(n - 1)).map_or(0.0, |d| ms(*d));
        Measured::from([
            ("commits".into(), self.latencies.len() as f64),
            ("p50_ms".into(), at(0.50)),
            ("p99_ms".into(), at(0.99)),
            ("mean_ms".into(), self.latencies.iter().map(|d| ms(*d)).sum::<f64>() / n as f64),
            ("partitions_per_commit".into(), self.partitions as f64 / n as f64),
        ])
    }
}

/// Waits at most `IDLE_TIMEOUT` between batches.
fn check_idle(since: Instant) -> Result<(), BoxError> {
    if since.elapsed() > IDLE_TIMEOUT {
        return Err(format!("no batch to commit for {IDLE_TIMEOUT:?}").into());
    }
    Ok(())
}

/// The broker's side of a kgroup commit alone: the OffsetCommit the member sends, stamped the
/// same way, on a connection of its own to the coordinator and awaited in place, without the
/// consumer's and the member's tasks around it.
struct BareCommitter {
    conn: Connection,
    version: i16,
    group: GroupConfig,
}

impl BareCommitter {
    async fn connect(properties: &[(&str, &str)]) -> Result<Self, BoxError> {
        let property = |key| properties.iter().find(|(k, _)| *k == key).map(|(_, v)| *v).ok_or(key);
        let (bootstrap, group) = (property("bootstrap.servers")?, property("group.id")?);
        let cluster = Cluster::connect(ClusterConfig::from_bootstrap_servers(bootstrap)?).await?;
        let coordinator = cluster.find_coordinator(group).await?;
        let conn = Connection::open(&coordinator.addr(), Arc::new(ConnectionConfig::default())).await?;
        let version = conn.version(ApiKey::OffsetCommit)?.min(8);
        Ok(BareCommitter { conn, version, group: GroupConfig::new(group) })
    }

    /// Commits `lease` with the member's own request builder; `false` when the broker refused it.
    async fn commit(&self, lease: &Lease) -> Result<bool, BoxError> {
        let offsets = [(&lease.partition, lease.next_offset)];
        let request = offset_commit(&self.group, &lease.generation, offsets, self.version);
        let response = self.conn.send_at(&request, self.version, Duration::from_secs(10)).await?;
        Ok(response.topics.iter().flat_map(|t| &t.partitions).all(|p| p.error_code == 0))
    }
}

async fn commit_kgroup(properties: &[(&str, &str)], topic: &str, commits: usize) -> Result<Measured, BoxError> {
    let (mut consumer, _) = kgroup_consumer(properties, topic).await?;
    let bare = BareCommitter::connect(properties).await?;
    let mut timer = CommitTimer::new(commits);
    let mut bare_timer = CommitTimer::new(commits);
    let mut idle_since = Instant::now();
    while timer.latencies.len() < commits {
        let Some(batch) = consumer.poll(COMMIT_BATCH, Duration::from_secs(1)).await? else {
            check_idle(idle_since)?;
            continue;
        };
        idle_since = Instant::now();
        let started = Instant::now();
        let outcomes = consumer.commit(&batch).await?;
        timer.record(started.elapsed(), outcomes.len());
        let started = Instant::now();
        if bare.commit(batch.lease()).await? {
            bare_timer.record(started.elapsed(), 1);
        }
    }
    tokio::time::timeout(Duration::from_secs(30), consumer.close()).await??;
    let mut measured = timer.measured();
    measured.extend(bare_timer.measured().into_iter().map(|(key, value)| (format!("bare_{key}"), value)));
    Ok(measured)
}

fn commit_librdkafka(properties: &[(&str, &str)], topic: &str, commits: usize) -> Result<Measured, BoxError> {
    let (consumer, _) = rdkafka_consumer(properties, topic)?;
    let mut timer = CommitTimer::new(commits);
    let mut idle_since = Instant::now();
    while timer.latencies.len() < commits {
        // A batch: what the local queue holds, up to COMMIT_BATCH, waiting only for the first.
        let mut next: BTreeMap<i32, i64> = BTreeMap::new();
        for taken in 0..COMMIT_BATCH {
            let timeout = if taken == 0 { Duration::from_secs(1) } else { Duration::ZERO };
            match consumer.poll(timeout) {
                Some(Ok(m)) => {
                    next.insert(m.partition(), m.offset() + 1);
                }
                Some(Err(e)) => return Err(e.into()),
                None => break,
            }
        }
        if next.is_empty() {
            check_idle(idle_since)?;
            continue;
        }
        idle_since = Instant::now();
        let mut tpl = TopicPartitionList::new();
        for (&p, &o) in &next {
            tpl.add_partition_offset(topic, p, Offset::Offset(o))?;
        }
        let started = Instant::now();
        consumer.commit(&tpl, CommitMode::Sync)?;
        timer.record(started.elapsed(), next.len());
    }
    consumer.unsubscribe();
    Ok(timer.measured())
}

// ---------------------------------------------------------------------------------------------
// The results file.

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 && a.is_finite() && b.is_finite() {
        format!("{:.2}", a / b)
    } else {
        "—".into()
    }
}

/// A value with `decimals`, or a dash when the client has none (a failed Java run).
fn value(v: f64, decimals: usize) -> String {
    if v.is_finite() {
        format!("{v:.decimals$}")
    } else {
        "—".into()
    }
}

/// "met" or "missed" for a ratio against its bound.
fn verdict(value: f64, bound: f64, at_most: bool) -> &'static str {
    if (at_most && value <= bound) || (!at_most && value >= bound) {
        "met"
    } else {
        "missed"
    }
}

/// A target on kgroup / librdkafka: the bound, and whether it is an upper bound.
type Target = Option<(f64, bool)>;

const TARGET_TABLE_HEAD: &str =
    "| figure | kgroup | librdkafka | kgroup / librdkafka | target | |\n|---|---|---|---|---|---|\n";

/// One row: both values, their ratio, and the target with "met" or "missed".
fn ratio_row(out: &mut String, label: &str, k: f64, l: f64, decimals: usize, target: Target) {
    let (bound, result) = match target {
        Some((bound, at_most)) if l > 0.0 => {
            (format!("{} {bound}x", if at_most { "<=" } else { ">=" }), verdict(k / l, bound, at_most))
        }
        _ => (String::new(), ""),
    };
    let _ = writeln!(out, "| {label} | {k:.decimals$} | {l:.decimals$} | {} | {bound} | {result} |", ratio(k, l));
}

/// A figure of one child run.
type Figure = fn(&ChildRun) -> f64;

fn rate(c: &ChildRun) -> f64 {
    c.measured.get("rate").copied().unwrap_or(0.0)
}

fn cpu_per_million(c: &ChildRun) -> f64 {
    c.cpu.as_secs_f64() * 1e6 / c.measured["messages"].max(1.0)
}

/// CPU from the first assignment to exit: without the process's start-up and join.
fn cpu_per_million_after_assignment(c: &ChildRun) -> f64 {
    let after = c.cpu.as_secs_f64() - c.measured.get("cpu_at_assign_s").copied().unwrap_or(f64::NAN);
    after * 1e6 / c.measured["messages"].max(1.0)
}

fn rss_mib(c: &ChildRun) -> f64 {
    c.measured["vm_hwm_kib"] / 1024.0
}

/// A figure of `client`'s run, NaN when it has none.
fn of(runs: &BTreeMap<Client, ChildRun>, client: Client, figure: impl Fn(&ChildRun) -> f64) -> f64 {
    runs.get(&client).map_or(f64::NAN, figure)
}

/// A measured key of `client`'s run, NaN when it has none.
fn key(runs: &BTreeMap<Client, ChildRun>, client: Client, key: &str) -> f64 {
    of(runs, client, |c| c.measured.get(key).copied().unwrap_or(f64::NAN))
}

/// GB/s of a criterion benchmark with a byte throughput.
fn gbps(micro: &[Micro], id: &str) -> Option<f64> {
    micro.iter().find(|m| m.id == id).and_then(|m| m.bytes.map(|b| b / m.nanos))
}

/// The figures issue 7 sets targets for, on nisshi, one row each (the README shows this table).
fn summary(nisshi: &BrokerRun, scaleout: &ScaleoutRun, micro: &[Micro]) -> String {
    let (c, m) = (&nisshi.consume, &nisshi.commit);
    let stable = |f: &[scaleout::Figures], max: bool| -> f64 {
        let steps: Vec<f64> = f.iter().flat_map(|f| &f.steps).map(|s| s.stable.as_secs_f64() * 1e3).collect();
        if max {
            steps.iter().copied().fold(0.0, f64::max)
        } else {
            steps.iter().sum::<f64>() / steps.len().max(1) as f64
        }
    };
    let failed = |f: &[scaleout::Figures]| f.iter().flat_map(|f| &f.steps).map(|s| s.failed as f64).sum::<f64>();
    let (kg, rd, _) = scaleout;
    let sum = |f: &[scaleout::Figures], get: fn(&scaleout::Figures) -> u64| f.iter().map(get).sum::<u64>() as f64;
    let (k, l) = (Client::Kgroup, Client::Librdkafka);
    let rows: [(&str, f64, f64, usize, Target); 10] = [
        ("consume, messages/s", of(c, k, rate), of(c, l, rate), 0, Some((1.0, false))),
        (
            "consume, CPU-seconds per million messages",
            of(c, k, cpu_per_million),
            of(c, l, cpu_per_million),
            3,
            Some((0.5, true)),
        ),
        ("consume, peak RSS (MiB)", of(c, k, rss_mib), of(c, l, rss_mib), 1, Some((0.25, true))),
        ("sync commit p50 (ms)", key(m, k, "p50_ms"), key(m, l, "p50_ms"), 3, None),
        ("sync commit p99 (ms)", key(m, k, "p99_ms"), key(m, l, "p99_ms"), 3, None),
        ("scale-out, average time to stable per step (ms)", stable(kg, false), stable(rd, false), 0, Some((1.0, true))),
        ("scale-out, worst time to stable per step (ms)", stable(kg, true), stable(rd, true), 0, Some((1.0, true))),
        ("scale-out, partition commits fenced or failed", failed(kg), failed(rd), 0, None),
        ("scale-out, duplicates", sum(kg, |f| f.duplicates), sum(rd, |f| f.duplicates), 0, None),
        ("scale-out, lost", sum(kg, |f| f.lost), sum(rd, |f| f.lost), 0, None),
    ];
    let mut out = String::from(TARGET_TABLE_HEAD);
    for (label, k, l, decimals, target) in rows {
        ratio_row(&mut out, label, k, l, decimals, target);
    }
    let copy = gbps(micro, "decode/memcpy").map_or("?".into(), |c| format!("{c:.1}"));
    for (id, label) in [
        ("decode/none", "uncompressed record batch decode (GB/s)"),
        ("decode/none+drop", "the same, with dropping the records (GB/s)"),
    ] {
        if let Some(rate) = gbps(micro, id) {
            let _ = writeln!(
                out,
                "| {label} | {rate:.2} | | memcpy of the same bytes: {copy} GB/s | >= 2 GB/s | {} |",
                verdict(rate, 2.0, false)
            );
        }
    }
    out
}

/// The consume and commit figures of every client on every broker, one column each.
fn clients_table(brokers: &[BrokerRun]) -> String {
    let mut out = String::from("| figure |");
    for b in brokers {
        for client in Client::ALL {
            let _ = write!(out, " {}, {} |", client.name(), b.broker);
        }
    }
    let _ = writeln!(out, "\n|---|{}", "---|".repeat(brokers.len() * Client::ALL.len()));
    type Row = (&'static str, bool, Figure, usize);
    let rows: [Row; 6] = [
        ("consume, messages/s", true, rate, 0),
        ("consume, CPU-seconds per million messages, whole process", true, cpu_per_million, 3),
        ("consume, CPU-seconds per million messages, from the assignment", true, cpu_per_million_after_assignment, 3),
        ("consume, peak RSS (MiB)", true, rss_mib, 1),
        ("sync commit p50 (ms)", false, |c| c.measured["p50_ms"], 3),
        ("sync commit p99 (ms)", false, |c| c.measured["p99_ms"], 3),
    ];
    for (label, consume, figure, decimals) in rows {
        let _ = write!(out, "| {label} |");
        for b in brokers {
            for client in Client::ALL {
                let runs = if consume { &b.consume } else { &b.commit };
                let _ = write!(out, " {} |", value(of(runs, client, figure), decimals));
            }
        }
        out.push('\n');
    }
    out
}

/// One broker's consume and commit sections, three clients side by side.
fn broker_sections(out: &mut String, b: &BrokerRun, sizes: &Sizes) {
    let (k, l, j) = (Client::Kgroup, Client::Librdkafka, Client::Java);
    let head =
        "| figure | kgroup | librdkafka | Java | kgroup / librdkafka | kgroup / Java |\n|---|---|---|---|---|---|\n";
    let row = |out: &mut String,
               label: &str,
               runs: &BTreeMap<Client, ChildRun>,
               figure: &dyn Fn(&ChildRun) -> f64,
               d: usize| {
        let (kv, lv, jv) = (of(runs, k, figure), of(runs, l, figure), of(runs, j, figure));
        let _ = writeln!(
            out,
            "| {label} | {} | {} | {} | {} | {} |",
            value(kv, d),
            value(lv, d),
            value(jv, d),
            ratio(kv, lv),
            ratio(kv, jv)
        );
    };
    let load = |runs: &BTreeMap<Client, ChildRun>, client| {
        runs.get(&client).map_or("—".into(), |c: &ChildRun| format!("{} -> {}", c.load.0, c.load.1))
    };
    let _ = writeln!(
        out,
        "\n## Consume on {}: {} keyed 100-byte messages, 72 partitions, one consumer per client\n\n\
         Produced with kgroup's producer (uncompressed, acks=all) in {:.1} s before the clients run (load {} -> {}). \
         Each client runs in a child process of its own (Java: one JVM, `{}`); CPU is that process's \
         (`wait4`), peak RSS its `VmHWM` read by itself after closing the consumer. \
         Messages/s counts from the first assignment (librdkafka's rebalance callback, kgroup's \
         `Assigned` event, Java's `onPartitionsAssigned`) to the last message, so no client's start-up \
         is in it; \"whole process\" CPU includes start-up (the JVM's class loading and JIT above all), \
         \"from the assignment\" subtracts the process's CPU time at its first assignment.\n",
        b.broker,
        sizes.messages,
        b.produce.0.as_secs_f64(),
        b.produce.1 .0,
        b.produce.1 .1,
        JVM_FLAGS.join(" "),
    );
    out.push_str(head);
    let c = &b.consume;
    row(out, "messages/s", c, &rate, 0);
    row(out, "CPU-seconds per million messages, whole process (user + sys)", c, &cpu_per_million, 3);
    row(out, "CPU-seconds per million messages, from the assignment", c, &cpu_per_million_after_assignment, 3);
    row(out, "peak RSS (MiB)", c, &rss_mib, 1);
    row(out, "seconds from assignment to last message", c, &|c| c.measured["seconds"], 2);
    row(out, "CPU user (s)", c, &|c| c.user.as_secs_f64(), 2);
    row(out, "CPU sys (s)", c, &|c| c.sys.as_secs_f64(), 2);
    row(out, "messages consumed", c, &|c| c.measured["messages"], 0);
    let _ = writeln!(out, "| load average start -> end | {} | {} | {} | | |", load(c, k), load(c, l), load(c, j));

    let _ = writeln!(
        out,
        "\n## Synchronous commit latency on {}, steady state\n\n\
         One member per client alone in its group on the same topic; a batch of up to {COMMIT_BATCH} \
         messages (kgroup: one `poll`; librdkafka: what its queue holds; Java: one `poll` with \
         `max.poll.records` = {COMMIT_BATCH}), then a synchronous commit of its partitions' next offsets \
         (`commit(&batch)`, `commit(&tpl, CommitMode::Sync)`, `commitSync(offsets)`); the first {COMMIT_WARMUP} \
         commits are not timed.\n",
        b.broker
    );
    out.push_str(head);
    let m = &b.commit;
    for (label, key, decimals) in [
        ("p50 (ms)", "p50_ms", 3),
        ("p99 (ms)", "p99_ms", 3),
        ("mean (ms)", "mean_ms", 3),
        ("partitions per commit", "partitions_per_commit", 2),
        ("commits timed", "commits", 0),
    ] {
        row(out, label, m, &|c| c.measured[key], decimals);
    }
    let _ = writeln!(out, "| load average start -> end | {} | {} | {} | | |", load(m, k), load(m, l), load(m, j));
    if let Some(kgroup) = m.get(&k) {
        let figure = |key: &str| kgroup.measured.get(key).copied().unwrap_or(f64::NAN);
        let _ = writeln!(
            out,
            "\nWhere kgroup's time goes: each timed commit was sent again right after it, as the same \
             OffsetCommit stamped the same way, on a connection of its own to the coordinator, awaited in \
             place (no consumer or member task): p50 {:.3} ms, p99 {:.3} ms over {:.0} commits. kgroup's \
             own commit took {:.3} ms more at p50.",
            figure("bare_p50_ms"),
            figure("bare_p99_ms"),
            figure("bare_commits"),
            figure("p50_ms") - figure("bare_p50_ms"),
        );
    }
    for failure in &b.java_failures {
        let _ = writeln!(out, "\nThe Java client failed on {} ({failure}).", b.broker);
    }
}

fn results_markdown(r: &Results, sizes: &Sizes) -> String {
    let mut out = String::from("# kgroup vs librdkafka vs the Java client: results\n\n");
    let _ = writeln!(
        out,
        "Written by `sh benches/compare.sh` (see `benches/README.md`). Sizes: {} messages, {} \
         timed commits, scale-out 2 -> {} members; scaling: {:?} members x {:?} partitions, {:.0} s idle \
         windows. One run per client; the load average (1, 5, 15 min) is recorded at the start and end \
         of each measured part: on a busy machine every figure moves, the ratios less than the absolute \
         numbers.\n",
        sizes.messages,
        sizes.commits,
        sizes.members,
        sizes.scaling.members,
        sizes.scaling.partitions,
        sizes.scaling.idle.as_secs_f64(),
    );
    out.push_str("| machine | |\n|---|---|\n");
    let brokers = format!(
        "{}, in memory; {} (KRaft, one node, from Maven Central); both on 127.0.0.1 with \
         group.initial.rebalance.delay.ms = 500",
        nisshi_label(),
        kafka_label()
    );
    let java = format!("{} (kafka-clients {KAFKA_VERSION}), `{}`", java_version(), JVM_FLAGS.join(" "));
    for (k, v) in machine(vec![("brokers", brokers), ("Java", java)]) {
        let _ = writeln!(out, "| {k} | {v} |");
    }

    let micro = criterion_results();
    let nisshi = r.brokers.first();
    if let (Some(nisshi), Some(scaleout)) = (nisshi, &r.scaleout) {
        let _ = writeln!(out, "\n## Summary: issue 7's targets ({})\n", nisshi.broker);
        out.push_str(&summary(nisshi, scaleout, &micro));
    }
    out.push_str(
        "\n## Three clients on two brokers\n\nThe consume and commit-latency figures of the sections \
         below, side by side.\n\n",
    );
    out.push_str(&clients_table(&r.brokers));
    for b in &r.brokers {
        broker_sections(&mut out, b, sizes);
    }

    if let Some((kgroup, librdkafka, load)) = &r.scaleout {
        let members = sizes.members;
        let _ = writeln!(
            out,
            "\n## Group scale-out ({})\n\n`shared/scaleout.rs`: the seed scenario (72 partitions, 2 -> {members} \
             members one at a time, batches of 1000, 20 ms of work, synchronous commits, 10 000 msg/s \
             produced meanwhile), kgroup and librdkafka with session.timeout.ms 10000 and heartbeat.interval.ms \
             500 (see `benches/README.md`). Load {} -> {}. Target: time to stable per step at most 1x.\n",
            nisshi_label(),
            load.0,
            load.1
        );
        out.push_str(&scaleout::table(members, 1, kgroup, librdkafka));
        out.push('\n');
        out.push_str(&scaleout::step_table(kgroup, librdkafka));
        let steps_met = kgroup
            .first()
            .zip(librdkafka.first())
            .map(|(k, l)| k.steps.iter().zip(&l.steps).filter(|(k, l)| k.stable <= l.stable).count());
        let _ = writeln!(
            out,
            "\nSteps where kgroup reached stable no later than librdkafka: {} of {}.",
            steps_met.unwrap_or(0),
            kgroup.first().map_or(0, |k| k.steps.len())
        );
    }

    out.push_str(
        "\n## How cost grows (kgroup)\n\n`shared/scaling.rs`: one group of M kgroup members in one process \
         (a child of its own per size), each polling in a task, on an empty topic of P partitions; \
         once the group is stable and has settled, the process's CPU over the idle window (heartbeats \
         and the empty fetches' long polls, `fetch.wait.max.ms` 500) and its resident set, per member \
         (RSS: minus the process before the first member); then one more member joins and the time \
         until every member is stable in one generation covering the partitions exactly once \
         (checked every 20 ms).\n",
    );
    for (broker, points, load) in &r.scaling {
        let _ = writeln!(out, "\n### {broker} (load {} -> {})\n", load.0, load.1);
        out.push_str(&scaling::table(points));
    }
    out.push_str(&scaling::assignor_table(&micro));

    out.push_str(
        "\n## Micro (criterion, `benches/micro.rs`)\n\nMedian per iteration. Decode rows: one \
         partition's fetched data, 64 batches of 128 keyed 100-byte records, throughput in \
         uncompressed bytes, the decoded records dropped outside the timing except in \
         `none+drop`; `memcpy` copies the same uncompressed bytes. Target: uncompressed decode \
         at least 2 GB/s.\n\n| benchmark | time | GB/s | share of memcpy | |\n|---|---|---|---|---|\n",
    );
    let copy = gbps(&micro, "decode/memcpy");
    if micro.is_empty() {
        out.push_str(
            "| (no criterion results: run `cargo bench --bench micro --features test-support` first) | | | | |\n",
        );
    }
    for m in &micro {
        let gbps = m.bytes.map(|b| b / m.nanos);
        let time = if m.nanos >= 1e3 { format!("{:.1} µs", m.nanos / 1e3) } else { format!("{:.0} ns", m.nanos) };
        let share = match (gbps, copy) {
            (Some(g), Some(c)) => format!("{:.3}", g / c),
            _ => String::new(),
        };
        let target = match (m.id.as_str(), gbps) {
            ("decode/none", Some(g)) => verdict(g, 2.0, false),
            _ => "",
        };
        let gbps = gbps.map_or(String::new(), |g| format!("{g:.2}"));
        let _ = writeln!(out, "| {} | {time} | {gbps} | {share} | {target} |", m.id);
    }

    out.push_str("\n## Settings\n\nEvery client (consume and commit latency):\n\n");
    for (k, v) in COMMON {
        let _ = writeln!(out, "- `{k}` = `{v}`");
    }
    out.push_str("\nlibrdkafka only:\n\n");
    for (k, v) in LIBRDKAFKA_ONLY {
        let _ = writeln!(out, "- `{k}` = `{v}`");
    }
    let _ = writeln!(
        out,
        "\nJava: the same in its names (`fetch.max.wait.ms`, `partition.assignment.strategy` = \
         `org.apache.kafka.clients.consumer.RangeAssignor`), byte-array deserializers, \
         `max.poll.records` 500 (consume, its default) and {COMMIT_BATCH} (commit latency); JVM `{}`, \
         its other defaults.",
        JVM_FLAGS.join(" ")
    );
    let _ = writeln!(
        out,
        "\nkgroup only: {KGROUP_ONLY}. kgroup runs on tokio's default multi-thread runtime; librdkafka's \
         `BaseConsumer::poll` is called from the main thread, one message per call."
    );
    out
}
