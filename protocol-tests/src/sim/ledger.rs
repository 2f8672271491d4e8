//! What the simulated applications did: which messages were processed how often, and what
//! happened to their commits.

use std::collections::BTreeMap;

/// Processed messages per partition, in blocks of one batch (every position the application
/// starts from is a committed offset, and every committed offset is a batch end).
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    batch: i64,
    blocks: BTreeMap<i32, Vec<u16>>,
}

impl Ledger {
    pub fn new(batch: i64) -> Self {
        Ledger { batch, blocks: BTreeMap::new() }
    }

    /// Records `[start, end)` of `partition` as processed; returns how many of its messages had
    /// been processed before (duplicates). `None` if the range is not one aligned batch.
    pub fn record(&mut self, partition: i32, start: i64, end: i64) -> Option<u64> {
        if start < 0 || start % self.batch != 0 || end - start != self.batch {
            return None;
        }
        let block = (start / self.batch) as usize;
        let counts = self.blocks.entry(partition).or_default();
        if counts.len() <= block {
            counts.resize(block + 1, 0);
        }
        counts[block] = counts[block].saturating_add(1);
        Some(if counts[block] > 1 { self.batch as u64 } else { 0 })
    }

    /// The end of the processed prefix's furthest block (0 when nothing was processed).
    pub fn processed_end(&self, partition: i32) -> i64 {
        self.blocks.get(&partition).map(|c| c.len() as i64 * self.batch).unwrap_or(0)
    }

    /// Messages below `upto` (or below the furthest processed one, whichever is larger) that no
    /// one processed.
    pub fn lost(&self, partition: i32, upto: i64) -> u64 {
        let counts = self.blocks.get(&partition).map(Vec::as_slice).unwrap_or(&[]);
        let blocks = ((upto.max(0) + self.batch - 1) / self.batch) as usize;
        let blocks = blocks.max(counts.len());
        (0..blocks).filter(|&b| counts.get(b).copied().unwrap_or(0) == 0).count() as u64 * self.batch as u64
    }

    /// Messages processed at least once.
    pub fn messages(&self) -> u64 {
        self.blocks.values().flatten().filter(|&&c| c > 0).count() as u64 * self.batch as u64
    }
}

/// Counters over a run; [`Stats::since`] gives the part of one step.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Batches processed (1000 messages each by default).
    pub batches: u64,
    /// Messages processed a second (or later) time.
    pub duplicates: u64,
    /// `GroupMachine::commit` calls.
    pub commits: u64,
    /// OffsetCommit requests the machines emitted.
    pub offset_commit_requests: u64,
    /// Partition outcomes: committed (of which re-stamped), fenced (of which by the broker),
    /// failed.
    pub committed: u64,
    pub restamped: u64,
    pub fenced: u64,
    pub fenced_by_broker: u64,
    pub failed: u64,
    /// Commits refused as moving a partition's committed offset back, after an injected
    /// ILLEGAL_GENERATION the coordinator contradicted (counted apart from `failed`): the member
    /// rejoined the very generation it was told was stale, so two of its ownership streaks
    /// start in the same generation and the commit floor of the first guards the second.
    /// Kafka never re-issues a generation, so only the fault injection can cause it.
    pub moved_back_after_contradiction: u64,
    /// Partition outcomes of commits issued while a revoke window was open, and how many of
    /// them were committed.
    pub revoke_window: u64,
    pub revoke_window_committed: u64,
    /// Partition outcomes of commits issued while the member was joining (deferred by the
    /// machine), and how many of them were committed.
    pub issued_while_joining: u64,
    pub issued_while_joining_committed: u64,
    /// Responses the machines reported as stale (T32).
    pub stale_responses: u64,
    pub request_timeouts: u64,
    pub cuts: u64,
    pub lost_events: u64,
    pub revokes: u64,
    pub assignments: u64,
    /// Partitions an assignment gave back to a member in a new ownership streak.
    pub ownership_gaps: u64,
    /// Members that left the group (or found themselves out of it).
    pub left_events: u64,
}

impl Stats {
    /// The counters accumulated after `earlier` was taken.
    pub fn since(&self, earlier: &Stats) -> Stats {
        Stats {
            batches: self.batches - earlier.batches,
            duplicates: self.duplicates - earlier.duplicates,
            commits: self.commits - earlier.commits,
            offset_commit_requests: self.offset_commit_requests - earlier.offset_commit_requests,
            committed: self.committed - earlier.committed,
            restamped: self.restamped - earlier.restamped,
            fenced: self.fenced - earlier.fenced,
            fenced_by_broker: self.fenced_by_broker - earlier.fenced_by_broker,
            failed: self.failed - earlier.failed,
            moved_back_after_contradiction: self.moved_back_after_contradiction
                - earlier.moved_back_after_contradiction,
            revoke_window: self.revoke_window - earlier.revoke_window,
            revoke_window_committed: self.revoke_window_committed - earlier.revoke_window_committed,
            issued_while_joining: self.issued_while_joining - earlier.issued_while_joining,
            issued_while_joining_committed: self.issued_while_joining_committed
                - earlier.issued_while_joining_committed,
            stale_responses: self.stale_responses - earlier.stale_responses,
            request_timeouts: self.request_timeouts - earlier.request_timeouts,
            cuts: self.cuts - earlier.cuts,
            lost_events: self.lost_events - earlier.lost_events,
            revokes: self.revokes - earlier.revokes,
            assignments: self.assignments - earlier.assignments,
            ownership_gaps: self.ownership_gaps - earlier.ownership_gaps,
            left_events: self.left_events - earlier.left_events,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_and_gaps_are_counted_per_block() {
        let mut l = Ledger::new(1000);
        assert_eq!(l.record(0, 0, 1000), Some(0));
        assert_eq!(l.record(0, 2000, 3000), Some(0));
        assert_eq!(l.record(0, 0, 1000), Some(1000));
        assert_eq!(l.record(0, 500, 1500), None);
        assert_eq!(l.processed_end(0), 3000);
        assert_eq!(l.lost(0, 0), 1000);
        assert_eq!(l.lost(0, 5000), 3000);
        assert_eq!(l.lost(1, 2000), 2000);
        assert_eq!(l.messages(), 2000);
    }
}
