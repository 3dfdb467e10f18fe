//! One client connection: hyper's HTTP/1.1 on the socket, driven under the
//! connection's deadlines ([`crate::clock`]) and the server's stop signal.
//!
//! hyper does the protocol: keep-alive, chunked bodies, `Expect: 100-continue` (the
//! `100 Continue` goes out when the handler starts reading the body, so a request
//! refused on its head alone never has its body sent). This module adds what hyper
//! leaves to the server: a deadline per request and per idle spell, a graceful stop
//! (the request in progress is answered, then the connection closes; an idle one
//! closes at once), and a lingering close: after the last answer the socket's write
//! side is shut and what the client still sends is read and dropped for a moment, so
//! the close does not reset the connection before the client has read a refusal
//! (a `413` sent while its body was still coming).

use std::convert::Infallible;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::Service;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};

use crate::answer::{Answer, Handler};
use crate::clock::{Clock, Phase, Watched};

/// The server's stop signal: [`RUN`], then [`DRAIN`], then perhaps [`ABORT`].
pub type Stop = watch::Receiver<u8>;
/// Serving.
pub const RUN: u8 = 0;
/// Finish the request in progress, then close.
pub const DRAIN: u8 = 1;
/// Close now.
pub const ABORT: u8 = 2;

/// How long a closed connection is read from for what the client still sends.
const LINGER: Duration = Duration::from_millis(500);
/// How much of it is read at most.
const LINGER_BYTES: usize = 256 * 1024;

/// The deadlines a connection runs under.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// For one request's head and body, from its first byte.
    pub request: Duration,
    /// For a keep-alive connection's wait for its next request.
    pub idle: Duration,
}

/// The hyper service of one connection: the handler, told when a request starts and
/// ends.
struct PerConnection<H> {
    handler: Arc<H>,
    clock: Arc<Clock>,
    request_timeout: Duration,
}

impl<H: Handler> Service<Request<Incoming>> for PerConnection<H> {
    type Response = Answer;
    type Error = Infallible;
    // Boxed: hyper hands the socket back (for the lingering close) only to a service
    // whose future is `Unpin`.
    type Future = Pin<Box<dyn Future<Output = Result<Answer, Infallible>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let deadline = self.clock.request_started() + self.request_timeout;
        let answer = self.handler.clone().answer(request, deadline);
        let clock = self.clock.clone();
        Box::pin(async move {
            let answer = answer.await;
            clock.request_done();
            Ok(answer)
        })
    }
}

/// How a connection ended.
enum End {
    /// hyper finished (the client closed, or a `Connection: close` was answered).
    Done(hyper::Result<()>),
    /// A deadline passed in this phase.
    TimedOut(Phase),
}

/// Serves `stream` until it closes, a deadline passes, or the stop signal says so.
pub async fn serve<H: Handler>(
    stream: TcpStream,
    handler: Arc<H>,
    timeouts: Timeouts,
    mut stop: Stop,
) {
    let _ = stream.set_nodelay(true);
    let peer = stream.peer_addr().ok();
    let clock = Arc::new(Clock::new());
    let service = PerConnection {
        handler,
        clock: clock.clone(),
        request_timeout: timeouts.request,
    };
    let mut conn = http1::Builder::new()
        .keep_alive(true)
        // The deadlines are ours (one for head and body together).
        .header_read_timeout(None)
        .serve_connection(TokioIo::new(Watched::new(stream, clock.clone())), service);
    let mut timer = Box::pin(tokio::time::sleep_until(Instant::now()));
    let mut armed = None;
    let mut draining = false;
    let end = loop {
        let level = *stop.borrow_and_update();
        if level >= ABORT {
            return;
        }
        if level >= DRAIN && !draining {
            draining = true;
            Pin::new(&mut conn).graceful_shutdown();
        }
        tokio::select! {
            end = poll_fn(|cx| drive(&mut conn, &clock, timeouts, timer.as_mut(), &mut armed, cx)) => break end,
            changed = stop.changed() => {
                if changed.is_err() {
                    // The server is gone.
                    return;
                }
            }
        }
    };
    match end {
        End::Done(Ok(())) => {
            let stream = conn.into_parts().io.into_inner().into_inner();
            tokio::select! {
                () = linger(stream) => {}
                _ = stop.wait_for(|level| *level >= ABORT) => {}
            }
        }
        End::Done(Err(e)) => tracing::debug!(?peer, "connection ended: {e}"),
        End::TimedOut(phase) => {
            tracing::debug!(?peer, "connection closed: {phase:?} deadline passed");
        }
    }
}

/// Polls the connection, then arms the deadline of the phase it is now in.
fn drive<C>(
    conn: &mut C,
    clock: &Clock,
    timeouts: Timeouts,
    mut timer: Pin<&mut Sleep>,
    armed: &mut Option<Instant>,
    cx: &mut Context<'_>,
) -> Poll<End>
where
    C: PollConnection,
{
    if let Poll::Ready(result) = conn.poll_connection(cx) {
        return Poll::Ready(End::Done(result));
    }
    // The phase only changes inside the poll above (the socket's reads and the
    // handler both run in it), so checking here after each poll keeps the timer true.
    let (phase, deadline) = clock.deadline(timeouts.request, timeouts.idle);
    let Some(deadline) = deadline else {
        return Poll::Pending;
    };
    if *armed != Some(deadline) {
        timer.as_mut().reset(deadline);
        *armed = Some(deadline);
    }
    match timer.poll(cx) {
        Poll::Ready(()) => Poll::Ready(End::TimedOut(phase)),
        Poll::Pending => Poll::Pending,
    }
}

/// hyper's connection, polled without shutting the socket (it comes back for the
/// lingering close).
trait PollConnection {
    fn poll_connection(&mut self, cx: &mut Context<'_>) -> Poll<hyper::Result<()>>;
}

impl<H: Handler> PollConnection
    for http1::Connection<TokioIo<Watched<TcpStream>>, PerConnection<H>>
{
    fn poll_connection(&mut self, cx: &mut Context<'_>) -> Poll<hyper::Result<()>> {
        self.poll_without_shutdown(cx)
    }
}

/// Shuts the write side and reads what the client still sends, for a moment.
async fn linger(mut stream: TcpStream) {
    if stream.shutdown().await.is_err() {
        return;
    }
    let mut buf = [0u8; 8192];
    let mut read = 0;
    let _ = tokio::time::timeout(LINGER, async {
        while read < LINGER_BYTES {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => read += n,
            }
        }
    })
    .await;
}
