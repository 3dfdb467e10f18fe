//! A mapped shared-memory segment, and the only code that touches its bytes.
//!
//! A segment is an anonymous memory file (`memfd_create`) whose size is sealed
//! (`F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL`) before anyone else sees it: the creator
//! hands the file descriptor to its peer, which maps it at the size `fstat` reports. The
//! size of a sealed file cannot change, so no peer can `ftruncate` it under our mapping,
//! and a page of the mapping can never lie past the end of the file (which would make
//! an access SIGBUS the process). A peer can still unmap or remap its *own* view, or
//! punch holes (those pages read back as zeros): that is garbage in the segment, which
//! the ring validates, never a fault here. A memfd has no name in `/dev/shm`, so there
//! is nothing to unlink and nothing another local user can open.
//!
//! [`Mapping`] offers bounds-checked copies in and out and atomics at aligned offsets.
//! Everything above it (the ring) is safe code that works with offsets, so a corrupted
//! length or position read from the segment can at worst produce an error from a bounds
//! check, never an access outside the mapping.
//!
//! The bytes of the mapping are shared with another process that may write them at any
//! moment. We never hand out a Rust reference to plain bytes in it: data is copied in and
//! out with raw copies, and the words both sides update concurrently are atomics.
//!
//! We map the memory ourselves rather than through the `shared_memory` crate: it only
//! opens segments by name in `/dev/shm`, where any process of the same user can shrink
//! them, and mapping a descriptor is two system calls.

use std::ffi::CString;
use std::io;
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64};

use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MemFdCreateFlag};
use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};

/// The seals every segment carries: its size is fixed for good.
const SIZE_SEALS: SealFlag = SealFlag::F_SEAL_SHRINK
    .union(SealFlag::F_SEAL_GROW)
    .union(SealFlag::F_SEAL_SEAL);

/// A shared-memory segment mapped read-write into this process; unmapped on drop.
pub struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: `Mapping` holds a raw pointer only to the mapping it owns. The mapping stays
// valid for the life of the `Mapping` whatever thread uses or drops it, and every access
// through `Mapping` is either an atomic or a raw copy whose racing with the other side is
// tolerated by design (see the module doc), so sharing it between threads adds no race
// the cross-process protocol does not already handle.
unsafe impl Send for Mapping {}
// SAFETY: see the `Send` impl above: `&Mapping` only allows atomics and raw copies.
unsafe impl Sync for Mapping {}

impl std::fmt::Debug for Mapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mapping").field("len", &self.len).finish()
    }
}

/// The seals of the memory file `fd` (`F_GET_SEALS`).
pub fn seals(fd: BorrowedFd<'_>) -> io::Result<SealFlag> {
    let bits = fcntl(fd.as_raw_fd(), FcntlArg::F_GET_SEALS)?;
    Ok(SealFlag::from_bits_truncate(bits))
}

impl Mapping {
    /// Creates a memory file named `name` (shown in `/proc/<pid>/fd`, nowhere else) of
    /// `size` zeroed bytes, seals its size and maps it (its pages are allocated when
    /// first touched). Returns the
    /// mapping and the file, to hand to the peer.
    pub fn create_sealed(name: &str, size: usize) -> io::Result<(Mapping, OwnedFd)> {
        let c_name = CString::new(name)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name has a NUL byte"))?;
        let fd = memfd_create(
            &c_name,
            MemFdCreateFlag::MFD_ALLOW_SEALING | MemFdCreateFlag::MFD_CLOEXEC,
        )?;
        let len = libc::off_t::try_from(size)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "size too large"))?;
        nix::unistd::ftruncate(&fd, len)?;
        fcntl(fd.as_raw_fd(), FcntlArg::F_ADD_SEALS(SIZE_SEALS))?;
        // Not prefaulted: a ring touches only the pages its active capacity covers, so
        // an idle ring costs a page or two, and a busy one faults each page in once.
        let mapping = Self::map(fd.as_fd(), size)?;
        Ok((mapping, fd))
    }

    /// Maps the memory file `fd` a peer created, at the size `fstat` reports (never a
    /// size read from the segment itself). The file must carry the size seals (see
    /// [`Mapping::create`]): a file whose size could still change under the mapping is
    /// refused, since a shrink would fault an access past its new end.
    pub fn map_fd(fd: BorrowedFd<'_>) -> io::Result<Mapping> {
        let seals = fcntl(fd.as_raw_fd(), FcntlArg::F_GET_SEALS).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("not a sealed memory file: {e}"),
            )
        })?;
        if !SealFlag::from_bits_truncate(seals).contains(SIZE_SEALS) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the memory file's size is not sealed",
            ));
        }
        let stat = nix::sys::stat::fstat(fd.as_raw_fd())?;
        let size = usize::try_from(stat.st_size)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "negative size"))?;
        Self::map(fd, size)
    }

    fn map(fd: BorrowedFd<'_>, size: usize) -> io::Result<Mapping> {
        let len = NonZeroUsize::new(size)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "empty segment"))?;
        // SAFETY: a fresh shared mapping chosen by the kernel (no address hint, no
        // MAP_FIXED), so it replaces nothing of ours; `fd` is a valid open descriptor
        // for the call. The memory is only ever accessed through `Mapping`'s checked
        // copies and atomics, and unmapped once, in `Drop`.
        let ptr = unsafe {
            mmap(
                None,
                len,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                fd,
                0,
            )
        }?;
        Ok(Mapping {
            ptr: ptr.cast(),
            len: size,
        })
    }

    /// The size of the mapping in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the mapping is empty (never, for a created one).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
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
            std::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr.as_ptr().add(offset), src.len());
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
            let at = self.ptr.as_ptr().add(offset);
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
                self.ptr.as_ptr().add(offset),
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
        Some(unsafe { AtomicU64::from_ptr(self.ptr.as_ptr().add(offset).cast()) })
    }

    /// The 32-bit atomic at `offset`, if it is 4-aligned and inside the mapping.
    pub fn atomic_u32(&self, offset: usize) -> Option<&AtomicU32> {
        if !offset.is_multiple_of(4) || !self.in_bounds(offset, 4) {
            return None;
        }
        // SAFETY: as in `atomic_u64`, with 4-byte alignment and size.
        Some(unsafe { AtomicU32::from_ptr(self.ptr.as_ptr().add(offset).cast()) })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` describe the mapping `map` made, unmapped only here; no
        // reference into it outlives `self` (the atomics borrow `&self`).
        if let Err(e) = unsafe { munmap(self.ptr.cast(), self.len) } {
            tracing::warn!("cannot unmap a shared segment: {e}");
        }
    }
}

/// Unmaps every ring segment this process has mapped, then touches the first of them, so
/// the process dies of SIGSEGV: how the tests play a plugin that unmaps its ring (the
/// host's own mapping of the segment is not affected). Never returns; nothing of this
/// process runs on with a dangling mapping.
#[doc(hidden)]
pub fn unmap_rings_and_crash() -> ! {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    let mut first = None;
    for line in maps.lines().filter(|l| l.contains("/memfd:receptor-")) {
        let Some((start, end)) = line
            .split_whitespace()
            .next()
            .and_then(|range| range.split_once('-'))
            .and_then(|(a, b)| {
                Some((
                    usize::from_str_radix(a, 16).ok()?,
                    usize::from_str_radix(b, 16).ok()?,
                ))
            })
        else {
            continue;
        };
        let (Some(ptr), Some(len)) = (
            NonNull::new(start as *mut libc::c_void),
            end.checked_sub(start),
        ) else {
            continue;
        };
        // SAFETY: not sound in general (live `Mapping`s point into these pages), and
        // that is the point of this test hook: the pages go, and the process dies below
        // at its first touch of them, before any other code of ours could use a
        // dangling `Mapping` (and if another thread touches one first, it dies the same
        // way). No memory outside the process is affected.
        let _ = unsafe { munmap(ptr, len) };
        first.get_or_insert(start);
    }
    if let Some(start) = first {
        // SAFETY: see above: this read faults (SIGSEGV) on the unmapped page.
        unsafe { std::ptr::read_volatile(start as *const u8) };
    }
    std::process::abort()
}
