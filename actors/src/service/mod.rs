//! A service: the books of its watchers, the outputs to its reactors, and the actor
//! that owns them.
//!
//! # Layout
//! - [`actor`]: `ServiceActor`, the owner of a service's life cycle: it makes the state,
//!   hears of its sessions, answers status queries, and runs under a supervisor.
//! - [`intake`]: what the host checks of a watcher's records (bad nodes, limits).
//! - [`state`]: `ServiceState`, the plain struct with the hot path (books, fan-out,
//!   coalescing backlogs), and the reports it gives of itself.

pub mod actor;
pub mod intake;
pub mod state;

pub use actor::{ServiceActor, ServiceFailed, ServiceSpec};
pub use state::{
    Attachment, BatchApplied, EventSink, Flush, ReactorReport, ServiceState, ServiceStats,
    SessionChange, SessionObserver, SinkClosed, StateReport, WatcherReport,
};
