//! A consumer over SASL_SSL: TLS with the cluster's CA file, and SCRAM-SHA-512 credentials,
//! all read from a Java-style properties file. A Java or librdkafka client's file loads as it
//! is: the keys kgroup does not need are logged and ignored.
//!
//! ```properties
//! bootstrap.servers=broker1.example.com:9093
//! group.id=orders
//! security.protocol=SASL_SSL
//! sasl.mechanism=SCRAM-SHA-512
//! sasl.username=orders-consumer
//! sasl.password=...
//! ssl.ca.location=/etc/kafka/ca.pem
//! enable.auto.commit=false
//! auto.offset.reset=earliest
//! ```
//!
//! The file holds a password: keep it readable by the consumer's user only. A mistake in it
//! (a missing `sasl.mechanism`, an unreadable CA file, a typo in a key) fails before anything
//! connects, naming the key; a wrong password or an untrusted certificate fails at the first
//! connection with a `kgroup::SecurityError` that is not retried.
//!
//! ```sh
//! cargo run --example tls_scram -- client.properties orders     # or KGROUP_CONFIG=client.properties
//! ```
//!
//! `KGROUP_BOOTSTRAP`, when set, replaces the file's `bootstrap.servers`.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::time::Duration;

use kgroup::group::{CommitOutcome, TopicPartition};
use kgroup::{ConfigError, ConsumerConfig, GroupConsumer};

#[tokio::main]
pub async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let file = args.next().or_else(|| std::env::var("KGROUP_CONFIG").ok());
    let file = file.unwrap_or_else(|| "client.properties".into());
    let topic = args.next().unwrap_or_else(|| "orders".into());
    let stop = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            eprintln!("cannot wait for ctrl-c ({e}); stopping");
        }
    };
    let mut config = config(&file)?;
    // The same file against another cluster (its CA and credentials must fit it).
    if let Ok(bootstrap) = std::env::var("KGROUP_BOOTSTRAP") {
        config.bootstrap_servers = bootstrap.split(',').map(|server| server.trim().to_owned()).collect();
    }
    let report = run(config, &topic, stop).await?;
    println!("{report:#?}");
    Ok(())
}

/// What the consumer did until it stopped.
#[derive(Debug, Default)]
pub struct Report {
    /// Records read, per partition.
    pub processed: BTreeMap<TopicPartition, u64>,
    /// The last offset committed per partition (the next record to read).
    pub committed: BTreeMap<TopicPartition, i64>,
}

/// The consumer's settings, security included, from a properties file.
pub fn config(file: impl AsRef<Path>) -> Result<ConsumerConfig, ConfigError> {
    let config = ConsumerConfig::from_properties_file(file)?;
    // PLAINTEXT is the default: refuse it here, so a file that forgot `security.protocol`
    // does not connect without TLS and authentication.
    let protocol = config.security.protocol_name();
    if protocol != "SASL_SSL" {
        return Err(ConfigError::InvalidValue {
            key: "security.protocol",
            value: protocol.into(),
            reason: "this consumer connects with TLS and SCRAM only: set SASL_SSL".into(),
        });
    }
    Ok(config)
}

/// Consumes `topic`, committing each batch, until `stop` completes; then leaves the group.
///
/// Not cancel-safe: dropped, it stops without `close`, so the group waits out the session
/// timeout before its partitions move. Complete `stop` instead.
pub async fn run(config: ConsumerConfig, topic: &str, stop: impl Future<Output = ()>) -> Result<Report, kgroup::Error> {
    // Connecting authenticates: a wrong password or CA fails here, not at the first poll.
    let mut consumer = GroupConsumer::subscribe(config, &[topic]).await?;
    let mut report = Report::default();
    tokio::pin!(stop);
    loop {
        let polled = tokio::select! {
            () = &mut stop => break,
            polled = consumer.poll(consumer.max_poll_records(), Duration::from_secs(1)) => polled?,
        };
        let Some(batch) = polled else { continue };
        *report.processed.entry(batch.partition.clone()).or_default() += batch.records.len() as u64;
        for result in consumer.commit(&batch).await? {
            match result.outcome {
                CommitOutcome::Committed { .. } => {
                    report.committed.insert(result.partition, result.offset);
                }
                // Moved to another member, which reads the batch again.
                CommitOutcome::Fenced { .. } => {}
                outcome => eprintln!("commit of {} at {} failed: {outcome:?}", result.partition, result.offset),
            }
        }
    }
    consumer.close().await?;
    Ok(report)
}
