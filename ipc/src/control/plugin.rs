//! [`PluginEnd`]: the plugin's end of the control connection. Requests are read on the
//! caller's thread; endpoint threads send notices through a [`Notifier`].

use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::frame::{read_frame, read_frame_with, send, FrameError};
use super::handshake::{is_timeout, HandshakeError, Secret};
use super::{
    HostFrame, Notice, PluginFrame, Request, CONTROL_FD_ENV, HELLO_BYTES, MAGIC, PROTOCOL_VERSION,
    SECRET_ENV, WRITE_TIMEOUT,
};
use crate::codec;

/// Why [`PluginEnd::recv`] returned no request.
#[derive(Debug, thiserror::Error)]
pub enum RecvError {
    /// The host closed the connection (or exited).
    #[error("the host closed the control connection")]
    Closed,
    /// A bad frame arrived.
    #[error("bad control frame from the host: {0}")]
    Frame(FrameError),
    /// A request came with the wrong number of file descriptors (they were closed).
    #[error("control request {request} came with {got} file descriptors, expected {expected}")]
    Descriptors {
        /// The request's name.
        request: &'static str,
        /// How many came.
        got: usize,
        /// How many that request carries.
        expected: usize,
    },
}

/// A request as [`PluginEnd::recv`] hands it over.
#[derive(Debug)]
pub struct Incoming {
    /// The id the response must carry.
    pub id: u64,
    /// What to do.
    pub request: Request,
    /// For `Accept`: the ring's shared-memory segment, to open the ring with.
    pub segment: Option<OwnedFd>,
}

fn request_name(request: &Request) -> &'static str {
    match request {
        Request::Setup { .. } => "Setup",
        Request::Accept { .. } => "Accept",
        Request::Start { .. } => "Start",
        Request::Close { .. } => "Close",
        Request::Ping => "Ping",
        Request::Shutdown => "Shutdown",
    }
}

/// The plugin's end of the control connection.
pub struct PluginEnd {
    reader: Mutex<(UnixStream, Vec<u8>)>,
    writer: Arc<Mutex<UnixStream>>,
}

impl PluginEnd {
    /// Takes the socket and secret the host put in this process's environment, and
    /// handshakes.
    pub fn from_env(timeout: Duration) -> Result<PluginEnd, HandshakeError> {
        let var = |name: &'static str| {
            std::env::var(name).map_err(|e| HandshakeError::Env {
                var: name,
                problem: e.to_string(),
            })
        };
        let fd: i32 = var(CONTROL_FD_ENV)?
            .parse()
            .map_err(|e| HandshakeError::Env {
                var: CONTROL_FD_ENV,
                problem: format!("not a file descriptor number: {e}"),
            })?;
        let secret = Secret::from_hex(&var(SECRET_ENV)?).ok_or(HandshakeError::Env {
            var: SECRET_ENV,
            problem: "not 64 hex digits".into(),
        })?;
        let stream =
            crate::sys::process::take_inherited_socket(fd).map_err(|e| HandshakeError::Env {
                var: CONTROL_FD_ENV,
                problem: e.to_string(),
            })?;
        Self::connect(stream, &secret, timeout)
    }

    /// Handshakes over `stream` with `secret`.
    pub fn connect(
        stream: UnixStream,
        secret: &Secret,
        timeout: Duration,
    ) -> Result<PluginEnd, HandshakeError> {
        let mut hello = Vec::with_capacity(HELLO_BYTES);
        hello.extend_from_slice(&MAGIC);
        hello.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
        hello.extend_from_slice(secret.as_bytes());
        Self::connect_with_hello(stream, &hello, timeout)
    }

    /// Handshakes with a hello of the caller's (tests send bad ones).
    pub fn connect_with_hello(
        mut stream: UnixStream,
        hello: &[u8],
        timeout: Duration,
    ) -> Result<PluginEnd, HandshakeError> {
        stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
        stream.write_all(hello)?;
        stream.set_read_timeout(Some(timeout))?;
        let mut buf = Vec::new();
        match read_frame(&mut stream, &mut buf) {
            Ok(()) => {}
            Err(FrameError::Io(e)) if is_timeout(&e) => {
                return Err(HandshakeError::Timeout(timeout))
            }
            Err(FrameError::Closed) => {
                return Err(HandshakeError::Refused(
                    "the host closed the connection".into(),
                ))
            }
            Err(e) => return Err(e.into()),
        }
        match codec::decode::<HostFrame>(&buf, "host control").map_err(FrameError::from)? {
            HostFrame::Welcome => {}
            HostFrame::Refused(reason) => return Err(HandshakeError::Refused(reason)),
            HostFrame::Request { .. } => {
                return Err(HandshakeError::Refused(
                    "a request before the welcome".into(),
                ))
            }
        }
        stream.set_read_timeout(None)?;
        let writer = Arc::new(Mutex::new(stream.try_clone()?));
        Ok(PluginEnd {
            reader: Mutex::new((stream, buf)),
            writer,
        })
    }

    /// Waits for the next request. An `Accept` comes with its ring's segment (one
    /// descriptor, sent beside the frame); any other request comes with none. Descriptors
    /// that break this rule are closed and the frame is refused.
    pub fn recv(&self) -> Result<Incoming, RecvError> {
        let mut reader = self.reader.lock().unwrap_or_else(PoisonError::into_inner);
        let (stream, buf) = &mut *reader;
        let mut fds = Vec::new();
        let read = read_frame_with(
            &mut |b: &mut [u8]| crate::sys::fdpass::recv_with_fds(stream, b, &mut fds),
            buf,
        );
        match read {
            Ok(()) => {}
            Err(FrameError::Closed) => return Err(RecvError::Closed),
            Err(FrameError::Io(e)) if e.kind() == io::ErrorKind::ConnectionReset => {
                return Err(RecvError::Closed)
            }
            Err(e) => return Err(RecvError::Frame(e)),
        }
        let (id, request) = match codec::decode::<HostFrame>(buf, "host control") {
            Ok(HostFrame::Request { id, request }) => (id, request),
            Ok(other) => {
                return Err(RecvError::Frame(FrameError::Io(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("unexpected {other:?} after the handshake"),
                ))))
            }
            Err(e) => return Err(RecvError::Frame(e.into())),
        };
        let expected = usize::from(matches!(request, Request::Accept { .. }));
        if fds.len() != expected {
            return Err(RecvError::Descriptors {
                request: request_name(&request),
                got: fds.len(),
                expected,
            });
        }
        Ok(Incoming {
            id,
            request,
            segment: fds.pop(),
        })
    }

    /// Answers request `id`.
    pub fn respond(&self, id: u64, result: Result<(), String>) -> io::Result<()> {
        send(
            &self.writer,
            &PluginFrame::Response { id, result },
            "control frame",
        )
    }

    /// A handle endpoint threads send notices with.
    pub fn notifier(&self) -> Notifier {
        Notifier {
            writer: self.writer.clone(),
        }
    }
}

/// Sends notices to the host from any thread.
#[derive(Clone)]
pub struct Notifier {
    writer: Arc<Mutex<UnixStream>>,
}

impl Notifier {
    /// Sends one notice.
    pub fn notify(&self, notice: Notice) -> io::Result<()> {
        send(&self.writer, &PluginFrame::Notice(notice), "control frame")
    }
}
