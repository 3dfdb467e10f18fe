//! Records back to back in one buffer: a batch a pump drained, or the encoded changes
//! it publishes.
//!
//! A batch of records costs two vectors that keep their capacity from batch to batch,
//! not an allocation per record.

/// Byte records, in order, in one buffer.
#[derive(Debug, Default, Clone)]
pub struct Records {
    bytes: Vec<u8>,
    /// Where each record ends in `bytes`.
    ends: Vec<usize>,
}

impl Records {
    /// No records.
    pub fn new() -> Self {
        Records::default()
    }

    /// Appends a copy of `record`.
    pub fn push(&mut self, record: &[u8]) {
        self.bytes.extend_from_slice(record);
        self.ends.push(self.bytes.len());
    }

    /// Lets `write` append one record to the buffer; an empty one is not kept.
    /// Returns the size of the record written.
    pub fn write_with(&mut self, write: impl FnOnce(&mut Vec<u8>)) -> usize {
        let start = self.bytes.len();
        write(&mut self.bytes);
        let len = self.bytes.len() - start;
        if len > 0 {
            self.ends.push(self.bytes.len());
        }
        len
    }

    /// The records, in order.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + Clone + '_ {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(&self.ends)
            .map(|(start, &end)| &self.bytes[start..end])
    }

    /// How many records there are.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Forgets every record, keeping the memory.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
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
        records.clear();
        assert!(records.is_empty() && records.iter().next().is_none());
    }
}
