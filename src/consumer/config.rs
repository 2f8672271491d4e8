//! Consumer configuration: a builder, or librdkafka / Java style properties.
//!
//! Every key is checked when the configuration is built, never later: a value that does not
//! parse is an error naming the key; a key of the Java client or librdkafka that kgroup does not
//! need is a [`ConfigWarning`]; a key no client knows is an error (most likely a typo).

mod foreign;

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::driver::security::{SecurityConfig, SECURITY_KEYS};
use crate::error::ConfigError;
use crate::group::assignor::{assignor_by_name, Assignor};
use crate::group::{GroupConfig, GroupProtocol};
use foreign::Handling;

pub use crate::driver::fetcher::{IsolationLevel, OffsetReset};

/// Settings of a [`super::GroupConsumer`]. Field docs name the property and its default.
///
/// Build it with [`ConsumerConfig::new`] and the setters, or from properties. It is
/// `#[non_exhaustive]` so that new settings are not breaking changes: start from `new`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConsumerConfig {
    /// `bootstrap.servers` (required).
    pub bootstrap_servers: Vec<String>,
    /// `group.id` (required).
    pub group_id: String,
    /// `client.id` (default `kgroup`).
    pub client_id: String,
    /// `group.instance.id` (default none: a dynamic member).
    pub group_instance_id: Option<String>,
    /// `client.rack` (default none): the rack (or availability zone) the consumer runs in. Sent
    /// with every fetch, so that a leader whose brokers set `replica.selector.class` can name a
    /// replica in the same rack to fetch from instead (KIP-392), and in the subscription, for
    /// rack-aware assignors (KIP-881). An empty value means none, as in the Java client.
    pub client_rack: Option<String>,
    /// `session.timeout.ms` (default 45000).
    pub session_timeout: Duration,
    /// `heartbeat.interval.ms` (default 3000).
    pub heartbeat_interval: Duration,
    /// `max.poll.interval.ms` (default 300000), also the JoinGroup rebalance timeout.
    pub max_poll_interval: Duration,
    /// `max.poll.records` (default 500): the most records one batch holds.
    pub max_poll_records: usize,
    /// `enable.auto.commit` (default true).
    pub enable_auto_commit: bool,
    /// `auto.commit.interval.ms` (default 5000).
    pub auto_commit_interval: Duration,
    /// `enable.auto.offset.store` (default true): delivered batches are stored for auto-commit.
    pub enable_auto_offset_store: bool,
    /// `auto.offset.reset` (default latest).
    pub auto_offset_reset: OffsetReset,
    /// `partition.assignment.strategy` in preference order (default `range`): built-in names
    /// (`range`, `roundrobin`, `sticky`, `cooperative-sticky`) or the name of one of
    /// `custom_assignors`.
    pub assignment_strategy: Vec<String>,
    /// Assignors of the application's own, used where `assignment_strategy` names them.
    pub custom_assignors: Vec<Arc<dyn Assignor>>,
    /// `fetch.min.bytes` (default 1).
    pub fetch_min_bytes: i32,
    /// `fetch.max.bytes` (default 52428800).
    pub fetch_max_bytes: i32,
    /// `fetch.max.wait.ms` / `fetch.wait.max.ms` (default 500).
    pub fetch_max_wait: Duration,
    /// `max.partition.fetch.bytes` (default 1048576).
    pub max_partition_fetch_bytes: i32,
    /// `isolation.level` (default read_uncommitted).
    pub isolation_level: IsolationLevel,
    /// The most bytes of records fetched ahead of polls (default 64 MiB), as record batches
    /// came on the wire: records are decoded only when handed out, so this bounds the buffer's
    /// memory. librdkafka's `queued.max.messages.kbytes` sets it in KiB.
    pub prefetch_bytes: usize,
    /// `request.timeout.ms` (default 30000).
    pub request_timeout: Duration,
    /// `retry.backoff.ms` (default 100).
    pub retry_backoff: Duration,
    /// `retry.backoff.max.ms` (default 1000, KIP-580).
    pub retry_backoff_max: Duration,
    /// `default.api.timeout.ms` (default 60000): how long a commit may wait.
    pub commit_timeout: Duration,
    /// `metadata.max.age.ms` (default 300000): how often partition counts are refreshed, so
    /// that partitions and topics added later are assigned.
    pub metadata_max_age: Duration,
    /// `exclude.internal.topics` (default true): a pattern subscription never matches internal
    /// topics such as `__consumer_offsets`.
    pub exclude_internal_topics: bool,
    /// How long the rebalance listener may take per callback (default: half of
    /// `max.poll.interval.ms`, below the rebalance timeout).
    pub rebalance_callback_timeout: Duration,
    /// `security.protocol` with its `ssl.*` and `sasl.*` settings (default PLAINTEXT).
    pub security: SecurityConfig,
    /// `group.protocol` (default `classic`), with `group.remote.assignor` for `consumer`
    /// (KIP-848, Kafka 4.0+). Under `consumer` the broker assigns and sets the session timeout
    /// and heartbeat interval: `partition.assignment.strategy`, `session.timeout.ms` and
    /// `heartbeat.interval.ms` are not used (given as properties they are refused, as by Java).
    pub group_protocol: GroupProtocol,
}

/// The property keys kgroup takes as its own, besides [`SECURITY_KEYS`]. Other keys of the Java
/// client and librdkafka are accepted with a [`ConfigWarning`], or refused when kgroup cannot
/// do what they ask.
pub const KNOWN_KEYS: &[&str] = &[
    "bootstrap.servers",
    "group.id",
    "client.id",
    "group.instance.id",
    "client.rack",
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "max.poll.interval.ms",
    "max.poll.records",
    "enable.auto.commit",
    "auto.commit.interval.ms",
    "enable.auto.offset.store",
    "auto.offset.reset",
    "partition.assignment.strategy",
    "fetch.min.bytes",
    "fetch.max.bytes",
    "fetch.max.wait.ms",
    "fetch.wait.max.ms",
    "max.partition.fetch.bytes",
    "isolation.level",
    "queued.max.messages.kbytes",
    "request.timeout.ms",
    "retry.backoff.ms",
    "retry.backoff.max.ms",
    "default.api.timeout.ms",
    "metadata.max.age.ms",
    "exclude.internal.topics",
    "group.protocol",
    "group.remote.assignor",
];

/// Settings the broker owns under KIP-848's consumer protocol (Java refuses them with it).
const BROKER_SIDE_UNDER_KIP848: &[(&str, &str)] = &[
    ("partition.assignment.strategy", "the broker assigns: name its assignor with group.remote.assignor"),
    ("session.timeout.ms", "the broker's group.consumer.session.timeout.ms applies"),
    ("heartbeat.interval.ms", "the broker's group.consumer.heartbeat.interval.ms applies"),
];

/// Builder setters of fields that take their value as it is.
macro_rules! setters {
    ($($field:ident: $ty:ty),+ $(,)?) => {$(
        #[doc = concat!("Sets `", stringify!($field), "`.")]
        #[must_use]
        pub fn $field(mut self, $field: $ty) -> Self {
            self.$field = $field;
            self
        }
    )+};
}

impl ConsumerConfig {
    /// Defaults (the Java consumer's, where it has the setting) for `bootstrap.servers`
    /// (comma-separated) and `group.id`.
    pub fn new(bootstrap_servers: impl Into<String>, group_id: impl Into<String>) -> Self {
        ConsumerConfig {
            bootstrap_servers: split_list(&bootstrap_servers.into()),
            group_id: group_id.into(),
            client_id: "kgroup".into(),
            group_instance_id: None,
            client_rack: None,
            session_timeout: Duration::from_secs(45),
            heartbeat_interval: Duration::from_secs(3),
            max_poll_interval: Duration::from_secs(300),
            max_poll_records: 500,
            enable_auto_commit: true,
            auto_commit_interval: Duration::from_secs(5),
            enable_auto_offset_store: true,
            auto_offset_reset: OffsetReset::Latest,
            assignment_strategy: vec!["range".into()],
            custom_assignors: Vec::new(),
            fetch_min_bytes: 1,
            fetch_max_bytes: 52_428_800,
            fetch_max_wait: Duration::from_millis(500),
            max_partition_fetch_bytes: 1_048_576,
            isolation_level: IsolationLevel::ReadUncommitted,
            prefetch_bytes: 64 * 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            retry_backoff: Duration::from_millis(100),
            retry_backoff_max: Duration::from_secs(1),
            commit_timeout: Duration::from_secs(60),
            metadata_max_age: Duration::from_secs(300),
            exclude_internal_topics: true,
            rebalance_callback_timeout: Duration::from_secs(150),
            security: SecurityConfig::default(),
            group_protocol: GroupProtocol::Classic,
        }
    }

    /// For an [`AssignedConsumer`](crate::AssignedConsumer) without a group: defaults as
    /// [`new`](Self::new), no `group.id`, and `enable.auto.commit` off (as Java defaults it
    /// without a group): partitions start at `auto.offset.reset`, nothing is committed.
    pub fn without_group(bootstrap_servers: impl Into<String>) -> Self {
        let mut config = ConsumerConfig::new(bootstrap_servers, "");
        config.enable_auto_commit = false;
        config
    }

    setters! {
        session_timeout: Duration,
        heartbeat_interval: Duration,
        max_poll_records: usize,
        enable_auto_commit: bool,
        auto_commit_interval: Duration,
        enable_auto_offset_store: bool,
        auto_offset_reset: OffsetReset,
        fetch_min_bytes: i32,
        fetch_max_bytes: i32,
        fetch_max_wait: Duration,
        max_partition_fetch_bytes: i32,
        isolation_level: IsolationLevel,
        prefetch_bytes: usize,
        request_timeout: Duration,
        retry_backoff: Duration,
        retry_backoff_max: Duration,
        commit_timeout: Duration,
        metadata_max_age: Duration,
        exclude_internal_topics: bool,
        rebalance_callback_timeout: Duration,
        security: SecurityConfig,
    }

    /// Sets `client_id`.
    #[must_use]
    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = client_id.into();
        self
    }

    /// Sets `group_instance_id`: the member becomes static.
    #[must_use]
    pub fn group_instance_id(mut self, group_instance_id: impl Into<String>) -> Self {
        self.group_instance_id = Some(group_instance_id.into());
        self
    }

    /// Sets `client_rack` (`client.rack`); an empty rack means none.
    #[must_use]
    pub fn client_rack(mut self, rack: impl Into<String>) -> Self {
        self.client_rack = Some(rack.into()).filter(|r| !r.is_empty());
        self
    }

    /// Sets `max_poll_interval`, and `rebalance_callback_timeout` to half of it as
    /// `from_properties` does, so the listener's bound stays below the rebalance timeout (set
    /// the callback timeout after this to choose it).
    #[must_use]
    pub fn max_poll_interval(mut self, max_poll_interval: Duration) -> Self {
        self.max_poll_interval = max_poll_interval;
        self.rebalance_callback_timeout = max_poll_interval / 2;
        self
    }

    /// Sets `assignment_strategy`: assignor names in preference order.
    #[must_use]
    pub fn assignment_strategy(mut self, names: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.assignment_strategy = names.into_iter().map(Into::into).collect();
        self
    }

    /// `group.protocol=consumer` (KIP-848, Kafka 4.0+) with `group.remote.assignor`
    /// (`None`: the broker's default assignor).
    #[must_use]
    pub fn consumer_protocol(mut self, remote_assignor: Option<&str>) -> Self {
        self.group_protocol =
            GroupProtocol::Consumer { remote_assignor: remote_assignor.map(str::to_owned), member_id: None };
        self
    }

    /// Adds an assignor of the application's own, for `assignment_strategy` to name.
    #[must_use]
    pub fn custom_assignor(mut self, assignor: Arc<dyn Assignor>) -> Self {
        self.custom_assignors.push(assignor);
        self
    }

    /// Builds a configuration from `key=value` properties, as librdkafka and the Java client
    /// take them; `bootstrap.servers` and `group.id` are required. Keys of those clients that
    /// kgroup does not use, or takes under another name, are logged as warnings (see
    /// [`Self::from_properties_with_warnings`] to get them instead).
    pub fn from_properties<K: AsRef<str>, V: AsRef<str>>(
        properties: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, ConfigError> {
        let (config, warnings) = Self::from_properties_with_warnings(properties)?;
        for warning in &warnings {
            tracing::warn!(key = %warning.key, "{warning}");
        }
        Ok(config)
    }

    /// [`Self::from_properties`] for a Java properties file (syntax of
    /// [`crate::properties::read_file`]), so a Java or librdkafka client's file loads as it is.
    pub fn from_properties_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        Self::from_properties(crate::properties::read_file(path)?)
    }

    /// Like [`Self::from_properties`], returning what the Java client would log as "supplied
    /// but not used" and the settings translated, so that a migration can check or fail on
    /// them. A key that no client knows is an error suggesting the nearest known key; a
    /// setting of another client that kgroup cannot honour is [`ConfigError::Unsupported`].
    pub fn from_properties_with_warnings<K: AsRef<str>, V: AsRef<str>>(
        properties: impl IntoIterator<Item = (K, V)>,
    ) -> Result<(Self, Vec<ConfigWarning>), ConfigError> {
        let mut config = ConsumerConfig::new("", "");
        let mut warnings = Vec::new();
        let mut callback_timeout_set = false;
        let mut security = Vec::new();
        let mut given_keys = Vec::new();
        let mut remote_assignor = None;
        for (key, value) in properties {
            let (given, value) = (key.as_ref().trim(), value.as_ref().trim());
            if SECURITY_KEYS.contains(&given) {
                security.push((given.to_owned(), value.to_owned()));
                continue;
            }
            let (name, key) = match KNOWN_KEYS.iter().copied().find(|k| *k == given) {
                Some(key) => (key, key),
                None => match foreign_key(given, value)? {
                    ForeignKey::Alias { name, key } => {
                        warnings.push(ConfigWarning::mapped(given, key, value));
                        (name, key)
                    }
                    ForeignKey::NotUsed => {
                        warnings.push(ConfigWarning { key: given.to_owned(), kind: ConfigWarningKind::NotUsed });
                        continue;
                    }
                },
            };
            given_keys.push(name);
            if key == "group.remote.assignor" {
                remote_assignor = Some(value.to_owned());
                continue;
            }
            config.apply(key, name, value, &mut warnings)?;
            callback_timeout_set |= key == "max.poll.interval.ms";
        }
        match (&mut config.group_protocol, remote_assignor) {
            (GroupProtocol::Consumer { remote_assignor: assignor, .. }, Some(name)) => *assignor = Some(name),
            (GroupProtocol::Classic, Some(_)) => {
                let reason = "applies to group.protocol=consumer only; set partition.assignment.strategy";
                return Err(ConfigError::Unsupported { key: "group.remote.assignor", reason: reason.into() });
            }
            _ => {}
        }
        if config.group_protocol != GroupProtocol::Classic {
            if let Some((key, why)) = BROKER_SIDE_UNDER_KIP848.iter().find(|(k, _)| given_keys.contains(k)) {
                let reason = format!("not used with group.protocol=consumer: {why}");
                return Err(ConfigError::Unsupported { key, reason });
            }
        }
        if callback_timeout_set {
            config.rebalance_callback_timeout = config.max_poll_interval / 2;
        }
        config.security = SecurityConfig::from_properties(security)?;
        config.validate()?;
        Ok((config, warnings))
    }

    /// Sets the field of kgroup's `key` from `value`; errors name the key as given (`name`, the
    /// other client's name for an alias).
    fn apply(
        &mut self,
        key: &'static str,
        name: &'static str,
        value: &str,
        warnings: &mut Vec<ConfigWarning>,
    ) -> Result<(), ConfigError> {
        match key {
            "bootstrap.servers" => self.bootstrap_servers = split_list(value),
            "group.id" => self.group_id = value.to_owned(),
            "client.id" => self.client_id = value.to_owned(),
            "group.instance.id" => self.group_instance_id = Some(value.to_owned()),
            "client.rack" => self.client_rack = Some(value.to_owned()).filter(|r| !r.is_empty()),
            "session.timeout.ms" => self.session_timeout = millis(name, value)?,
            "heartbeat.interval.ms" => self.heartbeat_interval = millis(name, value)?,
            "max.poll.interval.ms" => self.max_poll_interval = millis(name, value)?,
            "max.poll.records" => self.max_poll_records = int(name, value, 1)? as usize,
            "enable.auto.commit" => self.enable_auto_commit = boolean(name, value)?,
            "auto.commit.interval.ms" => self.auto_commit_interval = millis(name, value)?,
            "enable.auto.offset.store" => self.enable_auto_offset_store = boolean(name, value)?,
            "auto.offset.reset" => {
                self.auto_offset_reset = match value.to_ascii_lowercase().as_str() {
                    "earliest" | "smallest" | "beginning" => OffsetReset::Earliest,
                    "latest" | "largest" | "end" => OffsetReset::Latest,
                    "none" | "error" => OffsetReset::None,
                    other if other.starts_with("by_duration:") => {
                        let reason = format!("{value:?}: resetting to a time is not supported; use earliest or latest");
                        return Err(ConfigError::Unsupported { key: name, reason });
                    }
                    _ => return Err(invalid(name, value, "expected earliest, latest or none")),
                }
            }
            "partition.assignment.strategy" => {
                let given = split_list(value);
                let mut names: Vec<String> = Vec::new();
                for assignor in &given {
                    let assignor = foreign::java_assignor(assignor).unwrap_or(assignor);
                    if !names.iter().any(|n| n == assignor) {
                        names.push(assignor.to_owned());
                    }
                }
                if names != given {
                    warnings.push(ConfigWarning::mapped(name, key, &names.join(",")));
                }
                self.assignment_strategy = names;
            }
            "fetch.min.bytes" => self.fetch_min_bytes = int(name, value, 1)?,
            "fetch.max.bytes" => self.fetch_max_bytes = int(name, value, 1)?,
            "fetch.max.wait.ms" | "fetch.wait.max.ms" => self.fetch_max_wait = millis(name, value)?,
            "max.partition.fetch.bytes" => self.max_partition_fetch_bytes = int(name, value, 1)?,
            "isolation.level" => {
                self.isolation_level = match value.to_ascii_lowercase().as_str() {
                    "read_uncommitted" => IsolationLevel::ReadUncommitted,
                    "read_committed" => IsolationLevel::ReadCommitted,
                    _ => return Err(invalid(name, value, "expected read_committed or read_uncommitted")),
                }
            }
            "queued.max.messages.kbytes" => self.prefetch_bytes = (int(name, value, 1)? as usize).saturating_mul(1024),
            "request.timeout.ms" => self.request_timeout = millis(name, value)?,
            "retry.backoff.ms" => self.retry_backoff = millis(name, value)?,
            "retry.backoff.max.ms" => self.retry_backoff_max = millis(name, value)?,
            "metadata.max.age.ms" => self.metadata_max_age = millis(name, value)?,
            "exclude.internal.topics" => self.exclude_internal_topics = boolean(name, value)?,
            "default.api.timeout.ms" => self.commit_timeout = millis(name, value)?,
            "group.protocol" => {
                self.group_protocol = match value.to_ascii_lowercase().as_str() {
                    "classic" => GroupProtocol::Classic,
                    "consumer" => GroupProtocol::Consumer { remote_assignor: None, member_id: None },
                    _ => return Err(invalid(name, value, "expected classic or consumer")),
                }
            }
            _ => unreachable!("every known key has an arm"),
        }
        Ok(())
    }

    /// Checks the combination; [`super::GroupConsumer`] calls it before connecting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_consumer()?;
        self.group_config().validate()
    }

    /// As [`validate`](Self::validate), for an [`AssignedConsumer`](crate::AssignedConsumer):
    /// `group.id` is optional, but auto-commit needs one (as in Java), and a group membership
    /// setting (`group.instance.id`) has nothing to apply to.
    pub fn validate_assigned(&self) -> Result<(), ConfigError> {
        self.validate_consumer()?;
        if !self.has_group() && self.enable_auto_commit {
            return Err(invalid("enable.auto.commit", "true", "needs a group.id to commit to"));
        }
        if let Some(instance) = &self.group_instance_id {
            return Err(invalid("group.instance.id", instance, "manual assignment joins no group"));
        }
        Ok(())
    }

    /// Whether `group.id` is set: committed offsets are kept there.
    pub fn has_group(&self) -> bool {
        !self.group_id.is_empty()
    }

    /// What every consumer needs, member of a group or not.
    fn validate_consumer(&self) -> Result<(), ConfigError> {
        if self.bootstrap_servers.is_empty() {
            return Err(ConfigError::Missing { key: "bootstrap.servers" });
        }
        for server in &self.bootstrap_servers {
            let ok = server.rsplit_once(':').is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
            if !ok {
                return Err(invalid("bootstrap.servers", server, "expected host:port"));
            }
        }
        for name in &self.assignment_strategy {
            if self.assignor(name).is_none() {
                return Err(invalid("partition.assignment.strategy", name, "unknown assignor"));
            }
        }
        if self.fetch_min_bytes > self.fetch_max_bytes {
            return Err(invalid(
                "fetch.min.bytes",
                &self.fetch_min_bytes.to_string(),
                "must not exceed fetch.max.bytes",
            ));
        }
        if self.client_rack.as_deref() == Some("") {
            return Err(invalid("client.rack", "", "must not be empty when set (None means no rack)"));
        }
        if self.enable_auto_commit && self.auto_commit_interval.is_zero() {
            return Err(invalid("auto.commit.interval.ms", "0", "must be positive when enable.auto.commit is true"));
        }
        Ok(())
    }

    /// The membership settings derived from this configuration.
    pub fn group_config(&self) -> GroupConfig {
        let mut group = GroupConfig::new(self.group_id.clone());
        group.group_instance_id = self.group_instance_id.clone();
        group.rack = self.client_rack.clone();
        group.session_timeout = self.session_timeout;
        group.heartbeat_interval = self.heartbeat_interval;
        group.rebalance_timeout = self.max_poll_interval;
        group.retry_backoff = self.retry_backoff;
        group.retry_backoff_max = self.retry_backoff_max;
        group.request_timeout = self.request_timeout;
        group.commit_timeout = self.commit_timeout;
        group.metadata_max_age = self.metadata_max_age;
        group.exclude_internal_topics = self.exclude_internal_topics;
        group.revoke_timeout =
            self.rebalance_callback_timeout.min(self.max_poll_interval.saturating_sub(Duration::from_millis(1)));
        group.assignors = self.assignment_strategy.iter().filter_map(|n| self.assignor(n)).collect();
        group.protocol = self.group_protocol.clone();
        group
    }

    /// The assignor `name` stands for: one of `custom_assignors`, else a built-in one.
    fn assignor(&self, name: &str) -> Option<Arc<dyn Assignor>> {
        self.custom_assignors.iter().find(|a| a.name() == name).cloned().or_else(|| assignor_by_name(name))
    }
}

/// A property [`ConsumerConfig::from_properties_with_warnings`] accepted without taking it as
/// written.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConfigWarning {
    /// The property, as given.
    pub key: String,
    /// What became of it.
    pub kind: ConfigWarningKind,
}

/// A key of another client's configuration that kgroup accepts.
enum ForeignKey {
    /// Applied as kgroup's `key`; `name` is the other client's, as the table spells it.
    Alias { name: &'static str, key: &'static str },
    /// Changes nothing.
    NotUsed,
}

/// What a key of the Java client or librdkafka that is not kgroup's own does: an error when no
/// client knows it (suggesting the nearest known key) or when kgroup cannot honour `value`.
fn foreign_key(given: &str, value: &str) -> Result<ForeignKey, ConfigError> {
    match foreign::lookup(given) {
        Some((name, Handling::Alias(key))) => Ok(ForeignKey::Alias { name, key }),
        Some((_, Handling::Unused)) => Ok(ForeignKey::NotUsed),
        Some((name, Handling::Only(values, reason))) => match values.iter().any(|v| v.eq_ignore_ascii_case(value)) {
            true => Ok(ForeignKey::NotUsed),
            false => Err(ConfigError::Unsupported { key: name, reason: format!("{value:?}: {reason}") }),
        },
        Some((name, Handling::Rejected(reason))) => {
            Err(ConfigError::Unsupported { key: name, reason: (*reason).to_owned() })
        }
        None => {
            let known = KNOWN_KEYS.iter().chain(SECURITY_KEYS).copied().chain(foreign::names());
            let suggestion = crate::properties::nearest_key(given, known);
            Err(ConfigError::UnknownKey { key: given.to_owned(), suggestion })
        }
    }
}

/// For a configuration of the cluster alone ([`ClusterConfig`](crate::ClusterConfig), for the
/// admin and the command line), so that one `client.properties` serves it and a consumer: the
/// kgroup key another client's name `given` stands for, `None` for a consumer's own keys and
/// the keys kgroup does not use, or the error a consumer would give.
pub(crate) fn consumer_key_alias(given: &str, value: &str) -> Result<Option<&'static str>, ConfigError> {
    if KNOWN_KEYS.contains(&given) {
        return Ok(None);
    }
    Ok(match foreign_key(given, value)? {
        ForeignKey::Alias { key, .. } => Some(key),
        ForeignKey::NotUsed => None,
    })
}

/// What became of a property behind a [`ConfigWarning`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigWarningKind {
    /// A setting of the Java client or librdkafka that kgroup has no use for (deserializers,
    /// statistics, socket tuning, ...) or whose value is what kgroup does anyway: it changes
    /// nothing.
    NotUsed,
    /// Applied as kgroup's own setting: another client's name for the key, or Java assignor
    /// class names turned into kgroup's assignor names.
    MappedTo {
        /// kgroup's key.
        key: &'static str,
        /// The value it was given.
        value: String,
    },
}

impl ConfigWarning {
    pub(crate) fn mapped(key: &str, to: &'static str, value: &str) -> Self {
        ConfigWarning { key: key.to_owned(), kind: ConfigWarningKind::MappedTo { key: to, value: value.to_owned() } }
    }
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ConfigWarningKind::NotUsed => write!(f, "`{}` was supplied but is not used by kgroup", self.key),
            ConfigWarningKind::MappedTo { key, value } => write!(f, "`{}` is taken as `{key}={value}`", self.key),
        }
    }
}

fn split_list(value: &str) -> Vec<String> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()
}

fn invalid(key: &'static str, value: &str, reason: &str) -> ConfigError {
    ConfigError::InvalidValue { key, value: value.to_owned(), reason: reason.to_owned() }
}

fn millis(key: &'static str, value: &str) -> Result<Duration, ConfigError> {
    value
        .parse::<u64>()
        .ok()
        .filter(|&ms| ms <= i32::MAX as u64)
        .map(Duration::from_millis)
        .ok_or_else(|| invalid(key, value, "expected milliseconds (0 to 2147483647)"))
}

fn boolean(key: &'static str, value: &str) -> Result<bool, ConfigError> {
    match value.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(invalid(key, value, "expected true or false")),
    }
}

fn int(key: &'static str, value: &str, min: i32) -> Result<i32, ConfigError> {
    value
        .parse::<i32>()
        .ok()
        .filter(|v| *v >= min)
        .ok_or_else(|| invalid(key, value, &format!("expected an integer >= {min}")))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// A consumer without a group is valid for manual assignment only, and then auto-commit
    /// (nowhere to commit) and a static member id (no membership) are refused.
    #[test]
    fn an_assigned_consumer_needs_no_group_but_auto_commit_does() {
        let lone = ConsumerConfig::without_group("h:9092");
        assert!(!lone.has_group() && !lone.enable_auto_commit);
        assert!(lone.validate_assigned().is_ok());
        assert!(matches!(lone.validate(), Err(ConfigError::Missing { key: "group.id" })));
        let mut auto = ConsumerConfig::without_group("h:9092");
        auto.enable_auto_commit = true;
        assert!(matches!(auto.validate_assigned(), Err(ConfigError::InvalidValue { key: "enable.auto.commit", .. })));
        let with_group = ConsumerConfig::new("h:9092", "g");
        assert!(with_group.has_group() && with_group.validate_assigned().is_ok());
        let member = with_group.group_instance_id("i");
        assert!(matches!(member.validate_assigned(), Err(ConfigError::InvalidValue { key: "group.instance.id", .. })));
    }
    use crate::group::assignor::GroupMember;
    use crate::group::TopicPartition;

    /// Gives every partition to the first member by id.
    #[derive(Debug)]
    struct FirstTakesAll;

    impl Assignor for FirstTakesAll {
        fn name(&self) -> &str {
            "first-takes-all"
        }

        fn assign(
            &self,
            members: &[GroupMember],
            counts: &BTreeMap<String, i32>,
        ) -> BTreeMap<String, Vec<TopicPartition>> {
            let mut plan: BTreeMap<String, Vec<TopicPartition>> =
                members.iter().map(|m| (m.member_id.clone(), Vec::new())).collect();
            if let Some(first) = plan.keys().next().cloned() {
                let all = counts.iter().flat_map(|(t, n)| (0..*n).map(move |p| TopicPartition::new(t, p)));
                plan.insert(first, all.collect());
            }
            plan
        }
    }

    #[test]
    fn custom_assignors_are_chosen_by_name_in_preference_order() {
        let mut c = ConsumerConfig::new("127.0.0.1:9092", "g");
        c.assignment_strategy = vec!["first-takes-all".into(), "cooperative-sticky".into()];
        assert!(c.validate().is_err(), "a name nothing provides is a configuration error");
        c.custom_assignors.push(Arc::new(FirstTakesAll));
        c.validate().expect("the custom assignor is found");
        let names: Vec<String> = c.group_config().assignors.iter().map(|a| a.name().to_owned()).collect();
        assert_eq!(names, ["first-takes-all", "cooperative-sticky"]);
    }

    fn props(extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut p =
            vec![("bootstrap.servers".to_string(), "127.0.0.1:9092".to_string()), ("group.id".into(), "g".into())];
        p.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        p
    }

    #[test]
    fn librdkafka_style_properties_are_understood() {
        let c = ConsumerConfig::from_properties(props(&[
            ("session.timeout.ms", "10000"),
            ("heartbeat.interval.ms", "1000"),
            ("max.poll.interval.ms", "60000"),
            ("enable.auto.commit", "false"),
            ("auto.offset.reset", "smallest"),
            ("isolation.level", "read_committed"),
            ("fetch.wait.max.ms", "100"),
            ("group.instance.id", "worker-1"),
        ]))
        .unwrap();
        assert_eq!(c.session_timeout, Duration::from_secs(10));
        assert!(!c.enable_auto_commit);
        assert_eq!(c.auto_offset_reset, OffsetReset::Earliest);
        assert_eq!(c.isolation_level, IsolationLevel::ReadCommitted);
        assert_eq!(c.fetch_max_wait, Duration::from_millis(100));
        assert_eq!(c.group_instance_id.as_deref(), Some("worker-1"));
        assert_eq!(c.rebalance_callback_timeout, Duration::from_secs(30));
        let g = c.group_config();
        assert_eq!(g.rebalance_timeout, Duration::from_secs(60));
        assert!(g.revoke_timeout < g.rebalance_timeout);
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let err = ConsumerConfig::from_properties(props(&[("enable.partition.eoff", "true")])).unwrap_err();
        assert!(err.to_string().contains("enable.partition.eoff"), "{err}");
        for (key, value) in [
            ("session.timeout.ms", "ten"),
            ("enable.auto.commit", "yes"),
            ("auto.offset.reset", "middle"),
            ("partition.assignment.strategy", "sticky-ish"),
            ("bootstrap.servers", "no-port"),
            ("heartbeat.interval.ms", "60000"),
        ] {
            let err = ConsumerConfig::from_properties(props(&[(key, value)])).unwrap_err();
            let text = err.to_string();
            let named = text.contains(key) || (key == "heartbeat.interval.ms" && text.contains("heartbeat"));
            assert!(named, "{key}={value}: {text}");
        }
        let missing = ConsumerConfig::from_properties([("group.id", "g")]).unwrap_err();
        assert!(missing.to_string().contains("bootstrap.servers"));
    }

    #[test]
    fn security_properties_are_checked_and_the_password_stays_out_of_debug() {
        let c = ConsumerConfig::from_properties(props(&[
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "SCRAM-SHA-256"),
            ("sasl.username", "svc"),
            ("sasl.password", "pa55-w0rd-xyzzy"),
        ]))
        .unwrap();
        assert_eq!(c.security.protocol_name(), "SASL_PLAINTEXT");
        let shown = format!("{c:?}");
        assert!(!shown.contains("pa55-w0rd-xyzzy"), "{shown}");
        let err = ConsumerConfig::from_properties(props(&[("security.protocol", "SASL_SSL")])).unwrap_err();
        assert!(err.to_string().contains("sasl.mechanism"), "{err}");
        let cluster = crate::ClusterConfig::from_properties([
            ("bootstrap.servers", "127.0.0.1:9092"),
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "PLAIN"),
            ("sasl.username", "svc"),
            ("sasl.password", "pa55-w0rd-xyzzy"),
        ])
        .unwrap();
        let shown = format!("{cluster:?}");
        assert!(!shown.contains("pa55-w0rd-xyzzy") && shown.contains("SaslConfig"), "{shown}");
    }

    fn not_used(keys: &[&str]) -> Vec<ConfigWarning> {
        keys.iter().map(|k| ConfigWarning { key: k.to_string(), kind: ConfigWarningKind::NotUsed }).collect()
    }

    /// The configuration of librdkafka's examples/consumer.c and rdkafka_complex_consumer_example
    /// with the settings its docs suggest for at-least-once processing.
    #[test]
    fn a_librdkafka_consumer_configuration_loads_with_warnings() {
        let (c, warnings) = ConsumerConfig::from_properties_with_warnings([
            ("metadata.broker.list", "127.0.0.1:9092,127.0.0.1:9093"),
            ("group.id", "rdkafka_consumer_example"),
            ("client.id", "rdkafka"),
            ("auto.offset.reset", "smallest"),
            ("enable.partition.eof", "true"),
            ("statistics.interval.ms", "5000"),
            ("session.timeout.ms", "6000"),
            ("enable.auto.commit", "true"),
            ("enable.auto.offset.store", "false"),
            ("partition.assignment.strategy", "cooperative-sticky"),
            ("socket.keepalive.enable", "true"),
            ("api.version.request", "true"),
            ("queued.min.messages", "100000"),
            ("queued.max.messages.kbytes", "1024"),
            ("fetch.wait.max.ms", "100"),
            ("fetch.message.max.bytes", "2097152"),
            ("topic.metadata.refresh.interval.ms", "60000"),
            ("debug", "cgrp,topic,fetch"),
            ("linger.ms", "5"),
        ])
        .unwrap();
        assert_eq!(c.bootstrap_servers, ["127.0.0.1:9092", "127.0.0.1:9093"]);
        assert_eq!((c.group_id.as_str(), c.client_id.as_str()), ("rdkafka_consumer_example", "rdkafka"));
        assert_eq!(c.auto_offset_reset, OffsetReset::Earliest);
        assert_eq!(c.session_timeout, Duration::from_secs(6));
        assert!(c.enable_auto_commit && !c.enable_auto_offset_store);
        assert_eq!(c.assignment_strategy, ["cooperative-sticky"]);
        assert_eq!(c.prefetch_bytes, 1024 * 1024);
        assert_eq!(c.fetch_max_wait, Duration::from_millis(100));
        assert_eq!(c.max_partition_fetch_bytes, 2_097_152);
        assert_eq!(c.metadata_max_age, Duration::from_secs(60));
        let mut expected =
            vec![ConfigWarning::mapped("metadata.broker.list", "bootstrap.servers", "127.0.0.1:9092,127.0.0.1:9093")];
        expected.extend(not_used(&[
            "enable.partition.eof",
            "statistics.interval.ms",
            "socket.keepalive.enable",
            "api.version.request",
            "queued.min.messages",
        ]));
        expected.push(ConfigWarning::mapped("fetch.message.max.bytes", "max.partition.fetch.bytes", "2097152"));
        expected.push(ConfigWarning::mapped("topic.metadata.refresh.interval.ms", "metadata.max.age.ms", "60000"));
        expected.extend(not_used(&["debug", "linger.ms"]));
        assert_eq!(warnings, expected);
        assert_eq!(warnings[1].to_string(), "`enable.partition.eof` was supplied but is not used by kgroup");
        assert_eq!(
            warnings[0].to_string(),
            "`metadata.broker.list` is taken as `bootstrap.servers=127.0.0.1:9092,127.0.0.1:9093`"
        );
    }

    const JAVA_DEFAULT_ASSIGNORS: &str =
        "org.apache.kafka.clients.consumer.RangeAssignor, org.apache.kafka.clients.consumer.CooperativeStickyAssignor";

    /// A consumer configuration as the Kafka documentation and KafkaConsumer's javadoc write it.
    #[test]
    fn a_java_consumer_configuration_loads_with_warnings() {
        let (c, warnings) = ConsumerConfig::from_properties_with_warnings([
            ("bootstrap.servers", "127.0.0.1:9092"),
            ("group.id", "test"),
            ("key.deserializer", "org.apache.kafka.common.serialization.StringDeserializer"),
            ("value.deserializer", "org.apache.kafka.common.serialization.StringDeserializer"),
            ("enable.auto.commit", "TRUE"),
            ("auto.commit.interval.ms", "1000"),
            ("partition.assignment.strategy", JAVA_DEFAULT_ASSIGNORS),
            ("client.dns.lookup", "use_all_dns_ips"),
            ("interceptor.classes", ""),
            ("metric.reporters", ""),
            ("check.crcs", "true"),
            ("isolation.level", "read_committed"),
            ("max.poll.records", "100"),
            ("allow.auto.create.topics", "false"),
            ("group.protocol", "CLASSIC"),
        ])
        .unwrap();
        assert_eq!(
            (c.bootstrap_servers.as_slice(), c.group_id.as_str()),
            (&["127.0.0.1:9092".to_string()][..], "test")
        );
        assert!(c.enable_auto_commit);
        assert_eq!(c.auto_commit_interval, Duration::from_secs(1));
        assert_eq!(c.assignment_strategy, ["range", "cooperative-sticky"]);
        assert_eq!(c.isolation_level, IsolationLevel::ReadCommitted);
        assert_eq!(c.max_poll_records, 100);
        let names: Vec<String> = c.group_config().assignors.iter().map(|a| a.name().to_owned()).collect();
        assert_eq!(names, ["range", "cooperative-sticky"]);
        let mut expected = not_used(&["key.deserializer", "value.deserializer"]);
        expected.push(ConfigWarning::mapped(
            "partition.assignment.strategy",
            "partition.assignment.strategy",
            "range,cooperative-sticky",
        ));
        expected.extend(not_used(&[
            "client.dns.lookup",
            "interceptor.classes",
            "metric.reporters",
            "check.crcs",
            "allow.auto.create.topics",
        ]));
        assert_eq!(warnings, expected);
    }

    #[test]
    fn group_protocol_consumer_takes_the_remote_assignor_and_refuses_broker_side_settings() {
        let c = ConsumerConfig::from_properties(props(&[
            ("group.protocol", "consumer"),
            ("group.remote.assignor", "uniform"),
        ]))
        .unwrap();
        let expected = GroupProtocol::Consumer { remote_assignor: Some("uniform".into()), member_id: None };
        assert_eq!((&c.group_protocol, &c.group_config().protocol), (&expected, &expected));
        for (key, value, hint) in [
            ("partition.assignment.strategy", "range", "group.remote.assignor"),
            ("session.timeout.ms", "10000", "group.consumer.session.timeout.ms"),
            ("heartbeat.interval.ms", "1000", "group.consumer.heartbeat.interval.ms"),
        ] {
            let err = ConsumerConfig::from_properties(props(&[("group.protocol", "consumer"), (key, value)]));
            match err {
                Err(ConfigError::Unsupported { key: named, reason }) => {
                    assert_eq!(named, key);
                    assert!(reason.contains(hint), "{key}: {reason}");
                }
                other => panic!("{key}: {other:?}"),
            }
        }
        let classic = ConsumerConfig::from_properties(props(&[("group.remote.assignor", "uniform")])).unwrap_err();
        assert!(classic.to_string().contains("group.protocol=consumer only"), "{classic}");
        let unknown = ConsumerConfig::from_properties(props(&[("group.protocol", "next")])).unwrap_err();
        assert!(unknown.to_string().contains("classic or consumer"), "{unknown}");
    }

    #[test]
    fn settings_kgroup_cannot_honour_are_refused_with_what_to_do() {
        for (key, value, hint) in [
            ("allow.auto.create.topics", "true", "create them beforehand"),
            ("enable.ssl.certificate.verification", "false", "always verifies"),
            ("offset.store.method", "file", "in Kafka only"),
            ("ssl.truststore.location", "/etc/kafka/truststore.jks", "ssl.ca.location"),
            ("ssl.keystore.location", "/etc/kafka/keystore.p12", "ssl.key.location"),
            ("auto.offset.reset", "by_duration:PT1H", "earliest or latest"),
        ] {
            let err = ConsumerConfig::from_properties(props(&[(key, value)])).unwrap_err();
            match &err {
                ConfigError::Unsupported { key: named, reason } => {
                    assert_eq!(*named, key);
                    assert!(reason.contains(hint), "{key}={value}: {reason}");
                }
                other => panic!("{key}={value}: {other:?}"),
            }
            assert!(!err.to_string().contains("secret-xyz"), "{err}");
        }
        // An unknown Java assignor class is named by validation.
        let err =
            ConsumerConfig::from_properties(props(&[("partition.assignment.strategy", "com.example.RackAssignor")]))
                .unwrap_err();
        assert!(err.to_string().contains("com.example.RackAssignor"), "{err}");
        // An alias's bad value is reported under the name given.
        let err = ConsumerConfig::from_properties(props(&[("topic.metadata.refresh.interval.ms", "-1")])).unwrap_err();
        assert!(matches!(err, ConfigError::InvalidValue { key: "topic.metadata.refresh.interval.ms", .. }), "{err}");
    }

    #[test]
    fn an_unknown_key_suggests_the_nearest_known_one() {
        for (typo, nearest) in [
            ("sesion.timeout.ms", Some("session.timeout.ms")),
            ("Session.Timeout.MS", Some("session.timeout.ms")),
            ("enable.auto.comit", Some("enable.auto.commit")),
            ("enable.partition.eoff", Some("enable.partition.eof")),
            ("key.deserialiser", Some("key.deserializer")),
            ("sasl.usename", Some("sasl.username")),
            ("completely.different.thing", None),
            ("grp", None),
        ] {
            let err = ConsumerConfig::from_properties(props(&[(typo, "1")])).unwrap_err();
            assert_eq!(err, ConfigError::UnknownKey { key: typo.to_owned(), suggestion: nearest }, "{typo}");
        }
        let err = ConsumerConfig::from_properties(props(&[("sesion.timeout.ms", "1")])).unwrap_err();
        assert_eq!(err.to_string(), "unknown property `sesion.timeout.ms` (did you mean `session.timeout.ms`?)");
    }

    #[test]
    fn a_properties_file_loads_and_a_malformed_line_is_located() {
        let dir = std::env::temp_dir().join(format!("kgroup-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("consumer.properties");
        std::fs::write(
            &good,
            "# copied from a Java service\n\
             bootstrap.servers=127.0.0.1:9092,\\\n    127.0.0.1:9093\n\
             group.id = billing\n\
             ! deserializers are the application's business\n\
             key.deserializer: org.apache.kafka.common.serialization.ByteArrayDeserializer\n\
             \n\
             session.timeout.ms 10000\n",
        )
        .unwrap();
        let c = ConsumerConfig::from_properties_file(&good).unwrap();
        assert_eq!(c.bootstrap_servers, ["127.0.0.1:9092", "127.0.0.1:9093"]);
        assert_eq!((c.group_id.as_str(), c.session_timeout), ("billing", Duration::from_secs(10)));
        let bad = dir.join("bad.properties");
        std::fs::write(&bad, "bootstrap.servers=127.0.0.1:9092\ngroup.id=g\n\nsession.timeout.ms\n").unwrap();
        let err = ConsumerConfig::from_properties_file(&bad).unwrap_err();
        assert!(matches!(&err, ConfigError::MalformedLine { path, line: 4, .. } if *path == bad), "{err:?}");
        assert!(err.to_string().starts_with(&format!("{}:4: ", bad.display())), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_builder_sets_what_properties_set() {
        let built = ConsumerConfig::new("127.0.0.1:9092", "g")
            .client_id("billing")
            .session_timeout(Duration::from_secs(10))
            .max_poll_interval(Duration::from_secs(60))
            .enable_auto_commit(false)
            .auto_offset_reset(OffsetReset::Earliest)
            .assignment_strategy(["cooperative-sticky"])
            .group_instance_id("worker-1")
            .client_rack("eu-west-1a");
        let loaded = ConsumerConfig::from_properties(props(&[
            ("client.id", "billing"),
            ("session.timeout.ms", "10000"),
            ("max.poll.interval.ms", "60000"),
            ("enable.auto.commit", "false"),
            ("auto.offset.reset", "earliest"),
            ("partition.assignment.strategy", "cooperative-sticky"),
            ("group.instance.id", "worker-1"),
            ("client.rack", "eu-west-1a"),
        ]))
        .unwrap();
        assert_eq!(format!("{built:?}"), format!("{loaded:?}"));
        built.validate().unwrap();
    }

    /// `client.rack` is kgroup's own key now (both other clients name it so): the fetcher and
    /// the subscription get it; empty means none, as in the Java client.
    #[test]
    fn client_rack_reaches_the_group_and_empty_means_none() {
        let (c, warnings) =
            ConsumerConfig::from_properties_with_warnings(props(&[("client.rack", "eu-west-1a")])).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(c.client_rack.as_deref(), Some("eu-west-1a"));
        assert_eq!(c.group_config().rack.as_deref(), Some("eu-west-1a"));
        let c = ConsumerConfig::from_properties(props(&[("client.rack", "")])).unwrap();
        assert_eq!((c.client_rack.clone(), c.group_config().rack), (None, None));
        assert_eq!(ConsumerConfig::new("127.0.0.1:9092", "g").client_rack("").client_rack, None);
        let mut c = ConsumerConfig::new("127.0.0.1:9092", "g");
        c.client_rack = Some(String::new());
        assert!(c.validate().unwrap_err().to_string().contains("client.rack"));
    }
}
