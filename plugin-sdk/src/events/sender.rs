//! `EventSender`: a watcher's updates to the host, never blocking the watcher.
//!
//! Every node is checked first ([`NodeInfo::check`]): an update with a bad node is
//! refused whole with [`SendError::BadNode`], before anything of it goes out.
//!
//! An update goes straight to the transport when nothing waits before it and it fits
//! in one record. Otherwise it waits in the backlog, which a flusher thread hands over
//! as space frees:
//! - changes wait in a [`Pending`] log, latest per node (cheap to add to, handed over
//!   as ready-made records of at most 64 KiB);
//! - a full list waits in a log of its own and goes over in pieces: a `FullStart`
//!   marker, `FullPart` records, and an empty `FullEnd` (the host applies the list
//!   only when it is whole; see `ipc::event::update`). Changes sent while a list waits
//!   join it (a node going down leaves it), and a newer full list replaces it, even
//!   half sent: its `FullStart` tells the host to drop the pieces it has.
//!
//! So a full list of any number of nodes goes over, each node within the limits of
//! [`ipc::event::check`].
//!
//! A watcher that would rather slow its source than have its updates merged waits for
//! room first: [`EventSender::wait_for_room`] or [`EventSender::send_blocking`]. The
//! updates merged while waiting are counted (see `coalesced`).

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use ipc::event::{Event, Framing, NodeError, NodeInfo, Pending, Update};
use thiserror::Error;

use super::coalesced::{Coalesced, Report, ReportNow};
use super::{Outbound, SpaceWait, StreamClosed, TrySendError};

/// The most changes handed over at once: the flusher's piece of the backlog, and the
/// size past which an update goes over a piece at a time (as records of at most 64 KiB,
/// see [`Pending::piece`]).
pub(super) const FLUSH_PIECE: usize = 1024;

/// How long the flusher waits for space before checking whether it should stop.
const FLUSH_WAIT: Duration = Duration::from_millis(50);

/// Why [`EventSender::send`] (or `send_node`, `send_full`) refused an update.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError {
    /// A node breaks a rule of [`NodeInfo::check`]; nothing of the update was sent.
    #[error(transparent)]
    BadNode(#[from] NodeError),
    /// The event stream is over: the host closed the endpoint or went away.
    #[error(transparent)]
    Closed(#[from] StreamClosed),
}

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

/// A full list waiting to go over in pieces.
struct FullList {
    /// Its nodes not handed over yet (framed as `FullPart` records).
    nodes: Pending,
    /// Whether its `FullStart` went.
    started: bool,
}

impl FullList {
    fn new(list: &Event) -> Self {
        let mut nodes = Pending::new(Framing::FullPart);
        nodes.push_event(list);
        FullList {
            nodes,
            started: false,
        }
    }
}

struct SenderState {
    outbound: Box<dyn Outbound>,
    /// Changes waiting for room (none while `full` waits: they join the list).
    pending: Pending,
    /// A full list waiting for room, with the changes after it folded in.
    full: Option<FullList>,
    closed: Option<String>,
    flusher_running: bool,
    /// Set when the endpoint is done: the flusher stops once the backlog is empty.
    stopping: bool,
    /// Updates merged in the backlog, and their reports.
    coalesced: Coalesced,
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
                    coalesced: Coalesced::default(),
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
    pub fn send(&self, ev: Event) -> Result<(), SendError> {
        if ev.is_empty() {
            return Ok(());
        }
        check(&ev)?;
        self.submit(Update::Incremental(ev))
    }

    /// Reports one node's change.
    pub fn send_node(&self, node: NodeInfo) -> Result<(), SendError> {
        self.send(std::iter::once(node).collect())
    }

    /// Reports the full list of nodes up now; nodes not in it are down. The host works
    /// out what changed. A list of any length goes over (in pieces when it is large);
    /// the host applies it when it is whole.
    pub fn send_full(&self, nodes: impl IntoIterator<Item = NodeInfo>) -> Result<(), SendError> {
        let list: Event = nodes.into_iter().collect();
        check(&list)?;
        self.submit(Update::Full(list))
    }

    fn submit(&self, update: Update) -> Result<(), SendError> {
        let mut state = self.lock();
        state.check_open()?;
        let mut large = update.event().len() > FLUSH_PIECE;
        let was_backlogged = state.is_backlogged();
        if !was_backlogged && !large {
            match state.outbound.try_send(&update) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Full) => {}
                Err(TrySendError::TooLarge) => large = true,
                Err(TrySendError::Closed(reason)) => return Err(state.close(reason).into()),
            }
        }
        state.defer(update);
        // A large update goes over in pieces, as many as fit now; the flusher hands
        // over the rest.
        while large && state.is_backlogged() {
            match state.hand_over() {
                Ok(true) => {}
                Ok(false) => break,
                Err(reason) => return Err(state.close(reason).into()),
            }
        }
        // A flusher already handing a backlog over needs no wake-up (a notify is a
        // system call, and this is every send while the host is behind).
        if was_backlogged && !state.is_backlogged() {
            // This send drained the backlog itself: wake `wait_for_room` and `flush`.
            self.shared.changed.notify_all();
        }
        if was_backlogged || !state.is_backlogged() {
            return Ok(());
        }
        self.wake_flusher(state).map_err(SendError::Closed)
    }

    /// Wakes the flusher, starting it if it is not running.
    fn wake_flusher(&self, mut state: MutexGuard<'_, SenderState>) -> Result<(), StreamClosed> {
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
            .map_err(|e| {
                state.flusher_running = false;
                StreamClosed {
                    reason: format!("cannot start the flusher thread: {e}"),
                }
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
                    // Drained: the count of merged updates is due to the host (at most
                    // one report a second; a later one is one timed wait, not a poll).
                    let now = Instant::now();
                    state = match state.coalesced.poll(now) {
                        ReportNow::Now(report, total) => {
                            drop(state);
                            report(total);
                            self.lock()
                        }
                        ReportNow::Later(due) => {
                            let wait = self.shared.changed.wait_timeout(state, due - now);
                            wait.unwrap_or_else(PoisonError::into_inner).0
                        }
                        ReportNow::Nothing => self
                            .shared
                            .changed
                            .wait(state)
                            .unwrap_or_else(PoisonError::into_inner),
                    };
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

    /// Puts `record` on the transport as it is, bypassing the encoder and the checks:
    /// for tests of how the host treats a plugin that writes garbage. `Ok(false)` when
    /// there is no room now.
    #[doc(hidden)]
    pub fn send_raw_record(&self, record: &[u8]) -> Result<bool, StreamClosed> {
        let mut state = self.lock();
        state.check_open()?;
        state
            .outbound
            .try_send_raw(record)
            .map_err(|e| StreamClosed {
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

    /// Whether updates are waiting for room in the transport: the host is slower than
    /// this watcher right now. While it is, every update joins the backlog, where the
    /// latest update of a node replaces the one waiting (nothing is lost: the host
    /// ends with the right state, but intermediate states are skipped). A watcher that
    /// cares can slow its source: see [`wait_for_room`](Self::wait_for_room).
    pub fn is_congested(&self) -> bool {
        self.lock().is_backlogged()
    }

    /// Waits until nothing waits for room (the next update goes straight to the host),
    /// up to `timeout`. `Ok(true)`: there is room; `Ok(false)`: still congested after
    /// `timeout`; `Err` once the stream is over. For a watcher that would rather slow
    /// its source than have its updates merged.
    pub fn wait_for_room(&self, timeout: Duration) -> Result<bool, StreamClosed> {
        let deadline = Instant::now() + timeout;
        let mut state = self.lock();
        loop {
            state.check_open()?;
            if !state.is_backlogged() {
                return Ok(true);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// [`wait_for_room`](Self::wait_for_room) up to `timeout`, then [`send`](Self::send)
    /// `ev` (into the backlog if there is still no room: it is never dropped). Returns
    /// whether there was room.
    pub fn send_blocking(&self, ev: Event, timeout: Duration) -> Result<bool, SendError> {
        check(&ev)?;
        let room = self.wait_for_room(timeout)?;
        self.send(ev)?;
        Ok(room)
    }

    /// How many node updates were merged into later ones while they waited for room,
    /// since the endpoint started (the host gets this total too).
    pub fn coalesced(&self) -> u64 {
        self.lock().coalesced.total()
    }

    /// Whether the stream is over.
    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed.is_some()
    }

    /// Sends the count of merged updates to `report` (see `coalesced`).
    pub(crate) fn set_report(&self, report: Report) {
        self.lock().coalesced.set_report(report);
    }

    /// Reports the count of merged updates if the host has not heard the latest.
    pub(crate) fn report_final(&self) {
        let owed = self.lock().coalesced.take_final();
        if let Some((report, total)) = owed {
            report(total);
        }
    }

    /// Hands the transport, the backlog and the counters to a new sender, for the
    /// endpoint's next incarnation; this sender and its clones are closed with
    /// `reason` (helper threads of a failed incarnation stop sending).
    pub(crate) fn reincarnate(&self, reason: &str) -> EventSender {
        let mut old = self.lock();
        let detached: Box<dyn Outbound> = Box::new(Detached);
        let next = EventSender::new(std::mem::replace(&mut old.outbound, detached));
        let mut state = next.lock();
        state.pending = std::mem::take(&mut old.pending);
        state.full = old.full.take();
        state.coalesced = std::mem::take(&mut old.coalesced);
        old.closed = Some(reason.to_owned());
        self.shared.changed.notify_all();
        drop(old);
        if state.is_backlogged() || state.coalesced.is_owed() {
            if let Err(e) = next.wake_flusher(state) {
                tracing::warn!("{e}");
            }
        } else {
            drop(state);
        }
        next
    }
}

/// The transport of a sender whose transport went to the next incarnation.
struct Detached;

impl Outbound for Detached {
    fn try_send(&mut self, _: &Update) -> Result<(), TrySendError> {
        Err(TrySendError::Closed("the endpoint was restarted".into()))
    }

    fn space_waiter(&self) -> SpaceWait {
        Box::new(|_| Err("the endpoint was restarted".into()))
    }
}

/// Checks every node of an update before any of it goes.
fn check(ev: &Event) -> Result<(), NodeError> {
    ev.nodes().try_for_each(NodeInfo::check)
}

impl SenderState {
    /// Whether anything waits for room in the transport.
    fn is_backlogged(&self) -> bool {
        self.full.is_some() || !self.pending.is_empty()
    }

    /// Puts an update that cannot go now into the backlog, where the latest change of
    /// each node wins and a full list replaces everything before it.
    fn defer(&mut self, update: Update) {
        let merged = match (&mut self.full, update) {
            (full, Update::Full(list)) => {
                let replaced = self.pending.len() + full.as_ref().map_or(0, |f| f.nodes.len());
                self.pending.clear();
                *full = Some(FullList::new(&list));
                replaced
            }
            // A change joins the waiting list: its latest entry for the node wins, and
            // an entry marked down leaves the list.
            (Some(full), later) => merge(&mut full.nodes, later.event()),
            (None, later) => merge(&mut self.pending, later.event()),
        };
        self.coalesced.add(merged as u64);
    }

    /// Hands over what the transport takes now: the waiting full list's next piece,
    /// or a piece of the pending changes. `Ok(true)` when something went, `Ok(false)`
    /// when the transport is still full, `Err` when the stream is over.
    fn hand_over(&mut self) -> Result<bool, String> {
        let outbound = &mut self.outbound;
        let Some(full) = &mut self.full else {
            return hand_over_piece(outbound.as_mut(), &mut self.pending);
        };
        if !full.started {
            if !send_marker(outbound.as_mut(), Update::FullStart(Event::new()))? {
                return Ok(false);
            }
            full.started = true;
        }
        if !full.nodes.is_empty() {
            return hand_over_piece(outbound.as_mut(), &mut full.nodes);
        }
        let ended = send_marker(outbound.as_mut(), Update::FullEnd(Event::new()))?;
        if ended {
            self.full = None;
        }
        Ok(ended)
    }

    /// `Err` once the stream is over.
    fn check_open(&self) -> Result<(), StreamClosed> {
        match &self.closed {
            Some(reason) => Err(StreamClosed {
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Marks the stream over; the error for the caller.
    fn close(&mut self, reason: String) -> StreamClosed {
        self.closed = Some(reason.clone());
        StreamClosed { reason }
    }
}

/// Adds `ev`'s nodes to `log`; returns how many replaced a node waiting there.
fn merge(log: &mut Pending, ev: &Event) -> usize {
    let before = log.len();
    log.push_event(ev);
    (before + ev.len()).saturating_sub(log.len())
}

/// Sends one small update of the backlog; `Ok(false)` when there is no room now.
fn send_marker(outbound: &mut dyn Outbound, marker: Update) -> Result<bool, String> {
    match outbound.try_send(&marker) {
        Ok(()) => Ok(true),
        Err(TrySendError::Full) => Ok(false),
        Err(TrySendError::TooLarge) => {
            Err("the transport refused an empty update as too large".into())
        }
        Err(TrySendError::Closed(reason)) => Err(reason),
    }
}

/// Hands over as much of a piece of `log` as the transport takes now.
fn hand_over_piece(outbound: &mut dyn Outbound, log: &mut Pending) -> Result<bool, String> {
    let piece = log.piece(FLUSH_PIECE);
    match outbound.try_send_records(&piece.records) {
        Ok(went) => {
            log.consume(&piece, went);
            Ok(went > 0)
        }
        Err(TrySendError::Closed(reason)) => Err(reason),
        Err(TrySendError::Full) => Ok(false),
        // Records of a piece are at most 64 KiB unless one node alone is larger, which
        // the node checks rule out.
        Err(TrySendError::TooLarge) => Err("a backlog record is larger than the ring takes".into()),
    }
}
