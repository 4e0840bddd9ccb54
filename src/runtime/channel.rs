//! The sync channel between `create` and the processes it forks: one JSON message per
//! SOCK_SEQPACKET datagram, so message boundaries need no framing.

use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::socket::{recv, send, socketpair, AddressFamily, MsgFlags, SockFlag, SockType};
use serde::{Deserialize, Serialize};

/// Messages exchanged during `create`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Message {
    /// intermediate → create: the init process exists, with this host pid.
    InitPid(i32),
    /// create → init: id maps are written and the cgroup joined; go on. Carries init's host pid,
    /// which init cannot see from inside its pid namespace and which hooks need.
    Go(i32),
    /// init → create: namespaces are ready; run prestart and createRuntime hooks now.
    RunCreateRuntimeHooks,
    /// create → init: those hooks succeeded.
    HooksDone,
    /// init → create: the container is built; init now waits on the exec fifo.
    Ready,
    /// either way: a step failed; the text says which.
    Error(String),
    /// init → create: a createContainer hook failed (the lifecycle then goes on to poststop).
    HookFailed(String),
}

/// Errors on the channel.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// a socket call failed
    #[error("sync channel {op}")]
    Io {
        /// The call.
        op: &'static str,
        /// The errno.
        #[source]
        source: nix::errno::Errno,
    },
    /// the peer closed the channel (it exited)
    #[error("the container's init process exited during setup")]
    Closed,
    /// a datagram did not parse
    #[error("sync channel: unexpected message")]
    Garbled(#[source] serde_json::Error),
}

/// One end of the channel.
#[derive(Debug)]
pub struct Channel {
    fd: OwnedFd,
}

/// Makes a connected pair (close-on-exec, so neither end leaks into the container).
///
/// # Errors
/// If `socketpair(2)` fails.
pub fn pair() -> Result<(Channel, Channel), ChannelError> {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|source| ChannelError::Io {
        op: "socketpair",
        source,
    })?;
    Ok((Channel { fd: a }, Channel { fd: b }))
}

impl Channel {
    /// Sends one message.
    ///
    /// # Errors
    /// If the peer is gone or the send fails.
    pub fn send(&self, msg: &Message) -> Result<(), ChannelError> {
        let bytes = serde_json::to_vec(msg).map_err(ChannelError::Garbled)?;
        send(self.fd.as_raw_fd(), &bytes, MsgFlags::MSG_NOSIGNAL)
            .map(drop)
            .map_err(|source| match source {
                nix::errno::Errno::EPIPE | nix::errno::Errno::ECONNRESET => ChannelError::Closed,
                source => ChannelError::Io { op: "send", source },
            })
    }

    /// Receives one message; [`ChannelError::Closed`] when the peer exited.
    ///
    /// # Errors
    /// If the peer is gone or the datagram is not a message.
    pub fn recv(&self) -> Result<Message, ChannelError> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                Ok(0) => return Err(ChannelError::Closed),
                Ok(n) => return serde_json::from_slice(&buf[..n]).map_err(ChannelError::Garbled),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(nix::errno::Errno::ECONNRESET) => return Err(ChannelError::Closed),
                Err(source) => return Err(ChannelError::Io { op: "recv", source }),
            }
        }
    }
}
