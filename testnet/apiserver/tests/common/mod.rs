//! Test helpers: a small blocking HTTP/1.1 client (whole responses and chunked watch streams,
//! telling a clean end from a cut connection), bounded polling, and kubectl invocation.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Bound for every blocking read in tests: nothing waits longer.
pub const READ_BOUND: Duration = Duration::from_secs(20);

pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, READ_BOUND)?;
    stream.set_read_timeout(Some(READ_BOUND))?;
    Ok(stream)
}

fn send_head(
    stream: &mut TcpStream,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<()> {
    send_head_with(stream, method, path, headers, body, true)
}

fn send_head_with(
    stream: &mut TcpStream,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    close: bool,
) -> std::io::Result<()> {
    let connection = if close { "close" } else { "keep-alive" };
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: standin\r\nConnection: {connection}\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)
}

fn read_head(reader: &mut BufReader<TcpStream>) -> std::io::Result<(u16, Vec<(String, String)>)> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    Ok((status, headers))
}

/// How a chunked body ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The terminating zero-length chunk arrived.
    Clean,
    /// The connection closed before it.
    Cut,
}

/// Reads one chunk; `Ok(None)` at the terminating chunk.
fn read_chunk(reader: &mut BufReader<TcpStream>) -> std::io::Result<Option<Vec<u8>>> {
    let mut size_line = String::new();
    if reader.read_line(&mut size_line)? == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "eof",
        ));
    }
    let size = usize::from_str_radix(size_line.trim(), 16)
        .map_err(|_| std::io::Error::other(format!("bad chunk size {size_line:?}")))?;
    let mut data = vec![0; size + 2];
    reader.read_exact(&mut data)?;
    data.truncate(size);
    Ok((size > 0).then_some(data))
}

/// One request with `Connection: close`; reads the whole response.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Resp> {
    let mut stream = connect(addr)?;
    send_head(&mut stream, method, path, headers, body)?;
    let mut reader = BufReader::new(stream);
    let (status, headers) = read_head(&mut reader)?;
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let mut body = Vec::new();
    if chunked {
        while let Some(chunk) = read_chunk(&mut reader)? {
            body.extend(chunk);
        }
    } else {
        reader.read_to_end(&mut body)?;
    }
    Ok(Resp {
        status,
        headers,
        body,
    })
}

pub fn get(addr: SocketAddr, path: &str) -> Resp {
    request(addr, "GET", path, &[], b"").expect("GET")
}

pub fn send_json(
    addr: SocketAddr,
    method: &str,
    path: &str,
    content_type: &str,
    body: &Value,
) -> Resp {
    let bytes = serde_json::to_vec(body).unwrap();
    request(
        addr,
        method,
        path,
        &[("Content-Type", content_type)],
        &bytes,
    )
    .expect(method)
}

pub fn post(addr: SocketAddr, path: &str, body: &Value) -> Resp {
    send_json(addr, "POST", path, "application/json", body)
}

/// An open watch: events one by one, then how the stream ended.
pub struct Watch {
    pub status: u16,
    reader: BufReader<TcpStream>,
    pending: Vec<u8>,
    pub end: Option<End>,
}

impl Watch {
    pub fn open(addr: SocketAddr, path: &str) -> Self {
        Self::open_with(addr, path, true)
    }

    /// Opens a watch on a connection that stays open for [`Watch::get_after_end`].
    pub fn open_keep_alive(addr: SocketAddr, path: &str) -> Self {
        Self::open_with(addr, path, false)
    }

    /// After the stream ended cleanly, sends a GET on the same connection; returns its status.
    pub fn get_after_end(&mut self, path: &str) -> u16 {
        assert_eq!(self.end, Some(End::Clean));
        send_head_with(self.reader.get_mut(), "GET", path, &[], b"", true).expect("send");
        read_head(&mut self.reader).expect("response head").0
    }

    fn open_with(addr: SocketAddr, path: &str, close: bool) -> Self {
        let mut stream = connect(addr).expect("connect");
        send_head_with(&mut stream, "GET", path, &[], b"", close).expect("send");
        let mut reader = BufReader::new(stream);
        let (status, _) = read_head(&mut reader).expect("response head");
        Self {
            status,
            reader,
            pending: Vec::new(),
            end: None,
        }
    }

    /// The next event, or None when the stream ended (see `end`). Panics after READ_BOUND.
    pub fn next(&mut self) -> Option<Value> {
        loop {
            if let Some(nl) = self.pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=nl).collect();
                return Some(serde_json::from_slice(&line).expect("event is JSON"));
            }
            if self.end.is_some() {
                return None;
            }
            match read_chunk(&mut self.reader) {
                Ok(Some(data)) => self.pending.extend(data),
                Ok(None) => self.end = Some(End::Clean),
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    panic!("no watch event within {READ_BOUND:?}")
                }
                Err(_) => self.end = Some(End::Cut),
            }
        }
    }

    /// The next event that is not a bookmark.
    pub fn next_change(&mut self) -> Option<Value> {
        loop {
            let e = self.next()?;
            if e["type"] != "BOOKMARK" {
                return Some(e);
            }
        }
    }

    /// Reads to the end of the stream; returns how it ended and the events on the way.
    pub fn drain(&mut self) -> (End, Vec<Value>) {
        let mut events = Vec::new();
        while let Some(e) = self.next() {
            events.push(e);
        }
        (self.end.unwrap_or(End::Cut), events)
    }
}

/// Polls `probe` every 20 ms until it returns Some, for at most `bound`.
pub fn eventually<T>(bound: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(
            start.elapsed() < bound,
            "condition not met within {bound:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn service(name: &str) -> Value {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": name}},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]},
    })
}

/// kubectl at /usr/bin/kubectl, or None (a skip outside CI, a failure in CI).
pub fn kubectl_or_skip() -> Option<&'static str> {
    let path = "/usr/bin/kubectl";
    if Path::new(path).exists() {
        return Some(path);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "kubectl is missing at {path} and CI=true"
    );
    eprintln!("skipping: kubectl is not installed at {path}");
    None
}
