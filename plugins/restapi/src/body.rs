//! What a POST's body may hold, and the answer to one that breaks a rule.
//!
//! The body is one node change, `{"name", "type": "nodeup"|"nodedown", "host", "port",
//! "meta"?}`, or a JSON array of them (a batch, sent on as one event). Every refusal
//! names where it is: the JSON path of a field that does not decode (`'port'`,
//! `'[2].port'` in a batch), the node and the field that breaks a node rule
//! ([`NodeInfo::check`]). A batch is all or nothing: one bad entry refuses it whole.

use std::collections::BTreeMap;

use plugin_sdk::{Event, NodeInfo, NodeStatus};
use serde::de::DeserializeOwned;
use serde::Deserialize;

/// One node change as POSTed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeChange {
    /// The node's name.
    pub name: String,
    /// `nodeup` or `nodedown`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The node's address.
    pub host: String,
    /// The node's port.
    pub port: u16,
    /// Optional tags (`{"zone": "eu"}`).
    #[serde(default)]
    pub meta: BTreeMap<String, String>,
}

impl NodeChange {
    /// The node this change reports, checked against the node rules.
    pub fn node(self) -> Result<NodeInfo, String> {
        let status = match self.kind.as_str() {
            "nodeup" => NodeStatus::Up,
            "nodedown" => NodeStatus::Down,
            other => {
                return Err(format!(
                    "field 'type': unknown type '{other}': expected nodeup or nodedown"
                ))
            }
        };
        let node = NodeInfo {
            name: self.name,
            status,
            host: self.host,
            port: self.port,
            meta: self.meta,
        };
        // The message names the node and the field (`bad node "a": field 'port' is 0`).
        node.check().map_err(|e| e.to_string())?;
        Ok(node)
    }
}

/// Decodes a body into the event it reports; `Err` is the 400 answer's text.
pub fn parse(body: &[u8]) -> Result<Event, String> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'[') {
        let changes: Vec<NodeChange> = decode(body)?;
        let mut event = Event::default();
        for (i, change) in changes.into_iter().enumerate() {
            let node = change.node().map_err(|e| format!("node [{i}]: {e}"))?;
            // One event is keyed by name: a name given twice keeps its last entry.
            event.add_node(node);
        }
        Ok(event)
    } else {
        let change: NodeChange = decode(body)?;
        Ok(std::iter::once(change.node()?).collect())
    }
}

/// Deserializes JSON, naming the path of the field at fault.
fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            format!("invalid JSON body: {inner}")
        } else {
            format!("invalid JSON body at '{path}': {inner}")
        }
    })?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(body: &str) -> String {
        parse(body.as_bytes()).expect_err(body)
    }

    #[test]
    fn one_object_or_a_batch() {
        let one = parse(br#"{"name":"a","type":"nodeup","host":"h","port":1}"#).unwrap();
        assert_eq!(one.len(), 1);
        let batch = parse(
            br#" [{"name":"a","type":"nodeup","host":"h","port":1},
                  {"name":"b","type":"nodedown","host":"h","port":2,"meta":{"zone":"eu"}}]"#,
        )
        .unwrap();
        let nodes: Vec<_> = batch.nodes().collect();
        assert_eq!(nodes.len(), 2);
        assert_eq!(nodes[1].status, NodeStatus::Down);
        assert_eq!(nodes[1].meta.get("zone").map(String::as_str), Some("eu"));
        assert!(parse(b"[]").unwrap().is_empty());
    }

    #[test]
    fn refusals_name_the_field() {
        for (body, needle) in [
            ("{oops", "invalid JSON body"),
            (
                r#"{"name":"a","type":"nodeup","host":"h","port":"x"}"#,
                "'port'",
            ),
            (
                r#"{"name":"a","type":"nodeup","host":"h","port":70000}"#,
                "'port'",
            ),
            (r#"{"name":"a","host":"h","port":1}"#, "`type`"),
            (
                r#"{"name":"a","type":"up","host":"h","port":1,"x":1}"#,
                "`x`",
            ),
            (
                r#"{"name":"a","type":"sideways","host":"h","port":1}"#,
                "unknown type 'sideways'",
            ),
            (
                r#"{"name":"","type":"nodeup","host":"h","port":1}"#,
                "field 'name'",
            ),
            (
                r#"{"name":"a","type":"nodeup","host":"h\n","port":1}"#,
                "field 'host'",
            ),
            (
                r#"{"name":"a","type":"nodeup","host":"h","port":0}"#,
                "field 'port'",
            ),
            (
                r#"[{"name":"a","type":"nodeup","host":"h","port":1},{"name":"b","type":"nodeup","host":"h","port":true}]"#,
                "'[1].port'",
            ),
            (
                r#"[{"name":"a","type":"nodeup","host":"h","port":1},{"name":"b","type":"nodeup","host":"h","port":0}]"#,
                "node [1]: bad node \"b\": field 'port'",
            ),
            ("7", "invalid type"),
        ] {
            let err = refused(body);
            assert!(err.contains(needle), "{body}: {err}");
        }
    }
}
