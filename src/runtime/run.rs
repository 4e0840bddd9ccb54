//! `run`: create + start, and in the foreground wait for the container like runc does: refeng-runc
//! becomes a child subreaper so that init (orphaned by the intermediate process) is its child,
//! forwards the signals it gets to init, returns init's exit code (128+N for signal N) and deletes
//! the container unless `--keep`. With `process.terminal` and no `--console-socket`, it receives
//! the pty itself and copies it to and from its own stdio.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;

use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::oci::config::load_bundle_config;
use crate::runtime::container::AnyContainer;
use crate::runtime::create::{create, CreateError, CreateOptions};
use crate::runtime::start::StartError;
use crate::runtime::state::StateRoot;

/// Errors of `run`.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// create failed
    #[error(transparent)]
    Create(#[from] CreateError),
    /// start failed
    #[error(transparent)]
    Start(#[from] StartError),
    /// the options do not fit together
    #[error("{0}")]
    Options(&'static str),
    /// waiting or the console failed
    #[error("{op}")]
    Sys {
        /// The step.
        op: &'static str,
        /// The errno.
        #[source]
        source: nix::errno::Errno,
    },
    /// the console socket failed
    #[error("console: {0}")]
    Console(#[source] std::io::Error),
}

fn sys(op: &'static str) -> impl FnOnce(nix::errno::Errno) -> RunError {
    move |source| RunError::Sys { op, source }
}

/// Signals a foreground `run` passes on to the container.
pub(crate) const FORWARDED: [Signal; 7] = [
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGTERM,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

/// Runs the container; returns the exit code to exit with.
///
/// # Errors
/// A failed create or start, or a failure while waiting.
pub fn run(
    root: &StateRoot,
    opts: &CreateOptions,
    detach: bool,
    keep: bool,
) -> Result<i32, RunError> {
    let mut opts = opts.clone();
    let wants_tty = load_bundle_config(&opts.bundle)
        .ok()
        .and_then(|s| s.process().as_ref().and_then(|p| p.terminal()))
        == Some(true);
    let mut console_listener = None;
    if wants_tty && opts.console_socket.is_none() {
        if detach {
            return Err(RunError::Options(
                "cannot allocate a tty for a detached container without --console-socket",
            ));
        }
        let path = PathBuf::from(format!(
            "{}/.console-{}-{}.sock",
            root.path().display(),
            opts.id,
            std::process::id()
        ));
        std::fs::create_dir_all(root.path()).map_err(RunError::Console)?;
        let _ = std::fs::remove_file(&path);
        console_listener = Some((
            UnixListener::bind(&path).map_err(RunError::Console)?,
            path.clone(),
        ));
        opts.console_socket = Some(path);
    }
    if !detach {
        nix::sys::prctl::set_child_subreaper(true).map_err(sys("set child subreaper"))?;
    }
    let created = create(root, &opts);
    let master = match console_listener {
        Some((listener, path)) => {
            let _ = std::fs::remove_file(&path);
            match &created {
                Ok(_) => Some(receive_master(&listener)?),
                Err(_) => None,
            }
        }
        None => None,
    };
    let created = created?;
    let pid = Pid::from_raw(created.pid());
    let running = created.start().map_err(|(c, e)| {
        // The container never ran: take it down again, as runc does.
        if let Ok(stopped) = c.stop_forcibly() {
            let _ = stopped.delete();
        }
        e
    })?;
    drop(running);
    if detach {
        return Ok(0);
    }

    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    for s in FORWARDED {
        mask.add(s);
    }
    mask.thread_block().map_err(sys("block signals"))?;
    let mut tty = master.as_ref().map(proxy_terminal);
    let code = wait_for(pid, &mask)?;
    drop(master);
    if let Some(tty) = tty.as_mut() {
        tty.drain();
    }
    drop(tty);
    if !keep {
        if let Ok(AnyContainer::Stopped(c)) = AnyContainer::load(root, &opts.id) {
            if let Err(e) = c.delete() {
                tracing::warn!(error = %e, "cannot delete the container after it exited");
            }
        }
    }
    Ok(code)
}

pub(crate) fn wait_for(pid: Pid, mask: &SigSet) -> Result<i32, RunError> {
    loop {
        // Reap everything that exited (we are a subreaper: orphans of the container come to us).
        loop {
            match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(p, code)) if p == pid => return Ok(code),
                Ok(WaitStatus::Signaled(p, sig, _)) if p == pid => return Ok(128 + sig as i32),
                Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::ECHILD) => break,
                Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(sys("wait")(e)),
            }
        }
        let sig = mask.wait().map_err(sys("wait for signals"))?;
        if sig != Signal::SIGCHLD {
            let _ = kill(pid, sig);
        }
    }
}

/// Accepts the init process's connection on our own console socket and takes the pty master it
/// sends. Descriptors beyond the first are closed ([`crate::sys::scm_rights::recv_with_fds`]
/// owns each one), so nothing a peer sends stays open in refeng-runc.
pub(crate) fn receive_master(listener: &UnixListener) -> Result<OwnedFd, RunError> {
    let (stream, _) = listener.accept().map_err(RunError::Console)?;
    // The pty's name comes along; only the descriptor matters here.
    let mut name = [0u8; 256];
    let (_, fds) = crate::sys::scm_rights::recv_with_fds(stream.as_fd(), &mut name)
        .map_err(sys("receive pty master"))?;
    fds.into_iter()
        .next()
        .ok_or(RunError::Options("the container sent no pty master"))
}

/// Copies stdin to the pty and the pty to stdout on two threads; puts a terminal stdin in raw
/// mode for the length of the run and restores it when dropped.
pub(crate) struct TerminalProxy {
    saved: Option<nix::sys::termios::Termios>,
    output_done: Option<std::sync::mpsc::Receiver<()>>,
}

impl TerminalProxy {
    /// Lets the output thread copy what the container wrote last (bounded: a background
    /// process of the container may keep the pty open).
    pub(crate) fn drain(&mut self) {
        if let Some(done) = self.output_done.take() {
            let _ = done.recv_timeout(std::time::Duration::from_millis(500));
        }
    }
}

impl Drop for TerminalProxy {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin().as_fd(),
                nix::sys::termios::SetArg::TCSANOW,
                saved,
            );
        }
    }
}

pub(crate) fn proxy_terminal(master: &OwnedFd) -> TerminalProxy {
    use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
    let stdin = std::io::stdin();
    let saved = tcgetattr(stdin.as_fd()).ok();
    if let Some(saved) = &saved {
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        let _ = tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw);
    }
    let mut output_done = None;
    if let (Ok(out), Ok(inp)) = (master.try_clone(), master.try_clone()) {
        let (tx, rx) = std::sync::mpsc::channel();
        output_done = Some(rx);
        std::thread::spawn(move || {
            let mut from = File::from(out);
            let mut buf = [0u8; 8192];
            while let Ok(n) = from.read(&mut buf) {
                if n == 0 || std::io::stdout().write_all(&buf[..n]).is_err() {
                    break;
                }
                let _ = std::io::stdout().flush();
            }
            let _ = tx.send(());
        });
        std::thread::spawn(move || {
            let mut to = File::from(inp);
            let mut buf = [0u8; 8192];
            while let Ok(n) = std::io::stdin().read(&mut buf) {
                if n == 0 || to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        });
    }
    TerminalProxy { saved, output_done }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::IoSlice;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};

    /// The peer sends the pty master and one descriptor too many: the master is taken, and the
    /// extra one is closed rather than leaked into refeng-runc (and from there into whatever it
    /// runs). Checked in our own descriptor table, which forks of other tests cannot affect.
    #[test]
    fn receive_master_takes_the_first_fd_and_closes_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let (master_r, master_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let (extra_r, extra_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let extra_pipe =
            std::fs::read_link(format!("/proc/self/fd/{}", extra_r.as_raw_fd())).unwrap();
        let sender = std::thread::spawn(move || {
            let stream = UnixStream::connect(&path).unwrap();
            let fds = [master_r.as_raw_fd(), extra_w.as_raw_fd()];
            sendmsg::<()>(
                stream.as_raw_fd(),
                &[IoSlice::new(b"/dev/pts/7")],
                &[ControlMessage::ScmRights(&fds)],
                MsgFlags::empty(),
                None,
            )
            .unwrap();
            // The sender's copies close here: what stays open is what the receiver kept.
        });
        let master = receive_master(&listener).expect("master received");
        sender.join().unwrap();

        File::from(master_w).write_all(b"x").unwrap();
        let mut byte = [0u8; 1];
        File::from(master).read_exact(&mut byte).unwrap();
        assert_eq!(&byte, b"x", "the first descriptor is the master");

        let open: Vec<_> = std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.unwrap().path()).ok())
            .filter(|target| *target == extra_pipe)
            .collect();
        assert_eq!(
            open.len(),
            1,
            "only our read end of the extra pipe may be open; the received write end leaked"
        );
        drop(extra_r);
    }
}
