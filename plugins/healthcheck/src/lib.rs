//! The `healthcheck` watcher (the job of SmartStack's nerve): checks a list of nodes
//! over TCP or HTTP and reports each up after `rise` passing checks in a row and down
//! after `fall` failing ones.
//!
//! ```toml
//! [services.web.watchers.local]
//! type = "healthcheck"
//! cfg = { check = "http", path = "/health", interval = "2s", timeout = "1s", nodes = [
//!     { name = "web1", host = "127.0.0.1", port = 8081 },
//!     { name = "web2", host = "127.0.0.1", port = 8082, meta = { zone = "eu" } },
//! ] }
//! ```
//!
//! | key             | default        | meaning                                               |
//! |-----------------|----------------|-------------------------------------------------------|
//! | `nodes`         | (required)     | `{ name, host, port, meta? }` per node; names unique   |
//! | `check`         | `"tcp"`        | `"tcp"`: a connection opens; `"http"`: a `GET` answers |
//! | `path`          | `"/"`          | the `GET`'s path and query (http only)                |
//! | `expect_status` | any 2xx or 3xx | a status or a list of statuses that pass (http only)  |
//! | `interval`      | `"2s"`         | time between the starts of two checks of a node       |
//! | `timeout`       | `"1s"`         | the longest a check may take; longer is a failure     |
//! | `rise`          | `2`            | passes in a row before a node is reported up          |
//! | `fall`          | `2`            | failures in a row before a node is reported down      |
//!
//! Nothing is reported for a node before its first `rise` passes or `fall` failures,
//! then only its flips. Every node is checked concurrently on its own fixed ticks (one
//! slow node delays no other, and a slow check does not push its node's schedule back).
//! The plugin has no global configuration.
//!
//! # Layout
//! - [`config`]: the instance config and its checks.
//! - [`health`]: rise and fall, from check results to flips.
//! - [`probe`]: one TCP or HTTP check.
//! - [`schedule`]: every node's checks on fixed ticks, flips batched to the host.
#![warn(missing_docs)]

pub mod config;
pub mod health;
pub mod probe;
pub mod schedule;

use std::sync::Arc;

use plugin_sdk::{watcher_endpoint, Config, SendError, Watcher, WatcherEndpoint};
use tokio::sync::Notify;

/// The plugin type name users write as `type = "healthcheck"`.
pub const TYPE: &str = "healthcheck";

/// The healthcheck watcher.
#[derive(Debug, Default)]
pub struct HealthCheck;

impl Watcher for HealthCheck {
    fn accept(&mut self, cfg: Config) -> plugin_sdk::Result<WatcherEndpoint> {
        let settings = config::parse(&cfg)?;
        Ok(watcher_endpoint(move |events, close| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start the healthcheck runtime: {e}"))?;
            // The close signal is a blocking wait; a thread turns it into a wake-up of
            // the runtime. It sleeps until the close (no polling) and then exits.
            let closed = Arc::new(Notify::new());
            {
                let (close, closed) = (close.clone(), closed.clone());
                std::thread::Builder::new()
                    .name("healthcheck-close".into())
                    .spawn(move || {
                        close.wait();
                        closed.notify_one();
                    })
                    .map_err(|e| format!("cannot start a thread: {e}"))?;
            }
            let result = runtime.block_on(async {
                tokio::select! {
                    result = schedule::run(settings, events) => result,
                    () = closed.notified() => Ok(()),
                }
            });
            // Checks in flight are dropped with the runtime; DNS lookups still running
            // on its blocking pool are not waited for.
            runtime.shutdown_background();
            match result {
                Ok(()) | Err(SendError::Closed(_)) => Ok(()),
                Err(e) => Err(e.into()),
            }
        }))
    }
}

#[cfg(test)]
mod tests;
