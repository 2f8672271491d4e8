//! Feature `debug-http`: a read-only HTTP server that shows group members from outside (their
//! snapshots, events and metrics, and a live page), for operators and for the demo.
//!
//! It binds where the application says; bind it to loopback (`127.0.0.1:0` picks a free port)
//! unless something in front of it restricts access: it has no authentication, and snapshots
//! show member ids, assignments and offsets. It runs on the caller's tokio runtime and stops
//! when its [`DebugServer`] is dropped or [`shut down`](DebugServer::shutdown).
//!
//! | route | answers |
//! |---|---|
//! | `GET /` | one self-contained HTML page (no external assets) that follows the members live |
//! | `GET /snapshot` | the member's [`GroupSnapshot`] as JSON; `?member=LABEL` on a server with several |
//! | `GET /members` | `[{"label": .., "snapshot": {..}}, ..]` (or `"error"` for a stopped member) |
//! | `GET /events` | server-sent events, one `data:` JSON [`GroupEventRecord`](crate::driver::group::GroupEventRecord) with a `member` label per event: the recent ones, then live |
//! | `GET /events?format=ndjson` | the recent events as newline-delimited JSON, then the response ends |
//! | `GET /metrics` | every member's metrics as Prometheus text ([`crate::telemetry`]), with a `member` label |
//!
//! `/events` takes `?member=LABEL` too. The server subscribes once to each member's events and
//! keeps its last 1024 commit outcomes and 1024 other events; a client that reads slowly misses events (an SSE `dropped` event says how
//! many) rather than holding the member or the server's memory. Other paths are 404, other
//! methods 405.
//!
//! ```no_run
//! # async fn example(consumer: &kgroup::GroupConsumer) -> std::io::Result<()> {
//! let server = consumer.serve_debug("127.0.0.1:8080").await?;
//! println!("debug page on http://{}/", server.local_addr());
//! // ... the server stops when `server` is dropped.
//! # Ok(()) }
//! ```

mod feed;

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderValue, ACCEPT, ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, ToSocketAddrs};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use self::feed::{ClientBody, Feed};
use crate::driver::group::{GroupHandle, GroupObserver};
use crate::group::GroupSnapshot;
use crate::telemetry::{render_prometheus, MemberMetrics};

/// The page served on `/`.
const PAGE: &str = include_str!("page.html");
/// Connections served at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 64;
/// Bounds what a client can make the server buffer for a request head (hyper's minimum is 8 KiB).
const MAX_REQUEST_HEAD: usize = 16 * 1024;
const MAX_HEADERS: usize = 32;
/// An idle or slow client's connection closes after this long without a full request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A member that does not answer a snapshot request in this time is reported as unavailable.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(5);

/// A running debug server; dropping it stops the server, its connections included.
#[derive(Debug)]
pub struct DebugServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    runtime: tokio::runtime::Handle,
    /// Never sent on: dropping it is the stop signal of every task of the server.
    stop: watch::Sender<()>,
    accept: JoinHandle<()>,
}

/// A member label already served by this server.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the debug server already serves a member labelled {0:?}")]
pub struct LabelTaken(pub String);

struct Member {
    label: String,
    observer: GroupObserver,
}

struct Shared {
    /// In the order added; a member's index is its ring's in `feed`.
    members: RwLock<Vec<Member>>,
    feed: Arc<Feed>,
    stop: watch::Receiver<()>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

impl DebugServer {
    /// Binds `addr` (say `127.0.0.1:0` for any free loopback port) and starts serving, with no
    /// members yet. Cancel-safe: dropped before it returns, nothing is bound.
    pub async fn bind(addr: impl ToSocketAddrs) -> io::Result<DebugServer> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = watch::channel(());
        let shared = Arc::new(Shared { members: RwLock::default(), feed: Arc::new(Feed::new()), stop: stopped });
        let accept = tokio::spawn(accept_loop(listener, shared.clone()));
        Ok(DebugServer { addr, shared, runtime: tokio::runtime::Handle::current(), stop, accept })
    }

    /// [`bind`](Self::bind) with one member. Cancel-safe.
    pub async fn serve(addr: impl ToSocketAddrs, label: &str, member: &GroupObserver) -> io::Result<DebugServer> {
        let server = Self::bind(addr).await?;
        // A fresh server has no label yet.
        let _ = server.add_member(label, member);
        Ok(server)
    }

    /// The address bound (with the port the system picked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves one more member under `label` (its client id, its index in a group of the
    /// application's, ...; used in URLs, so keep it short). Its events are collected from now on.
    /// The server only observes it: it does not keep the member running.
    pub fn add_member(&self, label: &str, member: &GroupObserver) -> Result<(), LabelTaken> {
        let mut members = self.shared.members.write().unwrap_or_else(PoisonError::into_inner);
        if members.iter().any(|m| m.label == label) {
            return Err(LabelTaken(label.to_owned()));
        }
        let index = self.shared.feed.add_member();
        members.push(Member { label: label.to_owned(), observer: member.clone() });
        let collect =
            feed::collect(self.shared.feed.clone(), index, label.to_owned(), member.events(), self.stop.subscribe());
        self.runtime.spawn(collect);
        Ok(())
    }

    /// Stops the server and waits until it no longer accepts connections (open ones are closed).
    /// Cancel-safe: the server is stopping once this is called.
    pub async fn shutdown(self) {
        let DebugServer { stop, accept, .. } = self;
        drop(stop);
        // The accept loop does not panic; an abort is the only other way it ends.
        let _ = accept.await;
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut stop = shared.stop.clone();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_REQUEST_HEAD)
        .max_headers(MAX_HEADERS);
    // Dropped when the loop ends: that aborts every connection.
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        if connections.len() >= MAX_CONNECTIONS {
            tokio::select! {
                _ = stop.changed() => return,
                _ = connections.join_next() => continue,
            }
        }
        let stream = tokio::select! {
            _ = stop.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, for example: let some close.
                    tracing::debug!(error = %e, "debug server: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let shared = shared.clone();
        let service = hyper::service::service_fn(move |request| {
            let shared = shared.clone();
            async move { Ok::<_, Infallible>(route(&shared, request).await) }
        });
        let connection = http.serve_connection(TokioIo::new(stream), service);
        connections.spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "debug server: connection ended");
            }
        });
    }
}

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// One arm per route (`/metrics` will be one more).
async fn route(shared: &Shared, request: Request<Incoming>) -> Response<Body> {
    if request.method() != Method::GET {
        let mut response = error(StatusCode::METHOD_NOT_ALLOWED, "only GET is served");
        response.headers_mut().insert(ALLOW, HeaderValue::from_static("GET"));
        return response;
    }
    let query = request.uri().query();
    match request.uri().path() {
        "/" => respond(StatusCode::OK, "text/html; charset=utf-8", PAGE),
        "/snapshot" => snapshot(shared, query).await,
        "/members" => members(shared).await,
        "/events" => events(shared, query, request.headers()),
        "/metrics" => metrics(shared),
        _ => error(StatusCode::NOT_FOUND, "no such page: try /, /snapshot, /members, /events or /metrics"),
    }
}

/// Every member's metrics in one Prometheus text, each series labelled with its member's group,
/// client id and label here.
fn metrics(shared: &Shared) -> Response<Body> {
    let metrics: Vec<(String, MemberMetrics)> = {
        let members = shared.members.read().unwrap_or_else(PoisonError::into_inner);
        members.iter().map(|m| (m.label.clone(), m.observer.metrics().clone())).collect()
    };
    let text = render_prometheus(&metrics.iter().map(|(label, m)| (label.as_str(), m)).collect::<Vec<_>>());
    respond(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", text)
}

async fn snapshot(shared: &Shared, query: Option<&str>) -> Response<Body> {
    let observer = {
        let members = shared.members.read().unwrap_or_else(PoisonError::into_inner);
        let index = match selection(&members, query) {
            Ok(Some(index)) => index,
            Ok(None) if members.len() == 1 => 0,
            Ok(None) if members.is_empty() => return error(StatusCode::NOT_FOUND, "no member is served yet"),
            Ok(None) => return error(StatusCode::BAD_REQUEST, "several members are served: add ?member=LABEL"),
            Err(unknown) => return unknown.response(),
        };
        members[index].observer.clone()
    };
    match snapshot_of(&observer).await {
        Ok(snapshot) => json(&snapshot),
        Err(why) => error(StatusCode::SERVICE_UNAVAILABLE, &why),
    }
}

/// A member's snapshot, or why there is none.
async fn snapshot_of(observer: &GroupObserver) -> Result<GroupSnapshot, String> {
    match tokio::time::timeout(SNAPSHOT_TIMEOUT, observer.group_state()).await {
        Ok(Ok(snapshot)) => Ok(snapshot),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("the member did not answer within {SNAPSHOT_TIMEOUT:?}")),
    }
}

#[derive(serde::Serialize)]
struct MemberView {
    label: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    snapshot: Option<GroupSnapshot>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

async fn members(shared: &Shared) -> Response<Body> {
    let members: Vec<(String, GroupObserver)> = {
        let members = shared.members.read().unwrap_or_else(PoisonError::into_inner);
        members.iter().map(|m| (m.label.clone(), m.observer.clone())).collect()
    };
    // All at once: one member slow to answer does not add up over thirty.
    let mut asked = JoinSet::new();
    for (index, (label, observer)) in members.into_iter().enumerate() {
        asked.spawn(async move {
            let (snapshot, error) = match snapshot_of(&observer).await {
                Ok(snapshot) => (Some(snapshot), None),
                Err(why) => (None, Some(why)),
            };
            (index, MemberView { label, snapshot, error })
        });
    }
    let mut views = Vec::new();
    while let Some(view) = asked.join_next().await {
        // The tasks do not panic; a runtime shutting down cancels them.
        views.extend(view.ok());
    }
    views.sort_unstable_by_key(|(index, _)| *index);
    json(&views.into_iter().map(|(_, view)| view).collect::<Vec<_>>())
}

fn events(shared: &Shared, query: Option<&str>, headers: &HeaderMap) -> Response<Body> {
    let selected = {
        let members = shared.members.read().unwrap_or_else(PoisonError::into_inner);
        match selection(&members, query) {
            Ok(selected) => selected,
            Err(unknown) => return unknown.response(),
        }
    };
    let wanted = move |member: usize| selected.is_none_or(|s| s == member);
    let accept = headers.get(ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let ndjson = match parameter(query, "format").as_deref() {
        Some("ndjson") => true,
        Some("sse") => false,
        None => accept.contains("application/x-ndjson") && !accept.contains("text/event-stream"),
        Some(_) => return error(StatusCode::BAD_REQUEST, "format is sse (the default) or ndjson"),
    };
    if ndjson {
        let mut body = Vec::new();
        for entry in shared.feed.recent(wanted, 0) {
            body.extend_from_slice(&entry.json);
            body.push(b'\n');
        }
        return respond(StatusCode::OK, "application/x-ndjson", body);
    }
    // A reconnecting EventSource resumes after the last event it saw.
    let after = headers.get("last-event-id").and_then(|v| v.to_str().ok()?.trim().parse().ok()).unwrap_or(0);
    let (recent, live) = shared.feed.subscribe(wanted, after);
    let (client, body) = ClientBody::channel();
    tokio::spawn(feed::pump(recent, live, wanted, client, shared.stop.clone()));
    with_type(StatusCode::OK, "text/event-stream", body.boxed_unsync())
}

/// A `?member=` that names no member.
struct UnknownLabel;

impl UnknownLabel {
    fn response(self) -> Response<Body> {
        error(StatusCode::NOT_FOUND, "no member has that label (see /members)")
    }
}

/// The member `?member=` names (`None` without the parameter).
fn selection(members: &[Member], query: Option<&str>) -> Result<Option<usize>, UnknownLabel> {
    let Some(label) = parameter(query, "member") else { return Ok(None) };
    members.iter().position(|m| m.label == label).map(Some).ok_or(UnknownLabel)
}

/// The first value of `name` in a query string, percent-decoded.
fn parameter(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (decode(key) == name).then(|| decode(value))
    })
}

/// `application/x-www-form-urlencoded` decoding; a malformed escape stays as it is.
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok());
        match (bytes[i], escaped) {
            (_, Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', None) => {
                out.push(b' ');
                i += 1;
            }
            (byte, None) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn json<T: serde::Serialize>(value: &T) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(body) => respond(StatusCode::OK, "application/json", body),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &format!("not serializable: {e}")),
    }
}

fn error(status: StatusCode, message: &str) -> Response<Body> {
    let body = serde_json::json!({ "error": message }).to_string();
    respond(status, "application/json", body)
}

fn respond(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    with_type(status, content_type, Full::new(body.into()).boxed_unsync())
}

fn with_type(status: StatusCode, content_type: &'static str, body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Every answer is a moment of a running member.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

impl GroupHandle {
    /// Serves this member on a [`DebugServer`] at `addr` (see [`crate::debug_http`]), labelled
    /// `member`. Cancel-safe.
    pub async fn serve_debug(&self, addr: impl ToSocketAddrs) -> io::Result<DebugServer> {
        DebugServer::serve(addr, "member", &self.observer()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_are_decoded() {
        assert_eq!(parameter(Some("member=a%20b&format=ndjson"), "member").as_deref(), Some("a b"));
        assert_eq!(parameter(Some("format=ndjson"), "format").as_deref(), Some("ndjson"));
        assert_eq!(parameter(Some("member=x+y"), "member").as_deref(), Some("x y"));
        assert_eq!(parameter(Some("member=%zz%4"), "member").as_deref(), Some("%zz%4"));
        assert_eq!(parameter(Some("flag&member="), "flag").as_deref(), Some(""));
        assert_eq!(parameter(None, "member"), None);
    }
}
