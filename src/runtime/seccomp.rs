//! The container process's seccomp filter (runtime-spec config-linux.md "Seccomp"): compiles
//! `linux.seccomp` into a libseccomp filter, loads it, and hands the `SCMP_ACT_NOTIFY` listener fd
//! to the seccomp agent at `listenerPath`.
//!
//! The rules follow runc, so that a `config.json` written for runc (by dockerd, containerd or
//! podman) yields the same filter here:
//! - a syscall name libseccomp cannot resolve on this architecture is skipped with a debug log, not
//!   an error: Docker's default profile lists syscalls newer than many kernels and libseccomp
//!   releases, and it must still load there;
//! - a rule whose action equals the default action is skipped (libseccomp refuses it, and it
//!   changes nothing);
//! - `errnoRet` defaults to `EPERM` for `SCMP_ACT_ERRNO` and `SCMP_ACT_TRACE`;
//! - `SCMP_ACT_KILL` is `SCMP_ACT_KILL_THREAD`;
//! - a rule with two conditions on the same argument becomes one rule per condition (so they are
//!   OR-ed), conditions on distinct arguments are AND-ed in one rule;
//! - the filter does not set `no_new_privs` itself: the runtime applies `process.noNewPrivileges`
//!   on its own, so loading needs either that bit or `CAP_SYS_ADMIN`.

use std::io::{IoSlice, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use libseccomp::error::SeccompError as ScmpError;
use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use nix::errno::Errno;
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, UnixAddr};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator, LinuxSyscall,
};
use serde::Serialize;
use tracing::debug;

/// The runtime-spec version whose "containerProcessState" [`send_listener`] sends.
pub const CONTAINER_PROCESS_STATE_VERSION: &str = "1.2.0";

/// The name under which the listener fd is announced in the container process state's `fds`
/// (runtime-spec: "seccompFd").
pub const SECCOMP_FD_NAME: &str = "seccompFd";

/// A syscall takes at most six arguments (`struct seccomp_data.args`).
const SYSCALL_ARGS: usize = 6;

/// Above this many rules a binary-tree filter beats the linear one (runc uses the same cut-off).
const BINARY_TREE_MIN_RULES: usize = 8;

/// The kernel returns the errno of `SECCOMP_RET_ERRNO`/`SECCOMP_RET_TRACE` in 16 bits.
const MAX_ERRNO_RET: u32 = u16::MAX as u32;

/// Errors while compiling, loading or handing over a seccomp filter.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// libseccomp could not create a filter context for the default action
    #[error("creating a seccomp filter with default action {action}")]
    Create {
        /// The spec's `defaultAction`.
        action: LinuxSeccompAction,
        /// What libseccomp said.
        #[source]
        source: ScmpError,
    },
    /// `errnoRet`/`defaultErrnoRet` was given for an action that returns no errno
    /// (runtime-spec: "When the action doesn't support an errno, the runtime MUST print an error
    /// and fail")
    #[error("{context}: errnoRet {errno} is set but action {action} returns no errno")]
    ErrnoRetNotSupported {
        /// `defaultAction` or the syscall names of the rule.
        context: String,
        /// The action that takes no errno.
        action: LinuxSeccompAction,
        /// The errno that was given.
        errno: u32,
    },
    /// `errnoRet` does not fit in the 16 bits the kernel returns
    #[error("{context}: errnoRet {errno} is larger than {MAX_ERRNO_RET}")]
    ErrnoRetRange {
        /// `defaultAction` or the syscall names of the rule.
        context: String,
        /// The errno that was given.
        errno: u32,
    },
    /// `SCMP_ACT_NOTIFY` as the default action would make the runtime's own last syscalls (and
    /// execve) wait for an agent that has not been told about the filter yet
    #[error("defaultAction cannot be SCMP_ACT_NOTIFY")]
    NotifyAsDefault,
    /// `SCMP_ACT_NOTIFY` on `write` would block the runtime reporting to its parent after the
    /// filter is loaded (runc refuses it for the same reason)
    #[error("SCMP_ACT_NOTIFY cannot be used for the write syscall")]
    NotifyOnWrite,
    /// a rule uses `SCMP_ACT_NOTIFY` but no agent is named to receive the listener fd, so the
    /// notified syscalls would hang forever
    #[error("a rule uses SCMP_ACT_NOTIFY but listenerPath is not set")]
    NotifyWithoutListener,
    /// libseccomp (the installed version) does not know the architecture
    #[error("architecture {arch} is not supported by the installed libseccomp")]
    Arch {
        /// The spec's architecture.
        arch: Arch,
        /// What libseccomp said.
        #[source]
        source: ScmpError,
    },
    /// libseccomp (the installed version) has no filter attribute for the flag
    #[error("seccomp flag {flag} is not supported by the installed libseccomp")]
    Flag {
        /// The spec's flag.
        flag: LinuxSeccompFilterFlag,
        /// What libseccomp said.
        #[source]
        source: ScmpError,
    },
    /// a filter attribute the runtime depends on could not be set
    #[error("setting seccomp filter attribute {attribute}")]
    Attribute {
        /// Which attribute.
        attribute: &'static str,
        /// What libseccomp said.
        #[source]
        source: ScmpError,
    },
    /// an argument condition names an argument a syscall does not have
    #[error("syscall {syscall}: argument index {index} is out of range (0 to 5)")]
    ArgIndex {
        /// The syscall name.
        syscall: String,
        /// The index that was given.
        index: usize,
    },
    /// libseccomp refused the rule
    #[error("adding rule {action} for syscall {syscall}")]
    Rule {
        /// The syscall name.
        syscall: String,
        /// The rule's action.
        action: LinuxSeccompAction,
        /// What libseccomp said.
        #[source]
        source: ScmpError,
    },
    /// the kernel refused the filter (without `no_new_privs` or `CAP_SYS_ADMIN` this is EACCES)
    #[error("loading the seccomp filter")]
    Load {
        /// What libseccomp said.
        #[source]
        source: ScmpError,
    },
    /// the filter was loaded but libseccomp has no listener fd for it
    #[error("getting the seccomp notify listener fd")]
    NotifyFd {
        /// What libseccomp said.
        #[source]
        source: ScmpError,
    },
    /// the listener fd could not be duplicated into one we own
    #[error("taking ownership of the seccomp notify listener fd")]
    NotifyFdDup {
        /// The fcntl errno.
        #[source]
        source: Errno,
    },
    /// the container state to send is not a JSON object with an integer `pid`
    #[error("the container state for the seccomp agent is not a state object with a pid")]
    InvalidState {
        /// The JSON error, when it did not parse at all.
        #[source]
        source: Option<serde_json::Error>,
    },
    /// the seccomp agent's socket could not be reached
    #[error("connecting to seccomp listener {path}")]
    Connect {
        /// `listenerPath`.
        path: PathBuf,
        /// The connect error.
        #[source]
        source: std::io::Error,
    },
    /// the container process state (or its fd) could not be sent to the agent
    #[error("sending the container process state to seccomp listener {path}")]
    Send {
        /// `listenerPath`.
        path: PathBuf,
        /// The send error.
        #[source]
        source: std::io::Error,
    },
}

/// A compiled seccomp filter, not yet loaded into any process.
#[derive(Debug)]
pub struct SeccompFilter {
    ctx: ScmpFilterContext,
    uses_notify: bool,
}

impl SeccompFilter {
    /// Whether a rule with `SCMP_ACT_NOTIFY` made it into the filter, i.e. whether [`Self::load`]
    /// will return a listener fd that must be sent to the agent.
    #[must_use]
    pub fn uses_notify(&self) -> bool {
        self.uses_notify
    }

    /// Loads the filter into the calling thread (every thread with `SECCOMP_FILTER_FLAG_TSYNC`)
    /// and the processes it later starts; this is the last step before execve (runtime-spec:
    /// `process` is applied, then the filter).
    ///
    /// Returns the user-notification listener fd when the filter has `SCMP_ACT_NOTIFY` rules;
    /// give it to [`send_listener`] (from this process or a parent it was passed to).
    ///
    /// # Errors
    /// [`SeccompError::Load`] when the kernel refuses the filter (EACCES without `no_new_privs` or
    /// `CAP_SYS_ADMIN`), [`SeccompError::NotifyFd`]/[`SeccompError::NotifyFdDup`] when the listener
    /// fd cannot be had after a successful load.
    pub fn load(self) -> Result<Option<OwnedFd>, SeccompError> {
        self.ctx
            .load()
            .map_err(|source| SeccompError::Load { source })?;
        debug!(notify = self.uses_notify, "seccomp filter loaded");
        if !self.uses_notify {
            return Ok(None);
        }
        use crate::sys::seccomp::{dup_notify_fd, NotifyFdError};
        let fd = dup_notify_fd(&self.ctx).map_err(|e| match e {
            NotifyFdError::Get(source) => SeccompError::NotifyFd { source },
            NotifyFdError::Dup(source) => SeccompError::NotifyFdDup { source },
        })?;
        Ok(Some(fd))
    }
}

/// Compiles the spec's seccomp object into a filter for [`SeccompFilter::load`].
///
/// Call it before dropping privileges (reading the syscall tables and building the BPF need
/// neither), so that loading is a single syscall at the very end.
///
/// # Errors
/// The spec is refused with [`SeccompError::ErrnoRetNotSupported`], [`SeccompError::ErrnoRetRange`],
/// [`SeccompError::NotifyAsDefault`], [`SeccompError::NotifyOnWrite`],
/// [`SeccompError::NotifyWithoutListener`] or [`SeccompError::ArgIndex`]; what this libseccomp
/// cannot do with [`SeccompError::Arch`] or [`SeccompError::Flag`]; what libseccomp rejects with
/// [`SeccompError::Create`], [`SeccompError::Attribute`] or [`SeccompError::Rule`]. An unknown
/// syscall name is not an error (see the module docs).
pub fn compile(seccomp: &LinuxSeccomp) -> Result<SeccompFilter, SeccompError> {
    let default_spec = seccomp.default_action();
    if default_spec == LinuxSeccompAction::ScmpActNotify {
        return Err(SeccompError::NotifyAsDefault);
    }
    let default_action = scmp_action(default_spec, seccomp.default_errno_ret(), "defaultAction")?;
    let mut ctx =
        ScmpFilterContext::new(default_action).map_err(|source| SeccompError::Create {
            action: default_spec,
            source,
        })?;

    // The runtime sets no_new_privs from process.noNewPrivileges; libseccomp's default would set
    // it unconditionally.
    ctx.set_ctl_nnp(false)
        .map_err(|source| SeccompError::Attribute {
            attribute: "SCMP_FLTATR_CTL_NNP",
            source,
        })?;
    // The kernel's errno (EACCES, EINVAL, ...) says more than libseccomp's ECANCELED. Older
    // libseccomp lacks the attribute; the filter is the same without it.
    if let Err(error) = ctx.set_api_sysrawrc(true) {
        debug!(%error, "libseccomp cannot report raw syscall errors");
    }

    for &arch in seccomp.architectures().iter().flatten() {
        ctx.add_arch(scmp_arch(arch))
            .map_err(|source| SeccompError::Arch { arch, source })?;
    }
    for &flag in seccomp.flags().iter().flatten() {
        set_flag(&mut ctx, flag)?;
    }

    let rules: &[LinuxSyscall] = seccomp.syscalls().as_deref().unwrap_or_default();
    if rules.len() > BINARY_TREE_MIN_RULES {
        if let Err(error) = ctx.set_ctl_optimize(2) {
            debug!(%error, "libseccomp cannot build a binary-tree filter, keeping the linear one");
        }
    }

    let mut uses_notify = false;
    let mut added = 0usize;
    for rule in rules {
        let context = rule.names().join(",");
        let action = scmp_action(rule.action(), rule.errno_ret(), &context)?;
        if rule.action() == LinuxSeccompAction::ScmpActNotify {
            if rule.names().iter().any(|name| name == "write") {
                return Err(SeccompError::NotifyOnWrite);
            }
            if seccomp.listener_path().is_none() {
                return Err(SeccompError::NotifyWithoutListener);
            }
        }
        let args: &[LinuxSeccompArg] = rule.args().as_deref().unwrap_or_default();
        let conditions = args
            .iter()
            .map(|arg| scmp_condition(arg, &context))
            .collect::<Result<Vec<_>, _>>()?;
        let split = same_arg_twice(args);
        if action == default_action {
            debug!(syscalls = %context, action = %rule.action(), "rule equals the default action, skipped");
            continue;
        }
        for name in rule.names() {
            let syscall = match ScmpSyscall::from_name(name) {
                Ok(syscall) => syscall,
                Err(error) => {
                    debug!(syscall = %name, %error, "syscall unknown to libseccomp on this architecture, skipped");
                    continue;
                }
            };
            add_rule(&mut ctx, syscall, action, &conditions, split).map_err(|source| {
                SeccompError::Rule {
                    syscall: name.clone(),
                    action: rule.action(),
                    source,
                }
            })?;
            added += 1;
            uses_notify |= action == ScmpAction::Notify;
        }
    }
    debug!(
        rules = added,
        notify = uses_notify,
        "seccomp filter compiled"
    );
    Ok(SeccompFilter { ctx, uses_notify })
}

/// Adds one syscall's rule. libseccomp ANDs all conditions of one rule; runc splits a rule with
/// several conditions on the same argument into one rule per condition (OR), and configs written
/// for runc depend on that, so `split` asks for the same.
fn add_rule(
    ctx: &mut ScmpFilterContext,
    syscall: ScmpSyscall,
    action: ScmpAction,
    conditions: &[ScmpArgCompare],
    split: bool,
) -> Result<(), ScmpError> {
    if conditions.is_empty() {
        ctx.add_rule(action, syscall)?;
    } else if split {
        for condition in conditions {
            ctx.add_rule_conditional(action, syscall, std::slice::from_ref(condition))?;
        }
    } else {
        ctx.add_rule_conditional(action, syscall, conditions)?;
    }
    Ok(())
}

/// Whether two of the spec's conditions test the same argument (see [`add_rule`]).
fn same_arg_twice(args: &[LinuxSeccompArg]) -> bool {
    let mut seen = [false; SYSCALL_ARGS];
    args.iter().any(|arg| match seen.get_mut(arg.index()) {
        Some(seen) => std::mem::replace(seen, true),
        None => false,
    })
}

/// Maps a spec action (and its `errnoRet`) to libseccomp's.
fn scmp_action(
    action: LinuxSeccompAction,
    errno_ret: Option<u32>,
    context: &str,
) -> Result<ScmpAction, SeccompError> {
    let errno = match errno_ret {
        None => libc::EPERM as u16,
        Some(errno) => u16::try_from(errno).map_err(|_| SeccompError::ErrnoRetRange {
            context: context.to_owned(),
            errno,
        })?,
    };
    let no_errno = |scmp: ScmpAction| match errno_ret {
        Some(errno) => Err(SeccompError::ErrnoRetNotSupported {
            context: context.to_owned(),
            action,
            errno,
        }),
        None => Ok(scmp),
    };
    match action {
        LinuxSeccompAction::ScmpActErrno => Ok(ScmpAction::Errno(i32::from(errno))),
        LinuxSeccompAction::ScmpActTrace => Ok(ScmpAction::Trace(errno)),
        // SCMP_ACT_KILL predates KILL_PROCESS and always meant the thread.
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            no_errno(ScmpAction::KillThread)
        }
        LinuxSeccompAction::ScmpActKillProcess => no_errno(ScmpAction::KillProcess),
        LinuxSeccompAction::ScmpActTrap => no_errno(ScmpAction::Trap),
        LinuxSeccompAction::ScmpActNotify => no_errno(ScmpAction::Notify),
        LinuxSeccompAction::ScmpActLog => no_errno(ScmpAction::Log),
        LinuxSeccompAction::ScmpActAllow => no_errno(ScmpAction::Allow),
    }
}

/// Maps a spec architecture to libseccomp's token. Whether the installed libseccomp knows it is
/// only found out when it is added to a filter.
fn scmp_arch(arch: Arch) -> ScmpArch {
    match arch {
        Arch::ScmpArchNative => ScmpArch::Native,
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchArm => ScmpArch::Arm,
        Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
        Arch::ScmpArchMips => ScmpArch::Mips,
        Arch::ScmpArchMips64 => ScmpArch::Mips64,
        Arch::ScmpArchMips64n32 => ScmpArch::Mips64N32,
        Arch::ScmpArchMipsel => ScmpArch::Mipsel,
        Arch::ScmpArchMipsel64 => ScmpArch::Mipsel64,
        Arch::ScmpArchMipsel64n32 => ScmpArch::Mipsel64N32,
        Arch::ScmpArchPpc => ScmpArch::Ppc,
        Arch::ScmpArchPpc64 => ScmpArch::Ppc64,
        Arch::ScmpArchPpc64le => ScmpArch::Ppc64Le,
        Arch::ScmpArchS390 => ScmpArch::S390,
        Arch::ScmpArchS390x => ScmpArch::S390X,
        Arch::ScmpArchParisc => ScmpArch::Parisc,
        Arch::ScmpArchParisc64 => ScmpArch::Parisc64,
        Arch::ScmpArchRiscv64 => ScmpArch::Riscv64,
        Arch::ScmpArchLoongarch64 => ScmpArch::Loongarch64,
        Arch::ScmpArchM68k => ScmpArch::M68k,
        Arch::ScmpArchSh => ScmpArch::Sh,
        Arch::ScmpArchSheb => ScmpArch::Sheb,
    }
}

/// The `linux.seccomp` part of the features document, found out from the installed libseccomp:
/// an architecture or flag is listed only if a real filter context accepts it.
pub fn features() -> serde_json::Value {
    use oci_spec::runtime::LinuxSeccompOperator as Op;
    let name = |v: &dyn erased_name::Named| v.spec_name();
    let archs: Vec<String> = ALL_ARCHS
        .iter()
        .filter(|arch| {
            ScmpFilterContext::new(ScmpAction::Allow)
                .and_then(|mut ctx| ctx.add_arch(scmp_arch(**arch)).map(|_| ()))
                .is_ok()
        })
        .map(|a| name(a))
        .collect();
    let known_flags: Vec<String> = ALL_FLAGS.iter().map(|f| name(f)).collect();
    let supported_flags: Vec<String> = ALL_FLAGS
        .iter()
        .filter(|flag| {
            ScmpFilterContext::new(ScmpAction::Allow)
                .map_err(|_| ())
                .and_then(|mut ctx| set_flag(&mut ctx, **flag).map_err(|_| ()))
                .is_ok()
        })
        .map(|f| name(f))
        .collect();
    let operators: Vec<String> = [
        Op::ScmpCmpNe,
        Op::ScmpCmpLt,
        Op::ScmpCmpLe,
        Op::ScmpCmpEq,
        Op::ScmpCmpGe,
        Op::ScmpCmpGt,
        Op::ScmpCmpMaskedEq,
    ]
    .iter()
    .map(|o| name(o))
    .collect();
    serde_json::json!({
        "enabled": true,
        "actions": [
            "SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS",
            "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY", "SCMP_ACT_TRACE",
            "SCMP_ACT_TRAP"
        ],
        "operators": operators,
        "archs": archs,
        "knownFlags": known_flags,
        "supportedFlags": supported_flags,
    })
}

/// Every architecture the spec names.
const ALL_ARCHS: &[Arch] = &[
    Arch::ScmpArchX86,
    Arch::ScmpArchX86_64,
    Arch::ScmpArchX32,
    Arch::ScmpArchArm,
    Arch::ScmpArchAarch64,
    Arch::ScmpArchMips,
    Arch::ScmpArchMips64,
    Arch::ScmpArchMips64n32,
    Arch::ScmpArchMipsel,
    Arch::ScmpArchMipsel64,
    Arch::ScmpArchMipsel64n32,
    Arch::ScmpArchPpc,
    Arch::ScmpArchPpc64,
    Arch::ScmpArchPpc64le,
    Arch::ScmpArchS390,
    Arch::ScmpArchS390x,
    Arch::ScmpArchParisc,
    Arch::ScmpArchParisc64,
    Arch::ScmpArchRiscv64,
    Arch::ScmpArchLoongarch64,
    Arch::ScmpArchM68k,
    Arch::ScmpArchSh,
    Arch::ScmpArchSheb,
];

/// Every filter flag the spec names.
const ALL_FLAGS: &[LinuxSeccompFilterFlag] = &[
    LinuxSeccompFilterFlag::SeccompFilterFlagTsync,
    LinuxSeccompFilterFlag::SeccompFilterFlagLog,
    LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow,
    LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv,
];

mod erased_name {
    //! The spec's spelling of an enum value, taken from its serde form.
    pub trait Named {
        fn spec_name(&self) -> String;
    }
    impl<T: serde::Serialize> Named for T {
        fn spec_name(&self) -> String {
            serde_json::to_value(self)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default()
        }
    }
}

/// Sets the filter attribute behind a spec flag.
fn set_flag(ctx: &mut ScmpFilterContext, flag: LinuxSeccompFilterFlag) -> Result<(), SeccompError> {
    let result = match flag {
        // The runtime's init is meant to be single-threaded, but a stray thread must not escape.
        LinuxSeccompFilterFlag::SeccompFilterFlagTsync => ctx.set_ctl_tsync(true),
        LinuxSeccompFilterFlag::SeccompFilterFlagLog => ctx.set_ctl_log(true),
        LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => ctx.set_ctl_ssb(true),
        // libseccomp 2.6 or later; runc patches the BPF itself instead, we report it.
        LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => ctx.set_ctl_waitkill(true),
    };
    result
        .map(|_| ())
        .map_err(|source| SeccompError::Flag { flag, source })
}

/// Builds a libseccomp condition from a spec argument. For `SCMP_CMP_MASKED_EQ` the spec's
/// `value` is the mask and `valueTwo` the datum, as in runc and libseccomp-golang.
fn scmp_condition(arg: &LinuxSeccompArg, syscalls: &str) -> Result<ScmpArgCompare, SeccompError> {
    let index = arg.index();
    if index >= SYSCALL_ARGS {
        return Err(SeccompError::ArgIndex {
            syscall: syscalls.to_owned(),
            index,
        });
    }
    let value = arg.value();
    let (op, datum) = match arg.op() {
        LinuxSeccompOperator::ScmpCmpNe => (ScmpCompareOp::NotEqual, value),
        LinuxSeccompOperator::ScmpCmpLt => (ScmpCompareOp::Less, value),
        LinuxSeccompOperator::ScmpCmpLe => (ScmpCompareOp::LessOrEqual, value),
        LinuxSeccompOperator::ScmpCmpEq => (ScmpCompareOp::Equal, value),
        LinuxSeccompOperator::ScmpCmpGe => (ScmpCompareOp::GreaterEqual, value),
        LinuxSeccompOperator::ScmpCmpGt => (ScmpCompareOp::Greater, value),
        LinuxSeccompOperator::ScmpCmpMaskedEq => (
            ScmpCompareOp::MaskedEqual(value),
            arg.value_two().unwrap_or(0),
        ),
    };
    // index < 6, so the cast is lossless.
    Ok(ScmpArgCompare::new(index as u32, op, datum))
}

/// runtime-spec "containerProcessState", in runc's field order.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ContainerProcessState<'a> {
    oci_version: &'static str,
    fds: [&'static str; 1],
    pid: i64,
    #[serde(skip_serializing_if = "str::is_empty")]
    metadata: &'a str,
    state: serde_json::Value,
}

/// Sends the listener fd to the seccomp agent at `listener_path` (runtime-spec `listenerPath`):
/// one connection, one message holding the "containerProcessState" JSON (`ociVersion`, `fds`
/// `["seccompFd"]`, `pid`, `metadata` = `listenerMetadata` when not empty, `state`) with the fd in
/// `SCM_RIGHTS`, then the connection is closed. `state_json` is the container's state as
/// `refeng-runc state` prints it; its `pid` becomes the message's `pid`.
///
/// # Errors
/// [`SeccompError::InvalidState`] when `state_json` is not an object with an integer `pid`,
/// [`SeccompError::Connect`] when the agent's socket cannot be reached,
/// [`SeccompError::Send`] when the message cannot be sent whole (runtime-spec: "If sending to this
/// socket fails, the runtime MUST generate an error").
pub fn send_listener(
    fd: OwnedFd,
    listener_path: &Path,
    state_json: &[u8],
    metadata: &str,
) -> Result<(), SeccompError> {
    // Check the state before touching the agent's socket.
    let (message, pid) = listener_message(state_json, metadata)?;
    let stream = UnixStream::connect(listener_path).map_err(|source| SeccompError::Connect {
        path: listener_path.to_owned(),
        source,
    })?;
    send_listener_on(stream, listener_path, fd, pid, &message)
}

/// The containerProcessState message for the agent, and the pid it names.
fn listener_message(state_json: &[u8], metadata: &str) -> Result<(Vec<u8>, i64), SeccompError> {
    let state: serde_json::Value =
        serde_json::from_slice(state_json).map_err(|source| SeccompError::InvalidState {
            source: Some(source),
        })?;
    let pid = state
        .get("pid")
        .and_then(serde_json::Value::as_i64)
        .ok_or(SeccompError::InvalidState { source: None })?;
    let message = serde_json::to_vec(&ContainerProcessState {
        oci_version: CONTAINER_PROCESS_STATE_VERSION,
        fds: [SECCOMP_FD_NAME],
        pid,
        metadata,
        state,
    })
    .map_err(|source| SeccompError::InvalidState {
        source: Some(source),
    })?;
    Ok((message, pid))
}

/// Like [`send_listener`] on a stream connected beforehand: the container's init connects to
/// `listenerPath` while the host's paths are still visible (before pivot_root) and sends once
/// the filter is loaded.
///
/// # Errors
/// As [`send_listener`].
pub fn send_listener_connected(
    stream: UnixStream,
    listener_path: &Path,
    fd: OwnedFd,
    state_json: &[u8],
    metadata: &str,
) -> Result<(), SeccompError> {
    let (message, pid) = listener_message(state_json, metadata)?;
    send_listener_on(stream, listener_path, fd, pid, &message)
}

fn send_listener_on(
    mut stream: UnixStream,
    listener_path: &Path,
    fd: OwnedFd,
    pid: i64,
    message: &[u8],
) -> Result<(), SeccompError> {
    let send_error = |source: std::io::Error| SeccompError::Send {
        path: listener_path.to_owned(),
        source,
    };
    let fds = [fd.as_raw_fd()];
    let sent = loop {
        match sendmsg::<UnixAddr>(
            stream.as_raw_fd(),
            &[IoSlice::new(message)],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Err(Errno::EINTR) => continue,
            other => break other.map_err(|errno| send_error(errno.into()))?,
        }
    };
    // The fd travelled with the first byte; a stream socket may take the rest in pieces.
    stream
        .write_all(message.get(sent..).unwrap_or_default())
        .map_err(send_error)?;
    debug!(path = %listener_path.display(), pid, "seccomp listener fd sent");
    // Dropping `stream` closes the connection (runtime-spec: "it MUST be closed after sending")
    // and dropping `fd` closes our copy of the listener; the agent holds its own.
    drop(fd);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn libseccomp_2_6_or_later() -> bool {
        let version = libseccomp::ScmpVersion::current().expect("libseccomp version");
        (version.major, version.minor) >= (2, 6)
    }

    fn seccomp(json: &str) -> LinuxSeccomp {
        serde_json::from_str(json).expect("test seccomp JSON parses")
    }

    #[test]
    fn every_spec_arch_maps_to_the_libseccomp_token_of_the_same_name() {
        let pairs = [
            (Arch::ScmpArchNative, ScmpArch::Native),
            (Arch::ScmpArchX86, ScmpArch::X86),
            (Arch::ScmpArchX86_64, ScmpArch::X8664),
            (Arch::ScmpArchX32, ScmpArch::X32),
            (Arch::ScmpArchArm, ScmpArch::Arm),
            (Arch::ScmpArchAarch64, ScmpArch::Aarch64),
            (Arch::ScmpArchMips, ScmpArch::Mips),
            (Arch::ScmpArchMips64, ScmpArch::Mips64),
            (Arch::ScmpArchMips64n32, ScmpArch::Mips64N32),
            (Arch::ScmpArchMipsel, ScmpArch::Mipsel),
            (Arch::ScmpArchMipsel64, ScmpArch::Mipsel64),
            (Arch::ScmpArchMipsel64n32, ScmpArch::Mipsel64N32),
            (Arch::ScmpArchPpc, ScmpArch::Ppc),
            (Arch::ScmpArchPpc64, ScmpArch::Ppc64),
            (Arch::ScmpArchPpc64le, ScmpArch::Ppc64Le),
            (Arch::ScmpArchS390, ScmpArch::S390),
            (Arch::ScmpArchS390x, ScmpArch::S390X),
            (Arch::ScmpArchParisc, ScmpArch::Parisc),
            (Arch::ScmpArchParisc64, ScmpArch::Parisc64),
            (Arch::ScmpArchRiscv64, ScmpArch::Riscv64),
            (Arch::ScmpArchLoongarch64, ScmpArch::Loongarch64),
            (Arch::ScmpArchM68k, ScmpArch::M68k),
            (Arch::ScmpArchSh, ScmpArch::Sh),
            (Arch::ScmpArchSheb, ScmpArch::Sheb),
        ];
        for (spec, scmp) in pairs {
            assert_eq!(scmp_arch(spec), scmp, "{spec}");
            // Both sides spell the token the same way ("SCMP_ARCH_X86_64" parses to X8664).
            let parsed: ScmpArch = spec
                .to_string()
                .parse()
                .expect("libseccomp parses the spec name");
            assert_eq!(parsed, scmp, "{spec}");
        }
    }

    #[test]
    fn actions_map_like_runc_with_eperm_as_the_default_errno() {
        let eperm = libc::EPERM;
        let cases = [
            (
                LinuxSeccompAction::ScmpActKill,
                None,
                ScmpAction::KillThread,
            ),
            (
                LinuxSeccompAction::ScmpActKillThread,
                None,
                ScmpAction::KillThread,
            ),
            (
                LinuxSeccompAction::ScmpActKillProcess,
                None,
                ScmpAction::KillProcess,
            ),
            (LinuxSeccompAction::ScmpActTrap, None, ScmpAction::Trap),
            (
                LinuxSeccompAction::ScmpActErrno,
                None,
                ScmpAction::Errno(eperm),
            ),
            (
                LinuxSeccompAction::ScmpActErrno,
                Some(38),
                ScmpAction::Errno(38),
            ),
            (
                LinuxSeccompAction::ScmpActTrace,
                None,
                ScmpAction::Trace(eperm as u16),
            ),
            (
                LinuxSeccompAction::ScmpActTrace,
                Some(7),
                ScmpAction::Trace(7),
            ),
            (LinuxSeccompAction::ScmpActAllow, None, ScmpAction::Allow),
            (LinuxSeccompAction::ScmpActLog, None, ScmpAction::Log),
            (LinuxSeccompAction::ScmpActNotify, None, ScmpAction::Notify),
        ];
        for (spec, errno, scmp) in cases {
            assert_eq!(
                scmp_action(spec, errno, "t").expect("maps"),
                scmp,
                "{spec} {errno:?}"
            );
        }
    }

    #[test]
    fn errno_ret_on_an_action_without_errno_is_refused() {
        for action in [
            LinuxSeccompAction::ScmpActKill,
            LinuxSeccompAction::ScmpActKillThread,
            LinuxSeccompAction::ScmpActKillProcess,
            LinuxSeccompAction::ScmpActTrap,
            LinuxSeccompAction::ScmpActNotify,
            LinuxSeccompAction::ScmpActLog,
            LinuxSeccompAction::ScmpActAllow,
        ] {
            let err = scmp_action(action, Some(1), "mkdir").expect_err("refused");
            assert!(
                matches!(err, SeccompError::ErrnoRetNotSupported { action: a, errno: 1, .. } if a == action),
                "{err}"
            );
            assert_eq!(
                err.to_string(),
                format!("mkdir: errnoRet 1 is set but action {action} returns no errno")
            );
        }
        let err = scmp_action(LinuxSeccompAction::ScmpActErrno, Some(70_000), "mkdir")
            .expect_err("refused");
        assert!(
            matches!(err, SeccompError::ErrnoRetRange { errno: 70_000, .. }),
            "{err}"
        );
    }

    #[test]
    fn operators_map_with_value_as_mask_and_value_two_as_datum_for_masked_eq() {
        let cases = [
            ("SCMP_CMP_NE", ScmpCompareOp::NotEqual, 5),
            ("SCMP_CMP_LT", ScmpCompareOp::Less, 5),
            ("SCMP_CMP_LE", ScmpCompareOp::LessOrEqual, 5),
            ("SCMP_CMP_EQ", ScmpCompareOp::Equal, 5),
            ("SCMP_CMP_GE", ScmpCompareOp::GreaterEqual, 5),
            ("SCMP_CMP_GT", ScmpCompareOp::Greater, 5),
            ("SCMP_CMP_MASKED_EQ", ScmpCompareOp::MaskedEqual(5), 9),
        ];
        for (op, scmp_op, datum) in cases {
            let arg: LinuxSeccompArg = serde_json::from_str(&format!(
                r#"{{"index": 2, "value": 5, "valueTwo": 9, "op": "{op}"}}"#
            ))
            .expect("arg parses");
            let condition = scmp_condition(&arg, "t").expect("maps");
            assert_eq!(condition, ScmpArgCompare::new(2, scmp_op, datum), "{op}");
        }
        let arg: LinuxSeccompArg =
            serde_json::from_str(r#"{"index": 6, "value": 0, "op": "SCMP_CMP_EQ"}"#)
                .expect("parses");
        let err = scmp_condition(&arg, "clone").expect_err("index 6 refused");
        assert!(
            matches!(err, SeccompError::ArgIndex { index: 6, ref syscall } if syscall == "clone")
        );
    }

    #[test]
    fn only_two_conditions_on_one_argument_split_the_rule() {
        let args = |json: &str| -> Vec<LinuxSeccompArg> {
            serde_json::from_str(json).expect("args parse")
        };
        assert!(!same_arg_twice(&args(r#"[]"#)));
        assert!(!same_arg_twice(&args(
            r#"[{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}, {"index": 1, "value": 2, "op": "SCMP_CMP_EQ"}]"#
        )));
        assert!(same_arg_twice(&args(
            r#"[{"index": 1, "value": 1, "op": "SCMP_CMP_GE"}, {"index": 1, "value": 9, "op": "SCMP_CMP_LE"}]"#
        )));
    }

    #[test]
    fn flags_libseccomp_supports_are_set_and_wait_killable_names_itself_when_not() {
        let filter = compile(&seccomp(
            r#"{"defaultAction": "SCMP_ACT_ALLOW",
                "flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"]}"#,
        ))
        .expect("compiles");
        assert!(filter.ctx.get_ctl_tsync().expect("tsync"));
        assert!(filter.ctx.get_ctl_log().expect("log"));
        assert!(filter.ctx.get_ctl_ssb().expect("ssb"));
        assert!(
            !filter.ctx.get_ctl_nnp().expect("nnp"),
            "the runtime owns no_new_privs"
        );

        let wait_killable = compile(&seccomp(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]}"#,
        ));
        // libseccomp 2.6 has the attribute; 2.5 (Debian 12) does not and must say which flag.
        assert_eq!(wait_killable.is_ok(), libseccomp_2_6_or_later());
        if let Err(err) = wait_killable {
            assert!(matches!(
                err,
                SeccompError::Flag {
                    flag: LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv,
                    ..
                }
            ));
            assert_eq!(
                err.to_string(),
                "seccomp flag SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV is not supported by the installed libseccomp"
            );
        }
    }

    #[test]
    fn architectures_are_added_and_unknown_ones_are_named() {
        let filter = compile(&seccomp(
            r#"{"defaultAction": "SCMP_ACT_ALLOW",
                "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]}"#,
        ))
        .expect("compiles");
        for arch in [
            ScmpArch::X8664,
            ScmpArch::X86,
            ScmpArch::X32,
            ScmpArch::Aarch64,
            ScmpArch::Arm,
        ] {
            assert!(
                filter.ctx.is_arch_present(arch).expect("queries"),
                "{arch:?}"
            );
        }
        // LoongArch arrived in libseccomp 2.6; on older ones the error must name it.
        let loongarch = compile(&seccomp(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_LOONGARCH64"]}"#,
        ));
        assert_eq!(loongarch.is_ok(), libseccomp_2_6_or_later());
        if let Err(err) = loongarch {
            assert_eq!(
                err.to_string(),
                "architecture SCMP_ARCH_LOONGARCH64 is not supported by the installed libseccomp"
            );
        }
    }

    #[test]
    fn notify_is_refused_as_default_on_write_and_without_listener() {
        let err =
            compile(&seccomp(r#"{"defaultAction": "SCMP_ACT_NOTIFY"}"#)).expect_err("refused");
        assert!(matches!(err, SeccompError::NotifyAsDefault));
        let err = compile(&seccomp(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock",
                "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_NOTIFY"}]}"#,
        ))
        .expect_err("refused");
        assert!(matches!(err, SeccompError::NotifyOnWrite));
        let err = compile(&seccomp(
            r#"{"defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}"#,
        ))
        .expect_err("refused");
        assert!(matches!(err, SeccompError::NotifyWithoutListener));
        let filter = compile(&seccomp(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock",
                "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}"#,
        ))
        .expect("compiles");
        assert!(filter.uses_notify());
    }

    #[test]
    fn unknown_syscalls_and_rules_equal_to_the_default_are_skipped() {
        let filter = compile(&seccomp(
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "listenerPath": "/run/agent.sock",
                "syscalls": [
                  {"names": ["refeng_no_such_syscall", "getpid"], "action": "SCMP_ACT_ALLOW"},
                  {"names": ["refeng_no_such_syscall"], "action": "SCMP_ACT_NOTIFY"},
                  {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"},
                  {"names": ["rmdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}
                ]}"#,
        ))
        .expect("unknown names and redundant rules do not fail the filter");
        // The only notify rule named nothing libseccomp knows, so no listener fd will come.
        assert!(!filter.uses_notify());
    }

    #[test]
    fn errno_ret_on_default_allow_is_refused_naming_default_action() {
        let err = compile(&seccomp(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": 1}"#,
        ))
        .expect_err("refused");
        assert_eq!(
            err.to_string(),
            "defaultAction: errnoRet 1 is set but action SCMP_ACT_ALLOW returns no errno"
        );
    }

    #[test]
    fn send_listener_refuses_a_state_without_pid_before_connecting() {
        let (fd, _) = nix::unistd::pipe().expect("pipe");
        let err = send_listener(
            fd,
            Path::new("/nonexistent/agent.sock"),
            br#"{"id": "c1"}"#,
            "",
        )
        .expect_err("refused");
        assert!(
            matches!(err, SeccompError::InvalidState { source: None }),
            "{err}"
        );
    }
}
