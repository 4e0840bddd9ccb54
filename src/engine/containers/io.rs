//! A process's stdio between the shim and refengd: the FIFOs containerd's client protocol
//! uses (refengd makes them and reads stdout/stderr on a thread each), the json-file log
//! driver (one JSON object per line, rotated by `max-size`/`max-file`), and the hub attached
//! clients follow. A client that goes away only drops its subscription: the readers keep
//! draining the FIFOs, so the container never blocks on a full pipe.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch};

use super::super::error::ApiError;
use super::ctd::Stdio;

/// Which output stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    /// stdin (the stream format's 0).
    Stdin,
    /// stdout (1).
    Stdout,
    /// stderr (2).
    Stderr,
}

impl Stream {
    /// The stream type byte of the multiplexed format.
    pub fn byte(self) -> u8 {
        match self {
            Stream::Stdin => 0,
            Stream::Stdout => 1,
            Stream::Stderr => 2,
        }
    }
}

/// What attached clients receive.
#[derive(Debug, Clone)]
pub enum Chunk {
    /// Output.
    Out(Stream, Bytes),
    /// The process's output ended (both streams closed).
    End,
}

/// One frame of the multiplexed stream format: stream byte, three zero bytes, big-endian
/// length, payload.
pub fn frame(stream: Stream, payload: &[u8]) -> Bytes {
    let mut b = Vec::with_capacity(8 + payload.len());
    b.push(stream.byte());
    b.extend_from_slice(&[0, 0, 0]);
    b.extend_from_slice(
        &u32::try_from(payload.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    b.extend_from_slice(payload);
    Bytes::from(b)
}

/// One json-file log line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// The text, with its newline.
    pub log: String,
    /// stdout or stderr.
    pub stream: Stream,
    /// RFC 3339 with nanoseconds.
    pub time: String,
}

/// Parses a json-file size (`10m`, `1k`, `1g`, bytes).
///
/// # Errors
/// `BadRequest` naming the value.
pub fn parse_size(s: &str) -> Result<u64, ApiError> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.trim_end_matches('b');
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    num.trim()
        .parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .map(|n| n * mult)
        .ok_or_else(|| ApiError::BadRequest(format!("invalid max-size {s:?}")))
}

/// The json-file driver's options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Rotation {
    /// Rotate beyond this size (0: never).
    pub max_size: u64,
    /// Files kept, the current one included (at least 1).
    pub max_file: u32,
}

impl Rotation {
    /// From a LogConfig's options over the daemon's `log-opts`.
    ///
    /// # Errors
    /// `BadRequest` for an unknown option or a bad value.
    pub fn from_opts<'a>(
        opts: impl Iterator<Item = (&'a String, &'a String)>,
    ) -> Result<Rotation, ApiError> {
        let mut r = Rotation {
            max_size: 0,
            max_file: 1,
        };
        for (k, v) in opts {
            match k.as_str() {
                "max-size" => r.max_size = parse_size(v)?,
                "max-file" => {
                    r.max_file =
                        v.parse::<u32>().ok().filter(|n| *n > 0).ok_or_else(|| {
                            ApiError::BadRequest(format!("invalid max-file {v:?}"))
                        })?;
                }
                other => {
                    return Err(ApiError::BadRequest(format!(
                        "unknown log opt '{other}' for json-file log driver"
                    )))
                }
            }
        }
        if r.max_file > 1 && r.max_size == 0 {
            return Err(ApiError::BadRequest(
                "max-file cannot be set without max-size".into(),
            ));
        }
        Ok(r)
    }
}

/// The json-file log of a container.
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    file: File,
    size: u64,
    rotation: Rotation,
}

impl LogFile {
    /// Opens (appending) `path`.
    ///
    /// # Errors
    /// When the file cannot be opened.
    pub fn open(path: &Path, rotation: Rotation) -> std::io::Result<LogFile> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(path)?;
        let size = file.metadata()?.len();
        Ok(LogFile {
            path: path.into(),
            file,
            size,
            rotation,
        })
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        let n = self.rotation.max_file;
        if n <= 1 {
            self.file.set_len(0)?;
            self.size = 0;
            return Ok(());
        }
        let name = |i: u32| PathBuf::from(format!("{}.{i}", self.path.display()));
        let _ = std::fs::remove_file(name(n - 1));
        for i in (1..n - 1).rev() {
            let _ = std::fs::rename(name(i), name(i + 1));
        }
        std::fs::rename(&self.path, name(1))?;
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(&self.path)?;
        self.size = 0;
        Ok(())
    }

    /// Appends one entry, rotating first when it would pass `max-size`.
    ///
    /// # Errors
    /// Writing or rotating.
    pub fn write(&mut self, line: &LogLine) -> std::io::Result<()> {
        let mut b = serde_json::to_vec(line).map_err(std::io::Error::other)?;
        b.push(b'\n');
        if self.rotation.max_size > 0
            && self.size > 0
            && self.size + b.len() as u64 > self.rotation.max_size
        {
            self.rotate()?;
        }
        self.file.write_all(&b)?;
        self.size += b.len() as u64;
        Ok(())
    }
}

/// The files of a log, oldest first.
pub fn log_files(path: &Path) -> Vec<PathBuf> {
    let mut rotated: Vec<(u32, PathBuf)> = Vec::new();
    if let (Some(dir), Some(name)) = (path.parent(), path.file_name()) {
        let prefix = format!("{}.", name.to_string_lossy());
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if let Some(i) = n.strip_prefix(&prefix).and_then(|s| s.parse::<u32>().ok()) {
                    rotated.push((i, e.path()));
                }
            }
        }
    }
    rotated.sort_by_key(|r| std::cmp::Reverse(r.0));
    let mut out: Vec<PathBuf> = rotated.into_iter().map(|(_, p)| p).collect();
    out.push(path.to_path_buf());
    out
}

/// RFC 3339 with nanoseconds, UTC, as Go's `time.RFC3339Nano` (trailing zeros dropped).
pub fn now_rfc3339() -> String {
    rfc3339(chrono::Utc::now())
}

/// Formats a time as Go's RFC3339Nano.
pub fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    let s = t.format("%Y-%m-%dT%H:%M:%S%.9f").to_string();
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}Z")
}

/// Where a process's output goes: the log (if any) and the attached clients.
#[derive(Debug, Clone)]
pub struct Sink {
    /// The json-file log, or none (`none` driver).
    pub log: Option<Arc<Mutex<LogFile>>>,
    /// The hub.
    pub hub: broadcast::Sender<Chunk>,
}

impl Sink {
    fn emit_line(&self, stream: Stream, text: &[u8]) {
        if let Some(log) = &self.log {
            let line = LogLine {
                log: String::from_utf8_lossy(text).into_owned(),
                stream,
                time: now_rfc3339(),
            };
            if let Err(e) = log.lock().unwrap_or_else(|e| e.into_inner()).write(&line) {
                tracing::warn!(error = %e, "writing the container log");
            }
        }
    }
}

/// Finds the process an attach's input goes to when it arrives.
pub type Resolver = Arc<dyn Fn() -> Option<Arc<ProcessIo>> + Send + Sync>;

/// The FIFOs of one process and the threads reading them.
pub struct ProcessIo {
    /// The paths handed to containerd.
    pub stdio: Stdio,
    /// The write side of stdin, while open.
    pub stdin: Arc<Mutex<Option<File>>>,
    /// For an attach made before its process started: the process of the moment.
    forward: Option<Resolver>,
    /// Turns true once every output FIFO was read to its end (written to the log and the hub).
    drained: watch::Receiver<bool>,
}

impl std::fmt::Debug for ProcessIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessIo")
            .field("stdio", &self.stdio)
            .field("forwarding", &self.forward.is_some())
            .finish()
    }
}

fn mkfifo(path: &Path) -> Result<(), ApiError> {
    let _ = std::fs::remove_file(path);
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600))
        .map_err(|e| ApiError::internal(&format!("mkfifo {}", path.display()), e))
}

/// The largest chunk read at once, and the longest line kept before it is written out
/// without its end (dockerd's 16 KiB).
const CHUNK: usize = 16 << 10;

/// The end of a process's output: counts the readers that finished and, once all have,
/// tells the hub and whoever waits in [`ProcessIo::drained`].
#[derive(Debug)]
struct Drain {
    finished: Mutex<u32>,
    streams: u32,
    tx: watch::Sender<bool>,
}

impl Drain {
    fn new(streams: u32) -> (Arc<Drain>, watch::Receiver<bool>) {
        let (tx, rx) = watch::channel(streams == 0);
        (
            Arc::new(Drain {
                finished: Mutex::new(0),
                streams,
                tx,
            }),
            rx,
        )
    }

    fn one_finished(&self, hub: &broadcast::Sender<Chunk>) {
        let mut d = self.finished.lock().unwrap_or_else(|e| e.into_inner());
        *d += 1;
        if *d == self.streams {
            let _ = hub.send(Chunk::End);
            self.tx.send_replace(true);
        }
    }
}

fn reader(path: PathBuf, fifo: File, stream: Stream, sink: Sink, done: Arc<Drain>) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    // One non-blocking read end, opened before the shim's write end: the kernel reports no
    // hang-up on it until a writer has come and gone, so "not yet" and "finished" differ
    // (containerd's fifo package relies on the same).
    // A blocking descriptor (live restore, opened while the writer exists) just reads.
    let mut f = fifo;
    let nonblocking = nix::fcntl::fcntl(&f, nix::fcntl::FcntlArg::F_GETFL).is_ok_and(|fl| {
        nix::fcntl::OFlag::from_bits_truncate(fl).contains(nix::fcntl::OFlag::O_NONBLOCK)
    });
    let mut buf = vec![0u8; CHUNK];
    let mut line: Vec<u8> = Vec::new();
    loop {
        if nonblocking {
            let mut fds = [PollFd::new(f.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => break,
            }
        }
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::Interrupted | std::io::ErrorKind::WouldBlock
                ) =>
            {
                continue
            }
            Err(_) => break,
        };
        let data = &buf[..n];
        let _ = sink
            .hub
            .send(Chunk::Out(stream, Bytes::copy_from_slice(data)));
        for &b in data {
            line.push(b);
            if b == b'\n' || line.len() >= CHUNK {
                sink.emit_line(stream, &line);
                line.clear();
            }
        }
    }
    if !line.is_empty() {
        sink.emit_line(stream, &line);
    }
    let _ = std::fs::remove_file(&path);
    done.one_finished(&sink.hub);
}

/// Makes the FIFOs `<dir>/<prefix>-{stdin,stdout,stderr}` and starts reading the output ones
/// into `sink`. With a tty there is no stderr (the pty merges it).
///
/// # Errors
/// `Internal` when a FIFO cannot be made or opened.
pub fn open(
    dir: &Path,
    prefix: &str,
    stdin: bool,
    tty: bool,
    sink: Sink,
) -> Result<ProcessIo, ApiError> {
    std::fs::create_dir_all(dir).map_err(|e| ApiError::internal("creating the fifo dir", e))?;
    let path = |s: &str| dir.join(format!("{prefix}-{s}"));
    let mut stdio = Stdio {
        terminal: tty,
        ..Stdio::default()
    };
    let stdin_file = Arc::new(Mutex::new(None));
    if stdin {
        let p = path("stdin");
        mkfifo(&p)?;
        // Read-write: the open does not wait for the shim, and the shim sees the end of
        // input when this (only) writer is closed.
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&p)
            .map_err(|e| ApiError::internal("opening the stdin fifo", e))?;
        *stdin_file.lock().unwrap_or_else(|e| e.into_inner()) = Some(f);
        stdio.stdin = p.to_string_lossy().into_owned();
    }
    let outs: Vec<Stream> = if tty {
        vec![Stream::Stdout]
    } else {
        vec![Stream::Stdout, Stream::Stderr]
    };
    let (done, drained) = Drain::new(u32::try_from(outs.len()).unwrap_or(2));
    for s in outs {
        let p = path(if s == Stream::Stdout {
            "stdout"
        } else {
            "stderr"
        });
        mkfifo(&p)?;
        // A reader from now on, so that the shim's non-blocking open for writing succeeds
        // before the thread's blocking open returns.
        let keeper = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&p)
            .map_err(|e| ApiError::internal("opening an output fifo", e))?;
        match s {
            Stream::Stdout => stdio.stdout = p.to_string_lossy().into_owned(),
            _ => stdio.stderr = p.to_string_lossy().into_owned(),
        }
        let sink = sink.clone();
        let done = done.clone();
        std::thread::Builder::new()
            .name(format!("io-{prefix}"))
            .spawn(move || reader(p, keeper, s, sink, done))
            .map_err(|e| ApiError::internal("starting an output reader", e))?;
    }
    Ok(ProcessIo {
        stdio,
        stdin: stdin_file,
        forward: None,
        drained,
    })
}

/// Reads again the FIFOs `open` made for a process that still runs (live restore: the shim
/// holds their write ends across a restart of refengd, so nothing written meanwhile is lost
/// beyond what the pipe buffers held).
///
/// # Errors
/// `Internal` when a FIFO is gone or cannot be opened.
pub fn reopen(dir: &Path, prefix: &str, tty: bool, sink: Sink) -> Result<ProcessIo, ApiError> {
    let path = |s: &str| dir.join(format!("{prefix}-{s}"));
    let mut stdio = Stdio {
        terminal: tty,
        ..Stdio::default()
    };
    let stdin_file = Arc::new(Mutex::new(None));
    let p = path("stdin");
    if p.exists() {
        if let Ok(f) = OpenOptions::new().read(true).write(true).open(&p) {
            *stdin_file.lock().unwrap_or_else(|e| e.into_inner()) = Some(f);
            stdio.stdin = p.to_string_lossy().into_owned();
        }
    }
    let outs: Vec<Stream> = if tty {
        vec![Stream::Stdout]
    } else {
        vec![Stream::Stdout, Stream::Stderr]
    };
    let (done, drained) = Drain::new(u32::try_from(outs.len()).unwrap_or(2));
    for s in outs {
        let p = path(if s == Stream::Stdout {
            "stdout"
        } else {
            "stderr"
        });
        let keeper = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&p)
            .map_err(|e| ApiError::internal(&format!("opening {}", p.display()), e))?;
        // The shim's write end exists already: the kernel would report no hang-up on a
        // read end opened after it, so this one blocks in read and sees the end there.
        nix::fcntl::fcntl(
            &keeper,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::empty()),
        )
        .map_err(|e| ApiError::internal("fcntl on an output fifo", e))?;
        match s {
            Stream::Stdout => stdio.stdout = p.to_string_lossy().into_owned(),
            _ => stdio.stderr = p.to_string_lossy().into_owned(),
        }
        let sink = sink.clone();
        let done = done.clone();
        std::thread::Builder::new()
            .name(format!("io-{prefix}"))
            .spawn(move || reader(p, keeper, s, sink, done))
            .map_err(|e| ApiError::internal("starting an output reader", e))?;
    }
    Ok(ProcessIo {
        stdio,
        stdin: stdin_file,
        forward: None,
        drained,
    })
}

impl ProcessIo {
    /// A stand-in whose stdin is the stdin of whatever process `resolve` names when written.
    pub fn forwarding(
        resolve: impl Fn() -> Option<Arc<ProcessIo>> + Send + Sync + 'static,
    ) -> ProcessIo {
        ProcessIo {
            stdio: Stdio::default(),
            stdin: Arc::new(Mutex::new(None)),
            forward: Some(Arc::new(resolve)),
            drained: watch::channel(true).1,
        }
    }

    /// Waits until the output was read to its end, up to `timeout` (dockerd waits 2 s for
    /// its copiers the same way before it records an exit): what a process wrote before it
    /// exited is in the log and with attached clients before anyone learns of the exit.
    /// Returns whether it was.
    pub async fn drained(&self, timeout: std::time::Duration) -> bool {
        let mut rx = self.drained.clone();
        let done = tokio::time::timeout(timeout, rx.wait_for(|d| *d))
            .await
            .is_ok_and(|r| r.is_ok());
        done
    }

    /// Ends the readers of a process that never started (its task was not created): opens
    /// and closes each output FIFO for writing, so their blocked opens return and read the
    /// end at once.
    pub fn abandon(&self) {
        for p in [&self.stdio.stdout, &self.stdio.stderr] {
            if !p.is_empty() {
                let _ = OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_NONBLOCK)
                    .open(p);
            }
        }
        self.close_stdin();
        if !self.stdio.stdin.is_empty() {
            let _ = std::fs::remove_file(&self.stdio.stdin);
        }
    }

    /// Closes the write side of stdin: the process reads its end.
    pub fn close_stdin(&self) {
        if let Some(f) = &self.forward {
            if let Some(p) = f() {
                p.close_stdin();
            }
            return;
        }
        self.stdin.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    /// Closes the write side of stdin like [`ProcessIo::close_stdin`]; false when this
    /// forwards to a process that does not exist yet (nothing was closed).
    pub fn try_close_stdin(&self) -> bool {
        if let Some(f) = &self.forward {
            return match f() {
                Some(p) => {
                    p.close_stdin();
                    true
                }
                None => false,
            };
        }
        self.close_stdin();
        true
    }

    /// Writes to stdin (while open).
    pub fn write_stdin(&self, data: &[u8]) -> std::io::Result<()> {
        if let Some(f) = &self.forward {
            return match f() {
                Some(p) => p.write_stdin(data),
                None => Err(std::io::Error::from(std::io::ErrorKind::NotConnected)),
            };
        }
        match self
            .stdin
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            Some(f) => f.write_all(data),
            None => Err(std::io::Error::from(std::io::ErrorKind::BrokenPipe)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_have_the_8_byte_header() {
        assert_eq!(&frame(Stream::Stderr, b"hi")[..], b"\x02\0\0\0\0\0\0\x02hi");
    }

    #[test]
    fn sizes_and_rotation_options_parse() {
        assert_eq!(parse_size("10m").unwrap(), 10 << 20);
        assert_eq!(parse_size("1k").unwrap(), 1024);
        assert_eq!(parse_size("123").unwrap(), 123);
        assert!(parse_size("x").is_err());
        let opts: Vec<(String, String)> = vec![
            ("max-size".into(), "1k".into()),
            ("max-file".into(), "3".into()),
        ];
        let r = Rotation::from_opts(opts.iter().map(|(a, b)| (a, b))).unwrap();
        assert_eq!(
            r,
            Rotation {
                max_size: 1024,
                max_file: 3
            }
        );
        let bad: Vec<(String, String)> = vec![("labels".into(), "a".into())];
        assert!(Rotation::from_opts(bad.iter().map(|(a, b)| (a, b))).is_err());
    }

    #[test]
    fn the_log_rotates_and_keeps_max_file_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c-json.log");
        let mut log = LogFile::open(
            &p,
            Rotation {
                max_size: 200,
                max_file: 3,
            },
        )
        .unwrap();
        for i in 0..20 {
            log.write(&LogLine {
                log: format!("line {i}\n"),
                stream: Stream::Stdout,
                time: now_rfc3339(),
            })
            .unwrap();
        }
        let files = log_files(&p);
        assert_eq!(files.len(), 3, "{files:?}");
        assert!(std::fs::metadata(&p).unwrap().len() <= 200);
        let last = std::fs::read_to_string(&p).unwrap();
        assert!(last.contains("line 19"));
    }

    #[tokio::test]
    async fn drained_waits_for_every_output_to_end() {
        let dir = tempfile::tempdir().unwrap();
        let (hub, _rx) = broadcast::channel(16);
        let io = open(dir.path(), "init", false, false, Sink { log: None, hub }).unwrap();
        let out = OpenOptions::new()
            .write(true)
            .open(&io.stdio.stdout)
            .unwrap();
        let err = OpenOptions::new()
            .write(true)
            .open(&io.stdio.stderr)
            .unwrap();
        let short = std::time::Duration::from_millis(50);
        assert!(!io.drained(short).await, "both writers are open");
        drop(out);
        assert!(!io.drained(short).await, "stderr's writer is open");
        drop(err);
        assert!(io.drained(std::time::Duration::from_secs(10)).await);
    }

    #[test]
    fn fifo_output_reaches_the_hub_and_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = LogFile::open(&dir.path().join("l.log"), Rotation::default()).unwrap();
        let (hub, mut rx) = broadcast::channel(16);
        let sink = Sink {
            log: Some(Arc::new(Mutex::new(log))),
            hub,
        };
        let io = open(dir.path(), "init", false, false, sink).unwrap();
        {
            let mut w = OpenOptions::new()
                .write(true)
                .open(&io.stdio.stdout)
                .unwrap();
            w.write_all(b"hello\nwor").unwrap();
            let _e = OpenOptions::new()
                .write(true)
                .open(&io.stdio.stderr)
                .unwrap();
        }
        let mut got = Vec::new();
        while let Chunk::Out(_, b) = rx.blocking_recv().unwrap() {
            got.extend_from_slice(&b);
        }
        assert_eq!(got, b"hello\nwor");
        let text = std::fs::read_to_string(dir.path().join("l.log")).unwrap();
        let lines: Vec<LogLine> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            lines.iter().map(|l| l.log.as_str()).collect::<Vec<_>>(),
            ["hello\n", "wor"]
        );
    }
}
