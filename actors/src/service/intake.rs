//! What the host checks of a watcher's records before they touch a book.
//!
//! Everything a plugin writes into its ring is untrusted. The SDK already refuses bad
//! nodes at `send`, so what arrives here from a well-behaved plugin passes; a plugin
//! that bypasses the SDK (or is hostile) gets:
//! - a node that breaks a rule of [`NodeInfo::check`](ipc::event::NodeInfo::check)
//!   dropped from its update, counted, and logged (at most once a second per watcher,
//!   with the count since the last line): it never reaches a reactor, the rest of the
//!   update goes on;
//! - a record that does not decode, or a full list in pieces that grows past
//!   [`MAX_FULL_LIST_NODES`], refused as a [`BadRecord`]: the session ends and the
//!   plugin is restarted.

use std::time::{Duration, Instant};

use ipc::codec::DecodeFrameError;
use ipc::event::{NodeError, Update};

/// The most nodes a full list sent in pieces may hold before its last piece: far more
/// than any registry serves one host, and a bound on what a plugin can make the host
/// keep aside (a few hundred bytes a node).
pub const MAX_FULL_LIST_NODES: usize = 10_000_000;

/// How often bad nodes of one watcher are logged at most.
const BAD_NODE_LOG_EVERY: Duration = Duration::from_secs(1);

/// A watcher's record the host refuses: its session ends.
#[derive(Debug, thiserror::Error)]
pub enum BadRecord {
    /// The record does not decode.
    #[error(transparent)]
    Decode(#[from] DecodeFrameError),
    /// A full list in pieces grew past the limit before its last piece.
    #[error("a full list sent in pieces holds more than {max} nodes before its last piece")]
    FullListTooLarge {
        /// The limit, [`MAX_FULL_LIST_NODES`].
        max: usize,
    },
}

/// Takes the nodes that break a rule out of `update`; returns how many there were and
/// the first one's error.
pub fn drop_bad_nodes(update: &mut Update) -> (u64, Option<NodeError>) {
    let event = update.event_mut();
    let mut first = None;
    let bad: Vec<String> = event
        .nodes()
        .filter_map(|node| match node.check() {
            Ok(()) => None,
            Err(e) => {
                first.get_or_insert(e);
                Some(node.name.clone())
            }
        })
        .collect();
    for name in &bad {
        event.remove(name);
    }
    (bad.len() as u64, first)
}

/// Logs a watcher's bad nodes at most once every [`BAD_NODE_LOG_EVERY`].
#[derive(Debug, Default)]
pub struct BadNodeLog {
    last: Option<Instant>,
    unlogged: u64,
}

impl BadNodeLog {
    /// Notes `count` bad nodes of `watcher` in `service`, `first` the error of one of
    /// them; logs when the last line is old enough.
    pub fn note(&mut self, service: &str, watcher: &str, count: u64, first: &NodeError) {
        self.unlogged += count;
        let now = Instant::now();
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < BAD_NODE_LOG_EVERY)
        {
            return;
        }
        tracing::warn!(
            %service,
            %watcher,
            dropped = self.unlogged,
            "dropped {} bad node(s) from the watcher (it does not use the SDK's checks?); the first: {first}",
            self.unlogged
        );
        self.last = Some(now);
        self.unlogged = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipc::event::{Event, NodeInfo, NodeStatus};

    #[test]
    fn bad_nodes_leave_the_update_and_the_good_ones_stay() {
        let mut ev = Event::with_node("good", NodeStatus::Up, "h", 1);
        ev.add_node(NodeInfo::new("evil\n(up) forged", NodeStatus::Up, "h", 1));
        ev.add_node(NodeInfo::new("zero", NodeStatus::Up, "h", 0));
        let mut update = Update::Incremental(ev);
        let (count, first) = drop_bad_nodes(&mut update);
        assert_eq!(count, 2);
        assert_eq!(first.unwrap().field, "name");
        assert_eq!(
            update
                .event()
                .nodes()
                .map(|n| n.name.as_str())
                .collect::<Vec<_>>(),
            ["good"]
        );
    }
}
