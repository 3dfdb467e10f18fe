//! What a service's state tells of itself: session changes, as they happen, to an
//! observer (the service's actor), and a report of its nodes and counters when asked.
//!
//! Both stay off the event path: an observer hears of a session starting, ending,
//! attaching or detaching (a handful per plugin restart), never of an event, and a
//! report is taken under the service's lock only when someone asks (the admin API, a
//! test), never by the pumps.

use ipc::event::Event;

use super::{ServiceState, ServiceStats};

/// A session of the service started, ended, attached or detached.
#[derive(Debug, Clone, PartialEq, Eq, actix::Message)]
#[rtype(result = "()")]
pub enum SessionChange {
    /// A watcher's session started.
    WatcherStarted(String),
    /// A watcher's session ended.
    WatcherEnded(String),
    /// A reactor's session attached its ring (it then gets the full state).
    ReactorAttached(String),
    /// A reactor's ring was detached: its session ended, or its sink closed (then the
    /// reason says why).
    ReactorDetached {
        /// Which reactor.
        reactor: String,
        /// Why its sink closed, when it closed under the service.
        reason: Option<String>,
    },
}

/// Hears of session changes. Called with the service's lock held, so it must not block
/// (a send into a mailbox).
pub type SessionObserver = Box<dyn Fn(SessionChange) + Send>;

/// A watcher in a [`StateReport`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatcherReport {
    /// Its instance name.
    pub name: String,
    /// Whether a session of it runs now.
    pub attached: bool,
    /// How many sessions it started (more than one: its plugin was restarted).
    pub sessions: u64,
    /// Updates received from it.
    pub updates_in: u64,
    /// Nodes of its updates dropped as bad.
    pub bad_nodes: u64,
    /// How many nodes it reports up now.
    pub nodes_up: usize,
}

/// A reactor in a [`StateReport`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReactorReport {
    /// Its instance name.
    pub name: String,
    /// Whether its ring is attached now.
    pub attached: bool,
    /// How many sessions attached (more than one: its plugin was restarted).
    pub sessions: u64,
    /// Change events pushed straight into its rings.
    pub pushed: u64,
    /// Change events that waited in its backlog because its ring was full.
    pub deferred: u64,
    /// Nodes waiting in its backlog now.
    pub backlog: usize,
    /// Whether it has read everything (a detached reactor counts as drained).
    pub drained: bool,
}

/// A service's state at one moment, from [`ServiceState::report`].
#[derive(Debug, Clone, PartialEq)]
pub struct StateReport {
    /// Every node up now, across all watchers.
    pub nodes: Event,
    /// The service's counters.
    pub stats: ServiceStats,
    /// Every watcher that started a session or sent an update, by name.
    pub watchers: Vec<WatcherReport>,
    /// Every reactor that attached once, by name.
    pub reactors: Vec<ReactorReport>,
}

impl ServiceState {
    /// The nodes, counters and sessions of the service now.
    pub fn report(&self) -> StateReport {
        let watchers = self
            .watchers
            .iter()
            .map(|(name, log)| WatcherReport {
                name: name.clone(),
                attached: log.live > 0,
                sessions: log.sessions,
                updates_in: log.updates_in,
                bad_nodes: log.bad_nodes,
                nodes_up: self.books.get(name).map_or(0, |book| book.len()),
            })
            .collect();
        let reactors = self
            .reactors
            .iter()
            .map(|(name, out)| ReactorReport {
                name: name.clone(),
                attached: out.sink.is_some(),
                sessions: out.sessions,
                pushed: out.pushed,
                deferred: out.deferred,
                backlog: out.backlog.len(),
                drained: self.is_drained(name),
            })
            .collect();
        StateReport {
            nodes: self.current(),
            stats: self.stats,
            watchers,
            reactors,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use ipc::event::{NodeStatus, Update};

    use super::*;

    /// Guards the watcher's `attached` against a late end: a restarted plugin's new
    /// session may start before the old one's thread ends.
    #[test]
    fn a_watcher_stays_attached_while_any_of_its_sessions_runs_and_the_observer_hears_each() {
        let heard = Arc::new(Mutex::new(Vec::new()));
        let mut svc = ServiceState::new("web");
        let log = heard.clone();
        svc.set_observer(Box::new(move |change| log.lock().unwrap().push(change)));
        let update = ipc::codec::encode(
            &Update::Incremental(Event::with_node("a", NodeStatus::Up, "h", 1)),
            "update",
        )
        .unwrap();
        svc.watcher_started("w");
        svc.apply_records("w", [update.as_slice()]);
        svc.watcher_started("w");
        svc.watcher_ended("w");
        let report = svc.report();
        let w = &report.watchers[0];
        assert!(w.attached, "the new session runs: {w:?}");
        assert_eq!((w.sessions, w.updates_in, w.nodes_up), (2, 1, 1));
        svc.watcher_ended("w");
        assert!(!svc.report().watchers[0].attached);
        let started = SessionChange::WatcherStarted("w".into());
        let ended = SessionChange::WatcherEnded("w".into());
        assert_eq!(
            *heard.lock().unwrap(),
            [started.clone(), started, ended.clone(), ended]
        );
        assert_eq!(report.nodes.len(), 1);
    }
}
