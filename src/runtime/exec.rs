//! `exec`: runs a new process inside a created or running container. The process joins the
//! container's cgroup (or, with `--cgroup`, sub-cgroups of it) and every one of its namespaces (through /proc/<init>/ns/*), then becomes
//! the container process through the same sequence as init (`process_setup`): its own
//! capabilities, rlimits, user, no_new_privs and the container's seccomp filter.
//!
//! Process layout mirrors `create`: an intermediate joins the cgroup and the namespaces and forks
//! the process (so that it is inside the container's pid namespace), reports its pid and exits.
//! A foreground `exec` is a child subreaper, so the process becomes its child and its exit code
//! is the command's.

use std::fs;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use nix::fcntl::{open, OFlag};
use nix::sched::{setns, CloneFlags};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::stat::Mode;
use nix::sys::wait::waitpid;
use nix::unistd::Pid;
use oci_spec::runtime::{Capability, LinuxNamespaceType, Process};

use crate::runtime::cgroups::{CgroupError, SubCgroups};
use crate::runtime::channel::{self, ChannelError, Message};
use crate::runtime::container::{AnyContainer, Operation};
use crate::runtime::process_setup::{self, SeccompAgent};
use crate::runtime::run::{self as run_cmd, FORWARDED};
use crate::runtime::state::{
    write_pid_file, PersistedState, StateError, StateReport, StateRoot, Status,
};
use crate::sys::process::{clone_fork, ForkError, Forked};

/// How the process to run is described.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    /// Container id.
    pub id: String,
    /// A runtime-spec process JSON file (`--process`); overrides the other process flags.
    pub process_file: Option<PathBuf>,
    /// The command and its arguments (when no process file).
    pub args: Vec<String>,
    /// Allocate a terminal.
    pub tty: bool,
    /// Where to send the pty master.
    pub console_socket: Option<PathBuf>,
    /// Return once the process runs.
    pub detach: bool,
    /// Where to write the process's host pid.
    pub pid_file: Option<PathBuf>,
    /// Extra `KEY=value` entries (override the container's).
    pub env: Vec<String>,
    /// Working directory.
    pub cwd: Option<PathBuf>,
    /// `uid[:gid]`.
    pub user: Option<String>,
    /// Supplementary groups.
    pub additional_gids: Vec<u32>,
    /// Capabilities added to the bounding, effective and permitted sets.
    pub caps: Vec<String>,
    /// Set no_new_privs.
    pub no_new_privs: bool,
    /// Descriptors 3..3+N passed into the process.
    pub preserve_fds: u32,
    /// Exec into a paused container anyway.
    pub ignore_paused: bool,
    /// `--cgroup` arguments: sub-cgroups of the container's cgroup to run the process in.
    pub sub_cgroups: Vec<String>,
}

/// Errors of `exec`.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// the container cannot be loaded
    #[error(transparent)]
    State(#[from] StateError),
    /// the container is not created or running (the model's refusal)
    #[error(transparent)]
    WrongState(#[from] refeng_spec::oci::OpError),
    /// the container is paused
    #[error("cannot exec in paused container {0}: resume it first, or use --ignore-paused")]
    Paused(String),
    /// the process description is not usable
    #[error("{0}")]
    Invalid(String),
    /// the process file could not be read or parsed
    #[error("process file {path}")]
    ProcessFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// the runtime could not fork its helper process
    #[error("fork")]
    Fork(#[from] ForkError),
    /// a syscall failed
    #[error("{op}")]
    Sys {
        /// The step.
        op: String,
        /// The errno.
        #[source]
        source: nix::errno::Errno,
    },
    /// a file could not be used
    #[error("{what} {path}")]
    Io {
        /// What it is.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// the sync channel failed
    #[error(transparent)]
    Channel(#[from] ChannelError),
    /// the process failed to start inside the container
    #[error("exec failed: {0}")]
    Setup(String),
    /// waiting for the process failed
    #[error(transparent)]
    Run(#[from] run_cmd::RunError),
    /// the `--cgroup` sub-cgroups cannot be used
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
}

fn sys(op: impl Into<String>) -> impl FnOnce(nix::errno::Errno) -> ExecError {
    let op = op.into();
    move |source| ExecError::Sys { op, source }
}

/// Builds the process from `--process` or from the container's own process and the flags
/// (runc's `exec` semantics).
fn build_process(
    config_process: Option<&Process>,
    opts: &ExecOptions,
) -> Result<Process, ExecError> {
    if let Some(path) = &opts.process_file {
        let bytes = fs::read(path).map_err(|e| ExecError::ProcessFile {
            path: path.clone(),
            source: Box::new(e),
        })?;
        let process: Process =
            serde_json::from_slice(&bytes).map_err(|e| ExecError::ProcessFile {
                path: path.clone(),
                source: Box::new(e),
            })?;
        validate(&process)?;
        return Ok(process);
    }
    if opts.args.is_empty() {
        return Err(ExecError::Invalid(
            "exec needs a command or --process".into(),
        ));
    }
    let mut p = config_process.cloned().unwrap_or_default();
    p.set_args(Some(opts.args.clone()));
    p.set_terminal(Some(opts.tty));
    p.set_console_size(None);
    let mut env = p.env().clone().unwrap_or_default();
    for kv in &opts.env {
        let key = kv.split('=').next().unwrap_or_default();
        env.retain(|e| e.split('=').next() != Some(key));
        env.push(kv.clone());
    }
    p.set_env(Some(env));
    if let Some(cwd) = &opts.cwd {
        p.set_cwd(cwd.clone());
    }
    if let Some(user) = &opts.user {
        let (uid, gid) = match user.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (user.as_str(), None),
        };
        let parse = |s: &str| {
            s.parse::<u32>()
                .map_err(|_| ExecError::Invalid(format!("--user {user:?}: ids must be numbers")))
        };
        p.user_mut().set_uid(parse(uid)?);
        if let Some(g) = gid {
            p.user_mut().set_gid(parse(g)?);
        }
    }
    if !opts.additional_gids.is_empty() {
        p.user_mut()
            .set_additional_gids(Some(opts.additional_gids.clone()));
    }
    if !opts.caps.is_empty() {
        let mut caps = p.capabilities().clone().unwrap_or_default();
        for name in &opts.caps {
            let cap: Capability =
                serde_json::from_value(serde_json::Value::String(if name.starts_with("CAP_") {
                    name.clone()
                } else {
                    format!("CAP_{name}")
                }))
                .map_err(|_| ExecError::Invalid(format!("unknown capability {name:?}")))?;
            let add = |set: &Option<std::collections::HashSet<Capability>>| {
                let mut set = set.clone().unwrap_or_default();
                set.insert(cap);
                Some(set)
            };
            caps.set_bounding(add(caps.bounding()));
            caps.set_effective(add(caps.effective()));
            caps.set_permitted(add(caps.permitted()));
        }
        p.set_capabilities(Some(caps));
    }
    if opts.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    validate(&p)?;
    Ok(p)
}

fn validate(p: &Process) -> Result<(), ExecError> {
    if p.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(ExecError::Invalid(
            "process.args must name a program".into(),
        ));
    }
    if !p.cwd().is_absolute() {
        return Err(ExecError::Invalid(format!(
            "process.cwd {:?} must be absolute",
            p.cwd()
        )));
    }
    for (set, field) in [
        (
            p.apparmor_profile().as_ref().is_some_and(|s| !s.is_empty()),
            "process.apparmorProfile",
        ),
        (
            p.selinux_label().as_ref().is_some_and(|s| !s.is_empty()),
            "process.selinuxLabel",
        ),
        (p.io_priority().is_some(), "process.ioPriority"),
        (p.exec_cpu_affinity().is_some(), "process.execCPUAffinity"),
    ] {
        if set {
            return Err(ExecError::Invalid(format!(
                "unsupported field {field}: not implemented by refeng-runc"
            )));
        }
    }
    Ok(())
}

/// The namespaces to join, in order: user first (it grants the rights for the others), mount
/// last (the other /proc paths resolve in our mount namespace).
fn namespace_fds(state: &PersistedState) -> Result<Vec<(CloneFlags, OwnedFd)>, ExecError> {
    let types: Vec<LinuxNamespaceType> = state
        .config
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default()
        .iter()
        .map(|ns| ns.typ())
        .collect();
    let order = [
        (LinuxNamespaceType::User, "user", CloneFlags::CLONE_NEWUSER),
        (LinuxNamespaceType::Ipc, "ipc", CloneFlags::CLONE_NEWIPC),
        (LinuxNamespaceType::Uts, "uts", CloneFlags::CLONE_NEWUTS),
        (LinuxNamespaceType::Network, "net", CloneFlags::CLONE_NEWNET),
        (LinuxNamespaceType::Pid, "pid", CloneFlags::CLONE_NEWPID),
        (
            LinuxNamespaceType::Cgroup,
            "cgroup",
            CloneFlags::CLONE_NEWCGROUP,
        ),
        (
            LinuxNamespaceType::Time,
            "time",
            CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
        ),
        (LinuxNamespaceType::Mount, "mnt", CloneFlags::CLONE_NEWNS),
    ];
    let mut fds = Vec::new();
    for (typ, name, flag) in order {
        if types.contains(&typ) {
            let path = format!("/proc/{}/ns/{name}", state.pid);
            let fd = open(
                Path::new(&path),
                OFlag::O_RDONLY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(sys(format!("open {path}")))?;
            fds.push((flag, fd));
        }
    }
    Ok(fds)
}

/// Runs the exec; returns the exit code (0 when detached).
///
/// # Errors
/// A container that cannot take the process, or a process that could not start.
#[tracing::instrument(skip_all, fields(id = %opts.id))]
pub fn exec(root: &StateRoot, opts: &ExecOptions) -> Result<i32, ExecError> {
    let loaded = AnyContainer::load(root, &opts.id)?;
    match loaded.status() {
        Status::Created | Status::Running => {}
        Status::Paused if opts.ignore_paused => {}
        Status::Paused => return Err(ExecError::Paused(opts.id.clone())),
        _ => return Err(loaded.wrong_state(Operation::Exec).into()),
    }
    let state = loaded.state().clone();
    // The lock is for lifecycle changes; an exec must not hold it while the process runs.
    drop(loaded);
    let process = build_process(state.config.process().as_ref(), opts)?;
    // Checked here, so that a bad or missing sub-cgroup is refused before anything starts.
    let cgroup = match SubCgroups::parse(&opts.sub_cgroups)? {
        Some(sub) => state.cgroup.with_sub_cgroups(&sub)?,
        None => state.cgroup.clone(),
    };
    let terminal = process.terminal() == Some(true);

    let mut own_console = None;
    let console_path = match (&opts.console_socket, terminal) {
        (Some(_), false) => {
            return Err(ExecError::Invalid(
                "--console-socket was given but the process has no terminal".into(),
            ))
        }
        (Some(p), true) => Some(p.clone()),
        (None, true) if opts.detach => {
            return Err(ExecError::Invalid(
                "cannot allocate a tty for a detached process without --console-socket".into(),
            ))
        }
        (None, true) => {
            let path = root.path().join(format!(
                ".exec-console-{}-{}.sock",
                opts.id,
                std::process::id()
            ));
            let _ = fs::remove_file(&path);
            let listener = UnixListener::bind(&path).map_err(|source| ExecError::Io {
                what: "bind console socket",
                path: path.clone(),
                source,
            })?;
            own_console = Some((listener, path.clone()));
            Some(path)
        }
        (None, false) => None,
    };
    let console = match &console_path {
        Some(p) => Some(UnixStream::connect(p).map_err(|source| ExecError::Io {
            what: "connect console socket",
            path: p.clone(),
            source,
        })?),
        None => None,
    };
    let seccomp = state
        .config
        .linux()
        .as_ref()
        .and_then(|l| l.seccomp().clone());
    let agent: Option<SeccompAgent> = match seccomp.as_ref().and_then(|s| s.listener_path().clone())
    {
        Some(path) => Some((
            UnixStream::connect(&path).map_err(|source| ExecError::Io {
                what: "connect seccomp listener",
                path: path.clone(),
                source,
            })?,
            path,
            seccomp
                .as_ref()
                .and_then(|s| s.listener_metadata().clone())
                .unwrap_or_default(),
        )),
        None => None,
    };
    let namespaces = namespace_fds(&state)?;
    // Without a mount namespace to join, the process would see the host's files: it enters the
    // container's root the way init did, by chroot, through init's root.
    let has_mount_ns = state
        .config
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|nss| nss.iter().any(|ns| ns.typ() == LinuxNamespaceType::Mount));
    let container_root = if has_mount_ns {
        None
    } else {
        let path = format!("/proc/{}/root", state.pid);
        Some(
            open(
                Path::new(&path),
                OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(sys(format!("open {path}")))?,
        )
    };
    let mut report = StateReport::new(&state, Status::Running);
    report.pid = Some(state.pid);

    if !opts.detach {
        nix::sys::prctl::set_child_subreaper(true).map_err(sys("set child subreaper"))?;
    }
    // The process is born in the cgroup (cgroups::Entry).
    let entry = cgroup.entry()?;
    let (parent, child) = channel::pair()?;
    let intermediate = match clone_fork(CloneFlags::empty())? {
        Forked::Child => {
            drop(parent);
            let result = (|| -> Result<Pid, String> {
                entry
                    .join_v1()
                    .map_err(|e| crate::runtime::init::error_chain(&e))?;
                for (flag, fd) in &namespaces {
                    setns(fd.as_fd(), *flag)
                        .map_err(|e| format!("join namespace {flag:?}: {e}"))?;
                }
                match entry
                    .fork(CloneFlags::empty())
                    .map_err(|e| crate::runtime::init::error_chain(&e))?
                {
                    Forked::Child => {
                        let err = become_process(
                            container_root.as_ref(),
                            &process,
                            state
                                .config
                                .linux()
                                .as_ref()
                                .and_then(|l| l.personality().as_ref()),
                            console.as_ref(),
                            seccomp.as_ref().map(|s| (s, agent)),
                            &report,
                            opts.preserve_fds as i32,
                        );
                        let _ = child.send(&Message::Error(err));
                        crate::sys::process::exit_now(1)
                    }
                    Forked::Parent(pid) => Ok(pid),
                }
            })();
            let (msg, code) = match result {
                Ok(pid) => (Message::InitPid(pid.as_raw()), 0),
                Err(e) => (Message::Error(e), 1),
            };
            let _ = child.send(&msg);
            crate::sys::process::exit_now(code)
        }
        Forked::Parent(pid) => pid,
    };
    drop(child);
    drop(console);
    let first = parent.recv();
    let _ = waitpid(intermediate, None);
    let pid = match first? {
        Message::InitPid(pid) => Pid::from_raw(pid),
        Message::Error(e) => return Err(ExecError::Setup(e)),
        other => return Err(ExecError::Setup(format!("unexpected message {other:?}"))),
    };
    // The process's end of the channel is close-on-exec: end of file means it executed.
    match parent.recv() {
        Err(ChannelError::Closed) => {}
        Ok(Message::Error(e)) => {
            let _ = waitpid(pid, None);
            return Err(ExecError::Setup(e));
        }
        Ok(other) => return Err(ExecError::Setup(format!("unexpected message {other:?}"))),
        Err(e) => return Err(e.into()),
    }
    if let Some(pid_file) = &opts.pid_file {
        if let Err(e) = write_pid_file(pid_file, pid) {
            // The caller learns the process only through the pid file: one it cannot find must
            // not keep running (runc kills it too). Ours to reap unless detached.
            let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
            if !opts.detach {
                let _ = waitpid(pid, None);
            }
            return Err(e.into());
        }
    }
    let master = match own_console {
        Some((listener, path)) => {
            let _ = fs::remove_file(&path);
            Some(run_cmd::receive_master(&listener)?)
        }
        None => None,
    };
    if opts.detach {
        return Ok(0);
    }
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    for s in FORWARDED {
        mask.add(s);
    }
    mask.thread_block().map_err(sys("block signals"))?;
    let mut tty = master.as_ref().map(run_cmd::proxy_terminal);
    let code = run_cmd::wait_for(pid, &mask)?;
    drop(master);
    if let Some(tty) = tty.as_mut() {
        tty.drain();
    }
    Ok(code)
}

/// In the forked process, inside the container's namespaces (and, for a container without a
/// mount namespace, chrooted into `root`): returns only the error text.
fn become_process(
    root: Option<&OwnedFd>,
    process: &Process,
    personality: Option<&oci_spec::runtime::LinuxPersonality>,
    console: Option<&UnixStream>,
    seccomp: Option<(&oci_spec::runtime::LinuxSeccomp, Option<SeccompAgent>)>,
    report: &StateReport,
    preserve_fds: i32,
) -> String {
    let chain = |e: &dyn std::error::Error| crate::runtime::init::error_chain(e);
    if let Some(root) = root {
        if let Err(e) = nix::unistd::fchdir(root).and_then(|()| nix::unistd::chroot(".")) {
            return format!("chroot into the container's root: {e}");
        }
    }
    if let Err(e) = nix::unistd::setsid() {
        return format!("setsid: {e}");
    }
    if let Some(console) = console {
        if let Err(e) = process_setup::attach_terminal(console, process, false) {
            return chain(&e);
        }
    }
    match process_setup::prepare(process, personality, seccomp, report, preserve_fds) {
        Ok(prepared) => chain(&prepared.exec(report)),
        Err(e) => chain(&e),
    }
}
