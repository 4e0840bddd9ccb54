//! Building the container's root filesystem inside its new mount namespace: propagation, the
//! `mounts` list, devices, the switch into the new root, then sysctls, masked and read-only paths.
//! A container without a mount namespace gets the same mounts in the runtime's (host) namespace,
//! on a private bind of its rootfs that `delete` unmounts again (`host`).
//!
//! Every path inside the container is resolved with openat2(2) `RESOLVE_IN_ROOT` and the mount is
//! made on `/proc/self/fd/<fd>` (runc's approach), so symlinks in the image cannot redirect a
//! mount, a device node or a mask to the host.

mod devices;
mod finalize;
mod host;
mod inroot;
mod mounts;
mod options;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use oci_spec::runtime::Spec;

use crate::runtime::cgroups::Cgroup;
use crate::sys::kernel_files::{mountinfo, KernelFileError};
pub use host::{release_host_mounts, HostRootfs};

pub use options::{OptionError, MOUNT_OPTIONS};

use inroot::RootDir;

/// Errors while building the root filesystem.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    /// recursive mount attributes (rro, rnosuid, ...) could not be set
    #[error("cannot set recursive mount attributes on {destination}")]
    RecursiveAttributes {
        /// The mount destination.
        destination: PathBuf,
        /// What mount_setattr(2) said.
        #[source]
        source: Errno,
    },
    /// `linux.rootfsPropagation` is not one of the known modes
    #[error("unknown rootfs propagation {0:?}")]
    UnknownPropagation(String),
    /// setting the propagation of the whole tree failed
    #[error("cannot set rootfs propagation {propagation:?}")]
    Propagation {
        propagation: String,
        #[source]
        source: Errno,
    },
    /// the mount holding the rootfs could not be made private
    #[error("cannot make {mount_point} (the mount holding the rootfs) private")]
    ParentPrivate {
        mount_point: PathBuf,
        #[source]
        source: Errno,
    },
    /// /proc/self/mountinfo or /proc/self/cgroup could not be read or parsed
    #[error(transparent)]
    ProcFile(#[from] KernelFileError),
    /// /proc/cgroups could not be read
    #[error("cannot read {path}")]
    ReadProc {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// the rootfs path is unusable
    #[error("cannot resolve the rootfs {rootfs}")]
    RootfsPath {
        rootfs: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// binding the rootfs onto itself failed
    #[error("cannot bind-mount the rootfs {rootfs} onto itself")]
    RootfsBind {
        rootfs: PathBuf,
        #[source]
        source: Errno,
    },
    /// the rootfs bind of a container without a mount namespace could not be made private
    #[error("cannot make the rootfs bind {rootfs} private")]
    RootfsPrivate {
        rootfs: PathBuf,
        #[source]
        source: Errno,
    },
    /// without a mount namespace, the container's rootfs bind is not in the host's mount table
    #[error("cannot find the bind of {rootfs} the container made in the host's mount table")]
    NoHostBind { rootfs: PathBuf },
    /// a mount the container made on the host could not be unmounted
    #[error("cannot unmount {mount_point}, which the container mounted on the host")]
    Unmount {
        mount_point: PathBuf,
        #[source]
        source: Errno,
    },
    /// mounts the container made on the host are still there after unmounting them
    #[error("{count} mounts the container made below {rootfs} are still on the host")]
    MountsLeft { rootfs: PathBuf, count: usize },
    /// chroot into the rootfs (no mount namespace) failed
    #[error("cannot chroot into {rootfs}")]
    Chroot {
        rootfs: PathBuf,
        #[source]
        source: Errno,
    },
    /// opening the rootfs (or, after the switch, `/`) failed
    #[error("cannot open the root directory {rootfs}")]
    OpenRoot {
        rootfs: PathBuf,
        #[source]
        source: Errno,
    },
    /// a mount option is known but refused
    #[error("refused mount option for {destination}")]
    MountOption {
        destination: PathBuf,
        #[source]
        source: OptionError,
    },
    /// `uidMappings`/`gidMappings` on a mount
    #[error("id-mapped mount on {destination} (uidMappings/gidMappings) is not supported yet")]
    IdMappedMount { destination: PathBuf },
    /// a mount type that needs a `type` has none
    #[error("mount on {destination} has no type and is not a bind mount")]
    MissingType { destination: PathBuf },
    /// a mount below /proc that is not one of the lxcfs-style files runc allows
    #[error("{destination} cannot be mounted because it is inside /proc")]
    InsideProc { destination: PathBuf },
    /// a bind mount onto /proc whose source is not a procfs
    #[error("{destination} cannot be mounted because its source is not of type proc")]
    ProcNotProcfs { destination: PathBuf },
    /// proc and sysfs must be mounted on a real directory, not a symlink or a file
    #[error("{fstype} must be mounted on an ordinary directory, {destination} is not one")]
    NotADirectory {
        destination: PathBuf,
        fstype: String,
    },
    /// a bind source is missing or unreadable
    #[error("bind source {source_path} for {destination} is not usable")]
    BindSource {
        destination: PathBuf,
        source_path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// the destination could not be resolved or created inside the rootfs
    #[error("cannot create mount destination {destination} inside the rootfs")]
    CreateDestination {
        destination: PathBuf,
        #[source]
        source: Errno,
    },
    /// the mount call failed
    #[error("cannot mount {fstype} on {destination}")]
    Mount {
        destination: PathBuf,
        fstype: String,
        #[source]
        source: Errno,
    },
    /// the remount that applies flags (ro, nosuid, ...) failed
    #[error("cannot remount {destination} with {flags:?}")]
    Remount {
        destination: PathBuf,
        flags: MsFlags,
        #[source]
        source: Errno,
    },
    /// a propagation option could not be applied
    #[error("cannot set propagation {flags:?} on {destination}")]
    Propagate {
        destination: PathBuf,
        flags: MsFlags,
        #[source]
        source: Errno,
    },
    /// tmpcopyup failed
    #[error("cannot copy the previous contents of {destination} into its tmpfs")]
    CopyUp {
        destination: PathBuf,
        #[source]
        source: Errno,
    },
    /// no cgroup hierarchy/cgroup could be found for a cgroup mount
    #[error("cannot find the container's cgroup for {destination}: {reason}")]
    CgroupPath {
        destination: PathBuf,
        reason: String,
    },
    /// a `linux.devices` entry is not a device
    #[error("invalid device {path}: {reason}")]
    InvalidDevice { path: PathBuf, reason: &'static str },
    /// creating or binding a device node failed
    #[error("cannot create device {path}")]
    Device {
        path: PathBuf,
        #[source]
        source: Errno,
    },
    /// a /dev symlink could not be made
    #[error("cannot create /dev symlink {link}")]
    DevSymlink {
        link: PathBuf,
        #[source]
        source: Errno,
    },
    /// pivot_root and its dance failed
    #[error("cannot pivot_root into {rootfs}")]
    PivotRoot {
        rootfs: PathBuf,
        #[source]
        source: Errno,
    },
    /// the `--no-pivot` move-and-chroot failed
    #[error("cannot move {rootfs} onto / and chroot into it")]
    MoveRoot {
        rootfs: PathBuf,
        #[source]
        source: Errno,
    },
    /// a host procfs/sysfs could not be hidden before chroot
    #[error("cannot hide the host mount {mount_point} before chroot")]
    HideHostMount {
        mount_point: PathBuf,
        #[source]
        source: Errno,
    },
    /// a sysctl key that could escape /proc/sys or is malformed
    #[error("invalid sysctl key {key:?}")]
    InvalidSysctlKey { key: String },
    /// writing a sysctl failed
    #[error("cannot set sysctl {key}")]
    Sysctl {
        key: String,
        #[source]
        source: std::io::Error,
    },
    /// the container's /dev/null is not the null device, so masking with it would expose data
    #[error("cannot mask {path}: /dev/null in the container is not the null device")]
    FakeDevNull { path: PathBuf },
    /// masking a path failed
    #[error("cannot mask {path}")]
    Mask {
        path: PathBuf,
        #[source]
        source: Errno,
    },
    /// making a path read-only failed
    #[error("cannot make {path} read-only")]
    ReadonlyPath {
        path: PathBuf,
        #[source]
        source: Errno,
    },
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
    /// The container has a mount namespace of its own (new or joined). Without one, its mounts
    /// are made in the runtime's namespace: `/` keeps its propagation, the rootfs bind is made
    /// private, and init chroots (runtime-spec config-linux "Namespaces": a type not listed is
    /// inherited from the runtime).
    pub mount_namespace: bool,
    /// The container has its own user namespace (devices are bind-mounted, not mknod'ed).
    pub user_namespace: bool,
    /// The container has its own cgroup namespace (cgroup mounts show the container's own cgroup).
    pub cgroup_namespace: bool,
    /// The container's cgroup (its path in each hierarchy); what a `cgroup` mount shows without
    /// a cgroup namespace. `None`: the init process's own cgroups from /proc/self/cgroup.
    pub cgroup: Option<Cgroup>,
}

/// `linux.rootfsPropagation` as mount(2) flags; runc's default is `rslave`.
fn rootfs_propagation(value: Option<&str>) -> Result<MsFlags, RootfsError> {
    Ok(match value.unwrap_or("") {
        "" | "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        other => return Err(RootfsError::UnknownPropagation(other.to_owned())),
    })
}

/// Step 1, in the container's mount namespace before pivot_root: propagation, the rootfs bind,
/// every `mounts` entry in order, default devices, /dev symlinks, spec devices.
///
/// # Errors
/// Fails with the mount or path that could not be set up: an unknown `rootfsPropagation`, a
/// refused option (`idmap`, `rro`, ...), a destination inside /proc, a missing bind source, a
/// failed mount(2), mknod(2) or symlink.
#[tracing::instrument(skip_all, fields(rootfs = %ctx.rootfs.display()))]
pub fn prepare(spec: &Spec, ctx: &RootfsContext) -> Result<(), RootfsError> {
    let linux = spec.linux().as_ref();
    if ctx.mount_namespace {
        let propagation = linux.and_then(|l| l.rootfs_propagation().as_deref());
        let flags = rootfs_propagation(propagation)?;
        // runtime-spec config-linux "Rootfs Mount Propagation"; runc prepareRoot. Only in a
        // namespace of the container's own: in the host's, this would change every host mount
        // (create refuses rootfsPropagation without a mount namespace).
        nix::mount::mount(None::<&str>, "/", None::<&str>, flags, None::<&str>).map_err(
            |source| RootfsError::Propagation {
                propagation: propagation.unwrap_or("rslave").to_owned(),
                source,
            },
        )?;
    }

    let rootfs = std::fs::canonicalize(&ctx.rootfs).map_err(|source| RootfsError::RootfsPath {
        rootfs: ctx.rootfs.clone(),
        source,
    })?;
    if ctx.mount_namespace {
        // Without a mount namespace the parent is a host mount, whose propagation stays the
        // host's; chroot, unlike pivot_root, does not need it private.
        make_parent_private(&rootfs)?;
    }
    // Without a mount namespace too: the container's root must be a mount of its own, so that
    // `root.readonly` remounts the container's root and not the host filesystem holding it,
    // and so that delete finds everything the container mounted in one tree.
    nix::mount::mount(
        Some(&rootfs),
        &rootfs,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|source| RootfsError::RootfsBind {
        rootfs: rootfs.clone(),
        source,
    })?;
    if !ctx.mount_namespace {
        // The bind is a host mount now: private (with the copies MS_REC brought along), nothing
        // the container mounts below it reaches the host's other mounts, nor theirs it.
        nix::mount::mount(
            None::<&str>,
            &rootfs,
            None::<&str>,
            MsFlags::MS_PRIVATE | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|source| RootfsError::RootfsPrivate {
            rootfs: rootfs.clone(),
            source,
        })?;
    }
    // Opened after the bind, so lookups start on the new mount and see what we mount below it.
    let root = RootDir::open(&rootfs).map_err(|source| RootfsError::OpenRoot {
        rootfs: rootfs.clone(),
        source,
    })?;

    let spec_mounts = spec.mounts().as_deref().unwrap_or(&[]);
    for mount in spec_mounts {
        mounts::mount_entry(&root, ctx, mount)?;
    }

    if devices::needs_dev_setup(spec_mounts) {
        let spec_devices = linux.and_then(|l| l.devices().as_deref()).unwrap_or(&[]);
        devices::create_devices(&root, spec_devices, ctx.user_namespace)?;
        if devices::has_devpts(spec_mounts) {
            devices::setup_ptmx(&root)?;
        }
        devices::create_dev_symlinks(&root)?;
    }
    Ok(())
}

/// runc rootfsParentMountPrivate: pivot_root fails when the mount holding the new root is shared,
/// and a shared parent would propagate our rootfs bind back to the host.
fn make_parent_private(rootfs: &std::path::Path) -> Result<(), RootfsError> {
    let mounts = mountinfo::read(None)?;
    let Some(parent) = mountinfo::covering(&mounts, rootfs) else {
        return Ok(());
    };
    if parent.optional.iter().any(|o| o.starts_with("shared:")) {
        tracing::debug!(mount_point = %parent.mount_point.display(), "making rootfs parent mount private");
        nix::mount::mount(
            None::<&str>,
            &parent.mount_point,
            None::<&str>,
            MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .map_err(|source| RootfsError::ParentPrivate {
            mount_point: parent.mount_point.clone(),
            source,
        })?;
    }
    Ok(())
}

/// Step 2, after the createContainer hooks: pivot_root (or chroot with `no_pivot`) into the
/// rootfs; without a mount namespace, a plain chroot (runc does the same), since moving or
/// pivoting would change the host's root and hiding host mounts would unmount the host's.
///
/// # Errors
/// Fails if the root cannot be switched: pivot_root(2), the detach of the old root, (with
/// `no_pivot`) the MS_MOVE, or chroot(2).
#[tracing::instrument(skip_all, fields(rootfs = %ctx.rootfs.display(), no_pivot = ctx.no_pivot))]
pub fn enter(ctx: &RootfsContext) -> Result<(), RootfsError> {
    let rootfs = std::fs::canonicalize(&ctx.rootfs).map_err(|source| RootfsError::RootfsPath {
        rootfs: ctx.rootfs.clone(),
        source,
    })?;
    if !ctx.mount_namespace {
        chroot_root(&rootfs)
    } else if ctx.no_pivot {
        move_root(&rootfs)
    } else {
        pivot_root(&rootfs)
    }
}

/// The root switch of a container without a mount namespace.
fn chroot_root(rootfs: &std::path::Path) -> Result<(), RootfsError> {
    let err = |source| RootfsError::Chroot {
        rootfs: rootfs.to_path_buf(),
        source,
    };
    // The path resolves to the topmost mount at the rootfs, the container's bind.
    nix::unistd::chdir(rootfs).map_err(err)?;
    nix::unistd::chroot(".").map_err(err)?;
    nix::unistd::chdir("/").map_err(err)?;
    tracing::debug!("chrooted into the rootfs (no mount namespace)");
    Ok(())
}

/// runc pivotRoot: pivot_root(".", ".") stacks the old root on top of the new one at "/", so no
/// directory for the old root is needed inside the image.
fn pivot_root(rootfs: &std::path::Path) -> Result<(), RootfsError> {
    let err = |source| RootfsError::PivotRoot {
        rootfs: rootfs.to_path_buf(),
        source,
    };
    let dir_flags =
        nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC;
    let old_root = nix::fcntl::open("/", dir_flags, nix::sys::stat::Mode::empty()).map_err(err)?;
    let new_root =
        nix::fcntl::open(rootfs, dir_flags, nix::sys::stat::Mode::empty()).map_err(err)?;
    nix::unistd::fchdir(&new_root).map_err(err)?;
    nix::unistd::pivot_root(".", ".").map_err(err)?;
    // "." is now the old root, stacked over the new one.
    nix::unistd::fchdir(&old_root).map_err(err)?;
    // Slave first, so the unmount below does not propagate to the host.
    nix::mount::mount(
        None::<&str>,
        ".",
        None::<&str>,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(err)?;
    nix::mount::umount2(".", MntFlags::MNT_DETACH).map_err(err)?;
    nix::unistd::chdir("/").map_err(err)?;
    tracing::debug!("pivoted into the rootfs");
    Ok(())
}

/// runc msMoveRoot (`--no-pivot`): the host's procfs and sysfs stay reachable in the namespace
/// after a chroot, and a reachable full procfs lets the kernel allow new procfs mounts; hide them
/// first, then move the rootfs onto / and chroot.
fn move_root(rootfs: &std::path::Path) -> Result<(), RootfsError> {
    let mounts = mountinfo::read(None)?;
    for m in mounts.iter().rev() {
        if (m.fs_type != "proc" && m.fs_type != "sysfs") || m.mount_point.starts_with(rootfs) {
            continue;
        }
        let hide_err = |source| RootfsError::HideHostMount {
            mount_point: m.mount_point.clone(),
            source,
        };
        match nix::mount::mount(
            None::<&str>,
            &m.mount_point,
            None::<&str>,
            MsFlags::MS_SLAVE | MsFlags::MS_REC,
            None::<&str>,
        ) {
            Ok(()) => {}
            // Already gone with a parent we detached.
            Err(Errno::ENOENT | Errno::EINVAL) => continue,
            Err(e) => return Err(hide_err(e)),
        }
        match nix::mount::umount2(&m.mount_point, MntFlags::MNT_DETACH) {
            Ok(()) => {}
            Err(Errno::EINVAL | Errno::EPERM) => {
                nix::mount::mount(
                    Some("tmpfs"),
                    &m.mount_point,
                    Some("tmpfs"),
                    MsFlags::empty(),
                    None::<&str>,
                )
                .map_err(hide_err)?;
            }
            Err(e) => return Err(hide_err(e)),
        }
    }
    let err = |source| RootfsError::MoveRoot {
        rootfs: rootfs.to_path_buf(),
        source,
    };
    nix::unistd::chdir(rootfs).map_err(err)?;
    nix::mount::mount(
        Some(rootfs),
        "/",
        None::<&str>,
        MsFlags::MS_MOVE,
        None::<&str>,
    )
    .map_err(err)?;
    nix::unistd::chroot(".").map_err(err)?;
    nix::unistd::chdir("/").map_err(err)?;
    tracing::debug!("moved the rootfs onto / and chrooted");
    Ok(())
}

/// Step 3, inside the new root: sysctl, maskedPaths, readonlyPaths, readonly root, /dev remount.
///
/// Order as runc (finalizeRootfs, then the init): /dev read-only, root read-only, sysctls,
/// readonlyPaths, maskedPaths.
///
/// # Errors
/// Fails with the path or key that could not be applied: an invalid sysctl key or a failed write,
/// a mask or read-only bind that failed (missing paths are skipped), a container /dev/null that
/// is not the null device.
#[tracing::instrument(skip_all)]
pub fn finalize(spec: &Spec, ctx: &RootfsContext) -> Result<(), RootfsError> {
    let _ = ctx;
    finalize::finalize(spec)
}
