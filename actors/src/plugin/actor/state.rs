//! `PluginLife`: where a plugin is in its life and what a failure means for it, as a
//! plain struct the `PluginProcess` actor drives and tests drive without actix.
//!
//! It decides; the actor acts. A failure while running spends the restart budget and
//! yields a backoff delay (or gives the plugin up); a failure of an incarnation that is
//! still starting is held until it runs; a failure while stopping, failed or not yet
//! booted is ignored. A generation number tells reports of a torn-down incarnation from
//! those of the current one.

use std::time::{Duration, Instant};

use crate::config::SupervisionPolicy;
use crate::supervise::{Backoff, RestartBudget};

/// Where the plugin is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Not booted yet, or booting at start-up.
    Booting,
    /// Running: failures restart it.
    Running,
    /// Torn down, waiting for or doing a restart.
    Restarting,
    /// Out of restarts.
    Failed,
    /// The host is shutting down: failures are expected.
    Stopping,
}

/// What to do about a failure.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Nothing: the plugin is not running (stopping, failed, or not booted).
    Ignore,
    /// Held until the incarnation that is starting runs (then [`PluginLife::now_running`]
    /// returns it).
    Defer,
    /// Tear the incarnation down and boot a new one after `delay`.
    Restart {
        /// The backoff.
        delay: Duration,
        /// How many restarts the budget has spent within its window, this one included.
        attempt: usize,
    },
    /// Tear the incarnation down and give up: the plugin is failed for good.
    GiveUp,
}

/// What to do after the actor was restarted by its supervisor (a handler panicked).
#[derive(Debug, Clone, PartialEq)]
pub enum AfterPanic {
    /// Nothing happened that needs handling.
    Nothing,
    /// Treat the panic as a failure of the running plugin, with this verdict.
    Failed(Verdict),
    /// Tear the incarnation down; the plugin is not supervised in this phase.
    TearDown,
}

/// A plugin's phase, generation, restart budget and backoff.
#[derive(Debug)]
pub struct PluginLife {
    phase: Phase,
    generation: u64,
    /// Whether an incarnation (a connected process and its endpoints) is installed.
    installed: bool,
    budget: RestartBudget,
    backoff: Backoff,
    restart_window: Duration,
    running_since: Instant,
    ping_in_flight: bool,
    /// A failure of the current incarnation reported while it was still starting;
    /// acted on once it runs.
    pending_failure: Option<String>,
}

impl PluginLife {
    /// A plugin not booted yet, under `policy`.
    pub fn new(policy: &SupervisionPolicy) -> Self {
        PluginLife {
            phase: Phase::Booting,
            generation: 0,
            installed: false,
            budget: RestartBudget::new(policy.max_restarts, policy.restart_window),
            backoff: Backoff::new(policy.restart_backoff_min, policy.restart_backoff_max),
            restart_window: policy.restart_window,
            running_since: Instant::now(),
            ping_in_flight: false,
            pending_failure: None,
        }
    }

    /// The phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The current (latest installed) incarnation's generation.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether `generation` is the current incarnation's.
    pub fn is_current(&self, generation: u64) -> bool {
        generation == self.generation
    }

    /// Restarts spent within the budget's window.
    pub fn restarts_spent(&self) -> usize {
        self.budget.spent()
    }

    /// A booted incarnation is installed; returns its generation.
    pub fn installed(&mut self) -> u64 {
        self.generation += 1;
        self.installed = true;
        self.generation
    }

    /// The incarnation is torn down (or handed over to be stopped).
    pub fn released(&mut self) {
        self.installed = false;
        self.pending_failure = None;
    }

    /// The host is shutting down: failures are expected from now on.
    pub fn stopping(&mut self) {
        self.phase = Phase::Stopping;
    }

    /// Something failed at `now`: what to do. A restart or a give-up leaves the phase
    /// `Restarting` or `Failed`; the caller tears the incarnation down.
    pub fn fail(&mut self, reason: &str, now: Instant) -> Verdict {
        match self.phase {
            Phase::Running => {}
            // The current incarnation's endpoints may already run while the host still
            // waits for its answers to `Start`: a failure then counts once it runs.
            Phase::Booting | Phase::Restarting if self.installed => {
                self.pending_failure
                    .get_or_insert_with(|| reason.to_owned());
                return Verdict::Defer;
            }
            _ => return Verdict::Ignore,
        }
        self.phase = Phase::Restarting;
        if now.duration_since(self.running_since) >= self.restart_window {
            self.backoff.reset();
        }
        if !self.budget.spend(now) {
            self.phase = Phase::Failed;
            return Verdict::GiveUp;
        }
        Verdict::Restart {
            delay: self.backoff.next_jittered(),
            attempt: self.budget.spent(),
        }
    }

    /// The incarnation's endpoints all started at `now`: failures restart it from now
    /// on. Returns a failure reported while it was starting, to act on now.
    pub fn now_running(&mut self, now: Instant) -> Option<String> {
        self.phase = Phase::Running;
        self.running_since = now;
        self.pending_failure.take()
    }

    /// The host marks the plugin running after start-up: whether it was booted and
    /// waiting for that (then [`PluginLife::now_running`] follows).
    pub fn may_start_supervising(&self) -> bool {
        self.phase == Phase::Booting && self.installed
    }

    /// Whether a scheduled restart should go ahead (not shut down or failed meanwhile).
    pub fn may_restart(&self) -> bool {
        self.phase == Phase::Restarting
    }

    /// A restart attempt failed at `now`: it counts, and is retried, like a failure
    /// while running.
    pub fn restart_failed(&mut self, reason: &str, now: Instant) -> Verdict {
        self.phase = Phase::Running;
        self.fail(&format!("restart failed: {reason}"), now)
    }

    /// Whether to send a ping now (running, connected, none in flight); marks one in
    /// flight when so.
    pub fn ping_due(&mut self) -> bool {
        if self.phase != Phase::Running || !self.installed || self.ping_in_flight {
            return false;
        }
        self.ping_in_flight = true;
        true
    }

    /// The ping in flight is answered (or lost with the actor's context).
    pub fn ping_done(&mut self) {
        self.ping_in_flight = false;
    }

    /// The actor was restarted by its supervisor at `now`; `panicked` is the reason when
    /// a handler panicked.
    pub fn after_restart(&mut self, panicked: Option<String>, now: Instant) -> AfterPanic {
        // The context dropped every future it ran, the ping's among them.
        self.ping_in_flight = false;
        let Some(reason) = panicked else {
            return AfterPanic::Nothing;
        };
        match self.phase {
            Phase::Running | Phase::Restarting => {
                self.phase = Phase::Running;
                AfterPanic::Failed(self.fail(&reason, now))
            }
            Phase::Booting | Phase::Failed | Phase::Stopping => AfterPanic::TearDown,
        }
    }
}

#[cfg(test)]
mod tests;
