//! The real `GroupMachine`, driven by an arbitrary sequence of coordinator answers, request
//! failures, clock jumps and application commands, in virtual time.
//!
//! The coordinator here follows the protocol's shape (a generation is handed out once, a
//! generation's assignment does not change between SyncGroup answers) and nothing else: error
//! codes, member ids, leaders, protocol names, skipped generations, answers out of order, answers
//! of the wrong type and undecodable assignments are all the fuzzer's choice. Checked after every
//! input (DESIGN section 4):
//! - nothing panics, and no timer is left in the past;
//! - a lease is handed out only for a partition the coordinator assigned to this member in the
//!   lease's generation;
//! - every OffsetCommit sent with generation G and member M covers only offsets of leases the
//!   application committed, each for a partition assigned to M in every generation from the
//!   lease's up to G (an uninterrupted ownership streak). Under the cooperative protocol the
//!   streak may end in G itself when G's assignment revokes the partition: KIP-429 keeps it with
//!   its owner through G (nobody else is given it before G + 1), so its revoke handler commits
//!   with G, as Java's does.
#![no_main]

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use arbitrary::{Result, Unstructured};
use bytes::Bytes;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions, OffsetFetchResponseTopic,
    OffsetFetchResponseTopics,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kgroup::group::assignor::{assignor_by_name, decode_assignment, encode_assignment, Subscription};
use kgroup::group::{
    CoordinatorFound, GroupConfig, GroupMachine, GroupRequest, GroupResponse, Lease, OutgoingRequest, RequestFailure,
    TopicPartition,
};
use kgroup::protocol::error_code::KafkaCode;
use kgroup::protocol::versions::NegotiatedVersions;
use libfuzzer_sys::fuzz_target;

const TOPIC: &str = "t";
const PARTITIONS: i32 = 6;
/// NONE often, then every code the group APIs answer with.
const CODES: &[i16] = &[0, 0, 0, 0, 0, 0, -1, 3, 7, 12, 14, 15, 16, 22, 23, 24, 25, 26, 27, 30, 35, 79, 81, 82, 88];
const PROTOCOLS: &[&str] = &["range", "roundrobin", "sticky", "cooperative-sticky", "unknown"];

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_owned())
}

/// What the fuzzed coordinator handed out, and what the application did.
#[derive(Default)]
struct Model {
    cooperative: bool,
    last_generation: i32,
    next_member: u32,
    /// The partitions assigned per (generation, member id), fixed once answered.
    assigned: HashMap<(i32, String), BTreeSet<i32>>,
    /// The protocol named in each generation's JoinGroup answer.
    protocols: HashMap<i32, String>,
    /// Leases taken and not committed yet.
    held: Vec<Lease>,
    /// Leases committed, by their offset (every lease gets its own).
    committed: HashMap<i64, Lease>,
    next_offset: i64,
    in_flight: Vec<OutgoingRequest>,
}

impl Model {
    fn owns(&self, generation: i32, member: &str, partition: i32) -> bool {
        self.assigned.get(&(generation, member.to_owned())).is_some_and(|p| p.contains(&partition))
    }

    fn check_commit(&self, request: &OffsetCommitRequest) {
        let generation = request.generation_id_or_member_epoch;
        let member = request.member_id.as_str();
        for topic in &request.topics {
            for p in &topic.partitions {
                let lease = self
                    .committed
                    .get(&p.committed_offset)
                    .unwrap_or_else(|| panic!("offset {} of no committed lease was sent", p.committed_offset));
                assert_eq!(lease.partition, TopicPartition::new(topic.name.as_str(), p.partition_index));
                let from = lease.generation.id.0;
                assert!(
                    from <= generation && lease.generation.member_id.as_str() == member,
                    "a lease of {} sent with generation {generation} of {member}",
                    lease.generation
                );
                let member_took_part = self.assigned.contains_key(&(generation, member.to_owned()));
                let revoked_in_generation = self.cooperative
                    && member_took_part
                    && from < generation
                    && !self.owns(generation, member, p.partition_index);
                let last = if revoked_in_generation { generation - 1 } else { generation };
                for g in from..=last {
                    assert!(
                        self.owns(g, member, p.partition_index),
                        "{} committed with generation {generation} of {member}: not assigned to it in generation {g} \
                         (lease of generation {from})",
                        lease.partition
                    );
                }
            }
        }
    }
}

struct Run<'a, 'u> {
    u: &'a mut Unstructured<'u>,
    machine: GroupMachine,
    model: Model,
    now: Instant,
}

impl Run<'_, '_> {
    /// Drains the machine's outputs and checks them.
    fn pump(&mut self) {
        while let Some(request) = self.machine.poll_request() {
            if let GroupRequest::OffsetCommit(commit) = &request.body {
                self.model.check_commit(commit);
            }
            self.model.in_flight.push(request);
        }
        while self.machine.poll_event().is_some() {}
        if let Some(at) = self.machine.poll_timeout() {
            assert!(
                at > self.now,
                "timer {:?} is {:?} in the past in state {}",
                self.machine.snapshot(self.now).next_timer,
                self.now - at,
                self.machine.state()
            );
        }
    }

    fn code(&mut self) -> Result<i16> {
        if self.u.ratio(1, 16)? {
            return self.u.arbitrary();
        }
        self.u.choose(CODES).copied()
    }

    fn step(&mut self) -> Result<()> {
        match self.u.int_in_range(0..=15)? {
            0..=5 => self.answer()?,
            6 => self.fail()?,
            7 | 8 => {
                let ms = if self.u.ratio(1, 4)? {
                    self.u.int_in_range(0..=400_000)?
                } else {
                    self.u.int_in_range(0..=5_000)?
                };
                self.now += Duration::from_millis(ms);
                self.machine.handle_timeout(self.now);
            }
            9 | 10 => {
                let partition = TopicPartition::new(TOPIC, self.u.int_in_range(0..=PARTITIONS - 1)?);
                self.model.next_offset += 1;
                if let Some(lease) = self.machine.lease(&partition, self.model.next_offset) {
                    let generation = &lease.generation;
                    assert!(
                        self.model.owns(generation.id.0, generation.member_id.as_str(), partition.partition),
                        "lease for {partition} in {generation}, which the coordinator did not assign"
                    );
                    self.model.held.push(lease);
                }
            }
            11 | 12 => {
                let mut leases = Vec::new();
                while !self.model.held.is_empty() && self.u.ratio(2, 3)? {
                    let index = self.u.choose_index(self.model.held.len())?;
                    leases.push(self.model.held.swap_remove(index));
                }
                for lease in &leases {
                    self.model.committed.insert(lease.next_offset, lease.clone());
                }
                self.machine.commit(leases, self.now);
            }
            13 => self.machine.revoke_done(self.now),
            14 => self.machine.record_poll(self.now),
            _ => match self.u.int_in_range(0..=2)? {
                0 => self.machine.leave("fuzz", self.now),
                1 => {
                    let partitions = (0..PARTITIONS).map(|p| TopicPartition::new(TOPIC, p)).collect();
                    self.machine.fetch_committed(partitions, self.now);
                }
                _ => {
                    let topics = if self.u.arbitrary()? { vec![TOPIC, "u"] } else { vec![TOPIC] };
                    self.machine.subscribe(topics, self.now);
                }
            },
        }
        self.pump();
        Ok(())
    }

    fn take_request(&mut self) -> Result<Option<OutgoingRequest>> {
        if self.model.in_flight.is_empty() {
            return Ok(None);
        }
        // Mostly in order, as one connection answers; sometimes any of them.
        let index = if self.u.ratio(3, 4)? { 0 } else { self.u.choose_index(self.model.in_flight.len())? };
        Ok(Some(self.model.in_flight.remove(index)))
    }

    fn fail(&mut self) -> Result<()> {
        let Some(request) = self.take_request()? else { return Ok(()) };
        let failure = match self.u.int_in_range(0..=3)? {
            0 => RequestFailure::Network("fuzz".into()),
            1 => RequestFailure::TimedOut,
            2 => RequestFailure::Malformed("fuzz".into()),
            _ => RequestFailure::Broker(KafkaCode(self.code()?)),
        };
        self.machine.handle_request_failed(self.now, request.id, failure);
        Ok(())
    }

    fn answer(&mut self) -> Result<()> {
        let Some(request) = self.take_request()? else { return Ok(()) };
        let response = match &request.body {
            GroupRequest::FindCoordinator { .. } => {
                let mut versions = NegotiatedVersions::client_maxima();
                for api in [ApiKey::JoinGroup, ApiKey::SyncGroup, ApiKey::OffsetCommit, ApiKey::OffsetFetch] {
                    versions.cap(api, self.u.int_in_range(0..=9)?);
                }
                let found = CoordinatorFound { node_id: self.u.int_in_range(0..=2)?, versions };
                self.machine.handle_coordinator_found(self.now, request.id, found);
                return Ok(());
            }
            _ if self.u.ratio(1, 32)? => self.wrong_type(&request.body)?,
            GroupRequest::JoinGroup(join) => GroupResponse::JoinGroup(self.join(join)?),
            GroupRequest::SyncGroup(sync) => GroupResponse::SyncGroup(self.sync(sync)?),
            GroupRequest::Heartbeat(_) => {
                GroupResponse::Heartbeat(HeartbeatResponse::default().with_error_code(self.code()?))
            }
            GroupRequest::LeaveGroup(_) => {
                GroupResponse::LeaveGroup(LeaveGroupResponse::default().with_error_code(self.code()?))
            }
            GroupRequest::OffsetCommit(commit) => GroupResponse::OffsetCommit(self.commit(commit)?),
            GroupRequest::OffsetFetch(_) => GroupResponse::OffsetFetch(self.fetch(request.version)?),
            _ => return Ok(()),
        };
        self.machine.handle_response(self.now, request.id, response);
        Ok(())
    }

    /// A bare answer of any group type. A bare SyncGroup success to a SyncGroup request assigns
    /// nothing (empty assignment bytes), which the model records like any assignment.
    fn wrong_type(&mut self, body: &GroupRequest) -> Result<GroupResponse> {
        let code = self.code()?;
        Ok(match self.u.int_in_range(0..=2)? {
            0 => GroupResponse::Heartbeat(HeartbeatResponse::default().with_error_code(code)),
            1 => {
                if let (GroupRequest::SyncGroup(sync), 0) = (body, code) {
                    self.model.assigned.entry((sync.generation_id, sync.member_id.to_string())).or_default();
                }
                GroupResponse::SyncGroup(SyncGroupResponse::default().with_error_code(code))
            }
            _ => GroupResponse::JoinGroup(JoinGroupResponse::default().with_error_code(code)),
        })
    }

    fn join(&mut self, join: &JoinGroupRequest) -> Result<JoinGroupResponse> {
        let code = self.code()?;
        let asked = join.member_id.to_string();
        if code == 79 {
            return Ok(JoinGroupResponse::default().with_error_code(code).with_member_id(s(&self.fresh_member())));
        }
        if code != 0 {
            return Ok(JoinGroupResponse::default().with_error_code(code).with_member_id(join.member_id.clone()));
        }
        let member = if asked.is_empty() || self.u.ratio(1, 8)? { self.fresh_member() } else { asked };
        // Mostly the next generation; sometimes one is skipped (another member's).
        self.model.last_generation += if self.u.ratio(1, 6)? { 2 } else { 1 };
        let generation = self.model.last_generation;
        let protocol = if self.u.ratio(1, 8)? {
            (*self.u.choose(PROTOCOLS)?).to_owned()
        } else {
            join.protocols.first().map(|p| p.name.to_string()).unwrap_or_default()
        };
        self.model.protocols.insert(generation, protocol.clone());
        let leader = if self.u.arbitrary()? { member.clone() } else { "m-other".to_owned() };
        let mut members = Vec::new();
        if leader == member {
            let own = join.protocols.first().map(|p| p.metadata.clone()).unwrap_or_default();
            members.push(JoinGroupResponseMember::default().with_member_id(s(&member)).with_metadata(own));
            if self.u.arbitrary()? {
                let metadata = if self.u.ratio(1, 4)? {
                    let length = self.u.int_in_range(0..=40)?;
                    Bytes::from(self.u.bytes(length)?.to_vec())
                } else {
                    Subscription { topics: vec![TOPIC.into()], ..Default::default() }.encode()
                };
                members.push(JoinGroupResponseMember::default().with_member_id(s("m-other")).with_metadata(metadata));
            }
        }
        Ok(JoinGroupResponse::default()
            .with_generation_id(generation)
            .with_member_id(s(&member))
            .with_leader(s(&leader))
            .with_protocol_type(Some(s("consumer")))
            .with_protocol_name(Some(s(&protocol)))
            .with_members(members))
    }

    fn fresh_member(&mut self) -> String {
        self.model.next_member += 1;
        format!("m-{}", self.model.next_member)
    }

    fn sync(&mut self, sync: &SyncGroupRequest) -> Result<SyncGroupResponse> {
        let code = self.code()?;
        if code != 0 {
            return Ok(SyncGroupResponse::default().with_error_code(code));
        }
        let key = (sync.generation_id, sync.member_id.to_string());
        let assignment = match self.model.assigned.get(&key) {
            Some(partitions) => encode(partitions),
            None if self.u.ratio(1, 8)? => {
                let length = self.u.int_in_range(0..=40)?;
                let bytes = Bytes::from(self.u.bytes(length)?.to_vec());
                let partitions = decode_assignment(&bytes).unwrap_or_default();
                let owned = partitions.iter().filter(|tp| &*tp.topic == TOPIC).map(|tp| tp.partition).collect();
                self.model.assigned.insert(key, owned);
                bytes
            }
            None => {
                let mut partitions = BTreeSet::new();
                for p in 0..PARTITIONS {
                    if self.u.arbitrary()? {
                        partitions.insert(p);
                    }
                }
                let bytes = encode(&partitions);
                self.model.assigned.insert(key, partitions);
                bytes
            }
        };
        let protocol = self.model.protocols.get(&sync.generation_id).cloned();
        Ok(SyncGroupResponse::default()
            .with_protocol_type(Some(s("consumer")))
            .with_protocol_name(protocol.map(|p| s(&p)))
            .with_assignment(assignment))
    }

    fn commit(&mut self, commit: &OffsetCommitRequest) -> Result<OffsetCommitResponse> {
        let mut topics = Vec::new();
        for topic in &commit.topics {
            let mut partitions = Vec::new();
            for p in &topic.partitions {
                partitions.push(
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(self.code()?),
                );
            }
            topics.push(OffsetCommitResponseTopic::default().with_name(topic.name.clone()).with_partitions(partitions));
        }
        Ok(OffsetCommitResponse::default().with_topics(topics))
    }

    fn fetch(&mut self, version: i16) -> Result<OffsetFetchResponse> {
        let group_code = self.code()?;
        let mut rows = Vec::new();
        for p in 0..PARTITIONS {
            rows.push((p, self.u.int_in_range(-1..=100)?, self.code()?));
        }
        Ok(if version >= 8 {
            let partitions = rows
                .iter()
                .map(|&(p, offset, code)| {
                    OffsetFetchResponsePartitions::default()
                        .with_partition_index(p)
                        .with_committed_offset(offset)
                        .with_error_code(code)
                })
                .collect();
            OffsetFetchResponse::default().with_groups(vec![OffsetFetchResponseGroup::default()
                .with_group_id(GroupId(s("g")))
                .with_error_code(group_code)
                .with_topics(vec![OffsetFetchResponseTopics::default()
                    .with_name(TopicName(s(TOPIC)))
                    .with_partitions(partitions)])])
        } else {
            let partitions = rows
                .iter()
                .map(|&(p, offset, code)| {
                    OffsetFetchResponsePartition::default()
                        .with_partition_index(p)
                        .with_committed_offset(offset)
                        .with_error_code(code)
                })
                .collect();
            OffsetFetchResponse::default().with_error_code(group_code).with_topics(vec![
                OffsetFetchResponseTopic::default().with_name(TopicName(s(TOPIC))).with_partitions(partitions),
            ])
        })
    }
}

fn encode(partitions: &BTreeSet<i32>) -> Bytes {
    let partitions: Vec<TopicPartition> = partitions.iter().map(|&p| TopicPartition::new(TOPIC, p)).collect();
    encode_assignment(&partitions, None)
}

fn run(u: &mut Unstructured<'_>) -> Result<()> {
    let mut config = GroupConfig::new("g");
    let assignor = *u.choose(&PROTOCOLS[..4])?;
    config.assignors = assignor_by_name(assignor).into_iter().collect();
    if u.ratio(1, 4)? {
        config.group_instance_id = Some("i-1".into());
    }
    // The one clock read: the origin of virtual time.
    let now = Instant::now();
    let mut machine = GroupMachine::new(config, [TOPIC], now);
    machine.set_partition_counts([(TOPIC.to_string(), PARTITIONS)]);
    let model = Model { cooperative: assignor == "cooperative-sticky", ..Model::default() };
    let mut run = Run { u, machine, model, now };
    run.pump();
    for _ in 0..400 {
        if run.u.is_empty() {
            break;
        }
        run.step()?;
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
