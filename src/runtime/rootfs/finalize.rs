//! The last rootfs steps, inside the new root with the container's /proc: /dev and / made
//! read-only, `linux.sysctl`, `linux.readonlyPaths` and `linux.maskedPaths`
//! (runtime-spec config-linux "Sysctl", "Masked Paths", "Readonly Paths"; runc finalizeRootfs).

use std::io::Write;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, ResolveFlag};
use nix::mount::MsFlags;
use nix::sys::stat::{Mode, SFlag};
use oci_spec::runtime::Spec;

use super::inroot::{clean_relative, RootDir};
use super::mounts::{current_mount_flags, remount_bind};
use super::{options, RootfsError};
use crate::sys::openat2::{open_in_root_with, proc_fd_path};

/// Checks a sysctl key and returns its file below /proc/sys (`net.ipv4.ip_forward` →
/// `net/ipv4/ip_forward`). Keys with `/`, NUL, empty components (`a..b`, leading or trailing dot)
/// are refused: they are the ways out of /proc/sys or into another key.
///
/// # Errors
/// [`RootfsError::InvalidSysctlKey`] naming the key.
pub(crate) fn sysctl_path(key: &str) -> Result<PathBuf, RootfsError> {
    let invalid = || RootfsError::InvalidSysctlKey {
        key: key.to_owned(),
    };
    if key.is_empty() || key.contains('/') || key.contains('\0') {
        return Err(invalid());
    }
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(invalid());
    }
    Ok(parts.iter().collect())
}

fn write_sysctl(sys: &std::os::fd::OwnedFd, key: &str, value: &str) -> Result<(), RootfsError> {
    let path = sysctl_path(key)?;
    let io_err = |source: std::io::Error| RootfsError::Sysctl {
        key: key.to_owned(),
        source,
    };
    // No symlinks at all below /proc/sys, and never out of it.
    let fd = open_in_root_with(
        std::os::fd::AsFd::as_fd(sys),
        &path,
        OFlag::O_WRONLY | OFlag::O_TRUNC,
        Mode::empty(),
        ResolveFlag::RESOLVE_NO_SYMLINKS,
    )
    .map_err(|e| io_err(e.into()))?;
    std::fs::File::from(fd)
        .write_all(value.as_bytes())
        .map_err(io_err)?;
    tracing::debug!(key, value, "sysctl set");
    Ok(())
}

/// The remount of / read-only, keeping the locked flags if the plain remount is refused.
fn readonly_root(root: &RootDir) -> Result<(), RootfsError> {
    let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
    let err = |source| RootfsError::ReadonlyPath {
        path: "/".into(),
        source,
    };
    match nix::mount::mount(None::<&str>, "/", None::<&str>, flags, None::<&str>) {
        Ok(()) => Ok(()),
        Err(_) => {
            let current = current_mount_flags(root.fd()).map_err(err)?;
            nix::mount::mount(
                None::<&str>,
                "/",
                None::<&str>,
                flags | current,
                None::<&str>,
            )
            .map_err(err)
        }
    }
}

/// runc remountReadonly for a /dev tmpfs that asked for `ro` (mounted rw so devices could be
/// made); EBUSY is retried a few times as runc does.
fn readonly_dev(spec: &Spec) -> Result<(), RootfsError> {
    let Some(dev) = spec
        .mounts()
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .find(|m| clean_relative(m.destination()) == Path::new("dev"))
    else {
        return Ok(());
    };
    let Ok(parsed) = options::parse(dev.options().as_deref().unwrap_or(&[])) else {
        return Ok(());
    };
    if parsed.is_bind() || !parsed.flags.contains(MsFlags::MS_RDONLY) {
        return Ok(());
    }
    let flags = (parsed.flags & !MsFlags::MS_BIND) | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
    let mut attempt = 0;
    loop {
        match nix::mount::mount(
            None::<&str>,
            "/dev",
            None::<&str>,
            flags,
            parsed.data_string().as_deref(),
        ) {
            Err(Errno::EBUSY) if attempt < 5 => {
                attempt += 1;
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            result => {
                return result.map_err(|source| RootfsError::ReadonlyPath {
                    path: "/dev".into(),
                    source,
                })
            }
        }
    }
}

/// A bind of the path onto itself, then a read-only remount keeping nosuid/nodev/noexec.
fn readonly_path(root: &RootDir, path: &str) -> Result<(), RootfsError> {
    let err = |source| RootfsError::ReadonlyPath {
        path: path.into(),
        source,
    };
    let rel = clean_relative(Path::new(path));
    let fd = match root.open_path(&rel, OFlag::O_PATH) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => {
            tracing::debug!(path, "readonly path missing, skipped");
            return Ok(());
        }
        Err(e) => return Err(err(e)),
    };
    let fd_path = proc_fd_path(&fd);
    nix::mount::mount(
        Some(&fd_path),
        &fd_path,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(err)?;
    let top = root.open_path(&rel, OFlag::O_PATH).map_err(err)?;
    let keep = current_mount_flags(std::os::fd::AsFd::as_fd(&top)).map_err(err)?
        & (MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC);
    remount_bind(&top, keep | MsFlags::MS_RDONLY).map_err(err)?;
    tracing::debug!(path, "made read-only");
    Ok(())
}

/// Masks a path: a read-only tmpfs over a directory, the null device over anything else. A
/// symlink is left alone: masking its target could hide a different file than the one named.
fn mask_path(
    root: &RootDir,
    dev_null: &std::os::fd::OwnedFd,
    path: &str,
) -> Result<(), RootfsError> {
    let err = |source| RootfsError::Mask {
        path: path.into(),
        source,
    };
    let rel = clean_relative(Path::new(path));
    let fd = match root.open_path_nofollow(&rel, OFlag::O_PATH) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => {
            tracing::debug!(path, "masked path missing, skipped");
            return Ok(());
        }
        Err(e) => return Err(err(e)),
    };
    let st = nix::sys::stat::fstat(&fd).map_err(err)?;
    let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
    let target = proc_fd_path(&fd);
    if kind == SFlag::S_IFLNK {
        tracing::debug!(path, "masked path is a symlink, not followed");
        return Ok(());
    }
    if kind == SFlag::S_IFDIR {
        nix::mount::mount(
            Some("tmpfs"),
            &target,
            Some("tmpfs"),
            MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .map_err(err)?;
    } else {
        nix::mount::mount(
            Some(&proc_fd_path(dev_null)),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(err)?;
    }
    tracing::debug!(path, "masked");
    Ok(())
}

/// The container's /dev/null, checked to be the real null device (c 1:3): an image that puts a
/// regular file or a symlink there must not turn masking into exposing.
fn open_dev_null(root: &RootDir, first_masked: &str) -> Result<std::os::fd::OwnedFd, RootfsError> {
    let fake = || RootfsError::FakeDevNull {
        path: first_masked.into(),
    };
    let fd = root
        .open_path_nofollow(Path::new("dev/null"), OFlag::O_PATH)
        .map_err(|_| fake())?;
    let st = nix::sys::stat::fstat(&fd).map_err(|_| fake())?;
    let is_char = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFCHR;
    let (major, minor) = (
        nix::sys::stat::major(st.st_rdev),
        nix::sys::stat::minor(st.st_rdev),
    );
    if !is_char || (major, minor) != (1, 3) {
        return Err(fake());
    }
    Ok(fd)
}

/// Runs the final steps in runc's order.
pub(crate) fn finalize(spec: &Spec) -> Result<(), RootfsError> {
    let root = RootDir::open(Path::new("/")).map_err(|source| RootfsError::OpenRoot {
        rootfs: "/".into(),
        source,
    })?;
    readonly_dev(spec)?;
    if spec.root().as_ref().and_then(|r| r.readonly()) == Some(true) {
        readonly_root(&root)?;
        tracing::debug!("root made read-only");
    }
    let linux = spec.linux().as_ref();

    if let Some(sysctl) = linux.and_then(|l| l.sysctl().as_ref()) {
        // Validate every key before writing any.
        for key in sysctl.keys() {
            sysctl_path(key)?;
        }
        let mut entries: Vec<(&String, &String)> = sysctl.iter().collect();
        entries.sort();
        let sys = root
            .open_path_nofollow(Path::new("proc/sys"), OFlag::O_PATH | OFlag::O_DIRECTORY)
            .map_err(|e| RootfsError::Sysctl {
                key: entries
                    .first()
                    .map(|(k, _)| (*k).clone())
                    .unwrap_or_default(),
                source: e.into(),
            })?;
        for (key, value) in entries {
            write_sysctl(&sys, key, value)?;
        }
    }

    for path in linux
        .and_then(|l| l.readonly_paths().as_deref())
        .unwrap_or(&[])
    {
        readonly_path(&root, path)?;
    }
    let masked = linux
        .and_then(|l| l.masked_paths().as_deref())
        .unwrap_or(&[]);
    if let Some(first) = masked.first() {
        let dev_null = open_dev_null(&root, first)?;
        for path in masked {
            mask_path(&root, &dev_null, path)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysctl_keys() {
        assert_eq!(
            sysctl_path("net.ipv4.ip_forward").unwrap(),
            PathBuf::from("net/ipv4/ip_forward")
        );
        assert_eq!(
            sysctl_path("kernel.shmmax").unwrap(),
            PathBuf::from("kernel/shmmax")
        );
        for bad in [
            "",
            "net/ipv4",
            "../etc",
            "net..ipv4",
            ".net",
            "net.",
            "..",
            "a.b/../../c",
            "a\0b",
        ] {
            assert!(
                matches!(sysctl_path(bad), Err(RootfsError::InvalidSysctlKey { ref key }) if key == bad),
                "{bad:?} must be refused"
            );
        }
    }
}
