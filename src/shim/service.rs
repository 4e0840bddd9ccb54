//! The shim's task service as a local object: every ttrpc Task request is one method here, with
//! containerd's request and response types and a typed error; `task.rs` only maps it onto ttrpc.
//! Runtime, exits and events come in through traits, so tests run it in-process with fakes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::SystemTime;

use containerd_shim_protos::api;
use containerd_shim_protos::events::task as ev;
use containerd_shim_protos::types::task::{ProcessInfo, Status};
use protobuf::well_known_types::any::Any;
use protobuf::{CodedOutputStream, MessageField};

use super::events::{timestamp, Publish, TaskEvent};
use super::handoff::{Exited, Handoff, Phase, PhaseName};
use super::io::{self, ConsoleSocket, IoError, ShimIo, StdioPaths};
use super::mount::{self, MountError, RootfsMount};
use super::oom;
use super::options::{OptionsError, RuntimeOptions};
use super::runtime::{Launch, Runtime, RuntimeError};
use super::stats::{self, StatsError};

/// Builds the runtime once the options are known (at Create).
pub type RuntimeFactory = Box<dyn Fn(&RuntimeOptions) -> Arc<dyn Runtime> + Send + Sync>;

/// An error of one task request; [`ShimError::model`] gives the model's view of it.
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    /// task {0} does not exist
    #[error("task {0} does not exist")]
    NotFound(String),
    /// process {exec_id} of task {id} does not exist
    #[error("process {exec_id} of task {id} does not exist")]
    ExecNotFound { id: String, exec_id: String },
    /// process {0} already finished
    #[error("process {0} already finished")]
    Finished(String),
    /// task {0} already exists
    #[error("task {0} already exists")]
    AlreadyExists(String),
    /// cannot {op} task {id}: it is {phase:?}
    #[error("cannot {op} task {id}: it is {phase:?}")]
    WrongPhase {
        op: &'static str,
        id: String,
        phase: PhaseName,
    },
    /// cannot {op} process {exec_id}: it is {state}
    #[error("cannot {op} process {exec_id}: it is {state}")]
    ExecWrongState {
        op: &'static str,
        exec_id: String,
        state: &'static str,
    },
    /// {op} of task {id} failed in the runtime
    #[error("{op} of task {id} failed in the runtime: {source}")]
    Runtime {
        op: &'static str,
        id: String,
        #[source]
        source: RuntimeError,
    },
    /// stdio of task {id}
    #[error("stdio of task {id}: {source}")]
    Io {
        id: String,
        #[source]
        source: IoError,
    },
    /// rootfs of task {id}
    #[error("rootfs of task {id}: {source}")]
    Mount {
        id: String,
        #[source]
        source: MountError,
    },
    /// runtime options of task {id}
    #[error("runtime options of task {id}: {source}")]
    Options {
        id: String,
        #[source]
        source: OptionsError,
    },
    /// metrics of task {id}
    #[error("metrics of task {id}: {source}")]
    Stats {
        id: String,
        #[source]
        source: StatsError,
    },
    /// {0} is not implemented by refeng-shim
    #[error("{0} is not implemented by refeng-shim")]
    Unimplemented(&'static str),
    /// invalid request: {0}
    #[error("invalid request: {0}")]
    Invalid(String),
}

impl ShimError {
    /// The model's error for this one, where the model has one.
    pub fn model(&self) -> Option<refeng_spec::shim::ShimError> {
        use refeng_spec::shim::ShimError as M;
        match self {
            Self::NotFound(_) | Self::Finished(_) => Some(M::NotFound),
            Self::AlreadyExists(_) => Some(M::AlreadyExists),
            Self::WrongPhase { op, phase, .. } => Some(M::WrongPhase {
                op: op.to_string(),
                phase: *phase,
            }),
            _ => None,
        }
    }
}

/// What Shutdown decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    /// No process is left: the shim may exit.
    Exit,
    /// A process is left: the shim keeps serving.
    Refused,
}

#[derive(Debug)]
enum ExecState {
    Defined,
    Running { pid: u32 },
    Exited(Exited),
}

impl ExecState {
    fn name(&self) -> &'static str {
        match self {
            Self::Defined => "created",
            Self::Running { .. } => "running",
            Self::Exited(_) => "stopped",
        }
    }
}

#[derive(Debug)]
struct ExecProcess {
    spec: Vec<u8>,
    paths: StdioPaths,
    state: ExecState,
    io: ShimIo,
}

#[derive(Debug, Default)]
struct InitInfo {
    id: String,
    bundle: PathBuf,
    paths: StdioPaths,
    io: ShimIo,
    rootfs_mounted: bool,
}

#[derive(Debug)]
struct Tasks {
    phase: Phase,
    init: InitInfo,
    execs: HashMap<String, ExecProcess>,
    /// Set while `start` runs, so an exit that races it is published after the start event.
    starting: bool,
    deferred_exit: Option<TaskEvent>,
}

/// The task service of one shim.
pub struct Shim {
    namespace: String,
    /// The runtime options from `start` (stdin); Create's options win over them.
    start_options: RuntimeOptions,
    factory: RuntimeFactory,
    runtime: Mutex<Option<Arc<dyn Runtime>>>,
    events: Arc<dyn Publish>,
    /// Serialises the requests that drive the runtime; the exit path never takes it.
    ops: Mutex<()>,
    tasks: Mutex<Tasks>,
    changed: Condvar,
    /// Where console sockets are bound.
    socket_dir: PathBuf,
    /// The cgroup mount root for metrics and OOM notifications.
    cgroup_root: PathBuf,
    /// Whether Create starts an OOM watcher on init's memory cgroup.
    watch_oom: bool,
}

impl std::fmt::Debug for Shim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shim")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The `ProcessDetails` containerd's runc shim attaches to exec pids in Pids
/// (`containerd.runc.v1.ProcessDetails { string exec_id = 1; }`).
fn process_details(exec_id: &str) -> Any {
    let mut value = Vec::new();
    {
        let mut out = CodedOutputStream::vec(&mut value);
        let _ = out.write_string(1, exec_id);
        let _ = out.flush();
    }
    Any {
        type_url: "containerd.runc.v1.ProcessDetails".into(),
        value,
        ..Default::default()
    }
}

impl Shim {
    /// A serving shim for `namespace`, with console sockets in `socket_dir`.
    pub fn new(
        namespace: &str,
        start_options: RuntimeOptions,
        factory: RuntimeFactory,
        events: Arc<dyn Publish>,
        socket_dir: &Path,
    ) -> Self {
        Self {
            namespace: namespace.to_string(),
            start_options,
            factory,
            runtime: Mutex::new(None),
            events,
            ops: Mutex::new(()),
            tasks: Mutex::new(Tasks {
                phase: Phase::Serving(Handoff::serving()),
                init: InitInfo::default(),
                execs: HashMap::new(),
                starting: false,
                deferred_exit: None,
            }),
            changed: Condvar::new(),
            socket_dir: socket_dir.to_path_buf(),
            cgroup_root: PathBuf::from("/sys/fs/cgroup"),
            watch_oom: true,
        }
    }

    /// The same shim without OOM watchers (for a fake runtime, whose pids are not real).
    pub fn without_oom_watch(mut self) -> Self {
        self.watch_oom = false;
        self
    }

    /// The namespace the shim serves.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The handoff phase, in the model's names.
    pub fn phase(&self) -> PhaseName {
        lock(&self.tasks).phase.name()
    }

    fn runtime(&self) -> Option<Arc<dyn Runtime>> {
        lock(&self.runtime).clone()
    }

    fn check_id(tasks: &Tasks, id: &str) -> Result<(), ShimError> {
        if matches!(tasks.phase, Phase::Serving(_) | Phase::Deleted(_)) || tasks.init.id != id {
            return Err(ShimError::NotFound(id.to_string()));
        }
        Ok(())
    }

    fn wrong(tasks: &Tasks, op: &'static str) -> ShimError {
        ShimError::WrongPhase {
            op,
            id: tasks.init.id.clone(),
            phase: tasks.phase.name(),
        }
    }

    /// ttrpc Create: mounts the rootfs, opens stdio and has the runtime create the container.
    ///
    /// # Errors
    /// `AlreadyExists` unless the shim is still serving; otherwise what failed (options, mounts,
    /// stdio, runtime), after undoing what was done.
    #[tracing::instrument(skip_all, fields(id = %req.id))]
    pub fn create(
        &self,
        req: api::CreateTaskRequest,
    ) -> Result<api::CreateTaskResponse, ShimError> {
        let _op = lock(&self.ops);
        let id = req.id.clone();
        if !matches!(lock(&self.tasks).phase, Phase::Serving(_)) {
            return Err(ShimError::AlreadyExists(id));
        }
        if !req.checkpoint.is_empty() {
            return Err(ShimError::Unimplemented("restore from checkpoint"));
        }
        let options = match req.options.as_ref() {
            Some(any) if !any.type_url.is_empty() => {
                RuntimeOptions::from_any(any).map_err(|source| ShimError::Options {
                    id: id.clone(),
                    source,
                })?
            }
            _ => self.start_options.clone(),
        };
        let bundle = PathBuf::from(&req.bundle);
        if let Err(source) = options.persist(&bundle) {
            tracing::warn!(error = %source, "runtime options not kept in the bundle");
        }
        let runtime = (self.factory)(&options);
        *lock(&self.runtime) = Some(Arc::clone(&runtime));

        let mounts: Vec<RootfsMount> = req
            .rootfs
            .iter()
            .map(|m| RootfsMount {
                fstype: m.type_.clone(),
                source: m.source.clone(),
                options: m.options.clone(),
            })
            .collect();
        let rootfs = bundle.join("rootfs");
        if !mounts.is_empty() {
            mount::mount_rootfs(&mounts, &rootfs).map_err(|source| ShimError::Mount {
                id: id.clone(),
                source,
            })?;
        }
        let undo_mounts = || {
            if !mounts.is_empty() {
                mount::unmount_rootfs(&rootfs);
            }
        };
        let paths = StdioPaths {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        };
        let launched = self.launch(&id, &id, &paths, |launch| runtime.create(&bundle, launch));
        let (pid, shim_io) = match launched {
            Ok(ok) => ok,
            Err(e) => {
                undo_mounts();
                return Err(e.into_shim_error("create", &id));
            }
        };
        {
            let mut tasks = lock(&self.tasks);
            if let Phase::Serving(h) = std::mem::replace(&mut tasks.phase, Phase::Moving) {
                tasks.phase = Phase::Created(h.created(pid));
            }
            tasks.init = InitInfo {
                id: id.clone(),
                bundle: bundle.clone(),
                paths: paths.clone(),
                io: shim_io,
                rootfs_mounted: !mounts.is_empty(),
            };
            self.events.publish(TaskEvent::Created(ev::TaskCreate {
                container_id: id.clone(),
                bundle: req.bundle.clone(),
                rootfs: req.rootfs.clone(),
                io: MessageField::some(ev::TaskIO {
                    stdin: paths.stdin.clone(),
                    stdout: paths.stdout.clone(),
                    stderr: paths.stderr.clone(),
                    terminal: paths.terminal,
                    ..Default::default()
                }),
                checkpoint: req.checkpoint.clone(),
                pid,
                ..Default::default()
            }));
        }
        if self.watch_oom {
            let events = Arc::clone(&self.events);
            let container_id = id.clone();
            let watched = oom::watch(pid, &self.cgroup_root, move || {
                tracing::info!(id = %container_id, "oom");
                events.publish(TaskEvent::Oom(ev::TaskOOM {
                    container_id: container_id.clone(),
                    ..Default::default()
                }));
            });
            if let Err(e) = watched {
                tracing::warn!(error = %e, "no OOM notifications for this task");
            }
        }
        if let Some((status, at)) = runtime.watch_exit(pid) {
            self.process_exited(pid, status, at);
        }
        tracing::info!(pid, "created");
        Ok(api::CreateTaskResponse {
            pid,
            ..Default::default()
        })
    }

    /// Opens stdio (or a console socket) and runs one runtime launch with it.
    fn launch(
        &self,
        id: &str,
        name: &str,
        paths: &StdioPaths,
        run: impl FnOnce(Launch<'_>) -> Result<u32, RuntimeError>,
    ) -> Result<(u32, ShimIo), LaunchError> {
        if paths.terminal {
            let socket =
                ConsoleSocket::bind(&self.socket_dir, &format!("{}-{name}", std::process::id()))
                    .map_err(LaunchError::Io)?;
            let pid = run(Launch {
                id,
                io: Default::default(),
                console_socket: Some(socket.path()),
            })
            .map_err(LaunchError::Runtime)?;
            let master = socket.receive().map_err(LaunchError::Io)?;
            let shim_io = io::start_console_copy(master, paths).map_err(LaunchError::Io)?;
            Ok((pid, shim_io))
        } else {
            let (process_io, shim_io) = io::open_direct(paths).map_err(LaunchError::Io)?;
            let pid = run(Launch {
                id,
                io: process_io,
                console_socket: None,
            })
            .map_err(LaunchError::Runtime)?;
            Ok((pid, shim_io))
        }
    }

    /// ttrpc Start: starts init (empty exec id) or an exec process.
    ///
    /// # Errors
    /// `NotFound` for an unknown task or process, `WrongPhase` unless init is created (or, for an
    /// exec, unless init runs and the exec was never started), or the runtime's failure.
    #[tracing::instrument(skip_all, fields(id = %req.id, exec_id = %req.exec_id))]
    pub fn start(&self, req: api::StartRequest) -> Result<api::StartResponse, ShimError> {
        let _op = lock(&self.ops);
        if !req.exec_id.is_empty() {
            return self.start_exec(&req.id, &req.exec_id);
        }
        let pid = {
            let mut tasks = lock(&self.tasks);
            Self::check_id(&tasks, &req.id)?;
            let Phase::Created(h) = &tasks.phase else {
                return Err(Self::wrong(&tasks, "start"));
            };
            let pid = h.pid();
            tasks.starting = true;
            pid
        };
        let runtime = self
            .runtime()
            .ok_or_else(|| ShimError::NotFound(req.id.clone()))?;
        let result = runtime.start(&req.id);
        let mut tasks = lock(&self.tasks);
        tasks.starting = false;
        let deferred = tasks.deferred_exit.take();
        if let Err(source) = result {
            if let Some(exit) = deferred {
                self.events.publish(exit);
            }
            return Err(ShimError::Runtime {
                op: "start",
                id: req.id,
                source,
            });
        }
        // Init may already have exited (a short command); then it stays exited.
        tasks.phase = match std::mem::replace(&mut tasks.phase, Phase::Moving) {
            Phase::Created(h) => Phase::Started(h.started()),
            other => other,
        };
        self.events.publish(TaskEvent::Started(ev::TaskStart {
            container_id: req.id.clone(),
            pid,
            ..Default::default()
        }));
        if let Some(exit) = deferred {
            self.events.publish(exit);
        }
        tracing::info!(pid, "started");
        Ok(api::StartResponse {
            pid,
            ..Default::default()
        })
    }

    fn start_exec(&self, id: &str, exec_id: &str) -> Result<api::StartResponse, ShimError> {
        let (spec, paths) = {
            let tasks = lock(&self.tasks);
            Self::check_id(&tasks, id)?;
            let exec = tasks
                .execs
                .get(exec_id)
                .ok_or_else(|| ShimError::ExecNotFound {
                    id: id.to_string(),
                    exec_id: exec_id.to_string(),
                })?;
            if !matches!(exec.state, ExecState::Defined) {
                return Err(ShimError::ExecWrongState {
                    op: "start",
                    exec_id: exec_id.to_string(),
                    state: exec.state.name(),
                });
            }
            if !matches!(tasks.phase, Phase::Started(_)) {
                return Err(Self::wrong(&tasks, "exec in"));
            }
            (exec.spec.clone(), exec.paths.clone())
        };
        let runtime = self
            .runtime()
            .ok_or_else(|| ShimError::NotFound(id.to_string()))?;
        let (pid, shim_io) = self
            .launch(id, exec_id, &paths, |launch| {
                runtime.exec(exec_id, &spec, launch)
            })
            .map_err(|e| e.into_shim_error("exec", id))?;
        {
            let mut tasks = lock(&self.tasks);
            if let Some(exec) = tasks.execs.get_mut(exec_id) {
                exec.state = ExecState::Running { pid };
                exec.io = shim_io;
            }
            self.events
                .publish(TaskEvent::ExecStarted(ev::TaskExecStarted {
                    container_id: id.to_string(),
                    exec_id: exec_id.to_string(),
                    pid,
                    ..Default::default()
                }));
        }
        if let Some((status, at)) = runtime.watch_exit(pid) {
            self.process_exited(pid, status, at);
        }
        Ok(api::StartResponse {
            pid,
            ..Default::default()
        })
    }

    /// The world: a watched process exited (called by the reaper, or by a test).
    pub fn process_exited(&self, pid: u32, status: u32, at: SystemTime) {
        let mut tasks = lock(&self.tasks);
        let id = tasks.init.id.clone();
        if tasks.phase.init_exited(pid, status, at) {
            tracing::info!(pid, status, "init exited");
            let event = TaskEvent::Exited(ev::TaskExit {
                container_id: id.clone(),
                id: id.clone(),
                pid,
                exit_status: status,
                exited_at: MessageField::some(timestamp(at)),
                ..Default::default()
            });
            if tasks.starting {
                tasks.deferred_exit = Some(event);
            } else {
                self.events.publish(event);
            }
            self.changed.notify_all();
            return;
        }
        let found = tasks
            .execs
            .iter_mut()
            .find_map(|(exec_id, exec)| match exec.state {
                ExecState::Running { pid: p } if p == pid => {
                    exec.state = ExecState::Exited(Exited { pid, status, at });
                    Some(exec_id.clone())
                }
                _ => None,
            });
        if let Some(exec_id) = found {
            tracing::info!(pid, status, exec_id = %exec_id, "exec exited");
            self.events.publish(TaskEvent::Exited(ev::TaskExit {
                container_id: id,
                id: exec_id,
                pid,
                exit_status: status,
                exited_at: MessageField::some(timestamp(at)),
                ..Default::default()
            }));
            self.changed.notify_all();
        }
    }

    /// ttrpc Delete: removes init's container once it exited (or was only created), or forgets a
    /// finished exec process.
    ///
    /// # Errors
    /// `NotFound` for an unknown task or process, `WrongPhase` while it runs.
    #[tracing::instrument(skip_all, fields(id = %req.id, exec_id = %req.exec_id))]
    pub fn delete(&self, req: api::DeleteRequest) -> Result<api::DeleteResponse, ShimError> {
        let _op = lock(&self.ops);
        if !req.exec_id.is_empty() {
            let mut tasks = lock(&self.tasks);
            Self::check_id(&tasks, &req.id)?;
            let exec = tasks
                .execs
                .get(&req.exec_id)
                .ok_or_else(|| ShimError::ExecNotFound {
                    id: req.id.clone(),
                    exec_id: req.exec_id.clone(),
                })?;
            let exit = match &exec.state {
                ExecState::Running { .. } => {
                    return Err(ShimError::ExecWrongState {
                        op: "delete",
                        exec_id: req.exec_id,
                        state: "running",
                    })
                }
                ExecState::Defined => None,
                ExecState::Exited(exit) => Some(*exit),
            };
            tasks.execs.remove(&req.exec_id);
            return Ok(api::DeleteResponse {
                pid: exit.map_or(0, |e| e.pid),
                exit_status: exit.map_or(0, |e| e.status),
                exited_at: exit.map(|e| timestamp(e.at)).into(),
                ..Default::default()
            });
        }
        let runtime = self.runtime();
        let (created_pid, bundle, mounted) = {
            let tasks = lock(&self.tasks);
            Self::check_id(&tasks, &req.id)?;
            match &tasks.phase {
                Phase::Created(h) => (
                    Some(h.pid()),
                    tasks.init.bundle.clone(),
                    tasks.init.rootfs_mounted,
                ),
                Phase::Exited(_) => (None, tasks.init.bundle.clone(), tasks.init.rootfs_mounted),
                _ => return Err(Self::wrong(&tasks, "delete")),
            }
        };
        if let Some(runtime) = &runtime {
            // A created init is killed by a forced delete (runc: delete --force).
            if let Err(source) = runtime.delete(&req.id, created_pid.is_some()) {
                if !source.is_not_found() {
                    return Err(ShimError::Runtime {
                        op: "delete",
                        id: req.id,
                        source,
                    });
                }
                tracing::debug!(error = %source, "runtime had already forgotten the container");
            }
        }
        if mounted {
            mount::unmount_rootfs(&bundle.join("rootfs"));
        }
        let mut tasks = lock(&self.tasks);
        let now = SystemTime::now();
        let exit = match std::mem::replace(&mut tasks.phase, Phase::Moving) {
            Phase::Created(h) => {
                let exited = h.exited(137, now);
                let exit = exited.exit();
                tasks.phase = Phase::Deleted(exited.deleted());
                exit
            }
            Phase::Exited(h) => {
                let exit = h.exit();
                tasks.phase = Phase::Deleted(h.deleted());
                exit
            }
            other => {
                // Init exited while the runtime deleted a created container.
                let exit = other.exit();
                tasks.phase = other;
                match (exit, std::mem::replace(&mut tasks.phase, Phase::Moving)) {
                    (Some(exit), Phase::Exited(h)) => {
                        tasks.phase = Phase::Deleted(h.deleted());
                        exit
                    }
                    (_, back) => {
                        tasks.phase = back;
                        return Err(Self::wrong(&tasks, "delete"));
                    }
                }
            }
        };
        tasks.execs.clear();
        tasks.init.io = ShimIo::default();
        self.events.publish(TaskEvent::Deleted(ev::TaskDelete {
            container_id: req.id.clone(),
            id: req.id.clone(),
            pid: exit.pid,
            exit_status: exit.status,
            exited_at: MessageField::some(timestamp(exit.at)),
            ..Default::default()
        }));
        self.changed.notify_all();
        tracing::info!(status = exit.status, "deleted");
        Ok(api::DeleteResponse {
            pid: exit.pid,
            exit_status: exit.status,
            exited_at: MessageField::some(timestamp(exit.at)),
            ..Default::default()
        })
    }

    /// ttrpc State of init or of an exec process.
    ///
    /// # Errors
    /// `NotFound` for an unknown task or process.
    pub fn state(&self, req: api::StateRequest) -> Result<api::StateResponse, ShimError> {
        let tasks = lock(&self.tasks);
        Self::check_id(&tasks, &req.id)?;
        let mut resp = api::StateResponse {
            id: req.id.clone(),
            bundle: tasks.init.bundle.to_string_lossy().into_owned(),
            exec_id: req.exec_id.clone(),
            ..Default::default()
        };
        let (status, pid, exit, paths) = if req.exec_id.is_empty() {
            let status = match &tasks.phase {
                Phase::Created(_) => Status::CREATED,
                Phase::Started(h) if h.paused() => Status::PAUSED,
                Phase::Started(_) => Status::RUNNING,
                Phase::Exited(_) => Status::STOPPED,
                Phase::Serving(_) | Phase::Deleted(_) | Phase::Moving => Status::UNKNOWN,
            };
            (
                status,
                tasks.phase.pid().unwrap_or(0),
                tasks.phase.exit(),
                &tasks.init.paths,
            )
        } else {
            let exec = tasks
                .execs
                .get(&req.exec_id)
                .ok_or_else(|| ShimError::ExecNotFound {
                    id: req.id.clone(),
                    exec_id: req.exec_id.clone(),
                })?;
            match &exec.state {
                ExecState::Defined => (Status::CREATED, 0, None, &exec.paths),
                ExecState::Running { pid } => (Status::RUNNING, *pid, None, &exec.paths),
                ExecState::Exited(e) => (Status::STOPPED, e.pid, Some(*e), &exec.paths),
            }
        };
        resp.status = status.into();
        resp.pid = pid;
        resp.stdin = paths.stdin.clone();
        resp.stdout = paths.stdout.clone();
        resp.stderr = paths.stderr.clone();
        resp.terminal = paths.terminal;
        if let Some(exit) = exit {
            resp.exit_status = exit.status;
            resp.exited_at = MessageField::some(timestamp(exit.at));
        }
        Ok(resp)
    }

    /// ttrpc Kill: signals init through the runtime, or an exec process directly.
    ///
    /// # Errors
    /// `NotFound` for an unknown task or process and for one that already finished.
    #[tracing::instrument(skip_all, fields(id = %req.id, exec_id = %req.exec_id, signal = req.signal))]
    pub fn kill(&self, req: api::KillRequest) -> Result<(), ShimError> {
        let _op = lock(&self.ops);
        {
            let tasks = lock(&self.tasks);
            Self::check_id(&tasks, &req.id)?;
            if !req.exec_id.is_empty() {
                let exec =
                    tasks
                        .execs
                        .get(&req.exec_id)
                        .ok_or_else(|| ShimError::ExecNotFound {
                            id: req.id.clone(),
                            exec_id: req.exec_id.clone(),
                        })?;
                return match exec.state {
                    ExecState::Running { pid } => {
                        let signal = nix::sys::signal::Signal::try_from(req.signal as i32)
                            .map_err(|_| ShimError::Invalid(format!("signal {}", req.signal)))?;
                        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal)
                            .map_err(|e| ShimError::Runtime {
                                op: "kill",
                                id: req.id.clone(),
                                source: RuntimeError::File {
                                    path: PathBuf::from(format!("/proc/{pid}")),
                                    source: e.into(),
                                },
                            })
                    }
                    ExecState::Exited(_) => Err(ShimError::Finished(req.exec_id.clone())),
                    ExecState::Defined => Err(ShimError::ExecWrongState {
                        op: "kill",
                        exec_id: req.exec_id.clone(),
                        state: "created",
                    }),
                };
            }
            match tasks.phase {
                Phase::Created(_) | Phase::Started(_) => {}
                Phase::Exited(_) => return Err(ShimError::Finished(req.id.clone())),
                _ => return Err(Self::wrong(&tasks, "kill")),
            }
        }
        let runtime = self
            .runtime()
            .ok_or_else(|| ShimError::NotFound(req.id.clone()))?;
        match runtime.kill(&req.id, req.signal, req.all) {
            Ok(()) => Ok(()),
            Err(source) => {
                // The process may have exited between our check and the runtime's.
                let finished = matches!(lock(&self.tasks).phase, Phase::Exited(_));
                if finished || source.is_not_found() {
                    Err(ShimError::Finished(req.id))
                } else {
                    Err(ShimError::Runtime {
                        op: "kill",
                        id: req.id,
                        source,
                    })
                }
            }
        }
    }

    /// ttrpc Exec: records an exec process to be started later.
    ///
    /// # Errors
    /// `NotFound`, `AlreadyExists` for a known exec id, `WrongPhase` unless init runs.
    #[tracing::instrument(skip_all, fields(id = %req.id, exec_id = %req.exec_id))]
    pub fn exec(&self, req: api::ExecProcessRequest) -> Result<(), ShimError> {
        let mut tasks = lock(&self.tasks);
        Self::check_id(&tasks, &req.id)?;
        if !matches!(tasks.phase, Phase::Started(_)) {
            return Err(Self::wrong(&tasks, "exec in"));
        }
        if req.exec_id.is_empty() {
            return Err(ShimError::Invalid("empty exec id".into()));
        }
        if tasks.execs.contains_key(&req.exec_id) {
            return Err(ShimError::AlreadyExists(req.exec_id));
        }
        let spec = req
            .spec
            .as_ref()
            .map(|a| a.value.clone())
            .unwrap_or_default();
        tasks.execs.insert(
            req.exec_id.clone(),
            ExecProcess {
                spec,
                paths: StdioPaths {
                    stdin: req.stdin,
                    stdout: req.stdout,
                    stderr: req.stderr,
                    terminal: req.terminal,
                },
                state: ExecState::Defined,
                io: ShimIo::default(),
            },
        );
        self.events.publish(TaskEvent::ExecAdded(ev::TaskExecAdded {
            container_id: req.id,
            exec_id: req.exec_id,
            ..Default::default()
        }));
        Ok(())
    }

    /// ttrpc Pause (`pause == true`) or Resume.
    ///
    /// # Errors
    /// `NotFound`, `WrongPhase` unless init runs (for pause) or is paused (for resume), or the
    /// runtime's failure.
    #[tracing::instrument(skip(self))]
    pub fn pause(&self, id: &str, pause: bool) -> Result<(), ShimError> {
        let _op = lock(&self.ops);
        let op = if pause { "pause" } else { "resume" };
        {
            let tasks = lock(&self.tasks);
            Self::check_id(&tasks, id)?;
            match &tasks.phase {
                Phase::Started(h) if h.paused() != pause => {}
                _ => return Err(Self::wrong(&tasks, op)),
            }
        }
        let runtime = self
            .runtime()
            .ok_or_else(|| ShimError::NotFound(id.to_string()))?;
        let result = if pause {
            runtime.pause(id)
        } else {
            runtime.resume(id)
        };
        result.map_err(|source| ShimError::Runtime {
            op,
            id: id.to_string(),
            source,
        })?;
        let mut tasks = lock(&self.tasks);
        if let Phase::Started(h) = &mut tasks.phase {
            h.set_paused(pause);
        }
        let container_id = id.to_string();
        self.events.publish(if pause {
            TaskEvent::Paused(ev::TaskPaused {
                container_id,
                ..Default::default()
            })
        } else {
            TaskEvent::Resumed(ev::TaskResumed {
                container_id,
                ..Default::default()
            })
        });
        Ok(())
    }

    /// ttrpc Pids: the processes in the container, exec processes marked with their exec id.
    ///
    /// # Errors
    /// `NotFound`, or the runtime's failure.
    pub fn pids(&self, id: &str) -> Result<api::PidsResponse, ShimError> {
        let exec_pids: HashMap<u32, String> = {
            let tasks = lock(&self.tasks);
            Self::check_id(&tasks, id)?;
            tasks
                .execs
                .iter()
                .filter_map(|(exec_id, e)| match e.state {
                    ExecState::Running { pid } => Some((pid, exec_id.clone())),
                    _ => None,
                })
                .collect()
        };
        let runtime = self
            .runtime()
            .ok_or_else(|| ShimError::NotFound(id.to_string()))?;
        let pids = runtime.ps(id).map_err(|source| ShimError::Runtime {
            op: "ps",
            id: id.to_string(),
            source,
        })?;
        Ok(api::PidsResponse {
            processes: pids
                .into_iter()
                .map(|pid| ProcessInfo {
                    pid,
                    info: exec_pids.get(&pid).map(|e| process_details(e)).into(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
    }

    /// ttrpc ResizePty.
    ///
    /// # Errors
    /// `NotFound` for an unknown task or process.
    pub fn resize_pty(&self, req: api::ResizePtyRequest) -> Result<(), ShimError> {
        let tasks = lock(&self.tasks);
        Self::check_id(&tasks, &req.id)?;
        let io = if req.exec_id.is_empty() {
            &tasks.init.io
        } else {
            &tasks
                .execs
                .get(&req.exec_id)
                .ok_or_else(|| ShimError::ExecNotFound {
                    id: req.id.clone(),
                    exec_id: req.exec_id.clone(),
                })?
                .io
        };
        if let Some(console) = io.console() {
            let clamp = |v: u32| v.min(u16::MAX as u32) as u16;
            crate::sys::tty::set_window_size(
                std::os::fd::AsFd::as_fd(console),
                clamp(req.height),
                clamp(req.width),
            )
            .map_err(|e| ShimError::Io {
                id: req.id.clone(),
                source: IoError::NoConsole(Some(e)),
            })?;
        }
        Ok(())
    }

    /// ttrpc CloseIO: closes the shim's hold on the process's stdin.
    ///
    /// # Errors
    /// `NotFound` for an unknown task or process.
    pub fn close_io(&self, req: api::CloseIORequest) -> Result<(), ShimError> {
        let mut tasks = lock(&self.tasks);
        Self::check_id(&tasks, &req.id)?;
        if !req.stdin {
            return Ok(());
        }
        if req.exec_id.is_empty() {
            tasks.init.io.close_stdin();
        } else {
            tasks
                .execs
                .get_mut(&req.exec_id)
                .ok_or_else(|| ShimError::ExecNotFound {
                    id: req.id.clone(),
                    exec_id: req.exec_id.clone(),
                })?
                .io
                .close_stdin();
        }
        Ok(())
    }

    /// ttrpc Update: new resources (runtime-spec `LinuxResources` JSON) through the runtime.
    ///
    /// # Errors
    /// `NotFound`, `WrongPhase` unless init runs, or the runtime's failure.
    pub fn update(&self, req: api::UpdateTaskRequest) -> Result<(), ShimError> {
        let _op = lock(&self.ops);
        {
            let tasks = lock(&self.tasks);
            Self::check_id(&tasks, &req.id)?;
            if !matches!(tasks.phase, Phase::Started(_) | Phase::Created(_)) {
                return Err(Self::wrong(&tasks, "update"));
            }
        }
        let resources = req
            .resources
            .as_ref()
            .map(|a| a.value.clone())
            .unwrap_or_default();
        let runtime = self
            .runtime()
            .ok_or_else(|| ShimError::NotFound(req.id.clone()))?;
        runtime
            .update(&req.id, &resources)
            .map_err(|source| ShimError::Runtime {
                op: "update",
                id: req.id,
                source,
            })
    }

    /// ttrpc Wait: blocks until init or the exec process exited.
    ///
    /// # Errors
    /// `NotFound` for an unknown task or process, `WrongPhase` for an exec never started.
    pub fn wait(&self, req: api::WaitRequest) -> Result<api::WaitResponse, ShimError> {
        let mut tasks = lock(&self.tasks);
        loop {
            Self::check_id(&tasks, &req.id)?;
            let exit = if req.exec_id.is_empty() {
                tasks.phase.exit()
            } else {
                match tasks.execs.get(&req.exec_id).map(|e| &e.state) {
                    None => {
                        return Err(ShimError::ExecNotFound {
                            id: req.id,
                            exec_id: req.exec_id,
                        })
                    }
                    Some(ExecState::Exited(e)) => Some(*e),
                    Some(_) => None,
                }
            };
            if let Some(exit) = exit {
                return Ok(api::WaitResponse {
                    exit_status: exit.status,
                    exited_at: MessageField::some(timestamp(exit.at)),
                    ..Default::default()
                });
            }
            tasks = self.changed.wait(tasks).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// ttrpc Stats: cgroup metrics of init.
    ///
    /// # Errors
    /// `NotFound`, `WrongPhase` unless init is alive, or the cgroup read's failure.
    pub fn stats(&self, id: &str) -> Result<api::StatsResponse, ShimError> {
        let pid = {
            let tasks = lock(&self.tasks);
            Self::check_id(&tasks, id)?;
            match &tasks.phase {
                Phase::Created(h) => h.pid(),
                Phase::Started(h) => h.pid(),
                _ => return Err(Self::wrong(&tasks, "read metrics of")),
            }
        };
        let any = stats::metrics(pid, &self.cgroup_root).map_err(|source| ShimError::Stats {
            id: id.to_string(),
            source,
        })?;
        Ok(api::StatsResponse {
            stats: MessageField::some(any),
            ..Default::default()
        })
    }

    /// ttrpc Connect: the shim's pid and init's.
    pub fn connect(&self) -> api::ConnectResponse {
        let tasks = lock(&self.tasks);
        api::ConnectResponse {
            shim_pid: std::process::id(),
            task_pid: tasks.phase.pid().unwrap_or(0),
            version: env!("CARGO_PKG_VERSION").to_string(),
            ..Default::default()
        }
    }

    /// ttrpc Shutdown: the shim may exit only when no process is left (never created, or
    /// deleted).
    pub fn shutdown(&self) -> Shutdown {
        let tasks = lock(&self.tasks);
        let execs_alive = tasks
            .execs
            .values()
            .any(|e| matches!(e.state, ExecState::Running { .. }));
        match tasks.phase {
            Phase::Serving(_) | Phase::Deleted(_) if !execs_alive => Shutdown::Exit,
            _ => Shutdown::Refused,
        }
    }
}

/// A failure while launching a process.
#[derive(Debug)]
enum LaunchError {
    Io(IoError),
    Runtime(RuntimeError),
}

impl LaunchError {
    fn into_shim_error(self, op: &'static str, id: &str) -> ShimError {
        match self {
            Self::Io(source) => ShimError::Io {
                id: id.to_string(),
                source,
            },
            Self::Runtime(source) => ShimError::Runtime {
                op,
                id: id.to_string(),
                source,
            },
        }
    }
}
