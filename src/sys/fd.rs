//! File descriptors that arrive from outside Rust's ownership model.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// Takes ownership of a descriptor just received through SCM_RIGHTS.
///
/// The caller must pass a descriptor number the kernel has just installed for it and that
/// nothing else owns; `recvmsg` gives exactly that.
pub fn owned_from_received(fd: RawFd) -> OwnedFd {
    // SAFETY: per the contract above, `fd` is open and unowned, so exactly one OwnedFd will
    // close it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}
