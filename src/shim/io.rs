//! Container stdio: the FIFOs or files containerd names for a process, handed straight to the
//! process when it has no terminal, or copied to and from the pty master the runtime sends over
//! the console socket when it has one.

use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::fcntl::{fcntl, FcntlArg, OFlag};

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

/// Opens the stdin FIFO for reading without waiting for a writer, and a writer of our own that
/// keeps the process from reading end-of-file before the caller attached; dropping the writer
/// (CloseIO) lets end-of-file through once the caller closes its side too.
fn open_input(name: &str) -> Result<Option<(File, File)>, IoError> {
    if name.is_empty() {
        return Ok(None);
    }
    if name.contains("://") {
        return Err(IoError::Unsupported(name.to_string()));
    }
    let path = Path::new(name);
    let reader = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(open_err(path))?;
    let keeper = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(open_err(path))?;
    // The process reads with blocking semantics.
    fcntl(reader.as_fd(), FcntlArg::F_SETFL(OFlag::empty())).map_err(|e| IoError::Open {
        path: path.to_path_buf(),
        source: e.into(),
    })?;
    Ok(Some((reader, keeper)))
}

/// The shim's side of a process's stdio, kept as long as the process record lives.
#[derive(Debug, Default)]
pub struct ShimIo {
    /// Our writer on the stdin FIFO (see [`open_input`]); dropped by CloseIO.
    stdin_keeper: Option<File>,
    /// The pty master, for resizes.
    console: Option<Arc<OwnedFd>>,
}

impl ShimIo {
    /// Closes the shim's hold on stdin (CloseIO), so the process sees end-of-file once the caller
    /// closed its side.
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
        Some((reader, keeper)) => (Some(OwnedFd::from(reader)), Some(keeper)),
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
    if let Some((reader, stdin_keeper)) = open_input(&paths.stdin)? {
        keeper = Some(stdin_keeper);
        let to_master = File::from(master.try_clone().map_err(IoError::Thread)?);
        spawn_copy("pty-in", reader, to_master)?;
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

    #[test]
    fn stdin_sees_eof_only_after_close_io_and_caller_close() {
        let dir = tempfile::tempdir().unwrap();
        let stdin = fifo(dir.path(), "in");
        let paths = StdioPaths {
            stdin: stdin.clone(),
            ..Default::default()
        };
        let (io, mut shim) = open_direct(&paths).unwrap();
        let mut caller = OpenOptions::new().write(true).open(&stdin).unwrap();
        caller.write_all(b"hi").unwrap();
        drop(caller);
        let mut process = File::from(io.stdin.unwrap());
        let mut buf = [0u8; 2];
        process.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"hi");
        shim.close_stdin();
        let mut rest = Vec::new();
        process.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
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
