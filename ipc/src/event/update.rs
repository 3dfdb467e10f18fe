//! What a watcher reports: an incremental change or its full list of up nodes.
//!
//! Watchers of the first kind see changes ("node3 went down"); watchers of the second
//! kind only see the whole picture now and then (a directory listing, an API that
//! returns every instance). An [`Update`] carries either; the host's [`super::Book`] for
//! the watcher turns both into the same stream of real changes.
//!
//! # Full lists in pieces
//! A full list of tens of thousands of nodes is larger than one ring record may be, so
//! it may go over in pieces: [`Update::FullStart`], any number of [`Update::FullPart`],
//! and [`Update::FullEnd`]. The book keeps the pieces aside and applies the whole list
//! when its end arrives: the nodes missing from the *whole* list go down, never the
//! ones missing from the first piece, and nothing of a list is published before all of
//! it is there. Within a list a later entry of a node replaces an earlier one, so an
//! entry marked down takes the node out of the list. A `FullStart` or a whole
//! [`Update::Full`] discards a list still in progress (the watcher replaced it before it
//! was all sent); changes that arrive between the pieces apply at once, before the list.
//! A `FullPart` or `FullEnd` with no list in progress is a stray piece: the host refuses
//! it (see [`Book::accepts`](super::Book::accepts)).
//!
//! The variant order is the wire format: `Incremental` is 0, `Full` 1, `FullStart` 2,
//! `FullPart` 3, `FullEnd` 4 (see [`super::wire`]).

use bincode::{Decode, Encode};

use super::Event;

/// One report of a watcher.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum Update {
    /// These nodes changed; nodes not named are as they were.
    Incremental(Event),
    /// These are all the nodes up now; nodes not named are down.
    Full(Event),
    /// The first piece of a full list that goes over in pieces.
    FullStart(Event),
    /// A further piece of the full list in progress.
    FullPart(Event),
    /// The last piece of the full list in progress: the list applies now.
    FullEnd(Event),
}

impl Update {
    /// The nodes the update names.
    pub fn event(&self) -> &Event {
        match self {
            Update::Incremental(ev)
            | Update::Full(ev)
            | Update::FullStart(ev)
            | Update::FullPart(ev)
            | Update::FullEnd(ev) => ev,
        }
    }

    /// The nodes the update names, to change.
    pub fn event_mut(&mut self) -> &mut Event {
        match self {
            Update::Incremental(ev)
            | Update::Full(ev)
            | Update::FullStart(ev)
            | Update::FullPart(ev)
            | Update::FullEnd(ev) => ev,
        }
    }

    /// Whether this is a full list or a piece of one.
    pub fn is_full(&self) -> bool {
        !matches!(self, Update::Incremental(_))
    }

    /// Whether this ends a full list in pieces.
    pub fn is_full_end(&self) -> bool {
        matches!(self, Update::FullEnd(_))
    }
}

impl super::Book {
    /// Whether `update` fits the book's state: a `FullPart` or `FullEnd` needs a list in
    /// progress. The host refuses a stray piece; [`apply`](Self::apply) takes one as
    /// if its list had started empty.
    pub fn accepts(&self, update: &Update) -> bool {
        match update {
            Update::FullPart(_) | Update::FullEnd(_) => self.staged_len().is_some(),
            _ => true,
        }
    }

    /// Applies an update of either kind and returns the real changes, if any. A piece of
    /// a full list is kept aside (see the module docs) and changes nothing until the
    /// list's [`Update::FullEnd`].
    pub fn apply(&mut self, update: Update) -> Option<Event> {
        match update {
            Update::Incremental(ev) => self.update_inc(ev),
            Update::Full(list) => {
                self.discard_staged();
                self.update_full(list)
            }
            Update::FullEnd(last) => match self.take_staged() {
                Some(mut list) => {
                    list.merge(last);
                    self.update_full(list)
                }
                None => self.update_full(last),
            },
            Update::FullStart(first) => {
                self.stage(first, true);
                None
            }
            Update::FullPart(piece) => {
                self.stage(piece, false);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::codec;
    use crate::event::{Book, Framing, NodeInfo, NodeStatus, Pending};

    fn up(name: &str, port: u16) -> NodeInfo {
        NodeInfo::new(name, NodeStatus::Up, "10.0.0.1", port)
    }

    fn list(names: &[&str]) -> Event {
        names.iter().map(|n| up(n, 80)).collect()
    }

    fn book_of(names: &[&str]) -> Book {
        let mut book = Book::new();
        book.apply(Update::Full(list(names)));
        book
    }

    /// Guards the meaning of a list in pieces: the nodes missing from the whole list go
    /// down, not those missing from the first piece, and only once the list is whole.
    #[test]
    fn pieces_apply_as_one_list_when_the_last_arrives() {
        let mut book = book_of(&["a", "b", "c", "d", "e", "f"]);
        assert_eq!(book.apply(Update::FullStart(list(&["a", "b"]))), None);
        assert_eq!(book.apply(Update::FullPart(list(&["c", "x"]))), None);
        assert_eq!(book.len(), 6, "nothing changes before the last piece");
        assert_eq!(book.staged_len(), Some(4));
        let changes = book.apply(Update::FullEnd(list(&["e"]))).expect("changes");
        let mut expected: Event = ["d", "f"]
            .iter()
            .map(|n| NodeInfo::new(*n, NodeStatus::Down, "10.0.0.1", 80))
            .collect();
        expected.add_node(up("x", 80));
        assert_eq!(changes, expected);
        assert_eq!(book.staged_len(), None);
    }

    #[test]
    fn a_new_start_discards_the_list_in_progress() {
        let mut book = book_of(&["a", "b"]);
        book.apply(Update::FullStart(list(&["x"])));
        book.apply(Update::FullPart(list(&["y"])));
        book.apply(Update::FullStart(list(&["a"])));
        let changes = book.apply(Update::FullEnd(list(&["b"])));
        assert_eq!(changes, None, "x and y were never in the list that ended");
    }

    #[test]
    fn a_later_entry_replaces_an_earlier_one_within_a_list() {
        let mut book = book_of(&["a", "b"]);
        book.apply(Update::FullStart(list(&["a", "b"])));
        let gone = NodeInfo::new("b", NodeStatus::Down, "", 0);
        book.apply(Update::FullPart(std::iter::once(gone).collect()));
        let changes = book.apply(Update::FullEnd(Event::new())).expect("b goes");
        assert_eq!(changes.len(), 1);
        assert_eq!(changes.get("b").unwrap().status, NodeStatus::Down);
    }

    #[test]
    fn changes_between_pieces_apply_at_once_and_the_list_after_them() {
        let mut book = book_of(&["a"]);
        book.apply(Update::FullStart(list(&["a"])));
        let changed = book.apply(Update::Incremental(list(&["z"])));
        assert_eq!(changed, Some(list(&["z"])));
        // The list, which does not name z, ends after it: z goes down again.
        let changes = book.apply(Update::FullEnd(Event::new())).expect("z goes");
        assert_eq!(changes.get("z").unwrap().status, NodeStatus::Down);
    }

    /// Review finding: `Full` used to end a list in progress too, so a stray piece (a
    /// `FullPart` with no start, or leftovers of an earlier session) came up at the next
    /// whole list. A whole list discards what is staged, and a stray piece is refused.
    #[test]
    fn a_whole_list_never_picks_up_stray_pieces() {
        let mut book = book_of(&["a"]);
        let stray = Update::FullPart(list(&["ghost"]));
        assert!(!book.accepts(&stray), "no list in progress");
        assert!(!book.accepts(&Update::FullEnd(Event::new())));
        book.apply(Update::FullStart(list(&["ghost"])));
        assert!(book.accepts(&stray));
        book.apply(Update::Full(list(&["a"])));
        assert_eq!(book.full(), list(&["a"]), "the ghost never came up");
        assert_eq!(book.staged_len(), None);
    }

    #[test]
    fn a_pending_log_framed_as_full_parts_decodes_to_pieces() {
        let mut pending = Pending::new(Framing::FullPart);
        pending.push_event(&list(&["a", "b", "c"]));
        let piece = pending.piece(2);
        assert_eq!(piece.records.len(), 1);
        let update: Update = codec::decode(piece.records.iter().next().unwrap(), "u").unwrap();
        assert_eq!(update, Update::FullPart(list(&["a", "b"])));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(
            std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64)
        ))]

        /// A list cut into pieces anywhere changes a book exactly as the whole list does.
        #[test]
        fn a_list_in_pieces_is_the_whole_list(
            before in prop::collection::btree_set(0..200u32, 0..60),
            after in prop::collection::btree_set(0..200u32, 0..60),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..5),
        ) {
            let node = |i: &u32| up(&format!("n{i:03}"), 80 + (i % 3) as u16);
            let mut whole = Book::new();
            whole.apply(Update::Full(before.iter().map(node).collect()));
            let mut pieces = whole.clone();
            let nodes: Vec<NodeInfo> = after.iter().map(node).collect();
            let expected = whole.apply(Update::Full(nodes.iter().cloned().collect()));
            let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(nodes.len() + 1)).collect();
            cuts.sort_unstable();
            let mut start = 0;
            let mut first = true;
            for cut in cuts {
                let piece: Event = nodes[start..cut].iter().cloned().collect();
                let update = if first { Update::FullStart(piece) } else { Update::FullPart(piece) };
                prop_assert_eq!(pieces.apply(update), None);
                first = false;
                start = cut;
            }
            let last: Event = nodes[start..].iter().cloned().collect();
            let got = pieces.apply(if first { Update::Full(last) } else { Update::FullEnd(last) });
            prop_assert_eq!(got, expected);
            prop_assert_eq!(pieces.full(), whole.full());
        }
    }
}
