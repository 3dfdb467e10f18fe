//! A coalescing backlog of encoded changes: what waits for room in a ring.
//!
//! Both ends of the pipeline keep one: a watcher's SDK while the host is slower than
//! the watcher, and the host for each reactor slower than the events. Changes wait
//! there one entry per node (the latest change of a node replaces the earlier one) and
//! must cost little more than sending would have: a watcher reporting a million fresh
//! nodes spends most of its time here while the host catches up, and so does the host
//! for a reactor that cannot keep up.
//!
//! So the backlog is a log of encoded nodes plus an index, not a sorted map of decoded
//! nodes:
//! - each change is appended to `log` as an entry `[alive: u8][len: u32 LE][node]`,
//!   the node encoded as on the wire (the host appends the bytes it received);
//! - `index` (the book's open-addressed table, `slots`: 32 bits of the name's hash and
//!   the entry's offset, compared by the name stored in the entry) finds the pending
//!   entry of a node; a newer change marks it dead and appends itself, so the log stays
//!   in the order changes came in. A fresh node's slot is a cache miss in a large
//!   backlog, so it is prefetched before the node is encoded;
//! - the sender takes the oldest live entries as ready-made records ([`piece`]), each
//!   record a run of names in increasing order (the form the host reads without
//!   decoding, and the form a reactor decodes by appending), and [`consume`]s what the
//!   ring took. Index slots that point before the consumed head are stale and treated
//!   as absent;
//! - the log is reset when all of it went; its handed-over front is dropped when it
//!   outweighs the rest, and the log is rewritten with only its live entries when
//!   replaced ones outweigh them (each past [`COMPACT_AFTER`]): memory stays within a
//!   few times the pending nodes' size at an amortised constant cost per change,
//!   however often a node flaps while nothing can be sent.
//!
//! [`piece`]: Pending::piece
//! [`consume`]: Pending::consume

use std::hash::BuildHasher;

use foldhash::fast::RandomState;

use super::slots::{Found, Slot, Slots};
use super::wire::{node_name, varint, FULL_PART, INCREMENTAL};
use super::{Event, NodeInfo};
use crate::codec;
use crate::records::Records;

/// The header of an entry: the alive flag and the node's length.
const HEADER: usize = 1 + 4;

/// Garbage of either kind (handed-over entries at the front, replaced ones among the
/// pending) the log may hold before that kind is dropped, if it also outweighs the
/// live entries.
pub const COMPACT_AFTER: usize = 1 << 20;

/// The size past which a record of a piece takes no more nodes (well under the ring's
/// record limit; a single larger node still goes, alone).
const RECORD_BYTES: usize = 64 << 10;

/// What the records of a piece are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Framing {
    /// Incremental `Update`s: what a watcher sends the host.
    #[default]
    Update,
    /// `Event`s: what the host sends a reactor.
    Event,
    /// `Update::FullPart`s: the pieces of a full list a watcher sends in pieces.
    FullPart,
}

/// Changes waiting for room in a ring, latest per node.
#[derive(Default)]
pub struct Pending {
    framing: Framing,
    log: Vec<u8>,
    /// Where the oldest entry not yet handed over starts.
    head: usize,
    /// Each node's hash (kept, so that growing never reads the log) and entry offset.
    index: Slots,
    hasher: RandomState,
    /// How many entries are alive.
    live: usize,
    /// The bytes of the live entries, headers included.
    live_bytes: usize,
}

/// Records ready for the ring, from [`Pending::piece`].
#[derive(Debug, Default)]
pub struct Piece {
    /// The records, encoded.
    pub records: Records,
    /// Where the log's head goes once record `i` and those before it were taken.
    ends: Vec<usize>,
}

impl Pending {
    /// No changes pending; the records of its pieces framed as `framing`.
    pub fn new(framing: Framing) -> Self {
        Pending {
            framing,
            ..Pending::default()
        }
    }

    /// How many nodes have a change pending.
    pub fn len(&self) -> usize {
        self.live
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// The bytes the log and the index hold now.
    pub fn footprint(&self) -> usize {
        self.log.capacity() + self.index.capacity() * std::mem::size_of::<Slot>()
    }

    /// Forgets every pending change (a full list superseded them).
    pub fn clear(&mut self) {
        self.log.clear();
        self.index.clear();
        self.head = 0;
        self.live = 0;
        self.live_bytes = 0;
    }

    /// Adds the changes of `event`, each replacing a pending change of the same node.
    pub fn push_event(&mut self, event: &Event) {
        for node in event.nodes() {
            self.push(node);
        }
    }

    /// Adds a node's change, replacing a pending change of the same node.
    pub fn push(&mut self, node: &NodeInfo) {
        let hash = self.prefetch(node.name.as_bytes());
        // Encoding into a Vec cannot fail.
        let offset = self.append(|log| {
            let _ = codec::encode_into(node, log, "node");
        });
        self.index_entry(offset, node.name.as_bytes(), hash);
    }

    /// Adds the change of one encoded node (as it lies in an encoded event, in the
    /// canonical form of [`super::wire`]), replacing a pending change of the same
    /// node. Bytes that do not even start with a name are ignored.
    pub fn push_encoded(&mut self, node: &[u8]) {
        let Some(name) = node_name(node) else {
            return;
        };
        let hash = self.prefetch(name);
        let offset = self.append(|log| log.extend_from_slice(node));
        self.index_entry(offset, name, hash);
    }

    /// Appends a live entry whose node `write` puts straight into the log, behind the
    /// header; returns where the entry starts.
    fn append(&mut self, write: impl FnOnce(&mut Vec<u8>)) -> usize {
        let offset = self.log.len();
        self.log.extend_from_slice(&[1; HEADER]);
        write(&mut self.log);
        let len = (self.log.len() - offset - HEADER) as u32;
        self.log[offset + 1..offset + HEADER].copy_from_slice(&len.to_le_bytes());
        offset
    }

    /// The stored hash of `name`, its home slot prefetched.
    fn prefetch(&self, name: &[u8]) -> u32 {
        let hash = Slots::stored(self.hasher.hash_one(name));
        self.index.prefetch(hash);
        hash
    }

    /// Indexes the entry just appended at `offset` for the node `name`, marking the
    /// node's earlier pending entry dead.
    fn index_entry(&mut self, offset: usize, name: &[u8], hash: u32) {
        self.live += 1;
        self.live_bytes += self.log.len() - offset;
        let log = &self.log;
        let found = self
            .index
            .find_or_make_room(hash, |s| entry_name(log, offset_of(s)) == Some(name));
        match found {
            Found::At(i) => {
                let earlier = offset_of(self.index.get(i));
                // An entry before the head was handed over already: nothing to replace.
                if earlier >= self.head {
                    self.log[earlier] = 0;
                    self.live -= 1;
                    self.live_bytes -= HEADER + entry_at(&self.log, earlier).1.len();
                }
                *self.index.get_mut(i) = slot(hash, offset);
            }
            Found::Vacant(i) => self.index.insert_at(i, slot(hash, offset)),
        }
        self.compact_if_wasteful();
    }

    /// Up to `max_nodes` of the oldest pending changes as records, in the order they
    /// came: each record a run of nodes whose names increase, of at most
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
                    piece.push_record(self.framing, &self.log, &run, at);
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
            piece.push_record(self.framing, &self.log, &run, at);
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
                self.live_bytes -= HEADER + node.len();
            }
            at += HEADER + node.len();
        }
        self.head = end;
        if self.head == self.log.len() {
            self.clear();
        } else {
            self.compact_if_wasteful();
        }
    }

    /// Drops garbage once it outweighs what is pending: handed-over entries at the
    /// front by moving the rest down (a copy, no hashing), replaced entries among the
    /// pending ones by rewriting the log.
    fn compact_if_wasteful(&mut self) {
        let rest = self.log.len() - self.head;
        let dead = rest - self.live_bytes;
        if dead > COMPACT_AFTER && dead > self.live_bytes {
            self.compact();
        } else if self.head > COMPACT_AFTER && self.head > rest {
            self.drop_consumed();
        }
    }

    /// Drops the handed-over part of the log and the index slots that pointed into it.
    fn drop_consumed(&mut self) {
        let head = self.head;
        self.log.drain(..head);
        self.index.retain(|s| {
            let at = offset_of(s);
            if at < head {
                return false;
            }
            *s = slot(s.hash, at - head);
            true
        });
        self.head = 0;
    }

    /// Keeps the live entries only (in order), their slots moved with them.
    fn compact(&mut self) {
        let old = std::mem::replace(&mut self.log, Vec::with_capacity(2 * self.live_bytes));
        // The live entries' slots move with them; the others go.
        let head = self.head;
        let mut moved = Vec::with_capacity(self.live);
        let mut at = head;
        while at < old.len() {
            let (alive, node) = entry_at(&old, at);
            let next = at + HEADER + node.len();
            if alive {
                moved.push((at, self.log.len()));
                self.log.extend_from_slice(&old[at..next]);
            }
            at = next;
        }
        // `moved` is in log order: a slot's new offset is found by binary search.
        self.index.retain(|s| {
            let at = offset_of(s);
            match moved.binary_search_by_key(&at, |&(from, _)| from) {
                Ok(k) if at >= head => {
                    *s = slot(s.hash, moved[k].1);
                    true
                }
                _ => false,
            }
        });
        self.head = 0;
    }
}

impl Piece {
    /// Appends a record of the nodes at `ranges`; the head moves to `end` once it went.
    fn push_record(&mut self, framing: Framing, log: &[u8], ranges: &[(usize, usize)], end: usize) {
        let (count, n) = varint(ranges.len() as u64);
        self.records.write_with(|record| {
            match framing {
                Framing::Update => record.push(INCREMENTAL),
                Framing::FullPart => record.push(FULL_PART),
                Framing::Event => {}
            }
            record.extend_from_slice(&count[..n]);
            for &(start, stop) in ranges {
                record.extend_from_slice(&log[start..stop]);
            }
        });
        self.ends.push(end);
    }

    /// Whether the piece carries nothing.
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

/// The slot of an entry: its stored hash, and its offset split over the slot's two
/// 32-bit fields.
fn slot(hash: u32, offset: usize) -> Slot {
    Slot {
        hash,
        chunk: (offset >> 32) as u32,
        offset: offset as u32,
    }
}

/// The log offset a slot points at.
fn offset_of(slot: &Slot) -> usize {
    (slot.chunk as usize) << 32 | slot.offset as usize
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use crate::event::{NodeStatus, Update};
    use proptest::prelude::*;

    use super::*;

    fn node(name: &str, port: u16) -> NodeInfo {
        NodeInfo::new(name, NodeStatus::Up, "10.0.0.1", port)
    }

    /// Decodes the records of a piece into the nodes they carry, in order.
    fn nodes_of(piece: &Piece, records: usize) -> Vec<NodeInfo> {
        piece
            .records
            .iter()
            .take(records)
            .flat_map(|r| {
                let update: Update = codec::decode(r, "update").unwrap();
                assert!(
                    crate::event::wire::WireIncremental::parse(r).is_some(),
                    "canonical"
                );
                update.event().nodes().cloned().collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn a_newer_change_replaces_the_pending_one_and_keeps_arrival_order() {
        let mut pending = Pending::new(Framing::Update);
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
        let mut pending = Pending::new(Framing::Update);
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
        let mut pending = Pending::new(Framing::Update);
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

    #[test]
    fn event_framing_makes_records_a_reactor_decodes_from_the_bytes_received() {
        let mut pending = Pending::new(Framing::Event);
        let change: Event = [node("a", 1), node("b", 1)].into_iter().collect();
        let bytes = codec::encode(&change, "event").unwrap();
        let wire = crate::event::wire::WireIncremental::parse_event(&bytes).unwrap();
        for n in wire.nodes() {
            pending.push_encoded(n.bytes);
        }
        pending.push(&node("a", 2));
        let piece = pending.piece(10);
        // "b" then "a": two runs.
        assert_eq!(piece.records.len(), 2);
        let events: Vec<Event> = piece
            .records
            .iter()
            .map(|r| codec::decode(r, "event").unwrap())
            .collect();
        assert_eq!(events[0], [node("b", 1)].into_iter().collect());
        assert_eq!(events[1], [node("a", 2)].into_iter().collect());
        // Not even a name: ignored.
        pending.push_encoded(&[0xff]);
        assert_eq!(pending.len(), 2);
    }

    #[test]
    fn memory_stays_bounded_while_a_node_flaps_and_nothing_goes() {
        let mut pending = Pending::new(Framing::Update);
        for i in 0..200_000u32 {
            pending.push(&node("flapping", (i % 2) as u16));
            pending.push(&node(&format!("steady-{}", i % 100), 1));
        }
        assert_eq!(pending.len(), 101);
        // 400 000 entries of ~20 bytes went in (8 MB); the log keeps the live ones and
        // at most about COMPACT_AFTER of replaced ones.
        assert!(
            pending.footprint() < 4 * COMPACT_AFTER,
            "{} bytes for 101 nodes",
            pending.footprint()
        );
        let piece = pending.piece(1000);
        let names: Vec<NodeInfo> = nodes_of(&piece, piece.records.len());
        assert_eq!(names.len(), 101);
        assert!(names.contains(&node("flapping", 1)));
    }

    #[test]
    fn the_index_of_a_long_stream_stays_the_size_of_what_is_pending() {
        // A sender that stays a little behind for a long time: fresh nodes go in, the
        // ring takes all but the last few, so the log is never wholly consumed (never
        // cleared) and its front is dropped again and again.
        let mut pending = Pending::new(Framing::Update);
        for round in 0..400u32 {
            for i in 0..1000 {
                pending.push(&node(&format!("node-{round}-{i:04}"), 1));
            }
            let piece = pending.piece(995);
            let records = piece.records.len();
            pending.consume(&piece, records);
        }
        // 400 000 nodes (12 MB) passed, 2 000 are pending: the handed-over front and
        // its slots were dropped (kept, they would be 12 MB of log and 2^20 slots).
        assert_eq!(pending.len(), 2000);
        assert!(
            pending.footprint() < 4 * COMPACT_AFTER,
            "{} bytes ({} slots) for {} pending nodes",
            pending.footprint(),
            pending.index.capacity(),
            pending.len()
        );
        // Each pending node is still found: a newer change replaces it.
        pending.push(&node("node-399-0999", 2));
        assert_eq!(pending.len(), 2000);
        let mut went = Vec::new();
        while !pending.is_empty() {
            let piece = pending.piece(100);
            went.extend(nodes_of(&piece, piece.records.len()));
            pending.consume(&piece, piece.records.len());
        }
        assert_eq!(went.len(), 2000);
        assert_eq!(went.last(), Some(&node("node-399-0999", 2)));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Whatever is pushed and however much the ring takes at a time, what goes out,
        /// applied in order, leaves every node at its latest change, and nothing pending
        /// is lost or repeated beyond a node's own newer change.
        #[test]
        fn what_goes_out_ends_at_the_latest_change_of_every_node(
            steps in prop::collection::vec(
                (0u8..40, any::<u16>(), 0usize..4, 1usize..50, any::<bool>()),
                1..300,
            ),
        ) {
            let mut pending = Pending::new(Framing::Update);
            let mut latest: BTreeMap<String, NodeInfo> = BTreeMap::new();
            let mut delivered: BTreeMap<String, NodeInfo> = BTreeMap::new();
            for (name, port, take, max, encoded) in steps {
                // Enough names to cross the compaction threshold now and then.
                // Large nodes through their tags (a name may be 255 bytes at most).
                let n = (0..usize::from(name) % 32).fold(
                    node(&format!("node-{name}"), port.max(1)),
                    |n, t| n.with_meta(format!("k{t:02}"), "x".repeat(1000)),
                );
                latest.insert(n.name.clone(), n.clone());
                if encoded {
                    pending.push_encoded(&codec::encode(&n, "node").unwrap());
                } else {
                    pending.push(&n);
                }
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
