//! The seed scenario at CI size for the tests (`seed_kafka36.rs`, `seed_kafka4.rs`): kgroup's
//! members through `benches/shared/seed_run.rs`, judged by its analysis.

use std::sync::Arc;
use std::time::Duration;

use super::seed_run::{analysis, run, KgroupClient, Recorder, RunRecord, RunSpec};

/// kgroup's members on `spec` (on KIP-848 when `spec.member_epochs`), each processing a batch
/// for `processing`, bounded by 240 s; judged with the broker's log, which `broker_log` reads
/// once the run is over. For the tests that run the scenario at CI size.
pub async fn run_kgroup_and_judge(
    spec: &RunSpec,
    processing: Duration,
    broker_log: impl FnOnce() -> String,
) -> (RunRecord, analysis::Analysis) {
    let recorder = Arc::new(Recorder::default());
    let mut client = KgroupClient::new(spec, processing, Duration::from_secs(1), recorder.clone());
    let record = tokio::time::timeout(Duration::from_secs(240), run(spec, &mut client, &recorder, &|_| {}))
        .await
        .expect("the run finishes within 240 s")
        .expect("the run");
    let log = broker_log();
    let timeline = analysis::broker_timeline(&log, &spec.group, &spec.topic, record.topic_created_ms)
        .expect("the broker logged the topic's creation");
    let protocol = if spec.member_epochs { analysis::Protocol::Consumer } else { analysis::Protocol::Eager };
    let analysis = analysis::analyze(&record.events, &record.log_end, &timeline, protocol, record.end_ms);
    (record, analysis)
}

/// What every run must show, whatever the protocol: one line of its figures printed, no problem
/// recorded, everything produced drained, and the producer writing throughout.
pub fn check_run(label: &str, record: &RunRecord, a: &analysis::Analysis) {
    println!(
        "{label}: produced {}, {} commit calls, {} partition offsets committed, failed {:?}, not sent {:?}, \
         duplicates {} ({} of committed batches), lost {}, final generation {:?}",
        record.produced,
        a.commit_calls,
        a.partitions_committed,
        a.failed_calls,
        a.not_sent_calls,
        a.duplicates,
        a.duplicates_of_committed,
        a.lost,
        a.final_generation,
    );
    assert!(record.problems.is_empty(), "{:?}", record.problems);
    assert!(record.drained, "every produced message processed within the drain bound");
    assert!(record.produced > 36_000, "the producer wrote during the run");
}
