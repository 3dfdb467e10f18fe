//! `PluginConnection`: one plugin process and its control connection, as plain blocking
//! calls (the `PluginProcess` actor runs them off the arbiter).
//!
//! Launching spawns the process in its own group with the child's end of a socket pair
//! and a fresh secret, then waits for the handshake. Each life-cycle call is one request
//! with a timeout. Shutting down asks the plugin to exit, waits out the grace period, and
//! kills the whole process group.

use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use ipc::control::{
    socket_pair, HandshakeError, HostEnd, HostEvent, Request, RequestError, Secret,
};

use super::process::PluginChild;
use crate::lookup::PluginKind;

/// How long a plugin may take to say hello.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// After a failed handshake: how long the host waits for the process to exit (if it is
/// on its way) and for its last output, to report them instead of the broken frame.
const EXIT_REPORT_GRACE: Duration = Duration::from_millis(500);
/// How long a plugin may take to answer `Setup`, `Accept`, `Start` or `Close`.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Identifies an endpoint within its plugin process.
pub type EndpointId = ipc::control::EndpointId;

/// How to run a plugin type.
#[derive(Debug, Clone)]
pub struct PluginSpec {
    /// Watcher or reactor.
    pub kind: PluginKind,
    /// The type name.
    pub plugin_type: String,
    /// The executable.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
}

impl PluginSpec {
    /// `kind/type`, the plugin's name in the log.
    pub fn name(&self) -> String {
        format!("{}/{}", self.kind, self.plugin_type)
    }
}

/// What `Accept` carries for one instance.
#[derive(Debug)]
pub struct AcceptSpec {
    /// The service.
    pub service: String,
    /// The instance within the service.
    pub instance: String,
    /// The instance's `cfg` as JSON.
    pub cfg: String,
    /// The instance's ring: its base name, and its segment's descriptor (sent beside
    /// the request, so the plugin maps memory whose size it cannot change).
    pub ring: crate::endpoint::rings::RingHandoff,
}

/// A plugin process could not be started.
#[derive(Debug, thiserror::Error)]
pub enum PluginStartError {
    /// The executable could not be run.
    #[error("{0}")]
    Spawn(#[from] super::process::PluginSpawnError),
    /// The process ran but the handshake failed (its stderr, in the log, may say more).
    #[error("handshake with {program} failed: {message}")]
    Handshake {
        /// The executable.
        program: String,
        /// Why.
        message: String,
    },
    /// The process exited before its handshake: how, and what it wrote last.
    #[error("{program} exited before its handshake ({status}){}", stderr_text(.stderr))]
    Exited {
        /// The executable.
        program: String,
        /// Its exit status.
        status: ExitStatus,
        /// The last lines it wrote to stderr, oldest first.
        stderr: Vec<String>,
    },
    /// The host itself failed (a socket, a thread).
    #[error("{0}")]
    Host(String),
}

/// The last stderr lines of a plugin, for an error message.
fn stderr_text(lines: &[String]) -> String {
    if lines.is_empty() {
        return "; it wrote nothing to stderr".to_owned();
    }
    let mut text = "; its last lines on stderr:".to_owned();
    for line in lines {
        text.push_str("\n    ");
        text.push_str(line);
    }
    text
}

/// A request to a plugin failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PluginRequestError {
    /// The plugin answered with an error: its own message.
    #[error("{0}")]
    Rejected(String),
    /// The plugin did not answer (timeout, or its connection is gone).
    #[error("{0}")]
    Failed(String),
    /// The host could not run the request.
    #[error("{0}")]
    Host(String),
}

impl From<RequestError> for PluginRequestError {
    fn from(e: RequestError) -> Self {
        match e {
            RequestError::Rejected(text) => PluginRequestError::Rejected(text),
            other => PluginRequestError::Failed(other.to_string()),
        }
    }
}

/// A running plugin process and its control connection.
pub struct PluginConnection {
    name: String,
    child: Mutex<PluginChild>,
    conn: HostEnd,
    events: Mutex<Option<Receiver<HostEvent>>>,
    next_endpoint: AtomicU64,
}

impl PluginConnection {
    /// Starts the plugin process and completes the handshake.
    pub fn launch(spec: &PluginSpec) -> Result<PluginConnection, PluginStartError> {
        Self::launch_with(spec, |_| {})
    }

    /// [`launch`](Self::launch), handing `spawned` a copy of the host's end of the
    /// control socket once the process runs and before the handshake: shutting that
    /// copy down makes the handshake fail within moments (how a boot is called off while a
    /// plugin has not said hello yet).
    pub fn launch_with(
        spec: &PluginSpec,
        spawned: impl FnOnce(UnixStream),
    ) -> Result<PluginConnection, PluginStartError> {
        let name = spec.name();
        let (host_end, child_end) =
            socket_pair().map_err(|e| PluginStartError::Host(format!("socket pair: {e}")))?;
        let secret = Secret::random();
        let mut cmd = Command::new(&spec.program);
        cmd.args(&spec.args);
        child_end.prepare(&mut cmd, &secret);
        let mut child = PluginChild::spawn(&name, cmd)?;
        drop(child_end);
        match host_end.try_clone() {
            Ok(copy) => spawned(copy),
            Err(e) => tracing::debug!(plugin = %name, "cannot copy the control socket: {e}"),
        }
        let (conn, events) = match HostEnd::accept(host_end, &secret, HANDSHAKE_TIMEOUT) {
            Ok(accepted) => accepted,
            Err(e) => {
                let program = spec.program.display().to_string();
                // The peer's end closed before a whole hello: a plugin that exited
                // (crashed, or is not a plugin at all) is reported with its status and
                // its last words, not as the broken frame it left.
                let broken = matches!(e, HandshakeError::Frame(_) | HandshakeError::Io(_));
                let exited = broken
                    .then(|| child.wait_timeout(EXIT_REPORT_GRACE))
                    .flatten();
                child.stop(Duration::from_millis(200));
                return Err(match exited {
                    Some(status) => {
                        child.finish_output(EXIT_REPORT_GRACE);
                        PluginStartError::Exited {
                            program,
                            status,
                            stderr: child.stderr_tail(),
                        }
                    }
                    None => PluginStartError::Handshake {
                        program,
                        message: e.to_string(),
                    },
                });
            }
        };
        tracing::info!(plugin = %name, pid = child.pid(), "plugin process connected");
        Ok(PluginConnection {
            name,
            child: Mutex::new(child),
            conn,
            events: Mutex::new(Some(events)),
            next_endpoint: AtomicU64::new(1),
        })
    }

    /// `kind/type`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The plugin process's pid.
    pub fn pid(&self) -> u32 {
        self.child
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pid()
    }

    /// Takes the stream of notices and the connection's end (once).
    pub fn take_events(&self) -> Option<Receiver<HostEvent>> {
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// `Setup` with the type's global config (JSON).
    pub fn setup(&self, global_cfg: &str) -> Result<(), PluginRequestError> {
        let request = Request::Setup {
            global_cfg: global_cfg.to_owned(),
        };
        Ok(self.conn.request(request, REQUEST_TIMEOUT)?)
    }

    /// `Accept` for every instance of `specs`, all sent at once (one round trip); the
    /// ids their endpoints go by, or the first failure with its index in `specs`.
    pub fn accept_all(
        &self,
        specs: &[AcceptSpec],
    ) -> Result<Vec<EndpointId>, (usize, PluginRequestError)> {
        let first = self
            .next_endpoint
            .fetch_add(specs.len() as u64, Ordering::Relaxed);
        let ids: Vec<EndpointId> = (first..first + specs.len() as u64).collect();
        let requests = specs
            .iter()
            .zip(&ids)
            .map(|(spec, &endpoint)| {
                let request = Request::Accept {
                    endpoint,
                    service: spec.service.clone(),
                    instance: spec.instance.clone(),
                    cfg: spec.cfg.clone(),
                    ring: spec.ring.0.clone(),
                };
                (request, Some(spec.ring.1.as_fd()))
            })
            .collect();
        let answers = self.conn.request_all(requests, REQUEST_TIMEOUT);
        for (i, answer) in answers.into_iter().enumerate() {
            answer.map_err(|e| (i, e.into()))?;
        }
        Ok(ids)
    }

    /// `Start` for every endpoint of `endpoints` (the plugin runs each one's `handle`),
    /// all sent at once: one round trip, not one per endpoint. The first failure, with
    /// its index in `endpoints`.
    pub fn start_all(&self, endpoints: &[EndpointId]) -> Result<(), (usize, PluginRequestError)> {
        let requests = endpoints
            .iter()
            .map(|&endpoint| (Request::Start { endpoint }, None))
            .collect();
        let answers = self.conn.request_all(requests, REQUEST_TIMEOUT);
        for (i, answer) in answers.into_iter().enumerate() {
            answer.map_err(|e| (i, e.into()))?;
        }
        Ok(())
    }

    /// `Close`: the endpoint's close signal fires; the plugin has `timeout` to answer.
    pub fn close(&self, endpoint: EndpointId, timeout: Duration) -> Result<(), PluginRequestError> {
        Ok(self.conn.request(Request::Close { endpoint }, timeout)?)
    }

    /// `Ping`, answered within `timeout`.
    pub fn ping(&self, timeout: Duration) -> Result<(), PluginRequestError> {
        Ok(self.conn.request(Request::Ping, timeout)?)
    }

    /// Kills the plugin's process group at once and reaps it (a restart's tear-down).
    pub fn kill(&self) {
        self.conn.close();
        let mut child = self.child.lock().unwrap_or_else(PoisonError::into_inner);
        child.stop(Duration::ZERO);
    }

    /// Asks the plugin to exit and waits for it until `deadline`; then, if it is still
    /// alive, logs that it had not stopped and kills its process group. Returns whether
    /// it exited by itself.
    pub fn stop_by(&self, deadline: Instant) -> bool {
        let left = || deadline.saturating_duration_since(Instant::now());
        if let Err(e) = self.conn.request(Request::Shutdown, left()) {
            tracing::debug!(plugin = %self.name, "shutdown request: {e}");
        }
        self.conn.close();
        let mut child = self.child.lock().unwrap_or_else(PoisonError::into_inner);
        match child.wait_timeout(left()) {
            Some(status) => {
                // Anything the plugin left in its group goes too.
                child.stop(Duration::ZERO);
                if status.success() {
                    tracing::debug!(plugin = %self.name, "plugin exited");
                } else {
                    tracing::warn!(plugin = %self.name, "plugin exited with {status}");
                }
                true
            }
            None => {
                tracing::warn!(
                    plugin = %self.name,
                    pid = child.pid(),
                    "plugin {} had not stopped by its deadline; killing its process group",
                    self.name
                );
                child.stop(Duration::ZERO);
                false
            }
        }
    }
}
