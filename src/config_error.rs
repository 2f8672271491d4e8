//! The configuration error, in a leaf module: the group core validates its config with it and
//! the crate's [`Error`](crate::Error) wraps it, so neither imports the other.

/// A user's configuration that cannot work; reported when it is built, never later.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("invalid value {value:?} for `{key}`: {reason}")]
    InvalidValue { key: &'static str, value: String, reason: String },
    #[error("`{key}` is required")]
    Missing { key: &'static str },
    #[error("invalid topic name {name:?}: {reason}")]
    InvalidTopic { name: String, reason: &'static str },
}
