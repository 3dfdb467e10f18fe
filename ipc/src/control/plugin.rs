//! [`PluginEnd`]: the plugin's end of the control connection. Requests are read on the
//! caller's thread; endpoint threads send notices through a [`Notifier`].

use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::frame::{read_frame, send, FrameError};
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

    /// Waits for the next request.
    pub fn recv(&self) -> Result<(u64, Request), RecvError> {
        let mut reader = self.reader.lock().unwrap_or_else(PoisonError::into_inner);
        let (stream, buf) = &mut *reader;
        match read_frame(stream, buf) {
            Ok(()) => {}
            Err(FrameError::Closed) => return Err(RecvError::Closed),
            Err(FrameError::Io(e)) if e.kind() == io::ErrorKind::ConnectionReset => {
                return Err(RecvError::Closed)
            }
            Err(e) => return Err(RecvError::Frame(e)),
        }
        match codec::decode::<HostFrame>(buf, "host control") {
            Ok(HostFrame::Request { id, request }) => Ok((id, request)),
            Ok(other) => Err(RecvError::Frame(FrameError::Io(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unexpected {other:?} after the handshake"),
            )))),
            Err(e) => Err(RecvError::Frame(e.into())),
        }
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
