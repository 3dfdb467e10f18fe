//! The registrations an endpoint wants in etcd, shared by the endpoint's thread (which
//! applies events, never waiting for etcd) and its writer (which writes the names
//! marked dirty). A node changed many times before the writer gets to it is written
//! once, as it is last: the coalescing the pipeline asks of a slow sink.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use plugin_sdk::{Event, NodeInfo, NodeStatus};

/// What the writer must do for one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// Register the node (it is up).
    Put(NodeInfo),
    /// Remove the node's key (it is down).
    Delete(String),
}

#[derive(Debug, Default)]
struct State {
    /// Every node up now, by name.
    up: HashMap<String, NodeInfo>,
    /// The names whose key does not match `up` yet.
    dirty: BTreeSet<String>,
    stopped: bool,
}

/// The desired registrations and what is left to write. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    shared: Arc<(Mutex<State>, Condvar)>,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records an event's nodes and wakes the writer.
    pub fn apply(&self, event: &Event) {
        let mut state = self.lock();
        for node in event.nodes() {
            if node.name.contains('/') {
                // `<prefix>a/b` is not a node in the key layout: no watcher would see it.
                tracing::warn!(node = %node.name, "skipped: a node name with '/' has no key");
                continue;
            }
            match node.status {
                NodeStatus::Up => state.up.insert(node.name.clone(), node.clone()),
                NodeStatus::Down => state.up.remove(&node.name),
            };
            state.dirty.insert(node.name.clone());
        }
        drop(state);
        self.shared.1.notify_all();
    }

    /// Tells the writer to finish.
    pub fn stop(&self) {
        self.lock().stopped = true;
        self.shared.1.notify_all();
    }

    /// Whether [`Registry::stop`] was called.
    pub fn is_stopped(&self) -> bool {
        self.lock().stopped
    }

    /// Marks every node up to be written again (after a new lease).
    pub fn mark_all_up(&self) {
        let mut state = self.lock();
        let names: Vec<String> = state.up.keys().cloned().collect();
        state.dirty.extend(names);
    }

    /// Takes at most `max` writes to do, waiting until there is one, `deadline`
    /// passes, or the registry stops (then it returns none).
    pub fn take(&self, max: usize, deadline: Instant) -> Vec<Write> {
        let mut state = self.lock();
        loop {
            if state.stopped {
                return Vec::new();
            }
            if !state.dirty.is_empty() {
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                return Vec::new();
            }
            state = self
                .shared
                .1
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        let mut writes = Vec::new();
        while writes.len() < max {
            let Some(name) = state.dirty.pop_first() else {
                break;
            };
            writes.push(match state.up.get(&name) {
                Some(node) => Write::Put(node.clone()),
                None => Write::Delete(name),
            });
        }
        writes
    }

    /// Marks the nodes of writes that failed dirty again; they are written as they are
    /// by then.
    pub fn retry(&self, writes: Vec<Write>) {
        let mut state = self.lock();
        for write in writes {
            let name = match write {
                Write::Put(node) => node.name,
                Write::Delete(name) => name,
            };
            state.dirty.insert(name);
        }
    }

    /// Waits `timeout` unless the registry stops first; true when stopped.
    pub fn pause(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.lock();
        while !state.stopped {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            state = self
                .shared
                .1
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }

    /// How many names wait to be written.
    pub fn dirty_len(&self) -> usize {
        self.lock().dirty.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_coalesce_latest_per_node() {
        let reg = Registry::default();
        reg.apply(&Event::with_node("a", NodeStatus::Up, "h", 1));
        reg.apply(&Event::with_node("a", NodeStatus::Up, "h", 2));
        reg.apply(&Event::with_node("b", NodeStatus::Up, "h", 3));
        reg.apply(&Event::with_node("b", NodeStatus::Down, "h", 3));
        let writes = reg.take(10, Instant::now());
        assert_eq!(
            writes,
            [
                Write::Put(NodeInfo::new("a", NodeStatus::Up, "h", 2)),
                Write::Delete("b".into())
            ]
        );
        reg.apply(&Event::with_node("x/y", NodeStatus::Up, "h", 1));
        reg.retry(writes);
        reg.mark_all_up();
        assert_eq!(reg.dirty_len(), 2);
        reg.stop();
        assert!(reg
            .take(10, Instant::now() + Duration::from_secs(60))
            .is_empty());
        assert!(reg.pause(Duration::from_secs(60)));
    }
}
