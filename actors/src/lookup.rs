//! Plugin lookup: which program serves a plugin type.
//!
//! A plugin type is served either by a built-in plugin, linked into the `receptor`
//! binary and started as `receptor plugin <kind> <type>`, or by an executable named
//! `receptor-<kind>-<type>` in the configured `plugin_dir`. An executable in `plugin_dir`
//! takes precedence over a built-in of the same name, so a plugin can be upgraded
//! without rebuilding the host.

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use thiserror::Error;

/// Watcher (a source of node events) or reactor (a sink).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginKind {
    /// Reports nodes going up or down.
    Watcher,
    /// Acts on node changes.
    Reactor,
}

impl PluginKind {
    /// Both kinds, watchers first.
    pub const ALL: [PluginKind; 2] = [PluginKind::Watcher, PluginKind::Reactor];

    /// `"watcher"` or `"reactor"`.
    pub fn as_str(self) -> &'static str {
        match self {
            PluginKind::Watcher => "watcher",
            PluginKind::Reactor => "reactor",
        }
    }

    /// The file name of an external plugin of this kind: `receptor-<kind>-<type>`.
    pub fn executable_name(self, plugin_type: &str) -> String {
        format!("receptor-{}-{plugin_type}", self.as_str())
    }

    /// A type name to show in examples.
    pub(crate) fn example(self) -> &'static str {
        match self {
            PluginKind::Watcher => "dummy",
            PluginKind::Reactor => "filelogger",
        }
    }
}

impl fmt::Display for PluginKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether `name` is a valid plugin type name: `[a-z0-9_-]+`.
pub fn is_valid_type_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// The plugin types built into the host binary.
#[derive(Debug, Clone, Default)]
pub struct Builtins {
    /// Built-in watcher types.
    pub watchers: Vec<&'static str>,
    /// Built-in reactor types.
    pub reactors: Vec<&'static str>,
}

impl Builtins {
    /// Whether `plugin_type` is a built-in of `kind`.
    pub fn contains(&self, kind: PluginKind, plugin_type: &str) -> bool {
        self.of(kind).contains(&plugin_type)
    }

    fn of(&self, kind: PluginKind) -> &[&'static str] {
        match kind {
            PluginKind::Watcher => &self.watchers,
            PluginKind::Reactor => &self.reactors,
        }
    }
}

/// What serves a plugin type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginSource {
    /// Linked into the host binary.
    Builtin,
    /// An executable in `plugin_dir`.
    Executable(PathBuf),
}

/// A plugin type could not be resolved to something that can run.
#[derive(Debug, Error)]
pub enum PluginLookupError {
    /// Neither built in nor found in `plugin_dir`.
    #[error("plugin type '{plugin_type}' not found: it is not a built-in {kind} and there is no executable {} in plugin_dir '{}'{}",
        kind.executable_name(plugin_type), plugin_dir.display(),
        if *dir_missing { " (that directory does not exist)" } else { "" })]
    NotFound {
        /// Watcher or reactor.
        kind: PluginKind,
        /// The type asked for.
        plugin_type: String,
        /// Where executables were looked for.
        plugin_dir: PathBuf,
        /// Whether `plugin_dir` itself is missing.
        dir_missing: bool,
    },
    /// The file exists but is not a regular file (a directory, a socket, ...).
    #[error("plugin type '{plugin_type}': '{}' is not a regular file", path.display())]
    NotRegularFile {
        /// The type asked for.
        plugin_type: String,
        /// The file found.
        path: PathBuf,
    },
    /// The file exists but nobody may execute it.
    #[error("plugin type '{plugin_type}': '{}' is not executable (chmod +x it)", path.display())]
    NotExecutable {
        /// The type asked for.
        plugin_type: String,
        /// The file found.
        path: PathBuf,
    },
    /// The file could not be examined.
    #[error("plugin type '{plugin_type}': cannot examine '{}': {error}", path.display())]
    Unreadable {
        /// The type asked for.
        plugin_type: String,
        /// The file.
        path: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
}

/// One plugin type that can be used, for `receptor plugins`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvailablePlugin {
    /// Watcher or reactor.
    pub kind: PluginKind,
    /// The type name.
    pub plugin_type: String,
    /// What serves it.
    pub source: PluginSource,
    /// Whether an executable in `plugin_dir` shadows a built-in of the same name.
    pub overrides_builtin: bool,
}

/// Resolves plugin types against the built-ins and a plugin directory.
#[derive(Debug, Clone)]
pub struct PluginCatalog {
    plugin_dir: PathBuf,
    builtins: Builtins,
}

impl PluginCatalog {
    /// A catalog over `plugin_dir` and the given built-ins.
    pub fn new(plugin_dir: PathBuf, builtins: Builtins) -> Self {
        PluginCatalog {
            plugin_dir,
            builtins,
        }
    }

    /// The plugin directory.
    pub fn plugin_dir(&self) -> &Path {
        &self.plugin_dir
    }

    /// What serves `plugin_type` of `kind`: an executable in `plugin_dir` first, then a built-in.
    pub fn resolve(
        &self,
        kind: PluginKind,
        plugin_type: &str,
    ) -> Result<PluginSource, PluginLookupError> {
        let path = self.plugin_dir.join(kind.executable_name(plugin_type));
        match std::fs::metadata(&path) {
            Ok(meta) if !meta.is_file() => Err(PluginLookupError::NotRegularFile {
                plugin_type: plugin_type.to_owned(),
                path,
            }),
            Ok(meta) if meta.permissions().mode() & 0o111 == 0 => {
                Err(PluginLookupError::NotExecutable {
                    plugin_type: plugin_type.to_owned(),
                    path,
                })
            }
            Ok(_) => Ok(PluginSource::Executable(path)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if self.builtins.contains(kind, plugin_type) {
                    Ok(PluginSource::Builtin)
                } else {
                    Err(PluginLookupError::NotFound {
                        kind,
                        plugin_type: plugin_type.to_owned(),
                        dir_missing: !self.plugin_dir.is_dir(),
                        plugin_dir: self.plugin_dir.clone(),
                    })
                }
            }
            Err(error) => Err(PluginLookupError::Unreadable {
                plugin_type: plugin_type.to_owned(),
                path,
                error,
            }),
        }
    }

    /// Every plugin type that resolves: the built-ins and the usable executables in
    /// `plugin_dir`, by kind then name. Files named like plugins that cannot run are
    /// returned as errors beside the list, so the caller can show both.
    pub fn available(&self) -> (Vec<AvailablePlugin>, Vec<PluginLookupError>) {
        let mut found: Vec<(PluginKind, String)> = PluginKind::ALL
            .iter()
            .flat_map(|&kind| {
                self.builtins
                    .of(kind)
                    .iter()
                    .map(move |t| (kind, t.to_string()))
            })
            .collect();
        if let Ok(entries) = std::fs::read_dir(&self.plugin_dir) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                for kind in PluginKind::ALL {
                    let prefix = kind.executable_name("");
                    if let Some(plugin_type) = name.strip_prefix(&prefix) {
                        if is_valid_type_name(plugin_type) {
                            found.push((kind, plugin_type.to_owned()));
                        }
                    }
                }
            }
        }
        found.sort();
        found.dedup();
        let mut plugins = Vec::new();
        let mut errors = Vec::new();
        for (kind, plugin_type) in found {
            match self.resolve(kind, &plugin_type) {
                Ok(source) => plugins.push(AvailablePlugin {
                    overrides_builtin: matches!(source, PluginSource::Executable(_))
                        && self.builtins.contains(kind, &plugin_type),
                    kind,
                    plugin_type,
                    source,
                }),
                Err(e) => errors.push(e),
            }
        }
        (plugins, errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog(dir: &Path) -> PluginCatalog {
        PluginCatalog::new(
            dir.to_owned(),
            Builtins {
                watchers: vec!["dummy"],
                reactors: vec!["filelogger"],
            },
        )
    }

    fn write(path: &Path, mode: u32) {
        std::fs::write(path, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn type_names_are_lowercase_digits_underscore_dash() {
        for ok in ["dummy", "file_logger", "etcd-v3", "x1"] {
            assert!(is_valid_type_name(ok), "{ok}");
        }
        for bad in ["", "Dummy", "a b", "a/b", "..", "é"] {
            assert!(!is_valid_type_name(bad), "{bad}");
        }
    }

    #[test]
    fn builtins_resolve_per_kind() {
        let dir = tempfile::tempdir().unwrap();
        let c = catalog(dir.path());
        assert_eq!(
            c.resolve(PluginKind::Watcher, "dummy").unwrap(),
            PluginSource::Builtin
        );
        let err = c.resolve(PluginKind::Reactor, "dummy").unwrap_err();
        assert!(
            matches!(
                err,
                PluginLookupError::NotFound {
                    dir_missing: false,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("receptor-reactor-dummy"), "{err}");
    }

    #[test]
    fn executable_wins_over_builtin_and_bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let c = catalog(dir.path());
        let exe = dir.path().join("receptor-watcher-dummy");
        write(&exe, 0o700);
        assert_eq!(
            c.resolve(PluginKind::Watcher, "dummy").unwrap(),
            PluginSource::Executable(exe)
        );
        write(&dir.path().join("receptor-reactor-plain"), 0o600);
        assert!(matches!(
            c.resolve(PluginKind::Reactor, "plain"),
            Err(PluginLookupError::NotExecutable { .. })
        ));
        let (available, problems) = c.available();
        assert!(available
            .iter()
            .any(|p| p.plugin_type == "dummy" && p.overrides_builtin));
        assert!(available
            .iter()
            .any(|p| p.plugin_type == "filelogger" && p.source == PluginSource::Builtin));
        assert_eq!(problems.len(), 1, "{problems:?}");
    }

    #[test]
    fn missing_plugin_dir_is_said() {
        let c = catalog(Path::new("/nonexistent/receptor-plugins"));
        let err = c.resolve(PluginKind::Watcher, "etcd").unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
    }
}
