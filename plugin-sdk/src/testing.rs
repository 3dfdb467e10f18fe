//! Running a plugin's endpoint in-process, for the plugin's own unit tests.
//!
//! The endpoint runs on its own thread exactly as under the host, but its event channel
//! is a bounded in-process channel instead of a shared-memory ring. The full life cycle
//! (setup, accept, handle, close) is the same code path as in production; only the
//! transport differs. End-to-end tests with real processes live in the workspace's
//! `tests/`.
//!
//! ```
//! use plugin_sdk::testing::run_watcher;
//! use plugin_sdk::{watcher_endpoint, Config, Event, NodeStatus, Watcher, WatcherEndpoint};
//! use std::time::Duration;
//!
//! struct Once;
//! impl Watcher for Once {
//!     fn accept(&mut self, _cfg: Config) -> plugin_sdk::Result<WatcherEndpoint> {
//!         Ok(watcher_endpoint(|events, close| {
//!             events.send(Event::with_node("n1", NodeStatus::Up, "127.0.0.1", 80))?;
//!             close.wait();
//!             Ok(())
//!         }))
//!     }
//! }
//!
//! let run = run_watcher(&mut Once, "{}", "{}", 16).unwrap();
//! let update = run.recv_timeout(Duration::from_secs(5)).expect("an update");
//! assert_eq!(update.event().len(), 1);
//! run.close();
//! run.join(Duration::from_secs(5)).unwrap();
//! ```

use std::collections::VecDeque;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError as ChannelFull};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ipc::event::{Event, Update};

use crate::events::{Inbound, Outbound, TrySendError};
use crate::{Close, Closed, Config, EventReceiver, EventSender, Reactor, Watcher};

struct ChannelOutbound {
    tx: SyncSender<Update>,
}

impl Outbound for ChannelOutbound {
    fn try_send(&mut self, update: &Update) -> Result<(), TrySendError> {
        match self.tx.try_send(update.clone()) {
            Ok(()) => Ok(()),
            Err(ChannelFull::Full(_)) => Err(TrySendError::Full),
            Err(ChannelFull::Disconnected(_)) => {
                Err(TrySendError::Closed("test receiver dropped".into()))
            }
        }
    }

    fn space_waiter(&self) -> crate::events::SpaceWait {
        // A std channel cannot signal free space; poll briefly instead (tests only).
        Box::new(|timeout| {
            std::thread::sleep(timeout.min(Duration::from_millis(1)));
            Ok(())
        })
    }
}

enum Inbox {
    Event(Event),
    End,
    Wake,
}

struct ChannelInbound {
    rx: Receiver<Inbox>,
    wake: SyncSender<Inbox>,
}

impl Inbound for ChannelInbound {
    fn recv_into(&mut self, out: &mut VecDeque<Event>, timeout: Duration) -> Result<(), Closed> {
        let ended = || Closed {
            reason: "test stream ended".into(),
        };
        let first = if timeout.is_zero() {
            self.rx.try_recv().ok()
        } else {
            match self.rx.recv_timeout(timeout) {
                Ok(msg) => Some(msg),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return Err(ended()),
            }
        };
        for msg in first
            .into_iter()
            .chain(std::iter::from_fn(|| self.rx.try_recv().ok()))
        {
            match msg {
                Inbox::Event(ev) => out.push_back(ev),
                Inbox::End => return Err(ended()),
                Inbox::Wake => {}
            }
        }
        Ok(())
    }

    fn waker(&self) -> Box<dyn FnOnce() + Send> {
        let wake = self.wake.clone();
        Box::new(move || {
            let _ = wake.try_send(Inbox::Wake);
        })
    }
}

/// A watcher endpoint running on its own thread, its updates arriving here.
pub struct WatcherRun {
    updates: Receiver<Update>,
    close: Close,
    thread: JoinHandle<Result<(), String>>,
}

/// Sets up `watcher` with `global` JSON, accepts `instance` JSON, and runs the endpoint
/// with a channel of `capacity` updates. Setup or accept errors come back as their text.
pub fn run_watcher<W: Watcher>(
    watcher: &mut W,
    global: &str,
    instance: &str,
    capacity: usize,
) -> Result<WatcherRun, String> {
    watcher
        .setup(Config::global(global))
        .map_err(|e| e.to_string())?;
    let endpoint = watcher
        .accept(Config::instance(instance, "test-service", "test-instance"))
        .map_err(|e| e.to_string())?;
    let (tx, updates) = mpsc::sync_channel(capacity);
    let sender = EventSender::new(Box::new(ChannelOutbound { tx }));
    let close = Close::new();
    let thread = {
        let close = close.clone();
        std::thread::spawn(move || {
            let result = endpoint
                .handle(sender.clone(), close)
                .map_err(|e| e.to_string());
            sender.flush(Duration::from_secs(5));
            result
        })
    };
    Ok(WatcherRun {
        updates,
        close,
        thread,
    })
}

impl WatcherRun {
    /// The next update the endpoint sent, if one comes within `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<Update> {
        self.updates.recv_timeout(timeout).ok()
    }

    /// Fires the endpoint's close signal.
    pub fn close(&self) {
        self.close.close();
    }

    /// Waits up to `timeout` for the endpoint to return, and returns its result.
    pub fn join(self, timeout: Duration) -> Result<(), String> {
        join_within(self.thread, timeout)
    }
}

/// A reactor endpoint running on its own thread, fed from here.
pub struct ReactorRun {
    tx: SyncSender<Inbox>,
    close: Close,
    thread: JoinHandle<Result<(), String>>,
}

/// Sets up `reactor` with `global` JSON, accepts `instance` JSON, and runs the endpoint.
pub fn run_reactor<R: Reactor>(
    reactor: &mut R,
    global: &str,
    instance: &str,
) -> Result<ReactorRun, String> {
    reactor
        .setup(Config::global(global))
        .map_err(|e| e.to_string())?;
    let endpoint = reactor
        .accept(Config::instance(instance, "test-service", "test-instance"))
        .map_err(|e| e.to_string())?;
    let (tx, rx) = mpsc::sync_channel(1024);
    let close = Close::new();
    let receiver = EventReceiver::new(
        Box::new(ChannelInbound {
            rx,
            wake: tx.clone(),
        }),
        close.clone(),
    );
    let thread = {
        let close = close.clone();
        std::thread::spawn(move || endpoint.handle(receiver, close).map_err(|e| e.to_string()))
    };
    Ok(ReactorRun { tx, close, thread })
}

impl ReactorRun {
    /// Delivers an event to the endpoint.
    pub fn send(&self, ev: Event) {
        let _ = self.tx.send(Inbox::Event(ev));
    }

    /// Ends the event stream (as when the host goes away).
    pub fn end_stream(&self) {
        let _ = self.tx.send(Inbox::End);
    }

    /// Fires the endpoint's close signal.
    pub fn close(&self) {
        self.close.close();
    }

    /// Waits up to `timeout` for the endpoint to return, and returns its result.
    pub fn join(self, timeout: Duration) -> Result<(), String> {
        join_within(self.thread, timeout)
    }
}

fn join_within(thread: JoinHandle<Result<(), String>>, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    while !thread.is_finished() {
        if Instant::now() >= deadline {
            return Err(format!("endpoint did not return within {timeout:?}"));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    match thread.join() {
        Ok(result) => result,
        Err(_) => Err("endpoint panicked".into()),
    }
}
