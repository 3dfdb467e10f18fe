//! A mapped shared-memory segment, and the only code that touches its bytes.
//!
//! [`Mapping`] owns a `shared_memory::Shmem` and offers bounds-checked copies in and out
//! and atomics at aligned offsets. Everything above it (the ring) is safe code that works
//! with offsets, so a corrupted length or position read from the segment can at worst
//! produce an error from a bounds check, never an access outside the mapping.
//!
//! The bytes of the mapping are shared with another process that may write them at any
//! moment. We never hand out a Rust reference to plain bytes in it: data is copied in and
//! out with raw copies, and the words both sides update concurrently are atomics.

use std::sync::atomic::{AtomicU32, AtomicU64};

use shared_memory::{Shmem, ShmemConf, ShmemError};

/// The page size assumed when pre-faulting (Linux on x86-64 and aarch64 default).
const PAGE: usize = 4096;

/// A shared-memory segment mapped read-write into this process.
pub struct Mapping {
    shmem: Shmem,
}

// SAFETY: `Shmem` is not `Send`/`Sync` only because it holds a raw pointer to the mapping.
// The mapping stays valid for the life of the `Shmem` whatever thread uses or drops it,
// and every access through `Mapping` is either an atomic or a raw copy whose racing with
// the other side is tolerated by design (see the module doc), so sharing it between
// threads adds no race the cross-process protocol does not already handle.
unsafe impl Send for Mapping {}
// SAFETY: see the `Send` impl above: `&Mapping` only allows atomics and raw copies.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Creates the segment `os_id` (which starts with `/`) of `size` bytes, mode 0600,
    /// zero-filled and pre-faulted. It is unlinked when the `Mapping` drops.
    pub fn create(os_id: &str, size: usize) -> Result<Mapping, ShmemError> {
        let shmem = ShmemConf::new().os_id(os_id).size(size).create()?;
        let mapping = Mapping { shmem };
        mapping.prefault(true);
        Ok(mapping)
    }

    /// Maps the existing segment `os_id` at its whole size; it is not unlinked on drop.
    pub fn open(os_id: &str) -> Result<Mapping, ShmemError> {
        let shmem = ShmemConf::new().os_id(os_id).open()?;
        let mapping = Mapping { shmem };
        mapping.prefault(false);
        Ok(mapping)
    }

    /// The size of the mapping in bytes.
    pub fn len(&self) -> usize {
        self.shmem.len()
    }

    /// Whether the mapping is empty (never, for a created one).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Touches every page so page faults happen now rather than in the hot path: the
    /// creator writes (allocating the pages), an opener reads (mapping them).
    fn prefault(&self, write: bool) {
        use std::sync::atomic::Ordering::Relaxed;
        let mut offset = 0;
        while offset < self.len() {
            if let Some(word) = self.atomic_u32(offset) {
                if write {
                    word.fetch_add(0, Relaxed);
                } else {
                    word.load(Relaxed);
                }
            }
            offset += PAGE;
        }
    }

    fn in_bounds(&self, offset: usize, len: usize) -> bool {
        offset.checked_add(len).is_some_and(|end| end <= self.len())
    }

    /// Copies `src` into the mapping at `offset`; false (and nothing written) when the
    /// range does not lie inside the mapping.
    pub fn write(&self, offset: usize, src: &[u8]) -> bool {
        if !self.in_bounds(offset, src.len()) {
            return false;
        }
        // SAFETY: the range [offset, offset + len) lies inside the mapping (checked above),
        // which stays mapped while `self` lives; `src` is a distinct, valid slice of this
        // process, so the two do not overlap. The peer may race on these bytes; we create
        // no reference to them, so a race can only leave garbage the reader validates.
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), self.shmem.as_ptr().add(offset), src.len());
        }
        true
    }

    /// Writes `src.len()` as a little-endian `u32` at `offset`, then `src` right after
    /// it (a ring record); false (and nothing written) when it does not fit or the length
    /// does not fit a `u32`.
    pub fn write_prefixed(&self, offset: usize, src: &[u8]) -> bool {
        let Ok(len) = u32::try_from(src.len()) else {
            return false;
        };
        if !self.in_bounds(offset, 4 + src.len()) {
            return false;
        }
        // SAFETY: [offset, offset + 4 + len) lies inside the live mapping (checked above);
        // the prefix is written unaligned (no alignment is assumed) and the payload copy
        // does not overlap `src`, which belongs to this process. Races with the peer can
        // only garble bytes, as in `write`.
        unsafe {
            let at = self.shmem.as_ptr().add(offset);
            std::ptr::write_unaligned(at.cast::<[u8; 4]>(), len.to_le_bytes());
            std::ptr::copy_nonoverlapping(src.as_ptr(), at.add(4), src.len());
        }
        true
    }

    /// Copies bytes of the mapping at `offset` into `dst`; false (and `dst` untouched)
    /// when the range does not lie inside the mapping.
    pub fn read(&self, offset: usize, dst: &mut [u8]) -> bool {
        if !self.in_bounds(offset, dst.len()) {
            return false;
        }
        // SAFETY: as in `write`: the source range is inside the live mapping, `dst` is an
        // exclusive slice of this process's own memory, and a racing peer can only change
        // what bytes we copy, which the caller treats as untrusted.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.shmem.as_ptr().add(offset),
                dst.as_mut_ptr(),
                dst.len(),
            );
        }
        true
    }

    /// The 64-bit atomic at `offset`, if it is 8-aligned and inside the mapping.
    pub fn atomic_u64(&self, offset: usize) -> Option<&AtomicU64> {
        if !offset.is_multiple_of(8) || !self.in_bounds(offset, 8) {
            return None;
        }
        // SAFETY: the mapping is page-aligned, so `offset % 8 == 0` makes the pointer
        // 8-aligned as `AtomicU64` requires; the 8 bytes lie inside the mapping, which
        // outlives the returned reference (tied to `&self`). Every process accesses these
        // words only atomically, and any bit pattern is a valid `u64`.
        Some(unsafe { AtomicU64::from_ptr(self.shmem.as_ptr().add(offset).cast()) })
    }

    /// The 32-bit atomic at `offset`, if it is 4-aligned and inside the mapping.
    pub fn atomic_u32(&self, offset: usize) -> Option<&AtomicU32> {
        if !offset.is_multiple_of(4) || !self.in_bounds(offset, 4) {
            return None;
        }
        // SAFETY: as in `atomic_u64`, with 4-byte alignment and size.
        Some(unsafe { AtomicU32::from_ptr(self.shmem.as_ptr().add(offset).cast()) })
    }
}
