//! The control protocol between this test (the host's end) and the `ipc-peer` helper
//! (the plugin's end), over a real socket pair inherited across exec.

use std::os::fd::AsFd;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::Duration;

use ipc::control::{
    socket_pair, HandshakeError, HostEnd, HostEvent, Notice, Request, RequestError, Secret,
    PROTOCOL_VERSION,
};

const TIMEOUT: Duration = Duration::from_secs(10);

/// The helper process, killed and reaped whatever happens.
struct Peer(Option<Child>);

impl Peer {
    /// Waits (bounded) for the helper to exit; returns its success and stdout.
    fn finish(mut self) -> (bool, String) {
        let out = self.0.take().unwrap().wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Spawns the helper with a control connection; returns the host's handshake result.
fn start(
    scenario: &[&str],
    hello_timeout: Duration,
) -> (Result<(HostEnd, Receiver<HostEvent>), HandshakeError>, Peer) {
    let (host, child_end) = socket_pair().unwrap();
    let secret = Secret::random();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ipc-peer"));
    cmd.args(scenario).stdout(Stdio::piped());
    child_end.prepare(&mut cmd, &secret);
    let child = cmd.spawn().unwrap();
    drop(child_end);
    let peer = Peer(Some(child));
    (HostEnd::accept(host, &secret, hello_timeout), peer)
}

/// A file of `len` bytes, standing in for a ring's segment.
fn segment(len: u64) -> std::fs::File {
    let file = tempfile::tempfile().unwrap();
    file.set_len(len).unwrap();
    file
}

fn accept(endpoint: u64, cfg: &str) -> Request {
    Request::Accept {
        endpoint,
        service: "web".into(),
        instance: "api".into(),
        cfg: cfg.into(),
        ring: "receptor-1-0123456789abcdef".into(),
    }
}

#[test]
fn a_whole_life_cycle_is_answered() {
    let (conn, peer) = start(&["control-plugin"], TIMEOUT);
    let (conn, events) = conn.unwrap();
    conn.request(
        Request::Setup {
            global_cfg: "{}".into(),
        },
        TIMEOUT,
    )
    .unwrap();
    let segment = segment(1234);
    conn.accept_with_segment(accept(1, "{}"), segment.as_fd(), TIMEOUT)
        .unwrap();
    assert_eq!(
        conn.accept_with_segment(accept(2, "\"reject\""), segment.as_fd(), TIMEOUT),
        Err(RequestError::Rejected("rejected: web/api".into()))
    );
    assert_eq!(
        conn.accept_with_segment(accept(3, "\"size\""), segment.as_fd(), TIMEOUT),
        Err(RequestError::Rejected("segment of 1234 bytes".into())),
        "the plugin holds the very file the host sent"
    );
    conn.request(Request::Start { endpoint: 1 }, TIMEOUT)
        .unwrap();
    assert_eq!(
        events.recv_timeout(TIMEOUT).unwrap(),
        HostEvent::Notice(Notice::Finished {
            endpoint: 1,
            error: None
        })
    );
    conn.request(Request::Ping, TIMEOUT).unwrap();
    conn.request(Request::Close { endpoint: 1 }, TIMEOUT)
        .unwrap();
    conn.request(Request::Shutdown, TIMEOUT).unwrap();
    let (ok, _) = peer.finish();
    assert!(ok);
    assert!(matches!(
        events.recv_timeout(TIMEOUT).unwrap(),
        HostEvent::Closed { .. }
    ));
    assert!(matches!(
        conn.request(Request::Ping, TIMEOUT),
        Err(RequestError::Disconnected(_))
    ));
}

/// Guards against a plugin keeping descriptors it did not expect: an `Accept` without
/// its segment, or another request with one, is refused and ends the plugin's loop.
#[test]
fn a_request_with_the_wrong_descriptors_is_refused() {
    let (conn, peer) = start(&["control-plugin"], TIMEOUT);
    let (conn, _events) = conn.unwrap();
    assert!(conn.request(accept(1, "{}"), TIMEOUT).is_err());
    let (ok, _) = peer.finish();
    assert!(!ok, "an Accept without its segment ends the plugin");

    let (conn, peer) = start(&["control-plugin"], TIMEOUT);
    let (conn, _events) = conn.unwrap();
    let file = segment(10);
    assert!(conn
        .accept_with_segment(Request::Ping, file.as_fd(), TIMEOUT)
        .is_err());
    let (ok, _) = peer.finish();
    assert!(!ok, "a Ping with a descriptor ends the plugin");
}

#[test]
fn closing_the_host_end_makes_the_plugin_exit() {
    let (conn, peer) = start(&["control-plugin"], TIMEOUT);
    let (conn, _events) = conn.unwrap();
    conn.request(Request::Ping, TIMEOUT).unwrap();
    drop(conn);
    let (ok, out) = peer.finish();
    assert!(ok);
    assert_eq!(out.trim(), "closed");
}

type IsExpected = fn(&HandshakeError) -> bool;

#[test]
fn a_wrong_hello_is_refused_with_the_reason() {
    let cases: [(&str, IsExpected, &str); 3] = [
        (
            "magic",
            |e| matches!(e, HandshakeError::BadMagic),
            "bad magic",
        ),
        (
            "version",
            |e| matches!(e, HandshakeError::Version { host: PROTOCOL_VERSION, plugin } if *plugin == PROTOCOL_VERSION + 98),
            "protocol version mismatch: host speaks 3, plugin speaks 101",
        ),
        (
            "secret",
            |e| matches!(e, HandshakeError::WrongSecret),
            "wrong secret",
        ),
    ];
    for (which, is_expected, text) in cases {
        let (conn, peer) = start(&["control-hello", which], TIMEOUT);
        let err = conn.err().expect("refused");
        assert!(is_expected(&err), "{which}: {err}");
        let (ok, out) = peer.finish();
        assert!(ok, "{which}");
        assert!(out.contains(text), "{which}: the plugin was told {out:?}");
    }
}

#[test]
fn an_oversized_frame_ends_the_connection_with_the_reason() {
    let (conn, peer) = start(&["control-oversize"], TIMEOUT);
    let (_conn, events) = conn.unwrap();
    match events.recv_timeout(TIMEOUT).unwrap() {
        HostEvent::Closed { reason } => assert!(reason.contains("exceeds the limit"), "{reason}"),
        other => panic!("{other:?}"),
    }
    peer.finish();
}

#[test]
fn a_truncated_frame_ends_the_connection_with_the_reason() {
    let (conn, peer) = start(&["control-truncated"], TIMEOUT);
    let (_conn, events) = conn.unwrap();
    match events.recv_timeout(TIMEOUT).unwrap() {
        HostEvent::Closed { reason } => assert!(reason.contains("truncated"), "{reason}"),
        other => panic!("{other:?}"),
    }
    peer.finish();
}

#[test]
fn a_plugin_that_never_answers_times_out() {
    let (conn, _peer) = start(&["control-silent"], TIMEOUT);
    let (conn, _events) = conn.unwrap();
    let short = Duration::from_millis(200);
    assert_eq!(
        conn.request(Request::Ping, short),
        Err(RequestError::Timeout(short))
    );
}

#[test]
fn a_plugin_that_never_says_hello_times_out() {
    // `sleep` inherits the socket but never writes to it.
    let (host, child_end) = socket_pair().unwrap();
    let secret = Secret::random();
    let mut cmd = Command::new("sleep");
    cmd.arg("30");
    child_end.prepare(&mut cmd, &secret);
    let _peer = Peer(Some(cmd.spawn().unwrap()));
    drop(child_end);
    let short = Duration::from_millis(200);
    assert!(matches!(
        HostEnd::accept(host, &secret, short),
        Err(HandshakeError::Timeout(t)) if t == short
    ));
}

/// Review (revA): `request_all` promises each answer "up to `timeout` from when it was
/// sent", but awaits them one after another with a full `timeout` each: a plugin that
/// answers nothing holds the caller N × timeout (1,000 endpoints × 30 s at boot).
#[test]
fn pipelined_requests_to_a_silent_plugin_time_out_together() {
    let (conn, _peer) = start(&["control-silent"], TIMEOUT);
    let (conn, _events) = conn.unwrap();
    let short = Duration::from_millis(200);
    let requests = (0..10).map(|_| (Request::Ping, None)).collect();
    let started = std::time::Instant::now();
    let answers = conn.request_all(requests, short);
    let took = started.elapsed();
    assert!(answers
        .iter()
        .all(|a| matches!(a, Err(RequestError::Timeout(_)))));
    assert!(
        took < short * 3,
        "10 pipelined requests took {took:?}, not about {short:?}"
    );
}
