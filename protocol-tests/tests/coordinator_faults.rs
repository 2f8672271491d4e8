//! kgroup's group member and consumer on TCP against the scripted Kafka 3.6 coordinator, with
//! injected faults: the offset lookup, the coordinator connection and the consumer's control
//! events (issue 13).
//!
//! The coordinator logs every request as it arrives (queued ones included), with the connection
//! it came on, so a test can tell what went out behind what. Every test runs under a bound and
//! stops its members and its coordinator when it ends, also when it fails.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::ApiKey;
use kgroup::driver::group::{GroupHandle, RevokeMode};
use kgroup::group::StateKind;
use kgroup::group::{CommitOutcome, GroupConfig, GroupEvent, Lease, TopicPartition};
use kgroup::{Cluster, ClusterConfig, ConsumerConfig, GroupConsumer, RebalanceContext, RebalanceListener};
use kgroup_protocol_tests::coordinator::errors::{
    COORDINATOR_LOAD_IN_PROGRESS, NOT_COORDINATOR, REBALANCE_IN_PROGRESS,
};
use kgroup_protocol_tests::coordinator::{CoordinatorConfig, Fault, FaultAction, LoggedRequest, Match};
use kgroup_protocol_tests::server::CoordinatorServer;
use tokio::sync::{mpsc, Semaphore};

const GROUP: &str = "g";
const TOPIC: &str = "t";
/// Bound on each awaited reaction.
const WAIT: Duration = Duration::from_secs(30);

/// Every test runs under this bound.
async fn bounded<F: Future<Output = ()>>(test: F) {
    tokio::time::timeout(Duration::from_secs(120), test).await.expect("test timed out");
}

fn tp(partition: i32) -> TopicPartition {
    TopicPartition::new(TOPIC, partition)
}

/// A coordinator with `partitions` partitions of the topic, no initial rebalance delay unless
/// given, sessions from 1 s, logging every request.
async fn coordinator(partitions: i32, initial_delay: Duration) -> CoordinatorServer {
    let mut config = CoordinatorConfig {
        initial_rebalance_delay: initial_delay,
        min_session_timeout: Duration::from_millis(1000),
        ..Default::default()
    };
    config.topics.insert(TOPIC.to_owned(), partitions);
    let server = CoordinatorServer::start(config).await.expect("coordinator starts");
    server.log_requests().await;
    server
}

fn group_config() -> GroupConfig {
    let mut config = GroupConfig::new(GROUP);
    config.session_timeout = Duration::from_secs(10);
    config.heartbeat_interval = Duration::from_millis(300);
    config.rebalance_timeout = Duration::from_secs(30);
    config.revoke_timeout = Duration::from_secs(10);
    config.request_timeout = Duration::from_secs(5);
    config.commit_timeout = Duration::from_secs(60);
    config
}

async fn member(server: &CoordinatorServer, config: GroupConfig) -> GroupHandle {
    let cluster = Cluster::connect(ClusterConfig::new([server.bootstrap()])).await.expect("cluster");
    GroupHandle::start(cluster, config, vec![TOPIC.to_owned()], RevokeMode::Automatic).await.expect("member starts")
}

fn consumer_config(server: &CoordinatorServer) -> ConsumerConfig {
    let mut config = ConsumerConfig::new(server.bootstrap(), GROUP);
    config.session_timeout = Duration::from_secs(10);
    config.heartbeat_interval = Duration::from_millis(300);
    config.max_poll_interval = Duration::from_secs(120);
    config.rebalance_callback_timeout = Duration::from_secs(60);
    config.request_timeout = Duration::from_secs(5);
    config.enable_auto_commit = false;
    config
}

/// Polls `probe` every 20 ms until it yields a value, at most [`WAIT`].
async fn eventually<T, F: Future<Output = Option<T>>>(what: &str, mut probe: impl FnMut() -> F) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "no {what} within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn stable(handle: &GroupHandle) {
    eventually("Stable member", || async {
        handle.group_state().await.ok().filter(|s| s.state == StateKind::Stable).map(|_| ())
    })
    .await;
}

/// Commits `offset` for `partition` as the (Stable) member.
async fn commit(handle: &GroupHandle, partition: i32, offset: i64) {
    let lease = handle.lease(tp(partition), offset).await.expect("lease").expect("partition owned");
    let results = handle.commit(vec![lease]).await.expect("commit");
    assert!(results.iter().all(|r| r.outcome.is_committed()), "{results:?}");
}

/// The group's requests logged after the first `from`.
async fn requests_since(server: &CoordinatorServer, from: usize) -> Vec<LoggedRequest> {
    server.requests(GROUP).await.into_iter().skip(from).collect()
}

fn count(requests: &[LoggedRequest], api: ApiKey) -> usize {
    requests.iter().filter(|r| r.api == api).count()
}

fn position_of(requests: &[LoggedRequest], api: ApiKey) -> Option<usize> {
    requests.iter().position(|r| r.api == api)
}

fn rendered(requests: &[LoggedRequest]) -> String {
    let lines: Vec<String> = requests.iter().map(|r| format!("{:?}@conn{}", r.api, r.conn.0)).collect();
    lines.join(" ")
}

/// Issue 13, item 1: COORDINATOR_LOAD_IN_PROGRESS (a coordinator failover) on six lookups in a
/// row. The partition must start at its committed offset, never at `auto.offset.reset`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offset_lookup_that_keeps_failing_starts_at_the_committed_offset() {
    bounded(async {
        let server = coordinator(1, Duration::ZERO).await;
        let first = member(&server, group_config()).await;
        stable(&first).await;
        commit(&first, 0, 3).await;
        first.leave("handing over").await.expect("leave");
        server
            .inject(
                Fault::new(ApiKey::OffsetFetch, FaultAction::Error(COORDINATOR_LOAD_IN_PROGRESS))
                    .matching(Match::Group(GROUP.into()))
                    .times(6),
            )
            .await;
        // auto.offset.reset is latest (the default): a reset would skip everything after 3.
        let consumer = GroupConsumer::subscribe(consumer_config(&server), &[TOPIC]).await.expect("consumer");
        let consumer = &consumer;
        let position =
            eventually("position of t-0", || async move { consumer.position(tp(0)).await.ok().flatten() }).await;
        assert_eq!(position, 3, "t-0 starts at its committed offset");
        let lookups = count(&server.requests(GROUP).await, ApiKey::OffsetFetch);
        assert_eq!(lookups, 7, "six failed lookups, then the answer");
        // The delay showed: in the member's snapshot, and as one event per failed attempt.
        let snapshot = consumer.group_state().await.expect("snapshot");
        assert_eq!(snapshot.counters.offset_lookups_retried, 6);
        let mut events = consumer.group_events();
        let mut delays = Vec::new();
        while let Ok(record) = events.try_recv() {
            if let GroupEvent::CommittedOffsetsDelayed { partitions, attempts, .. } = record.event {
                assert_eq!(partitions, vec![tp(0)]);
                delays.push(attempts);
            }
        }
        assert_eq!(delays, vec![1, 2, 3, 4, 5, 6]);
    })
    .await;
}

/// Issue 13, item 2: an OffsetFetch asked for while the member's JoinGroup is parked (here: its
/// answer is held 8 s, past the 5 s request timeout) waits for the SyncGroup's answer instead of
/// queueing behind the join, timing out, and taking the join down with its connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offset_fetch_waits_for_the_parked_join_instead_of_queueing_behind_it() {
    bounded(async {
        let server = coordinator(2, Duration::ZERO).await;
        let handle = member(&server, group_config()).await;
        stable(&handle).await;
        commit(&handle, 0, 3).await;
        let mark = server.requests(GROUP).await.len();
        for fault in [
            Fault::new(ApiKey::JoinGroup, FaultAction::Delay(Duration::from_secs(8))),
            Fault::new(ApiKey::Heartbeat, FaultAction::Error(REBALANCE_IN_PROGRESS)),
        ] {
            server.inject(fault.matching(Match::Group(GROUP.into())).once()).await;
        }
        let server = &server;
        eventually("parked JoinGroup", || async move {
            (count(&requests_since(server, mark).await, ApiKey::JoinGroup) > 0).then_some(())
        })
        .await;
        let offsets =
            tokio::time::timeout(WAIT, handle.committed(vec![tp(0)])).await.expect("in time").expect("offsets");
        assert_eq!(offsets, vec![(tp(0), Some(3))]);
        let wire = requests_since(server, mark).await;
        assert_eq!(count(&wire, ApiKey::JoinGroup), 1, "the join was not aborted: {}", rendered(&wire));
        assert!(
            position_of(&wire, ApiKey::OffsetFetch) > position_of(&wire, ApiKey::SyncGroup),
            "the OffsetFetch went out after the SyncGroup's answer: {}",
            rendered(&wire)
        );
    })
    .await;
}

/// Issue 13, item 2: closing while the JoinGroup is parked (the first generation's initial
/// rebalance delay, a minute here). The LeaveGroup must reach the coordinator now, not when the
/// join completes with this member in the new generation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leave_group_reaches_the_coordinator_while_the_join_is_parked() {
    bounded(async {
        let server = coordinator(2, Duration::from_secs(60)).await;
        let handle = member(&server, group_config()).await;
        let server = &server;
        eventually("parked JoinGroup with a member id", || async move {
            let view = server.describe(GROUP).await?;
            view.members.iter().any(|m| m.awaiting_join).then_some(())
        })
        .await;
        tokio::time::timeout(WAIT, handle.leave("closing")).await.expect("the LeaveGroup was answered").expect("leave");
        let view = server.describe(GROUP).await.expect("group");
        assert!(view.members.is_empty(), "the member left: {view:?}");
        let wire = server.requests(GROUP).await;
        let join = wire.iter().rfind(|r| r.api == ApiKey::JoinGroup).expect("a join");
        let leave = wire.iter().find(|r| r.api == ApiKey::LeaveGroup).expect("a leave");
        assert_ne!(join.conn, leave.conn, "not behind the parked join: {}", rendered(&wire));
    })
    .await;
}

/// Issue 13, item 3: the coordinator moves (a heartbeat answers NOT_COORDINATOR) while a commit
/// waits, unanswered, on the old connection. The commit goes again on the new connection, and the
/// old request's failure does not tear the new connection down (one rediscovery, not two).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_left_on_the_old_coordinator_connection_does_not_tear_down_the_new_one() {
    bounded(async {
        let server = coordinator(2, Duration::ZERO).await;
        let handle = member(&server, group_config()).await;
        stable(&handle).await;
        let mark = server.requests(GROUP).await.len();
        for fault in [
            Fault::new(ApiKey::Heartbeat, FaultAction::ErrorWhenNext(NOT_COORDINATOR)),
            Fault::new(ApiKey::OffsetCommit, FaultAction::Drop),
        ] {
            server.inject(fault.matching(Match::Group(GROUP.into())).once()).await;
        }
        let server = &server;
        // The held heartbeat is answered NOT_COORDINATOR when the commit arrives behind it.
        eventually("held heartbeat", || async move {
            (count(&requests_since(server, mark).await, ApiKey::Heartbeat) > 0).then_some(())
        })
        .await;
        let lease = handle.lease(tp(0), 5).await.expect("lease").expect("owned");
        let results = tokio::time::timeout(WAIT, handle.commit(vec![lease])).await.expect("in time").expect("commit");
        assert!(matches!(results[0].outcome, CommitOutcome::Committed { .. }), "{results:?}");
        let wire = requests_since(server, mark).await;
        assert_eq!(count(&wire, ApiKey::FindCoordinator), 1, "one rediscovery: {}", rendered(&wire));
        let commits: Vec<&LoggedRequest> = wire.iter().filter(|r| r.api == ApiKey::OffsetCommit).collect();
        assert_eq!(commits.len(), 2, "{}", rendered(&wire));
        assert_ne!(commits[0].conn, commits[1].conn, "sent again on the new connection");
        assert_eq!(handle.group_state().await.expect("snapshot").state, StateKind::Stable);
    })
    .await;
}

/// Calls `assigned` once it may (the test holds the first call), reports `revoked`.
struct HeldListener {
    entered: mpsc::UnboundedSender<()>,
    release: Semaphore,
    held_once: AtomicBool,
    revoked: mpsc::UnboundedSender<Vec<TopicPartition>>,
}

impl RebalanceListener for HeldListener {
    fn assigned<'a>(
        &'a self,
        _context: &'a RebalanceContext,
        _partitions: &'a [TopicPartition],
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            if !self.held_once.swap(true, Ordering::SeqCst) {
                let _ = self.entered.send(());
                let _ = self.release.acquire().await;
            }
        })
    }

    fn revoked<'a>(
        &'a self,
        _context: &'a RebalanceContext,
        partitions: &'a [TopicPartition],
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        let _ = self.revoked.send(partitions.to_vec());
        Box::pin(async {})
    }
}

/// Issue 13, item 4: while the consumer is busy (its listener runs), a rebalance is announced
/// and then far more commit outcomes are published than the observers' stream holds. The
/// consumer must still see the revocation: its listener's `revoked` runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_events_reach_the_consumer_behind_a_flood_of_commit_outcomes() {
    bounded(async {
        let server = coordinator(2, Duration::ZERO).await;
        let (entered, mut entered_rx) = mpsc::unbounded_channel();
        let (revoked, mut revoked_rx) = mpsc::unbounded_channel();
        let listener =
            Arc::new(HeldListener { entered, release: Semaphore::new(0), held_once: AtomicBool::new(false), revoked });
        let consumer =
            GroupConsumer::subscribe_with_listener(consumer_config(&server), &[TOPIC], Some(listener.clone()))
                .await
                .expect("consumer");
        tokio::time::timeout(WAIT, entered_rx.recv()).await.expect("first assignment").expect("listener");
        let consumer = Arc::new(consumer);
        let observer = consumer.observer();
        server
            .inject(
                Fault::new(ApiKey::Heartbeat, FaultAction::Error(REBALANCE_IN_PROGRESS))
                    .matching(Match::Group(GROUP.into()))
                    .once(),
            )
            .await;
        let observer = &observer;
        let revoking = eventually("revoke window", || async move {
            observer.group_state().await.ok().filter(|s| s.state == StateKind::Revoking)
        })
        .await;
        // 5000 commit outcomes behind the RevokeRequested event (the observers' stream keeps 4096),
        // through the consumer, all at once.
        let generation = revoking.generation.expect("a generation");
        let owned = revoking.assignment.iter().find(|p| p.partition == tp(0)).expect("owned");
        let lease = Lease { partition: tp(0), next_offset: 1, generation, owned_since: owned.owned_since };
        let mut pending = tokio::task::JoinSet::new();
        for offset in 1..=5000 {
            let (consumer, lease) = (consumer.clone(), lease.at_offset(offset));
            pending.spawn(async move { consumer.commit_leases(vec![lease]).await });
        }
        while let Some(commit) = pending.join_next().await {
            commit.expect("no panic").expect("commit outcome");
        }
        // The observers' stream (the consumer's `group_events` receiver, never read) dropped
        // the oldest of them, and says so.
        let dropped = observer.group_state().await.expect("snapshot").counters.observer_events_dropped;
        assert!(dropped > 0, "observer_events_dropped = {dropped}");
        listener.release.add_permits(1);
        let partitions =
            tokio::time::timeout(WAIT, revoked_rx.recv()).await.expect("revoked in time").expect("listener");
        assert_eq!(partitions, vec![tp(0), tp(1)]);
    })
    .await;
}
