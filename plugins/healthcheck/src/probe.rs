//! One check of one node: a TCP connect, or an HTTP/1.1 `GET` on a fresh connection.
//!
//! Every check opens its own connection and drops it at the end, so a check sees what a
//! new client would (a pooled connection could outlive the listener it was opened to).
//! The caller bounds the whole check, connection and answer, with the instance's
//! `timeout`; here a check only says whether it passed and, if not, why.

use bytes::Bytes;
use http_body_util::Empty;
use hyper::header::{CONNECTION, HOST, USER_AGENT};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::config::{Expect, Probe};

/// The `User-Agent` of HTTP checks.
const AGENT: &str = concat!("receptor-healthcheck/", env!("CARGO_PKG_VERSION"));

/// Runs `probe` against `host:port`; `Err` says why it failed.
pub async fn check(probe: &Probe, host: &str, port: u16) -> Result<(), String> {
    let stream = TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", authority(host, port)))?;
    match probe {
        Probe::Tcp => Ok(()),
        Probe::Http { path, expect } => http_get(stream, host, port, path, expect).await,
    }
}

async fn http_get(
    stream: TcpStream,
    host: &str,
    port: u16,
    path: &str,
    expect: &Expect,
) -> Result<(), String> {
    let authority = authority(host, port);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("GET http://{authority}{path}: {e}"))?;
    let request = Request::get(path)
        .header(HOST, &authority)
        .header(USER_AGENT, AGENT)
        .header(CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("GET http://{authority}{path}: {e}"))?;
    // The connection runs beside the request; the answer's head is all a check needs,
    // and dropping both closes the connection. A connection that ends cleanly has
    // handed its answer (if any) to the request already.
    let request = sender.send_request(request);
    tokio::pin!(conn, request);
    let answer = tokio::select! {
        biased;
        answer = &mut request => answer,
        ended = &mut conn => match ended {
            Ok(()) => request.await,
            Err(e) => return Err(format!("GET http://{authority}{path}: {e}")),
        },
    };
    let status = answer
        .map_err(|e| format!("GET http://{authority}{path}: {e}"))?
        .status()
        .as_u16();
    if expect.accepts(status) {
        Ok(())
    } else {
        Err(format!("GET http://{authority}{path} answered {status}"))
    }
}

/// `host:port`, with an IPv6 address in brackets.
pub fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}
