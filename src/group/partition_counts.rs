//! The partition counts a leader assigns with: learnt from Metadata answers, refreshed every
//! `metadata.max.age.ms`, and compared with those of the last assignment this member led.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use super::assignor::{cooperative_adjust, encode_assignment, Assignor, GroupMember, RebalanceProtocol};
use super::requests::{ListedTopic, RequestId};

/// What a Metadata request in flight asks about.
#[derive(Debug)]
enum Asked {
    Topics(Vec<String>),
    /// Every topic of the cluster (a pattern subscription).
    All,
}

#[derive(Debug, Default)]
pub(super) struct PartitionCounts {
    counts: BTreeMap<String, i32>,
    /// The partition counts the last assignment this member led was made with, for every topic
    /// some member subscribed to (`None`: not in metadata). Fresh counts that differ make the
    /// leader rejoin (Java's ConsumerCoordinator metadata snapshot check).
    led_with: Option<BTreeMap<String, Option<i32>>>,
    /// The Metadata request in flight and its topics. It goes to any broker, so the
    /// coordinator connection's gate and losses do not apply to it.
    request: Option<(RequestId, Asked)>,
}

impl PartitionCounts {
    pub(super) fn extend(&mut self, counts: impl IntoIterator<Item = (String, i32)>) {
        self.counts.extend(counts);
    }

    pub(super) fn is_asking(&self) -> bool {
        self.request.is_some()
    }

    /// The Metadata request `id` asks for `topics`.
    pub(super) fn ask(&mut self, id: RequestId, topics: Vec<String>) {
        self.request = Some((id, Asked::Topics(topics)));
    }

    /// The Metadata request `id` lists every topic.
    pub(super) fn ask_all(&mut self, id: RequestId) {
        self.request = Some((id, Asked::All));
    }

    /// Counts arrived; a topic asked for that is not in `counts` does not exist. Returns
    /// whether `id` was the request awaited.
    pub(super) fn answered(&mut self, id: RequestId, counts: &BTreeMap<String, i32>) -> bool {
        let Some((_, Asked::Topics(topics))) =
            self.request.take_if(|(asked, what)| *asked == id && matches!(what, Asked::Topics(_)))
        else {
            return false;
        };
        for topic in topics {
            match counts.get(&topic) {
                Some(&count) => self.counts.insert(topic, count),
                None => self.counts.remove(&topic),
            };
        }
        true
    }

    /// Every topic was listed: one not in `listing` does not exist; one listed without a count
    /// keeps the count known. Returns whether `id` was the listing awaited.
    pub(super) fn listed(&mut self, id: RequestId, listing: &[ListedTopic]) -> bool {
        if self.request.take_if(|(asked, what)| *asked == id && matches!(what, Asked::All)).is_none() {
            return false;
        }
        let before = std::mem::take(&mut self.counts);
        self.counts = listing
            .iter()
            .filter_map(|t| Some((t.name.clone(), t.partitions.or_else(|| before.get(&t.name).copied())?)))
            .collect();
        true
    }

    /// Request `id` got no answer; returns whether it was the request awaited.
    pub(super) fn failed(&mut self, id: RequestId) -> bool {
        self.request.take_if(|(asked, _)| *asked == id).is_some()
    }

    /// Whether the counts differ from those the last assignment this member led was made with.
    pub(super) fn changed_since_led(&self) -> bool {
        self.led_with
            .as_ref()
            .is_some_and(|led| led.iter().any(|(topic, count)| self.counts.get(topic) != count.as_ref()))
    }

    /// The topics a refresh asks for: those of every member's subscription when this member led
    /// the last assignment, else its own `subscription`.
    pub(super) fn refresh_topics(&self, subscription: &[String]) -> Vec<String> {
        match &self.led_with {
            Some(led) => led.keys().cloned().collect(),
            None => subscription.to_vec(),
        }
    }

    /// Those of `topics` whose count is not known.
    pub(super) fn unknown(&self, topics: &BTreeSet<String>) -> Vec<String> {
        topics.iter().filter(|t| !self.counts.contains_key(*t)).cloned().collect()
    }

    /// The leader's assignment of `members`, who subscribe to `topics`, with `assignor`: each
    /// member id with its encoded assignment. The counts used are remembered.
    pub(super) fn lead(
        &mut self,
        assignor: &dyn Assignor,
        members: &[GroupMember],
        topics: &BTreeSet<String>,
    ) -> Vec<(String, Bytes)> {
        self.led_with = Some(topics.iter().map(|t| (t.clone(), self.counts.get(t).copied())).collect());
        let mut plan = assignor.assign(members, &self.counts);
        if assignor.rebalance_protocol() == RebalanceProtocol::Cooperative {
            // KIP-429: a partition moving to another member is left out of this generation
            // (its owner revokes it first); it is assigned in the next round.
            plan = cooperative_adjust(plan, members);
        }
        members
            .iter()
            .map(|m| {
                let partitions = plan.get(&m.member_id).cloned().unwrap_or_default();
                (m.member_id.clone(), encode_assignment(&partitions, None))
            })
            .collect()
    }

    /// Another member leads this generation.
    pub(super) fn follow(&mut self) {
        self.led_with = None;
    }
}
