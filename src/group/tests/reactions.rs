//! The reaction table (src/group/reactions.rs), row by row through the machine.
//!
//! [`expected`] is this test's own account of what every answer must make the member do,
//! written apart from the table: a row changed there fails here twice, once where the table is
//! compared with it and once where the machine, which does what the table says, is driven into
//! the state where the row's API is in flight, answered with the row's code, and watched (the
//! next request, the state, the events, the member id). The cases (Txx) are in the table's rows.

use std::panic::{catch_unwind, AssertUnwindSafe};

use super::consumer_protocol::{answer, consumer_config, kafka40_versions, owned, refused};
use super::*;
use crate::group::reactions::{
    self, Key, Reaction, Standing, COMMIT, CONSUMER_HEARTBEAT as CGH, FETCH, FIND, HEARTBEAT as HB, JOIN, LEAVE, SYNC,
    TABLE,
};

fn on(api: ApiKey, code: i16) -> Key {
    Key { api, code: Some(code), standing: None }
}

fn on_if(api: ApiKey, code: i16, standing: Standing) -> Key {
    Key { api, code: Some(code), standing: Some(standing) }
}

fn other(api: ApiKey) -> Key {
    Key { api, code: None, standing: None }
}

/// What every answer must make the member do.
fn expected() -> Vec<(Key, Reaction)> {
    use Reaction::*;
    use Standing::*;
    vec![
        (on(FIND, GROUP_AUTHORIZATION_FAILED), Fatal),
        (other(FIND), Backoff),
        (on(JOIN, NONE), Apply),
        (on(JOIN, MEMBER_ID_REQUIRED), AdoptMemberId),
        (on(JOIN, UNKNOWN_MEMBER_ID), ResetMemberId),
        (on(JOIN, REBALANCE_IN_PROGRESS), Rejoin),
        (on(JOIN, ILLEGAL_GENERATION), Rejoin),
        (on(JOIN, COORDINATOR_LOAD_IN_PROGRESS), Backoff),
        (on(JOIN, COORDINATOR_NOT_AVAILABLE), Rediscover),
        (on(JOIN, NOT_COORDINATOR), Rediscover),
        (on(JOIN, FENCED_INSTANCE_ID), Fatal),
        (on(JOIN, INCONSISTENT_GROUP_PROTOCOL), Fatal),
        (on(JOIN, INVALID_SESSION_TIMEOUT), Fatal),
        (on(JOIN, INVALID_GROUP_ID), Fatal),
        (on(JOIN, GROUP_AUTHORIZATION_FAILED), Fatal),
        (on(JOIN, GROUP_MAX_SIZE_REACHED), Fatal),
        (other(JOIN), Fatal),
        (on(SYNC, NONE), Apply),
        (on(SYNC, REBALANCE_IN_PROGRESS), Rejoin),
        (on(SYNC, ILLEGAL_GENERATION), ResetGeneration),
        (on(SYNC, UNKNOWN_MEMBER_ID), ResetMemberId),
        (on(SYNC, COORDINATOR_NOT_AVAILABLE), Rediscover),
        (on(SYNC, NOT_COORDINATOR), Rediscover),
        (on(SYNC, COORDINATOR_LOAD_IN_PROGRESS), Backoff),
        (on(SYNC, UNKNOWN_SERVER_ERROR), Backoff),
        (on(SYNC, FENCED_INSTANCE_ID), Fatal),
        (on(SYNC, INCONSISTENT_GROUP_PROTOCOL), Fatal),
        (on(SYNC, GROUP_AUTHORIZATION_FAILED), Fatal),
        (other(SYNC), Fatal),
        (on(HB, NONE), Apply),
        (on(HB, REBALANCE_IN_PROGRESS), Rejoin),
        (on(HB, ILLEGAL_GENERATION), ResetGeneration),
        (on(HB, UNKNOWN_MEMBER_ID), ResetMemberId),
        (on(HB, COORDINATOR_NOT_AVAILABLE), Rediscover),
        (on(HB, NOT_COORDINATOR), Rediscover),
        (on(HB, FENCED_INSTANCE_ID), Fatal),
        (on(HB, GROUP_AUTHORIZATION_FAILED), Fatal),
        (other(HB), Backoff),
        (on(LEAVE, NONE), Apply),
        (on(LEAVE, UNKNOWN_MEMBER_ID), Ignore),
        (other(LEAVE), Ignore),
        (on(COMMIT, NONE), Apply),
        (on(COMMIT, COORDINATOR_LOAD_IN_PROGRESS), Backoff),
        (on(COMMIT, UNKNOWN_TOPIC_OR_PARTITION), Backoff),
        (on(COMMIT, NOT_COORDINATOR), Rediscover),
        (on(COMMIT, COORDINATOR_NOT_AVAILABLE), Rediscover),
        (on(COMMIT, REQUEST_TIMED_OUT), Rediscover),
        (on(COMMIT, REBALANCE_IN_PROGRESS), Rejoin),
        (on_if(COMMIT, ILLEGAL_GENERATION, Current), ResetGeneration),
        (on_if(COMMIT, ILLEGAL_GENERATION, MovedOn), Ignore),
        (on_if(COMMIT, UNKNOWN_MEMBER_ID, Current), ResetMemberId),
        (on_if(COMMIT, UNKNOWN_MEMBER_ID, MovedOn), Ignore),
        (on_if(COMMIT, FENCED_INSTANCE_ID, Current), Fatal),
        (on_if(COMMIT, FENCED_INSTANCE_ID, MovedOn), Backoff),
        (on_if(COMMIT, STALE_MEMBER_EPOCH, Current), Rejoin),
        (on_if(COMMIT, STALE_MEMBER_EPOCH, MovedOn), Ignore),
        (on_if(COMMIT, FENCED_MEMBER_EPOCH, Current), ResetGeneration),
        (on_if(COMMIT, FENCED_MEMBER_EPOCH, MovedOn), Ignore),
        (on(COMMIT, GROUP_AUTHORIZATION_FAILED), Fatal),
        (on(COMMIT, OFFSET_METADATA_TOO_LARGE), Report),
        (on(COMMIT, INVALID_COMMIT_OFFSET_SIZE), Report),
        (other(COMMIT), Report),
        (on(FETCH, NONE), Apply),
        (on(FETCH, COORDINATOR_LOAD_IN_PROGRESS), Backoff),
        (on(FETCH, UNSTABLE_OFFSET_COMMIT), Backoff),
        (on(FETCH, NOT_COORDINATOR), Rediscover),
        (on(FETCH, COORDINATOR_NOT_AVAILABLE), Rediscover),
        (on(FETCH, REQUEST_TIMED_OUT), Rediscover),
        (on(FETCH, GROUP_AUTHORIZATION_FAILED), Fatal),
        (on(FETCH, TOPIC_AUTHORIZATION_FAILED), Report),
        (other(FETCH), Backoff),
        (on(CGH, NONE), Apply),
        (on(CGH, FENCED_MEMBER_EPOCH), ResetGeneration),
        (on(CGH, UNKNOWN_MEMBER_ID), ResetGeneration),
        (on(CGH, COORDINATOR_NOT_AVAILABLE), Rediscover),
        (on(CGH, NOT_COORDINATOR), Rediscover),
        (on(CGH, COORDINATOR_LOAD_IN_PROGRESS), Backoff),
        (on(CGH, UNRELEASED_INSTANCE_ID), Fatal),
        (on(CGH, FENCED_INSTANCE_ID), Fatal),
        (on(CGH, UNSUPPORTED_ASSIGNOR), Fatal),
        (on(CGH, INVALID_REQUEST), Fatal),
        (on(CGH, UNSUPPORTED_VERSION), Fatal),
        (on(CGH, GROUP_MAX_SIZE_REACHED), Fatal),
        (on(CGH, GROUP_AUTHORIZATION_FAILED), Fatal),
        (on(CGH, TOPIC_AUTHORIZATION_FAILED), Fatal),
        (on(CGH, INCONSISTENT_GROUP_PROTOCOL), Fatal),
        (on(CGH, INVALID_REGULAR_EXPRESSION), Fatal),
        (other(CGH), Backoff),
    ]
}

/// Codes an `otherwise` row is driven with: those of these its API has no row for.
const OTHER_CODES: [i16; 3] = [UNKNOWN_SERVER_ERROR, UNSUPPORTED_VERSION, INVALID_REQUEST];

fn other_codes(api: ApiKey) -> Vec<i16> {
    let named = |code| TABLE.iter().any(|row| row.key.api == api && row.key.code == Some(code));
    OTHER_CODES.into_iter().filter(|&code| !named(code)).collect()
}

fn api_name(api: ApiKey) -> &'static str {
    match api {
        FIND => "FindCoordinator",
        JOIN => "JoinGroup",
        SYNC => "SyncGroup",
        HB => "Heartbeat",
        LEAVE => "LeaveGroup",
        COMMIT => "OffsetCommit",
        CGH => "ConsumerGroupHeartbeat",
        _ => "OffsetFetch",
    }
}

fn code_name(code: i16) -> String {
    KafkaCode(code).name().map_or_else(|| code.to_string(), Into::into)
}

#[test]
fn the_table_has_the_expected_rows() {
    let expected = expected();
    for row in TABLE {
        let wanted = expected.iter().find(|(key, _)| *key == row.key).map(|(_, reaction)| *reaction);
        assert_eq!(Some(row.reaction), wanted, "{:?} ({})", row.key, row.cases);
    }
    for (key, reaction) in &expected {
        assert!(TABLE.iter().any(|row| row.key == *key), "no row for {key:?} ({reaction:?})");
        if let Some(code) = key.code {
            let standing = key.standing.unwrap_or(Standing::Current);
            assert_eq!(reactions::reaction_if(key.api, code, standing), *reaction, "{key:?}");
        }
    }
    for (key, reaction) in expected.iter().filter(|(key, _)| key.code.is_none()) {
        for code in other_codes(key.api) {
            assert_eq!(reactions::reaction(key.api, code), *reaction, "{key:?} {}", code_name(code));
        }
    }
}

/// Where an OffsetFetch code is answered.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Level {
    Group,
    Partition,
}

/// A member whose request of `api` was answered with `code`.
struct Case {
    api: ApiKey,
    code: i16,
    standing: Standing,
    level: Level,
    h: Harness,
    /// The commit in flight (OffsetCommit).
    commit: Option<CommitId>,
    /// The lookup in flight (OffsetFetch).
    fetch: Option<OffsetFetchId>,
}

/// The codes only KIP-848's consumer protocol answers: their rows are driven on a member of it.
fn consumer_code(code: i16) -> bool {
    matches!(code, STALE_MEMBER_EPOCH | FENCED_MEMBER_EPOCH)
}

/// Drives a member until its request of `api` is in flight, and answers it with `code`: from
/// Stable in generation 1 as `m-1` owning t-0 and t-1, except FindCoordinator (the first
/// lookup). The JoinGroup and SyncGroup are those of an eager rebalance to generation 2; the
/// OffsetCommit (t-0 at 10) is of generation 1, `MovedOn` with the member reset by a heartbeat's
/// ILLEGAL_GENERATION meanwhile; the OffsetFetch asks for t-0. ConsumerGroupHeartbeat, and the
/// OffsetCommit codes of KIP-848, are those of a consumer-protocol member `m-a` at epoch 1
/// owning t-0 and t-1 (`MovedOn`: fenced by a heartbeat meanwhile).
fn answered(api: ApiKey, code: i16, standing: Standing, level: Level) -> Case {
    // The instance id another process took (or holds) is that of a static member.
    let instance_code = matches!(code, FENCED_INSTANCE_ID | UNRELEASED_INSTANCE_ID);
    let config = if instance_code { static_config() } else { config() };
    let (mut commit, mut fetch) = (None, None);
    let mut kip848 = consumer_config();
    kip848.group_instance_id = config.group_instance_id.clone();
    let h = match api {
        CGH => {
            let mut h = Harness::consumer_stable_with(kip848, 1);
            let sent = h.beat(if code == NONE { answer(1, None) } else { refused(code) });
            assert_eq!(sent.instance_id.is_some(), instance_code, "a static member names its instance");
            h
        }
        COMMIT if consumer_code(code) => {
            let mut h = Harness::consumer_stable_with(kip848, 1);
            let lease = h.lease(0, 10);
            commit = Some(h.commit(vec![lease]));
            let (id, _, _) = h.take_commit();
            if standing == Standing::MovedOn {
                h.beat(refused(FENCED_MEMBER_EPOCH));
                assert_eq!(h.m.state(), StateKind::AwaitingJoin);
                assert_eq!(h.count("ConsumerGroupHeartbeat"), 0, "the join waits for the OffsetCommit");
            }
            h.events.clear();
            h.respond(id, commit_response(&[(0, code)]));
            h
        }
        FIND => {
            let mut h = Harness::with_config(config);
            h.find_failed(RequestFailure::Broker(KafkaCode(code)));
            h
        }
        JOIN => {
            let mut h = Harness::stable_with(config);
            h.revoke_and_rejoin();
            let (id, _, join) = h.take_join();
            assert_eq!((join.member_id.as_str(), join_subscription(&join).generation), ("m-1", GenerationId(1)));
            h.events.clear();
            let answer = if code == NONE { join_response(NONE, 2, "m-1", "m-0") } else { join_error(code, "m-2") };
            h.respond_join(id, answer);
            h
        }
        SYNC => {
            let mut h = Harness::stable_with(config);
            h.revoke_and_rejoin();
            let (id, _, _) = h.take_join();
            h.respond_join(id, join_response(NONE, 2, "m-1", "m-0"));
            let (id, _, _) = h.take_sync();
            h.events.clear();
            h.respond_sync(id, if code == NONE { sync_ok(&[0, 1]) } else { sync_error(code) });
            h
        }
        HB => {
            let mut h = Harness::stable_with(config);
            let sent = h.heartbeat_answered(code);
            assert_eq!(
                sent.group_instance_id.is_some(),
                code == FENCED_INSTANCE_ID,
                "a static member names its instance"
            );
            h
        }
        LEAVE => {
            let mut h = Harness::stable_with(config);
            h.m.leave("bye", h.now);
            h.pump();
            let (id, _, _) = h.take_leave();
            h.events.clear();
            h.respond(id, GroupResponse::LeaveGroup(LeaveGroupResponse::default().with_error_code(code)));
            h
        }
        COMMIT => {
            let mut h = Harness::stable_with(config);
            let lease = h.lease(0, 10);
            commit = Some(h.commit(vec![lease]));
            let (id, _, sent) = h.take_commit();
            assert_eq!(
                sent.group_instance_id.is_some(),
                code == FENCED_INSTANCE_ID,
                "a static member names its instance"
            );
            if standing == Standing::MovedOn {
                h.heartbeat_answered(ILLEGAL_GENERATION);
                assert_eq!(h.m.state(), StateKind::AwaitingJoin);
                assert_eq!(h.count("JoinGroup"), 0, "JoinGroup waits for the OffsetCommit");
            }
            h.events.clear();
            h.respond(id, commit_response(&[(0, code)]));
            h
        }
        _ => {
            let mut h = Harness::stable_with(config);
            fetch = Some(h.fetch(&[0]));
            let (id, _, _) = h.take_fetch();
            h.events.clear();
            let answer = match (code, level) {
                (NONE, _) => fetch_response(NONE, &[(0, 42, NONE)]),
                (_, Level::Group) => fetch_response(code, &[]),
                (_, Level::Partition) => fetch_response(NONE, &[(0, -1, code)]),
            };
            h.respond(id, answer);
            h
        }
    };
    Case { api, code, standing, level, h, commit, fetch }
}

/// The JoinGroup sent at once: its member id, the generation its subscription names, and its
/// reason.
fn joins_at_once(h: &mut Harness) -> (String, GenerationId, String) {
    assert_eq!(h.apis(), vec!["JoinGroup"], "a JoinGroup at once");
    let (_, _, join) = h.take_join();
    (join.member_id.to_string(), join_subscription(&join).generation, join.reason.unwrap_or_default().to_string())
}

/// Nothing is sent before the backoff; then `api` goes, to the same coordinator.
fn after_backoff(h: &mut Harness, api: &str) {
    assert!(h.outbox.is_empty(), "backs off first: {:?}", h.apis());
    h.advance(BACKOFF - MS);
    assert!(h.outbox.is_empty(), "backs off first: {:?}", h.apis());
    let at = h.m.poll_timeout().expect("a backoff timer");
    h.advance(at - h.now);
    assert_eq!(h.apis(), vec![api], "after the backoff");
    assert!(h.coordinator_events().is_empty(), "the same coordinator");
}

/// The coordinator is given up and looked up again after the backoff; found, `api` goes to it.
fn rediscovers(h: &mut Harness, api: &str) -> OutgoingRequest {
    assert_eq!(h.coordinator_events(), vec![None]);
    assert_eq!(h.m.snapshot(h.now).coordinator, None);
    assert!(h.outbox.is_empty(), "FindCoordinator waits for the backoff: {:?}", h.apis());
    h.advance(BACKOFF);
    assert_eq!(h.apis(), vec!["FindCoordinator"]);
    h.found();
    let until = h.now + Duration::from_secs(5);
    while h.now < until {
        if let Some(request) = h.try_take(api) {
            return request;
        }
        if let Some(r) = h.try_take("Heartbeat") {
            h.respond(r.id, heartbeat(NONE));
            continue;
        }
        let at = h.m.poll_timeout().expect("a timer");
        h.advance(at - h.now);
    }
    panic!("no {api} to the coordinator found again");
}

/// The member stopped with the error of `api` answered `code`, and sends nothing more.
fn stops(h: &mut Harness, api: &'static str, code: i16) {
    assert_eq!(h.m.state(), StateKind::Failed);
    let instance = matches!(code, FENCED_INSTANCE_ID | UNRELEASED_INSTANCE_ID);
    let error = if instance { fenced_instance() } else { rejected(api, code) };
    assert_eq!(h.fatal(), Some(&error));
    h.advance(Duration::from_secs(30));
    assert!(h.outbox.is_empty(), "nothing after a fatal error: {:?}", h.apis());
}

/// Partitions lost, generation forgotten; the JoinGroup goes at once as `member`.
fn resets(h: &mut Harness, member: &str, reason: &str) {
    assert_eq!(h.lost(), vec![tps(&[0, 1])]);
    assert_eq!(h.m.current_generation(), None);
    assert_eq!(h.m.lease(&tp(0), 1), None);
    assert_eq!(h.fatal(), None);
    assert_eq!(joins_at_once(h), (member.to_owned(), GenerationId::NONE, reason.to_owned()));
}

/// Checks that the member did what `reaction` says for its case.
fn check(case: Case, reaction: Reaction) {
    use Reaction::*;
    let Case { api, code, standing, level, mut h, commit, fetch } = case;
    let h = &mut h;
    let name = api_name(api);
    let (m1, gen1) = ("m-1".to_owned(), GenerationId(1));
    match (api, standing, reaction) {
        (COMMIT, _, _) if consumer_code(code) => {
            check_consumer_commit(h, commit.expect("a commit"), code, standing, reaction)
        }
        (CGH, _, Apply) => {
            assert_eq!((h.m.state(), h.m.current_generation()), (StateKind::Stable, Some(&gen(1, "m-a"))));
            assert_eq!(h.m.poll_timeout(), Some(h.now + Duration::from_secs(5)), "the broker's interval");
            assert!(h.outbox.is_empty() && h.coordinator_events().is_empty());
        }
        (CGH, _, ResetGeneration) => consumer_rejoins(h),
        (CGH, _, Rediscover) => {
            assert_eq!((h.m.state(), h.m.assignment().len()), (StateKind::Stable, 2));
            assert_eq!(h.coordinator_events(), vec![None]);
            h.advance(BACKOFF);
            h.found_with(kafka40_versions());
            let (_, beat) = h.take_consumer_heartbeat();
            assert_eq!(
                (beat.member_epoch, owned(&beat).map(|o| o.len())),
                (1, Some(1)),
                "a full heartbeat, epoch kept"
            );
            assert!(h.lost().is_empty());
        }
        (CGH, _, Backoff) => {
            assert_eq!(h.m.state(), StateKind::Stable);
            after_backoff(h, "ConsumerGroupHeartbeat");
            let (_, beat) = h.take_consumer_heartbeat();
            assert!(beat.subscribed_topic_names.is_some(), "a full heartbeat after an error");
        }
        (FIND, _, Backoff) => {
            assert_eq!((h.m.state(), h.fatal()), (StateKind::AwaitingJoin, None));
            after_backoff(h, "FindCoordinator");
        }
        (JOIN, _, Apply) => {
            assert_eq!(h.m.state(), StateKind::AwaitingSync);
            let (_, _, sync) = h.take_sync();
            assert_eq!((sync.generation_id, sync.member_id.as_str()), (2, "m-1"));
        }
        (JOIN, _, AdoptMemberId) => {
            let join = joins_at_once(h);
            assert_eq!((join.0, join.2), ("m-2".to_owned(), "member id required (KIP-394 second step)".to_owned()));
            assert!(h.lost().is_empty() && h.coordinator_events().is_empty());
        }
        (JOIN | SYNC, _, Rejoin) => {
            let join = joins_at_once(h);
            assert_eq!((join.0, join.1), (m1, gen1), "member id and generation kept");
            assert!(h.lost().is_empty() && h.coordinator_events().is_empty());
            assert_eq!(h.fatal(), None);
        }
        (JOIN, _, ResetMemberId) => {
            // Eager: the partitions were revoked before the join, nothing is lost now.
            assert_eq!(h.m.snapshot(h.now).member_id, MemberId::unknown());
            let join = joins_at_once(h);
            assert_eq!((join.0, join.2), (String::new(), "member id unknown to the coordinator".to_owned()));
        }
        (JOIN | SYNC, _, Backoff) => {
            assert_eq!((h.m.state(), h.fatal()), (StateKind::AwaitingJoin, None));
            assert!(h.lost().is_empty());
            after_backoff(h, "JoinGroup");
            assert_eq!(joins_at_once(h).0, m1);
        }
        (JOIN | SYNC, _, Rediscover) => {
            assert_eq!(h.m.state(), StateKind::AwaitingJoin);
            let GroupRequest::JoinGroup(join) = rediscovers(h, "JoinGroup").body else { unreachable!() };
            assert_eq!(join.member_id.as_str(), "m-1");
            assert!(h.lost().is_empty());
            assert_eq!(h.fatal(), None);
        }
        (SYNC, _, Apply) => {
            assert_eq!(h.m.state(), StateKind::Stable);
            assert_eq!(h.m.current_generation(), Some(&gen(2, "m-1")));
            assert_eq!(h.m.assignment().len(), 2);
        }
        (SYNC | HB, _, ResetGeneration) => resets(h, "m-1", "generation is stale"),
        (SYNC | HB, _, ResetMemberId) => resets(h, "", "member id unknown to the coordinator"),
        (HB, _, Apply) => {
            assert_eq!((h.m.state(), h.m.current_generation()), (StateKind::Stable, Some(&gen(1, "m-1"))));
            assert_eq!(h.m.poll_timeout(), Some(h.now + HEARTBEAT), "the next heartbeat in its interval");
            assert!(h.outbox.is_empty() && h.coordinator_events().is_empty());
        }
        (HB, _, Rejoin) => {
            assert_eq!(h.m.state(), StateKind::Revoking);
            assert!(h.events.contains(&GroupEvent::RevokeRequested {
                generation: gen1,
                partitions: tps(&[0, 1]),
                reason: RejoinReason::RebalanceInProgress,
            }));
            assert_eq!(h.m.current_generation(), Some(&gen(1, "m-1")));
            h.advance(Duration::from_secs(1));
            assert_eq!(h.count("JoinGroup"), 0, "JoinGroup waits for the revoke handler");
            h.m.revoke_done(h.now);
            h.pump();
            assert_eq!(joins_at_once(h), (m1, gen1, "group is rebalancing".to_owned()));
        }
        (HB, _, Backoff) => {
            assert_eq!(h.m.state(), StateKind::Stable);
            assert_eq!(h.m.poll_timeout(), Some(h.now + BACKOFF), "the next heartbeat after the backoff");
            after_backoff(h, "Heartbeat");
        }
        (HB, _, Rediscover) => {
            assert_eq!(h.m.state(), StateKind::Stable);
            let GroupRequest::Heartbeat(body) = rediscovers(h, "Heartbeat").body else { unreachable!() };
            assert_eq!((body.generation_id, body.member_id.as_str()), (1, "m-1"), "the generation is kept");
            assert_eq!(h.count("JoinGroup"), 0);
            assert!(h.lost().is_empty());
            assert_eq!(h.m.assignment().len(), 2);
        }
        (LEAVE, _, Apply | Ignore) => {
            assert_eq!(h.m.state(), StateKind::Left);
            assert!(h.events.contains(&GroupEvent::Left { reason: "bye".into() }));
            assert_eq!(h.m.snapshot(h.now).member_id, MemberId::unknown());
            assert_eq!(h.fatal(), None);
            h.advance(Duration::from_secs(60));
            assert!(h.outbox.is_empty(), "nothing after leaving");
        }
        (COMMIT, Standing::Current, _) => check_commit(h, commit.expect("a commit"), code, reaction),
        (COMMIT, Standing::MovedOn, Ignore | Backoff) => {
            let commit = commit.expect("a commit");
            assert_eq!(h.completed(commit), None);
            assert_eq!(h.fatal(), None);
            assert!(h.lost().is_empty());
            assert_eq!(h.apis(), vec!["JoinGroup"], "the join goes once the commit is answered");
            // Judged again when the next generation is known, at once or after a backoff.
            let timer = if reaction == Ignore { "commit-deadline" } else { "commit-backoff" };
            assert_eq!(h.m.snapshot(h.now).next_timer.map(|t| t.0), Some(timer));
            h.join_and_sync(2, &[0]);
            let fenced = CommitOutcome::Fenced {
                lease_generation: gen1,
                current_generation: Some(GenerationId(2)),
                reason: FenceReason::OwnershipInterrupted { owned_since: GenerationId(2) },
            };
            assert_eq!(h.completed(commit), Some(vec![result(0, 10, fenced)]));
        }
        (FETCH, _, _) => check_fetch(h, fetch.expect("a lookup"), code, level, reaction),
        (_, _, Fatal) => stops(h, name, code),
        (api, standing, reaction) => panic!("no check for {api:?} {standing:?} {reaction:?}"),
    }
}

/// A consumer-protocol member lost t-0 and t-1 and rejoins at once with epoch 0 and its id.
fn consumer_rejoins(h: &mut Harness) {
    assert_eq!(h.lost(), vec![tps(&[0, 1])]);
    assert_eq!((h.m.current_generation(), h.m.lease(&tp(0), 1), h.fatal()), (None, None, None));
    let (_, join) = h.take_consumer_heartbeat();
    assert_eq!((join.member_id.as_str(), join.member_epoch), ("m-a", 0));
}

fn check_consumer_commit(h: &mut Harness, commit: CommitId, code: i16, standing: Standing, reaction: Reaction) {
    use Reaction::*;
    match (standing, reaction) {
        (Standing::Current, Rejoin) => {
            assert_eq!((h.completed(commit), h.m.state()), (None, StateKind::Stable));
            assert_eq!(h.count("OffsetCommit"), 0, "not again with epoch 1");
            let (beat, _) = h.take_consumer_heartbeat();
            h.respond(beat, GroupResponse::ConsumerGroupHeartbeat(answer(2, None)));
            let (id, _, request) = h.take_commit();
            assert_eq!(request.generation_id_or_member_epoch, 2);
            h.respond(id, commit_response(&[(0, NONE)]));
            assert_eq!(h.completed(commit), Some(vec![result(0, 10, committed(2, Some(1)))]));
        }
        (Standing::Current, ResetGeneration) => {
            let fenced = CommitOutcome::Fenced {
                lease_generation: GenerationId(1),
                current_generation: Some(GenerationId(1)),
                reason: FenceReason::RejectedByBroker(KafkaCode(code)),
            };
            assert_eq!(h.completed(commit), Some(vec![result(0, 10, fenced)]));
            consumer_rejoins(h);
        }
        (Standing::MovedOn, Ignore) => {
            assert_eq!((h.completed(commit), h.fatal()), (None, None));
            let (join, _) = h.take_consumer_heartbeat();
            h.respond(join, GroupResponse::ConsumerGroupHeartbeat(answer(2, Some(&[0]))));
            let fenced = CommitOutcome::Fenced {
                lease_generation: GenerationId(1),
                current_generation: Some(GenerationId(2)),
                reason: FenceReason::OwnershipInterrupted { owned_since: GenerationId(2) },
            };
            assert_eq!(h.completed(commit), Some(vec![result(0, 10, fenced)]));
        }
        other => panic!("no check for a consumer-protocol OffsetCommit {other:?}"),
    }
}

fn check_commit(h: &mut Harness, commit: CommitId, code: i16, reaction: Reaction) {
    use Reaction::*;
    let committed_after = |h: &mut Harness, generation: i32| {
        let (id, _, request) = h.take_commit();
        assert_eq!((request.generation_id_or_member_epoch, commit_offsets(&request)), (generation, vec![(0, 10)]));
        h.respond(id, commit_response(&[(0, NONE)]));
        let restamped = (generation != 1).then_some(1);
        assert_eq!(h.completed(commit), Some(vec![result(0, 10, committed(generation, restamped))]));
    };
    let fenced_by_broker = CommitOutcome::Fenced {
        lease_generation: GenerationId(1),
        current_generation: Some(GenerationId(1)),
        reason: FenceReason::RejectedByBroker(KafkaCode(code)),
    };
    if matches!(reaction, Backoff | Rediscover | Rejoin) {
        assert_eq!(h.completed(commit), None, "not done with");
    }
    match reaction {
        Apply => {
            assert_eq!(h.completed(commit), Some(vec![result(0, 10, committed(1, None))]));
            assert_eq!(h.m.state(), StateKind::Stable);
        }
        Backoff => {
            after_backoff(h, "OffsetCommit");
            committed_after(h, 1);
        }
        Rediscover => {
            let request = rediscovers(h, "OffsetCommit");
            h.outbox.insert(0, request);
            committed_after(h, 1);
            assert_eq!(h.m.state(), StateKind::Stable);
        }
        Rejoin => {
            // T41: no reset; the commit waits for the next generation.
            assert_eq!(h.m.state(), StateKind::Revoking);
            assert!(h.events.contains(&GroupEvent::RevokeRequested {
                generation: GenerationId(1),
                partitions: tps(&[0, 1]),
                reason: RejoinReason::RebalanceInProgress,
            }));
            assert!(h.lost().is_empty());
            h.advance(Duration::from_secs(1));
            assert_eq!(h.count("OffsetCommit"), 0, "not again in generation 1");
            h.m.revoke_done(h.now);
            h.pump();
            let (id, _, join) = h.take_join();
            assert_eq!(join.member_id.as_str(), "m-1");
            h.respond_join(id, join_response(NONE, 2, "m-1", "m-0"));
            assert_eq!(h.count("OffsetCommit"), 0, "not behind the SyncGroup");
            let (id, _, _) = h.take_sync();
            h.respond_sync(id, sync_ok(&[0, 1]));
            committed_after(h, 2);
        }
        ResetGeneration | ResetMemberId => {
            assert_eq!(h.completed(commit), Some(vec![result(0, 10, fenced_by_broker)]));
            assert_eq!(h.counters().partitions_rejected_by_broker.get(&code), Some(&1));
            match reaction {
                ResetGeneration => resets(h, "m-1", "generation is stale"),
                _ => resets(h, "", "member id unknown to the coordinator"),
            }
        }
        Fatal => {
            let error = if code == FENCED_INSTANCE_ID { fenced_instance() } else { rejected("OffsetCommit", code) };
            let failure = failed(CommitFailure::Fatal(error.to_string()));
            assert_eq!(h.completed(commit), Some(vec![result(0, 10, failure)]));
            stops(h, "OffsetCommit", code);
        }
        Report => {
            let failure = failed(CommitFailure::Rejected(KafkaCode(code)));
            assert_eq!(h.completed(commit), Some(vec![result(0, 10, failure)]));
            assert_eq!(h.counters().partitions_rejected_by_broker.get(&code), Some(&1));
            assert_eq!((h.m.state(), h.fatal()), (StateKind::Stable, None));
            h.advance(Duration::from_secs(1));
            assert_eq!(h.count("OffsetCommit"), 0, "not retried");
        }
        AdoptMemberId | Ignore => panic!("no check for an OffsetCommit of the current generation {reaction:?}"),
    }
}

fn check_fetch(h: &mut Harness, fetch: OffsetFetchId, code: i16, level: Level, reaction: Reaction) {
    use Reaction::*;
    let answered_after = |h: &mut Harness, request: Option<OutgoingRequest>| {
        let id = request.map_or_else(|| h.take_fetch().0, |r| r.id);
        h.respond(id, fetch_response(NONE, &[(0, 7, NONE)]));
        assert!(h.events.contains(&GroupEvent::CommittedOffsets { id: fetch, offsets: vec![(tp(0), Some(7))] }));
        assert_eq!(h.fatal(), None);
    };
    let rejected_lookup = || {
        let topic = (level == Level::Partition).then(|| "t".to_owned());
        let failure = OffsetLookupFailure::Rejected { code: KafkaCode(code), topic };
        GroupEvent::CommittedOffsetsFailed { id: fetch, failure }
    };
    match reaction {
        Apply => {
            assert!(h.events.contains(&GroupEvent::CommittedOffsets { id: fetch, offsets: vec![(tp(0), Some(42))] }));
        }
        Backoff => {
            let delayed = h
                .events
                .iter()
                .any(|e| matches!(e, GroupEvent::CommittedOffsetsDelayed { id, attempts: 1, .. } if *id == fetch));
            assert!(delayed, "{:?}", h.events);
            after_backoff(h, "OffsetFetch");
            answered_after(h, None);
        }
        Rediscover => {
            let request = rediscovers(h, "OffsetFetch");
            answered_after(h, Some(request));
        }
        Report => {
            assert!(h.events.contains(&rejected_lookup()), "{:?}", h.events);
            assert_eq!((h.m.state(), h.fatal()), (StateKind::Stable, None));
        }
        Fatal => {
            assert!(h.events.contains(&rejected_lookup()), "{:?}", h.events);
            stops(h, "OffsetFetch", code);
        }
        AdoptMemberId | Rejoin | ResetGeneration | ResetMemberId | Ignore => {
            panic!("no check for an OffsetFetch {reaction:?}")
        }
    }
}

#[test]
fn every_row_is_what_the_machine_does() {
    let mut failures = Vec::new();
    let mut driven = 0;
    for (key, reaction) in expected() {
        let codes = key.code.map_or_else(|| other_codes(key.api), |code| vec![code]);
        let levels: &[Level] = if key.api == FETCH && key.code != Some(NONE) {
            &[Level::Group, Level::Partition]
        } else {
            &[Level::Group]
        };
        for code in codes {
            for &level in levels {
                let standing = key.standing.unwrap_or(Standing::Current);
                let cases = TABLE.iter().find(|row| row.key == key).map_or("", |row| row.cases);
                let label =
                    format!("{} {} {standing:?} {level:?}: {reaction:?} ({cases})", api_name(key.api), code_name(code));
                driven += 1;
                let outcome =
                    catch_unwind(AssertUnwindSafe(|| check(answered(key.api, code, standing, level), reaction)));
                if outcome.is_err() {
                    failures.push(label);
                }
            }
        }
    }
    assert!(failures.is_empty(), "the machine does not do what these rows say:\n{}", failures.join("\n"));
    assert!(driven >= TABLE.len(), "{driven} cases for {} rows", TABLE.len());
}
