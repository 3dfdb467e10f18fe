//! What the host checks of a watcher's records before they touch a book.
//!
//! Everything a plugin writes into its ring is untrusted. The SDK already refuses bad
//! nodes at `send`, so what arrives here from a well-behaved plugin passes; a plugin
//! that bypasses the SDK (or is hostile) gets:
//! - a node that breaks a rule of [`NodeInfo::check`](ipc::event::NodeInfo::check)
//!   dropped from its update, counted, and logged (at most once a second per watcher,
//!   with the count since the last line): it never reaches a reactor, the rest of the
//!   update goes on;
//! - a record that does not decode, a stray piece of a full list (a `FullPart` or
//!   `FullEnd` with no list in progress), or a full list in pieces whose pieces grow
//!   past [`MAX_FULL_LIST_BYTES`] before its end, refused as a [`BadRecord`]: the
//!   session ends and the plugin is restarted.
//!
//! A bad node dropped from an incremental update leaves that node as it was; dropped
//! from a full list, it is simply not in the list, so a node of that name that was up
//! goes down.

use std::time::{Duration, Instant};

use ipc::codec::DecodeFrameError;
use ipc::event::{NodeError, Update};

/// The most encoded bytes the pieces of a full list may take before its end: about
/// 2.5 million nodes of 50 bytes (a 30-character name and an IPv4 address), far more
/// than a registry serves one host, and a bound on what a plugin can make the host keep
/// aside together with [`MAX_FULL_LIST_NODES`] (decoded, a node takes about 180 bytes
/// beside its strings, so tiny nodes would otherwise let many millions in).
pub const MAX_FULL_LIST_BYTES: usize = 128 << 20;

/// The most nodes a full list in pieces may hold before its end: with the byte budget,
/// what bounds the decoded pieces (about 0.75 GB at worst).
pub const MAX_FULL_LIST_NODES: usize = 4_000_000;

/// How often bad nodes of one watcher are logged at most.
const BAD_NODE_LOG_EVERY: Duration = Duration::from_secs(1);

/// A watcher's record the host refuses: its session ends.
#[derive(Debug, thiserror::Error)]
pub enum BadRecord {
    /// The record does not decode.
    #[error(transparent)]
    Decode(#[from] DecodeFrameError),
    /// A full list in pieces grew past the limit before its end.
    #[error(
        "a full list sent in pieces grew past {max} bytes or {max_nodes} nodes before its end"
    )]
    FullListTooLarge {
        /// The limit in encoded bytes, [`MAX_FULL_LIST_BYTES`] by default.
        max: usize,
        /// The limit in nodes, [`MAX_FULL_LIST_NODES`] by default.
        max_nodes: usize,
    },
    /// A `FullPart` or `FullEnd` with no full list in progress.
    #[error("a piece of a full list ({what}) with no FullStart before it")]
    StrayPiece {
        /// Which kind of piece.
        what: &'static str,
    },
}

/// Takes the nodes that break a rule out of `update`; returns how many there were and
/// the first one's error.
pub fn drop_bad_nodes(update: &mut Update) -> (u64, Option<NodeError>) {
    let event = update.event_mut();
    let Some(first) = event.nodes().find_map(|node| node.check().err()) else {
        return (0, None);
    };
    // One pass, keeping the good nodes in name order (a removal per bad node would move
    // the rest of a large event each time: quadratic under the service lock).
    let before = event.len();
    *event = std::mem::take(event)
        .into_iter()
        .filter(|node| node.check().is_ok())
        .collect();
    ((before - event.len()) as u64, Some(first))
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

    /// Logs what was noted since the last line (the watcher's session ended).
    pub fn flush(&mut self, service: &str, watcher: &str) {
        if self.unlogged > 0 {
            tracing::warn!(
                %service,
                %watcher,
                dropped = self.unlogged,
                "dropped {} more bad node(s) from the watcher before its session ended",
                self.unlogged
            );
            self.unlogged = 0;
        }
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
