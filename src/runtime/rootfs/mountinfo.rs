//! Reading /proc/self/mountinfo: the mount that holds the rootfs (to make it private for
//! pivot_root), the host's cgroup v1 hierarchies, host procfs/sysfs mounts to hide for chroot,
//! and the tree of mounts a container without a mount namespace left on the host.

use std::path::{Path, PathBuf};

/// One line of mountinfo (proc(5)), the fields this module uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MountInfo {
    /// The mount's unique id (field 1).
    pub id: u64,
    /// The id of its parent mount (field 2; itself for the root of the tree).
    pub parent: u64,
    /// Path of the mount's root inside its filesystem (field 4).
    pub root: PathBuf,
    /// Where it is mounted, relative to the process root (field 5).
    pub mount_point: PathBuf,
    /// Optional fields (`shared:1`, `master:2`, ...).
    pub optional: Vec<String>,
    /// Filesystem type.
    pub fstype: String,
    /// Per-superblock options (for cgroup v1: the controllers).
    pub super_options: String,
}

/// Undoes the kernel's octal escaping of space, tab, newline and backslash.
fn unescape(field: &str) -> PathBuf {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4);
        if bytes[i] == b'\\' && octal.is_some_and(|o| o.iter().all(|b| (b'0'..=b'7').contains(b))) {
            let value = bytes[i + 1..i + 4]
                .iter()
                .fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
            // Values above 0o377 cannot come from the kernel; keep the low byte rather than panic.
            out.push(value.to_le_bytes()[0]);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    PathBuf::from(<std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(out))
}

/// Parses mountinfo text; malformed lines are skipped (they cannot come from the kernel).
pub(crate) fn parse(text: &str) -> Vec<MountInfo> {
    text.lines()
        .filter_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            let fields: Vec<&str> = before.split(' ').collect();
            let after: Vec<&str> = after.split(' ').collect();
            if fields.len() < 6 || after.len() < 3 {
                return None;
            }
            Some(MountInfo {
                id: fields[0].parse().ok()?,
                parent: fields[1].parse().ok()?,
                root: unescape(fields[3]),
                mount_point: unescape(fields[4]),
                optional: fields[6..].iter().map(|s| (*s).to_owned()).collect(),
                fstype: after[0].to_owned(),
                super_options: after[2].to_owned(),
            })
        })
        .collect()
}

/// Reads and parses /proc/self/mountinfo.
pub(crate) fn read() -> std::io::Result<Vec<MountInfo>> {
    Ok(parse(&std::fs::read_to_string("/proc/self/mountinfo")?))
}

/// The mount that holds `path`: the last-mounted entry whose mount point is `path` or a parent.
pub(crate) fn mount_of<'m>(mounts: &'m [MountInfo], path: &Path) -> Option<&'m MountInfo> {
    mounts
        .iter()
        .filter(|m| path.starts_with(&m.mount_point))
        .max_by_key(|m| m.mount_point.components().count())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 /user.slice /sys/fs/cgroup/cpu,cpuacct rw,relatime master:3 - cgroup cgroup rw,cpu,cpuacct
40 27 0:40 / /mnt/with\\040space rw - tmpfs tmpfs rw
";

    #[test]
    fn parses_fields_and_escapes() {
        let mounts = parse(SAMPLE);
        assert_eq!(mounts.len(), 5);
        assert_eq!(mounts[1].optional, vec!["shared:1".to_owned()]);
        assert_eq!((mounts[3].id, mounts[3].parent), (32, 31));
        assert_eq!(mounts[3].root, PathBuf::from("/user.slice"));
        assert_eq!(mounts[3].fstype, "cgroup");
        assert_eq!(mounts[3].super_options, "rw,cpu,cpuacct");
        assert_eq!(mounts[4].mount_point, PathBuf::from("/mnt/with space"));
    }

    #[test]
    fn finds_the_mount_holding_a_path() {
        let mounts = parse(SAMPLE);
        let m = mount_of(&mounts, Path::new("/var/lib/x")).unwrap();
        assert_eq!(m.mount_point, PathBuf::from("/"));
        let m = mount_of(&mounts, Path::new("/proc/1")).unwrap();
        assert_eq!(m.mount_point, PathBuf::from("/proc"));
    }
}
