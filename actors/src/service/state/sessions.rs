//! The sessions of a service: watchers starting and ending, reactors attaching and
//! detaching, and the observer (the service's actor) that hears of each.
//!
//! A session is a plugin incarnation's endpoint: a restarted plugin's new session may
//! start before its old one has ended, so a watcher counts its running sessions and a
//! reactor's sink is tagged with its [`Attachment`].

use ipc::event::{Framing, Pending};

use super::{Attachment, Flush, ReactorOutput, ServiceState, SessionChange, SessionObserver};
use crate::service::EventSink;

/// What the service knows of one watcher beside its book.
#[derive(Debug, Default)]
pub(super) struct WatcherLog {
    /// How many sessions of it run now: more than one for a moment when a restarted
    /// plugin's new session starts before the old one's thread has seen its stop.
    pub(super) live: u32,
    /// Sessions started so far.
    pub(super) sessions: u64,
    /// Updates received from it.
    pub(super) updates_in: u64,
    /// Nodes of it dropped as bad.
    pub(super) bad_nodes: u64,
}

impl ServiceState {
    /// Sets who hears of session changes (the service's actor). Called while sessions
    /// hold the state's lock, so it must not block: a send into a mailbox.
    pub fn set_observer(&mut self, observer: SessionObserver) {
        self.observer = Some(observer);
    }

    /// Tells the observer of a session change, if there is one.
    pub(super) fn tell(&self, change: SessionChange) {
        if let Some(observer) = &self.observer {
            observer(change);
        }
    }

    /// A watcher's session (re)starts: a full list it left unfinished in pieces is
    /// dropped (its nodes stay as they were until it reports again).
    pub fn watcher_started(&mut self, watcher: &str) {
        if let Some(book) = self.books.get_mut(watcher) {
            book.discard_staged();
        }
        let log = self.watchers.entry(watcher.to_owned()).or_default();
        log.live += 1;
        log.sessions += 1;
        self.tell(SessionChange::WatcherStarted(watcher.to_owned()));
    }

    /// A watcher's session ended: what it was still to be told of (bad nodes noted
    /// since the last log line) is logged now.
    pub fn watcher_ended(&mut self, watcher: &str) {
        if let Some(log) = self.bad_node_logs.get_mut(watcher) {
            log.flush(&self.name, watcher);
        }
        if let Some(log) = self.watchers.get_mut(watcher) {
            log.live = log.live.saturating_sub(1);
        }
        self.tell(SessionChange::WatcherEnded(watcher.to_owned()));
    }

    /// Connects (or reconnects) a reactor. A reactor that connects after events have
    /// flowed (a restart) first gets the full current state, then the live stream.
    /// Returns the attachment (for [`detach_reactor`](Self::detach_reactor)) and how
    /// far the first flush got.
    pub fn attach_reactor(
        &mut self,
        reactor: &str,
        sink: Box<dyn EventSink>,
    ) -> (Attachment, Flush) {
        let current = self.current();
        self.attachments += 1;
        let attachment = Attachment(self.attachments);
        let out = self
            .reactors
            .entry(reactor.to_owned())
            .or_insert_with(|| ReactorOutput {
                sink: None,
                backlog: Pending::new(Framing::Event),
                attachment,
                sessions: 0,
                pushed: 0,
                deferred: 0,
            });
        // Whatever was pending for the old process is superseded by the current state.
        out.backlog.clear();
        out.backlog.push_event(&current);
        out.sink = Some(sink);
        out.attachment = attachment;
        out.sessions += 1;
        self.tell(SessionChange::ReactorAttached(reactor.to_owned()));
        (attachment, self.flush_reactor(reactor))
    }

    /// A reactor's plugin restarted its endpoint in place (same ring, a fresh endpoint
    /// that knows nothing): the full current state joins its backlog, behind what its
    /// ring holds already, as at a reconnect. Returns whether its flusher has work.
    pub fn resync_reactor(&mut self, reactor: &str) -> bool {
        let current = self.current();
        let Some(out) = self.reactors.get_mut(reactor) else {
            return false;
        };
        out.backlog.push_event(&current);
        out.sink.is_some() && !out.backlog.is_empty()
    }

    /// Disconnects a reactor (its process died or it is closing) if its sink is still
    /// the one of `attachment`; events for it accumulate, coalesced, until it reconnects.
    pub fn detach_reactor(&mut self, reactor: &str, attachment: Attachment) {
        if let Some(out) = self.reactors.get_mut(reactor) {
            if out.attachment == attachment && out.sink.take().is_some() {
                self.tell(SessionChange::ReactorDetached {
                    reactor: reactor.to_owned(),
                    reason: None,
                });
            }
        }
    }

    /// Hands every connected reactor the full current state again, merged into what is
    /// still pending for it (latest per node wins, so a pending down of a node no
    /// watcher reports stays): how the service's actor makes its reactors' view whole
    /// after a panic. Returns the reactors whose flushers should be woken.
    pub fn resend_state(&mut self) -> Vec<String> {
        let current = self.current();
        let mut wake = Vec::new();
        for (name, out) in &mut self.reactors {
            if out.sink.is_some() {
                out.backlog.push_event(&current);
                wake.push(name.clone());
            }
        }
        wake
    }

    /// Removes a reactor for good.
    pub fn remove_reactor(&mut self, reactor: &str) {
        self.reactors.remove(reactor);
    }

    /// Forgets a watcher's book (its instance was removed). Its nodes are not reported
    /// down: a watcher that restarts keeps its nodes until it reports again.
    pub fn remove_watcher(&mut self, watcher: &str) {
        self.books.remove(watcher);
        self.watchers.remove(watcher);
    }
}
