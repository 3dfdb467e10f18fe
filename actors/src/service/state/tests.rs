use std::sync::{Arc, Mutex};

use ipc::event::{Framing, NodeInfo, NodeStatus, Pending};

use super::*;

/// A sink with room for `capacity` records, recording what it received.
#[derive(Clone, Default)]
struct VecSink {
    inner: Arc<Mutex<SinkInner>>,
}

#[derive(Default)]
struct SinkInner {
    received: Vec<Event>,
    capacity: usize,
    closed: bool,
}

impl VecSink {
    fn with_capacity(capacity: usize) -> Self {
        let sink = VecSink::default();
        sink.inner.lock().unwrap().capacity = capacity;
        sink
    }

    /// Takes what was received and frees the room it used.
    fn take(&self) -> Vec<Event> {
        let mut inner = self.inner.lock().unwrap();
        inner.capacity += inner.received.len();
        std::mem::take(&mut inner.received)
    }

    fn close(&self) {
        self.inner.lock().unwrap().closed = true;
    }
}

impl EventSink for VecSink {
    fn try_push(&mut self, records: &Records) -> Result<usize, SinkClosed> {
        let mut inner = self.inner.lock().unwrap();
        if inner.closed {
            return Err(SinkClosed("test sink closed".into()));
        }
        let n = records.len().min(inner.capacity);
        for record in records.iter().take(n) {
            inner.received.push(codec::decode(record, "event").unwrap());
        }
        inner.capacity -= n;
        Ok(n)
    }

    fn is_consumed(&self) -> bool {
        self.inner.lock().unwrap().received.is_empty()
    }
}

/// What [`ApplyOne::apply`] did.
struct Applied {
    /// The real changes published (`None` when the update changed nothing).
    changes: Option<Event>,
    /// Reactors whose sink was full.
    congested: Vec<String>,
}

/// One decoded update through the pump's path ([`ServiceState::apply_records`]).
trait ApplyOne {
    fn apply(&mut self, watcher: &str, update: Update) -> Applied;
}

impl ApplyOne for ServiceState {
    fn apply(&mut self, watcher: &str, update: Update) -> Applied {
        let record = codec::encode(&update, "update").unwrap();
        let batch = self.apply_records(watcher, [record.as_slice()]);
        assert!(batch.bad_record.is_none());
        // The batch's encoded changes stay in `changes` until the next batch.
        Applied {
            changes: self
                .changes
                .get(0)
                .map(|c| codec::decode(c, "change").unwrap()),
            congested: batch.congested,
        }
    }
}

fn up(name: &str, port: u16) -> Update {
    Update::Incremental(Event::with_node(name, NodeStatus::Up, "10.0.0.1", port))
}

fn down(name: &str) -> Update {
    Update::Incremental(Event::with_node(name, NodeStatus::Down, "10.0.0.1", 1))
}

/// Applies the events a reactor received to a book: the reactor's view of the world.
fn view(events: &[Event]) -> Event {
    let mut book = Book::new();
    for ev in events {
        book.update_inc(ev.clone());
    }
    book.full()
}

/// A service with a reactor "fast" that has room for everything and a reactor "slow"
/// with room for `slow_room` records.
fn fast_and_slow(slow_room: usize) -> (ServiceState, VecSink, VecSink) {
    let mut svc = ServiceState::new("web");
    let (fast, slow) = (
        VecSink::with_capacity(1000),
        VecSink::with_capacity(slow_room),
    );
    svc.attach_reactor("fast", Box::new(fast.clone()));
    svc.attach_reactor("slow", Box::new(slow.clone()));
    (svc, fast, slow)
}

#[test]
fn changes_reach_every_reactor_and_repeats_are_dropped() {
    let mut svc = ServiceState::new("web");
    let (a, b) = (VecSink::with_capacity(100), VecSink::with_capacity(100));
    svc.attach_reactor("a", Box::new(a.clone()));
    svc.attach_reactor("b", Box::new(b.clone()));
    assert!(svc.apply("w", up("n1", 1)).changes.is_some());
    assert!(
        svc.apply("w", up("n1", 1)).changes.is_none(),
        "a repeated up is not a change"
    );
    assert!(
        svc.apply("w", down("n2")).changes.is_none(),
        "a down for a node never seen is not a change"
    );
    assert_eq!(a.take().len(), 1);
    assert_eq!(b.take().len(), 1);
    assert_eq!(svc.stats().updates_in, 3);
    assert_eq!(svc.stats().changes_out, 1);
}

#[test]
fn a_full_reactor_coalesces_without_holding_the_others() {
    let (mut svc, fast, slow) = fast_and_slow(1);
    let mut congested = Vec::new();
    for i in 0..50u16 {
        let update = if i % 2 == 0 {
            up("n", i + 1)
        } else {
            down("n")
        };
        congested.extend(svc.apply("w", update).congested);
    }
    assert!(
        congested.iter().all(|r| r == "slow") && !congested.is_empty(),
        "{congested:?}"
    );
    assert_eq!(fast.take().len(), 50, "the fast reactor got every change");
    assert!(svc.is_congested("slow"));
    // The slow reactor catches up: its backlog arrives as one coalesced event.
    let first = slow.take();
    assert_eq!(first.len(), 1);
    assert_eq!(svc.flush_reactor("slow"), Flush::Done);
    let rest = slow.take();
    assert_eq!(rest.len(), 1, "the backlog was coalesced into one event");
    let all: Vec<Event> = first.into_iter().chain(rest).collect();
    assert_eq!(
        view(&all),
        svc.current(),
        "the slow reactor ends at the true final state"
    );
    assert!(!svc.is_congested("slow"));
}

#[test]
fn flush_waits_while_the_sink_is_full() {
    let mut svc = ServiceState::new("web");
    let sink = VecSink::with_capacity(0);
    assert_eq!(
        svc.attach_reactor("r", Box::new(sink.clone())).1,
        Flush::Done,
        "nothing to send yet"
    );
    svc.apply("w", up("n1", 1));
    assert_eq!(svc.flush_reactor("r"), Flush::Pending);
    sink.inner.lock().unwrap().capacity = 1;
    assert_eq!(svc.flush_reactor("r"), Flush::Done);
    assert_eq!(view(&sink.take()), svc.current());
}

#[test]
fn a_restarted_reactor_gets_the_full_state_first() {
    let mut svc = ServiceState::new("web");
    let old = VecSink::with_capacity(100);
    svc.attach_reactor("r", Box::new(old.clone()));
    svc.apply("w1", up("n1", 1));
    svc.apply("w2", up("n2", 2));
    old.close();
    svc.apply("w1", down("n1")); // the reactor is gone: this waits in its backlog
    svc.apply("w2", up("n3", 3));
    let fresh = VecSink::with_capacity(100);
    assert_eq!(
        svc.attach_reactor("r", Box::new(fresh.clone())).1,
        Flush::Done
    );
    svc.apply("w1", up("n4", 4));
    let received = fresh.take();
    assert_eq!(received.len(), 2, "the state first, then the live stream");
    let names: Vec<&str> = received[0].nodes().map(|n| n.name.as_str()).collect();
    assert_eq!(
        names,
        ["n2", "n3"],
        "the first event is the full current state"
    );
    assert!(received[0].nodes().all(NodeInfo::is_up));
    assert_eq!(view(&received), svc.current());
}

#[test]
fn a_late_detach_of_a_replaced_session_leaves_the_new_one_attached() {
    let mut svc = ServiceState::new("web");
    let old = VecSink::with_capacity(100);
    let (old_attachment, _) = svc.attach_reactor("r", Box::new(old.clone()));
    let fresh = VecSink::with_capacity(100);
    let (fresh_attachment, _) = svc.attach_reactor("r", Box::new(fresh.clone()));
    assert_ne!(old_attachment, fresh_attachment);
    // The old session's thread ends after the new one attached.
    svc.detach_reactor("r", old_attachment);
    svc.apply("w", up("n1", 1));
    assert_eq!(
        view(&fresh.take()),
        svc.current(),
        "the new sink still gets events"
    );
    assert!(old.take().is_empty());
    svc.detach_reactor("r", fresh_attachment);
    svc.apply("w", up("n2", 2));
    assert!(fresh.take().is_empty(), "its own detach disconnects it");
}

#[test]
fn a_full_update_reconciles_a_watchers_nodes() {
    let mut svc = ServiceState::new("web");
    let sink = VecSink::with_capacity(100);
    svc.attach_reactor("r", Box::new(sink.clone()));
    svc.apply("w", up("a", 1));
    svc.apply("w", up("b", 2));
    let list: Event = [NodeInfo::new("b", NodeStatus::Up, "10.0.0.1", 2)]
        .into_iter()
        .collect();
    let changes = svc.apply("w", Update::Full(list)).changes.unwrap();
    assert_eq!(changes.get("a").map(|n| n.status), Some(NodeStatus::Down));
    assert_eq!(changes.len(), 1);
    assert_eq!(view(&sink.take()), svc.current());
}

#[test]
fn events_for_a_disconnected_reactor_wait_coalesced() {
    let mut svc = ServiceState::new("web");
    let sink = VecSink::with_capacity(100);
    let (attachment, _) = svc.attach_reactor("r", Box::new(sink.clone()));
    svc.detach_reactor("r", attachment);
    let congested = svc.apply("w", up("x", 1)).congested;
    assert!(
        congested.is_empty(),
        "no flusher to wake for a disconnected reactor"
    );
    assert_eq!(svc.flush_reactor("r"), Flush::Disconnected);
    assert!(sink.take().is_empty());
}

#[test]
fn encoded_updates_of_every_form_reach_reactors_as_decoded_ones_would() {
    let (mut svc, fast, slow) = fast_and_slow(2);
    let mut truth = Book::new();
    let encode = |u: &Update| codec::encode(u, "update").unwrap();
    let mut records = Vec::new();
    // Canonical incremental updates (read in place), partly repeating themselves.
    for i in 0..30u16 {
        records.push(encode(&up(&format!("n{}", i % 12), i / 12 + 1)));
    }
    records.push(encode(&down("n3")));
    // A full list (decoded).
    let list: Event = (5..9u16)
        .map(|i| NodeInfo::new(format!("n{i}"), NodeStatus::Up, "10.0.0.1", 7))
        .collect();
    records.push(encode(&Update::Full(list)));
    // Names out of order, as another encoder might write them (decoded).
    let mut unsorted = vec![0u8, 2];
    for name in ["zz", "aa"] {
        let node = NodeInfo::new(name, NodeStatus::Up, "10.0.0.9", 1);
        unsorted.extend(codec::encode(&node, "node").unwrap());
    }
    records.push(unsorted);
    for record in &records {
        truth.apply(codec::decode(record, "update").unwrap());
    }
    let applied = svc.apply_records("w", records.iter().map(Vec::as_slice));
    assert!(applied.bad_record.is_none());
    assert_eq!(applied.congested, ["slow"]);
    assert_eq!(svc.stats().updates_in, records.len() as u64);
    assert_eq!(view(&fast.take()), truth.full());
    assert_eq!(svc.current(), truth.full());
    let mut got = slow.take();
    while svc.flush_reactor("slow") != Flush::Done {
        got.extend(slow.take());
    }
    got.extend(slow.take());
    assert_eq!(
        view(&got),
        truth.full(),
        "the slow reactor's backlog, decoded"
    );

    // A bad record ends the batch: what came before it is applied, not what follows.
    let batch = [encode(&up("m1", 1)), vec![9, 9, 9], encode(&up("m2", 1))];
    let applied = svc.apply_records("w", batch.iter().map(Vec::as_slice));
    let error = applied.bad_record.expect("a bad frame").to_string();
    assert!(error.contains("watcher update"), "{error}");
    let seen = fast.take();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].get("m1").is_some());
    assert!(svc.current().get("m2").is_none());
}

/// The records a watcher's SDK sends for a full list too large for one record: a
/// `FullStart` marker, `FullPart` pieces, an empty `FullEnd`.
fn list_in_pieces(list: &Event) -> Vec<Vec<u8>> {
    let encode = |u: &Update| codec::encode(u, "update").unwrap();
    let mut records = vec![encode(&Update::FullStart(Event::new()))];
    let mut log = Pending::new(Framing::FullPart);
    log.push_event(list);
    while !log.is_empty() {
        let piece = log.piece(1024);
        records.extend(piece.records.iter().map(<[u8]>::to_vec));
        log.consume(&piece, piece.records.len());
    }
    records.push(encode(&Update::FullEnd(Event::new())));
    records
}

fn numbered(range: impl Iterator<Item = u32>) -> Event {
    range
        .map(|i| {
            NodeInfo::new(
                format!("node-{i:07}.web.example.internal"),
                NodeStatus::Up,
                "10.1.2.3",
                8080,
            )
        })
        .collect()
}

/// What reached reactor "r": a change too large for one record goes through its
/// backlog, which its flusher (here: this loop) hands over.
fn delivered(svc: &mut ServiceState, sink: &VecSink) -> Vec<Event> {
    assert_eq!(svc.flush_reactor("r"), Flush::Done);
    sink.take()
}

/// Regression for full lists over the ring's record limit: a list of a million nodes
/// in pieces, then one without every second node: exactly those 500,000 go down, once
/// each, nothing else changes, and no reactor sees anything before a list is whole.
#[test]
fn a_million_node_list_in_pieces_keeps_its_meaning() {
    const N: u32 = 1_000_000;
    let mut svc = ServiceState::new("web");
    let sink = VecSink::with_capacity(usize::MAX / 2);
    svc.attach_reactor("r", Box::new(sink.clone()));
    let first = list_in_pieces(&numbered(0..N));
    let (last, pieces) = first.split_last().unwrap();
    // The pieces arrive in batches of a few hundred records, as a pump drains them.
    for batch in pieces.chunks(300) {
        let applied = svc.apply_records("w", batch.iter().map(Vec::as_slice));
        assert!(applied.bad_record.is_none());
        assert_eq!(
            svc.stats().changes_out,
            0,
            "nothing before the list is whole"
        );
    }
    svc.apply_records("w", [last.as_slice()]);
    let ups: usize = delivered(&mut svc, &sink).iter().map(Event::len).sum();
    assert_eq!(ups, N as usize);

    let second = list_in_pieces(&numbered((0..N).step_by(2)));
    let (last, pieces) = second.split_last().unwrap();
    let published = svc.stats().changes_out;
    for batch in pieces.chunks(300) {
        svc.apply_records("w", batch.iter().map(Vec::as_slice));
        assert_eq!(
            svc.stats().changes_out,
            published,
            "nothing before the list is whole"
        );
        assert_eq!(svc.current().len(), N as usize);
    }
    svc.apply_records("w", [last.as_slice()]);
    let mut downs = std::collections::HashSet::new();
    for event in delivered(&mut svc, &sink) {
        for node in event.nodes() {
            assert_eq!(
                node.status,
                NodeStatus::Down,
                "{node}: nothing else changes"
            );
            let i: u32 = node.name[5..12].parse().unwrap();
            assert!(i % 2 == 1, "{node} is in the list");
            assert!(downs.insert(i), "{node} reported down twice");
        }
    }
    assert_eq!(downs.len(), N as usize / 2);
    assert_eq!(svc.current().len(), N as usize / 2);
}

/// A watcher whose session ends in the middle of a list in pieces: the next session's
/// list starts afresh, and what the first sent of it is never applied (review finding:
/// leftover pieces came up at the next whole list).
#[test]
fn a_list_left_unfinished_by_a_session_is_dropped_when_the_next_starts() {
    let mut svc = ServiceState::new("web");
    let sink = VecSink::with_capacity(1000);
    svc.attach_reactor("r", Box::new(sink.clone()));
    svc.apply("w", up("a", 1));
    let pieces = list_in_pieces(&numbered(0..10));
    // The first session sends all but the list's end, then dies.
    svc.apply_records("w", pieces[..pieces.len() - 1].iter().map(Vec::as_slice));
    svc.watcher_started("w");
    // The next session reports a whole list: only it counts.
    svc.apply("w", Update::Full(numbered(20..21)));
    assert_eq!(svc.current(), numbered(20..21));
}

/// A piece with no list in progress (a plugin that bypasses the SDK, or pieces of a
/// session that ended) is refused: the session ends, nothing of it is applied.
#[test]
fn a_stray_piece_is_refused() {
    for stray in [
        Update::FullPart(numbered(0..3)),
        Update::FullEnd(numbered(0..3)),
    ] {
        let mut svc = ServiceState::new("web");
        svc.apply("w", up("a", 1));
        let record = codec::encode(&stray, "u").unwrap();
        let applied = svc.apply_records("w", [record.as_slice()]);
        let error = applied.bad_record.expect("refused").to_string();
        assert!(error.contains("no FullStart before it"), "{error}");
        assert_eq!(svc.current().len(), 1);
    }
}

/// A list in pieces that never ends cannot make the host keep nodes without bound, and
/// the bound is in bytes (review finding: a node count let large nodes through).
#[test]
fn a_list_in_pieces_past_the_limit_is_refused() {
    let mut svc = ServiceState::new("web");
    svc.set_full_list_limit(1 << 20);
    // 40 nodes of 32 tags of 1 KiB: about 1.3 MiB in a few pieces.
    let big: Event = (0..40u32)
        .map(|i| {
            (0..32).fold(
                NodeInfo::new(format!("big-{i}"), NodeStatus::Up, "h", 1),
                |n, t| n.with_meta(format!("k{t:02}"), "x".repeat(1024)),
            )
        })
        .collect();
    let pieces = list_in_pieces(&big);
    let applied = svc.apply_records("w", pieces.iter().map(Vec::as_slice));
    let error = applied.bad_record.expect("refused").to_string();
    assert!(error.contains("past 1048576 bytes"), "{error}");
    assert!(svc.current().is_empty());
    // Under the limit the same list goes through.
    let mut roomy = ServiceState::new("web");
    roomy.set_full_list_limit(2 << 20);
    let applied = roomy.apply_records("w", pieces.iter().map(Vec::as_slice));
    assert!(applied.bad_record.is_none());
    assert_eq!(roomy.current().len(), 40);
}

/// Review finding: the byte budget alone let many millions of tiny nodes in (about
/// 180 bytes each decoded); a node count bounds a list in pieces too.
#[test]
fn a_list_in_pieces_of_too_many_tiny_nodes_is_refused() {
    let mut svc = ServiceState::new("web");
    svc.set_full_list_nodes(1000);
    let tiny: Event = (0..3000u32)
        .map(|i| NodeInfo::new(format!("{i}"), NodeStatus::Down, "", 0))
        .collect();
    let pieces = list_in_pieces(&tiny);
    let applied = svc.apply_records("w", pieces.iter().map(Vec::as_slice));
    let error = applied.bad_record.expect("refused").to_string();
    assert!(error.contains("1000 nodes"), "{error}");
}

/// Regression: node fields were not checked in the host, so a plugin bypassing the
/// SDK could send an empty name or a newline into a filelogger's lines. Such nodes are
/// dropped and counted; the good nodes of the same update go on.
#[test]
fn bad_nodes_from_a_plugin_that_bypasses_the_sdk_never_reach_a_reactor() {
    let mut svc = ServiceState::new("web");
    let sink = VecSink::with_capacity(100);
    svc.attach_reactor("r", Box::new(sink.clone()));
    let mut ev = Event::with_node("good", NodeStatus::Up, "h", 1);
    ev.add_node(NodeInfo::new("", NodeStatus::Up, "h", 1));
    ev.add_node(NodeInfo::new(
        "x\n2026-01-01 forged (up) 6.6.6.6:1",
        NodeStatus::Up,
        "h",
        1,
    ));
    ev.add_node(NodeInfo::new("y", NodeStatus::Up, "h\u{1b}[2J", 1));
    ev.add_node(NodeInfo::new("z", NodeStatus::Up, "h", 0));
    let record = codec::encode(&Update::Incremental(ev), "u").unwrap();
    let applied = svc.apply_records("w", [record.as_slice()]);
    assert!(applied.bad_record.is_none(), "the session goes on");
    assert_eq!(svc.stats().bad_nodes, 4);
    let got = sink.take();
    assert_eq!(view(&got), Event::with_node("good", NodeStatus::Up, "h", 1));
    // In a full list too.
    let list = [NodeInfo::new("bad\t", NodeStatus::Up, "h", 1)]
        .into_iter()
        .collect();
    let record = codec::encode(&Update::Full(list), "u").unwrap();
    svc.apply_records("w", [record.as_slice()]);
    assert_eq!(svc.stats().bad_nodes, 5);
    assert!(
        svc.current().is_empty(),
        "good went down, bad never came up"
    );
}

/// A reactor restarted in place by its plugin gets the full state again, after what
/// was already on its way, and the live stream after that.
#[test]
fn a_reactor_resynced_in_place_gets_the_full_state_again() {
    let (mut svc, _fast, slow) = fast_and_slow(100);
    svc.apply("w", up("a", 1));
    svc.apply("w", up("b", 2));
    svc.apply("w", down("a"));
    assert_eq!(slow.take().len(), 3, "the old endpoint got everything");
    assert!(svc.resync_reactor("slow"), "its flusher has work");
    assert_eq!(svc.flush_reactor("slow"), Flush::Done);
    svc.apply("w", up("c", 3));
    let fresh = slow.take();
    assert_eq!(fresh.len(), 2, "the full state, then the live change");
    assert_eq!(
        fresh[0],
        Event::with_node("b", NodeStatus::Up, "10.0.0.1", 2)
    );
    assert_eq!(
        view(&fresh),
        svc.current(),
        "the fresh endpoint knows every node"
    );
    assert!(!svc.resync_reactor("nobody"));
}
