//! Frames: a little-endian `u32` length and a bincode body, the length checked against
//! [`MAX_FRAME_BYTES`] before anything is allocated. A connection that ends inside a
//! frame is a truncated frame, not a hang.

use std::io::{self, Read, Write};
use std::os::fd::BorrowedFd;
use std::os::unix::net::UnixStream;
use std::sync::{Mutex, PoisonError};

use bincode::Encode;

use super::MAX_FRAME_BYTES;
use crate::codec::{self, DecodeFrameError};

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
pub(super) fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
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
    read_frame_with(&mut |b: &mut [u8]| r.read(b), buf)
}

/// Reads one frame's body into `buf` with `read` (a `read` that may also collect
/// descriptors), in reads no longer than what is left of the frame: nothing of the next
/// frame is consumed.
pub(super) fn read_frame_with(
    read: &mut impl FnMut(&mut [u8]) -> io::Result<usize>,
    buf: &mut Vec<u8>,
) -> Result<(), FrameError> {
    let mut r = ReadWith(read);
    let r = &mut r;
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

/// A `Read` over a closure.
struct ReadWith<'a, F>(&'a mut F);

impl<F: FnMut(&mut [u8]) -> io::Result<usize>> Read for ReadWith<'_, F> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (self.0)(buf)
    }
}

/// Writes one frame with `body`.
pub fn write_frame(w: &mut impl Write, body: &[u8]) -> io::Result<()> {
    let frame = frame_bytes(body)?;
    w.write_all(&frame)?;
    w.flush()
}

/// The bytes of a frame with `body`: its length, then the body.
fn frame_bytes(body: &[u8]) -> io::Result<Vec<u8>> {
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
    Ok(frame)
}

pub(super) fn send<T: Encode>(
    stream: &Mutex<UnixStream>,
    value: &T,
    what: &'static str,
) -> io::Result<()> {
    let body =
        codec::encode(value, what).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let mut stream = stream.lock().unwrap_or_else(PoisonError::into_inner);
    write_frame(&mut *stream, &body)
}

/// Sends `value` as one frame with the descriptor `fd` attached to its first byte.
pub(super) fn send_with_fd<T: Encode>(
    stream: &Mutex<UnixStream>,
    value: &T,
    fd: BorrowedFd<'_>,
    what: &'static str,
) -> io::Result<()> {
    let body =
        codec::encode(value, what).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let frame = frame_bytes(&body)?;
    let mut stream = stream.lock().unwrap_or_else(PoisonError::into_inner);
    let sent = crate::sys::fdpass::send_with_fds(&stream, &frame, &[fd])?;
    stream.write_all(&frame[sent..])?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::{HostFrame, PluginFrame, Secret};
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
