//! The delivery task: posts the pending changes as JSON, retries what failed.
//!
//! One request at a time, so the receiver sees the changes of a node in order. A batch
//! is every pending change (at most [`MAX_BATCH`] nodes): delivered on a 2xx answer;
//! retried after a jittered backoff on a refused connection, a timeout, a 5xx, 408 or
//! 429 (the batch goes back under what arrived meanwhile, so the retry carries the
//! latest state); dropped with a warning on any other answer (a 4xx will not get better
//! by repeating it). Waiting for a retry, the task sleeps; the endpoint's thread keeps
//! taking events, so the pipeline never waits for the receiver.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderValue, CONTENT_TYPE, USER_AGENT};
use hyper::{Request, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use plugin_sdk::NodeInfo;
use serde::Serialize;

use crate::backoff::Backoff;
use crate::config::Settings;
use crate::pending::Pending;

/// The most nodes in one request; more pending go in the next requests.
pub const MAX_BATCH: usize = 1000;
/// How much of an answer's body is read (for the log).
const MAX_ANSWER: usize = 64 * 1024;
/// The `User-Agent` of the requests.
const AGENT: &str = concat!("receptor-webhook/", env!("CARGO_PKG_VERSION"));

/// The request body.
#[derive(Serialize)]
struct Payload<'a> {
    service: &'a str,
    nodes: Vec<NodeJson<'a>>,
}

/// One node of the request body; `meta` is `{}` when the node has none.
#[derive(Serialize)]
struct NodeJson<'a> {
    name: &'a str,
    status: &'static str,
    host: &'a str,
    port: u16,
    meta: &'a std::collections::BTreeMap<String, String>,
}

/// The JSON body for `nodes` of `service`.
pub fn body(service: &str, nodes: &[NodeInfo]) -> Vec<u8> {
    let payload = Payload {
        service,
        nodes: nodes
            .iter()
            .map(|n| NodeJson {
                name: &n.name,
                status: if n.is_up() { "up" } else { "down" },
                host: &n.host,
                port: n.port,
                meta: &n.meta,
            })
            .collect(),
    };
    serde_json::to_vec(&payload).expect("strings and numbers always serialize")
}

/// What became of one request.
#[derive(Debug)]
enum Outcome {
    Delivered,
    /// Not retried.
    Refused(String),
    /// Retried.
    Failed(String),
}

/// Delivers an endpoint's pending changes until it closes and nothing is left.
pub struct Delivery {
    settings: Settings,
    service: String,
    pending: Arc<Pending>,
    client: Client<HttpConnector, Full<Bytes>>,
    backoff: Backoff,
}

impl Delivery {
    /// A delivery of `service`'s changes as `settings` say.
    pub fn new(settings: Settings, service: String, pending: Arc<Pending>) -> Self {
        // No pool timer: idle connections are dropped when next looked at, so an idle
        // webhook has no periodic wake-up.
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build_http();
        let backoff = Backoff::new(settings.backoff_min, settings.backoff_max);
        Delivery {
            settings,
            service,
            pending,
            client,
            backoff,
        }
    }

    /// Runs until the endpoint has closed and nothing is pending.
    pub async fn run(mut self) {
        loop {
            let Some(batch) = self.pending.take(MAX_BATCH) else {
                if self.pending.is_closed() {
                    return;
                }
                self.pending.changed().await;
                continue;
            };
            match self.post(&batch).await {
                Outcome::Delivered => {
                    self.pending.done();
                    self.backoff.reset();
                    tracing::debug!(url = %self.settings.url, nodes = batch.len(), "delivered");
                }
                Outcome::Refused(why) => {
                    self.pending.done();
                    tracing::warn!(
                        "{} refused {} node changes of service '{}', not retried: {why}",
                        self.settings.url,
                        batch.len(),
                        self.service
                    )
                }
                Outcome::Failed(why) => {
                    self.pending.put_back(batch);
                    let delay = self.backoff.next_delay();
                    tracing::warn!(
                        "cannot deliver {} node changes of service '{}' to {}: {why}; retrying in {delay:?}",
                        self.pending.len(),
                        self.service,
                        self.settings.url
                    );
                    if self.pending.is_closed() {
                        tokio::time::sleep(delay).await;
                    } else {
                        tokio::select! {
                            () = tokio::time::sleep(delay) => {}
                            // A close ends the wait: what is left gets its try at once.
                            () = self.pending.closed() => self.backoff.reset(),
                        }
                    }
                }
            }
        }
    }

    async fn post(&self, batch: &[NodeInfo]) -> Outcome {
        let mut request = Request::new(Full::new(Bytes::from(body(&self.service, batch))));
        *request.method_mut() = self.settings.method.clone();
        *request.uri_mut() = self.settings.url.clone();
        let headers = request.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(USER_AGENT, HeaderValue::from_static(AGENT));
        for (name, value) in &self.settings.headers {
            headers.insert(name, value.clone());
        }
        let exchange = async {
            let answer = self.client.request(request).await.map_err(|e| {
                // The chain says what happened ("connection refused"); the top alone
                // says only "client error (Connect)".
                let mut text = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(inner) = source {
                    text = format!("{text}: {inner}");
                    source = inner.source();
                }
                text
            })?;
            let status = answer.status();
            let body = Limited::new(answer.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            Ok::<_, String>((status, body))
        };
        match tokio::time::timeout(self.settings.timeout, exchange).await {
            Err(_) => Outcome::Failed(format!(
                "no answer within the timeout of {:?}",
                self.settings.timeout
            )),
            Ok(Err(e)) => Outcome::Failed(e),
            Ok(Ok((status, _))) if status.is_success() => Outcome::Delivered,
            Ok(Ok((status, body))) => {
                let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
                let why = format!("answered {status}: {}", text.trim());
                if retried(status) {
                    Outcome::Failed(why)
                } else {
                    Outcome::Refused(why)
                }
            }
        }
    }
}

/// Whether an answer of `status` is worth repeating the request for.
fn retried(status: StatusCode) -> bool {
    status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
}

#[cfg(test)]
mod tests {
    use super::*;
    use plugin_sdk::NodeStatus::{Down, Up};

    #[test]
    fn the_body_has_the_documented_shape() {
        let nodes = [
            NodeInfo::new("a", Up, "10.0.0.1", 80).with_meta("zone", "eu"),
            NodeInfo::new("b", Down, "10.0.0.2", 81),
        ];
        let v: serde_json::Value = serde_json::from_slice(&body("web", &nodes)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"service": "web", "nodes": [
                {"name": "a", "status": "up", "host": "10.0.0.1", "port": 80, "meta": {"zone": "eu"}},
                {"name": "b", "status": "down", "host": "10.0.0.2", "port": 81, "meta": {}},
            ]})
        );
    }

    #[test]
    fn server_errors_timeouts_and_throttling_are_retried_other_answers_not() {
        for code in [500, 502, 503, 408, 429] {
            assert!(retried(StatusCode::from_u16(code).unwrap()), "{code}");
        }
        for code in [400, 401, 404, 405, 413, 301] {
            assert!(!retried(StatusCode::from_u16(code).unwrap()), "{code}");
        }
    }
}
