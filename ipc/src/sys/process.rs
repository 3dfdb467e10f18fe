//! OS calls about child processes: handing a descriptor (the control socket, a ring's
//! segment in tests and benches) to a child across `exec`, and taking it, once, on the
//! child's side.

use std::collections::BTreeSet;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::{Mutex, PoisonError};

use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::sys::stat::{fstat, SFlag};

/// Makes `fd` survive `exec` in the child `cmd` starts (and only there: the parent's
/// copy keeps its close-on-exec flag, so other children never see it).
pub fn inherit_fd(cmd: &mut Command, fd: RawFd) {
    let hook = move || {
        // SAFETY: `fcntl` on an integer fd is async-signal-safe and touches no memory of
        // ours; it runs in the forked child before exec, where only such calls are
        // allowed. A bad fd makes it fail with EBADF, which we report as the spawn error.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        // SAFETY: as above.
        if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    };
    // SAFETY: the hook only calls `fcntl` (async-signal-safe), allocates nothing and
    // takes no locks, as `pre_exec` requires of code run between fork and exec.
    unsafe {
        cmd.pre_exec(hook);
    }
}

/// The inherited descriptors this process has taken ownership of (see
/// [`take_inherited_fd`]); a number is taken at most once per process.
static TAKEN: Mutex<BTreeSet<RawFd>> = Mutex::new(BTreeSet::new());

/// Takes ownership of the descriptor a parent handed this process as number `fd` across
/// `exec` (see [`inherit_fd`]): checks that it is open and not a standard stream, marks
/// it close-on-exec so this process's own children do not inherit it, and returns its
/// owner. A second call for the same number fails, so one inherited descriptor never
/// gets two owners (two `OwnedFd`s would close it twice, the second time perhaps a
/// descriptor opened meanwhile). Call it at start-up, before anything else in the
/// process could have opened a descriptor under that number.
pub fn take_inherited_fd(fd: RawFd) -> io::Result<OwnedFd> {
    let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidInput, what);
    if fd < 3 {
        return Err(invalid(format!("fd {fd} is a standard stream")));
    }
    let mut taken = TAKEN.lock().unwrap_or_else(PoisonError::into_inner);
    if taken.contains(&fd) {
        return Err(invalid(format!(
            "fd {fd} was already taken by this process"
        )));
    }
    fcntl(fd, FcntlArg::F_GETFD).map_err(|e| invalid(format!("fd {fd}: {e}")))?;
    fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).map_err(io::Error::from)?;
    taken.insert(fd);
    // SAFETY: `fd` is open (F_GETFD succeeded). It came from our parent by number, and
    // `TAKEN` (checked and updated under its lock) guarantees no earlier call made an
    // owner for it, so the `OwnedFd` is its sole owner in this process's safe code and
    // closes it exactly once.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// [`take_inherited_fd`] for the control socket: also checks that `fd` is a socket.
pub fn take_inherited_socket(fd: RawFd) -> io::Result<UnixStream> {
    let stat = fstat(fd)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("fd {fd}: {e}")))?;
    if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT != SFlag::S_IFSOCK {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("fd {fd} is not a socket"),
        ));
    }
    Ok(UnixStream::from(take_inherited_fd(fd)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::IntoRawFd;

    /// Guards against two owners of one inherited descriptor: the second take fails,
    /// and the first owner's socket still works.
    #[test]
    fn an_inherited_socket_is_taken_once() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let fd = theirs.into_raw_fd();
        let taken = take_inherited_socket(fd).unwrap();
        let err = take_inherited_socket(fd).unwrap_err();
        assert!(err.to_string().contains("already taken"), "{err}");
        assert!(take_inherited_fd(fd).is_err());
        use std::io::{Read, Write};
        (&ours).write_all(b"x").unwrap();
        let mut byte = [0u8];
        (&taken).read_exact(&mut byte).unwrap();
        assert_eq!(&byte, b"x");
    }

    #[test]
    fn a_standard_stream_is_refused() {
        for fd in 0..3 {
            assert!(take_inherited_fd(fd).is_err(), "fd {fd}");
        }
    }
}
