//! When an endpoint that failed is restarted in place, and when the SDK gives up.
//!
//! An endpoint whose `handle` returns `Err` or panics is restarted alone, inside the
//! running process, with the same event stream: the plugin's other endpoints go on.
//! Its restarts wait a backoff of [`BACKOFF_MIN`] doubling up to [`BACKOFF_MAX`], each
//! wait jittered by +-20% (so endpoints that failed together do not retry together),
//! back to the minimum once an incarnation ran [`HEALTHY_AFTER`] without failing. The
//! budget: the [`MAX_FAILURES`]th failure within [`WINDOW`] is not restarted. The
//! endpoint then ends with its error, and the host restarts the whole plugin process,
//! under the host's own budget (`[supervision]`).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The first wait before an endpoint is restarted.
pub const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// The longest wait before an endpoint is restarted.
pub const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// An incarnation that ran this long without failing resets the backoff.
pub const HEALTHY_AFTER: Duration = Duration::from_secs(10);
/// This many failures within [`WINDOW`] and the endpoint is not restarted again.
pub const MAX_FAILURES: usize = 5;
/// The window of the failure budget.
pub const WINDOW: Duration = Duration::from_secs(60);

/// One endpoint's failures: what the next one means.
#[derive(Debug)]
pub(crate) struct Restarts {
    /// When the failures within the window happened, oldest first.
    failures: VecDeque<Instant>,
    /// The next wait before jitter.
    backoff: Duration,
}

impl Default for Restarts {
    fn default() -> Self {
        Restarts {
            failures: VecDeque::new(),
            backoff: BACKOFF_MIN,
        }
    }
}

impl Restarts {
    /// An endpoint failed at `now`, after its incarnation ran for `ran`: how long to
    /// wait before restarting it (`jitter` in `[0, 1)` spreads the wait over +-20%), or
    /// `None` when the budget is spent.
    pub(crate) fn failed(&mut self, now: Instant, ran: Duration, jitter: f64) -> Option<Duration> {
        if ran >= HEALTHY_AFTER {
            self.backoff = BACKOFF_MIN;
        }
        while self
            .failures
            .front()
            .is_some_and(|&at| now.saturating_duration_since(at) >= WINDOW)
        {
            self.failures.pop_front();
        }
        self.failures.push_back(now);
        if self.failures.len() >= MAX_FAILURES {
            return None;
        }
        let wait = self.backoff.mul_f64(0.8 + 0.4 * jitter.clamp(0.0, 1.0));
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        Some(wait)
    }
}

/// The text an endpoint ends with once its budget is spent.
pub(crate) fn gave_up(error: &str) -> String {
    format!(
        "{error} (failed {MAX_FAILURES} times within {}s: not restarted in place again)",
        WINDOW.as_secs()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_cap_and_the_budget_ends_restarts() {
        let mut r = Restarts::default();
        let t0 = Instant::now();
        let quick = Duration::from_millis(1);
        let waits: Vec<_> = (0..4)
            .map(|i| r.failed(t0 + Duration::from_secs(i), quick, 0.5))
            .collect();
        let ms = |n| Some(Duration::from_millis(n));
        assert_eq!(waits, [ms(100), ms(200), ms(400), ms(800)]);
        assert_eq!(r.failed(t0 + Duration::from_secs(4), quick, 0.5), None);
    }

    #[test]
    fn jitter_spreads_a_wait_over_forty_percent() {
        let t0 = Instant::now();
        let low = Restarts::default().failed(t0, Duration::ZERO, 0.0);
        let high = Restarts::default().failed(t0, Duration::ZERO, 0.999_999);
        assert_eq!(low, Some(Duration::from_millis(80)));
        assert!(high.unwrap() > Duration::from_millis(119));
        assert!(high.unwrap() <= Duration::from_millis(120));
    }

    #[test]
    fn old_failures_leave_the_window_and_a_healthy_run_resets_the_backoff() {
        let mut r = Restarts::default();
        let t0 = Instant::now();
        for i in 0..4 {
            assert!(r
                .failed(t0 + Duration::from_secs(i), Duration::ZERO, 0.5)
                .is_some());
        }
        // A minute after the first: it left the window, so this is the fourth in it.
        let later = t0 + WINDOW + Duration::from_secs(1);
        let wait = r.failed(later, HEALTHY_AFTER, 0.5);
        assert_eq!(wait, Some(BACKOFF_MIN), "the healthy run reset the backoff");
    }

    #[test]
    fn the_wait_never_exceeds_the_cap() {
        let mut r = Restarts::default();
        let t0 = Instant::now();
        let mut longest = Duration::ZERO;
        for i in 0..40 {
            // One failure a minute: never out of budget.
            let wait = r.failed(t0 + WINDOW * i, Duration::ZERO, 0.999).unwrap();
            longest = longest.max(wait);
        }
        assert!(longest <= BACKOFF_MAX.mul_f64(1.2), "{longest:?}");
        assert!(longest >= BACKOFF_MAX.mul_f64(1.19), "{longest:?}");
    }
}
