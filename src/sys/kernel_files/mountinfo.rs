//! `/proc/<pid>/mountinfo`: the mounts of a process's mount namespace, one line each, in mount
//! order (proc(5) "/proc/[pid]/mountinfo"):
//!
//! ```text
//! 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
//! (1)(2)(3)   (4)   (5)      (6)      (7)   (8) (9)    (10)         (11)
//! ```
//!
//! Zero or more optional fields (7) end with the separator `-` (8). Paths and options have
//! space, tab, newline and backslash escaped as `\ooo` octal.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use super::{lines, read_parsed, KernelFileError, Malformed};

/// One mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    /// Unique id of the mount (1).
    pub mount_id: u32,
    /// Id of the parent mount (2).
    pub parent_id: u32,
    /// `st_dev` of the filesystem: major (3).
    pub major: u32,
    /// `st_dev` of the filesystem: minor (3).
    pub minor: u32,
    /// The directory of the filesystem that forms the mount's root (4).
    pub root: PathBuf,
    /// Where it is mounted, relative to the reader's root (5).
    pub mount_point: PathBuf,
    /// Per-mount options (`rw`, `nosuid`, `relatime`, ...) (6).
    pub mount_options: Vec<String>,
    /// Optional fields: `shared:N`, `master:N`, `propagate_from:N`, `unbindable` (7).
    pub optional: Vec<String>,
    /// Filesystem type, with its subtype (`fuse.sshfs`) (9).
    pub fs_type: String,
    /// Filesystem-specific source (`/dev/sda1`, `tmpfs`, `none`; may be empty) (10).
    pub source: String,
    /// Per-superblock options; for a cgroup v1 hierarchy, its controllers (11).
    pub super_options: Vec<String>,
}

impl MountInfo {
    /// Whether `option` is among the per-mount options.
    #[must_use]
    pub fn has_mount_option(&self, option: &str) -> bool {
        self.mount_options.iter().any(|o| o == option)
    }

    /// The propagation type the optional fields give: `shared`, `master` (a slave, which may
    /// also be shared), `unbindable` or `private`.
    #[must_use]
    pub fn propagation(&self) -> &'static str {
        let any = |prefix: &str| self.optional.iter().any(|f| f.starts_with(prefix));
        if any("master:") {
            "master"
        } else if any("shared:") {
            "shared"
        } else if self.optional.iter().any(|f| f == "unbindable") {
            "unbindable"
        } else {
            "private"
        }
    }
}

/// Parses mountinfo text.
///
/// # Errors
/// A line with fewer than six fields before the `-` separator, no separator, not exactly three
/// fields after it, or ids and `major:minor` that are not numbers.
pub fn parse(text: &[u8]) -> Result<Vec<MountInfo>, Malformed> {
    lines(text).map(|(n, line)| parse_line(n, line)).collect()
}

fn parse_line(number: usize, line: &[u8]) -> Result<MountInfo, Malformed> {
    let bad = |reason| Malformed::new(number, line, reason);
    // Paths may be any bytes: split on the raw line and decode only the fields that must be text.
    let fields: Vec<&[u8]> = line.split(|b| *b == b' ').collect();
    if fields.len() < 6 {
        return Err(bad("fewer than six fields before the separator"));
    }
    let separator = fields[6..]
        .iter()
        .position(|f| *f == b"-")
        .map(|i| i + 6)
        .ok_or_else(|| bad("no `-` separator after the optional fields"))?;
    let after = &fields[separator + 1..];
    if after.len() != 3 {
        return Err(bad(
            "expected filesystem type, source and super options after the separator",
        ));
    }
    let number_field = |field: &[u8], reason| {
        std::str::from_utf8(field)
            .ok()
            .and_then(|s| s.parse::<u32>().ok())
            .ok_or_else(|| bad(reason))
    };
    let (major, minor) = match fields[2].iter().position(|b| *b == b':') {
        Some(colon) => (
            number_field(&fields[2][..colon], "major:minor is not two numbers")?,
            number_field(&fields[2][colon + 1..], "major:minor is not two numbers")?,
        ),
        None => return Err(bad("major:minor is not two numbers")),
    };
    let text_field = |field: &[u8]| String::from_utf8_lossy(&unescape(field)).into_owned();
    let options = |field: &[u8]| -> Vec<String> {
        if field.is_empty() {
            Vec::new()
        } else {
            field.split(|b| *b == b',').map(text_field).collect()
        }
    };
    Ok(MountInfo {
        mount_id: number_field(fields[0], "the mount id is not a number")?,
        parent_id: number_field(fields[1], "the parent id is not a number")?,
        major,
        minor,
        root: path_field(fields[3]),
        mount_point: path_field(fields[4]),
        mount_options: options(fields[5]),
        optional: fields[6..separator].iter().map(|f| text_field(f)).collect(),
        fs_type: text_field(after[0]),
        source: text_field(after[1]),
        super_options: options(after[2]),
    })
}

fn path_field(field: &[u8]) -> PathBuf {
    PathBuf::from(OsString::from_vec(unescape(field)))
}

/// Undoes the kernel's `\ooo` escapes. A backslash not followed by three octal digits of at
/// most `\377` is kept as it is: some filesystems print options without escaping them.
#[must_use]
pub fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let escape = field
            .get(i + 1..i + 4)
            .filter(|d| field[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)))
            .map(|d| d.iter().fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0')))
            .and_then(|v| u8::try_from(v).ok());
        match escape {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(field[i]);
                i += 1;
            }
        }
    }
    out
}

/// Reads `/proc/<pid>/mountinfo`, or `/proc/self/mountinfo` for `None`.
///
/// # Errors
/// [`KernelFileError::Read`] when the file cannot be read, [`KernelFileError::Malformed`] when a
/// line does not parse.
pub fn read(pid: Option<u32>) -> Result<Vec<MountInfo>, KernelFileError> {
    let path = match pid {
        Some(pid) => PathBuf::from(format!("/proc/{pid}/mountinfo")),
        None => PathBuf::from("/proc/self/mountinfo"),
    };
    read_parsed(&path, parse)
}

/// The calling process's mount table as last read by [`read_self_cached`].
#[derive(Debug)]
struct Cached {
    pid: u32,
    /// Inode of the mount namespace it was read in.
    namespace: u64,
    /// `/proc/self/mountinfo`, open since that read: its poll(2) says whether the table changed.
    file: std::fs::File,
    mounts: std::sync::Arc<Vec<MountInfo>>,
}

static CACHE: std::sync::Mutex<Option<Cached>> = std::sync::Mutex::new(None);

/// `/proc/self/mountinfo`, parsed, read again only when the mount table may have changed.
///
/// A `create` looks at the cgroup hierarchies several times (resolve, create, enter) and
/// `delete` again; reading and parsing the table each time was ~3% of the CPU time of a
/// container start (benches/README.md). The kernel tells a reader of mountinfo when the table
/// changed: poll(2) on the open file reports POLLPRI once the namespace's mounts changed since
/// the file was opened or last polled (fs/proc_namespace.c `mounts_poll`). So the file stays
/// open after a read, and a later call polls it (zero timeout) and returns the parsed table
/// again when nothing happened. The table belongs to the process and mount namespace that read
/// it: a forked child or a process in another mount namespace reads afresh.
///
/// # Errors
/// As [`read`].
pub fn read_self_cached() -> Result<std::sync::Arc<Vec<MountInfo>>, KernelFileError> {
    use std::io::{Read, Seek};
    use std::os::unix::fs::MetadataExt;
    let path = Path::new("/proc/self/mountinfo");
    let io_err = |source| KernelFileError::Read {
        path: path.to_path_buf(),
        source,
    };
    let pid = std::process::id();
    let namespace = std::fs::metadata("/proc/self/ns/mnt")
        .map_err(io_err)?
        .ino();
    let mut cache = CACHE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(c) = cache
        .as_ref()
        .filter(|c| c.pid == pid && c.namespace == namespace)
    {
        let mut fds = [nix::poll::PollFd::new(
            std::os::fd::AsFd::as_fd(&c.file),
            nix::poll::PollFlags::POLLPRI,
        )];
        let changed = match nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO) {
            Ok(_) => fds[0].revents().is_none_or(|r| {
                r.intersects(nix::poll::PollFlags::POLLPRI | nix::poll::PollFlags::POLLERR)
            }),
            Err(_) => true,
        };
        if !changed {
            return Ok(c.mounts.clone());
        }
    }
    // The file is opened before it is read: a change in between is reported by the next poll.
    let mut file = match cache
        .take()
        .filter(|c| c.pid == pid && c.namespace == namespace)
    {
        Some(c) => {
            let mut f = c.file;
            f.rewind().map_err(io_err)?;
            f
        }
        None => std::fs::File::open(path).map_err(io_err)?,
    };
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(io_err)?;
    let mounts =
        std::sync::Arc::new(parse(&bytes).map_err(|source| KernelFileError::Malformed {
            path: path.to_path_buf(),
            source,
        })?);
    *cache = Some(Cached {
        pid,
        namespace,
        file,
        mounts: mounts.clone(),
    });
    Ok(mounts)
}

/// The mount visible at exactly `path`: the last one stacked there.
#[must_use]
pub fn at<'m>(mounts: &'m [MountInfo], path: &Path) -> Option<&'m MountInfo> {
    mounts.iter().rev().find(|m| m.mount_point == path)
}

/// The mount `path` lives on: among the mounts whose mount point is `path` or one of its
/// parents, the deepest, and of those stacked on the same point the last.
#[must_use]
pub fn covering<'m>(mounts: &'m [MountInfo], path: &Path) -> Option<&'m MountInfo> {
    mounts
        .iter()
        .filter(|m| path.starts_with(&m.mount_point))
        .max_by_key(|m| m.mount_point.components().count())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 27 0:21 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard
31 23 0:28 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
32 31 0:29 /user.slice /sys/fs/cgroup/cpu,cpuacct rw,relatime master:3 propagate_from:1 - cgroup cgroup rw,cpu,cpuacct
40 27 0:40 / /mnt/with\\040space\\011tab rw shared:7 master:2 - tmpfs  rw
41 27 0:41 / /mnt/back\\134slash rw unbindable - fuse.sshfs me@host:/a\\040b rw,user_id=0
";

    #[test]
    fn every_field_is_read() {
        let mounts = parse(SAMPLE.as_bytes()).unwrap();
        assert_eq!(mounts.len(), 6);
        let proc = &mounts[0];
        assert_eq!(
            (proc.mount_id, proc.parent_id, proc.major, proc.minor),
            (22, 27, 0, 21)
        );
        assert_eq!(proc.root, Path::new("/"));
        assert_eq!(proc.mount_point, Path::new("/proc"));
        assert_eq!(
            proc.mount_options,
            ["rw", "nosuid", "nodev", "noexec", "relatime"]
        );
        assert!(proc.optional.is_empty());
        assert_eq!(
            (proc.fs_type.as_str(), proc.source.as_str()),
            ("proc", "proc")
        );
        assert_eq!(proc.super_options, ["rw"]);
        assert_eq!(mounts[1].major, 254);
    }

    #[test]
    fn optional_fields_are_kept_in_order_and_give_the_propagation() {
        let mounts = parse(SAMPLE.as_bytes()).unwrap();
        assert_eq!(mounts[1].optional, ["shared:1"]);
        assert_eq!(mounts[1].propagation(), "shared");
        assert_eq!(mounts[3].optional, ["master:3", "propagate_from:1"]);
        assert_eq!(mounts[3].propagation(), "master");
        assert_eq!(mounts[4].propagation(), "master", "shared and slave");
        assert_eq!(mounts[5].propagation(), "unbindable");
        assert_eq!(mounts[0].propagation(), "private");
        assert_eq!(mounts[3].root, Path::new("/user.slice"));
        assert_eq!(mounts[3].super_options, ["rw", "cpu", "cpuacct"]);
    }

    #[test]
    fn escapes_are_undone_and_an_empty_source_is_kept() {
        let mounts = parse(SAMPLE.as_bytes()).unwrap();
        assert_eq!(mounts[4].mount_point, Path::new("/mnt/with space\ttab"));
        assert_eq!(mounts[4].source, "");
        assert_eq!(mounts[5].mount_point, Path::new("/mnt/back\\slash"));
        assert_eq!(mounts[5].source, "me@host:/a b");
        assert_eq!(mounts[5].fs_type, "fuse.sshfs");
    }

    #[test]
    fn unescape_keeps_what_is_not_an_escape() {
        assert_eq!(unescape(b"a\\040b"), b"a b");
        assert_eq!(unescape(b"end\\"), b"end\\");
        assert_eq!(unescape(b"short\\04"), b"short\\04");
        assert_eq!(unescape(b"not\\08x"), b"not\\08x");
        assert_eq!(unescape(b"big\\777"), b"big\\777", "above one byte");
        assert_eq!(unescape(b"\\134\\134"), b"\\\\");
    }

    #[test]
    fn a_non_utf8_mount_point_is_kept_as_bytes() {
        let mounts = parse(b"1 0 0:1 / /a\xff rw - tmpfs tmpfs rw\n").unwrap();
        assert_eq!(mounts[0].mount_point.as_os_str().len(), 3);
    }

    #[test]
    fn finds_the_mount_at_and_the_mount_holding_a_path() {
        let mut mounts = parse(SAMPLE.as_bytes()).unwrap();
        let m = covering(&mounts, Path::new("/var/lib/x")).unwrap();
        assert_eq!(m.mount_point, Path::new("/"));
        let m = covering(&mounts, Path::new("/proc/1")).unwrap();
        assert_eq!(m.mount_point, Path::new("/proc"));
        assert!(
            covering(&mounts, Path::new("/procx")).is_some_and(|m| m.mount_point == Path::new("/"))
        );
        // A second mount stacked on /proc hides the first.
        let mut top = mounts[0].clone();
        top.mount_id = 99;
        mounts.push(top);
        assert_eq!(
            covering(&mounts, Path::new("/proc/1")).unwrap().mount_id,
            99
        );
        assert_eq!(at(&mounts, Path::new("/proc")).unwrap().mount_id, 99);
        assert!(at(&mounts, Path::new("/nowhere")).is_none());
    }

    #[test]
    fn malformed_lines_are_refused_with_their_number() {
        for (text, line, reason) in [
            (
                "1 0 0:1 / /\n",
                1,
                "fewer than six fields before the separator",
            ),
            (
                "1 0 0:1 / / rw tmpfs tmpfs rw\n",
                1,
                "no `-` separator after the optional fields",
            ),
            (
                "1 0 0:1 / / rw - tmpfs tmpfs\n",
                1,
                "expected filesystem type, source and super options after the separator",
            ),
            (
                "1 0 0:1 / / rw - a b c d\n",
                1,
                "expected filesystem type, source and super options after the separator",
            ),
            (
                "x 0 0:1 / / rw - tmpfs tmpfs rw\n",
                1,
                "the mount id is not a number",
            ),
            (
                "1 y 0:1 / / rw - tmpfs tmpfs rw\n",
                1,
                "the parent id is not a number",
            ),
            (
                "1 0 01 / / rw - tmpfs tmpfs rw\n",
                1,
                "major:minor is not two numbers",
            ),
            (
                "1 0 0:z / / rw - tmpfs tmpfs rw\n",
                1,
                "major:minor is not two numbers",
            ),
            (
                "1 0 0:1 / / rw - tmpfs tmpfs rw\n\n",
                2,
                "fewer than six fields before the separator",
            ),
        ] {
            let err = parse(text.as_bytes()).unwrap_err();
            assert_eq!((err.line, err.reason), (line, reason), "{text:?}: {err}");
        }
    }

    #[test]
    fn a_dash_in_the_mount_options_position_is_not_the_separator() {
        // Field 6 is the mount options even when it reads "-"; the separator comes after it.
        let mounts = parse(b"1 0 0:1 / /x - - tmpfs tmpfs rw\n").unwrap();
        assert_eq!(mounts[0].mount_options, ["-"]);
        assert_eq!(mounts[0].fs_type, "tmpfs");
    }

    #[test]
    fn own_mountinfo_reads() {
        let mounts = read(None).unwrap();
        assert!(at(&mounts, Path::new("/proc")).is_some_and(|m| m.fs_type == "proc"));
    }

    /// The cached table is read afresh once something is mounted (a tmpfs on a fresh
    /// directory, unmounted at once) and once it is gone. (That an unchanged table is not read
    /// again is not asserted: other tests of this binary mount and unmount in between.)
    #[test]
    fn the_cached_table_is_read_again_after_a_mount() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        read_self_cached().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let point = dir.path().canonicalize().unwrap();
        nix::mount::mount(
            Some("tmpfs"),
            &point,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .unwrap();
        let after = read_self_cached();
        nix::mount::umount2(&point, nix::mount::MntFlags::MNT_DETACH).unwrap();
        let after = after.unwrap();
        assert!(
            after.iter().any(|m| m.mount_point == point),
            "the new mount at {} is in the table read after it",
            point.display()
        );
        let gone = read_self_cached().unwrap();
        assert!(
            !gone.iter().any(|m| m.mount_point == point),
            "and gone after the unmount"
        );
    }
}
