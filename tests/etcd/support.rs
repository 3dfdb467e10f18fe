//! What the etcd tests share: the two hosts' configs, a client's puts and deletes on
//! `PREFIX`, and the filelogger's view of the nodes.

use std::collections::BTreeMap;

use receptor_etcd::testing::EtcdServer;
use receptor_etcd::Client;

use crate::common::{wait_until, Fixture, WAIT};

pub const PREFIX: &str = "/receptor/web/";

/// A host running `etcd watcher -> filelogger` on `PREFIX`.
pub fn watcher_host(etcd: &EtcdServer, extra: &str) -> Fixture {
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
pub fn registering_host(etcd: &EtcdServer, ttl: &str) -> Fixture {
    Fixture::new(&format!(
        r#"
shutdown_timeout = "5s"

[watchers.restapi]
listen = "127.0.0.1:0"

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

pub fn value(host: &str, port: u16) -> Vec<u8> {
    format!(r#"{{"host":"{host}","port":{port}}}"#).into_bytes()
}

pub fn put(client: &mut Client, name: &str, port: u16) {
    let key = format!("{PREFIX}{name}");
    client
        .put(key.as_bytes(), &value("127.0.0.1", port), 0)
        .unwrap();
}

pub fn delete(client: &mut Client, name: &str) {
    client.delete(format!("{PREFIX}{name}").as_bytes()).unwrap();
}

/// The filelogger's lines as `(name, "up"/"down")`.
pub fn logged(fixture: &Fixture) -> Vec<(String, String)> {
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
pub fn logged_state(fixture: &Fixture) -> BTreeMap<String, String> {
    logged(fixture).into_iter().collect()
}

/// The node names under `PREFIX` in etcd.
pub fn etcd_names(client: &mut Client) -> Vec<String> {
    let snapshot = client.range_prefix(PREFIX).unwrap();
    snapshot
        .kvs
        .iter()
        .map(|(k, _)| String::from_utf8_lossy(&k[PREFIX.len()..]).into_owned())
        .collect()
}

pub fn wait_logged(fixture: &Fixture, name: &str, status: &str) {
    wait_until(&format!("{name} ({status}) in the log"), WAIT, || {
        logged_state(fixture).get(name).map(String::as_str) == Some(status)
    });
}
