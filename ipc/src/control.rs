//! The control protocol: one unix stream connection per plugin process, for its life
//! cycle (the events themselves go through rings).
//!
//! # Connection
//! The host makes a socket pair and hands one end to the child as an inherited file
//! descriptor ([`socket_pair`], [`ChildEnd::prepare`]): its number and a per-process
//! secret travel in the environment (`RECEPTOR_INTERNAL_CONTROL_FD`,
//! `RECEPTOR_INTERNAL_SECRET`). There is no path in the file system to connect to, so no
//! other local user can reach the host's end; the secret guards against a mix-up of
//! descriptors (a child of a child inheriting the wrong one).
//!
//! # Frames
//! Every frame is a little-endian `u32` length and a bincode body. The length is checked
//! against [`MAX_FRAME_BYTES`] before anything is allocated; a connection that ends
//! inside a frame is a truncated frame, not a hang.
//!
//! # Handshake
//! The plugin speaks first with a fixed 44-byte hello, not bincode, so that a plugin of
//! any protocol version can be told exactly what is wrong: the magic `RCPTRCTL`, the
//! protocol version (`u32` LE) and the 32-byte secret. The host answers with a frame,
//! [`HostFrame::Welcome`] or [`HostFrame::Refused`] with the reason ("protocol version
//! mismatch: host speaks 1, plugin speaks 2", "bad magic", "wrong secret"), and closes
//! the connection after a refusal.
//!
//! # Requests
//! The host sends [`Request`]s with ids; the plugin answers each with a response (`Ok` or
//! its own error text) and may send [`Notice`]s at any time (log lines, "endpoint
//! finished"). Both ends are blocking and thread-based: [`HostConnection`] has a reader
//! thread that matches responses to waiting requests, each with a timeout;
//! [`PluginConnection`] reads requests on the caller's thread and lets endpoint threads
//! send notices through a [`Notifier`].

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bincode::{Decode, Encode};

use crate::codec::{self, DecodeFrameError};

/// Identifies an endpoint (a service instance) within a plugin process; the host picks it.
pub type EndpointId = u64;

/// The version of this protocol; the handshake checks both ends speak the same.
pub const PROTOCOL_VERSION: u32 = 1;
/// The first bytes of a plugin's hello.
pub const MAGIC: [u8; 8] = *b"RCPTRCTL";
/// The largest frame either end accepts.
pub const MAX_FRAME_BYTES: usize = 1 << 20;
/// The environment variable with the number of the child's inherited socket.
pub const CONTROL_FD_ENV: &str = "RECEPTOR_INTERNAL_CONTROL_FD";
/// The environment variable with the hex secret of the handshake.
pub const SECRET_ENV: &str = "RECEPTOR_INTERNAL_SECRET";

const HELLO_BYTES: usize = 8 + 4 + 32;
/// How long a write may block (a peer that stops reading).
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// A request from the host to a plugin: the seed's life cycle.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum Request {
    /// Configure the plugin type with its global config (JSON).
    Setup {
        /// The `[watchers.<type>]` / `[reactors.<type>]` table as JSON.
        global_cfg: String,
    },
    /// Accept one service instance.
    Accept {
        /// The id the host gives the endpoint.
        endpoint: EndpointId,
        /// The service's name.
        service: String,
        /// The instance's name within the service.
        instance: String,
        /// The instance's `cfg` as JSON.
        cfg: String,
        /// The base name of the instance's ring.
        ring: String,
    },
    /// Run an accepted endpoint.
    Start {
        /// Which endpoint.
        endpoint: EndpointId,
    },
    /// Fire a running endpoint's close signal.
    Close {
        /// Which endpoint.
        endpoint: EndpointId,
    },
    /// Answer, to show the plugin is alive.
    Ping,
    /// Close every endpoint and exit.
    Shutdown,
}

/// Something a plugin tells the host without being asked.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum Notice {
    /// A log line.
    Log {
        /// `ERROR`, `WARN`, `INFO`, `DEBUG` or `TRACE`.
        level: String,
        /// The text.
        message: String,
    },
    /// An endpoint's `handle` returned.
    Finished {
        /// Which endpoint.
        endpoint: EndpointId,
        /// Its error, if it failed.
        error: Option<String>,
    },
}

/// A frame from the host to a plugin.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum HostFrame {
    /// The hello was accepted.
    Welcome,
    /// The hello was refused, with the reason; the host closes the connection.
    Refused(String),
    /// A request to answer.
    Request {
        /// The id the response must carry.
        id: u64,
        /// What to do.
        request: Request,
    },
}

/// A frame from a plugin to the host.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum PluginFrame {
    /// The answer to request `id`: success or the plugin's error text.
    Response {
        /// The request's id.
        id: u64,
        /// The outcome.
        result: Result<(), String>,
    },
    /// A notice.
    Notice(Notice),
}

/// A frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The connection ended cleanly between frames.
    #[error("connection closed")]
    Closed,
    /// The connection ended inside a frame.
    #[error("truncated frame: {got} of {expected} bytes")]
    Truncated {
        /// Bytes announced (including the 4-byte length).
        expected: usize,
        /// Bytes received.
        got: usize,
    },
    /// The length prefix is over the limit; nothing was allocated.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The announced length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The body is not a valid frame.
    #[error(transparent)]
    Decode(#[from] DecodeFrameError),
    /// The socket failed (a timeout shows up here as `WouldBlock`/`TimedOut`).
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Reads bytes until `buf` is full; returns how many arrived before the end.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Reads one frame's body into `buf`.
pub fn read_frame(r: &mut impl Read, buf: &mut Vec<u8>) -> Result<(), FrameError> {
    let mut len = [0u8; 4];
    match read_full(r, &mut len)? {
        0 => return Err(FrameError::Closed),
        4 => {}
        got => return Err(FrameError::Truncated { expected: 4, got }),
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge {
            len,
            max: MAX_FRAME_BYTES,
        });
    }
    buf.clear();
    buf.resize(len, 0);
    let got = read_full(r, buf)?;
    if got < len {
        return Err(FrameError::Truncated {
            expected: 4 + len,
            got: 4 + got,
        });
    }
    Ok(())
}

/// Writes one frame with `body`.
pub fn write_frame(w: &mut impl Write, body: &[u8]) -> io::Result<()> {
    if body.len() > MAX_FRAME_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "frame of {} bytes exceeds the limit of {MAX_FRAME_BYTES}",
                body.len()
            ),
        ));
    }
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_le_bytes());
    frame.extend_from_slice(body);
    w.write_all(&frame)?;
    w.flush()
}

fn send<T: Encode>(stream: &Mutex<UnixStream>, value: &T, what: &'static str) -> io::Result<()> {
    let body =
        codec::encode(value, what).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let mut stream = stream.lock().unwrap_or_else(PoisonError::into_inner);
    write_frame(&mut *stream, &body)
}

/// The per-process secret of the handshake.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret([u8; 32]);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// A fresh secret from the OS's random source.
    pub fn random() -> Secret {
        Secret(rand::random())
    }

    /// The secret as 64 hex digits.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Parses 64 hex digits.
    pub fn from_hex(hex: &str) -> Option<Secret> {
        if hex.len() != 64 || !hex.is_ascii() {
            return None;
        }
        let mut bytes = [0u8; 32];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Secret(bytes))
    }

    /// The secret's bytes, as the hello carries them.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Compares in time independent of where the secrets differ.
    fn matches(&self, other: &[u8]) -> bool {
        other.len() == 32
            && self
                .0
                .iter()
                .zip(other)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

/// The handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// An environment variable the host sets is missing or malformed.
    #[error(
        "environment variable {var}: {problem} (is this process started by the receptor host?)"
    )]
    Env {
        /// The variable.
        var: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// The peer's hello does not start with the magic.
    #[error("bad magic in the hello: the peer does not speak the receptor control protocol")]
    BadMagic,
    /// The two ends speak different protocol versions.
    #[error("protocol version mismatch: host speaks {host}, plugin speaks {plugin}")]
    Version {
        /// The host's version.
        host: u32,
        /// The plugin's version.
        plugin: u32,
    },
    /// The plugin presented the wrong secret.
    #[error("wrong secret in the hello")]
    WrongSecret,
    /// The host refused the plugin, with its reason.
    #[error("the host refused the connection: {0}")]
    Refused(String),
    /// The peer said nothing in time.
    #[error("no handshake within {0:?}")]
    Timeout(Duration),
    /// A frame of the handshake was bad.
    #[error("bad handshake frame: {0}")]
    Frame(#[from] FrameError),
    /// The socket failed.
    #[error("{0}")]
    Io(#[from] io::Error),
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// The child's end of a socket pair, to hand to a plugin process.
#[derive(Debug)]
pub struct ChildEnd {
    stream: UnixStream,
}

/// Makes the control connection of a plugin process: the host's end and the child's.
pub fn socket_pair() -> io::Result<(UnixStream, ChildEnd)> {
    let (host, child) = UnixStream::pair()?;
    Ok((host, ChildEnd { stream: child }))
}

impl ChildEnd {
    /// Makes `cmd` pass this end to the child (and only to it), with the secret. Drop
    /// the `ChildEnd` once the child is spawned so the host keeps no copy.
    pub fn prepare(&self, cmd: &mut Command, secret: &Secret) {
        let fd = self.stream.as_raw_fd();
        cmd.env(CONTROL_FD_ENV, fd.to_string());
        cmd.env(SECRET_ENV, secret.to_hex());
        crate::sys::process::inherit_fd(cmd, fd);
    }
}

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

type Pending = Arc<Mutex<HashMap<u64, Sender<Result<(), String>>>>>;

/// The host's end of a plugin's control connection.
pub struct HostConnection {
    writer: Mutex<UnixStream>,
    pending: Pending,
    closed: Arc<Mutex<Option<String>>>,
    next_id: AtomicU64,
}

impl HostConnection {
    /// Waits for the plugin's hello, checks magic, version and secret, answers, and
    /// starts the reader thread. A refusal is sent to the plugin before the error returns.
    pub fn accept(
        stream: UnixStream,
        secret: &Secret,
        timeout: Duration,
    ) -> Result<(HostConnection, Receiver<HostEvent>), HandshakeError> {
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
        let (events_tx, events) = mpsc::channel();
        let conn = HostConnection {
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
        if let Err(e) = send(
            &self.writer,
            &HostFrame::Request { id, request },
            "control frame",
        ) {
            self.pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&id);
            return Err(RequestError::Disconnected(e.to_string()));
        }
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

impl Drop for HostConnection {
    fn drop(&mut self) {
        self.close();
    }
}

fn read_loop(
    mut stream: UnixStream,
    pending: Pending,
    closed: Arc<Mutex<Option<String>>>,
    events: Sender<HostEvent>,
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

/// Why [`PluginConnection::recv`] returned no request.
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
pub struct PluginConnection {
    reader: Mutex<(UnixStream, Vec<u8>)>,
    writer: Arc<Mutex<UnixStream>>,
}

impl PluginConnection {
    /// Takes the socket and secret the host put in this process's environment, and
    /// handshakes.
    pub fn from_env(timeout: Duration) -> Result<PluginConnection, HandshakeError> {
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
    ) -> Result<PluginConnection, HandshakeError> {
        let mut hello = Vec::with_capacity(HELLO_BYTES);
        hello.extend_from_slice(&MAGIC);
        hello.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
        hello.extend_from_slice(&secret.0);
        Self::connect_with_hello(stream, &hello, timeout)
    }

    /// Handshakes with a hello of the caller's (tests send bad ones).
    pub fn connect_with_hello(
        mut stream: UnixStream,
        hello: &[u8],
        timeout: Duration,
    ) -> Result<PluginConnection, HandshakeError> {
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
        Ok(PluginConnection {
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_secret_survives_hex() {
        let secret = Secret::random();
        assert_eq!(Secret::from_hex(&secret.to_hex()), Some(secret.clone()));
        assert_eq!(Secret::from_hex("zz"), None);
        assert!(!format!("{secret:?}").contains(&secret.to_hex()[..8]));
    }

    #[test]
    fn frames_round_trip_and_limits_hold() {
        let mut wire = Vec::new();
        write_frame(&mut wire, b"hello").unwrap();
        let mut buf = Vec::new();
        read_frame(&mut &wire[..], &mut buf).unwrap();
        assert_eq!(buf, b"hello");
        let over = ((MAX_FRAME_BYTES + 1) as u32).to_le_bytes();
        assert!(matches!(
            read_frame(&mut &over[..], &mut buf),
            Err(FrameError::TooLarge { .. })
        ));
        assert!(matches!(
            read_frame(&mut &wire[..6], &mut buf),
            Err(FrameError::Truncated { .. })
        ));
        assert!(matches!(
            read_frame(&mut &[][..], &mut buf),
            Err(FrameError::Closed)
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(
            std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64)
        ))]

        /// Arbitrary bytes on the wire: frames or errors, never a panic.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut r = &bytes[..];
            let mut buf = Vec::new();
            while read_frame(&mut r, &mut buf).is_ok() {
                let _ = codec::decode::<HostFrame>(&buf, "host control");
                let _ = codec::decode::<PluginFrame>(&buf, "plugin control");
            }
            let _ = codec::decode::<HostFrame>(&bytes, "host control");
            let _ = codec::decode::<PluginFrame>(&bytes, "plugin control");
        }
    }
}
