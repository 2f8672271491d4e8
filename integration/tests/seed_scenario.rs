//! The seed scenario on a real broker at CI size: 72 partitions, a group scaled from 2 to 10
//! members while a producer keeps writing, every member committing each batch synchronously.

#[path = "../../src/bin/demo/scenario.rs"]
mod scenario;

use std::time::Duration;

use kgroup_integration::{init_tracing, unique_name, TestBroker};

fn settings(bootstrap: &str, assignor: &str) -> scenario::Settings {
    scenario::Settings {
        bootstrap: bootstrap.to_owned(),
        topic: unique_name("seed"),
        group: unique_name("seed-group"),
        partitions: 72,
        members: (2..=10).collect(),
        initial_messages: 36_000,
        produce_rate: 5_000,
        batch_size: 1000,
        processing_time: Duration::from_millis(10),
        steady: Duration::from_millis(300),
        converge_timeout: Duration::from_secs(60),
        assignment_strategy: assignor.to_owned(),
    }
}

fn check(report: &scenario::Report, batch_size: u64) {
    println!("{}", scenario::table(report));
    assert_eq!(report.steps.len(), 9, "one row per group size");
    let generations: Vec<i32> = report.steps.iter().map(|s| s.generation).collect();
    assert!(generations.windows(2).all(|w| w[1] > w[0]), "the generation moves every step: {generations:?}");
    assert!(report.produced > 36_000, "the producer ran during the scale-out");
    assert_eq!(report.lost, 0, "every produced message processed at least once");
    assert_eq!(report.processed_unique, report.produced);
    assert!(report.unclassified.is_empty(), "unclassified errors: {:?}", report.unclassified);
    assert!(
        report.redelivered_after_commit.is_empty(),
        "duplicates must come from fenced or uncommitted batches only: {:?}",
        &report.redelivered_after_commit[..report.redelivered_after_commit.len().min(10)]
    );
    assert!(
        report.max_duplicates_per_partition_per_rebalance <= batch_size,
        "at most one batch per partition per rebalance is processed twice ({})",
        report.max_duplicates_per_partition_per_rebalance
    );
    assert!(report.commit_mismatches.is_empty(), "committed offsets equal the log end: {:?}", report.commit_mismatches);
    assert!(report.steps.iter().all(|s| s.committed > 0), "every step commits");
    let snapshot = report.final_snapshot.as_ref().expect("final snapshot");
    println!("{}", scenario::summary(snapshot));
    assert_eq!(snapshot.state, "Stable");
    assert_eq!(snapshot.generation.as_ref().map(|g| g.id.0), report.steps.last().map(|s| s.generation));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_group_scales_from_2_to_10_members_without_loss() {
    init_tracing();
    let broker = TestBroker::start().await;
    let report =
        tokio::time::timeout(Duration::from_secs(240), scenario::run(settings(broker.bootstrap(), "range"), &|_| {}))
            .await
            .expect("the scenario finishes in time")
            .expect("the scenario runs");
    check(&report, 1000);
}
