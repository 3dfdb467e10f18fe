//! In-process tests of the ring: both ends in this process, on a real segment.
//! Cross-process behaviour (a real peer, SIGKILL) is in `ipc/tests/ring.rs`.

use super::*;
use crate::shm::SharedSegment;
use proptest::prelude::*;
use std::time::{Duration, Instant};

fn pair(capacity: usize) -> (RingProducer, RingConsumer) {
    let producer = RingProducer::create(RingConfig::with_capacity(capacity)).unwrap();
    let consumer = RingConsumer::open(producer.ring().base(), segment_of(&producer)).unwrap();
    (producer, consumer)
}

/// A copy of a ring's segment descriptor, as the peer receives it.
fn segment_of(producer: &RingProducer) -> std::os::fd::OwnedFd {
    producer.ring().segment_fd().try_clone_to_owned().unwrap()
}

fn drain_all(consumer: &mut RingConsumer) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    consumer.drain(|r| out.push(r.to_vec())).unwrap();
    out
}

/// Scribbles on a ring's segment through a second mapping, as a hostile peer would.
fn scribble(producer: &RingProducer, offset: usize, bytes: &[u8]) {
    let segment = SharedSegment::from_fd("scribbler", segment_of(producer)).unwrap();
    assert!(segment.mapping().write(offset, bytes));
}

#[test]
fn drain_into_appends_the_records_behind_what_is_there() {
    let (mut producer, mut consumer) = pair(4096);
    let mut out = crate::records::Records::new();
    out.push(b"earlier");
    // Enough rounds to wrap the ring: the records still come out whole.
    for round in 0..40u8 {
        let batch = [vec![round; 100], vec![], vec![round; 7]];
        assert_eq!(producer.try_push_batch(&batch).unwrap(), 3);
        assert_eq!(consumer.drain_into(&mut out).unwrap(), 3);
        let got: Vec<&[u8]> = out.iter().skip(1 + 3 * usize::from(round)).collect();
        assert_eq!(got, [&batch[0][..], &batch[1][..], &batch[2][..]]);
    }
    assert_eq!(out.get(0), Some(&b"earlier"[..]));
    assert_eq!(consumer.drain_into(&mut out).unwrap(), 0);
}

#[test]
fn records_arrive_in_order_across_many_wraps() {
    let (mut producer, mut consumer) = pair(4096);
    let mut next = 0u32;
    let mut expected = 0u32;
    while expected < 20_000 {
        let batch: Vec<Vec<u8>> = (0..7)
            .map(|i| {
                let len = ((next + i) % 300) as usize + 4;
                let mut r = vec![(next + i) as u8; len];
                r[..4].copy_from_slice(&(next + i).to_le_bytes());
                r
            })
            .collect();
        let n = producer.try_push_batch(&batch).unwrap();
        next += n as u32;
        consumer
            .drain(|r| {
                let seq = u32::from_le_bytes(r[..4].try_into().unwrap());
                assert_eq!(seq, expected);
                assert_eq!(r.len(), (seq % 300) as usize + 4);
                assert!(r[4..].iter().all(|&b| b == seq as u8));
                expected += 1;
            })
            .unwrap();
    }
    assert!(producer.is_consumed());
}

#[test]
fn a_full_ring_says_so_and_resumes_after_a_drain() {
    let (mut producer, mut consumer) = pair(4096);
    let record = [7u8; 100];
    let mut pushed = 0;
    while producer.try_push(&record).unwrap() {
        pushed += 1;
    }
    assert!(pushed > 10 && pushed < 4096 / 100 + 1, "{pushed}");
    assert_eq!(drain_all(&mut consumer).len(), pushed);
    assert!(producer.wait_space(Duration::from_secs(1)).unwrap());
    assert!(producer.try_push(&record).unwrap());
}

#[test]
fn a_record_over_the_limit_is_refused_whole() {
    let (mut producer, mut consumer) = pair(4096);
    let max = producer.ring().max_record();
    let err = producer
        .try_push_batch(&[vec![1u8; 10], vec![0u8; max + 1]])
        .unwrap_err();
    assert_eq!(err, RingError::TooLarge { len: max + 1, max });
    assert!(
        drain_all(&mut consumer).is_empty(),
        "nothing of the refused batch was written"
    );
    assert!(
        producer.try_push(&vec![0u8; max]).unwrap(),
        "a record of exactly the limit fits"
    );
    assert_eq!(drain_all(&mut consumer)[0].len(), max);
}

#[test]
fn closing_the_producer_ends_the_stream_after_the_last_record() {
    let (mut producer, mut consumer) = pair(4096);
    producer.try_push(b"last").unwrap();
    drop(producer);
    assert_eq!(drain_all(&mut consumer), vec![b"last".to_vec()]);
    assert_eq!(consumer.drain(|_| {}), Err(RingError::Closed));
    assert!(
        consumer.wait(Duration::from_secs(5)).unwrap(),
        "a closed producer wakes the wait"
    );
}

#[test]
fn closing_the_consumer_fails_the_producer() {
    let (mut producer, consumer) = pair(4096);
    drop(consumer);
    assert!(producer.is_closed());
    assert_eq!(producer.try_push(b"x"), Err(RingError::Closed));
}

#[test]
fn a_wait_for_data_is_woken_by_a_push_from_another_thread() {
    let (mut producer, mut consumer) = pair(4096);
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        producer.try_push(b"hello").unwrap();
        producer
    });
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while got.is_empty() && Instant::now() < deadline {
        consumer
            .drain_timeout(Duration::from_secs(1), |r| got.push(r.to_vec()))
            .unwrap();
    }
    assert_eq!(got, vec![b"hello".to_vec()]);
    drop(writer.join().unwrap());
}

/// Whether thread `tid` of this process is asleep in a blocking call (state `S`).
fn asleep(tid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/stat"))
        .ok()
        .and_then(|stat| Some(stat.rsplit_once(')')?.1.trim_start().starts_with('S')))
        .unwrap_or(false)
}

/// Waits (watchdog: a minute) until `cond` holds.
fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "watchdog: {what} never happened");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Runs `wait` on a thread whose sleeps last an hour between peer checks, lets it fall
/// asleep with its waiting flag up (`flag_off`), runs `wake`, and checks that the waiter
/// came back with `Ok(expected)`: only the semaphore post can have woken it.
fn assert_woken_by_post<T: Send + 'static>(
    ring: &ShmRing,
    flag_off: usize,
    waiter: T,
    wait: impl FnOnce(&T) -> Result<bool, RingError> + Send + 'static,
    wake: impl FnOnce(),
    expected: bool,
) -> T {
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        tid_tx.send(nix::unistd::gettid().as_raw()).unwrap();
        let got = wait(&waiter);
        let _ = done_tx.send((got, waiter));
    });
    let tid = tid_rx.recv().unwrap();
    wait_until("the waiter fell asleep", || {
        ring.flag(flag_off).load(Ordering::SeqCst) != 0 && asleep(tid)
    });
    wake();
    let (got, waiter) = done_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("watchdog: the waiter was not woken (a lost semaphore post)");
    assert_eq!(got, Ok(expected));
    waiter
}

/// Guards against a lost wake-up of the consumer: a consumer asleep (for up to an hour)
/// on an empty ring wakes because the push posted.
#[test]
fn a_sleeping_consumer_is_woken_by_the_push_itself() {
    let (mut producer, consumer) = pair(4096);
    let ring = producer.ring.clone();
    let mut consumer = assert_woken_by_post(
        &ring,
        OFF_CONSUMER_WAITING,
        consumer,
        |c| c.wait(Duration::from_secs(3600)),
        || assert!(producer.try_push(b"wake up").unwrap()),
        true,
    );
    assert_eq!(drain_all(&mut consumer), vec![b"wake up".to_vec()]);
}

/// Guards against a lost wake-up of the producer: a producer asleep on a full ring wakes
/// because the drain posted.
#[test]
fn a_producer_waiting_for_space_is_woken_by_the_drain_itself() {
    let (mut producer, mut consumer) = pair(4096);
    while producer.try_push(&[1u8; 100]).unwrap() {}
    let ring = producer.ring.clone();
    let waiter = producer.space_waiter();
    assert_woken_by_post(
        &ring,
        OFF_PRODUCER_WAITING,
        waiter,
        |w| w.wait(Duration::from_secs(3600)),
        || assert!(!drain_all(&mut consumer).is_empty()),
        true,
    );
    assert!(producer.try_push(&[2u8; 100]).unwrap());
}

/// A waker ends a sleeping wait with nothing to read (false), long before its timeout.
#[test]
fn a_waker_ends_a_wait_with_nothing_to_read() {
    let (producer, consumer) = pair(4096);
    let waker = consumer.waker();
    let ring = consumer.ring.clone();
    assert_woken_by_post(
        &ring,
        OFF_CONSUMER_WAITING,
        consumer,
        |c| c.wait(Duration::from_secs(3600)),
        || waker.wake(),
        false,
    );
    drop(producer);
}

/// Guards against trusting a pid from the segment: the creator's end checks the pid it
/// was given (the child the host spawned), whatever the segment claims.
#[test]
fn the_creator_checks_the_pid_it_was_given_not_the_segments() {
    let (mut producer, consumer) = pair(4096);
    let mut child = std::process::Command::new("sleep")
        .arg("600")
        .spawn()
        .unwrap();
    producer.ring().set_peer(child.id());
    // The peer claims to be this (live) process in every pid field of the header.
    let me = std::process::id().to_le_bytes();
    scribble(&producer, 24, &me);
    scribble(&producer, 28, &me);
    child.kill().unwrap();
    child.wait().unwrap();
    while producer.try_push(&[1u8; 100]).unwrap() {}
    assert_eq!(
        producer.wait_space(Duration::from_secs(60)),
        Err(RingError::PeerGone { pid: child.id() })
    );
    drop(consumer);
}

/// Guards against a ring with a name anyone could truncate (named semaphores were files
/// in `/dev/shm`, and truncating one killed the host with SIGBUS): while both ends are
/// open, nothing of the ring is in `/dev/shm`.
#[test]
fn nothing_of_a_live_ring_is_in_dev_shm() {
    let (producer, consumer) = pair(4096);
    let base = producer.ring().base().to_owned();
    let entries: Vec<String> = std::fs::read_dir(crate::names::SHM_DIR)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.contains(&base))
        .collect();
    assert!(entries.is_empty(), "in /dev/shm: {entries:?}");
    drop(consumer);
    drop(producer);
}

/// Guards against trusting the semaphore words of the segment: whatever a peer writes
/// over them, waits and posts return (a spurious wake-up, or a timeout), records still
/// flow, and nothing faults, aborts or panics.
#[test]
fn scribbled_semaphores_give_spurious_wakes_at_worst() {
    let (mut producer, mut consumer) = pair(4096);
    for garbage in [u64::MAX, 0x0000_007f_0000_0001, 0x8000_0000, 0] {
        for off in [OFF_DATA_SEM, OFF_SPACE_SEM] {
            scribble(&producer, off, &garbage.to_le_bytes());
            // The rest of the 64-byte line too, as a peer writing a whole `sem_t` would.
            scribble(&producer, off + 8, &[0x7f; 56]);
        }
        assert!(matches!(
            consumer.wait(Duration::from_millis(50)),
            Ok(false)
        ));
        while producer.try_push(&[3u8; 100]).unwrap() {}
        assert!(matches!(
            producer.wait_space(Duration::from_millis(50)),
            Ok(false)
        ));
        assert!(!drain_all(&mut consumer).is_empty());
        assert_eq!(producer.wait_space(Duration::from_secs(60)), Ok(true));
        consumer.waker().wake();
    }
}

#[test]
fn a_bad_header_is_refused_on_open_with_the_reason() {
    let producer = RingProducer::create(RingConfig::with_capacity(4096)).unwrap();
    let base = producer.ring().base().to_owned();
    let open = || RingConsumer::open(&base, segment_of(&producer));
    scribble(&producer, OFF_VERSION, &7u32.to_le_bytes());
    let err = open().unwrap_err().to_string();
    assert!(err.contains("layout version 7"), "{err}");
    scribble(&producer, OFF_VERSION, &LAYOUT_VERSION.to_le_bytes());
    scribble(&producer, OFF_CAPACITY, &(1u64 << 40).to_le_bytes());
    let err = open().unwrap_err().to_string();
    assert!(err.contains("capacity"), "{err}");
    scribble(&producer, OFF_MAGIC, b"NOTARING");
    let err = open().unwrap_err().to_string();
    assert!(err.contains("bad magic"), "{err}");
    assert!(RingConsumer::open("receptor-1-../../x", segment_of(&producer)).is_err());
}

#[test]
fn a_length_past_the_published_data_is_corruption_not_a_panic() {
    let (mut producer, mut consumer) = pair(4096);
    producer.try_push(b"0123456789").unwrap();
    scribble(&producer, OFF_DATA, &4000u32.to_le_bytes());
    let err = consumer.drain(|_| {}).unwrap_err();
    assert!(matches!(err, RingError::Corrupt { .. }), "{err}");
    assert_eq!(
        consumer.drain(|_| {}).unwrap_err(),
        err,
        "the ring stays broken"
    );
}

#[test]
fn positions_out_of_order_are_corruption() {
    let (producer, mut consumer) = pair(4096);
    scribble(&producer, OFF_TAIL, &u64::MAX.to_le_bytes());
    assert!(matches!(
        consumer.drain(|_| {}),
        Err(RingError::Corrupt { .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64)
    ))]

    /// Arbitrary bytes as published data: records or an error, never a panic, and
    /// every record handed out lies within what was published.
    #[test]
    fn parse_survives_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048), start in any::<u64>()) {
        let mut total = 0;
        let mut inside = true;
        let _ = parse(&bytes, start, 4096, 2040, &mut |r: std::ops::Range<usize>| {
            inside &= r.start <= r.end && r.end <= bytes.len();
            total += r.len();
        });
        prop_assert!(inside);
        prop_assert!(total <= bytes.len());
    }

    /// Arbitrary positions and data in a live segment: drain errors or yields, no panic.
    #[test]
    fn drain_survives_an_arbitrary_segment(
        data in proptest::collection::vec(any::<u8>(), 0..4096),
        tail in any::<u64>(),
        data_at in 0usize..4096,
    ) {
        let (producer, mut consumer) = pair(4096);
        let at = data_at.min(4096 - data.len());
        scribble(&producer, OFF_DATA + at, &data);
        scribble(&producer, OFF_TAIL, &tail.to_le_bytes());
        let mut total = 0;
        let _ = consumer.drain(|r| total += r.len());
        prop_assert!(total <= 4096);
    }
}

/// A growing ring's records through the growth: a ring that starts at one page and is
/// pushed faster than it is drained grows, and every record arrives whole and in order,
/// across every change of capacity (a record larger than the active capacity allows
/// included).
#[test]
fn a_ring_that_grows_while_busy_keeps_every_record_in_order() {
    let producer = RingProducer::create(RingConfig::growing(1 << 20)).unwrap();
    let mut consumer = RingConsumer::open(producer.ring().base(), segment_of(&producer)).unwrap();
    let mut producer = producer;
    assert_eq!(producer.ring().active_capacity(), INITIAL_CAPACITY);
    let mut sizes = vec![producer.ring().active_capacity()];
    let (mut next, mut expected) = (1u32, 1u32);
    while expected < 50_000 {
        // Every 997th record is 40 KiB: more than half of the first capacities.
        let batch: Vec<Vec<u8>> = (next..next + 64)
            .map(|seq| {
                let len = if seq % 997 == 0 {
                    40 << 10
                } else {
                    (seq % 200) as usize + 4
                };
                let mut r = vec![seq as u8; len];
                r[..4].copy_from_slice(&seq.to_le_bytes());
                r
            })
            .collect();
        let written = producer.try_push_batch(&batch).unwrap();
        next += written as u32;
        // Drained only when full, so it is found full at every capacity.
        if written < batch.len() {
            consumer
                .drain(|r| {
                    let seq = u32::from_le_bytes(r[..4].try_into().unwrap());
                    assert_eq!(seq, expected, "records out of order");
                    let len = if seq % 997 == 0 {
                        40 << 10
                    } else {
                        (seq % 200) as usize + 4
                    };
                    assert_eq!(r.len(), len);
                    assert!(r[4..].iter().all(|&b| b == seq as u8));
                    expected += 1;
                })
                .unwrap();
        }
        let active = producer.ring().active_capacity();
        if sizes.last() != Some(&active) {
            sizes.push(active);
        }
    }
    assert!(sizes.len() > 3, "the ring grew in steps: {sizes:?}");
    assert!(sizes.windows(2).all(|w| w[0] < w[1]), "{sizes:?}");
    assert!(*sizes.last().unwrap() <= 1 << 20);
}

/// An idle ring stays small: records that never fill it keep it at its first capacity,
/// however many pass through.
#[test]
fn a_ring_that_is_never_full_keeps_its_first_capacity() {
    let producer = RingProducer::create(RingConfig::growing(1 << 20)).unwrap();
    let mut consumer = RingConsumer::open(producer.ring().base(), segment_of(&producer)).unwrap();
    let mut producer = producer;
    for round in 0..10_000u32 {
        assert!(producer.try_push(&round.to_le_bytes()).unwrap());
        assert_eq!(drain_all(&mut consumer), vec![round.to_le_bytes().to_vec()]);
    }
    assert_eq!(producer.ring().active_capacity(), INITIAL_CAPACITY);
}

/// Guards against a hostile producer's active capacity: a value that is not a power of
/// two, or larger than the segment, is corruption that names the offset.
#[test]
fn a_scribbled_active_capacity_is_corruption_not_a_panic() {
    for bad in [0u64, 3, 1 << 40, 6000] {
        let (mut producer, mut consumer) = pair(4096);
        assert!(producer.try_push(b"x").unwrap());
        scribble(&producer, OFF_ACTIVE, &bad.to_le_bytes());
        let err = consumer.drain(|_| {}).unwrap_err().to_string();
        assert!(
            err.contains("active capacity") && err.contains("144"),
            "{err}"
        );
    }
}

/// Guards against a producer that waits for space in an empty ring: a record over half
/// the active capacity that does not fit, found when the consumer has just drained
/// everything, must grow the ring, not wait for a drain that cannot come. A consumer
/// thread drains as fast as it can while the producer pushes records of every size up
/// to 40 KiB; every wait for space must end (within ten seconds, generously).
#[test]
fn a_growing_ring_never_waits_for_space_in_an_empty_ring() {
    let producer = RingProducer::create(RingConfig::growing(1 << 20)).unwrap();
    let mut consumer = RingConsumer::open(producer.ring().base(), segment_of(&producer)).unwrap();
    let mut producer = producer;
    const RECORDS: u32 = 20_000;
    let reader = std::thread::spawn(move || {
        let mut expected = 0u32;
        while expected < RECORDS {
            consumer
                .drain_timeout(Duration::from_secs(10), |r| {
                    let seq = u32::from_le_bytes(r[..4].try_into().unwrap());
                    assert_eq!(seq, expected, "records out of order");
                    expected += 1;
                })
                .unwrap();
        }
    });
    for seq in 0..RECORDS {
        // Mostly small, now and then one of up to 40 KiB: the ring grows in steps.
        let len = if seq % 50 == 0 {
            4 + (seq as usize * 7919) % (40 << 10)
        } else {
            4 + seq as usize % 64
        };
        let mut record = vec![0u8; len];
        record[..4].copy_from_slice(&seq.to_le_bytes());
        while !producer.try_push(&record).unwrap() {
            assert!(
                producer.wait_space(Duration::from_secs(10)).unwrap(),
                "waited for space in vain at record {seq}"
            );
        }
    }
    reader.join().unwrap();
}

/// Guards against a stop that a hostile peer can swallow (found in review): a peer that
/// keeps zeroing the `data` semaphore's count can take a `RingWaker`'s post when the
/// kick lands between the waiter's check of `kicked` and its entry into the futex, and
/// the waiter then sleeps with no deadline. One kick is not enough against such a
/// peer; a kick repeated until the wait returns always is (each `FUTEX_WAKE` wakes a
/// sleeper whatever the count), which is what the host's `StopEndpoint` does.
#[test]
fn repeated_kicks_end_a_wait_whatever_the_peer_writes_to_the_count() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{mpsc, Arc};
    let mut lost = 0;
    for round in 0..300u32 {
        let (producer, mut consumer) = pair(4096);
        consumer.set_spin(Duration::ZERO);
        let waker = consumer.waker();
        let done = Arc::new(AtomicBool::new(false));
        let hostile = {
            let segment = SharedSegment::from_fd("hostile", segment_of(&producer)).unwrap();
            let done = done.clone();
            std::thread::spawn(move || {
                let word = segment.mapping().atomic_u32(OFF_DATA_SEM).unwrap();
                while !done.load(Ordering::Relaxed) {
                    word.store(0, Ordering::Relaxed);
                }
            })
        };
        let (tx, rx) = mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let _ = tx.send(consumer.wait(Duration::MAX));
            consumer
        });
        // Kick around the moment the waiter goes to sleep.
        let delay = Duration::from_micros((round % 200) as u64 * 2);
        let t = Instant::now();
        while t.elapsed() < delay {
            std::hint::spin_loop();
        }
        // As `StopEndpoint` does: kick every 20 ms until the wait returns.
        let kicked_at = Instant::now();
        let ended = loop {
            waker.wake();
            if rx.recv_timeout(Duration::from_millis(20)).is_ok() {
                break true;
            }
            if kicked_at.elapsed() > Duration::from_secs(2) {
                break false;
            }
        };
        if !ended {
            lost += 1;
        }
        done.store(true, Ordering::Relaxed);
        hostile.join().unwrap();
        // Unstick a lost waiter (its `kicked` is still raised) so the round ends.
        producer.ring().post(OFF_DATA_SEM);
        let _ = rx.recv_timeout(Duration::from_secs(5));
        drop(waiter.join().unwrap());
        drop(producer);
    }
    assert_eq!(
        lost, 0,
        "{lost} of 300 waits were not ended by repeated kicks"
    );
}

/// Guards against a kick that a plugin's own sleepers take (found in review): a peer
/// that queues threads of its own on the `data` word (zeroing the count each time)
/// would take a wake-up of one sleeper, so the host's waiter needed as many kicks as
/// there were hostile sleepers ahead of it. A kick wakes them all, ours included.
#[test]
fn a_kick_is_not_taken_by_the_peers_own_sleepers() {
    use crate::sys::semaphore::SegmentSemaphore;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{mpsc, Arc};
    let (producer, mut consumer) = pair(4096);
    consumer.set_spin(Duration::ZERO);
    let waker = consumer.waker();
    let done = Arc::new(AtomicBool::new(false));
    let hostile: Vec<_> = (0..40)
        .map(|_| {
            let segment = SharedSegment::from_fd("hostile", segment_of(&producer)).unwrap();
            let done = done.clone();
            std::thread::spawn(move || {
                let word = segment.mapping().atomic_u32(OFF_DATA_SEM).unwrap();
                while !done.load(Ordering::Relaxed) {
                    word.store(0, Ordering::Relaxed);
                    let _ = SegmentSemaphore::new(word).wait_once(Duration::from_secs(60));
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(50)); // lets them queue first; not a sync
    let (tx, rx) = mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let _ = tx.send(consumer.wait(Duration::MAX));
        consumer
    });
    std::thread::sleep(Duration::from_millis(20)); // the waiter queues behind them
    let mut kicks = 0;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(5) {
        waker.wake();
        kicks += 1;
        if rx.recv_timeout(Duration::from_millis(20)).is_ok() {
            break;
        }
    }
    done.store(true, Ordering::Relaxed);
    while hostile.iter().any(|h| !h.is_finished()) {
        producer.ring().post(OFF_DATA_SEM);
        std::thread::sleep(Duration::from_millis(1));
    }
    hostile.into_iter().for_each(|h| h.join().unwrap());
    drop(waiter.join().unwrap());
    assert!(kicks <= 2, "{kicks} kicks to end one wait");
}
