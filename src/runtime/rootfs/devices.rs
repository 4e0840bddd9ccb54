//! Device nodes and /dev symlinks (runtime-spec config-linux "Devices" and "Default Devices",
//! "/dev symbolic links"; runc createDevices, setupPtmx, setupDevSymlinks).

use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::MsFlags;
use nix::sys::stat::{Mode, SFlag};
use nix::unistd::{Gid, Uid};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, Mount};

use super::inroot::{clean_relative, RootDir};
use super::options;
use super::RootfsError;
use crate::sys::openat2::proc_fd_path;

/// A device to create, from the spec or the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeviceNode {
    pub path: PathBuf,
    pub kind: SFlag,
    pub major: u64,
    pub minor: u64,
    pub mode: Mode,
    pub uid: u32,
    pub gid: u32,
}

/// The devices every container gets (runtime-spec "Default Devices"), owned by the container's root.
fn default_devices() -> Vec<DeviceNode> {
    [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ]
    .iter()
    .map(|(name, major, minor)| DeviceNode {
        path: Path::new("/dev").join(name),
        kind: SFlag::S_IFCHR,
        major: *major,
        minor: *minor,
        mode: Mode::from_bits_truncate(0o666),
        uid: 0,
        gid: 0,
    })
    .collect()
}

impl TryFrom<&LinuxDevice> for DeviceNode {
    type Error = RootfsError;

    fn try_from(device: &LinuxDevice) -> Result<Self, RootfsError> {
        let path = Path::new("/").join(clean_relative(device.path()));
        let invalid = |reason| RootfsError::InvalidDevice {
            path: device.path().clone(),
            reason,
        };
        if path == Path::new("/") {
            return Err(invalid("the path names no file"));
        }
        let kind = match device.typ() {
            LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
            LinuxDeviceType::B => SFlag::S_IFBLK,
            LinuxDeviceType::P => SFlag::S_IFIFO,
            LinuxDeviceType::A => return Err(invalid("type \"a\" is a cgroup rule, not a device")),
        };
        let major = u64::try_from(device.major()).map_err(|_| invalid("negative major number"))?;
        let minor = u64::try_from(device.minor()).map_err(|_| invalid("negative minor number"))?;
        Ok(Self {
            path,
            kind,
            major,
            minor,
            // runc: the type bits of fileMode are ignored, 0666 when absent.
            mode: Mode::from_bits_truncate(device.file_mode().unwrap_or(0o666) & 0o7777),
            uid: device.uid().unwrap_or(0),
            gid: device.gid().unwrap_or(0),
        })
    }
}

/// Whether the runtime builds /dev itself: not when the spec binds something onto /dev.
pub(crate) fn needs_dev_setup(mounts: &[Mount]) -> bool {
    !mounts.iter().any(|m| {
        let is_bind = matches!(m.typ().as_deref(), Some("bind" | "rbind"))
            || options::parse(m.options().as_deref().unwrap_or(&[])).is_ok_and(|o| o.is_bind());
        is_bind && clean_relative(m.destination()) == Path::new("dev")
    })
}

/// Whether the spec mounts a devpts at /dev/pts (then /dev/ptmx must point into it).
pub(crate) fn has_devpts(mounts: &[Mount]) -> bool {
    mounts.iter().any(|m| {
        m.typ().as_deref() == Some("devpts")
            && clean_relative(m.destination()) == Path::new("dev/pts")
    })
}

/// The default devices merged with `linux.devices` (a spec device replaces a default one with the
/// same path).
pub(crate) fn device_list(spec_devices: &[LinuxDevice]) -> Result<Vec<DeviceNode>, RootfsError> {
    let spec: Vec<DeviceNode> = spec_devices
        .iter()
        .map(DeviceNode::try_from)
        .collect::<Result<_, _>>()?;
    let mut all: Vec<DeviceNode> = default_devices()
        .into_iter()
        .filter(|d| !spec.iter().any(|s| s.path == d.path))
        .collect();
    all.extend(spec);
    Ok(all)
}

/// Creates the default and spec devices: mknod, or with a user namespace (where mknod is not
/// permitted) a bind of the host's node onto an empty file; mknod's EPERM also falls back to the
/// bind, as in runc.
pub(crate) fn create_devices(
    root: &RootDir,
    spec_devices: &[LinuxDevice],
    user_namespace: bool,
) -> Result<(), RootfsError> {
    let devices = device_list(spec_devices)?;
    // The spec's fileMode is exact; the umask must not take bits away.
    let old_umask = nix::sys::stat::umask(Mode::empty());
    let result = devices
        .iter()
        .try_for_each(|device| create_device(root, device, user_namespace));
    nix::sys::stat::umask(old_umask);
    result
}

fn create_device(root: &RootDir, device: &DeviceNode, bind: bool) -> Result<(), RootfsError> {
    let err = |source| RootfsError::Device {
        path: device.path.clone(),
        source,
    };
    let rel = clean_relative(&device.path);
    if bind {
        return bind_device(root, device, &rel);
    }
    let (parent, name) = root.parent_of(&rel).map_err(err)?;
    let dev = nix::sys::stat::makedev(device.major, device.minor);
    match nix::sys::stat::mknodat(&parent, name, device.kind, device.mode, dev) {
        Ok(()) => {}
        // runc keeps what the image or an earlier mount already put there.
        Err(Errno::EEXIST) => return Ok(()),
        Err(Errno::EPERM) => return bind_device(root, device, &rel),
        Err(e) => return Err(err(e)),
    }
    nix::unistd::fchownat(
        &parent,
        name,
        Some(Uid::from_raw(device.uid)),
        Some(Gid::from_raw(device.gid)),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(err)?;
    tracing::debug!(path = %device.path.display(), major = device.major, minor = device.minor, "created device");
    Ok(())
}

/// runc bindMountDeviceNode: the host node at the same path, bound onto an empty file.
fn bind_device(root: &RootDir, device: &DeviceNode, rel: &Path) -> Result<(), RootfsError> {
    let err = |source| RootfsError::Device {
        path: device.path.clone(),
        source,
    };
    let target = root
        .create_file(rel, Mode::from_bits_truncate(0o666))
        .map_err(err)?;
    let target_path = proc_fd_path(&target);
    nix::mount::mount(
        Some(&device.path),
        &target_path,
        Some("bind"),
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(err)?;
    tracing::debug!(path = %device.path.display(), "bound host device");
    Ok(())
}

/// runc setupPtmx: /dev/ptmx becomes a symlink to the devpts instance's ptmx.
pub(crate) fn setup_ptmx(root: &RootDir) -> Result<(), RootfsError> {
    let link = PathBuf::from("/dev/ptmx");
    let err = |source| RootfsError::DevSymlink {
        link: link.clone(),
        source,
    };
    let dev = root
        .mkdir_all(Path::new("dev"), Mode::from_bits_truncate(0o755))
        .map_err(err)?;
    match nix::unistd::unlinkat(&dev, "ptmx", nix::unistd::UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => {}
        Err(e) => return Err(err(e)),
    }
    nix::unistd::symlinkat("pts/ptmx", &dev, "ptmx").map_err(err)
}

/// The standard /dev symlinks; /dev/core only where the kernel has /proc/kcore.
pub(crate) fn create_dev_symlinks(root: &RootDir) -> Result<(), RootfsError> {
    let mut links = vec![
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
    ];
    if Path::new("/proc/kcore").exists() {
        links.push(("/proc/kcore", "core"));
    }
    let dev = root
        .mkdir_all(Path::new("dev"), Mode::from_bits_truncate(0o755))
        .map_err(|source| RootfsError::DevSymlink {
            link: "/dev".into(),
            source,
        })?;
    for (target, name) in links {
        match nix::unistd::symlinkat(target, &dev, name) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(source) => {
                return Err(RootfsError::DevSymlink {
                    link: Path::new("/dev").join(name),
                    source,
                })
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxDeviceBuilder;

    #[test]
    fn spec_devices_replace_defaults_and_are_validated() {
        let fuse = LinuxDeviceBuilder::default()
            .path("/dev/fuse")
            .typ(LinuxDeviceType::C)
            .major(10)
            .minor(229)
            .file_mode(0o020_600u32)
            .uid(1000u32)
            .build()
            .unwrap();
        let null = LinuxDeviceBuilder::default()
            .path("/dev/null")
            .typ(LinuxDeviceType::C)
            .major(1)
            .minor(3)
            .file_mode(0o600u32)
            .build()
            .unwrap();
        let list = device_list(&[fuse, null]).unwrap();
        assert_eq!(list.len(), 7);
        let null = list
            .iter()
            .find(|d| d.path == Path::new("/dev/null"))
            .unwrap();
        assert_eq!(null.mode.bits(), 0o600);
        let fuse = list
            .iter()
            .find(|d| d.path == Path::new("/dev/fuse"))
            .unwrap();
        assert_eq!(
            (fuse.major, fuse.minor, fuse.mode.bits(), fuse.uid),
            (10, 229, 0o600, 1000)
        );

        let all = LinuxDeviceBuilder::default()
            .path("/dev/x")
            .typ(LinuxDeviceType::A)
            .build()
            .unwrap();
        assert!(matches!(
            device_list(&[all]),
            Err(RootfsError::InvalidDevice { .. })
        ));
        let negative = LinuxDeviceBuilder::default()
            .path("/dev/x")
            .typ(LinuxDeviceType::B)
            .major(-1)
            .build()
            .unwrap();
        assert!(matches!(
            device_list(&[negative]),
            Err(RootfsError::InvalidDevice { .. })
        ));
    }
}
