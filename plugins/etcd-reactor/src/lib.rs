//! The `etcd` reactor: registers every node up under a prefix in etcd, on a lease, so
//! other Receptors (with the `etcd` watcher) see this host's nodes.
//!
//! ```toml
//! [reactors.etcd]                       # optional; these are the defaults
//! endpoints = ["http://127.0.0.1:2379"]
//! dial_timeout = "5s"
//! ttl = "10s"                           # the lease's TTL, at least 2s
//! # username = "receptor"              # with password, when etcd has auth on
//!
//! [services.web.reactors.registry]
//! type = "etcd"
//! cfg = { prefix = "/receptor/web/" }
//! ```
//!
//! A node up is put under `<prefix><name>` as `{"host","port","meta"?}` (see
//! `receptor_etcd::layout`) with the instance's lease; a node down is deleted. The lease
//! is kept alive (every third of the TTL) and revoked when the endpoint closes, so a
//! clean stop removes the registrations at once and a killed host's vanish when the
//! lease expires. A lease lost (etcd down longer than the TTL) is granted anew and every
//! node up put again. Failed writes are retried with backoff (100 ms doubling to 10 s);
//! meanwhile the events keep coming and are coalesced (latest per node), so the
//! pipeline never waits for etcd.
//!
//! # Layout
//! - `lib.rs`: the configuration and the [`Reactor`] implementation.
//! - [`registry`]: the desired registrations, shared by the endpoint and its writer.
//! - [`writer`]: the thread that writes them to etcd and keeps the lease.
#![warn(missing_docs)]

pub mod registry;
pub mod writer;

use std::time::Duration;

use plugin_sdk::{reactor_endpoint, Config, Reactor, ReactorEndpoint};
use receptor_etcd::config::parse_duration;
use receptor_etcd::layout::check_prefix;
use receptor_etcd::{ClientConfig, Settings};
use serde::Deserialize;

/// The plugin type name users write as `type = "etcd"`.
pub const TYPE: &str = "etcd";
/// The default lease TTL.
pub const DEFAULT_TTL: Duration = Duration::from_secs(10);
/// The shortest lease TTL accepted.
pub const MIN_TTL: Duration = Duration::from_secs(2);

/// An instance's configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InstanceConfig {
    /// The key prefix the nodes are registered under; ends with `/`.
    prefix: String,
}

/// The etcd reactor.
#[derive(Debug)]
pub struct EtcdReactor {
    settings: Option<Settings>,
    ttl: Duration,
}

impl Default for EtcdReactor {
    fn default() -> Self {
        EtcdReactor {
            settings: None,
            ttl: DEFAULT_TTL,
        }
    }
}

/// Parses the global config: the connection keys and `ttl`.
fn parse_global(json: &str) -> Result<(Settings, Duration), String> {
    let mut value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("invalid config: {e}"))?;
    let ttl = match value.as_object_mut().and_then(|o| o.remove("ttl")) {
        None => DEFAULT_TTL,
        Some(serde_json::Value::String(text)) => parse_duration("ttl", &text)?,
        Some(serde_json::Value::Number(n)) => {
            Duration::from_secs_f64(n.as_f64().filter(|s| *s >= 0.0).unwrap_or(0.0))
        }
        Some(other) => return Err(format!("ttl: '{other}' is not a duration (\"10s\")")),
    };
    if ttl < MIN_TTL {
        return Err(format!("ttl: {ttl:?} is shorter than the minimum of 2s"));
    }
    if ttl.subsec_nanos() != 0 {
        return Err(format!("ttl: {ttl:?} is not a whole number of seconds"));
    }
    let client: ClientConfig = serde_json::from_value(value).map_err(|e| e.to_string())?;
    Ok((client.settings()?, ttl))
}

impl Reactor for EtcdReactor {
    fn setup(&mut self, cfg: Config) -> plugin_sdk::Result<()> {
        let (settings, ttl) = parse_global(cfg.as_json())?;
        self.settings = Some(settings);
        self.ttl = ttl;
        Ok(())
    }

    fn accept(&mut self, cfg: Config) -> plugin_sdk::Result<ReactorEndpoint> {
        let cfg: InstanceConfig = cfg.parse()?;
        check_prefix(&cfg.prefix)?;
        let settings = match &self.settings {
            Some(settings) => settings.clone(),
            None => ClientConfig::default().settings()?,
        };
        let ttl = self.ttl;
        Ok(reactor_endpoint(move |events, _close| {
            let registry = registry::Registry::default();
            let writer = writer::spawn(settings, ttl, cfg.prefix.clone(), registry.clone())?;
            // The iterator ends when the host closes the endpoint or the stream ends;
            // the writer never makes it wait.
            for event in events {
                registry.apply(&event);
            }
            registry.stop();
            writer
                .join()
                .map_err(|_| "the etcd writer thread panicked".to_owned())?;
            Ok(())
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_config_defaults_and_errors_name_the_key() {
        let (settings, ttl) = parse_global("{}").unwrap();
        assert_eq!((settings.endpoints.len(), ttl), (1, DEFAULT_TTL));
        assert_eq!(
            parse_global(r#"{"ttl": "3s"}"#).unwrap().1,
            Duration::from_secs(3)
        );
        for (cfg, key) in [
            (r#"{"ttl": "1s"}"#, "ttl"),
            (r#"{"ttl": "2500ms"}"#, "ttl"),
            (r#"{"ttl": "soon"}"#, "ttl"),
            (r#"{"endpoints": ["x"]}"#, "endpoints"),
            (r#"{"tll": "3s"}"#, "tll"),
        ] {
            let err = parse_global(cfg).unwrap_err();
            assert!(err.contains(key), "{cfg}: {err}");
        }
    }
}
