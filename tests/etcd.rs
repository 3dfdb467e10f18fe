//! The `etcd` watcher and reactor end to end, against a real etcd (Debian's
//! `etcd-server`, which `scripts/test` installs) started per test on free loopback
//! ports and killed when the test ends. Nothing is mocked.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{alive, post, signal_pid, wait_until, Fixture, Host, WAIT};
use nix::sys::signal::Signal;
use receptor_etcd::testing::EtcdServer;
use receptor_etcd::Client;

const PREFIX: &str = "/receptor/web/";

/// A host running `etcd watcher -> filelogger` on `PREFIX`.
fn watcher_host(etcd: &EtcdServer, extra: &str) -> Fixture {
    Fixture::new(&format!(
        r#"
shutdown_timeout = "5s"
{extra}
[watchers.etcd]
endpoints = ["{url}"]
dial_timeout = "1s"

[services.web.watchers.registry]
type = "etcd"
cfg = {{ prefix = "{PREFIX}" }}

[services.web.reactors.log]
type = "filelogger"
cfg = {{ filename = "events.log", unbuffered = true }}
"#,
        url = etcd.url()
    ))
}

/// A host running `restapi -> etcd reactor` on `PREFIX` with lease `ttl`.
fn registering_host(etcd: &EtcdServer, port: u16, ttl: &str) -> Fixture {
    Fixture::new(&format!(
        r#"
shutdown_timeout = "5s"

[watchers.restapi]
listen = "127.0.0.1:{port}"

[reactors.etcd]
endpoints = ["{url}"]
dial_timeout = "1s"
ttl = "{ttl}"

[services.web.watchers.api]
type = "restapi"
cfg = {{ service = "web" }}

[services.web.reactors.registry]
type = "etcd"
cfg = {{ prefix = "{PREFIX}" }}
"#,
        url = etcd.url()
    ))
}

fn value(host: &str, port: u16) -> Vec<u8> {
    format!(r#"{{"host":"{host}","port":{port}}}"#).into_bytes()
}

fn put(client: &mut Client, name: &str, port: u16) {
    let key = format!("{PREFIX}{name}");
    client
        .put(key.as_bytes(), &value("127.0.0.1", port), 0)
        .unwrap();
}

fn delete(client: &mut Client, name: &str) {
    client.delete(format!("{PREFIX}{name}").as_bytes()).unwrap();
}

/// The filelogger's lines as `(name, "up"/"down")`.
fn logged(fixture: &Fixture) -> Vec<(String, String)> {
    fixture
        .lines("events.log")
        .iter()
        .map(|line| {
            let mut words = line.split_whitespace().skip(1);
            let name = words.next().unwrap_or_default().to_owned();
            let status = words.next().unwrap_or_default().trim_matches(['(', ')']);
            (name, status.to_owned())
        })
        .collect()
}

/// The last status the filelogger wrote per node.
fn logged_state(fixture: &Fixture) -> BTreeMap<String, String> {
    logged(fixture).into_iter().collect()
}

/// The node names under `PREFIX` in etcd.
fn etcd_names(client: &mut Client) -> Vec<String> {
    let snapshot = client.range_prefix(PREFIX).unwrap();
    snapshot
        .kvs
        .iter()
        .map(|(k, _)| String::from_utf8_lossy(&k[PREFIX.len()..]).into_owned())
        .collect()
}

fn wait_logged(fixture: &Fixture, name: &str, status: &str) {
    wait_until(&format!("{name} ({status}) in the log"), WAIT, || {
        logged_state(fixture).get(name).map(String::as_str) == Some(status)
    });
}

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
fn a_revision_compacted_while_the_watcher_was_stopped_resyncs_to_etcds_state() {
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
    assert!(
        host.log().contains("was compacted"),
        "no resync after the compaction: {}",
        host.log()
    );
}

/// Host A registers what its restapi hears; host B watches etcd.
struct TwoHosts {
    etcd: EtcdServer,
    a: Fixture,
    host_a: Host,
    b: Fixture,
    _host_b: Host,
}

fn two_hosts(ttl: &str) -> TwoHosts {
    let etcd = EtcdServer::start();
    let port = common::free_port();
    let a = registering_host(&etcd, port, ttl);
    let host_a = a.start();
    let b = watcher_host(&etcd, "");
    let host_b = b.start();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let body = r#"{"name":"web1","type":"nodeup","host":"10.0.0.1","port":8080}"#;
    wait_until("host A's restapi taking the node", WAIT, || {
        post(addr, "/service/web", body).is_some_and(|(status, _)| status == 200)
    });
    wait_logged(&b, "web1", "up");
    assert!(b.lines("events.log")[0].ends_with(" web1 (up) 10.0.0.1:8080"));
    TwoHosts {
        etcd,
        a,
        host_a,
        b,
        _host_b: host_b,
    }
}

#[test]
fn two_hosts_a_node_posted_to_a_shows_up_at_b_and_goes_when_a_stops() {
    // A TTL far longer than the wait below: only the revoke can remove the node.
    let mut t = two_hosts("60s");
    let mut client = t.etcd.client();
    assert_eq!(etcd_names(&mut client), ["web1"]);
    let stopped = Instant::now();
    t.host_a.signal(Signal::SIGTERM);
    wait_logged(&t.b, "web1", "down");
    assert!(
        stopped.elapsed() < Duration::from_secs(20),
        "down after {:?}: not revoked at once",
        stopped.elapsed()
    );
    assert_eq!(t.host_a.wait(WAIT).and_then(|s| s.code()), Some(0));
    assert!(etcd_names(&mut client).is_empty());
}

#[test]
fn two_hosts_a_killed_its_nodes_leave_b_when_the_lease_expires() {
    let mut t = two_hosts("2s");
    // Kill the reactor first, so nothing of A can revoke its lease, then the rest.
    let reactor = t.host_a.wait_for_start("reactor/etcd", 1);
    let plugins = t.host_a.plugin_pids();
    let killed_pid = t.host_a.pid();
    signal_pid(reactor, Signal::SIGKILL);
    let killed = Instant::now();
    t.host_a.signal(Signal::SIGKILL);
    for pid in plugins {
        if alive(pid) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
    }
    t.host_a.wait(WAIT);
    wait_logged(&t.b, "web1", "down");
    // The TTL plus a second, and a generous margin for a loaded machine.
    assert!(
        killed.elapsed() < Duration::from_secs(2 + 1 + 5),
        "down only after {:?}",
        killed.elapsed()
    );
    // The next host on the machine sweeps the killed one's shared memory.
    let _next = t.a.start();
    wait_until("the next host to sweep", WAIT, || {
        common::shm_entries_of(killed_pid).is_empty()
    });
}

#[test]
fn a_lost_lease_is_granted_again_and_every_node_put_again() {
    let t = two_hosts("2s");
    let mut client = t.etcd.client();
    // Revoke every lease behind the reactor's back: its keys go, as when etcd lost it.
    let leases = client
        .call("/v3/lease/leases", &serde_json::json!({}))
        .unwrap();
    for lease in leases["leases"].as_array().unwrap() {
        let id: i64 = lease["ID"].as_str().unwrap().parse().unwrap();
        client.revoke(id).unwrap();
    }
    wait_logged(&t.b, "web1", "down");
    wait_logged(&t.b, "web1", "up");
    wait_until("web1 registered again", WAIT, || {
        etcd_names(&mut client) == ["web1"]
    });
    assert!(t.host_a.log().contains("granting a new one"));
}

#[test]
fn writes_failing_while_etcd_is_down_are_coalesced_and_land_when_it_is_back() {
    let mut etcd = EtcdServer::start();
    let port = common::free_port();
    let a = registering_host(&etcd, port, "10s");
    let host = a.start();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let node = |name: &str, kind: &str, port: u16| {
        format!(r#"{{"name":"{name}","type":"{kind}","host":"10.0.0.1","port":{port}}}"#)
    };
    wait_until("host A's restapi taking a node", WAIT, || {
        post(addr, "/service/web", &node("keep", "nodeup", 1)).is_some_and(|(s, _)| s == 200)
    });
    let mut client = etcd.client();
    wait_until("keep registered", WAIT, || {
        etcd_names(&mut client) == ["keep"]
    });

    etcd.kill();
    // The pipeline goes on while etcd is away: every POST is taken at once.
    for (name, kind, port) in [
        ("moved", "nodeup", 1),
        ("moved", "nodeup", 2),
        ("gone", "nodeup", 3),
        ("gone", "nodedown", 3),
        ("keep", "nodedown", 1),
        ("keep", "nodeup", 4),
    ] {
        let answer = post(addr, "/service/web", &node(name, kind, port));
        assert_eq!(answer.map(|(s, _)| s), Some(200), "{name} {kind}");
    }
    wait_until("a failed write in the log", WAIT, || {
        host.log().contains("cannot write the registrations")
            || host.log().contains("cannot renew lease")
    });
    etcd.restart();
    let mut client = etcd.client();
    wait_until("etcd holding the final state", WAIT, || {
        etcd_names(&mut client) == ["keep", "moved"]
    });
    let snapshot = client.range_prefix(PREFIX).unwrap();
    let values: Vec<String> = snapshot
        .kvs
        .iter()
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        .collect();
    assert_eq!(
        values,
        [
            r#"{"host":"10.0.0.1","port":4}"#,
            r#"{"host":"10.0.0.1","port":2}"#
        ]
    );
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
    let auth = |client: &mut Client, path: &'static str, body: serde_json::Value| {
        client.call(path, &body).unwrap();
    };
    auth(
        &mut admin,
        "/v3/auth/role/add",
        serde_json::json!({"name": "root"}),
    );
    auth(
        &mut admin,
        "/v3/auth/user/add",
        serde_json::json!({"name": "root", "password": "s3cret"}),
    );
    auth(
        &mut admin,
        "/v3/auth/user/grant",
        serde_json::json!({"user": "root", "role": "root"}),
    );
    auth(&mut admin, "/v3/auth/enable", serde_json::json!({}));
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
