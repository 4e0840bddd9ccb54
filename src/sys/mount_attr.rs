//! `mount_setattr(2)` (Linux 5.12): changing the flags of a whole mount tree at once, which runc's
//! recursive mount options (`rro`, `rnosuid`, ...) need and mount(2) cannot do.

use std::os::fd::{AsRawFd, BorrowedFd};

use nix::errno::Errno;

/// `MOUNT_ATTR_*` values (include/uapi/linux/mount.h); libc does not name them.
pub mod attr {
    /// Read-only.
    pub const RDONLY: u64 = 0x0000_0001;
    /// No setuid.
    pub const NOSUID: u64 = 0x0000_0002;
    /// No device access.
    pub const NODEV: u64 = 0x0000_0004;
    /// No execution.
    pub const NOEXEC: u64 = 0x0000_0008;
    /// The access-time field: one of RELATIME (0), NOATIME, STRICTATIME.
    pub const ATIME_MASK: u64 = 0x0000_0070;
    /// Relative access times (the field's zero value).
    pub const RELATIME: u64 = 0x0000_0000;
    /// No access times.
    pub const NOATIME: u64 = 0x0000_0010;
    /// Always update access times.
    pub const STRICTATIME: u64 = 0x0000_0020;
    /// No directory access times.
    pub const NODIRATIME: u64 = 0x0000_0080;
    /// Symlinks are not followed.
    pub const NOSYMFOLLOW: u64 = 0x0020_0000;
}

/// The kernel's `struct mount_attr`.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// Sets `set` and clears `clear` on the mount `fd` refers to and on every mount below it.
///
/// # Errors
/// The errno of `mount_setattr(2)` (ENOSYS before Linux 5.12).
pub fn set_recursive(fd: BorrowedFd<'_>, set: u64, clear: u64) -> Result<(), Errno> {
    let attr = MountAttr {
        attr_set: set,
        attr_clr: clear,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: the path is a valid empty C string, `attr` points at a live, fully initialised
    // struct of the size passed, and the kernel only reads both during the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            (libc::AT_EMPTY_PATH | libc::AT_RECURSIVE) as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    Errno::result(ret).map(drop)
}
