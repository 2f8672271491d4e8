//! KIP-848's consumer protocol: joining with epoch 0, assignments by topic id, epochs that move
//! on with kept partitions, the revoke window before the member reports partitions released,
//! incremental heartbeats, fencing, leaving, and commits that never trail a heartbeat.

use kafka_protocol::messages::consumer_group_heartbeat_response::{Assignment, TopicPartitions};
use kafka_protocol::messages::{ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse};
use uuid::Uuid;

use super::*;
use crate::group::config::GroupProtocol;

const TOPIC_ID: Uuid = Uuid::from_u128(0x7100_0000_0000_0000_0000_0000_0000_0001);
const BROKER_INTERVAL: Duration = Duration::from_secs(5);

/// The ranges a Kafka 4.0 broker advertises for what the member sends.
pub(super) fn kafka40_versions() -> NegotiatedVersions {
    let ranges = [
        (ApiKey::FindCoordinator, 0, 6),
        (ApiKey::ConsumerGroupHeartbeat, 0, 1),
        (ApiKey::OffsetCommit, 2, 9),
        (ApiKey::OffsetFetch, 1, 9),
    ];
    negotiated(&ranges)
}

pub(super) fn consumer_config() -> GroupConfig {
    let mut c = config();
    c.protocol = GroupProtocol::Consumer { remote_assignor: Some("uniform".into()), member_id: Some("m-a".into()) };
    c
}

pub(super) fn answer(epoch: i32, assigned: Option<&[i32]>) -> ConsumerGroupHeartbeatResponse {
    let assignment = assigned.map(|partitions| {
        Assignment::default().with_topic_partitions(vec![TopicPartitions::default()
            .with_topic_id(TOPIC_ID)
            .with_partitions(partitions.to_vec())])
    });
    ConsumerGroupHeartbeatResponse::default()
        .with_member_id(Some(s("m-a")))
        .with_member_epoch(epoch)
        .with_heartbeat_interval_ms(BROKER_INTERVAL.as_millis() as i32)
        .with_assignment(assignment)
}

pub(super) fn refused(code: i16) -> ConsumerGroupHeartbeatResponse {
    ConsumerGroupHeartbeatResponse::default().with_error_code(code).with_member_epoch(-1)
}

/// `(topic id, partitions)` a heartbeat reports owned; `None`: the field is null (unchanged).
pub(super) fn owned(request: &ConsumerGroupHeartbeatRequest) -> Option<Vec<(Uuid, Vec<i32>)>> {
    request.topic_partitions.as_ref().map(|t| t.iter().map(|t| (t.topic_id, t.partitions.clone())).collect())
}

impl Harness {
    pub(super) fn consumer() -> Self {
        let mut h = Self::with_config(consumer_config());
        h.found_with(kafka40_versions());
        h
    }

    /// Joined at `epoch` owning t-0 and t-1, the topic id resolved and the first
    /// acknowledgement answered; the outputs of getting there are drained.
    pub(super) fn consumer_stable(epoch: i32) -> Self {
        Self::consumer_stable_with(consumer_config(), epoch)
    }

    pub(super) fn consumer_stable_with(config: GroupConfig, epoch: i32) -> Self {
        let mut h = Self::with_config(config);
        h.found_with(kafka40_versions());
        let (id, _) = h.take_consumer_heartbeat();
        h.respond(id, GroupResponse::ConsumerGroupHeartbeat(answer(epoch, Some(&[0, 1]))));
        h.resolve_topic_ids();
        let (ack, _) = h.take_consumer_heartbeat();
        h.respond(ack, GroupResponse::ConsumerGroupHeartbeat(answer(epoch, None)));
        assert_eq!((h.m.state(), h.m.current_generation()), (StateKind::Stable, Some(&gen(epoch, "m-a"))));
        h.outbox.clear();
        h.events.clear();
        h
    }

    pub(super) fn take_consumer_heartbeat(&mut self) -> (RequestId, ConsumerGroupHeartbeatRequest) {
        let r = self.take("ConsumerGroupHeartbeat");
        match r.body {
            GroupRequest::ConsumerGroupHeartbeat(b) => (r.id, b),
            _ => unreachable!(),
        }
    }

    pub(super) fn beat(&mut self, response: ConsumerGroupHeartbeatResponse) -> ConsumerGroupHeartbeatRequest {
        if self.count("ConsumerGroupHeartbeat") == 0 {
            let at = self.m.poll_timeout().expect("a heartbeat timer");
            self.advance(at - self.now);
        }
        let (id, request) = self.take_consumer_heartbeat();
        self.respond(id, GroupResponse::ConsumerGroupHeartbeat(response));
        request
    }

    /// Answers the pending topic id lookup: `t` is TOPIC_ID.
    fn resolve_topic_ids(&mut self) {
        let r = self.take("Metadata");
        assert_eq!(r.body, GroupRequest::TopicIds { topics: Some(vec!["t".into()]) });
        self.m.handle_topic_ids(self.now, r.id, [(TOPIC_ID, "t".to_string())].into());
        self.pump();
    }

    fn revoke_requested(&self) -> Vec<Vec<TopicPartition>> {
        self.events
            .iter()
            .filter_map(|e| match e {
                GroupEvent::RevokeRequested { partitions, .. } => Some(partitions.clone()),
                _ => None,
            })
            .collect()
    }
}

#[test]
fn joins_with_epoch_zero_and_a_full_request_then_reports_the_assignment_it_took() {
    let mut h = Harness::consumer();
    assert!(!h.apis().contains(&"Metadata"), "no topic listing before a KIP-848 join: {:?}", h.apis());
    let (id, join) = h.take_consumer_heartbeat();
    assert_eq!((join.member_id.as_str(), join.member_epoch), ("m-a", 0));
    assert_eq!(join.rebalance_timeout_ms, 300_000);
    assert_eq!(join.server_assignor.as_deref(), Some("uniform"));
    assert_eq!(join.subscribed_topic_names, Some(vec![TopicName(s("t"))]));
    assert_eq!(owned(&join), Some(vec![]));
    h.respond(id, GroupResponse::ConsumerGroupHeartbeat(answer(3, Some(&[0, 1]))));
    assert_eq!(h.m.state(), StateKind::Stable);
    assert!(h.m.assignment().is_empty(), "nothing is owned before the topic id has a name");
    assert_eq!(h.count("ConsumerGroupHeartbeat"), 0, "nothing new to report yet");
    h.resolve_topic_ids();
    let (partitions, added, revoked) = assigned_event(&h.events).expect("an assignment");
    assert_eq!((partitions.len(), added, revoked), (2, tps(&[0, 1]), vec![]));
    assert!(partitions.iter().all(|p| p.owned_since == GenerationId(3)));
    // Reported at once, incrementally: only what changed.
    let (id, ack) = h.take_consumer_heartbeat();
    assert_eq!((ack.member_epoch, owned(&ack)), (3, Some(vec![(TOPIC_ID, vec![0, 1])])));
    assert_eq!(
        (ack.subscribed_topic_names.as_ref(), ack.rebalance_timeout_ms, ack.server_assignor.as_ref()),
        (None, -1, None)
    );
    h.respond(id, GroupResponse::ConsumerGroupHeartbeat(answer(3, None)));
    // Then at the broker's interval, with nothing to say.
    let sent_at = h.now;
    let quiet = h.beat(answer(3, None));
    assert_eq!(h.now - sent_at, BROKER_INTERVAL);
    assert_eq!((owned(&quiet), quiet.subscribed_topic_names), (None, None));
}

#[test]
fn a_new_epoch_with_kept_partitions_restamps_their_leases() {
    let mut h = Harness::consumer_stable(3);
    let before = h.lease(0, 40);
    h.beat(answer(7, Some(&[0, 1, 2])));
    let (partitions, added, revoked) = assigned_event(&h.events).expect("an assignment");
    assert_eq!((added, revoked), (tps(&[2]), vec![]));
    let since: Vec<i32> = partitions.iter().map(|p| p.owned_since.0).collect();
    assert_eq!(since, [3, 3, 7], "kept partitions keep their assignment epoch");
    // The new epoch is reported at once; the commit waits for that answer.
    let (ack, _) = h.take_consumer_heartbeat();
    let id = h.commit(vec![before]);
    assert_eq!(h.count("OffsetCommit"), 0, "no commit behind a heartbeat in flight");
    h.respond(ack, GroupResponse::ConsumerGroupHeartbeat(answer(7, None)));
    let (commit_id, version, request) = h.take_commit();
    assert_eq!((version, request.generation_id_or_member_epoch, request.member_id.as_str()), (9, 7, "m-a"));
    h.respond(commit_id, commit_response(&[(0, NONE)]));
    assert_eq!(h.completed(id), Some(vec![result(0, 40, committed(7, Some(3)))]));
}

#[test]
fn partitions_taken_away_commit_in_the_revoke_window_and_are_released_after_it() {
    let mut h = Harness::consumer_stable(3);
    let on_revoked = h.lease(1, 90);
    h.beat(answer(3, Some(&[0])));
    assert_eq!(h.revoke_requested(), vec![tps(&[1])]);
    assert_eq!(h.m.state(), StateKind::Revoking);
    // The broker keeps the epoch until the member reports t-1 released: its batch commits.
    let id = h.commit(vec![on_revoked]);
    let (commit_id, _, request) = h.take_commit();
    assert_eq!((request.generation_id_or_member_epoch, commit_offsets(&request)), (3, vec![(1, 90)]));
    h.m.revoke_done(h.now);
    h.pump();
    assert_eq!(h.count("ConsumerGroupHeartbeat"), 0, "released only once its commit is answered");
    h.respond(commit_id, commit_response(&[(1, NONE)]));
    assert_eq!(h.completed(id), Some(vec![result(1, 90, committed(3, None))]));
    let (_, added, revoked) = assigned_event(&h.events).expect("the release");
    assert_eq!((added, revoked), (vec![], tps(&[1])));
    let (_, release) = h.take_consumer_heartbeat();
    assert_eq!((release.member_epoch, owned(&release)), (3, Some(vec![(TOPIC_ID, vec![0])])));
    assert_eq!(h.m.lease(&tp(1), 91), None);
}

#[test]
fn the_revoke_window_closes_at_its_deadline_without_the_handler() {
    let mut h = Harness::consumer_stable(3);
    h.beat(answer(3, Some(&[0])));
    assert_eq!(h.m.state(), StateKind::Revoking);
    let deadline = h.now + config().revoke_timeout;
    // Heartbeats go on through the window with nothing new (t-1 still owned), until the
    // deadline releases t-1.
    let release = (0..100).find_map(|_| {
        let beat = h.beat(answer(3, None));
        owned(&beat).map(|owned| (h.now, owned))
    });
    assert_eq!(release, Some((deadline, vec![(TOPIC_ID, vec![0])])));
    assert_eq!(h.m.state(), StateKind::Stable);
}

#[test]
fn a_fenced_member_loses_its_partitions_and_rejoins_with_epoch_zero_and_its_id() {
    let mut h = Harness::consumer_stable(3);
    let before = h.lease(0, 10);
    h.beat(refused(FENCED_MEMBER_EPOCH));
    assert_eq!(h.lost(), vec![tps(&[0, 1])]);
    let (id, rejoin) = h.take_consumer_heartbeat();
    assert_eq!((rejoin.member_id.as_str(), rejoin.member_epoch, owned(&rejoin)), ("m-a", 0, Some(vec![])));
    assert!(rejoin.subscribed_topic_names.is_some(), "a rejoin is a full request");
    h.respond(id, GroupResponse::ConsumerGroupHeartbeat(answer(9, Some(&[0]))));
    assert_eq!(h.m.current_generation(), Some(&gen(9, "m-a")));
    let commit = h.commit(vec![before]);
    let outcome = h.completed(commit).expect("judged at once");
    assert!(matches!(outcome[0].outcome, CommitOutcome::Fenced { .. }), "{outcome:?}");
    assert_eq!(h.count("OffsetCommit"), 0);
}

#[test]
fn a_commit_answered_stale_heartbeats_at_once_and_goes_again_with_the_new_epoch() {
    let mut h = Harness::consumer_stable(3);
    let id = h.commit(vec![h.lease(0, 5)]);
    let (commit_id, _, _) = h.take_commit();
    h.respond(commit_id, commit_response(&[(0, STALE_MEMBER_EPOCH)]));
    assert_eq!(h.count("OffsetCommit"), 0, "waits for a newer epoch");
    let (beat, _) = h.take_consumer_heartbeat();
    h.respond(beat, GroupResponse::ConsumerGroupHeartbeat(answer(4, None)));
    let (commit_id, _, request) = h.take_commit();
    assert_eq!(request.generation_id_or_member_epoch, 4);
    h.respond(commit_id, commit_response(&[(0, NONE)]));
    assert_eq!(h.completed(id), Some(vec![result(0, 5, committed(4, Some(3)))]));
}

#[test]
fn leaving_sends_epoch_minus_one_or_minus_two_for_a_static_member() {
    for (instance, epoch) in [(None, -1), (Some("i1"), -2)] {
        let mut c = consumer_config();
        c.group_instance_id = instance.map(str::to_owned);
        let mut h = Harness::with_config(c);
        h.found_with(kafka40_versions());
        let (id, _) = h.take_consumer_heartbeat();
        h.respond(id, GroupResponse::ConsumerGroupHeartbeat(answer(2, Some(&[]))));
        h.m.leave("closing", h.now);
        h.pump();
        let (id, leave) = h.take_consumer_heartbeat();
        assert_eq!((leave.member_epoch, leave.instance_id.as_deref()), (epoch, instance));
        h.respond(id, GroupResponse::ConsumerGroupHeartbeat(answer(epoch, None)));
        assert_eq!(h.m.state(), StateKind::Left);
        assert_eq!(h.m.member_id().as_str(), "m-a", "the member keeps the id it chose (KIP-1082)");
    }
}

#[test]
fn a_failed_topic_id_lookup_is_retried_and_never_read_as_no_topic() {
    let mut h = Harness::consumer_stable(3);
    let other = Uuid::from_u128(2);
    let mut response = answer(5, Some(&[0, 1]));
    if let Some(a) = &mut response.assignment {
        a.topic_partitions.push(TopicPartitions::default().with_topic_id(other).with_partitions(vec![0]));
    }
    h.beat(response);
    let lookup = h.take("Metadata");
    h.m.handle_request_failed(h.now, lookup.id, RequestFailure::TimedOut);
    h.pump();
    assert_eq!(h.m.assignment().len(), 2, "what is owned stays owned");
    let retry_at = h.m.poll_timeout().expect("a retry");
    h.advance(retry_at - h.now);
    let lookup = h.take("Metadata");
    h.m.handle_topic_ids(h.now, lookup.id, [(TOPIC_ID, "t".to_string()), (other, "u".to_string())].into());
    h.pump();
    let names: Vec<String> = h.m.assignment().iter().map(|p| p.partition.to_string()).collect();
    assert_eq!(names, ["t-0", "t-1", "u-0"]);
}

#[test]
fn a_pattern_goes_to_the_broker_as_a_regex() {
    let base = Instant::now();
    let pattern = TopicPattern::new("t.*").unwrap();
    let m = GroupMachine::with_subscription(consumer_config(), TopicSubscription::Pattern(pattern), base);
    let mut h = Harness { m, base, now: base, outbox: Vec::new(), events: Vec::new() };
    h.pump();
    h.found_with(kafka40_versions());
    assert!(!h.apis().contains(&"Metadata"), "the broker matches the pattern: {:?}", h.apis());
    let (_, join) = h.take_consumer_heartbeat();
    assert_eq!((join.subscribed_topic_regex.as_deref(), join.subscribed_topic_names), (Some("t.*"), None));
}

#[test]
fn a_new_subscription_goes_out_in_the_next_heartbeat_at_once() {
    let mut h = Harness::consumer_stable(3);
    h.m.subscribe(["t", "u"], h.now);
    h.pump();
    let (_, beat) = h.take_consumer_heartbeat();
    let names: Vec<String> = beat.subscribed_topic_names.unwrap_or_default().iter().map(|t| t.to_string()).collect();
    assert_eq!(names, ["t", "u"]);
    assert_eq!(h.m.state(), StateKind::Stable, "no revoke window: the broker decides what moves");
}

#[test]
fn a_broker_without_the_consumer_protocol_stops_the_member_with_a_clear_error() {
    let mut h = Harness::with_config(consumer_config());
    h.found_with(kafka36_versions());
    match h.fatal() {
        Some(GroupError::UnsupportedApi { api }) => assert!(api.contains("Kafka 4.0"), "{api}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_join_answered_not_coordinator_goes_again_to_the_coordinator_found_next() {
    let mut h = Harness::consumer();
    let (id, _) = h.take_consumer_heartbeat();
    h.respond(id, GroupResponse::ConsumerGroupHeartbeat(refused(NOT_COORDINATOR)));
    assert_eq!((h.m.state(), h.coordinator_events()), (StateKind::AwaitingJoin, vec![Some(1), None]));
    h.advance(BACKOFF);
    h.found_with(kafka40_versions());
    let (_, join) = h.take_consumer_heartbeat();
    assert_eq!((join.member_id.as_str(), join.member_epoch), ("m-a", 0));
}

#[test]
fn a_classic_member_commits_with_offset_commit_v8_where_the_broker_offers_v9() {
    let mut h = Harness::with_config(config());
    h.found_with(negotiated(&[
        (ApiKey::JoinGroup, 0, 9),
        (ApiKey::SyncGroup, 0, 5),
        (ApiKey::Heartbeat, 0, 4),
        (ApiKey::OffsetCommit, 2, 9),
    ]));
    h.two_step_join("m-1");
    h.join_and_sync(1, &[0]);
    h.commit(vec![h.lease(0, 5)]);
    let (_, version, _) = h.take_commit();
    assert_eq!(version, 8);
}
