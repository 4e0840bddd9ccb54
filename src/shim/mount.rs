//! The task's root filesystem: the mounts containerd passes with Create (a snapshot's overlay or
//! bind mount) put on `<bundle>/rootfs`, and taken off again on Delete.

use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

/// Why the rootfs could not be mounted.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// cannot mount {source} ({fstype}) on {target}
    #[error("cannot mount {source_path} ({fstype}) on {target}")]
    Mount {
        source_path: String,
        fstype: String,
        target: PathBuf,
        #[source]
        source: nix::errno::Errno,
    },
    /// cannot create the rootfs directory {0}
    #[error("cannot create the rootfs directory {0}")]
    Mkdir(PathBuf, #[source] std::io::Error),
}

/// One mount as containerd describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootfsMount {
    /// Filesystem type (`overlay`, `bind`, ...).
    pub fstype: String,
    /// Source.
    pub source: String,
    /// Options, fstab style.
    pub options: Vec<String>,
}

/// Splits fstab-style options into mount flags and the data string the filesystem gets.
pub fn parse_options(options: &[String]) -> (MsFlags, String) {
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    for opt in options {
        let (set, clear) = match opt.as_str() {
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "bind" => (MsFlags::MS_BIND, MsFlags::empty()),
            "rbind" => (MsFlags::MS_BIND | MsFlags::MS_REC, MsFlags::empty()),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "defaults" | "suid" | "dev" | "exec" | "async" => (MsFlags::empty(), MsFlags::empty()),
            other => {
                data.push(other.to_string());
                continue;
            }
        };
        flags.insert(set);
        flags.remove(clear);
    }
    (flags, data.join(","))
}

/// Mounts `mounts` in order on `target`.
///
/// # Errors
/// [`MountError`] for the first mount that fails; the ones before it are unmounted again.
pub fn mount_rootfs(mounts: &[RootfsMount], target: &Path) -> Result<(), MountError> {
    std::fs::create_dir_all(target).map_err(|e| MountError::Mkdir(target.to_path_buf(), e))?;
    for (done, m) in mounts.iter().enumerate() {
        let (mut flags, data) = parse_options(&m.options);
        if m.fstype == "bind" {
            flags.insert(MsFlags::MS_BIND);
        }
        let result = mount(
            Some(m.source.as_str()),
            target,
            Some(m.fstype.as_str()),
            flags,
            (!data.is_empty()).then_some(data.as_str()),
        );
        if let Err(source) = result {
            for _ in 0..done {
                let _ = umount2(target, MntFlags::MNT_DETACH);
            }
            return Err(MountError::Mount {
                source_path: m.source.clone(),
                fstype: m.fstype.clone(),
                target: target.to_path_buf(),
                source,
            });
        }
        tracing::debug!(fstype = %m.fstype, source = %m.source, "rootfs mounted");
    }
    Ok(())
}

/// Unmounts everything stacked on `target` (lazy, so a leftover busy mount cannot pin the shim).
pub fn unmount_rootfs(target: &Path) {
    while umount2(target, MntFlags::MNT_DETACH).is_ok() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_options_become_data_and_flags() {
        let opts: Vec<String> = ["ro", "index=off", "lowerdir=/a:/b", "nosuid"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let (flags, data) = parse_options(&opts);
        assert_eq!(flags, MsFlags::MS_RDONLY | MsFlags::MS_NOSUID);
        assert_eq!(data, "index=off,lowerdir=/a:/b");
    }

    #[test]
    fn rw_clears_an_earlier_ro() {
        let opts: Vec<String> = ["ro", "rbind", "rw"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(parse_options(&opts).0, MsFlags::MS_BIND | MsFlags::MS_REC);
    }
}
