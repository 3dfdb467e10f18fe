//! `receptor run`: the actor system around a [`Receptor`], from start to exit code.
//!
//! The host runs until SIGINT or SIGTERM (then shuts down cleanly and succeeds), or
//! until an endpoint's session fails at run time (then shuts down and reports a run-time
//! failure: without supervision a broken plugin means a broken pipeline).

use actix::prelude::*;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use crate::config::Config;
use crate::endpoint::actor::EndpointEnded;
use crate::endpoint::SessionEnd;
use crate::receptor::{Launcher, Receptor, StartupError};

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

/// Collects endpoint endings from the actors into a channel the host loop awaits.
struct EndedSink(mpsc::UnboundedSender<EndpointEnded>);

impl Actor for EndedSink {
    type Context = Context<Self>;
}

impl Handler<EndpointEnded> for EndedSink {
    type Result = ();

    fn handle(&mut self, msg: EndpointEnded, _: &mut Context<Self>) {
        let _ = self.0.send(msg);
    }
}

/// Runs the services of `config` until a signal or a failure.
pub fn run(config: Config, launcher: Launcher) -> Result<(), HostError> {
    let system = actix::System::new();
    let result = system.block_on(async move {
        let mut terminate = signal(SignalKind::terminate())
            .map_err(|e| HostError::Runtime(format!("cannot watch SIGTERM: {e}")))?;
        let mut interrupt = signal(SignalKind::interrupt())
            .map_err(|e| HostError::Runtime(format!("cannot watch SIGINT: {e}")))?;
        let (tx, mut ended) = mpsc::unbounded_channel();
        let sink = EndedSink(tx).start();
        let host = Receptor::start(&config, &launcher, sink.recipient()).await?;
        let outcome = loop {
            tokio::select! {
                _ = terminate.recv() => break Ok("SIGTERM"),
                _ = interrupt.recv() => break Ok("SIGINT"),
                Some(msg) = ended.recv() => match msg.end {
                    SessionEnd::Finished | SessionEnd::Stopped => {
                        tracing::info!(endpoint = %msg.name, "endpoint finished");
                    }
                    SessionEnd::Failed(reason) => {
                        tracing::error!(endpoint = %msg.name, "endpoint failed: {reason}");
                        break Err(HostError::Runtime(format!("{} failed: {reason}", msg.name)));
                    }
                },
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
