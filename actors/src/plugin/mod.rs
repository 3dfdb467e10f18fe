//! Plugin processes: spawning, supervising and talking to one child per plugin type.
//!
//! # Layout
//! - [`process`]: `PluginChild`, the child process in its own group, its output re-logged.

pub mod process;

pub use process::{PluginChild, PluginSpawnError};
