//! [F] cases: kgroup's group driver (`GroupHandle`, so the `GroupMachine` decides) against
//! injected answers. Each case runs its own broker of the peer's kind, because faults, loading
//! and resignation apply to a whole broker and the suite's cases run concurrently.
//!
//! A case renders the client's reaction from what happened: the requests it sent next, as the
//! scripted coordinator logged them (`wire=`, member `M` and generation `N` being those of the
//! member's first Stable state), its events (rejoin reasons, coordinator rediscoveries, stale
//! answers, fatal errors) and its snapshot. The mock logs no requests: it renders `wire=?`.

use super::*;
use kgroup::driver::group::{GroupEventRecord, GroupHandle, RevokeMode};
use kgroup::group::StateKind;
use kgroup::group::{CommitOutcome, GroupConfig, GroupEvent, GroupSnapshot, TopicPartition};
use kgroup::protocol::error_code::codes::{
    COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, FENCED_INSTANCE_ID, ILLEGAL_GENERATION, NOT_COORDINATOR,
    REBALANCE_IN_PROGRESS, REQUEST_TIMED_OUT, UNKNOWN_MEMBER_ID, UNKNOWN_SERVER_ERROR,
};
use kgroup_protocol_tests::coordinator::{Fault, FaultAction, LoggedRequest, Match};
use tokio::sync::broadcast;

/// Bound on each awaited reaction.
const WAIT: Duration = Duration::from_secs(25);
/// The requests that show how a member (re)joins.
const JOINING: &[ApiKey] = &[ApiKey::JoinGroup, ApiKey::SyncGroup, ApiKey::FindCoordinator];

pub(super) fn cases() -> Vec<Case> {
    vec![
        case!("T15", "a,b: reactions=[coordinator loading, JoinGroup asked to rejoin] coordinator=kept wire=JoinGroup(M) JoinGroup(M) JoinGroup(M) SyncGroup(M,N+1) final=Stable gen=N+1 member=M since=N; c: fatal(protocol connect) wire=JoinGroup(M)", |c| {
            // A heartbeat's REBALANCE_IN_PROGRESS makes the Stable member rejoin; its JoinGroups
            // then meet (a), (b), and, once it is Stable again, (c).
            let mut m = Member::start(&c, Setup::default()).await?;
            let mark = m
                .inject(vec![
                    fail(ApiKey::JoinGroup, COORDINATOR_LOAD_IN_PROGRESS),
                    fail(ApiKey::JoinGroup, REBALANCE_IN_PROGRESS),
                    fail(ApiKey::Heartbeat, REBALANCE_IN_PROGRESS),
                ])
                .await?;
            let v = m.wait(&mark, "Stable in N+1", |v| v.stable_past(0)).await?;
            let ab = format!(
                "a,b: reactions=[{}] coordinator={} wire={} final={}",
                v.reactions().join(", "),
                v.coordinator(),
                v.wire(JOINING, false),
                v.state()
            );
            let mark = m
                .inject(vec![
                    fault(ApiKey::JoinGroup, FaultAction::ProtocolType("connect")),
                    fail(ApiKey::Heartbeat, REBALANCE_IN_PROGRESS),
                ])
                .await?;
            let v = m.wait(&mark, "Fatal", |v| v.fatal().is_some()).await?;
            Ok(format!("{ab}; c: {} wire={}", v.fatal().unwrap_or_default(), v.wire(JOINING, false)))
        }),
        case!("T25", "reactions=[group is rebalancing, retry after SyncGroup UNKNOWN_SERVER_ERROR, retry after coordinator moved during SyncGroup] coordinator=rediscovered x1 lost=none fatal=none wire=JoinGroup(M) SyncGroup(M,N+1) JoinGroup(M) SyncGroup(M,N+1) JoinGroup(M) SyncGroup(M,N+1) FindCoordinator JoinGroup(M) SyncGroup(M,N+1) final=Stable gen=N+1 member=M since=N", |c| {
            let mut m = Member::start(&c, Setup::default()).await?;
            let mark = m
                .inject(vec![
                    fail(ApiKey::SyncGroup, REBALANCE_IN_PROGRESS),
                    fail(ApiKey::SyncGroup, UNKNOWN_SERVER_ERROR),
                    fail(ApiKey::SyncGroup, NOT_COORDINATOR),
                    fail(ApiKey::Heartbeat, REBALANCE_IN_PROGRESS),
                ])
                .await?;
            let v = m.wait(&mark, "three failed syncs and Stable", |v| v.reactions().len() == 3 && v.stable_past(0)).await?;
            Ok(format!(
                "reactions=[{}] coordinator={} lost={} fatal={} wire={} final={}",
                v.reactions().join(", "),
                v.coordinator(),
                v.lost(),
                v.fatal().unwrap_or_else(|| "none".into()),
                v.wire(JOINING, false),
                v.state()
            ))
        }),
        case!("T32", "ILLEGAL_GENERATION: stale=[Heartbeat sent=N current=none] lost=none wire=JoinGroup(M) SyncGroup(M,N+1) final=Stable gen=N+1 member=M since=N; UNKNOWN_MEMBER_ID: stale=[Heartbeat sent=N+1 current=none] lost=none wire=JoinGroup(M) SyncGroup(M,N+2) final=Stable gen=N+2 member=M since=N", |c| {
            // One ordered connection: an answer about generation N can only reach the client
            // after it left N. The coordinator holds the Revoking member's heartbeat until the
            // member's JoinGroup arrives, then answers it; applying the answer would drop the
            // partitions (and the member id) and send a second JoinGroup.
            let mut m = Member::start(&c, Setup { revoke: RevokeMode::Manual, ..Setup::default() }).await?;
            let mut rounds = Vec::new();
            for (round, code) in [(0, ILLEGAL_GENERATION), (1, UNKNOWN_MEMBER_ID)] {
                let mark = m
                    .inject(vec![
                        fail(ApiKey::Heartbeat, REBALANCE_IN_PROGRESS),
                        fault(ApiKey::Heartbeat, FaultAction::ErrorWhenNext(code)),
                    ])
                    .await?;
                m.wait(&mark, "the held heartbeat", |v| v.sent(ApiKey::Heartbeat) >= 2).await?;
                m.handle.revoke_done();
                let v = m.wait(&mark, "Stable in a newer generation", |v| v.stable_past(round)).await?;
                rounds.push(format!(
                    "{}: stale=[{}] lost={} wire={} final={}",
                    e(code),
                    v.stale(),
                    v.lost(),
                    v.wire(JOINING, false),
                    v.state()
                ));
            }
            Ok(rounds.join("; "))
        }),
        case!("T33", "a: coordinator=rediscovered x2 reactions=[] wire=Heartbeat(M,N) FindCoordinator Heartbeat(M,N) FindCoordinator Heartbeat(M,N) state=Stable gen=N member=M since=N; b: fatal(fenced instance i-33) stopped=yes wire=Heartbeat(M,N)", |c| {
            let mut m = Member::start(&c, Setup { no_rebalance: true, ..Setup::default() }).await?;
            let mark = m
                .inject(vec![fail(ApiKey::Heartbeat, NOT_COORDINATOR), fail(ApiKey::Heartbeat, COORDINATOR_NOT_AVAILABLE)])
                .await?;
            let v = m
                .wait(&mark, "two rediscoveries, then a heartbeat", |v| v.found() == 2 && v.heartbeat_after_lookup())
                .await?;
            let a = format!(
                "a: coordinator={} reactions=[{}] wire={} state={}",
                v.coordinator(),
                v.reactions().join(", "),
                v.wire(&[ApiKey::Heartbeat, ApiKey::FindCoordinator, ApiKey::JoinGroup], true),
                v.state()
            );
            let mut fenced = Member::start(&c, Setup { instance: Some("i-33"), ..Setup::default() }).await?;
            let mark = fenced.inject(vec![fail(ApiKey::Heartbeat, FENCED_INSTANCE_ID)]).await?;
            fenced.wait(&mark, "Fatal", |v| v.fatal().is_some()).await?;
            let stopped = fenced.stopped().await;
            let v = fenced.view(&mark).await?;
            Ok(format!(
                "{a}; b: {} stopped={} wire={}",
                v.fatal().unwrap_or_default(),
                if stopped { "yes" } else { "no" },
                v.wire(&[ApiKey::Heartbeat, ApiKey::JoinGroup, ApiKey::LeaveGroup, ApiKey::FindCoordinator], true)
            ))
        }),
        case!("T49", "a: p0=Committed(N) coordinator=kept wire=OffsetCommit(M,N) OffsetCommit(M,N); b: p1=Committed(N) coordinator=rediscovered x3 wire=OffsetCommit(M,N) FindCoordinator OffsetCommit(M,N) FindCoordinator OffsetCommit(M,N) FindCoordinator OffsetCommit(M,N); reactions=[] state=Stable gen=N member=M since=N", |c| {
            let apis = [ApiKey::OffsetCommit, ApiKey::FindCoordinator, ApiKey::JoinGroup];
            let mut m = Member::start(&c, Setup { no_rebalance: true, ..Setup::default() }).await?;
            let mark = m.inject(vec![fail(ApiKey::OffsetCommit, COORDINATOR_LOAD_IN_PROGRESS)]).await?;
            let a = m.commit(0, 5).await?;
            let v = m.view(&mark).await?;
            let a = format!("a: p0={a} coordinator={} wire={}", v.coordinator(), v.wire(&apis, false));
            let mark = m
                .inject(vec![
                    fail(ApiKey::OffsetCommit, REQUEST_TIMED_OUT),
                    fail(ApiKey::OffsetCommit, NOT_COORDINATOR),
                    fail(ApiKey::OffsetCommit, COORDINATOR_NOT_AVAILABLE),
                ])
                .await?;
            let b = m.commit(1, 9).await?;
            let v = m.view(&mark).await?;
            Ok(format!(
                "{a}; b: p1={b} coordinator={} wire={}; reactions=[{}] state={}",
                v.coordinator(),
                v.wire(&apis, false),
                v.reactions().join(", "),
                v.state()
            ))
        }),
        case!("T53", "offsets=p0:3 p1:none coordinator=rediscovered x2 wire=OffsetFetch FindCoordinator OffsetFetch OffsetFetch FindCoordinator OffsetFetch state=Stable gen=N member=M since=N", |c| {
            // (a) COORDINATOR_NOT_AVAILABLE: Java 3.6 fails fatally; kgroup rediscovers and
            // retries (deliberate deviation, spec §10 and KAFKA-17279).
            let mut m = Member::start(&c, Setup { no_rebalance: true, ..Setup::default() }).await?;
            m.commit(0, 3).await?;
            let mark = m
                .inject(vec![
                    fail(ApiKey::OffsetFetch, COORDINATOR_NOT_AVAILABLE),
                    fail(ApiKey::OffsetFetch, COORDINATOR_LOAD_IN_PROGRESS),
                    fail(ApiKey::OffsetFetch, NOT_COORDINATOR),
                ])
                .await?;
            let offsets = m.handle.committed(vec![m.tp(0), m.tp(1)]).await.map_err(err)?;
            let offsets: Vec<String> = offsets
                .iter()
                .map(|(tp, o)| format!("p{}:{}", tp.partition, o.map_or("none".into(), |o| o.to_string())))
                .collect();
            let v = m.view(&mark).await?;
            Ok(format!(
                "offsets={} coordinator={} wire={} state={}",
                offsets.join(" "),
                v.coordinator(),
                v.wire(&[ApiKey::OffsetFetch, ApiKey::FindCoordinator, ApiKey::JoinGroup], false),
                v.state()
            ))
        }),
        case!("T57", "coordinator=lost(JoinGroup: NotCoordinator (16)) wire=FindCoordinator JoinGroup(M) member=M", |c| {
            // The first generation's JoinGroup is parked by the initial rebalance delay when
            // the coordinator resigns.
            let setup = Setup { initial_delay: Duration::from_secs(20), wait_stable: false, ..Setup::default() };
            let mut m = Member::start(&c, setup).await?;
            let start = m.mark().await;
            let parked = m.wait(&start, "the parked JoinGroup", |v| v.joined_with_id().is_some()).await?;
            m.member = parked.joined_with_id().unwrap_or_default();
            let mark = m.mark().await;
            m.broker.scripted()?.unload().await;
            let v = m.wait(&mark, "the JoinGroup after rediscovery", |v| v.sent(ApiKey::JoinGroup) >= 1).await?;
            Ok(format!(
                "coordinator={} wire={} member={}",
                v.coordinator_loss(),
                v.wire_until(ApiKey::JoinGroup, &[ApiKey::JoinGroup, ApiKey::FindCoordinator]),
                v.who(v.snapshot.member_id.as_str())
            ))
        }),
        case!("T58", "heartbeat: coordinator=kept reactions=[] wire=Heartbeat(M,N) state=Stable gen=N member=M since=N; commit: p0=Committed(N) retried=yes coordinator=kept wire=OffsetCommit(M,N); join: reactions=[group is rebalancing, coordinator loading] wire=JoinGroup(M) SyncGroup(M,N+1) JoinGroup(M) SyncGroup(M,N+1) final=Stable gen=N+1 member=M since=N", |c| {
            let mut m = Member::start(&c, Setup::default()).await?;
            let apis = [ApiKey::Heartbeat, ApiKey::JoinGroup, ApiKey::FindCoordinator];
            let mark = m.mark().await;
            m.broker.scripted()?.set_loading(true).await;
            let v = m.wait(&mark, "heartbeats while loading", |v| v.sent(ApiKey::Heartbeat) >= 2).await?;
            let heartbeat = format!(
                "heartbeat: coordinator={} reactions=[{}] wire={} state={}",
                v.coordinator(),
                v.reactions().join(", "),
                v.wire(&apis, true),
                v.state()
            );
            let mark = m.mark().await;
            let pending = m.handle.start_commit(vec![m.lease(0, 4).await?]);
            m.wait(&mark, "a retried commit", |v| v.sent(ApiKey::OffsetCommit) >= 2).await?;
            m.broker.scripted()?.set_loading(false).await;
            let results = pending.await.map_err(err)?;
            let v = m.view(&mark).await?;
            let commit = format!(
                "commit: p0={} retried=yes coordinator={} wire={}",
                v.outcome(&results),
                v.coordinator(),
                v.wire(&[ApiKey::OffsetCommit, ApiKey::JoinGroup, ApiKey::FindCoordinator], true)
            );
            // The JoinGroup answer leaves after loading started (the case starts it well within
            // the delay), so the SyncGroup meets it.
            let mark = m
                .inject(vec![
                    fault(ApiKey::JoinGroup, FaultAction::Delay(Duration::from_secs(5))),
                    fail(ApiKey::Heartbeat, REBALANCE_IN_PROGRESS),
                ])
                .await?;
            m.wait(&mark, "the delayed JoinGroup", |v| v.sent(ApiKey::JoinGroup) >= 1).await?;
            m.broker.scripted()?.set_loading(true).await;
            m.wait(&mark, "JoinGroups while loading", |v| v.sent_after(ApiKey::SyncGroup, ApiKey::JoinGroup) >= 2).await?;
            m.broker.scripted()?.set_loading(false).await;
            let v = m.wait(&mark, "Stable again", |v| v.stable_past(0)).await?;
            let mut reactions = v.reactions();
            reactions.dedup();
            Ok(format!(
                "{heartbeat}; {commit}; join: reactions=[{}] wire={} final={}",
                reactions.join(", "),
                v.wire(JOINING, true),
                v.state()
            ))
        }),
    ]
}

/// A fault for the next request of `api`.
fn fault(api: ApiKey, action: FaultAction) -> Fault {
    Fault::new(api, action).once()
}

/// The next request of `api` is answered with `code`.
fn fail(api: ApiKey, code: i16) -> Fault {
    fault(api, FaultAction::Error(code))
}

// ---------------------------------------------------------------------------------------------
// The member and its broker

/// A case's own broker.
enum Broker {
    Scripted(CoordinatorServer),
    Mock(MockKafka),
}

impl Broker {
    async fn start(kind: &PeerKind, topic: &str, initial_delay: Duration) -> Res<Broker> {
        match kind {
            PeerKind::Scripted => {
                let mut config = CoordinatorConfig {
                    initial_rebalance_delay: initial_delay,
                    min_session_timeout: Duration::from_millis(1000),
                    ..Default::default()
                };
                config.topics.insert(topic.to_owned(), 2);
                let server = CoordinatorServer::start(config).await.map_err(err)?;
                server.log_requests().await;
                Ok(Broker::Scripted(server))
            }
            PeerKind::Mock => {
                let mock = MockKafka::start(1);
                mock.create_topic(topic, 2).map_err(err)?;
                Ok(Broker::Mock(mock))
            }
            other => Err(format!("{} cannot inject answers", other.name())),
        }
    }

    fn bootstrap(&self) -> String {
        match self {
            Broker::Scripted(s) => s.bootstrap(),
            Broker::Mock(m) => m.bootstrap(),
        }
    }

    fn scripted(&self) -> Res<&CoordinatorServer> {
        match self {
            Broker::Scripted(s) => Ok(s),
            Broker::Mock(_) => Err("the mock cannot load or resign a coordinator".into()),
        }
    }

    /// Installs `faults` for `group` and returns how many of its requests were logged before,
    /// in one step, so every request after the mark meets the faults.
    async fn inject(&self, group: &str, faults: Vec<Fault>) -> Res<usize> {
        match self {
            Broker::Scripted(s) => {
                let group = group.to_owned();
                Ok(s.with(move |c, _| {
                    let logged = c.requests().iter().filter(|r| r.group.as_deref() == Some(&group)).count();
                    for f in faults {
                        c.inject(f.matching(Match::Group(group.clone())));
                    }
                    logged
                })
                .await)
            }
            Broker::Mock(mock) => {
                for f in faults {
                    match f.action {
                        FaultAction::Error(code) if f.remaining == Some(1) => {
                            mock.inject_errors(f.api, &[code]).map_err(err)?
                        }
                        other => return Err(format!("the mock cannot express {other:?}")),
                    }
                }
                Ok(0)
            }
        }
    }

    /// The group's requests in arrival order; `None` on the mock, which logs none.
    async fn wire(&self, group: &str) -> Option<Vec<LoggedRequest>> {
        match self {
            Broker::Scripted(s) => Some(s.requests(group).await),
            Broker::Mock(_) => None,
        }
    }
}

/// How a case's member is set up.
struct Setup {
    revoke: RevokeMode,
    instance: Option<&'static str>,
    initial_delay: Duration,
    wait_stable: bool,
    /// The case never rebalances, so the mock may have a session as long as the scripted
    /// coordinator's: its shortest session would expire on a loaded machine while the member
    /// rediscovers the coordinator.
    no_rebalance: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            revoke: RevokeMode::Automatic,
            instance: None,
            initial_delay: Duration::ZERO,
            wait_stable: true,
            no_rebalance: false,
        }
    }
}

/// Where a window of observation starts.
struct Mark {
    events: usize,
    wire: usize,
}

/// One kgroup member on its own broker, with every event it published. Dropping it stops the
/// member (its handle is the only one) and the broker.
struct Member {
    handle: GroupHandle,
    broker: Broker,
    events: broadcast::Receiver<GroupEventRecord>,
    seen: Vec<GroupEvent>,
    group: String,
    topic: String,
    /// `M` and `N`: the member id and generation of the first Stable state.
    member: String,
    generation: i32,
    /// The last snapshot taken: a member that stopped answers no more.
    last: Option<GroupSnapshot>,
}

impl Member {
    async fn start(c: &Ctx, setup: Setup) -> Res<Member> {
        let broker = Broker::start(&c.peer.kind, c.topic(), setup.initial_delay).await?;
        let cluster = Cluster::connect(ClusterConfig::new([broker.bootstrap()])).await.map_err(err)?;
        let mut config = GroupConfig::new(c.group.clone());
        config.group_instance_id = setup.instance.map(str::to_owned);
        // Long enough that a loaded machine never expires the session mid-case; the mock makes
        // every rebalance wait `session.timeout.ms - 1 s`, so it gets the shortest it allows.
        config.session_timeout = match broker {
            Broker::Mock(_) if !setup.no_rebalance => Duration::from_secs(3),
            Broker::Mock(_) | Broker::Scripted(_) => Duration::from_secs(10),
        };
        config.heartbeat_interval = Duration::from_millis(300);
        config.rebalance_timeout = Duration::from_secs(10);
        config.revoke_timeout = Duration::from_secs(5);
        config.request_timeout = Duration::from_secs(10);
        config.commit_timeout = Duration::from_secs(20);
        config.commit_attempts = 10;
        let (handle, events) =
            GroupHandle::start_with_events(cluster, config, vec![c.topic().to_owned()], setup.revoke)
                .await
                .map_err(err)?;
        let mut member = Member {
            handle,
            broker,
            events,
            seen: Vec::new(),
            group: c.group.clone(),
            topic: c.topic().to_owned(),
            member: String::new(),
            generation: -1,
            last: None,
        };
        if setup.wait_stable {
            let start = Mark { events: 0, wire: 0 };
            let stable =
                member.wait(&start, "the first Stable state", |v| v.snapshot.state == StateKind::Stable).await?;
            let generation = stable.snapshot.generation.ok_or("Stable without a generation")?;
            member.member = generation.member_id.to_string();
            member.generation = generation.id.0;
        }
        Ok(member)
    }

    fn tp(&self, partition: i32) -> TopicPartition {
        TopicPartition::new(&self.topic, partition)
    }

    async fn mark(&mut self) -> Mark {
        self.drain();
        let wire = self.broker.wire(&self.group).await.map_or(0, |w| w.len());
        Mark { events: self.seen.len(), wire }
    }

    async fn inject(&mut self, faults: Vec<Fault>) -> Res<Mark> {
        self.drain();
        let events = self.seen.len();
        let wire = self.broker.inject(&self.group, faults).await?;
        Ok(Mark { events, wire })
    }

    fn drain(&mut self) {
        while let Ok(record) = self.events.try_recv() {
            self.seen.push(record.event);
        }
    }

    /// Everything observed since `mark`.
    async fn view(&mut self, mark: &Mark) -> Res<View> {
        if let Ok(snapshot) = self.handle.group_state().await {
            self.last = Some(snapshot);
        }
        let snapshot = self.last.clone().ok_or("the member stopped before its first snapshot")?;
        self.drain();
        let wire = self.broker.wire(&self.group).await.map(|w| w.get(mark.wire..).unwrap_or_default().to_vec());
        Ok(View {
            snapshot,
            events: self.seen[mark.events..].to_vec(),
            wire,
            member: self.member.clone(),
            generation: self.generation,
        })
    }

    /// Waits (bounded) until `done` holds for what happened since `from`.
    async fn wait(&mut self, from: &Mark, what: &str, done: impl Fn(&View) -> bool) -> Res<View> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let view = self.view(from).await?;
            if done(&view) {
                return Ok(view);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!("no {what} within {WAIT:?}: state={} events={:?}", view.state(), view.events));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn lease(&self, partition: i32, offset: i64) -> Res<kgroup::group::Lease> {
        self.handle
            .lease(self.tp(partition), offset)
            .await
            .map_err(err)?
            .ok_or_else(|| format!("p{partition} not owned"))
    }

    /// Commits one partition and renders its outcome.
    async fn commit(&mut self, partition: i32, offset: i64) -> Res<String> {
        let lease = self.lease(partition, offset).await?;
        let results = self.handle.commit(vec![lease]).await.map_err(err)?;
        let mark = self.mark().await;
        Ok(self.view(&mark).await?.outcome(&results))
    }

    /// Whether the member's task ended (it stops after a fatal error), within the bound.
    async fn stopped(&self) -> bool {
        let deadline = tokio::time::Instant::now() + WAIT;
        while tokio::time::Instant::now() < deadline {
            if self.handle.group_state().await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }
}

/// What happened since a mark, rendered relative to the member's `M` and `N`.
struct View {
    snapshot: GroupSnapshot,
    events: Vec<GroupEvent>,
    wire: Option<Vec<LoggedRequest>>,
    member: String,
    generation: i32,
}

impl View {
    fn who(&self, id: &str) -> String {
        match id {
            "" => "\"\"".into(),
            id if id == self.member => "M".into(),
            _ => "new".into(),
        }
    }

    fn gen(&self, g: i32) -> String {
        match g - self.generation {
            0 => "N".into(),
            d if d > 0 => format!("N+{d}"),
            d => format!("N{d}"),
        }
    }

    fn outcome(&self, results: &[kgroup::group::PartitionCommit]) -> String {
        let outcomes: Vec<String> = results
            .iter()
            .map(|r| match &r.outcome {
                CommitOutcome::Committed { generation, .. } => format!("Committed({})", self.gen(generation.0)),
                other => format!("{other:?}"),
            })
            .collect();
        outcomes.join(",")
    }

    fn stable_past(&self, by: i32) -> bool {
        self.snapshot.state == StateKind::Stable
            && self.snapshot.generation.as_ref().is_some_and(|g| g.id.0 > self.generation + by)
    }

    /// `state gen member since` from the snapshot.
    fn state(&self) -> String {
        let s = &self.snapshot;
        let gen = s.generation.as_ref().map_or("none".into(), |g| self.gen(g.id.0));
        let mut since: Vec<String> = s.assignment.iter().map(|p| self.gen(p.owned_since.0)).collect();
        since.dedup();
        format!("{} gen={gen} member={} since={}", s.state, self.who(s.member_id.as_str()), since.join(","))
    }

    /// Why the member went (back) to AwaitingJoin from a join or sync that failed.
    fn reactions(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| match e {
                GroupEvent::Transition {
                    from: StateKind::AwaitingJoin | StateKind::AwaitingSync,
                    to: StateKind::AwaitingJoin,
                    reason,
                    ..
                } => Some(reason.clone()),
                _ => None,
            })
            .collect()
    }

    fn found(&self) -> usize {
        self.events.iter().filter(|e| matches!(e, GroupEvent::Coordinator { node_id: Some(_), .. })).count()
    }

    fn coordinator(&self) -> String {
        let lost = self.events.iter().filter(|e| matches!(e, GroupEvent::Coordinator { node_id: None, .. })).count();
        match (lost, self.found()) {
            (0, 0) => "kept".into(),
            (l, f) if l == f => format!("rediscovered x{l}"),
            (l, f) => format!("lost x{l} found x{f}"),
        }
    }

    /// The reason of the first coordinator loss.
    fn coordinator_loss(&self) -> String {
        self.events
            .iter()
            .find_map(|e| match e {
                GroupEvent::Coordinator { node_id: None, reason } => Some(format!("lost({reason})")),
                _ => None,
            })
            .unwrap_or_else(|| "kept".into())
    }

    fn lost(&self) -> &'static str {
        if self.events.iter().any(|e| matches!(e, GroupEvent::Lost { .. })) {
            "partitions"
        } else {
            "none"
        }
    }

    fn fatal(&self) -> Option<String> {
        self.events.iter().find_map(|e| match e {
            GroupEvent::Fatal(kgroup::group::GroupError::InconsistentProtocol { got, .. }) => {
                Some(format!("fatal(protocol {got})"))
            }
            GroupEvent::Fatal(kgroup::group::GroupError::FencedInstanceId { instance_id }) => {
                Some(format!("fatal(fenced instance {instance_id})"))
            }
            GroupEvent::Fatal(other) => Some(format!("fatal({other})")),
            _ => None,
        })
    }

    fn stale(&self) -> String {
        let stale: Vec<String> = self
            .events
            .iter()
            .filter_map(|e| match e {
                GroupEvent::StaleResponse { api, sent, current } => Some(format!(
                    "{api} sent={} current={}",
                    self.gen(sent.id.0),
                    current.as_ref().map_or("none".into(), |g| self.gen(g.id.0))
                )),
                _ => None,
            })
            .collect();
        stale.join(", ")
    }

    fn requests(&self) -> &[LoggedRequest] {
        self.wire.as_deref().unwrap_or_default()
    }

    /// Requests of `api` the broker received.
    fn sent(&self, api: ApiKey) -> usize {
        self.requests().iter().filter(|r| r.api == api).count()
    }

    /// Requests of `api` received after the first of `after`.
    fn sent_after(&self, after: ApiKey, api: ApiKey) -> usize {
        let start = self.requests().iter().position(|r| r.api == after).map_or(usize::MAX, |i| i + 1);
        self.requests().iter().skip(start).filter(|r| r.api == api).count()
    }

    /// A JoinGroup with a member id arrived (the second step of the first join).
    fn joined_with_id(&self) -> Option<String> {
        self.requests()
            .iter()
            .find(|r| r.api == ApiKey::JoinGroup && r.member_id.as_deref().is_some_and(|id| !id.is_empty()))
            .and_then(|r| r.member_id.clone())
    }

    /// A heartbeat arrived after the last FindCoordinator (always true where nothing is logged).
    fn heartbeat_after_lookup(&self) -> bool {
        let Some(reqs) = &self.wire else { return true };
        let last_lookup = reqs.iter().rposition(|r| r.api == ApiKey::FindCoordinator);
        last_lookup.is_some_and(|i| reqs[i..].iter().any(|r| r.api == ApiKey::Heartbeat))
    }

    fn render(&self, r: &LoggedRequest) -> String {
        let name = format!("{:?}", r.api);
        match (&r.member_id, r.generation) {
            (Some(id), Some(g)) => format!("{name}({},{})", self.who(id), self.gen(g)),
            (Some(id), None) => format!("{name}({})", self.who(id)),
            _ => name,
        }
    }

    /// The requests of `apis`, in order; `collapse` folds repeats of one request into one.
    fn wire(&self, apis: &[ApiKey], collapse: bool) -> String {
        if self.wire.is_none() {
            return "?".into();
        }
        let mut out: Vec<String> = Vec::new();
        for r in self.requests().iter().filter(|r| apis.contains(&r.api)) {
            let line = self.render(r);
            if !(collapse && out.last() == Some(&line)) {
                out.push(line);
            }
        }
        out.join(" ")
    }

    /// The requests of `apis` up to the first of `until`.
    fn wire_until(&self, until: ApiKey, apis: &[ApiKey]) -> String {
        if self.wire.is_none() {
            return "?".into();
        }
        let mut out = Vec::new();
        for r in self.requests().iter().filter(|r| apis.contains(&r.api)) {
            out.push(self.render(r));
            if r.api == until {
                break;
            }
        }
        out.join(" ")
    }
}
