//! The `etcd` watcher and reactor end to end, against a real etcd (Debian's
//! `etcd-server`, which `scripts/test` installs) started per test on free loopback
//! ports and killed when the test ends. Nothing is mocked.
//!
//! This file: the watcher (`etcd watcher -> filelogger`); `hosts.rs`: the reactor and
//! two hosts sharing one etcd; `support.rs`: what they share.

#[path = "../common/mod.rs"]
mod common;
mod hosts;
mod support;

use std::collections::BTreeMap;
use std::time::Instant;

use common::{signal_pid, wait_until, WAIT};
use nix::sys::signal::Signal;
use receptor_etcd::testing::EtcdServer;
use receptor_etcd::Client;
use support::*;

#[test]
fn keys_put_and_deleted_appear_up_and_down_at_the_filelogger() {
    let etcd = EtcdServer::start();
    let mut client = etcd.client();
    put(&mut client, "before", 9000);
    let fixture = watcher_host(&etcd, "");
    let _host = fixture.start();
    wait_logged(&fixture, "before", "up");
    put(&mut client, "n1", 9001);
    wait_logged(&fixture, "n1", "up");
    delete(&mut client, "n1");
    wait_logged(&fixture, "n1", "down");
    delete(&mut client, "before");
    wait_logged(&fixture, "before", "down");
    // A key further down is not a node.
    client
        .put(format!("{PREFIX}a/b").as_bytes(), &value("h", 1), 0)
        .unwrap();
    put(&mut client, "last", 9002);
    wait_logged(&fixture, "last", "up");
    let lines = fixture.lines("events.log");
    assert!(
        lines[0].ends_with(" before (up) 127.0.0.1:9000"),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.ends_with(" n1 (down) 127.0.0.1:9001")),
        "{lines:?}"
    );
    assert!(!lines.iter().any(|l| l.contains(" a/b ")), "{lines:?}");
}

/// The context switches of the threads of `pid` whose names start with `prefix`.
fn switches(pid: u32, prefix: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let task = task.unwrap().path();
        let name = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
        if !name.starts_with(prefix) {
            continue;
        }
        let status = std::fs::read_to_string(task.join("status")).unwrap_or_default();
        let count = status
            .lines()
            .filter(|l| l.contains("ctxt_switches"))
            .filter_map(|l| l.split_whitespace().last()?.parse::<u64>().ok())
            .sum();
        out.insert(task.display().to_string(), count);
    }
    out
}

/// An idle watcher costs no CPU: in sync with a quiet etcd, its endpoint thread sleeps
/// until etcd speaks or the endpoint closes (it polled every 100 ms before), and a
/// close still ends it at once.
#[test]
fn a_quiet_watcher_does_not_wake_up_and_still_stops_at_once() {
    let etcd = EtcdServer::start();
    let mut client = etcd.client();
    put(&mut client, "n1", 9001);
    let fixture = watcher_host(&etcd, "");
    let mut host = fixture.start();
    wait_logged(&fixture, "n1", "up");
    let pid = *host
        .pids_of("watcher/etcd")
        .first()
        .expect("the etcd watcher's pid");
    std::thread::sleep(std::time::Duration::from_millis(200)); // the last spins end
    let before = switches(pid, "endpoint-");
    assert_eq!(before.len(), 1, "one endpoint thread: {before:?}");
    std::thread::sleep(std::time::Duration::from_secs(1)); // the idle time observed
    assert_eq!(
        switches(pid, "endpoint-"),
        before,
        "the quiet watcher woke up"
    );
    host.signal(Signal::SIGTERM);
    let status = host.wait(WAIT).expect("the host exits");
    assert!(status.success(), "{}", host.log());
    assert!(
        !host.log().contains("killed at the shutdown deadline"),
        "{}",
        host.log()
    );
}

#[test]
fn bad_values_are_skipped_and_logged_and_the_rest_flows() {
    let etcd = EtcdServer::start();
    let mut client = etcd.client();
    client
        .put(format!("{PREFIX}bad-json").as_bytes(), b"{nope", 0)
        .unwrap();
    client
        .put(format!("{PREFIX}port-zero").as_bytes(), &value("h", 0), 0)
        .unwrap();
    put(&mut client, "good1", 9001);
    let fixture = watcher_host(&etcd, "");
    let host = fixture.start();
    wait_logged(&fixture, "good1", "up");
    client
        .put(format!("{PREFIX}no-host").as_bytes(), br#"{"port":1}"#, 0)
        .unwrap();
    put(&mut client, "good2", 9002);
    wait_logged(&fixture, "good2", "up");
    let names: Vec<String> = logged(&fixture).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["good1", "good2"]);
    wait_until("the bad keys in the host log", WAIT, || {
        let log = host.log();
        ["bad-json", "port-zero", "no-host"]
            .iter()
            .all(|k| log.contains(&format!("key '{PREFIX}{k}'")))
    });
}

#[test]
fn etcd_restarted_the_watcher_reconnects_and_loses_or_repeats_nothing() {
    let mut etcd = EtcdServer::start();
    let mut client = etcd.client();
    put(&mut client, "a", 9001);
    put(&mut client, "b", 9002);
    let fixture = watcher_host(&etcd, "");
    let host = fixture.start();
    wait_logged(&fixture, "b", "up");
    wait_logged(&fixture, "a", "up");

    etcd.kill();
    wait_until("the watcher noticing etcd is gone", WAIT, || {
        host.log().contains("reading the prefix again in")
    });
    etcd.restart();
    let mut client = etcd.client();
    delete(&mut client, "a");
    put(&mut client, "c", 9003);
    wait_logged(&fixture, "a", "down");
    wait_logged(&fixture, "c", "up");
    let mut lines = logged(&fixture);
    lines[..2].sort();
    let expect = [("a", "up"), ("b", "up"), ("a", "down"), ("c", "up")];
    let expect: Vec<(String, String)> = expect
        .iter()
        .map(|(n, s)| (n.to_string(), s.to_string()))
        .collect();
    assert_eq!(lines, expect);
}

/// Also a regression test: the watch's read, interrupted by SIGSTOP/SIGCONT, failed
/// with EINTR and took a reconnect instead of going on.
#[test]
fn a_revision_compacted_while_the_watcher_was_stopped_ends_in_etcds_state() {
    let etcd = EtcdServer::start();
    let mut client = etcd.client();
    for i in 0..20 {
        put(&mut client, &format!("n{i}"), 9000 + i);
    }
    // The host must not restart the stopped plugin for missing its pings.
    let fixture = watcher_host(&etcd, "[supervision]\nping_timeout = \"600s\"\n");
    let host = fixture.start();
    wait_until("20 nodes up", WAIT, || logged_state(&fixture).len() == 20);
    let watcher = host.wait_for_start("watcher/etcd", 1);

    signal_pid(watcher, Signal::SIGSTOP);
    // Enough churn that the stopped watcher's connection backs up and etcd has to
    // replay it from history, which the compaction then removes.
    let big = "x".repeat(256 * 1024);
    for round in 0..200u16 {
        let key = format!("{PREFIX}churn{}", round % 50);
        // Fields beyond host, port and meta are ignored.
        let v = format!(
            r#"{{"host":"127.0.0.1","port":{},"pad":"{big}"}}"#,
            round + 1
        );
        client.put(key.as_bytes(), v.as_bytes(), 0).unwrap();
    }
    for i in 0..10 {
        delete(&mut client, &format!("n{i}"));
    }
    for i in 0..50 {
        if i % 2 == 0 {
            delete(&mut client, &format!("churn{i}"));
        }
    }
    let revision = client.range_prefix(PREFIX).unwrap().revision;
    client.compact(revision).unwrap();
    signal_pid(watcher, Signal::SIGCONT);

    let expected: BTreeMap<String, String> = etcd_names(&mut client)
        .into_iter()
        .map(|n| (n, "up".to_owned()))
        .collect();
    assert_eq!(expected.len(), 10 + 25);
    wait_until("the filelogger's state equal to etcd's", WAIT, || {
        let state: BTreeMap<String, String> = logged_state(&fixture)
            .into_iter()
            .filter(|(_, s)| s == "up")
            .collect();
        state == expected
    });
    assert_eq!(
        host.pids_of("watcher/etcd").len(),
        1,
        "the watcher was restarted"
    );
    // When etcd had to replay the stopped watcher's backlog from history, the
    // compaction cancelled its watch and it read the prefix again; when the backlog
    // fitted in the buffers on the way, it simply caught up. Either way it never lost
    // its connection to the signals.
    let log = host.log();
    assert!(!log.contains("Interrupted system call"), "{log}");
    assert!(!log.contains("reading the prefix again in"), "{log}");
}

#[test]
fn a_prefix_of_100_000_keys_goes_over_as_one_full_list() {
    let etcd = EtcdServer::start();
    let mut client = etcd.client();
    let count = 100_000;
    let ops: Vec<receptor_etcd::Op> = (0..count)
        .map(|i| receptor_etcd::Op::Put {
            key: format!("{PREFIX}n{i:06}").into_bytes(),
            value: value("127.0.0.1", 1 + (i % 60_000) as u16),
            lease: 0,
        })
        .collect();
    for chunk in ops.chunks(1000) {
        client.txn(chunk).unwrap();
    }
    let fixture = watcher_host(&etcd, "");
    let host = fixture.start();
    wait_until("100,000 lines", WAIT * 4, || {
        fixture.lines("events.log").len() >= count
    });
    assert_eq!(fixture.lines("events.log").len(), count);
    assert!(host.log().contains("nodes=100000"), "not one full list");
}

#[test]
fn with_auth_on_the_watcher_signs_in_with_username_and_password() {
    let etcd = EtcdServer::start();
    let mut admin = etcd.client();
    let ack = |result: Result<receptor_etcd::proto::Ack, _>| result.unwrap();
    ack(admin.call(
        auth::ROLE_ADD,
        auth::RoleAdd {
            name: "root".into(),
        },
    ));
    let user = auth::UserAdd {
        name: "root".into(),
        password: "s3cret".into(),
    };
    ack(admin.call(auth::USER_ADD, user));
    let grant = auth::UserGrantRole {
        user: "root".into(),
        role: "root".into(),
    };
    ack(admin.call(auth::USER_GRANT_ROLE, grant));
    ack(admin.call(auth::AUTH_ENABLE, auth::Enable {}));
    let mut settings = etcd.settings();
    settings.credentials = Some(("root".into(), "s3cret".into()));
    let mut client = Client::new(settings);
    put(&mut client, "signed", 9001);

    let fixture = watcher_host(&etcd, "");
    let config = std::fs::read_to_string(fixture.path().join("Receptor.toml")).unwrap();
    let config = config.replace(
        "dial_timeout = \"1s\"",
        "dial_timeout = \"1s\"\nusername = \"root\"\npassword = \"s3cret\"",
    );
    std::fs::write(fixture.path().join("Receptor.toml"), config).unwrap();
    let _host = fixture.start();
    wait_logged(&fixture, "signed", "up");
    put(&mut client, "later", 9002);
    wait_logged(&fixture, "later", "up");
    // Without a token etcd refuses: the credentials are what let the watcher in.
    let err = etcd.client().range_prefix(PREFIX).unwrap_err().to_string();
    assert!(err.contains("refused"), "{err}");
}

#[test]
fn a_watch_from_a_compacted_revision_is_cancelled_with_the_compact_revision() {
    let etcd = EtcdServer::start();
    let mut client = etcd.client();
    for i in 0..5 {
        put(&mut client, "k", 9000 + i);
    }
    let revision = client.range_prefix(PREFIX).unwrap().revision;
    client.compact(revision).unwrap();
    let mut watch = client.watch(PREFIX, 2).unwrap();
    let deadline = Instant::now() + WAIT;
    // The watch sleeps until etcd speaks or it is woken: a timer wakes it at the deadline.
    let wake = receptor_etcd::WatchWake::new();
    let timer = wake.clone();
    std::thread::spawn(move || {
        std::thread::sleep(WAIT);
        timer.wake();
    });
    let message = loop {
        match watch.next(&|| Instant::now() > deadline, &wake).unwrap() {
            Some(receptor_etcd::WatchMessage::Created) => continue,
            other => break other,
        }
    };
    assert_eq!(
        message,
        Some(receptor_etcd::WatchMessage::Compacted { revision })
    );
}

/// etcd's user administration, which only this test needs (field numbers from etcd's
/// `rpc.proto`).
mod auth {
    pub const ROLE_ADD: &str = "/etcdserverpb.Auth/RoleAdd";
    pub const USER_ADD: &str = "/etcdserverpb.Auth/UserAdd";
    pub const USER_GRANT_ROLE: &str = "/etcdserverpb.Auth/UserGrantRole";
    pub const AUTH_ENABLE: &str = "/etcdserverpb.Auth/AuthEnable";

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RoleAdd {
        #[prost(string, tag = "1")]
        pub name: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct UserAdd {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub password: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct UserGrantRole {
        #[prost(string, tag = "1")]
        pub user: String,
        #[prost(string, tag = "2")]
        pub role: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Enable {}
}
