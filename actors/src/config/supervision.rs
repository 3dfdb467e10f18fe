//! `[supervision]`: how plugin processes are watched and restarted.
//!
//! ```toml
//! [supervision]
//! ping_interval = "1s"          # how often each plugin is pinged
//! ping_timeout = "5s"           # no answer in this time: SIGKILL and restart
//! restart_backoff_min = "100ms" # first restart delay; doubles, with jitter, per restart
//! restart_backoff_max = "30s"   # the longest delay
//! max_restarts = 5              # more restarts than this within restart_window...
//! restart_window = "60s"        # ...and the plugin is marked failed
//! on_plugin_failure = "isolate" # "isolate": its services fail, the rest run on;
//!                               # "shutdown": the host exits with code 2
//!
//! [supervision.watchers.restapi] # per plugin type: any of the keys above
//! max_restarts = 10
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::load::RawDuration;
use crate::lookup::PluginKind;

/// What happens when a plugin exhausts its restart budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// The services that use the plugin are marked failed; the rest keep running.
    Isolate,
    /// The host shuts down and exits with code 2.
    Shutdown,
}

/// The supervision policy of one plugin type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SupervisionPolicy {
    /// How often the plugin is pinged.
    #[serde(with = "humantime_serde_compat")]
    pub ping_interval: Duration,
    /// How long a ping may go unanswered before the plugin is killed and restarted.
    #[serde(with = "humantime_serde_compat")]
    pub ping_timeout: Duration,
    /// The first restart's delay.
    #[serde(with = "humantime_serde_compat")]
    pub restart_backoff_min: Duration,
    /// The longest restart delay.
    #[serde(with = "humantime_serde_compat")]
    pub restart_backoff_max: Duration,
    /// Restarts allowed within `restart_window`.
    pub max_restarts: u32,
    /// The window `max_restarts` counts in.
    #[serde(with = "humantime_serde_compat")]
    pub restart_window: Duration,
    /// What a failed plugin does to the host.
    pub on_plugin_failure: OnFailure,
}

impl Default for SupervisionPolicy {
    fn default() -> Self {
        SupervisionPolicy {
            ping_interval: Duration::from_secs(1),
            ping_timeout: Duration::from_secs(5),
            restart_backoff_min: Duration::from_millis(100),
            restart_backoff_max: Duration::from_secs(30),
            max_restarts: 5,
            restart_window: Duration::from_secs(60),
            on_plugin_failure: OnFailure::Isolate,
        }
    }
}

/// The `[supervision]` table: a default policy and per-type overrides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Supervision {
    /// The policy of every plugin type without an override.
    pub default: SupervisionPolicy,
    /// Policies of `[supervision.watchers.<type>]` / `[supervision.reactors.<type>]`,
    /// already merged over the default.
    pub overrides: BTreeMap<(PluginKind, String), SupervisionPolicy>,
}

/// Serialized as the table reads: the default's keys, then `watchers` and `reactors`
/// with each overridden type's whole (merged) policy.
impl Serialize for Supervision {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Table<'a> {
            #[serde(flatten)]
            default: &'a SupervisionPolicy,
            #[serde(skip_serializing_if = "BTreeMap::is_empty")]
            watchers: BTreeMap<&'a str, &'a SupervisionPolicy>,
            #[serde(skip_serializing_if = "BTreeMap::is_empty")]
            reactors: BTreeMap<&'a str, &'a SupervisionPolicy>,
        }
        let of = |kind: PluginKind| {
            self.overrides
                .iter()
                .filter(|((k, _), _)| *k == kind)
                .map(|((_, t), p)| (t.as_str(), p))
                .collect()
        };
        Table {
            default: &self.default,
            watchers: of(PluginKind::Watcher),
            reactors: of(PluginKind::Reactor),
        }
        .serialize(serializer)
    }
}

impl Supervision {
    /// The policy of a plugin type.
    pub fn policy(&self, kind: PluginKind, plugin_type: &str) -> &SupervisionPolicy {
        self.overrides
            .get(&(kind, plugin_type.to_owned()))
            .unwrap_or(&self.default)
    }

    /// Reads `[supervision]` (as JSON) into a policy; each problem names its key.
    pub(super) fn parse(
        raw: &serde_json::Map<String, serde_json::Value>,
        problems: &mut Vec<(String, String)>,
    ) -> Supervision {
        let default = parse_policy(
            raw,
            "supervision",
            &SupervisionPolicy::default(),
            true,
            problems,
        );
        let mut overrides = BTreeMap::new();
        for kind in [PluginKind::Watcher, PluginKind::Reactor] {
            let section = format!("{}s", kind.as_str());
            let Some(types) = raw.get(&section) else {
                continue;
            };
            let Some(types) = types.as_object() else {
                problems.push((
                    format!("supervision.{section}"),
                    "must be a table of plugin types".into(),
                ));
                continue;
            };
            for (plugin_type, table) in types {
                let key = format!("supervision.{section}.{plugin_type}");
                let Some(table) = table.as_object() else {
                    problems.push((key, "must be a table".into()));
                    continue;
                };
                let policy = parse_policy(table, &key, &default, false, problems);
                overrides.insert((kind, plugin_type.clone()), policy);
            }
        }
        Supervision { default, overrides }
    }
}

fn parse_policy(
    table: &serde_json::Map<String, serde_json::Value>,
    section: &str,
    base: &SupervisionPolicy,
    top: bool,
    problems: &mut Vec<(String, String)>,
) -> SupervisionPolicy {
    let mut policy = base.clone();
    for (name, value) in table {
        let key = format!("{section}.{name}");
        let mut duration_into = |slot: &mut Duration| match parse_duration(value) {
            Ok(d) => *slot = d,
            Err(e) => problems.push((key.clone(), e)),
        };
        match name.as_str() {
            "ping_interval" => duration_into(&mut policy.ping_interval),
            "ping_timeout" => duration_into(&mut policy.ping_timeout),
            "restart_backoff_min" => duration_into(&mut policy.restart_backoff_min),
            "restart_backoff_max" => duration_into(&mut policy.restart_backoff_max),
            "restart_window" => duration_into(&mut policy.restart_window),
            "max_restarts" => match value.as_u64().and_then(|n| u32::try_from(n).ok()) {
                Some(n) => policy.max_restarts = n,
                None => problems.push((key, format!("must be a whole number, not {value}"))),
            },
            "on_plugin_failure" => match value.as_str() {
                Some("isolate") => policy.on_plugin_failure = OnFailure::Isolate,
                Some("shutdown") => policy.on_plugin_failure = OnFailure::Shutdown,
                _ => problems.push((key, format!("must be \"isolate\" or \"shutdown\", not {value}"))),
            },
            "watchers" | "reactors" if top => {}
            _ => problems.push((
                key,
                "unknown key (known: ping_interval, ping_timeout, restart_backoff_min, restart_backoff_max, max_restarts, restart_window, on_plugin_failure)".into(),
            )),
        }
    }
    if policy.restart_backoff_min > policy.restart_backoff_max {
        problems.push((
            format!("{section}.restart_backoff_min"),
            format!(
                "{:?} is longer than restart_backoff_max ({:?})",
                policy.restart_backoff_min, policy.restart_backoff_max
            ),
        ));
    }
    policy
}

/// A duration as `shutdown_timeout` takes it: a human string or whole seconds, above zero.
fn parse_duration(value: &serde_json::Value) -> Result<Duration, String> {
    serde_json::from_value::<RawDuration>(value.clone())
        .map_err(|_| {
            format!("invalid duration {value}: write e.g. \"5s\" or a whole number of seconds")
        })?
        .parse()
}

/// Durations print as humantime strings in `receptor check --print`.
mod humantime_serde_compat {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: serde_json::Value) -> (Supervision, Vec<(String, String)>) {
        let mut problems = Vec::new();
        let s = Supervision::parse(json.as_object().unwrap(), &mut problems);
        (s, problems)
    }

    #[test]
    fn defaults_and_overrides_per_type() {
        let (s, problems) = parse(serde_json::json!({
            "max_restarts": 2,
            "on_plugin_failure": "shutdown",
            "watchers": { "restapi": { "max_restarts": 9, "ping_timeout": "2s" } }
        }));
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(s.default.max_restarts, 2);
        let api = s.policy(PluginKind::Watcher, "restapi");
        assert_eq!(
            (api.max_restarts, api.ping_timeout),
            (9, Duration::from_secs(2))
        );
        assert_eq!(
            api.on_plugin_failure,
            OnFailure::Shutdown,
            "overrides start from the default"
        );
        assert_eq!(s.policy(PluginKind::Reactor, "restapi").max_restarts, 2);
    }

    #[test]
    fn bad_values_name_their_key() {
        let (_, problems) = parse(serde_json::json!({
            "ping_interval": "soon",
            "max_restarts": -1,
            "on_plugin_failure": "panic",
            "colour": "blue",
            "reactors": { "filelogger": { "restart_window": 0 } }
        }));
        let keys: Vec<&str> = problems.iter().map(|(k, _)| k.as_str()).collect();
        for key in [
            "supervision.ping_interval",
            "supervision.max_restarts",
            "supervision.on_plugin_failure",
            "supervision.colour",
            "supervision.reactors.filelogger.restart_window",
        ] {
            assert!(keys.contains(&key), "{key} not in {keys:?}");
        }
    }
}
