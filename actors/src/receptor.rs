//! The root of the host: start-up, the running pipeline, and shutdown.
//!
//! Start-up follows the seed's life cycle: one plugin process per plugin type in use,
//! `Setup` once per type with its global config, then for every service an `Accept` per
//! instance (each with a fresh ring), then `Start`, reactors first so that no event
//! finds a reactor missing. Any failure there is a [`StartupError`] that names the
//! plugin, the service and the instance, with the plugin's own message.
//!
//! Shutdown is one signal out and completion counted back, with a deadline: close the
//! watchers, let the reactors drain what is in flight, close the reactors, ask every
//! plugin to exit, and kill what is still alive after `shutdown_timeout`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use actix::prelude::*;

use crate::config::Config;
use crate::endpoint::actor::{Endpoint, EndpointEnded, EndpointName, Session, StopEndpoint};
use crate::endpoint::rings;
use crate::endpoint::ServiceCore;
use crate::lookup::{PluginKind, PluginSource};
use crate::plugin::actor::{
    AcceptEndpoint, CloseEndpoint, PluginProcess, SetupPlugin, StartEndpoint, StopPlugin,
};
use crate::plugin::connection::{
    AcceptSpec, EndpointId, PluginConnection, PluginSpec, PluginStartError,
};
use crate::service::ServiceState;

/// How a plugin type is identified: kind and type name.
pub type PluginKey = (PluginKind, String);

/// How built-in plugins are started: this program with `plugin <kind> <type>`.
#[derive(Debug, Clone)]
pub struct Launcher {
    /// The `receptor` executable.
    pub receptor_exe: std::path::PathBuf,
}

impl Launcher {
    /// The command line that runs a plugin type.
    pub fn spec(&self, kind: PluginKind, plugin_type: &str, source: &PluginSource) -> PluginSpec {
        let (program, args) = match source {
            PluginSource::Builtin => (
                self.receptor_exe.clone(),
                vec![
                    "plugin".to_owned(),
                    kind.as_str().to_owned(),
                    plugin_type.to_owned(),
                ],
            ),
            PluginSource::Executable(path) => (path.clone(), Vec::new()),
        };
        PluginSpec {
            kind,
            plugin_type: plugin_type.to_owned(),
            program,
            args,
        }
    }
}

/// Start-up failed; the host exits with code 1.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// A plugin process could not be started or failed its handshake.
    #[error("{kind} plugin '{plugin_type}': {source}")]
    Launch {
        /// Watcher or reactor.
        kind: PluginKind,
        /// The type.
        plugin_type: String,
        /// What went wrong.
        #[source]
        source: PluginStartError,
    },
    /// A plugin rejected its global configuration.
    #[error("{kind} plugin '{plugin_type}' rejected its configuration [{kind}s.{plugin_type}]: {message}")]
    Setup {
        /// Watcher or reactor.
        kind: PluginKind,
        /// The type.
        plugin_type: String,
        /// The plugin's message (or the transport's).
        message: String,
    },
    /// A plugin rejected an instance's configuration, or the instance could not start.
    #[error("{endpoint} (type '{plugin_type}'): {message}")]
    Accept {
        /// Which instance.
        endpoint: EndpointName,
        /// Its type.
        plugin_type: String,
        /// The plugin's message (or the host's).
        message: String,
    },
}

struct EndpointHandle {
    name: EndpointName,
    plugin: PluginKey,
    id: EndpointId,
    actor: Addr<Endpoint>,
}

/// The running host.
pub struct Receptor {
    shutdown_timeout: Duration,
    plugins: BTreeMap<PluginKey, Addr<PluginProcess>>,
    watchers: Vec<EndpointHandle>,
    reactors: Vec<EndpointHandle>,
    cores: Vec<std::sync::Arc<ServiceCore>>,
}

impl Receptor {
    /// Starts every plugin and service of `config`. `ended` hears of every endpoint
    /// whose session ends by itself while running.
    pub async fn start(
        config: &Config,
        launcher: &Launcher,
        ended: Recipient<EndpointEnded>,
    ) -> Result<Receptor, StartupError> {
        let mut host = Receptor {
            shutdown_timeout: config.shutdown_timeout,
            plugins: BTreeMap::new(),
            watchers: Vec::new(),
            reactors: Vec::new(),
            cores: Vec::new(),
        };
        if let Err(e) = host.start_all(config, launcher, ended).await {
            host.shutdown().await;
            return Err(e);
        }
        tracing::info!(
            services = config.services.len(),
            plugins = host.plugins.len(),
            watchers = host.watchers.len(),
            reactors = host.reactors.len(),
            "receptor running"
        );
        Ok(host)
    }

    async fn start_all(
        &mut self,
        config: &Config,
        launcher: &Launcher,
        ended: Recipient<EndpointEnded>,
    ) -> Result<(), StartupError> {
        for ((kind, plugin_type), source) in &config.plugins {
            let spec = launcher.spec(*kind, plugin_type, source);
            let conn = tokio::task::spawn_blocking(move || PluginConnection::launch(&spec))
                .await
                .map_err(|e| PluginStartError::Host(e.to_string()))
                .and_then(|r| r)
                .map_err(|source| StartupError::Launch {
                    kind: *kind,
                    plugin_type: plugin_type.clone(),
                    source,
                })?;
            let addr = PluginProcess::new(conn).start();
            self.plugins
                .insert((*kind, plugin_type.clone()), addr.clone());
            let global_cfg = config.global_cfg(*kind, plugin_type).to_string();
            let setup = addr.send(SetupPlugin { global_cfg }).await;
            flatten(setup).map_err(|message| StartupError::Setup {
                kind: *kind,
                plugin_type: plugin_type.clone(),
                message,
            })?;
            tracing::info!(plugin = %format!("{kind}/{plugin_type}"), "plugin set up");
        }

        for (service, svc) in &config.services {
            let core = ServiceCore::new(ServiceState::new(service.clone()));
            self.cores.push(core.clone());
            for (kind, instances) in [
                (PluginKind::Reactor, &svc.reactors),
                (PluginKind::Watcher, &svc.watchers),
            ] {
                for (instance, inst) in instances {
                    let name = EndpointName {
                        kind,
                        service: service.clone(),
                        instance: instance.clone(),
                    };
                    let fail = |message: String| StartupError::Accept {
                        endpoint: name.clone(),
                        plugin_type: inst.plugin_type.clone(),
                        message,
                    };
                    let plugin = (kind, inst.plugin_type.clone());
                    let addr = self
                        .plugins
                        .get(&plugin)
                        .expect("every type in use was launched")
                        .clone();
                    let (ring_name, session) = match kind {
                        PluginKind::Watcher => {
                            let (ring_name, ring) =
                                rings::create_watcher_ring().map_err(|e| fail(e.to_string()))?;
                            (ring_name, Session::Watcher(ring, core.clone()))
                        }
                        PluginKind::Reactor => {
                            let (ring_name, ring) =
                                rings::create_reactor_ring().map_err(|e| fail(e.to_string()))?;
                            (ring_name, Session::Reactor(ring, core.clone()))
                        }
                    };
                    let accept = AcceptSpec {
                        service: service.clone(),
                        instance: instance.clone(),
                        cfg: inst.cfg.to_string(),
                        ring: ring_name,
                    };
                    let id = flatten(addr.send(AcceptEndpoint(accept)).await).map_err(&fail)?;
                    let actor = Endpoint::new(name.clone(), session, ended.clone()).start();
                    let handle = EndpointHandle {
                        name,
                        plugin,
                        id,
                        actor,
                    };
                    match kind {
                        PluginKind::Watcher => self.watchers.push(handle),
                        PluginKind::Reactor => self.reactors.push(handle),
                    }
                }
            }
        }

        for handle in self.reactors.iter().chain(&self.watchers) {
            let addr = &self.plugins[&handle.plugin];
            flatten(addr.send(StartEndpoint(handle.id)).await).map_err(|message| {
                StartupError::Accept {
                    endpoint: handle.name.clone(),
                    plugin_type: handle.plugin.1.clone(),
                    message: format!("cannot start: {message}"),
                }
            })?;
        }
        Ok(())
    }

    /// Stops everything within the shutdown timeout (plus the kill), reporting anything
    /// that did not stop in time.
    pub async fn shutdown(self) {
        let deadline = Instant::now() + self.shutdown_timeout;
        tracing::info!("shutting down: closing watchers");
        self.close_endpoints(&self.watchers).await;
        self.drain_reactors(deadline).await;
        tracing::info!("closing reactors");
        self.close_endpoints(&self.reactors).await;
        let grace = deadline.saturating_duration_since(Instant::now());
        let stops: Vec<_> = self
            .plugins
            .values()
            .map(|addr| addr.send(StopPlugin { grace }))
            .collect();
        for stop in stops {
            let _ = stop.await;
        }
        tracing::info!("receptor stopped");
    }

    async fn close_endpoints(&self, handles: &[EndpointHandle]) {
        for handle in handles {
            if let Some(addr) = self.plugins.get(&handle.plugin) {
                if let Err(message) = flatten(addr.send(CloseEndpoint(handle.id)).await) {
                    tracing::debug!(endpoint = %handle.name, "close: {message}");
                }
            }
        }
        for handle in handles {
            let _ = handle.actor.send(StopEndpoint).await;
        }
    }

    /// Waits until every reactor has read everything, or the deadline.
    async fn drain_reactors(&self, deadline: Instant) {
        loop {
            let pending: Vec<String> = self
                .cores
                .iter()
                .flat_map(|core| {
                    let state = core.lock();
                    state
                        .reactor_names()
                        .into_iter()
                        .filter(|r| !state.is_drained(r))
                        .map(|r| format!("service '{}' reactor '{r}'", state.name()))
                        .collect::<Vec<_>>()
                })
                .collect();
            if pending.is_empty() {
                return;
            }
            if Instant::now() >= deadline {
                tracing::warn!(
                    "shutdown timeout reached before these reactors drained: {}",
                    pending.join(", ")
                );
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// A request's answer, or the text of why there is none.
fn flatten<T, E: std::fmt::Display>(sent: Result<Result<T, E>, MailboxError>) -> Result<T, String> {
    match sent {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(format!("the plugin's actor is gone: {e}")),
    }
}
