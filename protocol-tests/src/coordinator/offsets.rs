//! OffsetCommit (§6.6), OffsetFetch (§6.7) and the ownership oracle.

use std::collections::BTreeMap;
use std::time::Instant;

use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions, OffsetFetchResponseTopic,
    OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    GroupId, OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse, ResponseKind,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::errors::*;
use super::group::{Group, GroupState};
use super::{GroupApi, ReplyTo, ScriptedCoordinator};

/// One accepted commit of one partition, judged against the stored assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitRecord {
    pub group: String,
    pub member_id: String,
    /// The generation the commit carried.
    pub generation: i32,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// The member the leader assigned this partition to in `generation` (the latest
    /// assignment stored for it), or `None` if none was stored or nobody had the partition.
    pub owner_at_generation: Option<String>,
    /// The same for `generation - 1`.
    pub owner_before: Option<String>,
    /// When the coordinator accepted it.
    pub at: Instant,
}

impl CommitRecord {
    /// Did the committing member own the partition in the generation it committed with? Under
    /// the cooperative protocol (KIP-429) a partition revoked in a generation belongs to nobody
    /// in it, so its owner of the generation before may still commit it with that generation.
    pub fn by_owner(&self) -> bool {
        let member = Some(self.member_id.as_str());
        match self.owner_at_generation.as_deref() {
            None => self.owner_before.as_deref() == member,
            owner => owner == member,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct OffsetEntry {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
}

/// Offsets validated and appended to the offsets log, whose append may not have completed yet
/// (a delayed OffsetCommit response).
#[derive(Debug)]
pub(crate) struct PendingCommit {
    pub group: String,
    pub entries: OffsetEntries,
    /// Where the commit sits in the offsets log: the cache keeps, per partition, the commit
    /// appended last, whichever append completes last (`onOffsetCommitAppend`'s `olderThan`).
    pub appended: u64,
}

/// A materialized offset and the log position of the commit that wrote it.
#[derive(Debug, Clone)]
pub(crate) struct StoredOffset {
    pub entry: OffsetEntry,
    pub appended: u64,
}

/// Offsets by (topic, partition), in request order.
pub(crate) type OffsetEntries = Vec<((String, i32), OffsetEntry)>;

/// The partitions of an OffsetCommit or TxnOffsetCommit, in request order: topic name, then
/// each partition index with what it commits.
pub(crate) type CommitTopics = Vec<(String, Vec<(i32, OffsetEntry)>)>;

/// The topics of an OffsetCommit or a TxnOffsetCommit request: the two types have the same
/// fields, so one macro reads both.
macro_rules! commit_topics {
    ($topics:expr) => {
        $topics
            .iter()
            .map(|t| {
                let partitions = t
                    .partitions
                    .iter()
                    .map(|p| {
                        let entry = $crate::coordinator::offsets::entry(
                            p.committed_offset,
                            p.committed_leader_epoch,
                            &p.committed_metadata,
                        );
                        (p.partition_index, entry)
                    })
                    .collect();
                (t.name.to_string(), partitions)
            })
            .collect::<$crate::coordinator::offsets::CommitTopics>()
    };
}
pub(crate) use commit_topics;

/// The answer's topics for an OffsetCommit or a TxnOffsetCommit: one code per partition, in
/// the request's order, in the answer's own `$topic` and `$partition` types.
macro_rules! commit_answer_topics {
    ($topics:expr, $codes:expr, $topic:ident, $partition:ident) => {
        $topics
            .iter()
            .zip($codes)
            .map(|((name, partitions), topic_codes)| {
                let partitions = partitions
                    .iter()
                    .zip(topic_codes)
                    .map(|((partition, _), code)| {
                        $partition::default().with_partition_index(*partition).with_error_code(code)
                    })
                    .collect();
                $topic::default().with_name($crate::coordinator::offsets::topic_name(name)).with_partitions(partitions)
            })
            .collect()
    };
}
pub(crate) use commit_answer_topics;

/// A committed offset as stored (a null metadata is stored as "").
pub(crate) fn entry(offset: i64, leader_epoch: i32, metadata: &Option<StrBytes>) -> OffsetEntry {
    OffsetEntry { offset, leader_epoch, metadata: metadata.as_ref().map(|m| m.to_string()).unwrap_or_default() }
}

pub(crate) fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_owned()))
}

/// Decodes a ConsumerProtocol assignment (version, [topic, [partition]], user data), leniently:
/// whatever decodes before the first inconsistency is returned.
pub fn decode_assignment(bytes: &[u8]) -> Vec<(String, i32)> {
    let mut out = Vec::new();
    let mut r = Reader { buf: bytes };
    let decoded = (|| -> Option<()> {
        let _version = r.i16()?;
        let topics = r.i32()?;
        for _ in 0..topics.max(0) {
            let len = r.i16()?;
            let name = String::from_utf8_lossy(r.take(usize::try_from(len).ok()?)?).into_owned();
            let partitions = r.i32()?;
            for _ in 0..partitions.max(0) {
                out.push((name.clone(), r.i32()?));
            }
        }
        Some(())
    })();
    let _ = decoded;
    out
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.buf.len() < n {
            return None;
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Some(head)
    }

    fn i16(&mut self) -> Option<i16> {
        self.take(2).map(|b| i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self) -> Option<i32> {
        self.take(4).map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

impl ScriptedCoordinator {
    // ----------------------------------------------------------------------------------
    // OffsetCommit (§6.6)

    pub(crate) fn handle_offset_commit(&mut self, now: Instant, reply: ReplyTo, r: OffsetCommitRequest) {
        let group_id = r.group_id.to_string();
        let topics = commit_topics!(r.topics);
        let (mut codes, valid) = self.check_topics(&topics);

        let mut pending = None;
        // No partition left: answered without any group validation (KA 474-476).
        if !valid.is_empty() {
            let outcome: Vec<i16> = match self.validate_group_status(&group_id, GroupApi::OffsetCommit) {
                Some(error) => vec![error; valid.len()],
                None if self.is_consumer_group(&group_id) => {
                    let (outcome, commit) = self.consumer_commit(now, &reply, &r, &topics, &valid);
                    pending = commit;
                    outcome
                }
                None => {
                    if !self.groups.contains_key(&group_id) && r.generation_id_or_member_epoch < 0 {
                        // Not using group management: the group is created Empty.
                        self.groups.insert(group_id.clone(), Group::new(group_id.clone()));
                    }
                    match self.with_group(&group_id, |c, g| c.do_commit_offsets(now, g, &reply, &r, &topics, &valid)) {
                        Some((outcome, commit)) => {
                            pending = commit;
                            outcome
                        }
                        // A missing group with generation >= 0 (GC 926-936, §11 item 4).
                        None => vec![ILLEGAL_GENERATION; valid.len()],
                    }
                }
            };
            for ((t, p), code) in valid.iter().zip(outcome) {
                codes[*t][*p] = code;
            }
        }

        let response = OffsetCommitResponse::default().with_topics(commit_answer_topics!(
            topics,
            codes,
            OffsetCommitResponseTopic,
            OffsetCommitResponsePartition
        ));
        self.emit(now, reply, ResponseKind::OffsetCommit(response), pending);
    }

    /// Step 2 of OffsetCommit and TxnOffsetCommit, before the coordinator (KA 419-476): an
    /// unknown topic or partition gets UNKNOWN_TOPIC_OR_PARTITION. Returns the codes so far and
    /// the (topic, partition) indexes left for the group.
    pub(crate) fn check_topics(&self, topics: &CommitTopics) -> (Vec<Vec<i16>>, Vec<(usize, usize)>) {
        let mut codes = Vec::with_capacity(topics.len());
        let mut valid = Vec::new();
        for (t, (name, partitions)) in topics.iter().enumerate() {
            let count = self.config.topics.get(name).copied();
            let mut topic_codes = Vec::with_capacity(partitions.len());
            for (p, (partition, _)) in partitions.iter().enumerate() {
                match count {
                    Some(n) if (0..n).contains(partition) => {
                        valid.push((t, p));
                        topic_codes.push(NONE);
                    }
                    _ => topic_codes.push(UNKNOWN_TOPIC_OR_PARTITION),
                }
            }
            codes.push(topic_codes);
        }
        (codes, valid)
    }

    /// `storeOffsets`' size check (GMM 346-489): oversized metadata is refused per partition.
    /// Returns the code of each valid partition and the entries to store.
    pub(crate) fn sized_entries(&self, topics: &CommitTopics, valid: &[(usize, usize)]) -> (Vec<i16>, OffsetEntries) {
        let max = self.config.offset_metadata_max_bytes;
        let mut outcome = Vec::with_capacity(valid.len());
        let mut entries = Vec::new();
        for (t, p) in valid {
            let (name, partitions) = &topics[*t];
            let (partition, entry) = &partitions[*p];
            // Java's String.length(): UTF-16 code units.
            if entry.metadata.encode_utf16().count() > max {
                outcome.push(OFFSET_METADATA_TOO_LARGE);
            } else {
                outcome.push(NONE);
                entries.push(((name.clone(), *partition), entry.clone()));
            }
        }
        (outcome, entries)
    }

    /// `doCommitOffsets` (GC 1018-1060) for the partitions that passed step 2.
    fn do_commit_offsets(
        &mut self,
        now: Instant,
        g: &mut Group,
        reply: &ReplyTo,
        r: &OffsetCommitRequest,
        topics: &CommitTopics,
        valid: &[(usize, usize)],
    ) -> (Vec<i16>, Option<PendingCommit>) {
        let generation = r.generation_id_or_member_epoch;
        let member_id = r.member_id.to_string();
        let instance_id = r.group_instance_id.as_ref().map(|s| s.to_string());
        if let Some(error) = validate_offset_commit(g, generation, &member_id, instance_id.as_deref(), false) {
            return (vec![error; valid.len()], None);
        }
        match g.state {
            GroupState::Empty => {}
            // A member of the pre-rebalance generation may commit during PreparingRebalance;
            // the session is re-armed (GC 1041-1046, §11 item 1).
            GroupState::Stable | GroupState::PreparingRebalance => {
                self.arm_session(now, g, &member_id);
            }
            GroupState::CompletingRebalance => {
                return (vec![REBALANCE_IN_PROGRESS; valid.len()], None);
            }
            GroupState::Dead => return (vec![COORDINATOR_NOT_AVAILABLE; valid.len()], None),
        }

        let (outcome, entries) = self.sized_entries(topics, valid);
        for (key, e) in &entries {
            self.record_commit(now, g, &member_id, generation, key, e.offset);
        }
        (outcome, self.append_commit(reply, g.id.clone(), entries))
    }

    /// Appends validated offsets to the offsets log: stored at once, or (a delayed answer, a
    /// slow append) pending until the response goes out (GM 746-751), then returned.
    pub(crate) fn append_commit(
        &mut self,
        reply: &ReplyTo,
        group: String,
        entries: OffsetEntries,
    ) -> Option<PendingCommit> {
        let commit = PendingCommit { group, entries, appended: self.append_position() };
        if reply.is_delayed() {
            for (key, _) in &commit.entries {
                *self.pending_offsets.entry((commit.group.clone(), key.0.clone(), key.1)).or_insert(0) += 1;
            }
            Some(commit)
        } else {
            self.store_commit(commit);
            None
        }
    }

    fn record_commit(
        &mut self,
        now: Instant,
        g: &Group,
        member_id: &str,
        generation: i32,
        key: &(String, i32),
        offset: i64,
    ) {
        let owner = |generation: i32| {
            self.history.get(&g.id).and_then(|h| {
                h.iter().rev().find(|(gen, _)| *gen == generation).and_then(|(_, assignment)| {
                    assignment.iter().find(|(_, partitions)| partitions.contains(key)).map(|(member, _)| member.clone())
                })
            })
        };
        let (owner_at_generation, owner_before) = (owner(generation), owner(generation - 1));
        self.commits.push(CommitRecord {
            group: g.id.clone(),
            member_id: member_id.to_string(),
            generation,
            topic: key.0.clone(),
            partition: key.1,
            offset,
            owner_at_generation,
            owner_before,
            at: now,
        });
    }

    /// The next position in the offsets log.
    pub(crate) fn append_position(&mut self) -> u64 {
        self.offsets_log_end += 1;
        self.offsets_log_end
    }

    /// A commit's append completed: its offsets replace those of commits appended before it,
    /// never those of a later one (a slow append completing after a later commit's).
    pub(crate) fn store_offsets(
        &mut self,
        group: String,
        entries: impl IntoIterator<Item = ((String, i32), StoredOffset)>,
    ) {
        let offsets = self.offsets.entry(group).or_default();
        for (key, stored) in entries {
            match offsets.get(&key) {
                Some(newer) if newer.appended > stored.appended => {}
                _ => {
                    offsets.insert(key, stored);
                }
            }
        }
    }

    fn store_commit(&mut self, commit: PendingCommit) {
        let appended = commit.appended;
        let entries = commit.entries.into_iter().map(|(key, entry)| (key, StoredOffset { entry, appended }));
        self.store_offsets(commit.group, entries);
    }

    /// A delayed commit's response goes out: its offsets become visible.
    pub(crate) fn materialize(&mut self, commit: PendingCommit) {
        for (key, _) in &commit.entries {
            let k = (commit.group.clone(), key.0.clone(), key.1);
            if let Some(n) = self.pending_offsets.get_mut(&k) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.pending_offsets.remove(&k);
                }
            }
        }
        self.store_commit(commit);
    }

    // ----------------------------------------------------------------------------------
    // OffsetFetch (§6.7)

    pub(crate) fn handle_offset_fetch(&mut self, now: Instant, reply: ReplyTo, r: OffsetFetchRequest) {
        let version = reply.version();
        let require_stable = version >= 7 && r.require_stable;
        // v0-7 carry one group (OffsetFetchRequest.groups()).
        let requests: Vec<(GroupId, Option<TopicList>)> = if version >= 8 {
            r.groups
                .iter()
                .map(|g| {
                    (
                        g.group_id.clone(),
                        g.topics
                            .as_ref()
                            .map(|ts| ts.iter().map(|t| (t.name.clone(), t.partition_indexes.clone())).collect()),
                    )
                })
                .collect()
        } else {
            vec![(
                r.group_id.clone(),
                r.topics.as_ref().map(|ts| ts.iter().map(|t| (t.name.clone(), t.partition_indexes.clone())).collect()),
            )]
        };

        let results: Vec<(GroupId, i16, Vec<FetchedTopic>)> = requests
            .into_iter()
            .map(|(group_id, topics)| match self.validate_group_status(group_id.as_str(), GroupApi::OffsetFetch) {
                Some(error) => (group_id, error, Vec::new()),
                None => {
                    let fetched = self.fetch_offsets(group_id.as_str(), require_stable, topics);
                    (group_id, NONE, fetched)
                }
            })
            .collect();

        let response = if version >= 8 {
            OffsetFetchResponse::default().with_groups(
                results
                    .into_iter()
                    .map(|(group_id, error, topics)| {
                        OffsetFetchResponseGroup::default().with_group_id(group_id).with_error_code(error).with_topics(
                            topics
                                .into_iter()
                                .map(|(name, partitions)| {
                                    OffsetFetchResponseTopics::default().with_name(name).with_partitions(
                                        partitions
                                            .into_iter()
                                            .map(|f| {
                                                OffsetFetchResponsePartitions::default()
                                                    .with_partition_index(f.partition)
                                                    .with_committed_offset(f.offset)
                                                    .with_committed_leader_epoch(f.leader_epoch)
                                                    .with_metadata(Some(StrBytes::from_string(f.metadata)))
                                                    .with_error_code(f.error)
                                            })
                                            .collect(),
                                    )
                                })
                                .collect(),
                        )
                    })
                    .collect(),
            )
        } else {
            let (error, topics) = results.into_iter().next().map(|(_, e, t)| (e, t)).unwrap_or((NONE, Vec::new()));
            // Below v2 a group-level error has nowhere to go (§6.7).
            OffsetFetchResponse::default().with_error_code(if version >= 2 { error } else { NONE }).with_topics(
                topics
                    .into_iter()
                    .map(|(name, partitions)| {
                        OffsetFetchResponseTopic::default().with_name(name).with_partitions(
                            partitions
                                .into_iter()
                                .map(|f| {
                                    OffsetFetchResponsePartition::default()
                                        .with_partition_index(f.partition)
                                        .with_committed_offset(f.offset)
                                        .with_committed_leader_epoch(if version >= 5 { f.leader_epoch } else { -1 })
                                        .with_metadata(Some(StrBytes::from_string(f.metadata)))
                                        .with_error_code(f.error)
                                })
                                .collect(),
                        )
                    })
                    .collect(),
            )
        };
        self.emit(now, reply, ResponseKind::OffsetFetch(response), None);
    }

    /// `getOffsets` (GMM 495-534): offsets regardless of group state; -1 for unknown.
    fn fetch_offsets(&self, group_id: &str, require_stable: bool, topics: Option<TopicList>) -> Vec<FetchedTopic> {
        let live =
            self.groups.get(group_id).is_some_and(|g| !g.is(GroupState::Dead)) || self.is_consumer_group(group_id);
        let stored = self.offsets.get(group_id).filter(|_| live);
        let requested: Vec<(TopicName, Vec<i32>)> = match topics {
            Some(topics) => topics,
            // Topics=null: only partitions with a committed offset.
            None => {
                let mut all: BTreeMap<String, Vec<i32>> = BTreeMap::new();
                if let Some(stored) = stored {
                    for (topic, partition) in stored.keys() {
                        all.entry(topic.clone()).or_default().push(*partition);
                    }
                }
                all.into_iter().map(|(t, ps)| (TopicName(StrBytes::from_string(t)), ps)).collect()
            }
        };
        requested
            .into_iter()
            .map(|(name, partitions)| {
                let fetched = partitions
                    .into_iter()
                    .map(|partition| {
                        let key = (name.to_string(), partition);
                        let pending = self.pending_offsets.contains_key(&(group_id.to_string(), key.0.clone(), key.1))
                            || self.has_pending_txn_offset(group_id, &key);
                        if live && require_stable && pending {
                            return Fetched::unknown(partition, UNSTABLE_OFFSET_COMMIT);
                        }
                        match stored.and_then(|s| s.get(&key)).map(|s| &s.entry) {
                            Some(e) => Fetched {
                                partition,
                                offset: e.offset,
                                leader_epoch: e.leader_epoch,
                                metadata: e.metadata.clone(),
                                error: NONE,
                            },
                            None => Fetched::unknown(partition, NONE),
                        }
                    })
                    .collect();
                (name, fetched)
            })
            .collect()
    }
}

type FetchedTopic = (TopicName, Vec<Fetched>);
type TopicList = Vec<(TopicName, Vec<i32>)>;

struct Fetched {
    partition: i32,
    offset: i64,
    leader_epoch: i32,
    metadata: String,
    error: i16,
}

impl Fetched {
    fn unknown(partition: i32, error: i16) -> Self {
        Fetched { partition, offset: -1, leader_epoch: -1, metadata: String::new(), error }
    }
}

/// `validateOffsetCommit` (GC 980-1016), in Kafka's order (§6.6 step 5). A transactional
/// commit with generation -1 and no member needs no membership, even in a non-empty group.
pub(crate) fn validate_offset_commit(
    g: &Group,
    generation: i32,
    member_id: &str,
    instance_id: Option<&str>,
    transactional: bool,
) -> Option<i16> {
    if g.is(GroupState::Dead) {
        Some(COORDINATOR_NOT_AVAILABLE)
    } else if generation < 0 && g.is(GroupState::Empty) {
        // Accepted whatever member or instance id is sent.
        None
    } else if generation >= 0 || !member_id.is_empty() || instance_id.is_some() {
        g.validate_current_member(member_id, instance_id)
            .or_else(|| (generation != g.generation).then_some(ILLEGAL_GENERATION))
    } else if transactional {
        None
    } else {
        // Only members may commit to a non-empty group.
        Some(UNKNOWN_MEMBER_ID)
    }
}
