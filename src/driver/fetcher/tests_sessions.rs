//! The incremental session path end to end, against a small in-process broker that keeps
//! KIP-227 sessions (nisshi does not: it answers every fetch with session id 0). The fake
//! checks epochs like Kafka, answers incremental fetches with only the partitions that have
//! new data, and can fail one fetch with FETCH_SESSION_ID_NOT_FOUND. Two of them make a
//! cluster in which the leader (node 1) names node 2 as the read replica (KIP-392), and node 2
//! can fail a partition.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, BrokerId, FetchRequest, FetchResponse, MetadataRequest,
    MetadataResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::Compression;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::fixtures::batch_of;
use super::*;
use crate::driver::cluster::ClusterConfig;

const TOPIC: &str = "sessions";
const PARTITIONS: i32 = 3;

/// What the fake saw of one Fetch.
#[derive(Debug, Clone)]
struct SeenFetch {
    session_id: i32,
    epoch: i32,
    sent: Vec<(i32, i64)>,
    forgotten: Vec<i32>,
    answered: i16,
    rack: String,
}

#[derive(Default)]
struct Fake {
    /// High watermark per partition; records are made up on demand.
    high_watermarks: Vec<i64>,
    sessions: BTreeMap<i32, (i32, BTreeMap<i32, i64>)>,
    last_session: i32,
    seen: Vec<SeenFetch>,
    fail_next_incremental: Option<i16>,
    /// As a leader with a replica selector: every partition is answered with this preferred
    /// read replica and no records.
    names_replica: Option<i32>,
    /// This partition is answered with this error code.
    fail_partition: Option<(i32, i16)>,
}

impl Fake {
    fn fetch(&mut self, request: &FetchRequest) -> (FetchResponse, bool) {
        let sent: Vec<(i32, i64)> =
            request.topics.iter().flat_map(|t| t.partitions.iter().map(|p| (p.partition, p.fetch_offset))).collect();
        let forgotten: Vec<i32> = request.forgotten_topics_data.iter().flat_map(|t| t.partitions.clone()).collect();
        let mut seen = SeenFetch {
            session_id: request.session_id,
            epoch: request.session_epoch,
            sent: sent.clone(),
            forgotten: forgotten.clone(),
            answered: 0,
            rack: request.rack_id.to_string(),
        };
        let (session_id, full, partitions) = match request.session_epoch {
            -1 => (0, true, sent.iter().copied().collect::<BTreeMap<_, _>>()),
            0 => {
                self.sessions.remove(&request.session_id);
                self.last_session += 1;
                let partitions: BTreeMap<i32, i64> = sent.iter().copied().collect();
                self.sessions.insert(self.last_session, (1, partitions.clone()));
                (self.last_session, true, partitions)
            }
            epoch => {
                let code = match (self.fail_next_incremental.take(), self.sessions.get(&request.session_id)) {
                    (Some(code), _) => Some(code),
                    (None, None) => Some(70),
                    (None, Some((expected, _))) if *expected != epoch => Some(71),
                    _ => None,
                };
                if let Some(code) = code {
                    self.sessions.remove(&request.session_id);
                    seen.answered = code;
                    self.seen.push(seen);
                    return (FetchResponse::default().with_error_code(code), false);
                }
                let (expected, partitions) = self.sessions.get_mut(&request.session_id).unwrap();
                *expected += 1;
                partitions.extend(sent.iter().copied());
                for p in &forgotten {
                    partitions.remove(p);
                }
                (request.session_id, false, partitions.clone())
            }
        };
        self.seen.push(seen);
        let mut any_data = false;
        let answers: Vec<PartitionData> = partitions
            .iter()
            .filter_map(|(&p, &offset)| {
                if let Some((_, code)) = self.fail_partition.filter(|&(failed, _)| failed == p) {
                    any_data = true;
                    return Some(PartitionData::default().with_partition_index(p).with_error_code(code));
                }
                let hw = self.high_watermarks[p as usize];
                let data = offset < hw && self.names_replica.is_none();
                any_data |= data || self.names_replica.is_some();
                (full || data || self.names_replica.is_some()).then(|| {
                    PartitionData::default()
                        .with_partition_index(p)
                        .with_high_watermark(hw)
                        .with_last_stable_offset(hw)
                        .with_log_start_offset(0)
                        .with_preferred_read_replica(BrokerId(self.names_replica.unwrap_or(-1)))
                        .with_records(data.then(|| batch_of(offset, hw.min(offset + 10), Compression::None)))
                })
            })
            .collect();
        let response =
            FetchResponse::default()
                .with_session_id(session_id)
                .with_responses(vec![FetchableTopicResponse::default()
                    .with_topic(TopicName(StrBytes::from_static_str(TOPIC)))
                    .with_partitions(answers)]);
        (response, any_data)
    }
}

fn respond<R: Encodable>(api: ApiKey, version: i16, correlation_id: i32, body: &R) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    let header_version = if api == ApiKey::ApiVersions { 0 } else { api.response_header_version(version) };
    ResponseHeader::default().with_correlation_id(correlation_id).encode(&mut buf, header_version).unwrap();
    body.encode(&mut buf, version).unwrap();
    let size = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    buf.freeze()
}

/// Serves one connection; metadata lists `brokers` (node id, port), the first leading every
/// partition.
async fn serve(mut stream: TcpStream, fake: Arc<Mutex<Fake>>, brokers: Arc<[(i32, u16)]>) {
    loop {
        let mut size = [0u8; 4];
        if stream.read_exact(&mut size).await.is_err() {
            return;
        }
        let mut frame = vec![0u8; i32::from_be_bytes(size) as usize];
        if stream.read_exact(&mut frame).await.is_err() {
            return;
        }
        let mut body = Bytes::from(frame);
        let api = ApiKey::try_from(i16::from_be_bytes([body[0], body[1]])).unwrap();
        let version = i16::from_be_bytes([body[2], body[3]]);
        let header = RequestHeader::decode(&mut body, api.request_header_version(version)).unwrap();
        let id = header.correlation_id;
        let frame = match api {
            ApiKey::ApiVersions => {
                ApiVersionsRequest::decode(&mut body, version).unwrap();
                let keys = [(ApiKey::ApiVersions, 0, 3), (ApiKey::Metadata, 1, 1), (ApiKey::Fetch, 4, 12)];
                let response = ApiVersionsResponse::default().with_api_keys(
                    keys.iter()
                        .map(|&(k, min, max)| {
                            ApiVersion::default().with_api_key(k as i16).with_min_version(min).with_max_version(max)
                        })
                        .collect(),
                );
                respond(api, version, id, &response)
            }
            ApiKey::Metadata => {
                MetadataRequest::decode(&mut body, version).unwrap();
                let replicas: Vec<BrokerId> = brokers.iter().map(|&(id, _)| BrokerId(id)).collect();
                let partitions = (0..PARTITIONS)
                    .map(|p| {
                        MetadataResponsePartition::default()
                            .with_partition_index(p)
                            .with_leader_id(replicas[0])
                            .with_replica_nodes(replicas.clone())
                            .with_isr_nodes(replicas.clone())
                    })
                    .collect();
                let response = MetadataResponse::default()
                    .with_brokers(
                        brokers
                            .iter()
                            .map(|&(id, port)| {
                                MetadataResponseBroker::default()
                                    .with_node_id(BrokerId(id))
                                    .with_host(StrBytes::from_static_str("127.0.0.1"))
                                    .with_port(i32::from(port))
                            })
                            .collect(),
                    )
                    .with_controller_id(replicas[0])
                    .with_topics(vec![MetadataResponseTopic::default()
                        .with_name(Some(TopicName(StrBytes::from_static_str(TOPIC))))
                        .with_partitions(partitions)]);
                respond(api, version, id, &response)
            }
            ApiKey::Fetch => {
                let request = FetchRequest::decode(&mut body, version).unwrap();
                assert_eq!(body.remaining(), 0);
                let (response, any_data) = fake.lock().unwrap().fetch(&request);
                if !any_data {
                    // Nothing new: hold the answer for `max_wait`, as a broker does.
                    tokio::time::sleep(Duration::from_millis(request.max_wait_ms as u64)).await;
                }
                respond(api, version, id, &response)
            }
            other => panic!("the fake broker does not answer {other:?}"),
        };
        if stream.write_all(&frame).await.is_err() {
            return;
        }
    }
}

/// `nodes` fake brokers (ids 1..=nodes, node 1 the leader), each with every partition up to
/// `high_watermark`; returns them, node 1's address, and the servers to abort.
async fn start_fakes(
    nodes: i32,
    high_watermark: i64,
) -> (Vec<Arc<Mutex<Fake>>>, String, Vec<tokio::task::JoinHandle<()>>) {
    let mut listeners = Vec::new();
    for id in 1..=nodes {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listeners.push((id, listener.local_addr().unwrap().port(), listener));
    }
    let brokers: Arc<[(i32, u16)]> = listeners.iter().map(|&(id, port, _)| (id, port)).collect();
    let mut fakes = Vec::new();
    let mut servers = Vec::new();
    for (_, _, listener) in listeners {
        let fake = Arc::new(Mutex::new(Fake {
            high_watermarks: vec![high_watermark; PARTITIONS as usize],
            ..Default::default()
        }));
        let (shared, brokers) = (fake.clone(), brokers.clone());
        servers.push(tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, shared.clone(), brokers.clone()));
            }
        }));
        fakes.push(fake);
    }
    (fakes, format!("127.0.0.1:{}", brokers[0].1), servers)
}

async fn start_fake(high_watermark: i64) -> (Arc<Mutex<Fake>>, String, tokio::task::JoinHandle<()>) {
    let (mut fakes, addr, mut servers) = start_fakes(1, high_watermark).await;
    (fakes.remove(0), addr, servers.remove(0))
}

/// Reads until every partition reached `end`, checking order; returns the records read.
async fn read_to(fetcher: &Fetcher, next: &mut BTreeMap<i32, i64>, end: i64) -> usize {
    let mut count = 0;
    while next.values().any(|&o| o < end) {
        let event = tokio::time::timeout(Duration::from_secs(10), fetcher.next(usize::MAX)).await.expect("in time").unwrap();
        let FetchEvent::Records(batch) = event else { panic!("{event:?}") };
        for r in &batch.records {
            let expected = next.get_mut(&batch.partition.partition).unwrap();
            assert_eq!(r.offset(), *expected);
            assert_eq!(r.value(), Some(format!("v{}", r.offset()).as_bytes()));
            *expected += 1;
            count += 1;
        }
    }
    count
}

#[tokio::test]
async fn incremental_sessions_end_to_end() {
    let (fake, addr, server) = start_fake(40).await;
    let cluster = Cluster::connect(ClusterConfig::new([addr])).await.expect("connect to the fake");
    let config = FetcherConfig { max_wait: Duration::from_millis(50), ..Default::default() };
    let fetcher = Fetcher::start(cluster, config);
    let tp = |p| TopicPartition::new(TOPIC, p);
    fetcher.assign((0..PARTITIONS).map(|p| (tp(p), StartPosition::Offset(0))).collect());
    let mut next: BTreeMap<i32, i64> = (0..PARTITIONS).map(|p| (p, 0)).collect();
    assert_eq!(read_to(&fetcher, &mut next, 40).await, 120);

    {
        let fake = fake.lock().unwrap();
        let first = &fake.seen[0];
        assert_eq!((first.session_id, first.epoch, first.sent.len()), (0, 0, 3), "opens with a full fetch");
        let second = &fake.seen[1];
        assert_eq!((second.session_id, second.epoch), (1, 1));
        assert!(second.sent.len() <= 3 && second.forgotten.is_empty());
        for (i, seen) in fake.seen.iter().enumerate().skip(1) {
            assert_eq!((seen.session_id, seen.epoch, seen.answered), (1, i as i32, 0), "{seen:?}");
        }
    }
    // Once every partition is read to the end, nothing changes: incremental fetches carry no
    // partition at all.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(fake.lock().unwrap().seen.iter().skip(1).any(|s| s.sent.is_empty() && s.epoch > 0));
    let sessions = fetcher.sessions();
    assert!(matches!(sessions[0].mode, SessionMode::Incremental { session_id: 1, .. }), "{sessions:?}");
    assert!(sessions[0].incremental_fetches > 0);

    // The broker loses the session: one full fetch opens a new one, and nothing is lost.
    {
        let mut fake = fake.lock().unwrap();
        fake.fail_next_incremental = Some(70);
        fake.high_watermarks = vec![60; PARTITIONS as usize];
    }
    assert_eq!(read_to(&fetcher, &mut next, 60).await, 60);
    {
        let fake = fake.lock().unwrap();
        let failed = fake.seen.iter().position(|s| s.answered == 70).expect("the injected error was answered");
        let reopen = &fake.seen[failed + 1];
        assert_eq!((reopen.session_id, reopen.epoch, reopen.sent.len()), (0, 0, 3), "{reopen:?}");
        assert!(fake.seen[failed + 2..].iter().all(|s| s.session_id == 2 && s.epoch > 0));
    }

    // Revoking a partition forgets it in the session.
    fetcher.revoke(vec![tp(2)]);
    next.remove(&2);
    fake.lock().unwrap().high_watermarks = vec![70; PARTITIONS as usize];
    assert_eq!(read_to(&fetcher, &mut next, 70).await, 20);
    // The request after the revoke says so (it may follow one already in flight).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !fake.lock().unwrap().seen.iter().any(|s| s.forgotten == vec![2]) {
        assert!(tokio::time::Instant::now() < deadline, "partition 2 never forgotten");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    {
        let fake = fake.lock().unwrap();
        let forgetting = fake.seen.iter().find(|s| s.forgotten == vec![2]).unwrap();
        assert_eq!((forgetting.session_id, forgetting.answered), (2, 0));
        assert!(forgetting.sent.iter().all(|&(p, _)| p != 2));
        let (_, partitions) = &fake.sessions[&2];
        assert_eq!(partitions.keys().copied().collect::<Vec<_>>(), vec![0, 1]);
    }
    drop(fetcher);
    server.abort();
}

/// The node each partition is fetched from, as the fetcher's gauge shows it.
fn read_replicas(fetcher: &Fetcher) -> BTreeMap<i32, i32> {
    let text = fetcher.shared.metrics.render_prometheus();
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("kgroup_partition_read_replica{")?;
            let (labels, value) = rest.split_once("} ")?;
            let partition = labels.split_once("partition=\"")?.1.split_once('"')?.0.parse().ok()?;
            Some((partition, value.trim().parse::<f64>().ok()? as i32))
        })
        .collect()
}

/// Waits (bounded) until `done` holds for what the fake saw.
async fn wait_until_seen(fake: &Mutex<Fake>, what: &str, done: impl Fn(&[SeenFetch]) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !done(&fake.lock().unwrap().seen) {
        assert!(tokio::time::Instant::now() < deadline, "{what}: {:?}", fake.lock().unwrap().seen);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn partitions_follow_the_read_replica_the_leader_names_and_move_sessions() {
    let (fakes, addr, servers) = start_fakes(2, 40).await;
    let (leader, replica) = (&fakes[0], &fakes[1]);
    leader.lock().unwrap().names_replica = Some(2);
    let cluster = Cluster::connect(ClusterConfig::new([addr])).await.expect("connect to the fake");
    let config = FetcherConfig { max_wait: Duration::from_millis(50), rack: Some("r2".into()), ..Default::default() };
    let fetcher = Fetcher::start(cluster, config);
    let tp = |p| TopicPartition::new(TOPIC, p);
    fetcher.assign((0..PARTITIONS).map(|p| (tp(p), StartPosition::Offset(0))).collect());
    let mut next: BTreeMap<i32, i64> = (0..PARTITIONS).map(|p| (p, 0)).collect();
    assert_eq!(read_to(&fetcher, &mut next, 40).await, 120);
    {
        let seen = &leader.lock().unwrap().seen;
        assert_eq!(seen.len(), 1, "one fetch at the leader names the replica of all three: {seen:?}");
        assert_eq!((seen[0].epoch, seen[0].sent.len(), seen[0].rack.as_str()), (0, 3, "r2"));
        let seen = &replica.lock().unwrap().seen;
        assert_eq!((seen[0].epoch, seen[0].sent.len()), (0, 3), "the replica's own session: {seen:?}");
        assert!(seen.iter().all(|s| s.rack == "r2" && s.answered == 0));
    }
    assert_eq!(read_replicas(&fetcher), (0..PARTITIONS).map(|p| (p, 2)).collect());

    // The replica loses partition 0 (NOT_LEADER_OR_FOLLOWER), and the leader now serves it
    // itself: partition 0 leaves the replica's session and rejoins the leader's, the others
    // leave the leader's.
    {
        let mut leader = leader.lock().unwrap();
        leader.names_replica = None;
        leader.high_watermarks = vec![60; PARTITIONS as usize];
        let mut replica = replica.lock().unwrap();
        replica.fail_partition = Some((0, 6));
        replica.high_watermarks = vec![60; PARTITIONS as usize];
    }
    assert_eq!(read_to(&fetcher, &mut next, 60).await, 60);
    wait_until_seen(replica, "partition 0 forgotten at the replica", |seen| {
        seen.iter().any(|s| s.forgotten == vec![0] && s.answered == 0)
    })
    .await;
    {
        let seen = &leader.lock().unwrap().seen;
        let back = &seen[1];
        assert_eq!((back.session_id, back.epoch), (1, 1), "the leader's session goes on: {seen:?}");
        assert_eq!((back.sent.clone(), back.forgotten.clone()), (vec![(0, 40)], vec![1, 2]));
    }
    let mut expected: BTreeMap<i32, i32> = (0..PARTITIONS).map(|p| (p, 2)).collect();
    expected.insert(0, 1);
    assert_eq!(read_replicas(&fetcher), expected);
    drop(fetcher);
    for server in servers {
        server.abort();
    }
}
