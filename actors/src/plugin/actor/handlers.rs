//! The messages a `PluginProcess` receives, each handler forwarding to one method of
//! the actor or of its [`PluginLife`](super::state::PluginLife).

use std::time::Instant;

use actix::prelude::*;
use ipc::control::{HostEvent, Notice};

use super::{off_arbiter, BootError, PluginProcess, Running};
use crate::endpoint::actor::{EndpointEnded, EndpointName, ResyncReactor, StopEndpoint};
use crate::endpoint::SessionEnd;
use crate::lookup::PluginKind;
use crate::plugin::connection::EndpointId;

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

/// Boots the plugin at start-up: launch, `Setup`, every `Accept`. Not restarted on
/// error; a [`StopPlugin`] meanwhile calls it off.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), BootError>")]
pub struct BootPlugin;

impl Handler<BootPlugin> for PluginProcess {
    type Result = ResponseActFuture<Self, Result<(), BootError>>;

    fn handle(&mut self, _: BootPlugin, _: &mut Context<Self>) -> Self::Result {
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
pub struct StartSupervising;

impl Handler<StartSupervising> for PluginProcess {
    type Result = ();

    fn handle(&mut self, _: StartSupervising, ctx: &mut Context<Self>) {
        self.guarded(ctx, "StartSupervising", |act, ctx| {
            if act.life.may_start_supervising() {
                act.now_running(ctx);
            }
        });
    }
}

/// Closes the running endpoints of one kind (shutdown): the plugin's `close` fires for
/// each, all at once, and the endpoint actors stop. The plugin has until `deadline` to
/// answer; failures from here on are not restarted.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct CloseEndpoints {
    /// Which endpoints.
    pub kind: PluginKind,
    /// When the shutdown's time is up.
    pub deadline: Instant,
}

impl Handler<CloseEndpoints> for PluginProcess {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, msg: CloseEndpoints, _: &mut Context<Self>) -> Self::Result {
        self.life.stopping();
        let (closing, kept): (Vec<Running>, Vec<Running>) = self
            .endpoints
            .drain(..)
            .partition(|e| e.name.kind == msg.kind);
        self.endpoints = kept;
        let conn = self.conn.clone();
        Box::pin(async move {
            if let Some(conn) = conn {
                let requests: Vec<_> = closing
                    .iter()
                    .map(|e| {
                        let (conn, name, id): (_, EndpointName, EndpointId) =
                            (conn.clone(), e.name.clone(), e.id);
                        let timeout = msg.deadline.saturating_duration_since(Instant::now());
                        off_arbiter(move || {
                            if let Err(e) = conn.close(id, timeout) {
                                tracing::debug!(endpoint = %name, "close: {e}");
                            }
                        })
                    })
                    .collect();
                // Each runs on its own thread of the pool: together they take as long
                // as the slowest, which is bounded by the deadline.
                for request in requests {
                    let _ = request.await;
                }
            }
            // All stopped at once, then waited for until the deadline: a session a
            // hostile plugin keeps from ending must not hold the shutdown past it
            // (the plugin's process group is killed then, which ends it).
            let stops: Vec<_> = closing
                .iter()
                .map(|endpoint| endpoint.actor.send(StopEndpoint))
                .collect();
            let deadline = tokio::time::Instant::from_std(msg.deadline);
            let waited = tokio::time::timeout_at(deadline, async {
                for stop in stops {
                    let _ = stop.await;
                }
            });
            if waited.await.is_err() {
                tracing::warn!("endpoints still stopping at the shutdown deadline");
            }
        })
    }
}

/// Asks the plugin to exit, waits until `deadline`, then kills its process group. A
/// boot in progress is called off at once. Answers whether the plugin exited by itself
/// (a plugin that never ran counts as exited).
#[derive(Debug, Message)]
#[rtype(result = "bool")]
pub struct StopPlugin {
    /// When the plugin's time is up.
    pub deadline: Instant,
}

impl Handler<StopPlugin> for PluginProcess {
    type Result = ResponseActFuture<Self, bool>;

    fn handle(&mut self, msg: StopPlugin, _: &mut Context<Self>) -> Self::Result {
        self.life.stopping();
        let boot_over = self.call_off_boot();
        let conn = self.release();
        let stop = async move {
            // A boot called off ends within moments (its process killed, its handshake
            // cut); the deadline bounds the wait all the same.
            let deadline = tokio::time::Instant::from_std(msg.deadline);
            if tokio::time::timeout_at(deadline, boot_over).await.is_err() {
                tracing::warn!("a boot called off was still running at the shutdown deadline");
            }
            match conn {
                Some(conn) => off_arbiter(move || conn.stop_by(msg.deadline))
                    .await
                    .unwrap_or(false),
                None => true,
            }
        };
        Box::pin(stop.into_actor(self).map(|exited, _, ctx| {
            ctx.stop();
            exited
        }))
    }
}

/// An event of the control connection of incarnation `generation` (an item of the
/// stream the connection's reader feeds; nothing is dropped on the way).
pub(super) struct ControlEventArrived {
    pub(super) generation: u64,
    pub(super) event: HostEvent,
}

impl StreamHandler<ControlEventArrived> for PluginProcess {
    fn handle(&mut self, msg: ControlEventArrived, ctx: &mut Context<Self>) {
        if !self.life.is_current(msg.generation) {
            return;
        }
        self.guarded(ctx, "a control event", |act, ctx| {
            act.on_control_event(msg.event, ctx)
        });
    }

    /// The connection's events end with it (after its `Closed`): nothing to do; the
    /// default would stop the actor.
    fn finished(&mut self, _: &mut Context<Self>) {}
}

impl PluginProcess {
    fn on_control_event(&mut self, event: HostEvent, ctx: &mut Context<Self>) {
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
            HostEvent::Notice(Notice::Restarted { endpoint, error }) => {
                let Some(running) = self.endpoints.iter().find(|e| e.id == endpoint) else {
                    return;
                };
                tracing::warn!(
                    plugin = %self.name(),
                    "{} failed and the plugin restarts it in place: {error}",
                    running.name
                );
                // A reactor's fresh endpoint knows nothing: it gets the full state again.
                if running.name.kind == PluginKind::Reactor {
                    running.actor.do_send(ResyncReactor);
                }
            }
            HostEvent::Notice(Notice::Coalesced { endpoint, total }) => {
                if let Some(running) = self.endpoints.iter_mut().find(|e| e.id == endpoint) {
                    let more = total.saturating_sub(running.coalesced);
                    running.coalesced = total;
                    tracing::debug!(
                        endpoint = %running.name,
                        "{more} more updates merged in the plugin while the host was behind ({total} in all)"
                    );
                }
            }
            HostEvent::Notice(Notice::Log { level, message }) => {
                crate::plugin::output::log_line(
                    &self.name(),
                    "control",
                    &format!("{level} {message}"),
                );
            }
            HostEvent::Closed { reason } => self.fail(reason, ctx),
        }
    }
}

impl Handler<EndpointEnded> for PluginProcess {
    type Result = ();

    fn handle(&mut self, msg: EndpointEnded, ctx: &mut Context<Self>) {
        if !self.life.is_current(msg.generation) {
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
