//! `create`: builds the container and leaves its init process blocked on the exec fifo
//! (runtime-spec "Lifecycle" steps 1-4 and "create").
//!
//! Process layout: `create` forks an intermediate process that joins the namespaces given by
//! path and then clones init straight into the new ones (so init is pid 1 of a new pid
//! namespace); the intermediate reports init's pid and exits, leaving init to the caller's
//! subreaper. `create` writes the id maps, puts init in the cgroup and runs the runtime-namespace
//! hooks while init waits on the sync channel.

use std::fs;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use chrono::Utc;
use nix::fcntl::{open, OFlag};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::signal::{kill, Signal};
use nix::sys::stat::Mode;
use nix::sys::wait::waitpid;
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType, LinuxNamespaceType, Spec};

use crate::oci::config::{load_bundle_config, ConfigError};
use crate::runtime::cgroups::{Cgroup, CgroupError, Entry};
use crate::runtime::channel::{self, ChannelError, Message};
use crate::runtime::container::{Container, Created};
use crate::runtime::hooks::{self, HookError, HookPoint};
use crate::runtime::init::{self, InitContext};
use crate::runtime::rootfs::{HostRootfs, RootfsContext, RootfsError};
use crate::runtime::state::{
    proc_stat, write_pid_file, ContainerDir, PersistedState, StateError, StateReport, StateRoot,
    Status,
};
use crate::sys::process::{clone_fork, ForkError, Forked};

/// Options of `create` (runc's flags).
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// Container id.
    pub id: String,
    /// Bundle directory.
    pub bundle: PathBuf,
    /// Where to write init's host pid.
    pub pid_file: Option<PathBuf>,
    /// Where to send the pty master when the process has a terminal.
    pub console_socket: Option<PathBuf>,
    /// chroot instead of pivot_root.
    pub no_pivot: bool,
    /// Extra descriptors (3..3+N) passed into the container.
    pub preserve_fds: u32,
}

/// Errors of `create`.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// the bundle's config is not usable
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// the state store refused
    #[error(transparent)]
    State(#[from] StateError),
    /// a path of the bundle is not usable
    #[error("{what} {path}")]
    Path {
        /// What the path is.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// the terminal options do not fit together
    #[error("{0}")]
    Terminal(&'static str),
    /// the config asks for something the runtime refuses
    #[error("{0}")]
    Invalid(String),
    /// cgroup setup failed
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
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
    /// the sync channel failed
    #[error(transparent)]
    Channel(#[from] ChannelError),
    /// the init process reported a failure
    #[error("container init: {0}")]
    Init(String),
    /// a prestart or createRuntime hook failed
    #[error(transparent)]
    Hook(#[from] HookError),
    /// a createContainer hook failed in init
    #[error("container init: {0}")]
    InitHook(String),
    /// the protocol with init went wrong
    #[error("unexpected message from container init: {0:?}")]
    Protocol(Message),
    /// the mounts of a container without a mount namespace could not be tracked
    #[error(transparent)]
    HostMounts(#[from] RootfsError),
}

fn sys(op: impl Into<String>) -> impl FnOnce(nix::errno::Errno) -> CreateError {
    let op = op.into();
    move |source| CreateError::Sys { op, source }
}

fn path_err<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> CreateError + 'a {
    move |source| CreateError::Path {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// The devices every container gets (runtime-spec config-linux.md "Default Devices") plus the
/// pty multiplexer, ptys and the console: allowed in the device cgroup after the spec's own
/// rules, as runc does. `linux.devices` entries get no rule of their own: whether they may be
/// used is `linux.resources.devices`'s call.
fn default_device_allows() -> Vec<LinuxDeviceCgroup> {
    let rule = |typ, major, minor| {
        let mut r = LinuxDeviceCgroup::default();
        r.set_allow(true);
        r.set_typ(Some(typ));
        r.set_major(major);
        r.set_minor(minor);
        r.set_access(Some("rwm".to_string()));
        r
    };
    let mknod = |typ| {
        let mut r = rule(typ, None, None);
        r.set_access(Some("m".to_string()));
        r
    };
    vec![
        // Creating any node is allowed (opening it is not): the runtime makes the spec's
        // devices from inside the container's cgroup.
        mknod(LinuxDeviceType::C),
        mknod(LinuxDeviceType::B),
        rule(LinuxDeviceType::C, Some(1), Some(3)),
        rule(LinuxDeviceType::C, Some(1), Some(5)),
        rule(LinuxDeviceType::C, Some(1), Some(7)),
        rule(LinuxDeviceType::C, Some(1), Some(8)),
        rule(LinuxDeviceType::C, Some(1), Some(9)),
        rule(LinuxDeviceType::C, Some(5), Some(0)),
        rule(LinuxDeviceType::C, Some(5), Some(1)),
        rule(LinuxDeviceType::C, Some(5), Some(2)),
        rule(LinuxDeviceType::C, Some(136), None),
    ]
}

fn clone_flag(typ: LinuxNamespaceType) -> CloneFlags {
    match typ {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::Time => CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
    }
}

/// Namespaces to join (by path, opened now) and to create.
#[derive(Debug)]
struct NamespacePlan {
    join: Vec<(LinuxNamespaceType, OwnedFd)>,
    /// Flags for the clone of init (everything new except cgroup and time).
    clone: CloneFlags,
    new_time: bool,
}

fn plan_namespaces(spec: &Spec) -> Result<NamespacePlan, CreateError> {
    let mut plan = NamespacePlan {
        join: Vec::new(),
        clone: CloneFlags::empty(),
        new_time: false,
    };
    let namespaces = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default();
    for ns in &namespaces {
        match ns.path() {
            Some(path) => {
                let fd = open(path, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty()).map_err(
                    sys(format!("open {:?} namespace {}", ns.typ(), path.display())),
                )?;
                plan.join.push((ns.typ(), fd));
            }
            None => match ns.typ() {
                // The cgroup namespace is made by init once it is inside its cgroup; the time
                // namespace by the intermediate, since unshare(CLONE_NEWTIME) applies to children.
                LinuxNamespaceType::Cgroup => {}
                LinuxNamespaceType::Time => plan.new_time = true,
                typ => plan.clone |= clone_flag(typ),
            },
        }
    }
    // Join the user namespace first (it grants the rights for the others), mount last (paths of
    // the other namespace files resolve in the runtime's mount namespace).
    plan.join.sort_by_key(|(typ, _)| match typ {
        LinuxNamespaceType::User => 0,
        LinuxNamespaceType::Mount => 2,
        _ => 1,
    });
    Ok(plan)
}

/// Creates the container.
///
/// # Errors
/// Any step that fails; everything made so far (init process, cgroup, state) is removed.
#[tracing::instrument(skip_all, fields(id = %opts.id))]
pub fn create(root: &StateRoot, opts: &CreateOptions) -> Result<Container<Created>, CreateError> {
    let bundle = fs::canonicalize(&opts.bundle).map_err(path_err("bundle", &opts.bundle))?;
    let spec = load_bundle_config(&bundle)?;
    let dir = root.create(&opts.id)?;
    let mut undo = Undo::default();
    let poststop = spec.hooks().as_ref().and_then(|h| h.poststop().clone());
    let report_template = (bundle.clone(), spec.annotations().clone());
    match build(&dir, &bundle, spec, opts, &mut undo) {
        Ok(state) => Ok(Container::<Created>::created(dir, state)),
        Err(e) => {
            undo.run();
            let _ = dir.remove();
            // runtime-spec "Lifecycle" steps 3-5: a failing prestart, createRuntime or
            // createContainer hook stops the container and the lifecycle continues at delete,
            // whose poststop hooks run.
            if let (CreateError::Hook(_) | CreateError::InitHook(_), Some(list)) = (&e, poststop) {
                let report = stopped_report(&opts.id, report_template);
                hooks::run_all_warn(HookPoint::Poststop, &list, &report);
            }
            Err(e)
        }
    }
}

/// What to tear down when create fails half way.
#[derive(Debug, Default)]
struct Undo {
    init: Option<Pid>,
    cgroup: Option<Cgroup>,
    /// Without a mount namespace, init's mounts are the host's and outlive it.
    host_rootfs: Option<HostRootfs>,
}

impl Undo {
    fn run(self) {
        if let Some(pid) = self.init {
            let _ = kill(pid, Signal::SIGKILL);
            // init is not our child (the intermediate was its parent): wait until it is gone
            // so that the cgroup can be removed.
            for _ in 0..500 {
                if proc_stat(pid).is_none_or(|(s, _)| s == 'Z') {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        }
        if let Some(host) = self.host_rootfs {
            if let Err(e) = host.release() {
                tracing::warn!(error = %e, "cannot unmount what a failed create mounted on the host");
            }
        }
        if let Some(cgroup) = self.cgroup {
            if let Err(e) = cgroup.destroy() {
                tracing::warn!(error = %e, "cannot remove the cgroup of a failed create");
            }
        }
    }
}

fn build(
    dir: &ContainerDir,
    bundle: &Path,
    spec: Spec,
    opts: &CreateOptions,
    undo: &mut Undo,
) -> Result<PersistedState, CreateError> {
    let root_path = spec
        .root()
        .as_ref()
        .map(|r| r.path().clone())
        .unwrap_or_default();
    let rootfs_raw = if root_path.is_absolute() {
        root_path
    } else {
        bundle.join(root_path)
    };
    let rootfs = fs::canonicalize(&rootfs_raw).map_err(path_err("rootfs", &rootfs_raw))?;
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| CreateError::Invalid("config has no process".into()))?;
    let terminal = process.terminal() == Some(true);
    match (terminal, &opts.console_socket) {
        (true, None) => {
            return Err(CreateError::Terminal(
                "process.terminal is true but no --console-socket was given",
            ))
        }
        (false, Some(_)) => {
            return Err(CreateError::Terminal(
                "--console-socket was given but process.terminal is false",
            ))
        }
        _ => {}
    }
    let linux = spec
        .linux()
        .as_ref()
        .ok_or_else(|| CreateError::Invalid("config has no linux section".into()))?;
    let has_ns = |typ| {
        linux
            .namespaces()
            .iter()
            .flatten()
            .any(|ns| ns.typ() == typ)
    };
    let new_ns = |typ| {
        linux
            .namespaces()
            .iter()
            .flatten()
            .any(|ns| ns.typ() == typ && ns.path().is_none())
    };
    // config.md "Hostname": the name of the container's UTS namespace, new or joined by path
    // (runc 1.1.5 sets it in a joined one too). Without a uts entry the container shares the
    // runtime's namespace, and the host would be renamed: refused, as runc refuses it.
    if (spec.hostname().as_ref().is_some_and(|h| !h.is_empty())
        || spec.domainname().as_ref().is_some_and(|h| !h.is_empty()))
        && !has_ns(LinuxNamespaceType::Uts)
    {
        return Err(CreateError::Invalid(
            "hostname or domainname needs a uts namespace (new, or joined by path)".into(),
        ));
    }
    let mount_namespace = has_ns(LinuxNamespaceType::Mount);
    if !mount_namespace {
        // Without a mount namespace every mount is the host's. Masking and read-only paths
        // would cover /proc and /sys entries below the rootfs only, which is no restriction
        // (runc refuses them too: "unable to restrict sys entries without a private MNT
        // namespace"), and the rootfs propagation would change the host's `/`.
        let refused: Vec<&str> = [
            (
                linux.masked_paths().as_ref().is_some_and(|p| !p.is_empty()),
                "linux.maskedPaths",
            ),
            (
                linux
                    .readonly_paths()
                    .as_ref()
                    .is_some_and(|p| !p.is_empty()),
                "linux.readonlyPaths",
            ),
            (
                linux
                    .rootfs_propagation()
                    .as_ref()
                    .is_some_and(|p| !p.is_empty()),
                "linux.rootfsPropagation",
            ),
        ]
        .into_iter()
        .filter_map(|(set, field)| set.then_some(field))
        .collect();
        if !refused.is_empty() {
            return Err(CreateError::Invalid(format!(
                "{} need a mount namespace: without one the container's mounts are the host's",
                refused.join(" and ")
            )));
        }
        undo.host_rootfs = Some(HostRootfs::before_create(&rootfs)?);
    }

    let cgroup = Cgroup::resolve(linux.cgroups_path().as_deref(), &opts.id)?;
    let cgroup_owned = !cgroup.exists()?;
    cgroup.create(linux.resources().as_ref(), &default_device_allows())?;
    if cgroup_owned {
        undo.cgroup = Some(cgroup.clone());
    }

    let fifo_path = dir.fifo_path();
    nix::unistd::mkfifo(&fifo_path, Mode::from_bits_truncate(0o622))
        .map_err(sys(format!("mkfifo {}", fifo_path.display())))?;
    fs::set_permissions(&fifo_path, fs::Permissions::from_mode(0o622))
        .map_err(path_err("chmod", &fifo_path))?;
    let fifo = open(&fifo_path, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(sys("open exec fifo"))?;
    let console = match &opts.console_socket {
        Some(path) => {
            Some(UnixStream::connect(path).map_err(path_err("connect console socket", path))?)
        }
        None => None,
    };
    let ns = plan_namespaces(&spec)?;

    let owner = nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_default();
    let mut persisted = PersistedState {
        id: opts.id.clone(),
        pid: 0,
        pid_start_time: 0,
        bundle: bundle.to_path_buf(),
        rootfs: rootfs.clone(),
        created: Utc::now(),
        owner,
        cgroup: cgroup.clone(),
        cgroup_owned,
        rootfs_mount: None,
        config: spec.clone(),
    };
    let ctx = InitContext {
        spec: &spec,
        rootfs: RootfsContext {
            rootfs: rootfs.clone(),
            bundle: bundle.to_path_buf(),
            no_pivot: opts.no_pivot,
            mount_namespace,
            user_namespace: new_ns(LinuxNamespaceType::User),
            cgroup_namespace: new_ns(LinuxNamespaceType::Cgroup),
            cgroup: Some(cgroup.clone()),
        },
        fifo,
        console,
        preserve_fds: opts.preserve_fds as i32,
        hook_state: StateReport::new(&persisted, Status::Creating),
    };

    // init is born in its cgroup (cgroups::Entry), unless a pid limit of 1 leaves no room for
    // the intermediate beside it: then it is moved there below.
    let pids_limit_one = linux
        .resources()
        .as_ref()
        .and_then(|r| r.pids().as_ref())
        .is_some_and(|p| p.limit() == 1);
    let entry = if pids_limit_one {
        None
    } else {
        Some(cgroup.entry()?)
    };

    let (parent, child) = channel::pair()?;
    let intermediate = match clone_fork(CloneFlags::empty())? {
        Forked::Child => {
            drop(parent);
            intermediate_main(&spec, ns, entry.as_ref(), ctx, child)
        }
        Forked::Parent(pid) => pid,
    };
    drop(child);
    drop(ctx);
    let first = parent.recv();
    let _ = waitpid(intermediate, None);
    let pid = match first? {
        Message::InitPid(pid) => Pid::from_raw(pid),
        Message::Error(e) => return Err(CreateError::Init(e)),
        other => return Err(CreateError::Protocol(other)),
    };
    undo.init = Some(pid);

    if new_ns(LinuxNamespaceType::User) {
        write_id_map(
            pid,
            "uid_map",
            linux.uid_mappings().as_deref().unwrap_or_default(),
        )?;
        write_id_map(
            pid,
            "gid_map",
            linux.gid_mappings().as_deref().unwrap_or_default(),
        )?;
    }
    if let Some(adj) = process.oom_score_adj() {
        let path = format!("/proc/{pid}/oom_score_adj");
        fs::write(&path, adj.to_string()).map_err(path_err("write", Path::new(&path)))?;
    }
    if entry.is_none() {
        cgroup.add_process(pid)?;
    }
    drop(entry);
    parent.send(&Message::Go(pid.as_raw()))?;

    persisted.pid = pid.as_raw();
    let mut report = StateReport::new(&persisted, Status::Creating);
    report.pid = Some(pid.as_raw());
    loop {
        match parent.recv() {
            Ok(Message::RunCreateRuntimeHooks) => {
                // runtime-spec "Lifecycle" step 4: prestart (deprecated) and createRuntime run
                // in the runtime namespace; a failure stops the container.
                if let Some(h) = spec.hooks() {
                    #[allow(deprecated)]
                    let prestart = h.prestart();
                    for (point, list) in [
                        (HookPoint::Prestart, prestart),
                        (HookPoint::CreateRuntime, h.create_runtime()),
                    ] {
                        if let Some(list) = list {
                            if let Err(e) = hooks::run(point, list, &report) {
                                let _ = parent.send(&Message::Error(e.to_string()));
                                return Err(e.into());
                            }
                        }
                    }
                }
                parent.send(&Message::HooksDone)?;
            }
            Ok(Message::Ready) => break,
            Ok(Message::Error(e)) => return Err(CreateError::Init(e)),
            Ok(Message::HookFailed(e)) => return Err(CreateError::InitHook(e)),
            Ok(other) => return Err(CreateError::Protocol(other)),
            Err(e) => return Err(e.into()),
        }
    }

    persisted.pid_start_time = proc_stat(pid)
        .map(|(_, start)| start)
        .ok_or_else(|| CreateError::Init("init exited right after setup".into()))?;
    persisted.created = Utc::now();
    if let Some(host) = &undo.host_rootfs {
        persisted.rootfs_mount = Some(host.require_container_bind()?);
    }
    dir.write(&persisted)?;
    if let Some(pid_file) = &opts.pid_file {
        write_pid_file(pid_file, pid)?;
    }
    Ok(persisted)
}

/// The state poststop hooks get for a container whose create failed: stopped, no pid.
fn stopped_report(
    id: &str,
    (bundle, annotations): (PathBuf, Option<std::collections::HashMap<String, String>>),
) -> StateReport {
    StateReport {
        oci_version: crate::runtime::state::OCI_VERSION.to_string(),
        id: id.to_string(),
        status: Status::Stopped,
        pid: None,
        rootfs: bundle.join("rootfs"),
        bundle,
        created: Utc::now(),
        owner: String::new(),
        annotations: annotations.unwrap_or_default().into_iter().collect(),
    }
}

/// The intermediate process: enters the container's v1 cgroups (see `cgroups::Entry`), joins
/// namespaces by path, makes the time namespace, clones init into the new namespaces and its
/// cgroup, reports its pid and exits.
fn intermediate_main(
    spec: &Spec,
    ns: NamespacePlan,
    entry: Option<&Entry>,
    ctx: InitContext<'_>,
    channel: channel::Channel,
) -> ! {
    let result = (|| -> Result<Pid, String> {
        if let Some(entry) = entry {
            entry
                .join_v1()
                .map_err(|e| format!("join cgroup: {}", init::error_chain(&e)))?;
        }
        for (typ, fd) in &ns.join {
            setns(fd.as_fd(), clone_flag(*typ))
                .map_err(|e| format!("join {typ:?} namespace: {e}"))?;
        }
        if ns.new_time {
            unshare(clone_flag(LinuxNamespaceType::Time))
                .map_err(|e| format!("unshare time namespace: {e}"))?;
            write_time_offsets(spec)?;
        }
        let forked = match entry {
            Some(entry) => entry
                .fork(ns.clone)
                .map_err(|e| format!("clone init: {}", init::error_chain(&e)))?,
            None => clone_fork(ns.clone)
                .map_err(|e| format!("clone init: {}", init::error_chain(&e)))?,
        };
        match forked {
            Forked::Child => init::run(ctx, &channel),
            Forked::Parent(pid) => Ok(pid),
        }
    })();
    let (msg, code) = match result {
        Ok(pid) => (Message::InitPid(pid.as_raw()), 0),
        Err(e) => (Message::Error(e), 1),
    };
    let _ = channel.send(&msg);
    crate::sys::process::exit_now(code)
}

fn write_time_offsets(spec: &Spec) -> Result<(), String> {
    let offsets = spec
        .linux()
        .as_ref()
        .and_then(|l| l.time_offsets().clone())
        .unwrap_or_default();
    let mut text = String::new();
    for (clock, off) in &offsets {
        if clock != "monotonic" && clock != "boottime" {
            return Err(format!("linux.timeOffsets: unknown clock {clock:?}"));
        }
        text.push_str(&format!(
            "{clock} {} {}\n",
            off.secs().unwrap_or(0),
            off.nanosecs().unwrap_or(0)
        ));
    }
    if text.is_empty() {
        return Ok(());
    }
    fs::write("/proc/self/timens_offsets", text).map_err(|e| format!("write time offsets: {e}"))
}

fn write_id_map(
    pid: Pid,
    file: &str,
    maps: &[oci_spec::runtime::LinuxIdMapping],
) -> Result<(), CreateError> {
    let text: String = maps
        .iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect();
    let path = PathBuf::from(format!("/proc/{pid}/{file}"));
    fs::write(&path, text).map_err(path_err("write", &path))
}
