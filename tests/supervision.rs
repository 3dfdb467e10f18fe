//! Supervision and faults, end to end: real plugin processes killed, stopped, crashing
//! in a loop or writing garbage, and a host killed under them. Every wait is bounded.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{
    alive, mirror, recorded_state, shm_entries_of, signal_pid, wait_until, Fixture, WAIT,
};
use nix::sys::signal::Signal;

/// Fast restarts, so the tests do not wait on the production backoff.
const FAST: &str = r#"
shutdown_timeout = "5s"

[supervision]
restart_backoff_min = "20ms"
restart_backoff_max = "200ms"
"#;

fn up(names: impl IntoIterator<Item = String>) -> BTreeMap<String, String> {
    names.into_iter().map(|n| (n, "up".to_owned())).collect()
}

fn state_of(fixture: &Fixture, file: &str) -> (BTreeMap<String, String>, usize) {
    recorded_state(&fixture.lines(file))
}

/// A fixture with one service `s`: watcher `w`, the test plugin as type `watcher_type`
/// with `watcher_cfg`, and reactor `r`, the test plugin as type `t` recording (with
/// start marks) into `r.jsonl`. `settings` go first (host and `[supervision]` keys).
fn one_service(settings: &str, watcher_type: &str, watcher_cfg: &str) -> Fixture {
    let fixture = Fixture::new(&format!(
        r#"{settings}
[services.s.watchers.w]
type = "{watcher_type}"
cfg = {watcher_cfg}

[services.s.reactors.r]
type = "t"
cfg = {{ scenario = "record", file = "r.jsonl", mark = true }}
"#
    ));
    fixture.install_test_plugin("watcher", watcher_type);
    fixture.install_test_plugin("reactor", "t");
    fixture
}

const MIRROR: &str = r#"{ scenario = "mirror", file = "source.json" }"#;

#[test]
fn a_watcher_killed_mid_stream_is_restarted_and_the_reactor_ends_with_the_truth() {
    let fixture = one_service(
        FAST,
        "t",
        r#"{ scenario = "count", count = 3000, rate = 1500, prefix = "n" }"#,
    );
    let host = fixture.start();
    let first = host.wait_for_start("watcher/t", 1);
    wait_until("events flowing", WAIT, || {
        fixture.lines("r.jsonl").len() > 300
    });
    signal_pid(first, Signal::SIGKILL);

    let second = host.wait_for_start("watcher/t", 2);
    assert_ne!(first, second);
    let truth = up((0..3000).map(|i| format!("n-{i}")));
    wait_until("the reactor's state to match the truth", WAIT, || {
        state_of(&fixture, "r.jsonl").0 == truth
    });
    assert!(host.log().contains("plugin failed"), "{}", host.log());
    wait_until("the restart logged", WAIT, || {
        host.log().contains("plugin restarted")
    });
    assert_eq!(
        state_of(&fixture, "r.jsonl").1,
        1,
        "the reactor was not restarted"
    );
}

#[test]
fn a_killed_reactor_is_restarted_and_gets_the_full_state_first() {
    let fixture = one_service(FAST, "mirror", MIRROR);
    let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    mirror::publish(fixture.path(), "source.json", &names(&["a", "b", "c"]));
    let host = fixture.start();
    let first = host.wait_for_start("reactor/t", 1);
    mirror::publish(fixture.path(), "source.json", &names(&["a", "c", "d"]));
    wait_until("the first changes", WAIT, || {
        state_of(&fixture, "r.jsonl").0.get("d").map(String::as_str) == Some("up")
    });

    signal_pid(first, Signal::SIGKILL);
    // Changes while the reactor is down are part of the state it gets back.
    mirror::publish(fixture.path(), "source.json", &names(&["a", "d", "e"]));
    host.wait_for_start("reactor/t", 2);
    let after_restart = |fixture: &Fixture| -> Vec<String> {
        let lines = fixture.lines("r.jsonl");
        let second = lines
            .iter()
            .enumerate()
            .filter(|(_, l)| l.contains("\"start\""))
            .nth(1)
            .map(|(i, _)| i);
        second.map_or_else(Vec::new, |i| lines[i + 1..].to_vec())
    };
    wait_until("the full state", WAIT, || {
        after_restart(&fixture).len() >= 3
    });
    let full = recorded_state(&after_restart(&fixture)[..3]).0;
    assert_eq!(
        full,
        up(names(&["a", "d", "e"])),
        "not the full state first"
    );

    mirror::publish(fixture.path(), "source.json", &names(&["a", "e"]));
    wait_until("the live stream after the full state", WAIT, || {
        after_restart(&fixture).len() >= 4
    });
    let live = recorded_state(&after_restart(&fixture)[3..]).0;
    assert_eq!(live, BTreeMap::from([("d".to_owned(), "down".to_owned())]));
}

#[test]
fn a_stopped_plugin_misses_its_pings_and_is_killed_and_restarted() {
    let fixture = one_service(
        r#"
shutdown_timeout = "5s"

[supervision]
ping_interval = "100ms"
ping_timeout = "500ms"
restart_backoff_min = "20ms"
"#,
        "t",
        r#"{ scenario = "emit", events = [{ name = "x", status = "up", host = "h", port = 1 }] }"#,
    );
    let host = fixture.start();
    let first = host.wait_for_start("reactor/t", 1);
    wait_until("the first event", WAIT, || {
        fixture.lines("r.jsonl").len() == 2
    });

    signal_pid(first, Signal::SIGSTOP);
    let second = host.wait_for_start("reactor/t", 2);
    assert_ne!(first, second);
    wait_until("the stopped process to be killed", WAIT, || !alive(first));
    assert!(host.log().contains("no answer to a ping"), "{}", host.log());
    wait_until("the full state in the new reactor", WAIT, || {
        state_of(&fixture, "r.jsonl") == (up(["x".to_owned()]), 2)
    });
}

#[test]
fn a_plugins_own_children_go_with_it_on_restart_and_on_shutdown() {
    let fixture = one_service(
        FAST,
        "t",
        r#"{ scenario = "emit", child_pid_file = "child.pid", events = [{ name = "c", status = "up", host = "h", port = 1 }] }"#,
    );
    let child_of = |fixture: &Fixture| -> Option<u32> {
        std::fs::read_to_string(fixture.path().join("child.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    let mut host = fixture.start();
    let first = host.wait_for_start("watcher/t", 1);
    wait_until("the plugin's child", WAIT, || child_of(&fixture).is_some());
    let first_child = child_of(&fixture).unwrap();
    std::fs::remove_file(fixture.path().join("child.pid")).unwrap();
    assert!(alive(first_child));

    // Only the plugin's main process dies; the restart takes its group down.
    signal_pid(first, Signal::SIGKILL);
    host.wait_for_start("watcher/t", 2);
    wait_until("the first child to go", WAIT, || !alive(first_child));

    wait_until("the new plugin's child", WAIT, || {
        child_of(&fixture).is_some()
    });
    let second_child = child_of(&fixture).unwrap();
    host.signal(Signal::SIGTERM);
    assert_eq!(host.wait(WAIT).and_then(|s| s.code()), Some(0));
    wait_until("the second child to go", WAIT, || !alive(second_child));
}

/// Two services: `a` has a watcher that exits every time it starts; `b` is healthy and
/// mirrors `b.json`.
fn crash_loop_config(on_failure: &str) -> String {
    format!(
        r#"
shutdown_timeout = "5s"

[supervision]
restart_backoff_min = "20ms"
restart_backoff_max = "100ms"
max_restarts = 2

[supervision.watchers.crash]
on_plugin_failure = "{on_failure}"

[services.a.watchers.w]
type = "crash"
cfg = {{ scenario = "exit", after_ms = 200 }}

[services.a.reactors.r]
type = "t"
cfg = {{ scenario = "record", file = "a.jsonl" }}

[services.b.watchers.w]
type = "mirror"
cfg = {{ scenario = "mirror", file = "b.json" }}

[services.b.reactors.r]
type = "t"
cfg = {{ scenario = "record", file = "b.jsonl", mark = true }}
"#
    )
}

fn crash_loop_fixture(on_failure: &str) -> Fixture {
    let fixture = Fixture::new(&crash_loop_config(on_failure));
    fixture.install_test_plugin("watcher", "crash");
    fixture.install_test_plugin("watcher", "mirror");
    fixture.install_test_plugin("reactor", "t");
    mirror::publish(fixture.path(), "b.json", &["b1".to_owned()]);
    fixture
}

#[test]
fn a_crash_looping_plugin_is_failed_and_isolated_while_other_services_run() {
    let fixture = crash_loop_fixture("isolate");
    let mut host = fixture.start();
    wait_until("the plugin to be failed", WAIT, || {
        host.log().contains("plugin failed for good")
    });
    // The first start and max_restarts restarts, no more.
    assert_eq!(host.pids_of("watcher/crash").len(), 3, "{}", host.log());
    assert!(host.log().contains("services a have no watcher/crash"));
    assert!(host.is_running(), "isolate must keep the host running");

    mirror::publish(
        fixture.path(),
        "b.json",
        &["b1".to_owned(), "b2".to_owned()],
    );
    wait_until("service b to carry on", WAIT, || {
        state_of(&fixture, "b.jsonl").0 == up(["b1".to_owned(), "b2".to_owned()])
    });
    assert_eq!(
        host.pids_of("watcher/crash").len(),
        3,
        "restarted after failing"
    );
}

#[test]
fn a_crash_looping_plugin_with_on_failure_shutdown_stops_the_host_with_exit_2() {
    let fixture = crash_loop_fixture("shutdown");
    let mut host = fixture.start();
    let host_pid = host.pid();
    let status = host.wait(WAIT).expect("the host exits");
    assert_eq!(status.code(), Some(2), "{}", host.log());
    let log = host.log();
    assert!(log.contains("plugin failed for good"), "{log}");
    for pid in host.plugin_pids() {
        wait_until("plugins gone", WAIT, || !alive(pid));
    }
    assert_eq!(shm_entries_of(host_pid), Vec::<String>::new());
}

#[test]
fn a_plugin_that_cannot_be_started_again_is_failed_after_its_restarts() {
    let fixture = one_service(
        r#"
shutdown_timeout = "5s"

[supervision]
restart_backoff_min = "20ms"
restart_backoff_max = "50ms"
max_restarts = 2
"#,
        "t",
        r#"{ scenario = "emit", events = [{ name = "x", status = "up", host = "h", port = 1 }] }"#,
    );
    let mut host = fixture.start();
    let first = host.wait_for_start("watcher/t", 1);
    wait_until("the event", WAIT, || fixture.lines("r.jsonl").len() == 2);
    // The executable disappears (a botched upgrade), then the plugin dies.
    std::fs::remove_file(fixture.path().join("plugins/receptor-watcher-t")).unwrap();
    signal_pid(first, Signal::SIGKILL);
    wait_until("the plugin to be failed", WAIT, || {
        host.log().contains("plugin failed for good")
    });
    let log = host.log();
    assert!(log.contains("restart failed"), "{log}");
    assert_eq!(host.pids_of("watcher/t").len(), 1, "no process could start");
    assert!(host.is_running(), "isolate keeps the host up");
    // The reactor is untouched: it still has the watcher's last state.
    assert_eq!(state_of(&fixture, "r.jsonl"), (up(["x".to_owned()]), 1));
}

/// Runs a watcher that misbehaves (`fault_once`) in its first incarnation and reports
/// node `f` in the next; returns, once `f` arrived, the fixture, the host (declared in
/// that order, so the host stops before its directory goes) and the failure's log line.
fn a_faulty_watcher_restarts(fault: &str, message: &str) -> (Fixture, common::Host, String) {
    let fixture = one_service(
        FAST,
        "t",
        &format!(
            r#"{{ scenario = "emit", fault_once = "{fault}", once = "fault.once", message = "{message}", events = [{{ name = "f", status = "up", host = "h", port = 1 }}] }}"#
        ),
    );
    let host = fixture.start();
    host.wait_for_start("watcher/t", 2);
    wait_until("events from the restarted watcher", WAIT, || {
        state_of(&fixture, "r.jsonl").0 == up(["f".to_owned()])
    });
    let failure = host
        .log()
        .lines()
        .find(|l| l.contains("plugin failed"))
        .expect("the failure is logged")
        .to_owned();
    (fixture, host, failure)
}

#[test]
fn garbage_in_a_ring_ends_the_session_and_the_plugin_restarts() {
    let (_fixture, mut host, failure) = a_faulty_watcher_restarts("garbage", "");
    assert!(
        failure.contains("service 's' watcher 'w'") && failure.contains("bad watcher update frame"),
        "the log line names the session and the frame: {failure}"
    );
    let log = host.log();
    assert!(
        !log.contains("panicked") && !log.contains("\"panic: "),
        "{log}"
    );
    assert!(host.is_running());
}

/// An endpoint's error restarts that endpoint in place, not its process (issue 13; the
/// restarts in place have their own tests in `restart_in_place.rs`).
#[test]
fn an_endpoint_that_fails_is_restarted_in_place() {
    let fixture = one_service(
        FAST,
        "t",
        r#"{ scenario = "emit", fault_once = "error", once = "fault.once", message = "lost my registry", events = [{ name = "f", status = "up", host = "h", port = 1 }] }"#,
    );
    let host = fixture.start();
    let pid = host.wait_for_start("watcher/t", 1);
    wait_until("events from the restarted endpoint", WAIT, || {
        state_of(&fixture, "r.jsonl").0 == up(["f".to_owned()])
    });
    wait_until("the failure logged", WAIT, || {
        host.log().contains("restarts it in place")
    });
    let log = host.log();
    let failure = log
        .lines()
        .find(|l| l.contains("restarts it in place"))
        .unwrap();
    assert!(failure.contains("lost my registry"), "{failure}");
    assert_eq!(host.pids_of("watcher/t"), [pid]);
}

#[test]
fn plugins_exit_when_the_host_is_killed_and_the_next_host_sweeps_its_names() {
    const EMIT: &str =
        r#"{ scenario = "emit", events = [{ name = "k", status = "up", host = "h", port = 1 }] }"#;
    let fixture = one_service(FAST, "t", EMIT);
    let mut host = fixture.start();
    let host_pid = host.pid();
    wait_until("the event", WAIT, || fixture.lines("r.jsonl").len() == 2);
    let pids = host.plugin_pids();
    assert_eq!(pids.len(), 2);
    // The rings are sealed memory files: nothing of a live host is in /dev/shm.
    assert_eq!(shm_entries_of(host_pid), Vec::<String>::new());

    host.signal(Signal::SIGKILL);
    host.wait(WAIT).expect("the host dies");
    let killed = Instant::now();
    for pid in &pids {
        // The target is about 1 s; the test waits for the exit, not for a time.
        wait_until("the plugins to exit", WAIT, || !alive(*pid));
    }
    eprintln!("plugins gone {:?} after the host", killed.elapsed());
    // A killed host leaves nothing named behind (the kernel frees its memory files).
    assert_eq!(shm_entries_of(host_pid), Vec::<String>::new());

    // Hosts of older versions named their segments and semaphores: what such a host
    // left when it died (here under the dead host's pid) is swept by the next one.
    let leftovers = [
        format!("/dev/shm/receptor-{host_pid}-0123456789abcdef"),
        format!("/dev/shm/sem.receptor-{host_pid}-0123456789abcdef-data"),
    ];
    for leftover in &leftovers {
        std::fs::write(leftover, b"").unwrap();
    }
    assert_eq!(shm_entries_of(host_pid).len(), 2);
    let next = one_service(FAST, "t", EMIT);
    let _next_host = next.start();
    wait_until("the next host to sweep", WAIT, || {
        shm_entries_of(host_pid).is_empty()
    });
}

#[test]
fn a_panic_in_a_host_actor_restarts_it_and_the_pipeline_carries_on() {
    let fixture = one_service(FAST, "mirror", MIRROR);
    mirror::publish(fixture.path(), "source.json", &["p1".to_owned()]);
    let mut host = fixture.start_with(&["--test-panic-in", "watcher/mirror"]);
    wait_until("the panic to be caught", WAIT, || {
        host.log().contains("panic while handling InjectPanic")
    });
    // The actor's restart replaces the plugin incarnation it held.
    host.wait_for_start("watcher/mirror", 2);
    mirror::publish(
        fixture.path(),
        "source.json",
        &["p1".to_owned(), "p2".to_owned()],
    );
    wait_until("events after the panic", WAIT, || {
        state_of(&fixture, "r.jsonl").0 == up(["p1".to_owned(), "p2".to_owned()])
    });
    assert!(host.is_running());
    // Events can flow a moment before the host logs that the restart is complete.
    wait_until("the restart logged", WAIT, || {
        host.log().contains("plugin restarted")
    });
    assert!(host.log().contains("injected by a test hook"));
}

/// What the host holds at one moment: open files, its own threads (sessions, control
/// readers, log forwarders), the runtime's pool of blocking threads, `/dev/shm` entries,
/// resident memory in KiB.
#[derive(Debug, Clone, Copy)]
struct Holdings {
    fds: usize,
    threads: usize,
    pool_threads: usize,
    shm: usize,
    rss_kib: u64,
}

/// The thread name of tokio's workers and blocking pool (actix's runtime).
const POOL_THREAD: &str = "tokio-rt-worker";

fn holdings(pid: u32) -> Holdings {
    let count = |dir: String| std::fs::read_dir(dir).map_or(0, |d| d.count());
    let names: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|tasks| {
            tasks
                .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
                .map(|n| n.trim().to_owned())
                .collect()
        })
        .unwrap_or_default();
    let pool_threads = names.iter().filter(|n| *n == POOL_THREAD).count();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    Holdings {
        fds: count(format!("/proc/{pid}/fd")),
        threads: names.len() - pool_threads,
        pool_threads,
        shm: shm_entries_of(pid).len(),
        rss_kib,
    }
}

/// The up nodes in a reactor's recorded state.
fn up_nodes(state: &BTreeMap<String, String>) -> Vec<String> {
    state
        .iter()
        .filter(|(_, s)| s.as_str() == "up")
        .map(|(n, _)| n.clone())
        .collect()
}

/// A small deterministic generator, so a failing soak can be replayed.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

#[test]
fn soak_steady_events_while_plugins_are_killed_at_random() {
    let secs: u64 = std::env::var("RECEPTOR_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let fixture = Fixture::new(
        r#"
shutdown_timeout = "5s"

# The production backoff's first step: restarts then land around the sessions' wait
# slice, where a replaced session's late exit once disconnected its successor.
[supervision]
restart_backoff_min = "100ms"
restart_backoff_max = "150ms"
max_restarts = 100000

[services.s.watchers.w]
type = "mirror"
cfg = { scenario = "mirror", file = "source.json" }

[services.s.reactors.r1]
type = "t"
cfg = { scenario = "record", file = "r1.jsonl", mark = true }

[services.s.reactors.r2]
type = "t"
cfg = { scenario = "record", file = "r2.jsonl", mark = true }
"#,
    );
    fixture.install_test_plugin("watcher", "mirror");
    fixture.install_test_plugin("reactor", "t");
    let pool: Vec<String> = (0..64).map(|i| format!("node-{i}")).collect();
    let mut truth: Vec<bool> = (0..pool.len()).map(|i| i % 2 == 0).collect();
    let current = |truth: &[bool]| -> Vec<String> {
        pool.iter()
            .zip(truth)
            .filter(|(_, up)| **up)
            .map(|(n, _)| n.clone())
            .collect()
    };
    mirror::publish(fixture.path(), "source.json", &current(&truth));
    let host = fixture.start();
    let converged = |truth: &[bool]| {
        let mut want = current(truth);
        want.sort();
        ["r1.jsonl", "r2.jsonl"]
            .iter()
            .all(|f| up_nodes(&state_of(&fixture, f).0) == want)
    };
    wait_until("the first state", WAIT, || converged(&truth));
    let before = holdings(host.pid());

    let mut rng = Lcg(0x5eed);
    let end = Instant::now() + Duration::from_secs(secs);
    let mut next_kill = Instant::now() + Duration::from_millis(300);
    let mut kills = BTreeMap::<&str, usize>::new();
    while Instant::now() < end {
        let i = rng.next(pool.len() as u64) as usize;
        truth[i] = !truth[i];
        mirror::publish(fixture.path(), "source.json", &current(&truth));
        if Instant::now() >= next_kill {
            let plugin = ["watcher/mirror", "reactor/t"][rng.next(2) as usize];
            if let Some(pid) = host.pids_of(plugin).last() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(*pid as i32),
                    Signal::SIGKILL,
                );
                *kills.entry(plugin).or_default() += 1;
            }
            next_kill = Instant::now() + Duration::from_millis(300 + rng.next(900));
        }
        std::thread::sleep(Duration::from_millis(25));
    }

    wait_until("every reactor to end with the truth", WAIT, || {
        converged(&truth)
    });
    assert!(
        kills.values().sum::<usize>() >= secs as usize / 2,
        "too few kills: {kills:?}"
    );
    for plugin in ["watcher/mirror", "reactor/t"] {
        assert!(host.pids_of(plugin).len() > 1, "{plugin} never restarted");
    }
    // What the host holds settles back once the last restart is through. The blocking
    // pool keeps the threads it grew to while restarts overlapped (the pings keep them
    // warm): its size follows how many restarts ran at once, not how many there were.
    let mut after = holdings(host.pid());
    let settled = |b: &Holdings, a: &Holdings| {
        a.fds <= b.fds + 2
            && a.threads == b.threads
            && a.pool_threads <= b.pool_threads + 8
            && a.shm == b.shm
            && a.rss_kib <= b.rss_kib + 16 * 1024
    };
    let deadline = Instant::now() + WAIT;
    while !settled(&before, &after) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        after = holdings(host.pid());
    }
    eprintln!("soak: {secs}s, kills {kills:?}, before {before:?}, after {after:?}");
    assert!(
        settled(&before, &after),
        "the host holds more than it did: before {before:?}, after {after:?}"
    );
}
