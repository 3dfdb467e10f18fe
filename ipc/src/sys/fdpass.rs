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

/// The most descriptors one read accepts; more is a protocol error (all of them are
/// closed and the read fails).
pub const MAX_FDS: usize = 4;

/// The most descriptors the kernel passes with one message (`SCM_MAX_FD`): the control
/// buffer has room for them all, so the kernel never cuts a message's descriptors short
/// (a cut makes `cmsgs()` fail before the installed descriptors could be owned).
const SCM_MAX_FD: usize = 253;

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
    let mut space = nix::cmsg_space!([RawFd; SCM_MAX_FD]);
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
    let mut received_fds = Vec::new();
    for cmsg in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(received) = cmsg {
            for fd in received {
                // SAFETY: the kernel has just installed `fd` in this process's table for
                // this message; no other code knows its number yet, so the `OwnedFd` is
                // its only owner and closes it exactly once.
                received_fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    if truncated || received_fds.len() > MAX_FDS {
        // Dropping them closes every one that arrived.
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} file descriptors in one message, more than the {MAX_FDS} accepted",
                received_fds.len()
            ),
        ));
    }
    fds.extend(received_fds);
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

    /// Review finding: more than MAX_FDS descriptors on one message were installed by
    /// the kernel, then `cmsgs()` failed on the cut message before they were owned: they
    /// leaked. Now they all arrive, are owned, and are closed with the error.
    #[test]
    fn descriptors_beyond_the_limit_are_closed_not_leaked() {
        use nix::fcntl::OFlag;
        // Copies of a pipe's write end: the read end sees EOF only once every copy,
        // the received ones included, is closed (a leaked one leaves it at EAGAIN).
        let (read_end, write_end) =
            nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC).unwrap();
        let (a, b) = UnixStream::pair().unwrap();
        let copies: Vec<BorrowedFd<'_>> = (0..MAX_FDS + 2).map(|_| write_end.as_fd()).collect();
        send_with_fds(&a, b"x", &copies).unwrap();
        drop(copies);
        drop(write_end);
        let mut fds = Vec::new();
        let mut buf = [0u8; 1];
        let err = recv_with_fds(&b, &mut buf, &mut fds).unwrap_err();
        assert!(
            err.to_string().contains("more than the 4 accepted"),
            "{err}"
        );
        assert!(fds.is_empty());
        let mut byte = [0u8; 1];
        assert_eq!(
            nix::unistd::read(read_end.as_raw_fd(), &mut byte),
            Ok(0),
            "a received descriptor of the oversized message is still open"
        );
    }
}
