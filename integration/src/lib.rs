//! Shared set-up for real-broker tests: a broker per test (the embedded nisshi, Apache Kafka 3.6
//! started from Maven jars, or the cluster named by `KGROUP_BOOTSTRAP`), unique names, and log
//! capture.

pub mod java_member;
pub mod mock;
pub mod pki;
pub mod recording_member;
pub mod transaction;

use std::io::Write;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kgroup::embedded::kafka36::{Kafka36Cluster, Kafka36Options};
use kgroup::embedded::{BrokerOptions, BrokerTls, EmbeddedBroker, ScramUser};
use kgroup::{Cluster, ClusterConfig, SaslMechanism};

/// The broker a test talks to. An embedded broker is killed when this drops, also when the
/// test panics.
pub struct TestBroker {
    bootstrap: String,
    embedded: Option<EmbeddedBroker>,
    kafka36: Option<Kafka36Cluster>,
}

impl TestBroker {
    /// `KGROUP_BOOTSTRAP` when set, otherwise a fresh embedded nisshi on 127.0.0.1.
    pub async fn start() -> TestBroker {
        Self::start_with(BrokerOptions { initial_rebalance_delay: Duration::from_millis(0), ..Default::default() })
            .await
    }

    pub async fn start_with(options: BrokerOptions) -> TestBroker {
        if let Some(bootstrap) = external_bootstrap() {
            return TestBroker { bootstrap, embedded: None, kafka36: None };
        }
        Self::start_embedded(options).await
    }

    /// Always an embedded broker, for tests that must kill and restart it.
    pub async fn start_embedded(options: BrokerOptions) -> TestBroker {
        let broker = EmbeddedBroker::start(options).await.unwrap_or_else(|e| panic!("embedded broker: {e}"));
        TestBroker { bootstrap: broker.bootstrap(), embedded: Some(broker), kafka36: None }
    }

    /// An embedded nisshi that requires SCRAM-SHA-512 from one user (no rebalance delay),
    /// serving TLS with `tls` when given.
    pub async fn start_scram_512(tls: Option<BrokerTls>, user: &str, password: &str) -> TestBroker {
        let user = ScramUser { name: user.into(), password: password.into(), mechanism: SaslMechanism::ScramSha512 };
        let options = BrokerOptions {
            initial_rebalance_delay: Duration::ZERO,
            tls,
            scram_users: vec![user],
            ..Default::default()
        };
        Self::start_embedded(options).await
    }

    /// Always Apache Kafka 3.6 from its Maven jars (see `kgroup::embedded::kafka36`), stopped
    /// on drop; its logs are printed when the test fails.
    pub async fn start_kafka36(options: Kafka36Options) -> TestBroker {
        let cluster = Kafka36Cluster::start(options).await.unwrap_or_else(|e| panic!("Kafka 3.6: {e}"));
        TestBroker { bootstrap: cluster.bootstrap(), embedded: None, kafka36: Some(cluster) }
    }

    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    pub fn embedded(&mut self) -> Option<&mut EmbeddedBroker> {
        self.embedded.as_mut()
    }

    pub fn kafka36(&mut self) -> Option<&mut Kafka36Cluster> {
        self.kafka36.as_mut()
    }

    pub async fn cluster(&self) -> Cluster {
        let config = ClusterConfig::from_bootstrap_servers(&self.bootstrap).expect("bootstrap servers");
        Cluster::connect(config).await.expect("connect to test broker")
    }
}

/// The external cluster named by `KGROUP_BOOTSTRAP`, if any.
pub fn external_bootstrap() -> Option<String> {
    std::env::var("KGROUP_BOOTSTRAP").ok().filter(|s| !s.trim().is_empty())
}

/// A name no other test (or earlier run against the same external cluster) uses.
pub fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("{prefix}-{}-{nanos}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Logs to the test output (`RUST_LOG` filters; default warn).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_test_writer()
        .try_init();
}

/// What a test's log subscriber wrote (`with_writer(move || log.clone())`), to check log lines.
#[derive(Clone, Default)]
pub struct CapturedLog(Arc<Mutex<Vec<u8>>>);

impl Write for CapturedLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl CapturedLog {
    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }
}
