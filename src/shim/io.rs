//! Container stdio: the FIFOs or files containerd names for a process, handed straight to the
//! process when it has no terminal, or copied to and from the pty master the runtime sends over
//! the console socket when it has one.

use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::fcntl::OFlag;

use super::runtime::ProcessIo;

/// The stdio a caller asked for, as it names it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StdioPaths {
    /// A FIFO path, or empty.
    pub stdin: String,
    /// A FIFO path, `file://` URI, or empty.
    pub stdout: String,
    /// A FIFO path, `file://` URI, or empty.
    pub stderr: String,
    /// Whether the process gets a pty.
    pub terminal: bool,
}

/// Why a process's stdio could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    /// cannot open {path}
    #[error("cannot open {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// stdio uri {0} is not supported (only fifo paths and file:// are)
    #[error("stdio uri {0} is not supported (only fifo paths and file:// are)")]
    Unsupported(String),
    /// cannot set up the console socket {path}
    #[error("cannot set up the console socket {path}")]
    ConsoleSocket {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// the runtime sent no pty master on the console socket
    #[error("the runtime sent no pty master on the console socket")]
    NoConsole(#[source] Option<nix::errno::Errno>),
    /// cannot start a stdio copy thread
    #[error("cannot start a stdio copy thread")]
    Thread(#[source] std::io::Error),
}

fn open_err(path: &Path) -> impl FnOnce(std::io::Error) -> IoError + '_ {
    move |source| IoError::Open {
        path: path.to_path_buf(),
        source,
    }
}

/// Opens an output named by the caller: a FIFO is opened read-write, so that opening never
/// blocks and writes never fail with EPIPE while no reader is attached (containerd's runc shim
/// keeps a reader open for the same reason); a `file://` URI is appended to.
fn open_output(name: &str) -> Result<Option<File>, IoError> {
    if name.is_empty() {
        return Ok(None);
    }
    if let Some(path) = name.strip_prefix("file://") {
        let path = Path::new(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(open_err(path))?;
        }
        return OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map(Some)
            .map_err(open_err(path));
    }
    if name.contains("://") {
        return Err(IoError::Unsupported(name.to_string()));
    }
    let path = Path::new(name);
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map(Some)
        .map_err(open_err(path))
}

/// Opens the stdin FIFO for reading without waiting for a writer. The caller's end-of-file is
/// seen as a hangup once a writer has connected and gone (Linux reports no hangup on a FIFO whose
/// reader opened before any writer until one came), so a caller that attaches late is waited for.
fn open_input(name: &str) -> Result<Option<File>, IoError> {
    if name.is_empty() {
        return Ok(None);
    }
    if name.contains("://") {
        return Err(IoError::Unsupported(name.to_string()));
    }
    let path = Path::new(name);
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map(Some)
        .map_err(open_err(path))
}

/// Copies the caller's stdin FIFO into `to` (the process's stdin pipe, or the pty master) on a
/// thread, until the caller closed its side (end-of-file), `stop` is closed (CloseIO, or the
/// process record went), or `to` is gone. With `close_at_end` the copy then drops `to`, so the
/// process reads end-of-file; a pty master is kept (closing it would hang up the terminal).
fn spawn_stdin_pump(fifo: File, to: File, stop: OwnedFd, name: &str) -> Result<(), IoError> {
    std::thread::Builder::new()
        .name(name.into())
        .stack_size(64 * 1024)
        .spawn(move || pump(fifo, to, stop))
        .map(drop)
        .map_err(IoError::Thread)
}

fn pump(mut fifo: File, mut to: File, stop: OwnedFd) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::io::{Read, Write};
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let (readable, stopped) = {
            let mut fds = [
                PollFd::new(fifo.as_fd(), PollFlags::POLLIN),
                PollFd::new(stop.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => return,
            }
            let ready = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
            (ready(&fds[0]), ready(&fds[1]))
        };
        if readable || stopped {
            // Take what is there; at CloseIO too, so that nothing the caller wrote is lost.
            loop {
                match fifo.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => {
                        if to.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => return,
                }
            }
        }
        if stopped {
            return;
        }
    }
}

/// The shim's side of a process's stdio, kept as long as the process record lives.
#[derive(Debug, Default)]
pub struct ShimIo {
    /// Closing it stops the stdin copy ([`spawn_stdin_pump`]): CloseIO, or the record's end.
    stdin_keeper: Option<OwnedFd>,
    /// The pty master, for resizes.
    console: Option<Arc<OwnedFd>>,
}

impl ShimIo {
    /// Ends the process's stdin (CloseIO): what the caller wrote is passed on, then the process
    /// reads end-of-file.
    pub fn close_stdin(&mut self) {
        self.stdin_keeper = None;
    }

    /// The pty master of a terminal process.
    pub fn console(&self) -> Option<&OwnedFd> {
        self.console.as_deref()
    }
}

/// Opens the stdio of a non-terminal process: the returned streams go to the runtime, which passes
/// them on to the process.
///
/// # Errors
/// [`IoError`] when a FIFO or file cannot be opened or its URI scheme is not supported.
pub fn open_direct(paths: &StdioPaths) -> Result<(ProcessIo, ShimIo), IoError> {
    let input = open_input(&paths.stdin)?;
    let stdout = open_output(&paths.stdout)?;
    let stderr = open_output(&paths.stderr)?;
    let (stdin, keeper) = match input {
        Some(fifo) => {
            // The process reads a pipe the shim fills from the FIFO, so that it sees end-of-file
            // when the caller closes the FIFO (ctr run does; it sends no CloseIO) or at CloseIO.
            let (process_end, shim_end) =
                nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| IoError::Thread(e.into()))?;
            let (stop_read, stop_write) =
                nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| IoError::Thread(e.into()))?;
            spawn_stdin_pump(fifo, File::from(shim_end), stop_read, "stdin")?;
            (Some(process_end), Some(stop_write))
        }
        None => (None, None),
    };
    Ok((
        ProcessIo {
            stdin,
            stdout: stdout.map(OwnedFd::from),
            stderr: stderr.map(OwnedFd::from),
        },
        ShimIo {
            stdin_keeper: keeper,
            console: None,
        },
    ))
}

/// A listening `--console-socket` for one terminal process.
#[derive(Debug)]
pub struct ConsoleSocket {
    path: PathBuf,
    listener: UnixListener,
}

impl ConsoleSocket {
    /// Binds a console socket in `dir` (kept short: unix socket paths are limited to 108 bytes).
    ///
    /// # Errors
    /// [`IoError::ConsoleSocket`] when the socket cannot be bound.
    pub fn bind(dir: &Path, name: &str) -> Result<Self, IoError> {
        let path = dir.join(format!("pty-{name}.sock"));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).map_err(|source| IoError::ConsoleSocket {
            path: path.clone(),
            source,
        })?;
        Ok(Self { path, listener })
    }

    /// The path to hand to the runtime.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Takes the pty master the runtime sent. Called after the runtime command returned, so the
    /// connection and its message are already queued; nothing waits if the runtime never connected.
    ///
    /// # Errors
    /// [`IoError::NoConsole`] when no descriptor arrived.
    pub fn receive(self) -> Result<OwnedFd, IoError> {
        let result = (|| {
            self.listener
                .set_nonblocking(true)
                .map_err(|_| IoError::NoConsole(None))?;
            let (stream, _) = self
                .listener
                .accept()
                .map_err(|_| IoError::NoConsole(None))?;
            stream
                .set_nonblocking(false)
                .map_err(|_| IoError::NoConsole(None))?;
            let mut buf = [0u8; 4096];
            let (_, fds) = crate::sys::scm_rights::recv_with_fds(stream.as_fd(), &mut buf)
                .map_err(|e| IoError::NoConsole(Some(e)))?;
            fds.into_iter().next().ok_or(IoError::NoConsole(None))
        })();
        let _ = std::fs::remove_file(&self.path);
        result
    }
}

/// Starts copying between the caller's FIFOs and the pty master of a terminal process: stdin →
/// master, master → stdout. The stdout copy ends when the last holder of the pty's other side
/// closes it (the master then reads EIO) and closes the FIFO, so the caller sees end-of-file.
///
/// # Errors
/// [`IoError`] when a FIFO cannot be opened or a thread cannot be started.
pub fn start_console_copy(master: OwnedFd, paths: &StdioPaths) -> Result<ShimIo, IoError> {
    let master = Arc::new(master);
    let mut keeper = None;
    if let Some(fifo) = open_input(&paths.stdin)? {
        let (stop_read, stop_write) =
            nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| IoError::Thread(e.into()))?;
        let to_master = File::from(master.try_clone().map_err(IoError::Thread)?);
        spawn_stdin_pump(fifo, to_master, stop_read, "pty-in")?;
        keeper = Some(stop_write);
    }
    if let Some(out) = open_output(&paths.stdout)? {
        let from_master = File::from(master.try_clone().map_err(IoError::Thread)?);
        spawn_copy("pty-out", from_master, out)?;
    }
    Ok(ShimIo {
        stdin_keeper: keeper,
        console: Some(master),
    })
}

fn spawn_copy(name: &str, mut from: File, mut to: File) -> Result<(), IoError> {
    std::thread::Builder::new()
        .name(name.into())
        .stack_size(64 * 1024)
        .spawn(move || {
            // Ends on EOF or EIO (the pty's other side is closed); both are the normal end.
            let _ = std::io::copy(&mut from, &mut to);
        })
        .map(drop)
        .map_err(IoError::Thread)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn fifo(dir: &Path, name: &str) -> String {
        let path = dir.join(name);
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        path.to_str().unwrap().to_string()
    }

    /// `ctr run` closes its side of the stdin FIFO at its end-of-file and sends no CloseIO:
    /// the process reads what was written, then end-of-file. (With the shim's own writer on the
    /// FIFO this replaced, `echo hi | ctr run ... cat` never ended.)
    #[test]
    fn stdin_ends_when_the_caller_closes_its_side() {
        let dir = tempfile::tempdir().unwrap();
        let stdin = fifo(dir.path(), "in");
        let paths = StdioPaths {
            stdin: stdin.clone(),
            ..Default::default()
        };
        let (io, _shim) = open_direct(&paths).unwrap();
        let mut process = File::from(io.stdin.unwrap());
        // The caller attaches after the shim opened the FIFO: nothing ends before it came.
        std::thread::sleep(std::time::Duration::from_millis(50));
        let mut caller = OpenOptions::new().write(true).open(&stdin).unwrap();
        caller.write_all(b"hello").unwrap();
        drop(caller);
        let mut all = Vec::new();
        process.read_to_end(&mut all).unwrap();
        assert_eq!(all, b"hello");
    }

    /// CloseIO ends the process's stdin while the caller still holds its side open, after what
    /// the caller wrote.
    #[test]
    fn close_io_ends_stdin_after_what_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let stdin = fifo(dir.path(), "in");
        let paths = StdioPaths {
            stdin: stdin.clone(),
            ..Default::default()
        };
        let (io, mut shim) = open_direct(&paths).unwrap();
        let mut caller = OpenOptions::new().write(true).open(&stdin).unwrap();
        caller.write_all(b"hi").unwrap();
        let mut process = File::from(io.stdin.unwrap());
        let mut buf = [0u8; 2];
        process.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"hi");
        caller.write_all(b"!").unwrap();
        shim.close_stdin();
        let mut rest = Vec::new();
        process.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, b"!");
        drop(caller);
    }

    #[test]
    fn output_fifo_opens_without_reader_and_file_uri_appends() {
        let dir = tempfile::tempdir().unwrap();
        let out = fifo(dir.path(), "out");
        let file = dir.path().join("log/err.txt");
        let paths = StdioPaths {
            stdout: out,
            stderr: format!("file://{}", file.display()),
            ..Default::default()
        };
        let (io, _) = open_direct(&paths).unwrap();
        File::from(io.stderr.unwrap()).write_all(b"e").unwrap();
        File::from(io.stdout.unwrap()).write_all(b"o").unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"e");
    }

    #[test]
    fn binary_uri_is_refused() {
        let paths = StdioPaths {
            stdout: "binary:///usr/bin/logger".into(),
            ..Default::default()
        };
        assert!(matches!(
            open_direct(&paths),
            Err(IoError::Unsupported(uri)) if uri == "binary:///usr/bin/logger"
        ));
    }
}
