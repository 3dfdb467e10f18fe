//! The ring between two real processes: this test process creates the ring (as the host
//! does) and the `ipc-peer` helper opens the other end.

#[path = "../src/bin/ipc-peer/records.rs"]
mod records;

use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ipc::names;
use ipc::ring::{RingConfig, RingConsumer, RingError, RingProducer, ShmRing};
use records::{Checker, Records};

/// A helper process, killed and reaped when the test ends, whatever happens.
struct Peer(Option<Child>);

impl Peer {
    /// Runs `ipc-peer <scenario> <base> <fd> [extra...]` for `ring`, which the helper
    /// inherits, and tells the ring which process its peer is (as the host does).
    fn spawn(scenario: &str, ring: &ShmRing, extra: &[&str]) -> Peer {
        let fd = ring.segment_fd().as_raw_fd();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ipc-peer"));
        cmd.arg(scenario)
            .args([ring.base(), &fd.to_string()])
            .args(extra)
            .stdout(Stdio::piped());
        ipc::sys::process::inherit_fd(&mut cmd, fd);
        let child = cmd.spawn().expect("spawn ipc-peer");
        ring.set_peer(child.id());
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

/// Nothing of the ring `base` is in `/dev/shm` (its segment and its semaphores live in a
/// memory file with no name there; older hosts left `<base>` and `sem.<base>-*`).
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
    let peer = Peer::spawn("ring-produce", consumer.ring(), &[&n.to_string()]);
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
    let n = count() / 10;
    let peer = Peer::spawn("ring-produce", consumer.ring(), &[&n.to_string()]);
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
    let peer = Peer::spawn("ring-consume", producer.ring(), &[&n.to_string()]);
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

/// Waits for the end of a stream from a producer that was killed: the records it sent
/// are intact, then the drain fails. Watchdog: a minute.
fn drain_until_error(consumer: &mut RingConsumer, checker: &mut Checker) -> RingError {
    let watchdog = Instant::now() + Duration::from_secs(60);
    loop {
        match consumer.drain_timeout(Duration::from_secs(1), |r| checker.check(r)) {
            Ok(_) => assert!(
                Instant::now() < watchdog,
                "watchdog: the dead producer was not noticed"
            ),
            Err(e) => break e,
        }
    }
}

/// Takes 1000 records from the producer `pid`, SIGKILLs it, and drains until the ring
/// reports an error: that error, and what the records looked like.
fn kill_mid_stream(consumer: &mut RingConsumer, pid: u32) -> (RingError, Checker) {
    let mut checker = Checker::default();
    while checker.next < 1000 {
        consumer
            .drain_timeout(Duration::from_secs(10), |r| checker.check(r))
            .unwrap();
    }
    sigkill(pid);
    let err = drain_until_error(consumer, &mut checker);
    (err, checker)
}

#[test]
fn a_killed_producer_is_noticed() {
    let mut consumer = RingConsumer::create(small_ring()).unwrap();
    let mut peer = Peer::spawn("ring-produce-forever", consumer.ring(), &[]);
    let pid = peer.pid();
    let (err, checker) = kill_mid_stream(&mut consumer, pid);
    assert_eq!(err, RingError::PeerGone { pid });
    assert!(checker.error.is_none(), "{:?}", checker.error);
    peer.kill();
}

/// Guards against trusting the segment for liveness: a producer that writes pid 1 (alive
/// for ever) into the header and is then killed is still noticed, by the pid the host
/// spawned.
#[test]
fn a_killed_producer_that_lied_about_its_pid_is_noticed() {
    let mut consumer = RingConsumer::create(small_ring()).unwrap();
    let mut peer = Peer::spawn("ring-produce-forever-lying", consumer.ring(), &[]);
    let pid = peer.pid();
    let (err, _) = kill_mid_stream(&mut consumer, pid);
    assert_eq!(err, RingError::PeerGone { pid });
    peer.kill();
}

#[test]
fn a_killed_consumer_is_noticed() {
    let mut producer = RingProducer::create(small_ring()).unwrap();
    let mut peer = Peer::spawn("ring-consume-forever", producer.ring(), &[]);
    let pid = peer.pid();
    let mut records = Records::default();
    for seq in 0..1000 {
        producer
            .push_all(&[records.record(seq)], Duration::from_secs(10))
            .unwrap();
    }
    sigkill(pid);
    let watchdog = Instant::now() + Duration::from_secs(60);
    let mut seq = 1000;
    let err = loop {
        match producer.push_all(&[records.record(seq)], Duration::from_secs(1)) {
            Ok(()) => seq += 1,
            Err(RingError::Wait { .. }) => {}
            Err(e) => break e,
        }
        assert!(
            Instant::now() < watchdog,
            "watchdog: the dead consumer was not noticed"
        );
    };
    assert_eq!(err, RingError::PeerGone { pid });
    peer.kill();
}

/// The sweep removes a dead host's names and keeps a live host's, in a directory of
/// its own and under a private prefix: the machine's real `/dev/shm` is not touched.
#[test]
fn sweep_removes_a_dead_hosts_names_and_keeps_a_live_ones() {
    let mut dead = Command::new("true").spawn().unwrap();
    let dead_pid = dead.id();
    dead.wait().unwrap();
    let mut live = Peer(Some(Command::new("sleep").arg("30").spawn().unwrap()));
    let prefix = format!("receptor-test-{}-", std::process::id());
    let dead_names = [
        format!("{prefix}{dead_pid}-0123456789abcdef"),
        format!("sem.{prefix}{dead_pid}-0123456789abcdef-data"),
    ];
    let live_name = format!("{prefix}{}-fedcba9876543210", live.pid());
    let own_name = format!("sem.{prefix}{}-fedcba9876543210-data", std::process::id());
    // A real host's name (the default prefix) of the dead pid: not ours to sweep.
    let foreign = format!("receptor-{dead_pid}-0123456789abcdef");
    let dir = tempfile::tempdir().unwrap();
    for name in dead_names.iter().chain([&live_name, &own_name, &foreign]) {
        std::fs::write(dir.path().join(name), b"").unwrap();
    }
    let swept = names::sweep_stale_in(dir.path(), &prefix).unwrap();
    let mut removed = swept.removed.clone();
    removed.sort();
    let mut expected = dead_names.to_vec();
    expected.sort();
    assert_eq!(removed, expected, "{swept:?}");
    for name in [&live_name, &own_name, &foreign] {
        assert!(dir.path().join(name).exists(), "{name} was removed");
    }
    live.kill();
}
