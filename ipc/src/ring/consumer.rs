//! `RingConsumer`: the reading end of a ring, copying everything published out in one
//! or two `memcpy`s and releasing the space at once.

use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::records::Records;

/// The consuming end of a ring.
pub struct RingConsumer {
    pub(super) ring: Arc<ShmRing>,
    spin: Duration,
    head: u64,
    /// The records of a [`drain`](RingConsumer::drain), kept for their memory.
    scratch: Records,
    broken: Option<RingError>,
}

impl std::fmt::Debug for RingConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingConsumer")
            .field("ring", &self.ring)
            .field("head", &self.head)
            .finish()
    }
}

impl RingConsumer {
    /// Creates a ring (a sealed segment, semaphores included) whose consumer is this process.
    pub fn create(cfg: RingConfig) -> Result<RingConsumer, OpenError> {
        Ok(Self::new(ShmRing::create(cfg)?))
    }

    /// Opens the consuming end of the ring `base` another process created, whose segment
    /// it handed over as `segment` (see [`ShmRing::segment_fd`]).
    pub fn open(base: &str, segment: OwnedFd) -> Result<RingConsumer, OpenError> {
        Ok(Self::new(ShmRing::open(base, segment)?))
    }

    fn new(ring: ShmRing) -> RingConsumer {
        let head = ring.head().load(Ordering::Acquire);
        RingConsumer {
            ring: Arc::new(ring),
            spin: DEFAULT_SPIN,
            head,
            scratch: Records::new(),
            broken: None,
        }
    }

    /// The ring's shared part (name, limits).
    pub fn ring(&self) -> &ShmRing {
        &self.ring
    }

    /// Sets how long waits spin before sleeping (default [`DEFAULT_SPIN`]).
    pub fn set_spin(&mut self, spin: Duration) {
        self.spin = spin;
    }

    /// Hands `f` every record published so far, in order, and returns how many; 0 when
    /// there are none. `Err(Closed)` once the producer closed and everything was read.
    pub fn drain(&mut self, f: impl FnMut(&[u8])) -> Result<usize, RingError> {
        self.through_scratch(f, |me, records| me.drain_into(records))
    }

    /// Drains with `drain` into the scratch records, then hands them to `f`.
    fn through_scratch(
        &mut self,
        f: impl FnMut(&[u8]),
        drain: impl FnOnce(&mut Self, &mut Records) -> Result<usize, RingError>,
    ) -> Result<usize, RingError> {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        let drained = drain(self, &mut scratch);
        scratch.iter().for_each(f);
        self.scratch = scratch;
        drained
    }

    /// Like [`drain`](Self::drain), but appends the records to `out` (the bytes are
    /// copied out of the shared segment once, into `out`'s buffer). On a corrupt ring
    /// the records before the damage are in `out` and the error is returned.
    pub fn drain_into(&mut self, out: &mut Records) -> Result<usize, RingError> {
        if let Some(e) = &self.broken {
            return Err(e.clone());
        }
        let tail = self.ring.tail().load(Ordering::Acquire);
        if tail == self.head {
            if self.ring.flag(OFF_PRODUCER_CLOSED).load(Ordering::Acquire) != 0
                && self.ring.tail().load(Ordering::Acquire) == self.head
            {
                return Err(RingError::Closed);
            }
            return Ok(0);
        }
        // Read after the tail: the producer changes it only while the ring is empty, and
        // publishes the tail after, so it is the capacity the bytes up to `tail` use.
        let cap = match self.ring.active() {
            Ok(cap) => cap,
            Err(e) => {
                self.broken = Some(e.clone());
                return Err(e);
            }
        };
        let (bytes, spans) = out.parts_mut();
        let base = bytes.len();
        if let Err(e) = self.copy_out(tail, cap, bytes) {
            bytes.truncate(base);
            self.broken = Some(e.clone());
            return Err(e);
        }
        let start = self.head;
        self.head = tail;
        self.ring.head().store(tail, Ordering::Release);
        self.ring.wake(OFF_PRODUCER_WAITING, OFF_SPACE_SEM);
        let max_record = self.ring.max_record;
        let parsed = parse(&bytes[base..], start, cap, max_record, &mut |r| {
            spans.push(base + r.start..base + r.end)
        });
        parsed.map_err(|detail| {
            let e = self.ring.corrupt(detail);
            self.broken = Some(e.clone());
            e
        })
    }

    /// Appends the published bytes [head, tail) to `buf`, laid out in an active
    /// capacity of `cap` bytes.
    fn copy_out(&mut self, tail: u64, cap: u64, buf: &mut Vec<u8>) -> Result<(), RingError> {
        let used = self.ring.check_positions(self.head, tail, cap)? as usize;
        let index = (self.head & (cap - 1)) as usize;
        let cap = cap as usize;
        let first = used.min(cap - index);
        let base = buf.len();
        buf.resize(base + used, 0);
        let m = self.ring.m();
        let ok = m.read(OFF_DATA + index, &mut buf[base..base + first])
            && m.read(OFF_DATA, &mut buf[base + first..]);
        if ok {
            Ok(())
        } else {
            Err(self.ring.corrupt(format!(
                "{used} bytes at index {index} lie outside the segment"
            )))
        }
    }

    /// Like [`drain`](Self::drain), but waits up to `timeout` for the first record.
    pub fn drain_timeout(
        &mut self,
        timeout: Duration,
        f: impl FnMut(&[u8]),
    ) -> Result<usize, RingError> {
        self.through_scratch(f, |me, records| me.drain_timeout_into(timeout, records))
    }

    /// Like [`drain_into`](Self::drain_into), but waits up to `timeout` for the first
    /// record.
    pub fn drain_timeout_into(
        &mut self,
        timeout: Duration,
        out: &mut Records,
    ) -> Result<usize, RingError> {
        let n = self.drain_into(out)?;
        if n > 0 || timeout.is_zero() {
            return Ok(n);
        }
        self.wait(timeout)?;
        self.drain_into(out)
    }

    /// Waits up to `timeout` (`Duration::MAX`: for good) until a record is published or
    /// the producer closes; true if something is there to drain, false on timeout or
    /// when a [`RingWaker`] woke it.
    pub fn wait(&self, timeout: Duration) -> Result<bool, RingError> {
        let head = self.head;
        self.ring.wait(
            self.spin,
            timeout,
            OFF_CONSUMER_WAITING,
            OFF_PRODUCER_CLOSED,
            OFF_DATA_SEM,
            || self.ring.tail().load(Ordering::Acquire) != head,
        )
    }

    /// A handle that wakes this consumer from another thread (for a close signal).
    pub fn waker(&self) -> RingWaker {
        RingWaker {
            ring: self.ring.clone(),
        }
    }
}

impl Drop for RingConsumer {
    fn drop(&mut self) {
        self.ring
            .flag(OFF_CONSUMER_CLOSED)
            .store(1, Ordering::Release);
        self.ring.post(OFF_SPACE_SEM);
    }
}
