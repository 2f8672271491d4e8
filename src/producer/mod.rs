//! A small producer for loading data and for demos: record batch v2, `acks` 0 / 1 / all,
//! murmur2 key partitioning, optional compression, batching per partition with linger and a
//! maximum batch size. Not idempotent: a retried batch can be written twice.

pub mod partitioner;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType, NO_PARTITION_LEADER_EPOCH, NO_PRODUCER_EPOCH,
    NO_PRODUCER_ID, NO_SEQUENCE,
};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::time::Instant;

use crate::driver::backoff::Backoff;
use crate::driver::cluster::{validate_topic_name, Cluster};
use crate::error::{ClosedCause, ConfigError, Error, Result};
use crate::protocol::error_code::ErrorAction;

pub use kafka_protocol::records::Compression;

type Headers = kafka_protocol::indexmap::IndexMap<StrBytes, Option<Bytes>>;

/// `acks`: how many replicas must have the batch before the broker answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// `acks=0`: the broker sends no response at all.
    None,
    /// `acks=1`: the leader has written it.
    Leader,
    /// `acks=all`: every in-sync replica has it.
    All,
}

impl Acks {
    fn wire(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }
}

/// Producer settings, named after the Java client's properties.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// `acks` (default all).
    pub acks: Acks,
    /// `compression.type` (default none).
    pub compression: Compression,
    /// `linger.ms` (default 5 ms).
    pub linger: Duration,
    /// `batch.size` in bytes, per partition (default 64 KiB).
    pub batch_size: usize,
    /// `delivery.timeout.ms`-like bound on retries of one batch (default 5 attempts).
    pub max_attempts: u32,
    /// `retry.backoff.ms`.
    pub retry_backoff: Backoff,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            acks: Acks::All,
            compression: Compression::None,
            linger: Duration::from_millis(5),
            batch_size: 64 * 1024,
            max_attempts: 5,
            retry_backoff: Backoff { initial: Duration::from_millis(100), max: Duration::from_secs(1), jitter: 0.2 },
        }
    }
}

/// One record to send.
#[derive(Debug, Clone, Default)]
pub struct ProducerRecord {
    /// The topic to write to.
    pub topic: String,
    /// Explicit partition; otherwise murmur2 of the key, or round robin without a key.
    pub partition: Option<i32>,
    /// The key (`None`: null).
    pub key: Option<Bytes>,
    /// The value (`None`: null, a tombstone).
    pub value: Option<Bytes>,
    /// The headers, in order.
    pub headers: Vec<(String, Option<Bytes>)>,
    /// Milliseconds since the epoch; defaults to now.
    pub timestamp: Option<i64>,
}

impl ProducerRecord {
    /// A record with a value, partitioned by its key.
    pub fn new(topic: impl Into<String>, key: Option<impl Into<Bytes>>, value: impl Into<Bytes>) -> Self {
        ProducerRecord {
            topic: topic.into(),
            key: key.map(Into::into),
            value: Some(value.into()),
            ..Default::default()
        }
    }
}

/// Where a record was written. `offset` is `-1` under `acks=0`, where the broker says nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordMetadata {
    /// The partition written to.
    pub partition: i32,
    /// The record's offset.
    pub offset: i64,
}

type DeliveryReply = oneshot::Sender<Result<RecordMetadata>>;

/// Resolves when the record's batch is acknowledged (or has failed for good).
pub struct DeliveryFuture {
    rx: oneshot::Receiver<Result<RecordMetadata>>,
}

impl Future for DeliveryFuture {
    type Output = Result<RecordMetadata>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx).poll(cx).map(|r| r.unwrap_or(Err(producer_closed())))
    }
}

/// The producer's task is gone while a handle on it is not (it panicked, or the runtime is
/// shutting down): `close` consumes the producer, so nobody can call it after that.
fn producer_closed() -> Error {
    Error::Closed { what: "producer", cause: ClosedCause::TaskEnded }
}

enum Command {
    Send(ProducerRecord, DeliveryReply),
    Flush,
}

/// Counts records handed to `send` and not yet answered, so `flush` knows when it is done.
#[derive(Default)]
struct Outstanding {
    count: AtomicUsize,
    drained: Notify,
}

impl Outstanding {
    fn finish(&self, n: usize) {
        if self.count.fetch_sub(n, Ordering::AcqRel) == n {
            self.drained.notify_waiters();
        }
    }
}

/// The producer handle. Dropping it (or [`Producer::close`]) sends what is buffered.
pub struct Producer {
    commands: mpsc::UnboundedSender<Command>,
    outstanding: Arc<Outstanding>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Producer {
    /// Starts the producer's task on the current tokio runtime; a zero `batch_size` is refused.
    pub fn new(cluster: Cluster, config: ProducerConfig) -> Result<Producer> {
        if config.batch_size == 0 {
            return Err(ConfigError::InvalidValue {
                key: "batch.size",
                value: "0".into(),
                reason: "must be positive".into(),
            }
            .into());
        }
        let (commands, rx) = mpsc::unbounded_channel();
        let outstanding = Arc::new(Outstanding::default());
        let accumulator = Accumulator {
            cluster,
            config: Arc::new(config),
            batches: BTreeMap::new(),
            round_robin: HashMap::new(),
            outstanding: outstanding.clone(),
        };
        let task = tokio::spawn(accumulator.run(rx));
        Ok(Producer { commands, outstanding, task: Some(task) })
    }

    /// Queues a record. The topic name is checked here; everything else is reported by the
    /// returned future.
    pub fn send(&self, record: ProducerRecord) -> DeliveryFuture {
        let (tx, rx) = oneshot::channel();
        if let Err(e) = validate_topic_name(&record.topic) {
            let _ = tx.send(Err(e.into()));
            return DeliveryFuture { rx };
        }
        self.outstanding.count.fetch_add(1, Ordering::AcqRel);
        if let Err(mpsc::error::SendError(Command::Send(_, tx))) = self.commands.send(Command::Send(record, tx)) {
            self.outstanding.finish(1);
            let _ = tx.send(Err(producer_closed()));
        }
        DeliveryFuture { rx }
    }

    /// Sends everything buffered now and waits until every record sent before this call is
    /// answered.
    pub async fn flush(&self) {
        let _ = self.commands.send(Command::Flush);
        loop {
            let drained = self.outstanding.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            if self.outstanding.count.load(Ordering::Acquire) == 0 {
                return;
            }
            drained.await;
        }
    }

    /// Flushes and stops the background task.
    pub async fn close(mut self) {
        self.flush().await;
        if let Some(task) = self.task.take() {
            drop(std::mem::replace(&mut self.commands, mpsc::unbounded_channel().0));
            let _ = task.await;
        }
    }
}

struct PendingRecord {
    record: Record,
    reply: DeliveryReply,
}

struct Batch {
    topic: String,
    partition: i32,
    records: Vec<PendingRecord>,
    bytes: usize,
    opened: Instant,
}

struct Accumulator {
    cluster: Cluster,
    config: Arc<ProducerConfig>,
    batches: BTreeMap<(String, i32), Batch>,
    round_robin: HashMap<String, i32>,
    outstanding: Arc<Outstanding>,
}

impl Accumulator {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        loop {
            let linger_deadline = self.batches.values().map(|b| b.opened + self.config.linger).min();
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::Send(record, reply)) => self.append(record, reply).await,
                    Some(Command::Flush) => self.dispatch(|_| true),
                    None => {
                        self.dispatch(|_| true);
                        return;
                    }
                },
                _ = sleep_until_opt(linger_deadline) => {
                    let now = Instant::now();
                    let linger = self.config.linger;
                    self.dispatch(|b| b.opened + linger <= now);
                }
            }
        }
    }

    async fn append(&mut self, record: ProducerRecord, reply: DeliveryReply) {
        let partition = match self.choose_partition(&record).await {
            Ok(p) => p,
            Err(e) => {
                let _ = reply.send(Err(e));
                self.outstanding.finish(1);
                return;
            }
        };
        let size = record.key.as_ref().map_or(0, Bytes::len) + record.value.as_ref().map_or(0, Bytes::len) + 16;
        let batch = self.batches.entry((record.topic.clone(), partition)).or_insert_with(|| Batch {
            topic: record.topic.clone(),
            partition,
            records: Vec::new(),
            bytes: 0,
            opened: Instant::now(),
        });
        let offset = batch.records.len() as i64;
        batch.records.push(PendingRecord { record: to_wire_record(record, offset), reply });
        batch.bytes += size;
        if batch.bytes >= self.config.batch_size {
            let key = (batch.topic.clone(), partition);
            self.dispatch(|b| (b.topic.as_str(), b.partition) == (key.0.as_str(), key.1));
        }
    }

    async fn choose_partition(&mut self, record: &ProducerRecord) -> Result<i32> {
        let count = match self.cluster.metadata().partition_count(&record.topic) {
            Some(n) => n,
            None => self
                .cluster
                .wait_for_topic(&record.topic)
                .await?
                .partition_count(&record.topic)
                .ok_or_else(|| Error::UnknownPartition { topic: record.topic.clone(), partition: None })?,
        };
        Ok(match (record.partition, &record.key) {
            (Some(p), _) if (0..count as i32).contains(&p) => p,
            (Some(p), _) => return Err(Error::UnknownPartition { topic: record.topic.clone(), partition: Some(p) }),
            (None, Some(key)) => partitioner::partition_for_key(key, count),
            (None, None) => {
                let next = self.round_robin.entry(record.topic.clone()).or_insert(0);
                *next = (*next + 1) % count as i32;
                *next
            }
        })
    }

    /// Takes the batches `ready` selects and sends them, one request per leader.
    fn dispatch(&mut self, ready: impl Fn(&Batch) -> bool) {
        let keys: Vec<_> = self.batches.iter().filter(|(_, b)| ready(b)).map(|(k, _)| k.clone()).collect();
        let batches: Vec<Batch> = keys.iter().filter_map(|k| self.batches.remove(k)).collect();
        if batches.is_empty() {
            return;
        }
        let metadata = self.cluster.metadata();
        let mut by_leader: BTreeMap<i32, Vec<Batch>> = BTreeMap::new();
        for batch in batches {
            let leader = metadata.leader(&batch.topic, batch.partition).unwrap_or(-1);
            by_leader.entry(leader).or_default().push(batch);
        }
        for (leader, batches) in by_leader {
            let sender = Sender {
                cluster: self.cluster.clone(),
                config: self.config.clone(),
                outstanding: self.outstanding.clone(),
            };
            tokio::spawn(sender.send(leader, batches));
        }
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn to_wire_record(record: ProducerRecord, offset: i64) -> Record {
    let timestamp = record.timestamp.unwrap_or_else(now_millis);
    Record {
        transactional: false,
        control: false,
        partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
        producer_id: NO_PRODUCER_ID,
        producer_epoch: NO_PRODUCER_EPOCH,
        timestamp_type: TimestampType::Creation,
        offset,
        // The encoder keeps records in one batch while `offset - sequence` is constant.
        sequence: NO_SEQUENCE.wrapping_add(offset as i32),
        timestamp,
        key: record.key,
        value: record.value,
        headers: record.headers.into_iter().map(|(k, v)| (StrBytes::from_string(k), v)).collect::<Headers>(),
        delete_horizon: false,
    }
}

fn now_millis() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Sends batches to one leader; failed batches are retried one by one after a metadata refresh.
struct Sender {
    cluster: Cluster,
    config: Arc<ProducerConfig>,
    outstanding: Arc<Outstanding>,
}

impl Sender {
    async fn send(self, leader: i32, batches: Vec<Batch>) {
        let failed = match self.produce(leader, &batches).await {
            Ok(per_batch) => {
                let mut failed = Vec::new();
                for (batch, outcome) in batches.into_iter().zip(per_batch) {
                    match outcome {
                        Ok(base) => self.complete(batch, Ok(base)),
                        Err(e) => failed.push((batch, e)),
                    }
                }
                failed
            }
            Err(e) => batches.into_iter().map(|b| (b, e.clone())).collect(),
        };
        for (batch, error) in failed {
            self.retry(batch, error).await;
        }
    }

    async fn retry(&self, batch: Batch, mut error: Error) {
        for attempt in 1..self.config.max_attempts {
            if !matches!(
                error.action(),
                ErrorAction::Retry | ErrorAction::RefreshMetadata | ErrorAction::RefreshCoordinator
            ) {
                break;
            }
            tracing::debug!(topic = %batch.topic, partition = batch.partition, %error, attempt, "retrying produce");
            tokio::time::sleep(self.config.retry_backoff.delay(attempt - 1)).await;
            let leader = match self.cluster.refresh_metadata(Some(&[&batch.topic])).await {
                Ok(m) => m.leader(&batch.topic, batch.partition).unwrap_or(-1),
                Err(e) => {
                    error = e;
                    continue;
                }
            };
            match self.produce(leader, std::slice::from_ref(&batch)).await.and_then(|mut v| v.remove(0)) {
                Ok(base) => return self.complete(batch, Ok(base)),
                Err(e) => error = e,
            }
        }
        self.complete(batch, Err(error));
    }

    fn complete(&self, batch: Batch, outcome: Result<i64>) {
        let n = batch.records.len();
        for (i, pending) in batch.records.into_iter().enumerate() {
            let result = outcome.clone().map(|base| RecordMetadata {
                partition: batch.partition,
                offset: if base < 0 { -1 } else { base + i as i64 },
            });
            let _ = pending.reply.send(result);
        }
        self.outstanding.finish(n);
    }

    /// One Produce request; the outer error is for the whole request, the inner per batch.
    async fn produce(&self, leader: i32, batches: &[Batch]) -> Result<Vec<Result<i64>>> {
        if leader < 0 {
            let b = &batches[0];
            return Err(Error::UnknownPartition { topic: b.topic.clone(), partition: Some(b.partition) });
        }
        let conn = self.cluster.connect_broker(leader).await?;
        let version = conn.version(ApiKey::Produce)?;
        let options = RecordEncodeOptions { version: 2, compression: self.config.compression };
        let mut topics: BTreeMap<&str, Vec<PartitionProduceData>> = BTreeMap::new();
        for batch in batches {
            let mut buf = BytesMut::new();
            RecordBatchEncoder::encode(&mut buf, batch.records.iter().map(|p| &p.record), &options).map_err(|e| {
                Error::from(crate::protocol::ProtocolError::Encode {
                    api: ApiKey::Produce,
                    version,
                    detail: format!("record batch: {e:#}"),
                })
            })?;
            topics
                .entry(&batch.topic)
                .or_default()
                .push(PartitionProduceData::default().with_index(batch.partition).with_records(Some(buf.freeze())));
        }
        let timeout = self.cluster.config().connection.request_timeout;
        let request = ProduceRequest::default()
            .with_acks(self.config.acks.wire())
            .with_timeout_ms(i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX))
            .with_topic_data(
                topics
                    .into_iter()
                    .map(|(name, partitions)| {
                        TopicProduceData::default()
                            .with_name(TopicName(StrBytes::from_string(name.to_owned())))
                            .with_partition_data(partitions)
                    })
                    .collect(),
            );
        if self.config.acks == Acks::None {
            conn.send_without_response(&request, version).await?;
            return Ok(batches.iter().map(|_| Ok(-1)).collect());
        }
        let response = conn.send_at(&request, version, timeout).await?;
        let mut results: HashMap<(&str, i32), (i16, i64)> = HashMap::new();
        for topic in &response.responses {
            for p in &topic.partition_responses {
                results.insert((topic.name.as_str(), p.index), (p.error_code, p.base_offset));
            }
        }
        Ok(batches
            .iter()
            .map(|b| match results.get(&(b.topic.as_str(), b.partition)) {
                Some(&(0, base)) => Ok(base),
                Some(&(code, _)) => Err(Error::broker(ApiKey::Produce, code, format!("{}/{}", b.topic, b.partition))),
                None => Err(Error::broker(ApiKey::Produce, -1, format!("no answer for {}/{}", b.topic, b.partition))),
            })
            .collect())
    }
}
