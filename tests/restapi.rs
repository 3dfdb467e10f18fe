//! The restapi end to end: a real `receptor run` host, its built-in restapi plugin
//! process on a loopback port, a filelogger writing what arrives, and a raw HTTP client
//! in control of every byte (keep-alive, chunked bodies, `Expect: 100-continue`, slow
//! clients, the connection cap).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::http::Conn;
use common::{wait_until, Fixture, Host, WAIT};
use nix::sys::signal::Signal;

/// A host with the restapi (`extra` global keys) feeding a filelogger `events.log`.
fn start(extra: &str) -> (Fixture, Host, SocketAddr) {
    let fixture = Fixture::new(&format!(
        r#"
shutdown_timeout = "5s"

[watchers.restapi]
listen = "127.0.0.1:0"
{extra}

[services.web.watchers.api]
type = "restapi"
cfg = {{ service = "web" }}

[services.web.reactors.log]
type = "filelogger"
cfg = {{ filename = "events.log", unbuffered = true }}
"#
    ));
    let host = fixture.start();
    let addr = host.logged_address("listening on http://");
    // The service is known once its endpoint runs; an empty batch probes it.
    let mut conn = Conn::open(addr);
    wait_until("the service to be registered", WAIT, || {
        conn.round_trip("/service/web", "[]").status == 200
    });
    (fixture, host, addr)
}

fn node(name: &str) -> String {
    format!(r#"{{"name":"{name}","type":"nodeup","host":"127.0.0.1","port":9000}}"#)
}

/// Waits until the filelogger has logged node `name` up.
fn wait_logged(fixture: &Fixture, name: &str) {
    let suffix = format!(" {name} (up) 127.0.0.1:9000");
    wait_until(&format!("{name} in events.log"), WAIT, || {
        fixture
            .lines("events.log")
            .iter()
            .any(|l| l.ends_with(&suffix))
    });
}

#[test]
fn keep_alive_chunked_bodies_100_continue_query_strings_and_batches_all_reach_the_reactor() {
    let (fixture, _host, addr) = start("");
    let mut conn = Conn::open(addr);
    // Keep-alive: several requests on one connection.
    for name in ["k1", "k2", "k3"] {
        let answer = conn.round_trip("/service/web", &node(name));
        assert_eq!((answer.status, answer.body.as_str()), (200, "OK"));
    }
    // A chunked body, in two chunks.
    let body = node("c1");
    let (a, b) = body.split_at(7);
    conn.send(format!(
        "POST /service/web HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
        a.len(),
        b.len()
    ));
    assert_eq!(conn.answer().status, 200);
    // Expect: 100-continue: the body goes after the interim answer.
    let body = node("e1");
    conn.send(format!(
        "POST /service/web HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        body.len()
    ));
    assert_eq!(conn.answer().status, 100);
    conn.send(&body);
    assert_eq!(conn.answer().status, 200);
    // A query string is not part of the service name.
    assert_eq!(conn.round_trip("/service/web?x=1", &node("q1")).status, 200);
    // A batch: one body, several nodes.
    let batch = format!("[{},{},{}]", node("b1"), node("b2"), node("b3"));
    assert_eq!(conn.round_trip("/service/web", &batch).status, 200);
    for name in ["k1", "k2", "k3", "c1", "e1", "q1", "b1", "b2", "b3"] {
        wait_logged(&fixture, name);
    }
    // All of it went over the one connection, which is still open.
    assert_eq!(conn.round_trip("/service/web", &node("k4")).status, 200);
    wait_logged(&fixture, "k4");
}

#[test]
fn every_refusal_has_its_status_and_names_the_fault() {
    let (fixture, _host, addr) = start("");
    let mut conn = Conn::open(addr);
    let cases = [
        ("/service/web", "{oops".to_owned(), 400, "invalid JSON"),
        (
            "/service/web",
            r#"{"name":"a","type":"nodeup","host":"h","port":"x"}"#.to_owned(),
            400,
            "'port'",
        ),
        (
            "/service/web",
            r#"{"name":"a\u0007","type":"nodeup","host":"h","port":1}"#.to_owned(),
            400,
            "field 'name'",
        ),
        (
            "/service/web",
            r#"{"name":"a","type":"sideways","host":"h","port":1}"#.to_owned(),
            400,
            "unknown type 'sideways'",
        ),
        ("/service/nope", node("x"), 404, "unknown service 'nope'"),
        ("/elsewhere", node("x"), 404, "no such path"),
    ];
    for (path, body, status, needle) in cases {
        let answer = conn.round_trip(path, &body);
        assert_eq!(answer.status, status, "{path} {body}: {answer:?}");
        assert!(answer.body.contains(needle), "{path} {body}: {answer:?}");
    }
    // 405 says what is allowed.
    conn.send("GET /service/web HTTP/1.1\r\nHost: t\r\n\r\n");
    let answer = conn.answer();
    assert_eq!((answer.status, answer.header("allow")), (405, Some("POST")));
    // 411: a POST with neither a length nor a chunked body.
    conn.send("POST /service/web HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(conn.answer().status, 411);
    // The connection survived every refusal so far.
    assert_eq!(conn.round_trip("/service/web", &node("ok1")).status, 200);

    // 413: a declared length over 64 KiB, refused before its body is asked for...
    let mut big = Conn::open(addr);
    big.send("POST /service/web HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 70000\r\n\r\n");
    let answer = big.answer();
    assert_eq!(answer.status, 413, "{answer:?}");
    assert_eq!(answer.header("connection"), Some("close"));
    // ... one sent whole (the answer arrives, not a reset) ...
    let mut big = Conn::open(addr);
    big.post("/service/web", &" ".repeat(70_000));
    assert_eq!(big.answer().status, 413);
    // ... one sent whole and far over it: the refusal still arrives, not a reset (the
    // server reads and drops what follows before it closes) ...
    let mut big = Conn::open(addr);
    big.post("/service/web", &" ".repeat(200_000));
    assert_eq!(big.try_answer().map(|a| a.status), Some(413));
    // ... and a chunked one that grows past the limit.
    let mut big = Conn::open(addr);
    let chunk = " ".repeat(16 * 1024);
    big.send("POST /service/web HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    for _ in 0..5 {
        big.send(format!("{:x}\r\n{chunk}\r\n", chunk.len()));
    }
    big.send("0\r\n\r\n");
    let answer = big.answer();
    assert_eq!(answer.status, 413, "{answer:?}");

    // The pipeline kept working through all of it.
    assert_eq!(conn.round_trip("/service/web", &node("ok2")).status, 200);
    wait_logged(&fixture, "ok2");
    assert!(fixture
        .lines("events.log")
        .iter()
        .all(|l| l.contains(" ok1 ") || l.contains(" ok2 ")));
}

/// Regression: a read timeout per `read()` let a client sending one byte every few
/// seconds hold a connection for hours; now the whole request has one deadline.
#[test]
fn a_slow_client_is_cut_at_the_request_deadline_head_or_body() {
    let (_fixture, _host, addr) = start(r#"request_timeout = "1s""#);
    // A head a byte at a time, slower than the deadline allows (100 ms a byte, 10 s
    // for the whole head): the server closes the connection before it is complete.
    let head = format!(
        "POST /service/web HTTP/1.1\r\nHost: t\r\nX-Padding: {}\r\nContent-Length: 2\r\n\r\n",
        "p".repeat(40)
    );
    let mut slow = Conn::open(addr);
    let mut sent = 0;
    for byte in head.bytes().chain(*b"[]") {
        if slow.try_send(&[byte]).is_err() || slow.closed_within(Duration::from_millis(100)) {
            break;
        }
        sent += 1;
    }
    // Cut without an answer: the server never had the whole head.
    assert!(
        sent < head.len() && slow.unread() == 0,
        "the whole slow head was read ({sent} bytes sent)"
    );

    // A body a byte at a time: answered 408 when the deadline passes.
    let body = format!("[{}]", " ".repeat(100));
    let mut slow = Conn::open(addr);
    slow.send(format!(
        "POST /service/web HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
        body.len()
    ));
    let mut answer = None;
    for byte in body.bytes() {
        if slow.try_send(&[byte]).is_err() {
            break;
        }
        if slow.closed_within(Duration::from_millis(100)) {
            answer = slow.try_answer();
            break;
        }
    }
    let answer = answer.expect("an answer before the slow body was complete");
    assert_eq!(answer.status, 408, "{answer:?}");

    // A fast client is served meanwhile and after.
    assert_eq!(
        Conn::open(addr).round_trip("/service/web", "[]").status,
        200
    );
}

#[test]
fn an_idle_keep_alive_connection_is_closed_after_idle_timeout() {
    let (_fixture, _host, addr) = start(r#"idle_timeout = "300ms""#);
    let mut conn = Conn::open(addr);
    assert_eq!(conn.round_trip("/service/web", "[]").status, 200);
    assert!(conn.closed_within(WAIT), "the idle connection stayed open");
}

#[test]
fn over_the_connection_cap_a_client_waits_for_a_free_slot() {
    let (_fixture, _host, addr) = start("max_connections = 1");
    // The probe's connection from `start` is gone; `first` takes the one slot.
    let mut first = Conn::open(addr);
    wait_until("the first connection to be served", WAIT, || {
        first.round_trip("/service/web", "[]").status == 200
    });
    let mut second = Conn::open(addr);
    second.post("/service/web", "[]");
    // Not served while the first holds the slot (a broken cap would answer at once).
    let closed = second.closed_within(Duration::from_millis(300));
    assert!(
        !closed && second.unread() == 0,
        "the second connection was served over the cap"
    );
    drop(first);
    assert_eq!(second.answer().status, 200);
}

/// SIGTERM with a keep-alive connection open: the connection is closed, the host
/// exits 0 within its shutdown timeout.
#[test]
fn sigterm_closes_open_connections_and_the_host_exits_cleanly() {
    let (_fixture, mut host, addr) = start("");
    let mut conn = Conn::open(addr);
    assert_eq!(conn.round_trip("/service/web", &node("s1")).status, 200);
    host.signal(Signal::SIGTERM);
    assert!(conn.closed_within(WAIT), "the connection stayed open");
    let status = host.wait(WAIT).expect("the host exits");
    assert_eq!(status.code(), Some(0));
}
