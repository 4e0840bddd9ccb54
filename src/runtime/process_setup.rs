//! Turns the calling process (the container's init, or an `exec`'d process that has joined the
//! container's namespaces) into the container process: rlimits, cwd, seccomp, capabilities, user,
//! umask, terminal, then execve. One sequence for both, so `exec` cannot drift from `create`.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;
use oci_spec::runtime::{
    LinuxPersonality, LinuxPersonalityDomain, LinuxSchedulerFlag, LinuxSchedulerPolicy,
    LinuxSeccomp, Process,
};

use crate::runtime::process::{self, CapabilitySets, ExecPlan, ProcessError};
use crate::runtime::seccomp::{self, SeccompError, SeccompFilter};
use crate::runtime::state::StateReport;

/// Errors while becoming the container process.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// process attributes could not be applied
    #[error(transparent)]
    Process(#[from] ProcessError),
    /// the seccomp filter could not be built, loaded or handed to its agent
    #[error(transparent)]
    Seccomp(#[from] SeccompError),
    /// a syscall failed
    #[error("{op}")]
    Sys {
        /// The step.
        op: &'static str,
        /// The errno.
        #[source]
        source: nix::errno::Errno,
    },
    /// the working directory is outside the container's root (CVE-2024-21626 class)
    #[error("working directory {0:?} is outside the container root")]
    CwdOutsideRoot(PathBuf),
    /// the scheduling policy could not be set
    #[error("cannot set the scheduler ({policy:?})")]
    Scheduler {
        /// The policy asked for.
        policy: LinuxSchedulerPolicy,
        /// The errno.
        #[source]
        source: nix::errno::Errno,
    },
    /// a field has a value refeng-runc refuses
    #[error("{0}")]
    Unsupported(String),
    /// the terminal could not be set up
    #[error("console: {what}")]
    Console {
        /// The step.
        what: String,
        /// The errno.
        #[source]
        source: nix::errno::Errno,
    },
}

fn sys(op: &'static str) -> impl FnOnce(nix::errno::Errno) -> SetupError {
    move |source| SetupError::Sys { op, source }
}

/// The seccomp agent for SCMP_ACT_NOTIFY: a stream connected to `listenerPath` while the host's
/// paths were visible, the path (for errors) and the metadata to send.
pub type SeccompAgent = (UnixStream, PathBuf, String);

/// A compiled filter waiting to be loaded.
struct PendingFilter {
    filter: SeccompFilter,
    agent: Option<SeccompAgent>,
}

impl PendingFilter {
    fn load(self, state: &StateReport) -> Result<(), SetupError> {
        let listener = self.filter.load()?;
        if let (Some(fd), Some((stream, path, metadata))) = (listener, self.agent) {
            let state = serde_json::to_vec(state).unwrap_or_default();
            seccomp::send_listener_connected(stream, &path, fd, &state, &metadata)?;
        }
        Ok(())
    }
}

/// A process that is fully set up except for what must come last: the seccomp filter when it
/// loads after no_new_privs and has no agent to tell, and execve itself.
pub struct Prepared {
    plan: ExecPlan,
    late_filter: Option<PendingFilter>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("plan", &self.plan)
            .field("late_filter", &self.late_filter.is_some())
            .finish()
    }
}

/// Applies everything of `process` that needs privileges, in runc's order: rlimits, cwd (then
/// checked to be inside the root), the seccomp filter when no_new_privs is off (loading needs
/// CAP_SYS_ADMIN then), the bounding set, no_new_privs, the user, the other capability sets,
/// umask, and last a no_new_privs filter with notify rules (its agent gets the fd now).
/// Resolves the program with the container's PATH so a missing one fails now.
///
/// Every descriptor from 3+`preserve_fds` is marked close-on-exec first, before any filter of the
/// user's is loaded: that filter may refuse close_range(2) (an older profile that does not list
/// it), and nothing the runtime itself needs may depend on what the user's filter allows.
/// Descriptors the runtime opens later are all opened close-on-exec.
///
/// # Errors
/// The first step that fails.
pub fn prepare(
    process: &Process,
    personality: Option<&LinuxPersonality>,
    seccomp: Option<(&LinuxSeccomp, Option<SeccompAgent>)>,
    state: &StateReport,
    preserve_fds: i32,
) -> Result<Prepared, SetupError> {
    if let Some(p) = personality {
        apply_personality(p)?;
    }
    apply_scheduler(process)?;
    process::apply_rlimits(process)?;
    let caps = CapabilitySets::from_process(process)?;
    let env = process::environment(process);
    let plan = ExecPlan::new(process.args().as_deref().unwrap_or_default(), &env)?;
    // runtime-spec "Process": cwd is relative to the container's root; enter it while still
    // root, then make sure it really is below the root (a leaked directory fd as cwd resolves
    // outside it, and getcwd then answers "(unreachable)...").
    process::enter_cwd(process)?;
    match nix::unistd::getcwd() {
        Ok(path) if path.is_absolute() => {}
        Ok(path) => return Err(SetupError::CwdOutsideRoot(path)),
        Err(e) => return Err(sys("getcwd")(e)),
    }
    crate::sys::process::cloexec_from(3 + preserve_fds)
        .map_err(sys("mark descriptors close-on-exec"))?;
    let nnp = process.no_new_privileges() == Some(true);
    let mut filter = match seccomp {
        Some((spec, agent)) => Some(PendingFilter {
            filter: seccomp::compile(spec)?,
            agent,
        }),
        None => None,
    };
    if !nnp {
        if let Some(f) = filter.take() {
            f.load(state)?;
        }
    }
    caps.apply_bounding()?;
    if nnp {
        nix::sys::prctl::set_no_new_privs().map_err(sys("set no_new_privs"))?;
    }
    process::switch_user(process)?;
    caps.apply_rest()?;
    process::apply_umask(process);
    // A filter with notify rules hands its fd to the agent when it loads, and the agent may wait
    // for that fd before it calls `start` (or `kill`, `delete`): waiting for the exec fifo with it
    // unloaded would wait forever. So it loads now, at the end of `create` (before init reports
    // Ready, state "creating"), as runc 1.1.5 does; a filter without notify rules still loads
    // last, so that as few of the runtime's own syscalls as possible run under it.
    if filter.as_ref().is_some_and(|f| f.filter.uses_notify()) {
        if let Some(f) = filter.take() {
            f.load(state)?;
        }
    }
    Ok(Prepared {
        plan,
        late_filter: filter,
    })
}

/// config-linux.md "Personality": the execution domain; no flags are defined yet, so any flag
/// is refused rather than ignored.
fn apply_personality(p: &LinuxPersonality) -> Result<(), SetupError> {
    if p.flags().as_ref().is_some_and(|f| !f.is_empty()) {
        return Err(SetupError::Unsupported(format!(
            "linux.personality.flags {:?}: the runtime-spec defines no flags",
            p.flags().as_ref().unwrap_or(&Vec::new())
        )));
    }
    let persona = match p.domain() {
        LinuxPersonalityDomain::PerLinux => 0x0000,
        LinuxPersonalityDomain::PerLinux32 => 0x0008,
    };
    crate::sys::sched::set_personality(persona).map_err(sys("personality"))
}

/// config.md "Scheduler": the process's policy and its parameters, set with sched_setattr(2)
/// while the process still has CAP_SYS_NICE.
fn apply_scheduler(process: &Process) -> Result<(), SetupError> {
    let Some(s) = process.scheduler() else {
        return Ok(());
    };
    let policy = match *s.policy() {
        LinuxSchedulerPolicy::SchedOther => libc::SCHED_OTHER,
        LinuxSchedulerPolicy::SchedFifo => libc::SCHED_FIFO,
        LinuxSchedulerPolicy::SchedRr => libc::SCHED_RR,
        LinuxSchedulerPolicy::SchedBatch => libc::SCHED_BATCH,
        LinuxSchedulerPolicy::SchedIdle => libc::SCHED_IDLE,
        LinuxSchedulerPolicy::SchedDeadline => 6,
        LinuxSchedulerPolicy::SchedIso => {
            return Err(SetupError::Unsupported(
                "process.scheduler.policy SCHED_ISO: Linux does not implement it".into(),
            ))
        }
    };
    let mut flags = 0u64;
    for flag in s.flags().iter().flatten() {
        flags |= match flag {
            LinuxSchedulerFlag::SchedResetOnFork => 0x01,
            LinuxSchedulerFlag::SchedFlagReclaim => 0x02,
            LinuxSchedulerFlag::SchedFlagDLOverrun => 0x04,
            LinuxSchedulerFlag::SchedFlagKeepPolicy => 0x08,
            LinuxSchedulerFlag::SchedFlagKeepParams => 0x10,
            LinuxSchedulerFlag::SchedFlagUtilClampMin
            | LinuxSchedulerFlag::SchedFlagUtilClampMax => {
                return Err(SetupError::Unsupported(format!(
                    "process.scheduler.flags {flag:?}: the spec gives no clamp values to set"
                )))
            }
        };
    }
    let attr = crate::sys::sched::SchedAttr {
        policy: policy as u32,
        flags,
        nice: s.nice().unwrap_or(0),
        priority: s.priority().unwrap_or(0).max(0) as u32,
        runtime: s.runtime().unwrap_or(0),
        deadline: s.deadline().unwrap_or(0),
        period: s.period().unwrap_or(0),
        ..Default::default()
    };
    crate::sys::sched::set_scheduler(attr).map_err(|source| SetupError::Scheduler {
        policy: *s.policy(),
        source,
    })
}

impl Prepared {
    /// Resets the signal state, loads a late filter and executes the program. Returns only on
    /// failure.
    pub fn exec(self, state: &StateReport) -> SetupError {
        // Before the late filter: a profile may deny rt_sigaction to the program. An early
        // filter and one with notify rules are loaded by now; every profile in use allows
        // rt_sigaction and rt_sigprocmask, which any program's libc needs. (Not earlier: init
        // still writes to hooks' stdin, where SIGPIPE must stay ignored.)
        if let Err(e) = crate::sys::process::reset_signals() {
            return sys("reset signal mask")(e);
        }
        if let Some(filter) = self.late_filter {
            if let Err(e) = filter.load(state) {
                return e;
            }
        }
        self.plan.exec().into()
    }
}

/// Gives the process a new pty from the container's /dev/ptmx: the master goes to whoever
/// listens on the console socket (runc's protocol: the name as payload, the fd as SCM_RIGHTS),
/// the slave becomes the controlling terminal and stdio. With `bind_dev_console` (init only)
/// it is also bound onto /dev/console.
///
/// # Errors
/// The step that failed.
pub fn attach_terminal(
    socket: &UnixStream,
    process: &Process,
    bind_dev_console: bool,
) -> Result<(), SetupError> {
    use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};

    let console = |what: &str| {
        let what = what.to_string();
        move |source| SetupError::Console { what, source }
    };
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .map_err(console("open /dev/ptmx"))?;
    grantpt(&master).map_err(console("grantpt"))?;
    unlockpt(&master).map_err(console("unlockpt"))?;
    let slave_name = ptsname_r(&master).map_err(console("ptsname"))?;
    let slave = open(
        Path::new(&slave_name),
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(console(&format!("open {slave_name}")))?;
    if let Some(size) = process.console_size() {
        crate::sys::tty::set_window_size(slave.as_fd(), size.height() as u16, size.width() as u16)
            .map_err(console("set window size"))?;
    }
    if bind_dev_console {
        let dev_console = Path::new("/dev/console");
        if !dev_console.exists() {
            let _ = File::create(dev_console);
        }
        nix::mount::mount(
            Some(Path::new(&slave_name)),
            dev_console,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(console("bind /dev/console"))?;
    }
    let fds = [master.as_raw_fd()];
    let iov = [std::io::IoSlice::new(b"/dev/ptmx")];
    sendmsg::<()>(
        socket.as_raw_fd(),
        &iov,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map_err(console("send pty master to console socket"))?;
    drop(master);
    crate::sys::tty::set_controlling_terminal(slave.as_fd())
        .map_err(console("set controlling terminal"))?;
    for stream in crate::sys::process::StdStream::ALL {
        crate::sys::process::replace_std_stream(slave.as_fd(), stream)
            .map_err(console("dup2 pty slave"))?;
    }
    Ok(())
}
