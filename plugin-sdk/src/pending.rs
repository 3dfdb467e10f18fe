//! A watcher's coalescing backlog of changes: what waits for room in the ring.
//!
//! While the host is slower than a watcher, the watcher's changes must wait somewhere,
//! one entry per node (the latest change of a node replaces the earlier one, so the
//! backlog never outgrows the number of nodes), and they must not cost the watcher much
//! more than sending would have: a watcher that reports a million fresh nodes spends
//! most of its time here while the host catches up.
//!
//! So the backlog is a log of encoded nodes plus an index, not a sorted map:
//! - each change is appended to `log` as an entry `[alive: u8][len: u32 LE][node]`,
//!   the node encoded as on the wire;
//! - `index` (a hash table of hashes and offsets into the log, compared by the name
//!   stored in the entry) finds the pending entry of a node; a newer change marks it dead and appends
//!   itself, so the log stays in the order changes came in;
//! - the flusher takes the oldest live entries as ready-made update records ([`piece`]),
//!   each record a run of names in increasing order (the form the host reads without
//!   decoding), and [`consume`]s what the ring took. Index slots that point before
//!   the consumed head are stale and treated as absent; the log is reset when all of it
//!   went, and compacted when the consumed part outweighs the rest.
//!
//! [`piece`]: Pending::piece
//! [`consume`]: Pending::consume

use std::hash::BuildHasher;

use foldhash::fast::RandomState;
use hashbrown::hash_table::{Entry, HashTable};
use ipc::codec;
use ipc::event::wire::{node_name, varint};
use ipc::event::{Event, NodeInfo};

/// The header of an entry: the alive flag and the node's length.
const HEADER: usize = 1 + 4;

/// The variant index of `Update::Incremental`, the first byte of every record.
const INCREMENTAL: u8 = 0;

/// How many consumed bytes the log keeps before compacting (when they outweigh the rest).
const COMPACT_AFTER: usize = 1 << 20;

/// The size past which a record of a piece takes no more nodes (well under the ring's
/// record limit; a single larger node still goes, alone).
const RECORD_BYTES: usize = 64 << 10;

/// Changes waiting for room in the ring, latest per node.
#[derive(Default)]
pub(crate) struct Pending {
    log: Vec<u8>,
    /// Where the oldest entry not yet handed over starts.
    head: usize,
    /// Each node's hash (kept, so that growing never reads the log) and entry offset.
    index: HashTable<(u64, usize)>,
    hasher: RandomState,
    /// How many entries are alive.
    live: usize,
}

/// Update records ready for the ring, from [`Pending::piece`].
#[derive(Debug, Default)]
pub(crate) struct Piece {
    /// Each record, encoded.
    pub records: Vec<Vec<u8>>,
    /// Where the log's head goes once record `i` and those before it were taken.
    ends: Vec<usize>,
}

impl Pending {
    /// No changes pending.
    pub fn new() -> Self {
        Pending::default()
    }

    /// How many nodes have a change pending.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.live
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Forgets every pending change (a full list superseded them).
    pub fn clear(&mut self) {
        self.log.clear();
        self.index.clear();
        self.head = 0;
        self.live = 0;
    }

    /// Adds the changes of `event`, each replacing a pending change of the same node.
    pub fn push_event(&mut self, event: &Event) {
        for node in event.nodes() {
            self.push(node);
        }
    }

    /// Adds a node's change, replacing a pending change of the same node.
    pub fn push(&mut self, node: &NodeInfo) {
        // The node is encoded straight into the log, behind its header.
        let offset = self.log.len();
        self.log.extend_from_slice(&[1; HEADER]);
        // Encoding into a Vec cannot fail.
        let _ = codec::encode_into(node, &mut self.log, "node");
        let len = (self.log.len() - offset - HEADER) as u32;
        self.log[offset + 1..offset + HEADER].copy_from_slice(&len.to_le_bytes());
        self.live += 1;
        let name = node.name.as_bytes();
        let hash = self.hasher.hash_one(name);
        let log = &self.log;
        let entry = self.index.entry(
            hash,
            |&(h, at)| h == hash && entry_name(log, at) == Some(name),
            |&(h, _)| h,
        );
        match entry {
            Entry::Occupied(mut known) => {
                let (_, earlier) = *known.get();
                // An entry before the head was handed over already: nothing to replace.
                if earlier >= self.head {
                    self.log[earlier] = 0;
                    self.live -= 1;
                }
                known.get_mut().1 = offset;
            }
            Entry::Vacant(vacant) => {
                vacant.insert((hash, offset));
            }
        }
    }

    /// Up to `max_nodes` of the oldest pending changes as update records, in the order
    /// they came: each record a run of nodes whose names increase, of at most
    /// `RECORD_BYTES` unless one node alone is larger. Nothing is removed
    /// until [`consume`](Self::consume) says how many records went.
    pub fn piece(&self, max_nodes: usize) -> Piece {
        let mut piece = Piece::default();
        let mut at = self.head;
        let mut nodes = 0;
        // The record being built: its nodes' ranges in the log, the last name.
        let mut run: Vec<(usize, usize)> = Vec::new();
        let mut run_bytes = 0;
        let mut last: Option<&[u8]> = None;
        while at < self.log.len() && nodes < max_nodes {
            let (alive, node) = entry_at(&self.log, at);
            let next = at + HEADER + node.len();
            if alive {
                let name = node_name(node).unwrap_or_default();
                let full = run_bytes + node.len() > RECORD_BYTES;
                if !run.is_empty() && (full || last.is_some_and(|l| l >= name)) {
                    piece.push_record(&self.log, &run, at);
                    run.clear();
                    run_bytes = 0;
                }
                run.push((at + HEADER, next));
                run_bytes += node.len();
                last = Some(name);
                nodes += 1;
            }
            at = next;
        }
        if !run.is_empty() {
            piece.push_record(&self.log, &run, at);
        }
        piece
    }

    /// Drops what the first `records` records of `piece` carried: the ring took them.
    pub fn consume(&mut self, piece: &Piece, records: usize) {
        let Some(&end) = records.checked_sub(1).and_then(|i| piece.ends.get(i)) else {
            return;
        };
        let mut at = self.head;
        while at < end {
            let (alive, node) = entry_at(&self.log, at);
            if alive {
                self.live -= 1;
            }
            at += HEADER + node.len();
        }
        self.head = end;
        if self.head == self.log.len() {
            self.clear();
        } else if self.head > COMPACT_AFTER && self.head > self.log.len() - self.head {
            self.compact();
        }
    }

    /// Drops the consumed part of the log and the index slots that pointed into it.
    fn compact(&mut self) {
        let head = self.head;
        self.log.drain(..head);
        self.index.retain(|(_, at)| {
            if *at < head {
                return false;
            }
            *at -= head;
            true
        });
        self.head = 0;
    }
}

impl Piece {
    /// Appends a record of the nodes at `ranges`; the head moves to `end` once it went.
    fn push_record(&mut self, log: &[u8], ranges: &[(usize, usize)], end: usize) {
        let (count, n) = varint(ranges.len() as u64);
        let size: usize = ranges.iter().map(|(s, e)| e - s).sum();
        let mut record = Vec::with_capacity(1 + n + size);
        record.push(INCREMENTAL);
        record.extend_from_slice(&count[..n]);
        for &(start, stop) in ranges {
            record.extend_from_slice(&log[start..stop]);
        }
        self.records.push(record);
        self.ends.push(end);
    }

    /// Whether the piece carries nothing.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

/// The entry at `at`: whether it is alive, and its node's bytes.
fn entry_at(log: &[u8], at: usize) -> (bool, &[u8]) {
    let len = u32::from_le_bytes([log[at + 1], log[at + 2], log[at + 3], log[at + 4]]) as usize;
    (log[at] == 1, &log[at + HEADER..at + HEADER + len])
}

/// The name of the entry at `at`.
fn entry_name(log: &[u8], at: usize) -> Option<&[u8]> {
    node_name(entry_at(log, at).1)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use ipc::event::{NodeStatus, Update};
    use proptest::prelude::*;

    use super::*;

    fn node(name: &str, port: u16) -> NodeInfo {
        NodeInfo::new(name, NodeStatus::Up, "10.0.0.1", port)
    }

    /// Decodes the records of a piece into the nodes they carry, in order.
    fn nodes_of(piece: &Piece, records: usize) -> Vec<NodeInfo> {
        piece.records[..records]
            .iter()
            .flat_map(|r| {
                let update: Update = codec::decode(r, "update").unwrap();
                assert!(
                    ipc::event::wire::WireIncremental::parse(r).is_some(),
                    "canonical"
                );
                update.event().nodes().cloned().collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn a_newer_change_replaces_the_pending_one_and_keeps_arrival_order() {
        let mut pending = Pending::new();
        pending.push(&node("b", 1));
        pending.push(&node("a", 1));
        pending.push(&node("b", 2));
        assert_eq!(pending.len(), 2);
        let piece = pending.piece(10);
        // "a" then "b": one run of increasing names, so one record.
        assert_eq!(piece.records.len(), 1);
        assert_eq!(nodes_of(&piece, 1), [node("a", 1), node("b", 2)]);
        pending.consume(&piece, 1);
        assert!(pending.is_empty());
        assert!(pending.piece(10).is_empty());
    }

    #[test]
    fn a_piece_is_cut_where_names_stop_increasing_and_at_the_limit() {
        let mut pending = Pending::new();
        for name in ["a", "c", "b", "d", "e"] {
            pending.push(&node(name, 1));
        }
        let piece = pending.piece(4);
        assert_eq!(piece.records.len(), 2, "[a c] [b d]");
        assert_eq!(nodes_of(&piece, 2).len(), 4);
        // The ring took the first record only: b and d stay, e after them.
        pending.consume(&piece, 1);
        assert_eq!(pending.len(), 3);
        let rest = pending.piece(10);
        let names: Vec<String> = nodes_of(&rest, rest.records.len())
            .into_iter()
            .map(|n| n.name)
            .collect();
        assert_eq!(names, ["b", "d", "e"]);
    }

    #[test]
    fn a_change_after_its_node_went_is_pending_again() {
        let mut pending = Pending::new();
        pending.push(&node("a", 1));
        pending.push(&node("b", 1));
        let piece = pending.piece(1);
        pending.consume(&piece, 1); // "a" went
        pending.push(&node("a", 2));
        assert_eq!(pending.len(), 2);
        let rest = pending.piece(10);
        assert_eq!(
            nodes_of(&rest, rest.records.len()),
            [node("b", 1), node("a", 2)]
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Whatever is pushed and however much the ring takes at a time, what goes out,
        /// applied in order, leaves every node at its latest change, and nothing pending
        /// is lost or repeated beyond a node's own newer change.
        #[test]
        fn what_goes_out_ends_at_the_latest_change_of_every_node(
            steps in prop::collection::vec((0u8..40, any::<u16>(), 0usize..4, 1usize..50), 1..300),
        ) {
            let mut pending = Pending::new();
            let mut latest: BTreeMap<String, NodeInfo> = BTreeMap::new();
            let mut delivered: BTreeMap<String, NodeInfo> = BTreeMap::new();
            for (name, port, take, max) in steps {
                // Enough names to cross the compaction threshold now and then.
                let n = node(&format!("node-{name}-{}", "x".repeat(usize::from(name) * 700)), port);
                latest.insert(n.name.clone(), n.clone());
                pending.push(&n);
                let piece = pending.piece(max);
                let went = take.min(piece.records.len());
                for sent in nodes_of(&piece, went) {
                    delivered.insert(sent.name.clone(), sent);
                }
                pending.consume(&piece, went);
                prop_assert!(pending.len() <= latest.len());
            }
            while !pending.is_empty() {
                let piece = pending.piece(7);
                for sent in nodes_of(&piece, piece.records.len()) {
                    delivered.insert(sent.name.clone(), sent);
                }
                pending.consume(&piece, piece.records.len());
            }
            prop_assert_eq!(delivered, latest);
        }
    }
}
