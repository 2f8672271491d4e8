//! The cluster view: bootstrap, metadata, one link per broker, coordinator lookup, topic admin.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, FindCoordinatorRequest, MetadataRequest, MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::backoff::Backoff;
pub use super::connection::ConnectionConfig;
use super::connection::{check_code, BrokerLink, Connection};
use super::security::{SecurityConfig, SECURITY_KEYS};
use crate::consumer::config::{consumer_key_alias, ConfigWarningKind};
use crate::consumer::ConfigWarning;
use crate::error::{ConfigError, Error, NetworkError, Result};
use crate::protocol::error_code::{ErrorAction, KafkaCode};

/// One broker as metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    /// The broker id.
    pub node_id: i32,
    /// The host it advertises.
    pub host: String,
    /// The port it advertises.
    pub port: i32,
    /// `broker.rack`, when set.
    pub rack: Option<String>,
}

impl BrokerInfo {
    /// `host:port`, as connections take it.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// One partition: its leader (`-1` while there is none) and leader epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    /// The partition number.
    pub partition: i32,
    /// The leader's broker id, `-1` while there is none.
    pub leader: i32,
    /// The leader epoch.
    pub leader_epoch: i32,
    /// The partition's error code (NONE when it is readable).
    pub error: KafkaCode,
}

/// One topic: its error code and partitions, sorted by number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    /// The topic name.
    pub name: String,
    /// The topic's error code (UNKNOWN_TOPIC_OR_PARTITION while it does not exist).
    pub error: KafkaCode,
    /// Its partitions, sorted by number.
    pub partitions: Vec<PartitionInfo>,
    /// An internal topic (`__consumer_offsets`, ...), as Metadata v1+ says.
    pub internal: bool,
    /// Its topic id (KIP-516), from Metadata v10+; `None` before, or while the broker has none.
    pub id: Option<uuid::Uuid>,
}

/// What the last Metadata response said.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetadataSnapshot {
    /// The cluster id, when the broker sends one.
    pub cluster_id: Option<String>,
    /// The controller's broker id.
    pub controller_id: i32,
    /// The brokers, by id.
    pub brokers: BTreeMap<i32, BrokerInfo>,
    /// The topics known, by name: a refresh of some topics merges into them, a refresh of
    /// every topic replaces them.
    pub topics: BTreeMap<String, TopicInfo>,
}

impl MetadataSnapshot {
    fn from_response(response: &MetadataResponse) -> Self {
        let brokers = response
            .brokers
            .iter()
            .map(|b| {
                let info = BrokerInfo {
                    node_id: b.node_id.0,
                    host: b.host.to_string(),
                    port: b.port,
                    rack: b.rack.as_ref().map(|r| r.to_string()),
                };
                (info.node_id, info)
            })
            .collect();
        let topics = response
            .topics
            .iter()
            .filter_map(|t| {
                let name = t.name.as_ref()?.to_string();
                let mut partitions: Vec<PartitionInfo> = t
                    .partitions
                    .iter()
                    .map(|p| PartitionInfo {
                        partition: p.partition_index,
                        leader: p.leader_id.0,
                        leader_epoch: p.leader_epoch,
                        error: KafkaCode(p.error_code),
                    })
                    .collect();
                partitions.sort_by_key(|p| p.partition);
                let info = TopicInfo {
                    name: name.clone(),
                    error: KafkaCode(t.error_code),
                    partitions,
                    internal: t.is_internal,
                    id: Some(t.topic_id).filter(|id| !id.is_nil()),
                };
                Some((name, info))
            })
            .collect();
        MetadataSnapshot {
            cluster_id: response.cluster_id.as_ref().map(|c| c.to_string()),
            controller_id: response.controller_id.0,
            brokers,
            topics,
        }
    }

    /// Partition count of a topic that exists without error.
    pub fn partition_count(&self, topic: &str) -> Option<usize> {
        self.topics.get(topic).filter(|t| !t.error.is_error() && !t.partitions.is_empty()).map(|t| t.partitions.len())
    }

    /// The leader of a partition, when there is one.
    pub fn leader(&self, topic: &str, partition: i32) -> Option<i32> {
        let info = self.topics.get(topic)?.partitions.iter().find(|p| p.partition == partition)?;
        (info.leader >= 0).then_some(info.leader)
    }
}

/// How long a lookup (metadata, coordinator) waits for one broker before it tries the next as
/// well (RFC 8305's recommended connection attempt delay).
pub const CONNECTION_ATTEMPT_DELAY: Duration = Duration::from_millis(250);

/// The group coordinator a FindCoordinator call named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoordinatorInfo {
    /// The coordinator's broker id.
    pub node_id: i32,
    /// Its host.
    pub host: String,
    /// Its port.
    pub port: i32,
}

impl CoordinatorInfo {
    /// `host:port`, as connections take it.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// Settings for a [`Cluster`].
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// `bootstrap.servers`: `host:port` entries.
    pub bootstrap: Vec<String>,
    /// Settings of every broker connection: client id, timeouts, TLS and SASL.
    pub connection: ConnectionConfig,
    /// `retry.backoff.ms` for metadata and coordinator retries.
    pub retry_backoff: Backoff,
    /// Upper bound on the retry loops of metadata and coordinator lookups.
    pub retry_timeout: Duration,
}

impl ClusterConfig {
    /// Defaults for everything but the bootstrap list.
    pub fn new(bootstrap: impl IntoIterator<Item = impl Into<String>>) -> Self {
        ClusterConfig {
            bootstrap: bootstrap.into_iter().map(Into::into).collect(),
            connection: ConnectionConfig::default(),
            retry_backoff: Backoff { initial: Duration::from_millis(100), max: Duration::from_secs(1), jitter: 0.2 },
            retry_timeout: Duration::from_secs(30),
        }
    }

    /// Builds a configuration from librdkafka-style properties: `bootstrap.servers` (required),
    /// `client.id`, and the security keys of [`SECURITY_KEYS`].
    /// A consumer's other keys are accepted and logged as not used (see
    /// [`Self::from_properties_with_warnings`]), so a consumer's file configures the cluster too.
    pub fn from_properties<K: AsRef<str>, V: AsRef<str>>(
        properties: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, ConfigError> {
        let (config, warnings) = Self::from_properties_with_warnings(properties)?;
        for warning in &warnings {
            tracing::warn!(key = %warning.key, "{warning}");
        }
        Ok(config)
    }

    /// Like [`Self::from_properties`], returning the keys that configure a consumer rather
    /// than the cluster (kgroup's, the Java client's or librdkafka's) as warnings. A key no
    /// client knows, or a setting kgroup cannot honour, is an error as for a consumer.
    pub fn from_properties_with_warnings<K: AsRef<str>, V: AsRef<str>>(
        properties: impl IntoIterator<Item = (K, V)>,
    ) -> Result<(Self, Vec<ConfigWarning>), ConfigError> {
        let mut bootstrap = None;
        let mut client_id = None;
        let mut security = Vec::new();
        let mut warnings = Vec::new();
        for (key, value) in properties {
            let (key, value) = (key.as_ref().trim(), value.as_ref().trim());
            match key {
                "bootstrap.servers" => bootstrap = Some(value.to_owned()),
                "client.id" => client_id = Some(value.to_owned()),
                _ if SECURITY_KEYS.contains(&key) => security.push((key.to_owned(), value.to_owned())),
                _ => match consumer_key_alias(key, value)? {
                    Some(servers @ "bootstrap.servers") => {
                        warnings.push(ConfigWarning::mapped(key, servers, value));
                        bootstrap = Some(value.to_owned());
                    }
                    _ => warnings.push(ConfigWarning { key: key.to_owned(), kind: ConfigWarningKind::NotUsed }),
                },
            }
        }
        let mut config = Self::from_bootstrap_servers(bootstrap.as_deref().unwrap_or(""))?;
        if let Some(client_id) = client_id {
            config.connection.client_id = client_id;
        }
        config.connection.security = SecurityConfig::from_properties(security)?;
        Ok((config, warnings))
    }

    /// Parses `bootstrap.servers` (`host:port[,host:port...]`).
    pub fn from_bootstrap_servers(servers: &str) -> Result<Self, ConfigError> {
        let entries: Vec<String> =
            servers.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect();
        if entries.is_empty() {
            return Err(ConfigError::Missing { key: "bootstrap.servers" });
        }
        for entry in &entries {
            let port_ok =
                entry.rsplit_once(':').is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !port_ok {
                return Err(ConfigError::InvalidValue {
                    key: "bootstrap.servers",
                    value: entry.clone(),
                    reason: "expected host:port".into(),
                });
            }
        }
        Ok(ClusterConfig::new(entries))
    }
}

/// Checks a topic name the way the broker will (legal characters, length, not `.` or `..`).
pub fn validate_topic_name(name: &str) -> Result<(), ConfigError> {
    let reason = if name.is_empty() {
        Some("empty")
    } else if name == "." || name == ".." {
        Some("'.' and '..' are reserved")
    } else if name.len() > 249 {
        Some("longer than 249 characters")
    } else if !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')) {
        Some("only ASCII letters, digits, '.', '_' and '-' are allowed")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(ConfigError::InvalidTopic { name: name.to_owned(), reason }),
        None => Ok(()),
    }
}

struct Inner {
    config: ClusterConfig,
    connection_config: Arc<ConnectionConfig>,
    bootstrap: Vec<Arc<BrokerLink>>,
    links: Mutex<HashMap<String, Arc<BrokerLink>>>,
    metadata: Mutex<Arc<MetadataSnapshot>>,
}

/// A handle on the cluster. Cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("bootstrap", &self.inner.config.bootstrap).finish_non_exhaustive()
    }
}

impl Cluster {
    /// Connects to the first bootstrap broker that answers and loads broker metadata.
    pub async fn connect(config: ClusterConfig) -> Result<Cluster> {
        if config.bootstrap.is_empty() {
            return Err(ConfigError::Missing { key: "bootstrap.servers" }.into());
        }
        let connection_config = Arc::new(config.connection.clone());
        let bootstrap =
            config.bootstrap.iter().map(|a| Arc::new(BrokerLink::new(a.clone(), connection_config.clone()))).collect();
        let cluster = Cluster {
            inner: Arc::new(Inner {
                config,
                connection_config,
                bootstrap,
                links: Mutex::new(HashMap::new()),
                metadata: Mutex::new(Arc::new(MetadataSnapshot::default())),
            }),
        };
        cluster.refresh_metadata(Some(&[])).await?;
        Ok(cluster)
    }

    /// The settings it was connected with.
    pub fn config(&self) -> &ClusterConfig {
        &self.inner.config
    }

    /// The last metadata fetched.
    pub fn metadata(&self) -> Arc<MetadataSnapshot> {
        self.inner.metadata.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// A connection to any reachable broker: a live one if there is one, otherwise the first
    /// to connect of the known brokers, then the bootstrap list (brokers in backoff after a
    /// failure last).
    ///
    /// Attempts are staggered as in Happy Eyeballs (RFC 8305): the next broker is tried when an
    /// attempt fails or has not connected within [`CONNECTION_ATTEMPT_DELAY`], so a broker that
    /// is unreachable, or accepts and never answers, delays a lookup by that much and not by
    /// its connect and request timeouts. The attempts still running when one connects are
    /// abandoned.
    ///
    /// Cancel-safe: dropping the future abandons its attempts.
    pub(crate) async fn connect_any(&self) -> Result<Connection> {
        let mut candidates: Vec<Arc<BrokerLink>> =
            self.metadata().brokers.values().map(|b| self.link(&b.addr())).collect();
        candidates.extend(self.inner.bootstrap.iter().cloned());
        if let Some(conn) = candidates.iter().find_map(|link| link.current()) {
            return Ok(conn);
        }
        // A bootstrap entry is often a known broker too: one attempt per address.
        let mut seen = std::collections::HashSet::new();
        candidates.retain(|link| seen.insert(link.addr().to_owned()));
        candidates.sort_by_key(|link| link.retry_at());
        let tried: Vec<String> = candidates.iter().map(|l| l.addr().to_owned()).collect();
        let mut waiting = candidates.into_iter();
        let mut attempts = tokio::task::JoinSet::new();
        let mut start_next = |attempts: &mut tokio::task::JoinSet<Result<Connection>>| match waiting.next() {
            Some(link) => {
                attempts.spawn(async move { link.connection().await });
                true
            }
            None => false,
        };
        let mut more_to_start = start_next(&mut attempts);
        let mut last = None;
        while !attempts.is_empty() {
            tokio::select! {
                Some(joined) = attempts.join_next() => {
                    match joined {
                        Ok(Ok(conn)) => return Ok(conn),
                        // A certificate or credential problem is the same on every broker and
                        // is not cured by retrying: report it as it is, so no caller loops on it.
                        Ok(Err(e @ Error::Security(_))) => return Err(e),
                        Ok(Err(e)) => last = Some(e.to_string()),
                        Err(e) => last = Some(format!("connection attempt stopped: {e}")),
                    }
                    more_to_start = start_next(&mut attempts);
                }
                _ = tokio::time::sleep(CONNECTION_ATTEMPT_DELAY), if more_to_start => {
                    more_to_start = start_next(&mut attempts);
                }
            }
        }
        Err(NetworkError::NoBrokerReachable { tried, last: last.unwrap_or_default() }.into())
    }

    /// The link for an address, created on first use.
    pub(crate) fn link(&self, addr: &str) -> Arc<BrokerLink> {
        let mut links = self.inner.links.lock().unwrap_or_else(PoisonError::into_inner);
        links
            .entry(addr.to_owned())
            .or_insert_with(|| Arc::new(BrokerLink::new(addr, self.inner.connection_config.clone())))
            .clone()
    }

    /// A connection to broker `node_id` as the latest metadata locates it.
    pub(crate) async fn connect_broker(&self, node_id: i32) -> Result<Connection> {
        let addr = match self.metadata().brokers.get(&node_id) {
            Some(b) => b.addr(),
            None => {
                self.refresh_metadata(Some(&[])).await?;
                self.metadata()
                    .brokers
                    .get(&node_id)
                    .map(BrokerInfo::addr)
                    .ok_or(Error::UnknownPartition { topic: format!("<broker {node_id}>"), partition: None })?
            }
        };
        self.link(&addr).connection().await
    }

    /// Fetches metadata for `topics` (`None`: every topic; `Some(&[])`: brokers only) and
    /// merges it into the cached view. Retried with backoff on connection loss.
    pub async fn refresh_metadata(&self, topics: Option<&[&str]>) -> Result<Arc<MetadataSnapshot>> {
        let response = self
            .with_retries("metadata", |conn| async move {
                let version = conn.version(ApiKey::Metadata)?;
                // Never create topics by looking them up (v4+ asks; below v4 the broker decides).
                let request = MetadataRequest::default().with_topics(topics.map(|names| {
                    names
                        .iter()
                        .map(|n| {
                            MetadataRequestTopic::default()
                                .with_name(Some(TopicName(StrBytes::from_string((*n).to_owned()))))
                        })
                        .collect()
                }));
                let request = if version >= 4 { request.with_allow_auto_topic_creation(false) } else { request };
                conn.send_at(&request, version, self.inner.connection_config.request_timeout).await
            })
            .await?;
        let fresh = MetadataSnapshot::from_response(&response);
        let mut cached = self.inner.metadata.lock().unwrap_or_else(PoisonError::into_inner);
        let mut merged = (**cached).clone();
        merged.cluster_id = fresh.cluster_id;
        merged.controller_id = fresh.controller_id;
        merged.brokers = fresh.brokers;
        if topics.is_none() {
            merged.topics = fresh.topics;
        } else {
            merged.topics.extend(fresh.topics);
        }
        *cached = Arc::new(merged);
        tracing::debug!(brokers = cached.brokers.len(), topics = cached.topics.len(), "metadata refreshed");
        Ok(cached.clone())
    }

    /// Refreshes `topic` until every partition has a leader, or the retry timeout passes.
    pub async fn wait_for_topic(&self, topic: &str) -> Result<Arc<MetadataSnapshot>> {
        let deadline = tokio::time::Instant::now() + self.inner.config.retry_timeout;
        let mut attempt = 0;
        loop {
            let snapshot = self.refresh_metadata(Some(&[topic])).await?;
            let info = snapshot.topics.get(topic);
            let ready = info.is_some_and(|t| {
                !t.error.is_error() && !t.partitions.is_empty() && t.partitions.iter().all(|p| p.leader >= 0)
            });
            if ready {
                return Ok(snapshot);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::UnknownPartition { topic: topic.to_owned(), partition: None });
            }
            tokio::time::sleep(self.inner.config.retry_backoff.delay(attempt)).await;
            attempt += 1;
        }
    }

    /// FindCoordinator for a consumer group: batched v4 where the broker has it, single key
    /// before. COORDINATOR_NOT_AVAILABLE (for example while `__consumer_offsets` is being
    /// created) is retried with backoff until the retry timeout.
    pub async fn find_coordinator(&self, group: &str) -> Result<CoordinatorInfo> {
        let deadline = tokio::time::Instant::now() + self.inner.config.retry_timeout;
        let mut attempt = 0;
        loop {
            let result = self.find_coordinator_once(group).await;
            match &result {
                Err(e)
                    if matches!(
                        e.action(),
                        ErrorAction::Retry | ErrorAction::RefreshCoordinator | ErrorAction::RefreshMetadata
                    ) && tokio::time::Instant::now() < deadline =>
                {
                    tracing::debug!(group, error = %e, "FindCoordinator failed, retrying");
                    tokio::time::sleep(self.inner.config.retry_backoff.delay(attempt)).await;
                    attempt += 1;
                }
                _ => return result,
            }
        }
    }

    /// One FindCoordinator attempt, no retries (callers with their own retry policy).
    pub async fn find_coordinator_once(&self, group: &str) -> Result<CoordinatorInfo> {
        let conn = self.connect_any().await?;
        let version = conn.version(ApiKey::FindCoordinator)?;
        let key = StrBytes::from_string(group.to_owned());
        let request = if version >= 4 {
            FindCoordinatorRequest::default().with_key_type(0).with_coordinator_keys(vec![key])
        } else {
            FindCoordinatorRequest::default().with_key(key)
        };
        let response = conn.send_at(&request, version, self.inner.connection_config.request_timeout).await?;
        let context = || format!("group {group}");
        if version >= 4 {
            let entry = response
                .coordinators
                .iter()
                .find(|c| c.key.as_str() == group)
                .ok_or_else(|| Error::broker(ApiKey::FindCoordinator, -1, format!("no entry for group {group}")))?;
            check_code(ApiKey::FindCoordinator, entry.error_code, context)?;
            Ok(CoordinatorInfo { node_id: entry.node_id.0, host: entry.host.to_string(), port: entry.port })
        } else {
            check_code(ApiKey::FindCoordinator, response.error_code, context)?;
            Ok(CoordinatorInfo { node_id: response.node_id.0, host: response.host.to_string(), port: response.port })
        }
    }

    /// Creates a topic (CreateTopics) and waits until metadata shows a leader for every
    /// partition. An existing topic with the same partition count is not an error.
    pub async fn create_topic(&self, name: &str, partitions: i32, replication_factor: i16) -> Result<()> {
        self.create_topic_with_configs(name, partitions, replication_factor, &[]).await
    }

    /// As [`create_topic`](Self::create_topic), with topic configs (such as
    /// `message.timestamp.type`). An existing topic keeps its own configs.
    pub async fn create_topic_with_configs(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: &[(&str, &str)],
    ) -> Result<()> {
        validate_topic_name(name)?;
        if partitions < 1 {
            return Err(ConfigError::InvalidValue {
                key: "num.partitions",
                value: partitions.to_string(),
                reason: "must be at least 1".into(),
            }
            .into());
        }
        let timeout = self.inner.connection_config.request_timeout;
        let response = self
            .with_retries("create topic", |conn| async move {
                let version = conn.version(ApiKey::CreateTopics)?;
                let request = CreateTopicsRequest::default()
                    .with_timeout_ms(i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX))
                    .with_topics(vec![CreatableTopic::default()
                        .with_name(TopicName(StrBytes::from_string(name.to_owned())))
                        .with_num_partitions(partitions)
                        .with_replication_factor(replication_factor)
                        .with_configs(
                            configs
                                .iter()
                                .map(|(key, value)| {
                                    CreatableTopicConfig::default()
                                        .with_name(StrBytes::from_string((*key).to_owned()))
                                        .with_value(Some(StrBytes::from_string((*value).to_owned())))
                                })
                                .collect(),
                        )]);
                conn.send_at(&request, version, timeout).await
            })
            .await?;
        for result in &response.topics {
            let code = KafkaCode(result.error_code);
            if code.0 == 36 {
                // TOPIC_ALREADY_EXISTS: fine if it has the partitions we asked for.
                let snapshot = self.wait_for_topic(name).await?;
                let existing = snapshot.partition_count(name).unwrap_or(0);
                if existing != partitions as usize {
                    return Err(Error::broker(
                        ApiKey::CreateTopics,
                        36,
                        format!("{name} exists with {existing} partitions, not {partitions}"),
                    ));
                }
                return Ok(());
            }
            check_code(ApiKey::CreateTopics, result.error_code, || {
                format!("topic {name}: {}", result.error_message.as_deref().unwrap_or(""))
            })?;
        }
        self.wait_for_topic(name).await?;
        tracing::info!(topic = name, partitions, "topic created");
        Ok(())
    }

    /// Runs `call` on some broker connection, retrying connection failures with backoff.
    async fn with_retries<T, F, Fut>(&self, what: &'static str, mut call: F) -> Result<T>
    where
        F: FnMut(Connection) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let deadline = tokio::time::Instant::now() + self.inner.config.retry_timeout;
        let mut attempt = 0u32;
        loop {
            let result = match self.connect_any().await {
                Ok(conn) => call(conn).await,
                Err(e) => Err(e),
            };
            match result {
                Err(Error::Network(e)) if tokio::time::Instant::now() < deadline => {
                    tracing::debug!(what, error = %e, attempt, "request failed, retrying");
                    tokio::time::sleep(self.inner.config.retry_backoff.delay(attempt)).await;
                    attempt += 1;
                }
                Err(e @ Error::Network(_)) => {
                    return Err(Error::RetriesExhausted { what, attempts: attempt + 1, last: Box::new(e) })
                }
                other => return other,
            }
        }
    }
}

/// Raw connections, for the test crates' protocol and fault tests (`test-support`).
#[cfg(feature = "test-support")]
impl Cluster {
    /// A connection to any broker (see `connect_any`).
    pub async fn any_connection(&self) -> Result<Connection> {
        self.connect_any().await
    }

    /// A connection to broker `node_id` as the latest metadata locates it.
    pub async fn broker_connection(&self, node_id: i32) -> Result<Connection> {
        self.connect_broker(node_id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_are_checked_like_the_broker_does() {
        assert!(validate_topic_name("orders.v1_x-2").is_ok());
        for bad in ["", ".", "..", "has space", "ümlaut", &"x".repeat(250)] {
            assert!(validate_topic_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bootstrap_servers_are_parsed_and_checked() {
        let c = ClusterConfig::from_bootstrap_servers("127.0.0.1:9092, localhost:9093").unwrap();
        assert_eq!(c.bootstrap, vec!["127.0.0.1:9092", "localhost:9093"]);
        assert!(matches!(ClusterConfig::from_bootstrap_servers(""), Err(ConfigError::Missing { .. })));
        assert!(matches!(
            ClusterConfig::from_bootstrap_servers("localhost"),
            Err(ConfigError::InvalidValue { key: "bootstrap.servers", .. })
        ));
    }

    #[test]
    fn a_consumers_file_configures_the_cluster_and_its_consumer_keys_are_reported() {
        let (c, warnings) = ClusterConfig::from_properties_with_warnings([
            ("metadata.broker.list", "127.0.0.1:9092"),
            ("client.id", "ops"),
            ("group.id", "billing"),
            ("key.deserializer", "org.apache.kafka.common.serialization.StringDeserializer"),
            ("enable.partition.eof", "true"),
        ])
        .unwrap();
        assert_eq!(
            (c.bootstrap.as_slice(), c.connection.client_id.as_str()),
            (&["127.0.0.1:9092".to_owned()][..], "ops")
        );
        let keys: Vec<&str> = warnings.iter().map(|w| w.key.as_str()).collect();
        assert_eq!(keys, ["metadata.broker.list", "group.id", "key.deserializer", "enable.partition.eof"]);

        let base = [("bootstrap.servers", "127.0.0.1:9092")];
        let typo = ClusterConfig::from_properties(base.into_iter().chain([("group.ld", "x")])).unwrap_err();
        assert_eq!(typo, ConfigError::UnknownKey { key: "group.ld".into(), suggestion: Some("group.id") });
        let trust = ClusterConfig::from_properties(base.into_iter().chain([("ssl.truststore.location", "/t.jks")]));
        assert!(matches!(trust, Err(ConfigError::Unsupported { key: "ssl.truststore.location", .. })), "{trust:?}");
    }
}
