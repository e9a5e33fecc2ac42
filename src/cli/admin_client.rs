//! A tiny HTTP/1.1 client for the agent's admin socket (`herald status`,
//! `herald drain`): one request, `Connection: close`, read to the end,
//! bounded in time. The response parser never panics on any input.

use std::io;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// The largest response accepted (a status report of thousands of
/// announcements is well under this).
const MAX_RESPONSE: u64 = 64 * 1024 * 1024;

/// Why the admin endpoint gave no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing accepted the connection: the agent is not running there.
    #[error("nothing answers at {addr} ({})", describe(source))]
    Connect {
        addr: String,
        #[source]
        source: io::Error,
    },
    #[error("{addr} did not answer within {}", humantime::format_duration(*timeout))]
    Timeout { addr: String, timeout: Duration },
    #[error("reading from {addr} failed: {source}")]
    Io {
        addr: String,
        #[source]
        source: io::Error,
    },
    #[error("{addr} sent something that is not an HTTP response: {reason}")]
    Malformed { addr: String, reason: String },
}

/// An io::Error in the words `ip`/`curl` users expect, without "(os error N)".
fn describe(error: &io::Error) -> String {
    match error.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
        io::ErrorKind::NotFound => "no such socket".to_string(),
        io::ErrorKind::PermissionDenied => {
            "permission denied: only herald's own user and root may use it".to_string()
        }
        io::ErrorKind::TimedOut => "timed out".to_string(),
        io::ErrorKind::AddrNotAvailable => "address not available".to_string(),
        _ => {
            let text = error.to_string();
            match text.find(" (os error") {
                Some(end) => text[..end].to_lowercase(),
                None => text,
            }
        }
    }
}

/// A parsed response.
#[derive(Debug, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

/// Sends `METHOD path` with an empty body on the admin socket at `socket`,
/// all of it within `timeout`.
pub async fn request(
    socket: &Path,
    method: &str,
    path: &str,
    timeout: Duration,
) -> Result<HttpResponse, ClientError> {
    let addr = socket.display().to_string();
    match tokio::time::timeout(timeout, exchange(socket, &addr, method, path)).await {
        Ok(result) => result,
        Err(_elapsed) => Err(ClientError::Timeout { addr, timeout }),
    }
}

async fn exchange(
    socket: &Path,
    addr: &str,
    method: &str,
    path: &str,
) -> Result<HttpResponse, ClientError> {
    let mut stream = UnixStream::connect(socket)
        .await
        .map_err(|source| ClientError::Connect {
            addr: addr.to_string(),
            source,
        })?;
    let io_error = |source| ClientError::Io {
        addr: addr.to_string(),
        source,
    };
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: herald\r\nAccept: application/json\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(io_error)?;
    let mut raw = Vec::new();
    (&mut stream)
        .take(MAX_RESPONSE)
        .read_to_end(&mut raw)
        .await
        .map_err(io_error)?;
    parse_response(&raw).map_err(|reason| ClientError::Malformed {
        addr: addr.to_string(),
        reason,
    })
}

/// Parses a complete HTTP/1.1 response read until the server closed.
pub fn parse_response(raw: &[u8]) -> Result<HttpResponse, String> {
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of headers")?;
    let head = std::str::from_utf8(&raw[..head_end]).map_err(|_| "headers are not UTF-8")?;
    let rest = &raw[head_end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(format!("status line {status_line:?}"));
    }
    let status: u16 = parts
        .next()
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("status line {status_line:?}"))?;
    let mut content_type = None;
    let mut content_length = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!("header line {line:?}"));
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-type" => content_type = Some(value.to_string()),
            "content-length" => {
                content_length = Some(
                    value
                        .parse::<usize>()
                        .map_err(|_| format!("content-length {value:?}"))?,
                )
            }
            "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
            _ => {}
        }
    }
    let body = if chunked {
        decode_chunked(rest)?
    } else if let Some(length) = content_length {
        rest.get(..length)
            .ok_or_else(|| format!("body is {} bytes, expected {length}", rest.len()))?
            .to_vec()
    } else {
        rest.to_vec()
    };
    Ok(HttpResponse {
        status,
        content_type,
        body,
    })
}

/// RFC 9112 §7.1 chunked transfer coding (extensions and trailers ignored).
fn decode_chunked(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("chunk size line not terminated")?;
        let line = std::str::from_utf8(&data[..line_end]).map_err(|_| "chunk size not UTF-8")?;
        let size_text = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("chunk size {size_text:?}"))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        let chunk = data
            .get(..size)
            .ok_or("chunk shorter than its size".to_string())?;
        body.extend_from_slice(chunk);
        data = data.get(size + 2..).ok_or("chunk not terminated")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_with_content_length_is_parsed() {
        let raw =
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(
            parse_response(raw).unwrap(),
            HttpResponse {
                status: 200,
                content_type: Some("application/json".to_string()),
                body: b"{}".to_vec(),
            }
        );
    }

    #[test]
    fn a_chunked_response_is_reassembled() {
        let raw = b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n\
                    4\r\nnot \r\n5;x=y\r\nready\r\n0\r\n\r\n";
        let response = parse_response(raw).unwrap();
        assert_eq!(response.status, 503);
        assert_eq!(response.body, b"not ready");
    }

    #[test]
    fn garbage_and_every_truncation_give_errors_not_panics() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n";
        for cut in 0..raw.len() {
            let _ = parse_response(&raw[..cut]);
        }
        assert!(parse_response(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
        assert!(parse_response(b"HTTP/1.1 abc\r\n\r\n").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nabc").is_err());
        // Random bodies after a valid chunked head reach the chunk decoder.
        let head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        let alphabet = b"0123456789abcdef;\r\n";
        let mut state = 0x2545_f491_u32;
        for _ in 0..2000 {
            let mut bytes = head.to_vec();
            bytes.extend((0..48).map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                alphabet[state as usize % alphabet.len()]
            }));
            let _ = parse_response(&bytes);
        }
    }

    #[tokio::test]
    async fn a_missing_or_dead_socket_is_reported_as_nothing_answering() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.sock");
        let error = request(&path, "GET", "/status", Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("nothing answers at {} (no such socket)", path.display())
        );
        // A socket file left by a process that is gone.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let error = request(&path, "GET", "/status", Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("nothing answers at {} (connection refused)", path.display())
        );
    }
}
