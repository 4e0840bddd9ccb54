//! Container cgroups: driver detection (v1 on hybrid hosts, v2 on unified hosts), creation,
//! resource limits, membership and removal.
//!
//! PLACEHOLDER: the interface below is the contract; the implementation lands from the cgroups work.

use std::path::{Path, PathBuf};

use nix::unistd::Pid;
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxResources};
use serde::{Deserialize, Serialize};

/// Errors of cgroup operations.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// cgroup operation is not implemented yet
    #[error("cgroup operation is not implemented yet")]
    Unimplemented,
}

/// Which cgroup hierarchy layout the host uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Driver {
    /// One hierarchy per controller under /sys/fs/cgroup/<controller> (hybrid or legacy hosts).
    V1,
    /// The unified hierarchy mounted at /sys/fs/cgroup.
    V2,
}

/// A container's cgroup: where it lives and under which driver. Persisted in the container state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cgroup {
    /// Driver in use.
    pub driver: Driver,
    /// Path below each hierarchy's root, always absolute (`/refeng/abc`).
    pub path: PathBuf,
}

impl Cgroup {
    /// Resolves the container's cgroup from `linux.cgroupsPath` (absolute: below the hierarchy root;
    /// relative: below the calling process's own cgroup; absent: `/<id>` like runc) and detects the driver.
    ///
    /// # Errors
    /// Fails if no cgroup hierarchy is mounted or the path is not usable.
    pub fn resolve(_cgroups_path: Option<&Path>, _id: &str) -> Result<Self, CgroupError> {
        Err(CgroupError::Unimplemented)
    }

    /// Creates the cgroup and applies `resources`; `extra_device_allows` are appended after the
    /// spec's device rules (the default devices the runtime itself creates). Unsupported settings
    /// are refused with an error naming them.
    ///
    /// # Errors
    /// Fails if a directory cannot be made or a limit cannot be written.
    pub fn create(
        &self,
        _resources: Option<&LinuxResources>,
        _extra_device_allows: &[LinuxDeviceCgroup],
    ) -> Result<(), CgroupError> {
        Err(CgroupError::Unimplemented)
    }

    /// Moves `pid` into the cgroup (every hierarchy under v1).
    ///
    /// # Errors
    /// Fails if cgroup.procs cannot be written.
    pub fn add_process(&self, _pid: Pid) -> Result<(), CgroupError> {
        Err(CgroupError::Unimplemented)
    }

    /// The pids currently in the cgroup.
    ///
    /// # Errors
    /// Fails if cgroup.procs cannot be read.
    pub fn procs(&self) -> Result<Vec<Pid>, CgroupError> {
        Err(CgroupError::Unimplemented)
    }

    /// Removes the cgroup directories; a cgroup that is already gone is not an error.
    ///
    /// # Errors
    /// Fails if a directory stays busy after retries.
    pub fn destroy(&self) -> Result<(), CgroupError> {
        Err(CgroupError::Unimplemented)
    }
}

impl Cgroup {
    /// Freezes or thaws the cgroup.
    ///
    /// # Errors
    /// If the freezer cannot be written.
    pub fn freeze(&self, _frozen: bool) -> Result<(), CgroupError> {
        Err(CgroupError::Unimplemented)
    }

    /// Whether the cgroup is frozen.
    ///
    /// # Errors
    /// If the freezer cannot be read.
    pub fn is_frozen(&self) -> Result<bool, CgroupError> {
        Err(CgroupError::Unimplemented)
    }
}
