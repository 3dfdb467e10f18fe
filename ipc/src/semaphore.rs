//! `NamedSemaphore`: a named POSIX semaphore and who is responsible for its name.
//!
//! The creator (always the host) owns the name and unlinks it when the semaphore drops,
//! on every path, error paths included; an opener (a plugin) only closes its handle.
//! Names come from [`crate::names`], so a host that dies without unlinking leaves names
//! that [`crate::names::sweep_stale`] can attribute and remove.

use std::io;
use std::time::Duration;

use crate::sys::semaphore::RawSemaphore;

/// A named semaphore; unlinked on drop if this process created it.
pub struct NamedSemaphore {
    raw: RawSemaphore,
    name: String,
    owner: bool,
}

impl NamedSemaphore {
    /// Creates the semaphore `name` (starting with `/`) at 0, mode 0600.
    pub fn create(name: &str) -> io::Result<NamedSemaphore> {
        let raw = RawSemaphore::create(name)?;
        Ok(NamedSemaphore {
            raw,
            name: name.to_owned(),
            owner: true,
        })
    }

    /// Opens the existing semaphore `name`.
    pub fn open(name: &str) -> io::Result<NamedSemaphore> {
        let raw = RawSemaphore::open(name)?;
        Ok(NamedSemaphore {
            raw,
            name: name.to_owned(),
            owner: false,
        })
    }

    /// The semaphore's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Wakes one waiter (or lets the next wait pass at once).
    pub fn post(&self) -> io::Result<()> {
        self.raw.post()
    }

    /// Takes a pending post without waiting; true if there was one.
    pub fn try_wait(&self) -> bool {
        self.raw.try_wait()
    }

    /// Waits for a post up to `timeout`; true if one came.
    pub fn wait_timeout(&self, timeout: Duration) -> io::Result<bool> {
        self.raw.wait_timeout(timeout)
    }
}

impl Drop for NamedSemaphore {
    fn drop(&mut self) {
        if self.owner {
            if let Err(e) = RawSemaphore::unlink(&self.name) {
                tracing::warn!(name = %self.name, "cannot unlink semaphore: {e}");
            }
        }
    }
}
