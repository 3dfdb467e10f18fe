//! Just enough HTTP/1.1 to talk to etcd's JSON gateway: POST a JSON body on a kept-alive
//! connection and read the answer, whole (`Content-Length` or chunked) or as a stream of
//! lines (a watch: chunked, one JSON object per line, for as long as it lasts).
//!
//! Reads go through one buffer the connection owns, so a read that times out (the
//! watch polls its close signal that way) loses nothing: the next read goes on where it
//! stopped.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// The longest answer head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// How much is read from the socket at once.
const READ_SIZE: usize = 64 * 1024;

/// Where the answer's body stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    /// No answer is being read.
    Idle,
    /// This many bytes of a `Content-Length` body are left.
    Length(usize),
    /// Before a chunk's size line.
    ChunkSize,
    /// This many bytes of the current chunk are left.
    ChunkData(usize),
    /// The CRLF after a chunk's data.
    ChunkEnd,
    /// The trailer lines after the last chunk.
    Trailers,
    /// The body is complete.
    Done,
}

/// One HTTP/1.1 connection to an etcd endpoint.
pub struct Connection {
    stream: TcpStream,
    /// `host:port`, for the `Host` header.
    authority: String,
    buf: Vec<u8>,
    /// How much of `buf` has been consumed.
    pos: usize,
    body: Body,
}

/// The status and head of an answer; its body is read with [`Connection::read_body`]
/// or [`Connection::read_line`].
#[derive(Debug)]
pub struct Head {
    /// The HTTP status code.
    pub status: u16,
}

impl Connection {
    /// Connects to `authority` (`host:port`) within `timeout`.
    pub fn connect(authority: &str, timeout: Duration) -> io::Result<Connection> {
        let addrs: Vec<SocketAddr> = authority.to_socket_addrs()?.collect();
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, timeout) {
                Ok(stream) => {
                    stream.set_nodelay(true)?;
                    socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive())?;
                    return Ok(Connection {
                        stream,
                        authority: authority.to_owned(),
                        buf: Vec::with_capacity(READ_SIZE),
                        pos: 0,
                        body: Body::Idle,
                    });
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Sets how long one read may wait (`None`: for ever).
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.stream.set_read_timeout(timeout)
    }

    /// Whether the previous answer was read to its end, so the connection can carry
    /// another request.
    pub fn is_reusable(&self) -> bool {
        matches!(self.body, Body::Idle | Body::Done)
    }

    /// Sends `POST path` with a JSON `body` and reads the answer's head.
    pub fn post(&mut self, path: &str, token: Option<&str>, body: &[u8]) -> io::Result<Head> {
        let auth = token
            .map(|t| format!("Authorization: {t}\r\n"))
            .unwrap_or_default();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\n\r\n",
            self.authority,
            body.len()
        );
        let mut request = head.into_bytes();
        request.extend_from_slice(body);
        self.stream.write_all(&request)?;
        self.read_head()
    }

    fn read_head(&mut self) -> io::Result<Head> {
        self.compact();
        let end = loop {
            if let Some(i) = find(&self.buf[self.pos..], b"\r\n\r\n") {
                break self.pos + i + 4;
            }
            if self.buf.len() - self.pos > MAX_HEAD {
                return Err(bad("answer head over 64 KiB"));
            }
            self.fill()?;
        };
        let head = String::from_utf8_lossy(&self.buf[self.pos..end]).into_owned();
        self.pos = end;
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad(&format!("bad status line '{status_line}'")))?;
        self.body = Body::Length(0);
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let (name, value) = (name.trim(), value.trim());
            if name.eq_ignore_ascii_case("content-length") {
                let len = value
                    .parse()
                    .map_err(|_| bad(&format!("bad Content-Length '{value}'")))?;
                self.body = Body::Length(len);
            } else if name.eq_ignore_ascii_case("transfer-encoding")
                && value.eq_ignore_ascii_case("chunked")
            {
                self.body = Body::ChunkSize;
            }
        }
        Ok(Head { status })
    }

    /// Reads the whole body of the answer.
    pub fn read_body(&mut self) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        while !self.decode(&mut out)? {
            self.fill()?;
        }
        Ok(out)
    }

    /// Reads the next line of a streaming body (without its newline): `Ok(None)` when
    /// the body ended. A read timeout comes back as an error of kind `WouldBlock` or
    /// `TimedOut`, and nothing is lost: call again.
    pub fn read_line(&mut self, pending: &mut Vec<u8>) -> io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(i) = pending.iter().position(|&b| b == b'\n') {
                let rest = pending.split_off(i + 1);
                let mut line = std::mem::replace(pending, rest);
                line.pop();
                return Ok(Some(line));
            }
            let done = self.decode(pending)?;
            if pending.contains(&b'\n') {
                continue;
            }
            if done {
                if pending.is_empty() {
                    return Ok(None);
                }
                return Ok(Some(std::mem::take(pending)));
            }
            self.fill()?;
        }
    }

    /// Moves what the buffer holds of the body into `out`; true when the body is done.
    fn decode(&mut self, out: &mut Vec<u8>) -> io::Result<bool> {
        loop {
            let avail = &self.buf[self.pos..];
            match self.body {
                Body::Idle | Body::Done => return Ok(true),
                Body::Length(0) => {
                    self.body = Body::Done;
                    return Ok(true);
                }
                Body::Length(n) | Body::ChunkData(n) => {
                    if avail.is_empty() {
                        return Ok(false);
                    }
                    let take = n.min(avail.len());
                    out.extend_from_slice(&avail[..take]);
                    self.pos += take;
                    self.body = match self.body {
                        Body::Length(_) => Body::Length(n - take),
                        _ if take == n => Body::ChunkEnd,
                        _ => Body::ChunkData(n - take),
                    };
                }
                Body::ChunkSize => {
                    let Some(i) = find(avail, b"\r\n") else {
                        return Ok(false);
                    };
                    let line = String::from_utf8_lossy(&avail[..i]);
                    let size = line.split(';').next().unwrap_or_default().trim();
                    let size = usize::from_str_radix(size, 16)
                        .map_err(|_| bad(&format!("bad chunk size '{size}'")))?;
                    self.pos += i + 2;
                    self.body = if size == 0 {
                        Body::Trailers
                    } else {
                        Body::ChunkData(size)
                    };
                }
                Body::ChunkEnd => {
                    if avail.len() < 2 {
                        return Ok(false);
                    }
                    self.pos += 2;
                    self.body = Body::ChunkSize;
                }
                Body::Trailers => {
                    let Some(i) = find(avail, b"\r\n") else {
                        return Ok(false);
                    };
                    self.pos += i + 2;
                    if i == 0 {
                        self.body = Body::Done;
                        return Ok(true);
                    }
                }
            }
        }
    }

    /// Drops the consumed part of the buffer.
    fn compact(&mut self) {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
    }

    /// Reads more from the socket; an end of stream is an error (`UnexpectedEof`).
    fn fill(&mut self) -> io::Result<()> {
        if self.pos > READ_SIZE {
            self.compact();
        }
        let len = self.buf.len();
        self.buf.resize(len + READ_SIZE, 0);
        let read = loop {
            // A signal (SIGSTOP/SIGCONT of the process) interrupts a read: read again.
            match self.stream.read(&mut self.buf[len..]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        self.buf.truncate(len + *read.as_ref().unwrap_or(&0));
        match read? {
            0 => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed by etcd",
            )),
            _ => Ok(()),
        }
    }
}

/// A connection whose peer vanished without closing it (a network gone, a host
/// powered off) fails after about 5 + 3 x 2 seconds of silence instead of never: a
/// watch then reconnects and resyncs.
fn keepalive() -> socket2::TcpKeepalive {
    socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(5))
        .with_interval(Duration::from_secs(2))
        .with_retries(3)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

/// Whether `e` is a read timeout rather than a failure.
pub fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;
    use std::net::TcpListener;
    use std::sync::mpsc;

    /// A server that reads one request head, then writes each piece it is sent.
    fn server() -> (String, mpsc::Sender<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (tx, rx) = mpsc::channel::<Vec<u8>>();
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut reader = io::BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap() > 2 {
                line.clear();
            }
            for piece in rx {
                stream.write_all(&piece).unwrap();
            }
        });
        (addr, tx)
    }

    #[test]
    fn a_chunked_stream_is_read_line_by_line_across_chunks_and_timeouts() {
        let (addr, tx) = server();
        let mut conn = Connection::connect(&addr, Duration::from_secs(5)).unwrap();
        tx.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec())
            .unwrap();
        assert_eq!(conn.post("/v3/watch", None, b"{}").unwrap().status, 200);
        conn.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let mut pending = Vec::new();
        tx.send(b"8\r\n{\"a\":1}\n\r\n4\r\n{\"b\"".to_vec())
            .unwrap();
        assert_eq!(conn.read_line(&mut pending).unwrap().unwrap(), b"{\"a\":1}");
        // Half a line, then nothing: a timeout that loses nothing.
        let err = conn.read_line(&mut pending).unwrap_err();
        assert!(is_timeout(&err), "{err}");
        tx.send(b"\r\n4\r\n:2}\n\r\n0\r\n\r\n".to_vec()).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(conn.read_line(&mut pending).unwrap().unwrap(), b"{\"b\":2}");
        assert_eq!(conn.read_line(&mut pending).unwrap(), None);
        assert!(conn.is_reusable());
    }

    #[test]
    fn a_content_length_body_is_read_whole() {
        let (addr, tx) = server();
        let mut conn = Connection::connect(&addr, Duration::from_secs(5)).unwrap();
        tx.send(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 7\r\n\r\n{\"e\":".to_vec())
            .unwrap();
        tx.send(b"1}".to_vec()).unwrap();
        assert_eq!(conn.post("/v3/kv/range", None, b"{}").unwrap().status, 400);
        assert_eq!(conn.read_body().unwrap(), b"{\"e\":1}");
    }
}
