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
/// `exec` (see [`inherit_fd`]): checks that it is open, not a standard stream and not
/// close-on-exec, marks it close-on-exec so this process's own children do not inherit
/// it, and returns its owner.
///
/// Why this is safe to offer as a safe function: a descriptor that crossed `exec` is not
/// close-on-exec, while every descriptor Rust's standard library (and this crate) opens
/// is, from the moment it is created. So a number that an owner in this process already
/// holds (`File`, `UnixStream`, `OwnedFd` made by std) is refused, and so is a second
/// take of the same number (the first one set close-on-exec; `TAKEN` also remembers
/// it). One inherited descriptor never gets two owners that would close it twice. What
/// is left is a descriptor opened by a raw call without `O_CLOEXEC` and owned by hand:
/// code that does that already carries its own `unsafe`.
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
    let flags = fcntl(fd, FcntlArg::F_GETFD).map_err(|e| invalid(format!("fd {fd}: {e}")))?;
    if FdFlag::from_bits_truncate(flags).contains(FdFlag::FD_CLOEXEC) {
        return Err(invalid(format!(
            "fd {fd} is close-on-exec: not a descriptor inherited from the parent (an owner in this process holds it)"
        )));
    }
    fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).map_err(io::Error::from)?;
    taken.insert(fd);
    // SAFETY: `fd` is open (F_GETFD succeeded) and was not close-on-exec, so it crossed
    // `exec` from our parent rather than being opened by an owner in this process (std
    // and this crate open everything close-on-exec); `TAKEN`, checked and updated under
    // its lock, and the close-on-exec flag now set guarantee no earlier or later call
    // makes a second owner. The `OwnedFd` is its sole owner and closes it exactly once.
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
        // As `exec` leaves an inherited descriptor: not close-on-exec.
        fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty())).unwrap();
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

    /// Review finding: a safe call could make a second owner of a descriptor that an
    /// owner in this process holds. Such descriptors are close-on-exec and refused.
    #[test]
    fn a_descriptor_an_owner_holds_is_refused() {
        let file = tempfile::tempfile().unwrap();
        let err = take_inherited_fd(std::os::fd::AsRawFd::as_raw_fd(&file)).unwrap_err();
        assert!(err.to_string().contains("close-on-exec"), "{err}");
        // The file is still fine.
        use std::io::Write;
        (&file).write_all(b"still mine").unwrap();
    }

    #[test]
    fn a_standard_stream_is_refused() {
        for fd in 0..3 {
            assert!(take_inherited_fd(fd).is_err(), "fd {fd}");
        }
    }
}
