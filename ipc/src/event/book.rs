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
//! - a hash table of 12-byte slots (32 bits of the name's hash, chunk, offset) finds an
//!   entry by name. The slot keeps the hash, so growing the table never reads the
//!   entries again (with millions of them, every read was a cache miss);
//! - an entry replaced or removed leaves garbage in its chunk; when garbage outweighs
//!   the live entries the arena is rewritten, so memory stays within twice the live
//!   size at an amortised constant cost per change.

use std::collections::{BTreeMap, HashSet};
use std::hash::BuildHasher;

use bincode::config::{self, Configuration};
use foldhash::fast::RandomState;
use hashbrown::hash_table::{Entry as Probe, HashTable};

use super::{Event, NodeInfo, NodeStatus};

/// The encoding of an entry's address part (standard bincode, as on the wire).
const ENTRY_CONFIG: Configuration = config::standard();

/// The usual size of an arena chunk (an entry larger than this gets a chunk of its own).
const CHUNK: usize = 1 << 20;

/// Where an entry lives, with 32 bits of its name's hash.
#[derive(Debug, Clone, Copy)]
struct Slot {
    hash: u32,
    chunk: u32,
    offset: u32,
}

/// The table's 64-bit hash from the 32 bits a slot keeps: hashbrown picks the bucket
/// from the low bits and a 7-bit tag from the top ones, so both must vary.
fn spread(hash: u32) -> u64 {
    u64::from(hash).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

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
        let fits = self
            .chunks
            .last()
            .is_some_and(|c| c.capacity() - c.len() >= entry.len());
        if !fits {
            self.chunks.push(Vec::with_capacity(entry.len().max(CHUNK)));
        }
        let chunk = self.chunks.len() - 1;
        let bytes = &mut self.chunks[chunk];
        let offset = bytes.len();
        bytes.extend_from_slice(entry);
        self.live += entry.len();
        (chunk as u32, offset as u32)
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

/// Writes the entry of a node whose address part is `address` into `out`.
fn encode_entry(name: &[u8], address: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&[0; 4]);
    match u8::try_from(name.len()) {
        Ok(len) if len < u8::MAX => out.push(len),
        _ => {
            out.push(u8::MAX);
            out.extend_from_slice(&(name.len() as u32).to_le_bytes());
        }
    }
    out.extend_from_slice(name);
    out.extend_from_slice(address);
    let len = (out.len() - 4) as u32;
    out[..4].copy_from_slice(&len.to_le_bytes());
}

/// The up nodes of one watcher, and the filter that turns its reports into real changes.
///
/// Names are hashed with foldhash (randomly seeded per book): the book is on every
/// event's path, and SipHash alone took a seventh of the pipeline's time. See the module
/// docs for the layout.
#[derive(Clone, Default)]
pub struct Book {
    table: HashTable<Slot>,
    arena: Arena,
    hasher: RandomState,
    /// The address part of the node at hand.
    address: Vec<u8>,
    /// The entry being written.
    entry: Vec<u8>,
}

impl std::fmt::Debug for Book {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set()
            .entries(self.table.iter().map(|s| self.arena.node(s)))
            .finish()
    }
}

impl Book {
    /// An empty book: no node is up.
    pub fn new() -> Self {
        Book::default()
    }

    fn hash(&self, name: &[u8]) -> u32 {
        self.hasher.hash_one(name) as u32
    }

    /// Records `node` as up; `false` when it already was, with the same address and tags.
    fn set_up(&mut self, node: &NodeInfo) -> bool {
        let name = node.name.as_bytes();
        let hash = self.hash(name);
        self.address.clear();
        encode_address(node, &mut self.address);
        let arena = &self.arena;
        let probe = self.table.entry(
            spread(hash),
            |s| s.hash == hash && arena.name(s) == name,
            |s| spread(s.hash),
        );
        match probe {
            Probe::Occupied(mut known) => {
                if self.arena.parts(known.get()).1 == self.address.as_slice() {
                    return false;
                }
                self.arena.discard(known.get());
                encode_entry(name, &self.address, &mut self.entry);
                let (chunk, offset) = self.arena.push(&self.entry);
                let slot = known.get_mut();
                slot.chunk = chunk;
                slot.offset = offset;
            }
            Probe::Vacant(vacant) => {
                encode_entry(name, &self.address, &mut self.entry);
                let (chunk, offset) = self.arena.push(&self.entry);
                vacant.insert(Slot {
                    hash,
                    chunk,
                    offset,
                });
            }
        }
        self.compact_if_wasteful();
        true
    }

    /// Removes a node; `false` when it was not up.
    fn set_down(&mut self, name: &str) -> bool {
        let name = name.as_bytes();
        let hash = self.hash(name);
        let arena = &self.arena;
        match self
            .table
            .find_entry(spread(hash), |s| s.hash == hash && arena.name(s) == name)
        {
            Ok(known) => {
                let (slot, _) = known.remove();
                self.arena.discard(&slot);
                self.compact_if_wasteful();
                true
            }
            Err(_) => false,
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
                self.set_down(&node.name)
            };
            if changed {
                changes.add_node(node);
            }
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

    /// Every node up now, as one event (empty when none is).
    pub fn full(&self) -> Event {
        self.table.iter().map(|s| self.arena.node(s)).collect()
    }

    /// Whether a node is up according to the book.
    pub fn is_up(&self, name: &str) -> bool {
        let name = name.as_bytes();
        let hash = self.hash(name);
        self.table
            .find(spread(hash), |s| {
                s.hash == hash && self.arena.name(s) == name
            })
            .is_some()
    }

    /// How many nodes are up.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether no node is up.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
