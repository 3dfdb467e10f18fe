//! `RingProducer`: the writing end of a ring, batching records and publishing `tail`
//! once per batch.

use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::*;

/// The producing end of a ring.
pub struct RingProducer {
    pub(super) ring: Arc<ShmRing>,
    spin: Duration,
    /// Where the next record goes (published up to here after each batch).
    tail: u64,
    /// The last head we read; refreshed only when the ring looks full.
    head_cache: u64,
    /// The active capacity (ours to change: see [`grow`](Self::grow)).
    cap: u64,
    /// Set when the ring was found full: the next push into an empty ring doubles the
    /// active capacity.
    grow_wanted: bool,
    broken: Option<RingError>,
}

impl std::fmt::Debug for RingProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingProducer")
            .field("ring", &self.ring)
            .field("tail", &self.tail)
            .finish()
    }
}

impl RingProducer {
    /// Creates a ring (a sealed segment, semaphores included) whose producer is this process.
    pub fn create(cfg: RingConfig) -> Result<RingProducer, OpenError> {
        Ok(Self::new(ShmRing::create(cfg)?))
    }

    /// Opens the producing end of the ring `base` another process created, whose segment
    /// it handed over as `segment` (see [`ShmRing::segment_fd`]).
    pub fn open(base: &str, segment: OwnedFd) -> Result<RingProducer, OpenError> {
        let ring = ShmRing::open(base, segment)?;
        Ok(Self::new(ring))
    }

    fn new(ring: ShmRing) -> RingProducer {
        let tail = ring.tail().load(Ordering::Acquire);
        let head = ring.head().load(Ordering::Acquire);
        let mut producer = RingProducer {
            ring: Arc::new(ring),
            spin: DEFAULT_SPIN,
            tail,
            head_cache: head,
            cap: MIN_CAPACITY as u64,
            grow_wanted: false,
            broken: None,
        };
        let checked = producer.ring.active().and_then(|cap| {
            producer.cap = cap;
            producer.ring.check_positions(head, tail, cap)
        });
        if let Err(e) = checked {
            producer.broken = Some(e);
        }
        producer
    }

    /// The ring's shared part (name, limits).
    pub fn ring(&self) -> &ShmRing {
        &self.ring
    }

    /// Sets how long waits spin before sleeping (default [`DEFAULT_SPIN`]).
    pub fn set_spin(&mut self, spin: Duration) {
        self.spin = spin;
    }

    /// Writes as many of `records` as fit, in order, publishes them at once, and returns
    /// how many were written (0 when the ring is full). A record over the limit fails
    /// the whole call before anything is written.
    pub fn try_push_batch<I>(&mut self, records: I) -> Result<usize, RingError>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
        I::IntoIter: Clone,
    {
        if let Some(e) = &self.broken {
            return Err(e.clone());
        }
        let records = records.into_iter();
        let max = self.ring.max_record;
        // One look at the lengths: the largest decides both the limit and the growth.
        let largest = records.clone().map(|r| r.as_ref().len()).max();
        if let Some(len) = largest.filter(|&len| len > max) {
            return Err(RingError::TooLarge { len, max });
        }
        if self.ring.flag(OFF_CONSUMER_CLOSED).load(Ordering::Acquire) != 0 {
            return Err(RingError::Closed);
        }
        let Some(largest) = largest else {
            return Ok(0);
        };
        if let Err(e) = self.grow(footprint(largest) as u64) {
            self.broken = Some(e.clone());
            return Err(e);
        }
        let mut written = 0;
        'records: for record in records {
            let record = record.as_ref();
            let need = footprint(record.len()) as u64;
            let (index, to_end) = loop {
                let cap = self.cap;
                let index = self.tail & (cap - 1);
                let to_end = cap - index;
                let total = if need > to_end { to_end + need } else { need };
                if self.tail - self.head_cache + total <= cap {
                    break (index, to_end);
                }
                let head = self.ring.head().load(Ordering::Acquire);
                if let Err(e) = self.ring.check_positions(head, self.tail, cap) {
                    self.broken = Some(e.clone());
                    return Err(e);
                }
                self.head_cache = head;
                if self.tail - head + total <= cap {
                    break (index, to_end);
                }
                if head == self.tail && self.cap < self.ring.capacity {
                    // Empty, and still no room: a record over half the active capacity
                    // (never over half the whole). Waiting would wait for ever, as
                    // nothing is left to consume: grow now (an empty ring may).
                    self.set_active(need);
                    continue;
                }
                self.ring.full_at_head.store(head, Ordering::Release);
                self.grow_wanted = self.cap < self.ring.capacity;
                break 'records;
            };
            let m = self.ring.m();
            if need > to_end {
                m.write(OFF_DATA + index as usize, &WRAP.to_le_bytes());
                self.tail += to_end;
            }
            let at = OFF_DATA + (self.tail & (self.cap - 1)) as usize;
            m.write_prefixed(at, record);
            self.tail += need;
            written += 1;
        }
        if written > 0 {
            self.ring.tail().store(self.tail, Ordering::Release);
            self.ring.wake(OFF_CONSUMER_WAITING, OFF_DATA_SEM);
        }
        Ok(written)
    }

    /// Grows the active capacity, if the ring was found full (or a record of `need`
    /// bytes needs more than half of it) and the ring is empty now: doubled, or more
    /// for the record, up to the ring's capacity. Only an empty ring changes capacity,
    /// and the consumer reads it after the tail this producer publishes next, so both
    /// ends lay out every byte with the same capacity. A ring that is not empty keeps
    /// its capacity; the push finds it full, and the next one tries again.
    fn grow(&mut self, need: u64) -> Result<(), RingError> {
        if !(self.grow_wanted || need > self.cap / 2) || self.cap >= self.ring.capacity {
            return Ok(());
        }
        let head = self.ring.head().load(Ordering::Acquire);
        self.ring.check_positions(head, self.tail, self.cap)?;
        self.head_cache = head;
        if head == self.tail {
            self.set_active(need);
        }
        Ok(())
    }

    /// Doubles the active capacity, or more to fit a record of `need` bytes in half of
    /// it, up to the ring's capacity. Only for an empty ring (`head == tail`, this
    /// producer's own tail: nothing of this batch written yet).
    fn set_active(&mut self, need: u64) {
        let mut cap = self.cap * 2;
        while cap / 2 < need {
            cap *= 2;
        }
        self.cap = cap.min(self.ring.capacity);
        self.grow_wanted = false;
        word64(self.ring.m(), OFF_ACTIVE).store(self.cap, Ordering::Relaxed);
    }

    /// Writes one record if it fits; false when the ring is full.
    pub fn try_push(&mut self, record: &[u8]) -> Result<bool, RingError> {
        Ok(self.try_push_batch(&[record])? == 1)
    }

    /// Writes every record, waiting for space as needed (up to `timeout` for each wait).
    pub fn push_all<R: AsRef<[u8]>>(
        &mut self,
        mut records: &[R],
        timeout: Duration,
    ) -> Result<(), RingError> {
        while !records.is_empty() {
            let n = self.try_push_batch(records)?;
            records = &records[n..];
            if n == 0 && !self.wait_space(timeout)? {
                return Err(RingError::Wait {
                    ring: self.ring.base.clone(),
                    detail: format!("no space within {timeout:?}"),
                });
            }
        }
        Ok(())
    }

    /// Whether the consumer has read everything published.
    pub fn is_consumed(&self) -> bool {
        self.ring.head().load(Ordering::Acquire) == self.tail
    }

    /// Whether the consumer closed its end.
    pub fn is_closed(&self) -> bool {
        self.ring.flag(OFF_CONSUMER_CLOSED).load(Ordering::Acquire) != 0
    }

    /// Waits until the consumer frees space (or closes), up to `timeout`; true if it did.
    pub fn wait_space(&self, timeout: Duration) -> Result<bool, RingError> {
        self.space_waiter().wait_for(self.spin, timeout)
    }

    /// A handle that wakes this producer's waits for space from another thread.
    pub fn waker(&self) -> RingWaker {
        RingWaker {
            ring: self.ring.clone(),
        }
    }

    /// A handle other threads can wait for space with while this producer stays with
    /// its owner (the SDK's and the host's flusher threads use it).
    pub fn space_waiter(&self) -> SpaceWaiter {
        SpaceWaiter {
            ring: self.ring.clone(),
        }
    }
}

impl Drop for RingProducer {
    fn drop(&mut self) {
        self.ring
            .flag(OFF_PRODUCER_CLOSED)
            .store(1, Ordering::Release);
        self.ring.post(OFF_DATA_SEM);
    }
}
