//! `ShmRing`: a single-producer, single-consumer ring of byte records in shared memory,
//! with named-semaphore wake-ups.
//!
//! One ring carries one session's events one way: a watcher plugin produces and the host
//! consumes, or the host produces and a reactor plugin consumes. The host always creates
//! the ring ([`RingProducer::create`] / [`RingConsumer::create`]) and unlinks its names
//! when its end drops; the plugin opens it by the base name the host sent it.
//!
//! # Layout
//! ```text
//! offset   0  header, written once by the creator, checked by the opener:
//!             magic "RCPTRING" (u64) | layout version (u32) | max record (u32)
//!             capacity (u64) | creator pid (u32) | opener pid (u32)
//! offset 128  producer line: tail (u64) | producer closed (u32) | producer waiting (u32)
//! offset 256  consumer line: head (u64) | consumer closed (u32) | consumer waiting (u32)
//! offset 512  data: `capacity` bytes, a power of two
//! ```
//! The two positions are free-running byte counters (the index is `pos & (capacity-1)`)
//! on lines 128 bytes apart, so the producer's and the consumer's writes never share a
//! cache line (nor an adjacent-line prefetch pair).
//!
//! A record is a little-endian `u32` length, the bytes, and padding to 8. A record never
//! straddles the end of the buffer: when it does not fit before the end, the producer
//! writes the length `u32::MAX` (a wrap marker) and continues at offset 0. A record may
//! take at most half the buffer, so it always fits in an empty ring.
//!
//! # Batching
//! [`RingProducer::try_push_batch`] writes as many records as fit and publishes `tail`
//! once; [`RingConsumer::drain`] copies everything published out of the segment in one
//! or two `memcpy`s, releases the space by publishing `head` once, then parses its own
//! copy. Moving a cache line between cores per batch rather than per record is what puts
//! the ring ahead of a buffered socket.
//!
//! # Wake-ups
//! Each direction has a named POSIX semaphore: `data` (the consumer sleeps on it) and
//! `space` (the producer sleeps on it when the ring is full). A waiter first spins for up
//! to [`DEFAULT_SPIN`] calling `sched_yield` between checks, then stores its "waiting"
//! flag, issues a full fence, checks once more, and sleeps. The other side publishes its
//! position, issues a full fence, and posts only if the flag was set (swapping it to 0 so
//! one sleep gets one post). The two fences make the check-and-sleep race free (one of
//! the two always sees the other's store), and in steady state there is no system call
//! per record or per batch.
//!
//! The spin was tuned on the 2-core machine this project runs on: a semaphore wake-up
//! costs about 35 µs across cores, so spinning for up to 50 µs catches the next batch of
//! a busy peer without a sleep; a pause-only spin starved the peer when both processes
//! shared one core, while `sched_yield` hands the core over, so the same spin serves
//! both placements. An idle waiter sleeps after 50 µs and costs nothing until woken.
//!
//! # A dead peer
//! Sleeps are timed waits of at most [`WAIT_SLICE`]; after each one the waiter checks
//! the peer's closed flag and whether the peer's process is alive (the opener records its
//! pid in the header; a zombie counts as dead). A SIGKILLed peer is noticed within about
//! a slice, never waited on forever.
//!
//! # Untrusted memory
//! Everything read from the segment is checked: the header on open (magic, version,
//! capacity against the segment's real size, the record limit), the positions on every
//! read (`head <= tail <= head + capacity`), and every length and wrap marker against
//! the bytes actually published. A check that fails is a [`RingError::Corrupt`] that
//! names the ring and the offset; the ring is then broken for good. All access goes
//! through [`Mapping`](crate::sys::shm::Mapping)'s bounds-checked copies.
//!
//! # Why not `raw_sync`
//! `raw_sync`'s events and mutexes live inside the shared segment as pthread objects:
//! a peer that dies holding one (or scribbles over it) can wedge the other side, and its
//! waits cannot be combined with a liveness check. Named semaphores keep the wake-up
//! state in the kernel, outside the untrusted segment, have native timed waits, and
//! their names follow the same sweepable scheme as the segment's; the atomics in the
//! segment carry only positions and flags, which are validated on every read.

use std::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::names;
use crate::records::Records;
use crate::semaphore::NamedSemaphore;
use crate::shm::SharedSegment;
use crate::sys::shm::Mapping;

/// The header's magic number ("RCPTRING").
pub const MAGIC: u64 = u64::from_le_bytes(*b"RCPTRING");
/// The layout version this build reads and writes.
pub const LAYOUT_VERSION: u32 = 1;
/// The longest a waiter spins (yielding) before it sleeps.
pub const DEFAULT_SPIN: Duration = Duration::from_micros(50);
/// The longest single sleep; the peer is checked after each.
pub const WAIT_SLICE: Duration = Duration::from_millis(100);

const OFF_MAGIC: usize = 0;
const OFF_VERSION: usize = 8;
const OFF_MAX_RECORD: usize = 12;
const OFF_CAPACITY: usize = 16;
const OFF_CREATOR_PID: usize = 24;
const OFF_OPENER_PID: usize = 28;
const OFF_TAIL: usize = 128;
const OFF_PRODUCER_CLOSED: usize = 136;
const OFF_PRODUCER_WAITING: usize = 140;
const OFF_HEAD: usize = 256;
const OFF_CONSUMER_CLOSED: usize = 264;
const OFF_CONSUMER_WAITING: usize = 268;
const OFF_DATA: usize = 512;

const LEN_BYTES: usize = 4;
const WRAP: u32 = u32::MAX;
const MIN_CAPACITY: usize = 4096;
const MAX_CAPACITY: usize = 1 << 30;

/// The size of a ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingConfig {
    /// Data bytes: a power of two from 4 KiB to 1 GiB.
    pub capacity: usize,
    /// The largest record accepted: at most half the capacity minus the length prefix.
    pub max_record: usize,
}

impl Default for RingConfig {
    /// 1 MiB of data, records up to 256 KiB.
    fn default() -> Self {
        RingConfig {
            capacity: 1 << 20,
            max_record: 256 << 10,
        }
    }
}

impl RingConfig {
    /// A ring of `capacity` bytes taking records up to half of it.
    pub fn with_capacity(capacity: usize) -> Self {
        RingConfig {
            capacity,
            max_record: capacity / 2 - 8,
        }
    }

    fn check(&self) -> Result<(), String> {
        if !self.capacity.is_power_of_two()
            || !(MIN_CAPACITY..=MAX_CAPACITY).contains(&self.capacity)
        {
            return Err(format!(
                "capacity {} is not a power of two between {MIN_CAPACITY} and {MAX_CAPACITY}",
                self.capacity
            ));
        }
        if self.max_record == 0
            || footprint(self.max_record) > self.capacity / 2
            || self.max_record >= WRAP as usize
        {
            return Err(format!(
                "max record {} must be between 1 and half the capacity ({}) minus 8",
                self.max_record, self.capacity
            ));
        }
        Ok(())
    }
}

/// The bytes a record of `len` takes: prefix, payload, padding to 8.
fn footprint(len: usize) -> usize {
    (LEN_BYTES + len + 7) & !7
}

/// A ring could not be created or opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The requested size is not valid.
    #[error("bad ring configuration: {0}")]
    Config(String),
    /// The base name is not one of ours.
    #[error("bad ring name: {0}")]
    Name(String),
    /// The segment could not be created or opened.
    #[error(transparent)]
    Segment(#[from] crate::shm::SegmentError),
    /// A semaphore could not be created or opened.
    #[error("semaphore '{name}': {source}")]
    Semaphore {
        /// Its name.
        name: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The segment's header does not describe a ring this build can use.
    #[error("ring '{name}': {detail}")]
    Header {
        /// The ring's base name.
        name: String,
        /// What does not match.
        detail: String,
    },
}

/// A ring operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    /// A record is larger than the ring accepts; nothing was written.
    #[error("record of {len} bytes is larger than the ring's limit of {max} bytes")]
    TooLarge {
        /// The record's length.
        len: usize,
        /// The ring's limit.
        max: usize,
    },
    /// The other end closed the ring (and, for a consumer, everything was read).
    #[error("the other end closed the ring")]
    Closed,
    /// The other end's process is gone.
    #[error("the other end (process {pid}) is gone")]
    PeerGone {
        /// The peer's pid.
        pid: u32,
    },
    /// The shared state is inconsistent: the peer wrote garbage. The ring is unusable.
    #[error("ring '{ring}' is corrupt: {detail}")]
    Corrupt {
        /// The ring's base name.
        ring: String,
        /// What is wrong, with the offset or position.
        detail: String,
    },
    /// Waiting on a semaphore failed.
    #[error("waiting on ring '{ring}' failed: {detail}")]
    Wait {
        /// The ring's base name.
        ring: String,
        /// The OS error.
        detail: String,
    },
}

/// What both ends share: the mapping, the semaphores and the validated header values.
pub struct ShmRing {
    segment: SharedSegment,
    data: NamedSemaphore,
    space: NamedSemaphore,
    base: String,
    capacity: u64,
    max_record: usize,
    creator: bool,
    /// The head the producer saw when the ring was last full (local to this process).
    full_at_head: AtomicU64,
    /// Set by a [`RingWaker`]: the consumer's wait returns at once.
    kicked: AtomicBool,
}

impl std::fmt::Debug for ShmRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShmRing")
            .field("base", &self.base)
            .field("capacity", &self.capacity)
            .field("max_record", &self.max_record)
            .field("creator", &self.creator)
            .finish()
    }
}

fn word64(m: &Mapping, off: usize) -> &AtomicU64 {
    m.atomic_u64(off)
        .expect("header words are aligned and inside the checked segment")
}

fn word32(m: &Mapping, off: usize) -> &AtomicU32 {
    m.atomic_u32(off)
        .expect("header words are aligned and inside the checked segment")
}

impl ShmRing {
    fn create(cfg: RingConfig) -> Result<ShmRing, OpenError> {
        cfg.check().map_err(OpenError::Config)?;
        let base = names::new_base();
        let segment = SharedSegment::create(&names::segment_name(&base), OFF_DATA + cfg.capacity)?;
        let sem = |role: &str| {
            let name = names::semaphore_name(&base, role);
            NamedSemaphore::create(&name).map_err(|source| OpenError::Semaphore { name, source })
        };
        // Dropping what was made so far unlinks it if the second semaphore fails.
        let data = sem("data")?;
        let space = sem("space")?;
        let m = segment.mapping();
        word32(m, OFF_VERSION).store(LAYOUT_VERSION, Ordering::Relaxed);
        word32(m, OFF_MAX_RECORD).store(cfg.max_record as u32, Ordering::Relaxed);
        word64(m, OFF_CAPACITY).store(cfg.capacity as u64, Ordering::Relaxed);
        word32(m, OFF_CREATOR_PID).store(std::process::id(), Ordering::Relaxed);
        word64(m, OFF_MAGIC).store(MAGIC, Ordering::Release);
        Ok(ShmRing {
            segment,
            data,
            space,
            base,
            capacity: cfg.capacity as u64,
            max_record: cfg.max_record,
            creator: true,
            full_at_head: AtomicU64::new(0),
            kicked: AtomicBool::new(false),
        })
    }

    fn open(base: &str) -> Result<ShmRing, OpenError> {
        names::check_base(base).map_err(OpenError::Name)?;
        let segment = SharedSegment::open(&names::segment_name(base))?;
        let header = |detail: String| OpenError::Header {
            name: base.to_owned(),
            detail,
        };
        let m = segment.mapping();
        if m.len() < OFF_DATA + MIN_CAPACITY {
            return Err(header(format!(
                "segment of {} bytes is too small for a ring",
                m.len()
            )));
        }
        let magic = word64(m, OFF_MAGIC).load(Ordering::Acquire);
        if magic != MAGIC {
            return Err(header(format!(
                "bad magic {magic:#018x}: not a receptor ring"
            )));
        }
        let version = word32(m, OFF_VERSION).load(Ordering::Relaxed);
        if version != LAYOUT_VERSION {
            return Err(header(format!(
                "layout version {version}, this build reads version {LAYOUT_VERSION}"
            )));
        }
        let capacity = word64(m, OFF_CAPACITY).load(Ordering::Relaxed);
        let max_record = word32(m, OFF_MAX_RECORD).load(Ordering::Relaxed) as usize;
        let cfg = RingConfig {
            capacity: usize::try_from(capacity).unwrap_or(usize::MAX),
            max_record,
        };
        cfg.check().map_err(&header)?;
        if OFF_DATA + cfg.capacity > m.len() {
            return Err(header(format!(
                "capacity {capacity} does not fit in a segment of {} bytes",
                m.len()
            )));
        }
        let sem = |role: &str| {
            let name = names::semaphore_name(base, role);
            NamedSemaphore::open(&name).map_err(|source| OpenError::Semaphore { name, source })
        };
        let data = sem("data")?;
        let space = sem("space")?;
        word32(m, OFF_OPENER_PID).store(std::process::id(), Ordering::Release);
        Ok(ShmRing {
            base: base.to_owned(),
            segment,
            data,
            space,
            capacity,
            max_record,
            creator: false,
            full_at_head: AtomicU64::new(0),
            kicked: AtomicBool::new(false),
        })
    }

    fn m(&self) -> &Mapping {
        self.segment.mapping()
    }

    fn tail(&self) -> &AtomicU64 {
        word64(self.m(), OFF_TAIL)
    }

    fn head(&self) -> &AtomicU64 {
        word64(self.m(), OFF_HEAD)
    }

    fn flag(&self, off: usize) -> &AtomicU32 {
        word32(self.m(), off)
    }

    /// The base name the other end opens the ring by.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The largest record this ring takes.
    pub fn max_record(&self) -> usize {
        self.max_record
    }

    /// The other end's pid, once known (the opener records its pid when it opens).
    fn peer_pid(&self) -> u32 {
        let off = if self.creator {
            OFF_OPENER_PID
        } else {
            OFF_CREATOR_PID
        };
        self.flag(off).load(Ordering::Acquire)
    }

    fn corrupt(&self, detail: String) -> RingError {
        RingError::Corrupt {
            ring: self.base.clone(),
            detail,
        }
    }

    /// Checks the positions read from the segment: `head <= tail <= head + capacity`.
    fn check_positions(&self, head: u64, tail: u64) -> Result<u64, RingError> {
        match tail.checked_sub(head) {
            Some(used) if used <= self.capacity => Ok(used),
            _ => Err(self.corrupt(format!(
                "positions out of order: head {head}, tail {tail}, capacity {}",
                self.capacity
            ))),
        }
    }

    /// Wakes the other side if it sleeps on `sem` with its flag at `flag_off` set.
    fn wake(&self, flag_off: usize, sem: &NamedSemaphore) {
        fence(Ordering::SeqCst);
        let flag = self.flag(flag_off);
        if flag.load(Ordering::Relaxed) != 0 && flag.swap(0, Ordering::SeqCst) != 0 {
            if let Err(e) = sem.post() {
                tracing::warn!(ring = %self.base, "cannot post semaphore {}: {e}", sem.name());
            }
        }
    }

    /// Waits until `ready()` or `timeout`: spin with yields, then sleep on `sem` with the
    /// flag at `flag_off` raised. Returns whether `ready()` held; checks the peer's closed
    /// flag (`peer_closed_off`: counts as ready, the caller sees it) and its process.
    #[allow(clippy::too_many_arguments)]
    fn wait(
        &self,
        spin: Duration,
        timeout: Duration,
        flag_off: usize,
        peer_closed_off: usize,
        sem: &NamedSemaphore,
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
            let woke = sem
                .wait_timeout(left.min(WAIT_SLICE))
                .map_err(|e| RingError::Wait {
                    ring: self.base.clone(),
                    detail: e.to_string(),
                });
            flag.store(0, Ordering::Relaxed);
            woke?;
            if ready() {
                return Ok(true);
            }
            if self.kicked.swap(false, Ordering::AcqRel) {
                return Ok(false);
            }
        }
    }
}

/// The producing end of a ring.
pub struct RingProducer {
    ring: Arc<ShmRing>,
    spin: Duration,
    /// Where the next record goes (published up to here after each batch).
    tail: u64,
    /// The last head we read; refreshed only when the ring looks full.
    head_cache: u64,
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
    /// Creates a ring (segment and semaphores, all 0600) whose producer is this process.
    pub fn create(cfg: RingConfig) -> Result<RingProducer, OpenError> {
        Ok(Self::new(ShmRing::create(cfg)?))
    }

    /// Opens the producing end of the ring `base` another process created.
    pub fn open(base: &str) -> Result<RingProducer, OpenError> {
        let ring = ShmRing::open(base)?;
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
            broken: None,
        };
        if let Err(e) = producer.ring.check_positions(head, tail) {
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
        if let Some(r) = records.clone().find(|r| r.as_ref().len() > max) {
            return Err(RingError::TooLarge {
                len: r.as_ref().len(),
                max,
            });
        }
        if self.ring.flag(OFF_CONSUMER_CLOSED).load(Ordering::Acquire) != 0 {
            return Err(RingError::Closed);
        }
        let cap = self.ring.capacity;
        let mut written = 0;
        for record in records {
            let record = record.as_ref();
            let need = footprint(record.len()) as u64;
            let index = self.tail & (cap - 1);
            let to_end = cap - index;
            let total = if need > to_end { to_end + need } else { need };
            if self.tail - self.head_cache + total > cap {
                let head = self.ring.head().load(Ordering::Acquire);
                if let Err(e) = self.ring.check_positions(head, self.tail) {
                    self.broken = Some(e.clone());
                    return Err(e);
                }
                self.head_cache = head;
                if self.tail - head + total > cap {
                    self.ring.full_at_head.store(head, Ordering::Release);
                    break;
                }
            }
            let m = self.ring.m();
            if need > to_end {
                m.write(OFF_DATA + index as usize, &WRAP.to_le_bytes());
                self.tail += to_end;
            }
            let at = OFF_DATA + (self.tail & (cap - 1)) as usize;
            m.write_prefixed(at, record);
            self.tail += need;
            written += 1;
        }
        if written > 0 {
            self.ring.tail().store(self.tail, Ordering::Release);
            self.ring.wake(OFF_CONSUMER_WAITING, &self.ring.data);
        }
        Ok(written)
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
        let _ = self.ring.data.post();
    }
}

/// Waits for space in a producer's ring from any thread (see
/// [`RingProducer::space_waiter`]).
#[derive(Debug, Clone)]
pub struct SpaceWaiter {
    ring: Arc<ShmRing>,
}

impl SpaceWaiter {
    /// Waits up to `timeout` until the consumer frees space after the producer last
    /// found the ring full, closes, or is gone (an error).
    pub fn wait(&self, timeout: Duration) -> Result<bool, RingError> {
        self.wait_for(DEFAULT_SPIN, timeout)
    }

    fn wait_for(&self, spin: Duration, timeout: Duration) -> Result<bool, RingError> {
        let ring = &self.ring;
        let seen = ring.full_at_head.load(Ordering::Acquire);
        ring.wait(
            spin,
            timeout,
            OFF_PRODUCER_WAITING,
            OFF_CONSUMER_CLOSED,
            &ring.space,
            || ring.head().load(Ordering::Acquire) != seen,
        )
    }
}

/// The consuming end of a ring.
pub struct RingConsumer {
    ring: Arc<ShmRing>,
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
    /// Creates a ring (segment and semaphores, all 0600) whose consumer is this process.
    pub fn create(cfg: RingConfig) -> Result<RingConsumer, OpenError> {
        Ok(Self::new(ShmRing::create(cfg)?))
    }

    /// Opens the consuming end of the ring `base` another process created.
    pub fn open(base: &str) -> Result<RingConsumer, OpenError> {
        Ok(Self::new(ShmRing::open(base)?))
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
        let (bytes, spans) = out.parts_mut();
        let base = bytes.len();
        if let Err(e) = self.copy_out(tail, bytes) {
            bytes.truncate(base);
            self.broken = Some(e.clone());
            return Err(e);
        }
        let start = self.head;
        self.head = tail;
        self.ring.head().store(tail, Ordering::Release);
        self.ring.wake(OFF_PRODUCER_WAITING, &self.ring.space);
        let (capacity, max_record) = (self.ring.capacity, self.ring.max_record);
        let parsed = parse(&bytes[base..], start, capacity, max_record, &mut |r| {
            spans.push(base + r.start..base + r.end)
        });
        parsed.map_err(|detail| {
            let e = self.ring.corrupt(detail);
            self.broken = Some(e.clone());
            e
        })
    }

    /// Appends the published bytes [head, tail) to `buf`.
    fn copy_out(&mut self, tail: u64, buf: &mut Vec<u8>) -> Result<(), RingError> {
        let used = self.ring.check_positions(self.head, tail)? as usize;
        let cap = self.ring.capacity as usize;
        let index = (self.head & (self.ring.capacity - 1)) as usize;
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

    /// Waits up to `timeout` until a record is published or the producer closes; true if
    /// something is there to drain.
    pub fn wait(&self, timeout: Duration) -> Result<bool, RingError> {
        let head = self.head;
        self.ring.wait(
            self.spin,
            timeout,
            OFF_CONSUMER_WAITING,
            OFF_PRODUCER_CLOSED,
            &self.ring.data,
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
        let _ = self.ring.space.post();
    }
}

/// Wakes a sleeping consumer of this process from another thread (see
/// [`RingConsumer::waker`]): its current or next wait returns at once.
#[derive(Debug, Clone)]
pub struct RingWaker {
    ring: Arc<ShmRing>,
}

impl RingWaker {
    /// Makes the consumer's wait return.
    pub fn wake(&self) {
        self.ring.kicked.store(true, Ordering::Release);
        let _ = self.ring.data.post();
    }
}

/// Parses the records of `bytes`, copied from ring position `start`: `f` gets where each
/// record lies in `bytes`.
fn parse(
    bytes: &[u8],
    start: u64,
    capacity: u64,
    max_record: usize,
    f: &mut impl FnMut(std::ops::Range<usize>),
) -> Result<usize, String> {
    let mut off = 0usize;
    let mut count = 0;
    while off < bytes.len() {
        let pos = start + off as u64;
        let index = pos & (capacity - 1);
        let left = bytes.len() - off;
        let len_bytes: [u8; 4] = bytes
            .get(off..off + LEN_BYTES)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| format!("record at position {pos} is cut short: {left} bytes left"))?;
        let len = u32::from_le_bytes(len_bytes);
        if len == WRAP {
            let skip = (capacity - index) as usize;
            if skip > left {
                return Err(format!(
                    "wrap marker at position {pos} skips past the published data"
                ));
            }
            off += skip;
            continue;
        }
        let len = len as usize;
        if len > max_record {
            return Err(format!(
                "record at position {pos} claims {len} bytes, over the limit of {max_record}"
            ));
        }
        let need = footprint(len);
        if need > left || need as u64 > capacity - index {
            return Err(format!("record at position {pos} of {len} bytes runs past the published data or the buffer's end"));
        }
        f(off + LEN_BYTES..off + LEN_BYTES + len);
        off += need;
        count += 1;
    }
    Ok(count)
}

#[cfg(test)]
mod tests;
