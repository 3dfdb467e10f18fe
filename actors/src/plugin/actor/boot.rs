//! Booting one incarnation of a plugin: launch, `Setup`, one `Accept` per instance with
//! a fresh ring. Blocking work, run on tokio's blocking pool; a [`BootGuard`] lets the
//! host call a boot off while it is in progress (a signal during start-up), so a plugin
//! slow to answer cannot hold the host.

use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::endpoint::actor::{EndpointName, Session};
use crate::endpoint::{rings, ServiceCore};
use crate::lookup::PluginKind;
use crate::plugin::connection::{
    AcceptSpec, EndpointId, PluginConnection, PluginSpec, PluginStartError,
};

/// One instance this plugin serves: what its `Accept` replays.
#[derive(Clone)]
pub struct Instance {
    /// Kind, service and instance name.
    pub name: EndpointName,
    /// The instance's `cfg` as JSON.
    pub cfg: String,
    /// The most its ring may grow to, in bytes.
    pub ring_size: usize,
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
    /// The host called the boot off (it is shutting down).
    #[error("boot called off: the host is shutting down")]
    Aborted,
}

/// What one boot produced, before its endpoints' actors exist.
pub(super) struct Booted {
    pub(super) conn: Arc<PluginConnection>,
    pub(super) sessions: Vec<(EndpointName, EndpointId, Session)>,
}

/// A boot in progress, as the actor sees it: it can call the boot off and wait for it
/// to be over.
#[derive(Default)]
pub(super) struct BootGuard {
    aborted: AtomicBool,
    /// The boot's connection once launched, so that calling off kills the process and
    /// every request in flight fails at once.
    conn: Mutex<Option<Arc<PluginConnection>>>,
    /// Before that, a copy of the host's end of the control socket of a process that has
    /// not said hello yet: calling off shuts it down, which ends the handshake within moments
    /// (the launch then gives the process 0.7 s at most to report how it exited).
    handshake: Mutex<Option<UnixStream>>,
    done: AtomicBool,
    finished: tokio::sync::Notify,
}

impl BootGuard {
    /// Calls the boot off: its process is killed (in the background) and the boot
    /// returns [`BootError::Aborted`] as soon as its current step fails.
    pub(super) fn abort(&self) {
        self.aborted.store(true, Ordering::Release);
        if let Some(socket) = self
            .handshake
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            let _ = socket.shutdown(std::net::Shutdown::Both);
        }
        let conn = self
            .conn
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(conn) = conn {
            tokio::task::spawn_blocking(move || conn.kill());
        }
    }

    fn is_aborted(&self) -> bool {
        self.aborted.load(Ordering::Acquire)
    }

    /// Waits until the boot is over (its process and rings are gone if it was called
    /// off).
    pub(super) async fn finished(&self) {
        loop {
            let notified = self.finished.notified();
            if self.done.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }

    /// Keeps the copy of a launching process's control socket (see `handshake`).
    fn launching(&self, socket: UnixStream) {
        let mut slot = self
            .handshake
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if self.is_aborted() {
            let _ = socket.shutdown(std::net::Shutdown::Both);
        } else {
            *slot = Some(socket);
        }
    }

    fn publish(&self, conn: &Arc<PluginConnection>) -> Result<(), BootError> {
        self.handshake
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let mut slot = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        if self.is_aborted() {
            return Err(BootError::Aborted);
        }
        *slot = Some(conn.clone());
        Ok(())
    }

    fn finish(&self) {
        self.handshake
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        self.conn
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        self.done.store(true, Ordering::Release);
        self.finished.notify_waiters();
    }
}

/// Launch, `Setup`, and an `Accept` with a fresh ring per instance (blocking). Called
/// off through `guard`, it kills what it started and unlinks the rings it made before
/// it returns.
pub(super) fn boot_blocking(
    spec: &PluginSpec,
    global_cfg: &str,
    instances: &[Instance],
    guard: &BootGuard,
) -> Result<Booted, BootError> {
    let booted = boot_steps(spec, global_cfg, instances, guard);
    let booted = match booted {
        Ok(booted) if guard.is_aborted() => {
            booted.conn.kill();
            Err(BootError::Aborted)
        }
        Err(_) if guard.is_aborted() => Err(BootError::Aborted),
        other => other,
    };
    guard.finish();
    booted
}

fn boot_steps(
    spec: &PluginSpec,
    global_cfg: &str,
    instances: &[Instance],
    guard: &BootGuard,
) -> Result<Booted, BootError> {
    let conn = PluginConnection::launch_with(spec, |socket| guard.launching(socket))
        .map_err(|e: PluginStartError| BootError::Launch(e.to_string()))?;
    let conn = Arc::new(conn);
    if let Err(aborted) = guard.publish(&conn) {
        conn.kill();
        return Err(aborted);
    }
    conn.setup(global_cfg)
        .map_err(|e| BootError::Setup(e.to_string()))?;
    // Every ring first, then every `Accept` at once (one round trip for them all).
    let mut accepts = Vec::with_capacity(instances.len());
    let mut sessions = Vec::with_capacity(instances.len());
    for inst in instances {
        let fail = |message: String| BootError::Accept {
            endpoint: inst.name.clone(),
            message,
        };
        let (ring, session) = match inst.name.kind {
            PluginKind::Watcher => {
                let (ring, end) = rings::create_watcher_ring(conn.pid(), inst.ring_size)
                    .map_err(|e| fail(e.to_string()))?;
                (ring, Session::Watcher(end, inst.core.clone()))
            }
            PluginKind::Reactor => {
                let (ring, end) = rings::create_reactor_ring(conn.pid(), inst.ring_size)
                    .map_err(|e| fail(e.to_string()))?;
                (ring, Session::Reactor(end, inst.core.clone()))
            }
        };
        accepts.push(AcceptSpec {
            service: inst.name.service.clone(),
            instance: inst.name.instance.clone(),
            cfg: inst.cfg.clone(),
            ring,
        });
        sessions.push((inst.name.clone(), session));
    }
    let ids = conn
        .accept_all(&accepts)
        .map_err(|(i, e)| BootError::Accept {
            endpoint: sessions[i].0.clone(),
            message: e.to_string(),
        })?;
    let sessions = sessions
        .into_iter()
        .zip(ids)
        .map(|((name, session), id)| (name, id, session))
        .collect();
    Ok(Booted { conn, sessions })
}
