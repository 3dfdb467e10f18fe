//! A blocking client of etcd's v3 gRPC API: range, watch, txn, put, delete, compact and
//! leases, over one HTTP/2 connection (tonic) kept for every request and watch.
//!
//! The plugins' threads are plain threads (the SDK has no runtime), so the client owns
//! a single-threaded tokio runtime and blocks on each call: the connection's work runs
//! on the calling thread while it waits, with no hop to another thread on the way from
//! the socket to the caller. Requests and responses are the hand-written messages of
//! [`crate::proto`], sent with tonic's prost codec to the method paths etcd serves.
//!
//! The connection moves to the next endpoint when the current one cannot be reached;
//! a connection that broke is replaced once per request, and an expired auth token is
//! renewed once.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Runtime;
use tokio_stream::StreamExt as _;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status, Streaming};

use crate::config::Settings;
use crate::error::EtcdError;
use crate::layout::range_end;
use crate::proto::{self, path};
use crate::watch::WatchStream;

/// How long a request may wait for its answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How many keys one page of a range read holds.
const RANGE_PAGE: i64 = 10_000;
/// The largest message accepted from etcd (tonic's default is 4 MiB; a range page of
/// large values may be more).
const MAX_MESSAGE: usize = 256 << 20;

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

/// The auth token sent with each request, when signed in.
type Token = Option<MetadataValue<Ascii>>;

/// A blocking etcd v3 client over gRPC.
pub struct Client {
    settings: Settings,
    /// The endpoint in use (index into `settings.endpoints`).
    current: usize,
    runtime: Arc<Runtime>,
    channel: Option<Channel>,
    token: Token,
}

impl Client {
    /// A client of the configured endpoints; it connects on its first request.
    pub fn new(settings: Settings) -> Client {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .expect("a single-threaded tokio runtime (an epoll instance and a timer)");
        Client {
            settings,
            current: 0,
            runtime: Arc::new(runtime),
            channel: None,
            token: None,
        }
    }

    /// The URL of the endpoint in use.
    pub fn endpoint(&self) -> &str {
        &self.settings.endpoints[self.current].url
    }

    /// Drops the connection (the next request makes a new one).
    pub fn disconnect(&mut self) {
        self.channel = None;
    }

    /// Connects to the current endpoint or, failing that, the next ones in turn.
    fn connect(&mut self) -> Result<Channel, EtcdError> {
        let n = self.settings.endpoints.len();
        let dial = self.settings.dial_timeout;
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no endpoint");
        for i in 0..n {
            let at = (self.current + i) % n;
            let uri = format!("http://{}", self.settings.endpoints[at].authority);
            let endpoint = match Endpoint::from_shared(uri) {
                Ok(endpoint) => endpoint,
                Err(e) => {
                    last = io::Error::new(io::ErrorKind::InvalidInput, e);
                    continue;
                }
            };
            // TCP keep-alive: a watch on a peer that vanished without closing (a network
            // gone, a host powered off) fails after about 5 + 3 x 2 seconds of silence
            // instead of never, and the watcher reconnects and resyncs. The kernel does
            // it: no timer in this process.
            let endpoint = endpoint
                .connect_timeout(dial)
                .tcp_nodelay(true)
                .tcp_keepalive(Some(Duration::from_secs(5)))
                .tcp_keepalive_interval(Some(Duration::from_secs(2)))
                .tcp_keepalive_retries(Some(3));
            let connected = self
                .runtime
                .block_on(async { tokio::time::timeout(dial, endpoint.connect()).await });
            match connected {
                Ok(Ok(channel)) => {
                    self.current = at;
                    self.channel = Some(channel.clone());
                    return Ok(channel);
                }
                Ok(Err(e)) => last = io::Error::other(error_chain(&e)),
                Err(_) => {
                    last = io::Error::new(io::ErrorKind::TimedOut, format!("no answer in {dial:?}"))
                }
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

    /// The connection and the token to make a request with: connects, and signs in when
    /// credentials are set and there is no token yet.
    fn ready(&mut self) -> Result<(Channel, Token), EtcdError> {
        let channel = match &self.channel {
            Some(channel) => channel.clone(),
            None => self.connect()?,
        };
        if self.token.is_none() {
            if let Some((name, password)) = self.settings.credentials.clone() {
                let request = proto::AuthenticateRequest { name, password };
                let call = unary::<_, proto::AuthenticateResponse>(
                    channel.clone(),
                    path::AUTHENTICATE,
                    Request::new(request),
                );
                let answer = self.block(path::AUTHENTICATE, call)?;
                let token = answer.token.parse().map_err(|_| EtcdError::BadAnswer {
                    endpoint: self.endpoint().to_owned(),
                    path: path::AUTHENTICATE,
                    reason: "the token is not printable ASCII".into(),
                })?;
                self.token = Some(token);
            }
        }
        Ok((channel, self.token.clone()))
    }

    /// Runs `call` on this thread until it is done or [`REQUEST_TIMEOUT`] passes (a
    /// timer is made inside the runtime: hence the `async` blocks around timeouts).
    fn block<T>(
        &self,
        path: &'static str,
        call: impl Future<Output = Result<T, Status>>,
    ) -> Result<T, EtcdError> {
        let result = self
            .runtime
            .block_on(async { tokio::time::timeout(REQUEST_TIMEOUT, call).await })
            .unwrap_or_else(|_| {
                Err(Status::deadline_exceeded(format!(
                    "no answer in {REQUEST_TIMEOUT:?}"
                )))
            });
        result.map_err(|status| EtcdError::from_status(self.endpoint(), path, status))
    }

    /// Makes the call `make(channel, token)` builds; a connection that turns out broken
    /// is replaced once, and a refused token renewed once.
    fn run<T, F, Fut>(&mut self, path: &'static str, make: F) -> Result<T, EtcdError>
    where
        F: Fn(Channel, Token) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let mut retried = false;
        loop {
            let reused = self.channel.is_some();
            let (channel, token) = self.ready()?;
            match self.block(path, make(channel, token)) {
                Ok(value) => return Ok(value),
                Err(EtcdError::Io { .. }) if reused && !retried => {
                    retried = true;
                    self.channel = None;
                }
                Err(e) if e.is_bad_token() && !retried => {
                    retried = true;
                    self.token = None;
                }
                Err(e @ EtcdError::Io { .. }) => {
                    self.channel = None;
                    return Err(e);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends one request to the unary method at `path` and returns its answer.
    pub fn call<Req, Resp>(&mut self, path: &'static str, request: Req) -> Result<Resp, EtcdError>
    where
        Req: prost::Message + Clone + 'static,
        Resp: prost::Message + Default + 'static,
    {
        self.run(path, |channel, token| {
            unary::<Req, Resp>(channel, path, with_token(request.clone(), token))
        })
    }

    /// Reads every key under `prefix` at one revision, a page at a time.
    pub fn range_prefix(&mut self, prefix: &str) -> Result<Snapshot, EtcdError> {
        let range_end = range_end(prefix.as_bytes());
        let mut request = proto::RangeRequest {
            key: prefix.as_bytes().to_vec(),
            range_end,
            limit: RANGE_PAGE,
            revision: 0,
        };
        let mut snapshot = Snapshot::default();
        loop {
            let answer: proto::RangeResponse = self.call(path::RANGE, request.clone())?;
            if snapshot.revision == 0 {
                snapshot.revision = answer.header.map(|h| h.revision).unwrap_or(0);
                if snapshot.revision == 0 {
                    return Err(EtcdError::BadAnswer {
                        endpoint: self.endpoint().to_owned(),
                        path: path::RANGE,
                        reason: "no revision".into(),
                    });
                }
                request.revision = snapshot.revision;
            }
            snapshot
                .kvs
                .extend(answer.kvs.into_iter().map(|kv| (kv.key, kv.value)));
            match snapshot.kvs.last() {
                Some((last, _)) if answer.more => {
                    request.key = last.clone();
                    request.key.push(0);
                }
                _ => return Ok(snapshot),
            }
        }
    }

    /// Starts watching every key under `prefix` from `start_revision` on (0: from now).
    pub fn watch(&mut self, prefix: &str, start_revision: i64) -> Result<WatchStream, EtcdError> {
        let create = proto::WatchRequest {
            request_union: Some(proto::WatchRequestUnion::CreateRequest(
                proto::WatchCreateRequest {
                    key: prefix.as_bytes().to_vec(),
                    range_end: range_end(prefix.as_bytes()),
                    start_revision,
                },
            )),
        };
        let stream = self.run(path::WATCH, |channel, token| {
            open_stream::<_, proto::WatchResponse>(channel, path::WATCH, create.clone(), token)
        })?;
        Ok(WatchStream::new(
            self.runtime.clone(),
            stream,
            self.endpoint(),
        ))
    }

    /// Applies `ops` in one transaction.
    pub fn txn(&mut self, ops: &[Op]) -> Result<(), EtcdError> {
        use proto::Request::{RequestDeleteRange, RequestPut};
        let success = ops
            .iter()
            .map(|op| proto::RequestOp {
                request: Some(match op {
                    Op::Put { key, value, lease } => RequestPut(proto::PutRequest {
                        key: key.clone(),
                        value: value.clone(),
                        lease: *lease,
                    }),
                    Op::Delete { key } => RequestDeleteRange(proto::DeleteRangeRequest {
                        key: key.clone(),
                        range_end: Vec::new(),
                    }),
                }),
            })
            .collect();
        self.call::<_, proto::Ack>(path::TXN, proto::TxnRequest { success })
            .map(drop)
    }

    /// Puts `value` under `key` with `lease` (0: none).
    pub fn put(&mut self, key: &[u8], value: &[u8], lease: i64) -> Result<(), EtcdError> {
        let request = proto::PutRequest {
            key: key.to_vec(),
            value: value.to_vec(),
            lease,
        };
        self.call::<_, proto::Ack>(path::PUT, request).map(drop)
    }

    /// Deletes `key`.
    pub fn delete(&mut self, key: &[u8]) -> Result<(), EtcdError> {
        let request = proto::DeleteRangeRequest {
            key: key.to_vec(),
            range_end: Vec::new(),
        };
        self.call::<_, proto::Ack>(path::DELETE_RANGE, request)
            .map(drop)
    }

    /// Compacts the store's history up to `revision` (tests and operators).
    pub fn compact(&mut self, revision: i64) -> Result<(), EtcdError> {
        let request = proto::CompactionRequest {
            revision,
            physical: true,
        };
        self.call::<_, proto::Ack>(path::COMPACT, request).map(drop)
    }

    /// Grants a lease of `ttl_secs`; returns its id.
    pub fn grant(&mut self, ttl_secs: u64) -> Result<i64, EtcdError> {
        let request = proto::LeaseGrantRequest {
            ttl: ttl_secs.try_into().unwrap_or(i64::MAX),
        };
        let answer: proto::LeaseGrantResponse = self.call(path::LEASE_GRANT, request)?;
        if !answer.error.is_empty() || answer.id == 0 {
            let reason = match answer.error.is_empty() {
                true => "no lease ID".to_owned(),
                false => answer.error,
            };
            return Err(EtcdError::BadAnswer {
                endpoint: self.endpoint().to_owned(),
                path: path::LEASE_GRANT,
                reason,
            });
        }
        Ok(answer.id)
    }

    /// Renews lease `id` once; returns its new TTL in seconds, 0 when the lease is gone.
    ///
    /// The renewal is a stream of its own, opened for one request and its answer, then
    /// dropped: the reactor renews every third of the TTL, seconds apart.
    pub fn keep_alive(&mut self, id: i64) -> Result<i64, EtcdError> {
        self.run(path::LEASE_KEEP_ALIVE, |channel, token| async move {
            let mut stream = open_stream::<_, proto::LeaseKeepAliveResponse>(
                channel,
                path::LEASE_KEEP_ALIVE,
                proto::LeaseRequest { id },
                token,
            )
            .await?;
            match stream.message().await? {
                Some(answer) => Ok(answer.ttl),
                None => Err(Status::unavailable(
                    "the keep-alive stream ended unanswered",
                )),
            }
        })
    }

    /// Revokes lease `id`: every key attached to it is deleted.
    pub fn revoke(&mut self, id: i64) -> Result<(), EtcdError> {
        self.call::<_, proto::Ack>(path::LEASE_REVOKE, proto::LeaseRequest { id })
            .map(drop)
    }
}

/// `message` as a request, with the auth token when signed in.
fn with_token<T>(message: T, token: Token) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(token) = token {
        request.metadata_mut().insert("token", token);
    }
    request
}

/// One call of a unary method.
async fn unary<Req, Resp>(
    channel: Channel,
    path: &'static str,
    request: Request<Req>,
) -> Result<Resp, Status>
where
    Req: prost::Message + 'static,
    Resp: prost::Message + Default + 'static,
{
    let mut grpc = tonic::client::Grpc::new(channel).max_decoding_message_size(MAX_MESSAGE);
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(error_chain(&e)))?;
    let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
    let path = http::uri::PathAndQuery::from_static(path);
    Ok(grpc.unary(request, path, codec).await?.into_inner())
}

/// Opens a bidirectional stream whose only request is `first`; the client's half stays
/// open (etcd ends a watch whose client stops sending), and the server's half is
/// returned.
async fn open_stream<Req, Resp>(
    channel: Channel,
    path: &'static str,
    first: Req,
    token: Token,
) -> Result<Streaming<Resp>, Status>
where
    Req: prost::Message + Send + 'static,
    Resp: prost::Message + Default + Send + 'static,
{
    let mut grpc = tonic::client::Grpc::new(channel).max_decoding_message_size(MAX_MESSAGE);
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(error_chain(&e)))?;
    let requests = tokio_stream::once(first).chain(tokio_stream::pending());
    let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
    let path = http::uri::PathAndQuery::from_static(path);
    let response = grpc
        .streaming(with_token(requests, token), path, codec)
        .await?;
    Ok(response.into_inner())
}

/// An error and its causes on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text
}
