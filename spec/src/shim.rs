//! The shim handoff model: how one container's init process passes from a freshly spawned shim
//! through the runtime to its exit and deletion, while the caller (containerd) may vanish and come
//! back at any point, and which events the caller sees in the end.

use serde::{Deserialize, Serialize};

/// Where the init process of the shim's task is. `Spawned` is the shim before its ttrpc server
/// answers; the model starts at `Serving` because `start` returns only once it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Phase {
    /// The shim process exists, its server is not answering yet.
    Spawned,
    /// The server answers; no container exists.
    Serving,
    /// The runtime created the container (`Create` succeeded); init waits for `Start`.
    Created,
    /// `Start` succeeded; the init process runs.
    Started,
    /// The init process exited; its status is kept until `Delete`.
    Exited,
    /// `Delete` removed the container; the shim only waits for `Shutdown`.
    Deleted,
    /// `Shutdown` ended the shim process.
    ShutDown,
}

/// The task events the shim publishes, in containerd's topic order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Topic {
    /// `/tasks/create`
    Create,
    /// `/tasks/start`
    Start,
    /// `/tasks/exit`
    Exit,
    /// `/tasks/delete`
    Delete,
}

/// One step: a request of the caller, or something the world does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// ttrpc Create.
    Create,
    /// ttrpc Start of init.
    Start,
    /// ttrpc Kill of init with SIGKILL (the exit arrives as a separate `Exit`).
    Kill,
    /// ttrpc State of init.
    State,
    /// ttrpc Wait of init; only issued where it returns at once (the model has no blocking).
    Wait,
    /// ttrpc Delete of init.
    Delete,
    /// ttrpc Shutdown.
    Shutdown,
    /// The world: init exits with this status.
    Exit(u32),
    /// The world: the caller dies (containerd killed); events cannot be delivered.
    CallerGone,
    /// The world: the caller is back (containerd restarted) and re-attaches.
    CallerBack,
}

/// What a request answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// The request succeeded with nothing to report.
    Done,
    /// State: the phase, and the exit status once exited.
    State(Phase, Option<u32>),
    /// Wait or Delete: the exit status.
    ExitStatus(u32),
    /// Shutdown refused because a process is left; the shim keeps serving.
    StillServing,
}

/// Why a request failed; it never changes the state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ShimError {
    /// task does not exist
    #[error("task does not exist")]
    NotFound,
    /// task already exists
    #[error("task already exists")]
    AlreadyExists,
    /// cannot {op} task: it is {phase:?}
    #[error("cannot {op} task: it is {phase:?}")]
    WrongPhase {
        /// The request.
        op: String,
        /// The phase it met.
        phase: Phase,
    },
}

/// The model: the phase, the exit status, whether the caller is there, and the events it has
/// received and the ones still waiting for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Model {
    /// Where init is.
    pub phase: Phase,
    /// Init's exit status once it exited.
    pub exit_status: Option<u32>,
    /// Whether the caller is reachable.
    pub caller_present: bool,
    /// Events the caller received, in order.
    pub delivered: Vec<Topic>,
    /// Events waiting for the caller, in order.
    pub queued: Vec<Topic>,
}

impl Default for Model {
    fn default() -> Self {
        Self::new()
    }
}

impl Model {
    /// A shim whose `start` returned: serving, caller present.
    pub fn new() -> Self {
        Self {
            phase: Phase::Serving,
            exit_status: None,
            caller_present: true,
            delivered: Vec::new(),
            queued: Vec::new(),
        }
    }

    /// Whether `op` can happen now. Requests need a present caller (a vanished caller sends
    /// nothing); after shutdown only the caller comes and goes; `Exit` needs a live init; `Wait`
    /// is issued only where it does not block.
    pub fn legal(&self, op: &Op) -> bool {
        if self.phase == Phase::ShutDown {
            // The shim is gone; only the caller can still come and go.
            return match op {
                Op::CallerGone => self.caller_present,
                Op::CallerBack => !self.caller_present,
                _ => false,
            };
        }
        match op {
            Op::Exit(_) => matches!(self.phase, Phase::Created | Phase::Started),
            Op::CallerGone => self.caller_present,
            Op::CallerBack => !self.caller_present,
            Op::Wait => {
                self.caller_present && !matches!(self.phase, Phase::Created | Phase::Started)
            }
            Op::Create | Op::Start | Op::Kill | Op::State | Op::Delete | Op::Shutdown => {
                self.caller_present
            }
        }
    }

    fn emit(&mut self, topic: Topic) {
        if self.caller_present && self.queued.is_empty() {
            self.delivered.push(topic);
        } else {
            self.queued.push(topic);
        }
    }

    fn wrong(&self, op: &str) -> ShimError {
        ShimError::WrongPhase {
            op: op.to_string(),
            phase: self.phase,
        }
    }

    /// Applies a legal `op`; an error leaves the model unchanged.
    ///
    /// # Errors
    /// The [`ShimError`] the shim must answer: `NotFound` before Create and after Delete,
    /// `AlreadyExists` for a second Create, `WrongPhase` otherwise.
    pub fn apply(&mut self, op: &Op) -> Result<Reply, ShimError> {
        use Phase::*;
        match (op, self.phase) {
            (Op::Create, Serving) => {
                self.phase = Created;
                self.emit(Topic::Create);
                Ok(Reply::Done)
            }
            (Op::Create, _) => Err(ShimError::AlreadyExists),
            (Op::Start, Created) => {
                self.phase = Started;
                self.emit(Topic::Start);
                Ok(Reply::Done)
            }
            (Op::Kill, Created | Started) => Ok(Reply::Done),
            // containerd's runc shim answers "process already finished" as NotFound.
            (Op::Kill, Exited) => Err(ShimError::NotFound),
            (Op::Start | Op::Kill | Op::State | Op::Wait | Op::Delete, Serving | Deleted) => {
                Err(ShimError::NotFound)
            }
            (Op::Start, _) => Err(self.wrong("start")),
            (Op::Kill, _) => Err(self.wrong("kill")),
            (Op::State, phase) => Ok(Reply::State(phase, self.exit_status)),
            (Op::Wait, Exited) => Ok(Reply::ExitStatus(self.exit_status.unwrap_or_default())),
            (Op::Wait, _) => Err(self.wrong("wait")),
            (Op::Delete, Created) => {
                // containerd deletes a created task that never started: the runtime kills init.
                self.phase = Deleted;
                self.exit_status = Some(137);
                self.emit(Topic::Delete);
                Ok(Reply::ExitStatus(137))
            }
            (Op::Delete, Exited) => {
                self.phase = Deleted;
                self.emit(Topic::Delete);
                Ok(Reply::ExitStatus(self.exit_status.unwrap_or_default()))
            }
            (Op::Delete, _) => Err(self.wrong("delete")),
            (Op::Shutdown, Serving | Deleted) => {
                self.phase = ShutDown;
                Ok(Reply::Done)
            }
            (Op::Shutdown, _) => Ok(Reply::StillServing),
            (Op::Exit(status), Created | Started) => {
                self.phase = Exited;
                self.exit_status = Some(*status);
                self.emit(Topic::Exit);
                Ok(Reply::Done)
            }
            (Op::Exit(_), _) => Err(self.wrong("exit")),
            (Op::CallerGone, _) => {
                self.caller_present = false;
                Ok(Reply::Done)
            }
            (Op::CallerBack, _) => {
                self.caller_present = true;
                self.delivered.append(&mut self.queued);
                Ok(Reply::Done)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_emitted_while_caller_is_gone_arrive_after_it_is_back() {
        let mut m = Model::new();
        for op in [
            Op::Create,
            Op::Start,
            Op::CallerGone,
            Op::Exit(3),
            Op::CallerBack,
        ] {
            assert!(m.legal(&op), "{op:?}");
            m.apply(&op).unwrap();
        }
        assert_eq!(m.delivered, [Topic::Create, Topic::Start, Topic::Exit]);
        assert_eq!(m.apply(&Op::Wait), Ok(Reply::ExitStatus(3)));
    }

    #[test]
    fn shutdown_waits_for_delete() {
        let mut m = Model::new();
        m.apply(&Op::Create).unwrap();
        assert_eq!(m.apply(&Op::Shutdown), Ok(Reply::StillServing));
        assert_eq!(m.apply(&Op::Delete), Ok(Reply::ExitStatus(137)));
        assert_eq!(m.apply(&Op::Shutdown), Ok(Reply::Done));
        assert!(!m.legal(&Op::State));
        assert!(m.legal(&Op::CallerGone));
    }
}
