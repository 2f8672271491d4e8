//! librdkafka's mock cluster (librdkafka 2.12.1 through `rdkafka::mocking`, rdkafka 0.39) as a
//! test peer: real TCP brokers on 127.0.0.1 with error injection, broker outages, added latency,
//! an explicit group coordinator and capped API versions.
//!
//! `rdkafka`'s `MockCluster` holds a raw pointer, so it is neither `Send` nor `Sync`. A
//! [`MockKafka`] therefore owns it on a dedicated std thread and sends it each operation as a
//! closure over a channel, waiting for the answer; the handle is `Send + Sync` and can be shared
//! by any number of tasks. Every operation goes through rdkafka's safe wrapper: this module has no
//! `unsafe` (rdkafka 0.39 exposes `rd_kafka_mock_set_apiversion` as `MockCluster::apiversion`).
//! The cluster is created with `MockCluster::new`, whose own librdkafka client has no bootstrap
//! servers, so nothing but the test talks to the brokers and no injected error is consumed
//! behind the test's back. Dropping the handle destroys the cluster and closes its listeners.
//!
//! # How this mock differs from Kafka
//!
//! Read from librdkafka 2.12.1's `rdkafka_mock_handlers.c` and `rdkafka_mock_cgrp.c`;
//! `tests/mock_cluster.rs` checks the advertised versions, JoinGroup v6, the FindCoordinator
//! error answer, the Heartbeat codes, the missing MEMBER_ID_REQUIRED step and the generations.
//!
//! | What | Mock | Kafka 3.6 |
//! | --- | --- | --- |
//! | ApiVersions | max v2: a v3 request gets UNSUPPORTED_VERSION (35) and only the ApiVersions entry, so clients fall back to v0 | v0..=v3 |
//! | JoinGroup | advertises v0..=v6 but parses the protocols array with a 4-byte count even at flexible v6 (kgroup's v6 request makes it close the connection): capped at v5 by [`MockKafka::start`] | v0..=v9 |
//! | SyncGroup | advertises v0..=v4, same 4-byte array count at flexible v4: capped at v3 | v0..=v5 |
//! | LeaveGroup | advertises v0..=v4 but always reads a single member id (no v3+ members array): capped at v2 | v0..=v5 |
//! | Heartbeat | advertises v0..=v5 (there is no v5 in Kafka); v4 is parsed correctly | v0..=v4 |
//! | OffsetCommit / OffsetFetch | v0..=v9 / v0..=v6 | v0..=v8 (v9 unstable) / v0..=v8 |
//! | FindCoordinator | v0..=v3: no batched (v4) lookup | v0..=v4 |
//! | FindCoordinator errors | the error answer (injected or COORDINATOR_NOT_AVAILABLE) has a null `host`, which the schema forbids; kgroup reads the leading error code of such answers, so the code arrives | `host` is "" |
//! | Heartbeat to an unknown group | GROUP_ID_NOT_FOUND (69) | UNKNOWN_MEMBER_ID (25) |
//! | CreateTopics, DescribeGroups, ListGroups | not implemented (not advertised): create topics with [`MockKafka::create_topic`] | implemented |
//! | Membership | no MEMBER_ID_REQUIRED step: a JoinGroup with an empty member id is admitted at once; member ids are C pointers (`0x7f…`) | v4+: MEMBER_ID_REQUIRED first; `client.id-UUID` |
//! | Generations | a group starts at 1 and the first election makes it 2 | first generation is 1 |
//! | Rebalance timing | first join waits a fixed 3 s initial delay (`rd_kafka_mock_group_initial_rebalance_delay_ms`, not wrapped by rdkafka 0.39 and unreachable through its private pointer); later rebalances wait `session.timeout.ms - 1 s` unless every member rejoined (then 100 ms) | `group.initial.rebalance.delay.ms`, rebalance timeout |
//! | Late follower SyncGroup | INVALID_REQUEST | waits or REBALANCE_IN_PROGRESS |
//!
//! Injected errors ([`MockKafka::inject_errors`]) are one cluster-wide queue per API: each
//! request of that API, to any broker, takes the next code and is answered with it (request
//! body parsed, response carrying only the error). Code `-195` (librdkafka's `__TRANSPORT`)
//! makes the broker close the connection instead.

use std::fmt;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use kafka_protocol::messages::ApiKey;
use rdkafka::error::KafkaResult;
use rdkafka::mocking::{MockCluster, MockCoordinator};
use rdkafka::producer::DefaultProducerContext;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

type Cluster = MockCluster<'static, DefaultProducerContext>;
type Job = Box<dyn FnOnce(&Cluster) + Send>;

/// The caps [`MockKafka::start`] applies: versions the mock advertises but parses wrongly.
pub const MOCK_VERSION_CAPS: &[(ApiKey, i16)] =
    &[(ApiKey::JoinGroup, 5), (ApiKey::SyncGroup, 3), (ApiKey::LeaveGroup, 2)];

/// A mock-cluster operation that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MockError(pub String);

impl fmt::Display for MockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "mock cluster: {}", self.0)
    }
}

impl std::error::Error for MockError {}

/// A running librdkafka mock cluster. `Send + Sync`; dropping it stops the cluster.
pub struct MockKafka {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    bootstrap: String,
    brokers: i32,
}

impl fmt::Debug for MockKafka {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockKafka").field("bootstrap", &self.bootstrap).field("brokers", &self.brokers).finish()
    }
}

impl MockKafka {
    /// Starts `brokers` brokers (ids `1..=brokers`) with [`MOCK_VERSION_CAPS`] applied. Panics
    /// when the cluster cannot start.
    pub fn start(brokers: i32) -> MockKafka {
        let mock = MockKafka::start_uncapped(brokers);
        for &(api, max) in MOCK_VERSION_CAPS {
            mock.cap_api_version(api, max).unwrap_or_else(|e| panic!("cap {api:?} at v{max}: {e}"));
        }
        mock
    }

    /// Starts the mock with the versions it advertises by itself, including the broken ones.
    pub fn start_uncapped(brokers: i32) -> MockKafka {
        let (jobs, inbox) = mpsc::channel::<Job>();
        let (ready_tx, ready) = mpsc::sync_channel::<Result<String, String>>(1);
        let thread = std::thread::Builder::new()
            .name("rdkafka-mock".into())
            .spawn(move || {
                let cluster = match MockCluster::new(brokers) {
                    Ok(cluster) => cluster,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(cluster.bootstrap_servers()));
                // Ends when the handle drops its sender; the cluster is destroyed here.
                while let Ok(job) = inbox.recv() {
                    job(&cluster);
                }
            })
            .expect("spawn the mock cluster thread");
        let bootstrap = match ready.recv() {
            Ok(Ok(bootstrap)) => bootstrap,
            Ok(Err(e)) => panic!("mock cluster with {brokers} brokers: {e}"),
            Err(_) => panic!("mock cluster thread died while starting"),
        };
        for addr in bootstrap.split(',') {
            assert!(addr.starts_with("127.0.0.1:"), "mock broker not on loopback: {bootstrap}");
        }
        MockKafka { jobs: Some(jobs), thread: Some(thread), bootstrap, brokers }
    }

    /// `bootstrap.servers` for the whole cluster: `127.0.0.1:PORT` entries, comma separated.
    pub fn bootstrap(&self) -> String {
        self.bootstrap.clone()
    }

    /// The bootstrap entries one by one.
    pub fn broker_addrs(&self) -> Vec<String> {
        self.bootstrap.split(',').map(str::to_owned).collect()
    }

    /// How many brokers the cluster started with.
    pub fn broker_count(&self) -> i32 {
        self.brokers
    }

    /// Creates `name` with `partitions` partitions and replication factor 1 (the mock has no
    /// CreateTopics handler).
    pub fn create_topic(&self, name: &str, partitions: i32) -> Result<(), MockError> {
        let name = name.to_owned();
        self.run(move |c| c.create_topic(&name, partitions, 1))
    }

    /// Queues error codes for `api`: each following request of that API, to any broker, is
    /// answered with the next code (`0` lets one through, `-195` drops the connection).
    pub fn inject_errors(&self, api: ApiKey, codes: &[i16]) -> Result<(), MockError> {
        let api = rd_api_key(api)?;
        let errors = codes
            .iter()
            .map(|&code| {
                RDKafkaRespErr::try_from(i32::from(code))
                    .map_err(|_| MockError(format!("error code {code} unknown to librdkafka")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.run(move |c| {
            c.request_errors(api, &errors);
            Ok(())
        })
    }

    /// Drops the errors still queued for `api`.
    pub fn clear_errors(&self, api: ApiKey) -> Result<(), MockError> {
        let api = rd_api_key(api)?;
        self.run(move |c| {
            c.clear_request_errors(api);
            Ok(())
        })
    }

    /// Makes `broker_id` the coordinator of `group` (otherwise the mock hashes the group name).
    pub fn set_coordinator(&self, group: &str, broker_id: i32) -> Result<(), MockError> {
        let group = group.to_owned();
        self.run(move |c| c.coordinator(MockCoordinator::Group(group), broker_id))
    }

    /// Closes the broker's connections and refuses new ones (`-1`: every broker). Leadership
    /// does not move.
    pub fn broker_down(&self, broker_id: i32) -> Result<(), MockError> {
        self.run(move |c| c.broker_down(broker_id))
    }

    /// Lets the broker accept connections again (`-1`: every broker).
    pub fn broker_up(&self, broker_id: i32) -> Result<(), MockError> {
        self.run(move |c| c.broker_up(broker_id))
    }

    /// Delays every response of `broker_id` (`-1`: every broker) by `delay` (millisecond
    /// resolution).
    pub fn set_round_trip_time(&self, broker_id: i32, delay: Duration) -> Result<(), MockError> {
        self.run(move |c| c.broker_round_trip_time(broker_id, delay))
    }

    /// Advertises and accepts `api` only up to `max` (from v0). `max` must not exceed what the
    /// mock implements.
    pub fn cap_api_version(&self, api: ApiKey, max: i16) -> Result<(), MockError> {
        self.set_api_versions(api, Some((0, max)))
    }

    /// Sets the version range of `api`; `None` removes the API altogether.
    pub fn set_api_versions(&self, api: ApiKey, range: Option<(i16, i16)>) -> Result<(), MockError> {
        let api = rd_api_key(api)?;
        let (min, max) = range.map_or((None, None), |(min, max)| (Some(min), Some(max)));
        self.run(move |c| c.apiversion(api, min, max))
    }

    /// Runs `op` on the cluster's thread and waits for its result.
    fn run(&self, op: impl FnOnce(&Cluster) -> KafkaResult<()> + Send + 'static) -> Result<(), MockError> {
        let (reply, answer) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |cluster| {
            let _ = reply.send(op(cluster).map_err(|e| MockError(e.to_string())));
        });
        let jobs = self.jobs.as_ref().ok_or_else(|| MockError("stopped".into()))?;
        jobs.send(job).map_err(|_| MockError("cluster thread gone".into()))?;
        answer.recv().map_err(|_| MockError("cluster thread gone".into()))?
    }
}

impl Drop for MockKafka {
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// librdkafka's ApiKey enum for a Kafka API key; both number APIs as Kafka does.
fn rd_api_key(api: ApiKey) -> Result<RDKafkaApiKey, MockError> {
    RD_API_KEYS.get(api as i16 as usize).copied().ok_or_else(|| MockError(format!("{api:?} unknown to librdkafka")))
}

/// `RDKafkaApiKey` has no conversion from a number, so list it in key order (0..=58).
const RD_API_KEYS: [RDKafkaApiKey; 59] = {
    use RDKafkaApiKey::*;
    [
        Produce,
        Fetch,
        ListOffsets,
        Metadata,
        LeaderAndIsr,
        StopReplica,
        UpdateMetadata,
        ControlledShutdown,
        OffsetCommit,
        OffsetFetch,
        FindCoordinator,
        JoinGroup,
        Heartbeat,
        LeaveGroup,
        SyncGroup,
        DescribeGroups,
        ListGroups,
        SaslHandshake,
        ApiVersion,
        CreateTopics,
        DeleteTopics,
        DeleteRecords,
        InitProducerId,
        OffsetForLeaderEpoch,
        AddPartitionsToTxn,
        AddOffsetsToTxn,
        EndTxn,
        WriteTxnMarkers,
        TxnOffsetCommit,
        DescribeAcls,
        CreateAcls,
        DeleteAcls,
        DescribeConfigs,
        AlterConfigs,
        AlterReplicaLogDirs,
        DescribeLogDirs,
        SaslAuthenticate,
        CreatePartitions,
        CreateDelegationToken,
        RenewDelegationToken,
        ExpireDelegationToken,
        DescribeDelegationToken,
        DeleteGroups,
        ElectLeaders,
        IncrementalAlterConfigs,
        AlterPartitionReassignments,
        ListPartitionReassignments,
        OffsetDelete,
        DescribeClientQuotas,
        AlterClientQuotas,
        DescribeUserScramCredentials,
        AlterUserScramCredentials,
        Vote,
        BeginQuorumEpoch,
        EndQuorumEpoch,
        DescribeQuorum,
        AlterIsr,
        UpdateFeatures,
        Envelope,
    ]
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_key_table_is_in_key_order() {
        for (i, key) in RD_API_KEYS.iter().enumerate() {
            assert_eq!(i16::from(*key) as usize, i, "{key:?}");
        }
        assert_eq!(rd_api_key(ApiKey::Heartbeat), Ok(RDKafkaApiKey::Heartbeat));
    }

    #[test]
    fn handle_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<MockKafka>();
    }
}
