//! Micro benchmarks of the wire layer: `cargo bench --bench wire --features test-support`.
//!
//! Plain timing loops (median of several runs) rather than a framework, to keep the build small;
//! the side-by-side scenario benchmarks against librdkafka arrive with the consumer.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use kafka_protocol::messages::{GroupId, HeartbeatRequest};
use kafka_protocol::protocol::StrBytes;
use kgroup::producer::partitioner::partition_for_key;
use kgroup::protocol::codec::encode_request;
use kgroup::protocol::frame::decode_frame;

fn bench(name: &str, iterations: u32, mut f: impl FnMut()) {
    let mut runs: Vec<Duration> = (0..7)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..iterations {
                f();
            }
            start.elapsed() / iterations
        })
        .collect();
    runs.sort();
    println!("{name:<40} median {:>8.1?}  min {:>8.1?}  max {:>8.1?}", runs[3], runs[0], runs[6]);
}

fn main() {
    let keys: Vec<String> = (0..1024).map(|i| format!("customer-{i}")).collect();
    let mut k = 0;
    bench("murmur2 partition of a 12-byte key", 1_000_000, || {
        k = (k + 1) % keys.len();
        black_box(partition_for_key(black_box(keys[k].as_bytes()), 72));
    });

    let heartbeat = HeartbeatRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("orders-consumers")))
        .with_generation_id(17)
        .with_member_id(StrBytes::from_static_str("kgroup-3f9c1a2b-7d4e-4c1a-9e1b-2a6f0c8d5e11"));
    bench("encode Heartbeat v4 with header", 200_000, || {
        black_box(encode_request(black_box(&heartbeat), 4, 7, "kgroup").ok());
    });

    let frame = encode_request(&heartbeat, 4, 7, "kgroup").unwrap_or_default();
    let stream: Vec<u8> = frame.iter().copied().cycle().take(frame.len() * 64).collect();
    bench("split 64 frames off a read buffer", 20_000, || {
        let mut buf = BytesMut::from(&stream[..]);
        while let Ok(Some(f)) = decode_frame(&mut buf, 1 << 20) {
            black_box(f);
        }
    });
}
