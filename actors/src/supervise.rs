//! What every supervisor in the host shares: a restart budget, and the boundary that
//! turns a panic into a stop.
//!
//! actix restarts a [`Supervised`](actix::Supervised) actor when it *stops*, not when
//! it panics: a panic inside a handler unwinds through the arbiter and takes every actor
//! on it down. So handlers that change state run their work through [`catch_panic`],
//! and a caught panic becomes `ctx.stop()`; the supervisor then restarts the actor,
//! which rebuilds what it owns (for a `PluginProcess`: its plugin, like any other
//! restart). actix's supervisor also restarts without limit, so each one spends a
//! [`RestartBudget`], the same `max_restarts` within `restart_window` the plugins get.

use std::any::Any;
use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

/// Runs `work`, returning its panic's message as an error instead of unwinding.
///
/// The caller owns what `work` touched and must treat it as suspect after a panic
/// (stop the actor, end the session): that is why unwind safety is asserted here.
pub fn catch_panic<R>(work: impl FnOnce() -> R) -> Result<R, String> {
    catch_unwind(AssertUnwindSafe(work)).map_err(panic_message)
}

/// The text of a panic payload (`panic!` with a literal or a formatted message).
pub fn panic_message(payload: Box<dyn Any + Send>) -> String {
    panic_message_ref(payload.as_ref()).to_owned()
}

/// [`panic_message`] of a borrowed payload (as a panic hook sees it).
pub fn panic_message_ref(payload: &(dyn Any + Send)) -> &str {
    if let Some(text) = payload.downcast_ref::<String>() {
        text
    } else if let Some(text) = payload.downcast_ref::<&'static str>() {
        text
    } else {
        "a panic with a non-text payload"
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn a_panic_becomes_its_message() {
        assert_eq!(catch_panic(|| 7), Ok(7));
        assert_eq!(
            catch_panic(|| -> () { panic!("boom {}", 42) }),
            Err("boom 42".to_owned())
        );
        assert_eq!(
            catch_panic(|| -> () { panic!("static") }),
            Err("static".to_owned())
        );
        assert_eq!(
            catch_panic(|| std::panic::panic_any(5_u8)),
            Err("a panic with a non-text payload".to_owned())
        );
    }
}
