//! The changes not yet delivered, coalesced: the latest state per node.
//!
//! The endpoint's thread adds each event as it arrives and never waits for the network;
//! the delivery task takes batches out, and puts a batch that failed back *under* what
//! arrived meanwhile (a newer state of a node wins over the one that failed). So however
//! long the receiver is away, this holds at most one entry per node, and what it
//! eventually receives is the latest state of every node.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use plugin_sdk::{Event, NodeInfo};
use tokio::sync::Notify;

/// Shared by the endpoint's thread and the delivery task.
#[derive(Debug, Default)]
pub struct Pending {
    state: Mutex<State>,
    /// Woken when changes arrive or the endpoint closes.
    changed: Notify,
    /// Woken once when the endpoint closes.
    closing: Notify,
}

#[derive(Debug, Default)]
struct State {
    nodes: BTreeMap<String, NodeInfo>,
    /// Nodes taken by a request that has not ended yet.
    in_flight: usize,
    closed: bool,
}

impl Pending {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A map and a flag: a panic elsewhere cannot leave them inconsistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records an event's changes (latest per node wins).
    pub fn add(&self, event: Event) {
        let mut state = self.lock();
        for node in event {
            state.nodes.insert(node.name.clone(), node);
        }
        drop(state);
        self.changed.notify_one();
    }

    /// Takes at most `max` changes, in name order; `None` when there are none.
    pub fn take(&self, max: usize) -> Option<Vec<NodeInfo>> {
        let mut state = self.lock();
        if state.nodes.is_empty() {
            return None;
        }
        let batch = if state.nodes.len() <= max {
            std::mem::take(&mut state.nodes).into_values().collect()
        } else {
            let mut batch = Vec::with_capacity(max);
            while batch.len() < max {
                match state.nodes.pop_first() {
                    Some((_, node)) => batch.push(node),
                    None => break,
                }
            }
            batch
        };
        state.in_flight = batch.len();
        Some(batch)
    }

    /// Marks the batch taken last as done (delivered or given up on).
    pub fn done(&self) {
        self.lock().in_flight = 0;
    }

    /// Puts back a batch that was not delivered, under any newer change of its nodes.
    pub fn put_back(&self, batch: Vec<NodeInfo>) {
        let mut state = self.lock();
        state.in_flight = 0;
        for node in batch {
            state.nodes.entry(node.name.clone()).or_insert(node);
        }
    }

    /// How many nodes have changes waiting.
    pub fn len(&self) -> usize {
        self.lock().nodes.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many nodes' changes are not delivered yet: waiting, or in a request that has
    /// not ended.
    pub fn undelivered(&self) -> usize {
        let state = self.lock();
        state.nodes.len() + state.in_flight
    }

    /// Marks the endpoint closed: deliver what is left, then stop.
    pub fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_one();
        // Every waiter: the delivery's outer select and a retry's wait both wait here.
        self.closing.notify_waiters();
    }

    /// Whether the endpoint has closed.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Waits until changes arrive or the endpoint closes (returns at once if a wake-up
    /// came since the last wait).
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    /// Waits until the endpoint closes.
    pub async fn closed(&self) {
        loop {
            let notified = self.closing.notified();
            tokio::pin!(notified);
            // Registered before the flag is read: a close in between is not missed.
            notified.as_mut().enable();
            if self.is_closed() {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plugin_sdk::NodeStatus::{Down, Up};

    #[test]
    fn latest_per_node_and_a_failed_batch_goes_back_under_newer_changes() {
        let p = Pending::default();
        p.add(Event::with_node("a", Up, "h", 1));
        p.add(Event::with_node("b", Up, "h", 2));
        p.add(Event::with_node("a", Down, "h", 1));
        let batch = p.take(10).unwrap();
        assert_eq!(batch.len(), 2);
        assert_eq!(batch[0].status, Down);
        assert!(p.take(10).is_none());
        assert_eq!(p.undelivered(), 2);
        p.add(Event::with_node("b", Down, "h", 2));
        p.put_back(batch);
        let again = p.take(1).unwrap();
        assert_eq!((again[0].name.as_str(), again[0].status), ("a", Down));
        let again = p.take(1).unwrap();
        assert_eq!((again[0].name.as_str(), again[0].status), ("b", Down));
        assert!(p.is_empty());
        p.done();
        assert_eq!(p.undelivered(), 0);
    }
}
