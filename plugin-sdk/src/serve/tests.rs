//! The SDK's ring transports against real rings.

use std::time::{Duration, Instant};

use ipc::codec;
use ipc::event::{Event, NodeInfo, NodeStatus};
use ipc::ring::{RingConfig, RingConsumer, RingProducer};

use super::rings::{RingInbound, RingOutbound};
use crate::{Close, EventReceiver, EventSender, SendError, TryRecvError};

fn event(names: &[&str]) -> Event {
    names
        .iter()
        .map(|n| NodeInfo::new(*n, NodeStatus::Up, "10.0.0.1", 80))
        .collect()
}

/// A receiver on a real ring, its producer (the host's side) here too.
fn receiver() -> (RingProducer, EventReceiver) {
    let producer = RingProducer::create(RingConfig::with_capacity(1 << 16)).unwrap();
    let segment = producer.ring().segment_fd().try_clone_to_owned().unwrap();
    let consumer = RingConsumer::open(producer.ring().base(), segment).unwrap();
    let inbound = Box::new(RingInbound::new(consumer));
    (producer, EventReceiver::new(inbound, Close::new()))
}

#[test]
fn events_of_one_drain_arrive_in_order_then_the_end_of_the_stream() {
    let (mut producer, mut events) = receiver();
    let sent = [event(&["a"]), event(&["b", "c"]), event(&["d"])];
    let records: Vec<Vec<u8>> = sent
        .iter()
        .map(|e| codec::encode(e, "event").unwrap())
        .collect();
    assert_eq!(producer.try_push_batch(&records).unwrap(), 3);
    drop(producer);
    for expected in &sent {
        assert_eq!(
            events.recv_timeout(Duration::from_secs(5)).as_ref(),
            Ok(expected)
        );
    }
    assert_eq!(events.recv(), None, "the host closed the ring");
}

#[test]
fn a_frame_that_does_not_decode_ends_the_stream_after_the_events_before_it() {
    let (mut producer, mut events) = receiver();
    let good = codec::encode(&event(&["a"]), "event").unwrap();
    let records = [good.clone(), vec![0xff; 12], good];
    assert_eq!(producer.try_push_batch(&records).unwrap(), 3);
    assert_eq!(events.recv(), Some(event(&["a"])));
    assert_eq!(events.recv(), None, "nothing after the bad frame");
    assert_eq!(events.try_recv(), Err(TryRecvError::Closed));
}

#[test]
fn a_receive_times_out_while_the_ring_is_empty_and_gets_what_comes_later() {
    let (mut producer, mut events) = receiver();
    assert_eq!(
        events.recv_timeout(Duration::from_millis(20)),
        Err(crate::RecvTimeoutError::Timeout)
    );
    assert_eq!(events.try_recv(), Err(TryRecvError::Empty));
    let record = codec::encode(&event(&["late"]), "event").unwrap();
    assert!(producer.try_push(&record).unwrap());
    assert_eq!(
        events.recv_timeout(Duration::from_secs(5)),
        Ok(event(&["late"]))
    );
}

/// Guards against the SDK's flusher spinning when the host is gone: once its
/// process is dead, a backlogged sender closes with the reason instead.
#[test]
fn a_sender_whose_host_is_gone_closes_instead_of_spinning() {
    let host = RingConsumer::create(RingConfig::with_capacity(1 << 12)).unwrap();
    let mut dead = std::process::Command::new("true").spawn().unwrap();
    dead.wait().unwrap();
    // The plugin's end takes the host's pid from the header: make it a dead one.
    let fd = host.ring().segment_fd().try_clone_to_owned().unwrap();
    let header = ipc::sys::shm::Mapping::map_fd(std::os::fd::AsFd::as_fd(&fd)).unwrap();
    assert!(header.write(24, &dead.id().to_le_bytes()));
    let producer = RingProducer::open(host.ring().base(), fd).unwrap();
    let sender = EventSender::new(Box::new(RingOutbound::new(producer)));
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut port = 0u16;
    let closed = loop {
        match sender.send(event(&[&format!("n{port}")])) {
            Ok(()) => port = port.wrapping_add(1),
            Err(SendError::Closed(closed)) => break closed,
            Err(other) => panic!("{other}"),
        }
        assert!(
            Instant::now() < deadline,
            "watchdog: the sender never closed"
        );
        std::thread::sleep(Duration::from_millis(1));
    };
    assert!(closed.reason.contains("is gone"), "{}", closed.reason);
    drop(host);
}

/// A reactor's next incarnation (a restart in place) takes the stream over where the
/// failed one dropped it: the events drained but not delivered are not lost.
#[test]
fn a_dropped_receiver_leaves_its_stream_to_the_next_incarnation() {
    use std::sync::{Arc, Mutex};

    use crate::events::{ReceiverHome, ReceiverParts};

    let mut producer = RingProducer::create(RingConfig::with_capacity(1 << 16)).unwrap();
    let segment = producer.ring().segment_fd().try_clone_to_owned().unwrap();
    let consumer = RingConsumer::open(producer.ring().base(), segment).unwrap();
    let parts = ReceiverParts::new(Box::new(RingInbound::new(consumer)));
    let home: ReceiverHome = Arc::new(Mutex::new(None));
    let sent = [event(&["a"]), event(&["b"]), event(&["c"])];
    let records: Vec<Vec<u8>> = sent
        .iter()
        .map(|e| codec::encode(e, "event").unwrap())
        .collect();
    assert_eq!(producer.try_push_batch(&records).unwrap(), 3);

    let first = Close::new();
    let mut events = EventReceiver::resume(parts, first.clone(), Some(home.clone()));
    assert_eq!(events.recv(), Some(event(&["a"])));
    drop(events);
    first.fire();
    let parts = home.lock().unwrap().take().expect("the stream went home");
    assert!(!parts.is_over());
    let mut events = EventReceiver::resume(parts, Close::new(), Some(home.clone()));
    assert_eq!(events.recv(), Some(event(&["b"])));
    assert_eq!(events.recv(), Some(event(&["c"])));
    drop(producer);
    assert_eq!(events.recv(), None, "the host closed the ring");
    drop(events);
    assert!(home.lock().unwrap().as_ref().unwrap().is_over());
}
