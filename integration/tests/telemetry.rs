//! A member seen from outside its code, on a real broker (nisshi by default, `KGROUP_BOOTSTRAP`
//! for any cluster): its metrics as Prometheus text and through the `metrics` facade agree with
//! what the test did, and its log lines carry group, client id, member id and generation.
//!
//! One test: the log subscriber and the metrics recorder are global to the test binary.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use kgroup::group::{CommitOutcome, GroupSnapshot, StateKind};
use kgroup::producer::{Producer, ProducerConfig, ProducerRecord};
use kgroup::{ConsumerConfig, GroupConsumer};
use kgroup_integration::{unique_name, CapturedLog, TestBroker};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use metrics_util::MetricKind;
use tokio::time::Instant;

const PARTITIONS: i32 = 4;
const MESSAGES: usize = 200;

/// Prometheus text as `series -> value` (`name{labels}` as written).
fn parse_prometheus(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("malformed line {line:?}"));
            (series.to_owned(), value.parse().unwrap_or_else(|_| panic!("malformed value in {line:?}")))
        })
        .collect()
}

fn config(bootstrap: &str, group: &str, client_id: &str) -> ConsumerConfig {
    let mut config = ConsumerConfig::new(bootstrap, group);
    config.client_id = client_id.into();
    config.auto_offset_reset = kgroup::driver::fetcher::OffsetReset::Earliest;
    config.enable_auto_commit = false;
    config.heartbeat_interval = Duration::from_millis(300);
    config.session_timeout = Duration::from_secs(10);
    config
}

/// Polls and commits every batch until `count` records came; returns the partition commits
/// that were committed.
async fn consume_and_commit(consumer: &mut GroupConsumer, count: usize) -> u64 {
    let mut seen = 0;
    let mut committed = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen < count {
        assert!(Instant::now() < deadline, "consumed {seen} of {count} records within 60 s");
        if let Some(batch) = consumer.poll(100, Duration::from_millis(500)).await.expect("poll") {
            seen += batch.records.len();
            let results = consumer.commit(&batch).await.expect("commit");
            committed += results.iter().filter(|r| matches!(r.outcome, CommitOutcome::Committed { .. })).count() as u64;
        }
    }
    committed
}

/// Polls `consumers` in turn until `done` holds for every snapshot (bounded).
async fn poll_until(consumers: &mut [&mut GroupConsumer], done: impl Fn(&GroupSnapshot) -> bool) -> Vec<GroupSnapshot> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut snapshots = Vec::new();
        for consumer in consumers.iter_mut() {
            let _ = consumer.poll(100, Duration::from_millis(100)).await.expect("poll");
            snapshots.push(consumer.group_state().await.expect("snapshot"));
        }
        if snapshots.iter().all(&done) {
            return snapshots;
        }
        assert!(Instant::now() < deadline, "members did not settle within 60 s: {snapshots:#?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_log_spans_describe_the_member() {
    let lines = CapturedLog::default();
    let writer = lines.clone();
    tracing_subscriber::fmt()
        .with_env_filter("kgroup=debug")
        .with_ansi(false)
        .with_target(false)
        .with_writer(move || writer.clone())
        .init();
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().expect("the only metrics recorder of this test binary");

    let broker = TestBroker::start().await;
    let cluster = broker.cluster().await;
    let topic = unique_name("telemetry");
    let group = unique_name("telemetry-group");
    cluster.create_topic(&topic, PARTITIONS, 1).await.expect("create topic");
    let producer = Producer::new(cluster.clone(), ProducerConfig::default()).expect("producer");
    let deliveries: Vec<_> = (0..MESSAGES)
        .map(|i| {
            producer.send(ProducerRecord::new(&topic, Some(format!("key-{i}")), Bytes::from(format!("value-{i}"))))
        })
        .collect();
    producer.flush().await;
    for delivery in deliveries {
        delivery.await.expect("produce");
    }
    producer.close().await;

    let mut a = GroupConsumer::subscribe(config(broker.bootstrap(), &group, "telemetry-a"), &[&topic]).await.unwrap();
    let committed = consume_and_commit(&mut a, MESSAGES).await;
    assert!(committed > 0);
    let mut b = GroupConsumer::subscribe(config(broker.bootstrap(), &group, "telemetry-b"), &[&topic]).await.unwrap();
    let snapshots = poll_until(&mut [&mut a, &mut b], |s| {
        s.state == StateKind::Stable && s.assignment.len() == (PARTITIONS / 2) as usize
    })
    .await;
    let generation = snapshots[0].generation.clone().expect("a stable member has a generation");
    // A heartbeat answered in the settled generation: its latency is recorded.
    let heartbeats = "kgroup_heartbeat_latency_seconds_count";
    let deadline = Instant::now() + Duration::from_secs(30);
    while parse_prometheus(&a.metrics().render_prometheus()).iter().all(|(k, v)| !k.starts_with(heartbeats) || *v < 1.0)
    {
        assert!(Instant::now() < deadline, "no heartbeat answered within 30 s");
        let _ = a.poll(100, Duration::from_millis(100)).await.expect("poll");
    }

    // The member's own registry, as Prometheus text.
    let text = a.metrics().render_prometheus();
    let series = parse_prometheus(&text);
    let base = format!("group=\"{group}\",client_id=\"telemetry-a\"");
    let get = |name: &str, labels: &str| -> f64 {
        let key = if labels.is_empty() { format!("{name}{{{base}}}") } else { format!("{name}{{{base},{labels}}}") };
        *series.get(&key).unwrap_or_else(|| panic!("no series {key} in:\n{text}"))
    };
    assert_eq!(get("kgroup_partition_commits_total", "outcome=\"committed\",reason=\"none\""), committed as f64);
    assert!(get("kgroup_commit_latency_seconds_count", "") >= 1.0);
    assert_eq!(get("kgroup_fetch_records_total", ""), MESSAGES as f64, "every record fetched once:\n{text}");
    assert!(get("kgroup_fetch_bytes_total", "") > 0.0);
    assert!(get("kgroup_group_requests_total", "api=\"JoinGroup\",outcome=\"ok\"") >= 1.0);
    assert!(get("kgroup_group_requests_total", "api=\"SyncGroup\",outcome=\"ok\"") >= 1.0);
    assert!(get("kgroup_rebalances_total", "") >= 1.0, "B's join rebalanced A");
    assert!(get("kgroup_rebalance_duration_seconds_count", "") >= 1.0);
    assert_eq!(get("kgroup_state", "state=\"stable\""), 1.0);
    assert_eq!(get("kgroup_state", "state=\"awaiting_join\""), 0.0);
    assert!(get("kgroup_state_duration_seconds_count", "state=\"awaiting_join\"") >= 1.0);
    assert!(series.contains_key(&format!("kgroup_prefetch_buffer_bytes{{{base}}}")), "{text}");
    // Lag is kept for the partitions A fetches now, and only those; all of them are read to the end.
    let lag: BTreeMap<&String, &f64> =
        series.iter().filter(|(k, _)| k.starts_with("kgroup_partition_lag_records")).collect();
    assert_eq!(lag.len(), snapshots[0].assignment.len(), "one lag series per owned partition:\n{text}");
    for owned in &snapshots[0].assignment {
        let p = &owned.partition;
        assert_eq!(
            get("kgroup_partition_lag_records", &format!("topic=\"{}\",partition=\"{}\"", p.topic, p.partition)),
            0.0
        );
    }

    // The same measurements through the `metrics` facade, with the same labels.
    let facade: Vec<_> = snapshotter.snapshot().into_vec();
    let facade_commits: u64 = facade
        .iter()
        .filter(|(key, ..)| key.kind() == MetricKind::Counter && key.key().name() == "kgroup_partition_commits_total")
        .filter(|(key, ..)| {
            let labels: Vec<(&str, &str)> = key.key().labels().map(|l| (l.key(), l.value())).collect();
            labels.contains(&("client_id", "telemetry-a"))
                && labels.contains(&("group", group.as_str()))
                && labels.contains(&("outcome", "committed"))
        })
        .map(|(.., value)| match value {
            DebugValue::Counter(n) => *n,
            other => panic!("a counter, not {other:?}"),
        })
        .sum();
    assert_eq!(facade_commits, committed);

    // Log lines: each task's inside the member span, with the member id and a generation; the
    // driver's and the consumer's in the generation the member is in now.
    let member = format!("member{{group={group} client_id=telemetry-a member_id={} generation=", generation.member_id);
    let now = format!("{member}{}}}", generation.id.0);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !lines.text().lines().any(|l| l.contains(&format!("{now}:group_driver"))) {
        assert!(Instant::now() < deadline, "the driver logged nothing in {now} within 30 s (heartbeats log at debug)");
        let _ = a.poll(100, Duration::from_millis(100)).await.expect("poll");
    }
    let logs = lines.text();
    for task in ["group_driver", "consumer", "fetcher"] {
        assert!(
            logs.lines().any(|line| line.contains(&member) && line.contains(&format!("}}:{task}:"))),
            "no line of the {task} task in {member}...; the last lines of the log:\n{}",
            logs.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    assert!(
        logs.lines().any(|l| l.contains(&format!("{now}:consumer")) && l.contains("assignment received")),
        "the consumer logs its assignment at info, in the generation it was given in"
    );
    b.close().await.expect("close b");
    a.close().await.expect("close a");
}
