//! [`CutProxy`]: an HTTP/1.1 proxy on 127.0.0.1 in front of a registry that records what clients
//! send and can cut one blob download short, to test resumed pulls.
//!
//! One request a connection: the proxy reads the request head, records it, forwards it upstream
//! with `Connection: close` (and answers the client with `Connection: close`, so it opens a new
//! connection for its next request), then pipes the body each way as it comes, whatever its
//! framing. Interim `1xx` answers (`Expect: 100-continue`) go through as they are. `Host` goes
//! through unchanged, so the registry's `Location` headers point back at the proxy and a client
//! stays behind it (a token server's realm is not proxied).

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};

use super::http::{self, Listener, IO_TIMEOUT};

/// One request a client sent through the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxiedRequest {
    pub method: String,
    /// The request target as sent, query included.
    pub target: String,
    /// The client's headers, in order, before the proxy touched `Connection`.
    pub headers: Vec<(String, String)>,
    /// The final status the registry answered; `None` if it gave none.
    pub status: Option<u16>,
    /// `Some(n)` if the proxy cut this response after `n` body bytes.
    pub cut_after: Option<u64>,
}

impl ProxiedRequest {
    /// The first value of header `name` (case-insensitive), e.g. `header("Range")`.
    pub fn header(&self, name: &str) -> Option<&str> {
        http::header(&self.headers, name)
    }

    /// The target without its query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }

    /// A `GET` of a blob, the only kind of request the proxy cuts.
    pub fn is_blob_get(&self) -> bool {
        self.method == "GET" && self.path().contains("/blobs/")
    }
}

/// A running proxy; stops accepting on drop.
#[derive(Debug)]
pub struct CutProxy {
    listener: Listener,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    upstream: SocketAddr,
    requests: Mutex<Vec<ProxiedRequest>>,
    /// Body bytes after which the next blob download is cut, while armed.
    cut: Mutex<Option<u64>>,
}

impl CutProxy {
    /// A proxy that forwards to `upstream` (`127.0.0.1:PORT`, e.g. [`super::RegistryServer::host`]).
    ///
    /// Panics on an address that does not parse: a fixture misuse fails the test.
    pub fn start(upstream: &str) -> CutProxy {
        let upstream: SocketAddr = upstream
            .parse()
            .unwrap_or_else(|e| panic!("upstream {upstream:?} is not IP:PORT: {e}"));
        let shared = Arc::new(Shared {
            upstream,
            requests: Mutex::new(Vec::new()),
            cut: Mutex::new(None),
        });
        let listener = {
            let shared = shared.clone();
            Listener::start(move |client| {
                let _ = serve(&shared, client);
            })
        };
        CutProxy { listener, shared }
    }

    /// `127.0.0.1:PORT` of the proxy, to use as the registry host.
    pub fn host(&self) -> String {
        self.listener.addr().to_string()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.listener.addr())
    }

    /// Arms a cut: the next 2xx answer to a `GET` whose path holds `/blobs/` and whose body is
    /// longer than `after_body_bytes` (by `Content-Length`) gets its head and that many body bytes,
    /// then the connection closes. Once: the answers after it go through whole. Arming again
    /// replaces a cut not yet made.
    pub fn cut_next_blob_get(&self, after_body_bytes: u64) {
        *self.shared.cut.lock().unwrap() = Some(after_body_bytes);
    }

    /// Whether a cut is armed and not yet made.
    pub fn cut_pending(&self) -> bool {
        self.shared.cut.lock().unwrap().is_some()
    }

    /// Every request clients sent so far, oldest first, with its status once answered.
    pub fn requests(&self) -> Vec<ProxiedRequest> {
        self.shared.requests.lock().unwrap().clone()
    }
}

/// Hop-by-hop headers the proxy replaces with its own `Connection: close`.
fn is_connection_header(name: &str) -> bool {
    ["Connection", "Keep-Alive", "Proxy-Connection"]
        .iter()
        .any(|h| h.eq_ignore_ascii_case(name))
}

fn with_close(headers: &[(String, String)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = headers
        .iter()
        .filter(|(n, _)| !is_connection_header(n))
        .cloned()
        .collect();
    out.push(("Connection".to_owned(), "close".to_owned()));
    out
}

fn serve(shared: &Shared, mut client: TcpStream) -> io::Result<()> {
    let mut buf = Vec::new();
    let Some((head, head_len)) = http::read_request_head(&mut client, &mut buf)? else {
        return Ok(());
    };
    let index = {
        let mut requests = shared.requests.lock().unwrap();
        requests.push(ProxiedRequest {
            method: head.method.clone(),
            target: head.target.clone(),
            headers: head.headers.clone(),
            status: None,
            cut_after: None,
        });
        requests.len() - 1
    };

    let mut upstream = match TcpStream::connect(shared.upstream) {
        Ok(s) => s,
        Err(e) => {
            let body = format!("proxy: upstream {}: {e}", shared.upstream);
            http::write_head(
                &mut client,
                "HTTP/1.1 502 Bad Gateway",
                &[
                    ("Content-Length".to_owned(), body.len().to_string()),
                    ("Connection".to_owned(), "close".to_owned()),
                ],
            )?;
            return client.write_all(body.as_bytes());
        }
    };
    upstream.set_read_timeout(Some(IO_TIMEOUT))?;
    upstream.set_write_timeout(Some(IO_TIMEOUT))?;
    http::write_head(
        &mut upstream,
        &format!("{} {} HTTP/1.1", head.method, head.target),
        &with_close(&head.headers),
    )?;
    upstream.write_all(&buf[head_len..])?;

    // The rest of the request body goes through as it comes; the pump ends when the client's
    // socket is shut down below.
    let pump = {
        let mut from = client.try_clone()?;
        let mut to = upstream.try_clone()?;
        std::thread::spawn(move || {
            let _ = io::copy(&mut from, &mut to);
            let _ = to.shutdown(Shutdown::Write);
        })
    };
    let result = answer(shared, index, &head, &mut upstream, &mut client);
    let _ = client.shutdown(Shutdown::Both);
    let _ = upstream.shutdown(Shutdown::Both);
    let _ = pump.join();
    result
}

/// Forwards the answer to `client`, cutting it if armed.
fn answer(
    shared: &Shared,
    index: usize,
    request: &http::RequestHead,
    upstream: &mut TcpStream,
    client: &mut TcpStream,
) -> io::Result<()> {
    let blob_get = request.method == "GET"
        && request
            .target
            .split('?')
            .next()
            .is_some_and(|p| p.contains("/blobs/"));
    let mut buf = Vec::new();
    loop {
        let Some((head, head_len)) = http::read_response_head(upstream, &mut buf)? else {
            return Ok(());
        };
        let status_line = format!("HTTP/1.1 {} {}", head.status, head.reason);
        if (100..200).contains(&head.status) && head.status != 101 {
            http::write_head(client, &status_line, &head.headers)?;
            buf.drain(..head_len);
            continue;
        }
        let body_len =
            http::header(&head.headers, "Content-Length").and_then(|v| v.parse::<u64>().ok());
        let cut = if blob_get && (200..300).contains(&head.status) {
            let mut armed = shared.cut.lock().unwrap();
            match *armed {
                Some(n) if body_len.is_none_or(|len| len > n) => armed.take(),
                _ => None,
            }
        } else {
            None
        };
        // Recorded before the client sees anything, so a test that reacts to the answer finds it.
        {
            let record = &mut shared.requests.lock().unwrap()[index];
            record.status = Some(head.status);
            record.cut_after = cut;
        }
        http::write_head(client, &status_line, &with_close(&head.headers))?;
        let body_start = &buf[head_len..];
        return match cut {
            None => {
                client.write_all(body_start)?;
                io::copy(upstream, client).map(drop)
            }
            Some(n) => {
                let first = body_start.len().min(n as usize);
                client.write_all(&body_start[..first])?;
                let rest = n - first as u64;
                io::copy(&mut Read::by_ref(upstream).take(rest), client)?;
                client.flush()
            }
        };
    }
}
