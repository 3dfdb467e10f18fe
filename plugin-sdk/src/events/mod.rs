//! The event channel of an endpoint: [`EventSender`] for watchers, [`EventReceiver`] for
//! reactors.
//!
//! Both sit on a transport (the shared-memory ring to the host, or an in-process channel
//! in [`crate::testing`]). The sender never blocks its watcher: when the transport is
//! full, updates wait in a coalescing backlog (latest per node wins, a full list replaces
//! what came before it) and a flusher thread hands them over as space frees. The
//! receiver blocks until events arrive, the host closes the endpoint, or the stream ends.
//!
//! # Layout
//! - `sender`: `EventSender`, its backlog, and how large updates go over in pieces.
//! - `coalesced`: the count of updates merged in the backlog, reported to the host.
//! - `receiver`: `EventReceiver`.
//! - this file: the transport traits both sit on.

mod coalesced;
mod receiver;
mod sender;
#[cfg(test)]
mod tests;

pub(crate) use coalesced::Report;
pub use receiver::{EventReceiver, RecvTimeoutError, TryRecvError};
pub(crate) use receiver::{ReceiverHome, ReceiverParts};
pub use sender::{EventSender, SendError};

use std::collections::VecDeque;
use std::time::Duration;

use ipc::event::{Event, Update};
use ipc::records::Records;
use thiserror::Error;

/// The event stream is over: the host closed the endpoint or went away.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("event stream closed: {reason}")]
pub struct StreamClosed {
    /// Why, as the transport said it.
    pub reason: String,
}

/// Why a transport refused an update right now.
#[derive(Debug)]
pub(crate) enum TrySendError {
    /// No room now; try again when space frees.
    Full,
    /// The update is larger than the transport takes as one record: send it in pieces.
    TooLarge,
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
    fn recv_into(
        &mut self,
        out: &mut VecDeque<Event>,
        timeout: Duration,
    ) -> Result<(), StreamClosed>;

    /// A function that cuts a wait in `recv_into` short, from any thread.
    fn waker(&self) -> Box<dyn FnOnce() + Send>;
}
