//! Plugin processes: spawning, supervising and talking to one child per plugin type.
//!
//! # Layout
//! - [`process`]: `PluginChild`, the child process in its own group, its output re-logged.
//! - [`output`]: a plugin's stdout and stderr into the log, line by line, bounded.
//! - [`connection`]: `PluginConnection`, the child plus its control connection, as
//!   blocking life-cycle calls.
//! - [`actor`]: the `PluginProcess` actor over a connection.

pub mod actor;
pub mod connection;
pub mod output;
pub mod process;

pub use process::{PluginChild, PluginSpawnError};
