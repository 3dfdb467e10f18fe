//! `ring-*` scenarios of the ipc-peer helper: the far end of a ring the test created.
//!
//! A ring is named by two arguments, `<base> <fd>`: its base name and the number of the
//! descriptor of its segment, which the test made this process inherit.
//!
//! - `ring-produce <base> <fd> <count>`: opens the producing end and pushes records
//!   `0..count` (see [`crate::records`]), waiting for space when the ring is full, then
//!   closes.
//! - `ring-consume <base> <fd> <count>`: opens the consuming end and checks that records
//!   `0..count` arrive in order, none lost, none duplicated, each intact.
//! - `ring-produce-forever <base> <fd>` / `ring-consume-forever <base> <fd>`: the same
//!   without an end, for tests that kill this process mid-stream.
//! - `ring-produce-forever-lying <base> <fd>`: like `ring-produce-forever`, after writing
//!   pid 1 (always alive) into every pid field of the header, as a hostile plugin could.
//! - `ring-echo <base-in> <fd-in> <base-out> <fd-out>`: sends back every record it
//!   receives (round trips).
//!
//! Records are built and checked by [`crate::records`].

use std::time::Duration;

use std::os::fd::OwnedFd;

use ipc::ring::{RingConsumer, RingError, RingProducer};

use crate::records::{Checker, Records};

const WAIT: Duration = Duration::from_secs(10);

/// Runs one `ring-*` scenario.
pub fn run(scenario: &str, args: &[String]) -> Result<(), String> {
    let arg = |i: usize| {
        args.get(i)
            .cloned()
            .ok_or_else(|| format!("{scenario}: missing argument {i}"))
    };
    let count = |i: usize| -> Result<u64, String> {
        arg(i)?.parse().map_err(|e| format!("bad count: {e}"))
    };
    let ring = |i: usize| -> Result<(String, OwnedFd), String> {
        let fd = arg(i + 1)?.parse().map_err(|e| format!("bad fd: {e}"))?;
        let fd = ipc::sys::process::take_inherited_fd(fd).map_err(|e| e.to_string())?;
        Ok((arg(i)?, fd))
    };
    match scenario {
        "ring-produce" => produce(ring(0)?, Some(count(2)?)),
        "ring-produce-forever" => produce(ring(0)?, None),
        "ring-produce-forever-lying" => {
            let (base, fd) = ring(0)?;
            let mapping = ipc::sys::shm::Mapping::map_fd(std::os::fd::AsFd::as_fd(&fd))
                .map_err(|e| e.to_string())?;
            for pid_field in [24, 28] {
                mapping.write(pid_field, &1u32.to_le_bytes());
            }
            produce((base, fd), None)
        }
        "ring-consume" => consume(ring(0)?, Some(count(2)?)),
        "ring-consume-forever" => consume(ring(0)?, None),
        "ring-echo" => echo(ring(0)?, ring(2)?),
        _ => Err(format!("unknown scenario '{scenario}'")),
    }
}

/// Pushes records in batches of up to 64; prints how often the ring was full.
fn produce((base, fd): (String, OwnedFd), count: Option<u64>) -> Result<(), String> {
    let mut producer = RingProducer::open(&base, fd).map_err(|e| e.to_string())?;
    let mut builder = Records::default();
    let mut seq = 0u64;
    let mut batch: Vec<Vec<u8>> = Vec::new();
    let mut full = 0u64;
    while count.is_none_or(|c| seq < c) {
        batch.clear();
        let end = count.map_or(seq + 64, |c| c.min(seq + 64));
        batch.extend((seq..end).map(|s| builder.record(s).to_vec()));
        let mut rest = &batch[..];
        while !rest.is_empty() {
            let n = producer.try_push_batch(rest).map_err(|e| e.to_string())?;
            rest = &rest[n..];
            if !rest.is_empty() {
                full += 1;
                if !producer.wait_space(WAIT).map_err(|e| e.to_string())? {
                    return Err(format!("no space for {WAIT:?}"));
                }
            }
        }
        seq = end;
    }
    println!("full={full}");
    Ok(())
}

fn consume((base, fd): (String, OwnedFd), count: Option<u64>) -> Result<(), String> {
    let mut consumer = RingConsumer::open(&base, fd).map_err(|e| e.to_string())?;
    let mut checker = Checker::default();
    while count.is_none_or(|c| checker.next < c) {
        match consumer.drain_timeout(WAIT, |r| checker.check(r)) {
            Ok(_) => {}
            Err(RingError::Closed) => break,
            Err(e) => return Err(e.to_string()),
        }
        if let Some(e) = checker.error.take() {
            return Err(e);
        }
    }
    match count {
        Some(c) if checker.next != c => Err(format!("got {} records, expected {c}", checker.next)),
        _ => Ok(()),
    }
}

fn echo(
    (base_in, fd_in): (String, OwnedFd),
    (base_out, fd_out): (String, OwnedFd),
) -> Result<(), String> {
    let mut consumer = RingConsumer::open(&base_in, fd_in).map_err(|e| e.to_string())?;
    let mut producer = RingProducer::open(&base_out, fd_out).map_err(|e| e.to_string())?;
    let mut pending: Vec<Vec<u8>> = Vec::new();
    loop {
        match consumer.drain_timeout(WAIT, |r| pending.push(r.to_vec())) {
            Ok(_) => {}
            Err(RingError::Closed) => return Ok(()),
            Err(e) => return Err(e.to_string()),
        }
        producer
            .push_all(&pending, WAIT)
            .map_err(|e| e.to_string())?;
        pending.clear();
    }
}
