//! The host's ends of the shared-memory rings, behind the session traits.
//!
//! The host creates every ring (so it owns and unlinks every name): for a watcher
//! session it is the consumer, for a reactor session the producer. The ring's base name
//! goes to the plugin in `Accept`, and the plugin opens the other end.

use std::time::Duration;

use ipc::records::Records;
use ipc::ring::{OpenError, RingConfig, RingConsumer, RingError, RingProducer};

use super::session::{ReactorRing, SessionEnd, WatcherRing};
use crate::service::{EventSink, SinkClosed};

/// The host's consuming end of a watcher's ring.
pub struct HostWatcherRing(RingConsumer);

impl WatcherRing for HostWatcherRing {
    fn drain(&mut self, timeout: Duration, into: &mut Records) -> Result<usize, SessionEnd> {
        self.0
            .drain_timeout_into(timeout, into)
            .map_err(|e| match e {
                RingError::Closed => SessionEnd::Finished,
                RingError::PeerGone { pid } => {
                    SessionEnd::Failed(format!("the plugin process {pid} is gone"))
                }
                other => SessionEnd::Failed(other.to_string()),
            })
    }
}

/// The host's producing end of a reactor's ring.
pub struct HostReactorRing(RingProducer);

impl EventSink for HostReactorRing {
    fn try_push(&mut self, records: &Records) -> Result<usize, SinkClosed> {
        self.0
            .try_push_batch(records.iter())
            .map_err(|e| SinkClosed(e.to_string()))
    }

    fn is_consumed(&self) -> bool {
        self.0.is_consumed()
    }
}

impl ReactorRing for HostReactorRing {
    fn space_waiter(&self) -> Box<dyn Fn(Duration) + Send + Sync> {
        let waiter = self.0.space_waiter();
        Box::new(move |timeout| {
            // An error (the reactor is gone) shows up on the next push; just return.
            let _ = waiter.wait(timeout);
        })
    }
}

/// Creates a watcher session's ring: its base name (for `Accept`) and the host's end.
pub fn create_watcher_ring() -> Result<(String, Box<dyn WatcherRing>), OpenError> {
    let ring = RingConsumer::create(RingConfig::default())?;
    Ok((
        ring.ring().base().to_owned(),
        Box::new(HostWatcherRing(ring)),
    ))
}

/// Creates a reactor session's ring: its base name (for `Accept`) and the host's end.
pub fn create_reactor_ring() -> Result<(String, Box<dyn ReactorRing>), OpenError> {
    let ring = RingProducer::create(RingConfig::default())?;
    Ok((
        ring.ring().base().to_owned(),
        Box::new(HostReactorRing(ring)),
    ))
}
