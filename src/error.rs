//! The errors kgroup returns, classified by the action they demand.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::ApiKey;

pub use crate::config_error::ConfigError;
use crate::group::TopicPartition;
use crate::protocol::error_code::{ErrorAction, KafkaCode};
use crate::protocol::ProtocolError;

/// Why a connection stopped; shared by every request that was in flight on it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DisconnectCause {
    /// Reading or writing the socket failed.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    /// The broker closed the connection.
    #[error("the broker closed the connection")]
    ClosedByBroker,
    /// The broker sent bytes that are not a frame (a size past the maximum, or negative).
    #[error("unreadable frame: {0}")]
    Frame(#[from] ProtocolError),
    /// A response answered no request in flight: the stream can no longer be trusted.
    #[error("a response carried correlation id {0}, which no request is waiting for")]
    UnexpectedCorrelationId(i32),
    /// This client closed the connection (shutdown, or a connection given up as broken).
    #[error("the client closed the connection")]
    ClosedByClient,
    /// Re-authentication before the SASL session expired (KIP-368) failed; the broker would
    /// close the connection at expiry anyway, so it is closed at once.
    #[error("SASL re-authentication failed: {0}")]
    Reauthentication(SecurityError),
}

/// Failures to reach or talk to a broker.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum NetworkError {
    /// The TCP connection could not be opened.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The broker's `host:port`.
        addr: String,
        /// The socket error.
        source: Arc<io::Error>,
    },
    /// Opening the connection (TCP, TLS, API versions, SASL) took longer than the connect
    /// timeout.
    #[error("connecting to {addr} timed out after {after:?}")]
    ConnectTimeout {
        /// The broker's `host:port`.
        addr: String,
        /// The timeout.
        after: Duration,
    },
    /// The connection broke; every request in flight on it carries the same `cause`.
    #[error("connection to {addr} lost: {cause}")]
    Disconnected {
        /// The broker's `host:port`.
        addr: String,
        /// Why it broke.
        cause: Arc<DisconnectCause>,
    },
    /// A request got no response within the request timeout.
    #[error("{api:?} to {addr} got no response within {after:?}")]
    RequestTimeout {
        /// The broker's `host:port`.
        addr: String,
        /// The request's API.
        api: ApiKey,
        /// The timeout.
        after: Duration,
    },
    /// No broker of the known ones and the bootstrap list could be connected to.
    #[error("no bootstrap broker answered (tried {tried:?}); last error: {last}")]
    NoBrokerReachable {
        /// The addresses tried, in order.
        tried: Vec<String>,
        /// The last attempt's error.
        last: String,
    },
}

/// TLS and SASL failures. Each one means a certificate, a password or a setting is wrong on one
/// side; retrying cannot fix it and a retry storm would only lock accounts and flood broker
/// logs, so [`Error::action`] calls them fatal. The message says who is at fault and which
/// property to check.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SecurityError {
    /// The broker's certificate does not chain to a trusted CA.
    #[error("TLS handshake with {addr} failed: its certificate is not signed by a trusted CA (check `ssl.ca.location`): {detail}")]
    UntrustedCertificate {
        /// The broker's `host:port`.
        addr: String,
        /// What the TLS library said.
        detail: String,
    },
    /// The broker's certificate does not name the host connected to.
    #[error("TLS handshake with {addr} failed: its certificate is not valid for host {host:?} (hostname verification; check `bootstrap.servers` and the certificate's subject alternative names): {detail}")]
    HostnameMismatch {
        /// The broker's `host:port`.
        addr: String,
        /// The host name checked.
        host: String,
        /// What the TLS library said.
        detail: String,
    },
    /// Any other TLS failure.
    #[error("TLS handshake with {addr} failed: {detail}")]
    Tls {
        /// The broker's `host:port`.
        addr: String,
        /// What the TLS library said.
        detail: String,
    },
    /// The broker answered SaslHandshake with UNSUPPORTED_SASL_MECHANISM (33).
    #[error("{addr} does not enable SASL mechanism {mechanism} (`sasl.mechanism`); it offers {enabled:?}")]
    MechanismNotEnabled {
        /// The broker's `host:port`.
        addr: String,
        /// The mechanism configured.
        mechanism: &'static str,
        /// The mechanisms the broker enables.
        enabled: Vec<String>,
    },
    /// The broker answered SaslAuthenticate with SASL_AUTHENTICATION_FAILED (58), or a SCRAM
    /// server-final message with an error (RFC 5802 `e=`).
    #[error("SASL {mechanism} authentication to {addr} failed (check `sasl.username` and `sasl.password`): {message}")]
    AuthenticationFailed {
        /// The broker's `host:port`.
        addr: String,
        /// The mechanism used.
        mechanism: &'static str,
        /// The broker's error message.
        message: String,
    },
    /// The SCRAM server signature did not verify: the peer does not know the password's
    /// server key, so it is not the broker we meant to talk to (RFC 5802 section 3).
    #[error("SASL {mechanism} with {addr}: the server's signature is wrong, so the server does not hold our credentials (impostor or misrouted connection)")]
    ServerSignatureMismatch {
        /// The broker's `host:port`.
        addr: String,
        /// The mechanism used.
        mechanism: &'static str,
    },
    /// The broker's SASL messages do not follow the mechanism.
    #[error("SASL {mechanism} with {addr}: malformed exchange: {reason}")]
    SaslProtocol {
        /// The broker's `host:port`.
        addr: String,
        /// The mechanism used.
        mechanism: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// The broker is too old for SASL inside Kafka requests.
    #[error("{addr} does not support SASL in Kafka requests (SaslHandshake v1 and SaslAuthenticate, Kafka 1.0+)")]
    SaslUnsupported {
        /// The broker's `host:port`.
        addr: String,
    },
}

/// The crate's error type.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration that cannot work.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A broker could not be reached or the connection broke.
    #[error(transparent)]
    Network(#[from] NetworkError),
    /// Bytes that do not encode or decode as the expected message.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// TLS or SASL failed: fatal.
    #[error(transparent)]
    Security(#[from] SecurityError),
    /// A broker answered with an error code.
    #[error("{api:?} failed with {code}{}", context_suffix(.context))]
    Broker {
        /// The request's API.
        api: ApiKey,
        /// The error code.
        code: KafkaCode,
        /// What the request was about (may be empty).
        context: String,
    },
    /// Metadata does not (yet) know this topic or partition.
    #[error("unknown topic or partition {topic}/{partition:?}")]
    UnknownPartition {
        /// The topic.
        topic: String,
        /// The partition, when one was asked for.
        partition: Option<i32>,
    },
    /// The group's coordinator knows no such group: DescribeGroups answered it as `Dead` (Kafka's
    /// answer for a group that does not exist) or with GROUP_ID_NOT_FOUND.
    #[error("group {group:?} does not exist (its coordinator, broker {coordinator}, knows no such group)")]
    UnknownGroup {
        /// The group id asked about.
        group: String,
        /// The broker id of the coordinator that answered.
        coordinator: i32,
    },
    /// A bounded retry loop ran out of attempts or time.
    #[error("gave up on {what} after {attempts} attempts: {last}")]
    RetriesExhausted {
        /// The operation given up.
        what: &'static str,
        /// Attempts made.
        attempts: u32,
        /// The last attempt's error.
        last: Box<Error>,
    },
    /// The group member stopped for good (fenced, unauthorized, misconfigured).
    #[error("group member stopped: {0}")]
    Group(#[from] crate::group::GroupError),
    /// Committed offsets could not be looked up: they are unknown, not absent.
    #[error("committed offsets unknown (not absent): {0}; {advice}", advice = .0.what_to_do())]
    OffsetLookup(#[from] crate::group::OffsetLookupFailure),
    /// The application did not poll within `max.poll.interval.ms`; the member left the group
    /// so its partitions could move, and rejoins on the next poll.
    #[error("max.poll.interval.ms ({interval:?}) passed between two polls: the member left the group and rejoins on the next poll")]
    MaxPollIntervalExceeded {
        /// `max.poll.interval.ms`.
        interval: Duration,
    },
    /// A call that needs committed offsets on a consumer without `group.id` (an
    /// [`AssignedConsumer`](crate::AssignedConsumer) may have none): there is no group to keep
    /// them in (Java's `InvalidGroupIdException`).
    #[error("{call} needs a group.id: this consumer has none, so it has no committed offsets")]
    NoGroup {
        /// The call refused.
        call: &'static str,
    },
    /// One partition's records cannot be fetched; other partitions go on. The partition is not
    /// fetched again until it is sought (or assigned again).
    #[error("fetching {partition} stopped: {cause}; seek it to fetch it again (other partitions go on)")]
    PartitionFetch {
        /// The partition stopped.
        partition: TopicPartition,
        /// Why.
        cause: FetchFailure,
    },
    /// A time to look offsets up at is negative (on the wire -1 and -2 name the log end and
    /// start; [`GroupConsumer::watermarks`](crate::GroupConsumer::watermarks) asks those).
    #[error("cannot look up offsets of {partition} at a negative time ({timestamp} ms)")]
    NegativeTimestamp {
        /// The partition, as `topic-partition`.
        partition: String,
        /// The time asked.
        timestamp: i64,
    },
    /// The component stopped; `cause` says why (and whether anything can still be done).
    #[error("{what} is closed: {cause}")]
    Closed {
        /// What stopped: `consumer`, `group member` or `producer`.
        what: &'static str,
        /// Why it stopped.
        cause: ClosedCause,
    },
}

/// Why a partition's records cannot be fetched.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum FetchFailure {
    /// The broker answered with an error code that retrying cannot fix (an authorization error,
    /// OFFSET_OUT_OF_RANGE under `auto.offset.reset=none`, ...).
    #[error("{api:?} failed with {code}{}", .offset.map(|o| format!(" at offset {o}")).unwrap_or_default())]
    Broker {
        /// Fetch, or ListOffsets while applying `auto.offset.reset`.
        api: ApiKey,
        /// The error code.
        code: KafkaCode,
        /// The offset fetched from, for a Fetch.
        offset: Option<i64>,
    },
    /// The records do not decode (a bad CRC, a codec error, a malformed batch); the records
    /// before them were delivered.
    #[error("undecodable records: {0}")]
    Undecodable(String),
    /// The partition has no valid offset to start from and `auto.offset.reset` is `none`.
    #[error("no valid offset to start from and auto.offset.reset is none")]
    NoResetPolicy,
    /// The partition's leader speaks no Fetch version this client can use.
    #[error(transparent)]
    Protocol(ProtocolError),
}

impl FetchFailure {
    /// The Kafka error code, when the broker gave one.
    pub fn code(&self) -> Option<KafkaCode> {
        match self {
            FetchFailure::Broker { code, .. } => Some(*code),
            FetchFailure::Undecodable(_) | FetchFailure::NoResetPolicy | FetchFailure::Protocol(_) => None,
        }
    }
}

/// Why a consumer, a group member or a producer stopped.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ClosedCause {
    /// The application closed it (`close`, `leave`).
    #[error("closed by the application")]
    Application,
    /// The group member stopped on a fatal error; a new member (a new consumer) is needed.
    #[error("the group member stopped on a fatal error: {0}")]
    Fatal(crate::group::GroupError),
    /// Every handle that kept it running was dropped without `close` or `leave`.
    #[error("every handle on it was dropped")]
    Dropped,
    /// Its task ended otherwise (it panicked, or the tokio runtime is shutting down).
    #[error("its task ended")]
    TaskEnded,
}

fn context_suffix(context: &str) -> String {
    if context.is_empty() {
        String::new()
    } else {
        format!(" ({context})")
    }
}

impl Error {
    /// The action this error demands from whoever sees it.
    pub fn action(&self) -> ErrorAction {
        match self {
            Error::Config(_) | Error::Security(_) => ErrorAction::Fatal,
            Error::Network(NetworkError::RequestTimeout { .. }) => ErrorAction::Retry,
            Error::Network(_) => ErrorAction::RefreshMetadata,
            Error::Protocol(ProtocolError::UnsupportedApi { .. }) => ErrorAction::Fatal,
            Error::Protocol(_) => ErrorAction::Retry,
            Error::Broker { code, .. } => code.action().unwrap_or(ErrorAction::Retry),
            Error::UnknownPartition { .. } => ErrorAction::RefreshMetadata,
            Error::UnknownGroup { .. } => ErrorAction::FailRequest,
            Error::RetriesExhausted { .. } => ErrorAction::FailRequest,
            Error::Closed { .. } | Error::Group(_) => ErrorAction::Fatal,
            Error::OffsetLookup(failure) if failure.is_retriable() => ErrorAction::Retry,
            Error::OffsetLookup(_) => ErrorAction::Fatal,
            Error::MaxPollIntervalExceeded { .. } => ErrorAction::Rejoin,
            Error::PartitionFetch { .. } | Error::NegativeTimestamp { .. } => ErrorAction::FailRequest,
            Error::NoGroup { .. } => ErrorAction::Fatal,
        }
    }

    pub(crate) fn broker(api: ApiKey, code: i16, context: impl Into<String>) -> Self {
        Error::Broker { api, code: KafkaCode(code), context: context.into() }
    }
}

/// A result with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::{GroupError, OffsetLookupFailure};

    #[test]
    fn errors_say_what_happened_and_what_to_do() {
        let fetch = Error::PartitionFetch {
            partition: TopicPartition::new("t", 3),
            cause: FetchFailure::Broker { api: ApiKey::Fetch, code: KafkaCode(29), offset: Some(7) },
        };
        assert_eq!(fetch.action(), ErrorAction::FailRequest);
        let text = fetch.to_string();
        assert!(text.contains("t-3") && text.contains("at offset 7") && text.contains("seek it"), "{text}");
        let undecodable = FetchFailure::Undecodable("bad crc".into());
        assert_eq!(undecodable.code(), None);

        let fatal = GroupError::FencedInstanceId { instance_id: "i".into() };
        let closed = Error::Closed { what: "group member", cause: ClosedCause::Fatal(fatal) };
        assert_eq!(closed.action(), ErrorAction::Fatal);
        assert!(closed.to_string().contains("fatal error: another process took over"), "{closed}");

        let rejected = Error::OffsetLookup(OffsetLookupFailure::Rejected { code: KafkaCode(30), topic: None });
        assert!(rejected.to_string().contains("asking again cannot help"), "{rejected}");
        let timed_out = Error::OffsetLookup(OffsetLookupFailure::TimedOut { attempts: 3, last: "loading".into() });
        assert_eq!(timed_out.action(), ErrorAction::Retry);
        assert!(timed_out.to_string().contains("ask again"), "{timed_out}");
    }
}
