//! Named POSIX semaphores (`sem_open`), the wake-up line between two processes.
//!
//! [`RawSemaphore`] is the handle `sem_open` returns, closed on drop. Creating, opening,
//! posting, timed waiting and unlinking are the whole surface; ownership (who unlinks)
//! is the business of [`crate::semaphore::NamedSemaphore`].

use std::ffi::CString;
use std::io;
use std::time::Duration;

/// An open named semaphore.
pub struct RawSemaphore {
    sem: *mut libc::sem_t,
}

// SAFETY: a `sem_t*` from `sem_open` may be used from any thread: POSIX semaphores are
// designed for concurrent `sem_post`/`sem_wait` by many threads and processes, and the
// handle itself is only closed in `Drop`, which runs once.
unsafe impl Send for RawSemaphore {}
// SAFETY: see the `Send` impl: every operation on a shared `&RawSemaphore` is thread-safe.
unsafe impl Sync for RawSemaphore {}

fn c_name(name: &str) -> io::Result<CString> {
    CString::new(name).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "semaphore name contains a NUL byte",
        )
    })
}

impl RawSemaphore {
    /// Creates `name` (which starts with `/`) with value 0 and mode 0600; fails if it
    /// exists.
    pub fn create(name: &str) -> io::Result<RawSemaphore> {
        let c = c_name(name)?;
        let mode: libc::c_uint = 0o600;
        let initial: libc::c_uint = 0;
        // SAFETY: `c` is a valid NUL-terminated string that outlives the call; with
        // O_CREAT, sem_open reads exactly the two variadic arguments passed (mode_t
        // promoted to unsigned int, and the initial value), as POSIX specifies.
        let sem =
            unsafe { libc::sem_open(c.as_ptr(), libc::O_CREAT | libc::O_EXCL, mode, initial) };
        if sem == libc::SEM_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(RawSemaphore { sem })
    }

    /// Opens the existing semaphore `name`.
    pub fn open(name: &str) -> io::Result<RawSemaphore> {
        let c = c_name(name)?;
        // SAFETY: `c` is a valid NUL-terminated string; without O_CREAT no variadic
        // arguments are read.
        let sem = unsafe { libc::sem_open(c.as_ptr(), 0) };
        if sem == libc::SEM_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(RawSemaphore { sem })
    }

    /// Removes the name; processes that have it open keep using it.
    pub fn unlink(name: &str) -> io::Result<()> {
        let c = c_name(name)?;
        // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
        if unsafe { libc::sem_unlink(c.as_ptr()) } == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Adds one to the value, waking one waiter.
    pub fn post(&self) -> io::Result<()> {
        // SAFETY: `self.sem` came from a successful sem_open and is not closed until drop.
        if unsafe { libc::sem_post(self.sem) } == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Takes one if the value is positive, without waiting; true if it took one.
    pub fn try_wait(&self) -> bool {
        // SAFETY: as in `post`.
        unsafe { libc::sem_trywait(self.sem) == 0 }
    }

    /// Waits until it can take one or `timeout` passes; true if it took one. Interrupted
    /// waits are resumed. The deadline is on the monotonic clock, so a step of the wall
    /// clock (an NTP correction, an operator's `date -s`) neither stretches nor cuts it.
    pub fn wait_timeout(&self, timeout: Duration) -> io::Result<bool> {
        let abs = monotonic_deadline(timeout)?;
        loop {
            // SAFETY: `self.sem` is open (see `post`) and `abs` is a valid timespec that
            // lives across the call; CLOCK_MONOTONIC is a clock sem_clockwait accepts.
            if unsafe { sem_clockwait(self.sem, libc::CLOCK_MONOTONIC, &abs) } == 0 {
                return Ok(true);
            }
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::ETIMEDOUT) => return Ok(false),
                _ => return Err(err),
            }
        }
    }
}

extern "C" {
    /// `sem_timedwait` against a chosen clock (glibc 2.30 and later; the `libc` crate
    /// declares it only for some targets).
    fn sem_clockwait(
        sem: *mut libc::sem_t,
        clock: libc::clockid_t,
        abstime: *const libc::timespec,
    ) -> libc::c_int;
}

/// The absolute time `timeout` from now on the monotonic clock, as `sem_clockwait`
/// takes it.
pub(crate) fn monotonic_deadline(timeout: Duration) -> io::Result<libc::timespec> {
    let now =
        nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).map_err(io::Error::from)?;
    let deadline = Duration::new(now.tv_sec() as u64, now.tv_nsec() as u32)
        .saturating_add(timeout.min(Duration::from_secs(1 << 32)));
    Ok(libc::timespec {
        tv_sec: deadline.as_secs() as libc::time_t,
        tv_nsec: deadline.subsec_nanos() as libc::c_long,
    })
}

impl Drop for RawSemaphore {
    fn drop(&mut self) {
        // SAFETY: `self.sem` came from sem_open and this is its only close.
        unsafe {
            libc::sem_close(self.sem);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(clock: nix::time::ClockId) -> i64 {
        nix::time::clock_gettime(clock).unwrap().tv_sec()
    }

    /// Guards against a wall-clock step stalling a wait: the deadline of a timed wait is
    /// on the monotonic clock (a wall-clock deadline would move with `date -s`).
    #[test]
    fn a_timed_wait_counts_on_the_monotonic_clock() {
        let before = secs(nix::time::ClockId::CLOCK_MONOTONIC);
        let deadline = monotonic_deadline(Duration::from_secs(60)).unwrap().tv_sec;
        let after = secs(nix::time::ClockId::CLOCK_MONOTONIC);
        assert!(
            (before + 60..=after + 61).contains(&deadline),
            "deadline {deadline}s is not 60 s after the monotonic now ({before}..{after})"
        );
        let wall = secs(nix::time::ClockId::CLOCK_REALTIME);
        assert!((deadline - wall).abs() > 3600, "a wall-clock deadline");
    }

    #[test]
    fn a_timed_wait_returns_at_its_deadline_or_with_a_post() {
        let name = format!("/receptor-test-{}-clock", std::process::id());
        let sem = RawSemaphore::create(&name).unwrap();
        RawSemaphore::unlink(&name).unwrap();
        assert!(!sem.wait_timeout(Duration::from_millis(20)).unwrap());
        sem.post().unwrap();
        assert!(sem.wait_timeout(Duration::from_secs(3600)).unwrap());
    }
}
