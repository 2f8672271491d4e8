//! A sans-IO, Kafka-3.6-faithful scripted group coordinator.
//!
//! This models the **old Scala `GroupCoordinator`** of Apache Kafka 3.6 (the default for
//! classic groups, spec §1) closely enough to serve as the peer of the client's group state
//! machine in deterministic tests. Section numbers in comments refer to
//! `kafka36-group-semantics.md`; `GC`, `GM`, ... line numbers refer to Kafka 3.6.0 sources.
//!
//! * **Virtual time.** Every entry point takes `now`; nothing reads a clock. Timers (sessions,
//!   pending members, `InitialDelayedJoin`, `DelayedJoin`, `DelayedSync`, delayed responses)
//!   fire in [`ScriptedCoordinator::handle_timeout`] at their own deadlines, and any overdue
//!   timer fires before a later input is handled.
//! * **One request at a time per connection**, like Kafka's muted channels: while a request of
//!   a connection is unanswered (a parked JoinGroup/SyncGroup, a delayed or dropped response),
//!   later requests of that connection queue and are handled in order after its response goes
//!   out. A commit pipelined behind the same connection's JoinGroup is therefore judged after
//!   the join completed (DESIGN.md §4).
//! * **Oracle.** Every accepted commit is recorded with the owner of the partition in the
//!   committed generation, according to the assignment the leader stored in SyncGroup.
//!
//! * **Transactions**, just enough for transactional offsets (T51): a minimal transaction
//!   coordinator (InitProducerId, AddOffsetsToTxn, EndTxn) and TxnOffsetCommit, whose offsets
//!   stay pending (UNSTABLE_OFFSET_COMMIT under RequireStable) until EndTxn.
//! * **A second broker**: with [`CoordinatorConfig::coordinator`] set, this node coordinates no
//!   group (NOT_COORDINATOR, T03/T38) and FindCoordinator names the other node.
//!
//! Not modelled (deliberately): ACLs and inter-broker-protocol checks; offset retention and
//! the expiry sweep that deletes Empty groups without offsets; DeleteGroups and OffsetDelete;
//! transaction timeouts and asynchronous markers; failed log appends (use
//! [`FaultAction::Error`]). Produce, Fetch, ListOffsets and CreateTopics are advertised for
//! version negotiation but not served: such a request closes the connection.
//! LeaveGroup v0-2 follows 3.6.1+ (KAFKA-15755), not 3.6.0's UNSUPPORTED_VERSION (T38): the
//! project targets cp-kafka 7.6.x, built from Kafka's 3.6 branch after 3.6.1.

mod admin;
mod consumer_group;
mod faults;
mod group;
mod membership;
mod offsets;
mod responses;
mod transactions;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};

pub use consumer_group::{topic_id, ConsumerGroupView, ConsumerMemberView, Kip848};
pub use faults::{Fault, FaultAction, Match};
pub use offsets::{decode_assignment, CommitRecord};

use consumer_group::ConsumerGroup;
use faults::ActiveFault;
use group::{Group, StoredGroup};
use offsets::{PendingCommit, StoredOffset};
use transactions::Transaction;

/// Kafka error codes, by name: the client's own vocabulary (spec §2.2).
pub use kgroup::protocol::error_code::codes as errors;

/// Partitions per member id, as decoded from the assignment a leader stored in SyncGroup.
pub type Assignment = BTreeMap<String, Vec<(String, i32)>>;

/// A request as it arrived, for tests that check what a client sent (the conformance suite's
/// client-reaction cases).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedRequest {
    pub conn: ConnId,
    pub api: ApiKey,
    /// The group id (FindCoordinator: the key).
    pub group: Option<String>,
    /// The member id of a JoinGroup, SyncGroup, Heartbeat or OffsetCommit.
    pub member_id: Option<String>,
    /// The generation of a SyncGroup, Heartbeat or OffsetCommit.
    pub generation: Option<i32>,
}

/// One client TCP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// Broker settings (spec §3). `Default` gives Kafka's defaults, no topics, node 0 at
/// `127.0.0.1:9092`.
#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    /// `group.initial.rebalance.delay.ms` (3 s).
    pub initial_rebalance_delay: Duration,
    /// `group.min.session.timeout.ms` (6 s).
    pub min_session_timeout: Duration,
    /// `group.max.session.timeout.ms` (30 min).
    pub max_session_timeout: Duration,
    /// `group.max.size` (`i32::MAX`).
    pub max_group_size: usize,
    /// The hard-coded `NewMemberJoinTimeoutMs` (5 min, GC 1710).
    pub new_member_join_timeout: Duration,
    /// `offset.metadata.max.bytes` (4096).
    pub offset_metadata_max_bytes: usize,
    /// Existing topics and their partition counts (OffsetCommit checks them first, §6.6).
    pub topics: BTreeMap<String, i32>,
    pub node_id: i32,
    pub host: String,
    pub port: i32,
    /// `Some`: another broker of the cluster leads `__consumer_offsets`, so this one answers
    /// group requests with NOT_COORDINATOR and FindCoordinator names that node (until
    /// [`ScriptedCoordinator::set_loading`] elects this one). `None`: this node coordinates.
    pub coordinator: Option<Node>,
    /// KIP-848's consumer protocol (Kafka 4): ConsumerGroupHeartbeat and OffsetCommit v9 are
    /// advertised and served. `None`: Kafka 3.6, classic groups only.
    pub consumer_protocol: Option<Kip848>,
}

/// A broker as FindCoordinator and Metadata name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub id: i32,
    pub host: String,
    pub port: i32,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        CoordinatorConfig {
            initial_rebalance_delay: Duration::from_millis(3000),
            min_session_timeout: Duration::from_millis(6000),
            max_session_timeout: Duration::from_millis(1_800_000),
            max_group_size: i32::MAX as usize,
            new_member_join_timeout: Duration::from_millis(300_000),
            offset_metadata_max_bytes: 4096,
            topics: BTreeMap::new(),
            node_id: 0,
            host: "127.0.0.1".to_string(),
            port: 9092,
            coordinator: None,
            consumer_protocol: None,
        }
    }
}

/// Something for the transport to do.
// Responses are moved out once each; boxing them would only cost an allocation per response.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Outgoing {
    /// Send this response on `conn`.
    Response { conn: ConnId, correlation_id: i32, api_version: i16, response: ResponseKind },
    /// Close `conn` (an injected cut, or a request version the broker does not support).
    Cut { conn: ConnId },
}

impl Outgoing {
    pub fn conn(&self) -> ConnId {
        match self {
            Outgoing::Response { conn, .. } | Outgoing::Cut { conn } => *conn,
        }
    }
}

/// A snapshot of one group, for assertions.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupView {
    pub group_id: String,
    /// `Empty`, `PreparingRebalance`, `CompletingRebalance`, `Stable` or `Dead`.
    pub state: &'static str,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub members: Vec<MemberView>,
    /// Member ids handed out with MEMBER_ID_REQUIRED and not yet joined.
    pub pending_members: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MemberView {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub assignment: Bytes,
    pub awaiting_join: bool,
    pub awaiting_sync: bool,
}

/// Where and how a response goes.
#[derive(Debug, Clone)]
pub(crate) struct ReplyTo {
    conn: ConnId,
    epoch: u64,
    correlation_id: i32,
    api_version: i16,
    post: Post,
}

impl ReplyTo {
    pub(crate) fn version(&self) -> i16 {
        self.api_version
    }

    pub(crate) fn is_delayed(&self) -> bool {
        matches!(self.post, Post::Delay(_))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Post {
    Send,
    Delay(Duration),
    Drop,
    CutAfter,
    /// Sent as a JoinGroup answer naming this protocol type.
    ProtocolType(&'static str),
}

#[derive(Debug)]
struct Incoming {
    client_id: String,
    correlation_id: i32,
    api_version: i16,
    request: RequestKind,
}

#[derive(Debug, Default)]
struct Conn {
    /// Bumped on disconnect or cut; replies of an older epoch are discarded.
    epoch: u64,
    /// A request of this connection is unanswered: the channel is muted.
    busy: bool,
    queue: VecDeque<Incoming>,
}

#[derive(Debug)]
struct DelayedOutput {
    at: Instant,
    seq: u64,
    reply: ReplyTo,
    response: ResponseKind,
    commit: Option<PendingCommit>,
}

/// Ownership of the (single) `__consumer_offsets` partition all groups map to (§9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Partition {
    Owned,
    Unowned,
    Loading,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum TimerRef {
    Delayed(u64),
    Heartbeat(String, String),
    Pending(String, String),
    Sync(String),
    Join(String),
    /// A consumer-protocol member's session or revocation deadline.
    ConsumerMember(String, String),
}

/// Which API a `validateGroupStatus` call is for (GC 1111-1137).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GroupApi {
    Join,
    Sync,
    Heartbeat,
    Leave,
    OffsetCommit,
    OffsetFetch,
    Describe,
}

/// The scripted coordinator. See the module documentation.
#[derive(Debug)]
pub struct ScriptedCoordinator {
    config: CoordinatorConfig,
    groups: BTreeMap<String, Group>,
    /// Consumer-protocol groups (KIP-848).
    consumer_groups: BTreeMap<String, ConsumerGroup>,
    /// Group records as last written to the log (§4.1), for reloads.
    log: BTreeMap<String, StoredGroup>,
    /// Materialized offsets per group (the log and the cache; they survive unloads).
    offsets: BTreeMap<String, BTreeMap<(String, i32), StoredOffset>>,
    /// The offsets log's end: commits are appended in the order they are handled.
    offsets_log_end: u64,
    /// Commits still "being appended" (a delayed OffsetCommit), per group and partition.
    pending_offsets: BTreeMap<(String, String, i32), u32>,
    commits: Vec<CommitRecord>,
    /// Transactions by transactional id.
    transactions: BTreeMap<String, Transaction>,
    /// Transactional offsets awaiting their transaction's end, per (group, producer id).
    txn_offsets: BTreeMap<(String, i64), BTreeMap<(String, i32), StoredOffset>>,
    next_producer_id: i64,
    history: BTreeMap<String, Vec<(i32, Assignment)>>,
    conns: HashMap<ConnId, Conn>,
    outgoing: VecDeque<Outgoing>,
    unmuted: VecDeque<ConnId>,
    delayed: Vec<DelayedOutput>,
    faults: Vec<ActiveFault>,
    /// Answers held until their connection's next request arrives ([`FaultAction::ErrorWhenNext`]).
    held: HashMap<ConnId, (ReplyTo, ResponseKind)>,
    /// Kept once [`Self::log_requests`] was called.
    requests: Option<Vec<LoggedRequest>>,
    partition: Partition,
    seq: u64,
    rng: u64,
}

impl ScriptedCoordinator {
    pub fn new(config: CoordinatorConfig, now: Instant) -> Self {
        let _ = now;
        let partition = if config.coordinator.is_some() { Partition::Unowned } else { Partition::Owned };
        ScriptedCoordinator {
            config,
            groups: BTreeMap::new(),
            consumer_groups: BTreeMap::new(),
            log: BTreeMap::new(),
            offsets: BTreeMap::new(),
            offsets_log_end: 0,
            pending_offsets: BTreeMap::new(),
            commits: Vec::new(),
            transactions: BTreeMap::new(),
            txn_offsets: BTreeMap::new(),
            next_producer_id: 1000,
            history: BTreeMap::new(),
            conns: HashMap::new(),
            outgoing: VecDeque::new(),
            unmuted: VecDeque::new(),
            delayed: Vec::new(),
            faults: Vec::new(),
            held: HashMap::new(),
            requests: None,
            partition,
            seq: 0,
            rng: 0x6b67_726f_7570_2d36,
        }
    }

    pub fn config(&self) -> &CoordinatorConfig {
        &self.config
    }

    /// A decoded request arrived on `conn` (client id `""`). Answers, immediate or later, come
    /// out of [`Self::poll_response`].
    pub fn handle_request(
        &mut self,
        now: Instant,
        conn: ConnId,
        correlation_id: i32,
        api_version: i16,
        request: RequestKind,
    ) {
        self.handle_request_with_client_id(now, conn, "", correlation_id, api_version, request);
    }

    /// As [`Self::handle_request`], with the request header's client id (dynamic member ids
    /// are `"<clientId>-<uuid>"`).
    pub fn handle_request_with_client_id(
        &mut self,
        now: Instant,
        conn: ConnId,
        client_id: &str,
        correlation_id: i32,
        api_version: i16,
        request: RequestKind,
    ) {
        self.fire_due(now);
        if let (Some(log), Some(api)) = (self.requests.as_mut(), api_key(&request)) {
            let (group, members) = faults::request_identity(&request);
            let member_id = members.into_iter().next().filter(|_| api != ApiKey::LeaveGroup);
            let generation = request_generation(&request);
            log.push(LoggedRequest { conn, api, group, member_id, generation });
        }
        let incoming = Incoming { client_id: client_id.to_string(), correlation_id, api_version, request };
        let c = self.conns.entry(conn).or_default();
        if c.busy {
            c.queue.push_back(incoming);
            if let Some((reply, response)) = self.held.remove(&conn) {
                self.emit(now, reply, response, None);
            }
        } else {
            c.busy = true;
            self.process(now, conn, incoming);
        }
        self.pump(now);
        self.fire_due(now);
    }

    /// Fires every timer due at `now`, each at its own deadline. Every other entry point also
    /// fires due timers before and after handling its input, so a zero delay completes at once.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.fire_due(now);
    }

    /// The client closed `conn`: its queued requests are dropped and answers to its parked
    /// requests are discarded. Members are **not** removed: a parked JoinGroup still counts as
    /// a rejoin, as in Kafka; only session expiry removes members.
    pub fn handle_disconnect(&mut self, now: Instant, conn: ConnId) {
        self.fire_due(now);
        self.close(conn);
        self.pump(now);
        self.fire_due(now);
    }

    pub fn poll_response(&mut self) -> Option<Outgoing> {
        self.outgoing.pop_front()
    }

    /// The earliest pending timer.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_timer().map(|(at, _)| at)
    }

    pub fn inject(&mut self, fault: Fault) {
        self.faults.push(ActiveFault { fault, seen: 0 });
    }

    pub fn clear_faults(&mut self) {
        self.faults.clear();
    }

    /// Simulates a coordinator failover (§9). `true`: the partition is (re)elected and loading;
    /// groups still cached are unloaded first (parked Join/Sync get NOT_COORDINATOR). While
    /// loading, JoinGroup and OffsetCommit get COORDINATOR_LOAD_IN_PROGRESS, SyncGroup
    /// REBALANCE_IN_PROGRESS, Heartbeat NONE, OffsetFetch a group-level LOAD_IN_PROGRESS.
    /// `false`: loading completes; groups come back from the log as Stable (with their stored
    /// members, selected protocol only) or Empty, with every session re-armed (GC 1165-1176).
    pub fn set_loading(&mut self, now: Instant, loading: bool) {
        self.fire_due(now);
        if loading {
            if self.partition == Partition::Owned {
                self.unload_groups(now);
            }
            self.partition = Partition::Loading;
        } else if self.partition != Partition::Owned {
            self.load_groups(now);
            self.partition = Partition::Owned;
        }
        self.pump(now);
        self.fire_due(now);
    }

    /// The coordinator resigns (§9, GC 1139-1163): every group becomes Dead, parked JoinGroups
    /// and SyncGroups get NOT_COORDINATOR, later group requests get NOT_COORDINATOR until
    /// [`Self::set_loading`] elects it again.
    pub fn unload(&mut self, now: Instant) {
        self.fire_due(now);
        if self.partition == Partition::Owned {
            self.unload_groups(now);
        }
        self.partition = Partition::Unowned;
        self.pump(now);
        self.fire_due(now);
    }

    pub fn describe(&self, group: &str) -> Option<GroupView> {
        let g = self.groups.get(group)?;
        Some(GroupView {
            group_id: g.id.clone(),
            state: g.state.name(),
            generation: g.generation,
            protocol_type: g.protocol_type.clone(),
            protocol: g.protocol_name.clone(),
            leader: g.leader.clone(),
            members: g
                .members
                .iter()
                .map(|m| MemberView {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    assignment: m.assignment.clone(),
                    awaiting_join: m.is_awaiting_join(),
                    awaiting_sync: m.is_awaiting_sync(),
                })
                .collect(),
            pending_members: g.pending_members.keys().cloned().collect(),
        })
    }

    /// The materialized committed offset.
    pub fn committed(&self, group: &str, topic: &str, partition: i32) -> Option<i64> {
        self.offsets.get(group)?.get(&(topic.to_string(), partition)).map(|s| s.entry.offset)
    }

    /// Every commit the coordinator accepted, with the partition's owner in that generation.
    pub fn accepted_commits(&self) -> &[CommitRecord] {
        &self.commits
    }

    /// Each assignment the leader stored, in order (a static member replacement re-stores the
    /// same generation under the new member id).
    pub fn assignment_history(&self, group: &str) -> Vec<(i32, Assignment)> {
        self.history.get(group).cloned().unwrap_or_default()
    }

    /// Starts logging every request received (off by default: long simulations would pile
    /// them up).
    pub fn log_requests(&mut self) {
        self.requests.get_or_insert_with(Vec::new);
    }

    /// The requests received since [`Self::log_requests`], in arrival order (queued ones
    /// included).
    pub fn requests(&self) -> &[LoggedRequest] {
        self.requests.as_deref().unwrap_or_default()
    }

    /// Is a request of `conn` unanswered (the channel muted)?
    pub fn is_muted(&self, conn: ConnId) -> bool {
        self.conns.get(&conn).map(|c| c.busy).unwrap_or(false)
    }

    /// Requests of `conn` waiting behind the unanswered one.
    pub fn queued_requests(&self, conn: ConnId) -> usize {
        self.conns.get(&conn).map(|c| c.queue.len()).unwrap_or(0)
    }

    // ----------------------------------------------------------------------------------
    // Connections and responses

    fn process(&mut self, now: Instant, conn: ConnId, incoming: Incoming) {
        let Incoming { client_id, correlation_id, api_version, request } = incoming;
        let epoch = self.conns.get(&conn).map(|c| c.epoch).unwrap_or(0);
        let mut reply = ReplyTo { conn, epoch, correlation_id, api_version, post: Post::Send };

        let Some(api) = api_key(&request) else {
            // Not served by this scripted broker: Kafka closes the connection for APIs it
            // does not enable.
            self.cut(conn);
            return;
        };
        if api == ApiKey::ApiVersions && api_version > 3 {
            // KafkaApis answers an unsupported ApiVersions version with a v0 response.
            reply.api_version = 0;
            let response = admin::api_versions(&self.config, errors::UNSUPPORTED_VERSION);
            self.emit(now, reply, ResponseKind::ApiVersions(response), None);
            return;
        }
        match advertised_range(&self.config, api) {
            Some((min, max)) if (min..=max).contains(&api_version) => {}
            // A version the broker does not advertise: the socket server closes the
            // connection (§2.1).
            _ => {
                self.cut(conn);
                return;
            }
        }

        match self.match_fault(api, &request) {
            Some(FaultAction::Error(code)) => {
                match faults::error_response(&request, api_version, code) {
                    Some(response) => self.emit(now, reply, response, None),
                    None => self.cut(conn),
                }
                return;
            }
            Some(FaultAction::ErrorWhenNext(code)) => {
                match faults::error_response(&request, api_version, code) {
                    Some(response) => {
                        self.held.insert(conn, (reply, response));
                    }
                    None => self.cut(conn),
                }
                return;
            }
            Some(FaultAction::Cut) => {
                self.cut(conn);
                return;
            }
            Some(FaultAction::ProtocolType(protocol_type)) => reply.post = Post::ProtocolType(protocol_type),
            Some(FaultAction::Delay(d)) => reply.post = Post::Delay(d),
            Some(FaultAction::Drop) => reply.post = Post::Drop,
            Some(FaultAction::ProcessThenCut) => reply.post = Post::CutAfter,
            None => {}
        }

        let cut_after = reply.post == Post::CutAfter;
        self.dispatch(now, reply, &client_id, request);
        // A request parked by ProcessThenCut still gets its connection closed now.
        if cut_after && self.conns.get(&conn).map(|c| c.epoch) == Some(epoch) {
            self.cut(conn);
        }
    }

    fn dispatch(&mut self, now: Instant, reply: ReplyTo, client_id: &str, request: RequestKind) {
        let (conn, api_version) = (reply.conn, reply.api_version);
        match request {
            RequestKind::ApiVersions(_) => {
                let response = admin::api_versions(&self.config, errors::NONE);
                self.emit(now, reply, ResponseKind::ApiVersions(response), None);
            }
            RequestKind::Metadata(r) => {
                let response = admin::metadata(&self.config, api_version, &r);
                self.emit(now, reply, ResponseKind::Metadata(response), None);
            }
            RequestKind::FindCoordinator(r) => {
                let response = admin::find_coordinator(self.coordinator_node(), api_version, &r);
                self.emit(now, reply, ResponseKind::FindCoordinator(response), None);
            }
            RequestKind::DescribeGroups(r) => {
                let response = self.describe_groups(api_version, &r);
                self.emit(now, reply, ResponseKind::DescribeGroups(response), None);
            }
            RequestKind::ListGroups(r) => {
                let response = self.list_groups(api_version, &r);
                self.emit(now, reply, ResponseKind::ListGroups(response), None);
            }
            RequestKind::JoinGroup(r) => self.handle_join_group(now, reply, client_id, r),
            RequestKind::SyncGroup(r) => self.handle_sync_group(now, reply, r),
            RequestKind::Heartbeat(r) => self.handle_heartbeat(now, reply, r),
            RequestKind::LeaveGroup(r) => self.handle_leave_group(now, reply, r),
            RequestKind::OffsetCommit(r) => self.handle_offset_commit(now, reply, r),
            RequestKind::ConsumerGroupHeartbeat(r) => self.handle_consumer_heartbeat(now, reply, r),
            RequestKind::OffsetFetch(r) => self.handle_offset_fetch(now, reply, r),
            RequestKind::InitProducerId(r) => self.handle_init_producer_id(now, reply, r),
            RequestKind::AddOffsetsToTxn(r) => self.handle_add_offsets_to_txn(now, reply, r),
            RequestKind::TxnOffsetCommit(r) => self.handle_txn_offset_commit(now, reply, r),
            RequestKind::EndTxn(r) => self.handle_end_txn(now, reply, r),
            _ => self.cut(conn),
        }
    }

    fn match_fault(&mut self, api: ApiKey, request: &RequestKind) -> Option<FaultAction> {
        let (group, members) = faults::request_identity(request);
        let mut chosen: Option<usize> = None;
        for (idx, active) in self.faults.iter_mut().enumerate() {
            if active.fault.api != api {
                continue;
            }
            active.seen += 1;
            if chosen.is_none()
                && active.fault.remaining != Some(0)
                && faults::matches(&active.fault.matcher, active.seen, group.as_deref(), &members)
            {
                chosen = Some(idx);
            }
        }
        let idx = chosen?;
        let action = self.faults[idx].fault.action.clone();
        if let Some(n) = self.faults[idx].fault.remaining.as_mut() {
            *n = n.saturating_sub(1);
        }
        Some(action)
    }

    /// Sends (or delays, drops, cuts) the answer to `reply`. A pending commit is materialized
    /// when the answer leaves the broker.
    fn emit(&mut self, now: Instant, reply: ReplyTo, mut response: ResponseKind, commit: Option<PendingCommit>) {
        let live = self.conns.get(&reply.conn).map(|c| c.epoch == reply.epoch).unwrap_or(false);
        if let (Post::Delay(d), true) = (reply.post, live) {
            self.seq += 1;
            self.delayed.push(DelayedOutput {
                at: now + d,
                seq: self.seq,
                reply: ReplyTo { post: Post::Send, ..reply },
                response,
                commit,
            });
            return;
        }
        if let Some(commit) = commit {
            self.materialize(commit);
        }
        if !live {
            return;
        }
        if let (Post::ProtocolType(protocol_type), ResponseKind::JoinGroup(r)) = (reply.post, &mut response) {
            if r.error_code == errors::NONE {
                r.protocol_type = Some(kafka_protocol::protocol::StrBytes::from_static_str(protocol_type));
            }
        }
        match reply.post {
            Post::Send | Post::Delay(_) | Post::ProtocolType(_) => {
                self.outgoing.push_back(Outgoing::Response {
                    conn: reply.conn,
                    correlation_id: reply.correlation_id,
                    api_version: reply.api_version,
                    response,
                });
                if let Some(c) = self.conns.get_mut(&reply.conn) {
                    c.busy = false;
                }
                self.unmuted.push_back(reply.conn);
            }
            // Never answered: the channel stays muted.
            Post::Drop => {}
            Post::CutAfter => self.cut(reply.conn),
        }
    }

    fn cut(&mut self, conn: ConnId) {
        self.outgoing.push_back(Outgoing::Cut { conn });
        self.close(conn);
    }

    fn close(&mut self, conn: ConnId) {
        self.held.remove(&conn);
        let c = self.conns.entry(conn).or_default();
        c.epoch += 1;
        c.busy = false;
        c.queue.clear();
    }

    /// Handles queued requests of connections whose answer just went out (in order).
    fn pump(&mut self, now: Instant) {
        while let Some(conn) = self.unmuted.pop_front() {
            let next = match self.conns.get_mut(&conn) {
                Some(c) if !c.busy => match c.queue.pop_front() {
                    Some(next) => {
                        c.busy = true;
                        next
                    }
                    None => continue,
                },
                _ => continue,
            };
            self.process(now, conn, next);
        }
    }

    // ----------------------------------------------------------------------------------
    // Timers

    fn next_timer(&self) -> Option<(Instant, TimerRef)> {
        let mut best: Option<(Instant, TimerRef)> = None;
        let mut consider = |at: Instant, r: TimerRef| {
            let better = match &best {
                None => true,
                Some((b_at, b_ref)) => (at, &r) < (*b_at, b_ref),
            };
            if better {
                best = Some((at, r));
            }
        };
        for d in &self.delayed {
            consider(d.at, TimerRef::Delayed(d.seq));
        }
        if let Some((at, group, member)) = self.next_consumer_deadline() {
            consider(at, TimerRef::ConsumerMember(group, member));
        }
        for g in self.groups.values() {
            for m in &g.members {
                if let Some(at) = m.heartbeat_deadline {
                    consider(at, TimerRef::Heartbeat(g.id.clone(), m.id.clone()));
                }
            }
            for (id, at) in &g.pending_members {
                consider(*at, TimerRef::Pending(g.id.clone(), id.clone()));
            }
            if let Some(t) = &g.sync_timer {
                consider(t.deadline, TimerRef::Sync(g.id.clone()));
            }
            if let Some(t) = &g.join_timer {
                consider(t.deadline(), TimerRef::Join(g.id.clone()));
            }
        }
        best
    }

    fn fire_due(&mut self, now: Instant) {
        while let Some((at, timer)) = self.next_timer() {
            if at > now {
                break;
            }
            self.fire(at, timer);
            self.pump(at);
        }
    }

    fn fire(&mut self, at: Instant, timer: TimerRef) {
        match timer {
            TimerRef::Delayed(seq) => {
                if let Some(idx) = self.delayed.iter().position(|d| d.seq == seq) {
                    let d = self.delayed.remove(idx);
                    self.emit(at, d.reply, d.response, d.commit);
                }
            }
            TimerRef::Heartbeat(group, member) => {
                self.with_group(&group, |c, g| {
                    if let Some(m) = g.get_mut(&member) {
                        m.heartbeat_deadline = None;
                    }
                    c.on_expire_heartbeat(at, g, &member);
                });
            }
            TimerRef::ConsumerMember(group, member) => self.expire_consumer_member(&group, &member),
            TimerRef::Pending(group, member) => {
                self.with_group(&group, |c, g| c.on_expire_pending(at, g, &member));
            }
            TimerRef::Sync(group) => {
                self.with_group(&group, |c, g| {
                    if let Some(t) = g.sync_timer.take() {
                        c.on_expire_pending_sync(at, g, t.generation);
                    }
                });
            }
            TimerRef::Join(group) => {
                self.with_group(&group, |c, g| {
                    if let Some(t) = g.join_timer.take() {
                        c.on_join_timer(at, g, t);
                    }
                });
            }
        }
    }

    /// Runs `f` with the group taken out of the cache (so `f` may use `&mut self`).
    fn with_group<R>(&mut self, group_id: &str, f: impl FnOnce(&mut Self, &mut Group) -> R) -> Option<R> {
        let mut group = self.groups.remove(group_id)?;
        let result = f(self, &mut group);
        self.groups.insert(group_id.to_string(), group);
        Some(result)
    }

    // ----------------------------------------------------------------------------------
    // Group status, loading

    /// `validateGroupStatus` (GC 1111-1137, spec §5 step 4).
    pub(crate) fn validate_group_status(&self, group_id: &str, api: GroupApi) -> Option<i16> {
        let empty_allowed = matches!(api, GroupApi::OffsetCommit | GroupApi::OffsetFetch | GroupApi::Describe);
        if group_id.is_empty() && !empty_allowed {
            return Some(errors::INVALID_GROUP_ID);
        }
        match self.partition {
            Partition::Owned => None,
            Partition::Loading => Some(errors::COORDINATOR_LOAD_IN_PROGRESS),
            Partition::Unowned => Some(errors::NOT_COORDINATOR),
        }
    }

    /// The node FindCoordinator names: this one, unless another leads `__consumer_offsets`.
    fn coordinator_node(&self) -> Node {
        match (&self.config.coordinator, self.partition) {
            (Some(other), Partition::Unowned) => other.clone(),
            _ => Node { id: self.config.node_id, host: self.config.host.clone(), port: self.config.port },
        }
    }

    pub(crate) fn is_loading(&self) -> bool {
        self.partition == Partition::Loading
    }

    fn unload_groups(&mut self, now: Instant) {
        let ids: Vec<String> = self.groups.keys().cloned().collect();
        for id in ids {
            self.with_group(&id, |c, g| c.on_group_unloaded(now, g));
        }
    }

    fn load_groups(&mut self, now: Instant) {
        // Consumer-protocol groups come back as they were, every session armed anew.
        self.rearm_consumer_sessions(now);
        self.groups.clear();
        let mut ids: Vec<String> = self.log.keys().cloned().collect();
        ids.extend(self.offsets.keys().cloned());
        ids.sort();
        ids.dedup();
        for id in ids {
            let group = match self.log.get(&id) {
                Some(stored) => stored.load(id.clone()),
                None => Group::new(id.clone()),
            };
            self.groups.insert(id.clone(), group);
            self.with_group(&id, |c, g| c.on_group_loaded(now, g));
        }
    }

    pub(crate) fn next_uuid(&mut self) -> String {
        let mut next = || {
            // splitmix64: deterministic ids make failures reproducible.
            self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.rng;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        let a = next();
        let b = next();
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0x0fff,
            0x8000 | ((b >> 48) & 0x3fff),
            b & 0xffff_ffff_ffff
        )
    }

    pub(crate) fn history_mut(&mut self, group: &str) -> &mut Vec<(i32, Assignment)> {
        self.history.entry(group.to_string()).or_default()
    }
}

/// The generation a request carries, for the request log.
fn request_generation(request: &RequestKind) -> Option<i32> {
    match request {
        RequestKind::SyncGroup(r) => Some(r.generation_id),
        RequestKind::Heartbeat(r) => Some(r.generation_id),
        RequestKind::OffsetCommit(r) => Some(r.generation_id_or_member_epoch),
        _ => None,
    }
}

/// The API of a request, for those this broker knows about.
fn api_key(request: &RequestKind) -> Option<ApiKey> {
    Some(match request {
        RequestKind::Produce(_) => ApiKey::Produce,
        RequestKind::Fetch(_) => ApiKey::Fetch,
        RequestKind::ListOffsets(_) => ApiKey::ListOffsets,
        RequestKind::Metadata(_) => ApiKey::Metadata,
        RequestKind::OffsetCommit(_) => ApiKey::OffsetCommit,
        RequestKind::OffsetFetch(_) => ApiKey::OffsetFetch,
        RequestKind::FindCoordinator(_) => ApiKey::FindCoordinator,
        RequestKind::JoinGroup(_) => ApiKey::JoinGroup,
        RequestKind::Heartbeat(_) => ApiKey::Heartbeat,
        RequestKind::LeaveGroup(_) => ApiKey::LeaveGroup,
        RequestKind::SyncGroup(_) => ApiKey::SyncGroup,
        RequestKind::DescribeGroups(_) => ApiKey::DescribeGroups,
        RequestKind::ListGroups(_) => ApiKey::ListGroups,
        RequestKind::ApiVersions(_) => ApiKey::ApiVersions,
        RequestKind::CreateTopics(_) => ApiKey::CreateTopics,
        RequestKind::TxnOffsetCommit(_) => ApiKey::TxnOffsetCommit,
        RequestKind::InitProducerId(_) => ApiKey::InitProducerId,
        RequestKind::AddOffsetsToTxn(_) => ApiKey::AddOffsetsToTxn,
        RequestKind::EndTxn(_) => ApiKey::EndTxn,
        RequestKind::ConsumerGroupHeartbeat(_) => ApiKey::ConsumerGroupHeartbeat,
        _ => return None,
    })
}

/// The ranges advertised in ApiVersions: Kafka 3.6's (spec §2.1) plus the data-path and
/// transaction APIs a client negotiates. Produce, Fetch, ListOffsets and CreateTopics are
/// advertised but not served (the connection is cut).
pub(crate) const ADVERTISED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 9),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 8),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::OffsetCommit, 0, 8),
    (ApiKey::OffsetFetch, 0, 8),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::InitProducerId, 0, 4),
    (ApiKey::AddOffsetsToTxn, 0, 3),
    (ApiKey::EndTxn, 0, 3),
    (ApiKey::TxnOffsetCommit, 0, 3),
];

/// What Kafka 4 adds for KIP-848's consumer protocol: ConsumerGroupHeartbeat, and OffsetCommit
/// v9 (the member epoch).
const ADVERTISED_KIP848: &[(ApiKey, i16, i16)] =
    &[(ApiKey::ConsumerGroupHeartbeat, 0, 1), (ApiKey::OffsetCommit, 0, 9)];

/// The ranges this broker advertises: [`ADVERTISED`], with [`ADVERTISED_KIP848`]'s in place of
/// its own when the consumer protocol is served.
pub(crate) fn advertised(config: &CoordinatorConfig) -> Vec<(ApiKey, i16, i16)> {
    let kip848 = if config.consumer_protocol.is_some() { ADVERTISED_KIP848 } else { &[] };
    let mut ranges: Vec<(ApiKey, i16, i16)> =
        ADVERTISED.iter().filter(|(api, _, _)| !kip848.iter().any(|(k, _, _)| k == api)).copied().collect();
    ranges.extend_from_slice(kip848);
    ranges
}

fn advertised_range(config: &CoordinatorConfig, api: ApiKey) -> Option<(i16, i16)> {
    advertised(config).into_iter().find(|(key, _, _)| *key == api).map(|(_, min, max)| (min, max))
}

/// Milliseconds from the wire as a duration (negative values count as zero).
pub(crate) fn millis(ms: i32) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}
