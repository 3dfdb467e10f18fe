//! The traits a plugin implements: the seed's life cycle in Rust.
//!
//! 1. `setup(cfg)` once, with the plugin type's global configuration: check it and set
//!    up shared state. An error stops the host's start-up and is shown to the user.
//! 2. `accept(cfg)` once per service instance: check the instance's configuration and
//!    return an [`Endpoint`] holding everything it needs. Start nothing here: there is no
//!    guarantee the endpoint ever runs.
//! 3. The host runs the endpoint: [`Endpoint::handle`] on its own thread, with the event
//!    channel (an [`EventSender`] for a watcher, an [`EventReceiver`] for a reactor) and a
//!    [`Close`] signal.
//! 4. `handle` returns when `close` fires or the event stream ends; cleaning up is its job.

use crate::{Close, Config, EventReceiver, EventSender};

/// The error a plugin returns: any error type, shown to the user as its `Display` text.
pub type Error = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with the plugin [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A source of node events (for example a service registry, a DNS name, an HTTP API).
pub trait Watcher: Send + 'static {
    /// Configures the plugin as a whole with `[watchers.<type>]` (`{}` when absent).
    fn setup(&mut self, cfg: Config) -> Result<()> {
        let _ = cfg;
        Ok(())
    }

    /// Accepts one instance's `cfg` and returns the endpoint that will run it.
    fn accept(&mut self, cfg: Config) -> Result<WatcherEndpoint>;
}

/// A sink of node events (for example a load balancer's config, a webhook, a log file).
pub trait Reactor: Send + 'static {
    /// Configures the plugin as a whole with `[reactors.<type>]` (`{}` when absent).
    fn setup(&mut self, cfg: Config) -> Result<()> {
        let _ = cfg;
        Ok(())
    }

    /// Accepts one instance's `cfg` and returns the endpoint that will run it.
    fn accept(&mut self, cfg: Config) -> Result<ReactorEndpoint>;
}

/// An instance of a plugin configured for one service, ready to run.
///
/// `Events` is [`EventSender`] for a watcher and [`EventReceiver`] for a reactor. Any
/// closure `FnOnce(Events, Close) -> Result<()>` is an endpoint (the seed's `EndpointFunc`).
pub trait Endpoint<Events>: Send + 'static {
    /// Runs the instance until `close` fires or the event stream ends.
    fn handle(self: Box<Self>, events: Events, close: Close) -> Result<()>;
}

impl<Events, F> Endpoint<Events> for F
where
    F: FnOnce(Events, Close) -> Result<()> + Send + 'static,
{
    fn handle(self: Box<Self>, events: Events, close: Close) -> Result<()> {
        (*self)(events, close)
    }
}

/// What [`Watcher::accept`] returns.
pub type WatcherEndpoint = Box<dyn Endpoint<EventSender>>;

/// What [`Reactor::accept`] returns.
pub type ReactorEndpoint = Box<dyn Endpoint<EventReceiver>>;

/// Makes a watcher endpoint from a closure (spares the closure's argument types).
pub fn watcher_endpoint<F>(f: F) -> WatcherEndpoint
where
    F: FnOnce(EventSender, Close) -> Result<()> + Send + 'static,
{
    Box::new(f)
}

/// Makes a reactor endpoint from a closure (spares the closure's argument types).
pub fn reactor_endpoint<F>(f: F) -> ReactorEndpoint
where
    F: FnOnce(EventReceiver, Close) -> Result<()> + Send + 'static,
{
    Box::new(f)
}
