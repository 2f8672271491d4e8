//! The fetch task: plans requests from the shared state, runs them as jobs, applies results.
//!
//! Jobs (connect, fetch, ListOffsets, metadata refresh) run in a `JoinSet` owned by the task, so
//! stopping the task stops them. Partitions in a job carry its id; a partition is in at most one
//! job at a time, and a broker has at most one fetch in flight.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{ApiKey, BrokerId, FetchRequest, FetchResponse, ListOffsetsRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::task::{Id, JoinSet};
use tokio::time::Instant;

use super::decode::{PartitionFetch, WireRecords};
use super::session::{FetchSession, SessionOutcome, SessionPartition, SessionRequest};
use super::{BrokerSession, FetcherConfig, IsolationLevel, PartitionResult, Phase, Reactions, Shared, State};
use crate::driver::cluster::{Cluster, MetadataSnapshot};
use crate::driver::connection::{check_code, BrokerLink, Connection, ConnectionConfig};
use crate::error::{Error, FetchFailure, Result};
use crate::group::TopicPartition;
use crate::telemetry::Metric;

pub(super) async fn run(shared: Arc<Shared>, cluster: Cluster, config: FetcherConfig) {
    let _closed = CloseOnExit(shared.clone());
    let mut task = Task {
        shared,
        connection_config: Arc::new(cluster.config().connection.clone()),
        cluster,
        config,
        brokers: HashMap::new(),
        jobs: JoinSet::new(),
        running: HashMap::new(),
        last_job: 0,
        metadata: MetadataRefresh::default(),
        rotation: 0,
    };
    loop {
        let wake_at = task.plan();
        tokio::select! {
            _ = task.shared.wake.notified() => {}
            Some(done) = task.jobs.join_next_with_id(), if !task.jobs.is_empty() => task.finished(done),
            _ = sleep_until(wake_at) => {}
        }
        if task.shared.lock().closed {
            return;
        }
    }
}

/// Marks the fetcher closed when the task ends, however it ends, so readers do not wait forever.
struct CloseOnExit(Arc<Shared>);

impl Drop for CloseOnExit {
    fn drop(&mut self) {
        self.0.lock().closed = true;
        self.0.data.notify_waiters();
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn earliest(a: Option<Instant>, b: Instant) -> Option<Instant> {
    Some(a.map_or(b, |a| a.min(b)))
}

/// One broker as the fetcher sees it.
struct Broker {
    link: Arc<BrokerLink>,
    conn: Option<Connection>,
    connecting: bool,
    /// A fetch is in flight.
    fetching: bool,
    retry_at: Option<Instant>,
    failures: u32,
    session: FetchSession,
    full_fetches: u64,
    incremental_fetches: u64,
}

#[derive(Default)]
struct MetadataRefresh {
    running: bool,
    /// No new refresh before this (a floor between refreshes that grows while they repeat).
    not_before: Option<Instant>,
    attempt: u32,
}

/// What a job is, for clean-up if it dies without an answer.
enum JobKind {
    Connect { node: i32 },
    Fetch { node: i32, job: u64, partitions: Vec<TopicPartition> },
    ListOffsets { job: u64, partitions: Vec<TopicPartition> },
    Metadata,
}

enum JobOutput {
    Connected { node: i32, result: Result<Connection> },
    Fetched { node: i32, job: u64, sent: SentFetch, result: Result<FetchOutcome> },
    Listed { job: u64, sent: Vec<ResetTarget>, result: Result<Vec<(TopicPartition, ListedOffset)>> },
    Refreshed { flagged: Vec<TopicPartition>, result: Result<()> },
}

/// A fetch on the wire: its session fields and what each partition was fetched under.
pub(super) struct SentFetch {
    pub(super) session: SessionRequest,
    pub(super) partitions: HashMap<TopicPartition, (u64, i64)>,
}

pub(super) struct FetchOutcome {
    pub(super) error_code: i16,
    pub(super) session_id: i32,
    pub(super) throttle_time_ms: i32,
    pub(super) partitions: Vec<(TopicPartition, PartitionResult)>,
}

#[derive(Clone)]
struct ResetTarget {
    partition: TopicPartition,
    epoch: u64,
    timestamp: i64,
    leader_epoch: i32,
}

struct FetchTarget {
    partition: TopicPartition,
    epoch: u64,
    fetch_offset: i64,
    leader_epoch: i32,
}

struct Task {
    shared: Arc<Shared>,
    cluster: Cluster,
    /// For the fetcher's own broker links.
    connection_config: Arc<ConnectionConfig>,
    config: FetcherConfig,
    brokers: HashMap<i32, Broker>,
    jobs: JoinSet<JobOutput>,
    running: HashMap<Id, JobKind>,
    last_job: u64,
    metadata: MetadataRefresh,
    rotation: usize,
}

/// The leader of a partition and its epoch, when metadata knows a reachable one.
fn leader_of(metadata: &MetadataSnapshot, tp: &TopicPartition) -> Option<(i32, i32)> {
    let topic = metadata.topics.get(&*tp.topic)?;
    let info = topic.partitions.iter().find(|p| p.partition == tp.partition)?;
    (info.leader >= 0 && metadata.brokers.contains_key(&info.leader)).then_some((info.leader, info.leader_epoch))
}

impl Task {
    fn next_job(&mut self) -> u64 {
        self.last_job += 1;
        self.last_job
    }

    fn retry_backoff(&self, attempt: u32) -> std::time::Duration {
        self.cluster.config().retry_backoff.delay(attempt)
    }

    /// Starts whatever can start now; returns when to look again if nothing else wakes the task.
    fn plan(&mut self) -> Option<Instant> {
        let now = Instant::now();
        let metadata = self.cluster.metadata();
        let shared = self.shared.clone();
        let mut state = shared.lock();
        let mut wake_at = None;
        let room = state.room(self.config.buffer_bytes);
        let mut fetches: BTreeMap<i32, Vec<FetchTarget>> = BTreeMap::new();
        let mut resets: BTreeMap<i32, Vec<ResetTarget>> = BTreeMap::new();
        let mut stale = Vec::new();
        for (tp, part) in state.partitions.iter_mut() {
            if part.job.is_some() {
                continue;
            }
            let wanted = match part.phase {
                Phase::Fetch => !part.paused && room > 0,
                Phase::Reset { .. } => true,
                Phase::Failed => false,
            };
            if !wanted {
                continue;
            }
            if let Some(at) = part.retry_at {
                if at > now {
                    wake_at = earliest(wake_at, at);
                    continue;
                }
                part.retry_at = None;
            }
            let leader = if part.stale { None } else { leader_of(&metadata, tp) };
            let Some((leader, leader_epoch)) = leader else {
                part.stale = true;
                stale.push(tp.clone());
                continue;
            };
            match part.phase {
                Phase::Fetch => {
                    let Some(node) = part.fetch_node(leader, |node| metadata.brokers.contains_key(&node), now) else {
                        stale.push(tp.clone());
                        continue;
                    };
                    fetches.entry(node).or_default().push(FetchTarget {
                        partition: tp.clone(),
                        epoch: part.epoch,
                        fetch_offset: part.fetch_offset,
                        leader_epoch,
                    })
                }
                // Offsets are looked up at the leader only: a follower's log end may lag.
                Phase::Reset { timestamp } => resets.entry(leader).or_default().push(ResetTarget {
                    partition: tp.clone(),
                    epoch: part.epoch,
                    timestamp,
                    leader_epoch,
                }),
                Phase::Failed => {}
            }
        }

        for (node, targets) in fetches {
            if let Some(at) = self.start_fetch(&mut state, &metadata, node, targets, room, now) {
                wake_at = earliest(wake_at, at);
            }
        }
        for (node, targets) in resets {
            self.start_list_offsets(&mut state, node, targets);
        }
        if stale.is_empty() {
            self.metadata.attempt = 0;
        } else if !self.metadata.running {
            match self.metadata.not_before {
                Some(at) if at > now => wake_at = earliest(wake_at, at),
                _ => self.start_refresh(stale),
            }
        }
        wake_at
    }

    /// Sends a fetch to `node` for `targets`, or connects first. Returns a retry time when the
    /// broker is backing off.
    fn start_fetch(
        &mut self,
        state: &mut State,
        metadata: &MetadataSnapshot,
        node: i32,
        mut targets: Vec<FetchTarget>,
        room: usize,
        now: Instant,
    ) -> Option<Instant> {
        let addr = metadata.brokers.get(&node)?.addr();
        let connection_config = &self.connection_config;
        let broker = self.brokers.entry(node).or_insert_with(|| Broker::new(&addr, connection_config.clone()));
        if broker.fetching || broker.connecting {
            return None;
        }
        if broker.link.addr() != addr {
            // Only once nothing is in flight to the old address.
            tracing::debug!(node, %addr, "broker moved, new fetch connection");
            *broker = Broker::new(&addr, connection_config.clone());
        }
        if let Some(at) = broker.retry_at {
            if at > now {
                return Some(at);
            }
            broker.retry_at = None;
        }
        let Some(conn) = broker.conn.clone().filter(|c| !c.is_broken()) else {
            broker.connecting = true;
            let link = broker.link.clone();
            let handle = self.spawn_job(async move { JobOutput::Connected { node, result: link.connection().await } });
            self.running.insert(handle.id(), JobKind::Connect { node });
            return None;
        };
        let version = match conn.versions().get(ApiKey::Fetch) {
            Ok(v) => v,
            Err(e) => {
                for t in &targets {
                    state.fail(&t.partition, FetchFailure::Protocol(e.clone()));
                }
                self.shared.data.notify_waiters();
                return None;
            }
        };
        // Rotate so that, under a byte limit, no partition is always last.
        self.rotation = self.rotation.wrapping_add(1);
        let shift = self.rotation % targets.len();
        targets.rotate_left(shift);
        let max_bytes = self.config.max_partition_bytes;
        let wanted = targets
            .iter()
            .map(|t| {
                let p = SessionPartition { fetch_offset: t.fetch_offset, leader_epoch: t.leader_epoch, max_bytes };
                (t.partition.clone(), p)
            })
            .collect();
        let session = broker.session.build(wanted, version >= 7);
        if session.full {
            broker.full_fetches += 1;
        } else {
            broker.incremental_fetches += 1;
        }
        // The order of `send` follows the rotated targets, not the map's.
        let order: HashMap<&TopicPartition, usize> =
            targets.iter().enumerate().map(|(i, t)| (&t.partition, i)).collect();
        let mut send = session.send.clone();
        send.sort_by_key(|(tp, _)| order.get(tp).copied().unwrap_or(usize::MAX));
        // The response may pass `max_bytes` by one batch; asking for no more than the room left
        // keeps the buffer near its bound. Each partition's batches are copied out of the
        // response before it is dropped, so a response briefly takes twice its size: no more
        // than a sixteenth of the bound keeps that beside the buffer small.
        let request_max = room.min(self.config.buffer_bytes / 16).max(1);
        let request_max = i32::try_from(request_max).unwrap_or(i32::MAX).clamp(1, self.config.max_bytes.max(1));
        let request = fetch_request(&self.config, version, &session, &send, request_max);
        self.last_job += 1;
        let job = self.last_job;
        let partitions: HashMap<TopicPartition, (u64, i64)> =
            targets.iter().map(|t| (t.partition.clone(), (t.epoch, t.fetch_offset))).collect();
        for tp in partitions.keys() {
            if let Some(part) = state.partitions.get_mut(tp) {
                part.job = Some(job);
                if part.fetched_from != Some(node) {
                    part.fetched_from = Some(node);
                    let labels = [&*tp.topic, &tp.partition.to_string()];
                    self.shared.metrics.set(Metric::PartitionReadReplica, &labels, f64::from(node));
                }
            }
        }
        broker.fetching = true;
        state.sessions.insert(
            node,
            BrokerSession {
                node_id: node,
                mode: broker.session.mode(),
                version,
                full_fetches: broker.full_fetches,
                incremental_fetches: broker.incremental_fetches,
            },
        );
        let kind = JobKind::Fetch { node, job, partitions: partitions.keys().cloned().collect() };
        let sent = SentFetch { session, partitions };
        let timeout = self.cluster.config().connection.request_timeout + self.config.max_wait;
        let isolation = self.config.isolation;
        let handle = self.spawn_job(async move {
            let result = conn.send_at(&request, version, timeout).await.map(|r| scan_response(r, &sent, isolation));
            JobOutput::Fetched { node, job, sent, result }
        });
        self.running.insert(handle.id(), kind);
        None
    }

    fn start_list_offsets(&mut self, state: &mut State, node: i32, targets: Vec<ResetTarget>) {
        let job = self.next_job();
        for t in &targets {
            if let Some(part) = state.partitions.get_mut(&t.partition) {
                part.job = Some(job);
            }
        }
        let cluster = self.cluster.clone();
        let isolation = self.config.isolation;
        let kind = JobKind::ListOffsets { job, partitions: targets.iter().map(|t| t.partition.clone()).collect() };
        let handle = self.spawn_job(async move {
            let queries: Vec<OffsetQuery<'_>> = targets
                .iter()
                .map(|t| OffsetQuery { partition: &t.partition, timestamp: t.timestamp, leader_epoch: t.leader_epoch })
                .collect();
            let result = list_offsets(&cluster, node, &queries, isolation).await;
            JobOutput::Listed { job, sent: targets, result }
        });
        self.running.insert(handle.id(), kind);
    }

    fn start_refresh(&mut self, flagged: Vec<TopicPartition>) {
        self.metadata.running = true;
        let cluster = self.cluster.clone();
        let handle = self.spawn_job(async move {
            let mut topics: Vec<&str> = flagged.iter().map(|tp| &*tp.topic).collect();
            topics.sort_unstable();
            topics.dedup();
            let result = cluster.refresh_metadata(Some(&topics)).await.map(|_| ());
            JobOutput::Refreshed { flagged, result }
        });
        self.running.insert(handle.id(), JobKind::Metadata);
    }

    /// Runs a job in the member's span of the moment.
    fn spawn_job(&mut self, job: impl Future<Output = JobOutput> + Send + 'static) -> tokio::task::AbortHandle {
        self.jobs.spawn(tracing::Instrument::instrument(job, tracing::Span::current()))
    }

    fn finished(&mut self, done: std::result::Result<(Id, JobOutput), tokio::task::JoinError>) {
        match done {
            Ok((id, output)) => {
                self.running.remove(&id);
                self.apply(output);
            }
            Err(e) => {
                tracing::error!(error = %e, "fetcher job died");
                if let Some(kind) = self.running.remove(&e.id()) {
                    self.abandoned(kind);
                }
            }
        }
    }

    /// Clean-up after a job that gave no answer.
    fn abandoned(&mut self, kind: JobKind) {
        let retry_at = Instant::now() + self.retry_backoff(0);
        let shared = self.shared.clone();
        let mut state = shared.lock();
        match kind {
            JobKind::Connect { node } => {
                if let Some(b) = self.brokers.get_mut(&node) {
                    b.connecting = false;
                }
            }
            JobKind::Fetch { node, job, partitions } => {
                if let Some(b) = self.brokers.get_mut(&node) {
                    b.fetching = false;
                    b.session = FetchSession::default();
                    b.retry_at = Some(retry_at);
                }
                state.forget_read_replicas(&partitions);
                state.finish_job(job, partitions);
            }
            JobKind::ListOffsets { job, partitions } => {
                for tp in &partitions {
                    if let Some(part) = state.partitions.get_mut(tp) {
                        part.retry_at = Some(retry_at);
                    }
                }
                state.finish_job(job, partitions);
            }
            JobKind::Metadata => {
                self.metadata.running = false;
                self.metadata.not_before = Some(retry_at);
            }
        }
    }

    fn apply(&mut self, output: JobOutput) {
        let now = Instant::now();
        let shared = self.shared.clone();
        let mut state = shared.lock();
        let mut queued = false;
        match output {
            JobOutput::Connected { node, result } => {
                let Some(broker) = self.brokers.get_mut(&node) else { return };
                broker.connecting = false;
                match result {
                    Ok(conn) => {
                        broker.session.on_reconnect();
                        broker.conn = Some(conn);
                    }
                    Err(e) => {
                        tracing::warn!(node, error = %e, "fetch connection failed");
                        broker.failures += 1;
                        // The leader may have moved: let metadata say where. Partitions read
                        // from this node as a replica go back to their leader.
                        let metadata = self.cluster.metadata();
                        for (tp, part) in state.partitions.iter_mut() {
                            if part.read_replica.is_some_and(|r| r.node == node) {
                                part.read_replica = None;
                            } else if leader_of(&metadata, tp).is_some_and(|(leader, _)| leader == node) {
                                part.stale = true;
                            }
                        }
                    }
                }
            }
            JobOutput::Fetched { node, job, sent, result } => {
                state.finish_job(job, sent.partitions.keys().cloned());
                let retry_at = now + self.retry_backoff(0);
                let reactions = Reactions {
                    reset: self.config.auto_offset_reset,
                    retry_at,
                    replica_until: now + self.config.replica_max_age,
                };
                let broker_backoff = self.brokers.get(&node).map_or(0, |b| b.failures);
                let failure_backoff = self.retry_backoff(broker_backoff);
                let Some(broker) = self.brokers.get_mut(&node) else { return };
                broker.fetching = false;
                match result {
                    Err(e) => {
                        tracing::debug!(node, error = %e, "fetch failed");
                        broker.session.on_failure(&sent.session);
                        state.forget_read_replicas(sent.partitions.keys());
                        broker.failures += 1;
                        broker.retry_at = Some(now + failure_backoff);
                        if broker.conn.as_ref().is_some_and(Connection::is_broken) {
                            broker.conn = None;
                        }
                        if matches!(e, Error::Network(_)) {
                            for tp in sent.partitions.keys() {
                                if let Some(part) = state.partitions.get_mut(tp) {
                                    part.stale = true;
                                }
                            }
                        }
                    }
                    Ok(outcome) => {
                        broker.failures = 0;
                        if outcome.throttle_time_ms > 0 {
                            let throttle = std::time::Duration::from_millis(outcome.throttle_time_ms as u64);
                            broker.retry_at = Some(now + throttle);
                        }
                        match broker.session.on_response(&sent.session, outcome.error_code, outcome.session_id) {
                            SessionOutcome::Accepted => {
                                for (tp, result) in outcome.partitions {
                                    let Some(&(epoch, fetch_offset)) = sent.partitions.get(&tp) else {
                                        tracing::debug!(partition = %tp, "fetch answered a partition not asked for");
                                        continue;
                                    };
                                    let applied = state.apply_fetch(&tp, epoch, fetch_offset, result, reactions);
                                    queued |= applied.queued;
                                    if let Some(fetched) = &applied.fetched {
                                        self.shared.record_fetched(&tp, fetched);
                                    }
                                }
                                self.shared.record_buffer(&state);
                            }
                            SessionOutcome::Restart => {
                                tracing::debug!(node, code = outcome.error_code, "fetch session lost, full fetch next");
                            }
                            SessionOutcome::Failed => {
                                tracing::warn!(node, code = outcome.error_code, "fetch failed at the top level");
                                broker.retry_at = Some(retry_at);
                            }
                        }
                        if let Some(s) = state.sessions.get_mut(&node) {
                            s.mode = broker.session.mode();
                        }
                    }
                }
            }
            JobOutput::Listed { job, sent, result } => {
                state.finish_job(job, sent.iter().map(|t| t.partition.clone()));
                let retry_at = now + self.retry_backoff(0);
                match result {
                    Ok(answers) => {
                        let epochs: HashMap<&TopicPartition, u64> =
                            sent.iter().map(|t| (&t.partition, t.epoch)).collect();
                        let mut answered = std::collections::HashSet::new();
                        for (tp, answer) in &answers {
                            if let Some(&epoch) = epochs.get(tp) {
                                answered.insert(tp.clone());
                                queued |= state.apply_reset(tp, epoch, answer.code, answer.offset, retry_at).queued;
                            }
                        }
                        for t in sent.iter().filter(|t| !answered.contains(&t.partition)) {
                            // Not in the answer: ask again later.
                            let _ = state.apply_reset(&t.partition, t.epoch, -1, -1, retry_at);
                        }
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "ListOffsets failed");
                        for t in &sent {
                            if let Some(part) = state.partitions.get_mut(&t.partition) {
                                if part.epoch == t.epoch {
                                    part.retry_at = Some(retry_at);
                                    part.stale |= matches!(e, Error::Network(_));
                                }
                            }
                        }
                    }
                }
            }
            JobOutput::Refreshed { flagged, result } => {
                self.metadata.running = false;
                self.metadata.not_before = Some(now + self.retry_backoff(self.metadata.attempt));
                self.metadata.attempt = self.metadata.attempt.saturating_add(1);
                match result {
                    Ok(()) => {
                        for tp in &flagged {
                            if let Some(part) = state.partitions.get_mut(tp) {
                                part.stale = false;
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "metadata refresh for the fetcher failed"),
                }
            }
        }
        drop(state);
        if queued {
            self.shared.data.notify_waiters();
        }
    }
}

impl Broker {
    fn new(addr: &str, config: Arc<ConnectionConfig>) -> Self {
        Broker {
            link: Arc::new(BrokerLink::new(addr, config)),
            conn: None,
            connecting: false,
            fetching: false,
            retry_at: None,
            failures: 0,
            session: FetchSession::default(),
            full_fetches: 0,
            incremental_fetches: 0,
        }
    }
}

fn millis(d: std::time::Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}

fn topic_name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_owned()))
}

/// The Fetch request for `session`, with `send` in the order given.
pub(super) fn fetch_request(
    config: &FetcherConfig,
    version: i16,
    session: &SessionRequest,
    send: &[(TopicPartition, SessionPartition)],
    max_bytes: i32,
) -> FetchRequest {
    let mut topics: Vec<FetchTopic> = Vec::new();
    for (tp, p) in send {
        let partition = FetchPartition::default()
            .with_partition(tp.partition)
            .with_current_leader_epoch(p.leader_epoch)
            .with_fetch_offset(p.fetch_offset)
            .with_log_start_offset(-1)
            .with_partition_max_bytes(p.max_bytes);
        match topics.last_mut() {
            Some(t) if t.topic.0.as_str() == &*tp.topic => t.partitions.push(partition),
            _ => topics.push(FetchTopic::default().with_topic(topic_name(&tp.topic)).with_partitions(vec![partition])),
        }
    }
    let mut forgotten: Vec<ForgottenTopic> = Vec::new();
    for tp in &session.forgotten {
        match forgotten.last_mut() {
            Some(t) if t.topic.0.as_str() == &*tp.topic => t.partitions.push(tp.partition),
            _ => forgotten
                .push(ForgottenTopic::default().with_topic(topic_name(&tp.topic)).with_partitions(vec![tp.partition])),
        }
    }
    let mut request = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(millis(config.max_wait))
        .with_min_bytes(config.min_bytes)
        .with_max_bytes(max_bytes)
        .with_isolation_level(config.isolation.wire())
        .with_topics(topics);
    if version >= 11 {
        if let Some(rack) = &config.rack {
            request = request.with_rack_id(StrBytes::from_string(rack.clone()));
        }
    }
    if version >= 7 {
        request = request
            .with_session_id(session.session_id)
            .with_session_epoch(session.epoch)
            .with_forgotten_topics_data(forgotten);
    }
    request
}

/// Reads the batch headers of every partition of a response (in the job, off the task) and
/// copies each partition's batches out of the response.
pub(super) fn scan_response(response: FetchResponse, sent: &SentFetch, isolation: IsolationLevel) -> FetchOutcome {
    let mut partitions = Vec::new();
    for topic in response.responses {
        for p in topic.partitions {
            let key = TopicPartition::new(topic.topic.0.as_str(), p.partition_index);
            let Some((tp, &(_, fetch_offset))) = sent.partitions.get_key_value(&key) else {
                partitions.push((key, PartitionResult::Error { code: p.error_code }));
                continue;
            };
            if p.error_code != 0 {
                partitions.push((tp.clone(), PartitionResult::Error { code: p.error_code }));
                continue;
            }
            let aborted: Vec<(i64, i64)> =
                p.aborted_transactions.iter().flatten().map(|a| (a.producer_id.0, a.first_offset)).collect();
            let fetch = PartitionFetch {
                topic: &tp.topic,
                partition: tp.partition,
                fetch_offset,
                isolation,
                aborted_transactions: &aborted,
                last_stable_offset: p.last_stable_offset,
            };
            let (wire, scan_error) = WireRecords::scan(p.records.as_deref().unwrap_or_default(), &fetch);
            // -1 (any negative id): no replica named.
            let preferred_replica = Some(p.preferred_read_replica.0).filter(|&node| node >= 0);
            let result = PartitionResult::Data { wire, scan_error, high_watermark: p.high_watermark, preferred_replica };
            partitions.push((tp.clone(), result));
        }
    }
    FetchOutcome {
        error_code: response.error_code,
        session_id: response.session_id,
        throttle_time_ms: response.throttle_time_ms,
        partitions,
    }
}

/// What ListOffsets asks of one partition.
pub(crate) struct OffsetQuery<'a> {
    pub(crate) partition: &'a TopicPartition,
    /// `-1` the log end, `-2` the log start, else the first offset at or after the timestamp.
    pub(crate) timestamp: i64,
    /// `-1` when unknown (the leader does not check it then).
    pub(crate) leader_epoch: i32,
}

/// One partition's ListOffsets answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ListedOffset {
    pub(crate) code: i16,
    /// `-1` when a lookup by time found no record at or after it.
    pub(crate) offset: i64,
    /// The found record's timestamp; `-1` for the log start and end.
    pub(crate) timestamp: i64,
}

/// ListOffsets to the leader: the answer of each partition answered.
pub(crate) async fn list_offsets(
    cluster: &Cluster,
    node: i32,
    targets: &[OffsetQuery<'_>],
    isolation: IsolationLevel,
) -> Result<Vec<(TopicPartition, ListedOffset)>> {
    let conn = cluster.connect_broker(node).await?;
    let version = conn.version(ApiKey::ListOffsets)?;
    let mut topics: Vec<ListOffsetsTopic> = Vec::new();
    for t in targets {
        let partition = ListOffsetsPartition::default()
            .with_partition_index(t.partition.partition)
            .with_current_leader_epoch(t.leader_epoch)
            .with_timestamp(t.timestamp);
        match topics.iter_mut().find(|x| x.name.0.as_str() == &*t.partition.topic) {
            Some(x) => x.partitions.push(partition),
            None => topics.push(
                ListOffsetsTopic::default().with_name(topic_name(&t.partition.topic)).with_partitions(vec![partition]),
            ),
        }
    }
    let mut request = ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(topics);
    if version >= 2 {
        request = request.with_isolation_level(isolation.wire());
    }
    let response = conn.send_at(&request, version, cluster.config().connection.request_timeout).await?;
    let mut answers = Vec::new();
    for topic in &response.topics {
        for p in &topic.partitions {
            let tp = targets
                .iter()
                .map(|t| t.partition)
                .find(|tp| &*tp.topic == topic.name.0.as_str() && tp.partition == p.partition_index);
            if let Some(tp) = tp {
                answers.push((tp.clone(), ListedOffset { code: p.error_code, offset: p.offset, timestamp: p.timestamp }));
            }
        }
    }
    Ok(answers)
}

/// ListOffsets of each `(partition, timestamp)` at its leader in `metadata`, answered in the
/// order asked. A partition asked twice goes out in two requests (a broker refuses a
/// partition repeated in one). A partition without a leader, an error code, or a partition
/// missing from the answer is an error: an offset that could not be looked up is never "none".
pub(crate) async fn look_up_offsets(
    cluster: &Cluster,
    metadata: &MetadataSnapshot,
    queries: &[(TopicPartition, i64)],
    isolation: IsolationLevel,
) -> Result<Vec<ListedOffset>> {
    // Per leader, requests in which no partition repeats; each query keeps its index.
    let mut requests: BTreeMap<i32, Vec<Vec<(usize, OffsetQuery<'_>)>>> = BTreeMap::new();
    for (index, (tp, timestamp)) in queries.iter().enumerate() {
        let Some(leader) = metadata.leader(&tp.topic, tp.partition) else {
            return Err(Error::UnknownPartition { topic: tp.topic.to_string(), partition: Some(tp.partition) });
        };
        let rounds = requests.entry(leader).or_default();
        let query = OffsetQuery { partition: tp, timestamp: *timestamp, leader_epoch: -1 };
        match rounds.iter_mut().find(|round| round.iter().all(|(_, q)| q.partition != tp)) {
            Some(round) => round.push((index, query)),
            None => rounds.push(vec![(index, query)]),
        }
    }
    let mut answers: Vec<Option<ListedOffset>> = vec![None; queries.len()];
    for (leader, rounds) in requests {
        for round in rounds {
            let (indices, targets): (Vec<usize>, Vec<OffsetQuery<'_>>) = round.into_iter().unzip();
            let listed = list_offsets(cluster, leader, &targets, isolation).await?;
            for (index, target) in indices.into_iter().zip(&targets) {
                let Some((_, answer)) = listed.iter().find(|(tp, _)| tp == target.partition) else { continue };
                let tp = target.partition;
                check_code(ApiKey::ListOffsets, answer.code, || format!("partition {tp}"))?;
                answers[index] = Some(*answer);
            }
        }
    }
    answers
        .into_iter()
        .zip(queries)
        .map(|(answer, (tp, _))| {
            answer.ok_or_else(|| Error::broker(ApiKey::ListOffsets, -1, format!("the answer has no entry for {tp}")))
        })
        .collect()
}
