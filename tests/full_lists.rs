//! Full lists of any size and node checks, end to end: a real watcher process sends
//! lists larger than a ring record through the host to a real reactor process.

mod common;

use std::collections::BTreeMap;

use common::{mirror, recorded_state, wait_until, Fixture, WAIT};

/// Node names as a registry of a large fleet has them.
fn names(range: impl Iterator<Item = u32>) -> Vec<String> {
    range
        .map(|i| format!("node-{i:06}.web.example.internal"))
        .collect()
}

/// Regression: `send_full` with 20,000 nodes (a 940 KB record) closed the watcher's
/// stream ("record of 940004 bytes is larger than the ring's limit") and the plugin was
/// restarted into the same wall. Now the list goes over in pieces; then a list with
/// every second node removed takes exactly those nodes down, once each.
#[test]
fn a_full_list_of_20000_nodes_goes_through_and_a_smaller_one_takes_exactly_the_rest_down() {
    const N: u32 = 20_000;
    let fixture = Fixture::new(
        r#"
[services.s.watchers.w]
type = "mirror"
cfg = { scenario = "mirror", file = "source.json" }

[services.s.reactors.r]
type = "t"
cfg = { scenario = "record", file = "r.jsonl", mark = true }
"#,
    );
    fixture.install_test_plugin("watcher", "mirror");
    fixture.install_test_plugin("reactor", "t");
    mirror::publish(fixture.path(), "source.json", &names(0..N));
    let host = fixture.start();
    wait_until("20,000 nodes up at the reactor", WAIT, || {
        fixture.lines("r.jsonl").len() > N as usize
    });
    mirror::publish(fixture.path(), "source.json", &names((0..N).step_by(2)));
    let expected_lines = 1 + N as usize + N as usize / 2;
    wait_until("10,000 nodes down at the reactor", WAIT, || {
        fixture.lines("r.jsonl").len() >= expected_lines
    });
    let lines = fixture.lines("r.jsonl");
    assert_eq!(lines.len(), expected_lines, "nothing else was reported");
    let mut downs: BTreeMap<String, usize> = BTreeMap::new();
    for line in &lines[1 + N as usize..] {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(
            v["status"].as_str().unwrap().to_lowercase(),
            "down",
            "{line}"
        );
        *downs
            .entry(v["name"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    let odd: Vec<String> = names((1..N).step_by(2));
    assert_eq!(downs.keys().cloned().collect::<Vec<_>>(), odd);
    assert!(downs.values().all(|&n| n == 1), "each reported down once");
    let (state, starts) = recorded_state(&lines);
    assert_eq!(starts, 1, "the reactor was never restarted");
    assert_eq!(
        state.values().filter(|s| *s == "up").count(),
        N as usize / 2
    );
    let log = host.log();
    assert!(!log.contains("plugin failed"), "{log}");
}
