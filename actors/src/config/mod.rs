//! The host's configuration: `Receptor.toml` plus `RECEPTOR_*` environment overrides.
//!
//! A config names the services to run and, for each, its watcher and reactor instances
//! with their plugin type and plugin-specific `cfg`. Plugin types can also get a global
//! configuration (`[watchers.<type>]`, `[reactors.<type>]`) that their `Setup` receives.
//!
//! ```toml
//! plugin_dir = "plugins"        # third-party plugin executables (relative to this file)
//! shutdown_timeout = "5s"       # how long plugins get to stop before they are killed
//!
//! [watchers.restapi]            # global (Setup) config of a plugin type
//! listen = "127.0.0.1:8001"
//!
//! [services.web.watchers.node1] # one watcher instance of service `web` (Accept)
//! type = "dummy"
//! cfg = { name = "node1", host = "127.0.0.1", port = 80 }
//!
//! [services.web.reactors.log]
//! type = "filelogger"
//! cfg = { filename = "/tmp/receptor_events.log", unbuffered = true }
//! ```
//!
//! Every key can be overridden from the environment: `RECEPTOR_` then the key path in
//! capitals with `__` between levels, e.g. `RECEPTOR_PLUGIN_DIR=/opt/plugins` or
//! `RECEPTOR_SERVICES__WEB__REACTORS__LOG__CFG__FILENAME=/tmp/web.log`. Environment keys
//! are lowercased, so only lowercase service and instance names can be overridden.
//! `RECEPTOR_LOG` (the log filter) and names starting with `RECEPTOR_BENCH_`,
//! `RECEPTOR_TEST_` or `RECEPTOR_INTERNAL_` are not config keys.
//!
//! [`load`] reads, merges, deserialises and validates in one go; every error names the
//! file or environment variable and the key at fault.

mod error;
mod load;
mod supervision;
mod validate;

pub use error::{ConfigError, Problem};
pub use load::{load, load_plugin_dir, ENV_PREFIX};
pub use supervision::{OnFailure, Supervision, SupervisionPolicy};

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::lookup::{PluginKind, PluginSource};

/// The validated configuration of a host.
#[derive(Debug, Clone)]
pub struct Config {
    /// The config file it was read from.
    pub file: PathBuf,
    /// Where third-party plugin executables live (resolved: absolute or relative to the
    /// working directory).
    pub plugin_dir: PathBuf,
    /// How long plugins get to stop at shutdown before they are killed.
    pub shutdown_timeout: Duration,
    /// Supervision settings (restart budget and the like).
    pub supervision: Supervision,
    /// Global (`Setup`) configuration per watcher plugin type.
    pub watchers: BTreeMap<String, serde_json::Value>,
    /// Global (`Setup`) configuration per reactor plugin type.
    pub reactors: BTreeMap<String, serde_json::Value>,
    /// The services, by name.
    pub services: BTreeMap<String, ServiceConfig>,
    /// How each plugin type in use is served, by kind and type name.
    pub plugins: BTreeMap<(PluginKind, String), PluginSource>,
}

/// One service: its watcher and reactor instances by instance name.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceConfig {
    /// Watcher instances (sources of node events).
    pub watchers: BTreeMap<String, InstanceConfig>,
    /// Reactor instances (sinks that act on node events).
    pub reactors: BTreeMap<String, InstanceConfig>,
}

/// One watcher or reactor instance of a service: which plugin, with which settings.
#[derive(Debug, Clone, Serialize)]
pub struct InstanceConfig {
    /// The plugin type, e.g. `dummy`.
    #[serde(rename = "type")]
    pub plugin_type: String,
    /// The instance's own settings, handed to the plugin's `Accept` as JSON text.
    pub cfg: serde_json::Value,
    /// The most its ring may grow to, in bytes (`ring_size`; [`DEFAULT_RING_SIZE`]).
    /// A ring starts at one page and grows while it is busy.
    pub ring_size: usize,
}

/// The most an instance's ring grows to unless its `ring_size` says otherwise.
pub const DEFAULT_RING_SIZE: usize = 1 << 20;
/// The smallest `ring_size`: a ring must hold two pieces of a large full list (64 KiB).
pub const MIN_RING_SIZE: usize = 256 << 10;
/// The largest `ring_size`.
pub const MAX_RING_SIZE: usize = 1 << 30;

impl Config {
    /// The global config of a plugin type (`{}` when the file has none).
    pub fn global_cfg(&self, kind: PluginKind, plugin_type: &str) -> serde_json::Value {
        let table = match kind {
            PluginKind::Watcher => &self.watchers,
            PluginKind::Reactor => &self.reactors,
        };
        table
            .get(plugin_type)
            .cloned()
            .unwrap_or_else(|| serde_json::json!({}))
    }

    /// The effective configuration as pretty JSON, for `receptor check --print`.
    pub fn to_json(&self) -> String {
        let value = serde_json::json!({
            "file": self.file,
            "plugin_dir": self.plugin_dir,
            "shutdown_timeout": humantime::format_duration(self.shutdown_timeout).to_string(),
            "supervision": self.supervision,
            "watchers": self.watchers,
            "reactors": self.reactors,
            "services": self.services,
        });
        serde_json::to_string_pretty(&value).expect("a config always serialises")
    }
}
