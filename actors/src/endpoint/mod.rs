//! Endpoints: one watcher or reactor instance of a service, and the session that
//! carries its events.
//!
//! # Layout
//! - [`session`]: the pump thread of a watcher session, the flusher of a reactor, and the
//!   ring traits they run on.

pub mod session;

pub use session::{
    pump_watcher, run_reactor_flusher, ReactorRing, ServiceCore, SessionEnd, WatcherRing,
};

#[cfg(test)]
mod tests;
