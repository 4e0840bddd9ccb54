//! Receiving file descriptors passed over a unix socket (`SCM_RIGHTS`): the seccomp agent side of
//! runtime-spec `listenerPath`, and the console-socket side of `--console-socket`.

use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, UnixAddr};

/// How many descriptors one message may carry before the control data is truncated.
const MAX_FDS: usize = 8;

/// Receives one message into `buf` and takes ownership of every descriptor it carried
/// (received with close-on-exec set).
///
/// Returns the number of bytes written into `buf` (0 means the peer closed the connection).
///
/// # Errors
/// Fails with the `recvmsg(2)` errno, or `EMSGSIZE` when the message carried more than
/// eight descriptors (the kernel closes the ones that did not fit, so the rest would be an
/// incomplete set; those received are closed too).
pub fn recv_with_fds(
    socket: BorrowedFd<'_>,
    buf: &mut [u8],
) -> Result<(usize, Vec<OwnedFd>), Errno> {
    let mut cmsg_buf = nix::cmsg_space!([RawFd; MAX_FDS]);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = loop {
        match recvmsg::<UnixAddr>(
            socket.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg_buf),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Err(Errno::EINTR) => continue,
            other => break other?,
        }
    };
    let mut fds = Vec::new();
    for cmsg in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(raw_fds) = cmsg {
            for raw in raw_fds {
                // SAFETY: the kernel installed `raw` into our descriptor table while receiving this
                // very message; no other object refers to it, so wrapping it transfers sole
                // ownership.
                fds.push(unsafe { OwnedFd::from_raw_fd(raw) });
            }
        }
    }
    if msg.flags.contains(MsgFlags::MSG_CTRUNC) {
        return Err(Errno::EMSGSIZE);
    }
    Ok((msg.bytes, fds))
}
