//! Paths resolved inside the container's root: every lookup goes through openat2(2) with
//! `RESOLVE_IN_ROOT`, so a symlink in the image (`mnt -> /etc`) cannot point a mount, a device
//! node or a mask at the host.

use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, ResolveFlag};
use nix::sys::stat::Mode;

use crate::sys::openat2::{open_in_root, open_in_root_with, proc_fd_path};

/// An open directory that acts as `/` for every lookup made through it.
#[derive(Debug)]
pub(crate) struct RootDir {
    fd: OwnedFd,
    path: PathBuf,
}

/// Lexically cleans `path` into a path relative to the root: `.` dropped, `..` applied and
/// clamped at the root, the leading `/` removed (runc's `filepath.Join(rootfs, dest)`).
pub(crate) fn clean_relative(path: &Path) -> PathBuf {
    let mut parts: Vec<&OsStr> = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(name) => parts.push(name),
            Component::ParentDir => {
                parts.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    parts.iter().collect()
}

/// How many dangling symlinks one lookup may follow (the kernel's own limit).
const MAX_SYMLINKS: usize = 40;

/// `prefix` (relative to the root, last component in `parent`) is a dangling symlink: the path
/// it names, with `rest` appended, cleaned relative to the root.
fn follow_dangling(
    parent: &OwnedFd,
    prefix: &Path,
    rest: &Path,
    depth: usize,
) -> nix::Result<PathBuf> {
    if depth >= MAX_SYMLINKS {
        return Err(Errno::ELOOP);
    }
    let name = prefix.file_name().ok_or(Errno::ENOENT)?;
    // EINVAL (not a symlink): something raced us; report it as missing.
    let target = nix::fcntl::readlinkat(parent.as_fd(), name).map_err(|_| Errno::ENOENT)?;
    let target = Path::new(&target);
    let base = if target.is_absolute() {
        PathBuf::new()
    } else {
        prefix.parent().map(Path::to_path_buf).unwrap_or_default()
    };
    Ok(clean_relative(&base.join(target).join(rest)))
}

impl RootDir {
    /// Opens `path` (a host path, resolved normally) as the root for later lookups.
    pub fn open(path: &Path) -> nix::Result<Self> {
        let fd = nix::fcntl::open(
            path,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Self {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// The host path this root was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The root directory's fd.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Opens `rel` inside the root, following symlinks only within it.
    pub fn open_path(&self, rel: &Path, flags: OFlag) -> nix::Result<OwnedFd> {
        open_in_root(self.fd(), clean_relative(rel), flags, Mode::empty())
    }

    /// Opens `rel` inside the root without following a symlink in its last component
    /// (`O_NOFOLLOW` with `O_PATH` yields the symlink itself; callers check its type).
    pub fn open_path_nofollow(&self, rel: &Path, flags: OFlag) -> nix::Result<OwnedFd> {
        open_in_root_with(
            self.fd(),
            clean_relative(rel),
            flags | OFlag::O_NOFOLLOW,
            Mode::empty(),
            ResolveFlag::empty(),
        )
    }

    /// Creates every missing directory of `rel` (mode `mode`) and returns an `O_PATH` fd of the
    /// last one. Each `mkdirat` is made relative to a parent fd resolved in the root, with a single
    /// plain name, so it can never land outside. A dangling symlink on the way is followed inside
    /// the root (`etc -> /etc` with no /etc in the image creates rootfs/etc), as runc's
    /// securejoin does.
    pub fn mkdir_all(&self, rel: &Path, mode: Mode) -> nix::Result<OwnedFd> {
        self.mkdir_all_depth(&clean_relative(rel), mode, 0)
    }

    fn mkdir_all_depth(&self, rel: &Path, mode: Mode, depth: usize) -> nix::Result<OwnedFd> {
        let dir_flags = OFlag::O_PATH | OFlag::O_DIRECTORY;
        if let Ok(fd) = open_in_root(self.fd(), rel, dir_flags, Mode::empty()) {
            return Ok(fd);
        }
        let names: Vec<&OsStr> = rel.iter().collect();
        let mut prefix = PathBuf::new();
        let mut parent = nix::unistd::dup(self.fd())?;
        for (index, name) in names.iter().enumerate() {
            prefix.push(name);
            let current = match open_in_root(self.fd(), &prefix, dir_flags, Mode::empty()) {
                Ok(fd) => fd,
                Err(Errno::ENOENT) => {
                    match nix::sys::stat::mkdirat(parent.as_fd(), *name, mode) {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(e) => return Err(e),
                    }
                    match open_in_root(self.fd(), &prefix, dir_flags, Mode::empty()) {
                        Ok(fd) => fd,
                        Err(Errno::ENOENT) => {
                            let rest: PathBuf = names[index + 1..].iter().collect();
                            let next = follow_dangling(&parent, &prefix, &rest, depth)?;
                            return self.mkdir_all_depth(&next, mode, depth + 1);
                        }
                        Err(e) => return Err(e),
                    }
                }
                Err(e) => return Err(e),
            };
            parent = current;
        }
        Ok(parent)
    }

    /// Makes sure `rel` exists as a file (an empty one is created, mode `mode`, if it is
    /// missing; its parents are created as directories) and returns an `O_PATH` fd of it. A
    /// dangling symlink is followed inside the root, never created through by the kernel.
    pub fn create_file(&self, rel: &Path, mode: Mode) -> nix::Result<OwnedFd> {
        self.create_file_depth(&clean_relative(rel), mode, 0)
    }

    fn create_file_depth(&self, rel: &Path, mode: Mode, depth: usize) -> nix::Result<OwnedFd> {
        if let Ok(fd) = self.open_path(rel, OFlag::O_PATH) {
            return Ok(fd);
        }
        let (parent, name) = self.parent_of(rel)?;
        // O_NOFOLLOW|O_EXCL: the kernel must not create a symlink's target for us.
        match nix::fcntl::openat(
            parent.as_fd(),
            name,
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
            mode,
        ) {
            Ok(_) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(e),
        }
        match self.open_path(rel, OFlag::O_PATH) {
            Err(Errno::ENOENT) => {
                let next = follow_dangling(&parent, rel, Path::new(""), depth)?;
                self.create_file_depth(&next, mode, depth + 1)
            }
            other => other,
        }
    }

    /// The parent directory of `rel` (created if missing) and the last name; `EINVAL` for the
    /// root itself, which has no name in its parent.
    pub fn parent_of<'p>(&self, rel: &'p Path) -> nix::Result<(OwnedFd, &'p OsStr)> {
        let name = rel.file_name().ok_or(Errno::EINVAL)?;
        let parent = self.mkdir_all(
            rel.parent().unwrap_or(Path::new("")),
            Mode::from_bits_truncate(0o755),
        )?;
        Ok((parent, name))
    }

    /// Where an open fd really is, relative to this root (for checks such as "inside /proc").
    /// `None` if the kernel's name for it is not below the root.
    pub fn relative_location(&self, fd: &OwnedFd) -> Option<PathBuf> {
        let real = nix::fcntl::readlink(&proc_fd_path(fd)).ok()?;
        let root_real = nix::fcntl::readlink(&proc_fd_path(&self.fd)).ok()?;
        let real = PathBuf::from(real);
        let root_real = PathBuf::from(root_real);
        real.strip_prefix(&root_real)
            .ok()
            .map(|p| Path::new("/").join(p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_relative_clamps_dotdot_at_root() {
        let cases = [
            ("/", ""),
            ("/proc", "proc"),
            ("proc/", "proc"),
            ("/a/./b/../c", "a/c"),
            ("/../../etc", "etc"),
            ("a/../../..", ""),
            ("//dev//pts", "dev/pts"),
        ];
        for (input, want) in cases {
            assert_eq!(
                clean_relative(Path::new(input)),
                PathBuf::from(want),
                "{input}"
            );
        }
    }

    #[test]
    fn lookups_stay_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root_path = dir.path().join("root");
        std::fs::create_dir(&root_path).unwrap();
        std::os::unix::fs::symlink("/", root_path.join("evil")).unwrap();
        std::os::unix::fs::symlink("../../..", root_path.join("up")).unwrap();
        std::os::unix::fs::symlink("/nonexistent-target", root_path.join("dangling")).unwrap();
        let root = RootDir::open(&root_path).unwrap();

        let created = root
            .mkdir_all(
                Path::new("/evil/made/here"),
                Mode::from_bits_truncate(0o755),
            )
            .unwrap();
        assert!(root_path.join("made/here").is_dir());
        assert!(!Path::new("/made").exists());
        assert_eq!(
            root.relative_location(&created),
            Some(PathBuf::from("/made/here"))
        );

        root.create_file(Path::new("up/file"), Mode::from_bits_truncate(0o644))
            .unwrap();
        assert!(root_path.join("file").is_file());

        // A dangling absolute symlink is followed inside the root, never on the host.
        root.create_file(Path::new("/dangling"), Mode::from_bits_truncate(0o644))
            .unwrap();
        assert!(root_path.join("nonexistent-target").is_file());
        assert!(!Path::new("/nonexistent-target").exists());
        std::os::unix::fs::symlink("/var/../elsewhere/deep", root_path.join("dangling-dir"))
            .unwrap();
        root.mkdir_all(Path::new("dangling-dir/x"), Mode::from_bits_truncate(0o755))
            .unwrap();
        assert!(root_path.join("elsewhere/deep/x").is_dir());
        assert!(!Path::new("/elsewhere").exists());
        std::os::unix::fs::symlink("loop", root_path.join("loop")).unwrap();
        assert_eq!(
            root.mkdir_all(Path::new("loop/x"), Mode::from_bits_truncate(0o755))
                .unwrap_err(),
            Errno::ELOOP
        );
    }
}
