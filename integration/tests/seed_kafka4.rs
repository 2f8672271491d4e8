//! The seed scenario at CI size on KIP-848's consumer group protocol (`group.protocol=consumer`)
//! of real Kafka 4 brokers: 4.0.2, which fences an OffsetCommit on the member epoch alone, and
//! 4.4.0, which relaxes that with per-partition assignment epochs (KIP-1251). kgroup members join
//! a 72-partition topic on the autoscaler schedule (2, then 2 more every 8 s, up to 10) while a
//! producer keeps writing, and commit each batch of up to 1000 messages synchronously.
//!
//! From the members' own reports (see `benches/shared/seed_analysis.rs`, which judges a
//! consumer-protocol commit by who held the partition when it was sent): no commit failed at
//! the broker (STALE_MEMBER_EPOCH, UNKNOWN_MEMBER_ID, FENCED_MEMBER_EPOCH or any other code),
//! every committed partition offset was committed by the partition's holder, nothing was lost,
//! and a message was processed twice only when its batch's commit was fenced or failed. No
//! timing is asserted; `KGROUP_SEED_GROUP_PROTOCOL=consumer cargo bench --bench seed` measures.

#[path = "shared/seed_ci.rs"]
mod seed_ci;
#[allow(dead_code)]
#[path = "../../benches/shared/seed_run.rs"]
mod seed_run;

use std::time::Duration;

use kgroup::embedded::kafka36::{Kafka36Options, KafkaRelease};
use kgroup_integration::{init_tracing, unique_name, TestBroker};
use seed_ci::{check_run, run_kgroup_and_judge};
use seed_run::analysis::Analysis;
use seed_run::{RunRecord, RunSpec, Schedule};

const PROCESSING: Duration = Duration::from_millis(200);

fn spec(bootstrap: &str) -> RunSpec {
    RunSpec {
        bootstrap: bootstrap.to_owned(),
        topic: unique_name("seed4"),
        group: unique_name("seed4-group"),
        partitions: 72,
        members: 10,
        schedule: Schedule::Autoscaler { every: Duration::from_secs(8) },
        initial_messages: 36_000,
        produce_rate: 5_000,
        steady: Duration::from_millis(500),
        tail: Duration::from_secs(3),
        stable_timeout: Duration::from_secs(60),
        drain_timeout: Duration::from_secs(90),
        member_epochs: true,
    }
}

async fn run_on(release: KafkaRelease) -> (RunRecord, Analysis) {
    let options = Kafka36Options { release, initial_rebalance_delay: Duration::ZERO, ..Default::default() };
    let mut broker = TestBroker::start_kafka36(options).await;
    let spec = spec(broker.bootstrap());
    run_kgroup_and_judge(&spec, PROCESSING, || broker.kafka36().expect("Kafka 4").log(1).expect("the broker's log"))
        .await
}

fn check(release: KafkaRelease, record: &RunRecord, a: &Analysis) {
    check_run(&format!("Kafka {}", release.version()), record, a);
    assert!(a.failed_calls.is_empty(), "commits the broker refused: {:?}", a.failed_calls);
    assert!(a.not_owner.is_empty(), "commits of partitions another member held: {:?}", a.not_owner);
    assert!(a.ownership_conflicts.is_empty(), "{:?}", a.ownership_conflicts);
    assert!(a.partitions_committed > 0);
    assert_eq!(
        a.owner_commits, a.partitions_committed,
        "every committed partition offset was sent by the partition's holder (unattributed {})",
        a.unattributed_commits
    );
    assert_eq!(a.lost, 0);
    assert_eq!(a.duplicates_of_committed, 0, "duplicates only from batches whose commit was fenced or failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kgroup_on_the_consumer_protocol_commits_only_what_it_holds_on_kafka_4_0() {
    init_tracing();
    let (record, analysis) = run_on(KafkaRelease::Kafka40).await;
    check(KafkaRelease::Kafka40, &record, &analysis);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kgroup_on_the_consumer_protocol_commits_only_what_it_holds_on_kafka_4_4() {
    init_tracing();
    let (record, analysis) = run_on(KafkaRelease::Kafka44).await;
    check(KafkaRelease::Kafka44, &record, &analysis);
}
