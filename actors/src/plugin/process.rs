//! One plugin child process: spawned in its own process group, its output re-logged,
//! stopped by asking, waiting, then killing.
//!
//! The child's stderr and stdout are read line by line on two small threads and logged
//! under the plugin's name (`plugin=watcher/dummy`), so a plugin needs no logging set-up
//! of its own and a stray `println!` ends up in the host log rather than nowhere (see
//! [`super::output`]: lines are cut at a bound, the last stderr lines are kept).
//! The child leads its own process group: stopping it kills the group, so a plugin's own
//! children go with it. A descendant that left the group (`setsid`) may keep the output
//! pipes open after that: dropping the handle waits for the readers only a moment, then
//! leaves them to end by themselves, so a plugin's leftovers never hang the host.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use super::output::{forward, Tail};

/// How often [`PluginChild::wait_timeout`] looks at the child while it waits.
const WAIT_POLL: Duration = Duration::from_millis(5);

/// How long dropping a [`PluginChild`] waits for its output to end once the process
/// group is gone: a descendant outside the group may hold the pipes open for ever.
const OUTPUT_GRACE: Duration = Duration::from_millis(500);

/// A running plugin process.
pub struct PluginChild {
    name: String,
    child: Child,
    /// The threads that log the child's stderr and stdout.
    forwarders: Vec<JoinHandle<()>>,
    /// The last lines of the child's stderr.
    stderr_tail: Tail,
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
        let stderr_tail = Tail::default();
        if let Some(stderr) = child.stderr.take() {
            forwarders.extend(forward(name, "stderr", stderr, Some(stderr_tail.clone())));
        }
        if let Some(stdout) = child.stdout.take() {
            forwarders.extend(forward(name, "stdout", stdout, None));
        }
        tracing::debug!(plugin = %name, pid = child.id(), "plugin process started");
        Ok(PluginChild {
            name: name.to_owned(),
            child,
            forwarders,
            stderr_tail,
            status: None,
        })
    }

    /// The last lines the child wrote to stderr (at most
    /// [`TAIL_LINES`](super::output::TAIL_LINES)), oldest first. After the child
    /// exited, call [`PluginChild::finish_output`] first to have them all.
    pub fn stderr_tail(&self) -> Vec<String> {
        self.stderr_tail.lines()
    }

    /// Waits up to `timeout` for the child's output to end (its readers have logged
    /// everything); returns whether it did. Readers still blocked then (a descendant
    /// outside the process group holds the pipes) are left to end by themselves.
    pub fn finish_output(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.forwarders.iter().any(|f| !f.is_finished()) {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(WAIT_POLL);
        }
        for forwarder in self.forwarders.drain(..) {
            let _ = forwarder.join();
        }
        true
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
        if !self.finish_output(OUTPUT_GRACE) {
            tracing::warn!(
                plugin = %self.name,
                "the plugin's output is still open {OUTPUT_GRACE:?} after it stopped \
                 (a process it started left its group, with setsid?); not waiting for it"
            );
            // Detached: each reader ends when the last holder of its pipe closes it.
            self.forwarders.clear();
        }
    }
}
