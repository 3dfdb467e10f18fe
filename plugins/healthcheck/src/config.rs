//! An instance's `cfg`, checked into [`Settings`]; every error names the key at fault.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use plugin_sdk::{Config, NodeInfo, NodeStatus};
use serde::Deserialize;

/// The instance config as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    nodes: Vec<RawNode>,
    #[serde(default)]
    check: CheckKind,
    path: Option<String>,
    expect_status: Option<ExpectStatus>,
    #[serde(default = "default_interval")]
    interval: String,
    #[serde(default = "default_timeout")]
    timeout: String,
    #[serde(default = "default_rise_fall")]
    rise: u32,
    #[serde(default = "default_rise_fall")]
    fall: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    name: String,
    host: String,
    port: u16,
    #[serde(default)]
    meta: BTreeMap<String, String>,
}

/// Which check to run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckKind {
    /// A TCP connection that opens passes.
    #[default]
    Tcp,
    /// An HTTP/1.1 `GET` whose answer has an expected status passes.
    Http,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ExpectStatus {
    One(u16),
    Many(Vec<u16>),
}

fn default_interval() -> String {
    "2s".into()
}

fn default_timeout() -> String {
    "1s".into()
}

fn default_rise_fall() -> u32 {
    2
}

/// Which HTTP statuses pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// Any 2xx or 3xx (the default).
    SuccessOrRedirect,
    /// Exactly these.
    Codes(BTreeSet<u16>),
}

impl Expect {
    /// Whether `status` passes.
    pub fn accepts(&self, status: u16) -> bool {
        match self {
            Expect::SuccessOrRedirect => (200..400).contains(&status),
            Expect::Codes(codes) => codes.contains(&status),
        }
    }
}

/// The probe every node of an instance gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// Connect, then close.
    Tcp,
    /// `GET path` on a fresh connection, status checked.
    Http {
        /// The request path (with any query), starting with `/`.
        path: String,
        /// The statuses that pass.
        expect: Expect,
    },
}

/// A checked instance config.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The nodes, each as it is reported up (status `Up`).
    pub nodes: Vec<NodeInfo>,
    /// What a check does.
    pub probe: Probe,
    /// Time between the starts of two checks of one node.
    pub interval: Duration,
    /// The longest a check may take; longer is a failure.
    pub timeout: Duration,
    /// Consecutive passes before a node is reported up.
    pub rise: u32,
    /// Consecutive failures before a node is reported down.
    pub fall: u32,
}

fn duration(key: &str, text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text)
        .map_err(|e| format!("{key}: '{text}' is not a duration (\"500ms\", \"2s\"): {e}"))?;
    if d.is_zero() {
        return Err(format!("{key}: must be longer than zero"));
    }
    Ok(d)
}

/// Parses and checks an instance config.
pub fn parse(cfg: &Config) -> Result<Settings, String> {
    let raw: RawConfig = cfg.parse().map_err(|e| e.to_string())?;
    let interval = duration("interval", &raw.interval)?;
    let timeout = duration("timeout", &raw.timeout)?;
    if raw.rise == 0 {
        return Err("rise: must be at least 1".into());
    }
    if raw.fall == 0 {
        return Err("fall: must be at least 1".into());
    }
    let probe = match raw.check {
        CheckKind::Tcp => {
            if raw.path.is_some() {
                return Err("path: only used with check = \"http\"".into());
            }
            if raw.expect_status.is_some() {
                return Err("expect_status: only used with check = \"http\"".into());
            }
            Probe::Tcp
        }
        CheckKind::Http => Probe::Http {
            path: check_path(raw.path.unwrap_or_else(|| "/".into()))?,
            expect: check_expect(raw.expect_status)?,
        },
    };
    if raw.nodes.is_empty() {
        return Err("nodes: must list at least one node ({ name, host, port })".into());
    }
    let mut names = BTreeSet::new();
    let mut nodes = Vec::with_capacity(raw.nodes.len());
    for (i, n) in raw.nodes.into_iter().enumerate() {
        if !names.insert(n.name.clone()) {
            return Err(format!("nodes[{i}].name: '{}' is listed twice", n.name));
        }
        let mut node = NodeInfo::new(n.name, NodeStatus::Up, n.host, n.port);
        node.meta = n.meta;
        node.check().map_err(|e| format!("nodes[{i}]: {e}"))?;
        nodes.push(node);
    }
    Ok(Settings {
        nodes,
        probe,
        interval,
        timeout,
        rise: raw.rise,
        fall: raw.fall,
    })
}

fn check_path(path: String) -> Result<String, String> {
    if !path.starts_with('/') {
        return Err(format!("path: '{path}' must start with '/'"));
    }
    if path.parse::<hyper::Uri>().is_err() || path.contains('#') {
        return Err(format!("path: '{path}' is not a valid request path"));
    }
    Ok(path)
}

fn check_expect(expect: Option<ExpectStatus>) -> Result<Expect, String> {
    let codes: Vec<u16> = match expect {
        None => return Ok(Expect::SuccessOrRedirect),
        Some(ExpectStatus::One(code)) => vec![code],
        Some(ExpectStatus::Many(codes)) => codes,
    };
    if codes.is_empty() {
        return Err("expect_status: must list at least one status".into());
    }
    if let Some(bad) = codes.iter().find(|c| !(100..=599).contains(*c)) {
        return Err(format!(
            "expect_status: {bad} is not an HTTP status (100 to 599)"
        ));
    }
    Ok(Expect::Codes(codes.into_iter().collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_json(json: &str) -> Result<Settings, String> {
        parse(&Config::instance(json, "web", "hc"))
    }

    const NODE: &str = r#"{"name": "a", "host": "127.0.0.1", "port": 80}"#;

    #[test]
    fn defaults() {
        let s = parse_json(&format!(r#"{{"nodes": [{NODE}]}}"#)).unwrap();
        assert_eq!(s.probe, Probe::Tcp);
        assert_eq!(s.interval, Duration::from_secs(2));
        assert_eq!(s.timeout, Duration::from_secs(1));
        assert_eq!((s.rise, s.fall), (2, 2));
        let s = parse_json(&format!(r#"{{"nodes": [{NODE}], "check": "http"}}"#)).unwrap();
        let Probe::Http { path, expect } = s.probe else {
            panic!("http")
        };
        assert_eq!(path, "/");
        assert!(expect.accepts(204) && expect.accepts(301) && !expect.accepts(404));
        let s = parse_json(&format!(
            r#"{{"nodes": [{NODE}], "check": "http", "path": "/health?deep=1", "expect_status": [200, 404]}}"#
        ))
        .unwrap();
        let Probe::Http { expect, .. } = s.probe else {
            panic!("http")
        };
        assert!(expect.accepts(404) && !expect.accepts(204));
    }

    #[test]
    fn errors_name_the_key() {
        for (extra, key) in [
            (r#""check": "udp""#, "check"),
            (r#""interval": "soon""#, "interval"),
            (r#""interval": "0s""#, "interval"),
            (r#""timeout": "x""#, "timeout"),
            (r#""rise": 0"#, "rise"),
            (r#""fall": -1"#, "fall"),
            (r#""path": "/x""#, "path"),
            (r#""check": "http", "path": "x""#, "path"),
            (r#""check": "http", "expect_status": 999"#, "expect_status"),
            (r#""check": "http", "expect_status": []"#, "expect_status"),
            (r#""expect_status": 200"#, "expect_status"),
            (r#""intervall": "1s""#, "intervall"),
        ] {
            let err = parse_json(&format!(r#"{{"nodes": [{NODE}], {extra}}}"#)).unwrap_err();
            assert!(err.starts_with(key) || err.contains(key), "{extra}: {err}");
        }
        for (nodes, key) in [
            ("[]", "nodes"),
            (r#"[{"name": "a", "host": "h"}]"#, "port"),
            (r#"[{"name": "a", "host": "h", "port": 0}]"#, "nodes[0]"),
            (r#"[{"name": "", "host": "h", "port": 1}]"#, "nodes[0]"),
            (&format!("[{NODE}, {NODE}]"), "nodes[1].name"),
            (
                r#"[{"name": "a", "host": "h", "port": 1, "zone": "x"}]"#,
                "zone",
            ),
        ] {
            let err = parse_json(&format!(r#"{{"nodes": {nodes}}}"#)).unwrap_err();
            assert!(err.contains(key), "{nodes}: {err}");
        }
        let err = parse_json("{}").unwrap_err();
        assert!(err.contains("nodes"), "{err}");
    }
}
