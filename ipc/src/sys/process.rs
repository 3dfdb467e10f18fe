//! OS calls about child processes: handing a socket to a child across `exec`, and
//! taking it back on the child's side.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::Command;

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

/// Takes ownership of the socket a parent handed this process as fd number `fd`, after
/// checking that it is an open socket, and marks it close-on-exec so this process's own
/// children do not inherit it. Call once, at start-up, for an fd nothing else owns.
pub fn take_inherited_socket(fd: RawFd) -> io::Result<UnixStream> {
    if fd < 3 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("fd {fd} is a standard stream, not a socket"),
        ));
    }
    let stat = fstat(fd)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("fd {fd}: {e}")))?;
    if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT != SFlag::S_IFSOCK {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("fd {fd} is not a socket"),
        ));
    }
    fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).map_err(io::Error::from)?;
    // SAFETY: `fd` is open (fstat succeeded) and is a socket; the caller hands us the
    // only reference to it (it came from our parent by number, and this function is
    // called once), so the `OwnedFd` is its sole owner and closes it exactly once.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    Ok(UnixStream::from(owned))
}
