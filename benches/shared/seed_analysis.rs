//! What one run of the seed scenario did, judged from the clients' own reports: commits by
//! outcome, partition offsets committed by a member that did not own the partition in the
//! commit's generation, messages processed twice, and lost. Shared by `benches/seed.rs` (every
//! client on Kafka 3.6) and `integration/tests/seed_kafka36.rs` (kgroup at CI size); no IO here.
//!
//! Ownership comes from every client's assignment callbacks: the partitions a member holds
//! after its assignment for generation G are its partitions in G (an eager assignor hands out
//! the whole set each generation; Java's cooperative callbacks name the partitions added and
//! revoked, which are applied to what the member held).
//!
//! A commit's generation is the one it was stamped with where the client reports it (kgroup's
//! outcomes), else the client's generation read just before and just after the call. When those
//! two differ, the broker's log decides: Kafka 3.6's classic coordinator accepts an OffsetCommit
//! only when it carries the group's current generation (in Stable or PreparingRebalance, never
//! in CompletingRebalance), and generation N begins with the coordinator's `Stabilized group G
//! generation N` line, logged under the group lock before any member of N can commit. So a
//! successful commit sent and answered between two such lines carried the generation of the
//! first; one whose call spans a line is resolved by the client's bracket, or left unresolved.

use std::collections::{BTreeMap, BTreeSet};

/// A member of one run, numbered in the order the harness started it.
pub type Member = u32;
pub type Partition = i32;
/// A partition's first and last offset of a batch.
pub type OffsetRange = (Partition, i64, i64);

/// Why the broker (or the client, for `Other`) failed a commit.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CommitError {
    IllegalGeneration,
    RebalanceInProgress,
    UnknownMemberId,
    /// Anything else, by the client's name for it.
    Other(String),
}

impl CommitError {
    /// From a Kafka error code (22, 27, 25 are the generation errors).
    pub fn from_code(code: i16, name: impl FnOnce() -> String) -> CommitError {
        match code {
            22 => CommitError::IllegalGeneration,
            27 => CommitError::RebalanceInProgress,
            25 => CommitError::UnknownMemberId,
            _ => CommitError::Other(name()),
        }
    }

    /// From the broker's error name (`ILLEGAL_GENERATION`, ...).
    pub fn from_name(name: &str) -> CommitError {
        match name {
            "ILLEGAL_GENERATION" => CommitError::IllegalGeneration,
            "REBALANCE_IN_PROGRESS" => CommitError::RebalanceInProgress,
            "UNKNOWN_MEMBER_ID" => CommitError::UnknownMemberId,
            other => CommitError::Other(other.to_owned()),
        }
    }

    /// ILLEGAL_GENERATION, REBALANCE_IN_PROGRESS or UNKNOWN_MEMBER_ID: the member's view of the
    /// group was stale when the broker judged the commit.
    pub fn is_generation_error(&self) -> bool {
        !matches!(self, CommitError::Other(_))
    }
}

/// How one partition of one commit call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Committed,
    /// Refused by the client itself and never sent (kgroup's generation gate; Java while it is
    /// not part of an active group), with the client's reason.
    NotSent(String),
    Failed(CommitError),
}

/// The generation a commit carried, as far as the client tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stamp {
    /// Reported by the client for this partition.
    Exact(i32),
    /// The client's generation just before and just after the call.
    Between(i32, i32),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionCommit {
    pub partition: Partition,
    /// The offset committed: the next one to read.
    pub offset: i64,
    pub stamp: Stamp,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum What {
    /// The member's assignment for `generation`: all its partitions, or with `incremental`
    /// (Java's cooperative `onPartitionsAssigned`) the ones added to what it holds.
    Assigned { generation: i32, partitions: Vec<Partition>, incremental: bool },
    /// A revoke callback (`generation` as the client knew it then).
    Revoked { generation: i32, partitions: Vec<Partition> },
    /// Partitions given up without a revoke window.
    Lost { partitions: Vec<Partition> },
    /// Records handed to the application: per partition the first and last offset.
    Batch { id: u64, generation: i32, ranges: Vec<OffsetRange> },
    /// The commit of batch `batch`, called at `sent_ms`; the event's time is when it returned.
    Commit { batch: u64, sent_ms: u64, partitions: Vec<PartitionCommit> },
}

/// One report of one member, with its wall-clock time (ms since the Unix epoch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub at_ms: u64,
    pub member: Member,
    pub what: What,
}

/// A `Stabilized group G generation N (...) with M members` line of the broker's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stabilized {
    pub at_ms: u64,
    pub generation: i32,
    pub members: usize,
}

/// The group's `Stabilized` lines from the broker's log, in log order, in ms since the Unix
/// epoch. Kafka's log4j pattern starts each line with `[yyyy-MM-dd HH:mm:ss,SSS]` in the
/// broker's local time: its offset from UTC is read off the controller's `CreateTopics` line for
/// `topic`, created at `topic_created_ms` (offsets are whole quarter hours, the line follows the
/// request by far less). `None` without that line.
pub fn broker_timeline(log: &str, group: &str, topic: &str, topic_created_ms: u64) -> Option<Vec<Stabilized>> {
    const QUARTER_HOUR: i64 = 15 * 60_000;
    let created = format!("CreatableTopic(name='{topic}'");
    let logged = log.lines().find(|l| l.contains(&created)).and_then(log_line_ms)?;
    let offset = ((logged - topic_created_ms as i64) as f64 / QUARTER_HOUR as f64).round() as i64 * QUARTER_HOUR;
    let needle = format!("Stabilized group {group} generation ");
    Some(
        log.lines()
            .filter_map(|line| {
                let rest = &line[line.find(&needle)? + needle.len()..];
                let generation = rest.split_whitespace().next()?.parse().ok()?;
                let members = rest.split(" with ").nth(1)?.split_whitespace().next()?.parse().ok()?;
                let at_ms = u64::try_from(log_line_ms(line)? - offset).ok()?;
                Some(Stabilized { at_ms, generation, members })
            })
            .collect(),
    )
}

/// The time at the start of a log4j line (`[2026-12-04 17:21:05,123] ...`), read as UTC, in ms
/// since the Unix epoch.
fn log_line_ms(line: &str) -> Option<i64> {
    let stamp = line.strip_prefix('[')?.get(..23)?;
    let number = |range: std::ops::Range<usize>| stamp.get(range)?.parse::<i64>().ok();
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second, millis) = (number(11..13)?, number(14..16)?, number(17..19)?, number(20..23)?);
    // Days from civil (Howard Hinnant's algorithm), proleptic Gregorian calendar.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + millis)
}

/// Consecutive offsets of each partition as `(partition, first, last)`, in the order given.
pub fn ranges(records: impl IntoIterator<Item = (Partition, i64)>) -> Vec<OffsetRange> {
    let mut open: BTreeMap<Partition, usize> = BTreeMap::new();
    let mut out: Vec<OffsetRange> = Vec::new();
    for (partition, offset) in records {
        match open.get(&partition).map(|&i| (i, out[i].2)) {
            Some((i, last)) if offset == last + 1 => out[i].2 = offset,
            _ => {
                open.insert(partition, out.len());
                out.push((partition, offset, offset));
            }
        }
    }
    out
}

/// How the run's assignments are handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Every partition is assigned in every generation (range, roundrobin, sticky).
    Eager,
    /// KIP-429: a partition that moves is unassigned for one generation.
    Cooperative,
    /// KIP-848's consumer protocol: each member moves through member epochs on its own, and its
    /// callbacks name only the partitions added and revoked (an epoch that changes nothing has
    /// none). A commit is judged by time instead of generation: the partition's owner is the
    /// member whose callbacks say it held the partition when the commit was sent.
    Consumer,
}

/// A partition offset committed for a partition that another member owned in that generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotOwnerCommit {
    pub member: Member,
    pub partition: Partition,
    pub generation: i32,
    pub offset: i64,
    pub owners: Vec<Member>,
    pub at_ms: u64,
}

/// Everything one run amounts to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Analysis {
    pub commit_calls: u64,
    /// Calls with a partition failed by this error (a call counts once per error).
    pub failed_calls: BTreeMap<CommitError, u64>,
    /// Calls the client refused before sending, by reason.
    pub not_sent_calls: BTreeMap<String, u64>,
    /// Partition offsets the broker stored.
    pub partitions_committed: u64,
    /// ... by the partition's owner in the commit's generation.
    pub owner_commits: u64,
    pub not_owner: Vec<NotOwnerCommit>,
    /// Cooperative only: committed in a generation in which nobody owns the partition, by the
    /// member that held it in its previous generation (its revoke window; safe).
    pub revoke_window_commits: u64,
    /// Committed in a generation in which nobody is known to own the partition, and not by its
    /// previous holder (missing assignment reports, see `incomplete_generations`).
    pub unattributed_commits: u64,
    /// Committed, but neither the client nor the broker's log pins the generation down.
    pub unresolved_commits: u64,
    /// Client stamps checked against the broker's log, and those the log contradicts (a check
    /// of the method: must be 0).
    pub stamps_checked: u64,
    pub stamps_contradicted: u64,
    /// (generation, partition, members) where several members claim one partition.
    pub ownership_conflicts: Vec<(i32, Partition, Vec<Member>)>,
    /// Generations the broker formed with more members than reported an assignment for them.
    pub incomplete_generations: Vec<(i32, usize, usize)>,
    pub processed: u64,
    pub duplicates: u64,
    /// Duplicates whose first processing was in a batch whose commit of that partition
    /// succeeded: the commit did not protect the records (another member processed them
    /// concurrently, or a later commit moved the offset back).
    pub duplicates_of_committed: u64,
    /// Produced offsets (below each partition's log end) that nobody processed.
    pub lost: u64,
    /// The group's last `Stabilized` line at or before the end of processing.
    pub final_generation: Option<Stabilized>,
}

impl Analysis {
    pub fn failed(&self, error: &CommitError) -> u64 {
        self.failed_calls.get(error).copied().unwrap_or(0)
    }

    /// Calls failed with another error than the three generation errors.
    pub fn failed_other(&self) -> u64 {
        self.failed_calls.iter().filter(|(e, _)| !e.is_generation_error()).map(|(_, n)| n).sum()
    }

    pub fn failed_by_generation(&self) -> u64 {
        self.failed_calls.iter().filter(|(e, _)| e.is_generation_error()).map(|(_, n)| n).sum()
    }

    pub fn not_sent(&self) -> u64 {
        self.not_sent_calls.values().sum()
    }
}

/// Who held what, per generation, from the assignment callbacks.
#[derive(Default)]
struct Ownership {
    owners: BTreeMap<(i32, Partition), BTreeSet<Member>>,
    /// Per member, each generation it was assigned and what it held then, in order.
    history: BTreeMap<Member, Vec<(i32, BTreeSet<Partition>)>>,
    reporting: BTreeMap<i32, BTreeSet<Member>>,
    /// Per partition, each member's holding periods `[from_ms, to_ms)` (`u64::MAX`: to the end).
    periods: BTreeMap<Partition, Vec<(Member, u64, u64)>>,
}

impl Ownership {
    fn build(events: &[Event]) -> Ownership {
        let mut ownership = Ownership::default();
        let mut holding: BTreeMap<Member, BTreeSet<Partition>> = BTreeMap::new();
        for event in events {
            // Batches and commits, most of a run's events, change no holding.
            if matches!(event.what, What::Batch { .. } | What::Commit { .. }) {
                continue;
            }
            let held = holding.entry(event.member).or_default();
            let before = held.clone();
            match &event.what {
                What::Assigned { generation, partitions, incremental } => {
                    if !incremental {
                        held.clear();
                    }
                    held.extend(partitions.iter().copied());
                    for &p in held.iter() {
                        ownership.owners.entry((*generation, p)).or_default().insert(event.member);
                    }
                    ownership.reporting.entry(*generation).or_default().insert(event.member);
                    ownership.history.entry(event.member).or_default().push((*generation, held.clone()));
                }
                What::Revoked { partitions, .. } | What::Lost { partitions } => {
                    for p in partitions {
                        held.remove(p);
                    }
                }
                What::Batch { .. } | What::Commit { .. } => continue,
            }
            for &p in held.difference(&before) {
                ownership.periods.entry(p).or_default().push((event.member, event.at_ms, u64::MAX));
            }
            for p in before.difference(held) {
                let periods = ownership.periods.entry(*p).or_default();
                if let Some(open) = periods.iter_mut().rev().find(|(m, _, to)| *m == event.member && *to == u64::MAX) {
                    open.2 = event.at_ms;
                }
            }
        }
        ownership
    }

    /// The members whose callbacks say they held `partition` at `at_ms`.
    fn holders_at(&self, partition: Partition, at_ms: u64) -> BTreeSet<Member> {
        let periods = self.periods.get(&partition).map(Vec::as_slice).unwrap_or_default();
        periods.iter().filter(|(_, from, to)| *from <= at_ms && at_ms < *to).map(|(m, _, _)| *m).collect()
    }

    /// What `member` held in the last generation before `generation` it was assigned.
    fn held_before(&self, member: Member, generation: i32) -> Option<&BTreeSet<Partition>> {
        self.history.get(&member)?.iter().rev().find(|(g, _)| *g < generation).map(|(_, held)| held)
    }
}

/// The generations whose time in force overlaps `[from_ms, to_ms]`, by the broker's log.
fn generations_during(timeline: &[Stabilized], from_ms: u64, to_ms: u64) -> Vec<i32> {
    // Log lines and client clocks are both whole milliseconds: widen by one on each side.
    let (from_ms, to_ms) = (from_ms.saturating_sub(1), to_ms + 1);
    let mut found = Vec::new();
    for (i, line) in timeline.iter().enumerate() {
        let ends = timeline.get(i + 1).map_or(u64::MAX, |next| next.at_ms);
        if line.at_ms <= to_ms && ends >= from_ms {
            found.push(line.generation);
        }
    }
    found
}

/// The generation a successful commit carried, if the client and the broker's log pin it down;
/// and whether the log contradicts a client stamp that did.
fn resolve(stamp: Stamp, sent_ms: u64, done_ms: u64, timeline: &[Stabilized]) -> (Option<i32>, Option<bool>) {
    let broker = (!timeline.is_empty()).then(|| generations_during(timeline, sent_ms, done_ms));
    let known = match stamp {
        Stamp::Exact(g) => Some(g),
        Stamp::Between(a, b) if a == b && a >= 0 => Some(a),
        Stamp::Between(..) => None,
    };
    if let Some(g) = known {
        return (Some(g), broker.map(|candidates| !candidates.contains(&g)));
    }
    let Stamp::Between(a, b) = stamp else { return (None, None) };
    let bounds = [a, b].into_iter().filter(|g| *g >= 0);
    let (low, high) = (bounds.clone().min().unwrap_or(i32::MIN), bounds.max().unwrap_or(i32::MAX));
    let candidates: Vec<i32> = broker.unwrap_or_default().into_iter().filter(|g| (low..=high).contains(g)).collect();
    match candidates.as_slice() {
        [only] => (Some(*only), None),
        _ => (None, None),
    }
}

/// Judges one run. `events` in the order they were recorded (each member's own events in the
/// order it reported them); `log_end`: each partition's end offset when production stopped;
/// `timeline`: the group's `Stabilized` lines; `end_ms`: when processing ended (the members'
/// closing is not part of the run).
pub fn analyze(
    events: &[Event],
    log_end: &BTreeMap<Partition, i64>,
    timeline: &[Stabilized],
    protocol: Protocol,
    end_ms: u64,
) -> Analysis {
    let ownership = Ownership::build(events);
    let mut analysis = Analysis::default();

    for ((generation, partition), members) in &ownership.owners {
        if members.len() > 1 {
            analysis.ownership_conflicts.push((*generation, *partition, members.iter().copied().collect()));
        }
    }
    for line in timeline.iter().filter(|l| l.members > 0 && l.at_ms <= end_ms) {
        let reported = ownership.reporting.get(&line.generation).map_or(0, BTreeSet::len);
        if reported < line.members {
            analysis.incomplete_generations.push((line.generation, line.members, reported));
        }
    }
    analysis.final_generation = timeline.iter().rev().find(|l| l.members > 0 && l.at_ms <= end_ms).copied();

    // Which batch's commit of which partition succeeded.
    let mut committed: BTreeSet<(u64, Partition)> = BTreeSet::new();
    for event in events {
        let What::Commit { batch, sent_ms, partitions } = &event.what else { continue };
        analysis.commit_calls += 1;
        let mut errors = BTreeSet::new();
        let mut not_sent = BTreeSet::new();
        for commit in partitions {
            match &commit.outcome {
                Outcome::Committed => {
                    committed.insert((*batch, commit.partition));
                    analysis.partitions_committed += 1;
                    judge(&mut analysis, &ownership, protocol, timeline, event, *sent_ms, commit);
                }
                Outcome::NotSent(reason) => {
                    not_sent.insert(reason.clone());
                }
                Outcome::Failed(error) => {
                    errors.insert(error.clone());
                }
            }
        }
        for error in errors {
            *analysis.failed_calls.entry(error).or_default() += 1;
        }
        for reason in not_sent {
            *analysis.not_sent_calls.entry(reason).or_default() += 1;
        }
    }

    // Every processing of every offset, earliest first.
    let mut batches: Vec<(u64, u64, &[OffsetRange])> = events
        .iter()
        .filter_map(|e| match &e.what {
            What::Batch { id, ranges, .. } => Some((e.at_ms, *id, ranges.as_slice())),
            _ => None,
        })
        .collect();
    batches.sort_by_key(|(at, id, _)| (*at, *id));
    let mut first_processing: BTreeMap<Partition, BTreeMap<i64, u64>> = BTreeMap::new();
    for (_, id, ranges) in batches {
        for &(partition, first, last) in ranges {
            let seen = first_processing.entry(partition).or_default();
            for offset in first..=last {
                analysis.processed += 1;
                match seen.get(&offset) {
                    None => {
                        seen.insert(offset, id);
                    }
                    Some(first_batch) => {
                        analysis.duplicates += 1;
                        if committed.contains(&(*first_batch, partition)) {
                            analysis.duplicates_of_committed += 1;
                        }
                    }
                }
            }
        }
    }
    analysis.lost = log_end
        .iter()
        .map(|(partition, end)| {
            let seen = first_processing.get(partition);
            (0..*end).filter(|o| !seen.is_some_and(|s| s.contains_key(o))).count() as u64
        })
        .sum();
    analysis
}

fn judge(
    analysis: &mut Analysis,
    ownership: &Ownership,
    protocol: Protocol,
    timeline: &[Stabilized],
    event: &Event,
    sent_ms: u64,
    commit: &PartitionCommit,
) {
    if protocol == Protocol::Consumer {
        let holders = ownership.holders_at(commit.partition, sent_ms);
        if holders.contains(&event.member) {
            analysis.owner_commits += 1;
        } else if holders.is_empty() {
            analysis.unattributed_commits += 1;
        } else {
            let generation = match commit.stamp {
                Stamp::Exact(g) | Stamp::Between(g, _) => g,
            };
            analysis.not_owner.push(NotOwnerCommit {
                member: event.member,
                partition: commit.partition,
                generation,
                offset: commit.offset,
                owners: holders.into_iter().collect(),
                at_ms: event.at_ms,
            });
        }
        return;
    }
    let (generation, contradicted) = resolve(commit.stamp, sent_ms, event.at_ms, timeline);
    if let Some(contradicted) = contradicted {
        analysis.stamps_checked += 1;
        analysis.stamps_contradicted += u64::from(contradicted);
    }
    let Some(generation) = generation else {
        analysis.unresolved_commits += 1;
        return;
    };
    let owners = ownership.owners.get(&(generation, commit.partition));
    match owners {
        Some(owners) if owners.contains(&event.member) => analysis.owner_commits += 1,
        Some(owners) if !owners.is_empty() => analysis.not_owner.push(NotOwnerCommit {
            member: event.member,
            partition: commit.partition,
            generation,
            offset: commit.offset,
            owners: owners.iter().copied().collect(),
            at_ms: event.at_ms,
        }),
        _ => {
            let held_before =
                ownership.held_before(event.member, generation).is_some_and(|h| h.contains(&commit.partition));
            if protocol == Protocol::Cooperative && held_before {
                analysis.revoke_window_commits += 1;
            } else {
                analysis.unattributed_commits += 1;
            }
        }
    }
}
