//! The `etcd` reactor: two hosts sharing one etcd (A: restapi -> etcd reactor, B: etcd
//! watcher -> filelogger), the lease, and writes while etcd is away.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use receptor_etcd::testing::EtcdServer;

use crate::common::{self, alive, post, signal_pid, wait_until, Fixture, Host, WAIT};
use crate::support::*;

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
    let a = registering_host(&etcd, ttl);
    let host_a = a.start();
    let b = watcher_host(&etcd, "");
    let host_b = b.start();
    let addr: SocketAddr = host_a.logged_address("listening on http://");
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
    let leases: leases::Response = client.call(leases::PATH, leases::Request {}).unwrap();
    for lease in leases.leases {
        client.revoke(lease.id).unwrap();
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
    let a = registering_host(&etcd, "10s");
    let host = a.start();
    let addr: SocketAddr = host.logged_address("listening on http://");
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

/// `Lease.LeaseLeases`, which only this test needs (field numbers from etcd's
/// `rpc.proto`).
mod leases {
    pub const PATH: &str = "/etcdserverpb.Lease/LeaseLeases";

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Request {}

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Response {
        #[prost(message, repeated, tag = "2")]
        pub leases: Vec<Lease>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Lease {
        #[prost(int64, tag = "1")]
        pub id: i64,
    }
}
