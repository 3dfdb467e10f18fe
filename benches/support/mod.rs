//! What the benches that span processes share: the test plugin, built in release, a
//! guard that stops and reaps a child whatever happens, and a `receptor run` host in a
//! directory of its own.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "../../tests/common/host_log.rs"]
pub mod host_log;
#[path = "../../tests/common/mirror.rs"]
pub mod mirror;
pub mod procs;
#[path = "../../tests/common/services.rs"]
pub mod services;

/// A child process, stopped (SIGTERM, then SIGKILL) and reaped whatever happens.
pub struct Guard(pub Option<Child>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The scenario-driven test plugin (`tests/test-plugin`), built in release.
pub fn test_plugin() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "-q", "--release", "-p", "receptor-test-plugin"])
        .status()
        .expect("run cargo build");
    assert!(status.success(), "cannot build the test plugin");
    PathBuf::from(env!("CARGO_BIN_EXE_receptor")).with_file_name("receptor-test-plugin")
}

/// A `receptor run` host in a temporary directory: `Receptor.toml`, the test plugin
/// installed in `plugins/` under the names given, the host's JSON log in `host.log`
/// (printed if the bench fails). Stopped, and the directory removed, when dropped.
pub struct BenchHost {
    // Declared first: the host stops before its directory goes.
    host: Guard,
    dir: tempfile::TempDir,
}

impl BenchHost {
    /// Starts a host on `config` with `plugin` installed as each of `names`
    /// (`receptor-watcher-<type>`, `receptor-reactor-<type>`).
    pub fn start(plugin: &Path, names: &[&str], config: &str) -> BenchHost {
        let dir = tempfile::tempdir().unwrap();
        let plugins = dir.path().join("plugins");
        std::fs::create_dir_all(&plugins).unwrap();
        for name in names {
            std::fs::copy(plugin, plugins.join(name)).unwrap();
        }
        std::fs::write(dir.path().join("Receptor.toml"), config).unwrap();
        let log = std::fs::File::create(dir.path().join("host.log")).unwrap();
        let host = Command::new(env!("CARGO_BIN_EXE_receptor"))
            .args(["--log-format", "json", "run", "-c", "Receptor.toml"])
            .current_dir(dir.path())
            .env("RECEPTOR_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start receptor");
        BenchHost {
            host: Guard(Some(host)),
            dir,
        }
    }

    /// The host's directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The host's pid.
    pub fn pid(&self) -> u32 {
        self.host.0.as_ref().map_or(0, |c| c.id())
    }

    /// Sends SIGTERM and waits (up to a minute) for the host to exit; how long it took.
    pub fn stop(&mut self) -> Duration {
        let Some(mut child) = self.host.0.take() else {
            return Duration::ZERO;
        };
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let asked = Instant::now();
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        while child.try_wait().ok().flatten().is_none() {
            if asked.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the host did not stop within a minute of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        asked.elapsed()
    }

    /// The host's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path().join("host.log")).unwrap_or_default()
    }
}

impl Drop for BenchHost {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- the host's log ---\n{}", self.log());
        }
    }
}
