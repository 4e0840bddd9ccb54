//! `delete`: removes a stopped container's cgroup and state, then runs the poststop hooks
//! (runtime-spec "delete", Lifecycle steps 11-12). `--force` first kills a live container.

use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};

use crate::runtime::cgroups::CgroupError;
use crate::runtime::container::{Container, Live, Stopped};
use crate::runtime::hooks::{self, HookPoint};
use crate::runtime::kill::{self, KillError};
use crate::runtime::rootfs::{self, RootfsError};
use crate::runtime::state::{StateError, StateReport, Status};

/// Errors of `delete`.
#[derive(Debug, thiserror::Error)]
pub enum DeleteError {
    /// killing the container failed
    #[error(transparent)]
    Kill(#[from] KillError),
    /// the container did not die after SIGKILL
    #[error("container {0} is still alive after SIGKILL")]
    StillAlive(String),
    /// what the container mounted on the host (no mount namespace) could not be unmounted
    #[error("container {id}: cannot unmount what it mounted on the host")]
    HostMounts {
        /// Container id.
        id: String,
        /// The error.
        #[source]
        source: Box<RootfsError>,
    },
    /// the cgroup could not be removed
    #[error("container {id}: cannot remove its cgroup")]
    Cgroup {
        /// Container id.
        id: String,
        /// The error.
        #[source]
        source: Box<CgroupError>,
    },
    /// the state could not be removed
    #[error(transparent)]
    State(#[from] StateError),
}

impl<S: Live> Container<S> {
    /// Kills every process of the container and waits until init is gone (`delete --force`).
    /// A paused container too, as runc's `delete --force` ends it.
    ///
    /// # Errors
    /// If the signal fails or init survives; the container is handed back.
    #[tracing::instrument(skip_all, fields(id = %self.id()))]
    pub fn stop_forcibly(self) -> Result<Container<Stopped>, (Self, DeleteError)> {
        // Only a cgroup the container made is all its own to kill.
        let all = self.state.cgroup_owned;
        if let Err(e) = kill::send(&self.state, Some(Signal::SIGKILL), all) {
            // Without a readable cgroup, killing init still stops the container.
            tracing::debug!(error = %e, "cannot kill the whole cgroup; killing init only");
            if let Err(e) = kill::send(&self.state, Some(Signal::SIGKILL), false) {
                return Err((self, e.into()));
            }
        }
        // A frozen process cannot die until it is thawed.
        let _ = self.state.cgroup.freeze(false);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.init_alive() {
            if Instant::now() >= deadline {
                let id = self.id().to_string();
                return Err((self, DeleteError::StillAlive(id)));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(self.into_stopped())
    }
}

impl Container<Stopped> {
    /// Deletes the container.
    ///
    /// # Errors
    /// If the mounts it left on the host, the cgroup or the state cannot be removed.
    #[tracing::instrument(skip_all, fields(id = %self.id()))]
    pub fn delete(self) -> Result<(), DeleteError> {
        let id = self.id().to_string();
        // A cgroup the container made is its own: processes left in it (a container sharing
        // the host pid namespace can leave some behind its init) die with it, and it goes. A
        // cgroup it joined belongs to someone else and stays, with its other processes.
        if self.state.cgroup_owned {
            if let Ok(procs) = self.state.cgroup.procs() {
                for pid in procs {
                    let _ = kill(pid, Signal::SIGKILL);
                }
                let _ = self.state.cgroup.freeze(false);
            }
        }
        // runtime-spec "delete": the resources create made go, and without a mount namespace
        // the container's mounts are such resources on the host.
        if let Some(mount) = self.state.rootfs_mount {
            rootfs::release_host_mounts(&self.state.rootfs, mount).map_err(|source| {
                DeleteError::HostMounts {
                    id: id.clone(),
                    source: Box::new(source),
                }
            })?;
        }
        if self.state.cgroup_owned {
            self.state
                .cgroup
                .destroy()
                .map_err(|source| DeleteError::Cgroup {
                    id: id.clone(),
                    source: Box::new(source),
                })?;
        }
        let report = StateReport::new(&self.state, Status::Stopped);
        let poststop = self
            .state
            .config
            .hooks()
            .as_ref()
            .and_then(|h| h.poststop().clone());
        self.dir.remove()?;
        // runtime-spec "Lifecycle" step 12: a failing poststop hook is a warning only.
        if let Some(list) = poststop {
            hooks::run_all_warn(HookPoint::Poststop, &list, &report);
        }
        Ok(())
    }
}
