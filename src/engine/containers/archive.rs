//! `docker cp` in refengd: `HEAD`, `GET` and `PUT /containers/{id}/archive?path=`, as dockerd
//! answers them (the `X-Docker-Container-Path-Stat` header, the tar layout the CLI expects, the
//! statuses and messages of its failures).
//!
//! Every path is resolved inside the container's root with openat2(2) `RESOLVE_IN_ROOT`, one
//! directory fd at a time below it (`RESOLVE_NO_SYMLINKS` for each child of a walk): a symlink
//! in the container, absolute, relative, a `..` chain or one swapped between a check and a use,
//! resolves inside the container or not at all, never to a host file. The root is the running
//! container's own (`/proc/<pid>/root`, its mount namespace with its volumes), or, for a
//! container without a process, its snapshot mounted in a private scratch place with its
//! volumes and binds mounted over it, as dockerd's `mountVolumes` does, and detached after.
//! Archives come in through the layer unpacker's hardened reader
//! ([`crate::image::layer::unpack_into_dir`]).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use bytes::Bytes;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, ResolveFlag};
use nix::mount::MsFlags;
use nix::sys::stat::{self, FileStat, Mode, SFlag};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use super::super::error::ApiError;
use super::super::image_archive::ChunkWriter;
use super::super::Engine;
use super::files::Scratch;
use super::mounts::{MountKind, MountPoint};
use crate::image::layer::{unpack_into_dir, ApplyOptions, CopyRules, LayerError};
use crate::image::snapshot::{MountGuard, MountSpec};
use crate::image::tar::{Builder, Entry, Kind};
use crate::sys::openat2::{open_in_root, open_in_root_with, proc_fd_path};

/// The header dockerd answers a stat in.
pub const STAT_HEADER: &str = "X-Docker-Container-Path-Stat";

/// Most symlinks followed while a link target is evaluated (Linux's own bound is 40; Go's
/// `FollowSymlinkInScope` allows 255).
const MAX_LINKS: usize = 255;

/// How the path given ends, which decides whether its last component is followed and what the
/// archive's top entry is called (moby's `PreserveTrailingDotOrSeparator`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tail {
    /// `/a/b`: the last component itself (a symlink is not followed).
    Plain,
    /// `/a/b/`: the directory `b` names, through a symlink too.
    Separator,
    /// `/a/b/.`: the contents of that directory; the archive's top entry is `.`.
    Dot,
}

/// The `path` parameter of an archive request, cleaned as dockerd cleans it: taken from `/`,
/// `.` dropped, `..` applied lexically and clamped at the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerPath {
    /// As the request gave it (for messages).
    pub raw: String,
    /// The cleaned components, none empty, `.` or `..`.
    pub components: Vec<String>,
    /// How it ended.
    pub tail: Tail,
}

impl ContainerPath {
    /// Parses the `path` query parameter.
    ///
    /// # Errors
    /// 400 for an empty path (dockerd's message, its missing space included) and a NUL byte.
    pub fn parse(raw: &str) -> Result<ContainerPath, ApiError> {
        if raw.is_empty() {
            return Err(ApiError::BadRequest(
                "bad parameter: pathcannot be empty".into(),
            ));
        }
        if raw.contains('\0') {
            return Err(ApiError::BadRequest(format!(
                "path {raw:?} contains a NUL byte"
            )));
        }
        let mut components: Vec<String> = Vec::new();
        for c in raw.split('/') {
            match c {
                "" | "." => {}
                ".." => {
                    components.pop();
                }
                c => components.push(c.to_owned()),
            }
        }
        // Go's filepath.Base of the path as given: trailing separators dropped first.
        let trimmed = raw.trim_end_matches('/');
        let last = trimmed.rsplit('/').next().unwrap_or("");
        let tail = if !trimmed.is_empty() && last == "." {
            Tail::Dot
        } else if raw.ends_with('/') && !components.is_empty() {
            Tail::Separator
        } else {
            Tail::Plain
        };
        Ok(ContainerPath {
            raw: raw.to_owned(),
            components,
            tail,
        })
    }

    /// The absolute path in the container, with the tail kept (`/a/b/.`).
    #[must_use]
    pub fn absolute(&self) -> String {
        let mut s = format!("/{}", self.components.join("/"));
        match self.tail {
            Tail::Plain => {}
            Tail::Separator => s.push('/'),
            Tail::Dot if s == "/" => s.push('.'),
            Tail::Dot => s.push_str("/."),
        }
        s
    }

    /// The name dockerd reports and roots the archive at: `.` for a trailing `/.`, `/` for the
    /// root, else the last component.
    #[must_use]
    pub fn name(&self) -> &str {
        match (self.tail, self.components.last()) {
            (Tail::Dot, _) => ".",
            (_, None) => "/",
            (_, Some(last)) => last,
        }
    }

    /// Whether the last component is resolved (followed when it is a symlink).
    fn follows_last(&self) -> bool {
        self.tail != Tail::Plain || self.components.is_empty()
    }
}

/// The query of `PUT /containers/{id}/archive`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutQuery {
    /// Where the archive is unpacked (an existing directory).
    pub path: ContainerPath,
    /// `noOverwriteDirNonDir`.
    pub no_overwrite_dir_non_dir: bool,
    /// `copyUIDGID`: the entries are owned by the container's user.
    pub copy_uid_gid: bool,
}

impl PutQuery {
    /// From the query's values (booleans as dockerd's `BoolValue` reads them).
    ///
    /// # Errors
    /// As [`ContainerPath::parse`].
    pub fn parse(path: &str, no_overwrite: bool, copy_uid_gid: bool) -> Result<Self, ApiError> {
        Ok(PutQuery {
            path: ContainerPath::parse(path)?,
            no_overwrite_dir_non_dir: no_overwrite,
            copy_uid_gid,
        })
    }
}

/// dockerd's `container.PathStat`, the JSON inside the stat header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PathStat {
    /// The name (see [`ContainerPath::name`]).
    pub name: String,
    /// `st_size`.
    pub size: i64,
    /// Go's `os.FileMode` bits.
    pub mode: u32,
    /// RFC 3339 with nanoseconds, as Go's `time.Time` prints.
    pub mtime: String,
    /// For a symlink, its target fully evaluated in the container's root.
    #[serde(rename = "linkTarget")]
    pub link_target: String,
}

impl PathStat {
    /// The base64 JSON of the header.
    #[must_use]
    pub fn header_value(&self) -> String {
        base64::engine::general_purpose::STANDARD
            .encode(serde_json::to_vec(self).unwrap_or_default())
    }
}

const GO_MODE_DIR: u32 = 1 << 31;

/// Go's `os.FileMode` of a `st_mode` (`fs.FileMode` bits; `syscall` to `os` as Go's
/// `fillFileStatFromSys` does).
#[must_use]
pub fn go_file_mode(st_mode: u32) -> u32 {
    let mut m = st_mode & 0o777;
    let fmt = SFlag::from_bits_truncate(st_mode) & SFlag::S_IFMT;
    m |= match fmt {
        SFlag::S_IFBLK => 1 << 26,
        SFlag::S_IFCHR => (1 << 26) | (1 << 21),
        SFlag::S_IFDIR => GO_MODE_DIR,
        SFlag::S_IFIFO => 1 << 25,
        SFlag::S_IFLNK => 1 << 27,
        SFlag::S_IFSOCK => 1 << 24,
        _ => 0,
    };
    if st_mode & 0o4000 != 0 {
        m |= 1 << 23;
    }
    if st_mode & 0o2000 != 0 {
        m |= 1 << 22;
    }
    if st_mode & 0o1000 != 0 {
        m |= 1 << 20;
    }
    m
}

/// Go's `time.Time` JSON (RFC 3339, trailing zeros of the nanoseconds dropped), in UTC.
#[must_use]
pub fn go_time(sec: i64, nsec: i64) -> String {
    let Some(t) = chrono::DateTime::from_timestamp(sec, u32::try_from(nsec).unwrap_or(0)) else {
        return "0001-01-01T00:00:00Z".into();
    };
    let mut s = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    if nsec > 0 {
        let frac = format!("{nsec:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

fn is_kind(st: &FileStat, kind: SFlag) -> bool {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == kind
}

/// Go's text of an errno (`not a directory`).
fn errno_text(e: Errno) -> String {
    e.desc().to_lowercase()
}

fn comps_path(comps: &[String]) -> PathBuf {
    PathBuf::from(comps.join("/"))
}

/// A path resolved in a container's root: what it names, and its directory when the last
/// component was not followed.
struct Resolved {
    /// `O_PATH` of what the path names.
    fd: OwnedFd,
    st: FileStat,
    /// The directory holding it and its name there (`Tail::Plain` below the root).
    parent: Option<(OwnedFd, Vec<u8>)>,
}

/// Resolves `p` in `root` as dockerd's `ResolvePath` does: every directory component followed
/// (in the root), the last followed only for `Tail::Separator` and `Tail::Dot`.
fn resolve(root: BorrowedFd<'_>, p: &ContainerPath) -> nix::Result<Resolved> {
    if p.follows_last() {
        let mut path = comps_path(&p.components).into_os_string();
        if !p.components.is_empty() {
            // The kernel refuses a non-directory before a trailing slash, as lstat("f/") does.
            path.push("/");
        }
        let fd = open_in_root(root, &path, OFlag::O_PATH, Mode::empty())?;
        let st = stat::fstat(&fd)?;
        return Ok(Resolved {
            fd,
            st,
            parent: None,
        });
    }
    let (last, dir) = p.components.split_last().ok_or(Errno::ENOENT)?;
    let parent = open_in_root(
        root,
        comps_path(dir),
        OFlag::O_PATH | OFlag::O_DIRECTORY,
        Mode::empty(),
    )?;
    let fd = open_in_root_with(
        parent.as_fd(),
        last,
        OFlag::O_PATH | OFlag::O_NOFOLLOW,
        Mode::empty(),
        ResolveFlag::RESOLVE_NO_SYMLINKS,
    )?;
    let st = stat::fstat(&fd)?;
    Ok(Resolved {
        fd,
        st,
        parent: Some((parent, last.as_bytes().to_vec())),
    })
}

/// The path `comps` names once every symlink is followed inside `root`, as moby's
/// `FollowSymlinkInScope` evaluates it: missing components are kept as they are, `..` stops at
/// the root. Each step opens one component below a prefix that holds no symlink, in the root.
fn evaluate_in_root(root: BorrowedFd<'_>, comps: &[String]) -> nix::Result<String> {
    let mut todo: VecDeque<Vec<u8>> = comps.iter().map(|c| c.as_bytes().to_vec()).collect();
    let mut done: Vec<Vec<u8>> = Vec::new();
    let mut links = 0;
    while let Some(c) = todo.pop_front() {
        match &c[..] {
            b"" | b"." => continue,
            b".." => {
                done.pop();
                continue;
            }
            _ => {}
        }
        let mut candidate = done.clone();
        candidate.push(c.clone());
        let joined = candidate.join(&b'/');
        let path = Path::new(OsStr::from_bytes(&joined));
        let fd = match open_in_root_with(
            root,
            path,
            OFlag::O_PATH | OFlag::O_NOFOLLOW,
            Mode::empty(),
            ResolveFlag::RESOLVE_NO_SYMLINKS,
        ) {
            Ok(fd) => fd,
            // Below a missing component nothing more exists: keep the rest as written.
            Err(Errno::ENOENT) => {
                done.push(c);
                continue;
            }
            Err(e) => return Err(e),
        };
        if !is_kind(&stat::fstat(&fd)?, SFlag::S_IFLNK) {
            done.push(c);
            continue;
        }
        links += 1;
        if links > MAX_LINKS {
            return Err(Errno::ELOOP);
        }
        let target = nix::fcntl::readlinkat(&fd, "")?;
        let target = target.as_bytes();
        if target.starts_with(b"/") {
            done.clear();
        }
        for t in target.split(|&b| b == b'/').rev() {
            todo.push_front(t.to_vec());
        }
    }
    Ok(format!(
        "/{}",
        String::from_utf8_lossy(&done.join(&b'/')).into_owned()
    ))
}

/// The stat dockerd reports for `p`.
fn stat_of(root: BorrowedFd<'_>, p: &ContainerPath, r: &Resolved) -> nix::Result<PathStat> {
    let link_target = if is_kind(&r.st, SFlag::S_IFLNK) {
        evaluate_in_root(root, &p.components)?
    } else {
        String::new()
    };
    Ok(PathStat {
        name: p.name().to_owned(),
        size: r.st.st_size,
        mode: go_file_mode(r.st.st_mode),
        mtime: go_time(r.st.st_mtime, r.st.st_mtime_nsec),
        link_target,
    })
}

/// File systems a running container's root holds that dockerd's view of it (its rootfs and
/// volumes) does not: their mount points are archived as empty directories.
const PSEUDO_FS: &[i64] = &[
    0x9fa0,      // proc
    0x6265_6572, // sysfs
    0x1cd1,      // devpts
    0x0027_e0eb, // cgroup
    0x6367_7270, // cgroup2
    0x1980_0202, // mqueue
    0x7363_6673, // securityfs
    0x6462_6720, // debugfs
    0x7472_6163, // tracefs
    0xcafe_4a11, // bpf
];

fn is_pseudo_fs(fd: &OwnedFd) -> bool {
    nix::sys::statfs::fstatfs(fd).is_ok_and(|s| {
        #[allow(clippy::unnecessary_cast)]
        let t = s.filesystem_type().0 as i64;
        PSEUDO_FS.contains(&t)
    })
}

/// Writes a tree as dockerd's `TarWithOptions` with `RebaseNames` does: every child opened
/// below its directory's fd without following a symlink, names sorted, hard links kept,
/// sockets left out, mtimes in whole seconds.
struct TreeWriter<W: Write> {
    out: Builder<W>,
    links: HashMap<(u64, u64), Vec<u8>>,
}

impl<W: Write> TreeWriter<W> {
    fn header(&self, name: Vec<u8>, kind: Kind, st: &FileStat) -> Entry {
        let mut e = Entry::new(name, kind);
        e.mode = st.st_mode & 0o7777;
        e.uid = u64::from(st.st_uid);
        e.gid = u64::from(st.st_gid);
        e.mtime = st.st_mtime;
        e
    }

    /// The directory `fd` as `name` (without its trailing slash) and everything below it.
    fn dir(&mut self, fd: OwnedFd, st: &FileStat, name: &[u8]) -> io::Result<()> {
        let top = if name.is_empty() {
            b"/".to_vec()
        } else {
            [name, b"/"].concat()
        };
        let e = self.header(top, Kind::Directory, st);
        self.out.append(&e, io::empty())?;
        if is_pseudo_fs(&fd) {
            return Ok(());
        }
        let mut names = Vec::new();
        let listing = nix::dir::Dir::openat(
            &fd,
            ".",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        for ent in listing {
            let n = ent?.file_name().to_bytes().to_vec();
            if n != b"." && n != b".." {
                names.push(n);
            }
        }
        names.sort();
        for n in names {
            let child = [name, b"/", &n].concat();
            match self.child(fd.as_fd(), &n, child) {
                // Gone since the listing: left out, as a walk that raced a removal.
                Err(e) if e.raw_os_error() == Some(Errno::ENOENT as i32) => {}
                other => other?,
            }
        }
        Ok(())
    }

    /// The entry `n` of the directory `dir`, archived as `name`.
    fn child(&mut self, dir: BorrowedFd<'_>, n: &[u8], name: Vec<u8>) -> io::Result<()> {
        let st = stat::fstatat(dir, n, AtFlags::AT_SYMLINK_NOFOLLOW)?;
        let fmt = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
        let one = |flags: OFlag| {
            open_in_root_with(
                dir,
                OsStr::from_bytes(n),
                flags | OFlag::O_NOFOLLOW,
                Mode::empty(),
                ResolveFlag::RESOLVE_NO_SYMLINKS,
            )
        };
        match fmt {
            SFlag::S_IFDIR => {
                let fd = one(OFlag::O_RDONLY | OFlag::O_DIRECTORY)?;
                let st = stat::fstat(&fd)?;
                self.dir(fd, &st, &name)
            }
            SFlag::S_IFREG => {
                if st.st_nlink > 1 {
                    let key = (st.st_dev, st.st_ino);
                    if let Some(first) = self.links.get(&key).cloned() {
                        let mut e = self.header(name, Kind::HardLink, &st);
                        e.link = first;
                        return self.out.append(&e, io::empty());
                    }
                    self.links.insert(key, name.clone());
                }
                // O_NONBLOCK: a FIFO swapped in after the stat never blocks the open.
                let f = File::from(one(OFlag::O_RDONLY | OFlag::O_NONBLOCK)?);
                let st = stat::fstat(&f)?;
                if !is_kind(&st, SFlag::S_IFREG) {
                    return Err(io::Error::other(format!(
                        "{} changed while it was archived",
                        String::from_utf8_lossy(&name)
                    )));
                }
                let mut e = self.header(name, Kind::File, &st);
                e.size = u64::try_from(st.st_size).unwrap_or(0);
                self.out
                    .append(&e, io::BufReader::with_capacity(256 << 10, f))
            }
            SFlag::S_IFLNK => {
                let target = nix::fcntl::readlinkat(dir, OsStr::from_bytes(n))?;
                let mut e = self.header(name, Kind::Symlink, &st);
                e.link = target.as_bytes().to_vec();
                self.out.append(&e, io::empty())
            }
            SFlag::S_IFIFO => {
                let e = self.header(name, Kind::Fifo, &st);
                self.out.append(&e, io::empty())
            }
            SFlag::S_IFCHR | SFlag::S_IFBLK => {
                let kind = if fmt == SFlag::S_IFCHR {
                    Kind::CharDevice
                } else {
                    Kind::BlockDevice
                };
                let mut e = self.header(name, kind, &st);
                e.dev_major = stat::major(st.st_rdev);
                e.dev_minor = stat::minor(st.st_rdev);
                self.out.append(&e, io::empty())
            }
            // Sockets, as dockerd's archive skips them.
            _ => Ok(()),
        }
    }
}

/// Archives what `r` names as dockerd does: a directory as `name/` and its tree (`name` ""
/// for the root, whose entries start with `/`), anything else as one entry `name`.
fn write_archive<W: Write>(r: Resolved, p: &ContainerPath, out: W) -> io::Result<W> {
    let mut w = TreeWriter {
        out: Builder::new(out),
        links: HashMap::new(),
    };
    let rebase = match p.name() {
        "/" => "",
        n => n,
    }
    .as_bytes()
    .to_vec();
    if is_kind(&r.st, SFlag::S_IFDIR) {
        let fd = open_in_root(
            r.fd.as_fd(),
            ".",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY,
            Mode::empty(),
        )?;
        w.dir(fd, &r.st, &rebase)?;
    } else {
        let (parent, last) = r
            .parent
            .as_ref()
            .ok_or_else(|| io::Error::from(Errno::ENOTDIR))?;
        w.child(parent.as_fd(), last, rebase)?;
    }
    w.out.finish()
}

/// Archives the entry `last` of the directory `parent` as `name` (a directory as `name/` and
/// its tree), as [`write_archive`] does for a container's path: the docker CLI's `TarResource`
/// for a local `docker cp` source is the same walk (`TarWithOptions` with `RebaseNames`).
///
/// # Errors
/// A failed read of the tree or write of the archive.
pub fn archive_entry<W: Write>(
    parent: BorrowedFd<'_>,
    last: &[u8],
    name: Vec<u8>,
    out: W,
) -> io::Result<W> {
    let mut w = TreeWriter {
        out: Builder::new(out),
        links: HashMap::new(),
    };
    w.child(parent, last, name)?;
    w.out.finish()
}

/// The user a `copyUIDGID` copy gives the files to: `Config.User` (`name`, `uid`,
/// `name:group`, `uid:gid`) looked up in the container's `/etc/passwd` and `/etc/group`.
fn container_owner(root: BorrowedFd<'_>, user: &str) -> Result<(u32, u32), String> {
    let read = |path: &str| -> String {
        open_in_root(root, path, OFlag::O_RDONLY, Mode::empty())
            .ok()
            .and_then(|fd| io::read_to_string(File::from(fd)).ok())
            .unwrap_or_default()
    };
    let (u, g) = user.split_once(':').unwrap_or((user, ""));
    let passwd = read("etc/passwd");
    let row = passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 4 && (f[0] == u || f[2] == u)).then(|| (f[2].parse(), f[3].parse()))
    });
    let (uid, mut gid) = match (row, u.parse::<u32>()) {
        (Some((Ok(uid), Ok(gid))), _) => (uid, gid),
        (_, Ok(uid)) => (uid, uid),
        _ => {
            return Err(format!(
                "unable to find user {u}: no matching entries in passwd file"
            ))
        }
    };
    if !g.is_empty() {
        let group = read("etc/group");
        gid = match group.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 3 && (f[0] == g || f[2] == g)).then(|| f[2].parse::<u32>())
        }) {
            Some(Ok(gid)) => gid,
            _ => g.parse().map_err(|_| {
                format!("unable to find group {g}: no matching entries in group file")
            })?,
        };
    }
    Ok((uid, gid))
}

/// A container's root as `docker cp` reads and writes it; mounts made for it go when it is
/// dropped.
struct RootView {
    root: OwnedFd,
    // Declared after `root`: the fd is closed before the mounts are detached.
    _mounts: Option<(MountGuard, Scratch)>,
    // Last: a stopped container's operations (start above all, which would mount the same
    // writable layer a second time) wait until the copy's mounts are gone, as dockerd holds the
    // container's lock until the archive is read.
    _op: Option<tokio::sync::OwnedMutexGuard<()>>,
}

/// Mounts `spec` privately at `target` (its mounts never propagate to a peer).
fn mount_private(spec: &MountSpec, target: &Path) -> Result<MountGuard, String> {
    let guard = spec.mount(target).map_err(|e| e.to_string())?;
    nix::mount::mount(
        None::<&str>,
        target,
        None::<&str>,
        MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| format!("{}: {e}", target.display()))?;
    Ok(guard)
}

/// Opens (making what is missing, as dockerd's `CreateIfNotExists`) the destination `dest` of
/// a mount in `root`, a directory or, for a file source, an empty file.
fn mount_target(root: BorrowedFd<'_>, dest: &str, file: bool) -> nix::Result<OwnedFd> {
    let comps: Vec<&str> = dest.split('/').filter(|c| !c.is_empty()).collect();
    let mut cur = open_in_root(root, ".", OFlag::O_PATH | OFlag::O_DIRECTORY, Mode::empty())?;
    for (i, c) in comps.iter().enumerate() {
        let last = i + 1 == comps.len();
        let open = |cur: &OwnedFd| {
            open_in_root(
                cur.as_fd(),
                c,
                if last && file {
                    OFlag::O_PATH
                } else {
                    OFlag::O_PATH | OFlag::O_DIRECTORY
                },
                Mode::empty(),
            )
        };
        cur = match open(&cur) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => {
                if last && file {
                    let f = open_in_root(
                        cur.as_fd(),
                        c,
                        OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_EXCL,
                        Mode::from_bits_truncate(0o755),
                    )?;
                    drop(f);
                } else {
                    stat::mkdirat(&cur, *c, Mode::from_bits_truncate(0o755))?;
                }
                open(&cur)?
            }
            Err(e) => return Err(e),
        };
    }
    Ok(cur)
}

/// Binds the container's volumes and binds (not its tmpfs, as dockerd's `mountVolumes`) over
/// its root mounted at `root_path`, parents first.
fn mount_volumes(root_path: &Path, mounts: &[MountPoint]) -> Result<(), String> {
    let mut binds: Vec<&MountPoint> = mounts
        .iter()
        .filter(|m| m.kind != MountKind::Tmpfs && !m.source.is_empty())
        .collect();
    binds.sort_by_key(|m| m.destination.split('/').filter(|c| !c.is_empty()).count());
    for m in binds {
        let err =
            |e: &dyn std::fmt::Display| format!("mounting {} at {}: {e}", m.source, m.destination);
        let root = nix::fcntl::open(
            root_path,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| err(&e))?;
        // A volume's subpath is opened inside the volume and bound by its fd.
        let sub = if m.kind == MountKind::Volume && !m.subpath.is_empty() {
            Some(super::mounts::open_subpath(m).map_err(|e| e.to_string())?)
        } else {
            None
        };
        let source = sub
            .as_ref()
            .map_or_else(|| PathBuf::from(&m.source), proc_fd_path);
        let is_file = std::fs::metadata(&source).is_ok_and(|md| !md.is_dir());
        let target = mount_target(root.as_fd(), &m.destination, is_file).map_err(|e| err(&e))?;
        let flags = if m.non_recursive {
            MsFlags::MS_BIND
        } else {
            MsFlags::MS_BIND | MsFlags::MS_REC
        };
        // The fd's /proc path makes the kernel mount on the very inode resolved in the root.
        nix::mount::mount(
            Some(&source),
            &proc_fd_path(&target),
            None::<&str>,
            flags,
            None::<&str>,
        )
        .map_err(|e| err(&e))?;
        // Opened again from the root, the path now lands on the new mount.
        let mounted = mount_target(root.as_fd(), &m.destination, is_file).map_err(|e| err(&e))?;
        let mut set = MsFlags::MS_PRIVATE | MsFlags::MS_REC;
        nix::mount::mount(
            None::<&str>,
            &proc_fd_path(&mounted),
            None::<&str>,
            set,
            None::<&str>,
        )
        .map_err(|e| err(&e))?;
        if !m.rw {
            set = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
            nix::mount::mount(
                None::<&str>,
                &proc_fd_path(&mounted),
                None::<&str>,
                set,
                None::<&str>,
            )
            .map_err(|e| err(&e))?;
        }
    }
    Ok(())
}

/// What a copy needs to know of a container.
struct Target {
    id: String,
    /// The init process while it runs.
    pid: Option<u32>,
    mounts: Vec<MountPoint>,
    user: String,
    readonly_rootfs: bool,
}

/// dockerd's answer for an errno met while resolving `p` in container `name`.
fn path_error(e: Errno, p: &ContainerPath, name: &str) -> ApiError {
    match e {
        Errno::ENOENT => ApiError::NotFound(format!(
            "Could not find the file {} in container {name}",
            p.raw
        )),
        e => ApiError::Internal(format!("lstat {}: {}", p.absolute(), errno_text(e))),
    }
}

impl Engine {
    fn copy_target(&self, name: &str) -> Result<Target, ApiError> {
        let id = self.containers.find(name)?;
        let map = self.containers.lock();
        let e = map
            .get(&id)
            .ok_or_else(|| ApiError::NotFound(format!("No such container: {name}")))?;
        let live = matches!(
            e.lc.status(),
            refeng_spec::engine::Status::Running | refeng_spec::engine::Status::Paused
        );
        Ok(Target {
            id: id.clone(),
            pid: (live && e.stored.state.pid != 0).then_some(e.stored.state.pid),
            mounts: e.stored.mounts.clone(),
            user: e.stored.config.user.clone(),
            readonly_rootfs: e.stored.host.readonly_rootfs,
        })
    }

    /// The container `name` and its root, looked at under the container's operation lock (held
    /// on for a mounted snapshot, see [`RootView`]).
    async fn copy_view(&self, name: &str) -> Result<(Target, RootView), ApiError> {
        let id = self.containers.find(name)?;
        let guard = self.op_lock(&id)?.lock_owned().await;
        let t = self.copy_target(name)?;
        let mut view = self.root_view(&t).await?;
        if view._mounts.is_some() {
            view._op = Some(guard);
        }
        Ok((t, view))
    }

    /// The container's root: its process's, or its snapshot with its volumes, mounted
    /// privately under the data root's scratch directory.
    async fn root_view(&self, t: &Target) -> Result<RootView, ApiError> {
        if let Some(pid) = t.pid {
            let root = nix::fcntl::open(
                format!("/proc/{pid}/root").as_str(),
                OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| ApiError::Internal(format!("the root of container {}: {e}", t.id)))?;
            return Ok(RootView {
                root,
                _mounts: None,
                _op: None,
            });
        }
        let mounts = self.containers.ctd.mounts(&t.id).await?;
        let [m] = &mounts[..] else {
            return Err(ApiError::Internal(format!(
                "the filesystem of container {}: {} stacked mounts",
                t.id,
                mounts.len()
            )));
        };
        let spec = MountSpec {
            fs_type: if m.r#type == "rbind" {
                "bind".into()
            } else {
                m.r#type.clone()
            },
            source: m.source.clone().into(),
            options: m
                .options
                .iter()
                .filter(|o| !matches!(o.as_str(), "rbind" | "bind" | "rw"))
                .cloned()
                .collect(),
        };
        let data_root = self.config().data_root.clone();
        let volumes = t.mounts.clone();
        let id = t.id.clone();
        tokio::task::spawn_blocking(move || -> Result<RootView, String> {
            let scratch = Scratch::new(&data_root, "cp")?;
            let guard = mount_private(&spec, &scratch.0)?;
            mount_volumes(&scratch.0, &volumes)?;
            let root = nix::fcntl::open(
                &scratch.0,
                OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| e.to_string())?;
            Ok(RootView {
                root,
                _mounts: Some((guard, scratch)),
                _op: None,
            })
        })
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| ApiError::Internal(format!("the filesystem of container {id}: {e}")))
    }

    /// `HEAD /containers/{id}/archive?path=`: what `path` is.
    ///
    /// # Errors
    /// 404 for a missing container or path; 500 for other failures of the lookup.
    pub async fn container_stat_path(&self, name: &str, path: &str) -> Result<PathStat, ApiError> {
        let p = ContainerPath::parse(path)?;
        let (_, view) = self.copy_view(name).await?;
        let name = name.to_owned();
        tokio::task::spawn_blocking(move || {
            let r = resolve(view.root.as_fd(), &p).map_err(|e| path_error(e, &p, &name))?;
            stat_of(view.root.as_fd(), &p, &r).map_err(|e| path_error(e, &p, &name))
        })
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
    }

    /// `GET /containers/{id}/archive?path=`: the stat and a tar stream of what `path` names.
    ///
    /// # Errors
    /// As [`Engine::container_stat_path`]; a failure while the archive streams ends it early.
    pub async fn container_archive(
        &self,
        name: &str,
        path: &str,
    ) -> Result<(PathStat, mpsc::Receiver<Bytes>), ApiError> {
        let p = ContainerPath::parse(path)?;
        let (t, view) = self.copy_view(name).await?;
        let (tx, rx) = mpsc::channel(16);
        let (stat_tx, stat_rx) = oneshot::channel();
        let name = name.to_owned();
        let id = t.id.clone();
        tokio::task::spawn_blocking(move || {
            let first = resolve(view.root.as_fd(), &p)
                .and_then(|r| stat_of(view.root.as_fd(), &p, &r).map(|s| (r, s)))
                .map_err(|e| path_error(e, &p, &name));
            let r = match first {
                Ok((r, s)) => {
                    let _ = stat_tx.send(Ok(s));
                    r
                }
                Err(e) => {
                    let _ = stat_tx.send(Err(e));
                    return;
                }
            };
            let done = write_archive(r, &p, ChunkWriter::new(tx)).and_then(|mut w| w.flush());
            if let Err(e) = done {
                tracing::warn!(%id, path = %p.raw, error = %e, "archive ended early");
            }
            drop(view);
        });
        let stat = stat_rx
            .await
            .map_err(|_| ApiError::Internal("the archive was not made".into()))??;
        self.container_event(&t.id, "archive-path", BTreeMap::new());
        Ok((stat, rx))
    }

    /// `PUT /containers/{id}/archive?path=`: unpacks the tar `body` into the directory `path`
    /// names (its last symlink followed), through the container's mounts.
    ///
    /// # Errors
    /// 404 for a missing container or path; 500 as dockerd for a path that is not a
    /// directory, a read-only target, and an archive refused or failing to unpack.
    pub async fn container_extract<R: io::Read + Send + 'static>(
        &self,
        name: &str,
        q: PutQuery,
        body: R,
    ) -> Result<(), ApiError> {
        let (t, view) = match self.copy_view(name).await {
            Ok(v) => v,
            Err(e) => return Err(drained(body, e).await),
        };
        let name = name.to_owned();
        let id = t.id.clone();
        let mut body = body;
        tokio::task::spawn_blocking(move || -> Result<(), ApiError> {
            let r = (|| -> Result<(), ApiError> {
                let root = view.root.as_fd();
                let mut p = q.path.clone();
                // The extraction point is followed to the end, as dockerd's GetResourcePath.
                if p.tail == Tail::Plain && !p.components.is_empty() {
                    p.tail = Tail::Separator;
                }
                let dir = match resolve(root, &p) {
                    Ok(r) => r,
                    Err(Errno::ENOTDIR) => {
                        return Err(ApiError::Internal(
                            "extraction point is not a directory".into(),
                        ))
                    }
                    Err(e) => return Err(path_error(e, &q.path, &name)),
                };
                let absolute = evaluate_in_root(root, &p.components)
                    .map_err(|e| path_error(e, &q.path, &name))?;
                let under = |d: &str| {
                    let d = d.trim_end_matches('/');
                    absolute == d || d.is_empty() || absolute.starts_with(&format!("{d}/"))
                };
                let volume = t
                    .mounts
                    .iter()
                    .filter(|m| under(&m.destination))
                    .max_by_key(|m| m.destination.len());
                match volume {
                    Some(m) if !m.rw => {
                        return Err(ApiError::Internal(
                            "mounted volume is marked read-only".into(),
                        ))
                    }
                    Some(_) => {}
                    None if t.readonly_rootfs => {
                        return Err(ApiError::Internal(
                            "container rootfs is marked read-only".into(),
                        ))
                    }
                    None => {}
                }
                let owner = if q.copy_uid_gid && !t.user.is_empty() {
                    Some(container_owner(root, &t.user).map_err(ApiError::Internal)?)
                } else {
                    None
                };
                let fd = open_in_root(
                    dir.fd.as_fd(),
                    ".",
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY,
                    Mode::empty(),
                )
                .map_err(|e| path_error(e, &q.path, &name))?;
                let rules = CopyRules {
                    no_overwrite_dir_non_dir: q.no_overwrite_dir_non_dir,
                    owner,
                };
                unpack_into_dir(fd, &mut body, rules, &ApplyOptions::default()).map_err(|e| {
                    ApiError::Internal(format!("Error processing tar file: {}", error_text(&e)))
                })?;
                Ok(())
            })();
            if r.is_err() {
                drain(&mut body);
            }
            drop(view);
            r
        })
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
        self.container_event(&id, "extract-to-dir", BTreeMap::new());
        Ok(())
    }
}

/// How much of a refused upload is read before the answer, as Go's server reads up to 256 KiB
/// of an unread body: a client still sending when the connection closes would get a reset
/// instead of the answer.
const DRAIN: u64 = 1 << 20;

fn drain<R: io::Read>(body: &mut R) {
    let _ = io::copy(&mut io::Read::take(body, DRAIN), &mut io::sink());
}

/// Drains `body` (see [`DRAIN`]) off the runtime's threads and gives `e` back.
pub async fn drained<R: io::Read + Send + 'static>(mut body: R, e: ApiError) -> ApiError {
    let _ = tokio::task::spawn_blocking(move || drain(&mut body)).await;
    e
}

/// An unpacker error with its causes.
fn error_text(e: &LayerError) -> String {
    let mut s = e.to_string();
    let mut cur: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> ContainerPath {
        ContainerPath::parse(s).unwrap()
    }

    #[test]
    fn paths_are_cleaned_as_dockerd_cleans_them() {
        for (raw, abs, name) in [
            ("/w/d", "/w/d", "d"),
            ("/w/d/", "/w/d/", "d"),
            ("/w/d/.", "/w/d/.", "."),
            ("w/d/./", "/w/d/.", "."),
            ("../../w/d", "/w/d", "d"),
            ("/w/../w/d", "/w/d", "d"),
            ("/", "/", "/"),
            ("/.", "/.", "."),
            (".", "/.", "."),
            ("//", "/", "/"),
            ("/a/..", "/", "/"),
        ] {
            let c = p(raw);
            assert_eq!((c.absolute().as_str(), c.name()), (abs, name), "{raw}");
        }
        assert!(ContainerPath::parse("").is_err());
        assert!(ContainerPath::parse("/a\0b").is_err());
    }

    proptest::proptest! {
        /// What the fuzz target checks, on paths made of the pieces that matter.
        #[test]
        fn any_path_is_refused_with_a_400_or_parses_cleanly(
            parts in proptest::collection::vec(
                proptest::sample::select(vec!["", ".", "..", "a", "b c", "%", "\0", "/", "é"]),
                0..8,
            ),
            sep in proptest::bool::ANY,
        ) {
            let raw = parts.join(if sep { "/" } else { "" });
            let q = format!("path={}", form_urlencoded::byte_serialize(raw.as_bytes()).collect::<String>());
            let mut input = b"archive\n".to_vec();
            input.extend_from_slice(q.as_bytes());
            let accepted = crate::engine::requests::check(&input);
            proptest::prop_assert_eq!(accepted, !raw.is_empty() && !raw.contains('\0'));
        }
    }

    #[test]
    fn go_modes_and_times() {
        assert_eq!(go_file_mode(0o040755), 2_147_484_141);
        assert_eq!(go_file_mode(0o120777), 134_218_239);
        assert_eq!(go_file_mode(0o010644), 33_554_852);
        assert_eq!(go_file_mode(0o100644), 0o644);
        assert_eq!(go_file_mode(0o104755), (1 << 23) | 0o755);
        assert_eq!(
            go_time(1_796_586_351, 821_125_638),
            "2026-12-06T19:45:51.821125638Z"
        );
        assert_eq!(go_time(0, 500_000_000), "1970-01-01T00:00:00.5Z");
        assert_eq!(go_time(0, 0), "1970-01-01T00:00:00Z");
    }

    /// A tree with symlinks that lead out of it, resolved with the tree as the root.
    fn tree() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::create_dir_all(r.join("w/d")).unwrap();
        std::fs::write(r.join("w/d/f"), "hi").unwrap();
        std::os::unix::fs::symlink("/w/d", r.join("w/l")).unwrap();
        std::os::unix::fs::symlink("../../../../..", r.join("w/up")).unwrap();
        std::os::unix::fs::symlink("/nope/x", r.join("w/broken")).unwrap();
        std::os::unix::fs::symlink("/etc", r.join("w/etc")).unwrap();
        t
    }

    fn root(t: &tempfile::TempDir) -> OwnedFd {
        nix::fcntl::open(t.path(), OFlag::O_PATH | OFlag::O_DIRECTORY, Mode::empty()).unwrap()
    }

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let t = tree();
        let r = root(&t);
        let stat = |s: &str| {
            let c = p(s);
            let res = resolve(r.as_fd(), &c)?;
            stat_of(r.as_fd(), &c, &res)
        };
        assert_eq!(stat("/w/l").unwrap().link_target, "/w/d");
        assert_eq!(stat("/w/up").unwrap().link_target, "/");
        assert_eq!(stat("/w/broken").unwrap().link_target, "/nope/x");
        assert!(stat("/w/l/").unwrap().mode & GO_MODE_DIR != 0);
        // The host's /etc/passwd is not the tree's.
        assert_eq!(stat("/w/etc/passwd"), Err(Errno::ENOENT));
        assert_eq!(stat("/w/up/etc/passwd"), Err(Errno::ENOENT));
        assert_eq!(stat("/w/d/f/"), Err(Errno::ENOTDIR));
    }

    fn names(tar: &[u8]) -> Vec<String> {
        let mut r = crate::image::tar::Reader::new(tar, crate::image::tar::TarLimits::default());
        let mut out = Vec::new();
        while let Some(e) = r.next_entry().unwrap() {
            out.push(String::from_utf8_lossy(&e.path).into_owned());
        }
        out
    }

    #[test]
    fn archives_are_rooted_at_the_name() {
        let t = tree();
        let r = root(&t);
        let tar = |s: &str| {
            let c = p(s);
            let res = resolve(r.as_fd(), &c).unwrap();
            names(&write_archive(res, &c, Vec::new()).unwrap())
        };
        assert_eq!(tar("/w/d"), ["d/", "d/f"]);
        assert_eq!(tar("/w/d/."), ["./", "./f"]);
        assert_eq!(tar("/w/l/"), ["l/", "l/f"]);
        assert_eq!(tar("/w/l"), ["l"]);
        assert_eq!(tar("/w/d/f"), ["f"]);
        assert_eq!(tar("/")[..2], ["/", "/w/"]);
    }
}
