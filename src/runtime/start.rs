//! `start`: releases a created container's init from the exec fifo so that it executes the
//! user's program, then runs the poststart hooks (runtime-spec "start", Lifecycle steps 7-9).

use std::fs::File;
use std::io::Read;
use std::os::fd::AsFd;

use nix::fcntl::{open, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::stat::Mode;

use crate::runtime::container::{Container, Created, Running};
use crate::runtime::hooks::{self, HookPoint};
use crate::runtime::state::{liveness, Liveness, StateReport, Status};

/// Errors of `start`.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// the exec fifo could not be used
    #[error("container {id}: exec fifo: {source}")]
    Fifo {
        /// Container id.
        id: String,
        /// The errno.
        #[source]
        source: nix::errno::Errno,
    },
    /// init exited before it could be started
    #[error("container {0}: its init process exited before start")]
    InitExited(String),
    /// init failed between start and running the program (startContainer hook, exec)
    #[error("container {id}: {message}")]
    Init {
        /// Container id.
        id: String,
        /// What init reported.
        message: String,
    },
}

impl Container<Created> {
    /// Starts the container.
    ///
    /// # Errors
    /// If the fifo cannot be opened or init died; the container is handed back unchanged.
    #[tracing::instrument(skip_all, fields(id = %self.id()))]
    pub fn start(self) -> Result<Container<Running>, (Self, StartError)> {
        if let Err(e) = self.release_init() {
            return Err((self, e));
        }
        let _ = std::fs::remove_file(self.dir.fifo_path());
        // runtime-spec "Lifecycle" step 9: a failing poststart hook is a warning only.
        if let Some(list) = self
            .state
            .config
            .hooks()
            .as_ref()
            .and_then(|h| h.poststart().as_ref())
        {
            let report = StateReport::new(&self.state, Status::Running);
            hooks::run_all_warn(HookPoint::Poststart, list, &report);
        }
        Ok(self.into_running())
    }

    /// Opens the fifo (which lets init go), then reads it to end of file: init writes one byte
    /// when released and keeps its end open until execve closes it, or writes why it failed.
    fn release_init(&self) -> Result<(), StartError> {
        let fifo_err = |source| StartError::Fifo {
            id: self.id().to_string(),
            source,
        };
        // Non-blocking open: a blocking one would hang forever if init died before opening
        // its end. Poll instead, checking that init is still alive.
        let fd = open(
            &self.dir.fifo_path(),
            OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(fifo_err)?;
        let mut file = File::from(fd);
        let mut received: Vec<u8> = Vec::new();
        loop {
            let mut fds = [PollFd::new(file.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(10u8)) {
                Ok(0) | Err(nix::errno::Errno::EINTR) => {}
                Ok(_) => {
                    let mut buf = [0u8; 4096];
                    match file.read(&mut buf) {
                        // End of file after init's byte: every writer is gone, so init has
                        // executed the program (or died: then it wrote why, or the pid is dead).
                        Ok(0) if !received.is_empty() => return self.outcome(&received),
                        Ok(0) => {}
                        Ok(n) => received.extend_from_slice(&buf[..n]),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(e) => {
                            return Err(fifo_err(nix::errno::Errno::from_raw(
                                e.raw_os_error().unwrap_or(libc::EIO),
                            )))
                        }
                    }
                }
                Err(e) => return Err(fifo_err(e)),
            }
            // A writer that went away without a byte is an init that died: do not spin on the
            // hang-up, look at the pid.
            if received.is_empty()
                && liveness(self.state.pid, self.state.pid_start_time) == Liveness::Dead
            {
                return Err(StartError::InitExited(self.id().to_string()));
            }
        }
    }

    fn outcome(&self, received: &[u8]) -> Result<(), StartError> {
        let message = String::from_utf8_lossy(&received[1..]).trim().to_string();
        if message.is_empty() {
            Ok(())
        } else {
            Err(StartError::Init {
                id: self.id().to_string(),
                message,
            })
        }
    }
}
