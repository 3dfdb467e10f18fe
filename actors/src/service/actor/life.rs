//! `ServiceLife`: what the `ServiceActor` itself knows of its service (its phase, its
//! restart budget, its configured endpoints and what it heard of their sessions), as a
//! plain struct tested without actix.
//!
//! It decides; the actor acts. A panic of the actor spends the restart budget: within
//! it, the actor resends its state to the reactors; past it, the service is failed and
//! the host is told.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::config::SupervisionPolicy;
use crate::lookup::PluginKind;
use crate::service::SessionChange;
use crate::supervise::RestartBudget;

/// Where the service's actor is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServicePhase {
    /// Running: a panic restarts the actor within the budget.
    Running,
    /// The host is shutting down: sessions ending are expected.
    Stopping,
    /// Out of restarts: the host was told; the actor answers queries and does nothing
    /// more (the events still flow, see the module docs of [`super`]).
    Failed,
}

/// What to do after the actor was restarted because a handler panicked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterPanic {
    /// Make the reactors' view whole again: resend the state. `attempt` is how many
    /// restarts the budget has spent within its window, this one included.
    Resend {
        /// Restarts spent within the window.
        attempt: usize,
    },
    /// The budget is exhausted: the service is failed for good.
    GiveUp,
    /// Nothing: the service is stopping or failed already.
    Nothing,
}

/// One configured endpoint of the service, as the actor heard of it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Heard {
    /// Session changes heard (starts, ends, attaches, detaches).
    pub changes: u64,
    /// Why its sink last closed under the service, if it did.
    pub last_failure: Option<String>,
}

/// The actor's own state: phase, budget, endpoints.
#[derive(Debug)]
pub struct ServiceLife {
    name: String,
    phase: ServicePhase,
    budget: RestartBudget,
    /// The budget's `max_restarts` and `restart_window`, for the log.
    budget_of: (u32, Duration),
    /// Restarts after a panic since the start (the budget counts only its window).
    restarts: u64,
    endpoints: BTreeMap<(PluginKind, String), Heard>,
}

impl ServiceLife {
    /// A running service `name` with its configured watchers and reactors, restarted
    /// within `policy`'s budget.
    pub fn new(
        name: impl Into<String>,
        watchers: impl IntoIterator<Item = String>,
        reactors: impl IntoIterator<Item = String>,
        policy: &SupervisionPolicy,
    ) -> Self {
        let endpoints = watchers
            .into_iter()
            .map(|w| (PluginKind::Watcher, w))
            .chain(reactors.into_iter().map(|r| (PluginKind::Reactor, r)))
            .map(|key| (key, Heard::default()))
            .collect();
        ServiceLife {
            name: name.into(),
            phase: ServicePhase::Running,
            budget: RestartBudget::new(policy.max_restarts, policy.restart_window),
            budget_of: (policy.max_restarts, policy.restart_window),
            restarts: 0,
            endpoints,
        }
    }

    /// The service's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The phase.
    pub fn phase(&self) -> ServicePhase {
        self.phase
    }

    /// Restarts after a panic since the start.
    pub fn restarts(&self) -> u64 {
        self.restarts
    }

    /// The most restarts allowed within [`ServiceLife::budget_window`].
    pub fn budget_max(&self) -> u32 {
        self.budget_of.0
    }

    /// The window the restart budget counts in.
    pub fn budget_window(&self) -> Duration {
        self.budget_of.1
    }

    /// The configured endpoints and what was heard of each.
    pub fn endpoints(&self) -> &BTreeMap<(PluginKind, String), Heard> {
        &self.endpoints
    }

    /// Notes a session change; returns whether it is worth a log line at info level
    /// (a sink that closed under the service while it runs).
    pub fn heard(&mut self, change: &SessionChange) -> bool {
        let (key, failure) = match change {
            SessionChange::WatcherStarted(w) | SessionChange::WatcherEnded(w) => {
                ((PluginKind::Watcher, w.clone()), None)
            }
            SessionChange::ReactorAttached(r) => ((PluginKind::Reactor, r.clone()), None),
            SessionChange::ReactorDetached { reactor, reason } => {
                ((PluginKind::Reactor, reactor.clone()), reason.clone())
            }
        };
        let heard = self.endpoints.entry(key).or_default();
        heard.changes += 1;
        let notable = failure.is_some() && self.phase == ServicePhase::Running;
        if failure.is_some() {
            heard.last_failure = failure;
        }
        notable
    }

    /// The host is shutting down.
    pub fn stopping(&mut self) {
        if self.phase == ServicePhase::Running {
            self.phase = ServicePhase::Stopping;
        }
    }

    /// The actor was restarted at `now` after a handler panicked: what to do.
    pub fn after_panic(&mut self, now: Instant) -> AfterPanic {
        if self.phase != ServicePhase::Running {
            return AfterPanic::Nothing;
        }
        if !self.budget.spend(now) {
            self.phase = ServicePhase::Failed;
            return AfterPanic::GiveUp;
        }
        self.restarts += 1;
        AfterPanic::Resend {
            attempt: self.budget.spent(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn life(max_restarts: u32) -> ServiceLife {
        let policy = SupervisionPolicy {
            max_restarts,
            restart_window: Duration::from_secs(60),
            ..SupervisionPolicy::default()
        };
        ServiceLife::new("web", ["w".to_owned()], ["r".to_owned()], &policy)
    }

    #[test]
    fn panics_within_the_budget_resend_and_past_it_fail_the_service() {
        let mut life = life(2);
        let t0 = Instant::now();
        assert_eq!(life.after_panic(t0), AfterPanic::Resend { attempt: 1 });
        assert_eq!(life.after_panic(t0), AfterPanic::Resend { attempt: 2 });
        assert_eq!(life.after_panic(t0), AfterPanic::GiveUp);
        assert_eq!(life.phase(), ServicePhase::Failed);
        assert_eq!(life.restarts(), 2);
        assert_eq!(life.after_panic(t0), AfterPanic::Nothing, "failed is final");
    }

    #[test]
    fn a_panic_while_stopping_spends_nothing() {
        let mut life = life(1);
        life.stopping();
        assert_eq!(life.after_panic(Instant::now()), AfterPanic::Nothing);
        assert_eq!(life.phase(), ServicePhase::Stopping);
        assert_eq!(life.restarts(), 0);
    }

    #[test]
    fn session_changes_are_counted_per_endpoint_and_a_closed_sink_is_kept() {
        let mut life = life(1);
        assert!(!life.heard(&SessionChange::ReactorAttached("r".into())));
        assert!(life.heard(&SessionChange::ReactorDetached {
            reactor: "r".into(),
            reason: Some("ring closed".into()),
        }));
        assert!(!life.heard(&SessionChange::WatcherStarted("w".into())));
        let r = &life.endpoints()[&(PluginKind::Reactor, "r".to_owned())];
        assert_eq!(r.changes, 2);
        assert_eq!(r.last_failure.as_deref(), Some("ring closed"));
        let w = &life.endpoints()[&(PluginKind::Watcher, "w".to_owned())];
        assert_eq!((w.changes, w.last_failure.clone()), (1, None));
    }
}
