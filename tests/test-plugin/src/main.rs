//! A plugin for Receptor's end-to-end tests and benchmarks: one binary, many scenarios.
//!
//! Its kind comes from the name it runs under: copy or link it into a plugin directory as
//! `receptor-watcher-<type>` or `receptor-reactor-<type>`. Its behaviour comes from the
//! `scenario` key of its configuration: the global one (`[watchers.<type>]`) decides
//! set-up scenarios, an instance's `cfg` decides that endpoint's scenario.
//!
//! Watcher scenarios (instance `cfg`):
//! - `emit`: sends `events` (a list of `{name, status, host, port}`) one by one, then
//!   waits for close. With `child_pid_file`, it first starts a child process (`sleep`)
//!   and writes its pid there, for tests of what happens to a plugin's own children.
//!   With `fault_once` and `once` (a file), the first incarnation (the one that finds no
//!   `once` file; it creates it) misbehaves instead of sending: `garbage` writes
//!   `message` (or a fixed junk) into its ring as a raw record, bypassing the encoder;
//!   `error` returns the error `message` from `handle`.
//! - `count`: sends `count` one-node events, each naming a node not seen before
//!   (`<prefix>-<i>`), as fast as it can (once the file `release` exists, when given),
//!   then waits for close.
//! - `mirror`: polls `file` (a JSON list of nodes, all up) every 20 ms and sends it with
//!   `send_full` whenever it changed, as a watcher of a real registry would; the first
//!   poll after a start always sends.
//! - `exit`: exits the whole process with status 3 `after_ms` (default 50) after starting.
//!
//! Reactor scenarios (instance `cfg`):
//! - `record`: appends every node event it receives to `file` as a JSON line; with
//!   `mark`, first a line `{"start":<pid>}`, so a test can tell incarnations apart.
//! - `stall`: like `record`, but receives nothing until the file `release` exists.
//! - `count`: counts node events and writes the count to `file` when it stops.
//!
//! - `count` with `rate` (events per second, 0 = as fast as it can): paced, each event
//!   stamped with its send time (for latency).
//!
//! Reactor `count` with `expect` and `result`: once `expect` nodes arrived, writes
//! `{count, first_ns, last_ns, p50_us, p99_us}` to `result` (see `bench.rs`).
//!
//! Run as `receptor-test-plugin direct-send ...` / `direct-recv ...` it is instead the
//! baseline of the `end_to_end` bench: the same events over a plain unix socket.
//!
//! Any kind, global config: `reject-setup` fails `Setup` with `message`. Instance config:
//! `reject-accept` fails `Accept` with `message`.
//!
//! The scenarios of the host-hardening tests (hung, flooding, early-exiting plugins)
//! are in [`hardening`]; those of endpoints that fail and are restarted in place
//! (`flaky`, `tick`) in [`flaky`].
//!
//! Hostile ring scenarios (watcher instance `cfg`, see `hostile_ring`):
//! - `hostile-ring` with `attack = "truncate"`: tries to change the size of its ring's
//!   segment (to 0, and to 1 GiB) through a descriptor of its own
//!   (`/proc/self/fd/<n>`, or `/dev/shm/receptor-<host pid>-*` where segments have
//!   names), writes one line per attempt to `file`
//!   (`truncate <size>: <outcome>`), then sends `events` and waits for close.
//! - `hostile-ring` with `attack = "truncate-semaphores"`: tries to truncate (to 0)
//!   every `/dev/shm/sem.receptor-<host pid>-*` and `/dev/shm/receptor-<host pid>-*`
//!   it finds (the named semaphores and segments of older hosts), writes
//!   `truncate <entry>: <outcome>` per entry, or `nothing to truncate`, to `file`, then
//!   sends `events` and waits for close.
//! - `hostile-ring` with `attack = "unmap"` and `once` (a file): the first incarnation
//!   creates `once`, unmaps its ring and dies touching it (SIGSEGV); a later one sends
//!   `events` and waits for close.

mod bench;
mod flaky;
mod hardening;

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use plugin_sdk::{
    reactor_endpoint, watcher_endpoint, Config, NodeInfo, Reactor, ReactorEndpoint, Watcher,
    WatcherEndpoint,
};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Scenario {
    scenario: String,
    message: String,
    events: Vec<NodeInfo>,
    count: u64,
    prefix: String,
    file: Option<PathBuf>,
    release: Option<PathBuf>,
    rate: u64,
    expect: u64,
    result: Option<PathBuf>,
    once: Option<PathBuf>,
    after_ms: Option<u64>,
    mark: bool,
    child_pid_file: Option<PathBuf>,
    fault_once: Option<String>,
    attack: String,
    fail: Vec<String>,
    fail_always: bool,
}

fn scenario(cfg: &Config) -> plugin_sdk::Result<Scenario> {
    let s: Scenario = cfg.parse()?;
    if s.scenario.starts_with("reject-") {
        let message = if s.message.is_empty() {
            format!("rejected by scenario {}", s.scenario)
        } else {
            s.message.clone()
        };
        return Err(message.into());
    }
    Ok(s)
}

#[derive(Default)]
struct TestWatcher;

impl Watcher for TestWatcher {
    fn setup(&mut self, cfg: Config) -> plugin_sdk::Result<()> {
        hardening::setup(&scenario(&cfg)?)
    }

    fn accept(&mut self, cfg: Config) -> plugin_sdk::Result<WatcherEndpoint> {
        let s = scenario(&cfg)?;
        match s.scenario.as_str() {
            "emit" => {
                let fault = match (s.fault_once.as_deref(), &s.once) {
                    (None, _) => None,
                    (Some(fault @ ("garbage" | "error")), Some(once)) => {
                        Some((fault.to_owned(), once.clone()))
                    }
                    (Some("garbage" | "error"), None) => {
                        return Err("once: required with fault_once".into())
                    }
                    (Some(other), _) => return Err(format!("unknown fault_once '{other}'").into()),
                };
                Ok(watcher_endpoint(move |events, close| {
                    if let Some(file) = &s.child_pid_file {
                        let child = std::process::Command::new("sleep").arg("600").spawn()?;
                        std::fs::write(file, child.id().to_string())?;
                    }
                    if let Some((fault, once)) = fault.filter(|(_, once)| !once.exists()) {
                        std::fs::write(&once, b"")?;
                        if fault == "error" {
                            return Err(s.message.into());
                        }
                        let junk = if s.message.is_empty() {
                            vec![0xff; 40]
                        } else {
                            s.message.into_bytes()
                        };
                        while !events.send_raw_record(&junk)? {
                            close.wait_timeout(Duration::from_millis(1));
                        }
                        close.wait();
                        return Ok(());
                    }
                    for node in s.events {
                        events.send_node(node)?;
                    }
                    close.wait();
                    Ok(())
                }))
            }
            "count" => Ok(watcher_endpoint(move |events, close| {
                let prefix = if s.prefix.is_empty() {
                    "node"
                } else {
                    &s.prefix
                };
                // A bench may hold the stream back until everything else has started.
                if let Some(release) = &s.release {
                    while !release.exists() && !close.wait_timeout(Duration::from_millis(5)) {}
                }
                let start = std::time::Instant::now();
                for i in 0..s.count {
                    bench::pace(start, s.rate, i);
                    events.send(bench::event(prefix, i, s.rate > 0))?;
                }
                close.wait();
                Ok(())
            })),
            "mirror" => {
                let file = s.file.clone().ok_or("file: required for mirror")?;
                Ok(watcher_endpoint(move |events, close| {
                    let mut last: Option<String> = None;
                    loop {
                        if let Ok(text) = std::fs::read_to_string(&file) {
                            if last.as_deref() != Some(text.as_str()) {
                                if let Ok(nodes) = serde_json::from_str::<Vec<NodeInfo>>(&text) {
                                    events.send_full(nodes)?;
                                    last = Some(text);
                                }
                            }
                        }
                        if close.wait_timeout(Duration::from_millis(20)) {
                            return Ok(());
                        }
                    }
                }))
            }
            "exit" => {
                let after = Duration::from_millis(s.after_ms.unwrap_or(50));
                Ok(watcher_endpoint(move |_events, _close| {
                    std::thread::sleep(after);
                    std::process::exit(3)
                }))
            }
            "hostile-ring" => hostile_ring(s),
            "flaky" | "tick" => flaky::watcher(s, &cfg),
            _ => hardening::watcher(s),
        }
    }
}

// ---- Hostile ring scenarios: a plugin attacking its own ring segment ----

/// The ring segments this process can reach: its descriptors that are ring segments
/// (`/memfd:receptor-...`), and any segment of its host (`receptor-<host pid>-...`) that
/// has a name in `/dev/shm`, as segments had before they were sealed memory files.
fn ring_segments() -> Vec<PathBuf> {
    let fds = std::fs::read_dir("/proc/self/fd")
        .into_iter()
        .flatten()
        .flatten();
    let memfds = fds.map(|entry| entry.path()).filter(|path| {
        std::fs::read_link(path)
            .is_ok_and(|target| target.to_string_lossy().starts_with("/memfd:receptor-"))
    });
    let host = format!("receptor-{}-", std::os::unix::process::parent_id());
    let named = std::fs::read_dir("/dev/shm")
        .into_iter()
        .flatten()
        .flatten();
    let named = named
        .filter(|entry| entry.file_name().to_string_lossy().starts_with(&host))
        .map(|entry| entry.path());
    memfds.chain(named).collect()
}

/// Truncates to 0 every entry of the host (this process's parent) in `/dev/shm`: named
/// semaphores `sem.receptor-<host pid>-*` and segments `receptor-<host pid>-*`, as rings
/// had before they lived wholly in sealed memory files. Returns one line per entry with
/// the outcome, or `nothing to truncate`.
fn truncate_host_shm_entries() -> String {
    let host = format!("receptor-{}-", std::os::unix::process::parent_id());
    let entries = std::fs::read_dir("/dev/shm")
        .into_iter()
        .flatten()
        .flatten();
    let mut report = String::new();
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name
            .strip_prefix("sem.")
            .unwrap_or(&name)
            .starts_with(&host)
        {
            continue;
        }
        let outcome = std::fs::OpenOptions::new()
            .write(true)
            .open(entry.path())
            .and_then(|f| f.set_len(0))
            .map_or_else(|e| e.to_string(), |()| "truncated".to_owned());
        report.push_str(&format!("truncate {name}: {outcome}\n"));
    }
    if report.is_empty() {
        report.push_str("nothing to truncate\n");
    }
    report
}

fn hostile_ring(s: Scenario) -> plugin_sdk::Result<WatcherEndpoint> {
    match s.attack.as_str() {
        "truncate" => {
            let file = s.file.clone().ok_or("file: required for attack truncate")?;
            Ok(watcher_endpoint(move |events, close| {
                let mut report = String::new();
                let segments = ring_segments();
                if segments.is_empty() {
                    report.push_str("no ring segment found\n");
                }
                for segment in segments {
                    let opened = std::fs::OpenOptions::new().write(true).open(&segment)?;
                    for size in [0u64, 1 << 30] {
                        let outcome = match opened.set_len(size) {
                            Ok(()) => "truncated".to_owned(),
                            Err(e) => e.to_string(),
                        };
                        report.push_str(&format!("truncate {size}: {outcome}\n"));
                    }
                }
                std::fs::write(&file, report)?;
                for node in s.events {
                    events.send_node(node)?;
                }
                close.wait();
                Ok(())
            }))
        }
        "truncate-semaphores" => {
            let file = s
                .file
                .clone()
                .ok_or("file: required for attack truncate-semaphores")?;
            Ok(watcher_endpoint(move |events, close| {
                let report = truncate_host_shm_entries();
                std::fs::write(&file, report)?;
                for node in s.events {
                    events.send_node(node)?;
                }
                close.wait();
                Ok(())
            }))
        }
        "unmap" => {
            let once = s.once.clone().ok_or("once: required for attack unmap")?;
            Ok(watcher_endpoint(move |events, close| {
                if !once.exists() {
                    std::fs::write(&once, b"")?;
                    ipc::sys::shm::unmap_rings_and_crash();
                }
                for node in s.events {
                    events.send_node(node)?;
                }
                close.wait();
                Ok(())
            }))
        }
        other => Err(format!("unknown attack '{other}'").into()),
    }
}

#[derive(Default)]
struct TestReactor;

impl Reactor for TestReactor {
    fn setup(&mut self, cfg: Config) -> plugin_sdk::Result<()> {
        hardening::setup(&scenario(&cfg)?)
    }

    fn accept(&mut self, cfg: Config) -> plugin_sdk::Result<ReactorEndpoint> {
        let s = scenario(&cfg)?;
        if s.scenario == "flaky" {
            return flaky::reactor(s, &cfg);
        }
        let file = s
            .file
            .clone()
            .ok_or("file: required for reactor scenarios")?;
        match s.scenario.as_str() {
            "record" | "stall" => Ok(reactor_endpoint(move |mut events, close| {
                if let Some(release) = &s.release {
                    while !release.exists() && !close.wait_timeout(Duration::from_millis(10)) {}
                }
                let mut out = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&file)?;
                if s.mark {
                    writeln!(out, "{{\"start\":{}}}", std::process::id())?;
                    out.flush()?;
                }
                while let Some(ev) = events.recv() {
                    for node in ev.nodes() {
                        writeln!(out, "{}", serde_json::to_string(node)?)?;
                    }
                    out.flush()?;
                }
                Ok(())
            })),
            "count" => Ok(reactor_endpoint(move |mut events, _close| {
                let mut tally = bench::Tally::default();
                while let Some(ev) = events.recv() {
                    tally.observe(&ev);
                    if let Some(result) = &s.result {
                        tally.write_when_done(s.expect, result)?;
                    }
                }
                std::fs::write(&file, tally.count().to_string())?;
                Ok(())
            })),
            other => Err(format!("unknown reactor scenario '{other}'").into()),
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let direct = match args.get(1).map(String::as_str) {
        Some("direct-send") => Some(bench::direct_send(&args[2..])),
        Some("direct-recv") => Some(bench::direct_recv(&args[2..])),
        _ => None,
    };
    if let Some(result) = direct {
        if let Err(e) = result {
            eprintln!("receptor-test-plugin: {e}");
            std::process::exit(1);
        }
        return;
    }
    let name = std::env::args().next().unwrap_or_default();
    let name = std::path::Path::new(&name)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_owned();
    let plugin_type = name
        .strip_prefix("receptor-watcher-")
        .or_else(|| name.strip_prefix("receptor-reactor-"))
        .unwrap_or_default();
    hardening::by_type_name(plugin_type);
    if name.starts_with("receptor-reactor-") {
        plugin_sdk::serve_reactor(TestReactor)
    } else if name.starts_with("receptor-watcher-") {
        plugin_sdk::serve_watcher(TestWatcher)
    } else {
        eprintln!("receptor-test-plugin: run me as receptor-watcher-<type> or receptor-reactor-<type>, not '{name}'");
        std::process::exit(64);
    }
}
