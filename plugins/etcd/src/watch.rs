//! A running watch: etcd's half of a `Watch` stream, read message by message.
//!
//! A message with `compact_revision` set means the watch's start revision was compacted
//! away (etcd cancels the watch: read again, then watch again).

use std::io;
use std::sync::Arc;

use tokio::runtime::Runtime;
use tonic::Streaming;

use crate::error::EtcdError;
use crate::proto::{self, path};

/// Wakes a watch waiting in [`WatchStream::next`] from any thread (a plugin's close
/// signal), so that a quiet watch sleeps until etcd speaks or it must stop: no polling.
/// A wake-up given while no one waits is kept for the next wait.
#[derive(Debug, Clone, Default)]
pub struct WatchWake(Arc<tokio::sync::Notify>);

impl WatchWake {
    /// A wake-up no one has given yet.
    pub fn new() -> Self {
        WatchWake::default()
    }

    /// Makes the current or next wait of `next` return to check its stop condition.
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

/// What a watch reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchMessage {
    /// The watch is set up.
    Created,
    /// Keys changed (possibly none: a progress report) as of `revision`.
    Events {
        /// The store's revision after these events.
        revision: i64,
        /// The changes, in order.
        events: Vec<WatchEvent>,
    },
    /// The watch's start revision was compacted away: read again, then watch again.
    Compacted {
        /// The oldest revision still available.
        revision: i64,
    },
    /// etcd cancelled the watch for another reason.
    Canceled {
        /// etcd's reason.
        reason: String,
    },
}

/// One key's change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// `key` now holds `value`.
    Put {
        /// The key.
        key: Vec<u8>,
        /// Its new value.
        value: Vec<u8>,
    },
    /// `key` was deleted (or its lease expired).
    Delete {
        /// The key.
        key: Vec<u8>,
    },
}

/// A running watch. The client that started it may go on with other requests.
pub struct WatchStream {
    runtime: Arc<Runtime>,
    stream: Streaming<proto::WatchResponse>,
    endpoint: String,
}

impl WatchStream {
    /// A watch whose stream is open.
    pub(crate) fn new(
        runtime: Arc<Runtime>,
        stream: Streaming<proto::WatchResponse>,
        endpoint: &str,
    ) -> Self {
        WatchStream {
            runtime,
            stream,
            endpoint: endpoint.to_owned(),
        }
    }

    /// The next message; `Ok(None)` as soon as `stop()` holds, which is asked before
    /// each wait and after every `wake` (a quiet watch sleeps until etcd speaks or it
    /// is woken). A closed stream is an error.
    pub fn next(
        &mut self,
        stop: &dyn Fn() -> bool,
        wake: &WatchWake,
    ) -> Result<Option<WatchMessage>, EtcdError> {
        loop {
            if stop() {
                return Ok(None);
            }
            // Cancelling `message()` when woken loses nothing: it is cancel-safe.
            let stream = &mut self.stream;
            let read = async {
                tokio::select! {
                    message = stream.message() => Ok(message),
                    () = wake.0.notified() => Err(()),
                }
            };
            return match self.runtime.block_on(read) {
                Err(()) => continue,
                Ok(Ok(Some(response))) => Ok(Some(watch_message(response))),
                Ok(Ok(None)) => Err(EtcdError::Io {
                    endpoint: self.endpoint.clone(),
                    path: path::WATCH,
                    source: io::Error::new(io::ErrorKind::UnexpectedEof, "the watch stream ended"),
                }),
                Ok(Err(status)) => Err(EtcdError::from_status(&self.endpoint, path::WATCH, status)),
            };
        }
    }
}

fn watch_message(response: proto::WatchResponse) -> WatchMessage {
    if response.compact_revision > 0 {
        return WatchMessage::Compacted {
            revision: response.compact_revision,
        };
    }
    if response.canceled {
        let reason = match response.cancel_reason.is_empty() {
            true => "no reason given".to_owned(),
            false => response.cancel_reason,
        };
        return WatchMessage::Canceled { reason };
    }
    if response.created {
        return WatchMessage::Created;
    }
    let events = response
        .events
        .into_iter()
        .filter_map(|event| {
            let kv = event.kv?;
            Some(match event.r#type {
                proto::EVENT_DELETE => WatchEvent::Delete { key: kv.key },
                _ => WatchEvent::Put {
                    key: kv.key,
                    value: kv.value,
                },
            })
        })
        .collect();
    WatchMessage::Events {
        revision: response.header.map_or(0, |h| h.revision),
        events,
    }
}
