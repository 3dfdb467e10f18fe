//! Just enough HTTP/1.1 for the restapi: read one request with a bounded head and body,
//! write one answer, close.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;

/// The longest request head (request line and headers) accepted.
const MAX_HEAD: usize = 16 * 1024;

/// A request as far as the restapi cares.
pub struct Request {
    pub method: String,
    pub path: String,
    pub body: Vec<u8>,
}

/// An answer: status code and plain-text body.
pub struct Answer {
    pub status: u16,
    pub body: String,
}

impl Answer {
    pub fn new(status: u16, body: impl Into<String>) -> Self {
        Answer {
            status,
            body: body.into(),
        }
    }
}

/// Reads one request; `Err(answer)` for a request that gets an error answer unread.
pub fn read_request(stream: &TcpStream, max_body: usize) -> Result<Request, Answer> {
    let mut reader = BufReader::new(stream.take(MAX_HEAD as u64 + max_body as u64));
    let mut head = Vec::new();
    let mut line = String::new();
    let mut content_length = None;
    let mut first = None;
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => return Err(Answer::new(400, "incomplete request head")),
            Ok(_) => {}
            Err(e) => return Err(Answer::new(400, format!("cannot read the request: {e}"))),
        }
        head.push(line.len());
        if head.iter().sum::<usize>() > MAX_HEAD {
            return Err(Answer::new(400, "request head over 16 KiB"));
        }
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            break;
        }
        if first.is_none() {
            first = Some(trimmed.to_owned());
        } else if let Some((name, value)) = trimmed.split_once(':') {
            if name.trim().eq_ignore_ascii_case("content-length") {
                let len: usize = value.trim().parse().map_err(|_| {
                    Answer::new(400, format!("bad Content-Length '{}'", value.trim()))
                })?;
                content_length = Some(len);
            }
        }
    }
    let first = first.unwrap_or_default();
    let mut parts = first.split_whitespace();
    let (method, path) = match (parts.next(), parts.next()) {
        (Some(m), Some(p)) => (m.to_owned(), p.to_owned()),
        _ => return Err(Answer::new(400, format!("bad request line '{first}'"))),
    };
    let len = content_length.unwrap_or(0);
    if len > max_body {
        return Err(Answer::new(
            400,
            format!("body of {len} bytes is over the limit of {max_body} bytes"),
        ));
    }
    let mut body = vec![0u8; len];
    reader
        .read_exact(&mut body)
        .map_err(|e| Answer::new(400, format!("body shorter than its Content-Length: {e}")))?;
    Ok(Request { method, path, body })
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Error",
    }
}

/// Writes `answer` and closes the write side.
pub fn write_answer(mut stream: &TcpStream, answer: &Answer) -> io::Result<()> {
    let text = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        answer.status,
        reason(answer.status),
        answer.body.len(),
        answer.body
    );
    stream.write_all(text.as_bytes())?;
    stream.flush()?;
    stream.shutdown(std::net::Shutdown::Write)
}
