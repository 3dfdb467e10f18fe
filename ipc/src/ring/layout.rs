//! The ring's shared-memory layout: header offsets, limits, the record format, and the
//! parser that turns published bytes back into records without trusting them.
//!
//! Both ends compute every offset from the constants here; the consumer parses what it
//! copied out with [`parse`], which checks every length and wrap marker against the
//! bytes actually published (see the module doc of [`super`]).

use std::time::Duration;

/// The header's magic number ("RCPTRING").
pub const MAGIC: u64 = u64::from_le_bytes(*b"RCPTRING");
/// The layout version this build reads and writes.
/// Version 2 moved the two wake-up semaphores from named semaphores in `/dev/shm`
/// into the segment (offsets 384 and 448); version 3 added the active capacity
/// (offset 144), which the producer grows while the ring is busy.
pub const LAYOUT_VERSION: u32 = 3;
/// The longest a waiter spins (yielding) before it sleeps.
pub const DEFAULT_SPIN: Duration = Duration::from_micros(50);
/// The active capacity a ring starts with (unless its whole capacity is smaller): one
/// page of data, so an idle ring costs its header page and one more.
pub const INITIAL_CAPACITY: usize = 4096;

pub(super) const OFF_MAGIC: usize = 0;
pub(super) const OFF_VERSION: usize = 8;
pub(super) const OFF_MAX_RECORD: usize = 12;
pub(super) const OFF_CAPACITY: usize = 16;
pub(super) const OFF_CREATOR_PID: usize = 24;
// Offset 28 held the opener's pid, which nothing may trust any more: unused.
pub(super) const OFF_TAIL: usize = 128;
pub(super) const OFF_PRODUCER_CLOSED: usize = 136;
pub(super) const OFF_PRODUCER_WAITING: usize = 140;
/// The active capacity (u64): how much of the data area the positions wrap around now.
/// Written by the producer only while the ring is empty, before it publishes the tail.
pub(super) const OFF_ACTIVE: usize = 144;
pub(super) const OFF_HEAD: usize = 256;
pub(super) const OFF_CONSUMER_CLOSED: usize = 264;
pub(super) const OFF_CONSUMER_WAITING: usize = 268;
/// The `data` semaphore's count (the consumer sleeps on it), on a line of its own.
pub(super) const OFF_DATA_SEM: usize = 384;
/// The `space` semaphore's count (the producer sleeps on it when the ring is full).
pub(super) const OFF_SPACE_SEM: usize = 448;
pub(super) const OFF_DATA: usize = 512;

// The semaphore words are 4-aligned, apart from each other and from the lines the
// positions live on, and inside the header.
const _: () = assert!(OFF_DATA_SEM.is_multiple_of(64) && OFF_SPACE_SEM.is_multiple_of(64));
const _: () = assert!(OFF_HEAD + 16 <= OFF_DATA_SEM && OFF_DATA_SEM + 4 <= OFF_SPACE_SEM);
const _: () = assert!(OFF_SPACE_SEM + 4 <= OFF_DATA);
const _: () = assert!(OFF_ACTIVE.is_multiple_of(8) && OFF_ACTIVE + 8 <= OFF_HEAD);

pub(super) const LEN_BYTES: usize = 4;
pub(super) const WRAP: u32 = u32::MAX;
pub(super) const MIN_CAPACITY: usize = 4096;
pub(super) const MAX_CAPACITY: usize = 1 << 30;

/// The size of a ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingConfig {
    /// Data bytes the ring may grow to: a power of two from 4 KiB to 1 GiB.
    pub capacity: usize,
    /// The largest record accepted: at most half the capacity minus the length prefix.
    pub max_record: usize,
    /// The active capacity at creation: a power of two from 4 KiB to `capacity`. The
    /// producer doubles it (up to `capacity`) when it finds the ring full, so a busy ring
    /// grows and an idle one stays small: pages past the active capacity are never
    /// touched, and cost nothing.
    pub initial: usize,
}

impl Default for RingConfig {
    /// Up to 1 MiB of data, records up to 256 KiB, starting at [`INITIAL_CAPACITY`].
    fn default() -> Self {
        RingConfig::growing(1 << 20)
    }
}

impl RingConfig {
    /// A ring of `capacity` bytes from the start, taking records up to half of it.
    pub fn with_capacity(capacity: usize) -> Self {
        RingConfig {
            capacity,
            max_record: (capacity / 2).saturating_sub(8).min(256 << 10),
            initial: capacity,
        }
    }

    /// A ring that starts at [`INITIAL_CAPACITY`] and grows up to `capacity` bytes while
    /// it is busy, taking records up to 256 KiB (or half of it, when that is less).
    pub fn growing(capacity: usize) -> Self {
        RingConfig {
            initial: INITIAL_CAPACITY.min(capacity),
            ..RingConfig::with_capacity(capacity)
        }
    }

    pub(super) fn check(&self) -> Result<(), String> {
        if !self.capacity.is_power_of_two()
            || !(MIN_CAPACITY..=MAX_CAPACITY).contains(&self.capacity)
        {
            return Err(format!(
                "capacity {} is not a power of two between {MIN_CAPACITY} and {MAX_CAPACITY}",
                self.capacity
            ));
        }
        if !self.initial.is_power_of_two()
            || !(MIN_CAPACITY..=self.capacity).contains(&self.initial)
        {
            return Err(format!(
                "initial capacity {} is not a power of two between {MIN_CAPACITY} and the capacity ({})",
                self.initial, self.capacity
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
pub(super) fn footprint(len: usize) -> usize {
    (LEN_BYTES + len + 7) & !7
}

/// Parses the records of `bytes`, copied from ring position `start`: `f` gets where each
/// record lies in `bytes`.
pub(super) fn parse(
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
