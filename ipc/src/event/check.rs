//! What a node's fields may hold, checked where a node enters the pipeline.
//!
//! Reactors write node fields into log lines, config files and HTTP bodies: a name with
//! a newline in it would forge a line in a filelogger's log or a HAProxy config, an empty
//! name would be a node nobody can address, and port 0 is no address at all. So every
//! node is checked twice: by the SDK when a watcher sends it (the watcher's `send` gets
//! the error, and nothing of the update goes out) and by the host when it arrives (a
//! plugin that bypasses the SDK has the node dropped, logged and counted; it never
//! reaches a reactor).
//!
//! The rules:
//! - `name`: 1 to [`MAX_FIELD_BYTES`] bytes;
//! - `host`: at most [`MAX_FIELD_BYTES`] bytes, and not empty for a node going up (a
//!   node going down needs only its name);
//! - `port`: not 0 for a node going up;
//! - `meta`: at most [`MAX_META_TAGS`] tags, keys 1 to [`MAX_FIELD_BYTES`] bytes,
//!   values at most [`MAX_META_VALUE_BYTES`] bytes;
//! - every string is UTF-8 and holds no control character (U+0000 to U+001F, U+007F to
//!   U+009F: newline, tab and escape among them) and no character that moves or hides
//!   text when it is shown (the line and paragraph separators U+2028 and U+2029, the
//!   bidirectional controls U+200E, U+200F, U+202A to U+202E and U+2066 to U+2069, the
//!   zero-width U+200B to U+200D, U+2060 to U+2064 and U+FEFF, and U+FFF9 to U+FFFB).
//!
//! These limits also bound a node's encoded size (about 42 KiB at most), so every valid
//! node fits in one record of a ring.

use std::fmt;

use super::{NodeInfo, NodeStatus};

/// The longest name, host or meta key, in bytes.
pub const MAX_FIELD_BYTES: usize = 255;
/// The longest meta value, in bytes.
pub const MAX_META_VALUE_BYTES: usize = 1024;
/// The most meta tags a node may carry.
pub const MAX_META_TAGS: usize = 32;

/// A node that breaks one of the rules of [`NodeInfo::check`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad node {name:?}: field '{field}' {problem}")]
pub struct NodeError {
    /// The node's name as it came (possibly cut short, for the message).
    pub name: String,
    /// The field at fault: `name`, `host`, `port` or `meta`.
    pub field: &'static str,
    /// What is wrong with it.
    pub problem: FieldProblem,
}

/// What is wrong with a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldProblem {
    /// It is empty but must not be.
    Empty,
    /// It is longer than its limit (bytes, limit).
    TooLong(usize, usize),
    /// It holds a control character (or one that moves or hides text) at this byte
    /// offset.
    Control(usize),
    /// It is not UTF-8 from this byte offset on.
    NotUtf8(usize),
    /// The port is 0.
    PortZero,
    /// More meta tags than allowed (count, limit).
    TooManyTags(usize, usize),
}

impl fmt::Display for FieldProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            FieldProblem::Empty => f.write_str("is empty"),
            FieldProblem::TooLong(len, max) => {
                write!(f, "is {len} bytes long, over the limit of {max}")
            }
            FieldProblem::Control(at) => {
                write!(f, "holds a control character at byte {at}")
            }
            FieldProblem::NotUtf8(at) => write!(f, "is not UTF-8 from byte {at}"),
            FieldProblem::PortZero => f.write_str("is 0"),
            FieldProblem::TooManyTags(n, max) => write!(f, "has {n} tags, over the limit of {max}"),
        }
    }
}

/// Checks one string field's bytes: at most `max` bytes, UTF-8, no control character
/// (nor one that moves or hides text), and not empty when `required`. Printable ASCII,
/// the common case, takes one pass over the bytes; anything else is checked by
/// character. The host's wire path reads strings unchecked, so this is also its UTF-8
/// check.
pub fn check_field(bytes: &[u8], max: usize, required: bool) -> Result<(), FieldProblem> {
    if bytes.is_empty() {
        return if required {
            Err(FieldProblem::Empty)
        } else {
            Ok(())
        };
    }
    if bytes.len() > max {
        return Err(FieldProblem::TooLong(bytes.len(), max));
    }
    if bytes.iter().all(|&b| (0x20..0x7f).contains(&b)) {
        return Ok(());
    }
    let text = std::str::from_utf8(bytes).map_err(|e| FieldProblem::NotUtf8(e.valid_up_to()))?;
    match text.char_indices().find(|&(_, c)| hides_text(c)) {
        Some((at, _)) => Err(FieldProblem::Control(at)),
        None => Ok(()),
    }
}

/// Whether `c` is a control character or one that moves or hides text when shown.
fn hides_text(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{2069}'
                | '\u{FEFF}'
                | '\u{FFF9}'..='\u{FFFB}'
        )
}

/// Checks a node's fields as they lie on the wire (the host's fast path reads nodes
/// without decoding them): `name` and `host` are the strings' bytes, `tags` the meta
/// keys and values in order.
pub fn check_wire_node(
    name: &[u8],
    up: bool,
    host: &[u8],
    port: u64,
    tags: usize,
) -> Result<(), (&'static str, FieldProblem)> {
    check_field(name, MAX_FIELD_BYTES, true).map_err(|p| ("name", p))?;
    check_field(host, MAX_FIELD_BYTES, up).map_err(|p| ("host", p))?;
    if up && port == 0 {
        return Err(("port", FieldProblem::PortZero));
    }
    if tags > MAX_META_TAGS {
        return Err(("meta", FieldProblem::TooManyTags(tags, MAX_META_TAGS)));
    }
    Ok(())
}

impl NodeInfo {
    /// Checks the node against the rules of the [module docs](self): the error names
    /// the node and the field at fault.
    pub fn check(&self) -> Result<(), NodeError> {
        let fail = |field: &'static str, problem: FieldProblem| NodeError {
            name: self.name.chars().take(64).collect(),
            field,
            problem,
        };
        let up = self.status == NodeStatus::Up;
        check_wire_node(
            self.name.as_bytes(),
            up,
            self.host.as_bytes(),
            u64::from(self.port),
            self.meta.len(),
        )
        .map_err(|(field, problem)| fail(field, problem))?;
        for (key, value) in &self.meta {
            check_field(key.as_bytes(), MAX_FIELD_BYTES, true).map_err(|p| fail("meta", p))?;
            check_field(value.as_bytes(), MAX_META_VALUE_BYTES, false)
                .map_err(|p| fail("meta", p))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(name: &str, host: &str, port: u16) -> NodeInfo {
        NodeInfo::new(name, NodeStatus::Up, host, port)
    }

    #[test]
    fn good_nodes_pass() {
        assert_eq!(up("web-1.example", "10.0.0.1", 80).check(), Ok(()));
        assert_eq!(up("ünïcode", "host", 1).check(), Ok(()));
        // A node going down needs only its name.
        assert_eq!(
            NodeInfo::new("gone", NodeStatus::Down, "", 0).check(),
            Ok(())
        );
        assert_eq!(up(&"n".repeat(255), &"h".repeat(255), 1).check(), Ok(()));
    }

    #[test]
    fn each_rule_names_its_field() {
        let field = |n: NodeInfo| n.check().unwrap_err().field;
        assert_eq!(field(up("", "h", 1)), "name");
        assert_eq!(field(up("a\nb", "h", 1)), "name");
        assert_eq!(field(up("a\u{1b}[31m", "h", 1)), "name");
        assert_eq!(field(up("a\u{85}", "h", 1)), "name");
        // Characters that forge a line or reorder text when shown.
        for sneaky in [
            "a\u{2028}b",
            "a\u{2029}",
            "\u{202E}gnp.exe",
            "a\u{2066}",
            "a\u{200B}",
            "\u{FEFF}a",
        ] {
            assert_eq!(field(up(sneaky, "h", 1)), "name", "{sneaky:?}");
        }
        assert_eq!(field(up(&"n".repeat(256), "h", 1)), "name");
        assert_eq!(field(up("n", "", 1)), "host");
        assert_eq!(field(up("n", "h\r", 1)), "host");
        assert_eq!(field(up("n", &"h".repeat(256), 1)), "host");
        assert_eq!(field(up("n", "h", 0)), "port");
        assert_eq!(field(up("n", "h", 1).with_meta("", "v")), "meta");
        assert_eq!(field(up("n", "h", 1).with_meta("k", "v\n")), "meta");
        let many = (0..33).fold(up("n", "h", 1), |n, i| n.with_meta(format!("k{i}"), "v"));
        assert_eq!(field(many), "meta");
        assert_eq!(
            NodeInfo::new("down\n", NodeStatus::Down, "", 0)
                .check()
                .unwrap_err()
                .field,
            "name"
        );
    }

    #[test]
    fn the_message_names_node_field_and_problem() {
        let e = up("web1", "h", 0).check().unwrap_err();
        assert_eq!(e.to_string(), "bad node \"web1\": field 'port' is 0");
        let e = up("a\nb", "h", 1).check().unwrap_err();
        assert_eq!(
            e.to_string(),
            "bad node \"a\\nb\": field 'name' holds a control character at byte 1"
        );
    }
}

#[cfg(test)]
mod field_tests {
    use super::*;

    #[test]
    fn bytes_that_are_not_utf8_are_named() {
        assert_eq!(
            check_field(b"ab\xffc", 255, true),
            Err(FieldProblem::NotUtf8(2))
        );
        assert_eq!(check_field("é".as_bytes(), 255, true), Ok(()));
        assert_eq!(
            check_field(b"tab\there", 255, true),
            Err(FieldProblem::Control(3))
        );
    }
}
