//! The key layout both etcd plugins share: one key per node, `<prefix><node name>`,
//! whose value is the JSON `{"host": "...", "port": N, "meta": {"k": "v"}}` (`meta`
//! optional, strings only). A node is up while its key exists.
//!
//! `prefix` ends with `/`; the node's name is the rest of the key, and keys further
//! down (`<prefix>a/b`) are not nodes. A value that is not JSON of this shape, or whose
//! node would break the host's rules ([`NodeInfo::check`]), is a [`BadValue`].

use std::collections::BTreeMap;

use plugin_sdk::{NodeInfo, NodeStatus};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A node's registration: the value stored under its key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    /// The node's address.
    pub host: String,
    /// The node's port.
    pub port: u16,
    /// Free-form tags (weight, zone...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
}

/// Why a key's value does not make a node.
#[derive(Debug, Error)]
pub enum BadValue {
    /// The value is not JSON of the registration's shape.
    #[error("key '{key}': value is not {{\"host\", \"port\", \"meta\"?}} JSON: {source}")]
    Json {
        /// The key at fault.
        key: String,
        /// What the JSON parser said.
        source: serde_json::Error,
    },
    /// The node breaks a rule of the host.
    #[error("key '{key}': {source}")]
    Node {
        /// The key at fault.
        key: String,
        /// The field at fault.
        source: plugin_sdk::NodeError,
    },
    /// The key is not UTF-8.
    #[error("key '{key}': not UTF-8")]
    KeyNotUtf8 {
        /// The key, lossily decoded.
        key: String,
    },
}

/// Checks an instance's `prefix`: not empty, ends with `/`.
pub fn check_prefix(prefix: &str) -> Result<(), String> {
    if !prefix.ends_with('/') {
        return Err(format!(
            "prefix: '{prefix}' must end with '/' (for example \"/receptor/web/\")"
        ));
    }
    Ok(())
}

/// The node name of `key` under `prefix`: `None` for a key outside the prefix, the
/// prefix itself, or a key further down (`<prefix>a/b`).
pub fn node_name<'k>(prefix: &str, key: &'k str) -> Option<&'k str> {
    key.strip_prefix(prefix)
        .filter(|rest| !rest.is_empty() && !rest.contains('/'))
}

/// The node of a key that exists (so the node is up): `Ok(None)` for a key that is
/// not a node of the layout.
pub fn node_up(prefix: &str, key: &[u8], value: &[u8]) -> Result<Option<NodeInfo>, BadValue> {
    let key = std::str::from_utf8(key).map_err(|_| BadValue::KeyNotUtf8 {
        key: String::from_utf8_lossy(key).into_owned(),
    })?;
    let Some(name) = node_name(prefix, key) else {
        return Ok(None);
    };
    let reg: Registration = serde_json::from_slice(value).map_err(|source| BadValue::Json {
        key: key.to_owned(),
        source,
    })?;
    let mut node = NodeInfo::new(name, NodeStatus::Up, reg.host, reg.port);
    node.meta = reg.meta;
    node.check().map_err(|source| BadValue::Node {
        key: key.to_owned(),
        source,
    })?;
    Ok(Some(node))
}

/// The value registering `node`.
pub fn value_of(node: &NodeInfo) -> Vec<u8> {
    let reg = Registration {
        host: node.host.clone(),
        port: node.port,
        meta: node.meta.clone(),
    };
    serde_json::to_vec(&reg).expect("a registration serialises")
}

/// The end of the key range holding every key that starts with `prefix`: the prefix
/// with its last byte increased (etcd's `range_end`).
pub fn range_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every byte is 0xff: the range runs to the end of the key space.
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_rest_of_the_key_one_level_down() {
        assert_eq!(node_name("/r/web/", "/r/web/n1"), Some("n1"));
        assert_eq!(node_name("/r/web/", "/r/web/"), None);
        assert_eq!(node_name("/r/web/", "/r/web/a/b"), None);
        assert_eq!(node_name("/r/web/", "/r/other/n1"), None);
    }

    #[test]
    fn values_round_trip_and_bad_ones_name_the_key() {
        let node = NodeInfo::new("n1", NodeStatus::Up, "10.0.0.1", 80).with_meta("zone", "eu");
        let value = value_of(&node);
        assert_eq!(
            String::from_utf8_lossy(&value),
            r#"{"host":"10.0.0.1","port":80,"meta":{"zone":"eu"}}"#
        );
        assert_eq!(node_up("/p/", b"/p/n1", &value).unwrap(), Some(node));
        for bad in [&b"nope"[..], br#"{"host":"h"}"#, br#"{"host":"","port":1}"#] {
            let err = node_up("/p/", b"/p/n1", bad).unwrap_err().to_string();
            assert!(err.contains("key '/p/n1'"), "{err}");
        }
        assert!(node_up("/p/", b"/p/a/b", b"nope").unwrap().is_none());
    }

    #[test]
    fn range_end_is_the_next_prefix() {
        assert_eq!(range_end(b"/a/"), b"/a0");
        assert_eq!(range_end(b"a\xff"), b"b");
        assert_eq!(range_end(b"\xff"), vec![0]);
        assert!(check_prefix("/a").is_err());
        assert!(check_prefix("/a/").is_ok());
    }
}
