//! The reactor against a real HTTP receiver on loopback (see [`crate::testing`]): one
//! that answers, one that fails its first requests, one that is down for a while, one
//! that never answers, one that refuses with 4xx.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use plugin_sdk::testing::{Harness, ReactorRun};
use plugin_sdk::{Event, NodeStatus};

use crate::testing::{Behaviour, Receiver};
use crate::Webhook;

/// The longest any wait in these tests lasts.
const WAIT: Duration = Duration::from_secs(20);

/// Runs the webhook posting to `url` with a timeout of 500 ms and backoff from 10 to
/// 100 ms, then the keys of the JSON object `extra` (which win).
fn start(url: &str, extra: &str) -> ReactorRun {
    let mut cfg = serde_json::json!({
        "url": url, "timeout": "500ms", "retry_backoff_min": "10ms", "retry_backoff_max": "100ms"
    });
    let extra: serde_json::Value = serde_json::from_str(extra).unwrap();
    for (key, value) in extra.as_object().unwrap() {
        cfg[key] = value.clone();
    }
    Harness::new()
        .service("web")
        .run_reactor(&mut Webhook, &cfg.to_string())
        .unwrap()
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Sends `count` changes over `nodes` nodes (flipping them in a fixed pattern) and
/// returns the true final state.
fn churn(run: &ReactorRun, truth: &mut BTreeMap<String, String>, nodes: usize, count: usize) {
    for i in 0..count {
        let name = format!("n{:03}", (i * 7) % nodes);
        let up = (i / nodes).is_multiple_of(2) || i.is_multiple_of(3);
        let status = if up { NodeStatus::Up } else { NodeStatus::Down };
        run.send(Event::with_node(
            &name,
            status,
            "10.0.0.1",
            8000 + (i % nodes) as u16,
        ));
        truth.insert(name, status.to_string());
    }
}

#[test]
fn a_batch_arrives_as_documented_json_with_the_configured_method_and_headers() {
    let receiver = Receiver::start(Behaviour::default());
    let run = start(
        &receiver.url("/hook?x=1"),
        r#"{"method": "put", "headers": {"X-Token": "abc", "Content-Type": "application/vnd.test+json"}}"#,
    );
    let mut event = Event::with_node("a", NodeStatus::Up, "10.0.0.1", 80);
    event.add_node(
        plugin_sdk::NodeInfo::new("b", NodeStatus::Down, "10.0.0.2", 81).with_meta("zone", "eu"),
    );
    run.send(event);
    wait_until("the batch", || receiver.state().len() == 2);
    let request = &receiver.requests()[0];
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("PUT", "/hook?x=1")
    );
    assert_eq!(request.headers["x-token"], "abc");
    assert_eq!(request.headers["content-type"], "application/vnd.test+json");
    let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"service": "web", "nodes": [
            {"name": "a", "status": "up", "host": "10.0.0.1", "port": 80, "meta": {}},
            {"name": "b", "status": "down", "host": "10.0.0.2", "port": 81, "meta": {"zone": "eu"}},
        ]})
    );
    run.close();
    run.join(WAIT).unwrap();
}

#[test]
fn a_receiver_that_fails_its_first_requests_ends_with_the_true_state() {
    let receiver = Receiver::start(Behaviour {
        fail_first: 4,
        ..Behaviour::default()
    });
    let run = start(&receiver.url("/"), "{}");
    let mut truth = BTreeMap::new();
    churn(&run, &mut truth, 20, 500);
    wait_until("the true final state", || receiver.state() == truth);
    let requests = receiver.requests();
    assert!(requests.len() >= 5, "the failures were retried");
    assert!(requests[..4].iter().all(|r| r.answered == Some(500)));
    run.close();
    run.join(WAIT).unwrap();
}

#[test]
fn a_receiver_down_for_a_while_gets_the_true_state_and_the_pipeline_never_waits() {
    let mut receiver = Receiver::start(Behaviour::default());
    let run = start(&receiver.url("/"), "{}");
    let mut truth = BTreeMap::new();
    churn(&run, &mut truth, 10, 30);
    wait_until("the first state", || receiver.state() == truth);

    receiver.stop();
    // More events than the harness's channel holds (1,024): they only get through if
    // the endpoint keeps taking events while its deliveries fail.
    let (done, finished) = std::sync::mpsc::channel();
    let later = std::thread::scope(|scope| {
        let sender = scope.spawn(|| {
            let mut later = BTreeMap::new();
            churn(&run, &mut later, 50, 5_000);
            done.send(()).unwrap();
            later
        });
        let in_time = finished.recv_timeout(WAIT).is_ok();
        receiver.resume();
        assert!(
            in_time,
            "the endpoint stopped taking events while the receiver was down"
        );
        sender.join().unwrap()
    });
    truth.extend(later);
    wait_until("the true final state", || receiver.state() == truth);
    run.close();
    run.join(WAIT).unwrap();
}

#[test]
fn a_receiver_that_never_answers_is_timed_out_and_retried() {
    let receiver = Receiver::start(Behaviour {
        hang_first: 1,
        ..Behaviour::default()
    });
    let run = start(&receiver.url("/"), r#"{"timeout": "200ms"}"#);
    run.send(Event::with_node("a", NodeStatus::Up, "h", 1));
    wait_until("the retried request", || {
        receiver.state().get("a").map(String::as_str) == Some("up")
    });
    let requests = receiver.requests();
    assert_eq!(requests[0].answered, None);
    assert_eq!(requests[1].answered, Some(200));
    run.close();
    run.join(WAIT).unwrap();
}

#[test]
fn a_4xx_answer_is_not_retried() {
    let receiver = Receiver::start(Behaviour {
        fail_first: 1,
        fail_status: 400,
        ..Behaviour::default()
    });
    let run = start(&receiver.url("/"), "{}");
    run.send(Event::with_node("a", NodeStatus::Up, "h", 1));
    wait_until("the refused request", || receiver.request_count() == 1);
    run.send(Event::with_node("b", NodeStatus::Up, "h", 2));
    wait_until("the next batch", || receiver.state().contains_key("b"));
    let requests = receiver.requests();
    assert_eq!(requests.len(), 2, "the refused batch was not sent again");
    assert!(!receiver.state().contains_key("a"));
    run.close();
    run.join(WAIT).unwrap();
}

#[test]
fn at_close_what_is_pending_is_delivered_within_the_grace() {
    let mut receiver = Receiver::start(Behaviour::default());
    receiver.stop();
    let run = start(&receiver.url("/"), r#"{"retry_backoff_min": "50ms"}"#);
    run.send(Event::with_node("a", NodeStatus::Up, "h", 1));
    run.close();
    receiver.resume();
    run.join(WAIT).unwrap();
    assert_eq!(receiver.state().get("a").map(String::as_str), Some("up"));
}

#[test]
fn at_close_an_unreachable_receiver_costs_at_most_the_grace() {
    let mut receiver = Receiver::start(Behaviour::default());
    receiver.stop();
    let run = start(&receiver.url("/"), "{}");
    run.send(Event::with_node("a", NodeStatus::Up, "h", 1));
    run.close();
    // `join` fails if the endpoint is still running after WAIT (far above the grace).
    run.join(WAIT).unwrap();
    assert_eq!(receiver.request_count(), 0);
}

#[test]
fn a_bad_config_is_refused_naming_the_key() {
    let err = Harness::new()
        .run_reactor(&mut Webhook, r#"{"url": "https://example.com/"}"#)
        .err()
        .unwrap();
    assert!(err.starts_with("url"), "{err}");
    let err = Harness::new()
        .run_reactor(&mut Webhook, r#"{"url": "http://h/", "timeout": 5}"#)
        .err()
        .unwrap();
    assert!(err.starts_with("timeout"), "{err}");
}

/// Review: the doc of `Delivery::run` says a close ends a retry's wait ("what is left
/// gets its try at once"). With a long backoff, the receiver back before the close, the
/// pending change must still be delivered within CLOSE_GRACE.
#[test]
fn review_a_close_cuts_a_long_retry_wait_short() {
    let mut receiver = Receiver::start(Behaviour::default());
    receiver.stop();
    let run = start(
        &receiver.url("/"),
        r#"{"retry_backoff_min": "10s", "retry_backoff_max": "10s"}"#,
    );
    run.send(Event::with_node("a", NodeStatus::Up, "h", 1));
    // The first post is refused at once; the delivery now sleeps ~10 s before a retry.
    std::thread::sleep(Duration::from_millis(300));
    receiver.resume();
    run.close();
    run.join(WAIT).unwrap();
    assert_eq!(
        receiver.state().get("a").map(String::as_str),
        Some("up"),
        "the close did not end the retry's wait: the change was dropped after the grace"
    );
}
