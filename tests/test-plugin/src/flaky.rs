//! Scenarios of endpoints that fail and are restarted in place by the SDK (instance
//! `cfg`). Each restart in place calls `accept` again, so this process counts the
//! incarnations of each instance: the first is 1.
//!
//! - watcher `flaky`: incarnation `k` logs `incarnation k` (at info, inside the SDK's
//!   endpoint span), sends `events` as a full list, then fails as `fail[k-1]` says:
//!   `"error"` returns the error `message`, `"panic"` panics with it. Past the list it
//!   waits for close, or fails with an error again if `fail_always` is set.
//! - watcher `tick`: sends node `<prefix>-<i>` up every 10 ms, `i` counting from 0 in
//!   this process, until closed (the steady neighbour of a failing endpoint).
//! - reactor `flaky`: records like `record` with `mark` (the mark line also has the
//!   incarnation: `{"start":<pid>,"incarnation":k}`), and incarnation `k` fails as
//!   `fail[k-1]` says once it has recorded its first event.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use plugin_sdk::{
    reactor_endpoint, watcher_endpoint, Config, NodeInfo, NodeStatus, ReactorEndpoint,
    WatcherEndpoint,
};

use crate::Scenario;

/// Counts `accept`s of an instance in this process.
fn incarnation(cfg: &Config) -> u32 {
    static SEEN: Mutex<BTreeMap<String, u32>> = Mutex::new(BTreeMap::new());
    let key = format!("{:?}/{:?}", cfg.service(), cfg.instance_name());
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    let n = seen.entry(key).or_default();
    *n += 1;
    *n
}

/// Fails as `fail[k-1]` (or `fail_always`) says; `Ok` when incarnation `k` should not.
fn fail(s: &Scenario, k: u32) -> plugin_sdk::Result<()> {
    let how = s.fail.get(k as usize - 1).map(String::as_str);
    match how.or(s.fail_always.then_some("error")) {
        None => Ok(()),
        Some("panic") => panic!("{}", s.message),
        Some(_) => Err(format!("{} (incarnation {k})", s.message).into()),
    }
}

pub fn watcher(s: Scenario, cfg: &Config) -> plugin_sdk::Result<WatcherEndpoint> {
    let k = incarnation(cfg);
    match s.scenario.as_str() {
        "flaky" => Ok(watcher_endpoint(move |events, close| {
            plugin_sdk::tracing::info!("incarnation {k}");
            events.send_full(s.events.clone())?;
            fail(&s, k)?;
            close.wait();
            Ok(())
        })),
        "tick" => Ok(watcher_endpoint(move |events, close| {
            static NEXT: AtomicU64 = AtomicU64::new(0);
            loop {
                let i = NEXT.fetch_add(1, Ordering::Relaxed);
                let name = format!("{}-{i}", s.prefix);
                events.send_node(NodeInfo::new(name, NodeStatus::Up, "h", 1))?;
                if close.wait_timeout(Duration::from_millis(10)) {
                    return Ok(());
                }
            }
        })),
        other => Err(format!("unknown flaky scenario '{other}'").into()),
    }
}

pub fn reactor(s: Scenario, cfg: &Config) -> plugin_sdk::Result<ReactorEndpoint> {
    let k = incarnation(cfg);
    let file = s
        .file
        .clone()
        .ok_or("file: required for reactor scenarios")?;
    Ok(reactor_endpoint(move |mut events, _close| {
        let mut out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&file)?;
        writeln!(
            out,
            "{{\"start\":{},\"incarnation\":{k}}}",
            std::process::id()
        )?;
        out.flush()?;
        while let Some(ev) = events.recv() {
            for node in ev.nodes() {
                writeln!(out, "{}", serde_json::to_string(node)?)?;
            }
            out.flush()?;
            fail(&s, k)?;
        }
        Ok(())
    }))
}
