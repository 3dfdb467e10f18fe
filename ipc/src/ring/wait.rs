//! Waiting without a system call in the common case, and sleeping safely when there is
//! nothing to do: the spin, the "waiting" flags, the semaphore post, the peer checks.
//!
//! See "Wake-ups" and "A dead peer" in the [`super`] module doc for the protocol.

use std::sync::atomic::{fence, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;

impl ShmRing {
    /// Wakes the other side if it sleeps on the semaphore at `sem_off` with its flag at
    /// `flag_off` set.
    pub(super) fn wake(&self, flag_off: usize, sem_off: usize) {
        fence(Ordering::SeqCst);
        let flag = self.flag(flag_off);
        if flag.load(Ordering::Relaxed) != 0 && flag.swap(0, Ordering::SeqCst) != 0 {
            if let Err(e) = self.sem(sem_off).post() {
                tracing::warn!(ring = %self.base, "cannot post semaphore at {sem_off}: {e}");
            }
        }
    }

    /// Posts the semaphore at `sem_off` unconditionally (a close, a [`RingWaker`]).
    pub(super) fn post(&self, sem_off: usize) {
        if let Err(e) = self.sem(sem_off).post() {
            tracing::warn!(ring = %self.base, "cannot post semaphore at {sem_off}: {e}");
        }
    }

    /// Waits until `ready()` or `timeout` (`Duration::MAX`: no deadline): spin with
    /// yields, then sleep on the semaphore at `sem_off` with the flag at `flag_off`
    /// raised. Returns whether `ready()` held; false on timeout or when a [`RingWaker`]
    /// kicked this end. The peer's closed flag (`peer_closed_off`) counts as ready (the
    /// caller sees it), and a peer process found dead before a sleep is an error.
    ///
    /// A sleep has no period: it lasts until a post (the peer's, after it published or
    /// closed; a [`RingWaker`]'s, from this process, which is how the host wakes a
    /// waiter whose peer died or whose session it stops) or the deadline. Idle, a
    /// waiter costs nothing.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn wait(
        &self,
        spin: Duration,
        timeout: Duration,
        flag_off: usize,
        peer_closed_off: usize,
        sem_off: usize,
        ready: impl Fn() -> bool,
    ) -> Result<bool, RingError> {
        let start = Instant::now();
        let spin = spin.min(timeout);
        let mut spins = 0u32;
        loop {
            if ready() {
                return Ok(true);
            }
            spins += 1;
            if spins.is_multiple_of(8) && start.elapsed() >= spin {
                break;
            }
            std::thread::yield_now();
        }
        let flag = self.flag(flag_off);
        loop {
            flag.store(1, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            if ready() || self.flag(peer_closed_off).load(Ordering::Acquire) != 0 {
                flag.store(0, Ordering::Relaxed);
                return Ok(true);
            }
            if self.kicked.swap(false, Ordering::AcqRel) {
                flag.store(0, Ordering::Relaxed);
                return Ok(false);
            }
            let pid = self.peer_pid();
            if pid != 0 && !crate::sys::process_alive(pid) {
                flag.store(0, Ordering::Relaxed);
                return Err(RingError::PeerGone { pid });
            }
            let left = timeout.saturating_sub(start.elapsed());
            if left.is_zero() {
                flag.store(0, Ordering::Relaxed);
                return Ok(false);
            }
            // One sleep: it returns on any wake-up, even one whose post a scribbling
            // peer took back, so that the checks above run again.
            let woke = self
                .sem(sem_off)
                .wait_once(left)
                .map_err(|e| RingError::Wait {
                    ring: self.base.clone(),
                    detail: e.to_string(),
                });
            flag.store(0, Ordering::Relaxed);
            woke?;
            if ready() {
                return Ok(true);
            }
        }
    }

    /// Makes this end's current or next wait return (false) at once.
    fn kick(&self) {
        self.kicked.store(true, Ordering::Release);
        // Every sleeper: a plugin may queue threads of its own on the word, and a
        // wake-up of one would go to the first of them, not to ours.
        for sem_off in [OFF_DATA_SEM, OFF_SPACE_SEM] {
            if let Err(e) = self.sem(sem_off).post_all() {
                tracing::warn!(ring = %self.base, "cannot post semaphore at {sem_off}: {e}");
            }
        }
    }
}

/// Waits for space in a producer's ring from any thread (see
/// [`RingProducer::space_waiter`]).
#[derive(Debug, Clone)]
pub struct SpaceWaiter {
    pub(super) ring: Arc<ShmRing>,
}

impl SpaceWaiter {
    /// Waits up to `timeout` until the consumer frees space after the producer last
    /// found the ring full, closes, or is gone (an error).
    pub fn wait(&self, timeout: Duration) -> Result<bool, RingError> {
        self.wait_for(DEFAULT_SPIN, timeout)
    }

    pub(super) fn wait_for(&self, spin: Duration, timeout: Duration) -> Result<bool, RingError> {
        let ring = &self.ring;
        let seen = ring.full_at_head.load(Ordering::Acquire);
        ring.wait(
            spin,
            timeout,
            OFF_PRODUCER_WAITING,
            OFF_CONSUMER_CLOSED,
            OFF_SPACE_SEM,
            || ring.head().load(Ordering::Acquire) != seen,
        )
    }
}

/// Wakes a sleeping end of a ring in this process from another thread (see
/// [`RingConsumer::waker`], [`RingProducer::waker`]): its current or next wait returns
/// at once. The host uses it to stop a session or to tell a waiter its peer died; a
/// plugin, to close an endpoint.
#[derive(Debug, Clone)]
pub struct RingWaker {
    pub(super) ring: Arc<ShmRing>,
}

impl RingWaker {
    /// Makes the waiting end's wait return. It also posts the peer's semaphore once,
    /// which costs the peer one spurious wake-up at most.
    pub fn wake(&self) {
        self.ring.kick();
    }
}
