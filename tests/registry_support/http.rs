//! Reading one HTTP/1.1 message head off a socket, shared by the token server and the proxy.
//!
//! Only the head is parsed (with httparse); bodies are the caller's business, so a fixture can
//! forward or cut them byte by byte.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Longest head the fixtures accept; registry clients send a few hundred bytes.
const MAX_HEAD: usize = 64 * 1024;

/// How long a fixture waits on a silent peer before it gives the connection up, so that no
/// fixture thread outlives a test by more than this.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// The head of a request: request line and headers in the order they came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub method: String,
    /// The request target as sent, query included (`/v2/x/blobs/sha256:...`).
    pub target: String,
    pub headers: Vec<(String, String)>,
}

/// The head of a response: status code and headers in the order they came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
}

/// The first value of header `name` (case-insensitive).
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Reads until a complete request head is in `buf`; returns it and how many bytes of `buf` it
/// took (the rest is the start of the body). `Ok(None)` when the peer closed before sending
/// anything.
pub fn read_request_head(
    stream: &mut impl Read,
    buf: &mut Vec<u8>,
) -> io::Result<Option<(RequestHead, usize)>> {
    read_head(stream, buf, |bytes| {
        let mut headers = [httparse::EMPTY_HEADER; 128];
        let mut req = httparse::Request::new(&mut headers);
        Ok(match req.parse(bytes).map_err(invalid)? {
            httparse::Status::Partial => None,
            httparse::Status::Complete(len) => Some((
                RequestHead {
                    method: req.method.unwrap_or_default().to_owned(),
                    target: req.path.unwrap_or_default().to_owned(),
                    headers: owned(req.headers),
                },
                len,
            )),
        })
    })
}

/// Reads until a complete response head is in `buf`; as [`read_request_head`].
pub fn read_response_head(
    stream: &mut impl Read,
    buf: &mut Vec<u8>,
) -> io::Result<Option<(ResponseHead, usize)>> {
    read_head(stream, buf, |bytes| {
        let mut headers = [httparse::EMPTY_HEADER; 128];
        let mut resp = httparse::Response::new(&mut headers);
        Ok(match resp.parse(bytes).map_err(invalid)? {
            httparse::Status::Partial => None,
            httparse::Status::Complete(len) => Some((
                ResponseHead {
                    status: resp.code.unwrap_or_default(),
                    reason: resp.reason.unwrap_or_default().to_owned(),
                    headers: owned(resp.headers),
                },
                len,
            )),
        })
    })
}

fn read_head<T>(
    stream: &mut impl Read,
    buf: &mut Vec<u8>,
    parse: impl Fn(&[u8]) -> io::Result<Option<(T, usize)>>,
) -> io::Result<Option<(T, usize)>> {
    let mut chunk = [0u8; 8192];
    loop {
        if !buf.is_empty() {
            if let Some(done) = parse(buf)? {
                return Ok(Some(done));
            }
        }
        if buf.len() > MAX_HEAD {
            return Err(invalid("head longer than 64 KiB"));
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "peer closed inside a message head",
                ))
            };
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn owned(headers: &[httparse::Header<'_>]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|h| {
            (
                h.name.to_owned(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect()
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

/// Writes a head: `first_line` (request or status line) and `headers`, then the blank line.
pub fn write_head(
    stream: &mut impl Write,
    first_line: &str,
    headers: &[(String, String)],
) -> io::Result<()> {
    let mut head = format!("{first_line}\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())
}

/// Sends `GET path` to `addr` on a fresh connection and returns the response head, or the
/// error that stopped it; the readiness probe of the registry.
pub fn probe(addr: SocketAddr, path: &str) -> io::Result<ResponseHead> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    write_head(
        &mut stream,
        &format!("GET {path} HTTP/1.1"),
        &[
            ("Host".into(), addr.to_string()),
            ("Connection".into(), "close".into()),
        ],
    )?;
    let mut buf = Vec::new();
    read_response_head(&mut stream, &mut buf)?
        .map(|(head, _)| head)
        .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "closed without answer"))
}

/// A listener on 127.0.0.1 with a free port whose accept thread hands each connection to
/// `handle` on a thread of its own (a client holding its socket open blocks nobody else). Drop
/// stops accepting and joins the accept thread; connection threads end with their sockets, at
/// the latest after [`IO_TIMEOUT`].
#[derive(Debug)]
pub struct Listener {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Listener {
    /// Binds and starts accepting; panics when it cannot bind (the test fails).
    pub fn start(handle: impl Fn(TcpStream) + Send + Sync + 'static) -> Listener {
        let listener = TcpListener::bind("127.0.0.1:0").expect("cannot bind on 127.0.0.1");
        let addr = listener.local_addr().expect("listener address");
        let stop = Arc::new(AtomicBool::new(false));
        let handle = Arc::new(handle);
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(stream) = stream else { continue };
                    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
                    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
                    let handle = handle.clone();
                    std::thread::spawn(move || handle(stream));
                }
            })
        };
        Listener {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the blocking accept so the thread sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
