//! The OCI container lifecycle (runtime-spec 1.2, runtime.md "State", "Lifecycle" and
//! "Operations") as a pure model: a map from container id to status, and the operations that
//! move it.
//!
//! The model follows the spec's MUSTs, also where runc deviates; the property test in
//! `tests/lifecycle_model.rs` lists runc's deviations. `pause`, `resume` and `delete --force`
//! are not spec operations; they follow the runc command-line contract, which refeng-runc
//! implements.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The runtime state of a container: the `status` property of the state document.
///
/// runtime-spec: State, `status` — `creating`, `created`, `running` and `stopped`; `paused` is one
/// of the "additional values [...] defined by the runtime" (runc's, which refeng-runc shares).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The container is being created (runtime-spec: Lifecycle step 2). The model's `create` is
    /// atomic, so no container rests in this state; it exists so that observed states parse.
    Creating,
    /// `create` finished; the container process has neither exited nor run the user program.
    Created,
    /// The container process runs the user-specified program.
    Running,
    /// The container's processes are frozen (`pause`; a runtime-defined state).
    Paused,
    /// The container process has exited (runtime-spec: Lifecycle step 10).
    Stopped,
}

impl Status {
    /// The lowercase name used in the state document and in error messages.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Creating => "creating",
            Self::Created => "created",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Stopped => "stopped",
        }
    }

    /// Parses the lowercase name of a status, as found in a state document.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        [
            Self::Creating,
            Self::Created,
            Self::Running,
            Self::Paused,
            Self::Stopped,
        ]
        .into_iter()
        .find(|status| status.as_str() == name)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A signal that `kill` sends, reduced to what the model needs to know about it.
///
/// The model's container process is a shell running as pid 1 of its pid namespace with no signal
/// handlers; the kernel drops every signal to such a process except `SIGKILL` (and `SIGSTOP`),
/// so only [`Signal::Kill`] changes the status. The same holds in `created`, where the container
/// process is still the runtime's stub waiting for `start`: the model requires the stub to keep
/// default dispositions, as the program it becomes would (runc's Go stub exits on `SIGTERM`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Signal {
    /// `SIGKILL`: the container process dies.
    Kill,
    /// `SIGTERM`: ignored by an init without a handler.
    Term,
    /// `SIGUSR1`: ignored by an init without a handler.
    Usr1,
}

impl Signal {
    /// The name without the `SIG` prefix, as the runc command line takes it (`kill <id> KILL`).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Kill => "KILL",
            Self::Term => "TERM",
            Self::Usr1 => "USR1",
        }
    }

    /// Whether delivering this signal ends the model's container process.
    #[must_use]
    pub fn stops_process(self) -> bool {
        match self {
            Self::Kill => true,
            Self::Term | Self::Usr1 => false,
        }
    }
}

/// An operation on the model: a runtime command issued by the caller, or an event of the world.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Operation {
    /// `create <id> <bundle>` (runtime-spec: Operations, Create).
    Create {
        /// The container id.
        id: String,
    },
    /// `start <id>` (runtime-spec: Operations, Start).
    Start {
        /// The container id.
        id: String,
    },
    /// `kill <id> <signal>` (runtime-spec: Operations, Kill).
    Kill {
        /// The container id.
        id: String,
        /// The signal sent to the container process.
        signal: Signal,
    },
    /// The world: the container process exits by itself (runtime-spec: Lifecycle step 10).
    ProcessExit {
        /// The container id.
        id: String,
    },
    /// `delete [--force] <id>` (runtime-spec: Operations, Delete; `--force` is runc's).
    Delete {
        /// The container id.
        id: String,
        /// Kill the container process first, so that any state can be deleted.
        force: bool,
    },
    /// `state <id>` (runtime-spec: Operations, Query State).
    State {
        /// The container id.
        id: String,
    },
    /// `pause <id>` (runc command line; not a spec operation).
    Pause {
        /// The container id.
        id: String,
    },
    /// `resume <id>` (runc command line; not a spec operation).
    Resume {
        /// The container id.
        id: String,
    },
}

impl Operation {
    /// The id of the container the operation is about.
    #[must_use]
    pub fn id(&self) -> &str {
        match self {
            Self::Create { id }
            | Self::Start { id }
            | Self::Kill { id, .. }
            | Self::ProcessExit { id }
            | Self::Delete { id, .. }
            | Self::State { id }
            | Self::Pause { id }
            | Self::Resume { id } => id,
        }
    }

    /// The kind of the operation, without its arguments.
    #[must_use]
    pub fn kind(&self) -> OpKind {
        match self {
            Self::Create { .. } => OpKind::Create,
            Self::Start { .. } => OpKind::Start,
            Self::Kill { .. } => OpKind::Kill,
            Self::ProcessExit { .. } => OpKind::ProcessExit,
            Self::Delete { .. } => OpKind::Delete,
            Self::State { .. } => OpKind::State,
            Self::Pause { .. } => OpKind::Pause,
            Self::Resume { .. } => OpKind::Resume,
        }
    }
}

/// The kind of an [`Operation`]; its `Display` is the verb used in error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpKind {
    /// `create`.
    Create,
    /// `start`.
    Start,
    /// `kill`.
    Kill,
    /// The container process exits by itself.
    ProcessExit,
    /// `delete`.
    Delete,
    /// `state`.
    State,
    /// `pause`.
    Pause,
    /// `resume`.
    Resume,
    /// `exec` (runc's extension: a new process in a created or running container). Not an
    /// [`Operation`] of the model, which covers the spec's lifecycle only; the runtime names it
    /// in its wrong-state errors.
    Exec,
    /// `update` (runc's: new resource limits for a container whose process lives). Like
    /// [`OpKind::Exec`], only named in the runtime's wrong-state errors.
    Update,
}

impl OpKind {
    /// The lowercase verb, as in `cannot start container a: it is running`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Start => "start",
            Self::Kill => "kill",
            Self::ProcessExit => "exit",
            Self::Delete => "delete",
            Self::State => "state",
            Self::Pause => "pause",
            Self::Resume => "resume",
            Self::Exec => "exec",
            Self::Update => "update",
        }
    }

    /// Parses a verb as printed by [`OpKind::as_str`].
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        [
            Self::Create,
            Self::Start,
            Self::Kill,
            Self::ProcessExit,
            Self::Delete,
            Self::State,
            Self::Pause,
            Self::Resume,
            Self::Exec,
            Self::Update,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == name)
    }
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a successful operation reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Outcome {
    /// The operation took effect (or, for a signal the process ignores, was delivered).
    Done,
    /// `state` reports the container's status.
    State(Status),
}

/// Why the runtime must reject an operation. Every rejection leaves the model unchanged
/// (runtime-spec: Errors, "generating an error MUST leave the state of the environment as if the
/// operation were never attempted"). The messages are refeng-runc's.
#[derive(Debug, Clone, PartialEq, Eq, Hash, thiserror::Error, Serialize, Deserialize)]
pub enum OpError {
    /// container {id} does not exist
    #[error("container {id} does not exist")]
    NotFound {
        /// The container id.
        id: String,
    },
    /// container {id} already exists
    #[error("container {id} already exists")]
    AlreadyExists {
        /// The container id.
        id: String,
    },
    /// cannot {op} container {id}: it is {state}
    #[error("cannot {op} container {id}: it is {state}")]
    WrongState {
        /// The container id.
        id: String,
        /// The container's status, which the operation is not allowed in.
        state: Status,
        /// The rejected operation.
        op: OpKind,
    },
}

/// The containers known to one runtime root, each with its status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Model {
    /// Container id → status. An id is absent before `create` and after `delete`.
    pub containers: BTreeMap<String, Status>,
}

impl Model {
    /// An empty model: no containers.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The status of container `id`, if it exists.
    #[must_use]
    pub fn status(&self, id: &str) -> Option<Status> {
        self.containers.get(id).copied()
    }

    /// Whether `op` may happen at all in this state: the precondition a test generator must
    /// respect.
    ///
    /// Every runtime command is legal in every state (a command the runtime must reject is still a
    /// command a caller may issue); only the world event [`Operation::ProcessExit`] needs a
    /// running process, since a created container has not run the program yet, a paused one is
    /// frozen and a stopped one has already exited.
    #[must_use]
    pub fn legal(&self, op: &Operation) -> bool {
        match op {
            Operation::ProcessExit { id } => self.status(id) == Some(Status::Running),
            Operation::Create { .. }
            | Operation::Start { .. }
            | Operation::Kill { .. }
            | Operation::Delete { .. }
            | Operation::State { .. }
            | Operation::Pause { .. }
            | Operation::Resume { .. } => true,
        }
    }

    /// Applies `op`: on success moves the model to the next state and returns what the runtime
    /// reports; on error leaves the model unchanged.
    ///
    /// # Errors
    ///
    /// - [`OpError::AlreadyExists`] for `create` of an id that exists (runtime-spec: Create, "If
    ///   the ID provided is not unique [...] MUST generate an error and a new container MUST NOT
    ///   be created").
    /// - [`OpError::NotFound`] for any other operation on an id that does not exist
    ///   (runtime-spec: Query State, "Attempting to query a container that does not exist MUST
    ///   generate an error"; the other operations need an existing container to act on), except
    ///   `delete --force`, which succeeds (runc's command line).
    /// - [`OpError::WrongState`] when the container exists but is not in a state the operation
    ///   allows: see [`Model::next`].
    pub fn apply(&mut self, op: &Operation) -> Result<Outcome, OpError> {
        let id = op.id();
        let current = self.status(id);
        let (outcome, next) = Self::next(op, current)?;
        match next {
            Some(status) => self.containers.insert(id.to_owned(), status),
            None => self.containers.remove(id),
        };
        Ok(outcome)
    }

    /// The transition table: given `op` and the status of its container (`None`: absent), the
    /// outcome and the container's next status (`None`: absent).
    ///
    /// # Errors
    ///
    /// The rules, each from the spec's text (runtime-spec 1.2, runtime.md "Operations"):
    /// - `create`: only of an absent id, else [`OpError::AlreadyExists`].
    /// - `start`: only from `created` ("Attempting to `start` a container that is not `created`
    ///   MUST have no effect on the container and MUST generate an error").
    /// - `kill`: only in `created`, `running` or `paused` ("Attempting to send a signal to a
    ///   container that is neither `created` nor `running` MUST have no effect on the container
    ///   and MUST generate an error"). `paused` is the runtime's own status, not one of the
    ///   spec's four: its process has executed the program and not exited, which is the spec's
    ///   `running`, so it is signalled as runc and crun signal it (dockerd and containerd kill
    ///   paused containers through them). `KILL` stops it (the runtime thaws the cgroup, as
    ///   runc does, so that it dies under either freezer); other signals stay pending while it
    ///   is frozen, and it stays `paused`.
    /// - `delete` without force: only from `stopped` ("Attempting to `delete` a container that
    ///   is not `stopped` MUST have no effect on the container and MUST generate an error");
    ///   with force (runc): from any state, killing the process first, and of an absent id.
    /// - `state`: any existing container.
    /// - `pause` only from `running`, `resume` only from `paused` (runc command line).
    /// - the process exits by itself only while `running` (see [`Model::legal`]).
    pub fn next(
        op: &Operation,
        current: Option<Status>,
    ) -> Result<(Outcome, Option<Status>), OpError> {
        let id = op.id();
        let Some(status) = current else {
            return match op {
                Operation::Create { .. } => Ok((Outcome::Done, Some(Status::Created))),
                // runc's contract: `delete --force` makes sure the id is gone, so an id that is
                // gone already is success (it also clears a state directory a half-finished
                // create left behind).
                Operation::Delete { force: true, .. } => Ok((Outcome::Done, None)),
                Operation::Start { .. }
                | Operation::Kill { .. }
                | Operation::ProcessExit { .. }
                | Operation::Delete { force: false, .. }
                | Operation::State { .. }
                | Operation::Pause { .. }
                | Operation::Resume { .. } => Err(OpError::NotFound { id: id.to_owned() }),
            };
        };
        let wrong_state = || OpError::WrongState {
            id: id.to_owned(),
            state: status,
            op: op.kind(),
        };
        let next = match (op, status) {
            (Operation::Create { .. }, _) => {
                return Err(OpError::AlreadyExists { id: id.to_owned() })
            }
            (Operation::State { .. }, _) => return Ok((Outcome::State(status), Some(status))),

            (Operation::Start { .. }, Status::Created) => Status::Running,
            (Operation::Start { .. }, _) => return Err(wrong_state()),

            (
                Operation::Kill { signal, .. },
                Status::Created | Status::Running | Status::Paused,
            ) => {
                if signal.stops_process() {
                    Status::Stopped
                } else {
                    status
                }
            }
            (Operation::Kill { .. }, _) => return Err(wrong_state()),

            (Operation::ProcessExit { .. }, Status::Running) => Status::Stopped,
            (Operation::ProcessExit { .. }, _) => return Err(wrong_state()),

            (Operation::Delete { force: true, .. }, _)
            | (Operation::Delete { force: false, .. }, Status::Stopped) => {
                return Ok((Outcome::Done, None))
            }
            (Operation::Delete { force: false, .. }, _) => return Err(wrong_state()),

            (Operation::Pause { .. }, Status::Running) => Status::Paused,
            (Operation::Pause { .. }, _) => return Err(wrong_state()),

            (Operation::Resume { .. }, Status::Paused) => Status::Running,
            (Operation::Resume { .. }, _) => return Err(wrong_state()),
        };
        Ok((Outcome::Done, Some(next)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "c";

    fn ops() -> Vec<Operation> {
        let id = || ID.to_owned();
        vec![
            Operation::Create { id: id() },
            Operation::Start { id: id() },
            Operation::Kill {
                id: id(),
                signal: Signal::Kill,
            },
            Operation::Kill {
                id: id(),
                signal: Signal::Term,
            },
            Operation::ProcessExit { id: id() },
            Operation::Delete {
                id: id(),
                force: false,
            },
            Operation::Delete {
                id: id(),
                force: true,
            },
            Operation::State { id: id() },
            Operation::Pause { id: id() },
            Operation::Resume { id: id() },
        ]
    }

    fn model_in(status: Option<Status>) -> Model {
        let mut model = Model::new();
        if let Some(status) = status {
            model.containers.insert(ID.to_owned(), status);
        }
        model
    }

    /// The whole table op × state, written out once by hand: `Ok(next)` or the error's verb.
    fn expected(op: &Operation, state: Option<Status>) -> Result<Option<Status>, &'static str> {
        use Status::{Created, Paused, Running, Stopped};
        let stays = Ok(state);
        match (op, state) {
            (Operation::Create { .. }, None) => Ok(Some(Created)),
            (Operation::Create { .. }, Some(_)) => Err("exists"),
            (Operation::Delete { force: true, .. }, None) => Ok(None),
            (_, None) => Err("not found"),
            (Operation::State { .. }, _) => stays,
            (Operation::Start { .. }, Some(Created)) => Ok(Some(Running)),
            (
                Operation::Kill {
                    signal: Signal::Kill,
                    ..
                },
                Some(Created | Running),
            ) => Ok(Some(Stopped)),
            (
                Operation::Kill {
                    signal: Signal::Kill,
                    ..
                },
                Some(Paused),
            ) => Ok(Some(Stopped)),
            (Operation::Kill { .. }, Some(Created | Running | Paused)) => stays,
            (Operation::ProcessExit { .. }, Some(Running)) => Ok(Some(Stopped)),
            (Operation::Delete { force: true, .. }, Some(_)) => Ok(None),
            (Operation::Delete { .. }, Some(Stopped)) => Ok(None),
            (Operation::Pause { .. }, Some(Running)) => Ok(Some(Paused)),
            (Operation::Resume { .. }, Some(Paused)) => Ok(Some(Running)),
            (_, Some(_)) => Err("wrong state"),
        }
    }

    #[test]
    fn every_op_in_every_state_follows_the_table() {
        let states = [
            None,
            Some(Status::Creating),
            Some(Status::Created),
            Some(Status::Running),
            Some(Status::Paused),
            Some(Status::Stopped),
        ];
        for state in states {
            for op in ops() {
                let mut model = model_in(state);
                let before = model.clone();
                let got = model.apply(&op);
                match (expected(&op, state), got) {
                    (Ok(next), Ok(outcome)) => {
                        assert_eq!(model.status(ID), next, "{op:?} in {state:?}");
                        let want = if op.kind() == OpKind::State {
                            Outcome::State(state.expect("state of an existing id"))
                        } else {
                            Outcome::Done
                        };
                        assert_eq!(outcome, want, "{op:?} in {state:?}");
                    }
                    (Err(kind), Err(error)) => {
                        assert_eq!(model, before, "an error changed the model: {op:?}");
                        let id = ID.to_owned();
                        let want = match (kind, state) {
                            ("exists", _) => OpError::AlreadyExists { id },
                            ("not found", _) => OpError::NotFound { id },
                            (_, Some(state)) => OpError::WrongState {
                                id,
                                state,
                                op: op.kind(),
                            },
                            (_, None) => unreachable!("wrong state needs a state"),
                        };
                        assert_eq!(error, want, "{op:?} in {state:?}");
                    }
                    (want, got) => panic!("{op:?} in {state:?}: want {want:?}, got {got:?}"),
                }
            }
        }
    }

    #[test]
    fn a_paused_container_is_signalled_as_the_spec_running_one() {
        let mut model = model_in(Some(Status::Paused));
        let term = Operation::Kill {
            id: ID.to_owned(),
            signal: Signal::Term,
        };
        assert_eq!(model.apply(&term), Ok(Outcome::Done));
        assert_eq!(model.status(ID), Some(Status::Paused));
        let kill = Operation::Kill {
            id: ID.to_owned(),
            signal: Signal::Kill,
        };
        assert_eq!(model.apply(&kill), Ok(Outcome::Done));
        assert_eq!(model.status(ID), Some(Status::Stopped));
    }

    #[test]
    fn an_id_is_free_again_after_delete() {
        let mut model = Model::new();
        let id = || ID.to_owned();
        let steps = [
            Operation::Create { id: id() },
            Operation::Start { id: id() },
            Operation::ProcessExit { id: id() },
            Operation::Delete {
                id: id(),
                force: false,
            },
            Operation::Create { id: id() },
        ];
        for op in &steps {
            assert_eq!(model.apply(op), Ok(Outcome::Done), "{op:?}");
        }
        assert_eq!(model.status(ID), Some(Status::Created));
    }

    #[test]
    fn messages_are_the_runtimes() {
        let id = ID.to_owned();
        assert_eq!(
            OpError::NotFound { id: id.clone() }.to_string(),
            "container c does not exist"
        );
        assert_eq!(
            OpError::AlreadyExists { id: id.clone() }.to_string(),
            "container c already exists"
        );
        assert_eq!(
            OpError::WrongState {
                id,
                state: Status::Running,
                op: OpKind::Start
            }
            .to_string(),
            "cannot start container c: it is running"
        );
    }

    #[test]
    fn only_a_running_process_can_exit() {
        for state in [
            None,
            Some(Status::Created),
            Some(Status::Paused),
            Some(Status::Stopped),
        ] {
            let model = model_in(state);
            assert!(!model.legal(&Operation::ProcessExit { id: ID.to_owned() }));
        }
        let model = model_in(Some(Status::Running));
        assert!(model.legal(&Operation::ProcessExit { id: ID.to_owned() }));
        assert!(ops()
            .iter()
            .filter(|op| op.kind() != OpKind::ProcessExit)
            .all(|op| Model::new().legal(op)));
    }

    #[test]
    fn names_round_trip() {
        for status in [
            Status::Creating,
            Status::Created,
            Status::Running,
            Status::Paused,
            Status::Stopped,
        ] {
            assert_eq!(Status::from_name(status.as_str()), Some(status));
        }
        for op in ops() {
            assert_eq!(OpKind::from_name(op.kind().as_str()), Some(op.kind()));
        }
    }
}
