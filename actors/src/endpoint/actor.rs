//! The `Endpoint` actor: owns one session (a watcher's pump or a reactor's flusher) and
//! reports how it ended.
//!
//! A thin shell: the work happens on the session thread (see [`super::session`]); the
//! actor starts it, stops it on request (a [`Stop`] that wakes the thread wherever it
//! sleeps), and tells its service when the session ended by itself.

use std::sync::Arc;
use std::thread::JoinHandle;

use actix::prelude::*;

use super::session::{
    pump_watcher, run_reactor_flusher, ReactorRing, ServiceCore, SessionEnd, Stop, WatcherRing,
};
use crate::lookup::PluginKind;
use ipc::panic::catch_panic;

/// How often a stop is repeated while the session's thread has not ended.
const RESTOP: std::time::Duration = std::time::Duration::from_millis(20);

/// One watcher or reactor instance of a service.
pub struct Endpoint {
    id: EndpointName,
    session: Option<Session>,
    /// A reactor's service, for [`ResyncReactor`].
    core: Option<Arc<ServiceCore>>,
    stop: Arc<Stop>,
    /// The session thread, and the channel that disconnects when it ends.
    thread: Option<(JoinHandle<()>, std::sync::mpsc::Receiver<()>)>,
    report: Recipient<EndpointEnded>,
    generation: u64,
}

/// Which endpoint: kind, service and instance.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EndpointName {
    /// Watcher or reactor.
    pub kind: PluginKind,
    /// The service it belongs to.
    pub service: String,
    /// Its instance name within the service.
    pub instance: String,
}

impl std::fmt::Display for EndpointName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "service '{}' {} '{}'",
            self.service, self.kind, self.instance
        )
    }
}

/// The session an endpoint runs.
pub enum Session {
    /// A watcher's ring, drained into the service.
    Watcher(Box<dyn WatcherRing>, Arc<ServiceCore>),
    /// A reactor's ring, fed from the service.
    Reactor(Box<dyn ReactorRing>, Arc<ServiceCore>),
}

/// An endpoint's session ended by itself (not because the host stopped it).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct EndpointEnded {
    /// Which endpoint.
    pub name: EndpointName,
    /// How its session ended.
    pub end: SessionEnd,
    /// The plugin incarnation the endpoint belonged to.
    pub generation: u64,
}

/// The session thread finished (sent by the thread to its own actor).
#[derive(Message)]
#[rtype(result = "()")]
struct SessionEnded(SessionEnd);

/// The plugin restarted this reactor endpoint in place (same ring): its fresh endpoint
/// gets the service's full current state, after what is on its way to it already.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct ResyncReactor;

impl Handler<ResyncReactor> for Endpoint {
    type Result = ();

    fn handle(&mut self, _: ResyncReactor, _: &mut Context<Self>) {
        let Some(core) = self.core.clone() else {
            return;
        };
        let reactor = self.id.instance.clone();
        // Gathering a large service's state takes a while: not on the arbiter.
        tokio::task::spawn_blocking(move || core.resync_reactor(&reactor));
    }
}

/// Stops the endpoint's session and waits for its thread.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct StopEndpoint;

impl Endpoint {
    /// An endpoint that will run `session` once started, reporting its end to `report`
    /// tagged with the plugin incarnation `generation`.
    pub fn new(
        name: EndpointName,
        session: Session,
        report: Recipient<EndpointEnded>,
        generation: u64,
    ) -> Self {
        let core = match &session {
            Session::Reactor(_, core) => Some(core.clone()),
            Session::Watcher(..) => None,
        };
        Endpoint {
            id: name,
            session: Some(session),
            core,
            stop: Stop::new(),
            thread: None,
            report,
            generation,
        }
    }
}

impl Actor for Endpoint {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let Some(session) = self.session.take() else {
            return;
        };
        let me = ctx.address();
        let stop = self.stop.clone();
        let name = self.id.clone();
        let (ended_tx, ended) = std::sync::mpsc::channel::<()>();
        let spawned = std::thread::Builder::new()
            .name(format!("{}-{}-{}", name.kind, name.service, name.instance))
            .spawn(move || {
                // A panic in the service code ends the session like a bad frame would:
                // the plugin restarts, the host carries on.
                let end = catch_panic(|| match session {
                    Session::Watcher(ring, core) => {
                        pump_watcher(ring, core, name.instance.clone(), stop)
                    }
                    Session::Reactor(ring, core) => {
                        run_reactor_flusher(ring, core, name.instance.clone(), stop)
                    }
                })
                .unwrap_or_else(|panic| {
                    SessionEnd::Failed(format!("the session panicked: {panic}"))
                });
                me.do_send(SessionEnded(end));
                drop(ended_tx);
            });
        match spawned {
            Ok(thread) => self.thread = Some((thread, ended)),
            Err(e) => {
                let end = SessionEnd::Failed(format!("cannot start the session thread: {e}"));
                self.report.do_send(EndpointEnded {
                    name: self.id.clone(),
                    end,
                    generation: self.generation,
                });
                ctx.stop();
            }
        }
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.stop.stop();
    }
}

impl Handler<SessionEnded> for Endpoint {
    type Result = ();

    fn handle(&mut self, msg: SessionEnded, ctx: &mut Context<Self>) {
        if self.stop.is_stopped() && msg.0 == SessionEnd::Stopped {
            return;
        }
        self.report.do_send(EndpointEnded {
            name: self.id.clone(),
            end: msg.0,
            generation: self.generation,
        });
        ctx.stop();
    }
}

impl Handler<StopEndpoint> for Endpoint {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: StopEndpoint, _: &mut Context<Self>) -> Self::Result {
        self.stop.stop();
        let thread = self.thread.take();
        let stop = self.stop.clone();
        Box::pin(async move {
            if let Some((thread, ended)) = thread {
                // The stop woke the thread; join it off the arbiter. The stop is repeated
                // until the thread has ended (its channel disconnects): a plugin
                // scribbling on its ring's semaphore can take one wake-up's post back
                // just as the thread goes to sleep, never every one of them. An honest
                // plugin's session ends at the first.
                let _ = tokio::task::spawn_blocking(move || {
                    while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                        ended.recv_timeout(RESTOP)
                    {
                        stop.stop();
                    }
                    thread.join()
                })
                .await;
            }
        })
    }
}
