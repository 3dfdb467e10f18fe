//! The `PluginProcess` actor: one plugin type's process, its endpoints, and their
//! supervision.
//!
//! It boots the process (launch, `Setup`, one `Accept` per instance with a fresh ring,
//! an `Endpoint` actor per session), starts the endpoints when the host says so, pings
//! the process every `ping_interval`, and restarts it when it fails while running: the
//! process exits or its control connection breaks, an endpoint ends with an error, a
//! session reads a bad frame or loses its peer, or a ping goes unanswered for
//! `ping_timeout` (then the process group is SIGKILLed first). A restart tears the
//! endpoints down (their rings are unlinked), waits a backoff that doubles with jitter
//! from `restart_backoff_min` to `restart_backoff_max` (reset after a healthy
//! `restart_window`), and replays the boot and the starts. A restarted reactor gets the
//! service's full state first (its flusher re-attaches to the service), a restarted
//! watcher's nodes stay as they were until it reports again (its book is kept).
//!
//! An endpoint whose `handle` failed may be restarted in place by the plugin's SDK (a
//! `Restarted` notice): that is logged, and a reactor's endpoint gets the service's full
//! state again ([`ResyncReactor`](crate::endpoint::actor::ResyncReactor)); the process
//! is not restarted. A watcher's count of merged updates (`Coalesced`) is kept per
//! endpoint and logged at debug.
//!
//! More than `max_restarts` restarts within `restart_window` and the plugin is failed:
//! its endpoints stay down and the host is told, which isolates the plugin's services or
//! shuts down according to `on_plugin_failure`. A failure while booting at start-up is
//! not restarted: it is returned to the host, which exits 1.
//!
//! The actor is a thin shell: [`state::PluginLife`] decides what a failure means (phase,
//! budget, backoff, generation), [`boot`] does the blocking work of a boot, and
//! [`handlers`] holds the messages. Every blocking call (the process, the control
//! connection) runs on tokio's blocking pool; the actor's own handlers never block an
//! arbiter thread. The control connection's notices reach the actor through a bounded
//! channel its reader thread blocks on when full, so none is ever dropped.
//!
//! The actor runs under an actix `Supervisor`. A panic in one of its handlers is caught
//! at the handler's boundary and stops the actor; the supervisor restarts it, and the
//! restart counts as a failure of the plugin: torn down and booted again, within the
//! same budget.
//!
//! # Layout
//! - [`state`]: `PluginLife`, the phase machine, tested without actix.
//! - [`boot`]: launch, `Setup` and `Accept` of one incarnation, and calling it off.
//! - [`handlers`]: the messages the actor receives and their handlers.

pub mod boot;
pub mod handlers;
pub mod state;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use actix::prelude::*;
use ipc::panic::catch_panic;

use self::boot::{boot_blocking, BootGuard, Booted};
use self::handlers::ControlEventArrived;
use self::state::{AfterPanic, PluginLife, Verdict};
use super::connection::{EndpointId, PluginConnection, PluginSpec};
use crate::config::{OnFailure, SupervisionPolicy};
use crate::endpoint::actor::{Endpoint, EndpointEnded, EndpointName, StopEndpoint};
use crate::lookup::PluginKind;

pub use self::boot::{BootError, Instance};
pub use self::handlers::{
    BootPlugin, CloseEndpoints, InjectPanic, StartEndpoints, StartSupervising, StopPlugin,
};

/// How many control notices wait for the actor before the connection's reader thread
/// waits for room.
const NOTICE_BACKLOG: usize = 64;

/// A plugin ran out of restarts (sent to the host).
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct PluginFailed {
    /// `kind/type`.
    pub plugin: String,
    /// The services it serves.
    pub services: Vec<String>,
    /// What the policy says to do.
    pub on_failure: OnFailure,
    /// The last failure.
    pub reason: String,
}

/// A running incarnation's endpoint.
struct Running {
    name: EndpointName,
    id: EndpointId,
    actor: Addr<Endpoint>,
    /// The plugin's count of this endpoint's updates merged while the host was behind
    /// (`Notice::Coalesced`; watchers only).
    coalesced: u64,
}

/// The host's handle on one plugin type's process.
pub struct PluginProcess {
    spec: PluginSpec,
    global_cfg: String,
    instances: Vec<Instance>,
    policy: SupervisionPolicy,
    failures: Recipient<PluginFailed>,
    life: PluginLife,
    conn: Option<Arc<PluginConnection>>,
    endpoints: Vec<Running>,
    /// The boot in progress, if any, so a shutdown can call it off.
    booting: Option<Arc<BootGuard>>,
    /// Set when a handler panicked: the actor stops and its supervisor restarts it.
    panicked: Option<String>,
}

impl PluginProcess {
    /// A plugin process, not started yet: send [`BootPlugin`].
    pub fn new(
        spec: PluginSpec,
        global_cfg: String,
        instances: Vec<Instance>,
        policy: SupervisionPolicy,
        failures: Recipient<PluginFailed>,
    ) -> Self {
        PluginProcess {
            spec,
            global_cfg,
            instances,
            life: PluginLife::new(&policy),
            policy,
            failures,
            conn: None,
            endpoints: Vec::new(),
            booting: None,
            panicked: None,
        }
    }

    fn name(&self) -> String {
        self.spec.name()
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
            tracing::error!(plugin = %self.name(), "panic while handling {what}: {panic}; restarting the actor");
            self.panicked = Some(format!(
                "the host actor panicked while handling {what}: {panic}"
            ));
            ctx.stop();
        }
    }

    /// A boot on the blocking pool, which [`Self::call_off_boot`] can call off.
    fn boot(&mut self) -> impl Future<Output = Result<Booted, BootError>> + 'static {
        let (spec, global_cfg, instances) = (
            self.spec.clone(),
            self.global_cfg.clone(),
            self.instances.clone(),
        );
        let guard = Arc::new(BootGuard::default());
        self.booting = Some(guard.clone());
        let boot = off_arbiter(move || boot_blocking(&spec, &global_cfg, &instances, &guard));
        async move { boot.await.unwrap_or_else(|e| Err(BootError::Launch(e))) }
    }

    /// Calls off the boot in progress, if any; the future resolves once it is over.
    fn call_off_boot(&mut self) -> impl Future<Output = ()> + 'static {
        let guard = self.booting.take();
        if let Some(guard) = &guard {
            guard.abort();
        }
        async move {
            if let Some(guard) = guard {
                guard.finished().await;
            }
        }
    }

    /// `Start` for each of `ids`, on the blocking pool.
    fn start(
        conn: Arc<PluginConnection>,
        ids: Vec<(EndpointName, EndpointId)>,
    ) -> impl Future<Output = Result<(), String>> + 'static {
        let start = off_arbiter(move || {
            let endpoints: Vec<EndpointId> = ids.iter().map(|(_, id)| *id).collect();
            conn.start_all(&endpoints)
                .map_err(|(i, e)| format!("{}: cannot start: {e}", ids[i].0))
        });
        async move { start.await? }
    }

    /// Makes a boot's sessions live: endpoint actors, the connection's notices.
    fn install(&mut self, booted: Booted, ctx: &mut Context<Self>) {
        self.booting = None;
        let generation = self.life.installed();
        if let Some(events) = booted.conn.take_events() {
            let (tx, rx) = tokio::sync::mpsc::channel(NOTICE_BACKLOG);
            // A plain thread, not the runtime: it blocks while the actor catches up, and
            // ends when the connection's events end or the actor is gone.
            let spawned = std::thread::Builder::new()
                .name(format!("control-{}", self.spec.plugin_type))
                .spawn(move || {
                    for event in events {
                        if tx
                            .blocking_send(ControlEventArrived { generation, event })
                            .is_err()
                        {
                            break;
                        }
                    }
                });
            match spawned {
                Ok(_) => {
                    ctx.add_stream(ControlEvents(rx));
                }
                Err(e) => {
                    tracing::warn!(plugin = %self.name(), "cannot watch the control connection: {e}")
                }
            }
        }
        let report = ctx.address().recipient::<EndpointEnded>();
        self.endpoints = booted
            .sessions
            .into_iter()
            .map(|(name, id, session)| Running {
                actor: Endpoint::new(name.clone(), session, report.clone(), generation).start(),
                name,
                id,
                coalesced: 0,
            })
            .collect();
        self.conn = Some(booted.conn);
    }

    /// The `Start` requests for the endpoints of `kind` (all when `None`), reactors first.
    fn start_requests(&self, kind: Option<PluginKind>) -> Vec<(EndpointName, EndpointId)> {
        let mut ids: Vec<(EndpointName, EndpointId)> = self
            .endpoints
            .iter()
            .filter(|e| kind.is_none_or(|k| e.name.kind == k))
            .map(|e| (e.name.clone(), e.id))
            .collect();
        ids.sort_by_key(|(name, _)| name.kind != PluginKind::Reactor);
        ids
    }

    /// Something failed while running: tear down and restart, or give up.
    fn fail(&mut self, reason: String, ctx: &mut Context<Self>) {
        let verdict = self.life.fail(&reason, Instant::now());
        self.act_on(verdict, reason, ctx);
    }

    /// Carries out what [`PluginLife`] decided about a failure.
    fn act_on(&mut self, verdict: Verdict, reason: String, ctx: &mut Context<Self>) {
        match verdict {
            Verdict::Ignore => {
                tracing::debug!(plugin = %self.name(), phase = ?self.life.phase(), "ignored while not running: {reason}");
            }
            Verdict::Defer => {
                tracing::debug!(plugin = %self.name(), "failed while starting: {reason}");
            }
            Verdict::Restart { delay, attempt } => {
                tracing::error!(plugin = %self.name(), "plugin failed: {reason}");
                self.tear_down();
                tracing::info!(
                    plugin = %self.name(),
                    attempt,
                    "restarting in {}",
                    humantime::format_duration(round_ms(delay))
                );
                ctx.run_later(delay, |act, ctx| act.restart(ctx));
            }
            Verdict::GiveUp => {
                tracing::error!(plugin = %self.name(), "plugin failed: {reason}");
                self.tear_down();
                self.give_up(reason);
            }
        }
    }

    /// The plugin's endpoints are all started: from now on failures restart it.
    fn now_running(&mut self, ctx: &mut Context<Self>) {
        if let Some(reason) = self.life.now_running(Instant::now()) {
            self.fail(reason, ctx);
        }
    }

    fn give_up(&mut self, reason: String) {
        let mut services: Vec<String> = self
            .instances
            .iter()
            .map(|i| i.name.service.clone())
            .collect();
        services.dedup();
        tracing::error!(
            plugin = %self.name(),
            "plugin failed for good: more than {} restarts within {}; services {} have no {}",
            self.policy.max_restarts,
            humantime::format_duration(self.policy.restart_window),
            services.join(", "),
            self.name()
        );
        self.failures.do_send(PluginFailed {
            plugin: self.name(),
            services,
            on_failure: self.policy.on_plugin_failure,
            reason,
        });
    }

    /// Stops the endpoints (their threads end within a wait slice) and hands over the
    /// connection, whose process is the caller's to stop.
    fn release(&mut self) -> Option<Arc<PluginConnection>> {
        self.life.released();
        for endpoint in self.endpoints.drain(..) {
            endpoint.actor.do_send(StopEndpoint);
        }
        self.conn.take()
    }

    /// Stops the endpoints and kills the process group, in the background.
    fn tear_down(&mut self) {
        if let Some(conn) = self.release() {
            kill(conn);
        }
    }

    fn restart(&mut self, ctx: &mut Context<Self>) {
        if !self.life.may_restart() {
            return;
        }
        ctx.spawn(self.boot().into_actor(self).then(|booted, act, ctx| {
            let start = match booted {
                Ok(booted) if act.life.may_restart() => {
                    act.install(booted, ctx);
                    let conn = act.conn.clone().expect("just installed");
                    Some(Self::start(conn, act.start_requests(None)))
                }
                // Shut down meanwhile: this incarnation is not wanted.
                Ok(booted) => {
                    kill(booted.conn);
                    None
                }
                Err(BootError::Aborted) => None,
                Err(e) => {
                    act.restart_failed(e.to_string(), ctx);
                    None
                }
            };
            async move {
                match start {
                    Some(start) => Some(start.await),
                    None => None,
                }
            }
            .into_actor(act)
            .map(|started, act, ctx| match started {
                Some(Ok(())) => {
                    tracing::info!(plugin = %act.name(), "plugin restarted; its endpoints are running again");
                    act.now_running(ctx);
                }
                Some(Err(reason)) => act.restart_failed(reason, ctx),
                None => {}
            })
        }));
    }

    /// A restart attempt failed: it counts, and is retried, like a failure while
    /// running.
    fn restart_failed(&mut self, reason: String, ctx: &mut Context<Self>) {
        let verdict = self.life.restart_failed(&reason, Instant::now());
        self.act_on(verdict, format!("restart failed: {reason}"), ctx);
    }

    fn ping(&mut self, ctx: &mut Context<Self>) {
        let Some(conn) = self.conn.clone() else {
            return;
        };
        if !self.life.ping_due() {
            return;
        }
        let timeout = self.policy.ping_timeout;
        let generation = self.life.generation();
        let ping = off_arbiter(move || conn.ping(timeout).map_err(|e| e.to_string()));
        ctx.spawn(ping.into_actor(self).map(move |answer, act, ctx| {
            act.life.ping_done();
            if let Err(e) = answer.and_then(|a| a) {
                if act.life.is_current(generation) {
                    act.fail(format!("no answer to a ping within {timeout:?}: {e}"), ctx);
                }
            }
        }));
    }
}

/// The control connection's events, as a stream the actor drains.
struct ControlEvents(tokio::sync::mpsc::Receiver<ControlEventArrived>);

impl Stream for ControlEvents {
    type Item = ControlEventArrived;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

/// Runs blocking work (the process, the control connection) on tokio's blocking pool,
/// never on an arbiter thread; a panic in it comes back as an error.
pub(crate) fn off_arbiter<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> impl Future<Output = Result<T, String>> {
    let task = tokio::task::spawn_blocking(work);
    async move { task.await.map_err(|e| e.to_string()) }
}

/// Kills a plugin's process group and reaps it, in the background.
fn kill(conn: Arc<PluginConnection>) {
    tokio::task::spawn_blocking(move || conn.kill());
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}

impl Actor for PluginProcess {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let interval = self.policy.ping_interval;
        ctx.run_interval(interval, |act, ctx| {
            act.guarded(ctx, "a ping tick", Self::ping)
        });
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        if let Some(guard) = self.booting.take() {
            guard.abort();
        }
        self.tear_down();
    }
}

impl Supervised for PluginProcess {
    /// After a panic: the plugin incarnation the actor held is suspect, so it is torn
    /// down and booted again like after any failure, spending the same budget.
    fn restarting(&mut self, ctx: &mut Context<Self>) {
        let panicked = self.panicked.take();
        let reason = panicked.clone().unwrap_or_default();
        match self.life.after_restart(panicked, Instant::now()) {
            AfterPanic::Nothing => {}
            AfterPanic::Failed(verdict) => self.act_on(verdict, reason, ctx),
            AfterPanic::TearDown => {
                tracing::warn!(plugin = %self.name(), phase = ?self.life.phase(), "actor restarted: {reason}");
                self.tear_down();
            }
        }
    }
}
