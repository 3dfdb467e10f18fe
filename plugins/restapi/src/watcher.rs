//! The restapi as a [`Watcher`]: one server per plugin process, one registered
//! service per running instance.
//!
//! `setup` binds the listen address and starts the server (so a bad address fails the
//! host's start-up with the key named); each endpoint registers its service when it
//! starts. The host closes a plugin's endpoints only when it stops, all at once, so
//! the first close stops the server for every service: the listener closes, requests
//! in progress are answered (their services are still registered), idle keep-alive
//! connections close, and after [`DRAIN_GRACE`] whatever is left is cut. Then each
//! endpoint unregisters its service and returns, well within the SDK's 3 s grace.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use plugin_sdk::{watcher_endpoint, Config, Watcher, WatcherEndpoint};

use crate::api::Api;
use crate::config::{InstanceConfig, Settings};
use crate::registry::Registry;
use crate::server::Server;

/// How long open connections get to finish their request at a stop.
pub const DRAIN_GRACE: Duration = Duration::from_secs(2);
/// How long a closing endpoint waits for requests that still hold its sender (only
/// those cut at the end of [`DRAIN_GRACE`]).
const RELEASE_GRACE: Duration = Duration::from_millis(200);

/// The restapi watcher.
#[derive(Default)]
pub struct RestApi {
    registry: Registry,
    accepted: HashSet<String>,
    server: Option<Arc<Server>>,
}

impl RestApi {
    /// The address the server listens on, once set up.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.server.as_ref().map(|s| s.local_addr())
    }
}

impl Watcher for RestApi {
    fn setup(&mut self, cfg: Config) -> plugin_sdk::Result<()> {
        let settings = Settings::parse(cfg)?;
        let server = Server::start(
            &settings,
            Api {
                registry: self.registry.clone(),
            },
        )?;
        tracing::info!("listening on http://{}", server.local_addr());
        self.server = Some(Arc::new(server));
        Ok(())
    }

    fn accept(&mut self, cfg: Config) -> plugin_sdk::Result<WatcherEndpoint> {
        let cfg: InstanceConfig = cfg.parse()?;
        let Some(server) = self.server.clone() else {
            return Err("restapi was not set up".into());
        };
        if !self.accepted.insert(cfg.service.clone()) {
            return Err(format!("service: '{}' already has a restapi watcher", cfg.service).into());
        }
        let registry = self.registry.clone();
        Ok(watcher_endpoint(move |events, close| {
            let service = cfg.service;
            let in_flight = registry.register(&service, events);
            close.wait();
            server.shutdown(DRAIN_GRACE);
            registry.unregister(&service);
            if !in_flight.wait(RELEASE_GRACE) {
                tracing::debug!(%service, "requests still in flight at the close");
            }
            Ok(())
        }))
    }
}
