//! The root of the host: start-up, the running pipeline, and shutdown.
//!
//! Start-up follows the seed's life cycle: a [`ServiceActor`] per service (it makes the
//! service's state and owns its life cycle), one plugin process per plugin type in use
//! (a [`PluginProcess`] actor that also supervises it), `Setup` once per type with its
//! global config, an `Accept` per instance (each with a fresh ring), then `Start`,
//! reactors first so that no event finds a reactor missing. Any failure there is a
//! [`StartupError`] that names the plugin, the service and the instance, with the
//! plugin's own message; failures after start-up are the plugin actors' to handle.
//!
//! A signal during start-up calls the start off at once: the plugin being booted is
//! killed, whatever it was doing, and the host stops what it started and exits 1.
//!
//! Shutdown is one signal out and completion counted back, with one deadline,
//! `shutdown_timeout`, for all of it: close the watchers (every endpoint of every
//! plugin at once), let the reactors drain what is in flight, close the reactors, ask
//! every plugin to exit, and at the deadline kill every plugin still alive, naming it in
//! the log. A hung plugin costs the host `shutdown_timeout`, however many endpoints it
//! has.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use crate::config::Config;
use crate::endpoint::actor::EndpointName;
use crate::endpoint::ServiceCore;
use crate::lookup::{PluginKind, PluginSource};
use crate::plugin::actor::{
    BootError, BootPlugin, CloseEndpoints, InjectPanic, Instance, PluginFailed, PluginProcess,
    StartEndpoints, StartSupervising, StopPlugin,
};
use crate::plugin::connection::PluginSpec;
use crate::service::actor::{ServiceReport, ServiceStatus, ServiceStatusError, StopService};
use crate::service::{ServiceActor, ServiceFailed, ServiceSpec};

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
    #[error("{kind} plugin '{plugin_type}': {message}")]
    Launch {
        /// Watcher or reactor.
        kind: PluginKind,
        /// The type.
        plugin_type: String,
        /// What went wrong.
        message: String,
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
    /// A plugin could not start its endpoints.
    #[error("{kind} plugin '{plugin_type}': {message}")]
    Start {
        /// Watcher or reactor.
        kind: PluginKind,
        /// The type.
        plugin_type: String,
        /// What failed.
        message: String,
    },
    /// A signal arrived before start-up was over.
    #[error("start-up interrupted by {signal}")]
    Interrupted {
        /// The signal's name.
        signal: &'static str,
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

impl StartupError {
    /// The start-up error of a plugin whose boot failed.
    fn booting(kind: PluginKind, plugin_type: &str, e: BootError) -> Self {
        let plugin_type = plugin_type.to_owned();
        match e {
            BootError::Launch(message) => StartupError::Launch {
                kind,
                plugin_type,
                message,
            },
            e @ BootError::Aborted => StartupError::Launch {
                kind,
                plugin_type,
                message: e.to_string(),
            },
            BootError::Setup(message) => StartupError::Setup {
                kind,
                plugin_type,
                message,
            },
            BootError::Accept { endpoint, message } => StartupError::Accept {
                endpoint,
                plugin_type,
                message,
            },
        }
    }
}

/// The running host.
pub struct Receptor {
    shutdown_timeout: Duration,
    plugins: BTreeMap<PluginKey, Addr<PluginProcess>>,
    services: BTreeMap<String, Addr<ServiceActor>>,
    cores: Vec<Arc<ServiceCore>>,
}

/// Where the host hears of failures for good: a plugin or a service out of restarts.
#[derive(Clone)]
pub struct FailureReports {
    /// A plugin ran out of restarts.
    pub plugins: Recipient<PluginFailed>,
    /// A service's actor ran out of restarts.
    pub services: Recipient<ServiceFailed>,
}

impl Receptor {
    /// Starts every plugin and service of `config`. `failures` hears of every plugin
    /// and service that runs out of restarts. When `interrupted` resolves (to a
    /// signal's name) before start-up is over, the start is called off and what it
    /// started is stopped.
    pub async fn start(
        config: &Config,
        launcher: &Launcher,
        failures: FailureReports,
        interrupted: impl Future<Output = &'static str>,
    ) -> Result<Receptor, StartupError> {
        let mut host = Receptor {
            shutdown_timeout: config.shutdown_timeout,
            plugins: BTreeMap::new(),
            services: BTreeMap::new(),
            cores: Vec::new(),
        };
        let started = tokio::select! {
            started = host.start_all(config, launcher, failures) => started,
            signal = interrupted => {
                tracing::info!("{signal} received during start-up; stopping what was started");
                Err(StartupError::Interrupted { signal })
            }
        };
        if let Err(e) = started {
            host.shutdown().await;
            return Err(e);
        }
        tracing::info!(
            services = config.services.len(),
            plugins = host.plugins.len(),
            "receptor running"
        );
        Ok(host)
    }

    async fn start_all(
        &mut self,
        config: &Config,
        launcher: &Launcher,
        failures: FailureReports,
    ) -> Result<(), StartupError> {
        let mut instances: BTreeMap<PluginKey, Vec<Instance>> = BTreeMap::new();
        for (service, svc) in &config.services {
            let spec = ServiceSpec {
                name: service.clone(),
                watchers: svc.watchers.keys().cloned().collect(),
                reactors: svc.reactors.keys().cloned().collect(),
                policy: config.supervision.default.clone(),
            };
            let (actor, core) = ServiceActor::start(spec, failures.services.clone());
            self.services.insert(service.clone(), actor);
            self.cores.push(core.clone());
            for (kind, list) in [
                (PluginKind::Reactor, &svc.reactors),
                (PluginKind::Watcher, &svc.watchers),
            ] {
                for (instance, inst) in list {
                    instances
                        .entry((kind, inst.plugin_type.clone()))
                        .or_default()
                        .push(Instance {
                            name: EndpointName {
                                kind,
                                service: service.clone(),
                                instance: instance.clone(),
                            },
                            cfg: inst.cfg.to_string(),
                            ring_size: inst.ring_size,
                            core: core.clone(),
                        });
                }
            }
        }

        for ((kind, plugin_type), source) in &config.plugins {
            let key = (*kind, plugin_type.clone());
            let actor = PluginProcess::new(
                launcher.spec(*kind, plugin_type, source),
                config.global_cfg(*kind, plugin_type).to_string(),
                instances.remove(&key).unwrap_or_default(),
                config.supervision.policy(*kind, plugin_type).clone(),
                failures.plugins.clone(),
            );
            // Supervised: a panic in a handler stops the actor and this restarts it.
            let addr = actix::Supervisor::start(move |_| actor);
            self.plugins.insert(key, addr.clone());
            let booted = addr
                .send(BootPlugin)
                .await
                .map_err(|e| BootError::Launch(e.to_string()))
                .and_then(|r| r);
            booted.map_err(|e| StartupError::booting(*kind, plugin_type, e))?;
            tracing::info!(plugin = %format!("{kind}/{plugin_type}"), "plugin set up");
        }

        for endpoints in [PluginKind::Reactor, PluginKind::Watcher] {
            for ((kind, plugin_type), addr) in &self.plugins {
                let started = addr.send(StartEndpoints(endpoints)).await;
                flatten(started).map_err(|message| StartupError::Start {
                    kind: *kind,
                    plugin_type: plugin_type.clone(),
                    message,
                })?;
            }
        }
        for addr in self.plugins.values() {
            addr.do_send(StartSupervising);
        }
        Ok(())
    }

    /// A test hook: makes plugin `name`'s (`kind/type`) actor panic inside a handler.
    /// Returns whether such a plugin runs.
    #[doc(hidden)]
    pub fn inject_panic(&self, name: &str) -> bool {
        let target = self
            .plugins
            .iter()
            .find(|((kind, plugin_type), _)| format!("{kind}/{plugin_type}") == name);
        if let Some((_, addr)) = target {
            addr.do_send(InjectPanic);
        }
        target.is_some()
    }

    /// The status of service `name`, as its actor answers it.
    pub async fn service_status(&self, name: &str) -> Result<ServiceReport, ServiceStatusError> {
        let actor = self
            .services
            .get(name)
            .ok_or_else(|| ServiceStatusError::Unknown(name.to_owned()))?;
        actor
            .send(ServiceStatus)
            .await
            .map_err(|e| ServiceStatusError::NoAnswer {
                service: name.to_owned(),
                reason: e.to_string(),
            })?
    }

    /// A test hook: makes service `name`'s actor panic inside a handler. Returns
    /// whether such a service runs.
    #[cfg(any(test, feature = "test-hooks"))]
    #[doc(hidden)]
    pub fn inject_service_panic(&self, name: &str) -> bool {
        let actor = self.services.get(name);
        if let Some(actor) = actor {
            actor.do_send(crate::service::actor::InjectServicePanic);
        }
        actor.is_some()
    }

    /// Stops everything within the shutdown timeout (plus the kill), reporting anything
    /// that did not stop in time.
    pub async fn shutdown(self) {
        let deadline = Instant::now() + self.shutdown_timeout;
        for actor in self.services.values() {
            // Sessions ending from now on are the shutdown's, not failures.
            let _ = actor.send(StopService).await;
        }
        tracing::info!("shutting down: closing watchers");
        self.close_endpoints(PluginKind::Watcher, deadline).await;
        self.drain_reactors(deadline).await;
        tracing::info!("closing reactors");
        self.close_endpoints(PluginKind::Reactor, deadline).await;
        let stops: Vec<_> = self
            .plugins
            .iter()
            .map(|((kind, plugin_type), addr)| {
                (
                    format!("{kind}/{plugin_type}"),
                    addr.send(StopPlugin { deadline }),
                )
            })
            .collect();
        let mut killed = Vec::new();
        for (name, stop) in stops {
            if !matches!(stop.await, Ok(true)) {
                killed.push(name);
            }
        }
        if killed.is_empty() {
            tracing::info!("receptor stopped");
        } else {
            tracing::warn!(
                "receptor stopped; killed at the shutdown deadline ({}): {}",
                humantime::format_duration(self.shutdown_timeout),
                killed.join(", ")
            );
        }
    }

    /// Closes every endpoint of `kind`, all plugins at once, each within `deadline`.
    async fn close_endpoints(&self, kind: PluginKind, deadline: Instant) {
        let closes: Vec<_> = self
            .plugins
            .values()
            .map(|addr| addr.send(CloseEndpoints { kind, deadline }))
            .collect();
        for close in closes {
            let _ = close.await;
        }
    }

    /// Waits until every reactor has read everything, or the deadline. The services'
    /// states are locked by their pump threads while they apply a batch, so the polling
    /// runs on the blocking pool, never on the arbiter.
    async fn drain_reactors(&self, deadline: Instant) {
        let cores = self.cores.clone();
        let waited = tokio::task::spawn_blocking(move || loop {
            let pending = undrained(&cores);
            if pending.is_empty() || Instant::now() >= deadline {
                return pending;
            }
            std::thread::sleep(Duration::from_millis(5));
        });
        match waited.await {
            Ok(pending) if pending.is_empty() => {}
            Ok(pending) => tracing::warn!(
                "shutdown timeout reached before these reactors drained: {}",
                pending.join(", ")
            ),
            Err(e) => tracing::warn!("cannot wait for the reactors to drain: {e}"),
        }
    }
}

/// The reactors that have not read everything yet (blocking: locks each service).
fn undrained(cores: &[Arc<ServiceCore>]) -> Vec<String> {
    cores
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
        .collect()
}

/// A request's answer, or the text of why there is none.
fn flatten<T, E: std::fmt::Display>(sent: Result<Result<T, E>, MailboxError>) -> Result<T, String> {
    match sent {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(format!("the plugin's actor is gone: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    /// Guards the System arbiter during shutdown: `drain_reactors` locked every
    /// service's state on the arbiter, where a pump thread applying a batch held it.
    #[test]
    fn waiting_for_the_reactors_to_drain_never_blocks_the_arbiter_on_a_service_lock() {
        const WATCHDOG: Duration = Duration::from_secs(10);
        let core = ServiceCore::new(crate::service::ServiceState::new("web"));
        let host = Receptor {
            shutdown_timeout: WATCHDOG,
            plugins: BTreeMap::new(),
            services: BTreeMap::new(),
            cores: vec![core.clone()],
        };
        let (locked_tx, locked) = mpsc::channel();
        let (release, release_rx) = mpsc::channel::<()>();
        // A pump in the middle of a batch: holds the service's lock until told to let
        // go (or the watchdog fires, when the arbiter never got to tell it).
        let pump = std::thread::spawn(move || {
            let _state = core.lock();
            locked_tx.send(()).unwrap();
            release_rx.recv_timeout(WATCHDOG).is_ok()
        });
        locked.recv().unwrap();
        let arbiter = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        arbiter.block_on(async move {
            let deadline = Instant::now() + WATCHDOG;
            let drain = tokio::spawn(async move {
                host.drain_reactors(deadline).await;
            });
            // The drain has run up to its first wait; this task runs only if the
            // arbiter's thread is free.
            tokio::task::yield_now().await;
            let _ = release.send(());
            drain.await.unwrap();
        });
        assert!(
            pump.join().unwrap(),
            "the arbiter's thread was blocked on the service's lock"
        );
    }
}
