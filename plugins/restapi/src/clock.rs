//! The deadlines of one connection: one for a whole request, one for idling between
//! requests.
//!
//! A timeout per `read()` lets a client that sends one byte every few seconds hold a
//! connection for hours (slow loris). Here a request gets one deadline,
//! `request_timeout` after its first byte, for its head and its body together, and a
//! keep-alive connection gets `idle_timeout` to start its next request. The
//! connection's phases:
//!
//! - `Idle` (since the connection opened or the last answer): `idle_timeout` runs.
//! - `Head` (since the first byte of a request arrived): `request_timeout` runs; the
//!   connection's driver closes the connection when it passes.
//! - `Busy` (the head is parsed, the handler runs and reads the body): the handler
//!   enforces the same deadline itself on the body, and answers `408` when it passes.
//!
//! [`Watched`] is the socket wrapper that notices a request's first byte; the handler
//! marks the start and end of its work. Everything runs on the connection's own task,
//! so the phase is a plain atomic, read by the driver after each poll.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

const IDLE: u64 = 0;
const HEAD: u64 = 1;
const BUSY: u64 = 2;
const PHASE_SHIFT: u32 = 62;
const SINCE_MASK: u64 = (1 << PHASE_SHIFT) - 1;

/// What a connection is doing and since when.
pub struct Clock {
    /// When the connection opened; `since` counts nanoseconds from here.
    origin: Instant,
    /// The phase in the top two bits, `since` in the rest.
    state: AtomicU64,
}

/// A connection's phase, as the driver sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for a request.
    Idle,
    /// Reading a request's head.
    Head,
    /// The handler has the request.
    Busy,
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

impl Clock {
    /// A clock for a connection opened now (idle).
    pub fn new() -> Self {
        Clock {
            origin: Instant::now(),
            state: AtomicU64::new(IDLE << PHASE_SHIFT),
        }
    }

    fn load(&self) -> (u64, Instant) {
        let v = self.state.load(Ordering::Relaxed);
        (
            v >> PHASE_SHIFT,
            self.origin + Duration::from_nanos(v & SINCE_MASK),
        )
    }

    fn set(&self, phase: u64, at: Instant) {
        let nanos = at.saturating_duration_since(self.origin).as_nanos() as u64;
        self.state.store(
            (phase << PHASE_SHIFT) | (nanos & SINCE_MASK),
            Ordering::Relaxed,
        );
    }

    fn phase_bits(&self) -> u64 {
        self.state.load(Ordering::Relaxed) >> PHASE_SHIFT
    }

    /// Bytes arrived: an idle connection starts a request's head now.
    pub fn bytes_arrived(&self) {
        if self.phase_bits() == IDLE {
            self.set(HEAD, Instant::now());
        }
    }

    /// The handler got a request: returns when the request started (its first byte;
    /// now, for a head that had arrived before the previous answer went out).
    pub fn request_started(&self) -> Instant {
        let (phase, since) = self.load();
        let start = if phase == HEAD { since } else { Instant::now() };
        self.set(BUSY, start);
        start
    }

    /// The handler answered: the connection idles from now.
    pub fn request_done(&self) {
        self.set(IDLE, Instant::now());
    }

    /// The current phase and the deadline the driver enforces in it (none while the
    /// handler has the request).
    pub fn deadline(
        &self,
        request_timeout: Duration,
        idle_timeout: Duration,
    ) -> (Phase, Option<Instant>) {
        let (phase, since) = self.load();
        match phase {
            IDLE => (Phase::Idle, Some(since + idle_timeout)),
            HEAD => (Phase::Head, Some(since + request_timeout)),
            _ => (Phase::Busy, None),
        }
    }
}

/// A socket that tells its connection's [`Clock`] when bytes arrive.
pub struct Watched<S> {
    inner: S,
    clock: std::sync::Arc<Clock>,
}

impl<S> Watched<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, clock: std::sync::Arc<Clock>) -> Self {
        Watched { inner, clock }
    }

    /// The socket back.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.clock.bytes_arrived();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQ: Duration = Duration::from_secs(10);
    const IDLE_T: Duration = Duration::from_secs(60);

    #[tokio::test(start_paused = true)]
    async fn one_deadline_from_the_first_byte_to_the_answer() {
        let clock = Clock::new();
        let opened = Instant::now();
        assert_eq!(
            clock.deadline(REQ, IDLE_T),
            (Phase::Idle, Some(opened + IDLE_T))
        );
        tokio::time::advance(Duration::from_secs(3)).await;
        clock.bytes_arrived();
        let first = Instant::now();
        assert_eq!(
            clock.deadline(REQ, IDLE_T),
            (Phase::Head, Some(first + REQ))
        );
        // More bytes of the same head do not move the deadline.
        tokio::time::advance(Duration::from_secs(4)).await;
        clock.bytes_arrived();
        assert_eq!(
            clock.deadline(REQ, IDLE_T),
            (Phase::Head, Some(first + REQ))
        );
        // The handler's body deadline counts from the same first byte.
        assert_eq!(clock.request_started(), first);
        assert_eq!(clock.deadline(REQ, IDLE_T), (Phase::Busy, None));
        clock.bytes_arrived();
        assert_eq!(clock.deadline(REQ, IDLE_T).0, Phase::Busy);
        clock.request_done();
        let done = Instant::now();
        assert_eq!(
            clock.deadline(REQ, IDLE_T),
            (Phase::Idle, Some(done + IDLE_T))
        );
        // A head that was already buffered starts when the handler gets it.
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(clock.request_started(), Instant::now());
    }
}
