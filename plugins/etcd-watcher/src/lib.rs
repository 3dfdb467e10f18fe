//! The `etcd` watcher: the nodes registered under a prefix in etcd, kept in step with a
//! watch.
//!
//! ```toml
//! [watchers.etcd]                       # optional; these are the defaults
//! endpoints = ["http://127.0.0.1:2379"]
//! dial_timeout = "5s"
//! # username = "receptor"              # with password, when etcd has auth on
//!
//! [services.web.watchers.registry]
//! type = "etcd"
//! cfg = { prefix = "/receptor/web/" }
//! ```
//!
//! Each key `<prefix><node name>` holding `{"host": "...", "port": N, "meta": {...}}` is
//! a node up (see `receptor_etcd::layout`). At start the watcher reads the prefix at a
//! revision R and sends it as a full list, then watches from R+1 and sends each change.
//! A lost connection is retried with backoff (100 ms doubling to 10 s, jittered) and
//! followed by a fresh read sent as a full list, so keys deleted meanwhile go down; a
//! watch whose revision was compacted resyncs the same way. A key whose value is not a
//! valid node is logged (at most once a minute per key) and skipped.
//!
//! # Layout
//! - `lib.rs`: the configuration and the [`Watcher`] implementation.
//! - [`sync`]: one instance's loop: read, send the full list, watch, resync.
#![warn(missing_docs)]

pub mod sync;

use plugin_sdk::{watcher_endpoint, Config, Watcher, WatcherEndpoint};
use receptor_etcd::layout::check_prefix;
use receptor_etcd::{ClientConfig, Settings};
use serde::Deserialize;

/// The plugin type name users write as `type = "etcd"`.
pub const TYPE: &str = "etcd";

/// An instance's configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InstanceConfig {
    /// The key prefix the nodes live under; ends with `/`.
    prefix: String,
}

/// The etcd watcher.
#[derive(Debug, Default)]
pub struct EtcdWatcher {
    settings: Option<Settings>,
}

impl Watcher for EtcdWatcher {
    fn setup(&mut self, cfg: Config) -> plugin_sdk::Result<()> {
        let cfg: ClientConfig = cfg.parse()?;
        self.settings = Some(cfg.settings()?);
        Ok(())
    }

    fn accept(&mut self, cfg: Config) -> plugin_sdk::Result<WatcherEndpoint> {
        let cfg: InstanceConfig = cfg.parse()?;
        check_prefix(&cfg.prefix)?;
        let settings = match &self.settings {
            Some(settings) => settings.clone(),
            None => ClientConfig::default().settings()?,
        };
        Ok(watcher_endpoint(move |events, close| {
            sync::run(settings, &cfg.prefix, &events, &close);
            Ok(())
        }))
    }
}
