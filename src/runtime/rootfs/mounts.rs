//! One `mounts` entry onto the rootfs (runtime-spec config.md "Mounts", runc mountToRootfs):
//! bind mounts with their flag remount, tmpfs with `tmpcopyup`, proc/sysfs, cgroup v1/v2, and
//! any other filesystem handed to mount(2) with its data.

use std::ffi::CStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::mount::MsFlags;
use nix::sys::stat::{Mode, SFlag};
use nix::sys::statvfs::FsFlags;
use oci_spec::runtime::Mount;

use super::inroot::{clean_relative, RootDir};
use super::options::{self, MountOptions};
use super::{RootfsContext, RootfsError};
use crate::sys::kernel_files::mountinfo::{self, MountInfo};
use crate::sys::kernel_files::proc_cgroup::ProcCgroup;
use crate::sys::openat2::proc_fd_path;

/// Files below /proc that runc lets a mount cover (lxcfs and friends).
const ALLOWED_PROC_MOUNTS: &[&str] = &[
    "/proc/cpuinfo",
    "/proc/diskstats",
    "/proc/meminfo",
    "/proc/stat",
    "/proc/swaps",
    "/proc/uptime",
    "/proc/loadavg",
    "/proc/slabinfo",
    "/proc/net/dev",
    "/proc/sys/kernel/ns_last_pid",
    "/proc/sys/crypto/fips_enabled",
];

/// Flags that a bind mount only honours through a second, `MS_REMOUNT|MS_BIND` call.
fn needs_bind_remount(flags: MsFlags) -> bool {
    !(flags & !(MsFlags::MS_REC | MsFlags::MS_REMOUNT | MsFlags::MS_BIND)).is_empty()
}

const ATIME_FLAGS: MsFlags = MsFlags::MS_NOATIME
    .union(MsFlags::MS_RELATIME)
    .union(MsFlags::MS_STRICTATIME);

/// statvfs(3)'s `ST_RELATIME`, the kernel's `MNT_RELATIME` (include/linux/statfs.h). nix names it
/// only on glibc; the value is kernel ABI, so musl builds (the shim's) read the same bit.
const ST_RELATIME: FsFlags = FsFlags::from_bits_retain(0x1000);

/// The per-mount flags of an open mount, as mount(2) flags (statvfs ST_* → MS_*): what a remount
/// in a user namespace must keep, because the kernel locks them.
pub(crate) fn current_mount_flags(fd: BorrowedFd<'_>) -> nix::Result<MsFlags> {
    let flags = nix::sys::statvfs::fstatvfs(fd)?.flags();
    let table = [
        (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (ST_RELATIME, MsFlags::MS_RELATIME),
    ];
    Ok(table
        .iter()
        .filter(|(st, _)| flags.contains(*st))
        .fold(MsFlags::empty(), |acc, (_, ms)| acc | *ms))
}

/// Remounts the bind mount at `target` with `flags`; on EPERM (locked flags in a user namespace)
/// retries with the mount's current flags kept, as runc does.
pub(crate) fn remount_bind(target: &OwnedFd, flags: MsFlags) -> nix::Result<()> {
    let path = proc_fd_path(target);
    let flags = (flags | MsFlags::MS_REMOUNT | MsFlags::MS_BIND) & !MsFlags::MS_REC;
    match nix::mount::mount(None::<&str>, &path, None::<&str>, flags, None::<&str>) {
        Err(Errno::EPERM) => {
            let locked = current_mount_flags(target.as_fd())?;
            let mut retry = flags | (locked & !ATIME_FLAGS);
            if locked.intersects(ATIME_FLAGS) {
                retry = (retry & !ATIME_FLAGS) | (locked & ATIME_FLAGS);
            }
            tracing::debug!(
                ?flags,
                ?retry,
                "remount refused, retrying with locked flags kept"
            );
            nix::mount::mount(None::<&str>, &path, None::<&str>, retry, None::<&str>)
        }
        other => other,
    }
}

/// Everything about one entry that the mount steps share.
struct Entry<'a> {
    root: &'a RootDir,
    ctx: &'a RootfsContext,
    /// Cleaned, absolute destination inside the container.
    destination: PathBuf,
    options: MountOptions,
    fstype: &'a str,
    source: Option<&'a Path>,
}

impl Entry<'_> {
    fn create_dir(&self) -> Result<OwnedFd, RootfsError> {
        self.root
            .mkdir_all(&self.destination, Mode::from_bits_truncate(0o755))
            .map_err(|source| self.create_err(source))
    }

    fn create_err(&self, source: Errno) -> RootfsError {
        RootfsError::CreateDestination {
            destination: self.destination.clone(),
            source,
        }
    }

    /// The topmost mount at the destination (an fd opened before a mount still names the
    /// directory under it).
    fn reopen(&self, flags: OFlag) -> Result<OwnedFd, RootfsError> {
        self.root
            .open_path(&self.destination, flags)
            .map_err(|source| self.create_err(source))
    }

    fn mount_err(&self, fstype: &str) -> impl Fn(Errno) -> RootfsError + '_ {
        let fstype = fstype.to_owned();
        move |source| RootfsError::Mount {
            destination: self.destination.clone(),
            fstype: fstype.clone(),
            source,
        }
    }

    fn remount_err(&self, flags: MsFlags) -> impl Fn(Errno) -> RootfsError + '_ {
        move |source| RootfsError::Remount {
            destination: self.destination.clone(),
            flags,
            source,
        }
    }

    /// Sets the recursive attributes (`rro`, ...) on the new mount and every mount below it.
    fn apply_recursive(&self) -> Result<(), RootfsError> {
        let (set, clear) = (self.options.recursive_set, self.options.recursive_clear);
        if set == 0 && clear == 0 {
            return Ok(());
        }
        let top = self.reopen(OFlag::O_PATH)?;
        crate::sys::mount_attr::set_recursive(top.as_fd(), set, clear).map_err(|source| {
            RootfsError::RecursiveAttributes {
                destination: self.destination.clone(),
                source,
            }
        })
    }

    /// Applies each propagation option with its own call on the new mount.
    fn propagate(&self) -> Result<(), RootfsError> {
        if self.options.propagation.is_empty() {
            return Ok(());
        }
        let top = self.reopen(OFlag::O_PATH)?;
        for flags in &self.options.propagation {
            nix::mount::mount(
                None::<&str>,
                &proc_fd_path(&top),
                None::<&str>,
                *flags,
                None::<&str>,
            )
            .map_err(|source| RootfsError::Propagate {
                destination: self.destination.clone(),
                flags: *flags,
                source,
            })?;
        }
        Ok(())
    }

    /// runc checkProcMount, on a destination inside the container (lexical or resolved).
    fn check_proc(
        &self,
        destination: &Path,
        source_is_procfs: impl Fn() -> bool,
    ) -> Result<(), RootfsError> {
        let proc = Path::new("/proc");
        if !destination.starts_with(proc) {
            return Ok(());
        }
        if destination == proc {
            if self.options.is_bind() && !source_is_procfs() {
                return Err(RootfsError::ProcNotProcfs {
                    destination: self.destination.clone(),
                });
            }
            return Ok(());
        }
        if ALLOWED_PROC_MOUNTS
            .iter()
            .any(|p| Path::new(p) == destination)
        {
            return Ok(());
        }
        Err(RootfsError::InsideProc {
            destination: self.destination.clone(),
        })
    }

    /// The check again on where the destination really is, after symlinks in the image.
    fn check_proc_resolved(
        &self,
        target: &OwnedFd,
        source_is_procfs: impl Fn() -> bool,
    ) -> Result<(), RootfsError> {
        match self.root.relative_location(target) {
            Some(resolved) => self.check_proc(&resolved, source_is_procfs),
            None => Ok(()),
        }
    }
}

/// Mounts one `mounts` entry onto the rootfs.
pub(crate) fn mount_entry(
    root: &RootDir,
    ctx: &RootfsContext,
    mount: &Mount,
) -> Result<(), RootfsError> {
    let destination = Path::new("/").join(clean_relative(mount.destination()));
    if mount.uid_mappings().is_some() || mount.gid_mappings().is_some() {
        return Err(RootfsError::IdMappedMount { destination });
    }
    let mut options =
        options::parse(mount.options().as_deref().unwrap_or(&[])).map_err(|source| {
            RootfsError::MountOption {
                destination: destination.clone(),
                source,
            }
        })?;
    let fstype = mount.typ().as_deref().unwrap_or("");
    match fstype {
        "bind" => options.flags |= MsFlags::MS_BIND,
        "rbind" => options.flags |= MsFlags::MS_BIND | MsFlags::MS_REC,
        _ => {}
    }
    let entry = Entry {
        root,
        ctx,
        destination,
        options,
        fstype,
        source: mount.source().as_deref(),
    };
    tracing::debug!(
        destination = %entry.destination.display(),
        fstype,
        flags = ?entry.options.flags,
        data = ?entry.options.data_string(),
        "mounting"
    );
    if entry.options.is_bind() {
        bind(&entry, None)?;
        return entry.apply_recursive();
    }
    entry.check_proc(&entry.destination, || false)?;
    let mounted = match fstype {
        "tmpfs" => tmpfs(&entry),
        "cgroup" => cgroup(&entry),
        "proc" | "sysfs" => proc_or_sysfs(&entry),
        "" => Err(RootfsError::MissingType {
            destination: entry.destination.clone(),
        }),
        _ => {
            let target = entry.create_dir()?;
            plain_mount(&entry, &target, entry.options.flags)?;
            entry.propagate()
        }
    };
    mounted?;
    entry.apply_recursive()
}

/// mount(2) of `entry.fstype` on `target` with the entry's source and data.
fn plain_mount(entry: &Entry<'_>, target: &OwnedFd, flags: MsFlags) -> Result<(), RootfsError> {
    let source = entry.source.unwrap_or(Path::new(entry.fstype));
    nix::mount::mount(
        Some(source),
        &proc_fd_path(target),
        Some(entry.fstype),
        flags,
        entry.options.data_string().as_deref(),
    )
    .map_err(entry.mount_err(entry.fstype))
}

/// A bind mount; `source_override` is used by fallbacks (sysfs in a user namespace, cgroups).
fn bind(entry: &Entry<'_>, source_override: Option<&Path>) -> Result<(), RootfsError> {
    let source = source_override.or(entry.source).unwrap_or(Path::new(""));
    let source = if source.is_relative() {
        entry.ctx.bundle.join(source)
    } else {
        source.to_path_buf()
    };
    let metadata = std::fs::metadata(&source).map_err(|e| RootfsError::BindSource {
        destination: entry.destination.clone(),
        source_path: source.clone(),
        source: e,
    })?;
    let source_is_procfs = || {
        nix::sys::statfs::statfs(&source)
            .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::PROC_SUPER_MAGIC)
    };
    entry.check_proc(&entry.destination, source_is_procfs)?;
    let target = if metadata.is_dir() {
        entry.create_dir()?
    } else {
        entry
            .root
            .create_file(&entry.destination, Mode::from_bits_truncate(0o755))
            .map_err(|e| entry.create_err(e))?
    };
    entry.check_proc_resolved(&target, source_is_procfs)?;
    let flags = entry.options.flags;
    nix::mount::mount(
        Some(&source),
        &proc_fd_path(&target),
        None::<&str>,
        MsFlags::MS_BIND | (flags & MsFlags::MS_REC),
        None::<&str>,
    )
    .map_err(entry.mount_err("bind"))?;
    if needs_bind_remount(flags) {
        let top = entry.reopen(OFlag::O_PATH)?;
        remount_bind(&top, flags).map_err(entry.remount_err(flags))?;
    }
    entry.propagate()
}

/// proc and sysfs: only onto a real directory (runc refuses symlinks and files there), sysfs
/// falls back to a recursive bind of the host's /sys when the kernel refuses a new instance (a
/// user namespace without its own network namespace).
fn proc_or_sysfs(entry: &Entry<'_>) -> Result<(), RootfsError> {
    match entry
        .root
        .open_path_nofollow(&entry.destination, OFlag::O_PATH)
    {
        Ok(existing) => {
            let st = nix::sys::stat::fstat(&existing).map_err(|e| entry.create_err(e))?;
            if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFDIR {
                return Err(RootfsError::NotADirectory {
                    destination: entry.destination.clone(),
                    fstype: entry.fstype.to_owned(),
                });
            }
        }
        Err(Errno::ENOENT) => {}
        Err(e) => return Err(entry.create_err(e)),
    }
    let target = entry.create_dir()?;
    entry.check_proc_resolved(&target, || false)?;
    match plain_mount(entry, &target, entry.options.flags) {
        Err(RootfsError::Mount {
            source: Errno::EPERM,
            ..
        }) if entry.fstype == "sysfs" => {
            tracing::debug!("sysfs mount refused, binding the host /sys instead");
            let fallback = Entry {
                destination: entry.destination.clone(),
                options: MountOptions {
                    flags: entry.options.flags | MsFlags::MS_BIND | MsFlags::MS_REC,
                    ..entry.options.clone()
                },
                ..*entry
            };
            bind(&fallback, Some(Path::new("/sys")))
        }
        Err(e) => Err(e),
        Ok(()) => entry.propagate(),
    }
}

/// tmpfs, with `tmpcopyup` and runc's deferred read-only for /dev (remounted in finalize) and
/// for copy-up (remounted once the copy is done).
fn tmpfs(entry: &Entry<'_>) -> Result<(), RootfsError> {
    let existing = entry
        .root
        .open_path(&entry.destination, OFlag::O_PATH | OFlag::O_DIRECTORY)
        .ok()
        .and_then(|fd| nix::sys::stat::fstat(&fd).ok());
    let target = entry.create_dir()?;
    // A readable fd of the directory under the mount-to-be: the only way to see the old contents
    // once the tmpfs covers them.
    let copy_from = if entry.options.tmpcopyup {
        Some(entry.reopen(OFlag::O_RDONLY | OFlag::O_DIRECTORY)?)
    } else {
        None
    };
    let readonly = entry.options.flags.contains(MsFlags::MS_RDONLY);
    let defer_readonly =
        readonly && (copy_from.is_some() || entry.destination == Path::new("/dev"));
    let mut flags = entry.options.flags;
    if defer_readonly {
        flags.remove(MsFlags::MS_RDONLY);
    }
    plain_mount(entry, &target, flags)?;
    let top = entry.reopen(OFlag::O_RDONLY | OFlag::O_DIRECTORY)?;
    if let Some(from) = copy_from {
        copy_tree(&from, &top).map_err(|source| RootfsError::CopyUp {
            destination: entry.destination.clone(),
            source,
        })?;
        if let Some(st) = &existing {
            nix::unistd::fchown(
                &top,
                Some(nix::unistd::Uid::from_raw(st.st_uid)),
                Some(nix::unistd::Gid::from_raw(st.st_gid)),
            )
            .map_err(|source| RootfsError::CopyUp {
                destination: entry.destination.clone(),
                source,
            })?;
        }
    }
    // runc keeps the mode of an existing destination unless the options chose one.
    if let Some(st) = &existing {
        if !entry.options.has_data_key("mode") {
            nix::sys::stat::fchmod(&top, Mode::from_bits_truncate(st.st_mode & 0o7777))
                .map_err(entry.mount_err("tmpfs"))?;
        }
    }
    if readonly && defer_readonly && entry.destination != Path::new("/dev") {
        let remount = flags | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
        nix::mount::mount(
            None::<&str>,
            &proc_fd_path(&top),
            None::<&str>,
            remount,
            entry.options.data_string().as_deref(),
        )
        .map_err(entry.remount_err(remount))?;
    }
    entry.propagate()
}

/// Copies the tree under `from` into `to`, keeping type, mode and ownership (tmpcopyup).
fn copy_tree(from: &OwnedFd, to: &OwnedFd) -> Result<(), Errno> {
    let mut dir = nix::dir::Dir::from_fd(nix::unistd::dup(from)?)?;
    let names: Vec<std::ffi::CString> = dir
        .iter()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_owned())
        .filter(|n| n.as_bytes() != b"." && n.as_bytes() != b"..")
        .collect();
    for name in names {
        copy_entry(from, to, &name)?;
    }
    Ok(())
}

fn copy_entry(from: &OwnedFd, to: &OwnedFd, name: &CStr) -> Result<(), Errno> {
    let st = nix::sys::stat::fstatat(from, name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
    let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
    let mode = Mode::from_bits_truncate(st.st_mode & 0o7777);
    let nofollow = OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    match kind {
        SFlag::S_IFDIR => {
            nix::sys::stat::mkdirat(to, name, Mode::from_bits_truncate(0o700))?;
            let sub_from = nix::fcntl::openat(
                from,
                name,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | nofollow,
                Mode::empty(),
            )?;
            let sub_to = nix::fcntl::openat(
                to,
                name,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | nofollow,
                Mode::empty(),
            )?;
            copy_tree(&sub_from, &sub_to)?;
        }
        SFlag::S_IFREG => {
            let src = nix::fcntl::openat(from, name, OFlag::O_RDONLY | nofollow, Mode::empty())?;
            let dst = nix::fcntl::openat(
                to,
                name,
                OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | nofollow,
                Mode::from_bits_truncate(0o600),
            )?;
            let mut src = std::fs::File::from(src);
            let mut dst = std::fs::File::from(dst);
            std::io::copy(&mut src, &mut dst)
                .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
        }
        SFlag::S_IFLNK => {
            let target = nix::fcntl::readlinkat(from, name)?;
            nix::unistd::symlinkat(target.as_os_str(), to, name)?;
        }
        _ => {
            nix::sys::stat::mknodat(to, name, kind, mode, st.st_rdev)?;
        }
    }
    nix::unistd::fchownat(
        to,
        name,
        Some(nix::unistd::Uid::from_raw(st.st_uid)),
        Some(nix::unistd::Gid::from_raw(st.st_gid)),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )?;
    // After chown, which clears set-id bits; symlinks have no mode of their own.
    if kind != SFlag::S_IFLNK {
        nix::sys::stat::fchmodat(
            to,
            name,
            mode,
            nix::sys::stat::FchmodatFlags::NoFollowSymlink,
        )?;
    }
    Ok(())
}

/// Whether the host runs the unified (v2-only) hierarchy.
fn unified_host() -> bool {
    nix::sys::statfs::statfs("/sys/fs/cgroup")
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
}

/// `cgroup` mounts: cgroup2 on unified hosts, runc's tmpfs-plus-hierarchies on v1 hosts.
fn cgroup(entry: &Entry<'_>) -> Result<(), RootfsError> {
    if unified_host() {
        cgroup2(entry)
    } else {
        cgroup_v1(entry)
    }
}

/// The cgroup2 hierarchy: inside a cgroup namespace a new cgroup2 instance (runc
/// mountCgroupV2), showing the namespace's root, which is the container's cgroup; where the
/// kernel refuses one, a bind of the container's cgroup.
///
/// Without a cgroup namespace the container sees the whole hierarchy either way, and it gets a
/// bind of the host's `/sys/fs/cgroup` rather than a new instance (runc mounts one): a cgroup2
/// mount made in the host's cgroup namespace applies its options to the hierarchy's root for
/// everyone (kernel/cgroup/cgroup.c `apply_cgroup_root_flags`), so the container's options would
/// silently drop the host's `nsdelegate`, `memory_recursiveprot` or `favordynmods` (and turning
/// `favordynmods` on or off waits for an RCU grace period). The bind changes nothing on the host
/// and costs one mount.
fn cgroup2(entry: &Entry<'_>) -> Result<(), RootfsError> {
    if !entry.ctx.cgroup_namespace {
        return cgroup2_bind(entry);
    }
    let target = entry.create_dir()?;
    let result = nix::mount::mount(
        Some("cgroup2"),
        &proc_fd_path(&target),
        Some("cgroup2"),
        entry.options.flags,
        entry.options.data_string().as_deref(),
    );
    match result {
        Ok(()) => entry.propagate(),
        Err(Errno::EPERM | Errno::EBUSY) => {
            tracing::debug!("cgroup2 mount refused, binding instead");
            cgroup2_bind(entry)
        }
        Err(e) => Err(entry.mount_err("cgroup2")(e)),
    }
}

/// A bind of the container's cgroup (in a cgroup namespace) or of the whole hierarchy, with
/// the entry's flags (`ro` stays read-only).
fn cgroup2_bind(entry: &Entry<'_>) -> Result<(), RootfsError> {
    let host = Path::new("/sys/fs/cgroup");
    let source = match (&entry.ctx.cgroup, entry.ctx.cgroup_namespace) {
        (Some(cgroup), true) => host.join(clean_relative(&cgroup.path)),
        _ => host.to_path_buf(),
    };
    let bind_entry = Entry {
        destination: entry.destination.clone(),
        options: MountOptions {
            flags: entry.options.flags | MsFlags::MS_BIND,
            ..entry.options.clone()
        },
        ..*entry
    };
    bind(&bind_entry, Some(&source))
}

/// The controllers a v1 hierarchy carries (from its super options).
fn v1_subsystems(super_options: &[String], known: &[String]) -> Vec<String> {
    super_options
        .iter()
        .filter(|o| o.starts_with("name=") || known.contains(o))
        .cloned()
        .collect()
}

fn read_proc(path: &str) -> Result<String, RootfsError> {
    std::fs::read_to_string(path).map_err(|source| RootfsError::ReadProc {
        path: path.into(),
        source,
    })
}

/// One mount per v1 hierarchy, in mount order: the host's own under `/sys/fs/cgroup` where a
/// hierarchy is mounted several times. Other copies exist while another container without a mount
/// namespace runs (its cgroup binds sit under its rootfs in the host's table) or where an admin
/// mounted one twice; binding from such a copy would show the wrong cgroup, and fail once that
/// container is deleted. Mounts under this container's own rootfs never count.
fn v1_hierarchies(mounts: Vec<MountInfo>, rootfs: &Path, known: &[String]) -> Vec<MountInfo> {
    let host = Path::new("/sys/fs/cgroup");
    let mut out: Vec<(Vec<String>, MountInfo)> = Vec::new();
    for m in mounts {
        if m.fs_type != "cgroup" || m.mount_point.starts_with(rootfs) {
            continue;
        }
        let mut key = v1_subsystems(&m.super_options, known);
        key.sort();
        match out.iter_mut().find(|(k, _)| *k == key) {
            Some((_, kept)) => {
                if !kept.mount_point.starts_with(host) && m.mount_point.starts_with(host) {
                    *kept = m;
                }
            }
            None => out.push((key, m)),
        }
    }
    out.into_iter().map(|(_, m)| m).collect()
}

/// runc mountCgroupV1: a tmpfs at the destination and one directory per host hierarchy, showing
/// the container's cgroup (a bind of it, or a new cgroup mount inside a cgroup namespace), plus
/// symlinks for co-mounted controllers (`cpu -> cpu,cpuacct`).
fn cgroup_v1(entry: &Entry<'_>) -> Result<(), RootfsError> {
    let rootfs = entry.root.path();
    let known: Vec<String> = read_proc("/proc/cgroups")?
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect();
    let hierarchies = v1_hierarchies(mountinfo::read(None)?, rootfs, &known);
    let own = ProcCgroup::read(None)?;

    let base = MsFlags::MS_NOEXEC | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    let target = entry.create_dir()?;
    nix::mount::mount(
        Some("tmpfs"),
        &proc_fd_path(&target),
        Some("tmpfs"),
        base,
        Some("mode=755"),
    )
    .map_err(entry.mount_err("tmpfs"))?;
    let dir = entry.reopen(OFlag::O_PATH | OFlag::O_DIRECTORY)?;

    for hierarchy in &hierarchies {
        let Some(name) = hierarchy.mount_point.file_name() else {
            continue;
        };
        let subsystems = v1_subsystems(&hierarchy.super_options, &known);
        if subsystems.is_empty() {
            continue;
        }
        let sub = Entry {
            destination: entry.destination.join(name),
            options: MountOptions {
                propagation: Vec::new(),
                ..entry.options.clone()
            },
            ..*entry
        };
        if entry.ctx.cgroup_namespace {
            let sub_target = sub.create_dir()?;
            nix::mount::mount(
                Some("cgroup"),
                &proc_fd_path(&sub_target),
                Some("cgroup"),
                entry.options.flags,
                Some(subsystems.join(",").as_str()),
            )
            .map_err(sub.mount_err("cgroup"))?;
        } else {
            // The container's cgroup in this hierarchy, which is the init process's own (it
            // has joined) when the caller does not say.
            let recorded = entry
                .ctx
                .cgroup
                .as_ref()
                .and_then(|c| c.path_in(&subsystems));
            let cgroup = match recorded {
                Some(path) => path.to_path_buf(),
                None => own
                    .memberships
                    .iter()
                    .find(|m| {
                        m.controllers.len() == subsystems.len()
                            && subsystems.iter().all(|s| m.has(s))
                    })
                    .map(|m| m.path.clone())
                    .ok_or_else(|| RootfsError::CgroupPath {
                        destination: sub.destination.clone(),
                        reason: format!(
                            "no entry for {} in /proc/self/cgroup",
                            subsystems.join(",")
                        ),
                    })?,
            };
            let relative = cgroup.strip_prefix(&hierarchy.root).unwrap_or(&cgroup);
            let source = hierarchy.mount_point.join(clean_relative(relative));
            let bind_entry = Entry {
                options: MountOptions {
                    flags: entry.options.flags | MsFlags::MS_BIND | MsFlags::MS_REC,
                    ..sub.options.clone()
                },
                ..sub
            };
            bind(&bind_entry, Some(&source))?;
        }
        // Co-mounted controllers get a symlink each, so both names work.
        let name_str = name.to_string_lossy();
        if name_str.contains(',') {
            for subsystem in name_str.split(',') {
                match nix::unistd::symlinkat(name, &dir, subsystem) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(entry.create_err(e)),
                }
            }
        }
    }
    if entry.options.flags.contains(MsFlags::MS_RDONLY) {
        let flags = base | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
        nix::mount::mount(
            None::<&str>,
            &proc_fd_path(&dir),
            None::<&str>,
            flags,
            Some("mode=755"),
        )
        .map_err(entry.remount_err(flags))?;
    }
    entry.propagate()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_env = "gnu")]
    #[test]
    fn relatime_bit_is_glibcs() {
        assert_eq!(ST_RELATIME, FsFlags::ST_RELATIME);
    }

    #[test]
    fn bind_remount_only_when_flags_beyond_bind() {
        assert!(!needs_bind_remount(MsFlags::MS_BIND | MsFlags::MS_REC));
        assert!(needs_bind_remount(MsFlags::MS_BIND | MsFlags::MS_RDONLY));
        assert!(needs_bind_remount(MsFlags::MS_BIND | MsFlags::MS_NOSUID));
    }

    #[test]
    fn v1_subsystems_are_the_known_controllers_and_names() {
        let known = vec!["cpu".to_owned(), "cpuacct".to_owned(), "memory".to_owned()];
        let opts = |s: &str| s.split(',').map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(
            v1_subsystems(&opts("rw,cpu,cpuacct"), &known),
            vec!["cpu", "cpuacct"]
        );
        assert_eq!(
            v1_subsystems(&opts("rw,xattr,name=systemd"), &known),
            vec!["name=systemd"]
        );
        assert!(v1_subsystems(&opts("rw,nsdelegate"), &known).is_empty());
    }
    #[test]
    fn each_v1_hierarchy_is_taken_once_from_the_hosts_mount() {
        let text = b"\
20 1 0:30 / /tmp/other/rootfs/sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
21 1 0:30 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
22 1 0:31 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
23 1 0:31 /x /tmp/other/rootfs/sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpuacct,cpu
24 1 0:32 / /me/rootfs/sys/fs/cgroup/pids rw - cgroup cgroup rw,pids
25 1 0:33 / /mnt/pids rw - cgroup cgroup rw,pids
";
        let known = ["memory", "cpu", "cpuacct", "pids"].map(String::from);
        let mounts = crate::sys::kernel_files::mountinfo::parse(text).unwrap();
        let picked: Vec<String> = v1_hierarchies(mounts, Path::new("/me/rootfs"), &known)
            .iter()
            .map(|m| m.mount_point.display().to_string())
            .collect();
        assert_eq!(
            picked,
            [
                "/sys/fs/cgroup/memory",
                "/sys/fs/cgroup/cpu,cpuacct",
                "/mnt/pids"
            ]
        );
    }
}
