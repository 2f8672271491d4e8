//! Exponential backoff with jitter, so a fleet of clients does not reconnect in lockstep.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// `initial * 2^attempt`, capped at `max`, each delay drawn uniformly from
/// `[delay * (1 - jitter), delay]` (Kafka's `reconnect.backoff.ms` family works the same way).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The first delay.
    pub initial: Duration,
    /// The cap on every delay.
    pub max: Duration,
    /// Fraction of each delay that is randomised, in `[0, 1]`.
    pub jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { initial: Duration::from_millis(50), max: Duration::from_secs(1), jitter: 0.2 }
    }
}

impl Backoff {
    /// The delay before retry number `attempt` (0-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        let base = self.initial.saturating_mul(1u32 << attempt.min(20)).min(self.max);
        let jitter = self.jitter.clamp(0.0, 1.0);
        base.mul_f64(1.0 - jitter * unit_random())
    }
}

/// A uniform draw from `[0, 1)`; std's randomly keyed hasher is entropy enough for jitter.
pub(crate) fn unit_random() -> f64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(0x9e37_79b9_7f4a_7c15);
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_within_jitter_and_caps() {
        let b = Backoff { initial: Duration::from_millis(100), max: Duration::from_secs(2), jitter: 0.25 };
        for attempt in 0..10 {
            let full = Duration::from_millis(100 * (1 << attempt)).min(Duration::from_secs(2));
            for _ in 0..50 {
                let d = b.delay(attempt);
                assert!(d <= full && d >= full.mul_f64(0.75), "attempt {attempt}: {d:?} vs {full:?}");
            }
        }
        assert_eq!(Backoff { jitter: 0.0, ..b }.delay(40), Duration::from_secs(2));
    }

    #[test]
    fn jitter_spreads_delays() {
        let b = Backoff::default();
        let distinct: std::collections::BTreeSet<_> = (0..20).map(|_| b.delay(3)).collect();
        assert!(distinct.len() > 1);
    }
}
