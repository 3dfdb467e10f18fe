//! Bincode encoding for everything that crosses a process boundary.
//!
//! One configuration for the whole workspace (bincode's standard varint encoding) so the
//! host and every plugin agree byte for byte. Bytes from another process are untrusted:
//! decoding is bounded by a size limit, so a forged length prefix inside a frame is an
//! error rather than a huge allocation, and a frame must be consumed exactly.

use bincode::config::{self, Configuration, Limit};
use bincode::{Decode, Encode};
use thiserror::Error;

/// The largest encoded value accepted from another process: 16 MiB.
pub const MAX_DECODE_BYTES: usize = 16 * 1024 * 1024;

/// The bincode configuration of the wire format, with the decode limit.
type WireConfig = Configuration<config::LittleEndian, config::Varint, Limit<MAX_DECODE_BYTES>>;

fn wire_config() -> WireConfig {
    config::standard().with_limit::<MAX_DECODE_BYTES>()
}

/// A value could not be encoded.
#[derive(Debug, Error)]
#[error("cannot encode {what}: {source}")]
pub struct EncodeFrameError {
    /// What was being encoded (for example "event" or "control frame").
    pub what: &'static str,
    /// The encoder's own error.
    #[source]
    pub source: bincode::error::EncodeError,
}

/// Bytes from another process did not decode into the expected value.
#[derive(Debug, Error)]
pub enum DecodeFrameError {
    /// The bytes are not a valid encoding of the value.
    #[error("bad {what} frame of {len} bytes: {source}")]
    Invalid {
        /// What was being decoded.
        what: &'static str,
        /// The frame's length.
        len: usize,
        /// The decoder's own error.
        #[source]
        source: bincode::error::DecodeError,
    },
    /// The value ended before the frame did.
    #[error("bad {what} frame: {extra} trailing bytes after a {used}-byte value")]
    TrailingBytes {
        /// What was being decoded.
        what: &'static str,
        /// Bytes the value used.
        used: usize,
        /// Bytes left over.
        extra: usize,
    },
}

/// Appends the encoding of `value` to `buf` and returns how many bytes it took.
pub fn encode_into<T: Encode>(
    value: &T,
    buf: &mut Vec<u8>,
    what: &'static str,
) -> Result<usize, EncodeFrameError> {
    let before = buf.len();
    bincode::encode_into_std_write(value, buf, wire_config())
        .map_err(|source| EncodeFrameError { what, source })?;
    Ok(buf.len() - before)
}

/// Encodes `value` into a new buffer.
pub fn encode<T: Encode>(value: &T, what: &'static str) -> Result<Vec<u8>, EncodeFrameError> {
    let mut buf = Vec::new();
    encode_into(value, &mut buf, what)?;
    Ok(buf)
}

/// Decodes one value that must fill `bytes` exactly.
pub fn decode<T: Decode<()>>(bytes: &[u8], what: &'static str) -> Result<T, DecodeFrameError> {
    let (value, used) = bincode::decode_from_slice(bytes, wire_config()).map_err(|source| {
        DecodeFrameError::Invalid {
            what,
            len: bytes.len(),
            source,
        }
    })?;
    if used != bytes.len() {
        return Err(DecodeFrameError::TrailingBytes {
            what,
            used,
            extra: bytes.len() - used,
        });
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, NodeInfo, NodeStatus};

    #[test]
    fn event_round_trips() {
        let mut ev = Event::with_node("a", NodeStatus::Up, "10.0.0.1", 80);
        ev.add_node(NodeInfo::new("b", NodeStatus::Down, "h", 1).with_meta("zone", "eu"));
        let bytes = encode(&ev, "event").unwrap();
        let back: Event = decode(&bytes, "event").unwrap();
        assert_eq!(back, ev);
    }

    #[test]
    fn trailing_bytes_are_an_error() {
        let mut bytes = encode(&Event::with_node("a", NodeStatus::Up, "h", 1), "event").unwrap();
        bytes.push(0);
        let err = decode::<Event>(&bytes, "event").unwrap_err();
        assert!(
            matches!(err, DecodeFrameError::TrailingBytes { extra: 1, .. }),
            "{err}"
        );
    }

    #[test]
    fn forged_length_is_an_error_not_an_allocation() {
        // A node count of u64::MAX followed by nothing: the decoder must fail on input.
        let mut bytes = Vec::new();
        encode_into(&u64::MAX, &mut bytes, "count").unwrap();
        let err = decode::<Event>(&bytes, "event").unwrap_err();
        assert!(err.to_string().contains("event"), "{err}");
        // A string claiming 1 GiB: refused by the limit.
        let mut bytes = Vec::new();
        encode_into(&1u64, &mut bytes, "count").unwrap();
        encode_into(&(1u64 << 30), &mut bytes, "len").unwrap();
        assert!(decode::<Event>(&bytes, "event").is_err());
    }

    #[test]
    fn repeated_names_on_the_wire_keep_the_last() {
        let nodes = vec![
            NodeInfo::new("a", NodeStatus::Up, "h", 1),
            NodeInfo::new("a", NodeStatus::Down, "h", 1),
        ];
        let mut bytes = Vec::new();
        encode_into(&(nodes.len() as u64), &mut bytes, "count").unwrap();
        for n in &nodes {
            encode_into(n, &mut bytes, "node").unwrap();
        }
        let ev: Event = decode(&bytes, "event").unwrap();
        assert_eq!(ev.len(), 1);
        assert_eq!(ev.get("a").unwrap().status, NodeStatus::Down);
    }
}
