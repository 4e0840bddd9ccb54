//! Streams to clients: attach (and exec start) over a hijacked connection, in the
//! multiplexed stream format without a tty and raw with one, with stdin and detach keys; and
//! `GET /containers/{id}/logs` from the json-file log (stdout, stderr, since, until,
//! timestamps, tail, follow). A client going away ends only its own stream.

use std::io::{BufRead, BufReader};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{broadcast, mpsc};

use super::super::error::ApiError;
use super::super::Engine;
use super::io::{frame, log_files, Chunk, LogLine, ProcessIo, Stream};
use refeng_spec::engine::Status;

/// How often input for a process that has not started yet looks for it again.
const STDIN_RETRY: Duration = Duration::from_millis(20);

/// docker's default detach sequence: ctrl-p, ctrl-q.
pub const DEFAULT_DETACH_KEYS: &[u8] = &[0x10, 0x11];

/// Parses a detach key sequence (`ctrl-p,ctrl-q`, `a,ctrl-@`) as docker does.
///
/// # Errors
/// `BadRequest` naming the key.
pub fn parse_detach_keys(s: &str) -> Result<Vec<u8>, ApiError> {
    if s.is_empty() {
        return Ok(DEFAULT_DETACH_KEYS.to_vec());
    }
    let mut out = Vec::new();
    for k in s.split(',') {
        let bad = || ApiError::BadRequest(format!("Invalid detach keys ({s}) provided"));
        if let Some(c) = k.strip_prefix("ctrl-") {
            let b = match c.as_bytes() {
                [b'@'] => 0,
                [c @ b'a'..=b'z'] => c - b'a' + 1,
                [b'['] => 27,
                [b'\\'] => 28,
                [b']'] => 29,
                [b'^'] => 30,
                [b'_'] => 31,
                _ => return Err(bad()),
            };
            out.push(b);
        } else if k.len() == 1 {
            out.push(k.as_bytes()[0]);
        } else {
            return Err(bad());
        }
    }
    Ok(out)
}

/// What a hijacked stream carries.
#[derive(Debug)]
pub struct AttachPlan {
    /// Output to send first (attach `logs=1`).
    pub replay: Vec<Bytes>,
    /// Live output, subscribed before anything could be missed.
    pub live: Option<broadcast::Receiver<Chunk>>,
    /// A tty: raw bytes, no frames.
    pub tty: bool,
    /// Which output streams.
    pub stdout: bool,
    /// stderr.
    pub stderr: bool,
    /// Where the client's bytes go, and whether their end closes the process's stdin.
    pub stdin: Option<(Arc<ProcessIo>, bool)>,
    /// The detach sequence.
    pub detach_keys: Vec<u8>,
    /// Held open after the output ends until this turns true (an exec's exit is recorded
    /// before its client reads the exit code).
    pub finish: Option<tokio::sync::watch::Receiver<bool>>,
}

/// Runs a hijacked stream until the output ends, the client detaches or goes away.
pub async fn pump<T>(conn: T, plan: AttachPlan)
where
    T: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(conn);
    let AttachPlan {
        replay,
        live,
        tty,
        stdout,
        stderr,
        stdin,
        detach_keys,
        finish,
    } = plan;
    let writer = async move {
        for b in replay {
            if wr.write_all(&b).await.is_err() {
                return;
            }
        }
        if let Some(mut rx) = live {
            loop {
                match rx.recv().await {
                    Ok(Chunk::Out(s, b)) => {
                        let wanted = match s {
                            Stream::Stdout => stdout,
                            Stream::Stderr => stderr,
                            Stream::Stdin => false,
                        };
                        if !wanted {
                            continue;
                        }
                        let out = if tty { b } else { frame(s, &b) };
                        if wr.write_all(&out).await.is_err() {
                            return;
                        }
                    }
                    Ok(Chunk::End) | Err(broadcast::error::RecvError::Closed) => break,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "an attached client fell behind");
                    }
                }
            }
        }
        if let Some(mut f) = finish {
            let _ = tokio::time::timeout(Duration::from_secs(10), f.wait_for(|done| *done)).await;
        }
        let _ = wr.flush().await;
        let _ = wr.shutdown().await;
    };
    let reader = async move {
        let mut buf = vec![0u8; 8192];
        let mut matched = 0usize;
        loop {
            let n = match rd.read(&mut buf).await {
                Ok(0) | Err(_) => {
                    // `StdinOnce` closes the process's stdin when its client goes, but not on a
                    // tty, as dockerd: the docker CLI detaches from `run -it` by closing its
                    // connection (it reads the detach keys itself), and the next attach must
                    // still reach the shell.
                    if let Some((pio, true)) = stdin.as_ref().filter(|_| !tty) {
                        // Attached before the start: the end goes to the process once it is.
                        while !pio.try_close_stdin() {
                            tokio::time::sleep(STDIN_RETRY).await;
                        }
                    }
                    // The client closed its side: output may still follow.
                    std::future::pending::<()>().await;
                    return;
                }
                Ok(n) => n,
            };
            let Some((pio, _)) = &stdin else { continue };
            let mut out = Vec::with_capacity(n);
            for &b in &buf[..n] {
                if !detach_keys.is_empty() && b == detach_keys[matched] {
                    matched += 1;
                    if matched == detach_keys.len() {
                        return;
                    }
                    continue;
                }
                if matched > 0 {
                    out.extend_from_slice(&detach_keys[..matched]);
                    matched = 0;
                }
                out.push(b);
            }
            // Input that comes before the process (the CLI sends it as soon as it attached,
            // before its start) waits for it, as it would in dockerd's stdin pipe; the pump
            // ends with the output in any case.
            let out = Arc::new(out);
            loop {
                let (pio, out) = (pio.clone(), out.clone());
                match tokio::task::spawn_blocking(move || pio.write_stdin(&out)).await {
                    Ok(Ok(())) => break,
                    Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotConnected => {
                        tokio::time::sleep(STDIN_RETRY).await;
                    }
                    _ => std::future::pending::<()>().await,
                }
            }
        }
    };
    tokio::select! {
        () = writer => {}
        () = reader => {}
    }
}

/// What `GET /containers/{id}/logs` asks for.
#[derive(Debug, Clone, Default)]
pub struct LogsQuery {
    /// stdout.
    pub stdout: bool,
    /// stderr.
    pub stderr: bool,
    /// Unix seconds (fractional), exclusive lower bound... inclusive, as dockerd.
    pub since: Option<f64>,
    /// Upper bound.
    pub until: Option<f64>,
    /// Prefix each line with its time.
    pub timestamps: bool,
    /// The last N lines (None: all).
    pub tail: Option<usize>,
    /// Keep following.
    pub follow: bool,
}

/// Parses a `since`/`until` value: unix seconds with an optional fraction.
///
/// # Errors
/// `BadRequest` naming it.
pub fn parse_unix(s: &str) -> Result<Option<f64>, ApiError> {
    if s.is_empty() || s == "0" {
        return Ok(None);
    }
    s.parse::<f64>()
        .map(Some)
        .map_err(|_| ApiError::BadRequest(format!("invalid timestamp {s:?}")))
}

fn line_time(l: &LogLine) -> f64 {
    chrono::DateTime::parse_from_rfc3339(&l.time).map_or(0.0, |t| {
        t.timestamp() as f64 + f64::from(t.timestamp_subsec_nanos()) / 1e9
    })
}

fn render(l: &LogLine, q: &LogsQuery, tty: bool) -> Option<Bytes> {
    let wanted = match l.stream {
        Stream::Stdout => q.stdout,
        Stream::Stderr => q.stderr,
        Stream::Stdin => false,
    };
    if !wanted {
        return None;
    }
    let t = line_time(l);
    if q.since.is_some_and(|s| t < s) || q.until.is_some_and(|u| t > u) {
        return None;
    }
    let mut text = Vec::new();
    if q.timestamps {
        text.extend_from_slice(l.time.as_bytes());
        text.push(b' ');
    }
    text.extend_from_slice(l.log.as_bytes());
    Some(if tty {
        Bytes::from(text)
    } else {
        frame(l.stream, &text)
    })
}

impl Engine {
    /// `GET /containers/{id}/logs`: the chunks to send, and whether the answer is raw (tty).
    ///
    /// # Errors
    /// 400 when no stream is chosen, 404, 501 for the `none` driver.
    pub fn container_logs(
        self: &Arc<Self>,
        name: &str,
        q: LogsQuery,
    ) -> Result<(mpsc::Receiver<Bytes>, bool), ApiError> {
        if !q.stdout && !q.stderr {
            return Err(ApiError::BadRequest(
                "Bad parameters: you must choose at least one stream".into(),
            ));
        }
        let id = self.containers.find(name)?;
        let (tty, has_log) = {
            let map = self.containers.lock();
            let e = map
                .get(&id)
                .ok_or_else(|| ApiError::NotFound(format!("No such container: {name}")))?;
            (e.stored.config.tty, e.stored.log.is_some())
        };
        if !has_log {
            return Err(ApiError::NotImplemented(
                "configured logging driver does not support reading".into(),
            ));
        }
        let path = self.containers.log_path(&id);
        let (tx, rx) = mpsc::channel::<Bytes>(64);
        let me = self.clone();
        tokio::spawn(async move {
            let (past, mut current) = tokio::task::spawn_blocking({
                let path = path.clone();
                move || read_lines(&path)
            })
            .await
            .unwrap_or_default();
            let skip = q.tail.map_or(0, |n| past.len().saturating_sub(n));
            for l in &past[skip..] {
                if let Some(b) = render(l, &q, tty) {
                    if tx.send(b).await.is_err() {
                        return;
                    }
                }
            }
            if !q.follow {
                return;
            }
            // Follow: read on from where the past ended in the current file (not from its end
            // now: what was written meanwhile belongs to the answer), through the descriptor
            // opened then: a removed container's log (docker-py removes before it reads the
            // follow of its run) and a rotated file are read to their end, as dockerd's
            // json-file reader does; then the file now at the path. Until the container no
            // longer runs and nothing more is written.
            loop {
                let running = me.containers.lock().get(&id).is_some_and(|e| {
                    e.lc.status().is_running() && e.lc.status() != Status::Restarting
                });
                let lines = current.read_on();
                for l in &lines {
                    if let Some(b) = render(l, &q, tty) {
                        if tx.send(b).await.is_err() {
                            return;
                        }
                    }
                }
                if q.until.is_some_and(|u| now_unix() > u) {
                    return;
                }
                if !running && lines.is_empty() {
                    return;
                }
                let now_ino = inode(&path);
                if lines.is_empty() && now_ino != 0 && now_ino != current.ino {
                    current = Current::open(&path);
                    continue;
                }
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(100)) => {}
                    () = tx.closed() => return,
                }
            }
        });
        Ok((rx, tty))
    }
}

fn now_unix() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn inode(p: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p).map_or(0, |m| m.ino())
}

/// The log file a follow reads, held open, and how far it was read.
#[derive(Debug, Default)]
struct Current {
    file: Option<std::fs::File>,
    /// The offset after the last whole line read.
    pos: u64,
    /// Its inode (0: none was open).
    ino: u64,
}

impl Current {
    fn open(path: &std::path::Path) -> Current {
        use std::os::unix::fs::MetadataExt;
        let file = std::fs::File::open(path).ok();
        let ino = file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map_or(0, |m| m.ino());
        Current { file, pos: 0, ino }
    }

    /// The whole lines written since the last call.
    fn read_on(&mut self) -> Vec<LogLine> {
        use std::io::{Read, Seek, SeekFrom};
        let Some(f) = self.file.as_mut() else {
            return Vec::new();
        };
        if f.seek(SeekFrom::Start(self.pos)).is_err() {
            return Vec::new();
        }
        let mut buf = Vec::new();
        if f.read_to_end(&mut buf).is_err() {
            return Vec::new();
        }
        let end = buf.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        self.pos += end as u64;
        buf[..end]
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .filter_map(|l| serde_json::from_slice::<LogLine>(l).ok())
            .collect()
    }
}

/// Every line of the log, oldest first, and the current file held open after its last whole
/// line (where a follow goes on). The current file is opened first, so that a rotation
/// meanwhile repeats lines at worst and loses none.
fn read_lines(path: &std::path::Path) -> (Vec<LogLine>, Current) {
    let mut current = Current::open(path);
    let mut out = Vec::new();
    let files = log_files(path);
    for f in &files[..files.len().saturating_sub(1)] {
        let Ok(file) = std::fs::File::open(f) else {
            continue;
        };
        for line in BufReader::new(file).lines().map_while(Result::ok) {
            if let Ok(l) = serde_json::from_str::<LogLine>(&line) {
                out.push(l);
            }
        }
    }
    out.extend(current.read_on());
    (out, current)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_keys_parse_as_docker_parses_them() {
        assert_eq!(parse_detach_keys("").unwrap(), DEFAULT_DETACH_KEYS);
        assert_eq!(parse_detach_keys("ctrl-a,x").unwrap(), vec![1, b'x']);
        assert_eq!(parse_detach_keys("ctrl-@").unwrap(), vec![0]);
        assert!(parse_detach_keys("ctrl-1").is_err());
        assert!(parse_detach_keys("abc").is_err());
    }

    #[test]
    fn log_lines_render_framed_raw_and_filtered() {
        let l = LogLine {
            log: "hi\n".into(),
            stream: Stream::Stderr,
            time: "2026-01-01T00:00:00.5Z".into(),
        };
        let q = LogsQuery {
            stdout: true,
            stderr: true,
            timestamps: true,
            ..Default::default()
        };
        assert_eq!(
            &render(&l, &q, true).unwrap()[..],
            b"2026-01-01T00:00:00.5Z hi\n"
        );
        let q = LogsQuery {
            stdout: true,
            stderr: true,
            ..Default::default()
        };
        assert_eq!(
            &render(&l, &q, false).unwrap()[..],
            b"\x02\0\0\0\0\0\0\x03hi\n"
        );
        let q = LogsQuery {
            stdout: true,
            ..Default::default()
        };
        assert!(render(&l, &q, false).is_none());
        let q = LogsQuery {
            stdout: true,
            stderr: true,
            since: Some(1_767_225_601.0),
            ..Default::default()
        };
        assert!(render(&l, &q, false).is_none());
    }
}
