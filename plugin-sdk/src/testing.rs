//! Running a plugin's endpoint in-process, for the plugin's own unit tests.
//!
//! The endpoint runs on its own thread exactly as under the host, and its events go
//! through the same SDK code (checks, backlog, full lists in pieces). Only the
//! transport differs: a bounded in-process channel instead of a shared-memory ring, with
//! the ring's behaviour where it matters to a plugin:
//! - every update is encoded with the wire codec and refused above the ring's record
//!   limit, so what passes here passes under the host;
//! - a full channel makes updates wait in the SDK's backlog (`send` never blocks);
//! - [`WatcherRun::state`] is the set of nodes the host would compute from what the
//!   watcher sent (its book), full lists in pieces included;
//! - the endpoint's error or panic comes back with the text the host would log.
//!
//! ```
//! use plugin_sdk::testing::Harness;
//! use plugin_sdk::{watcher_endpoint, Config, Event, NodeStatus, Watcher, WatcherEndpoint};
//! use std::time::Duration;
//!
//! struct Once;
//! impl Watcher for Once {
//!     fn accept(&mut self, cfg: Config) -> plugin_sdk::Result<WatcherEndpoint> {
//!         let name = format!("{}-n1", cfg.instance_name().unwrap_or("none"));
//!         Ok(watcher_endpoint(move |events, close| {
//!             events.send(Event::with_node(&name, NodeStatus::Up, "127.0.0.1", 80))?;
//!             close.wait();
//!             Ok(())
//!         }))
//!     }
//! }
//!
//! let run = Harness::new().instance("a").run_watcher(&mut Once, "{}").unwrap();
//! let update = run.recv_timeout(Duration::from_secs(5)).expect("an update");
//! assert_eq!(update.event().len(), 1);
//! assert!(run.state().get("a-n1").is_some());
//! run.close();
//! run.join(Duration::from_secs(5)).unwrap();
//! ```
//!
//! End-to-end tests with real processes live in the workspace's `tests/`.

use std::collections::VecDeque;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError as ChannelFull};
use std::sync::{Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ipc::codec;
use ipc::event::{Book, Event, Update};
use ipc::ring::RingConfig;

use crate::events::{Inbound, Outbound, TrySendError};
use crate::guard::guarded;
use crate::{Close, Config, EventReceiver, EventSender, Reactor, StreamClosed, Watcher};

/// How long a watcher endpoint that returned may take to hand over its backlog, as
/// under the host.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// Where and how a test runs an endpoint: the names the endpoint's `Config` reports, the
/// plugin type's global config, and the watcher channel's room.
#[derive(Debug, Clone)]
pub struct Harness {
    service: String,
    instance: String,
    global: String,
    capacity: usize,
}

impl Default for Harness {
    fn default() -> Self {
        Harness {
            service: "test-service".into(),
            instance: "test-instance".into(),
            global: "{}".into(),
            capacity: 64,
        }
    }
}

impl Harness {
    /// Service `test-service`, instance `test-instance`, global config `{}`, room for 64
    /// updates in the watcher's channel.
    pub fn new() -> Self {
        Harness::default()
    }

    /// The service name `cfg.service()` reports.
    pub fn service(mut self, name: &str) -> Self {
        self.service = name.to_owned();
        self
    }

    /// The instance name `cfg.instance_name()` reports.
    pub fn instance(mut self, name: &str) -> Self {
        self.instance = name.to_owned();
        self
    }

    /// The plugin type's global config (JSON) that `setup` gets.
    pub fn global(mut self, json: &str) -> Self {
        self.global = json.to_owned();
        self
    }

    /// How many updates the watcher's channel holds before the SDK's backlog takes over
    /// (at least 1).
    pub fn capacity(mut self, updates: usize) -> Self {
        self.capacity = updates.max(1);
        self
    }

    fn config(&self, instance: &str) -> Config {
        Config::instance(instance, &self.service, &self.instance)
    }

    /// Sets `watcher` up, accepts the instance config `instance` (JSON), and runs the
    /// endpoint. A setup or accept error comes back as its text.
    pub fn run_watcher<W: Watcher>(
        &self,
        watcher: &mut W,
        instance: &str,
    ) -> Result<WatcherRun, String> {
        guarded(|| watcher.setup(Config::global(self.global.clone())))?;
        let endpoint = guarded(|| watcher.accept(self.config(instance)))?;
        let (tx, updates) = mpsc::sync_channel(self.capacity);
        let sender = EventSender::new(Box::new(ChannelOutbound {
            tx,
            max_record: RingConfig::default().max_record,
            buf: Vec::new(),
        }));
        let close = Close::new();
        let thread = {
            let close = close.clone();
            std::thread::spawn(move || {
                let result = guarded(|| endpoint.handle(sender.clone(), close));
                sender.flush(FLUSH_TIMEOUT);
                result
            })
        };
        Ok(WatcherRun {
            updates,
            seen: Mutex::new(Seen::default()),
            close,
            thread,
        })
    }

    /// Sets `reactor` up, accepts the instance config `instance` (JSON), and runs the
    /// endpoint.
    pub fn run_reactor<R: Reactor>(
        &self,
        reactor: &mut R,
        instance: &str,
    ) -> Result<ReactorRun, String> {
        guarded(|| reactor.setup(Config::global(self.global.clone())))?;
        let endpoint = guarded(|| reactor.accept(self.config(instance)))?;
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
            std::thread::spawn(move || guarded(|| endpoint.handle(receiver, close)))
        };
        Ok(ReactorRun { tx, close, thread })
    }
}

/// [`Harness::run_watcher`] with the default names and `global` config, `capacity`
/// updates of room.
pub fn run_watcher<W: Watcher>(
    watcher: &mut W,
    global: &str,
    instance: &str,
    capacity: usize,
) -> Result<WatcherRun, String> {
    Harness::new()
        .global(global)
        .capacity(capacity)
        .run_watcher(watcher, instance)
}

/// [`Harness::run_reactor`] with the default names and `global` config.
pub fn run_reactor<R: Reactor>(
    reactor: &mut R,
    global: &str,
    instance: &str,
) -> Result<ReactorRun, String> {
    Harness::new().global(global).run_reactor(reactor, instance)
}

/// The watcher's transport: encoded updates over a bounded channel.
struct ChannelOutbound {
    tx: SyncSender<Vec<u8>>,
    max_record: usize,
    buf: Vec<u8>,
}

impl Outbound for ChannelOutbound {
    fn try_send(&mut self, update: &Update) -> Result<(), TrySendError> {
        self.buf.clear();
        codec::encode_into(update, &mut self.buf, "update")
            .map_err(|e| TrySendError::Closed(e.to_string()))?;
        if self.buf.len() > self.max_record {
            return Err(TrySendError::TooLarge);
        }
        match self.tx.try_send(self.buf.clone()) {
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

/// What a watcher sent, as the test has taken it from the channel.
#[derive(Default)]
struct Seen {
    /// Updates not returned by `recv_timeout` yet.
    queue: VecDeque<Update>,
    /// Every update applied, as the host's book for the watcher.
    book: Book,
}

impl Seen {
    /// Decodes a record (the host would end the session on one that does not decode),
    /// queues it and applies it to the book.
    fn take(&mut self, record: &[u8]) {
        let update: Update = codec::decode(record, "update")
            .unwrap_or_else(|e| panic!("the watcher sent a record the host refuses: {e}"));
        self.book.apply(update.clone());
        self.queue.push_back(update);
    }
}

/// A watcher endpoint running on its own thread, its updates arriving here.
pub struct WatcherRun {
    updates: Receiver<Vec<u8>>,
    seen: Mutex<Seen>,
    close: Close,
    thread: JoinHandle<Result<(), String>>,
}

impl WatcherRun {
    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes every update that has arrived into the queue and the book.
    fn take_arrived(&self, seen: &mut Seen) {
        while let Ok(record) = self.updates.try_recv() {
            seen.take(&record);
        }
    }

    /// The next update the endpoint sent, if one comes within `timeout`. A full list
    /// too large for one record arrives as its pieces (`FullStart`, `FullPart`s, and a
    /// `FullEnd`).
    pub fn recv_timeout(&self, timeout: Duration) -> Option<Update> {
        let mut seen = self.seen();
        if let Some(update) = seen.queue.pop_front() {
            return Some(update);
        }
        let record = self.updates.recv_timeout(timeout).ok()?;
        seen.take(&record);
        seen.queue.pop_front()
    }

    /// The nodes up now as the host sees them from everything the endpoint sent so far
    /// (a full list in pieces counts once it is whole). Updates it takes from the
    /// channel are still returned by [`recv_timeout`](Self::recv_timeout).
    pub fn state(&self) -> Event {
        let mut seen = self.seen();
        self.take_arrived(&mut seen);
        seen.book.full()
    }

    /// Fires the endpoint's close signal.
    pub fn close(&self) {
        self.close.fire();
    }

    /// Waits up to `timeout` for the endpoint to return, and returns its result (its
    /// error or panic as the host would log it).
    pub fn join(self, timeout: Duration) -> Result<(), String> {
        join_within(self.thread, timeout)
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
    fn recv_into(
        &mut self,
        out: &mut VecDeque<Event>,
        timeout: Duration,
    ) -> Result<(), StreamClosed> {
        let ended = || StreamClosed {
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

/// A reactor endpoint running on its own thread, fed from here.
pub struct ReactorRun {
    tx: SyncSender<Inbox>,
    close: Close,
    thread: JoinHandle<Result<(), String>>,
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
        self.close.fire();
    }

    /// Waits up to `timeout` for the endpoint to return, and returns its result (its
    /// error or panic as the host would log it).
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
    // `guarded` caught the endpoint's panics; this one would be the harness's own.
    thread
        .join()
        .unwrap_or_else(|panic| Err(format!("panicked: {}", ipc::panic::panic_message(&*panic))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{watcher_endpoint, NodeInfo, NodeStatus, WatcherEndpoint};

    /// A watcher whose endpoint runs `f` with its sender.
    struct With<F>(Option<F>);

    impl<F> Watcher for With<F>
    where
        F: FnOnce(EventSender) -> crate::Result<()> + Send + 'static,
    {
        fn accept(&mut self, _cfg: Config) -> crate::Result<WatcherEndpoint> {
            let f = self.0.take().expect("accepted once");
            Ok(watcher_endpoint(move |events, _close| f(events)))
        }
    }

    fn nodes(n: u32) -> Vec<NodeInfo> {
        (0..n)
            .map(|i| {
                let name = format!("node-{i:06}.web.example.internal");
                NodeInfo::new(name, NodeStatus::Up, "10.1.2.3", 8080)
            })
            .collect()
    }

    /// Regression: the harness took a 20,000-node full list as one update that the
    /// host's ring refuses; now it goes through the ring's limits and arrives in
    /// pieces, and `state` is the whole list.
    #[test]
    fn a_large_full_list_arrives_in_pieces_within_the_rings_limit() {
        let list = nodes(20_000);
        let sent = list.clone();
        let mut watcher = With(Some(move |events: EventSender| {
            events.send_full(sent)?;
            Ok(())
        }));
        let run = Harness::new()
            .capacity(4)
            .run_watcher(&mut watcher, "{}")
            .unwrap();
        let mut pieces = 0;
        while let Some(update) = run.recv_timeout(Duration::from_secs(5)) {
            pieces += 1;
            if matches!(&update, Update::FullEnd(_)) {
                break;
            }
        }
        assert!(pieces > 3, "{pieces} pieces");
        assert_eq!(run.state(), list.into_iter().collect::<Event>());
        run.join(Duration::from_secs(5)).unwrap();
    }

    #[test]
    fn a_panic_keeps_its_text_and_names_come_from_the_harness() {
        struct Names;
        impl Watcher for Names {
            fn accept(&mut self, cfg: Config) -> crate::Result<WatcherEndpoint> {
                let said = format!("{:?}/{:?}", cfg.service(), cfg.instance_name());
                Ok(watcher_endpoint(move |_events, _close| {
                    panic!("boom in {said}")
                }))
            }
        }
        let run = Harness::new()
            .service("web")
            .instance("east")
            .run_watcher(&mut Names, "{}")
            .unwrap();
        let err = run.join(Duration::from_secs(5)).unwrap_err();
        assert_eq!(err, r#"panicked: boom in Some("web")/Some("east")"#);
    }

    #[test]
    fn a_bad_node_is_refused_as_under_the_host() {
        let mut watcher = With(Some(|events: EventSender| {
            let bad = NodeInfo::new("a\nb", NodeStatus::Up, "h", 1);
            events.send_node(bad)?;
            Ok(())
        }));
        let run = Harness::new().run_watcher(&mut watcher, "{}").unwrap();
        let err = run.join(Duration::from_secs(5)).unwrap_err();
        assert!(err.contains("field 'name'"), "{err}");
    }
}
