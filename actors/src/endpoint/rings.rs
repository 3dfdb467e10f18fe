//! The host's ends of the shared-memory rings, behind the session traits.
//!
//! The host creates every ring (so it owns and unlinks every name): for a watcher
//! session it is the consumer, for a reactor session the producer. The ring's base name
//! goes to the plugin in `Accept` and its segment's descriptor beside it; the plugin
//! opens the other end. The host's end checks the liveness of the child it spawned,
//! never a pid the plugin could write into the segment.

use std::os::fd::OwnedFd;
use std::time::Duration;

use ipc::records::Records;
use ipc::ring::{OpenError, RingConfig, RingConsumer, RingError, RingProducer, ShmRing};

use super::session::{ReactorRing, SessionEnd, SpaceWait, Waker, WatcherRing};
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

    fn waker(&self) -> Waker {
        let waker = self.0.waker();
        Box::new(move || waker.wake())
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
    fn space_waiter(&self) -> SpaceWait {
        let waiter = self.0.space_waiter();
        Box::new(move |timeout| {
            waiter.wait(timeout).map(drop).map_err(|e| match e {
                RingError::PeerGone { pid } => format!("the plugin process {pid} is gone"),
                other => other.to_string(),
            })
        })
    }

    fn waker(&self) -> Waker {
        let waker = self.0.waker();
        Box::new(move || waker.wake())
    }
}

/// What `Accept` carries of a fresh ring: its base name and a copy of its segment's
/// descriptor (closed once sent).
pub type RingHandoff = (String, OwnedFd);

fn handoff(ring: &ShmRing) -> Result<RingHandoff, OpenError> {
    let fd = ring.segment_fd().try_clone_to_owned().map_err(|e| {
        OpenError::Segment(ipc::shm::SegmentError {
            name: ring.base().to_owned(),
            message: format!("cannot duplicate the descriptor: {e}"),
        })
    })?;
    Ok((ring.base().to_owned(), fd))
}

/// Creates a watcher session's ring for the plugin process `peer`, growing up to `size`
/// bytes: what `Accept` carries, and the host's end.
pub fn create_watcher_ring(
    peer: u32,
    size: usize,
) -> Result<(RingHandoff, Box<dyn WatcherRing>), OpenError> {
    let ring = RingConsumer::create(RingConfig::growing(size))?;
    ring.ring().set_peer(peer);
    Ok((handoff(ring.ring())?, Box::new(HostWatcherRing(ring))))
}

/// Creates a reactor session's ring for the plugin process `peer`, growing up to `size`
/// bytes: what `Accept` carries, and the host's end.
pub fn create_reactor_ring(
    peer: u32,
    size: usize,
) -> Result<(RingHandoff, Box<dyn ReactorRing>), OpenError> {
    let ring = RingProducer::create(RingConfig::growing(size))?;
    ring.ring().set_peer(peer);
    Ok((handoff(ring.ring())?, Box::new(HostReactorRing(ring))))
}
