//! The `dummy` watcher: reports one node that alternates between up and down, for trying
//! a pipeline out without a real registry.
//!
//! Each instance reports its node `Up` at once, then flips it every `interval`:
//!
//! ```toml
//! [services.web.watchers.node1]
//! type = "dummy"
//! cfg = { name = "node1", host = "127.0.0.1", port = 8081, interval = "2s" }
//! ```
//!
//! | key        | required | default       | meaning                                  |
//! |------------|----------|---------------|------------------------------------------|
//! | `name`     | yes      |               | the node's name                          |
//! | `host`     | no       | `"127.0.0.1"` | the node's address                       |
//! | `port`     | yes      |               | the node's port (0 to 65535)             |
//! | `interval` | no       | `"2s"`        | time between flips (`500ms`, `2s`, `1m`) |
//!
//! The dummy has no global configuration.

use plugin_sdk::{watcher_endpoint, Config, Event, NodeStatus, Watcher, WatcherEndpoint};
use serde::Deserialize;

/// The plugin type name users write as `type = "dummy"`.
pub const TYPE: &str = "dummy";

/// An instance's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct DummyConfig {
    name: String,
    #[serde(default = "default_host")]
    host: String,
    port: u16,
    #[serde(default = "default_interval")]
    interval: String,
}

fn default_host() -> String {
    "127.0.0.1".to_owned()
}

fn default_interval() -> String {
    "2s".to_owned()
}

/// The dummy watcher.
#[derive(Debug, Default)]
pub struct Dummy;

impl Watcher for Dummy {
    fn accept(&mut self, cfg: Config) -> plugin_sdk::Result<WatcherEndpoint> {
        let cfg: DummyConfig = cfg.parse()?;
        let interval = humantime::parse_duration(&cfg.interval)
            .map_err(|e| format!("interval: '{}' is not a duration: {e}", cfg.interval))?;
        if interval.is_zero() {
            return Err("interval: must be longer than zero".into());
        }
        if cfg.name.is_empty() {
            return Err("name: must not be empty".into());
        }
        Ok(watcher_endpoint(move |events, close| {
            let mut status = NodeStatus::Up;
            loop {
                events.send(Event::with_node(&cfg.name, status, &cfg.host, cfg.port))?;
                tracing::debug!(node = %cfg.name, %status, "reported");
                if close.wait_timeout(interval) {
                    return Ok(());
                }
                status = flip(status);
            }
        }))
    }
}

fn flip(status: NodeStatus) -> NodeStatus {
    match status {
        NodeStatus::Up => NodeStatus::Down,
        NodeStatus::Down => NodeStatus::Up,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plugin_sdk::testing::run_watcher;
    use std::time::Duration;

    /// Waits at most this long for anything in the tests.
    const TEST_WAIT: Duration = Duration::from_secs(10);

    #[test]
    fn the_node_alternates_up_and_down() {
        let cfg = r#"{"name": "n1", "host": "10.0.0.1", "port": 8080, "interval": "10ms"}"#;
        let run = run_watcher(&mut Dummy, "{}", cfg, 16).unwrap();
        let mut seen = Vec::new();
        for _ in 0..4 {
            let update = run.recv_timeout(TEST_WAIT).expect("an update");
            let node = update.event().nodes().next().expect("one node").clone();
            assert_eq!(
                (node.name.as_str(), node.host.as_str(), node.port),
                ("n1", "10.0.0.1", 8080)
            );
            seen.push(node.status);
        }
        assert_eq!(
            seen,
            [
                NodeStatus::Up,
                NodeStatus::Down,
                NodeStatus::Up,
                NodeStatus::Down
            ]
        );
        run.close();
        run.join(TEST_WAIT).unwrap();
    }

    /// What the host would hold from the dummy: its node up, then not.
    #[test]
    fn the_host_sees_the_node_come_and_go() {
        let cfg = r#"{"name": "n1", "port": 80, "interval": "20ms"}"#;
        let run = plugin_sdk::testing::Harness::new()
            .service("web")
            .instance("node1")
            .capacity(1)
            .run_watcher(&mut Dummy, cfg)
            .unwrap();
        run.recv_timeout(TEST_WAIT).expect("the first update");
        assert_eq!(
            run.state().get("n1").map(|n| n.status),
            Some(NodeStatus::Up)
        );
        run.recv_timeout(TEST_WAIT).expect("the flip");
        assert!(run.state().is_empty(), "down: the host holds nothing up");
        run.close();
        run.join(TEST_WAIT).unwrap();
    }

    #[test]
    fn close_stops_a_long_interval_at_once() {
        let cfg = r#"{"name": "n1", "port": 1, "interval": "1h"}"#;
        let run = run_watcher(&mut Dummy, "{}", cfg, 16).unwrap();
        let first = run.recv_timeout(TEST_WAIT).expect("the first update");
        assert_eq!(first.event().nodes().next().unwrap().host, "127.0.0.1");
        run.close();
        run.join(TEST_WAIT).unwrap();
    }

    #[test]
    fn bad_config_names_the_field() {
        for (cfg, field) in [
            (r#"{"port": 1}"#, "name"),
            (r#"{"name": "n", "port": "x"}"#, "port"),
            (r#"{"name": "n", "port": 70000}"#, "port"),
            (
                r#"{"name": "n", "port": 1, "interval": "soon"}"#,
                "interval",
            ),
            (
                r#"{"name": "n", "port": 1, "intervall": "1s"}"#,
                "intervall",
            ),
        ] {
            let err = run_watcher(&mut Dummy, "{}", cfg, 1).err().expect(cfg);
            assert!(err.contains(field), "{cfg}: {err}");
        }
    }
}
