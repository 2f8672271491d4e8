//! What the member subscribes to: a list of topics, or a pattern matched against the cluster's
//! topic names (Java's `subscribe(Pattern)`). Under the classic protocol the client does the
//! matching and its JoinGroup carries the concrete topics, so a change of the matched set is a
//! change of subscription: the member rejoins.

use std::fmt;

use regex::Regex;

use super::requests::ListedTopic;
use crate::config_error::ConfigError;

/// A regular expression a topic name must match as a whole, as Java's
/// `Pattern.matcher(topic).matches()` does.
#[derive(Clone)]
pub struct TopicPattern {
    source: String,
    anchored: Regex,
}

impl TopicPattern {
    /// Compiles `pattern` (the `regex` crate's syntax, which covers what topic patterns use:
    /// classes, alternations, repetitions), anchored at both ends.
    pub fn new(pattern: &str) -> Result<Self, ConfigError> {
        let invalid = |reason: String| ConfigError::InvalidPattern { pattern: pattern.to_owned(), reason };
        if pattern.is_empty() {
            return Err(invalid("empty".into()));
        }
        // Compiled alone first: wrapped at once, `a)|(b` would compile and escape the anchors.
        Regex::new(pattern).map_err(|e| invalid(e.to_string()))?;
        let anchored = Regex::new(&format!("^(?:{pattern})$")).map_err(|e| invalid(e.to_string()))?;
        Ok(TopicPattern { source: pattern.to_owned(), anchored })
    }

    /// The pattern as given.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether `topic` matches as a whole.
    pub fn matches(&self, topic: &str) -> bool {
        self.anchored.is_match(topic)
    }
}

impl fmt::Debug for TopicPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TopicPattern").field(&self.source).finish()
    }
}

impl fmt::Display for TopicPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl PartialEq for TopicPattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for TopicPattern {}

/// A member's subscription as the application states it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TopicSubscription {
    /// These topics (Java's `subscribe(Collection)`).
    Topics(Vec<String>),
    /// Every topic whose name matches, re-read from the cluster's metadata every
    /// `metadata.max.age.ms` (Java's `subscribe(Pattern)`).
    Pattern(TopicPattern),
}

/// The subscription the machine holds, with the topics its JoinGroup names.
#[derive(Debug, Clone)]
pub(super) enum Subscribed {
    Topics(Vec<String>),
    /// `matched` is `None` until the cluster's topics were listed once: the member does not
    /// join before it knows what its pattern matches.
    Pattern {
        pattern: TopicPattern,
        matched: Option<Vec<String>>,
    },
}

impl Subscribed {
    pub(super) fn new(subscription: TopicSubscription) -> Self {
        match subscription {
            TopicSubscription::Topics(topics) => Subscribed::Topics(sorted(topics)),
            TopicSubscription::Pattern(pattern) => Subscribed::Pattern { pattern, matched: None },
        }
    }

    /// The topics a JoinGroup names now.
    pub(super) fn topics(&self) -> &[String] {
        match self {
            Subscribed::Topics(topics) | Subscribed::Pattern { matched: Some(topics), .. } => topics,
            Subscribed::Pattern { matched: None, .. } => &[],
        }
    }

    pub(super) fn pattern(&self) -> Option<&TopicPattern> {
        match self {
            Subscribed::Pattern { pattern, .. } => Some(pattern),
            Subscribed::Topics(_) => None,
        }
    }

    /// A pattern whose matches are not known yet.
    pub(super) fn awaits_listing(&self) -> bool {
        matches!(self, Subscribed::Pattern { matched: None, .. })
    }

    /// Whether `next` names other topics than this subscription does now, or another pattern.
    pub(super) fn differs(&self, next: &Subscribed) -> bool {
        match (self, next) {
            (Subscribed::Topics(a), Subscribed::Topics(b)) => a != b,
            (Subscribed::Pattern { pattern: a, .. }, Subscribed::Pattern { pattern: b, .. }) => a != b,
            _ => true,
        }
    }

    /// Matches the pattern against a listing of the cluster's topics, internal ones left out
    /// when `exclude_internal` (`exclude.internal.topics`). Returns whether the matched set
    /// changed from one known before (the first listing changes nothing: no join has named
    /// any topic yet).
    pub(super) fn match_listing(&mut self, listing: &[ListedTopic], exclude_internal: bool) -> bool {
        let Subscribed::Pattern { pattern, matched } = self else {
            return false;
        };
        let now: Vec<String> = sorted(
            listing
                .iter()
                .filter(|t| !(exclude_internal && t.internal) && pattern.matches(&t.name))
                .map(|t| t.name.clone())
                .collect(),
        );
        let changed = matched.as_ref().is_some_and(|before| *before != now);
        *matched = Some(now);
        changed
    }
}

fn sorted(mut topics: Vec<String>) -> Vec<String> {
    topics.sort();
    topics.dedup();
    topics
}
