//! Passing file descriptors over a unix socket (`SCM_RIGHTS`): how a ring's memory file
//! travels from the host to a plugin beside the `Accept` frame.
//!
//! On a stream socket the descriptors ride with the first byte of the `sendmsg` that
//! carried them, and `recvmsg` delivers them with the read that takes that byte. The
//! control protocol sends a whole frame per `sendmsg` and the plugin reads each frame
//! with reads sized to the frame, so the descriptors of a frame arrive while that frame
//! is read, never with a neighbour. Received descriptors are close-on-exec at once
//! (`MSG_CMSG_CLOEXEC`) and owned from the moment they arrive, so an unexpected one is
//! closed by dropping it, never leaked.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use nix::errno::Errno;
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

/// The most descriptors one read accepts; more is a protocol error (the rest are closed
/// by the kernel and the read fails).
pub const MAX_FDS: usize = 4;

/// Sends `bytes` (at least the first of them) with `fds` attached; returns how many
/// bytes went. The caller sends the rest with plain writes.
pub fn send_with_fds(sock: &UnixStream, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<usize> {
    let raw: Vec<RawFd> = fds.iter().map(|fd| fd.as_raw_fd()).collect();
    let cmsgs = [ControlMessage::ScmRights(&raw)];
    let iov = [IoSlice::new(bytes)];
    loop {
        match sendmsg::<()>(sock.as_raw_fd(), &iov, &cmsgs, MsgFlags::MSG_NOSIGNAL, None) {
            Ok(n) => return Ok(n),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Reads up to `buf.len()` bytes like `read`, and appends any descriptors that came
/// with them to `fds` (each owned, close-on-exec). 0 means the peer closed.
pub fn recv_with_fds(
    sock: &UnixStream,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
) -> io::Result<usize> {
    let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = loop {
        match recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(msg) => break msg,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    let bytes = msg.bytes;
    let truncated = msg.flags.contains(MsgFlags::MSG_CTRUNC);
    for cmsg in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(received) = cmsg {
            for fd in received {
                // SAFETY: the kernel has just installed `fd` in this process's table for
                // this message; no other code knows its number yet, so the `OwnedFd` is
                // its only owner and closes it exactly once.
                fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    if truncated {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("more than {MAX_FDS} file descriptors in one message"),
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, Write};
    use std::os::fd::AsFd;

    #[test]
    fn a_descriptor_arrives_with_its_bytes_and_only_with_them() {
        let (a, b) = UnixStream::pair().unwrap();
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(b"shared").unwrap();
        assert_eq!(send_with_fds(&a, b"one", &[file.as_fd()]).unwrap(), 3);
        (&a).write_all(b"two").unwrap();
        let mut fds = Vec::new();
        let mut buf = [0u8; 3];
        assert_eq!(recv_with_fds(&b, &mut buf, &mut fds).unwrap(), 3);
        assert_eq!((&buf, fds.len()), (b"one", 1));
        assert_eq!(recv_with_fds(&b, &mut buf, &mut fds).unwrap(), 3);
        assert_eq!(
            (&buf, fds.len()),
            (b"two", 1),
            "no descriptor with the next bytes"
        );
        let mut received = std::fs::File::from(fds.pop().unwrap());
        received.rewind().unwrap();
        let mut text = String::new();
        received.read_to_string(&mut text).unwrap();
        assert_eq!(text, "shared");
        drop(a);
        assert_eq!(recv_with_fds(&b, &mut buf, &mut fds).unwrap(), 0);
    }
}
