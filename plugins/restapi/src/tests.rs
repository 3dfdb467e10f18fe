//! The restapi over real loopback HTTP, its endpoints run in-process.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use plugin_sdk::testing::run_watcher;
use plugin_sdk::{NodeStatus, Watcher};

use super::*;

const TEST_WAIT: Duration = Duration::from_secs(10);

/// Sends one raw request and returns (status, body).
fn request(addr: std::net::SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(TEST_WAIT)).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    let _ = stream.write_all(body);
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer[9..12].parse().unwrap();
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn post(addr: std::net::SocketAddr, service: &str, body: &str) -> (u16, String) {
    request(
        addr,
        "POST",
        &format!("/service/{service}"),
        body.as_bytes(),
    )
}

#[test]
fn a_post_becomes_an_event_and_bad_ones_get_400() {
    let mut api = RestApi::default();
    let run = run_watcher(
        &mut api,
        r#"{"listen": "127.0.0.1:0"}"#,
        r#"{"service": "test-service"}"#,
        64,
    )
    .unwrap();
    let addr = api.local_addr().unwrap();
    // The endpoint registers itself when it starts: wait for the service to be known.
    let ok = r#"{"name":"n1","type":"nodeup","host":"10.0.0.1","port":8080}"#;
    let deadline = std::time::Instant::now() + TEST_WAIT;
    while post(addr, "test-service", ok).0 != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "service never registered"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let update = run.recv_timeout(TEST_WAIT).expect("an event");
    let node = update.event().nodes().next().unwrap().clone();
    assert_eq!(
        (node.name.as_str(), node.status, node.port),
        ("n1", NodeStatus::Up, 8080)
    );

    let (status, body) = post(addr, "test-service", "{not json");
    assert_eq!(status, 400);
    assert!(body.contains("invalid JSON"), "{body}");
    let (status, body) = post(
        addr,
        "test-service",
        r#"{"name":"n1","type":"sideways","host":"h","port":1}"#,
    );
    assert_eq!(
        (status, body.contains("unknown type 'sideways'")),
        (400, true),
        "{body}"
    );
    let (status, body) = post(addr, "test-service", r#"{"name":"n1","host":"h","port":1}"#);
    assert_eq!((status, body.contains("type")), (400, true), "{body}");
    let big = vec![b' '; MAX_BODY + 1];
    let (status, body) = request(addr, "POST", "/service/test-service", &big);
    assert_eq!(
        (status, body.contains("over the limit")),
        (400, true),
        "{body}"
    );
    // Regression: an empty name was accepted and reached the reactors; node fields
    // that break a rule get 400 naming the field.
    for (body, field) in [
        (
            r#"{"name":"","type":"nodeup","host":"h","port":1}"#,
            "'name'",
        ),
        (
            r#"{"name":"a\nb","type":"nodeup","host":"h","port":1}"#,
            "'name'",
        ),
        (
            r#"{"name":"a","type":"nodeup","host":"h\r\n","port":1}"#,
            "'host'",
        ),
        (
            r#"{"name":"a","type":"nodeup","host":"h","port":0}"#,
            "'port'",
        ),
    ] {
        let (status, answer) = post(addr, "test-service", body);
        assert_eq!(
            (status, answer.contains(field)),
            (400, true),
            "{body}: {answer}"
        );
    }
    assert_eq!(post(addr, "nope", ok).0, 404);
    assert_eq!(request(addr, "GET", "/service/test-service", b"").0, 405);
    assert_eq!(request(addr, "POST", "/other", b"").0, 404);

    // The pipeline keeps working after the bad requests.
    let down = r#"{"name":"n1","type":"nodedown","host":"10.0.0.1","port":8080}"#;
    assert_eq!(post(addr, "test-service", down), (200, "OK".to_owned()));
    let update = run.recv_timeout(TEST_WAIT).expect("a second event");
    assert_eq!(
        update.event().nodes().next().unwrap().status,
        NodeStatus::Down
    );
    run.close();
    run.join(TEST_WAIT).unwrap();
}

#[test]
fn a_bad_listen_address_is_a_setup_error_naming_it() {
    let err = RestApi::default()
        .setup(plugin_sdk::Config::global(r#"{"listen": "256.0.0.1:1"}"#))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("listen") && err.contains("256.0.0.1:1"),
        "{err}"
    );
}

#[test]
fn one_service_cannot_be_accepted_twice() {
    let mut api = RestApi::default();
    api.setup(plugin_sdk::Config::global(r#"{"listen": "127.0.0.1:0"}"#))
        .unwrap();
    let cfg = || plugin_sdk::Config::instance(r#"{"service": "a"}"#, "a", "x");
    assert!(api.accept(cfg()).is_ok());
    let err = api.accept(cfg()).err().unwrap().to_string();
    assert!(err.contains("already"), "{err}");
}
