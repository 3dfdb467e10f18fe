//! A plugin attacking its own ring segment: a real host, the test plugin's
//! `hostile-ring` scenarios. Before the segments were sealed memory files handed over
//! the control socket, `truncate -s 0` on a host's ring in `/dev/shm` killed the host
//! with SIGBUS (exit 135) and left its names behind; until the semaphores moved into
//! the segment (ring layout 2), truncating a ring's named semaphore
//! (`/dev/shm/sem.receptor-<host pid>-*`) did the same.

mod common;

use common::{recorded_state, shm_entries_of, wait_until, Fixture, Host, WAIT};

fn config(attack: &str) -> String {
    format!(
        r#"
shutdown_timeout = "5s"

[services.web.watchers.evil]
type = "scripted"
cfg = {{ scenario = "hostile-ring", attack = "{attack}", file = "attack.txt", once = "once", events = [
    {{ name = "n1", status = "up", host = "10.0.0.1", port = 80 }},
] }}

[services.web.reactors.rec]
type = "scripted"
cfg = {{ scenario = "record", file = "r.jsonl", mark = true }}
"#
    )
}

fn fixture(attack: &str) -> Fixture {
    let fixture = Fixture::new(&config(attack));
    fixture.install_test_plugin("watcher", "scripted");
    fixture.install_test_plugin("reactor", "scripted");
    fixture
}

/// Guards against a plugin crashing the host through its ring (SIGBUS): the plugin
/// cannot change its segment's size (EPERM), the host keeps serving, and nothing of the
/// host has a name in `/dev/shm` for anyone to truncate.
/// After an attack: the watcher's node reached the reactor, the host runs with nothing
/// of it in `/dev/shm`, and it stops cleanly, leaving nothing.
fn host_survived_and_serves(fixture: &Fixture, host: &mut Host, pid: u32) {
    wait_until("the watcher's node at the reactor", WAIT, || {
        recorded_state(&fixture.lines("r.jsonl")).0.get("n1") == Some(&"up".to_owned())
    });
    assert!(host.is_running(), "the host died: {}", host.log());
    let entries = shm_entries_of(pid);
    assert!(
        entries.is_empty(),
        "the host's entries in /dev/shm: {entries:?}"
    );
    host.signal(nix::sys::signal::Signal::SIGTERM);
    let status = host.wait(WAIT).expect("the host stops");
    assert!(status.success(), "{status:?}: {}", host.log());
    assert!(shm_entries_of(pid).is_empty());
}

#[test]
fn a_plugin_cannot_truncate_its_ring_and_the_host_keeps_serving() {
    let fixture = fixture("truncate");
    let mut host = fixture.start();
    let pid = host.pid();
    wait_until("the attack's report", WAIT, || {
        fixture.lines("attack.txt").len() >= 2
    });
    let report = fixture.lines("attack.txt");
    assert!(
        report
            .iter()
            .all(|line| line.contains("Operation not permitted")),
        "{report:?}"
    );
    host_survived_and_serves(&fixture, &mut host, pid);
}

/// Guards against a plugin crashing the host through the wake-up semaphores of its ring
/// (SIGBUS when they were named semaphores in `/dev/shm` and the plugin truncated them):
/// the plugin finds nothing of the host in `/dev/shm` to truncate, events flow, and the
/// host stops cleanly.
#[test]
fn a_plugin_finds_no_semaphore_to_truncate_and_the_host_keeps_serving() {
    let fixture = fixture("truncate-semaphores");
    let mut host = fixture.start();
    let pid = host.pid();
    wait_until("the attack's report", WAIT, || {
        !fixture.lines("attack.txt").is_empty()
    });
    let report = fixture.lines("attack.txt");
    assert_eq!(report, ["nothing to truncate"], "the plugin found entries");
    host_survived_and_serves(&fixture, &mut host, pid);
}

/// Guards against a plugin crashing the host by unmapping its ring: the plugin dies
/// (SIGSEGV), the host restarts it, and the next incarnation's events flow.
#[test]
fn a_plugin_that_unmaps_its_ring_is_restarted_and_the_host_survives() {
    let fixture = fixture("unmap");
    let mut host = fixture.start();
    let pid = host.pid();
    wait_until("the restarted watcher's node at the reactor", WAIT, || {
        recorded_state(&fixture.lines("r.jsonl")).0.get("n1") == Some(&"up".to_owned())
    });
    assert!(fixture.path().join("once").exists(), "the attack ran");
    assert!(
        host.log().contains("plugin restarted"),
        "the first incarnation died and was restarted: {}",
        host.log()
    );
    assert!(host.is_running(), "the host died: {}", host.log());
    host.signal(nix::sys::signal::Signal::SIGTERM);
    let status = host.wait(WAIT).expect("the host stops");
    assert!(status.success(), "{status:?}: {}", host.log());
    assert!(shm_entries_of(pid).is_empty());
}
