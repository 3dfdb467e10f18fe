//! Byte records in one buffer: a batch drained from a ring, the encoded changes the host
//! publishes, a piece of a backlog ready for a ring.
//!
//! A batch of records costs two vectors that keep their capacity from batch to batch,
//! not an allocation per record. A record is a span of the buffer: records pushed here
//! lie back to back, and a ring's consumer drains its bytes into the buffer as they lie
//! in the ring (length prefixes and wrap padding included) and marks where each record
//! is, so a drained record is copied out of shared memory once and never again.

use std::ops::Range;

/// Byte records, in order, in one buffer.
#[derive(Debug, Default, Clone)]
pub struct Records {
    bytes: Vec<u8>,
    /// Where each record lies in `bytes`.
    spans: Vec<Range<usize>>,
}

impl Records {
    /// No records.
    pub fn new() -> Self {
        Records::default()
    }

    /// Appends a copy of `record`.
    pub fn push(&mut self, record: &[u8]) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(record);
        self.spans.push(start..self.bytes.len());
    }

    /// Lets `write` append one record to the buffer; an empty one is not kept.
    /// Returns the size of the record written.
    pub fn write_with(&mut self, write: impl FnOnce(&mut Vec<u8>)) -> usize {
        let start = self.bytes.len();
        write(&mut self.bytes);
        let len = self.bytes.len() - start;
        if len > 0 {
            self.spans.push(start..self.bytes.len());
        }
        len
    }

    /// The buffer and the spans, for a ring's consumer: it appends raw bytes to the
    /// buffer and pushes the span of each record among them.
    pub(crate) fn parts_mut(&mut self) -> (&mut Vec<u8>, &mut Vec<Range<usize>>) {
        (&mut self.bytes, &mut self.spans)
    }

    /// The records, in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &[u8]> + Clone + '_ {
        self.spans.iter().map(|span| &self.bytes[span.clone()])
    }

    /// Record `i`, if there is one.
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        self.spans.get(i).map(|span| &self.bytes[span.clone()])
    }

    /// How many records there are.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Forgets every record, keeping the memory.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.spans.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_come_back_as_pushed_and_empty_writes_are_dropped() {
        let mut records = Records::new();
        records.push(b"one");
        assert_eq!(records.write_with(|_| {}), 0);
        assert_eq!(records.write_with(|b| b.extend_from_slice(b"three")), 5);
        records.push(b"");
        assert_eq!(records.len(), 3);
        let got: Vec<&[u8]> = records.iter().collect();
        assert_eq!(got, [&b"one"[..], b"three", b""]);
        assert_eq!(records.get(1), Some(&b"three"[..]));
        assert_eq!(records.get(3), None);
        records.clear();
        assert!(records.is_empty() && records.iter().next().is_none());
    }
}
