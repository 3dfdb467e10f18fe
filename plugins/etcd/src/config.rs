//! The connection keys both etcd plugins take in their global config
//! (`[watchers.etcd]`, `[reactors.etcd]`), checked into [`Settings`].

use std::time::Duration;

use serde::Deserialize;

/// The etcd endpoint used when none is configured.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:2379";

/// The connection keys as written in the config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// etcd's client URLs, tried in turn (`http://host:port`).
    #[serde(default = "default_endpoints")]
    pub endpoints: Vec<String>,
    /// How long a connection attempt to one endpoint may take (`"5s"`).
    #[serde(default = "default_dial_timeout")]
    pub dial_timeout: String,
    /// The user name, when etcd has authentication on.
    #[serde(default)]
    pub username: Option<String>,
    /// The password of `username`.
    #[serde(default)]
    pub password: Option<String>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            endpoints: default_endpoints(),
            dial_timeout: default_dial_timeout(),
            username: None,
            password: None,
        }
    }
}

fn default_endpoints() -> Vec<String> {
    vec![DEFAULT_ENDPOINT.to_owned()]
}

fn default_dial_timeout() -> String {
    "5s".to_owned()
}

/// One etcd endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// As configured, for messages.
    pub url: String,
    /// `host:port`.
    pub authority: String,
}

/// The checked connection settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The endpoints, tried in turn.
    pub endpoints: Vec<Endpoint>,
    /// The connection timeout per endpoint.
    pub dial_timeout: Duration,
    /// User name and password, when set.
    pub credentials: Option<(String, String)>,
}

/// Parses a duration key, naming it in the error.
pub fn parse_duration(key: &str, text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("{key}: '{text}' is not a duration (\"500ms\", \"5s\"): {e}"))
}

impl ClientConfig {
    /// Checks the keys; an error names the key at fault.
    pub fn settings(&self) -> Result<Settings, String> {
        if self.endpoints.is_empty() {
            return Err("endpoints: must list at least one etcd URL".into());
        }
        let endpoints = self
            .endpoints
            .iter()
            .map(|url| parse_endpoint(url))
            .collect::<Result<_, _>>()?;
        let dial_timeout = parse_duration("dial_timeout", &self.dial_timeout)?;
        if dial_timeout.is_zero() {
            return Err("dial_timeout: must be longer than zero".into());
        }
        let credentials = match (&self.username, &self.password) {
            (Some(u), Some(p)) => Some((u.clone(), p.clone())),
            (None, None) => None,
            (Some(_), None) => return Err("password: required with username".into()),
            (None, Some(_)) => return Err("username: required with password".into()),
        };
        Ok(Settings {
            endpoints,
            dial_timeout,
            credentials,
        })
    }
}

fn parse_endpoint(url: &str) -> Result<Endpoint, String> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        format!("endpoints: '{url}' must start with http:// (TLS is not supported)")
    })?;
    let authority = rest.trim_end_matches('/');
    let port_ok = authority
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if !port_ok || authority.contains('/') {
        return Err(format!(
            "endpoints: '{url}' is not http://host:port (for example {DEFAULT_ENDPOINT})"
        ));
    }
    Ok(Endpoint {
        url: url.to_owned(),
        authority: authority.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_errors_name_the_key() {
        let s = ClientConfig::default().settings().unwrap();
        assert_eq!(s.endpoints[0].authority, "127.0.0.1:2379");
        assert_eq!(s.dial_timeout, Duration::from_secs(5));
        for (cfg, key) in [
            (r#"{"endpoints": []}"#, "endpoints"),
            (r#"{"endpoints": ["https://a:1"]}"#, "endpoints"),
            (r#"{"endpoints": ["http://a"]}"#, "endpoints"),
            (r#"{"dial_timeout": "soon"}"#, "dial_timeout"),
            (r#"{"username": "u"}"#, "password"),
        ] {
            let c: ClientConfig = serde_json::from_str(cfg).unwrap();
            let err = c.settings().unwrap_err();
            assert!(err.starts_with(key), "{cfg}: {err}");
        }
    }
}
