//! [`HostEnd`]: the host's end of a plugin's control connection. A reader thread matches
//! responses to waiting requests (each with a timeout) and forwards notices.

use std::collections::HashMap;
use std::os::fd::BorrowedFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::frame::{read_frame, read_full, send, send_with_fd, FrameError};
use super::handshake::{is_timeout, HandshakeError, Secret};
use super::{
    HostFrame, Notice, PluginFrame, Request, HELLO_BYTES, MAGIC, PROTOCOL_VERSION, WRITE_TIMEOUT,
};
use crate::codec;

/// How many notices (and the final `Closed`) wait for the host's actor at most. When
/// they are not taken, the reader stops reading: the plugin's writes block, and answers
/// behind the notices wait too (a ping then fails, which restarts a plugin that floods).
/// So a plugin cannot make the host buffer notices without bound.
pub const NOTICE_QUEUE: usize = 16;

/// Why a request got no success.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The plugin answered with an error: its own text.
    #[error("{0}")]
    Rejected(String),
    /// No answer in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The connection is gone.
    #[error("the plugin's control connection is gone: {0}")]
    Disconnected(String),
}

/// What the host's reader thread reports besides responses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostEvent {
    /// A notice from the plugin.
    Notice(Notice),
    /// The connection ended (sent once, last), with the reason.
    Closed {
        /// EOF, a socket error, or the bad frame that ended it.
        reason: String,
    },
}

type Pending = Arc<Mutex<HashMap<u64, Sender<Answer>>>>;

/// A request's answer: done, or the plugin's refusal.
type Answer = Result<(), String>;

/// The host's end of a plugin's control connection.
pub struct HostEnd {
    writer: Mutex<UnixStream>,
    pending: Pending,
    closed: Arc<Mutex<Option<String>>>,
    next_id: AtomicU64,
}

impl HostEnd {
    /// Waits for the plugin's hello, checks magic, version and secret, answers, and
    /// starts the reader thread. A refusal is sent to the plugin before the error returns.
    pub fn accept(
        stream: UnixStream,
        secret: &Secret,
        timeout: Duration,
    ) -> Result<(HostEnd, Receiver<HostEvent>), HandshakeError> {
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
        let mut hello = [0u8; HELLO_BYTES];
        let got = match read_full(&mut &stream, &mut hello) {
            Ok(got) => got,
            Err(e) if is_timeout(&e) => return Err(HandshakeError::Timeout(timeout)),
            Err(e) => return Err(e.into()),
        };
        if got < HELLO_BYTES {
            return Err(FrameError::Truncated {
                expected: HELLO_BYTES,
                got,
            }
            .into());
        }
        let version = u32::from_le_bytes(hello[8..12].try_into().expect("4 bytes"));
        let refusal = if hello[..8] != MAGIC {
            Some(HandshakeError::BadMagic)
        } else if version != PROTOCOL_VERSION {
            Some(HandshakeError::Version {
                host: PROTOCOL_VERSION,
                plugin: version,
            })
        } else if !secret.matches(&hello[12..]) {
            Some(HandshakeError::WrongSecret)
        } else {
            None
        };
        let writer = Mutex::new(stream.try_clone()?);
        if let Some(refusal) = refusal {
            let _ = send(
                &writer,
                &HostFrame::Refused(refusal.to_string()),
                "control frame",
            );
            let _ = stream.shutdown(std::net::Shutdown::Both);
            return Err(refusal);
        }
        send(&writer, &HostFrame::Welcome, "control frame")?;
        stream.set_read_timeout(None)?;
        let (events_tx, events) = mpsc::sync_channel(NOTICE_QUEUE);
        let conn = HostEnd {
            writer,
            pending: Arc::default(),
            closed: Arc::default(),
            next_id: AtomicU64::new(1),
        };
        let pending = conn.pending.clone();
        let closed = conn.closed.clone();
        std::thread::Builder::new()
            .name("control-reader".into())
            .spawn(move || read_loop(stream, pending, closed, events_tx))?;
        Ok((conn, events))
    }

    /// Sends `request` and waits up to `timeout` for its answer.
    pub fn request(&self, request: Request, timeout: Duration) -> Result<(), RequestError> {
        self.request_with(request, None, timeout)
    }

    /// Sends `Accept` with its ring's segment `segment` (the plugin receives its own
    /// copy of the descriptor) and waits up to `timeout` for the answer.
    pub fn accept_with_segment(
        &self,
        request: Request,
        segment: BorrowedFd<'_>,
        timeout: Duration,
    ) -> Result<(), RequestError> {
        self.request_with(request, Some(segment), timeout)
    }

    /// Sends every request of `requests` at once, then waits for their answers in order:
    /// one round trip for all, where [`request`](Self::request) in a loop takes one each
    /// (a plugin with 1,000 endpoints is started in one go). Each answer may take up to
    /// `timeout` after the one before it (a plugin handles its requests one by one, so
    /// a slow but healthy one is not failed for the length of the queue). After the
    /// first answer that does not come, the rest are not waited for: they fail with the
    /// same error at once, so a silent plugin holds the caller one `timeout`, not one
    /// per request.
    /// A request may carry a descriptor to pass beside it (an `Accept`'s segment).
    pub fn request_all(
        &self,
        requests: Vec<(Request, Option<BorrowedFd<'_>>)>,
        timeout: Duration,
    ) -> Vec<Result<(), RequestError>> {
        let sent: Vec<_> = requests
            .into_iter()
            .map(|(request, fd)| self.send_request(request, fd, timeout))
            .collect();
        let mut gone: Option<RequestError> = None;
        sent.into_iter()
            .map(|sent| {
                let (id, rx) = sent?;
                if let Some(e) = &gone {
                    self.pending
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .remove(&id);
                    return Err(e.clone());
                }
                let answer = self.await_answer(id, rx, timeout);
                if let Err(e @ (RequestError::Timeout(_) | RequestError::Disconnected(_))) = &answer
                {
                    gone = Some(e.clone());
                }
                answer
            })
            .collect()
    }

    fn request_with(
        &self,
        request: Request,
        fd: Option<BorrowedFd<'_>>,
        timeout: Duration,
    ) -> Result<(), RequestError> {
        let (id, rx) = self.send_request(request, fd, timeout)?;
        self.await_answer(id, rx, timeout)
    }

    /// Sends `request` (with `fd` beside it) and returns its id and where its answer
    /// will arrive.
    fn send_request(
        &self,
        request: Request,
        fd: Option<BorrowedFd<'_>>,
        timeout: Duration,
    ) -> Result<(u64, mpsc::Receiver<Answer>), RequestError> {
        if let Some(reason) = self
            .closed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
        {
            return Err(RequestError::Disconnected(reason));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel();
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, tx);
        let frame = HostFrame::Request { id, request };
        // A plugin that stops reading holds a write no longer than the request's own
        // timeout (nor than WRITE_TIMEOUT).
        let write_timeout = WRITE_TIMEOUT.min(timeout).max(Duration::from_millis(1));
        let _ = self
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .set_write_timeout(Some(write_timeout));
        let sent = match fd {
            Some(fd) => send_with_fd(&self.writer, &frame, fd, "control frame"),
            None => send(&self.writer, &frame, "control frame"),
        };
        if let Err(e) = sent {
            self.pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&id);
            let reason = format!("cannot send a request to the plugin: {e}");
            // A frame refused before any byte went (too large, not encodable) leaves the
            // stream in step; any other failure may have written half a frame, so the
            // connection is over (the plugin sees it close and is restarted).
            let before_writing = matches!(
                e.kind(),
                std::io::ErrorKind::InvalidInput | std::io::ErrorKind::InvalidData
            );
            if !before_writing {
                self.closed
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get_or_insert(reason.clone());
                self.close();
            }
            return Err(RequestError::Disconnected(reason));
        }
        Ok((id, rx))
    }

    /// Waits up to `timeout` for the answer to request `id`.
    fn await_answer(
        &self,
        id: u64,
        rx: mpsc::Receiver<Answer>,
        timeout: Duration,
    ) -> Result<(), RequestError> {
        match rx.recv_timeout(timeout) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(text)) => Err(RequestError::Rejected(text)),
            Err(RecvTimeoutError::Timeout) => {
                self.pending
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&id);
                Err(RequestError::Timeout(timeout))
            }
            Err(RecvTimeoutError::Disconnected) => {
                let reason = self
                    .closed
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone();
                Err(RequestError::Disconnected(
                    reason.unwrap_or_else(|| "closed".into()),
                ))
            }
        }
    }

    /// Shuts the connection down both ways: the plugin sees the end and exits.
    pub fn close(&self) {
        let writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = writer.shutdown(std::net::Shutdown::Both);
    }
}

impl Drop for HostEnd {
    fn drop(&mut self) {
        self.close();
    }
}

fn read_loop(
    mut stream: UnixStream,
    pending: Pending,
    closed: Arc<Mutex<Option<String>>>,
    events: SyncSender<HostEvent>,
) {
    let mut buf = Vec::new();
    let reason = loop {
        if let Err(e) = read_frame(&mut stream, &mut buf) {
            break match e {
                FrameError::Closed => "the plugin closed its control connection".to_owned(),
                other => format!("bad control frame from the plugin: {other}"),
            };
        }
        match codec::decode::<PluginFrame>(&buf, "plugin control") {
            Ok(PluginFrame::Response { id, result }) => {
                let waiter = pending
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&id);
                if let Some(waiter) = waiter {
                    let _ = waiter.send(result);
                }
            }
            Ok(PluginFrame::Notice(notice)) => {
                let _ = events.send(HostEvent::Notice(notice));
            }
            Err(e) => break format!("bad control frame from the plugin: {e}"),
        }
    };
    *closed.lock().unwrap_or_else(PoisonError::into_inner) = Some(reason.clone());
    pending
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clear();
    let _ = stream.shutdown(std::net::Shutdown::Both);
    let _ = events.send(HostEvent::Closed { reason });
}
