//! `SharedSegment`: a shared-memory segment whose size no one can change, and the file
//! descriptor that is its only handle.
//!
//! The creator (the host) makes the segment as a sealed memory file (see
//! [`crate::sys::shm`]): zeroed, pre-faulted, its size fixed for good. It hands the
//! descriptor to the plugin over the control socket (`SCM_RIGHTS`, beside the `Accept`
//! request); the plugin maps it at the size the OS reports, never at a size read from
//! the segment itself. There is no name in `/dev/shm`: nothing to unlink, nothing for a
//! stray process to open, truncate or leave behind. The memory goes away when the last
//! mapping and descriptor close. Access to the bytes goes through [`Mapping`], whose
//! every read and write is bounds-checked.

use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::sys::shm::Mapping;

/// A segment could not be created or mapped.
#[derive(Debug, thiserror::Error)]
#[error("shared memory segment '{name}': {message}")]
pub struct SegmentError {
    /// The segment's name (the ring's base name).
    pub name: String,
    /// What failed.
    pub message: String,
}

/// A mapped shared-memory segment and its descriptor.
pub struct SharedSegment {
    mapping: Mapping,
    fd: OwnedFd,
    name: String,
}

impl SharedSegment {
    /// Creates a segment of `size` zeroed, pre-faulted bytes, its size sealed; `name`
    /// only labels it (in errors and `/proc/<pid>/fd`).
    pub fn create(name: &str, size: usize) -> Result<SharedSegment, SegmentError> {
        let (mapping, fd) = Mapping::create_sealed(name, size).map_err(|e| SegmentError {
            name: name.to_owned(),
            message: format!("cannot create: {e}"),
        })?;
        Ok(SharedSegment {
            mapping,
            fd,
            name: name.to_owned(),
        })
    }

    /// Maps the segment another process created and handed over as `fd`.
    pub fn from_fd(name: &str, fd: OwnedFd) -> Result<SharedSegment, SegmentError> {
        let mapping = Mapping::map_fd(fd.as_fd()).map_err(|e| SegmentError {
            name: name.to_owned(),
            message: format!("cannot map: {e}"),
        })?;
        Ok(SharedSegment {
            mapping,
            fd,
            name: name.to_owned(),
        })
    }

    /// The segment's label.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The descriptor, to hand to the peer (the receiver gets its own copy).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The bytes, through bounds-checked access.
    pub fn mapping(&self) -> &Mapping {
        &self.mapping
    }
}

impl fmt::Debug for SharedSegment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedSegment")
            .field("name", &self.name)
            .field("len", &self.mapping.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;

    /// Guards against a peer shrinking the segment under the host's mapping (a SIGBUS):
    /// a created segment refuses `ftruncate`, to any size, through any descriptor.
    #[test]
    fn a_created_segment_refuses_to_change_size() {
        let segment = SharedSegment::create("receptor-test-seal", 8192).unwrap();
        let sealed = crate::sys::shm::seals(segment.fd()).unwrap();
        assert!(sealed.contains(
            nix::fcntl::SealFlag::F_SEAL_SHRINK
                | nix::fcntl::SealFlag::F_SEAL_GROW
                | nix::fcntl::SealFlag::F_SEAL_SEAL
        ));
        // A peer's own copy of the descriptor, as SCM_RIGHTS would give it.
        let theirs = File::from(segment.fd().try_clone_to_owned().unwrap());
        for size in [0, 4096, 1 << 20] {
            let err = theirs.set_len(size).unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::EPERM), "set_len({size})");
        }
        // A second descriptor opened through /proc is the same sealed file.
        let reopened = std::fs::OpenOptions::new()
            .write(true)
            .open(format!(
                "/proc/self/fd/{}",
                std::os::fd::AsRawFd::as_raw_fd(&theirs)
            ))
            .unwrap();
        assert_eq!(
            reopened.set_len(0).unwrap_err().raw_os_error(),
            Some(libc::EPERM)
        );
        assert_eq!(theirs.metadata().unwrap().len(), 8192);
        // The peer maps it at the size the OS reports, and sees the creator's bytes.
        assert!(segment.mapping().write(100, b"hello"));
        let peer = SharedSegment::from_fd("peer", theirs.into()).unwrap();
        assert_eq!(peer.mapping().len(), 8192);
        let mut got = [0u8; 5];
        assert!(peer.mapping().read(100, &mut got));
        assert_eq!(&got, b"hello");
    }

    /// Review finding: `map_fd` trusted any descriptor, though its safety against
    /// SIGBUS rests on the size seals. A file without them is refused.
    #[test]
    fn an_unsealed_file_is_not_mapped() {
        let file: File = tempfile::tempfile().unwrap();
        file.set_len(8192).unwrap();
        let Err(err) = crate::sys::shm::Mapping::map_fd(std::os::fd::AsFd::as_fd(&file)) else {
            panic!("an unsealed file was mapped");
        };
        assert!(err.to_string().contains("sealed"), "{err}");
    }
}
