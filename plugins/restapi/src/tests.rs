//! The restapi over real loopback HTTP, its endpoint run in-process by the SDK's
//! harness (the protocol's cases run against the real host in the workspace's
//! `tests/restapi.rs`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use plugin_sdk::testing::{Harness, WatcherRun};
use plugin_sdk::{NodeStatus, Update, Watcher};

use super::*;

const TEST_WAIT: Duration = Duration::from_secs(10);

/// Writes `request` on `stream` and reads one answer: (status, body). Answers carry a
/// Content-Length.
fn exchange(stream: &mut TcpStream, request: &str) -> (u16, String) {
    stream.write_all(request.as_bytes()).unwrap();
    read_answer(stream)
}

fn read_answer(stream: &mut TcpStream) -> (u16, String) {
    let mut data = Vec::new();
    let mut byte = [0u8; 1];
    while !data.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).unwrap(), 1, "closed in the head");
        data.push(byte[0]);
    }
    let head = String::from_utf8(data).unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).unwrap();
    (
        head[9..12].parse().unwrap(),
        String::from_utf8(body).unwrap(),
    )
}

fn post(body: &str) -> String {
    format!(
        "POST /service/test-service HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(TEST_WAIT)).unwrap();
    stream
}

/// Starts the restapi on a free port; returns it once its service answers.
fn start() -> (RestApi, WatcherRun, SocketAddr) {
    let mut api = RestApi::default();
    let run = Harness::new()
        .global(r#"{"listen": "127.0.0.1:0"}"#)
        .run_watcher(&mut api, r#"{"service": "test-service"}"#)
        .unwrap();
    let addr = api.local_addr().unwrap();
    // The endpoint registers its service when it starts: an empty batch probes it.
    let deadline = Instant::now() + TEST_WAIT;
    let mut stream = connect(addr);
    while exchange(&mut stream, &post("[]")).0 != 200 {
        assert!(Instant::now() < deadline, "service never registered");
        std::thread::sleep(Duration::from_millis(5));
    }
    (api, run, addr)
}

#[test]
fn a_post_is_one_update_and_a_batch_is_one_update_of_all_its_nodes() {
    let (_api, run, addr) = start();
    let mut stream = connect(addr);
    let one = r#"{"name":"n1","type":"nodeup","host":"10.0.0.1","port":8080}"#;
    assert_eq!(exchange(&mut stream, &post(one)), (200, "OK".into()));
    let update = run.recv_timeout(TEST_WAIT).expect("an event");
    let node = update.event().nodes().next().unwrap().clone();
    assert_eq!(
        (node.name.as_str(), node.status, node.port),
        ("n1", NodeStatus::Up, 8080)
    );

    let batch = r#"[{"name":"n1","type":"nodedown","host":"10.0.0.1","port":8080},
        {"name":"n2","type":"nodeup","host":"10.0.0.2","port":80,"meta":{"zone":"eu"}},
        {"name":"n3","type":"nodeup","host":"10.0.0.3","port":80}]"#;
    assert_eq!(exchange(&mut stream, &post(batch)), (200, "OK".into()));
    let update = run.recv_timeout(TEST_WAIT).expect("the batch");
    assert!(matches!(update, Update::Incremental(_)));
    let names: Vec<_> = update.event().nodes().map(|n| n.name.clone()).collect();
    assert_eq!(
        names,
        ["n1", "n2", "n3"],
        "one update holds the whole batch"
    );
    assert_eq!(
        update.event().get("n2").unwrap().meta.get("zone").unwrap(),
        "eu"
    );

    // A batch with one bad entry is refused whole: nothing of it is sent.
    let bad = r#"[{"name":"n4","type":"nodeup","host":"h","port":1},{"name":"n5","type":"nodeup","host":"h","port":0}]"#;
    let (status, body) = exchange(&mut stream, &post(bad));
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("node [1]") && body.contains("'port'"),
        "{body}"
    );
    assert_eq!(exchange(&mut stream, &post(one)).0, 200);
    let update = run.recv_timeout(TEST_WAIT).expect("the last event");
    assert!(update.event().get("n4").is_none(), "{update:?}");
    run.close();
    run.join(TEST_WAIT).unwrap();
}

/// A stop lets the request in progress finish (its event goes out), closes idle
/// connections and the listener, and the endpoint returns.
#[test]
fn the_stop_finishes_the_request_in_progress_and_closes_the_rest() {
    let (_api, run, addr) = start();
    let mut idle = connect(addr);
    assert_eq!(exchange(&mut idle, &post("[]")).0, 200);
    let mut busy = connect(addr);
    let body = r#"{"name":"late","type":"nodeup","host":"h","port":1}"#;
    // `100 Continue` comes when the handler starts reading the body: from then on the
    // request is in progress.
    let head = format!(
        "POST /service/test-service HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    assert_eq!(exchange(&mut busy, &head).0, 100);

    run.close();
    // The listener closes: new connections are refused.
    let deadline = Instant::now() + TEST_WAIT;
    while TcpStream::connect(addr).is_ok() {
        assert!(Instant::now() < deadline, "the listener never closed");
        std::thread::sleep(Duration::from_millis(5));
    }
    // The idle connection is closed.
    let mut byte = [0u8; 1];
    assert_eq!(idle.read(&mut byte).unwrap_or(0), 0);
    // The request in progress is answered, and its node sent.
    busy.write_all(body.as_bytes()).unwrap();
    assert_eq!(read_answer(&mut busy), (200, "OK".into()));
    drop(busy);
    let update = run.recv_timeout(TEST_WAIT).expect("the late node");
    assert!(update.event().get("late").is_some(), "{update:?}");
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
