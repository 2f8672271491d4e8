//! The Kafka 3.6 compose file cannot be started here (no Docker engine), so what would make it
//! fail at start-up or run the suite against the wrong broker is checked from its text: the
//! image is Apache Kafka 3.6 (Confluent Platform 7.6.x), the KRaft cluster id is a base64 UUID
//! (`kafka-storage format` refuses anything else), the group settings are the ones the
//! conformance suite's expectations assume, and the port is published on loopback only.
//! `.ci/run` also validates the file with `docker-compose config`.

use std::collections::BTreeMap;

fn compose() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/kafka36/docker-compose.yml")).expect("compose file")
}

/// `KEY: value` lines, values unquoted, comments dropped.
fn settings(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(|line| line.split(" #").next().unwrap_or_default().trim())
        .filter_map(|line| line.split_once(": "))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().trim_matches('"').to_owned()))
        .collect()
}

/// Kafka's `Uuid.fromString`: URL-safe base64 that decodes to exactly 16 bytes (22 characters,
/// or 24 with `==` padding).
fn is_base64_uuid(id: &str) -> bool {
    let body = id.strip_suffix("==").unwrap_or(id);
    body.len() == 22 && body.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[test]
fn compose_file_runs_kafka_3_6_as_the_suite_expects() {
    let text = compose();
    let s = settings(&text);
    let image = &s["image"];
    assert!(
        image.starts_with("confluentinc/cp-kafka:7.6."),
        "Confluent Platform 7.6 carries Apache Kafka 3.6: {image}"
    );
    assert!(is_base64_uuid(&s["CLUSTER_ID"]), "CLUSTER_ID {} is not a base64 UUID", s["CLUSTER_ID"]);
    assert_eq!(s["KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS"], "0");
    assert_eq!(s["KAFKA_GROUP_MIN_SESSION_TIMEOUT_MS"], "1000");
    assert_eq!(s["KAFKA_ADVERTISED_LISTENERS"], "PLAINTEXT://127.0.0.1:9092");
    assert_eq!(s["KAFKA_AUTO_CREATE_TOPICS_ENABLE"], "false", "the suite creates its topics");
    assert!(text.contains("- \"127.0.0.1:9092:9092\""), "published on loopback only");
}

#[test]
fn base64_uuid_check_follows_kafka() {
    assert!(is_base64_uuid("MkU3OEVBNTcwNTJENDM2Qk"), "Confluent's documented example");
    assert!(is_base64_uuid("MkU3OEVBNTcwNTJENDM2Qk=="));
    assert!(!is_base64_uuid("kgroup-kafka36-conformance"), "26 characters: not 16 bytes");
    assert!(!is_base64_uuid("MkU3OEVBNTcwNTJENDM2Q+"), "not URL-safe");
}
