//! The `ServiceActor`: one per configured service, the owner of its state's life cycle.
//!
//! The actor makes the service's state (a [`ServiceCore`]: books, reactor outputs,
//! counters) at start-up and hands it to the service's endpoints; it hears every session
//! start, end, attach and detach (the state tells it, see
//! [`SessionChange`](crate::service::SessionChange)); it answers [`ServiceStatus`] (the
//! nodes up now, per-watcher and per-reactor counters, which endpoint is attached) for
//! the admin API; and at shutdown it is told the host is stopping. It is a thin shell:
//! [`life::ServiceLife`] holds what the actor decides on, [`handlers`] the messages.
//!
//! # The hot path stays off the actor
//! Events never go through the actor's mailbox: a watcher's pump applies its batches to
//! the state under the state's lock and pushes the changes into the reactors' rings
//! itself (see [`crate::endpoint::session`]). The actor sees a handful of messages per
//! plugin restart, and takes the state's lock only when asked for a status or after a
//! panic, always on tokio's blocking pool (a pump may hold the lock for a whole batch;
//! an arbiter thread never waits for it).
//!
//! # Supervision: what a panic restarts, and why nothing is lost
//! The actor runs under an actix `Supervisor`. A panic in one of its handlers is caught
//! at the handler's boundary ([`crate::supervise`]) and stops the actor; the supervisor
//! restarts it, spending the service's restart budget (`max_restarts` within
//! `restart_window` of the `[supervision]` table's defaults).
//!
//! The service's data is deliberately *not* the actor's: the state lives in the
//! [`ServiceCore`] the actor shares with the session threads, so a restart of the actor
//! loses none of it: the books (every watcher's truth), the reactors' backlogs and
//! rings, the counters all outlive it, and the watchers need not resend anything. What
//! a panic of the actor can leave inconsistent is limited to what the actor writes:
//! - its own [`life::ServiceLife`] (what it heard of the sessions): plain counters with
//!   no invariant between them, at worst one change miscounted;
//! - the state, only through the calls the actor makes under its lock, and those are
//!   reads ([`ServiceState::report`](crate::service::ServiceState::report)) and
//!   [`resend_state`](crate::service::ServiceState::resend_state), which merges into
//!   backlogs. The books are written only by the pump threads; a panic there ends that
//!   session and restarts its plugin (see [`crate::endpoint::actor`]), never this actor.
//!
//! Still, a restarted actor does not assume its predecessor was harmless: it hands every
//! attached reactor the full current state again (merged into what is pending for it, so
//! a pending down stays down), as a restarted reactor gets it. A reactor may thus see
//! nodes it already knew repeated as up; it never ends with a view other than the
//! watchers' truth.
//!
//! Past the budget the service is failed: the host is told ([`ServiceFailed`]) and acts
//! on `on_plugin_failure` as for a failed plugin (`shutdown`: exit 2; `isolate`: the
//! service is reported failed and the rest run on). A failed service's actor answers
//! status queries (phase `Failed`) and restarts nothing more; its events keep flowing,
//! since its data was never the actor's to corrupt.
//!
//! # Layout
//! - [`life`]: `ServiceLife`, the phase, budget and endpoints, tested without actix.
//! - [`handlers`]: the messages the actor receives, and what [`ServiceStatus`] answers.

pub mod handlers;
pub mod life;

use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use ipc::panic::catch_panic;

use self::life::{AfterPanic, ServiceLife};
use crate::config::{OnFailure, SupervisionPolicy};
use crate::endpoint::ServiceCore;
use crate::plugin::actor::off_arbiter;
use crate::service::ServiceState;

#[cfg(any(test, feature = "test-hooks"))]
pub use self::handlers::InjectServicePanic;
pub use self::handlers::{
    EndpointStatus, ServiceReport, ServiceStatus, ServiceStatusError, StopService,
};
pub use self::life::ServicePhase;

/// What a service is made of: its name, its configured instances, and the policy its
/// actor is restarted under.
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    /// The service's name.
    pub name: String,
    /// Its watcher instances.
    pub watchers: Vec<String>,
    /// Its reactor instances.
    pub reactors: Vec<String>,
    /// The restart budget (`max_restarts`, `restart_window`) and `on_plugin_failure`.
    pub policy: SupervisionPolicy,
}

/// A service's actor ran out of restarts (sent to the host).
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct ServiceFailed {
    /// The service.
    pub service: String,
    /// What the policy says to do.
    pub on_failure: OnFailure,
    /// The last panic.
    pub reason: String,
}

/// The owner of one service's life cycle.
pub struct ServiceActor {
    life: ServiceLife,
    core: Arc<ServiceCore>,
    on_failure: OnFailure,
    failures: Recipient<ServiceFailed>,
    /// Set when a handler panicked: the actor stops and its supervisor restarts it.
    panicked: Option<String>,
}

impl ServiceActor {
    /// Starts the actor of service `spec` under a supervisor; returns its address and
    /// the service's state, for the service's endpoints. `failures` hears of the
    /// service running out of restarts.
    pub fn start(
        spec: ServiceSpec,
        failures: Recipient<ServiceFailed>,
    ) -> (Addr<ServiceActor>, Arc<ServiceCore>) {
        let core = ServiceCore::new(ServiceState::new(spec.name.clone()));
        let shared = core.clone();
        let addr = actix::Supervisor::start(move |ctx: &mut Context<ServiceActor>| {
            // A weak address: the state must not keep its own actor alive.
            let me = ctx.address().downgrade();
            // Nothing else holds the state yet: this lock is free.
            shared.lock().set_observer(Box::new(move |change| {
                if let Some(me) = me.upgrade() {
                    me.do_send(change);
                }
            }));
            ServiceActor {
                life: ServiceLife::new(spec.name, spec.watchers, spec.reactors, &spec.policy),
                core: shared,
                on_failure: spec.policy.on_plugin_failure,
                failures,
                panicked: None,
            }
        });
        (addr, core)
    }

    fn name(&self) -> &str {
        self.life.name()
    }

    /// Runs a handler's work; a panic in it stops the actor (its supervisor restarts
    /// it) instead of unwinding through the arbiter.
    fn guarded(
        &mut self,
        ctx: &mut Context<Self>,
        what: &str,
        work: impl FnOnce(&mut Self, &mut Context<Self>),
    ) {
        if let Err(panic) = catch_panic(|| work(self, ctx)) {
            tracing::error!(service = %self.name(), "panic while handling {what}: {panic}; restarting the service's actor");
            self.panicked = Some(format!(
                "the service's actor panicked while handling {what}: {panic}"
            ));
            ctx.stop();
        }
    }

    /// Hands every attached reactor the full current state again (off the arbiter).
    fn resend_state(&mut self, ctx: &mut Context<Self>) {
        let core = self.core.clone();
        let resend = off_arbiter(move || {
            let reactors = core.lock().resend_state();
            core.wake_flushers(&reactors);
            reactors.len()
        });
        ctx.spawn(resend.into_actor(self).map(|sent, act, _| match sent {
            Ok(reactors) => tracing::info!(
                service = %act.name(),
                reactors,
                "the service's state was resent to its attached reactors"
            ),
            Err(e) => {
                tracing::error!(service = %act.name(), "cannot resend the service's state: {e}")
            }
        }));
    }

    fn after_panic(&mut self, reason: String, ctx: &mut Context<Self>) {
        match self.life.after_panic(Instant::now()) {
            AfterPanic::Resend { attempt } => {
                tracing::warn!(service = %self.name(), attempt, "service actor restarted: {reason}");
                self.resend_state(ctx);
            }
            AfterPanic::GiveUp => {
                tracing::error!(
                    service = %self.name(),
                    "service failed for good: its actor panicked more than {} times within {}: {reason}",
                    self.life.budget_max(),
                    humantime::format_duration(self.life.budget_window()),
                );
                self.failures.do_send(ServiceFailed {
                    service: self.name().to_owned(),
                    on_failure: self.on_failure,
                    reason,
                });
            }
            AfterPanic::Nothing => {
                tracing::warn!(service = %self.name(), phase = ?self.life.phase(), "service actor restarted: {reason}");
            }
        }
    }
}

impl Actor for ServiceActor {
    type Context = Context<Self>;
}

impl Supervised for ServiceActor {
    /// After a panic: spend the budget, and resend the state or give the service up.
    fn restarting(&mut self, ctx: &mut Context<Self>) {
        let Some(reason) = self.panicked.take() else {
            return;
        };
        // Not a handler, but the same boundary: a panic here must not reach the arbiter.
        if let Err(panic) = catch_panic(|| self.after_panic(reason, ctx)) {
            tracing::error!(service = %self.name(), "panic while restarting the service's actor: {panic}");
        }
    }
}

#[cfg(test)]
mod tests;
