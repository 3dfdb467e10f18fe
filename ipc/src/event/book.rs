//! The per-watcher book: which nodes a watcher has reported up, and what really changed.
//!
//! Watchers are free to repeat themselves: a node reported up twice, a full list sent
//! every few seconds. Reactors should hear only real changes. The book remembers the up
//! nodes of one watcher and turns each report into an incremental event that holds just
//! the changes, or nothing.
//!
//! # Layout
//!
//! The book holds every node a watcher reported, millions for a large registry, and a
//! book of fresh nodes once spent most of its time in page faults while it grew. So it
//! is kept compact:
//! - each up node is an *entry* in an arena of 1 MiB chunks, written back to back: its
//!   length, its name's length and name, then the address part (`host`, `port`, `meta`)
//!   encoded with bincode; about 24 bytes for a short name and host, no allocation of
//!   its own;
//! - an open-addressed table of 12-byte slots (32 bits of the name's hash, chunk,
//!   offset; see `slots`) finds an entry by name. The slot keeps the hash, so growing
//!   the table never reads the entries again (with millions of them, every read was a
//!   cache miss), and the pump can [`Book::prefetch`] the slot of a record it will
//!   apply next;
//! - an entry replaced or removed leaves garbage in its chunk; when garbage outweighs
//!   the live entries the arena is rewritten, so memory stays within twice the live
//!   size at an amortised constant cost per change.

use std::collections::{BTreeMap, HashSet};
use std::hash::BuildHasher;

use bincode::config::{self, Configuration};
use foldhash::fast::RandomState;

use super::slots::{Found, Slot, Slots};
use super::wire::{first_name, varint, NodeSpan, WireIncremental};
use super::{Event, NodeInfo, NodeStatus};

/// The encoding of an entry's address part (standard bincode, as on the wire).
const ENTRY_CONFIG: Configuration = config::standard();

/// The usual size of an arena chunk (an entry larger than this gets a chunk of its own).
const CHUNK: usize = 1 << 20;

/// The entries, back to back in chunks.
#[derive(Debug, Clone, Default)]
struct Arena {
    chunks: Vec<Vec<u8>>,
    /// Bytes of entries a slot points at.
    live: usize,
    /// Bytes of entries replaced or removed since the arena was last rewritten.
    garbage: usize,
}

impl Arena {
    /// Appends an entry (length prefix included); returns where it went.
    fn push(&mut self, entry: &[u8]) -> (u32, u32) {
        let (chunk, bytes) = self.room(entry.len());
        let offset = bytes.len();
        bytes.extend_from_slice(entry);
        (chunk, offset as u32)
    }

    /// Writes the entry of the node `name` at the encoded `address` (see the module
    /// docs) straight into the arena; returns where it went.
    fn push_entry(&mut self, name: &[u8], address: &[u8]) -> (u32, u32) {
        let short = u8::try_from(name.len()).ok().filter(|&len| len < u8::MAX);
        let len = if short.is_some() { 1 } else { 5 } + name.len() + address.len();
        let (chunk, bytes) = self.room(4 + len);
        let offset = bytes.len();
        bytes.extend_from_slice(&(len as u32).to_le_bytes());
        match short {
            Some(short) => bytes.push(short),
            None => {
                bytes.push(u8::MAX);
                bytes.extend_from_slice(&(name.len() as u32).to_le_bytes());
            }
        }
        bytes.extend_from_slice(name);
        bytes.extend_from_slice(address);
        (chunk, offset as u32)
    }

    /// The chunk to append an entry of `len` bytes to (a new one when the last is
    /// full), counted as live.
    fn room(&mut self, len: usize) -> (u32, &mut Vec<u8>) {
        let fits = self
            .chunks
            .last()
            .is_some_and(|c| c.capacity() - c.len() >= len);
        if !fits {
            let mut chunk = Vec::with_capacity(len.max(CHUNK));
            // A book past its first chunk is growing fast: its next chunk is mapped in
            // one call rather than a fault per page (a small book keeps touching only
            // what it writes).
            if !self.chunks.is_empty() {
                let _ = crate::sys::populate(&mut chunk);
            }
            self.chunks.push(chunk);
        }
        self.live += len;
        let chunk = self.chunks.len() - 1;
        (chunk as u32, &mut self.chunks[chunk])
    }

    /// The whole entry at `slot`, length prefix included.
    fn entry(&self, slot: &Slot) -> &[u8] {
        let bytes = &self.chunks[slot.chunk as usize][slot.offset as usize..];
        let len = u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes")) as usize;
        &bytes[..4 + len]
    }

    /// The name and the address part of the entry at `slot`.
    fn parts(&self, slot: &Slot) -> (&[u8], &[u8]) {
        let rest = &self.entry(slot)[4..];
        let (len, rest) = match rest.split_first() {
            Some((&u8::MAX, rest)) => {
                let (len, rest) = rest.split_at(4);
                let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
                (len, rest)
            }
            Some((&len, rest)) => (len as usize, rest),
            None => (0, rest),
        };
        rest.split_at(len)
    }

    fn name(&self, slot: &Slot) -> &[u8] {
        self.parts(slot).0
    }

    /// The entry at `slot` no longer counts.
    fn discard(&mut self, slot: &Slot) {
        let len = self.entry(slot).len();
        self.live -= len;
        self.garbage += len;
    }

    /// The node of the entry at `slot`, up. Entries are only made from valid nodes, so
    /// decoding cannot fail; should it anyway, the node keeps its name and loses its
    /// address rather than take the host down.
    fn node(&self, slot: &Slot) -> NodeInfo {
        let (name, address) = self.parts(slot);
        let (host, port, meta) = bincode::decode_from_slice(address, ENTRY_CONFIG)
            .map(|(a, _)| a)
            .unwrap_or_default();
        NodeInfo {
            name: String::from_utf8_lossy(name).into_owned(),
            status: NodeStatus::Up,
            host,
            port,
            meta,
        }
    }
}

/// The address part of a node, as an entry stores it.
type Address<'a> = (&'a String, u16, &'a BTreeMap<String, String>);

/// Appends the address part of `node` to `out`.
fn encode_address(node: &NodeInfo, out: &mut Vec<u8>) {
    let address: Address<'_> = (&node.host, node.port, &node.meta);
    // Encoding into a Vec has no size limit and these types always encode.
    let _ = bincode::encode_into_std_write(address, out, ENTRY_CONFIG);
}

/// The up nodes of one watcher, and the filter that turns its reports into real changes.
///
/// Names are hashed with foldhash (randomly seeded per book): the book is on every
/// event's path, and SipHash alone took a seventh of the pipeline's time. See the module
/// docs for the layout.
#[derive(Clone, Default)]
pub struct Book {
    table: Slots,
    arena: Arena,
    hasher: RandomState,
    /// The address part of the node at hand.
    address: Vec<u8>,
    /// Where the nodes of the record at hand lie.
    spans: Vec<NodeSpan>,
    /// The pieces so far of a full list that goes over in pieces (see
    /// [`super::update`]), later entries replacing earlier ones.
    staged: Option<Event>,
    /// The encoded size of those pieces, as the caller reports it.
    staged_bytes: usize,
}

impl std::fmt::Debug for Book {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set()
            .entries(self.table.iter().map(|s| self.arena.node(s)))
            .finish()
    }
}

impl Book {
    /// How far ahead of the node it applies a caller should [`prefetch`](Self::prefetch)
    /// (records ahead, for the pump; [`apply_encoded`](Self::apply_encoded) does the
    /// same with the nodes of one record): enough to overlap a few cache misses, few
    /// enough that the lines are still there.
    pub const PREFETCH_AHEAD: usize = 8;

    /// An empty book: no node is up.
    pub fn new() -> Self {
        Book::default()
    }

    fn hash(&self, name: &[u8]) -> u32 {
        Slots::stored(self.hasher.hash_one(name))
    }

    /// Starts loading the table slot where the first node of an encoded update would
    /// be, so that applying it later finds the slot in the cache: the pump calls this
    /// a few records ahead of the one it applies (a fresh node's slot is a cache miss
    /// otherwise, most of the cost of a large book).
    pub fn prefetch(&self, record: &[u8]) {
        if let Some(name) = first_name(record) {
            self.prefetch_name(name);
        }
    }

    fn prefetch_name(&self, name: &[u8]) {
        self.table.prefetch(self.hash(name));
    }

    /// Records `node` as up; `false` when it already was, with the same address and tags.
    fn set_up(&mut self, node: &NodeInfo) -> bool {
        let mut address = std::mem::take(&mut self.address);
        address.clear();
        encode_address(node, &mut address);
        let name = node.name.as_bytes();
        let changed = self.set_up_encoded(name, self.hash(name), &address);
        self.address = address;
        changed
    }

    /// Records the node `name` (of stored hash `hash`) as up at the encoded `address`;
    /// `false` when it already was, with the same address and tags.
    fn set_up_encoded(&mut self, name: &[u8], hash: u32, address: &[u8]) -> bool {
        let arena = &self.arena;
        match self
            .table
            .find_or_make_room(hash, |s| arena.name(s) == name)
        {
            Found::At(i) => {
                let known = *self.table.get(i);
                if self.arena.parts(&known).1 == address {
                    return false;
                }
                self.arena.discard(&known);
                let (chunk, offset) = self.arena.push_entry(name, address);
                let slot = self.table.get_mut(i);
                slot.chunk = chunk;
                slot.offset = offset;
            }
            Found::Vacant(i) => {
                let (chunk, offset) = self.arena.push_entry(name, address);
                self.table.insert_at(
                    i,
                    Slot {
                        hash,
                        chunk,
                        offset,
                    },
                );
            }
        }
        self.compact_if_wasteful();
        true
    }

    /// Removes the node `name` (of stored hash `hash`); `false` when it was not up.
    fn set_down(&mut self, name: &[u8], hash: u32) -> bool {
        let arena = &self.arena;
        match self.table.find(hash, |s| arena.name(s) == name) {
            Some(i) => {
                let slot = self.table.remove_at(i);
                self.arena.discard(&slot);
                self.compact_if_wasteful();
                true
            }
            None => false,
        }
    }

    /// Rewrites the arena with the live entries only, once garbage outweighs them.
    fn compact_if_wasteful(&mut self) {
        if self.arena.garbage <= CHUNK || self.arena.garbage <= self.arena.live {
            return;
        }
        let mut fresh = Arena::default();
        for slot in self.table.iter_mut() {
            let (chunk, offset) = fresh.push(self.arena.entry(slot));
            slot.chunk = chunk;
            slot.offset = offset;
        }
        self.arena = fresh;
    }

    /// Applies an incremental event and returns the part of it that changed the book.
    ///
    /// A node reported up that is already up with the same address and tags is dropped;
    /// a node reported down that the book never saw up is dropped too. `None` when
    /// nothing changed.
    pub fn update_inc(&mut self, ev: Event) -> Option<Event> {
        let mut changes = Event::new();
        for node in ev {
            let changed = if node.is_up() {
                self.set_up(&node)
            } else {
                let name = node.name.as_bytes();
                self.set_down(name, self.hash(name))
            };
            if changed {
                changes.add_node(node);
            }
        }
        (!changes.is_empty()).then_some(changes)
    }

    /// Applies an encoded update in place, without decoding it, when it is an
    /// incremental one in canonical form (see [`super::wire`]), and appends the
    /// encoding of the event of its real changes to `out` (nothing when there are
    /// none). `None` when the record is not in that form: decode it and [`apply`] it.
    ///
    /// The changes are the changed nodes' own bytes behind their count: when every
    /// node is a change, the record's event byte for byte.
    ///
    /// [`apply`]: Book::apply
    pub fn apply_encoded(&mut self, record: &[u8], out: &mut Vec<u8>) -> Option<()> {
        // The record is read once: where its nodes lie is kept in `spans`.
        let mut spans = std::mem::take(&mut self.spans);
        let Some(update) = WireIncremental::parse_spans(record, &mut spans) else {
            self.spans = spans;
            return None;
        };
        let event = update.event_bytes();
        // The changed nodes go to `out` as they are found, behind room for their count
        // as long as the record's own; the count is written there at the end. Only a
        // shorter count (fewer changes than nodes) moves the nodes down.
        let start = out.len();
        let room = varint(update.len() as u64).1;
        out.resize(start + room, 0);
        let mut changes = 0u64;
        // Within a record of many nodes (a watcher's backlog goes over in records of
        // a thousand), the slots of the nodes a few places ahead are prefetched; each
        // name is hashed once, for its prefetch, and the hash kept until its turn.
        const AHEAD: usize = Book::PREFETCH_AHEAD;
        let mut hashes = [0u32; AHEAD];
        for (hash, span) in hashes.iter_mut().zip(&spans) {
            *hash = self.hash(span.name(event));
            self.table.prefetch(*hash);
        }
        for (i, span) in spans.iter().enumerate() {
            let hash = hashes[i % AHEAD];
            if let Some(later) = spans.get(i + AHEAD) {
                // Node i + AHEAD takes node i's place among the kept hashes.
                hashes[i % AHEAD] = self.hash(later.name(event));
                self.table.prefetch(hashes[i % AHEAD]);
            }
            let node = span.node(event);
            let change = if node.up {
                self.set_up_encoded(node.name, hash, node.address)
            } else {
                self.set_down(node.name, hash)
            };
            if change {
                out.extend_from_slice(node.bytes);
                changes += 1;
            }
        }
        self.spans = spans;
        if changes == 0 {
            out.truncate(start);
            return Some(());
        }
        let (count, n) = varint(changes);
        out[start..start + n].copy_from_slice(&count[..n]);
        if n < room {
            out.copy_within(start + room.., start + n);
            out.truncate(out.len() - (room - n));
        }
        Some(())
    }

    /// Applies a full list (every node up now) and returns the changes it implies.
    ///
    /// New or changed nodes come back up; nodes the book had that the list lacks come back
    /// down. Entries marked down in a full list are ignored: a full list names up nodes
    /// only. `None` when nothing changed.
    pub fn update_full(&mut self, nodes: impl IntoIterator<Item = NodeInfo>) -> Option<Event> {
        let mut changes = Event::new();
        let mut seen: HashSet<String, RandomState> = HashSet::default();
        for node in nodes {
            if !node.is_up() {
                continue;
            }
            if self.set_up(&node) {
                seen.insert(node.name.clone());
                changes.add_node(node);
            } else {
                seen.insert(node.name);
            }
        }
        let arena = &self.arena;
        let mut gone = Vec::new();
        self.table.retain(|slot| {
            let kept = std::str::from_utf8(arena.name(slot)).is_ok_and(|n| seen.contains(n));
            if !kept {
                gone.push(*slot);
            }
            kept
        });
        for slot in gone {
            let mut node = self.arena.node(&slot);
            self.arena.discard(&slot);
            node.status = NodeStatus::Down;
            changes.add_node(node);
        }
        self.compact_if_wasteful();
        (!changes.is_empty()).then_some(changes)
    }

    /// Keeps a piece of a full list aside until its closing piece; `first` discards a
    /// list in progress.
    pub(super) fn stage(&mut self, piece: Event, first: bool) {
        match &mut self.staged {
            Some(list) if !first => list.merge(piece),
            _ => {
                self.staged = Some(piece);
                self.staged_bytes = 0;
            }
        }
    }

    /// The pieces of the full list in progress, taken out of the book.
    pub(super) fn take_staged(&mut self) -> Option<Event> {
        self.staged_bytes = 0;
        self.staged.take()
    }

    /// Adds `bytes` (the encoded size of a piece just staged) to the size of the list in
    /// progress, and returns the total: what a host bounds a list in pieces by.
    pub fn note_staged_bytes(&mut self, bytes: usize) -> usize {
        if self.staged.is_some() {
            self.staged_bytes += bytes;
        }
        self.staged_bytes
    }

    /// How many nodes the full list in progress holds so far; `None` when no list is
    /// in progress.
    pub fn staged_len(&self) -> Option<usize> {
        self.staged.as_ref().map(Event::len)
    }

    /// Forgets a full list in progress (its watcher's session ended before the list
    /// did, or the list broke a limit); the book's nodes stay as they are.
    pub fn discard_staged(&mut self) {
        self.staged = None;
        self.staged_bytes = 0;
    }

    /// Every node up now, as one event (empty when none is).
    pub fn full(&self) -> Event {
        self.table.iter().map(|s| self.arena.node(s)).collect()
    }

    /// Whether a node is up according to the book.
    pub fn is_up(&self, name: &str) -> bool {
        let name = name.as_bytes();
        let hash = self.hash(name);
        self.table
            .find(hash, |s| self.arena.name(s) == name)
            .is_some()
    }

    /// How many nodes are up.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether no node is up.
    pub fn is_empty(&self) -> bool {
        self.table.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Update;

    /// The changes `apply_encoded` writes for `ev` (incremental), decoded.
    fn apply_encoded(book: &mut Book, ev: &Event) -> Option<Event> {
        let record = crate::codec::encode(&Update::Incremental(ev.clone()), "update").unwrap();
        let mut out = vec![7]; // what a batch holds before: left alone
        book.apply_encoded(&record, &mut out).expect("canonical");
        assert_eq!(out[0], 7);
        (out.len() > 1).then(|| crate::codec::decode(&out[1..], "changes").unwrap())
    }

    #[test]
    fn encoded_changes_carry_their_own_count_whatever_its_length() {
        let node = |i: usize, port: u16| {
            NodeInfo::new(format!("node-{i:03}"), NodeStatus::Up, "10.0.0.1", port)
        };
        let mut book = Book::new();
        // 300 nodes: a three-byte count, and every node a change.
        let all: Event = (0..300).map(|i| node(i, 1)).collect();
        assert_eq!(apply_encoded(&mut book, &all), Some(all.clone()));
        // Nothing new: no changes, nothing written.
        assert_eq!(apply_encoded(&mut book, &all), None);
        // Five of 300 changed: a one-byte count in front of them.
        let moved: Event = (0..300)
            .map(|i| node(i, if i % 60 == 0 { 2 } else { 1 }))
            .collect();
        let expected: Event = (0..300).step_by(60).map(|i| node(i, 2)).collect();
        assert_eq!(apply_encoded(&mut book, &moved), Some(expected));
    }

    #[test]
    fn the_arena_is_rewritten_when_garbage_outweighs_the_live_entries() {
        let mut book = Book::new();
        let node = |i: usize, port: u16| {
            NodeInfo::new(format!("node-{i}"), NodeStatus::Up, "10.0.0.1", port)
        };
        for i in 0..1000 {
            book.update_inc(std::iter::once(node(i, 1)).collect());
        }
        // Moving every node many times leaves megabytes of replaced entries behind.
        let mut most_garbage = 0;
        for port in 2..200u16 {
            let ev: Event = (0..1000).map(|i| node(i, port)).collect();
            book.update_inc(ev);
            most_garbage = most_garbage.max(book.arena.garbage);
            assert!(book.arena.garbage <= CHUNK.max(book.arena.live) + 64);
        }
        assert!(most_garbage > CHUNK / 2, "the test must make garbage");
        assert!(
            book.arena.chunks.len() <= 3,
            "{} chunks",
            book.arena.chunks.len()
        );
        assert_eq!(book.len(), 1000);
        assert_eq!(book.full().get("node-97").unwrap().port, 199);
        assert_eq!(book.full().get("node-999").unwrap().host, "10.0.0.1");
        // Removing nodes keeps the rest readable.
        let downs: Event = (0..1000)
            .filter(|i| i % 3 == 0)
            .map(|i| NodeInfo::new(format!("node-{i}"), NodeStatus::Down, "10.0.0.1", 1))
            .collect();
        book.update_inc(downs);
        assert_eq!(book.len(), 666);
        assert!(book.is_up("node-1") && !book.is_up("node-3"));
    }
}
