//! A plugin for Receptor's end-to-end tests and benchmarks: one binary, many scenarios.
//!
//! Its kind comes from the name it runs under: copy or link it into a plugin directory as
//! `receptor-watcher-<type>` or `receptor-reactor-<type>`. Its behaviour comes from the
//! `scenario` key of its configuration: the global one (`[watchers.<type>]`) decides
//! set-up scenarios, an instance's `cfg` decides that endpoint's scenario.
//!
//! Watcher scenarios (instance `cfg`):
//! - `emit`: sends `events` (a list of `{name, status, host, port}`) one by one, then
//!   waits for close.
//! - `count`: sends `count` one-node events, each naming a node not seen before
//!   (`<prefix>-<i>`), as fast as it can, then waits for close.
//!
//! Reactor scenarios (instance `cfg`):
//! - `record`: appends every node event it receives to `file` as a JSON line.
//! - `stall`: like `record`, but receives nothing until the file `release` exists.
//! - `count`: counts node events and writes the count to `file` when it stops.
//!
//! Any kind, global config: `reject-setup` fails `Setup` with `message`. Instance config:
//! `reject-accept` fails `Accept` with `message`.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use plugin_sdk::{
    reactor_endpoint, watcher_endpoint, Config, Event, NodeInfo, Reactor, ReactorEndpoint, Watcher,
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
        scenario(&cfg).map(drop)
    }

    fn accept(&mut self, cfg: Config) -> plugin_sdk::Result<WatcherEndpoint> {
        let s = scenario(&cfg)?;
        match s.scenario.as_str() {
            "emit" => Ok(watcher_endpoint(move |events, close| {
                for node in s.events {
                    events.send_node(node)?;
                }
                close.wait();
                Ok(())
            })),
            "count" => Ok(watcher_endpoint(move |events, close| {
                let prefix = if s.prefix.is_empty() {
                    "node"
                } else {
                    &s.prefix
                };
                for i in 0..s.count {
                    let name = format!("{prefix}-{i}");
                    events.send(Event::with_node(
                        name,
                        plugin_sdk::NodeStatus::Up,
                        "127.0.0.1",
                        80,
                    ))?;
                }
                close.wait();
                Ok(())
            })),
            other => Err(format!("unknown watcher scenario '{other}'").into()),
        }
    }
}

#[derive(Default)]
struct TestReactor;

impl Reactor for TestReactor {
    fn setup(&mut self, cfg: Config) -> plugin_sdk::Result<()> {
        scenario(&cfg).map(drop)
    }

    fn accept(&mut self, cfg: Config) -> plugin_sdk::Result<ReactorEndpoint> {
        let s = scenario(&cfg)?;
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
                while let Some(ev) = events.recv() {
                    for node in ev.nodes() {
                        writeln!(out, "{}", serde_json::to_string(node)?)?;
                    }
                    out.flush()?;
                }
                Ok(())
            })),
            "count" => Ok(reactor_endpoint(move |mut events, _close| {
                let mut count = 0u64;
                while let Some(ev) = events.recv() {
                    count += ev.len() as u64;
                }
                std::fs::write(&file, count.to_string())?;
                Ok(())
            })),
            other => Err(format!("unknown reactor scenario '{other}'").into()),
        }
    }
}

fn main() {
    let name = std::env::args().next().unwrap_or_default();
    let name = std::path::Path::new(&name)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_owned();
    if name.starts_with("receptor-reactor-") {
        plugin_sdk::serve_reactor(TestReactor)
    } else if name.starts_with("receptor-watcher-") {
        plugin_sdk::serve_watcher(TestWatcher)
    } else {
        eprintln!("receptor-test-plugin: run me as receptor-watcher-<type> or receptor-reactor-<type>, not '{name}'");
        std::process::exit(64);
    }
}
