//! `SharedSegment`: a named shared-memory segment and who is responsible for its name.
//!
//! The creator (the host) makes the segment with mode 0600, pre-faults it, and unlinks
//! the name when the segment drops; an opener (a plugin) maps it at the size the OS
//! reports, never at a size read from the segment itself. Access to the bytes goes
//! through [`Mapping`], whose every read and write is bounds-checked.

use std::fmt;

use crate::sys::shm::Mapping;

/// A segment could not be created or opened.
#[derive(Debug, thiserror::Error)]
#[error("shared memory segment '{name}': {message}")]
pub struct SegmentError {
    /// The segment's name.
    pub name: String,
    /// What failed.
    pub message: String,
}

/// A mapped shared-memory segment.
pub struct SharedSegment {
    mapping: Mapping,
    name: String,
}

impl SharedSegment {
    /// Creates `name` (starting with `/`) with `size` zeroed, pre-faulted bytes.
    pub fn create(name: &str, size: usize) -> Result<SharedSegment, SegmentError> {
        let mapping = Mapping::create(name, size).map_err(|e| SegmentError {
            name: name.to_owned(),
            message: format!("cannot create: {e}"),
        })?;
        Ok(SharedSegment {
            mapping,
            name: name.to_owned(),
        })
    }

    /// Opens the existing segment `name`.
    pub fn open(name: &str) -> Result<SharedSegment, SegmentError> {
        let mapping = Mapping::open(name).map_err(|e| SegmentError {
            name: name.to_owned(),
            message: format!("cannot open: {e}"),
        })?;
        Ok(SharedSegment {
            mapping,
            name: name.to_owned(),
        })
    }

    /// The segment's name.
    pub fn name(&self) -> &str {
        &self.name
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
