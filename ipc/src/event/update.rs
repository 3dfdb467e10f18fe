//! What a watcher reports: an incremental change or its full list of up nodes.
//!
//! Watchers of the first kind see changes ("node3 went down"); watchers of the second
//! kind only see the whole picture now and then (a directory listing, an API that
//! returns every instance). An [`Update`] carries either; the host's [`super::Book`] for
//! the watcher turns both into the same stream of real changes.

use bincode::{Decode, Encode};

use super::{Event, NodeStatus};

/// One report of a watcher.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum Update {
    /// These nodes changed; nodes not named are as they were.
    Incremental(Event),
    /// These are all the nodes up now; nodes not named are down.
    Full(Event),
}

impl Update {
    /// Folds a later update into this one so that applying the result to a book gives
    /// the same state as applying both in order.
    ///
    /// Anything followed by a full list is that full list. A full list followed by
    /// changes is the full list with the changes applied (up nodes added or replaced,
    /// down nodes removed). Changes followed by changes merge, latest per node winning.
    pub fn merge(&mut self, later: Update) {
        match (self, later) {
            (this, later @ Update::Full(_)) => *this = later,
            (Update::Incremental(ev), Update::Incremental(later)) => ev.merge(later),
            (Update::Full(list), Update::Incremental(changes)) => {
                for node in changes {
                    match node.status {
                        NodeStatus::Up => {
                            list.add_node(node);
                        }
                        NodeStatus::Down => {
                            list.remove(&node.name);
                        }
                    }
                }
            }
        }
    }

    /// The nodes the update names.
    pub fn event(&self) -> &Event {
        match self {
            Update::Incremental(ev) | Update::Full(ev) => ev,
        }
    }

    /// Whether this is a full list.
    pub fn is_full(&self) -> bool {
        matches!(self, Update::Full(_))
    }
}

impl super::Book {
    /// Applies an update of either kind and returns the real changes, if any.
    pub fn apply(&mut self, update: Update) -> Option<Event> {
        match update {
            Update::Incremental(ev) => self.update_inc(ev),
            Update::Full(list) => self.update_full(list),
        }
    }
}
