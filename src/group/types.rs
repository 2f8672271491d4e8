//! The values the membership state machine reasons with.

use std::fmt;
use std::sync::Arc;

// Defined in the protocol layer, whose consumer protocol codec encodes them.
pub use crate::protocol::types::{GenerationId, TopicPartition};

/// A member id the coordinator assigned (`""` before the first join).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MemberId(Arc<str>);

impl MemberId {
    /// The id as the coordinator gave it.
    pub fn new(id: &str) -> Self {
        MemberId(Arc::from(id))
    }

    /// The empty id of a member that has not joined yet.
    pub fn unknown() -> Self {
        MemberId(Arc::from(""))
    }

    /// The id's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the member has not joined yet.
    pub fn is_unknown(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for MemberId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// One generation of one member: the pair the coordinator validates on every Heartbeat,
/// SyncGroup and OffsetCommit. Captured when a request is built, compared when its answer comes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Generation {
    /// The generation number.
    pub id: GenerationId,
    /// The member id it was given with.
    pub member_id: MemberId,
}

impl Generation {
    /// Kafka's `NO_GENERATION` (-1, no member id): what a consumer outside any generation
    /// commits with, as a manually assigned one does (a "simple" consumer group).
    pub fn none() -> Generation {
        Generation { id: GenerationId::NONE, member_id: MemberId::unknown() }
    }
}

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.member_id, self.id)
    }
}

/// The right to commit one partition's progress, handed out with every batch.
///
/// `generation` is the member's generation when the records were fetched; `owned_since` is the
/// first generation of this member's uninterrupted ownership of the partition. A commit of
/// the lease is sent only while that same ownership streak lasts: a member that lost the
/// partition in between, even for one generation, may no longer commit what it read before.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Lease {
    /// The partition.
    pub partition: TopicPartition,
    /// The offset to commit: the next record to read.
    pub next_offset: i64,
    /// The member's generation when the records were fetched.
    pub generation: Generation,
    /// The first generation of the ownership streak the records were fetched in.
    pub owned_since: GenerationId,
}

impl Lease {
    /// The same lease with another offset (a batch's lease advanced to its last record + 1).
    pub fn at_offset(&self, next_offset: i64) -> Lease {
        Lease { next_offset, ..self.clone() }
    }
}
