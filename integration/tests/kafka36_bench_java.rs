//! `integration/kafka36/java/BenchConsumer.java`, the Java client `benches/compare.rs` measures,
//! on Kafka 3.6.2: its two roles read what the Rust roles read (every message once, every key and
//! value byte), its commit role times the commits it is asked for after 50 untimed ones, and both
//! report the keys the harness's tables read. No timing is asserted.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use kgroup::embedded::kafka36::{java_peer_classpath, Kafka36Options};
use kgroup::producer::{Producer, ProducerConfig, ProducerRecord};
use kgroup_integration::java_member::java;
use kgroup_integration::{init_tracing, unique_name, TestBroker};

const PARTITIONS: i32 = 12;
const MESSAGES: usize = 2_000;
/// Bound on one JVM run (it also stops itself after 60 s without a record).
const RUN: Duration = Duration::from_secs(120);

/// Runs `BenchConsumer args... properties...` to its end (bounded) and parses its `RESULT` line.
async fn bench_consumer(args: &[&str], properties: &[(&str, &str)]) -> BTreeMap<String, f64> {
    let classpath = java_peer_classpath().unwrap_or_else(|e| panic!("Java peer: {e}"));
    let mut command = Command::new(java());
    command
        .args(["-Xmx256m", "-cp", &classpath, "BenchConsumer"])
        .args(args)
        .args(properties.iter().map(|(k, v)| format!("{k}={v}")))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    kgroup::embedded::die_with_parent(&mut command);
    let mut child = tokio::process::Command::from(command).kill_on_drop(true).spawn().expect("java runs");
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let run = async {
        let (out, err, status) = tokio::join!(read_all(stdout), read_all(stderr), child.wait());
        (out, err, status.expect("waited"))
    };
    let (out, err, status) = tokio::time::timeout(RUN, run).await.expect("BenchConsumer ends within its bound");
    assert!(status.success(), "BenchConsumer {args:?} failed ({status}):\n{out}\n{err}");
    let line = out.lines().find_map(|l| l.strip_prefix("RESULT ")).unwrap_or_else(|| panic!("no RESULT in {out}"));
    line.split_whitespace()
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or_else(|| panic!("not key=value: {kv}"));
            (k.to_string(), v.parse().unwrap_or_else(|_| panic!("not a number: {kv}")))
        })
        .collect()
}

async fn read_all(mut from: impl tokio::io::AsyncRead + Unpin) -> String {
    let mut text = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut from, &mut text).await.expect("readable output");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn java_bench_consumer_reads_everything_and_times_the_commits_asked_for() {
    init_tracing();
    let options = Kafka36Options { initial_rebalance_delay: Duration::ZERO, ..Default::default() };
    let broker = TestBroker::start_kafka36(options).await;
    let topic = unique_name("bench-java");
    let cluster = broker.cluster().await;
    cluster.create_topic(&topic, PARTITIONS, 1).await.expect("topic");
    let producer = Producer::new(cluster, ProducerConfig::default()).expect("producer");
    let records: Vec<(String, String)> = (0..MESSAGES).map(|i| (format!("k{i}"), format!("m{i}"))).collect();
    let deliveries: Vec<_> =
        records.iter().map(|(k, v)| producer.send(ProducerRecord::new(&topic, Some(k.clone()), v.clone()))).collect();
    producer.flush().await;
    for delivery in deliveries {
        delivery.await.expect("delivered");
    }
    producer.close().await;
    let bytes: usize = records.iter().map(|(k, v)| k.len() + v.len()).sum();
    let common = [("auto.offset.reset", "earliest"), ("enable.auto.commit", "false")];

    let count = MESSAGES.to_string();
    let group = unique_name("bench-java-consume");
    let consumed = bench_consumer(&["consume", broker.bootstrap(), &topic, &group, &count], &common).await;
    assert_eq!(consumed["messages"], MESSAGES as f64, "{consumed:?}");
    assert_eq!(consumed["bytes"], bytes as f64, "every key and value read: {consumed:?}");
    for key in ["seconds", "rate", "cpu_at_assign_s", "vm_hwm_kib"] {
        assert!(consumed.get(key).is_some_and(|v| v.is_finite() && *v >= 0.0), "{key} reported: {consumed:?}");
    }
    assert!(consumed["vm_hwm_kib"] > 0.0, "{consumed:?}");

    // Batches of at most 10 records: 2 000 messages hold more than the 50 + 100 commits asked for.
    let group = unique_name("bench-java-commit");
    let properties = [common[0], common[1], ("max.poll.records", "10")];
    let committed = bench_consumer(&["commit", broker.bootstrap(), &topic, &group, "100"], &properties).await;
    assert_eq!(committed["commits"], 100.0, "{committed:?}");
    let per_commit = committed["partitions_per_commit"];
    assert!((1.0..=10.0).contains(&per_commit), "a batch's partitions, 1 to 10: {committed:?}");
    assert!(committed["p50_ms"] <= committed["p99_ms"], "{committed:?}");
}
