//! The wait between attempts to reach etcd: 100 ms, doubling up to 10 s, each wait
//! jittered by +-20% so that many Receptors do not retry in step after an outage.

use std::time::Duration;

/// The first wait.
pub const MIN: Duration = Duration::from_millis(100);
/// The longest wait.
pub const MAX: Duration = Duration::from_secs(10);

/// Exponential backoff with jitter; [`Backoff::reset`] after a success.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { next: MIN }
    }
}

impl Backoff {
    /// The next wait (jittered), doubling the one after it.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(MAX);
        base.mul_f64(rand::random_range(0.8..1.2))
    }

    /// Back to the first wait.
    pub fn reset(&mut self) {
        self.next = MIN;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::default();
        let waits: Vec<Duration> = (0..10).map(|_| b.next_delay()).collect();
        assert!(waits[0] >= MIN.mul_f64(0.8) && waits[0] <= MIN.mul_f64(1.2));
        assert!(waits[1] >= MIN.mul_f64(1.6));
        assert!(waits.iter().all(|w| *w <= MAX.mul_f64(1.2)));
        assert!(waits[9] >= MAX.mul_f64(0.8));
        b.reset();
        assert!(b.next_delay() <= MIN.mul_f64(1.2));
    }
}
