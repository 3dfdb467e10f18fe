//! The restapi's configuration: the server's keys (the type's global config, shared by
//! every service) and an instance's `cfg`.

use std::time::Duration;

use serde::Deserialize;

/// The default `listen` address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// The default `max_connections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// The default `request_timeout`.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The default `idle_timeout`.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// `[watchers.restapi]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GlobalConfig {
    #[serde(default = "default_listen")]
    listen: String,
    #[serde(default = "default_max_connections")]
    max_connections: usize,
    request_timeout: Option<String>,
    idle_timeout: Option<String>,
}

fn default_listen() -> String {
    DEFAULT_LISTEN.to_owned()
}

fn default_max_connections() -> usize {
    DEFAULT_MAX_CONNECTIONS
}

/// The server's settings, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The address to listen on.
    pub listen: String,
    /// How many connections are open at most; more wait in the kernel's accept queue
    /// until one closes.
    pub max_connections: usize,
    /// How long a client has for one request's head and body together, counted from
    /// its first byte.
    pub request_timeout: Duration,
    /// How long a keep-alive connection may sit without a request before it is closed.
    pub idle_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: DEFAULT_LISTEN.to_owned(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }
}

impl Settings {
    /// Parses and checks the type's global config; errors name the key.
    pub fn parse(cfg: plugin_sdk::Config) -> plugin_sdk::Result<Settings> {
        let raw: GlobalConfig = cfg.parse()?;
        if raw.max_connections == 0 {
            return Err("max_connections: must be at least 1".into());
        }
        let duration = |key: &str, text: Option<String>, default: Duration| match text {
            None => Ok(default),
            Some(text) => parse_duration(key, &text),
        };
        Ok(Settings {
            listen: raw.listen,
            max_connections: raw.max_connections,
            request_timeout: duration(
                "request_timeout",
                raw.request_timeout,
                DEFAULT_REQUEST_TIMEOUT,
            )?,
            idle_timeout: duration("idle_timeout", raw.idle_timeout, DEFAULT_IDLE_TIMEOUT)?,
        })
    }
}

/// Parses a positive duration key (`"500ms"`, `"10s"`), naming it in the error.
fn parse_duration(key: &str, text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text)
        .map_err(|e| format!("{key}: '{text}' is not a duration (\"500ms\", \"10s\"): {e}"))?;
    if d.is_zero() {
        return Err(format!("{key}: must be greater than zero"));
    }
    Ok(d)
}

/// An instance's `cfg`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceConfig {
    /// The service name in `POST /service/<service>`.
    pub service: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Settings, String> {
        Settings::parse(plugin_sdk::Config::global(json)).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_keys() {
        assert_eq!(parse("{}").unwrap(), Settings::default());
        let s = parse(
            r#"{"listen":"0.0.0.0:1","max_connections":2,"request_timeout":"1s","idle_timeout":"500ms"}"#,
        )
        .unwrap();
        assert_eq!(
            s,
            Settings {
                listen: "0.0.0.0:1".into(),
                max_connections: 2,
                request_timeout: Duration::from_secs(1),
                idle_timeout: Duration::from_millis(500),
            }
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        for (json, key) in [
            (r#"{"max_connections":0}"#, "max_connections"),
            (r#"{"max_connections":"many"}"#, "max_connections"),
            (r#"{"request_timeout":"soon"}"#, "request_timeout"),
            (r#"{"idle_timeout":"0s"}"#, "idle_timeout"),
            (r#"{"listen_on":"x"}"#, "listen_on"),
        ] {
            let err = parse(json).unwrap_err();
            assert!(err.contains(key), "{json}: {err}");
        }
    }
}
