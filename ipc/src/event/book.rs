//! The per-watcher book: which nodes a watcher has reported up, and what really changed.
//!
//! Watchers are free to repeat themselves: a node reported up twice, a full list sent
//! every few seconds. Reactors should hear only real changes. The book remembers the up
//! nodes of one watcher and turns each report into an incremental event that holds just
//! the changes, or nothing.

use std::borrow::Borrow;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};

use foldhash::fast::RandomState;

use super::{Event, NodeInfo, NodeStatus};

/// A node in the book, hashed and compared by name only, so that the set can be looked
/// up by `&str` and a node is stored once (no separate key string). Boxed: the table
/// then holds pointers, and growing it past a million nodes moves and zeroes a few
/// megabytes instead of a few hundred (the page faults of which once took half the
/// pump's time).
#[derive(Debug, Clone)]
struct ByName(Box<NodeInfo>);

impl PartialEq for ByName {
    fn eq(&self, other: &Self) -> bool {
        self.0.name == other.0.name
    }
}

impl Eq for ByName {}

impl Hash for ByName {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.name.as_str().hash(state);
    }
}

impl Borrow<str> for ByName {
    fn borrow(&self) -> &str {
        &self.0.name
    }
}

/// The up nodes of one watcher, and the filter that turns its reports into real changes.
///
/// The set uses foldhash (randomly seeded per book): the book is on every event's path,
/// and SipHash alone took a seventh of the pipeline's time.
#[derive(Debug, Clone, Default)]
pub struct Book {
    up: HashSet<ByName, RandomState>,
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
            match self.up.get(node.name.as_str()) {
                Some(known) if *known.0 == node => continue,
                None if node.status == NodeStatus::Down => continue,
                _ => {}
            }
            if node.is_up() {
                self.up.replace(ByName(Box::new(node.clone())));
            } else {
                self.up.remove(node.name.as_str());
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
            if self.up.get(node.name.as_str()).map(|k| &*k.0) != Some(&node) {
                self.up.replace(ByName(Box::new(node.clone())));
                changes.add_node(node);
            }
        }
        let gone: Vec<String> = self
            .up
            .iter()
            .filter(|k| !seen.contains(&k.0.name))
            .map(|k| k.0.name.clone())
            .collect();
        for name in gone {
            if let Some(ByName(mut node)) = self.up.take(name.as_str()) {
                node.status = NodeStatus::Down;
                changes.add_node(*node);
            }
        }
        (!changes.is_empty()).then_some(changes)
    }

    /// Every node up now, as one event (empty when none is).
    pub fn full(&self) -> Event {
        self.up.iter().map(|k| (*k.0).clone()).collect()
    }

    /// Whether a node is up according to the book.
    pub fn is_up(&self, name: &str) -> bool {
        self.up.contains(name)
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
