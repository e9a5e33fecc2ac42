//! A minimal blocking HTTP/1.1 client over a TCP or Unix stream: one
//! request per connection (`Connection: close`), read to the end, every step
//! bounded by a timeout. Enough for herald's admin endpoint (`/status`,
//! `/metrics`, `POST /drain`) and for the lab's traffic client.
//!
//! What it must not do: keep connections, follow redirects, or panic on any
//! response bytes ([`parse_response`] returns an error for anything that is
//! not a complete HTTP/1.x response).
//!
//! Call it from a thread that is inside the right namespace
//! ([`crate::Namespace::run_in`]); the socket is created where the calling
//! thread is.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// The largest response read (a `/status` of thousands of announcements is
/// far below it).
const MAX_RESPONSE: usize = 16 * 1024 * 1024;

/// A parsed response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Why a request got no usable response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    #[error("connect to {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error("exchange with {addr}: {reason}")]
    Exchange { addr: String, reason: String },
    #[error("response from {addr} is not HTTP: {reason}")]
    Malformed { addr: String, reason: String },
}

/// Sends `METHOD PATH` (with `body`, if any) to `addr` and reads the whole
/// response. `timeout` bounds the connect and, separately, the whole
/// exchange after it.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
    timeout: Duration,
) -> Result<HttpResponse, HttpError> {
    let stream = TcpStream::connect_timeout(&addr, timeout).map_err(|e| HttpError::Connect {
        addr: addr.to_string(),
        reason: describe(&e),
    })?;
    let _ = stream.set_nodelay(true);
    exchange(
        TimedStream::Tcp(stream),
        &addr.to_string(),
        method,
        path,
        body,
        timeout,
    )
}

/// [`request`] on a Unix stream socket (herald's admin socket). No
/// namespace matters: the socket is a file.
pub fn request_unix(
    socket: &Path,
    method: &str,
    path: &str,
    body: &[u8],
    timeout: Duration,
) -> Result<HttpResponse, HttpError> {
    let addr = socket.display().to_string();
    let stream = UnixStream::connect(socket).map_err(|e| HttpError::Connect {
        addr: addr.clone(),
        reason: describe(&e),
    })?;
    exchange(
        TimedStream::Unix(stream),
        &addr,
        method,
        path,
        body,
        timeout,
    )
}

/// A stream whose reads and writes can be bounded in time.
enum TimedStream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl TimedStream {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> std::io::Result<()> {
        match self {
            TimedStream::Tcp(s) => s.set_read_timeout(timeout),
            TimedStream::Unix(s) => s.set_read_timeout(timeout),
        }
    }

    fn set_write_timeout(&self, timeout: Option<Duration>) -> std::io::Result<()> {
        match self {
            TimedStream::Tcp(s) => s.set_write_timeout(timeout),
            TimedStream::Unix(s) => s.set_write_timeout(timeout),
        }
    }
}

impl Read for TimedStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            TimedStream::Tcp(s) => s.read(buf),
            TimedStream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for TimedStream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            TimedStream::Tcp(s) => s.write(buf),
            TimedStream::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            TimedStream::Tcp(s) => s.flush(),
            TimedStream::Unix(s) => s.flush(),
        }
    }
}

fn exchange(
    mut stream: TimedStream,
    addr: &str,
    method: &str,
    path: &str,
    body: &[u8],
    timeout: Duration,
) -> Result<HttpResponse, HttpError> {
    let exchange = |reason: String| HttpError::Exchange {
        addr: addr.to_string(),
        reason,
    };
    let deadline = Instant::now() + timeout;
    stream
        .set_write_timeout(Some(timeout))
        .map_err(|e| exchange(describe(&e)))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nUser-Agent: herald-testnet\r\n"
    );
    if !body.is_empty() || method != "GET" {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    stream.write_all(&out).map_err(|e| exchange(describe(&e)))?;
    let mut received = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(exchange(format!("no complete response within {timeout:?}")));
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(|e| exchange(describe(&e)))?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                received.extend_from_slice(&buf[..n]);
                if received.len() > MAX_RESPONSE {
                    return Err(exchange(format!("response over {MAX_RESPONSE} bytes")));
                }
                // A server may keep the connection open despite
                // `Connection: close`; stop once the response is complete.
                if parse_response(&received).is_ok() {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(exchange(describe(&e))),
        }
    }
    parse_response(&received).map_err(|reason| HttpError::Malformed {
        addr: addr.to_string(),
        reason,
    })
}

/// Parses a complete HTTP/1.x response: status line, headers, then a body
/// framed by `Content-Length`, by `Transfer-Encoding: chunked`, or by the end
/// of the bytes. Never panics; anything incomplete or malformed is an error
/// saying why.
pub fn parse_response(bytes: &[u8]) -> Result<HttpResponse, String> {
    let head_end = find(bytes, b"\r\n\r\n").ok_or("no end of headers")?;
    let head = std::str::from_utf8(&bytes[..head_end]).map_err(|_| "headers are not UTF-8")?;
    let rest = &bytes[head_end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(format!("status line {status_line:?}"));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .filter(|s| (100..=999).contains(s))
        .ok_or_else(|| format!("status line {status_line:?}"))?;
    let mut length = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!("header line {line:?}"));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .parse::<usize>()
                    .map_err(|_| format!("Content-Length {value:?}"))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        }
    }
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(length) = length {
        if rest.len() < length {
            return Err(format!("body has {} of {length} bytes", rest.len()));
        }
        rest[..length].to_vec()
    } else {
        rest.to_vec()
    };
    Ok(HttpResponse { status, body })
}

/// Decodes a chunked body (RFC 9112 §7.1); trailers are ignored.
fn dechunk(mut bytes: &[u8]) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let line_end = find(bytes, b"\r\n").ok_or("chunk size line incomplete")?;
        let line = std::str::from_utf8(&bytes[..line_end]).map_err(|_| "chunk size not UTF-8")?;
        let size_text = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("chunk size {size_text:?}"))?;
        bytes = &bytes[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        if bytes.len() < size.saturating_add(2) {
            return Err("chunk incomplete".into());
        }
        body.extend_from_slice(&bytes[..size]);
        bytes = &bytes[size + 2..];
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// An io::Error without the "(os error N)" suffix; a socket timeout (which
/// Linux reports as EAGAIN) reads "timed out".
pub(crate) fn describe(error: &std::io::Error) -> String {
    if matches!(
        error.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    ) {
        return "timed out".into();
    }
    let text = error.to_string();
    match text.find(" (os error") {
        Some(end) => text[..end].to_lowercase(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_with_content_length_yields_exactly_that_body() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nn1\nextra").unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"n1\n");
    }

    #[test]
    fn a_chunked_response_is_reassembled() {
        let r = parse_response(
            b"HTTP/1.1 202 Accepted\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.status, 202);
        assert_eq!(r.text(), "abcde");
    }

    #[test]
    fn a_body_without_framing_runs_to_the_end() {
        let r = parse_response(b"HTTP/1.0 503 Service Unavailable\r\n\r\ndown").unwrap();
        assert_eq!((r.status, r.text().as_str()), (503, "down"));
    }

    #[test]
    fn incomplete_or_foreign_bytes_are_errors() {
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-").is_err());
        assert!(parse_response(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
        assert!(parse_response(b"HTTP/1.1 abc OK\r\n\r\n").is_err());
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n").is_err()
        );
    }

    #[test]
    fn the_parser_never_panics_on_truncated_or_random_input() {
        let full = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 4\r\n\r\n4\r\nwxyz\r\n0\r\n\r\n";
        for end in 0..=full.len() {
            let _ = parse_response(&full[..end]);
        }
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..2000 {
            let len = (state % 96) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    // Mostly bytes that matter to the parser.
                    const ALPHABET: &[u8] = b"HTP/1.0 2\r\n:;-chunkedCL9af";
                    ALPHABET[(state % ALPHABET.len() as u64) as usize]
                })
                .collect();
            let _ = parse_response(&bytes);
        }
    }
}
