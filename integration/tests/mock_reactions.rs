//! kgroup's reactions to coordinator errors, injected on librdkafka's mock cluster: five codes
//! (COORDINATOR_LOAD_IN_PROGRESS 14, NOT_COORDINATOR 16, ILLEGAL_GENERATION 22,
//! UNKNOWN_MEMBER_ID 25, REBALANCE_IN_PROGRESS 27) on four APIs (Heartbeat, OffsetCommit,
//! JoinGroup, SyncGroup), each checked against kafka36-group-semantics.md section 10 and
//! DESIGN section 4 through the member's events and snapshots.
//!
//! One mock cluster (one broker, one two-partition topic) and one member per test: the injected
//! error queue is cluster-wide, and tests run in parallel.
//!
//! Timing on the mock (`rdkafka_mock_cgrp.c`): the first join waits the fixed 3 s initial
//! rebalance delay; a rejoin into an `Up` or `Syncing` group waits `session.timeout.ms - 1 s`
//! even with a single member (the 100 ms shortcut applies only to a group that timed out in
//! `Syncing`). The mock has no minimum session timeout, so the tests use 3 s: each rejoin costs
//! 2 s. An injected error is answered without touching the mock's group, so after a member-id
//! reset the mock still holds the old member until its session expires: the new member first
//! joins as a follower of that ghost, its SyncGroup is aborted with REBALANCE_IN_PROGRESS when
//! the ghost times out, and it then becomes the leader of the next generation.
//!
//! The mock's JoinGroup and SyncGroup error answers break the schema (null `protocol_name`,
//! `leader` and `member_id` on JoinGroup below v7, a null SyncGroup `assignment`). kgroup's
//! codec keeps the leading error code of such answers and the machine reacts to that code as to
//! a well-formed answer; these tests caught the time it did not.

use std::future::Future;
use std::time::{Duration, Instant};

use kafka_protocol::messages::ApiKey;
use kgroup::driver::group::{GroupEventRecord, GroupHandle, RevokeMode};
use kgroup::group::StateKind;
use kgroup::group::{
    CommitOutcome, FenceReason, Generation, GenerationId, GroupConfig, GroupEvent, GroupSnapshot, MemberId,
    OwnedPartition, PartitionCommit, RejoinReason, TopicPartition,
};
use kgroup::protocol::error_code::codes::{
    COORDINATOR_LOAD_IN_PROGRESS, ILLEGAL_GENERATION, NOT_COORDINATOR, REBALANCE_IN_PROGRESS, UNKNOWN_MEMBER_ID,
};
use kgroup::protocol::error_code::KafkaCode;
use kgroup::{Cluster, ClusterConfig};
use kgroup_integration::mock::MockKafka;
use kgroup_integration::{init_tracing, unique_name};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::TryRecvError;

const TOPIC: &str = "reactions";
const PARTITIONS: i32 = 2;
/// The mock's groups start at generation 1 and count the first election.
const FIRST: GenerationId = GenerationId(2);
/// The broker id of the coordinator (the cluster has one broker).
const COORDINATOR: i32 = 1;

const SESSION: Duration = Duration::from_secs(3);
const HEARTBEAT: Duration = Duration::from_millis(200);
/// What one test may take in all.
const LIMIT: Duration = Duration::from_secs(60);
/// What one awaited event or state may take.
const WAIT: Duration = Duration::from_secs(30);

const GENERATION_IS_STALE: &str = "generation is stale";
const MEMBER_ID_UNKNOWN: &str = "member id unknown to the coordinator";

fn config(group: &str) -> GroupConfig {
    let mut config = GroupConfig::new(group);
    config.session_timeout = SESSION;
    config.heartbeat_interval = HEARTBEAT;
    config.rebalance_timeout = Duration::from_secs(15);
    config.revoke_timeout = Duration::from_secs(5);
    config.retry_backoff = Duration::from_millis(100);
    config.request_timeout = Duration::from_secs(10);
    config.commit_timeout = Duration::from_secs(30);
    config
}

/// Runs a test body within [`LIMIT`].
async fn bounded<T>(body: impl Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, body).await.unwrap_or_else(|_| panic!("test did not finish within {LIMIT:?}"))
}

fn tp(partition: i32) -> TopicPartition {
    TopicPartition::new(TOPIC, partition)
}

fn all_partitions() -> Vec<TopicPartition> {
    (0..PARTITIONS).map(tp).collect()
}

/// Every partition, owned since `since`.
fn owned_since(since: i32) -> Vec<OwnedPartition> {
    all_partitions()
        .into_iter()
        .map(|partition| OwnedPartition { partition, owned_since: GenerationId(since) })
        .collect()
}

fn generation(id: i32, member_id: &MemberId) -> Option<Generation> {
    Some(Generation { id: GenerationId(id), member_id: member_id.clone() })
}

fn lost(reason: &str) -> GroupEvent {
    GroupEvent::Lost { partitions: all_partitions(), reason: reason.into() }
}

fn revoke_requested(generation: i32) -> GroupEvent {
    GroupEvent::RevokeRequested {
        generation: GenerationId(generation),
        partitions: all_partitions(),
        reason: RejoinReason::RebalanceInProgress,
    }
}

fn coordinator_lost(reason: &str) -> GroupEvent {
    GroupEvent::Coordinator { node_id: None, reason: reason.into() }
}

fn coordinator_found() -> GroupEvent {
    GroupEvent::Coordinator { node_id: Some(COORDINATOR), reason: "found".into() }
}

fn transition(from: StateKind, to: StateKind, reason: &str) -> GroupEvent {
    GroupEvent::Transition { from, to, reason: reason.into(), generation: None }
}

fn is_lost(e: &GroupEvent) -> bool {
    matches!(e, GroupEvent::Lost { .. })
}

fn is_revoke(e: &GroupEvent) -> bool {
    matches!(e, GroupEvent::RevokeRequested { .. })
}

/// The coordinator events among `events`, as `node_id`s (`None`: lost).
fn coordinator_nodes(events: &[GroupEvent]) -> Vec<Option<i32>> {
    events
        .iter()
        .filter_map(|e| match e {
            GroupEvent::Coordinator { node_id, .. } => Some(*node_id),
            _ => None,
        })
        .collect()
}

/// `events` without the replies to commits and offset lookups.
fn membership(events: Vec<GroupEvent>) -> Vec<GroupEvent> {
    events
        .into_iter()
        .filter(|e| !matches!(e, GroupEvent::CommitCompleted { .. } | GroupEvent::CommittedOffsets { .. }))
        .collect()
}

/// One mock cluster and one member of a fresh group on it, with every event it published.
struct Member {
    mock: MockKafka,
    handle: GroupHandle,
    events: broadcast::Receiver<GroupEventRecord>,
    seen: Vec<GroupEvent>,
}

impl Member {
    /// Starts the mock, queues `errors` (before the member sends anything) and starts the
    /// member. Subscribed before the member's task first runs (the test runtime is
    /// single-threaded), so no event is missed.
    async fn start(errors: &[(ApiKey, &[i16])]) -> Member {
        init_tracing();
        let mock = MockKafka::start(1);
        mock.create_topic(TOPIC, PARTITIONS).expect("create topic");
        let group = unique_name("reactions");
        mock.set_coordinator(&group, COORDINATOR).expect("set coordinator");
        for (api, codes) in errors {
            mock.inject_errors(*api, codes).expect("inject errors");
        }
        let config = ClusterConfig::from_bootstrap_servers(&mock.bootstrap()).expect("bootstrap list");
        let cluster = Cluster::connect(config).await.expect("connect to the mock cluster");
        let (handle, events) = GroupHandle::start_with_events(
            cluster,
            self::config(&group),
            vec![TOPIC.to_owned()],
            RevokeMode::Automatic,
        )
        .await
        .expect("start member");
        Member { mock, handle, events, seen: Vec::new() }
    }

    /// Starts a member with nothing injected and waits for its first generation.
    async fn stable() -> (Member, GroupSnapshot) {
        let mut member = Member::start(&[]).await;
        let first = member.stable_after(GenerationId::NONE).await;
        assert_eq!(first.generation.as_ref().map(|g| g.id), Some(FIRST), "{first:?}");
        assert!(!first.member_id.is_unknown());
        assert_eq!(first.assignment, owned_since(FIRST.0), "a single member owns everything");
        assert_eq!(first.coordinator, Some(COORDINATOR));
        assert_eq!(first.counters.joins_sent, 1);
        (member, first)
    }

    fn inject(&self, api: ApiKey, codes: &[i16]) {
        self.mock.inject_errors(api, codes).expect("inject errors");
    }

    /// Moves published events into `seen`.
    fn drain(&mut self) {
        loop {
            match self.events.try_recv() {
                Ok(record) => self.seen.push(record.event),
                Err(TryRecvError::Empty) => return,
                Err(e) => panic!("event stream: {e}"),
            }
        }
    }

    /// How many events were seen so far: a mark for [`since`](Self::since).
    fn mark(&mut self) -> usize {
        self.drain();
        self.seen.len()
    }

    fn since(&self, mark: usize) -> Vec<GroupEvent> {
        self.seen[mark..].to_vec()
    }

    /// Waits for the first event after `mark` that matches.
    async fn event_after(&mut self, mark: usize, what: &str, wanted: impl Fn(&GroupEvent) -> bool) -> GroupEvent {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            self.drain();
            if let Some(event) = self.seen[mark..].iter().find(|e| wanted(e)) {
                return event.clone();
            }
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Ok(record)) => self.seen.push(record.event),
                Ok(Err(e)) => panic!("event stream while waiting for {what}: {e}"),
                Err(_) => panic!("no {what} within {WAIT:?}; events: {:#?}", &self.seen[mark..]),
            }
        }
    }

    async fn snapshot(&mut self) -> GroupSnapshot {
        let snapshot = self.handle.group_state().await.expect("snapshot");
        self.drain();
        snapshot
    }

    /// Waits until the member is Stable in a generation newer than `after`.
    async fn stable_after(&mut self, after: GenerationId) -> GroupSnapshot {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let snapshot = self.snapshot().await;
            if snapshot.state == StateKind::Stable && snapshot.generation.as_ref().is_some_and(|g| g.id > after) {
                return snapshot;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!("not Stable past generation {after} within {WAIT:?}: {snapshot:#?}\nevents: {:#?}", self.seen);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits until `more` heartbeats were sent after `from`.
    async fn heartbeats_past(&mut self, from: u64, more: u64) -> GroupSnapshot {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let snapshot = self.snapshot().await;
            if snapshot.counters.heartbeats_sent >= from + more {
                return snapshot;
            }
            assert!(tokio::time::Instant::now() < deadline, "heartbeats stopped: {snapshot:#?}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    async fn commit_one(&mut self, partition: i32, offset: i64) -> Vec<PartitionCommit> {
        let lease = self.handle.lease(tp(partition), offset).await.expect("lease").expect("partition owned");
        let results = self.handle.commit(vec![lease]).await.expect("commit");
        self.drain();
        results
    }

    async fn committed(&self, partition: i32) -> Option<i64> {
        let offsets = self.handle.committed(vec![tp(partition)]).await.expect("committed offsets");
        assert_eq!(offsets.len(), 1, "{offsets:?}");
        assert_eq!(offsets[0].0, tp(partition));
        offsets[0].1
    }
}

// ---- Heartbeat ----

/// ILLEGAL_GENERATION: partitions lost, member id kept, rejoin, Stable again.
#[tokio::test]
async fn heartbeat_illegal_generation_loses_partitions_and_rejoins_keeping_the_member_id() {
    bounded(async {
        let (mut m, before) = Member::stable().await;
        let mark = m.mark();
        m.inject(ApiKey::Heartbeat, &[ILLEGAL_GENERATION]);
        let event = m.event_after(mark, "Lost", is_lost).await;
        assert_eq!(event, lost(GENERATION_IS_STALE));
        let during = m.snapshot().await;
        assert_eq!(during.state, StateKind::AwaitingJoin, "{during:?}");
        assert_eq!(during.member_id, before.member_id, "member id kept");
        assert_eq!(during.generation, None, "generation reset");
        assert_eq!(during.assignment, vec![]);

        let after = m.stable_after(FIRST).await;
        assert_eq!(after.generation, generation(3, &before.member_id));
        assert_eq!(after.assignment, owned_since(3), "the ownership streak restarts after a loss");
        assert_eq!(after.counters.joins_sent, 2);
        let events = m.since(mark);
        assert!(!events.iter().any(is_revoke), "lost, not revoked: {events:#?}");
        assert!(
            events.contains(&transition(StateKind::Stable, StateKind::AwaitingJoin, GENERATION_IS_STALE)),
            "{events:#?}"
        );
    })
    .await
}

/// REBALANCE_IN_PROGRESS: revoke requested, rejoin with the same member id, Stable again.
#[tokio::test]
async fn heartbeat_rebalance_in_progress_revokes_and_rejoins_with_the_same_member_id() {
    bounded(async {
        let (mut m, before) = Member::stable().await;
        let mark = m.mark();
        m.inject(ApiKey::Heartbeat, &[REBALANCE_IN_PROGRESS]);
        let event = m.event_after(mark, "RevokeRequested", is_revoke).await;
        assert_eq!(event, revoke_requested(FIRST.0));

        let after = m.stable_after(FIRST).await;
        assert_eq!(after.generation, generation(3, &before.member_id));
        assert_eq!(after.assignment, owned_since(FIRST.0), "same member in generations 2 and 3: streak continues");
        assert_eq!(after.counters.joins_sent, 2);
        assert_eq!(after.counters.rebalances, 1);
        let events = m.since(mark);
        assert!(!events.iter().any(is_lost), "revoked, not lost: {events:#?}");
        assert!(
            events.contains(&transition(StateKind::Revoking, StateKind::AwaitingJoin, "revoke window done")),
            "{events:#?}"
        );
    })
    .await
}

/// UNKNOWN_MEMBER_ID: partitions lost, member id reset, rejoin with a new id.
#[tokio::test]
async fn heartbeat_unknown_member_id_loses_partitions_and_rejoins_with_a_new_member_id() {
    bounded(async {
        let (mut m, before) = Member::stable().await;
        let mark = m.mark();
        m.inject(ApiKey::Heartbeat, &[UNKNOWN_MEMBER_ID]);
        let event = m.event_after(mark, "Lost", is_lost).await;
        assert_eq!(event, lost(MEMBER_ID_UNKNOWN));
        let during = m.snapshot().await;
        assert_eq!(during.state, StateKind::AwaitingJoin, "{during:?}");
        assert_eq!(during.member_id, MemberId::unknown(), "member id reset");
        assert_eq!(during.generation, None);

        let after = m.stable_after(FIRST).await;
        assert!(!after.member_id.is_unknown());
        assert_ne!(after.member_id, before.member_id, "a new member id");
        let id = after.generation.as_ref().expect("generation").id;
        assert_eq!(after.generation, generation(id.0, &after.member_id));
        assert_eq!(after.assignment, owned_since(id.0), "a new member starts a new streak");
        let events = m.since(mark);
        assert!(!events.iter().any(is_revoke), "{events:#?}");
        assert!(
            events.contains(&transition(StateKind::Stable, StateKind::AwaitingJoin, MEMBER_ID_UNKNOWN)),
            "{events:#?}"
        );
    })
    .await
}

/// NOT_COORDINATOR: coordinator lost and found again, no rejoin.
#[tokio::test]
async fn heartbeat_not_coordinator_rediscovers_without_rejoining() {
    bounded(async {
        let (mut m, before) = Member::stable().await;
        let mark = m.mark();
        m.inject(ApiKey::Heartbeat, &[NOT_COORDINATOR]);
        let found = m.event_after(mark, "coordinator found", |e| *e == coordinator_found()).await;
        assert_eq!(found, coordinator_found());
        assert_eq!(m.since(mark), vec![coordinator_lost("Heartbeat: coordinator moved"), coordinator_found()]);

        let found_at = m.snapshot().await.counters.heartbeats_sent;
        let after = m.heartbeats_past(found_at, 3).await;
        assert_eq!(after.state, StateKind::Stable);
        assert_eq!(after.generation, before.generation, "generation and member id unchanged");
        assert_eq!(after.assignment, owned_since(FIRST.0));
        assert_eq!(after.coordinator, Some(COORDINATOR));
        assert_eq!(after.counters.coordinator_lookups, 2);
        assert_eq!(after.counters.joins_sent, 1, "no rejoin");
        assert_eq!(m.since(mark), vec![coordinator_lost("Heartbeat: coordinator moved"), coordinator_found()]);
    })
    .await
}

/// COORDINATOR_LOAD_IN_PROGRESS (Kafka answers NONE instead, §5): no reset, no rejoin, the
/// heartbeats go on.
#[tokio::test]
async fn heartbeat_coordinator_load_in_progress_keeps_heartbeating() {
    bounded(async {
        let (mut m, before) = Member::stable().await;
        let mark = m.mark();
        let sent = before.counters.heartbeats_sent;
        m.inject(ApiKey::Heartbeat, &[COORDINATOR_LOAD_IN_PROGRESS; 3]);
        // Every heartbeat takes the next queued code: the three errors are answered among the
        // next four, and three more follow.
        let after = m.heartbeats_past(sent, 7).await;
        assert_eq!(after.state, StateKind::Stable);
        assert_eq!(after.generation, before.generation, "no reset");
        assert_eq!(after.assignment, owned_since(FIRST.0));
        assert_eq!(after.coordinator, Some(COORDINATOR));
        assert_eq!(after.counters.joins_sent, 1, "no rejoin");
        assert_eq!(after.counters.coordinator_lookups, 1, "same coordinator");
        assert_eq!(m.since(mark), vec![], "nothing to report");
    })
    .await
}

// ---- OffsetCommit ----

/// ILLEGAL_GENERATION: the partition is fenced by the broker, then the member rejoins keeping
/// its id.
#[tokio::test]
async fn commit_illegal_generation_is_fenced_and_rejoins_keeping_the_member_id() {
    bounded(async {
        let (mut m, before) = Member::stable().await;
        let mark = m.mark();
        m.inject(ApiKey::OffsetCommit, &[ILLEGAL_GENERATION]);
        let results = m.commit_one(0, 10).await;
        assert_eq!(
            results,
            vec![PartitionCommit {
                partition: tp(0),
                offset: 10,
                outcome: CommitOutcome::Fenced {
                    lease_generation: FIRST,
                    current_generation: Some(FIRST),
                    reason: FenceReason::RejectedByBroker(KafkaCode(ILLEGAL_GENERATION)),
                },
            }]
        );
        let during = m.snapshot().await;
        assert_eq!(during.state, StateKind::AwaitingJoin);
        assert_eq!(during.member_id, before.member_id, "member id kept");
        assert_eq!(during.counters.partitions_rejected_by_broker.get(&ILLEGAL_GENERATION), Some(&1));

        let after = m.stable_after(FIRST).await;
        assert_eq!(after.generation, generation(3, &before.member_id));
        assert_eq!(after.assignment, owned_since(3));
        assert_eq!(after.counters.commits_sent, 1);
        assert_eq!(after.counters.partitions_committed, 0);
        let events = m.since(mark);
        assert!(events.contains(&lost(GENERATION_IS_STALE)), "{events:#?}");
        assert_eq!(m.committed(0).await, None, "nothing was stored");
    })
    .await
}

/// REBALANCE_IN_PROGRESS: the commit is deferred, the member rejoins, and the commit is judged
/// again in the new generation: the partition stayed, so it is re-stamped and committed.
#[tokio::test]
async fn commit_rebalance_in_progress_is_deferred_and_restamped_after_the_rejoin() {
    bounded(async {
        let (mut m, before) = Member::stable().await;
        let mark = m.mark();
        m.inject(ApiKey::OffsetCommit, &[REBALANCE_IN_PROGRESS]);
        let results = m.commit_one(1, 42).await;
        assert_eq!(
            results,
            vec![PartitionCommit {
                partition: tp(1),
                offset: 42,
                outcome: CommitOutcome::Committed { generation: GenerationId(3), restamped_from: Some(FIRST) },
            }]
        );
        let after = m.stable_after(FIRST).await;
        assert_eq!(after.generation, generation(3, &before.member_id), "rejoined with the same member id");
        assert_eq!(after.assignment, owned_since(FIRST.0));
        assert_eq!(after.counters.commits_sent, 2);
        assert_eq!(after.counters.partitions_committed, 1);
        assert_eq!(after.counters.partitions_restamped, 1);
        assert_eq!(after.counters.partitions_rejected_by_broker.len(), 0, "{:?}", after.counters);
        let events = m.since(mark);
        assert_eq!(events.iter().find(|e| is_revoke(e)), Some(&revoke_requested(FIRST.0)), "{events:#?}");
        assert!(!events.iter().any(is_lost), "{events:#?}");
        assert_eq!(m.committed(1).await, Some(42));
    })
    .await
}

/// UNKNOWN_MEMBER_ID: the partition is fenced by the broker and the member id reset.
#[tokio::test]
async fn commit_unknown_member_id_is_fenced_and_resets_the_member_id() {
    bounded(async {
        let (mut m, before) = Member::stable().await;
        let mark = m.mark();
        m.inject(ApiKey::OffsetCommit, &[UNKNOWN_MEMBER_ID]);
        let results = m.commit_one(0, 7).await;
        assert_eq!(
            results,
            vec![PartitionCommit {
                partition: tp(0),
                offset: 7,
                outcome: CommitOutcome::Fenced {
                    lease_generation: FIRST,
                    current_generation: Some(FIRST),
                    reason: FenceReason::RejectedByBroker(KafkaCode(UNKNOWN_MEMBER_ID)),
                },
            }]
        );
        let during = m.snapshot().await;
        assert_eq!(during.state, StateKind::AwaitingJoin);
        assert_eq!(during.member_id, MemberId::unknown(), "member id reset");
        assert_eq!(during.counters.partitions_rejected_by_broker.get(&UNKNOWN_MEMBER_ID), Some(&1));

        let after = m.stable_after(FIRST).await;
        assert!(!after.member_id.is_unknown());
        assert_ne!(after.member_id, before.member_id, "a new member id");
        let id = after.generation.as_ref().expect("generation").id;
        assert_eq!(after.assignment, owned_since(id.0));
        let events = m.since(mark);
        assert!(events.contains(&lost(MEMBER_ID_UNKNOWN)), "{events:#?}");
        assert_eq!(m.committed(0).await, None, "nothing was stored");
    })
    .await
}

/// NOT_COORDINATOR: the coordinator is rediscovered and the commit retried to success, in the
/// same generation.
#[tokio::test]
async fn commit_not_coordinator_rediscovers_and_retries() {
    bounded(async {
        let (mut m, before) = Member::stable().await;
        let mark = m.mark();
        m.inject(ApiKey::OffsetCommit, &[NOT_COORDINATOR]);
        let results = m.commit_one(0, 5).await;
        assert_eq!(
            results,
            vec![PartitionCommit {
                partition: tp(0),
                offset: 5,
                outcome: CommitOutcome::Committed { generation: FIRST, restamped_from: None },
            }]
        );
        let after = m.snapshot().await;
        assert_eq!(after.state, StateKind::Stable);
        assert_eq!(after.generation, before.generation, "no rejoin");
        assert_eq!(after.counters.commits_sent, 2);
        assert_eq!(after.counters.coordinator_lookups, 2);
        assert_eq!(after.counters.joins_sent, 1);
        let events = membership(m.since(mark));
        assert_eq!(events, vec![coordinator_lost("OffsetCommit: coordinator moved"), coordinator_found()]);
        assert_eq!(m.committed(0).await, Some(5));
    })
    .await
}

/// COORDINATOR_LOAD_IN_PROGRESS: retried on the same coordinator after a backoff.
#[tokio::test]
async fn commit_coordinator_load_in_progress_retries_after_backoff() {
    bounded(async {
        let (mut m, before) = Member::stable().await;
        let mark = m.mark();
        m.inject(ApiKey::OffsetCommit, &[COORDINATOR_LOAD_IN_PROGRESS]);
        let started = Instant::now();
        let results = m.commit_one(1, 3).await;
        let took = started.elapsed();
        assert_eq!(
            results,
            vec![PartitionCommit {
                partition: tp(1),
                offset: 3,
                outcome: CommitOutcome::Committed { generation: FIRST, restamped_from: None },
            }]
        );
        // The first retry waits twice `retry.backoff.ms`.
        assert!(took >= Duration::from_millis(200), "retried without backoff after {took:?}");
        let after = m.snapshot().await;
        assert_eq!(after.generation, before.generation);
        assert_eq!(after.counters.commits_sent, 2);
        assert_eq!(after.counters.coordinator_lookups, 1, "same coordinator");
        assert_eq!(membership(m.since(mark)), vec![], "no coordinator change, no rejoin");
        assert_eq!(m.committed(1).await, Some(3));
    })
    .await
}

// ---- JoinGroup ----

/// ILLEGAL_GENERATION and REBALANCE_IN_PROGRESS on the first JoinGroup: the next JoinGroup goes
/// out at once (no backoff), then the member gets its first generation.
async fn join_rejoins_at_once(code: i16) {
    let mut m = Member::start(&[(ApiKey::JoinGroup, &[code])]).await;
    let asked = transition(StateKind::AwaitingJoin, StateKind::AwaitingJoin, "JoinGroup asked to rejoin");
    m.event_after(0, "rejoin", |e| *e == asked).await;
    let during = m.snapshot().await;
    assert_eq!(during.counters.joins_sent, 2, "second JoinGroup sent with the answer: {during:?}");
    assert_ne!(during.next_timer.map(|t| t.0), Some("backoff"), "{during:?}");
    assert_eq!(during.member_id, MemberId::unknown());

    let after = m.stable_after(GenerationId::NONE).await;
    assert_eq!(after.generation.as_ref().map(|g| g.id), Some(FIRST));
    assert_eq!(after.assignment, owned_since(FIRST.0));
    assert_eq!(after.counters.joins_sent, 2);
    assert_eq!(after.counters.coordinator_lookups, 1);
    assert_eq!(m.since(0)[..2], [coordinator_found(), asked]);
}

#[tokio::test]
async fn join_illegal_generation_rejoins_at_once() {
    bounded(join_rejoins_at_once(ILLEGAL_GENERATION)).await
}

#[tokio::test]
async fn join_rebalance_in_progress_rejoins_at_once() {
    bounded(join_rejoins_at_once(REBALANCE_IN_PROGRESS)).await
}

/// UNKNOWN_MEMBER_ID on a rejoin (triggered by a heartbeat's REBALANCE_IN_PROGRESS): the member
/// id is reset and the member joins as a new member.
#[tokio::test]
async fn join_unknown_member_id_resets_the_member_id() {
    bounded(async {
        let (mut m, before) = Member::stable().await;
        let mark = m.mark();
        m.inject(ApiKey::JoinGroup, &[UNKNOWN_MEMBER_ID]);
        m.inject(ApiKey::Heartbeat, &[REBALANCE_IN_PROGRESS]);
        let reset = transition(StateKind::AwaitingJoin, StateKind::AwaitingJoin, "member id unknown");
        m.event_after(mark, "member id reset", |e| *e == reset).await;
        let during = m.snapshot().await;
        assert_eq!(during.member_id, MemberId::unknown(), "member id reset");
        assert_eq!(during.counters.joins_sent, 3, "rejoined at once: {during:?}");

        let after = m.stable_after(FIRST).await;
        assert!(!after.member_id.is_unknown());
        assert_ne!(after.member_id, before.member_id, "a new member id");
        let id = after.generation.as_ref().expect("generation").id;
        assert_eq!(after.assignment, owned_since(id.0), "a new member starts a new streak");
        let events = m.since(mark);
        assert_eq!(events[0], revoke_requested(FIRST.0));
        assert!(!events.iter().any(is_lost), "revoked before the join, not lost: {events:#?}");
    })
    .await
}

/// NOT_COORDINATOR on a rejoin: the coordinator is rediscovered and the member rejoins with
/// the same member id.
#[tokio::test]
async fn join_not_coordinator_rediscovers_and_rejoins_with_the_same_member_id() {
    bounded(async {
        let (mut m, before) = Member::stable().await;
        let mark = m.mark();
        m.inject(ApiKey::JoinGroup, &[NOT_COORDINATOR]);
        m.inject(ApiKey::Heartbeat, &[REBALANCE_IN_PROGRESS]);
        m.event_after(mark, "coordinator lost", |e| matches!(e, GroupEvent::Coordinator { node_id: None, .. })).await;

        let after = m.stable_after(FIRST).await;
        assert_eq!(after.generation, generation(3, &before.member_id));
        assert_eq!(after.assignment, owned_since(FIRST.0), "same member in generations 2 and 3: streak continues");
        assert_eq!(after.counters.coordinator_lookups, 2);
        assert_eq!(after.counters.joins_sent, 3);
        let events = m.since(mark);
        assert_eq!(coordinator_nodes(&events), vec![None, Some(COORDINATOR)], "{events:#?}");
        assert!(!events.iter().any(is_lost), "{events:#?}");
    })
    .await
}

/// COORDINATOR_LOAD_IN_PROGRESS on the first JoinGroup: back off, retry on the same coordinator.
#[tokio::test]
async fn join_coordinator_load_in_progress_backs_off_and_retries() {
    bounded(async {
        let mut m = Member::start(&[(ApiKey::JoinGroup, &[COORDINATOR_LOAD_IN_PROGRESS])]).await;
        let loading = transition(StateKind::AwaitingJoin, StateKind::AwaitingJoin, "coordinator loading");
        m.event_after(0, "backoff", |e| *e == loading).await;
        let during = m.snapshot().await;
        assert_eq!(during.counters.joins_sent, 1, "backs off first: {during:?}");
        let (timer, ms) = during.next_timer.expect("a timer");
        assert_eq!(timer, "backoff");
        assert!(ms <= 200, "first join backoff is 2 x retry.backoff.ms: {ms} ms");
        assert_eq!(during.pending_rejoin, Some(RejoinReason::Retry("coordinator loading".into())));

        let after = m.stable_after(GenerationId::NONE).await;
        assert_eq!(after.generation.as_ref().map(|g| g.id), Some(FIRST));
        assert_eq!(after.assignment, owned_since(FIRST.0));
        assert_eq!(after.counters.joins_sent, 2);
        assert_eq!(after.counters.coordinator_lookups, 1, "same coordinator");
        assert_eq!(m.since(0)[..2], [coordinator_found(), loading]);
        assert_eq!(coordinator_nodes(&m.since(0)), vec![Some(COORDINATOR)], "same coordinator");
    })
    .await
}

// ---- SyncGroup ----

/// Starts a Stable member, queues `code` for SyncGroup and triggers a rejoin with a heartbeat's
/// REBALANCE_IN_PROGRESS, so the SyncGroup of generation 3 gets `code`. Returns the member, its
/// first snapshot and the event mark before the trigger.
async fn sync_fails_on_rejoin(code: i16) -> (Member, GroupSnapshot, usize) {
    let (mut m, before) = Member::stable().await;
    let mark = m.mark();
    m.inject(ApiKey::SyncGroup, &[code]);
    m.inject(ApiKey::Heartbeat, &[REBALANCE_IN_PROGRESS]);
    let joined = transition(StateKind::AwaitingJoin, StateKind::AwaitingSync, "joined generation 3 as leader");
    m.event_after(mark, "join of generation 3", |e| *e == joined).await;
    (m, before, mark)
}

/// REBALANCE_IN_PROGRESS: rejoin without reset.
#[tokio::test]
async fn sync_rebalance_in_progress_rejoins_without_reset() {
    bounded(async {
        let (mut m, before, mark) = sync_fails_on_rejoin(REBALANCE_IN_PROGRESS).await;
        let after = m.stable_after(FIRST).await;
        assert_eq!(after.generation, generation(4, &before.member_id), "member id kept");
        assert_eq!(after.assignment, owned_since(4), "generation 3 lies between 2 and 4: a new streak");
        assert_eq!(after.counters.syncs_sent, 3);
        assert_eq!(after.counters.coordinator_lookups, 1, "same coordinator");
        let events = m.since(mark);
        assert!(
            events.contains(&transition(StateKind::AwaitingSync, StateKind::AwaitingJoin, "group is rebalancing")),
            "{events:#?}"
        );
        assert!(!events.iter().any(is_lost), "no reset: {events:#?}");
        assert_eq!(coordinator_nodes(&events), vec![], "{events:#?}");
    })
    .await
}

/// ILLEGAL_GENERATION: generation reset, member id kept.
#[tokio::test]
async fn sync_illegal_generation_resets_the_generation_keeping_the_member_id() {
    bounded(async {
        let (mut m, before, mark) = sync_fails_on_rejoin(ILLEGAL_GENERATION).await;
        m.event_after(mark, "Lost", is_lost).await;
        let during = m.snapshot().await;
        assert_eq!(during.member_id, before.member_id, "member id kept");
        let after = m.stable_after(FIRST).await;
        assert_eq!(after.generation, generation(4, &before.member_id));
        assert_eq!(after.assignment, owned_since(4));
        assert_eq!(after.counters.syncs_sent, 3);
        assert_eq!(after.counters.coordinator_lookups, 1, "same coordinator");
        let events = m.since(mark);
        assert!(events.contains(&lost(GENERATION_IS_STALE)), "{events:#?}");
        assert!(
            events.contains(&transition(StateKind::AwaitingSync, StateKind::AwaitingJoin, GENERATION_IS_STALE)),
            "{events:#?}"
        );
    })
    .await
}

/// UNKNOWN_MEMBER_ID: member id reset.
#[tokio::test]
async fn sync_unknown_member_id_resets_the_member_id() {
    bounded(async {
        let (mut m, before, mark) = sync_fails_on_rejoin(UNKNOWN_MEMBER_ID).await;
        m.event_after(mark, "Lost", is_lost).await;
        let during = m.snapshot().await;
        assert_eq!(during.member_id, MemberId::unknown(), "member id reset");
        let after = m.stable_after(GenerationId(3)).await;
        assert!(!after.member_id.is_unknown());
        assert_ne!(after.member_id, before.member_id, "a new member id");
        let id = after.generation.as_ref().expect("generation").id;
        assert_eq!(after.assignment, owned_since(id.0));
        assert_eq!(after.counters.coordinator_lookups, 1, "same coordinator");
        let events = m.since(mark);
        assert!(events.contains(&lost(MEMBER_ID_UNKNOWN)), "{events:#?}");
        assert!(
            events.contains(&transition(StateKind::AwaitingSync, StateKind::AwaitingJoin, MEMBER_ID_UNKNOWN)),
            "{events:#?}"
        );
    })
    .await
}

/// NOT_COORDINATOR: rediscover, rejoin keeping the member id.
#[tokio::test]
async fn sync_not_coordinator_rediscovers_and_rejoins_keeping_the_member_id() {
    bounded(async {
        let (mut m, before, mark) = sync_fails_on_rejoin(NOT_COORDINATOR).await;
        let after = m.stable_after(FIRST).await;
        assert_eq!(after.generation, generation(4, &before.member_id));
        assert_eq!(after.assignment, owned_since(4));
        assert_eq!(after.counters.coordinator_lookups, 2);
        let events = m.since(mark);
        assert_eq!(coordinator_nodes(&events), vec![None, Some(COORDINATOR)], "{events:#?}");
        assert!(!events.iter().any(is_lost), "{events:#?}");
    })
    .await
}

/// COORDINATOR_LOAD_IN_PROGRESS: Kafka never sends it on SyncGroup (a loading coordinator
/// answers REBALANCE_IN_PROGRESS, §5) and Java 3.6 would stop ("others: fatal", §10). kgroup's
/// deliberate deviation (machine.rs `on_sync`): retriable, so back off and rejoin on the same
/// coordinator, keeping the member id.
#[tokio::test]
async fn sync_coordinator_load_in_progress_backs_off_and_rejoins() {
    bounded(async {
        let mut m = Member::start(&[(ApiKey::SyncGroup, &[COORDINATOR_LOAD_IN_PROGRESS])]).await;
        let retry = transition(
            StateKind::AwaitingSync,
            StateKind::AwaitingJoin,
            "retry after SyncGroup COORDINATOR_LOAD_IN_PROGRESS",
        );
        m.event_after(0, "rejoin", |e| *e == retry).await;
        let during = m.snapshot().await;
        assert_eq!(during.counters.joins_sent, 1, "backs off first: {during:?}");
        assert_eq!(during.next_timer.map(|t| t.0), Some("backoff"), "{during:?}");
        assert!(!during.member_id.is_unknown(), "member id of generation 2 kept");

        let after = m.stable_after(FIRST).await;
        assert_eq!(after.generation, generation(3, &during.member_id));
        assert_eq!(after.assignment, owned_since(3));
        assert_eq!(after.counters.joins_sent, 2);
        assert_eq!(after.counters.syncs_sent, 2);
        assert_eq!(after.counters.coordinator_lookups, 1, "same coordinator");
        let events = m.since(0);
        assert!(!events.iter().any(|e| matches!(e, GroupEvent::Fatal(_))), "{events:#?}");
        assert!(!events.iter().any(is_lost), "{events:#?}");
        assert_eq!(coordinator_nodes(&events), vec![Some(COORDINATOR)], "{events:#?}");
    })
    .await
}
