//! `EventReceiver`: a reactor's events, one at a time, until the endpoint closes.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ipc::event::Event;
use thiserror::Error;

use super::{Inbound, StreamClosed};
use crate::Close;

/// Receives a reactor's events from the host.
pub struct EventReceiver {
    inbound: Box<dyn Inbound>,
    queue: VecDeque<Event>,
    close: Close,
    ended: bool,
    /// The transport said the stream is over (not only the close signal).
    over: bool,
    /// Where the transport goes when this receiver is dropped.
    home: Option<ReceiverHome>,
}

/// Where a dropped receiver leaves its transport and the events it holds, so that the
/// SDK can hand them to the endpoint's next incarnation (a restart in place).
pub(crate) type ReceiverHome = Arc<Mutex<Option<ReceiverParts>>>;

/// A receiver's transport and what it has taken from it but not delivered.
pub(crate) struct ReceiverParts {
    inbound: Box<dyn Inbound>,
    queue: VecDeque<Event>,
    over: bool,
}

impl ReceiverParts {
    /// A fresh stream on `inbound`.
    pub(crate) fn new(inbound: Box<dyn Inbound>) -> Self {
        ReceiverParts {
            inbound,
            queue: VecDeque::new(),
            over: false,
        }
    }

    /// Whether the transport said the stream is over (a restart cannot help).
    pub(crate) fn is_over(&self) -> bool {
        self.over
    }
}

/// The transport of a receiver whose transport went home.
struct Gone;

impl Inbound for Gone {
    fn recv_into(&mut self, _: &mut VecDeque<Event>, _: Duration) -> Result<(), StreamClosed> {
        Err(StreamClosed {
            reason: "the receiver was dropped".into(),
        })
    }

    fn waker(&self) -> Box<dyn FnOnce() + Send> {
        Box::new(|| {})
    }
}

/// Why [`EventReceiver::try_recv`] returned no event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum TryRecvError {
    /// Nothing has arrived; more may come.
    #[error("no event waiting")]
    Empty,
    /// The endpoint was closed or the stream ended: no more events.
    #[error("event stream closed")]
    Closed,
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

impl EventReceiver {
    pub(crate) fn new(inbound: Box<dyn Inbound>, close: Close) -> Self {
        Self::resume(ReceiverParts::new(inbound), close, None)
    }

    /// A receiver on `parts`, which go to `home` when it is dropped.
    pub(crate) fn resume(parts: ReceiverParts, close: Close, home: Option<ReceiverHome>) -> Self {
        close.on_close(parts.inbound.waker());
        EventReceiver {
            inbound: parts.inbound,
            queue: parts.queue,
            close,
            ended: parts.over,
            over: parts.over,
            home,
        }
    }

    /// The next event; `None` once the endpoint is closed or the stream has ended.
    ///
    /// Events already delivered to this process are still returned after a close, so a
    /// reactor sees everything the host sent before it closed the endpoint.
    ///
    /// It sleeps until an event arrives or the endpoint closes (the close signal wakes
    /// it): an idle reactor costs no CPU.
    pub fn recv(&mut self) -> Option<Event> {
        loop {
            match self.recv_timeout(Duration::MAX) {
                Ok(ev) => return Some(ev),
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Closed) => return None,
            }
        }
    }

    /// The next event, waiting at most `timeout` (`Duration::MAX`: for good).
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Event, RecvTimeoutError> {
        // Set after a first look at what has arrived, which neither waits nor reads the
        // clock (a busy reactor takes most events that way); `Some(None)`: no deadline.
        let mut deadline: Option<Option<Instant>> = None;
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
                Some(Some(deadline)) if !closed => {
                    deadline.saturating_duration_since(Instant::now())
                }
                Some(None) if !closed => Duration::MAX,
                _ => Duration::ZERO,
            };
            if self.inbound.recv_into(&mut self.queue, wait).is_err() {
                self.ended = true;
                self.over = true;
            }
            if self.queue.is_empty() {
                match deadline {
                    _ if closed => self.ended = true,
                    None => deadline = Some(Instant::now().checked_add(timeout)),
                    Some(Some(deadline)) if Instant::now() >= deadline => {
                        return Err(RecvTimeoutError::Timeout)
                    }
                    Some(_) => {}
                }
            }
        }
    }

    /// The next event if one is here now: `Err(Empty)` when none is (more may come),
    /// `Err(Closed)` when no more will.
    pub fn try_recv(&mut self) -> Result<Event, TryRecvError> {
        self.recv_timeout(Duration::ZERO).map_err(|e| match e {
            RecvTimeoutError::Timeout => TryRecvError::Empty,
            RecvTimeoutError::Closed => TryRecvError::Closed,
        })
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

impl Drop for EventReceiver {
    fn drop(&mut self) {
        if let Some(home) = self.home.take() {
            let parts = ReceiverParts {
                inbound: std::mem::replace(&mut self.inbound, Box::new(Gone)),
                queue: std::mem::take(&mut self.queue),
                over: self.over,
            };
            *home.lock().unwrap_or_else(PoisonError::into_inner) = Some(parts);
        }
    }
}
