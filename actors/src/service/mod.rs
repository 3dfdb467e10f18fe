//! A service: the books of its watchers, the outputs to its reactors, and the actor
//! that owns them.
//!
//! # Layout
//! - [`state`]: `ServiceState`, the plain struct with the hot path (books, fan-out,
//!   coalescing backlogs).
//! - [`records`]: `Records`, byte records back to back in one buffer (a drained batch,
//!   the encoded changes).

pub mod records;
pub mod state;

pub use records::Records;
pub use state::{
    Applied, Attachment, BatchApplied, EventSink, Flush, ServiceState, ServiceStats, SinkClosed,
};
