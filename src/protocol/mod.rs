//! The wire layer: a thin adapter over `kafka-protocol`.
//!
//! Framing (`frame`), request and response headers (`codec`), the bounds check every response
//! body passes before it is decoded (`bounds`), per-broker version negotiation (`versions`,
//! whose [`NegotiatedVersions`] the group machine takes), the one table that says what each
//! error code demands ([`error_code`]) and the `consumer` protocol's subscription and
//! assignment bytes ([`consumer_protocol`]). Nothing here does IO. `frame`, `codec` and
//! `versions` are public only with the `test-support` feature; `bounds` is internal.

pub(crate) mod bounds;
internal_modules!(codec, frame, versions);
pub mod consumer_protocol;
pub mod error_code;
mod schema;
pub(crate) mod types;

use kafka_protocol::messages::ApiKey;

/// The versions negotiated with a broker: what [`crate::group::CoordinatorFound`] hands the
/// group machine.
pub use self::versions::NegotiatedVersions;

/// What went wrong while turning bytes into messages or back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A size prefix announced more than the configured maximum; refused before allocating.
    #[error("frame of {size} bytes exceeds the maximum frame size of {max} bytes")]
    FrameTooLarge {
        /// The size announced.
        size: usize,
        /// The maximum frame size.
        max: usize,
    },
    /// A size prefix was negative: the peer is not speaking Kafka.
    #[error("negative frame size {size}: the peer is not speaking the Kafka protocol")]
    NegativeFrameSize {
        /// The size announced.
        size: i32,
    },
    /// Encoding failed (a field out of range for this version).
    #[error("cannot encode {api:?} v{version}: {detail}")]
    Encode {
        /// The request's API.
        api: ApiKey,
        /// The version.
        version: i16,
        /// What the codec said.
        detail: String,
    },
    /// The broker's bytes do not decode as the expected message.
    #[error("cannot decode {api:?} v{version} {part}: {detail}")]
    Decode {
        /// The request's API.
        api: ApiKey,
        /// The version.
        version: i16,
        /// What was being decoded: the response header or body, a subscription, an assignment.
        part: &'static str,
        /// What the codec said.
        detail: String,
    },
    /// An error answer that does not follow the schema; its leading error code was readable.
    #[error("{api:?} v{version} answered error code {code} in a malformed response: {detail}")]
    ErrorResponse {
        /// The request's API.
        api: ApiKey,
        /// The version.
        version: i16,
        /// The error code it leads with.
        code: i16,
        /// What the codec said.
        detail: String,
    },
    /// We asked for a version the message type does not have.
    #[error("{api:?} v{version} is outside the versions this client can encode ({min}..={max})")]
    VersionOutOfRange {
        /// The request's API.
        api: ApiKey,
        /// The version asked for.
        version: i16,
        /// The lowest version this client encodes.
        min: i16,
        /// The highest version this client encodes.
        max: i16,
    },
    /// The broker advertises no version of an API that we can speak.
    #[error("the broker supports no version of {api:?} this client can use")]
    UnsupportedApi {
        /// The API.
        api: ApiKey,
    },
}

impl ProtocolError {
    pub(crate) fn decode(api: ApiKey, version: i16, part: &'static str, source: impl std::fmt::Display) -> Self {
        ProtocolError::Decode { api, version, part, detail: format!("{source:#}") }
    }
}
