//! The task manager: every task of every namespace, each served by its own shim. It starts
//! shims (bundle, `start`, ttrpc), drives them, filters the events they forward (an exit is
//! published once, also across daemon restarts), and after a restart re-attaches to the shims it
//! finds in the bundles, reports exits that happened while it was down, and cleans up after
//! shims that are gone.
//!
//! The manager blocks (ttrpc calls, Wait): the gRPC layer calls it from blocking threads.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use containerd_shim_protos::api;
use containerd_shim_protos::events::task as ev;
use containerd_shim_protos::shim::event::Envelope;
use protobuf::well_known_types::any::Any;
use protobuf::well_known_types::timestamp::Timestamp;
use protobuf::{Message, MessageField};
use refeng_spec::task::{ExecStatus, Status, TaskError};

use super::bundle::{Bundle, BundleError, Layout, StoredAny, TaskRecord};
use super::forward::{EventEndpoint, EventSink, ForwardError, ShimLog};
use super::shim::{find_binary, Invocation, ShimClient, ShimError};
use super::task::{refuse, Exit, Task, TaskState, TransitionError};

/// The codes of containerd's errdefs a task operation fails with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// NotFound
    NotFound,
    /// AlreadyExists
    AlreadyExists,
    /// FailedPrecondition
    FailedPrecondition,
    /// InvalidArgument
    InvalidArgument,
    /// Unavailable: the task's shim is gone.
    Unavailable,
    /// Unimplemented
    Unimplemented,
    /// Internal
    Internal,
    /// Unknown: the shim failed without a code.
    Unknown,
}

/// Why a task operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TaskOpError {
    /// refused by the task model
    #[error(transparent)]
    Refused(#[from] TaskError),
    /// the bundle could not be made
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// the shim failed
    #[error(transparent)]
    Shim(#[from] ShimError),
    /// {what} is not supported
    #[error("{0} is not supported")]
    Unsupported(String),
    /// the log of task {0} cannot be read
    #[error("the log of task {0} cannot be read")]
    Log(String, #[source] std::io::Error),
}

impl From<TransitionError> for TaskOpError {
    fn from(e: TransitionError) -> Self {
        match e {
            TransitionError::Refused(e) => TaskOpError::Refused(e),
            TransitionError::Shim(e) => TaskOpError::Shim(*e),
        }
    }
}

impl TaskOpError {
    /// The gRPC code containerd answers this error with.
    pub fn code(&self) -> ErrorCode {
        match self {
            TaskOpError::Refused(e) => match e.code() {
                refeng_spec::task::Code::NotFound => ErrorCode::NotFound,
                refeng_spec::task::Code::AlreadyExists => ErrorCode::AlreadyExists,
                refeng_spec::task::Code::FailedPrecondition => ErrorCode::FailedPrecondition,
            },
            TaskOpError::Bundle(BundleError::InvalidName { .. }) => ErrorCode::InvalidArgument,
            TaskOpError::Bundle(BundleError::Exists(_)) => ErrorCode::AlreadyExists,
            TaskOpError::Bundle(_) | TaskOpError::Log(..) => ErrorCode::Internal,
            TaskOpError::Unsupported(_) => ErrorCode::Unimplemented,
            TaskOpError::Shim(e) => match e {
                ShimError::RuntimeName(_) => ErrorCode::InvalidArgument,
                ShimError::BinaryNotFound { .. } => ErrorCode::NotFound,
                e if e.is_unreachable() => ErrorCode::Unavailable,
                e => match e.status_code() {
                    Some(ttrpc::Code::NOT_FOUND) => ErrorCode::NotFound,
                    Some(ttrpc::Code::ALREADY_EXISTS) => ErrorCode::AlreadyExists,
                    Some(ttrpc::Code::FAILED_PRECONDITION) => ErrorCode::FailedPrecondition,
                    Some(ttrpc::Code::INVALID_ARGUMENT) => ErrorCode::InvalidArgument,
                    Some(ttrpc::Code::UNIMPLEMENTED) => ErrorCode::Unimplemented,
                    Some(ttrpc::Code::UNAVAILABLE) => ErrorCode::Unavailable,
                    _ => ErrorCode::Unknown,
                },
            },
        }
    }
}

/// Where the manager keeps bundles and how shims reach the daemon.
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    /// The daemon's `--state`.
    pub state: PathBuf,
    /// The daemon's `--root`.
    pub root: PathBuf,
    /// The daemon's gRPC address (shims get it as `-address`).
    pub address: String,
    /// The ttrpc socket shims forward events to (`<address>.ttrpc`, as containerd).
    pub ttrpc_address: PathBuf,
    /// What shims get as `-publish-binary`.
    pub publish_binary: PathBuf,
    /// Where shim binaries are looked up.
    pub shim_dirs: Vec<PathBuf>,
    /// Extra environment for shims.
    pub shim_env: Vec<(OsString, OsString)>,
}

/// A new task.
#[derive(Debug, Clone, Default)]
pub struct CreateTask {
    /// Namespace.
    pub namespace: String,
    /// Container id.
    pub id: String,
    /// Runtime name from the container record.
    pub runtime: String,
    /// Runtime options (the request's, else the container record's).
    pub options: Option<Any>,
    /// The OCI spec (JSON) from the container record.
    pub spec: Vec<u8>,
    /// The rootfs mounts.
    pub rootfs: Vec<api::Mount>,
    /// stdio URIs.
    pub stdio: Stdio,
}

/// A process's stdio.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stdio {
    /// stdin path/URI.
    pub stdin: String,
    /// stdout path/URI.
    pub stdout: String,
    /// stderr path/URI.
    pub stderr: String,
    /// Whether the process has a pty.
    pub terminal: bool,
}

/// One process as Get and List report it.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessInfo {
    /// Task id.
    pub id: String,
    /// Exec id ("" for init).
    pub exec_id: String,
    /// Pid (0 before an exec starts).
    pub pid: u32,
    /// Status.
    pub status: ProcessStatus,
    /// Exit status once stopped.
    pub exit_status: u32,
    /// Exit time once stopped.
    pub exited_at: Option<Timestamp>,
    /// stdio.
    pub stdio: Stdio,
}

/// A process's status: init's or an exec's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessStatus {
    /// Init.
    Task(Status),
    /// An exec.
    Exec(ExecStatus),
}

#[derive(Debug, Clone)]
enum ExecState {
    Created,
    Running { pid: u32 },
    Stopped(Exit),
}

impl ExecState {
    fn status(&self) -> ExecStatus {
        match self {
            ExecState::Created => ExecStatus::Created,
            ExecState::Running { .. } => ExecStatus::Running,
            ExecState::Stopped(_) => ExecStatus::Stopped,
        }
    }
}

#[derive(Debug)]
struct ExecEntry {
    state: ExecState,
    stdio: Stdio,
}

#[derive(Debug)]
struct Inner {
    /// `None` only while a transition holds the task.
    init: Option<TaskState>,
    execs: BTreeMap<String, ExecEntry>,
    record: TaskRecord,
    stdio: Stdio,
    deleted: bool,
}

#[derive(Debug)]
struct Entry {
    bundle: Bundle,
    shim: ShimClient,
    invocation: Invocation,
    _log: Option<ShimLog>,
    inner: Mutex<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn now() -> Timestamp {
    let d = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
        ..Default::default()
    }
}

type Key = (String, String);
/// Published exits: (exec id, "" for init; pid).
type Published = Vec<(String, u32)>;

/// Every task, by (namespace, id).
pub struct TaskManager {
    config: ManagerConfig,
    layout: Layout,
    tasks: Mutex<BTreeMap<Key, Arc<Entry>>>,
    /// The published exits of recently deleted tasks, oldest first.
    deleted: Mutex<std::collections::VecDeque<(Key, Published)>>,
    bus: EventSink,
}

/// How many deleted tasks' exits are remembered: shims deliver late copies within seconds.
const DELETED_KEPT: usize = 1024;

impl std::fmt::Debug for TaskManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskManager")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn not_found(id: &str) -> TaskOpError {
    TaskOpError::Refused(TaskError::NotFound(id.to_string()))
}

fn exec_not_found(id: &str, exec: &str) -> TaskOpError {
    TaskOpError::Refused(TaskError::ExecNotFound {
        id: id.to_string(),
        exec: exec.to_string(),
    })
}

fn wrong_exec(op: &str, id: &str, exec: &str, status: ExecStatus) -> TaskOpError {
    TaskOpError::Refused(TaskError::ExecState {
        op: op.to_string(),
        id: id.to_string(),
        exec: exec.to_string(),
        status,
    })
}

fn envelope(namespace: &str, topic: &str, type_url: &str, value: Vec<u8>) -> Envelope {
    Envelope {
        timestamp: MessageField::some(now()),
        namespace: namespace.to_string(),
        topic: topic.to_string(),
        event: MessageField::some(Any {
            type_url: type_url.to_string(),
            value,
            ..Default::default()
        }),
        ..Default::default()
    }
}

impl TaskManager {
    /// A manager with no tasks yet; `bus` receives every event to publish. Call
    /// [`TaskManager::restore`] and then [`TaskManager::serve_events`] at start.
    pub fn new(config: ManagerConfig, bus: EventSink) -> Arc<Self> {
        let layout = Layout::new(&config.state, &config.root);
        Arc::new(Self {
            config,
            layout,
            tasks: Mutex::new(BTreeMap::new()),
            deleted: Mutex::new(std::collections::VecDeque::new()),
            bus,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ManagerConfig {
        &self.config
    }

    /// Serves the endpoint shims forward events to; events pass [`TaskManager::on_event`].
    ///
    /// # Errors
    /// [`ForwardError`] when the socket cannot be served.
    pub fn serve_events(self: &Arc<Self>) -> Result<EventEndpoint, ForwardError> {
        let me = Arc::downgrade(self);
        EventEndpoint::serve(
            &self.config.ttrpc_address,
            Arc::new(move |env| {
                if let Some(m) = me.upgrade() {
                    m.on_event(env);
                }
            }),
        )
    }

    fn invocation(&self, bundle: &Bundle, binary: PathBuf) -> Invocation {
        Invocation {
            binary,
            namespace: bundle.namespace.clone(),
            id: bundle.id.clone(),
            bundle: bundle.path.clone(),
            address: self.config.address.clone(),
            ttrpc_address: self.config.ttrpc_address.to_string_lossy().into_owned(),
            publish_binary: self.config.publish_binary.clone(),
            env: self.config.shim_env.clone(),
        }
    }

    fn entry(&self, namespace: &str, id: &str) -> Result<Arc<Entry>, TaskOpError> {
        lock(&self.tasks)
            .get(&(namespace.to_string(), id.to_string()))
            .cloned()
            .ok_or_else(|| not_found(id))
    }

    /// An event from a shim: an exit updates the task and is published once; everything else is
    /// published as it comes.
    pub fn on_event(&self, env: Envelope) {
        if env.topic == "/tasks/exit" {
            if let Some(exit) = exit_of(&env) {
                if !self.note_exit(&env.namespace, &exit) {
                    tracing::debug!(id = %exit.container_id, process = %exit.id, pid = exit.pid, "exit already published");
                    return;
                }
            }
        }
        (self.bus)(env);
    }

    /// Applies an exit a shim reported and records it as published; false when it was
    /// published before (the daemon published it after a restart, or the task is deleted and
    /// this is the shim's late copy).
    fn note_exit(&self, namespace: &str, exit: &ev::TaskExit) -> bool {
        let exec = if exit.id == exit.container_id || exit.id.is_empty() {
            String::new()
        } else {
            exit.id.clone()
        };
        let key = (exec.clone(), exit.pid);
        let tomb = (namespace.to_string(), exit.container_id.clone());
        if let Ok(entry) = self.entry(namespace, &exit.container_id) {
            let mut inner = lock(&entry.inner);
            if inner.record.exits_published.contains(&key) {
                return false;
            }
            let init_pid = inner.init.as_ref().map_or(0, TaskState::pid);
            let same_task = !exec.is_empty() || exit.pid == 0 || init_pid == exit.pid;
            if same_task {
                let done = Exit {
                    pid: exit.pid,
                    exit_status: exit.exit_status,
                    exited_at: exit.exited_at.clone().into_option().unwrap_or_default(),
                };
                apply_exit(&mut inner, &exec, done);
                inner.record.exits_published.push(key);
                if let Err(e) = entry.bundle.write_record(&inner.record) {
                    tracing::warn!(error = %e, "exit not recorded; it may be published again");
                }
                return true;
            }
        }
        // Not (or no longer) this daemon's task: a deleted task's late exit is known here.
        !lock(&self.deleted)
            .iter()
            .any(|(k, published)| *k == tomb && published.contains(&key))
    }

    /// Remembers a deleted task's published exits, for the shim's late copies.
    fn bury(&self, namespace: &str, id: &str, published: Published) {
        let mut deleted = lock(&self.deleted);
        if deleted.len() >= DELETED_KEPT {
            deleted.pop_front();
        }
        deleted.push_back(((namespace.to_string(), id.to_string()), published));
    }

    fn publish_exit(&self, bundle: &Bundle, exec: &str, exit: &Exit) {
        let msg = ev::TaskExit {
            container_id: bundle.id.clone(),
            id: if exec.is_empty() {
                bundle.id.clone()
            } else {
                exec.to_string()
            },
            pid: exit.pid,
            exit_status: exit.exit_status,
            exited_at: MessageField::some(exit.exited_at.clone()),
            ..Default::default()
        };
        (self.bus)(envelope(
            &bundle.namespace,
            "/tasks/exit",
            "containerd.events.TaskExit",
            msg.write_to_bytes().unwrap_or_default(),
        ));
    }

    /// Creates a task: bundle, shim `start`, ttrpc Create. On failure nothing is left behind.
    ///
    /// # Errors
    /// [`TaskOpError`]: AlreadyExists for a task that exists, the shim's error otherwise.
    #[tracing::instrument(skip_all, fields(namespace = %req.namespace, id = %req.id, runtime = %req.runtime))]
    pub fn create(&self, req: CreateTask) -> Result<ProcessInfo, TaskOpError> {
        let key = (req.namespace.clone(), req.id.clone());
        if lock(&self.tasks).contains_key(&key) {
            return Err(TaskError::AlreadyExists(req.id.clone()).into());
        }
        let binary = find_binary(&req.runtime, &self.config.shim_dirs)?;
        let record = TaskRecord {
            runtime: req.runtime.clone(),
            shim_binary: binary.clone(),
            options: req.options.as_ref().map(|o| StoredAny {
                type_url: o.type_url.clone(),
                value: o.value.clone(),
            }),
            execs: Vec::new(),
            exits_published: Vec::new(),
        };
        let bundle = match self
            .layout
            .create(&req.namespace, &req.id, &req.spec, &record)
        {
            Ok(b) => b,
            Err(BundleError::Exists(_)) => {
                return Err(TaskError::AlreadyExists(req.id.clone()).into())
            }
            Err(e) => return Err(e.into()),
        };
        let invocation = self.invocation(&bundle, binary);
        match self.start_and_create(&req, &bundle, &invocation, record) {
            Ok((entry, info)) => {
                lock(&self.tasks).insert(key, entry);
                Ok(info)
            }
            Err(e) => {
                bundle.remove();
                Err(e)
            }
        }
    }

    fn start_and_create(
        &self,
        req: &CreateTask,
        bundle: &Bundle,
        invocation: &Invocation,
        record: TaskRecord,
    ) -> Result<(Arc<Entry>, ProcessInfo), TaskOpError> {
        let log = ShimLog::open(&bundle.path.join("log"), &bundle.namespace, &bundle.id)
            .map_err(|e| TaskOpError::Log(bundle.id.clone(), e))?;
        let began = std::time::Instant::now();
        let address = invocation.start(req.options.as_ref())?;
        tracing::debug!(elapsed = ?began.elapsed(), %address, "shim started");
        let cleanup = |e: TaskOpError| {
            if let Err(de) = invocation.delete() {
                tracing::warn!(error = %de, "shim delete after a failed create");
            }
            e
        };
        let shim = ShimClient::connect(&address).map_err(|e| cleanup(e.into()))?;
        let create = api::CreateTaskRequest {
            id: req.id.clone(),
            bundle: bundle.path.to_string_lossy().into_owned(),
            rootfs: req.rootfs.clone(),
            terminal: req.stdio.terminal,
            stdin: req.stdio.stdin.clone(),
            stdout: req.stdio.stdout.clone(),
            stderr: req.stdio.stderr.clone(),
            options: req.options.clone().into(),
            ..Default::default()
        };
        let began = std::time::Instant::now();
        let pid = match shim.create(&create) {
            Ok(resp) => {
                tracing::debug!(elapsed = ?began.elapsed(), pid = resp.pid, "shim created the task");
                resp.pid
            }
            Err(e) => {
                let _ = shim.shutdown(&api::ShutdownRequest {
                    id: req.id.clone(),
                    now: true,
                    ..Default::default()
                });
                return Err(cleanup(e.into()));
            }
        };
        let entry = Arc::new(Entry {
            bundle: bundle.clone(),
            shim,
            invocation: invocation.clone(),
            _log: Some(log),
            inner: Mutex::new(Inner {
                init: Some(TaskState::Created(Task::new(&req.id, pid))),
                execs: BTreeMap::new(),
                record,
                stdio: req.stdio.clone(),
                deleted: false,
            }),
        });
        let info = ProcessInfo {
            id: req.id.clone(),
            exec_id: String::new(),
            pid,
            status: ProcessStatus::Task(Status::Created),
            exit_status: 0,
            exited_at: None,
            stdio: req.stdio.clone(),
        };
        Ok((entry, info))
    }

    /// Brings the daemon's view of a task up to the shim's: an exit may have happened.
    fn refresh(entry: &Entry, inner: &mut Inner) {
        let id = entry.bundle.id.clone();
        if matches!(inner.init, Some(TaskState::Stopped(_))) {
            return;
        }
        match entry.shim.state(&api::StateRequest {
            id: id.clone(),
            ..Default::default()
        }) {
            Ok(resp) => {
                if let Some(init) = inner.init.take() {
                    inner.init = Some(init.catch_up(&resp));
                }
            }
            Err(e) => tracing::debug!(%id, error = %e, "shim state"),
        }
    }

    fn refresh_exec(entry: &Entry, inner: &mut Inner, exec: &str) {
        let Some(e) = inner.execs.get(exec) else {
            return;
        };
        if !matches!(e.state, ExecState::Running { .. }) {
            return;
        }
        if let Ok(resp) = entry.shim.state(&api::StateRequest {
            id: entry.bundle.id.clone(),
            exec_id: exec.to_string(),
            ..Default::default()
        }) {
            if resp.status.enum_value_or_default() == api::Status::STOPPED {
                apply_exit(
                    inner,
                    exec,
                    Exit {
                        pid: resp.pid,
                        exit_status: resp.exit_status,
                        exited_at: resp.exited_at.into_option().unwrap_or_default(),
                    },
                );
            }
        }
    }

    /// Starts init (`exec` empty) or an exec process; returns its pid.
    ///
    /// # Errors
    /// FailedPrecondition from the model when the process is not created (or the task not
    /// running, for an exec); NotFound for an unknown task or exec.
    #[tracing::instrument(skip(self))]
    pub fn start(&self, namespace: &str, id: &str, exec: &str) -> Result<u32, TaskOpError> {
        let entry = self.entry(namespace, id)?;
        let mut inner = lock(&entry.inner);
        Self::refresh(&entry, &mut inner);
        if exec.is_empty() {
            let init = inner.init.take().ok_or_else(|| not_found(id))?;
            let (next, result) = match init {
                TaskState::Created(t) => match t.start(&entry.shim) {
                    Ok(t) => {
                        let pid = t.pid;
                        (TaskState::Running(t), Ok(pid))
                    }
                    Err((t, e)) => (TaskState::Created(t), Err(e.into())),
                },
                other => {
                    let e = refuse("start", id, other.status());
                    (other, Err(e.into()))
                }
            };
            inner.init = Some(next);
            return result;
        }
        // The model's order: an unknown exec is not found whatever the task's state.
        if !inner.execs.contains_key(exec) {
            return Err(exec_not_found(id, exec));
        }
        self.require_running(&inner, id, "start a process in")?;
        let e = inner
            .execs
            .get(exec)
            .ok_or_else(|| exec_not_found(id, exec))?;
        if !matches!(e.state, ExecState::Created) {
            return Err(wrong_exec("start", id, exec, e.state.status()));
        }
        let resp = entry.shim.start(&api::StartRequest {
            id: id.to_string(),
            exec_id: exec.to_string(),
            ..Default::default()
        })?;
        if let Some(e) = inner.execs.get_mut(exec) {
            // The exit may have been reported already (a short process).
            if matches!(e.state, ExecState::Created) {
                e.state = ExecState::Running { pid: resp.pid };
            }
        }
        Ok(resp.pid)
    }

    fn require_running(&self, inner: &Inner, id: &str, op: &str) -> Result<(), TaskOpError> {
        match inner.init.as_ref().map(TaskState::status) {
            Some(Status::Running) => Ok(()),
            Some(s) => Err(refuse(op, id, s).into()),
            None => Err(not_found(id)),
        }
    }

    /// Signals init or an exec process.
    ///
    /// # Errors
    /// NotFound for a stopped process ("process already finished") or an unknown one;
    /// FailedPrecondition for an exec of a paused task (a frozen exec would keep SIGKILL
    /// pending under the v1 freezer) or a created exec.
    #[tracing::instrument(skip(self))]
    pub fn kill(
        &self,
        namespace: &str,
        id: &str,
        exec: &str,
        signal: u32,
        all: bool,
    ) -> Result<(), TaskOpError> {
        let entry = self.entry(namespace, id)?;
        let mut inner = lock(&entry.inner);
        Self::refresh(&entry, &mut inner);
        if exec.is_empty() {
            return match inner.init.as_ref() {
                Some(TaskState::Created(t)) => Ok(t.kill(&entry.shim, signal, all)?),
                Some(TaskState::Running(t)) => Ok(t.kill(&entry.shim, signal, all)?),
                Some(TaskState::Paused(t)) => Ok(t.kill(&entry.shim, signal, all)?),
                Some(TaskState::Stopped(_)) | None => Err(not_found(id)),
            };
        }
        if !inner.execs.contains_key(exec) {
            return Err(exec_not_found(id, exec));
        }
        if let Some(Status::Paused) = inner.init.as_ref().map(TaskState::status) {
            return Err(refuse("kill a process in", id, Status::Paused).into());
        }
        Self::refresh_exec(&entry, &mut inner, exec);
        let e = inner
            .execs
            .get(exec)
            .ok_or_else(|| exec_not_found(id, exec))?;
        match e.state {
            ExecState::Running { .. } => {
                entry.shim.kill(&api::KillRequest {
                    id: id.to_string(),
                    exec_id: exec.to_string(),
                    signal,
                    all,
                    ..Default::default()
                })?;
                Ok(())
            }
            ExecState::Stopped(_) => Err(exec_not_found(id, exec)),
            ExecState::Created => Err(wrong_exec("kill", id, exec, ExecStatus::Created)),
        }
    }

    /// Freezes a running task.
    ///
    /// # Errors
    /// FailedPrecondition unless running; NotFound for an unknown task.
    #[tracing::instrument(skip(self))]
    pub fn pause(&self, namespace: &str, id: &str) -> Result<(), TaskOpError> {
        self.transition(namespace, id, |init, shim| match init {
            TaskState::Running(t) => match t.pause(shim) {
                Ok(t) => (TaskState::Paused(t), Ok(())),
                Err((t, e)) => (TaskState::Running(t), Err(e.into())),
            },
            other => {
                let e = refuse("pause", id, other.status());
                (other, Err(e.into()))
            }
        })
    }

    /// Thaws a paused task.
    ///
    /// # Errors
    /// FailedPrecondition unless paused; NotFound for an unknown task.
    #[tracing::instrument(skip(self))]
    pub fn resume(&self, namespace: &str, id: &str) -> Result<(), TaskOpError> {
        self.transition(namespace, id, |init, shim| match init {
            TaskState::Paused(t) => match t.resume(shim) {
                Ok(t) => (TaskState::Running(t), Ok(())),
                Err((t, e)) => (TaskState::Paused(t), Err(e.into())),
            },
            other => {
                let e = refuse("resume", id, other.status());
                (other, Err(e.into()))
            }
        })
    }

    fn transition<R>(
        &self,
        namespace: &str,
        id: &str,
        f: impl FnOnce(TaskState, &ShimClient) -> (TaskState, Result<R, TaskOpError>),
    ) -> Result<R, TaskOpError> {
        let entry = self.entry(namespace, id)?;
        let mut inner = lock(&entry.inner);
        Self::refresh(&entry, &mut inner);
        let init = inner.init.take().ok_or_else(|| not_found(id))?;
        let (next, result) = f(init, &entry.shim);
        inner.init = Some(next);
        result
    }

    /// Deletes a created or stopped task: the shim deletes it from the runtime and is shut
    /// down, and the bundle is removed.
    ///
    /// # Errors
    /// FailedPrecondition for a running or paused task; NotFound for an unknown one.
    #[tracing::instrument(skip(self))]
    pub fn delete(&self, namespace: &str, id: &str) -> Result<Exit, TaskOpError> {
        let entry = self.entry(namespace, id)?;
        let mut inner = lock(&entry.inner);
        Self::refresh(&entry, &mut inner);
        let init = inner.init.take().ok_or_else(|| not_found(id))?;
        let (next, result): (_, Result<Exit, TaskOpError>) = match init {
            TaskState::Created(t) => match t.delete(&entry.shim) {
                Ok(exit) => (None, Ok(exit)),
                Err((t, e)) => (Some(TaskState::Created(t)), Err(e.into())),
            },
            TaskState::Stopped(t) => match t.delete(&entry.shim) {
                Ok(exit) => (None, Ok(exit)),
                Err((t, e)) => (Some(TaskState::Stopped(t)), Err(e.into())),
            },
            other => {
                let e = refuse("delete", id, other.status());
                (Some(other), Err(e.into()))
            }
        };
        inner.init = next;
        let exit = match result {
            Ok(exit) => exit,
            Err(TaskOpError::Shim(e)) if e.is_unreachable() => {
                // The shim died: clean up after it as a restart would, and the task is gone.
                tracing::warn!(%id, error = %e, "shim gone; cleaning up with its delete");
                let mut record = inner.record.clone();
                inner.deleted = true;
                drop(inner);
                lock(&self.tasks).remove(&(namespace.to_string(), id.to_string()));
                let resp = entry.invocation.delete().unwrap_or_default();
                let exit = Exit {
                    pid: resp.pid,
                    exit_status: resp.exit_status,
                    exited_at: resp.exited_at.into_option().unwrap_or_else(now),
                };
                if !record.exits_published.iter().any(|(e, _)| e.is_empty()) {
                    self.publish_exit(&entry.bundle, "", &exit);
                    record.exits_published.push((String::new(), exit.pid));
                }
                self.bury(namespace, id, record.exits_published);
                entry.bundle.remove();
                return Ok(exit);
            }
            Err(e) => return Err(e),
        };
        inner.deleted = true;
        let published = inner.record.exits_published.clone();
        drop(inner);
        lock(&self.tasks).remove(&(namespace.to_string(), id.to_string()));
        self.bury(namespace, id, published);
        self.shut_down(&entry);
        Ok(exit)
    }

    fn shut_down(&self, entry: &Entry) {
        let shim_pid = entry
            .shim
            .connect_info(&api::ConnectRequest {
                id: entry.bundle.id.clone(),
                ..Default::default()
            })
            .map(|r| r.shim_pid)
            .unwrap_or(0);
        if let Err(e) = entry.shim.shutdown(&api::ShutdownRequest {
            id: entry.bundle.id.clone(),
            ..Default::default()
        }) {
            // The shim exits while answering; a broken connection is its goodbye.
            if !e.is_unreachable() {
                tracing::warn!(id = %entry.bundle.id, error = %e, "shim shutdown");
            }
        }
        // The shim may still write into its bundle on its way out (its log, its socket's
        // files): the bundle goes once the process has.
        wait_gone(shim_pid, SHIM_EXIT_WAIT);
        entry.bundle.remove();
    }

    /// Adds an exec process to a running task.
    ///
    /// # Errors
    /// FailedPrecondition unless running; AlreadyExists for a used exec id.
    #[tracing::instrument(skip(self, spec))]
    pub fn exec(
        &self,
        namespace: &str,
        id: &str,
        exec: &str,
        spec: Option<Any>,
        stdio: Stdio,
    ) -> Result<(), TaskOpError> {
        super::bundle::validate_name("exec id", exec)?;
        let entry = self.entry(namespace, id)?;
        let mut inner = lock(&entry.inner);
        Self::refresh(&entry, &mut inner);
        if inner.execs.contains_key(exec) {
            return Err(TaskError::ExecAlreadyExists {
                id: id.to_string(),
                exec: exec.to_string(),
            }
            .into());
        }
        self.require_running(&inner, id, "exec in")?;
        entry.shim.exec(&api::ExecProcessRequest {
            id: id.to_string(),
            exec_id: exec.to_string(),
            terminal: stdio.terminal,
            stdin: stdio.stdin.clone(),
            stdout: stdio.stdout.clone(),
            stderr: stdio.stderr.clone(),
            spec: spec.into(),
            ..Default::default()
        })?;
        inner.execs.insert(
            exec.to_string(),
            ExecEntry {
                state: ExecState::Created,
                stdio,
            },
        );
        inner.record.execs.push(exec.to_string());
        if let Err(e) = entry.bundle.write_record(&inner.record) {
            tracing::warn!(error = %e, "exec id not recorded; a restarted daemon will not know it");
        }
        Ok(())
    }

    /// Deletes a created or stopped exec process.
    ///
    /// # Errors
    /// FailedPrecondition for a running exec; NotFound for an unknown one.
    #[tracing::instrument(skip(self))]
    pub fn delete_process(
        &self,
        namespace: &str,
        id: &str,
        exec: &str,
    ) -> Result<Exit, TaskOpError> {
        let entry = self.entry(namespace, id)?;
        let mut inner = lock(&entry.inner);
        Self::refresh_exec(&entry, &mut inner, exec);
        let e = inner
            .execs
            .get(exec)
            .ok_or_else(|| exec_not_found(id, exec))?;
        if let ExecState::Running { .. } = e.state {
            return Err(wrong_exec("delete", id, exec, ExecStatus::Running));
        }
        let resp = entry.shim.delete(&api::DeleteRequest {
            id: id.to_string(),
            exec_id: exec.to_string(),
            ..Default::default()
        })?;
        inner.execs.remove(exec);
        inner.record.execs.retain(|e| e != exec);
        if let Err(e) = entry.bundle.write_record(&inner.record) {
            tracing::warn!(error = %e, "exec removal not recorded");
        }
        Ok(Exit {
            pid: resp.pid,
            exit_status: resp.exit_status,
            exited_at: resp.exited_at.into_option().unwrap_or_default(),
        })
    }

    /// Init or an exec process as Get reports it.
    ///
    /// # Errors
    /// NotFound for an unknown task or exec.
    pub fn get(&self, namespace: &str, id: &str, exec: &str) -> Result<ProcessInfo, TaskOpError> {
        let entry = self.entry(namespace, id)?;
        let mut inner = lock(&entry.inner);
        if exec.is_empty() {
            Self::refresh(&entry, &mut inner);
            let init = inner.init.as_ref().ok_or_else(|| not_found(id))?;
            let exit = init.exit();
            return Ok(ProcessInfo {
                id: id.to_string(),
                exec_id: String::new(),
                pid: init.pid(),
                status: ProcessStatus::Task(init.status()),
                exit_status: exit.as_ref().map_or(0, |e| e.exit_status),
                exited_at: exit.map(|e| e.exited_at),
                stdio: inner.stdio.clone(),
            });
        }
        Self::refresh_exec(&entry, &mut inner, exec);
        let e = inner
            .execs
            .get(exec)
            .ok_or_else(|| exec_not_found(id, exec))?;
        let (pid, exit_status, exited_at) = match &e.state {
            ExecState::Created => (0, 0, None),
            ExecState::Running { pid } => (*pid, 0, None),
            ExecState::Stopped(x) => (x.pid, x.exit_status, Some(x.exited_at.clone())),
        };
        Ok(ProcessInfo {
            id: id.to_string(),
            exec_id: exec.to_string(),
            pid,
            status: ProcessStatus::Exec(e.state.status()),
            exit_status,
            exited_at,
            stdio: e.stdio.clone(),
        })
    }

    /// Every task of `namespace` (init processes).
    pub fn list(&self, namespace: &str) -> Vec<ProcessInfo> {
        let ids: Vec<String> = lock(&self.tasks)
            .keys()
            .filter(|(ns, _)| ns == namespace)
            .map(|(_, id)| id.clone())
            .collect();
        ids.iter()
            .filter_map(|id| self.get(namespace, id, "").ok())
            .collect()
    }

    /// Waits for init or an exec process to exit (blocks).
    ///
    /// # Errors
    /// NotFound for an unknown process; Unavailable when the shim goes away while waiting.
    pub fn wait(&self, namespace: &str, id: &str, exec: &str) -> Result<Exit, TaskOpError> {
        let entry = self.entry(namespace, id)?;
        {
            let mut inner = lock(&entry.inner);
            if exec.is_empty() {
                if let Some(exit) = inner.init.as_ref().and_then(TaskState::exit) {
                    return Ok(exit);
                }
            } else {
                Self::refresh_exec(&entry, &mut inner, exec);
                match inner.execs.get(exec).map(|e| &e.state) {
                    None => return Err(exec_not_found(id, exec)),
                    Some(ExecState::Stopped(exit)) => return Ok(exit.clone()),
                    Some(_) => {}
                }
            }
        }
        // Without the lock: other requests go on while this one waits.
        let resp = entry.shim.wait(&api::WaitRequest {
            id: id.to_string(),
            exec_id: exec.to_string(),
            ..Default::default()
        })?;
        let mut inner = lock(&entry.inner);
        let pid = if exec.is_empty() {
            inner.init.as_ref().map_or(0, TaskState::pid)
        } else {
            match inner.execs.get(exec).map(|e| &e.state) {
                Some(ExecState::Running { pid }) => *pid,
                _ => 0,
            }
        };
        let exit = Exit {
            pid,
            exit_status: resp.exit_status,
            exited_at: resp.exited_at.into_option().unwrap_or_default(),
        };
        apply_exit(&mut inner, exec, exit.clone());
        Ok(exit)
    }

    /// Passes a request that needs no state change to the task's shim, after checking that the
    /// task (and exec, if named) exists.
    fn pass<R>(
        &self,
        namespace: &str,
        id: &str,
        exec: &str,
        f: impl FnOnce(&ShimClient) -> Result<R, ShimError>,
    ) -> Result<R, TaskOpError> {
        let entry = self.entry(namespace, id)?;
        if !exec.is_empty() && !lock(&entry.inner).execs.contains_key(exec) {
            return Err(exec_not_found(id, exec));
        }
        Ok(f(&entry.shim)?)
    }

    /// Resizes a process's pty.
    ///
    /// # Errors
    /// NotFound for an unknown process, the shim's error otherwise.
    pub fn resize_pty(
        &self,
        namespace: &str,
        id: &str,
        exec: &str,
        width: u32,
        height: u32,
    ) -> Result<(), TaskOpError> {
        self.pass(namespace, id, exec, |s| {
            s.resize_pty(&api::ResizePtyRequest {
                id: id.to_string(),
                exec_id: exec.to_string(),
                width,
                height,
                ..Default::default()
            })
            .map(drop)
        })
    }

    /// Closes a process's stdin.
    ///
    /// # Errors
    /// NotFound for an unknown process, the shim's error otherwise.
    pub fn close_io(
        &self,
        namespace: &str,
        id: &str,
        exec: &str,
        stdin: bool,
    ) -> Result<(), TaskOpError> {
        self.pass(namespace, id, exec, |s| {
            s.close_io(&api::CloseIORequest {
                id: id.to_string(),
                exec_id: exec.to_string(),
                stdin,
                ..Default::default()
            })
            .map(drop)
        })
    }

    /// The task's processes.
    ///
    /// # Errors
    /// NotFound for an unknown task, the shim's error otherwise.
    pub fn pids(&self, namespace: &str, id: &str) -> Result<Vec<api::ProcessInfo>, TaskOpError> {
        self.pass(namespace, id, "", |s| {
            s.pids(&api::PidsRequest {
                id: id.to_string(),
                ..Default::default()
            })
            .map(|r| r.processes)
        })
    }

    /// Updates the task's resources (a `LinuxResources` Any) and annotations.
    ///
    /// # Errors
    /// NotFound for an unknown task, the shim's error otherwise.
    pub fn update(
        &self,
        namespace: &str,
        id: &str,
        resources: Option<Any>,
        annotations: std::collections::HashMap<String, String>,
    ) -> Result<(), TaskOpError> {
        self.pass(namespace, id, "", |s| {
            s.update(&api::UpdateTaskRequest {
                id: id.to_string(),
                resources: resources.into(),
                annotations,
                ..Default::default()
            })
            .map(drop)
        })
    }

    /// The task's cgroup statistics, as the shim encodes them.
    ///
    /// # Errors
    /// NotFound for an unknown task, the shim's error otherwise.
    pub fn stats(&self, namespace: &str, id: &str) -> Result<Option<Any>, TaskOpError> {
        self.pass(namespace, id, "", |s| {
            s.stats(&api::StatsRequest {
                id: id.to_string(),
                ..Default::default()
            })
            .map(|r| r.stats.into_option())
        })
    }

    /// The pid of the shim serving a task (for tests and `ctr` diagnostics).
    ///
    /// # Errors
    /// NotFound for an unknown task, the shim's error otherwise.
    pub fn shim_pid(&self, namespace: &str, id: &str) -> Result<u32, TaskOpError> {
        self.pass(namespace, id, "", |s| {
            s.connect_info(&api::ConnectRequest {
                id: id.to_string(),
                ..Default::default()
            })
            .map(|r| r.shim_pid)
        })
    }

    /// After a daemon start: re-attaches to the shim of every bundle on disk. A task whose init
    /// exited while the daemon was down is loaded stopped and its exit published (once); a
    /// bundle whose shim is gone is cleaned up with the shim's `delete` and its exit published;
    /// a bundle without a record (a create the crash interrupted) is removed.
    pub fn restore(&self) {
        for bundle in self.layout.scan() {
            let id = bundle.id.clone();
            let record = match bundle.read_record() {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(%id, error = %e, "bundle without a record, removed");
                    bundle.remove();
                    continue;
                }
            };
            let invocation = self.invocation(&bundle, record.shim_binary.clone());
            let shim = bundle
                .address()
                .and_then(|a| ShimClient::connect(&a).ok())
                .and_then(|c| {
                    c.state(&api::StateRequest {
                        id: id.clone(),
                        ..Default::default()
                    })
                    .ok()
                    .map(|s| (c, s))
                });
            let Some((shim, state)) = shim else {
                self.clean_up_dead(&bundle, &invocation, &record);
                continue;
            };
            let Some(init) = TaskState::from_shim(&id, &state) else {
                tracing::warn!(%id, "shim reports an unknown status; cleaned up");
                self.clean_up_dead(&bundle, &invocation, &record);
                continue;
            };
            let mut inner = Inner {
                init: Some(init),
                execs: BTreeMap::new(),
                stdio: Stdio {
                    stdin: state.stdin.clone(),
                    stdout: state.stdout.clone(),
                    stderr: state.stderr.clone(),
                    terminal: state.terminal,
                },
                record,
                deleted: false,
            };
            for exec in inner.record.execs.clone() {
                let Ok(s) = shim.state(&api::StateRequest {
                    id: id.clone(),
                    exec_id: exec.clone(),
                    ..Default::default()
                }) else {
                    continue;
                };
                let state = match s.status.enum_value_or_default() {
                    api::Status::CREATED => ExecState::Created,
                    api::Status::STOPPED => ExecState::Stopped(Exit {
                        pid: s.pid,
                        exit_status: s.exit_status,
                        exited_at: s.exited_at.clone().into_option().unwrap_or_default(),
                    }),
                    _ => ExecState::Running { pid: s.pid },
                };
                let stdio = Stdio {
                    stdin: s.stdin,
                    stdout: s.stdout,
                    stderr: s.stderr,
                    terminal: s.terminal,
                };
                inner.execs.insert(exec, ExecEntry { state, stdio });
            }
            inner
                .record
                .execs
                .retain(|e| inner.execs.contains_key(e.as_str()));
            // Exits the daemon missed: execs first, as the shim reaps them before init.
            let mut missed: Vec<(String, Exit)> = inner
                .execs
                .iter()
                .filter_map(|(k, e)| match &e.state {
                    ExecState::Stopped(x) => Some((k.clone(), x.clone())),
                    _ => None,
                })
                .collect();
            if let Some(x) = inner.init.as_ref().and_then(TaskState::exit) {
                missed.push((String::new(), x));
            }
            missed.retain(|(k, x)| !inner.record.exits_published.contains(&(k.clone(), x.pid)));
            for (k, x) in &missed {
                inner.record.exits_published.push((k.clone(), x.pid));
            }
            if let Err(e) = bundle.write_record(&inner.record) {
                tracing::warn!(%id, error = %e, "restored record not written");
            }
            for (exec, exit) in &missed {
                self.publish_exit(&bundle, exec, exit);
            }
            let log = ShimLog::open(&bundle.path.join("log"), &bundle.namespace, &id)
                .map_err(|e| tracing::warn!(%id, error = %e, "shim log not read"))
                .ok();
            tracing::info!(%id, namespace = %bundle.namespace, status = ?inner.init.as_ref().map(TaskState::status), "re-attached");
            let entry = Arc::new(Entry {
                bundle: bundle.clone(),
                shim,
                invocation,
                _log: log,
                inner: Mutex::new(inner),
            });
            lock(&self.tasks).insert((bundle.namespace.clone(), id), entry);
        }
    }

    fn clean_up_dead(&self, bundle: &Bundle, invocation: &Invocation, record: &TaskRecord) {
        let id = &bundle.id;
        match invocation.delete() {
            Ok(resp) => {
                let mut published = record.exits_published.clone();
                if !published.iter().any(|(e, _)| e.is_empty()) {
                    self.publish_exit(
                        bundle,
                        "",
                        &Exit {
                            pid: resp.pid,
                            exit_status: resp.exit_status,
                            exited_at: resp.exited_at.into_option().unwrap_or_else(now),
                        },
                    );
                    published.push((String::new(), resp.pid));
                }
                self.bury(&bundle.namespace, id, published);
            }
            Err(e) => tracing::warn!(%id, error = %e, "shim delete of a dead shim"),
        }
        tracing::info!(%id, namespace = %bundle.namespace, "shim gone; task cleaned up");
        bundle.remove();
    }

    /// The ids of the tasks of a namespace, for callers that must refuse to drop a namespace
    /// with tasks.
    pub fn ids(&self, namespace: &str) -> Vec<String> {
        lock(&self.tasks)
            .keys()
            .filter(|(ns, _)| ns == namespace)
            .map(|(_, id)| id.clone())
            .collect()
    }
}

/// The exit a `/tasks/exit` envelope carries, if it is one.
pub fn exit_of(env: &Envelope) -> Option<ev::TaskExit> {
    if env.topic != "/tasks/exit" {
        return None;
    }
    env.event
        .as_ref()
        .and_then(|a| ev::TaskExit::parse_from_bytes(&a.value).ok())
}

/// The exit in an encoded envelope as a shim forwards it (the fuzz target's entry).
pub fn exit_of_envelope(bytes: &[u8]) -> Option<ev::TaskExit> {
    exit_of(&Envelope::parse_from_bytes(bytes).ok()?)
}

/// How long a shim may take to exit after Shutdown before its bundle is removed anyway.
const SHIM_EXIT_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Waits until process `pid` (not our child: shims are daemons) is gone, at most `limit`.
fn wait_gone(pid: u32, limit: std::time::Duration) {
    if pid == 0 {
        return;
    }
    let deadline = std::time::Instant::now() + limit;
    let stat = PathBuf::from(format!("/proc/{pid}/stat"));
    // Gone, or a zombie its parent has not reaped yet (it wrote its last byte).
    let running = || {
        std::fs::read_to_string(&stat).is_ok_and(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
        })
    };
    while running() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    if running() {
        tracing::warn!(pid, "shim still running after shutdown");
    }
}

/// The world: a process exited. Init's first exit is kept; execs likewise.
fn apply_exit(inner: &mut Inner, exec: &str, exit: Exit) {
    if exec.is_empty() {
        if let Some(init) = inner.init.take() {
            inner.init = Some(init.exited(exit.exit_status, exit.exited_at));
        }
    } else if let Some(e) = inner.execs.get_mut(exec) {
        if !matches!(e.state, ExecState::Stopped(_)) {
            let pid = match e.state {
                ExecState::Running { pid } if exit.pid == 0 => pid,
                _ => exit.pid,
            };
            e.state = ExecState::Stopped(Exit { pid, ..exit });
        }
    }
}
