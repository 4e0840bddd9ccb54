//! The ttrpc face of the shim: containerd's `containerd.task.v2.Task` service mapped onto the
//! local [`Shim`], with each error turned into the gRPC code containerd's errdefs understand.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use containerd_shim_protos::api;
use containerd_shim_protos::Task;
use protobuf::well_known_types::empty::Empty;
use ttrpc::{Code, TtrpcContext};

use super::events::Publisher;
use super::service::{Shim, ShimError, Shutdown};

/// How long Shutdown waits for queued events before the shim exits.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(2);

/// The ttrpc Task service over a [`Shim`].
#[derive(Debug, Clone)]
pub struct TaskService {
    shim: Arc<Shim>,
    publisher: Option<Publisher>,
    /// The socket to remove when the shim exits.
    socket: Option<PathBuf>,
}

impl TaskService {
    /// Serves `shim`; `publisher` is drained and `socket` removed on Shutdown.
    pub fn new(shim: Arc<Shim>, publisher: Option<Publisher>, socket: Option<PathBuf>) -> Self {
        Self {
            shim,
            publisher,
            socket,
        }
    }
}

/// The gRPC status for a shim error.
pub fn status(e: &ShimError) -> ttrpc::Error {
    let code = match e {
        ShimError::NotFound(_) | ShimError::ExecNotFound { .. } | ShimError::Finished(_) => {
            Code::NOT_FOUND
        }
        ShimError::AlreadyExists(_) => Code::ALREADY_EXISTS,
        ShimError::WrongPhase { .. } | ShimError::ExecWrongState { .. } => {
            Code::FAILED_PRECONDITION
        }
        ShimError::Unimplemented(_) => Code::UNIMPLEMENTED,
        ShimError::Invalid(_) | ShimError::Options { .. } => Code::INVALID_ARGUMENT,
        ShimError::Runtime { source, .. } if source.is_not_found() => Code::NOT_FOUND,
        ShimError::Runtime { .. }
        | ShimError::Io { .. }
        | ShimError::Mount { .. }
        | ShimError::Stats { .. } => Code::UNKNOWN,
    };
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = s.source();
    }
    tracing::debug!(%message, "request failed");
    ttrpc::Error::RpcStatus(ttrpc::get_status(code, message))
}

fn map<T>(r: Result<T, ShimError>) -> ttrpc::Result<T> {
    r.map_err(|e| status(&e))
}

impl Task for TaskService {
    fn state(&self, _: &TtrpcContext, req: api::StateRequest) -> ttrpc::Result<api::StateResponse> {
        map(self.shim.state(req))
    }

    fn create(
        &self,
        _: &TtrpcContext,
        req: api::CreateTaskRequest,
    ) -> ttrpc::Result<api::CreateTaskResponse> {
        map(self.shim.create(req))
    }

    fn start(&self, _: &TtrpcContext, req: api::StartRequest) -> ttrpc::Result<api::StartResponse> {
        map(self.shim.start(req))
    }

    fn delete(
        &self,
        _: &TtrpcContext,
        req: api::DeleteRequest,
    ) -> ttrpc::Result<api::DeleteResponse> {
        map(self.shim.delete(req))
    }

    fn pids(&self, _: &TtrpcContext, req: api::PidsRequest) -> ttrpc::Result<api::PidsResponse> {
        map(self.shim.pids(&req.id))
    }

    fn pause(&self, _: &TtrpcContext, req: api::PauseRequest) -> ttrpc::Result<Empty> {
        map(self.shim.pause(&req.id, true)).map(|()| Empty::new())
    }

    fn resume(&self, _: &TtrpcContext, req: api::ResumeRequest) -> ttrpc::Result<Empty> {
        map(self.shim.pause(&req.id, false)).map(|()| Empty::new())
    }

    fn checkpoint(&self, _: &TtrpcContext, _: api::CheckpointTaskRequest) -> ttrpc::Result<Empty> {
        map(Err(ShimError::Unimplemented("checkpoint")))
    }

    fn kill(&self, _: &TtrpcContext, req: api::KillRequest) -> ttrpc::Result<Empty> {
        map(self.shim.kill(req)).map(|()| Empty::new())
    }

    fn exec(&self, _: &TtrpcContext, req: api::ExecProcessRequest) -> ttrpc::Result<Empty> {
        map(self.shim.exec(req)).map(|()| Empty::new())
    }

    fn resize_pty(&self, _: &TtrpcContext, req: api::ResizePtyRequest) -> ttrpc::Result<Empty> {
        map(self.shim.resize_pty(req)).map(|()| Empty::new())
    }

    fn close_io(&self, _: &TtrpcContext, req: api::CloseIORequest) -> ttrpc::Result<Empty> {
        map(self.shim.close_io(req)).map(|()| Empty::new())
    }

    fn update(&self, _: &TtrpcContext, req: api::UpdateTaskRequest) -> ttrpc::Result<Empty> {
        map(self.shim.update(req)).map(|()| Empty::new())
    }

    fn wait(&self, _: &TtrpcContext, req: api::WaitRequest) -> ttrpc::Result<api::WaitResponse> {
        map(self.shim.wait(req))
    }

    fn stats(&self, _: &TtrpcContext, req: api::StatsRequest) -> ttrpc::Result<api::StatsResponse> {
        map(self.shim.stats(&req.id))
    }

    fn connect(
        &self,
        _: &TtrpcContext,
        _: api::ConnectRequest,
    ) -> ttrpc::Result<api::ConnectResponse> {
        Ok(self.shim.connect())
    }

    fn shutdown(&self, _: &TtrpcContext, _: api::ShutdownRequest) -> ttrpc::Result<Empty> {
        match self.shim.shutdown() {
            Shutdown::Refused => Ok(Empty::new()),
            Shutdown::Exit => {
                if let Some(publisher) = &self.publisher {
                    if !publisher.drain(SHUTDOWN_DRAIN) {
                        tracing::warn!("exiting with undelivered events");
                    }
                }
                if let Some(socket) = &self.socket {
                    let _ = std::fs::remove_file(socket);
                }
                tracing::info!("shutdown");
                // As containerd's runc shim does: exit from the handler; containerd treats the
                // closed connection as the answer.
                std::process::exit(0)
            }
        }
    }
}
