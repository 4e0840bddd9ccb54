//! `kill`: sends a signal to the container's init, or with `--all` to every process of its
//! cgroup (runtime-spec "kill").

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::runtime::cgroups::CgroupError;
use crate::runtime::container::{Container, Live, Signalable};
use crate::runtime::state::{liveness, Liveness, PersistedState};

/// Errors of `kill`.
#[derive(Debug, thiserror::Error)]
pub enum KillError {
    /// the signal could not be delivered (or, for signal 0, the process is gone)
    #[error("cannot send {} to container {id}", signal_name(*.signal))]
    Signal {
        /// Container id.
        id: String,
        /// The signal; `None` is signal 0.
        signal: Option<Signal>,
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

/// `SIGKILL`, or `signal 0` for the probe.
fn signal_name(signal: Option<Signal>) -> &'static str {
    signal.map_or("signal 0", Signal::as_str)
}

impl<S: Signalable> Container<S> {
    /// Sends `signal` to init, or to every process of the cgroup with `all`. `None` is signal 0,
    /// kill(2)'s probe: nothing is delivered, but a process that is gone is an error.
    ///
    /// # Errors
    /// If the signal cannot be sent, the probe finds init gone, or the cgroup cannot be read.
    #[tracing::instrument(skip_all, fields(id = %self.id(), signal = signal_name(signal), all))]
    pub fn kill(&self, signal: Option<Signal>, all: bool) -> Result<(), KillError> {
        send(&self.state, signal, all)?;
        if S::FROZEN && signal == Some(Signal::SIGKILL) {
            // A frozen process cannot die until it is thawed (v1 freezer); the container is
            // on its way to `stopped`, so leaving it frozen would only keep it from getting
            // there. A thaw that fails leaves it as the v1 kernel has it: killed on resume.
            if let Err(e) = self.state.cgroup.freeze(false) {
                tracing::debug!(error = %e, "cannot thaw the killed container");
            }
        }
        Ok(())
    }
}

/// Sends `signal` to the container's init, or with `all` to every process of its cgroup: the
/// delivery behind [`Container::kill`] and `delete --force`, which decide in which states.
///
/// # Errors
/// As [`Container::kill`].
pub(crate) fn send(
    state: &PersistedState,
    signal: Option<Signal>,
    all: bool,
) -> Result<(), KillError> {
    let init = Pid::from_raw(state.pid);
    let send_to = |pid: Pid| match kill(pid, signal) {
        Ok(()) => Ok(()),
        // A real signal to a process that exited since the container was loaded changes
        // nothing, nor does any other process of the cgroup that exited meanwhile; the probe
        // exists to tell whether init did.
        Err(nix::errno::Errno::ESRCH) if signal.is_some() || pid != init => Ok(()),
        Err(source) => Err(KillError::Signal {
            id: state.id.clone(),
            signal,
            source,
        }),
    };
    // The pid was checked alive with its start time when the container was loaded.
    if !all {
        return send_to(init);
    }
    if signal.is_none() {
        send_to(init)?;
    }
    let procs = state.cgroup.procs().map_err(|source| KillError::Cgroup {
        id: state.id.clone(),
        source: Box::new(source),
    })?;
    for pid in procs {
        send_to(pid)?;
    }
    Ok(())
}

impl<S: Live> Container<S> {
    /// Whether init is still the same live process.
    pub fn init_alive(&self) -> bool {
        liveness(self.state.pid, self.state.pid_start_time) == Liveness::Alive
    }
}
