//! Reading an encoded incremental update in place: the host's fast path.
//!
//! The host's pump sees every record a watcher sends. Decoding one into an [`Update`]
//! allocates every string of every node, and the changes must then be encoded again
//! for the reactors, although for an incremental update they are the very same bytes
//! (all of them, when every node is news). So the pump first tries to *read* the record
//! where it lies: [`WireIncremental::parse`] checks that it is an incremental update
//! whose event is in *canonical form*, the form our encoder writes:
//!
//! - every varint is minimal, node names strictly increase (no repeats), and meta keys
//!   strictly increase: so a node's address part (`host`, `port`, `meta`) is
//!   byte for byte what encoding the decoded node would give, and the [`super::Book`]
//!   can compare stored and reported addresses as bytes;
//! - every string is UTF-8 and every length stays inside the record: anything accepted
//!   here decodes to the same event with [`crate::codec::decode`].
//!
//! A record that is not in that form (a full list, another encoder's varints, garbage)
//! is left to the decoder, which also names what is wrong with a bad one. Parsing never
//! panics and never reads past the record.
//!
//! The bincode layout (standard configuration) read here: an update is its variant
//! index (`0` incremental) then the event; an event is a node count then the nodes; a
//! node is its name, its status (`0` up, `1` down), its host, its port and its meta (a
//! count, then key and value strings); a string is a length then UTF-8 bytes. Varints
//! below 251 are one byte; 251, 252 and 253 announce a little-endian `u16`, `u32` or
//! `u64`.
//!
//! [`Update`]: super::Update

use super::check::{check_field, check_wire_node, MAX_FIELD_BYTES, MAX_META_VALUE_BYTES};

/// The variant index of `Update::Incremental`, the first byte of an update record.
pub(super) const INCREMENTAL: u8 = 0;
/// The variant index of `Update::FullPart`, the first byte of a piece of a full list.
pub(super) const FULL_PART: u8 = 3;
/// The variant indexes of `NodeStatus::Up` and `NodeStatus::Down`.
const UP: u8 = 0;
const DOWN: u8 = 1;

/// One node of an encoded event, borrowed from the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireNode<'a> {
    /// The node's name (checked to be UTF-8).
    pub name: &'a [u8],
    /// Whether the node is reported up.
    pub up: bool,
    /// The encoded address part: host, port and meta, as a book stores it.
    pub address: &'a [u8],
    /// The whole encoded node, as it goes into an event.
    pub bytes: &'a [u8],
}

/// An incremental update in canonical form, read in place.
#[derive(Debug, Clone, Copy)]
pub struct WireIncremental<'a> {
    /// The event's encoding: the node count, then the nodes.
    event: &'a [u8],
    /// How many nodes it has.
    count: usize,
    /// Where the first node starts in `event`.
    first: usize,
}

impl<'a> WireIncremental<'a> {
    /// Reads `record` (an encoded [`super::Update`]) if it is an incremental update in
    /// canonical form that fills the record exactly; `None` otherwise.
    pub fn parse(record: &'a [u8]) -> Option<Self> {
        Self::parse_with(record, |_| {})
    }

    /// Reads `event` (an encoded [`super::Event`], such as a change the host sends a
    /// reactor) if it is in canonical form and fills `event` exactly; `None` otherwise.
    pub fn parse_event(event: &'a [u8]) -> Option<Self> {
        Self::parse_event_with(event, |_| {})
    }

    /// [`parse`](Self::parse), also leaving where each node lies in `spans` (cleared
    /// first): a caller that walks the nodes more than once (the book, which looks a
    /// few nodes ahead) reads each node's bytes once. `spans` is unspecified on `None`.
    pub fn parse_spans(record: &'a [u8], spans: &mut Vec<NodeSpan>) -> Option<Self> {
        spans.clear();
        Self::parse_with(record, |span| spans.push(span))
    }

    fn parse_with(record: &'a [u8], each: impl FnMut(NodeSpan)) -> Option<Self> {
        let (&tag, event) = record.split_first()?;
        if tag != INCREMENTAL {
            return None;
        }
        Self::parse_event_with(event, each)
    }

    fn parse_event_with(event: &'a [u8], mut each: impl FnMut(NodeSpan)) -> Option<Self> {
        let mut cursor = Cursor::new(event);
        let count = usize::try_from(cursor.varint()?).ok()?;
        let first = cursor.pos;
        let mut previous: Option<&[u8]> = None;
        for _ in 0..count {
            let start = cursor.pos;
            let node = cursor.node()?;
            if previous.is_some_and(|p| p >= node.name) {
                return None;
            }
            previous = Some(node.name);
            let address = cursor.pos - node.address.len();
            each(NodeSpan {
                start,
                // The status byte lies between the name and the address.
                name: address - 1 - node.name.len(),
                address,
                end: cursor.pos,
                up: node.up,
            });
        }
        if cursor.pos != event.len() {
            return None;
        }
        Some(WireIncremental {
            event,
            count,
            first,
        })
    }

    /// The event's encoding: what a reactor's ring carries when every node is a change.
    pub fn event_bytes(&self) -> &'a [u8] {
        self.event
    }

    /// How many nodes the event names.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the event names no node.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The nodes, in name order.
    pub fn nodes(&self) -> WireNodes<'a> {
        WireNodes {
            cursor: Cursor {
                bytes: self.event,
                pos: self.first,
            },
            left: self.count,
        }
    }
}

/// Where one node lies in the event of a [`WireIncremental`] (byte offsets into
/// [`WireIncremental::event_bytes`]), from [`WireIncremental::parse_spans`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeSpan {
    start: usize,
    name: usize,
    address: usize,
    end: usize,
    up: bool,
}

impl NodeSpan {
    /// The node, read from the event bytes its record was parsed from. Other bytes give
    /// some other slices (or a panic when too short): this is for the parser's caller.
    pub fn node<'a>(&self, event: &'a [u8]) -> WireNode<'a> {
        WireNode {
            name: self.name(event),
            up: self.up,
            address: &event[self.address..self.end],
            bytes: &event[self.start..self.end],
        }
    }

    /// The node's name, read as [`node`](Self::node) does.
    pub fn name<'a>(&self, event: &'a [u8]) -> &'a [u8] {
        &event[self.name..self.address - 1]
    }
}

/// The nodes of a [`WireIncremental`], in name order.
#[derive(Clone)]
pub struct WireNodes<'a> {
    cursor: Cursor<'a>,
    left: usize,
}

impl<'a> Iterator for WireNodes<'a> {
    type Item = WireNode<'a>;

    fn next(&mut self) -> Option<WireNode<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        // `parse` read these very bytes already, so this cannot fail; if it did, the
        // iteration would just end early.
        self.cursor.node()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.left))
    }
}

/// The name of the first node of an encoded incremental update, unchecked (not even
/// for UTF-8): enough to prefetch where the book keeps it. `None` for anything else.
pub fn first_name(record: &[u8]) -> Option<&[u8]> {
    let (&tag, event) = record.split_first()?;
    if tag != INCREMENTAL {
        return None;
    }
    let mut cursor = Cursor::new(event);
    if cursor.varint()? == 0 {
        return None;
    }
    node_name(&event[cursor.pos..])
}

/// The name of an encoded node (its first field), unchecked (not even for UTF-8).
pub fn node_name(node: &[u8]) -> Option<&[u8]> {
    let mut cursor = Cursor::new(node);
    let len = usize::try_from(cursor.varint()?).ok()?;
    cursor.take(len)
}

/// The canonical varint encoding of `n` (an event's node count): the bytes, and how
/// many of them count.
pub fn varint(n: u64) -> ([u8; 9], usize) {
    let mut bytes = [0; 9];
    let len = match n {
        0..=250 => {
            bytes[0] = n as u8;
            1
        }
        251..=0xFFFF => {
            bytes[0] = 251;
            bytes[1..3].copy_from_slice(&(n as u16).to_le_bytes());
            3
        }
        0x1_0000..=0xFFFF_FFFF => {
            bytes[0] = 252;
            bytes[1..5].copy_from_slice(&(n as u32).to_le_bytes());
            5
        }
        _ => {
            bytes[0] = 253;
            bytes[1..9].copy_from_slice(&n.to_le_bytes());
            9
        }
    };
    (bytes, len)
}

/// A read position in a record; every read checks its bounds.
#[derive(Clone)]
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Cursor { bytes, pos: 0 }
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let taken = self.bytes.get(self.pos..end)?;
        self.pos = end;
        Some(taken)
    }

    fn byte(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    /// A minimal varint (a longer form than needed is not canonical).
    fn varint(&mut self) -> Option<u64> {
        let (value, min) = match self.byte()? {
            small @ 0..=250 => return Some(u64::from(small)),
            251 => (
                u64::from(u16::from_le_bytes(self.take(2)?.try_into().ok()?)),
                251,
            ),
            252 => (
                u64::from(u32::from_le_bytes(self.take(4)?.try_into().ok()?)),
                0x1_0000,
            ),
            253 => (
                u64::from_le_bytes(self.take(8)?.try_into().ok()?),
                0x1_0000_0000,
            ),
            _ => return None,
        };
        (value >= min).then_some(value)
    }

    /// A string's bytes, unchecked: the caller checks them as the field they are.
    fn str(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.varint()?).ok()?;
        self.take(len)
    }

    /// One node; `None` unless it is canonical, inside the bytes, and its fields keep
    /// the rules of [`super::check`] (a node that breaks one is left to the decoder's
    /// path, which names the rule).
    fn node(&mut self) -> Option<WireNode<'a>> {
        let start = self.pos;
        let name = self.str()?;
        let up = match self.byte()? {
            UP => true,
            DOWN => false,
            _ => return None,
        };
        let address = self.pos;
        let host = self.str()?;
        let port = self.varint()?;
        u16::try_from(port).ok()?;
        let tags = usize::try_from(self.varint()?).ok()?;
        check_wire_node(name, up, host, port, tags).ok()?;
        let mut previous: Option<&[u8]> = None;
        for _ in 0..tags {
            let key = self.str()?;
            if previous.is_some_and(|p| p >= key) {
                return None;
            }
            check_field(key, MAX_FIELD_BYTES, true).ok()?;
            previous = Some(key);
            check_field(self.str()?, MAX_META_VALUE_BYTES, false).ok()?;
        }
        Some(WireNode {
            name,
            up,
            address: &self.bytes[address..self.pos],
            bytes: &self.bytes[start..self.pos],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;
    use crate::event::{Event, NodeInfo, NodeStatus, Update};
    use proptest::prelude::*;

    fn encoded(update: &Update) -> Vec<u8> {
        codec::encode(update, "update").unwrap()
    }

    #[test]
    fn an_encoded_incremental_update_reads_as_its_nodes() {
        let mut ev = Event::with_node("b", NodeStatus::Down, "10.0.0.2", 443);
        ev.add_node(NodeInfo::new("a", NodeStatus::Up, "h", 80).with_meta("zone", "eu"));
        let record = encoded(&Update::Incremental(ev.clone()));
        let view = WireIncremental::parse(&record).expect("canonical");
        assert_eq!(view.len(), 2);
        assert_eq!(view.event_bytes(), &record[1..]);
        let nodes: Vec<_> = view.nodes().collect();
        assert_eq!((nodes[0].name, nodes[0].up), (&b"a"[..], true));
        assert_eq!((nodes[1].name, nodes[1].up), (&b"b"[..], false));
        // A node's bytes are its encoding; the address part is host, port, meta.
        let a = ev.get("a").unwrap();
        assert_eq!(nodes[0].bytes, codec::encode(a, "node").unwrap());
        assert_eq!(
            nodes[0].address,
            codec::encode(&(&a.host, a.port, &a.meta), "address").unwrap()
        );
    }

    #[test]
    fn what_is_not_canonical_is_left_to_the_decoder() {
        let one = |name: &str| Event::with_node(name, NodeStatus::Up, "h", 300);
        // A full list.
        assert!(WireIncremental::parse(&encoded(&Update::Full(one("a")))).is_none());
        let good = encoded(&Update::Incremental(one("a")));
        assert!(WireIncremental::parse(&good).is_some());
        // Trailing bytes, a cut record, an empty one.
        let mut longer = good.clone();
        longer.push(0);
        assert!(WireIncremental::parse(&longer).is_none());
        for cut in 0..good.len() {
            assert!(
                WireIncremental::parse(&good[..cut]).is_none(),
                "cut at {cut}"
            );
        }
        // A non-minimal varint for the port (300 is [251, 44, 1]; 80 as [251, 80, 0]).
        let port = good.len() - 4;
        assert_eq!(&good[port..port + 3], &[251, 44, 1]);
        let mut wide = good.clone();
        wide[port..port + 3].copy_from_slice(&[251, 80, 0]);
        assert!(WireIncremental::parse(&wide).is_none());
        // An unknown status.
        let mut status = good.clone();
        status[4] = 7;
        assert!(WireIncremental::parse(&status).is_none());
        // Names out of order or repeated: hand-built, as our encoder never writes them.
        let node = |name: &str| codec::encode(&NodeInfo::new(name, NodeStatus::Up, "h", 1), "n");
        for names in [["b", "a"], ["a", "a"]] {
            let mut record = vec![INCREMENTAL, 2];
            for name in names {
                record.extend(node(name).unwrap());
            }
            assert!(WireIncremental::parse(&record).is_none(), "{names:?}");
            let update: Update = codec::decode(&record, "update").unwrap();
            assert_eq!(update.event().len(), if names[0] == "a" { 1 } else { 2 });
        }
        // Not UTF-8.
        let mut bad = good.clone();
        bad[3] = 0xFF;
        assert!(WireIncremental::parse(&bad).is_none());
        // Nodes that break a rule of `NodeInfo::check`: the decoder's path names it.
        for bad in [
            NodeInfo::new("", NodeStatus::Up, "h", 1),
            NodeInfo::new("a\nb", NodeStatus::Up, "h", 1),
            NodeInfo::new("a", NodeStatus::Up, "h", 0),
            NodeInfo::new("a", NodeStatus::Up, "h\u{1b}", 1),
            NodeInfo::new("a", NodeStatus::Up, "h", 1).with_meta("k", "v\r"),
        ] {
            let record = encoded(&Update::Incremental(std::iter::once(bad.clone()).collect()));
            assert!(WireIncremental::parse(&record).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn varint_writes_what_bincode_writes() {
        for n in [0u64, 250, 251, 65_535, 65_536, u32::MAX as u64, u64::MAX] {
            let (bytes, len) = varint(n);
            assert_eq!(bytes[..len], codec::encode(&n, "n").unwrap(), "{n}");
            assert_eq!(Cursor::new(&bytes[..len]).varint(), Some(n));
        }
    }

    /// Nodes from these strategies for the name, host, port and meta.
    fn nodes_of(
        name: &'static str,
        host: &'static str,
        port: impl Strategy<Value = u16>,
        meta: (&'static str, &'static str),
    ) -> impl Strategy<Value = NodeInfo> {
        let meta = prop::collection::btree_map(meta.0, meta.1, 0..3);
        (name, any::<bool>(), host, port, meta).prop_map(|(name, up, host, port, meta)| NodeInfo {
            name,
            status: if up { NodeStatus::Up } else { NodeStatus::Down },
            host,
            port,
            meta,
        })
    }

    /// Nodes that keep the rules of `NodeInfo::check`.
    fn node() -> impl Strategy<Value = NodeInfo> {
        nodes_of(
            "[a-z\u{e9}]{1,12}",
            "[0-9.]{1,255}",
            1..=u16::MAX,
            ("[a-z]{1,3}", "[a-z]{0,4}"),
        )
    }

    /// Nodes that may break a rule: empty, long or control-character strings, port 0.
    fn any_node() -> impl Strategy<Value = NodeInfo> {
        let meta = ("[a-z\r]{1,3}", "[a-z\u{1b}]{0,4}");
        nodes_of(
            "[a-z\u{e9}\n\u{2028}]{0,12}",
            "[0-9.\t]{0,300}",
            any::<u16>(),
            meta,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// An update is read in place exactly when every node keeps the rules of
        /// `NodeInfo::check`; one with a node that breaks a rule is left to the decoder.
        #[test]
        fn only_updates_of_valid_nodes_are_read_in_place(
            nodes in prop::collection::vec(any_node(), 0..8),
        ) {
            let ev: Event = nodes.into_iter().collect();
            let record = encoded(&Update::Incremental(ev.clone()));
            let valid = ev.nodes().all(|n| n.check().is_ok());
            prop_assert_eq!(WireIncremental::parse(&record).is_some(), valid);
        }

        /// Every incremental update our encoder writes of valid nodes is canonical and
        /// reads back as the nodes the decoder finds.
        #[test]
        fn encoded_updates_read_as_the_decoder_reads_them(
            nodes in prop::collection::vec(node(), 0..300),
        ) {
            let ev: Event = nodes.into_iter().collect();
            let record = encoded(&Update::Incremental(ev.clone()));
            let view = WireIncremental::parse(&record).expect("our encoder is canonical");
            prop_assert_eq!(view.len(), ev.len());
            for (wire, node) in view.nodes().zip(ev.nodes()) {
                prop_assert_eq!(wire.name, node.name.as_bytes());
                prop_assert_eq!(wire.up, node.is_up());
                let decoded: NodeInfo = codec::decode(wire.bytes, "node").unwrap();
                prop_assert_eq!(&decoded, node);
            }
            // The spans give the same nodes.
            let mut spans = vec![];
            let view = WireIncremental::parse_spans(&record, &mut spans).expect("canonical");
            prop_assert_eq!(spans.len(), ev.len());
            for (span, wire) in spans.iter().zip(view.nodes()) {
                prop_assert_eq!(span.node(view.event_bytes()), wire);
                prop_assert_eq!(span.name(view.event_bytes()), wire.name);
            }
        }

        /// Whatever the bytes, parsing never panics, and what it accepts decodes to the
        /// same nodes.
        #[test]
        fn any_bytes_it_accepts_decode_alike(
            nodes in prop::collection::vec(node(), 0..4),
            flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        ) {
            let ev: Event = nodes.into_iter().collect();
            let mut record = encoded(&Update::Incremental(ev));
            for (at, byte) in flips {
                let i = at.index(record.len());
                record[i] = byte;
            }
            let mut spans = vec![];
            prop_assert_eq!(
                WireIncremental::parse_spans(&record, &mut spans).is_some(),
                WireIncremental::parse(&record).is_some()
            );
            if let Some(view) = WireIncremental::parse(&record) {
                let update: Update = codec::decode(&record, "update").expect("accepted bytes decode");
                let Update::Incremental(decoded) = update else {
                    panic!("accepted a full list");
                };
                prop_assert_eq!(view.len(), decoded.len());
                for (wire, node) in view.nodes().zip(decoded.nodes()) {
                    prop_assert!(node.check().is_ok(), "the fast path accepted {:?}", node);
                    prop_assert_eq!(wire.name, node.name.as_bytes());
                    prop_assert_eq!(wire.up, node.is_up());
                    prop_assert_eq!(wire.address, codec::encode(&(&node.host, node.port, &node.meta), "a").unwrap());
                }
            }
        }
    }
}
