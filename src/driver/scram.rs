//! The client side of SCRAM (RFC 5802) over SHA-256 (RFC 7677) and SHA-512 (Kafka's KIP-84),
//! without IO: feed it the server's messages, send what it returns.
//!
//! Channel binding is not used (GS2 header `n,,`), as in Kafka. The password is used as its
//! UTF-8 bytes without SASLprep, which is what Kafka's own `ScramFormatter` does, so both sides
//! derive the same salted password.

use std::num::NonZeroU32;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use ring::{digest, hmac, pbkdf2, rand::SecureRandom};

use super::security::Secret;

/// The hash a SCRAM variant is built on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScramHash {
    Sha256,
    Sha512,
}

impl ScramHash {
    fn pbkdf2(self) -> pbkdf2::Algorithm {
        match self {
            ScramHash::Sha256 => pbkdf2::PBKDF2_HMAC_SHA256,
            ScramHash::Sha512 => pbkdf2::PBKDF2_HMAC_SHA512,
        }
    }

    fn hmac(self) -> hmac::Algorithm {
        match self {
            ScramHash::Sha256 => hmac::HMAC_SHA256,
            ScramHash::Sha512 => hmac::HMAC_SHA512,
        }
    }

    fn digest(self) -> &'static digest::Algorithm {
        match self {
            ScramHash::Sha256 => &digest::SHA256,
            ScramHash::Sha512 => &digest::SHA512,
        }
    }
}

/// Why a SCRAM exchange failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ScramError {
    /// The server-final `v=` did not verify (RFC 5802 section 3: the client MUST check it).
    #[error("server signature mismatch")]
    SignatureMismatch,
    /// The server-final message carried `e=` (RFC 5802 section 7).
    #[error("server error: {0}")]
    Rejected(String),
    #[error("{0}")]
    Malformed(String),
    /// The runtime shut down while the key was being derived.
    #[error("the runtime shut down during SCRAM key derivation")]
    Interrupted,
}

/// RFC 7677 section 4 asks for at least 4096 iterations, and Kafka stores no credential with
/// fewer or with more than 16384 (`ScramMechanism`'s bounds, checked by
/// AlterUserScramCredentials, KIP-554). A server asking for more is not a Kafka broker and
/// would have us spin on PBKDF2.
const ITERATIONS: std::ops::RangeInclusive<u32> = 4096..=16384;

#[derive(Debug)]
enum State {
    AwaitingServerFirst { client_first_bare: String },
    AwaitingServerFinal { server_signature: hmac::Tag },
    Done,
}

/// One SCRAM authentication.
#[derive(Debug)]
pub(crate) struct ScramClient {
    hash: ScramHash,
    password: Secret,
    nonce: String,
    state: State,
}

impl ScramClient {
    /// Starts an exchange with a fresh random nonce; returns the client-first message.
    pub(crate) fn start(hash: ScramHash, username: &str, password: &Secret) -> Result<(Self, Vec<u8>), ScramError> {
        let mut bytes = [0u8; 24];
        ring::rand::SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| ScramError::Malformed("no randomness for the client nonce".into()))?;
        Ok(Self::start_with_nonce(hash, username, password, &BASE64.encode(bytes)))
    }

    /// As [`start`](Self::start) with a given nonce (printable, no commas), for test vectors.
    pub(crate) fn start_with_nonce(hash: ScramHash, username: &str, password: &Secret, nonce: &str) -> (Self, Vec<u8>) {
        // RFC 5802 section 5.1: `=` and `,` in the user name are escaped as =3D and =2C.
        let escaped = username.replace('=', "=3D").replace(',', "=2C");
        let client_first_bare = format!("n={escaped},r={nonce}");
        let message = format!("n,,{client_first_bare}").into_bytes();
        let client = ScramClient {
            hash,
            password: password.clone(),
            nonce: nonce.to_owned(),
            state: State::AwaitingServerFirst { client_first_bare },
        };
        (client, message)
    }

    /// Handles the server's next message: the client-final message to send after the
    /// server-first one, `None` once the server-final one verified.
    pub(crate) fn respond(&mut self, server_message: &[u8]) -> Result<Option<Vec<u8>>, ScramError> {
        let text = std::str::from_utf8(server_message)
            .map_err(|_| ScramError::Malformed("server message is not UTF-8".into()))?;
        match std::mem::replace(&mut self.state, State::Done) {
            State::AwaitingServerFirst { client_first_bare } => {
                let (client_final, server_signature) = self.client_final(&client_first_bare, text)?;
                self.state = State::AwaitingServerFinal { server_signature };
                Ok(Some(client_final.into_bytes()))
            }
            State::AwaitingServerFinal { server_signature } => {
                if let Some(error) = attribute(text, 'e') {
                    return Err(ScramError::Rejected(error.to_owned()));
                }
                let verifier = attribute(text, 'v')
                    .ok_or_else(|| ScramError::Malformed(format!("server-final without v=: {text:?}")))?;
                let claimed = BASE64
                    .decode(verifier)
                    .map_err(|_| ScramError::Malformed("server signature is not base64".into()))?;
                if !constant_time_eq(server_signature.as_ref(), &claimed) {
                    return Err(ScramError::SignatureMismatch);
                }
                Ok(None)
            }
            State::Done => Err(ScramError::Malformed("message after the exchange finished".into())),
        }
    }

    /// RFC 5802 section 3: derives the proof from the server-first message and returns the
    /// client-final message with the server signature to expect.
    fn client_final(&self, client_first_bare: &str, server_first: &str) -> Result<(String, hmac::Tag), ScramError> {
        if server_first.starts_with("m=") {
            return Err(ScramError::Malformed("server requires an unsupported extension (m=)".into()));
        }
        let nonce = attribute(server_first, 'r')
            .ok_or_else(|| ScramError::Malformed(format!("server-first without r=: {server_first:?}")))?;
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err(ScramError::Malformed("server nonce does not extend the client nonce".into()));
        }
        let salt = attribute(server_first, 's')
            .and_then(|s| BASE64.decode(s).ok())
            .ok_or_else(|| ScramError::Malformed("server-first without a base64 salt (s=)".into()))?;
        let iterations = attribute(server_first, 'i')
            .and_then(|i| i.parse::<u32>().ok())
            .filter(|i| ITERATIONS.contains(i))
            .and_then(NonZeroU32::new)
            .ok_or_else(|| ScramError::Malformed(format!("iteration count (i=) missing or outside {ITERATIONS:?}")))?;

        let mut salted = vec![0u8; self.hash.digest().output_len()];
        pbkdf2::derive(self.hash.pbkdf2(), iterations, &salt, self.password.expose().as_bytes(), &mut salted);
        let salted = hmac::Key::new(self.hash.hmac(), &salted);
        let client_key = hmac::sign(&salted, b"Client Key");
        let stored_key = digest::digest(self.hash.digest(), client_key.as_ref());
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let client_signature =
            hmac::sign(&hmac::Key::new(self.hash.hmac(), stored_key.as_ref()), auth_message.as_bytes());
        let proof: Vec<u8> = client_key.as_ref().iter().zip(client_signature.as_ref()).map(|(k, s)| k ^ s).collect();
        let server_key = hmac::sign(&salted, b"Server Key");
        let server_signature =
            hmac::sign(&hmac::Key::new(self.hash.hmac(), server_key.as_ref()), auth_message.as_bytes());
        Ok((format!("{without_proof},p={}", BASE64.encode(proof)), server_signature))
    }
}

/// The value of attribute `name` in a SCRAM message (`a=value,b=value`).
fn attribute(message: &str, name: char) -> Option<&str> {
    message.split(',').find_map(|part| part.strip_prefix(name)?.strip_prefix('='))
}

/// Compares without an early exit, so timing does not tell how much of a signature matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Vector {
        hash: ScramHash,
        server_first: &'static str,
        client_final: &'static str,
        server_final: &'static str,
    }

    /// RFC 7677 section 3.
    const SHA256: Vector = Vector {
        hash: ScramHash::Sha256,
        server_first: "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
        client_final: "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                       p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
        server_final: "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
    };

    /// The SHA-512 vector several SCRAM implementations share (Apache Qpid Proton's tests,
    /// the RFC 7677 exchange with a SHA-512 salt and server nonce).
    const SHA512: Vector = Vector {
        hash: ScramHash::Sha512,
        server_first: "r=rOprNGfwEbeRWgbNEkqO02431b08-2f89-4bad-a4e6-80c0564ec865,\
                       s=Yin2FuHTt/M0kJWb0t9OI32n2VmOGi3m+JfjOvuDF88=,i=4096",
        client_final: "c=biws,r=rOprNGfwEbeRWgbNEkqO02431b08-2f89-4bad-a4e6-80c0564ec865,\
                       p=Hc5yec3NmCD7t+kFRw4/3yD6/F3SQHc7AVYschRja+Bc3sbdjlA0eH1OjJc0DD4ghn1tnXN5/Wr6qm9xmaHt4A==",
        server_final: "v=BQuhnKHqYDwQWS5jAw4sZed+C9KFUALsbrq81bB0mh+bcUUbbMPNNmBIupnS2AmyyDnG5CTBQtkjJ9kyY4kzmw==",
    };

    fn client(v: &Vector) -> ScramClient {
        let (client, first) =
            ScramClient::start_with_nonce(v.hash, "user", &Secret::new("pencil"), "rOprNGfwEbeRWgbNEkqO");
        assert_eq!(first, b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        client
    }

    #[test]
    fn test_vectors_give_the_expected_proof_and_verify_the_server() {
        for v in [SHA256, SHA512] {
            let mut c = client(&v);
            let client_final = c.respond(v.server_first.as_bytes()).unwrap().unwrap();
            assert_eq!(String::from_utf8(client_final).unwrap(), v.client_final, "{:?}", v.hash);
            assert_eq!(c.respond(v.server_final.as_bytes()), Ok(None), "{:?}", v.hash);
        }
    }

    #[test]
    fn a_wrong_server_signature_is_refused() {
        for v in [SHA256, SHA512] {
            let mut c = client(&v);
            c.respond(v.server_first.as_bytes()).unwrap();
            // Same length, one character changed; then a signature of another length.
            let mut forged = v.server_final.to_owned();
            forged.replace_range(2..3, if &forged[2..3] == "A" { "B" } else { "A" });
            assert_eq!(c.respond(forged.as_bytes()), Err(ScramError::SignatureMismatch));
            let mut c = client(&v);
            c.respond(v.server_first.as_bytes()).unwrap();
            assert_eq!(c.respond(b"v=AAAA"), Err(ScramError::SignatureMismatch));
        }
    }

    #[test]
    fn server_errors_and_bad_messages_are_errors_not_panics() {
        let mut c = client(&SHA256);
        c.respond(SHA256.server_first.as_bytes()).unwrap();
        assert_eq!(c.respond(b"e=invalid-proof"), Err(ScramError::Rejected("invalid-proof".into())));
        for bad in [
            &b"r=someoneelse,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"[..],
            b"r=rOprNGfwEbeRWgbNEkqO,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            b"r=rOprNGfwEbeRWgbNEkqOxyz,s=!!!,i=4096",
            b"r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=1",
            b"r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=99999999999",
            b"r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=1000000000",
            b"r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=1000000",
            b"r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=16385",
            b"m=ext,r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            b"",
            b"\xff\xfe",
        ] {
            let mut c = client(&SHA256);
            assert!(matches!(c.respond(bad), Err(ScramError::Malformed(_))), "{bad:?}");
        }
    }

    #[test]
    fn kafkas_largest_iteration_count_is_accepted() {
        let mut c = client(&SHA512);
        let client_final = c.respond(b"r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=16384").unwrap();
        assert!(client_final.is_some());
    }

    #[test]
    fn user_names_are_escaped() {
        let (_, first) = ScramClient::start_with_nonce(ScramHash::Sha256, "a=b,c", &Secret::new("p"), "n0nce");
        assert_eq!(first, b"n,,n=a=3Db=2Cc,r=n0nce");
        let (c, _) = ScramClient::start(ScramHash::Sha512, "u", &Secret::new("p")).unwrap();
        assert_eq!(c.nonce.len(), 32, "24 random bytes in base64");
    }
}
