//! The `webhook` reactor: sends each batch of node changes as JSON to a URL.
//!
//! ```toml
//! [services.web.reactors.hook]
//! type = "webhook"
//! cfg = { url = "http://127.0.0.1:9000/receptor", headers = { Authorization = "Bearer s3cret" } }
//! ```
//!
//! | key                 | default   | meaning                                               |
//! |---------------------|-----------|-------------------------------------------------------|
//! | `url`               | (required)| where the changes go; `http://` only (no TLS)         |
//! | `method`            | `"POST"`  | the request method                                    |
//! | `headers`           | `{}`      | extra headers (`Content-Type: application/json` unless set) |
//! | `timeout`           | `"5s"`    | the longest one request may take, answer included     |
//! | `retry_backoff_min` | `"100ms"` | the first wait before a retry                         |
//! | `retry_backoff_max` | `"30s"`   | the longest wait before a retry (doubling, +-20%)     |
//!
//! Each request's body is `{"service": "web", "nodes": [{"name", "status": "up"|"down",
//! "host", "port", "meta"}]}`, at most 1,000 nodes. A refused connection, a timeout, a
//! 5xx, 408 or 429 is retried with backoff; other answers that are not 2xx are logged
//! and the batch dropped. Events keep being taken meanwhile, coalesced (latest per
//! node), so the receiver ends with the true final state and the pipeline never waits.
//! At close, what is pending gets [`CLOSE_GRACE`] to go out. The plugin has no global
//! configuration.
//!
//! # Layout
//! - [`config`]: the instance config and its checks.
//! - [`pending`]: the changes not yet delivered, latest per node.
//! - [`deliver`]: the task that posts them and retries.
//! - [`backoff`]: the jittered wait between retries.
//! - [`testing`]: a small receiving server for tests.
#![warn(missing_docs)]

pub mod backoff;
pub mod config;
pub mod deliver;
pub mod pending;
pub mod testing;

use std::sync::Arc;
use std::time::Duration;

use plugin_sdk::{reactor_endpoint, Config, Reactor, ReactorEndpoint};

use crate::deliver::Delivery;
use crate::pending::Pending;

/// The plugin type name users write as `type = "webhook"`.
pub const TYPE: &str = "webhook";

/// How long what is pending at close may take to go out (the SDK gives a closing
/// endpoint 3 s before the process exits).
pub const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// The webhook reactor.
#[derive(Debug, Default)]
pub struct Webhook;

impl Reactor for Webhook {
    fn accept(&mut self, cfg: Config) -> plugin_sdk::Result<ReactorEndpoint> {
        let settings = config::parse(&cfg)?;
        let service = cfg.service().unwrap_or_default().to_owned();
        Ok(reactor_endpoint(move |events, _close| {
            let url = settings.url.to_string();
            let pending = Arc::new(Pending::default());
            let delivery = Delivery::new(settings, service, pending.clone());
            let sender = {
                let pending = pending.clone();
                std::thread::Builder::new()
                    .name("webhook".into())
                    .spawn(move || deliver(delivery, &pending))
                    .map_err(|e| format!("cannot start the delivery thread: {e}"))?
            };
            // Never waits for the receiver: every event only updates the pending map.
            for event in events {
                pending.add(event);
            }
            pending.close();
            sender
                .join()
                .map_err(|_| format!("the delivery thread for {url} panicked"))?;
            Ok(())
        }))
    }
}

/// Runs the delivery on a small runtime of its own until the endpoint has closed and
/// either nothing is left or [`CLOSE_GRACE`] has passed.
fn deliver(delivery: Delivery, pending: &Pending) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!("cannot start the webhook runtime: {e}");
            return;
        }
    };
    runtime.block_on(async {
        let run = delivery.run();
        tokio::pin!(run);
        tokio::select! {
            () = &mut run => return,
            () = pending.closed() => {}
        }
        if tokio::time::timeout(CLOSE_GRACE, run).await.is_err() {
            tracing::warn!(
                "changes of {} nodes not delivered within {CLOSE_GRACE:?} of the close: dropped",
                pending.undelivered()
            );
        }
    });
    runtime.shutdown_background();
}

#[cfg(test)]
mod tests;
