//! A running watch: one HTTP answer from `/v3/watch` that streams a JSON object per
//! line for as long as the watch lasts, read message by message.
//!
//! The gateway leaves out fields at their zero value: an event without `type` is a PUT,
//! and a message with `compact_revision` set means the watch's start revision was
//! compacted away (the watch is cancelled; read again, then watch again).

use std::io;

use serde_json::Value;

use crate::client::{bytes_field, int_field, revision, str_field, EtcdError};
use crate::http::{is_timeout, Connection};

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

/// A running watch: one HTTP answer that streams a JSON object per line.
pub struct WatchStream {
    conn: Connection,
    endpoint: String,
    pending: Vec<u8>,
}

impl WatchStream {
    /// A watch whose answer's head was read on `conn`.
    pub(crate) fn new(conn: Connection, endpoint: &str) -> Self {
        WatchStream {
            conn,
            endpoint: endpoint.to_owned(),
            pending: Vec::new(),
        }
    }

    /// The next message; `Ok(None)` as soon as `stop()` holds (it is asked every
    /// 100 ms while etcd is quiet). A closed connection is an error.
    pub fn next(&mut self, stop: &dyn Fn() -> bool) -> Result<Option<WatchMessage>, EtcdError> {
        const PATH: &str = "/v3/watch";
        let err = |source| EtcdError::Io {
            endpoint: self.endpoint.clone(),
            path: PATH,
            source,
        };
        loop {
            if stop() {
                return Ok(None);
            }
            let line = match self.conn.read_line(&mut self.pending) {
                Ok(Some(line)) if line.iter().all(u8::is_ascii_whitespace) => continue,
                Ok(Some(line)) => line,
                Ok(None) => {
                    return Err(err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the watch stream ended",
                    )))
                }
                Err(e) if is_timeout(&e) => continue,
                Err(e) => return Err(err(e)),
            };
            let value: Value = serde_json::from_slice(&line).map_err(|e| EtcdError::BadAnswer {
                endpoint: self.endpoint.clone(),
                path: PATH,
                reason: format!("a watch message is not JSON: {e}"),
            })?;
            return match value.get("result") {
                Some(result) => Ok(Some(watch_message(result))),
                None => Err(EtcdError::Refused {
                    endpoint: self.endpoint.clone(),
                    path: PATH,
                    code: int_field(&value["error"], "grpc_code").unwrap_or(-1),
                    message: value["error"]["message"].as_str().unwrap_or("").to_owned(),
                }),
            };
        }
    }
}

fn watch_message(result: &Value) -> WatchMessage {
    let compact = int_field(result, "compact_revision").unwrap_or(0);
    if compact > 0 {
        return WatchMessage::Compacted { revision: compact };
    }
    if result.get("canceled").and_then(Value::as_bool) == Some(true) {
        let reason = str_field(result, "cancel_reason").unwrap_or("no reason given");
        return WatchMessage::Canceled {
            reason: reason.to_owned(),
        };
    }
    if result.get("created").and_then(Value::as_bool) == Some(true) {
        return WatchMessage::Created;
    }
    let events = result.get("events").and_then(Value::as_array);
    let events = events
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let kv = e.get("kv")?;
            let key = bytes_field(kv, "key")?;
            // PUT is the enum's zero value, which the gateway leaves out.
            Some(match str_field(e, "type") {
                Some("DELETE") => WatchEvent::Delete { key },
                _ => WatchEvent::Put {
                    key,
                    value: bytes_field(kv, "value").unwrap_or_default(),
                },
            })
        })
        .collect();
    WatchMessage::Events {
        revision: revision(result).unwrap_or(0),
        events,
    }
}
