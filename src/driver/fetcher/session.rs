//! Incremental fetch sessions (KIP-227), per broker, without IO.
//!
//! The first request of a session is a full fetch with epoch 0; a broker that creates a session
//! answers with its id, and later requests carry `(id, epoch)` with only the partitions whose
//! fetch parameters changed, plus `forgotten_topics_data` for the ones no longer fetched. A
//! broker that answers a full fetch with session id 0 did not create one: from then on every
//! request is a full, sessionless fetch (epoch -1). FETCH_SESSION_ID_NOT_FOUND and
//! INVALID_FETCH_SESSION_EPOCH, a failed request, or any other top-level error start over with a
//! full fetch (which also closes the old session on the broker when its id is known).

use std::collections::BTreeMap;

use crate::group::TopicPartition;
use crate::protocol::error_code::codes::{FETCH_SESSION_ID_NOT_FOUND, INVALID_FETCH_SESSION_EPOCH};

/// Epoch of the request that opens a session.
const INITIAL_EPOCH: i32 = 0;
/// Epoch of a sessionless (always full) request.
const FINAL_EPOCH: i32 = -1;

/// What one partition is fetched with; a change is what an incremental request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPartition {
    /// The offset to fetch from.
    pub fetch_offset: i64,
    /// The leader epoch metadata gives (`current_leader_epoch`: a stale leader refuses).
    pub leader_epoch: i32,
    /// `max.partition.fetch.bytes` for this partition.
    pub max_bytes: i32,
}

/// How requests to one broker are made at the moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum SessionMode {
    /// No session yet: the next request is a full fetch that asks for one (epoch 0).
    Opening,
    /// A session is open: requests are incremental.
    Incremental {
        /// The session's id, as the broker gave it.
        session_id: i32,
        /// The epoch of the next request.
        epoch: i32,
    },
    /// The broker does not keep sessions (or the negotiated Fetch version predates them): every
    /// request is full, with epoch -1.
    Sessionless,
}

/// One request's session fields and partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRequest {
    /// The request's `session_id`.
    pub session_id: i32,
    /// The request's `session_epoch`.
    pub epoch: i32,
    /// Whether this is a full fetch (every wanted partition sent).
    pub full: bool,
    /// The partitions to put in `topics`.
    pub send: Vec<(TopicPartition, SessionPartition)>,
    /// The partitions to put in `forgotten_topics_data`.
    pub forgotten: Vec<TopicPartition>,
    /// Everything fetched by this request: the session's content once the broker accepts it.
    pub wanted: BTreeMap<TopicPartition, SessionPartition>,
}

/// What the caller should do after a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionOutcome {
    /// The response's partitions are valid.
    Accepted,
    /// The broker lost or rejected the session; the response carries no partition data. Send a
    /// full fetch right away.
    Restart,
    /// Some other top-level error: back off, then a full fetch.
    Failed,
}

/// Session bookkeeping for one broker.
#[derive(Debug, Clone)]
pub struct FetchSession {
    /// The open session's id, or the one to close with the next full fetch.
    id: i32,
    /// The epoch of the next incremental request; only meaningful while `open`.
    epoch: i32,
    open: bool,
    sessionless: bool,
    /// The partitions the broker's session holds, with what it fetches them with.
    partitions: BTreeMap<TopicPartition, SessionPartition>,
}

impl Default for FetchSession {
    fn default() -> Self {
        FetchSession { id: 0, epoch: INITIAL_EPOCH, open: false, sessionless: false, partitions: BTreeMap::new() }
    }
}

impl FetchSession {
    /// How the next request is made.
    pub fn mode(&self) -> SessionMode {
        if self.sessionless {
            SessionMode::Sessionless
        } else if self.open {
            SessionMode::Incremental { session_id: self.id, epoch: self.epoch }
        } else {
            SessionMode::Opening
        }
    }

    /// The request fetching `wanted`. `sessions_supported`: the negotiated Fetch version is 7
    /// or more.
    pub fn build(
        &self,
        wanted: BTreeMap<TopicPartition, SessionPartition>,
        sessions_supported: bool,
    ) -> SessionRequest {
        let full_request = |session_id, epoch| SessionRequest {
            session_id,
            epoch,
            full: true,
            send: wanted.iter().map(|(tp, p)| (tp.clone(), *p)).collect(),
            forgotten: Vec::new(),
            wanted: wanted.clone(),
        };
        if !sessions_supported || self.sessionless {
            return full_request(0, FINAL_EPOCH);
        }
        if !self.open {
            // A known id here is a session to close while opening the new one.
            return full_request(self.id, INITIAL_EPOCH);
        }
        let send = wanted.iter().filter(|(tp, p)| self.partitions.get(*tp) != Some(*p)).map(|(tp, p)| (tp.clone(), *p));
        let forgotten = self.partitions.keys().filter(|tp| !wanted.contains_key(*tp)).cloned().collect();
        SessionRequest {
            session_id: self.id,
            epoch: self.epoch,
            full: false,
            send: send.collect(),
            forgotten,
            wanted: wanted.clone(),
        }
    }

    /// Takes in the answer to `request`: the response's top-level error code and session id.
    pub fn on_response(&mut self, request: &SessionRequest, error_code: i16, session_id: i32) -> SessionOutcome {
        match error_code {
            0 => {}
            FETCH_SESSION_ID_NOT_FOUND => {
                // The broker has no such session (evicted, or it restarted): nothing to close.
                self.reset(0);
                return SessionOutcome::Restart;
            }
            INVALID_FETCH_SESSION_EPOCH => {
                self.reset(request.session_id);
                return SessionOutcome::Restart;
            }
            _ => {
                self.reset(request.session_id);
                return SessionOutcome::Failed;
            }
        }
        if request.epoch == FINAL_EPOCH {
            // Sessionless by choice (or by version): nothing to track.
            return SessionOutcome::Accepted;
        }
        if session_id == 0 {
            if request.full {
                // Asked for a session and got none: this broker does not keep them.
                self.sessionless = true;
            }
            // An incremental answer without id: the broker closed the session; start over.
            self.reset(0);
            return SessionOutcome::Accepted;
        }
        self.id = session_id;
        self.open = true;
        self.epoch = if request.full { 1 } else { next_epoch(request.epoch) };
        self.partitions = request.wanted.clone();
        SessionOutcome::Accepted
    }

    /// The request failed (connection lost, timeout): the next one is full and closes the old
    /// session if there was one.
    pub fn on_failure(&mut self, request: &SessionRequest) {
        let id = if self.open { self.id } else { request.session_id };
        self.reset(id);
    }

    /// A new connection: a broker that declined sessions is asked again (its session cache
    /// may have had room to spare since).
    pub fn on_reconnect(&mut self) {
        if self.sessionless {
            *self = FetchSession::default();
        }
    }

    fn reset(&mut self, id_to_close: i32) {
        self.id = id_to_close;
        self.open = false;
        self.epoch = INITIAL_EPOCH;
        self.partitions.clear();
    }
}

/// Epochs run from 1 to `i32::MAX`, then wrap to 1 (0 and -1 have their own meanings).
fn next_epoch(epoch: i32) -> i32 {
    if (1..i32::MAX).contains(&epoch) {
        epoch + 1
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(p: i32) -> TopicPartition {
        TopicPartition::new("t", p)
    }

    fn at(offset: i64) -> SessionPartition {
        SessionPartition { fetch_offset: offset, leader_epoch: 0, max_bytes: 1024 }
    }

    fn wanted(parts: &[(i32, i64)]) -> BTreeMap<TopicPartition, SessionPartition> {
        parts.iter().map(|&(p, o)| (tp(p), at(o))).collect()
    }

    fn sent(req: &SessionRequest) -> Vec<(i32, i64)> {
        req.send.iter().map(|(tp, p)| (tp.partition, p.fetch_offset)).collect()
    }

    #[test]
    fn full_then_incremental_with_only_changes_and_forgotten_partitions() {
        let mut s = FetchSession::default();
        assert_eq!(s.mode(), SessionMode::Opening);
        let r1 = s.build(wanted(&[(0, 10), (1, 20), (2, 30)]), true);
        assert_eq!((r1.session_id, r1.epoch, r1.full), (0, 0, true));
        assert_eq!(sent(&r1), vec![(0, 10), (1, 20), (2, 30)]);
        assert_eq!(s.on_response(&r1, 0, 77), SessionOutcome::Accepted);
        assert_eq!(s.mode(), SessionMode::Incremental { session_id: 77, epoch: 1 });

        // Partition 0 got data (offset moved), 1 did not, 2 was revoked, 3 is new.
        let r2 = s.build(wanted(&[(0, 15), (1, 20), (3, 0)]), true);
        assert_eq!((r2.session_id, r2.epoch, r2.full), (77, 1, false));
        assert_eq!(sent(&r2), vec![(0, 15), (3, 0)]);
        assert_eq!(r2.forgotten, vec![tp(2)]);
        assert_eq!(s.on_response(&r2, 0, 77), SessionOutcome::Accepted);
        assert_eq!(s.mode(), SessionMode::Incremental { session_id: 77, epoch: 2 });

        // Nothing changed: an empty incremental request still fetches the session.
        let r3 = s.build(wanted(&[(0, 15), (1, 20), (3, 0)]), true);
        assert!(r3.send.is_empty() && r3.forgotten.is_empty());
        assert_eq!(r3.epoch, 2);
        // A changed max bytes or leader epoch counts as a change.
        let mut w = wanted(&[(0, 15), (1, 20), (3, 0)]);
        w.get_mut(&tp(1)).unwrap().leader_epoch = 4;
        assert_eq!(sent(&s.build(w, true)), vec![(1, 20)]);
    }

    #[test]
    fn session_errors_restart_with_a_full_fetch() {
        let mut s = FetchSession::default();
        let r1 = s.build(wanted(&[(0, 0)]), true);
        s.on_response(&r1, 0, 5);
        let r2 = s.build(wanted(&[(0, 3)]), true);
        // FETCH_SESSION_ID_NOT_FOUND: new session from scratch.
        assert_eq!(s.on_response(&r2, FETCH_SESSION_ID_NOT_FOUND, 0), SessionOutcome::Restart);
        let r3 = s.build(wanted(&[(0, 3), (1, 0)]), true);
        assert_eq!((r3.session_id, r3.epoch, r3.full), (0, 0, true));
        assert_eq!(sent(&r3), vec![(0, 3), (1, 0)]);
        s.on_response(&r3, 0, 6);
        let r4 = s.build(wanted(&[(0, 3), (1, 0)]), true);
        assert_eq!((r4.session_id, r4.epoch), (6, 1));
        // INVALID_FETCH_SESSION_EPOCH: full fetch that closes session 6 and opens a new one.
        assert_eq!(s.on_response(&r4, INVALID_FETCH_SESSION_EPOCH, 0), SessionOutcome::Restart);
        let r5 = s.build(wanted(&[(0, 3), (1, 0)]), true);
        assert_eq!((r5.session_id, r5.epoch, r5.full), (6, 0, true));
        assert_eq!(r5.send.len(), 2);
        assert_eq!(s.on_response(&r5, 0, 9), SessionOutcome::Accepted);
        assert_eq!(s.mode(), SessionMode::Incremental { session_id: 9, epoch: 1 });
        // Any other top-level error: back off, then full.
        let r6 = s.build(wanted(&[(0, 3)]), true);
        assert_eq!(s.on_response(&r6, 7, 0), SessionOutcome::Failed);
        assert!(s.build(wanted(&[(0, 3)]), true).full);
    }

    #[test]
    fn a_failed_request_closes_the_session_with_the_next_full_fetch() {
        let mut s = FetchSession::default();
        let r1 = s.build(wanted(&[(0, 0)]), true);
        s.on_response(&r1, 0, 42);
        let r2 = s.build(wanted(&[(0, 8)]), true);
        s.on_failure(&r2);
        let r3 = s.build(wanted(&[(0, 8)]), true);
        assert_eq!((r3.session_id, r3.epoch, r3.full), (42, 0, true));
        assert_eq!(sent(&r3), vec![(0, 8)]);
    }

    #[test]
    fn session_id_zero_means_sessionless_from_then_on() {
        let mut s = FetchSession::default();
        let r1 = s.build(wanted(&[(0, 0), (1, 0)]), true);
        assert_eq!(r1.epoch, 0);
        assert_eq!(s.on_response(&r1, 0, 0), SessionOutcome::Accepted);
        assert_eq!(s.mode(), SessionMode::Sessionless);
        for round in 0..3 {
            let r = s.build(wanted(&[(0, round), (1, 0)]), true);
            assert_eq!((r.session_id, r.epoch, r.full), (0, -1, true));
            assert_eq!(r.send.len(), 2, "every partition, every time");
            assert!(r.forgotten.is_empty());
            assert_eq!(s.on_response(&r, 0, 0), SessionOutcome::Accepted);
        }
        s.on_reconnect();
        assert_eq!(s.build(wanted(&[(0, 0)]), true).epoch, 0, "a new connection tries again");
    }

    #[test]
    fn versions_before_7_are_always_sessionless() {
        let s = FetchSession::default();
        let r = s.build(wanted(&[(0, 1)]), false);
        assert_eq!((r.session_id, r.epoch, r.full), (0, -1, true));
    }

    #[test]
    fn an_incremental_answer_without_id_starts_over() {
        let mut s = FetchSession::default();
        let r1 = s.build(wanted(&[(0, 0)]), true);
        s.on_response(&r1, 0, 3);
        let r2 = s.build(wanted(&[(0, 1)]), true);
        assert_eq!(s.on_response(&r2, 0, 0), SessionOutcome::Accepted);
        assert_eq!(s.mode(), SessionMode::Opening, "not sessionless: the broker did keep one");
        assert_eq!(s.build(wanted(&[(0, 1)]), true).epoch, 0);
    }

    #[test]
    fn epochs_wrap_to_one() {
        assert_eq!(next_epoch(1), 2);
        assert_eq!(next_epoch(i32::MAX), 1);
    }
}
