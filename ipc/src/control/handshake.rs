//! The handshake: the plugin speaks first with a fixed 44-byte hello (magic, protocol
//! version, the per-process secret), so that a plugin of any protocol version can be told
//! exactly what is wrong; and the socket pair whose child end a plugin inherits.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::Duration;

use super::frame::FrameError;
use super::{CONTROL_FD_ENV, SECRET_ENV};

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
    pub(super) fn matches(&self, other: &[u8]) -> bool {
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

pub(super) fn is_timeout(e: &io::Error) -> bool {
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
