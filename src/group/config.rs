//! What the state machine needs to know about the member it drives.

use std::sync::Arc;
use std::time::Duration;

use super::assignor::{Assignor, RangeAssignor};
use crate::config_error::ConfigError;

/// Group settings, named after the Java consumer's properties.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// `group.id`.
    pub group_id: String,
    /// `group.instance.id`: a static member (KIP-345) when set.
    pub group_instance_id: Option<String>,
    /// `session.timeout.ms` (default 45 s).
    pub session_timeout: Duration,
    /// `max.poll.interval.ms`, sent as the JoinGroup rebalance timeout (default 300 s).
    pub rebalance_timeout: Duration,
    /// `heartbeat.interval.ms` (default 3 s).
    pub heartbeat_interval: Duration,
    /// `retry.backoff.ms` (default 100 ms): the first retry's backoff, doubled per attempt.
    pub retry_backoff: Duration,
    /// `retry.backoff.max.ms` (default 1 s, KIP-580): the cap on that doubling, so a
    /// coordinator that comes back is found within a second.
    pub retry_backoff_max: Duration,
    /// `request.timeout.ms` (default 30 s); JoinGroup waits `rebalance_timeout + 5 s` at least.
    pub request_timeout: Duration,
    /// How long a commit may wait (deferred through a rebalance, retried) before it fails
    /// (`default.api.timeout.ms`, default 60 s).
    pub commit_timeout: Duration,
    /// Attempts per commit before it fails (default 5).
    pub commit_attempts: u32,
    /// The revoke window: how long JoinGroup waits for in-flight commits and the revoke
    /// handler. Kept below the rebalance timeout (default: half of it).
    pub revoke_timeout: Duration,
    /// Assignors in preference order (`partition.assignment.strategy`).
    pub assignors: Vec<Arc<dyn Assignor>>,
    /// `metadata.max.age.ms` (default 5 min): how often a member of a generation refreshes the
    /// partition counts of the topics it assigns (the leader: every member's subscription), so
    /// that partitions and topics added later are assigned.
    pub metadata_max_age: Duration,
    /// `exclude.internal.topics` (default true): a pattern subscription never matches internal
    /// topics such as `__consumer_offsets`.
    pub exclude_internal_topics: bool,
    /// `client.rack` (default none): sent in the subscription (version 3) so that rack-aware
    /// assignors on the leader can give the member partitions with a replica in its rack
    /// (KIP-881).
    pub rack: Option<String>,
    /// `group.protocol`: the classic protocol (JoinGroup/SyncGroup, the client assigns) or
    /// KIP-848's consumer protocol (ConsumerGroupHeartbeat, the broker assigns).
    pub protocol: GroupProtocol,
}

/// How the member takes part in the group (`group.protocol`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum GroupProtocol {
    /// JoinGroup and SyncGroup with a client-side assignor: every broker.
    #[default]
    Classic,
    /// KIP-848 (Kafka 4.0+): the member heartbeats its subscription and what it owns, the broker
    /// assigns, and each member moves through member epochs at its own pace, without a join
    /// barrier.
    Consumer {
        /// `group.remote.assignor`: the broker's assignor to use (`uniform`, `range`); `None`
        /// leaves the choice to the broker (`group.consumer.assignors`, first one).
        remote_assignor: Option<String>,
        /// The member id (KIP-1082: the member chooses it, once for its lifetime, and keeps it
        /// through fencing and rejoining). The driver draws a random one; `None` lets a broker
        /// that only speaks ConsumerGroupHeartbeat v0 choose.
        member_id: Option<String>,
    },
}

impl GroupProtocol {
    /// `group.protocol`'s value.
    pub fn name(&self) -> &'static str {
        match self {
            GroupProtocol::Classic => "classic",
            GroupProtocol::Consumer { .. } => "consumer",
        }
    }
}

impl GroupConfig {
    /// Defaults (Kafka's, where Kafka has the setting) for group `group_id`.
    pub fn new(group_id: impl Into<String>) -> Self {
        GroupConfig {
            group_id: group_id.into(),
            group_instance_id: None,
            session_timeout: Duration::from_secs(45),
            rebalance_timeout: Duration::from_secs(300),
            heartbeat_interval: Duration::from_secs(3),
            retry_backoff: Duration::from_millis(100),
            retry_backoff_max: Duration::from_secs(1),
            request_timeout: Duration::from_secs(30),
            commit_timeout: Duration::from_secs(60),
            commit_attempts: 5,
            revoke_timeout: Duration::from_secs(150),
            assignors: vec![Arc::new(RangeAssignor)],
            metadata_max_age: Duration::from_secs(300),
            exclude_internal_topics: true,
            rack: None,
            protocol: GroupProtocol::Classic,
        }
    }

    /// Checks the combination before anything is sent.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &'static str, value: String, reason: &str| ConfigError::InvalidValue {
            key,
            value,
            reason: reason.into(),
        };
        if self.group_id.is_empty() {
            return Err(ConfigError::Missing { key: "group.id" });
        }
        if self.group_instance_id.as_deref() == Some("") {
            return Err(invalid("group.instance.id", String::new(), "must not be empty when set"));
        }
        if self.heartbeat_interval >= self.session_timeout {
            return Err(invalid(
                "heartbeat.interval.ms",
                self.heartbeat_interval.as_millis().to_string(),
                "must be lower than session.timeout.ms",
            ));
        }
        if self.revoke_timeout >= self.rebalance_timeout {
            return Err(invalid(
                "revoke timeout",
                self.revoke_timeout.as_millis().to_string(),
                "must be below max.poll.interval.ms (the rebalance timeout)",
            ));
        }
        if self.assignors.is_empty() {
            return Err(ConfigError::Missing { key: "partition.assignment.strategy" });
        }
        if let GroupProtocol::Consumer { remote_assignor, member_id } = &self.protocol {
            if remote_assignor.as_deref() == Some("") {
                return Err(invalid("group.remote.assignor", String::new(), "must not be empty when set"));
            }
            if member_id.as_deref() == Some("") {
                return Err(invalid("member id", String::new(), "must not be empty when set"));
            }
        }
        if self.commit_attempts == 0 {
            return Err(invalid("commit attempts", "0".into(), "must be at least 1"));
        }
        for (key, d) in [
            ("session.timeout.ms", self.session_timeout),
            ("max.poll.interval.ms", self.rebalance_timeout),
            ("request.timeout.ms", self.request_timeout),
            ("metadata.max.age.ms", self.metadata_max_age),
        ] {
            if d.is_zero() || d.as_millis() > i32::MAX as u128 {
                return Err(invalid(key, d.as_millis().to_string(), "must be between 1 ms and i32::MAX ms"));
            }
        }
        Ok(())
    }

    /// The backoff after `attempts` failures: `retry.backoff.ms` doubled per attempt, capped at
    /// `retry.backoff.max.ms` (KIP-580).
    pub(super) fn backoff(&self, attempts: u32) -> Duration {
        let factor = 1u32 << attempts.min(6);
        (self.retry_backoff * factor).min(self.retry_backoff_max.max(self.retry_backoff))
    }

    /// JoinGroup is parked by the coordinator for up to the rebalance timeout (Java's
    /// AbstractCoordinator waits `rebalance timeout + 5 s`).
    pub fn join_timeout(&self) -> Duration {
        self.request_timeout.max(self.rebalance_timeout + Duration::from_secs(5))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_offending_setting() {
        assert!(GroupConfig::new("g").validate().is_ok());
        let err = GroupConfig::new("").validate().unwrap_err();
        assert!(err.to_string().contains("group.id"), "{err}");
        let mut c = GroupConfig::new("g");
        c.heartbeat_interval = c.session_timeout;
        assert!(c.validate().unwrap_err().to_string().contains("heartbeat.interval.ms"));
        let mut c = GroupConfig::new("g");
        c.revoke_timeout = c.rebalance_timeout;
        assert!(c.validate().unwrap_err().to_string().contains("rebalance timeout"));
    }
}
