//! The container process's own attributes (runtime-spec config.md "Process"): rlimits, user and
//! groups, the five capability sets, no_new_privs, umask, cwd, environment and the program itself.

use std::collections::HashSet;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use caps::{CapSet, CapsHashSet};
use nix::errno::Errno;
use nix::sys::resource::{setrlimit, Resource};
use nix::sys::stat::Mode;
use nix::unistd::{Gid, Uid};
use oci_spec::runtime::{Capability, PosixRlimitType, Process};

/// Errors while setting up the container process.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// an rlimit could not be set
    #[error("cannot set rlimit {name}")]
    Rlimit {
        /// The rlimit.
        name: String,
        /// The errno.
        #[source]
        source: Errno,
    },
    /// the rlimit has no Linux equivalent
    #[error("rlimit {0} is not supported on linux")]
    UnknownRlimit(String),
    /// a capability is not known to this kernel or the caps library
    #[error("capability {0} is not known")]
    UnknownCapability(String),
    /// a capability set could not be applied
    #[error("cannot set the {set} capability set")]
    Capabilities {
        /// Which set.
        set: &'static str,
        /// The error.
        #[source]
        source: caps::errors::CapsError,
    },
    /// a credential call failed
    #[error("cannot {op}")]
    Credentials {
        /// The call.
        op: &'static str,
        /// The errno.
        #[source]
        source: Errno,
    },
    /// the working directory is not usable
    #[error("cannot change to working directory {path}")]
    Cwd {
        /// The cwd.
        path: PathBuf,
        /// The errno.
        #[source]
        source: Errno,
    },
    /// the program was not found
    #[error("exec: {0:?}: executable file not found in $PATH")]
    NotFound(String),
    /// the program's path names nothing
    #[error("exec: {0:?}: stat {0}: no such file or directory")]
    Missing(String),
    /// the program's path is a directory or has no execute bit
    #[error("exec: {0:?}: permission denied")]
    NotExecutable(String),
    /// an argument or environment string contains a NUL byte
    #[error("argument or environment entry {0:?} contains a NUL byte")]
    Nul(String),
    /// execve failed
    #[error("exec {path}")]
    Exec {
        /// The program.
        path: PathBuf,
        /// The errno.
        #[source]
        source: Errno,
    },
}

fn rlimit_resource(typ: PosixRlimitType) -> Result<Resource, ProcessError> {
    Ok(match typ {
        PosixRlimitType::RlimitCpu => Resource::RLIMIT_CPU,
        PosixRlimitType::RlimitFsize => Resource::RLIMIT_FSIZE,
        PosixRlimitType::RlimitData => Resource::RLIMIT_DATA,
        PosixRlimitType::RlimitStack => Resource::RLIMIT_STACK,
        PosixRlimitType::RlimitCore => Resource::RLIMIT_CORE,
        PosixRlimitType::RlimitRss => Resource::RLIMIT_RSS,
        PosixRlimitType::RlimitNproc => Resource::RLIMIT_NPROC,
        PosixRlimitType::RlimitNofile => Resource::RLIMIT_NOFILE,
        PosixRlimitType::RlimitMemlock => Resource::RLIMIT_MEMLOCK,
        PosixRlimitType::RlimitAs => Resource::RLIMIT_AS,
        PosixRlimitType::RlimitLocks => Resource::RLIMIT_LOCKS,
        PosixRlimitType::RlimitSigpending => Resource::RLIMIT_SIGPENDING,
        PosixRlimitType::RlimitMsgqueue => Resource::RLIMIT_MSGQUEUE,
        PosixRlimitType::RlimitNice => Resource::RLIMIT_NICE,
        PosixRlimitType::RlimitRtprio => Resource::RLIMIT_RTPRIO,
        PosixRlimitType::RlimitRttime => Resource::RLIMIT_RTTIME,
        #[allow(unreachable_patterns)]
        other => return Err(ProcessError::UnknownRlimit(format!("{other:?}"))),
    })
}

/// Sets every rlimit of the process (before privileges are dropped: raising a hard limit needs
/// CAP_SYS_RESOURCE).
///
/// # Errors
/// The first rlimit that cannot be set.
pub fn apply_rlimits(process: &Process) -> Result<(), ProcessError> {
    for rl in process.rlimits().iter().flatten() {
        let resource = rlimit_resource(rl.typ())?;
        setrlimit(resource, rl.soft(), rl.hard()).map_err(|source| ProcessError::Rlimit {
            name: format!("{:?}", rl.typ()),
            source,
        })?;
    }
    Ok(())
}

fn to_caps(list: Option<&HashSet<Capability>>) -> Result<CapsHashSet, ProcessError> {
    let mut out = CapsHashSet::new();
    for cap in list.into_iter().flatten() {
        let name = cap.to_string();
        let name = if name.starts_with("CAP_") {
            name
        } else {
            format!("CAP_{name}")
        };
        let parsed: caps::Capability = name
            .parse()
            .map_err(|_| ProcessError::UnknownCapability(name.clone()))?;
        out.insert(parsed);
    }
    Ok(out)
}

/// The capability sets of a process, resolved from the spec.
#[derive(Debug, Default)]
pub struct CapabilitySets {
    bounding: CapsHashSet,
    effective: CapsHashSet,
    permitted: CapsHashSet,
    inheritable: CapsHashSet,
    ambient: CapsHashSet,
}

impl CapabilitySets {
    /// Resolves the names in `process.capabilities` (absent sets are empty, as in runc).
    ///
    /// # Errors
    /// A capability name that the library does not know.
    pub fn from_process(process: &Process) -> Result<Self, ProcessError> {
        let Some(c) = process.capabilities() else {
            return Ok(Self::default());
        };
        Ok(Self {
            bounding: to_caps(c.bounding().as_ref())?,
            effective: to_caps(c.effective().as_ref())?,
            permitted: to_caps(c.permitted().as_ref())?,
            inheritable: to_caps(c.inheritable().as_ref())?,
            ambient: to_caps(c.ambient().as_ref())?,
        })
    }

    /// Drops every capability that is not in the bounding set (needs CAP_SETPCAP, so before the
    /// uid changes).
    ///
    /// # Errors
    /// If a capability cannot be dropped.
    pub fn apply_bounding(&self) -> Result<(), ProcessError> {
        for cap in caps::all() {
            if !self.bounding.contains(&cap)
                && caps::has_cap(None, CapSet::Bounding, cap).unwrap_or(false)
            {
                caps::drop(None, CapSet::Bounding, cap).map_err(|source| {
                    ProcessError::Capabilities {
                        set: "bounding",
                        source,
                    }
                })?;
            }
        }
        Ok(())
    }

    /// Sets the effective, permitted, inheritable and ambient sets (after the uid changed).
    ///
    /// # Errors
    /// If the kernel refuses a set.
    pub fn apply_rest(&self) -> Result<(), ProcessError> {
        let set = |which: CapSet, name: &'static str, value: &CapsHashSet| {
            caps::set(None, which, value)
                .map_err(|source| ProcessError::Capabilities { set: name, source })
        };
        // Permitted must hold everything effective holds while we change them: widen effective
        // last, narrow it first.
        set(CapSet::Inheritable, "inheritable", &self.inheritable)?;
        set(
            CapSet::Effective,
            "effective",
            &self
                .effective
                .intersection(&self.permitted)
                .copied()
                .collect(),
        )?;
        set(CapSet::Permitted, "permitted", &self.permitted)?;
        set(CapSet::Effective, "effective", &self.effective)?;
        caps::clear(None, CapSet::Ambient).map_err(|source| ProcessError::Capabilities {
            set: "ambient",
            source,
        })?;
        for cap in &self.ambient {
            // The kernel keeps an ambient capability only if it is also permitted and
            // inheritable; runc's default spec asks for ambient caps without inheritable ones,
            // and runc leaves them out silently. Do the same: a warning here would print on
            // every run and exec of a default bundle, so it is a debug line (`--debug`).
            if !(self.permitted.contains(cap) && self.inheritable.contains(cap)) {
                tracing::debug!(%cap, "ambient capability is not also permitted and inheritable; not raised");
                continue;
            }
            caps::raise(None, CapSet::Ambient, *cap).map_err(|source| {
                ProcessError::Capabilities {
                    set: "ambient",
                    source,
                }
            })?;
        }
        Ok(())
    }
}

/// Switches to the process's user: supplementary groups, gid, then uid, keeping the permitted
/// capabilities across the uid change so that [`CapabilitySets::apply_rest`] can set them.
///
/// # Errors
/// The credential call that failed.
pub fn switch_user(process: &Process) -> Result<(), ProcessError> {
    let user = process.user();
    let groups = supplementary_groups(user.additional_gids().as_deref().unwrap_or_default());
    let cred = |op| move |source| ProcessError::Credentials { op, source };
    // setgroups is refused in a user namespace whose setgroups file says deny; with no extra
    // groups requested that refusal is harmless.
    match nix::unistd::setgroups(&groups) {
        Ok(()) => {}
        Err(Errno::EPERM) if groups.is_empty() => {}
        Err(e) => return Err(cred("setgroups")(e)),
    }
    let gid = Gid::from_raw(user.gid());
    nix::unistd::setresgid(gid, gid, gid).map_err(cred("setresgid"))?;
    nix::sys::prctl::set_keepcaps(true).map_err(cred("set keepcaps"))?;
    let uid = Uid::from_raw(user.uid());
    nix::unistd::setresuid(uid, uid, uid).map_err(cred("setresuid"))?;
    nix::sys::prctl::set_keepcaps(false).map_err(cred("clear keepcaps"))?;
    Ok(())
}

/// `additionalGids` as the list for setgroups(2): each group once, in first-seen order. The
/// kernel keeps a duplicate as given (`Groups: 5 5 6`); runc lists each group once (`5 6`), and
/// a group is a membership, not a count.
fn supplementary_groups(additional_gids: &[u32]) -> Vec<Gid> {
    let mut seen = HashSet::new();
    additional_gids
        .iter()
        .filter(|gid| seen.insert(**gid))
        .map(|gid| Gid::from_raw(*gid))
        .collect()
}

/// Applies umask (default 0022 like runc when the spec has none).
pub fn apply_umask(process: &Process) {
    let mask = process.user().umask().unwrap_or(0o022);
    nix::sys::stat::umask(Mode::from_bits_truncate(mask as libc::mode_t));
}

/// Changes to the process cwd (inside the new root).
///
/// # Errors
/// If the directory cannot be entered.
pub fn enter_cwd(process: &Process) -> Result<(), ProcessError> {
    nix::unistd::chdir(process.cwd()).map_err(|source| ProcessError::Cwd {
        path: process.cwd().clone(),
        source,
    })
}

/// The environment of the process: the spec's env, with HOME added from the container's
/// /etc/passwd when the spec does not set it (runc does the same).
pub fn environment(process: &Process) -> Vec<String> {
    let mut env: Vec<String> = process.env().clone().unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        let home = home_of(process.user().uid()).unwrap_or_else(|| "/".to_string());
        env.push(format!("HOME={home}"));
    }
    env
}

fn home_of(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.len() >= 6 && fields[2].parse::<u32>().ok()? == uid).then(|| fields[5].to_string())
    })
}

/// Finds the program like execvp would, with the PATH of the container's env (not ours).
///
/// # Errors
/// [`ProcessError::NotFound`] when no executable file matches.
pub fn resolve_program(arg0: &str, env: &[String]) -> Result<PathBuf, ProcessError> {
    if arg0.contains('/') {
        // As runc (Go's exec.LookPath): a path is checked here, so that a missing or
        // non-executable program fails the create with the words docker's CLI maps to exit
        // codes 127 and 126, rather than the start.
        let p = PathBuf::from(arg0);
        return match std::fs::metadata(&p) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(ProcessError::Missing(arg0.to_string()))
            }
            Ok(_) if !is_executable(&p) => Err(ProcessError::NotExecutable(arg0.to_string())),
            // Other failures (EACCES on a directory on the way) surface from execve.
            _ => Ok(p),
        };
    }
    let path = env
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for dir in path.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = Path::new(dir).join(arg0);
        if is_executable(&candidate) {
            return Ok(candidate);
        }
    }
    Err(ProcessError::NotFound(arg0.to_string()))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Program, argv and envp ready for `execve`, built before the last privileged steps so that
/// nothing after them allocates from outside input.
#[derive(Debug)]
pub struct ExecPlan {
    path: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
    display: PathBuf,
}

impl ExecPlan {
    /// Builds the plan.
    ///
    /// # Errors
    /// A program that cannot be found or a string with a NUL byte.
    pub fn new(args: &[String], env: &[String]) -> Result<Self, ProcessError> {
        let arg0 = args
            .first()
            .ok_or_else(|| ProcessError::NotFound(String::new()))?;
        let display = resolve_program(arg0, env)?;
        let cstr = |s: &str| CString::new(s).map_err(|_| ProcessError::Nul(s.to_string()));
        Ok(Self {
            path: CString::new(display.as_os_str().as_bytes())
                .map_err(|_| ProcessError::Nul(display.display().to_string()))?,
            argv: args.iter().map(|a| cstr(a)).collect::<Result<_, _>>()?,
            envp: env.iter().map(|e| cstr(e)).collect::<Result<_, _>>()?,
            display,
        })
    }

    /// Replaces the process image. Returns only on failure.
    pub fn exec(self) -> ProcessError {
        match nix::unistd::execve(&self.path, &self.argv, &self.envp) {
            Err(source) => ProcessError::Exec {
                path: self.display,
                source,
            },
            Ok(never) => match never {},
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_is_found_in_the_container_path() {
        let env = vec!["PATH=/nonexistent:/bin:/usr/bin".to_string()];
        let sh = resolve_program("sh", &env).unwrap();
        assert!(sh.ends_with("sh"));
        assert!(matches!(
            resolve_program("no-such-program-here", &env),
            Err(ProcessError::NotFound(_))
        ));
        assert_eq!(
            resolve_program("/bin/sh", &env).unwrap(),
            PathBuf::from("/bin/sh")
        );
        let missing = resolve_program("/x/y", &env).unwrap_err();
        assert_eq!(
            missing.to_string(),
            "exec: \"/x/y\": stat /x/y: no such file or directory"
        );
        let plain = resolve_program("/etc/passwd", &env).unwrap_err();
        assert_eq!(
            plain.to_string(),
            "exec: \"/etc/passwd\": permission denied"
        );
        assert!(matches!(
            resolve_program("/etc", &env),
            Err(ProcessError::NotExecutable(_))
        ));
    }

    #[test]
    fn supplementary_groups_keep_the_first_of_each_gid_in_order() {
        let gids = |list: &[u32]| list.iter().map(|g| Gid::from_raw(*g)).collect::<Vec<_>>();
        assert_eq!(supplementary_groups(&[5, 6, 5]), gids(&[5, 6]));
        assert_eq!(supplementary_groups(&[9, 1, 9, 1, 3]), gids(&[9, 1, 3]));
        assert_eq!(supplementary_groups(&[]), gids(&[]));
    }

    #[test]
    fn every_spec_capability_is_known() {
        let mut process = Process::default();
        let all: HashSet<Capability> = [
            Capability::Chown,
            Capability::NetAdmin,
            Capability::SysAdmin,
            Capability::AuditWrite,
            Capability::Kill,
        ]
        .into_iter()
        .collect();
        let mut c = oci_spec::runtime::LinuxCapabilities::default();
        c.set_bounding(Some(all));
        process.set_capabilities(Some(c));
        let sets = CapabilitySets::from_process(&process).unwrap();
        assert_eq!(sets.bounding.len(), 5);
        assert!(sets.bounding.contains(&caps::Capability::CAP_NET_ADMIN));
    }
}
