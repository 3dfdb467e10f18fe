//! A small HTTP/1.1 receiver on loopback for the webhook's tests (and the workspace's
//! end-to-end tests): it records every request and the state of the nodes the 2xx ones
//! carried, can fail or ignore its first requests, and can be stopped (port closed,
//! open connections cut) and started again on the same port.
//!
//! Plain `std` threads and sockets, so a test needs no runtime to drive it.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long a connection may sit idle before the receiver closes it.
const IDLE: Duration = Duration::from_secs(30);

/// How the receiver answers.
#[derive(Debug, Clone, Copy)]
pub struct Behaviour {
    /// Answer the first this many requests with `fail_status`.
    pub fail_first: usize,
    /// The status of the failed answers (500 by default).
    pub fail_status: u16,
    /// Then leave the next this many requests unanswered (the client times out).
    pub hang_first: usize,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            fail_first: 0,
            fail_status: 500,
            hang_first: 0,
        }
    }
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    /// `POST`, `PUT`...
    pub method: String,
    /// The request target.
    pub path: String,
    /// The headers, names lowercased.
    pub headers: BTreeMap<String, String>,
    /// The body.
    pub body: Vec<u8>,
    /// The status it was answered with (`None`: not answered).
    pub answered: Option<u16>,
}

#[derive(Debug, Default)]
struct Record {
    requests: Vec<Received>,
    /// Node name to its last status ("up"/"down") from answered-2xx requests.
    nodes: BTreeMap<String, String>,
}

struct Shared {
    behaviour: Behaviour,
    record: Mutex<Record>,
    conns: Mutex<Vec<TcpStream>>,
    stop: AtomicBool,
}

/// A running (or stopped) receiver.
pub struct Receiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Receiver {
    /// Starts a receiver on a free loopback port.
    pub fn start(behaviour: Behaviour) -> Receiver {
        Receiver::start_on(0, behaviour)
    }

    /// Starts a receiver on `port` of 127.0.0.1 (0: a free one).
    pub fn start_on(port: u16, behaviour: Behaviour) -> Receiver {
        let shared = Arc::new(Shared {
            behaviour,
            record: Mutex::new(Record::default()),
            conns: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let mut receiver = Receiver {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            shared,
            thread: None,
        };
        receiver.resume();
        receiver
    }

    /// The receiver's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Stops listening and cuts every open connection: the port refuses connections.
    pub fn stop(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr); // wakes the accept loop
        let _ = thread.join();
        for conn in lock(&self.shared.conns).drain(..) {
            let _ = conn.shutdown(Shutdown::Both);
        }
    }

    /// Listens again on the same port, keeping what was recorded.
    pub fn resume(&mut self) {
        if self.thread.is_some() {
            return;
        }
        let listener = TcpListener::bind(self.addr).expect("bind the test receiver");
        self.addr = listener.local_addr().unwrap();
        self.shared.stop.store(false, Ordering::SeqCst);
        let shared = self.shared.clone();
        self.thread = Some(std::thread::spawn(move || {
            for conn in listener.incoming() {
                if shared.stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                if let Ok(copy) = conn.try_clone() {
                    lock(&shared.conns).push(copy);
                }
                let shared = shared.clone();
                std::thread::spawn(move || serve(conn, &shared));
            }
        }));
    }

    /// The nodes' last status (`"up"`/`"down"`) from the requests answered 2xx.
    pub fn state(&self) -> BTreeMap<String, String> {
        lock(&self.shared.record).nodes.clone()
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Received> {
        lock(&self.shared.record).requests.clone()
    }

    /// How many requests arrived so far.
    pub fn request_count(&self) -> usize {
        lock(&self.shared.record).requests.len()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Serves one connection's requests until it closes.
fn serve(conn: TcpStream, shared: &Shared) {
    let _ = conn.set_read_timeout(Some(IDLE));
    let Ok(mut out) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(conn);
    while let Some(mut request) = read_request(&mut reader) {
        let (index, status) = {
            let mut record = lock(&shared.record);
            let index = record.requests.len();
            let b = shared.behaviour;
            let status = if index < b.fail_first {
                Some(b.fail_status)
            } else if index < b.fail_first + b.hang_first {
                None
            } else {
                Some(200)
            };
            request.answered = status;
            if status == Some(200) {
                apply(&mut record.nodes, &request.body);
            }
            record.requests.push(request);
            (index, status)
        };
        let Some(status) = status else {
            // Never answered: wait until the client gives up (or the receiver stops).
            let mut sink = [0u8; 1024];
            while matches!(reader.read(&mut sink), Ok(n) if n > 0) {}
            return;
        };
        let body = format!("request {index}");
        let answer = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if out.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Received> {
    let mut line = String::new();
    reader.read_line(&mut line).ok().filter(|n| *n > 0)?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let path = parts.next()?.to_owned();
    let mut headers = BTreeMap::new();
    loop {
        line.clear();
        reader.read_line(&mut line).ok().filter(|n| *n > 0)?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
    }
    let length: usize = headers
        .get("content-length")
        .map_or(Some(0), |v| v.parse().ok())?;
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Received {
        method,
        path,
        headers,
        body,
        answered: None,
    })
}

/// Applies a webhook body to the recorded node states.
fn apply(nodes: &mut BTreeMap<String, String>, body: &[u8]) {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return;
    };
    for node in v["nodes"].as_array().into_iter().flatten() {
        if let (Some(name), Some(status)) = (node["name"].as_str(), node["status"].as_str()) {
            nodes.insert(name.to_owned(), status.to_owned());
        }
    }
}
