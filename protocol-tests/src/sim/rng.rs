//! A small deterministic generator: the simulator must not depend on anything but its seed.

use std::time::Duration;

/// SplitMix64: tiny, fast, and good enough to spread latencies and ids.
#[derive(Debug, Clone)]
pub struct SimRng(u64);

impl SimRng {
    pub fn new(seed: u64) -> Self {
        SimRng(seed ^ 0x5851_f42d_4c95_7f2d)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`0` when `n` is `0`).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// Uniform in `lo..=hi`, in microseconds.
    pub fn duration(&mut self, lo: Duration, hi: Duration) -> Duration {
        let lo_us = lo.as_micros() as u64;
        let hi_us = (hi.as_micros() as u64).max(lo_us);
        Duration::from_micros(lo_us + self.below(hi_us - lo_us + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence_and_bounds_hold() {
        let mut a = SimRng::new(7);
        let mut b = SimRng::new(7);
        let xs: Vec<u64> = (0..5).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..5).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(SimRng::new(8).next_u64(), xs[0]);
        for _ in 0..1000 {
            let d = a.duration(Duration::from_millis(1), Duration::from_millis(3));
            assert!(d >= Duration::from_millis(1) && d <= Duration::from_millis(3), "{d:?}");
            assert!(a.below(4) < 4);
        }
        assert_eq!(a.below(0), 0);
    }
}
