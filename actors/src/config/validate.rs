//! Validation: from the raw shape of the file to a [`Config`] the host can run.
//!
//! Checks every rule and collects every problem, so a user fixes a config in one pass:
//! durations, services with no watchers or reactors, instances without a `type`, type
//! names outside `[a-z0-9_-]+`, plugin types that no built-in and no executable in
//! `plugin_dir` serves, `cfg` values that are not tables, and ring sizes.

use std::collections::BTreeMap;
use std::time::Duration;

use super::load::{Origins, RawConfig, RawDuration, RawInstance, RawService, RawSize};
use super::{
    Config, ConfigError, InstanceConfig, Problem, ServiceConfig, Supervision, DEFAULT_RING_SIZE,
    MAX_RING_SIZE, MIN_RING_SIZE,
};
use crate::lookup::{is_valid_type_name, Builtins, PluginCatalog, PluginKind};

/// The default for `shutdown_timeout`.
const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) fn validate(
    raw: RawConfig,
    origins: &Origins<'_>,
    builtins: &Builtins,
) -> Result<Config, ConfigError> {
    let mut problems = Vec::new();
    let plugin_dir = origins.resolve_plugin_dir(raw.plugin_dir);
    let catalog = PluginCatalog::new(plugin_dir.clone(), builtins.clone());

    let shutdown_timeout = match raw.shutdown_timeout {
        None => DEFAULT_SHUTDOWN_TIMEOUT,
        Some(d) => duration(d, "shutdown_timeout", origins, &mut problems)
            .unwrap_or(DEFAULT_SHUTDOWN_TIMEOUT),
    };

    let mut supervision_problems = Vec::new();
    let supervision = Supervision::parse(&raw.supervision, &mut supervision_problems);
    for (key, message) in supervision_problems {
        problems.push(origins.problem(key, message));
    }

    check_globals(
        &raw.watchers,
        PluginKind::Watcher,
        &raw.services,
        origins,
        &mut problems,
    );
    check_globals(
        &raw.reactors,
        PluginKind::Reactor,
        &raw.services,
        origins,
        &mut problems,
    );

    if raw.services.is_empty() {
        problems.push(Problem {
            origin: origins.file().display().to_string(),
            key: "services".into(),
            message:
                "no services configured: add at least one [services.<name>.watchers.<instance>] \
                      and one [services.<name>.reactors.<instance>] table"
                    .into(),
        });
    }

    let mut plugins = BTreeMap::new();
    let mut services = BTreeMap::new();
    for (name, service) in raw.services {
        let mut instances = |kind: PluginKind, raw_instances: BTreeMap<String, RawInstance>| {
            let section = format!("services.{name}.{}s", kind.as_str());
            if raw_instances.is_empty() {
                problems.push(origins.problem(
                    format!("services.{name}"),
                    format!(
                        "service '{name}' has no {kind}s: add a [{section}.<instance>] table with a `type`"
                    ),
                ));
            }
            let mut out = BTreeMap::new();
            for (instance, raw) in raw_instances {
                let key = format!("{section}.{instance}");
                let Some(plugin_type) = raw.plugin_type else {
                    problems.push(origins.problem(
                        key,
                        format!(
                            "missing key 'type': name the {kind} plugin, e.g. type = \"{}\"",
                            kind.example()
                        ),
                    ));
                    continue;
                };
                let type_key = format!("{key}.type");
                if !is_valid_type_name(&plugin_type) {
                    problems.push(origins.problem(type_key, invalid_type_message(&plugin_type)));
                    continue;
                }
                if let std::collections::btree_map::Entry::Vacant(slot) =
                    plugins.entry((kind, plugin_type.clone()))
                {
                    match catalog.resolve(kind, &plugin_type) {
                        Ok(source) => {
                            slot.insert(source);
                        }
                        Err(e) => problems.push(origins.problem(type_key, e.to_string())),
                    }
                }
                let cfg = match raw.cfg {
                    None => serde_json::json!({}),
                    Some(cfg @ serde_json::Value::Object(_)) => cfg,
                    Some(other) => {
                        problems.push(origins.problem(format!("{key}.cfg"), not_a_table(&other)));
                        continue;
                    }
                };
                let ring_size = match raw.ring_size.map(RawSize::parse) {
                    None => DEFAULT_RING_SIZE,
                    Some(Ok(size)) => match ring_size(size) {
                        Ok(size) => size,
                        Err(message) => {
                            problems.push(origins.problem(format!("{key}.ring_size"), message));
                            continue;
                        }
                    },
                    Some(Err(message)) => {
                        problems.push(origins.problem(format!("{key}.ring_size"), message));
                        continue;
                    }
                };
                out.insert(
                    instance,
                    InstanceConfig {
                        plugin_type,
                        cfg,
                        ring_size,
                    },
                );
            }
            out
        };
        let watchers = instances(PluginKind::Watcher, service.watchers);
        let reactors = instances(PluginKind::Reactor, service.reactors);
        services.insert(name, ServiceConfig { watchers, reactors });
    }

    if !problems.is_empty() {
        return Err(ConfigError::Invalid(problems));
    }
    Ok(Config {
        file: origins.file().to_owned(),
        plugin_dir,
        shutdown_timeout,
        supervision,
        watchers: raw.watchers,
        reactors: raw.reactors,
        services,
        plugins,
    })
}

/// Global `[watchers.<type>]` / `[reactors.<type>]` tables: valid names, tables, and used.
fn check_globals(
    globals: &BTreeMap<String, serde_json::Value>,
    kind: PluginKind,
    services: &BTreeMap<String, RawService>,
    origins: &Origins<'_>,
    problems: &mut Vec<Problem>,
) {
    for (plugin_type, value) in globals {
        let key = format!("{}s.{plugin_type}", kind.as_str());
        if !is_valid_type_name(plugin_type) {
            problems.push(origins.problem(key, invalid_type_message(plugin_type)));
            continue;
        }
        if !value.is_object() {
            problems.push(origins.problem(key, not_a_table(value)));
            continue;
        }
        let used = services.values().any(|s| {
            let instances = match kind {
                PluginKind::Watcher => &s.watchers,
                PluginKind::Reactor => &s.reactors,
            };
            instances
                .values()
                .any(|i| i.plugin_type.as_deref() == Some(plugin_type))
        });
        if !used {
            tracing::warn!(
                "{}: [{key}] configures {kind} type '{plugin_type}' but no service uses it; it is ignored",
                origins.of(&key)
            );
        }
    }
}

fn duration(
    raw: RawDuration,
    key: &str,
    origins: &Origins<'_>,
    problems: &mut Vec<Problem>,
) -> Option<Duration> {
    raw.parse()
        .map_err(|message| problems.push(origins.problem(key, message)))
        .ok()
}

/// A ring size from the config: a power of two between the limits.
fn ring_size(size: u64) -> Result<usize, String> {
    let fits = (MIN_RING_SIZE as u64..=MAX_RING_SIZE as u64).contains(&size);
    if fits && size.is_power_of_two() {
        return Ok(size as usize);
    }
    Err(format!(
        "ring size {size} bytes is not a power of two between {} KiB and {} GiB",
        MIN_RING_SIZE >> 10,
        MAX_RING_SIZE >> 30
    ))
}

fn invalid_type_message(plugin_type: &str) -> String {
    format!("invalid plugin type '{plugin_type}': type names use only lowercase letters, digits, '_' and '-'")
}

fn not_a_table(value: &serde_json::Value) -> String {
    let kind = match value {
        serde_json::Value::Null => "nothing",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "a table",
    };
    format!("must be a table (e.g. {{ key = \"value\" }}), found {kind}")
}
