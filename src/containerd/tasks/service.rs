//! `containerd.services.tasks.v1.Tasks`: a thin gRPC layer over the [`TaskManager`]. The task
//! is made from the container record (spec, runtime name and options) and the request (rootfs
//! mounts, stdio, options that override the record's). The manager blocks, so every call runs
//! on tokio's blocking pool. Checkpoint (and Create from a checkpoint) is refused: refeng has no
//! CRIU support.

use std::sync::{Arc, Weak};

use containerd_client::services::v1::{
    CheckpointTaskRequest, CheckpointTaskResponse, CloseIoRequest, CreateTaskRequest,
    CreateTaskResponse, DeleteProcessRequest, DeleteResponse, DeleteTaskRequest,
    ExecProcessRequest, ExecProcessResponse, GetRequest, GetResponse, KillRequest, ListPidsRequest,
    ListPidsResponse, ListTasksRequest, ListTasksResponse, MetricsRequest, MetricsResponse,
    PauseTaskRequest, ResizePtyRequest, ResumeTaskRequest, StartRequest, StartResponse,
    UpdateTaskRequest, WaitRequest, WaitResponse,
};
use containerd_client::types::v1::{Process, ProcessInfo as PidInfo, Status as PbStatus};
use containerd_client::types::{Envelope, Metric};
use containerd_shim_protos::api;
use refeng_spec::task::{ExecStatus, Status};

use super::manager::{
    CreateTask, ErrorCode, ManagerConfig, ProcessInfo, ProcessStatus, Stdio, TaskManager,
    TaskOpError,
};
use super::task::Exit;
use crate::containerd::error::Error;
use crate::containerd::filters::{Fields, Filter};
use crate::containerd::grpc;
use crate::containerd::{containers, Daemon, Services};

const S: &str = "/containerd.services.tasks.v1.Tasks/";

/// The runtime a container record without one runs with.
pub const DEFAULT_RUNTIME: &str = "io.containerd.refeng.v2";

/// The gRPC error for a task operation's error, by its errdefs class.
pub fn to_error(e: TaskOpError) -> Error {
    let msg = e.to_string();
    match e.code() {
        ErrorCode::NotFound => Error::NotFound(msg),
        ErrorCode::AlreadyExists => Error::AlreadyExists(msg),
        ErrorCode::FailedPrecondition => Error::FailedPrecondition(msg),
        ErrorCode::InvalidArgument => Error::InvalidArgument(msg),
        ErrorCode::Unavailable => Error::Unavailable(msg),
        ErrorCode::Unimplemented => Error::NotImplemented(msg),
        ErrorCode::Internal | ErrorCode::Unknown => Error::Internal(msg),
    }
}

/// A prost Any as the shim protocol's.
fn any_to_shim(a: prost_types::Any) -> protobuf::well_known_types::any::Any {
    protobuf::well_known_types::any::Any {
        type_url: a.type_url,
        value: a.value,
        ..Default::default()
    }
}

fn any_from_shim(a: protobuf::well_known_types::any::Any) -> prost_types::Any {
    prost_types::Any {
        type_url: a.type_url,
        value: a.value,
    }
}

fn ts(t: &protobuf::well_known_types::timestamp::Timestamp) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.seconds,
        nanos: t.nanos,
    }
}

/// A shim's event envelope as the bus carries it.
pub fn envelope_from_shim(e: containerd_shim_protos::shim::event::Envelope) -> Envelope {
    Envelope {
        timestamp: e.timestamp.as_ref().map(ts),
        namespace: e.namespace,
        topic: e.topic,
        event: e.event.into_option().map(any_from_shim),
    }
}

fn status(s: ProcessStatus) -> PbStatus {
    match s {
        ProcessStatus::Task(Status::Created) | ProcessStatus::Exec(ExecStatus::Created) => {
            PbStatus::Created
        }
        ProcessStatus::Task(Status::Running) | ProcessStatus::Exec(ExecStatus::Running) => {
            PbStatus::Running
        }
        ProcessStatus::Task(Status::Paused) => PbStatus::Paused,
        ProcessStatus::Task(Status::Stopped) | ProcessStatus::Exec(ExecStatus::Stopped) => {
            PbStatus::Stopped
        }
    }
}

fn process(p: ProcessInfo) -> Process {
    Process {
        container_id: p.id.clone(),
        id: if p.exec_id.is_empty() {
            p.id
        } else {
            p.exec_id
        },
        pid: p.pid,
        status: status(p.status) as i32,
        stdin: p.stdio.stdin,
        stdout: p.stdio.stdout,
        stderr: p.stdio.stderr,
        terminal: p.stdio.terminal,
        exit_status: p.exit_status,
        exited_at: p.exited_at.as_ref().map(ts),
    }
}

fn delete_response(id: &str, exit: Exit) -> DeleteResponse {
    DeleteResponse {
        id: id.to_string(),
        pid: exit.pid,
        exit_status: exit.exit_status,
        exited_at: Some(ts(&exit.exited_at)),
    }
}

/// What task filters see (containerd's task adaptor: id, namespace, runtime; plus status).
struct TaskFields<'a> {
    namespace: &'a str,
    info: &'a ProcessInfo,
}

impl Fields for TaskFields<'_> {
    fn field(&self, path: &[String]) -> Option<String> {
        match (path.first().map(String::as_str), path.len()) {
            (Some("id"), 1) => Some(self.info.id.clone()),
            (Some("namespace"), 1) => Some(self.namespace.to_string()),
            (Some("pid"), 1) => Some(self.info.pid.to_string()),
            (Some("status"), 1) => {
                Some(status(self.info.status).as_str_name().to_ascii_lowercase())
            }
            _ => None,
        }
    }
}

/// Runs a blocking manager call on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, TaskOpError> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::internal("task call", e))?
        .map_err(to_error)
}

/// Starts the task manager of `daemon`: re-attaches to the shims of its bundles, then serves the
/// endpoint shims forward events to (`<address>.ttrpc`), whose events go on the daemon's bus.
///
/// # Errors
/// `Internal` when the endpoint cannot be served.
pub fn start(
    daemon: &Arc<Daemon>,
) -> Result<(Arc<TaskManager>, super::forward::EventEndpoint), Error> {
    let config = daemon.config();
    let mut ttrpc = config.address.clone().into_os_string();
    ttrpc.push(".ttrpc");
    let publish_binary = std::env::current_exe().unwrap_or_else(|_| "refeng-containerd".into());
    let weak: Weak<Daemon> = Arc::downgrade(daemon);
    let manager = TaskManager::new(
        ManagerConfig {
            state: config.state.clone(),
            root: config.root.clone(),
            address: config.address.to_string_lossy().into_owned(),
            ttrpc_address: ttrpc.into(),
            publish_binary,
            shim_dirs: super::shim::search_dirs(),
            shim_env: shim_path(),
        },
        Arc::new(move |e| {
            if let Some(d) = weak.upgrade() {
                d.events().forward(envelope_from_shim(e));
            }
        }),
    );
    manager.restore();
    let endpoint = manager
        .serve_events()
        .map_err(|e| Error::internal("task events endpoint", e))?;
    Ok((manager, endpoint))
}

/// `PATH` for shims: the daemon's own directory first, so that refeng-shim finds refeng-runc
/// installed beside refeng-containerd (as it finds the shim there), then the daemon's `PATH`.
fn shim_path() -> Vec<(std::ffi::OsString, std::ffi::OsString)> {
    let dirs = super::shim::search_dirs();
    match std::env::join_paths(dirs) {
        Ok(path) => vec![("PATH".into(), path)],
        Err(_) => Vec::new(),
    }
}

/// The manager and the endpoint it needs alive, shared by the handlers.
struct Plugin {
    manager: Arc<TaskManager>,
    _endpoint: super::forward::EventEndpoint,
}

macro_rules! task_call {
    ($s:expr, $daemon:expr, $plugin:expr, $method:literal, |$d:ident, $m:ident, $ns:ident, $req:ident : $t:ty| $body:expr) => {{
        let daemon = Arc::clone($daemon);
        let plugin = Arc::clone($plugin);
        $s.router.unary(
            &format!("{S}{}", $method),
            move |req: tonic::Request<$t>| {
                let $d = Arc::clone(&daemon);
                let plugin = Arc::clone(&plugin);
                async move {
                    let $ns = grpc::namespace(&req)?;
                    let $req = req.into_inner();
                    let $m = Arc::clone(&plugin.manager);
                    let _ = &$d;
                    $body
                }
            },
        );
    }};
}

/// Registers the Tasks service and starts the task manager (restoring tasks from the bundles).
/// When the event endpoint cannot be served the service is not registered and the reason is
/// logged: tasks without their exit events would hang every `ctr run`.
pub fn register(s: &mut Services, daemon: &Arc<Daemon>) {
    let (manager, endpoint) = match start(daemon) {
        Ok(x) => x,
        Err(e) => {
            tracing::error!(error = %e, "tasks service not available");
            return;
        }
    };
    s.plugin("io.containerd.runtime.v2", "task");
    s.plugin("io.containerd.grpc.v1", "tasks");
    let plugin = Arc::new(Plugin {
        manager,
        _endpoint: endpoint,
    });

    task_call!(
        s,
        daemon,
        &plugin,
        "Create",
        |d, m, ns, req: CreateTaskRequest| {
            super::input::check_create(&req)?;
            let container = containers::get(&d, &ns, &req.container_id)?;
            let runtime = container.runtime.clone().unwrap_or_default();
            let name = if !req.runtime_path.is_empty() {
                req.runtime_path.clone()
            } else if !runtime.name.is_empty() {
                runtime.name.clone()
            } else {
                DEFAULT_RUNTIME.to_string()
            };
            let spec = container
                .spec
                .map(|s| s.value)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "container {:?} has no OCI spec",
                        req.container_id
                    ))
                })?;
            let options = req.options.clone().or(runtime.options).map(any_to_shim);
            let create = CreateTask {
                namespace: ns,
                id: req.container_id.clone(),
                runtime: name,
                options,
                spec,
                rootfs: req
                    .rootfs
                    .into_iter()
                    .map(|mnt| api::Mount {
                        type_: mnt.r#type,
                        source: mnt.source,
                        target: mnt.target,
                        options: mnt.options,
                        ..Default::default()
                    })
                    .collect(),
                stdio: Stdio {
                    stdin: req.stdin,
                    stdout: req.stdout,
                    stderr: req.stderr,
                    terminal: req.terminal,
                },
            };
            let info = blocking(move || m.create(create)).await?;
            Ok(CreateTaskResponse {
                container_id: req.container_id,
                pid: info.pid,
            })
        }
    );
    task_call!(
        s,
        daemon,
        &plugin,
        "Start",
        |d, m, ns, req: StartRequest| {
            let pid = blocking(move || m.start(&ns, &req.container_id, &req.exec_id)).await?;
            Ok(StartResponse { pid })
        }
    );
    task_call!(
        s,
        daemon,
        &plugin,
        "Delete",
        |d, m, ns, req: DeleteTaskRequest| {
            let id = req.container_id.clone();
            let exit = blocking(move || m.delete(&ns, &req.container_id)).await?;
            Ok(delete_response(&id, exit))
        }
    );
    task_call!(
        s,
        daemon,
        &plugin,
        "DeleteProcess",
        |d, m, ns, req: DeleteProcessRequest| {
            if req.exec_id.is_empty() {
                return Err(Error::InvalidArgument(
                    "DeleteProcess needs an exec id (Delete removes the task)".into(),
                ));
            }
            let id = req.exec_id.clone();
            let exit =
                blocking(move || m.delete_process(&ns, &req.container_id, &req.exec_id)).await?;
            Ok(delete_response(&id, exit))
        }
    );
    task_call!(s, daemon, &plugin, "Get", |d, m, ns, req: GetRequest| {
        let info = blocking(move || m.get(&ns, &req.container_id, &req.exec_id)).await?;
        Ok(GetResponse {
            process: Some(process(info)),
        })
    });
    task_call!(
        s,
        daemon,
        &plugin,
        "List",
        |d, m, ns, req: ListTasksRequest| {
            let filter = Filter::parse(&[req.filter.as_str()])?;
            let tasks = blocking(move || {
                Ok(m.list(&ns)
                    .into_iter()
                    .filter(|info| {
                        filter.matches(&TaskFields {
                            namespace: &ns,
                            info,
                        })
                    })
                    .map(process)
                    .collect())
            })
            .await?;
            Ok(ListTasksResponse { tasks })
        }
    );
    task_call!(s, daemon, &plugin, "Kill", |d, m, ns, req: KillRequest| {
        blocking(move || m.kill(&ns, &req.container_id, &req.exec_id, req.signal, req.all)).await?;
        Ok(())
    });
    task_call!(
        s,
        daemon,
        &plugin,
        "Exec",
        |d, m, ns, req: ExecProcessRequest| {
            super::input::check_exec(&req)?;
            let spec = req.spec.map(any_to_shim);
            let stdio = Stdio {
                stdin: req.stdin,
                stdout: req.stdout,
                stderr: req.stderr,
                terminal: req.terminal,
            };
            blocking(move || m.exec(&ns, &req.container_id, &req.exec_id, spec, stdio)).await?;
            Ok(ExecProcessResponse {})
        }
    );
    task_call!(
        s,
        daemon,
        &plugin,
        "ResizePty",
        |d, m, ns, req: ResizePtyRequest| {
            blocking(move || {
                m.resize_pty(&ns, &req.container_id, &req.exec_id, req.width, req.height)
            })
            .await?;
            Ok(())
        }
    );
    task_call!(
        s,
        daemon,
        &plugin,
        "CloseIO",
        |d, m, ns, req: CloseIoRequest| {
            blocking(move || m.close_io(&ns, &req.container_id, &req.exec_id, req.stdin)).await?;
            Ok(())
        }
    );
    task_call!(
        s,
        daemon,
        &plugin,
        "Pause",
        |d, m, ns, req: PauseTaskRequest| {
            blocking(move || m.pause(&ns, &req.container_id)).await?;
            Ok(())
        }
    );
    task_call!(
        s,
        daemon,
        &plugin,
        "Resume",
        |d, m, ns, req: ResumeTaskRequest| {
            blocking(move || m.resume(&ns, &req.container_id)).await?;
            Ok(())
        }
    );
    task_call!(
        s,
        daemon,
        &plugin,
        "ListPids",
        |d, m, ns, req: ListPidsRequest| {
            let processes = blocking(move || m.pids(&ns, &req.container_id)).await?;
            Ok(ListPidsResponse {
                processes: processes
                    .into_iter()
                    .map(|p| PidInfo {
                        pid: p.pid,
                        info: p.info.into_option().map(any_from_shim),
                    })
                    .collect(),
            })
        }
    );
    task_call!(
        s,
        daemon,
        &plugin,
        "Checkpoint",
        |d, m, ns, req: CheckpointTaskRequest| {
            let _ = (m, ns);
            Err::<CheckpointTaskResponse, _>(Error::NotImplemented(format!(
                "checkpoint of task {:?} (refeng has no CRIU support)",
                req.container_id
            )))
        }
    );
    task_call!(
        s,
        daemon,
        &plugin,
        "Update",
        |d, m, ns, req: UpdateTaskRequest| {
            let resources = req.resources.map(any_to_shim);
            let annotations = req.annotations.into_iter().collect();
            blocking(move || m.update(&ns, &req.container_id, resources, annotations)).await?;
            Ok(())
        }
    );
    task_call!(
        s,
        daemon,
        &plugin,
        "Metrics",
        |d, m, ns, req: MetricsRequest| {
            let filter = Filter::parse(&req.filters)?;
            let metrics = blocking(move || {
                let mut out = Vec::new();
                for info in m.list(&ns) {
                    if !filter.matches(&TaskFields {
                        namespace: &ns,
                        info: &info,
                    }) {
                        continue;
                    }
                    // A task that stopped meanwhile has no statistics: skipped, as containerd does.
                    if let Ok(Some(stats)) = m.stats(&ns, &info.id) {
                        out.push(Metric {
                            timestamp: Some(crate::containerd::now()),
                            id: info.id.clone(),
                            data: Some(any_from_shim(stats)),
                        });
                    }
                }
                Ok(out)
            })
            .await?;
            Ok(MetricsResponse { metrics })
        }
    );
    task_call!(s, daemon, &plugin, "Wait", |d, m, ns, req: WaitRequest| {
        let exit = blocking(move || m.wait(&ns, &req.container_id, &req.exec_id)).await?;
        Ok(WaitResponse {
            exit_status: exit.exit_status,
            exited_at: Some(ts(&exit.exited_at)),
        })
    });
}
