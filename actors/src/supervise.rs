//! What every supervisor in the host shares: a restart budget, a backoff, and the
//! boundary that turns a panic into a stop.
//!
//! actix restarts a [`Supervised`](actix::Supervised) actor when it *stops*, not when
//! it panics: a panic inside a handler unwinds through the arbiter and takes every actor
//! on it down. So handlers that change state run their work through
//! [`ipc::panic::catch_panic`] (which the plugin SDK uses at its boundaries too),
//! and a caught panic becomes `ctx.stop()`; the supervisor then restarts the actor,
//! which rebuilds what it owns (for a `PluginProcess`: its plugin, like any other
//! restart). actix's supervisor also restarts without limit, so each one spends a
//! [`RestartBudget`], the same `max_restarts` within `restart_window` the plugins get.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// At most `max` restarts within any `window`.
#[derive(Debug, Clone)]
pub struct RestartBudget {
    max: u32,
    window: Duration,
    spent: VecDeque<Instant>,
}

impl RestartBudget {
    /// A budget of `max` restarts per `window`.
    pub fn new(max: u32, window: Duration) -> Self {
        RestartBudget {
            max,
            window,
            spent: VecDeque::new(),
        }
    }

    /// Spends one restart at `now`; `false` when the budget is exhausted (more than
    /// `max` restarts within the window), and then nothing is spent.
    pub fn spend(&mut self, now: Instant) -> bool {
        while self
            .spent
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.window)
        {
            self.spent.pop_front();
        }
        if self.spent.len() as u32 >= self.max {
            return false;
        }
        self.spent.push_back(now);
        true
    }

    /// Restarts spent within the current window.
    pub fn spent(&self) -> usize {
        self.spent.len()
    }
}

/// Exponential backoff between restarts: `min`, doubling per restart up to `max`, each
/// delay spread by a jitter factor so plugins that failed together do not restart in
/// step; back to `min` after a reset (the plugin was healthy for a while).
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// How far a delay is spread either way: ±20%.
    pub const JITTER: f64 = 0.2;

    /// A backoff from `min` to `max`.
    pub fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            min,
            max,
            next: min,
        }
    }

    /// The next restart waits `min` again.
    pub fn reset(&mut self) {
        self.next = self.min;
    }

    /// The delay before the next restart, spread by `spread` (in -1..=1, scaled to
    /// ±[`Backoff::JITTER`]) and never above `max`; the one after doubles.
    pub fn next_delay(&mut self, spread: f64) -> Duration {
        let factor = 1.0 + spread.clamp(-1.0, 1.0) * Self::JITTER;
        let delay = self.next.mul_f64(factor).min(self.max);
        self.next = self.next.saturating_mul(2).min(self.max);
        delay
    }

    /// [`Backoff::next_delay`] with a random spread.
    pub fn next_jittered(&mut self) -> Duration {
        self.next_delay(rand::random::<f64>() * 2.0 - 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_max_with_jitter_and_resets() {
        let ms = Duration::from_millis;
        let mut backoff = Backoff::new(ms(100), ms(500));
        assert_eq!(backoff.next_delay(0.0), ms(100));
        assert_eq!(backoff.next_delay(1.0), ms(240), "200 ms + 20%");
        assert_eq!(backoff.next_delay(-1.0), ms(320), "400 ms - 20%");
        assert_eq!(backoff.next_delay(0.0), ms(500), "capped at max");
        assert_eq!(backoff.next_delay(1.0), ms(500), "jitter never exceeds max");
        backoff.reset();
        assert_eq!(backoff.next_delay(0.0), ms(100));
        for _ in 0..100 {
            let d = Backoff::new(ms(100), ms(30_000)).next_jittered();
            assert!(d >= ms(80) && d <= ms(120), "{d:?}");
        }
    }

    #[test]
    fn the_budget_allows_max_restarts_per_window_and_refills_as_the_window_moves() {
        let mut budget = RestartBudget::new(2, Duration::from_secs(10));
        let t0 = Instant::now();
        assert!(budget.spend(t0));
        assert!(budget.spend(t0 + Duration::from_secs(1)));
        assert!(!budget.spend(t0 + Duration::from_secs(2)));
        assert_eq!(budget.spent(), 2);
        // The first restart leaves the window; one more is allowed, not two.
        assert!(budget.spend(t0 + Duration::from_secs(11)));
        assert!(!budget.spend(t0 + Duration::from_secs(11)));
    }

    #[test]
    fn a_zero_budget_allows_nothing() {
        let mut budget = RestartBudget::new(0, Duration::from_secs(60));
        assert!(!budget.spend(Instant::now()));
    }
}
