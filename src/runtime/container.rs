//! The container lifecycle as typestate (runtime-spec "Lifecycle"): a caller-driven transition
//! consumes a `Container<S>` and returns the next state's type; what the world decides (the
//! process exited, a freezer froze it) enters through [`AnyContainer::load`], which derives the
//! status from the recorded pid, the exec fifo and the cgroup.

use std::marker::PhantomData;

use refeng_spec::oci::OpError;

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

mod sealed {
    /// Only the four states of this module carry the markers below.
    pub trait State {}
    impl State for super::Created {}
    impl State for super::Running {}
    impl State for super::Paused {}
    impl State for super::Stopped {}
}

/// States in which `kill` may signal the container: created, running and paused
/// (runtime-spec "Operations", Kill: "Attempting to send a signal to a container that is neither
/// `created` nor `running` MUST have no effect on the container and MUST generate an error";
/// `paused` is the runtime's refinement of the spec's `running`, and runc signals it too).
///
/// So a stopped container has no `kill`:
///
/// ```compile_fail
/// # use refeng::runtime::container::{Container, Stopped};
/// fn signal(c: &Container<Stopped>) {
///     let _ = c.kill(Some(nix::sys::signal::Signal::SIGTERM), false);
/// }
/// ```
///
/// while the same call on a paused one compiles:
///
/// ```no_run
/// # use refeng::runtime::container::{Container, Paused};
/// fn signal(c: &Container<Paused>) {
///     let _ = c.kill(Some(nix::sys::signal::Signal::SIGTERM), false);
/// }
/// ```
pub trait Signalable: sealed::State {
    /// Whether the container's cgroup is frozen in this state: a `SIGKILL` then thaws it, so
    /// that the container dies under the v1 freezer too (runc 1.1 does the same).
    const FROZEN: bool = false;
}
impl Signalable for Created {}
impl Signalable for Running {}
impl Signalable for Paused {
    const FROZEN: bool = true;
}

/// States whose container process lives: created, running and paused. `delete --force` stops
/// them (runc's command line) and `update`
/// changes their limits; a stopped container has neither:
///
/// ```compile_fail
/// # use refeng::runtime::container::{Container, Stopped};
/// fn stop(c: Container<Stopped>) {
///     let _ = c.stop_forcibly();
/// }
/// ```
///
/// ```no_run
/// # use refeng::runtime::container::{Container, Paused};
/// fn stop(c: Container<Paused>) {
///     let _ = c.stop_forcibly();
/// }
/// ```
pub trait Live: sealed::State {}
impl Live for Created {}
impl Live for Running {}
impl Live for Paused {}

/// A container in state `S`, holding its directory lock for as long as it lives.
#[derive(Debug)]
pub struct Container<S> {
    pub(crate) dir: ContainerDir,
    pub(crate) state: Box<PersistedState>,
    _status: PhantomData<S>,
}

/// The operations of the lifecycle, for errors that name them: the model's type.
pub use refeng_spec::oci::OpKind as Operation;

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
/// [`OpError::NotFound`] (as [`StateError::Lifecycle`]) or a corrupt state file.
pub fn report(root: &StateRoot, id: &str) -> Result<StateReport, StateError> {
    match root.peek(id)? {
        Some(state) => {
            let fifo = root.path().join(id).join(crate::runtime::state::EXEC_FIFO);
            let status = derive_status(&state, fifo.exists());
            Ok(StateReport::new(&state, status))
        }
        None => Err(OpError::NotFound { id: id.to_string() }.into()),
    }
}

impl AnyContainer {
    /// Locks and loads container `id`.
    ///
    /// # Errors
    /// [`OpError::NotFound`] (also for a container whose create has not finished), I/O.
    pub fn load(root: &StateRoot, id: &str) -> Result<Self, StateError> {
        let dir = root.open(id)?;
        let state = dir
            .read()?
            .ok_or_else(|| OpError::NotFound { id: id.to_string() })?;
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

    /// The model's refusal of `op` in the current state (runtime-spec "Operations": such an
    /// attempt MUST have no effect and MUST generate an error), so that its message is the one
    /// `refeng_spec::oci::Model` gives.
    pub fn wrong_state(&self, op: Operation) -> OpError {
        OpError::WrongState {
            id: self.id().to_string(),
            state: self.status(),
            op,
        }
    }
}

// Each caller-driven transition has its own conversion, defined only for its legal pair of
// states (runtime-spec "Lifecycle"); what the world decides enters through `AnyContainer::load`.

impl Container<Created> {
    /// A container `create` just built.
    pub(crate) fn created(dir: ContainerDir, state: PersistedState) -> Self {
        Self::from_parts(dir, state)
    }

    /// `start` released init.
    pub(crate) fn into_running(self) -> Container<Running> {
        Container {
            dir: self.dir,
            state: self.state,
            _status: PhantomData,
        }
    }
}

impl Container<Running> {
    /// `pause` froze it.
    pub(crate) fn into_paused(self) -> Container<Paused> {
        Container {
            dir: self.dir,
            state: self.state,
            _status: PhantomData,
        }
    }
}

impl Container<Paused> {
    /// `resume` thawed it.
    pub(crate) fn into_running(self) -> Container<Running> {
        Container {
            dir: self.dir,
            state: self.state,
            _status: PhantomData,
        }
    }
}

impl<S: Live> Container<S> {
    /// `delete --force` killed it and init is gone.
    pub(crate) fn into_stopped(self) -> Container<Stopped> {
        Container {
            dir: self.dir,
            state: self.state,
            _status: PhantomData,
        }
    }
}

impl<S> Container<S> {
    /// The container in the state [`AnyContainer::load`] derived: only the world's word (the
    /// recorded pid, the fifo, the freezer) may pick `S` freely.
    fn from_parts(dir: ContainerDir, state: PersistedState) -> Self {
        Self {
            dir,
            state: Box::new(state),
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
