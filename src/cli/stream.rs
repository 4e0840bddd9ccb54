//! Hijacked streams of `run`, `start -a`, `attach` and `exec`: the multiplexed frames of a
//! non-tty stream split back into stdout and stderr, stdin forwarded (with the detach keys
//! recognised on the client side, as docker does), the terminal in raw mode while a tty
//! session lasts, window size changes sent as resizes and signals proxied to the container.

use std::io::{self, BufReader, Read, Write};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use nix::sys::signal::{SigSet, Signal};
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg, Termios};

use super::client::Conn;

/// Docker's default detach sequence: ctrl-p, ctrl-q.
pub const DEFAULT_DETACH_KEYS: &str = "ctrl-p,ctrl-q";

/// A detach key sequence that does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid detach keys {0:?}: use comma-separated keys such as ctrl-p,ctrl-q or a,ctrl-@")]
pub struct DetachKeysError(pub String);

/// Parses docker's detach key syntax (`ctrl-<x>` for `a-z @ [ \ ] ^ _`, or single characters).
///
/// # Errors
/// [`DetachKeysError`] naming the text.
pub fn detach_keys(s: &str) -> Result<Vec<u8>, DetachKeysError> {
    let mut out = Vec::new();
    for key in s.split(',') {
        let k = key.trim();
        if let Some(c) = k.strip_prefix("ctrl-") {
            let b = match c.as_bytes() {
                [b] if b.is_ascii_lowercase() => b - b'a' + 1,
                [b'@'] => 0,
                [b'['] => 27,
                [b'\\'] => 28,
                [b']'] => 29,
                [b'^'] => 30,
                [b'_'] => 31,
                _ => return Err(DetachKeysError(s.to_owned())),
            };
            out.push(b);
        } else if k.len() == 1 {
            out.push(k.as_bytes()[0]);
        } else {
            return Err(DetachKeysError(s.to_owned()));
        }
    }
    if out.is_empty() {
        return Err(DetachKeysError(s.to_owned()));
    }
    Ok(out)
}

/// The terminal in raw mode until dropped.
#[derive(Debug)]
pub struct RawTerminal {
    saved: Option<Termios>,
}

impl RawTerminal {
    /// Puts stdin's terminal in raw mode, when stdin is one.
    pub fn enable() -> RawTerminal {
        let stdin = io::stdin();
        let saved = tcgetattr(stdin.as_fd()).ok();
        if let Some(s) = &saved {
            let mut raw = s.clone();
            cfmakeraw(&mut raw);
            let _ = tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw);
        }
        RawTerminal { saved }
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if let Some(s) = &self.saved {
            let _ = tcsetattr(io::stdin().as_fd(), SetArg::TCSANOW, s);
        }
    }
}

/// Whether stdin and stdout are terminals.
pub fn stdin_is_tty() -> bool {
    nix::unistd::isatty(io::stdin().as_fd()).unwrap_or(false)
}

/// Stdout's terminal size (rows, columns), if it is one.
pub fn terminal_size() -> Option<(u16, u16)> {
    crate::sys::tty::window_size(io::stdout().as_fd())
        .or_else(|_| crate::sys::tty::window_size(io::stdin().as_fd()))
        .ok()
        .filter(|(h, w)| *h > 0 && *w > 0)
}

/// The width of the terminal `fd` is, as docker's progress drawing takes it: `None` when `fd`
/// is no terminal, 200 columns when its size cannot be read.
pub fn terminal_width(fd: impl AsFd) -> Option<u16> {
    let fd = fd.as_fd();
    if !nix::unistd::isatty(fd).unwrap_or(false) {
        return None;
    }
    Some(crate::sys::tty::window_size(fd).map_or(super::progress::DAEMON_WIDTH, |(_, w)| w))
}

/// How a stream session ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// The container's output ended.
    Eof,
    /// The user typed the detach keys.
    Detached,
}

/// Copies the daemon's output to stdout/stderr until it ends, while a thread forwards stdin
/// (when `stdin` is set) with detach key recognition.
///
/// # Errors
/// When the connection or the local outputs fail.
pub fn pump(
    reader: BufReader<Conn>,
    tty: bool,
    stdin: bool,
    detach: Option<Vec<u8>>,
) -> io::Result<Ended> {
    let detached = Arc::new(AtomicBool::new(false));
    if stdin {
        if let Some(mut w) = reader.get_ref().try_clone() {
            let flag = detached.clone();
            let reader_half = reader.get_ref().try_clone();
            std::thread::spawn(move || {
                let ended = copy_stdin(&mut w, detach.as_deref().unwrap_or(&[]));
                match ended {
                    Ended::Detached => {
                        flag.store(true, Ordering::SeqCst);
                        // End the output side too: the session is over for this client.
                        if let Some(r) = reader_half {
                            shutdown_both(&r);
                        }
                    }
                    Ended::Eof => w.shutdown_write(),
                }
            });
        }
    }
    let r = if tty { copy_raw(reader) } else { demux(reader) };
    if detached.load(Ordering::SeqCst) {
        return Ok(Ended::Detached);
    }
    r.map(|()| Ended::Eof)
}

fn shutdown_both(c: &Conn) {
    let _ = match c {
        Conn::Unix(s) => s.shutdown(std::net::Shutdown::Both),
        Conn::Tcp(s) => s.shutdown(std::net::Shutdown::Both),
        Conn::Tls(s) => s.sock.shutdown(std::net::Shutdown::Both),
    };
}

fn copy_stdin(w: &mut Conn, keys: &[u8]) -> Ended {
    let mut stdin = io::stdin().lock();
    let mut buf = [0u8; 32 * 1024];
    // How much of the detach sequence the last bytes matched (held back until decided).
    let mut matched = 0usize;
    loop {
        let n = match stdin.read(&mut buf) {
            Ok(0) | Err(_) => return Ended::Eof,
            Ok(n) => n,
        };
        let mut out = Vec::with_capacity(n + keys.len());
        for &b in &buf[..n] {
            if !keys.is_empty() && b == keys[matched] {
                matched += 1;
                if matched == keys.len() {
                    let _ = w.write_all(&out);
                    return Ended::Detached;
                }
                continue;
            }
            if matched > 0 {
                out.extend_from_slice(&keys[..matched]);
                matched = 0;
                if !keys.is_empty() && b == keys[0] {
                    matched = 1;
                    continue;
                }
            }
            out.push(b);
        }
        if !out.is_empty() && w.write_all(&out).is_err() {
            return Ended::Eof;
        }
    }
}

fn copy_raw(mut r: BufReader<Conn>) -> io::Result<()> {
    let mut out = io::stdout().lock();
    let mut buf = [0u8; 32 * 1024];
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // The stdin side ended the session (detach).
            Err(_) => return Ok(()),
        };
        out.write_all(&buf[..n])?;
        out.flush()?;
    }
}

/// Splits the Engine API's multiplexed stream (an 8-byte header per frame: stream, 0, 0, 0,
/// big-endian length) onto stdout and stderr.
///
/// # Errors
/// Broken frames and write failures.
pub fn demux(mut r: impl Read) -> io::Result<()> {
    let mut out = io::stdout().lock();
    let mut err = io::stderr().lock();
    demux_into(&mut r, &mut out, &mut err)
}

/// [`demux`] into given writers.
///
/// # Errors
/// Broken frames and write failures.
pub fn demux_into(r: &mut impl Read, out: &mut impl Write, err: &mut impl Write) -> io::Result<()> {
    let mut head = [0u8; 8];
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match read_full(r, &mut head)? {
            0 => return Ok(()),
            8 => {}
            _ => return Err(io::ErrorKind::UnexpectedEof.into()),
        }
        let mut left = u32::from_be_bytes([head[4], head[5], head[6], head[7]]) as usize;
        while left > 0 {
            let want = left.min(buf.len());
            r.read_exact(&mut buf[..want])?;
            match head[0] {
                2 => {
                    err.write_all(&buf[..want])?;
                }
                0 | 1 => {
                    out.write_all(&buf[..want])?;
                }
                3 => {
                    // systemerr: the daemon's own error, on stderr.
                    err.write_all(&buf[..want])?;
                }
                other => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("unknown stream {other} in the multiplexed output"),
                    ))
                }
            }
            left -= want;
        }
        out.flush()?;
        err.flush()?;
    }
}

/// Reads until `buf` is full or the stream ends; returns how much was read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// The signals `--sig-proxy` forwards (those a user sends to a foreground program).
pub const PROXIED: [Signal; 6] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// Blocks `signals` (plus SIGWINCH) in this thread and those it starts, and hands them to
/// `handle` on a thread of their own, which runs until the process ends.
pub fn watch_signals(signals: &[Signal], handle: impl Fn(Signal) + Send + 'static) {
    let mut set = SigSet::empty();
    set.add(Signal::SIGWINCH);
    for s in signals {
        set.add(*s);
    }
    if set.thread_block().is_err() {
        return;
    }
    std::thread::spawn(move || loop {
        match set.wait() {
            Ok(sig) => handle(sig),
            Err(_) => return,
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_keys_parse() {
        assert_eq!(detach_keys(DEFAULT_DETACH_KEYS).unwrap(), [16, 17]);
        assert_eq!(detach_keys("a,ctrl-@").unwrap(), [b'a', 0]);
        assert!(detach_keys("ctrl-").is_err());
        assert!(detach_keys("abc").is_err());
    }

    #[test]
    fn frames_split_onto_their_streams() {
        let mut input = Vec::new();
        input.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 3]);
        input.extend_from_slice(b"out");
        input.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0, 3]);
        input.extend_from_slice(b"err");
        let (mut o, mut e) = (Vec::new(), Vec::new());
        demux_into(&mut &input[..], &mut o, &mut e).unwrap();
        assert_eq!((o.as_slice(), e.as_slice()), (&b"out"[..], &b"err"[..]));
        let mut cut = &input[..5];
        assert!(demux_into(&mut cut, &mut Vec::new(), &mut Vec::new()).is_err());
    }
}
