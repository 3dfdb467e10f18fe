//! The per-watcher book: which nodes a watcher has reported up, and what really changed.
//!
//! Watchers are free to repeat themselves: a node reported up twice, a full list sent
//! every few seconds. Reactors should hear only real changes. The book remembers the up
//! nodes of one watcher and turns each report into an incremental event that holds just
//! the changes, or nothing.

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashSet};
use std::hash::{Hash, Hasher};

use bincode::config::{self, Configuration};
use foldhash::fast::RandomState;

use super::{Event, NodeInfo, NodeStatus};

/// The encoding of an entry's address part (standard bincode, as on the wire).
const ENTRY_CONFIG: Configuration = config::standard();

/// An up node in the book, in one allocation: the name's length (one byte below 255,
/// else 255 and four bytes little endian), the name, then the address part (`host`,
/// `port`, `meta`) encoded with bincode. Hashed and compared by name only, so the set
/// is looked up by the name's bytes and stores each name once.
///
/// Compact on purpose: the book holds every node a watcher reported, and a book of
/// millions of fresh nodes spent most of its time in page faults while it grew. A node
/// with a short name and host takes about 24 bytes here against about 110 as a boxed
/// `NodeInfo` with its two strings, and one allocation instead of three.
#[derive(Clone)]
struct Entry(Box<[u8]>);

/// The address part of a node, as an entry stores it.
type Address<'a> = (&'a String, u16, &'a BTreeMap<String, String>);

impl Entry {
    /// The entry of an up node.
    fn new(node: &NodeInfo, scratch: &mut Vec<u8>) -> Entry {
        scratch.clear();
        match u8::try_from(node.name.len()) {
            Ok(len) if len < u8::MAX => scratch.push(len),
            _ => {
                scratch.push(u8::MAX);
                scratch.extend_from_slice(&(node.name.len() as u32).to_le_bytes());
            }
        }
        scratch.extend_from_slice(node.name.as_bytes());
        encode_address(node, scratch);
        Entry(scratch.as_slice().into())
    }

    fn split(&self) -> (&[u8], &[u8]) {
        let (len, rest) = match self.0.split_first() {
            Some((&u8::MAX, rest)) => {
                let (len, rest) = rest.split_at(4);
                (
                    u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize,
                    rest,
                )
            }
            Some((&len, rest)) => (len as usize, rest),
            None => (0, &self.0[..]),
        };
        rest.split_at(len)
    }

    fn name(&self) -> &[u8] {
        self.split().0
    }

    fn address(&self) -> &[u8] {
        self.split().1
    }

    /// The node back, up. Entries are only made from valid nodes, so decoding cannot
    /// fail; should it anyway, the node keeps its name and loses its address rather
    /// than take the host down.
    fn node(&self) -> NodeInfo {
        let (name, address) = self.split();
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

/// Appends the address part of `node` to `out`.
fn encode_address(node: &NodeInfo, out: &mut Vec<u8>) {
    let address: Address<'_> = (&node.host, node.port, &node.meta);
    // Encoding into a Vec has no size limit and these types always encode.
    let _ = bincode::encode_into_std_write(address, out, ENTRY_CONFIG);
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name()
    }
}

impl Eq for Entry {}

impl Hash for Entry {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name().hash(state);
    }
}

impl Borrow<[u8]> for Entry {
    fn borrow(&self) -> &[u8] {
        self.name()
    }
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.node().fmt(f)
    }
}

/// The up nodes of one watcher, and the filter that turns its reports into real changes.
///
/// The set uses foldhash (randomly seeded per book): the book is on every event's path,
/// and SipHash alone took a seventh of the pipeline's time.
#[derive(Debug, Clone, Default)]
pub struct Book {
    up: HashSet<Entry, RandomState>,
    /// Reused for encoding entries and the address part of incoming nodes.
    scratch: Vec<u8>,
}

impl Book {
    /// An empty book: no node is up.
    pub fn new() -> Self {
        Book::default()
    }

    /// Whether the book has `node` up with the same address and tags.
    fn has_same(&mut self, node: &NodeInfo) -> bool {
        let Some(known) = self.up.get(node.name.as_bytes()) else {
            return false;
        };
        self.scratch.clear();
        encode_address(node, &mut self.scratch);
        node.is_up() && known.address() == self.scratch.as_slice()
    }

    fn set_up(&mut self, node: &NodeInfo) {
        let entry = Entry::new(node, &mut self.scratch);
        self.up.replace(entry);
    }

    /// Applies an incremental event and returns the part of it that changed the book.
    ///
    /// A node reported up that is already up with the same address and tags is dropped;
    /// a node reported down that the book never saw up is dropped too. `None` when
    /// nothing changed.
    pub fn update_inc(&mut self, ev: Event) -> Option<Event> {
        let mut changes = Event::new();
        for node in ev {
            if node.is_up() {
                if self.has_same(&node) {
                    continue;
                }
                self.set_up(&node);
            } else if !self.up.remove(node.name.as_bytes()) {
                continue;
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
        let mut seen: HashSet<String, RandomState> = HashSet::default();
        for node in nodes {
            if !node.is_up() {
                continue;
            }
            if !self.has_same(&node) {
                self.set_up(&node);
                seen.insert(node.name.clone());
                changes.add_node(node);
            } else {
                seen.insert(node.name);
            }
        }
        let gone: Vec<Entry> = self
            .up
            .iter()
            .filter(|e| !std::str::from_utf8(e.name()).is_ok_and(|n| seen.contains(n)))
            .cloned()
            .collect();
        for entry in gone {
            self.up.remove(entry.name());
            let mut node = entry.node();
            node.status = NodeStatus::Down;
            changes.add_node(node);
        }
        (!changes.is_empty()).then_some(changes)
    }

    /// Every node up now, as one event (empty when none is).
    pub fn full(&self) -> Event {
        self.up.iter().map(Entry::node).collect()
    }

    /// Whether a node is up according to the book.
    pub fn is_up(&self, name: &str) -> bool {
        self.up.contains(name.as_bytes())
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
