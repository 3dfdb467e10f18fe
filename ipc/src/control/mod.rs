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
//! mismatch: host speaks 3, plugin speaks 2", "bad magic", "wrong secret"), and closes
//! the connection after a refusal.
//!
//! # Requests
//! The host sends [`Request`]s with ids; the plugin answers each with a response (`Ok` or
//! its own error text) and may send [`Notice`]s at any time (log lines, "endpoint
//! finished"). `Accept` is the one request that carries a file descriptor: its ring's
//! shared-memory segment, sent with `SCM_RIGHTS` beside the frame
//! ([`HostEnd::accept_with_segment`]) and handed over with the request by
//! [`PluginEnd::recv`], which refuses descriptors anywhere else. Both ends are blocking
//! and thread-based: [`HostEnd`] has a reader
//! thread that matches responses to waiting requests, each with a timeout;
//! [`PluginEnd`] reads requests on the caller's thread and lets endpoint threads
//! send notices through a [`Notifier`].
//!
//! # Layout
//! - [`frame`]: length-prefixed frames and their limits.
//! - [`handshake`]: the secret, the hello, the socket pair a plugin inherits.
//! - [`host`]: [`HostEnd`], the host's end: requests with timeouts, notices.
//! - [`plugin`]: [`PluginEnd`], the plugin's end: requests in, answers and notices out.

mod frame;
mod handshake;
mod host;
mod plugin;

use std::time::Duration;

use bincode::{Decode, Encode};

pub use frame::{read_frame, write_frame, FrameError};
pub use handshake::{socket_pair, ChildEnd, HandshakeError, Secret};
pub use host::{HostEnd, HostEvent, RequestError, NOTICE_QUEUE};
pub use plugin::{Incoming, Notifier, PluginEnd, RecvError};

/// Identifies an endpoint (a service instance) within a plugin process; the host picks it.
pub type EndpointId = u64;

/// The version of this protocol; the handshake checks both ends speak the same. Version
/// 2: `Accept` carries its ring's segment as a descriptor (version 1 named it in
/// `/dev/shm`). Version 3: the notices [`Notice::Restarted`] and [`Notice::Coalesced`].
pub const PROTOCOL_VERSION: u32 = 3;
/// The first bytes of a plugin's hello.
pub const MAGIC: [u8; 8] = *b"RCPTRCTL";
/// The largest frame either end accepts.
pub const MAX_FRAME_BYTES: usize = 1 << 20;
/// The environment variable with the number of the child's inherited socket.
pub const CONTROL_FD_ENV: &str = "RECEPTOR_INTERNAL_CONTROL_FD";
/// The environment variable with the hex secret of the handshake.
pub const SECRET_ENV: &str = "RECEPTOR_INTERNAL_SECRET";

pub(super) const HELLO_BYTES: usize = 8 + 4 + 32;
/// How long a write may block (a peer that stops reading).
pub(super) const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

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
        /// The base name of the instance's ring (its label in errors); the ring's
        /// segment travels beside this frame as a file descriptor.
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
    /// An endpoint's `handle` failed and the plugin restarted it in place: same
    /// process, same ring. For a reactor, the host sends the service's full current
    /// state into the ring (after what is already in it), as after a process restart.
    Restarted {
        /// Which endpoint.
        endpoint: EndpointId,
        /// The error it failed with (the whole chain of causes).
        error: String,
    },
    /// How many node updates of a watcher endpoint were merged into later ones while
    /// they waited for room in the ring (coalesced, never sent on their own), in total
    /// since the endpoint started.
    Coalesced {
        /// Which endpoint.
        endpoint: EndpointId,
        /// The running total.
        total: u64,
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
