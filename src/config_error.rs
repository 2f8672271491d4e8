//! The configuration error, in a leaf module: the group core validates its config with it and
//! the crate's [`Error`](crate::Error) wraps it, so neither imports the other.

use std::path::PathBuf;

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
    /// A subscription pattern that is not a regular expression.
    #[error("invalid topic pattern {pattern:?}: {reason}")]
    InvalidPattern {
        /// The pattern given.
        pattern: String,
        /// What the regular expression parser said.
        reason: String,
    },
    /// A property name that neither kgroup, the Java client nor librdkafka knows: most likely a
    /// typo, which would otherwise leave the intended setting at its default.
    #[error("unknown property `{key}`{}", suggestion.map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default())]
    UnknownKey {
        /// The name given.
        key: String,
        /// The known key nearest to it, when one is close.
        suggestion: Option<&'static str>,
    },
    /// A Java client or librdkafka setting kgroup cannot honour, where going on without it
    /// would behave differently from what the setting asks for.
    #[error("`{key}` is not supported by kgroup: {reason}")]
    Unsupported {
        /// The property, by its Kafka name.
        key: &'static str,
        /// Why, and what to use instead.
        reason: String,
    },
    /// A properties file that cannot be read.
    #[error("cannot read properties file {}: {reason}", path.display())]
    UnreadableFile {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        reason: String,
    },
    /// A line of a properties file that is not a property.
    #[error("{}:{line}: {reason}", path.display())]
    MalformedLine {
        /// The file.
        path: PathBuf,
        /// The line number, from 1 (the first line of a continued property).
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
}
