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
use crate::protocol::error_code::codes::{SASL_AUTHENTICATION_FAILED, UNSUPPORTED_SASL_MECHANISM};

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

    /// The next message to send, or `None` when authentication is complete. SCRAM's answer to
    /// the server-first message derives the key with PBKDF2 (up to 16384 iterations), which runs
    /// on a blocking thread so the runtime's other connections and timers keep going meanwhile.
    async fn respond(self, server_message: Bytes) -> std::result::Result<(Session, Option<Vec<u8>>), ScramError> {
        let Session::Scram(mut client) = self else { return Ok((Session::Plain, None)) };
        let step = tokio::task::spawn_blocking(move || client.respond(&server_message).map(|next| (client, next)));
        match step.await {
            Ok(result) => result.map(|(client, next)| (Session::Scram(client), next)),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Err(ScramError::Interrupted),
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
        ScramError::Interrupted => protocol_error(ScramError::Interrupted.to_string()),
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
        let (next_session, next) = session.respond(response.auth_bytes).await.map_err(scram_error)?;
        session = next_session;
        match next {
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    use super::*;
    use crate::driver::security::Secret;

    /// On a single-threaded runtime an inline PBKDF2 would leave no room for any other task
    /// until the client-final message is ready; a blocking thread does.
    #[tokio::test(flavor = "current_thread")]
    async fn scram_key_derivation_leaves_the_runtime_free() {
        let sasl = SaslConfig {
            mechanism: SaslMechanism::ScramSha512,
            username: "user".into(),
            password: Secret::new("pencil"),
        };
        let (session, first) = Session::start(&sasl).unwrap();
        let first = String::from_utf8(first).unwrap();
        let nonce = first.rsplit("r=").next().unwrap();
        let server_first = format!("r={nonce}server,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=16384");

        let ticks = Arc::new(AtomicU64::new(0));
        let ticker = tokio::spawn({
            let ticks = ticks.clone();
            async move {
                loop {
                    ticks.fetch_add(1, Ordering::Relaxed);
                    tokio::task::yield_now().await;
                }
            }
        });
        let before = ticks.load(Ordering::Relaxed);
        let (_, client_final) = session.respond(Bytes::from(server_first)).await.unwrap();
        let during = ticks.load(Ordering::Relaxed) - before;
        ticker.abort();
        assert!(client_final.is_some_and(|m| m.starts_with(b"c=biws,")));
        assert!(during > 0, "no other task ran while the key was derived");
    }
}
