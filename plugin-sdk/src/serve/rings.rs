//! The rings as the SDK's transports: a watcher's producer end behind `Outbound`, a
//! reactor's consumer end behind `Inbound`.

use std::collections::VecDeque;
use std::time::Duration;

use ipc::codec;
use ipc::event::{Event, Update};
use ipc::records::Records;
use ipc::ring::{RingConsumer, RingError, RingProducer, RingWaker};

use crate::events::{Inbound, Outbound, StreamClosed, TrySendError};

/// A watcher's ring as the SDK's outbound transport.
pub(super) struct RingOutbound {
    producer: RingProducer,
    buf: Vec<u8>,
}

impl RingOutbound {
    pub(super) fn new(producer: RingProducer) -> Self {
        RingOutbound {
            producer,
            buf: Vec::new(),
        }
    }
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
pub(super) struct RingInbound {
    consumer: RingConsumer,
    /// The records of the last drain.
    records: Records,
    /// The next of them to decode.
    next: usize,
    /// How the stream ended, once the records before the end are delivered.
    end: Option<StreamClosed>,
}

impl RingInbound {
    pub(super) fn new(consumer: RingConsumer) -> Self {
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
        self.end = drained.err().map(|e| StreamClosed {
            reason: ring_closed(e),
        });
    }
}

impl Inbound for RingInbound {
    fn recv_into(
        &mut self,
        out: &mut VecDeque<Event>,
        timeout: Duration,
    ) -> Result<(), StreamClosed> {
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
                let closed = StreamClosed {
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
