//! Coalescing: what a slow consumer has not taken yet, merged into one event.
//!
//! When a reactor is slower than the events, queueing every event would grow without
//! bound. A backlog instead folds each new event into the pending one, latest entry per
//! node winning. Intermediate states of a node may be skipped, but the state the consumer
//! ends up with is the true final state, and memory is bounded by the number of distinct
//! nodes, not by the number of events.

use super::Event;

/// Events waiting for one consumer, merged as they arrive (latest per node wins).
#[derive(Debug, Clone, Default)]
pub struct Backlog {
    pending: Option<Event>,
    /// Events folded into `pending` since it was last taken, beyond the first.
    coalesced: u64,
}

impl Backlog {
    /// An empty backlog.
    pub fn new() -> Self {
        Backlog::default()
    }

    /// Adds an event; if one is already pending the two are merged.
    pub fn push(&mut self, ev: Event) {
        if ev.is_empty() {
            return;
        }
        match &mut self.pending {
            Some(pending) => {
                pending.merge(ev);
                self.coalesced += 1;
            }
            None => self.pending = Some(ev),
        }
    }

    /// Takes everything pending as one event, leaving the backlog empty.
    pub fn take(&mut self) -> Option<Event> {
        self.coalesced = 0;
        self.pending.take()
    }

    /// Puts an event back in front of what is pending: used when a send failed after
    /// `take`. Anything pushed meanwhile is newer and wins over it.
    pub fn restore(&mut self, mut ev: Event) {
        if let Some(newer) = self.pending.take() {
            ev.merge(newer);
        }
        if !ev.is_empty() {
            self.pending = Some(ev);
        }
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.pending.is_none()
    }

    /// How many distinct nodes are pending.
    pub fn node_count(&self) -> usize {
        self.pending.as_ref().map_or(0, Event::len)
    }

    /// How many events were merged into the pending one since it was last taken.
    pub fn coalesced(&self) -> u64 {
        self.coalesced
    }
}

/// Merges a sequence of events into one (latest per node wins); `None` for no nodes.
pub fn coalesce(events: impl IntoIterator<Item = Event>) -> Option<Event> {
    let mut backlog = Backlog::new();
    for ev in events {
        backlog.push(ev);
    }
    backlog.take()
}
