//! The side-by-side scale-out scenario alone, several runs:
//! `cargo bench --bench scaleout --features embedded-broker`.
//!
//! `KGROUP_BENCH_MEMBERS` (largest group, default 10) and `KGROUP_BENCH_RUNS` (runs per client,
//! default 3). The scenario itself is in `shared/scaleout.rs`, which `benches/compare.rs` runs
//! too. The tables go to stdout, per-run raw figures to stderr.

#[path = "shared/scaleout.rs"]
mod scaleout;

use kgroup::embedded::NISSHI_VERSION;
use scaleout::{env_usize, BoxError};

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let members = env_usize("KGROUP_BENCH_MEMBERS", 10).clamp(2, 72);
    let runs = env_usize("KGROUP_BENCH_RUNS", 3).clamp(1, 20);
    let mut broker = scaleout::start_broker().await?;
    let bootstrap = broker.bootstrap();
    eprintln!("nisshi {NISSHI_VERSION} at {bootstrap}; 2..={members} members, {runs} run(s) per client");
    let result = scaleout::run_all(&bootstrap, members, runs).await;
    broker.kill();
    let (kgroup, librdkafka) = result?;
    println!("{}", scaleout::table(members, runs, &kgroup, &librdkafka));
    println!("{}", scaleout::step_table(&kgroup, &librdkafka));
    Ok(())
}
