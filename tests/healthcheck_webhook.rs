//! End to end through a real host: the `healthcheck` watcher checks TCP servers on
//! loopback that the test starts and stops, and the `webhook` reactor posts the flips to
//! a receiver the test runs, beside a `filelogger` writing the same flips.

mod common;

use std::collections::BTreeMap;
use std::net::TcpListener;

use common::{wait_until, Fixture, WAIT};
use receptor_webhook::testing::{Behaviour, Receiver};

fn up_down(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(n, s)| (n.to_string(), s.to_string()))
        .collect()
}

#[test]
fn healthcheck_flips_reach_a_webhook_and_a_filelogger() {
    let web1 = TcpListener::bind("127.0.0.1:0").unwrap();
    let port1 = web1.local_addr().unwrap().port();
    let port2 = {
        let probe = TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    // The receiver fails its first request: the webhook retries it.
    let receiver = Receiver::start(Behaviour {
        fail_first: 1,
        ..Behaviour::default()
    });
    let fixture = Fixture::new(&format!(
        r#"
shutdown_timeout = "5s"

[services.web.watchers.local]
type = "healthcheck"
cfg = {{ check = "tcp", interval = "50ms", timeout = "500ms", nodes = [
    {{ name = "web1", host = "127.0.0.1", port = {port1} }},
    {{ name = "web2", host = "127.0.0.1", port = {port2}, meta = {{ zone = "eu" }} }},
] }}

[services.web.reactors.hook]
type = "webhook"
cfg = {{ url = "{url}", retry_backoff_min = "10ms", retry_backoff_max = "100ms" }}

[services.web.reactors.log]
type = "filelogger"
cfg = {{ filename = "events.log", unbuffered = true }}
"#,
        url = receiver.url("/receptor"),
    ));
    let host = fixture.start();
    let logged = |line: &str| {
        fixture
            .lines("events.log")
            .iter()
            .any(|l| l.ends_with(line))
    };

    wait_until("web1 up at the webhook", WAIT, || {
        receiver.state() == up_down(&[("web1", "up")])
    });
    wait_until("web1 up in the log", WAIT, || {
        logged(&format!(" web1 (up) 127.0.0.1:{port1}"))
    });
    assert_eq!(receiver.requests()[0].answered, Some(500));

    drop(web1);
    let web2 = TcpListener::bind(("127.0.0.1", port2)).unwrap();
    let truth = up_down(&[("web1", "down"), ("web2", "up")]);
    wait_until("web1 down and web2 up at the webhook", WAIT, || {
        receiver.state() == truth
    });
    wait_until("web2 up in the log", WAIT, || {
        logged(&format!(" web2 (up) 127.0.0.1:{port2}"))
    });
    wait_until("web1 down in the log", WAIT, || {
        logged(&format!(" web1 (down) 127.0.0.1:{port1}"))
    });
    let last = receiver.requests().last().cloned().unwrap();
    let body: serde_json::Value = serde_json::from_slice(&last.body).unwrap();
    assert_eq!(body["service"], "web", "{body}");
    assert!(
        receiver.requests().iter().any(|r| {
            let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            v["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .any(|n| n["name"] == "web2" && n["meta"]["zone"] == "eu")
        }),
        "web2's meta reached the webhook"
    );
    assert!(
        !host.log().contains("\"level\":\"ERROR\""),
        "{}",
        host.log()
    );
    drop(host);
    drop(web2);
}
