//! Reading a configuration: the TOML file, merged with `RECEPTOR_*` environment variables.
//!
//! The file is read and syntax-checked here first, so a malformed file is reported with
//! its line and column. Then figment merges it with the environment and deserialises the
//! raw shape, and [`super::validate`] turns that into a [`Config`]. figment remembers where
//! every value came from; [`Origins`] uses that to name the file or the exact environment
//! variable in each error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use serde::Deserialize;

use super::{validate, Config, ConfigError, Problem};
use crate::lookup::Builtins;

/// The prefix of environment variables that override config keys.
pub const ENV_PREFIX: &str = "RECEPTOR_";

/// `RECEPTOR_*` variables that are not config keys (compared lowercased, after the prefix).
const NOT_CONFIG_KEYS: &[&str] = &["log"];
const NOT_CONFIG_PREFIXES: &[&str] = &["bench_", "test_", "internal_"];

/// The file's shape before validation: everything optional, unknown keys refused.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub plugin_dir: Option<PathBuf>,
    pub shutdown_timeout: Option<RawDuration>,
    #[serde(default)]
    pub supervision: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub watchers: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub reactors: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub services: BTreeMap<String, RawService>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawService {
    #[serde(default)]
    pub watchers: BTreeMap<String, RawInstance>,
    #[serde(default)]
    pub reactors: BTreeMap<String, RawInstance>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawInstance {
    #[serde(rename = "type")]
    pub plugin_type: Option<String>,
    pub cfg: Option<serde_json::Value>,
    /// The most the instance's ring may grow to, e.g. `"8MiB"`.
    pub ring_size: Option<RawSize>,
}

/// A size in bytes as text with a binary unit (`"512KiB"`, `"8MiB"`, `"1GiB"`) or a
/// whole number of bytes.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawSize {
    Text(String),
    Bytes(u64),
}

impl RawSize {
    /// The size in bytes, or what is wrong with the text.
    pub(super) fn parse(self) -> Result<u64, String> {
        let text = match self {
            RawSize::Bytes(n) => return Ok(n),
            RawSize::Text(text) => text,
        };
        let trimmed = text.trim();
        let split = trimmed
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(trimmed.len());
        let (number, unit) = trimmed.split_at(split);
        let shift = match unit.trim() {
            "" | "B" => 0,
            "KiB" => 10,
            "MiB" => 20,
            "GiB" => 30,
            other => {
                return Err(format!(
                    "unknown unit '{other}' in '{text}': use B, KiB, MiB or GiB, e.g. \"8MiB\""
                ))
            }
        };
        number
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(1 << shift))
            .ok_or_else(|| format!("'{text}' is not a size: write e.g. \"8MiB\""))
    }
}

/// A duration as a human string (`"5s"`, `"1m 30s"`) or a whole number of seconds.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawDuration {
    Text(String),
    Seconds(u64),
}

impl RawDuration {
    /// The duration, which must be above zero, or what is wrong with it.
    pub(super) fn parse(self) -> Result<Duration, String> {
        let parsed = match self {
            RawDuration::Seconds(secs) => Duration::from_secs(secs),
            RawDuration::Text(text) => humantime::parse_duration(text.trim()).map_err(|e| {
                format!(
                    "invalid duration '{text}': {e} (write e.g. \"5s\", \"500ms\" or \"1m 30s\")"
                )
            })?,
        };
        if parsed.is_zero() {
            return Err("must be greater than zero".into());
        }
        Ok(parsed)
    }
}

/// Reads, merges and validates the configuration at `path`.
pub fn load(path: &Path, builtins: &Builtins) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    check_syntax(path, &text)?;
    let figment = Figment::new()
        .merge(Toml::string(&text))
        .merge(env_provider());
    let origins = Origins {
        figment: &figment,
        file: path,
    };
    let raw: RawConfig = figment
        .extract()
        .map_err(|e| ConfigError::Invalid(origins.figment_problems(e)))?;
    validate::validate(raw, &origins, builtins)
}

/// Just the plugin directory, for listing plugins: the file is optional here (the
/// default is used when it does not exist) and the rest of it is not validated.
pub fn load_plugin_dir(path: &Path) -> Result<PathBuf, ConfigError> {
    #[derive(Deserialize)]
    struct PluginDirOnly {
        plugin_dir: Option<PathBuf>,
    }
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => {
            return Err(ConfigError::Read {
                path: path.to_owned(),
                source,
            })
        }
    };
    check_syntax(path, &text)?;
    let figment = Figment::new()
        .merge(Toml::string(&text))
        .merge(env_provider());
    let origins = Origins {
        figment: &figment,
        file: path,
    };
    let raw: PluginDirOnly = figment
        .extract()
        .map_err(|e| ConfigError::Invalid(origins.figment_problems(e)))?;
    Ok(origins.resolve_plugin_dir(raw.plugin_dir))
}

fn env_provider() -> Env {
    Env::prefixed(ENV_PREFIX).split("__").filter(|key| {
        let key = key.as_str().to_ascii_lowercase();
        !NOT_CONFIG_KEYS.contains(&key.as_str())
            && !NOT_CONFIG_PREFIXES.iter().any(|p| key.starts_with(p))
    })
}

fn check_syntax(path: &Path, text: &str) -> Result<(), ConfigError> {
    let Err(e) = text.parse::<toml::Table>() else {
        return Ok(());
    };
    let offset = e.span().map_or(0, |span| span.start).min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    Err(ConfigError::Syntax {
        path: path.to_owned(),
        line,
        column,
        message: e.message().trim().to_owned(),
    })
}

/// Where values came from, to name them in errors.
pub(super) struct Origins<'a> {
    figment: &'a Figment,
    file: &'a Path,
}

impl Origins<'_> {
    /// The config file's path.
    pub fn file(&self) -> &Path {
        self.file
    }

    /// Names the source of the value at `key`: the environment variable or the file.
    pub fn of(&self, key: &str) -> String {
        match self.figment.find_metadata(key) {
            Some(md) if md.name.contains("environment") => env_origin(key),
            _ => self.file.display().to_string(),
        }
    }

    /// Whether the value at `key` came from the environment.
    fn is_from_env(&self, key: &str) -> bool {
        self.figment
            .find_metadata(key)
            .is_some_and(|md| md.name.contains("environment"))
    }

    /// A problem at `key`, with its origin.
    pub fn problem(&self, key: impl Into<String>, message: impl Into<String>) -> Problem {
        let key = key.into();
        Problem {
            origin: self.of(&key),
            message: message.into(),
            key,
        }
    }

    /// The plugin directory: a relative path from the file is relative to the file's
    /// directory; one from the environment is relative to the working directory.
    pub fn resolve_plugin_dir(&self, configured: Option<PathBuf>) -> PathBuf {
        let config_dir = match self.file.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
            _ => PathBuf::from("."),
        };
        match configured {
            Some(dir) if dir.is_absolute() || self.is_from_env("plugin_dir") => dir,
            Some(dir) => config_dir.join(dir),
            None => config_dir.join("plugins"),
        }
    }

    /// Turns figment's deserialisation errors into problems naming origin and key.
    fn figment_problems(&self, error: figment::Error) -> Vec<Problem> {
        use figment::error::Kind;
        error
            .into_iter()
            .map(|e| {
                let mut path = e.path.clone();
                let message = match &e.kind {
                    Kind::UnknownField(field, expected) => {
                        push_if_missing(&mut path, field);
                        if expected.is_empty() {
                            "unknown key: this table takes no keys".to_owned()
                        } else {
                            format!("unknown key: expected one of {}", expected.join(", "))
                        }
                    }
                    Kind::MissingField(field) => {
                        push_if_missing(&mut path, field);
                        "missing key".to_owned()
                    }
                    other => other.to_string(),
                };
                let key = path.join(".");
                let origin = match &e.metadata {
                    Some(md) if md.name.contains("environment") => env_origin(&key),
                    _ => self.file.display().to_string(),
                };
                Problem {
                    origin,
                    key,
                    message,
                }
            })
            .collect()
    }
}

/// figment's error path sometimes ends with the field already; add it when it does not.
fn push_if_missing(path: &mut Vec<String>, field: &str) {
    if path.last().map(String::as_str) != Some(field) {
        path.push(field.to_owned());
    }
}

/// `environment variable RECEPTOR_A__B` for the key `a.b`.
fn env_origin(key: &str) -> String {
    format!(
        "environment variable {ENV_PREFIX}{}",
        key.to_ascii_uppercase().replace('.', "__")
    )
}
