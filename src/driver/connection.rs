//! One TCP connection to one broker, and a reconnecting link around it.
//!
//! Requests are pipelined: each gets a correlation id and a slot in the pending table, a writer
//! task sends frames in order, a reader task matches responses to slots. When anything breaks
//! (I/O error, unreadable frame, end of stream), one [`DisconnectCause`] is created and every
//! request still pending fails with that same cause; the connection is dead from then on and a
//! [`BrokerLink`] opens a new one, after an exponential backoff with jitter.
//!
//! A connection may run over TLS and may authenticate with SASL (see [`super::security`]);
//! both happen in [`Connection::open`], before anyone else can use the connection. When the
//! broker limits the SASL session (KIP-368), the connection re-authenticates in place at 85-95%
//! of the lifetime: new requests are held back, the ones in flight are answered, the SASL
//! exchange runs alone on the wire, then the held requests go out in their order.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest};
use kafka_protocol::protocol::{Request, StrBytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::backoff::{unit_random, Backoff};
use super::sasl;
use super::security::SecurityConfig;
use crate::error::{DisconnectCause, Error, NetworkError, Result, SecurityError};
use crate::protocol::codec::{api_key_of, decode_response, encode_request, peek_correlation_id};
use crate::protocol::error_code::KafkaCode;
use crate::protocol::frame::{decode_frame, DEFAULT_MAX_FRAME_SIZE};
use crate::protocol::versions::NegotiatedVersions;

/// Settings shared by every connection a client opens.
#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    /// `client.id`, sent in every request header.
    pub client_id: String,
    /// `request.timeout.ms` (default 30 s).
    pub request_timeout: Duration,
    /// `socket.connection.setup.timeout.ms` (default 10 s).
    pub connect_timeout: Duration,
    /// Largest response frame accepted (default 100 MiB, Kafka's `socket.request.max.bytes`).
    pub max_frame_size: usize,
    /// `reconnect.backoff.ms` / `reconnect.backoff.max.ms`.
    pub reconnect_backoff: Backoff,
    /// `security.protocol` and its TLS / SASL settings (default PLAINTEXT).
    pub security: SecurityConfig,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        ConnectionConfig {
            client_id: "kgroup".to_owned(),
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            reconnect_backoff: Backoff::default(),
            security: SecurityConfig::default(),
        }
    }
}

/// The shortest time between two SASL exchanges on one connection. A broker that announces a
/// session of a few milliseconds would otherwise keep the connection re-authenticating (and
/// deriving SCRAM keys) in a loop; past its expiry it closes the connection, and the link
/// reconnects with backoff.
const MIN_REAUTHENTICATION_INTERVAL: Duration = Duration::from_millis(500);

type Reply = oneshot::Sender<std::result::Result<Bytes, NetworkError>>;

/// A request on the wire, waiting for its response.
struct Queued {
    correlation_id: i32,
    reply: oneshot::Receiver<std::result::Result<Bytes, NetworkError>>,
}

/// A request held back while the connection re-authenticates (KIP-368).
struct Held {
    correlation_id: i32,
    reply: Option<Reply>,
    frame: Bytes,
}

#[derive(Default)]
struct Slots {
    pending: HashMap<i32, Reply>,
    broken: Option<Arc<DisconnectCause>>,
    /// `Some` while re-authenticating: ordinary requests wait here, in order.
    held: Option<Vec<Held>>,
}

/// Which requests a frame travels with.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Lane {
    Ordinary,
    /// SaslHandshake / SaslAuthenticate: never held back.
    Authentication,
}

/// Anything a connection can run over: a TCP stream or a TLS stream around one.
trait Transport: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Transport for T {}
type BoxedTransport = Box<dyn Transport>;

struct Inner {
    addr: String,
    config: Arc<ConnectionConfig>,
    slots: Mutex<Slots>,
    next_correlation_id: AtomicI32,
    writer: mpsc::UnboundedSender<Bytes>,
    versions: std::sync::OnceLock<NegotiatedVersions>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Signalled whenever the last pending request is answered or given up.
    idle: Notify,
}

/// A live connection. Cheap to clone; dropped when the last clone goes.
#[derive(Clone)]
pub struct Connection {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").field("addr", &self.inner.addr).finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Inner {
    /// Marks the connection broken (once) and fails every pending request with the one cause.
    fn break_with(&self, cause: DisconnectCause) {
        let (cause, pending) = {
            let mut slots = lock(&self.slots);
            if slots.broken.is_some() {
                return;
            }
            let cause = Arc::new(cause);
            slots.broken = Some(cause.clone());
            let held = slots.held.take().unwrap_or_default().into_iter().filter_map(|h| h.reply);
            let mut pending: Vec<Reply> = std::mem::take(&mut slots.pending).into_values().collect();
            pending.extend(held);
            (cause, pending)
        };
        tracing::debug!(broker = %self.addr, %cause, in_flight = pending.len(), "connection broken");
        for reply in pending {
            let _ = reply.send(Err(self.disconnected(cause.clone())));
        }
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
    }

    fn disconnected(&self, cause: Arc<DisconnectCause>) -> NetworkError {
        NetworkError::Disconnected { addr: self.addr.clone(), cause }
    }

    /// Takes the waiter of `correlation_id`, signalling `idle` when none is left.
    fn take_pending(&self, correlation_id: i32) -> Option<Reply> {
        let mut slots = lock(&self.slots);
        let reply = slots.pending.remove(&correlation_id);
        if slots.pending.is_empty() {
            self.idle.notify_waiters();
        }
        reply
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
    }
}

impl Connection {
    /// Connects (TLS when configured, within `connect_timeout`), negotiates API versions
    /// (ApiVersions v3, falling back to v0), then authenticates when SASL is configured.
    pub async fn open(addr: &str, config: Arc<ConnectionConfig>) -> Result<Connection> {
        let stream = match tokio::time::timeout(config.connect_timeout, connect_transport(addr, &config)).await {
            Err(_) => {
                return Err(NetworkError::ConnectTimeout { addr: addr.to_owned(), after: config.connect_timeout }.into())
            }
            Ok(result) => result?,
        };
        let conn = Connection::spawn(addr, stream, config.clone());
        let versions = conn.handshake().await?;
        for (api, version) in versions.iter() {
            tracing::debug!(broker = %addr, api = ?api, version, "negotiated API version");
        }
        let _ = conn.inner.versions.set(versions);
        if let Some(sasl) = &config.security.sasl {
            let lifetime = sasl::authenticate(&conn, sasl).await?;
            conn.schedule_reauthentication(lifetime);
        }
        Ok(conn)
    }

    fn spawn(addr: &str, stream: BoxedTransport, config: Arc<ConnectionConfig>) -> Connection {
        let (read_half, write_half) = tokio::io::split(stream);
        let (writer, frames) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            addr: addr.to_owned(),
            config,
            slots: Mutex::new(Slots::default()),
            next_correlation_id: AtomicI32::new(1),
            writer,
            versions: std::sync::OnceLock::new(),
            tasks: Mutex::new(Vec::new()),
            idle: Notify::new(),
        });
        let reader = tokio::spawn(read_loop(Arc::downgrade(&inner), read_half));
        let writer = tokio::spawn(write_loop(Arc::downgrade(&inner), write_half, frames));
        lock(&inner.tasks).extend([reader, writer]);
        Connection { inner }
    }

    /// The broker address this connection was opened to.
    pub fn addr(&self) -> &str {
        &self.inner.addr
    }

    /// Closes the connection: every request in flight fails with one shared cause.
    pub fn close(&self) {
        self.inner.break_with(DisconnectCause::ClosedByClient);
    }

    /// Whether the connection has failed; a broken connection fails every request at once.
    pub fn is_broken(&self) -> bool {
        lock(&self.inner.slots).broken.is_some()
    }

    /// The versions negotiated with this broker.
    pub fn versions(&self) -> &NegotiatedVersions {
        static NONE: std::sync::OnceLock<NegotiatedVersions> = std::sync::OnceLock::new();
        self.inner.versions.get().unwrap_or_else(|| NONE.get_or_init(NegotiatedVersions::default))
    }

    /// The negotiated version of `api` on this broker.
    pub fn version(&self, api: ApiKey) -> Result<i16> {
        Ok(self.versions().get(api)?)
    }

    /// Sends `request` at the negotiated version and waits for its response.
    #[cfg(feature = "test-support")]
    pub async fn send<R: Request>(&self, request: &R) -> Result<R::Response> {
        let version = self.version(api_key_of::<R>())?;
        self.send_at(request, version, self.inner.config.request_timeout).await
    }

    /// Sends `request` at `version`, waiting at most `timeout` for the response.
    pub async fn send_at<R: Request>(&self, request: &R, version: i16, timeout: Duration) -> Result<R::Response> {
        let frame = self.exchange::<R>(request, version, timeout, true).await?.unwrap_or_default();
        decode_answer::<R>(frame, version)
    }

    /// Sends a request the broker will not answer (Produce with `acks=0`).
    pub async fn send_without_response<R: Request>(&self, request: &R, version: i16) -> Result<()> {
        self.exchange::<R>(request, version, Duration::ZERO, false).await.map(|_| ())
    }

    /// Queues `request` at once (so requests started in order go out in order) and returns a
    /// future for its response. Use it where wire order matters, such as the group
    /// coordinator's connection.
    pub fn start_request<R: Request>(
        &self,
        request: &R,
        version: i16,
        timeout: Duration,
    ) -> Result<impl std::future::Future<Output = Result<R::Response>> + Send + 'static>
    where
        R::Response: Send + 'static,
    {
        let queued = self.enqueue(request, version, true, Lane::Ordinary)?;
        let conn = self.clone();
        Ok(async move {
            let frame = conn.await_reply(api_key_of::<R>(), queued, timeout).await?.unwrap_or_default();
            decode_answer::<R>(frame, version)
        })
    }

    async fn exchange<R: Request>(
        &self,
        request: &R,
        version: i16,
        timeout: Duration,
        expect_response: bool,
    ) -> Result<Option<Bytes>> {
        let queued = self.enqueue(request, version, expect_response, Lane::Ordinary)?;
        self.await_reply(api_key_of::<R>(), queued, timeout).await
    }

    /// Sends a SASL request past any held-back requests (see [`sasl::authenticate`]).
    pub(crate) async fn send_authentication<R: Request>(&self, request: &R, version: i16) -> Result<R::Response> {
        let queued = self.enqueue(request, version, true, Lane::Authentication)?;
        let frame = self.await_reply(api_key_of::<R>(), queued, self.inner.config.request_timeout).await?;
        decode_answer::<R>(frame.unwrap_or_default(), version)
    }

    fn enqueue<R: Request>(
        &self,
        request: &R,
        version: i16,
        expect_response: bool,
        lane: Lane,
    ) -> Result<Option<Queued>> {
        let inner = &self.inner;
        let correlation_id = inner.next_correlation_id.fetch_add(1, Ordering::Relaxed);
        let frame = encode_request(request, version, correlation_id, &inner.config.client_id)?;
        let mut slots = lock(&inner.slots);
        if let Some(cause) = &slots.broken {
            return Err(inner.disconnected(cause.clone()).into());
        }
        let (tx, rx) = oneshot::channel();
        let reply = expect_response.then_some(tx);
        if let (Lane::Ordinary, Some(held)) = (lane, slots.held.as_mut()) {
            held.push(Held { correlation_id, reply, frame });
            return Ok(expect_response.then_some(Queued { correlation_id, reply: rx }));
        }
        if let Some(tx) = reply {
            slots.pending.insert(correlation_id, tx);
        }
        // Queued under the lock, so frames leave in correlation-id order.
        if inner.writer.send(frame).is_err() {
            slots.pending.remove(&correlation_id);
            drop(slots);
            return Err(self.broken_error());
        }
        Ok(expect_response.then_some(Queued { correlation_id, reply: rx }))
    }

    async fn await_reply(&self, api: ApiKey, queued: Option<Queued>, timeout: Duration) -> Result<Option<Bytes>> {
        let Some(Queued { correlation_id, reply }) = queued else { return Ok(None) };
        match tokio::time::timeout(timeout, reply).await {
            Ok(Ok(result)) => Ok(Some(result?)),
            Ok(Err(_)) => Err(self.broken_error()),
            Err(_) => {
                self.inner.take_pending(correlation_id);
                Err(NetworkError::RequestTimeout { addr: self.inner.addr.clone(), api, after: timeout }.into())
            }
        }
    }

    fn broken_error(&self) -> Error {
        let cause = lock(&self.inner.slots).broken.clone().unwrap_or_else(|| Arc::new(DisconnectCause::ClosedByClient));
        self.inner.disconnected(cause).into()
    }

    /// KIP-368: when the broker limits the SASL session, re-authenticates at a random point
    /// in 85-95% of its lifetime (as the Java client does), so a fleet does not re-authenticate
    /// in lockstep and the exchange finishes before the broker would close the connection; never
    /// sooner than [`MIN_REAUTHENTICATION_INTERVAL`] after the last exchange.
    fn schedule_reauthentication(&self, lifetime: Option<Duration>) {
        let Some(lifetime) = lifetime else { return };
        let started = Instant::now();
        let at = started + lifetime.mul_f64(0.85 + 0.10 * unit_random()).max(MIN_REAUTHENTICATION_INTERVAL);
        let inner = Arc::downgrade(&self.inner);
        let task = tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            if let Some(inner) = inner.upgrade() {
                Connection { inner }.reauthenticate(started + lifetime).await;
            }
        });
        let mut tasks = lock(&self.inner.tasks);
        tasks.retain(|t| !t.is_finished());
        tasks.push(task);
    }

    /// Holds new requests back, waits (until the session expires at the latest) for the ones
    /// in flight, authenticates again, then releases the held requests in order. A failure
    /// breaks the connection: the broker would close it at expiry anyway.
    async fn reauthenticate(self, expiry: Instant) {
        let Some(sasl) = self.inner.config.security.sasl.clone() else { return };
        lock(&self.inner.slots).held.get_or_insert_with(Vec::new);
        let _ = tokio::time::timeout_at(expiry, self.drained()).await;
        match sasl::authenticate(&self, &sasl).await {
            Ok(lifetime) => {
                tracing::debug!(broker = %self.inner.addr, "SASL session renewed (KIP-368)");
                self.release_held();
                self.schedule_reauthentication(lifetime);
            }
            Err(e) => {
                let cause = match e {
                    Error::Security(e) => e,
                    other => SecurityError::SaslProtocol {
                        addr: self.inner.addr.clone(),
                        mechanism: sasl.mechanism.name(),
                        reason: other.to_string(),
                    },
                };
                tracing::warn!(broker = %self.inner.addr, error = %cause, "SASL re-authentication failed");
                self.inner.break_with(DisconnectCause::Reauthentication(cause));
            }
        }
    }

    /// Resolves once no request is waiting for an answer.
    async fn drained(&self) {
        loop {
            let notified = self.inner.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if lock(&self.inner.slots).pending.is_empty() {
                return;
            }
            notified.await;
        }
    }

    /// Sends the requests held during re-authentication, in the order they were made.
    fn release_held(&self) {
        let mut slots = lock(&self.inner.slots);
        for held in slots.held.take().unwrap_or_default() {
            if let Some(reply) = held.reply {
                slots.pending.insert(held.correlation_id, reply);
            }
            // A closed writer means the connection is breaking; break_with fails the waiters.
            let _ = self.inner.writer.send(held.frame);
        }
    }

    /// ApiVersions v3; a broker that does not know v3 answers UNSUPPORTED_VERSION in the v0
    /// format, and we ask again with v0.
    async fn handshake(&self) -> Result<NegotiatedVersions> {
        let timeout = self.inner.config.request_timeout;
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("kgroup"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let frame = self.exchange(&request, 3, timeout, true).await?.unwrap_or_default();
        let response = match error_code_after_v0_header(&frame) {
            Some(35) => {
                tracing::debug!(broker = %self.inner.addr, "ApiVersions v3 unsupported, falling back to v0");
                self.send_at(&ApiVersionsRequest::default(), 0, timeout).await?
            }
            _ => decode_response::<ApiVersionsRequest>(frame, 3)?.1,
        };
        if response.error_code != 0 {
            return Err(Error::broker(ApiKey::ApiVersions, response.error_code, self.inner.addr.clone()));
        }
        Ok(NegotiatedVersions::negotiate(&response))
    }
}

/// Decodes a response; a malformed error answer whose code was readable becomes that broker
/// error, so the caller reacts to the code.
fn decode_answer<R: Request>(frame: Bytes, version: i16) -> Result<R::Response> {
    match decode_response::<R>(frame, version) {
        Ok((_, response)) => Ok(response),
        Err(crate::protocol::ProtocolError::ErrorResponse { api, code, detail, .. }) => {
            Err(Error::broker(api, code, format!("malformed error answer: {detail}")))
        }
        Err(e) => Err(e.into()),
    }
}

/// ApiVersions responses always use header v0 (just the correlation id), so the error code is
/// at bytes 4..6 whatever the version.
fn error_code_after_v0_header(frame: &[u8]) -> Option<i16> {
    frame.get(4..6).map(|b| i16::from_be_bytes([b[0], b[1]]))
}

/// TCP, then the TLS handshake when `security.protocol` asks for it. Certificate and
/// handshake failures become [`SecurityError`]s (fatal); plain I/O failures stay network
/// errors (retried).
async fn connect_transport(addr: &str, config: &ConnectionConfig) -> Result<BoxedTransport> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| NetworkError::Connect { addr: addr.to_owned(), source: Arc::new(e) })?;
    let _ = stream.set_nodelay(true);
    let Some(tls) = &config.security.tls else { return Ok(Box::new(stream)) };
    let host = host_of(addr);
    let server_name = rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(|e| SecurityError::Tls {
        addr: addr.to_owned(),
        detail: format!("{host:?} is not a valid server name: {e}"),
    })?;
    let connector = tokio_rustls::TlsConnector::from(tls.client_config());
    match connector.connect(server_name, stream).await {
        Ok(stream) => Ok(Box::new(stream)),
        Err(e) => Err(tls_error(addr, host, e)),
    }
}

/// The host part of `host:port` or `[v6]:port`.
fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
    host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host)
}

fn tls_error(addr: &str, host: &str, error: std::io::Error) -> Error {
    use rustls::CertificateError as Cert;
    let Some(tls) = error.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) else {
        return NetworkError::Connect { addr: addr.to_owned(), source: Arc::new(error) }.into();
    };
    let (addr, detail) = (addr.to_owned(), tls.to_string());
    match tls {
        rustls::Error::InvalidCertificate(Cert::UnknownIssuer | Cert::BadSignature) => {
            SecurityError::UntrustedCertificate { addr, detail }
        }
        rustls::Error::InvalidCertificate(Cert::NotValidForName | Cert::NotValidForNameContext { .. }) => {
            SecurityError::HostnameMismatch { addr, host: host.to_owned(), detail }
        }
        _ => SecurityError::Tls { addr, detail },
    }
    .into()
}

async fn read_loop(inner: std::sync::Weak<Inner>, mut read_half: ReadHalf<BoxedTransport>) {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        let read = read_half.read_buf(&mut buf).await;
        let Some(conn) = inner.upgrade() else { return };
        match read {
            Ok(0) => return conn.break_with(DisconnectCause::ClosedByBroker),
            Err(e) => return conn.break_with(DisconnectCause::Io(e)),
            Ok(_) => {}
        }
        loop {
            match decode_frame(&mut buf, conn.config.max_frame_size) {
                Ok(None) => break,
                Err(e) => return conn.break_with(DisconnectCause::Frame(e)),
                Ok(Some(frame)) => {
                    let Some(correlation_id) = peek_correlation_id(&frame) else {
                        return conn.break_with(DisconnectCause::UnexpectedCorrelationId(-1));
                    };
                    let reply = conn.take_pending(correlation_id);
                    match reply {
                        Some(reply) => {
                            let _ = reply.send(Ok(frame));
                        }
                        // A request we stopped waiting for (timed out) still gets its answer.
                        None if correlation_id > 0
                            && correlation_id < conn.next_correlation_id.load(Ordering::Relaxed) =>
                        {
                            tracing::debug!(broker = %conn.addr, correlation_id, "late response dropped");
                        }
                        None => return conn.break_with(DisconnectCause::UnexpectedCorrelationId(correlation_id)),
                    }
                }
            }
        }
    }
}

async fn write_loop(
    inner: std::sync::Weak<Inner>,
    mut write_half: WriteHalf<BoxedTransport>,
    mut frames: mpsc::UnboundedReceiver<Bytes>,
) {
    while let Some(frame) = frames.recv().await {
        if let Err(e) = write_half.write_all(&frame).await {
            if let Some(conn) = inner.upgrade() {
                conn.break_with(DisconnectCause::Io(e));
            }
            return;
        }
    }
    let _ = write_half.shutdown().await;
}

/// A broker address with at most one live connection, reopened on demand after a backoff.
pub struct BrokerLink {
    addr: String,
    config: Arc<ConnectionConfig>,
    /// Held only to read or update, never across an await: asking for the current connection
    /// never waits for a connection attempt (which may take a connect timeout, then a request
    /// timeout for each of ApiVersions and SASL on a broker that accepts and never answers).
    state: Mutex<LinkState>,
    /// One connection attempt at a time: callers that need this broker wait for the attempt in
    /// progress (and its backoff) instead of opening a second connection.
    attempt: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct LinkState {
    conn: Option<Connection>,
    failures: u32,
    retry_at: Option<Instant>,
}

impl LinkState {
    /// The live connection; a broken one is dropped and counts as a failure (backoff).
    fn live(&mut self, backoff: &Backoff) -> Option<Connection> {
        match self.conn.take() {
            Some(conn) if !conn.is_broken() => {
                self.conn = Some(conn.clone());
                Some(conn)
            }
            Some(_) => {
                self.failed(backoff);
                None
            }
            None => None,
        }
    }

    fn failed(&mut self, backoff: &Backoff) {
        self.retry_at = Some(Instant::now() + backoff.delay(self.failures));
        self.failures += 1;
    }
}

impl std::fmt::Debug for BrokerLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerLink").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl BrokerLink {
    /// A link to `addr`; nothing is opened until a connection is asked for.
    pub fn new(addr: impl Into<String>, config: Arc<ConnectionConfig>) -> Self {
        BrokerLink {
            addr: addr.into(),
            config,
            state: Mutex::new(LinkState::default()),
            attempt: tokio::sync::Mutex::new(()),
        }
    }

    /// The broker's `host:port`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// A live connection: the current one, or a new one once the backoff after the last
    /// failure has passed. One attempt per call; callers own their retry loops.
    ///
    /// Cancel-safe: a dropped call abandons its attempt (nothing counts as a failure), and the
    /// next caller starts its own.
    pub async fn connection(&self) -> Result<Connection> {
        if let Some(conn) = self.current() {
            return Ok(conn);
        }
        let _attempt = self.attempt.lock().await;
        // The attempt this call waited for may have connected.
        let retry_at = {
            let mut state = lock(&self.state);
            if let Some(conn) = state.live(&self.config.reconnect_backoff) {
                return Ok(conn);
            }
            state.retry_at
        };
        if let Some(at) = retry_at {
            tokio::time::sleep_until(at).await;
        }
        let opened = Connection::open(&self.addr, self.config.clone()).await;
        let mut state = lock(&self.state);
        match opened {
            Ok(conn) => {
                if state.failures > 0 {
                    tracing::info!(broker = %self.addr, attempts = state.failures, "reconnected");
                }
                *state = LinkState { conn: Some(conn.clone()), failures: 0, retry_at: None };
                Ok(conn)
            }
            Err(e) => {
                state.failed(&self.config.reconnect_backoff);
                Err(e)
            }
        }
    }

    /// The current connection if it is live, without connecting or waiting.
    pub fn current(&self) -> Option<Connection> {
        lock(&self.state).live(&self.config.reconnect_backoff)
    }

    /// When the backoff after this broker's last failure ends (`None`: no backoff).
    pub fn retry_at(&self) -> Option<Instant> {
        lock(&self.state).retry_at.filter(|at| *at > Instant::now())
    }
}

/// Returns the error code of a response as our error, with context, when it is not NONE.
pub(crate) fn check_code(api: ApiKey, code: i16, context: impl FnOnce() -> String) -> Result<()> {
    if KafkaCode(code).is_error() {
        Err(Error::broker(api, code, context()))
    } else {
        Ok(())
    }
}
