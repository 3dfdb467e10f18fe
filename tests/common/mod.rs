//! What the end-to-end tests share: a directory with a config and plugins, a running
//! `receptor` host that is always stopped, loopback HTTP, and bounded waits.
#![allow(dead_code)]

mod host_log;
pub mod http;
pub mod mirror;
pub mod services;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The longest any single wait in these tests lasts.
pub const WAIT: Duration = Duration::from_secs(30);

/// Waits until `cond` holds, polling; panics with `what` after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The test plugin binary, built once per test run.
pub fn test_plugin() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let status = Command::new(cargo)
                .args(["build", "-q", "-p", "receptor-test-plugin"])
                .status()
                .expect("run cargo build");
            assert!(status.success(), "cannot build the test plugin");
            let receptor = PathBuf::from(env!("CARGO_BIN_EXE_receptor"));
            receptor.with_file_name("receptor-test-plugin")
        })
        .clone()
}

/// POSTs `body` to `path` on a connection of its own (`Connection: close`) and returns
/// (status, body); `None` if nothing listens yet.
pub fn post(addr: SocketAddr, path: &str, body: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let status = answer.get(9..12)?.parse().ok()?;
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
}

/// A temporary directory with `Receptor.toml` and a `plugins/` folder.
pub struct Fixture {
    pub dir: tempfile::TempDir,
}

impl Fixture {
    pub fn new(config: &str) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("plugins")).unwrap();
        std::fs::write(dir.path().join("Receptor.toml"), config).unwrap();
        Fixture { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Installs the test plugin in `plugins/` as a third-party `kind` plugin `type`.
    pub fn install_test_plugin(&self, kind: &str, plugin_type: &str) {
        let to = self
            .path()
            .join("plugins")
            .join(format!("receptor-{kind}-{plugin_type}"));
        std::fs::copy(test_plugin(), &to).unwrap();
    }

    /// Starts `receptor run` on the fixture's config, logging JSON to `host.log`.
    pub fn start(&self) -> Host {
        self.start_with(&[])
    }

    /// [`Fixture::start`] with more arguments for `run`.
    pub fn start_with(&self, args: &[&str]) -> Host {
        let log = std::fs::File::create(self.path().join("host.log")).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_receptor"));
        cmd.args(["--log-format", "json", "run", "-c"])
            .arg(self.path().join("Receptor.toml"))
            .args(args)
            .current_dir(self.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        for (key, _) in std::env::vars() {
            if key.starts_with("RECEPTOR_") {
                cmd.env_remove(key);
            }
        }
        cmd.env("RECEPTOR_LOG", "info");
        Host {
            child: Some(cmd.spawn().expect("start receptor")),
            log: self.path().join("host.log"),
        }
    }

    /// Runs `receptor run` to its end (for configs that fail at start-up).
    pub fn run_to_end(&self) -> (ExitStatus, String) {
        let mut host = self.start();
        let status = host.wait(WAIT).expect("receptor exits");
        (status, host.log())
    }

    /// The complete lines of a file in the fixture (none if it does not exist yet); a
    /// last line still being written is left out.
    pub fn lines(&self, file: &str) -> Vec<String> {
        let text = std::fs::read_to_string(self.path().join(file)).unwrap_or_default();
        let complete = text.rfind('\n').map_or("", |end| &text[..end]);
        complete.lines().map(str::to_owned).collect()
    }
}

/// A running host, stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Host {
    child: Option<Child>,
    log: PathBuf,
}

impl Host {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// The host's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The pids of the plugin processes the host reported starting.
    pub fn plugin_pids(&self) -> Vec<u32> {
        host_log::plugin_starts(&self.log())
            .into_iter()
            .map(|(_, pid)| pid)
            .collect()
    }

    /// The pids of plugin `name` (`kind/type`), one per start, oldest first.
    pub fn pids_of(&self, name: &str) -> Vec<u32> {
        host_log::pids_of(&self.log(), name)
    }

    /// Waits until plugin `name` has been started `n` times; returns its newest pid.
    pub fn wait_for_start(&self, name: &str, n: usize) -> u32 {
        wait_until(&format!("start {n} of {name}"), WAIT, || {
            self.pids_of(name).len() >= n
        });
        self.pids_of(name)[n - 1]
    }

    /// Waits until the log has a line whose message starts with `prefix` followed by
    /// an address (a plugin that listens on port 0 logs the one it got), and returns
    /// that address.
    pub fn logged_address(&self, prefix: &str) -> SocketAddr {
        let mut found = None;
        wait_until(&format!("a log line '{prefix}<address>'"), WAIT, || {
            found = self.log().lines().find_map(|line| {
                let v: serde_json::Value = serde_json::from_str(line).ok()?;
                let message = v["fields"]["message"].as_str()?;
                message.strip_prefix(prefix)?.trim().parse().ok()
            });
            found.is_some()
        });
        found.unwrap()
    }

    /// Whether the host process is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => child.try_wait().unwrap().is_none(),
            None => false,
        }
    }

    pub fn signal(&self, signal: Signal) {
        signal_pid(self.pid(), signal);
    }

    /// Waits up to `timeout` for the host to exit.
    pub fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut()?;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.signal(Signal::SIGTERM);
            if self.wait(Duration::from_secs(10)).is_none() {
                if let Some(mut child) = self.child.take() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        }
    }
}

/// Sends `signal` to process `pid`; one that is gone already is no error (a test's
/// cleanup must not panic over a host that died, hiding the real failure).
pub fn signal_pid(pid: u32, signal: Signal) {
    match kill(Pid::from_raw(pid as i32), signal) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
        Err(e) => panic!("cannot send {signal} to {pid}: {e}"),
    }
}

/// A reactor's view of its service, from a `record` file written with `mark`: the
/// nodes' latest status (`"up"`/`"down"`) by name, counting only what the newest
/// incarnation received, and how many incarnations wrote to the file.
pub fn recorded_state(lines: &[String]) -> (std::collections::BTreeMap<String, String>, usize) {
    let mut state = std::collections::BTreeMap::new();
    let mut starts = 0;
    for line in lines {
        let v: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
        if v.get("start").is_some() {
            starts += 1;
            state.clear();
            continue;
        }
        let name = v["name"].as_str().expect("a node name").to_owned();
        let status = v["status"].as_str().expect("a node status").to_lowercase();
        state.insert(name, status);
    }
    (state, starts)
}

/// Whether process `pid` is still running (a zombie counts as gone).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// The `/dev/shm` entries that belong to host `pid`.
pub fn shm_entries_of(pid: u32) -> Vec<String> {
    let mine = format!("receptor-{pid}-");
    std::fs::read_dir("/dev/shm")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.strip_prefix("sem.").unwrap_or(n).starts_with(&mine))
        .collect()
}
