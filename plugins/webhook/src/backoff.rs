//! The wait before a retry: from `retry_backoff_min`, doubling up to
//! `retry_backoff_max`, each wait jittered by +-20% so that many webhooks do not retry in
//! step after the receiver's outage.

use std::time::Duration;

/// Exponential backoff with jitter; [`Backoff::reset`] after a success.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// Starting at `min`, capped at `max`.
    pub fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            min,
            max,
            next: min,
        }
    }

    /// The next wait (jittered), doubling the one after it.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        base.mul_f64(rand::random_range(0.8..1.2))
    }

    /// Back to the first wait.
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_jittered_and_resets() {
        let (min, max) = (Duration::from_millis(100), Duration::from_secs(2));
        let mut b = Backoff::new(min, max);
        let waits: Vec<Duration> = (0..10).map(|_| b.next_delay()).collect();
        assert!(waits[0] >= min.mul_f64(0.8) && waits[0] <= min.mul_f64(1.2));
        assert!(waits[1] >= min.mul_f64(1.6));
        assert!(waits.iter().all(|w| *w <= max.mul_f64(1.2)));
        assert!(waits[9] >= max.mul_f64(0.8));
        b.reset();
        assert!(b.next_delay() <= min.mul_f64(1.2));
    }
}
