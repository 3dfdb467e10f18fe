//! `cargo bench --bench healthcheck`: do 1,000 nodes checked every second keep their
//! interval when a tenth of them hang until the timeout?
//!
//! The `healthcheck` watcher runs in-process (`plugin_sdk::testing`) as two instances
//! with `interval = "1s"`, `timeout = "1s"`: 900 nodes TCP-checked against a loopback
//! server that accepts every connection, and 100 nodes HTTP-checked against one that
//! accepts and never answers, so each of their checks hangs for the whole timeout. Over
//! a measured window the bench counts the connections the fast server accepted.
//!
//! Prints `summary: healthcheck_checks_per_s = <n>` beside the same run's baseline
//! `summary: healthcheck_scheduled_checks_per_s = <n>` (900 nodes / 1 s): equal when no
//! check is late or lost. `RECEPTOR_BENCH_QUICK=1` measures 3 s instead of 10.

use std::io::Read;
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use plugin_sdk::testing::Harness;
use receptor_healthcheck::HealthCheck;

const FAST: usize = 900;
const SLOW: usize = 100;

/// A loopback server counting the connections it accepts; `hang` holds each open until
/// the client closes it.
fn server(hang: bool) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            count.fetch_add(1, Ordering::Relaxed);
            if hang {
                std::thread::spawn(move || {
                    let mut buf = [0u8; 1024];
                    while matches!(conn.read(&mut buf), Ok(n) if n > 0) {}
                });
            }
        }
    });
    (port, accepted)
}

fn nodes(prefix: &str, count: usize, port: u16) -> serde_json::Value {
    (0..count)
        .map(|i| serde_json::json!({"name": format!("{prefix}{i}"), "host": "127.0.0.1", "port": port}))
        .collect()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let quick = std::env::var("RECEPTOR_BENCH_QUICK").is_ok_and(|v| v == "1");
    let window = Duration::from_secs(if quick { 3 } else { 10 });
    let (fast_port, fast) = server(false);
    let (slow_port, slow) = server(true);
    let fast_cfg = serde_json::json!({
        "check": "tcp", "interval": "1s", "timeout": "1s", "nodes": nodes("fast", FAST, fast_port)
    });
    let slow_cfg = serde_json::json!({
        "check": "http", "interval": "1s", "timeout": "1s", "nodes": nodes("slow", SLOW, slow_port)
    });
    let fast_run = Harness::new()
        .instance("fast")
        .capacity(4096)
        .run_watcher(&mut HealthCheck, &fast_cfg.to_string())
        .unwrap();
    let slow_run = Harness::new()
        .instance("slow")
        .run_watcher(&mut HealthCheck, &slow_cfg.to_string())
        .unwrap();
    // Warm up two intervals (every node has had its first checks), then measure.
    std::thread::sleep(Duration::from_secs(2));
    let (start_fast, start_slow, started) = (
        fast.load(Ordering::Relaxed),
        slow.load(Ordering::Relaxed),
        Instant::now(),
    );
    std::thread::sleep(window);
    let elapsed = started.elapsed().as_secs_f64();
    let fast_rate = (fast.load(Ordering::Relaxed) - start_fast) as f64 / elapsed;
    let slow_rate = (slow.load(Ordering::Relaxed) - start_slow) as f64 / elapsed;
    // Every fast node is up (the updates may still be on their way).
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut up = fast_run.state().len();
    while up < FAST && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
        up = fast_run.state().len();
    }
    fast_run.close();
    slow_run.close();
    fast_run.join(Duration::from_secs(10)).unwrap();
    slow_run.join(Duration::from_secs(10)).unwrap();
    println!("healthcheck: fast nodes up: {up} of {FAST}; hanging checks started: {slow_rate:.0}/s of {SLOW}/s");
    assert_eq!(up, FAST, "every fast node is reported up");
    println!("summary: healthcheck_checks_per_s = {fast_rate:.0}");
    println!("summary: healthcheck_scheduled_checks_per_s = {FAST}");
}
