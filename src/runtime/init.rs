//! The container's init process: runs inside the new namespaces, builds the container step by
//! step in the order runtime-spec "Lifecycle" gives, waits on the exec fifo for `start`, then
//! becomes the user's program. It reports every failure before `Ready` to `create` over the sync
//! channel; nothing here may return to the caller's code.

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use nix::fcntl::{open, OFlag};
use nix::sched::{unshare, CloneFlags};
use nix::sys::stat::Mode;
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::runtime::channel::{Channel, Message};
use crate::runtime::hooks::{self, HookPoint};
use crate::runtime::process_setup::{self, Prepared, SetupError};
use crate::runtime::rootfs::{self, RootfsContext};
use crate::runtime::state::{StateReport, Status};

/// Everything init needs, prepared by `create` before the fork.
#[derive(Debug)]
pub struct InitContext<'a> {
    /// The validated config.
    pub spec: &'a Spec,
    /// Rootfs setup parameters.
    pub rootfs: RootfsContext,
    /// O_PATH descriptor of the exec fifo.
    pub fifo: OwnedFd,
    /// Connected console socket, when the process wants a terminal.
    pub console: Option<UnixStream>,
    /// Descriptors 3..3+N stay open into the container.
    pub preserve_fds: i32,
    /// State template for the createContainer and startContainer hooks.
    pub hook_state: StateReport,
}

/// Why init stopped before exec.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// the sync channel failed
    #[error(transparent)]
    Channel(#[from] crate::runtime::channel::ChannelError),
    /// `create` sent something out of order
    #[error("unexpected sync message {0:?}")]
    Protocol(Message),
    /// a syscall of the setup failed
    #[error("{op}")]
    Sys {
        /// The step.
        op: String,
        /// The errno.
        #[source]
        source: nix::errno::Errno,
    },
    /// rootfs setup failed
    #[error(transparent)]
    Rootfs(#[from] rootfs::RootfsError),
    /// a hook failed
    #[error(transparent)]
    Hook(#[from] hooks::HookError),
    /// the container process could not be set up
    #[error(transparent)]
    Process(#[from] SetupError),
    /// the config lacks what init needs
    #[error("{0}")]
    Config(String),
}

fn sys(op: impl Into<String>) -> impl FnOnce(nix::errno::Errno) -> InitError {
    let op = op.into();
    move |source| InitError::Sys { op, source }
}

/// Runs init to the end: never returns. Exit code 1 after reporting an error: before `Ready`
/// over the sync channel, after it through the exec fifo, where `start` reads it.
pub fn run(ctx: InitContext<'_>, channel: &Channel) -> ! {
    let (prepared, hook_state) = match setup(&ctx, channel) {
        Ok(done) => done,
        Err(e) => {
            let msg = match &e {
                InitError::Hook(_) => Message::HookFailed(error_chain(&e)),
                _ => Message::Error(error_chain(&e)),
            };
            let _ = channel.send(&msg);
            crate::sys::process::exit_now(1)
        }
    };
    let (fifo, err) = wait_for_start_and_exec(&ctx, prepared, hook_state);
    let text = format!("refeng-runc init: {}\n", error_chain(&err));
    match fifo {
        Some(mut fifo) => {
            let _ = std::io::Write::write_all(&mut fifo, text.as_bytes());
        }
        None => {
            let _ = std::io::Write::write_all(&mut std::io::stderr(), text.as_bytes());
        }
    }
    crate::sys::process::exit_now(1)
}

/// `err: cause: cause` in one line.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn has_new_ns(spec: &Spec, typ: LinuxNamespaceType) -> bool {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|nss| nss.iter().any(|ns| ns.typ() == typ && ns.path().is_none()))
}

fn has_ns(spec: &Spec, typ: LinuxNamespaceType) -> bool {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|nss| nss.iter().any(|ns| ns.typ() == typ))
}

/// Builds the container; returns the prepared process and the hook state (with init's host pid).
fn setup(ctx: &InitContext<'_>, channel: &Channel) -> Result<(Prepared, StateReport), InitError> {
    let spec = ctx.spec;
    let host_pid = match channel.recv()? {
        Message::Go(pid) => pid,
        other => return Err(InitError::Protocol(other)),
    };
    let mut hook_state = ctx.hook_state.clone();
    hook_state.pid = Some(host_pid);
    hook_state.status = Status::Creating;

    if has_new_ns(spec, LinuxNamespaceType::User) {
        // We were created by host root, which the new namespace does not map: become its root.
        let root = nix::unistd::Gid::from_raw(0);
        nix::unistd::setresgid(root, root, root).map_err(sys("setresgid in user namespace"))?;
        let root = nix::unistd::Uid::from_raw(0);
        nix::unistd::setresuid(root, root, root).map_err(sys("setresuid in user namespace"))?;
    }
    if has_new_ns(spec, LinuxNamespaceType::Cgroup) {
        // After create put us in the container's cgroup, so that it becomes the namespace root.
        unshare(CloneFlags::CLONE_NEWCGROUP).map_err(sys("unshare cgroup namespace"))?;
    }
    nix::unistd::setsid().map_err(sys("setsid"))?;
    // create refuses a name without a uts entry; a joined namespace (already entered by the
    // intermediate) gets the name too, as runc does. An empty name sets nothing (runc's
    // condition too), so an empty field cannot blank a joined namespace's name.
    if has_ns(spec, LinuxNamespaceType::Uts) {
        if let Some(name) = spec.hostname().as_deref().filter(|n| !n.is_empty()) {
            nix::unistd::sethostname(name).map_err(sys(format!("sethostname {name:?}")))?;
        }
        if let Some(name) = spec.domainname().as_deref().filter(|n| !n.is_empty()) {
            crate::sys::process::set_domainname(name)
                .map_err(sys(format!("setdomainname {name:?}")))?;
        }
    }

    rootfs::prepare(spec, &ctx.rootfs)?;

    // A round trip to the runtime only when it has hooks to run: with none, init goes on
    // (one wake-up of each process less per create; create checks the same condition).
    if crate::runtime::hooks::has_runtime_namespace_hooks(spec) {
        channel.send(&Message::RunCreateRuntimeHooks)?;
        match channel.recv()? {
            Message::HooksDone => {}
            other => return Err(InitError::Protocol(other)),
        }
    }
    if let Some(h) = spec
        .hooks()
        .as_ref()
        .and_then(|h| h.create_container().as_ref())
    {
        hooks::run(HookPoint::CreateContainer, h, &hook_state)?;
    }

    // The seccomp agent's socket is a host path: connect while the host is still visible.
    let seccomp_spec = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref());
    let agent = match seccomp_spec.and_then(|s| s.listener_path().as_ref()) {
        Some(path) => Some((
            UnixStream::connect(path).map_err(|e| {
                InitError::Config(format!("connect seccomp listener {}: {e}", path.display()))
            })?,
            path.clone(),
            seccomp_spec
                .and_then(|s| s.listener_metadata().clone())
                .unwrap_or_default(),
        )),
        None => None,
    };

    rootfs::enter(&ctx.rootfs)?;
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| InitError::Config("config has no process".into()))?;
    if let Some(console) = &ctx.console {
        process_setup::attach_terminal(console, process, true)?;
    }
    rootfs::finalize(spec, &ctx.rootfs)?;

    let prepared = process_setup::prepare(
        process,
        spec.linux().as_ref().and_then(|l| l.personality().as_ref()),
        seccomp_spec.map(|s| (s, agent)),
        &hook_state,
        ctx.preserve_fds,
    )?;

    channel.send(&Message::Ready)?;
    Ok((prepared, hook_state))
}

/// Blocks on the exec fifo until `start` opens it (runtime-spec "start"), runs the
/// startContainer hooks and executes the program. The fifo's write end stays open, close-on-exec,
/// until execve: `start` reads to end of file and so returns only once the program runs, and an
/// error before that reaches `start` through the fifo. Returns only on failure, with the fifo if
/// it was opened.
fn wait_for_start_and_exec(
    ctx: &InitContext<'_>,
    prepared: Prepared,
    mut state: StateReport,
) -> (Option<File>, InitError) {
    let path = format!("/proc/self/fd/{}", ctx.fifo.as_raw_fd());
    let fifo = match open(
        Path::new(&path),
        OFlag::O_WRONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => File::from(fd),
        Err(e) => return (None, sys("open exec fifo")(e)),
    };
    if let Err(e) = std::io::Write::write_all(&mut &fifo, b"0") {
        let errno = nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO));
        return (None, sys("write exec fifo")(errno));
    }
    state.status = Status::Created;
    if let Some(h) = ctx
        .spec
        .hooks()
        .as_ref()
        .and_then(|h| h.start_container().as_ref())
    {
        if let Err(e) = hooks::run(HookPoint::StartContainer, h, &state) {
            return (Some(fifo), e.into());
        }
    }
    let err = prepared.exec(&state).into();
    (Some(fifo), err)
}
