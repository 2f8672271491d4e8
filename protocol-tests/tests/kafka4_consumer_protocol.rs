//! KIP-848's consumer group protocol on real Kafka 4 brokers, request by request: the cases
//! (K01..K09) the next-generation member and its commit stamping are built against. Each case
//! renders what the broker answered as one line and compares it with the expectation written in
//! the case, per release where the releases differ: Kafka 4.0.2 fences an OffsetCommit v9 on
//! the member epoch alone, Kafka 4.4.0 on per-partition assignment epochs (KIP-1251: assignment
//! epoch <= client epoch <= member epoch, and only for partitions the member is assigned).
//!
//! The broker computes assignments asynchronously (4.4 batches them,
//! `group.consumer.assignment.interval.ms`), so a case heartbeats its members until they settle
//! (bounded) and renders epochs by how they relate, never by value.
//!
//! The same cases run on the scripted coordinator's KIP-848 model (`Kip848::kafka40`,
//! `Kip848::kafka44`, served on TCP): the simulator's peer answers as the brokers do.
//!
//! Every broker is started here from its Maven Central jars (`KafkaRelease`), on 127.0.0.1.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions as OwnedTopicPartitions;
use kafka_protocol::messages::consumer_group_heartbeat_response::TopicPartitions as AssignedTopicPartitions;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::{
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, GroupId, MetadataRequest, OffsetCommitRequest,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use kgroup::driver::connection::{Connection, ConnectionConfig};
use kgroup::embedded::kafka36::{Kafka36Cluster, Kafka36Options, KafkaRelease};
use kgroup::{Cluster, ClusterConfig};
use kgroup_protocol_tests::coordinator::{topic_id, CoordinatorConfig, Kip848};
use kgroup_protocol_tests::server::CoordinatorServer;
use uuid::Uuid;

const TOPIC: &str = "t";
const PARTITIONS: i32 = 6;
const TIMEOUT: Duration = Duration::from_secs(10);
/// ConsumerGroupHeartbeat v1 (KIP-1082: the member chooses its id), as Kafka 4.0's clients send.
const HEARTBEAT_V: i16 = 1;
/// OffsetCommit v9: the generation field carries the member epoch (KIP-848).
const COMMIT_V: i16 = 9;

/// What the cases run on: a real Kafka 4 release, or the scripted coordinator's model of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Kafka(KafkaRelease),
    Model(KafkaRelease),
}

impl Target {
    fn name(self) -> String {
        match self {
            Target::Kafka(release) => format!("Kafka {}", release.version()),
            Target::Model(release) => format!("the model of Kafka {}", release.version()),
        }
    }

    fn release(self) -> KafkaRelease {
        match self {
            Target::Kafka(release) | Target::Model(release) => release,
        }
    }
}

/// A started broker (one of the two kinds), its connection, and the case topic's id.
struct Broker {
    _kafka: Option<Kafka36Cluster>,
    _model: Option<CoordinatorServer>,
    conn: Connection,
    topic_id: Uuid,
}

fn code(error: i16) -> String {
    match ResponseError::try_from_code(error) {
        None => "NONE".into(),
        Some(e) => format!("{e:?}"),
    }
}

async fn start(target: Target) -> Result<Broker, String> {
    let release = match target {
        Target::Kafka(release) => release,
        Target::Model(release) => {
            let kip848 = if release == KafkaRelease::Kafka40 { Kip848::kafka40() } else { Kip848::kafka44() };
            let mut config = CoordinatorConfig { consumer_protocol: Some(kip848), ..Default::default() };
            config.topics.insert(TOPIC.into(), PARTITIONS);
            let server = CoordinatorServer::start(config).await.map_err(|e| e.to_string())?;
            let config = Arc::new(ConnectionConfig { request_timeout: TIMEOUT, ..Default::default() });
            let conn = Connection::open(&server.bootstrap(), config).await.map_err(|e| e.to_string())?;
            return Ok(Broker { _kafka: None, _model: Some(server), conn, topic_id: topic_id(TOPIC) });
        }
    };
    let options = Kafka36Options { release, initial_rebalance_delay: Duration::ZERO, ..Default::default() };
    let kafka = Kafka36Cluster::start(options).await.map_err(|e| format!("Kafka {}: {e}", release.version()))?;
    let cluster = Cluster::connect(ClusterConfig::new([kafka.bootstrap()])).await.map_err(|e| e.to_string())?;
    cluster.create_topic(TOPIC, PARTITIONS, 1).await.map_err(|e| e.to_string())?;
    cluster.wait_for_topic(TOPIC).await.map_err(|e| e.to_string())?;
    let config = Arc::new(ConnectionConfig { request_timeout: TIMEOUT, ..Default::default() });
    let conn = Connection::open(&kafka.bootstrap(), config).await.map_err(|e| e.to_string())?;
    let request = MetadataRequest::default()
        .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(topic_name(TOPIC)))]));
    let metadata = conn.send_at(&request, 12, TIMEOUT).await.map_err(|e| e.to_string())?;
    let topic_id = metadata.topics.first().ok_or("no topic in Metadata")?.topic_id;
    Ok(Broker { _kafka: Some(kafka), _model: None, conn, topic_id })
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.into()))
}

/// One heartbeat's fields; `None` leaves a field null ("unchanged" in an incremental request).
#[derive(Default, Clone, Copy)]
struct Beat<'a> {
    member: &'a str,
    epoch: i32,
    instance: Option<&'a str>,
    topics: Option<&'a [&'a str]>,
    regex: Option<&'a str>,
    /// The partitions of the case topic the member says it owns.
    owned: Option<&'a [i32]>,
}

impl Broker {
    async fn heartbeat(&self, group: &str, beat: Beat<'_>) -> Result<ConsumerGroupHeartbeatResponse, String> {
        let request = ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(group.into())))
            .with_member_id(StrBytes::from_string(beat.member.into()))
            .with_member_epoch(beat.epoch)
            .with_instance_id(beat.instance.map(|i| StrBytes::from_string(i.into())))
            .with_rebalance_timeout_ms(if beat.epoch == 0 { 30_000 } else { -1 })
            .with_subscribed_topic_names(beat.topics.map(|ts| ts.iter().map(|t| topic_name(t)).collect()))
            .with_subscribed_topic_regex(beat.regex.map(|r| StrBytes::from_string(r.into())))
            .with_topic_partitions(beat.owned.map(|ps| match ps {
                [] => Vec::new(),
                ps => vec![OwnedTopicPartitions::default().with_topic_id(self.topic_id).with_partitions(ps.to_vec())],
            }));
        self.conn.send_at(&request, HEARTBEAT_V, TIMEOUT).await.map_err(|e| e.to_string())
    }

    /// Commits offset 7 on `partitions` with `epoch` at `version`: one code per partition.
    async fn commit_at(
        &self,
        version: i16,
        group: &str,
        member: &str,
        epoch: i32,
        partitions: &[i32],
    ) -> Result<String, String> {
        let request = OffsetCommitRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(group.into())))
            .with_generation_id_or_member_epoch(epoch)
            .with_member_id(StrBytes::from_string(member.into()))
            .with_topics(vec![OffsetCommitRequestTopic::default().with_name(topic_name(TOPIC)).with_partitions(
                partitions
                    .iter()
                    .map(|&p| OffsetCommitRequestPartition::default().with_partition_index(p).with_committed_offset(7))
                    .collect(),
            )]);
        let response = self.conn.send_at(&request, version, TIMEOUT).await.map_err(|e| e.to_string())?;
        let codes: Vec<String> =
            response.topics.iter().flat_map(|t| t.partitions.iter().map(|p| code(p.error_code))).collect();
        Ok(codes.join(","))
    }

    async fn commit(&self, group: &str, member: &str, epoch: i32, partitions: &[i32]) -> Result<String, String> {
        self.commit_at(COMMIT_V, group, member, epoch, partitions).await
    }
}

/// A member as a client keeps it: its epoch and the partitions it owns, reported in full on
/// every heartbeat (which acknowledges revocations).
struct Member<'a> {
    broker: &'a Broker,
    group: &'a str,
    id: &'static str,
    instance: Option<&'static str>,
    epoch: i32,
    owned: Vec<i32>,
}

impl<'a> Member<'a> {
    fn new(broker: &'a Broker, group: &'a str, id: &'static str) -> Self {
        Member { broker, group, id, instance: None, epoch: 0, owned: Vec::new() }
    }

    /// One heartbeat at the member's epoch; `subscription` on a join or a full request.
    async fn beat(&mut self, subscription: Beat<'_>) -> Result<ConsumerGroupHeartbeatResponse, String> {
        let owned = self.owned.clone();
        let beat =
            Beat { member: self.id, epoch: self.epoch, instance: self.instance, owned: Some(&owned), ..subscription };
        let r = self.broker.heartbeat(self.group, beat).await?;
        if r.error_code == 0 {
            self.epoch = r.member_epoch;
            if r.assignment.is_some() {
                self.owned = assigned(&r);
            }
        }
        Ok(r)
    }

    async fn join(&mut self) -> Result<ConsumerGroupHeartbeatResponse, String> {
        self.beat(Beat { topics: Some(&[TOPIC]), ..Default::default() }).await
    }

    /// A member subscribed to the case topic, alone in the group and settled with all of it.
    async fn alone(broker: &'a Broker, group: &'a str, id: &'static str) -> Result<Member<'a>, String> {
        let mut member = Member::new(broker, group, id);
        member.join().await?;
        settle(&mut [&mut member]).await?;
        Ok(member)
    }
}

/// Heartbeats every member in turn (every 100 ms, at most 150 rounds) until the group is
/// settled: every partition of the case topic owned by exactly one member, every member owning
/// some and at the same epoch, and a round that changed nothing. Assignments are computed asynchronously, and a
/// revocation one member acknowledges releases partitions to another.
async fn settle(members: &mut [&mut Member<'_>]) -> Result<(), String> {
    for _ in 0..150 {
        let before: Vec<(i32, Vec<i32>)> = members.iter().map(|m| (m.epoch, m.owned.clone())).collect();
        for m in members.iter_mut() {
            let r = m.beat(Beat::default()).await?;
            if r.error_code != 0 {
                return Err(format!("{} heartbeat: {}", m.id, code(r.error_code)));
            }
        }
        let after: Vec<(i32, Vec<i32>)> = members.iter().map(|m| (m.epoch, m.owned.clone())).collect();
        let mut owned: Vec<i32> = after.iter().flat_map(|(_, ps)| ps.iter().copied()).collect();
        owned.sort_unstable();
        let everyone_owns = after.iter().all(|(epoch, ps)| *epoch == after[0].0 && !ps.is_empty());
        if before == after && owned == ALL && everyone_owns {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err("the group did not settle".into())
}

/// The case topic's partitions of an assignment, sorted.
fn assigned(response: &ConsumerGroupHeartbeatResponse) -> Vec<i32> {
    let mut partitions: Vec<i32> = response
        .assignment
        .iter()
        .flat_map(|a| a.topic_partitions.iter())
        .flat_map(|t: &AssignedTopicPartitions| t.partitions.iter().copied())
        .collect();
    partitions.sort_unstable();
    partitions
}

type CaseFuture<'a> = Pin<Box<dyn Future<Output = Result<String, String>> + Send + 'a>>;

type CaseFn = for<'a> fn(&'a Broker, &'a str) -> CaseFuture<'a>;

/// A case: its id, and its expected observation on 4.0 and on 4.4.
struct Case {
    id: &'static str,
    expect_40: &'static str,
    expect_44: &'static str,
    run: CaseFn,
}

impl Case {
    /// A case both releases answer alike.
    fn both(id: &'static str, expect: &'static str, run: CaseFn) -> Case {
        Case { id, expect_40: expect, expect_44: expect, run }
    }
}

const ALL: [i32; 6] = [0, 1, 2, 3, 4, 5];

fn cases() -> Vec<Case> {
    vec![
        // The member chooses its id (v1); the first heartbeat (epoch 0) joins, and the broker
        // sets the heartbeat interval (group.consumer.heartbeat.interval.ms).
        Case::both(
            "K01",
            "empty-id=InvalidRequest join=NONE epoch>0=true interval=5000 settled: owns=[0, 1, 2, 3, 4, 5]",
            |b, g| {
                Box::pin(async move {
                    let topics = [TOPIC];
                    let nameless = Beat { topics: Some(&topics), owned: Some(&[]), ..Default::default() };
                    let nameless = b.heartbeat(g, nameless).await?;
                    let mut a = Member::new(b, g, "a");
                    let joined = a.join().await?;
                    settle(&mut [&mut a]).await?;
                    Ok(format!(
                        "empty-id={} join={} epoch>0={} interval={} settled: owns={:?}",
                        code(nameless.error_code),
                        code(joined.error_code),
                        joined.member_epoch > 0,
                        joined.heartbeat_interval_ms,
                        a.owned
                    ))
                })
            },
        ),
        // Heartbeats are fenced on the exact member epoch.
        Case::both(
            "K02",
            "ahead=FencedMemberEpoch unknown-member=UnknownMemberId current=NONE same-epoch=true assignment-unchanged=true",
            |b, g| {
                Box::pin(async move {
                    let a = Member::alone(b, g, "a").await?;
                    let ahead = Beat { member: "a", epoch: a.epoch + 1, owned: Some(&ALL), ..Default::default() };
                    let ahead = b.heartbeat(g, ahead).await?;
                    let stranger = Beat { member: "z", epoch: a.epoch, ..Default::default() };
                    let stranger = b.heartbeat(g, stranger).await?;
                    let current = b.heartbeat(g, Beat { member: "a", epoch: a.epoch, ..Default::default() }).await?;
                    Ok(format!(
                        "ahead={} unknown-member={} current={} same-epoch={} assignment-unchanged={}",
                        code(ahead.error_code),
                        code(stranger.error_code),
                        code(current.error_code),
                        current.member_epoch == a.epoch,
                        current.assignment.is_none()
                    ))
                })
            },
        ),
        // Scale-out: the newcomer gets partitions only once their owner releases them.
        Case::both(
            "K03",
            "b-before-release=[] a=3 b=3 disjoint=true same-epoch=true epoch-grew=true",
            |b, g| {
                Box::pin(async move {
                    let mut a = Member::alone(b, g, "a").await?;
                    let first_epoch = a.epoch;
                    let mut m = Member::new(b, g, "b");
                    m.join().await?;
                    let newcomer_before_release = m.owned.clone();
                    settle(&mut [&mut a, &mut m]).await?;
                    let disjoint = a.owned.iter().all(|p| !m.owned.contains(p));
                    Ok(format!(
                        "b-before-release={newcomer_before_release:?} a={} b={} disjoint={disjoint} same-epoch={} epoch-grew={}",
                        a.owned.len(),
                        m.owned.len(),
                        a.epoch == m.epoch,
                        a.epoch > first_epoch
                    ))
                })
            },
        ),
        // OffsetCommit v9 carries the member epoch: the current one commits, a later one is
        // stale, a stranger is unknown, and a "simple" commit (no member) is refused while the
        // group has members.
        Case::both(
            "K04",
            "current=NONE ahead=StaleMemberEpoch unknown-member=UnknownMemberId simple=UnknownMemberId",
            |b, g| {
                Box::pin(async move {
                    let a = Member::alone(b, g, "a").await?;
                    let current = b.commit(g, "a", a.epoch, &[0]).await?;
                    let ahead = b.commit(g, "a", a.epoch + 1, &[0]).await?;
                    let stranger = b.commit(g, "z", a.epoch, &[0]).await?;
                    let simple = b.commit(g, "", -1, &[0]).await?;
                    Ok(format!("current={current} ahead={ahead} unknown-member={stranger} simple={simple}"))
                })
            },
        ),
        // After a rebalance the member's epoch grew past its kept partitions' assignment epoch.
        // 4.0 fences a commit of a kept partition stamped with the epoch its records were
        // fetched in; 4.4 accepts it (KIP-1251). Neither checks ownership at the current
        // epoch: a partition that moved away is still accepted then, so only the client can
        // keep a commit of records it no longer owns from landing.
        Case {
            id: "K05",
            expect_40: "epoch-grew=true kept@old=StaleMemberEpoch kept@new=NONE moved@new=NONE moved@old=StaleMemberEpoch",
            expect_44: "epoch-grew=true kept@old=NONE kept@new=NONE moved@new=NONE moved@old=StaleMemberEpoch",
            run: |b, g| {
                Box::pin(async move {
                    let mut a = Member::alone(b, g, "a").await?;
                    let (first_epoch, all) = (a.epoch, a.owned.clone());
                    let mut m = Member::new(b, g, "b");
                    m.join().await?;
                    settle(&mut [&mut a, &mut m]).await?;
                    let kept = *a.owned.first().ok_or("a kept nothing")?;
                    let moved = *all.iter().find(|p| !a.owned.contains(p)).ok_or("nothing moved")?;
                    let kept_old = b.commit(g, "a", first_epoch, &[kept]).await?;
                    let kept_new = b.commit(g, "a", a.epoch, &[kept]).await?;
                    let moved_new = b.commit(g, "a", a.epoch, &[moved]).await?;
                    let moved_old = b.commit(g, "a", first_epoch, &[moved]).await?;
                    Ok(format!(
                        "epoch-grew={} kept@old={kept_old} kept@new={kept_new} moved@new={moved_new} moved@old={moved_old}",
                        a.epoch > first_epoch
                    ))
                })
            },
        },
        // Leaving (epoch -1): the member is gone; a simple commit is accepted once the group is
        // empty.
        Case::both(
            "K06",
            "leave=NONE epoch=-1 heartbeat=UnknownMemberId commit=UnknownMemberId simple=NONE",
            |b, g| {
                Box::pin(async move {
                    let a = Member::alone(b, g, "a").await?;
                    let leave = b.heartbeat(g, Beat { member: "a", epoch: -1, ..Default::default() }).await?;
                    let after = b.heartbeat(g, Beat { member: "a", epoch: a.epoch, ..Default::default() }).await?;
                    let commit = b.commit(g, "a", a.epoch, &[0]).await?;
                    let simple = b.commit(g, "", -1, &[0]).await?;
                    Ok(format!(
                        "leave={} epoch={} heartbeat={} commit={commit} simple={simple}",
                        code(leave.error_code),
                        leave.member_epoch,
                        code(after.error_code)
                    ))
                })
            },
        ),
        // A static member leaves with epoch -2 and keeps its place: a new member with the same
        // instance id takes over its epoch and assignment; a third one is refused meanwhile.
        Case::both(
            "K07",
            "leave=NONE epoch=-2 takeover=NONE same-epoch=true same-assignment=true third=UnreleasedInstanceId",
            |b, g| {
                Box::pin(async move {
                    let mut s1 = Member::new(b, g, "s1");
                    s1.instance = Some("i1");
                    s1.join().await?;
                    settle(&mut [&mut s1]).await?;
                    let leave = Beat { member: "s1", epoch: -2, instance: Some("i1"), ..Default::default() };
                    let leave = b.heartbeat(g, leave).await?;
                    let mut s2 = Member::new(b, g, "s2");
                    s2.instance = Some("i1");
                    let joined = s2.join().await?;
                    let mut s3 = Member::new(b, g, "s3");
                    s3.instance = Some("i1");
                    let refused = s3.join().await?;
                    Ok(format!(
                        "leave={} epoch={} takeover={} same-epoch={} same-assignment={} third={}",
                        code(leave.error_code),
                        leave.member_epoch,
                        code(joined.error_code),
                        s2.epoch == s1.epoch,
                        s2.owned == s1.owned,
                        code(refused.error_code)
                    ))
                })
            },
        ),
        // A classic OffsetCommit (v8, generation) from a consumer-protocol member.
        Case::both(
            "K08",
            "v8=UnsupportedVersion",
            |b, g| {
                Box::pin(async move {
                    let a = Member::alone(b, g, "a").await?;
                    Ok(format!("v8={}", b.commit_at(8, g, "a", a.epoch, &[0]).await?))
                })
            },
        ),
        // KIP-848's server-side regex subscription (RE2J), resolved by the broker.
        Case::both(
            "K09",
            "join=NONE settled: owns=[0, 1, 2, 3, 4, 5]",
            |b, g| {
                Box::pin(async move {
                    let mut r = Member::new(b, g, "r");
                    let joined = r.beat(Beat { regex: Some("^t$"), ..Default::default() }).await?;
                    settle(&mut [&mut r]).await?;
                    let owned = r.owned.clone();
                    Ok(format!("join={} settled: owns={owned:?}", code(joined.error_code)))
                })
            },
        ),
    ]
}

async fn run_target(target: Target) {
    let broker = start(target).await.unwrap_or_else(|e| panic!("{e}"));
    let mut failures = Vec::new();
    for case in cases() {
        let group = format!("kgroup-{}-{}", case.id, target.release().version());
        let observed = (case.run)(&broker, &group).await.unwrap_or_else(|e| format!("error: {e}"));
        let expected = if target.release() == KafkaRelease::Kafka40 { case.expect_40 } else { case.expect_44 };
        println!("{} on {}: {observed}", case.id, target.name());
        if observed != expected {
            failures.push(format!("{}: expected `{expected}`, observed `{observed}`", case.id));
        }
    }
    assert!(failures.is_empty(), "{}:\n{}", target.name(), failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_4_0_answers_the_consumer_protocol_as_the_cases_say() {
    run_target(Target::Kafka(KafkaRelease::Kafka40)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_4_4_answers_the_consumer_protocol_as_the_cases_say() {
    run_target(Target::Kafka(KafkaRelease::Kafka44)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scripted_model_of_kafka_4_0_answers_as_the_broker_does() {
    run_target(Target::Model(KafkaRelease::Kafka40)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scripted_model_of_kafka_4_4_answers_as_the_broker_does() {
    run_target(Target::Model(KafkaRelease::Kafka44)).await;
}
