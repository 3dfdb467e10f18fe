//! The event channel of an endpoint: [`EventSender`] for watchers, [`EventReceiver`] for
//! reactors.
//!
//! Both sit on a transport (the shared-memory ring to the host, or an in-process channel
//! in [`crate::testing`]). The sender never blocks its watcher: when the transport is
//! full, updates wait in a coalescing backlog (latest per node wins, a full list replaces
//! what came before it) and a flusher thread hands them over as space frees. Changes
//! wait in a [`Pending`] log (cheap to add to, handed over as ready-made records); a
//! full list waits as a whole, with the changes after it folded in. The receiver
//! blocks until events arrive, the host closes the endpoint, or the stream ends.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use ipc::event::{Event, Framing, NodeInfo, Pending, Update};
use ipc::records::Records;
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
    /// The stream is over.
    Closed(String),
}

/// The watcher side of a transport.
pub(crate) trait Outbound: Send + 'static {
    /// Hands one update over without waiting.
    fn try_send(&mut self, update: &Update) -> Result<(), TrySendError>;

    /// Hands over as many of `records` (encoded updates, in order) as fit now; returns
    /// how many went. By default each is decoded and sent with `try_send` (in-process
    /// transports); the ring pushes the bytes as they are.
    fn try_send_records(&mut self, records: &Records) -> Result<usize, TrySendError> {
        for (went, record) in records.iter().enumerate() {
            let update: Update = ipc::codec::decode(record, "update")
                .map_err(|e| TrySendError::Closed(e.to_string()))?;
            match self.try_send(&update) {
                Ok(()) => {}
                Err(TrySendError::Full) => return Ok(went),
                Err(e) => return Err(e),
            }
        }
        Ok(records.len())
    }

    /// Hands one record over as it is, without encoding (fault-injection tests only).
    /// `Ok(false)`: no room now.
    fn try_send_raw(&mut self, _record: &[u8]) -> Result<bool, TrySendError> {
        Err(TrySendError::Closed(
            "this transport carries no raw records".into(),
        ))
    }

    /// A handle that waits (up to a timeout) until the transport may have room again,
    /// usable while another thread calls `try_send`; `Err` with the reason once the
    /// host's end is gone for good.
    fn space_waiter(&self) -> SpaceWait;
}

/// Waits up to a timeout for room in a transport (see [`Outbound::space_waiter`]).
pub(crate) type SpaceWait = Box<dyn Fn(Duration) -> Result<(), String> + Send + Sync>;

/// The reactor side of a transport.
pub(crate) trait Inbound: Send + 'static {
    /// Appends events that have arrived to `out` (at least one when any has), first
    /// waiting up to `timeout` when none has. `Err` when the stream is over (and nothing
    /// more will come).
    fn recv_into(&mut self, out: &mut VecDeque<Event>, timeout: Duration) -> Result<(), Closed>;

    /// A function that cuts a wait in `recv_into` short, from any thread.
    fn waker(&self) -> Box<dyn FnOnce() + Send>;
}

/// The most changes handed over at once: the flusher's piece of the backlog, and the
/// size past which an incremental update goes over a piece at a time (as records of at
/// most 64 KiB, see [`Pending::piece`]).
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
    /// Changes waiting for room (none while `full` waits).
    pending: Pending,
    /// A full list waiting for room, with the changes after it folded in.
    full: Option<Update>,
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
                    pending: Pending::new(Framing::Update),
                    full: None,
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
        state.check_open()?;
        let large = matches!(&update, Update::Incremental(ev) if ev.len() > FLUSH_PIECE);
        let was_backlogged = state.is_backlogged();
        if !was_backlogged && !large {
            match state.outbound.try_send(&update) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Full) => {}
                Err(TrySendError::Closed(reason)) => return Err(state.close(reason)),
            }
        }
        state.defer(update);
        // A large update goes over in pieces, as many as fit now; the flusher hands
        // over the rest.
        while large && state.is_backlogged() {
            match state.hand_over() {
                Ok(true) => {}
                Ok(false) => break,
                Err(reason) => return Err(state.close(reason)),
            }
        }
        // A flusher already handing a backlog over needs no wake-up (a notify is a
        // system call, and this is every send while the host is behind).
        if was_backlogged || !state.is_backlogged() {
            return Ok(());
        }
        if state.flusher_running {
            self.shared.changed.notify_all();
            return Ok(());
        }
        state.flusher_running = true;
        let waiter = state.outbound.space_waiter();
        let me = self.clone();
        std::thread::Builder::new()
            .name("receptor-flush".into())
            .spawn(move || me.flush_loop(waiter))
            .map(drop)
            .map_err(|e| Closed {
                reason: format!("cannot start the flusher thread: {e}"),
            })
    }

    /// Hands the backlog over as space frees; exits when there is nothing left to do.
    fn flush_loop(self, wait_for_space: SpaceWait) {
        loop {
            {
                let mut state = self.lock();
                loop {
                    if state.closed.is_some() || (!state.is_backlogged() && state.stopping) {
                        state.flusher_running = false;
                        self.shared.changed.notify_all();
                        return;
                    }
                    if state.is_backlogged() {
                        break;
                    }
                    state = self
                        .shared
                        .changed
                        .wait(state)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                match state.hand_over() {
                    Ok(true) => {
                        self.shared.changed.notify_all();
                        continue;
                    }
                    Ok(false) => {}
                    Err(reason) => {
                        state.close(reason);
                        continue;
                    }
                }
            }
            if let Err(reason) = wait_for_space(FLUSH_WAIT) {
                // The host is gone: stop here rather than spin on a ring no one drains.
                self.lock().close(reason);
            }
        }
    }

    /// Puts `record` on the transport as it is, bypassing the encoder: for tests of how the
    /// host treats a plugin that writes garbage. `Ok(false)` when there is no room now.
    #[doc(hidden)]
    pub fn send_raw_record(&self, record: &[u8]) -> Result<bool, Closed> {
        let mut state = self.lock();
        state.check_open()?;
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
        while state.is_backlogged() && state.closed.is_none() {
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
        !state.is_backlogged()
    }

    /// Whether updates are waiting for room in the transport.
    pub fn is_congested(&self) -> bool {
        self.lock().is_backlogged()
    }
}

impl SenderState {
    /// Whether anything waits for room in the transport.
    fn is_backlogged(&self) -> bool {
        self.full.is_some() || !self.pending.is_empty()
    }

    /// Puts an update that cannot go now into the backlog, where the latest change of
    /// each node wins and a full list replaces everything before it.
    fn defer(&mut self, update: Update) {
        match (&mut self.full, update) {
            (Some(full), later) => full.merge(later),
            (None, full @ Update::Full(_)) => {
                self.pending.clear();
                self.full = Some(full);
            }
            (None, Update::Incremental(changes)) => self.pending.push_event(&changes),
        }
    }

    /// Hands over what the transport takes now: the waiting full list, or a piece of
    /// the pending changes. `Ok(true)` when something went, `Ok(false)` when the
    /// transport is still full, `Err` when the stream is over.
    fn hand_over(&mut self) -> Result<bool, String> {
        if let Some(full) = self.full.take() {
            return match self.outbound.try_send(&full) {
                Ok(()) => Ok(true),
                Err(TrySendError::Full) => {
                    self.full = Some(full);
                    Ok(false)
                }
                Err(TrySendError::Closed(reason)) => Err(reason),
            };
        }
        let piece = self.pending.piece(FLUSH_PIECE);
        match self.outbound.try_send_records(&piece.records) {
            Ok(went) => {
                self.pending.consume(&piece, went);
                Ok(went > 0)
            }
            Err(TrySendError::Closed(reason)) => Err(reason),
            Err(TrySendError::Full) => Ok(false),
        }
    }

    /// `Err` once the stream is over.
    fn check_open(&self) -> Result<(), Closed> {
        match &self.closed {
            Some(reason) => Err(Closed {
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Marks the stream over; the error for the caller.
    fn close(&mut self, reason: String) -> Closed {
        self.closed = Some(reason.clone());
        Closed { reason }
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
        // Set after a first look at what has arrived, which neither waits nor reads the
        // clock (a busy reactor takes most events that way).
        let mut deadline: Option<Instant> = None;
        loop {
            if let Some(ev) = self.queue.pop_front() {
                return Ok(ev);
            }
            if self.ended {
                return Err(RecvTimeoutError::Closed);
            }
            let closed = self.close.is_closed();
            // After a close, take what has already arrived without waiting, then stop.
            let wait = match deadline {
                Some(deadline) if !closed => deadline.saturating_duration_since(Instant::now()),
                _ => Duration::ZERO,
            };
            if self.inbound.recv_into(&mut self.queue, wait).is_err() {
                self.ended = true;
            }
            if self.queue.is_empty() {
                match deadline {
                    _ if closed => self.ended = true,
                    None => deadline = Some(Instant::now() + timeout),
                    Some(deadline) if Instant::now() >= deadline => {
                        return Err(RecvTimeoutError::Timeout)
                    }
                    Some(_) => {}
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use ipc::event::{Book, NodeStatus};

    use super::*;

    /// A transport with room for as many updates as the test allows, keeping them.
    #[derive(Clone, Default)]
    struct Gate {
        room: Arc<AtomicUsize>,
        taken: Arc<Mutex<Vec<Update>>>,
    }

    impl Outbound for Gate {
        fn try_send(&mut self, update: &Update) -> Result<(), TrySendError> {
            let took = self
                .room
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |r| r.checked_sub(1));
            if took.is_err() {
                return Err(TrySendError::Full);
            }
            self.taken.lock().unwrap().push(update.clone());
            Ok(())
        }

        fn space_waiter(&self) -> SpaceWait {
            Box::new(|timeout| {
                std::thread::sleep(timeout.min(Duration::from_millis(1)));
                Ok(())
            })
        }
    }

    fn node(i: u32, port: u16, up: bool) -> NodeInfo {
        let status = if up { NodeStatus::Up } else { NodeStatus::Down };
        NodeInfo::new(format!("n{}", i % 50), status, "10.0.0.1", port)
    }

    #[test]
    fn a_congested_sender_hands_over_the_latest_state_of_every_node() {
        let gate = Gate::default();
        let sender = EventSender::new(Box::new(gate.clone()));
        let mut truth = Book::new();
        // A pseudo-random mix of changes and, now and then, a full list; the transport
        // opens a little at times.
        let mut x: u32 = 12345;
        for step in 0..3000u32 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let update = if step % 500 == 499 {
                Update::Full((0..20).map(|i| node(i * 3 + x % 3, 1, true)).collect())
            } else {
                Update::Incremental(
                    std::iter::once(node(x >> 8, (x % 7) as u16, !x.is_multiple_of(5))).collect(),
                )
            };
            truth.apply(update.clone());
            match update {
                Update::Full(list) => sender.send_full(list).unwrap(),
                Update::Incremental(ev) => sender.send(ev).unwrap(),
            }
            if step % 97 == 0 {
                gate.room.fetch_add(3, Ordering::SeqCst);
            }
        }
        // Shut the gate and send once more: that change must wait, whatever the flusher
        // managed to hand over meanwhile.
        gate.room.store(0, Ordering::SeqCst);
        let last = node(7, 9, true);
        truth.apply(Update::Incremental(std::iter::once(last.clone()).collect()));
        sender.send(std::iter::once(last).collect()).unwrap();
        assert!(sender.is_congested(), "the test must congest the sender");
        gate.room.store(usize::MAX / 2, Ordering::SeqCst);
        assert!(sender.flush(Duration::from_secs(10)), "the backlog drains");
        let mut seen = Book::new();
        for update in gate.taken.lock().unwrap().drain(..) {
            seen.apply(update);
        }
        assert_eq!(seen.full(), truth.full());
    }

    #[test]
    fn a_large_update_goes_over_in_pieces_as_room_frees() {
        let gate = Gate::default();
        gate.room.store(1, Ordering::SeqCst);
        let sender = EventSender::new(Box::new(gate.clone()));
        let all: Event = (0..3000u32)
            .map(|i| NodeInfo::new(format!("big-{i:05}"), NodeStatus::Up, "h", 1))
            .collect();
        sender.send(all.clone()).unwrap();
        assert_eq!(
            gate.taken.lock().unwrap().len(),
            1,
            "one piece went at once"
        );
        assert!(sender.is_congested());
        gate.room.store(usize::MAX / 2, Ordering::SeqCst);
        assert!(sender.flush(Duration::from_secs(10)));
        let taken = gate.taken.lock().unwrap();
        assert!(taken.iter().all(|u| u.event().len() <= FLUSH_PIECE));
        let mut seen = Book::new();
        for update in taken.iter() {
            seen.apply(update.clone());
        }
        assert_eq!(seen.full(), all);
    }
}
