//! One watcher instance's loop: read the prefix and send it as a full list, then watch
//! from the next revision and send each change; on a lost connection or a compacted
//! revision, start over (after a backoff when etcd could not be reached).
//!
//! The loop keeps the nodes it reported up ([`PrefixState`]), so a deleted key goes
//! down with the address it had, and a resync's full list replaces them all.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use plugin_sdk::{Close, Event, EventSender, NodeInfo, NodeStatus, SendError};
use receptor_etcd::layout::{node_name, node_up, BadValue};
use receptor_etcd::{
    Backoff, Client, EtcdError, Settings, Snapshot, WatchEvent, WatchMessage, WatchWake,
};

/// How often one key's bad value is logged at most.
const BAD_KEY_LOG_EVERY: Duration = Duration::from_secs(60);
/// How many keys the bad-value log remembers before it forgets the old ones.
const BAD_KEY_LOG_SIZE: usize = 10_000;

/// How a session with etcd ended.
enum End {
    /// The endpoint was closed: stop.
    Closed,
    /// Read the prefix again at once (the watch was compacted or cancelled).
    Resync(String),
}

/// Runs until `close` fires or the host closes the stream.
pub fn run(settings: Settings, prefix: &str, events: &EventSender, close: &Close) {
    let mut client = Client::new(settings);
    let mut state = PrefixState::new(prefix);
    let mut backoff = Backoff::default();
    // The close ends a quiet watch's wait at once (an idle watcher never wakes by
    // itself). Registered once: sessions come and go with reconnects.
    let wake = WatchWake::new();
    let waker = wake.clone();
    close.on_close(move || waker.wake());
    loop {
        match session(&mut client, &mut state, events, close, &wake, &mut backoff) {
            Ok(End::Closed) => return,
            Ok(End::Resync(reason)) => {
                tracing::warn!(prefix, "{reason}: reading the prefix again");
            }
            Err(e) => {
                client.disconnect();
                let delay = backoff.next_delay();
                tracing::warn!(prefix, "{e}; reading the prefix again in {delay:?}");
                if close.wait_timeout(delay) {
                    return;
                }
            }
        }
    }
}

/// One read of the prefix and the watch after it.
fn session(
    client: &mut Client,
    state: &mut PrefixState,
    events: &EventSender,
    close: &Close,
    wake: &WatchWake,
    backoff: &mut Backoff,
) -> Result<End, EtcdError> {
    let started = Instant::now();
    let snapshot = client.range_prefix(state.prefix())?;
    let read_ms = started.elapsed().as_millis() as u64;
    let revision = snapshot.revision;
    let nodes = state.reset(&snapshot);
    let count = nodes.len();
    if !sent(events.send_full(nodes)) {
        return Ok(End::Closed);
    }
    let mut watch = client.watch(state.prefix(), revision + 1)?;
    backoff.reset();
    tracing::info!(
        prefix = state.prefix(),
        revision,
        nodes = count,
        read_ms,
        endpoint = client.endpoint(),
        "in sync with etcd"
    );
    loop {
        match watch.next(&|| close.is_closed(), wake)? {
            None => return Ok(End::Closed),
            Some(WatchMessage::Created) => {}
            Some(WatchMessage::Events {
                events: changes, ..
            }) => {
                let event = state.apply(&changes);
                if !event.is_empty() && !sent(events.send(event)) {
                    return Ok(End::Closed);
                }
            }
            Some(WatchMessage::Compacted { revision }) => {
                return Ok(End::Resync(format!(
                    "the watch's revision was compacted (oldest now {revision})"
                )))
            }
            Some(WatchMessage::Canceled { reason }) => {
                return Ok(End::Resync(format!("etcd cancelled the watch: {reason}")))
            }
        }
    }
}

/// Whether a send went (false when the stream is closed). A bad node cannot come from
/// [`PrefixState`] (it checks every node), but is logged rather than trusted.
fn sent(result: Result<(), SendError>) -> bool {
    match result {
        Ok(()) => true,
        Err(SendError::BadNode(e)) => {
            tracing::error!("update refused: {e}");
            true
        }
        Err(_) => false,
    }
}

/// The nodes a prefix holds as far as this watcher reported them.
pub struct PrefixState {
    prefix: String,
    /// Every node reported up, by name.
    up: HashMap<String, NodeInfo>,
    /// When each bad key was last logged.
    bad_logged: HashMap<Vec<u8>, Instant>,
}

impl PrefixState {
    /// Nothing reported yet.
    pub fn new(prefix: &str) -> Self {
        PrefixState {
            prefix: prefix.to_owned(),
            up: HashMap::new(),
            bad_logged: HashMap::new(),
        }
    }

    /// The prefix watched.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Replaces the state with a read of the prefix; returns the nodes up (the full
    /// list to send).
    pub fn reset(&mut self, snapshot: &Snapshot) -> Vec<NodeInfo> {
        self.up.clear();
        for (key, value) in &snapshot.kvs {
            match node_up(&self.prefix, key, value) {
                Ok(Some(node)) => {
                    self.up.insert(node.name.clone(), node);
                }
                Ok(None) => {}
                Err(e) => self.log_bad(key, &e),
            }
        }
        self.up.values().cloned().collect()
    }

    /// Applies a watch's changes; returns the event to send (possibly empty).
    pub fn apply(&mut self, changes: &[WatchEvent]) -> Event {
        let mut event = Event::new();
        for change in changes {
            match change {
                WatchEvent::Put { key, value } => match node_up(&self.prefix, key, value) {
                    Ok(Some(node)) => {
                        self.up.insert(node.name.clone(), node.clone());
                        event.add_node(node);
                    }
                    Ok(None) => {}
                    Err(e) => self.log_bad(key, &e),
                },
                WatchEvent::Delete { key } => {
                    let name = std::str::from_utf8(key)
                        .ok()
                        .and_then(|k| node_name(&self.prefix, k));
                    if let Some(mut node) = name.and_then(|n| self.up.remove(n)) {
                        node.status = NodeStatus::Down;
                        event.add_node(node);
                    }
                }
            }
        }
        event
    }

    /// Logs a bad value, at most once a minute per key.
    fn log_bad(&mut self, key: &[u8], e: &BadValue) {
        let now = Instant::now();
        if self.bad_logged.len() >= BAD_KEY_LOG_SIZE {
            self.bad_logged
                .retain(|_, at| now.duration_since(*at) < BAD_KEY_LOG_EVERY);
        }
        match self.bad_logged.get(key) {
            Some(at) if now.duration_since(*at) < BAD_KEY_LOG_EVERY => {}
            _ => {
                tracing::warn!("skipped {e}");
                self.bad_logged.insert(key.to_vec(), now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str, value: &str) -> WatchEvent {
        WatchEvent::Put {
            key: key.into(),
            value: value.into(),
        }
    }

    #[test]
    fn changes_become_nodes_and_deletes_keep_the_address() {
        let mut state = PrefixState::new("/p/");
        let snapshot = Snapshot {
            revision: 5,
            kvs: vec![
                (b"/p/a".to_vec(), br#"{"host":"h","port":1}"#.to_vec()),
                (b"/p/bad".to_vec(), b"nope".to_vec()),
                (b"/p/x/y".to_vec(), br#"{"host":"h","port":1}"#.to_vec()),
            ],
        };
        let full = state.reset(&snapshot);
        assert_eq!(full.len(), 1);
        let ev = state.apply(&[
            put("/p/b", r#"{"host":"h2","port":2,"meta":{"zone":"eu"}}"#),
            WatchEvent::Delete {
                key: b"/p/a".to_vec(),
            },
            WatchEvent::Delete {
                key: b"/p/never".to_vec(),
            },
            put("/p/c", r#"{"host":"h","port":0}"#),
        ]);
        let nodes: Vec<_> = ev.nodes().cloned().collect();
        assert_eq!(nodes.len(), 2, "{nodes:?}");
        assert_eq!(
            (
                nodes[0].name.as_str(),
                nodes[0].status,
                nodes[0].host.as_str()
            ),
            ("a", NodeStatus::Down, "h")
        );
        assert_eq!(nodes[1].meta.get("zone").map(String::as_str), Some("eu"));
    }
}
