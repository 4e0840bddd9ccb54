//! Seccomp for refengd's containers: Docker's default profile as refengd's own data, the docker
//! profile format a user sends with `--security-opt seccomp=<file>`, and the one renderer that
//! fits either to a container's effective capabilities, the host's architecture and kernel, as
//! dockerd's `setupSeccomp` (moby `profiles/seccomp`) does. Pure: the host comes in [`Target`].

use oci_spec::runtime::{Arch, LinuxSeccompAction, LinuxSeccompOperator};
use serde::Deserialize;
use serde_json::{json, Value};

/// A docker seccomp profile before it is fitted to one container: conditions by capability,
/// architecture and kernel are still open.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// What a syscall no rule names gets.
    pub default_action: LinuxSeccompAction,
    /// The errno of an `SCMP_ACT_ERRNO` default.
    pub default_errno_ret: Option<u32>,
    /// Which architectures the filter covers.
    pub arches: Arches,
    /// `seccomp(2)` filter flags.
    pub flags: Vec<String>,
    /// The rules, in order.
    pub rules: Vec<Rule>,
}

/// The architectures of a profile.
#[derive(Debug, Clone, PartialEq)]
pub enum Arches {
    /// `archMap`: a native architecture and the ones its kernel also runs; only the host's
    /// entry is kept.
    Map(Vec<(Arch, Vec<Arch>)>),
    /// `architectures`: taken as they are.
    Listed(Vec<Arch>),
}

/// One rule: syscall names, what they get, and when the rule applies.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// The syscalls.
    pub names: Vec<String>,
    /// What they get.
    pub action: LinuxSeccompAction,
    /// The errno of an `SCMP_ACT_ERRNO` action.
    pub errno_ret: Option<u32>,
    /// Argument comparisons, all of which must hold.
    pub args: Vec<ArgCheck>,
    /// The rule applies only when all of this holds.
    pub includes: Filter,
    /// The rule is dropped when any of this holds.
    pub excludes: Filter,
}

/// One comparison of a syscall argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArgCheck {
    /// Which argument (0-based).
    pub index: u32,
    /// The value compared with (the mask for `SCMP_CMP_MASKED_EQ`).
    pub value: u64,
    /// The second value (what the masked argument must equal).
    pub value_two: u64,
    /// The comparison.
    pub op: LinuxSeccompOperator,
}

/// A condition on the container and host (docker's `includes`/`excludes`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Capabilities (`CAP_SYS_ADMIN`).
    pub caps: Vec<String>,
    /// Architectures by Go's names (`amd64`, `arm64`, `x32`).
    pub arches: Vec<String>,
    /// A kernel version (major, minor).
    pub min_kernel: Option<(u32, u32)>,
}

/// What a profile is fitted to.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// The container's effective capabilities (defaults, `CapAdd`, `CapDrop`).
    pub caps: &'a [String],
    /// The host architecture by Go's name (`amd64`).
    pub go_arch: &'a str,
    /// The running kernel (major, minor); `None` when it cannot be read, which fails every
    /// `minKernel` include and matches no `minKernel` exclude.
    pub kernel: Option<(u32, u32)>,
}

/// A profile that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    /// Decoding seccomp profile failed: {0}
    #[error("Decoding seccomp profile failed: {0}")]
    Decode(String),
    /// both architectures and archMap
    #[error("both 'architectures' and 'archMap' are specified in the seccomp profile, use either 'architectures' or 'archMap'")]
    BothArchFields,
    /// listenerPath
    #[error("seccomp profile field \"listenerPath\" is not supported by refengd")]
    Listener,
    /// name and names
    #[error(
        "seccomp profile: 'name' and 'names' were specified in the same rule, use only 'names'"
    )]
    NameAndNames,
    /// a rule naming no syscall
    #[error("seccomp profile: a rule names no syscall")]
    NoNames,
    /// a bad minKernel
    #[error("seccomp profile: invalid minKernel {0:?} (want MAJOR.MINOR)")]
    MinKernel(String),
}

/// Go's architecture name to libseccomp's.
#[must_use]
pub fn native_arch(go_arch: &str) -> Option<Arch> {
    Some(match go_arch {
        "amd64" => Arch::ScmpArchX86_64,
        "386" => Arch::ScmpArchX86,
        "arm64" => Arch::ScmpArchAarch64,
        "arm" => Arch::ScmpArchArm,
        "mips64" => Arch::ScmpArchMips64,
        "mips64le" => Arch::ScmpArchMipsel64,
        "mips" => Arch::ScmpArchMips,
        "mipsle" => Arch::ScmpArchMipsel,
        "ppc64le" => Arch::ScmpArchPpc64le,
        "s390x" => Arch::ScmpArchS390x,
        "riscv64" => Arch::ScmpArchRiscv64,
        _ => return None,
    })
}

/// `6.1.0-18-amd64` to (6, 1).
#[must_use]
pub fn kernel_release(release: &str) -> Option<(u32, u32)> {
    let mut it = release.split(['.', '-', '+']);
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some((major, minor))
}

fn to_json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// Fits a profile to one container: the host's architectures, the rules whose conditions hold,
/// as the OCI `linux.seccomp` object (dockerd's `setupSeccomp`).
#[must_use]
pub fn render(profile: &Profile, target: &Target<'_>) -> Value {
    let arches: Vec<Arch> = match &profile.arches {
        Arches::Listed(a) => a.clone(),
        Arches::Map(map) => {
            let native = native_arch(target.go_arch);
            map.iter()
                .filter(|(a, _)| Some(*a) == native)
                .flat_map(|(a, subs)| std::iter::once(*a).chain(subs.iter().copied()))
                .collect()
        }
    };
    let kernel_at_least = |min: (u32, u32)| target.kernel.is_some_and(|k| k >= min);
    let has = |c: &String| target.caps.contains(c);
    let arch_is = |a: &String| a == target.go_arch;
    let mut syscalls = Vec::new();
    for rule in &profile.rules {
        let ex = &rule.excludes;
        let inc = &rule.includes;
        // An exclude drops the rule when any one of its conditions holds; an include keeps it
        // only when all of them hold (moby `seccomp_linux.go`).
        if ex.arches.iter().any(arch_is)
            || ex.caps.iter().any(has)
            || ex.min_kernel.is_some_and(kernel_at_least)
        {
            continue;
        }
        if (!inc.arches.is_empty() && !inc.arches.iter().any(arch_is))
            || !inc.caps.iter().all(has)
            || inc.min_kernel.is_some_and(|m| !kernel_at_least(m))
        {
            continue;
        }
        let mut out = json!({"names": rule.names, "action": to_json(&rule.action)});
        if let Some(e) = rule.errno_ret {
            out["errnoRet"] = json!(e);
        }
        if !rule.args.is_empty() {
            out["args"] = rule
                .args
                .iter()
                .map(|a| {
                    let mut v = json!({"index": a.index, "value": a.value, "op": to_json(&a.op)});
                    if a.value_two != 0 {
                        v["valueTwo"] = json!(a.value_two);
                    }
                    v
                })
                .collect();
        }
        syscalls.push(out);
    }
    let mut out = json!({"defaultAction": to_json(&profile.default_action)});
    if let Some(e) = profile.default_errno_ret {
        out["defaultErrnoRet"] = json!(e);
    }
    if !arches.is_empty() {
        out["architectures"] = arches.iter().map(to_json).collect();
    }
    if !profile.flags.is_empty() {
        out["flags"] = json!(profile.flags);
    }
    if !syscalls.is_empty() {
        out["syscalls"] = json!(syscalls);
    }
    out
}

// ---- the docker profile format ------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ProfileJson {
    default_action: LinuxSeccompAction,
    default_errno_ret: Option<u32>,
    architectures: Option<Vec<Arch>>,
    arch_map: Option<Vec<ArchJson>>,
    syscalls: Option<Vec<SyscallJson>>,
    flags: Option<Vec<String>>,
    listener_path: Option<String>,
    listener_metadata: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ArchJson {
    architecture: Arch,
    sub_architectures: Option<Vec<Arch>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SyscallJson {
    name: Option<String>,
    names: Option<Vec<String>>,
    action: LinuxSeccompAction,
    errno_ret: Option<u32>,
    args: Option<Vec<ArgJson>>,
    // A note for the reader of the profile; it has no effect.
    #[allow(dead_code)]
    comment: Option<String>,
    includes: Option<FilterJson>,
    excludes: Option<FilterJson>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ArgJson {
    index: u32,
    value: u64,
    value_two: Option<u64>,
    op: LinuxSeccompOperator,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FilterJson {
    caps: Option<Vec<String>>,
    arches: Option<Vec<String>>,
    min_kernel: Option<String>,
}

impl FilterJson {
    fn into_filter(self) -> Result<Filter, ProfileError> {
        let min_kernel = match self.min_kernel.filter(|k| !k.is_empty()) {
            Some(k) => Some(kernel_release(&k).ok_or(ProfileError::MinKernel(k))?),
            None => None,
        };
        Ok(Filter {
            caps: self.caps.unwrap_or_default(),
            arches: self.arches.unwrap_or_default(),
            min_kernel,
        })
    }
}

/// Reads a docker seccomp profile (what the CLI sends for `--security-opt seccomp=<file>`).
///
/// # Errors
/// [`ProfileError`] for text that is not a profile, a field refengd does not know (named), a
/// notify listener, or both `architectures` and `archMap`.
pub fn parse(text: &str) -> Result<Profile, ProfileError> {
    let p: ProfileJson =
        serde_json::from_str(text).map_err(|e| ProfileError::Decode(e.to_string()))?;
    if p.listener_path.as_deref().is_some_and(|l| !l.is_empty())
        || p.listener_metadata
            .as_deref()
            .is_some_and(|l| !l.is_empty())
    {
        return Err(ProfileError::Listener);
    }
    let arches = match (p.architectures, p.arch_map) {
        (Some(a), Some(m)) if !a.is_empty() && !m.is_empty() => {
            return Err(ProfileError::BothArchFields)
        }
        (_, Some(m)) if !m.is_empty() => Arches::Map(
            m.into_iter()
                .map(|a| (a.architecture, a.sub_architectures.unwrap_or_default()))
                .collect(),
        ),
        (a, _) => Arches::Listed(a.unwrap_or_default()),
    };
    let mut rules = Vec::new();
    for s in p.syscalls.unwrap_or_default() {
        let names = match (s.name.filter(|n| !n.is_empty()), s.names) {
            (Some(_), Some(n)) if !n.is_empty() => return Err(ProfileError::NameAndNames),
            (Some(n), _) => vec![n],
            (None, Some(n)) if !n.is_empty() => n,
            (None, _) => return Err(ProfileError::NoNames),
        };
        rules.push(Rule {
            names,
            action: s.action,
            errno_ret: s.errno_ret,
            args: s
                .args
                .unwrap_or_default()
                .into_iter()
                .map(|a| ArgCheck {
                    index: a.index,
                    value: a.value,
                    value_two: a.value_two.unwrap_or(0),
                    op: a.op,
                })
                .collect(),
            includes: s
                .includes
                .map(FilterJson::into_filter)
                .transpose()?
                .unwrap_or_default(),
            excludes: s
                .excludes
                .map(FilterJson::into_filter)
                .transpose()?
                .unwrap_or_default(),
        });
    }
    Ok(Profile {
        default_action: p.default_action,
        default_errno_ret: p.default_errno_ret,
        arches,
        flags: p.flags.unwrap_or_default(),
        rules,
    })
}

// ---- Docker's default profile -------------------------------------------------------------------

/// When a group of the default profile applies.
#[derive(Debug, Clone, Copy)]
struct When {
    /// Only with this capability.
    with_cap: Option<&'static str>,
    /// Only without this capability.
    without_cap: Option<&'static str>,
    /// Only on these architectures (Go's names).
    on: &'static [&'static str],
    /// Never on these.
    not_on: &'static [&'static str],
    /// Only from this kernel on.
    min_kernel: Option<(u32, u32)>,
}

const ALWAYS: When = When {
    with_cap: None,
    without_cap: None,
    on: &[],
    not_on: &[],
    min_kernel: None,
};

const fn with_cap(cap: &'static str) -> When {
    When {
        with_cap: Some(cap),
        ..ALWAYS
    }
}

const fn on(arches: &'static [&'static str]) -> When {
    When {
        on: arches,
        ..ALWAYS
    }
}

/// What a group's syscalls get.
#[derive(Debug, Clone, Copy)]
enum Verdict {
    Allow,
    Errno(u32),
}

/// A group of the default profile.
#[derive(Debug, Clone, Copy)]
struct Group {
    names: &'static [&'static str],
    verdict: Verdict,
    /// At most one argument test in this profile.
    arg: Option<ArgCheck>,
    when: When,
}

const fn allow(names: &'static [&'static str], when: When) -> Group {
    Group {
        names,
        verdict: Verdict::Allow,
        arg: None,
        when,
    }
}

/// `names` allowed when argument `index` compares with `value` by `op`.
const fn allow_if(
    names: &'static [&'static str],
    index: u32,
    op: LinuxSeccompOperator,
    value: u64,
    value_two: u64,
    when: When,
) -> Group {
    Group {
        names,
        verdict: Verdict::Allow,
        arg: Some(ArgCheck {
            index,
            value,
            value_two,
            op,
        }),
        when,
    }
}

use LinuxSeccompOperator::ScmpCmpMaskedEq as MASKED_EQ;
use LinuxSeccompOperator::{ScmpCmpEq as EQ, ScmpCmpGt as GT, ScmpCmpLt as LT};

/// The namespace flags of clone(2): creating a namespace takes CAP_SYS_ADMIN.
const CLONE_NAMESPACE_FLAGS: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWCGROUP) as u64;

/// `socket(2)` families the profile refuses: AF_ALG (38) opens the kernel's crypto API, AF_VSOCK
/// (40) reaches the host's virtual machines across network namespaces.
const AF_ALG: u64 = 38;
const AF_VSOCK: u64 = 40;

/// personality(2) values a program may set: PER_LINUX, UNAME26, ADDR_NO_RANDOMIZE, both, and
/// the 0xffffffff query.
const PERSONALITIES: [u64; 5] = [0x0, 0x0008, 0x20000, 0x20008, 0xffff_ffff];

/// The syscalls every container may make (no capability, argument or architecture condition).
const BASE: &[&str] = &[
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "bind",
    "brk",
    "cachestat",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futex",
    "futex_requeue",
    "futex_time64",
    "futex_wait",
    "futex_waitv",
    "futex_wake",
    "futimesat",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "get_robust_list",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "get_thread_area",
    "gettid",
    "gettimeofday",
    "getuid",
    "getuid32",
    "getxattr",
    "getxattrat",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "ioctl",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "ioprio_get",
    "ioprio_set",
    "io_setup",
    "io_submit",
    "ipc",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listmount",
    "listxattr",
    "listxattrat",
    "llistxattr",
    "_llseek",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "madvise",
    "map_shadow_stack",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "mremap",
    "mseal",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "name_to_handle_at",
    "nanosleep",
    "newfstatat",
    "_newselect",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "ppoll_time64",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "pselect6",
    "pselect6_time64",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "removexattrat",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "riscv_hwprobe",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "send",
    "sendfile",
    "sendfile64",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "set_robust_list",
    "setsid",
    "setsockopt",
    "set_thread_area",
    "set_tid_address",
    "setuid",
    "setuid32",
    "setxattr",
    "setxattrat",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "sigprocmask",
    "sigreturn",
    "socketcall",
    "socketpair",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statmount",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    "times",
    "tkill",
    "truncate",
    "truncate64",
    "ugetrlimit",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "uretprobe",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "waitpid",
    "write",
    "writev",
];

/// The groups, in the order dockerd lists them in `linux.seccomp`.
const GROUPS: &[Group] = &[
    // Everything an ordinary program needs.
    allow(BASE, ALWAYS),
    // Since 4.8 ptrace cannot get around seccomp, so tracing one's own children is safe.
    allow(
        &["process_vm_readv", "process_vm_writev", "ptrace"],
        When {
            min_kernel: Some((4, 8)),
            ..ALWAYS
        },
    ),
    // socket(2) for every family below AF_ALG, between AF_ALG and AF_VSOCK, and above
    // AF_VSOCK (one comparison per rule: runc ORs several comparisons of one argument).
    allow_if(&["socket"], 0, LT, AF_ALG, 0, ALWAYS),
    allow_if(&["socket"], 0, EQ, AF_ALG + 1, 0, ALWAYS),
    allow_if(&["socket"], 0, GT, AF_VSOCK, 0, ALWAYS),
    // personality(2) only for the harmless personas (others weaken ASLR or emulate old ABIs).
    allow_if(&["personality"], 0, EQ, PERSONALITIES[0], 0, ALWAYS),
    allow_if(&["personality"], 0, EQ, PERSONALITIES[1], 0, ALWAYS),
    allow_if(&["personality"], 0, EQ, PERSONALITIES[2], 0, ALWAYS),
    allow_if(&["personality"], 0, EQ, PERSONALITIES[3], 0, ALWAYS),
    allow_if(&["personality"], 0, EQ, PERSONALITIES[4], 0, ALWAYS),
    // Architecture-specific syscalls of ppc64le.
    allow(&["sync_file_range2", "swapcontext"], on(&["ppc64le"])),
    // Architecture-specific syscalls of arm and arm64.
    allow(
        &[
            "arm_fadvise64_64",
            "arm_sync_file_range",
            "sync_file_range2",
            "breakpoint",
            "cacheflush",
            "set_tls",
        ],
        on(&["arm", "arm64"]),
    ),
    // Thread-local storage setup on x86-64 and x32.
    allow(&["arch_prctl"], on(&["amd64", "x32"])),
    // Segment descriptors (wine, old threading libraries) on the x86 family.
    allow(&["modify_ldt"], on(&["amd64", "x32", "x86"])),
    // Architecture-specific syscalls of s390.
    allow(
        &[
            "s390_pci_mmio_read",
            "s390_pci_mmio_write",
            "s390_runtime_instr",
        ],
        on(&["s390", "s390x"]),
    ),
    // Instruction cache flush of riscv64.
    allow(&["riscv_flush_icache"], on(&["riscv64"])),
    // Opening by file handle bypasses path checks: only with CAP_DAC_READ_SEARCH.
    allow(&["open_by_handle_at"], with_cap("CAP_DAC_READ_SEARCH")),
    // Mounts, namespaces, host names, BPF, perf and the kernel log: CAP_SYS_ADMIN's domain.
    allow(
        &[
            "bpf",
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "lsm_get_self_attr",
            "lsm_list_modules",
            "lsm_set_self_attr",
            "mount",
            "mount_setattr",
            "move_mount",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ],
        with_cap("CAP_SYS_ADMIN"),
    ),
    // Without CAP_SYS_ADMIN, clone(2) may make threads and processes but no namespace.
    allow_if(
        &["clone"],
        0,
        MASKED_EQ,
        CLONE_NAMESPACE_FLAGS,
        0,
        When {
            without_cap: Some("CAP_SYS_ADMIN"),
            not_on: &["s390", "s390x"],
            ..ALWAYS
        },
    ),
    // The same on s390, whose clone(2) takes the flags second.
    allow_if(
        &["clone"],
        1,
        MASKED_EQ,
        CLONE_NAMESPACE_FLAGS,
        0,
        When {
            without_cap: Some("CAP_SYS_ADMIN"),
            on: &["s390", "s390x"],
            ..ALWAYS
        },
    ),
    // clone3(2) passes its flags in memory seccomp cannot read: ENOSYS makes libc fall back to
    // clone(2), which the rule above checks.
    Group {
        names: &["clone3"],
        verdict: Verdict::Errno(libc::ENOSYS as u32),
        arg: None,
        when: When {
            without_cap: Some("CAP_SYS_ADMIN"),
            ..ALWAYS
        },
    },
    // Rebooting (the container's PID namespace) with CAP_SYS_BOOT.
    allow(&["reboot"], with_cap("CAP_SYS_BOOT")),
    // chroot(2) with CAP_SYS_CHROOT (a default capability).
    allow(&["chroot"], with_cap("CAP_SYS_CHROOT")),
    // Kernel modules with CAP_SYS_MODULE.
    allow(
        &["delete_module", "init_module", "finit_module"],
        with_cap("CAP_SYS_MODULE"),
    ),
    // Process accounting with CAP_SYS_PACCT.
    allow(&["acct"], with_cap("CAP_SYS_PACCT")),
    // Inspecting other processes with CAP_SYS_PTRACE.
    allow(
        &[
            "kcmp",
            "pidfd_getfd",
            "process_madvise",
            "process_vm_readv",
            "process_vm_writev",
            "ptrace",
        ],
        with_cap("CAP_SYS_PTRACE"),
    ),
    // I/O port access with CAP_SYS_RAWIO.
    allow(&["iopl", "ioperm"], with_cap("CAP_SYS_RAWIO")),
    // Setting the (host's, not namespaced) clock with CAP_SYS_TIME.
    allow(
        &["settimeofday", "stime", "clock_settime", "clock_settime64"],
        with_cap("CAP_SYS_TIME"),
    ),
    // Hanging up the terminal with CAP_SYS_TTY_CONFIG.
    allow(&["vhangup"], with_cap("CAP_SYS_TTY_CONFIG")),
    // NUMA memory policy with CAP_SYS_NICE.
    allow(
        &[
            "get_mempolicy",
            "mbind",
            "set_mempolicy",
            "set_mempolicy_home_node",
        ],
        with_cap("CAP_SYS_NICE"),
    ),
    // The kernel log with CAP_SYSLOG.
    allow(&["syslog"], with_cap("CAP_SYSLOG")),
    // BPF programs with CAP_BPF.
    allow(&["bpf"], with_cap("CAP_BPF")),
    // Performance monitoring with CAP_PERFMON.
    allow(&["perf_event_open"], with_cap("CAP_PERFMON")),
];

/// The `archMap` of the default profile: each native architecture with the ones its kernel
/// also runs (x86-64 runs x86 and x32 binaries).
const ARCH_MAP: &[(Arch, &[Arch])] = &[
    (
        Arch::ScmpArchX86_64,
        &[Arch::ScmpArchX86, Arch::ScmpArchX32],
    ),
    (Arch::ScmpArchAarch64, &[Arch::ScmpArchArm]),
    (
        Arch::ScmpArchMips64,
        &[Arch::ScmpArchMips, Arch::ScmpArchMips64n32],
    ),
    (
        Arch::ScmpArchMips64n32,
        &[Arch::ScmpArchMips, Arch::ScmpArchMips64],
    ),
    (
        Arch::ScmpArchMipsel64,
        &[Arch::ScmpArchMipsel, Arch::ScmpArchMipsel64n32],
    ),
    (
        Arch::ScmpArchMipsel64n32,
        &[Arch::ScmpArchMipsel, Arch::ScmpArchMipsel64],
    ),
    (Arch::ScmpArchS390x, &[Arch::ScmpArchS390]),
    (Arch::ScmpArchRiscv64, &[]),
];

fn owned(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

/// Docker's default profile (moby `profiles/seccomp`): what refengd applies to a container that
/// is not privileged and names no profile of its own. Its default is EPERM.
#[must_use]
pub fn builtin() -> Profile {
    let rules = GROUPS
        .iter()
        .map(|g| {
            let (action, errno_ret) = match g.verdict {
                Verdict::Allow => (LinuxSeccompAction::ScmpActAllow, None),
                Verdict::Errno(e) => (LinuxSeccompAction::ScmpActErrno, Some(e)),
            };
            Rule {
                names: owned(g.names),
                action,
                errno_ret,
                args: g.arg.into_iter().collect(),
                includes: Filter {
                    caps: g.when.with_cap.into_iter().map(str::to_owned).collect(),
                    arches: owned(g.when.on),
                    min_kernel: g.when.min_kernel,
                },
                excludes: Filter {
                    caps: g.when.without_cap.into_iter().map(str::to_owned).collect(),
                    arches: owned(g.when.not_on),
                    min_kernel: None,
                },
            }
        })
        .collect();
    Profile {
        default_action: LinuxSeccompAction::ScmpActErrno,
        default_errno_ret: Some(libc::EPERM as u32),
        arches: Arches::Map(
            ARCH_MAP
                .iter()
                .map(|(a, subs)| (*a, subs.to_vec()))
                .collect(),
        ),
        flags: Vec::new(),
        rules,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(extra: &[&str], without: &[&str]) -> Vec<String> {
        crate::engine::containers::spec::DEFAULT_CAPS
            .iter()
            .chain(extra)
            .filter(|c| !without.contains(c))
            .map(|c| (*c).to_owned())
            .collect()
    }

    fn rendered(caps: &[String], go_arch: &str) -> Value {
        render(
            &builtin(),
            &Target {
                caps,
                go_arch,
                kernel: Some((6, 1)),
            },
        )
    }

    /// Every (name, action, errno, args) the rendered profile allows or answers.
    fn entries(v: &Value) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        for r in v["syscalls"].as_array().into_iter().flatten() {
            for n in r["names"].as_array().into_iter().flatten() {
                let mut rest = r.clone();
                rest.as_object_mut().unwrap().remove("names");
                out.push((n.as_str().unwrap().to_owned(), rest));
            }
        }
        out
    }

    fn allowed_plainly(v: &Value, name: &str) -> bool {
        entries(v)
            .iter()
            .any(|(n, r)| n == name && r == &json!({"action": "SCMP_ACT_ALLOW"}))
    }

    #[test]
    fn defaults_on_amd64_cover_x86_and_x32_and_refuse_namespaces() {
        let v = rendered(&caps(&[], &[]), "amd64");
        assert_eq!(v["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(v["defaultErrnoRet"], 1);
        assert_eq!(
            v["architectures"],
            json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"])
        );
        for name in [
            "read",
            "execve",
            "ptrace",
            "arch_prctl",
            "modify_ldt",
            "chroot",
        ] {
            assert!(allowed_plainly(&v, name), "{name}");
        }
        for name in [
            "mount",
            "unshare",
            "setns",
            "bpf",
            "reboot",
            "open_by_handle_at",
            "set_tls",
        ] {
            assert!(!entries(&v).iter().any(|(n, _)| n == name), "{name}");
        }
        // clone only without namespace flags; clone3 answers ENOSYS so libc falls back.
        let clone: Vec<_> = entries(&v)
            .into_iter()
            .filter(|(n, _)| n == "clone")
            .collect();
        assert_eq!(
            clone,
            vec![(
                "clone".to_owned(),
                json!({"action": "SCMP_ACT_ALLOW",
                       "args": [{"index": 0, "value": 0x7E02_0000_u64, "op": "SCMP_CMP_MASKED_EQ"}]})
            )]
        );
        assert!(entries(&v).contains(&(
            "clone3".to_owned(),
            json!({"action": "SCMP_ACT_ERRNO", "errnoRet": 38})
        )));
        // socket for every family but AF_ALG and AF_VSOCK.
        let socket: Vec<Value> = entries(&v)
            .into_iter()
            .filter(|(n, _)| n == "socket")
            .map(|(_, r)| r["args"][0].clone())
            .collect();
        assert_eq!(
            socket,
            vec![
                json!({"index": 0, "value": 38, "op": "SCMP_CMP_LT"}),
                json!({"index": 0, "value": 39, "op": "SCMP_CMP_EQ"}),
                json!({"index": 0, "value": 40, "op": "SCMP_CMP_GT"}),
            ]
        );
        let personas = entries(&v)
            .into_iter()
            .filter(|(n, _)| n == "personality")
            .count();
        assert_eq!(personas, 5);
        // What the runtime compiles.
        let spec: oci_spec::runtime::LinuxSeccomp = serde_json::from_value(v).unwrap();
        crate::runtime::seccomp::compile(&spec).expect("the default profile compiles");
    }

    #[test]
    fn defaults_on_amd64_are_what_dockerd_writes_for_mobys_current_profile() {
        // The fixture is config.json's `linux.seccomp` from moby's profile (see
        // tests/seccomp.rs); the rendering must be the same rules in the same order.
        assert_eq!(
            rendered(&caps(&[], &[]), "amd64"),
            crate::conformance::seccomp_profiles::docker_default()
        );
    }

    #[test]
    fn capabilities_open_their_groups_and_close_the_fallbacks() {
        let admin = rendered(&caps(&["CAP_SYS_ADMIN"], &[]), "amd64");
        for name in [
            "mount", "unshare", "setns", "clone", "clone3", "bpf", "syslog",
        ] {
            assert!(allowed_plainly(&admin, name), "{name}");
        }
        // No masked clone rule and no ENOSYS for clone3 with CAP_SYS_ADMIN.
        assert!(
            !entries(&admin)
                .iter()
                .any(|(n, r)| (n == "clone" && r.get("args").is_some())
                    || r.get("errnoRet").is_some())
        );
        let ptrace = rendered(&caps(&["CAP_SYS_PTRACE"], &[]), "amd64");
        for name in ["kcmp", "pidfd_getfd", "process_madvise"] {
            assert!(allowed_plainly(&ptrace, name), "{name}");
            assert!(!allowed_plainly(&admin, name), "{name}");
        }
        for (cap, name) in [
            ("CAP_SYS_BOOT", "reboot"),
            ("CAP_SYS_MODULE", "finit_module"),
            ("CAP_SYS_PACCT", "acct"),
            ("CAP_SYS_RAWIO", "iopl"),
            ("CAP_SYS_TIME", "clock_settime"),
            ("CAP_SYS_TTY_CONFIG", "vhangup"),
            ("CAP_SYS_NICE", "mbind"),
            ("CAP_SYSLOG", "syslog"),
            ("CAP_BPF", "bpf"),
            ("CAP_PERFMON", "perf_event_open"),
            ("CAP_DAC_READ_SEARCH", "open_by_handle_at"),
        ] {
            assert!(
                allowed_plainly(&rendered(&caps(&[cap], &[]), "amd64"), name),
                "{cap}"
            );
            assert!(
                !allowed_plainly(&rendered(&caps(&[], &[]), "amd64"), name),
                "{cap}"
            );
        }
        // Dropping a default capability closes its group: chroot needs CAP_SYS_CHROOT.
        let no_chroot = rendered(&caps(&[], &["CAP_SYS_CHROOT"]), "amd64");
        assert!(!entries(&no_chroot).iter().any(|(n, _)| n == "chroot"));
        let none = rendered(&[], "amd64");
        assert!(allowed_plainly(&none, "read") && !allowed_plainly(&none, "chroot"));
    }

    #[test]
    fn the_host_architecture_picks_the_arch_map_entry_and_arch_rules() {
        let v = rendered(&caps(&[], &[]), "arm64");
        assert_eq!(
            v["architectures"],
            json!(["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"])
        );
        assert!(allowed_plainly(&v, "set_tls") && allowed_plainly(&v, "cacheflush"));
        assert!(!entries(&v)
            .iter()
            .any(|(n, _)| n == "arch_prctl" || n == "modify_ldt"));
        let s390 = rendered(&caps(&[], &[]), "s390x");
        assert_eq!(
            s390["architectures"],
            json!(["SCMP_ARCH_S390X", "SCMP_ARCH_S390"])
        );
        let clone: Vec<_> = entries(&s390)
            .into_iter()
            .filter(|(n, _)| n == "clone")
            .collect();
        assert_eq!(clone.len(), 1);
        assert_eq!(clone[0].1["args"][0]["index"], 1);
        // An architecture outside the map gets no architecture list (the runtime's native).
        assert!(rendered(&caps(&[], &[]), "sparc64")
            .get("architectures")
            .is_none());
    }

    #[test]
    fn min_kernel_gates_unprivileged_ptrace() {
        let old = render(
            &builtin(),
            &Target {
                caps: &caps(&[], &[]),
                go_arch: "amd64",
                kernel: Some((4, 4)),
            },
        );
        assert!(!allowed_plainly(&old, "ptrace"));
        assert!(allowed_plainly(
            &rendered(&caps(&[], &[]), "amd64"),
            "ptrace"
        ));
        assert_eq!(kernel_release("6.18.44-fc-v1272"), Some((6, 18)));
        assert_eq!(kernel_release("4.8"), Some((4, 8)));
        assert_eq!(kernel_release("x"), None);
    }

    #[test]
    fn custom_profiles_render_by_the_same_conditions() {
        let text = r#"{"defaultAction":"SCMP_ACT_ERRNO",
            "archMap":[{"architecture":"SCMP_ARCH_X86_64","subArchitectures":["SCMP_ARCH_X86"]}],
            "syscalls":[
              {"names":["read"],"action":"SCMP_ACT_ALLOW","comment":"always"},
              {"name":"mount","action":"SCMP_ACT_ALLOW","includes":{"caps":["CAP_SYS_ADMIN","CAP_NET_ADMIN"]}},
              {"names":["kcmp"],"action":"SCMP_ACT_ALLOW","excludes":{"caps":["CAP_KILL","CAP_BPF"]}},
              {"names":["uname"],"action":"SCMP_ACT_ALLOW","includes":{"minKernel":"7.0"}},
              {"names":["iopl"],"action":"SCMP_ACT_ALLOW","includes":{"arches":["arm64"]}},
              {"names":["socket"],"action":"SCMP_ACT_ERRNO","errnoRet":97,
               "args":[{"index":0,"value":2,"valueTwo":0,"op":"SCMP_CMP_EQ"}]}]}"#;
        let p = parse(text).unwrap();
        let admin_only = caps(&["CAP_SYS_ADMIN"], &["CAP_KILL"]);
        let v = render(
            &p,
            &Target {
                caps: &admin_only,
                go_arch: "amd64",
                kernel: Some((6, 1)),
            },
        );
        let names: Vec<String> = entries(&v).into_iter().map(|(n, _)| n).collect();
        // mount needs both capabilities; kcmp is kept since neither excluding cap is held.
        assert_eq!(names, ["read", "kcmp", "socket"]);
        assert_eq!(
            v["syscalls"][2],
            json!({"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": 97,
                   "args": [{"index": 0, "value": 2, "op": "SCMP_CMP_EQ"}]})
        );
        let with_kill = caps(&["CAP_SYS_ADMIN", "CAP_NET_ADMIN"], &[]);
        let v = render(
            &p,
            &Target {
                caps: &with_kill,
                go_arch: "amd64",
                kernel: Some((7, 1)),
            },
        );
        let names: Vec<String> = entries(&v).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["read", "mount", "uname", "socket"]);
    }

    #[test]
    fn bad_profiles_are_refused_by_what_is_wrong() {
        let err = |t: &str| parse(t).unwrap_err().to_string();
        assert!(err("{").starts_with("Decoding seccomp profile failed"));
        assert!(err(r#"{"defaultAction":"SCMP_ACT_ERRNO","bogus":1}"#).contains("bogus"));
        assert!(err(r#"{"defaultAction":"SCMP_ACT_NOPE"}"#).contains("SCMP_ACT_NOPE"));
        assert!(err(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW","includes":{"kernel":"1"}}]}"#
        )
        .contains("kernel"));
        assert_eq!(
            parse(
                r#"{"defaultAction":"SCMP_ACT_ERRNO","architectures":["SCMP_ARCH_X86"],"archMap":[{"architecture":"SCMP_ARCH_X86_64"}]}"#
            ),
            Err(ProfileError::BothArchFields)
        );
        assert_eq!(
            parse(r#"{"defaultAction":"SCMP_ACT_ERRNO","listenerPath":"/run/agent.sock"}"#),
            Err(ProfileError::Listener)
        );
        assert_eq!(
            parse(
                r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"name":"a","names":["b"],"action":"SCMP_ACT_ALLOW"}]}"#
            ),
            Err(ProfileError::NameAndNames)
        );
        assert_eq!(
            parse(
                r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["a"],"action":"SCMP_ACT_ALLOW","includes":{"minKernel":"four"}}]}"#
            ),
            Err(ProfileError::MinKernel("four".into()))
        );
    }
}
