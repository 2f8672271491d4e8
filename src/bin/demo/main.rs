//! `cargo run --release --features demo`: the kgroup demo, the seed scenario of the project.
//!
//! Starts a broker on 127.0.0.1 (the embedded nisshi, or Apache Kafka 3.6 from its Maven jars
//! with `--broker kafka36`), or uses `KGROUP_BOOTSTRAP`; creates a 72-partition topic, produces
//! keyed messages, and scales a consumer group from 2 to 30 members one at a time while every
//! member processes batches of 1000 messages and commits each synchronously. Prints a table per
//! step and the final group snapshot.
//!
//! Flags: `--broker nisshi|kafka36`, `--json` (the report as one JSON document on stdout),
//! `--metrics-addr HOST:PORT` (every member's metrics for Prometheus at `/metrics`),
//! `--debug-addr HOST:PORT` (the whole group on one live debug page). Logs go to
//! stderr at warn unless `RUST_LOG` says otherwise; the progress line only to a terminal.
//!
//! Environment: `KGROUP_BOOTSTRAP` (use that cluster), `KGROUP_BROKER` (`nisshi`, the default,
//! or `kafka36`; the `--broker` flag wins), `KGROUP_DEMO_MEMBERS` (largest group, default 30),
//! `KGROUP_DEMO_ASSIGNOR` (default `range`), `RUST_LOG` (log filter).

mod scenario;

use std::io::{IsTerminal, Write};
use std::time::Duration;

use kgroup::debug_http::DebugServer;
use kgroup::driver::group::GroupObserver;
use kgroup::embedded::kafka36::{Kafka36Cluster, Kafka36Options, KAFKA_VERSION};
use kgroup::embedded::{BrokerOptions, EmbeddedBroker};

/// The broker the demo runs on; dropping it stops a broker the demo started.
enum Broker {
    Nisshi(#[allow(dead_code)] EmbeddedBroker),
    Kafka36(#[allow(dead_code)] Kafka36Cluster),
    External,
}

/// The command line.
#[derive(Debug, Default)]
struct Args {
    /// `--broker NAME`, else `KGROUP_BROKER`, else nisshi (no JVM needed).
    broker: String,
    /// `--json`: the report as one JSON document on stdout, the rest on stderr.
    json: bool,
    /// `--metrics-addr ADDR`: serve every member's metrics (Prometheus) on `http://ADDR/metrics`.
    metrics_addr: Option<std::net::SocketAddr>,
    /// `--debug-addr ADDR`: serve the whole group's debug page there.
    debug_addr: Option<String>,
}

const USAGE: &str =
    "usage: kgroup-demo [--broker nisshi|kafka36] [--json] [--metrics-addr HOST:PORT] [--debug-addr HOST:PORT]";

fn parse_args() -> Result<Args, scenario::BoxError> {
    let mut args = std::env::args().skip(1);
    let mut parsed = Args {
        broker: std::env::var("KGROUP_BROKER").ok().filter(|v| !v.trim().is_empty()).unwrap_or_else(|| "nisshi".into()),
        ..Args::default()
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--broker" => parsed.broker = args.next().ok_or("--broker needs a value: nisshi or kafka36")?,
            "--json" => parsed.json = true,
            "--debug-addr" => {
                parsed.debug_addr = Some(args.next().ok_or("--debug-addr needs an address, e.g. 127.0.0.1:8080")?)
            }
            "--metrics-addr" => {
                let addr = args.next().ok_or("--metrics-addr needs HOST:PORT")?;
                parsed.metrics_addr = Some(addr.parse().map_err(|e| format!("--metrics-addr {addr:?}: {e}"))?);
            }
            other => return Err(format!("unknown argument {other:?} ({USAGE})").into()),
        }
    }
    Ok(parsed)
}

#[tokio::main]
async fn main() {
    // Warnings only by default: the progress line and the report are the demo's output.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
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
    let args = parse_args()?;
    let choice = args.broker.clone();
    // With --json, stdout carries the report alone.
    let say = |line: &str| if args.json { eprintln!("{line}") } else { println!("{line}") };
    if let Some(addr) = args.metrics_addr {
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .with_http_listener(addr)
            .install()
            .map_err(|e| format!("--metrics-addr {addr}: {e}"))?;
        say(&format!("Metrics (Prometheus) at http://{addr}/metrics"));
    }
    // Kept alive until the end of `run`: dropping it stops the broker.
    let (_broker, bootstrap) = match std::env::var("KGROUP_BOOTSTRAP") {
        Ok(bootstrap) if !bootstrap.trim().is_empty() => {
            say(&format!("Using the cluster at {bootstrap} (KGROUP_BOOTSTRAP)."));
            (Broker::External, bootstrap)
        }
        _ if choice == "kafka36" => {
            say(&format!(
                "Starting Apache Kafka {KAFKA_VERSION} (KRaft, one node) on 127.0.0.1 with its default group settings ..."
            ));
            let kafka = Kafka36Cluster::start(Kafka36Options::default()).await?;
            let bootstrap = kafka.bootstrap();
            say(&format!("Broker ready at {bootstrap}."));
            (Broker::Kafka36(kafka), bootstrap)
        }
        _ if choice == "nisshi" => {
            say("Starting the embedded nisshi broker on 127.0.0.1 ...");
            let options = BrokerOptions { initial_rebalance_delay: Duration::from_millis(500), ..Default::default() };
            let broker = EmbeddedBroker::start(options).await?;
            let bootstrap = broker.bootstrap();
            say(&format!("Broker ready at {bootstrap}."));
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
    say(&format!(
        "Seed scenario: 72 partitions, a group of 2 to {} members ({assignor}), batches of 1000, synchronous commits.\n",
        settings.members.last().copied().unwrap_or(2)
    ));
    // The progress line rewrites itself: only on a terminal, never into a log file or a pipe.
    let terminal = std::io::stderr().is_terminal();
    let progress = |line: &str| {
        if terminal {
            eprint!("\r\x1b[2K{line}");
            let _ = std::io::stderr().flush();
        }
    };
    // Kept alive until the end of `run`: dropping it stops the server.
    let debug = match &args.debug_addr {
        Some(addr) => {
            let server = DebugServer::bind(addr.as_str()).await?;
            say(&format!("Debug page: http://{}/", server.local_addr()));
            Some(server)
        }
        None => None,
    };
    let on_member = |n: usize, member: &GroupObserver| {
        if let Some(server) = &debug {
            // Numbers are unique, so the label is free.
            let _ = server.add_member(&format!("member-{n}"), member);
        }
    };
    let report = scenario::run(settings, &progress, &on_member).await?;
    if terminal {
        eprint!("\r\x1b[2K");
    }
    if args.json {
        println!("{}", scenario::json_report(&report));
    } else {
        println!("{}", scenario::table(&report));
        if !report.unclassified.is_empty() {
            println!("Errors that reached the application unclassified: {:?}", report.unclassified);
        }
        if let Some(snapshot) = &report.final_snapshot {
            println!("Final group snapshot of the first member:\n{}", scenario::summary(snapshot));
        }
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
