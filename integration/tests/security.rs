//! TLS and SASL end to end (issue 8).
//!
//! Against nisshi (embedded, 127.0.0.1): a consumer group joins, consumes and commits over TLS,
//! over SASL/SCRAM-SHA-256 and -512, and over SASL_SSL; a wrong password, a mechanism the broker
//! does not offer (PLAIN: nisshi only has SCRAM), an untrusted certificate and a host name
//! mismatch each fail fast with their own [`SecurityError`], through a counting proxy that shows
//! the client does not retry them. Against a scripted SASL peer (nisshi has no PLAIN, and no
//! session lifetime): PLAIN, its wrong password, and KIP-368 re-authentication on one
//! connection. Certificates are made by the test with rcgen (`kgroup_integration::pki`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader, SaslAuthenticateRequest,
    SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kgroup::driver::connection::{Connection, ConnectionConfig};
use kgroup::embedded::{BrokerOptions, BrokerTls, ScramUser};
use kgroup::producer::{Producer, ProducerConfig, ProducerRecord};
use kgroup::{
    Cluster, ClusterConfig, ConsumerConfig, Error, GroupConsumer, NetworkError, SaslMechanism, SecurityConfig,
    SecurityError,
};
use kgroup_integration::pki::Pki;
use kgroup_integration::{init_tracing, unique_name, TestBroker};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::{timeout, Instant};

// ---- brokers ----

const SCRAM_256: (&str, &str) = ("alice", "alice-secret-256");
const SCRAM_512: (&str, &str) = ("bob", "bob-secret-512");

fn users() -> Vec<ScramUser> {
    vec![
        ScramUser { name: SCRAM_256.0.into(), password: SCRAM_256.1.into(), mechanism: SaslMechanism::ScramSha256 },
        ScramUser { name: SCRAM_512.0.into(), password: SCRAM_512.1.into(), mechanism: SaslMechanism::ScramSha512 },
    ]
}

async fn nisshi(tls: Option<BrokerTls>, scram_users: Vec<ScramUser>) -> TestBroker {
    init_tracing();
    TestBroker::start_embedded(BrokerOptions {
        initial_rebalance_delay: Duration::ZERO,
        tls,
        scram_users,
        ..Default::default()
    })
    .await
}

fn sasl(mechanism: &str, (user, password): (&str, &str)) -> Vec<(String, String)> {
    vec![
        ("sasl.mechanism".into(), mechanism.into()),
        ("sasl.username".into(), user.into()),
        ("sasl.password".into(), password.into()),
    ]
}

fn tls(pki: &Pki, ca: &str) -> Vec<(String, String)> {
    vec![
        ("ssl.ca.location".into(), pki.path_str(&format!("{ca}.pem"))),
        ("ssl.certificate.location".into(), pki.path_str("client.pem")),
        ("ssl.key.location".into(), pki.path_str("client.key")),
    ]
}

fn with_protocol(protocol: &str, parts: &[Vec<(String, String)>]) -> Vec<(String, String)> {
    let mut all = vec![("security.protocol".to_owned(), protocol.to_owned())];
    all.extend(parts.iter().flatten().cloned());
    all
}

fn consumer_config(bootstrap: &str, group: &str, security: &[(String, String)]) -> ConsumerConfig {
    let mut properties: Vec<(String, String)> = [
        ("bootstrap.servers", bootstrap),
        ("group.id", group),
        ("auto.offset.reset", "earliest"),
        ("enable.auto.commit", "false"),
        ("session.timeout.ms", "10000"),
        ("heartbeat.interval.ms", "300"),
        ("fetch.max.wait.ms", "100"),
        ("request.timeout.ms", "5000"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    properties.extend_from_slice(security);
    ConsumerConfig::from_properties(properties).expect("valid configuration")
}

/// Creates a topic, produces to it, and has a consumer group join, consume everything and
/// commit it, all over `security`.
async fn group_round_trip(bootstrap: &str, security: &[(String, String)]) {
    const PARTITIONS: i32 = 2;
    const RECORDS: usize = 20;
    timeout(Duration::from_secs(60), async {
        let mut properties = vec![("bootstrap.servers".to_owned(), bootstrap.to_owned())];
        properties.extend_from_slice(security);
        let cluster = Cluster::connect(ClusterConfig::from_properties(properties).expect("cluster config"))
            .await
            .expect("connect");
        let topic = unique_name("secure");
        cluster.create_topic(&topic, PARTITIONS, 1).await.expect("create topic");
        let producer = Producer::new(cluster.clone(), ProducerConfig::default()).expect("producer");
        let deliveries: Vec<_> = (0..RECORDS)
            .map(|i| producer.send(ProducerRecord::new(&topic, Some(format!("k{i}")), Bytes::from(format!("v{i}")))))
            .collect();
        producer.flush().await;
        for delivery in deliveries {
            delivery.await.expect("delivered");
        }
        producer.close().await;

        let group = unique_name("secure-group");
        let mut consumer =
            GroupConsumer::subscribe(consumer_config(bootstrap, &group, security), &[&topic]).await.expect("subscribe");
        let mut seen = 0;
        while seen < RECORDS {
            let Some(batch) = consumer.poll(100, Duration::from_secs(5)).await.expect("poll") else { continue };
            seen += batch.records.len();
            let results = consumer.commit(&batch).await.expect("commit");
            assert!(
                results.iter().all(|r| matches!(r.outcome, kgroup::group::CommitOutcome::Committed { .. })),
                "{results:?}"
            );
        }
        assert_eq!(seen, RECORDS);
        let partitions = (0..PARTITIONS).map(|p| kgroup::group::TopicPartition::new(&topic, p)).collect();
        let committed: i64 =
            consumer.committed(partitions).await.expect("committed").iter().filter_map(|(_, o)| *o).sum();
        assert_eq!(committed, RECORDS as i64, "every record committed");
        consumer.close().await.expect("close");
    })
    .await
    .expect("round trip in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_consumes_and_commits_over_tls() {
    let pki = Pki::new();
    let broker = nisshi(Some(pki.broker_tls("server")), Vec::new()).await;
    group_round_trip(broker.bootstrap(), &with_protocol("SSL", &[tls(&pki, "ca")])).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_consumes_and_commits_over_sasl_scram_256_and_512() {
    let broker = nisshi(None, users()).await;
    for (mechanism, user) in [("SCRAM-SHA-256", SCRAM_256), ("SCRAM-SHA-512", SCRAM_512)] {
        group_round_trip(broker.bootstrap(), &with_protocol("SASL_PLAINTEXT", &[sasl(mechanism, user)])).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_consumes_and_commits_over_sasl_ssl() {
    let pki = Pki::new();
    let broker = nisshi(Some(pki.broker_tls("server")), users()).await;
    let security = with_protocol("SASL_SSL", &[tls(&pki, "ca"), sasl("SCRAM-SHA-512", SCRAM_512)]);
    group_round_trip(broker.bootstrap(), &security).await;
}

// ---- failures: specific, fatal, not retried ----

/// A TCP forwarder to `target` that counts the connections it accepts.
struct CountingProxy {
    addr: String,
    accepted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl CountingProxy {
    async fn start(target: String) -> CountingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let target = target.clone();
                tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        CountingProxy { addr, accepted, task }
    }
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Subscribing fails within a few seconds with a security error, after at most 3 connections.
async fn fails_fast(broker: &TestBroker, security: &[(String, String)]) -> SecurityError {
    let proxy = CountingProxy::start(broker.bootstrap().to_owned()).await;
    let started = Instant::now();
    let config = consumer_config(&proxy.addr, &unique_name("refused"), security);
    let result = timeout(Duration::from_secs(10), GroupConsumer::subscribe(config, &["any-topic"]))
        .await
        .expect("the failure is reported, not retried for ever");
    let error = match result {
        Ok(_) => panic!("subscribing must fail"),
        Err(e) => e,
    };
    // Observe a little longer: nothing keeps reconnecting behind the error.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let attempts = proxy.accepted.load(Ordering::SeqCst);
    assert!(attempts <= 3, "{attempts} connection attempts for {error}");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}: {error}", started.elapsed());
    assert_eq!(error.action(), kgroup::protocol::error_code::ErrorAction::Fatal, "{error}");
    match error {
        Error::Security(e) => e,
        other => panic!("expected a security error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_or_a_mechanism_the_broker_lacks_fails_fast_and_says_why() {
    let broker = nisshi(None, users()).await;
    let wrong = with_protocol("SASL_PLAINTEXT", &[sasl("SCRAM-SHA-256", (SCRAM_256.0, "not-the-password"))]);
    let error = fails_fast(&broker, &wrong).await;
    assert!(matches!(error, SecurityError::AuthenticationFailed { mechanism: "SCRAM-SHA-256", .. }), "{error:?}");
    assert!(error.to_string().contains("sasl.password"), "{error}");
    assert!(!format!("{error:?}{error}").contains("not-the-password"));

    let plain = with_protocol("SASL_PLAINTEXT", &[sasl("PLAIN", SCRAM_256)]);
    let error = fails_fast(&broker, &plain).await;
    match &error {
        SecurityError::MechanismNotEnabled { mechanism: "PLAIN", enabled, .. } => {
            assert!(enabled.iter().any(|m| m == "SCRAM-SHA-256"), "{enabled:?}")
        }
        other => panic!("expected MechanismNotEnabled, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_and_a_host_name_mismatch_fail_fast_and_say_why() {
    let pki = Pki::new();
    let broker = nisshi(Some(pki.broker_tls("server")), Vec::new()).await;
    let error = fails_fast(&broker, &with_protocol("SSL", &[tls(&pki, "other-ca")])).await;
    assert!(matches!(error, SecurityError::UntrustedCertificate { .. }), "{error:?}");
    assert!(error.to_string().contains("ssl.ca.location"), "{error}");
    drop(broker);

    let broker = nisshi(Some(pki.broker_tls("wrong-host")), Vec::new()).await;
    let error = fails_fast(&broker, &with_protocol("SSL", &[tls(&pki, "ca")])).await;
    assert!(matches!(&error, SecurityError::HostnameMismatch { host, .. } if host == "127.0.0.1"), "{error:?}");

    // The explicit opt-out accepts the same certificate (its chain is still verified).
    let mut opt_out = with_protocol("SSL", &[tls(&pki, "ca")]);
    opt_out.push(("ssl.endpoint.identification.algorithm".into(), "none".into()));
    let properties = [("bootstrap.servers".to_owned(), broker.bootstrap().to_owned())].into_iter().chain(opt_out);
    let cluster = ClusterConfig::from_properties(properties).unwrap();
    timeout(Duration::from_secs(10), Cluster::connect(cluster)).await.unwrap().expect("no host name check");
}

// ---- a scripted SASL peer: PLAIN and KIP-368 re-authentication ----

/// What the scripted peer saw.
#[derive(Debug, Default)]
struct PeerLog {
    connections: usize,
    handshakes: usize,
    authenticated: usize,
    /// Protocol rules the client broke (a request between handshake and authenticate, a
    /// request on an expired session).
    violations: Vec<String>,
    requests: usize,
}

/// A broker that knows ApiVersions, SaslHandshake (PLAIN only) and SaslAuthenticate, and
/// gives every session `lifetime`.
struct SaslPeer {
    addr: String,
    log: Arc<Mutex<PeerLog>>,
    task: JoinHandle<()>,
}

impl Drop for SaslPeer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const PEER_USER: &str = "plain-user";
const PEER_PASSWORD: &str = "plain-password";

impl SaslPeer {
    async fn start(lifetime: Duration) -> SaslPeer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let log = Arc::new(Mutex::new(PeerLog::default()));
        let shared = log.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                shared.lock().unwrap().connections += 1;
                tokio::spawn(serve(stream, shared.clone(), lifetime));
            }
        });
        SaslPeer { addr, log, task }
    }
}

async fn read_frame(stream: &mut TcpStream) -> Option<Bytes> {
    let size = stream.read_i32().await.ok()?;
    let mut frame = vec![0u8; usize::try_from(size).ok()?];
    stream.read_exact(&mut frame).await.ok()?;
    Some(Bytes::from(frame))
}

async fn reply<R: Encodable>(stream: &mut TcpStream, api: ApiKey, version: i16, correlation_id: i32, body: &R) {
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    let header_version = if api == ApiKey::ApiVersions { 0 } else { api.response_header_version(version) };
    ResponseHeader::default().with_correlation_id(correlation_id).encode(&mut buf, header_version).unwrap();
    body.encode(&mut buf, version).unwrap();
    let size = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    let _ = stream.write_all(&buf).await;
}

/// Serves one connection, one request at a time, as Kafka does.
async fn serve(mut stream: TcpStream, log: Arc<Mutex<PeerLog>>, lifetime: Duration) {
    let mut expires: Option<Instant> = None;
    let mut handshaken = false;
    while let Some(mut frame) = read_frame(&mut stream).await {
        let api = ApiKey::try_from(frame.clone().get_i16()).unwrap();
        let version = frame.clone().slice(2..).get_i16();
        let header = RequestHeader::decode(&mut frame, api.request_header_version(version)).unwrap();
        let id = header.correlation_id;
        log.lock().unwrap().requests += 1;
        if handshaken && api != ApiKey::SaslAuthenticate {
            log.lock().unwrap().violations.push(format!("{api:?} between SaslHandshake and SaslAuthenticate"));
        }
        match api {
            ApiKey::ApiVersions => {
                ApiVersionsRequest::decode(&mut frame, version).unwrap();
                if expires.is_some_and(|at| Instant::now() > at) {
                    log.lock().unwrap().violations.push("request on an expired session".into());
                }
                let keys =
                    [(ApiKey::ApiVersions, 0, 3), (ApiKey::SaslHandshake, 0, 1), (ApiKey::SaslAuthenticate, 0, 2)];
                let response = ApiVersionsResponse::default().with_api_keys(
                    keys.iter()
                        .map(|&(k, min, max)| {
                            ApiVersion::default().with_api_key(k as i16).with_min_version(min).with_max_version(max)
                        })
                        .collect(),
                );
                reply(&mut stream, api, version, id, &response).await;
            }
            ApiKey::SaslHandshake => {
                let request = SaslHandshakeRequest::decode(&mut frame, version).unwrap();
                log.lock().unwrap().handshakes += 1;
                let ok = request.mechanism.as_str() == "PLAIN";
                handshaken = ok;
                let response = SaslHandshakeResponse::default()
                    .with_error_code(if ok { 0 } else { 33 })
                    .with_mechanisms(vec![StrBytes::from_static_str("PLAIN")]);
                reply(&mut stream, api, version, id, &response).await;
            }
            ApiKey::SaslAuthenticate => {
                let request = SaslAuthenticateRequest::decode(&mut frame, version).unwrap();
                handshaken = false;
                let expected = format!("\0{PEER_USER}\0{PEER_PASSWORD}");
                let response = if request.auth_bytes.as_ref() == expected.as_bytes() {
                    log.lock().unwrap().authenticated += 1;
                    expires = Some(Instant::now() + lifetime);
                    SaslAuthenticateResponse::default().with_session_lifetime_ms(lifetime.as_millis() as i64)
                } else {
                    SaslAuthenticateResponse::default()
                        .with_error_code(58)
                        .with_error_message(Some(StrBytes::from_static_str("Invalid username or password")))
                };
                reply(&mut stream, api, version, id, &response).await;
            }
            other => panic!("the scripted peer does not serve {other:?}"),
        }
    }
}

fn plain_config(password: &str) -> Arc<ConnectionConfig> {
    let security = SecurityConfig::from_properties([
        ("security.protocol", "SASL_PLAINTEXT"),
        ("sasl.mechanism", "PLAIN"),
        ("sasl.username", PEER_USER),
        ("sasl.password", password),
    ])
    .unwrap();
    Arc::new(ConnectionConfig { security, request_timeout: Duration::from_secs(2), ..Default::default() })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_authenticates_and_the_session_is_renewed_on_the_same_connection_before_it_expires() {
    init_tracing();
    let lifetime = Duration::from_millis(600);
    let peer = SaslPeer::start(lifetime).await;
    let conn = Connection::open(&peer.addr, plain_config(PEER_PASSWORD)).await.expect("PLAIN authenticates");
    // Requests keep flowing, several at a time, for about five lifetimes.
    let until = Instant::now() + lifetime * 5;
    while Instant::now() < until {
        let pending: Vec<_> = (0..4)
            .map(|_| conn.start_request(&ApiVersionsRequest::default(), 0, Duration::from_secs(2)).unwrap())
            .collect();
        for response in pending {
            response.await.expect("answered while sessions are renewed");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = peer.log.lock().unwrap();
    assert_eq!(log.connections, 1, "re-authentication happens in place: {log:?}");
    assert!(log.authenticated >= 5, "the session was renewed about every 0.9 lifetimes: {log:?}");
    assert_eq!(log.authenticated, log.handshakes, "{log:?}");
    assert!(log.violations.is_empty(), "{log:?}");
    assert!(log.requests > 40, "{log:?}");
}

/// A session lifetime of one millisecond must not turn into a re-authentication loop: the
/// client waits at least half a second between exchanges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_session_lifetime_does_not_loop_re_authentication() {
    init_tracing();
    let peer = SaslPeer::start(Duration::from_millis(1)).await;
    let _conn = Connection::open(&peer.addr, plain_config(PEER_PASSWORD)).await.expect("PLAIN authenticates");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let log = peer.log.lock().unwrap();
    assert!(log.authenticated <= 4, "at most one exchange per 500 ms: {log:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_with_a_wrong_password_is_a_specific_error() {
    init_tracing();
    let peer = SaslPeer::start(Duration::ZERO).await;
    let error = Connection::open(&peer.addr, plain_config("guess")).await.expect_err("refused");
    match &error {
        Error::Security(SecurityError::AuthenticationFailed { mechanism: "PLAIN", message, .. }) => {
            assert!(message.contains("Invalid username or password"), "{message}")
        }
        other => panic!("expected AuthenticationFailed, got {other:?}"),
    }
    assert!(!matches!(error, Error::Network(NetworkError::Disconnected { .. })));
    assert!(!format!("{error:?}").contains("guess"));
}
