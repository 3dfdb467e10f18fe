//! End to end: a real `receptor run` host with real plugin processes (the built-ins and
//! the scenario-driven test plugin installed in `plugin_dir`), real files and loopback
//! HTTP.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{alive, post, shm_entries_of, wait_until, Fixture, WAIT};
use nix::sys::signal::Signal;

/// A restapi watcher on a port the system picks (port 0): the test reads the address
/// from the host's log, so no port is ever guessed free.
fn restapi_config(reactors: &str) -> String {
    format!(
        r#"
shutdown_timeout = "5s"

[watchers.restapi]
listen = "127.0.0.1:0"

[services.web.watchers.api]
type = "restapi"
cfg = {{ service = "web" }}
{reactors}
"#
    )
}

/// POSTs until the host's restapi answers (it is starting), then returns the answer.
fn post_when_up(addr: SocketAddr, body: &str) -> (u16, String) {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(answer) = post(addr, "/service/web", body) {
            if answer.0 != 404 {
                return answer;
            }
        }
        assert!(Instant::now() < deadline, "the restapi never came up");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn node(name: &str, kind: &str, port: u16) -> String {
    format!(r#"{{"name":"{name}","type":"{kind}","host":"127.0.0.1","port":{port}}}"#)
}

#[test]
fn a_post_reaches_the_filelogger_and_a_bad_one_gets_400() {
    let fixture = Fixture::new(&restapi_config(
        r#"
[services.web.reactors.log]
type = "filelogger"
cfg = { filename = "events.log", unbuffered = true }
"#,
    ));
    let host = fixture.start();
    let addr = host.logged_address("listening on http://");
    assert_eq!(
        post_when_up(addr, &node("n1", "nodeup", 9001)),
        (200, "OK".into())
    );
    wait_until("the first line", WAIT, || {
        fixture.lines("events.log").len() == 1
    });
    assert!(fixture.lines("events.log")[0].ends_with(" n1 (up) 127.0.0.1:9001"));

    let (status, body) = post(addr, "/service/web", "{oops").unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("invalid JSON"), "{body}");

    assert_eq!(
        post(addr, "/service/web", &node("n1", "nodedown", 9001))
            .unwrap()
            .0,
        200
    );
    wait_until("the second line", WAIT, || {
        fixture.lines("events.log").len() == 2
    });
    assert!(fixture.lines("events.log")[1].ends_with(" n1 (down) 127.0.0.1:9001"));
}

/// The last status the `record` reactor wrote for each node.
fn final_state(lines: &[String]) -> BTreeMap<String, String> {
    lines
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["name"].as_str().unwrap().to_owned(),
                v["status"].to_string(),
            )
        })
        .collect()
}

#[test]
fn a_stalled_reactor_does_not_delay_the_other_and_catches_up_with_the_final_state() {
    let count = 50_000;
    let fixture = Fixture::new(&format!(
        r#"
shutdown_timeout = "5s"

[services.bulk.watchers.gen]
type = "scripted"
cfg = {{ scenario = "count", count = {count}, prefix = "n" }}

[services.bulk.reactors.fast]
type = "scripted"
cfg = {{ scenario = "record", file = "fast.jsonl" }}

[services.bulk.reactors.slow]
type = "scripted"
cfg = {{ scenario = "stall", file = "slow.jsonl", release = "release" }}
"#
    ));
    fixture.install_test_plugin("watcher", "scripted");
    fixture.install_test_plugin("reactor", "scripted");
    let _host = fixture.start();
    wait_until("the fast reactor to get every event", WAIT * 2, || {
        fixture.lines("fast.jsonl").len() >= count
    });
    let fast = fixture.lines("fast.jsonl");
    assert_eq!(fast.len(), count, "no event lost or repeated");
    assert_eq!(final_state(&fast).len(), count);
    assert!(
        fixture.lines("slow.jsonl").is_empty(),
        "the slow reactor is still stalled"
    );

    std::fs::write(fixture.path().join("release"), b"").unwrap();
    wait_until("the slow reactor to catch up", WAIT * 2, || {
        final_state(&fixture.lines("slow.jsonl")).len() == count
    });
    assert_eq!(
        final_state(&fixture.lines("slow.jsonl")),
        final_state(&fast)
    );
}

#[test]
fn a_third_party_plugin_runs_like_a_built_in_one() {
    let fixture = Fixture::new(
        r#"
[services.web.watchers.list]
type = "scripted"
cfg = { scenario = "emit", events = [
    { name = "a", status = "up", host = "10.0.0.1", port = 1 },
    { name = "b", status = "up", host = "10.0.0.2", port = 2 },
    { name = "a", status = "down", host = "10.0.0.1", port = 1 },
] }

[services.web.reactors.log]
type = "filelogger"
cfg = { filename = "events.log", unbuffered = true }
"#,
    );
    fixture.install_test_plugin("watcher", "scripted");
    let host = fixture.start();
    wait_until("three lines", WAIT, || {
        fixture.lines("events.log").len() == 3
    });
    let lines = fixture.lines("events.log");
    assert!(lines[0].ends_with(" a (up) 10.0.0.1:1"), "{lines:?}");
    assert!(lines[1].ends_with(" b (up) 10.0.0.2:2"), "{lines:?}");
    assert!(lines[2].ends_with(" a (down) 10.0.0.1:1"), "{lines:?}");
    assert!(
        host.log().contains("watcher/scripted"),
        "the plugin's name is in the log"
    );
}

#[test]
fn a_rejected_setup_stops_start_up_with_the_plugins_message() {
    let fixture = Fixture::new(
        r#"
[watchers.scripted]
scenario = "reject-setup"
message = "no way: the global config is wrong"

[services.web.watchers.w]
type = "scripted"
cfg = {}

[services.web.reactors.log]
type = "filelogger"
cfg = { filename = "events.log" }
"#,
    );
    fixture.install_test_plugin("watcher", "scripted");
    let (status, log) = fixture.run_to_end();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("no way: the global config is wrong"), "{log}");
    assert!(log.contains("watcher plugin 'scripted'"), "{log}");
}

#[test]
fn a_rejected_accept_stops_start_up_naming_service_and_instance() {
    let fixture = Fixture::new(
        r#"
[services.web.watchers.w]
type = "scripted"
cfg = { scenario = "reject-accept", message = "port 0 is not a port" }

[services.web.reactors.log]
type = "filelogger"
cfg = { filename = "events.log" }
"#,
    );
    fixture.install_test_plugin("watcher", "scripted");
    let (status, log) = fixture.run_to_end();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("port 0 is not a port"), "{log}");
    assert!(log.contains("service 'web' watcher 'w'"), "{log}");
}

#[test]
fn sigterm_stops_everything_cleanly() {
    let fixture = Fixture::new(
        r#"
shutdown_timeout = "5s"

[services.web.watchers.node1]
type = "dummy"
cfg = { name = "node1", port = 8081, interval = "50ms" }

[services.web.reactors.log]
type = "filelogger"
cfg = { filename = "events.log" }

[services.web.reactors.probe]
type = "filelogger"
cfg = { filename = "probe.log", unbuffered = true }
"#,
    );
    let mut host = fixture.start();
    wait_until("both plugins", WAIT, || host.plugin_pids().len() == 2);
    let pids = host.plugin_pids();
    wait_until("a running pipeline", WAIT, || {
        host.log().contains("receptor running")
    });
    // An event has gone through the host (to both reactors at once): the buffered
    // logger holds it unwritten until it is closed.
    wait_until("an event at the unbuffered logger", WAIT, || {
        !fixture.lines("probe.log").is_empty()
    });
    // The rings are sealed memory files of the host's (nothing of them in /dev/shm).
    let memfds = std::fs::read_dir(format!("/proc/{}/fd", host.pid()))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("/memfd:"))
        .count();
    assert!(
        memfds >= 2,
        "the host made its rings: {memfds} memory files"
    );
    assert_eq!(shm_entries_of(host.pid()), Vec::<String>::new());
    let host_pid = host.pid();
    host.signal(Signal::SIGTERM);
    let status = host.wait(WAIT).expect("the host exits");
    assert_eq!(status.code(), Some(0), "{}", host.log());
    for pid in pids {
        wait_until("the plugin process to be gone", WAIT, || !alive(pid));
    }
    assert_eq!(shm_entries_of(host_pid), Vec::<String>::new());
    let lines = fixture.lines("events.log");
    assert!(
        !lines.is_empty(),
        "the buffered filelogger flushed on close"
    );
}
