//! The `filelogger` reactor: appends one line per node event to a file.
//!
//! Its behaviour arrives with the end-to-end issue; this crate holds its place in the
//! layout and tells the host the type name it serves.

/// The plugin type name users write as `type = "filelogger"`.
pub const TYPE: &str = "filelogger";
