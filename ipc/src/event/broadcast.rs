//! Broadcast: every event of a service, to every reactor of it, each at its own pace.
//!
//! A service has one stream of changes and several reactors. Each subscriber gets its own
//! [`Backlog`], so a stalled reactor only makes its own backlog coalesce; the others and
//! the watchers never wait for it. A subscriber that joins late (or a reactor that was
//! restarted) starts from the full current state, then follows the live stream.

use super::{Backlog, Event};

/// Identifies one subscriber of a [`Broadcast`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriberId(u64);

/// Fans events out to subscribers, each with a coalescing backlog.
#[derive(Debug, Default)]
pub struct Broadcast {
    subscribers: Vec<(SubscriberId, Backlog)>,
    next_id: u64,
    closed: bool,
}

/// What a subscriber gets when it asks for its events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Everything pending for the subscriber, merged into one event.
    Event(Event),
    /// Nothing pending now; more may come.
    Empty,
    /// Nothing pending and the broadcast is closed: no more events will come.
    Closed,
}

impl Broadcast {
    /// A broadcast with no subscribers.
    pub fn new() -> Self {
        Broadcast::default()
    }

    /// Adds a subscriber whose first delivery is `initial` (the service's current state,
    /// for a reactor that joins late or was restarted), followed by every later event.
    pub fn subscribe(&mut self, initial: Option<Event>) -> SubscriberId {
        let id = SubscriberId(self.next_id);
        self.next_id += 1;
        let mut backlog = Backlog::new();
        if let Some(ev) = initial {
            backlog.push(ev);
        }
        self.subscribers.push((id, backlog));
        id
    }

    /// Removes a subscriber and returns what it had not taken yet.
    pub fn unsubscribe(&mut self, id: SubscriberId) -> Option<Event> {
        let index = self.subscribers.iter().position(|(sid, _)| *sid == id)?;
        self.subscribers.swap_remove(index).1.take()
    }

    /// Hands an event to every subscriber's backlog. Ignored once the broadcast is closed.
    pub fn publish(&mut self, ev: &Event) {
        if self.closed || ev.is_empty() {
            return;
        }
        for (_, backlog) in &mut self.subscribers {
            backlog.push(ev.clone());
        }
    }

    /// Takes everything pending for one subscriber. An unknown id is treated as closed.
    pub fn take(&mut self, id: SubscriberId) -> Delivery {
        let Some((_, backlog)) = self.subscribers.iter_mut().find(|(sid, _)| *sid == id) else {
            return Delivery::Closed;
        };
        match backlog.take() {
            Some(ev) => Delivery::Event(ev),
            None if self.closed => Delivery::Closed,
            None => Delivery::Empty,
        }
    }

    /// Gives back an event a subscriber could not deliver; newer events still win.
    pub fn restore(&mut self, id: SubscriberId, ev: Event) {
        if let Some((_, backlog)) = self.subscribers.iter_mut().find(|(sid, _)| *sid == id) {
            backlog.restore(ev);
        }
    }

    /// Closes the stream: no new events are accepted; subscribers still drain what is
    /// pending, then see [`Delivery::Closed`].
    pub fn close(&mut self) {
        self.closed = true;
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The number of subscribers.
    pub fn len(&self) -> usize {
        self.subscribers.len()
    }

    /// Whether there are no subscribers.
    pub fn is_empty(&self) -> bool {
        self.subscribers.is_empty()
    }
}
