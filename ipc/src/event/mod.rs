//! The events that flow from watchers through the host to reactors.
//!
//! A [`NodeInfo`] says where one instance of a service lives and whether it is up. An
//! [`Event`] is a set of them keyed by node name: adding a node whose name is already in
//! the event replaces the earlier entry, so an event never says two things about one node.
//!
//! Events are either *incremental* (these nodes changed) or *full* (every node the watcher
//! sees now; a node missing from it is down). The [`Book`] turns both kinds into
//! redundancy-free incremental events, and [`Pending`] coalesces the changes a slow
//! reactor has not taken yet (latest per node wins), keeping them encoded, as they will
//! go over the ring.
//!
//! ```
//! use ipc::event::{Event, NodeInfo, NodeStatus};
//!
//! let mut ev = Event::with_node("web1", NodeStatus::Up, "10.0.0.1", 80);
//! ev.add("web2", NodeStatus::Up, "10.0.0.2", 80);
//! ev.add_node(NodeInfo::new("web1", NodeStatus::Down, "10.0.0.1", 80)); // replaces web1
//! assert_eq!(ev.len(), 2);
//! assert_eq!(ev.get("web1").unwrap().status, NodeStatus::Down);
//! ```

mod book;
pub mod check;
pub mod pending;
mod slots;
mod update;
pub mod wire;

pub use book::Book;
pub use check::NodeError;
pub use pending::{Framing, Pending, Piece};
pub use update::Update;

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::btree_set::{self, BTreeSet};
use std::collections::BTreeMap;
use std::fmt;

use bincode::de::read::Reader;
use bincode::de::Decoder;
use bincode::enc::Encoder;
use bincode::error::{DecodeError, EncodeError};
use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

/// Whether a node can take traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Encode, Decode, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeStatus {
    /// The node is live and should receive traffic.
    Up,
    /// The node is gone or unhealthy.
    Down,
}

impl fmt::Display for NodeStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NodeStatus::Up => "up",
            NodeStatus::Down => "down",
        })
    }
}

/// One instance of a service: its name, status and address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Encode, Decode, Serialize, Deserialize)]
pub struct NodeInfo {
    /// The node's name, unique within a service (for example a host name or an instance id).
    pub name: String,
    /// Up or down.
    pub status: NodeStatus,
    /// Host name or IP address where the node listens.
    pub host: String,
    /// Port where the node listens.
    pub port: u16,
    /// Optional tags such as a weight or a zone; empty for most watchers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
}

impl NodeInfo {
    /// A node without meta tags.
    pub fn new(
        name: impl Into<String>,
        status: NodeStatus,
        host: impl Into<String>,
        port: u16,
    ) -> Self {
        NodeInfo {
            name: name.into(),
            status,
            host: host.into(),
            port,
            meta: BTreeMap::new(),
        }
    }

    /// The same node with one more meta tag.
    pub fn with_meta(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.meta.insert(key.into(), value.into());
        self
    }

    /// Whether the node is up.
    pub fn is_up(&self) -> bool {
        self.status == NodeStatus::Up
    }
}

impl fmt::Display for NodeInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}) {}:{}",
            self.name, self.status, self.host, self.port
        )
    }
}

/// A set of node changes keyed by node name; a later entry for a name replaces an earlier one.
///
/// Iteration is in node-name order, so logs and tests see a stable order.
///
/// Most events name one node, so an event keeps its nodes in a sorted vector (one small
/// allocation), and switches to a B-tree when a node must go into the middle of a vector
/// of `SMALL_EVENT` or more (a backlog that coalesced thousands of nodes); nodes that
/// arrive in name order are appended, however many. Both keep name order; equality is
/// by content. The B-tree is a set of nodes ordered by name, so a node's name is stored
/// once, not copied into a separate key.
#[derive(Clone)]
pub struct Event {
    nodes: Nodes,
}

/// The most nodes a vector-form event takes insertions into its middle.
const SMALL_EVENT: usize = 16;

/// The fewest bytes an encoded node takes: the lengths of an empty name and host, the
/// status, a one-byte port and an empty meta count.
const MIN_NODE_BYTES: usize = 5;

/// Where `name` is, or would go, in a vector of nodes sorted by name.
fn position(list: &[NodeInfo], name: &str) -> Result<usize, usize> {
    list.binary_search_by(|n| n.name.as_str().cmp(name))
}

#[derive(Clone)]
enum Nodes {
    Small(Vec<NodeInfo>),
    Large(BTreeSet<ByName>),
}

/// A node in a large event: ordered, compared and looked up by name alone.
#[derive(Clone)]
struct ByName(NodeInfo);

impl PartialEq for ByName {
    fn eq(&self, other: &Self) -> bool {
        self.0.name == other.0.name
    }
}

impl Eq for ByName {}

impl PartialOrd for ByName {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ByName {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.name.cmp(&other.0.name)
    }
}

impl Borrow<str> for ByName {
    fn borrow(&self) -> &str {
        &self.0.name
    }
}

impl Default for Event {
    fn default() -> Self {
        Event {
            nodes: Nodes::Small(Vec::new()),
        }
    }
}

impl PartialEq for Event {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.nodes().eq(other.nodes())
    }
}

impl Eq for Event {}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.nodes()).finish()
    }
}

impl Event {
    /// An event with no nodes.
    pub fn new() -> Self {
        Event::default()
    }

    /// An event about one node.
    pub fn with_node(
        name: impl Into<String>,
        status: NodeStatus,
        host: impl Into<String>,
        port: u16,
    ) -> Self {
        let mut ev = Event::new();
        ev.add(name, status, host, port);
        ev
    }

    /// Adds a node, replacing any entry of the same name.
    pub fn add(
        &mut self,
        name: impl Into<String>,
        status: NodeStatus,
        host: impl Into<String>,
        port: u16,
    ) {
        self.add_node(NodeInfo::new(name, status, host, port));
    }

    /// Adds a node, replacing any entry of the same name; returns the entry it replaced.
    pub fn add_node(&mut self, node: NodeInfo) -> Option<NodeInfo> {
        match &mut self.nodes {
            Nodes::Small(list) => {
                // Nodes added in name order (a decoded event, the changes a book finds
                // in one) are appended: the vector stays the representation however
                // long it gets, built in linear time. Only an insertion into the middle
                // of a long vector moves it to the B-tree.
                if list.last().is_none_or(|last| last.name < node.name) {
                    list.push(node);
                    return None;
                }
                match position(list, &node.name) {
                    Ok(i) => return Some(std::mem::replace(&mut list[i], node)),
                    Err(i) if list.len() < SMALL_EVENT => list.insert(i, node),
                    Err(_) => {
                        let mut set: BTreeSet<ByName> = list.drain(..).map(ByName).collect();
                        set.insert(ByName(node));
                        self.nodes = Nodes::Large(set);
                    }
                }
                None
            }
            Nodes::Large(set) => set.replace(ByName(node)).map(|old| old.0),
        }
    }

    /// Folds a later event into this one: for every node the later entry wins.
    ///
    /// The work is proportional to the smaller of the two, so folding a few fresh nodes
    /// into a large backlog, or a large backlog into a few, is cheap either way.
    pub fn merge(&mut self, later: Event) {
        if self.len() <= later.len() {
            let earlier = std::mem::replace(self, later);
            for node in earlier {
                if self.get(&node.name).is_none() {
                    self.add_node(node);
                }
            }
        } else {
            self.extend(later);
        }
    }

    /// Removes and returns the first `n` nodes in name order (all of them if there are
    /// fewer), leaving the rest: how a large backlog is handed over a piece at a time.
    pub fn split_first(&mut self, n: usize) -> Event {
        if n >= self.len() {
            return std::mem::take(self);
        }
        match &mut self.nodes {
            Nodes::Small(list) => list.drain(..n).collect(),
            Nodes::Large(set) => {
                let key = set.iter().nth(n).expect("n < len").0.name.clone();
                let rest = set.split_off(key.as_str());
                let first = std::mem::replace(set, rest);
                // In name order: the piece is a vector, built by appending.
                first.into_iter().map(|k| k.0).collect()
            }
        }
    }

    /// The entry for a node name, if the event has one.
    pub fn get(&self, name: &str) -> Option<&NodeInfo> {
        match &self.nodes {
            Nodes::Small(list) => position(list, name).ok().map(|i| &list[i]),
            Nodes::Large(set) => set.get(name).map(|k| &k.0),
        }
    }

    /// Removes and returns the entry for a node name.
    pub fn remove(&mut self, name: &str) -> Option<NodeInfo> {
        match &mut self.nodes {
            Nodes::Small(list) => position(list, name).ok().map(|i| list.remove(i)),
            Nodes::Large(set) => set.take(name).map(|k| k.0),
        }
    }

    /// How many nodes the event names.
    pub fn len(&self) -> usize {
        match &self.nodes {
            Nodes::Small(list) => list.len(),
            Nodes::Large(set) => set.len(),
        }
    }

    /// Whether the event names no node.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The nodes in name order.
    pub fn nodes(&self) -> NodeIter<'_> {
        match &self.nodes {
            Nodes::Small(list) => NodeIter(Iter::Small(list.iter())),
            Nodes::Large(set) => NodeIter(Iter::Large(set.iter())),
        }
    }
}

/// The nodes of an [`Event`] in name order.
pub struct NodeIter<'a>(Iter<'a>);

enum Iter<'a> {
    Small(std::slice::Iter<'a, NodeInfo>),
    Large(btree_set::Iter<'a, ByName>),
}

impl<'a> Iterator for NodeIter<'a> {
    type Item = &'a NodeInfo;

    fn next(&mut self) -> Option<&'a NodeInfo> {
        match &mut self.0 {
            Iter::Small(it) => it.next(),
            Iter::Large(it) => it.next().map(|k| &k.0),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match &self.0 {
            Iter::Small(it) => it.size_hint(),
            Iter::Large(it) => it.size_hint(),
        }
    }
}

impl ExactSizeIterator for NodeIter<'_> {}

/// The nodes of an [`Event`], owned, in name order.
pub struct IntoNodes(IntoIter);

enum IntoIter {
    Small(std::vec::IntoIter<NodeInfo>),
    Large(btree_set::IntoIter<ByName>),
}

impl Iterator for IntoNodes {
    type Item = NodeInfo;

    fn next(&mut self) -> Option<NodeInfo> {
        match &mut self.0 {
            IntoIter::Small(it) => it.next(),
            IntoIter::Large(it) => it.next().map(|k| k.0),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match &self.0 {
            IntoIter::Small(it) => it.size_hint(),
            IntoIter::Large(it) => it.size_hint(),
        }
    }
}

impl ExactSizeIterator for IntoNodes {}

impl FromIterator<NodeInfo> for Event {
    /// Collects nodes; for a repeated name the last one wins.
    fn from_iter<I: IntoIterator<Item = NodeInfo>>(iter: I) -> Self {
        let mut ev = Event::new();
        ev.extend(iter);
        ev
    }
}

impl Extend<NodeInfo> for Event {
    fn extend<I: IntoIterator<Item = NodeInfo>>(&mut self, iter: I) {
        for node in iter {
            self.add_node(node);
        }
    }
}

impl IntoIterator for Event {
    type Item = NodeInfo;
    type IntoIter = IntoNodes;

    fn into_iter(self) -> Self::IntoIter {
        match self.nodes {
            Nodes::Small(list) => IntoNodes(IntoIter::Small(list.into_iter())),
            Nodes::Large(set) => IntoNodes(IntoIter::Large(set.into_iter())),
        }
    }
}

impl<'a> IntoIterator for &'a Event {
    type Item = &'a NodeInfo;
    type IntoIter = NodeIter<'a>;

    fn into_iter(self) -> Self::IntoIter {
        self.nodes()
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, node) in self.nodes().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{node}")?;
        }
        f.write_str("]")
    }
}

/// On the wire an event is a sequence of nodes; the name is not written twice.
impl Encode for Event {
    fn encode<E: Encoder>(&self, encoder: &mut E) -> Result<(), EncodeError> {
        (self.len() as u64).encode(encoder)?;
        for node in self.nodes() {
            node.encode(encoder)?;
        }
        Ok(())
    }
}

/// Decoding keeps the event's rule: a repeated name replaces the earlier entry.
impl<Context> Decode<Context> for Event {
    fn decode<D: Decoder<Context = Context>>(decoder: &mut D) -> Result<Self, DecodeError> {
        let len = usize::try_from(u64::decode(decoder)?).unwrap_or(usize::MAX);
        // A forged length must not reserve memory: the whole length is reserved only
        // when the input has room for that many nodes (read from a slice, it can tell),
        // else at most the small form's capacity.
        let room = len.saturating_mul(MIN_NODE_BYTES);
        let capacity = if decoder.reader().peek_read(room).is_some() {
            len
        } else {
            len.min(SMALL_EVENT)
        };
        let mut ev = Event {
            nodes: Nodes::Small(Vec::with_capacity(capacity)),
        };
        for _ in 0..len {
            // Each node claims its own bytes from the decoder's limit, so a forged length
            // runs out of input (an error) long before it runs out of memory.
            ev.add_node(NodeInfo::decode(decoder)?);
        }
        Ok(ev)
    }
}

impl<'de, Context> bincode::BorrowDecode<'de, Context> for Event {
    fn borrow_decode<D: bincode::de::BorrowDecoder<'de, Context = Context>>(
        decoder: &mut D,
    ) -> Result<Self, DecodeError> {
        Event::decode(decoder)
    }
}

impl Serialize for Event {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.nodes())
    }
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let nodes = Vec::<NodeInfo>::deserialize(deserializer)?;
        Ok(nodes.into_iter().collect())
    }
}

#[cfg(test)]
mod tests;
