//! The test records of the ring scenarios, shared by the ipc-peer helper and the tests
//! in `ipc/tests/ring.rs` (which include this file by path).
//!
//! Records are fully determined by their sequence number, so the consumer rebuilds the
//! expected record and compares: a record of 1 to 4096 bytes whose first bytes are the
//! sequence number, whose middle is a fill byte and whose last four bytes are a checksum.
#![allow(dead_code)]

/// Builds the record of a sequence number.
#[derive(Default)]
pub struct Records {
    buf: Vec<u8>,
}

/// The length of record `seq`: 1 to 4096 bytes, spread by a mix of the number.
pub fn record_len(seq: u64) -> usize {
    let mut x = seq.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 29;
    (x % 4096) as usize + 1
}

fn checksum(seq: u64, len: usize) -> [u8; 4] {
    ((seq as u32).wrapping_mul(2_654_435_761) ^ len as u32).to_le_bytes()
}

impl Records {
    /// The bytes of record `seq`.
    pub fn record(&mut self, seq: u64) -> &[u8] {
        let len = record_len(seq);
        self.buf.clear();
        self.buf.resize(len, (seq % 251) as u8);
        let head = len.min(8);
        self.buf[..head].copy_from_slice(&seq.to_le_bytes()[..head]);
        if len >= 12 {
            self.buf[len - 4..].copy_from_slice(&checksum(seq, len));
        }
        &self.buf
    }
}

/// Checks that records arrive as `0, 1, 2, ...`, each intact.
#[derive(Default)]
pub struct Checker {
    /// The sequence number expected next.
    pub next: u64,
    records: Records,
    /// The first mismatch.
    pub error: Option<String>,
}

impl Checker {
    /// Checks one record.
    pub fn check(&mut self, got: &[u8]) {
        if self.error.is_some() {
            return;
        }
        let seq = self.next;
        if got != self.records.record(seq) {
            let head: Vec<u8> = got.iter().take(8).copied().collect();
            self.error = Some(format!(
                "record {seq}: got {} bytes starting {head:?}, expected {} bytes",
                got.len(),
                record_len(seq)
            ));
        }
        self.next += 1;
    }
}
