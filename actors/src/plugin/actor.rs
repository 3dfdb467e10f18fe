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
//! More than `max_restarts` restarts within `restart_window` and the plugin is failed:
//! its endpoints stay down and the host is told, which isolates the plugin's services or
//! shuts down according to `on_plugin_failure`. A failure while booting at start-up is
//! not restarted: it is returned to the host, which exits 1.
//!
//! Every blocking call (the process, the control connection) runs on tokio's blocking
//! pool; the actor's own handlers never block an arbiter thread. A generation counter
//! tells reports of a torn-down incarnation from current ones.
//!
//! The actor runs under an actix `Supervisor`. A panic in one of its handlers is caught
//! at the handler's boundary and stops the actor; the supervisor restarts it, and the
//! restart counts as a failure of the plugin: torn down and booted again, within the
//! same budget.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use ipc::control::{HostEvent, Notice};

use super::connection::{AcceptSpec, EndpointId, PluginConnection, PluginSpec, PluginStartError};
use crate::config::{OnFailure, SupervisionPolicy};
use crate::endpoint::actor::{Endpoint, EndpointEnded, EndpointName, Session, StopEndpoint};
use crate::endpoint::{rings, ServiceCore, SessionEnd};
use crate::lookup::PluginKind;
use crate::supervise::{Backoff, RestartBudget};
use ipc::panic::catch_panic;

/// One instance this plugin serves: what its `Accept` replays.
#[derive(Clone)]
pub struct Instance {
    /// Kind, service and instance name.
    pub name: EndpointName,
    /// The instance's `cfg` as JSON.
    pub cfg: String,
    /// The service the instance belongs to.
    pub core: Arc<ServiceCore>,
}

/// Why booting a plugin failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BootError {
    /// The process could not be started or failed its handshake.
    #[error("{0}")]
    Launch(String),
    /// `Setup` failed: the plugin's message.
    #[error("{0}")]
    Setup(String),
    /// An `Accept` failed: the instance and the plugin's message.
    #[error("{endpoint}: {message}")]
    Accept {
        /// Which instance.
        endpoint: EndpointName,
        /// The plugin's message (or the host's).
        message: String,
    },
}

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

/// Where the plugin is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
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

/// A running incarnation's endpoint.
struct Running {
    name: EndpointName,
    id: EndpointId,
    actor: Addr<Endpoint>,
}

/// What one boot produced, before its endpoints' actors exist.
struct Booted {
    conn: Arc<PluginConnection>,
    sessions: Vec<(EndpointName, EndpointId, Session)>,
}

/// The host's handle on one plugin type's process.
pub struct PluginProcess {
    spec: PluginSpec,
    global_cfg: String,
    instances: Vec<Instance>,
    policy: SupervisionPolicy,
    failures: Recipient<PluginFailed>,
    phase: Phase,
    generation: u64,
    conn: Option<Arc<PluginConnection>>,
    endpoints: Vec<Running>,
    budget: RestartBudget,
    backoff: Backoff,
    running_since: Instant,
    ping_in_flight: bool,
    /// Set when a handler panicked: the actor stops and its supervisor restarts it.
    panicked: Option<String>,
    /// A failure of the current incarnation reported while it was still starting; acted
    /// on once it runs.
    pending_failure: Option<String>,
}

impl PluginProcess {
    /// A plugin process, not started yet: send [`Boot`].
    pub fn new(
        spec: PluginSpec,
        global_cfg: String,
        instances: Vec<Instance>,
        policy: SupervisionPolicy,
        failures: Recipient<PluginFailed>,
    ) -> Self {
        let backoff = Backoff::new(policy.restart_backoff_min, policy.restart_backoff_max);
        let budget = RestartBudget::new(policy.max_restarts, policy.restart_window);
        PluginProcess {
            spec,
            global_cfg,
            instances,
            policy,
            failures,
            phase: Phase::Booting,
            generation: 0,
            conn: None,
            endpoints: Vec::new(),
            budget,
            backoff,
            running_since: Instant::now(),
            ping_in_flight: false,
            panicked: None,
            pending_failure: None,
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

    /// [`Self::boot_blocking`] on the blocking pool.
    fn boot(&self) -> impl Future<Output = Result<Booted, BootError>> + 'static {
        let (spec, global_cfg, instances) = (
            self.spec.clone(),
            self.global_cfg.clone(),
            self.instances.clone(),
        );
        let boot = off_arbiter(move || Self::boot_blocking(&spec, &global_cfg, &instances));
        async move { boot.await.unwrap_or_else(|e| Err(BootError::Launch(e))) }
    }

    /// `Start` for each of `ids`, on the blocking pool.
    fn start(
        conn: Arc<PluginConnection>,
        ids: Vec<(EndpointName, EndpointId)>,
    ) -> impl Future<Output = Result<(), String>> + 'static {
        let start = off_arbiter(move || {
            for (name, id) in ids {
                conn.start(id)
                    .map_err(|e| format!("{name}: cannot start: {e}"))?;
            }
            Ok(())
        });
        async move { start.await? }
    }

    /// Launch, `Setup`, and an `Accept` with a fresh ring per instance (blocking).
    fn boot_blocking(
        spec: &PluginSpec,
        global_cfg: &str,
        instances: &[Instance],
    ) -> Result<Booted, BootError> {
        let conn = PluginConnection::launch(spec)
            .map_err(|e: PluginStartError| BootError::Launch(e.to_string()))?;
        let conn = Arc::new(conn);
        conn.setup(global_cfg)
            .map_err(|e| BootError::Setup(e.to_string()))?;
        let mut sessions = Vec::with_capacity(instances.len());
        for inst in instances {
            let fail = |message: String| BootError::Accept {
                endpoint: inst.name.clone(),
                message,
            };
            let (ring, session) = match inst.name.kind {
                PluginKind::Watcher => {
                    let (ring, end) =
                        rings::create_watcher_ring(conn.pid()).map_err(|e| fail(e.to_string()))?;
                    (ring, Session::Watcher(end, inst.core.clone()))
                }
                PluginKind::Reactor => {
                    let (ring, end) =
                        rings::create_reactor_ring(conn.pid()).map_err(|e| fail(e.to_string()))?;
                    (ring, Session::Reactor(end, inst.core.clone()))
                }
            };
            let accept = AcceptSpec {
                service: inst.name.service.clone(),
                instance: inst.name.instance.clone(),
                cfg: inst.cfg.clone(),
                ring,
            };
            let id = conn.accept(&accept).map_err(|e| fail(e.to_string()))?;
            sessions.push((inst.name.clone(), id, session));
        }
        Ok(Booted { conn, sessions })
    }

    /// Makes a boot's sessions live: endpoint actors, the connection's event forwarder.
    fn install(&mut self, booted: Booted, ctx: &mut Context<Self>) {
        self.generation += 1;
        let generation = self.generation;
        let me = ctx.address();
        if let Some(events) = booted.conn.take_events() {
            let forward = me.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("control-{}", self.spec.plugin_type))
                .spawn(move || {
                    for event in events {
                        if forward.try_send(ConnEvent { generation, event }).is_err() {
                            break;
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!(plugin = %self.name(), "cannot watch the control connection: {e}");
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
        match self.phase {
            Phase::Running => {}
            // The current incarnation's endpoints may already run while the host still
            // waits for its answers to `Start`: a failure then counts once it runs.
            Phase::Booting | Phase::Restarting if self.conn.is_some() => {
                tracing::debug!(plugin = %self.name(), "failed while starting: {reason}");
                self.pending_failure.get_or_insert(reason);
                return;
            }
            _ => {
                tracing::debug!(plugin = %self.name(), phase = ?self.phase, "ignored while not running: {reason}");
                return;
            }
        }
        tracing::error!(plugin = %self.name(), "plugin failed: {reason}");
        self.phase = Phase::Restarting;
        self.tear_down();

        let now = Instant::now();
        if now.duration_since(self.running_since) >= self.policy.restart_window {
            self.backoff.reset();
        }
        if !self.budget.spend(now) {
            self.give_up(reason);
            return;
        }
        let delay = self.backoff.next_jittered();
        tracing::info!(
            plugin = %self.name(),
            attempt = self.budget.spent(),
            "restarting in {}",
            humantime::format_duration(round_ms(delay))
        );
        ctx.run_later(delay, |act, ctx| act.restart(ctx));
    }

    /// The plugin's endpoints are all started: from now on failures restart it.
    fn now_running(&mut self, ctx: &mut Context<Self>) {
        self.phase = Phase::Running;
        self.running_since = Instant::now();
        if let Some(reason) = self.pending_failure.take() {
            self.fail(reason, ctx);
        }
    }

    fn give_up(&mut self, reason: String) {
        self.phase = Phase::Failed;
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
        self.pending_failure = None;
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
        if self.phase != Phase::Restarting {
            return;
        }
        ctx.spawn(self.boot().into_actor(self).then(|booted, act, ctx| {
            let start = match booted {
                Ok(booted) if act.phase == Phase::Restarting => {
                    act.install(booted, ctx);
                    let conn = act.conn.clone().expect("just installed");
                    Some(Self::start(conn, act.start_requests(None)))
                }
                // Shut down meanwhile: this incarnation is not wanted.
                Ok(booted) => {
                    kill(booted.conn);
                    None
                }
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
        self.phase = Phase::Running;
        self.fail(format!("restart failed: {reason}"), ctx);
    }

    fn ping(&mut self, ctx: &mut Context<Self>) {
        if self.phase != Phase::Running || self.ping_in_flight {
            return;
        }
        let Some(conn) = self.conn.clone() else {
            return;
        };
        self.ping_in_flight = true;
        let timeout = self.policy.ping_timeout;
        let generation = self.generation;
        let ping = off_arbiter(move || conn.ping(timeout).map_err(|e| e.to_string()));
        ctx.spawn(ping.into_actor(self).map(move |answer, act, ctx| {
            act.ping_in_flight = false;
            if let Err(e) = answer.and_then(|a| a) {
                if act.generation == generation {
                    act.fail(format!("no answer to a ping within {timeout:?}: {e}"), ctx);
                }
            }
        }));
    }
}

/// Runs blocking work (the process, the control connection) on tokio's blocking pool,
/// never on an arbiter thread; a panic in it comes back as an error.
fn off_arbiter<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> impl Future<Output = Result<T, String>> {
    let task = tokio::task::spawn_blocking(work);
    async move { task.await.map_err(|e| e.to_string()) }
}

/// Kills a plugin's process group and reaps it, in the background.
fn kill(conn: Arc<PluginConnection>) {
    tokio::task::spawn_blocking(move || conn.shutdown(Duration::ZERO));
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
        self.tear_down();
    }
}

impl Supervised for PluginProcess {
    /// After a panic: the plugin incarnation the actor held is suspect, so it is torn
    /// down and booted again like after any failure, spending the same budget.
    fn restarting(&mut self, ctx: &mut Context<Self>) {
        // The context dropped every future it ran, the ping's among them.
        self.ping_in_flight = false;
        let Some(reason) = self.panicked.take() else {
            return;
        };
        match self.phase {
            Phase::Running | Phase::Restarting => {
                self.phase = Phase::Running;
                self.fail(reason, ctx);
            }
            Phase::Booting | Phase::Failed | Phase::Stopping => {
                tracing::warn!(plugin = %self.name(), phase = ?self.phase, "actor restarted: {reason}");
                self.tear_down();
            }
        }
    }
}

/// A test hook: makes the actor panic inside a handler, as a bug would.
#[doc(hidden)]
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct InjectPanic;

impl Handler<InjectPanic> for PluginProcess {
    type Result = ();

    fn handle(&mut self, _: InjectPanic, ctx: &mut Context<Self>) {
        self.guarded(ctx, "InjectPanic", |_, _| panic!("injected by a test hook"));
    }
}

/// Boots the plugin at start-up: launch, `Setup`, every `Accept`. Not restarted on error.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), BootError>")]
pub struct Boot;

impl Handler<Boot> for PluginProcess {
    type Result = ResponseActFuture<Self, Result<(), BootError>>;

    fn handle(&mut self, _: Boot, _: &mut Context<Self>) -> Self::Result {
        Box::pin(self.boot().into_actor(self).map(|booted, act, ctx| {
            let booted = booted?;
            act.install(booted, ctx);
            Ok(())
        }))
    }
}

/// Starts the booted endpoints of one kind (reactors before watchers, host-wide).
#[derive(Debug, Message)]
#[rtype(result = "Result<(), String>")]
pub struct StartEndpoints(pub PluginKind);

impl Handler<StartEndpoints> for PluginProcess {
    type Result = ResponseActFuture<Self, Result<(), String>>;

    fn handle(&mut self, msg: StartEndpoints, _: &mut Context<Self>) -> Self::Result {
        let start = self
            .conn
            .clone()
            .map(|conn| Self::start(conn, self.start_requests(Some(msg.0))));
        Box::pin(
            async move {
                match start {
                    Some(start) => start.await,
                    None => Err("the plugin is not running".to_owned()),
                }
            }
            .into_actor(self),
        )
    }
}

/// Marks the plugin running (sent once every plugin's endpoints started): from now on a
/// failure restarts it, and one reported while it was starting is acted on now.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Supervise;

impl Handler<Supervise> for PluginProcess {
    type Result = ();

    fn handle(&mut self, _: Supervise, ctx: &mut Context<Self>) {
        self.guarded(ctx, "Supervise", |act, ctx| {
            if act.phase == Phase::Booting && act.conn.is_some() {
                act.now_running(ctx);
            }
        });
    }
}

/// Closes the running endpoints of one kind (shutdown): the plugin's `close` fires, and
/// the endpoint actors stop. Failures from here on are not restarted.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct CloseEndpoints(pub PluginKind);

impl Handler<CloseEndpoints> for PluginProcess {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, msg: CloseEndpoints, _: &mut Context<Self>) -> Self::Result {
        self.phase = Phase::Stopping;
        let (closing, kept): (Vec<Running>, Vec<Running>) =
            self.endpoints.drain(..).partition(|e| e.name.kind == msg.0);
        self.endpoints = kept;
        let conn = self.conn.clone();
        Box::pin(async move {
            if let Some(conn) = conn {
                let ids: Vec<(EndpointName, EndpointId)> =
                    closing.iter().map(|e| (e.name.clone(), e.id)).collect();
                let _ = off_arbiter(move || {
                    for (name, id) in ids {
                        if let Err(e) = conn.close(id) {
                            tracing::debug!(endpoint = %name, "close: {e}");
                        }
                    }
                })
                .await;
            }
            for endpoint in closing {
                let _ = endpoint.actor.send(StopEndpoint).await;
            }
        })
    }
}

/// Asks the plugin to exit, waits up to `grace`, then kills its process group.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct StopPlugin {
    /// How long the plugin gets to exit by itself.
    pub grace: Duration,
}

impl Handler<StopPlugin> for PluginProcess {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, msg: StopPlugin, _: &mut Context<Self>) -> Self::Result {
        self.phase = Phase::Stopping;
        let conn = self.release();
        let stop = async move {
            if let Some(conn) = conn {
                let _ = off_arbiter(move || conn.shutdown(msg.grace)).await;
            }
        };
        Box::pin(stop.into_actor(self).map(|_, _, ctx| ctx.stop()))
    }
}

/// An event of the control connection of incarnation `generation`.
#[derive(Message)]
#[rtype(result = "()")]
struct ConnEvent {
    generation: u64,
    event: HostEvent,
}

impl Handler<ConnEvent> for PluginProcess {
    type Result = ();

    fn handle(&mut self, msg: ConnEvent, ctx: &mut Context<Self>) {
        if msg.generation != self.generation {
            return;
        }
        self.guarded(ctx, "a control event", |act, ctx| {
            act.on_conn_event(msg.event, ctx)
        });
    }
}

impl PluginProcess {
    fn on_conn_event(&mut self, event: HostEvent, ctx: &mut Context<Self>) {
        match event {
            HostEvent::Notice(Notice::Finished { endpoint, error }) => {
                let name = self
                    .endpoints
                    .iter()
                    .find(|e| e.id == endpoint)
                    .map(|e| e.name.to_string());
                let name = name.unwrap_or_else(|| format!("endpoint {endpoint}"));
                match error {
                    // An endpoint that failed (its handle returned an error or panicked)
                    // is a crash of the plugin: restart it.
                    Some(e) => self.fail(format!("{name} ended with an error: {e}"), ctx),
                    None => tracing::info!(plugin = %self.name(), "{name} finished"),
                }
            }
            HostEvent::Notice(Notice::Log { level, message }) => {
                super::process::log_line(&self.name(), "control", &format!("{level} {message}"));
            }
            HostEvent::Closed { reason } => self.fail(reason, ctx),
        }
    }
}

impl Handler<EndpointEnded> for PluginProcess {
    type Result = ();

    fn handle(&mut self, msg: EndpointEnded, ctx: &mut Context<Self>) {
        if msg.generation != self.generation {
            return;
        }
        self.guarded(ctx, "an endpoint's end", |act, ctx| match msg.end {
            SessionEnd::Finished | SessionEnd::Stopped => {
                tracing::info!(endpoint = %msg.name, "session ended");
            }
            SessionEnd::Failed(reason) => act.fail(format!("{}: {reason}", msg.name), ctx),
        });
    }
}
