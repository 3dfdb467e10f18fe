//! `ShmRing`: a single-producer, single-consumer ring of byte records in shared memory,
//! with wake-up semaphores inside the same segment.
//!
//! One ring carries one session's events one way: a watcher plugin produces and the host
//! consumes, or the host produces and a reactor plugin consumes. The host always creates
//! the ring ([`RingProducer::create`] / [`RingConsumer::create`]). The whole ring,
//! positions, flags, wake-up semaphores and data, is one sealed memory file
//! ([`crate::shm`]) whose descriptor the host hands to the plugin over the control
//! socket; the plugin opens the ring with it and the base name (which only labels the
//! ring in errors and `/proc/<pid>/fd`). Nothing of a ring has a name in `/dev/shm`:
//! nothing to unlink, to leave behind, or for another process to open or truncate.
//!
//! # Layout
//! ```text
//! offset   0  header, written once by the creator, checked by the opener:
//!             magic "RCPTRING" (u64) | layout version (u32) | max record (u32)
//!             capacity (u64) | creator pid (u32) | unused (u32, was the opener pid)
//! offset 128  producer line: tail (u64) | producer closed (u32) | producer waiting (u32)
//!             | active capacity (u64)
//! offset 256  consumer line: head (u64) | consumer closed (u32) | consumer waiting (u32)
//! offset 384  `data` semaphore: its count (u32), the consumer sleeps on it
//! offset 448  `space` semaphore: its count (u32), the producer sleeps on it
//! offset 512  data: `capacity` bytes, a power of two
//! ```
//! The two positions are free-running byte counters (the index is `pos & (active-1)`)
//! on lines 128 bytes apart, so the producer's and the consumer's writes never share a
//! cache line (nor an adjacent-line prefetch pair).
//!
//! # Growing while busy
//! `capacity` is what the ring may grow to (the segment's data area); the *active*
//! capacity is how much of it the positions wrap around now. A ring starts small
//! ([`INITIAL_CAPACITY`], one page) and the producer doubles the active capacity, up to
//! `capacity`, after it found the ring full (or to fit a record larger than half of
//! it). It changes it only while the ring is empty (`head == tail`), and stores it
//! before it publishes the next tail, so the consumer, which reads it after loading the
//! tail, lays out every byte it copies with the capacity the producer wrote it with.
//! The pages past the active capacity are never touched, and a memory file allocates
//! pages only when they are touched: an idle ring costs two pages, a busy one what its
//! traffic needed, and the configuration alone (how many endpoints, how large their
//! rings may grow) costs nothing. A ring does not shrink again.
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
//! The ring has two semaphores in its header: `data` (the consumer sleeps on it) and
//! `space` (the producer sleeps on it when the ring is full), each a count in the
//! segment slept on with a shared futex ([`crate::sys::semaphore`]). A waiter first spins for up
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
//! both placements. An idle waiter sleeps after 50 µs and costs nothing until woken:
//! a sleep has no period, it lasts until a post or the caller's deadline.
//!
//! # A dead peer, a stop
//! A peer that closes its end posts the other side's semaphore. A peer that dies
//! cannot: its death reaches the waiter from outside the ring. Before each sleep the
//! waiter checks the peer's closed flag and whether the peer's process is alive (a
//! zombie counts as dead); during a sleep, whoever learns of the death wakes it with a
//! [`RingWaker`] (the host's plugin actor learns it from the control connection and
//! stops the plugin's sessions; a plugin's SDK learns the host's from the same
//! connection and closes its endpoints), and the wait returns. No wait polls: an idle
//! host with thousands of endpoints makes no wake-up at all. Which process is the peer
//! is never read from the segment on the host's side: the host tells its end the pid of
//! the child it spawned ([`ShmRing::set_peer`]); a plugin's end takes the creator's pid
//! from the header (the host wrote it, and the host is not the party a plugin must
//! distrust).
//!
//! # Untrusted memory
//! Everything read from the segment is checked: the header on open (magic, version,
//! capacity against the segment's real size, the record limit), the active capacity
//! and the positions on every read (`head <= tail <= head + active`), and every length and wrap marker against
//! the bytes actually published. A check that fails is a [`RingError::Corrupt`] that
//! names the ring and the offset; the ring is then broken for good. All access goes
//! through [`Mapping`](crate::sys::shm::Mapping)'s bounds-checked copies, and the
//! segment's size is sealed, so a peer cannot shrink it under our mapping (which would
//! turn an in-bounds access into a SIGBUS): that holds for the semaphores too, which are
//! words of the segment, so a post or a wait can never fault.
//!
//! The semaphores' counts are as untrusted as the rest. A peer that writes them can
//! cause spurious wake-ups (every wake is followed by a re-check of the condition) or
//! lose its own posts (a wait returns after every wake-up, so a [`RingWaker`]'s post
//! still ends it, and the peer only delays the records it sends itself), never a
//! fault, an abort or a wait that a stop cannot end; an error from the kernel is a
//! [`RingError::Wait`], never a panic. That is why they are not glibc's `sem_t`
//! (`sem_init` with `pshared`): glibc takes the futex operation it issues from a word of
//! the `sem_t` itself, and a peer scribbling on it makes glibc abort the host (see
//! [`crate::sys::semaphore`]). The futex operations, flags and clock are ours.
//!
//! # Why not `raw_sync`, or named semaphores
//! `raw_sync`'s events and mutexes live inside the shared segment as pthread objects:
//! a peer that dies holding one (or scribbles over it) can wedge the other side, and its
//! waits cannot be combined with a liveness check. Named POSIX semaphores (what rings
//! used before layout version 2) are files in `/dev/shm` that any process of the same
//! user can truncate, after which the host's next `sem_post` touched a page past the end
//! of the file and died of SIGBUS. A futex count in the sealed segment has neither
//! problem: it holds no lock, its waits are timed, and its memory cannot go away.

mod consumer;
mod layout;
mod producer;
mod wait;

use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use crate::names;
use crate::shm::SharedSegment;
use crate::sys::semaphore::SegmentSemaphore;
use crate::sys::shm::Mapping;

pub use consumer::RingConsumer;
use layout::*;
pub use layout::{RingConfig, DEFAULT_SPIN, INITIAL_CAPACITY, LAYOUT_VERSION, MAGIC};
pub use producer::RingProducer;
pub use wait::{RingWaker, SpaceWaiter};

/// A ring could not be created or opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The requested size is not valid.
    #[error("bad ring configuration: {0}")]
    Config(String),
    /// The base name is not one of ours.
    #[error("bad ring name: {0}")]
    Name(String),
    /// The segment could not be created or mapped.
    #[error(transparent)]
    Segment(#[from] crate::shm::SegmentError),
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

/// What both ends share: the mapping (with the semaphores in it) and the validated
/// header values.
pub struct ShmRing {
    segment: SharedSegment,
    base: String,
    capacity: u64,
    max_record: usize,
    creator: bool,
    /// The head the producer saw when the ring was last full (local to this process).
    full_at_head: AtomicU64,
    /// Set by a [`RingWaker`]: the consumer's wait returns at once.
    kicked: AtomicBool,
    /// The peer's pid (0: not known yet, not checked). Local to this process, never in
    /// the segment, where the peer could write any pid.
    peer: AtomicU32,
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
        let segment = SharedSegment::create(&base, OFF_DATA + cfg.capacity)?;
        let m = segment.mapping();
        // The semaphores start at 0, as a fresh memory file does: written anyway, so the
        // layout does not silently depend on it. The peer sees the segment only later.
        word32(m, OFF_DATA_SEM).store(0, Ordering::Relaxed);
        word32(m, OFF_SPACE_SEM).store(0, Ordering::Relaxed);
        word32(m, OFF_VERSION).store(LAYOUT_VERSION, Ordering::Relaxed);
        word32(m, OFF_MAX_RECORD).store(cfg.max_record as u32, Ordering::Relaxed);
        word64(m, OFF_CAPACITY).store(cfg.capacity as u64, Ordering::Relaxed);
        word64(m, OFF_ACTIVE).store(cfg.initial as u64, Ordering::Relaxed);
        word32(m, OFF_CREATOR_PID).store(std::process::id(), Ordering::Relaxed);
        word64(m, OFF_MAGIC).store(MAGIC, Ordering::Release);
        Ok(ShmRing {
            segment,
            base,
            capacity: cfg.capacity as u64,
            max_record: cfg.max_record,
            creator: true,
            full_at_head: AtomicU64::new(0),
            kicked: AtomicBool::new(false),
            peer: AtomicU32::new(0),
        })
    }

    fn open(base: &str, segment: OwnedFd) -> Result<ShmRing, OpenError> {
        names::check_base(base).map_err(OpenError::Name)?;
        let segment = SharedSegment::from_fd(base, segment)?;
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
            initial: MIN_CAPACITY,
        };
        cfg.check().map_err(&header)?;
        if OFF_DATA + cfg.capacity > m.len() {
            return Err(header(format!(
                "capacity {capacity} does not fit in a segment of {} bytes",
                m.len()
            )));
        }
        let creator_pid = word32(m, OFF_CREATOR_PID).load(Ordering::Relaxed);
        Ok(ShmRing {
            base: base.to_owned(),
            segment,
            capacity,
            max_record,
            creator: false,
            full_at_head: AtomicU64::new(0),
            kicked: AtomicBool::new(false),
            peer: AtomicU32::new(creator_pid),
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

    /// The semaphore whose count is at `off` ([`OFF_DATA_SEM`] or [`OFF_SPACE_SEM`]),
    /// borrowed from the mapping: it cannot outlive it.
    fn sem(&self, off: usize) -> SegmentSemaphore<'_> {
        SegmentSemaphore::new(word32(self.m(), off))
    }

    /// The base name the other end opens the ring by.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The largest record this ring takes.
    pub fn max_record(&self) -> usize {
        self.max_record
    }

    /// The other end's pid, 0 while unknown: for the creator (the host) the pid it set
    /// with [`set_peer`](Self::set_peer), for an opener the creator's.
    fn peer_pid(&self) -> u32 {
        self.peer.load(Ordering::Acquire)
    }

    /// Tells the creator's end which process the peer is (the child the host spawned),
    /// so that its waits notice when that process is gone. Until then no liveness check.
    pub fn set_peer(&self, pid: u32) {
        self.peer.store(pid, Ordering::Release);
    }

    /// The segment's descriptor, to hand to the peer (over the control socket, or by
    /// inheritance), which opens the ring with its own copy and the [`base`](Self::base).
    pub fn segment_fd(&self) -> BorrowedFd<'_> {
        self.segment.fd()
    }

    /// The data bytes the ring may grow to (its segment's data area).
    pub fn capacity(&self) -> usize {
        self.capacity as usize
    }

    /// The active capacity as the segment says now, checked: a power of two from
    /// [`MIN_CAPACITY`] to the ring's capacity. The producer writes it (only while the
    /// ring is empty, before publishing the tail); the consumer reads it after loading
    /// the tail, for the bytes up to that tail.
    fn active(&self) -> Result<u64, RingError> {
        let active = word64(self.m(), OFF_ACTIVE).load(Ordering::Relaxed);
        if active.is_power_of_two() && (MIN_CAPACITY as u64..=self.capacity).contains(&active) {
            Ok(active)
        } else {
            Err(self.corrupt(format!(
                "active capacity {active} at offset {OFF_ACTIVE} is not a power of two between {MIN_CAPACITY} and {}",
                self.capacity
            )))
        }
    }

    /// The active capacity now (for tests and statistics).
    pub fn active_capacity(&self) -> usize {
        word64(self.m(), OFF_ACTIVE).load(Ordering::Relaxed) as usize
    }

    fn corrupt(&self, detail: String) -> RingError {
        RingError::Corrupt {
            ring: self.base.clone(),
            detail,
        }
    }

    /// Checks the positions read from the segment against the active capacity `cap`:
    /// `head <= tail <= head + cap`.
    fn check_positions(&self, head: u64, tail: u64, cap: u64) -> Result<u64, RingError> {
        match tail.checked_sub(head) {
            Some(used) if used <= cap => Ok(used),
            _ => Err(self.corrupt(format!(
                "positions out of order: head {head}, tail {tail}, capacity {cap}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests;
