//! Scenarios of the host-hardening tests (issue 12): plugins that hang, flood, leave
//! processes behind, die before their handshake or bury the host in notices.
//!
//! Watcher scenarios (instance `cfg`):
//! - `hang-after-start`: `after_ms` (default 300) after its start, stops its whole
//!   process (SIGSTOP), as a hung plugin would: no request (`Close` among them) is
//!   answered from then on.
//! - `setsid-child`: starts `setsid sleep 600`, which leaves the plugin's process group
//!   but keeps its stdout and stderr, writes that process's pid to `child_pid_file`,
//!   then waits for close.
//! - `flood`: writes `count` bytes of `x` to stdout without a newline, then a newline
//!   and the line `after the flood`, then waits for close.
//!
//! Watcher instance: `slow-accept` creates `file` (when given) and sleeps `after_ms`
//! (default 10 minutes) in `Accept`.
//!
//! Any kind, global config: `slow-setup` creates `file` (when given) and sleeps
//! `after_ms` (default ten minutes) inside `Setup`.
//!
//! By type name, as the config arrives only after the handshake:
//! - `early-exit...`: writes `early line 1` .. `early line 12` to stderr and exits with
//!   status 7 before its handshake.
//! - `burst...` (watcher): speaks the control protocol itself, without the SDK: answers
//!   every request, and when an endpoint starts sends [`BURST`] log notices
//!   (`burst notice 0001 of 0500` ..) and then a `Finished` notice with the error
//!   `burst over`.

use std::io::Write;
use std::time::Duration;

use ipc::control::{Incoming, Notice, PluginEnd, RecvError, Request};
use plugin_sdk::{watcher_endpoint, WatcherEndpoint};

use crate::Scenario;

/// How many log notices the `burst` plugin sends per started endpoint.
pub const BURST: usize = 500;

/// The `Setup` scenarios of this block; `Ok` for any other.
pub fn setup(s: &Scenario) -> plugin_sdk::Result<()> {
    if s.scenario == "slow-setup" {
        if let Some(file) = &s.file {
            std::fs::write(file, b"in setup")?;
        }
        std::thread::sleep(Duration::from_millis(s.after_ms.unwrap_or(600_000)));
    }
    Ok(())
}

/// The watcher scenarios of this block.
pub fn watcher(s: Scenario) -> plugin_sdk::Result<WatcherEndpoint> {
    match s.scenario.as_str() {
        "hang-after-start" => Ok(watcher_endpoint(move |_events, close| {
            if close.wait_timeout(Duration::from_millis(s.after_ms.unwrap_or(300))) {
                return Ok(());
            }
            let me = std::process::id().to_string();
            std::process::Command::new("kill")
                .args(["-STOP", &me])
                .status()?;
            Ok(())
        })),
        // Accept that takes its time (the host has made the instance's ring by then).
        "slow-accept" => {
            if let Some(file) = &s.file {
                std::fs::write(file, b"in accept")?;
            }
            std::thread::sleep(Duration::from_millis(s.after_ms.unwrap_or(600_000)));
            Ok(watcher_endpoint(|_events, close| {
                close.wait();
                Ok(())
            }))
        }
        "setsid-child" => {
            let pid_file = s
                .child_pid_file
                .clone()
                .ok_or("child_pid_file: required for setsid-child")?;
            Ok(watcher_endpoint(move |_events, close| {
                // Not a group leader, so setsid(1) calls setsid(2) and execs in place:
                // the pid is the sleeper's. stdout and stderr are inherited.
                let child = std::process::Command::new("setsid")
                    .args(["sleep", "600"])
                    .spawn()?;
                std::fs::write(&pid_file, child.id().to_string())?;
                close.wait();
                Ok(())
            }))
        }
        "flood" => Ok(watcher_endpoint(move |_events, close| {
            let chunk = vec![b'x'; 1 << 20];
            let mut out = std::io::stdout().lock();
            let mut left = s.count as usize;
            while left > 0 {
                let n = left.min(chunk.len());
                out.write_all(&chunk[..n])?;
                left -= n;
            }
            out.write_all(b"\nafter the flood\n")?;
            out.flush()?;
            drop(out);
            close.wait();
            Ok(())
        })),
        other => Err(format!("unknown watcher scenario '{other}'").into()),
    }
}

/// Runs the scenarios chosen by the type name (`plugin_type`), which never return;
/// returns for any other type.
pub fn by_type_name(plugin_type: &str) {
    if plugin_type.starts_with("early-exit") {
        for i in 1..=12 {
            eprintln!("early line {i}");
        }
        std::process::exit(7);
    }
    if plugin_type.starts_with("burst") {
        let code = match burst() {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("ERROR burst: {e}");
                2
            }
        };
        std::process::exit(code);
    }
}

/// The `burst` plugin's control loop.
fn burst() -> Result<(), String> {
    let conn = PluginEnd::from_env(Duration::from_secs(10)).map_err(|e| e.to_string())?;
    let notifier = conn.notifier();
    loop {
        let Incoming { id, request, .. } = match conn.recv() {
            Ok(got) => got,
            Err(RecvError::Closed) => return Ok(()),
            Err(e) => return Err(e.to_string()),
        };
        conn.respond(id, Ok(())).map_err(|e| e.to_string())?;
        match request {
            Request::Start { endpoint } => {
                for i in 1..=BURST {
                    let notice = Notice::Log {
                        level: "INFO".into(),
                        message: format!("burst notice {i:04} of {BURST:04}"),
                    };
                    notifier.notify(notice).map_err(|e| e.to_string())?;
                }
                let finished = Notice::Finished {
                    endpoint,
                    error: Some("burst over".into()),
                };
                notifier.notify(finished).map_err(|e| e.to_string())?;
            }
            Request::Shutdown => return Ok(()),
            _ => {}
        }
    }
}
