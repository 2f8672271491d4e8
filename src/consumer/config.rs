//! Consumer configuration: a builder, or librdkafka / Java style properties.
//!
//! Every key is checked: an unknown key or a value that does not parse is an error that names
//! the key, reported when the configuration is built, never later.

use std::sync::Arc;
use std::time::Duration;

use crate::driver::security::{SecurityConfig, SECURITY_KEYS};
use crate::error::ConfigError;
use crate::group::assignor::{assignor_by_name, Assignor};
use crate::group::GroupConfig;

pub use crate::driver::fetcher::{IsolationLevel, OffsetReset};

/// Settings of a [`super::GroupConsumer`]. Field docs name the property and its default.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// `bootstrap.servers` (required).
    pub bootstrap_servers: Vec<String>,
    /// `group.id` (required).
    pub group_id: String,
    /// `client.id` (default `kgroup`).
    pub client_id: String,
    /// `group.instance.id` (default none: a dynamic member).
    pub group_instance_id: Option<String>,
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
    /// `queued.max.messages.kbytes`-like bound on prefetched bytes (default 64 MiB).
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
    /// How long the rebalance listener may take per callback (default: half of
    /// `max.poll.interval.ms`, below the rebalance timeout).
    pub rebalance_callback_timeout: Duration,
    /// `security.protocol` with its `ssl.*` and `sasl.*` settings (default PLAINTEXT).
    pub security: SecurityConfig,
}

/// The property keys `from_properties` understands, besides [`SECURITY_KEYS`].
pub const KNOWN_KEYS: &[&str] = &[
    "bootstrap.servers",
    "group.id",
    "client.id",
    "group.instance.id",
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
    "request.timeout.ms",
    "retry.backoff.ms",
    "retry.backoff.max.ms",
    "default.api.timeout.ms",
    "metadata.max.age.ms",
];

impl ConsumerConfig {
    /// Defaults (the Java consumer's, where it has the setting) for `bootstrap.servers`
    /// (comma-separated) and `group.id`.
    pub fn new(bootstrap_servers: impl Into<String>, group_id: impl Into<String>) -> Self {
        ConsumerConfig {
            bootstrap_servers: split_list(&bootstrap_servers.into()),
            group_id: group_id.into(),
            client_id: "kgroup".into(),
            group_instance_id: None,
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
            rebalance_callback_timeout: Duration::from_secs(150),
            security: SecurityConfig::default(),
        }
    }

    /// Builds a configuration from `key=value` properties, as librdkafka and the Java client
    /// take them. `bootstrap.servers` and `group.id` are required.
    pub fn from_properties<K: AsRef<str>, V: AsRef<str>>(
        properties: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, ConfigError> {
        let mut config = ConsumerConfig::new("", "");
        let mut callback_timeout_set = false;
        let mut security = Vec::new();
        for (key, value) in properties {
            let (key, value) = (key.as_ref().trim(), value.as_ref().trim());
            if SECURITY_KEYS.contains(&key) {
                security.push((key.to_owned(), value.to_owned()));
                continue;
            }
            let key: &'static str =
                KNOWN_KEYS.iter().copied().find(|k| *k == key).ok_or_else(|| ConfigError::InvalidValue {
                    key: "(property name)",
                    value: key.to_owned(),
                    reason: "unknown property".into(),
                })?;
            match key {
                "bootstrap.servers" => config.bootstrap_servers = split_list(value),
                "group.id" => config.group_id = value.to_owned(),
                "client.id" => config.client_id = value.to_owned(),
                "group.instance.id" => config.group_instance_id = Some(value.to_owned()),
                "session.timeout.ms" => config.session_timeout = millis(key, value)?,
                "heartbeat.interval.ms" => config.heartbeat_interval = millis(key, value)?,
                "max.poll.interval.ms" => config.max_poll_interval = millis(key, value)?,
                "max.poll.records" => config.max_poll_records = int(key, value, 1)? as usize,
                "enable.auto.commit" => config.enable_auto_commit = boolean(key, value)?,
                "auto.commit.interval.ms" => config.auto_commit_interval = millis(key, value)?,
                "enable.auto.offset.store" => config.enable_auto_offset_store = boolean(key, value)?,
                "auto.offset.reset" => {
                    config.auto_offset_reset = match value {
                        "earliest" | "smallest" | "beginning" => OffsetReset::Earliest,
                        "latest" | "largest" | "end" => OffsetReset::Latest,
                        "none" | "error" => OffsetReset::None,
                        _ => return Err(invalid(key, value, "expected earliest, latest or none")),
                    }
                }
                "partition.assignment.strategy" => config.assignment_strategy = split_list(value),
                "fetch.min.bytes" => config.fetch_min_bytes = int(key, value, 1)?,
                "fetch.max.bytes" => config.fetch_max_bytes = int(key, value, 1)?,
                "fetch.max.wait.ms" | "fetch.wait.max.ms" => config.fetch_max_wait = millis(key, value)?,
                "max.partition.fetch.bytes" => config.max_partition_fetch_bytes = int(key, value, 1)?,
                "isolation.level" => {
                    config.isolation_level = match value {
                        "read_uncommitted" => IsolationLevel::ReadUncommitted,
                        "read_committed" => IsolationLevel::ReadCommitted,
                        _ => return Err(invalid(key, value, "expected read_committed or read_uncommitted")),
                    }
                }
                "request.timeout.ms" => config.request_timeout = millis(key, value)?,
                "retry.backoff.ms" => config.retry_backoff = millis(key, value)?,
                "retry.backoff.max.ms" => config.retry_backoff_max = millis(key, value)?,
                "metadata.max.age.ms" => config.metadata_max_age = millis(key, value)?,
                "default.api.timeout.ms" => config.commit_timeout = millis(key, value)?,
                _ => unreachable!("every known key has an arm"),
            }
            callback_timeout_set |= key == "max.poll.interval.ms";
        }
        if callback_timeout_set {
            config.rebalance_callback_timeout = config.max_poll_interval / 2;
        }
        config.security = SecurityConfig::from_properties(security)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks the combination; [`super::GroupConsumer`] calls it before connecting.
    pub fn validate(&self) -> Result<(), ConfigError> {
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
        if self.enable_auto_commit && self.auto_commit_interval.is_zero() {
            return Err(invalid("auto.commit.interval.ms", "0", "must be positive when enable.auto.commit is true"));
        }
        self.group_config().validate()
    }

    /// The membership settings derived from this configuration.
    pub fn group_config(&self) -> GroupConfig {
        let mut group = GroupConfig::new(self.group_id.clone());
        group.group_instance_id = self.group_instance_id.clone();
        group.session_timeout = self.session_timeout;
        group.heartbeat_interval = self.heartbeat_interval;
        group.rebalance_timeout = self.max_poll_interval;
        group.retry_backoff = self.retry_backoff;
        group.retry_backoff_max = self.retry_backoff_max;
        group.request_timeout = self.request_timeout;
        group.commit_timeout = self.commit_timeout;
        group.metadata_max_age = self.metadata_max_age;
        group.revoke_timeout =
            self.rebalance_callback_timeout.min(self.max_poll_interval.saturating_sub(Duration::from_millis(1)));
        group.assignors = self.assignment_strategy.iter().filter_map(|n| self.assignor(n)).collect();
        group
    }

    /// The assignor `name` stands for: one of `custom_assignors`, else a built-in one.
    fn assignor(&self, name: &str) -> Option<Arc<dyn Assignor>> {
        self.custom_assignors.iter().find(|a| a.name() == name).cloned().or_else(|| assignor_by_name(name))
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
    match value {
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
        let err = ConsumerConfig::from_properties(props(&[("enable.partition.eof", "true")])).unwrap_err();
        assert!(err.to_string().contains("enable.partition.eof"), "{err}");
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
}
