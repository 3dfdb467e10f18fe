//! Many services on one host: 300 services start, each delivers an event, the host sits
//! idle without a single wake-up of an endpoint thread, and stops within its
//! `shutdown_timeout`, leaving nothing behind. (The figures belong to `cargo bench
//! --bench scale`; this checks the behaviour.)

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{alive, shm_entries_of, wait_until, Fixture, WAIT};
use nix::sys::signal::Signal;

const SERVICES: usize = 300;

fn config() -> String {
    format!(
        "shutdown_timeout = \"20s\"\n{}",
        common::services::idle_services(SERVICES, "1h")
    )
}

/// `pid` and its children (the host's plugin processes), whichever thread started them.
fn with_children(pid: u32) -> Vec<u32> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    let children = tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("children")).ok())
        .collect::<String>();
    std::iter::once(pid)
        .chain(children.split_whitespace().filter_map(|c| c.parse().ok()))
        .collect()
}

/// How many memory files (rings) process `pid` holds open.
fn memfds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("/memfd:"))
        .count()
}

/// The context switches of every thread of `pids` whose name starts with one of
/// `prefixes`, by (pid, tid, name): a thread that slept through stays the same.
fn switches(pids: &[u32], prefixes: &[&str]) -> BTreeMap<(u32, String, String), u64> {
    let mut out = BTreeMap::new();
    for &pid in pids {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for task in tasks.filter_map(|t| t.ok()) {
            let tid = task.file_name().to_string_lossy().into_owned();
            let name = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            let name = name.trim().to_owned();
            if !prefixes.iter().any(|p| name.starts_with(p)) {
                continue;
            }
            let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
            let count: u64 = status
                .lines()
                .filter(|l| l.contains("ctxt_switches"))
                .filter_map(|l| l.split_whitespace().last()?.parse::<u64>().ok())
                .sum();
            out.insert((pid, tid, name), count);
        }
    }
    out
}

#[test]
fn three_hundred_services_start_deliver_sit_idle_and_stop_in_time() {
    let fixture = Fixture::new(&config());
    let mut host = fixture.start();
    let delivered = |fixture: &Fixture| {
        (0..SERVICES)
            .filter(|i| {
                fixture
                    .lines(&format!("logs/s{i}.log"))
                    .iter()
                    .any(|l| l.contains(&format!("n{i}")))
            })
            .count()
    };
    wait_until("every service's first event", WAIT * 4, || {
        delivered(&fixture) == SERVICES
    });

    // Idle: the endpoint threads (the host's sessions, the plugins' endpoints) sleep
    // until there is work; not one of them wakes while nothing happens. (The last
    // event's threads get a moment to finish their spin and fall asleep first.)
    std::thread::sleep(Duration::from_millis(200));
    let pids = with_children(host.pid());
    assert_eq!(
        pids.len(),
        3,
        "the host and its two plugin processes: {pids:?}"
    );
    let prefixes = ["watcher-", "reactor-", "endpoint-"];
    let before = switches(&pids, &prefixes);
    assert!(
        before.len() >= 4 * SERVICES,
        "a session thread in the host and an endpoint thread in a plugin per endpoint: {}",
        before.len()
    );
    std::thread::sleep(Duration::from_secs(2)); // the idle time observed, not a wait for an event
    let after = switches(&pids, &prefixes);
    let woke: Vec<_> = before
        .iter()
        .filter(|(key, count)| after.get(*key).is_some_and(|now| now != *count))
        .map(|((pid, tid, name), _)| format!("{name} ({pid}/{tid})"))
        .collect();
    assert!(woke.is_empty(), "idle threads woke up: {woke:?}");

    // Every ring is a memory file the host holds, none a name in /dev/shm.
    assert_eq!(memfds(host.pid()), 2 * SERVICES, "a ring per endpoint");
    assert!(shm_entries_of(host.pid()).is_empty(), "rings in /dev/shm");
    host.signal(Signal::SIGTERM);
    let status = host
        .wait(Duration::from_secs(25))
        .expect("exit within shutdown_timeout");
    assert!(status.success(), "{status:?}\n{}", host.log());
    for pid in &pids[1..] {
        wait_until("the plugins to be gone", WAIT, || !alive(*pid));
    }
    let log = host.log();
    assert!(
        log.contains("receptor stopped") && !log.contains("killed at the shutdown deadline"),
        "a plugin had to be killed at shutdown:\n{log}"
    );
}
