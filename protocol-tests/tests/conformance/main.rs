//! Protocol conformance suite (spec §12): every implemented case runs against every peer (the
//! scripted coordinator, an embedded nisshi, librdkafka's mock cluster, and Apache Kafka 3.6,
//! which the suite starts from its Maven jars unless `KGROUP_KAFKA36_BOOTSTRAP` names a cluster
//! or, with the `kafka36-container` feature, `KGROUP_KAFKA36_CONTAINER=1` starts a container),
//! over kgroup's own `Connection`, one connection per simulated member. A case renders the broker's answers as one line and is judged against the
//! Kafka 3.6 expectation written next to it, or against the peer's row in `deviations.tsv`.
//! `conformance_matrix` prints the case × peer matrix and checks the README shows it.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use container::Kafka36Container;
use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_fetch_request::{OffsetFetchRequestGroup, OffsetFetchRequestTopics};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, DescribeGroupsRequest, FindCoordinatorRequest, GroupId, HeartbeatRequest,
    JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, OffsetCommitRequest, OffsetFetchRequest, SyncGroupRequest,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kgroup::driver::connection::{Connection, ConnectionConfig};
use kgroup::embedded::kafka36::{Kafka36Cluster, Kafka36Options};
use kgroup::embedded::{BrokerOptions, EmbeddedBroker};
use kgroup::{Cluster, ClusterConfig};
use kgroup_integration::mock::MockKafka;
use kgroup_integration::unique_name;
#[cfg(feature = "kafka36-container")]
use kgroup_protocol_tests::conformance::container;
use kgroup_protocol_tests::conformance::kafka36::{container_requested, CONTAINER_ENV};
use kgroup_protocol_tests::conformance::{
    case_selected, error_name as e, judge, readme_matrix, render_matrix, select_peers, Deviation, DeviationTable,
    PeerKind, Verdict, CASES_ENV, KAFKA36_ENV, PEERS_ENV,
};
use kgroup_protocol_tests::coordinator::{CoordinatorConfig, Node};
use kgroup_protocol_tests::server::CoordinatorServer;

/// Bound on any single request.
const REQ: Duration = Duration::from_secs(15);
/// Bound on one case.
const CASE_BOUND: Duration = Duration::from_secs(40);
/// Time for a request sent on one connection to reach the broker before one on another, where
/// the broker cannot show that it arrived (see [`Ctx::settled`]).
const SETTLE: Duration = Duration::from_millis(300);
/// Bound on waiting for the broker to show that a request arrived.
const ARRIVAL: Duration = Duration::from_secs(10);
/// The member metadata of every JoinGroup: a ConsumerProtocol subscription (v0, topic "t").
/// Kafka parses the subscriptions of a "consumer" group when a join completes, and 3.6 fails the
/// completion (every parked JoinGroup unanswered until its rebalance timeout) on bytes whose
/// topic count is out of bounds: `GroupMetadata.computeSubscribedTopics` catches only
/// `SchemaException`, not the "Tried to allocate a collection" `RuntimeException`.
const SUBSCRIPTION: &[u8] = b"\x00\x00\x00\x00\x00\x01\x00\x01t\xff\xff\xff\xff";
/// The same subscription with user data "changed": different metadata (T11).
const SUBSCRIPTION_CHANGED: &[u8] = b"\x00\x00\x00\x00\x00\x01\x00\x01t\x00\x00\x00\x07changed";
const SESSION: i32 = 10_000;
const RT: i32 = 10_000;
const CLIENT_ID: &str = "conf";

// ---------------------------------------------------------------------------------------------
// Peers

enum Guard {
    Scripted(#[allow(dead_code)] Vec<CoordinatorServer>),
    Nisshi(#[allow(dead_code)] EmbeddedBroker),
    Mock(MockKafka),
    Kafka36(Kafka36Cluster),
    External,
}

struct Peer {
    kind: PeerKind,
    bootstrap: String,
    /// A broker that does not coordinate the case's group (only for [`Needs::second_broker`];
    /// on a Kafka cluster the case's placement picks it per group).
    other: Option<String>,
    topic: String,
    join_v: i16,
    sync_v: i16,
    guard: Guard,
}

/// The broker a case needs. Most cases share one peer per kind ([`SHARED`]); cases that need
/// other settings or a second broker share a peer per distinct need, started before the kind's
/// cases run and stopped with them. A peer without such a setting (nisshi has no
/// `group.max.size`, the mock a fixed 3 s initial delay) runs the case with its own behaviour,
/// which its `deviations.tsv` row records; a second broker it cannot provide is an error. An
/// external Kafka cluster is as configured: it runs only the [`SHARED`] cases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Needs {
    /// `group.initial.rebalance.delay.ms`.
    initial_rebalance_delay: Duration,
    /// `group.max.size` (`None`: Kafka's default).
    max_group_size: Option<usize>,
    /// A second broker, in [`Peer::other`].
    second_broker: bool,
}

/// The shared peer: delay 0, min session 1000 ms (spec §12's suggested test config), one broker.
const SHARED: Needs = Needs { initial_rebalance_delay: Duration::ZERO, max_group_size: None, second_broker: false };

async fn start_peer(kind: PeerKind, needs: Needs) -> Res<Peer> {
    let topic = unique_name("conf-t");
    let mut other = None;
    let (bootstrap, guard, join_v, sync_v) = match &kind {
        PeerKind::Scripted => {
            let mut config = CoordinatorConfig {
                initial_rebalance_delay: needs.initial_rebalance_delay,
                min_session_timeout: Duration::from_millis(1000),
                ..Default::default()
            };
            if let Some(max) = needs.max_group_size {
                config.max_group_size = max;
            }
            config.topics.insert(topic.clone(), 2);
            let server = CoordinatorServer::start(config.clone()).await.map_err(err)?;
            let mut servers = vec![];
            if needs.second_broker {
                let coordinator =
                    Node { id: server.node_id(), host: server.addr().ip().to_string(), port: server.port().into() };
                config.node_id = server.node_id() + 1;
                config.coordinator = Some(coordinator);
                let second = CoordinatorServer::start(config).await.map_err(err)?;
                other = Some(second.bootstrap());
                servers.push(second);
            }
            let bootstrap = server.bootstrap();
            servers.push(server);
            (bootstrap, Guard::Scripted(servers), 9, 5)
        }
        PeerKind::Nisshi => {
            if needs.second_broker {
                return Err("nisshi: no second broker".into());
            }
            let options =
                BrokerOptions { initial_rebalance_delay: needs.initial_rebalance_delay, ..Default::default() };
            let broker = EmbeddedBroker::start(options).await.map_err(|e| format!("embedded nisshi: {e}"))?;
            (broker.bootstrap(), Guard::Nisshi(broker), 9, 5)
        }
        PeerKind::Mock => {
            let mock = MockKafka::start(if needs.second_broker { 2 } else { 1 });
            mock.create_topic(&topic, 2).map_err(err)?;
            // Broker 1 is the first address; the case's group is placed on it (`place_group`).
            other = mock.broker_addrs().get(1).cloned();
            let bootstrap = mock.broker_addrs().first().cloned().ok_or("mock: no broker")?;
            (bootstrap, Guard::Mock(mock), 5, 3)
        }
        PeerKind::Kafka36(None) => {
            let options = Kafka36Options {
                nodes: if needs.second_broker { 3 } else { 1 },
                initial_rebalance_delay: needs.initial_rebalance_delay,
                min_session_timeout: Duration::from_millis(1000),
                max_group_size: needs.max_group_size,
                ..if needs.second_broker { Kafka36Options::three_nodes() } else { Kafka36Options::default() }
            };
            let kafka = Kafka36Cluster::start(options).await.map_err(|e| format!("Kafka 3.6: {e}"))?;
            (kafka.node_bootstrap(1).map_err(err)?, Guard::Kafka36(kafka), 9, 5)
        }
        PeerKind::Kafka36(Some(bootstrap)) => {
            if needs != SHARED {
                return Err("kafka36: an external cluster runs only the cases without settings of their own".into());
            }
            (bootstrap.clone(), Guard::External, 9, 5)
        }
    };
    if !matches!(guard, Guard::Scripted(_) | Guard::Mock(_)) {
        let cluster = Cluster::connect(ClusterConfig::new([bootstrap.clone()])).await.map_err(err)?;
        cluster.create_topic(&topic, 2, 1).await.map_err(err)?;
        cluster.wait_for_topic(&topic).await.map_err(err)?;
    }
    Ok(Peer { kind, bootstrap, other, topic, join_v, sync_v, guard })
}

/// Where a case's group lives: the broker that coordinates it and, for
/// [`Needs::second_broker`], one that does not.
struct Placement {
    bootstrap: String,
    other: Option<String>,
}

impl Peer {
    /// Where `group` is coordinated: the bootstrap broker, which the mock must be told (it
    /// hashes group names over its brokers); on a Kafka cluster, whichever node
    /// `offsets.topic.num.partitions` hashing gives the group, as FindCoordinator says.
    async fn place_group(&self, group: &str) -> Res<Placement> {
        match &self.guard {
            Guard::Mock(mock) if self.other.is_some() => mock.set_coordinator(group, 1).map_err(err)?,
            Guard::Kafka36(kafka) if kafka.node_ids().len() > 1 => {
                let cluster = Cluster::connect(ClusterConfig::from_bootstrap_servers(&kafka.bootstrap()).map_err(err)?)
                    .await
                    .map_err(err)?;
                let coordinator = cluster.find_coordinator(group).await.map_err(err)?;
                let other = kafka.node_ids().into_iter().find(|&id| id != coordinator.node_id).ok_or("one node")?;
                return Ok(Placement {
                    bootstrap: coordinator.addr(),
                    other: Some(kafka.node_bootstrap(other).map_err(err)?),
                });
            }
            _ => {}
        }
        Ok(Placement { bootstrap: self.bootstrap.clone(), other: self.other.clone() })
    }
}

// ---------------------------------------------------------------------------------------------
// Per-case context and wire helpers

type Res<T> = Result<T, String>;

#[derive(Clone)]
struct Ctx {
    peer: Arc<Peer>,
    /// The broker coordinating [`Ctx::group`], where the case's requests go.
    bootstrap: String,
    /// A broker that does not coordinate the group, for [`Needs::second_broker`].
    other: Option<String>,
    group: String,
    /// The session timeout of every JoinGroup the case sends.
    session_ms: i32,
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

fn err<E: std::fmt::Display>(x: E) -> String {
    format!("error: {x}")
}

/// `conf-<uuid>` / `i1-<uuid>`: how a generated member id is rendered.
fn id_shape(id: &str, prefix: &str) -> String {
    match id.strip_prefix(prefix).and_then(|rest| rest.strip_prefix('-')) {
        Some(rest) if rest.len() >= 20 => format!("{prefix}-<uuid>"),
        _ if id.is_empty() => "\"\"".to_owned(),
        _ if id.starts_with("0x") => "other(<ptr>)".to_owned(),
        _ => format!("other({id})"),
    }
}

#[derive(Clone)]
struct M {
    conn: Connection,
    id: String,
    gen: i32,
    instance: Option<String>,
}

impl Ctx {
    fn topic(&self) -> &str {
        &self.peer.topic
    }

    async fn conn(&self) -> Res<Connection> {
        let config = ConnectionConfig { client_id: CLIENT_ID.to_owned(), ..Default::default() };
        Connection::open(&self.bootstrap, Arc::new(config)).await.map_err(err)
    }

    fn join_req(&self, member: &str, instance: Option<&str>) -> JoinGroupRequest {
        self.join_req_in(&self.group, member, instance, SUBSCRIPTION)
    }

    fn join_req_in(&self, group: &str, member: &str, instance: Option<&str>, meta: &'static [u8]) -> JoinGroupRequest {
        JoinGroupRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_session_timeout_ms(self.session_ms)
            .with_rebalance_timeout_ms(RT)
            .with_member_id(s(member))
            .with_group_instance_id(instance.map(s))
            .with_protocol_type(s("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(s("range"))
                .with_metadata(Bytes::from_static(meta))])
    }

    async fn join(&self, conn: &Connection, req: &JoinGroupRequest) -> Res<JoinGroupResponse> {
        conn.send_at(req, self.peer.join_v, REQ).await.map_err(err)
    }

    /// Starts a JoinGroup that the broker parks; the task yields its response.
    fn join_parked(
        &self,
        conn: &Connection,
        req: &JoinGroupRequest,
    ) -> Res<tokio::task::JoinHandle<Res<JoinGroupResponse>>> {
        let fut = conn.start_request(req, self.peer.join_v, REQ).map_err(err)?;
        Ok(tokio::spawn(async move { fut.await.map_err(err) }))
    }

    /// A complete join: the first step, then (after MEMBER_ID_REQUIRED) the second, awaited.
    async fn join_member(&self, conn: &Connection, instance: Option<&str>) -> Res<JoinGroupResponse> {
        let first = self.join(conn, &self.join_req("", instance)).await?;
        if first.error_code != 79 {
            return Ok(first);
        }
        self.join(conn, &self.join_req(first.member_id.as_str(), instance)).await
    }

    /// The first step only, then the second step started and left parked.
    async fn join_member_parked(
        &self,
        conn: &Connection,
        instance: Option<&str>,
        meta: &'static [u8],
    ) -> Res<(String, tokio::task::JoinHandle<Res<JoinGroupResponse>>)> {
        let mut id = String::new();
        if instance.is_none() {
            let first = self.join(conn, &self.join_req("", None)).await?;
            if first.error_code != 79 {
                return Err(format!("first step: {}", e(first.error_code)));
            }
            id = first.member_id.to_string();
        }
        let before = self.state().await;
        let parked = self.join_parked(conn, &self.join_req_in(&self.group, &id, instance, meta))?;
        // Arrived: the member is listed, or (a peer that lists no instance ids) the group moved.
        self.settled(|g| {
            g.group_state.as_str() != before
                || g.members.iter().any(|m| match instance {
                    Some(instance) if id.is_empty() => m.group_instance_id.as_deref() == Some(instance),
                    _ => m.member_id.as_str() == id,
                })
        })
        .await;
        Ok((id, parked))
    }

    fn sync_req(&self, m: &M, gen: i32, assignments: &[(&str, &'static [u8])]) -> SyncGroupRequest {
        let mut req = SyncGroupRequest::default()
            .with_group_id(GroupId(s(&self.group)))
            .with_generation_id(gen)
            .with_member_id(s(&m.id))
            .with_group_instance_id(m.instance.as_deref().map(s))
            .with_assignments(
                assignments
                    .iter()
                    .map(|(id, a)| {
                        SyncGroupRequestAssignment::default()
                            .with_member_id(s(id))
                            .with_assignment(Bytes::from_static(a))
                    })
                    .collect(),
            );
        if self.peer.sync_v >= 5 {
            req = req.with_protocol_type(Some(s("consumer"))).with_protocol_name(Some(s("range")));
        }
        req
    }

    /// (error, assignment) of a SyncGroup.
    async fn sync(&self, m: &M, req: &SyncGroupRequest) -> Res<(i16, Bytes)> {
        let r = m.conn.send_at(req, self.peer.sync_v, REQ).await.map_err(err)?;
        Ok((r.error_code, r.assignment))
    }

    fn sync_parked(&self, m: &M, req: &SyncGroupRequest) -> Res<tokio::task::JoinHandle<Res<(i16, Bytes)>>> {
        let fut = m.conn.start_request(req, self.peer.sync_v, REQ).map_err(err)?;
        Ok(tokio::spawn(async move { fut.await.map(|r| (r.error_code, r.assignment)).map_err(err) }))
    }

    async fn hb(&self, m: &M, gen: i32) -> Res<i16> {
        let req = HeartbeatRequest::default()
            .with_group_id(GroupId(s(&self.group)))
            .with_generation_id(gen)
            .with_member_id(s(&m.id))
            .with_group_instance_id(m.instance.as_deref().map(s));
        let v = m.conn.version(ApiKey::Heartbeat).map_err(err)?.min(4);
        Ok(m.conn.send_at(&req, v, REQ).await.map_err(err)?.error_code)
    }

    /// LeaveGroup v5 (top-level error, per-member errors).
    async fn leave(&self, group: &str, members: &[(&str, Option<&str>)]) -> Res<String> {
        let conn = self.conn().await?;
        let req = LeaveGroupRequest::default().with_group_id(GroupId(s(group))).with_members(
            members
                .iter()
                .map(|(id, inst)| MemberIdentity::default().with_member_id(s(id)).with_group_instance_id(inst.map(s)))
                .collect(),
        );
        let r = conn.send_at(&req, 5, REQ).await.map_err(err)?;
        let per: Vec<String> = r.members.iter().map(|m| e(m.error_code)).collect();
        Ok(format!("top={} members=[{}]", e(r.error_code), per.join(",")))
    }

    /// Per-partition error names of an OffsetCommit v8, in partition order (Kafka answers
    /// partitions in an order of its own).
    #[allow(clippy::too_many_arguments)]
    async fn commit_in(
        &self,
        conn: &Connection,
        group: &str,
        gen: i32,
        member: &str,
        instance: Option<&str>,
        topic: &str,
        parts: &[(i32, i64, Option<String>)],
    ) -> Res<String> {
        let req = OffsetCommitRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_generation_id_or_member_epoch(gen)
            .with_member_id(s(member))
            .with_group_instance_id(instance.map(s))
            .with_topics(vec![OffsetCommitRequestTopic::default().with_name(TopicName(s(topic))).with_partitions(
                parts
                    .iter()
                    .map(|(p, o, meta)| {
                        OffsetCommitRequestPartition::default()
                            .with_partition_index(*p)
                            .with_committed_offset(*o)
                            .with_committed_metadata(meta.as_deref().map(s))
                    })
                    .collect(),
            )]);
        let v = conn.version(ApiKey::OffsetCommit).map_err(err)?.min(8);
        let r = conn.send_at(&req, v, REQ).await.map_err(err)?;
        let mut codes: Vec<(i32, i16)> =
            r.topics.iter().flat_map(|t| t.partitions.iter().map(|p| (p.partition_index, p.error_code))).collect();
        codes.sort_by_key(|(partition, _)| *partition);
        Ok(codes.into_iter().map(|(_, code)| e(code)).collect::<Vec<_>>().join(","))
    }

    async fn commit(&self, conn: &Connection, gen: i32, member: &str, instance: Option<&str>) -> Res<String> {
        self.commit_in(conn, &self.group, gen, member, instance, self.topic(), &[(0, 5, None), (1, 7, None)]).await
    }

    /// FindCoordinator for the case's group on `conn`: (error, port), the port rendered
    /// `bootstrap` when it is the bootstrap broker's.
    async fn find_coordinator(&self, conn: &Connection) -> Res<(i16, String)> {
        let v = conn.version(ApiKey::FindCoordinator).map_err(err)?;
        let (code, port) = if v >= 4 {
            let req = FindCoordinatorRequest::default().with_key_type(0).with_coordinator_keys(vec![s(&self.group)]);
            let r = conn.send_at(&req, v, REQ).await.map_err(err)?;
            let k = r.coordinators.first().ok_or("no coordinator entry")?;
            (k.error_code, k.port)
        } else {
            let r =
                conn.send_at(&FindCoordinatorRequest::default().with_key(s(&self.group)), v, REQ).await.map_err(err)?;
            (r.error_code, r.port)
        };
        let bootstrap_port = self.bootstrap.rsplit(':').next().unwrap_or("");
        Ok((code, if port.to_string() == bootstrap_port { "bootstrap".into() } else { port.to_string() }))
    }

    /// The same peer and session timeout, another group (for variants run side by side).
    fn sub(&self, suffix: &str) -> Arc<Ctx> {
        Arc::new(Ctx {
            peer: self.peer.clone(),
            bootstrap: self.bootstrap.clone(),
            other: self.other.clone(),
            group: format!("{}-{suffix}", self.group),
            session_ms: self.session_ms,
        })
    }

    /// The group state from DescribeGroups v5, or `?` when the peer cannot describe.
    async fn state_of(&self, group: &str) -> String {
        self.describe(group).await.map_or("?".into(), |g| g.group_state.to_string())
    }

    async fn describe(&self, group: &str) -> Option<DescribedGroup> {
        let conn = self.conn().await.ok()?;
        let req = DescribeGroupsRequest::default().with_groups(vec![GroupId(s(group))]);
        conn.send_at(&req, 5, REQ).await.ok()?.groups.into_iter().next()
    }

    /// Waits until DescribeGroups shows that a request sent on another connection has reached
    /// the broker (`arrived`), at most [`ARRIVAL`]: on a loaded machine a fixed pause is not
    /// enough for a JVM broker. A peer that cannot describe groups gets [`SETTLE`].
    async fn settled(&self, arrived: impl Fn(&DescribedGroup) -> bool) {
        let deadline = tokio::time::Instant::now() + ARRIVAL;
        loop {
            match self.describe(&self.group).await {
                None => return tokio::time::sleep(SETTLE).await,
                Some(g) if arrived(&g) => return,
                Some(_) if tokio::time::Instant::now() >= deadline => return,
                Some(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    async fn state(&self) -> String {
        self.state_of(&self.group).await
    }

    /// One member, joined and synced (leader, alone): Stable.
    async fn solo(&self, instance: Option<&str>) -> Res<M> {
        let conn = self.conn().await?;
        let r = self.join_member(&conn, instance).await?;
        if r.error_code != 0 {
            return Err(format!("solo join: {}", e(r.error_code)));
        }
        let m = M { conn, id: r.member_id.to_string(), gen: r.generation_id, instance: instance.map(str::to_owned) };
        let (code, _) = self.sync(&m, &self.sync_req(&m, m.gen, &[(&m.id, b"a")])).await?;
        if code != 0 {
            return Err(format!("solo sync: {}", e(code)));
        }
        Ok(m)
    }

    /// Leader A and follower B with their JoinGroup responses of the same generation; the
    /// leader has not synced (CompletingRebalance).
    async fn joined_pair(&self, instances: Option<(&str, &str)>) -> Res<(M, M)> {
        let mut a = self.solo(instances.map(|i| i.0)).await?;
        let b_conn = self.conn().await?;
        let b_inst = instances.map(|i| i.1);
        let (b_id, b_join) = self.join_member_parked(&b_conn, b_inst, SUBSCRIPTION).await?;
        let a_join = self.join_parked(&a.conn, &self.join_req(&a.id, a.instance.as_deref()))?;
        let ra = a_join.await.map_err(err)??;
        let rb = b_join.await.map_err(err)??;
        if ra.error_code != 0 || rb.error_code != 0 || ra.generation_id != rb.generation_id {
            return Err(format!("pair join: {} {}", e(ra.error_code), e(rb.error_code)));
        }
        if ra.leader.as_str() != a.id {
            return Err("pair join: A is not the leader".into());
        }
        a.gen = ra.generation_id;
        let b = M {
            conn: b_conn,
            id: if b_id.is_empty() { rb.member_id.to_string() } else { b_id },
            gen: rb.generation_id,
            instance: b_inst.map(str::to_owned),
        };
        Ok((a, b))
    }

    /// Leader A and follower B, Stable (A assigned `a`, B `b`).
    async fn pair(&self, instances: Option<(&str, &str)>) -> Res<(M, M)> {
        let (a, b) = self.joined_pair(instances).await?;
        let (ca, _) = self.sync(&a, &self.sync_req(&a, a.gen, &[(&a.id, b"a"), (&b.id, b"b")])).await?;
        let (cb, _) = self.sync(&b, &self.sync_req(&b, b.gen, &[])).await?;
        if ca != 0 || cb != 0 {
            return Err(format!("pair sync: {} {}", e(ca), e(cb)));
        }
        Ok((a, b))
    }

    /// A new dynamic member C whose second JoinGroup is parked (starts a rebalance).
    async fn newcomer(&self) -> Res<(M, tokio::task::JoinHandle<Res<JoinGroupResponse>>)> {
        let conn = self.conn().await?;
        let (id, parked) = self.join_member_parked(&conn, None, SUBSCRIPTION).await?;
        Ok((M { conn, id, gen: -1, instance: None }, parked))
    }
}

fn text(b: &Bytes) -> String {
    if b.is_empty() {
        "empty".into()
    } else {
        String::from_utf8_lossy(b).into_owned()
    }
}

// ---------------------------------------------------------------------------------------------
// Cases

type Fut = Pin<Box<dyn Future<Output = Res<String>> + Send>>;
type CaseFn = fn(Arc<Ctx>) -> Fut;

struct Case {
    id: &'static str,
    /// The Kafka 3.6 answer (spec §12), rendered as the case renders its observation.
    expected: &'static str,
    needs: Needs,
    run: CaseFn,
}

macro_rules! case {
    ($id:literal, $expected:expr, |$c:ident| $body:block) => {
        case!($id, SHARED, $expected, |$c| $body)
    };
    ($id:literal, $needs:expr, $expected:expr, |$c:ident| $body:block) => {
        Case {
            id: $id,
            expected: $expected,
            needs: $needs,
            run: |$c: Arc<Ctx>| -> Fut { Box::pin(async move { $body }) },
        }
    };
}

/// [F] cases: kgroup's group driver against injected answers.
mod reactions;
/// The remaining [R] cases: own broker settings, two brokers, slow timers, transactions.
mod replies;

/// Every implemented case, in id order.
fn cases() -> Vec<Case> {
    let mut all = core_cases();
    all.extend(replies::cases());
    all.extend(reactions::cases());
    all.sort_by_key(|c| c.id);
    all
}

fn core_cases() -> Vec<Case> {
    vec![
        case!("T01", "FindCoordinator=0-4 OffsetCommit=0-8 OffsetFetch=0-8 JoinGroup=0-9 Heartbeat=0-4 LeaveGroup=0-5 SyncGroup=0-5", |c| {
            let conn = c.conn().await?;
            let req = ApiVersionsRequest::default()
                .with_client_software_name(s("kgroup-conformance"))
                .with_client_software_version(s("1"));
            let r = conn.send_at(&req, 3, REQ).await.map_err(err)?;
            let apis = [
                (ApiKey::FindCoordinator, "FindCoordinator"),
                (ApiKey::OffsetCommit, "OffsetCommit"),
                (ApiKey::OffsetFetch, "OffsetFetch"),
                (ApiKey::JoinGroup, "JoinGroup"),
                (ApiKey::Heartbeat, "Heartbeat"),
                (ApiKey::LeaveGroup, "LeaveGroup"),
                (ApiKey::SyncGroup, "SyncGroup"),
            ];
            let parts: Vec<String> = apis
                .iter()
                .map(|(api, name)| match r.api_keys.iter().find(|k| k.api_key == *api as i16) {
                    Some(k) => format!("{name}={}-{}", k.min_version, k.max_version),
                    None => format!("{name}=absent"),
                })
                .collect();
            let head = if r.error_code == 0 { String::new() } else { format!("error={} ", e(r.error_code)) };
            Ok(format!("{head}{}", parts.join(" ")))
        }),
        case!("T02", "first=NONE|COORDINATOR_NOT_AVAILABLE final=NONE port=bootstrap", |c| {
            let conn = c.conn().await?;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
            let mut first = None;
            loop {
                let (code, port) = c.find_coordinator(&conn).await?;
                let first = *first.get_or_insert(code);
                let first = if first == 0 || first == 15 { "NONE|COORDINATOR_NOT_AVAILABLE".into() } else { e(first) };
                if code == 0 || tokio::time::Instant::now() > deadline {
                    return Ok(format!("first={first} final={} port={port}", e(code)));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }),
        case!("T04", "MEMBER_ID_REQUIRED id=conf-<uuid> gen=-1 leader=\"\" state=Empty", |c| {
            let conn = c.conn().await?;
            let r = c.join(&conn, &c.join_req("", None)).await?;
            Ok(format!(
                "{} id={} gen={} leader={} state={}",
                e(r.error_code),
                id_shape(&r.member_id, CLIENT_ID),
                r.generation_id,
                if !r.leader.is_empty() && r.leader == r.member_id { "self".to_string() } else { format!("{:?}", r.leader.as_str()) },
                c.state().await
            ))
        }),
        case!("T06", "v3: NONE gen=1 id=conf-<uuid>; static: NONE gen=1 id=i1-<uuid>", |c| {
            let conn = c.conn().await?;
            let a = conn.send_at(&c.join_req("", None), 3, REQ).await.map_err(err)?;
            let conn2 = c.conn().await?;
            let g2 = format!("{}-static", c.group);
            let b = c.join(&conn2, &c.join_req_in(&g2, "", Some("i1"), SUBSCRIPTION)).await?;
            Ok(format!(
                "v3: {} gen={} id={}; static: {} gen={} id={}",
                e(a.error_code),
                a.generation_id,
                id_shape(&a.member_id, CLIENT_ID),
                e(b.error_code),
                b.generation_id,
                id_shape(&b.member_id, "i1")
            ))
        }),
        case!("T07", "low=INVALID_SESSION_TIMEOUT/-1 high=INVALID_SESSION_TIMEOUT/-1 empty-group=INVALID_GROUP_ID/-1", |c| {
            let conn = c.conn().await?;
            let mut out = Vec::new();
            for (name, session, group) in
                [("low", 500, c.group.clone()), ("high", 1_800_001, c.group.clone()), ("empty-group", SESSION, String::new())]
            {
                let req = c.join_req_in(&group, "", None, SUBSCRIPTION).with_session_timeout_ms(session);
                let r = c.join(&conn, &req).await?;
                out.push(format!("{name}={}/{}", e(r.error_code), r.generation_id));
            }
            Ok(out.join(" "))
        }),
        case!("T08", "connect=INCONSISTENT_GROUP_PROTOCOL roundrobin=INCONSISTENT_GROUP_PROTOCOL", |c| {
            c.solo(None).await?;
            let conn = c.conn().await?;
            let connect = c.join(&conn, &c.join_req("", None).with_protocol_type(s("connect"))).await?;
            let rr = c
                .join(
                    &conn,
                    &c.join_req("", None).with_protocols(vec![JoinGroupRequestProtocol::default()
                        .with_name(s("roundrobin"))
                        .with_metadata(Bytes::from_static(SUBSCRIPTION))]),
                )
                .await?;
            Ok(format!("connect={} roundrobin={}", e(connect.error_code), e(rr.error_code)))
        }),
        case!("T09", "UNKNOWN_MEMBER_ID member=stale-id gen=-1", |c| {
            let conn = c.conn().await?;
            let r = c.join(&conn, &c.join_req("stale-id", None)).await?;
            Ok(format!("{} member={} gen={}", e(r.error_code), r.member_id.as_str(), r.generation_id))
        }),
        case!("T10", "NONE gen=N members=0 leader=L state=Stable", |c| {
            let (l, f) = c.pair(None).await?;
            let r = c.join(&f.conn, &c.join_req(&f.id, None)).await?;
            let gen = if r.generation_id == f.gen { "N".to_string() } else { r.generation_id.to_string() };
            let leader = if r.leader.as_str() == l.id { "L".to_string() } else { r.leader.to_string() };
            Ok(format!("{} gen={gen} members={} leader={leader} state={}", e(r.error_code), r.members.len(), c.state().await))
        }),
        case!("T11", "leader-rejoin: state=PreparingRebalance hb=REBALANCE_IN_PROGRESS gen=N+1,N+1; follower-changed: state=PreparingRebalance hb=REBALANCE_IN_PROGRESS gen=N+1,N+1", |c| {
            let mut out = Vec::new();
            for variant in ["leader-rejoin", "follower-changed"] {
                let c = c.sub(variant);
                let (l, f) = c.pair(None).await?;
                let (first, other, meta): (&M, &M, &'static [u8]) =
                    if variant == "leader-rejoin" { (&l, &f, SUBSCRIPTION) } else { (&f, &l, SUBSCRIPTION_CHANGED) };
                let parked = c.join_parked(&first.conn, &c.join_req_in(&c.group, &first.id, None, meta))?;
                c.settled(|g| g.group_state.as_str() != "Stable").await;
                let state = c.state().await;
                let hb = c.hb(other, other.gen).await?;
                let r2 = c.join(&other.conn, &c.join_req(&other.id, None)).await?;
                let r1 = parked.await.map_err(err)??;
                let g = |r: &JoinGroupResponse| {
                    if r.generation_id == l.gen + 1 { "N+1".to_string() } else { format!("{}:{}", e(r.error_code), r.generation_id) }
                };
                out.push(format!("{variant}: state={state} hb={} gen={},{}", e(hb), g(&r1), g(&r2)));
            }
            Ok(out.join("; "))
        }),
        case!("T13", "MEMBER_ID_REQUIRED state=Stable hb=NONE later=UNKNOWN_MEMBER_ID", |c| {
            let a = c.solo(None).await?;
            let conn = c.conn().await?;
            let first = c.join(&conn, &c.join_req("", None).with_session_timeout_ms(1000)).await?;
            let state = c.state().await;
            let hb = c.hb(&a, a.gen).await?;
            tokio::time::sleep(Duration::from_millis(2500)).await;
            let hb2 = c.hb(&a, a.gen).await?;
            if hb2 != 0 {
                return Ok(format!("{} state={state} hb={} A-hb-after-wait={}", e(first.error_code), e(hb), e(hb2)));
            }
            let req = c.join_req(&first.member_id, None).with_session_timeout_ms(1000);
            let later = match conn.send_at(&req, c.peer.join_v, Duration::from_secs(3)).await {
                Ok(r) => e(r.error_code),
                Err(_) => "parked".into(),
            };
            Ok(format!("{} state={state} hb={} later={later}", e(first.error_code), e(hb)))
        }),
        case!("T16", "follower-parked=true leader=NONE/a follower=NONE/b state=Stable", |c| {
            let (l, f) = c.joined_pair(None).await?;
            let fs = c.sync_parked(&f, &c.sync_req(&f, f.gen, &[]))?;
            tokio::time::sleep(SETTLE).await;
            let parked = !fs.is_finished();
            let (cl, al) = c.sync(&l, &c.sync_req(&l, l.gen, &[(&l.id, b"a"), (&f.id, b"b")])).await?;
            let (cf, af) = fs.await.map_err(err)??;
            Ok(format!(
                "follower-parked={parked} leader={}/{} follower={}/{} state={}",
                e(cl),
                text(&al),
                e(cf),
                text(&af),
                c.state().await
            ))
        }),
        case!("T17", "leader=NONE follower=NONE/empty", |c| {
            let (l, f) = c.joined_pair(None).await?;
            let (cl, _) = c.sync(&l, &c.sync_req(&l, l.gen, &[(&l.id, b"a")])).await?;
            let (cf, af) = c.sync(&f, &c.sync_req(&f, f.gen, &[])).await?;
            Ok(format!("leader={} follower={}/{}", e(cl), e(cf), text(&af)))
        }),
        case!("T18", "gen+1=ILLEGAL_GENERATION gen-1=ILLEGAL_GENERATION", |c| {
            let (l, _f) = c.joined_pair(None).await?;
            let (up, _) = c.sync(&l, &c.sync_req(&l, l.gen + 1, &[])).await?;
            let (down, _) = c.sync(&l, &c.sync_req(&l, l.gen - 1, &[])).await?;
            Ok(format!("gen+1={} gen-1={}", e(up), e(down)))
        }),
        case!("T19", "REBALANCE_IN_PROGRESS", |c| {
            let (_l, f) = c.pair(None).await?;
            let (_cm, _parked) = c.newcomer().await?;
            let (code, _) = c.sync(&f, &c.sync_req(&f, f.gen, &[])).await?;
            Ok(e(code))
        }),
        case!("T20", "parked-sync=REBALANCE_IN_PROGRESS state=PreparingRebalance", |c| {
            let (_l, f) = c.joined_pair(None).await?;
            let fs = c.sync_parked(&f, &c.sync_req(&f, f.gen, &[]))?;
            tokio::time::sleep(SETTLE).await;
            let (_cm, _parked) = c.newcomer().await?;
            let (code, _) = fs.await.map_err(err)??;
            Ok(format!("parked-sync={} state={}", e(code), c.state().await))
        }),
        case!("T23", "null-name=INCONSISTENT_GROUP_PROTOCOL other-name=INCONSISTENT_GROUP_PROTOCOL", |c| {
            let (l, _f) = c.joined_pair(None).await?;
            let (a, _) = c.sync(&l, &c.sync_req(&l, l.gen, &[]).with_protocol_name(None)).await?;
            let (b, _) = c.sync(&l, &c.sync_req(&l, l.gen, &[]).with_protocol_name(Some(s("roundrobin")))).await?;
            Ok(format!("null-name={} other-name={}", e(a), e(b)))
        }),
        case!("T24", "UNKNOWN_MEMBER_ID", |c| {
            let l = c.solo(None).await?;
            let stranger = M { id: "unknown-x".into(), ..l.clone() };
            let (code, _) = c.sync(&stranger, &c.sync_req(&stranger, l.gen, &[])).await?;
            Ok(e(code))
        }),
        case!("T26", "leader=NONE follower=NONE", |c| {
            let (l, f) = c.pair(None).await?;
            Ok(format!("leader={} follower={}", e(c.hb(&l, l.gen).await?), e(c.hb(&f, f.gen).await?)))
        }),
        case!("T27", "REBALANCE_IN_PROGRESS", |c| {
            let a = c.solo(None).await?;
            let (_b, _parked) = c.newcomer().await?;
            Ok(e(c.hb(&a, a.gen).await?))
        }),
        case!("T28", "leader=NONE follower=NONE state=CompletingRebalance", |c| {
            let (l, f) = c.joined_pair(None).await?;
            Ok(format!(
                "leader={} follower={} state={}",
                e(c.hb(&l, l.gen).await?),
                e(c.hb(&f, f.gen).await?),
                c.state().await
            ))
        }),
        case!("T30", "during=REBALANCE_IN_PROGRESS joined=NONE gen=N+1 after=UNKNOWN_MEMBER_ID", |c| {
            // Every member uses a 2 s rebalance timeout, so the join completes 2 s after Y joins.
            let conn = c.conn().await?;
            let short = |member: &str| c.join_req(member, None).with_rebalance_timeout_ms(2000);
            let first = c.join(&conn, &short("")).await?;
            let rx = c.join(&conn, &short(&first.member_id)).await?;
            let x = M { conn, id: rx.member_id.to_string(), gen: rx.generation_id, instance: None };
            c.sync(&x, &c.sync_req(&x, x.gen, &[(&x.id, b"a")])).await?;
            let yconn = c.conn().await?;
            let yfirst = c.join(&yconn, &short("")).await?;
            let y = c.join_parked(&yconn, &short(&yfirst.member_id))?;
            c.settled(|g| g.group_state.as_str() != "Stable").await;
            let during = c.hb(&x, x.gen).await?;
            let mut joined = None;
            for _ in 0..40 {
                tokio::time::sleep(Duration::from_millis(250)).await;
                // X keeps heartbeating (alive) but never rejoins.
                let _ = c.hb(&x, x.gen).await?;
                if y.is_finished() {
                    joined = Some(y.await.map_err(err)??);
                    break;
                }
            }
            let ry = joined.ok_or("Y's JoinGroup was never answered")?;
            let gen = if ry.generation_id == x.gen + 1 { "N+1".into() } else { ry.generation_id.to_string() };
            let after = c.hb(&x, x.gen).await?;
            Ok(format!("during={} joined={} gen={gen} after={}", e(during), e(ry.error_code), e(after)))
        }),
        case!("T34", "leave=top=NONE members=[NONE] hb=REBALANCE_IN_PROGRESS rejoin=NONE gen=N+1", |c| {
            let (l, f) = c.pair(None).await?;
            let leave = c.leave(&c.group, &[(&l.id, None)]).await?;
            let hb = c.hb(&f, f.gen).await?;
            let r = c.join(&f.conn, &c.join_req(&f.id, None)).await?;
            let gen = if r.generation_id == f.gen + 1 { "N+1".into() } else { r.generation_id.to_string() };
            Ok(format!("leave={leave} hb={} rejoin={} gen={gen}", e(hb), e(r.error_code)))
        }),
        case!("T35", "leave=top=NONE members=[NONE] state=Empty next-gen=N+2", |c| {
            let a = c.solo(None).await?;
            let leave = c.leave(&c.group, &[(&a.id, None)]).await?;
            let state = c.state().await;
            let conn = c.conn().await?;
            let r = c.join_member(&conn, None).await?;
            let gen = if r.generation_id == a.gen + 2 { "N+2".into() } else { r.generation_id.to_string() };
            Ok(format!("leave={leave} state={state} next-gen={gen}"))
        }),
        case!("T36", "unknown-member=top=NONE members=[UNKNOWN_MEMBER_ID] unknown-group=top=NONE members=[UNKNOWN_MEMBER_ID]", |c| {
            c.solo(None).await?;
            let a = c.leave(&c.group, &[("nobody", None)]).await?;
            let b = c.leave(&format!("{}-never", c.group), &[("nobody", None)]).await?;
            Ok(format!("unknown-member={a} unknown-group={b}"))
        }),
        case!("T37", "wrong-id=top=NONE members=[FENCED_INSTANCE_ID] by-instance=top=NONE members=[NONE] state=Empty", |c| {
            let _s = c.solo(Some("i")).await?;
            let wrong = c.leave(&c.group, &[("wrong", Some("i"))]).await?;
            let by_instance = c.leave(&c.group, &[("", Some("i"))]).await?;
            Ok(format!("wrong-id={wrong} by-instance={by_instance} state={}", c.state().await))
        }),
        case!("T39", "NONE,NONE", |c| {
            let (l, _f) = c.pair(None).await?;
            c.commit(&l.conn, l.gen, &l.id, None).await
        }),
        case!("T40", "NONE,NONE", |c| {
            let a = c.solo(None).await?;
            let (_b, _parked) = c.newcomer().await?;
            c.commit(&a.conn, a.gen, &a.id, None).await
        }),
        case!("T41", "REBALANCE_IN_PROGRESS,REBALANCE_IN_PROGRESS", |c| {
            let (l, _f) = c.joined_pair(None).await?;
            c.commit(&l.conn, l.gen, &l.id, None).await
        }),
        case!("T42", "ILLEGAL_GENERATION,ILLEGAL_GENERATION", |c| {
            let (l, _f) = c.joined_pair(None).await?;
            c.commit(&l.conn, l.gen - 1, &l.id, None).await
        }),
        case!("T43", "new-group=NONE,NONE state=Empty empty-group=NONE,NONE", |c| {
            let conn = c.conn().await?;
            let a = c.commit(&conn, -1, "", None).await?;
            let state = c.state().await;
            let c2 = c.sub("emptied");
            let m = c2.solo(None).await?;
            c2.leave(&c2.group, &[(&m.id, None)]).await?;
            let b = c2.commit(&conn, -1, "anything", Some("i")).await?;
            Ok(format!("new-group={a} state={state} empty-group={b}"))
        }),
        case!("T44", "no-member=UNKNOWN_MEMBER_ID,UNKNOWN_MEMBER_ID member=ILLEGAL_GENERATION,ILLEGAL_GENERATION", |c| {
            let m = c.solo(None).await?;
            let a = c.commit(&m.conn, -1, "", None).await?;
            let b = c.commit(&m.conn, -1, &m.id, None).await?;
            Ok(format!("no-member={a} member={b}"))
        }),
        case!("T45", "ILLEGAL_GENERATION,ILLEGAL_GENERATION", |c| {
            let conn = c.conn().await?;
            c.commit(&conn, 5, "x", None).await
        }),
        case!("T47", "OFFSET_METADATA_TOO_LARGE,NONE", |c| {
            let m = c.solo(None).await?;
            let parts = [(0, 1, Some("x".repeat(4097))), (1, 1, Some("ok".to_owned()))];
            c.commit_in(&m.conn, &c.group, m.gen, &m.id, None, c.topic(), &parts).await
        }),
        case!("T48", "UNKNOWN_TOPIC_OR_PARTITION", |c| {
            let conn = c.conn().await?;
            let nope = unique_name("nope");
            c.commit_in(&conn, &c.group, 7, "x", None, &nope, &[(0, 1, None)]).await
        }),
        case!("T50", "group=NONE 0:-1:\"\":NONE 1:-1:\"\":NONE", |c| {
            let conn = c.conn().await?;
            fetch(&c, &conn, Some(vec![0, 1]), true).await
        }),
        case!("T52", "state=PreparingRebalance explicit=group=NONE 0:5:\"m\":NONE 1:-1:\"\":NONE all=group=NONE 0:5:\"m\":NONE", |c| {
            let (l, _f) = c.pair(None).await?;
            c.commit_in(&l.conn, &c.group, l.gen, &l.id, None, c.topic(), &[(0, 5, Some("m".into()))]).await?;
            let (_cm, _parked) = c.newcomer().await?;
            let state = c.state().await;
            let conn = c.conn().await?;
            let explicit = fetch(&c, &conn, Some(vec![0, 1]), false).await?;
            let all = fetch(&c, &conn, None, false).await?;
            Ok(format!("state={state} explicit={explicit} all={all}"))
        }),
        case!("T54", "join=NONE gen=N id=i-F-<uuid> leader=L state=Stable old-hb=FENCED_INSTANCE_ID old-commit=FENCED_INSTANCE_ID,FENCED_INSTANCE_ID old-sync=FENCED_INSTANCE_ID new-sync=NONE/b", |c| {
            let (l, f) = c.pair(Some(("i-L", "i-F"))).await?;
            let conn = c.conn().await?;
            let r = c.join(&conn, &c.join_req("", Some("i-F"))).await?;
            let gen = if r.generation_id == f.gen { "N".into() } else { r.generation_id.to_string() };
            let leader = if r.leader.as_str() == l.id { "L".into() } else { r.leader.to_string() };
            let state = c.state().await;
            let old_hb = c.hb(&f, f.gen).await?;
            let old_commit = c.commit(&f.conn, f.gen, &f.id, Some("i-F")).await?;
            let (old_sync, _) = c.sync(&f, &c.sync_req(&f, f.gen, &[])).await?;
            let nf = M { conn, id: r.member_id.to_string(), gen: r.generation_id, instance: Some("i-F".into()) };
            let (new_sync, assignment) = c.sync(&nf, &c.sync_req(&nf, nf.gen, &[])).await?;
            Ok(format!(
                "join={} gen={gen} id={} leader={leader} state={state} old-hb={} old-commit={old_commit} old-sync={} new-sync={}/{}",
                e(r.error_code),
                id_shape(&r.member_id, "i-F"),
                e(old_hb),
                e(old_sync),
                e(new_sync),
                text(&assignment)
            ))
        }),
        case!("T55", "v9: NONE gen=N leader=self members=2 skip=true; v8: NONE gen=N leader=previous members=0", |c| {
            let (l, _f) = c.pair(Some(("i-L", "i-F"))).await?;
            let conn = c.conn().await?;
            let a = c.join(&conn, &c.join_req("", Some("i-L"))).await?;
            let conn2 = c.conn().await?;
            let b = conn2.send_at(&c.join_req("", Some("i-L")), 8, REQ).await.map_err(err)?;
            let gen = |g: i32| if g == l.gen { "N".to_string() } else { g.to_string() };
            let a_leader = if a.leader == a.member_id { "self".to_string() } else { a.leader.to_string() };
            let b_leader = if b.leader == a.member_id { "previous".to_string() } else { b.leader.to_string() };
            Ok(format!(
                "v9: {} gen={} leader={a_leader} members={} skip={}; v8: {} gen={} leader={b_leader} members={}",
                e(a.error_code),
                gen(a.generation_id),
                a.members.len(),
                a.skip_assignment,
                e(b.error_code),
                gen(b.generation_id),
                b.members.len()
            ))
        }),
        case!("T56", "other-instance=FENCED_INSTANCE_ID unknown-instance=UNKNOWN_MEMBER_ID", |c| {
            let (l, _f) = c.pair(Some(("i-L", "i-F"))).await?;
            let a = c.join(&l.conn, &c.join_req(&l.id, Some("i-F"))).await?;
            let b = c.join(&l.conn, &c.join_req(&l.id, Some("i-unknown"))).await?;
            Ok(format!("other-instance={} unknown-instance={}", e(a.error_code), e(b.error_code)))
        }),
    ]
}

/// OffsetFetch v8 for the case's group, rendered `group=E p:offset:"meta":E ...`.
async fn fetch(c: &Ctx, conn: &Connection, partitions: Option<Vec<i32>>, require_stable: bool) -> Res<String> {
    let topics = partitions.map(|p| {
        vec![OffsetFetchRequestTopics::default().with_name(TopicName(s(c.topic()))).with_partition_indexes(p)]
    });
    let req = OffsetFetchRequest::default()
        .with_groups(vec![OffsetFetchRequestGroup::default().with_group_id(GroupId(s(&c.group))).with_topics(topics)])
        .with_require_stable(require_stable);
    let r = conn.send_at(&req, 8, REQ).await.map_err(err)?;
    let g = r.groups.first().ok_or("no group in the response")?;
    let mut out = vec![format!("group={}", e(g.error_code))];
    for t in &g.topics {
        for p in &t.partitions {
            out.push(format!(
                "{}:{}:{:?}:{}",
                p.partition_index,
                p.committed_offset,
                p.metadata.as_deref().unwrap_or("<null>"),
                e(p.error_code)
            ));
        }
    }
    Ok(out.join(" "))
}

// ---------------------------------------------------------------------------------------------
// Running

fn deviation_table() -> DeviationTable {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deviations.tsv");
    let text = std::fs::read_to_string(path).expect("read deviations.tsv");
    DeviationTable::parse(&text).unwrap_or_else(|e| panic!("deviations.tsv: {e}"))
}

/// Runs `cases` against one peer, concurrently, and judges each. The peers of the cases that
/// need broker settings of their own (one per distinct [`Needs`]) are started first, together,
/// so that starting them (a JVM each for Kafka) neither counts against a case's bound nor
/// competes with cases that are running.
async fn run_peer(peer: Arc<Peer>, cases: &[Case], table: &DeviationTable) -> Vec<(String, Verdict)> {
    let name = peer.kind.name();
    let mut verdicts = Vec::new();
    let mut runnable = Vec::new();
    for case in cases {
        if let Some(Deviation::NotApplicable { .. }) = table.get(name, case.id) {
            verdicts.push((case.id.to_owned(), Verdict::NotApplicable));
        } else if case.needs != SHARED && matches!(peer.kind, PeerKind::Kafka36(Some(_))) {
            println!("kafka36 {}: n/a on an external cluster (the case needs broker settings of its own)", case.id);
            verdicts.push((case.id.to_owned(), Verdict::NotApplicable));
        } else {
            runnable.push(case);
        }
    }
    let mut distinct: Vec<Needs> = Vec::new();
    for case in &runnable {
        if case.needs != SHARED && !distinct.contains(&case.needs) {
            distinct.push(case.needs);
        }
    }
    let own: HashMap<Needs, Res<Arc<Peer>>> = futures_join_all(distinct.into_iter().map(|needs| {
        let kind = peer.kind.clone();
        async move { (needs, start_peer(kind, needs).await.map(Arc::new)) }
    }))
    .await
    .into_iter()
    .collect();
    let mut tasks = tokio::task::JoinSet::new();
    for case in runnable {
        let group = unique_name(&format!("conf-{}", case.id));
        let (id, expected, needs, run) = (case.id, case.expected, case.needs, case.run);
        let case_peer = if needs == SHARED { Ok(peer.clone()) } else { own[&needs].clone() };
        tasks.spawn(async move {
            let attempt = async {
                let peer = case_peer?;
                let Placement { bootstrap, other } = peer.place_group(&group).await?;
                run(Arc::new(Ctx { peer, bootstrap, other, group, session_ms: SESSION })).await
            };
            let observed = match tokio::time::timeout(CASE_BOUND, attempt).await {
                Ok(Ok(observed)) => observed,
                Ok(Err(error)) => error,
                Err(_) => format!("case timed out after {CASE_BOUND:?}"),
            };
            (id, expected, observed)
        });
    }
    while let Some(done) = tasks.join_next().await {
        let (id, expected, observed) = done.expect("case task panicked");
        let verdict = judge(table, name, id, expected, &observed);
        if let Verdict::Fail(why) = &verdict {
            eprintln!("{name} {id}: {why}");
        }
        verdicts.push((id.to_owned(), verdict));
    }
    verdicts
}

fn environment() -> HashMap<String, String> {
    std::env::vars().filter(|(k, _)| [KAFKA36_ENV, CONTAINER_ENV, PEERS_ENV, CASES_ENV].contains(&k.as_str())).collect()
}

/// Stands in for the container when the feature is off, so asking for one fails clearly.
#[cfg(not(feature = "kafka36-container"))]
mod container {
    pub enum Kafka36Container {}

    impl Kafka36Container {
        pub async fn from_compose_file() -> Result<Kafka36Container, String> {
            Err(kgroup_protocol_tests::conformance::kafka36::feature_off_error())
        }

        pub fn bootstrap(&self) -> &str {
            match *self {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_matrix() {
    let outcome = {
        let mut env = environment();
        let requested = container_requested(&env).unwrap_or_else(|e| panic!("{e}"));
        // Removes the container when this block ends, so before a failure of the suite resumes.
        let container = if requested {
            Some(Kafka36Container::from_compose_file().await.unwrap_or_else(|e| panic!("{e}")))
        } else {
            None
        };
        if let Some(container) = &container {
            env.insert(KAFKA36_ENV.to_owned(), container.bootstrap().to_owned());
        }
        // On its own task, a failing suite comes back as an error instead of unwinding through
        // the container's drop guard, which needs this runtime to remove the container.
        tokio::spawn(matrix(env)).await
    };
    if let Err(failure) = outcome {
        std::panic::resume_unwind(failure.into_panic());
    }
}

/// Every case against every peer `env` selects; panics on a failure.
async fn matrix(env: HashMap<String, String>) {
    let table = deviation_table();
    let all_cases = cases();
    let case_count = all_cases.len();
    let cases: Vec<Case> = all_cases.into_iter().filter(|c| case_selected(&env, c.id)).collect();
    let peers = select_peers(&env).unwrap_or_else(|e| panic!("{e}"));
    // The README shows the matrix of all four peers, Kafka 3.6 started by the suite (an external
    // cluster runs fewer cases).
    let readme_run = cases.len() == case_count
        && peers == [PeerKind::Scripted, PeerKind::Nisshi, PeerKind::Mock, PeerKind::Kafka36(None)];
    let started = std::time::Instant::now();
    // One peer after the other: the timing cases (sessions, rebalance timeouts) of one peer do
    // not compete for 2 cores with another peer's cases and broker start-ups.
    let mut results = Vec::new();
    for kind in peers {
        let peer = Arc::new(start_peer(kind, SHARED).await.unwrap_or_else(|e| panic!("peer: {e}")));
        let verdicts = run_peer(peer.clone(), &cases, &table).await;
        results.push((peer.kind.name(), verdicts));
    }
    let mut cells = HashMap::new();
    let mut failures = Vec::new();
    let names: Vec<&str> = results.iter().map(|(n, _)| *n).collect();
    for (peer, verdicts) in &results {
        for (case, verdict) in verdicts {
            if let Verdict::Fail(why) = verdict {
                failures.push(format!("{peer} {case}: {why}"));
            }
            cells.insert((case.clone(), peer.to_string()), verdict.clone());
        }
    }
    let ids: Vec<&str> = cases.iter().map(|c| c.id).collect();
    println!(
        "\nConformance matrix (pass / deviation = documented in deviations.tsv / n/a), {:.1?}:\n",
        started.elapsed()
    );
    let matrix = render_matrix(&ids, &names, &cells);
    println!("{matrix}");
    // Every row of the table names an implemented case and a known peer.
    let implemented: Vec<&str> = self::cases().iter().map(|c| c.id).collect();
    for (peer, case, _) in table.rows() {
        assert!(implemented.contains(&case), "deviations.tsv names {case}, which is not implemented");
        assert!(["scripted", "nisshi", "mock", "kafka36"].contains(&peer), "deviations.tsv names unknown peer {peer}");
    }
    assert!(failures.is_empty(), "{} conformance failures:\n{}", failures.len(), failures.join("\n"));
    if readme_run {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).expect("README");
        assert_eq!(
            readme_matrix(&readme),
            Some(matrix.as_str()),
            "the README's conformance matrix differs from this run's: paste the matrix printed above"
        );
    }
}

/// Runs the futures concurrently on this task (no `futures` crate needed).
async fn futures_join_all<F: Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut pinned: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = pinned.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (fut, out) in pinned.iter_mut().zip(outputs.iter_mut()) {
            if out.is_none() {
                match fut.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *out = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().map(|o| o.expect("completed")).collect()
}

/// `KGROUP_KAFKA36_BOOTSTRAP` selects the external Kafka peer, and the suite's cases run against
/// whatever it names: here an embedded nisshi stands in for the Kafka 3.6 cluster (CI has no
/// Docker). The environment is an explicit map, so no global variable is mutated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_bootstrap_is_picked_up_from_the_environment() {
    let options = BrokerOptions { initial_rebalance_delay: Duration::ZERO, ..Default::default() };
    let broker = EmbeddedBroker::start(options).await.unwrap_or_else(|err| panic!("embedded nisshi: {err}"));
    let env = HashMap::from([(KAFKA36_ENV.to_owned(), broker.bootstrap())]);
    let peers = select_peers(&env).expect("peers");
    let kind = peers.last().cloned().expect("peers");
    assert_eq!(kind, PeerKind::Kafka36(Some(broker.bootstrap())), "the external peer is selected: {peers:?}");
    let peer = Arc::new(start_peer(kind, SHARED).await.unwrap_or_else(|e| panic!("peer: {e}")));
    // Cases nisshi answers exactly like Kafka 3.6, judged with no deviation rows.
    let selected: Vec<Case> = cases().into_iter().filter(|c| ["T04", "T09", "T26", "T39"].contains(&c.id)).collect();
    let verdicts = run_peer(peer, &selected, &DeviationTable::default()).await;
    assert_eq!(verdicts.len(), 4);
    for (case, verdict) in verdicts {
        assert_eq!(verdict, Verdict::Pass, "{case} against the external bootstrap");
    }
    drop(broker);
}
