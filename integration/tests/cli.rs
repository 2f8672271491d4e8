//! The `kgroup` command line (issue 15), run in-process through `kgroup::cli::run`, on nisshi
//! and on Kafka 3.6.2: two `GroupConsumer`s share a topic and commit some batches, then
//! `groups`, `describe` (text and `--json`, checked against what the test produced and
//! committed) and `member` (against the `DebugServer` that serves both members, by label, checked
//! against the member's own snapshot and transitions) run on them; and the errors (unknown group,
//! unreachable broker, malformed URL, no or an unknown member label, bad properties files, bad
//! usage) give their exit code and one line.
//!
//! nisshi answers ApiVersions with every API the commands use (ListGroups 0-5, DescribeGroups
//! 0-5, OffsetFetch 0-9, ListOffsets 0-6, FindCoordinator 0-6), so both brokers run every step,
//! but nisshi 0.8's DescribeGroups leaves out a Stable group's protocol and its members' client
//! ids, hosts, subscriptions and assignments: the command says so in a note, and those details
//! (with the owner of each partition) are checked on Kafka 3.6 only.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use kgroup::debug_http::DebugServer;
use kgroup::embedded::kafka36::Kafka36Options;
use kgroup::group::{CommitOutcome, GroupEvent, StateKind};
use kgroup::producer::{Producer, ProducerConfig, ProducerRecord};
use kgroup::{Cluster, ConsumerConfig, GroupConsumer};
use kgroup_integration::{init_tracing, unique_name, TestBroker};
use serde_json::Value;
use tokio::time::timeout;

const PARTITIONS: i32 = 4;
const MESSAGES: usize = 200;
/// Bound on the scenario once the broker runs.
const SCENARIO: Duration = Duration::from_secs(240);
/// Bound on each wait for the group to settle or a batch to come.
const SETTLE: Duration = Duration::from_secs(90);

/// What a run of the command printed and returned.
struct Run {
    code: i32,
    out: String,
    err: String,
}

impl Run {
    /// Exit code `code` and exactly one line on the error stream, `kgroup: error: ...`.
    fn fails_with(&self, code: i32, needle: &str) {
        assert_eq!(self.code, code, "exit code; out: {}, err: {}", self.out, self.err);
        assert_eq!(self.err.lines().count(), 1, "one error line: {:?}", self.err);
        assert!(self.err.starts_with("kgroup: error: ") && self.err.contains(needle), "{needle:?} in {:?}", self.err);
        assert!(self.out.is_empty(), "nothing on the output: {:?}", self.out);
    }

    fn succeeds(&self) -> &str {
        assert_eq!(self.code, 0, "exit code; err: {}", self.err);
        assert!(self.err.is_empty(), "no error output: {}", self.err);
        &self.out
    }
}

async fn kgroup(args: &[&str]) -> Run {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let args = std::iter::once("kgroup").chain(args.iter().copied());
    let code = kgroup::cli::run(args, &mut out, &mut err).await;
    Run { code, out: String::from_utf8_lossy(&out).into_owned(), err: String::from_utf8_lossy(&err).into_owned() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_commands_show_a_group_on_nisshi() {
    init_tracing();
    let broker = TestBroker::start().await;
    timeout(SCENARIO, scenario(broker.bootstrap(), Details::Missing)).await.expect("the scenario within its bound");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_commands_show_a_group_on_kafka36() {
    init_tracing();
    let options = Kafka36Options { initial_rebalance_delay: Duration::ZERO, ..Default::default() };
    let broker = TestBroker::start_kafka36(options).await;
    timeout(SCENARIO, scenario(broker.bootstrap(), Details::Full)).await.expect("the scenario within its bound");
}

/// Whether the broker's DescribeGroups carries the protocol and members' details.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Details {
    Full,
    /// nisshi 0.8.
    Missing,
}

async fn scenario(bootstrap: &str, details: Details) {
    let cluster = Cluster::connect(kgroup::ClusterConfig::from_bootstrap_servers(bootstrap).expect("bootstrap"))
        .await
        .expect("connect");
    let topic = unique_name("cli");
    cluster.create_topic(&topic, PARTITIONS, 1).await.expect("create topic");
    let group = unique_name("cli-group");
    // Each member is served from its start on, labelled as `serve_debug` would: a before b
    // joins, so the server has every transition of a's last rebalance.
    let server = DebugServer::bind("127.0.0.1:0").await.expect("bind the debug server");
    let mut a = subscribe(bootstrap, &group, &topic, "cli-a").await;
    let mut events = a.group_events();
    server.add_member("cli-a", &a.observer()).expect("label");
    let mut b = subscribe(bootstrap, &group, &topic, "cli-b").await;
    server.add_member("cli-b", &b.observer()).expect("label");
    // The members split the empty topic first, so no batch is held across their rebalance.
    settle(&mut a, &mut b).await;
    let log_ends = produce(&cluster, &topic).await;
    let committed = consume_and_commit(&mut a, &mut b).await;

    // `groups`, configured by a consumer's own properties file (its consumer keys are not
    // used): the group, Stable, its assignor and both members.
    let dir = std::env::temp_dir().join(unique_name("kgroup-cli"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("consumer.properties");
    let consumer_file = format!(
        "bootstrap.servers={bootstrap}\ngroup.id={group}\nenable.auto.commit=false\n\
         key.deserializer=org.apache.kafka.common.serialization.StringDeserializer\n"
    );
    std::fs::write(&file, consumer_file).expect("write properties");
    let out = kgroup(&["groups", "-F", file.to_str().expect("UTF-8 path")]).await;
    std::fs::remove_dir_all(&dir).expect("remove temp dir");
    let line = out.succeeds().lines().find(|l| l.split_whitespace().next() == Some(group.as_str())).map(str::to_owned);
    let line = line.unwrap_or_else(|| panic!("{group} in\n{}", out.out));
    let protocol = if details == Details::Full { "consumer/range" } else { "consumer" };
    assert_eq!(line.split_whitespace().skip(1).collect::<Vec<_>>(), ["Stable", protocol, "2"], "{line}");

    // `describe --json`: members, owners, committed offsets, log ends and lags as produced.
    let members = [(member_id(&a).await, "cli-a", owned(&a).await), (member_id(&b).await, "cli-b", owned(&b).await)];
    let out = kgroup(&["describe", &group, "-b", bootstrap, "--json"]).await;
    let doc: Value = serde_json::from_str(out.succeeds()).expect("describe --json is JSON");
    assert_eq!(doc["group"], group.as_str());
    assert_eq!(doc["state"], "Stable");
    assert_eq!(doc["protocol_type"], "consumer");
    let described = doc["members"].as_array().expect("members");
    assert_eq!(described.len(), 2, "{doc:#}");
    for (id, _, _) in &members {
        assert!(described.iter().any(|m| m["member_id"] == id.as_str()), "{id} in {doc:#}");
    }
    let full = details == Details::Full;
    assert_eq!(doc["notes"].as_array().map(Vec::len), Some(usize::from(!full)), "{doc:#}");
    for (id, client, partitions) in members.iter().filter(|_| full) {
        assert_eq!(doc["protocol"], "range");
        let m = described.iter().find(|m| m["member_id"] == id.as_str()).unwrap_or_else(|| panic!("{id} in {doc:#}"));
        assert_eq!(m["client_id"], *client);
        assert_eq!(m["subscribed_topics"], serde_json::json!([topic]));
        let assigned: BTreeSet<i32> = m["assigned_partitions"]
            .as_array()
            .expect("assigned partitions")
            .iter()
            .map(|p| {
                assert_eq!(p["topic"], topic.as_str());
                p["partition"].as_i64().expect("partition") as i32
            })
            .collect();
        assert_eq!(&assigned, partitions, "{client}'s partitions");
    }
    // Every assigned partition, and every committed one; without assignments, the committed.
    let rows = doc["partitions"].as_array().expect("partitions");
    let listed: BTreeSet<i32> = rows.iter().map(|r| r["partition"].as_i64().expect("partition") as i32).collect();
    let expected: BTreeSet<i32> = if full { (0..PARTITIONS).collect() } else { committed.keys().copied().collect() };
    assert_eq!(listed, expected, "{doc:#}");
    let mut total = 0;
    for row in rows {
        let p = row["partition"].as_i64().expect("partition") as i32;
        let end = log_ends[&p];
        let owner = members.iter().find(|(_, _, owned)| owned.contains(&p)).map(|(id, _, _)| id.as_str());
        assert_eq!(row["log_end_offset"], end, "partition {p}");
        assert_eq!(row["owner"].as_str(), owner.filter(|_| full), "partition {p}");
        match committed.get(&p) {
            Some(&offset) => {
                assert_eq!(row["committed_offset"], offset, "partition {p}");
                assert_eq!(row["lag"], end - offset, "partition {p}");
                total += end - offset;
            }
            None => assert!(row["committed_offset"].is_null() && row["lag"].is_null(), "partition {p}: {row}"),
        }
    }
    assert_eq!(doc["total_lag"], total);

    // `describe` as text: the same facts in tables.
    let out = kgroup(&["describe", &group, "-b", bootstrap]).await;
    let text = out.succeeds();
    assert!(text.contains("state        Stable") && text.contains(&format!("protocol     {protocol}")), "{text}");
    assert!(text.contains(&format!("total lag    {total}")), "{text}");
    for (id, client, _) in &members {
        let owner = format!("{id} ({client})");
        assert_eq!(text.contains(&owner), full, "{owner} shown as an owner in\n{text}");
    }
    assert_eq!(text.contains("note: the coordinator"), !full, "{text}");

    // `member`: the debug server of both members, read by label.
    let snapshot = a.group_state().await.expect("snapshot");
    let url = format!("http://{}", server.local_addr());
    let out = kgroup(&["member", &url, "--member", "cli-a"]).await;
    let text = out.succeeds();
    let generation = snapshot.generation.as_ref().expect("a generation").id.0;
    assert!(text.contains(&format!("member id   {}", snapshot.member_id)), "{text}");
    assert!(text.contains("state       Stable") && text.contains(&format!("generation  {generation}")), "{text}");
    assert!(text.contains(&format!("owned partitions ({}):", snapshot.assignment.len())), "{text}");
    for owned in &snapshot.assignment {
        let name = format!("{}-{} ", owned.partition.topic, owned.partition.partition);
        let line = text.lines().find(|l| l.trim_start().starts_with(&name));
        let line = line.unwrap_or_else(|| panic!("{name} in\n{text}"));
        assert!(line.ends_with(&format!("owned since generation {}", owned.owned_since.0)), "{line}");
    }
    assert!(text.contains("in-flight commits (0)") && text.contains("deferred commits (0)"), "{text}");
    // The newest of a's own transitions (the server has those since a was added), in order,
    // ending with the one into the current generation.
    let mut transitions = Vec::new();
    while let Ok(record) = events.try_recv() {
        if let GroupEvent::Transition { from, to, reason, generation } = record.event {
            let generation = generation.map_or("-".to_owned(), |g| g.0.to_string());
            transitions.push(format!("{from:?} -> {to:?}  generation {generation}  {reason}"));
        }
    }
    let shown: Vec<&str> = text
        .lines()
        .skip_while(|l| *l != "last transitions:")
        .skip(1)
        .map(|l| l.trim_start().split_once("  ").map_or(l, |(_clock, rest)| rest))
        .collect();
    assert!(!shown.is_empty() && shown.len() <= 10, "{text}");
    assert_eq!(shown, transitions[transitions.len().saturating_sub(shown.len())..], "{text}");
    let last = shown.last().copied().unwrap_or_default();
    assert!(last.starts_with(&format!("AwaitingSync -> Stable  generation {generation}  ")), "{text}");
    let out = kgroup(&["member", &url, "--member", "cli-a", "--watch", "--interval", "10", "--count", "2"]).await;
    assert_eq!(out.succeeds().matches("\x1b[2J\x1b[H").count(), 2, "two screens");
    // Without a label, or with one the server does not have: the labels it has.
    let out = kgroup(&["member", &url]).await;
    out.fails_with(1, "--member LABEL");
    assert!(out.err.contains("several members") && out.err.contains("cli-a, cli-b"), "{}", out.err);
    let out = kgroup(&["member", &url, "--member", "cli-c"]).await;
    out.fails_with(1, "no member labelled \"cli-c\"");
    assert!(out.err.contains("cli-a, cli-b"), "{}", out.err);
    kgroup(&["member", &format!("{url}/elsewhere"), "--member", "cli-a"]).await.fails_with(1, "404");
    server.shutdown().await;

    // A group that does not exist.
    let unknown = unique_name("no-such-group");
    kgroup(&["describe", &unknown, "-b", bootstrap]).await.fails_with(1, &format!("group {unknown:?} does not exist"));

    a.close().await.expect("close a");
    b.close().await.expect("close b");
}

/// Produces `MESSAGES` keyed messages and returns each partition's log end.
async fn produce(cluster: &Cluster, topic: &str) -> BTreeMap<i32, i64> {
    let producer = Producer::new(cluster.clone(), ProducerConfig::default()).expect("producer");
    let deliveries: Vec<_> = (0..MESSAGES)
        .map(|i| producer.send(ProducerRecord::new(topic, Some(format!("k{i}")), format!("v{i}"))))
        .collect();
    producer.flush().await;
    let mut ends: BTreeMap<i32, i64> = (0..PARTITIONS).map(|p| (p, 0)).collect();
    for delivery in deliveries {
        let meta = delivery.await.expect("delivered");
        let end = ends.entry(meta.partition).or_default();
        *end = (*end).max(meta.offset + 1);
    }
    producer.close().await;
    ends
}

async fn subscribe(bootstrap: &str, group: &str, topic: &str, client: &str) -> GroupConsumer {
    let config = ConsumerConfig::from_properties([
        ("bootstrap.servers", bootstrap),
        ("group.id", group),
        ("client.id", client),
        ("auto.offset.reset", "earliest"),
        ("enable.auto.commit", "false"),
        ("partition.assignment.strategy", "range"),
        ("max.poll.records", "5"),
        ("session.timeout.ms", "10000"),
        ("heartbeat.interval.ms", "300"),
        ("max.poll.interval.ms", "300000"),
        ("fetch.max.wait.ms", "100"),
    ])
    .expect("config");
    GroupConsumer::subscribe(config, &[topic]).await.expect("subscribe")
}

async fn owned(consumer: &GroupConsumer) -> BTreeSet<i32> {
    consumer.assignment().await.expect("assignment").iter().map(|tp| tp.partition).collect()
}

async fn member_id(consumer: &GroupConsumer) -> String {
    consumer.group_state().await.expect("snapshot").member_id.to_string()
}

/// Polls both members (of an empty topic) until each is Stable with half of the partitions.
async fn settle(a: &mut GroupConsumer, b: &mut GroupConsumer) {
    let settled = async {
        loop {
            for consumer in [&mut *a, &mut *b] {
                let batch = consumer.poll(1, Duration::from_millis(100)).await.expect("poll");
                assert!(batch.is_none(), "no records before the test produces");
            }
            let (sa, sb) = (a.group_state().await.expect("a"), b.group_state().await.expect("b"));
            let both_stable = sa.state == StateKind::Stable && sb.state == StateKind::Stable;
            let same_generation = sa.generation.as_ref().map(|g| g.id) == sb.generation.as_ref().map(|g| g.id);
            if both_stable && same_generation && sa.assignment.len() == 2 && sb.assignment.len() == 2 {
                return;
            }
        }
    };
    timeout(SETTLE, settled).await.expect("two members with two partitions each");
}

/// Reads and commits a few batches on each member; returns the offsets committed by partition.
async fn consume_and_commit(a: &mut GroupConsumer, b: &mut GroupConsumer) -> BTreeMap<i32, i64> {
    let mut committed = BTreeMap::new();
    for consumer in [a, b] {
        for _ in 0..3 {
            let batch = timeout(SETTLE, async {
                loop {
                    if let Some(batch) = consumer.poll(5, Duration::from_millis(500)).await.expect("poll") {
                        return batch;
                    }
                }
            })
            .await
            .expect("a batch");
            let results = consumer.commit(&batch).await.expect("commit");
            assert!(results.iter().all(|r| matches!(r.outcome, CommitOutcome::Committed { .. })), "{results:?}");
            committed.insert(batch.partition.partition, batch.next_offset());
        }
    }
    committed
}

#[tokio::test]
async fn an_unreachable_broker_is_one_line_and_exit_code_1() {
    kgroup(&["groups", "-b", "127.0.0.1:1", "--command-timeout", "2000"]).await.fails_with(1, "127.0.0.1:1");
    kgroup(&["describe", "g", "-b", "127.0.0.1:1", "--command-timeout", "2000"]).await.fails_with(1, "127.0.0.1:1");
}

#[tokio::test]
async fn a_malformed_url_is_a_usage_error() {
    for url in ["not-a-url", "https://127.0.0.1:1", "http://127.0.0.1:port", "http://"] {
        kgroup(&["member", url]).await.fails_with(2, "malformed URL");
    }
}

#[tokio::test]
async fn bad_properties_files_and_settings_are_one_line() {
    let dir = std::env::temp_dir().join(unique_name("kgroup-cli"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let missing = dir.join("missing.properties");
    let missing = missing.to_str().expect("UTF-8 path");
    kgroup(&["groups", "-F", missing]).await.fails_with(1, "cannot read properties file");
    let no_separator = dir.join("bad.properties");
    std::fs::write(&no_separator, "# client settings\nsecurity.protocol=SSL\njust-a-word\n").expect("write");
    kgroup(&["groups", "-F", no_separator.to_str().expect("UTF-8 path")]).await.fails_with(1, "bad.properties:3");
    let unknown = dir.join("unknown.properties");
    std::fs::write(&unknown, "sasl.mechanism=PLAIN\n").expect("write");
    kgroup(&["groups", "-F", unknown.to_str().expect("UTF-8 path")]).await.fails_with(1, "sasl.mechanism");
    kgroup(&["groups", "-X", "no-equals-sign"]).await.fails_with(2, "-X expects KEY=VALUE");
    std::fs::remove_dir_all(&dir).expect("remove temp dir");
}

#[tokio::test]
async fn usage_errors_exit_2_and_help_exits_0() {
    kgroup(&["describe", "g", "--no-such-flag"]).await.fails_with(2, "--no-such-flag");
    kgroup(&["describe"]).await.fails_with(2, "<GROUP>");
    let help = kgroup(&["--help"]).await;
    assert!(help.succeeds().contains("describe"), "{}", help.out);
}
