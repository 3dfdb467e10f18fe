//! Failures scoped to one endpoint (issue 13), end to end: an endpoint whose `handle`
//! fails is restarted alone inside its running plugin process while the process's other
//! endpoints go on; one that keeps failing gets its process restarted. Real host, real
//! plugin processes; every wait is bounded.

mod common;

use std::collections::BTreeMap;

use common::{mirror, recorded_state, wait_until, Fixture, WAIT};

/// Fast host restarts, so the process-restart test does not wait on the production
/// backoff.
const FAST: &str = r#"
shutdown_timeout = "5s"

[supervision]
restart_backoff_min = "20ms"
restart_backoff_max = "200ms"
"#;

/// A service `s` with watchers `w` (`w_cfg`) and `tick` (a steady neighbour in the same
/// process: both are type `t`), and a reactor `r` (type `t`, `r_cfg`).
fn fixture(w_cfg: &str, r_cfg: &str) -> Fixture {
    let fixture = Fixture::new(&format!(
        r#"{FAST}
[services.s.watchers.w]
type = "t"
cfg = {w_cfg}

[services.s.watchers.tick]
type = "t"
cfg = {{ scenario = "tick", prefix = "tick" }}

[services.s.reactors.r]
type = "t"
cfg = {r_cfg}
"#
    ));
    fixture.install_test_plugin("watcher", "t");
    fixture.install_test_plugin("reactor", "t");
    fixture
}

const RECORD: &str = r#"{ scenario = "record", file = "r.jsonl" }"#;

/// How many distinct tick nodes the reactor has recorded.
fn ticks(fixture: &Fixture) -> usize {
    let lines = fixture.lines("r.jsonl");
    let (state, _) = recorded_state(&lines);
    state.keys().filter(|n| n.starts_with("tick-")).count()
}

fn log_lines_with(host: &common::Host, needle: &str) -> Vec<String> {
    host.log()
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_failing_watcher_endpoint_is_restarted_alone_while_its_neighbour_goes_on() {
    let fixture = fixture(
        r#"{ scenario = "flaky", fail = ["error", "panic"], message = "lost my registry", events = [{ name = "f", status = "up", host = "h", port = 1 }] }"#,
        RECORD,
    );
    let host = fixture.start();
    let pid = host.wait_for_start("watcher/t", 1);
    wait_until("the third incarnation", WAIT, || {
        host.log().contains("incarnation 3")
    });
    // Its neighbour kept sending through both failures and after them.
    let before = ticks(&fixture);
    wait_until("more ticks after the restarts", WAIT, || {
        ticks(&fixture) > before + 5
    });
    let (state, _) = recorded_state(&fixture.lines("r.jsonl"));
    assert_eq!(state.get("f").map(String::as_str), Some("up"));
    assert_eq!(
        host.pids_of("watcher/t"),
        [pid],
        "the process was not restarted"
    );
    assert!(common::alive(pid));

    wait_until("both restarts logged", WAIT, || {
        log_lines_with(&host, "restarts it in place").len() >= 2
    });
    let restarts = log_lines_with(&host, "restarts it in place");
    assert_eq!(restarts.len(), 2, "{restarts:#?}");
    assert!(
        restarts[0].contains("service 's' watcher 'w'")
            && restarts[0].contains("lost my registry (incarnation 1)"),
        "the host names the endpoint and the error: {}",
        restarts[0]
    );
    assert!(
        restarts[1].contains("panicked: lost my registry"),
        "{}",
        restarts[1]
    );
    assert!(!host.log().contains("plugin failed"), "{}", host.log());

    // The endpoint's own log lines name its service and instance.
    let own = log_lines_with(&host, "incarnation 2");
    assert!(
        own.iter()
            .any(|l| l.contains("service=s") && l.contains("instance=w")),
        "{own:#?}"
    );
}

#[test]
fn an_endpoint_that_keeps_failing_gets_its_process_restarted() {
    let fixture = fixture(
        r#"{ scenario = "flaky", fail_always = true, message = "broken for good", events = [] }"#,
        RECORD,
    );
    let host = fixture.start();
    let first = host.wait_for_start("watcher/t", 1);
    let second = host.wait_for_start("watcher/t", 2);
    assert_ne!(first, second);
    let failed = log_lines_with(&host, "plugin failed");
    assert!(
        failed[0].contains("broken for good") && failed[0].contains("not restarted in place again"),
        "{failed:#?}"
    );
    // Four restarts in place before the budget was spent, in the first process.
    let in_place = log_lines_with(&host, "restarts it in place");
    assert!(in_place.len() >= 4, "{in_place:#?}");
}

#[test]
fn a_reactor_restarted_in_place_gets_the_full_state_again() {
    let fixture = Fixture::new(&format!(
        r#"{FAST}
[services.s.watchers.w]
type = "t"
cfg = {{ scenario = "mirror", file = "source.json" }}

[services.s.reactors.r]
type = "t"
cfg = {{ scenario = "flaky", fail = ["error"], message = "disk hiccup", file = "r.jsonl" }}
"#
    ));
    fixture.install_test_plugin("watcher", "t");
    fixture.install_test_plugin("reactor", "t");
    let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    mirror::publish(fixture.path(), "source.json", &names(&["a", "b", "c"]));
    let host = fixture.start();
    let pid = host.wait_for_start("reactor/t", 1);
    let up = |v: &[&str]| -> BTreeMap<String, String> {
        v.iter().map(|n| (n.to_string(), "up".to_owned())).collect()
    };
    // The second incarnation's view (the state resets at each start mark) is the whole
    // state, though the first incarnation had received it already.
    wait_until("the full state in the second incarnation", WAIT, || {
        recorded_state(&fixture.lines("r.jsonl")) == (up(&["a", "b", "c"]), 2)
    });
    mirror::publish(fixture.path(), "source.json", &names(&["a", "c", "d"]));
    wait_until("the live stream after it", WAIT, || {
        let (state, _) = recorded_state(&fixture.lines("r.jsonl"));
        state.get("d").map(String::as_str) == Some("up")
            && state.get("b").map(String::as_str) == Some("down")
    });
    assert_eq!(
        host.pids_of("reactor/t"),
        [pid],
        "the process was not restarted"
    );
    assert!(host.log().contains("disk hiccup"), "{}", host.log());
}
