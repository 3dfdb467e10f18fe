//! `cargo bench --bench end_to_end`: a watcher plugin process, the host, a reactor plugin
//! process, against the same two processes talking over a unix socket with no host.
//!
//! Both runs use the test plugin (`tests/test-plugin`): a watcher that sends one-node
//! events, each naming a node not seen before (so nothing can be coalesced away), and a
//! reactor that counts what arrives and, once everything did, writes the count, the
//! first and last arrival times and the one-way latencies (events carry their send time)
//! to a result file. A missing event means no result file: the bench fails.
//! - throughput: 1 M events as fast as the watcher can send, counted from the first
//!   arrival to the last;
//! - latency: 5 000 events at 1 000 per second, p50 and p99 of send-to-arrival.
//!
//! `RECEPTOR_BENCH_QUICK=1` divides the counts by ten.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::{test_plugin, BenchHost, Guard};

const RESULT_WAIT: Duration = Duration::from_secs(180);

struct Outcome {
    events_per_s: f64,
    p50_us: f64,
    p99_us: f64,
}

/// Waits for the reactor's result file and reads it.
fn result(path: &Path, what: &str) -> Outcome {
    let deadline = Instant::now() + RESULT_WAIT;
    while !path.exists() {
        if Instant::now() > deadline {
            // A panic, not an exit: unwinding stops the processes through their guards.
            panic!("end_to_end: {what}: no result within {RESULT_WAIT:?}: events were lost");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let count = v["count"].as_f64().unwrap();
    let span = (v["last_ns"].as_f64().unwrap() - v["first_ns"].as_f64().unwrap()) / 1e9;
    Outcome {
        events_per_s: if span > 0.0 {
            (count - 1.0) / span
        } else {
            0.0
        },
        p50_us: v["p50_us"].as_f64().unwrap(),
        p99_us: v["p99_us"].as_f64().unwrap(),
    }
}

/// Through the host: `receptor run` with the test plugin as watcher and reactor.
fn through_host(plugin: &Path, count: u64, rate: u64) -> Outcome {
    let config = format!(
        r#"
[services.bench.watchers.gen]
type = "gen"
cfg = {{ scenario = "count", count = {count}, rate = {rate}, prefix = "n" }}

[services.bench.reactors.tally]
type = "tally"
cfg = {{ scenario = "count", expect = {count}, result = "result.json", file = "count.txt" }}
"#
    );
    let host = BenchHost::start(
        plugin,
        &["receptor-watcher-gen", "receptor-reactor-tally"],
        &config,
    );
    result(&host.path().join("result.json"), "through the host")
}

/// The baseline: the same processes, one socket, no host.
fn direct(plugin: &Path, count: u64, rate: u64) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("direct.sock");
    let result_file = dir.path().join("result.json");
    let recv = Command::new(plugin)
        .arg("direct-recv")
        .arg(&socket)
        .arg(count.to_string())
        .arg(&result_file)
        .spawn()
        .expect("start direct-recv");
    let _recv = Guard(Some(recv));
    let send = Command::new(plugin)
        .arg("direct-send")
        .arg(&socket)
        .arg(count.to_string())
        .arg(rate.to_string())
        .arg("n")
        .spawn()
        .expect("start direct-send");
    let _send = Guard(Some(send));
    result(&result_file, "direct socket")
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let quick = std::env::var("RECEPTOR_BENCH_QUICK").is_ok_and(|v| v == "1");
    let scale = if quick { 10 } else { 1 };
    let plugin = test_plugin();
    let (count, paced) = (1_000_000 / scale, 5_000 / scale);

    let e2e = through_host(&plugin, count, 0);
    let direct_tp = direct(&plugin, count, 0);
    let e2e_lat = through_host(&plugin, paced, 1000);
    let direct_lat = direct(&plugin, paced, 1000);

    println!("summary: e2e_events_per_s = {:.0}", e2e.events_per_s);
    println!("summary: e2e_latency_p50_us = {:.1}", e2e_lat.p50_us);
    println!("summary: e2e_latency_p99_us = {:.1}", e2e_lat.p99_us);
    println!(
        "summary: direct_uds_events_per_s = {:.0}",
        direct_tp.events_per_s
    );
    println!(
        "summary: direct_uds_latency_p50_us = {:.1}",
        direct_lat.p50_us
    );
    println!(
        "ratio: e2e / direct_uds throughput = {:.2}",
        e2e.events_per_s / direct_tp.events_per_s
    );
    println!(
        "ratio: e2e / direct_uds latency p50 = {:.2}",
        e2e_lat.p50_us / direct_lat.p50_us
    );
    println!("note: direct_uds_latency_p99_us = {:.1}", direct_lat.p99_us);
}
