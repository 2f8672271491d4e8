//! The scripted coordinator served over loopback TCP, driven by kgroup's own connection and
//! cluster code.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::{
    ApiKey, DescribeGroupsRequest, GroupId, HeartbeatRequest, JoinGroupRequest, OffsetCommitRequest,
    OffsetCommitResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kgroup::driver::cluster::{BrokerInfo, CoordinatorInfo};
use kgroup::driver::connection::{Connection, ConnectionConfig};
use kgroup::driver::group::{GroupHandle, RevokeMode};
use kgroup::error::DisconnectCause;
use kgroup::group::GroupConfig;
use kgroup::group::StateKind;
use kgroup::{Cluster, ClusterConfig, Error, NetworkError};
use kgroup_protocol_tests::coordinator::errors::*;
use kgroup_protocol_tests::coordinator::{ConnId, CoordinatorConfig, Fault, FaultAction, Node};
use kgroup_protocol_tests::server::CoordinatorServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const RT: Duration = Duration::from_secs(5);

/// Every test runs under this bound.
async fn bounded<F: Future<Output = ()>>(test: F) {
    tokio::time::timeout(Duration::from_secs(20), test).await.expect("test timed out");
}

fn config() -> CoordinatorConfig {
    let mut config = CoordinatorConfig::default();
    config.topics.insert("t".to_owned(), 2);
    config.initial_rebalance_delay = Duration::ZERO;
    config
}

async fn open(server: &CoordinatorServer) -> Connection {
    Connection::open(&server.bootstrap(), Arc::new(ConnectionConfig::default())).await.expect("connect and handshake")
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

fn join(member: &str) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(s(member))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(s("range"))
            .with_metadata(Bytes::from_static(b"\x00\x01"))])
}

fn heartbeat(generation: i32, member: &str) -> HeartbeatRequest {
    HeartbeatRequest::default().with_group_id(GroupId(s("g"))).with_generation_id(generation).with_member_id(s(member))
}

fn commit(generation: i32, member: &str, partitions: &[(i32, i64)]) -> OffsetCommitRequest {
    OffsetCommitRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(s(member))
        .with_topics(vec![OffsetCommitRequestTopic::default().with_name(TopicName(s("t"))).with_partitions(
            partitions
                .iter()
                .map(|&(p, offset)| {
                    OffsetCommitRequestPartition::default().with_partition_index(p).with_committed_offset(offset)
                })
                .collect(),
        )])
}

fn commit_codes(r: &OffsetCommitResponse) -> Vec<(String, i32, i16)> {
    r.topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| (t.name.to_string(), p.partition_index, p.error_code)))
        .collect()
}

#[tokio::test]
async fn kgroup_connection_handshakes_and_negotiates_the_coordinator_versions() {
    bounded(async {
        let server = CoordinatorServer::start(config()).await.unwrap();
        assert!(server.bootstrap().starts_with("127.0.0.1:"));
        let conn = open(&server).await;
        assert_eq!(conn.version(ApiKey::JoinGroup).unwrap(), 9);
        assert_eq!(conn.version(ApiKey::OffsetCommit).unwrap(), 8);
        // min(kgroup's ceiling, the advertised Kafka 3.6 ceiling) for every API kgroup sends.
        let negotiated: Vec<(ApiKey, i16)> = conn.versions().iter().collect();
        assert_eq!(
            negotiated,
            vec![
                (ApiKey::Produce, 9),
                (ApiKey::Fetch, 12),
                (ApiKey::ListOffsets, 8),
                (ApiKey::Metadata, 12),
                (ApiKey::OffsetCommit, 8),
                (ApiKey::OffsetFetch, 8),
                (ApiKey::FindCoordinator, 4),
                (ApiKey::JoinGroup, 9),
                (ApiKey::Heartbeat, 4),
                (ApiKey::LeaveGroup, 5),
                (ApiKey::SyncGroup, 5),
                (ApiKey::DescribeGroups, 5),
                (ApiKey::ListGroups, 4),
                (ApiKey::ApiVersions, 3),
                (ApiKey::CreateTopics, 7),
            ]
        );
        // A flexible request and response (DescribeGroups v5, header v2/v1) round-trip too.
        let described = conn.send(&DescribeGroupsRequest::default().with_groups(vec![GroupId(s("g"))])).await.unwrap();
        assert_eq!(described.groups.len(), 1);
        assert_eq!(described.groups[0].group_id.as_str(), "g");
        assert_eq!(described.groups[0].group_state.as_str(), "Dead");
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn cluster_finds_this_server_as_the_coordinator() {
    bounded(async {
        let mut config = config();
        config.node_id = 7;
        let server = CoordinatorServer::start(config).await.unwrap();
        assert_eq!(server.node_id(), 7);
        let cluster = Cluster::connect(ClusterConfig::new([server.bootstrap()])).await.unwrap();
        let metadata = cluster.metadata();
        assert_eq!(metadata.cluster_id.as_deref(), Some("kgroup-scripted"));
        assert_eq!(
            metadata.brokers.values().cloned().collect::<Vec<_>>(),
            vec![BrokerInfo { node_id: 7, host: "127.0.0.1".to_owned(), port: i32::from(server.port()), rack: None }]
        );
        let coordinator = cluster.find_coordinator("g").await.unwrap();
        assert_eq!(
            coordinator,
            CoordinatorInfo { node_id: 7, host: "127.0.0.1".to_owned(), port: i32::from(server.port()) }
        );
        assert_eq!(coordinator.addr(), server.bootstrap());
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn two_step_join_over_tcp_elects_the_only_member_leader_of_generation_one() {
    bounded(async {
        let server = CoordinatorServer::start(config()).await.unwrap();
        let conn = open(&server).await;

        let first = conn.send_at(&join(""), 9, RT).await.unwrap();
        assert_eq!(first.error_code, MEMBER_ID_REQUIRED);
        assert_eq!(first.generation_id, -1);
        let member = first.member_id.to_string();
        // Dynamic member ids are "<client.id>-<uuid>": the header's client id reached the model.
        assert!(member.starts_with("kgroup-") && member.len() == "kgroup-".len() + 36, "{member}");
        let pending = server.describe("g").await.expect("group created");
        assert_eq!((pending.state, pending.pending_members.clone()), ("Empty", vec![member.clone()]));

        let second = conn.send_at(&join(&member), 9, RT).await.unwrap();
        assert_eq!(second.error_code, NONE);
        assert_eq!(second.generation_id, 1);
        assert_eq!(second.member_id.as_str(), member);
        assert_eq!(second.leader.as_str(), member);
        assert_eq!(second.protocol_type.as_ref().map(|p| p.as_str()), Some("consumer"));
        assert_eq!(second.protocol_name.as_ref().map(|p| p.as_str()), Some("range"));
        assert_eq!(second.members.len(), 1);
        assert_eq!(second.members[0].member_id.as_str(), member);
        assert_eq!(second.members[0].metadata, Bytes::from_static(b"\x00\x01"));

        let view = server.describe("g").await.expect("group exists");
        assert_eq!(view.state, "CompletingRebalance");
        assert_eq!(view.generation, 1);
        assert_eq!(view.leader.as_deref(), Some(member.as_str()));
        assert_eq!(view.protocol.as_deref(), Some("range"));
        assert_eq!(view.members.iter().map(|m| m.member_id.as_str()).collect::<Vec<_>>(), vec![member.as_str()]);
        assert!(view.pending_members.is_empty());
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_heartbeat_pipelined_behind_a_parked_join_is_answered_after_it() {
    bounded(async {
        let server = CoordinatorServer::start(config()).await.unwrap();
        // Opened one after the other: ConnId(1) and ConnId(2).
        let (a, b) = (open(&server).await, open(&server).await);
        let a_id = a.send_at(&join(""), 9, RT).await.unwrap().member_id.to_string();
        assert_eq!(a.send_at(&join(&a_id), 9, RT).await.unwrap().generation_id, 1);
        // B joins generation 2 together with A.
        let b_id = b.send_at(&join(""), 9, RT).await.unwrap().member_id.to_string();
        let b_join = tokio::spawn(b.start_request(&join(&b_id), 9, RT).unwrap());
        while server.describe("g").await.unwrap().state != "PreparingRebalance" {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(a.send_at(&join(&a_id), 9, RT).await.unwrap().generation_id, 2);
        assert_eq!(b_join.await.unwrap().unwrap().generation_id, 2);

        // A rejoins with new metadata: its join parks until B rejoins too. A heartbeat for the
        // coming generation goes out right behind it on the same connection.
        let rejoin = join(&a_id).with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(s("range"))
            .with_metadata(Bytes::from_static(b"\x00\x02"))]);
        let join_task = tokio::spawn(a.start_request(&rejoin, 9, RT).unwrap());
        let heartbeat_task = tokio::spawn(a.start_request(&heartbeat(3, &a_id), 4, RT).unwrap());
        // Until the server holds the heartbeat queued behind the unanswered join.
        while server.with(|c, _| c.queued_requests(ConnId(1))).await == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let state = server.with(|c, _| (c.is_muted(ConnId(1)), c.queued_requests(ConnId(1)))).await;
        assert_eq!(state, (true, 1));
        assert!(!join_task.is_finished());
        assert!(!heartbeat_task.is_finished(), "the heartbeat was answered while the join was parked");
        let view = server.describe("g").await.unwrap();
        assert_eq!((view.state, view.generation), ("PreparingRebalance", 2));

        // B's rejoin completes generation 3; then A's join is answered, then the heartbeat.
        let b_joined = b.send_at(&join(&b_id), 9, RT).await.unwrap();
        assert_eq!((b_joined.error_code, b_joined.generation_id), (NONE, 3));
        let joined = join_task.await.unwrap().unwrap();
        assert_eq!((joined.error_code, joined.generation_id), (NONE, 3));
        assert_eq!(joined.leader.as_str(), a_id);
        assert_eq!(joined.members.len(), 2);
        // Judged after the join completed: generation 3 is current and the group is
        // CompletingRebalance, so NONE. Judged while the join was parked it would have got
        // ILLEGAL_GENERATION (generation 2 was current).
        let beat = heartbeat_task.await.unwrap().unwrap();
        assert_eq!(beat.error_code, NONE);
        let state = server.with(|c, _| (c.is_muted(ConnId(1)), c.queued_requests(ConnId(1)))).await;
        assert_eq!(state, (false, 0));
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn an_injected_cut_fails_the_in_flight_request_with_disconnected() {
    bounded(async {
        let server = CoordinatorServer::start(config()).await.unwrap();
        let conn = open(&server).await;
        server.inject(Fault::new(ApiKey::Heartbeat, FaultAction::Cut).once()).await;

        let err = conn.send_at(&heartbeat(1, "m"), 4, RT).await.unwrap_err();
        match &err {
            Error::Network(NetworkError::Disconnected { addr, cause }) => {
                assert_eq!(addr, &server.bootstrap());
                assert!(matches!(**cause, DisconnectCause::ClosedByBroker), "{cause:?}");
            }
            other => panic!("expected Disconnected, got {other:?}"),
        }
        assert!(conn.is_broken());

        // The fault was used up; a new connection is served normally (no such group).
        let conn = open(&server).await;
        let beat = conn.send_at(&heartbeat(1, "m"), 4, RT).await.unwrap();
        assert_eq!(beat.error_code, UNKNOWN_MEMBER_ID);
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn an_injected_not_coordinator_error_comes_back_on_every_commit_partition() {
    bounded(async {
        let server = CoordinatorServer::start(config()).await.unwrap();
        let conn = open(&server).await;
        server.inject(Fault::new(ApiKey::OffsetCommit, FaultAction::Error(NOT_COORDINATOR)).once()).await;

        let refused = conn.send_at(&commit(-1, "", &[(0, 10), (1, 20)]), 8, RT).await.unwrap();
        assert_eq!(
            commit_codes(&refused),
            vec![("t".to_owned(), 0, NOT_COORDINATOR), ("t".to_owned(), 1, NOT_COORDINATOR)]
        );
        assert!(server.accepted_commits().await.is_empty());
        assert_eq!(server.committed("g", "t", 0).await, None);

        // Without the fault the same standalone commit is accepted.
        let accepted = conn.send_at(&commit(-1, "", &[(0, 10), (1, 20)]), 8, RT).await.unwrap();
        assert_eq!(commit_codes(&accepted), vec![("t".to_owned(), 0, NONE), ("t".to_owned(), 1, NONE)]);
        assert_eq!(server.committed("g", "t", 0).await, Some(10));
        assert_eq!(server.committed("g", "t", 1).await, Some(20));
        let records: Vec<(String, i32, i64)> =
            server.accepted_commits().await.into_iter().map(|r| (r.topic, r.partition, r.offset)).collect();
        assert_eq!(records, vec![("t".to_owned(), 0, 10), ("t".to_owned(), 1, 20)]);
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn bad_frames_close_only_their_connection_and_shutdown_closes_the_rest() {
    bounded(async {
        let server = CoordinatorServer::start(config()).await.unwrap();
        let conn = open(&server).await;

        // An unknown API key, then a size above 100 MiB: each closes its connection.
        for frame in [&[0, 0, 0, 4, 0x7f, 0x7f, 0, 0][..], &(200 * 1024 * 1024i32).to_be_bytes()[..]] {
            let mut raw = TcpStream::connect(server.addr()).await.unwrap();
            raw.write_all(frame).await.unwrap();
            let mut buf = [0u8; 16];
            let read = raw.read(&mut buf).await;
            assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        }

        // The well-behaved connection is unaffected.
        let beat = conn.send_at(&heartbeat(1, "m"), 4, RT).await.unwrap();
        assert_eq!(beat.error_code, UNKNOWN_MEMBER_ID);

        let addr = server.addr();
        server.shutdown().await;
        let err = conn.send_at(&heartbeat(1, "m"), 4, RT).await.unwrap_err();
        assert!(matches!(err, Error::Network(NetworkError::Disconnected { .. })), "{err:?}");
        assert!(TcpStream::connect(addr).await.is_err(), "the listener is closed");
    })
    .await;
}

#[tokio::test]
async fn dropping_the_server_closes_its_connections_and_listener() {
    bounded(async {
        let server = CoordinatorServer::start(config()).await.unwrap();
        let conn = open(&server).await;
        let addr = server.addr();
        drop(server);
        // The aborted task's sockets close promptly; the in-flight request sees it.
        let err = conn.send_at(&heartbeat(1, "m"), 4, RT).await.unwrap_err();
        assert!(matches!(err, Error::Network(NetworkError::Disconnected { .. })), "{err:?}");
        assert!(TcpStream::connect(addr).await.is_err(), "the listener is closed");
    })
    .await;
}

/// FindCoordinator has an overall bound (issue 13, item 6): the coordinator it names accepts
/// connections and never answers, and connection timeouts are an hour, so only the lookup's
/// own request timeout (500 ms) ends the attempt; the member then looks the coordinator up
/// again, and joins once this server coordinates.
#[tokio::test]
async fn a_coordinator_that_never_answers_ends_the_lookup_at_its_request_timeout() {
    bounded(async {
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut config = config();
        let port = i32::from(silent.local_addr().unwrap().port());
        config.coordinator = Some(Node { id: 1, host: "127.0.0.1".to_owned(), port });
        let server = CoordinatorServer::start(config).await.unwrap();
        let mut cluster = ClusterConfig::new([server.bootstrap()]);
        cluster.connection.connect_timeout = Duration::from_secs(3600);
        cluster.connection.request_timeout = Duration::from_secs(3600);
        let cluster = Cluster::connect(cluster).await.unwrap();
        let mut group = GroupConfig::new("g");
        group.request_timeout = Duration::from_millis(500);
        let member = GroupHandle::start(cluster, group, vec!["t".to_owned()], RevokeMode::Automatic).await.unwrap();

        while member.group_state().await.unwrap().counters.coordinator_lookups < 3 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(member.group_state().await.unwrap().state, StateKind::AwaitingJoin, "no coordinator reached");
        server.set_loading(false).await;
        while member.group_state().await.unwrap().state != StateKind::Stable {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        member.leave("done").await.unwrap();
        server.shutdown().await;
    })
    .await;
}
