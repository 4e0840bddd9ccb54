//! The shim handoff as types: init moves from serving to runtime-created, started, exited and
//! deleted, each step consuming the previous state (`refeng_spec::shim` is the model). What the
//! world decides (an exit) enters through [`Phase`], the enum the service keeps.

use std::time::SystemTime;

pub use refeng_spec::shim::Phase as PhaseName;

/// The shim serves; no container exists yet.
#[derive(Debug)]
pub struct Serving;

/// The runtime created the container; init waits for start.
#[derive(Debug)]
pub struct RuntimeCreated {
    /// Init's pid.
    pub pid: u32,
}

/// Init runs.
#[derive(Debug)]
pub struct Started {
    /// Init's pid.
    pub pid: u32,
    /// Whether the runtime paused the container (a sub-state the handoff model leaves out).
    pub paused: bool,
}

/// Init exited.
#[derive(Debug, Clone, Copy)]
pub struct Exited {
    /// Init's pid.
    pub pid: u32,
    /// Exit status, 128+signal for a killed process.
    pub status: u32,
    /// When the shim reaped it.
    pub at: SystemTime,
}

/// The container is deleted; only Shutdown is left.
#[derive(Debug, Clone, Copy)]
pub struct Deleted {
    /// How init ended.
    pub exit: Exited,
}

/// Init in state `S`.
#[derive(Debug)]
pub struct Handoff<S> {
    state: S,
}

impl Handoff<Serving> {
    /// The state of a shim whose server answers.
    pub fn serving() -> Self {
        Self { state: Serving }
    }

    /// The runtime created the container with init `pid` (ttrpc Create).
    pub fn created(self, pid: u32) -> Handoff<RuntimeCreated> {
        Handoff {
            state: RuntimeCreated { pid },
        }
    }
}

impl Handoff<RuntimeCreated> {
    /// Init's pid.
    pub fn pid(&self) -> u32 {
        self.state.pid
    }

    /// The runtime started init (ttrpc Start).
    pub fn started(self) -> Handoff<Started> {
        Handoff {
            state: Started {
                pid: self.state.pid,
                paused: false,
            },
        }
    }

    /// Init died before start (killed while created).
    pub fn exited(self, status: u32, at: SystemTime) -> Handoff<Exited> {
        Handoff {
            state: Exited {
                pid: self.state.pid,
                status,
                at,
            },
        }
    }
}

impl Handoff<Started> {
    /// Init's pid.
    pub fn pid(&self) -> u32 {
        self.state.pid
    }

    /// Whether the container is paused.
    pub fn paused(&self) -> bool {
        self.state.paused
    }

    /// Records a successful runtime pause or resume.
    pub fn set_paused(&mut self, paused: bool) {
        self.state.paused = paused;
    }

    /// Init exited.
    pub fn exited(self, status: u32, at: SystemTime) -> Handoff<Exited> {
        Handoff {
            state: Exited {
                pid: self.state.pid,
                status,
                at,
            },
        }
    }
}

impl Handoff<Exited> {
    /// How init ended.
    pub fn exit(&self) -> Exited {
        self.state
    }

    /// The runtime deleted the container.
    pub fn deleted(self) -> Handoff<Deleted> {
        Handoff {
            state: Deleted { exit: self.state },
        }
    }
}

impl Handoff<Deleted> {
    /// How init ended.
    pub fn exit(&self) -> Exited {
        self.state.exit
    }
}

/// Where init is, as the service keeps it between requests.
#[derive(Debug)]
pub enum Phase {
    /// No container yet.
    Serving(Handoff<Serving>),
    /// Created, not started.
    Created(Handoff<RuntimeCreated>),
    /// Running (or paused).
    Started(Handoff<Started>),
    /// Init exited.
    Exited(Handoff<Exited>),
    /// Deleted.
    Deleted(Handoff<Deleted>),
    /// Transient: a transition is in progress (never observed outside the service's lock).
    Moving,
}

impl Phase {
    /// The model's name of this phase.
    pub fn name(&self) -> PhaseName {
        match self {
            Self::Serving(_) | Self::Moving => PhaseName::Serving,
            Self::Created(_) => PhaseName::Created,
            Self::Started(_) => PhaseName::Started,
            Self::Exited(_) => PhaseName::Exited,
            Self::Deleted(_) => PhaseName::Deleted,
        }
    }

    /// Init's pid, once the runtime created it.
    pub fn pid(&self) -> Option<u32> {
        match self {
            Self::Serving(_) | Self::Moving => None,
            Self::Created(h) => Some(h.pid()),
            Self::Started(h) => Some(h.pid()),
            Self::Exited(h) => Some(h.exit().pid),
            Self::Deleted(h) => Some(h.exit().pid),
        }
    }

    /// How init ended, once it did.
    pub fn exit(&self) -> Option<Exited> {
        match self {
            Self::Exited(h) => Some(h.exit()),
            Self::Deleted(h) => Some(h.exit()),
            Self::Serving(_) | Self::Moving | Self::Created(_) | Self::Started(_) => None,
        }
    }

    /// The world: init `pid` exited. Any other pid, or an init that is not alive, is left alone
    /// and reported back as `false`.
    pub fn init_exited(&mut self, pid: u32, status: u32, at: SystemTime) -> bool {
        if self.pid() != Some(pid) {
            return false;
        }
        match std::mem::replace(self, Self::Moving) {
            Self::Created(h) => {
                *self = Self::Exited(h.exited(status, at));
                true
            }
            Self::Started(h) => {
                *self = Self::Exited(h.exited(status, at));
                true
            }
            other => {
                *self = other;
                false
            }
        }
    }
}
