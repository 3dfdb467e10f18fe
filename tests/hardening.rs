//! The host against plugins that misbehave around their life cycle (issue 12): hung at
//! shutdown, slow at start-up, dead before their handshake, leaving a process behind,
//! flooding their output, burying the host in notices. Real host, real plugin
//! processes; every wait is bounded, and every test leaves no process and no
//! `/dev/shm` entry behind.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{alive, shm_entries_of, signal_pid, wait_until, Fixture, WAIT};
use nix::sys::signal::Signal;

/// A reactor of type `t` recording into `r.jsonl`, for services that need one.
const RECORDER: &str = r#"
[services.s.reactors.r]
type = "t"
cfg = { scenario = "record", file = "r.jsonl" }
"#;

/// Whether process `pid` is stopped (SIGSTOP).
fn stopped(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('T'))
    })
}

/// The peak resident memory of process `pid`, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmHWM line")
}

/// Kills the process whose pid is in `file` when dropped (a test's leftover, even when
/// the test fails).
struct KillOnDrop(PathBuf);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = std::fs::read_to_string(&self.0)
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok())
        {
            if alive(pid) {
                signal_pid(pid, Signal::SIGKILL);
            }
        }
    }
}

/// Guards issue 12's shutdown deadline: closes went to one endpoint after another with
/// 30 s each, so a hung plugin with three endpoints held the host for 90 s.
#[test]
fn a_hung_plugin_with_three_endpoints_holds_the_shutdown_no_longer_than_its_timeout() {
    let hung = r#"{ scenario = "hang-after-start" }"#;
    let fixture = Fixture::new(&format!(
        r#"
shutdown_timeout = "1s"

[supervision]
ping_timeout = "60s"

[services.s.watchers.w1]
type = "hang"
cfg = {hung}

[services.s.watchers.w2]
type = "hang"
cfg = {hung}

[services.s.watchers.w3]
type = "hang"
cfg = {hung}
{RECORDER}"#
    ));
    fixture.install_test_plugin("watcher", "hang");
    fixture.install_test_plugin("reactor", "t");
    let mut host = fixture.start();
    let host_pid = host.pid();
    let plugin = host.wait_for_start("watcher/hang", 1);
    wait_until("a running pipeline", WAIT, || {
        host.log().contains("receptor running")
    });
    wait_until("the plugin to hang", WAIT, || stopped(plugin));

    host.signal(Signal::SIGTERM);
    let asked = Instant::now();
    let status = host.wait(WAIT).expect("the host exits");
    let took = asked.elapsed();
    let log = host.log();
    assert_eq!(status.code(), Some(0), "a requested stop succeeds: {log}");
    // The deadline is 1 s; the bound only tells the fix from the 90 s of the bug.
    assert!(
        took < Duration::from_secs(15),
        "shutdown took {took:?}: {log}"
    );
    assert!(
        log.contains("plugin watcher/hang had not stopped by its deadline"),
        "the straggler is named: {log}"
    );
    assert!(
        log.contains("killed at the shutdown deadline (1s): watcher/hang"),
        "{log}"
    );
    wait_until("the hung plugin to be gone", WAIT, || !alive(plugin));
    for pid in host.plugin_pids() {
        assert!(!alive(pid), "plugin {pid} outlived the host");
    }
    assert_eq!(shm_entries_of(host_pid), Vec::<String>::new());
}

/// Guards start-up against signals: the host listened for them only once every plugin
/// had answered `Setup` and `Accept`.
#[test]
fn a_signal_during_start_up_stops_the_start_at_once_and_leaves_nothing_behind() {
    let fixture = Fixture::new(&format!(
        r#"
[watchers.slow]
scenario = "slow-setup"
file = "in-setup"

[services.s.watchers.w]
type = "slow"
cfg = {{ scenario = "emit" }}
{RECORDER}"#
    ));
    fixture.install_test_plugin("watcher", "slow");
    fixture.install_test_plugin("reactor", "t");
    let mut host = fixture.start();
    let host_pid = host.pid();
    wait_until("the plugin inside Setup", WAIT, || {
        fixture.path().join("in-setup").exists()
    });
    let pids = host.plugin_pids();
    assert!(!pids.is_empty());

    host.signal(Signal::SIGTERM);
    let status = host.wait(WAIT).expect("the host exits");
    let log = host.log();
    assert_eq!(status.code(), Some(1), "as for a failed start: {log}");
    assert!(log.contains("start-up interrupted by SIGTERM"), "{log}");
    for pid in pids {
        wait_until("the plugins to be gone", WAIT, || !alive(pid));
    }
    assert_eq!(shm_entries_of(host_pid), Vec::<String>::new());
}

/// Guards the report of a plugin that dies before its handshake: it read
/// `truncated frame: 0 of 44 bytes`.
#[test]
fn a_plugin_that_exits_before_its_handshake_is_reported_with_its_status_and_last_lines() {
    let fixture = Fixture::new(&format!(
        r#"
[services.s.watchers.w]
type = "early-exit"
{RECORDER}"#
    ));
    fixture.install_test_plugin("watcher", "early-exit");
    fixture.install_test_plugin("reactor", "t");
    let (status, log) = fixture.run_to_end();
    assert_eq!(status.code(), Some(1), "{log}");
    // The error goes to stderr as text, after the JSON log, the plugin's lines below it.
    let at = log
        .find("exited before its handshake")
        .unwrap_or_else(|| panic!("no report of the early exit: {log}"));
    let report = &log[at..];
    assert!(report.contains("(exit status: 7)"), "{report}");
    assert!(!report.contains("truncated frame"), "{report}");
    let quoted: Vec<&str> = report
        .lines()
        .skip(1)
        .map(str::trim)
        .filter(|l| l.starts_with("early line"))
        .collect();
    let last_ten: Vec<String> = (3..=12).map(|i| format!("early line {i}")).collect();
    assert_eq!(quoted, last_ten, "{report}");
}

/// Guards the host's exit against a plugin's leftovers: dropping a plugin's handle
/// joined its log readers, which a process outside the group kept blocked for ever.
#[test]
fn a_process_that_left_the_plugins_group_with_its_stderr_does_not_hang_the_host() {
    let fixture = Fixture::new(&format!(
        r#"
shutdown_timeout = "2s"

[services.s.watchers.w]
type = "leaver"
cfg = {{ scenario = "setsid-child", child_pid_file = "leaver.pid" }}
{RECORDER}"#
    ));
    fixture.install_test_plugin("watcher", "leaver");
    fixture.install_test_plugin("reactor", "t");
    let pid_file = fixture.path().join("leaver.pid");
    let _leftover = KillOnDrop(pid_file.clone());
    let mut host = fixture.start();
    wait_until("the process that left", WAIT, || {
        std::fs::read_to_string(&pid_file).is_ok_and(|p| !p.is_empty())
    });
    wait_until("a running pipeline", WAIT, || {
        host.log().contains("receptor running")
    });

    host.signal(Signal::SIGTERM);
    let status = host.wait(WAIT).expect("the host exits");
    let log = host.log();
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(log.contains("not waiting for it"), "{log}");
}

/// Guards the host's memory against a plugin's output: a line was read whole,
/// however long.
#[test]
fn two_hundred_megabytes_without_a_newline_are_cut_and_cost_the_host_one_bounded_line() {
    const FLOOD: u64 = 200 << 20;
    let fixture = Fixture::new(&format!(
        r#"
[services.s.watchers.w]
type = "flood"
cfg = {{ scenario = "flood", count = {FLOOD} }}
{RECORDER}"#
    ));
    fixture.install_test_plugin("watcher", "flood");
    fixture.install_test_plugin("reactor", "t");
    let host = fixture.start();
    wait_until("the line after the flood", WAIT, || {
        host.log().contains("after the flood")
    });
    let peak = peak_rss_kib(host.pid());
    eprintln!("the host's peak RSS: {peak} KiB");
    let log = host.log();
    assert!(
        log.contains("[line cut at 65536 bytes]"),
        "the cut is marked"
    );
    assert!(
        log.len() < 1 << 20,
        "the log holds the cut line, not the flood: {} bytes",
        log.len()
    );
    // The flood alone is 200 MiB; the host's own needs stay far below the bound.
    assert!(peak < 128 * 1024, "the host's peak RSS is {peak} KiB");
}

/// Guards the control connection's notices: the reader gave up when the actor's
/// mailbox (16) was full, and a `Finished` with an error after a burst was lost.
#[test]
fn a_burst_of_notices_is_acted_on_to_the_last() {
    let fixture = Fixture::new(&format!(
        r#"
[supervision]
restart_backoff_min = "20ms"
restart_backoff_max = "200ms"

[services.s.watchers.w]
type = "burst"
{RECORDER}"#
    ));
    fixture.install_test_plugin("watcher", "burst");
    fixture.install_test_plugin("reactor", "t");
    let host = fixture.start();
    wait_until("the error after the burst", WAIT, || {
        host.log().contains("ended with an error: burst over")
    });
    let log = host.log();
    for i in 1..=500 {
        let notice = format!("burst notice {i:04} of 0500");
        assert!(log.contains(&notice), "{notice} is missing");
    }
    wait_until("the plugin restarted", WAIT, || {
        host.pids_of("watcher/burst").len() >= 2
    });
}

/// Review finding: a signal while a plugin has not said hello yet waited out the whole
/// handshake timeout (10 s) before the start was called off; the boot now cuts the
/// handshake at once. (The bound is generous against the 10 s of the bug.)
#[test]
fn a_signal_while_a_plugin_has_not_said_hello_stops_the_start_at_once() {
    let fixture = Fixture::new(&format!(
        r#"
[services.s.watchers.w]
type = "mute"
{RECORDER}"#
    ));
    let script = fixture.path().join("plugins").join("receptor-watcher-mute");
    let pid_file = fixture.path().join("mute.pid");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho $$ > {}\nexec sleep 60\n",
            pid_file.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    fixture.install_test_plugin("reactor", "t");
    let _leftover = KillOnDrop(pid_file.clone());
    let mut host = fixture.start();
    wait_until("the mute plugin", WAIT, || {
        std::fs::read_to_string(&pid_file).is_ok_and(|p| !p.trim().is_empty())
    });
    host.signal(Signal::SIGTERM);
    let asked = Instant::now();
    let status = host.wait(WAIT).expect("the host exits");
    let took = asked.elapsed();
    let log = host.log();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        took < Duration::from_secs(8),
        "the start took {took:?} to call off: {log}"
    );
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    wait_until("the mute plugin gone", WAIT, || !common::alive(pid));
}

/// Review finding: the start-up signal test only interrupted `Setup`, before any ring
/// existed. Interrupted inside `Accept`, with the instance's ring made: nothing of it
/// is left behind either.
#[test]
fn a_signal_during_accept_leaves_no_ring_behind() {
    let fixture = Fixture::new(&format!(
        r#"
[services.s.watchers.w]
type = "slow"
cfg = {{ scenario = "slow-accept", file = "in-accept" }}
{RECORDER}"#
    ));
    fixture.install_test_plugin("watcher", "slow");
    fixture.install_test_plugin("reactor", "t");
    let mut host = fixture.start();
    let host_pid = host.pid();
    wait_until("the plugin inside Accept", WAIT, || {
        fixture.path().join("in-accept").exists()
    });
    let pids = host.plugin_pids();
    host.signal(Signal::SIGINT);
    let status = host.wait(WAIT).expect("the host exits");
    let log = host.log();
    assert_eq!(status.code(), Some(1), "as for a failed start: {log}");
    assert!(log.contains("start-up interrupted by SIGINT"), "{log}");
    for pid in pids {
        wait_until("the plugins to be gone", WAIT, || !alive(pid));
    }
    assert_eq!(shm_entries_of(host_pid), Vec::<String>::new());
}
