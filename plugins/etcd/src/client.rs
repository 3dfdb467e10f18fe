//! A blocking client of etcd's v3 API through its JSON gateway (`POST /v3/kv/range`,
//! `/v3/watch`, `/v3/lease/...`; keys and values base64, 64-bit numbers as strings).
//!
//! The gateway is the same v3 API as gRPC, served by every etcd since 3.3, and needs
//! neither `protoc` nor a protobuf runtime to build: plain HTTP/1.1 and JSON. One
//! [`Client`] keeps one connection alive for its requests and moves to the next
//! endpoint when the current one cannot be reached; a watch gets a connection of its
//! own ([`WatchStream`], in `watch`).

use std::io;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::{json, Value};
use thiserror::Error;

use crate::config::Settings;
use crate::http::Connection;
use crate::layout::range_end;
use crate::watch::WatchStream;

/// How long a request may wait for its answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How many keys one page of a range read holds.
const RANGE_PAGE: usize = 10_000;
/// How often a watch looks at its stop condition while etcd is quiet.
const WATCH_POLL: Duration = Duration::from_millis(100);

/// Why a request to etcd failed.
#[derive(Debug, Error)]
pub enum EtcdError {
    /// No endpoint accepted a connection.
    #[error("cannot reach etcd at {endpoints}: {source}")]
    Unreachable {
        /// Every endpoint tried.
        endpoints: String,
        /// The last endpoint's failure.
        source: io::Error,
    },
    /// The connection failed during the request.
    #[error("etcd at {endpoint}: {path}: {source}")]
    Io {
        /// The endpoint.
        endpoint: String,
        /// The gateway path of the request.
        path: &'static str,
        /// What failed.
        source: io::Error,
    },
    /// etcd refused the request.
    #[error("etcd at {endpoint}: {path} refused: {message} (grpc code {code})")]
    Refused {
        /// The endpoint.
        endpoint: String,
        /// The gateway path of the request.
        path: &'static str,
        /// The gRPC status code (11: out of range, 5: not found, 16: unauthenticated).
        code: i64,
        /// etcd's message.
        message: String,
    },
    /// The answer was not what the v3 API promises.
    #[error("etcd at {endpoint}: {path}: unexpected answer: {reason}")]
    BadAnswer {
        /// The endpoint.
        endpoint: String,
        /// The gateway path of the request.
        path: &'static str,
        /// What was wrong.
        reason: String,
    },
}

impl EtcdError {
    /// Whether the revision asked for was compacted away.
    pub fn is_compacted(&self) -> bool {
        matches!(self, EtcdError::Refused { message, .. } if message.contains("compacted"))
    }

    /// Whether a lease named in the request no longer exists.
    pub fn is_lease_not_found(&self) -> bool {
        matches!(self, EtcdError::Refused { message, .. } if message.contains("lease not found"))
    }

    fn is_bad_token(&self) -> bool {
        matches!(self, EtcdError::Refused { message, .. } if message.contains("auth token"))
    }
}

/// Every key under a prefix at one revision.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The store's revision the keys were read at.
    pub revision: i64,
    /// `(key, value)` pairs in key order.
    pub kvs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// One write of a transaction.
#[derive(Debug, Clone)]
pub enum Op {
    /// Put `value` under `key`, attached to `lease` (0: none).
    Put {
        /// The key.
        key: Vec<u8>,
        /// The value.
        value: Vec<u8>,
        /// The lease id, or 0.
        lease: i64,
    },
    /// Delete `key`.
    Delete {
        /// The key.
        key: Vec<u8>,
    },
}

/// A blocking etcd v3 client over the JSON gateway.
pub struct Client {
    settings: Settings,
    /// The endpoint in use (index into `settings.endpoints`).
    current: usize,
    conn: Option<Connection>,
    token: Option<String>,
}

impl Client {
    /// A client of the configured endpoints; it connects on its first request.
    pub fn new(settings: Settings) -> Client {
        Client {
            settings,
            current: 0,
            conn: None,
            token: None,
        }
    }

    /// The URL of the endpoint in use.
    pub fn endpoint(&self) -> &str {
        &self.settings.endpoints[self.current].url
    }

    /// Drops the connection (the next request makes a new one).
    pub fn disconnect(&mut self) {
        self.conn = None;
    }

    /// Connects to the current endpoint or, failing that, the next ones in turn, and
    /// authenticates when credentials are set.
    fn connect(&mut self) -> Result<Connection, EtcdError> {
        let n = self.settings.endpoints.len();
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no endpoint");
        for i in 0..n {
            let at = (self.current + i) % n;
            let endpoint = &self.settings.endpoints[at];
            match Connection::connect(&endpoint.authority, self.settings.dial_timeout) {
                Ok(conn) => {
                    self.current = at;
                    let mut conn = conn;
                    if self.token.is_none() && self.settings.credentials.is_some() {
                        self.token = Some(self.authenticate(&mut conn)?);
                    }
                    return Ok(conn);
                }
                Err(e) => last = e,
            }
        }
        let endpoints = self
            .settings
            .endpoints
            .iter()
            .map(|e| e.url.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        Err(EtcdError::Unreachable {
            endpoints,
            source: last,
        })
    }

    fn authenticate(&self, conn: &mut Connection) -> Result<String, EtcdError> {
        let (name, password) = self.settings.credentials.clone().unwrap_or_default();
        let body = json!({ "name": name, "password": password });
        let answer = self.exchange(conn, "/v3/auth/authenticate", None, &body)?;
        str_field(&answer, "token")
            .map(str::to_owned)
            .ok_or_else(|| self.bad("/v3/auth/authenticate", "no token"))
    }

    /// One request and its whole answer on `conn`.
    fn exchange(
        &self,
        conn: &mut Connection,
        path: &'static str,
        token: Option<&str>,
        body: &Value,
    ) -> Result<Value, EtcdError> {
        let io_err = |source| EtcdError::Io {
            endpoint: self.endpoint().to_owned(),
            path,
            source,
        };
        conn.set_read_timeout(Some(REQUEST_TIMEOUT))
            .map_err(io_err)?;
        let bytes = serde_json::to_vec(body).expect("a request serialises");
        let head = conn.post(path, token, &bytes).map_err(io_err)?;
        let answer = conn.read_body().map_err(io_err)?;
        let value: Value = serde_json::from_slice(&answer).map_err(|e| {
            self.bad(
                path,
                &format!("HTTP {} with a body that is not JSON: {e}", head.status),
            )
        })?;
        if head.status != 200 {
            return Err(self.refused(path, &value));
        }
        Ok(value)
    }

    fn refused(&self, path: &'static str, value: &Value) -> EtcdError {
        let error = value.get("error").unwrap_or(value);
        let message = str_field(error, "message")
            .or_else(|| error.as_str())
            .or_else(|| str_field(value, "message"))
            .unwrap_or("no message")
            .to_owned();
        let code = int_field(value, "code")
            .or_else(|| int_field(error, "grpc_code"))
            .unwrap_or(-1);
        EtcdError::Refused {
            endpoint: self.endpoint().to_owned(),
            path,
            code,
            message,
        }
    }

    fn bad(&self, path: &'static str, reason: &str) -> EtcdError {
        EtcdError::BadAnswer {
            endpoint: self.endpoint().to_owned(),
            path,
            reason: reason.to_owned(),
        }
    }

    /// Sends one request and returns its answer; a kept-alive connection that turns
    /// out dead is replaced once, and an expired auth token is renewed once.
    pub fn call(&mut self, path: &'static str, body: &Value) -> Result<Value, EtcdError> {
        let mut retried = false;
        loop {
            let reused = self.conn.is_some();
            let mut conn = match self.conn.take() {
                Some(conn) if conn.is_reusable() => conn,
                _ => self.connect()?,
            };
            let token = self.token.clone();
            match self.exchange(&mut conn, path, token.as_deref(), body) {
                Ok(value) => {
                    self.conn = Some(conn);
                    return Ok(value);
                }
                Err(EtcdError::Io { .. }) if reused && !retried => retried = true,
                Err(e) if e.is_bad_token() && !retried => {
                    retried = true;
                    self.token = None;
                }
                Err(e @ EtcdError::Refused { .. }) => {
                    self.conn = Some(conn);
                    return Err(e);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads every key under `prefix` at one revision, a page at a time.
    pub fn range_prefix(&mut self, prefix: &str) -> Result<Snapshot, EtcdError> {
        const PATH: &str = "/v3/kv/range";
        let end = b64(&range_end(prefix.as_bytes()));
        let mut from = prefix.as_bytes().to_vec();
        let mut snapshot = Snapshot::default();
        loop {
            let body = json!({
                "key": b64(&from), "range_end": end,
                "limit": RANGE_PAGE, "revision": snapshot.revision,
            });
            let answer = self.call(PATH, &body)?;
            if snapshot.revision == 0 {
                snapshot.revision =
                    revision(&answer).ok_or_else(|| self.bad(PATH, "no revision"))?;
            }
            let kvs = answer.get("kvs").and_then(Value::as_array);
            for kv in kvs.into_iter().flatten() {
                let key =
                    bytes_field(kv, "key").ok_or_else(|| self.bad(PATH, "a key is not base64"))?;
                let value = bytes_field(kv, "value").unwrap_or_default();
                snapshot.kvs.push((key, value));
            }
            let more = answer.get("more").and_then(Value::as_bool).unwrap_or(false);
            match snapshot.kvs.last() {
                Some((last, _)) if more => {
                    from = last.clone();
                    from.push(0);
                }
                _ => return Ok(snapshot),
            }
        }
    }

    /// Starts watching every key under `prefix` from `start_revision` on, on a
    /// connection of its own.
    pub fn watch(&mut self, prefix: &str, start_revision: i64) -> Result<WatchStream, EtcdError> {
        const PATH: &str = "/v3/watch";
        let mut conn = self.connect()?;
        let io_err = |source| EtcdError::Io {
            endpoint: self.endpoint().to_owned(),
            path: PATH,
            source,
        };
        let body = json!({ "create_request": {
            "key": b64(prefix.as_bytes()),
            "range_end": b64(&range_end(prefix.as_bytes())),
            "start_revision": start_revision,
        }});
        conn.set_read_timeout(Some(REQUEST_TIMEOUT))
            .map_err(io_err)?;
        let bytes = serde_json::to_vec(&body).expect("a request serialises");
        let head = conn
            .post(PATH, self.token.as_deref(), &bytes)
            .map_err(io_err)?;
        if head.status != 200 {
            let answer = conn.read_body().map_err(io_err)?;
            let value = serde_json::from_slice(&answer).unwrap_or(Value::Null);
            return Err(self.refused(PATH, &value));
        }
        conn.set_read_timeout(Some(WATCH_POLL)).map_err(io_err)?;
        Ok(WatchStream::new(conn, self.endpoint()))
    }

    /// Applies `ops` in one transaction.
    pub fn txn(&mut self, ops: &[Op]) -> Result<(), EtcdError> {
        let success: Vec<Value> = ops
            .iter()
            .map(|op| match op {
                Op::Put { key, value, lease } => json!({ "request_put": {
                    "key": b64(key), "value": b64(value), "lease": lease.to_string() } }),
                Op::Delete { key } => json!({ "request_delete_range": { "key": b64(key) } }),
            })
            .collect();
        self.call("/v3/kv/txn", &json!({ "success": success }))
            .map(drop)
    }

    /// Puts `value` under `key` with `lease` (0: none).
    pub fn put(&mut self, key: &[u8], value: &[u8], lease: i64) -> Result<(), EtcdError> {
        let body = json!({ "key": b64(key), "value": b64(value), "lease": lease.to_string() });
        self.call("/v3/kv/put", &body).map(drop)
    }

    /// Deletes `key`.
    pub fn delete(&mut self, key: &[u8]) -> Result<(), EtcdError> {
        self.call("/v3/kv/deleterange", &json!({ "key": b64(key) }))
            .map(drop)
    }

    /// Compacts the store's history up to `revision` (tests and operators).
    pub fn compact(&mut self, revision: i64) -> Result<(), EtcdError> {
        let body = json!({ "revision": revision.to_string(), "physical": true });
        self.call("/v3/kv/compaction", &body).map(drop)
    }

    /// Grants a lease of `ttl_secs`; returns its id.
    pub fn grant(&mut self, ttl_secs: u64) -> Result<i64, EtcdError> {
        let answer = self.call("/v3/lease/grant", &json!({ "TTL": ttl_secs.to_string() }))?;
        if let Some(error) = str_field(&answer, "error").filter(|e| !e.is_empty()) {
            return Err(self.bad("/v3/lease/grant", error));
        }
        int_field(&answer, "ID").ok_or_else(|| self.bad("/v3/lease/grant", "no lease ID"))
    }

    /// Renews lease `id` once; returns its new TTL in seconds, 0 when the lease is gone.
    pub fn keep_alive(&mut self, id: i64) -> Result<i64, EtcdError> {
        let answer = self.call("/v3/lease/keepalive", &json!({ "ID": id.to_string() }))?;
        if let Some(error) = answer.get("error") {
            return Err(self.refused("/v3/lease/keepalive", &json!({ "error": error })));
        }
        let result = answer.get("result").unwrap_or(&answer);
        Ok(int_field(result, "TTL").unwrap_or(0))
    }

    /// Revokes lease `id`: every key attached to it is deleted.
    pub fn revoke(&mut self, id: i64) -> Result<(), EtcdError> {
        self.call("/v3/lease/revoke", &json!({ "ID": id.to_string() }))
            .map(drop)
    }
}

pub(crate) fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

pub(crate) fn str_field<'v>(v: &'v Value, name: &str) -> Option<&'v str> {
    v.get(name)?.as_str()
}

pub(crate) fn bytes_field(v: &Value, name: &str) -> Option<Vec<u8>> {
    B64.decode(str_field(v, name)?).ok()
}

/// A 64-bit field, which the gateway writes as a string.
pub(crate) fn int_field(v: &Value, name: &str) -> Option<i64> {
    match v.get(name)? {
        Value::String(s) => s.parse().ok(),
        other => other.as_i64(),
    }
}

pub(crate) fn revision(answer: &Value) -> Option<i64> {
    int_field(answer.get("header")?, "revision")
}
