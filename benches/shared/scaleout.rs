//! The side-by-side scale-out scenario, shared by `benches/scaleout.rs` (this scenario alone,
//! several runs) and `benches/compare.rs` (the whole comparison, one run).
//!
//! One embedded nisshi broker, a 72-partition topic per run, 72 000 keyed messages produced up
//! front plus 10 000/s while the group scales out from 2 to `members` members, one member at a
//! time after the group is stable again. Every member processes batches of up to 1000 messages
//! (20 ms of simulated work) and commits each batch synchronously. The kgroup side is the demo's
//! seed scenario (`src/bin/demo/scenario.rs`, included as is); the librdkafka side runs the same
//! steps with `rdkafka::consumer::BaseConsumer` members in threads. This measures; it does not
//! assert correctness.

#[allow(dead_code)]
#[path = "../../src/bin/demo/scenario.rs"]
mod scenario;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kgroup::embedded::{BrokerOptions, EmbeddedBroker};
use kgroup::producer::{Acks, Compression, Producer, ProducerConfig};
use kgroup::{Cluster, ClusterConfig};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
pub use scenario::BoxError;
use scenario::{produce, LogEnd};

const PARTITIONS: i32 = 72;
const INITIAL_MESSAGES: usize = 72_000;
const PRODUCE_RATE: usize = 10_000;
const BATCH_SIZE: usize = 1000;
const PROCESSING_TIME: Duration = Duration::from_millis(20);
const STEADY: Duration = Duration::from_millis(500);
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(120);

/// One scale-out step: the group grew to `members`.
#[derive(Debug, Clone)]
pub struct Step {
    pub members: usize,
    /// From adding the member to every member stable in one generation covering the partitions.
    pub stable: Duration,
    /// Partition commits fenced or failed while this step ran (kgroup: outcomes; librdkafka:
    /// partitions of failed `commit()` calls); the last step includes the drain.
    pub failed: u64,
}

/// The figures of one run of one client.
#[derive(Debug, Default, Clone)]
pub struct Figures {
    wall: Duration,
    produced: u64,
    processed: u64,
    pub duplicates: u64,
    pub lost: u64,
    /// Per-partition commit outcomes (kgroup) / partitions in committed batches (librdkafka).
    commits_attempted: u64,
    commits_failed: u64,
    /// librdkafka: `commit()` calls.
    commit_calls: Option<u64>,
    /// librdkafka: failed `commit()` calls by error code; kgroup: outcomes.
    breakdown: BTreeMap<&'static str, u64>,
    pub steps: Vec<Step>,
}

impl Figures {
    fn avg_stable(&self) -> Duration {
        self.steps.iter().map(|s| s.stable).sum::<Duration>() / self.steps.len().max(1) as u32
    }
    fn max_stable(&self) -> Duration {
        self.steps.iter().map(|s| s.stable).max().unwrap_or_default()
    }
}

/// The broker every bench runs on: nisshi in memory on 127.0.0.1, with a 500 ms initial
/// rebalance delay (Kafka's 3 s would dominate the first step).
pub async fn start_broker() -> Result<EmbeddedBroker, BoxError> {
    Ok(EmbeddedBroker::start(BrokerOptions {
        initial_rebalance_delay: Duration::from_millis(500),
        ..Default::default()
    })
    .await?)
}

/// A size knob from the environment (`KGROUP_BENCH_*`), `default` when unset or not a number.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok()).unwrap_or(default)
}

/// Runs the scenario `runs` times per client on the broker at `bootstrap`, alternating clients.
pub async fn run_all(bootstrap: &str, members: usize, runs: usize) -> Result<(Vec<Figures>, Vec<Figures>), BoxError> {
    let (mut kgroup, mut librdkafka) = (Vec::new(), Vec::new());
    let id = std::process::id();
    for run in 0..runs {
        let name = format!("bench-kgroup-{id}-{run}");
        let f = run_kgroup(bootstrap, &name, members).await?;
        eprintln!("run {run} kgroup: {f:?}");
        kgroup.push(f);
        let name = format!("bench-rdkafka-{id}-{run}");
        let f = run_librdkafka(bootstrap, &name, members).await?;
        eprintln!("run {run} librdkafka: {f:?}");
        librdkafka.push(f);
    }
    Ok((kgroup, librdkafka))
}

// ---------------------------------------------------------------------------------------------
// kgroup: the demo's seed scenario.

async fn run_kgroup(bootstrap: &str, name: &str, members: usize) -> Result<Figures, BoxError> {
    let settings = scenario::Settings {
        bootstrap: bootstrap.to_string(),
        topic: name.to_string(),
        group: name.to_string(),
        partitions: PARTITIONS,
        members: (2..=members).collect(),
        initial_messages: INITIAL_MESSAGES,
        produce_rate: PRODUCE_RATE,
        batch_size: BATCH_SIZE,
        processing_time: PROCESSING_TIME,
        rebalance_callback_timeout: Duration::from_secs(20),
        steady: STEADY,
        converge_timeout: CONVERGE_TIMEOUT,
        assignment_strategy: "range".into(),
    };
    let started = Instant::now();
    let report = scenario::run(settings, &|_: &str| {}, &|_, _| {}).await?;
    let wall = started.elapsed();
    let sum = |f: fn(&scenario::StepReport) -> u64| report.steps.iter().map(f).sum::<u64>();
    let (committed, restamped, fenced, failed) =
        (sum(|s| s.committed), sum(|s| s.restamped), sum(|s| s.fenced), sum(|s| s.failed));
    let breakdown =
        BTreeMap::from([("Committed", committed), ("re-stamped", restamped), ("Fenced", fenced), ("Failed", failed)]);
    Ok(Figures {
        wall,
        produced: report.produced,
        processed: sum(|s| s.processed),
        duplicates: report.duplicates,
        lost: report.lost,
        commits_attempted: committed + fenced + failed,
        commits_failed: fenced + failed,
        commit_calls: None,
        breakdown,
        steps: report
            .steps
            .iter()
            .map(|s| Step { members: s.members, stable: s.time_to_stable, failed: s.fenced + s.failed })
            .collect(),
    })
}

// ---------------------------------------------------------------------------------------------
// librdkafka: the same steps with BaseConsumer members in threads.

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[derive(Default)]
struct RdLedger {
    seen: BTreeMap<i32, BTreeSet<i64>>,
    processed: u64,
    duplicates: u64,
    commit_calls: u64,
    partitions_attempted: u64,
    partitions_failed: u64,
    failed_calls: BTreeMap<&'static str, u64>,
    other_codes: BTreeMap<String, u64>,
}

/// Tracks the member's current assignment through the rebalance callbacks.
struct Ctx {
    owned: Arc<Mutex<Vec<i32>>>,
}

impl ClientContext for Ctx {}

impl ConsumerContext for Ctx {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(_) = rebalance {
            lock(&self.owned).clear();
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => *lock(&self.owned) = tpl.elements().iter().map(|e| e.partition()).collect(),
            Rebalance::Revoke(_) => lock(&self.owned).clear(),
            Rebalance::Error(_) => {}
        }
    }
}

struct Member {
    owned: Arc<Mutex<Vec<i32>>>,
    thread: JoinHandle<Result<(), String>>,
}

struct Shared {
    ledger: Mutex<RdLedger>,
    in_flight: AtomicU64,
    stop: AtomicBool,
}

async fn run_librdkafka(bootstrap: &str, name: &str, members: usize) -> Result<Figures, BoxError> {
    let started = Instant::now();
    let cluster = Cluster::connect(ClusterConfig::from_bootstrap_servers(bootstrap)?).await?;
    cluster.create_topic(name, PARTITIONS, 1).await?;
    let producer = Arc::new(Producer::new(
        cluster.clone(),
        ProducerConfig { acks: Acks::All, compression: Compression::Lz4, ..Default::default() },
    )?);
    let log_end: LogEnd = Arc::default();
    let mut next_key = 0usize;
    produce(&producer, name, &mut next_key, INITIAL_MESSAGES, &log_end).await?;
    let stop_producing = Arc::new(AtomicBool::new(false));
    let writer = {
        let (producer, topic, log_end, stop) =
            (producer.clone(), name.to_string(), log_end.clone(), stop_producing.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                produce(&producer, &topic, &mut next_key, PRODUCE_RATE / 10, &log_end).await?;
            }
            Ok::<u64, BoxError>(next_key as u64)
        })
    };

    let shared =
        Arc::new(Shared { ledger: Mutex::default(), in_flight: AtomicU64::new(0), stop: AtomicBool::new(false) });
    let mut group: Vec<Member> = Vec::new();
    let mut steps = Vec::new();
    let failed_so_far = || lock(&shared.ledger).partitions_failed;
    let outcome: Result<(), BoxError> = async {
        for size in 2..=members {
            let step_started = Instant::now();
            let failed_before = failed_so_far();
            while group.len() < size {
                group.push(spawn_member(bootstrap, name, shared.clone())?);
            }
            converge_rd(&group).await?;
            let stable = step_started.elapsed();
            tokio::time::sleep(STEADY).await;
            steps.push(Step { members: size, stable, failed: failed_so_far() - failed_before });
        }
        Ok(())
    }
    .await;
    stop_producing.store(true, Ordering::Relaxed);
    let produced = writer.await??;
    // Drain: every produced offset processed and no batch between processing and commit.
    if outcome.is_ok() {
        let ends = lock(&log_end).clone();
        let deadline = Instant::now() + CONVERGE_TIMEOUT;
        loop {
            let processed_all = {
                let ledger = lock(&shared.ledger);
                ends.iter().all(|(p, end)| ledger.seen.get(p).is_some_and(|s| s.len() as i64 >= *end))
            };
            if (processed_all && shared.in_flight.load(Ordering::SeqCst) == 0) || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    shared.stop.store(true, Ordering::SeqCst);
    let mut thread_errors = Vec::new();
    for member in group {
        match tokio::task::spawn_blocking(move || member.thread.join()).await? {
            Ok(Ok(())) => {}
            Ok(Err(e)) => thread_errors.push(e),
            Err(_) => thread_errors.push("member thread panicked".into()),
        }
    }
    let wall = started.elapsed();
    outcome?;
    if !thread_errors.is_empty() {
        return Err(format!("librdkafka members failed: {thread_errors:?}").into());
    }
    let ledger = lock(&shared.ledger);
    let before_last: u64 = steps.iter().rev().skip(1).map(|s| s.failed).sum();
    if let Some(last) = steps.last_mut() {
        last.failed = ledger.partitions_failed - before_last;
    }
    let ends = lock(&log_end).clone();
    let lost = ends
        .iter()
        .map(|(p, end)| {
            let seen = ledger.seen.get(p);
            (0..*end).filter(|o| !seen.is_some_and(|s| s.contains(o))).count() as u64
        })
        .sum();
    if !ledger.other_codes.is_empty() {
        eprintln!("librdkafka commit errors counted as other: {:?}", ledger.other_codes);
    }
    Ok(Figures {
        wall,
        produced,
        processed: ledger.processed,
        duplicates: ledger.duplicates,
        lost,
        commits_attempted: ledger.partitions_attempted,
        commits_failed: ledger.partitions_failed,
        commit_calls: Some(ledger.commit_calls),
        breakdown: ledger.failed_calls.clone(),
        steps,
    })
}

fn spawn_member(bootstrap: &str, topic: &str, shared: Arc<Shared>) -> Result<Member, BoxError> {
    let owned = Arc::new(Mutex::new(Vec::new()));
    let consumer: BaseConsumer<Ctx> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .set("group.id", topic)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "range")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "500")
        .set("max.poll.interval.ms", "60000")
        .set("fetch.wait.max.ms", "100")
        .create_with_context(Ctx { owned: owned.clone() })?;
    consumer.subscribe(&[topic])?;
    let topic = topic.to_string();
    let thread = std::thread::spawn(move || member_loop(&consumer, &topic, &shared));
    Ok(Member { owned, thread })
}

fn member_loop(consumer: &BaseConsumer<Ctx>, topic: &str, shared: &Shared) -> Result<(), String> {
    let mut batch: Vec<(i32, i64)> = Vec::with_capacity(BATCH_SIZE);
    while !shared.stop.load(Ordering::SeqCst) {
        batch.clear();
        while batch.len() < BATCH_SIZE {
            let timeout = if batch.is_empty() { Duration::from_millis(200) } else { Duration::ZERO };
            match consumer.poll(timeout) {
                Some(Ok(m)) => batch.push((m.partition(), m.offset())),
                Some(Err(_)) | None => break,
            }
        }
        if batch.is_empty() {
            continue;
        }
        shared.in_flight.fetch_add(1, Ordering::SeqCst);
        let mut next: BTreeMap<i32, i64> = BTreeMap::new();
        {
            let mut ledger = lock(&shared.ledger);
            for &(p, o) in &batch {
                ledger.processed += 1;
                if !ledger.seen.entry(p).or_default().insert(o) {
                    ledger.duplicates += 1;
                }
                let n = next.entry(p).or_default();
                *n = (*n).max(o + 1);
            }
        }
        std::thread::sleep(PROCESSING_TIME);
        let mut tpl = TopicPartitionList::new();
        for (&p, &o) in &next {
            tpl.add_partition_offset(topic, p, Offset::Offset(o)).map_err(|e| e.to_string())?;
        }
        let result = consumer.commit(&tpl, CommitMode::Sync);
        {
            let mut ledger = lock(&shared.ledger);
            ledger.commit_calls += 1;
            ledger.partitions_attempted += next.len() as u64;
            if let Err(e) = result {
                ledger.partitions_failed += next.len() as u64;
                let kind = match e.rdkafka_error_code() {
                    Some(RDKafkaErrorCode::IllegalGeneration) => "ILLEGAL_GENERATION",
                    Some(RDKafkaErrorCode::RebalanceInProgress) => "REBALANCE_IN_PROGRESS",
                    Some(RDKafkaErrorCode::UnknownMemberId) => "UNKNOWN_MEMBER_ID",
                    _ => {
                        let code = match &e {
                            KafkaError::ConsumerCommit(code) => format!("{code:?}"),
                            other => other.to_string(),
                        };
                        *ledger.other_codes.entry(code).or_default() += 1;
                        "other"
                    }
                };
                *ledger.failed_calls.entry(kind).or_default() += 1;
            }
        }
        shared.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
    Ok(())
}

/// Every member owns a non-empty set and the sets cover the partitions exactly once.
async fn converge_rd(group: &[Member]) -> Result<(), BoxError> {
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    loop {
        let mut owned = Vec::new();
        let mut all_assigned = true;
        for m in group {
            let o = lock(&m.owned);
            all_assigned &= !o.is_empty();
            owned.extend(o.iter().copied());
        }
        owned.sort_unstable();
        if all_assigned && owned == (0..PARTITIONS).collect::<Vec<_>>() {
            return Ok(());
        }
        if group.iter().any(|m| m.thread.is_finished()) {
            return Err("a librdkafka member thread ended early".into());
        }
        if Instant::now() > deadline {
            return Err(
                format!("{} librdkafka members did not converge within {CONVERGE_TIMEOUT:?}", group.len()).into()
            );
        }
        tokio::time::sleep(scenario::CONVERGE_POLL).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The table.

fn stats(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[0], v[v.len() / 2], v[v.len() - 1])
}

/// Min / median / max of every figure per client, and the ratio of the medians.
pub fn table(members: usize, runs: usize, kgroup: &[Figures], librdkafka: &[Figures]) -> String {
    type Get = Box<dyn Fn(&Figures) -> Option<f64>>;
    let count = |f: fn(&Figures) -> u64| -> Get { Box::new(move |x| Some(f(x) as f64)) };
    let kg_outcome = |k: &'static str| -> Get {
        Box::new(move |x: &Figures| x.commit_calls.is_none().then(|| *x.breakdown.get(k).unwrap_or(&0) as f64))
    };
    let rd_error = |k: &'static str| -> Get {
        Box::new(move |x: &Figures| x.commit_calls.is_some().then(|| *x.breakdown.get(k).unwrap_or(&0) as f64))
    };
    // (figure, getter, decimals, ratio meaningful)
    let rows: Vec<(&str, Get, usize, bool)> = vec![
        ("total wall time (s)", Box::new(|x: &Figures| Some(x.wall.as_secs_f64())), 1, true),
        ("messages produced", count(|x| x.produced), 0, false),
        ("messages processed", count(|x| x.processed), 0, true),
        ("duplicates", count(|x| x.duplicates), 0, true),
        ("lost", count(|x| x.lost), 0, false),
        ("partition commits attempted", count(|x| x.commits_attempted), 0, true),
        ("partition commits failed", count(|x| x.commits_failed), 0, true),
        ("commit() calls", Box::new(|x: &Figures| x.commit_calls.map(|c| c as f64)), 0, false),
        ("kgroup: Committed", kg_outcome("Committed"), 0, false),
        ("kgroup: of which re-stamped", kg_outcome("re-stamped"), 0, false),
        ("kgroup: Fenced", kg_outcome("Fenced"), 0, false),
        ("kgroup: Failed", kg_outcome("Failed"), 0, false),
        ("librdkafka failed calls: ILLEGAL_GENERATION", rd_error("ILLEGAL_GENERATION"), 0, false),
        ("librdkafka failed calls: REBALANCE_IN_PROGRESS", rd_error("REBALANCE_IN_PROGRESS"), 0, false),
        ("librdkafka failed calls: UNKNOWN_MEMBER_ID", rd_error("UNKNOWN_MEMBER_ID"), 0, false),
        ("librdkafka failed calls: other", rd_error("other"), 0, false),
        ("avg time to stable per step (ms)", Box::new(|x: &Figures| Some(x.avg_stable().as_secs_f64() * 1e3)), 0, true),
        ("max time to stable per step (ms)", Box::new(|x: &Figures| Some(x.max_stable().as_secs_f64() * 1e3)), 0, true),
    ];
    let mut out = format!(
        "Scale-out 2 -> {members} members, 72 partitions, batches of 1000, sync commits; {runs} run(s) per client\n\n\
         | figure | kgroup min / median / max | librdkafka min / median / max | kgroup / librdkafka (median) |\n\
         |---|---|---|---|\n"
    );
    for (label, get, decimals, ratio) in rows {
        let column = |figures: &[Figures]| -> (String, Option<f64>) {
            let values: Vec<f64> = figures.iter().filter_map(&get).collect();
            if values.is_empty() {
                return ("—".into(), None);
            }
            let (min, median, max) = stats(values);
            (format!("{min:.decimals$} / {median:.decimals$} / {max:.decimals$}"), Some(median))
        };
        let (k, km) = column(kgroup);
        let (r, rm) = column(librdkafka);
        let ratio = match (ratio, km, rm) {
            (true, Some(k), Some(r)) if r > 0.0 => format!("{:.2}", k / r),
            _ => "—".into(),
        };
        out.push_str(&format!("| {label} | {k} | {r} | {ratio} |\n"));
    }
    out
}

/// Time to stable and failed partition commits per step, the median over the runs of each
/// client, with the ratio of the times.
pub fn step_table(kgroup: &[Figures], librdkafka: &[Figures]) -> String {
    let median = |runs: &[Figures], i: usize, get: fn(&Step) -> f64| -> Option<f64> {
        let values: Vec<f64> = runs.iter().filter_map(|f| f.steps.get(i).map(get)).collect();
        (!values.is_empty()).then(|| stats(values).1)
    };
    let stable = |s: &Step| s.stable.as_secs_f64() * 1e3;
    let failed = |s: &Step| s.failed as f64;
    let steps = kgroup.iter().chain(librdkafka).map(|f| f.steps.len()).max().unwrap_or(0);
    let mut out = String::from(
        "| members | kgroup time to stable (ms) | librdkafka time to stable (ms) | kgroup / librdkafka \
         | kgroup commits fenced or failed | librdkafka commits failed |\n|---|---|---|---|---|---|\n",
    );
    let cell = |v: Option<f64>| v.map_or("—".to_string(), |v| format!("{v:.0}"));
    for i in 0..steps {
        let members = kgroup.iter().chain(librdkafka).find_map(|f| f.steps.get(i)).map_or(0, |s| s.members);
        let (k, r) = (median(kgroup, i, stable), median(librdkafka, i, stable));
        let ratio = match (k, r) {
            (Some(k), Some(r)) if r > 0.0 => format!("{:.2}", k / r),
            _ => "—".into(),
        };
        out.push_str(&format!(
            "| {members} | {} | {} | {ratio} | {} | {} |\n",
            cell(k),
            cell(r),
            cell(median(kgroup, i, failed)),
            cell(median(librdkafka, i, failed))
        ));
    }
    out
}
