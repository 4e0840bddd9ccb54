//! The containerd calls a container needs, through the gRPC clients only: Snapshots
//! (Prepare, Commit, Stat, Mounts, Remove), Containers (Create, Update, Delete) and Tasks (Create, Start,
//! Kill, Wait, Delete, Pause, Resume, Get, Exec, ResizePty, CloseIO, ListPids, Metrics).

use std::collections::HashMap;

use containerd_client::services::v1::container::Runtime;
use containerd_client::services::v1::containers_client::ContainersClient;
use containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient;
use containerd_client::services::v1::snapshots::{
    CommitSnapshotRequest, MountsRequest, PrepareSnapshotRequest, RemoveSnapshotRequest,
    StatSnapshotRequest,
};
use containerd_client::services::v1::tasks_client::TasksClient;
use containerd_client::services::v1::{
    CloseIoRequest, Container, CreateContainerRequest, CreateTaskRequest, DeleteContainerRequest,
    DeleteTaskRequest, ExecProcessRequest, GetRequest, KillRequest, ListPidsRequest,
    MetricsRequest, PauseTaskRequest, ResizePtyRequest, ResumeTaskRequest, StartRequest,
    UpdateContainerRequest, UpdateTaskRequest, WaitRequest,
};
use containerd_client::types::Mount;

use super::super::backend::Backend;
use super::super::error::ApiError;
use super::super::store::SNAPSHOTTER;
use super::init_layer;

/// The type URL containerd stores an OCI spec under.
const SPEC_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";
/// The type URL of a task update's resources.
const RESOURCES_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources";

/// A task's state as containerd reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskState {
    /// No task.
    Absent,
    /// Created, not started.
    Created,
    /// Running (pid).
    Running(u32),
    /// Frozen (pid).
    Paused(u32),
    /// Exited with this status.
    Stopped(u32),
}

/// The stdio of a process, as FIFO paths ("" for none).
#[derive(Debug, Clone, Default)]
pub struct Stdio {
    /// stdin FIFO.
    pub stdin: String,
    /// stdout FIFO.
    pub stdout: String,
    /// stderr FIFO.
    pub stderr: String,
    /// A pty.
    pub terminal: bool,
}

fn any_spec(spec: &serde_json::Value) -> prost_types::Any {
    prost_types::Any {
        type_url: SPEC_TYPE_URL.into(),
        value: serde_json::to_vec(spec).unwrap_or_default(),
    }
}

/// The lease that holds a container's snapshots between Prepare and the container record.
fn prepare_lease(id: &str) -> String {
    format!("refengd-prepare-{id}")
}

/// The engine's handle on containerd for containers.
#[derive(Debug, Clone)]
pub struct Ctd {
    backend: Backend,
    /// The runtime name for Containers.Create ("" lets refeng-containerd pick its own).
    runtime: String,
}

impl Ctd {
    /// Over `backend`, creating containers with `runtime`.
    pub fn new(backend: Backend, runtime: &str) -> Ctd {
        Ctd {
            backend,
            runtime: runtime.into(),
        }
    }

    fn tasks(&self) -> TasksClient<tonic::transport::Channel> {
        TasksClient::new(self.backend.channel())
    }

    /// The lease that holds what container `id`'s create makes ([`prepare_lease`]) until the
    /// container record that names its snapshot exists: a garbage collection in between (after
    /// another container's removal) must not take the snapshot, nor an init layer just made,
    /// which the real containerd's does. Call it first.
    ///
    /// # Errors
    /// The call's status, mapped.
    pub async fn hold(&self, id: &str) -> Result<(), ApiError> {
        super::super::store::Store::new(self.backend.clone())
            .lease(&prepare_lease(id), std::time::Duration::from_secs(600))
            .await
    }

    /// Snapshots.Prepare of container `id`'s writable layer (the snapshot `id`) over `parent`
    /// (its image's init layer), under [`Ctd::hold`]'s lease.
    ///
    /// # Errors
    /// The call's status, mapped: `NotFound` when `parent` does not exist.
    pub async fn prepare(&self, id: &str, parent: &str) -> Result<Vec<Mount>, ApiError> {
        self.prepare_key(id, id, parent).await
    }

    /// Snapshots.Prepare of the active snapshot an init layer is made in for container `id`
    /// ([`init_layer::active_key`]) over `parent` (the image's top chain id), under
    /// [`Ctd::hold`]'s lease.
    ///
    /// # Errors
    /// The call's status, mapped.
    pub async fn prepare_init(&self, id: &str, parent: &str) -> Result<Vec<Mount>, ApiError> {
        self.prepare_key(id, &init_layer::active_key(id), parent)
            .await
    }

    async fn prepare_key(&self, id: &str, key: &str, parent: &str) -> Result<Vec<Mount>, ApiError> {
        SnapshotsClient::new(self.backend.channel())
            .prepare(self.leased(
                id,
                PrepareSnapshotRequest {
                    snapshotter: SNAPSHOTTER.into(),
                    key: key.into(),
                    parent: parent.into(),
                    labels: HashMap::new(),
                },
            ))
            .await
            .map(|r| r.into_inner().mounts)
            .map_err(|s| ApiError::from_grpc(&format!("preparing snapshot {key}"), &s))
    }

    /// Snapshots.Commit of the init layer made for container `id`, once populated, as `name`,
    /// under [`Ctd::hold`]'s lease. Another create that made the same init layer first is
    /// fine: this one's active snapshot is removed and theirs serves.
    ///
    /// # Errors
    /// The calls' status, mapped.
    pub async fn commit_init(&self, id: &str, name: &str) -> Result<(), ApiError> {
        let key = init_layer::active_key(id);
        let committed = SnapshotsClient::new(self.backend.channel())
            .commit(self.leased(
                id,
                CommitSnapshotRequest {
                    snapshotter: SNAPSHOTTER.into(),
                    name: name.into(),
                    key: key.clone(),
                    labels: HashMap::new(),
                },
            ))
            .await;
        match committed {
            Ok(_) => Ok(()),
            Err(s) if s.code() == tonic::Code::AlreadyExists => self.remove_snapshot(&key).await,
            Err(s) => Err(ApiError::from_grpc(
                &format!("committing snapshot {name}"),
                &s,
            )),
        }
    }

    /// A request under the lease that holds container `id`'s snapshots until its record.
    fn leased<T>(&self, id: &str, msg: T) -> tonic::Request<T> {
        let mut req = self.backend.request(msg);
        if let Ok(l) = prepare_lease(id).parse() {
            req.metadata_mut().insert("containerd-lease", l);
        }
        req
    }

    /// The parent of snapshot `key` (Snapshots.Stat): a container's init layer, or for a
    /// container made before init layers, its image's top chain id.
    ///
    /// # Errors
    /// The call's status, mapped.
    pub async fn parent_of(&self, key: &str) -> Result<String, ApiError> {
        SnapshotsClient::new(self.backend.channel())
            .stat(self.backend.request(StatSnapshotRequest {
                snapshotter: SNAPSHOTTER.into(),
                key: key.into(),
            }))
            .await
            .map(|r| r.into_inner().info.map(|i| i.parent).unwrap_or_default())
            .map_err(|s| ApiError::from_grpc(&format!("snapshot {key}"), &s))
    }

    /// Snapshots.Mounts of `key`.
    ///
    /// # Errors
    /// The call's status, mapped.
    pub async fn mounts(&self, key: &str) -> Result<Vec<Mount>, ApiError> {
        SnapshotsClient::new(self.backend.channel())
            .mounts(self.backend.request(MountsRequest {
                snapshotter: SNAPSHOTTER.into(),
                key: key.into(),
            }))
            .await
            .map(|r| r.into_inner().mounts)
            .map_err(|s| ApiError::from_grpc(&format!("mounts of snapshot {key}"), &s))
    }

    /// What a create that failed midway made: the container's snapshot and the active
    /// snapshot of an init layer it was making. An init layer it committed stays: the image
    /// holds it for the next container.
    ///
    /// # Errors
    /// Other failures of the calls.
    pub async fn remove_partial_snapshots(&self, id: &str) -> Result<(), ApiError> {
        self.remove_snapshot(id).await?;
        self.remove_snapshot(&init_layer::active_key(id)).await
    }

    /// Snapshots.Remove of `key`; absent is fine.
    ///
    /// # Errors
    /// Other failures of the call.
    pub async fn remove_snapshot(&self, key: &str) -> Result<(), ApiError> {
        match SnapshotsClient::new(self.backend.channel())
            .remove(self.backend.request(RemoveSnapshotRequest {
                snapshotter: SNAPSHOTTER.into(),
                key: key.into(),
            }))
            .await
        {
            Ok(_) => Ok(()),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(()),
            Err(s) => Err(ApiError::from_grpc(&format!("removing snapshot {key}"), &s)),
        }
    }

    /// Containers.Create with the spec, the image name and the snapshot.
    ///
    /// # Errors
    /// The call's status, mapped.
    pub async fn create_container(
        &self,
        id: &str,
        image: &str,
        spec: &serde_json::Value,
        labels: HashMap<String, String>,
    ) -> Result<(), ApiError> {
        let c = Container {
            id: id.into(),
            labels,
            image: image.into(),
            runtime: Some(Runtime {
                name: self.runtime.clone(),
                options: None,
            }),
            spec: Some(any_spec(spec)),
            snapshotter: SNAPSHOTTER.into(),
            snapshot_key: id.into(),
            ..Default::default()
        };
        ContainersClient::new(self.backend.channel())
            .create(
                self.backend
                    .request(CreateContainerRequest { container: Some(c) }),
            )
            .await
            .map_err(|s| ApiError::from_grpc(&format!("creating container {id}"), &s))?;
        // The record names the snapshot now: the lease that kept it can go.
        let store = super::super::store::Store::new(self.backend.clone());
        if let Err(e) = store.end_lease(&prepare_lease(id)).await {
            tracing::debug!(%id, error = %e, "the snapshot's lease expires by itself");
        }
        Ok(())
    }

    /// Containers.Update of the spec (and labels).
    ///
    /// # Errors
    /// The call's status, mapped.
    pub async fn update_spec(&self, id: &str, spec: &serde_json::Value) -> Result<(), ApiError> {
        let c = Container {
            id: id.into(),
            spec: Some(any_spec(spec)),
            ..Default::default()
        };
        ContainersClient::new(self.backend.channel())
            .update(self.backend.request(UpdateContainerRequest {
                container: Some(c),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["spec".into()],
                }),
            }))
            .await
            .map(|_| ())
            .map_err(|s| ApiError::from_grpc(&format!("updating container {id}"), &s))
    }

    /// Containers.Delete; absent is fine.
    ///
    /// # Errors
    /// Other failures of the call.
    pub async fn delete_container(&self, id: &str) -> Result<(), ApiError> {
        match ContainersClient::new(self.backend.channel())
            .delete(
                self.backend
                    .request(DeleteContainerRequest { id: id.into() }),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(()),
            Err(s) => Err(ApiError::from_grpc(&format!("deleting container {id}"), &s)),
        }
    }

    /// Tasks.Create over the snapshot's mounts; returns the pid. A task left from an earlier
    /// run (its exit already recorded) is deleted and the create made again: one call in the
    /// usual case, where deleting first cost every start a second one.
    ///
    /// # Errors
    /// The call's status, mapped.
    pub async fn create_task(
        &self,
        id: &str,
        rootfs: Vec<Mount>,
        io: &Stdio,
    ) -> Result<u32, ApiError> {
        let request = || CreateTaskRequest {
            container_id: id.into(),
            rootfs: rootfs.clone(),
            stdin: io.stdin.clone(),
            stdout: io.stdout.clone(),
            stderr: io.stderr.clone(),
            terminal: io.terminal,
            ..Default::default()
        };
        let mut r = self.tasks().create(self.backend.request(request())).await;
        if matches!(&r, Err(s) if s.code() == tonic::Code::AlreadyExists) {
            self.delete_task(id).await?;
            r = self.tasks().create(self.backend.request(request())).await;
        }
        r.map(|r| r.into_inner().pid)
            .map_err(|s| ApiError::from_grpc(&format!("creating the task of {id}"), &s))
    }

    /// Tasks.Start of the init process (`exec` "") or an exec; returns the pid.
    ///
    /// # Errors
    /// The call's status, mapped.
    pub async fn start(&self, id: &str, exec: &str) -> Result<u32, ApiError> {
        self.tasks()
            .start(self.backend.request(StartRequest {
                container_id: id.into(),
                exec_id: exec.into(),
            }))
            .await
            .map(|r| r.into_inner().pid)
            .map_err(|s| ApiError::from_grpc(&format!("starting {id}"), &s))
    }

    /// Tasks.Kill.
    ///
    /// # Errors
    /// The call's status, mapped.
    pub async fn kill(&self, id: &str, exec: &str, signal: u32, all: bool) -> Result<(), ApiError> {
        self.tasks()
            .kill(self.backend.request(KillRequest {
                container_id: id.into(),
                exec_id: exec.into(),
                signal,
                all,
            }))
            .await
            .map(|_| ())
            .map_err(|s| ApiError::from_grpc(&format!("signalling {id}"), &s))
    }

    /// Tasks.Wait: blocks until the process exits; returns its status.
    ///
    /// # Errors
    /// The call's status, mapped.
    pub async fn wait(&self, id: &str, exec: &str) -> Result<u32, ApiError> {
        self.tasks()
            .wait(self.backend.request(WaitRequest {
                container_id: id.into(),
                exec_id: exec.into(),
            }))
            .await
            .map(|r| r.into_inner().exit_status)
            .map_err(|s| ApiError::from_grpc(&format!("waiting for {id}"), &s))
    }

    /// Tasks.Delete of the (stopped) task; returns its exit status, `None` when there was
    /// no task.
    ///
    /// # Errors
    /// Other failures of the call.
    pub async fn delete_task(&self, id: &str) -> Result<Option<u32>, ApiError> {
        match self
            .tasks()
            .delete(self.backend.request(DeleteTaskRequest {
                container_id: id.into(),
            }))
            .await
        {
            Ok(r) => Ok(Some(r.into_inner().exit_status)),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
            Err(s) => Err(ApiError::from_grpc(
                &format!("deleting the task of {id}"),
                &s,
            )),
        }
    }

    /// Tasks.Get of the init process (`exec` "") or an exec.
    ///
    /// # Errors
    /// Failures other than NotFound.
    pub async fn state(&self, id: &str, exec: &str) -> Result<TaskState, ApiError> {
        use containerd_client::types::v1::Status;
        match self
            .tasks()
            .get(self.backend.request(GetRequest {
                container_id: id.into(),
                exec_id: exec.into(),
            }))
            .await
        {
            Ok(r) => {
                let Some(p) = r.into_inner().process else {
                    return Ok(TaskState::Absent);
                };
                Ok(
                    match Status::try_from(p.status).unwrap_or(Status::Unknown) {
                        Status::Created => TaskState::Created,
                        Status::Running | Status::Pausing => TaskState::Running(p.pid),
                        Status::Paused => TaskState::Paused(p.pid),
                        Status::Stopped | Status::Unknown => TaskState::Stopped(p.exit_status),
                    },
                )
            }
            Err(s) if s.code() == tonic::Code::NotFound => Ok(TaskState::Absent),
            Err(s) => Err(ApiError::from_grpc(&format!("task of {id}"), &s)),
        }
    }

    /// Tasks.Pause.
    ///
    /// # Errors
    /// The call's status, mapped.
    pub async fn pause(&self, id: &str) -> Result<(), ApiError> {
        self.tasks()
            .pause(self.backend.request(PauseTaskRequest {
                container_id: id.into(),
            }))
            .await
            .map(|_| ())
            .map_err(|s| ApiError::from_grpc(&format!("pausing {id}"), &s))
    }

    /// Tasks.Resume.
    ///
    /// # Errors
    /// The call's status, mapped.
    pub async fn resume(&self, id: &str) -> Result<(), ApiError> {
        self.tasks()
            .resume(self.backend.request(ResumeTaskRequest {
                container_id: id.into(),
            }))
            .await
            .map(|_| ())
            .map_err(|s| ApiError::from_grpc(&format!("resuming {id}"), &s))
    }

    /// Tasks.Exec of `process` (an OCI process object) as `exec`.
    ///
    /// # Errors
    /// The call's status, mapped.
    pub async fn exec(
        &self,
        id: &str,
        exec: &str,
        process: &serde_json::Value,
        io: &Stdio,
    ) -> Result<(), ApiError> {
        self.tasks()
            .exec(self.backend.request(ExecProcessRequest {
                container_id: id.into(),
                exec_id: exec.into(),
                stdin: io.stdin.clone(),
                stdout: io.stdout.clone(),
                stderr: io.stderr.clone(),
                terminal: io.terminal,
                spec: Some(prost_types::Any {
                    type_url: "types.containerd.io/opencontainers/runtime-spec/1/Process".into(),
                    value: serde_json::to_vec(process).unwrap_or_default(),
                }),
            }))
            .await
            .map(|_| ())
            .map_err(|s| ApiError::from_grpc(&format!("exec in {id}"), &s))
    }

    /// Tasks.DeleteProcess of an exec; absent is fine.
    ///
    /// # Errors
    /// Other failures of the call.
    pub async fn delete_exec(&self, id: &str, exec: &str) -> Result<(), ApiError> {
        use containerd_client::services::v1::DeleteProcessRequest;
        match self
            .tasks()
            .delete_process(self.backend.request(DeleteProcessRequest {
                container_id: id.into(),
                exec_id: exec.into(),
            }))
            .await
        {
            Ok(_) => Ok(()),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(()),
            Err(s) => Err(ApiError::from_grpc(&format!("deleting exec {exec}"), &s)),
        }
    }

    /// Tasks.ResizePty.
    ///
    /// # Errors
    /// The call's status, mapped.
    pub async fn resize(
        &self,
        id: &str,
        exec: &str,
        width: u32,
        height: u32,
    ) -> Result<(), ApiError> {
        self.tasks()
            .resize_pty(self.backend.request(ResizePtyRequest {
                container_id: id.into(),
                exec_id: exec.into(),
                width,
                height,
            }))
            .await
            .map(|_| ())
            .map_err(|s| ApiError::from_grpc(&format!("resizing the tty of {id}"), &s))
    }

    /// Tasks.CloseIO of stdin.
    ///
    /// # Errors
    /// The call's status, mapped.
    pub async fn close_stdin(&self, id: &str, exec: &str) -> Result<(), ApiError> {
        self.tasks()
            .close_io(self.backend.request(CloseIoRequest {
                container_id: id.into(),
                exec_id: exec.into(),
                stdin: true,
            }))
            .await
            .map(|_| ())
            .map_err(|s| ApiError::from_grpc(&format!("closing stdin of {id}"), &s))
    }

    /// Tasks.Metrics of `id`: its cgroup statistics as containerd's typed `Any`, `None` when
    /// the task is gone.
    ///
    /// # Errors
    /// The call's status, mapped.
    pub async fn metrics(&self, id: &str) -> Result<Option<prost_types::Any>, ApiError> {
        self.tasks()
            .metrics(self.backend.request(MetricsRequest {
                filters: vec![format!("id=={id}")],
            }))
            .await
            .map(|r| {
                r.into_inner()
                    .metrics
                    .into_iter()
                    .find(|m| m.id == id)
                    .and_then(|m| m.data)
            })
            .map_err(|s| ApiError::from_grpc(&format!("reading the metrics of {id}"), &s))
    }

    /// Tasks.Update of `id`'s resources (`linux.resources` JSON, as containerd's typeurl
    /// carries the runtime-spec's `LinuxResources`).
    ///
    /// # Errors
    /// The call's status, mapped.
    pub async fn update_task(
        &self,
        id: &str,
        resources: &serde_json::Value,
    ) -> Result<(), ApiError> {
        self.tasks()
            .update(self.backend.request(UpdateTaskRequest {
                container_id: id.into(),
                resources: Some(prost_types::Any {
                    type_url: RESOURCES_TYPE_URL.into(),
                    value: serde_json::to_vec(resources).unwrap_or_default(),
                }),
                annotations: HashMap::new(),
            }))
            .await
            .map(|_| ())
            .map_err(|s| ApiError::from_grpc(&format!("updating the task of {id}"), &s))
    }

    /// Tasks.ListPids.
    ///
    /// # Errors
    /// The call's status, mapped.
    pub async fn pids(&self, id: &str) -> Result<Vec<u32>, ApiError> {
        self.tasks()
            .list_pids(self.backend.request(ListPidsRequest {
                container_id: id.into(),
            }))
            .await
            .map(|r| {
                r.into_inner()
                    .processes
                    .into_iter()
                    .map(|p| p.pid)
                    .collect()
            })
            .map_err(|s| ApiError::from_grpc(&format!("listing the processes of {id}"), &s))
    }
}
