//! An accepted instance: its endpoint, its event stream, and how to make a fresh
//! endpoint on the same stream when the endpoint failed (a restart in place).
//!
//! `handle` consumes its endpoint, so a restart asks the plugin for a new one: the SDK
//! calls `accept` again with the instance's config (the plugin is shared between the
//! control thread and the endpoint threads behind a mutex; `accept` is quick). The event
//! stream stays: for a watcher, the next incarnation's `EventSender` takes over the
//! transport and the backlog (the old sender's clones are closed); for a reactor, the
//! dropped `EventReceiver` leaves its transport and undelivered events behind for the
//! next one.

use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ipc::ring::{RingConsumer, RingProducer};

use super::rings::{RingInbound, RingOutbound};
use crate::events::{ReceiverHome, ReceiverParts, Report};
use crate::guard::guarded;
use crate::{Close, Config, EventReceiver, EventSender, Reactor, ReactorEndpoint, Watcher};
use crate::{Result as PluginResult, WatcherEndpoint};

/// How long a returning watcher endpoint may take to hand over its backlog.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// What the control loop needs of a watcher or a reactor.
pub(super) trait Served: Send + 'static {
    /// The plugin's `setup`.
    fn setup(&self, cfg: Config) -> PluginResult<()>;
    /// The plugin's `accept`, and the instance's ring opened.
    fn accept(&self, cfg: Config, ring: &str, segment: OwnedFd) -> PluginResult<Box<dyn Instance>>;
}

/// One accepted instance, as its endpoint thread runs it.
pub(super) trait Instance: Send {
    /// Runs one incarnation until `handle` returns: its error (with its chain) or panic
    /// as text.
    fn run(&mut self, close: Close) -> Result<(), String>;
    /// Prepares the next incarnation: a fresh endpoint from the plugin's `accept`, the
    /// stream handed over. `Err` when there is none (accept failed, the stream is over).
    fn renew(&mut self) -> Result<(), String>;
    /// Whether the event stream is over: no restart can help.
    fn stream_over(&self) -> bool;
    /// Where a watcher's count of merged updates goes (reactors have none).
    fn set_report(&mut self, report: Report);
    /// The endpoint is done for good: a watcher hands over what is still waiting.
    fn finish(&mut self);
}

/// Calls the shared plugin's `accept`.
fn accept_with<P, E>(
    plugin: &Mutex<P>,
    cfg: &Config,
    accept: impl FnOnce(&mut P, Config) -> PluginResult<E>,
) -> Result<E, String> {
    let mut plugin = plugin.lock().unwrap_or_else(PoisonError::into_inner);
    guarded(|| accept(&mut plugin, cfg.clone()))
}

pub(super) struct ServedWatcher<W>(pub(super) Arc<Mutex<W>>);

impl<W: Watcher> Served for ServedWatcher<W> {
    fn setup(&self, cfg: Config) -> PluginResult<()> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .setup(cfg)
    }

    fn accept(&self, cfg: Config, ring: &str, segment: OwnedFd) -> PluginResult<Box<dyn Instance>> {
        let endpoint = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .accept(cfg.clone())?;
        let producer = RingProducer::open(ring, segment)?;
        Ok(Box::new(WatcherInstance {
            plugin: self.0.clone(),
            cfg,
            endpoint: Some(endpoint),
            sender: EventSender::new(Box::new(RingOutbound::new(producer))),
        }))
    }
}

struct WatcherInstance<W> {
    plugin: Arc<Mutex<W>>,
    cfg: Config,
    endpoint: Option<WatcherEndpoint>,
    sender: EventSender,
}

impl<W: Watcher> Instance for WatcherInstance<W> {
    fn run(&mut self, close: Close) -> Result<(), String> {
        let endpoint = self.endpoint.take().ok_or("no endpoint to run")?;
        guarded(|| endpoint.handle(self.sender.clone(), close))
    }

    fn renew(&mut self) -> Result<(), String> {
        self.endpoint = Some(accept_with(&self.plugin, &self.cfg, W::accept)?);
        self.sender = self.sender.reincarnate("the endpoint was restarted");
        Ok(())
    }

    fn stream_over(&self) -> bool {
        self.sender.is_closed()
    }

    fn set_report(&mut self, report: Report) {
        self.sender.set_report(report);
    }

    fn finish(&mut self) {
        if !self.sender.flush(FLUSH_TIMEOUT) {
            tracing::warn!(
                "updates still waiting for the host after {FLUSH_TIMEOUT:?} were dropped"
            );
        }
        self.sender.report_final();
    }
}

pub(super) struct ServedReactor<R>(pub(super) Arc<Mutex<R>>);

impl<R: Reactor> Served for ServedReactor<R> {
    fn setup(&self, cfg: Config) -> PluginResult<()> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .setup(cfg)
    }

    fn accept(&self, cfg: Config, ring: &str, segment: OwnedFd) -> PluginResult<Box<dyn Instance>> {
        let endpoint = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .accept(cfg.clone())?;
        let consumer = RingConsumer::open(ring, segment)?;
        let parts = ReceiverParts::new(Box::new(RingInbound::new(consumer)));
        Ok(Box::new(ReactorInstance {
            plugin: self.0.clone(),
            cfg,
            endpoint: Some(endpoint),
            home: Arc::new(Mutex::new(Some(parts))),
        }))
    }
}

struct ReactorInstance<R> {
    plugin: Arc<Mutex<R>>,
    cfg: Config,
    endpoint: Option<ReactorEndpoint>,
    /// The stream between incarnations (taken while one runs).
    home: ReceiverHome,
}

impl<R> ReactorInstance<R> {
    fn parts(&self) -> std::sync::MutexGuard<'_, Option<ReceiverParts>> {
        self.home.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<R: Reactor> Instance for ReactorInstance<R> {
    fn run(&mut self, close: Close) -> Result<(), String> {
        let endpoint = self.endpoint.take().ok_or("no endpoint to run")?;
        let parts = self.parts().take().ok_or("the event stream is gone")?;
        let receiver = EventReceiver::resume(parts, close.clone(), Some(self.home.clone()));
        guarded(|| endpoint.handle(receiver, close))
    }

    fn renew(&mut self) -> Result<(), String> {
        if self.parts().is_none() {
            // The failed incarnation kept its receiver alive (in a thread of its own):
            // a second reader of the stream cannot be.
            return Err("the failed endpoint still holds its EventReceiver".into());
        }
        self.endpoint = Some(accept_with(&self.plugin, &self.cfg, R::accept)?);
        Ok(())
    }

    fn stream_over(&self) -> bool {
        self.parts().as_ref().is_some_and(ReceiverParts::is_over)
    }

    fn set_report(&mut self, _: Report) {}

    fn finish(&mut self) {}
}
