//! `cargo bench --bench scale`: what a host with many idle services costs, and whether
//! one busy service among them keeps its pace.
//!
//! For N = 10, 100 and 1,000 services, each one `dummy` watcher (`interval = "1h"`, so
//! idle after its first event; the figures used 30 s) and one `filelogger` reactor, the bench starts
//! `receptor run` and prints:
//! - `scale_<N>_start_ms`: from the spawn until every service's first event is in its
//!   reactor's file;
//! - `scale_<N>_idle_cpu_ms_5s`: the CPU time host and plugins take over 5 s of idleness
//!   (after a second of settling);
//! - `scale_<N>_rss_mb`: the resident memory of host and plugins together (a shared
//!   page counts in every process that maps it, so this overstates);
//! - `scale_<N>_shm_mb`: the shared memory of the rings (the memory files the host
//!   holds, each page counted once) plus anything of ours in `/dev/shm`;
//! - `scale_<N>_host_threads`, `scale_<N>_stop_ms` (SIGTERM to exit).
//!
//! Then one busy service (the test plugin's `count` watcher and reactor, as in
//! `end_to_end`) alone, and among 1,000 idle ones, released once everything started:
//! `scale_alone_events_per_s` and `scale_busy_events_per_s`.
//!
//! `RECEPTOR_BENCH_QUICK=1` runs N = 10 and 100 only and a tenth of the events.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::procs;
use support::{test_plugin, BenchHost};

const START_WAIT: Duration = Duration::from_secs(120);

fn quick() -> bool {
    std::env::var_os("RECEPTOR_BENCH_QUICK").is_some()
}

/// `n` idle services `s<i>` (see `tests/common/services.rs`), dummies flipping hourly.
fn idle_services(n: usize) -> String {
    format!(
        "shutdown_timeout = \"10s\"\n{}",
        support::services::idle_services(n, "1h")
    )
}

/// The busy service: `count` events from the test plugin, released by the file `go`.
fn busy_service(count: u64) -> String {
    format!(
        "[services.busy.watchers.gen]\ntype = \"gen\"\n\
         cfg = {{ scenario = \"count\", count = {count}, prefix = \"n\", release = \"go\" }}\n\
         [services.busy.reactors.tally]\ntype = \"tally\"\n\
         cfg = {{ scenario = \"count\", expect = {count}, result = \"result.json\", file = \"count.txt\" }}\n"
    )
}

/// How many of the `n` services' files hold their first event.
fn delivered(dir: &Path, n: usize) -> usize {
    (0..n)
        .filter(|i| {
            std::fs::metadata(dir.join(format!("logs/s{i}.log"))).is_ok_and(|m| m.len() > 0)
        })
        .count()
}

fn wait_started(host: &BenchHost, n: usize, started: Instant) -> Duration {
    while delivered(host.path(), n) < n {
        if started.elapsed() > START_WAIT {
            panic!(
                "scale: only {} of {n} services delivered within {START_WAIT:?}",
                delivered(host.path(), n)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    started.elapsed()
}

fn summary(name: &str, value: f64) {
    println!("summary: {name} = {value:.1}");
}

/// Starts `n` idle services, measures, stops.
fn idle(plugin: &Path, n: usize) {
    let started = Instant::now();
    let mut host = BenchHost::start(plugin, &[], &idle_services(n));
    let start = wait_started(&host, n, started);
    let pid = host.pid();
    std::thread::sleep(Duration::from_secs(1));
    let tree = procs::tree(pid);
    let before: u64 = tree.iter().map(|&p| procs::cpu_ticks(p)).sum();
    std::thread::sleep(Duration::from_secs(5));
    let after: u64 = tree.iter().map(|&p| procs::cpu_ticks(p)).sum();
    let cpu_ms = (after - before) as f64 * 1000.0 / procs::ticks_per_second() as f64;
    let rss_kb: u64 = tree.iter().map(|&p| procs::status_field(p, "VmRSS")).sum();
    let shm = procs::memfd_bytes(pid) + procs::dev_shm_bytes();
    let threads = procs::status_field(pid, "Threads");
    let stop = host.stop();
    println!(
        "scale {n}: start {start:?}, idle CPU {cpu_ms} ms over 5 s, RSS {} MB over {} processes, \
         shm {:.1} MB, {threads} host threads, stop {stop:?}",
        rss_kb / 1024,
        tree.len(),
        shm as f64 / (1 << 20) as f64
    );
    summary(&format!("scale_{n}_start_ms"), start.as_secs_f64() * 1e3);
    summary(&format!("scale_{n}_idle_cpu_ms_5s"), cpu_ms);
    summary(&format!("scale_{n}_rss_mb"), rss_kb as f64 / 1024.0);
    summary(&format!("scale_{n}_shm_mb"), shm as f64 / (1 << 20) as f64);
    summary(&format!("scale_{n}_host_threads"), threads as f64);
    summary(&format!("scale_{n}_stop_ms"), stop.as_secs_f64() * 1e3);
}

/// The busy service's throughput with `n` idle services beside it.
fn busy(plugin: &Path, n: usize, count: u64) -> f64 {
    let config = format!("{}{}", idle_services(n), busy_service(count));
    let started = Instant::now();
    let host = BenchHost::start(
        plugin,
        &["receptor-watcher-gen", "receptor-reactor-tally"],
        &config,
    );
    wait_started(&host, n, started);
    std::fs::write(host.path().join("go"), b"").unwrap();
    let result = host.path().join("result.json");
    let deadline = Instant::now() + Duration::from_secs(180);
    while !result.exists() {
        assert!(
            Instant::now() < deadline,
            "scale: busy service: events lost"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&result).unwrap()).unwrap();
    let count = v["count"].as_f64().unwrap();
    let span = (v["last_ns"].as_f64().unwrap() - v["first_ns"].as_f64().unwrap()) / 1e9;
    (count - 1.0) / span.max(1e-9)
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` / `--list`: nothing to run here.
    }
    let plugin = test_plugin();
    let sizes: &[usize] = if quick() {
        &[10, 100]
    } else {
        &[10, 100, 1000]
    };
    for &n in sizes {
        idle(&plugin, n);
    }
    let count = if quick() { 100_000 } else { 1_000_000 };
    let idle_beside = if quick() { 100 } else { 1000 };
    let mut alone = Vec::new();
    let mut among = Vec::new();
    for _ in 0..3 {
        alone.push(busy(&plugin, 0, count));
        among.push(busy(&plugin, idle_beside, count));
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (alone, among) = (median(&mut alone), median(&mut among));
    println!(
        "busy service: alone {alone:.0} events/s, among {idle_beside} idle ones {among:.0} \
         events/s ({:.2}x)",
        among / alone
    );
    summary("scale_alone_events_per_s", alone);
    summary("scale_busy_events_per_s", among);
    summary("scale_busy_ratio", among / alone);
}
