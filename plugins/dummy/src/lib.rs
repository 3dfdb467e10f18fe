//! The `dummy` watcher: reports one node that alternates between up and down.
//!
//! Its behaviour arrives with the end-to-end issue; this crate holds its place in the
//! layout and tells the host the type name it serves.

/// The plugin type name users write as `type = "dummy"`.
pub const TYPE: &str = "dummy";
