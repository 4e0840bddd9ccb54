//! A blocking Engine API client: HTTP/1.1 over the daemon's unix socket or tcp (with TLS), API
//! version negotiation through `/_ping`, JSON and streamed bodies, and hijacked connections
//! (attach, exec) handed back as plain read and write halves.
//!
//! Blocking on purpose: the CLI makes one request at a time, and a hijacked stream is then two
//! byte pipes that a thread each can pump; no async runtime is started for a command, which is
//! most of the CLI's own cost for the short ones. httparse parses the response heads.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::de::DeserializeOwned;

/// The newest API version this client speaks; the daemon's, when older, is used instead.
pub const MAX_API_VERSION: &str = "1.44";
/// What the client sends when the daemon does not say (dockerd before 1.25 did not).
const FALLBACK_API_VERSION: &str = "1.24";

/// Where the daemon listens.
#[derive(Clone)]
pub enum Transport {
    /// `unix://PATH`.
    Unix(PathBuf),
    /// `tcp://HOST:PORT`, with TLS when a config is given.
    Tcp {
        /// `host:port`.
        addr: String,
        /// The host name the certificate must carry.
        server_name: String,
        /// TLS, when `--tls`/`--tlsverify` or the context ask for it.
        tls: Option<Arc<rustls::ClientConfig>>,
    },
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Transport::Unix(p) => write!(f, "unix://{}", p.display()),
            Transport::Tcp { addr, tls, .. } => {
                write!(
                    f,
                    "tcp://{addr}{}",
                    if tls.is_some() { " (tls)" } else { "" }
                )
            }
        }
    }
}

/// The daemon the CLI talks to, as resolved from the flags, environment and context.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// How to reach it.
    pub transport: Transport,
    /// The address as the user wrote it (or the default), for messages.
    pub address: String,
    /// Whether this is refeng's default socket (so messages can say how to start refengd).
    pub refengd_default: bool,
}

/// What can go wrong talking to the daemon.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// the daemon is not there
    #[error("{}", connect_message(.address, *.refengd, .source))]
    Connect {
        address: String,
        refengd: bool,
        #[source]
        source: io::Error,
    },
    /// the daemon answered with an error
    #[error("Error response from daemon: {message}")]
    Api { status: u16, message: String },
    /// the connection broke
    #[error("error during connect: {0}")]
    Io(#[from] io::Error),
    /// the daemon's answer is not HTTP or not the JSON expected
    #[error("unexpected answer from the daemon: {0}")]
    Protocol(String),
    /// TLS setup failed
    #[error("tls: {0}")]
    Tls(String),
}

impl ClientError {
    /// The HTTP status of a daemon error, if this is one.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

fn connect_message(address: &str, refengd: bool, e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::PermissionDenied => format!(
            "permission denied while trying to connect to the daemon at {address}: run as root \
             or as a member of the socket's group (refeng, or docker for dockerd)"
        ),
        _ if refengd => format!(
            "cannot connect to refengd at {address}: is it running? start it with `refengd` \
             (or point -H/DOCKER_HOST at another daemon)"
        ),
        _ => format!(
            "cannot connect to the daemon at {address} ({e}): is it running? check -H, \
             DOCKER_HOST and --context"
        ),
    }
}

/// One connection to the daemon.
#[derive(Debug)]
pub enum Conn {
    Unix(UnixStream),
    Tcp(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Conn {
    /// A second handle on the same socket, for writing while another thread reads; `None`
    /// over TLS, whose state cannot be shared that way.
    pub fn try_clone(&self) -> Option<Conn> {
        match self {
            Conn::Unix(s) => s.try_clone().ok().map(Conn::Unix),
            Conn::Tcp(s) => s.try_clone().ok().map(Conn::Tcp),
            Conn::Tls(_) => None,
        }
    }

    /// Closes the writing direction (stdin's end), keeping the reading one.
    pub fn shutdown_write(&self) {
        let _ = match self {
            Conn::Unix(s) => s.shutdown(std::net::Shutdown::Write),
            Conn::Tcp(s) => s.shutdown(std::net::Shutdown::Write),
            Conn::Tls(s) => s.sock.shutdown(std::net::Shutdown::Write),
        };
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Unix(s) => s.read(buf),
            Conn::Tcp(s) => s.read(buf),
            Conn::Tls(s) => match s.read(buf) {
                // A daemon that closes without close_notify has still sent everything.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
                r => r,
            },
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Unix(s) => s.write(buf),
            Conn::Tcp(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Unix(s) => s.flush(),
            Conn::Tcp(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}

/// A request body.
pub enum Body<'a> {
    None,
    Json(Vec<u8>),
    /// Streamed with chunked encoding (a tarball from a file or stdin).
    Stream(&'a mut dyn Read, &'a str),
}

impl std::fmt::Debug for Body<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Body::None => f.write_str("None"),
            Body::Json(b) => write!(f, "Json({} bytes)", b.len()),
            Body::Stream(_, t) => write!(f, "Stream({t})"),
        }
    }
}

impl Body<'_> {
    /// A JSON body from a serialisable value.
    pub fn json(v: &impl serde::Serialize) -> Body<'static> {
        Body::Json(serde_json::to_vec(v).unwrap_or_default())
    }
}

/// How the rest of a response body is framed.
#[derive(Debug)]
enum Framing {
    Length(u64),
    Chunked { left: u64, done: bool },
    Eof,
}

/// A response: status, headers and the body as a reader.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    reader: BufReader<Conn>,
    framing: Framing,
}

impl Response {
    /// A header's value (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The whole body.
    ///
    /// # Errors
    /// When the connection breaks.
    pub fn bytes(mut self) -> Result<Vec<u8>, ClientError> {
        let mut v = Vec::new();
        self.read_to_end(&mut v)?;
        Ok(v)
    }

    /// The body parsed as JSON.
    ///
    /// # Errors
    /// When the connection breaks or the body is not the JSON expected.
    pub fn json<T: DeserializeOwned>(self) -> Result<T, ClientError> {
        let b = self.bytes()?;
        serde_json::from_slice(&b).map_err(|e| {
            ClientError::Protocol(format!(
                "{e}: {}",
                String::from_utf8_lossy(&b[..b.len().min(200)])
            ))
        })
    }

    /// Turns a status of 400 and above into [`ClientError::Api`] with the daemon's message.
    ///
    /// # Errors
    /// The daemon's error.
    pub fn ok(self) -> Result<Response, ClientError> {
        if self.status < 400 {
            return Ok(self);
        }
        let status = self.status;
        let body = self.bytes()?;
        let message = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().to_owned());
        Err(ClientError::Api { status, message })
    }

    /// The raw connection after a `101 Switching Protocols` (or a `200` from old daemons that
    /// answer attach without upgrading): what is buffered comes first.
    pub fn into_stream(self) -> BufReader<Conn> {
        self.reader
    }
}

impl Read for Response {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match &mut self.framing {
                Framing::Eof => return self.reader.read(buf),
                Framing::Length(0) => return Ok(0),
                Framing::Length(left) => {
                    let cap = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                    let n = self.reader.read(&mut buf[..cap])?;
                    if n == 0 {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                    *left -= n as u64;
                    return Ok(n);
                }
                Framing::Chunked { done: true, .. } => return Ok(0),
                Framing::Chunked { left, done } => {
                    if *left == 0 {
                        let mut line = String::new();
                        self.reader.read_line(&mut line)?;
                        if line.is_empty() {
                            return Err(io::ErrorKind::UnexpectedEof.into());
                        }
                        let size = line.trim().split(';').next().unwrap_or("");
                        let size = u64::from_str_radix(size, 16).map_err(|_| {
                            io::Error::new(io::ErrorKind::InvalidData, "bad chunk size")
                        })?;
                        if size == 0 {
                            // Trailers, then the blank line.
                            loop {
                                line.clear();
                                if self.reader.read_line(&mut line)? == 0 || line.trim().is_empty()
                                {
                                    break;
                                }
                            }
                            *done = true;
                            return Ok(0);
                        }
                        *left = size;
                        continue;
                    }
                    let cap = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                    let n = self.reader.read(&mut buf[..cap])?;
                    if n == 0 {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                    *left -= n as u64;
                    if *left == 0 {
                        let mut crlf = [0u8; 2];
                        self.reader.read_exact(&mut crlf)?;
                    }
                    return Ok(n);
                }
            }
        }
    }
}

/// The Engine API client.
#[derive(Debug)]
pub struct Client {
    endpoint: Endpoint,
    version: OnceLock<String>,
    pinned: Option<String>,
}

impl Client {
    /// A client for `endpoint`; `DOCKER_API_VERSION` pins the version (no negotiation).
    pub fn new(endpoint: Endpoint) -> Client {
        let pinned = std::env::var("DOCKER_API_VERSION")
            .ok()
            .filter(|v| !v.is_empty());
        Client {
            endpoint,
            version: OnceLock::new(),
            pinned,
        }
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Opens a connection to the daemon.
    ///
    /// # Errors
    /// [`ClientError::Connect`] when nothing answers there.
    pub fn connect(&self) -> Result<Conn, ClientError> {
        let fail = |source: io::Error| ClientError::Connect {
            address: self.endpoint.address.clone(),
            refengd: self.endpoint.refengd_default,
            source,
        };
        match &self.endpoint.transport {
            Transport::Unix(p) => UnixStream::connect(p).map(Conn::Unix).map_err(fail),
            Transport::Tcp {
                addr,
                server_name,
                tls,
            } => {
                let s = TcpStream::connect(addr).map_err(fail)?;
                let _ = s.set_nodelay(true);
                match tls {
                    None => Ok(Conn::Tcp(s)),
                    Some(cfg) => {
                        let name = rustls::pki_types::ServerName::try_from(server_name.clone())
                            .map_err(|e| ClientError::Tls(format!("{server_name}: {e}")))?;
                        let c = rustls::ClientConnection::new(cfg.clone(), name)
                            .map_err(|e| ClientError::Tls(e.to_string()))?;
                        Ok(Conn::Tls(Box::new(rustls::StreamOwned::new(c, s))))
                    }
                }
            }
        }
    }

    /// The API version in use: pinned, or negotiated once with `/_ping` (the lower of the
    /// daemon's and [`MAX_API_VERSION`]).
    ///
    /// # Errors
    /// When the daemon cannot be reached.
    pub fn version(&self) -> Result<&str, ClientError> {
        if let Some(v) = &self.pinned {
            return Ok(v);
        }
        if let Some(v) = self.version.get() {
            return Ok(v);
        }
        let r = self.raw("GET", "/_ping", &[], Body::None)?;
        let server = r
            .header("Api-Version")
            .unwrap_or(FALLBACK_API_VERSION)
            .to_owned();
        let _ = r.bytes();
        let v = if version_less(&server, MAX_API_VERSION) {
            server
        } else {
            MAX_API_VERSION.to_owned()
        };
        Ok(self.version.get_or_init(|| v))
    }

    /// A request on the versioned path `/v<version><path>`.
    ///
    /// # Errors
    /// Connection failures; the status is left to the caller (see [`Response::ok`]).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Body<'_>,
    ) -> Result<Response, ClientError> {
        let v = self.version()?.to_owned();
        self.raw(method, &format!("/v{v}{path}"), headers, body)
    }

    /// GET `path` and parse the JSON answer; daemon errors become [`ClientError::Api`].
    ///
    /// # Errors
    /// Connection failures and daemon errors.
    pub fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.request("GET", path, &[], Body::None)?.ok()?.json()
    }

    /// A request whose answer must be a success; the body is read and returned.
    ///
    /// # Errors
    /// Connection failures and daemon errors.
    pub fn call(&self, method: &str, path: &str, body: Body<'_>) -> Result<Vec<u8>, ClientError> {
        self.request(method, path, &[], body)?.ok()?.bytes()
    }

    /// A request that upgrades the connection to a raw stream (attach, exec start).
    ///
    /// # Errors
    /// Connection failures and daemon errors.
    pub fn hijack(&self, path: &str, body: Body<'_>) -> Result<BufReader<Conn>, ClientError> {
        let r = self
            .request(
                "POST",
                path,
                &[("Connection", "Upgrade"), ("Upgrade", "tcp")],
                body,
            )?
            .ok()?;
        Ok(r.into_stream())
    }

    fn raw(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Body<'_>,
    ) -> Result<Response, ClientError> {
        let mut conn = self.connect()?;
        let host = match &self.endpoint.transport {
            Transport::Unix(_) => "api.moby.localhost",
            Transport::Tcp { addr, .. } => addr.as_str(),
        };
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: refeng/{}\r\n",
            env!("CARGO_PKG_VERSION")
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("connection"))
        {
            head.push_str("Connection: close\r\n");
        }
        match &body {
            Body::None if method == "POST" || method == "PUT" => {
                head.push_str("Content-Length: 0\r\n");
            }
            Body::None => {}
            Body::Json(b) => head.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                b.len()
            )),
            Body::Stream(_, ty) => head.push_str(&format!(
                "Content-Type: {ty}\r\nTransfer-Encoding: chunked\r\n"
            )),
        }
        head.push_str("\r\n");
        let mut w = io::BufWriter::with_capacity(64 * 1024, &mut conn);
        w.write_all(head.as_bytes())?;
        match body {
            Body::None => {}
            Body::Json(b) => w.write_all(&b)?,
            Body::Stream(r, _) => {
                let mut buf = vec![0u8; 256 * 1024];
                loop {
                    let n = match r.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(e.into()),
                    };
                    write!(w, "{n:x}\r\n")?;
                    w.write_all(&buf[..n])?;
                    w.write_all(b"\r\n")?;
                }
                w.write_all(b"0\r\n\r\n")?;
            }
        }
        w.flush()?;
        drop(w);
        read_head(conn, method == "HEAD")
    }
}

/// Reads the status line and headers; the body framing follows from them.
fn read_head(conn: Conn, head_only: bool) -> Result<Response, ClientError> {
    let mut reader = BufReader::with_capacity(64 * 1024, conn);
    let mut raw = Vec::with_capacity(512);
    loop {
        let before = raw.len();
        let n = reader.read_until(b'\n', &mut raw)?;
        if n == 0 {
            return Err(ClientError::Protocol(
                "the daemon closed the connection without answering".into(),
            ));
        }
        if raw[before..] == *b"\r\n" || raw[before..] == *b"\n" {
            break;
        }
        if raw.len() > 64 * 1024 {
            return Err(ClientError::Protocol("response head too long".into()));
        }
    }
    let mut hdrs = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut hdrs);
    match resp.parse(&raw) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => {
            return Err(ClientError::Protocol("incomplete response head".into()))
        }
        Err(e) => return Err(ClientError::Protocol(format!("not HTTP: {e}"))),
    }
    let status = resp.code.unwrap_or(0);
    let headers: Vec<(String, String)> = resp
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_owned(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let find = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.as_str())
    };
    let framing = if head_only || status == 204 || status == 304 || status == 101 {
        if status == 101 {
            Framing::Eof
        } else {
            Framing::Length(0)
        }
    } else if find("Transfer-Encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        Framing::Chunked {
            left: 0,
            done: false,
        }
    } else if let Some(n) = find("Content-Length").and_then(|v| v.trim().parse().ok()) {
        Framing::Length(n)
    } else {
        Framing::Eof
    };
    Ok(Response {
        status,
        headers,
        reader,
        framing,
    })
}

/// `a < b` for API versions such as `1.41` and `1.44`.
pub fn version_less(a: &str, b: &str) -> bool {
    let parse = |s: &str| -> Vec<u32> { s.split('.').map(|p| p.parse().unwrap_or(0)).collect() };
    parse(a) < parse(b)
}

/// A read timeout for connections that must not hang forever (none by default).
pub fn set_read_timeout(conn: &Conn, t: Option<Duration>) {
    let _ = match conn {
        Conn::Unix(s) => s.set_read_timeout(t),
        Conn::Tcp(s) => s.set_read_timeout(t),
        Conn::Tls(s) => s.sock.set_read_timeout(t),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically() {
        assert!(version_less("1.9", "1.41"));
        assert!(version_less("1.41", "1.44"));
        assert!(!version_less("1.44", "1.44"));
        assert!(!version_less("1.51", "1.44"));
    }
}
