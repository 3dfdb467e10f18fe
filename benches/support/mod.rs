//! What the benches that span processes share: the test plugin, built in release, and a
//! guard that stops and reaps a child whatever happens.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

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
