//! A service: the books of its watchers, the outputs to its reactors, and the actor
//! that owns them.
//!
//! # Layout
//! - [`intake`]: what the host checks of a watcher's records (bad nodes, limits).
//! - [`state`]: `ServiceState`, the plain struct with the hot path (books, fan-out,
//!   coalescing backlogs).

pub mod intake;
pub mod state;

pub use state::{
    Attachment, BatchApplied, EventSink, Flush, ServiceState, ServiceStats, SinkClosed,
};
