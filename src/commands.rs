//! What each subcommand does, and how a failure maps to an exit code.

use std::fmt::Write as _;

use actors::config::{self, Config};
use actors::host::{HostError, TestHooks};
use actors::lookup::{Builtins, PluginCatalog, PluginKind, PluginSource};
use actors::receptor::Launcher;
use anyhow::anyhow;

use crate::cli::{Command, ConfigArg};

/// A failed command: the error to print and what kind of failure it was.
pub struct Failure {
    /// The error chain, printed once with `{:#}`.
    pub error: anyhow::Error,
    kind: FailureKind,
}

enum FailureKind {
    /// A config or setup error: exit 1.
    Setup,
    /// A failure at run time: exit 2.
    Runtime,
}

impl Failure {
    fn setup(error: impl Into<anyhow::Error>) -> Self {
        Failure {
            error: error.into(),
            kind: FailureKind::Setup,
        }
    }

    fn runtime(error: impl Into<anyhow::Error>) -> Self {
        Failure {
            error: error.into(),
            kind: FailureKind::Runtime,
        }
    }

    /// 1 for a config or setup error, 2 for a failure at run time.
    pub fn exit_code(&self) -> u8 {
        match self.kind {
            FailureKind::Setup => 1,
            FailureKind::Runtime => 2,
        }
    }
}

/// The plugin types linked into this binary.
pub fn builtins() -> Builtins {
    Builtins {
        watchers: vec![
            receptor_dummy::TYPE,
            receptor_etcd_watcher::TYPE,
            receptor_healthcheck::TYPE,
            receptor_restapi::TYPE,
        ],
        reactors: vec![
            receptor_etcd_reactor::TYPE,
            receptor_filelogger::TYPE,
            receptor_webhook::TYPE,
        ],
    }
}

/// Runs one subcommand.
pub fn dispatch(command: Command) -> Result<(), Failure> {
    match command {
        Command::Run {
            config,
            test_panic_in,
        } => run(
            &config,
            TestHooks {
                panic_in: test_panic_in,
            },
        ),
        Command::Check { config, print } => check(&config, print),
        Command::Plugins(args) => plugins(&args),
        Command::Plugin { kind, plugin_type } => plugin(kind.into(), &plugin_type),
    }
}

fn load(args: &ConfigArg) -> Result<Config, Failure> {
    let config = config::load(&args.config, &builtins()).map_err(Failure::setup)?;
    tracing::debug!(
        file = %config.file.display(),
        services = config.services.len(),
        plugin_types = config.plugins.len(),
        "configuration loaded"
    );
    Ok(config)
}

fn run(args: &ConfigArg, hooks: TestHooks) -> Result<(), Failure> {
    let config = load(args)?;
    match ipc::names::sweep_stale() {
        Ok(swept) if !swept.removed.is_empty() => {
            tracing::info!(removed = ?swept.removed, "removed shared memory left by dead hosts")
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("cannot sweep {}: {e}", ipc::names::SHM_DIR),
    }
    let receptor_exe = std::env::current_exe()
        .map_err(|e| Failure::setup(anyhow!("cannot find the receptor executable: {e}")))?;
    actors::host::run(config, Launcher { receptor_exe }, hooks).map_err(|e| match e {
        HostError::Startup(e) => Failure::setup(e),
        HostError::Runtime(e) => Failure::runtime(anyhow!(e)),
    })
}

/// `receptor plugin <kind> <type>`: serves a built-in plugin over the control
/// connection the host handed this process. Never returns.
fn plugin(kind: PluginKind, plugin_type: &str) -> Result<(), Failure> {
    match (kind, plugin_type) {
        (PluginKind::Watcher, receptor_dummy::TYPE) => {
            plugin_sdk::serve_watcher(receptor_dummy::Dummy)
        }
        (PluginKind::Watcher, receptor_etcd_watcher::TYPE) => {
            plugin_sdk::serve_watcher(receptor_etcd_watcher::EtcdWatcher::default())
        }
        (PluginKind::Reactor, receptor_etcd_reactor::TYPE) => {
            plugin_sdk::serve_reactor(receptor_etcd_reactor::EtcdReactor::default())
        }
        (PluginKind::Watcher, receptor_restapi::TYPE) => {
            plugin_sdk::serve_watcher(receptor_restapi::RestApi::default())
        }
        (PluginKind::Reactor, receptor_filelogger::TYPE) => {
            plugin_sdk::serve_reactor(receptor_filelogger::FileLogger)
        }
        (PluginKind::Watcher, receptor_healthcheck::TYPE) => {
            plugin_sdk::serve_watcher(receptor_healthcheck::HealthCheck)
        }
        (PluginKind::Reactor, receptor_webhook::TYPE) => {
            plugin_sdk::serve_reactor(receptor_webhook::Webhook)
        }
        _ => Err(Failure::setup(anyhow!(
            "there is no built-in {kind} plugin '{plugin_type}'"
        ))),
    }
}

fn check(args: &ConfigArg, print: bool) -> Result<(), Failure> {
    let config = load(args)?;
    if print {
        println!("{}", config.to_json());
    } else {
        print!("{}", summary(&config));
    }
    Ok(())
}

/// A short summary of a valid config: services, their instances, and what serves each type.
fn summary(config: &Config) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}: valid", config.file.display());
    let _ = writeln!(out, "plugin_dir: {}", config.plugin_dir.display());
    let _ = writeln!(out, "shutdown_timeout: {:?}", config.shutdown_timeout);
    for (name, service) in &config.services {
        let _ = writeln!(
            out,
            "service {name}: {} watcher(s), {} reactor(s)",
            service.watchers.len(),
            service.reactors.len()
        );
        for (kind, instances) in [
            (PluginKind::Watcher, &service.watchers),
            (PluginKind::Reactor, &service.reactors),
        ] {
            for (instance, cfg) in instances {
                let _ = writeln!(out, "  {kind} {instance}: type {}", cfg.plugin_type);
            }
        }
    }
    let _ = writeln!(out, "plugin types:");
    for ((kind, plugin_type), source) in &config.plugins {
        let _ = writeln!(
            out,
            "  {kind} {plugin_type}: {}",
            describe(*kind, plugin_type, source)
        );
    }
    out
}

fn describe(kind: PluginKind, plugin_type: &str, source: &PluginSource) -> String {
    match source {
        PluginSource::Builtin => format!("built-in (receptor plugin {kind} {plugin_type})"),
        PluginSource::Executable(path) => path.display().to_string(),
    }
}

fn plugins(args: &ConfigArg) -> Result<(), Failure> {
    let plugin_dir = config::load_plugin_dir(&args.config).map_err(Failure::setup)?;
    let catalog = PluginCatalog::new(plugin_dir, builtins());
    let (available, problems) = catalog.available();
    println!("plugin_dir: {}", catalog.plugin_dir().display());
    for plugin in &available {
        let note = if plugin.overrides_builtin {
            " (overrides the built-in)"
        } else {
            ""
        };
        println!(
            "{:<8} {:<16} {}{note}",
            plugin.kind.as_str(),
            plugin.plugin_type,
            describe(plugin.kind, &plugin.plugin_type, &plugin.source)
        );
    }
    for problem in &problems {
        tracing::warn!("{problem}");
    }
    Ok(())
}
