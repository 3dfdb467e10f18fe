//! The pump and the flusher over in-memory rings.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ipc::codec;
use ipc::event::{Book, Event, NodeStatus, Update};
use ipc::records::Records;

use super::session::*;
use crate::service::{EventSink, ServiceState, SinkClosed};

/// A watcher ring fed from a channel; `None` on the channel means the plugin closed it.
struct ChannelRing(Receiver<Option<Vec<u8>>>);

impl WatcherRing for ChannelRing {
    fn drain(&mut self, timeout: Duration, into: &mut Records) -> Result<usize, SessionEnd> {
        let mut n = 0;
        let first = match self.0.recv_timeout(timeout) {
            Ok(msg) => msg,
            Err(mpsc::RecvTimeoutError::Timeout) => return Ok(0),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(SessionEnd::Failed("peer gone".into()))
            }
        };
        for msg in std::iter::once(first).chain(std::iter::from_fn(|| self.0.try_recv().ok())) {
            match msg {
                Some(record) => {
                    into.push(&record);
                    n += 1;
                }
                None => return Err(SessionEnd::Finished),
            }
        }
        Ok(n)
    }

    /// The tests end a pump by closing its channel, never with a stop mid-wait.
    fn waker(&self) -> Waker {
        Box::new(|| {})
    }
}

/// A reactor ring with a capacity the test controls; what is pushed counts as unread
/// until the test says the reactor read it.
#[derive(Clone, Default)]
struct SharedRing {
    inner: Arc<Mutex<(Vec<Event>, usize)>>,
    unread: Arc<AtomicBool>,
}

impl SharedRing {
    fn set_capacity(&self, capacity: usize) {
        self.inner.lock().unwrap().1 = capacity;
    }

    /// The reactor read everything in its ring.
    fn read_all(&self) {
        self.unread.store(false, Ordering::Release);
    }

    fn received(&self) -> Vec<Event> {
        self.inner.lock().unwrap().0.clone()
    }
}

impl EventSink for SharedRing {
    fn try_push(&mut self, records: &Records) -> Result<usize, SinkClosed> {
        let mut inner = self.inner.lock().unwrap();
        let n = records.len().min(inner.1);
        for r in records.iter().take(n) {
            inner.0.push(codec::decode(r, "event").unwrap());
        }
        inner.1 -= n;
        if n > 0 {
            self.unread.store(true, Ordering::Release);
        }
        Ok(n)
    }

    fn is_consumed(&self) -> bool {
        !self.unread.load(Ordering::Acquire)
    }
}

impl ReactorRing for SharedRing {
    fn space_waiter(&self) -> SpaceWait {
        Box::new(|d| {
            std::thread::sleep(d.min(Duration::from_millis(1)));
            Ok(())
        })
    }

    /// Its space waits are short by themselves.
    fn waker(&self) -> Waker {
        Box::new(|| {})
    }
}

fn record(update: &Update) -> Option<Vec<u8>> {
    Some(codec::encode(update, "update").unwrap())
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn final_view(events: &[Event]) -> Event {
    let mut book = Book::new();
    for ev in events {
        book.update_inc(ev.clone());
    }
    book.full()
}

/// Runs reactor "r"'s flusher on `ring` and waits until it is attached to the service.
fn attached_flusher(
    core: &Arc<ServiceCore>,
    ring: Box<dyn ReactorRing>,
) -> (Arc<Stop>, std::thread::JoinHandle<SessionEnd>) {
    let stop = Stop::new();
    let flusher = {
        let (core, stop) = (core.clone(), stop.clone());
        std::thread::spawn(move || run_reactor_flusher(ring, core, "r".into(), stop))
    };
    wait_until("the reactor to attach", || {
        core.lock().reactor_names() == ["r"]
    });
    (stop, flusher)
}

fn start_pump(
    core: &Arc<ServiceCore>,
) -> (Sender<Option<Vec<u8>>>, std::thread::JoinHandle<SessionEnd>) {
    let (tx, rx) = mpsc::channel();
    let core = core.clone();
    let pump = std::thread::spawn(move || {
        pump_watcher(Box::new(ChannelRing(rx)), core, "w".into(), Stop::new())
    });
    (tx, pump)
}

#[test]
fn pump_applies_updates_and_ends_when_the_plugin_closes() {
    let core = ServiceCore::new(ServiceState::new("web"));
    let ring = SharedRing::default();
    ring.set_capacity(100);
    let (stop, flusher) = attached_flusher(&core, Box::new(ring.clone()));
    let (tx, pump) = start_pump(&core);
    tx.send(record(&Update::Incremental(Event::with_node(
        "a",
        NodeStatus::Up,
        "h",
        1,
    ))))
    .unwrap();
    tx.send(record(&Update::Incremental(Event::with_node(
        "a",
        NodeStatus::Up,
        "h",
        1,
    ))))
    .unwrap();
    tx.send(record(&Update::Full(Event::with_node(
        "b",
        NodeStatus::Up,
        "h",
        2,
    ))))
    .unwrap();
    tx.send(None).unwrap();
    assert_eq!(pump.join().unwrap(), SessionEnd::Finished);
    assert_eq!(
        ring.received().len(),
        2,
        "the repeat was dropped: {:?}",
        ring.received()
    );
    assert_eq!(final_view(&ring.received()), core.lock().current());
    assert!(
        !core.lock().is_drained("r"),
        "delivered into the ring but not read yet"
    );
    ring.read_all();
    assert!(core.lock().is_drained("r"), "read to the end");
    stop.stop();
    flusher.join().unwrap();
}

#[test]
fn flusher_delivers_the_backlog_once_the_ring_has_room() {
    let core = ServiceCore::new(ServiceState::new("web"));
    let ring = SharedRing::default(); // no room at first
    let (stop, flusher) = attached_flusher(&core, Box::new(ring.clone()));
    let (tx, pump) = start_pump(&core);
    for port in 0..20 {
        tx.send(record(&Update::Incremental(Event::with_node(
            "a",
            NodeStatus::Up,
            "h",
            port,
        ))))
        .unwrap();
    }
    wait_until("the backlog to form", || {
        core.lock().stats().updates_in == 20
    });
    assert!(ring.received().is_empty());
    assert!(
        !core.lock().is_drained("r"),
        "events wait in the backlog, though the ring holds nothing unread"
    );
    ring.set_capacity(1);
    wait_until("the flusher to deliver", || ring.received().len() == 1);
    ring.read_all();
    assert!(core.lock().is_drained("r"));
    assert_eq!(
        ring.received()[0].get("a").unwrap().port,
        19,
        "one coalesced event with the final state"
    );
    tx.send(None).unwrap();
    pump.join().unwrap();
    stop.stop();
    flusher.join().unwrap();
}

#[test]
fn a_bad_frame_fails_the_session_and_a_stop_ends_it() {
    let core = ServiceCore::new(ServiceState::new("web"));
    let (tx, pump) = start_pump(&core);
    tx.send(Some(vec![0xff, 0xff, 0xff])).unwrap();
    match pump.join().unwrap() {
        SessionEnd::Failed(reason) => assert!(reason.contains("watcher update"), "{reason}"),
        other => panic!("expected a failure, got {other:?}"),
    }

    let (_tx, rx) = mpsc::channel();
    let stop = Stop::new();
    stop.stop();
    let end = pump_watcher(Box::new(ChannelRing(rx)), core, "w".into(), stop);
    assert_eq!(end, SessionEnd::Stopped);
}

#[test]
fn a_replaced_reactor_session_that_stops_late_leaves_the_new_one_working() {
    let core = ServiceCore::new(ServiceState::new("web"));
    let (tx, pump) = start_pump(&core);
    let node = |name: &str| {
        record(&Update::Incremental(Event::with_node(
            name,
            NodeStatus::Up,
            "h",
            1,
        )))
    };
    tx.send(node("early")).unwrap();
    wait_until("the first update", || core.lock().stats().updates_in == 1);
    let start_flusher = |ring: &SharedRing| {
        let (core, ring) = (core.clone(), ring.clone());
        let stop = Stop::new();
        let flag = stop.clone();
        let thread =
            std::thread::spawn(move || run_reactor_flusher(Box::new(ring), core, "r".into(), flag));
        (stop, thread)
    };
    let old = SharedRing::default();
    old.set_capacity(100);
    let (old_stop, old_flusher) = start_flusher(&old);
    wait_until("the old session's full state", || {
        !old.received().is_empty()
    });
    // The plugin restarted: the new session attaches before the old one's thread ends.
    let fresh = SharedRing::default();
    fresh.set_capacity(100);
    let (fresh_stop, fresh_flusher) = start_flusher(&fresh);
    wait_until("the new session's full state", || {
        !fresh.received().is_empty()
    });
    old_stop.stop();
    old_flusher.join().unwrap();

    tx.send(node("late")).unwrap();
    wait_until("the event in the new session", || {
        final_view(&fresh.received()).get("late").is_some()
    });
    assert!(final_view(&old.received()).get("late").is_none());
    tx.send(None).unwrap();
    pump.join().unwrap();
    fresh_stop.stop();
    fresh_flusher.join().unwrap();
}

/// A reactor's ring whose process is gone: always full, and no room will ever come.
struct GoneRing;

impl EventSink for GoneRing {
    fn try_push(&mut self, _: &Records) -> Result<usize, SinkClosed> {
        Ok(0)
    }

    fn is_consumed(&self) -> bool {
        false
    }
}

impl ReactorRing for GoneRing {
    fn space_waiter(&self) -> SpaceWait {
        Box::new(|_| Err("the plugin process 4242 is gone".into()))
    }

    fn waker(&self) -> Waker {
        Box::new(|| {})
    }
}

/// Guards against a flusher spinning on the ring of a dead reactor: it ends the session
/// as failed, by itself, with the reason.
#[test]
fn a_flusher_whose_reactor_is_gone_ends_the_session() {
    let core = ServiceCore::new(ServiceState::new("web"));
    let (stop, flusher) = attached_flusher(&core, Box::new(GoneRing));
    let (tx, pump) = start_pump(&core);
    tx.send(record(&Update::Incremental(Event::with_node(
        "a",
        NodeStatus::Up,
        "h",
        1,
    ))))
    .unwrap();
    wait_until("the flusher to end by itself", || flusher.is_finished());
    assert_eq!(
        flusher.join().unwrap(),
        SessionEnd::Failed("the plugin process 4242 is gone".into())
    );
    assert!(!stop.is_stopped(), "nobody asked it to stop");
    tx.send(None).unwrap();
    pump.join().unwrap();
}
