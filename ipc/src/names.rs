//! The base names of Receptor's rings, and the sweep that removes what dead hosts of
//! older versions left in `/dev/shm`.
//!
//! Every ring gets a base name `receptor-<host pid>-<16 random hex digits>`. It only
//! labels the ring: its segment is a memory file with no name in `/dev/shm` (see
//! [`crate::shm`]), shown as `/memfd:<base>` in `/proc/<pid>/fd`, and its semaphores are
//! words inside that segment ([`crate::ring`]). A running host has nothing in
//! `/dev/shm`.
//!
//! Older hosts did: segments `/dev/shm/<base>`, and named semaphores
//! `/dev/shm/sem.<base>-data` and `-space`. The pid in the name says whose they are, so
//! a host starting after a crash of an older one removes them ([`sweep_stale`]) and
//! never touches a live host's.

use std::io;
use std::path::Path;

/// Every name of ours starts with this.
pub const PREFIX: &str = "receptor-";

/// Where Linux keeps POSIX shared memory and named semaphores (older hosts' leftovers).
pub const SHM_DIR: &str = "/dev/shm";

/// A fresh base name owned by this process.
pub fn new_base() -> String {
    format!(
        "{PREFIX}{}-{:016x}",
        std::process::id(),
        rand::random::<u64>()
    )
}

/// Checks that a base name received from another process is one of ours: the prefix, a
/// pid, a dash and 16 hex digits, nothing else (no slashes, no dots).
pub fn check_base(base: &str) -> Result<(), String> {
    let bad = || {
        format!("'{base}' is not a receptor ring name (expected receptor-<pid>-<16 hex digits>)")
    };
    let rest = base.strip_prefix(PREFIX).ok_or_else(bad)?;
    let (pid, random) = rest.split_once('-').ok_or_else(bad)?;
    let pid_ok = !pid.is_empty() && pid.len() <= 10 && pid.bytes().all(|b| b.is_ascii_digit());
    let random_ok = random.len() == 16 && random.bytes().all(|b| b.is_ascii_hexdigit());
    if pid_ok && random_ok {
        Ok(())
    } else {
        Err(bad())
    }
}

/// The host pid a `/dev/shm` entry name belongs to, if it is one of ours.
pub fn owner_pid(entry: &str) -> Option<u32> {
    owner_pid_with(entry, PREFIX)
}

/// The pid in an entry name `[sem.]<prefix><pid>-...`.
fn owner_pid_with(entry: &str, prefix: &str) -> Option<u32> {
    let rest = entry
        .strip_prefix("sem.")
        .unwrap_or(entry)
        .strip_prefix(prefix)?;
    let (pid, _) = rest.split_once('-')?;
    pid.parse().ok()
}

/// What [`sweep_stale`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Swept {
    /// Entries removed, their host being dead.
    pub removed: Vec<String>,
    /// Entries kept because their host is alive.
    pub kept: usize,
}

/// Removes from `/dev/shm` every segment and named semaphore of ours (left by hosts of
/// older versions) whose host pid is dead.
pub fn sweep_stale() -> io::Result<Swept> {
    sweep_stale_in(Path::new(SHM_DIR), PREFIX)
}

/// [`sweep_stale`] over another directory and for another prefix (tests use a private
/// one, so they never touch the names of the machine's real hosts).
pub fn sweep_stale_in(dir: &Path, prefix: &str) -> io::Result<Swept> {
    let mut swept = Swept::default();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(pid) = owner_pid_with(name, prefix) else {
            continue;
        };
        if pid == std::process::id() || crate::sys::process_alive(pid) {
            swept.kept += 1;
            continue;
        }
        match std::fs::remove_file(entry.path()) {
            Ok(()) => swept.removed.push(name.to_owned()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(entry = name, "cannot remove stale entry: {e}"),
        }
    }
    if !swept.removed.is_empty() {
        tracing::info!(
            removed = swept.removed.len(),
            "removed shared memory left by dead hosts"
        );
    }
    Ok(swept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_pid_and_pass_the_check() {
        let base = new_base();
        check_base(&base).unwrap();
        assert_eq!(owner_pid(&base), Some(std::process::id()));
        assert_eq!(
            owner_pid(&format!("sem.{base}-data")),
            Some(std::process::id())
        );
    }

    #[test]
    fn foreign_names_are_refused() {
        for bad in [
            "",
            "receptor-",
            "receptor-12",
            "receptor-12-xyz",
            "receptor-1-../../etc/passwd",
            "other-1-0123456789abcdef",
            "receptor-a-0123456789abcdef",
        ] {
            assert!(check_base(bad).is_err(), "{bad}");
        }
        assert_eq!(owner_pid("shmem_1234"), None);
    }
}
