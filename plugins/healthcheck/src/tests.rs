//! The watcher against real TCP and HTTP servers on loopback that the tests start, stop,
//! restart, turn to answering 500, or make accept and never answer.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use plugin_sdk::testing::{Harness, WatcherRun};
use plugin_sdk::NodeStatus::{self, Down, Up};

use crate::HealthCheck;

/// The longest any wait in these tests lasts.
const WAIT: Duration = Duration::from_secs(20);

/// What a test server does with a connection.
#[derive(Clone, Copy)]
enum Mode {
    /// Reads the request head and answers with the current status.
    Answer,
    /// Accepts and never answers; notices when the client gives up.
    Hang,
}

/// A server on loopback, stopped (its port closed) when dropped.
struct Server {
    addr: SocketAddr,
    status: Arc<AtomicU16>,
    accepted: Arc<AtomicUsize>,
    /// Connections the client closed while this server said nothing.
    abandoned: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start(port: u16, mode: Mode, status: u16) -> Server {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the test server");
        let addr = listener.local_addr().unwrap();
        let status = Arc::new(AtomicU16::new(status));
        let accepted = Arc::new(AtomicUsize::new(0));
        let abandoned = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (status, accepted, abandoned, stop) = (
                status.clone(),
                accepted.clone(),
                abandoned.clone(),
                stop.clone(),
            );
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(conn) = conn else { continue };
                    accepted.fetch_add(1, Ordering::SeqCst);
                    let (status, abandoned) = (status.clone(), abandoned.clone());
                    std::thread::spawn(move || serve(conn, mode, &status, &abandoned));
                }
            })
        };
        Server {
            addr,
            status,
            accepted,
            abandoned,
            stop,
            thread: Some(thread),
        }
    }

    fn port(&self) -> u16 {
        self.addr.port()
    }

    fn set_status(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr); // wakes the accept loop
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

fn serve(mut conn: TcpStream, mode: Mode, status: &AtomicU16, abandoned: &AtomicUsize) {
    conn.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = [0u8; 4096];
    let mut head = Vec::new();
    match mode {
        Mode::Answer => {
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let status = status.load(Ordering::SeqCst);
            let answer =
                format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            let _ = conn.write_all(answer.as_bytes());
        }
        Mode::Hang => loop {
            match conn.read(&mut buf) {
                Ok(0) => {
                    abandoned.fetch_add(1, Ordering::SeqCst);
                    return;
                }
                Ok(_) => continue,
                Err(_) => return,
            }
        },
    }
}

/// A port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An instance config: `check` of `nodes` (on 127.0.0.1, with a meta tag) every 50 ms
/// with a timeout of 500 ms, then the keys of the JSON object `extra` (which win).
fn cfg(check: &str, nodes: &[(&str, u16)], extra: &str) -> String {
    let nodes: Vec<serde_json::Value> = nodes
        .iter()
        .map(|(name, port)| {
            serde_json::json!({"name": name, "host": "127.0.0.1", "port": port, "meta": {"zone": "t"}})
        })
        .collect();
    let mut cfg = serde_json::json!({
        "check": check, "interval": "50ms", "timeout": "500ms", "nodes": nodes
    });
    let extra: serde_json::Value = serde_json::from_str(extra).unwrap();
    for (key, value) in extra.as_object().unwrap() {
        cfg[key] = value.clone();
    }
    cfg.to_string()
}

/// Every status reported per node, in order.
#[derive(Default)]
struct Reports(BTreeMap<String, Vec<NodeStatus>>);

impl Reports {
    /// Reads updates until node `name`'s last report is `status`.
    fn wait_for(&mut self, run: &WatcherRun, name: &str, status: NodeStatus) {
        let deadline = Instant::now() + WAIT;
        while self.0.get(name).and_then(|s| s.last()) != Some(&status) {
            let left = deadline.saturating_duration_since(Instant::now());
            let update = run.recv_timeout(left).unwrap_or_else(|| {
                panic!("no report of {name} {status} in {WAIT:?}: {:?}", self.0)
            });
            for node in update.event().nodes() {
                assert_eq!(node.host, "127.0.0.1");
                assert_eq!(node.meta.get("zone").map(String::as_str), Some("t"));
                self.0
                    .entry(node.name.clone())
                    .or_default()
                    .push(node.status);
            }
        }
    }

    fn of(&self, name: &str) -> &[NodeStatus] {
        self.0.get(name).map_or(&[], Vec::as_slice)
    }
}

fn start(cfg: &str) -> WatcherRun {
    Harness::new()
        .service("web")
        .run_watcher(&mut HealthCheck, cfg)
        .unwrap()
}

fn stop(run: WatcherRun) {
    run.close();
    run.join(WAIT).unwrap();
}

#[test]
fn tcp_nodes_follow_their_server_stopped_and_restarted() {
    let server = Server::start(0, Mode::Hang, 0);
    let port = server.port();
    let dead = closed_port();
    let run = start(&cfg("tcp", &[("live", port), ("dead", dead)], "{}"));
    let mut reports = Reports::default();
    reports.wait_for(&run, "live", Up);
    reports.wait_for(&run, "dead", Down);

    drop(server);
    reports.wait_for(&run, "live", Down);
    let server = Server::start(port, Mode::Hang, 0);
    reports.wait_for(&run, "live", Up);
    assert_eq!(reports.of("live"), [Up, Down, Up], "only flips are sent");
    assert_eq!(reports.of("dead"), [Down]);
    assert!(run.state().get("live").is_some_and(|n| n.is_up()));
    stop(run);
    drop(server);
}

#[test]
fn http_nodes_go_down_on_500_and_on_a_server_that_never_answers() {
    let web = Server::start(0, Mode::Answer, 200);
    let hang = Server::start(0, Mode::Hang, 0);
    let config = cfg(
        "http",
        &[("web", web.port()), ("hang", hang.port())],
        r#"{"timeout": "100ms", "path": "/health", "rise": 3}"#,
    );
    let run = start(&config);
    let mut reports = Reports::default();
    reports.wait_for(&run, "web", Up);
    reports.wait_for(&run, "hang", Down);
    web.set_status(500);
    reports.wait_for(&run, "web", Down);
    web.set_status(301);
    reports.wait_for(&run, "web", Up);
    // The hanging server's connections were given up by the checks: none outlives its
    // timeout, so they keep being closed while the plugin runs.
    let deadline = Instant::now() + WAIT;
    while hang.abandoned.load(Ordering::SeqCst) < 3 {
        assert!(
            Instant::now() < deadline,
            "checks of the hanging server never gave up"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    stop(run);
    assert_eq!(reports.of("web"), [Up, Down, Up]);
    assert_eq!(
        reports.of("hang"),
        [Down],
        "a node that never answered is never up"
    );
}

#[test]
fn expect_status_decides_what_passes() {
    let web = Server::start(0, Mode::Answer, 204);
    let config = cfg(
        "http",
        &[("web", web.port())],
        r#"{"expect_status": [503]}"#,
    );
    let run = start(&config);
    let mut reports = Reports::default();
    reports.wait_for(&run, "web", Down);
    web.set_status(503);
    reports.wait_for(&run, "web", Up);
    stop(run);
}

/// Guards against checks that run one after another: a node whose check hangs for the
/// whole (long) timeout must not hold back the checks of the others.
#[test]
fn a_hanging_node_does_not_delay_the_others() {
    let hang = Server::start(0, Mode::Hang, 0);
    let web = Server::start(0, Mode::Answer, 200);
    let config = cfg(
        "http",
        &[("hang", hang.port()), ("web", web.port())],
        r#"{"timeout": "10s", "rise": 4}"#,
    );
    let run = start(&config);
    let mut reports = Reports::default();
    reports.wait_for(&run, "web", Up);
    assert!(web.accepted.load(Ordering::SeqCst) >= 4);
    assert_eq!(
        hang.abandoned.load(Ordering::SeqCst),
        0,
        "the hanging node's first check is still waiting for its timeout"
    );
    assert!(reports.of("hang").is_empty());
    stop(run);
}

#[test]
fn close_stops_the_checks_at_once() {
    let hang = Server::start(0, Mode::Hang, 0);
    let run = start(&cfg(
        "http",
        &[("hang", hang.port())],
        r#"{"timeout": "1h", "interval": "1h"}"#,
    ));
    let deadline = Instant::now() + WAIT;
    while hang.accepted.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "the first check never connected");
        std::thread::sleep(Duration::from_millis(5));
    }
    stop(run);
    let deadline = Instant::now() + WAIT;
    while hang.abandoned.load(Ordering::SeqCst) == 0 {
        assert!(
            Instant::now() < deadline,
            "the check's connection outlived the close"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_bad_config_is_refused_naming_the_key() {
    let err = Harness::new()
        .run_watcher(&mut HealthCheck, r#"{"nodes": [], "check": "tcp"}"#)
        .err()
        .unwrap();
    assert!(err.starts_with("nodes"), "{err}");
    let err = Harness::new()
        .run_watcher(
            &mut HealthCheck,
            r#"{"nodes": [{"name": "a", "host": "h", "port": 1}], "rise": "2"}"#,
        )
        .err()
        .unwrap();
    assert!(err.starts_with("rise"), "{err}");
}
