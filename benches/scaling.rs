//! How a kgroup group's cost grows with members and partitions, alone (`shared/scaling.rs`;
//! `benches/compare.rs` runs it too, into `RESULTS.md`):
//! `cargo bench --bench scaling --features embedded-broker`.
//!
//! On the embedded nisshi broker and on Apache Kafka 3.6.2 (one KRaft node), as
//! `KGROUP_BENCH_SCALING_BROKERS` (`nisshi,kafka36`) lists them; sizes from `KGROUP_BENCH_SCALING_MEMBERS`,
//! `KGROUP_BENCH_SCALING_PARTITIONS` and `KGROUP_BENCH_SCALING_IDLE_S`. Prints the tables, with
//! the assignors' cost when criterion has `benches/micro.rs`'s estimates. It asserts nothing.

// Shared with `compare`, which reads every field (CPU user and sys, load, throughput).
#[allow(dead_code)]
#[path = "shared/child.rs"]
mod child;
#[allow(dead_code)]
#[path = "shared/criterion.rs"]
mod criterion;
#[path = "shared/machine.rs"]
mod machine;
// For the broker the other benches run on; the scale-out scenario itself is not run here.
#[allow(dead_code)]
#[path = "shared/scaleout.rs"]
mod scaleout;
#[path = "shared/scaling.rs"]
mod scaling;

use std::time::Duration;

use kgroup::embedded::kafka36::{Kafka36Cluster, Kafka36Options, KAFKA_VERSION};
use kgroup::embedded::NISSHI_VERSION;
use machine::{loadavg, machine};
use scaleout::BoxError;

fn main() -> Result<(), BoxError> {
    if child::run_as_child(|args| match args.split_first() {
        Some((role, rest)) if role == "scaling" => scaling::role(rest),
        _ => Err(format!("expected: role scaling ..., got {args:?}").into()),
    })? {
        return Ok(());
    }
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(run())
}

async fn run() -> Result<(), BoxError> {
    let sizes = scaling::Sizes::from_env()?;
    let brokers = std::env::var("KGROUP_BENCH_SCALING_BROKERS").unwrap_or_else(|_| "nisshi,kafka36".into());
    for (k, v) in machine(Vec::new()) {
        println!("{k}: {v}");
    }
    println!("{sizes:?}");
    for broker in brokers.split(',').map(str::trim) {
        let load = loadavg();
        let (label, points) = match broker {
            "nisshi" => {
                let mut nisshi = scaleout::start_broker().await?;
                let points = scaling::run(&nisshi.bootstrap(), &sizes).await;
                nisshi.kill();
                (format!("nisshi {NISSHI_VERSION}"), points?)
            }
            "kafka36" => {
                let options =
                    Kafka36Options { initial_rebalance_delay: Duration::from_millis(500), ..Default::default() };
                let kafka = Kafka36Cluster::start(options).await?;
                (format!("Kafka {KAFKA_VERSION}"), scaling::run(&kafka.bootstrap(), &sizes).await?)
            }
            other => {
                return Err(format!("KGROUP_BENCH_SCALING_BROKERS: unknown broker {other:?} (nisshi, kafka36)").into())
            }
        };
        println!("\n{label} (load {load} -> {})\n\n{}", loadavg(), scaling::table(&points));
    }
    println!("{}", scaling::assignor_table(&criterion::criterion_results()));
    Ok(())
}
