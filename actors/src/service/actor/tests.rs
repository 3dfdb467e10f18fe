//! The `ServiceActor` under a real actix system, its service fed by a real pump and
//! drained by a real flusher (the session threads of [`crate::endpoint::session`]) on
//! in-memory rings: status, a panic, an exhausted budget.

use std::future::Future;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use actix::prelude::*;
use ipc::codec;
use ipc::event::{Book, Event, NodeStatus, Update};
use ipc::records::Records;

use super::*;
use crate::endpoint::session::{SpaceWait, Stop, Waker};
use crate::endpoint::{pump_watcher, run_reactor_flusher, ReactorRing, SessionEnd, WatcherRing};
use crate::lookup::PluginKind;
use crate::service::{EventSink, SinkClosed};

const WATCHDOG: Duration = Duration::from_secs(10);

/// A watcher ring fed from a channel; `None` means the plugin closed it.
struct ChannelRing(Receiver<Option<Vec<u8>>>);

impl WatcherRing for ChannelRing {
    fn drain(&mut self, timeout: Duration, into: &mut Records) -> Result<usize, SessionEnd> {
        match self.0.recv_timeout(timeout) {
            Ok(Some(record)) => {
                into.push(&record);
                Ok(1)
            }
            Ok(None) => Err(SessionEnd::Finished),
            Err(mpsc::RecvTimeoutError::Timeout) => Ok(0),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(SessionEnd::Failed("gone".into())),
        }
    }

    /// The tests end a pump by closing its channel.
    fn waker(&self) -> Waker {
        Box::new(|| {})
    }
}

/// A reactor ring with room for everything; the test reads what it received.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Event>>>);

impl Recorder {
    fn received(&self) -> Vec<Event> {
        self.0.lock().unwrap().clone()
    }

    /// The reactor's view: its events applied in order.
    fn view(&self) -> Event {
        let mut book = Book::new();
        for event in self.received() {
            book.update_inc(event);
        }
        book.full()
    }
}

impl EventSink for Recorder {
    fn try_push(&mut self, records: &Records) -> Result<usize, SinkClosed> {
        let mut got = self.0.lock().unwrap();
        for record in records.iter() {
            got.push(codec::decode(record, "event").unwrap());
        }
        Ok(records.len())
    }

    fn is_consumed(&self) -> bool {
        true
    }
}

impl ReactorRing for Recorder {
    fn space_waiter(&self) -> SpaceWait {
        Box::new(|_| Ok(()))
    }

    /// It never waits for space.
    fn waker(&self) -> Waker {
        Box::new(|| {})
    }
}

/// Hears of services out of restarts.
struct Collector(Sender<ServiceFailed>);

impl Actor for Collector {
    type Context = Context<Self>;
}

impl Handler<ServiceFailed> for Collector {
    type Result = ();

    fn handle(&mut self, msg: ServiceFailed, _: &mut Context<Self>) {
        let _ = self.0.send(msg);
    }
}

fn spec(max_restarts: u32) -> ServiceSpec {
    ServiceSpec {
        name: "web".into(),
        watchers: vec!["w".into()],
        reactors: vec!["r".into()],
        policy: SupervisionPolicy {
            max_restarts,
            ..SupervisionPolicy::default()
        },
    }
}

fn up(name: &str) -> Option<Vec<u8>> {
    let event = Event::with_node(name, NodeStatus::Up, "10.0.0.1", 80);
    Some(codec::encode(&Update::Incremental(event), "update").unwrap())
}

fn names(event: &Event) -> Vec<String> {
    event.nodes().map(|n| n.name.to_string()).collect()
}

/// A service's sessions: watcher `w`'s pump and reactor `r`'s flusher, on threads.
struct Sessions {
    watcher: Sender<Option<Vec<u8>>>,
    pump: JoinHandle<SessionEnd>,
    reactor: Recorder,
    stop_reactor: Arc<Stop>,
    flusher: JoinHandle<SessionEnd>,
}

fn sessions(core: &Arc<ServiceCore>) -> Sessions {
    let reactor = Recorder::default();
    let stop_reactor = Stop::new();
    let flusher = {
        let (core, ring, stop) = (core.clone(), reactor.clone(), stop_reactor.clone());
        std::thread::spawn(move || run_reactor_flusher(Box::new(ring), core, "r".into(), stop))
    };
    let (watcher, rx) = mpsc::channel();
    let core = core.clone();
    let pump = std::thread::spawn(move || {
        let stop = Stop::new();
        pump_watcher(Box::new(ChannelRing(rx)), core, "w".into(), stop)
    });
    Sessions {
        watcher,
        pump,
        reactor,
        stop_reactor,
        flusher,
    }
}

impl Sessions {
    fn end(self) {
        let _ = self.watcher.send(None);
        self.stop_reactor.stop();
        assert_eq!(self.pump.join().unwrap(), SessionEnd::Finished);
        self.flusher.join().unwrap();
    }
}

/// Asks for the status until `cond` holds; panics after the watchdog.
async fn status_when(
    actor: &Addr<ServiceActor>,
    what: &str,
    cond: impl Fn(&ServiceReport) -> bool,
) -> ServiceReport {
    let deadline = Instant::now() + WATCHDOG;
    loop {
        if let Ok(Ok(report)) = actor.send(ServiceStatus).await {
            if cond(&report) {
                return report;
            }
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits (without blocking the arbiter) until `cond` holds.
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WATCHDOG;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn run(test: impl Future<Output = ()>) {
    actix::System::new().block_on(test);
}

#[test]
fn the_actor_answers_its_status_with_the_nodes_and_endpoints_of_its_sessions() {
    run(async {
        let (tx, _failed) = mpsc::channel();
        let (actor, core) = ServiceActor::start(spec(5), Collector(tx).start().recipient());
        let report = status_when(&actor, "a first answer", |_| true).await;
        assert!(report
            .endpoints
            .iter()
            .all(|e| !e.attached && e.sessions == 0));
        assert_eq!(report.endpoints.len(), 2, "both configured endpoints");

        let s = sessions(&core);
        for name in ["a", "b", "a"] {
            s.watcher.send(up(name)).unwrap();
        }
        // All three updates applied (the repeat of "a" may come after both nodes show).
        let report = status_when(&actor, "three updates, the reactor attached", |r| {
            r.state.nodes.len() == 2
                && r.endpoints.iter().all(|e| e.attached)
                && r.state.watchers.first().is_some_and(|w| w.updates_in == 3)
        })
        .await;
        assert_eq!(names(&report.state.nodes), ["a", "b"]);
        assert_eq!(report.phase, ServicePhase::Running);
        let w = report.endpoint(PluginKind::Watcher, "w").unwrap();
        assert!(w.attached && w.sessions == 1, "{w:?}");
        let r = report.endpoint(PluginKind::Reactor, "r").unwrap();
        assert!(r.attached && r.sessions == 1, "{r:?}");
        assert_eq!(report.state.watchers[0].updates_in, 3);
        assert_eq!(report.state.watchers[0].nodes_up, 2);
        assert_eq!(report.state.stats.changes_out, 2, "the repeat was dropped");
        until("the reactor's view", || {
            s.reactor.view() == report.state.nodes
        })
        .await;

        s.end();
        let report = status_when(&actor, "both sessions over", |r| {
            r.endpoints.iter().all(|e| !e.attached)
        })
        .await;
        assert_eq!(names(&report.state.nodes), ["a", "b"], "the nodes stay");
    });
}

#[test]
fn a_panic_restarts_the_actor_the_reactors_get_the_full_state_and_events_flow_on() {
    run(async {
        let (tx, failed) = mpsc::channel();
        let (actor, core) = ServiceActor::start(spec(5), Collector(tx).start().recipient());
        let s = sessions(&core);
        s.watcher.send(up("a")).unwrap();
        s.watcher.send(up("b")).unwrap();
        status_when(&actor, "both nodes", |r| r.state.nodes.len() == 2).await;
        until("the reactor's view", || s.reactor.view().len() == 2).await;
        let before = s.reactor.received().len();

        actor.do_send(InjectServicePanic);
        let report = status_when(&actor, "the restart", |r| r.restarts == 1).await;
        assert_eq!(report.phase, ServicePhase::Running);
        assert_eq!(names(&report.state.nodes), ["a", "b"], "nothing lost");
        // The attached reactor got the whole state again, after what it had.
        until("the full state resent", || {
            s.reactor.received().len() > before
        })
        .await;
        assert_eq!(names(&s.reactor.received()[before]), ["a", "b"]);

        s.watcher.send(up("c")).unwrap();
        let report = status_when(&actor, "the next node", |r| r.state.nodes.len() == 3).await;
        until("the reactor's view to equal the truth", || {
            s.reactor.view() == report.state.nodes
        })
        .await;
        assert!(failed.try_recv().is_err(), "within the budget");
        s.end();
    });
}

#[test]
fn past_its_restart_budget_the_service_is_failed_and_the_host_is_told() {
    run(async {
        let (tx, failed) = mpsc::channel();
        let (actor, core) = ServiceActor::start(spec(1), Collector(tx).start().recipient());
        let s = sessions(&core);
        s.watcher.send(up("a")).unwrap();
        status_when(&actor, "the node", |r| r.state.nodes.len() == 1).await;

        actor.do_send(InjectServicePanic);
        status_when(&actor, "the restart", |r| r.restarts == 1).await;
        actor.do_send(InjectServicePanic);
        let report = status_when(&actor, "the failure", |r| r.phase == ServicePhase::Failed).await;
        assert_eq!(report.restarts, 1, "no restart past the budget");
        let mut told = None;
        until("the host to be told", || {
            told = failed.try_recv().ok();
            told.is_some()
        })
        .await;
        let told = told.unwrap();
        assert_eq!(told.service, "web");
        assert_eq!(told.on_failure, crate::config::OnFailure::Isolate);
        assert!(
            told.reason.contains("injected by a test hook"),
            "{}",
            told.reason
        );

        // A failed service's actor answers and restarts nothing more; events flow on.
        actor.do_send(InjectServicePanic);
        s.watcher.send(up("b")).unwrap();
        let report = status_when(&actor, "the next node", |r| r.state.nodes.len() == 2).await;
        assert_eq!((report.phase, report.restarts), (ServicePhase::Failed, 1));
        until("the reactor's view", || {
            s.reactor.view() == report.state.nodes
        })
        .await;
        assert!(failed.try_recv().is_err(), "told once");
        s.end();
    });
}
