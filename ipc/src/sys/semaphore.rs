//! The wake-up line between two processes: a counting semaphore that is one `u32` in a
//! shared segment, slept on and woken with the `futex` system call.
//!
//! # Why not `sem_init(pshared = 1)`
//! A ring's semaphores live in the ring's sealed segment, which the peer (an untrusted
//! plugin) can write at any time. glibc's process-shared `sem_t` is not safe there: on
//! every `sem_post`/`sem_wait` glibc reads the `private` word *from the semaphore* and
//! turns it into the futex operation it issues. A peer that writes two words of the
//! `sem_t` (a waiter count and `private = 0x7f`) makes the host's next `sem_post` issue
//! an unknown futex operation; the kernel answers `ENOSYS` and glibc calls
//! `futex_fatal_error`, which aborts the process ("The futex facility returned an
//! unexpected error code", exit 134). Other values turn a post into a `FUTEX_WAIT`
//! without a timeout (a hang) or a PI-futex operation.
//!
//! [`SegmentSemaphore`] keeps nothing but the count in the shared word; the futex
//! operations, their flags and the clock are constants of this module, never read from
//! the segment. What a hostile peer can do to the word is set the count: a high count
//! gives spurious wake-ups (the ring re-checks its condition after every wake), a zero
//! count loses a post (the ring's waits return after every wake-up, see
//! [`SegmentSemaphore::wait_once`], and re-check their own conditions), and no
//! value makes a post or a wait fault, block without a deadline, or abort. Any error
//! the kernel reports is returned to the caller (the ring maps it to its `Wait` error).
//!
//! The futex is shared (no `FUTEX_PRIVATE_FLAG`): the kernel keys it by the page of the
//! memory file, so both processes' mappings meet on the same word. `FUTEX_WAIT_BITSET`
//! takes an absolute deadline on `CLOCK_MONOTONIC` (without `FUTEX_CLOCK_REALTIME`), so
//! a step of the wall clock neither stretches nor cuts a wait; it needs Linux 2.6.25 or
//! later and no particular libc (the system call is made directly). The word needs no
//! initialisation beyond the zeroes of a fresh memory file and no destruction: it is
//! plain memory, gone with the segment.

use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// A counting semaphore in a shared `u32` (a ring's `data` or `space` word), borrowed
/// from the mapping it lives in, so it cannot outlive it.
#[derive(Debug, Clone, Copy)]
pub struct SegmentSemaphore<'a> {
    word: &'a AtomicU32,
}

impl<'a> SegmentSemaphore<'a> {
    /// The semaphore whose count is `word` (in a shared mapping, or any memory of this
    /// process: the operations are sound on any live, aligned `u32`).
    pub fn new(word: &'a AtomicU32) -> SegmentSemaphore<'a> {
        SegmentSemaphore { word }
    }

    /// Adds one to the count and wakes one sleeper. The count wraps at `u32::MAX` (only
    /// a peer's scribbling gets it there), which loses that post, nothing more.
    pub fn post(&self) -> io::Result<()> {
        self.word.fetch_add(1, Ordering::Release);
        futex(self.word, libc::FUTEX_WAKE, 1, None).map(drop)
    }

    /// Adds one and wakes every sleeper on the word: a kick, which a peer's own
    /// sleepers queued on the same word must not be able to take instead of ours.
    pub fn post_all(&self) -> io::Result<()> {
        self.word.fetch_add(1, Ordering::Release);
        futex(self.word, libc::FUTEX_WAKE, i32::MAX as u32, None).map(drop)
    }

    /// Takes one if the count is positive, without waiting; true if it took one.
    pub fn try_wait(&self) -> bool {
        self.word
            .fetch_update(Ordering::Acquire, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
    }

    /// Waits until it can take one or `timeout` passes; true if it took one. Interrupted
    /// and spurious wake-ups are resumed. The deadline is on the monotonic clock.
    pub fn wait_timeout(&self, timeout: Duration) -> io::Result<bool> {
        let deadline = monotonic_deadline(timeout)?;
        loop {
            if self.try_wait() {
                return Ok(true);
            }
            // Sleeps only while the count is still 0: a post between the check above and
            // the sleep makes the kernel return EAGAIN at once.
            match futex(self.word, libc::FUTEX_WAIT_BITSET, 0, Some(&deadline)) {
                Ok(_) => {}
                Err(e) => match e.raw_os_error() {
                    Some(libc::EAGAIN) | Some(libc::EINTR) => {}
                    Some(libc::ETIMEDOUT) => return Ok(self.try_wait()),
                    _ => return Err(e),
                },
            }
        }
    }
}

impl SegmentSemaphore<'_> {
    /// Takes one if it can; otherwise sleeps once, until a wake-up or `timeout`, and
    /// takes one if it can then. True if it took one. Unlike
    /// [`wait_timeout`](Self::wait_timeout) it returns after any wake-up, even one whose
    /// count was taken back (by a peer scribbling on the word), so the caller can check
    /// its own conditions (a stop, a dead peer) after every wake-up it was sent.
    pub fn wait_once(&self, timeout: Duration) -> io::Result<bool> {
        if self.try_wait() {
            return Ok(true);
        }
        let deadline = monotonic_deadline(timeout)?;
        match futex(self.word, libc::FUTEX_WAIT_BITSET, 0, Some(&deadline)) {
            Ok(_) => {}
            Err(e) => match e.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::EINTR) | Some(libc::ETIMEDOUT) => {}
                _ => return Err(e),
            },
        }
        Ok(self.try_wait())
    }
}

/// One `futex` call on `word`: `op` is `FUTEX_WAKE` (wake up to `val`) or
/// `FUTEX_WAIT_BITSET` (sleep while `*word == val`, until the absolute monotonic
/// `deadline`), always shared (never `FUTEX_PRIVATE_FLAG`).
fn futex(
    word: &AtomicU32,
    op: libc::c_int,
    val: u32,
    deadline: Option<&libc::timespec>,
) -> io::Result<libc::c_long> {
    let timeout = deadline.map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` is a live, 4-aligned `u32` for the whole call (it is borrowed, and a
    // word in a shared mapping stays mapped while its `Mapping` lives, which the borrow
    // guarantees); the kernel only reads it atomically (WAIT) or not at all (WAKE), and
    // concurrent writes by the peer are what futexes are made for. `timeout` is null or
    // points at a live timespec the kernel only reads. `uaddr2` (null) is unused by both
    // operations, and `val3` is the bitset WAIT_BITSET requires (WAKE ignores it). The
    // operation is one of two constants, never a value from shared memory.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            op,
            val,
            timeout,
            std::ptr::null::<u32>(),
            libc::FUTEX_BITSET_MATCH_ANY,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// The absolute time `timeout` from now on the monotonic clock, as `FUTEX_WAIT_BITSET`
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Instant;

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
        // The wait itself reads the deadline on the same clock: a wait nobody posts
        // lasts its timeout (a wrong clock would return at once, the deadline being in
        // that clock's past, or never).
        let word = AtomicU32::new(0);
        let start = Instant::now();
        assert!(!SegmentSemaphore::new(&word)
            .wait_timeout(Duration::from_millis(200))
            .unwrap());
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(200),
            "returned after {took:?}"
        );
    }

    #[test]
    fn a_timed_wait_returns_at_its_deadline_or_with_a_post() {
        let word = AtomicU32::new(0);
        let sem = SegmentSemaphore::new(&word);
        assert!(!sem.wait_timeout(Duration::from_millis(20)).unwrap());
        sem.post().unwrap();
        assert!(sem.wait_timeout(Duration::from_secs(3600)).unwrap());
        assert!(!sem.try_wait());
    }

    /// A post from another thread wakes a sleeper (the futex wake reaches it).
    #[test]
    fn a_post_wakes_a_sleeper() {
        let word = Arc::new(AtomicU32::new(0));
        let sleeper = {
            let word = word.clone();
            std::thread::spawn(move || {
                SegmentSemaphore::new(&word).wait_timeout(Duration::from_secs(60))
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        SegmentSemaphore::new(&word).post().unwrap();
        assert!(sleeper.join().unwrap().unwrap(), "the post was lost");
    }

    /// Guards against trusting the shared word: whatever a peer writes there, a post and
    /// a wait return (a high count is a spurious wake-up, u32::MAX wraps).
    #[test]
    fn any_count_a_peer_writes_is_harmless() {
        for garbage in [u32::MAX, 0x8000_0000, 0x7f, 1] {
            let word = AtomicU32::new(garbage);
            let sem = SegmentSemaphore::new(&word);
            assert!(sem.wait_timeout(Duration::from_secs(60)).unwrap());
            sem.post().unwrap();
        }
        let word = AtomicU32::new(u32::MAX);
        SegmentSemaphore::new(&word).post().unwrap();
        assert_eq!(word.load(Ordering::Relaxed), 0);
    }
}
