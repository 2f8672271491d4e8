//! Apache Kafka 3.6.2 itself, the reference broker: assembled from Maven Central and started with
//! `java` in KRaft mode (combined broker + controller nodes on 127.0.0.1), one node or a cluster.
//!
//! The jars are resolved once into the cache directory (`KGROUP_CACHE_DIR`, default
//! `~/.cache/kgroup`, as for nisshi) with `mvn dependency:copy-dependencies` from
//! `integration/kafka36/pom.xml` (compiled into this module, so the crate needs no checkout);
//! `KGROUP_KAFKA36_LIBS` names a directory of jars to use instead. Each start writes one
//! `server.properties` per node for free loopback ports, formats the KRaft storage, starts
//! `kafka.Kafka`, and waits (bounded) for `Kafka Server started` in every node's log, an
//! ApiVersions round trip, and a group coordinator: `__consumer_offsets` exists with a leader on
//! every partition, so clients never see the COORDINATOR_NOT_AVAILABLE of a brand-new cluster.
//!
//! Nodes are killed when the handle drops, or when this process dies (`PR_SET_PDEATHSIG`). Their
//! logs are kept in the run directory: a handle dropped while its thread panics (a failing test)
//! prints every node's log tail and leaves the directory in place; `KGROUP_KAFKA36_KEEP=1` keeps
//! it always.
//!
//! Kafka 3.6's group coordinator is the classic one (the KIP-848 one needs the internal flag
//! `group.coordinator.new.enable`, never set here), which logs every group transition at INFO:
//! [`Kafka36Cluster::log`] is the broker-side ground truth for tests.
//!
//! [`Kafka36Options::release`] starts a Kafka 4 release the same way instead (resolved from
//! `integration/kafka4/pom.xml`): the brokers of KIP-848's consumer group protocol
//! (`ConsumerGroupHeartbeat`), which Kafka 4.0 made generally available.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use kafka_protocol::messages::{GroupId, OffsetFetchRequest};
use kafka_protocol::protocol::StrBytes;

use super::{cache_dir, die_with_parent, free_port, FileLock};
use crate::driver::connection::{Connection, ConnectionConfig};
use crate::{Cluster, ClusterConfig};

/// The Kafka release started here: the newest 3.6.x, whose classic group coordinator the
/// conformance suite describes case by case.
pub const KAFKA_VERSION: &str = "3.6.2";

/// The pom that resolves the broker's jars (core, its runtime dependencies, the reload4j binding
/// the release tarball adds); it also brings `kafka-clients`, the Java reference client.
const POM: &str = include_str!("../../integration/kafka36/pom.xml");

/// The same for a Kafka 4 release, named by the `kafka.version` property (log4j 2 binding).
const POM4: &str = include_str!("../../integration/kafka4/pom.xml");

/// Which Apache Kafka release a cluster runs, every one from its Maven Central jars.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum KafkaRelease {
    /// 3.6.2, whose classic group coordinator the conformance suite describes case by case.
    #[default]
    Kafka36,
    /// 4.0.2: KIP-848's consumer group protocol generally available; an OffsetCommit v9 is
    /// fenced unless it carries the member's current epoch.
    Kafka40,
    /// 4.4.0, the newest 4.x: commits are checked against per-partition assignment epochs
    /// (KIP-1251: assignment epoch <= client epoch <= member epoch).
    Kafka44,
}

impl KafkaRelease {
    /// The release's version.
    pub fn version(self) -> &'static str {
        match self {
            KafkaRelease::Kafka36 => KAFKA_VERSION,
            KafkaRelease::Kafka40 => "4.0.2",
            KafkaRelease::Kafka44 => "4.4.0",
        }
    }

    fn pom(self) -> &'static str {
        match self {
            KafkaRelease::Kafka36 => POM,
            KafkaRelease::Kafka40 | KafkaRelease::Kafka44 => POM4,
        }
    }

    /// The Java programs compiled against the release's `kafka-clients`.
    fn java_peer(self) -> &'static [(&'static str, &'static str)] {
        match self {
            KafkaRelease::Kafka36 => JAVA_PEER,
            KafkaRelease::Kafka40 | KafkaRelease::Kafka44 => JAVA_PEER4,
        }
    }

    /// The logging configuration of a broker (or, with `tools`, of `StorageTool`) and the JVM
    /// option naming its file: Kafka 4 logs with log4j 2.
    fn logging(self, tools: bool) -> Logging {
        match (self, tools) {
            (KafkaRelease::Kafka36, false) => Logging { file: "log4j.properties", text: LOG4J, option: LOG4J_OPTION },
            (KafkaRelease::Kafka36, true) => {
                Logging { file: "tools-log4j.properties", text: TOOLS_LOG4J, option: LOG4J_OPTION }
            }
            (_, false) => Logging { file: "log4j2.properties", text: LOG4J2, option: LOG4J2_OPTION },
            (_, true) => Logging { file: "tools-log4j2.properties", text: TOOLS_LOG4J2, option: LOG4J2_OPTION },
        }
    }
}

/// One logging configuration file and the JVM option that points at it.
struct Logging {
    file: &'static str,
    text: &'static str,
    option: &'static str,
}

const LOG4J_OPTION: &str = "-Dlog4j.configuration=file:";
const LOG4J2_OPTION: &str = "-Dlog4j2.configurationFile=";

/// The Java programs of `integration/kafka36/java`: the group member the harnesses and interop
/// tests run, and the consumer `benches/compare.rs` measures.
const JAVA_PEER: &[(&str, &str)] = &[
    ("GroupMember.java", include_str!("../../integration/kafka36/java/GroupMember.java")),
    ("BenchConsumer.java", include_str!("../../integration/kafka36/java/BenchConsumer.java")),
];

/// The group member of `integration/kafka4/java`, for a Kafka 4 release's own `kafka-clients`
/// (log4j 2; either group protocol).
const JAVA_PEER4: &[(&str, &str)] =
    &[("GroupMember.java", include_str!("../../integration/kafka4/java/GroupMember.java"))];

/// Any valid KRaft cluster id (22 characters of base64url for 16 bytes): every node of a cluster
/// is formatted with the same one.
const CLUSTER_ID: &str = "MkU3OEVBNTcwNTJENDM2Qg";

/// The log line `KafkaRaftServer` writes once the broker is fully started and unfenced.
const STARTED: &str = "Kafka Server started";
/// What a node logs when a listener's port is taken (`java.net.BindException`).
const PORT_TAKEN: &str = "Address already in use";

/// Why a Kafka 3.6 cluster (or the Java group member) could not be started or changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Kafka36Error {
    /// `java`, `javac` or `mvn` is missing.
    #[error("`{tool}` is not installed or not on PATH ({source}); Kafka needs OpenJDK 17 and Maven 3.8")]
    MissingTool {
        /// The tool.
        tool: &'static str,
        /// The error running it.
        source: io::Error,
    },
    /// Maven could not fetch Kafka's jars.
    #[error("resolving Kafka {version}'s jars with `{command}` failed:\n{detail}")]
    Resolve {
        /// The release.
        version: &'static str,
        /// The command run.
        command: String,
        /// Its output.
        detail: String,
    },
    /// `javac` refused the Java group member.
    #[error("compiling the Java group member failed:\n{detail}")]
    Compile {
        /// The compiler's output.
        detail: String,
    },
    /// Formatting a node's KRaft storage (`StorageTool format`) failed.
    #[error("formatting node {node}'s KRaft storage failed:\n{detail}")]
    Format {
        /// The node id.
        node: i32,
        /// The tool's output.
        detail: String,
    },
    /// A node exited before it was ready.
    #[error("Kafka node {node} exited during start-up ({status}); its log:\n{log_tail}")]
    Exited {
        /// The node id.
        node: i32,
        /// Its exit status.
        status: String,
        /// Its log's error lines and last lines.
        log_tail: String,
    },
    /// A node did not log that it started in time.
    #[error("Kafka node {node} on {addr} was not ready within {after:?}; its log ends with:\n{log_tail}")]
    NotReady {
        /// The node id.
        node: i32,
        /// Its client listener.
        addr: String,
        /// The time waited.
        after: Duration,
        /// The last lines of its log.
        log_tail: String,
    },
    /// The cluster started but FindCoordinator found no coordinator in time.
    #[error("the Kafka cluster at {bootstrap} has no group coordinator within {after:?}: {detail}")]
    NoCoordinator {
        /// The cluster's bootstrap list.
        bootstrap: String,
        /// The time waited.
        after: Duration,
        /// The last answer or error.
        detail: String,
    },
    /// A node id this cluster does not have.
    #[error("no Kafka node {0} in this cluster")]
    UnknownNode(i32),
    /// Files or processes around the brokers.
    #[error("I/O error around the Kafka broker: {0}")]
    Io(#[from] io::Error),
}

/// How a cluster is started. [`Default`] is one node with Kafka's own group defaults.
#[derive(Debug, Clone)]
pub struct Kafka36Options {
    /// Combined broker + controller nodes (the controller quorum is all of them).
    pub nodes: usize,
    /// `group.initial.rebalance.delay.ms` (Kafka's default 3 s).
    pub initial_rebalance_delay: Duration,
    /// `group.min.session.timeout.ms` (Kafka's default 6 s).
    pub min_session_timeout: Duration,
    /// `group.max.size` (`None`: Kafka's default, unbounded).
    pub max_group_size: Option<usize>,
    /// `offsets.topic.num.partitions`; `None`: 1 on one node (quick to create), 6 on a cluster
    /// (so groups land on different coordinators).
    pub offsets_topic_partitions: Option<u32>,
    /// Maximum heap per node, MiB.
    pub heap_mib: u32,
    /// Bound on the whole start-up (format, JVM start, coordinator).
    pub ready_timeout: Duration,
    /// Further `server.properties` lines, applied after the defaults.
    pub properties: Vec<(String, String)>,
    /// Further `server.properties` lines of one node (by node id, 1..=n), applied last: a
    /// node's own `broker.rack`, for instance.
    pub node_properties: BTreeMap<i32, Vec<(String, String)>>,
    /// The Kafka release to run.
    pub release: KafkaRelease,
}

impl Default for Kafka36Options {
    fn default() -> Self {
        Kafka36Options {
            nodes: 1,
            initial_rebalance_delay: Duration::from_secs(3),
            min_session_timeout: Duration::from_secs(6),
            max_group_size: None,
            offsets_topic_partitions: None,
            heap_mib: 512,
            ready_timeout: Duration::from_secs(120),
            properties: Vec::new(),
            node_properties: BTreeMap::new(),
            release: KafkaRelease::default(),
        }
    }
}

impl Kafka36Options {
    /// Three nodes, each a broker and a controller voter; smaller heaps so three JVMs fit a
    /// 2-core machine.
    pub fn three_nodes() -> Self {
        Kafka36Options { nodes: 3, heap_mib: 384, ready_timeout: Duration::from_secs(180), ..Default::default() }
    }
}

/// One node of the cluster.
#[derive(Debug)]
struct Node {
    id: i32,
    broker_port: u16,
    controller_port: u16,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    /// Where this start's output begins in `log` (a restarted node appends).
    log_start: u64,
}

impl Node {
    fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.broker_port)
    }
}

/// A running Kafka cluster (3.6 unless [`Kafka36Options::release`] says otherwise); every node
/// is killed on drop.
#[derive(Debug)]
pub struct Kafka36Cluster {
    nodes: Vec<Node>,
    dir: PathBuf,
    java: PathBuf,
    libs: PathBuf,
    options: Kafka36Options,
}

impl Kafka36Cluster {
    /// Resolves the jars (once), formats and starts every node, and waits until the cluster has
    /// a group coordinator.
    ///
    /// A node that finds one of its ports taken (by another process between the check and the
    /// JVM's bind) fails the attempt; the cluster is then started again on other ports, up to
    /// three times.
    pub async fn start(options: Kafka36Options) -> Result<Kafka36Cluster, Kafka36Error> {
        const ATTEMPTS: u32 = 3;
        let mut attempt = 1;
        loop {
            match Self::start_once(options.clone()).await {
                Err(Kafka36Error::Exited { node, log_tail, .. })
                    if attempt < ATTEMPTS && log_tail.contains(PORT_TAKEN) =>
                {
                    tracing::warn!(node, attempt, "a Kafka node's port was taken; starting on other ports");
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    async fn start_once(options: Kafka36Options) -> Result<Kafka36Cluster, Kafka36Error> {
        let java = java_binary()?;
        let release = options.release;
        let libs = kafka_libs(release)?;
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join("kgroup-kafka36").join(format!(
            "{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        if dir.exists() {
            fs::remove_dir_all(&dir)?;
        }
        fs::create_dir_all(&dir)?;
        for logging in [release.logging(false), release.logging(true)] {
            fs::write(dir.join(logging.file), logging.text)?;
        }
        let mut nodes = Vec::new();
        for id in 1..=options.nodes.max(1) as i32 {
            nodes.push(Node {
                id,
                broker_port: free_port()?,
                controller_port: free_port()?,
                config: dir.join(format!("server-{id}.properties")),
                log: dir.join(format!("node-{id}.log")),
                child: None,
                log_start: 0,
            });
        }
        let mut cluster = Kafka36Cluster { nodes, dir, java, libs, options };
        let started = tokio::time::Instant::now();
        let voters = cluster.voters();
        for node in &cluster.nodes {
            fs::write(&node.config, cluster.server_properties(node, &voters))?;
        }
        cluster.format_all()?;
        for index in 0..cluster.nodes.len() {
            cluster.spawn(index)?;
        }
        let deadline = started + cluster.options.ready_timeout;
        for index in 0..cluster.nodes.len() {
            cluster.wait_started(index, deadline).await?;
        }
        cluster.wait_for_coordinator(deadline).await?;
        tracing::info!(
            bootstrap = %cluster.bootstrap(),
            nodes = cluster.nodes.len(),
            after = ?started.elapsed(),
            "Kafka {} ready",
            release.version()
        );
        Ok(cluster)
    }

    /// Every node's `127.0.0.1:PORT`, comma-separated (`bootstrap.servers`).
    pub fn bootstrap(&self) -> String {
        self.nodes.iter().map(Node::bootstrap).collect::<Vec<_>>().join(",")
    }

    /// One node's `127.0.0.1:PORT`.
    pub fn node_bootstrap(&self, node: i32) -> Result<String, Kafka36Error> {
        Ok(self.node(node)?.bootstrap())
    }

    /// The node ids, 1..=n.
    pub fn node_ids(&self) -> Vec<i32> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    /// The node listening on `port`.
    pub fn node_with_port(&self, port: u16) -> Option<i32> {
        self.nodes.iter().find(|n| n.broker_port == port).map(|n| n.id)
    }

    /// Whether the node's process is running.
    pub fn is_running(&mut self, node: i32) -> bool {
        let Ok(index) = self.index(node) else { return false };
        let child = &mut self.nodes[index].child;
        if child.as_mut().is_some_and(|c| c.try_wait().ok().flatten().is_some()) {
            *child = None;
        }
        child.is_some()
    }

    /// Kills the node (SIGKILL: no controlled shutdown, no goodbye to clients).
    pub fn kill(&mut self, node: i32) -> Result<(), Kafka36Error> {
        let index = self.index(node)?;
        if let Some(mut child) = self.nodes[index].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        Ok(())
    }

    /// Stops the node gracefully (SIGTERM: controlled shutdown, leadership moves first), waiting
    /// at most `timeout` before killing it.
    pub async fn stop(&mut self, node: i32, timeout: Duration) -> Result<(), Kafka36Error> {
        let index = self.index(node)?;
        let Some(mut child) = self.nodes[index].child.take() else { return Ok(()) };
        terminate(&child);
        let deadline = tokio::time::Instant::now() + timeout;
        while child.try_wait()?.is_none() {
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(node, ?timeout, "Kafka node did not stop in time; killing it");
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// Starts a stopped or killed node again on its ports and data, and waits until it is
    /// started (it catches up with the quorum before its port opens).
    pub async fn restart(&mut self, node: i32) -> Result<(), Kafka36Error> {
        let index = self.index(node)?;
        if self.nodes[index].child.is_some() {
            self.kill(node)?;
        }
        self.spawn(index)?;
        let deadline = tokio::time::Instant::now() + self.options.ready_timeout;
        self.wait_started(index, deadline).await
    }

    /// Everything the node has logged since the cluster started (restarts included): the group
    /// coordinator's INFO lines (`Preparing to rebalance group`, `Stabilized group G generation
    /// N`, `Member ... has failed`) are the broker-side record of a test.
    pub fn log(&self, node: i32) -> Result<String, Kafka36Error> {
        let mut text = String::new();
        File::open(&self.node(node)?.log)?.read_to_string(&mut text)?;
        Ok(text)
    }

    /// The last `lines` lines of the node's log.
    pub fn log_tail(&self, node: i32, lines: usize) -> String {
        self.node(node).map(|n| tail(&n.log, 0, lines)).unwrap_or_default()
    }

    /// Where the nodes keep their properties, logs and data.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn node(&self, node: i32) -> Result<&Node, Kafka36Error> {
        self.nodes.iter().find(|n| n.id == node).ok_or(Kafka36Error::UnknownNode(node))
    }

    fn index(&self, node: i32) -> Result<usize, Kafka36Error> {
        self.nodes.iter().position(|n| n.id == node).ok_or(Kafka36Error::UnknownNode(node))
    }

    fn voters(&self) -> String {
        self.nodes.iter().map(|n| format!("{}@127.0.0.1:{}", n.id, n.controller_port)).collect::<Vec<_>>().join(",")
    }

    fn server_properties(&self, node: &Node, voters: &str) -> String {
        let o = &self.options;
        let n = self.nodes.len();
        let replication = n.min(3);
        let offsets_partitions = o.offsets_topic_partitions.unwrap_or(if n == 1 { 1 } else { 6 });
        let data = self.dir.join(format!("data-{}", node.id));
        let mut props: Vec<(String, String)> = vec![
            ("process.roles".into(), "broker,controller".into()),
            ("node.id".into(), node.id.to_string()),
            ("controller.quorum.voters".into(), voters.into()),
            (
                "listeners".into(),
                format!("PLAINTEXT://127.0.0.1:{},CONTROLLER://127.0.0.1:{}", node.broker_port, node.controller_port),
            ),
            ("advertised.listeners".into(), format!("PLAINTEXT://127.0.0.1:{}", node.broker_port)),
            ("inter.broker.listener.name".into(), "PLAINTEXT".into()),
            ("controller.listener.names".into(), "CONTROLLER".into()),
            ("listener.security.protocol.map".into(), "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT".into()),
            ("log.dirs".into(), data.display().to_string()),
            ("offsets.topic.replication.factor".into(), replication.to_string()),
            ("offsets.topic.num.partitions".into(), offsets_partitions.to_string()),
            ("transaction.state.log.replication.factor".into(), replication.to_string()),
            ("transaction.state.log.min.isr".into(), if n == 1 { "1" } else { "2" }.into()),
            ("transaction.state.log.num.partitions".into(), offsets_partitions.to_string()),
            ("group.initial.rebalance.delay.ms".into(), o.initial_rebalance_delay.as_millis().to_string()),
            ("group.min.session.timeout.ms".into(), o.min_session_timeout.as_millis().to_string()),
            // Sized for 2 cores: the defaults (8 I/O threads, 3 network threads) only add
            // context switches here.
            ("num.network.threads".into(), "2".into()),
            ("num.io.threads".into(), "2".into()),
            ("background.threads".into(), "2".into()),
            ("num.replica.fetchers".into(), "1".into()),
            ("num.recovery.threads.per.data.dir".into(), "1".into()),
            // The cleaner allocates this on the heap at start (default 128 MiB).
            ("log.cleaner.threads".into(), "1".into()),
            ("log.cleaner.dedupe.buffer.size".into(), "8388608".into()),
            ("log.segment.bytes".into(), "104857600".into()),
        ];
        if let Some(max) = o.max_group_size {
            props.push(("group.max.size".into(), max.to_string()));
        }
        if n > 1 {
            // A killed node is fenced (and leaves every ISR) after 4 s instead of 9 s, so
            // `acks=all` writes and the offsets topic recover quickly in fault tests.
            props.push(("broker.heartbeat.interval.ms".into(), "1000".into()));
            props.push(("broker.session.timeout.ms".into(), "4000".into()));
            props.push(("replica.lag.time.max.ms".into(), "5000".into()));
        }
        props.extend(o.properties.iter().cloned());
        props.extend(o.node_properties.get(&node.id).into_iter().flatten().cloned());
        let mut text = String::new();
        for (key, value) in props {
            let _ = writeln!(text, "{key}={value}");
        }
        text
    }

    /// `kafka.tools.StorageTool format` for every node, in parallel (one JVM each).
    fn format_all(&self) -> Result<(), Kafka36Error> {
        let mut running = Vec::new();
        for node in &self.nodes {
            let mut command = self.java_command(&format!("-Xmx128m {}", self.logging_option(true)));
            command
                .args(["kafka.tools.StorageTool", "format", "-t", CLUSTER_ID, "-c"])
                .arg(&node.config)
                .arg("--ignore-formatted")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            die_with_parent(&mut command);
            let child = command.spawn().map_err(|source| Kafka36Error::MissingTool { tool: "java", source })?;
            running.push((node.id, child));
        }
        for (node, child) in running {
            let output = child.wait_with_output()?;
            if !output.status.success() {
                let detail =
                    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
                return Err(Kafka36Error::Format { node, detail });
            }
        }
        Ok(())
    }

    /// The JVM option naming the broker's (or the tools') logging configuration.
    fn logging_option(&self, tools: bool) -> String {
        let logging = self.options.release.logging(tools);
        format!("{}{}", logging.option, self.dir.join(logging.file).display())
    }

    fn java_command(&self, jvm_options: &str) -> Command {
        let mut command = Command::new(&self.java);
        command.args(jvm_options.split_whitespace()).arg("-cp").arg(self.libs.join("*"));
        command
    }

    fn spawn(&mut self, index: usize) -> Result<(), Kafka36Error> {
        let heap = self.options.heap_mib;
        let jvm = format!(
            "-Xms{}m -Xmx{heap}m -XX:+UseSerialGC -Djava.awt.headless=true {} -Dkafka.logs.dir={}",
            (heap / 2).max(64),
            self.logging_option(false),
            self.dir.display()
        );
        let mut command = self.java_command(&jvm);
        let node = &self.nodes[index];
        let log = OpenOptions::new().create(true).append(true).open(&node.log)?;
        let log_start = log.metadata()?.len();
        command.arg("kafka.Kafka").arg(&node.config).stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
        die_with_parent(&mut command);
        let child = command.spawn().map_err(|source| Kafka36Error::MissingTool { tool: "java", source })?;
        let node = &mut self.nodes[index];
        node.child = Some(child);
        node.log_start = log_start;
        Ok(())
    }

    /// Until the node logs `Kafka Server started` and answers ApiVersions.
    async fn wait_started(&mut self, index: usize, deadline: tokio::time::Instant) -> Result<(), Kafka36Error> {
        let config = Arc::new(ConnectionConfig {
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
            ..Default::default()
        });
        loop {
            let node = &mut self.nodes[index];
            if let Some(status) = node.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                node.child = None;
                let log_tail = errors_and_tail(&node.log, node.log_start, 40);
                return Err(Kafka36Error::Exited { node: node.id, status: status.to_string(), log_tail });
            }
            if log_contains(&node.log, node.log_start, STARTED)
                && Connection::open(&node.bootstrap(), config.clone()).await.is_ok()
            {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                let (id, addr, log_tail) = (node.id, node.bootstrap(), errors_and_tail(&node.log, node.log_start, 40));
                self.kill(id)?;
                return Err(Kafka36Error::NotReady { node: id, addr, after: self.options.ready_timeout, log_tail });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Until every `__consumer_offsets` partition has a leader that serves its groups: a node
    /// named by FindCoordinator answers NOT_COORDINATOR, then COORDINATOR_LOAD_IN_PROGRESS,
    /// until it has loaded the partition, so each partition is probed with an OffsetFetch for a
    /// group that hashes to it (Kafka: `abs(groupId.hashCode) % offsets.topic.num.partitions`).
    async fn wait_for_coordinator(&self, deadline: tokio::time::Instant) -> Result<(), Kafka36Error> {
        let bootstrap = self.bootstrap();
        let failed = |detail: String| Kafka36Error::NoCoordinator {
            bootstrap: bootstrap.clone(),
            after: self.options.ready_timeout,
            detail,
        };
        let mut config = ClusterConfig::from_bootstrap_servers(&bootstrap).map_err(|e| failed(e.to_string()))?;
        config.retry_timeout = deadline.saturating_duration_since(tokio::time::Instant::now());
        let cluster = Cluster::connect(config).await.map_err(|e| failed(e.to_string()))?;
        cluster.find_coordinator("kgroup-kafka36-ready").await.map_err(|e| failed(e.to_string()))?;
        let offsets = cluster.wait_for_topic("__consumer_offsets").await.map_err(|e| failed(e.to_string()))?;
        let partitions = offsets.partition_count("__consumer_offsets").unwrap_or(1);
        for group in probe_groups(partitions) {
            loop {
                let served = serves_group(&cluster, &group).await;
                match served {
                    Ok(()) => break,
                    Err(_) if tokio::time::Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(detail) => return Err(failed(format!("group {group}: {detail}"))),
                }
            }
        }
        Ok(())
    }
}

impl Drop for Kafka36Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let keep = std::env::var_os("KGROUP_KAFKA36_KEEP").is_some_and(|v| v == "1");
        if std::thread::panicking() {
            for node in &self.nodes {
                eprintln!(
                    "---- Kafka {} node {} ({}), last lines of {}:\n{}",
                    self.options.release.version(),
                    node.id,
                    node.bootstrap(),
                    node.log.display(),
                    tail(&node.log, 0, 60)
                );
            }
            eprintln!("---- Kafka logs kept in {}", self.dir.display());
        } else if !keep {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Whether the coordinator FindCoordinator names for `group` answers its OffsetFetch.
async fn serves_group(cluster: &Cluster, group: &str) -> Result<(), String> {
    let coordinator = cluster.find_coordinator_once(group).await.map_err(|e| e.to_string())?;
    let config = Arc::new(ConnectionConfig { request_timeout: Duration::from_secs(5), ..Default::default() });
    let conn = Connection::open(&coordinator.addr(), config).await.map_err(|e| e.to_string())?;
    let request = OffsetFetchRequest::default().with_groups(vec![
        OffsetFetchRequestGroup::default().with_group_id(GroupId(StrBytes::from_string(group.into())))
    ]);
    let response = conn.send_at(&request, 8, Duration::from_secs(5)).await.map_err(|e| e.to_string())?;
    match response.groups.first().map(|g| g.error_code) {
        Some(0) => Ok(()),
        code => Err(format!("OffsetFetch error {code:?} from node {}", coordinator.node_id)),
    }
}

/// One group id per `__consumer_offsets` partition, chosen by Kafka's placement:
/// `Utils.abs(groupId.hashCode()) % partitions`, with Java's `String.hashCode`.
fn probe_groups(partitions: usize) -> Vec<String> {
    let mut groups: Vec<Option<String>> = vec![None; partitions.max(1)];
    for n in 0.. {
        if groups.iter().all(Option::is_some) {
            break;
        }
        let group = format!("kgroup-kafka36-ready-{n}");
        let slot = offsets_partition(&group, groups.len());
        groups[slot].get_or_insert(group);
    }
    groups.into_iter().flatten().collect()
}

/// The `__consumer_offsets` partition of `group`: `Utils.abs(group.hashCode()) % partitions`.
fn offsets_partition(group: &str, partitions: usize) -> usize {
    let hash = group.encode_utf16().fold(0i32, |h, unit| h.wrapping_mul(31).wrapping_add(i32::from(unit)));
    (if hash == i32::MIN { 0 } else { hash.unsigned_abs() as usize }) % partitions
}

/// SIGTERM: the JVM's shutdown hook runs Kafka's controlled shutdown.
fn terminate(child: &Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: kill(2) on a child we spawned and have not reaped.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
}

fn log_contains(path: &Path, from: u64, needle: &str) -> bool {
    read_from(path, from).is_some_and(|text| text.contains(needle))
}

fn read_from(path: &Path, from: u64) -> Option<String> {
    let mut file = File::open(path).ok()?;
    file.seek(SeekFrom::Start(from)).ok()?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// The log's ERROR and FATAL lines and their exceptions' causes (which a shutdown's many INFO
/// lines push out of the tail), then its last `lines` lines.
fn errors_and_tail(path: &Path, from: u64, lines: usize) -> String {
    let text = read_from(path, from).unwrap_or_default();
    let is_error = |line: &&str| {
        line.contains("] ERROR ") || line.contains("] FATAL ") || line.trim_start().starts_with("Caused by: ")
    };
    let errors: Vec<&str> = text.lines().filter(is_error).take(20).collect();
    let tail = tail(path, from, lines);
    if errors.is_empty() {
        tail
    } else {
        format!("{}\n...\n{tail}", errors.join("\n"))
    }
}

fn tail(path: &Path, from: u64, lines: usize) -> String {
    let text = read_from(path, from).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// `$JAVA_HOME/bin/java`, else `java` from `PATH`, checked by running `java -version`.
fn java_binary() -> Result<PathBuf, Kafka36Error> {
    let java = std::env::var_os("JAVA_HOME")
        .map(|home| PathBuf::from(home).join("bin").join("java"))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("java"));
    let output = Command::new(&java)
        .arg("-version")
        .stdin(Stdio::null())
        .output()
        .map_err(|source| Kafka36Error::MissingTool { tool: "java", source })?;
    if !output.status.success() {
        let detail = String::from_utf8_lossy(&output.stderr).into_owned();
        return Err(Kafka36Error::MissingTool { tool: "java", source: io::Error::other(detail) });
    }
    Ok(java)
}

/// The directory of a release's jars: the cache, resolved with Maven when missing (one resolver
/// at a time; a partial download is never used); for Kafka 3.6, `KGROUP_KAFKA36_LIBS` if set.
pub fn kafka_libs(release: KafkaRelease) -> Result<PathBuf, Kafka36Error> {
    if let Some(dir) = std::env::var_os("KGROUP_KAFKA36_LIBS").filter(|_| release == KafkaRelease::Kafka36) {
        return Ok(PathBuf::from(dir));
    }
    let version = release.version();
    let root = cache_dir().join(format!("kafka-{version}"));
    let libs = root.join("libs");
    let complete = root.join("libs.complete");
    if complete.exists() {
        return Ok(libs);
    }
    fs::create_dir_all(&root)?;
    let lock = File::create(root.join(".resolve.lock"))?;
    let _guard = FileLock::exclusive(&lock)?;
    if complete.exists() {
        return Ok(libs);
    }
    let pom = root.join("pom.xml");
    fs::write(&pom, release.pom())?;
    let staging = root.join("libs.partial");
    if staging.exists() {
        fs::remove_dir_all(&staging)?;
    }
    let goal = "org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy-dependencies";
    let args = [
        "-B".to_owned(),
        "-q".to_owned(),
        "-f".to_owned(),
        pom.display().to_string(),
        goal.to_owned(),
        format!("-Dkafka.version={version}"),
        "-DincludeScope=runtime".to_owned(),
        format!("-DoutputDirectory={}", staging.display()),
    ];
    let command = format!("mvn {}", args.join(" "));
    eprintln!("kgroup: resolving Kafka {version} from Maven Central (once): {command}");
    let output = Command::new("mvn")
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| Kafka36Error::MissingTool { tool: "mvn", source })?;
    let has_broker = staging.join(format!("kafka_2.13-{version}.jar")).exists();
    if !output.status.success() || !has_broker {
        let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        let lines: Vec<&str> = text.lines().collect();
        let detail = lines[lines.len().saturating_sub(20)..].join("\n");
        return Err(Kafka36Error::Resolve { version, command, detail });
    }
    if libs.exists() {
        fs::remove_dir_all(&libs)?;
    }
    fs::rename(&staging, &libs)?;
    fs::write(&complete, version)?;
    Ok(libs)
}

/// The Java classpath of the reference client: Kafka's jars (they include `kafka-clients`
/// 3.6.2) and the compiled programs of `integration/kafka36/java`, compiled with `javac`
/// once per version of its source into the cache.
pub fn java_peer_classpath() -> Result<String, Kafka36Error> {
    java_peer_classpath_of(KafkaRelease::Kafka36)
}

/// [`java_peer_classpath`] for a release's own `kafka-clients`: for Kafka 4, its jars and the
/// group member of `integration/kafka4/java`.
pub fn java_peer_classpath_of(release: KafkaRelease) -> Result<String, Kafka36Error> {
    let libs = kafka_libs(release)?;
    let peer = release.java_peer();
    let hash = peer.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, (name, text)| {
        name.bytes().chain(text.bytes()).fold(h, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
    });
    let root = cache_dir().join(format!("kafka-{}", release.version()));
    let classes = root.join(format!("peer-{hash:016x}"));
    let classpath = format!("{}:{}", libs.join("*").display(), classes.display());
    if classes.join(".complete").exists() {
        return Ok(classpath);
    }
    fs::create_dir_all(&root)?;
    let lock = File::create(root.join(".peer.lock"))?;
    let _guard = FileLock::exclusive(&lock)?;
    if classes.join(".complete").exists() {
        return Ok(classpath);
    }
    let sources = root.join(format!("peer-src-{hash:016x}"));
    fs::create_dir_all(&sources)?;
    let mut files = Vec::new();
    for (name, text) in peer {
        let path = sources.join(name);
        fs::write(&path, text)?;
        files.push(path);
    }
    let javac = std::env::var_os("JAVA_HOME")
        .map(|home| PathBuf::from(home).join("bin").join("javac"))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("javac"));
    let output = Command::new(javac)
        .arg("-nowarn")
        .arg("-cp")
        .arg(libs.join("*"))
        .arg("-d")
        .arg(&classes)
        .args(&files)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| Kafka36Error::MissingTool { tool: "javac", source })?;
    if !output.status.success() {
        return Err(Kafka36Error::Compile { detail: String::from_utf8_lossy(&output.stderr).into_owned() });
    }
    fs::write(classes.join(".complete"), "")?;
    Ok(classpath)
}

const LOG4J: &str = "\
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.kafka.network.RequestChannel$=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.kafka.coordinator.group=INFO
";

const TOOLS_LOG4J: &str = "\
log4j.rootLogger=WARN, stderr
log4j.appender.stderr=org.apache.log4j.ConsoleAppender
log4j.appender.stderr.layout=org.apache.log4j.PatternLayout
log4j.appender.stderr.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.appender.stderr.Target=System.err
";

/// Kafka 4's broker logging (log4j 2): as [`LOG4J`], with the group coordinator's own logger.
const LOG4J2: &str = "\
appender.stdout.type=Console
appender.stdout.name=STDOUT
appender.stdout.layout.type=PatternLayout
appender.stdout.layout.pattern=[%d] %p %m (%c)%n
rootLogger.level=INFO
rootLogger.appenderRef.stdout.ref=STDOUT
logger.request.name=kafka.request.logger
logger.request.level=WARN
logger.channel.name=kafka.network.RequestChannel$
logger.channel.level=WARN
logger.state.name=state.change.logger
logger.state.level=WARN
logger.group.name=org.apache.kafka.coordinator.group
logger.group.level=INFO
";

const TOOLS_LOG4J2: &str = "\
appender.stderr.type=Console
appender.stderr.name=STDERR
appender.stderr.target=SYSTEM_ERR
appender.stderr.layout.type=PatternLayout
appender.stderr.layout.pattern=[%d] %p %m (%c)%n
rootLogger.level=WARN
rootLogger.appenderRef.stderr.ref=STDERR
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_follow_the_options() {
        let mut options = Kafka36Options { max_group_size: Some(2), ..Kafka36Options::three_nodes() };
        for id in 1..=3 {
            options.node_properties.insert(id, vec![("broker.rack".into(), format!("rack-{id}"))]);
        }
        let cluster = Kafka36Cluster {
            nodes: (1..=3)
                .map(|id| Node {
                    id,
                    broker_port: 9000 + id as u16,
                    controller_port: 9100 + id as u16,
                    config: PathBuf::new(),
                    log: PathBuf::new(),
                    child: None,
                    log_start: 0,
                })
                .collect(),
            dir: PathBuf::from("/tmp/k"),
            java: PathBuf::new(),
            libs: PathBuf::new(),
            options,
        };
        let text = cluster.server_properties(&cluster.nodes[1], &cluster.voters());
        for line in [
            "node.id=2",
            "controller.quorum.voters=1@127.0.0.1:9101,2@127.0.0.1:9102,3@127.0.0.1:9103",
            "listeners=PLAINTEXT://127.0.0.1:9002,CONTROLLER://127.0.0.1:9102",
            "advertised.listeners=PLAINTEXT://127.0.0.1:9002",
            "offsets.topic.replication.factor=3",
            "offsets.topic.num.partitions=6",
            "transaction.state.log.min.isr=2",
            "group.initial.rebalance.delay.ms=3000",
            "group.min.session.timeout.ms=6000",
            "group.max.size=2",
            "log.dirs=/tmp/k/data-2",
            "broker.rack=rack-2",
        ] {
            assert!(text.lines().any(|l| l == line), "missing `{line}` in:\n{text}");
        }
        assert!(!text.contains("group.coordinator.new.enable"), "Kafka 3.6's classic coordinator only");
        assert!(!text.contains("rack-1") && !text.contains("rack-3"), "only node 2's own lines");
    }

    #[test]
    fn probe_groups_cover_every_offsets_partition_as_kafka_places_them() {
        // jshell: "kgroup-kafka36-ready-0".hashCode() == -1477824023, and 1477824023 % 6 == 5.
        assert_eq!(offsets_partition("kgroup-kafka36-ready-0", 6), 5);
        let groups = probe_groups(6);
        let mut partitions: Vec<usize> = groups.iter().map(|g| offsets_partition(g, 6)).collect();
        partitions.sort_unstable();
        assert_eq!(partitions, vec![0, 1, 2, 3, 4, 5], "{groups:?}");
        assert_eq!(probe_groups(1).len(), 1);
    }

    /// Lines from a node that found its client port taken: the cause is far above the tail.
    #[test]
    fn a_start_up_failure_names_its_cause_above_the_shutdown_lines() {
        let path = std::env::temp_dir().join(format!("kgroup-errors-and-tail-{}.log", std::process::id()));
        let mut log = String::from(
            "[2026-12-05 07:44:59,416] INFO [BrokerServer id=1] Starting (kafka.server.BrokerServer)\n\
             [2026-12-05 07:44:59,416] ERROR Unable to start acceptor for ListenerName(PLAINTEXT) (kafka.network.DataPlaneAcceptor)\n\
             org.apache.kafka.common.KafkaException: Socket server failed to bind to 127.0.0.1:33779: Address already in use.\n\
             \tat kafka.network.Acceptor.openServerSocket(SocketServer.scala:751)\n\
             Caused by: java.net.BindException: Address already in use\n",
        );
        for n in 0..100 {
            log.push_str(&format!("[2026-12-05 07:44:59,5{n:02}] INFO [SocketServer nodeId=1] Stopped ({n})\n"));
        }
        fs::write(&path, &log).unwrap();
        let excerpt = errors_and_tail(&path, 0, 5);
        fs::remove_file(&path).unwrap();
        assert!(excerpt.contains("ERROR Unable to start acceptor"), "{excerpt}");
        assert!(excerpt.contains(PORT_TAKEN), "the retry recognises it: {excerpt}");
        assert!(excerpt.ends_with("Stopped (99)"), "{excerpt}");
        assert!(!excerpt.contains("Stopped (94)") && !excerpt.contains("Starting"), "{excerpt}");
    }

    #[test]
    fn the_pom_asks_for_this_version() {
        assert!(POM.contains(&format!("<artifactId>kafka_2.13</artifactId>\n      <version>{KAFKA_VERSION}</version>")));
        // Kafka 4's pom takes the version from the command line (`-Dkafka.version`).
        assert!(POM4.contains("<artifactId>kafka_2.13</artifactId>\n      <version>${kafka.version}</version>"));
        assert!(POM4.contains(&format!("<kafka.version>{}</kafka.version>", KafkaRelease::Kafka44.version())));
    }
}
