//! `cargo bench --bench ipc`: the shared-memory ring against a unix stream socket,
//! between two processes, in the same run.
//!
//! Both transports carry the same frames (a 4-byte length and the bytes): the ring's own
//! records, and on the socket the same prefix written through a `BufWriter` and read
//! through a `BufReader`, which is how a careful socket user batches. Figures:
//! - throughput one way: 2 M records of 64 and 512 bytes, counted by the consumer from
//!   the first record to the last;
//! - round trip: 100 k ping-pongs of 64-byte records, every round timed, p50 and p99.
//!
//! The two processes are pinned: on different CPUs for the first eight figures (when the
//! machine has two), on one CPU for the last two, since an unpinned run flips between
//! placements from run to run. `RECEPTOR_BENCH_QUICK=1` divides the counts by ten.
//!
//! The peer is this same executable, re-run with `--peer <role> ...`.

use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use ipc::ring::{RingConfig, RingConsumer, RingError, RingProducer, ShmRing};
use nix::sched::{sched_setaffinity, CpuSet};
use nix::unistd::Pid;

const WAIT: Duration = Duration::from_secs(30);
const BATCH: usize = 256;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--peer") {
        if let Err(e) = peer(&args[i + 1..]) {
            eprintln!("ipc bench peer: {e}");
            std::process::exit(1);
        }
        return;
    }
    let quick = std::env::var("RECEPTOR_BENCH_QUICK").is_ok_and(|v| v == "1");
    let scale = if quick { 10 } else { 1 };
    let records = 2_000_000 / scale;
    let rounds = 100_000 / scale;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (here, there) = if cpus >= 2 { (0, 1) } else { (0, 0) };
    if cpus < 2 {
        println!("note: one CPU only; the cross-core figures run on one core");
    }
    let dir = tempfile::tempdir().expect("temp dir");

    let mut figures: Vec<(&str, f64)> = Vec::new();
    for size in [64usize, 512] {
        let ring = ring_throughput(size, records, here, there);
        let uds = uds_throughput(dir.path(), size, records, here, there);
        println!(
            "ratio: ring/uds throughput at {size} bytes = {:.2}",
            ring / uds
        );
        figures.push((
            if size == 64 {
                "ring_64b_msgs_per_s"
            } else {
                "ring_512b_msgs_per_s"
            },
            ring,
        ));
        figures.push((
            if size == 64 {
                "uds_64b_msgs_per_s"
            } else {
                "uds_512b_msgs_per_s"
            },
            uds,
        ));
    }
    let ring = ring_rtt(rounds, here, there);
    let uds = uds_rtt(dir.path(), rounds, here, there);
    println!(
        "ratio: ring/uds round trip p50 = {:.3}, p99 = {:.3}",
        ring.p50 / uds.p50,
        ring.p99 / uds.p99
    );
    let ring_one = ring_rtt(rounds, here, here);
    let uds_one = uds_rtt(dir.path(), rounds, here, here);
    println!(
        "ratio: ring/uds round trip p50 on one core = {:.3}",
        ring_one.p50 / uds_one.p50
    );

    let lines = [
        (figures[0].0, figures[0].1, 0),
        (figures[1].0, figures[1].1, 0),
        (figures[2].0, figures[2].1, 0),
        (figures[3].0, figures[3].1, 0),
        ("ring_rtt_p50_us", ring.p50, 2),
        ("ring_rtt_p99_us", ring.p99, 2),
        ("uds_rtt_p50_us", uds.p50, 2),
        ("uds_rtt_p99_us", uds.p99, 2),
        ("ring_rtt_same_core_p50_us", ring_one.p50, 2),
        ("uds_rtt_same_core_p50_us", uds_one.p50, 2),
    ];
    for (name, value, decimals) in lines {
        println!("summary: {name} = {value:.decimals$}");
    }
}

fn pin(cpu: usize) {
    let mut set = CpuSet::new();
    if set.set(cpu).is_ok() {
        if let Err(e) = sched_setaffinity(Pid::from_raw(0), &set) {
            eprintln!("note: cannot pin to CPU {cpu}: {e}");
        }
    }
}

/// Runs the peer: this executable with `--peer <args>`, pinned to `cpu`; it inherits
/// the segments of `rings` (whose peer it becomes), named in `args` by `<base> <fd>`.
fn spawn_peer(cpu: usize, args: &[&str], rings: &[&ShmRing]) -> PeerGuard {
    let exe = std::env::current_exe().expect("own executable");
    let mut cmd = Command::new(exe);
    cmd.arg("--peer").arg(cpu.to_string()).args(args);
    for ring in rings {
        ipc::sys::process::inherit_fd(&mut cmd, ring.segment_fd().as_raw_fd());
    }
    let child = cmd.spawn().expect("spawn the bench peer");
    for ring in rings {
        ring.set_peer(child.id());
    }
    PeerGuard(Some(child))
}

/// `<base> <fd>`: how a peer's arguments name a ring.
fn ring_args(ring: &ShmRing) -> [String; 2] {
    [
        ring.base().to_owned(),
        ring.segment_fd().as_raw_fd().to_string(),
    ]
}

/// Takes the ring named by `args[i]` (base) and `args[i + 1]` (inherited fd).
fn inherited_ring(args: &[String], i: usize) -> Result<(String, OwnedFd), String> {
    let base = args.get(i).cloned().ok_or("missing ring base")?;
    let fd = args
        .get(i + 1)
        .and_then(|fd| fd.parse().ok())
        .ok_or("missing ring fd")?;
    let fd = ipc::sys::process::take_inherited_fd(fd).map_err(|e| e.to_string())?;
    Ok((base, fd))
}

/// Kills and reaps the peer if the bench fails half-way.
struct PeerGuard(Option<Child>);

impl PeerGuard {
    fn finish(mut self) {
        let status = self.0.take().unwrap().wait().expect("wait for peer");
        assert!(status.success(), "bench peer failed: {status}");
    }
}

impl Drop for PeerGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn ring_throughput(size: usize, records: usize, here: usize, there: usize) -> f64 {
    pin(here);
    let mut consumer = RingConsumer::create(RingConfig::default()).expect("ring");
    let [base, fd] = ring_args(consumer.ring());
    let peer = spawn_peer(
        there,
        &[
            "ring-send",
            &base,
            &fd,
            &size.to_string(),
            &records.to_string(),
        ],
        &[consumer.ring()],
    );
    let mut got = 0usize;
    let mut first = None;
    while got < records {
        let n = consumer
            .drain_timeout(WAIT, |r| {
                assert_eq!(r.len(), size);
            })
            .expect("drain");
        if n > 0 && first.is_none() {
            first = Some((Instant::now(), n));
        }
        got += n;
    }
    let end = Instant::now();
    peer.finish();
    let (start, first_n) = first.expect("records arrived");
    (records - first_n) as f64 / (end - start).as_secs_f64()
}

fn uds_throughput(dir: &Path, size: usize, records: usize, here: usize, there: usize) -> f64 {
    pin(here);
    let path = dir.join(format!("tp-{size}.sock"));
    let listener = UnixListener::bind(&path).expect("bind");
    let peer = spawn_peer(
        there,
        &[
            "uds-send",
            path.to_str().unwrap(),
            &size.to_string(),
            &records.to_string(),
        ],
        &[],
    );
    let (stream, _) = listener.accept().expect("accept");
    let mut reader = BufReader::with_capacity(64 << 10, stream);
    let mut got = 0usize;
    let mut first = None;
    while got < records {
        let n = read_frames(&mut reader, size).expect("read");
        if n > 0 && first.is_none() {
            first = Some((Instant::now(), n));
        }
        got += n;
    }
    let end = Instant::now();
    peer.finish();
    let _ = std::fs::remove_file(&path);
    let (start, first_n) = first.expect("records arrived");
    (records - first_n) as f64 / (end - start).as_secs_f64()
}

/// Parses every whole frame in the reader's buffer (filling it first if empty).
fn read_frames(reader: &mut BufReader<UnixStream>, size: usize) -> std::io::Result<usize> {
    let buf = reader.fill_buf()?;
    if buf.is_empty() {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let mut used = 0;
    let mut count = 0;
    while buf.len() - used >= 4 + size {
        let len = u32::from_le_bytes(buf[used..used + 4].try_into().unwrap()) as usize;
        assert_eq!(len, size);
        used += 4 + len;
        count += 1;
    }
    if used == 0 {
        // A frame straddles the buffer's end: read it the slow way.
        let mut frame = vec![0u8; 4 + size];
        reader.read_exact(&mut frame)?;
        return Ok(1);
    }
    reader.consume(used);
    Ok(count)
}

struct Percentiles {
    p50: f64,
    p99: f64,
}

fn percentiles(mut rounds: Vec<Duration>) -> Percentiles {
    rounds.sort_unstable();
    let at = |q: f64| {
        rounds[((rounds.len() as f64 * q) as usize).min(rounds.len() - 1)].as_secs_f64() * 1e6
    };
    Percentiles {
        p50: at(0.50),
        p99: at(0.99),
    }
}

fn ring_rtt(rounds: usize, here: usize, there: usize) -> Percentiles {
    pin(here);
    let mut to = RingProducer::create(RingConfig::default()).expect("ring");
    let mut from = RingConsumer::create(RingConfig::default()).expect("ring");
    let ([to_base, to_fd], [from_base, from_fd]) = (ring_args(to.ring()), ring_args(from.ring()));
    let peer = spawn_peer(
        there,
        &["ring-echo", &to_base, &to_fd, &from_base, &from_fd],
        &[to.ring(), from.ring()],
    );
    let record = [7u8; 64];
    let mut times = Vec::with_capacity(rounds);
    for i in 0..rounds + rounds / 10 {
        let start = Instant::now();
        assert!(to.try_push(&record).expect("push"), "ping ring full");
        let mut got = 0;
        while got == 0 {
            got = from
                .drain_timeout(WAIT, |r| assert_eq!(r.len(), 64))
                .expect("pong");
        }
        if i >= rounds / 10 {
            times.push(start.elapsed());
        }
    }
    drop(to);
    peer.finish();
    percentiles(times)
}

fn uds_rtt(dir: &Path, rounds: usize, here: usize, there: usize) -> Percentiles {
    pin(here);
    let path = dir.join(format!("rtt-{here}-{there}.sock"));
    let listener = UnixListener::bind(&path).expect("bind");
    let peer = spawn_peer(there, &["uds-echo", path.to_str().unwrap()], &[]);
    let (stream, _) = listener.accept().expect("accept");
    let mut writer = BufWriter::new(stream.try_clone().expect("clone"));
    let mut reader = BufReader::new(stream);
    let mut frame = [7u8; 68];
    frame[..4].copy_from_slice(&64u32.to_le_bytes());
    let mut reply = [0u8; 68];
    let mut times = Vec::with_capacity(rounds);
    for i in 0..rounds + rounds / 10 {
        let start = Instant::now();
        writer.write_all(&frame).expect("write");
        writer.flush().expect("flush");
        reader.read_exact(&mut reply).expect("read");
        if i >= rounds / 10 {
            times.push(start.elapsed());
        }
    }
    drop(writer);
    drop(reader);
    peer.finish();
    let _ = std::fs::remove_file(&path);
    percentiles(times)
}

/// The peer side: `<cpu> <role> <args...>`.
fn peer(args: &[String]) -> Result<(), String> {
    let cpu: usize = args
        .first()
        .and_then(|c| c.parse().ok())
        .ok_or("missing cpu")?;
    pin(cpu);
    let arg = |i: usize| {
        args.get(i)
            .cloned()
            .ok_or_else(|| format!("missing argument {i}"))
    };
    let num = |i: usize| -> Result<usize, String> { arg(i)?.parse().map_err(|e| format!("{e}")) };
    match arg(1)?.as_str() {
        "ring-send" => {
            let (base, fd) = inherited_ring(args, 2)?;
            let mut producer = RingProducer::open(&base, fd).map_err(|e| e.to_string())?;
            let (size, records) = (num(4)?, num(5)?);
            let batch = vec![vec![1u8; size]; BATCH];
            let mut sent = 0;
            while sent < records {
                let n = BATCH.min(records - sent);
                let written = producer
                    .try_push_batch(&batch[..n])
                    .map_err(|e| e.to_string())?;
                sent += written;
                if written == 0 {
                    producer.wait_space(WAIT).map_err(|e| e.to_string())?;
                }
            }
            Ok(())
        }
        "ring-echo" => {
            let (from_base, from_fd) = inherited_ring(args, 2)?;
            let (to_base, to_fd) = inherited_ring(args, 4)?;
            let mut from = RingConsumer::open(&from_base, from_fd).map_err(|e| e.to_string())?;
            let mut to = RingProducer::open(&to_base, to_fd).map_err(|e| e.to_string())?;
            let mut pending: Vec<Vec<u8>> = Vec::new();
            loop {
                match from.drain_timeout(WAIT, |r| pending.push(r.to_vec())) {
                    Ok(_) => {}
                    Err(RingError::Closed) => return Ok(()),
                    Err(e) => return Err(e.to_string()),
                }
                to.push_all(&pending, WAIT).map_err(|e| e.to_string())?;
                pending.clear();
            }
        }
        "uds-send" => {
            let stream = UnixStream::connect(arg(2)?).map_err(|e| e.to_string())?;
            let (size, records) = (num(3)?, num(4)?);
            let mut writer = BufWriter::with_capacity(64 << 10, stream);
            let mut frame = vec![1u8; 4 + size];
            frame[..4].copy_from_slice(&(size as u32).to_le_bytes());
            for _ in 0..records {
                writer.write_all(&frame).map_err(|e| e.to_string())?;
            }
            writer.flush().map_err(|e| e.to_string())
        }
        "uds-echo" => {
            let stream = UnixStream::connect(arg(2)?).map_err(|e| e.to_string())?;
            let mut writer = BufWriter::new(stream.try_clone().map_err(|e| e.to_string())?);
            let mut reader = BufReader::new(stream);
            let mut frame = [0u8; 68];
            loop {
                match reader.read_exact(&mut frame) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                    Err(e) => return Err(e.to_string()),
                }
                writer.write_all(&frame).map_err(|e| e.to_string())?;
                writer.flush().map_err(|e| e.to_string())?;
            }
        }
        other => Err(format!("unknown peer role '{other}'")),
    }
}
