//! What the `end_to_end` bench needs of the test plugin: stamped, paced events, a tally
//! of what arrived (count, first and last arrival, one-way latencies), and the baseline
//! that moves the same events between two of these processes over a unix socket with no
//! host in between (`direct-send` / `direct-recv`).

use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use plugin_sdk::{Event, NodeStatus, Update};

/// Nanoseconds since the epoch (the same clock in every process).
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Event `i` of a run: a node never seen before, stamped with its send time when the
/// run is paced (latency runs).
pub fn event(prefix: &str, i: u64, stamped: bool) -> Event {
    let mut node =
        plugin_sdk::NodeInfo::new(format!("{prefix}-{i}"), NodeStatus::Up, "127.0.0.1", 80);
    if stamped {
        node = node.with_meta("t", now_ns().to_string());
    }
    std::iter::once(node).collect()
}

/// Waits until event `i` of a run at `rate` per second is due (no wait when 0).
pub fn pace(start: Instant, rate: u64, i: u64) {
    if rate == 0 {
        return;
    }
    let due = start + Duration::from_nanos(i * 1_000_000_000 / rate);
    let now = Instant::now();
    if due > now {
        std::thread::sleep(due - now);
    }
}

/// What arrived at a reactor.
#[derive(Default)]
pub struct Tally {
    count: u64,
    first_ns: u64,
    last_ns: u64,
    latencies_ns: Vec<u64>,
    written: bool,
}

impl Tally {
    /// Counts the nodes of `ev` and their latencies (for stamped nodes).
    pub fn observe(&mut self, ev: &Event) {
        let now = now_ns();
        if self.count == 0 {
            self.first_ns = now;
        }
        self.last_ns = now;
        for node in ev.nodes() {
            self.count += 1;
            if let Some(sent) = node.meta.get("t").and_then(|t| t.parse::<u64>().ok()) {
                self.latencies_ns.push(now.saturating_sub(sent));
            }
        }
    }

    /// How many nodes arrived.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Writes the result as JSON once `expect` nodes arrived.
    pub fn write_when_done(&mut self, expect: u64, result: &Path) -> std::io::Result<()> {
        if self.written || self.count < expect {
            return Ok(());
        }
        self.written = true;
        self.latencies_ns.sort_unstable();
        let pct = |q: f64| {
            let l = &self.latencies_ns;
            if l.is_empty() {
                0.0
            } else {
                l[((l.len() as f64 * q) as usize).min(l.len() - 1)] as f64 / 1000.0
            }
        };
        let json = serde_json::json!({
            "count": self.count,
            "first_ns": self.first_ns,
            "last_ns": self.last_ns,
            "p50_us": pct(0.50),
            "p99_us": pct(0.99),
        });
        let tmp = result.with_extension("tmp");
        std::fs::write(&tmp, json.to_string())?;
        std::fs::rename(tmp, result)
    }
}

/// `direct-send <socket> <count> <rate> <prefix>`: the baseline's watcher side.
pub fn direct_send(args: &[String]) -> Result<(), String> {
    let [socket, count, rate, prefix] = args else {
        return Err("usage: direct-send <socket> <count> <rate> <prefix>".into());
    };
    let count: u64 = count.parse().map_err(|e| format!("count: {e}"))?;
    let rate: u64 = rate.parse().map_err(|e| format!("rate: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let stream = loop {
        match UnixStream::connect(socket) {
            Ok(stream) => break stream,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(format!("connect {socket}: {e}")),
        }
    };
    let mut out = BufWriter::with_capacity(64 << 10, stream);
    let start = Instant::now();
    let mut buf = Vec::new();
    for i in 0..count {
        pace(start, rate, i);
        buf.clear();
        let update = Update::Incremental(event(prefix, i, rate > 0));
        ipc::codec::encode_into(&update, &mut buf, "update").map_err(|e| e.to_string())?;
        out.write_all(&(buf.len() as u32).to_le_bytes())
            .map_err(|e| e.to_string())?;
        out.write_all(&buf).map_err(|e| e.to_string())?;
        if rate > 0 {
            out.flush().map_err(|e| e.to_string())?;
        }
    }
    out.flush().map_err(|e| e.to_string())
}

/// `direct-recv <socket> <expect> <result>`: the baseline's reactor side.
pub fn direct_recv(args: &[String]) -> Result<(), String> {
    let [socket, expect, result] = args else {
        return Err("usage: direct-recv <socket> <expect> <result>".into());
    };
    let expect: u64 = expect.parse().map_err(|e| format!("expect: {e}"))?;
    let result = PathBuf::from(result);
    let listener = UnixListener::bind(socket).map_err(|e| format!("bind {socket}: {e}"))?;
    let (stream, _) = listener.accept().map_err(|e| e.to_string())?;
    let mut input = BufReader::with_capacity(64 << 10, stream);
    let mut tally = Tally::default();
    let mut body = Vec::new();
    while tally.count() < expect {
        let mut len = [0u8; 4];
        input
            .read_exact(&mut len)
            .map_err(|e| format!("after {} events: {e}", tally.count()))?;
        body.resize(u32::from_le_bytes(len) as usize, 0);
        input.read_exact(&mut body).map_err(|e| e.to_string())?;
        let update: Update = ipc::codec::decode(&body, "update").map_err(|e| e.to_string())?;
        tally.observe(update.event());
    }
    tally
        .write_when_done(expect, &result)
        .map_err(|e| e.to_string())
}
