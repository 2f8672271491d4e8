//! What the member owns: the partitions of its latest generation, each with the first
//! generation of its uninterrupted ownership (a lease commits only within it), and how a new assignment
//! continues or breaks those streaks.

use std::collections::BTreeMap;

use super::events::OwnedPartition;
use super::types::{Generation, GenerationId, Lease, TopicPartition};

/// The partitions assigned in the latest generation we were part of, with the first
/// generation of each one's uninterrupted ownership.
#[derive(Debug, Clone)]
pub(super) struct Ownership {
    pub(super) generation: Generation,
    pub(super) partitions: BTreeMap<TopicPartition, GenerationId>,
    /// Assigned under the cooperative protocol (KIP-429): the partitions stay owned through the
    /// next rebalance and are given up only when a SyncGroup leaves them out.
    pub(super) cooperative: bool,
    /// Partitions this generation took away from us under the cooperative protocol, with their
    /// `owned_since`. KIP-429 assigns them to nobody in this generation, so commits of work done
    /// on them may still go out stamped with it, until the second-round JoinGroup.
    pub(super) released: BTreeMap<TopicPartition, GenerationId>,
}

/// What a new assignment changed.
#[derive(Debug)]
pub(super) struct Reassignment {
    /// Partitions new to the member, or whose streak starts again.
    pub(super) added: Vec<TopicPartition>,
    /// Partitions no longer owned, or whose streak broke.
    pub(super) revoked: Vec<TopicPartition>,
    /// Partitions the assignment takes away, whatever their streak.
    pub(super) given_up: Vec<TopicPartition>,
}

impl Ownership {
    /// The ownership `partitions` give the member in `generation`, continuing the streaks of
    /// `previous` when the same member id held it in this or the previous generation.
    pub(super) fn assign(
        previous: Option<Ownership>,
        generation: Generation,
        partitions: &[TopicPartition],
        cooperative: bool,
    ) -> (Ownership, Reassignment) {
        let continuous = previous.as_ref().filter(|p| {
            p.generation.member_id == generation.member_id
                && (p.generation.id == generation.id || p.generation.id.next() == generation.id)
        });
        let owned: BTreeMap<TopicPartition, GenerationId> = partitions
            .iter()
            .map(|tp| {
                let since = continuous.and_then(|p| p.partitions.get(tp).copied()).unwrap_or(generation.id);
                (tp.clone(), since)
            })
            .collect();
        // A partition is kept only when its streak goes on. After a gap (a generation missed,
        // a new member id) it is revoked and added again: the interim owner may have committed,
        // so buffered records and the position go and it starts from the committed offset.
        let kept = |tp: &TopicPartition| continuous.is_some_and(|p| p.partitions.contains_key(tp));
        let added: Vec<TopicPartition> = owned.keys().filter(|tp| !kept(tp)).cloned().collect();
        let held: Vec<&TopicPartition> = previous.iter().flat_map(|p| p.partitions.keys()).collect();
        let revoked: Vec<TopicPartition> =
            held.iter().filter(|tp| !(kept(tp) && owned.contains_key(**tp))).map(|tp| (*tp).clone()).collect();
        // What the assignment takes away, whatever the streak: the leader gave it to nobody in
        // this generation and waits for this member's rejoin to hand it on (KIP-429).
        let given_up: Vec<TopicPartition> =
            held.iter().filter(|tp| !owned.contains_key(**tp)).map(|tp| (*tp).clone()).collect();
        let released: BTreeMap<TopicPartition, GenerationId> = match continuous {
            Some(p) if cooperative => {
                given_up.iter().filter_map(|tp| p.partitions.get(tp).map(|since| (tp.clone(), *since))).collect()
            }
            _ => BTreeMap::new(),
        };
        let ownership = Ownership { generation, partitions: owned, cooperative, released };
        (ownership, Reassignment { added, revoked, given_up })
    }

    /// The ownership `partitions` give the member at member epoch `generation` (KIP-848):
    /// epochs jump, so a streak goes on whenever the same member id held the partition at an
    /// epoch not after this one; a fenced member has no ownership left to continue.
    pub(super) fn assign_epoch(
        previous: Option<Ownership>,
        generation: Generation,
        partitions: &[TopicPartition],
    ) -> (Ownership, Reassignment) {
        let continuous = previous
            .as_ref()
            .filter(|p| p.generation.member_id == generation.member_id && p.generation.id <= generation.id);
        let since = |tp: &TopicPartition| continuous.and_then(|p| p.partitions.get(tp).copied());
        let owned: BTreeMap<TopicPartition, GenerationId> =
            partitions.iter().map(|tp| (tp.clone(), since(tp).unwrap_or(generation.id))).collect();
        let added = owned.keys().filter(|tp| since(tp).is_none()).cloned().collect();
        let held = previous.iter().flat_map(|p| p.partitions.keys());
        let revoked: Vec<TopicPartition> =
            held.filter(|tp| since(tp).is_none() || !owned.contains_key(*tp)).cloned().collect();
        let ownership = Ownership { generation, partitions: owned, cooperative: false, released: BTreeMap::new() };
        (ownership, Reassignment { added, given_up: revoked.clone(), revoked })
    }

    pub(super) fn owned_partitions(&self) -> Vec<OwnedPartition> {
        self.partitions
            .iter()
            .map(|(tp, since)| OwnedPartition { partition: tp.clone(), owned_since: *since })
            .collect()
    }

    /// A lease for records of `partition` up to `next_offset`, if it is owned.
    pub(super) fn lease(&self, partition: &TopicPartition, next_offset: i64) -> Option<Lease> {
        let owned_since = *self.partitions.get(partition)?;
        Some(Lease { partition: partition.clone(), next_offset, generation: self.generation.clone(), owned_since })
    }
}
