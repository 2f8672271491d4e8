//! The member's view of its group as JSON: a `GroupSnapshot` every few seconds while it
//! consumes, and a last one when it stops, one JSON document per line (pipe it to `jq`).
//!
//! The broker does not say which generation a member is in, since when it owns each partition,
//! or which commits wait for a rebalance; the snapshot does (`generation`, `assignment` with
//! `owned_since`, `in_flight_commits`, `deferred_commits`, `counters`, `last_transition`).
//! It needs kgroup's `serde` feature (a default one).
//!
//! ```sh
//! KGROUP_BOOTSTRAP=127.0.0.1:9092 cargo run --example snapshot_json -- orders snapshot-demo | jq .generation
//! ```

use std::future::Future;
use std::io::Write;
use std::time::Duration;

use kgroup::{ConfigError, ConsumerConfig, GroupConsumer};

#[tokio::main]
pub async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bootstrap = std::env::var("KGROUP_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let mut args = std::env::args().skip(1);
    let topic = args.next().unwrap_or_else(|| "orders".into());
    let group = args.next().unwrap_or_else(|| "snapshot-json".into());
    let stop = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            eprintln!("cannot wait for ctrl-c ({e}); stopping");
        }
    };
    let every = Duration::from_secs(5);
    run(config(&bootstrap, &group)?, &topic, every, std::io::stdout(), stop).await?;
    Ok(())
}

/// Why the consumer stopped before it was asked to.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The consumer failed.
    #[error(transparent)]
    Consumer(#[from] kgroup::Error),
    /// A snapshot could not be written out.
    #[error("cannot write the snapshot: {0}")]
    Write(#[from] std::io::Error),
    /// A snapshot did not serialize (it always should).
    #[error("cannot serialize the snapshot: {0}")]
    Json(#[from] serde_json::Error),
}

/// Manual commits, and a new group starts at the beginning of the topic.
pub fn config(bootstrap: &str, group: &str) -> Result<ConsumerConfig, ConfigError> {
    ConsumerConfig::from_properties([
        ("bootstrap.servers", bootstrap),
        ("group.id", group),
        ("enable.auto.commit", "false"),
        ("auto.offset.reset", "earliest"),
    ])
}

/// Consumes `topic` (committing each batch) until `stop` completes, writing the member's
/// snapshot to `out` every `every` and once more before it leaves the group.
///
/// Not cancel-safe: dropped, it stops without `close`, so the group waits out the session
/// timeout before its partitions move. Complete `stop` instead.
pub async fn run(
    config: ConsumerConfig,
    topic: &str,
    every: Duration,
    mut out: impl Write,
    stop: impl Future<Output = ()>,
) -> Result<(), RunError> {
    let mut consumer = GroupConsumer::subscribe(config, &[topic]).await?;
    let mut ticks = tokio::time::interval(every);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            _ = ticks.tick() => write_snapshot(&consumer, &mut out).await?,
            // Cancel-safe: a batch it had in hand when another branch won is not lost.
            polled = consumer.poll(consumer.max_poll_records(), Duration::from_secs(1)) => {
                let Some(batch) = polled? else { continue };
                // Processing would go here. The outcomes show in the snapshot's counters.
                consumer.commit(&batch).await?;
            }
        }
    }
    write_snapshot(&consumer, &mut out).await?;
    consumer.close().await?;
    Ok(())
}

/// One line of JSON: `group_state` is an owned, `serde::Serialize` value.
async fn write_snapshot(consumer: &GroupConsumer, out: &mut impl Write) -> Result<(), RunError> {
    let snapshot = consumer.group_state().await?;
    serde_json::to_writer(&mut *out, &snapshot)?;
    writeln!(out)?;
    out.flush()?;
    Ok(())
}
