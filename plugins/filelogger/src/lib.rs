//! The `filelogger` reactor: appends one line per node event to a file.
//!
//! ```toml
//! [services.web.reactors.log]
//! type = "filelogger"
//! cfg = { filename = "receptor-logs/events.log", unbuffered = true }
//! ```
//!
//! | key          | required | default | meaning                                        |
//! |--------------|----------|---------|------------------------------------------------|
//! | `filename`   | yes      |         | the file to append to (parent dirs are made)   |
//! | `unbuffered` | no       | `false` | write each line through at once                |
//!
//! Each line reads `<time> <name> (<status>) <host>:<port>`, the time in RFC 3339 with
//! milliseconds, UTC, for example
//! `2026-11-25T10:00:00.123Z node1 (up) 127.0.0.1:8081`. Buffered output is flushed when
//! the endpoint closes. A relative `filename` is relative to the host's working directory.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::SystemTime;

use plugin_sdk::{reactor_endpoint, Config, NodeInfo, Reactor, ReactorEndpoint};
use serde::Deserialize;

/// The plugin type name users write as `type = "filelogger"`.
pub const TYPE: &str = "filelogger";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLoggerConfig {
    filename: PathBuf,
    #[serde(default)]
    unbuffered: bool,
}

/// The filelogger reactor.
#[derive(Debug, Default)]
pub struct FileLogger;

/// One line of the log for `node` at `time`.
pub fn format_line(time: SystemTime, node: &NodeInfo) -> String {
    format!(
        "{} {} ({}) {}:{}\n",
        humantime::format_rfc3339_millis(time),
        node.name,
        node.status,
        node.host,
        node.port
    )
}

fn open(path: &PathBuf) -> Result<File, String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("filename: cannot create directory {}: {e}", dir.display()))?;
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("filename: cannot open {}: {e}", path.display()))
}

impl Reactor for FileLogger {
    fn accept(&mut self, cfg: Config) -> plugin_sdk::Result<ReactorEndpoint> {
        let cfg: FileLoggerConfig = cfg.parse()?;
        let file = open(&cfg.filename)?;
        Ok(reactor_endpoint(move |events, _close| {
            let mut out = BufWriter::new(file);
            let path = cfg.filename.display().to_string();
            let write_err = |e: std::io::Error| format!("cannot write to {path}: {e}");
            // The iterator ends when the host closes the endpoint or the stream ends.
            for event in events {
                let now = SystemTime::now();
                for node in event.nodes() {
                    out.write_all(format_line(now, node).as_bytes())
                        .map_err(write_err)?;
                }
                if cfg.unbuffered {
                    out.flush().map_err(write_err)?;
                }
            }
            out.flush().map_err(write_err)?;
            Ok(())
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plugin_sdk::testing::run_reactor;
    use plugin_sdk::{Event, NodeStatus};
    use std::time::{Duration, Instant};

    const TEST_WAIT: Duration = Duration::from_secs(10);

    fn cfg(path: &std::path::Path, unbuffered: bool) -> String {
        serde_json::json!({ "filename": path, "unbuffered": unbuffered }).to_string()
    }

    fn wait_for_lines(path: &std::path::Path, n: usize) -> Vec<String> {
        let deadline = Instant::now() + TEST_WAIT;
        loop {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let lines: Vec<String> = text.lines().map(str::to_owned).collect();
            if lines.len() >= n || Instant::now() > deadline {
                return lines;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_line_has_the_documented_shape() {
        let node = NodeInfo::new("node1", NodeStatus::Down, "10.0.0.1", 8081);
        let time = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(
            format_line(time, &node),
            "2023-11-14T22:13:20.123Z node1 (down) 10.0.0.1:8081\n"
        );
    }

    #[test]
    fn unbuffered_lines_appear_before_close() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/events.log");
        let run = run_reactor(&mut FileLogger, "{}", &cfg(&path, true)).unwrap();
        run.send(Event::with_node("n1", NodeStatus::Up, "h", 1));
        run.send(Event::with_node("n2", NodeStatus::Down, "h", 2));
        let lines = wait_for_lines(&path, 2);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].ends_with(" n1 (up) h:1"), "{}", lines[0]);
        assert!(lines[1].ends_with(" n2 (down) h:2"), "{}", lines[1]);
        run.close();
        run.join(TEST_WAIT).unwrap();
    }

    #[test]
    fn buffered_lines_are_flushed_on_close_and_appended() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.log");
        std::fs::write(&path, "earlier\n").unwrap();
        let run = run_reactor(&mut FileLogger, "{}", &cfg(&path, false)).unwrap();
        run.send(Event::with_node("n1", NodeStatus::Up, "h", 1));
        run.close();
        run.join(TEST_WAIT).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "earlier");
        assert!(lines[1].ends_with(" n1 (up) h:1"), "{text}");
    }

    /// The host going away ends the stream: what is buffered is written, and the
    /// endpoint returns cleanly.
    #[test]
    fn the_end_of_the_stream_flushes_and_finishes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.log");
        let run = plugin_sdk::testing::Harness::new()
            .service("web")
            .instance("log")
            .run_reactor(&mut FileLogger, &cfg(&path, false))
            .unwrap();
        let mut ev = Event::with_node("a", NodeStatus::Up, "h", 1);
        ev.add("b", NodeStatus::Down, "", 0);
        run.send(ev);
        run.end_stream();
        run.join(TEST_WAIT).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].ends_with(" a (up) h:1") && lines[1].ends_with(" b (down) :0"));
    }

    #[test]
    fn bad_config_names_the_field_or_the_file() {
        let err = run_reactor(&mut FileLogger, "{}", r#"{"unbuffered": true}"#)
            .err()
            .unwrap();
        assert!(err.contains("filename"), "{err}");
        let err = run_reactor(&mut FileLogger, "{}", r#"{"filename": "/proc/nope/x.log"}"#)
            .err()
            .unwrap();
        assert!(err.contains("/proc/nope"), "{err}");
    }
}
