//! Ownership of the seccomp user-notification listener fd that libseccomp hands out as a bare
//! number after loading a filter with `SCMP_ACT_NOTIFY` rules.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;

/// Returns a new close-on-exec descriptor for the same listener as `raw`, owned by the caller.
///
/// libseccomp keeps the number it returned from `seccomp_notify_fd(3)` in its global state and may
/// return it again, so taking that number over would leave two owners; a duplicate is ours alone.
/// The original is opened close-on-exec by the kernel and so goes away at the container's execve.
///
/// # Errors
/// Fails with the `fcntl(2)` errno, `EBADF` when `raw` is not an open descriptor.
pub fn dup_notify_fd(raw: RawFd) -> Result<OwnedFd, Errno> {
    // SAFETY: F_DUPFD_CLOEXEC reads and writes no memory of ours; on a bad number it only fails
    // with EBADF. It cannot close or alter `raw`.
    let dup = unsafe { libc::fcntl(raw, libc::F_DUPFD_CLOEXEC, 3) };
    if dup < 0 {
        return Err(Errno::last());
    }
    // SAFETY: `dup` is a descriptor the kernel just created for this call; nothing else refers
    // to it, so wrapping it gives the caller sole ownership.
    Ok(unsafe { OwnedFd::from_raw_fd(dup) })
}
