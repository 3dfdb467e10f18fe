//! `cargo bench --bench etcd`: the `etcd` watcher against a real local etcd (started by
//! the bench on free loopback ports, killed at the end).
//!
//! - sync: 100,000 keys under a prefix; the time from the start of a `receptor run`
//!   host (etcd watcher -> the test plugin's counting reactor) to the last node at the
//!   reactor (`etcd_sync_100k_s`).
//! - watch: a put every 10 ms (100 puts/s) of a new key whose value carries its send
//!   time (`meta.t`, ns since the epoch); the latency from just before the put to the
//!   node's arrival at the reactor process, p50 and p99 (`etcd_watch_p50_us`,
//!   `etcd_watch_p99_us`). The baseline, in the same run and on the same puts: a bare
//!   watch of the same prefix with the same client crate (`receptor-etcd`) in the bench
//!   process (`etcd_bare_watch_p50_us`).
//!
//! Targets (issue 15): Receptor adds at most 100 us to the bare watch's p50, and syncs
//! 100,000 keys in under 2 s. `RECEPTOR_BENCH_QUICK=1` divides the counts by ten.

mod support;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use receptor_etcd::testing::EtcdServer;
use receptor_etcd::{Op, WatchEvent, WatchMessage};
use support::{test_plugin, BenchHost};

const RESULT_WAIT: Duration = Duration::from_secs(120);

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Waits for the counting reactor's result file and reads it.
fn result(path: &Path, what: &str) -> serde_json::Value {
    let deadline = Instant::now() + RESULT_WAIT;
    while !path.exists() {
        // A panic, not an exit: unwinding stops the host and etcd through their guards.
        assert!(
            Instant::now() < deadline,
            "etcd: {what}: no result within {RESULT_WAIT:?}: nodes were lost"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A host running the etcd watcher on `prefix` into the counting reactor.
fn host(etcd: &EtcdServer, plugin: &Path, prefix: &str, expect: u64) -> BenchHost {
    let config = format!(
        r#"
[watchers.etcd]
endpoints = ["{url}"]

[services.bench.watchers.registry]
type = "etcd"
cfg = {{ prefix = "{prefix}" }}

[services.bench.reactors.tally]
type = "tally"
cfg = {{ scenario = "count", expect = {expect}, result = "result.json", file = "count.txt" }}
"#,
        url = etcd.url()
    );
    BenchHost::start(plugin, &["receptor-reactor-tally"], &config)
}

/// Puts `count` keys under `prefix`, 1,000 per transaction.
fn load(etcd: &EtcdServer, prefix: &str, count: u64) {
    let mut client = etcd.client();
    let ops: Vec<Op> = (0..count)
        .map(|i| Op::Put {
            key: format!("{prefix}node-{i:06}").into_bytes(),
            value: format!(
                r#"{{"host":"10.{}.{}.{}","port":{}}}"#,
                i >> 16,
                (i >> 8) & 255,
                i & 255,
                8000 + i % 1000
            )
            .into_bytes(),
            lease: 0,
        })
        .collect();
    for chunk in ops.chunks(1000) {
        client.txn(chunk).expect("load keys into etcd");
    }
}

/// Seconds from the host's start to the last of `count` keys at the reactor.
fn sync(etcd: &EtcdServer, plugin: &Path, count: u64) -> f64 {
    let prefix = "/bench/sync/";
    load(etcd, prefix, count);
    let start = now_ns();
    let host = host(etcd, plugin, prefix, count);
    let v = result(&host.path().join("result.json"), "sync");
    // Where the time went, from the watcher's log line (read_ms: the range read).
    if let Some(line) = host.log().lines().find(|l| l.contains("in sync with etcd")) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
        println!(
            "watcher: {}",
            v["fields"]["message"].as_str().unwrap_or(line)
        );
    }
    (v["last_ns"].as_u64().unwrap() - start) as f64 / 1e9
}

/// The bare client: watches `prefix` and returns the send-to-arrival latencies (us)
/// of the first `count` stamped puts.
fn bare_watch(
    etcd: &EtcdServer,
    prefix: &str,
    count: usize,
    ready: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<f64>> {
    let mut client = etcd.client();
    let prefix = prefix.to_owned();
    std::thread::spawn(move || {
        let mut watch = client.watch(&prefix, 0).expect("the bare watch");
        let mut latencies = Vec::with_capacity(count);
        while latencies.len() < count {
            match watch
                .next(&|| false, &receptor_etcd::WatchWake::new())
                .expect("the bare watch's stream")
            {
                Some(WatchMessage::Created) => ready.store(true, Ordering::SeqCst),
                Some(WatchMessage::Events { events, .. }) => {
                    let now = now_ns();
                    for event in events {
                        if let WatchEvent::Put { value, .. } = event {
                            let v: serde_json::Value = serde_json::from_slice(&value).unwrap();
                            let sent: u64 = v["meta"]["t"].as_str().unwrap().parse().unwrap();
                            latencies.push(now.saturating_sub(sent) as f64 / 1e3);
                        }
                    }
                }
                other => panic!("etcd: the bare watch ended: {other:?}"),
            }
        }
        latencies
    })
}

fn percentile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 * q) as usize).min(v.len() - 1)]
}

/// (Receptor p50, p99, bare p50) in us for `count` puts at 100 per second.
fn watch(etcd: &EtcdServer, plugin: &Path, count: u64) -> (f64, f64, f64) {
    let prefix = "/bench/watch/";
    let host = host(etcd, plugin, prefix, count);
    let ready = Arc::new(AtomicBool::new(false));
    let bare = bare_watch(etcd, prefix, count as usize, ready.clone());
    // The host's watcher is in sync once its log says so; the bare one once created.
    let deadline = Instant::now() + RESULT_WAIT;
    while !(host.log().contains("in sync with etcd") && ready.load(Ordering::SeqCst)) {
        assert!(
            Instant::now() < deadline,
            "etcd: the watchers never started"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut client = etcd.client();
    let start = Instant::now();
    for i in 0..count {
        let due = start + Duration::from_millis(i * 10);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let value = format!(
            r#"{{"host":"127.0.0.1","port":{},"meta":{{"t":"{}"}}}}"#,
            9000 + i % 1000,
            now_ns()
        );
        let key = format!("{prefix}w{i}");
        client.put(key.as_bytes(), value.as_bytes(), 0).unwrap();
    }
    let v = result(&host.path().join("result.json"), "watch");
    let mut bare = bare.join().expect("the bare watch thread");
    (
        v["p50_us"].as_f64().unwrap(),
        v["p99_us"].as_f64().unwrap(),
        percentile(&mut bare, 0.5),
    )
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let quick = std::env::var("RECEPTOR_BENCH_QUICK").is_ok_and(|v| v == "1");
    let scale = if quick { 10 } else { 1 };
    let plugin = test_plugin();
    let etcd = EtcdServer::start();

    let sync_s = sync(&etcd, &plugin, 100_000 / scale);
    let (p50, p99, bare_p50) = watch(&etcd, &plugin, 1_000 / scale);

    println!("summary: etcd_sync_100k_s = {sync_s:.3}");
    println!("summary: etcd_watch_p50_us = {p50:.0}");
    println!("summary: etcd_watch_p99_us = {p99:.0}");
    println!("summary: etcd_bare_watch_p50_us = {bare_p50:.0}");
    println!(
        "receptor adds {:.0} us to the bare watch's p50 (target: at most 100)",
        p50 - bare_p50
    );
}
