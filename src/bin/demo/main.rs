//! `cargo run --release`: the kgroup demo.
//!
//! Starts the embedded nisshi broker (or uses `KGROUP_BOOTSTRAP`), creates a 72-partition topic,
//! produces keyed messages and prints what the cluster looks like. Later stages of the project
//! grow it into the 2-to-30-member scale-out scenario.

use std::time::{Duration, Instant};

use kgroup::embedded::{BrokerOptions, EmbeddedBroker};
use kgroup::producer::{Acks, Compression, Producer, ProducerConfig, ProducerRecord};
use kgroup::protocol::versions::CLIENT_RANGES;
use kgroup::{Cluster, ClusterConfig};

const TOPIC_PARTITIONS: i32 = 72;
const MESSAGES: usize = 72_000;

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_target(false)
        .init();
    if let Err(e) = run().await {
        eprintln!("kgroup-demo: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    // Kept alive until the end of `run`: dropping it stops the broker.
    let (_broker, bootstrap) = match std::env::var("KGROUP_BOOTSTRAP") {
        Ok(bootstrap) if !bootstrap.trim().is_empty() => {
            println!("Using the cluster at {bootstrap} (KGROUP_BOOTSTRAP).");
            (None, bootstrap)
        }
        _ => {
            println!("Starting the embedded nisshi broker on 127.0.0.1 ...");
            let broker = EmbeddedBroker::start(BrokerOptions::default()).await?;
            let bootstrap = broker.bootstrap();
            println!("Broker ready at {bootstrap}.");
            (Some(broker), bootstrap)
        }
    };
    let cluster = Cluster::connect(ClusterConfig::from_bootstrap_servers(&bootstrap)?).await?;
    let topic = format!("kgroup-demo-{}", std::process::id());
    cluster.create_topic(&topic, TOPIC_PARTITIONS, 1).await?;
    println!("Created topic {topic} with {TOPIC_PARTITIONS} partitions.");

    let producer = Producer::new(
        cluster.clone(),
        ProducerConfig {
            acks: Acks::All,
            compression: Compression::Lz4,
            linger: Duration::from_millis(5),
            ..Default::default()
        },
    )?;
    let started = Instant::now();
    let mut deliveries = Vec::with_capacity(MESSAGES);
    for i in 0..MESSAGES {
        deliveries.push(producer.send(ProducerRecord::new(
            &topic,
            Some(format!("order-{}", i % 5000)),
            format!("payload {i}"),
        )));
        if i % 10_000 == 9_999 {
            eprint!("\rproduced {:>6} / {MESSAGES}", i + 1);
        }
    }
    producer.flush().await;
    let mut per_partition = vec![0usize; TOPIC_PARTITIONS as usize];
    for delivery in deliveries {
        per_partition[delivery.await?.partition as usize] += 1;
    }
    producer.close().await;
    let elapsed = started.elapsed();
    eprintln!();
    println!(
        "Produced {MESSAGES} keyed messages (acks=all, lz4) in {:.2?}: {:.0} msg/s.",
        elapsed,
        MESSAGES as f64 / elapsed.as_secs_f64()
    );

    let metadata = cluster.refresh_metadata(Some(&[&topic])).await?;
    println!("\nCluster {}:", metadata.cluster_id.as_deref().unwrap_or("(no id)"));
    for broker in metadata.brokers.values() {
        println!("  broker {} at {}", broker.node_id, broker.addr());
    }
    let info = &metadata.topics[&topic];
    println!("\nTopic {topic}: {} partitions", info.partitions.len());
    println!("  {:>9}  {:>6}  {:>12}  {:>8}", "partition", "leader", "leader epoch", "messages");
    for p in info.partitions.iter().take(6) {
        println!(
            "  {:>9}  {:>6}  {:>12}  {:>8}",
            p.partition, p.leader, p.leader_epoch, per_partition[p.partition as usize]
        );
    }
    println!("  ... ({} more)", info.partitions.len().saturating_sub(6));
    let (min, max) = (per_partition.iter().min().unwrap_or(&0), per_partition.iter().max().unwrap_or(&0));
    println!("  messages per partition: min {min}, max {max} (murmur2 of 5000 distinct keys)");

    let conn = cluster.any_connection().await?;
    println!("\nAPI versions negotiated with {}:", conn.addr());
    for &(api, ours_min, ours_max) in CLIENT_RANGES {
        let chosen = conn.versions().get(api).map(|v| format!("v{v}")).unwrap_or_else(|_| "unsupported".into());
        println!("  {:<16} {:>11}   (kgroup speaks v{ours_min}..v{ours_max})", format!("{api:?}"), chosen);
    }
    println!("\nThe consumer-group scenario (2 to 30 members, synchronous commits) arrives with the group core.");
    Ok(())
}
