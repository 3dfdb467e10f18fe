//! A raw HTTP/1.1 client for tests that need control over the bytes: keep-alive
//! connections, chunked bodies, `Expect: 100-continue`, a head sent a byte at a time.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::WAIT;

/// One answer: status, headers (names lowercase) and body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    /// The value of header `name` (lowercase), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One client connection.
pub struct Conn {
    pub stream: TcpStream,
    /// Bytes read past the last answer.
    buf: Vec<u8>,
}

impl Conn {
    pub fn open(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(WAIT)).unwrap();
        Conn {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn send(&mut self, bytes: impl AsRef<[u8]>) {
        self.stream.write_all(bytes.as_ref()).expect("send");
    }

    /// Sends what it can; an error once the server closed the connection.
    pub fn try_send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// How many bytes arrived that no answer has taken yet.
    pub fn unread(&self) -> usize {
        self.buf.len()
    }

    /// Sends a POST with a Content-Length body.
    pub fn post(&mut self, path: &str, body: &str) {
        self.send(format!(
            "POST {path} HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ));
    }

    /// POSTs `body` to `path` and reads the answer.
    pub fn round_trip(&mut self, path: &str, body: &str) -> Answer {
        self.post(path, body);
        self.answer()
    }

    /// Reads the next answer (a `100 Continue` is an answer of its own, without body);
    /// panics if none comes within [`WAIT`].
    pub fn answer(&mut self) -> Answer {
        self.try_answer().expect("an answer")
    }

    /// Reads the next answer; `None` if the connection closes first or none comes
    /// within the socket's read timeout.
    pub fn try_answer(&mut self) -> Option<Answer> {
        let head_end = loop {
            if let Some(at) = find(&self.buf, b"\r\n\r\n") {
                break at;
            }
            self.fill()?;
        };
        let head = String::from_utf8(self.buf[..head_end].to_vec()).expect("a UTF-8 head");
        self.buf.drain(..head_end + 4);
        let mut lines = head.split("\r\n");
        let status = lines.next()?.get(9..12)?.parse().ok()?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_lowercase(), v.trim().to_owned()))
            .collect();
        let length: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .map_or(0, |(_, v)| v.parse().expect("a Content-Length"));
        while self.buf.len() < length {
            self.fill()?;
        }
        let body = String::from_utf8(self.buf.drain(..length).collect()).expect("a UTF-8 body");
        Some(Answer {
            status,
            headers,
            body,
        })
    }

    fn fill(&mut self) -> Option<()> {
        let mut chunk = [0u8; 4096];
        match self.stream.read(&mut chunk) {
            Ok(0) | Err(_) => None,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Some(())
            }
        }
    }

    /// Whether the server closed the connection (EOF or reset) within `timeout`;
    /// `false` if it is still open then. Data the server sends is kept.
    pub fn closed_within(&mut self, timeout: Duration) -> bool {
        self.stream.set_read_timeout(Some(timeout)).unwrap();
        let mut chunk = [0u8; 4096];
        let closed = loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => break true,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    break false
                }
                Err(_) => break true,
            }
        };
        self.stream.set_read_timeout(Some(WAIT)).unwrap();
        closed
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
