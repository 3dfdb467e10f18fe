//! The close signal: how the host tells a running endpoint to stop.
//!
//! The seed's `closeCh`. An endpoint polls it ([`Close::is_closed`]), sleeps on it
//! ([`Close::wait_timeout`], a good replacement for `thread::sleep` in a watcher's loop),
//! or lets [`crate::EventReceiver::recv`] watch it together with the events. Closing is
//! one-way and wakes every waiter.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// A one-way, cloneable stop signal.
#[derive(Clone, Default)]
pub struct Close {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    closed: bool,
    /// Called once on close: wake-ups for waits that do not sleep on our condvar.
    wakers: Vec<Box<dyn FnOnce() + Send>>,
}

impl std::fmt::Debug for Close {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Close")
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl Close {
    /// A signal that has not fired.
    pub fn new() -> Self {
        Close::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is a flag and a list; a panic elsewhere cannot leave it inconsistent.
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Fires the signal (idempotent) and wakes every waiter. The SDK fires it when the
    /// host closes the endpoint; a plugin's own tests or helper threads may too.
    pub fn fire(&self) {
        let wakers = {
            let mut state = self.lock();
            if state.closed {
                return;
            }
            state.closed = true;
            std::mem::take(&mut state.wakers)
        };
        self.inner.changed.notify_all();
        for wake in wakers {
            wake();
        }
    }

    /// Whether the signal has fired.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Sleeps until the signal fires or `timeout` passes; returns whether it fired.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.lock();
        while !state.closed {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            state = self
                .inner
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }

    /// Sleeps until the signal fires.
    pub fn wait(&self) {
        let mut state = self.lock();
        while !state.closed {
            state = self
                .inner
                .changed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Registers `wake` to run once when the signal fires (on the thread that fires it),
    /// or at once if it already has: how an endpoint ends a wait of its own at close
    /// (a socket read, a future on an async runtime: notify it from `wake`) without
    /// polling [`is_closed`](Self::is_closed). `wake` must be quick and must not block.
    pub fn on_close(&self, wake: impl FnOnce() + Send + 'static) {
        let mut state = self.lock();
        if state.closed {
            drop(state);
            wake();
        } else {
            state.wakers.push(Box::new(wake));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_wakes_a_waiter_and_runs_wakers_once() {
        let close = Close::new();
        let (tx, rx) = std::sync::mpsc::channel();
        close.on_close(Box::new(move || tx.send(()).unwrap()));
        let waiter = {
            let close = close.clone();
            std::thread::spawn(move || close.wait_timeout(Duration::from_secs(30)))
        };
        assert!(!close.wait_timeout(Duration::from_millis(1)));
        close.fire();
        close.fire();
        assert!(waiter.join().unwrap(), "the waiter saw the close");
        rx.recv_timeout(Duration::from_secs(5)).expect("waker ran");
        assert!(rx.try_recv().is_err(), "waker ran once");
        assert!(close.is_closed());
    }
}
