//! A real etcd for tests and benches: `etcd` (Debian's `etcd-server`) started on free
//! loopback ports with a temporary data directory, killed when dropped.
//!
//! etcd cannot be told to bind port 0, so ports are picked at random and the start is
//! retried on other ports when etcd fails to come up (a port taken meanwhile). A
//! missing `etcd` binary is a panic that says how to install it: tests never pass
//! silently without it.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::config::{Endpoint, Settings};
use crate::Client;

/// The prefix of every test data directory (a leftover check looks for it).
pub const DATA_DIR_PREFIX: &str = "receptor-etcd-test-";
/// How long etcd may take to come up.
const START_WAIT: Duration = Duration::from_secs(20);
/// How many port pairs are tried.
const START_ATTEMPTS: usize = 10;

/// A running etcd, killed (and its data directory removed) on drop.
pub struct EtcdServer {
    child: Option<Child>,
    dir: tempfile::TempDir,
    client_port: u16,
    peer_port: u16,
}

impl EtcdServer {
    /// Starts etcd on free loopback ports; panics if it cannot.
    pub fn start() -> EtcdServer {
        let mut dir = tempfile::Builder::new()
            .prefix(DATA_DIR_PREFIX)
            .tempdir()
            .expect("a temporary directory for etcd");
        let mut last = String::new();
        for _ in 0..START_ATTEMPTS {
            let client_port = rand::random_range(20_000..60_000);
            let mut server = EtcdServer {
                child: None,
                dir,
                client_port,
                peer_port: client_port + 1,
            };
            match server.spawn() {
                Ok(()) => return server,
                Err(e) => last = e,
            }
            dir = server.take_dir();
        }
        panic!("cannot start etcd after {START_ATTEMPTS} attempts: {last}");
    }

    fn take_dir(mut self) -> tempfile::TempDir {
        self.kill();
        let placeholder = tempfile::tempdir().expect("a temporary directory");
        std::mem::replace(&mut self.dir, placeholder)
    }

    /// Starts the process on this server's ports and data directory and waits until it
    /// answers.
    fn spawn(&mut self) -> Result<(), String> {
        let data = self.dir.path().join("data");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("etcd.log"))
            .map_err(|e| e.to_string())?;
        let client = format!("http://127.0.0.1:{}", self.client_port);
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let child = Command::new("etcd")
            .arg("--name=receptor-test")
            .arg(format!("--data-dir={}", data.display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=receptor-test={peer}"))
            // Bulk loads of the benches: 1,000 puts per transaction.
            .arg("--max-txn-ops=1000")
            .arg("--max-request-bytes=33554432")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn();
        let child = match child {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "etcd not found on PATH: install Debian's etcd-server \
                 (apt-get install etcd-server etcd-client; scripts/test does this)"
            ),
            Err(e) => panic!("cannot start etcd: {e}"),
        };
        self.child = Some(child);
        let deadline = Instant::now() + START_WAIT;
        let mut client = self.client();
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Err(format!("etcd exited with {status}: {}", self.log_tail()));
            }
            if client.range_prefix("/health-check/").is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.kill();
                return Err(format!("etcd did not answer within {START_WAIT:?}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().rev().take(3).collect();
        lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
    }

    /// The client URL, `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// Connection settings for this server.
    pub fn settings(&self) -> Settings {
        Settings {
            endpoints: vec![Endpoint {
                url: self.url(),
                authority: format!("127.0.0.1:{}", self.client_port),
            }],
            dial_timeout: Duration::from_secs(1),
            credentials: None,
        }
    }

    /// A client of this server.
    pub fn client(&self) -> Client {
        Client::new(self.settings())
    }

    /// The pid of the etcd process, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills etcd (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts etcd again on the same ports and data directory (after [`kill`]).
    ///
    /// [`kill`]: EtcdServer::kill
    pub fn restart(&mut self) {
        self.kill();
        let mut last = String::new();
        for _ in 0..START_ATTEMPTS {
            match self.spawn() {
                Ok(()) => return,
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("cannot restart etcd on port {}: {last}", self.client_port);
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.kill();
    }
}
