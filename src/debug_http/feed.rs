//! The server's copy of its members' events: one subscription per member, a bounded ring of
//! recent events per member, and a live fan-out that drops for a lagging client instead of
//! waiting for it.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Frame;
use tokio::sync::{broadcast, mpsc, watch};

use crate::driver::group::GroupEventRecord;
use crate::group::GroupEvent;

/// Recent events kept per member and class (commit outcomes, everything else), so that a busy
/// member's commits never push its assignments out; replayed to every new reader.
const RING: usize = 1024;
/// Events of each class a reader gets when it connects, across the members it reads (the newest).
const REPLAY: usize = 1024;
/// Live events held for the slowest SSE client before it misses some.
const LIVE: usize = 1024;
/// Frames queued for one SSE connection that the client has not read yet.
const CLIENT_FRAMES: usize = 64;
/// A comment on an idle SSE stream, so that proxies keep it open and a closed one is noticed.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// One event as served: its position in the server's order, its member, its JSON.
#[derive(Clone)]
pub(super) struct Entry {
    pub(super) seq: u64,
    pub(super) member: usize,
    pub(super) json: Bytes,
}

/// A [`GroupEventRecord`] with the label of the member it comes from.
#[derive(serde::Serialize)]
struct Tagged<'a> {
    member: &'a str,
    #[serde(flatten)]
    record: &'a GroupEventRecord,
}

/// The two rings of one member: commit outcomes, and the rest (transitions, assignments, ...).
type MemberRings = [VecDeque<Entry>; 2];

struct Rings {
    next_seq: u64,
    per_member: Vec<MemberRings>,
}

/// Every member's recent events and the live stream of new ones.
pub(super) struct Feed {
    /// Ring appends and live sends happen under this lock, so a reader that copies the rings
    /// and subscribes under it sees every event exactly once.
    rings: Mutex<Rings>,
    live: broadcast::Sender<Entry>,
}

impl Feed {
    pub(super) fn new() -> Self {
        Feed { rings: Mutex::new(Rings { next_seq: 1, per_member: Vec::new() }), live: broadcast::channel(LIVE).0 }
    }

    fn rings(&self) -> MutexGuard<'_, Rings> {
        self.rings.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes room for a member's ring; returns its index.
    pub(super) fn add_member(&self) -> usize {
        let mut rings = self.rings();
        rings.per_member.push(Default::default());
        rings.per_member.len() - 1
    }

    fn publish(&self, member: usize, label: &str, record: &GroupEventRecord) {
        let json = match serde_json::to_vec(&Tagged { member: label, record }) {
            Ok(json) => Bytes::from(json),
            Err(e) => {
                tracing::debug!(member = label, error = %e, "debug server: event not serializable");
                return;
            }
        };
        let mut rings = self.rings();
        let entry = Entry { seq: rings.next_seq, member, json };
        rings.next_seq += 1;
        let class = usize::from(matches!(record.event, GroupEvent::CommitCompleted { .. }));
        if let Some(ring) = rings.per_member.get_mut(member).map(|r| &mut r[class]) {
            if ring.len() == RING {
                ring.pop_front();
            }
            ring.push_back(entry.clone());
        }
        // No receiver is not an error: nobody is watching live.
        let _ = self.live.send(entry);
    }

    /// The newest recent events of the members `wanted` accepts, after `after` (a reconnecting
    /// client's Last-Event-ID), oldest first.
    pub(super) fn recent(&self, wanted: impl Fn(usize) -> bool, after: u64) -> Vec<Entry> {
        newest(&self.rings(), wanted, after)
    }

    /// [`recent`](Self::recent), and a receiver of the live events that follow them.
    pub(super) fn subscribe(
        &self,
        wanted: impl Fn(usize) -> bool,
        after: u64,
    ) -> (Vec<Entry>, broadcast::Receiver<Entry>) {
        let rings = self.rings();
        (newest(&rings, wanted, after), self.live.subscribe())
    }
}

/// The newest [`REPLAY`] entries of each class after `after`, in order.
fn newest(rings: &Rings, wanted: impl Fn(usize) -> bool, after: u64) -> Vec<Entry> {
    let mut recent = Vec::new();
    for class in 0..2 {
        let mut of_class: Vec<&Entry> = rings
            .per_member
            .iter()
            .enumerate()
            .filter(|(member, _)| wanted(*member))
            .flat_map(|(_, rings)| rings[class].iter().filter(|e| e.seq > after))
            .collect();
        of_class.sort_unstable_by_key(|e| e.seq);
        recent.extend(of_class.into_iter().rev().take(REPLAY).cloned());
    }
    recent.sort_unstable_by_key(|e| e.seq);
    recent
}

/// Copies one member's events into the feed until the member stops or the server does.
pub(super) async fn collect(
    feed: std::sync::Arc<Feed>,
    member: usize,
    label: String,
    mut events: broadcast::Receiver<GroupEventRecord>,
    mut stop: watch::Receiver<()>,
) {
    loop {
        let received = tokio::select! {
            _ = stop.changed() => return,
            received = events.recv() => received,
        };
        match received {
            Ok(record) => feed.publish(member, &label, &record),
            // Counted by the member itself (`observer_events_dropped` in its snapshot).
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::debug!(member = label, missed, "debug server: member events missed")
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// An SSE frame of one event; its `id` lets a reconnecting EventSource resume after it.
fn event_frame(entry: &Entry) -> Bytes {
    let mut frame = Vec::with_capacity(entry.json.len() + 32);
    frame.extend_from_slice(format!("id: {}\ndata: ", entry.seq).as_bytes());
    frame.extend_from_slice(&entry.json);
    frame.extend_from_slice(b"\n\n");
    Bytes::from(frame)
}

/// Feeds one SSE client: the replay, then live events. A client that does not read fills its
/// queue; the live stream then overwrites events for it (the member never waits), and it gets
/// a `dropped` event with the count when it reads again.
pub(super) async fn pump(
    recent: Vec<Entry>,
    mut live: broadcast::Receiver<Entry>,
    wanted: impl Fn(usize) -> bool,
    client: mpsc::Sender<Bytes>,
    mut stop: watch::Receiver<()>,
) {
    if !deliver(&client, &mut stop, Bytes::from_static(b"retry: 2000\n\n")).await {
        return;
    }
    for entry in &recent {
        if !deliver(&client, &mut stop, event_frame(entry)).await {
            return;
        }
    }
    drop(recent);
    let mut keep_alive = tokio::time::interval_at(tokio::time::Instant::now() + KEEP_ALIVE, KEEP_ALIVE);
    loop {
        let frame = tokio::select! {
            _ = stop.changed() => return,
            _ = client.closed() => return,
            _ = keep_alive.tick() => Bytes::from_static(b": keep-alive\n\n"),
            received = live.recv() => match received {
                Ok(entry) if wanted(entry.member) => event_frame(&entry),
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    Bytes::from(format!("event: dropped\ndata: {{\"dropped\":{missed}}}\n\n"))
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
        };
        if !deliver(&client, &mut stop, frame).await {
            return;
        }
    }
}

/// Queues a frame for the client, waiting while its queue is full; false once the client or
/// the server is gone.
async fn deliver(client: &mpsc::Sender<Bytes>, stop: &mut watch::Receiver<()>, frame: Bytes) -> bool {
    tokio::select! {
        _ = stop.changed() => false,
        sent = client.send(frame) => sent.is_ok(),
    }
}

/// The queue of one SSE client, as a response body.
pub(super) struct ClientBody(pub(super) mpsc::Receiver<Bytes>);

impl ClientBody {
    pub(super) fn channel() -> (mpsc::Sender<Bytes>, ClientBody) {
        let (tx, rx) = mpsc::channel(CLIENT_FRAMES);
        (tx, ClientBody(rx))
    }
}

impl hyper::body::Body for ClientBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|frame| frame.map(|data| Ok(Frame::data(data))))
    }
}
