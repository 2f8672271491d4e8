//! The configuration error, in a leaf module: the group core validates its config with it and
//! the crate's [`Error`](crate::Error) wraps it, so neither imports the other.

/// A user's configuration that cannot work; reported when it is built, never later.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A property has a value it cannot take.
    #[error("invalid value {value:?} for `{key}`: {reason}")]
    InvalidValue {
        /// The property, by its Kafka name.
        key: &'static str,
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A required property is not set.
    #[error("`{key}` is required")]
    Missing {
        /// The property, by its Kafka name.
        key: &'static str,
    },
    /// A topic name Kafka would refuse.
    #[error("invalid topic name {name:?}: {reason}")]
    InvalidTopic {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}
