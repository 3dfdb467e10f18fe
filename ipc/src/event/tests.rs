//! Tests of the event model: the behaviours the original Go receptor checked for its book,
//! and properties over arbitrary event sequences.

use super::*;
use proptest::prelude::*;

fn up(name: &str, host: &str, port: u16) -> NodeInfo {
    NodeInfo::new(name, NodeStatus::Up, host, port)
}

fn down(name: &str, host: &str, port: u16) -> NodeInfo {
    NodeInfo::new(name, NodeStatus::Down, host, port)
}

fn names(ev: &Event) -> Vec<&str> {
    ev.nodes().map(|n| n.name.as_str()).collect()
}

/// The capacity of a vector-form event.
fn capacity(ev: &Event) -> usize {
    match &ev.nodes {
        Nodes::Small(list) => list.capacity(),
        Nodes::Large(_) => 0,
    }
}

#[test]
fn a_decoded_event_reserves_its_nodes_once_and_a_forged_count_reserves_nothing() {
    let ev: Event = (0..1000)
        .map(|i| up(&format!("n{i:04}"), "10.0.0.1", 80))
        .collect();
    let bytes = crate::codec::encode(&ev, "event").unwrap();
    let decoded: Event = crate::codec::decode(&bytes, "event").unwrap();
    assert_eq!(decoded, ev);
    assert_eq!(capacity(&decoded), 1000, "reserved once, not grown");
    // A count of 2^40 nodes in front of one node's bytes: an error, and no attempt to
    // reserve terabytes (that would abort the test).
    let (count, n) = wire::varint(1 << 40);
    let mut forged = count[..n].to_vec();
    forged.extend_from_slice(&crate::codec::encode(&up("a", "h", 1), "node").unwrap());
    assert!(crate::codec::decode::<Event>(&forged, "event").is_err());
}

#[test]
fn later_entry_for_a_name_replaces_the_earlier() {
    let mut ev = Event::with_node("n1", NodeStatus::Up, "127.0.0.1", 80);
    let replaced = ev.add_node(down("n1", "127.0.0.1", 80));
    assert_eq!(replaced, Some(up("n1", "127.0.0.1", 80)));
    assert_eq!(ev.len(), 1);
    assert_eq!(ev.get("n1").unwrap().status, NodeStatus::Down);
}

#[test]
fn merge_keeps_the_latest_per_node_and_the_rest() {
    let mut ev: Event = [up("a", "h", 1), up("b", "h", 2)].into_iter().collect();
    ev.merge([down("b", "h", 2), up("c", "h", 3)].into_iter().collect());
    assert_eq!(names(&ev), ["a", "b", "c"]);
    assert_eq!(ev.get("b").unwrap().status, NodeStatus::Down);
}

#[test]
fn event_serialises_to_json_as_a_list_of_nodes() {
    let mut ev = Event::with_node("n1", NodeStatus::Up, "h", 80);
    ev.add_node(NodeInfo::new("n2", NodeStatus::Down, "g", 81).with_meta("zone", "eu"));
    let json = serde_json::to_string(&ev).unwrap();
    assert_eq!(
        json,
        r#"[{"name":"n1","status":"up","host":"h","port":80},{"name":"n2","status":"down","host":"g","port":81,"meta":{"zone":"eu"}}]"#
    );
    assert_eq!(serde_json::from_str::<Event>(&json).unwrap(), ev);
}

// ---- Book (Go: TestBookUpdateInc, TestBookUpdateFull, TestBookFull, TestBookkeeper*) ----

#[test]
fn book_update_inc_passes_changes_and_drops_repeats() {
    let mut book = Book::new();
    let ev = book
        .update_inc(up("Node1", "127.0.0.1", 80).into_event())
        .expect("first up is a change");
    assert_eq!(names(&ev), ["Node1"]);

    assert_eq!(
        book.update_inc(up("Node1", "127.0.0.1", 80).into_event()),
        None,
        "repeated up"
    );

    let ev = book
        .update_inc(down("Node1", "127.0.0.1", 80).into_event())
        .expect("down is a change");
    assert_eq!(ev.get("Node1").unwrap().status, NodeStatus::Down);

    assert_eq!(
        book.update_inc(down("NodeUnknown", "127.0.0.1", 80).into_event()),
        None,
        "down of a node never seen"
    );
    assert!(book.is_empty());
}

#[test]
fn book_update_inc_forwards_an_address_change() {
    let mut book = Book::new();
    book.update_inc(up("n", "10.0.0.1", 80).into_event());
    let ev = book
        .update_inc(up("n", "10.0.0.1", 81).into_event())
        .expect("port change");
    assert_eq!(ev.get("n").unwrap().port, 81);
    let ev = book
        .update_inc(
            up("n", "10.0.0.1", 81)
                .with_meta("weight", "5")
                .into_event(),
        )
        .expect("meta change");
    assert_eq!(ev.get("n").unwrap().meta["weight"], "5");
}

#[test]
fn book_update_full_reports_new_changed_and_missing_nodes() {
    let mut book = Book::new();
    let first = [
        up("Node1", "127.0.0.1", 80),
        up("Node2", "127.0.0.2", 81),
        up("Node3", "127.0.0.3", 83),
    ];
    let ev = book.update_full(first).expect("three new nodes");
    assert_eq!(ev.len(), 3);

    // Node1 unchanged, Node2 changed port, Node3 missing, Node4 new.
    let second = [
        up("Node1", "127.0.0.1", 80),
        up("Node2", "127.0.0.2", 87),
        up("Node4", "127.0.0.4", 84),
    ];
    let ev = book.update_full(second.clone()).expect("changes");
    assert_eq!(names(&ev), ["Node2", "Node3", "Node4"]);
    assert_eq!(ev.get("Node2").unwrap().port, 87);
    assert_eq!(ev.get("Node3").unwrap().status, NodeStatus::Down);
    assert_eq!(
        ev.get("Node3").unwrap().host,
        "127.0.0.3",
        "a down node keeps its last address"
    );
    assert_eq!(ev.get("Node4"), Some(&up("Node4", "127.0.0.4", 84)));

    assert_eq!(
        book.update_full(second),
        None,
        "same list again changes nothing"
    );
}

#[test]
fn book_update_full_ignores_down_entries() {
    let mut book = Book::new();
    book.update_full([up("a", "h", 1), up("b", "h", 2)]);
    // `b` marked down in a full list counts as missing, `c` down is never seen.
    let ev = book
        .update_full([up("a", "h", 1), down("b", "h", 2), down("c", "h", 3)])
        .unwrap();
    assert_eq!(names(&ev), ["b"]);
    assert_eq!(ev.get("b").unwrap().status, NodeStatus::Down);
}

#[test]
fn book_full_returns_every_up_node() {
    let mut book = Book::new();
    book.update_full([
        up("Node1", "127.0.0.1", 80),
        up("Node2", "127.0.0.2", 87),
        up("Node4", "127.0.0.4", 84),
    ]);
    assert_eq!(names(&book.full()), ["Node1", "Node2", "Node4"]);
    assert!(
        Book::new().full().is_empty(),
        "an empty book gives an empty event"
    );
}

#[test]
fn book_after_increments_keeps_only_up_nodes() {
    // Go: TestBookkeeperReceiver, the full set after each incremental event.
    let mut book = Book::new();
    book.update_inc(up("Node1", "127.0.0.1", 80).into_event());
    assert_eq!(names(&book.full()), ["Node1"]);
    book.update_inc(up("Node2", "127.0.0.1", 81).into_event());
    assert_eq!(names(&book.full()), ["Node1", "Node2"]);
    book.update_inc(down("Node1", "127.0.0.1", 80).into_event());
    assert_eq!(names(&book.full()), ["Node2"]);
}

#[test]
fn book_full_then_inc_down_then_full_again() {
    // Go: TestBookkeeperFull.
    let mut book = Book::new();
    let list = [
        up("Node1", "127.0.0.1", 80),
        up("Node2", "127.0.0.2", 81),
        up("Node3", "127.0.0.3", 83),
    ];
    assert_eq!(book.update_full(list.clone()).unwrap().len(), 3);
    let ev = book
        .update_inc(down("Node1", "127.0.0.1", 80).into_event())
        .unwrap();
    assert_eq!(ev.get("Node1").unwrap().status, NodeStatus::Down);
    let ev = book.update_full(list).unwrap();
    assert_eq!(names(&ev), ["Node1"]);
    assert_eq!(ev.get("Node1").unwrap().status, NodeStatus::Up);
}

#[test]
fn book_keeps_tags_long_and_unicode_names_exactly() {
    let long = "n".repeat(300);
    let nodes = vec![
        up("web-1", "10.0.0.1", 80)
            .with_meta("zone", "a")
            .with_meta("weight", "3"),
        up(&long, "h", 1),
        up(&"m".repeat(254), "h", 2),
        up(&"o".repeat(255), "h", 3),
        up("nœud-ü", "::1", 65535),
    ];
    let mut book = Book::new();
    book.update_inc(nodes.clone().into_iter().collect())
        .unwrap();
    let full = book.full();
    assert_eq!(full.nodes().cloned().collect::<Vec<_>>(), {
        let mut sorted = nodes.clone();
        sorted.sort_by(|a, b| a.name.cmp(&b.name));
        sorted
    });
    assert!(book.is_up(&long) && book.is_up("nœud-ü"));
    // The same again is no change; a tag alone changing is one.
    assert_eq!(book.update_inc(nodes[0].clone().into_event()), None);
    let retagged = nodes[0].clone().with_meta("zone", "b");
    assert_eq!(
        book.update_inc(retagged.clone().into_event()),
        Some(retagged.into_event())
    );
}

#[test]
fn events_in_name_order_and_out_of_it_hold_the_same_nodes() {
    let nodes: Vec<NodeInfo> = (0..100).map(|i| up(&format!("n{i:03}"), "h", i)).collect();
    let in_order: Event = nodes.iter().cloned().collect();
    let reversed: Event = nodes.iter().rev().cloned().collect();
    assert_eq!(in_order, reversed);
    assert_eq!(in_order.len(), 100);
    let mut split = in_order.clone();
    let first = split.split_first(40);
    assert_eq!(first.len(), 40);
    assert_eq!(split.len(), 60);
    assert_eq!(first.nodes().last().unwrap().name, "n039");
    assert_eq!(split.get("n040").unwrap().port, 40);
    let mut merged = first;
    merged.merge(split);
    assert_eq!(merged, in_order);
}

trait IntoEvent {
    fn into_event(self) -> Event;
}

impl IntoEvent for NodeInfo {
    fn into_event(self) -> Event {
        std::iter::once(self).collect()
    }
}

// ---- Properties ----

fn arb_node() -> impl Strategy<Value = NodeInfo> {
    (0..40u8, any::<bool>(), 0..3u8, 1..5u16, 0..3u8).prop_map(|(name, is_up, host, port, zone)| {
        let status = if is_up {
            NodeStatus::Up
        } else {
            NodeStatus::Down
        };
        let node = NodeInfo::new(format!("n{name}"), status, format!("10.0.0.{host}"), port);
        // Tags on some nodes: a change of tags alone is a change.
        match zone {
            0 => node,
            z => node.with_meta("zone", format!("z{z}")),
        }
    })
}

/// Events of up to 40 nodes: past the vector form's insertion limit, built in and out
/// of name order.
fn arb_event() -> impl Strategy<Value = Event> {
    prop::collection::vec(arb_node(), 0..40).prop_map(|nodes| nodes.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// `update_full` then `full()` returns exactly the up nodes given (the last per name).
    #[test]
    fn update_full_then_full_is_the_up_nodes_given(
        before in prop::collection::vec(arb_node(), 0..10),
        list in prop::collection::vec(arb_node(), 0..10),
    ) {
        let mut book = Book::new();
        book.update_full(before);
        book.update_full(list.clone());
        let given: Event = list.into_iter().filter(NodeInfo::is_up).collect();
        prop_assert_eq!(book.full(), given);
    }

    /// The changes the book reports, applied to the state before, give the state after.
    #[test]
    fn book_changes_replay_to_the_same_state(events in prop::collection::vec(arb_event(), 0..30)) {
        let mut book = Book::new();
        let mut replica = Book::new();
        for ev in events {
            if let Some(change) = book.update_inc(ev) {
                prop_assert!(replica.update_inc(change).is_some(), "a reported change is a change");
            }
            prop_assert_eq!(replica.full(), book.full());
        }
    }

    /// A book fed encoded updates in place finds exactly the changes, and ends in exactly
    /// the state, of a book fed the decoded updates (full lists go the decoded way).
    #[test]
    fn encoded_updates_change_a_book_as_decoded_ones_do(
        updates in prop::collection::vec((prop::bool::weighted(0.1), arb_event()), 0..30),
    ) {
        let mut decoded = Book::new();
        let mut encoded = Book::new();
        for (full, ev) in updates {
            let update = if full { Update::Full(ev) } else { Update::Incremental(ev) };
            let record = crate::codec::encode(&update, "update").unwrap();
            let expected = decoded.apply(update.clone());
            let mut out = Vec::new();
            let got = match encoded.apply_encoded(&record, &mut out) {
                Some(()) => (!out.is_empty())
                    .then(|| crate::codec::decode::<Event>(&out, "changes").unwrap()),
                None => {
                    prop_assert!(update.is_full(), "our encoder writes canonical updates");
                    encoded.apply(update)
                }
            };
            prop_assert_eq!(got, expected);
            prop_assert_eq!(encoded.full(), decoded.full());
        }
    }

    /// Events survive the wire unchanged.
    #[test]
    fn event_encoding_round_trips(ev in arb_event()) {
        let bytes = crate::codec::encode(&ev, "event").unwrap();
        prop_assert_eq!(crate::codec::decode::<Event>(&bytes, "event").unwrap(), ev);
    }

    /// Arbitrary bytes decode to an event or an error, never a panic.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = crate::codec::decode::<Event>(&bytes, "event");
    }
}
