//! A service: the books of its watchers, the outputs to its reactors, and the actor
//! that owns them.
//!
//! # Layout
//! - [`state`]: `ServiceState`, the plain struct with the hot path (books, fan-out,
//!   coalescing backlogs).

pub mod state;

pub use state::{
    Attachment, BatchApplied, EventSink, Flush, ServiceState, ServiceStats, SinkClosed,
};
