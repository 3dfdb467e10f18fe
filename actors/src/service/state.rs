//! The state of one service, and the hot path through it.
//!
//! Every watcher instance has a [`Book`]; every update it sends goes through that book,
//! and the real changes go to every reactor instance of the service. An incremental
//! update is read where it lies, never decoded: the book compares the nodes' encoded
//! addresses, and the changes go out as the very bytes the watcher sent (see
//! [`ipc::event::wire`]); only full lists and updates in another encoding are decoded.
//!
//! Each reactor has an [`EventSink`] (its shared-memory ring) and a backlog (a
//! [`Pending`] log of encoded nodes): while the sink has room, the encoded changes are
//! pushed to every sink; when a sink is full, the changes' nodes for that reactor
//! coalesce in its backlog (latest per node wins), still encoded, until its flusher
//! hands them over as ready-made records. A slow reactor thus never slows the watchers
//! or the other reactors, and the memory it costs is bounded by the number of nodes.
//!
//! This struct is plain data and logic: the endpoint threads call it under the service's
//! mutex, and the unit tests call it directly.

use std::collections::BTreeMap;

use ipc::codec;
use ipc::event::wire::WireIncremental;
use ipc::event::{Book, Event, Framing, Pending, Update};

use ipc::records::Records;

use super::intake::{self, BadNodeLog, BadRecord, MAX_FULL_LIST_BYTES, MAX_FULL_LIST_NODES};

/// The most nodes one record to a reactor carries: a bigger backlog (a reactor that
/// fell far behind, or the full state of a large service) goes over in several records,
/// each well under the ring's record limit.
pub const CHUNK_NODES: usize = 1024;

/// The largest change that goes straight into a reactor's ring as one record (a
/// quarter of the ring's default record limit); a larger one goes through the backlog,
/// which hands it over in pieces of [`CHUNK_NODES`].
pub const DIRECT_RECORD_BYTES: usize = 64 << 10;

/// Where a reactor's events go: the producer side of its ring.
pub trait EventSink: Send {
    /// Hands over as many of `records` (encoded events, in order) as fit now and returns
    /// how many it took. `Err` when the reactor side is gone.
    fn try_push(&mut self, records: &Records) -> Result<usize, SinkClosed>;

    /// Whether the reactor has read everything pushed so far.
    fn is_consumed(&self) -> bool;
}

/// The reactor side of a sink is gone; the reason is for the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("reactor sink closed: {0}")]
pub struct SinkClosed(pub String);

/// Counters for the log and the benchmarks.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ServiceStats {
    /// Updates received from watchers.
    pub updates_in: u64,
    /// Change events published to reactors (before fan-out).
    pub changes_out: u64,
    /// Events that went to a backlog because a sink was full.
    pub deferred: u64,
    /// Nodes dropped because they broke a rule of `NodeInfo::check`.
    pub bad_nodes: u64,
}

struct ReactorOutput {
    sink: Option<Box<dyn EventSink>>,
    /// The changes waiting for room in the sink, encoded, latest per node.
    backlog: Pending,
    /// Which attachment the sink belongs to.
    attachment: Attachment,
}

/// One connection of a reactor's sink, from [`ServiceState::attach_reactor`]: what
/// [`ServiceState::detach_reactor`] takes, so that a session which ends late (its
/// plugin was restarted meanwhile) cannot disconnect the session that replaced it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attachment(u64);

/// What [`ServiceState::apply_records`] did.
#[derive(Debug, Default)]
pub struct BatchApplied {
    /// Reactors whose sink was full: their flushers should be woken.
    pub congested: Vec<String>,
    /// The first record refused (it does not decode, or breaks a limit); the records
    /// after it were not applied.
    pub bad_record: Option<BadRecord>,
}

/// What [`ServiceState::flush_reactor`] achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flush {
    /// Nothing is pending for the reactor.
    Done,
    /// The sink is still full; wait for space and try again.
    Pending,
    /// The reactor is not connected (or its sink closed): nothing to do until it is.
    Disconnected,
}

/// Books, reactor outputs and counters of one service.
pub struct ServiceState {
    name: String,
    books: BTreeMap<String, Book>,
    reactors: BTreeMap<String, ReactorOutput>,
    stats: ServiceStats,
    /// The encoded changes being published (kept for its memory).
    changes: Records,
    /// The last attachment number handed out.
    attachments: u64,
    /// Per watcher that sent bad nodes: when they were last logged.
    bad_node_logs: BTreeMap<String, BadNodeLog>,
    /// The most encoded bytes the pieces of a full list may take before its end.
    full_list_limit: usize,
    /// The most nodes they may hold.
    full_list_nodes: usize,
}

impl ServiceState {
    /// A service with no watchers or reactors yet.
    pub fn new(name: impl Into<String>) -> Self {
        ServiceState {
            name: name.into(),
            books: BTreeMap::new(),
            reactors: BTreeMap::new(),
            stats: ServiceStats::default(),
            changes: Records::new(),
            attachments: 0,
            bad_node_logs: BTreeMap::new(),
            full_list_limit: MAX_FULL_LIST_BYTES,
            full_list_nodes: MAX_FULL_LIST_NODES,
        }
    }

    /// Sets the most encoded bytes the pieces of a full list may take before its end
    /// (default [`MAX_FULL_LIST_BYTES`]).
    pub fn set_full_list_limit(&mut self, limit: usize) {
        self.full_list_limit = limit;
    }

    /// Sets the most nodes a full list in pieces may hold before its end (default
    /// [`MAX_FULL_LIST_NODES`]).
    pub fn set_full_list_nodes(&mut self, nodes: usize) {
        self.full_list_nodes = nodes;
    }

    /// The service's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The counters so far.
    pub fn stats(&self) -> ServiceStats {
        self.stats
    }

    /// Every node up now, across all watchers (for a watcher reporting a node another
    /// watcher also reports, the later watcher by instance name wins).
    pub fn current(&self) -> Event {
        let mut all = Event::new();
        for book in self.books.values() {
            all.merge(book.full());
        }
        all
    }

    /// The book of `watcher`, made on its first update.
    fn book(&mut self, watcher: &str) -> &mut Book {
        if !self.books.contains_key(watcher) {
            self.books.insert(watcher.to_owned(), Book::new());
        }
        self.books.get_mut(watcher).expect("just made")
    }

    /// Applies a batch of a watcher's encoded updates (all a pump drained at once) and
    /// publishes the real changes, in order, pushing them into each reactor's sink as
    /// one batch: the ring's position is published once per batch, not once per event.
    ///
    /// Incremental updates in canonical form are applied where they lie (see the module
    /// docs); the others are decoded. A record that does not decode ends the batch: the
    /// records before it are applied and published, and the error is returned.
    pub fn apply_records<'a, I>(&mut self, watcher: &str, records: I) -> BatchApplied
    where
        I: IntoIterator<Item = &'a [u8]>,
        I::IntoIter: Clone,
    {
        let mut changes = std::mem::take(&mut self.changes);
        changes.clear();
        let mut bad_record = None;
        let (mut bad_nodes, mut first_bad) = (0, None);
        let (limit, max_nodes) = (self.full_list_limit, self.full_list_nodes);
        let book = self.book(watcher);
        let mut count = 0;
        let records = records.into_iter();
        // The book's slot for a record is prefetched a few records ahead.
        let mut ahead = records.clone().skip(Book::PREFETCH_AHEAD);
        for record in records.clone().take(Book::PREFETCH_AHEAD) {
            book.prefetch(record);
        }
        for record in records {
            if let Some(later) = ahead.next() {
                book.prefetch(later);
            }
            count += 1;
            changes.write_with(|out| {
                if book.apply_encoded(record, out).is_some() {
                    return;
                }
                let mut update = match codec::decode::<Update>(record, "watcher update") {
                    Ok(update) => update,
                    Err(e) => {
                        bad_record = Some(e.into());
                        return;
                    }
                };
                if !book.accepts(&update) {
                    let what = if update.is_full_end() {
                        "FullEnd"
                    } else {
                        "FullPart"
                    };
                    bad_record = Some(BadRecord::StrayPiece { what });
                    return;
                }
                let piece = matches!(update, Update::FullStart(_) | Update::FullPart(_));
                let (bad, first) = intake::drop_bad_nodes(&mut update);
                bad_nodes += bad;
                first_bad = first_bad.take().or(first);
                if let Some(change) = book.apply(update) {
                    encode_event(&change, out);
                }
                if piece
                    && (book.note_staged_bytes(record.len()) > limit
                        || book.staged_len() > Some(max_nodes))
                {
                    book.discard_staged();
                    bad_record = Some(BadRecord::FullListTooLarge {
                        max: limit,
                        max_nodes,
                    });
                }
            });
            if bad_record.is_some() {
                break;
            }
        }
        self.stats.updates_in += count;
        if let Some(first) = first_bad {
            self.stats.bad_nodes += bad_nodes;
            self.bad_node_logs
                .entry(watcher.to_owned())
                .or_default()
                .note(&self.name, watcher, bad_nodes, &first);
        }
        let congested = self.publish_records(&changes);
        self.changes = changes;
        BatchApplied {
            congested,
            bad_record,
        }
    }

    /// A watcher's session (re)starts: a full list it left unfinished in pieces is
    /// dropped (its nodes stay as they were until it reports again).
    pub fn watcher_started(&mut self, watcher: &str) {
        if let Some(book) = self.books.get_mut(watcher) {
            book.discard_staged();
        }
    }

    /// A watcher's session ended: what it was still to be told of (bad nodes noted
    /// since the last log line) is logged now.
    pub fn watcher_ended(&mut self, watcher: &str) {
        if let Some(log) = self.bad_node_logs.get_mut(watcher) {
            log.flush(&self.name, watcher);
        }
    }

    /// Sends encoded changes, in order, to every reactor: straight into its sink when
    /// its backlog is empty and the sink has room (each sink taking them as one batch:
    /// the ring's position is published once, not once per event), else into its
    /// backlog. Returns the reactors that now have a backlog (their flushers should be
    /// woken). The changes are real ones, none empty.
    fn publish_records(&mut self, changes: &Records) -> Vec<String> {
        if changes.is_empty() {
            return Vec::new();
        }
        self.stats.changes_out += changes.len() as u64;
        // A change too big for one record goes through the backlog, which splits it.
        let direct = changes.iter().all(|c| c.len() <= DIRECT_RECORD_BYTES);
        let mut congested = Vec::new();
        for (name, out) in &mut self.reactors {
            let pushed = match (&mut out.sink, out.backlog.is_empty() && direct) {
                (Some(sink), true) => match sink.try_push(changes) {
                    Ok(n) => n,
                    Err(e) => {
                        tracing::warn!(service = %self.name, reactor = %name, "{e}; keeping its events until it reconnects");
                        out.sink = None;
                        0
                    }
                },
                _ => 0,
            };
            if pushed < changes.len() {
                self.stats.deferred += (changes.len() - pushed) as u64;
                for change in changes.iter().skip(pushed) {
                    defer_change(&self.name, &mut out.backlog, change);
                }
                if out.sink.is_some() {
                    congested.push(name.clone());
                }
            }
        }
        congested
    }

    /// Connects (or reconnects) a reactor. A reactor that connects after events have
    /// flowed (a restart) first gets the full current state, then the live stream.
    /// Returns the attachment (for [`detach_reactor`](Self::detach_reactor)) and how
    /// far the first flush got.
    pub fn attach_reactor(
        &mut self,
        reactor: &str,
        sink: Box<dyn EventSink>,
    ) -> (Attachment, Flush) {
        let current = self.current();
        self.attachments += 1;
        let attachment = Attachment(self.attachments);
        let out = self
            .reactors
            .entry(reactor.to_owned())
            .or_insert_with(|| ReactorOutput {
                sink: None,
                backlog: Pending::new(Framing::Event),
                attachment,
            });
        // Whatever was pending for the old process is superseded by the current state.
        out.backlog.clear();
        out.backlog.push_event(&current);
        out.sink = Some(sink);
        out.attachment = attachment;
        (attachment, self.flush_reactor(reactor))
    }

    /// A reactor's plugin restarted its endpoint in place (same ring, a fresh endpoint
    /// that knows nothing): the full current state joins its backlog, behind what its
    /// ring holds already, as at a reconnect. Returns whether its flusher has work.
    pub fn resync_reactor(&mut self, reactor: &str) -> bool {
        let current = self.current();
        let Some(out) = self.reactors.get_mut(reactor) else {
            return false;
        };
        out.backlog.push_event(&current);
        out.sink.is_some() && !out.backlog.is_empty()
    }

    /// Disconnects a reactor (its process died or it is closing) if its sink is still
    /// the one of `attachment`; events for it accumulate, coalesced, until it reconnects.
    pub fn detach_reactor(&mut self, reactor: &str, attachment: Attachment) {
        if let Some(out) = self.reactors.get_mut(reactor) {
            if out.attachment == attachment {
                out.sink = None;
            }
        }
    }

    /// Removes a reactor for good.
    pub fn remove_reactor(&mut self, reactor: &str) {
        self.reactors.remove(reactor);
    }

    /// Hands a reactor's backlog to its sink if there is room.
    pub fn flush_reactor(&mut self, reactor: &str) -> Flush {
        let Some(out) = self.reactors.get_mut(reactor) else {
            return Flush::Disconnected;
        };
        let Some(sink) = &mut out.sink else {
            return Flush::Disconnected;
        };
        while !out.backlog.is_empty() {
            let piece = out.backlog.piece(CHUNK_NODES);
            match sink.try_push(&piece.records) {
                Ok(went) => {
                    out.backlog.consume(&piece, went);
                    if went < piece.records.len() {
                        return Flush::Pending;
                    }
                }
                Err(e) => {
                    tracing::warn!(service = %self.name, %reactor, "{e}");
                    out.sink = None;
                    return Flush::Disconnected;
                }
            }
        }
        Flush::Done
    }

    /// Whether a reactor has received everything: no backlog, and its sink consumed.
    /// A disconnected reactor counts as drained (nothing can reach it now).
    pub fn is_drained(&self, reactor: &str) -> bool {
        match self.reactors.get(reactor) {
            Some(ReactorOutput {
                sink: Some(sink),
                backlog,
                ..
            }) => backlog.is_empty() && sink.is_consumed(),
            _ => true,
        }
    }

    /// The names of the connected reactors.
    pub fn reactor_names(&self) -> Vec<String> {
        self.reactors.keys().cloned().collect()
    }

    /// Whether a reactor has events waiting for room in its sink.
    pub fn is_congested(&self, reactor: &str) -> bool {
        self.reactors
            .get(reactor)
            .is_some_and(|out| !out.backlog.is_empty())
    }

    /// Forgets a watcher's book (its instance was removed). Its nodes are not reported
    /// down: a watcher that restarts keeps its nodes until it reports again.
    pub fn remove_watcher(&mut self, watcher: &str) {
        self.books.remove(watcher);
    }
}

/// Puts an encoded change into a reactor's backlog, node by node as it lies. These
/// bytes were encoded here or read as canonical, so they parse; should one not, it is
/// decoded, and one that does not decode either is logged and left out.
fn defer_change(service: &str, backlog: &mut Pending, change: &[u8]) {
    if let Some(event) = WireIncremental::parse_event(change) {
        for node in event.nodes() {
            backlog.push_encoded(node.bytes);
        }
        return;
    }
    match codec::decode::<Event>(change, "change") {
        Ok(event) => backlog.push_event(&event),
        Err(e) => tracing::error!(%service, "dropping a change: {e}"),
    }
}

/// Appends the encoding of `event` to `out`.
fn encode_event(event: &Event, out: &mut Vec<u8>) {
    // Encoding an Event into a Vec cannot fail (no size limit on encode).
    let _ = codec::encode_into(event, out, "event");
}

#[cfg(test)]
mod tests;
