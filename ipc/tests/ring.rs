//! The ring between two real processes: this test process creates the ring (as the host
//! does) and the `ipc-peer` helper opens the other end.

#[path = "../src/bin/ipc-peer/records.rs"]
mod records;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ipc::names;
use ipc::ring::{RingConfig, RingConsumer, RingError, RingProducer};
use records::{Checker, Records};

/// A helper process, killed and reaped when the test ends, whatever happens.
struct Peer(Option<Child>);

impl Peer {
    fn spawn(args: &[&str]) -> Peer {
        let child = Command::new(env!("CARGO_BIN_EXE_ipc-peer"))
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn ipc-peer");
        Peer(Some(child))
    }

    fn pid(&self) -> u32 {
        self.0.as_ref().unwrap().id()
    }

    /// Waits for a clean exit and returns what the helper printed.
    fn finish(mut self) -> String {
        let out = self.0.take().unwrap().wait_with_output().unwrap();
        assert!(out.status.success(), "ipc-peer failed: {:?}", out.status);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn sigkill(pid: u32) {
    use nix::sys::signal::{kill, Signal};
    kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
}

fn small_ring() -> RingConfig {
    RingConfig::with_capacity(64 << 10)
}

fn count() -> u64 {
    std::env::var("RECEPTOR_TEST_RING_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

fn assert_unlinked(base: &str) {
    for file in [
        format!("/dev/shm/{base}"),
        format!("/dev/shm/sem.{base}-data"),
        format!("/dev/shm/sem.{base}-space"),
    ] {
        assert!(!Path::new(&file).exists(), "{file} left behind");
    }
}

/// Consumes `n` records from a child producer, checking each.
fn consume_checked(consumer: &mut RingConsumer, n: u64, pause_every: Option<u64>) {
    let mut checker = Checker::default();
    let mut drains = 0u64;
    while checker.next < n {
        consumer
            .drain_timeout(Duration::from_secs(10), |r| checker.check(r))
            .unwrap();
        if let Some(e) = &checker.error {
            panic!("{e}");
        }
        drains += 1;
        if pause_every.is_some_and(|every| drains.is_multiple_of(every)) {
            // Makes this consumer slower than the producer; not a synchronisation.
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

#[test]
fn a_million_records_from_a_child_arrive_whole_and_in_order() {
    let mut consumer = RingConsumer::create(small_ring()).unwrap();
    let base = consumer.ring().base().to_owned();
    let n = count();
    let peer = Peer::spawn(&["ring-produce", &base, &n.to_string()]);
    consume_checked(&mut consumer, n, None);
    peer.finish();
    assert_eq!(
        consumer.drain(|_| {}),
        Err(RingError::Closed),
        "nothing after the last record"
    );
    drop(consumer);
    assert_unlinked(&base);
}

#[test]
fn a_slow_consumer_fills_the_ring_and_the_producer_resumes() {
    let mut consumer = RingConsumer::create(small_ring()).unwrap();
    let base = consumer.ring().base().to_owned();
    let n = count() / 10;
    let peer = Peer::spawn(&["ring-produce", &base, &n.to_string()]);
    consume_checked(&mut consumer, n, Some(50));
    let out = peer.finish();
    let full: u64 = out
        .trim()
        .strip_prefix("full=")
        .and_then(|v| v.parse().ok())
        .expect("full=<n>");
    assert!(full > 0, "the producer never found the ring full");
    assert_eq!(consumer.drain(|_| {}), Err(RingError::Closed));
}

#[test]
fn a_million_records_to_a_child_arrive_whole_and_in_order() {
    let mut producer = RingProducer::create(small_ring()).unwrap();
    let base = producer.ring().base().to_owned();
    let n = count();
    let peer = Peer::spawn(&["ring-consume", &base, &n.to_string()]);
    let mut records = Records::default();
    let mut seq = 0;
    while seq < n {
        let batch: Vec<Vec<u8>> = (seq..n.min(seq + 32))
            .map(|s| records.record(s).to_vec())
            .collect();
        producer.push_all(&batch, Duration::from_secs(10)).unwrap();
        seq += batch.len() as u64;
    }
    peer.finish();
    drop(producer);
    assert_unlinked(&base);
}

#[test]
fn a_killed_producer_is_noticed_within_about_a_second() {
    let mut consumer = RingConsumer::create(small_ring()).unwrap();
    let base = consumer.ring().base().to_owned();
    let mut peer = Peer::spawn(&["ring-produce-forever", &base]);
    let pid = peer.pid();
    let mut checker = Checker::default();
    while checker.next < 1000 {
        consumer
            .drain_timeout(Duration::from_secs(10), |r| checker.check(r))
            .unwrap();
    }
    sigkill(pid);
    let killed = Instant::now();
    let err = loop {
        match consumer.drain_timeout(Duration::from_secs(5), |r| checker.check(r)) {
            Ok(_) => assert!(killed.elapsed() < Duration::from_secs(5), "still draining"),
            Err(e) => break e,
        }
    };
    assert_eq!(err, RingError::PeerGone { pid });
    assert!(
        killed.elapsed() < Duration::from_millis(2500),
        "noticed after {:?}",
        killed.elapsed()
    );
    assert!(checker.error.is_none(), "{:?}", checker.error);
    peer.kill();
}

#[test]
fn a_killed_consumer_is_noticed_within_about_a_second() {
    let mut producer = RingProducer::create(small_ring()).unwrap();
    let base = producer.ring().base().to_owned();
    let mut peer = Peer::spawn(&["ring-consume-forever", &base]);
    let pid = peer.pid();
    let mut records = Records::default();
    for seq in 0..1000 {
        producer
            .push_all(&[records.record(seq)], Duration::from_secs(10))
            .unwrap();
    }
    sigkill(pid);
    let killed = Instant::now();
    let mut seq = 1000;
    let err = loop {
        match producer.push_all(&[records.record(seq)], Duration::from_secs(5)) {
            Ok(()) => seq += 1,
            Err(e) => break e,
        }
    };
    assert_eq!(err, RingError::PeerGone { pid });
    assert!(
        killed.elapsed() < Duration::from_millis(2500),
        "noticed after {:?}",
        killed.elapsed()
    );
    peer.kill();
}

#[test]
fn sweep_removes_a_dead_hosts_names_and_keeps_a_live_ones() {
    let mut dead = Command::new("true").spawn().unwrap();
    let dead_pid = dead.id();
    dead.wait().unwrap();
    let mut live = Peer(Some(Command::new("sleep").arg("30").spawn().unwrap()));
    let dead_names = [
        format!("receptor-{dead_pid}-0123456789abcdef"),
        format!("sem.receptor-{dead_pid}-0123456789abcdef-data"),
    ];
    let live_name = format!("receptor-{}-fedcba9876543210", live.pid());
    let dir = Path::new(names::SHM_DIR);
    for name in dead_names.iter().chain([&live_name]) {
        std::fs::write(dir.join(name), b"").unwrap();
    }
    let own = RingProducer::create(small_ring()).unwrap();
    let swept = names::sweep_stale().unwrap();
    for name in &dead_names {
        assert!(
            swept.removed.contains(name),
            "{name} not removed: {swept:?}"
        );
        assert!(!dir.join(name).exists());
    }
    assert!(
        dir.join(&live_name).exists(),
        "a live host's name was removed"
    );
    assert!(
        dir.join(own.ring().base()).exists(),
        "our own ring was removed"
    );
    std::fs::remove_file(dir.join(&live_name)).unwrap();
    live.kill();
}
