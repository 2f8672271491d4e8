//! An endless log of offsets: what the simulator and the session's tests fetch from.

use std::collections::BTreeMap;
use std::ops::Range;

use super::{RecordSource, SessionAction};
use crate::driver::fetcher::StartPosition;
use crate::group::TopicPartition;

/// Every partition always has one more run of `batch` offsets from the position the session
/// fetches it at; [`apply`](Self::apply) carries out the session's fetch actions, as the
/// consumer's fetcher does. The log starts at 0 and has no end: a partition with nothing
/// committed (`auto.offset.reset=earliest`), or sought to either end, is at 0.
#[derive(Debug, Clone)]
pub struct OffsetLog {
    batch: i64,
    positions: BTreeMap<TopicPartition, i64>,
    paused: Vec<TopicPartition>,
}

impl OffsetLog {
    /// A log whose fetches return `batch` offsets at a time.
    pub fn new(batch: i64) -> Self {
        OffsetLog { batch, positions: BTreeMap::new(), paused: Vec::new() }
    }

    /// Applies a fetch action (start, pause, resume, seek, forget); ignores the others. As in
    /// the fetcher, pausing concerns only partitions being fetched, and a start is unpaused.
    pub fn apply(&mut self, action: &SessionAction) {
        match action {
            SessionAction::Fetch(starts) => {
                for (tp, start) in starts {
                    self.positions.insert(tp.clone(), position(*start));
                    self.paused.retain(|paused| paused != tp);
                }
            }
            SessionAction::Pause(partitions) => {
                let fetched = partitions.iter().filter(|tp| self.positions.contains_key(*tp));
                self.paused.extend(fetched.cloned());
            }
            SessionAction::Resume(partitions) => self.paused.retain(|tp| !partitions.contains(tp)),
            SessionAction::Seek(tp, to) => {
                self.positions.insert(tp.clone(), position(*to));
            }
            SessionAction::Forget(partitions) => {
                for tp in partitions {
                    self.positions.remove(tp);
                }
                self.paused.retain(|tp| !partitions.contains(tp));
            }
            _ => {}
        }
    }
}

fn position(start: StartPosition) -> i64 {
    match start {
        StartPosition::Offset(offset) if offset >= 0 => offset,
        _ => 0,
    }
}

impl RecordSource<Range<i64>> for OffsetLog {
    fn try_next_records(&mut self, partition: &TopicPartition, _max_records: usize) -> Option<Range<i64>> {
        if self.paused.contains(partition) {
            return None;
        }
        let position = self.positions.get_mut(partition)?;
        let run = *position..*position + self.batch;
        *position += self.batch;
        Some(run)
    }
}
