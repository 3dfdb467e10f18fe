//! The event channel of an endpoint: [`EventSender`] for watchers, [`EventReceiver`] for
//! reactors.
//!
//! Both sit on a transport (the shared-memory ring to the host, or an in-process channel
//! in [`crate::testing`]). The sender never blocks its watcher: when the transport is
//! full, updates wait in a coalescing backlog (latest per node wins, a full list replaces
//! what came before it) and a flusher thread hands them over as space frees. The receiver
//! blocks until events arrive, the host closes the endpoint, or the stream ends.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use ipc::event::{Event, NodeInfo, Update};
use thiserror::Error;

use crate::Close;

/// The event stream is over: the host closed the endpoint or went away.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("event stream closed: {reason}")]
pub struct Closed {
    /// Why, as the transport said it.
    pub reason: String,
}

/// Why a transport refused an update right now.
#[derive(Debug)]
pub(crate) enum TrySendError {
    /// No room now; try again when space frees.
    Full,
    /// Part of the update went; this rest did not (no room for it now).
    Partial(Update),
    /// The stream is over.
    Closed(String),
}

/// The watcher side of a transport.
pub(crate) trait Outbound: Send + 'static {
    /// Hands one update over without waiting.
    fn try_send(&mut self, update: &Update) -> Result<(), TrySendError>;

    /// Hands one record over as it is, without encoding (fault-injection tests only).
    /// `Ok(false)`: no room now.
    fn try_send_raw(&mut self, _record: &[u8]) -> Result<bool, TrySendError> {
        Err(TrySendError::Closed(
            "this transport carries no raw records".into(),
        ))
    }

    /// A handle that waits (up to a timeout) until the transport may have room again,
    /// usable while another thread calls `try_send`.
    fn space_waiter(&self) -> Box<dyn Fn(Duration) + Send + Sync>;
}

/// The reactor side of a transport.
pub(crate) trait Inbound: Send + 'static {
    /// Appends every event available to `out`, first waiting up to `timeout` when there
    /// is none. `Err` when the stream is over (and nothing more will come).
    fn recv_into(&mut self, out: &mut VecDeque<Event>, timeout: Duration) -> Result<(), Closed>;

    /// A function that cuts a wait in `recv_into` short, from any thread.
    fn waker(&self) -> Box<dyn FnOnce() + Send>;
}

/// The most changes the flusher hands over in one update.
const FLUSH_PIECE: usize = 1024;

/// How long the flusher waits for space before checking whether it should stop.
const FLUSH_WAIT: Duration = Duration::from_millis(50);

/// Sends a watcher's updates to the host. Cheap to clone; clones share the backlog.
#[derive(Clone)]
pub struct EventSender {
    shared: Arc<SenderShared>,
}

struct SenderShared {
    state: Mutex<SenderState>,
    /// Signalled when the backlog gains an update or the sender stops.
    changed: Condvar,
}

struct SenderState {
    outbound: Box<dyn Outbound>,
    backlog: Option<Update>,
    closed: Option<String>,
    flusher_running: bool,
    /// Set when the endpoint is done: the flusher stops once the backlog is empty.
    stopping: bool,
}

impl EventSender {
    pub(crate) fn new(outbound: Box<dyn Outbound>) -> Self {
        EventSender {
            shared: Arc::new(SenderShared {
                state: Mutex::new(SenderState {
                    outbound,
                    backlog: None,
                    closed: None,
                    flusher_running: false,
                    stopping: false,
                }),
                changed: Condvar::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, SenderState> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Reports changes: these nodes went up or down (or moved).
    pub fn send(&self, ev: Event) -> Result<(), Closed> {
        if ev.is_empty() {
            return Ok(());
        }
        self.submit(Update::Incremental(ev))
    }

    /// Reports one node's change.
    pub fn send_node(&self, node: NodeInfo) -> Result<(), Closed> {
        self.submit(Update::Incremental(std::iter::once(node).collect()))
    }

    /// Reports the full list of nodes up now; nodes not in it are down. The host works
    /// out what changed.
    pub fn send_full(&self, nodes: impl IntoIterator<Item = NodeInfo>) -> Result<(), Closed> {
        self.submit(Update::Full(nodes.into_iter().collect()))
    }

    fn submit(&self, update: Update) -> Result<(), Closed> {
        let mut state = self.lock();
        if let Some(reason) = &state.closed {
            return Err(Closed {
                reason: reason.clone(),
            });
        }
        if let Some(backlog) = &mut state.backlog {
            backlog.merge(update);
            return Ok(());
        }
        match state.outbound.try_send(&update) {
            Ok(()) => Ok(()),
            Err(e @ (TrySendError::Full | TrySendError::Partial(_))) => {
                state.backlog = Some(match e {
                    TrySendError::Partial(rest) => rest,
                    _ => update,
                });
                if !state.flusher_running {
                    state.flusher_running = true;
                    let waiter = state.outbound.space_waiter();
                    let me = self.clone();
                    std::thread::Builder::new()
                        .name("receptor-flush".into())
                        .spawn(move || me.flush_loop(waiter))
                        .map_err(|e| Closed {
                            reason: format!("cannot start the flusher thread: {e}"),
                        })?;
                } else {
                    self.shared.changed.notify_all();
                }
                Ok(())
            }
            Err(TrySendError::Closed(reason)) => {
                state.closed = Some(reason.clone());
                Err(Closed { reason })
            }
        }
    }

    /// Hands the backlog over as space frees; exits when there is nothing left to do.
    fn flush_loop(self, wait_for_space: Box<dyn Fn(Duration) + Send + Sync>) {
        loop {
            {
                let mut state = self.lock();
                loop {
                    if state.closed.is_some() || (state.backlog.is_none() && state.stopping) {
                        state.flusher_running = false;
                        self.shared.changed.notify_all();
                        return;
                    }
                    if state.backlog.is_some() {
                        break;
                    }
                    state = self
                        .shared
                        .changed
                        .wait(state)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                let update = match state.backlog.take().expect("checked above") {
                    // A large backlog of changes goes over a piece at a time, so that a
                    // full ring never costs more than re-queueing one piece.
                    Update::Incremental(mut changes) if changes.len() > FLUSH_PIECE => {
                        let piece = changes.split_first(FLUSH_PIECE);
                        state.backlog = Some(Update::Incremental(changes));
                        Update::Incremental(piece)
                    }
                    whole => whole,
                };
                match state.outbound.try_send(&update) {
                    Ok(()) => {
                        self.shared.changed.notify_all();
                        continue;
                    }
                    Err(e @ (TrySendError::Full | TrySendError::Partial(_))) => {
                        // Anything submitted meanwhile is newer and must win.
                        let mut restored = match e {
                            TrySendError::Partial(rest) => rest,
                            _ => update,
                        };
                        if let Some(newer) = state.backlog.take() {
                            restored.merge(newer);
                        }
                        state.backlog = Some(restored);
                    }
                    Err(TrySendError::Closed(reason)) => {
                        state.closed = Some(reason);
                        continue;
                    }
                }
            }
            wait_for_space(FLUSH_WAIT);
        }
    }

    /// Puts `record` on the transport as it is, bypassing the encoder: for tests of how the
    /// host treats a plugin that writes garbage. `Ok(false)` when there is no room now.
    #[doc(hidden)]
    pub fn send_raw_record(&self, record: &[u8]) -> Result<bool, Closed> {
        let mut state = self.lock();
        if let Some(reason) = &state.closed {
            return Err(Closed {
                reason: reason.clone(),
            });
        }
        state.outbound.try_send_raw(record).map_err(|e| Closed {
            reason: match e {
                TrySendError::Closed(reason) => reason,
                _ => "the transport refused the record".into(),
            },
        })
    }

    /// Waits until every update has been handed to the transport, up to `timeout`;
    /// returns whether the backlog is empty. The SDK calls it when an endpoint returns.
    pub fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.lock();
        state.stopping = true;
        self.shared.changed.notify_all();
        while state.backlog.is_some() && state.closed.is_none() {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        state.backlog.is_none()
    }

    /// Whether updates are waiting for room in the transport.
    pub fn is_congested(&self) -> bool {
        self.lock().backlog.is_some()
    }
}

/// Receives a reactor's events from the host.
pub struct EventReceiver {
    inbound: Box<dyn Inbound>,
    queue: VecDeque<Event>,
    close: Close,
    ended: bool,
}

/// Why [`EventReceiver::recv_timeout`] returned no event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum RecvTimeoutError {
    /// Nothing arrived in time; more may come.
    #[error("no event within the timeout")]
    Timeout,
    /// The endpoint was closed or the stream ended: no more events.
    #[error("event stream closed")]
    Closed,
}

/// How long one wait on the transport lasts before the close signal is checked again
/// (the close signal also interrupts it, so this only bounds a missed wake-up).
const RECV_SLICE: Duration = Duration::from_millis(250);

impl EventReceiver {
    pub(crate) fn new(inbound: Box<dyn Inbound>, close: Close) -> Self {
        close.on_close(inbound.waker());
        EventReceiver {
            inbound,
            queue: VecDeque::new(),
            close,
            ended: false,
        }
    }

    /// The next event; `None` once the endpoint is closed or the stream has ended.
    ///
    /// Events already delivered to this process are still returned after a close, so a
    /// reactor sees everything the host sent before it closed the endpoint.
    pub fn recv(&mut self) -> Option<Event> {
        loop {
            match self.recv_timeout(RECV_SLICE) {
                Ok(ev) => return Some(ev),
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Closed) => return None,
            }
        }
    }

    /// The next event, waiting at most `timeout`.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Event, RecvTimeoutError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(ev) = self.queue.pop_front() {
                return Ok(ev);
            }
            if self.ended {
                return Err(RecvTimeoutError::Closed);
            }
            let closed = self.close.is_closed();
            let now = Instant::now();
            // After a close, take what has already arrived without waiting, then stop.
            let wait = if closed {
                Duration::ZERO
            } else {
                deadline.saturating_duration_since(now)
            };
            if self.inbound.recv_into(&mut self.queue, wait).is_err() {
                self.ended = true;
            }
            if self.queue.is_empty() {
                if closed {
                    self.ended = true;
                } else if Instant::now() >= deadline {
                    return Err(RecvTimeoutError::Timeout);
                }
            }
        }
    }

    /// The next event if one is here now.
    pub fn try_recv(&mut self) -> Option<Event> {
        self.recv_timeout(Duration::ZERO).ok()
    }

    /// The endpoint's close signal.
    pub fn close_signal(&self) -> &Close {
        &self.close
    }
}

impl Iterator for EventReceiver {
    type Item = Event;

    /// Blocks for the next event; ends when the endpoint is closed or the stream ends.
    fn next(&mut self) -> Option<Event> {
        self.recv()
    }
}
