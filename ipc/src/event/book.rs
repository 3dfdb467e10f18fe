//! The per-watcher book: which nodes a watcher has reported up, and what really changed.
//!
//! Watchers are free to repeat themselves: a node reported up twice, a full list sent
//! every few seconds. Reactors should hear only real changes. The book remembers the up
//! nodes of one watcher and turns each report into an incremental event that holds just
//! the changes, or nothing.

use std::collections::{HashMap, HashSet};

use super::{Event, NodeInfo, NodeStatus};

/// The up nodes of one watcher, and the filter that turns its reports into real changes.
#[derive(Debug, Clone, Default)]
pub struct Book {
    up: HashMap<String, NodeInfo>,
}

impl Book {
    /// An empty book: no node is up.
    pub fn new() -> Self {
        Book::default()
    }

    /// Applies an incremental event and returns the part of it that changed the book.
    ///
    /// A node reported up that is already up with the same address and tags is dropped;
    /// a node reported down that the book never saw up is dropped too. `None` when
    /// nothing changed.
    pub fn update_inc(&mut self, ev: Event) -> Option<Event> {
        let mut changes = Event::new();
        for node in ev {
            match self.up.get(&node.name) {
                Some(known) if known == &node => continue,
                None if node.status == NodeStatus::Down => continue,
                _ => {}
            }
            if node.is_up() {
                self.up.insert(node.name.clone(), node.clone());
            } else {
                self.up.remove(&node.name);
            }
            changes.add_node(node);
        }
        (!changes.is_empty()).then_some(changes)
    }

    /// Applies a full list (every node up now) and returns the changes it implies.
    ///
    /// New or changed nodes come back up; nodes the book had that the list lacks come back
    /// down. Entries marked down in a full list are ignored: a full list names up nodes
    /// only. `None` when nothing changed.
    pub fn update_full(&mut self, nodes: impl IntoIterator<Item = NodeInfo>) -> Option<Event> {
        let mut changes = Event::new();
        let mut seen = HashSet::new();
        for node in nodes {
            if !node.is_up() {
                continue;
            }
            seen.insert(node.name.clone());
            if self.up.get(&node.name) != Some(&node) {
                self.up.insert(node.name.clone(), node.clone());
                changes.add_node(node);
            }
        }
        let gone: Vec<String> = self
            .up
            .keys()
            .filter(|name| !seen.contains(*name))
            .cloned()
            .collect();
        for name in gone {
            if let Some(mut node) = self.up.remove(&name) {
                node.status = NodeStatus::Down;
                changes.add_node(node);
            }
        }
        (!changes.is_empty()).then_some(changes)
    }

    /// Every node up now, as one event (empty when none is).
    pub fn full(&self) -> Event {
        self.up.values().cloned().collect()
    }

    /// Whether a node is up according to the book.
    pub fn is_up(&self, name: &str) -> bool {
        self.up.contains_key(name)
    }

    /// How many nodes are up.
    pub fn len(&self) -> usize {
        self.up.len()
    }

    /// Whether no node is up.
    pub fn is_empty(&self) -> bool {
        self.up.is_empty()
    }
}
