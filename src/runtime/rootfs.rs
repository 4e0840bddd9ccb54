//! Building the container's root filesystem inside its new mount namespace.
//!
//! PLACEHOLDER: the interface below is the contract; the implementation lands from the rootfs work.

use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;

/// Errors while building the root filesystem.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    /// rootfs setup is not implemented yet
    #[error("rootfs setup is not implemented yet")]
    Unimplemented,
}

/// What rootfs setup needs besides the spec.
#[derive(Debug, Clone)]
pub struct RootfsContext {
    /// Absolute host path of the root filesystem (bundle-relative `root.path` already resolved).
    pub rootfs: PathBuf,
    /// The bundle directory (relative bind sources resolve against it).
    pub bundle: PathBuf,
    /// `--no-pivot`: chroot instead of pivot_root.
    pub no_pivot: bool,
    /// The container has its own user namespace (devices are bind-mounted, not mknod'ed).
    pub user_namespace: bool,
    /// The container has its own cgroup namespace (cgroup mounts show the container's own cgroup).
    pub cgroup_namespace: bool,
}

/// Step 1, in the container's mount namespace before pivot_root: propagation, the rootfs bind,
/// every `mounts` entry in order, default devices, /dev symlinks, spec devices.
///
/// # Errors
/// Fails with the mount or path that could not be set up.
pub fn prepare(_spec: &Spec, _ctx: &RootfsContext) -> Result<(), RootfsError> {
    Err(RootfsError::Unimplemented)
}

/// Step 2, after the createContainer hooks: pivot_root (or chroot with `no_pivot`) into the rootfs.
///
/// # Errors
/// Fails if the root cannot be switched.
pub fn enter(_ctx: &RootfsContext) -> Result<(), RootfsError> {
    Err(RootfsError::Unimplemented)
}

/// Step 3, inside the new root: sysctl, maskedPaths, readonlyPaths, readonly root, /dev remount.
///
/// # Errors
/// Fails with the path or key that could not be applied.
pub fn finalize(_spec: &Spec, _ctx: &RootfsContext) -> Result<(), RootfsError> {
    Err(RootfsError::Unimplemented)
}

#[allow(dead_code)]
fn _keep(_: &Path) {}

/// Mount options the rootfs setup understands (reported by `features`).
pub const MOUNT_OPTIONS: &[&str] = &["bind", "rbind", "ro", "rw"];
