//! A loopback TCP front end for the [`ScriptedCoordinator`], so real clients (kgroup's driver,
//! librdkafka) can talk to the model.
//!
//! One task owns the coordinator and multiplexes every input: accepted connections, request
//! frames decoded by one reader task per connection, the coordinator's timers (real time: `now`
//! is always [`Instant::now`]), disconnects and control calls from the [`CoordinatorServer`]
//! handle. After each input it drains [`ScriptedCoordinator::poll_response`] into one writer
//! task per connection; [`Outgoing::Cut`] closes the connection (the writer first flushes the
//! responses emitted before the cut, as the model orders them) and is reported back through
//! [`ScriptedCoordinator::handle_disconnect`].
//!
//! Connections get [`ConnId`]s 1, 2, 3, ... in accept order, so a test that opens its
//! connections one at a time knows their ids (for [`ScriptedCoordinator::is_muted`] and
//! friends, through [`CoordinatorServer::with`]).

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, RequestKind, ResponseKind};
use kafka_protocol::protocol::decode_request_header_from_buffer;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::{AbortHandle, JoinHandle, JoinSet};

use crate::coordinator::{
    Assignment, CommitRecord, ConnId, CoordinatorConfig, Fault, GroupView, LoggedRequest, Outgoing, ScriptedCoordinator,
};

/// Largest request frame accepted (Kafka's `socket.request.max.bytes`, 100 MiB). A larger
/// size prefix closes the connection.
pub const MAX_REQUEST_SIZE: usize = 100 * 1024 * 1024;

type Job = Box<dyn FnOnce(&mut ScriptedCoordinator, Instant) + Send>;

enum Control {
    /// Run a closure on the coordinator, then drain its output.
    Run(Job),
    Shutdown,
}

/// A [`ScriptedCoordinator`] served on `127.0.0.1:<ephemeral port>`. Dropping it stops the
/// serving task and closes the listener and every connection; [`Self::shutdown`] does the same
/// and waits until it is done.
///
/// Control methods panic if the serving task is gone (after a panic in the coordinator, whose
/// message the panic hook has already printed).
#[derive(Debug)]
pub struct CoordinatorServer {
    addr: SocketAddr,
    node_id: i32,
    control: mpsc::UnboundedSender<Control>,
    task: Option<JoinHandle<()>>,
}

impl CoordinatorServer {
    /// Binds `127.0.0.1:0`, points the config's `host` and `port` at the listener (so
    /// FindCoordinator and Metadata answers lead back here; `node_id` is kept) and spawns the
    /// serving task. Must be called inside a tokio runtime.
    pub async fn start(mut config: CoordinatorConfig) -> io::Result<CoordinatorServer> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        config.host = addr.ip().to_string();
        config.port = i32::from(addr.port());
        let node_id = config.node_id;
        let (control, control_rx) = mpsc::unbounded_channel();
        let (events_tx, events) = mpsc::unbounded_channel();
        let core = Core {
            coordinator: ScriptedCoordinator::new(config, Instant::now()),
            listener,
            conns: HashMap::new(),
            next_conn: 0,
            events_tx,
            events,
            control: control_rx,
            io_tasks: JoinSet::new(),
        };
        let task = tokio::spawn(core.run());
        tracing::debug!(%addr, "scripted coordinator listening");
        Ok(CoordinatorServer { addr, node_id, control, task: Some(task) })
    }

    /// `127.0.0.1:PORT`, for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The node id FindCoordinator and Metadata report for this broker.
    pub fn node_id(&self) -> i32 {
        self.node_id
    }

    /// Runs `f` on the coordinator inside the serving task (with `Instant::now()`), then sends
    /// whatever it emitted. The escape hatch for anything the methods below do not cover.
    pub async fn with<R, F>(&self, f: F) -> R
    where
        F: FnOnce(&mut ScriptedCoordinator, Instant) -> R + Send + 'static,
        R: Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |coordinator, now| {
            let _ = tx.send(f(coordinator, now));
        });
        self.control.send(Control::Run(job)).unwrap_or_else(|_| stopped());
        rx.await.unwrap_or_else(|_| stopped())
    }

    /// Installs a fault; every request the coordinator handles after this returns is matched
    /// against it.
    pub async fn inject(&self, fault: Fault) {
        self.with(move |c, _| c.inject(fault)).await
    }

    pub async fn clear_faults(&self) {
        self.with(|c, _| c.clear_faults()).await
    }

    /// [`ScriptedCoordinator::set_loading`]: `true` (re)elects the coordinator and starts
    /// loading, `false` completes the load.
    pub async fn set_loading(&self, loading: bool) {
        self.with(move |c, now| c.set_loading(now, loading)).await
    }

    /// [`ScriptedCoordinator::unload`]: the coordinator resigns.
    pub async fn unload(&self) {
        self.with(|c, now| c.unload(now)).await
    }

    pub async fn describe(&self, group: &str) -> Option<GroupView> {
        let group = group.to_owned();
        self.with(move |c, _| c.describe(&group)).await
    }

    pub async fn accepted_commits(&self) -> Vec<CommitRecord> {
        self.with(|c, _| c.accepted_commits().to_vec()).await
    }

    /// The materialized committed offset.
    pub async fn committed(&self, group: &str, topic: &str, partition: i32) -> Option<i64> {
        let (group, topic) = (group.to_owned(), topic.to_owned());
        self.with(move |c, _| c.committed(&group, &topic, partition)).await
    }

    /// [`ScriptedCoordinator::log_requests`].
    pub async fn log_requests(&self) {
        self.with(|c, _| c.log_requests()).await
    }

    /// The requests logged for `group`, in arrival order.
    pub async fn requests(&self, group: &str) -> Vec<LoggedRequest> {
        let group = group.to_owned();
        self.with(move |c, _| c.requests().iter().filter(|r| r.group.as_deref() == Some(&group)).cloned().collect())
            .await
    }

    pub async fn assignment_history(&self, group: &str) -> Vec<(i32, Assignment)> {
        let group = group.to_owned();
        self.with(move |c, _| c.assignment_history(&group)).await
    }

    /// Stops serving: closes the listener and every connection, and returns once they are
    /// closed. A panic of the serving task is resumed here.
    pub async fn shutdown(mut self) {
        let Some(task) = self.task.take() else { return };
        let _ = self.control.send(Control::Shutdown);
        if let Err(e) = task.await {
            if e.is_panic() {
                std::panic::resume_unwind(e.into_panic());
            }
        }
    }
}

impl Drop for CoordinatorServer {
    fn drop(&mut self) {
        // Aborting drops the task's state: the listener and the JoinSet of connection tasks
        // (which aborts them, closing their sockets).
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

fn stopped() -> ! {
    panic!("the coordinator server task has stopped")
}

/// A decoded request frame.
struct Decoded {
    client_id: String,
    correlation_id: i32,
    api_version: i16,
    request: RequestKind,
}

enum Event {
    Request {
        conn: ConnId,
        request: Box<Decoded>,
    },
    /// The reader stopped: end of stream, I/O error, bad frame, or it was aborted.
    Closed {
        conn: ConnId,
    },
}

enum Wake {
    Accepted(io::Result<(TcpStream, SocketAddr)>),
    Event(Event),
    Control(Option<Control>),
    Timer,
}

/// One open connection, as the serving task holds it.
struct Link {
    writer: mpsc::UnboundedSender<Bytes>,
    reader: AbortHandle,
}

struct Core {
    coordinator: ScriptedCoordinator,
    listener: TcpListener,
    conns: HashMap<ConnId, Link>,
    next_conn: u64,
    /// Kept so `events` never closes.
    events_tx: mpsc::UnboundedSender<Event>,
    events: mpsc::UnboundedReceiver<Event>,
    control: mpsc::UnboundedReceiver<Control>,
    /// Every reader and writer task; dropping or shutting it down aborts them.
    io_tasks: JoinSet<()>,
}

impl Core {
    async fn run(mut self) {
        loop {
            let deadline = self.coordinator.poll_timeout();
            let wake = tokio::select! {
                accepted = self.listener.accept() => Wake::Accepted(accepted),
                Some(event) = self.events.recv() => Wake::Event(event),
                control = self.control.recv() => Wake::Control(control),
                () = sleep_until(deadline) => Wake::Timer,
                Some(_) = self.io_tasks.join_next(), if !self.io_tasks.is_empty() => continue,
            };
            match wake {
                Wake::Accepted(Ok((stream, peer))) => self.accept(stream, peer),
                Wake::Accepted(Err(e)) => {
                    // Typically EMFILE; do not spin on it.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Wake::Event(Event::Request { conn, request }) => {
                    // Frames a reader decoded before its connection was cut are dropped.
                    if self.conns.contains_key(&conn) {
                        let Decoded { client_id, correlation_id, api_version, request } = *request;
                        self.coordinator.handle_request_with_client_id(
                            Instant::now(),
                            conn,
                            &client_id,
                            correlation_id,
                            api_version,
                            request,
                        );
                    }
                }
                Wake::Event(Event::Closed { conn }) => self.close(conn),
                Wake::Control(Some(Control::Run(job))) => job(&mut self.coordinator, Instant::now()),
                Wake::Control(Some(Control::Shutdown) | None) => break,
                Wake::Timer => self.coordinator.handle_timeout(Instant::now()),
            }
            self.drain();
        }
        let Core { listener, conns, mut io_tasks, .. } = self;
        drop(listener);
        drop(conns);
        io_tasks.shutdown().await;
    }

    fn accept(&mut self, stream: TcpStream, peer: SocketAddr) {
        let _ = stream.set_nodelay(true);
        self.next_conn += 1;
        let conn = ConnId(self.next_conn);
        tracing::debug!(conn = conn.0, %peer, "connection accepted");
        let (read_half, write_half) = stream.into_split();
        let (writer, frames) = mpsc::unbounded_channel();
        let reader = self.io_tasks.spawn(read_loop(conn, read_half, self.events_tx.clone()));
        self.io_tasks.spawn(write_loop(conn, write_half, frames));
        self.conns.insert(conn, Link { writer, reader });
    }

    /// Stops reading `conn`, lets its writer flush what is queued and close the socket, and
    /// tells the coordinator. Nothing happens for a connection already closed.
    fn close(&mut self, conn: ConnId) {
        let Some(link) = self.conns.remove(&conn) else { return };
        tracing::debug!(conn = conn.0, "connection closed");
        link.reader.abort();
        drop(link.writer);
        self.coordinator.handle_disconnect(Instant::now(), conn);
    }

    fn drain(&mut self) {
        while let Some(out) = self.coordinator.poll_response() {
            match out {
                Outgoing::Response { conn, correlation_id, api_version, response } => {
                    let Some(link) = self.conns.get(&conn) else { continue };
                    match encode_response(correlation_id, api_version, &response) {
                        Ok(frame) => {
                            let _ = link.writer.send(frame);
                        }
                        Err(reason) => {
                            tracing::error!(conn = conn.0, %reason, "cannot encode a response, closing the connection");
                            self.close(conn);
                        }
                    }
                }
                Outgoing::Cut { conn } => self.close(conn),
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

/// Reports the end of a reader, however it ends (including abort and panic).
struct ClosedGuard {
    conn: ConnId,
    events: mpsc::UnboundedSender<Event>,
}

impl Drop for ClosedGuard {
    fn drop(&mut self) {
        let _ = self.events.send(Event::Closed { conn: self.conn });
    }
}

async fn read_loop(conn: ConnId, read_half: OwnedReadHalf, events: mpsc::UnboundedSender<Event>) {
    let _closed = ClosedGuard { conn, events: events.clone() };
    let mut reader = BufReader::new(read_half);
    loop {
        let size = match reader.read_i32().await {
            Ok(size) => size,
            Err(e) => {
                tracing::debug!(conn = conn.0, error = %e, "end of stream");
                return;
            }
        };
        let Some(size) = usize::try_from(size).ok().filter(|s| *s <= MAX_REQUEST_SIZE) else {
            tracing::warn!(conn = conn.0, size, max = MAX_REQUEST_SIZE, "bad request size, closing the connection");
            return;
        };
        let mut frame = BytesMut::zeroed(size);
        if let Err(e) = reader.read_exact(&mut frame).await {
            tracing::debug!(conn = conn.0, error = %e, "truncated request frame");
            return;
        }
        match decode_request(frame.freeze()) {
            Ok(request) => {
                if events.send(Event::Request { conn, request: Box::new(request) }).is_err() {
                    return;
                }
            }
            Err(reason) => {
                tracing::warn!(conn = conn.0, %reason, "undecodable request, closing the connection");
                return;
            }
        }
    }
}

async fn write_loop(conn: ConnId, mut write_half: OwnedWriteHalf, mut frames: mpsc::UnboundedReceiver<Bytes>) {
    while let Some(frame) = frames.recv().await {
        if let Err(e) = write_half.write_all(&frame).await {
            tracing::debug!(conn = conn.0, error = %e, "write failed");
            return;
        }
    }
    let _ = write_half.shutdown().await;
}

/// Request header, then the body at the header's version.
fn decode_request(mut frame: Bytes) -> Result<Decoded, String> {
    // The header decoder peeks the API key and version without a length check.
    if frame.len() < 4 {
        return Err(format!("a {}-byte frame has no request header", frame.len()));
    }
    let header = decode_request_header_from_buffer(&mut frame).map_err(|e| format!("request header: {e:#}"))?;
    let (key, version) = (header.request_api_key, header.request_api_version);
    let api = ApiKey::try_from(key).map_err(|_| format!("unknown API key {key}"))?;
    let request = match RequestKind::decode(api, &mut frame, version) {
        Ok(request) => request,
        // Kafka answers an ApiVersions request newer than it knows with a v0
        // UNSUPPORTED_VERSION response, which the coordinator does for any version above 3.
        Err(_) if api == ApiKey::ApiVersions && version > 3 => RequestKind::ApiVersions(ApiVersionsRequest::default()),
        Err(e) => return Err(format!("{api:?} v{version}: {e:#}")),
    };
    Ok(Decoded {
        client_id: header.client_id.map(|c| c.to_string()).unwrap_or_default(),
        correlation_id: header.correlation_id,
        api_version: version,
        request,
    })
}

/// Size, correlation id, an empty tagged-field section for flexible response headers
/// (ApiVersions always uses header v0), then the body.
fn encode_response(correlation_id: i32, api_version: i16, response: &ResponseKind) -> Result<Bytes, String> {
    let api = response_api_key(response).ok_or_else(|| "a response of an API this server does not serve".to_owned())?;
    let mut buf = BytesMut::with_capacity(256);
    buf.put_i32(0);
    buf.put_i32(correlation_id);
    if api != ApiKey::ApiVersions && api.response_header_version(api_version) >= 1 {
        buf.put_u8(0);
    }
    response.encode(&mut buf, api_version).map_err(|e| format!("{api:?} v{api_version}: {e:#}"))?;
    let size = i32::try_from(buf.len() - 4).map_err(|_| format!("{api:?} response of {} bytes", buf.len()))?;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    Ok(buf.freeze())
}

fn response_api_key(response: &ResponseKind) -> Option<ApiKey> {
    Some(match response {
        ResponseKind::ApiVersions(_) => ApiKey::ApiVersions,
        ResponseKind::Metadata(_) => ApiKey::Metadata,
        ResponseKind::FindCoordinator(_) => ApiKey::FindCoordinator,
        ResponseKind::JoinGroup(_) => ApiKey::JoinGroup,
        ResponseKind::SyncGroup(_) => ApiKey::SyncGroup,
        ResponseKind::Heartbeat(_) => ApiKey::Heartbeat,
        ResponseKind::LeaveGroup(_) => ApiKey::LeaveGroup,
        ResponseKind::OffsetCommit(_) => ApiKey::OffsetCommit,
        ResponseKind::OffsetFetch(_) => ApiKey::OffsetFetch,
        ResponseKind::DescribeGroups(_) => ApiKey::DescribeGroups,
        ResponseKind::ListGroups(_) => ApiKey::ListGroups,
        ResponseKind::Produce(_) => ApiKey::Produce,
        ResponseKind::Fetch(_) => ApiKey::Fetch,
        ResponseKind::ListOffsets(_) => ApiKey::ListOffsets,
        ResponseKind::CreateTopics(_) => ApiKey::CreateTopics,
        ResponseKind::TxnOffsetCommit(_) => ApiKey::TxnOffsetCommit,
        ResponseKind::InitProducerId(_) => ApiKey::InitProducerId,
        ResponseKind::AddOffsetsToTxn(_) => ApiKey::AddOffsetsToTxn,
        ResponseKind::EndTxn(_) => ApiKey::EndTxn,
        ResponseKind::ConsumerGroupHeartbeat(_) => ApiKey::ConsumerGroupHeartbeat,
        _ => return None,
    })
}
