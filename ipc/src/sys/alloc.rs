//! A global allocator wrapper that counts allocations, for the benchmarks' "allocations
//! per event" figures.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicU64, Ordering};

/// Wraps a global allocator and counts `alloc` and `realloc` calls.
///
/// ```ignore
/// #[global_allocator]
/// static GLOBAL: Counting<std::alloc::System> = Counting::new(std::alloc::System);
/// ```
pub struct Counting<A> {
    inner: A,
    allocations: AtomicU64,
}

impl<A> Counting<A> {
    /// Wraps `inner`.
    pub const fn new(inner: A) -> Self {
        Counting {
            inner,
            allocations: AtomicU64::new(0),
        }
    }

    /// Allocations so far (all threads).
    pub fn allocations(&self) -> u64 {
        self.allocations.load(Ordering::Relaxed)
    }
}

// SAFETY: every method forwards to the wrapped allocator with the caller's arguments
// unchanged, so the wrapped allocator's guarantees are ours; counting touches only an
// atomic and never allocates.
unsafe impl<A: GlobalAlloc> GlobalAlloc for Counting<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.allocations.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, passed on as is.
        unsafe { self.inner.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, i.e. from `inner`, with `layout`.
        unsafe { self.inner.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        self.allocations.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as in `alloc`.
        unsafe { self.inner.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        self.allocations.fetch_add(1, Ordering::Relaxed);
        // SAFETY: `ptr` came from `inner` with `layout`; the caller upholds the rest.
        unsafe { self.inner.realloc(ptr, layout, new_size) }
    }
}
