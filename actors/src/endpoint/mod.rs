//! Endpoints: one watcher or reactor instance of a service, and the session that
//! carries its events.
//!
//! # Layout
//! - [`session`]: the pump thread of a watcher session, the flusher of a reactor, and the
//!   ring traits they run on.
//! - [`rings`]: the host's ends of the shared-memory rings behind those traits.
//! - [`actor`]: the `Endpoint` actor that owns a session's thread.

pub mod actor;
pub mod rings;
pub mod session;

pub use session::{
    pump_watcher, run_reactor_flusher, ReactorRing, ServiceCore, SessionEnd, WatcherRing,
};

#[cfg(test)]
mod tests;
