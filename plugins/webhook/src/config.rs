//! An instance's `cfg`, checked into [`Settings`]; every error names the key at fault.

use std::collections::BTreeMap;
use std::time::Duration;

use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use hyper::{Method, Uri};
use plugin_sdk::Config;
use serde::Deserialize;

/// The instance config as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    url: String,
    #[serde(default = "default_method")]
    method: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default = "default_timeout")]
    timeout: String,
    #[serde(default = "default_backoff_min")]
    retry_backoff_min: String,
    #[serde(default = "default_backoff_max")]
    retry_backoff_max: String,
}

fn default_method() -> String {
    "POST".into()
}

fn default_timeout() -> String {
    "5s".into()
}

fn default_backoff_min() -> String {
    "100ms".into()
}

fn default_backoff_max() -> String {
    "30s".into()
}

/// A checked instance config.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where the changes go (`http://host:port/path`).
    pub url: Uri,
    /// The request method (`POST` by default).
    pub method: Method,
    /// Extra request headers (`Content-Type: application/json` unless set here).
    pub headers: HeaderMap,
    /// The longest one request may take, answer included.
    pub timeout: Duration,
    /// The first wait before a retry.
    pub backoff_min: Duration,
    /// The longest wait before a retry.
    pub backoff_max: Duration,
}

/// The longest `timeout` or backoff the config takes.
const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

fn duration(key: &str, text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text)
        .map_err(|e| format!("{key}: '{text}' is not a duration (\"100ms\", \"5s\"): {e}"))?;
    if d.is_zero() {
        return Err(format!("{key}: must be longer than zero"));
    }
    // Doubling a backoff (and jittering it) must not overflow a `Duration`.
    if d > MAX_DURATION {
        return Err(format!("{key}: '{text}' is longer than a day"));
    }
    Ok(d)
}

/// Parses and checks an instance config.
pub fn parse(cfg: &Config) -> Result<Settings, String> {
    let raw: RawConfig = cfg.parse().map_err(|e| e.to_string())?;
    let url = check_url(&raw.url)?;
    let method = Method::from_bytes(raw.method.to_ascii_uppercase().as_bytes())
        .map_err(|_| format!("method: '{}' is not an HTTP method", raw.method))?;
    let mut headers = HeaderMap::new();
    for (name, value) in &raw.headers {
        let key = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("headers.{name}: not a valid header name"))?;
        if [CONTENT_LENGTH, TRANSFER_ENCODING, HOST].contains(&key) {
            return Err(format!("headers.{name}: set by the webhook itself"));
        }
        let value = HeaderValue::from_str(value).map_err(|_| {
            format!("headers.{name}: the value has a character not allowed in a header")
        })?;
        headers.append(key, value);
    }
    let timeout = duration("timeout", &raw.timeout)?;
    let backoff_min = duration("retry_backoff_min", &raw.retry_backoff_min)?;
    let backoff_max = duration("retry_backoff_max", &raw.retry_backoff_max)?;
    if backoff_max < backoff_min {
        return Err(format!(
            "retry_backoff_max: {backoff_max:?} is shorter than retry_backoff_min ({backoff_min:?})"
        ));
    }
    Ok(Settings {
        url,
        method,
        headers,
        timeout,
        backoff_min,
        backoff_max,
    })
}

fn check_url(url: &str) -> Result<Uri, String> {
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("url: '{url}' is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(format!(
                "url: '{url}': https is not supported (no TLS in this build); use http://, or a local TLS proxy"
            ))
        }
        _ => return Err(format!("url: '{url}' must start with http://")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("url: '{url}' has no host"));
    }
    Ok(uri)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_json(json: &str) -> Result<Settings, String> {
        parse(&Config::instance(json, "web", "hook"))
    }

    #[test]
    fn defaults() {
        let s = parse_json(r#"{"url": "http://127.0.0.1:9/hook"}"#).unwrap();
        assert_eq!(s.method, Method::POST);
        assert!(s.headers.is_empty());
        assert_eq!(s.timeout, Duration::from_secs(5));
        assert_eq!(s.backoff_min, Duration::from_millis(100));
        assert_eq!(s.backoff_max, Duration::from_secs(30));
        let s = parse_json(
            r#"{"url": "http://h/x", "method": "put", "headers": {"Authorization": "Bearer t"}}"#,
        )
        .unwrap();
        assert_eq!(s.method, Method::PUT);
        assert_eq!(s.headers["authorization"], "Bearer t");
    }

    #[test]
    fn errors_name_the_key() {
        for (cfg, key) in [
            (r#"{}"#, "url"),
            (r#"{"url": "not a url"}"#, "url"),
            (r#"{"url": "https://h/x"}"#, "url"),
            (r#"{"url": "ftp://h/x"}"#, "url"),
            (r#"{"url": "/x"}"#, "url"),
            (r#"{"url": "http://h", "method": "P O"}"#, "method"),
            (
                r#"{"url": "http://h", "headers": {"a b": "x"}}"#,
                "headers.a b",
            ),
            (
                r#"{"url": "http://h", "headers": {"x": "a\nb"}}"#,
                "headers.x",
            ),
            (
                r#"{"url": "http://h", "headers": {"Content-Length": "1"}}"#,
                "headers.Content-Length",
            ),
            (r#"{"url": "http://h", "headers": {"x": 1}}"#, "headers.x"),
            (r#"{"url": "http://h", "timeout": "soon"}"#, "timeout"),
            (
                r#"{"url": "http://h", "retry_backoff_max": "400d"}"#,
                "retry_backoff_max",
            ),
            (
                r#"{"url": "http://h", "retry_backoff_min": "0s"}"#,
                "retry_backoff_min",
            ),
            (
                r#"{"url": "http://h", "retry_backoff_max": "10ms"}"#,
                "retry_backoff_max",
            ),
            (r#"{"url": "http://h", "retries": 3}"#, "retries"),
        ] {
            let err = parse_json(cfg).unwrap_err();
            assert!(err.starts_with(key) || err.contains(key), "{cfg}: {err}");
        }
    }
}
