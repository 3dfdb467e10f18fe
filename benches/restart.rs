//! `cargo bench --bench restart`: how long a service goes without events when a plugin
//! dies, from the SIGKILL to the first event through the restarted plugin.
//!
//! A `receptor run` host with the test plugin as a watcher that mirrors a file (as a
//! registry watcher would: it sends the file's node list whenever it changes, and once
//! at every start) and as a reactor that records what arrives. Each round kills the
//! watcher or the reactor process, changes the file at once, and times the change's
//! arrival in the reactor's record. The production backoff applies (its first step is
//! `restart_backoff_min`, 100 ms, with ±20% jitter); `restart_window` is shortened to
//! 1 s so that every round, a second and more after the last, is a *first* restart.
//!
//! The baseline, in the same run: the same change's trip with nothing killed (the
//! watcher polls its file every 20 ms, which both figures include).
//!
//! `RECEPTOR_BENCH_QUICK=1` runs two rounds per plugin instead of eight.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::{host_log, mirror, test_plugin, BenchHost};

const WAIT: Duration = Duration::from_secs(30);

/// Waits until `file` contains `needle`; returns when it was seen.
fn seen(file: &Path, needle: &str) -> Instant {
    let deadline = Instant::now() + WAIT;
    loop {
        if std::fs::read_to_string(file).is_ok_and(|t| t.contains(needle)) {
            return Instant::now();
        }
        if Instant::now() > deadline {
            // A panic, not an exit: unwinding stops the host through its guard.
            panic!("restart: {needle} never reached the reactor within {WAIT:?}");
        }
        std::thread::sleep(Duration::from_micros(500));
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let quick = std::env::var("RECEPTOR_BENCH_QUICK").is_ok_and(|v| v == "1");
    let rounds = if quick { 2 } else { 8 };
    let host = BenchHost::start(
        &test_plugin(),
        &["receptor-watcher-mirror", "receptor-reactor-record"],
        r#"
[supervision]
restart_window = "1s"

[services.bench.watchers.w]
type = "mirror"
cfg = { scenario = "mirror", file = "source.json" }

[services.bench.reactors.r]
type = "record"
cfg = { scenario = "record", file = "record.jsonl" }
"#,
    );
    let dir = host.path();
    let mut names = vec!["start".to_owned()];
    mirror::publish(dir, "source.json", &names);
    let record = dir.join("record.jsonl");
    seen(&record, "\"start\"");

    let mut flow = Vec::new();
    let mut restart = [Vec::new(), Vec::new()];
    let targets = ["watcher/mirror", "reactor/record"];
    for round in 0..rounds {
        for (t, target) in targets.iter().enumerate() {
            // Past restart_window since the last restart: the next one is a first one.
            std::thread::sleep(Duration::from_millis(1200));

            let flowing = format!("flow-{round}-{t}");
            names.push(flowing.clone());
            let sent = Instant::now();
            mirror::publish(dir, "source.json", &names);
            flow.push(ms(seen(&record, &format!("\"{flowing}\"")) - sent));

            let pids = host_log::pids_of(&host.log(), target);
            let pid = *pids.last().expect("the plugin's pid in the log");
            let after = format!("after-{round}-{t}");
            names.push(after.clone());
            let killed = Instant::now();
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            )
            .expect("kill the plugin");
            mirror::publish(dir, "source.json", &names);
            restart[t].push(ms(seen(&record, &format!("\"{after}\"")) - killed));
        }
    }

    let all: Vec<f64> = restart.iter().flatten().copied().collect();
    let max = all.iter().copied().fold(0.0, f64::max);
    let flow_p50 = median(flow);
    let watcher_p50 = median(restart[0].clone());
    let reactor_p50 = median(restart[1].clone());
    println!("summary: restart_first_watcher_ms_p50 = {watcher_p50:.1}");
    println!("summary: restart_first_reactor_ms_p50 = {reactor_p50:.1}");
    println!("summary: restart_first_ms_max = {max:.1}");
    println!("summary: event_flow_ms_p50 = {flow_p50:.1}");
    println!(
        "ratio: restart_first p50 / event_flow p50 = {:.1}",
        median(all) / flow_p50
    );
    println!("note: target restart_first_ms_max < 200 (restart_backoff_min 100 ms included)");
}
