//! `receptor run`: the actor system around a [`Receptor`], from start to exit code.
//!
//! The host runs until SIGINT or SIGTERM (then shuts down cleanly and succeeds; during
//! start-up, the start is called off and the host exits 1 as for a failed start), or until
//! a plugin runs out of restarts under `on_plugin_failure = "shutdown"` (then shuts down
//! and reports a run-time failure, exit 2). Under `"isolate"` a failed plugin's services
//! are reported failed and the rest keep running.

use actix::prelude::*;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::mpsc;

use crate::config::{Config, OnFailure};
use crate::plugin::actor::PluginFailed;
use crate::receptor::{FailureReports, Launcher, Receptor, StartupError};
use crate::service::ServiceFailed;

/// Why the host stopped with a failure.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// Start-up failed (exit code 1).
    #[error(transparent)]
    Startup(#[from] StartupError),
    /// Something failed while running (exit code 2).
    #[error("{0}")]
    Runtime(String),
}

/// A plugin or a service that ran out of restarts.
enum Failed {
    Plugin(PluginFailed),
    Service(ServiceFailed),
}

/// Collects plugin and service failures from the actors into a channel the host loop
/// awaits.
struct FailureSink(mpsc::UnboundedSender<Failed>);

impl Actor for FailureSink {
    type Context = Context<Self>;
}

impl Handler<PluginFailed> for FailureSink {
    type Result = ();

    fn handle(&mut self, msg: PluginFailed, _: &mut Context<Self>) {
        let _ = self.0.send(Failed::Plugin(msg));
    }
}

impl Handler<ServiceFailed> for FailureSink {
    type Result = ();

    fn handle(&mut self, msg: ServiceFailed, _: &mut Context<Self>) {
        let _ = self.0.send(Failed::Service(msg));
    }
}

/// Test hooks of `receptor run` (hidden command-line options); all off by default.
#[doc(hidden)]
#[derive(Debug, Clone, Default)]
pub struct TestHooks {
    /// Once running, make this plugin's (`kind/type`) actor panic inside a handler, or
    /// this service's (`service/<name>`, in builds with the `test-hooks` feature).
    pub panic_in: Option<String>,
}

/// The `panic_in` test hook.
fn inject_panic(host: &Receptor, target: &str) {
    let injected = match target.strip_prefix("service/") {
        #[cfg(feature = "test-hooks")]
        Some(service) => host.inject_service_panic(service),
        #[cfg(not(feature = "test-hooks"))]
        Some(_) => {
            tracing::warn!("test hook: this build has no service test hooks (feature test-hooks)");
            return;
        }
        None => host.inject_panic(target),
    };
    if !injected {
        tracing::warn!("test hook: no {target} to make panic");
    }
}

/// Runs the services of `config` until a signal or a failure.
pub fn run(config: Config, launcher: Launcher, hooks: TestHooks) -> Result<(), HostError> {
    // Transparent huge pages off for the host (and the plugins it starts, which inherit
    // the flag): a book growing by millions of nodes touches fresh memory all the time,
    // and zeroing it 2 MiB at a time on first touch stalled the pump (in the
    // `end_to_end` bench the host spent half its time there), as databases that keep
    // big hash tables (Redis, MongoDB) also find.
    if let Err(e) = nix::sys::prctl::set_thp_disable(true) {
        tracing::debug!("cannot turn transparent huge pages off: {e}");
    }
    // Every endpoint's ring is a descriptor in the host: 1,000 services need 2,000.
    match ipc::sys::raise_fd_limit() {
        Ok(limit) => tracing::debug!("open file limit: {limit}"),
        Err(e) => tracing::warn!("cannot raise the limit on open files: {e}"),
    }
    let system = actix::System::new();
    let result = system.block_on(async move {
        let mut terminate = signal(SignalKind::terminate())
            .map_err(|e| HostError::Runtime(format!("cannot watch SIGTERM: {e}")))?;
        let mut interrupt = signal(SignalKind::interrupt())
            .map_err(|e| HostError::Runtime(format!("cannot watch SIGINT: {e}")))?;
        let (tx, mut failures) = mpsc::unbounded_channel();
        let sink = FailureSink(tx).start();
        let reports = FailureReports {
            plugins: sink.clone().recipient(),
            services: sink.recipient(),
        };
        let host = Receptor::start(
            &config,
            &launcher,
            reports,
            next_signal(&mut terminate, &mut interrupt),
        )
        .await?;
        if let Some(target) = &hooks.panic_in {
            inject_panic(&host, target);
        }
        let outcome = loop {
            tokio::select! {
                signal = next_signal(&mut terminate, &mut interrupt) => break Ok(signal),
                Some(failed) = failures.recv() => {
                    if let Err(e) = on_failure(failed) {
                        break Err(e);
                    }
                }
            }
        };
        match &outcome {
            Ok(signal) => tracing::info!("{signal} received"),
            Err(e) => tracing::error!("{e}; shutting down"),
        }
        host.shutdown().await;
        outcome.map(drop)
    });
    result
}

/// Acts on a failure for good: logs it under `isolate`, or returns the error that stops
/// the host under `shutdown`.
fn on_failure(failed: Failed) -> Result<(), HostError> {
    let (what, services, on_failure, reason) = match failed {
        Failed::Plugin(f) => (
            format!("plugin {}", f.plugin),
            f.services.join(", "),
            f.on_failure,
            f.reason,
        ),
        Failed::Service(f) => (
            format!("the actor of service {}", f.service),
            f.service,
            f.on_failure,
            f.reason,
        ),
    };
    match on_failure {
        OnFailure::Isolate => {
            tracing::error!(
                "services {services} are failed ({what} is out of restarts: {reason}); the others keep running"
            );
            Ok(())
        }
        OnFailure::Shutdown => Err(HostError::Runtime(format!(
            "{what} is out of restarts ({reason}); on_plugin_failure = \"shutdown\""
        ))),
    }
}

/// The name of the next SIGTERM or SIGINT.
async fn next_signal(terminate: &mut Signal, interrupt: &mut Signal) -> &'static str {
    tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = interrupt.recv() => "SIGINT",
    }
}
