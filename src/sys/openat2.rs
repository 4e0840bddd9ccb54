//! Path resolution scoped to a directory with openat2(2): the primitive that keeps mount
//! destinations, device nodes and masked paths inside the container's root.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;

/// Opens `path` as if `root` were the root directory: absolute symlinks and `..` are clamped to
/// `root`, and magic links (`/proc/<pid>/root`, ...) are refused by the kernel. `O_CLOEXEC` is
/// always added.
///
/// # Errors
/// Returns the errno of openat2(2); `ENOSYS` on kernels older than 5.6, `EAGAIN` if a concurrent
/// rename raced the lookup (the kernel asks to retry; this function retries a few times first).
pub fn open_in_root<P: AsRef<Path>>(
    root: BorrowedFd<'_>,
    path: P,
    flags: OFlag,
    mode: Mode,
) -> nix::Result<OwnedFd> {
    open_in_root_with(root, path, flags, mode, ResolveFlag::empty())
}

/// Like [`open_in_root`] with extra `RESOLVE_*` flags (e.g. `RESOLVE_NO_SYMLINKS`).
///
/// # Errors
/// As [`open_in_root`].
pub fn open_in_root_with<P: AsRef<Path>>(
    root: BorrowedFd<'_>,
    path: P,
    flags: OFlag,
    mode: Mode,
    resolve: ResolveFlag,
) -> nix::Result<OwnedFd> {
    // openat2 rejects an empty path; "." names the root itself.
    let path = path.as_ref();
    let path = if path.as_os_str().is_empty() {
        Path::new(".")
    } else {
        path
    };
    // mode is only valid together with O_CREAT/O_TMPFILE, openat2 returns EINVAL otherwise.
    let mode = if flags.intersects(OFlag::O_CREAT | OFlag::O_TMPFILE) {
        mode
    } else {
        Mode::empty()
    };
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .mode(mode)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | resolve);
    let mut attempts = 0;
    loop {
        match nix::fcntl::openat2(root.as_fd(), path, how) {
            Err(nix::errno::Errno::EAGAIN) if attempts < 16 => attempts += 1,
            other => return other,
        }
    }
}

/// The `/proc/self/fd/<fd>` path of an open file: handing it to mount(2) makes the kernel act on
/// the very inode that was resolved, not on whatever the path names by then.
#[must_use]
pub fn proc_fd_path<Fd: std::os::fd::AsRawFd>(fd: &Fd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}
