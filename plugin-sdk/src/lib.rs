//! The actor-free API plugin authors use to write Receptor watchers and reactors.
//!
//! A plugin is a small program: implement [`Watcher`] or [`Reactor`] and hand it to
//! [`serve_watcher`] or [`serve_reactor`] from `main`. The SDK does the rest: the
//! handshake with the host, the control loop, one thread per running endpoint, the
//! shared-memory event channel, and exiting when the host goes away. No actix, no tokio.
//!
//! The life cycle is the original receptor's: `setup` once with the plugin type's global
//! config, `accept` once per service instance returning an [`Endpoint`], the host runs
//! `handle(events, close)`, and `handle` returns when `close` fires or the stream ends.
//!
//! ```no_run
//! use plugin_sdk::{watcher_endpoint, Config, Event, NodeStatus, Watcher, WatcherEndpoint};
//! use std::time::Duration;
//!
//! #[derive(serde::Deserialize)]
//! struct Cfg { name: String, host: String, port: u16 }
//!
//! struct Blinker;
//!
//! impl Watcher for Blinker {
//!     fn accept(&mut self, cfg: Config) -> plugin_sdk::Result<WatcherEndpoint> {
//!         let cfg: Cfg = cfg.parse()?; // an error names the field, e.g. "port: invalid type"
//!         Ok(watcher_endpoint(move |events, close| {
//!             let mut up = true;
//!             while !close.is_closed() {
//!                 let status = if up { NodeStatus::Up } else { NodeStatus::Down };
//!                 events.send(Event::with_node(&cfg.name, status, &cfg.host, cfg.port))?;
//!                 up = !up;
//!                 close.wait_timeout(Duration::from_secs(2));
//!             }
//!             Ok(())
//!         }))
//!     }
//! }
//!
//! fn main() {
//!     plugin_sdk::serve_watcher(Blinker)
//! }
//! ```
//!
//! # Layout
//! - [`plugin`](Watcher): the traits `Watcher`, `Reactor`, `Endpoint` and closure helpers.
//! - [`config`](Config): the JSON configuration and its typed parsing.
//! - [`close`](Close): the close signal.
//! - [`events`](EventSender): `EventSender` (watchers) and `EventReceiver` (reactors).
//! - [`serve_watcher`] / [`serve_reactor`]: the process side (handshake, control loop,
//!   endpoint threads, exit when the host goes away); [`restart`]: how a failed
//!   endpoint is restarted in place, and when the SDK gives up.
//! - `guard`: plugin code's errors (with their chain of causes) and panics as text.
//! - [`testing`]: run an endpoint in-process for a plugin's unit tests.
#![warn(missing_docs)]

mod close;
mod config;
mod events;
mod guard;
mod plugin;
mod serve;
pub mod testing;

pub use close::Close;
pub use config::{Config, ConfigError};
pub use events::{
    EventReceiver, EventSender, RecvTimeoutError, SendError, StreamClosed, TryRecvError,
};
pub use ipc::event::{Event, NodeError, NodeInfo, NodeStatus, Update};
pub use plugin::{
    reactor_endpoint, watcher_endpoint, Endpoint, Error, Reactor, ReactorEndpoint, Result, Watcher,
    WatcherEndpoint,
};
pub use serve::{restart, serve_reactor, serve_watcher};
/// The logging facade plugins use: the SDK forwards every line to the host's log.
pub use tracing;

/// The plugin author's guide (`plugin-sdk/README.md`): each of its Rust blocks is a
/// doctest, so the guide cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
