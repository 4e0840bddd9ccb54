//! The task's init process as types: `Task<Created>`, `Task<Running>`, `Task<Paused>`,
//! `Task<Stopped>`. What the daemon asks for (start, pause, resume, delete) consumes the task and
//! returns the next state, or the task unchanged with the error; what the world decides (init
//! exits, the daemon restarts and finds the task in some state) enters through [`TaskState`].
//! Refusals are the model's errors ([`refeng_spec::task::TaskError`]).

use containerd_shim_protos::api;
use protobuf::well_known_types::timestamp::Timestamp;
use protobuf::MessageField;
use refeng_spec::task::{Status, TaskError};

use super::shim::{ShimClient, ShimError};

/// Created: init exists in the runtime, not started.
#[derive(Debug, Clone, PartialEq)]
pub struct Created;
/// Running.
#[derive(Debug, Clone, PartialEq)]
pub struct Running;
/// Frozen.
#[derive(Debug, Clone, PartialEq)]
pub struct Paused;
/// Init exited.
#[derive(Debug, Clone, PartialEq)]
pub struct Stopped {
    /// Its exit status.
    pub exit_status: u32,
    /// When it exited.
    pub exited_at: Timestamp,
}

/// How a task's init ended: what Wait and Delete report.
#[derive(Debug, Clone, PartialEq)]
pub struct Exit {
    /// Init's pid.
    pub pid: u32,
    /// The exit status.
    pub exit_status: u32,
    /// When it exited.
    pub exited_at: Timestamp,
}

/// A failed transition: the model's refusal, or the shim's error.
#[derive(Debug, thiserror::Error)]
pub enum TransitionError {
    /// the daemon refuses: {0}
    #[error(transparent)]
    Refused(#[from] TaskError),
    /// the shim failed
    #[error(transparent)]
    Shim(Box<ShimError>),
}

impl From<ShimError> for TransitionError {
    fn from(e: ShimError) -> Self {
        TransitionError::Shim(Box::new(e))
    }
}

/// One task's init in state `S`.
#[derive(Debug, Clone, PartialEq)]
pub struct Task<S> {
    /// The task (container) id.
    pub id: String,
    /// Init's pid.
    pub pid: u32,
    /// The state's data.
    pub state: S,
}

/// Refuses `op` on task `id` in `status`, with the model's error.
pub fn refuse(op: &str, id: &str, status: Status) -> TaskError {
    TaskError::TaskState {
        op: op.to_string(),
        id: id.to_string(),
        status,
    }
}

fn init_request<T: Default>(f: impl FnOnce(&mut T)) -> T {
    let mut req = T::default();
    f(&mut req);
    req
}

type Step<From, To> = Result<Task<To>, (Task<From>, TransitionError)>;

impl<S> Task<S> {
    fn to<T>(self, state: T) -> Task<T> {
        Task {
            id: self.id,
            pid: self.pid,
            state,
        }
    }

    /// The world: init exited (seen by Wait, State, or an exit event).
    pub fn exited(self, exit_status: u32, exited_at: Timestamp) -> Task<Stopped> {
        self.to(Stopped {
            exit_status,
            exited_at,
        })
    }
}

/// States in which init can be signalled: a paused one too, as containerd passes it to the shim
/// (whose runtime thaws the cgroup after SIGKILL).
pub trait Signalable {}
impl Signalable for Created {}
impl Signalable for Running {}
impl Signalable for Paused {}

impl<S: Signalable> Task<S> {
    /// Signals init (the exit, if any, arrives later through the world).
    ///
    /// # Errors
    /// The shim's error.
    pub fn kill(&self, shim: &ShimClient, signal: u32, all: bool) -> Result<(), ShimError> {
        shim.kill(&init_request(|r: &mut api::KillRequest| {
            r.id = self.id.clone();
            r.signal = signal;
            r.all = all;
        }))
        .map(drop)
    }
}

impl Task<Created> {
    /// A task whose init the shim just created.
    pub fn new(id: &str, pid: u32) -> Self {
        Task {
            id: id.to_string(),
            pid,
            state: Created,
        }
    }

    /// Starts init.
    ///
    /// # Errors
    /// The task back with the shim's error.
    pub fn start(self, shim: &ShimClient) -> Step<Created, Running> {
        match shim.start(&init_request(|r: &mut api::StartRequest| {
            r.id = self.id.clone();
        })) {
            Ok(resp) => {
                let pid = if resp.pid != 0 { resp.pid } else { self.pid };
                let mut t = self.to(Running);
                t.pid = pid;
                Ok(t)
            }
            Err(e) => Err((self, e.into())),
        }
    }

    /// Deletes a task that never started (the runtime kills init).
    ///
    /// # Errors
    /// The task back with the shim's error.
    pub fn delete(self, shim: &ShimClient) -> Result<Exit, (Self, TransitionError)> {
        delete_init(self, shim)
    }
}

impl Task<Running> {
    /// Freezes the task.
    ///
    /// # Errors
    /// The task back with the shim's error.
    pub fn pause(self, shim: &ShimClient) -> Step<Running, Paused> {
        match shim.pause(&init_request(|r: &mut api::PauseRequest| {
            r.id = self.id.clone();
        })) {
            Ok(_) => Ok(self.to(Paused)),
            Err(e) => Err((self, e.into())),
        }
    }
}

impl Task<Paused> {
    /// Thaws the task.
    ///
    /// # Errors
    /// The task back with the shim's error.
    pub fn resume(self, shim: &ShimClient) -> Step<Paused, Running> {
        match shim.resume(&init_request(|r: &mut api::ResumeRequest| {
            r.id = self.id.clone();
        })) {
            Ok(_) => Ok(self.to(Running)),
            Err(e) => Err((self, e.into())),
        }
    }
}

impl Task<Stopped> {
    /// Deletes the stopped task from the runtime.
    ///
    /// # Errors
    /// The task back with the shim's error.
    // The stopped task comes back whole on failure (it keeps its exit); one delete per task.
    #[allow(clippy::result_large_err)]
    pub fn delete(self, shim: &ShimClient) -> Result<Exit, (Self, TransitionError)> {
        delete_init(self, shim)
    }
}

fn delete_init<S>(task: Task<S>, shim: &ShimClient) -> Result<Exit, (Task<S>, TransitionError)> {
    match shim.delete(&init_request(|r: &mut api::DeleteRequest| {
        r.id = task.id.clone();
    })) {
        Ok(resp) => Ok(Exit {
            pid: if resp.pid != 0 { resp.pid } else { task.pid },
            exit_status: resp.exit_status,
            exited_at: resp.exited_at.into_option().unwrap_or_default(),
        }),
        Err(e) => Err((task, e.into())),
    }
}

/// A task in whichever state it is: what the daemon holds per task, and what a restart loads
/// from the shim's State.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskState {
    /// Created.
    Created(Task<Created>),
    /// Running.
    Running(Task<Running>),
    /// Paused.
    Paused(Task<Paused>),
    /// Stopped.
    Stopped(Task<Stopped>),
}

impl TaskState {
    /// The model's status.
    pub fn status(&self) -> Status {
        match self {
            TaskState::Created(_) => Status::Created,
            TaskState::Running(_) => Status::Running,
            TaskState::Paused(_) => Status::Paused,
            TaskState::Stopped(_) => Status::Stopped,
        }
    }

    /// Init's pid.
    pub fn pid(&self) -> u32 {
        match self {
            TaskState::Created(t) => t.pid,
            TaskState::Running(t) => t.pid,
            TaskState::Paused(t) => t.pid,
            TaskState::Stopped(t) => t.pid,
        }
    }

    /// The id.
    pub fn id(&self) -> &str {
        match self {
            TaskState::Created(t) => &t.id,
            TaskState::Running(t) => &t.id,
            TaskState::Paused(t) => &t.id,
            TaskState::Stopped(t) => &t.id,
        }
    }

    /// The exit, once stopped.
    pub fn exit(&self) -> Option<Exit> {
        match self {
            TaskState::Stopped(t) => Some(Exit {
                pid: t.pid,
                exit_status: t.state.exit_status,
                exited_at: t.state.exited_at.clone(),
            }),
            _ => None,
        }
    }

    /// The world: init exited. A stopped task keeps its first exit.
    pub fn exited(self, exit_status: u32, exited_at: Timestamp) -> Self {
        match self {
            TaskState::Created(t) => TaskState::Stopped(t.exited(exit_status, exited_at)),
            TaskState::Running(t) => TaskState::Stopped(t.exited(exit_status, exited_at)),
            TaskState::Paused(t) => TaskState::Stopped(t.exited(exit_status, exited_at)),
            stopped @ TaskState::Stopped(_) => stopped,
        }
    }

    /// Loads the state the shim reports (after a restart, or to catch up with the world).
    /// `None` for a status that is no state of the model (unknown).
    pub fn from_shim(id: &str, resp: &api::StateResponse) -> Option<Self> {
        fn base<S>(id: &str, pid: u32, state: S) -> Task<S> {
            Task {
                id: id.to_string(),
                pid,
                state,
            }
        }
        let pid = resp.pid;
        Some(match resp.status.enum_value_or_default() {
            api::Status::CREATED => TaskState::Created(base(id, pid, Created)),
            api::Status::RUNNING => TaskState::Running(base(id, pid, Running)),
            // A freeze in progress is a freeze: the next State says PAUSED.
            api::Status::PAUSED | api::Status::PAUSING => TaskState::Paused(base(id, pid, Paused)),
            api::Status::STOPPED => TaskState::Stopped(base(
                id,
                pid,
                Stopped {
                    exit_status: resp.exit_status,
                    exited_at: resp.exited_at.clone().into_option().unwrap_or_default(),
                },
            )),
            api::Status::UNKNOWN => return None,
        })
    }

    /// Catches up with the shim's view: only an exit can have happened behind the daemon's back.
    pub fn catch_up(self, resp: &api::StateResponse) -> Self {
        if resp.status.enum_value_or_default() == api::Status::STOPPED {
            self.exited(
                resp.exit_status,
                resp.exited_at.clone().into_option().unwrap_or_default(),
            )
        } else {
            self
        }
    }
}

/// A protobuf timestamp field from a timestamp.
pub fn timestamp_field(t: &Timestamp) -> MessageField<Timestamp> {
    MessageField::some(t.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(status: api::Status, exit: u32) -> api::StateResponse {
        api::StateResponse {
            pid: 42,
            status: status.into(),
            exit_status: exit,
            ..Default::default()
        }
    }

    #[test]
    fn shim_states_load_into_the_models_statuses() {
        for (shim, want) in [
            (api::Status::CREATED, Some(Status::Created)),
            (api::Status::RUNNING, Some(Status::Running)),
            (api::Status::PAUSED, Some(Status::Paused)),
            (api::Status::PAUSING, Some(Status::Paused)),
            (api::Status::STOPPED, Some(Status::Stopped)),
            (api::Status::UNKNOWN, None),
        ] {
            let got = TaskState::from_shim("t", &state(shim, 3));
            assert_eq!(got.as_ref().map(TaskState::status), want, "{shim:?}");
        }
    }

    #[test]
    fn an_exit_is_kept_once_and_catch_up_only_adds_exits() {
        let t = TaskState::Running(Task {
            id: "t".into(),
            pid: 1,
            state: Running,
        });
        let t = t.catch_up(&state(api::Status::RUNNING, 0));
        assert_eq!(t.status(), Status::Running);
        let t = t.catch_up(&state(api::Status::STOPPED, 137));
        assert_eq!(t.exit().unwrap().exit_status, 137);
        let t = t.exited(0, Timestamp::default());
        assert_eq!(t.exit().unwrap().exit_status, 137, "the first exit stays");
    }
}
