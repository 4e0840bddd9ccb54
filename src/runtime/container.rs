//! The container lifecycle as typestate (runtime-spec "Lifecycle"): a caller-driven transition
//! consumes a `Container<S>` and returns the next state's type; what the world decides (the
//! process exited, a freezer froze it) enters through [`AnyContainer::load`], which derives the
//! status from the recorded pid, the exec fifo and the cgroup.

use std::marker::PhantomData;

use crate::runtime::state::{
    liveness, ContainerDir, Liveness, PersistedState, StateError, StateReport, StateRoot, Status,
};

/// Created: init waits on the exec fifo.
#[derive(Debug)]
pub struct Created;
/// Running: the user's program runs.
#[derive(Debug)]
pub struct Running;
/// Paused: its processes are frozen.
#[derive(Debug)]
pub struct Paused;
/// Stopped: the process exited; only delete is left.
#[derive(Debug)]
pub struct Stopped;

/// A container in state `S`, holding its directory lock for as long as it lives.
#[derive(Debug)]
pub struct Container<S> {
    pub(crate) dir: ContainerDir,
    pub(crate) state: Box<PersistedState>,
    _status: PhantomData<S>,
}

/// The operations of the lifecycle, for errors that name them: the model's type.
pub use refeng_spec::oci::OpKind as Operation;

/// An operation on a container in a state that does not allow it (runtime-spec "Operations":
/// such an attempt MUST have no effect and MUST generate an error).
#[derive(Debug, thiserror::Error)]
#[error("cannot {op} container {id}: it is {state}")]
pub struct WrongState {
    /// Container id.
    pub id: String,
    /// Its status.
    pub state: Status,
    /// The refused operation.
    pub op: Operation,
}

/// A container loaded from disk in whatever state the world left it.
#[derive(Debug)]
pub enum AnyContainer {
    /// Created.
    Created(Container<Created>),
    /// Running.
    Running(Container<Running>),
    /// Paused.
    Paused(Container<Paused>),
    /// Stopped.
    Stopped(Container<Stopped>),
}

/// Derives the status of a persisted container (no lock needed: it only reads).
pub fn derive_status(state: &PersistedState, fifo_exists: bool) -> Status {
    match liveness(state.pid, state.pid_start_time) {
        Liveness::Dead => Status::Stopped,
        Liveness::Alive if fifo_exists => Status::Created,
        Liveness::Alive if state.cgroup.is_frozen().unwrap_or(false) => Status::Paused,
        Liveness::Alive => Status::Running,
    }
}

/// The state report of container `id`, read without taking its lock.
///
/// # Errors
/// [`StateError::NotFound`] or a corrupt state file.
pub fn report(root: &StateRoot, id: &str) -> Result<StateReport, StateError> {
    match root.peek(id)? {
        Some(state) => {
            let fifo = root.path().join(id).join(crate::runtime::state::EXEC_FIFO);
            let status = derive_status(&state, fifo.exists());
            Ok(StateReport::new(&state, status))
        }
        None => Err(StateError::NotFound(id.to_string())),
    }
}

impl AnyContainer {
    /// Locks and loads container `id`.
    ///
    /// # Errors
    /// [`StateError::NotFound`] (also for a container whose create has not finished), I/O.
    pub fn load(root: &StateRoot, id: &str) -> Result<Self, StateError> {
        let dir = root.open(id)?;
        let state = dir
            .read()?
            .ok_or_else(|| StateError::NotFound(id.to_string()))?;
        let status = derive_status(&state, dir.fifo_path().exists());
        Ok(match status {
            Status::Created => AnyContainer::Created(Container::from_parts(dir, state)),
            Status::Running => AnyContainer::Running(Container::from_parts(dir, state)),
            Status::Paused => AnyContainer::Paused(Container::from_parts(dir, state)),
            // A creating container has no state.json yet, so it cannot be loaded.
            Status::Stopped | Status::Creating => {
                AnyContainer::Stopped(Container::from_parts(dir, state))
            }
        })
    }

    /// Its status.
    pub fn status(&self) -> Status {
        match self {
            AnyContainer::Created(_) => Status::Created,
            AnyContainer::Running(_) => Status::Running,
            AnyContainer::Paused(_) => Status::Paused,
            AnyContainer::Stopped(_) => Status::Stopped,
        }
    }

    /// Its id.
    pub fn id(&self) -> &str {
        &self.state().id
    }

    /// Its persisted state.
    pub fn state(&self) -> &PersistedState {
        match self {
            AnyContainer::Created(c) => &c.state,
            AnyContainer::Running(c) => &c.state,
            AnyContainer::Paused(c) => &c.state,
            AnyContainer::Stopped(c) => &c.state,
        }
    }

    /// The error for `op` in the current state.
    pub fn wrong_state(&self, op: Operation) -> WrongState {
        WrongState {
            id: self.id().to_string(),
            state: self.status(),
            op,
        }
    }
}

impl<S> Container<S> {
    pub(crate) fn from_parts(dir: ContainerDir, state: PersistedState) -> Self {
        Self {
            dir,
            state: Box::new(state),
            _status: PhantomData,
        }
    }

    pub(crate) fn into_state<T>(self) -> Container<T> {
        Container {
            dir: self.dir,
            state: self.state,
            _status: PhantomData,
        }
    }

    /// Container id.
    pub fn id(&self) -> &str {
        &self.state.id
    }

    /// Host pid of init.
    pub fn pid(&self) -> i32 {
        self.state.pid
    }

    /// Persisted state.
    pub fn state(&self) -> &PersistedState {
        &self.state
    }
}
