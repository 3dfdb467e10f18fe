//! The process side of a plugin: handshake, control loop, endpoint threads, exit.
//!
//! [`serve_watcher`](crate::serve_watcher) and [`serve_reactor`](crate::serve_reactor)
//! connect to the host over the control connection it handed this process, then answer
//! the host's requests in order, the seed's life cycle:
//! - `Setup`: the plugin's `setup` with the type's global config;
//! - `Accept`: the plugin's `accept` for one instance, and the instance's ring opened;
//! - `Start`: the endpoint runs on a thread of its own (see [`endpoint`]): a failed
//!   `handle` is restarted in place, within a budget; when the endpoint is done the SDK
//!   flushes what a watcher still holds, closes the ring, and tells the host the
//!   endpoint finished (with the error, if it failed for good);
//! - `Close`: fires the endpoint's close signal;
//! - `Ping`: answers; `Shutdown`: closes every endpoint, waits briefly, exits 0.
//!
//! A panic in the plugin's code becomes an error answer or a "finished with error"
//! notice, never a hung request. When the control connection closes (the host exited or
//! died) every endpoint is closed and the process exits within a fraction of a second.
//! A second line of defence watches the parent: if this process is re-parented (the host
//! is gone but, say, a stray copy of the control socket kept it open), it exits too.
//! (`PR_SET_PDEATHSIG` would not do: it fires when the host *thread* that spawned the
//! plugin exits, and the host spawns plugins from a pool whose threads come and go.)
//! Log lines go to stderr as `LEVEL message`, which the host forwards into its log under
//! the plugin's name.
//!
//! # Layout
//! - [`instance`]: an accepted instance, and how a fresh endpoint takes over its stream.
//! - [`endpoint`]: an endpoint's thread, its restarts in place, its notices.
//! - [`restart`]: the backoff and the budget of restarts in place.
//! - [`rings`]: the rings as the event channel's transports.

mod endpoint;
mod instance;
pub mod restart;
mod rings;

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ipc::control::{EndpointId, Incoming, Notifier, PluginEnd, RecvError, Request};

use self::endpoint::{Named, Running};
use self::instance::{Instance, Served, ServedReactor, ServedWatcher};
use crate::guard::guarded;
use crate::{Config, Reactor, Watcher};

/// How long the handshake with the host may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long endpoints get to return after `Shutdown` before the process exits anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);
/// How long endpoints get when the host is gone.
const ORPHAN_GRACE: Duration = Duration::from_millis(300);

/// How often the process checks that its parent, the host, is still the one that
/// started it.
const PARENT_CHECK: Duration = Duration::from_millis(100);

/// The control loop's state.
struct Server<S> {
    plugin: S,
    accepted: HashMap<EndpointId, (Named, Box<dyn Instance>)>,
    running: HashMap<EndpointId, Running>,
    notifier: Notifier,
}

impl<S: Served> Server<S> {
    fn handle(&mut self, request: Request, segment: Option<OwnedFd>) -> Result<(), String> {
        match request {
            Request::Setup { global_cfg } => {
                guarded(|| self.plugin.setup(Config::global(global_cfg)))
            }
            Request::Accept {
                endpoint,
                service,
                instance,
                cfg,
                ring,
            } => {
                let cfg = Config::instance(cfg, &service, &instance);
                let segment = segment.ok_or("Accept came without its ring's segment")?;
                let accepted = guarded(|| self.plugin.accept(cfg, &ring, segment))?;
                let named = Named {
                    id: endpoint,
                    service,
                    instance,
                };
                self.accepted.insert(endpoint, (named, accepted));
                Ok(())
            }
            Request::Start { endpoint } => self.start(endpoint),
            Request::Close { endpoint } => {
                if let Some(running) = self.running.get(&endpoint) {
                    running.close.fire();
                }
                self.accepted.remove(&endpoint);
                Ok(())
            }
            Request::Ping => Ok(()),
            Request::Shutdown => Ok(()),
        }
    }

    fn start(&mut self, endpoint: EndpointId) -> Result<(), String> {
        let (named, instance) = self
            .accepted
            .remove(&endpoint)
            .ok_or_else(|| format!("no accepted endpoint {endpoint}"))?;
        let failed = format!(
            "cannot start a thread for {}/{}",
            named.service, named.instance
        );
        let running = endpoint::spawn(named, instance, self.notifier.clone())
            .map_err(|e| format!("{failed}: {e}"))?;
        self.running.insert(endpoint, running);
        Ok(())
    }

    /// Closes every endpoint and waits up to `grace` for their threads.
    fn close_all(&mut self, grace: Duration) {
        for running in self.running.values() {
            running.close.fire();
        }
        let deadline = Instant::now() + grace;
        for (_, running) in self.running.drain() {
            while !running.thread.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

/// Sends plugin log lines to stderr as `LEVEL message`, unless the plugin installed its
/// own subscriber.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RECEPTOR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .with_target(false)
        .with_ansi(false)
        .try_init();
}

/// Exits the process once its parent changed (the host died), after giving the control
/// loop `ORPHAN_GRACE` to close the endpoints itself.
fn watch_parent() {
    let parent = std::os::unix::process::parent_id();
    let spawned = std::thread::Builder::new()
        .name("receptor-parent".into())
        .spawn(move || loop {
            std::thread::sleep(PARENT_CHECK);
            if std::os::unix::process::parent_id() != parent {
                tracing::error!("the Receptor host (pid {parent}) is gone; exiting");
                std::thread::sleep(ORPHAN_GRACE);
                std::process::exit(0);
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot watch the host process: {e}");
    }
}

fn serve<S: Served>(plugin: S) -> ! {
    init_logging();
    watch_parent();
    // A ring's segment is a descriptor: a plugin with many endpoints needs many.
    if let Err(e) = ipc::sys::raise_fd_limit() {
        tracing::warn!("cannot raise the limit on open files: {e}");
    }
    let conn = match PluginEnd::from_env(HANDSHAKE_TIMEOUT) {
        Ok(conn) => conn,
        Err(e) => {
            tracing::error!("cannot connect to the Receptor host: {e}");
            eprintln!("This program is a Receptor plugin: the receptor host starts it.");
            std::process::exit(2);
        }
    };
    let mut server = Server {
        plugin,
        accepted: HashMap::new(),
        running: HashMap::new(),
        notifier: conn.notifier(),
    };
    loop {
        match conn.recv() {
            Ok(Incoming {
                id,
                request: Request::Shutdown,
                ..
            }) => {
                server.close_all(SHUTDOWN_GRACE);
                let _ = conn.respond(id, Ok(()));
                std::process::exit(0);
            }
            Ok(Incoming {
                id,
                request,
                segment,
            }) => {
                let answer = server.handle(request, segment);
                if conn.respond(id, answer).is_err() {
                    server.close_all(ORPHAN_GRACE);
                    std::process::exit(0);
                }
            }
            Err(RecvError::Closed) => {
                server.close_all(ORPHAN_GRACE);
                std::process::exit(0);
            }
            Err(e) => {
                tracing::error!("control connection failed: {e}");
                server.close_all(ORPHAN_GRACE);
                std::process::exit(2);
            }
        }
    }
}

/// Serves a watcher plugin; see the module docs.
pub fn serve_watcher<W: Watcher>(watcher: W) -> ! {
    serve(ServedWatcher(Arc::new(Mutex::new(watcher))))
}

/// Serves a reactor plugin; see the module docs.
pub fn serve_reactor<R: Reactor>(reactor: R) -> ! {
    serve(ServedReactor(Arc::new(Mutex::new(reactor))))
}

#[cfg(test)]
mod tests;
