//! How a kgroup group's cost grows with its members and its partitions, shared by
//! `benches/scaling.rs` (this part alone) and `benches/compare.rs` (into `RESULTS.md`).
//!
//! Per topic size (`KGROUP_BENCH_SCALING_PARTITIONS`, default 72, 1 000 and 10 000 partitions)
//! and group size (`KGROUP_BENCH_SCALING_MEMBERS`, default 1, 10, 30 and 100), one child process
//! (the bench binary re-executed with `role scaling ...`) runs that many `GroupConsumer` members
//! of one new group on an empty topic, each polling in a task of its own as an idle application
//! would. Once the group is stable (every member `Stable` in one generation, the partitions
//! covered exactly once) and has settled, the child measures its own CPU time over an idle window
//! (`KGROUP_BENCH_SCALING_IDLE_S`, default 10 s: heartbeats, and the fetch long polls of an empty
//! topic) and its resident set; then one more member joins and the time until the group is stable
//! again is taken. The broker runs in a process of its own, so none of its work is counted. The
//! leader's assignor cost comes from `benches/micro.rs`'s `assign/*` estimates. This measures; it
//! asserts nothing.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use kgroup::driver::group::GroupObserver;
use kgroup::group::StateKind;
use kgroup::{Cluster, ClusterConfig, ConsumerConfig, GroupConsumer};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::child::{proc_status_kib, process_cpu, role_command, run_child, ChildRun, Measured};
use crate::criterion::Micro;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Every member's settings: the comparison's group timings, the range assignor (eager).
const PROPERTIES: &[(&str, &str)] = &[
    ("enable.auto.commit", "false"),
    ("auto.offset.reset", "earliest"),
    ("partition.assignment.strategy", "range"),
    ("session.timeout.ms", "10000"),
    ("heartbeat.interval.ms", "500"),
    ("fetch.wait.max.ms", "500"),
];
/// Bound on one group's formation or rebalance.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(120);
/// How often convergence is checked: the resolution of the times to stable. Every check takes a
/// snapshot of every member (its whole assignment), so it is not much finer at 100 members.
const CONVERGE_POLL: Duration = Duration::from_millis(20);
/// After the group is stable, its members' first offset lookups and fetches finish before the
/// resident set and the idle CPU are read.
const SETTLE: Duration = Duration::from_secs(2);

/// The sizes measured.
#[derive(Debug, Clone)]
pub struct Sizes {
    pub members: Vec<usize>,
    pub partitions: Vec<i32>,
    pub idle: Duration,
}

impl Sizes {
    /// From `KGROUP_BENCH_SCALING_*` (comma-separated lists), the sizes by default.
    pub fn from_env() -> Result<Sizes, BoxError> {
        fn list<T: std::str::FromStr>(name: &str, default: &str) -> Result<Vec<T>, BoxError> {
            let text = std::env::var(name).unwrap_or_else(|_| default.into());
            let values: Vec<T> = text
                .split(',')
                .filter(|v| !v.trim().is_empty())
                .map(|v| v.trim().parse().map_err(|_| format!("{name}: not a number: {v:?}")))
                .collect::<Result<_, _>>()?;
            if values.is_empty() {
                return Err(format!("{name}: empty").into());
            }
            Ok(values)
        }
        let idle: f64 = std::env::var("KGROUP_BENCH_SCALING_IDLE_S").ok().and_then(|v| v.parse().ok()).unwrap_or(10.0);
        Ok(Sizes {
            members: list("KGROUP_BENCH_SCALING_MEMBERS", "1,10,30,100")?,
            partitions: list("KGROUP_BENCH_SCALING_PARTITIONS", "72,1000,10000")?,
            idle: Duration::from_secs_f64(idle.max(0.1)),
        })
    }
}

/// One measured group: `members` on a topic of `partitions`.
#[derive(Debug, Clone)]
pub struct Point {
    pub partitions: i32,
    pub members: usize,
    /// The child's run, or why the broker could not have the topic (Kafka 3.6's KRaft controller
    /// refuses a CreateTopics of more than 9 999 partitions: one record each, plus the topic's,
    /// at most 10 000 per request).
    pub run: Result<ChildRun, String>,
}

impl Point {
    fn get(&self, key: &str) -> f64 {
        self.run.as_ref().ok().and_then(|r| r.measured.get(key).copied()).unwrap_or(f64::NAN)
    }

    /// CPU milliseconds per member per second of the idle window.
    fn idle_cpu_per_member(&self) -> f64 {
        self.get("idle_cpu_s") * 1e3 / self.get("idle_window_s") / self.members as f64
    }

    /// Resident set added per member once the group is stable, KiB.
    fn rss_per_member(&self) -> f64 {
        (self.get("rss_kib") - self.get("rss_base_kib")) / self.members as f64
    }
}

/// Every size, one child each; a topic per partition count on the broker at `bootstrap`.
pub async fn run(bootstrap: &str, sizes: &Sizes) -> Result<Vec<Point>, BoxError> {
    let cluster = Cluster::connect(ClusterConfig::from_bootstrap_servers(bootstrap)?).await?;
    let mut points = Vec::new();
    for &partitions in &sizes.partitions {
        let topic = format!("scaling-{}-{partitions}", std::process::id());
        let created = cluster.create_topic(&topic, partitions, 1).await.map_err(|e| e.to_string());
        for &members in &sizes.members {
            let run = match &created {
                Ok(()) => {
                    let idle = format!("{}", sizes.idle.as_secs_f64());
                    let args = ["scaling", bootstrap, &topic, &partitions.to_string(), &members.to_string(), &idle];
                    Ok(run_child(role_command(&args)?).await?)
                }
                Err(e) => Err(format!("no topic of {partitions} partitions: {e}")),
            };
            eprintln!("scaling {members} members x {partitions} partitions: {:?}", run.as_ref().map(|r| &r.measured));
            points.push(Point { partitions, members, run });
        }
    }
    Ok(points)
}

/// The child: `scaling BOOTSTRAP TOPIC PARTITIONS MEMBERS IDLE_SECONDS`.
pub fn role(args: &[String]) -> Result<Measured, BoxError> {
    let [bootstrap, topic, partitions, members, idle] = args else {
        return Err(format!("expected: scaling BOOTSTRAP TOPIC PARTITIONS MEMBERS IDLE_SECONDS, got {args:?}").into());
    };
    let idle = Duration::from_secs_f64(idle.parse()?);
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(measure(
        bootstrap,
        topic,
        partitions.parse()?,
        members.parse()?,
        idle,
    ))
}

async fn measure(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    members: usize,
    idle: Duration,
) -> Result<Measured, BoxError> {
    let rss_base = proc_status_kib("VmRSS")?;
    let group_id = format!("scaling-{}", std::process::id());
    let mut group = Group::new(bootstrap, topic, &group_id);
    let started = Instant::now();
    for _ in 0..members {
        group.add().await?;
    }
    group.converge(partitions).await?;
    let formed = started.elapsed();
    tokio::time::sleep(SETTLE).await;
    let rss = proc_status_kib("VmRSS")?;
    let (cpu, window) = (process_cpu(), Instant::now());
    tokio::time::sleep(idle).await;
    let (idle_cpu, window) = (process_cpu().saturating_sub(cpu), window.elapsed());
    let joined = Instant::now();
    group.add().await?;
    group.converge(partitions).await?;
    let join = joined.elapsed();
    group.close().await?;
    Ok(Measured::from([
        ("formed_ms".into(), formed.as_secs_f64() * 1e3),
        ("join_ms".into(), join.as_secs_f64() * 1e3),
        ("idle_cpu_s".into(), idle_cpu.as_secs_f64()),
        ("idle_window_s".into(), window.as_secs_f64()),
        ("rss_base_kib".into(), rss_base),
        ("rss_kib".into(), rss),
    ]))
}

/// The members of one group, each polling in a task until told to stop.
struct Group {
    properties: Vec<(String, String)>,
    topic: String,
    observers: Vec<GroupObserver>,
    tasks: JoinSet<Result<(), String>>,
    stop: watch::Sender<bool>,
}

impl Group {
    fn new(bootstrap: &str, topic: &str, group_id: &str) -> Group {
        let properties = [("bootstrap.servers", bootstrap), ("group.id", group_id)]
            .iter()
            .chain(PROPERTIES)
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Group {
            properties,
            topic: topic.into(),
            observers: Vec::new(),
            tasks: JoinSet::new(),
            stop: watch::channel(false).0,
        }
    }

    async fn add(&mut self) -> Result<(), BoxError> {
        let config = ConsumerConfig::from_properties(self.properties.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
        let mut consumer = GroupConsumer::subscribe(config, &[&self.topic]).await?;
        self.observers.push(consumer.observer());
        let mut stop = self.stop.subscribe();
        self.tasks.spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.changed() => break,
                    polled = consumer.poll(500, Duration::from_secs(1)) => {
                        polled.map_err(|e| e.to_string())?;
                    }
                }
            }
            tokio::time::timeout(Duration::from_secs(30), consumer.close())
                .await
                .map_err(|_| "close timed out".to_string())?
                .map_err(|e| e.to_string())
        });
        Ok(())
    }

    /// Waits (bounded) until every member is Stable in one generation and the topic's
    /// partitions are covered exactly once.
    async fn converge(&self, partitions: i32) -> Result<(), BoxError> {
        let deadline = Instant::now() + CONVERGE_TIMEOUT;
        loop {
            let mut snapshots = JoinSet::new();
            for observer in &self.observers {
                let observer = observer.clone();
                snapshots.spawn(async move { observer.group_state().await });
            }
            let (mut stable, mut generations, mut owned) = (0, BTreeSet::new(), Vec::new());
            while let Some(snapshot) = snapshots.join_next().await {
                let s = snapshot??;
                stable += usize::from(s.state == StateKind::Stable);
                generations.insert(s.generation.map(|g| g.id.0));
                owned.extend(s.assignment.iter().map(|p| p.partition.partition));
            }
            owned.sort_unstable();
            let covered = owned.len() == partitions as usize && owned.iter().copied().eq(0..partitions);
            if stable == self.observers.len() && generations.len() == 1 && covered {
                return Ok(());
            }
            if Instant::now() > deadline {
                let n = self.observers.len();
                return Err(format!("{n} members not stable within {CONVERGE_TIMEOUT:?}: {stable} stable").into());
            }
            tokio::time::sleep(CONVERGE_POLL).await;
        }
    }

    /// Stops every member's loop and closes it (LeaveGroup).
    async fn close(mut self) -> Result<(), BoxError> {
        self.stop.send_replace(true);
        while let Some(closed) = self.tasks.join_next().await {
            closed??;
        }
        Ok(())
    }
}

/// The per-member table of one broker.
pub fn table(points: &[Point]) -> String {
    let mut out = String::from(
        "| partitions | members | group formed (ms) | time to stable, one more member joins (ms) | \
         idle CPU per member (ms per s) | RSS per member (KiB) | process idle CPU (ms per s) | \
         process RSS (MiB) |\n|---|---|---|---|---|---|---|---|\n",
    );
    for p in points {
        if let Err(e) = &p.run {
            let _ = writeln!(out, "| {} | {} | not run: {e} | | | | | |", p.partitions, p.members);
            continue;
        }
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {:.0} | {:.3} | {:.0} | {:.1} | {:.1} |",
            p.partitions,
            p.members,
            p.get("formed_ms"),
            p.get("join_ms"),
            p.idle_cpu_per_member(),
            p.rss_per_member(),
            p.get("idle_cpu_s") * 1e3 / p.get("idle_window_s"),
            p.get("rss_kib") / 1024.0,
        );
    }
    out
}

/// `assign/*` of `benches/micro.rs`: every assignor at 10 and 100 members x 1 000 and 10 000
/// partitions, with the growth factors that tell linear (10x) from worse.
pub fn assignor_table(micro: &[Micro]) -> String {
    let sizes = [(10, 1_000), (100, 1_000), (10, 10_000), (100, 10_000)];
    let mut out = String::from(
        "\nThe leader's assignment (`benches/micro.rs`, `assign/*`, criterion medians): one new member \
         beside members that own a balanced share, `cooperative-sticky` with KIP-429's first-round \
         adjustment. The last two columns are the growth factors of 10x members (at 10 000 \
         partitions) and of 10x partitions (at 100 members); 10 is linear.\n\n| assignor |",
    );
    for (m, p) in sizes {
        let _ = write!(out, " {m} x {p} (ms) |");
    }
    out.push_str(" 10x members | 10x partitions |\n|---|---|---|---|---|---|---|\n");
    let time = |name: &str, m: usize, p: usize| {
        micro.iter().find(|x| x.id == format!("assign/{name}/{m} members x {p} partitions")).map(|x| x.nanos / 1e6)
    };
    for name in ["range", "roundrobin", "sticky", "cooperative-sticky"] {
        let _ = write!(out, "| {name} |");
        for (m, p) in sizes {
            let _ = write!(out, " {} |", time(name, m, p).map_or("—".into(), |t| format!("{t:.3}")));
        }
        let growth = |a: Option<f64>, b: Option<f64>| a.zip(b).map_or("—".into(), |(a, b)| format!("{:.1}", b / a));
        let _ = writeln!(
            out,
            " {} | {} |",
            growth(time(name, 10, 10_000), time(name, 100, 10_000)),
            growth(time(name, 100, 1_000), time(name, 100, 10_000))
        );
    }
    out
}
