//! A deterministic discrete-event simulator: group members (each a [`GroupMachine`] with an
//! application model on top) talk to one [`ScriptedCoordinator`] over simulated connections, in
//! virtual time.
//!
//! * **Time.** A real `Instant` taken once is the origin; everything else is an offset from it.
//!   Nothing sleeps. The next moment to simulate is the earliest of the message queue, the
//!   coordinator's timers, the machines' `poll_timeout`s and the request deadlines.
//! * **Network.** Every message gets a latency drawn from the seed (plus a member's extra
//!   latency when it is slowed); messages of one connection and direction keep their order (TCP).
//!   FindCoordinator is answered by the simulator (one broker, node 0) after a round trip. A
//!   connection dies when the coordinator cuts it, when a request on it times out, or when its
//!   member rediscovers the coordinator (Java's `markCoordinatorUnknown` disconnects): every
//!   request in flight on it fails with `Network` (the timed-out one with `TimedOut`), the
//!   coordinator sees a disconnect, and the member's next request opens a new [`ConnId`].
//! * **Members** can be added, leave gracefully, crash (they go silent; their connection stays
//!   open, so only session expiry removes them) or be slowed (longer batches, extra latency).
//! * **Applications** (see `app.rs`): each runs kgroup's own consumer session (the code
//!   `GroupConsumer` runs: ownership, leases minted at fetch, the revoke window that waits for
//!   the leases held on revoked partitions, stored offsets and auto-commit) over its machine,
//!   reads batches from a log that always has more, processes them, and commits them
//!   synchronously (one at a time or several accumulated across reads) or stores them for
//!   auto-commit.
//! * **Invariants** are checked as the run goes; a violation panics with the seed, the virtual
//!   time and every member's state (see [`Sim::violation`]):
//!   (a) every partition of every OffsetCommit a machine emits is owned by that member, per the
//!   coordinator's stored assignments, in every generation from its lease's to the one stamped;
//!   (b) commits the coordinator accepts never move a partition backwards, and come from its
//!   owner in the generation they carry;
//!   (c) no `Failed(Rejected(22 | 27 | 110 | 113))` outcome reaches an application;
//!   (d) a response the machine reports stale leaves its state and generation unchanged (T32);
//!   also: no machine fails fatally, and `poll_timeout` is never in the past right after
//!   `handle_timeout` (a driver would spin).
//!   (e) [`Sim::convergence_problem`] says why the group has not converged, if it has not;
//!   (f) no request goes out on a connection that holds the member's own unanswered JoinGroup
//!   or SyncGroup (the coordinator would serve it only when the rebalance completes).
//!   (g) records are read again only when the commit of their earlier reading had not landed
//!   when they were read, unless the second reading's commit never lands (a member out of the
//!   group that does not know it yet): no stale position after an ownership gap. Not checked
//!   once an injected ILLEGAL_GENERATION contradicted the coordinator's own generation.
//!   Duplicates and losses are counted per message in a [`Ledger`].
//!
//! With [`SimConfig::consumer_protocol`] the members speak KIP-848's consumer protocol to the
//! coordinator's model of it: (a) is judged by (b) at the coordinator (an accepted commit comes
//! from the member holding the partition then, assigned or revoking), and convergence is every
//! member at the target epoch holding its target.

mod app;
mod ledger;
mod rng;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, OffsetCommitRequest, RequestKind, ResponseKind};
use kgroup::group::{
    CoordinatorFound, Generation, GroupConfig, GroupEvent, GroupMachine, GroupProtocol, GroupRequest, GroupResponse,
    OutgoingRequest, RequestFailure, RequestId, TopicPartition,
};
use kgroup::protocol::versions::NegotiatedVersions;

use crate::coordinator::{
    decode_assignment, errors, topic_id, ConnId, CoordinatorConfig, Fault, FaultAction, Kip848, Outgoing,
    ScriptedCoordinator,
};
use kgroup::group::StateKind;

pub use app::{CommitKind, OutcomeRecord};
pub use ledger::{Ledger, Stats};
pub use rng::SimRng;

/// The group every simulated member joins.
pub const GROUP: &str = "sim";
/// The one topic they subscribe to.
pub const TOPIC: &str = "t";

/// A coordinator request unanswered for longer than this (outside a rebalance) means a stuck
/// connection: the group has not converged.
const STUCK: Duration = Duration::from_secs(5);

/// How long the session's revoke window waits for the leases the application holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokeStyle {
    /// Until the batches being processed are committed (a rebalance callback timeout of two
    /// thirds of the machine's revoke timeout).
    AfterBatch,
    /// Not at all (a callback timeout of zero): the member rejoins while a batch may still be
    /// processed, and its commit reaches the machine while it joins and is deferred or fenced.
    Immediate,
}

/// Everything a run depends on.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Seeds latencies; printed with every violation.
    pub seed: u64,
    pub partitions: i32,
    /// One-way latency range of a message.
    pub latency: (Duration, Duration),
    /// Messages per batch.
    pub batch_size: i64,
    /// Virtual time one batch takes to process.
    pub batch_time: Duration,
    /// How often an idle application polls (`record_poll`).
    pub idle_poll: Duration,
    pub revoke_style: RevokeStyle,
    /// Batches the application reads (across partitions) before it processes and commits them
    /// together; 1 commits every batch on its own.
    pub reads_per_commit: usize,
    /// `auto.commit.interval.ms`: the application stores what it processed
    /// (`enable.auto.offset.store`) and never commits itself.
    pub auto_commit: Option<Duration>,
    pub session_timeout: Duration,
    pub heartbeat_interval: Duration,
    pub rebalance_timeout: Duration,
    pub revoke_timeout: Duration,
    pub request_timeout: Duration,
    pub commit_timeout: Duration,
    pub initial_rebalance_delay: Duration,
    /// Lowers negotiated versions (for example JoinGroup 3: no MEMBER_ID_REQUIRED step).
    pub version_caps: Vec<(ApiKey, i16)>,
    /// Encode every request and response at its version and decode it again.
    pub wire: bool,
    /// Keep a record of every commit outcome and every OffsetCommit's arrival.
    pub trace: bool,
    /// Print every message, timeout and machine event to stderr (for debugging a seed).
    pub log: bool,
    /// `partition.assignment.strategy`: built-in assignor names, in preference order.
    pub assignors: Vec<&'static str>,
    /// KIP-848's consumer protocol, served as Kafka 4.0 or 4.4 would (`None`: classic).
    pub consumer_protocol: Option<Kip848>,
}

impl SimConfig {
    /// The seed scenario's settings: session 10 s, heartbeat 3 s, rebalance timeout 60 s,
    /// initial rebalance delay 3 s, 1-5 ms latency, batches of 1000 taking 100 ms.
    pub fn realistic(seed: u64, partitions: i32) -> Self {
        SimConfig {
            seed,
            partitions,
            latency: (Duration::from_millis(1), Duration::from_millis(5)),
            batch_size: 1000,
            batch_time: Duration::from_millis(100),
            idle_poll: Duration::from_secs(2),
            revoke_style: RevokeStyle::AfterBatch,
            reads_per_commit: 1,
            auto_commit: None,
            session_timeout: Duration::from_secs(10),
            heartbeat_interval: Duration::from_secs(3),
            rebalance_timeout: Duration::from_secs(60),
            revoke_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(30),
            commit_timeout: Duration::from_secs(60),
            initial_rebalance_delay: Duration::from_secs(3),
            version_caps: Vec::new(),
            wire: true,
            trace: false,
            log: false,
            assignors: vec!["range"],
            consumer_protocol: None,
        }
    }

    /// [`Self::realistic`] on KIP-848's consumer protocol, served as `kip848` says.
    pub fn consumer_protocol(seed: u64, partitions: i32, kip848: Kip848) -> Self {
        SimConfig { consumer_protocol: Some(kip848), ..Self::realistic(seed, partitions) }
    }

    /// Member `i`'s settings: under KIP-848 it chooses its member id.
    fn group_config_of(&self, i: usize) -> GroupConfig {
        let mut c = self.group_config();
        if self.consumer_protocol.is_some() {
            c.protocol = GroupProtocol::Consumer { remote_assignor: None, member_id: Some(format!("m{i:02}-id")) };
        }
        c
    }

    fn group_config(&self) -> GroupConfig {
        let mut c = GroupConfig::new(GROUP);
        c.session_timeout = self.session_timeout;
        c.heartbeat_interval = self.heartbeat_interval;
        c.rebalance_timeout = self.rebalance_timeout;
        c.revoke_timeout = self.revoke_timeout;
        c.request_timeout = self.request_timeout;
        c.commit_timeout = self.commit_timeout;
        c.assignors = self
            .assignors
            .iter()
            .map(|name| {
                kgroup::group::assignor::assignor_by_name(name).unwrap_or_else(|| panic!("no assignor {name:?}"))
            })
            .collect();
        c.validate().expect("simulated member configuration is valid");
        c
    }
}

/// Where a member is, from the simulator's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Live,
    /// Silent for good; its connection stays open.
    Crashed,
    /// Left the group gracefully.
    Left,
}

/// A request the member sent and has not had answered.
#[derive(Debug, Clone)]
struct Pending {
    id: RequestId,
    conn: ConnId,
    api: ApiKey,
    sent: Instant,
    deadline: Instant,
    /// Its response is held by the test (no timeout meanwhile).
    held: bool,
}

#[derive(Debug)]
struct Held {
    corr: i32,
    version: i16,
    response: ResponseKind,
}

struct Member {
    name: String,
    machine: GroupMachine,
    status: Status,
    conn: Option<ConnId>,
    pending: BTreeMap<i32, Pending>,
    next_corr: i32,
    /// The machine's `poll_timeout`, refreshed after every input.
    timer: Option<Instant>,
    slow_factor: u32,
    extra_latency: Duration,
    app: app::App,
    hold: Option<(ApiKey, u32)>,
    held: Vec<Held>,
    saw_stale: bool,
}

#[derive(Debug)]
enum Ev {
    /// A request reaches the coordinator.
    Request { member: usize, conn: ConnId, corr: i32, version: i16, request: RequestKind },
    /// The client closed `conn`.
    Disconnect { conn: ConnId },
    /// A response reaches its member.
    Response { member: usize, conn: ConnId, corr: i32, version: i16, response: ResponseKind },
    /// The coordinator closed `conn`; the member notices.
    Cut { member: usize, conn: ConnId },
    /// The answer to FindCoordinator.
    Found { member: usize, id: RequestId },
    /// A request failed without an answer.
    Fail { member: usize, id: RequestId, failure: RequestFailure },
    /// The application's timer.
    App { member: usize, token: u64 },
    /// The coordinator's `__consumer_offsets` partition is elected (loading) or loaded.
    Loading(bool),
}

/// One OffsetCommit as it reached the coordinator (kept when [`SimConfig::trace`] is set).
#[derive(Debug, Clone, PartialEq)]
pub struct CommitArrival {
    pub at: Duration,
    pub member: usize,
    pub generation: i32,
    /// The coordinator's group state and generation when it arrived.
    pub group_state: &'static str,
    pub group_generation: i32,
    pub partitions: Vec<(i32, i64)>,
}

/// The simulator. See the module documentation.
pub struct Sim {
    cfg: SimConfig,
    base: Instant,
    now: Instant,
    rng: SimRng,
    coord: ScriptedCoordinator,
    versions: NegotiatedVersions,
    members: Vec<Member>,
    queue: BTreeMap<(Instant, u64), Ev>,
    seq: u64,
    next_conn: u64,
    conn_owner: BTreeMap<ConnId, usize>,
    fifo_up: BTreeMap<ConnId, Instant>,
    fifo_down: BTreeMap<ConnId, Instant>,
    coord_closed: BTreeSet<ConnId>,
    ledger: Ledger,
    stats: Stats,
    /// The coordinator's stored assignments: generation -> partition -> owner.
    owners: BTreeMap<i32, BTreeMap<i32, String>>,
    accepted_seen: usize,
    last_accepted: BTreeMap<i32, i64>,
    /// Per partition, the highest offset a commit was seen to succeed at.
    landed: BTreeMap<i32, i64>,
    /// An injected ILLEGAL_GENERATION may contradict the coordinator's own generation (Kafka
    /// never refuses the generation it is in): a member can then lose its partitions and rejoin
    /// the very generation it was told was stale, and its leases from before the loss are
    /// indistinguishable from the new ones. A failover that reloads an older generation than
    /// the coordinator had (one that never reached the log: it ended in CompletingRebalance)
    /// does the same to the members that had joined the newer one. Invariant (g) is not
    /// checked after either.
    generation_contradicted: bool,
    /// The coordinator's generation when a failover unloaded the group, until it is loaded
    /// again.
    generation_before_failover: Option<i32>,
    outcomes: Vec<OutcomeRecord>,
    arrivals: Vec<CommitArrival>,
    events_at_instant: (Instant, u64),
}

impl Sim {
    pub fn new(cfg: SimConfig) -> Self {
        let base = Instant::now();
        let mut cc = CoordinatorConfig {
            initial_rebalance_delay: cfg.initial_rebalance_delay,
            consumer_protocol: cfg.consumer_protocol.clone(),
            ..Default::default()
        };
        cc.topics.insert(TOPIC.to_string(), cfg.partitions);
        let mut coord = ScriptedCoordinator::new(cc, base);
        // Negotiate like the driver does: ask the broker for its ranges.
        coord.handle_request(base, ConnId(0), 0, 3, RequestKind::ApiVersions(ApiVersionsRequest::default()));
        let mut versions = match coord.poll_response() {
            Some(Outgoing::Response { response: ResponseKind::ApiVersions(r), .. }) => {
                NegotiatedVersions::negotiate(&r)
            }
            other => panic!("the coordinator did not answer ApiVersions: {other:?}"),
        };
        coord.handle_disconnect(base, ConnId(0));
        for (api, max) in &cfg.version_caps {
            versions.cap(*api, *max);
        }
        Sim {
            rng: SimRng::new(cfg.seed),
            ledger: Ledger::new(cfg.batch_size),
            cfg,
            base,
            now: base,
            coord,
            versions,
            members: Vec::new(),
            queue: BTreeMap::new(),
            seq: 0,
            next_conn: 1,
            conn_owner: BTreeMap::new(),
            fifo_up: BTreeMap::new(),
            fifo_down: BTreeMap::new(),
            coord_closed: BTreeSet::new(),
            stats: Stats::default(),
            owners: BTreeMap::new(),
            accepted_seen: 0,
            last_accepted: BTreeMap::new(),
            landed: BTreeMap::new(),
            generation_contradicted: false,
            generation_before_failover: None,
            outcomes: Vec::new(),
            arrivals: Vec::new(),
            events_at_instant: (base, 0),
        }
    }

    // ---- queries ----

    pub fn config(&self) -> &SimConfig {
        &self.cfg
    }

    pub fn now(&self) -> Instant {
        self.now
    }

    /// Virtual time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now - self.base
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn coordinator(&self) -> &ScriptedCoordinator {
        &self.coord
    }

    pub fn machine(&self, member: usize) -> &GroupMachine {
        &self.members[member].machine
    }

    pub fn status(&self, member: usize) -> Status {
        self.members[member].status
    }

    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    /// Indexes of the members that are neither crashed nor gone.
    pub fn live_members(&self) -> Vec<usize> {
        (0..self.members.len()).filter(|&i| self.members[i].status == Status::Live).collect()
    }

    /// Live members that are not leaving.
    pub fn active_members(&self) -> Vec<usize> {
        (0..self.members.len())
            .filter(|&i| self.members[i].status == Status::Live && !self.members[i].app.leaving)
            .collect()
    }

    /// Commit outcomes, when tracing.
    pub fn outcomes(&self) -> &[OutcomeRecord] {
        &self.outcomes
    }

    /// OffsetCommit arrivals at the coordinator, when tracing.
    pub fn commit_arrivals(&self) -> &[CommitArrival] {
        &self.arrivals
    }

    /// The coordinator's current generation (`-1` before the group exists).
    pub fn coordinator_generation(&self) -> i32 {
        self.coord.describe(GROUP).map(|v| v.generation).unwrap_or(-1)
    }

    /// Messages processed at least once.
    pub fn messages_processed(&self) -> u64 {
        self.ledger.messages()
    }

    /// Messages no one processed below the committed offset or the furthest processed one.
    pub fn lost_messages(&self) -> u64 {
        (0..self.cfg.partitions)
            .map(|p| {
                let committed = self.coord.committed(GROUP, TOPIC, p).unwrap_or(0);
                self.ledger.lost(p, committed)
            })
            .sum()
    }

    /// `None` when the group has converged: the coordinator's group is Stable, every live
    /// member's machine is Stable in the coordinator's generation, and the members' assignments
    /// cover every partition exactly once and equal what the coordinator stored. Otherwise why
    /// not.
    pub fn convergence_problem(&self) -> Option<String> {
        if self.cfg.consumer_protocol.is_some() {
            return self.consumer_convergence_problem();
        }
        let Some(view) = self.coord.describe(GROUP) else {
            return Some("the coordinator has no group yet".into());
        };
        if view.state != "Stable" {
            return Some(format!("coordinator group is {} in generation {}", view.state, view.generation));
        }
        let live = self.live_members();
        for &i in &live {
            let m = &self.members[i];
            if m.app.leaving {
                return Some(format!("{} is leaving", m.name));
            }
            // Outside a rebalance nothing is parked: a muted connection holds a delayed or
            // dropped response, and a request unanswered for long is stuck.
            if let Some(conn) = m.conn.filter(|c| self.coord.is_muted(*c)) {
                return Some(format!("{}'s connection {} is muted", m.name, conn.0));
            }
            if let Some(p) = m.pending.values().find(|p| self.now - p.sent > STUCK) {
                return Some(format!("{} has had a {:?} unanswered for {:?}", m.name, p.api, self.now - p.sent));
            }
        }
        let mut stored: BTreeMap<String, BTreeSet<i32>> = view
            .members
            .iter()
            .map(|m| {
                let parts = decode_assignment(&m.assignment).into_iter().filter(|(t, _)| t == TOPIC).map(|(_, p)| p);
                (m.member_id.clone(), parts.collect())
            })
            .collect();
        if stored.len() != live.len() {
            return Some(format!("coordinator has {} members, {} are live", stored.len(), live.len()));
        }
        let mut cover = vec![0u32; self.cfg.partitions.max(0) as usize];
        for &i in &live {
            let m = &self.members[i].machine;
            let generation = m.current_generation().map(|g| g.id.0);
            if m.state() != StateKind::Stable || generation != Some(view.generation) {
                return Some(format!(
                    "{} is {} in generation {generation:?}, coordinator in {}",
                    self.members[i].name,
                    m.state(),
                    view.generation
                ));
            }
            let member_id = m.current_generation().map(|g| g.member_id.to_string()).unwrap_or_default();
            let Some(expected) = stored.remove(&member_id) else {
                return Some(format!(
                    "{} ({member_id}) is not a member of the coordinator's group",
                    self.members[i].name
                ));
            };
            let owned: BTreeSet<i32> = m.assignment().iter().map(|o| o.partition.partition).collect();
            if owned != expected {
                return Some(format!("{} owns {owned:?}, coordinator stored {expected:?}", self.members[i].name));
            }
            for p in owned {
                if let Some(c) = usize::try_from(p).ok().and_then(|p| cover.get_mut(p)) {
                    *c += 1;
                }
            }
        }
        if let Some(p) = cover.iter().position(|&c| c != 1) {
            return Some(format!("partition {p} is owned by {} members", cover[p]));
        }
        None
    }

    /// [`Self::convergence_problem`] under KIP-848: every live member Stable at the epoch the
    /// coordinator holds for it, at the target epoch, owning what the coordinator assigned it,
    /// every partition once, nothing revoking, nothing in flight for long.
    fn consumer_convergence_problem(&self) -> Option<String> {
        let Some(view) = self.coord.describe_consumer_group(GROUP) else {
            return Some("the coordinator has no group yet".into());
        };
        if !view.is_reconciled() {
            return Some(format!("the coordinator's group is reconciling towards epoch {}", view.target_epoch));
        }
        let live = self.live_members();
        if view.members.len() != live.len() {
            return Some(format!("coordinator has {} members, {} are live", view.members.len(), live.len()));
        }
        let mut cover = vec![0u32; self.cfg.partitions.max(0) as usize];
        for &i in &live {
            let m = &self.members[i];
            if m.app.leaving {
                return Some(format!("{} is leaving", m.name));
            }
            if let Some(p) = m.pending.values().find(|p| self.now - p.sent > STUCK) {
                return Some(format!("{} has had a {:?} unanswered for {:?}", m.name, p.api, self.now - p.sent));
            }
            let machine = &m.machine;
            let Some(stored) = view.members.iter().find(|v| v.member_id == machine.member_id().as_str()) else {
                return Some(format!("{} is not a member of the coordinator's group", m.name));
            };
            let epoch = machine.current_generation().map(|g| g.id.0);
            if machine.state() != StateKind::Stable || epoch != Some(stored.epoch) {
                return Some(format!(
                    "{} is {} at epoch {epoch:?}, coordinator at {}",
                    m.name,
                    machine.state(),
                    stored.epoch
                ));
            }
            let owned: BTreeSet<i32> = machine.assignment().iter().map(|o| o.partition.partition).collect();
            let expected: BTreeSet<i32> = stored.assigned.keys().map(|(_, p)| *p).collect();
            if owned != expected {
                return Some(format!("{} owns {owned:?}, coordinator assigned {expected:?}", m.name));
            }
            for p in owned {
                if let Some(c) = usize::try_from(p).ok().and_then(|p| cover.get_mut(p)) {
                    *c += 1;
                }
            }
        }
        if let Some(p) = cover.iter().position(|&c| c != 1) {
            return Some(format!("partition {p} is owned by {} members", cover[p]));
        }
        None
    }

    pub fn converged(&self) -> bool {
        self.convergence_problem().is_none()
    }

    /// One line per member, for failure messages.
    pub fn describe_members(&self) -> String {
        let mut out = String::new();
        for (i, m) in self.members.iter().enumerate() {
            let g = m.machine.current_generation().map(|g| g.id.0);
            out.push_str(&format!(
                "  #{i} {} {:?} machine={} gen={g:?} owned={} app={}\n",
                m.name,
                m.status,
                m.machine.state(),
                m.machine.assignment().len(),
                m.app.summary()
            ));
        }
        if let Some(v) = self.coord.describe(GROUP) {
            out.push_str(&format!(
                "  coordinator: {} generation {} members {}\n",
                v.state,
                v.generation,
                v.members.len()
            ));
        }
        if let Some(v) = self.coord.describe_consumer_group(GROUP) {
            out.push_str(&format!("  coordinator: group epoch {}, target epoch {}\n", v.epoch, v.target_epoch));
            for m in &v.members {
                let assigned: Vec<i32> = m.assigned.keys().map(|(_, p)| *p).collect();
                let revoking: Vec<i32> = m.revoking.iter().map(|(_, p)| *p).collect();
                out.push_str(&format!(
                    "    {} epoch {} assigned {assigned:?} revoking {revoking:?} target {}\n",
                    m.member_id,
                    m.epoch,
                    m.target.len()
                ));
            }
        }
        out
    }

    /// Panics with the seed, the virtual time and the members' states.
    #[track_caller]
    pub fn violation(&self, what: impl AsRef<str>) -> ! {
        panic!(
            "simulator invariant violated (seed {}, t={:?}): {}\n{}",
            self.cfg.seed,
            self.elapsed(),
            what.as_ref(),
            self.describe_members()
        )
    }

    pub(super) fn log(&self, what: impl FnOnce() -> String) {
        if self.cfg.log {
            eprintln!("{:>10.3?} {}", self.elapsed(), what());
        }
    }

    // ---- commands ----

    /// Adds a member; it looks for the coordinator at once. Returns its index.
    pub fn add_member(&mut self) -> usize {
        let i = self.members.len();
        let mut machine = GroupMachine::new(self.cfg.group_config_of(i), [TOPIC], self.now);
        machine.set_partition_counts([(TOPIC.to_string(), self.cfg.partitions)]);
        self.members.push(Member {
            name: format!("m{i:02}"),
            machine,
            status: Status::Live,
            conn: None,
            pending: BTreeMap::new(),
            next_corr: 0,
            timer: None,
            slow_factor: 1,
            extra_latency: Duration::ZERO,
            app: app::App::new(&self.cfg, self.now),
            hold: None,
            held: Vec::new(),
            saw_stale: false,
        });
        self.app_continue(i);
        self.drain_member(i);
        i
    }

    /// Leaves gracefully: the application finishes its batch, commits its progress, then the
    /// member sends LeaveGroup.
    pub fn leave(&mut self, member: usize) {
        if self.members[member].status != Status::Live {
            return;
        }
        self.members[member].app.leaving = true;
        self.app_continue(member);
        self.drain_member(member);
    }

    /// Stops all activity of `member` silently; its connection stays open.
    pub fn crash(&mut self, member: usize) {
        if self.members[member].status == Status::Live {
            self.members[member].status = Status::Crashed;
        }
    }

    /// Batches take `factor` times longer and every message `extra` longer.
    pub fn slow(&mut self, member: usize, factor: u32, extra: Duration) {
        self.members[member].slow_factor = factor.max(1);
        self.members[member].extra_latency = extra;
    }

    pub fn inject(&mut self, fault: Fault) {
        if matches!(fault.action, FaultAction::Error(code) if code == errors::ILLEGAL_GENERATION) {
            self.generation_contradicted = true;
        }
        self.coord.inject(fault);
    }

    pub fn clear_faults(&mut self) {
        self.coord.clear_faults();
    }

    /// A coordinator move (§9) that lands on the same broker: the coordinator resigns now (every
    /// group is unloaded: parked joins and syncs get NOT_COORDINATOR), is elected again after
    /// `unowned` (loading: COORDINATOR_LOAD_IN_PROGRESS), and has loaded the groups from its log
    /// after `loading` more.
    pub fn coordinator_failover(&mut self, unowned: Duration, loading: Duration) {
        let generation = self.coordinator_generation();
        self.generation_before_failover =
            Some(self.generation_before_failover.map_or(generation, |g| g.max(generation)));
        self.coord.unload(self.now);
        self.drain_coordinator();
        self.schedule(self.now + unowned, Ev::Loading(true));
        self.schedule(self.now + unowned + loading, Ev::Loading(false));
    }

    /// The next `count` responses of `api` to `member` are held instead of delivered (their
    /// requests do not time out meanwhile, unless their connection dies).
    pub fn hold_responses(&mut self, member: usize, api: ApiKey, count: u32) {
        self.members[member].hold = Some((api, count));
    }

    /// How many responses are held for `member`.
    pub fn held_responses(&self, member: usize) -> usize {
        self.members[member].held.len()
    }

    /// Delivers the held responses now, after `rewrite` changed them.
    pub fn release_held(&mut self, member: usize, mut rewrite: impl FnMut(&mut ResponseKind)) {
        let held = std::mem::take(&mut self.members[member].held);
        for mut h in held {
            rewrite(&mut h.response);
            let Some(p) = self.members[member].pending.remove(&h.corr) else {
                continue;
            };
            self.deliver_response(member, p, h.version, h.response);
        }
    }

    // ---- running ----

    /// Runs until `d` of virtual time has passed.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while self.step(end) {}
        self.now = self.now.max(end);
    }

    /// Runs until `done` holds (checked every 10 ms of virtual time) or `limit` has passed.
    /// Returns the virtual time it took.
    pub fn run_until(&mut self, limit: Duration, done: impl FnMut(&Sim) -> bool) -> Option<Duration> {
        self.run_until_every(limit, Duration::from_millis(10), done)
    }

    /// [`Self::run_until`] with `done` checked every `tick`.
    pub fn run_until_every(
        &mut self,
        limit: Duration,
        tick: Duration,
        mut done: impl FnMut(&Sim) -> bool,
    ) -> Option<Duration> {
        let start = self.now;
        let end = self.now + limit;
        loop {
            if done(self) {
                return Some(self.now - start);
            }
            if self.now >= end {
                return None;
            }
            let next_check = (self.now + tick).min(end);
            while self.step(next_check) {}
            self.now = next_check;
        }
    }

    /// Runs until [`Self::converged`], at most `limit`.
    pub fn run_until_converged(&mut self, limit: Duration) -> Option<Duration> {
        self.run_until(limit, Sim::converged)
    }

    /// Runs until converged, or panics with the seed, why not, and the members' states.
    pub fn converge(&mut self, limit: Duration) -> Duration {
        match self.run_until_converged(limit) {
            Some(t) => t,
            None => panic!(
                "no convergence within {limit:?} (seed {}): {}\n{}",
                self.cfg.seed,
                self.convergence_problem().unwrap_or_default(),
                self.describe_members()
            ),
        }
    }

    /// Adds members one at a time until there are `members`, converging within 120 s and then
    /// processing for `steady` at every size.
    pub fn grow_to(&mut self, members: usize, steady: Duration) {
        while self.members.len() < members {
            self.add_member();
            if self.members.len() > 1 {
                self.converge(Duration::from_secs(120));
                self.run_for(steady);
            }
        }
    }

    /// Runs until the group has stayed converged for `hold` (checked every 100 ms), at most
    /// `limit` in all. Returns when the convergence that lasted began. A state that looks
    /// converged can still be undone by a session the coordinator is about to expire; holding it
    /// for a session timeout rules that out.
    pub fn run_until_settled(&mut self, limit: Duration, hold: Duration) -> Option<Duration> {
        let start = self.now;
        let mut since: Option<Instant> = None;
        self.run_until_every(limit, Duration::from_millis(100), |sim| {
            if sim.converged() {
                let t = *since.get_or_insert(sim.now);
                sim.now - t >= hold
            } else {
                since = None;
                false
            }
        })?;
        since.map(|t| t - start)
    }

    /// Runs the earliest moment at or before `limit`; `false` if there is none.
    fn step(&mut self, limit: Instant) -> bool {
        let Some(t) = self.next_time() else {
            return false;
        };
        if t > limit {
            return false;
        }
        let t = t.max(self.now);
        self.now = t;
        if self.events_at_instant.0 == t {
            self.events_at_instant.1 += 1;
            if self.events_at_instant.1 > 100_000 {
                self.violation("more than 100000 steps at one instant: something spins");
            }
        } else {
            self.events_at_instant = (t, 0);
        }
        if self.coord.poll_timeout().is_some_and(|at| at <= t) {
            self.coord.handle_timeout(t);
            self.drain_coordinator();
        }
        while let Some(entry) = self.queue.first_entry() {
            if entry.key().0 > t {
                break;
            }
            let ev = entry.remove();
            self.handle_event(ev);
        }
        for i in 0..self.members.len() {
            if self.members[i].status != Status::Live {
                continue;
            }
            if self.members[i].timer.is_some_and(|at| at <= t) {
                self.members[i].machine.handle_timeout(t);
                self.drain_member(i);
                if let Some(at) = self.members[i].timer.filter(|&at| at <= t) {
                    let snapshot = self.members[i].machine.snapshot(t);
                    self.violation(format!(
                        "{}: poll_timeout() is {:?} before now after handle_timeout(now) (next timer {:?}): a \
                         driver sleeping until it would spin",
                        self.members[i].name,
                        t - at,
                        snapshot.next_timer
                    ));
                }
            }
            let due: Vec<i32> = self.members[i]
                .pending
                .iter()
                .filter(|(_, p)| !p.held && p.deadline <= t)
                .map(|(corr, _)| *corr)
                .collect();
            if let Some(&corr) = due.first() {
                self.time_out(i, corr);
            }
        }
        true
    }

    fn next_time(&self) -> Option<Instant> {
        let mut t = self.queue.keys().next().map(|k| k.0);
        let mut consider = |x: Option<Instant>| {
            if let Some(x) = x {
                t = Some(t.map_or(x, |t| t.min(x)));
            }
        };
        consider(self.coord.poll_timeout());
        for m in &self.members {
            if m.status == Status::Live {
                consider(m.timer);
                consider(m.pending.values().filter(|p| !p.held).map(|p| p.deadline).min());
            }
        }
        t
    }

    fn schedule(&mut self, at: Instant, ev: Ev) {
        self.seq += 1;
        self.queue.insert((at, self.seq), ev);
    }

    fn latency(&mut self, member: usize) -> Duration {
        let (lo, hi) = self.cfg.latency;
        self.rng.duration(lo, hi) + self.members[member].extra_latency
    }

    fn fifo(map: &mut BTreeMap<ConnId, Instant>, conn: ConnId, at: Instant) -> Instant {
        let last = map.entry(conn).or_insert(at);
        let at = at.max(*last);
        *last = at;
        at
    }

    fn handle_event(&mut self, ev: Ev) {
        match ev {
            Ev::Request { member, conn, corr, version, request } => {
                if self.coord_closed.contains(&conn) {
                    return;
                }
                if self.cfg.trace {
                    if let RequestKind::OffsetCommit(r) = &request {
                        self.trace_arrival(member, r);
                    }
                }
                let name = self.members[member].name.clone();
                self.log(|| {
                    let detail = match &request {
                        RequestKind::OffsetCommit(r) => format!(
                            " generation {} {:?}",
                            r.generation_id_or_member_epoch,
                            r.topics
                                .iter()
                                .flat_map(|t| t.partitions.iter().map(|p| (p.partition_index, p.committed_offset)))
                                .collect::<Vec<_>>()
                        ),
                        _ => String::new(),
                    };
                    format!("{name} -> coordinator conn {} #{corr} {:?} v{version}{detail}", conn.0, api_key(&request))
                });
                self.coord.handle_request_with_client_id(self.now, conn, &name, corr, version, request);
                self.drain_coordinator();
            }
            Ev::Disconnect { conn } => {
                self.log(|| format!("conn {} closed by its client", conn.0));
                if self.coord_closed.insert(conn) {
                    self.coord.handle_disconnect(self.now, conn);
                    self.drain_coordinator();
                }
            }
            Ev::Response { member, conn, corr, version, response } => {
                let m = &mut self.members[member];
                if m.status != Status::Live {
                    return;
                }
                let Some(p) = m.pending.get_mut(&corr).filter(|p| p.conn == conn) else {
                    return;
                };
                if let Some((api, n)) = m.hold.as_mut() {
                    if *api == p.api && *n > 0 {
                        *n -= 1;
                        p.held = true;
                        m.held.push(Held { corr, version, response });
                        return;
                    }
                }
                let p = m.pending.remove(&corr).expect("pending exists");
                self.deliver_response(member, p, version, response);
            }
            Ev::Cut { member, conn } => {
                self.log(|| format!("{} notices the cut of conn {}", self.members[member].name, conn.0));
                self.stats.cuts += 1;
                if self.members[member].status == Status::Live && self.members[member].conn == Some(conn) {
                    self.members[member].conn = None;
                    self.fail_conn(member, conn);
                }
            }
            Ev::Found { member, id } => {
                if self.members[member].status == Status::Live {
                    let found = CoordinatorFound { node_id: 0, versions: self.versions.clone() };
                    self.members[member].machine.handle_coordinator_found(self.now, id, found);
                    self.drain_member(member);
                }
            }
            Ev::Fail { member, id, failure } => {
                if self.members[member].status == Status::Live {
                    self.members[member].machine.handle_request_failed(self.now, id, failure);
                    self.drain_member(member);
                }
            }
            Ev::Loading(loading) => {
                self.coord.set_loading(self.now, loading);
                if !loading {
                    let reloaded = self.coordinator_generation();
                    if self.generation_before_failover.take().is_some_and(|before| reloaded < before) {
                        self.generation_contradicted = true;
                    }
                }
                self.drain_coordinator();
            }
            Ev::App { member, token } => {
                if self.members[member].status == Status::Live && self.members[member].app.token == token {
                    self.app_wake(member);
                    self.drain_member(member);
                }
            }
        }
    }

    fn deliver_response(&mut self, member: usize, p: Pending, version: i16, response: ResponseKind) {
        self.log(|| format!("{} <- {:?} {}", self.members[member].name, p.api, response_summary(&response)));
        let response = if self.cfg.wire { wire_response(p.api, version, response) } else { response };
        let response = match to_group_response(response) {
            Ok(r) => r,
            Err(other) => self.violation(format!("unexpected response {other} to {:?}", p.api)),
        };
        let m = &mut self.members[member];
        let before = (m.machine.state(), m.machine.current_generation().cloned());
        m.machine.handle_response(self.now, p.id, response);
        let after = (m.machine.state(), m.machine.current_generation().cloned());
        m.saw_stale = false;
        self.drain_member(member);
        if self.members[member].saw_stale && before != after {
            self.violation(format!(
                "{}: a stale {:?} response changed the state from {before:?} to {after:?} (T32)",
                self.members[member].name, p.api
            ));
        }
    }

    /// A request's deadline passed: it fails with TimedOut and its connection is closed (the
    /// other requests on it fail with Network).
    fn time_out(&mut self, member: usize, corr: i32) {
        self.log(|| format!("{} request #{corr} timed out", self.members[member].name));
        self.stats.request_timeouts += 1;
        let Some(p) = self.members[member].pending.remove(&corr) else {
            return;
        };
        self.schedule(self.now, Ev::Fail { member, id: p.id, failure: RequestFailure::TimedOut });
        if self.members[member].conn == Some(p.conn) {
            self.close_member_conn(member);
        }
    }

    /// The member closes its coordinator connection.
    fn close_member_conn(&mut self, member: usize) {
        let Some(conn) = self.members[member].conn.take() else {
            return;
        };
        self.fail_conn(member, conn);
        let at = self.now + self.latency(member);
        let at = Self::fifo(&mut self.fifo_up, conn, at);
        self.schedule(at, Ev::Disconnect { conn });
    }

    /// Every request in flight on `conn` fails with Network.
    fn fail_conn(&mut self, member: usize, conn: ConnId) {
        let m = &mut self.members[member];
        let dead: Vec<i32> = m.pending.iter().filter(|(_, p)| p.conn == conn).map(|(c, _)| *c).collect();
        m.held.retain(|h| !dead.contains(&h.corr));
        for corr in dead {
            let p = self.members[member].pending.remove(&corr).expect("listed");
            let failure = RequestFailure::Network(format!("connection {} closed", conn.0));
            self.schedule(self.now, Ev::Fail { member, id: p.id, failure });
        }
    }

    /// Sends everything the member's machine has and lets the application react to its events.
    fn drain_member(&mut self, i: usize) {
        loop {
            let mut progressed = false;
            while let Some(request) = self.members[i].machine.poll_request() {
                progressed = true;
                self.route_request(i, request);
            }
            while let Some((_, event)) = self.members[i].machine.poll_event() {
                progressed = true;
                if self.cfg.log && !matches!(event, GroupEvent::CommitCompleted { .. }) {
                    self.log(|| format!("{} event {event:?}", self.members[i].name));
                }
                self.app_on_event(i, event);
            }
            if !progressed {
                break;
            }
        }
        self.members[i].timer = self.members[i].machine.poll_timeout();
    }

    fn route_request(&mut self, i: usize, request: OutgoingRequest) {
        let OutgoingRequest { id, version, timeout, body } = request;
        let request = match body {
            GroupRequest::FindCoordinator { .. } => {
                // Java's markCoordinatorUnknown disconnects the coordinator connection, so
                // requests still in flight on it fail now rather than after their timeouts.
                self.close_member_conn(i);
                let at = self.now + self.latency(i) + self.latency(i);
                self.schedule(at, Ev::Found { member: i, id });
                return;
            }
            GroupRequest::Metadata { topics } => {
                // Partition counts never change in the simulation: answered at once.
                let counts = topics.into_iter().filter(|t| t == TOPIC).map(|t| (t, self.cfg.partitions)).collect();
                self.members[i].machine.handle_metadata(self.now, id, counts);
                return;
            }
            GroupRequest::TopicIds { .. } => {
                // One topic, whose id never changes: answered at once.
                let ids = [(topic_id(TOPIC), TOPIC.to_string())].into();
                self.members[i].machine.handle_topic_ids(self.now, id, ids);
                return;
            }
            GroupRequest::ConsumerGroupHeartbeat(r) => RequestKind::ConsumerGroupHeartbeat(r),
            GroupRequest::JoinGroup(r) => RequestKind::JoinGroup(r),
            GroupRequest::SyncGroup(r) => RequestKind::SyncGroup(r),
            GroupRequest::Heartbeat(r) => RequestKind::Heartbeat(r),
            GroupRequest::LeaveGroup(r) => RequestKind::LeaveGroup(r),
            GroupRequest::OffsetCommit(r) => {
                self.check_commit_request(i, &r);
                RequestKind::OffsetCommit(r)
            }
            GroupRequest::OffsetFetch(r) => RequestKind::OffsetFetch(r),
            other => self.violation(format!("unknown request {other:?}")),
        };
        let api = api_key(&request);
        let request = if self.cfg.wire { wire_request(api, version, request) } else { request };
        let conn = match self.members[i].conn {
            Some(c) => c,
            None => {
                let c = ConnId(self.next_conn);
                self.next_conn += 1;
                self.conn_owner.insert(c, i);
                self.members[i].conn = Some(c);
                c
            }
        };
        if let Some(parked) = self.members[i]
            .pending
            .values()
            .find(|p| p.conn == conn && matches!(p.api, ApiKey::JoinGroup | ApiKey::SyncGroup))
        {
            let name = &self.members[i].name;
            self.violation(format!("{name} sent {api:?} behind its own unanswered {:?} (invariant f)", parked.api));
        }
        let m = &mut self.members[i];
        m.next_corr += 1;
        let corr = m.next_corr;
        m.pending.insert(corr, Pending { id, conn, api, sent: self.now, deadline: self.now + timeout, held: false });
        let at = self.now + self.latency(i);
        let at = Self::fifo(&mut self.fifo_up, conn, at);
        self.schedule(at, Ev::Request { member: i, conn, corr, version, request });
    }

    fn drain_coordinator(&mut self) {
        while let Some(out) = self.coord.poll_response() {
            match out {
                Outgoing::Response { conn, correlation_id, api_version, response } => {
                    let Some(&member) = self.conn_owner.get(&conn) else {
                        continue;
                    };
                    let at = self.now + self.latency(member);
                    let at = Self::fifo(&mut self.fifo_down, conn, at);
                    self.schedule(
                        at,
                        Ev::Response { member, conn, corr: correlation_id, version: api_version, response },
                    );
                }
                Outgoing::Cut { conn } => {
                    self.coord_closed.insert(conn);
                    if let Some(&member) = self.conn_owner.get(&conn) {
                        let at = self.now + self.latency(member);
                        let at = Self::fifo(&mut self.fifo_down, conn, at);
                        self.schedule(at, Ev::Cut { member, conn });
                    }
                }
            }
        }
        self.check_accepted_commits();
    }

    // ---- invariants ----

    /// The owner of `partition` in `generation` per the coordinator's stored assignments.
    fn owner(&mut self, generation: i32, partition: i32) -> Option<&str> {
        if !self.owners.contains_key(&generation) {
            for (gen, assignment) in self.coord.assignment_history(GROUP) {
                let owners = self.owners.entry(gen).or_default();
                owners.clear();
                for (member, partitions) in assignment {
                    for (topic, p) in partitions {
                        if topic == TOPIC {
                            owners.insert(p, member.clone());
                        }
                    }
                }
            }
        }
        self.owners.get(&generation)?.get(&partition).map(String::as_str)
    }

    /// (a): every partition of an OffsetCommit is owned by the member in every generation from
    /// its lease's to the one the request is stamped with, except that the stamped generation
    /// may have revoked it cooperatively (KIP-429: then nobody owns it in that generation).
    fn check_commit_request(&mut self, i: usize, r: &OffsetCommitRequest) {
        self.stats.offset_commit_requests += 1;
        if self.cfg.consumer_protocol.is_some() {
            // Judged where it lands, by (b): the coordinator knows who holds what then.
            return;
        }
        let stamped = r.generation_id_or_member_epoch;
        let member_id = r.member_id.to_string();
        for t in &r.topics {
            for p in &t.partitions {
                let tp = TopicPartition::new(t.name.as_str(), p.partition_index);
                let Some(lease) = self.members[i].app.lease_for(&tp, p.committed_offset).cloned() else {
                    self.violation(format!(
                        "{} sent OffsetCommit {tp}@{} that its application never committed",
                        self.members[i].name, p.committed_offset
                    ));
                };
                if lease.generation.member_id.as_str() != member_id {
                    self.violation(format!(
                        "{} sent {tp}@{} as member {member_id}, leased as {}",
                        self.members[i].name, p.committed_offset, lease.generation.member_id
                    ));
                }
                if lease.generation.id.0 > stamped {
                    self.violation(format!(
                        "{} stamped {tp}@{} with generation {stamped}, older than its lease's {}",
                        self.members[i].name, p.committed_offset, lease.generation.id
                    ));
                }
                for generation in lease.generation.id.0..=stamped {
                    let owner = self.owner(generation, p.partition_index).map(str::to_owned);
                    let released = owner.is_none() && generation == stamped && generation > lease.generation.id.0;
                    if owner.as_deref() != Some(member_id.as_str()) && !released {
                        self.violation(format!(
                            "{} sent OffsetCommit {tp}@{} stamped {stamped} (lease generation {}, owned since {}) \
                             but in generation {generation} the coordinator assigned it to {owner:?}",
                            self.members[i].name, p.committed_offset, lease.generation.id, lease.owned_since
                        ));
                    }
                }
            }
        }
    }

    /// (b): accepted commits never move a partition backwards, and come from its owner.
    fn check_accepted_commits(&mut self) {
        let records = self.coord.accepted_commits();
        if records.len() == self.accepted_seen {
            return;
        }
        let mut problem = None;
        for rec in &records[self.accepted_seen..] {
            if !rec.by_owner() {
                problem = Some(format!("accepted commit by a non-owner: {rec:?}"));
                break;
            }
            let last = self.last_accepted.entry(rec.partition).or_insert(rec.offset);
            if rec.offset < *last {
                problem = Some(format!(
                    "accepted commit moves {}-{} back from {} to {}: {rec:?}",
                    rec.topic, rec.partition, last, rec.offset
                ));
                break;
            }
            *last = rec.offset;
        }
        self.accepted_seen = records.len();
        if let Some(problem) = problem {
            self.violation(problem);
        }
    }

    fn trace_arrival(&mut self, member: usize, r: &OffsetCommitRequest) {
        let (group_state, group_generation) =
            self.coord.describe(GROUP).map(|v| (v.state, v.generation)).unwrap_or(("None", -1));
        self.arrivals.push(CommitArrival {
            at: self.elapsed(),
            member,
            generation: r.generation_id_or_member_epoch,
            group_state,
            group_generation,
            partitions: r
                .topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| (p.partition_index, p.committed_offset)))
                .collect(),
        });
    }

    /// The generation the member holds, if any.
    pub fn generation_of(&self, member: usize) -> Option<Generation> {
        self.members[member].machine.current_generation().cloned()
    }
}

fn api_key(request: &RequestKind) -> ApiKey {
    match request {
        RequestKind::JoinGroup(_) => ApiKey::JoinGroup,
        RequestKind::SyncGroup(_) => ApiKey::SyncGroup,
        RequestKind::Heartbeat(_) => ApiKey::Heartbeat,
        RequestKind::LeaveGroup(_) => ApiKey::LeaveGroup,
        RequestKind::OffsetCommit(_) => ApiKey::OffsetCommit,
        RequestKind::OffsetFetch(_) => ApiKey::OffsetFetch,
        RequestKind::ConsumerGroupHeartbeat(_) => ApiKey::ConsumerGroupHeartbeat,
        _ => ApiKey::ApiVersions,
    }
}

fn response_summary(response: &ResponseKind) -> String {
    match response {
        ResponseKind::JoinGroup(r) => format!("error {} generation {}", r.error_code, r.generation_id),
        ResponseKind::SyncGroup(r) => format!("error {}", r.error_code),
        ResponseKind::Heartbeat(r) => format!("error {}", r.error_code),
        ResponseKind::LeaveGroup(r) => format!("error {}", r.error_code),
        ResponseKind::OffsetCommit(r) => {
            let codes: Vec<i16> = r.topics.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code)).collect();
            format!("errors {codes:?}")
        }
        ResponseKind::OffsetFetch(r) => format!("error {}", r.error_code),
        ResponseKind::ConsumerGroupHeartbeat(r) => format!(
            "error {} epoch {} assignment {:?}",
            r.error_code,
            r.member_epoch,
            r.assignment.as_ref().map(|a| a.topic_partitions.iter().map(|t| t.partitions.clone()).collect::<Vec<_>>())
        ),
        other => format!("{other:?}"),
    }
}

fn wire_request(api: ApiKey, version: i16, request: RequestKind) -> RequestKind {
    let mut buf = BytesMut::new();
    request.encode(&mut buf, version).unwrap_or_else(|e| panic!("{api:?} v{version} not encodable: {e}"));
    let mut bytes = buf.freeze();
    RequestKind::decode(api, &mut bytes, version).unwrap_or_else(|e| panic!("{api:?} v{version} not decodable: {e}"))
}

fn wire_response(api: ApiKey, version: i16, response: ResponseKind) -> ResponseKind {
    let mut buf = BytesMut::new();
    response.encode(&mut buf, version).unwrap_or_else(|e| panic!("{api:?} response v{version} not encodable: {e}"));
    let mut bytes = buf.freeze();
    ResponseKind::decode(api, &mut bytes, version)
        .unwrap_or_else(|e| panic!("{api:?} response v{version} not decodable: {e}"))
}

/// The machine's view of a response; `Err` with the response's debug form for APIs it never asks.
fn to_group_response(response: ResponseKind) -> Result<GroupResponse, String> {
    Ok(match response {
        ResponseKind::JoinGroup(r) => GroupResponse::JoinGroup(r),
        ResponseKind::SyncGroup(r) => GroupResponse::SyncGroup(r),
        ResponseKind::Heartbeat(r) => GroupResponse::Heartbeat(r),
        ResponseKind::LeaveGroup(r) => GroupResponse::LeaveGroup(r),
        ResponseKind::OffsetCommit(r) => GroupResponse::OffsetCommit(r),
        ResponseKind::OffsetFetch(r) => GroupResponse::OffsetFetch(r),
        ResponseKind::ConsumerGroupHeartbeat(r) => GroupResponse::ConsumerGroupHeartbeat(r),
        other => return Err(format!("{other:?}")),
    })
}
