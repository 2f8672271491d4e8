//! The wire layer: a thin adapter over `kafka-protocol`.
//!
//! Framing ([`frame`]), request and response headers ([`codec`]), the bounds check every
//! response body passes before it is decoded ([`bounds`]), per-broker version negotiation
//! ([`versions`]), the one table that says what each error code demands ([`error_code`]) and the
//! `consumer` protocol's subscription and assignment bytes ([`consumer_protocol`]).
//! Nothing here does IO.

pub mod bounds;
pub mod codec;
pub mod consumer_protocol;
pub mod error_code;
pub mod frame;
mod schema;
pub(crate) mod types;
pub mod versions;

use kafka_protocol::messages::ApiKey;

/// What went wrong while turning bytes into messages or back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A size prefix announced more than the configured maximum; refused before allocating.
    #[error("frame of {size} bytes exceeds the maximum frame size of {max} bytes")]
    FrameTooLarge { size: usize, max: usize },
    /// A size prefix was negative: the peer is not speaking Kafka.
    #[error("negative frame size {size}: the peer is not speaking the Kafka protocol")]
    NegativeFrameSize { size: i32 },
    /// Encoding failed (a field out of range for this version).
    #[error("cannot encode {api:?} v{version}: {detail}")]
    Encode { api: ApiKey, version: i16, detail: String },
    /// The broker's bytes do not decode as the expected message.
    #[error("cannot decode {api:?} v{version} {part}: {detail}")]
    Decode { api: ApiKey, version: i16, part: &'static str, detail: String },
    /// An error answer that does not follow the schema; its leading error code was readable.
    #[error("{api:?} v{version} answered error code {code} in a malformed response: {detail}")]
    ErrorResponse { api: ApiKey, version: i16, code: i16, detail: String },
    /// We asked for a version the message type does not have.
    #[error("{api:?} v{version} is outside the versions this client can encode ({min}..={max})")]
    VersionOutOfRange { api: ApiKey, version: i16, min: i16, max: i16 },
    /// The broker advertises no version of an API that we can speak.
    #[error("the broker supports no version of {api:?} this client can use")]
    UnsupportedApi { api: ApiKey },
}

impl ProtocolError {
    pub(crate) fn decode(api: ApiKey, version: i16, part: &'static str, source: impl std::fmt::Display) -> Self {
        ProtocolError::Decode { api, version, part, detail: format!("{source:#}") }
    }
}
