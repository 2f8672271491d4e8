//! One table from Kafka error code to the action it demands.
//!
//! `kafka-protocol`'s `is_retriable()` follows the Java exception classes, which call
//! ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID and REBALANCE_IN_PROGRESS non-retriable; for a group
//! member each of them means "rejoin", which is what this table says. Per-API refinements (for
//! example REQUEST_TIMED_OUT on OffsetCommit meaning "find the coordinator again") live with
//! the state machine that sends the request.

use std::fmt;

use kafka_protocol::ResponseError;

/// What the client must do about an error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorAction {
    /// Transient: back off and send the same request to the same broker.
    Retry,
    /// Our partition-leader or topic view is stale: refresh metadata, then retry.
    RefreshMetadata,
    /// The group coordinator moved or is not ready: FindCoordinator again, then retry.
    RefreshCoordinator,
    /// The group moved on: rejoin, keeping the member id.
    Rejoin,
    /// The broker no longer knows the member: forget the member id and rejoin from scratch.
    ResetMemberId,
    /// This request cannot succeed as sent; report it to the caller, the client carries on.
    FailRequest,
    /// Configuration, authorization or identity problem: stop and tell the application.
    Fatal,
}

/// The error codes kgroup reacts to by name, defined once for the client, its scripted
/// coordinator and the tests (values from the protocol's table; a test checks each against
/// `kafka-protocol`'s).
pub mod codes {
    macro_rules! codes {
        ($($name:ident = $code:expr;)*) => {
            $(#[doc = concat!("`", stringify!($name), "` (", stringify!($code), ").")]
            pub const $name: i16 = $code;)*
            /// Every code above with its name.
            pub(super) const ALL: &[(&str, i16)] = &[$((stringify!($name), $name)),*];
        };
    }
    codes! {
        NONE = 0;
        UNKNOWN_SERVER_ERROR = -1;
        OFFSET_OUT_OF_RANGE = 1;
        UNKNOWN_TOPIC_OR_PARTITION = 3;
        REQUEST_TIMED_OUT = 7;
        OFFSET_METADATA_TOO_LARGE = 12;
        COORDINATOR_LOAD_IN_PROGRESS = 14;
        COORDINATOR_NOT_AVAILABLE = 15;
        NOT_COORDINATOR = 16;
        ILLEGAL_GENERATION = 22;
        INCONSISTENT_GROUP_PROTOCOL = 23;
        INVALID_GROUP_ID = 24;
        UNKNOWN_MEMBER_ID = 25;
        INVALID_SESSION_TIMEOUT = 26;
        REBALANCE_IN_PROGRESS = 27;
        INVALID_COMMIT_OFFSET_SIZE = 28;
        TOPIC_AUTHORIZATION_FAILED = 29;
        GROUP_AUTHORIZATION_FAILED = 30;
        UNSUPPORTED_SASL_MECHANISM = 33;
        UNSUPPORTED_VERSION = 35;
        INVALID_REQUEST = 42;
        INVALID_TXN_STATE = 48;
        INVALID_PRODUCER_ID_MAPPING = 49;
        SASL_AUTHENTICATION_FAILED = 58;
        GROUP_ID_NOT_FOUND = 69;
        FETCH_SESSION_ID_NOT_FOUND = 70;
        INVALID_FETCH_SESSION_EPOCH = 71;
        MEMBER_ID_REQUIRED = 79;
        GROUP_MAX_SIZE_REACHED = 81;
        FENCED_INSTANCE_ID = 82;
        UNSTABLE_OFFSET_COMMIT = 88;
        PRODUCER_FENCED = 90;
        FENCED_MEMBER_EPOCH = 110;
        UNRELEASED_INSTANCE_ID = 111;
        UNSUPPORTED_ASSIGNOR = 112;
        STALE_MEMBER_EPOCH = 113;
        INVALID_REGULAR_EXPRESSION = 128;
    }
}

/// A Kafka error code with its name; `0` means no error.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KafkaCode(pub i16);

impl KafkaCode {
    /// Success.
    pub const NONE: KafkaCode = KafkaCode(0);

    /// Whether the code is not [`KafkaCode::NONE`].
    pub fn is_error(self) -> bool {
        self.0 != 0
    }

    /// The protocol's name of the code (`"UNKNOWN_SERVER_ERROR"`), if [`codes`] names it.
    pub fn name(self) -> Option<&'static str> {
        codes::ALL.iter().find(|(_, code)| *code == self.0).map(|(name, _)| *name)
    }

    /// The action this code demands, or `None` for success.
    pub fn action(self) -> Option<ErrorAction> {
        ResponseError::try_from_code(self.0).map(classify)
    }

    /// `kafka-protocol`'s typed view of the code, `None` for success.
    pub fn as_response_error(self) -> Option<ResponseError> {
        ResponseError::try_from_code(self.0)
    }
}

impl fmt::Display for KafkaCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match ResponseError::try_from_code(self.0) {
            None => write!(f, "NONE (0)"),
            Some(ResponseError::Unknown(code)) => write!(f, "UNKNOWN_CODE ({code})"),
            Some(e) => write!(f, "{e:?} ({})", self.0),
        }
    }
}

/// Serialized as the number; the name is in `Display`.
#[cfg(feature = "serde")]
impl serde::Serialize for KafkaCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i16(self.0)
    }
}

impl fmt::Debug for KafkaCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl From<i16> for KafkaCode {
    fn from(code: i16) -> Self {
        KafkaCode(code)
    }
}

/// The table. Codes from APIs this client never sends (transactions, raft, share groups,
/// delegation tokens) are fatal: receiving one means the peer is confused.
pub fn classify(error: ResponseError) -> ErrorAction {
    use ErrorAction::*;
    use ResponseError as E;
    match error {
        E::CorruptMessage
        | E::RequestTimedOut
        | E::NetworkException
        | E::CoordinatorLoadInProgress
        | E::NotEnoughReplicas
        | E::NotEnoughReplicasAfterAppend
        | E::NotController
        | E::ConcurrentTransactions
        | E::ReassignmentInProgress
        | E::FetchSessionIdNotFound
        | E::InvalidFetchSessionEpoch
        | E::OffsetNotAvailable
        | E::PreferredLeaderNotAvailable
        | E::EligibleLeadersNotAvailable
        | E::ElectionNotNeeded
        | E::UnstableOffsetCommit
        | E::ThrottlingQuotaExceeded
        | E::ShareSessionNotFound
        | E::InvalidShareSessionEpoch
        | E::ShareSessionLimitReached => Retry,

        E::UnknownTopicOrPartition
        | E::LeaderNotAvailable
        | E::NotLeaderOrFollower
        | E::BrokerNotAvailable
        | E::ReplicaNotAvailable
        | E::KafkaStorageError
        | E::ListenerNotFound
        | E::FencedLeaderEpoch
        | E::UnknownLeaderEpoch
        | E::UnknownTopicId
        | E::InconsistentTopicId
        | E::FetchSessionTopicIdError
        | E::NewLeaderElected
        | E::RebootstrapRequired => RefreshMetadata,

        E::CoordinatorNotAvailable | E::NotCoordinator => RefreshCoordinator,

        E::IllegalGeneration | E::RebalanceInProgress | E::MemberIdRequired => Rejoin,

        E::UnknownMemberId => ResetMemberId,

        E::OffsetOutOfRange
        | E::InvalidFetchSize
        | E::MessageTooLarge
        | E::OffsetMetadataTooLarge
        | E::InvalidTopicException
        | E::RecordListTooLarge
        | E::InvalidRequiredAcks
        | E::InvalidCommitOffsetSize
        | E::TopicAuthorizationFailed
        | E::InvalidTimestamp
        | E::TopicAlreadyExists
        | E::InvalidPartitions
        | E::InvalidReplicationFactor
        | E::InvalidReplicaAssignment
        | E::InvalidConfig
        | E::InvalidRequest
        | E::UnsupportedForMessageFormat
        | E::PolicyViolation
        | E::OutOfOrderSequenceNumber
        | E::DuplicateSequenceNumber
        | E::UnknownProducerId
        | E::NonEmptyGroup
        | E::GroupIdNotFound
        | E::TopicDeletionDisabled
        | E::GroupSubscribedToTopic
        | E::InvalidRecord
        | E::PositionOutOfRange
        | E::OffsetMovedToTieredStorage => FailRequest,

        _ => Fatal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_code_is_the_protocols_code_of_that_name() {
        for &(name, code) in codes::ALL {
            let expected = match ResponseError::try_from_code(code) {
                None => "NONE".to_owned(),
                // `RebalanceInProgress` -> `REBALANCE_IN_PROGRESS`
                Some(e) => format!("{e:?}").chars().enumerate().fold(String::new(), |mut out, (i, c)| {
                    if c.is_uppercase() && i > 0 {
                        out.push('_');
                    }
                    out.push(c.to_ascii_uppercase());
                    out
                }),
            };
            assert_eq!(name, expected, "code {code}");
        }
    }

    #[test]
    fn every_code_has_an_action_and_success_has_none() {
        assert_eq!(KafkaCode(0).action(), None);
        for code in -1..=140i16 {
            if code != 0 {
                assert!(KafkaCode(code).action().is_some(), "code {code}");
            }
        }
    }

    #[test]
    fn group_codes_demand_the_documented_reaction() {
        let cases = [
            (14, ErrorAction::Retry),              // COORDINATOR_LOAD_IN_PROGRESS
            (15, ErrorAction::RefreshCoordinator), // COORDINATOR_NOT_AVAILABLE
            (16, ErrorAction::RefreshCoordinator), // NOT_COORDINATOR
            (22, ErrorAction::Rejoin),             // ILLEGAL_GENERATION
            (27, ErrorAction::Rejoin),             // REBALANCE_IN_PROGRESS
            (79, ErrorAction::Rejoin),             // MEMBER_ID_REQUIRED
            (25, ErrorAction::ResetMemberId),      // UNKNOWN_MEMBER_ID
            (82, ErrorAction::Fatal),              // FENCED_INSTANCE_ID
            (81, ErrorAction::Fatal),              // GROUP_MAX_SIZE_REACHED
            (23, ErrorAction::Fatal),              // INCONSISTENT_GROUP_PROTOCOL
            (26, ErrorAction::Fatal),              // INVALID_SESSION_TIMEOUT
            (30, ErrorAction::Fatal),              // GROUP_AUTHORIZATION_FAILED
            (35, ErrorAction::Fatal),              // UNSUPPORTED_VERSION
            (12, ErrorAction::FailRequest),        // OFFSET_METADATA_TOO_LARGE
            (88, ErrorAction::Retry),              // UNSTABLE_OFFSET_COMMIT
            (6, ErrorAction::RefreshMetadata),     // NOT_LEADER_OR_FOLLOWER
            (3, ErrorAction::RefreshMetadata),     // UNKNOWN_TOPIC_OR_PARTITION
            (-1, ErrorAction::Fatal),              // UNKNOWN_SERVER_ERROR
            (9999, ErrorAction::Fatal),            // a code from the future
        ];
        for (code, action) in cases {
            assert_eq!(KafkaCode(code).action(), Some(action), "{}", KafkaCode(code));
        }
    }

    #[test]
    fn the_crate_calls_rejoin_codes_non_retriable() {
        for code in [22, 25, 27] {
            assert!(!KafkaCode(code).as_response_error().unwrap().is_retriable());
        }
    }

    #[test]
    fn display_names_the_code() {
        assert_eq!(KafkaCode(22).to_string(), "IllegalGeneration (22)");
        assert_eq!(KafkaCode(0).to_string(), "NONE (0)");
    }
}
