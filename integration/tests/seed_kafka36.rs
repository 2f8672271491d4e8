//! The seed scenario on Apache Kafka 3.6.2 with its real group defaults (3 s initial rebalance
//! delay, 6 s minimum session timeout), at CI size: kgroup members join a 72-partition topic on
//! the autoscaler schedule (2, then 2 more every 8 s without waiting for the group, up to 10)
//! while a producer keeps writing; every member commits each batch of up to 1000 messages
//! synchronously. From the members' own reports and the broker's log (see
//! `benches/shared/seed_analysis.rs`): no commit failed with ILLEGAL_GENERATION,
//! REBALANCE_IN_PROGRESS or UNKNOWN_MEMBER_ID, every committed partition offset was committed by
//! the partition's owner in the commit's generation, nothing was lost, and a message was
//! processed twice only when its batch's commit was fenced or failed. No timing is asserted;
//! `cargo bench --bench seed --features embedded-broker` runs the full size beside librdkafka and the Java client.

#[path = "shared/seed_ci.rs"]
mod seed_ci;
#[allow(dead_code)]
#[path = "../../benches/shared/seed_run.rs"]
mod seed_run;

use std::time::Duration;

use kgroup::embedded::kafka36::Kafka36Options;
use kgroup_integration::{init_tracing, unique_name, TestBroker};
use seed_ci::{check_run, run_kgroup_and_judge};
use seed_run::analysis::Analysis;
use seed_run::{RunRecord, RunSpec, Schedule};

fn spec(bootstrap: &str) -> RunSpec {
    RunSpec {
        bootstrap: bootstrap.to_owned(),
        topic: unique_name("seed36"),
        group: unique_name("seed36-group"),
        partitions: 72,
        members: 10,
        schedule: Schedule::Autoscaler { every: Duration::from_secs(8) },
        initial_messages: 36_000,
        produce_rate: 5_000,
        steady: Duration::from_millis(500),
        tail: Duration::from_secs(3),
        stable_timeout: Duration::from_secs(60),
        drain_timeout: Duration::from_secs(90),
        member_epochs: false,
    }
}

async fn run_kgroup(broker: &mut TestBroker, processing: Duration) -> (RunRecord, Analysis) {
    let spec = spec(broker.bootstrap());
    run_kgroup_and_judge(&spec, processing, || broker.kafka36().expect("Kafka 3.6").log(1).expect("the broker's log"))
        .await
}

fn check(processing: Duration, record: &RunRecord, a: &Analysis) {
    check_run(&format!("processing {processing:?}"), record, a);
    let generations = a.final_generation.map_or(0, |g| g.generation);
    assert!(generations >= 2, "the group rebalanced as it grew (final generation {generations})");
    assert_eq!(a.failed_by_generation(), 0, "commits failed by generation: {:?}", a.failed_calls);
    assert!(a.not_owner.is_empty(), "commits of partitions another member owned: {:?}", a.not_owner);
    assert!(a.ownership_conflicts.is_empty(), "{:?}", a.ownership_conflicts);
    assert!(a.partitions_committed > 0);
    assert_eq!(
        a.owner_commits, a.partitions_committed,
        "every committed partition offset belongs to its owner in the generation it carried \
         (revoke window {}, unattributed {}, unresolved {})",
        a.revoke_window_commits, a.unattributed_commits, a.unresolved_commits
    );
    assert_eq!(a.stamps_checked, a.partitions_committed, "every kgroup stamp checked against the broker's log");
    assert_eq!(a.stamps_contradicted, 0, "the broker's log agrees with every generation kgroup reports");
    assert_eq!(a.lost, 0);
    assert_eq!(a.duplicates_of_committed, 0, "duplicates only from batches whose commit was fenced or failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kgroup_on_the_autoscaler_schedule_commits_only_what_it_owns_on_kafka_3_6() {
    init_tracing();
    let mut broker = TestBroker::start_kafka36(Kafka36Options::default()).await;
    for processing in [Duration::ZERO, Duration::from_millis(200)] {
        let (record, analysis) = run_kgroup(&mut broker, processing).await;
        check(processing, &record, &analysis);
    }
}
