//! The whole side-by-side comparison, kgroup against librdkafka (`rdkafka` 0.39), on one embedded
//! nisshi broker with the same data, written to `benches/RESULTS.md`: `sh benches/compare.sh`
//! (which runs `benches/micro.rs` first, whose criterion estimates this harness reads back).
//!
//! 1. Consume: `KGROUP_BENCH_MESSAGES` (default 1 000 000) keyed 100-byte messages on 72
//!    partitions, consumed in full by one group member of each client. Every client runs in a
//!    child process of its own (this binary re-executed with `role ...`), so its CPU time (`wait4`
//!    on its pid) and peak RSS (its own `VmHWM`) are that one process's, without the broker, the
//!    producer or the other client.
//! 2. Synchronous commit latency: one member per client commits after every batch of up to 100
//!    messages, `KGROUP_BENCH_COMMITS` (default 1000) timed commits after 50 untimed ones.
//! 3. Scale-out: `shared/scaleout.rs`, 2 to `KGROUP_BENCH_MEMBERS` (default 30) members, one run.
//! 4. Micro: criterion's estimates of `benches/micro.rs`.
//!
//! Both clients get the same properties where both have them (`COMMON`); the rest are listed per
//! client. The load average is recorded around every measured part, since a busy machine moves
//! every figure. This measures and reports the targets of issue 7; it asserts nothing.

#[path = "shared/machine.rs"]
mod machine;
#[path = "shared/scaleout.rs"]
mod scaleout;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use kgroup::embedded::NISSHI_VERSION;
use kgroup::group::GroupEvent;
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
/// Upper bound on any one child; a child past it is killed and the run fails.
const CHILD_TIMEOUT: Duration = Duration::from_secs(600);
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Client {
    Kgroup,
    Librdkafka,
}

impl Client {
    const BOTH: [Client; 2] = [Client::Kgroup, Client::Librdkafka];

    fn name(self) -> &'static str {
        match self {
            Client::Kgroup => "kgroup",
            Client::Librdkafka => "librdkafka",
        }
    }

    fn parse(name: &str) -> Result<Client, BoxError> {
        Client::BOTH.into_iter().find(|c| c.name() == name).ok_or_else(|| format!("unknown client {name}").into())
    }
}

/// What a child measures itself, as `key=value` on its one line of stdout.
type Measured = BTreeMap<String, f64>;

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().collect();
    // `cargo bench` passes `--bench`; the harness's own children get `role`.
    if args.get(1).map(String::as_str) == Some("role") {
        let mut measured = run_role(&args[2..])?;
        measured.insert("vm_hwm_kib".into(), vm_hwm_kib()?);
        let line: Vec<String> = measured.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!("RESULT {}", line.join(" "));
        return Ok(());
    }
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(compare())
}

// ---------------------------------------------------------------------------------------------
// The parent: broker, data, children, scale-out, the results file.

/// One measured child run: what it measured itself and what the kernel accounted for it.
#[derive(Debug, Clone)]
struct ChildRun {
    measured: Measured,
    cpu: Duration,
    user: Duration,
    sys: Duration,
    load: (String, String),
}

async fn compare() -> Result<(), BoxError> {
    let messages = env_usize("KGROUP_BENCH_MESSAGES", 1_000_000).max(PARTITIONS as usize);
    // Every timed commit needs a batch of its own: at most one per COMMIT_BATCH messages.
    let commits = env_usize("KGROUP_BENCH_COMMITS", 1000)
        .clamp(1, (messages / COMMIT_BATCH).saturating_sub(COMMIT_WARMUP).max(1));
    let members = env_usize("KGROUP_BENCH_MEMBERS", 30).clamp(2, 72);
    let mut broker = scaleout::start_broker().await?;
    let bootstrap = broker.bootstrap();
    eprintln!("nisshi {NISSHI_VERSION} at {bootstrap}: {messages} messages, {commits} commits, 2..={members} members");
    let result = measure_all(&bootstrap, messages, commits, members).await;
    broker.kill();
    let results = result?;
    let text = results_markdown(&results, messages, commits, members);
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/RESULTS.md");
    std::fs::write(&path, &text)?;
    println!("{text}");
    eprintln!("written to {}", path.display());
    Ok(())
}

struct Results {
    consume: BTreeMap<&'static str, ChildRun>,
    commit: BTreeMap<&'static str, ChildRun>,
    produce: (Duration, (String, String)),
    scaleout: (Vec<scaleout::Figures>, Vec<scaleout::Figures>, (String, String)),
}

async fn measure_all(bootstrap: &str, messages: usize, commits: usize, members: usize) -> Result<Results, BoxError> {
    let id = std::process::id();
    let topic = format!("compare-{id}");
    let load = loadavg();
    let started = Instant::now();
    produce(bootstrap, &topic, messages).await?;
    let produce = (started.elapsed(), (load, loadavg()));
    eprintln!("produced {messages} in {:?}", produce.0);

    let (mut consume, mut commit) = (BTreeMap::new(), BTreeMap::new());
    for client in Client::BOTH {
        let group = format!("consume-{}-{id}", client.name());
        let run = run_child(&["consume", client.name(), bootstrap, &topic, &group, &messages.to_string()]).await?;
        eprintln!("consume {}: {run:?}", client.name());
        consume.insert(client.name(), run);
    }
    for client in Client::BOTH {
        let group = format!("commit-{}-{id}", client.name());
        let run = run_child(&["commit", client.name(), bootstrap, &topic, &group, &commits.to_string()]).await?;
        eprintln!("commit {}: {run:?}", client.name());
        commit.insert(client.name(), run);
    }
    let load = loadavg();
    let (kgroup, librdkafka) = scaleout::run_all(bootstrap, members, 1).await?;
    Ok(Results { consume, commit, produce, scaleout: (kgroup, librdkafka, (load, loadavg())) })
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

/// Kills and reaps the child unless it was reaped already, so no failure path leaves one behind.
struct ChildGuard {
    child: Child,
    reaped: bool,
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs this binary as `role args...` and waits for it (bounded), reading its CPU time from
/// `wait4` (that process alone: the broker and other children are not counted).
async fn run_child(args: &[&str]) -> Result<ChildRun, BoxError> {
    let mut command = Command::new(std::env::current_exe()?);
    command.arg("role").args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit());
    // SAFETY: prctl is async-signal-safe; it only asks for SIGKILL when this process dies, so a
    // crashed harness leaves no consumer running.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let load_before = loadavg();
    let mut guard = ChildGuard { child: command.spawn()?, reaped: false };
    let pid = guard.child.id() as libc::pid_t;
    let (status, usage) = tokio::task::spawn_blocking(move || wait_bounded(pid, CHILD_TIMEOUT)).await??;
    guard.reaped = true;
    let load = (load_before, loadavg());
    let mut stdout = String::new();
    if let Some(mut out) = guard.child.stdout.take() {
        out.read_to_string(&mut stdout)?;
    }
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Err(format!("child {args:?} failed (wait status {status})").into());
    }
    let line = stdout.lines().find_map(|l| l.strip_prefix("RESULT ")).ok_or("child printed no RESULT line")?;
    let measured = line
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| Ok((k.to_string(), v.parse::<f64>()?)))
        .collect::<Result<Measured, BoxError>>()?;
    let time = |t: libc::timeval| Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64);
    let (user, sys) = (time(usage.ru_utime), time(usage.ru_stime));
    Ok(ChildRun { measured, cpu: user + sys, user, sys, load })
}

/// `wait4` on one pid, polled so the wait is bounded: past `timeout` the child is killed.
fn wait_bounded(pid: libc::pid_t, timeout: Duration) -> Result<(i32, libc::rusage), String> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut status = 0;
        // SAFETY: rusage is plain data, fully written by wait4 when it reaps the child.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: valid pointers to locals; WNOHANG returns at once.
        let reaped = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if reaped == pid {
            return Ok((status, usage));
        }
        if reaped < 0 {
            return Err(format!("wait4({pid}): {}", std::io::Error::last_os_error()));
        }
        if Instant::now() > deadline {
            // SAFETY: the pid is our unreaped child, so it cannot have been reused.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            return Err(format!("child {pid} still running after {timeout:?}; killed"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// This process's peak RSS (`VmHWM`). Read by the child itself: the peak `wait4` reports
/// includes the forked copy of the parent before `exec`, the harness's size rather than the
/// client's.
fn vm_hwm_kib() -> Result<f64, BoxError> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status.lines().find_map(|l| l.strip_prefix("VmHWM:")).ok_or("no VmHWM in /proc/self/status")?;
    Ok(line.trim().trim_end_matches("kB").trim().parse()?)
}

// ---------------------------------------------------------------------------------------------
// The children.

fn run_role(args: &[String]) -> Result<Measured, BoxError> {
    let [role, client, bootstrap, topic, group, count] = args else {
        return Err(format!("expected: role consume|commit CLIENT BOOTSTRAP TOPIC GROUP COUNT, got {args:?}").into());
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
/// covers fetching from the start and leaves out the join, whose length the broker sets.
type AssignedAt = Arc<Mutex<Option<SystemTime>>>;

struct AssignClock(AssignedAt);

impl ClientContext for AssignClock {}

impl ConsumerContext for AssignClock {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(_) = rebalance {
            self.0.lock().unwrap_or_else(PoisonError::into_inner).get_or_insert_with(SystemTime::now);
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
                *first.lock().unwrap_or_else(PoisonError::into_inner) = Some(record.at);
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
        let assigned = (*assigned.lock().unwrap_or_else(PoisonError::into_inner)).ok_or("no assignment seen")?;
        let seconds = self.last_message.and_then(|l| l.duration_since(assigned).ok()).unwrap_or_default().as_secs_f64();
        let rate = if seconds > 0.0 { self.count as f64 / seconds } else { 0.0 };
        Ok(Measured::from([
            ("messages".into(), self.count as f64),
            ("bytes".into(), self.bytes as f64),
            ("seconds".into(), seconds),
            ("rate".into(), rate),
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
            let bytes = batch.records.iter().map(|r| record_bytes(r.key.as_deref(), r.value.as_deref())).sum();
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

async fn commit_kgroup(properties: &[(&str, &str)], topic: &str, commits: usize) -> Result<Measured, BoxError> {
    let (mut consumer, _) = kgroup_consumer(properties, topic).await?;
    let mut timer = CommitTimer::new(commits);
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
    }
    tokio::time::timeout(Duration::from_secs(30), consumer.close()).await??;
    Ok(timer.measured())
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

/// One criterion benchmark read back from `target/criterion`.
struct Micro {
    id: String,
    /// Median time per iteration, nanoseconds.
    nanos: f64,
    bytes: Option<f64>,
}

/// Every benchmark of `benches/micro.rs` that criterion has estimates for.
fn criterion_results() -> Vec<Micro> {
    let root = std::env::var_os("CRITERION_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/criterion"));
    let mut found = Vec::new();
    let mut dirs = vec![root];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.file_name().is_some_and(|n| n == "new") {
                found.extend(read_micro(&path));
            } else if path.is_dir() && path.file_name().is_some_and(|n| n != "base" && n != "change") {
                dirs.push(path);
            }
        }
    }
    found.sort_by(|a, b| a.id.cmp(&b.id));
    found
}

fn read_micro(dir: &Path) -> Option<Micro> {
    let read = |name: &str| -> Option<serde_json::Value> {
        serde_json::from_str(&std::fs::read_to_string(dir.join(name)).ok()?).ok()
    };
    let benchmark = read("benchmark.json")?;
    let estimates = read("estimates.json")?;
    Some(Micro {
        id: benchmark["full_id"].as_str()?.to_string(),
        nanos: estimates["median"]["point_estimate"].as_f64()?,
        bytes: benchmark["throughput"]["Bytes"].as_f64(),
    })
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}", a / b)
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

fn rate(c: &ChildRun) -> f64 {
    c.measured.get("rate").copied().unwrap_or(0.0)
}

fn cpu_per_million(c: &ChildRun) -> f64 {
    c.cpu.as_secs_f64() * 1e6 / c.measured["messages"].max(1.0)
}

fn rss_mib(c: &ChildRun) -> f64 {
    c.measured["vm_hwm_kib"] / 1024.0
}

/// GB/s of a criterion benchmark with a byte throughput.
fn gbps(micro: &[Micro], id: &str) -> Option<f64> {
    micro.iter().find(|m| m.id == id).and_then(|m| m.bytes.map(|b| b / m.nanos))
}

/// The figures issue 7 sets targets for, one row each (the README shows this table).
fn summary(r: &Results, micro: &[Micro]) -> String {
    let (ck, cl) = (&r.consume["kgroup"], &r.consume["librdkafka"]);
    let (mk, ml) = (&r.commit["kgroup"], &r.commit["librdkafka"]);
    let stable = |f: &[scaleout::Figures], max: bool| -> f64 {
        let steps: Vec<f64> = f.iter().flat_map(|f| &f.steps).map(|s| s.stable.as_secs_f64() * 1e3).collect();
        if max {
            steps.iter().copied().fold(0.0, f64::max)
        } else {
            steps.iter().sum::<f64>() / steps.len().max(1) as f64
        }
    };
    let failed = |f: &[scaleout::Figures]| f.iter().flat_map(|f| &f.steps).map(|s| s.failed as f64).sum::<f64>();
    let (kg, rd, _) = &r.scaleout;
    let sum = |f: &[scaleout::Figures], get: fn(&scaleout::Figures) -> u64| f.iter().map(get).sum::<u64>() as f64;
    let rows: [(&str, f64, f64, usize, Target); 10] = [
        ("consume, messages/s", rate(ck), rate(cl), 0, Some((1.0, false))),
        ("consume, CPU-seconds per million messages", cpu_per_million(ck), cpu_per_million(cl), 3, Some((0.5, true))),
        ("consume, peak RSS (MiB)", rss_mib(ck), rss_mib(cl), 1, Some((0.25, true))),
        ("sync commit p50 (ms)", mk.measured["p50_ms"], ml.measured["p50_ms"], 3, None),
        ("sync commit p99 (ms)", mk.measured["p99_ms"], ml.measured["p99_ms"], 3, None),
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

fn results_markdown(r: &Results, messages: usize, commits: usize, members: usize) -> String {
    let mut out = String::from("# kgroup vs librdkafka: results\n\n");
    let _ = writeln!(
        out,
        "Written by `sh benches/compare.sh` (see `benches/README.md`). Sizes: {messages} messages, {commits} \
         timed commits, scale-out 2 -> {members} members. One run per client; the load average \
         (1, 5, 15 min) is recorded at the start and end of each measured part: on a busy machine \
         every figure moves, the ratios less than the absolute numbers.\n"
    );
    out.push_str("| machine | |\n|---|---|\n");
    let broker = format!("nisshi {NISSHI_VERSION}, in memory, 127.0.0.1, group.initial.rebalance.delay.ms = 500");
    for (k, v) in machine(vec![("broker", broker)]) {
        let _ = writeln!(out, "| {k} | {v} |");
    }

    let micro = criterion_results();
    out.push_str("\n## Summary: issue 7's targets\n\n");
    out.push_str(&summary(r, &micro));

    let (k, l) = (&r.consume["kgroup"], &r.consume["librdkafka"]);
    let _ = writeln!(
        out,
        "\n## Consume: {messages} keyed 100-byte messages, 72 partitions, one consumer per client\n\n\
         Produced with kgroup's producer (uncompressed, acks=all) in {:.1} s before the clients run (load {} -> {}). \
         Each client runs in a child process of its own; CPU is that process's \
         (`wait4`), peak RSS its `VmHWM` read by itself after closing the consumer. \
         Messages/s counts from the assignment (librdkafka's rebalance callback, kgroup's \
         `Assigned` event) to the last message.\n",
        r.produce.0.as_secs_f64(),
        r.produce.1 .0,
        r.produce.1 .1
    );
    out.push_str(TARGET_TABLE_HEAD);
    type Figure = fn(&ChildRun) -> f64;
    let rows: [(&str, Figure, usize, Target); 4] = [
        ("messages/s", rate, 0, Some((1.0, false))),
        ("CPU-seconds per million messages (user + sys)", cpu_per_million, 2, Some((0.5, true))),
        ("peak RSS (MiB)", rss_mib, 1, Some((0.25, true))),
        ("seconds from assignment to last message", |c| c.measured["seconds"], 2, None),
    ];
    for (label, get, decimals, target) in rows {
        ratio_row(&mut out, label, get(k), get(l), decimals, target);
    }
    let _ = writeln!(
        out,
        "| CPU user / sys (s) | {:.2} / {:.2} | {:.2} / {:.2} | | | |",
        k.user.as_secs_f64(),
        k.sys.as_secs_f64(),
        l.user.as_secs_f64(),
        l.sys.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "| messages consumed | {:.0} | {:.0} | | | |\n| load average start -> end | {} -> {} | {} -> {} | | | |",
        k.measured["messages"], l.measured["messages"], k.load.0, k.load.1, l.load.0, l.load.1
    );

    let (k, l) = (&r.commit["kgroup"], &r.commit["librdkafka"]);
    let _ = writeln!(
        out,
        "\n## Synchronous commit latency, steady state\n\n\
         One member per client alone in its group on the same topic; a batch of up to {COMMIT_BATCH} \
         messages, then a synchronous commit of its partitions' next offsets; the first {COMMIT_WARMUP} \
         commits are not timed.\n\n\
         | figure | kgroup | librdkafka | kgroup / librdkafka |\n|---|---|---|---|"
    );
    for (label, key, decimals) in [
        ("p50 (ms)", "p50_ms", 3),
        ("p99 (ms)", "p99_ms", 3),
        ("mean (ms)", "mean_ms", 3),
        ("partitions per commit", "partitions_per_commit", 2),
        ("commits timed", "commits", 0),
    ] {
        let (kv, lv) = (k.measured[key], l.measured[key]);
        let _ = writeln!(out, "| {label} | {kv:.decimals$} | {lv:.decimals$} | {} |", ratio(kv, lv));
    }
    let _ =
        writeln!(out, "| load average start -> end | {} -> {} | {} -> {} | |", k.load.0, k.load.1, l.load.0, l.load.1);

    let (kgroup, librdkafka, load) = &r.scaleout;
    let _ = writeln!(
        out,
        "\n## Group scale-out\n\n`shared/scaleout.rs`: the seed scenario (72 partitions, 2 -> {members} \
         members one at a time, batches of 1000, 20 ms of work, synchronous commits, 10 000 msg/s \
         produced meanwhile), both clients with session.timeout.ms 10000 and heartbeat.interval.ms \
         500 (see `benches/README.md`). Load {} -> {}. Target: time to stable per step at most 1x.\n",
        load.0, load.1
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

    out.push_str("\n## Settings\n\nBoth clients (consume and commit latency):\n\n");
    for (k, v) in COMMON {
        let _ = writeln!(out, "- `{k}` = `{v}`");
    }
    out.push_str("\nlibrdkafka only:\n\n");
    for (k, v) in LIBRDKAFKA_ONLY {
        let _ = writeln!(out, "- `{k}` = `{v}`");
    }
    let _ = writeln!(
        out,
        "\nkgroup only: {KGROUP_ONLY}. kgroup runs on tokio's default multi-thread runtime; librdkafka's \
         `BaseConsumer::poll` is called from the main thread, one message per call."
    );
    out
}
