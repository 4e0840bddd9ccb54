//! `kill`: sends a signal to the container's init, or with `--all` to every process of its
//! cgroup (runtime-spec "kill").

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::runtime::cgroups::CgroupError;
use crate::runtime::container::{Container, Created, Paused, Running};
use crate::runtime::state::{liveness, Liveness};

/// Errors of `kill`.
#[derive(Debug, thiserror::Error)]
pub enum KillError {
    /// the signal could not be delivered
    #[error("cannot send {signal} to container {id}")]
    Signal {
        /// Container id.
        id: String,
        /// The signal.
        signal: Signal,
        /// The errno.
        #[source]
        source: nix::errno::Errno,
    },
    /// the cgroup's processes could not be listed
    #[error("container {id}: cannot list its processes")]
    Cgroup {
        /// Container id.
        id: String,
        /// The error.
        #[source]
        source: Box<CgroupError>,
    },
}

/// States whose processes exist and can be signalled.
pub trait Alive {}
impl Alive for Created {}
impl Alive for Running {}
impl Alive for Paused {}

impl<S: Alive> Container<S> {
    /// Sends `signal` to init, or to every process of the cgroup with `all`.
    ///
    /// # Errors
    /// If the signal cannot be sent or the cgroup cannot be read.
    #[tracing::instrument(skip_all, fields(id = %self.id(), %signal, all))]
    pub fn kill(&self, signal: Signal, all: bool) -> Result<(), KillError> {
        let send = |pid: Pid| match kill(pid, signal) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
            Err(source) => Err(KillError::Signal {
                id: self.id().to_string(),
                signal,
                source,
            }),
        };
        if !all {
            // The pid was checked alive with its start time when the container was loaded.
            return send(Pid::from_raw(self.state.pid));
        }
        let procs = self
            .state
            .cgroup
            .procs()
            .map_err(|source| KillError::Cgroup {
                id: self.id().to_string(),
                source: Box::new(source),
            })?;
        for pid in procs {
            send(pid)?;
        }
        Ok(())
    }

    /// Whether init is still the same live process.
    pub fn init_alive(&self) -> bool {
        liveness(self.state.pid, self.state.pid_start_time) == Liveness::Alive
    }
}
