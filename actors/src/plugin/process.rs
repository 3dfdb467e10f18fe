//! One plugin child process: spawned in its own process group, its output re-logged,
//! stopped by asking, waiting, then killing.
//!
//! The child's stderr and stdout are read line by line on two small threads and logged
//! under the plugin's name (`plugin=watcher/dummy`), so a plugin needs no logging set-up
//! of its own and a stray `println!` ends up in the host log rather than nowhere.
//! The child leads its own process group: stopping it kills the group, so a plugin's own
//! children go with it.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// How often [`PluginChild::wait_timeout`] looks at the child while it waits.
const WAIT_POLL: Duration = Duration::from_millis(5);

/// A running plugin process.
pub struct PluginChild {
    name: String,
    child: Child,
    forwarders: Vec<JoinHandle<()>>,
    status: Option<ExitStatus>,
}

/// The plugin process could not be started.
#[derive(Debug, thiserror::Error)]
#[error("cannot start plugin {name} ({program}): {source}")]
pub struct PluginSpawnError {
    /// `kind/type` of the plugin.
    pub name: String,
    /// The program that failed to start.
    pub program: String,
    /// The OS error.
    #[source]
    pub source: std::io::Error,
}

impl PluginChild {
    /// Spawns `cmd` as plugin `name` (`kind/type`), in a new process group, with stdout
    /// and stderr forwarded into the log.
    pub fn spawn(name: &str, mut cmd: Command) -> Result<Self, PluginSpawnError> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = cmd.spawn().map_err(|source| PluginSpawnError {
            name: name.to_owned(),
            program: cmd.get_program().to_string_lossy().into_owned(),
            source,
        })?;
        let mut forwarders = Vec::with_capacity(2);
        if let Some(stderr) = child.stderr.take() {
            forwarders.extend(forward(name, "stderr", stderr));
        }
        if let Some(stdout) = child.stdout.take() {
            forwarders.extend(forward(name, "stdout", stdout));
        }
        tracing::debug!(plugin = %name, pid = child.id(), "plugin process started");
        Ok(PluginChild {
            name: name.to_owned(),
            child,
            forwarders,
            status: None,
        })
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status, if the child has exited (reaps it).
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Waits up to `timeout` for the child to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(WAIT_POLL);
        }
    }

    /// Sends `signal` to the child's whole process group.
    pub fn signal_group(&self, signal: Signal) {
        // The child leads its group (process_group(0)), so its pid is the group id.
        let pgid = Pid::from_raw(self.child.id() as i32);
        if let Err(e) = killpg(pgid, signal) {
            if e != nix::errno::Errno::ESRCH {
                tracing::warn!(plugin = %self.name, "cannot send {signal} to the plugin's process group: {e}");
            }
        }
    }

    /// Waits up to `grace` for the child to exit by itself, then kills its group, and
    /// reaps it. Returns the exit status.
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        if let Some(status) = self.wait_timeout(grace) {
            // The leader exited; anything it left in its group goes too.
            self.signal_group(Signal::SIGKILL);
            return Some(status);
        }
        if grace.is_zero() {
            tracing::debug!(plugin = %self.name, pid = self.pid(), "killing the plugin's process group");
        } else {
            tracing::warn!(plugin = %self.name, pid = self.pid(), "plugin did not exit within {grace:?}; killing its process group");
        }
        self.signal_group(Signal::SIGKILL);
        let status = self.wait_timeout(Duration::from_secs(5));
        if status.is_none() {
            tracing::error!(plugin = %self.name, pid = self.pid(), "plugin survived SIGKILL for 5s");
        }
        status
    }
}

impl Drop for PluginChild {
    fn drop(&mut self) {
        if self.try_status().is_none() {
            self.signal_group(Signal::SIGKILL);
            let _ = self.child.wait();
        }
        for forwarder in self.forwarders.drain(..) {
            let _ = forwarder.join();
        }
    }
}

/// Logs every line of `stream` under the plugin's name until the stream closes.
///
/// A line that starts with a level word (`ERROR`, `WARN`, `INFO`, `DEBUG`, `TRACE`, as
/// the SDK writes them) is logged at that level; any other line at `INFO`.
fn forward(
    name: &str,
    stream_name: &'static str,
    stream: impl Read + Send + 'static,
) -> Option<JoinHandle<()>> {
    let plugin = name.to_owned();
    let spawned = std::thread::Builder::new()
        .name(format!("log-{name}"))
        .spawn(move || {
            let mut reader = BufReader::new(stream);
            let mut line = Vec::new();
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => log_line(
                        &plugin,
                        stream_name,
                        String::from_utf8_lossy(&line).trim_end(),
                    ),
                }
            }
        });
    match spawned {
        Ok(handle) => Some(handle),
        Err(e) => {
            tracing::warn!(plugin = %name, "cannot start a thread to forward the plugin's {stream_name}: {e}");
            None
        }
    }
}

/// Logs one line of a plugin's output at the level it names.
pub(crate) fn log_line(plugin: &str, stream: &str, line: &str) {
    let line = line.trim_start();
    if line.is_empty() {
        return;
    }
    let (level, text) = match line.split_once(' ') {
        Some((word, rest)) if matches!(word, "ERROR" | "WARN" | "INFO" | "DEBUG" | "TRACE") => {
            (word, rest.trim_start())
        }
        _ => ("INFO", line),
    };
    match level {
        "ERROR" => tracing::error!(target: "plugin", %plugin, stream, "{text}"),
        "WARN" => tracing::warn!(target: "plugin", %plugin, stream, "{text}"),
        "DEBUG" => tracing::debug!(target: "plugin", %plugin, stream, "{text}"),
        "TRACE" => tracing::trace!(target: "plugin", %plugin, stream, "{text}"),
        _ => tracing::info!(target: "plugin", %plugin, stream, "{text}"),
    }
}
