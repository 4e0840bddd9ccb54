//! Ownership of the seccomp user-notification listener fd that libseccomp hands out as a bare
//! number after loading a filter with `SCMP_ACT_NOTIFY` rules.

use std::os::fd::{FromRawFd, OwnedFd};

use libseccomp::error::SeccompError;
use libseccomp::ScmpFilterContext;
use nix::errno::Errno;

/// Why the listener fd could not be had.
#[derive(Debug, thiserror::Error)]
pub enum NotifyFdError {
    /// libseccomp has no listener fd (the filter was not loaded with notify rules)
    #[error("libseccomp has no notify listener fd")]
    Get(#[source] SeccompError),
    /// the listener fd could not be duplicated
    #[error("duplicating the notify listener fd")]
    Dup(#[source] Errno),
}

/// Returns a new close-on-exec descriptor for the listener of the filter `filter` loaded, owned by
/// the caller.
///
/// libseccomp keeps the number it returns from `seccomp_notify_fd(3)` in its global state and may
/// return it again, so taking that number over would leave two owners; a duplicate is ours alone.
/// The original is opened close-on-exec by the kernel and so goes away at the container's execve.
/// The number is asked of libseccomp here rather than taken from the caller: acting on a
/// descriptor number whose origin this function cannot see would not be sound for a safe
/// function (I/O safety).
///
/// # Errors
/// [`NotifyFdError::Get`] when libseccomp has no listener, [`NotifyFdError::Dup`] with the
/// `fcntl(2)` errno.
pub fn dup_notify_fd(filter: &ScmpFilterContext) -> Result<OwnedFd, NotifyFdError> {
    let raw = filter.get_notify_fd().map_err(NotifyFdError::Get)?;
    // SAFETY: `raw` is the listener libseccomp opened when it loaded the filter and keeps open
    // in its global state; F_DUPFD_CLOEXEC reads and writes no memory of ours and cannot close
    // or alter it.
    let dup = unsafe { libc::fcntl(raw, libc::F_DUPFD_CLOEXEC, 3) };
    if dup < 0 {
        return Err(NotifyFdError::Dup(Errno::last()));
    }
    // SAFETY: `dup` is a descriptor the kernel just created for this call; nothing else refers
    // to it, so wrapping it gives the caller sole ownership.
    Ok(unsafe { OwnedFd::from_raw_fd(dup) })
}
