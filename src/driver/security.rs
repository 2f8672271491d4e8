//! TLS and SASL settings: `security.protocol` and the `ssl.*` / `sasl.*` properties.
//!
//! Everything that can be checked is checked when the configuration is built (files are read,
//! certificates parsed, combinations validated), so a bad setting is a [`ConfigError`] naming
//! its key before any connection is tried. Credentials live in [`Secret`], whose `Debug`
//! redacts them, so no configuration, log line or snapshot shows a password.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::jaas::LoginModule;
use crate::error::ConfigError;

/// A credential. `Debug` prints `Secret(<redacted>)`; read it with [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a credential.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret::new(value)
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

/// The SASL mechanisms kgroup implements (`sasl.mechanism`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SaslMechanism {
    /// RFC 4616: the password in clear, so only sensible over TLS.
    Plain,
    /// RFC 7677 (SCRAM, RFC 5802, over SHA-256).
    ScramSha256,
    /// SCRAM over SHA-512, as Kafka names it (KIP-84).
    ScramSha512,
}

impl SaslMechanism {
    /// The IANA name, as SaslHandshake carries it.
    pub fn name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }

    /// Parses a mechanism name (case-insensitive, as librdkafka does).
    pub fn parse(name: &str) -> Option<Self> {
        [SaslMechanism::Plain, SaslMechanism::ScramSha256, SaslMechanism::ScramSha512]
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(name))
    }
}

/// SASL credentials and mechanism.
#[derive(Debug, Clone)]
pub struct SaslConfig {
    /// `sasl.mechanism`.
    pub mechanism: SaslMechanism,
    /// `sasl.username`.
    pub username: String,
    /// `sasl.password`.
    pub password: Secret,
}

/// Where the CA certificates that verify brokers come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaSource {
    /// The operating system's trust store (librdkafka's `ssl.ca.location=probe`).
    System,
    /// A PEM bundle (`ssl.ca.location`).
    File(PathBuf),
}

/// What a [`TlsConfig`] is built from.
#[derive(Debug, Clone)]
pub struct TlsOptions {
    /// `ssl.ca.location`: the CAs that verify brokers.
    pub ca: CaSource,
    /// `ssl.certificate.location` and `ssl.key.location`: a client certificate chain and its
    /// private key (PEM) for brokers that require mutual TLS.
    pub client_identity: Option<(PathBuf, PathBuf)>,
    /// Whether the broker certificate must name the host we dialled (default true).
    /// `ssl.endpoint.identification.algorithm=none` turns it off; the chain is still verified.
    pub verify_hostname: bool,
}

impl Default for TlsOptions {
    fn default() -> Self {
        TlsOptions { ca: CaSource::System, client_identity: None, verify_hostname: true }
    }
}

/// A ready TLS client configuration (rustls with the `ring` provider: no OpenSSL).
#[derive(Clone)]
pub struct TlsConfig {
    options: TlsOptions,
    client: Arc<rustls::ClientConfig>,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig").field("options", &self.options).finish_non_exhaustive()
    }
}

impl TlsConfig {
    /// Reads the CA bundle and the client identity and builds the rustls configuration; an
    /// unreadable or empty file is an error naming its property.
    pub fn new(options: TlsOptions) -> Result<Self, ConfigError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = Arc::new(root_store(&options.ca)?);
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid("security.protocol", "SSL", &e.to_string()))?;
        let builder = if options.verify_hostname {
            builder.with_root_certificates(roots)
        } else {
            tracing::warn!(
                "ssl.endpoint.identification.algorithm=none: broker host names are NOT verified; \
                 any server holding a certificate from a trusted CA can impersonate a broker"
            );
            let verifier = WebPkiServerVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|e| invalid("ssl.ca.location", &ca_name(&options.ca), &e.to_string()))?;
            builder.dangerous().with_custom_certificate_verifier(Arc::new(ChainOnlyVerifier(verifier)))
        };
        let client = match &options.client_identity {
            None => builder.with_no_client_auth(),
            Some((cert_path, key_path)) => {
                let chain = read_certificates("ssl.certificate.location", cert_path)?;
                let key = PrivateKeyDer::from_pem_file(key_path)
                    .map_err(|e| invalid("ssl.key.location", &key_path.display().to_string(), &e.to_string()))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| invalid("ssl.key.location", &key_path.display().to_string(), &e.to_string()))?
            }
        };
        Ok(TlsConfig { options, client: Arc::new(client) })
    }

    /// The options it was built from.
    pub fn options(&self) -> &TlsOptions {
        &self.options
    }

    pub(crate) fn client_config(&self) -> Arc<rustls::ClientConfig> {
        self.client.clone()
    }
}

fn ca_name(ca: &CaSource) -> String {
    match ca {
        CaSource::System => "(system trust store)".into(),
        CaSource::File(path) => path.display().to_string(),
    }
}

fn root_store(ca: &CaSource) -> Result<RootCertStore, ConfigError> {
    let mut roots = RootCertStore::empty();
    match ca {
        CaSource::File(path) => {
            for cert in read_certificates("ssl.ca.location", path)? {
                roots.add(cert).map_err(|e| invalid("ssl.ca.location", &path.display().to_string(), &e.to_string()))?;
            }
        }
        CaSource::System => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(invalid(
                    "ssl.ca.location",
                    "(system trust store)",
                    "no CA certificate found in the system trust store; set ssl.ca.location",
                ));
            }
        }
    }
    Ok(roots)
}

/// Every certificate of a PEM file; an unreadable file or one without certificates is an error.
fn read_certificates(key: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let shown = path.display().to_string();
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| invalid(key, &shown, &format!("cannot read PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(invalid(key, &shown, "no PEM certificate in the file"));
    }
    Ok(certs)
}

/// Verifies the chain up to a trusted CA but accepts any host name: the explicit opt-out
/// `ssl.endpoint.identification.algorithm=none`. rustls checks the chain before the name, so
/// a name error means the chain was fine.
#[derive(Debug)]
struct ChainOnlyVerifier(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnlyVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// How a client talks to brokers: TLS or not, SASL or not (the four `security.protocol`s).
#[derive(Debug, Clone, Default)]
pub struct SecurityConfig {
    /// `Some` for `SSL` and `SASL_SSL`.
    pub tls: Option<TlsConfig>,
    /// `Some` for `SASL_PLAINTEXT` and `SASL_SSL`.
    pub sasl: Option<SaslConfig>,
}

/// The property keys [`SecurityConfig::from_properties`] understands.
pub const SECURITY_KEYS: &[&str] = &[
    "security.protocol",
    "sasl.mechanism",
    "sasl.mechanisms",
    "sasl.username",
    "sasl.password",
    "sasl.jaas.config",
    "ssl.ca.location",
    "ssl.certificate.location",
    "ssl.key.location",
    "ssl.endpoint.identification.algorithm",
];

impl SecurityConfig {
    /// The `security.protocol` this configuration stands for.
    pub fn protocol_name(&self) -> &'static str {
        match (&self.tls, &self.sasl) {
            (None, None) => "PLAINTEXT",
            (Some(_), None) => "SSL",
            (None, Some(_)) => "SASL_PLAINTEXT",
            (Some(_), Some(_)) => "SASL_SSL",
        }
    }

    /// Builds the security settings from librdkafka-style properties (only the keys of
    /// [`SECURITY_KEYS`]). Settings that the chosen `security.protocol` would ignore are
    /// errors, so a forgotten `security.protocol=SASL_SSL` cannot silently send in clear.
    pub fn from_properties<K: AsRef<str>, V: AsRef<str>>(
        properties: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, ConfigError> {
        let mut values: Vec<(&'static str, String)> = Vec::new();
        for (key, value) in properties {
            let key = key.as_ref().trim();
            let key = SECURITY_KEYS.iter().copied().find(|k| *k == key).ok_or_else(|| ConfigError::UnknownKey {
                key: key.to_owned(),
                suggestion: crate::properties::nearest_key(key, SECURITY_KEYS.iter().copied()),
            })?;
            values.retain(|(k, _)| *k != key);
            values.push((key, value.as_ref().trim().to_owned()));
        }
        let get = |key: &str| values.iter().find(|(k, _)| *k == key).map(|(k, v)| (*k, v.as_str()));
        let (tls, sasl) = match get("security.protocol") {
            None => (false, false),
            Some((key, value)) => match value.to_ascii_uppercase().as_str() {
                "PLAINTEXT" => (false, false),
                "SSL" => (true, false),
                "SASL_PLAINTEXT" => (false, true),
                "SASL_SSL" => (true, true),
                _ => return Err(invalid(key, value, "expected PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL")),
            },
        };
        let ignored = |prefix: &str| values.iter().find(|(k, _)| k.starts_with(prefix)).map(|(k, v)| (*k, v));
        if let (false, Some((key, value))) = (sasl, ignored("sasl.")) {
            let value = if SECRET_KEYS.contains(&key) { REDACTED } else { value };
            return Err(invalid(key, value, "set, but security.protocol is not SASL_PLAINTEXT or SASL_SSL"));
        }
        if let (false, Some((key, value))) = (tls, ignored("ssl.")) {
            return Err(invalid(key, value, "set, but security.protocol is not SSL or SASL_SSL"));
        }
        let sasl = sasl.then(|| sasl_from(&get)).transpose()?;
        let tls = tls.then(|| TlsConfig::new(tls_options_from(&get)?)).transpose()?;
        Ok(SecurityConfig { tls, sasl })
    }
}

type Lookup<'a> = dyn Fn(&str) -> Option<(&'static str, &'a str)> + 'a;

fn sasl_from(get: &Lookup<'_>) -> Result<SaslConfig, ConfigError> {
    let (key, name) = get("sasl.mechanism")
        .or_else(|| get("sasl.mechanisms"))
        .ok_or(ConfigError::Missing { key: "sasl.mechanism" })?;
    let mechanism = SaslMechanism::parse(name)
        .ok_or_else(|| invalid(key, name, "unsupported mechanism: expected PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"))?;
    if let Some((key, text)) = get("sasl.jaas.config") {
        return sasl_from_jaas(mechanism, key, text, get);
    }
    let (_, username) = get("sasl.username").ok_or(ConfigError::Missing { key: "sasl.username" })?;
    let (_, password) = get("sasl.password").ok_or(ConfigError::Missing { key: "sasl.password" })?;
    if username.is_empty() {
        return Err(ConfigError::Missing { key: "sasl.username" });
    }
    Ok(SaslConfig { mechanism, username: username.to_owned(), password: Secret::new(password) })
}

/// The credentials of a Java client's `sasl.jaas.config`, whose login module must be the one of
/// `sasl.mechanism` (Kafka's `PlainLoginModule` for PLAIN, `ScramLoginModule` for SCRAM).
fn sasl_from_jaas(
    mechanism: SaslMechanism,
    key: &'static str,
    text: &str,
    get: &Lookup<'_>,
) -> Result<SaslConfig, ConfigError> {
    if let Some((other, _)) = get("sasl.username").or_else(|| get("sasl.password")) {
        return Err(invalid(other, REDACTED, "set together with sasl.jaas.config: give the credentials once"));
    }
    let login = super::jaas::parse(text).map_err(|reason| invalid(key, REDACTED, &reason))?;
    let expected = match mechanism {
        SaslMechanism::Plain => LoginModule::Plain,
        SaslMechanism::ScramSha256 | SaslMechanism::ScramSha512 => LoginModule::Scram,
    };
    if login.module != expected {
        let reason = format!("its {:?} login module does not match sasl.mechanism={}", login.module, mechanism.name());
        return Err(invalid(key, REDACTED, &reason));
    }
    Ok(SaslConfig { mechanism, username: login.username, password: login.password })
}

/// Keys whose values errors never show.
const SECRET_KEYS: &[&str] = &["sasl.password", "sasl.jaas.config"];
const REDACTED: &str = "<redacted>";

fn tls_options_from(get: &Lookup<'_>) -> Result<TlsOptions, ConfigError> {
    let ca = match get("ssl.ca.location") {
        None | Some((_, "probe")) => CaSource::System,
        Some((_, path)) => CaSource::File(PathBuf::from(path)),
    };
    let client_identity = match (get("ssl.certificate.location"), get("ssl.key.location")) {
        (None, None) => None,
        (Some((_, cert)), Some((_, key))) => Some((PathBuf::from(cert), PathBuf::from(key))),
        (Some(_), None) => return Err(ConfigError::Missing { key: "ssl.key.location" }),
        (None, Some(_)) => return Err(ConfigError::Missing { key: "ssl.certificate.location" }),
    };
    let verify_hostname = match get("ssl.endpoint.identification.algorithm") {
        None => true,
        Some((key, value)) => match value.to_ascii_lowercase().as_str() {
            "https" => true,
            "none" | "" => false,
            _ => return Err(invalid(key, value, "expected https or none")),
        },
    };
    Ok(TlsOptions { ca, client_identity, verify_hostname })
}

fn invalid(key: &'static str, value: &str, reason: &str) -> ConfigError {
    ConfigError::InvalidValue { key, value: value.to_owned(), reason: reason.to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(props: &[(&str, &str)]) -> Result<SecurityConfig, ConfigError> {
        SecurityConfig::from_properties(props.iter().copied())
    }

    fn key_of(err: ConfigError) -> &'static str {
        match err {
            ConfigError::InvalidValue { key, .. } | ConfigError::Missing { key } => key,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn sasl_settings_are_parsed_and_the_password_never_shows_in_debug() {
        let c = build(&[
            ("security.protocol", "sasl_plaintext"),
            ("sasl.mechanisms", "scram-sha-512"),
            ("sasl.username", "alice"),
            ("sasl.password", "hunter2-very-secret"),
        ])
        .unwrap();
        assert_eq!(c.protocol_name(), "SASL_PLAINTEXT");
        let sasl = c.sasl.as_ref().unwrap();
        assert_eq!(sasl.mechanism, SaslMechanism::ScramSha512);
        assert_eq!(sasl.password.expose(), "hunter2-very-secret");
        let shown = format!("{c:?} {c:#?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("alice") && shown.contains("redacted"), "{shown}");
    }

    #[test]
    fn bad_combinations_name_the_key() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("security.protocol", "SASL_SSL")], "sasl.mechanism"),
            (&[("security.protocol", "SASL_PLAINTEXT"), ("sasl.mechanism", "GSSAPI")], "sasl.mechanism"),
            (&[("security.protocol", "SASL_PLAINTEXT"), ("sasl.mechanism", "PLAIN")], "sasl.username"),
            (
                &[("security.protocol", "SASL_PLAINTEXT"), ("sasl.mechanism", "PLAIN"), ("sasl.username", "u")],
                "sasl.password",
            ),
            (&[("sasl.mechanism", "PLAIN")], "sasl.mechanism"),
            (&[("security.protocol", "SASL_PLAINTEXT"), ("ssl.ca.location", "/x")], "ssl.ca.location"),
            (&[("ssl.ca.location", "/x")], "ssl.ca.location"),
            (&[("security.protocol", "TLS")], "security.protocol"),
            (&[("security.protocol", "SSL"), ("ssl.ca.location", "/nonexistent/ca.pem")], "ssl.ca.location"),
            (&[("security.protocol", "SSL"), ("ssl.certificate.location", "/x.pem")], "ssl.key.location"),
            (
                &[("security.protocol", "SSL"), ("ssl.endpoint.identification.algorithm", "dns")],
                "ssl.endpoint.identification.algorithm",
            ),
        ];
        for (props, key) in cases {
            let err = build(props).expect_err(&format!("{props:?} must fail"));
            assert!(err.to_string().contains(key), "{props:?}: {err}");
            assert_eq!(key_of(err), *key, "{props:?}");
        }
    }

    const JAAS_SCRAM: &str =
        r#"org.apache.kafka.common.security.scram.ScramLoginModule required username="alice" password="hunter2-jaas";"#;

    #[test]
    fn a_java_jaas_entry_gives_the_credentials() {
        let c = build(&[
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.jaas.config", JAAS_SCRAM),
        ])
        .unwrap();
        let sasl = c.sasl.as_ref().unwrap();
        assert_eq!((sasl.mechanism, sasl.username.as_str()), (SaslMechanism::ScramSha512, "alice"));
        assert_eq!(sasl.password.expose(), "hunter2-jaas");
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn errors_about_credentials_never_show_them() {
        let sasl = [("security.protocol", "SASL_PLAINTEXT")];
        // Extra properties, the property the error names, and the one it asks for.
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
        let cases: &[Case<'_>] = &[
            (&[("sasl.jaas.config", JAAS_SCRAM)], "sasl.jaas.config", "security.protocol"),
            (&[("sasl.password", "hunter2-jaas")], "sasl.password", "security.protocol"),
            (
                &[sasl[0], ("sasl.mechanism", "PLAIN"), ("sasl.jaas.config", JAAS_SCRAM)],
                "sasl.jaas.config",
                "does not match sasl.mechanism=PLAIN",
            ),
            (
                &[
                    sasl[0],
                    ("sasl.mechanism", "SCRAM-SHA-256"),
                    ("sasl.jaas.config", JAAS_SCRAM),
                    ("sasl.username", "bob"),
                ],
                "sasl.username",
                "give the credentials once",
            ),
            (
                &[
                    sasl[0],
                    ("sasl.mechanism", "SCRAM-SHA-256"),
                    ("sasl.jaas.config", "ScramLoginModule required username=alice password=\"hunter2-jaas"),
                ],
                "sasl.jaas.config",
                "unclosed quote",
            ),
        ];
        for (props, key, reason) in cases {
            let err = build(props).expect_err(&format!("{props:?} must fail"));
            let shown = err.to_string();
            assert_eq!(key_of(err), *key, "{props:?}");
            assert!(shown.contains(reason), "{props:?}: {shown}");
            assert!(!shown.contains("hunter2"), "{props:?}: {shown}");
        }
    }

    #[test]
    fn an_unknown_key_suggests_the_nearest_security_key() {
        for (key, suggestion) in [("sasl.kerberos.principal", None), ("sasl.usename", Some("sasl.username"))] {
            let err = build(&[(key, "x")]).unwrap_err();
            assert_eq!(err, ConfigError::UnknownKey { key: key.to_owned(), suggestion });
        }
    }

    #[test]
    fn an_empty_ca_file_is_rejected() {
        let path = std::env::temp_dir().join(format!("kgroup-empty-ca-{}.pem", std::process::id()));
        std::fs::write(&path, "not a certificate\n").unwrap();
        let err = build(&[("security.protocol", "SSL"), ("ssl.ca.location", path.to_str().unwrap())]).unwrap_err();
        let _ = std::fs::remove_file(&path);
        assert_eq!(key_of(err), "ssl.ca.location");
    }

    #[test]
    fn plaintext_is_the_default() {
        let c = build(&[]).unwrap();
        assert_eq!(c.protocol_name(), "PLAINTEXT");
        assert!(c.tls.is_none() && c.sasl.is_none());
    }
}
