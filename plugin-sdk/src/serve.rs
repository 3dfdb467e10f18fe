//! The process side of a plugin: handshake, control loop, endpoint threads, exit.
//!
//! [`serve_watcher`](crate::serve_watcher) and [`serve_reactor`](crate::serve_reactor)
//! connect to the host over the control connection it handed this process, then answer
//! the host's requests in order, the seed's life cycle:
//! - `Setup`: the plugin's `setup` with the type's global config;
//! - `Accept`: the plugin's `accept` for one instance, and the instance's ring opened;
//! - `Start`: `handle` runs on a thread of its own; when it returns the SDK flushes what
//!   a watcher still holds, closes the ring, and tells the host the endpoint finished
//!   (with the error, if `handle` failed or panicked);
//! - `Close`: fires the endpoint's close signal;
//! - `Ping`: answers; `Shutdown`: closes every endpoint, waits briefly, exits 0.
//!
//! A panic in the plugin's code becomes an error answer or a "finished with error"
//! notice, never a hung request. When the control connection closes (the host exited or
//! died) every endpoint is closed and the process exits within a fraction of a second.
//! A second line of defence watches the parent: if this process is re-parented (the host
//! is gone but, say, a stray copy of the control socket kept it open), it exits too.
//! (`PR_SET_PDEATHSIG` would not do: it fires when the host *thread* that spawned the
//! plugin exits, and the host spawns plugins from a pool whose threads come and go.)
//! Log lines go to stderr as `LEVEL message`, which the host forwards into its log under
//! the plugin's name.

use std::collections::{HashMap, VecDeque};
use std::os::fd::OwnedFd;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ipc::codec;
use ipc::control::{EndpointId, Incoming, Notice, Notifier, PluginEnd, RecvError, Request};
use ipc::event::{Event, Update};
use ipc::panic::catch_panic;
use ipc::records::Records;
use ipc::ring::{RingConsumer, RingError, RingProducer, RingWaker};

use crate::events::{Inbound, Outbound, TrySendError};
use crate::{Close, Closed, Config, EventReceiver, EventSender, Reactor, Watcher};

/// How long the handshake with the host may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long endpoints get to return after `Shutdown` before the process exits anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);
/// How long endpoints get when the host is gone.
const ORPHAN_GRACE: Duration = Duration::from_millis(300);

/// How often the process checks that its parent, the host, is still the one that
/// started it.
const PARENT_CHECK: Duration = Duration::from_millis(100);
/// How long a returning watcher endpoint may take to hand over its backlog.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// An accepted instance, ready to run with its close signal.
type Runnable = Box<dyn FnOnce(Close) -> crate::Result<()> + Send>;

/// What the control loop needs of a watcher or a reactor.
trait Served {
    fn setup(&mut self, cfg: Config) -> crate::Result<()>;
    fn accept(&mut self, cfg: Config, ring: &str, segment: OwnedFd) -> crate::Result<Runnable>;
}

struct ServedWatcher<W>(W);

impl<W: Watcher> Served for ServedWatcher<W> {
    fn setup(&mut self, cfg: Config) -> crate::Result<()> {
        self.0.setup(cfg)
    }

    fn accept(&mut self, cfg: Config, ring: &str, segment: OwnedFd) -> crate::Result<Runnable> {
        let endpoint = self.0.accept(cfg)?;
        let producer = RingProducer::open(ring, segment)?;
        Ok(Box::new(move |close| {
            let sender = EventSender::new(Box::new(RingOutbound {
                producer,
                buf: Vec::new(),
            }));
            let result = endpoint.handle(sender.clone(), close);
            if !sender.flush(FLUSH_TIMEOUT) {
                tracing::warn!(
                    "updates still waiting for the host after {FLUSH_TIMEOUT:?} were dropped"
                );
            }
            result
        }))
    }
}

struct ServedReactor<R>(R);

impl<R: Reactor> Served for ServedReactor<R> {
    fn setup(&mut self, cfg: Config) -> crate::Result<()> {
        self.0.setup(cfg)
    }

    fn accept(&mut self, cfg: Config, ring: &str, segment: OwnedFd) -> crate::Result<Runnable> {
        let endpoint = self.0.accept(cfg)?;
        let consumer = RingConsumer::open(ring, segment)?;
        Ok(Box::new(move |close: Close| {
            let receiver = EventReceiver::new(Box::new(RingInbound::new(consumer)), close.clone());
            endpoint.handle(receiver, close)
        }))
    }
}

/// A watcher's ring as the SDK's outbound transport.
struct RingOutbound {
    producer: RingProducer,
    buf: Vec<u8>,
}

/// How long a send waits for the host to free space in a full ring before the update
/// goes to the coalescing backlog instead: about one batch of the host's pump.
const FULL_GRACE: Duration = Duration::from_micros(20);

/// Why a ring's stream is over, as the plugin's side of it says.
fn ring_closed(e: RingError) -> String {
    match e {
        RingError::Closed => "the host closed the endpoint".into(),
        e => e.to_string(),
    }
}

/// What a ring's refusal means to the sender: the stream is over.
fn closed(e: RingError) -> TrySendError {
    match e {
        RingError::TooLarge { .. } => TrySendError::TooLarge,
        e => TrySendError::Closed(ring_closed(e)),
    }
}

impl Outbound for RingOutbound {
    fn try_send(&mut self, update: &Update) -> Result<(), TrySendError> {
        self.buf.clear();
        codec::encode_into(update, &mut self.buf, "update")
            .map_err(|e| TrySendError::Closed(e.to_string()))?;
        let mut pushed = self.producer.try_push(&self.buf);
        if pushed == Ok(false) && self.producer.wait_space(FULL_GRACE).unwrap_or(false) {
            pushed = self.producer.try_push(&self.buf);
        }
        match pushed.map_err(closed)? {
            true => Ok(()),
            false => Err(TrySendError::Full),
        }
    }

    fn try_send_records(&mut self, records: &Records) -> Result<usize, TrySendError> {
        self.producer.try_push_batch(records.iter()).map_err(closed)
    }

    fn try_send_raw(&mut self, record: &[u8]) -> Result<bool, TrySendError> {
        self.producer.try_push(record).map_err(closed)
    }

    fn space_waiter(&self) -> crate::events::SpaceWait {
        let waiter = self.producer.space_waiter();
        Box::new(move |timeout| waiter.wait(timeout).map(drop).map_err(ring_closed))
    }
}

/// A reactor's ring as the SDK's inbound transport.
///
/// What a drain takes from the ring stays encoded here, and a record is decoded only
/// when the reactor asks for the next event: the events alive at once are the one the
/// reactor holds, not the thousands a drain can bring (decoding them all up front
/// made the allocator grow and shrink its heap with every drain).
struct RingInbound {
    consumer: RingConsumer,
    /// The records of the last drain.
    records: Records,
    /// The next of them to decode.
    next: usize,
    /// How the stream ended, once the records before the end are delivered.
    end: Option<Closed>,
}

impl RingInbound {
    fn new(consumer: RingConsumer) -> Self {
        RingInbound {
            consumer,
            records: Records::new(),
            next: 0,
            end: None,
        }
    }

    /// Takes what the ring has (waiting up to `timeout` for it) into `records`.
    fn fill(&mut self, timeout: Duration) {
        self.records.clear();
        self.next = 0;
        let drained = self.consumer.drain_timeout_into(timeout, &mut self.records);
        self.end = drained.err().map(|e| Closed {
            reason: ring_closed(e),
        });
    }
}

impl Inbound for RingInbound {
    fn recv_into(&mut self, out: &mut VecDeque<Event>, timeout: Duration) -> Result<(), Closed> {
        if self.next == self.records.len() {
            if let Some(end) = &self.end {
                return Err(end.clone());
            }
            self.fill(timeout);
        }
        let Some(record) = self.records.get(self.next) else {
            return self.end.clone().map_or(Ok(()), Err);
        };
        self.next += 1;
        match codec::decode::<Event>(record, "event") {
            Ok(event) => {
                out.push_back(event);
                Ok(())
            }
            Err(e) => {
                // A frame that does not decode ends the stream; what came before it
                // was delivered.
                self.next = self.records.len();
                let closed = Closed {
                    reason: e.to_string(),
                };
                self.end = Some(closed.clone());
                Err(closed)
            }
        }
    }

    fn waker(&self) -> Box<dyn FnOnce() + Send> {
        let waker: RingWaker = self.consumer.waker();
        Box::new(move || waker.wake())
    }
}

/// A started endpoint.
struct Running {
    close: Close,
    thread: JoinHandle<()>,
}

/// The control loop's state.
struct Server<S> {
    plugin: S,
    accepted: HashMap<EndpointId, (String, Runnable)>,
    running: HashMap<EndpointId, Running>,
    notifier: Notifier,
}

/// Runs `f`, turning an error or a panic into the text the host shows.
fn guarded<T>(f: impl FnOnce() -> crate::Result<T>) -> Result<T, String> {
    match catch_panic(f) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(e.to_string()),
        Err(panic) => Err(format!("panicked: {panic}")),
    }
}

impl<S: Served> Server<S> {
    fn handle(&mut self, request: Request, segment: Option<OwnedFd>) -> Result<(), String> {
        match request {
            Request::Setup { global_cfg } => {
                guarded(|| self.plugin.setup(Config::global(global_cfg)))
            }
            Request::Accept {
                endpoint,
                service,
                instance,
                cfg,
                ring,
            } => {
                let name = format!("{service}/{instance}");
                let cfg = Config::instance(cfg, service, instance);
                let segment = segment.ok_or("Accept came without its ring's segment")?;
                let runnable = guarded(|| self.plugin.accept(cfg, &ring, segment))?;
                self.accepted.insert(endpoint, (name, runnable));
                Ok(())
            }
            Request::Start { endpoint } => self.start(endpoint),
            Request::Close { endpoint } => {
                if let Some(running) = self.running.get(&endpoint) {
                    running.close.close();
                }
                self.accepted.remove(&endpoint);
                Ok(())
            }
            Request::Ping => Ok(()),
            Request::Shutdown => Ok(()),
        }
    }

    fn start(&mut self, endpoint: EndpointId) -> Result<(), String> {
        let (name, runnable) = self
            .accepted
            .remove(&endpoint)
            .ok_or_else(|| format!("no accepted endpoint {endpoint}"))?;
        let close = Close::new();
        let notifier = self.notifier.clone();
        let thread_close = close.clone();
        let thread_name = format!("endpoint-{name}");
        let failed = format!("cannot start a thread for {name}");
        let thread = std::thread::Builder::new()
            .name(thread_name)
            .spawn(move || {
                let error = guarded(|| runnable(thread_close)).err();
                match &error {
                    Some(e) => tracing::error!("endpoint {name} failed: {e}"),
                    None => tracing::debug!("endpoint {name} finished"),
                }
                let _ = notifier.notify(Notice::Finished { endpoint, error });
            })
            .map_err(|e| format!("{failed}: {e}"))?;
        self.running.insert(endpoint, Running { close, thread });
        Ok(())
    }

    /// Closes every endpoint and waits up to `grace` for their threads.
    fn close_all(&mut self, grace: Duration) {
        for running in self.running.values() {
            running.close.close();
        }
        let deadline = Instant::now() + grace;
        for (_, running) in self.running.drain() {
            while !running.thread.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

/// Sends plugin log lines to stderr as `LEVEL message`, unless the plugin installed its
/// own subscriber.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RECEPTOR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .with_target(false)
        .with_ansi(false)
        .try_init();
}

/// Exits the process once its parent changed (the host died), after giving the control
/// loop `ORPHAN_GRACE` to close the endpoints itself.
fn watch_parent() {
    let parent = std::os::unix::process::parent_id();
    let spawned = std::thread::Builder::new()
        .name("receptor-parent".into())
        .spawn(move || loop {
            std::thread::sleep(PARENT_CHECK);
            if std::os::unix::process::parent_id() != parent {
                tracing::error!("the Receptor host (pid {parent}) is gone; exiting");
                std::thread::sleep(ORPHAN_GRACE);
                std::process::exit(0);
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot watch the host process: {e}");
    }
}

fn serve<S: Served>(plugin: S) -> ! {
    init_logging();
    watch_parent();
    // A ring's segment is a descriptor: a plugin with many endpoints needs many.
    if let Err(e) = ipc::sys::raise_fd_limit() {
        tracing::warn!("cannot raise the limit on open files: {e}");
    }
    let conn = match PluginEnd::from_env(HANDSHAKE_TIMEOUT) {
        Ok(conn) => conn,
        Err(e) => {
            tracing::error!("cannot connect to the Receptor host: {e}");
            eprintln!("This program is a Receptor plugin: the receptor host starts it.");
            std::process::exit(2);
        }
    };
    let mut server = Server {
        plugin,
        accepted: HashMap::new(),
        running: HashMap::new(),
        notifier: conn.notifier(),
    };
    loop {
        match conn.recv() {
            Ok(Incoming {
                id,
                request: Request::Shutdown,
                ..
            }) => {
                server.close_all(SHUTDOWN_GRACE);
                let _ = conn.respond(id, Ok(()));
                std::process::exit(0);
            }
            Ok(Incoming {
                id,
                request,
                segment,
            }) => {
                let answer = server.handle(request, segment);
                if conn.respond(id, answer).is_err() {
                    server.close_all(ORPHAN_GRACE);
                    std::process::exit(0);
                }
            }
            Err(RecvError::Closed) => {
                server.close_all(ORPHAN_GRACE);
                std::process::exit(0);
            }
            Err(e) => {
                tracing::error!("control connection failed: {e}");
                server.close_all(ORPHAN_GRACE);
                std::process::exit(2);
            }
        }
    }
}

/// Serves a watcher plugin; see the module docs.
pub fn serve_watcher<W: Watcher>(watcher: W) -> ! {
    serve(ServedWatcher(watcher))
}

/// Serves a reactor plugin; see the module docs.
pub fn serve_reactor<R: Reactor>(reactor: R) -> ! {
    serve(ServedReactor(reactor))
}

#[cfg(test)]
mod tests {
    use ipc::event::{NodeInfo, NodeStatus};
    use ipc::ring::RingConfig;

    use super::*;
    use crate::SendError;

    fn event(names: &[&str]) -> Event {
        names
            .iter()
            .map(|n| NodeInfo::new(*n, NodeStatus::Up, "10.0.0.1", 80))
            .collect()
    }

    /// A receiver on a real ring, its producer (the host's side) here too.
    fn receiver() -> (RingProducer, EventReceiver) {
        let producer = RingProducer::create(RingConfig::with_capacity(1 << 16)).unwrap();
        let segment = producer.ring().segment_fd().try_clone_to_owned().unwrap();
        let consumer = RingConsumer::open(producer.ring().base(), segment).unwrap();
        let inbound = Box::new(RingInbound::new(consumer));
        (producer, EventReceiver::new(inbound, Close::new()))
    }

    #[test]
    fn events_of_one_drain_arrive_in_order_then_the_end_of_the_stream() {
        let (mut producer, mut events) = receiver();
        let sent = [event(&["a"]), event(&["b", "c"]), event(&["d"])];
        let records: Vec<Vec<u8>> = sent
            .iter()
            .map(|e| codec::encode(e, "event").unwrap())
            .collect();
        assert_eq!(producer.try_push_batch(&records).unwrap(), 3);
        drop(producer);
        for expected in &sent {
            assert_eq!(
                events.recv_timeout(Duration::from_secs(5)).as_ref(),
                Ok(expected)
            );
        }
        assert_eq!(events.recv(), None, "the host closed the ring");
    }

    #[test]
    fn a_frame_that_does_not_decode_ends_the_stream_after_the_events_before_it() {
        let (mut producer, mut events) = receiver();
        let good = codec::encode(&event(&["a"]), "event").unwrap();
        let records = [good.clone(), vec![0xff; 12], good];
        assert_eq!(producer.try_push_batch(&records).unwrap(), 3);
        assert_eq!(events.recv(), Some(event(&["a"])));
        assert_eq!(events.recv(), None, "nothing after the bad frame");
        assert_eq!(events.try_recv(), None);
    }

    #[test]
    fn a_receive_times_out_while_the_ring_is_empty_and_gets_what_comes_later() {
        let (mut producer, mut events) = receiver();
        assert_eq!(
            events.recv_timeout(Duration::from_millis(20)),
            Err(crate::RecvTimeoutError::Timeout)
        );
        assert_eq!(events.try_recv(), None);
        let record = codec::encode(&event(&["late"]), "event").unwrap();
        assert!(producer.try_push(&record).unwrap());
        assert_eq!(
            events.recv_timeout(Duration::from_secs(5)),
            Ok(event(&["late"]))
        );
    }

    /// Guards against the SDK's flusher spinning when the host is gone: once its
    /// process is dead, a backlogged sender closes with the reason instead.
    #[test]
    fn a_sender_whose_host_is_gone_closes_instead_of_spinning() {
        let host = RingConsumer::create(RingConfig::with_capacity(1 << 12)).unwrap();
        let mut dead = std::process::Command::new("true").spawn().unwrap();
        dead.wait().unwrap();
        // The plugin's end takes the host's pid from the header: make it a dead one.
        let fd = host.ring().segment_fd().try_clone_to_owned().unwrap();
        let header = ipc::sys::shm::Mapping::map_fd(std::os::fd::AsFd::as_fd(&fd)).unwrap();
        assert!(header.write(24, &dead.id().to_le_bytes()));
        let producer = RingProducer::open(host.ring().base(), fd).unwrap();
        let sender = EventSender::new(Box::new(RingOutbound {
            producer,
            buf: Vec::new(),
        }));
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut port = 0u16;
        let closed = loop {
            match sender.send(event(&[&format!("n{port}")])) {
                Ok(()) => port = port.wrapping_add(1),
                Err(SendError::Closed(closed)) => break closed,
                Err(other) => panic!("{other}"),
            }
            assert!(
                Instant::now() < deadline,
                "watchdog: the sender never closed"
            );
            std::thread::sleep(Duration::from_millis(1));
        };
        assert!(closed.reason.contains("is gone"), "{}", closed.reason);
        drop(host);
    }
}
