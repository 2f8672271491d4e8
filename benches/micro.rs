//! Criterion micro benchmarks of kgroup's hot paths:
//! `cargo bench --bench micro --features test-support`.
//!
//! - `decode/*`: one partition's fetched record data (64 batches of 128 keyed 100-byte records,
//!   about 1 MiB uncompressed, the size of a default `max.partition.fetch.bytes`) through
//!   `decode_partition`, uncompressed and with every codec kgroup reads; `decode/memcpy` copies
//!   the same uncompressed bytes, the machine's ceiling for touching them once. Throughput is
//!   counted in uncompressed bytes for every codec, so the rows compare to each other and to
//!   the copy. The decoded records are dropped outside the timing (the application drops them
//!   later); `decode/none+drop` times decoding and dropping together.
//! - `encode/OffsetCommit v8`: a request for 72 partitions with its header, as the coordinator
//!   task frames it.
//! - `machine/*`: the membership state machine in steady state (Stable, 72 partitions): one
//!   commit round (command, request out, response in, events drained) and one heartbeat round
//!   (timer, request out, response in), the work the coordinator task does per commit and per
//!   heartbeat interval.
//!
//! - `assign/*`: the leader's assignment for every built-in assignor, with M members on one
//!   topic of P partitions, where M - 1 members own a balanced share from the previous
//!   generation and one member is new (the rebalance of a scale-out step); `cooperative-sticky`
//!   includes KIP-429's first-round adjustment. Sizes from 10 x 1 000 to 100 x 10 000 show how
//!   the cost grows with members and with partitions.
//!
//! `benches/compare.rs` reads the estimates back (`target/criterion`) into `RESULTS.md`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::join_group_response::JoinGroupResponse;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, GroupId, HeartbeatResponse, OffsetCommitRequest, OffsetCommitResponse,
    SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
use kgroup::driver::fetcher::decode::{decode_partition, DecompressionBudget, PartitionFetch};
use kgroup::driver::fetcher::IsolationLevel;
use kgroup::group::assignor::{
    assignor_by_name, cooperative_adjust, encode_assignment, GroupMember, RebalanceProtocol, Subscription,
};
use kgroup::group::{
    CoordinatorFound, GroupConfig, GroupMachine, GroupRequest, GroupResponse, OutgoingRequest, TopicPartition,
};
use kgroup::group::{GenerationId, StateKind};
use kgroup::protocol::codec::encode_request;
use kgroup::protocol::versions::NegotiatedVersions;

const PARTITIONS: i32 = 72;
const BATCHES: i64 = 64;
const RECORDS_PER_BATCH: i64 = 128;
const VALUE_SIZE: usize = 100;

fn str_bytes(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_owned())
}

/// One partition's fetched bytes: `BATCHES` batches, as a producer with `compression` writes them.
fn partition_data(compression: Compression) -> Bytes {
    let mut buf = BytesMut::new();
    for batch in 0..BATCHES {
        let records: Vec<Record> = (0..RECORDS_PER_BATCH)
            .map(|i| {
                let offset = batch * RECORDS_PER_BATCH + i;
                // Values vary a little, as real payloads do, so the codecs have work to do.
                let mut value = format!("message {offset} ").into_bytes();
                value.resize(VALUE_SIZE, b'a' + (offset % 26) as u8);
                Record {
                    transactional: false,
                    control: false,
                    delete_horizon: false,
                    partition_leader_epoch: 0,
                    producer_id: -1,
                    producer_epoch: -1,
                    timestamp_type: TimestampType::Creation,
                    offset,
                    sequence: offset as i32,
                    timestamp: 1_700_000_000_000 + offset,
                    key: Some(Bytes::from(format!("key-{}", offset % 10_000))),
                    value: Some(Bytes::from(value)),
                    headers: IndexMap::new(),
                }
            })
            .collect();
        RecordBatchEncoder::encode(&mut buf, &records, &RecordEncodeOptions { version: 2, compression })
            .expect("bench records encode");
    }
    buf.freeze()
}

fn decode(c: &mut Criterion) {
    let topic: Arc<str> = Arc::from("bench");
    // Never exhausted: every iteration decodes the same few MiB.
    let budget = DecompressionBudget::new(usize::MAX);
    let fetch = PartitionFetch {
        topic: &topic,
        partition: 0,
        fetch_offset: 0,
        isolation: IsolationLevel::ReadUncommitted,
        aborted_transactions: &[],
        last_stable_offset: -1,
    };
    let plain = partition_data(Compression::None);
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Bytes(plain.len() as u64));
    group.bench_function("memcpy", |b| {
        let mut target = vec![0u8; plain.len()];
        b.iter(|| {
            target.copy_from_slice(black_box(&plain));
            black_box(&target);
        })
    });
    for (name, compression) in [
        ("none", Compression::None),
        ("gzip", Compression::Gzip),
        ("snappy", Compression::Snappy),
        ("lz4", Compression::Lz4),
        ("zstd", Compression::Zstd),
    ] {
        let data = partition_data(compression);
        let expected = (BATCHES * RECORDS_PER_BATCH) as usize;
        let check = decode_partition(&data, &fetch, &budget);
        assert_eq!((check.records.len(), check.error), (expected, None), "{name} data decodes");
        // Decoding only: the records are dropped outside the timing, as the application drops
        // them later, one batch at a time. `none+drop` below times both together.
        group.bench_function(name, |b| {
            b.iter_custom(|iterations| {
                let mut decoding = Duration::ZERO;
                for _ in 0..iterations {
                    let started = Instant::now();
                    let decoded = decode_partition(black_box(&data), &fetch, &budget);
                    decoding += started.elapsed();
                    drop(black_box(decoded));
                }
                decoding
            })
        });
    }
    group.bench_function("none+drop", |b| b.iter(|| decode_partition(black_box(&plain), &fetch, &budget)));
    group.finish();
}

fn encode_offset_commit(c: &mut Criterion) {
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(str_bytes("orders-consumers")))
        .with_generation_id_or_member_epoch(17)
        .with_member_id(str_bytes("kgroup-3f9c1a2b-7d4e-4c1a-9e1b-2a6f0c8d5e11"))
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(str_bytes("orders")))
            .with_partitions(
                (0..PARTITIONS)
                    .map(|p| {
                        OffsetCommitRequestPartition::default()
                            .with_partition_index(p)
                            .with_committed_offset(1_000_000 + i64::from(p))
                    })
                    .collect(),
            )]);
    c.bench_function("encode/OffsetCommit v8, 72 partitions", |b| {
        b.iter(|| black_box(encode_request(black_box(&request), 8, 7, "kgroup")))
    });
}

/// The versions a Kafka 3.6 coordinator advertises for the group APIs.
fn kafka36_versions() -> NegotiatedVersions {
    let ranges = [
        (ApiKey::FindCoordinator, 4),
        (ApiKey::JoinGroup, 9),
        (ApiKey::SyncGroup, 5),
        (ApiKey::Heartbeat, 4),
        (ApiKey::LeaveGroup, 5),
        (ApiKey::OffsetCommit, 8),
        (ApiKey::OffsetFetch, 8),
    ];
    NegotiatedVersions::negotiate(
        &ApiVersionsResponse::default().with_api_keys(
            ranges
                .iter()
                .map(|&(k, max)| ApiVersion::default().with_api_key(k as i16).with_min_version(0).with_max_version(max))
                .collect(),
        ),
    )
}

/// A member in virtual time, Stable as a follower owning all `PARTITIONS` partitions.
struct Member {
    machine: GroupMachine,
    now: Instant,
}

impl Member {
    fn stable() -> Self {
        let now = Instant::now();
        // Each heartbeat round moves virtual time on by a heartbeat interval, so the timers of
        // minutes (`max.poll.interval.ms`, `metadata.max.age.ms`) would fire within a
        // benchmark's millions of rounds: a leave or a metadata refresh instead of a heartbeat.
        let year = Duration::from_secs(365 * 24 * 3600);
        let config = GroupConfig { rebalance_timeout: year, metadata_max_age: year, ..GroupConfig::new("bench") };
        let mut machine = GroupMachine::new(config, ["t"], now);
        machine.set_partition_counts([("t".to_string(), PARTITIONS)]);
        let mut member = Member { machine, now };
        let find = member.take();
        member.machine.handle_coordinator_found(
            now,
            find.id,
            CoordinatorFound { node_id: 1, versions: kafka36_versions() },
        );
        // The first JoinGroup is told its member id (KIP-394), the second joins generation 1.
        for generation in [-1, 1] {
            let join = member.take();
            let response = JoinGroupResponse::default()
                .with_error_code(if generation < 0 { 79 } else { 0 })
                .with_generation_id(generation)
                .with_member_id(str_bytes("m-1"))
                .with_leader(str_bytes("m-0"))
                .with_protocol_type(Some(str_bytes("consumer")))
                .with_protocol_name(Some(str_bytes("range")));
            member.respond(join, GroupResponse::JoinGroup(response));
        }
        let sync = member.take();
        let partitions: Vec<TopicPartition> = (0..PARTITIONS).map(|p| TopicPartition::new("t", p)).collect();
        let response = SyncGroupResponse::default()
            .with_protocol_type(Some(str_bytes("consumer")))
            .with_protocol_name(Some(str_bytes("range")))
            .with_assignment(encode_assignment(&partitions, None));
        member.respond(sync, GroupResponse::SyncGroup(response));
        assert_eq!(member.machine.state(), StateKind::Stable);
        member
    }

    fn take(&mut self) -> OutgoingRequest {
        self.machine.poll_request().expect("the machine has a request to send")
    }

    fn respond(&mut self, request: OutgoingRequest, response: GroupResponse) {
        self.machine.handle_response(self.now, request.id, response);
        self.drain();
    }

    /// What the coordinator task does after every input: drain the events, read the timer.
    fn drain(&mut self) {
        while let Some(event) = self.machine.poll_event() {
            black_box(event);
        }
        black_box(self.machine.poll_timeout());
    }
}

fn machine(c: &mut Criterion) {
    let mut member = Member::stable();
    let partition = TopicPartition::new("t", 5);
    let mut offset = 0;
    c.bench_function("machine/commit round, 1 partition", |b| {
        b.iter(|| {
            offset += 1000;
            let lease = member.machine.lease(&partition, offset).expect("partition owned");
            member.machine.commit(vec![lease], member.now);
            let request = member.take();
            let GroupRequest::OffsetCommit(body) = &request.body else { panic!("an OffsetCommit") };
            let topic = &body.topics[0];
            let response = OffsetCommitResponse::default().with_topics(vec![OffsetCommitResponseTopic::default()
                .with_name(topic.name.clone())
                .with_partitions(vec![
                    OffsetCommitResponsePartition::default().with_partition_index(topic.partitions[0].partition_index)
                ])]);
            member.respond(request, GroupResponse::OffsetCommit(response));
        })
    });
    let mut member = Member::stable();
    c.bench_function("machine/heartbeat round", |b| {
        b.iter(|| {
            let at = member.machine.poll_timeout().expect("a heartbeat timer");
            member.now = member.now.max(at) + Duration::from_millis(1);
            member.machine.handle_timeout(member.now);
            let request = member.take();
            assert!(matches!(request.body, GroupRequest::Heartbeat(_)), "a heartbeat is due, not {:?}", request.body);
            member.respond(request, GroupResponse::Heartbeat(HeartbeatResponse::default()));
        })
    });
}

/// `members` on one topic of `partitions`: all but the last own a round-robin share from
/// generation 7, the last has just joined.
fn scale_out_members(members: usize, partitions: i32) -> Vec<GroupMember> {
    let owners = members - 1;
    (0..members)
        .map(|m| GroupMember {
            member_id: format!("member-{m:03}"),
            group_instance_id: None,
            subscription: Subscription {
                topics: vec!["t".into()],
                owned_partitions: (0..partitions)
                    .filter(|p| m < owners && *p as usize % owners == m)
                    .map(|p| TopicPartition::new("t", p))
                    .collect(),
                generation: GenerationId(7),
                ..Default::default()
            },
        })
        .collect()
}

fn assign(c: &mut Criterion) {
    let mut group = c.benchmark_group("assign");
    group.sample_size(10);
    for (members, partitions) in [(10, 1_000), (100, 1_000), (10, 10_000), (100, 10_000)] {
        let group_members = scale_out_members(members, partitions);
        let counts = std::collections::BTreeMap::from([("t".to_string(), partitions)]);
        for name in ["range", "roundrobin", "sticky", "cooperative-sticky"] {
            let assignor = assignor_by_name(name).expect("a built-in assignor");
            let cooperative = assignor.rebalance_protocol() == RebalanceProtocol::Cooperative;
            group.bench_function(format!("{name}/{members} members x {partitions} partitions"), |b| {
                b.iter(|| {
                    let plan = assignor.assign(black_box(&group_members), &counts);
                    if cooperative {
                        cooperative_adjust(plan, &group_members)
                    } else {
                        plan
                    }
                })
            });
        }
    }
    group.finish();
}

/// Short runs: the machine is shared and the figures are ratios, not fine-grained regressions.
fn config() -> Criterion {
    Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3))
}

criterion_group! { name = benches; config = config(); targets = decode, encode_offset_commit, machine, assign }
criterion_main!(benches);
