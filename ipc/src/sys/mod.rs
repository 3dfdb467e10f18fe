//! The raw OS calls of the workspace and the `unsafe` they need, each behind a safe
//! type or function whose contract this module keeps.
//!
//! Nothing outside `sys` in this crate (and nothing outside this crate in the workspace)
//! writes `unsafe`. Each block below has a `// SAFETY:` comment; the reasoning in short:
//! - [`shm::Mapping`]: our own `mmap` of a sealed memory file, whose size no peer can
//!   change under us (no SIGBUS); raw copies in and out of the mapping are bounds-checked
//!   against its length, atomics are alignment- and bounds-checked, and no Rust reference
//!   to the plain bytes is ever formed, so a peer racing on or corrupting the segment can
//!   make us read garbage, never touch memory outside it.
//! - [`fdpass`]: descriptors received with `SCM_RIGHTS` become owned at once.
//! - [`semaphore::SegmentSemaphore`]: `futex` wake and timed wait (monotonic clock) on
//!   a borrowed, aligned `u32` of a live mapping; the operation is always one of our
//!   constants, never read from the shared memory (unlike glibc's `sem_t`).
//! - [`process`]: what runs between `fork` and `exec` in a child, and taking an
//!   inherited descriptor once.
//! - [`alloc::Counting`]: forwards every call to the wrapped allocator unchanged.
//! - [`prefetch`]: a cache hint, which reads nothing the program sees.
//! - [`populate`]: asks the kernel to map pages of our own allocation, which changes
//!   none of its contents.

pub mod alloc;
pub mod fdpass;
pub mod process;
pub mod semaphore;
pub mod shm;

use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;

/// Raises this process's soft limit on open descriptors to its hard limit and returns
/// the new soft limit. Every ring holds a descriptor in the host and in its plugin, so
/// a host with 1,000 services needs more than the usual soft limit of 1,024 (the hard
/// limit is usually far higher; the Go runtime raises it the same way).
pub fn raise_fd_limit() -> std::io::Result<u64> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    Ok(hard.max(soft))
}

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

/// Asks the kernel to map, in one call, the pages wholly inside the spare capacity of
/// `buf` (`MADV_POPULATE_WRITE`), so that filling it takes no page fault per page: a
/// growing book writes megabytes of fresh memory, and each fault is a trap into the
/// kernel (costly in a VM). A hint: on a kernel without it, nothing happens. Returns
/// whether the kernel mapped the pages.
pub fn populate<T>(buf: &mut Vec<T>) -> bool {
    const PAGE: usize = 4096;
    let spare = buf.spare_capacity_mut();
    let start = spare.as_mut_ptr() as usize;
    let end = start + std::mem::size_of_val(spare);
    let (first, last) = (start.next_multiple_of(PAGE), end / PAGE * PAGE);
    if first >= last {
        return false;
    }
    // SAFETY: [first, last) lies inside `buf`'s allocation, which we own (the `&mut`)
    // and which is mapped read-write; MADV_POPULATE_WRITE only maps its pages (as a
    // write would, without writing): no byte of it changes and nothing else is touched.
    // Its error (EINVAL on an old kernel, ENOMEM) leaves the memory as it was.
    let done = unsafe {
        libc::madvise(
            first as *mut libc::c_void,
            last - first,
            libc::MADV_POPULATE_WRITE,
        )
    };
    done == 0
}

#[cfg(test)]
mod tests {
    /// Minor page faults of this thread so far (`/proc/thread-self/stat`, field 10).
    fn minor_faults() -> u64 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        let (_, rest) = stat.rsplit_once(')').unwrap();
        rest.split_whitespace().nth(7).unwrap().parse().unwrap()
    }

    #[test]
    fn populated_memory_is_written_without_a_fault_per_page() {
        const LEN: usize = 16 << 20;
        let mut plain: Vec<u8> = Vec::with_capacity(LEN);
        let before = minor_faults();
        plain.resize(LEN, 1);
        let plain_faults = minor_faults() - before;

        let mut populated: Vec<u8> = Vec::with_capacity(LEN);
        if !super::populate(&mut populated) {
            eprintln!("MADV_POPULATE_WRITE not supported here: nothing to check");
            return;
        }
        let before = minor_faults();
        populated.resize(LEN, 1);
        let populated_faults = minor_faults() - before;
        // At least one fault per page, or per 2 MiB where huge pages are on.
        assert!(
            plain_faults >= 8,
            "{plain_faults} faults for 16 MiB of fresh pages"
        );
        assert!(
            populated_faults <= plain_faults / 8,
            "{populated_faults} faults after populate vs {plain_faults} without"
        );
        assert!(populated.iter().all(|&b| b == 1) && plain[LEN - 1] == 1);
    }
}
