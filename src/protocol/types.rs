//! The plain values the wire carries and the group layer reasons with: a group generation and a
//! topic partition. A leaf that imports nothing from the crate, so the protocol layer's codecs can
//! use them without importing `crate::group`, which re-exports them where they have always been.

use std::fmt;
use std::sync::Arc;

/// A group generation number as the coordinator hands it out (`-1`: none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct GenerationId(pub i32);

impl Default for GenerationId {
    fn default() -> Self {
        GenerationId::NONE
    }
}

impl GenerationId {
    /// What a member without a generation sends (`-1`).
    pub const NONE: GenerationId = GenerationId(-1);

    /// The generation after this one.
    pub fn next(self) -> GenerationId {
        GenerationId(self.0.wrapping_add(1))
    }
}

impl fmt::Display for GenerationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A topic partition.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct TopicPartition {
    /// The topic name.
    pub topic: Arc<str>,
    /// The partition number.
    pub partition: i32,
}

impl TopicPartition {
    /// A topic partition from a topic name.
    pub fn new(topic: &str, partition: i32) -> Self {
        TopicPartition { topic: Arc::from(topic), partition }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}
