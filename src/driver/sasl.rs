//! SASL authentication of one connection, in Kafka requests (KIP-43, KIP-152).
//!
//! After ApiVersions (which Kafka answers before authentication), the client sends
//! SaslHandshake v1 naming its mechanism, then SaslAuthenticate requests carrying the
//! mechanism's messages until it is done. SaslHandshake v0, where the SASL tokens followed as
//! raw frames, is not supported: every broker since Kafka 1.0 has v1. SaslAuthenticate v1+
//! returns `session_lifetime_ms`; when it is not zero the connection re-authenticates before
//! the session expires (KIP-368), see [`super::connection`].

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, SaslAuthenticateRequest, SaslHandshakeRequest};
use kafka_protocol::protocol::StrBytes;

use super::connection::{check_code, Connection};
use super::scram::{ScramClient, ScramError, ScramHash};
use super::security::{SaslConfig, SaslMechanism};
use crate::error::{Result, SecurityError};

/// UNSUPPORTED_SASL_MECHANISM.
const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
/// SASL_AUTHENTICATION_FAILED.
const SASL_AUTHENTICATION_FAILED: i16 = 58;

/// One mechanism's client side.
enum Session {
    /// RFC 4616: one message, no challenge.
    Plain,
    Scram(ScramClient),
}

impl Session {
    /// The session and the first message to send.
    fn start(sasl: &SaslConfig) -> std::result::Result<(Session, Vec<u8>), ScramError> {
        let scram = |hash| {
            let (client, first) = ScramClient::start(hash, &sasl.username, &sasl.password)?;
            Ok((Session::Scram(client), first))
        };
        match sasl.mechanism {
            SaslMechanism::Plain => {
                // authzid (empty: act as the user we authenticate as), authcid, password.
                let message = [b"\0", sasl.username.as_bytes(), b"\0", sasl.password.expose().as_bytes()].concat();
                Ok((Session::Plain, message))
            }
            SaslMechanism::ScramSha256 => scram(ScramHash::Sha256),
            SaslMechanism::ScramSha512 => scram(ScramHash::Sha512),
        }
    }

    /// The next message to send, or `None` when authentication is complete.
    fn respond(&mut self, server_message: &[u8]) -> std::result::Result<Option<Vec<u8>>, ScramError> {
        match self {
            Session::Plain => Ok(None),
            Session::Scram(client) => client.respond(server_message),
        }
    }
}

/// Authenticates `conn` (right after ApiVersions, or again on the same connection for
/// KIP-368). Returns the session lifetime the broker announced, if any.
pub(crate) async fn authenticate(conn: &Connection, sasl: &SaslConfig) -> Result<Option<Duration>> {
    let addr = conn.addr().to_owned();
    let mechanism = sasl.mechanism.name();
    let unsupported = || SecurityError::SaslUnsupported { addr: addr.clone() };
    let handshake_version = conn.version(ApiKey::SaslHandshake).map_err(|_| unsupported())?;
    let authenticate_version = conn.version(ApiKey::SaslAuthenticate).map_err(|_| unsupported())?;

    let handshake = SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(mechanism));
    let response = conn.send_authentication(&handshake, handshake_version).await?;
    if response.error_code == UNSUPPORTED_SASL_MECHANISM {
        let enabled = response.mechanisms.iter().map(|m| m.to_string()).collect();
        return Err(SecurityError::MechanismNotEnabled { addr, mechanism, enabled }.into());
    }
    check_code(ApiKey::SaslHandshake, response.error_code, || format!("mechanism {mechanism}"))?;

    let protocol_error = |reason: String| SecurityError::SaslProtocol { addr: addr.clone(), mechanism, reason };
    let scram_error = |e: ScramError| match e {
        ScramError::SignatureMismatch => SecurityError::ServerSignatureMismatch { addr: addr.clone(), mechanism },
        ScramError::Rejected(message) => SecurityError::AuthenticationFailed { addr: addr.clone(), mechanism, message },
        ScramError::Malformed(reason) => protocol_error(reason),
    };
    let (mut session, mut message) = Session::start(sasl).map_err(scram_error)?;
    // PLAIN takes one round trip, SCRAM two; a server asking for more is misbehaving.
    for _ in 0..3 {
        let request = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(message));
        let response = conn.send_authentication(&request, authenticate_version).await?;
        if response.error_code == SASL_AUTHENTICATION_FAILED {
            let message = response.error_message.as_deref().unwrap_or("no detail").to_owned();
            return Err(SecurityError::AuthenticationFailed { addr, mechanism, message }.into());
        }
        check_code(ApiKey::SaslAuthenticate, response.error_code, || {
            format!("mechanism {mechanism}: {}", response.error_message.as_deref().unwrap_or(""))
        })?;
        match session.respond(&response.auth_bytes).map_err(scram_error)? {
            Some(next) => message = next,
            None => {
                let lifetime = u64::try_from(response.session_lifetime_ms).unwrap_or(0);
                tracing::debug!(broker = %addr, mechanism, session_lifetime_ms = lifetime, "SASL authenticated");
                return Ok((lifetime > 0).then(|| Duration::from_millis(lifetime)));
            }
        }
    }
    Err(protocol_error("the server asked for more rounds than the mechanism has".into()).into())
}
