//! The service's actor, end to end: a host run in this process (so the test can ask
//! the actor directly, as the admin API will) with real plugin processes (the test
//! plugin's `mirror` watcher and `record` reactor). Every wait is bounded.

mod common;

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ::actors::config;
use ::actors::lookup::{Builtins, PluginKind};
use ::actors::plugin::actor::PluginFailed;
use ::actors::receptor::{FailureReports, Launcher, Receptor};
use ::actors::service::actor::{ServicePhase, ServiceReport};
use ::actors::service::ServiceFailed;
use actix::prelude::*;
use common::{mirror, recorded_state, Fixture, WAIT};

/// Hears of plugins and services out of restarts.
struct Collector(mpsc::Sender<String>);

impl Actor for Collector {
    type Context = Context<Self>;
}

impl Handler<PluginFailed> for Collector {
    type Result = ();

    fn handle(&mut self, msg: PluginFailed, _: &mut Context<Self>) {
        let _ = self.0.send(format!("plugin {}", msg.plugin));
    }
}

impl Handler<ServiceFailed> for Collector {
    type Result = ();

    fn handle(&mut self, msg: ServiceFailed, _: &mut Context<Self>) {
        let _ = self
            .0
            .send(format!("service {}: {}", msg.service, msg.reason));
    }
}

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// The up nodes of a report, by name.
fn nodes(report: &ServiceReport) -> Vec<String> {
    report
        .state
        .nodes
        .nodes()
        .map(|n| n.name.to_string())
        .collect()
}

/// The up nodes the reactor process recorded (its newest incarnation's view).
fn reactor_view(fixture: &Fixture) -> Vec<String> {
    let (state, _) = recorded_state(&fixture.lines("r.jsonl"));
    let up: BTreeMap<_, _> = state.into_iter().filter(|(_, s)| s == "up").collect();
    up.into_keys().collect()
}

/// Asks the service's actor until `cond` holds; panics after [`WAIT`].
async fn status_when(
    host: &Receptor,
    what: &str,
    cond: impl Fn(&ServiceReport) -> bool,
) -> ServiceReport {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(report) = host.service_status("s").await {
            if cond(&report) {
                return report;
            }
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits (without blocking the arbiter, which runs the host) until `cond` holds.
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[test]
fn the_service_actor_reports_real_plugins_nodes_survives_a_panic_and_fails_past_its_budget() {
    let fixture = Fixture::new("");
    let dir = fixture.path().display().to_string();
    std::fs::write(
        fixture.path().join("Receptor.toml"),
        format!(
            r#"
shutdown_timeout = "5s"

[supervision]
max_restarts = 1

[services.s.watchers.w]
type = "mirror"
cfg = {{ scenario = "mirror", file = "{dir}/source.json" }}

[services.s.reactors.r]
type = "t"
cfg = {{ scenario = "record", file = "{dir}/r.jsonl", mark = true }}
"#
        ),
    )
    .unwrap();
    fixture.install_test_plugin("watcher", "mirror");
    fixture.install_test_plugin("reactor", "t");
    mirror::publish(fixture.path(), "source.json", &names(&["a", "b"]));
    // The host runs in this process: `RECEPTOR_*` variables of the caller (such as
    // `RECEPTOR_SOAK_SECS`) would read as config keys. This binary's one test is the
    // only thread that reads the environment.
    for (key, _) in std::env::vars() {
        if key.starts_with("RECEPTOR_") {
            std::env::remove_var(key);
        }
    }
    let config = config::load(&fixture.path().join("Receptor.toml"), &Builtins::default())
        .expect("the fixture's config");
    let launcher = Launcher {
        receptor_exe: env!("CARGO_BIN_EXE_receptor").into(),
    };

    actix::System::new().block_on(async {
        let (tx, failed) = mpsc::channel();
        let collector = Collector(tx).start();
        let reports = FailureReports {
            plugins: collector.clone().recipient(),
            services: collector.recipient(),
        };
        let host = Receptor::start(&config, &launcher, reports, std::future::pending())
            .await
            .expect("the host starts");

        // Events flowed through real plugin processes: the actor reports them.
        let report = status_when(&host, "nodes a and b, both endpoints attached", |r| {
            nodes(r) == ["a", "b"] && r.endpoints.iter().all(|e| e.attached)
        })
        .await;
        assert_eq!(report.phase, ServicePhase::Running);
        let w = report.endpoint(PluginKind::Watcher, "w").unwrap();
        assert_eq!(w.sessions, 1);
        assert!(report.state.watchers[0].updates_in >= 1);
        until("the reactor's view", || {
            reactor_view(&fixture) == ["a", "b"]
        })
        .await;

        // A panic in the actor: restarted, nothing lost, events flow on, and the
        // reactor ends with the watcher's truth.
        assert!(host.inject_service_panic("s"));
        let report = status_when(&host, "the actor's restart", |r| r.restarts == 1).await;
        assert_eq!(nodes(&report), ["a", "b"], "nothing lost");
        mirror::publish(fixture.path(), "source.json", &names(&["a", "c"]));
        status_when(&host, "the new truth", |r| nodes(r) == ["a", "c"]).await;
        until("the reactor's view to equal the truth", || {
            reactor_view(&fixture) == ["a", "c"]
        })
        .await;
        let (_, incarnations) = recorded_state(&fixture.lines("r.jsonl"));
        assert_eq!(incarnations, 1, "the reactor's process was not restarted");

        // Past the budget (max_restarts = 1): failed, and the host is told.
        assert!(host.inject_service_panic("s"));
        let report = status_when(&host, "the service failed", |r| {
            r.phase == ServicePhase::Failed
        })
        .await;
        assert_eq!(report.restarts, 1);
        let mut told = None;
        until("the host to be told", || {
            told = failed.try_recv().ok();
            told.is_some()
        })
        .await;
        let told = told.unwrap();
        assert!(
            told.starts_with("service s: ") && told.contains("injected by a test hook"),
            "{told}"
        );
        assert!(failed.try_recv().is_err(), "nothing else failed");
        assert!(host.service_status("nope").await.is_err());
        host.shutdown().await;
    });
}

/// A service's actor out of restarts under `on_plugin_failure = "shutdown"` stops the
/// host with exit code 2 and nothing left behind, as a plugin out of restarts does.
#[test]
fn a_service_out_of_restarts_with_on_failure_shutdown_stops_the_host_with_exit_2() {
    let fixture = Fixture::new(
        r#"
shutdown_timeout = "5s"

[supervision]
max_restarts = 0
on_plugin_failure = "shutdown"

[services.s.watchers.w]
type = "t"
cfg = { scenario = "emit", events = [{ name = "x", status = "up", host = "h", port = 1 }] }

[services.s.reactors.r]
type = "t"
cfg = { scenario = "record", file = "r.jsonl" }
"#,
    );
    fixture.install_test_plugin("watcher", "t");
    fixture.install_test_plugin("reactor", "t");
    let mut host = fixture.start_with(&["--test-panic-in", "service/s"]);
    let host_pid = host.pid();
    let status = host.wait(WAIT).expect("the host exits");
    let log = host.log();
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(log.contains("service failed for good"), "{log}");
    assert!(
        log.contains("the actor of service s is out of restarts"),
        "{log}"
    );
    for pid in host.plugin_pids() {
        common::wait_until("the plugins to exit", WAIT, || !common::alive(pid));
    }
    assert_eq!(common::shm_entries_of(host_pid), Vec::<String>::new());
}
