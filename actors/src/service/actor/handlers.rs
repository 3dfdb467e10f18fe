//! The messages a `ServiceActor` receives, each handler forwarding to its
//! [`ServiceLife`](super::life::ServiceLife) or to the service's state (read on tokio's
//! blocking pool), and what a status query answers.

use std::collections::BTreeMap;

use actix::prelude::*;

use super::life::{Heard, ServicePhase};
use super::ServiceActor;
use crate::lookup::PluginKind;
use crate::plugin::actor::off_arbiter;
use crate::service::{SessionChange, StateReport};

/// Asks for the service's status: its nodes, counters and endpoints now.
#[derive(Debug, Message)]
#[rtype(result = "Result<ServiceReport, ServiceStatusError>")]
pub struct ServiceStatus;

/// One configured endpoint in a [`ServiceReport`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointStatus {
    /// Watcher or reactor.
    pub kind: PluginKind,
    /// Its instance name.
    pub instance: String,
    /// Whether its session runs now (a watcher) or its ring is attached (a reactor).
    pub attached: bool,
    /// How many sessions it had (more than one: its plugin was restarted).
    pub sessions: u64,
    /// Why its ring last closed under the service, if it did.
    pub last_failure: Option<String>,
}

/// What [`ServiceStatus`] answers.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceReport {
    /// The service.
    pub service: String,
    /// Where its actor is in its life.
    pub phase: ServicePhase,
    /// How many times its actor was restarted after a panic.
    pub restarts: u64,
    /// Every configured endpoint, watchers first, by name.
    pub endpoints: Vec<EndpointStatus>,
    /// The state: nodes up, counters, per-watcher and per-reactor figures.
    pub state: StateReport,
}

impl ServiceReport {
    fn new(
        service: String,
        phase: ServicePhase,
        restarts: u64,
        heard: BTreeMap<(PluginKind, String), Heard>,
        state: StateReport,
    ) -> Self {
        let mut endpoints: Vec<EndpointStatus> = heard
            .into_iter()
            .map(|((kind, instance), heard)| {
                let (attached, sessions) = match kind {
                    PluginKind::Watcher => state
                        .watchers
                        .iter()
                        .find(|w| w.name == instance)
                        .map_or((false, 0), |w| (w.attached, w.sessions)),
                    PluginKind::Reactor => state
                        .reactors
                        .iter()
                        .find(|r| r.name == instance)
                        .map_or((false, 0), |r| (r.attached, r.sessions)),
                };
                EndpointStatus {
                    kind,
                    instance,
                    attached,
                    sessions,
                    last_failure: heard.last_failure,
                }
            })
            .collect();
        endpoints.sort_by_key(|e| e.kind != PluginKind::Watcher);
        ServiceReport {
            service,
            phase,
            restarts,
            endpoints,
            state,
        }
    }

    /// The status of endpoint `instance` of `kind`, if configured.
    pub fn endpoint(&self, kind: PluginKind, instance: &str) -> Option<&EndpointStatus> {
        self.endpoints
            .iter()
            .find(|e| e.kind == kind && e.instance == instance)
    }
}

/// Why a status query got no answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ServiceStatusError {
    /// No service of that name is configured.
    #[error("no service '{0}' is configured")]
    Unknown(String),
    /// The service's actor did not answer (it was restarting, or the host stops).
    #[error("service '{service}': its actor did not answer: {reason}")]
    NoAnswer {
        /// The service.
        service: String,
        /// Why.
        reason: String,
    },
}

impl Handler<ServiceStatus> for ServiceActor {
    type Result = ResponseFuture<Result<ServiceReport, ServiceStatusError>>;

    fn handle(&mut self, _: ServiceStatus, _: &mut Context<Self>) -> Self::Result {
        let (service, phase, restarts) = (
            self.life.name().to_owned(),
            self.life.phase(),
            self.life.restarts(),
        );
        let heard = self.life.endpoints().clone();
        let core = self.core.clone();
        // A pump may hold the state's lock for a whole batch: read it off the arbiter.
        let read = off_arbiter(move || core.lock().report());
        Box::pin(async move {
            let state = read.await.map_err(|reason| ServiceStatusError::NoAnswer {
                service: service.clone(),
                reason: format!("reading the state failed: {reason}"),
            })?;
            Ok(ServiceReport::new(service, phase, restarts, heard, state))
        })
    }
}

impl Handler<SessionChange> for ServiceActor {
    type Result = ();

    fn handle(&mut self, change: SessionChange, ctx: &mut Context<Self>) {
        self.guarded(ctx, "a session change", |act, _| {
            if act.life.heard(&change) {
                tracing::info!(service = %act.name(), "session change: {change:?}");
            } else {
                tracing::debug!(service = %act.name(), "session change: {change:?}");
            }
        });
    }
}

/// The host is shutting down: sessions ending are expected from now on, and a panic no
/// longer spends the budget.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct StopService;

impl Handler<StopService> for ServiceActor {
    type Result = ();

    fn handle(&mut self, _: StopService, ctx: &mut Context<Self>) {
        self.guarded(ctx, "StopService", |act, _| act.life.stopping());
    }
}

/// A test hook: makes the actor panic inside a handler, as a bug would. Built only for
/// tests (`cfg(test)` or the `test-hooks` feature), never into a release.
#[cfg(any(test, feature = "test-hooks"))]
#[doc(hidden)]
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct InjectServicePanic;

#[cfg(any(test, feature = "test-hooks"))]
impl Handler<InjectServicePanic> for ServiceActor {
    type Result = ();

    fn handle(&mut self, _: InjectServicePanic, ctx: &mut Context<Self>) {
        self.guarded(ctx, "InjectServicePanic", |_, _| {
            panic!("injected by a test hook")
        });
    }
}
