//! Partition counts on Kafka 3.6.2 (issue 13, item 5). The leader of a group assigns every
//! topic some member subscribes to, not only its own, and partitions and topics added while the
//! group runs are assigned within `metadata.max.age.ms`:
//!
//! - the leader, subscribed to `t` only, leads a member subscribed to `t`, `u` and `v` (which
//!   does not exist yet): `u` is assigned to that member;
//! - `t` grows from 2 to 4 partitions (CreatePartitions): the new ones are assigned;
//! - `v` is created: its partitions are assigned.

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::{ApiKey, CreatePartitionsRequest, CreatePartitionsResponse, ResponseHeader, TopicName};
use kafka_protocol::protocol::{Decodable, StrBytes};
use kgroup::driver::group::{GroupHandle, RevokeMode};
use kgroup::embedded::kafka36::Kafka36Options;
use kgroup::group::StateKind;
use kgroup::group::{GroupConfig, TopicPartition};
use kgroup::protocol::codec::encode_request;
use kgroup::{Cluster, ClusterConfig};
use kgroup_integration::{init_tracing, unique_name, TestBroker};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

/// Bound on each wait for the group to take a change in.
const CONVERGE: Duration = Duration::from_secs(60);
/// Bound on the scenario once the broker runs (the launcher bounds its start).
const SCENARIO: Duration = Duration::from_secs(180);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_assigns_every_members_topics_and_partitions_added_later() {
    init_tracing();
    let options = Kafka36Options { initial_rebalance_delay: Duration::ZERO, ..Default::default() };
    let broker = TestBroker::start_kafka36(options).await;
    tokio::time::timeout(SCENARIO, scenario(broker.bootstrap())).await.expect("the scenario within its bound");
}

async fn scenario(bootstrap: &str) {
    let cluster =
        Cluster::connect(ClusterConfig::from_bootstrap_servers(bootstrap).expect("bootstrap")).await.expect("connect");
    let (t, u, v) = (unique_name("t"), unique_name("u"), unique_name("v"));
    cluster.create_topic(&t, 2, 1).await.expect("create t");
    cluster.create_topic(&u, 3, 1).await.expect("create u");
    let group = unique_name("partition-counts");

    // The first member leads every rebalance while it stays.
    let leader = member(&cluster, &group, &[&t]).await;
    converge(&[&leader], "the leader alone", |owned| owned[0] == partitions(&t, 2)).await;
    let follower = member(&cluster, &group, &[&t, &u, &v]).await;
    let shared = |t_count, follower_only: BTreeSet<TopicPartition>| {
        let t = partitions(&t, t_count);
        move |owned: &[BTreeSet<TopicPartition>]| split_evenly(&t, &follower_only, &owned[0], &owned[1])
    };
    let members = [&leader, &follower];
    converge(&members, "a topic only the follower subscribes to", shared(2, partitions(&u, 3))).await;

    add_partitions(bootstrap, &t, 4).await;
    converge(&members, "partitions added to t", shared(4, partitions(&u, 3))).await;

    cluster.create_topic(&v, 3, 1).await.expect("create v");
    let follower_only = partitions(&u, 3).into_iter().chain(partitions(&v, 3)).collect();
    converge(&members, "a topic created later", shared(4, follower_only)).await;

    follower.leave("done").await.expect("leave");
    leader.leave("done").await.expect("leave");
}

/// Range splits `t` in halves (which half each gets depends on how the member ids sort); the
/// follower alone subscribes to the topics of `follower_only`, so it owns all of them.
fn split_evenly(
    t: &BTreeSet<TopicPartition>,
    follower_only: &BTreeSet<TopicPartition>,
    leader: &BTreeSet<TopicPartition>,
    follower: &BTreeSet<TopicPartition>,
) -> bool {
    let follower_t: BTreeSet<TopicPartition> = t.difference(leader).cloned().collect();
    leader.is_subset(t)
        && leader.len() == t.len() / 2
        && *follower == follower_t.union(follower_only).cloned().collect::<BTreeSet<_>>()
}

async fn member(cluster: &Cluster, group: &str, topics: &[&str]) -> GroupHandle {
    let mut config = GroupConfig::new(group);
    config.session_timeout = Duration::from_secs(10);
    config.heartbeat_interval = Duration::from_millis(500);
    config.rebalance_timeout = Duration::from_secs(30);
    config.revoke_timeout = Duration::from_secs(10);
    config.metadata_max_age = Duration::from_secs(1);
    let topics = topics.iter().map(|t| t.to_string()).collect();
    GroupHandle::start(cluster.clone(), config, topics, RevokeMode::Automatic).await.expect("member starts")
}

fn partitions(topic: &str, count: i32) -> BTreeSet<TopicPartition> {
    (0..count).map(|p| TopicPartition::new(topic, p)).collect()
}

/// Waits until every member is Stable in one generation and what they own satisfies `accept`.
async fn converge(members: &[&GroupHandle], what: &str, accept: impl Fn(&[BTreeSet<TopicPartition>]) -> bool) {
    let deadline = Instant::now() + CONVERGE;
    loop {
        let mut seen = Vec::new();
        for member in members {
            let snapshot = member.group_state().await.expect("snapshot");
            let owned: BTreeSet<TopicPartition> = snapshot.assignment.iter().map(|p| p.partition.clone()).collect();
            seen.push((snapshot.state, snapshot.generation.map(|g| g.id), owned));
        }
        let generations: BTreeSet<_> = seen.iter().map(|(_, generation, _)| *generation).collect();
        let stable = seen.iter().all(|(state, _, _)| *state == StateKind::Stable) && generations.len() == 1;
        let owned: Vec<BTreeSet<TopicPartition>> = seen.iter().map(|(_, _, owned)| owned.clone()).collect();
        if stable && accept(&owned) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: the group did not converge within {CONVERGE:?}: {seen:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// CreatePartitions v1 on a connection of its own (kgroup has no admin call for it): `topic`
/// grows to `count` partitions.
async fn add_partitions(bootstrap: &str, topic: &str, count: i32) {
    let request =
        CreatePartitionsRequest::default().with_timeout_ms(30_000).with_topics(vec![CreatePartitionsTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
            .with_count(count)
            .with_assignments(None)]);
    let frame = encode_request(&request, 1, 1, "kgroup-test").expect("encode CreatePartitions");
    let mut stream = tokio::net::TcpStream::connect(bootstrap).await.expect("connect");
    stream.write_all(&frame).await.expect("send CreatePartitions");
    let size = stream.read_u32().await.expect("response size");
    let mut body = vec![0; size as usize];
    stream.read_exact(&mut body).await.expect("response");
    let mut body = Bytes::from(body);
    ResponseHeader::decode(&mut body, ApiKey::CreatePartitions.response_header_version(1)).expect("header");
    let response = CreatePartitionsResponse::decode(&mut body, 1).expect("CreatePartitions response");
    for result in &response.results {
        assert_eq!(result.error_code, 0, "CreatePartitions {topic}: {:?}", result.error_message);
    }
}
