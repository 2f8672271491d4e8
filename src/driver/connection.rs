//! One TCP connection to one broker, and a reconnecting link around it.
//!
//! Requests are pipelined: each gets a correlation id and a slot in the pending table, a writer
//! task sends frames in order, a reader task matches responses to slots. When anything breaks
//! (I/O error, unreadable frame, end of stream), one [`DisconnectCause`] is created and every
//! request still pending fails with that same cause; the connection is dead from then on and a
//! [`BrokerLink`] opens a new one, after an exponential backoff with jitter.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest};
use kafka_protocol::protocol::{Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::backoff::Backoff;
use crate::error::{DisconnectCause, Error, NetworkError, Result};
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
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        ConnectionConfig {
            client_id: "kgroup".to_owned(),
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            reconnect_backoff: Backoff::default(),
        }
    }
}

type Reply = oneshot::Sender<std::result::Result<Bytes, NetworkError>>;

/// A request on the wire, waiting for its response.
struct Queued {
    correlation_id: i32,
    reply: oneshot::Receiver<std::result::Result<Bytes, NetworkError>>,
}

#[derive(Default)]
struct Slots {
    pending: HashMap<i32, Reply>,
    broken: Option<Arc<DisconnectCause>>,
}

struct Inner {
    addr: String,
    config: Arc<ConnectionConfig>,
    slots: Mutex<Slots>,
    next_correlation_id: AtomicI32,
    writer: mpsc::UnboundedSender<Bytes>,
    versions: std::sync::OnceLock<NegotiatedVersions>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
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
            (cause, std::mem::take(&mut slots.pending))
        };
        tracing::debug!(broker = %self.addr, %cause, in_flight = pending.len(), "connection broken");
        for (_, reply) in pending {
            let _ = reply.send(Err(self.disconnected(cause.clone())));
        }
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
    }

    fn disconnected(&self, cause: Arc<DisconnectCause>) -> NetworkError {
        NetworkError::Disconnected { addr: self.addr.clone(), cause }
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
    /// Connects, then negotiates API versions (ApiVersions v3, falling back to v0).
    pub async fn open(addr: &str, config: Arc<ConnectionConfig>) -> Result<Connection> {
        let stream = match tokio::time::timeout(config.connect_timeout, TcpStream::connect(addr)).await {
            Err(_) => {
                return Err(NetworkError::ConnectTimeout { addr: addr.to_owned(), after: config.connect_timeout }.into())
            }
            Ok(Err(e)) => return Err(NetworkError::Connect { addr: addr.to_owned(), source: Arc::new(e) }.into()),
            Ok(Ok(stream)) => stream,
        };
        let _ = stream.set_nodelay(true);
        let conn = Connection::spawn(addr, stream, config);
        let versions = conn.handshake().await?;
        for (api, version) in versions.iter() {
            tracing::debug!(broker = %addr, api = ?api, version, "negotiated API version");
        }
        let _ = conn.inner.versions.set(versions);
        Ok(conn)
    }

    fn spawn(addr: &str, stream: TcpStream, config: Arc<ConnectionConfig>) -> Connection {
        let (read_half, write_half) = stream.into_split();
        let (writer, frames) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            addr: addr.to_owned(),
            config,
            slots: Mutex::new(Slots::default()),
            next_correlation_id: AtomicI32::new(1),
            writer,
            versions: std::sync::OnceLock::new(),
            tasks: Mutex::new(Vec::new()),
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
        let queued = self.enqueue(request, version, true)?;
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
        let queued = self.enqueue(request, version, expect_response)?;
        self.await_reply(api_key_of::<R>(), queued, timeout).await
    }

    fn enqueue<R: Request>(&self, request: &R, version: i16, expect_response: bool) -> Result<Option<Queued>> {
        let inner = &self.inner;
        let correlation_id = inner.next_correlation_id.fetch_add(1, Ordering::Relaxed);
        let frame = encode_request(request, version, correlation_id, &inner.config.client_id)?;
        let mut slots = lock(&inner.slots);
        if let Some(cause) = &slots.broken {
            return Err(inner.disconnected(cause.clone()).into());
        }
        let (tx, rx) = oneshot::channel();
        if expect_response {
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
                lock(&self.inner.slots).pending.remove(&correlation_id);
                Err(NetworkError::RequestTimeout { addr: self.inner.addr.clone(), api, after: timeout }.into())
            }
        }
    }

    fn broken_error(&self) -> Error {
        let cause = lock(&self.inner.slots).broken.clone().unwrap_or_else(|| Arc::new(DisconnectCause::ClosedByClient));
        self.inner.disconnected(cause).into()
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

async fn read_loop(inner: std::sync::Weak<Inner>, mut read_half: OwnedReadHalf) {
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
                    let reply = lock(&conn.slots).pending.remove(&correlation_id);
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
    mut write_half: OwnedWriteHalf,
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
    state: tokio::sync::Mutex<LinkState>,
}

#[derive(Default)]
struct LinkState {
    conn: Option<Connection>,
    failures: u32,
    retry_at: Option<Instant>,
}

impl std::fmt::Debug for BrokerLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerLink").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl BrokerLink {
    pub fn new(addr: impl Into<String>, config: Arc<ConnectionConfig>) -> Self {
        BrokerLink { addr: addr.into(), config, state: tokio::sync::Mutex::new(LinkState::default()) }
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// A live connection: the current one, or a new one once the backoff after the last
    /// failure has passed. One attempt per call; callers own their retry loops.
    pub async fn connection(&self) -> Result<Connection> {
        let mut state = self.state.lock().await;
        if let Some(conn) = &state.conn {
            if !conn.is_broken() {
                return Ok(conn.clone());
            }
            state.conn = None;
            state.retry_at = Some(Instant::now() + self.config.reconnect_backoff.delay(state.failures));
            state.failures += 1;
        }
        if let Some(at) = state.retry_at {
            tokio::time::sleep_until(at).await;
        }
        match Connection::open(&self.addr, self.config.clone()).await {
            Ok(conn) => {
                if state.failures > 0 {
                    tracing::info!(broker = %self.addr, attempts = state.failures, "reconnected");
                }
                *state = LinkState { conn: Some(conn.clone()), failures: 0, retry_at: None };
                Ok(conn)
            }
            Err(e) => {
                state.retry_at = Some(Instant::now() + self.config.reconnect_backoff.delay(state.failures));
                state.failures += 1;
                Err(e)
            }
        }
    }

    /// The current connection if it is live, without connecting.
    pub async fn current(&self) -> Option<Connection> {
        self.state.lock().await.conn.clone().filter(|c| !c.is_broken())
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
