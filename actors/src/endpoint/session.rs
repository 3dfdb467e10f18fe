//! The threads that move events: a pump per watcher session, a flusher per reactor.
//!
//! These run beside the actors, never on an arbiter: a wait on a ring is a blocking
//! wait. The pump drains a watcher's ring in batches, takes the service lock once per
//! batch, and applies every update (book, fan-out into the reactor rings), most of them
//! without decoding: the changes go out as the bytes the watcher wrote. An event thus
//! crosses from a watcher's ring into the reactors' rings on one thread, with no actor
//! mailbox and no hand-off in between: one wake-up on the host side, one in the reactor.
//! A reactor's flusher sleeps until that reactor's ring was found full, then hands its
//! coalesced backlog over as space frees.
//!
//! Neither wakes up by itself: a pump sleeps on its ring until the watcher publishes or
//! closes, a flusher on its flag (or the ring's space) until a pump or the reactor
//! frees it. Whatever else must end a wait, the host's stop or the death of the plugin
//! (which the plugin's actor learns from the control connection and answers with a
//! stop), goes through the session's [`Stop`], which wakes what the session sleeps on.
//! An idle endpoint thus costs no CPU at all: no periodic wake-up, no polling.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use ipc::records::Records;

use crate::service::{EventSink, Flush, ServiceState};

/// Wakes whatever a session sleeps on, from another thread.
pub type Waker = Box<dyn Fn() + Send + Sync>;

/// What the host needs of a watcher session's ring: the consumer side.
pub trait WatcherRing: Send {
    /// Waits up to `timeout` (`Duration::MAX`: for good) for records, then appends every
    /// record available to `into`. `Ok(n)`: `n` records were appended (0 on timeout or
    /// when [`waker`](Self::waker) woke it). `Err`: the session is over.
    fn drain(&mut self, timeout: Duration, into: &mut Records) -> Result<usize, SessionEnd>;

    /// A handle that makes the current or next [`drain`](Self::drain) return at once.
    fn waker(&self) -> Waker;
}

/// Waits up to a timeout until a reactor's ring may have room again; `Err` (with the
/// reason) when the reactor's end is gone and no room will ever come.
pub type SpaceWait = Box<dyn Fn(Duration) -> Result<(), String> + Send + Sync>;

/// What the host needs of a reactor session's ring: the producer side.
pub trait ReactorRing: EventSink + 'static {
    /// A handle that waits (up to a timeout) until the ring may have room again, usable
    /// while the ring itself sits in the service state.
    fn space_waiter(&self) -> SpaceWait;

    /// A handle that makes the current or next wait of the
    /// [`space_waiter`](Self::space_waiter) return at once.
    fn waker(&self) -> Waker;
}

/// A session's stop signal: a flag, and the wake-ups of whatever the session sleeps on
/// (registered by the session with [`on_stop`](Stop::on_stop)), so that a stop ends a
/// wait that has no period.
#[derive(Default)]
pub struct Stop {
    stopped: AtomicBool,
    wakers: Mutex<Vec<Waker>>,
}

impl Stop {
    /// A signal not raised yet.
    pub fn new() -> Arc<Stop> {
        Arc::new(Stop::default())
    }

    /// Raises the flag and wakes the session.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        for wake in self
            .wakers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            wake();
        }
    }

    /// Whether the flag is raised.
    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// Runs `wake` on [`stop`](Self::stop), or now if the flag is already raised.
    pub fn on_stop(&self, wake: Waker) {
        self.wakers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(wake);
        // After the push: a stop that raised the flag before it took the lock may have
        // missed this waker, but then the flag is seen here.
        if self.is_stopped() {
            self.stop();
        }
    }
}

/// Why a session stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionEnd {
    /// The plugin closed its end: the endpoint finished.
    #[error("the plugin closed the session")]
    Finished,
    /// The host asked the session to stop.
    #[error("stopped by the host")]
    Stopped,
    /// The plugin's end is gone (the process died) or broke the protocol.
    #[error("{0}")]
    Failed(String),
}

/// The service's state plus the wake-up signal of every reactor's flusher.
pub struct ServiceCore {
    state: Mutex<ServiceState>,
    flushers: Mutex<std::collections::BTreeMap<String, Arc<Wake>>>,
}

impl ServiceCore {
    /// A core around a service's state.
    pub fn new(state: ServiceState) -> Arc<Self> {
        Arc::new(ServiceCore {
            state: Mutex::new(state),
            flushers: Mutex::new(Default::default()),
        })
    }

    /// Locks the service state. A panic while it was held cannot leave a book half
    /// updated in a way that matters more than stopping would, so poisoning is ignored.
    pub fn lock(&self) -> MutexGuard<'_, ServiceState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A reactor restarted its endpoint in place: it gets the full current state again
    /// (see [`ServiceState::resync_reactor`]), and its flusher hands it over.
    pub fn resync_reactor(&self, reactor: &str) {
        if self.lock().resync_reactor(reactor) {
            self.wake_flushers(&[reactor.to_owned()]);
        }
    }

    /// Wakes the flushers of `reactors` (they have a backlog to hand over).
    pub fn wake_flushers(&self, reactors: &[String]) {
        if reactors.is_empty() {
            return;
        }
        let flushers = self.flushers.lock().unwrap_or_else(PoisonError::into_inner);
        for reactor in reactors {
            if let Some(wake) = flushers.get(reactor) {
                wake.set();
            }
        }
    }
}

/// A sticky wake-up flag with a condvar: `set` from anywhere, `wait` on one thread.
#[derive(Default)]
pub struct Wake {
    flag: Mutex<bool>,
    cond: Condvar,
}

impl Wake {
    /// Raises the flag and wakes the waiter.
    pub fn set(&self) {
        *self.flag.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.cond.notify_one();
    }

    /// Waits for the flag, clearing it.
    pub fn wait(&self) {
        let flag = self.flag.lock().unwrap_or_else(PoisonError::into_inner);
        let mut flag = self
            .cond
            .wait_while(flag, |raised| !*raised)
            .unwrap_or_else(PoisonError::into_inner);
        *flag = false;
    }
}

/// Runs a watcher session until it ends: drains the ring, applies the updates.
pub fn pump_watcher(
    mut ring: Box<dyn WatcherRing>,
    core: Arc<ServiceCore>,
    watcher: String,
    stop: Arc<Stop>,
) -> SessionEnd {
    stop.on_stop(ring.waker());
    // The service lock is not held while a drain waits: the batch is drained (copied
    // out of the ring once), then applied under one lock.
    let mut batch = Records::new();
    core.lock().watcher_started(&watcher);
    let end = pump(ring.as_mut(), &core, &watcher, &stop, &mut batch);
    core.lock().watcher_ended(&watcher);
    end
}

/// [`pump_watcher`]'s loop.
fn pump(
    ring: &mut dyn WatcherRing,
    core: &ServiceCore,
    watcher: &str,
    stop: &Stop,
    batch: &mut Records,
) -> SessionEnd {
    loop {
        if stop.is_stopped() {
            return SessionEnd::Stopped;
        }
        batch.clear();
        let drained = ring.drain(Duration::MAX, batch);
        if !batch.is_empty() {
            let mut state = core.lock();
            // A session the host stopped (its plugin is being restarted) applies
            // nothing more: what its ring still held belongs to an incarnation that is
            // gone, and the next session may already be running.
            if stop.is_stopped() {
                return SessionEnd::Stopped;
            }
            let applied = state.apply_records(watcher, batch.iter());
            drop(state);
            core.wake_flushers(&applied.congested);
            if let Some(e) = applied.bad_record {
                return SessionEnd::Failed(e.to_string());
            }
        }
        if let Err(end) = drained {
            return end;
        }
    }
}

/// Connects a reactor's ring to the service and runs its flusher until `stop`, or until
/// the reactor's process is gone (then it ends the session as failed rather than spin
/// on a ring no one drains).
///
/// The ring goes into the service state (the pumps push into it directly); this thread
/// only hands over backlogs when the ring was full.
pub fn run_reactor_flusher(
    ring: Box<dyn ReactorRing>,
    core: Arc<ServiceCore>,
    reactor: String,
    stop: Arc<Stop>,
) -> SessionEnd {
    let wait_for_space = ring.space_waiter();
    let wake = Arc::new(Wake::default());
    stop.on_stop(ring.waker());
    let raise = wake.clone();
    stop.on_stop(Box::new(move || raise.set()));
    core.flushers
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(reactor.clone(), wake.clone());
    let (attachment, flush) = core.lock().attach_reactor(&reactor, ring);
    let mut pending = flush == Flush::Pending;
    let mut end = SessionEnd::Stopped;
    while !stop.is_stopped() {
        if !pending {
            wake.wait();
            pending = true;
            continue;
        }
        // The lock is taken for the flush only: a `match` on `core.lock()...` would hold
        // the guard through the arms, and so through the wait for space below, which
        // lasts until the reactor reads (for ever, for a stalled one): every pump of
        // the service would wait on the lock meanwhile.
        let flushed = core.lock().flush_reactor(&reactor);
        match flushed {
            Flush::Pending => {
                if let Err(reason) = wait_for_space(Duration::MAX) {
                    end = SessionEnd::Failed(reason);
                    break;
                }
            }
            Flush::Done | Flush::Disconnected => pending = false,
        }
    }
    // After a restart the next session may already be attached under the same name:
    // leave its sink and its wake-up alone.
    core.lock().detach_reactor(&reactor, attachment);
    let mut flushers = core.flushers.lock().unwrap_or_else(PoisonError::into_inner);
    if flushers
        .get(&reactor)
        .is_some_and(|w| Arc::ptr_eq(w, &wake))
    {
        flushers.remove(&reactor);
    }
    end
}
