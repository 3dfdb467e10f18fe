//! The `PluginProcess` actor: the host's handle on one plugin process.
//!
//! A thin shell over [`PluginConnection`]: every request to the plugin is a blocking
//! round trip on the control connection, so each handler runs it on tokio's blocking
//! pool and answers with a future. No handler ever waits on an arbiter thread.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use super::connection::{AcceptSpec, EndpointId, PluginConnection, PluginRequestError};

/// The host's handle on one plugin process.
pub struct PluginProcess {
    conn: Arc<PluginConnection>,
}

impl PluginProcess {
    /// An actor over a connected plugin.
    pub fn new(conn: PluginConnection) -> Self {
        PluginProcess {
            conn: Arc::new(conn),
        }
    }

    /// Runs a blocking request on the blocking pool.
    fn blocking<T, F>(&self, request: F) -> ResponseFuture<Result<T, PluginRequestError>>
    where
        T: Send + 'static,
        F: FnOnce(&PluginConnection) -> Result<T, PluginRequestError> + Send + 'static,
    {
        let conn = self.conn.clone();
        Box::pin(async move {
            let name = conn.name().to_owned();
            tokio::task::spawn_blocking(move || request(&conn))
                .await
                .unwrap_or_else(|e| {
                    Err(PluginRequestError::Host(format!(
                        "request to {name} failed: {e}"
                    )))
                })
        })
    }
}

impl Actor for PluginProcess {
    type Context = Context<Self>;
}

/// Runs the plugin's `Setup` with its type's global config (JSON text).
#[derive(Debug, Message)]
#[rtype(result = "Result<(), PluginRequestError>")]
pub struct SetupPlugin {
    /// The `[watchers.<type>]` / `[reactors.<type>]` table as JSON.
    pub global_cfg: String,
}

impl Handler<SetupPlugin> for PluginProcess {
    type Result = ResponseFuture<Result<(), PluginRequestError>>;

    fn handle(&mut self, msg: SetupPlugin, _: &mut Context<Self>) -> Self::Result {
        self.blocking(move |conn| conn.setup(&msg.global_cfg))
    }
}

/// Runs the plugin's `Accept` for one instance; answers with the endpoint's id.
#[derive(Debug, Message)]
#[rtype(result = "Result<EndpointId, PluginRequestError>")]
pub struct AcceptEndpoint(pub AcceptSpec);

impl Handler<AcceptEndpoint> for PluginProcess {
    type Result = ResponseFuture<Result<EndpointId, PluginRequestError>>;

    fn handle(&mut self, msg: AcceptEndpoint, _: &mut Context<Self>) -> Self::Result {
        self.blocking(move |conn| conn.accept(&msg.0))
    }
}

/// Starts an accepted endpoint (the plugin runs its `handle`).
#[derive(Debug, Message)]
#[rtype(result = "Result<(), PluginRequestError>")]
pub struct StartEndpoint(pub EndpointId);

impl Handler<StartEndpoint> for PluginProcess {
    type Result = ResponseFuture<Result<(), PluginRequestError>>;

    fn handle(&mut self, msg: StartEndpoint, _: &mut Context<Self>) -> Self::Result {
        self.blocking(move |conn| conn.start(msg.0))
    }
}

/// Closes a running endpoint (fires its close signal).
#[derive(Debug, Message)]
#[rtype(result = "Result<(), PluginRequestError>")]
pub struct CloseEndpoint(pub EndpointId);

impl Handler<CloseEndpoint> for PluginProcess {
    type Result = ResponseFuture<Result<(), PluginRequestError>>;

    fn handle(&mut self, msg: CloseEndpoint, _: &mut Context<Self>) -> Self::Result {
        self.blocking(move |conn| conn.close(msg.0))
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
        let stop = self.blocking(move |conn| {
            conn.shutdown(msg.grace);
            Ok(())
        });
        Box::pin(stop.into_actor(self).map(|_, _, ctx| ctx.stop()))
    }
}
