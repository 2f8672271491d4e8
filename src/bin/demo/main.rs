//! `cargo run --release --features demo`: the kgroup demo, the seed scenario of the project.
//!
//! Starts a broker on 127.0.0.1 (the embedded nisshi, or Apache Kafka 3.6 from its Maven jars
//! with `--broker kafka36`), or uses `KGROUP_BOOTSTRAP`; creates a 72-partition topic, produces
//! keyed messages, and scales a consumer group from 2 to 30 members one at a time while every
//! member processes batches of 1000 messages and commits each synchronously. Prints a table per
//! step and the final group snapshot.
//!
//! Environment: `KGROUP_BOOTSTRAP` (use that cluster), `KGROUP_BROKER` (`nisshi`, the default,
//! or `kafka36`; the `--broker` flag wins), `KGROUP_DEMO_MEMBERS` (largest group, default 30),
//! `KGROUP_DEMO_ASSIGNOR` (default `range`), `RUST_LOG` (log filter).
//!
//! `--debug-addr ADDR` (e.g. `127.0.0.1:8080`) serves every member on one debug page
//! (`kgroup::debug_http`) while the demo runs.

mod scenario;

use std::io::Write;
use std::time::Duration;

use kgroup::debug_http::DebugServer;
use kgroup::driver::group::GroupHandle;
use kgroup::embedded::kafka36::{Kafka36Cluster, Kafka36Options, KAFKA_VERSION};
use kgroup::embedded::{BrokerOptions, EmbeddedBroker};

/// The broker the demo runs on; dropping it stops a broker the demo started.
enum Broker {
    Nisshi(#[allow(dead_code)] EmbeddedBroker),
    Kafka36(#[allow(dead_code)] Kafka36Cluster),
    External,
}

/// `--broker NAME` from the command line, else `KGROUP_BROKER`, else nisshi (no JVM needed);
/// and `--debug-addr ADDR`, where to serve the debug page (none by default).
fn parse_args() -> Result<(String, Option<String>), scenario::BoxError> {
    let mut args = std::env::args().skip(1);
    let mut choice = std::env::var("KGROUP_BROKER").ok().filter(|v| !v.trim().is_empty());
    let mut debug_addr = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--broker" => choice = Some(args.next().ok_or("--broker needs a value: nisshi or kafka36")?),
            "--debug-addr" => {
                debug_addr = Some(args.next().ok_or("--debug-addr needs an address, e.g. 127.0.0.1:8080")?)
            }
            other => {
                return Err(format!(
                    "unknown argument {other:?} (usage: kgroup-demo [--broker nisshi|kafka36] [--debug-addr ADDR])"
                )
                .into())
            }
        }
    }
    Ok((choice.unwrap_or_else(|| "nisshi".into()), debug_addr))
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "error".into()))
        .with_target(false)
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = run().await {
        eprintln!("\nkgroup-demo: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), scenario::BoxError> {
    let max_members: usize = std::env::var("KGROUP_DEMO_MEMBERS").ok().and_then(|v| v.parse().ok()).unwrap_or(30);
    let assignor = std::env::var("KGROUP_DEMO_ASSIGNOR").unwrap_or_else(|_| "range".into());
    let (choice, debug_addr) = parse_args()?;
    // Kept alive until the end of `run`: dropping it stops the broker.
    let (_broker, bootstrap) = match std::env::var("KGROUP_BOOTSTRAP") {
        Ok(bootstrap) if !bootstrap.trim().is_empty() => {
            println!("Using the cluster at {bootstrap} (KGROUP_BOOTSTRAP).");
            (Broker::External, bootstrap)
        }
        _ if choice == "kafka36" => {
            println!("Starting Apache Kafka {KAFKA_VERSION} (KRaft, one node) on 127.0.0.1 with its default group settings ...");
            let kafka = Kafka36Cluster::start(Kafka36Options::default()).await?;
            let bootstrap = kafka.bootstrap();
            println!("Broker ready at {bootstrap}.");
            (Broker::Kafka36(kafka), bootstrap)
        }
        _ if choice == "nisshi" => {
            println!("Starting the embedded nisshi broker on 127.0.0.1 ...");
            let options = BrokerOptions { initial_rebalance_delay: Duration::from_millis(500), ..Default::default() };
            let broker = EmbeddedBroker::start(options).await?;
            let bootstrap = broker.bootstrap();
            println!("Broker ready at {bootstrap}.");
            (Broker::Nisshi(broker), bootstrap)
        }
        _ => return Err(format!("unknown broker {choice:?}: nisshi or kafka36").into()),
    };
    let id = std::process::id();
    let settings = scenario::Settings {
        bootstrap,
        topic: format!("kgroup-demo-{id}"),
        group: format!("kgroup-demo-{id}"),
        partitions: 72,
        members: (2..=max_members.max(2)).collect(),
        initial_messages: 72_000,
        produce_rate: 10_000,
        batch_size: 1000,
        processing_time: Duration::from_millis(20),
        rebalance_callback_timeout: Duration::from_secs(20),
        steady: Duration::from_millis(500),
        converge_timeout: Duration::from_secs(120),
        assignment_strategy: assignor.clone(),
    };
    println!(
        "Seed scenario: 72 partitions, a group of 2 to {} members ({assignor}), batches of 1000, synchronous commits.\n",
        settings.members.last().copied().unwrap_or(2)
    );
    let progress = |line: &str| {
        eprint!("\r\x1b[2K{line}");
        let _ = std::io::stderr().flush();
    };
    // Kept alive until the end of `run`: dropping it stops the server.
    let debug = match debug_addr {
        Some(addr) => {
            let server = DebugServer::bind(addr).await?;
            println!("Debug page: http://{}/", server.local_addr());
            Some(server)
        }
        None => None,
    };
    let on_member = |n: usize, member: &GroupHandle| {
        if let Some(server) = &debug {
            // Numbers are unique, so the label is free.
            let _ = server.add_member(&format!("member-{n}"), member);
        }
    };
    let report = scenario::run(settings, &progress, &on_member).await?;
    eprint!("\r\x1b[2K");
    println!("{}", scenario::table(&report));
    if !report.unclassified.is_empty() {
        println!("Errors that reached the application unclassified: {:?}", report.unclassified);
    }
    if let Some(snapshot) = &report.final_snapshot {
        println!("Final group snapshot of the first member:\n{}", scenario::summary(snapshot));
    }
    if report.lost > 0 || !report.unclassified.is_empty() || !report.redelivered_after_commit.is_empty() {
        return Err(format!(
            "{} messages lost, {} unclassified errors, {} offsets redelivered after their commit",
            report.lost,
            report.unclassified.len(),
            report.redelivered_after_commit.len()
        )
        .into());
    }
    Ok(())
}
