//! The raw OS calls of the workspace and the `unsafe` they need, each behind a safe
//! type or function whose contract this module keeps.
//!
//! Nothing outside `sys` in this crate (and nothing outside this crate in the workspace)
//! writes `unsafe`. Each block below has a `// SAFETY:` comment; the reasoning in short:
//! - [`shm::Mapping`]: raw copies in and out of the mapping are bounds-checked against
//!   its length, atomics are alignment- and bounds-checked, and no Rust reference to the
//!   plain bytes is ever formed, so a peer racing on or corrupting the segment can make
//!   us read garbage, never touch memory outside it.
//! - [`semaphore::RawSemaphore`]: `sem_*` calls on a handle from a successful
//!   `sem_open`, closed exactly once.
//! - [`process`]: what runs between `fork` and `exec` in a child.
//! - [`alloc::Counting`]: forwards every call to the wrapped allocator unchanged.
//! - [`prefetch`]: a cache hint, which reads nothing the program sees.

pub mod alloc;
pub mod process;
pub mod semaphore;
pub mod shm;

use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;

/// Whether process `pid` exists and is not a zombie. A pid that cannot be signalled for
/// lack of permission exists (it belongs to another user).
pub fn process_alive(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    if raw <= 0 {
        return false;
    }
    match kill(Pid::from_raw(raw), None) {
        Ok(()) | Err(Errno::EPERM) => {}
        Err(_) => return false,
    }
    // A dead child that nobody reaped yet still answers kill(0): look at its state.
    match std::fs::read_to_string(format!("/proc/{raw}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_none_or(|state| state != "Z" && state != "X"),
        Err(_) => true,
    }
}

/// Asks the CPU to start loading the cache line of `value`, without waiting for it: a
/// hint, with no effect on what the program computes (nothing on other targets).
#[inline]
pub fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `_mm_prefetch` needs SSE, which every x86_64 CPU has; a prefetch never
    // faults and changes no memory, and the pointer comes from a live reference anyway.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>((value as *const T).cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}
