//! The command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Receptor keeps load balancers and proxies in step with the live instances of services:
/// watcher plugins report nodes going up or down, reactor plugins act on the changes.
#[derive(Debug, Parser)]
#[command(name = "receptor", version, about, long_about = None)]
pub struct Cli {
    /// Log format on stderr. The log level comes from RECEPTOR_LOG (e.g. `debug`,
    /// `info,actors=trace`); the default is `info`.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,

    /// What to do; `run` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the services of a config (the default).
    Run {
        #[command(flatten)]
        config: ConfigArg,
        /// Test hook: once running, make this plugin's (`kind/type`) host actor panic, or
        /// this service's (`service/<name>`; test builds only).
        #[arg(long, value_name = "PLUGIN", hide = true)]
        test_panic_in: Option<String>,
    },
    /// Validate a config and print a summary of what it would run.
    Check {
        #[command(flatten)]
        config: ConfigArg,
        /// Print the effective configuration (environment overrides applied) as JSON.
        #[arg(long)]
        print: bool,
    },
    /// List the plugin types available: built-in and found in plugin_dir.
    Plugins(ConfigArg),
    /// Serve a built-in plugin (the host starts this; it is not for direct use).
    #[command(hide = true)]
    Plugin {
        /// Watcher or reactor.
        #[arg(value_enum)]
        kind: KindArg,
        /// The built-in type.
        plugin_type: String,
    },
}

/// A plugin kind on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KindArg {
    /// A watcher.
    Watcher,
    /// A reactor.
    Reactor,
}

impl From<KindArg> for actors::lookup::PluginKind {
    fn from(kind: KindArg) -> Self {
        match kind {
            KindArg::Watcher => actors::lookup::PluginKind::Watcher,
            KindArg::Reactor => actors::lookup::PluginKind::Reactor,
        }
    }
}

impl Default for Command {
    fn default() -> Self {
        Command::Run {
            config: ConfigArg::default(),
            test_panic_in: None,
        }
    }
}

/// The config file option shared by the subcommands.
#[derive(Debug, Clone, Args)]
pub struct ConfigArg {
    /// The config file.
    #[arg(
        short,
        long = "config",
        value_name = "FILE",
        default_value = "Receptor.toml"
    )]
    pub config: PathBuf,
}

impl Default for ConfigArg {
    fn default() -> Self {
        ConfigArg {
            config: PathBuf::from("Receptor.toml"),
        }
    }
}
