//! The one table of what the member does about an answer: (API, error code) to a [`Reaction`].
//!
//! Every handler of the machine asks [`reaction`] what a code means and carries it out for its
//! API; what an answer carries besides its code (the member id of MEMBER_ID_REQUIRED, the
//! leader's members, the assignment) stays with the handler. Answers about a request the member
//! no longer waits for are set aside before the table is asked (a Heartbeat or SyncGroup of
//! an older generation, a JoinGroup given up with its connection); only OffsetCommit, whose
//! answer is applied to commits that outlive generations, asks with the member's [`Standing`].
//!
//! The `Txx` in the rows name the cases of the project's conformance suite that check them on
//! Kafka 3.6; a test drives the machine through every row.

use kafka_protocol::messages::ApiKey;

use crate::protocol::error_code::codes::*;
use crate::protocol::error_code::KafkaCode;

/// What the member does about an answer; each handler carries it out for its API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reaction {
    /// Success: the handler applies what the answer carries.
    Apply,
    /// KIP-394's first step (JoinGroup): take the member id the answer carries and join again
    /// at once.
    AdoptMemberId,
    /// Join again keeping member id and generation: at once from JoinGroup or SyncGroup,
    /// through the revoke window from a generation (Heartbeat, OffsetCommit). An OffsetCommit's
    /// partitions wait for the next generation and are judged again then.
    Rejoin,
    /// The group moved on without us: the partitions are lost (an OffsetCommit's reported
    /// fenced), the generation forgotten, and the member joins again keeping its member id.
    ResetGeneration,
    /// As [`ResetGeneration`](Self::ResetGeneration), and the member id is forgotten too: the
    /// next JoinGroup is KIP-394's first step.
    ResetMemberId,
    /// Back off, then go again to the same coordinator (after a JoinGroup or SyncGroup: join
    /// again).
    Backoff,
    /// Give up the coordinator and its connection, find it again, then go on where the member
    /// was (member id and generation kept).
    Rediscover,
    /// The request failed for good and is reported so (an OffsetCommit's partition, an
    /// OffsetFetch); the member carries on.
    Report,
    /// The answer changes nothing (an OffsetCommit's partitions are judged again against the
    /// member's generation now, as if never sent; a LeaveGroup is done anyway).
    Ignore,
    /// Stop the member and tell the application.
    Fatal,
}

/// Whether the member still holds the generation the request was sent with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Standing {
    Current,
    MovedOn,
    /// No membership at all (manual assignment): an answer about membership is a refusal of
    /// the request, with nothing to rejoin or reset.
    Unmanaged,
}

/// The answers a row is for: `code` (`None`: every code no other row of the API names), when
/// the member's standing is `standing` (`None`: either).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Key {
    pub(super) api: ApiKey,
    pub(super) code: Option<i16>,
    pub(super) standing: Option<Standing>,
}

/// One row of [`TABLE`].
#[derive(Debug, Clone, Copy)]
pub(super) struct Row {
    pub(super) key: Key,
    pub(super) reaction: Reaction,
    /// The cases of the spec the row answers, and why.
    pub(super) cases: &'static str,
}

const fn on(api: ApiKey, code: i16, reaction: Reaction, cases: &'static str) -> Row {
    Row { key: Key { api, code: Some(code), standing: None }, reaction, cases }
}

const fn on_if(api: ApiKey, code: i16, standing: Standing, reaction: Reaction, cases: &'static str) -> Row {
    Row { key: Key { api, code: Some(code), standing: Some(standing) }, reaction, cases }
}

const fn otherwise(api: ApiKey, reaction: Reaction, cases: &'static str) -> Row {
    Row { key: Key { api, code: None, standing: None }, reaction, cases }
}

pub(super) const FIND: ApiKey = ApiKey::FindCoordinator;
pub(super) const JOIN: ApiKey = ApiKey::JoinGroup;
pub(super) const SYNC: ApiKey = ApiKey::SyncGroup;
pub(super) const HEARTBEAT: ApiKey = ApiKey::Heartbeat;
pub(super) const LEAVE: ApiKey = ApiKey::LeaveGroup;
pub(super) const COMMIT: ApiKey = ApiKey::OffsetCommit;
pub(super) const FETCH: ApiKey = ApiKey::OffsetFetch;
pub(super) const CONSUMER_HEARTBEAT: ApiKey = ApiKey::ConsumerGroupHeartbeat;

use Reaction::*;
use Standing::*;

/// The table. A code no row of its API names gets that API's `otherwise` row.
#[rustfmt::skip]
pub(super) const TABLE: &[Row] = &[
    // FindCoordinator, failed with a code (a lookup without any answer backs off too).
    on(FIND, GROUP_AUTHORIZATION_FAILED, Fatal, ""),
    otherwise(FIND, Backoff, "T02: COORDINATOR_NOT_AVAILABLE until __consumer_offsets exists"),

    // JoinGroup.
    on(JOIN, NONE, Apply, "T05, T10: SyncGroup next, the leader assigns first; T15c: a protocol type not ours is fatal (data)"),
    on(JOIN, MEMBER_ID_REQUIRED, AdoptMemberId, "T04, T14: the second step at once; never an empty-id join again"),
    on(JOIN, UNKNOWN_MEMBER_ID, ResetMemberId, "T09, T56b: at once with an empty member id"),
    on(JOIN, REBALANCE_IN_PROGRESS, Rejoin, "T15b: at once, member id and generation kept"),
    on(JOIN, ILLEGAL_GENERATION, Rejoin, "at once, member id and generation kept"),
    on(JOIN, COORDINATOR_LOAD_IN_PROGRESS, Backoff, "T15a, T58: the same coordinator, member id kept"),
    on(JOIN, COORDINATOR_NOT_AVAILABLE, Rediscover, "T03, T57: then join with the same member id"),
    on(JOIN, NOT_COORDINATOR, Rediscover, "T57: then join with the same member id"),
    on(JOIN, FENCED_INSTANCE_ID, Fatal, "T56a: another process took the instance id (KIP-345)"),
    on(JOIN, INCONSISTENT_GROUP_PROTOCOL, Fatal, "T08"),
    on(JOIN, INVALID_SESSION_TIMEOUT, Fatal, "T07a: a configuration error"),
    on(JOIN, INVALID_GROUP_ID, Fatal, "T07b: a configuration error"),
    on(JOIN, GROUP_AUTHORIZATION_FAILED, Fatal, ""),
    on(JOIN, GROUP_MAX_SIZE_REACHED, Fatal, "T12"),
    otherwise(JOIN, Fatal, "UNSUPPORTED_VERSION, UNKNOWN_SERVER_ERROR, ..."),

    // SyncGroup.
    on(SYNC, NONE, Apply, "T16, T17: install the assignment (an empty one too); T23: the protocol named must be ours (data)"),
    on(SYNC, REBALANCE_IN_PROGRESS, Rejoin, "T19, T20, T21, T25a, T58: at once, member id and generation kept"),
    on(SYNC, ILLEGAL_GENERATION, ResetGeneration, "T18: member id kept"),
    on(SYNC, UNKNOWN_MEMBER_ID, ResetMemberId, "T21, T24"),
    on(SYNC, COORDINATOR_NOT_AVAILABLE, Rediscover, "T25c: then join keeping the member id"),
    on(SYNC, NOT_COORDINATOR, Rediscover, "T25c: then join keeping the member id"),
    on(SYNC, COORDINATOR_LOAD_IN_PROGRESS, Backoff, "retriable; Kafka 3.6 answers REBALANCE_IN_PROGRESS while loading (T58), other coordinators may not"),
    on(SYNC, UNKNOWN_SERVER_ERROR, Backoff, "T25b, deliberate deviation: Java stops; a failed store is transient"),
    on(SYNC, FENCED_INSTANCE_ID, Fatal, "T54: an old process of the instance id"),
    on(SYNC, INCONSISTENT_GROUP_PROTOCOL, Fatal, "T23"),
    on(SYNC, GROUP_AUTHORIZATION_FAILED, Fatal, ""),
    otherwise(SYNC, Fatal, ""),

    // Heartbeat.
    on(HEARTBEAT, NONE, Apply, "T26, T28: the session runs again"),
    on(HEARTBEAT, REBALANCE_IN_PROGRESS, Rejoin, "T27, T31: counts as a successful heartbeat; from Stable through the revoke window"),
    on(HEARTBEAT, ILLEGAL_GENERATION, ResetGeneration, "T29: member id kept"),
    on(HEARTBEAT, UNKNOWN_MEMBER_ID, ResetMemberId, "T21, T30"),
    on(HEARTBEAT, COORDINATOR_NOT_AVAILABLE, Rediscover, "T33a: no rejoin, no reset"),
    on(HEARTBEAT, NOT_COORDINATOR, Rediscover, "T33a: no rejoin, no reset"),
    on(HEARTBEAT, FENCED_INSTANCE_ID, Fatal, "T33b, T54"),
    on(HEARTBEAT, GROUP_AUTHORIZATION_FAILED, Fatal, ""),
    otherwise(HEARTBEAT, Backoff, "not a success: the session keeps running down"),

    // LeaveGroup: best effort, as Java's; the session timeout removes a member not heard.
    on(LEAVE, NONE, Apply, "T34, T35"),
    on(LEAVE, UNKNOWN_MEMBER_ID, Ignore, "T36: logged only"),
    otherwise(LEAVE, Ignore, "T38: logged only"),

    // OffsetCommit, per partition.
    on(COMMIT, NONE, Apply, "T39, T40 (the revoke window's commit)"),
    on(COMMIT, COORDINATOR_LOAD_IN_PROGRESS, Backoff, "T49a, T58: the same coordinator"),
    on(COMMIT, UNKNOWN_TOPIC_OR_PARTITION, Backoff, "T48: retriable"),
    on(COMMIT, NOT_COORDINATOR, Rediscover, "T49b"),
    on(COMMIT, COORDINATOR_NOT_AVAILABLE, Rediscover, "T49b"),
    on(COMMIT, REQUEST_TIMED_OUT, Rediscover, "T49b"),
    on(COMMIT, REBALANCE_IN_PROGRESS, Rejoin, "T41: no reset; judged again after the next SyncGroup"),
    on_if(COMMIT, ILLEGAL_GENERATION, Current, ResetGeneration, "T42, T44b, T45: fenced by the broker, member id kept"),
    on_if(COMMIT, ILLEGAL_GENERATION, MovedOn, Ignore, "T42: the member moved on already; judged against its new generation"),
    on_if(COMMIT, UNKNOWN_MEMBER_ID, Current, ResetMemberId, "T44a: fenced by the broker"),
    on_if(COMMIT, UNKNOWN_MEMBER_ID, MovedOn, Ignore, "the member moved on already; judged against its new generation"),
    on_if(COMMIT, FENCED_INSTANCE_ID, Current, Fatal, "T46, T54"),
    on_if(COMMIT, FENCED_INSTANCE_ID, MovedOn, Backoff, "about a generation the member left: judged again after the backoff"),
    on_if(COMMIT, STALE_MEMBER_EPOCH, Current, Rejoin, "K04, K05 (4.0): the broker's member epoch moved on; a heartbeat at once learns it, then judged again"),
    on_if(COMMIT, STALE_MEMBER_EPOCH, MovedOn, Ignore, "K05: the member moved on already; judged against its new epoch"),
    on_if(COMMIT, FENCED_MEMBER_EPOCH, Current, ResetGeneration, "fenced by the broker (KIP-848), member id kept"),
    on_if(COMMIT, FENCED_MEMBER_EPOCH, MovedOn, Ignore, "the member moved on already; judged against its new epoch"),
    on(COMMIT, GROUP_AUTHORIZATION_FAILED, Fatal, ""),
    on(COMMIT, OFFSET_METADATA_TOO_LARGE, Report, "T47: that partition only, not retried"),
    on(COMMIT, INVALID_COMMIT_OFFSET_SIZE, Report, "not retried"),
    otherwise(COMMIT, Report, "not retried; a partition missing from the answer counts as UNKNOWN_SERVER_ERROR"),

    // OffsetFetch, the group's code and each partition's.
    on(FETCH, NONE, Apply, "T50, T52: -1 is nothing committed"),
    on(FETCH, COORDINATOR_LOAD_IN_PROGRESS, Backoff, "T53b"),
    on(FETCH, UNSTABLE_OFFSET_COMMIT, Backoff, "T51: pending transactional offsets"),
    on(FETCH, NOT_COORDINATOR, Rediscover, "T53c"),
    on(FETCH, COORDINATOR_NOT_AVAILABLE, Rediscover, "T53a, deliberate deviation: Java 3.6 stops (KAFKA-17279)"),
    on(FETCH, REQUEST_TIMED_OUT, Rediscover, ""),
    on(FETCH, GROUP_AUTHORIZATION_FAILED, Fatal, "the lookup is reported rejected too (Java throws it from poll)"),
    on(FETCH, TOPIC_AUTHORIZATION_FAILED, Report, "the lookup ends rejected"),
    otherwise(FETCH, Backoff, "a failed lookup is never nothing committed: retried until default.api.timeout.ms"),

    // ConsumerGroupHeartbeat (KIP-848): join (epoch 0), heartbeat, acknowledge. Its leave
    // (epoch -1, -2) is best effort, read with LeaveGroup's rows.
    on(CONSUMER_HEARTBEAT, NONE, Apply, "K01, K03: the epoch and assignment are taken, the interval is the broker's"),
    on(CONSUMER_HEARTBEAT, FENCED_MEMBER_EPOCH, ResetGeneration, "K02: partitions lost, rejoin with epoch 0 and the same member id"),
    on(CONSUMER_HEARTBEAT, UNKNOWN_MEMBER_ID, ResetGeneration, "K02, K06: as fenced; the member keeps the id it chose (KIP-1082)"),
    on(CONSUMER_HEARTBEAT, COORDINATOR_NOT_AVAILABLE, Rediscover, "member id and epoch kept"),
    on(CONSUMER_HEARTBEAT, NOT_COORDINATOR, Rediscover, "member id and epoch kept"),
    on(CONSUMER_HEARTBEAT, COORDINATOR_LOAD_IN_PROGRESS, Backoff, "the same coordinator"),
    on(CONSUMER_HEARTBEAT, UNRELEASED_INSTANCE_ID, Fatal, "K07: another process holds the instance id"),
    on(CONSUMER_HEARTBEAT, FENCED_INSTANCE_ID, Fatal, "another process took the instance id"),
    on(CONSUMER_HEARTBEAT, UNSUPPORTED_ASSIGNOR, Fatal, "group.remote.assignor names no assignor of the broker"),
    on(CONSUMER_HEARTBEAT, INVALID_REQUEST, Fatal, "K01: a request the broker cannot take will not improve"),
    on(CONSUMER_HEARTBEAT, UNSUPPORTED_VERSION, Fatal, "the broker does not run the consumer protocol"),
    on(CONSUMER_HEARTBEAT, GROUP_MAX_SIZE_REACHED, Fatal, ""),
    on(CONSUMER_HEARTBEAT, GROUP_AUTHORIZATION_FAILED, Fatal, ""),
    on(CONSUMER_HEARTBEAT, TOPIC_AUTHORIZATION_FAILED, Fatal, "a subscribed topic the member may not read"),
    on(CONSUMER_HEARTBEAT, INCONSISTENT_GROUP_PROTOCOL, Fatal, "a classic group the broker will not convert"),
    on(CONSUMER_HEARTBEAT, INVALID_REGULAR_EXPRESSION, Fatal, "a pattern the broker's RE2J does not take"),
    otherwise(CONSUMER_HEARTBEAT, Backoff, "retriable: the same request again after the backoff"),
];

/// What the member does about `code` answered to `api` (see [`reaction_if`]).
pub(super) fn reaction(api: ApiKey, code: i16) -> Reaction {
    reaction_if(api, code, Standing::Current)
}

/// What the member does about `code` answered to `api` when its standing is `standing`: the row
/// for the code and standing, else the row for the code, else the API's `otherwise` row.
pub(super) fn reaction_if(api: ApiKey, code: i16, standing: Standing) -> Reaction {
    let row = |wanted: Key| TABLE.iter().find(|row| row.key == wanted);
    let found = row(Key { api, code: Some(code), standing: Some(standing) })
        .or_else(|| row(Key { api, code: Some(code), standing: None }))
        .or_else(|| row(Key { api, code: None, standing: None }));
    // Every API the machine sends has an `otherwise` row (a test checks).
    let Some(Row { reaction, cases, .. }) = found else {
        return Reaction::Fatal;
    };
    tracing::trace!(api = ?api, code = %KafkaCode(code), ?reaction, cases, ?standing, "reaction");
    match (standing, *reaction) {
        // Kafka refuses a commit without generation while the group has members
        // (UNKNOWN_MEMBER_ID; T44a): the application is told, no membership changes.
        (Standing::Unmanaged, Rejoin | ResetGeneration | ResetMemberId | Ignore) => Report,
        (_, reaction) => reaction,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_api_has_one_otherwise_row_and_no_key_has_two_rows() {
        for (i, row) in TABLE.iter().enumerate() {
            assert!(!TABLE[..i].iter().any(|r| r.key == row.key), "{:?} has two rows", row.key);
            // A code split by standing has a row for each standing, and none for either.
            let Key { api, code, .. } = row.key;
            let rows = |standing| TABLE.iter().filter(|r| r.key == Key { api, code, standing }).count();
            if code.is_some() && rows(Some(Standing::Current)) + rows(Some(Standing::MovedOn)) > 0 {
                assert_eq!(
                    (rows(None), rows(Some(Standing::Current)), rows(Some(Standing::MovedOn))),
                    (0, 1, 1),
                    "{api:?} {code:?}"
                );
            }
        }
        for api in [FIND, JOIN, SYNC, HEARTBEAT, LEAVE, COMMIT, FETCH, CONSUMER_HEARTBEAT] {
            let otherwise = TABLE.iter().filter(|r| r.key == Key { api, code: None, standing: None }).count();
            assert_eq!(otherwise, 1, "{api:?}");
        }
    }
}
