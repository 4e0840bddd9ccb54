//! The containerd task model: the tasks of one namespace as refeng-containerd's Tasks service
//! shows them (created, running, paused, stopped; deleted tasks are gone), each with its exec
//! processes, the events the daemon's bus carries, and the daemon's own crash and restart
//! (`kill -9`, then a new start that re-attaches to the shims) as a transition.
//!
//! Exits are deterministic here: `Kill` is SIGKILL followed by waiting for the exit to be
//! reported, so every operation has one result. The daemon refuses what containerd's errdefs call
//! a failed precondition (deleting a running task, pausing a created one, ...) itself, before any
//! shim sees the request, so the answer does not depend on which shim serves the task.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What the signal SIGKILL makes of an exit status (128 + 9), as shims report it.
pub const KILLED: u32 = 137;

/// A task's status as containerd's `Tasks.Get` reports it (`containerd.v1.types.Status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Status {
    /// Created: init exists but has not started.
    Created,
    /// Running.
    Running,
    /// Frozen by `Pause`.
    Paused,
    /// Init exited; the exit status is kept until `Delete`.
    Stopped,
}

/// An exec process's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ExecStatus {
    /// Added by `Exec`, not started.
    Created,
    /// Started.
    Running,
    /// Exited; the status is kept until `DeleteProcess`.
    Stopped,
}

/// One task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    /// Init's status.
    pub status: Status,
    /// Init's exit status once stopped.
    pub exit_status: Option<u32>,
    /// Exec processes by exec id, with their exit status once stopped.
    pub execs: BTreeMap<String, (ExecStatus, Option<u32>)>,
}

/// An event topic on the daemon's bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Topic {
    /// `/tasks/create`
    Create,
    /// `/tasks/start`
    Start,
    /// `/tasks/exit`
    Exit,
    /// `/tasks/delete`
    Delete,
    /// `/tasks/exec-added`
    ExecAdded,
    /// `/tasks/exec-started`
    ExecStarted,
    /// `/tasks/paused`
    Paused,
    /// `/tasks/resumed`
    Resumed,
}

impl Topic {
    /// The topic string containerd publishes.
    pub fn as_str(self) -> &'static str {
        match self {
            Topic::Create => "/tasks/create",
            Topic::Start => "/tasks/start",
            Topic::Exit => "/tasks/exit",
            Topic::Delete => "/tasks/delete",
            Topic::ExecAdded => "/tasks/exec-added",
            Topic::ExecStarted => "/tasks/exec-started",
            Topic::Paused => "/tasks/paused",
            Topic::Resumed => "/tasks/resumed",
        }
    }
}

/// One published event: topic, task id, and the exec id for exec processes (empty for init).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Event {
    /// The topic.
    pub topic: Topic,
    /// The task (container) id.
    pub id: String,
    /// The exec id, empty for the init process.
    pub exec: String,
}

/// One operation: a Tasks request, or something the world does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// `Tasks.Create` of the container with this id (its init runs until killed).
    Create(String),
    /// `Tasks.Start` of init.
    Start(String),
    /// `Tasks.Kill` of init with SIGKILL, then `Tasks.Wait` for the exit.
    Kill(String),
    /// `Tasks.Pause`.
    Pause(String),
    /// `Tasks.Resume`.
    Resume(String),
    /// `Tasks.Get`.
    Get(String),
    /// `Tasks.Wait` of init; issued only where it returns at once (stopped or unknown task).
    Wait(String),
    /// `Tasks.Delete`.
    Delete(String),
    /// `Tasks.Exec`: add exec process (task, exec id) running until killed.
    Exec(String, String),
    /// `Tasks.Start` of an exec process.
    StartExec(String, String),
    /// `Tasks.Kill` of an exec process with SIGKILL, then `Tasks.Wait` for its exit.
    KillExec(String, String),
    /// `Tasks.DeleteProcess`.
    DeleteProcess(String, String),
    /// The daemon is killed with SIGKILL and started again; shims and tasks live on.
    Restart,
    /// The daemon is killed with SIGKILL; while it is down someone kills this task's init with
    /// SIGKILL (by pid); then the daemon starts again.
    RestartAfterExit(String),
}

/// What a request answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// Done, nothing to report.
    Done,
    /// `Get`: status and exit status (present once stopped).
    Status(Status, Option<u32>),
    /// `Wait`, `Kill` (the awaited exit), `Delete`, `DeleteProcess`: the exit status.
    ExitStatus(u32),
}

/// The gRPC code a refusal carries (containerd's errdefs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Code {
    /// `NotFound`
    NotFound,
    /// `AlreadyExists`
    AlreadyExists,
    /// `FailedPrecondition`
    FailedPrecondition,
}

/// Why a request was refused; a refusal never changes the state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum TaskError {
    /// task {0} not found
    #[error("task {0} not found")]
    NotFound(String),
    /// process {exec} of task {id} not found
    #[error("process {exec} of task {id} not found")]
    ExecNotFound {
        /// The task.
        id: String,
        /// The exec id.
        exec: String,
    },
    /// task {0} already exists
    #[error("task {0} already exists")]
    AlreadyExists(String),
    /// process {exec} of task {id} already exists
    #[error("process {exec} of task {id} already exists")]
    ExecAlreadyExists {
        /// The task.
        id: String,
        /// The exec id.
        exec: String,
    },
    /// cannot {op} task {id}: it is {status:?}
    #[error("cannot {op} task {id}: it is {status:?}")]
    TaskState {
        /// The request.
        op: String,
        /// The task.
        id: String,
        /// The status it met.
        status: Status,
    },
    /// cannot {op} process {exec} of task {id}: it is {status:?}
    #[error("cannot {op} process {exec} of task {id}: it is {status:?}")]
    ExecState {
        /// The request.
        op: String,
        /// The task.
        id: String,
        /// The exec id.
        exec: String,
        /// The status it met.
        status: ExecStatus,
    },
}

impl TaskError {
    /// The gRPC code containerd answers this refusal with.
    pub fn code(&self) -> Code {
        match self {
            TaskError::NotFound(_) | TaskError::ExecNotFound { .. } => Code::NotFound,
            TaskError::AlreadyExists(_) | TaskError::ExecAlreadyExists { .. } => {
                Code::AlreadyExists
            }
            TaskError::TaskState { .. } | TaskError::ExecState { .. } => Code::FailedPrecondition,
        }
    }
}

/// The tasks of one namespace and the events published so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Model {
    /// Tasks by id; a deleted task is absent.
    pub tasks: BTreeMap<String, Task>,
    /// Every event published, in order.
    pub events: Vec<Event>,
}

fn event(topic: Topic, id: &str, exec: &str) -> Event {
    Event {
        topic,
        id: id.to_string(),
        exec: exec.to_string(),
    }
}

impl Model {
    /// No tasks, no events.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `op` can be issued now: `Wait` only where it returns at once, and a task is
    /// killed behind the daemon's back only while it runs (a frozen or not yet started init
    /// would not exit the same way on every kernel).
    pub fn legal(&self, op: &Op) -> bool {
        match op {
            Op::Wait(id) => self
                .tasks
                .get(id)
                .is_none_or(|t| t.status == Status::Stopped),
            Op::RestartAfterExit(id) => self
                .tasks
                .get(id)
                .is_some_and(|t| t.status == Status::Running),
            _ => true,
        }
    }

    fn task(&self, id: &str) -> Result<&Task, TaskError> {
        self.tasks
            .get(id)
            .ok_or_else(|| TaskError::NotFound(id.to_string()))
    }

    fn wrong(op: &str, id: &str, status: Status) -> TaskError {
        TaskError::TaskState {
            op: op.to_string(),
            id: id.to_string(),
            status,
        }
    }

    fn exec_status(&self, id: &str, exec: &str) -> Result<(ExecStatus, Option<u32>), TaskError> {
        self.task(id)?
            .execs
            .get(exec)
            .copied()
            .ok_or_else(|| TaskError::ExecNotFound {
                id: id.to_string(),
                exec: exec.to_string(),
            })
    }

    fn wrong_exec(op: &str, id: &str, exec: &str, status: ExecStatus) -> TaskError {
        TaskError::ExecState {
            op: op.to_string(),
            id: id.to_string(),
            exec: exec.to_string(),
            status,
        }
    }

    /// Init of `id` exits with SIGKILL; its running execs die with it (they share its PID
    /// namespace). Exec exits are published before init's, as the shims reap them.
    fn init_killed(&mut self, id: &str) {
        let Some(task) = self.tasks.get_mut(id) else {
            return;
        };
        let mut events = Vec::new();
        for (exec, (status, exit)) in task.execs.iter_mut() {
            if *status == ExecStatus::Running {
                *status = ExecStatus::Stopped;
                *exit = Some(KILLED);
                events.push(event(Topic::Exit, id, exec));
            }
        }
        task.status = Status::Stopped;
        task.exit_status = Some(KILLED);
        events.push(event(Topic::Exit, id, ""));
        self.events.extend(events);
    }

    /// Applies `op` (which must be [`Model::legal`]); a refusal leaves the model unchanged.
    ///
    /// # Errors
    /// The [`TaskError`] the daemon must answer.
    pub fn apply(&mut self, op: &Op) -> Result<Reply, TaskError> {
        match op {
            Op::Create(id) => {
                if self.tasks.contains_key(id) {
                    return Err(TaskError::AlreadyExists(id.clone()));
                }
                self.tasks.insert(
                    id.clone(),
                    Task {
                        status: Status::Created,
                        exit_status: None,
                        execs: BTreeMap::new(),
                    },
                );
                self.events.push(event(Topic::Create, id, ""));
                Ok(Reply::Done)
            }
            Op::Start(id) => match self.task(id)?.status {
                Status::Created => {
                    self.set_status(id, Status::Running);
                    self.events.push(event(Topic::Start, id, ""));
                    Ok(Reply::Done)
                }
                s => Err(Self::wrong("start", id, s)),
            },
            // A paused init dies too: the runtime thaws the cgroup after SIGKILL (runc 1.1,
            // refeng-runc), so the answer is the same under either freezer.
            Op::Kill(id) => match self.task(id)?.status {
                Status::Created | Status::Running | Status::Paused => {
                    self.init_killed(id);
                    Ok(Reply::ExitStatus(KILLED))
                }
                // containerd: "process already finished".
                Status::Stopped => Err(TaskError::NotFound(id.clone())),
            },
            Op::Pause(id) => match self.task(id)?.status {
                Status::Running => {
                    self.set_status(id, Status::Paused);
                    self.events.push(event(Topic::Paused, id, ""));
                    Ok(Reply::Done)
                }
                s => Err(Self::wrong("pause", id, s)),
            },
            Op::Resume(id) => match self.task(id)?.status {
                Status::Paused => {
                    self.set_status(id, Status::Running);
                    self.events.push(event(Topic::Resumed, id, ""));
                    Ok(Reply::Done)
                }
                s => Err(Self::wrong("resume", id, s)),
            },
            Op::Get(id) => {
                let t = self.task(id)?;
                Ok(Reply::Status(t.status, t.exit_status))
            }
            Op::Wait(id) => {
                let t = self.task(id)?;
                match (t.status, t.exit_status) {
                    (Status::Stopped, Some(code)) => Ok(Reply::ExitStatus(code)),
                    (s, _) => Err(Self::wrong("wait", id, s)),
                }
            }
            Op::Delete(id) => match self.task(id)?.status {
                Status::Created => {
                    // The runtime kills an init that never started.
                    self.tasks.remove(id);
                    self.events.push(event(Topic::Delete, id, ""));
                    Ok(Reply::ExitStatus(KILLED))
                }
                Status::Stopped => {
                    let code = self.task(id)?.exit_status.unwrap_or_default();
                    self.tasks.remove(id);
                    self.events.push(event(Topic::Delete, id, ""));
                    Ok(Reply::ExitStatus(code))
                }
                s => Err(Self::wrong("delete", id, s)),
            },
            Op::Exec(id, exec) => {
                let t = self.task(id)?;
                if t.execs.contains_key(exec) {
                    return Err(TaskError::ExecAlreadyExists {
                        id: id.clone(),
                        exec: exec.clone(),
                    });
                }
                if t.status != Status::Running {
                    return Err(Self::wrong("exec in", id, t.status));
                }
                self.exec_entry(id)
                    .insert(exec.clone(), (ExecStatus::Created, None));
                self.events.push(event(Topic::ExecAdded, id, exec));
                Ok(Reply::Done)
            }
            Op::StartExec(id, exec) => {
                let (status, _) = self.exec_status(id, exec)?;
                let task_status = self.task(id)?.status;
                if task_status != Status::Running {
                    return Err(Self::wrong("start a process in", id, task_status));
                }
                match status {
                    ExecStatus::Created => {
                        self.exec_entry(id)
                            .insert(exec.clone(), (ExecStatus::Running, None));
                        self.events.push(event(Topic::ExecStarted, id, exec));
                        Ok(Reply::Done)
                    }
                    s => Err(Self::wrong_exec("start", id, exec, s)),
                }
            }
            Op::KillExec(id, exec) => {
                let (status, _) = self.exec_status(id, exec)?;
                let task_status = self.task(id)?.status;
                if task_status == Status::Paused {
                    return Err(Self::wrong("kill a process in", id, task_status));
                }
                match status {
                    ExecStatus::Running => {
                        self.exec_entry(id)
                            .insert(exec.clone(), (ExecStatus::Stopped, Some(KILLED)));
                        self.events.push(event(Topic::Exit, id, exec));
                        Ok(Reply::ExitStatus(KILLED))
                    }
                    ExecStatus::Stopped => Err(TaskError::ExecNotFound {
                        id: id.clone(),
                        exec: exec.clone(),
                    }),
                    s => Err(Self::wrong_exec("kill", id, exec, s)),
                }
            }
            Op::DeleteProcess(id, exec) => match self.exec_status(id, exec)? {
                (ExecStatus::Running, _) => {
                    Err(Self::wrong_exec("delete", id, exec, ExecStatus::Running))
                }
                (ExecStatus::Created, _) => {
                    self.exec_entry(id).remove(exec);
                    Ok(Reply::Done)
                }
                (ExecStatus::Stopped, code) => {
                    self.exec_entry(id).remove(exec);
                    Ok(Reply::ExitStatus(code.unwrap_or_default()))
                }
            },
            Op::Restart => Ok(Reply::Done),
            Op::RestartAfterExit(id) => {
                self.task(id)?;
                self.init_killed(id);
                Ok(Reply::Done)
            }
        }
    }

    fn set_status(&mut self, id: &str, status: Status) {
        if let Some(t) = self.tasks.get_mut(id) {
            t.status = status;
        }
    }

    fn exec_entry(&mut self, id: &str) -> &mut BTreeMap<String, (ExecStatus, Option<u32>)> {
        &mut self
            .tasks
            .get_mut(id)
            .expect("callers checked that the task exists")
            .execs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> String {
        x.to_string()
    }

    #[test]
    fn deleting_a_running_task_is_a_failed_precondition_and_changes_nothing() {
        let mut m = Model::new();
        m.apply(&Op::Create(s("a"))).unwrap();
        m.apply(&Op::Start(s("a"))).unwrap();
        let before = m.clone();
        let err = m.apply(&Op::Delete(s("a"))).unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition);
        assert_eq!(m, before);
    }

    #[test]
    fn an_exit_while_the_daemon_is_down_is_published_and_waitable() {
        let mut m = Model::new();
        for op in [
            Op::Create(s("a")),
            Op::Start(s("a")),
            Op::Exec(s("a"), s("e")),
            Op::StartExec(s("a"), s("e")),
        ] {
            m.apply(&op).unwrap();
        }
        assert!(m.legal(&Op::RestartAfterExit(s("a"))));
        m.apply(&Op::RestartAfterExit(s("a"))).unwrap();
        assert_eq!(m.apply(&Op::Wait(s("a"))), Ok(Reply::ExitStatus(KILLED)));
        let exits: Vec<_> = m
            .events
            .iter()
            .filter(|e| e.topic == Topic::Exit)
            .map(|e| e.exec.as_str())
            .collect();
        assert_eq!(exits, ["e", ""]);
        assert_eq!(
            m.apply(&Op::DeleteProcess(s("a"), s("e"))),
            Ok(Reply::ExitStatus(KILLED))
        );
        assert_eq!(m.apply(&Op::Delete(s("a"))), Ok(Reply::ExitStatus(KILLED)));
        assert_eq!(
            m.apply(&Op::Get(s("a"))).unwrap_err().code(),
            Code::NotFound
        );
    }

    #[test]
    fn pause_resume_and_the_refusals_around_them() {
        let mut m = Model::new();
        m.apply(&Op::Create(s("a"))).unwrap();
        assert_eq!(
            m.apply(&Op::Pause(s("a"))).unwrap_err().code(),
            Code::FailedPrecondition
        );
        m.apply(&Op::Start(s("a"))).unwrap();
        m.apply(&Op::Pause(s("a"))).unwrap();
        for op in [
            Op::Exec(s("a"), s("e")),
            Op::Delete(s("a")),
            Op::Pause(s("a")),
        ] {
            assert_eq!(
                m.apply(&op).unwrap_err().code(),
                Code::FailedPrecondition,
                "{op:?}"
            );
        }
        m.apply(&Op::Resume(s("a"))).unwrap();
        assert_eq!(m.apply(&Op::Kill(s("a"))), Ok(Reply::ExitStatus(KILLED)));
        assert_eq!(
            m.apply(&Op::Kill(s("a"))).unwrap_err().code(),
            Code::NotFound
        );
        let topics: Vec<_> = m.events.iter().map(|e| e.topic).collect();
        assert_eq!(
            topics,
            [
                Topic::Create,
                Topic::Start,
                Topic::Paused,
                Topic::Resumed,
                Topic::Exit
            ]
        );
    }

    #[test]
    fn a_paused_task_is_killed() {
        let mut m = Model::new();
        m.apply(&Op::Create(s("a"))).unwrap();
        m.apply(&Op::Start(s("a"))).unwrap();
        m.apply(&Op::Pause(s("a"))).unwrap();
        assert_eq!(m.apply(&Op::Kill(s("a"))), Ok(Reply::ExitStatus(KILLED)));
        assert_eq!(
            m.apply(&Op::Get(s("a"))),
            Ok(Reply::Status(Status::Stopped, Some(KILLED)))
        );
        assert_eq!(m.apply(&Op::Delete(s("a"))), Ok(Reply::ExitStatus(KILLED)));
    }
}
